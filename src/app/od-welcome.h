/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define OD_DEMO_URL   "http://127.0.0.1:8080"
#define OD_DEMO_TOKEN "demo-operator"

#define OD_TYPE_WELCOME (od_welcome_get_type ())
G_DECLARE_FINAL_TYPE (OdWelcome, od_welcome, OD, WELCOME, GtkWidget)

/* Emits "connect" (url, token) when the operator connects. */
GtkWidget *od_welcome_new            (void);
void       od_welcome_start_probe    (OdWelcome *self);
gboolean   od_welcome_get_demo_found (OdWelcome *self);

/* Shared with the preferences: NULL when valid, else a translated message. */
const char *od_check_server_url      (const char *url);
const char *od_check_token           (const char *token);

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define OD_TYPE_PREFERENCES (od_preferences_get_type ())
G_DECLARE_FINAL_TYPE (OdPreferences, od_preferences, OD, PREFERENCES, AdwPreferencesWindow)

/* Emits "apply" (url, token or "" to keep the stored one). */
OdPreferences *od_preferences_new (GtkWindow  *parent,
                                   const char *server_url);

G_END_DECLS

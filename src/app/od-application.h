/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define OD_TYPE_APPLICATION (od_application_get_type ())
G_DECLARE_FINAL_TYPE (OdApplication, od_application, OD, APPLICATION, AdwApplication)

OdApplication *od_application_new          (GApplicationFlags flags);

/* The application's settings, or NULL when the schema is not installed
 * (an uninstalled build run without GSETTINGS_SCHEMA_DIR). */
GSettings     *od_application_get_settings (void);

/* Startup options given on the command line (NULL when absent). */
const char    *od_application_get_option_server (OdApplication *self);
const char    *od_application_get_option_cache  (OdApplication *self);
const char    *od_application_get_option_token  (OdApplication *self);
gboolean       od_application_get_option_offline (OdApplication *self);

G_END_DECLS

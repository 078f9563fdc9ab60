/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "od-application.h"
#include "od-core.h"
#include "od-order-list.h"
#include "od-order-detail.h"
#include "od-command-dialog.h"
#include "od-lag-indicator.h"

G_BEGIN_DECLS

#define OD_TYPE_WINDOW (od_window_get_type ())
G_DECLARE_FINAL_TYPE (OdWindow, od_window, OD, WINDOW, AdwApplicationWindow)

OdWindow       *od_window_new               (OdApplication *application);
void            od_window_show_preferences  (OdWindow      *self);

/* Opens a profile: the cache at once, then the connection when a token is
 * known (given, or from the keyring).  cache_path NULL = the profile's. */
gboolean        od_window_open_profile      (OdWindow      *self,
                                             const char    *server_url,
                                             const char    *token,
                                             const char    *cache_path,
                                             gboolean       offline,
                                             GError       **error);
void            od_window_submit            (OdWindow      *self,
                                             const OdCommand *command,
                                             const char    *description);
OdCommandDialog *od_window_open_command_dialog (OdWindow    *self,
                                                OdCommandType type);
gboolean        od_window_export_csv        (OdWindow      *self,
                                             GFile         *file,
                                             GError       **error);
void            od_window_toast             (OdWindow      *self,
                                             const char    *message);

G_END_DECLS

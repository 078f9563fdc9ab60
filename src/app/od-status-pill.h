/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

#include "od-types.h"

G_BEGIN_DECLS

#define OD_TYPE_STATUS_PILL (od_status_pill_get_type ())
G_DECLARE_FINAL_TYPE (OdStatusPill, od_status_pill, OD, STATUS_PILL, GtkWidget)

GtkWidget *od_status_pill_new        (void);
void       od_status_pill_set_status (OdStatusPill  *self,
                                      OdOrderStatus  status);
void       od_status_pill_set_compact (OdStatusPill *self,
                                       gboolean      compact);

G_END_DECLS

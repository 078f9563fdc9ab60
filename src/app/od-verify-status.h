/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

#include "od-verify-runner.h"

G_BEGIN_DECLS

#define OD_TYPE_VERIFY_STATUS (od_verify_status_get_type ())

G_DECLARE_FINAL_TYPE (OdVerifyStatus, od_verify_status, OD, VERIFY_STATUS, GtkWidget)

GtkWidget      *od_verify_status_new        (void);
void            od_verify_status_set_runner (OdVerifyStatus *self,
                                             OdVerifyRunner *runner);
OdVerifyRunner *od_verify_status_get_runner (OdVerifyStatus *self);

G_END_DECLS

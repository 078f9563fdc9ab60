/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

#include "od-verify-runner.h"

G_BEGIN_DECLS

#define OD_TYPE_VERIFY_BANNER (od_verify_banner_get_type ())

G_DECLARE_FINAL_TYPE (OdVerifyBanner, od_verify_banner, OD, VERIFY_BANNER, GtkWidget)

GtkWidget      *od_verify_banner_new        (void);
void            od_verify_banner_set_runner (OdVerifyBanner *self,
                                             OdVerifyRunner *runner);
OdVerifyRunner *od_verify_banner_get_runner (OdVerifyBanner *self);
/* The sentence shown, or NULL when the banner is hidden. */
const char     *od_verify_banner_get_text   (OdVerifyBanner *self);

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

#include "od-lag.h"
#include "od-verify-runner.h"

G_BEGIN_DECLS

#define OD_TYPE_LAG_INDICATOR (od_lag_indicator_get_type ())
G_DECLARE_FINAL_TYPE (OdLagIndicator, od_lag_indicator, OD, LAG_INDICATOR, GtkWidget)

GtkWidget  *od_lag_indicator_new            (void);
void        od_lag_indicator_set_lag        (OdLagIndicator *self,
                                             OdLag          *lag);
OdLag      *od_lag_indicator_get_lag        (OdLagIndicator *self);
void        od_lag_indicator_set_pending    (OdLagIndicator *self,
                                             guint           pending);
void        od_lag_indicator_set_latency    (OdLagIndicator *self,
                                             double          last_ms,
                                             double          p50_ms,
                                             double          p99_ms);
void        od_lag_indicator_set_as_of      (OdLagIndicator *self,
                                             gint64          last_contact_usec);
void        od_lag_indicator_set_verify_runner (OdLagIndicator *self,
                                                OdVerifyRunner *runner);
void        od_lag_indicator_popup          (OdLagIndicator *self);
void        od_lag_indicator_popdown        (OdLagIndicator *self);
const char *od_lag_indicator_get_text       (OdLagIndicator *self);

char       *od_format_time_of_day_or_date   (gint64          real_time_usec);

G_END_DECLS

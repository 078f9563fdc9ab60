/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

#include "od-lag.h"

G_BEGIN_DECLS

#define OD_TYPE_LAG_PLOT (od_lag_plot_get_type ())
G_DECLARE_FINAL_TYPE (OdLagPlot, od_lag_plot, OD, LAG_PLOT, GtkWidget)

GtkWidget *od_lag_plot_new     (void);
void       od_lag_plot_set_lag (OdLagPlot *self,
                                OdLag     *lag);
OdLag     *od_lag_plot_get_lag (OdLagPlot *self);

G_END_DECLS

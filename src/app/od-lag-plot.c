/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <math.h>

#include "od-lag-plot.h"

/* A small plot of seconds behind over the last ten minutes, drawn from the
 * OdLag sample ring.  The vertical scale grows with the worst sample so a
 * short spike stays visible while it is in the window. */

#define PLOT_WINDOW_USEC (G_USEC_PER_SEC * 60 * 10)

struct _OdLagPlot
{
  GtkWidget  parent_instance;

  OdLag     *lag;
  gulong     sampled_id;
};

G_DEFINE_FINAL_TYPE (OdLagPlot, od_lag_plot, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_LAG,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
od_lag_plot_snapshot (GtkWidget   *widget,
                      GtkSnapshot *snapshot)
{
  OdLagPlot *self = OD_LAG_PLOT (widget);
  const OdLagSample *samples = NULL;
  guint n_samples = 0;
  int width = gtk_widget_get_width (widget);
  int height = gtk_widget_get_height (widget);
  GdkRGBA fg;
  GdkRGBA fill;
  GdkRGBA grid;
  gint64 now;
  double max_seconds = 1.0;
  cairo_t *cr;
  PangoLayout *layout;
  char *text;

  if (width <= 0 || height <= 0)
    return;

#if GTK_CHECK_VERSION (4, 10, 0)
  gtk_widget_get_color (widget, &fg);
#else
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  gtk_style_context_get_color (gtk_widget_get_style_context (widget), &fg);
  G_GNUC_END_IGNORE_DEPRECATIONS
#endif
  grid = fg;
  grid.alpha = 0.15f;
  fill = (GdkRGBA) { 0.21f, 0.52f, 0.89f, 0.35f };

  if (self->lag != NULL)
    samples = od_lag_get_samples (self->lag, &n_samples);

  for (guint i = 0; i < n_samples; i++)
    max_seconds = MAX (max_seconds, samples[i].seconds_behind);
  /* Round the scale up to a readable figure. */
  if (max_seconds <= 1)
    max_seconds = 1;
  else if (max_seconds <= 5)
    max_seconds = 5;
  else if (max_seconds <= 30)
    max_seconds = 30;
  else if (max_seconds <= 3600)
    max_seconds = ceil (max_seconds / 60.0) * 60.0;
  else if (max_seconds <= 86400)
    max_seconds = ceil (max_seconds / 3600.0) * 3600.0;
  else
    max_seconds = ceil (max_seconds / 86400.0) * 86400.0;

  cr = gtk_snapshot_append_cairo (snapshot,
                                  &GRAPHENE_RECT_INIT (0, 0, width, height));

  /* Grid: a base line and a top line. */
  gdk_cairo_set_source_rgba (cr, &grid);
  cairo_set_line_width (cr, 1);
  cairo_move_to (cr, 0, height - 0.5);
  cairo_line_to (cr, width, height - 0.5);
  cairo_move_to (cr, 0, 0.5);
  cairo_line_to (cr, width, 0.5);
  cairo_stroke (cr);

  now = g_get_real_time ();
  if (n_samples > 0)
    {
      gboolean started = FALSE;
      double first_x = 0;
      double last_x = 0;

      for (guint i = 0; i < n_samples; i++)
        {
          double x = width - (double) (now - samples[i].time_usec) / PLOT_WINDOW_USEC * width;
          /* A flat line at zero stays visible just above the base line. */
          double y = height - 1.5 - samples[i].seconds_behind / max_seconds * (height - 3);

          if (x < 0)
            continue;
          if (!started)
            {
              cairo_move_to (cr, x, height);
              first_x = x;
              started = TRUE;
            }
          cairo_line_to (cr, x, y);
          last_x = x;
        }
      if (started)
        {
          cairo_path_t *line = cairo_copy_path (cr);

          cairo_line_to (cr, last_x, height);
          cairo_line_to (cr, first_x, height);
          cairo_close_path (cr);
          gdk_cairo_set_source_rgba (cr, &fill);
          cairo_fill (cr);

          cairo_new_path (cr);
          cairo_append_path (cr, line);
          cairo_path_destroy (line);
          cairo_set_source_rgba (cr, 0.21, 0.52, 0.89, 1.0);
          cairo_set_line_width (cr, 1.5);
          cairo_stroke (cr);
        }
    }

  /* Scale label in the top left corner, axis label in the bottom right. */
  layout = gtk_widget_create_pango_layout (widget, NULL);
  if (max_seconds < 60)
    /* TRANSLATORS: the top of the lag plot's scale, in seconds */
    text = g_strdup_printf (_("%.0f s"), max_seconds);
  else if (max_seconds <= 3600)
    /* TRANSLATORS: the top of the lag plot's scale, in minutes */
    text = g_strdup_printf (_("%.0f min"), max_seconds / 60);
  else if (max_seconds <= 86400)
    /* TRANSLATORS: the top of the lag plot's scale, in hours */
    text = g_strdup_printf (_("%.0f h"), max_seconds / 3600);
  else
    /* TRANSLATORS: the top of the lag plot's scale, in days */
    text = g_strdup_printf (_("%.0f d"), max_seconds / 86400);
  pango_layout_set_text (layout, text, -1);
  g_free (text);
  fg.alpha = 0.6f;
  gdk_cairo_set_source_rgba (cr, &fg);
  cairo_move_to (cr, 3, 2);
  pango_cairo_show_layout (cr, layout);
  {
    int lw, lh;

    pango_layout_set_text (layout, _("last 10 minutes"), -1);
    pango_layout_get_pixel_size (layout, &lw, &lh);
    cairo_move_to (cr, width - lw - 3, height - lh - 2);
    pango_cairo_show_layout (cr, layout);
  }
  g_object_unref (layout);
  cairo_destroy (cr);
}

static void
od_lag_plot_measure (GtkWidget      *widget,
                     GtkOrientation  orientation,
                     int             for_size,
                     int            *minimum,
                     int            *natural,
                     int            *minimum_baseline,
                     int            *natural_baseline)
{
  if (orientation == GTK_ORIENTATION_HORIZONTAL)
    *minimum = *natural = 280;
  else
    *minimum = *natural = 80;
}

static void
on_sampled (OdLag     *lag,
            OdLagPlot *self)
{
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
od_lag_plot_set_lag (OdLagPlot *self,
                     OdLag     *lag)
{
  g_return_if_fail (OD_IS_LAG_PLOT (self));
  g_return_if_fail (lag == NULL || OD_IS_LAG (lag));

  if (self->lag == lag)
    return;

  if (self->lag != NULL)
    g_clear_signal_handler (&self->sampled_id, self->lag);
  g_set_object (&self->lag, lag);
  if (lag != NULL)
    self->sampled_id = g_signal_connect (lag, "sampled", G_CALLBACK (on_sampled), self);

  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LAG]);
}

OdLag *
od_lag_plot_get_lag (OdLagPlot *self)
{
  g_return_val_if_fail (OD_IS_LAG_PLOT (self), NULL);
  return self->lag;
}

GtkWidget *
od_lag_plot_new (void)
{
  return g_object_new (OD_TYPE_LAG_PLOT, NULL);
}

static void
od_lag_plot_dispose (GObject *object)
{
  OdLagPlot *self = OD_LAG_PLOT (object);

  if (self->lag != NULL)
    g_clear_signal_handler (&self->sampled_id, self->lag);
  g_clear_object (&self->lag);

  G_OBJECT_CLASS (od_lag_plot_parent_class)->dispose (object);
}

static void
od_lag_plot_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  OdLagPlot *self = OD_LAG_PLOT (object);

  switch (prop_id)
    {
    case PROP_LAG:
      g_value_set_object (value, self->lag);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_lag_plot_set_property (GObject      *object,
                          guint         prop_id,
                          const GValue *value,
                          GParamSpec   *pspec)
{
  OdLagPlot *self = OD_LAG_PLOT (object);

  switch (prop_id)
    {
    case PROP_LAG:
      od_lag_plot_set_lag (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_lag_plot_class_init (OdLagPlotClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_lag_plot_dispose;
  object_class->get_property = od_lag_plot_get_property;
  object_class->set_property = od_lag_plot_set_property;

  widget_class->snapshot = od_lag_plot_snapshot;
  widget_class->measure = od_lag_plot_measure;

  properties[PROP_LAG] =
    g_param_spec_object ("lag", NULL, NULL,
                         OD_TYPE_LAG,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_css_name (widget_class, "lagplot");
}

static void
od_lag_plot_init (OdLagPlot *self)
{
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-format.h"
#include "od-lag-indicator.h"
#include "od-lag-plot.h"
#include "od-verify-status.h"

/* The always-visible synchronization state in the header bar.  All text is
 * built here from the OdLag properties, so it is translated and never
 * depends on a flag that could drift. */

enum {
  ROW_SERVER,
  ROW_STATE,
  ROW_APPLIED,
  ROW_HEAD,
  ROW_BEHIND,
  ROW_SECONDS,
  ROW_LAST_EVENT,
  ROW_LAST_CONTACT,
  ROW_ATTEMPTS,
  ROW_PENDING,
  ROW_LATENCY,
  ROW_ERROR,
  N_ROWS
};

struct _OdLagIndicator
{
  GtkWidget   parent_instance;

  GtkWidget  *button;
  GtkImage   *icon;
  GtkLabel   *label;
  GtkLabel   *title_label;
  GtkGrid    *grid;
  OdLagPlot  *plot;
  OdVerifyStatus *verify_status;
  GtkLabel   *values[N_ROWS];
  GtkWidget  *keys[N_ROWS];

  OdLag      *lag;
  gulong      notify_id;
  guint       pending;
  double      latency_last_ms;
  double      latency_p50_ms;
  double      latency_p99_ms;
  char       *text;
  gint64      as_of;
};

G_DEFINE_FINAL_TYPE (OdLagIndicator, od_lag_indicator, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_LAG,
  PROP_TEXT,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static const char *state_classes[] = {
  "lag-offline", "lag-connecting", "lag-catching-up",
  "lag-live", "lag-reconnecting", "lag-sign-in",
};

char *
od_format_time_of_day_or_date (gint64 real_time_usec)
{
  g_autoptr(GDateTime) when = NULL;
  g_autoptr(GDateTime) now = NULL;

  if (real_time_usec <= 0)
    return g_strdup (C_("time", "never"));

  when = g_date_time_new_from_unix_local (real_time_usec / G_USEC_PER_SEC);
  now = g_date_time_new_now_local ();
  if (g_date_time_get_year (when) == g_date_time_get_year (now)
      && g_date_time_get_day_of_year (when) == g_date_time_get_day_of_year (now))
    return g_date_time_format (when, "%X");
  if (od_format_c_time_locale ())
    return g_date_time_format (when, "%Y-%m-%d %H:%M:%S");
  /* TRANSLATORS: a date and time, see g_date_time_format() */
  return g_date_time_format (when, _("%x %X"));
}

/* For the indicator's one line: the time of day today, else the day and
 * the minute (the year too when it is another).  That line sits in the
 * header bar of a wide window, and the wide layout's minimum width must
 * stay under the fold width (od-window.c): "data as of" a full date and
 * time of yesterday once made a 360 px window open 713 px wide, unable to
 * fold.  The details keep the full date and time. */
static char *
format_as_of (gint64 real_time_usec)
{
  g_autoptr(GDateTime) when = g_date_time_new_from_unix_local (real_time_usec / G_USEC_PER_SEC);
  g_autoptr(GDateTime) now = g_date_time_new_now_local ();
  gboolean c_locale = od_format_c_time_locale ();

  if (g_date_time_get_year (when) != g_date_time_get_year (now))
    return g_date_time_format (when, c_locale ? "%Y-%m-%d" : "%x");
  if (g_date_time_get_day_of_year (when) == g_date_time_get_day_of_year (now))
    return g_date_time_format (when, "%X");
  /* TRANSLATORS: a day of this year and a time, as short as it can be
   * ("4 Dec, 09:41"), see g_date_time_format() */
  return g_date_time_format (when, c_locale ? "%m-%d %H:%M" : _("%-d %b, %H:%M"));
}

static char *
format_seconds (double seconds)
{
  if (seconds < 1)
    return g_strdup (_("under a second"));
  if (seconds < 90)
    return g_strdup_printf (ngettext ("%d second", "%d seconds", (int) seconds), (int) seconds);
  if (seconds < 90 * 60)
    return g_strdup_printf (ngettext ("%d minute", "%d minutes", (int) (seconds / 60)),
                            (int) (seconds / 60));
  if (seconds < 48 * 3600)
    return g_strdup_printf (ngettext ("%d hour", "%d hours", (int) (seconds / 3600)),
                            (int) (seconds / 3600));
  return g_strdup_printf (ngettext ("%d day", "%d days", (int) (seconds / 86400)),
                          (int) (seconds / 86400));
}

static void
set_row (OdLagIndicator *self,
         guint           row,
         const char     *value)
{
  gboolean visible = value != NULL && *value != '\0';

  gtk_label_set_label (self->values[row], visible ? value : "");
  gtk_widget_set_visible (GTK_WIDGET (self->values[row]), visible);
  gtk_widget_set_visible (self->keys[row], visible);
}

static void
od_lag_indicator_update (OdLagIndicator *self)
{
  OdLagState state = OD_LAG_STATE_OFFLINE;
  gint64 behind = 0;
  double seconds = 0;
  g_autofree char *text = NULL;
  g_autofree char *state_text = NULL;
  g_autofree char *tmp = NULL;
  const char *icon = "network-offline-symbolic";

  if (self->lag != NULL)
    {
      state = od_lag_get_state (self->lag);
      behind = od_lag_get_events_behind (self->lag);
      seconds = od_lag_get_seconds_behind (self->lag);
    }

  switch (state)
    {
    case OD_LAG_STATE_LIVE:
      icon = "emblem-ok-symbolic";
      state_text = g_strdup (_("Live"));
      if (seconds >= 2)
        {
          g_autofree char *s = format_seconds (seconds);
          /* TRANSLATORS: "Live · 3 seconds behind" */
          text = g_strdup_printf (_("Live · %s behind"), s);
        }
      else
        text = g_strdup (state_text);
      break;
    case OD_LAG_STATE_CATCHING_UP:
      icon = "emblem-synchronizing-symbolic";
      state_text = g_strdup (_("Catching up"));
      /* TRANSLATORS: "Catching up · 1,234 behind": events not applied yet */
      text = g_strdup_printf (_("Catching up · %'lld behind"), (long long) behind);
      break;
    case OD_LAG_STATE_CONNECTING:
      icon = "emblem-synchronizing-symbolic";
      state_text = g_strdup (_("Connecting…"));
      text = g_strdup (state_text);
      break;
    case OD_LAG_STATE_RECONNECTING:
      {
        guint in = self->lag ? od_lag_get_reconnect_in (self->lag) : 0;

        icon = "network-error-symbolic";
        state_text = g_strdup_printf (ngettext ("Reconnecting in %u s", "Reconnecting in %u s", in), in);
        text = g_strdup (state_text);
      }
      break;
    case OD_LAG_STATE_SIGN_IN_NEEDED:
      icon = "dialog-password-symbolic";
      state_text = g_strdup (_("Sign-in needed"));
      text = g_strdup (state_text);
      break;
    case OD_LAG_STATE_OFFLINE:
    default:
      {
        gint64 contact = self->lag ? od_lag_get_last_contact (self->lag) : 0;

        /* Before the engine first reports, the cache knows when it last
         * heard from the server. */
        if (contact <= 0)
          contact = self->as_of;

        icon = "network-offline-symbolic";
        state_text = g_strdup (_("Offline"));
        if (contact > 0)
          {
            g_autofree char *when = format_as_of (contact);
            /* TRANSLATORS: "Offline · data as of 10:02:11" (or "4 Dec, 09:41") */
            text = g_strdup_printf (_("Offline · data as of %s"), when);
          }
        else
          text = g_strdup (state_text);
      }
      break;
    }

  /* A refused certificate is the one failure the operator must act on:
   * say it in the header, not only in the details. */
  if (self->lag != NULL && od_lag_get_tls_errors (self->lag) != 0
      && (state == OD_LAG_STATE_CONNECTING || state == OD_LAG_STATE_RECONNECTING))
    {
      icon = "security-low-symbolic";
      g_free (text);
      text = g_strdup (_("Certificate refused"));
    }

  for (guint i = 0; i < G_N_ELEMENTS (state_classes); i++)
    gtk_widget_remove_css_class (self->button, state_classes[i]);
  if ((guint) state < G_N_ELEMENTS (state_classes))
    gtk_widget_add_css_class (self->button, state_classes[state]);

  gtk_image_set_from_icon_name (self->icon, icon);
  gtk_label_set_label (self->label, text);
  gtk_label_set_label (self->title_label, text);

  if (g_strcmp0 (text, self->text) != 0)
    {
      g_free (self->text);
      self->text = g_strdup (text);
      /* What a screen reader reads for the button: the state and its
       * time, as shown (the icon alone says nothing). */
      gtk_accessible_update_property (GTK_ACCESSIBLE (self->button),
                                      GTK_ACCESSIBLE_PROPERTY_LABEL, text,
                                      GTK_ACCESSIBLE_PROPERTY_DESCRIPTION, _("Synchronization details"),
                                      -1);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TEXT]);
    }

  /* The details. */
  set_row (self, ROW_SERVER, self->lag ? od_lag_get_server_url (self->lag) : NULL);
  set_row (self, ROW_STATE, state_text);
  if (self->lag != NULL)
    {
      gint64 t;

      g_free (tmp);
      tmp = g_strdup_printf ("%'" G_GINT64_FORMAT, od_lag_get_applied_position (self->lag));
      set_row (self, ROW_APPLIED, tmp);
      g_free (tmp);
      tmp = g_strdup_printf ("%'" G_GINT64_FORMAT, od_lag_get_known_head (self->lag));
      set_row (self, ROW_HEAD, tmp);
      g_free (tmp);
      tmp = g_strdup_printf ("%'" G_GINT64_FORMAT, behind);
      set_row (self, ROW_BEHIND, tmp);
      g_free (tmp);
      /* Zero has its unit too. */
      tmp = seconds > 0 ? format_seconds (seconds)
                        : g_strdup_printf (ngettext ("%d second", "%d seconds", 0), 0);
      set_row (self, ROW_SECONDS, tmp);
      g_free (tmp);
      t = od_lag_get_last_event_time (self->lag);
      tmp = t > 0 ? od_format_time_of_day_or_date (t) : NULL;
      set_row (self, ROW_LAST_EVENT, tmp);
      g_free (tmp);
      t = od_lag_get_last_contact (self->lag);
      tmp = od_format_time_of_day_or_date (t);
      set_row (self, ROW_LAST_CONTACT, tmp);
      g_free (tmp);
      tmp = g_strdup_printf ("%u", od_lag_get_reconnect_attempts (self->lag));
      set_row (self, ROW_ATTEMPTS, tmp);
      if (od_lag_get_tls_errors (self->lag) != 0)
        {
          g_autoptr(GUri) uri = g_uri_parse (od_lag_get_server_url (self->lag)
                                             ? od_lag_get_server_url (self->lag) : "",
                                             G_URI_FLAGS_NONE, NULL);
          g_autofree char *why = od_format_tls_errors (od_lag_get_tls_errors (self->lag),
                                                       uri ? g_uri_get_host (uri) : NULL);

          set_row (self, ROW_ERROR, why);
        }
      else
        set_row (self, ROW_ERROR, od_lag_get_last_error (self->lag));
    }
  else
    {
      for (guint i = ROW_APPLIED; i <= ROW_ATTEMPTS; i++)
        set_row (self, i, NULL);
      set_row (self, ROW_ERROR, NULL);
    }
  g_free (tmp);
  tmp = g_strdup_printf ("%u", self->pending);
  set_row (self, ROW_PENDING, tmp);
  g_free (tmp);
  if (self->latency_last_ms >= 0)
    /* TRANSLATORS: click-to-visible latency: last, median and 99th percentile */
    tmp = g_strdup_printf (_("%.1f ms (median %.1f ms, p99 %.1f ms)"),
                           self->latency_last_ms, self->latency_p50_ms, self->latency_p99_ms);
  else
    tmp = NULL;
  set_row (self, ROW_LATENCY, tmp);
}

static void
on_lag_notify (OdLag          *lag,
               GParamSpec     *pspec,
               OdLagIndicator *self)
{
  od_lag_indicator_update (self);
}

void
od_lag_indicator_set_lag (OdLagIndicator *self,
                          OdLag          *lag)
{
  g_return_if_fail (OD_IS_LAG_INDICATOR (self));

  if (self->lag == lag)
    return;
  if (self->lag != NULL)
    g_clear_signal_handler (&self->notify_id, self->lag);
  g_set_object (&self->lag, lag);
  if (lag != NULL)
    self->notify_id = g_signal_connect (lag, "notify", G_CALLBACK (on_lag_notify), self);
  od_lag_plot_set_lag (self->plot, lag);
  od_lag_indicator_update (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LAG]);
}

OdLag *
od_lag_indicator_get_lag (OdLagIndicator *self)
{
  g_return_val_if_fail (OD_IS_LAG_INDICATOR (self), NULL);
  return self->lag;
}

void
od_lag_indicator_set_pending (OdLagIndicator *self,
                              guint           pending)
{
  g_return_if_fail (OD_IS_LAG_INDICATOR (self));
  if (self->pending == pending)
    return;
  self->pending = pending;
  od_lag_indicator_update (self);
}

void
od_lag_indicator_set_latency (OdLagIndicator *self,
                              double          last_ms,
                              double          p50_ms,
                              double          p99_ms)
{
  g_return_if_fail (OD_IS_LAG_INDICATOR (self));
  self->latency_last_ms = last_ms;
  self->latency_p50_ms = p50_ms;
  self->latency_p99_ms = p99_ms;
  od_lag_indicator_update (self);
}

void
od_lag_indicator_set_as_of (OdLagIndicator *self,
                            gint64          last_contact_usec)
{
  g_return_if_fail (OD_IS_LAG_INDICATOR (self));
  self->as_of = last_contact_usec;
  od_lag_indicator_update (self);
}

/* The popover's "Verified up to" and Verify Cache. */
void
od_lag_indicator_set_verify_runner (OdLagIndicator *self,
                                    OdVerifyRunner *runner)
{
  g_return_if_fail (OD_IS_LAG_INDICATOR (self));

  od_verify_status_set_runner (self->verify_status, runner);
}

void
od_lag_indicator_popup (OdLagIndicator *self)
{
  g_return_if_fail (OD_IS_LAG_INDICATOR (self));
  gtk_menu_button_popup (GTK_MENU_BUTTON (self->button));
}

void
od_lag_indicator_popdown (OdLagIndicator *self)
{
  g_return_if_fail (OD_IS_LAG_INDICATOR (self));
  gtk_menu_button_popdown (GTK_MENU_BUTTON (self->button));
}

const char *
od_lag_indicator_get_text (OdLagIndicator *self)
{
  g_return_val_if_fail (OD_IS_LAG_INDICATOR (self), NULL);
  return self->text;
}

GtkWidget *
od_lag_indicator_new (void)
{
  return g_object_new (OD_TYPE_LAG_INDICATOR, NULL);
}

static void
od_lag_indicator_dispose (GObject *object)
{
  OdLagIndicator *self = OD_LAG_INDICATOR (object);

  if (self->lag != NULL)
    g_clear_signal_handler (&self->notify_id, self->lag);
  g_clear_object (&self->lag);
  gtk_widget_dispose_template (GTK_WIDGET (self), OD_TYPE_LAG_INDICATOR);
  {
    GtkWidget *child;

    /* Children the template does not name are ours to unparent. */
    while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
      gtk_widget_unparent (child);
  }

  G_OBJECT_CLASS (od_lag_indicator_parent_class)->dispose (object);
}

static void
od_lag_indicator_finalize (GObject *object)
{
  OdLagIndicator *self = OD_LAG_INDICATOR (object);

  g_free (self->text);

  G_OBJECT_CLASS (od_lag_indicator_parent_class)->finalize (object);
}

static void
od_lag_indicator_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  OdLagIndicator *self = OD_LAG_INDICATOR (object);

  switch (prop_id)
    {
    case PROP_LAG:
      g_value_set_object (value, self->lag);
      break;
    case PROP_TEXT:
      g_value_set_string (value, self->text);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_lag_indicator_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  OdLagIndicator *self = OD_LAG_INDICATOR (object);

  switch (prop_id)
    {
    case PROP_LAG:
      od_lag_indicator_set_lag (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_lag_indicator_class_init (OdLagIndicatorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_lag_indicator_dispose;
  object_class->finalize = od_lag_indicator_finalize;
  object_class->get_property = od_lag_indicator_get_property;
  object_class->set_property = od_lag_indicator_set_property;

  properties[PROP_LAG] =
    g_param_spec_object ("lag", NULL, NULL, OD_TYPE_LAG,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_TEXT] =
    g_param_spec_string ("text", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  g_type_ensure (OD_TYPE_LAG_PLOT);
  g_type_ensure (OD_TYPE_VERIFY_STATUS);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/orderdesk/OrderDesk/ui/od-lag-indicator.ui");
  gtk_widget_class_bind_template_child (widget_class, OdLagIndicator, button);
  gtk_widget_class_bind_template_child (widget_class, OdLagIndicator, icon);
  gtk_widget_class_bind_template_child (widget_class, OdLagIndicator, label);
  gtk_widget_class_bind_template_child (widget_class, OdLagIndicator, title_label);
  gtk_widget_class_bind_template_child (widget_class, OdLagIndicator, grid);
  gtk_widget_class_bind_template_child (widget_class, OdLagIndicator, plot);
  gtk_widget_class_bind_template_child (widget_class, OdLagIndicator, verify_status);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "lagindicator");
}

static void
od_lag_indicator_init (OdLagIndicator *self)
{
  const char *keys[N_ROWS] = {
    N_("Server"), N_("State"), N_("Applied position"), N_("Server head"),
    N_("Events behind"), N_("Time behind"), N_("Last event"),
    N_("Last contact"), N_("Reconnect attempts"), N_("Pending commands"),
    N_("Click to visible"), N_("Last error"),
  };

  gtk_widget_init_template (GTK_WIDGET (self));
  self->latency_last_ms = -1;

  for (guint i = 0; i < N_ROWS; i++)
    {
      GtkWidget *key = gtk_label_new (_(keys[i]));
      GtkWidget *value = gtk_label_new (NULL);

      gtk_label_set_xalign (GTK_LABEL (key), 0);
      gtk_widget_add_css_class (key, "dim-label");
      gtk_label_set_xalign (GTK_LABEL (value), 0);
      gtk_label_set_selectable (GTK_LABEL (value), TRUE);
      /* Selectable for copying, but opening the popover must not select
       * (and highlight) the first value. */
      gtk_widget_set_focusable (value, FALSE);
      gtk_label_set_wrap (GTK_LABEL (value), TRUE);
      gtk_label_set_max_width_chars (GTK_LABEL (value), 40);
      gtk_widget_add_css_class (value, "numeric");
      gtk_grid_attach (self->grid, key, 0, i, 1, 1);
      gtk_grid_attach (self->grid, value, 1, i, 1, 1);
      self->keys[i] = key;
      self->values[i] = GTK_LABEL (value);
    }
  od_lag_indicator_update (self);
}

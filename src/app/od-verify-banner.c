/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-verify-banner.h"

/* Under the header bar: a verification asked for, with its progress and
 * Cancel; then what it found.  Differences get a Repair button, a cache
 * of another server's log gets Rebuild (never Repair).  Its own widget
 * rather than AdwBanner, which libadwaita 1.2 does not have and which
 * holds one button only. */

struct _OdVerifyBanner
{
  GtkWidget       parent_instance;

  GtkRevealer    *revealer;
  GtkWidget      *box;
  GtkImage       *icon;
  GtkLabel       *message_label;
  GtkProgressBar *progress_bar;
  GtkWidget      *repair_button;
  GtkWidget      *rebuild_button;
  GtkWidget      *cancel_button;
  GtkWidget      *dismiss_button;
  GtkWidget      *actions;

  OdVerifyRunner *runner;
  gboolean        narrow;
  guint           relayout_source;
};

/* Below this width the buttons go under the text, which keeps its
 * width. */
#define NARROW_WIDTH 600

G_DEFINE_FINAL_TYPE (OdVerifyBanner, od_verify_banner, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_RUNNER,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
update (OdVerifyBanner *self)
{
  OdVerifyRunner *r = self->runner;
  gboolean progress = r != NULL && od_verify_runner_get_running (r) && !od_verify_runner_get_automatic (r);
  OdVerifyOutcome outcome = r ? od_verify_runner_get_outcome (r) : OD_VERIFY_OUTCOME_NONE;
  gboolean bad = outcome == OD_VERIFY_OUTCOME_DIFFERS || outcome == OD_VERIFY_OUTCOME_FOREIGN
                 || outcome == OD_VERIFY_OUTCOME_FAILED;
  const char *text = NULL;

  if (progress)
    text = od_verify_runner_get_progress_text (r);
  else if (outcome != OD_VERIFY_OUTCOME_NONE)
    text = od_verify_runner_get_message (r);
  gtk_label_set_label (self->message_label, text ? text : "");
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), progress);
  if (progress)
    gtk_progress_bar_set_fraction (self->progress_bar, od_verify_runner_get_fraction (r));
  gtk_widget_set_visible (self->cancel_button, progress);
  gtk_widget_set_visible (self->repair_button, !progress && outcome == OD_VERIFY_OUTCOME_DIFFERS);
  gtk_widget_set_visible (self->rebuild_button, !progress && outcome == OD_VERIFY_OUTCOME_FOREIGN);
  gtk_widget_set_visible (self->dismiss_button, !progress);
  gtk_image_set_from_icon_name (self->icon, progress ? "emblem-synchronizing-symbolic"
                                : bad ? "dialog-warning-symbolic" : "emblem-ok-symbolic");
  if (bad && !progress)
    gtk_widget_add_css_class (self->box, "error");
  else
    gtk_widget_remove_css_class (self->box, "error");
  gtk_revealer_set_reveal_child (self->revealer, text != NULL);
}

static gboolean
relayout (gpointer data)
{
  OdVerifyBanner *self = data;
  GtkGrid *grid = GTK_GRID (self->box);

  self->relayout_source = 0;
  g_object_ref (self->actions);
  gtk_grid_remove (grid, self->actions);
  if (self->narrow)
    gtk_grid_attach (grid, self->actions, 1, 1, 1, 1);
  else
    gtk_grid_attach (grid, self->actions, 2, 0, 1, 1);
  g_object_unref (self->actions);
  return G_SOURCE_REMOVE;
}

static GtkSizeRequestMode
od_verify_banner_get_request_mode (GtkWidget *widget)
{
  return gtk_widget_get_request_mode (GTK_WIDGET (OD_VERIFY_BANNER (widget)->revealer));
}

static void
od_verify_banner_measure (GtkWidget      *widget,
                          GtkOrientation  orientation,
                          int             for_size,
                          int            *minimum,
                          int            *natural,
                          int            *minimum_baseline,
                          int            *natural_baseline)
{
  OdVerifyBanner *self = OD_VERIFY_BANNER (widget);

  gtk_widget_measure (GTK_WIDGET (self->revealer), orientation, for_size, minimum, natural,
                      minimum_baseline, natural_baseline);
}

static void
od_verify_banner_size_allocate (GtkWidget *widget,
                                int        width,
                                int        height,
                                int        baseline)
{
  OdVerifyBanner *self = OD_VERIFY_BANNER (widget);
  gboolean narrow = width < NARROW_WIDTH;

  gtk_widget_allocate (GTK_WIDGET (self->revealer), width, height, baseline, NULL);
  /* Not while allocating: moving a child queues a resize. */
  if (narrow != self->narrow)
    {
      self->narrow = narrow;
      if (self->relayout_source == 0)
        self->relayout_source = g_idle_add (relayout, self);
    }
}

void
od_verify_banner_set_runner (OdVerifyBanner *self,
                             OdVerifyRunner *runner)
{
  g_return_if_fail (OD_IS_VERIFY_BANNER (self));

  if (self->runner == runner)
    return;
  if (self->runner != NULL)
    g_signal_handlers_disconnect_by_data (self->runner, self);
  g_set_object (&self->runner, runner);
  if (runner != NULL)
    g_signal_connect_swapped (runner, "notify", G_CALLBACK (update), self);
  update (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNER]);
}

OdVerifyRunner *
od_verify_banner_get_runner (OdVerifyBanner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_BANNER (self), NULL);
  return self->runner;
}

const char *
od_verify_banner_get_text (OdVerifyBanner *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_BANNER (self), NULL);
  if (!gtk_revealer_get_reveal_child (self->revealer))
    return NULL;
  return gtk_label_get_label (self->message_label);
}

GtkWidget *
od_verify_banner_new (void)
{
  return g_object_new (OD_TYPE_VERIFY_BANNER, NULL);
}

static void
od_verify_banner_dispose (GObject *object)
{
  OdVerifyBanner *self = OD_VERIFY_BANNER (object);

  if (self->runner != NULL)
    g_signal_handlers_disconnect_by_data (self->runner, self);
  g_clear_object (&self->runner);
  g_clear_handle_id (&self->relayout_source, g_source_remove);
  gtk_widget_dispose_template (GTK_WIDGET (self), OD_TYPE_VERIFY_BANNER);
  {
    GtkWidget *child;

    while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
      gtk_widget_unparent (child);
  }

  G_OBJECT_CLASS (od_verify_banner_parent_class)->dispose (object);
}

static void
od_verify_banner_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  OdVerifyBanner *self = OD_VERIFY_BANNER (object);

  switch (prop_id)
    {
    case PROP_RUNNER:
      g_value_set_object (value, self->runner);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_verify_banner_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  OdVerifyBanner *self = OD_VERIFY_BANNER (object);

  switch (prop_id)
    {
    case PROP_RUNNER:
      od_verify_banner_set_runner (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_verify_banner_class_init (OdVerifyBannerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_verify_banner_dispose;
  object_class->get_property = od_verify_banner_get_property;
  object_class->set_property = od_verify_banner_set_property;

  properties[PROP_RUNNER] =
    g_param_spec_object ("runner", NULL, NULL, OD_TYPE_VERIFY_RUNNER,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_template_from_resource (widget_class, "/io/github/orderdesk/OrderDesk/ui/od-verify-banner.ui");
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, revealer);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, box);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, icon);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, message_label);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, progress_bar);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, repair_button);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, rebuild_button);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, cancel_button);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, dismiss_button);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyBanner, actions);
  widget_class->get_request_mode = od_verify_banner_get_request_mode;
  widget_class->measure = od_verify_banner_measure;
  widget_class->size_allocate = od_verify_banner_size_allocate;
  gtk_widget_class_set_css_name (widget_class, "verifybanner");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_GROUP);
}

static void
od_verify_banner_init (OdVerifyBanner *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_accessible_update_property (GTK_ACCESSIBLE (self), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  _("Cache verification"), -1);
  update (self);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-verify-status.h"

/* The lag popover's part on verification: "Verified up to P · T" (or
 * "Never verified"), the Verify Cache button, and while a run goes on
 * (also the automatic one) its progress and Cancel. */

struct _OdVerifyStatus
{
  GtkWidget       parent_instance;

  GtkLabel       *verified_label;
  GtkLabel       *progress_label;
  GtkProgressBar *progress_bar;
  GtkWidget      *verify_button;
  GtkWidget      *cancel_button;

  OdVerifyRunner *runner;
};

G_DEFINE_FINAL_TYPE (OdVerifyStatus, od_verify_status, GTK_TYPE_WIDGET)

enum {
  PROP_0,
  PROP_RUNNER,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
update (OdVerifyStatus *self)
{
  OdVerifyRunner *r = self->runner;
  gboolean running = r != NULL && od_verify_runner_get_running (r);
  const char *verified = r ? od_verify_runner_get_verified_text (r) : NULL;
  const char *progress = r ? od_verify_runner_get_progress_text (r) : NULL;

  gtk_label_set_label (self->verified_label, verified ? verified : "");
  gtk_widget_set_visible (GTK_WIDGET (self->verified_label), verified != NULL);
  gtk_label_set_label (self->progress_label, progress ? progress : "");
  gtk_widget_set_visible (GTK_WIDGET (self->progress_label), running && progress != NULL);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), running);
  if (running)
    gtk_progress_bar_set_fraction (self->progress_bar, od_verify_runner_get_fraction (r));
  gtk_widget_set_visible (self->verify_button, !running);
  gtk_widget_set_visible (self->cancel_button, running);
}

void
od_verify_status_set_runner (OdVerifyStatus *self,
                             OdVerifyRunner *runner)
{
  g_return_if_fail (OD_IS_VERIFY_STATUS (self));

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
od_verify_status_get_runner (OdVerifyStatus *self)
{
  g_return_val_if_fail (OD_IS_VERIFY_STATUS (self), NULL);
  return self->runner;
}

GtkWidget *
od_verify_status_new (void)
{
  return g_object_new (OD_TYPE_VERIFY_STATUS, NULL);
}

static void
od_verify_status_dispose (GObject *object)
{
  OdVerifyStatus *self = OD_VERIFY_STATUS (object);

  if (self->runner != NULL)
    g_signal_handlers_disconnect_by_data (self->runner, self);
  g_clear_object (&self->runner);
  gtk_widget_dispose_template (GTK_WIDGET (self), OD_TYPE_VERIFY_STATUS);
  {
    GtkWidget *child;

    while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
      gtk_widget_unparent (child);
  }

  G_OBJECT_CLASS (od_verify_status_parent_class)->dispose (object);
}

static void
od_verify_status_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  OdVerifyStatus *self = OD_VERIFY_STATUS (object);

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
od_verify_status_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  OdVerifyStatus *self = OD_VERIFY_STATUS (object);

  switch (prop_id)
    {
    case PROP_RUNNER:
      od_verify_status_set_runner (self, g_value_get_object (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_verify_status_class_init (OdVerifyStatusClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_verify_status_dispose;
  object_class->get_property = od_verify_status_get_property;
  object_class->set_property = od_verify_status_set_property;

  properties[PROP_RUNNER] =
    g_param_spec_object ("runner", NULL, NULL, OD_TYPE_VERIFY_RUNNER,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_template_from_resource (widget_class, "/io/github/orderdesk/OrderDesk/ui/od-verify-status.ui");
  gtk_widget_class_bind_template_child (widget_class, OdVerifyStatus, verified_label);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyStatus, progress_label);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyStatus, progress_bar);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyStatus, verify_button);
  gtk_widget_class_bind_template_child (widget_class, OdVerifyStatus, cancel_button);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "verifystatus");
}

static void
od_verify_status_init (OdVerifyStatus *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  update (self);
}

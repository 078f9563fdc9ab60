/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-application.h"
#include "od-preferences.h"
#include "od-tooltip.h"
#include "od-welcome.h"

struct _OdPreferences
{
  AdwPreferencesWindow  parent_instance;

  AdwEntryRow          *url_row;
  AdwEntryRow          *token_row;
  AdwActionRow         *ca_row;
  GtkWidget            *ca_clear_button;
  GtkLabel             *error_label;
  GtkButton            *apply_button;
  AdwPreferencesGroup  *profiles_group;
};

G_DEFINE_FINAL_TYPE (OdPreferences, od_preferences, ADW_TYPE_PREFERENCES_WINDOW)

enum {
  APPLY,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static gboolean
validate (OdPreferences *self)
{
  const char *token = gtk_editable_get_text (GTK_EDITABLE (self->token_row));
  const char *message = od_check_server_url (gtk_editable_get_text (GTK_EDITABLE (self->url_row)));

  if (message == NULL && *token != '\0')
    message = od_check_token (token);
  gtk_label_set_label (self->error_label, message ? message : "");
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), message != NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->apply_button), message == NULL);
  return message == NULL;
}

static void
on_changed (OdPreferences *self)
{
  validate (self);
}

static void
on_apply (OdPreferences *self)
{
  if (!validate (self))
    return;
  g_signal_emit (self, signals[APPLY], 0,
                 gtk_editable_get_text (GTK_EDITABLE (self->url_row)),
                 gtk_editable_get_text (GTK_EDITABLE (self->token_row)));
  gtk_window_close (GTK_WINDOW (self));
}

static void
update_ca (OdPreferences *self)
{
  GSettings *settings = od_application_get_settings ();
  g_autofree char *ca = settings ? g_settings_get_string (settings, "ca-file") : NULL;

  adw_action_row_set_subtitle (self->ca_row, ca && *ca ? ca : _("Only the system’s"));
  gtk_widget_set_visible (self->ca_clear_button, ca && *ca);
}

static void
on_ca_chosen (GtkNativeDialog *dialog,
              int              response,
              OdPreferences   *self)
{
  GSettings *settings = od_application_get_settings ();

  if (response == GTK_RESPONSE_ACCEPT && settings != NULL)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = g_file_get_path (file);
      g_autoptr(GError) error = NULL;
      g_autoptr(GTlsDatabase) database = g_tls_file_database_new (path, &error);

      if (database == NULL)
        {
          g_autofree char *message = g_strdup_printf (_("This file holds no usable certificate: %s"),
                                                      error->message);

          gtk_label_set_label (self->error_label, message);
          gtk_widget_set_visible (GTK_WIDGET (self->error_label), TRUE);
        }
      else
        g_settings_set_string (settings, "ca-file", path);
      update_ca (self);
    }
  gtk_native_dialog_destroy (dialog);
  g_object_unref (dialog);
}

static void
on_choose_ca (OdPreferences *self)
{
  GtkFileChooserNative *chooser;
  g_autoptr(GtkFileFilter) filter = gtk_file_filter_new ();

  chooser = gtk_file_chooser_native_new (_("Trusted Certificate Authority"), GTK_WINDOW (self),
                                         GTK_FILE_CHOOSER_ACTION_OPEN, _("_Trust"), _("_Cancel"));
  gtk_file_filter_set_name (filter, _("PEM certificates"));
  gtk_file_filter_add_suffix (filter, "pem");
  gtk_file_filter_add_suffix (filter, "crt");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), filter);
  g_signal_connect (chooser, "response", G_CALLBACK (on_ca_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

static void
on_clear_ca (OdPreferences *self)
{
  GSettings *settings = od_application_get_settings ();

  if (settings != NULL)
    g_settings_set_string (settings, "ca-file", "");
  update_ca (self);
}

static void
on_rebuild (OdPreferences *self)
{
  GtkWindow *parent = gtk_window_get_transient_for (GTK_WINDOW (self));

  gtk_window_close (GTK_WINDOW (self));
  if (parent != NULL)
    gtk_widget_activate_action (GTK_WIDGET (parent), "win.rebuild", NULL);
}

static void
on_switch_profile (GtkButton     *button,
                   OdPreferences *self)
{
  const char *url = g_object_get_data (G_OBJECT (button), "od-url");

  g_signal_emit (self, signals[APPLY], 0, url, "");
  gtk_window_close (GTK_WINDOW (self));
}

static void
fill_profiles (OdPreferences *self,
               const char    *current)
{
  GSettings *settings = od_application_get_settings ();
  g_auto(GStrv) profiles = settings ? g_settings_get_strv (settings, "profiles") : NULL;
  guint n = 0;

  for (guint i = 0; profiles != NULL && profiles[i] != NULL; i++)
    {
      GtkWidget *row = adw_action_row_new ();

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), profiles[i]);
      adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
      if (g_strcmp0 (profiles[i], current) == 0)
        adw_action_row_set_subtitle (ADW_ACTION_ROW (row), _("In use"));
      else
        {
          GtkWidget *button = gtk_button_new_with_mnemonic (_("_Switch"));

          gtk_widget_set_valign (button, GTK_ALIGN_CENTER);
          g_object_set_data_full (G_OBJECT (button), "od-url", g_strdup (profiles[i]), g_free);
          g_signal_connect (button, "clicked", G_CALLBACK (on_switch_profile), self);
          adw_action_row_add_suffix (ADW_ACTION_ROW (row), button);
        }
      adw_preferences_group_add (self->profiles_group, row);
      n++;
    }
  gtk_widget_set_visible (GTK_WIDGET (self->profiles_group), n > 0);
}

OdPreferences *
od_preferences_new (GtkWindow  *parent,
                    const char *server_url)
{
  OdPreferences *self = g_object_new (OD_TYPE_PREFERENCES, "transient-for", parent, NULL);

  gtk_editable_set_text (GTK_EDITABLE (self->url_row), server_url ? server_url : "http://127.0.0.1:8080");
  fill_profiles (self, server_url);
  update_ca (self);
  validate (self);
  return self;
}

static void
od_preferences_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), OD_TYPE_PREFERENCES);
  G_OBJECT_CLASS (od_preferences_parent_class)->dispose (object);
}

static void
od_preferences_class_init (OdPreferencesClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_preferences_dispose;

  signals[APPLY] =
    g_signal_new ("apply", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRING);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/orderdesk/OrderDesk/ui/od-preferences.ui");
  gtk_widget_class_bind_template_child (widget_class, OdPreferences, url_row);
  gtk_widget_class_bind_template_child (widget_class, OdPreferences, token_row);
  gtk_widget_class_bind_template_child (widget_class, OdPreferences, ca_row);
  gtk_widget_class_bind_template_child (widget_class, OdPreferences, ca_clear_button);
  gtk_widget_class_bind_template_child (widget_class, OdPreferences, error_label);
  gtk_widget_class_bind_template_child (widget_class, OdPreferences, apply_button);
  gtk_widget_class_bind_template_child (widget_class, OdPreferences, profiles_group);
  gtk_widget_class_bind_template_callback (widget_class, on_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_apply);
  gtk_widget_class_bind_template_callback (widget_class, on_choose_ca);
  gtk_widget_class_bind_template_callback (widget_class, on_clear_ca);
  gtk_widget_class_bind_template_callback (widget_class, on_rebuild);
}

static void
od_preferences_init (OdPreferences *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  od_accessible_label_buttons (GTK_WIDGET (self->token_row), _("Show or Hide the Token"));
}

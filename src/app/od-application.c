/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <string.h>

#include "od-application.h"
#include "od-preferences.h"
#include "od-resources.h"
#include "od-window.h"

struct _OdApplication
{
  AdwApplication  parent_instance;

  char           *server;
  char           *cache;
  char           *token;
  gboolean        offline;
};

G_DEFINE_FINAL_TYPE (OdApplication, od_application, ADW_TYPE_APPLICATION)

GSettings *
od_application_get_settings (void)
{
  static GSettings *settings;
  static gsize initialized;

  if (g_once_init_enter (&initialized))
    {
      GSettingsSchemaSource *source = g_settings_schema_source_get_default ();
      g_autoptr(GSettingsSchema) schema = NULL;

      if (source != NULL)
        schema = g_settings_schema_source_lookup (source, "io.github.orderdesk.OrderDesk", TRUE);
      if (schema != NULL)
        settings = g_settings_new_full (schema, NULL, NULL);
      else
        g_message ("The settings schema is not installed: settings are not kept");
      g_once_init_leave (&initialized, 1);
    }
  return settings;
}

static char *
read_token_file (const char  *path,
                 GError     **error)
{
  g_autofree char *contents = NULL;

  if (!g_file_get_contents (path, &contents, NULL, error))
    return NULL;
  return g_strdup (g_strstrip (contents));
}

static int
od_application_handle_local_options (GApplication *app,
                                     GVariantDict *options)
{
  OdApplication *self = OD_APPLICATION (app);
  const char *token_file = NULL;

  /* Before anything is read: --version needs no token. */
  if (g_variant_dict_contains (options, "version"))
    {
      g_print ("orderdesk %s\n", PACKAGE_VERSION);
      return 0;
    }
  g_variant_dict_lookup (options, "server", "s", &self->server);
  g_variant_dict_lookup (options, "cache", "^ay", &self->cache);
  self->offline = g_variant_dict_contains (options, "offline");
  if (g_variant_dict_lookup (options, "token-file", "^&ay", &token_file))
    {
      g_autoptr(GError) error = NULL;

      self->token = read_token_file (token_file, &error);
      if (self->token == NULL)
        {
          g_printerr ("%s\n", error->message);
          return 1;
        }
    }
  else if (g_getenv ("ORDERDESK_TOKEN") != NULL)
    self->token = g_strdup (g_getenv ("ORDERDESK_TOKEN"));

  return -1;
}

static void
od_application_activate (GApplication *app)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (app));

  if (window == NULL)
    window = GTK_WINDOW (od_window_new (OD_APPLICATION (app)));
  gtk_window_present (window);
}

static void
preferences_action (GSimpleAction *action,
                    GVariant      *parameter,
                    gpointer       user_data)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (user_data));

  if (OD_IS_WINDOW (window))
    od_window_show_preferences (OD_WINDOW (window));
}

static void
about_action (GSimpleAction *action,
              GVariant      *parameter,
              gpointer       user_data)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (user_data));
  const char *developers[] = { "The OrderDesk developers", NULL };

  adw_show_about_window (window,
                         "application-name", "OrderDesk",
                         "application-icon", APP_ID,
                         "version", PACKAGE_VERSION,
                         "developer-name", "The OrderDesk developers",
                         "developers", developers,
                         "license-type", GTK_LICENSE_GPL_3_0,
                         "website", "https://github.com/orderdesk/orderdesk",
                         "issue-url", "https://github.com/orderdesk/orderdesk/issues",
                         /* TRANSLATORS: your names, one a line */
                         "translator-credits", _("translator-credits"),
                         NULL);
}

static void
quit_action (GSimpleAction *action,
             GVariant      *parameter,
             gpointer       user_data)
{
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (user_data));

  /* Closing the windows lets them save their state first. */
  for (GList *l = windows; l != NULL; l = l->next)
    gtk_window_close (l->data);
}

static void
od_application_startup (GApplication *app)
{
  static const GActionEntry entries[] = {
    { "preferences", preferences_action, NULL, NULL, NULL, { 0 } },
    { "about", about_action, NULL, NULL, NULL, { 0 } },
    { "quit", quit_action, NULL, NULL, NULL, { 0 } },
  };
  static const struct { const char *action; const char *accels[2]; } accels[] = {
    { "app.preferences", { "<Primary>comma", NULL } },
    { "app.quit", { "<Primary>q", NULL } },
    { "win.new-order", { "<Primary>n", NULL } },
    { "win.search", { "<Primary>f", NULL } },
    { "win.export", { "<Primary>e", NULL } },
    { "win.ledger", { "<Primary>l", NULL } },
    { "order.add-item", { "<Primary>i", NULL } },
    { "order.place", { "<Primary>Return", NULL } },
    { "order.ship", { "<Primary><Shift>s", NULL } },
    { "order.mark-delivered", { "<Primary><Shift>d", NULL } },
    { "order.cancel", { "<Primary>Delete", NULL } },
    { "order.add-note", { "<Primary><Shift>n", NULL } },
    { "order.refund", { "<Primary><Shift>r", NULL } },
  };

  G_APPLICATION_CLASS (od_application_parent_class)->startup (app);

  gtk_icon_theme_add_resource_path (gtk_icon_theme_get_for_display (gdk_display_get_default ()),
                                    "/io/github/orderdesk/OrderDesk/icons");
  g_action_map_add_action_entries (G_ACTION_MAP (app), entries, G_N_ELEMENTS (entries), app);
  for (guint i = 0; i < G_N_ELEMENTS (accels); i++)
    gtk_application_set_accels_for_action (GTK_APPLICATION (app), accels[i].action, accels[i].accels);
}

const char *
od_application_get_option_server (OdApplication *self)
{
  g_return_val_if_fail (OD_IS_APPLICATION (self), NULL);
  return self->server;
}

const char *
od_application_get_option_cache (OdApplication *self)
{
  g_return_val_if_fail (OD_IS_APPLICATION (self), NULL);
  return self->cache;
}

const char *
od_application_get_option_token (OdApplication *self)
{
  g_return_val_if_fail (OD_IS_APPLICATION (self), NULL);
  return self->token;
}

gboolean
od_application_get_option_offline (OdApplication *self)
{
  g_return_val_if_fail (OD_IS_APPLICATION (self), FALSE);
  return self->offline;
}

OdApplication *
od_application_new (GApplicationFlags flags)
{
  return g_object_new (OD_TYPE_APPLICATION,
                       "application-id", APP_ID,
                       "resource-base-path", "/io/github/orderdesk/OrderDesk",
                       "flags", flags,
                       NULL);
}

static void
od_application_finalize (GObject *object)
{
  OdApplication *self = OD_APPLICATION (object);

  g_free (self->server);
  g_free (self->cache);
  if (self->token != NULL)
    memset (self->token, 0, strlen (self->token));
  g_free (self->token);

  G_OBJECT_CLASS (od_application_parent_class)->finalize (object);
}

static void
od_application_class_init (OdApplicationClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);

  object_class->finalize = od_application_finalize;
  app_class->handle_local_options = od_application_handle_local_options;
  app_class->activate = od_application_activate;
  app_class->startup = od_application_startup;

  /* Referencing the resource keeps it (and its constructor) in the link
   * when the code comes from a static library. */
  g_resources_register (od_get_resource ());
}

static void
od_application_init (OdApplication *self)
{
  const GOptionEntry entries[] = {
    { "server", 's', 0, G_OPTION_ARG_STRING, NULL,
      N_("Server base URL, e.g. http://127.0.0.1:8080"), N_("URL") },
    { "token-file", 't', 0, G_OPTION_ARG_FILENAME, NULL,
      N_("Read the access token from FILE (else ORDERDESK_TOKEN or the keyring)"), N_("FILE") },
    { "cache", 'c', 0, G_OPTION_ARG_FILENAME, NULL,
      N_("Use this cache file instead of the profile's"), N_("FILE") },
    { "offline", 0, 0, G_OPTION_ARG_NONE, NULL,
      N_("Browse the cache without connecting"), NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, NULL,
      N_("Print the version and exit"), NULL },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };

  g_application_add_main_option_entries (G_APPLICATION (self), entries);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <libsoup/soup.h>
#include <string.h>

#include "od-tooltip.h"
#include "od-welcome.h"

/* The first-run page: server URL and token, or the local demo server when
 * one answers on the default address. */

struct _OdWelcome
{
  GtkWidget        parent_instance;

  AdwEntryRow     *url_row;
  AdwEntryRow     *token_row;
  GtkLabel        *error_label;
  GtkButton       *connect_button;
  GtkRevealer     *demo_revealer;

  SoupSession     *session;
  GCancellable    *cancellable;
  gboolean         demo_found;
};

G_DEFINE_FINAL_TYPE (OdWelcome, od_welcome, GTK_TYPE_WIDGET)

enum {
  CONNECT,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

const char *
od_check_server_url (const char *url)
{
  g_autoptr(GUri) uri = NULL;
  const char *scheme;

  if (url == NULL || *url == '\0')
    return _("Enter the server’s address");
  uri = g_uri_parse (url, G_URI_FLAGS_NONE, NULL);
  if (uri == NULL)
    return _("This is not a valid address");
  scheme = g_uri_get_scheme (uri);
  if (g_strcmp0 (scheme, "http") != 0 && g_strcmp0 (scheme, "https") != 0)
    return _("The address must start with http:// or https://");
  if (g_uri_get_host (uri) == NULL || *g_uri_get_host (uri) == '\0')
    return _("The address needs a host name");
  return NULL;
}

const char *
od_check_token (const char *token)
{
  gsize len = token ? strlen (token) : 0;

  if (len == 0)
    return _("Enter the access token");
  if (len > 512)
    return _("The token is too long");
  for (gsize i = 0; i < len; i++)
    if (token[i] <= 0x20 || token[i] >= 0x7f)
      return _("The token may only contain printable characters without spaces");
  return NULL;
}

static gboolean
validate (OdWelcome *self,
          gboolean   show)
{
  const char *message = od_check_server_url (gtk_editable_get_text (GTK_EDITABLE (self->url_row)));

  if (message == NULL)
    message = od_check_token (gtk_editable_get_text (GTK_EDITABLE (self->token_row)));
  gtk_label_set_label (self->error_label, message ? message : "");
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), show && message != NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->connect_button), message == NULL);
  return message == NULL;
}

static void
on_changed (OdWelcome *self)
{
  validate (self, *gtk_editable_get_text (GTK_EDITABLE (self->token_row)) != '\0');
}

static void
on_connect (OdWelcome *self)
{
  g_autofree char *url = NULL;

  if (!validate (self, TRUE))
    return;
  url = g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->url_row)));
  /* A trailing slash would make a second profile for the same server. */
  while (g_str_has_suffix (url, "/"))
    url[strlen (url) - 1] = '\0';
  g_signal_emit (self, signals[CONNECT], 0, url,
                 gtk_editable_get_text (GTK_EDITABLE (self->token_row)));
}

static void
on_demo (OdWelcome *self)
{
  g_signal_emit (self, signals[CONNECT], 0, OD_DEMO_URL, OD_DEMO_TOKEN);
}

static void
on_probed (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  OdWelcome *self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = soup_session_send_and_read_finish (SOUP_SESSION (source), result, &error);
  SoupMessage *message;

  if (body == NULL)
    return; /* cancelled, or nothing listens: no demo */
  message = soup_session_get_async_result_message (SOUP_SESSION (source), result);
  self->demo_found = message != NULL && soup_message_get_status (message) == SOUP_STATUS_OK;
  gtk_revealer_set_reveal_child (self->demo_revealer, self->demo_found);
}

void
od_welcome_start_probe (OdWelcome *self)
{
  g_autoptr(SoupMessage) message = NULL;

  g_return_if_fail (OD_IS_WELCOME (self));

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  self->cancellable = g_cancellable_new ();
  if (self->session == NULL)
    self->session = soup_session_new_with_options ("timeout", 3, NULL);
  message = soup_message_new (SOUP_METHOD_GET, OD_DEMO_URL "/v1/health");
  soup_session_send_and_read_async (self->session, message, G_PRIORITY_DEFAULT,
                                    self->cancellable, on_probed, self);
}

gboolean
od_welcome_get_demo_found (OdWelcome *self)
{
  g_return_val_if_fail (OD_IS_WELCOME (self), FALSE);
  return self->demo_found;
}

GtkWidget *
od_welcome_new (void)
{
  return g_object_new (OD_TYPE_WELCOME, NULL);
}

static void
od_welcome_dispose (GObject *object)
{
  OdWelcome *self = OD_WELCOME (object);

  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->session);
  gtk_widget_dispose_template (GTK_WIDGET (self), OD_TYPE_WELCOME);
  {
    GtkWidget *child;

    /* Children the template does not name are ours to unparent. */
    while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
      gtk_widget_unparent (child);
  }

  G_OBJECT_CLASS (od_welcome_parent_class)->dispose (object);
}

static void
od_welcome_class_init (OdWelcomeClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_welcome_dispose;

  signals[CONNECT] =
    g_signal_new ("connect", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRING);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/orderdesk/OrderDesk/ui/od-welcome.ui");
  gtk_widget_class_bind_template_child (widget_class, OdWelcome, url_row);
  gtk_widget_class_bind_template_child (widget_class, OdWelcome, token_row);
  gtk_widget_class_bind_template_child (widget_class, OdWelcome, error_label);
  gtk_widget_class_bind_template_child (widget_class, OdWelcome, connect_button);
  gtk_widget_class_bind_template_child (widget_class, OdWelcome, demo_revealer);
  gtk_widget_class_bind_template_callback (widget_class, on_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_connect);
  gtk_widget_class_bind_template_callback (widget_class, on_demo);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
}

static void
od_welcome_init (OdWelcome *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  od_accessible_label_buttons (GTK_WIDGET (self->token_row), _("Show or Hide the Token"));
}

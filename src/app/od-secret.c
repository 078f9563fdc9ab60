/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <libsecret/secret.h>

#include "od-secret.h"

static const SecretSchema *
od_secret_schema (void)
{
  static const SecretSchema schema = {
    "io.github.orderdesk.OrderDesk.Token", SECRET_SCHEMA_NONE,
    {
      { "server", SECRET_SCHEMA_ATTRIBUTE_STRING },
      { NULL, 0 },
    },
    0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  };

  return &schema;
}

void
od_secret_store_async (const char          *server_url,
                       const char          *token,
                       GCancellable        *cancellable,
                       GAsyncReadyCallback  callback,
                       gpointer             user_data)
{
  g_autofree char *label = g_strdup_printf (_("OrderDesk token for %s"), server_url);

  secret_password_store (od_secret_schema (), SECRET_COLLECTION_DEFAULT, label, token,
                         cancellable, callback, user_data,
                         "server", server_url,
                         NULL);
}

gboolean
od_secret_store_finish (GAsyncResult  *result,
                        GError       **error)
{
  return secret_password_store_finish (result, error);
}

void
od_secret_lookup_async (const char          *server_url,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  secret_password_lookup (od_secret_schema (), cancellable, callback, user_data,
                          "server", server_url,
                          NULL);
}

char *
od_secret_lookup_finish (GAsyncResult  *result,
                         GError       **error)
{
  g_autofree char *secret = secret_password_lookup_finish (result, error);

  /* The secret's memory is wiped by libsecret; hand back a plain copy
   * for the HTTP layer. */
  return g_strdup (secret);
}

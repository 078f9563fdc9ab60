/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-rel-server.h"

#include "od-test-process.h"

#include <stdarg.h>
#include <string.h>

struct _OdRelServer
{
  OdTestProcess *process;
};

static const OdTestToken rel_tokens[] = {
  { "olga", "operator", OD_REL_OPERATOR },
  { "vera", "viewer", OD_REL_VIEWER },
};

OdRelServer *
od_rel_server_new (const char *first_arg,
                   ...)
{
  OdRelServer *server = g_new0 (OdRelServer, 1);
  g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func (g_free);
  va_list ap;

  server->process = od_test_process_new ("od-rel", "under test", rel_tokens,
                                         G_N_ELEMENTS (rel_tokens));
  g_ptr_array_add (args, g_strdup_printf ("--store=sqlite:%s/events.sqlite",
                                          od_test_process_dir (server->process)));
  va_start (ap, first_arg);
  for (const char *arg = first_arg; arg != NULL; arg = va_arg (ap, const char *))
    g_ptr_array_add (args, g_strdup (arg));
  va_end (ap);
  g_ptr_array_add (args, NULL);
  od_test_process_start (server->process, 0, (const char * const *) args->pdata);
  return server;
}

const char *
od_rel_server_url (OdRelServer *server)
{
  return od_test_process_url (server->process);
}

guint16
od_rel_server_port (OdRelServer *server)
{
  return od_test_process_port (server->process);
}

const char *
od_rel_server_dir (OdRelServer *server)
{
  return od_test_process_dir (server->process);
}

gboolean
od_rel_server_alive (OdRelServer *server)
{
  return od_test_process_alive (server->process);
}

char *
od_rel_server_log (OdRelServer *server)
{
  return od_test_process_read_log (server->process);
}

void
od_rel_server_stop (OdRelServer *server)
{
  od_test_process_stop (server->process);
}

void
od_rel_server_free (OdRelServer *server)
{
  if (server == NULL)
    return;
  od_test_process_free (server->process, FALSE);
  g_free (server);
}

guint
od_rel_send (SoupSession *session,
             const char  *method,
             const char  *url,
             const char  *token,
             const char  *body,
             GBytes     **response,
             GError     **error)
{
  g_autoptr(SoupMessage) msg = soup_message_new (method, url);
  g_autoptr(GBytes) bytes = NULL;

  g_assert_nonnull (msg);
  if (token != NULL)
    {
      g_autofree char *value = g_strconcat ("Bearer ", token, NULL);

      soup_message_headers_replace (soup_message_get_request_headers (msg),
                                    "Authorization", value);
    }
  if (body != NULL)
    {
      g_autofree char *key = g_strdup_printf ("rel-%08x%08x", g_random_int (), g_random_int ());
      g_autoptr(GBytes) request = g_bytes_new (body, strlen (body));

      soup_message_headers_replace (soup_message_get_request_headers (msg),
                                    "Idempotency-Key", key);
      soup_message_set_request_body_from_bytes (msg, "application/json", request);
    }
  bytes = soup_session_send_and_read (session, msg, NULL, error);
  if (bytes == NULL)
    return 0;
  if (response != NULL)
    *response = g_steal_pointer (&bytes);
  return soup_message_get_status (msg);
}

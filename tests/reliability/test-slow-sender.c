/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Slow senders (slowloris): clients that send their request one byte a
 * second are cut off by --request-timeout, however steadily they keep
 * sending, and the server goes on answering everyone else meanwhile. */

#include "od-rel-server.h"

#include <json-glib/json-glib.h>
#include <string.h>

#define TIMEOUT_S 2
#define N_SLOW    24

typedef struct
{
  GSocketConnection *connection;
  const char        *request;
  gsize              sent;
  gint64             closed_at; /* 0 while open */
  gboolean           answered;  /* the server sent something (a 408) */
} Slow;

static const char *requests[] = {
  /* Headers that never end. */
  "POST /v1/commands HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " OD_REL_OPERATOR "\r\n"
  "Idempotency-Key: slow-1\r\nContent-Type: application/json\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa"
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  /* A body announced, then dribbled. */
  "POST /v1/commands HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " OD_REL_OPERATOR "\r\n"
  "Idempotency-Key: slow-2\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
  "{\"type\":\"CreateOrder\",\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"data\":{"
  "\"customer_name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  /* A GET that never finishes its headers. */
  "GET /v1/head HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " OD_REL_VIEWER "\r\n"
  "X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

static GSocketConnection *
connect_to (OdRelServer *server)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GError) error = NULL;
  GSocketConnection *connection;

  connection = g_socket_client_connect_to_host (client, "127.0.0.1", od_rel_server_port (server),
                                                NULL, &error);
  g_assert_no_error (error);
  return connection;
}

/* Reads what the server sent, if anything; TRUE when it has closed. */
static gboolean
poll_closed (Slow *slow)
{
  GSocket *socket = g_socket_connection_get_socket (slow->connection);
  char buffer[1024];

  while (g_socket_condition_check (socket, G_IO_IN | G_IO_HUP | G_IO_ERR))
    {
      g_autoptr(GError) error = NULL;
      gssize n = g_socket_receive_with_blocking (socket, buffer, sizeof buffer, FALSE, NULL,
                                                 &error);

      if (n > 0)
        {
          slow->answered = TRUE;
          continue;
        }
      if (n == 0 || !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return TRUE;
      break;
    }
  return FALSE;
}

/* One request answered in good time by a well-behaved client. */
static gint64
timed_head (SoupSession *session,
            OdRelServer *server)
{
  g_autofree char *url = g_strconcat (od_rel_server_url (server), "/v1/head", NULL);
  g_autoptr(GError) error = NULL;
  gint64 start = g_get_monotonic_time ();
  guint status = od_rel_send (session, "GET", url, OD_REL_VIEWER, NULL, NULL, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (status, ==, 200);
  return g_get_monotonic_time () - start;
}

static void
test_slow_senders (void)
{
  g_autoptr(OdRelServer) server = od_rel_server_new ("--request-timeout", G_STRINGIFY (TIMEOUT_S),
                                                     NULL);
  g_autoptr(SoupSession) session = soup_session_new_with_options ("timeout", 10, NULL);
  Slow slow[N_SLOW] = { { 0 } };
  gint64 start = g_get_monotonic_time ();
  gint64 worst_other = 0;
  guint n_other = 0;
  guint open = N_SLOW;

  for (guint i = 0; i < N_SLOW; i++)
    {
      slow[i].connection = connect_to (server);
      slow[i].request = requests[i % G_N_ELEMENTS (requests)];
    }

  /* One byte a second on each connection, until the server has closed
   * them all or well past the point where it should have. */
  while (open > 0 && g_get_monotonic_time () - start < (TIMEOUT_S + 8) * G_USEC_PER_SEC)
    {
      for (guint i = 0; i < N_SLOW; i++)
        {
          Slow *s = &slow[i];
          GSocket *socket = g_socket_connection_get_socket (s->connection);
          g_autoptr(GError) error = NULL;

          if (s->closed_at != 0)
            continue;
          if (poll_closed (s)
              || (s->sent < strlen (s->request)
                  && g_socket_send (socket, s->request + s->sent, 1, NULL, &error) < 0))
            {
              s->closed_at = g_get_monotonic_time ();
              open--;
              continue;
            }
          s->sent++;
        }

      /* Everyone else is served meanwhile, and promptly. */
      for (guint k = 0; k < 5; k++)
        {
          worst_other = MAX (worst_other, timed_head (session, server));
          n_other++;
        }
      g_usleep (G_USEC_PER_SEC - MIN (worst_other, G_USEC_PER_SEC / 2));
    }

  for (guint i = 0; i < N_SLOW; i++)
    {
      g_test_message ("slow client %u: %" G_GSIZE_FORMAT " bytes sent, closed after %.1f s%s", i,
                      slow[i].sent,
                      slow[i].closed_at ? (slow[i].closed_at - start) / 1e6 : -1.0,
                      slow[i].answered ? " with an answer" : "");
      /* Cut off: not before the timeout, and well before the request
       * could have been completed at a byte a second. */
      g_assert_cmpint (slow[i].closed_at, !=, 0);
      g_assert_cmpint (slow[i].closed_at - start, >=, (TIMEOUT_S - 1) * G_USEC_PER_SEC);
      g_assert_cmpint (slow[i].closed_at - start, <=, (TIMEOUT_S + 5) * G_USEC_PER_SEC);
      g_assert_cmpuint (slow[i].sent, <, strlen (slow[i].request));
      g_io_stream_close (G_IO_STREAM (slow[i].connection), NULL, NULL);
      g_object_unref (slow[i].connection);
    }
  g_test_message ("%u requests of other clients meanwhile, the slowest took %.0f ms", n_other,
                  worst_other / 1e3);
  g_assert_cmpuint (n_other, >=, 5);
  g_assert_cmpint (worst_other, <, G_USEC_PER_SEC);

  /* Nothing was committed, and the server still works. */
  {
    g_autofree char *url = g_strconcat (od_rel_server_url (server), "/v1/head", NULL);
    g_autoptr(GBytes) body = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_cmpuint (od_rel_send (session, "GET", url, OD_REL_VIEWER, NULL, &body, &error), ==, 200);
    g_assert_no_error (error);
    g_autoptr(JsonParser) parser = json_parser_new ();

    json_parser_load_from_data (parser, g_bytes_get_data (body, NULL), g_bytes_get_size (body), &error);
    g_assert_no_error (error);
    g_assert_cmpint (json_object_get_int_member (json_node_get_object (json_parser_get_root (parser)),
                                                 "head"), ==, 0);
  }
  g_assert_true (od_rel_server_alive (server));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/slow-sender/cut-off", test_slow_senders);
  return g_test_run ();
}

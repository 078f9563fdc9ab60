/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Durable commands per second through 1 or 2 orderdesk-server instances on
 * one PostgreSQL, and the latency from a command's acknowledgement to its
 * event arriving at a subscriber on the other instance.
 *
 *   . tests/pg-cluster.sh start
 *   OD_SERVER_BIN=build-pg/src/server/orderdesk-server \
 *     build-pg/bench/pg/bench-pg --instances 2 --clients 64 --seconds 10
 *
 * See docs/benchmarks.md. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "od-pg-test.h"
#include "od-store.h"

static int opt_instances = 2;
static int opt_clients = 16;
static int opt_seconds = 10;
static int opt_preload = 0;

typedef struct
{
  OdPgServer *servers[2];
  int         n_servers;
  gint64      deadline;
  GMutex      lock;
  GHashTable *acked;     /* position → gint64 monotonic usec of the 200 */
  GHashTable *sent;      /* position → gint64 monotonic usec the POST began */
  GHashTable *delivered; /* position → gint64 monotonic usec */
  guint64     n_ok;
  guint64     n_other;
} Bench;

typedef struct
{
  Bench             *bench;
  int                index;
  GSocketConnection *connection;
} Client;

static void
record (GHashTable *table,
        gint64      position,
        gint64      usec)
{
  gint64 *key = g_memdup2 (&position, sizeof position);
  gint64 *value = g_memdup2 (&usec, sizeof usec);

  g_hash_table_insert (table, key, value);
}

/* The clients speak HTTP/1.1 on one keep-alive connection each, written
 * and read by hand: a libsoup session per thread costs more CPU than the
 * server it measures on two cores. */
static GSocketConnection *
connect_to (const char *url)
{
  g_autoptr(GUri) uri = g_uri_parse (url, G_URI_FLAGS_NONE, NULL);
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GError) error = NULL;
  GSocketConnection *connection;

  connection = g_socket_client_connect_to_host (client, g_uri_get_host (uri), g_uri_get_port (uri),
                                                NULL, &error);
  if (connection == NULL)
    g_error ("connect %s: %s", url, error->message);
  g_socket_set_option (g_socket_connection_get_socket (connection), IPPROTO_TCP, TCP_NODELAY, 1,
                       NULL);
  return connection;
}

/* Reads one response with Content-Length into *body; returns the status. */
static int
read_response (GInputStream *in,
               GString      *buf,
               char        **body)
{
  for (;;)
    {
      char *end = strstr (buf->str, "\r\n\r\n");
      char tmp[16384];
      gssize n;

      if (end != NULL)
        {
          const char *cl = g_strstr_len (buf->str, end - buf->str, "Content-Length: ");
          gsize header_len = end + 4 - buf->str;
          gsize body_len = cl ? strtoul (cl + 16, NULL, 10) : 0;

          if (buf->len >= header_len + body_len)
            {
              int status = atoi (buf->str + 9);

              *body = g_strndup (buf->str + header_len, body_len);
              g_string_erase (buf, 0, header_len + body_len);
              return status;
            }
        }
      n = g_input_stream_read (in, tmp, sizeof tmp, NULL, NULL);
      if (n <= 0)
        return -1;
      g_string_append_len (buf, tmp, n);
    }
}

static gpointer
client_thread (gpointer data)
{
  Client *c = data;
  Bench *b = c->bench;
  OdPgServer *server = b->servers[c->index % b->n_servers];
  g_autoptr(GSocketConnection) connection = g_steal_pointer (&c->connection);
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (connection));
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (connection));
  g_autoptr(GString) buf = g_string_new (NULL);
  guint step = 0;

  while (g_get_monotonic_time () < b->deadline)
    {
      g_autofree char *id = od_uuid_v7_new ();

      /* A realistic mix: create, three items, place. */
      for (guint k = 0; k < 5; k++, step++)
        {
          g_autofree char *body = NULL;
          g_autofree char *request = NULL;
          g_autofree char *response = NULL;
          gint64 t0, t1;
          int status;

          if (k == 0)
            body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                                    "{\"customer_name\":\"Bench\",\"customer_email\":\"b@x.org\","
                                    "\"currency\":\"EUR\"}}", id);
          else if (k < 4)
            body = g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":"
                                    "{\"sku\":\"S%u\",\"name\":\"Item\",\"quantity\":1,"
                                    "\"unit_price_cents\":100}}", id, k);
          else
            body = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\"}", id);
          request = g_strdup_printf ("POST /v1/commands HTTP/1.1\r\nHost: bench\r\n"
                                     "Authorization: Bearer " OD_PG_TEST_OPERATOR "\r\n"
                                     "Idempotency-Key: bench-%d-%u\r\n"
                                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                                     c->index, step, strlen (body), body);

          t0 = g_get_monotonic_time ();
          if (!g_output_stream_write_all (out, request, strlen (request), NULL, NULL, NULL))
            g_error ("client %d: write failed", c->index);
          status = read_response (in, buf, &response);
          t1 = g_get_monotonic_time ();
          if (status < 0)
            g_error ("client %d: connection closed", c->index);

          g_mutex_lock (&b->lock);
          if (status == 200)
            {
              const char *pos = strstr (response, "\"position\":");
              gint64 position = pos ? g_ascii_strtoll (pos + 11, NULL, 10) : 0;

              b->n_ok++;
              /* Latency is measured for commands to A only; with two
               * instances the subscriber is on B, so each crosses over. */
              if (server == b->servers[0])
                {
                  record (b->acked, position, t1);
                  record (b->sent, position, t0);
                }
            }
          else
            b->n_other++;
          g_mutex_unlock (&b->lock);
        }
    }
  return NULL;
}

static void
on_event (OdEvent  *event,
          gint64    received_usec,
          gpointer  user_data)
{
  Bench *b = user_data;

  g_mutex_lock (&b->lock);
  record (b->delivered, event->position, received_usec);
  g_mutex_unlock (&b->lock);
}

static int
cmp_int64 (gconstpointer a,
           gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

static void
print_latency (const char *what,
               Bench      *b,
               GHashTable *from)
{
  g_autoptr(GArray) lat = g_array_new (FALSE, FALSE, sizeof (gint64));
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, from);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      gint64 *got = g_hash_table_lookup (b->delivered, key);

      if (got != NULL)
        {
          gint64 d = *got - *(gint64 *) value;

          g_array_append_val (lat, d);
        }
    }
  g_array_sort (lat, cmp_int64);
  if (lat->len == 0)
    {
      g_print ("%s: no samples\n", what);
      return;
    }
  g_print ("%s (n=%u): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", what, lat->len,
           g_array_index (lat, gint64, lat->len / 2) / 1e3,
           g_array_index (lat, gint64, MIN (lat->len - 1, lat->len * 99 / 100)) / 1e3,
           g_array_index (lat, gint64, lat->len - 1) / 1e3);
}

int
main (int   argc,
      char *argv[])
{
  GOptionEntry entries[] = {
    { "instances", 0, 0, G_OPTION_ARG_INT, &opt_instances, "Server instances (1 or 2)", "N" },
    { "clients", 0, 0, G_OPTION_ARG_INT, &opt_clients, "Concurrent clients", "N" },
    { "seconds", 0, 0, G_OPTION_ARG_INT, &opt_seconds, "Duration", "S" },
    { "preload", 0, 0, G_OPTION_ARG_INT, &opt_preload, "Events in the log before the run", "N" },
    { NULL }
  };
  g_autoptr(GOptionContext) context = g_option_context_new ("— PostgreSQL store benchmark");
  g_autoptr(GError) error = NULL;
  g_autofree char *dbname = NULL;
  g_autofree char *uri = NULL;
  OdPgSubscriber *sub;
  g_autofree char *failure = NULL;
  GPtrArray *events;
  GThread **threads;
  Client *clients;
  Bench b = { 0 };
  gint64 t0, t1;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  opt_instances = CLAMP (opt_instances, 1, 2);

  dbname = od_pg_test_create_db ();
  uri = od_pg_test_uri (dbname);
  g_mutex_init (&b.lock);
  b.acked = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  b.sent = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  b.delivered = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);

  /* A long log must not slow appends down (every look-up is by index).
   * It is written before the servers start, as a restored database
   * would be. */
  if (opt_preload > 0)
    {
      g_autoptr(OdStore) schema = od_store_open (uri, &error);
      PGconn *conn;

      if (schema == NULL)
        g_error ("%s", error->message);
      conn = od_pg_test_connect (dbname);
      g_autofree char *n = g_strdup_printf ("%d", opt_preload);
      const char *values[] = { n };
      gint64 t = g_get_monotonic_time ();

      PQclear (od_pg_test_exec (conn,
                                "INSERT INTO events (position, prev, order_id, version, type, "
                                "  recorded_at, actor, data) "
                                "SELECT g, g - 1, gen_random_uuid (), 1, 'OrderCreated', now (), "
                                "  'seed', '{\"customer_name\":\"Seed\",\"customer_email\":"
                                "\"s@x.org\",\"currency\":\"EUR\"}' "
                                "FROM generate_series (1, $1::bigint) g",
                                1, values));
      PQclear (od_pg_test_exec (conn, "SELECT setval ('event_position', $1::bigint)", 1, values));
      PQclear (od_pg_test_exec (conn, "ANALYZE events", 0, NULL));
      PQfinish (conn);
      g_print ("preloaded %d events in %.1f s\n", opt_preload, (g_get_monotonic_time () - t) / 1e6);
    }

  b.n_servers = opt_instances;
  for (int i = 0; i < opt_instances; i++)
    b.servers[i] = od_pg_server_start (uri, i == 0 ? "A" : "B");

  /* The subscriber is on the other instance when there are two: commands
   * to A reach it through NOTIFY.  It starts at the head of the log. */
  sub = od_pg_subscriber_start (b.servers[opt_instances - 1], opt_preload, on_event, &b);

  threads = g_new0 (GThread *, opt_clients);
  clients = g_new0 (Client, opt_clients);
  /* Connections are opened one by one before the clock starts: a burst
   * of connects overflows the server's accept queue. */
  for (int i = 0; i < opt_clients; i++)
    clients[i] = (Client) { &b, i, connect_to (od_pg_server_url (b.servers[i % b.n_servers])) };
  t0 = g_get_monotonic_time ();
  b.deadline = t0 + (gint64) opt_seconds * G_USEC_PER_SEC;
  for (int i = 0; i < opt_clients; i++)
    threads[i] = g_thread_new ("client", client_thread, &clients[i]);
  for (int i = 0; i < opt_clients; i++)
    g_thread_join (threads[i]);
  t1 = g_get_monotonic_time ();

  {
    g_autoptr(SoupSession) session = od_pg_session_new ();
    gint64 head = od_pg_get_head (session, b.servers[0]);

    if (!od_pg_subscriber_wait (sub, head, 30000))
      g_printerr ("subscriber did not reach head %" G_GINT64_FORMAT "\n", head);
  }
  events = od_pg_subscriber_stop (sub, &failure);
  if (failure != NULL)
    g_printerr ("subscriber: %s\n", failure);

  g_print ("instances %d, clients %d, %d s: %" G_GUINT64_FORMAT " commands acknowledged "
           "(%" G_GUINT64_FORMAT " refused), %.0f commands/s; subscriber on instance %c got %u events\n",
           opt_instances, opt_clients, opt_seconds, b.n_ok, b.n_other,
           b.n_ok / ((t1 - t0) / 1e6), 'A' + opt_instances - 1, events->len);
  print_latency ("ack -> delivered", &b, b.acked);
  print_latency ("sent -> delivered", &b, b.sent);
  g_ptr_array_unref (events);

  for (int i = 0; i < opt_instances; i++)
    od_pg_server_stop (b.servers[i]);
  od_pg_test_drop_db (dbname);
  g_free (threads);
  g_free (clients);
  return failure == NULL ? 0 : 1;
}

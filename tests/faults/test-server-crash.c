/* SPDX-License-Identifier: GPL-3.0-or-later */
/* kill -9 the server while 16 clients post commands, restart it on the
 * same store, and let every client retry the commands it got no answer
 * for with the same Idempotency-Key and the same body.  Then every
 * acknowledged command has exactly one event, at the position and
 * version it was answered, and the log holds no event that no
 * acknowledged command accounts for. */
#include "od-fault-server.h"

#include <string.h>

#define N_CLIENTS 16
#define N_KILLS   3

typedef struct
{
  char    *key;
  char    *body;
  char     order_id[OD_UUID_LEN + 1];
  char    *event_type;   /* what it must append */
  guint    status;       /* final answer */
  gint64   position;
  gint64   version;
  guint    unknown;      /* attempts without an answer */
  guint    retries_5xx;  /* 503/500/409 in flight: nothing stored, sent again */
  gboolean replayed;     /* the final answer was a replay */
} Cmd;

typedef struct
{
  guint           index;
  OdFaultServer  *server;
  GPtrArray      *cmds;   /* Cmd */
  volatile gint  *stop;
  char           *failure;
} Client;

static void
cmd_free (Cmd *c)
{
  g_free (c->key);
  g_free (c->body);
  g_free (c->event_type);
  g_free (c);
}

static Cmd *
cmd_new (Client     *client,
         const char *order_id,
         const char *event_type,
         char       *body)
{
  Cmd *c = g_new0 (Cmd, 1);

  c->key = g_strdup_printf ("crash-%u-%u-%s", client->index, client->cmds->len, order_id);
  c->body = body;
  g_strlcpy (c->order_id, order_id, sizeof c->order_id);
  c->event_type = g_strdup (event_type);
  return c;
}

/* Sends until the server answers with something final: no answer, 500,
 * 503 and 409 idempotency_in_flight store nothing, so the same request
 * goes again. */
static gboolean
send_until_answered (Client      *client,
                     SoupSession *session,
                     Cmd         *c)
{
  gint64 deadline = g_get_monotonic_time () + 40 * G_USEC_PER_SEC;

  for (;;)
    {
      g_autofree char *answer = NULL;
      gboolean replayed = FALSE;
      guint status;

      /* A restart keeps the port, so the URL stays the same string (it
       * is never replaced while clients run). */
      status = od_fault_post_command (session, client->server->url, c->key, c->body, &answer,
                                      &replayed);
      if (status == 0)
        c->unknown++;
      else if (status == 500 || status == 503
               || (status == 409 && strstr (answer, "idempotency_in_flight") != NULL))
        c->retries_5xx++;
      else
        {
          c->status = status;
          c->replayed = replayed;
          if (status != 200)
            {
              client->failure = g_strdup_printf ("%s (%s, after %u unknown outcomes) answered %u: %s",
                                                 c->key, c->event_type, c->unknown, status, answer);
              return FALSE;
            }
          if (!od_fault_parse_answer (answer, &c->position, &c->version))
            {
              client->failure = g_strdup_printf ("%s: unreadable answer %s", c->key, answer);
              return FALSE;
            }
          return TRUE;
        }
      if (g_get_monotonic_time () > deadline)
        {
          client->failure = g_strdup_printf ("%s: no answer within 40 s", c->key);
          return FALSE;
        }
      g_usleep (20000);
    }
}

static gpointer
client_main (gpointer data)
{
  Client *client = data;
  g_autoptr(SoupSession) session = od_fault_session_new ();
  guint n = 0;

  while (!g_atomic_int_get (client->stop))
    {
      g_autofree char *id = od_uuid_v7_new ();
      Cmd *steps[4];

      steps[0] = cmd_new (client, id, "OrderCreated", g_strdup_printf (
        "{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Crash %u-%u\","
        "\"customer_email\":\"c%u@example.com\",\"currency\":\"EUR\"}}", id, client->index, n, n));
      g_ptr_array_add (client->cmds, steps[0]);
      steps[1] = cmd_new (client, id, "ItemAdded", g_strdup_printf (
        "{\"type\":\"AddItem\",\"order_id\":\"%s\",\"expected_version\":1,\"data\":{\"sku\":\"K-%u\","
        "\"name\":\"Kettle\",\"quantity\":%u,\"unit_price_cents\":1999}}", id, n % 5, 1 + n % 3));
      g_ptr_array_add (client->cmds, steps[1]);
      steps[2] = cmd_new (client, id, "ItemAdded", g_strdup_printf (
        "{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"K-%u\",\"name\":\"Kettle\","
        "\"quantity\":1,\"unit_price_cents\":1999}}", id, n % 5));
      g_ptr_array_add (client->cmds, steps[2]);
      steps[3] = cmd_new (client, id, "OrderPlaced", g_strdup_printf (
        "{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"expected_version\":3}", id));
      g_ptr_array_add (client->cmds, steps[3]);
      for (guint k = 0; k < 4; k++)
        if (!send_until_answered (client, session, steps[k]))
          return NULL;
      n++;
    }
  return NULL;
}

static void
test_kill_during_load (void)
{
  g_autoptr(OdFaultServer) server = od_fault_server_start ();
  g_autoptr(SoupSession) session = od_fault_session_new ();
  g_autoptr(GPtrArray) events = NULL;
  g_autoptr(GHashTable) by_position = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_autoptr(GHashTable) acked = g_hash_table_new (g_int64_hash, g_int64_equal);
  Client clients[N_CLIENTS];
  GThread *threads[N_CLIENTS];
  volatile gint stop = 0;
  guint n_cmds = 0, n_unknown = 0, n_unknown_replayed = 0, n_unknown_applied_on_retry = 0;
  guint n_5xx = 0;
  gint64 t0 = g_get_monotonic_time ();

  for (guint i = 0; i < N_CLIENTS; i++)
    {
      clients[i] = (Client) { .index = i, .server = server, .stop = &stop,
                              .cmds = g_ptr_array_new_with_free_func ((GDestroyNotify) cmd_free) };
      threads[i] = g_thread_new ("client", client_main, &clients[i]);
    }

  for (guint k = 0; k < N_KILLS; k++)
    {
      gint64 before;

      g_usleep (g_random_int_range (400, 1200) * 1000);
      before = od_fault_head (session, server->url);
      od_fault_server_kill (server);
      g_test_message ("kill -9 #%u at head %" G_GINT64_FORMAT, k + 1, before);
      /* Clients meet a closed port for a while: those are unknown
       * outcomes too (no answer). */
      g_usleep (g_random_int_range (50, 400) * 1000);
      od_fault_server_restart (server);
    }
  g_usleep (500 * 1000);
  g_atomic_int_set (&stop, 1);
  for (guint i = 0; i < N_CLIENTS; i++)
    g_thread_join (threads[i]);

  for (guint i = 0; i < N_CLIENTS; i++)
    if (clients[i].failure)
      g_error ("client %u: %s", i, clients[i].failure);

  events = od_fault_fetch_events (session, server->url);
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);

      g_hash_table_insert (by_position, &ev->position, ev);
    }

  for (guint i = 0; i < N_CLIENTS; i++)
    for (guint j = 0; j < clients[i].cmds->len; j++)
      {
        Cmd *c = g_ptr_array_index (clients[i].cmds, j);
        OdEvent *ev;
        Cmd *other;

        if (c->status == 0)
          continue; /* never sent: the client stopped before it */
        g_assert_cmpuint (c->status, ==, 200);
        n_cmds++;
        n_5xx += c->retries_5xx;
        if (c->unknown > 0)
          {
            n_unknown++;
            if (c->replayed)
              n_unknown_replayed++;
            else
              n_unknown_applied_on_retry++;
          }
        ev = g_hash_table_lookup (by_position, &c->position);
        if (ev == NULL)
          g_error ("acknowledged command %s (position %" G_GINT64_FORMAT ", %s) has no event",
                   c->key, c->position, c->replayed ? "replayed" : "first answer");
        g_assert_cmpstr (ev->order_id, ==, c->order_id);
        g_assert_cmpint (ev->version, ==, c->version);
        g_assert_cmpstr (ev->type, ==, c->event_type);
        g_assert_cmpstr (ev->actor, ==, "olga");
        other = g_hash_table_lookup (acked, &c->position);
        if (other != NULL)
          g_error ("commands %s and %s were both answered with position %" G_GINT64_FORMAT,
                   other->key, c->key, c->position);
        g_hash_table_insert (acked, &c->position, c);
      }

  /* No event without an acknowledged command: a command applied twice
   * (its retry executed again) would show here as an extra event. */
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);

      if (!g_hash_table_contains (acked, &ev->position))
        g_error ("event %" G_GINT64_FORMAT " (%s, order %s v%" G_GINT64_FORMAT
                 ") belongs to no acknowledged command", ev->position, ev->type, ev->order_id,
                 ev->version);
    }
  g_assert_cmpuint (events->len, ==, n_cmds);
  /* The kills must have hit commands in flight, else this proved little. */
  g_assert_cmpuint (n_unknown, >, 0);

  g_test_message ("%u kills, %u clients, %u commands acknowledged, %u events; %u outcomes were"
                  " unknown: %u had been committed before the kill (replayed on retry), %u were"
                  " applied by the retry; %u answers 5xx/in-flight sent again; %.1f s",
                  N_KILLS, N_CLIENTS, n_cmds, events->len, n_unknown, n_unknown_replayed,
                  n_unknown_applied_on_retry, n_5xx, (g_get_monotonic_time () - t0) / 1e6);
  g_test_message ("crash: kills=%u clients=%u acked=%u events=%u unknown=%u replayed=%u"
          " applied_on_retry=%u lost=0 duplicated=0\n", N_KILLS, N_CLIENTS, n_cmds, events->len,
          n_unknown, n_unknown_replayed, n_unknown_applied_on_retry);
  for (guint i = 0; i < N_CLIENTS; i++)
    g_ptr_array_unref (clients[i].cmds);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/faults/server-crash/kill-9-during-load", test_kill_during_load);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Concurrent writers: optimistic concurrency on one order, and many
 * clients appending at once with a consistent log. */
#include "od-test-server.h"
#include "od-test-bodies.h"

#include <string.h>

static OdTestServer *server;

typedef struct
{
  GMutex       lock;
  GCond        cond;
  guint        waiting;
  gboolean     go;
} Gate;

static void
gate_wait (Gate *gate)
{
  g_mutex_lock (&gate->lock);
  gate->waiting++;
  g_cond_broadcast (&gate->cond);
  while (!gate->go)
    g_cond_wait (&gate->cond, &gate->lock);
  g_mutex_unlock (&gate->lock);
}

static void
gate_open_when (Gate  *gate,
                guint  n)
{
  g_mutex_lock (&gate->lock);
  while (gate->waiting < n)
    g_cond_wait (&gate->cond, &gate->lock);
  gate->go = TRUE;
  g_cond_broadcast (&gate->cond);
  g_mutex_unlock (&gate->lock);
}

/* ---- 20 commands, one expected_version ---- */

typedef struct
{
  Gate           *gate;
  char           *body;
  OdTestResponse *response;
} Contender;

static gpointer
contender_thread (gpointer data)
{
  Contender *c = data;
  g_autoptr(SoupSession) session = od_test_session_new ();
  g_autofree char *key = od_test_new_key ();
  g_autoptr(OdTestResponse) warm = od_test_request (server, session, "GET", "/v1/health", NULL,
                                                    NULL, NULL, 0, NULL);

  g_assert_cmpuint (warm->status, ==, 200);
  gate_wait (c->gate);
  c->response = od_test_command (server, session, OD_TEST_ALICE, key, c->body);
  return NULL;
}

static void
test_expected_version_race (void)
{
  g_autofree char *id = od_test_create_order (server, NULL, OD_TEST_ALICE, NULL);

  for (gint64 version = 1; version <= 3; version++)
    {
      const guint n = 20;
      Contender contenders[20];
      GThread *threads[20];
      Gate gate = { 0 };
      guint won = 0, conflicts = 0;
      gint64 head = od_test_head (server);
      g_autoptr(GPtrArray) appended = NULL;
      OdTestResponse *winner = NULL;

      g_mutex_init (&gate.lock);
      g_cond_init (&gate.cond);
      for (guint i = 0; i < n; i++)
        {
          g_autofree char *sku = g_strdup_printf ("SKU-%u", i);

          contenders[i].gate = &gate;
          contenders[i].body = od_body_add (id, version, sku, "Contended", 1, 100);
          contenders[i].response = NULL;
          threads[i] = g_thread_new ("contender", contender_thread, &contenders[i]);
        }
      gate_open_when (&gate, n);
      for (guint i = 0; i < n; i++)
        g_thread_join (threads[i]);

      for (guint i = 0; i < n; i++)
        {
          OdTestResponse *r = contenders[i].response;

          if (r->status == 200)
            {
              won++;
              winner = r;
              g_assert_cmpint (od_test_response_int (r, "version"), ==, version + 1);
            }
          else
            {
              od_test_assert_problem (r, 409, "version_conflict");
              g_assert_cmpint (od_test_response_int (r, "current_version"), ==, version + 1);
              conflicts++;
            }
        }
      g_assert_cmpuint (won, ==, 1);
      g_assert_cmpuint (conflicts, ==, n - 1);

      /* One event, the winner's. */
      appended = od_test_events (server, head);
      g_assert_cmpuint (appended->len, ==, 1);
      g_assert_cmpint (((OdEvent *) g_ptr_array_index (appended, 0))->position, ==,
                       od_test_response_int (winner, "position"));
      g_assert_cmpint (((OdEvent *) g_ptr_array_index (appended, 0))->version, ==, version + 1);

      for (guint i = 0; i < n; i++)
        {
          od_test_response_free (contenders[i].response);
          g_free (contenders[i].body);
        }
      g_mutex_clear (&gate.lock);
      g_cond_clear (&gate.cond);
    }
}

/* ---- many clients appending ---- */

#define N_CLIENTS 8
#define N_ORDERS  60   /* each order: CreateOrder, AddItem, PlaceOrder */

typedef struct
{
  Gate      *gate;
  GPtrArray *ids;        /* order ids */
  GArray    *positions;  /* gint64, three per order */
  const char *token;
} Client;

static gpointer
client_thread (gpointer data)
{
  Client *c = data;
  g_autoptr(SoupSession) session = od_test_session_new ();

  gate_wait (c->gate);
  for (guint i = 0; i < N_ORDERS; i++)
    {
      char *id = od_uuid_v7_new ();
      g_autofree char *create = od_body_create (id, "Parallel", "p@example.org", "EUR");
      g_autofree char *add = od_body_add (id, 1, "S", "N", 2, 50);
      g_autofree char *place = od_body ("PlaceOrder", id, 2, NULL);
      gint64 p;

      p = od_test_command_ok (server, session, c->token, create, NULL);
      g_array_append_val (c->positions, p);
      p = od_test_command_ok (server, session, c->token, add, NULL);
      g_array_append_val (c->positions, p);
      p = od_test_command_ok (server, session, c->token, place, NULL);
      g_array_append_val (c->positions, p);
      g_ptr_array_add (c->ids, id);
    }
  return NULL;
}

static void
test_parallel_clients (void)
{
  Client clients[N_CLIENTS];
  GThread *threads[N_CLIENTS];
  Gate gate = { 0 };
  gint64 head = od_test_head (server);
  g_autoptr(GPtrArray) events = NULL;
  g_autoptr(GHashTable) by_position = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_autoptr(GHashTable) seen = g_hash_table_new (g_int64_hash, g_int64_equal);
  gint64 start = g_get_monotonic_time ();

  g_mutex_init (&gate.lock);
  g_cond_init (&gate.cond);
  for (guint i = 0; i < N_CLIENTS; i++)
    {
      clients[i].gate = &gate;
      clients[i].ids = g_ptr_array_new_with_free_func (g_free);
      clients[i].positions = g_array_new (FALSE, FALSE, sizeof (gint64));
      clients[i].token = i % 2 ? OD_TEST_BOB : OD_TEST_ALICE;
      threads[i] = g_thread_new ("client", client_thread, &clients[i]);
    }
  gate_open_when (&gate, N_CLIENTS);
  for (guint i = 0; i < N_CLIENTS; i++)
    g_thread_join (threads[i]);
  g_test_message ("%d commands in %.2f s", N_CLIENTS * N_ORDERS * 3,
                  (g_get_monotonic_time () - start) / 1e6);

  /* The log after the start: exactly our events, a consistent chain. */
  events = od_test_events (server, head);
  g_assert_cmpuint (events->len, ==, N_CLIENTS * N_ORDERS * 3);
  od_test_assert_chain (events, head);
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *e = g_ptr_array_index (events, i);

      g_hash_table_insert (by_position, &e->position, e);
    }

  /* Every acknowledged position is unique and holds that order's event
   * with the version the command produced. */
  for (guint c = 0; c < N_CLIENTS; c++)
    {
      for (guint i = 0; i < N_ORDERS; i++)
        {
          const char *id = g_ptr_array_index (clients[c].ids, i);

          for (guint k = 0; k < 3; k++)
            {
              gint64 *p = &g_array_index (clients[c].positions, gint64, i * 3 + k);
              OdEvent *e = g_hash_table_lookup (by_position, p);

              g_assert_false (g_hash_table_contains (seen, p));
              g_hash_table_add (seen, p);
              g_assert_nonnull (e);
              g_assert_cmpstr (e->order_id, ==, id);
              g_assert_cmpint (e->version, ==, k + 1);
              g_assert_cmpstr (e->actor, ==, c % 2 ? "bob" : "alice");
            }
          /* Within an order, positions grow with versions. */
          g_assert_cmpint (g_array_index (clients[c].positions, gint64, i * 3),
                           <, g_array_index (clients[c].positions, gint64, i * 3 + 1));
          g_assert_cmpint (g_array_index (clients[c].positions, gint64, i * 3 + 1),
                           <, g_array_index (clients[c].positions, gint64, i * 3 + 2));
        }
    }
  g_assert_cmpuint (g_hash_table_size (seen), ==, N_CLIENTS * N_ORDERS * 3);

  for (guint i = 0; i < N_CLIENTS; i++)
    {
      g_ptr_array_unref (clients[i].ids);
      g_array_unref (clients[i].positions);
    }
  g_mutex_clear (&gate.lock);
  g_cond_clear (&gate.cond);
}

int
main (int   argc,
      char *argv[])
{
  int status;

  g_test_init (&argc, &argv, NULL);
  g_test_message ("store: %s", od_test_store_kind ());
  server = od_test_server_new ("--rate-limit", "0", NULL);

  g_test_add_func ("/concurrency/expected-version-race", test_expected_version_race);
  g_test_add_func ("/concurrency/parallel-clients", test_parallel_clients);

  status = g_test_run ();
  od_test_server_free (server);
  return status;
}

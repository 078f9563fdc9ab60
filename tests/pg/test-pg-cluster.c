/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Two orderdesk-server instances on one PostgreSQL database.  32 client
 * threads send commands to both; some retry a key through the other
 * instance, some send one key to both at once; meanwhile a foreign writer
 * holds append transactions open for seconds and rolls some back.  One
 * subscriber streams from each instance.  Both must receive every
 * acknowledged command's event exactly once, in the same order, with an
 * unbroken prev chain, and nothing that was rolled back. */
#include <string.h>

#include "od-pg-test.h"

#define N_WRITERS        32
#define ORDERS_PER_WRITER 8

typedef struct
{
  OdPgServer *servers[2];
  GMutex      lock;
  GHashTable *acked;      /* position → "order_id/version" */
  guint       n_commands;
  guint       n_retries;
  guint       n_races;
  gint        foreign_done;
} Shared;

typedef struct
{
  Shared *shared;
  guint   index;
} WriterArgs;

static void
ack (Shared     *shared,
     const char *response)
{
  g_autoptr(JsonNode) node = od_json_parse_object (response, -1, NULL);
  JsonObject *o;
  gint64 position;
  char *value;

  g_assert_nonnull (node);
  o = json_node_get_object (node);
  position = json_object_get_int_member (o, "position");
  value = g_strdup_printf ("%s/%" G_GINT64_FORMAT, json_object_get_string_member (o, "order_id"),
                           json_object_get_int_member (o, "version"));
  g_mutex_lock (&shared->lock);
  if (position <= 0)
    g_error ("bad position in %s", response);
  if (g_hash_table_contains (shared->acked, &position))
    g_error ("position %" G_GINT64_FORMAT " acknowledged twice", position);
  g_hash_table_insert (shared->acked, g_memdup2 (&position, sizeof position), value);
  g_mutex_unlock (&shared->lock);
}

typedef struct
{
  OdPgServer *server;
  const char *key;
  const char *body;
  guint       status;
  char       *response;
  gboolean    replayed;
} Post;

/* Each writer has a helper thread with its own session (a libsoup session
 * belongs to one thread), to send a request at the same moment as the
 * writer.  Helpers live as long as their writer so that connections are
 * reused rather than opened in bursts. */
typedef struct
{
  GAsyncQueue *todo;  /* Post, or the helper itself to stop */
  GAsyncQueue *done;
  GThread     *thread;
} Helper;

static gpointer
helper_thread (gpointer data)
{
  Helper *h = data;
  g_autoptr(SoupSession) session = od_pg_session_new ();

  for (;;)
    {
      gpointer item = g_async_queue_pop (h->todo);
      Post *p = item;

      if (item == h)
        break;
      p->status = od_pg_post_command (session, p->server, p->key, p->body, &p->response,
                                      &p->replayed);
      g_async_queue_push (h->done, p);
    }
  return NULL;
}

static gpointer
writer_thread (gpointer data)
{
  WriterArgs *args = data;
  Shared *shared = args->shared;
  g_autoptr(SoupSession) session = od_pg_session_new ();
  OdPgServer *mine = shared->servers[args->index % 2];
  OdPgServer *other = shared->servers[(args->index + 1) % 2];
  Helper helper = { g_async_queue_new (), g_async_queue_new (), NULL };
  guint step = 0;

  /* Connections are opened one writer after the other, not in a burst. */
  g_usleep (args->index * 15000);
  helper.thread = g_thread_new ("helper", helper_thread, &helper);

  for (guint o = 0; o < ORDERS_PER_WRITER; o++)
    {
      g_autofree char *id = od_uuid_v7_new ();

      for (guint c = 0; c < 5; c++, step++)
        {
          g_autofree char *key = g_strdup_printf ("w%u-%u", args->index, step);
          g_autofree char *body = NULL;
          g_autofree char *response = NULL;
          gboolean replayed = FALSE;
          guint status;

          switch (c)
            {
            case 0:
              body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                                      "{\"customer_name\":\"W%u\",\"customer_email\":\"w@x.org\","
                                      "\"currency\":\"EUR\"}}", id, args->index);
              break;
            case 1:
            case 2:
            case 3:
              /* The first item states the version it expects, the second
               * none, the third a stale one, which must be refused. */
              body = g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\"%s,\"data\":"
                                      "{\"sku\":\"S%u\",\"name\":\"Item\",\"quantity\":1,"
                                      "\"unit_price_cents\":100}}", id,
                                      c == 2 ? "" : ",\"expected_version\":1", c);
              break;
            default:
              body = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\"}", id);
              break;
            }

          if (c == 0 && o % 4 == 1)
            {
              /* The same key sent to both instances at once: one decides,
               * the other replays that answer. */
              Post p[2] = { { mine, key, body }, { other, key, body } };

              g_async_queue_push (helper.todo, &p[1]);
              p[0].status = od_pg_post_command (session, p[0].server, key, body, &p[0].response,
                                                &p[0].replayed);
              g_assert_true (g_async_queue_pop (helper.done) == &p[1]);
              g_assert_cmpuint (p[0].status, ==, 200);
              g_assert_cmpuint (p[1].status, ==, 200);
              g_assert_cmpstr (p[0].response, ==, p[1].response);
              g_assert_true (p[0].replayed != p[1].replayed);
              response = g_strdup (p[0].response);
              status = 200;
              g_free (p[0].response);
              g_free (p[1].response);
              g_mutex_lock (&shared->lock);
              shared->n_races++;
              g_mutex_unlock (&shared->lock);
            }
          else
            {
              status = od_pg_post_command (session, mine, key, body, &response, &replayed);
              g_assert_false (replayed);
            }

          if (c == 3)
            {
              /* expected_version 1 after two items: a conflict. */
              if (status != 409 || strstr (response, "version_conflict") == NULL)
                g_error ("expected a version conflict for %s, got %u %s", body, status, response);
            }
          else if (status != 200)
            g_error ("%s → %u %s", body, status, response);
          else
            {
              ack (shared, response);
            }

          /* A client that lost the answer retries through the other
           * instance: the same answer, replayed, nothing appended. */
          if (step % 3 == 0 || c == 3)
            {
              g_autofree char *again = NULL;
              gboolean again_replayed = FALSE;
              guint again_status = od_pg_post_command (session, other, key, body, &again,
                                                       &again_replayed);

              g_assert_cmpuint (again_status, ==, status);
              g_assert_cmpstr (again, ==, response);
              g_assert_true (again_replayed);
              g_mutex_lock (&shared->lock);
              shared->n_retries++;
              g_mutex_unlock (&shared->lock);
            }
          g_mutex_lock (&shared->lock);
          shared->n_commands++;
          g_mutex_unlock (&shared->lock);
        }
    }
  g_async_queue_push (helper.todo, &helper);
  g_thread_join (helper.thread);
  g_async_queue_unref (helper.todo);
  g_async_queue_unref (helper.done);
  return NULL;
}

/* A writer that is not one of our instances, following the append
 * protocol of docs/postgresql.md with or without the lock, holding its
 * transaction open, then committing or rolling back. */
typedef struct
{
  char     *dbname;
  GPtrArray *committed;
  GPtrArray *rolled_back;
  gint      *done;
} Foreign;

static gpointer
foreign_thread (gpointer data)
{
  Foreign *f = data;
  PGconn *conn = od_pg_test_connect (f->dbname);
  struct { gboolean lock, commit; guint hold_ms; } plan[] = {
    { TRUE, TRUE, 2000 }, { TRUE, FALSE, 1500 }, { FALSE, TRUE, 1000 },
    { FALSE, FALSE, 1000 }, { TRUE, TRUE, 500 }, { TRUE, FALSE, 2000 },
  };

  g_usleep (300000);
  for (guint i = 0; i < G_N_ELEMENTS (plan); i++)
    {
      char *id = od_pg_test_foreign_append (conn, plan[i].lock, plan[i].commit, plan[i].hold_ms);

      g_ptr_array_add (plan[i].commit ? f->committed : f->rolled_back, id);
      g_usleep (200000);
    }
  PQfinish (conn);
  g_atomic_int_set (f->done, 1);
  return NULL;
}

static void
test_two_instances (void)
{
  g_autofree char *dbname = od_pg_test_create_db ();
  g_autofree char *uri = od_pg_test_uri (dbname);
  g_autoptr(SoupSession) session = od_pg_session_new ();
  Shared shared = { 0 };
  Foreign foreign = { dbname, g_ptr_array_new_with_free_func (g_free),
                      g_ptr_array_new_with_free_func (g_free), &shared.foreign_done };
  OdPgSubscriber *subs[2];
  GPtrArray *streams[2];
  GThread *writers[N_WRITERS], *foreign_t;
  WriterArgs args[N_WRITERS];
  g_autoptr(GHashTable) ids = g_hash_table_new (g_str_hash, g_str_equal);
  gint64 head, t0 = g_get_monotonic_time ();
  PGconn *conn;

  g_mutex_init (&shared.lock);
  shared.acked = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  shared.servers[0] = od_pg_server_start (uri, "A");
  shared.servers[1] = od_pg_server_start (uri, "B");
  for (guint i = 0; i < 2; i++)
    subs[i] = od_pg_subscriber_start (shared.servers[i], 0, NULL, NULL);

  foreign_t = g_thread_new ("foreign", foreign_thread, &foreign);
  for (guint i = 0; i < N_WRITERS; i++)
    {
      args[i] = (WriterArgs) { &shared, i };
      writers[i] = g_thread_new ("writer", writer_thread, &args[i]);
    }
  for (guint i = 0; i < N_WRITERS; i++)
    g_thread_join (writers[i]);
  g_thread_join (foreign_t);

  head = od_pg_get_head (session, shared.servers[0]);
  g_assert_cmpint (od_pg_get_head (session, shared.servers[1]), ==, head);
  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *failure = NULL;

      if (!od_pg_subscriber_wait (subs[i], head, 20000))
        {
          od_pg_server_dump_log (shared.servers[i]);
          g_error ("the subscriber of instance %c did not reach head %" G_GINT64_FORMAT,
                   'A' + i, head);
        }
      streams[i] = od_pg_subscriber_stop (subs[i], &failure);
      if (failure != NULL)
        g_error ("%s", failure);
    }
  g_test_message ("%u commands (%u retried through the other instance, %u keys sent to both "
                  "at once), %u events, in %.1f s",
                  shared.n_commands, shared.n_retries, shared.n_races, streams[0]->len,
                  (g_get_monotonic_time () - t0) / 1e6);

  /* Same events, same order, on both. */
  g_assert_cmpuint (streams[0]->len, ==, streams[1]->len);
  for (guint i = 0; i < streams[0]->len; i++)
    {
      OdEvent *a = g_ptr_array_index (streams[0], i);
      OdEvent *b = g_ptr_array_index (streams[1], i);

      g_assert_cmpint (a->position, ==, b->position);
      g_assert_cmpint (a->prev, ==, b->prev);
      g_assert_cmpstr (a->order_id, ==, b->order_id);
      g_assert_cmpint (a->version, ==, b->version);
    }

  /* Exactly the acknowledged commands and the foreign commits. */
  g_assert_cmpuint (streams[0]->len, ==, g_hash_table_size (shared.acked) + foreign.committed->len);
  for (guint i = 0; i < streams[0]->len; i++)
    {
      OdEvent *e = g_ptr_array_index (streams[0], i);
      const char *expected = g_hash_table_lookup (shared.acked, &e->position);

      g_hash_table_add (ids, e->order_id);
      if (g_strcmp0 (e->actor, "intruder") == 0)
        continue;
      g_assert_nonnull (expected);
      {
        g_autofree char *got = g_strdup_printf ("%s/%" G_GINT64_FORMAT, e->order_id, e->version);

        g_assert_cmpstr (got, ==, expected);
      }
    }
  g_assert_cmpint (((OdEvent *) g_ptr_array_index (streams[0], streams[0]->len - 1))->position, ==, head);
  for (guint i = 0; i < foreign.committed->len; i++)
    g_assert_true (g_hash_table_contains (ids, foreign.committed->pdata[i]));
  for (guint i = 0; i < foreign.rolled_back->len; i++)
    g_assert_false (g_hash_table_contains (ids, foreign.rolled_back->pdata[i]));

  conn = od_pg_test_connect (dbname);
  g_assert_cmpint (od_pg_test_scalar (conn, "SELECT count(*) FROM events"), ==, streams[0]->len);
  PQfinish (conn);

  for (guint i = 0; i < 2; i++)
    {
      g_ptr_array_unref (streams[i]);
      od_pg_server_stop (shared.servers[i]);
    }
  g_ptr_array_unref (foreign.committed);
  g_ptr_array_unref (foreign.rolled_back);
  g_hash_table_unref (shared.acked);
  g_mutex_clear (&shared.lock);
  od_pg_test_drop_db (dbname);
}

/* A subscriber on B sees what A appends within moments (LISTEN/NOTIFY),
 * and one that joins late replays the same log. */
static void
test_fan_out (void)
{
  g_autofree char *dbname = od_pg_test_create_db ();
  g_autofree char *uri = od_pg_test_uri (dbname);
  g_autoptr(SoupSession) session = od_pg_session_new ();
  OdPgServer *a = od_pg_server_start (uri, "A");
  OdPgServer *b = od_pg_server_start (uri, "B");
  OdPgSubscriber *sub = od_pg_subscriber_start (b, 0, NULL, NULL);
  g_autofree char *failure = NULL;
  GPtrArray *events;
  gint64 worst = 0;

  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *id = od_uuid_v7_new ();
      g_autofree char *key = g_strdup_printf ("fan-%u", i);
      g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                                               "{\"customer_name\":\"F\",\"customer_email\":\"f@x.org\","
                                               "\"currency\":\"EUR\"}}", id);
      g_autofree char *response = NULL;
      g_autoptr(JsonNode) node = NULL;
      gint64 position, t0;

      g_assert_cmpuint (od_pg_post_command (session, a, key, body, &response, NULL), ==, 200);
      node = od_json_parse_object (response, -1, NULL);
      position = json_object_get_int_member (json_node_get_object (node), "position");
      t0 = g_get_monotonic_time ();
      /* Well under the 4 s idle heartbeat: a wake-up, not a poll. */
      g_assert_true (od_pg_subscriber_wait (sub, position, 2000));
      worst = MAX (worst, g_get_monotonic_time () - t0);
    }
  g_test_message ("worst append→delivered on the other instance: %.1f ms", worst / 1e3);
  events = od_pg_subscriber_stop (sub, &failure);
  g_assert_null (failure);
  g_assert_cmpuint (events->len, ==, 20);
  g_ptr_array_unref (events);

  od_pg_server_stop (a);
  od_pg_server_stop (b);
  od_pg_test_drop_db (dbname);
}

/* An instance killed in the middle of its work: its open transaction is
 * rolled back by PostgreSQL, the other instance goes on, its subscriber
 * misses nothing that was acknowledged and sees no hole in the chain, and
 * a restarted instance serves the very same log. */
typedef struct
{
  OdPgServer *server;
  guint       index;
  gint       *stop;
  GMutex     *lock;
  GHashTable *acked;  /* positions */
  guint       lost;   /* requests without an answer (the instance died) */
} Survivor;

static gpointer
survivor_thread (gpointer data)
{
  Survivor *c = data;
  g_autoptr(SoupSession) session = od_pg_session_new ();
  guint step = 0;

  g_usleep (c->index * 20000);
  while (!g_atomic_int_get (c->stop) && c->lost == 0)
    {
      g_autofree char *id = od_uuid_v7_new ();

      for (guint k = 0; k < 3 && c->lost == 0; k++, step++)
        {
          g_autofree char *key = g_strdup_printf ("s%u-%u", c->index, step);
          g_autofree char *body = NULL;
          g_autofree char *response = NULL;
          guint status;

          body = k == 0
                 ? g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                                    "{\"customer_name\":\"S\",\"customer_email\":\"s@x.org\","
                                    "\"currency\":\"EUR\"}}", id)
                 : g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":"
                                    "{\"sku\":\"S%u\",\"name\":\"Item\",\"quantity\":1,"
                                    "\"unit_price_cents\":100}}", id, k);
          status = od_pg_post_command (session, c->server, key, body, &response, NULL);
          if (status == 0)
            c->lost++;
          else if (status != 200)
            g_error ("%s → %u %s", body, status, response);
          else
            {
              g_autoptr(JsonNode) node = od_json_parse_object (response, -1, NULL);
              gint64 position = json_object_get_int_member (json_node_get_object (node), "position");

              g_mutex_lock (c->lock);
              g_hash_table_add (c->acked, g_memdup2 (&position, sizeof position));
              g_mutex_unlock (c->lock);
            }
        }
    }
  return NULL;
}

static void
test_instance_killed (void)
{
  g_autofree char *dbname = od_pg_test_create_db ();
  g_autofree char *uri = od_pg_test_uri (dbname);
  g_autoptr(SoupSession) session = od_pg_session_new ();
  g_autoptr(GHashTable) acked = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  g_autoptr(GHashTable) delivered = g_hash_table_new (g_int64_hash, g_int64_equal);
  g_autofree char *failure = NULL;
  OdPgServer *a = od_pg_server_start (uri, "A");
  OdPgServer *b = od_pg_server_start (uri, "B");
  OdPgServer *a2;
  OdPgSubscriber *sub = od_pg_subscriber_start (b, 0, NULL, NULL);
  GPtrArray *events, *again;
  Survivor clients[8];
  GThread *threads[8];
  GMutex lock;
  gint stop = 0;
  guint lost = 0;
  gint64 head;
  PGconn *conn;

  g_mutex_init (&lock);
  for (guint i = 0; i < G_N_ELEMENTS (clients); i++)
    {
      clients[i] = (Survivor) { i % 2 ? b : a, i, &stop, &lock, acked, 0 };
      threads[i] = g_thread_new ("survivor", survivor_thread, &clients[i]);
    }
  g_usleep (1500000);
  od_pg_server_kill (a);
  g_usleep (1000000);
  g_atomic_int_set (&stop, 1);
  for (guint i = 0; i < G_N_ELEMENTS (clients); i++)
    {
      g_thread_join (threads[i]);
      lost += clients[i].lost;
      /* B's clients never lost an answer. */
      if (i % 2)
        g_assert_cmpuint (clients[i].lost, ==, 0);
    }

  head = od_pg_get_head (session, b);
  g_assert_true (od_pg_subscriber_wait (sub, head, 20000));
  events = od_pg_subscriber_stop (sub, &failure);
  if (failure != NULL)
    g_error ("%s", failure);
  for (guint i = 0; i < events->len; i++)
    g_hash_table_add (delivered, &((OdEvent *) events->pdata[i])->position);
  {
    GHashTableIter iter;
    gpointer key;

    g_hash_table_iter_init (&iter, acked);
    while (g_hash_table_iter_next (&iter, &key, NULL))
      g_assert_true (g_hash_table_contains (delivered, key));
  }
  conn = od_pg_test_connect (dbname);
  g_assert_cmpint (od_pg_test_scalar (conn, "SELECT count(*) FROM events"), ==, events->len);
  PQfinish (conn);
  g_test_message ("%u events, %u acknowledged, %u requests lost with instance A",
                  events->len, g_hash_table_size (acked), lost);

  /* A restarted A serves the same log, position for position. */
  a2 = od_pg_server_start (uri, "A2");
  sub = od_pg_subscriber_start (a2, 0, NULL, NULL);
  g_assert_true (od_pg_subscriber_wait (sub, head, 20000));
  again = od_pg_subscriber_stop (sub, &failure);
  g_assert_null (failure);
  g_assert_cmpuint (again->len, ==, events->len);
  for (guint i = 0; i < events->len; i++)
    g_assert_cmpint (((OdEvent *) again->pdata[i])->position, ==,
                     ((OdEvent *) events->pdata[i])->position);

  g_ptr_array_unref (events);
  g_ptr_array_unref (again);
  od_pg_server_stop (a);
  od_pg_server_stop (b);
  od_pg_server_stop (a2);
  g_mutex_clear (&lock);
  od_pg_test_drop_db (dbname);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  od_pg_test_host ();

  g_test_add_func ("/pg/cluster/fan-out", test_fan_out);
  g_test_add_func ("/pg/cluster/two-instances", test_two_instances);
  g_test_add_func ("/pg/cluster/instance-killed", test_instance_killed);
  return g_test_run ();
}

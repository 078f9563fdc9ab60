/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The console's core syncs its read cache from instance B while every
 * command goes to instance A (and a foreign writer holds the append lock
 * and rolls back now and then): the cache ends with exactly the log, in
 * order, without a gap. */
#include <string.h>

#include <glib/gstdio.h>

#include "od-cache.h"
#include "od-cache-private.h" /* od_cache_get_db () */
#include "od-sync.h"
#include "od-pg-test.h"

#define N_CLIENTS 8
#define ORDERS_PER_CLIENT 10

typedef struct
{
  OdPgServer *server;
  guint       index;
  gint64      max_position;
  guint       acked;
  gint       *finished;
} Client;

static gpointer
client_thread (gpointer data)
{
  Client *c = data;
  g_autoptr(SoupSession) session = od_pg_session_new ();

  g_usleep (c->index * 20000);
  for (guint o = 0; o < ORDERS_PER_CLIENT; o++)
    {
      g_autofree char *id = od_uuid_v7_new ();

      for (guint k = 0; k < 4; k++)
        {
          g_autofree char *key = g_strdup_printf ("core-%u-%u-%u", c->index, o, k);
          g_autofree char *body = NULL;
          g_autofree char *response = NULL;
          g_autoptr(JsonNode) node = NULL;
          guint status;

          if (k == 0)
            body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                                    "{\"customer_name\":\"C%u\",\"customer_email\":\"c@x.org\","
                                    "\"currency\":\"EUR\"}}", id, c->index);
          else if (k < 3)
            body = g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":"
                                    "{\"sku\":\"S%u\",\"name\":\"Item\",\"quantity\":2,"
                                    "\"unit_price_cents\":250}}", id, k);
          else
            body = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\"}", id);
          status = od_pg_post_command (session, c->server, key, body, &response, NULL);
          if (status != 200)
            g_error ("%s → %u %s", body, status, response);
          node = od_json_parse_object (response, -1, NULL);
          c->max_position = MAX (c->max_position,
                                 json_object_get_int_member (json_node_get_object (node), "position"));
          c->acked++;
        }
    }
  g_atomic_int_inc (c->finished);
  return NULL;
}

typedef struct
{
  char      *dbname;
  GPtrArray *rolled_back;
} Foreign;

static gpointer
foreign_thread (gpointer data)
{
  Foreign *f = data;
  PGconn *conn = od_pg_test_connect (f->dbname);

  g_usleep (200000);
  g_free (od_pg_test_foreign_append (conn, TRUE, TRUE, 1500));
  g_ptr_array_add (f->rolled_back, od_pg_test_foreign_append (conn, TRUE, FALSE, 1000));
  g_ptr_array_add (f->rolled_back, od_pg_test_foreign_append (conn, FALSE, FALSE, 500));
  g_free (od_pg_test_foreign_append (conn, FALSE, TRUE, 300));
  PQfinish (conn);
  return NULL;
}

static void
test_sync_from_b (void)
{
  g_autofree char *dbname = od_pg_test_create_db ();
  g_autofree char *uri = od_pg_test_uri (dbname);
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-pg-core-XXXXXX", &error);
  g_autofree char *path = NULL;
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdSyncEngine) sync = NULL;
  g_autoptr(GPtrArray) rolled_back = g_ptr_array_new_with_free_func (g_free);
  OdPgServer *a, *b;
  Client clients[N_CLIENTS];
  GThread *threads[N_CLIENTS], *foreign_t;
  Foreign foreign = { dbname, rolled_back };
  OdSyncStats stats;
  gint64 head, deadline, n_db;
  guint acked = 0;
  gint finished = 0;
  PGconn *conn;

  g_assert_no_error (error);
  path = g_build_filename (dir, "cache.sqlite", NULL);
  a = od_pg_server_start (uri, "A");
  b = od_pg_server_start (uri, "B");
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  sync = od_sync_engine_new (cache, od_pg_server_url (b), OD_PG_TEST_VIEWER);
  od_sync_engine_start (sync);

  foreign_t = g_thread_new ("foreign", foreign_thread, &foreign);
  for (guint i = 0; i < N_CLIENTS; i++)
    {
      clients[i] = (Client) { a, i, 0, 0, &finished };
      threads[i] = g_thread_new ("client", client_thread, &clients[i]);
    }
  /* The cache signals on this thread's main context: keep it turning
   * while the clients write. */
  while (g_atomic_int_get (&finished) < N_CLIENTS)
    {
      while (g_main_context_iteration (NULL, FALSE))
        ;
      g_usleep (5000);
    }
  for (guint i = 0; i < N_CLIENTS; i++)
    {
      g_thread_join (threads[i]);
      acked += clients[i].acked;
    }
  g_thread_join (foreign_t);

  conn = od_pg_test_connect (dbname);
  head = od_pg_test_scalar (conn, "SELECT max(position) FROM events");
  n_db = od_pg_test_scalar (conn, "SELECT count(*) FROM events");
  g_assert_cmpint (n_db, ==, acked + 2);

  deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (od_cache_get_applied_position (cache) < head && g_get_monotonic_time () < deadline)
    {
      while (g_main_context_iteration (NULL, FALSE))
        ;
      g_usleep (5000);
    }
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, head);
  g_assert_true (od_cache_flush (cache, &error));
  g_assert_no_error (error);

  /* The cache holds the log exactly: same positions, same prevs. */
  {
    sqlite3 *db = od_cache_get_db (cache);
    sqlite3_stmt *stmt = NULL;
    PGresult *res = od_pg_test_exec (conn, "SELECT position, prev, order_id FROM events ORDER BY position",
                                     0, NULL);
    int row = 0;

    g_assert_cmpint (sqlite3_prepare_v2 (db, "SELECT position, prev, order_id FROM order_events "
                                             "ORDER BY position", -1, &stmt, NULL), ==, SQLITE_OK);
    while (sqlite3_step (stmt) == SQLITE_ROW)
      {
        g_assert_cmpint (row, <, PQntuples (res));
        g_assert_cmpint (sqlite3_column_int64 (stmt, 0), ==, g_ascii_strtoll (PQgetvalue (res, row, 0), NULL, 10));
        g_assert_cmpint (sqlite3_column_int64 (stmt, 1), ==, g_ascii_strtoll (PQgetvalue (res, row, 1), NULL, 10));
        g_assert_cmpstr ((const char *) sqlite3_column_text (stmt, 2), ==, PQgetvalue (res, row, 2));
        for (guint i = 0; i < rolled_back->len; i++)
          g_assert_cmpstr ((const char *) sqlite3_column_text (stmt, 2), !=, rolled_back->pdata[i]);
        row++;
      }
    sqlite3_finalize (stmt);
    g_assert_cmpint (row, ==, PQntuples (res));
    PQclear (res);
  }
  {
    gint64 counts[OD_STATUS_N];

    g_assert_true (od_cache_get_status_counts (cache, counts, &error));
    g_assert_cmpint (counts[0], ==, N_CLIENTS * ORDERS_PER_CLIENT + 2);
    g_assert_cmpint (counts[OD_STATUS_PLACED], ==, N_CLIENTS * ORDERS_PER_CLIENT);
  }
  od_sync_engine_get_stats (sync, &stats);
  g_test_message ("%" G_GINT64_FORMAT " events synced from B; %" G_GUINT64_FORMAT " gaps, %"
                  G_GUINT64_FORMAT " pages, %" G_GUINT64_FORMAT " connections",
                  n_db, stats.gaps, stats.pages_fetched, stats.connections);
  /* The server never shows a gap: every prev matched. */
  g_assert_cmpuint (stats.gaps, ==, 0);

  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  g_clear_object (&cache);
  PQfinish (conn);
  od_pg_server_stop (a);
  od_pg_server_stop (b);
  od_pg_test_drop_db (dbname);
  {
    g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
    const char *name;

    while (d != NULL && (name = g_dir_read_name (d)) != NULL)
      {
        g_autofree char *file = g_build_filename (dir, name, NULL);

        g_unlink (file);
      }
    g_rmdir (dir);
  }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  od_pg_test_host ();

  g_test_add_func ("/pg/core/sync-from-other-instance", test_sync_from_b);
  return g_test_run ();
}

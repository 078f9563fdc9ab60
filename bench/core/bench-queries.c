/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Query latencies at a million cached orders.  The cache is filled with
 * SQL (the projector's speed is measured by bench-core-catchup), then
 * every list query of the console runs through the core's API.
 *
 *   bench-core-queries [N_ORDERS] [CACHE_FILE]
 */
#include "od-core.h"
#include "od-cache-private.h" /* od_cache_get_db () */

#include <glib/gstdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static double
now_ms (void)
{
  return g_get_monotonic_time () / 1000.0;
}

static int
cmp_double (const void *a,
            const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static void
report (const char *what,
        double     *ms,
        guint       n,
        guint       rows)
{
  qsort (ms, n, sizeof *ms, cmp_double);
  g_print ("| %-46s | %8.3f | %8.3f | %8.3f | %6u |\n", what, ms[n / 2], ms[(guint) (n * 0.99)],
           ms[n - 1], rows);
}

/* Names and SKUs from small pools so that searches match realistic
 * shares of the orders. */
static const char fill_sql[] =
  "WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ?1 - 1),"
  " first(k, n) AS (VALUES (0,'Ada'),(1,'Grace'),(2,'Alan'),(3,'Edsger'),(4,'Barbara'),(5,'Donald'),"
  "   (6,'Frances'),(7,'Ken'),(8,'Linus'),(9,'Margaret'),(10,'Dennis'),(11,'Radia'),(12,'John'),"
  "   (13,'Sophie'),(14,'Tim'),(15,'Hedy')),"
  " last(k, n) AS (VALUES (0,'Lovelace'),(1,'Hopper'),(2,'Turing'),(3,'Dijkstra'),(4,'Liskov'),"
  "   (5,'Knuth'),(6,'Allen'),(7,'Thompson'),(8,'Torvalds'),(9,'Hamilton'),(10,'Ritchie'),"
  "   (11,'Perlman'),(12,'McCarthy'),(13,'Wilson'),(14,'Berners-Lee'),(15,'Lamarr'),(16,'Meyer'),"
  "   (17,'Schmidt'),(18,'Nakamura'),(19,'Okafor'))"
  " INSERT INTO orders (order_id, customer_name, customer_email, currency, status, item_count,"
  "   total_cents, version, created_at, updated_at, last_position)"
  " SELECT printf('%08x-%04x-7%03x-8%03x-%012x', 1790000000 + i / 50, (i * 7) % 65536, i % 4096,"
  "          (i * 13) % 4096, i),"
  "   (SELECT n FROM first WHERE k = i % 16) || ' ' || (SELECT n FROM last WHERE k = (i / 16) % 20)"
  "     || ' ' || (i % 997),"
  "   lower((SELECT n FROM first WHERE k = i % 16)) || '.' || i || '@example.com',"
  "   'EUR',"
  "   CASE WHEN i % 20 < 6 THEN 'draft' WHEN i % 20 < 8 THEN 'placed' WHEN i % 20 < 10 THEN 'shipped'"
  "        WHEN i % 20 < 18 THEN 'delivered' ELSE 'cancelled' END,"
  "   1 + i % 9, 100 + (i * 7919) % 500000, 1 + i % 6,"
  "   strftime('%Y-%m-%dT%H:%M:%fZ', 1790000000 + i, 'unixepoch'),"
  "   strftime('%Y-%m-%dT%H:%M:%fZ', 1790000000 + i + (i * 104729) % 1800000, 'unixepoch'),"
  "   i * 5 FROM c;"
  ;

static const char items_sql[] =
  "INSERT INTO order_items (order_id, sku, name, quantity, unit_price_cents, line_no)"
  " SELECT order_id, 'SKU-' || ((rowid * 31) % 5000), 'Item', 1 + rowid % 3, 100 + rowid % 900, 0"
  " FROM orders;"
  "INSERT INTO order_items (order_id, sku, name, quantity, unit_price_cents, line_no)"
  " SELECT order_id, 'SKU-' || ((rowid * 17 + 7) % 5000 + 5000), 'Item', 1, 250, 1"
  " FROM orders WHERE rowid % 2 = 0;"
  "UPDATE status_counts SET n = (SELECT count(*) FROM orders o WHERE o.status = status_counts.status);"
  "UPDATE sync_state SET applied_position = (SELECT max(last_position) FROM orders),"
  "  known_head = (SELECT max(last_position) FROM orders);";

static void
fill (const char *path,
      guint       n_orders)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  double t0 = now_ms ();

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  sqlite3_exec (db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;"
                    "BEGIN;", NULL, NULL, NULL);
  g_assert_cmpint (sqlite3_prepare_v2 (db, fill_sql, -1, &st, NULL), ==, SQLITE_OK);
  sqlite3_bind_int64 (st, 1, n_orders);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
  sqlite3_finalize (st);
  g_assert_cmpint (sqlite3_exec (db, items_sql, NULL, NULL, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE);", NULL, NULL, NULL),
                   ==, SQLITE_OK);
  sqlite3_close (db);
  g_print ("filled %u orders in %.1f s\n", n_orders, (now_ms () - t0) / 1000);
}

int
main (int    argc,
      char **argv)
{
  guint n_orders = argc > 1 ? atoi (argv[1]) : 1000000;
  g_autofree char *dir = NULL;
  g_autofree char *path = NULL;
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(GError) error = NULL;
  gboolean fresh;
  enum { N = 300 };
  double ms[N];
  double t0;
  struct rusage ru;
  const char *searches[] = { "grace", "grace hopper", "hopper 42", "sophie.4711@example.com",
                             "SKU-4711", "6ab", "lamarr", "zzz-no-match" };

  if (argc > 2)
    path = g_strdup (argv[2]);
  else
    {
      dir = g_dir_make_tmp ("od-bench-q-XXXXXX", NULL);
      path = g_build_filename (dir, "cache.sqlite", NULL);
    }
  fresh = !g_file_test (path, G_FILE_TEST_EXISTS);
  /* Schema first (with indexes and search triggers), then the rows. */
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  g_clear_object (&cache);
  if (fresh)
    fill (path, n_orders);

  t0 = now_ms ();
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  g_print ("open: %.1f ms\n\n", now_ms () - t0);
  g_print ("| query | p50 ms | p99 ms | max ms | rows |\n|---|---|---|---|---|\n");

  for (int sort = OD_ORDER_SORT_UPDATED; sort <= OD_ORDER_SORT_CUSTOMER; sort++)
    for (int status = 0; status < OD_STATUS_N; status += 2)
      {
        static const char *sort_names[] = { "updated", "created", "total", "customer" };
        OdOrderQuery q = { sort, sort != OD_ORDER_SORT_CUSTOMER, status, NULL };
        OdOrderCursor cursor = { 0 };
        g_autofree char *label = g_strdup_printf ("page of 100, by %s, %s", sort_names[sort],
                                                  status ? od_order_status_name (status) : "all");
        guint rows = 0;

        for (guint i = 0; i < N; i++)
          {
            double t = now_ms ();
            g_autoptr(GPtrArray) page = od_query_orders (cache, &q, &cursor, 100, NULL);

            ms[i] = now_ms () - t;
            rows = page->len;
            if (page->len == 100)
              od_order_cursor_from_row (&cursor, &q, g_ptr_array_index (page, 99));
            else
              od_order_cursor_clear (&cursor); /* the end: from the top again */
          }
        od_order_cursor_clear (&cursor);
        report (label, ms, N, rows);
      }
  /* The searches take turns: the core keeps the matches of the last
   * search (until the cache changes), so a repeat of the same text would
   * measure that memo, not the search. */
  {
    double sms[G_N_ELEMENTS (searches)][50];
    guint srows[G_N_ELEMENTS (searches)] = { 0 };
    double next_ms[50];

    for (guint i = 0; i < 50; i++)
      for (guint s = 0; s < G_N_ELEMENTS (searches); s++)
        {
          OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, searches[s] };
          double t = now_ms ();
          g_autoptr(GPtrArray) page = od_query_orders (cache, &q, NULL, 100, NULL);

          sms[s][i] = now_ms () - t;
          srows[s] = page->len;
          /* The next page of the same search reads the memo. */
          if (s == 0 && page->len == 100)
            {
              OdOrderCursor cursor = { 0 };
              g_autoptr(GPtrArray) next = NULL;

              od_order_cursor_from_row (&cursor, &q, g_ptr_array_index (page, 99));
              t = now_ms ();
              next = od_query_orders (cache, &q, &cursor, 100, NULL);
              next_ms[i] = now_ms () - t;
              od_order_cursor_clear (&cursor);
            }
        }
    for (guint s = 0; s < G_N_ELEMENTS (searches); s++)
      {
        g_autofree char *label = g_strdup_printf ("search \"%s\", first 100", searches[s]);

        report (label, sms[s], 50, srows[s]);
      }
    report ("search \"grace\", second page (memo)", next_ms, 50, 100);
  }
  {
    gint64 counts[OD_STATUS_N];

    for (guint i = 0; i < N; i++)
      {
        double t = now_ms ();

        od_cache_get_status_counts (cache, counts, NULL);
        ms[i] = now_ms () - t;
      }
    report ("counts per status", ms, N, (guint) counts[0]);
  }
  {
    OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL };
    g_autoptr(GPtrArray) page = od_query_orders (cache, &q, NULL, 100, NULL);

    for (guint i = 0; i < N; i++)
      {
        OdOrderRow *r = g_ptr_array_index (page, i % page->len);
        double t = now_ms ();
        g_autoptr(OdOrder) o = od_query_order (cache, r->order_id, NULL);

        ms[i] = now_ms () - t;
        g_assert_nonnull (o);
      }
    report ("one order with its lines", ms, N, 1);
  }
  /* Jumps into the list as the console makes them, with the console's
   * small page cache and no memory map (see od_window_open_profile). */
  sqlite3_exec (od_cache_get_db (cache), "PRAGMA mmap_size=0; PRAGMA cache_size=-8192;",
                NULL, NULL, NULL);
  for (int sort = OD_ORDER_SORT_UPDATED; sort <= OD_ORDER_SORT_CUSTOMER; sort += 3)
    for (int status = 0; status < OD_STATUS_N; status += 3)
      {
        static const char *sort_names[] = { "updated", "created", "total", "customer" };
        OdOrderQuery q = { sort, sort != OD_ORDER_SORT_CUSTOMER, status, NULL };
        gint64 total = od_query_count_orders (cache, &q, NULL);
        g_autofree char *label = g_strdup_printf ("jump to a random row, 100, by %s, %s",
                                                  sort_names[sort],
                                                  status ? od_order_status_name (status) : "all");
        g_autofree char *locate_label = g_strdup_printf ("row number, from the top, by %s, %s",
                                                         sort_names[sort],
                                                         status ? od_order_status_name (status)
                                                                : "all");
        g_autofree char *near_label = g_strdup_printf ("row number, nearer end, by %s, %s",
                                                       sort_names[sort],
                                                       status ? od_order_status_name (status)
                                                              : "all");
        double near_ms[40];
        g_autoptr(GRand) rand = g_rand_new_with_seed (7);
        double locate_ms[40];
        guint rows = 0;

        for (guint i = 0; i < 40; i++)
          {
            guint64 offset = (guint64) g_rand_double_range (rand, 0, MAX (total - 100, 1));
            double t = now_ms ();
            g_autoptr(GPtrArray) page = od_query_orders_at (cache, &q, offset, 100, NULL);
            gint64 position = -1;

            ms[i] = now_ms () - t;
            rows = page->len;
            /* The list's way back to rows a burst pushed out of memory
             * (od_order_list_model_locate). */
            t = now_ms ();
            if (page->len == 0)
              {
                locate_ms[i] = near_ms[i] = 0;
                continue;
              }
            if (!od_query_order_position (cache, &q, ((OdOrderRow *) page->pdata[0])->order_id,
                                             -1, &position, NULL)
                || position != (gint64) offset)
              g_error ("row number of row %" G_GUINT64_FORMAT ": %" G_GINT64_FORMAT, offset,
                       position);
            locate_ms[i] = now_ms () - t;
            /* As the list asks, with a guess (here the right row). */
            t = now_ms ();
            if (!od_query_order_position (cache, &q, ((OdOrderRow *) page->pdata[0])->order_id,
                                             offset, &position, NULL)
                || position != (gint64) offset)
              g_error ("row number of row %" G_GUINT64_FORMAT " from the end: %" G_GINT64_FORMAT,
                       offset, position);
            near_ms[i] = now_ms () - t;
          }
        report (label, ms, 40, rows);
        report (locate_label, locate_ms, 40, 1);
        report (near_label, near_ms, 40, 1);
        {
          double t = now_ms ();
          g_autoptr(GPtrArray) page = od_query_orders_at (cache, &q, MAX (total - 100, 0), 100,
                                                          NULL);
          g_autofree char *last = g_strdup_printf ("jump to the last 100, by %s, %s",
                                                   sort_names[sort],
                                                   status ? od_order_status_name (status) : "all");

          ms[0] = now_ms () - t;
          report (last, ms, 1, page->len);
        }
      }
  /* A search as the console's list makes it, with its read settings:
   * the count (which fills the memo), the first page, the second page by
   * offset. */
  {
    double count_ms[G_N_ELEMENTS (searches) * 5], first_ms[G_N_ELEMENTS (searches) * 5];
    double second_ms[G_N_ELEMENTS (searches) * 5];
    guint n = 0;

    for (guint i = 0; i < 5; i++)
      for (guint s = 0; s < G_N_ELEMENTS (searches); s++, n++)
        {
          OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, searches[s] };
          double t = now_ms ();
          g_autoptr(GPtrArray) first = NULL;
          g_autoptr(GPtrArray) second = NULL;

          od_query_count_orders (cache, &q, NULL);
          count_ms[n] = now_ms () - t;
          t = now_ms ();
          first = od_query_orders (cache, &q, NULL, 100, NULL);
          first_ms[n] = now_ms () - t;
          t = now_ms ();
          second = od_query_orders_at (cache, &q, 99, 101, NULL);
          second_ms[n] = now_ms () - t;
        }
    report ("console search: count (fills the memo)", count_ms, n, 0);
    report ("console search: first page (memo)", first_ms, n, 100);
    report ("console search: second page by offset (memo)", second_ms, n, 101);
  }
  getrusage (RUSAGE_SELF, &ru);
  g_print ("\npeak RSS %ld MiB\n", ru.ru_maxrss / 1024);
  if (dir)
    {
      g_autofree char *wal = g_strconcat (path, "-wal", NULL);
      g_autofree char *shm = g_strconcat (path, "-shm", NULL);
      /* PATH.lock too (the writer lock), or the directory stays. */
      g_autofree char *lock = g_strconcat (path, ".lock", NULL);

      g_clear_object (&cache);
      g_unlink (path);
      g_unlink (wal);
      g_unlink (shm);
      g_unlink (lock);
      g_rmdir (dir);
    }
  return 0;
}

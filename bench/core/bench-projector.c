/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The writer alone: synthetic events (UUIDv7 ids, ~5 events an order)
 * applied into a cold cache, then the list queries at that size.
 *
 *   bench-core-projector [N_ORDERS] [CACHE_FILE]
 */
#include "od-core.h"
#include "od-test-events.h"

#include <glib/gstdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static double
now_s (void)
{
  return g_get_monotonic_time () / 1e6;
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
        guint       n)
{
  qsort (ms, n, sizeof *ms, cmp_double);
  g_print ("%-44s p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms  (n=%u)\n", what, ms[n / 2],
           ms[(guint) (n * 0.99)], ms[n - 1], n);
}

static void
bench_queries (OdCache *cache)
{
  enum { N = 200 };
  double ms[N];
  const char *searches[] = { "grace", "c123456@example.com", "SKU-2", "ada lov", "0190", "knuth 77" };

  for (int sort = OD_ORDER_SORT_UPDATED; sort <= OD_ORDER_SORT_CUSTOMER; sort++)
    for (int status = 0; status <= OD_STATUS_SHIPPED; status += 3)
      {
        OdOrderQuery q = { sort, sort != OD_ORDER_SORT_CUSTOMER, status, NULL };
        OdOrderCursor cursor = { 0 };
        g_autofree char *label = g_strdup_printf ("page of 100, sort %d, status %s", sort,
                                                  status ? od_order_status_name (status) : "all");

        for (guint i = 0; i < N; i++)
          {
            double t0 = now_s ();
            g_autoptr(GPtrArray) rows = od_query_orders (cache, &q, &cursor, 100, NULL);

            ms[i] = (now_s () - t0) * 1000;
            if (rows->len == 100)
              od_order_cursor_from_row (&cursor, &q, g_ptr_array_index (rows, 99));
            else
              od_order_cursor_clear (&cursor);
          }
        od_order_cursor_clear (&cursor);
        report (label, ms, N);
      }
  for (guint s = 0; s < G_N_ELEMENTS (searches); s++)
    {
      OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, searches[s] };
      g_autofree char *label = g_strdup_printf ("search \"%s\" (first 100)", searches[s]);
      guint found = 0;

      for (guint i = 0; i < 50; i++)
        {
          double t0 = now_s ();
          g_autoptr(GPtrArray) rows = od_query_orders (cache, &q, NULL, 100, NULL);

          ms[i] = (now_s () - t0) * 1000;
          found = rows->len;
        }
      report (label, ms, 50);
      g_print ("    (%u rows)\n", found);
    }
  {
    gint64 counts[OD_STATUS_N];

    for (guint i = 0; i < N; i++)
      {
        double t0 = now_s ();

        od_cache_get_status_counts (cache, counts, NULL);
        ms[i] = (now_s () - t0) * 1000;
      }
    report ("status counts", ms, N);
    g_print ("    (%" G_GINT64_FORMAT " orders)\n", counts[0]);
  }
}

int
main (int    argc,
      char **argv)
{
  guint n_orders = argc > 1 ? atoi (argv[1]) : 200000;
  g_autofree char *dir = NULL;
  g_autofree char *path = NULL;
  g_autoptr(OdTestLog) log = NULL;
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(GError) error = NULL;
  struct rusage ru;
  double t0, t1;
  guint i = 0;

  if (argc > 2)
    path = g_strdup (argv[2]);
  else
    {
      dir = g_dir_make_tmp ("od-bench-XXXXXX", NULL);
      path = g_build_filename (dir, "cache.sqlite", NULL);
    }
  g_print ("generating %u orders...\n", n_orders);
  log = od_test_log_new (n_orders, 42);
  g_print ("%u events\n", log->events->len);

  /* The sync thread hands the writer parsed events; do the same. */
  for (guint k = 0; k < log->events->len; k++)
    od_event_get_data (g_ptr_array_index (log->events, k));
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  t0 = now_s ();
  while (i < log->events->len)
    {
      /* Hand over the events themselves (the slice copies would cost the
       * bench, not the writer). */
      GPtrArray *batch = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
      guint end = MIN (i + 2000, log->events->len);

      for (; i < end; i++)
        g_ptr_array_add (batch, g_steal_pointer (&log->events->pdata[i]));
      od_cache_push_events (cache, batch, log->head);
    }
  od_cache_flush (cache, NULL);
  t1 = now_s ();
  getrusage (RUSAGE_SELF, &ru);
  g_print ("applied %u events in %.2f s: %.0f events/s (writer only); peak RSS %ld MiB\n",
           log->events->len, t1 - t0, log->events->len / (t1 - t0), ru.ru_maxrss / 1024);
  bench_queries (cache);
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

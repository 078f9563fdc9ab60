/* SPDX-License-Identifier: GPL-3.0-or-later */
/* What a verification costs the list: the console's list query (a page of
 * 50 rows at a random offset, od_query_orders_at, as a scroll makes it)
 * run every 20 ms on the main thread, alone, then while a verification
 * runs on its worker thread at full speed (Verify Cache), then paced (the
 * automatic run after a catch-up).  Prints each one's time and the
 * query's p50/p99/max.
 *
 *   bench-core-verify-pace URL TOKEN CACHE_FILE
 *
 * CACHE_FILE must be caught up with the server (bench-verify.sh makes
 * one and runs this).
 */
#include "od-core.h"
#include "od-cache-private.h"

#include <stdlib.h>

typedef struct
{
  OdCache  *cache;
  GArray   *ms;        /* double */
  gint64    n_orders;
  gboolean  done;
  OdVerifyReport *report;
  GError   *error;
} Bench;

static int
cmp_double (const void *a,
            const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static gboolean
query_tick (gpointer data)
{
  Bench *b = data;
  OdOrderQuery query = { .sort = OD_ORDER_SORT_UPDATED, .descending = TRUE, .status = OD_STATUS_NONE };
  gint64 start = g_get_monotonic_time ();
  g_autoptr(GPtrArray) rows = od_query_orders_at (b->cache, &query,
                                                  g_random_int_range (0, MAX (b->n_orders - 50, 1)), 50,
                                                  NULL);
  double ms = (g_get_monotonic_time () - start) / 1000.0;

  g_assert_nonnull (rows);
  g_array_append_val (b->ms, ms);
  return G_SOURCE_CONTINUE;
}

static void
verify_done (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Bench *b = user_data;

  b->report = od_verify_run_finish (result, &b->error);
  b->done = TRUE;
}

static gboolean
timeout_done (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
print_row (const char *what,
           double      seconds,
           GArray     *ms)
{
  double *v = (double *) ms->data;

  qsort (v, ms->len, sizeof (double), cmp_double);
  g_print ("| %-28s | %7.2f s | %5u | %6.2f ms | %6.2f ms | %6.2f ms |\n", what, seconds, ms->len,
           v[ms->len / 2], v[(guint) (ms->len * 0.99)], v[ms->len - 1]);
}

/* paced < 0: no verification, 5 s of queries alone. */
static void
run (Bench      *b,
     const char *url,
     const char *token,
     int         paced)
{
  gint64 start = g_get_monotonic_time ();
  guint tick = g_timeout_add (20, query_tick, b);

  g_array_set_size (b->ms, 0);
  b->done = FALSE;
  if (paced < 0)
    g_timeout_add (5000, timeout_done, &b->done);
  else
    od_verify_run_full_async (b->cache, url, token, NULL, 0, FALSE, paced, NULL, NULL, NULL, NULL,
                              verify_done, b);
  while (!b->done)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
  if (b->error != NULL)
    g_error ("verify: %s", b->error->message);
  if (b->report != NULL && !od_verify_report_clean (b->report))
    g_error ("the cache differs: %s", od_verify_report_to_json (b->report));
  g_clear_pointer (&b->report, od_verify_report_free);
  print_row (paced < 0 ? "queries alone" : paced ? "verify, paced (automatic)" : "verify, full speed (asked)",
             (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC, b->ms);
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(GError) error = NULL;
  Bench b = { 0 };
  OdOrderQuery all = { .status = OD_STATUS_NONE };

  if (argc != 4)
    {
      g_printerr ("usage: %s URL TOKEN CACHE_FILE\n", argv[0]);
      return 2;
    }
  b.cache = od_cache_open (argv[3], &error);
  if (b.cache == NULL)
    g_error ("%s", error->message);
  /* As the console's window has it. */
  sqlite3_exec (od_cache_get_db (b.cache), "PRAGMA mmap_size=0; PRAGMA cache_size=-8192;", NULL, NULL,
                NULL);
  b.n_orders = od_query_count_orders (b.cache, &all, NULL);
  b.ms = g_array_new (FALSE, FALSE, sizeof (double));
  g_print ("%" G_GINT64_FORMAT " orders, applied position %" G_GINT64_FORMAT "\n\n", b.n_orders,
           od_cache_get_applied_position (b.cache));
  g_print ("| run | time | queries | p50 | p99 | max |\n|---|---|---|---|---|---|\n");
  run (&b, argv[1], argv[2], -1);
  run (&b, argv[1], argv[2], FALSE);
  run (&b, argv[1], argv[2], TRUE);
  g_array_unref (b.ms);
  od_cache_close (b.cache);
  g_object_unref (b.cache);
  return 0;
}

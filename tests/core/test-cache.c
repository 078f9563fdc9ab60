/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The cache, projector, queries and SSE parser, fed with events made by
 * the test itself (no server needed). */
#include "od-core.h"
#include "od-cache-private.h" /* od_cache_get_db () */
#include "od-test-events.h"
#include "od-test-process.h" /* od_test_process_rmdir () */
#include "od-event-fast.h"

#include <glib/gstdio.h>
#include <string.h>

typedef struct
{
  char    *dir;
  char    *path;
  OdCache *cache;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  f->dir = g_dir_make_tmp ("od-test-cache-XXXXXX", &error);
  g_assert_no_error (error);
  f->path = g_build_filename (f->dir, "cache.sqlite", NULL);
  f->cache = od_cache_open (f->path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->cache);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_clear_object (&f->cache);
  od_test_process_rmdir (f->dir);
  g_free (f->dir);
  g_free (f->path);
}

static void
push_log (OdCache   *cache,
          OdTestLog *log,
          guint32    seed)
{
  GRand *rand = g_rand_new_with_seed (seed);
  guint i = 0;

  while (i < log->events->len)
    {
      guint n = g_rand_int_range (rand, 1, 700);

      od_cache_push_events (cache, od_test_log_slice (log, i, i + n), log->head);
      i += n;
    }
  g_rand_free (rand);
  g_assert_true (od_cache_flush (cache, NULL));
}

static gint64
scalar (OdCache    *cache,
        const char *sql)
{
  sqlite3_stmt *st = NULL;
  gint64 v = -1;

  g_assert_cmpint (sqlite3_prepare_v2 (od_cache_get_db (cache), sql, -1, &st, NULL), ==,
                   SQLITE_OK);
  if (sqlite3_step (st) == SQLITE_ROW)
    v = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  return v;
}

static char *
views_digest (OdCache *cache)
{
  sqlite3_stmt *st = NULL;
  GChecksum *sum = g_checksum_new (G_CHECKSUM_SHA256);
  const char *queries[] = {
    "SELECT order_id, status, version, total_cents, item_count, updated_at FROM orders ORDER BY order_id",
    "SELECT order_id, sku, quantity, unit_price_cents FROM order_items ORDER BY order_id, sku",
    "SELECT position, order_id, version, type FROM order_events ORDER BY position",
    "SELECT status, n FROM status_counts ORDER BY status",
  };
  char *out;

  for (guint q = 0; q < G_N_ELEMENTS (queries); q++)
    {
      sqlite3_prepare_v2 (od_cache_get_db (cache), queries[q], -1, &st, NULL);
      while (sqlite3_step (st) == SQLITE_ROW)
        for (int c = 0; c < sqlite3_column_count (st); c++)
          {
            const char *t = (const char *) sqlite3_column_text (st, c);

            g_checksum_update (sum, (const guchar *) (t ? t : "NULL"), -1);
            g_checksum_update (sum, (const guchar *) "|", 1);
          }
      sqlite3_finalize (st);
    }
  out = g_strdup (g_checksum_get_string (sum));
  g_checksum_free (sum);
  return out;
}

static void
test_projector_matches_fold (Fixture       *f,
                             gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (3000, 7);
  g_autoptr(GHashTable) fold = od_test_fold (log->events);
  g_autofree char *why = NULL;
  gint64 counts[OD_STATUS_N];
  gint64 fold_counts[OD_STATUS_N] = { 0 };
  GHashTableIter iter;
  gpointer value;

  /* About 17,000 events into a cold cache: bulk mode by default; the
   * second run keeps every index up row by row, as live events do. */
  if (GPOINTER_TO_INT (data) == 1)
    {
      od_cache_set_bulk_threshold (f->cache, G_MAXINT64);
      od_cache_set_bulk_min (f->cache, G_MAXINT64);
    }
  push_log (f->cache, log, 1);
  g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, log->head);
  if (!od_test_cache_equals_fold (f->cache, fold, &why))
    g_error ("%s", why);
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM order_events"), ==, log->events->len);
  /* Unknown event types are kept. */
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM order_events WHERE type = 'SomethingNew'"),
                   >, 0);

  g_assert_true (od_cache_get_status_counts (f->cache, counts, NULL));
  g_hash_table_iter_init (&iter, fold);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      OdOrder *o = value;

      fold_counts[o->status]++;
      fold_counts[0]++;
    }
  for (int i = 0; i < 6; i++)
    g_assert_cmpint (counts[i], ==, fold_counts[i]);
}

static void
test_replay_is_noop (Fixture       *f,
                     gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (500, 11);
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;

  push_log (f->cache, log, 2);
  before = views_digest (f->cache);
  /* Replays of everything and of random slices, repeated events. */
  push_log (f->cache, log, 3);
  for (guint i = 0; i < 50; i++)
    {
      guint from = g_random_int_range (0, log->events->len);

      od_cache_push_events (f->cache, od_test_log_slice (log, from, from + 30), log->head);
      od_cache_push_events (f->cache, od_test_log_slice (log, from, from + 1), log->head);
    }
  g_assert_true (od_cache_flush (f->cache, NULL));
  after = views_digest (f->cache);
  g_assert_cmpstr (before, ==, after);
  g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, log->head);
}

typedef struct
{
  gint64 applied;
  gint64 position;
  gint64 prev;
  guint  calls;
} GapSeen;

static void
on_gap (gint64   applied,
        gint64   position,
        gint64   prev,
        gpointer user_data)
{
  GapSeen *g = user_data;

  g->applied = applied;
  g->position = position;
  g->prev = prev;
  g->calls++;
}

static void
test_gap_stops (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (100, 5);
  GapSeen seen = { 0 };

  od_cache_set_gap_func (f->cache, on_gap, &seen);
  od_cache_push_events (f->cache, od_test_log_slice (log, 0, 100), log->head);
  /* Events 111.. follow 110, which the cache never saw. */
  od_cache_push_events (f->cache, od_test_log_slice (log, 110, 150), log->head);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, 100);
  g_assert_cmpuint (seen.calls, ==, 1);
  g_assert_cmpint (seen.applied, ==, 100);
  g_assert_cmpint (seen.position, ==, 111);
  g_assert_cmpint (seen.prev, ==, 110);
  g_assert_cmpint (scalar (f->cache, "SELECT max(position) FROM order_events"), ==, 100);
  /* Filling the hole goes on where it stopped. */
  od_cache_push_events (f->cache, od_test_log_slice (log, 100, log->events->len), log->head);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, log->head);
  od_cache_set_gap_func (f->cache, NULL, NULL);
}

static int
compare_rows (OdOrderSort       sort,
              const OdOrderRow *a,
              const OdOrderRow *b)
{
  int c;

  switch (sort)
    {
    case OD_ORDER_SORT_TOTAL:
      c = (a->total_cents > b->total_cents) - (a->total_cents < b->total_cents);
      break;
    case OD_ORDER_SORT_CREATED:
      c = strcmp (a->created_at, b->created_at);
      break;
    case OD_ORDER_SORT_CUSTOMER:
      c = strcmp (a->customer_name, b->customer_name);
      break;
    case OD_ORDER_SORT_UPDATED:
    default:
      c = strcmp (a->updated_at, b->updated_at);
      break;
    }
  return c ? c : strcmp (a->order_id, b->order_id);
}

static void
test_queries (Fixture       *f,
              gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (1200, 13);
  gint64 counts[OD_STATUS_N];

  push_log (f->cache, log, 4);
  g_assert_true (od_cache_get_status_counts (f->cache, counts, NULL));

  for (int sort = OD_ORDER_SORT_UPDATED; sort <= OD_ORDER_SORT_CUSTOMER; sort++)
    for (int desc = 0; desc < 2; desc++)
      for (int status = OD_STATUS_NONE; status < OD_STATUS_N; status++)
        {
          OdOrderQuery q = { sort, desc, status, NULL };
          OdOrderCursor cursor = { 0 };
          g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
          g_autoptr(OdOrderRow) last = NULL;
          guint total = 0;

          for (;;)
            {
              g_autoptr(GError) error = NULL;
              g_autoptr(GPtrArray) rows = od_query_orders (f->cache, &q, &cursor, 37, &error);

              g_assert_no_error (error);
              for (guint i = 0; i < rows->len; i++)
                {
                  OdOrderRow *r = g_ptr_array_index (rows, i);

                  g_assert_true (g_hash_table_add (seen, g_strdup (r->order_id)));
                  if (status != OD_STATUS_NONE)
                    g_assert_cmpint (r->status, ==, status);
                  if (last != NULL)
                    {
                      int c = compare_rows (sort, last, r);

                      g_assert_cmpint (desc ? -c : c, <, 0);
                    }
                  g_clear_pointer (&last, od_order_row_free);
                  last = od_order_row_copy (r);
                  total++;
                }
              if (rows->len < 37)
                break;
              od_order_cursor_from_row (&cursor, &q, g_ptr_array_index (rows, rows->len - 1));
            }
          od_order_cursor_clear (&cursor);
          g_assert_cmpint (total, ==, counts[status]);
          g_assert_cmpint (od_query_count_orders (f->cache, &q, NULL), ==, counts[status]);
        }

  /* Search: id prefix, customer words, e-mail, SKU. */
  {
    OdEvent *first = g_ptr_array_index (log->events, 0);
    char prefix[20];
    OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, prefix };
    g_autoptr(GPtrArray) rows = NULL;
    gboolean found = FALSE;

    g_strlcpy (prefix, first->order_id, 14);
    rows = od_query_orders (f->cache, &q, NULL, 100, NULL);
    for (guint i = 0; i < rows->len; i++)
      {
        OdOrderRow *r = g_ptr_array_index (rows, i);

        g_assert_true (g_str_has_prefix (r->order_id, prefix));
        found |= g_str_equal (r->order_id, first->order_id);
      }
    g_assert_true (found);

    q.search = "grace hop";
    g_clear_pointer (&rows, g_ptr_array_unref);
    rows = od_query_orders (f->cache, &q, NULL, 1000, NULL);
    g_assert_cmpuint (rows->len, >, 0);
    for (guint i = 0; i < rows->len; i++)
      g_assert_true (g_str_has_prefix (((OdOrderRow *) rows->pdata[i])->customer_name,
                                       "Grace Hopper"));

    q.search = "c17@example.com";
    g_clear_pointer (&rows, g_ptr_array_unref);
    rows = od_query_orders (f->cache, &q, NULL, 1000, NULL);
    g_assert_cmpuint (rows->len, >=, 1);
    found = FALSE;
    for (guint i = 0; i < rows->len; i++)
      found |= g_str_equal (((OdOrderRow *) rows->pdata[i])->customer_email, "c17@example.com");
    g_assert_true (found);

    q.search = "SKU-2";
    g_assert_cmpint (od_query_count_orders (f->cache, &q, NULL), >, 0);
    g_assert_cmpint (od_query_count_orders (f->cache, &q, NULL), ==,
                     scalar (f->cache, "SELECT count(DISTINCT order_id) FROM order_items WHERE sku = 'SKU-2'"));

    /* FTS syntax in the text is only text. */
    q.search = "\"OR* NEAR( -";
    g_clear_pointer (&rows, g_ptr_array_unref);
    rows = od_query_orders (f->cache, &q, NULL, 10, NULL);
    g_assert_nonnull (rows);
  }
}

/* A jump to row N gives exactly the rows a walk from the top reaches
 * there, and an order's row number is where that walk finds it, for
 * every sort, direction, status filter and a search. */
static void
test_orders_at (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (700, 17);
  const char *searches[] = { NULL, "a", "0" };

  push_log (f->cache, log, 4);
  for (guint s = 0; s < G_N_ELEMENTS (searches); s++)
    for (int sort = OD_ORDER_SORT_UPDATED; sort <= OD_ORDER_SORT_CUSTOMER; sort++)
      for (int desc = 0; desc < 2; desc++)
        for (int status = OD_STATUS_NONE; status < OD_STATUS_N; status++)
          {
            OdOrderQuery q = { sort, desc, status, searches[s] };
            OdOrderCursor cursor = { 0 };
            g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);
            guint64 offsets[8];

            for (;;)
              {
                g_autoptr(GPtrArray) rows = od_query_orders (f->cache, &q, &cursor, 50, NULL);

                g_assert_nonnull (rows);
                for (guint i = 0; i < rows->len; i++)
                  g_ptr_array_add (ids, g_strdup (((OdOrderRow *) rows->pdata[i])->order_id));
                if (rows->len < 50)
                  break;
                od_order_cursor_from_row (&cursor, &q, rows->pdata[rows->len - 1]);
              }
            od_order_cursor_clear (&cursor);
            offsets[0] = 0;
            offsets[1] = 1;
            offsets[2] = 36;
            offsets[3] = ids->len / 2;
            offsets[4] = ids->len > 5 ? ids->len - 5 : 0;
            offsets[5] = ids->len;
            offsets[6] = ids->len + 10;
            offsets[7] = ids->len / 3 + 7;
            for (guint k = 0; k < G_N_ELEMENTS (offsets); k++)
              {
                g_autoptr(GError) error = NULL;
                g_autoptr(GPtrArray) rows = od_query_orders_at (f->cache, &q, offsets[k], 37,
                                                                &error);
                guint want = offsets[k] >= ids->len ? 0 : MIN (37, ids->len - offsets[k]);

                g_assert_no_error (error);
                g_assert_cmpuint (rows->len, ==, want);
                for (guint i = 0; i < rows->len; i++)
                  g_assert_cmpstr (((OdOrderRow *) rows->pdata[i])->order_id, ==,
                                   ids->pdata[offsets[k] + i]);
              }
            /* And the way back: an order's row number from its id, for
             * the first, the last and random rows. */
            for (guint k = 0; k < 12 && ids->len > 0; k++)
              {
                g_autoptr(GError) error = NULL;
                guint want = k == 0 ? 0 : k == 1 ? ids->len - 1
                                             : (guint) g_test_rand_int_range (0, ids->len);
                gint64 position = -2;
                /* No guess, a guess near it (counted from the nearer
                 * end) and a wrong one. */
                gint64 near = k % 3 == 0 ? -1 : k % 3 == 1 ? (gint64) want
                              : (gint64) g_test_rand_int_range (0, ids->len + 10);

                g_assert_true (od_query_order_position (f->cache, &q, ids->pdata[want], near,
                                                        &position, &error));
                g_assert_no_error (error);
                g_assert_cmpint (position, ==, want);
              }
            {
              gint64 position = -2;

              g_assert_true (od_query_order_position (f->cache, &q,
                                                      "00000000-0000-7000-8000-000000000000",
                                                      ids->len, &position, NULL));
              g_assert_cmpint (position, ==, -1);
            }
          }
}

typedef struct
{
  gboolean done;
  gboolean ok;
  GError  *error;
} ExportWait;

static void
exported (GObject      *source,
          GAsyncResult *result,
          gpointer      data)
{
  ExportWait *w = data;

  w->ok = od_query_export_csv_finish (OD_CACHE (source), result, &w->error);
  w->done = TRUE;
}

/* Drops the first line's "exported NOW" part, which differs by design. */
static char *
export_to_string (OdCache       *cache,
                  OdExportFlags  flags)
{
  g_autoptr(GOutputStream) out = g_memory_output_stream_new_resizable ();
  OdOrderQuery q = { OD_ORDER_SORT_CREATED, FALSE, OD_STATUS_NONE, NULL };
  g_autoptr(GError) error = NULL;

  g_assert_true (od_query_export_csv_full (cache, &q, flags, out, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_output_stream_write_all (out, "", 1, NULL, NULL, NULL));
  return g_strdup (g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (out)));
}

/* The export is plain RFC 4180 CSV unless the provenance line is asked
 * for, and customer text that a spreadsheet would run as a formula stays
 * text: = + - @, a tab or a carriage return at the start of the field, or
 * after a ';' (spreadsheets that split on ';' ignore the quotes of a
 * field in the middle of a line). */
static void
test_export_csv_guard (Fixture       *f,
                       gconstpointer  data)
{
  static const struct
  {
    const char *name;   /* JSON string contents */
    const char *field;  /* as exported */
  } cases[] = {
    { "Ada Lovelace", "Ada Lovelace" },
    { "=HYPERLINK(\\\"http://x\\\")", "\"'=HYPERLINK(\"\"http://x\"\")\"" },
    { "+1", "\"'+1\"" },
    { "-1+2", "\"'-1+2\"" },
    { "@SUM(A1)", "\"'@SUM(A1)\"" },
    { "\\t=1+2", "\"'\t=1+2\"" },
    { "\\r=1+2", "\"'\r=1+2\"" },
    { "Smith;=cmd|' /C calc'!A0", "\"Smith;'=cmd|' /C calc'!A0\"" },
    { "Smith;  +1", "\"Smith;  '+1\"" },
    { "a;b;@c", "\"a;b;'@c\"" },
    { "Müller; Jo", "Müller; Jo" },
    { "Doe, Jane", "\"Doe, Jane\"" },
  };
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  g_autofree char *plain = NULL;
  g_autofree char *stamped = NULL;
  g_auto(GStrv) lines = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *id = g_strdup_printf ("0193a1c2-7f00-7abc-8def-%012u", i);
      g_autofree char *json = g_strdup_printf ("{\"customer_name\":\"%s\",\"customer_email\":"
                                               "\"c%u@example.com\",\"currency\":\"EUR\"}",
                                               cases[i].name, i);

      g_ptr_array_add (events, od_test_event_new (i + 1, i, id, 1, "OrderCreated", json));
    }
  od_cache_push_events (f->cache, g_steal_pointer (&events), G_N_ELEMENTS (cases));
  g_assert_true (od_cache_flush (f->cache, NULL));

  plain = export_to_string (f->cache, OD_EXPORT_NONE);
  lines = g_strsplit (plain, "\r\n", -1);
  g_assert_cmpstr (lines[0], ==, "order_id,customer_name,customer_email,currency,status,"
                                 "item_count,total_cents,version,created_at,updated_at,"
                                 "last_position,note_count,refunded_cents");
  g_assert_cmpuint (g_strv_length (lines), ==, G_N_ELEMENTS (cases) + 2);
  g_assert_cmpstr (lines[G_N_ELEMENTS (cases) + 1], ==, "");
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *prefix = g_strdup_printf ("0193a1c2-7f00-7abc-8def-%012u,%s,c%u@example.com,"
                                                 "EUR,draft,", i, cases[i].field, i);

      if (!g_str_has_prefix (lines[i + 1], prefix))
        g_error ("line %u: %s\nexpected to start with: %s", i + 1, lines[i + 1], prefix);
    }

  stamped = export_to_string (f->cache, OD_EXPORT_PROVENANCE);
  g_assert_true (g_str_has_prefix (stamped, "# orderdesk export: data as of position 12, "));
  g_assert_nonnull (strstr (stamped, "\r\n"));
  g_assert_cmpstr (strstr (stamped, "\r\n") + 2, ==, plain);
}

/* The export on a worker thread writes what the synchronous one does;
 * a cancelled one says so. */
static void
test_export_async (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (1500, 23);
  OdOrderQuery queries[] = {
    { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL },
    { OD_ORDER_SORT_CUSTOMER, FALSE, OD_STATUS_PLACED, NULL },
    { OD_ORDER_SORT_TOTAL, TRUE, OD_STATUS_NONE, "a" },
  };

  push_log (f->cache, log, 4);
  for (guint i = 0; i < G_N_ELEMENTS (queries); i++)
    {
      g_autoptr(GOutputStream) sync_out = g_memory_output_stream_new_resizable ();
      g_autoptr(GOutputStream) async_out = g_memory_output_stream_new_resizable ();
      g_autoptr(GError) error = NULL;
      g_autofree char *search = g_strdup (queries[i].search);
      OdOrderQuery q = queries[i];
      ExportWait w = { 0 };
      g_autofree char *a = NULL;
      g_autofree char *b = NULL;
      char **lines;

      g_assert_true (od_query_export_csv (f->cache, &q, sync_out, NULL, &error));
      g_assert_no_error (error);
      q.search = search;
      od_query_export_csv_async (f->cache, &q, async_out, NULL, exported, &w);
      /* The query was copied: the caller's may go away at once. */
      g_clear_pointer (&search, g_free);
      q.search = NULL;
      while (!w.done)
        g_main_context_iteration (NULL, TRUE);
      g_assert_no_error (w.error);
      g_assert_true (w.ok);
      g_assert_true (g_output_stream_write_all (sync_out, "", 1, NULL, NULL, NULL));
      g_assert_true (g_output_stream_write_all (async_out, "", 1, NULL, NULL, NULL));
      a = g_strdup (g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (sync_out)));
      b = g_strdup (g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (async_out)));
      g_assert_cmpstr (a, ==, b);
      /* Plain CSV: the header comes first. */
      lines = g_strsplit (b, "\r\n", 3);
      g_assert_cmpstr (lines[0], ==, "order_id,customer_name,customer_email,currency,status,"
                                     "item_count,total_cents,version,created_at,updated_at,"
                                     "last_position,note_count,refunded_cents");
      g_strfreev (lines);
    }

  {
    g_autoptr(GOutputStream) out = g_memory_output_stream_new_resizable ();
    g_autoptr(GCancellable) cancellable = g_cancellable_new ();
    ExportWait w = { 0 };

    g_cancellable_cancel (cancellable);
    od_query_export_csv_async (f->cache, &queries[0], out, cancellable, exported, &w);
    while (!w.done)
      g_main_context_iteration (NULL, TRUE);
    g_assert_false (w.ok);
    g_assert_error (w.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&w.error);
  }
}

/* Pages of a search read from the search's memo on the read connection:
 * once the writer commits more events, the memo is not used any more.
 * Checked against a walk with no memo (a fresh connection). */
static void
test_search_memo_follows_writes (Fixture       *f,
                                 gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (900, 29);
  guint half = log->events->len / 2;
  OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "a" };

  for (guint round = 0; round < 2; round++)
    {
      guint upto = round == 0 ? half : log->events->len;
      g_autoptr(GPtrArray) rows = NULL;
      gint64 n;

      od_cache_push_events (f->cache, od_test_log_slice (log, round == 0 ? 0 : half, upto),
                            log->head);
      g_assert_true (od_cache_flush (f->cache, NULL));
      n = od_query_count_orders (f->cache, &q, NULL);
      rows = od_query_orders (f->cache, &q, NULL, 10000, NULL);
      g_assert_cmpint (n, ==, rows->len);
      {
        g_autoptr(OdCache) other = od_cache_open (f->path, NULL);
        g_autoptr(GPtrArray) fresh = NULL;

        g_assert_nonnull (other);
        fresh = od_query_orders (other, &q, NULL, 10000, NULL);
        g_assert_cmpuint (fresh->len, ==, rows->len);
        for (guint i = 0; i < rows->len; i++)
          {
            OdOrderRow *a = rows->pdata[i];
            OdOrderRow *b = fresh->pdata[i];

            g_assert_cmpstr (a->order_id, ==, b->order_id);
            g_assert_cmpstr (a->updated_at, ==, b->updated_at);
            g_assert_cmpint (a->status, ==, b->status);
          }
        g_assert_cmpuint (rows->len, >, 0);
      }
    }
}

/* A search's first page under Updated or Created, newest first, is read
 * by walking the sort's index (od-query.c, search_head) before the
 * search's memo exists.  It must be exactly the page the memo gives, and
 * its quick count the memo's count: random terms, sorts and page sizes,
 * before and after more events arrive. */
static void
test_search_head_is_memo_page (Fixture       *f,
                               gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (6000, 41);
  const char *terms[] = { "Ada", "a", "c", "Grace Hop", "SKU-1", "Knuth", "e", "Lov", "01", "c1",
                          "Knuth 5", "Ada Lovelace 12", "zzz" };
  guint seed = g_test_rand_int ();
  GRand *rand = g_rand_new_with_seed (seed);
  guint cut = log->events->len * 7 / 10;
  guint walked = 0;

  g_test_message ("seed %u", seed);
  for (guint part = 0; part < 2; part++)
    {
      od_cache_push_events (f->cache, od_test_log_slice (log, part == 0 ? 0 : cut,
                                                         part == 0 ? cut : log->events->len),
                            log->head);
      g_assert_true (od_cache_flush (f->cache, NULL));
      for (guint round = 0; round < 40; round++)
        {
          OdOrderQuery q = { g_rand_boolean (rand) ? OD_ORDER_SORT_UPDATED : OD_ORDER_SORT_CREATED,
                             TRUE, OD_STATUS_NONE,
                             terms[g_rand_int_range (rand, 0, G_N_ELEMENTS (terms))] };
          OdOrderQuery none = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "zzzz" };
          guint limit = g_rand_int_range (rand, 1, 260);
          g_autoptr(GPtrArray) head = NULL;
          g_autoptr(GPtrArray) page = NULL;
          gboolean exact = TRUE;
          gint64 quick, count;

          /* A memo of nothing: the memo this search makes shows. */
          g_assert_cmpint (od_query_count_orders (f->cache, &none, NULL), ==, 0);
          quick = od_query_count_orders_quick (f->cache, &q, &exact, NULL);
          g_assert_false (exact);
          head = od_query_orders (f->cache, &q, NULL, limit, NULL);
          g_assert_nonnull (head);
          if (quick > 500 && scalar (f->cache, "SELECT count(*) FROM temp.od_search_hits") == 0)
            walked++;
          count = od_query_count_orders (f->cache, &q, NULL);
          g_assert_cmpint (quick, ==, count);
          page = od_query_orders (f->cache, &q, NULL, limit, NULL);
          g_assert_cmpuint (head->len, ==, page->len);
          g_assert_cmpuint (head->len, ==, MIN ((gint64) limit, count));
          for (guint i = 0; i < page->len; i++)
            {
              OdOrderRow *a = head->pdata[i];
              OdOrderRow *b = page->pdata[i];

              g_assert_cmpstr (a->order_id, ==, b->order_id);
              g_assert_cmpstr (a->updated_at, ==, b->updated_at);
              g_assert_cmpstr (a->created_at, ==, b->created_at);
              g_assert_cmpstr (a->customer_name, ==, b->customer_name);
              g_assert_cmpint (a->status, ==, b->status);
              g_assert_cmpint (a->total_cents, ==, b->total_cents);
              g_assert_cmpint (a->version, ==, b->version);
            }
        }
    }
  g_rand_free (rand);
  /* The walk did run (ten of the terms match more than 500 orders). */
  g_test_message ("%u of 80 first pages walked the index", walked);
  g_assert_cmpuint (walked, >=, 20);
}

static void
test_order_at (Fixture       *f,
               gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (50, 17);
  OdEvent *pick = NULL;

  push_log (f->cache, log, 5);
  for (guint i = 0; i < log->events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (log->events, i);

      if (ev->version == 3)
        {
          pick = ev;
          break;
        }
    }
  g_assert_nonnull (pick);
  {
    g_autoptr(GPtrArray) timeline = od_query_timeline (f->cache, pick->order_id, NULL);
    g_autoptr(GPtrArray) upto = g_ptr_array_new ();
    g_autoptr(GHashTable) fold = NULL;
    g_autoptr(OdOrder) at = od_query_order_at (f->cache, pick->order_id, pick->position, NULL);
    OdOrder *expect;

    g_assert_cmpuint (timeline->len, >=, 3);
    for (guint i = 0; i < log->events->len; i++)
      {
        OdEvent *ev = g_ptr_array_index (log->events, i);

        if (ev->position <= pick->position && g_str_equal (ev->order_id, pick->order_id))
          g_ptr_array_add (upto, ev);
      }
    fold = od_test_fold (upto);
    expect = g_hash_table_lookup (fold, pick->order_id);
    g_assert_nonnull (at);
    g_assert_cmpint (at->version, ==, 3);
    g_assert_cmpint (at->status, ==, expect->status);
    g_assert_cmpint (od_order_total_cents (at), ==, od_order_total_cents (expect));
    g_assert_cmpuint (at->lines->len, ==, expect->lines->len);
  }
}

static void
test_bulk_catch_up (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (1500, 29);
  g_autoptr(GHashTable) fold = od_test_fold (log->events);
  g_autofree char *why = NULL;
  OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "grace" };

  od_cache_set_bulk_threshold (f->cache, 1000);
  od_cache_set_max_transaction (f->cache, 2000);
  push_log (f->cache, log, 8);
  if (!od_test_cache_equals_fold (f->cache, fold, &why))
    g_error ("%s", why);
  /* Caught up: every index and the search index are back. */
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"), ==, 11);
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM sqlite_master WHERE name = 'orders_count_insert_bulk'"), ==, 0);
  g_assert_cmpint (od_query_count_orders (f->cache, &q, NULL), ==,
                   scalar (f->cache, "SELECT count(*) FROM orders WHERE customer_name LIKE 'Grace%'"));
  g_clear_object (&f->cache);

  /* Interrupted bulk mode (as a kill leaves it): repaired on open. */
  {
    sqlite3 *db = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_cmpint (sqlite3_open (f->path, &db), ==, SQLITE_OK);
    g_assert_cmpint (sqlite3_exec (db,
                                   "DROP INDEX orders_updated; DROP INDEX order_items_sku;"
                                   "DROP TRIGGER orders_count_insert;"
                                   "CREATE TRIGGER orders_count_insert_bulk AFTER INSERT ON orders BEGIN"
                                   "  UPDATE status_counts SET n = n + 1 WHERE status = NEW.status; END;",
                                   NULL, NULL, NULL), ==, SQLITE_OK);
    sqlite3_close (db);
    f->cache = od_cache_open (f->path, &error);
    g_assert_no_error (error);
    g_assert_true (od_cache_flush (f->cache, NULL));
    g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"), ==, 11);
    g_assert_cmpint (od_query_count_orders (f->cache, &q, NULL), ==,
                     scalar (f->cache, "SELECT count(*) FROM orders WHERE customer_name LIKE 'Grace%'"));
  }
}

/* The list's main index: dropped in bulk mode, there otherwise. */
static gboolean
has_updated_index (OdCache *cache)
{
  return scalar (cache, "SELECT count(*) FROM sqlite_master"
                        " WHERE type = 'index' AND name = 'orders_updated'") == 1;
}

/* Which catch-ups build their indexes at the end: one further behind
 * than the threshold, or one that more than doubles the cache and is
 * further behind than the minimum.  Then seen on a cache: a cold
 * catch-up drops the indexes until caught up; a later one smaller than
 * the cache keeps them. */
static void
count_notify (guint *count)
{
  (*count)++;
}

static void
test_bulk_rule (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (3000, 31);
  g_autoptr(GHashTable) fold = od_test_fold (log->events);
  g_autofree char *why = NULL;
  guint first = log->events->len * 6 / 10;
  gint64 first_head;
  gint64 lovelace;
  OdOrderQuery by_customer = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "Lovelace" };
  OdOrderQuery by_id = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL };
  const char *first_id = ((OdEvent *) g_ptr_array_index (log->events, 0))->order_id;
  guint notified = 0;
  struct { gint64 applied, head; gboolean bulk; } cases[] = {
    { 0, 10000, FALSE },          /* at the minimum */
    { 0, 10001, TRUE },           /* a cold cache */
    { 5000, 20000, TRUE },
    { 20000, 40000, FALSE },      /* doubles it exactly */
    { 20000, 40001, TRUE },
    { 1000000, 1300000, FALSE },  /* at the threshold */
    { 1000000, 1300001, TRUE },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    g_assert_cmpint (od_cache_wants_bulk (f->cache, cases[i].applied, cases[i].head), ==,
                     cases[i].bulk);
  od_cache_set_bulk_min (f->cache, G_MAXINT64);
  g_assert_false (od_cache_wants_bulk (f->cache, 0, 300000));
  g_assert_true (od_cache_wants_bulk (f->cache, 0, 300001));
  od_cache_set_bulk_min (f->cache, 1000);
  od_cache_set_max_transaction (f->cache, 2000);
  g_assert_true (od_cache_get_search_complete (f->cache));
  g_signal_connect_swapped (f->cache, "notify::search-complete", G_CALLBACK (count_notify),
                            &notified);

  /* Cold: the first part, the known head still ahead, in bulk mode.  The
   * search index lacks the orders applied so far, and the cache says so;
   * by id they are found.  Once caught up, it is complete and finds
   * them by customer too. */
  first_head = ((OdEvent *) g_ptr_array_index (log->events, first - 1))->position;
  g_assert_cmpint (first_head, >, 1000);
  od_cache_push_events (f->cache, od_test_log_slice (log, 0, first / 2), first_head);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_false (has_updated_index (f->cache));
  g_assert_false (od_cache_get_search_complete (f->cache));
  g_assert_false (od_cache_get_search_complete (f->cache));
  g_assert_cmpuint (notified, ==, 1);
  lovelace = scalar (f->cache, "SELECT count(*) FROM orders WHERE customer_name LIKE '%Lovelace%'");
  g_assert_cmpint (lovelace, >, 0);
  g_assert_cmpint (od_query_count_orders (f->cache, &by_customer, NULL), ==, 0);
  by_id.search = first_id;
  g_assert_cmpint (od_query_count_orders (f->cache, &by_id, NULL), ==, 1);
  od_cache_push_events (f->cache, od_test_log_slice (log, first / 2, first), first_head);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_true (has_updated_index (f->cache));
  g_assert_true (od_cache_get_search_complete (f->cache));
  g_assert_cmpuint (notified, ==, 2);
  g_assert_cmpint (od_query_count_orders (f->cache, &by_customer, NULL), ==,
                   scalar (f->cache, "SELECT count(*) FROM orders"
                                     " WHERE customer_name LIKE '%Lovelace%'"));

  /* The rest (4 in 10 of the log) is less than the cache: row by row. */
  od_cache_push_events (f->cache, od_test_log_slice (log, first, first + 200), log->head);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_true (has_updated_index (f->cache));
  g_assert_true (od_cache_get_search_complete (f->cache));
  od_cache_push_events (f->cache, od_test_log_slice (log, first + 200, log->events->len),
                        log->head);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_true (has_updated_index (f->cache));
  if (!od_test_cache_equals_fold (f->cache, fold, &why))
    g_error ("%s", why);
}

/* Versions 1 and 2 indexed fewer prefix lengths for search.  Opening such
 * a cache builds the search index again and keeps the orders. */
static void
test_migration_old_search (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (300, 23);
  OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "Lovelace" };
  static const char *old_layouts[] = {
    /* version 1 */
    "DROP TABLE order_search;"
    "CREATE VIRTUAL TABLE order_search USING fts5 ("
    "  customer_name, customer_email, content='', prefix='2 3',"
    "  tokenize='unicode61 remove_diacritics 2');"
    "DROP TABLE IF EXISTS inconsistent_orders;"
    "PRAGMA user_version = 1;",
    /* version 2 */
    "DROP TABLE order_search;"
    "CREATE VIRTUAL TABLE order_search USING fts5 ("
    "  customer_name, customer_email, content='', prefix='2 3 4 5 6 7 8',"
    "  tokenize='unicode61 remove_diacritics 2');"
    "DROP TABLE IF EXISTS inconsistent_orders;"
    "PRAGMA user_version = 2;",
    /* version 3: no inconsistent_orders; kept as it is, not rebuilt
     * (one string of two statements: parenthesized for clang) */
    ("DROP TABLE inconsistent_orders;"
     "PRAGMA user_version = 3;"),
  };
  gint64 applied;
  gint64 lovelace;

  push_log (f->cache, log, 5);
  applied = od_cache_get_applied_position (f->cache);
  lovelace = scalar (f->cache, "SELECT count(*) FROM orders WHERE customer_name LIKE '%Lovelace%'"
                               " OR customer_email LIKE '%lovelace%'");
  g_assert_cmpint (lovelace, >, 0);

  for (guint i = 0; i < G_N_ELEMENTS (old_layouts); i++)
    {
      g_autoptr(GError) error = NULL;
      sqlite3 *db = NULL;

      g_clear_object (&f->cache);
      g_assert_cmpint (sqlite3_open (f->path, &db), ==, SQLITE_OK);
      g_assert_cmpint (sqlite3_exec (db, old_layouts[i], NULL, NULL, NULL), ==, SQLITE_OK);
      sqlite3_close (db);

      f->cache = od_cache_open (f->path, &error);
      g_assert_no_error (error);
      /* The old index serves while the writer builds the new one. */
      g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, applied);
      g_assert_cmpint (od_query_count_orders (f->cache, &q, NULL), >=, 0);
      g_assert_true (od_cache_flush (f->cache, NULL));
      g_assert_cmpint (scalar (f->cache, "PRAGMA user_version"), ==, OD_CACHE_SCHEMA_VERSION);
      g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM inconsistent_orders"), ==, 0);
      g_assert_cmpint (od_query_count_inconsistent (f->cache, NULL), ==, 0);
      g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, applied);
      g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM sqlite_master WHERE name = 'order_search'"
                                         " AND sql LIKE '%prefix=''1 2 3 4 5 6 7 8''%'"), ==, 1);
      /* The emptied old index would find nothing: the orders were indexed
       * again. */
      g_assert_cmpint (od_query_count_orders (f->cache, &q, NULL), ==, MIN (lovelace, 2000));
    }
}

/* Three orders with refunds and notes: A refunded in two steps with two
 * notes, B partly refunded, C a draft with a note.  Positions from 1. */
static GPtrArray *
refund_events (void)
{
  static const struct { const char *order; const char *type; const char *data; } log[] = {
    { "A", "OrderCreated", "{\"customer_name\":\"Ada Lovelace\",\"customer_email\":\"ada@example.org\",\"currency\":\"EUR\"}" },
    { "A", "ItemAdded", "{\"sku\":\"MUG\",\"name\":\"Mug\",\"quantity\":2,\"unit_price_cents\":1250}" },
    { "A", "OrderPlaced", "{\"total_cents\":2500,\"item_count\":2}" },
    { "A", "OrderShipped", "{\"carrier\":\"DHL\",\"tracking_number\":\"T\"}" },
    { "A", "OrderDelivered", "{}" },
    { "A", "OrderNoteAdded", "{\"text\":\"Parcel arrived with a zebra sticker\"}" },
    { "A", "OrderRefunded", "{\"amount_cents\":1000,\"reason\":\"Dented\"}" },
    { "A", "OrderRefunded", "{\"amount_cents\":1500,\"reason\":\"The rest\"}" },
    { "A", "OrderNoteAdded", "{\"text\":\"Closed\"}" },
    { "B", "OrderCreated", "{\"customer_name\":\"Bea\",\"customer_email\":\"bea@example.org\",\"currency\":\"EUR\"}" },
    { "B", "ItemAdded", "{\"sku\":\"CUP\",\"name\":\"Cup\",\"quantity\":1,\"unit_price_cents\":900}" },
    { "B", "OrderPlaced", "{\"total_cents\":900,\"item_count\":1}" },
    { "B", "OrderShipped", "{\"carrier\":\"UPS\",\"tracking_number\":\"U\"}" },
    { "B", "OrderDelivered", "{}" },
    { "B", "OrderRefunded", "{\"amount_cents\":400,\"reason\":\"Chipped\"}" },
    { "C", "OrderCreated", "{\"customer_name\":\"Cy\",\"customer_email\":\"cy@example.org\",\"currency\":\"EUR\"}" },
    { "C", "OrderNoteAdded", "{\"text\":\"Wants gift wrap\"}" },
  };
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  gint64 versions[3] = { 0 };

  for (guint i = 0; i < G_N_ELEMENTS (log); i++)
    {
      int o = log[i].order[0] - 'A';
      g_autofree char *id = g_strdup_printf ("0193a1c2-7f00-7abc-8def-00000000000%c",
                                             'a' + o);

      g_ptr_array_add (events, od_test_event_new (i + 1, i, id, ++versions[o], log[i].type,
                                                  log[i].data));
    }
  return events;
}

static void
check_refunds_and_notes (OdCache *cache)
{
  gint64 counts[OD_STATUS_N];
  OdOrderQuery zebra = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "zebra" };
  OdOrderQuery gift = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "gift wr" };
  OdOrderQuery partly = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_PARTIALLY_REFUNDED, NULL };
  g_autoptr(OdOrder) a = od_query_order (cache, "0193a1c2-7f00-7abc-8def-00000000000a", NULL);
  g_autoptr(OdOrder) b = od_query_order (cache, "0193a1c2-7f00-7abc-8def-00000000000b", NULL);
  g_autoptr(OdOrder) c = od_query_order (cache, "0193a1c2-7f00-7abc-8def-00000000000c", NULL);
  g_autoptr(GPtrArray) rows = NULL;

  g_assert_cmpint (a->status, ==, OD_STATUS_REFUNDED);
  g_assert_cmpint (a->refunded_cents, ==, 2500);
  g_assert_cmpint (a->note_count, ==, 2);
  g_assert_cmpint (b->status, ==, OD_STATUS_PARTIALLY_REFUNDED);
  g_assert_cmpint (b->refunded_cents, ==, 400);
  g_assert_cmpint (b->note_count, ==, 0);
  g_assert_cmpint (c->status, ==, OD_STATUS_DRAFT);
  g_assert_cmpint (c->note_count, ==, 1);

  g_assert_true (od_cache_get_status_counts (cache, counts, NULL));
  g_assert_cmpint (counts[OD_STATUS_NONE], ==, 3);
  g_assert_cmpint (counts[OD_STATUS_REFUNDED], ==, 1);
  g_assert_cmpint (counts[OD_STATUS_PARTIALLY_REFUNDED], ==, 1);
  g_assert_cmpint (counts[OD_STATUS_DRAFT], ==, 1);
  g_assert_cmpint (counts[OD_STATUS_DELIVERED], ==, 0);

  /* Notes are searchable; the status filter knows the new statuses. */
  g_assert_cmpint (od_query_count_orders (cache, &zebra, NULL), ==, 1);
  g_assert_cmpint (od_query_count_orders (cache, &gift, NULL), ==, 1);
  rows = od_query_orders (cache, &zebra, NULL, 10, NULL);
  g_assert_cmpuint (rows->len, ==, 1);
  g_assert_cmpstr (((OdOrderRow *) rows->pdata[0])->order_id, ==, a->order_id);
  g_assert_cmpint (((OdOrderRow *) rows->pdata[0])->note_count, ==, 2);
  g_assert_cmpint (((OdOrderRow *) rows->pdata[0])->refunded_cents, ==, 2500);
  g_assert_cmpint (od_query_count_orders (cache, &partly, NULL), ==, 1);
}

static void
test_refunds_and_notes (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(GPtrArray) events = refund_events ();
  g_autoptr(GHashTable) fold = od_test_fold (events);
  g_autofree char *why = NULL;
  g_autofree char *csv = NULL;

  od_cache_push_events (f->cache, refund_events (), events->len);
  g_assert_true (od_cache_flush (f->cache, NULL));
  if (!od_test_cache_equals_fold (f->cache, fold, &why))
    g_error ("%s", why);
  check_refunds_and_notes (f->cache);
  csv = export_to_string (f->cache, OD_EXPORT_NONE);
  g_assert_nonnull (strstr (csv, ",refunded,"));
  g_assert_nonnull (strstr (csv, ",2,2500\r\n"));
  g_assert_nonnull (strstr (csv, ",partially_refunded,"));
  g_assert_nonnull (strstr (csv, ",0,400\r\n"));
}

/* A version-4 cache (before refunds and notes) kept OrderRefunded and
 * OrderNoteAdded as unknown events and left those orders delivered.
 * Opening it folds them: the same views as a cache that knew them. */
static void
test_migration_v4 (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(GPtrArray) events = refund_events ();
  g_autofree char *digest = NULL;
  g_autofree char *migrated = NULL;
  g_autoptr(GError) error = NULL;
  sqlite3 *db = NULL;

  od_cache_push_events (f->cache, refund_events (), events->len);
  g_assert_true (od_cache_flush (f->cache, NULL));
  digest = views_digest (f->cache);
  g_clear_object (&f->cache);

  /* The version-4 layout and what a version-4 console made of the log. */
  g_assert_cmpint (sqlite3_open (f->path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db,
                                 "UPDATE orders SET status = 'delivered'"
                                 "  WHERE status IN ('refunded', 'partially_refunded');"
                                 "DELETE FROM status_counts"
                                 "  WHERE status IN ('refunded', 'partially_refunded');"
                                 "ALTER TABLE orders DROP COLUMN refunded_cents;"
                                 "ALTER TABLE orders DROP COLUMN note_count;"
                                 "DROP TABLE note_search;"
                                 "PRAGMA user_version = 4;",
                                 NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);

  f->cache = od_cache_open (f->path, &error);
  g_assert_no_error (error);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_cmpint (scalar (f->cache, "PRAGMA user_version"), ==, OD_CACHE_SCHEMA_VERSION);
  g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, events->len);
  check_refunds_and_notes (f->cache);
  migrated = views_digest (f->cache);
  g_assert_cmpstr (migrated, ==, digest);

  /* Idempotent: opening again changes nothing. */
  g_clear_object (&f->cache);
  f->cache = od_cache_open (f->path, &error);
  g_assert_no_error (error);
  check_refunds_and_notes (f->cache);
}

/* A generated log with refunds and notes woven in: after some orders'
 * OrderDelivered a refund of half the total (and sometimes one of the
 * rest), and notes after some OrderCreated, so kept events lie all
 * through the log.  Positions and versions are numbered again. */
static GPtrArray *
log_with_refunds (guint   n_orders,
                  guint32 seed)
{
  g_autoptr(OdTestLog) log = od_test_log_new (n_orders, seed);
  g_autoptr(GHashTable) versions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GHashTable) upto = NULL;
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  GRand *rand = g_rand_new_with_seed (seed);
  g_autoptr(GPtrArray) done = g_ptr_array_new ();
  gint64 pos = 0;

  for (guint i = 0; i < log->events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (log->events, i);
      gint64 v = GPOINTER_TO_SIZE (g_hash_table_lookup (versions, ev->order_id)) + 1;
      const char *extra[2] = { NULL, NULL };
      g_autofree char *a = NULL;
      g_autofree char *b = NULL;

      pos++;
      g_ptr_array_add (events, od_test_event_new (pos, pos - 1, ev->order_id, v, ev->type, ev->data));
      g_ptr_array_add (done, ev);
      if (g_str_equal (ev->type, "OrderCreated") && g_rand_int_range (rand, 0, 6) == 0)
        extra[0] = a = g_strdup_printf ("OrderNoteAdded|{\"text\":\"zebra note %" G_GINT64_FORMAT "\"}", pos);
      else if (g_str_equal (ev->type, "OrderDelivered") && g_rand_int_range (rand, 0, 3) == 0)
        {
          OdOrder *o;
          gint64 total;

          upto = od_test_fold (done);
          o = g_hash_table_lookup (upto, ev->order_id);
          total = od_order_total_cents (o);
          if (total < 2)
            {
              g_clear_pointer (&upto, g_hash_table_unref);
              goto next;
            }
          extra[0] = a = g_strdup_printf ("OrderRefunded|{\"amount_cents\":%" G_GINT64_FORMAT
                                          ",\"reason\":\"r\"}", total / 2);
          if (g_rand_boolean (rand))
            extra[1] = b = g_strdup_printf ("OrderRefunded|{\"amount_cents\":%" G_GINT64_FORMAT
                                            ",\"reason\":\"rest\"}", total - total / 2);
          g_clear_pointer (&upto, g_hash_table_unref);
        }
      for (guint e = 0; e < 2 && extra[e] != NULL; e++)
        {
          g_auto(GStrv) parts = g_strsplit (extra[e], "|", 2);

          pos++;
          v++;
          g_ptr_array_add (events, od_test_event_new (pos, pos - 1, ev->order_id, v, parts[0], parts[1]));
        }
    next:
      g_hash_table_replace (versions, g_strdup (ev->order_id), GSIZE_TO_POINTER (v));
    }
  g_rand_free (rand);
  return events;
}

static GPtrArray *
copy_events (GPtrArray *events,
             guint      from,
             guint      to)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);

  for (guint i = from; i < to && i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);

      g_ptr_array_add (out, od_test_event_new (ev->position, ev->prev, ev->order_id, ev->version,
                                               ev->type, ev->data));
    }
  return out;
}

/* What a version-4 console made of the log: refunds and notes kept but
 * not applied (see test_migration_v4). */
static void
make_version_4 (const char *path)
{
  sqlite3 *db = NULL;

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db,
                                 "UPDATE orders SET status = 'delivered'"
                                 "  WHERE status IN ('refunded', 'partially_refunded');"
                                 "DELETE FROM status_counts"
                                 "  WHERE status IN ('refunded', 'partially_refunded');"
                                 "ALTER TABLE orders DROP COLUMN refunded_cents;"
                                 "ALTER TABLE orders DROP COLUMN note_count;"
                                 "DROP TABLE note_search;"
                                 "PRAGMA user_version = 4;",
                                 NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
}

static void
check_folded (OdCache    *cache,
              GPtrArray  *events,
              gint64      notes)
{
  g_autoptr(GHashTable) fold = od_test_fold (events);
  g_autofree char *why = NULL;
  OdOrderQuery zebra = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "zebra" };

  if (!od_test_cache_equals_fold (cache, fold, &why))
    g_error ("%s", why);
  g_assert_cmpint (scalar (cache, "SELECT count(*) FROM status_counts c WHERE c.n <>"
                                  " (SELECT count(*) FROM orders o WHERE o.status = c.status)"), ==, 0);
  g_assert_cmpint (scalar (cache, "SELECT count(*) FROM sqlite_master WHERE name = 'refold_pending'"), ==, 0);
  g_assert_cmpint (scalar (cache, "SELECT count(*) FROM note_search"), ==, notes);
  g_assert_cmpint (od_query_count_orders (cache, &zebra, NULL), ==,
                   scalar (cache, "SELECT count(DISTINCT order_id) FROM order_events"
                                  " WHERE type = 'OrderNoteAdded'"));
}

typedef struct
{
  GMutex   lock;
  GCond    cond;
  GThread *thread;     /* the thread the hook ran on */
  guint    calls;
  guint    stop_after; /* 0: never */
  gboolean hold;       /* the first call waits until released */
} Hook;

static gboolean
upgrade_hook (gint64   remaining,
              gpointer data)
{
  Hook *h = data;
  gboolean go_on;

  g_mutex_lock (&h->lock);
  h->thread = g_thread_self ();
  h->calls++;
  g_cond_broadcast (&h->cond);
  while (h->hold)
    g_cond_wait (&h->cond, &h->lock);
  go_on = h->stop_after == 0 || h->calls <= h->stop_after;
  g_mutex_unlock (&h->lock);
  return go_on;
}

/* Opening a version-4 cache only changes its schema; the writer thread
 * folds the kept refunds and notes after the open, in small
 * transactions, while readers see each order either as the older
 * console left it or folded; an interrupted fold (stopped after three
 * transactions, with a live event applied before the rest) is finished
 * by the next open; the views then equal the fold of the log. */
static void
test_migration_refold_on_writer (Fixture       *f,
                                 gconstpointer  data)
{
  g_autoptr(GPtrArray) events = log_with_refunds (400, 41);
  g_autoptr(GError) error = NULL;
  Hook hook = { .hold = TRUE };
  gint64 notes, max_position, remaining;
  gint64 end_time;

  od_cache_push_events (f->cache, copy_events (events, 0, events->len), events->len);
  g_assert_true (od_cache_flush (f->cache, NULL));
  check_folded (f->cache, events, scalar (f->cache, "SELECT count(*) FROM note_search"));
  notes = scalar (f->cache, "SELECT count(*) FROM note_search");
  g_assert_cmpint (notes, >, 10);
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM orders WHERE status = 'refunded'"), >, 10);
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM orders WHERE status = 'partially_refunded'"), >, 10);
  max_position = events->len;
  g_clear_object (&f->cache);
  make_version_4 (f->path);

  /* The open returns with the work not done; the writer thread does it. */
  g_mutex_init (&hook.lock);
  g_cond_init (&hook.cond);
  od_cache_set_upgrade_hook (50, upgrade_hook, &hook);
  f->cache = od_cache_open (f->path, &error);
  g_assert_no_error (error);
  end_time = g_get_monotonic_time () + 30 * G_TIME_SPAN_SECOND;
  g_mutex_lock (&hook.lock);
  while (hook.calls == 0 && g_cond_wait_until (&hook.cond, &hook.lock, end_time))
    ;
  g_assert_cmpuint (hook.calls, ==, 1);
  g_assert_true (hook.thread != g_thread_self ());
  g_mutex_unlock (&hook.lock);
  /* Held before its first transaction: the schema is current, nothing is
   * folded yet, and what readers see is consistent. */
  g_assert_cmpint (scalar (f->cache, "PRAGMA user_version"), ==, OD_CACHE_SCHEMA_VERSION);
  g_assert_cmpint (scalar (f->cache, "SELECT remaining FROM refold_pending"), ==, max_position);
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM orders WHERE note_count > 0 OR refunded_cents > 0"
                                     " OR status IN ('refunded', 'partially_refunded')"), ==, 0);
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM note_search"), ==, 0);
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM status_counts c WHERE c.n <>"
                                     " (SELECT count(*) FROM orders o WHERE o.status = c.status)"), ==, 0);

  /* Stopped after three transactions of 50 positions, as a close would. */
  g_mutex_lock (&hook.lock);
  hook.stop_after = 3;
  hook.hold = FALSE;
  g_cond_broadcast (&hook.cond);
  g_mutex_unlock (&hook.lock);
  g_assert_true (od_cache_flush (f->cache, NULL));
  remaining = scalar (f->cache, "SELECT remaining FROM refold_pending");
  g_assert_cmpint (remaining, ==, max_position - 150);
  /* Folded: exactly the orders with a kept event above `remaining`. */
  {
    const char *sql = "SELECT count(*) FROM orders WHERE note_count > 0 OR refunded_cents > 0"
                      " OR status IN ('refunded', 'partially_refunded')";
    g_autofree char *above = g_strdup_printf ("SELECT count(DISTINCT order_id) FROM order_events"
                                              " WHERE position > %" G_GINT64_FORMAT
                                              " AND type IN ('OrderNoteAdded', 'OrderRefunded')",
                                              remaining);

    g_assert_cmpint (scalar (f->cache, sql), ==, scalar (f->cache, above));
    g_assert_cmpint (scalar (f->cache, above), >, 0);
  }
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM status_counts c WHERE c.n <>"
                                     " (SELECT count(*) FROM orders o WHERE o.status = c.status)"), ==, 0);

  /* A live event for an order not folded yet is applied meanwhile: a
   * note on the order of the lowest kept note. */
  {
    sqlite3_stmt *st = NULL;
    g_autofree char *order_id = NULL;
    gint64 version = 0;
    OdEvent *note;

    sqlite3_prepare_v2 (od_cache_get_db (f->cache),
                        "SELECT order_id FROM order_events WHERE type = 'OrderNoteAdded'"
                        " ORDER BY position LIMIT 1", -1, &st, NULL);
    g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
    order_id = g_strdup ((const char *) sqlite3_column_text (st, 0));
    sqlite3_finalize (st);
    for (guint i = 0; i < events->len; i++)
      {
        OdEvent *ev = g_ptr_array_index (events, i);

        if (g_str_equal (ev->order_id, order_id))
          version = ev->version;
      }
    note = od_test_event_new (max_position + 1, max_position, order_id, version + 1,
                              "OrderNoteAdded", "{\"text\":\"zebra live\"}");
    g_ptr_array_add (events, note);
    od_cache_push_events (f->cache, copy_events (events, events->len - 1, events->len),
                          max_position + 1);
    g_assert_true (od_cache_flush (f->cache, NULL));
  }
  g_clear_object (&f->cache);

  /* The next open goes on from `remaining` and finishes. */
  g_mutex_lock (&hook.lock);
  hook.calls = 0;
  hook.stop_after = 0;
  g_mutex_unlock (&hook.lock);
  f->cache = od_cache_open (f->path, &error);
  g_assert_no_error (error);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_cmpuint (hook.calls, ==, (remaining + 49) / 50);
  check_folded (f->cache, events, notes + 1);
  od_cache_set_upgrade_hook (0, NULL, NULL);

  /* Closed right after the open, which interrupts the fold wherever it
   * is: the open after that finishes it the same way. */
  g_clear_object (&f->cache);
  make_version_4 (f->path);
  f->cache = od_cache_open (f->path, &error);
  g_assert_no_error (error);
  g_clear_object (&f->cache);
  f->cache = od_cache_open (f->path, &error);
  g_assert_no_error (error);
  g_assert_true (od_cache_flush (f->cache, NULL));
  check_folded (f->cache, events, notes + 1);
  g_mutex_clear (&hook.lock);
  g_cond_clear (&hook.cond);
}

static void
test_migration_rebuilds (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-test-mig-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "c.sqlite", NULL);
  sqlite3 *db = NULL;
  g_autoptr(OdCache) cache = NULL;

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db,
                                 "CREATE TABLE orders (x);"
                                 "INSERT INTO orders VALUES (1);"
                                 "CREATE TABLE pending_commands (id INTEGER PRIMARY KEY, idempotency_key TEXT);"
                                 "PRAGMA user_version = 99;",
                                 NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, 0);
  g_assert_cmpint (scalar (cache, "PRAGMA user_version"), ==, OD_CACHE_SCHEMA_VERSION);
  g_assert_cmpint (scalar (cache, "SELECT count(*) FROM orders"), ==, 0);
  /* The future outbox was kept aside, not dropped. */
  g_assert_cmpint (scalar (cache, "SELECT count(*) FROM sqlite_master WHERE name = 'pending_commands_future'"), ==, 1);
  g_clear_object (&cache);

  /* A file that is not a database is started again. */
  g_assert_true (g_file_set_contents (path, "this is not sqlite at all, not at all........", -1, NULL));
  {
    g_autofree char *wal = g_strconcat (path, "-wal", NULL);
    g_autofree char *shm = g_strconcat (path, "-shm", NULL);

    g_unlink (wal);
    g_unlink (shm);
  }
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (scalar (cache, "SELECT count(*) FROM orders"), ==, 0);
  g_clear_object (&cache);
  od_test_process_rmdir (dir);
}

static void
rebuild_done (GObject      *source,
              GAsyncResult *result,
              gpointer      data)
{
  gboolean *done = data;
  g_autoptr(GError) error = NULL;

  g_assert_true (od_cache_rebuild_finish (OD_CACHE (source), result, &error));
  g_assert_no_error (error);
  *done = TRUE;
}

static void
test_rebuild (Fixture       *f,
              gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (200, 19);
  g_autoptr(GHashTable) fold = od_test_fold (log->events);
  g_autofree char *why = NULL;
  gboolean done = FALSE;

  push_log (f->cache, log, 6);
  od_cache_rebuild_async (f->cache, NULL, rebuild_done, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, 0);
  g_assert_cmpint (scalar (f->cache, "SELECT count(*) FROM orders"), ==, 0);
  g_assert_cmpint (scalar (f->cache, "SELECT n FROM status_counts WHERE status = 'draft'"), ==, 0);
  push_log (f->cache, log, 7);
  if (!od_test_cache_equals_fold (f->cache, fold, &why))
    g_error ("%s", why);
}

static void
wait_done (GObject      *source,
           GAsyncResult *result,
           gpointer      data)
{
  int *state = data;
  g_autoptr(GError) error = NULL;

  if (od_cache_wait_position_finish (OD_CACHE (source), result, &error))
    *state = 1;
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    *state = 2;
  else
    *state = 3;
}

static void
test_wait_position (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (20, 23);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  int a = 0, b = 0;

  od_cache_wait_position_async (f->cache, 10, NULL, wait_done, &a);
  od_cache_wait_position_async (f->cache, log->head + 100, cancellable, wait_done, &b);
  g_assert_cmpint (a, ==, 0);
  od_cache_push_events (f->cache, od_test_log_slice (log, 0, 20), log->head);
  while (a == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (a, ==, 1);
  g_assert_cmpint (b, ==, 0);
  g_cancellable_cancel (cancellable);
  while (b == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (b, ==, 2);
}

/* A job submitted to a closed cache fails at once with
 * OD_CACHE_ERROR_CLOSED, whatever its kind: a stopped writer never takes
 * it, and its caller (od-verify's worker) must not wait for ever.  The
 * waits have a deadline that fails the test instead of hanging. */
typedef struct
{
  int     ran;
  int     done;
  GError *error;
} JobRun;

static gboolean
job_func (sqlite3   *db,
          gpointer   data,
          gpointer  *result,
          GError   **error)
{
  JobRun *j = data;

  j->ran++;
  *result = j;
  return TRUE;
}

static void
job_done (GObject      *source,
          GAsyncResult *result,
          gpointer      data)
{
  JobRun *j = data;

  od_cache_write_finish (OD_CACHE (source), result, &j->error);
  j->done = TRUE;
}

static void
rebuild_job_done (GObject      *source,
                  GAsyncResult *result,
                  gpointer      data)
{
  JobRun *j = data;

  od_cache_rebuild_finish (OD_CACHE (source), result, &j->error);
  j->done = TRUE;
}

static gboolean
deadline_passed (gpointer data)
{
  g_error ("%s: no answer within 10 s", (const char *) data);
  return G_SOURCE_REMOVE;
}

static void
wait_or_fail (int        *done,
              const char *what)
{
  guint id = g_timeout_add_seconds (10, deadline_passed, (gpointer) what);

  while (!g_atomic_int_get (done))
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (id);
}

typedef struct
{
  OdCache *cache;
  gboolean ok;
  GError  *error;
  int      done;
} FlushRun;

static gpointer
flush_thread (gpointer data)
{
  FlushRun *r = data;

  r->ok = od_cache_flush (r->cache, &r->error);
  g_atomic_int_set (&r->done, TRUE);
  g_main_context_wakeup (NULL);
  return NULL;
}

static void
test_closed_refuses_jobs (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(OdTestLog) log = od_test_log_new (20, 29);
  JobRun before = { 0 }, durable = { 0 }, quick = { 0 }, rebuild = { 0 };
  FlushRun flush = { f->cache, TRUE, NULL, FALSE };
  GThread *thread;

  /* Queued before the close: the writer takes it before it stops. */
  od_cache_write_async (f->cache, job_func, &before, NULL, NULL, job_done, &before);
  od_cache_close (f->cache);
  wait_or_fail (&before.done, "job queued before the close");
  g_assert_no_error (before.error);
  g_assert_cmpint (before.ran, ==, 1);

  od_cache_write_async (f->cache, job_func, &durable, NULL, NULL, job_done, &durable);
  od_cache_write_async_full (f->cache, FALSE, job_func, &quick, NULL, NULL, job_done, &quick);
  od_cache_rebuild_async (f->cache, NULL, rebuild_job_done, &rebuild);
  /* Dropped, not left in a queue nobody reads (nor blocking). */
  od_cache_push_events (f->cache, od_test_log_slice (log, 0, 20), log->head);
  od_cache_note_contact (f->cache, log->head, g_get_real_time (), "https://example.invalid");
  wait_or_fail (&durable.done, "write job after the close");
  wait_or_fail (&quick.done, "non-durable write job after the close");
  wait_or_fail (&rebuild.done, "rebuild after the close");
  g_assert_error (durable.error, OD_CACHE_ERROR, OD_CACHE_ERROR_CLOSED);
  g_assert_error (quick.error, OD_CACHE_ERROR, OD_CACHE_ERROR_CLOSED);
  g_assert_error (rebuild.error, OD_CACHE_ERROR, OD_CACHE_ERROR_CLOSED);
  g_assert_cmpint (durable.ran, ==, 0);
  g_assert_cmpint (quick.ran, ==, 0);
  g_clear_error (&durable.error);
  g_clear_error (&quick.error);
  g_clear_error (&rebuild.error);

  /* od_cache_flush blocks its caller: in a thread, so that the deadline
   * can fire here. */
  thread = g_thread_new ("flush", flush_thread, &flush);
  wait_or_fail (&flush.done, "flush after the close");
  g_thread_join (thread);
  g_assert_false (flush.ok);
  g_assert_error (flush.error, OD_CACHE_ERROR, OD_CACHE_ERROR_CLOSED);
  g_clear_error (&flush.error);
}

/* SSE parsing: every line ending, every split point. */
typedef struct
{
  GString *log;
  guint    retry;
} SseSeen;

static void
sse_frame (const char *event,
           const char *id,
           const char *data,
           gsize       len,
           gpointer    user_data)
{
  SseSeen *s = user_data;

  g_string_append_printf (s->log, "[%s|%s|%.*s]", event, id ? id : "-", (int) len, data);
}

static void
sse_retry (guint    ms,
           gpointer user_data)
{
  ((SseSeen *) user_data)->retry = ms;
}

static void
test_sse_parser (void)
{
  const char *frames[] = {
    "retry: 2000\n\nid: 1\nevent: ItemAdded\ndata: {\"a\":1}\n\n: comment\nevent: head\ndata: {\"head\":1}\n\ndata: x\ndata: y\n\n",
    "retry: 2000\r\n\r\nid: 1\r\nevent: ItemAdded\r\ndata: {\"a\":1}\r\n\r\n: comment\r\nevent: head\r\ndata: {\"head\":1}\r\n\r\ndata: x\r\ndata: y\r\n\r\n",
    "retry: 2000\r\rid: 1\revent: ItemAdded\rdata: {\"a\":1}\r\r: comment\revent: head\rdata: {\"head\":1}\r\rdata: x\rdata: y\r\r",
  };
  const char *expect = "[ItemAdded|1|{\"a\":1}][head|-|{\"head\":1}][message|-|x\ny]";

  for (guint f = 0; f < G_N_ELEMENTS (frames); f++)
    {
      gsize len = strlen (frames[f]);

      for (gsize split = 0; split <= len; split++)
        {
          SseSeen seen = { g_string_new (NULL), 0 };
          OdSseParser *p = od_sse_parser_new (sse_frame, sse_retry, &seen);

          od_sse_parser_feed (p, frames[f], split);
          od_sse_parser_feed (p, frames[f] + split, len - split);
          g_assert_cmpstr (seen.log->str, ==, expect);
          g_assert_cmpuint (seen.retry, ==, 2000);
          od_sse_parser_free (p);
          g_string_free (seen.log, TRUE);
        }
      /* Byte by byte. */
      {
        SseSeen seen = { g_string_new (NULL), 0 };
        OdSseParser *p = od_sse_parser_new (sse_frame, sse_retry, &seen);

        for (gsize i = 0; i < len; i++)
          od_sse_parser_feed (p, frames[f] + i, 1);
        g_assert_cmpstr (seen.log->str, ==, expect);
        od_sse_parser_free (p);
        g_string_free (seen.log, TRUE);
      }
    }
}

/* A frame's data is bounded, not only its lines: data lines without a
 * blank line fail the parser (the engine then drops the stream) instead
 * of growing it; a reset starts it again. */
static void
test_sse_parser_bounds (void)
{
  SseSeen seen = { g_string_new (NULL), 0 };
  OdSseParser *p = od_sse_parser_new (sse_frame, sse_retry, &seen);
  g_autofree char *line = g_strdup_printf ("data: %01017d\n", 0);
  g_autofree char *big = g_malloc (OD_SSE_MAX_FRAME + 2);
  gboolean ok = TRUE;
  guint fed = 0;

  g_assert_true (od_sse_parser_feed (p, "data: a\n\n", 9));
  while (ok && fed < 4 * 1024)
    {
      ok = od_sse_parser_feed (p, line, strlen (line));
      fed++;
    }
  g_assert_false (ok);
  g_assert_cmpuint (fed, <=, OD_SSE_MAX_FRAME / 1017 + 1); /* 1017 bytes of data a line */
  /* Failed for good: a blank line does not make a frame of the rest. */
  g_assert_false (od_sse_parser_feed (p, "\ndata: b\n\n", 11));
  g_assert_cmpstr (seen.log->str, ==, "[message|-|a]");
  od_sse_parser_reset (p);
  g_assert_true (od_sse_parser_feed (p, "data: c\n\n", 9));
  g_assert_cmpstr (seen.log->str, ==, "[message|-|a][message|-|c]");

  /* One line without an end, over the bound. */
  memset (big, 'x', OD_SSE_MAX_FRAME + 2);
  memcpy (big, "data: ", 6);
  g_assert_false (od_sse_parser_feed (p, big, OD_SSE_MAX_FRAME + 2)
                  && od_sse_parser_feed (p, big + 6, 80));
  od_sse_parser_free (p);
  g_string_free (seen.log, TRUE);
}

static void
test_fast_event_parser (void)
{
  g_autoptr(OdTestLog) log = od_test_log_new (100, 31);
  const char *fallback[] = {
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\\\"b\",\"data\":{}}",
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\",\"data\":{\"n\":1.5}}",
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\",\"data\":{\"n\":{\"m\":1}}}",
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\",\"data\":{},\"extra\":1}",
    "{\"position\":2,\"prev\":2,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193A1C2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\"}",
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\",\"data\":{}} x",
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"\xff\",\"data\":{}}",
    "{\"position\":2,\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"a\",\"data\":{",
    "",
    "{",
  };

  for (guint i = 0; i < log->events->len; i++)
    {
      g_autoptr(GString) line = g_string_new (NULL);
      g_autoptr(OdEvent) slow = NULL;
      g_autoptr(OdEvent) fast = NULL;
      g_autofree char *a = NULL;
      g_autofree char *b = NULL;

      od_event_append_json (line, g_ptr_array_index (log->events, i));
      slow = od_event_parse (line->str, line->len, NULL);
      fast = od_event_parse_fast (line->str, line->len);
      g_assert_nonnull (slow);
      if (fast == NULL)
        {
          /* Only the unknown type's nested data needs json-glib. */
          g_assert_cmpstr (slow->type, ==, "SomethingNew");
          continue;
        }
      g_assert_cmpint (fast->position, ==, slow->position);
      g_assert_cmpint (fast->prev, ==, slow->prev);
      g_assert_cmpint (fast->version, ==, slow->version);
      g_assert_cmpstr (fast->order_id, ==, slow->order_id);
      g_assert_cmpstr (fast->type, ==, slow->type);
      g_assert_cmpstr (fast->recorded_at, ==, slow->recorded_at);
      g_assert_cmpstr (fast->actor, ==, slow->actor);
      a = json_to_string (fast->data_node, FALSE);
      b = json_to_string (slow->data_node, FALSE);
      g_assert_cmpstr (a, ==, b);
    }
  for (guint i = 0; i < G_N_ELEMENTS (fallback); i++)
    g_assert_null (od_event_parse_fast (fallback[i], strlen (fallback[i])));
  /* Some of those are valid events: json-glib takes them. */
  {
    g_autoptr(OdEvent) a = od_event_parse (fallback[0], -1, NULL);
    g_autoptr(OdEvent) b = od_event_parse (fallback[2], -1, NULL);

    g_assert_nonnull (a);
    g_assert_nonnull (b);
  }
}

/* The fast parser never takes what the strict RFC 8259 check refuses:
 * hand-picked cases, then random byte changes of real event lines. */
static void
test_fast_event_parser_strict (void)
{
  g_autoptr(OdTestLog) log = od_test_log_new (100, 7);
  g_autoptr(GRand) rand = g_rand_new_with_seed (4242);
#define EV(pos, actor, data) "{\"position\":" pos ",\"prev\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"version\":1,\"type\":\"X\",\"recorded_at\":\"t\",\"actor\":\"" actor "\",\"data\":" data "}"
  static const struct { const char *text; gsize len; } refused[] = {
    { EV ("2", "\\udc00", "{}"), 0 },
    { EV ("2", "\\ud800x", "{}"), 0 },
    { EV ("2", "a\\qb", "{}"), 0 },
    { EV ("2", "a\\u12", "{}"), 0 },
    { EV ("2", "a\001b", "{}"), 0 },
    { EV ("2", "a", "{\"s\":\"tab\there\"}"), 0 },
    { EV ("2", "a", "{\"s\":\"\\udfff\"}"), 0 },
    { EV ("2", "a", "{\"n\":9223372036854775808}"), 0 },
    { EV ("2", "a", "{\"n\":-9223372036854775809}"), 0 },
    { EV ("2", "a", "{\"n\":18446744073709551617}"), 0 },
    { EV ("99999999999999999999", "a", "{}"), 0 },
    { EV ("02", "a", "{}"), 0 },
    { EV ("2", "a", "{\"n\":0123}"), 0 },
    { EV ("2", "a", "{\"n\":-01}"), 0 },
    { EV ("2", "a", "{\"n\":+1}"), 0 },
    { EV ("2", "a", "{\"n\":tru}"), 0 },
    { EV ("2", "a", "{\"n\":1,}"), 0 },
    { EV ("2", "a\0b", "{}"), sizeof (EV ("2", "a\0b", "{}")) - 1 },
  };
#undef EV

  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      gsize len = refused[i].len ? refused[i].len : strlen (refused[i].text);
      g_autoptr(OdEvent) fast = od_event_parse_fast (refused[i].text, len);
      g_autoptr(OdEvent) slow = od_event_parse (refused[i].text, len, NULL);

      g_test_message ("case %u: %s", i, refused[i].text);
      g_assert_false (od_json_check (refused[i].text, len, NULL));
      g_assert_null (fast);
      g_assert_null (slow);
    }

  /* Random changes: whatever the fast path takes, the strict check
   * takes too, and both read the same event. */
  for (guint n = 0; n < 20000; n++)
    {
      g_autoptr(GString) line = g_string_new (NULL);
      g_autoptr(OdEvent) fast = NULL;
      static const char bytes[] = "\\\"u0123456789abcdefABCDEF{}[],:-+.eE \t\r\n\001\177\xc3\xa9\xff";
      guint changes = g_rand_int_range (rand, 1, 4);

      od_event_append_json (line, g_ptr_array_index (log->events,
                                                     g_rand_int_range (rand, 0, log->events->len)));
      for (guint c = 0; c < changes; c++)
        {
          gsize at = g_rand_int_range (rand, 0, line->len);
          char b = bytes[g_rand_int_range (rand, 0, sizeof bytes - 1)];

          switch (g_rand_int_range (rand, 0, 3))
            {
            case 0:
              line->str[at] = b;
              break;
            case 1:
              g_string_insert_c (line, at, b);
              break;
            default:
              g_string_erase (line, at, 1);
              break;
            }
        }
      fast = od_event_parse_fast (line->str, line->len);
      if (fast != NULL)
        {
          g_autoptr(GError) error = NULL;
          g_autoptr(OdEvent) slow = NULL;

          if (!od_json_check (line->str, line->len, &error))
            g_error ("the fast parser took what the strict check refuses (%s): %s",
                     error->message, line->str);
          slow = od_event_parse (line->str, line->len, NULL);
          g_assert_nonnull (slow);
          g_assert_cmpint (fast->position, ==, slow->position);
          g_assert_cmpstr (fast->actor, ==, slow->actor);
        }
    }
}

static void
test_default_path (void)
{
  g_autofree char *p = od_cache_default_path ("http://127.0.0.1:8080/");

  g_assert_true (g_str_has_suffix (p, "/orderdesk/http_127.0.0.1_8080.sqlite"));
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *xdg = g_dir_make_tmp ("od-test-xdg-XXXXXX", NULL);

  g_setenv ("XDG_DATA_HOME", xdg, TRUE);
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/cache/projector-matches-fold-row-by-row", Fixture, GINT_TO_POINTER (1),
              fixture_setup, test_projector_matches_fold, fixture_teardown);
  g_test_add ("/cache/projector-matches-fold", Fixture, NULL, fixture_setup,
              test_projector_matches_fold, fixture_teardown);
  g_test_add ("/cache/replay-is-noop", Fixture, NULL, fixture_setup, test_replay_is_noop,
              fixture_teardown);
  g_test_add ("/cache/gap-stops", Fixture, NULL, fixture_setup, test_gap_stops, fixture_teardown);
  g_test_add ("/cache/queries", Fixture, NULL, fixture_setup, test_queries, fixture_teardown);
  g_test_add ("/cache/orders-at-offset", Fixture, NULL, fixture_setup, test_orders_at,
              fixture_teardown);
  g_test_add ("/cache/export-async", Fixture, NULL, fixture_setup, test_export_async,
              fixture_teardown);
  g_test_add ("/cache/export-csv-guard", Fixture, NULL, fixture_setup, test_export_csv_guard,
              fixture_teardown);
  g_test_add ("/cache/search-memo-follows-writes", Fixture, NULL, fixture_setup,
              test_search_memo_follows_writes, fixture_teardown);
  g_test_add ("/cache/search-head-is-memo-page", Fixture, NULL, fixture_setup,
              test_search_head_is_memo_page, fixture_teardown);
  g_test_add ("/cache/order-at", Fixture, NULL, fixture_setup, test_order_at, fixture_teardown);
  g_test_add ("/cache/rebuild", Fixture, NULL, fixture_setup, test_rebuild, fixture_teardown);
  g_test_add ("/cache/wait-position", Fixture, NULL, fixture_setup, test_wait_position,
              fixture_teardown);
  g_test_add ("/cache/bulk-catch-up", Fixture, NULL, fixture_setup, test_bulk_catch_up,
              fixture_teardown);
  g_test_add ("/cache/bulk-rule", Fixture, NULL, fixture_setup, test_bulk_rule,
              fixture_teardown);
  g_test_add ("/cache/closed-refuses-jobs", Fixture, NULL, fixture_setup,
              test_closed_refuses_jobs, fixture_teardown);
  g_test_add_func ("/cache/migration-rebuilds", test_migration_rebuilds);
  g_test_add ("/cache/refunds-and-notes", Fixture, NULL, fixture_setup, test_refunds_and_notes,
              fixture_teardown);
  g_test_add ("/cache/migration-v4", Fixture, NULL, fixture_setup, test_migration_v4,
              fixture_teardown);
  g_test_add ("/cache/migration-refold-on-writer", Fixture, NULL, fixture_setup,
              test_migration_refold_on_writer, fixture_teardown);
  g_test_add ("/cache/migration-old-search", Fixture, NULL, fixture_setup,
              test_migration_old_search, fixture_teardown);
  g_test_add_func ("/cache/default-path", test_default_path);
  g_test_add_func ("/sync/fast-event-parser", test_fast_event_parser);
  g_test_add_func ("/sync/fast-event-parser-strict", test_fast_event_parser_strict);
  g_test_add_func ("/sse/parser", test_sse_parser);
  g_test_add_func ("/sse/parser-bounds", test_sse_parser_bounds);
  {
    int rc = g_test_run ();

    /* /cache/default-path makes orderdesk/ in it. */
    od_test_process_rmdir (xdg);
    return rc;
  }
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The order list model on its own: whatever order rows are asked in
 * (jumps far into the list from either end, then scrolling both ways),
 * row i is the i-th row of a keyset walk of the core's query. */
#include "od-core.h"
#include "od-keep-model.h"
#include "od-order-item.h"
#include "od-order-list-model.h"
#include "od-test-cache.h"

#include <glib/gstdio.h>
#include <sqlite3.h>

static GPtrArray *
walk (OdCache            *cache,
      const OdOrderQuery *q)
{
  GPtrArray *ids = g_ptr_array_new_with_free_func (g_free);
  OdOrderCursor cursor = { 0 };

  for (;;)
    {
      g_autoptr(GPtrArray) rows = od_query_orders (cache, q, &cursor, 500, NULL);

      g_assert_nonnull (rows);
      for (guint i = 0; i < rows->len; i++)
        g_ptr_array_add (ids, g_strdup (((OdOrderRow *) rows->pdata[i])->order_id));
      if (rows->len < 500)
        break;
      od_order_cursor_from_row (&cursor, q, rows->pdata[rows->len - 1]);
    }
  od_order_cursor_clear (&cursor);
  return ids;
}

static void
check (OdOrderListModel *model,
       GPtrArray        *ids,
       guint             position)
{
  g_autoptr(OdOrderItem) item = g_list_model_get_item (G_LIST_MODEL (model), position);

  g_assert_nonnull (item);
  g_assert_cmpstr (od_order_item_get_order_id (item), ==, ids->pdata[position]);
}

/* Removes a test's cache file, its companions and its directory. */
static void
remove_cache (const char *dir,
              const char *path)
{
  const char *suffix[] = { "", "-wal", "-shm", ".lock" };

  for (guint i = 0; i < G_N_ELEMENTS (suffix); i++)
    {
      g_autofree char *file = g_strconcat (path, suffix[i], NULL);

      g_unlink (file);
    }
  g_rmdir (dir);
}

static void
test_jumps (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = od_test_shared_cache (5000, &error);
  g_autoptr(OdCache) cache = NULL;
  const char *searches[] = { NULL, "a" };

  g_assert_no_error (error);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  for (guint s = 0; s < G_N_ELEMENTS (searches); s++)
    for (int sort = OD_ORDER_SORT_UPDATED; sort <= OD_ORDER_SORT_CUSTOMER; sort++)
      for (int status = OD_STATUS_NONE; status < OD_STATUS_N; status += 2)
        {
          g_autoptr(OdOrderListModel) model = od_order_list_model_new_for_query (cache, sort,
                                                                                 sort != OD_ORDER_SORT_CUSTOMER,
                                                                                 status,
                                                                                 searches[s]);
          g_autoptr(GPtrArray) ids = walk (cache, od_order_list_model_get_query (model));
          guint n = g_list_model_get_n_items (G_LIST_MODEL (model));
          guint probes[] = { n * 3 / 4, n - 1, n / 3, 1, n / 2, 0, n / 2 + 1, n * 3 / 4 - 1 };

          g_assert_cmpuint (n, ==, ids->len);
          if (n == 0)
            continue;
          for (guint k = 0; k < G_N_ELEMENTS (probes); k++)
            {
              guint p = MIN (probes[k], n - 1);

              check (model, ids, p);
              /* Scrolling on from a jump, both ways, across page ends. */
              for (guint d = 1; d < 130 && p + d < n; d += 7)
                check (model, ids, p + d);
              for (guint d = 1; d < 130 && d <= p; d += 7)
                check (model, ids, p - d);
            }
          g_assert_null (g_list_model_get_item (G_LIST_MODEL (model), n));
        }
}

typedef struct
{
  guint position, removed, added;
  guint n_during; /* what the model said while the change was told */
} Change;

/* What a view of the keep model holds, as GTK 4.8 does with the view at
 * the top (where a new query puts it): the items of the first
 * MIRROR_ROWS rows, from the changes it was told.  It asks only for the
 * items a change adds, or that a change moves into those rows; an item
 * it is not told of changing stays. */
#define MIRROR_ROWS 205

typedef struct
{
  GListModel *model;
  GPtrArray  *items; /* one per position; NULL past the rows held */
} Mirror;

static void
unref_held (gpointer item)
{
  if (item != NULL)
    g_object_unref (item);
}

static void
mirror_fill (Mirror *m)
{
  for (guint p = 0; p < m->items->len; p++)
    {
      gpointer *slot = &g_ptr_array_index (m->items, p);

      if (p < MIRROR_ROWS && *slot == NULL)
        *slot = g_list_model_get_item (m->model, p);
      else if (p >= MIRROR_ROWS && *slot != NULL)
        g_clear_object (slot);
    }
}

static void
mirror_change (GListModel *model,
               guint       position,
               guint       removed,
               guint       added,
               Mirror     *m)
{
  g_assert_cmpuint (position + removed, <=, m->items->len);
  g_ptr_array_remove_range (m->items, position, removed);
  for (guint i = 0; i < added; i++)
    g_ptr_array_insert (m->items, position + i,
                        position + i < MIRROR_ROWS ? g_list_model_get_item (model, position + i) : NULL);
  g_assert_cmpuint (m->items->len, ==, g_list_model_get_n_items (model));
  mirror_fill (m);
}

static Mirror *
mirror_new (GListModel *model)
{
  Mirror *m = g_new0 (Mirror, 1);

  m->model = model;
  m->items = g_ptr_array_new_with_free_func (unref_held);
  g_ptr_array_set_size (m->items, g_list_model_get_n_items (model));
  mirror_fill (m);
  g_signal_connect (model, "items-changed", G_CALLBACK (mirror_change), m);
  return m;
}

static void
mirror_free (Mirror *m)
{
  g_signal_handlers_disconnect_by_func (m->model, mirror_change, m);
  g_ptr_array_unref (m->items);
  g_free (m);
}

/* Unless the list model is empty (the view hidden, holding its rows),
 * the view holds the list model's own item at every position, and each
 * is the query's row at that position. */
static void
mirror_check (Mirror           *m,
              OdOrderListModel *model,
              const char       *what)
{
  guint n = g_list_model_get_n_items (G_LIST_MODEL (model));
  g_autoptr(GPtrArray) ids = NULL;

  if (n == 0)
    return;
  ids = walk (od_order_list_model_get_cache (model), od_order_list_model_get_query (model));
  g_assert_cmpuint (m->items->len, ==, n);
  g_assert_cmpuint (ids->len, ==, n);
  for (guint p = 0; p < MIN (n, MIRROR_ROWS); p++)
    {
      g_autoptr(OdOrderItem) item = g_list_model_get_item (G_LIST_MODEL (model), p);

      if (item != g_ptr_array_index (m->items, p))
        g_error ("%s: the view holds another item than the model at %u of %u", what, p, n);
      if (g_strcmp0 (od_order_item_get_order_id (item), ids->pdata[p]) != 0)
        g_error ("%s: position %u shows %s, the query has %s", what, p,
                 od_order_item_get_order_id (item), (char *) ids->pdata[p]);
    }
}

static void
record_change (GListModel *model,
               guint       position,
               guint       removed,
               guint       added,
               GArray     *changes)
{
  Change c = { position, removed, added, g_list_model_get_n_items (model) };

  g_array_append_val (changes, c);
}

/* The view's model keeps its rows through an empty result, and gives the
 * view back the same item objects (now with the new result's rows), so
 * GTK can keep its row widgets; the list model says the truth throughout. */
static void
test_keep_through_empty (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = od_test_shared_cache (5000, &error);
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdOrderListModel) model = NULL;
  g_autoptr(OdKeepModel) keep = NULL;
  g_autoptr(GPtrArray) before = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GArray) changes = g_array_new (FALSE, FALSE, sizeof (Change));
  g_autoptr(GPtrArray) ids = NULL;
  guint n_all;
  guint n_found;

  g_assert_no_error (error);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  model = od_order_list_model_new_for_query (cache, OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL);
  keep = od_keep_model_new (model);
  n_all = g_list_model_get_n_items (G_LIST_MODEL (keep));
  g_assert_cmpuint (n_all, ==, 5000);
  /* The rows a view has bound. */
  for (guint i = 0; i < 205; i++)
    g_ptr_array_add (before, g_list_model_get_item (G_LIST_MODEL (keep), i));
  g_signal_connect (keep, "items-changed", G_CALLBACK (record_change), changes);

  /* Nothing found: the list model is empty, the view's model unchanged. */
  od_order_list_model_set_query (model, OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "zzz-nothing");
  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (model)), ==, 0);
  g_assert_true (od_keep_model_get_held (keep));
  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (keep)), ==, n_all);
  g_assert_cmpuint (changes->len, ==, 0);
  /* A second empty result changes nothing either. */
  od_order_list_model_set_query (model, OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_PLACED, "zzz-nothing");
  g_assert_cmpuint (changes->len, ==, 0);

  /* Rows again: the view is told nothing of the first rows, whose items
   * are the same objects with the new rows; one change replaces the held
   * rows past them with new ones, and the rest is appended. */
  od_order_list_model_set_query (model, OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "a");
  n_found = g_list_model_get_n_items (G_LIST_MODEL (model));
  g_assert_cmpuint (n_found, >, 600);
  g_assert_false (od_keep_model_get_held (keep));
  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (keep)), ==, n_found);
  g_assert_cmpuint (changes->len, ==, 2);
  {
    Change *first = &g_array_index (changes, Change, 0);
    Change *rest = &g_array_index (changes, Change, 1);

    g_assert_cmpuint (first->position, >=, before->len);
    g_assert_cmpuint (first->removed, ==, n_all - first->position);
    g_assert_cmpuint (first->added, ==, 300);
    g_assert_cmpuint (first->n_during, ==, first->position + 300);
    g_assert_cmpuint (rest->position, ==, first->position + 300);
    g_assert_cmpuint (rest->removed, ==, 0);
    g_assert_cmpuint (rest->added, ==, n_found - rest->position);
    g_assert_cmpuint (rest->n_during, ==, n_found);
  }
  ids = walk (cache, od_order_list_model_get_query (model));
  for (guint i = 0; i < before->len; i++)
    {
      g_autoptr(OdOrderItem) item = g_list_model_get_item (G_LIST_MODEL (keep), i);

      g_assert_true (item == g_ptr_array_index (before, i));
      g_assert_cmpstr (od_order_item_get_order_id (item), ==, ids->pdata[i]);
    }
  /* And the view's model follows the list model from here on. */
  od_order_list_model_set_query (model, OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_DRAFT, "a");
  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (keep)), ==,
                    g_list_model_get_n_items (G_LIST_MODEL (model)));
}

/* Another connection commits new orders at the top, one a transaction,
 * as fast as it can. */
typedef struct
{
  char      *path;
  gint       stop;
  guint      written;
} Writer;

static gpointer
write_orders (gpointer data)
{
  Writer *w = data;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;

  g_assert_cmpint (sqlite3_open (w->path, &db), ==, SQLITE_OK);
  sqlite3_busy_timeout (db, 5000);
  g_assert_cmpint (sqlite3_prepare_v2 (db,
                                       "INSERT INTO orders (order_id, customer_name, status, version,"
                                       " created_at, updated_at, last_position)"
                                       " VALUES (?1, 'Writer', 'placed', 3, ?2, ?2, ?3)",
                                       -1, &st, NULL), ==, SQLITE_OK);
  while (!g_atomic_int_get (&w->stop))
    {
      char id[OD_UUID_LEN + 1];
      /* Newer than anything in the cache: each goes to the top. */
      g_autofree char *at = g_strdup_printf ("2999-01-01T00:%02u:%02u.%03uZ", w->written / 60000 % 60,
                                             w->written / 1000 % 60, w->written % 1000);

      od_uuid_v7_fill (id, 32503680000000 + w->written);
      sqlite3_bind_text (st, 1, id, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text (st, 2, at, -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64 (st, 3, 1000000 + w->written);
      g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
      sqlite3_reset (st);
      g_atomic_int_inc (&w->written);
      g_usleep (g_random_int_range (0, 400));
    }
  sqlite3_finalize (st);
  sqlite3_close (db);
  return NULL;
}

/* A refresh reads the count and every page it holds from one snapshot:
 * with orders committed at the top meanwhile, the rows the model holds
 * are still one consecutive stretch of one ordering, no order twice and
 * never one item object at two positions (GTK 4.8 then shows one row for
 * both: "Duplicate item detected in list"). */
static void
test_refresh_one_snapshot (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-model-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdOrderListModel) model = NULL;
  Writer w = { .path = path };
  GThread *thread;
  guint refreshes = 0;

  g_assert_no_error (error);
  g_assert_true (od_test_make_cache (path, 3000, &error));
  g_assert_no_error (error);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  model = od_order_list_model_new (cache);

  thread = g_thread_new ("writer", write_orders, &w);
  for (refreshes = 0; refreshes < 200 || g_atomic_int_get (&w.written) < 400; refreshes++)
    {
      g_autoptr(GHashTable) objects = g_hash_table_new (g_direct_hash, g_direct_equal);
      g_autoptr(GHashTable) ids = g_hash_table_new (g_str_hash, g_str_equal);
      g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func (g_object_unref);
      guint n;

      guint order[] = { 0, 1, 2, 3 };

      /* Hold the first four pages, as a view near the top does, touched
       * in a random order (the refresh reads them again in that order:
       * some by keyset from the page before, some by offset). */
      for (guint i = G_N_ELEMENTS (order) - 1; i > 0; i--)
        {
          guint j = g_test_rand_int_range (0, i + 1);
          guint t = order[i];

          order[i] = order[j];
          order[j] = t;
        }
      for (guint i = 0; i < G_N_ELEMENTS (order); i++)
        g_object_unref (g_list_model_get_item (G_LIST_MODEL (model),
                                               order[i] * OD_ORDER_LIST_PAGE_SIZE + 7));
      od_order_list_model_refresh (model);
      n = g_list_model_get_n_items (G_LIST_MODEL (model));
      g_assert_cmpuint (n, >=, 3000);
      for (guint p = 0; p < 4 * OD_ORDER_LIST_PAGE_SIZE; p++)
        g_ptr_array_add (items, g_list_model_get_item (G_LIST_MODEL (model), p));
      for (guint p = 0; p < items->len; p++)
        {
          OdOrderItem *item = g_ptr_array_index (items, p);
          const char *id = od_order_item_get_order_id (item);

          if (g_hash_table_contains (objects, item))
            g_error ("refresh %u: one item object at two positions (%u)", refreshes, p);
          if (g_hash_table_contains (ids, id))
            g_error ("refresh %u: order %s twice (position %u)", refreshes, id, p);
          g_hash_table_add (objects, item);
          g_hash_table_add (ids, (gpointer) id);
          /* Newest first, each row after the one before. */
          if (p > 0)
            g_assert_cmpstr (od_order_item_get_row (g_ptr_array_index (items, p - 1))->updated_at, >=,
                             od_order_item_get_row (item)->updated_at);
        }
    }
  g_atomic_int_set (&w.stop, 1);
  g_thread_join (thread);
  g_test_message ("%u refreshes while %u orders were committed; %u rows at the end", refreshes, w.written, g_list_model_get_n_items (G_LIST_MODEL (model)));
  g_assert_cmpuint (w.written, >=, 400);
  g_clear_object (&model);
  g_clear_object (&cache);
  remove_cache (dir, path);
}

/* Commits one order newer than any other, of `status`, as the cache's
 * writer would (the triggers keep the status counts). */
static void
insert_order (const char *path,
              const char *status,
              guint       serial)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  char id[OD_UUID_LEN + 1];
  g_autofree char *at = g_strdup_printf ("2999-01-01T00:00:%02u.%03uZ", serial / 1000 % 60, serial % 1000);

  od_uuid_v7_fill (id, 32503680000000 + serial);
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  sqlite3_busy_timeout (db, 5000);
  g_assert_cmpint (sqlite3_prepare_v2 (db,
                                       "INSERT INTO orders (order_id, customer_name, status, version,"
                                       " created_at, updated_at, last_position)"
                                       " VALUES (?1, 'Writer', ?2, 3, ?3, ?3, ?4)",
                                       -1, &st, NULL), ==, SQLITE_OK);
  sqlite3_bind_text (st, 1, id, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text (st, 2, status, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 3, at, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64 (st, 4, 1000000 + serial);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
  sqlite3_finalize (st);
  sqlite3_close (db);
}

/* Whatever queries, empty results, refreshes and reads of other pages
 * follow each other, a view of the keep model holds the list model's own
 * item at each of its rows (it is told of every position whose item
 * changed), and each is the query's row there.  Random steps, with a
 * random seed each run; a refresh that finds rows for an empty result
 * gives new items, which the view must be told of; reading more pages
 * than the model keeps (a jump far down and back, a search for an order)
 * must not give the view's rows new items behind its back. */
static void
test_keep_view_follows (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-model-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  const char *terms[] = { NULL, NULL, "a", "e", "Lovelace", "Hopper", "MUG", "zzz-nothing", "zzz-none" };
  const OdOrderSort sorts[] = { OD_ORDER_SORT_UPDATED, OD_ORDER_SORT_CREATED, OD_ORDER_SORT_TOTAL,
                                OD_ORDER_SORT_CUSTOMER };
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdOrderListModel) model = NULL;
  g_autoptr(OdKeepModel) keep = NULL;
  Mirror *mirror;
  guint serial = 0;
  guint held = 0;
  guint from_empty = 0;

  g_assert_no_error (error);
  g_assert_true (od_test_make_cache (path, 6000, &error));
  g_assert_no_error (error);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  model = od_order_list_model_new (cache);
  keep = od_keep_model_new (model);
  mirror = mirror_new (G_LIST_MODEL (keep));
  mirror_check (mirror, model, "start");

  /* The test cache has no refunded order: empty, then a refresh finds
   * one. */
  od_order_list_model_set_query (model, OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_REFUNDED, NULL);
  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (model)), ==, 0);
  g_assert_true (od_keep_model_get_held (keep));
  insert_order (path, "refunded", serial++);
  od_order_list_model_refresh (model);
  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (model)), ==, 1);
  g_assert_false (od_keep_model_get_held (keep));
  mirror_check (mirror, model, "refresh after empty");

  for (guint step = 0; step < 150; step++)
    {
      guint action = g_test_rand_int_range (0, 10);
      g_autofree char *what = NULL;
      gboolean was_held = od_keep_model_get_held (keep);

      if (action < 7)
        {
          OdOrderSort sort = sorts[g_test_rand_int_range (0, G_N_ELEMENTS (sorts))];
          gboolean descending = g_test_rand_bit ();
          OdOrderStatus status = g_test_rand_bit () ? OD_STATUS_NONE
                                                    : g_test_rand_int_range (OD_STATUS_DRAFT, OD_STATUS_N);
          const char *term = terms[g_test_rand_int_range (0, G_N_ELEMENTS (terms))];

          what = g_strdup_printf ("step %u: query sort %d%s status %d search %s", step, sort,
                                  descending ? " desc" : "", status, term ? term : "-");
          od_order_list_model_set_query (model, sort, descending, status, term);
        }
      else if (action < 8)
        {
          guint n_pages = (g_list_model_get_n_items (G_LIST_MODEL (model))
                           + OD_ORDER_LIST_PAGE_SIZE - 1) / OD_ORDER_LIST_PAGE_SIZE;
          g_autoptr(GArray) pages = g_array_new (FALSE, FALSE, sizeof (guint));

          /* Read every other page once, in a random order, as jumps far
           * down do: more than the model keeps. */
          what = g_strdup_printf ("step %u: read %u other pages", step, n_pages > 3 ? n_pages - 3 : 0);
          for (guint page = 3; page < n_pages; page++)
            g_array_insert_val (pages, g_test_rand_int_range (0, pages->len + 1), page);
          for (guint i = 0; i < pages->len; i++)
            g_object_unref (g_list_model_get_item (G_LIST_MODEL (model),
                                                   g_array_index (pages, guint, i)
                                                   * OD_ORDER_LIST_PAGE_SIZE));
        }
      else if (action < 9)
        {
          const char *status = g_test_rand_bit () ? "refunded" : "placed";

          what = g_strdup_printf ("step %u: a %s order, refresh", step, status);
          insert_order (path, status, serial++);
          od_order_list_model_refresh (model);
        }
      else
        {
          /* The list settles after a frame: the deferred pages are read. */
          what = g_strdup_printf ("step %u: settle", step);
          od_order_list_model_settle (model);
        }
      held += od_keep_model_get_held (keep);
      from_empty += was_held && !od_keep_model_get_held (keep);
      mirror_check (mirror, model, what);
    }
  g_test_message ("150 steps: %u ended with an empty result, %u brought rows back", held, from_empty);
  g_assert_cmpuint (from_empty, >, 0);
  mirror_free (mirror);
  g_clear_object (&keep);
  g_clear_object (&model);
  g_clear_object (&cache);
  remove_cache (dir, path);
}

/* A search's first count is the number of its matches (no row read);
 * should the search index name an order that is gone, the model takes
 * the true count once settled, and every row is the walk's. */
static void
test_search_count_corrected (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-model-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdOrderListModel) model = NULL;
  g_autoptr(GPtrArray) ids = NULL;
  OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, "Ada" };
  sqlite3 *db = NULL;
  gint64 deadline;
  gint64 exact;
  guint n;

  g_assert_no_error (error);
  g_assert_true (od_test_make_cache (path, 3000, &error));
  g_assert_no_error (error);
  /* The newest Ada's row goes; the contentless search index keeps it. */
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, "DELETE FROM orders WHERE rowid = (SELECT rowid FROM orders"
                                     " WHERE customer_name LIKE 'Ada %' ORDER BY updated_at DESC"
                                     " LIMIT 1)", NULL, NULL, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_changes (db), ==, 1);
  sqlite3_close (db);

  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  model = od_order_list_model_new (cache);
  od_order_list_model_set_query (model, q.sort, q.descending, q.status, q.search);
  n = g_list_model_get_n_items (G_LIST_MODEL (model));
  exact = od_query_count_orders (cache, &q, NULL);
  g_assert_cmpint (exact, >, 0);
  g_assert_cmpuint (n, ==, exact + 1);
  g_assert_false (od_order_list_model_is_settled (model));

  od_order_list_model_settle (model);
  deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;
  while (g_list_model_get_n_items (G_LIST_MODEL (model)) != exact
         && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE);
  n = g_list_model_get_n_items (G_LIST_MODEL (model));
  g_assert_cmpuint (n, ==, exact);
  g_assert_true (od_order_list_model_is_settled (model));
  ids = walk (cache, &q);
  g_assert_cmpuint (ids->len, ==, n);
  for (guint i = 0; i < n; i++)
    check (model, ids, i);
  g_assert_null (g_list_model_get_item (G_LIST_MODEL (model), n));

  g_clear_object (&model);
  g_clear_object (&cache);
  remove_cache (dir, path);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/model/jumps", test_jumps);
  g_test_add_func ("/model/keep-through-empty", test_keep_through_empty);
  g_test_add_func ("/model/keep-view-follows", test_keep_view_follows);
  g_test_add_func ("/model/refresh-one-snapshot", test_refresh_one_snapshot);
  g_test_add_func ("/model/search-count-corrected", test_search_count_corrected);
  return g_test_run ();
}

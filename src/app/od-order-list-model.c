/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <string.h>

#include "od-order-item.h"
#include "od-order-list-model.h"

/* A lazy GListModel over the read cache.  The number of items comes from
 * the maintained counts; rows are fetched a page at a time with the
 * core's keyset queries, and only the most recently used pages exist as
 * objects.  The model remembers the keyset cursor at every page boundary
 * it has seen ("anchors"): scrolling costs one keyset query a page, and a
 * jump to a page without an anchor is one query by offset
 * (od_query_orders_at), which records the anchors around it. */

#define PAGE_SIZE     OD_ORDER_LIST_PAGE_SIZE
#define MAX_PAGES     40
#define FRESH_WALK_MAX_PAGES 50
/* A new query shows its top (the list scrolls there).  GTK 4.8 keeps about
 * 200 rows bound, so the items of the first three pages take the new rows
 * in place and GTK creates no row widgets: the first page at once, the
 * other two after the frame that shows the result (Page.deferred); other
 * pages are only read again if the view asks. */
#define NEW_QUERY_PAGES 3

typedef struct
{
  guint      index;
  GPtrArray *items;    /* OdOrderItem */
  gboolean   deferred; /* a new query's page whose items hold blank rows
                        * until it is read (od_order_list_model_settle) */
} Page;

struct _OdOrderListModel
{
  GObject        parent_instance;

  OdCache       *cache;
  OdOrderQuery   query;
  char          *search;

  guint          n_items; /* what the view has been told */
  guint          n_rows;  /* the query's count: ahead of n_items while the
                           * view is being told of a change */
  GHashTable    *pages;   /* page index → Page */
  GQueue         lru;     /* of Page*, most recent first */
  GArray        *anchors; /* OdOrderCursor per page index; [0] is the start */
  GHashTable    *pending; /* order ids, owned by the caller */
  double         last_fetch_ms;
  GPtrArray     *parked;  /* OdOrderItem by position, kept while empty */
  gboolean       count_provisional; /* a search's count from its matches */
  guint          recount_id;
};

static void od_order_list_model_iface_init (GListModelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (OdOrderListModel, od_order_list_model, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_LIST_MODEL, od_order_list_model_iface_init))

static void
page_free (Page *page)
{
  g_ptr_array_unref (page->items);
  g_free (page);
}

static void
clear_anchors (OdOrderListModel *self)
{
  for (guint i = 0; i < self->anchors->len; i++)
    od_order_cursor_clear (&g_array_index (self->anchors, OdOrderCursor, i));
  g_array_set_size (self->anchors, 0);
}

static void
clear_pages (OdOrderListModel *self)
{
  g_queue_clear (&self->lru);
  g_hash_table_remove_all (self->pages);
}

static OdOrderCursor *
anchor_at (OdOrderListModel *self,
           guint             page)
{
  if (page >= self->anchors->len)
    return NULL;
  return &g_array_index (self->anchors, OdOrderCursor, page);
}

static void
set_anchor (OdOrderListModel *self,
            guint             page,
            const OdOrderRow *last_row_of_previous_page)
{
  OdOrderCursor *cursor;

  if (page >= self->anchors->len)
    g_array_set_size (self->anchors, page + 1);
  cursor = &g_array_index (self->anchors, OdOrderCursor, page);
  od_order_cursor_clear (cursor);
  od_order_cursor_from_row (cursor, &self->query, last_row_of_previous_page);
}

static gboolean
anchor_known (OdOrderListModel *self,
              guint             page)
{
  OdOrderCursor *cursor;

  if (page == 0)
    return TRUE;
  cursor = anchor_at (self, page);
  return cursor != NULL && cursor->valid;
}

static GPtrArray *
fetch (OdOrderListModel    *self,
       const OdOrderCursor *cursor,
       guint                limit)
{
  g_autoptr(GError) error = NULL;
  GPtrArray *rows;

  rows = od_query_orders (self->cache, &self->query,
                          cursor && cursor->valid ? cursor : NULL,
                          limit, &error);
  if (rows == NULL)
    {
      g_warning ("Could not read orders: %s", error->message);
      return g_ptr_array_new ();
    }
  return rows;
}

/* Rows [start, start + len) by offset: the core counts the skipped rows
 * on the sort index (about 13 ms per 500,000 rows at a million orders),
 * from whichever end is nearer.  The row before `start` comes along to
 * be the page's anchor, so scrolling on from a jump is keyset paging. */
static GPtrArray *
fetch_at (OdOrderListModel *self,
          guint             page)
{
  guint start = page * PAGE_SIZE;
  guint len = MIN (PAGE_SIZE, self->n_rows - start);
  g_autoptr(GError) error = NULL;
  GPtrArray *rows;

  if (start >= self->n_rows / 2)
    {
      OdOrderQuery reversed = self->query;

      reversed.descending = !reversed.descending;
      rows = od_query_orders_at (self->cache, &reversed, self->n_rows - start - len, len + 1,
                                 &error);
      if (rows != NULL)
        for (guint i = 0; i < rows->len / 2; i++)
          {
            gpointer tmp = rows->pdata[i];

            rows->pdata[i] = rows->pdata[rows->len - 1 - i];
            rows->pdata[rows->len - 1 - i] = tmp;
          }
    }
  else
    rows = od_query_orders_at (self->cache, &self->query, start - 1, len + 1, &error);
  if (rows == NULL)
    {
      g_warning ("Could not read orders: %s", error->message);
      return g_ptr_array_new ();
    }
  /* The count is ahead of the rows (a refresh is on its way): an empty
   * page meanwhile. */
  if (rows->len != len + 1)
    {
      g_ptr_array_unref (rows);
      return g_ptr_array_new ();
    }
  set_anchor (self, page, g_ptr_array_index (rows, 0));
  g_ptr_array_remove_index (rows, 0);
  if (rows->len == PAGE_SIZE)
    set_anchor (self, page + 1, g_ptr_array_index (rows, PAGE_SIZE - 1));
  return rows;
}

/* Fetches the rows of `page`: by keyset from its anchor when that is
 * known (scrolling), else by offset (a jump). */
static GPtrArray *
fetch_page_rows (OdOrderListModel *self,
                 guint             page)
{
  GPtrArray *rows;

  /* By the query's count, not the view's: the view asks for rows while
   * it is told of a change, and a page read then to the count it has
   * been told so far would stay short (its last rows missing) after. */
  if ((gsize) page * PAGE_SIZE >= self->n_rows)
    return g_ptr_array_new ();
  if (page > 0 && !anchor_known (self, page))
    return fetch_at (self, page);
  rows = fetch (self, page == 0 ? NULL : anchor_at (self, page), PAGE_SIZE);
  if (rows->len == PAGE_SIZE)
    set_anchor (self, page + 1, g_ptr_array_index (rows, PAGE_SIZE - 1));
  return rows;
}

/* The view may ask for rows (and so load pages) from inside our own
 * items-changed emissions; a page loaded that way must not be left in
 * the LRU when the same index is stored again. */
static void
insert_page (OdOrderListModel *self,
             Page             *page)
{
  Page *old = g_hash_table_lookup (self->pages, GUINT_TO_POINTER (page->index));

  if (old != NULL)
    g_queue_remove (&self->lru, old);
  g_hash_table_insert (self->pages, GUINT_TO_POINTER (page->index), page);
  g_queue_push_head (&self->lru, page);
}

static void
touch_page (OdOrderListModel *self,
            Page             *page)
{
  GList *link = g_queue_find (&self->lru, page);

  if (link != NULL && link != self->lru.head)
    {
      g_queue_unlink (&self->lru, link);
      g_queue_push_head_link (&self->lru, link);
    }
}

static GPtrArray *
items_from_rows (OdOrderListModel *self,
                 GPtrArray        *rows,
                 GHashTable       *reuse)
{
  GPtrArray *items = g_ptr_array_new_full (rows->len, g_object_unref);

  /* The rows move into the items; the array must not free them. */
  g_ptr_array_set_free_func (rows, NULL);
  for (guint i = 0; i < rows->len; i++)
    {
      OdOrderRow *row = g_ptr_array_index (rows, i);
      g_autofree char *key = NULL;
      OdOrderItem *item = NULL;

      /* Taken out of `reuse`: one item object is never at two positions,
       * even if an order were read twice (GTK would show one of the two
       * rows for both). */
      if (reuse != NULL
          && g_hash_table_steal_extended (reuse, row->order_id, (gpointer *) &key,
                                          (gpointer *) &item))
        od_order_item_set_row (item, row);
      else
        item = od_order_item_new (row);
      if (self->pending != NULL)
        od_order_item_set_pending (item, g_hash_table_contains (self->pending, row->order_id));
      g_ptr_array_add (items, item);
    }
  return items;
}

/* Whether anyone but the page holds one of its items.  GObject has no
 * call for it; its reference count is what tells (the page holds one). */
static gboolean
page_is_held (Page *page)
{
  for (guint i = 0; i < page->items->len; i++)
    {
      GObject *item = g_ptr_array_index (page->items, i);

      if (g_atomic_int_get ((int *) &item->ref_count) > 1)
        return TRUE;
    }
  return FALSE;
}

static Page *
load_page (OdOrderListModel *self,
           guint             index)
{
  Page *page = g_hash_table_lookup (self->pages, GUINT_TO_POINTER (index));
  g_autoptr(GPtrArray) rows = NULL;
  gint64 start;

  if (page != NULL)
    {
      touch_page (self, page);
      return page;
    }

  start = g_get_monotonic_time ();
  rows = fetch_page_rows (self, index);
  self->last_fetch_ms = (g_get_monotonic_time () - start) / 1000.0;

  page = g_new0 (Page, 1);
  page->index = index;
  page->items = items_from_rows (self, rows, NULL);
  insert_page (self, page);

  /* The least recent pages go, except one whose items someone else
   * holds: the view's rows (GTK 4.8 asks for a row's item once and keeps
   * it while the row is bound).  Read again, that page would have new
   * items; the view, never told, would keep the old ones, which no new
   * query or refresh reaches: rows showing what they showed before.  (A
   * jump far down reads many pages while the view still holds the top.) */
  for (GList *l = self->lru.tail; l != NULL && self->lru.length > MAX_PAGES;)
    {
      Page *old = l->data;
      GList *prev = l->prev;

      if (!page_is_held (old))
        {
          g_queue_delete_link (&self->lru, l);
          g_hash_table_remove (self->pages, GUINT_TO_POINTER (old->index));
        }
      l = prev;
    }
  return page;
}

/* Moves rows [start, start + len) of `rows` into a new array. */
static GPtrArray *
take_rows (GPtrArray *rows,
           guint      start,
           guint      len)
{
  GPtrArray *taken = g_ptr_array_new_with_free_func ((GDestroyNotify) od_order_row_free);

  for (guint i = start; i < rows->len && i < start + len; i++)
    {
      g_ptr_array_add (taken, rows->pdata[i]);
      rows->pdata[i] = NULL;
    }
  return taken;
}

static OdOrderRow *
blank_row (void)
{
  OdOrderRow *blank = g_new0 (OdOrderRow, 1);

  blank->customer_name = g_strdup ("");
  blank->customer_email = g_strdup ("");
  blank->currency = g_strdup ("");
  blank->created_at = g_strdup ("");
  blank->updated_at = g_strdup ("");
  return blank;
}

/* Reads a deferred page into its items, and the deferred pages before
 * it first: each page's keyset anchor comes from the one before. */
static void
fill_deferred (OdOrderListModel *self,
               guint             upto)
{
  for (guint index = 1; index <= upto && index < NEW_QUERY_PAGES; index++)
    {
      Page *page = g_hash_table_lookup (self->pages, GUINT_TO_POINTER (index));
      g_autoptr(GPtrArray) rows = NULL;

      if (page == NULL || !page->deferred)
        continue;
      page->deferred = FALSE;
      rows = fetch_page_rows (self, index);
      g_ptr_array_set_free_func (rows, NULL);
      for (guint i = 0; i < rows->len; i++)
        {
          OdOrderRow *row = g_ptr_array_index (rows, i);
          OdOrderItem *item;

          /* Written since the count: the refresh that follows the write
           * brings the page to the new count. */
          if (i >= page->items->len)
            {
              od_order_row_free (row);
              continue;
            }
          item = g_ptr_array_index (page->items, i);
          od_order_item_set_row (item, row);
          od_order_item_set_pending (item, self->pending != NULL
                                     && g_hash_table_contains (self->pending, row->order_id));
        }
    }
}

static GType
od_order_list_model_get_item_type (GListModel *model)
{
  return OD_TYPE_ORDER_ITEM;
}

static guint
od_order_list_model_get_n_items (GListModel *model)
{
  return OD_ORDER_LIST_MODEL (model)->n_items;
}

static gpointer
od_order_list_model_get_item (GListModel *model,
                              guint       position)
{
  OdOrderListModel *self = OD_ORDER_LIST_MODEL (model);
  Page *page;
  guint offset;

  if (position >= self->n_items || self->cache == NULL)
    return NULL;

  page = load_page (self, position / PAGE_SIZE);
  if (page->deferred)
    fill_deferred (self, page->index);
  offset = position % PAGE_SIZE;
  /* The count is ahead of the rows (a refresh is on its way).  A list
   * model has an item at every position below its count: GTK 4.8 given
   * none leaves the row widget with the order it showed before. */
  if (offset >= page->items->len)
    return od_order_item_new (blank_row ());
  return g_object_ref (g_ptr_array_index (page->items, offset));
}

static void
od_order_list_model_iface_init (GListModelInterface *iface)
{
  iface->get_item_type = od_order_list_model_get_item_type;
  iface->get_n_items = od_order_list_model_get_n_items;
  iface->get_item = od_order_list_model_get_item;
}

static guint
count_items (OdOrderListModel *self)
{
  g_autoptr(GError) error = NULL;
  gint64 n;

  if (self->cache == NULL)
    return 0;
  n = od_query_count_orders (self->cache, &self->query, &error);
  if (n < 0)
    {
      g_warning ("Could not count orders: %s", error->message);
      return 0;
    }
  return (guint) MIN (n, G_MAXUINT);
}

static gboolean
recount (gpointer data)
{
  OdOrderListModel *self = data;

  self->recount_id = 0;
  od_order_list_model_refresh (self);
  return G_SOURCE_REMOVE;
}

/* A search's first frame shows the number of its matches
 * (od_query_count_orders_quick); after that frame, the count from the
 * orders themselves.  Should they differ (the search index names an
 * order that is gone), the list is read again with the true count. */
static void
check_count (OdOrderListModel *self)
{
  if (!self->count_provisional)
    return;
  self->count_provisional = FALSE;
  if (count_items (self) != self->n_rows && self->recount_id == 0)
    self->recount_id = g_idle_add (recount, self);
}

/* A new query on the same model.  The item objects of the first pages
 * stay at their positions and take the new rows, so the view keeps its
 * row widgets and only redraws their contents: GTK 4.8 rebuilds every
 * visible row when a model is replaced (100–400 ms here) and, on an
 * items-changed, asks for every added item (which at a million rows reads
 * them all).  The view should unselect first and scroll to the top after. */
void
od_order_list_model_set_query (OdOrderListModel *self,
                               OdOrderSort       sort,
                               gboolean          descending,
                               OdOrderStatus     status,
                               const char       *search)
{
  g_autoptr(GHashTable) by_position = NULL;
  g_autoptr(GArray) indices = NULL;
  g_autoptr(GArray) dropped = NULL;
  g_autoptr(GArray) changed = g_array_new (FALSE, FALSE, sizeof (guint));
  g_autoptr(GPtrArray) head = NULL;
  guint span = 0;
  guint old_n = self->n_items;
  guint kept_n = old_n;
  guint new_n;

  g_return_if_fail (OD_IS_ORDER_LIST_MODEL (self));

  if (search != NULL && *search == '\0')
    search = NULL;
  if (self->query.sort == sort && self->query.descending == descending
      && self->query.status == status && g_strcmp0 (self->search, search) == 0)
    return;

  by_position = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_object_unref);
  indices = g_array_new (FALSE, FALSE, sizeof (guint));
  dropped = g_array_new (FALSE, FALSE, sizeof (guint));
  /* Coming back from an empty result: the items parked then are the
   * view's rows (see OdKeepModel), and take the new rows in place. */
  if (old_n == 0 && self->parked != NULL)
    {
      for (guint i = 0; i < self->parked->len; i++)
        g_hash_table_insert (by_position, GUINT_TO_POINTER (i),
                             g_object_ref (g_ptr_array_index (self->parked, i)));
      for (guint index = 0; (gsize) index * PAGE_SIZE < self->parked->len; index++)
        g_array_append_val (indices, index);
      kept_n = self->parked->len;
    }
  /* Pages still deferred from the query before are taken as they are:
   * their items take this query's rows like the others. */
  for (GList *l = self->lru.head; l != NULL; l = l->next)
    {
      Page *page = l->data;

      if (page->index < NEW_QUERY_PAGES)
        {
          g_array_append_val (indices, page->index);
          for (guint i = 0; i < page->items->len; i++)
            g_hash_table_insert (by_position, GUINT_TO_POINTER (page->index * PAGE_SIZE + i),
                                 g_object_ref (g_ptr_array_index (page->items, i)));
        }
      else
        g_array_append_val (dropped, page->index);
    }

  /* Pages and anchors belong to the old query. */
  clear_pages (self);
  clear_anchors (self);
  self->query.sort = sort;
  self->query.descending = descending;
  self->query.status = status;
  g_free (self->search);
  self->search = g_strdup (search);
  self->query.search = self->search;
  {
    g_autoptr(GError) error = NULL;
    gboolean exact = TRUE;
    gint64 n = self->cache ? od_query_count_orders_quick (self->cache, &self->query, &exact,
                                                          &error)
                           : 0;

    if (n < 0)
      g_warning ("Could not count orders: %s", error->message);
    new_n = (guint) CLAMP (n, 0, G_MAXUINT);
    self->count_provisional = !exact;
  }

  self->n_items = new_n;
  self->n_rows = new_n;

  /* An empty result: the view keeps its rows (OdKeepModel), and with them
   * these items, until a query has rows again. */
  if (new_n == 0 && g_hash_table_size (by_position) > 0)
    {
      guint n = 0;

      while (g_hash_table_contains (by_position, GUINT_TO_POINTER (n)))
        n++;
      g_clear_pointer (&self->parked, g_ptr_array_unref);
      self->parked = g_ptr_array_new_full (n, g_object_unref);
      for (guint i = 0; i < n; i++)
        g_ptr_array_add (self->parked,
                         g_object_ref (g_hash_table_lookup (by_position, GUINT_TO_POINTER (i))));
    }
  else if (new_n > 0)
    g_clear_pointer (&self->parked, g_ptr_array_unref);

  /* Only the first page is read now: it holds every row on screen (the
   * view goes to the top).  The other pages GTK holds rows of keep their
   * items, with blank rows, and are read after the frame that shows the
   * result (od_order_list_model_settle), or as soon as anyone asks for
   * one of their items: half the reading and the rows' updating of a
   * search were for rows nobody sees in that frame. */
  for (guint k = 0; k < indices->len; k++)
    if (g_array_index (indices, guint, k) == 0 && MIN (kept_n, new_n) > 0)
      span = PAGE_SIZE;
  if (span > 0)
    {
      head = fetch (self, NULL, span);
      for (guint p = 1; (gsize) p * PAGE_SIZE <= head->len; p++)
        set_anchor (self, p, g_ptr_array_index (head, p * PAGE_SIZE - 1));
    }

  /* The first pages: same objects, new rows. */
  for (guint k = indices->len; k > 0; k--)
    {
      guint index = g_array_index (indices, guint, k - 1);
      g_autoptr(GPtrArray) rows = NULL;
      guint first = G_MAXUINT;
      guint last = 0;
      Page *page;

      if ((gsize) index * PAGE_SIZE >= MIN (kept_n, new_n))
        continue;
      if (index == 0)
        rows = take_rows (head, 0, PAGE_SIZE);
      else
        {
          guint len = MIN (PAGE_SIZE, new_n - index * PAGE_SIZE);

          rows = g_ptr_array_new_with_free_func ((GDestroyNotify) od_order_row_free);
          for (guint i = 0; i < len; i++)
            g_ptr_array_add (rows, blank_row ());
        }
      page = g_new0 (Page, 1);
      page->index = index;
      page->deferred = index > 0;
      page->items = g_ptr_array_new_full (rows->len, g_object_unref);
      g_ptr_array_set_free_func (rows, NULL);
      for (guint i = 0; i < rows->len; i++)
        {
          guint pos = index * PAGE_SIZE + i;
          OdOrderRow *row = g_ptr_array_index (rows, i);
          OdOrderItem *item = g_hash_table_lookup (by_position, GUINT_TO_POINTER (pos));

          if (item != NULL)
            {
              g_object_ref (item);
              od_order_item_set_row (item, row);
            }
          else
            {
              item = od_order_item_new (row);
              if (pos < MIN (old_n, new_n))
                {
                  first = MIN (first, pos);
                  last = MAX (last, pos);
                }
            }
          od_order_item_set_pending (item, self->pending != NULL
                                     && g_hash_table_contains (self->pending, row->order_id));
          g_ptr_array_add (page->items, item);
        }
      insert_page (self, page);
      if (first != G_MAXUINT)
        {
          guint range[2] = { first, last - first + 1 };

          g_array_append_vals (changed, range, 2);
        }
    }

  /* Every page is in place before the view hears of a change. */
  if (new_n < old_n)
    g_list_model_items_changed (G_LIST_MODEL (self), new_n, old_n - new_n, 0);
  self->n_items = MIN (old_n, new_n);
  for (guint k = 0; k < changed->len; k += 2)
    g_list_model_items_changed (G_LIST_MODEL (self), g_array_index (changed, guint, k),
                                g_array_index (changed, guint, k + 1),
                                g_array_index (changed, guint, k + 1));

  /* Deep pages the view may hold rows of: read again when asked. */
  for (guint k = 0; k < dropped->len; k++)
    {
      guint index = g_array_index (dropped, guint, k);
      guint start = index * PAGE_SIZE;

      if (start < self->n_items)
        {
          guint len = MIN (PAGE_SIZE, self->n_items - start);

          g_list_model_items_changed (G_LIST_MODEL (self), start, len, len);
        }
    }

  if (new_n > old_n)
    {
      self->n_items = new_n;
      g_list_model_items_changed (G_LIST_MODEL (self), old_n, 0, new_n - old_n);
    }
  self->n_items = new_n;
}

const OdOrderQuery *
od_order_list_model_get_query (OdOrderListModel *self)
{
  g_return_val_if_fail (OD_IS_ORDER_LIST_MODEL (self), NULL);
  return &self->query;
}

/* Re-reads the pages in memory after the cache changed and reports only
 * the positions whose order changed, so the view keeps its scroll
 * position and the selection follows its item when it moves within the
 * pages shown.  Items are reused by order id. */
void
od_order_list_model_refresh (OdOrderListModel *self)
{
  g_autoptr(GHashTable) reuse = NULL;
  g_autoptr(GArray) indices = NULL;
  g_autoptr(GError) error = NULL;
  gboolean snapshot;
  GHashTable *old_items;
  guint old_n = self->n_items;
  guint new_n;
  guint max_page = 0;
  guint first = G_MAXUINT;
  guint last = 0;

  g_return_if_fail (OD_IS_ORDER_LIST_MODEL (self));

  if (self->cache == NULL)
    return;

  /* The count and every page read again come from one snapshot: read
   * across a commit of the writer, two pages could both hold an order that
   * moved between them, and the count disagree with the rows. */
  snapshot = od_query_snapshot_begin (self->cache, &error);
  if (!snapshot)
    g_warning ("Could not begin a read snapshot: %s", error->message);
  fill_deferred (self, G_MAXUINT);
  new_n = count_items (self);
  self->count_provisional = FALSE;
  if (new_n > 0)
    g_clear_pointer (&self->parked, g_ptr_array_unref);

  /* Remember which item was where. */
  reuse = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_object_unref);
  old_items = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_object_unref);
  indices = g_array_new (FALSE, FALSE, sizeof (guint));
  for (GList *l = self->lru.head; l != NULL; l = l->next)
    {
      Page *page = l->data;

      g_array_append_val (indices, page->index);
      max_page = MAX (max_page, page->index);
      for (guint i = 0; i < page->items->len; i++)
        {
          OdOrderItem *item = g_ptr_array_index (page->items, i);

          g_hash_table_insert (reuse, g_strdup (od_order_item_get_order_id (item)),
                               g_object_ref (item));
          g_hash_table_insert (old_items, GUINT_TO_POINTER (page->index * PAGE_SIZE + i),
                               g_object_ref (item));
        }
    }

  /* Near the top every boundary is re-walked so pages stay exact; deep
   * pages keep their anchors, which still name a place in the order. */
  if (max_page < FRESH_WALK_MAX_PAGES)
    clear_anchors (self);
  clear_pages (self);

  /* Reload the pages that were in memory, most recent last so the LRU
   * order survives, reusing items by order id.  Fetching needs the true
   * count (pages near the end are read from the end). */
  self->n_items = new_n;
  self->n_rows = new_n;
  for (guint k = indices->len; k > 0; k--)
    {
      guint index = g_array_index (indices, guint, k - 1);
      g_autoptr(GPtrArray) rows = NULL;
      Page *page;

      if ((gsize) index * PAGE_SIZE >= MIN (old_n, new_n))
        continue;
      rows = fetch_page_rows (self, index);
      page = g_new0 (Page, 1);
      page->index = index;
      page->items = items_from_rows (self, rows, reuse);
      insert_page (self, page);

      for (guint i = 0; i < PAGE_SIZE; i++)
        {
          guint pos = index * PAGE_SIZE + i;
          gpointer before = g_hash_table_lookup (old_items, GUINT_TO_POINTER (pos));
          gpointer after = i < page->items->len ? g_ptr_array_index (page->items, i) : NULL;

          if (pos >= MIN (old_n, new_n))
            break;
          if (before != after)
            {
              first = MIN (first, pos);
              last = MAX (last, pos);
            }
        }
    }

  if (snapshot)
    od_query_snapshot_end (self->cache);

  /* Every page is in place before the view hears of a change (it may ask
   * for rows while it is told).  Shrinking: the tail goes first so no
   * position it asks about is out of range; growing: it keeps the old
   * count until the append below. */
  if (new_n < old_n)
    {
      self->n_items = new_n;
      g_list_model_items_changed (G_LIST_MODEL (self), new_n, old_n - new_n, 0);
    }
  self->n_items = MIN (old_n, new_n);
  if (first != G_MAXUINT)
    g_list_model_items_changed (G_LIST_MODEL (self), first, last - first + 1, last - first + 1);

  if (new_n > old_n)
    {
      self->n_items = new_n;
      g_list_model_items_changed (G_LIST_MODEL (self), old_n, 0, new_n - old_n);
    }
  g_hash_table_unref (old_items);
}

void
od_order_list_model_set_pending (OdOrderListModel *self,
                                 GHashTable       *pending_ids)
{
  g_return_if_fail (OD_IS_ORDER_LIST_MODEL (self));

  g_clear_pointer (&self->pending, g_hash_table_unref);
  if (pending_ids != NULL)
    self->pending = g_hash_table_ref (pending_ids);

  for (GList *l = self->lru.head; l != NULL; l = l->next)
    {
      Page *page = l->data;

      for (guint i = 0; i < page->items->len; i++)
        {
          OdOrderItem *item = g_ptr_array_index (page->items, i);

          od_order_item_set_pending (item, self->pending != NULL
                                     && g_hash_table_contains (self->pending,
                                                               od_order_item_get_order_id (item)));
        }
    }
}

/* The items of the first rows of the last non-empty result, while the
 * result is empty (NULL otherwise). */
GPtrArray *
od_order_list_model_get_parked (OdOrderListModel *self)
{
  g_return_val_if_fail (OD_IS_ORDER_LIST_MODEL (self), NULL);
  return self->parked;
}

/* The item at `position` if its page is in memory, else NULL; reads
 * nothing (a deferred page keeps its blank rows) and moves no page in the
 * cache's order.  Transfer none. */
OdOrderItem *
od_order_list_model_peek_item (OdOrderListModel *self,
                               guint             position)
{
  Page *page;

  g_return_val_if_fail (OD_IS_ORDER_LIST_MODEL (self), NULL);
  if (position >= self->n_items)
    return NULL;
  page = g_hash_table_lookup (self->pages, GUINT_TO_POINTER (position / PAGE_SIZE));
  if (page == NULL || position % PAGE_SIZE >= page->items->len)
    return NULL;
  return g_ptr_array_index (page->items, position % PAGE_SIZE);
}

/* For each of `items`, its position if its page is in memory, else
 * G_MAXUINT, in `positions` (as long as `items`).  Like peek_item, it
 * reads nothing and moves no page. */
void
od_order_list_model_peek_positions (OdOrderListModel *self,
                                    GPtrArray        *items,
                                    guint            *positions)
{
  g_autoptr(GHashTable) wanted = NULL;
  guint left = 0;

  g_return_if_fail (OD_IS_ORDER_LIST_MODEL (self));
  g_return_if_fail (items != NULL && (items->len == 0 || positions != NULL));

  wanted = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (guint k = 0; k < items->len; k++)
    {
      positions[k] = G_MAXUINT;
      if (g_hash_table_insert (wanted, g_ptr_array_index (items, k), GUINT_TO_POINTER (k)))
        left++;
    }
  for (GList *l = self->lru.head; l != NULL && left > 0; l = l->next)
    {
      Page *page = l->data;

      for (guint i = 0; i < page->items->len && left > 0; i++)
        {
          gpointer k;

          if (g_hash_table_lookup_extended (wanted, g_ptr_array_index (page->items, i), NULL, &k))
            {
              positions[GPOINTER_TO_UINT (k)] = page->index * PAGE_SIZE + i;
              left--;
            }
        }
    }
}

/* The position of `order_id` in the query's order now, counted on the
 * cache from the end nearer to `near` (a guess), whether its page is in
 * memory or not (nothing is read into memory); G_MAXUINT if the order is
 * not in the cache or would come after the last row.  It may be an order
 * the query does not list: the caller checks the row there. */
guint
od_order_list_model_locate (OdOrderListModel *self,
                            const char       *order_id,
                            guint             near)
{
  g_autoptr(GError) error = NULL;
  gint64 position;

  g_return_val_if_fail (OD_IS_ORDER_LIST_MODEL (self), G_MAXUINT);
  g_return_val_if_fail (order_id != NULL, G_MAXUINT);

  if (self->cache == NULL)
    return G_MAXUINT;
  if (!od_query_order_position (self->cache, &self->query, order_id, near, &position, &error))
    {
      g_warning ("Could not find an order's row: %s", error->message);
      return G_MAXUINT;
    }
  if (position < 0 || position >= self->n_items)
    return G_MAXUINT;
  return (guint) position;
}

/* The position of `order_id` among the rows in memory, else among the
 * first pages (read if need be); G_MAXUINT if it is in neither. */
guint
od_order_list_model_find (OdOrderListModel *self,
                          const char       *order_id)
{
  g_return_val_if_fail (OD_IS_ORDER_LIST_MODEL (self), G_MAXUINT);

  fill_deferred (self, G_MAXUINT);
  for (GList *l = self->lru.head; l != NULL; l = l->next)
    {
      Page *page = l->data;

      for (guint i = 0; i < page->items->len; i++)
        if (g_strcmp0 (od_order_item_get_order_id (g_ptr_array_index (page->items, i)),
                       order_id) == 0)
          return page->index * PAGE_SIZE + i;
    }
  for (guint index = 0; index < NEW_QUERY_PAGES && (gsize) index * PAGE_SIZE < self->n_items; index++)
    {
      Page *page = load_page (self, index);

      for (guint i = 0; i < page->items->len; i++)
        if (g_strcmp0 (od_order_item_get_order_id (g_ptr_array_index (page->items, i)),
                       order_id) == 0)
          return index * PAGE_SIZE + i;
    }
  return G_MAXUINT;
}

/* Reads the pages a new query left for later (see set_query); the view
 * calls it after the frame that shows the result, and before it shows
 * any of their rows. */
void
od_order_list_model_settle (OdOrderListModel *self)
{
  g_return_if_fail (OD_IS_ORDER_LIST_MODEL (self));
  fill_deferred (self, G_MAXUINT);
  check_count (self);
}

gboolean
od_order_list_model_is_settled (OdOrderListModel *self)
{
  g_return_val_if_fail (OD_IS_ORDER_LIST_MODEL (self), TRUE);
  if (self->count_provisional)
    return FALSE;
  for (GList *l = self->lru.head; l != NULL; l = l->next)
    if (((Page *) l->data)->deferred)
      return FALSE;
  return TRUE;
}

guint
od_order_list_model_get_cached_pages (OdOrderListModel *self)
{
  return self->lru.length;
}

double
od_order_list_model_get_last_fetch_ms (OdOrderListModel *self)
{
  return self->last_fetch_ms;
}

OdCache *
od_order_list_model_get_cache (OdOrderListModel *self)
{
  g_return_val_if_fail (OD_IS_ORDER_LIST_MODEL (self), NULL);
  return self->cache;
}

/* A model for a query from the start.  Views should take a new model for
 * a new query rather than see one model change every row: GTK 4.8's list
 * item manager asks for every added item of a change, which at a million
 * rows would read them all. */
OdOrderListModel *
od_order_list_model_new_for_query (OdCache       *cache,
                                   OdOrderSort    sort,
                                   gboolean       descending,
                                   OdOrderStatus  status,
                                   const char    *search)
{
  OdOrderListModel *self = g_object_new (OD_TYPE_ORDER_LIST_MODEL, NULL);

  if (search != NULL && *search == '\0')
    search = NULL;
  self->cache = cache ? g_object_ref (cache) : NULL;
  self->query.sort = sort;
  self->query.descending = descending;
  self->query.status = status;
  self->search = g_strdup (search);
  self->query.search = self->search;
  self->n_items = count_items (self);
  self->n_rows = self->n_items;
  return self;
}

OdOrderListModel *
od_order_list_model_new (OdCache *cache)
{
  OdOrderListModel *self = g_object_new (OD_TYPE_ORDER_LIST_MODEL, NULL);

  self->cache = cache ? g_object_ref (cache) : NULL;
  self->n_items = count_items (self);
  self->n_rows = self->n_items;
  return self;
}

static void
od_order_list_model_dispose (GObject *object)
{
  OdOrderListModel *self = OD_ORDER_LIST_MODEL (object);

  g_clear_handle_id (&self->recount_id, g_source_remove);
  clear_pages (self);
  g_clear_object (&self->cache);
  g_clear_pointer (&self->pending, g_hash_table_unref);
  g_clear_pointer (&self->parked, g_ptr_array_unref);

  G_OBJECT_CLASS (od_order_list_model_parent_class)->dispose (object);
}

static void
od_order_list_model_finalize (GObject *object)
{
  OdOrderListModel *self = OD_ORDER_LIST_MODEL (object);

  clear_anchors (self);
  g_array_unref (self->anchors);
  g_hash_table_unref (self->pages);
  g_free (self->search);

  G_OBJECT_CLASS (od_order_list_model_parent_class)->finalize (object);
}

static void
od_order_list_model_class_init (OdOrderListModelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_order_list_model_dispose;
  object_class->finalize = od_order_list_model_finalize;
}

static void
od_order_list_model_init (OdOrderListModel *self)
{
  self->pages = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                       (GDestroyNotify) page_free);
  self->anchors = g_array_new (FALSE, TRUE, sizeof (OdOrderCursor));
  g_queue_init (&self->lru);
  self->query.sort = OD_ORDER_SORT_UPDATED;
  self->query.descending = TRUE;
  self->query.status = OD_STATUS_NONE;
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-query.h"
#include "od-cache-private.h"
#include "od-query-private.h"
#include "od-json.h"
#include "od-sqlite.h"

#include <string.h>

#define ROW_COLUMNS \
  "order_id, customer_name, customer_email, currency, status, item_count," \
  " total_cents, version, created_at, updated_at, last_position," \
  " EXISTS (SELECT 1 FROM inconsistent_orders WHERE inconsistent_orders.order_id = orders.order_id)," \
  " refunded_cents, note_count"

#define SEARCH_CAP 2000

/* A search's first page under Updated or Created, newest first, is read
 * by walking that sort's index from the top and keeping the matches (see
 * search_head), when there are more matches than this: fewer are cheaper
 * to read whole. */
#define HEAD_WALK_MIN_MATCHES 500
/* Index entries the walk looks at before it gives up for the memo: at a
 * million orders the 100th match of a common name lies 1,800–2,700
 * entries down, and 6,000 entries take about 1 ms. */
#define HEAD_WALK_BUDGET 6000

void
od_order_row_free (OdOrderRow *row)
{
  if (row == NULL)
    return;
  g_free (row->customer_name);
  g_free (row->customer_email);
  g_free (row->currency);
  g_free (row->created_at);
  g_free (row->updated_at);
  g_free (row);
}

OdOrderRow *
od_order_row_copy (const OdOrderRow *row)
{
  OdOrderRow *copy = g_memdup2 (row, sizeof *row);

  copy->customer_name = g_strdup (row->customer_name);
  copy->customer_email = g_strdup (row->customer_email);
  copy->currency = g_strdup (row->currency);
  copy->created_at = g_strdup (row->created_at);
  copy->updated_at = g_strdup (row->updated_at);
  return copy;
}

void
od_order_cursor_clear (OdOrderCursor *cursor)
{
  g_clear_pointer (&cursor->text_key, g_free);
  cursor->valid = FALSE;
  cursor->int_key = 0;
  cursor->order_id[0] = '\0';
}

void
od_order_cursor_from_row (OdOrderCursor      *cursor,
                          const OdOrderQuery *query,
                          const OdOrderRow   *row)
{
  od_order_cursor_clear (cursor);
  cursor->valid = TRUE;
  g_strlcpy (cursor->order_id, row->order_id, sizeof cursor->order_id);
  switch (query->sort)
    {
    case OD_ORDER_SORT_UPDATED:
      cursor->text_key = g_strdup (row->updated_at);
      break;
    case OD_ORDER_SORT_CREATED:
      cursor->text_key = g_strdup (row->created_at);
      break;
    case OD_ORDER_SORT_TOTAL:
      cursor->int_key = row->total_cents;
      break;
    case OD_ORDER_SORT_CUSTOMER:
    default:
      cursor->text_key = g_strdup (row->customer_name);
      break;
    }
}

static const char *
sort_column (OdOrderSort sort)
{
  switch (sort)
    {
    case OD_ORDER_SORT_CREATED:
      return "created_at";
    case OD_ORDER_SORT_TOTAL:
      return "total_cents";
    case OD_ORDER_SORT_CUSTOMER:
      return "customer_name";
    case OD_ORDER_SORT_UPDATED:
    default:
      return "updated_at";
    }
}

/* The search text split into the parts each matcher understands.  The
 * FTS query is built from word characters only, every word quoted and
 * prefix-matched, so no text can inject FTS syntax. */
typedef struct
{
  char *fts;        /* NULL when there is no word */
  char *id_lo, *id_hi;
  char *sku_lo, *sku_hi;
} SearchParts;

static void
search_parts_clear (SearchParts *p)
{
  g_free (p->fts);
  g_free (p->id_lo);
  g_free (p->id_hi);
  g_free (p->sku_lo);
  g_free (p->sku_hi);
}

static char *
upper_bound (const char *prefix)
{
  char *hi = g_strdup (prefix);
  gsize len = strlen (hi);

  /* Both alphabets (hex-and-hyphen ids, SKU characters) are ASCII below
   * 0x7f, so incrementing the last byte gives the first string after
   * every string with this prefix. */
  hi[len - 1]++;
  return hi;
}

static void
search_parts_init (SearchParts *p,
                   const char  *text)
{
  g_autofree char *trimmed = g_strstrip (g_strdup (text));
  GString *fts = g_string_new (NULL);
  gboolean id_like = trimmed[0] != '\0';
  gboolean sku_like = trimmed[0] != '\0' && strlen (trimmed) <= 64;
  const char *p_c;

  memset (p, 0, sizeof *p);
  for (p_c = trimmed; *p_c; p_c++)
    {
      char c = *p_c;

      if (!(g_ascii_isxdigit (c) || c == '-'))
        id_like = FALSE;
      if (!(g_ascii_isalnum (c) || c == '.' || c == '_' || c == '-'))
        sku_like = FALSE;
    }
  if (id_like)
    {
      p->id_lo = g_ascii_strdown (trimmed, -1);
      p->id_hi = upper_bound (p->id_lo);
    }
  if (sku_like)
    {
      p->sku_lo = g_strdup (trimmed);
      p->sku_hi = upper_bound (p->sku_lo);
    }

  /* Words: runs of letters and digits (any script).  For an e-mail
   * address only the part before the @ counts: the domain's words are in
   * nearly every row and would make the match cost a scan. */
  {
    char *at = strchr (trimmed, '@');

    if (at != NULL && at != trimmed)
      *at = '\0';
  }
  for (p_c = trimmed; *p_c;)
    {
      const char *start;

      while (*p_c && !g_unichar_isalnum (g_utf8_get_char (p_c)))
        p_c = g_utf8_next_char (p_c);
      start = p_c;
      while (*p_c && g_unichar_isalnum (g_utf8_get_char (p_c)))
        p_c = g_utf8_next_char (p_c);
      if (p_c > start)
        {
          if (fts->len > 0)
            g_string_append_c (fts, ' ');
          g_string_append_c (fts, '"');
          g_string_append_len (fts, start, p_c - start);
          g_string_append (fts, "\"*");
        }
    }
  if (fts->len > 0)
    p->fts = g_string_free (fts, FALSE);
  else
    g_string_free (fts, TRUE);
}

static gboolean
has_search (const OdOrderQuery *query)
{
  return query->search != NULL && query->search[0] != '\0';
}

/* Builds the SQL from fixed fragments only; every value is bound:
 * ?1 status, ?2 sort key, ?3 order id of the cursor, ?4 limit, ?5 FTS
 * query, ?6/?7 id range, ?8/?9 SKU range, ?10 offset.
 *
 * With an offset, the rows to skip are counted on the sort index alone
 * (the inner SELECT of rowids is covered by the (key, order_id) index,
 * with status in front when filtered), and only the page's rows are read
 * from the table. */
static void
append_matches (GString  *sql,
                gboolean  with_fts)
{
  /* Each matcher contributes its newest SEARCH_CAP matches (rowids and
   * UUIDv7 ids grow with time), so a search costs the same at a thousand
   * orders as at a million, however common the word. */
  g_string_append (sql, "WITH m(rid) AS (");
  if (with_fts)
    g_string_append (sql, "SELECT * FROM (SELECT rowid FROM order_search"
                          " WHERE order_search MATCH ?5 ORDER BY rowid DESC"
                          " LIMIT " G_STRINGIFY (SEARCH_CAP) ") UNION ");
  g_string_append (sql,
                   "SELECT * FROM (SELECT rowid FROM orders WHERE order_id >= ?6"
                   " AND order_id < ?7 ORDER BY order_id DESC"
                   " LIMIT " G_STRINGIFY (SEARCH_CAP) ")"
                   " UNION SELECT * FROM (SELECT o.rowid FROM order_items i JOIN orders o"
                   " ON o.order_id = i.order_id WHERE i.sku >= ?8 AND i.sku < ?9"
                   " ORDER BY i.sku DESC, i.order_id DESC"
                   " LIMIT " G_STRINGIFY (SEARCH_CAP) ")");
  if (with_fts)
    g_string_append (sql, " UNION SELECT * FROM (SELECT o.rowid FROM note_search n"
                          " JOIN order_events e ON e.position = n.rowid"
                          " JOIN orders o ON o.order_id = e.order_id"
                          " WHERE note_search MATCH ?5 ORDER BY n.rowid DESC"
                          " LIMIT " G_STRINGIFY (SEARCH_CAP) ")");
  g_string_append (sql, ") ");
}

/* With use_memo, the search's matches are read from temp.od_search_hits
 * (see ensure_search_memo) instead of being searched again. */
static char *
build_sql (const OdOrderQuery *query,
           gboolean            with_cursor,
           gboolean            with_fts,
           gboolean            count_only,
           gboolean            count_from,
           gboolean            with_offset,
           gboolean            use_memo)
{
  GString *sql = g_string_new (NULL);
  const char *col = sort_column (query->sort);
  gboolean search = has_search (query);
  const char *glue = " WHERE ";
  /* A count with a cursor counts the rows listed before it, or with
   * count_from the rows from it (itself included) to the end. */
  const char *count_op = count_from ? (query->descending ? "<=" : ">=")
                                    : (query->descending ? ">" : "<");

  if (search && use_memo)
    {
      const char *dir = query->descending ? "DESC" : "ASC";

      if (count_only)
        g_string_append (sql, "SELECT count(*) FROM temp.od_search_hits");
      else
        g_string_append (sql, "SELECT " ROW_COLUMNS " FROM orders WHERE rowid IN"
                              " (SELECT rid FROM temp.od_search_hits");
      if (query->status != OD_STATUS_NONE)
        {
          g_string_append_printf (sql, "%sstatus = ?1", glue);
          glue = " AND ";
        }
      if (count_only && with_cursor)
        g_string_append_printf (sql, "%s(%s, order_id) %s (?2, ?3)", glue, col, count_op);
      if (count_only)
        return g_string_free (sql, FALSE);
      if (with_cursor)
        g_string_append_printf (sql, "%s(%s, order_id) %s (?2, ?3)", glue, col,
                                query->descending ? "<" : ">");
      g_string_append_printf (sql, " ORDER BY %s %s, order_id %s LIMIT ?4%s)"
                              " ORDER BY %s %s, order_id %s", col, dir, dir,
                              with_offset ? " OFFSET ?10" : "", col, dir, dir);
      return g_string_free (sql, FALSE);
    }
  if (search)
    append_matches (sql, with_fts);
  if (with_offset)
    g_string_append (sql, "SELECT " ROW_COLUMNS " FROM orders WHERE rowid IN (SELECT rowid FROM orders");
  if (count_only)
    g_string_append (sql, "SELECT count(*) FROM orders");
  else if (!with_offset)
    g_string_append (sql, "SELECT " ROW_COLUMNS " FROM orders");
  if (search)
    {
      g_string_append (sql, " WHERE rowid IN (SELECT rid FROM m)");
      glue = " AND ";
    }
  if (query->status != OD_STATUS_NONE)
    {
      g_string_append_printf (sql, "%sstatus = ?1", glue);
      glue = " AND ";
    }
  if (count_only && with_cursor)
    g_string_append_printf (sql, "%s(%s, order_id) %s (?2, ?3)", glue, col, count_op);
  if (count_only)
    return g_string_free (sql, FALSE);
  if (with_cursor)
    g_string_append_printf (sql, "%s(%s, order_id) %s (?2, ?3)", glue, col,
                            query->descending ? "<" : ">");
  g_string_append_printf (sql, " ORDER BY %s %s, order_id %s LIMIT ?4", col,
                          query->descending ? "DESC" : "ASC",
                          query->descending ? "DESC" : "ASC");
  if (with_offset)
    g_string_append_printf (sql, " OFFSET ?10) ORDER BY %s %s, order_id %s", col,
                            query->descending ? "DESC" : "ASC",
                            query->descending ? "DESC" : "ASC");
  return g_string_free (sql, FALSE);
}

static void
bind_search (sqlite3_stmt      *st,
             const SearchParts *parts,
             gboolean           with_fts)
{
  if (with_fts)
    sqlite3_bind_text (st, 5, parts->fts, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text (st, 6, parts->id_lo ? parts->id_lo : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text (st, 7, parts->id_hi ? parts->id_hi : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text (st, 8, parts->sku_lo ? parts->sku_lo : "", -1, SQLITE_TRANSIENT);
  sqlite3_bind_text (st, 9, parts->sku_hi ? parts->sku_hi : "", -1, SQLITE_TRANSIENT);
}

static OdOrderRow *
read_row (sqlite3_stmt *st)
{
  OdOrderRow *row = g_new0 (OdOrderRow, 1);
  const char *text;

  g_strlcpy (row->order_id, (const char *) sqlite3_column_text (st, 0) ?: "",
             sizeof row->order_id);
  row->customer_name = g_strdup ((const char *) sqlite3_column_text (st, 1));
  row->customer_email = g_strdup ((const char *) sqlite3_column_text (st, 2));
  row->currency = g_strdup ((const char *) sqlite3_column_text (st, 3));
  text = (const char *) sqlite3_column_text (st, 4);
  if (text == NULL || !od_order_status_from_name (text, &row->status))
    row->status = OD_STATUS_NONE;
  row->item_count = sqlite3_column_int64 (st, 5);
  row->total_cents = sqlite3_column_int64 (st, 6);
  row->version = sqlite3_column_int64 (st, 7);
  row->created_at = g_strdup ((const char *) sqlite3_column_text (st, 8));
  row->updated_at = g_strdup ((const char *) sqlite3_column_text (st, 9));
  row->last_position = sqlite3_column_int64 (st, 10);
  row->inconsistent = sqlite3_column_int (st, 11) != 0;
  row->refunded_cents = sqlite3_column_int64 (st, 12);
  row->note_count = sqlite3_column_int64 (st, 13);
  return row;
}

/* The matches of the last search on the cache's read connection, kept in
 * a temporary table while the cache's data stays the same.  A search is
 * one count and a page or more, each of which would otherwise search the
 * full-text index again (about 10 ms at a million orders); and a live
 * update refreshes every page on screen.  PRAGMA data_version changes
 * whenever another connection (the cache's writer) commits. */
typedef struct
{
  char   *search;
  gint64  data_version;
  gint64  count;         /* the match set's (od-search-match) only */
} SearchMemo;

static void
search_memo_free (SearchMemo *memo)
{
  g_free (memo->search);
  g_free (memo);
}

static gint64
data_version (sqlite3 *db)
{
  return od_sqlite_query_int64 (db, "PRAGMA data_version", -1);
}

static gboolean
ensure_search_memo (OdCache            *cache,
                    const OdOrderQuery *query,
                    const SearchParts  *parts,
                    gboolean            with_fts,
                    GError            **error)
{
  sqlite3 *db = od_cache_get_db (cache);
  SearchMemo *memo = g_object_get_data (G_OBJECT (cache), "od-search-memo");
  gint64 version = data_version (db);
  g_autoptr(GString) sql = NULL;
  sqlite3_stmt *st;

  if (memo != NULL && version >= 0 && memo->data_version == version
      && g_strcmp0 (memo->search, query->search) == 0)
    return TRUE;
  if (memo == NULL)
    {
      if (!od_sqlite_exec (db, "CREATE TEMP TABLE IF NOT EXISTS od_search_hits"
                               " (rid INTEGER PRIMARY KEY, status TEXT, updated_at TEXT,"
                               " created_at TEXT, total_cents INTEGER, customer_name TEXT,"
                               " order_id TEXT)", "search", error))
        return FALSE;
      memo = g_new0 (SearchMemo, 1);
      g_object_set_data_full (G_OBJECT (cache), "od-search-memo", memo,
                              (GDestroyNotify) search_memo_free);
    }
  g_clear_pointer (&memo->search, g_free);
  if (!od_sqlite_exec (db, "DELETE FROM temp.od_search_hits", "search", error))
    return FALSE;
  sql = g_string_new (NULL);
  append_matches (sql, with_fts);
  /* The sort keys come along: a page then sorts a few thousand short
   * rows here and reads only its own rows from the table. */
  g_string_append (sql, "INSERT INTO temp.od_search_hits SELECT rowid, status, updated_at,"
                        " created_at, total_cents, customer_name, order_id FROM orders"
                        " WHERE rowid IN (SELECT rid FROM m)");
  st = od_cache_prepare_read (cache, sql->str, error);
  if (st == NULL)
    return FALSE;
  bind_search (st, parts, with_fts);
  if (!od_sqlite_step_done (db, st, "search", error))
    return FALSE;
  memo->search = g_strdup (query->search);
  /* The temporary table is this connection's own: writing it does not
   * change data_version. */
  memo->data_version = version;
  return TRUE;
}

static gboolean
memo_current (OdCache            *cache,
              const OdOrderQuery *query)
{
  SearchMemo *memo = g_object_get_data (G_OBJECT (cache), "od-search-memo");
  gint64 version;

  if (memo == NULL || g_strcmp0 (memo->search, query->search) != 0)
    return FALSE;
  version = data_version (od_cache_get_db (cache));
  return version >= 0 && memo->data_version == version;
}

/* The rowids the matchers give for the last search, without reading
 * their rows, in temp.od_search_match (kept like the memo, while the
 * data stays the same).  Every rowid the full-text index gives is an
 * order's while the index is kept as the projector and the repair keep
 * it, so their number is the search's count without a status filter;
 * should the index hold an order that is gone, the memo's count (from
 * the rows) is the true one, and the list reads it after its frame. */
static gint64
ensure_match_set (OdCache            *cache,
                  const OdOrderQuery *query,
                  GError            **error)
{
  sqlite3 *db = od_cache_get_db (cache);
  SearchMemo *set = g_object_get_data (G_OBJECT (cache), "od-search-match");
  gint64 version = data_version (db);
  SearchParts parts = { 0 };
  g_autoptr(GString) sql = NULL;
  sqlite3_stmt *st;
  gboolean ok;

  if (set != NULL && version >= 0 && set->data_version == version
      && g_strcmp0 (set->search, query->search) == 0)
    return set->count;
  if (set == NULL)
    {
      if (!od_sqlite_exec (db, "CREATE TEMP TABLE IF NOT EXISTS od_search_match"
                               " (rid INTEGER PRIMARY KEY)", "search", error))
        return -1;
      set = g_new0 (SearchMemo, 1);
      g_object_set_data_full (G_OBJECT (cache), "od-search-match", set,
                              (GDestroyNotify) search_memo_free);
    }
  g_clear_pointer (&set->search, g_free);
  if (!od_sqlite_exec (db, "DELETE FROM temp.od_search_match", "search", error))
    return -1;
  search_parts_init (&parts, query->search);
  sql = g_string_new (NULL);
  append_matches (sql, parts.fts != NULL);
  g_string_append (sql, "INSERT INTO temp.od_search_match SELECT rid FROM m");
  st = od_cache_prepare_read (cache, sql->str, error);
  if (st == NULL)
    {
      search_parts_clear (&parts);
      return -1;
    }
  bind_search (st, &parts, parts.fts != NULL);
  ok = od_sqlite_step_done (db, st, "search", error);
  search_parts_clear (&parts);
  if (!ok)
    return -1;
  set->search = g_strdup (query->search);
  set->data_version = version;
  set->count = sqlite3_changes (db);
  return set->count;
}

/* Whether a search's first page may come from search_head (). */
static gboolean
head_walk_applies (const OdOrderQuery *query)
{
  return has_search (query) && query->status == OD_STATUS_NONE && query->descending
         && (query->sort == OD_ORDER_SORT_UPDATED || query->sort == OD_ORDER_SORT_CREATED);
}

/* The first `limit` rows of a search under Updated or Created, newest
 * first, before its memo is made: the sort's index is walked from the
 * top (it holds the rowid, so no row is read) and the first matches are
 * kept, then only their rows are read.  The memo would read the sort key
 * of every match first, up to 2,000 rows scattered over as many pages:
 * the most of a search's time to its frame.  NULL (no error) when the
 * walk does not apply or does not find all the rows it must within its
 * budget; the caller then reads the page through the memo, which gives
 * the same rows (/cache/search-head-is-memo-page). */
static GPtrArray *
search_head (OdCache            *cache,
             const OdOrderQuery *query,
             guint               limit,
             GError            **error)
{
  g_autoptr(GPtrArray) rows = NULL;
  g_autofree char *sql = NULL;
  const char *col = sort_column (query->sort);
  gint64 matches;
  sqlite3_stmt *st;
  int rc;

  if (!head_walk_applies (query) || memo_current (cache, query))
    return NULL;
  matches = ensure_match_set (cache, query, error);
  if (matches < 0)
    return NULL;
  if (matches <= HEAD_WALK_MIN_MATCHES)
    return NULL;
  /* The index is named: without it (dropped for a bulk catch-up) the
   * walk would sort the whole table.  The outer ORDER BY takes the first
   * matches by the sort whatever order the walk hands them over in. */
  sql = g_strdup_printf ("SELECT " ROW_COLUMNS " FROM orders WHERE rowid IN"
                         " (SELECT rowid FROM (SELECT rowid, %s, order_id FROM orders"
                         " INDEXED BY %s ORDER BY %s DESC, order_id DESC LIMIT ?1)"
                         " WHERE rowid IN (SELECT rid FROM temp.od_search_match)"
                         " ORDER BY %s DESC, order_id DESC LIMIT ?2)"
                         " ORDER BY %s DESC, order_id DESC",
                         col, query->sort == OD_ORDER_SORT_CREATED ? "orders_created" : "orders_updated",
                         col, col, col);
  st = od_cache_prepare_read (cache, sql, NULL);
  if (st == NULL)
    return NULL;
  sqlite3_bind_int64 (st, 1, HEAD_WALK_BUDGET);
  sqlite3_bind_int64 (st, 2, limit);
  rows = g_ptr_array_new_with_free_func ((GDestroyNotify) od_order_row_free);
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    g_ptr_array_add (rows, read_row (st));
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, od_cache_get_db (cache), "order list");
      return NULL;
    }
  /* Fewer than the page could hold, and not every match: the rest lie
   * beyond the budget (or the index names an order that is gone). */
  if (rows->len < MIN ((gint64) limit, matches))
    return NULL;
  return g_steal_pointer (&rows);
}

/* On the cache's read connection (db NULL: the statement is kept there,
 * do not finalize it) or on a connection of the caller's (a new
 * statement, to be finalized). */
static sqlite3_stmt *
prepare_list (OdCache             *cache,
              sqlite3             *db,
              const OdOrderQuery  *query,
              const OdOrderCursor *cursor,
              gint64               limit,
              gboolean             count_only,
              gboolean             count_from,
              gint64               offset,
              SearchParts         *parts,
              GError             **error)
{
  gboolean with_cursor = cursor != NULL && cursor->valid;
  gboolean with_fts = FALSE;
  gboolean use_memo = FALSE;
  g_autofree char *sql = NULL;
  sqlite3_stmt *st;

  if (has_search (query))
    {
      search_parts_init (parts, query->search);
      with_fts = parts->fts != NULL;
      /* Only on the cache's own read connection: a worker's connection
       * cannot see that connection's temporary table. */
      if (db == NULL)
        {
          if (!ensure_search_memo (cache, query, parts, with_fts, error))
            return NULL;
          use_memo = TRUE;
        }
    }
  sql = build_sql (query, with_cursor, with_fts, count_only, count_from, offset >= 0, use_memo);
  if (db == NULL)
    st = od_cache_prepare_read (cache, sql, error);
  else
    st = od_sqlite_prepare (db, sql, error);
  if (st == NULL)
    return NULL;
  if (query->status != OD_STATUS_NONE)
    sqlite3_bind_text (st, 1, od_order_status_name (query->status), -1, SQLITE_STATIC);
  if (with_cursor)
    {
      if (query->sort == OD_ORDER_SORT_TOTAL)
        sqlite3_bind_int64 (st, 2, cursor->int_key);
      else
        sqlite3_bind_text (st, 2, cursor->text_key ? cursor->text_key : "", -1,
                           SQLITE_TRANSIENT);
      sqlite3_bind_text (st, 3, cursor->order_id, -1, SQLITE_TRANSIENT);
    }
  if (!count_only)
    sqlite3_bind_int64 (st, 4, limit);
  if (offset >= 0)
    sqlite3_bind_int64 (st, 10, offset);
  if (has_search (query) && !use_memo)
    bind_search (st, parts, with_fts);
  return st;
}

/* One page of rows, after a keyset cursor or at an offset (-1: none). */
static GPtrArray *
list_rows (OdCache             *cache,
           const OdOrderQuery  *query,
           const OdOrderCursor *cursor,
           guint                limit,
           gint64               offset,
           GError             **error)
{
  SearchParts parts = { 0 };
  g_autoptr(GPtrArray) rows = NULL;
  sqlite3_stmt *st;
  int rc;

  if ((cursor == NULL || !cursor->valid) && offset < 0)
    {
      g_autoptr(GError) walk_error = NULL;

      rows = search_head (cache, query, limit, &walk_error);
      if (rows != NULL)
        return g_steal_pointer (&rows);
      /* The memo's way reports what went wrong, if anything still does. */
    }
  rows = g_ptr_array_new_with_free_func ((GDestroyNotify) od_order_row_free);
  st = prepare_list (cache, NULL, query, cursor, limit, FALSE, FALSE, offset, &parts, error);
  if (st == NULL)
    {
      search_parts_clear (&parts);
      return NULL;
    }
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    g_ptr_array_add (rows, read_row (st));
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  search_parts_clear (&parts);
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, od_cache_get_db (cache), "order list");
      return NULL;
    }
  return g_steal_pointer (&rows);
}

GPtrArray *
od_query_orders (OdCache             *cache,
                 const OdOrderQuery  *query,
                 const OdOrderCursor *cursor,
                 guint                limit,
                 GError             **error)
{
  return list_rows (cache, query, cursor, limit, -1, error);
}

GPtrArray *
od_query_orders_at (OdCache            *cache,
                    const OdOrderQuery *query,
                    guint64             offset,
                    guint               limit,
                    GError            **error)
{
  return list_rows (cache, query, NULL, limit, (gint64) MIN (offset, (guint64) G_MAXINT64), error);
}

/* The rows of `query` (all, with no cursor), before `cursor`, or with
 * count_from those from it to the end. */
static gint64
count_by_cursor (OdCache             *cache,
                 const OdOrderQuery  *query,
                 const OdOrderCursor *cursor,
                 gboolean             count_from,
                 const char          *what,
                 GError             **error)
{
  SearchParts parts = { 0 };
  sqlite3_stmt *st;
  gint64 n = -1;

  st = prepare_list (cache, NULL, query, cursor, 0, TRUE, count_from, -1, &parts, error);
  search_parts_clear (&parts);
  if (st == NULL)
    return -1;
  if (sqlite3_step (st) == SQLITE_ROW)
    n = sqlite3_column_int64 (st, 0);
  else
    od_sqlite_set_error (error, od_cache_get_db (cache), what);
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  return n;
}

gint64
od_query_count_orders (OdCache             *cache,
                       const OdOrderQuery  *query,
                       GError             **error)
{
  if (!has_search (query))
    {
      gint64 counts[OD_STATUS_N];

      if (!od_cache_get_status_counts (cache, counts, error))
        return -1;
      return counts[query->status < OD_STATUS_N ? query->status : 0];
    }
  return count_by_cursor (cache, query, NULL, FALSE, "order count", error);
}

static gboolean
order_position (OdCache            *cache,
                const OdOrderQuery *query,
                const char         *order_id,
                gint64              near,
                gint64             *position,
                GError            **error)
{
  g_autofree char *key_sql = NULL;
  OdOrderCursor cursor = { 0 };
  sqlite3_stmt *st;
  gint64 total = -1;
  gint64 n;
  int rc;

  /* The order's sort key as the cache has it now: the row shown may be
   * older. */
  key_sql = g_strdup_printf ("SELECT %s FROM orders WHERE order_id = ?1",
                             sort_column (query->sort));
  st = od_cache_prepare_read (cache, key_sql, error);
  if (st == NULL)
    return FALSE;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_TRANSIENT);
  rc = sqlite3_step (st);
  if (rc == SQLITE_ROW)
    {
      cursor.valid = TRUE;
      g_strlcpy (cursor.order_id, order_id, sizeof cursor.order_id);
      if (query->sort == OD_ORDER_SORT_TOTAL)
        cursor.int_key = sqlite3_column_int64 (st, 0);
      else
        cursor.text_key = g_strdup ((const char *) sqlite3_column_text (st, 0));
    }
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (rc == SQLITE_DONE)
    return TRUE;
  if (rc != SQLITE_ROW)
    {
      od_sqlite_set_error (error, od_cache_get_db (cache), "order position");
      return FALSE;
    }

  /* The count walks the sort index from one end to the order: from the
   * end when the order is likely nearer to it.  The rows before it are
   * then all rows less those from it on (which hold it only if the query
   * lists it), so the answer is the same either way. */
  if (near >= 0)
    {
      total = od_query_count_orders (cache, query, error);
      if (total < 0)
        {
          od_order_cursor_clear (&cursor);
          return FALSE;
        }
    }
  if (total >= 0 && near > total / 2)
    {
      n = count_by_cursor (cache, query, &cursor, TRUE, "order position", error);
      if (n >= 0)
        n = total - n;
    }
  else
    n = count_by_cursor (cache, query, &cursor, FALSE, "order position", error);
  od_order_cursor_clear (&cursor);
  if (n < 0)
    return FALSE;
  *position = n;
  return TRUE;
}

gboolean
od_query_order_position (OdCache            *cache,
                         const OdOrderQuery *query,
                         const char         *order_id,
                         gint64              near,
                         gint64             *position,
                         GError            **error)
{
  sqlite3 *db = od_cache_get_db (cache);
  gboolean own_snapshot = FALSE;
  gboolean ok;

  *position = -1;
  /* The count of all rows and the count from the order must see the same
   * rows. */
  if (near >= 0 && sqlite3_get_autocommit (db))
    {
      if (!od_query_snapshot_begin (cache, error))
        return FALSE;
      own_snapshot = TRUE;
    }
  ok = order_position (cache, query, order_id, near, position, error);
  if (own_snapshot)
    od_query_snapshot_end (cache);
  return ok;
}

gint64
od_query_count_orders_quick (OdCache             *cache,
                             const OdOrderQuery  *query,
                             gboolean            *exact,
                             GError             **error)
{
  g_autoptr(GError) local_error = NULL;
  gint64 n;

  *exact = TRUE;
  if (!head_walk_applies (query) || memo_current (cache, query))
    return od_query_count_orders (cache, query, error);
  n = ensure_match_set (cache, query, &local_error);
  if (n < 0)
    return od_query_count_orders (cache, query, error);
  *exact = FALSE;
  return n;
}

gboolean
od_query_inconsistency (OdCache     *cache,
                        const char  *order_id,
                        gint64      *version,
                        gint64      *position,
                        char       **reason,
                        GError     **error)
{
  sqlite3_stmt *st;
  gboolean found;

  st = od_cache_prepare_read (cache,
                              "SELECT version, position, reason FROM inconsistent_orders"
                              " WHERE order_id = ?",
                              error);
  if (st == NULL)
    return FALSE;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_TRANSIENT);
  found = sqlite3_step (st) == SQLITE_ROW;
  if (found)
    {
      if (version != NULL)
        *version = sqlite3_column_int64 (st, 0);
      if (position != NULL)
        *position = sqlite3_column_int64 (st, 1);
      if (reason != NULL)
        *reason = g_strdup ((const char *) sqlite3_column_text (st, 2));
    }
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  return found;
}

gint64
od_query_count_inconsistent (OdCache  *cache,
                             GError  **error)
{
  sqlite3_stmt *st = od_cache_prepare_read (cache, "SELECT count(*) FROM inconsistent_orders",
                                            error);
  gint64 n = -1;

  if (st == NULL)
    return -1;
  if (sqlite3_step (st) == SQLITE_ROW)
    n = sqlite3_column_int64 (st, 0);
  sqlite3_reset (st);
  return n;
}

void
od_query_order_from_row (OdOrder      *order,
                         sqlite3_stmt *st)
{
  order->customer_name = g_strdup ((const char *) sqlite3_column_text (st, 0));
  order->customer_email = g_strdup ((const char *) sqlite3_column_text (st, 1));
  order->currency = g_strdup ((const char *) sqlite3_column_text (st, 2));
  od_order_status_from_name ((const char *) sqlite3_column_text (st, 3), &order->status);
  order->version = sqlite3_column_int64 (st, 4);
  order->created_at = g_strdup ((const char *) sqlite3_column_text (st, 5));
  order->updated_at = g_strdup ((const char *) sqlite3_column_text (st, 6));
  order->last_position = sqlite3_column_int64 (st, 7);
  order->carrier = g_strdup ((const char *) sqlite3_column_text (st, 8));
  order->tracking_number = g_strdup ((const char *) sqlite3_column_text (st, 9));
  order->cancel_reason = g_strdup ((const char *) sqlite3_column_text (st, 10));
  order->refunded_cents = sqlite3_column_int64 (st, 11);
  order->note_count = sqlite3_column_int64 (st, 12);
}

OdLine *
od_query_line_from_row (sqlite3_stmt *st)
{
  OdLine *line = g_new0 (OdLine, 1);

  line->sku = g_strdup ((const char *) sqlite3_column_text (st, 0));
  line->name = g_strdup ((const char *) sqlite3_column_text (st, 1));
  line->quantity = sqlite3_column_int64 (st, 2);
  line->unit_price_cents = sqlite3_column_int64 (st, 3);
  return line;
}

OdOrder *
od_query_order (OdCache     *cache,
                const char  *order_id,
                GError     **error)
{
  g_autoptr(OdOrder) order = NULL;
  sqlite3_stmt *st;
  int rc;

  st = od_cache_prepare_read (cache,
                              "SELECT " OD_QUERY_ORDER_COLUMNS " FROM orders WHERE order_id = ?",
                              error);
  if (st == NULL)
    return NULL;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_TRANSIENT);
  rc = sqlite3_step (st);
  if (rc == SQLITE_ROW)
    {
      order = od_order_new (order_id);
      od_query_order_from_row (order, st);
    }
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (rc != SQLITE_ROW)
    {
      if (rc != SQLITE_DONE)
        od_sqlite_set_error (error, od_cache_get_db (cache), "order");
      return NULL;
    }

  st = od_cache_prepare_read (cache,
                              "SELECT " OD_QUERY_LINE_COLUMNS " FROM order_items"
                              " WHERE order_id = ? ORDER BY line_no",
                              error);
  if (st == NULL)
    return NULL;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_TRANSIENT);
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    g_ptr_array_add (order->lines, od_query_line_from_row (st));
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, od_cache_get_db (cache), "order lines");
      return NULL;
    }
  return g_steal_pointer (&order);
}

GPtrArray *
od_query_timeline (OdCache     *cache,
                   const char  *order_id,
                   GError     **error)
{
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  sqlite3_stmt *st;
  int rc;

  st = od_cache_prepare_read (cache,
                              "SELECT position, prev, version, type, recorded_at, actor, data"
                              " FROM order_events WHERE order_id = ? ORDER BY version, position",
                              error);
  if (st == NULL)
    return NULL;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_TRANSIENT);
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      OdEvent *ev = od_event_new ();

      ev->position = sqlite3_column_int64 (st, 0);
      ev->prev = sqlite3_column_int64 (st, 1);
      g_strlcpy (ev->order_id, order_id, sizeof ev->order_id);
      ev->version = sqlite3_column_int64 (st, 2);
      ev->type = g_strdup ((const char *) sqlite3_column_text (st, 3));
      ev->recorded_at = g_strdup ((const char *) sqlite3_column_text (st, 4));
      ev->actor = g_strdup ((const char *) sqlite3_column_text (st, 5));
      ev->data = g_strdup ((const char *) sqlite3_column_text (st, 6));
      g_ptr_array_add (events, ev);
    }
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, od_cache_get_db (cache), "timeline");
      return NULL;
    }
  return g_steal_pointer (&events);
}

OdOrder *
od_query_order_at (OdCache     *cache,
                   const char  *order_id,
                   gint64       position,
                   GError     **error)
{
  g_autoptr(GPtrArray) events = od_query_timeline (cache, order_id, error);
  g_autoptr(OdOrder) order = NULL;
  gint64 broken_at = G_MAXINT64;

  if (events == NULL)
    return NULL;
  /* Events from the first one that broke the protocol on were never
   * applied: no past state is made of them either. */
  if (!od_query_inconsistency (cache, order_id, NULL, &broken_at, NULL, error)
      && error != NULL && *error != NULL)
    return NULL;
  order = od_order_new (order_id);
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);

      if (ev->position > position || ev->position >= broken_at)
        break;
      od_order_apply (order, ev->type, od_event_get_data (ev), ev->version, ev->position,
                      ev->recorded_at);
    }
  if (order->version == 0)
    return NULL;
  return g_steal_pointer (&order);
}

/* Whether the text at `p` would start a formula in a spreadsheet: = + -
 * @, and a tab or carriage return, which some strip before looking. */
static gboolean
csv_formula_start (const char *p)
{
  return *p != '\0' && strchr ("=+-@\t\r", *p) != NULL;
}

static void
csv_field (GString    *out,
           const char *value)
{
  const char *v = value ? value : "";
  gboolean guard = csv_formula_start (v);

  /* Customer text must stay inert in a spreadsheet: a ' goes in front of
   * a formula start, at the beginning of the field and after each ';'
   * (spaces skipped), as spreadsheets that split on ';' ignore the
   * quotes of a field that does not start the line and read
   * "x;=cmd(...)" as a cell "=cmd(...)". */
  for (const char *p = strchr (v, ';'); p != NULL && !guard; p = strchr (p + 1, ';'))
    {
      const char *q = p + 1;

      while (*q == ' ')
        q++;
      guard = csv_formula_start (q);
    }
  if (!guard && strpbrk (v, ",\"\r\n") == NULL)
    {
      g_string_append (out, v);
      return;
    }
  g_string_append_c (out, '"');
  if (csv_formula_start (v))
    g_string_append_c (out, '\'');
  for (const char *p = v; *p; p++)
    {
      if (*p == '"')
        g_string_append_c (out, '"');
      g_string_append_c (out, *p);
      if (*p == ';')
        {
          const char *q = p + 1;

          while (*q == ' ')
            g_string_append_c (out, *q++);
          if (csv_formula_start (q))
            g_string_append_c (out, '\'');
          p = q - 1;
        }
    }
  g_string_append_c (out, '"');
}

/* The sync state as `db` sees it (within the caller's transaction). */
static gboolean
read_sync_state (sqlite3     *db,
                 OdSyncState *state,
                 GError     **error)
{
  sqlite3_stmt *st = NULL;
  int rc;

  memset (state, 0, sizeof *state);
  st = od_sqlite_prepare (db, "SELECT applied_position, last_event_at, server_url"
                              " FROM sync_state WHERE id = 1", error);
  if (st == NULL)
    return FALSE;
  rc = sqlite3_step (st);
  if (rc == SQLITE_ROW)
    {
      state->applied_position = sqlite3_column_int64 (st, 0);
      state->last_event_at = sqlite3_column_int64 (st, 1);
      state->server_url = g_strdup ((const char *) sqlite3_column_text (st, 2));
    }
  sqlite3_finalize (st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, db, "sync state");
      return FALSE;
    }
  return TRUE;
}

/* The export on `db`: the cache's read connection (own_db FALSE, main
 * thread) or one the caller opened for a worker thread. */
static gboolean
export_csv (OdCache            *cache,
            sqlite3            *db,
            gboolean            own_db,
            const OdOrderQuery *query,
            OdExportFlags       flags,
            GOutputStream      *stream,
            GCancellable       *cancellable,
            GError            **error)
{
  OdSyncState state = { 0 };
  g_autoptr(GString) out = g_string_new (NULL);
  g_autofree char *as_of = NULL;
  SearchParts parts = { 0 };
  sqlite3_stmt *st;
  gboolean ok = FALSE;
  int rc;

  /* One read transaction: the stamp and the rows are the same snapshot. */
  if (!od_sqlite_exec (db, "BEGIN", "export", error))
    return FALSE;
  if (!read_sync_state (db, &state, error))
    goto out;
  if (flags & OD_EXPORT_PROVENANCE)
    {
      g_autofree char *now = od_timestamp_now ();

      as_of = state.last_event_at > 0 ? od_timestamp_format (state.last_event_at)
                                      : g_strdup ("never");
      g_string_append_printf (out,
                              "# orderdesk export: data as of position %" G_GINT64_FORMAT
                              ", last event at %s, exported %s",
                              state.applied_position, as_of, now);
      if (state.server_url)
        g_string_append_printf (out, ", server %s", state.server_url);
      g_string_append (out, "\r\n");
    }
  g_string_append (out,
                   "order_id,customer_name,customer_email,currency,status,item_count,"
                   "total_cents,version,created_at,updated_at,last_position,note_count,"
                   "refunded_cents\r\n");

  st = prepare_list (cache, own_db ? db : NULL, query, NULL, G_MAXINT64, FALSE, FALSE, -1, &parts,
                     error);
  if (st == NULL)
    goto out;
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      g_autoptr(OdOrderRow) row = read_row (st);

      csv_field (out, row->order_id);
      g_string_append_c (out, ',');
      csv_field (out, row->customer_name);
      g_string_append_c (out, ',');
      csv_field (out, row->customer_email);
      g_string_append_c (out, ',');
      csv_field (out, row->currency);
      g_string_append_printf (out, ",%s,%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT
                              ",%" G_GINT64_FORMAT ",",
                              od_order_status_name (row->status), row->item_count,
                              row->total_cents, row->version);
      csv_field (out, row->created_at);
      g_string_append_c (out, ',');
      csv_field (out, row->updated_at);
      /* Columns added later go at the end: readers by position keep working. */
      g_string_append_printf (out, ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT
                              "\r\n", row->last_position, row->note_count, row->refunded_cents);
      if (out->len > 256 * 1024)
        {
          if (!g_output_stream_write_all (stream, out->str, out->len, NULL, cancellable, error))
            {
              rc = SQLITE_ABORT;
              break;
            }
          g_string_truncate (out, 0);
        }
    }
  if (own_db)
    sqlite3_finalize (st);
  else
    {
      sqlite3_reset (st);
      sqlite3_clear_bindings (st);
    }
  if (rc == SQLITE_ABORT)
    goto out;
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, db, "export");
      goto out;
    }
  ok = g_output_stream_write_all (stream, out->str, out->len, NULL, cancellable, error);

out:
  search_parts_clear (&parts);
  od_sync_state_clear (&state);
  od_sqlite_exec (db, "COMMIT", NULL, NULL);
  return ok;
}

gboolean
od_query_export_csv (OdCache             *cache,
                     const OdOrderQuery  *query,
                     GOutputStream       *stream,
                     GCancellable        *cancellable,
                     GError             **error)
{
  return export_csv (cache, od_cache_get_db (cache), FALSE, query, OD_EXPORT_NONE, stream,
                     cancellable, error);
}

gboolean
od_query_export_csv_full (OdCache             *cache,
                          const OdOrderQuery  *query,
                          OdExportFlags        flags,
                          GOutputStream       *stream,
                          GCancellable        *cancellable,
                          GError             **error)
{
  return export_csv (cache, od_cache_get_db (cache), FALSE, query, flags, stream, cancellable,
                     error);
}

typedef struct
{
  char          *path;
  OdOrderQuery   query;
  char          *search;
  GOutputStream *stream;
} ExportData;

static void
export_data_free (ExportData *d)
{
  g_free (d->path);
  g_free (d->search);
  g_clear_object (&d->stream);
  g_free (d);
}

static void
export_thread (GTask        *task,
               gpointer      source,
               gpointer      task_data,
               GCancellable *cancellable)
{
  ExportData *d = task_data;
  GError *error = NULL;
  sqlite3 *db = NULL;

  /* A connection of its own: the cache's read connection belongs to the
   * main thread, and in WAL mode this reader neither waits for the
   * writer nor holds it up. */
  if (sqlite3_open_v2 (d->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL)
      != SQLITE_OK)
    {
      od_sqlite_set_error (&error, db, "export");
      sqlite3_close (db);
      g_task_return_error (task, error);
      return;
    }
  sqlite3_busy_timeout (db, 5000);
  if (export_csv (NULL, db, TRUE, &d->query, OD_EXPORT_NONE, d->stream, cancellable, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
  sqlite3_close (db);
}

void
od_query_export_csv_async (OdCache             *cache,
                           const OdOrderQuery  *query,
                           GOutputStream       *stream,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (cache, cancellable, callback, user_data);
  ExportData *d = g_new0 (ExportData, 1);

  g_task_set_source_tag (task, od_query_export_csv_async);
  d->path = g_strdup (od_cache_get_path (cache));
  d->query = *query;
  d->search = g_strdup (query->search);
  d->query.search = d->search;
  d->stream = g_object_ref (stream);
  g_task_set_task_data (task, d, (GDestroyNotify) export_data_free);
  g_task_run_in_thread (task, export_thread);
}

gboolean
od_query_export_csv_finish (OdCache       *cache,
                            GAsyncResult  *result,
                            GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, cache), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

gboolean
od_query_snapshot_begin (OdCache  *cache,
                         GError  **error)
{
  sqlite3 *db = od_cache_get_db (cache);

  g_return_val_if_fail (db != NULL, FALSE);
  g_return_val_if_fail (sqlite3_get_autocommit (db), FALSE);

  /* A deferred transaction takes its snapshot at the first read. */
  return od_sqlite_exec (db, "BEGIN DEFERRED", "read snapshot", error);
}

void
od_query_snapshot_end (OdCache *cache)
{
  sqlite3 *db = od_cache_get_db (cache);

  if (db != NULL && !sqlite3_get_autocommit (db))
    od_sqlite_exec (db, "COMMIT", "read snapshot", NULL);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-cache.h"
#include "od-order.h"

G_BEGIN_DECLS

/* Queries for the screens.  All run on the cache's read connection, on
 * the thread that opened the cache; each is an indexed lookup (a page of
 * 100 at a million orders is well under a millisecond). */

typedef enum
{
  OD_ORDER_SORT_UPDATED,  /* updated_at */
  OD_ORDER_SORT_CREATED,  /* created_at */
  OD_ORDER_SORT_TOTAL,    /* total_cents */
  OD_ORDER_SORT_CUSTOMER, /* customer_name */
} OdOrderSort;

/* One row of the order list. */
typedef struct
{
  char          order_id[37];
  char         *customer_name;
  char         *customer_email;
  char         *currency;
  OdOrderStatus status;
  gint64        item_count;
  gint64        total_cents;
  gint64        version;
  char         *created_at;
  char         *updated_at;
  gint64        last_position;
  /* The server sent this order an event that breaks the protocol: the
   * row is the order as of its last event before that one. */
  gboolean      inconsistent;
  gint64        refunded_cents;
  gint64        note_count;
} OdOrderRow;

void        od_order_row_free (OdOrderRow *row);
OdOrderRow *od_order_row_copy (const OdOrderRow *row);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdOrderRow, od_order_row_free)

typedef struct
{
  OdOrderSort   sort;
  gboolean      descending;   /* default for UPDATED/CREATED/TOTAL in the GUI */
  OdOrderStatus status;       /* OD_STATUS_NONE = all statuses */
  const char   *search;       /* NULL/"" = no search; see below */
} OdOrderQuery;

/* Keyset cursor: the sort key and order id of the last row of the
 * previous page.  Fill it with od_order_cursor_from_row(). */
typedef struct
{
  gboolean valid;   /* FALSE = start from the top */
  gint64   int_key; /* total_cents for TOTAL */
  char    *text_key;/* updated_at / created_at / customer_name */
  char     order_id[37];
} OdOrderCursor;

void od_order_cursor_from_row (OdOrderCursor    *cursor,
                               const OdOrderQuery *query,
                               const OdOrderRow *row);
void od_order_cursor_clear    (OdOrderCursor    *cursor);

/* Up to `limit` rows after `cursor` (NULL or !valid = first page), in the
 * query's order; ties broken by order_id.  Returns a GPtrArray of
 * OdOrderRow (free func set).
 *
 * Search: the text is matched as an order id prefix (hex and hyphens),
 * as word prefixes of the customer name or e-mail (FTS5, every word must
 * match), as word prefixes of one of the order's notes (FTS5), and as a
 * SKU prefix of any line; an order matching any of the four is returned.  Each matcher contributes its 2,000 newest matches,
 * which keeps every search fast however common the word (search for
 * more words to narrow it). */
GPtrArray  *od_query_orders        (OdCache             *cache,
                                    const OdOrderQuery  *query,
                                    const OdOrderCursor *cursor,
                                    guint                limit,
                                    GError             **error);

/* Up to `limit` rows starting at row `offset` (0-based) of the query's
 * order: the rows od_query_orders() would give after walking `offset`
 * rows, without the walk.  The skipped rows are counted on the sort
 * index only (see docs/benchmarks.md for the cost at 1M orders);
 * use it to jump, and keyset cursors to page on from there. */
GPtrArray  *od_query_orders_at     (OdCache             *cache,
                                    const OdOrderQuery  *query,
                                    guint64              offset,
                                    guint                limit,
                                    GError             **error);

/* Number of rows the query would list: from status_counts without search
 * (no scan), else counted (at most 2,000 matches from each of the four
 * matchers). */
gint64      od_query_count_orders  (OdCache             *cache,
                                    const OdOrderQuery  *query,
                                    GError             **error);

/* How many rows of the query come before `order_id` (its row number,
 * 0-based) by the order's sort key in the cache now.  The rows are
 * counted on the sort index from the top to the order, or, when `near`
 * (a guess at the answer; -1: none) lies in the second half, from the
 * order to the end: it costs as many index entries as it walks (see
 * docs/benchmarks.md).  *position is -1 when the order is not in the
 * cache.  An order the query does not list gets the place it would have
 * among its rows. */
gboolean    od_query_order_position (OdCache            *cache,
                                     const OdOrderQuery *query,
                                     const char         *order_id,
                                     gint64              near,
                                     gint64             *position,
                                     GError            **error);

/* The count for a search's first frame: like od_query_count_orders(),
 * but for a search that od_query_orders() can start without its memo
 * (no status filter, Updated or Created newest first) the number of
 * matches without reading their rows.  That number is the count unless
 * the full-text index names an order that is gone (*exact FALSE: ask
 * od_query_count_orders() after the frame). */
gint64      od_query_count_orders_quick (OdCache             *cache,
                                         const OdOrderQuery  *query,
                                         gboolean            *exact,
                                         GError             **error);

/* One order with its lines (od_order_* from src/protocol), as the cache
 * has it now; NULL with no error when the order is unknown. */
OdOrder    *od_query_order         (OdCache             *cache,
                                    const char          *order_id,
                                    GError             **error);

/* Whether the server sent `order_id` an event that breaks the protocol
 * (a version gap, a transition its status does not allow).  If so, the
 * cache shows it as of *version, *position is the first such event (it
 * and later events of the order are kept, not applied) and *reason says
 * what was wrong (free it).  Any out argument may be NULL.  FALSE with
 * *error unset: the order is consistent. */
gboolean    od_query_inconsistency (OdCache             *cache,
                                    const char          *order_id,
                                    gint64              *version,
                                    gint64              *position,
                                    char               **reason,
                                    GError             **error);
/* How many orders are inconsistent in that sense; -1 on error. */
gint64      od_query_count_inconsistent (OdCache        *cache,
                                         GError        **error);

/* The order's events, oldest first (OdEvent with data as JSON text). */
GPtrArray  *od_query_timeline      (OdCache             *cache,
                                    const char          *order_id,
                                    GError             **error);

/* The order as it was right after its event at `position`, folded with
 * od_order_apply() from the local events. */
OdOrder    *od_query_order_at      (OdCache             *cache,
                                    const char          *order_id,
                                    gint64               position,
                                    GError             **error);

typedef enum
{
  OD_EXPORT_NONE       = 0,
  /* A first line stamping what the data is as of:
   *
   *   # orderdesk export: data as of position P, last event at T, exported NOW, server URL
   *
   * (T is "never" for an empty cache; ", server URL" only when the cache
   * knows its server).  Not CSV: standard readers take it for the header. */
  OD_EXPORT_PROVENANCE = 1 << 0,
} OdExportFlags;

/* Writes the query's rows as plain CSV (RFC 4180, CRLF line ends) to
 * `stream`, all rows, not only a page, from one read snapshot: the header
 * line "order_id,customer_name,customer_email,currency,status,item_count,
 * total_cents,version,created_at,updated_at,last_position,note_count,
 * refunded_cents" and a line per
 * order.  Text that a spreadsheet would run as a formula (starting with
 * = + - @, a tab or a carriage return, at the start of the field or after
 * a ';') gets a ' in front and is quoted.  Runs on the cache's read
 * connection. */
gboolean    od_query_export_csv    (OdCache             *cache,
                                    const OdOrderQuery  *query,
                                    GOutputStream       *stream,
                                    GCancellable        *cancellable,
                                    GError             **error);
/* The same with flags. */
gboolean    od_query_export_csv_full (OdCache             *cache,
                                      const OdOrderQuery  *query,
                                      OdExportFlags        flags,
                                      GOutputStream       *stream,
                                      GCancellable        *cancellable,
                                      GError             **error);

/* The same on a worker thread with a read connection of its own, so a
 * million-row export never blocks the caller's main loop.  The query is
 * copied; `stream` is written from the worker and must not be used until
 * the callback (which runs in the caller's thread-default main context).
 * The stream is not closed. */
void        od_query_export_csv_async  (OdCache             *cache,
                                        const OdOrderQuery  *query,
                                        GOutputStream       *stream,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data);
gboolean    od_query_export_csv_finish (OdCache             *cache,
                                        GAsyncResult        *result,
                                        GError             **error);

/* Reads that must agree with each other (a count and the pages read after
 * it) come from one snapshot: between these two calls, reads on the
 * cache's main-thread connection see nothing the writer commits meanwhile
 * (one read transaction; WAL keeps the snapshot).  Not nestable, and to be
 * kept short: the WAL cannot be checkpointed past an open snapshot. */
gboolean      od_query_snapshot_begin  (OdCache            *cache,
                                        GError            **error);
void          od_query_snapshot_end    (OdCache            *cache);

G_END_DECLS

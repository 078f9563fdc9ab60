/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>
#include <sqlite3.h>

#include "od-event.h"

G_BEGIN_DECLS

/* The cache's own refusals.  A failure of SQLite or of the file itself
 * stays a G_IO_ERROR (od-sqlite.h: NO_SPACE for a full disk,
 * INVALID_DATA for a damaged file), as other I/O errors do. */
#define OD_CACHE_ERROR (od_cache_error_quark ())
GQuark od_cache_error_quark (void);

typedef enum
{
  OD_CACHE_ERROR_BUSY,   /* another process is this cache's writer */
  OD_CACHE_ERROR_CLOSED, /* the cache was closed before the job ran */
} OdCacheError;

/* The local read cache: one SQLite file per server profile, WAL mode.
 *
 * Tables (names and columns are part of the offline/export contract):
 *   orders(order_id PK, customer_name, customer_email, currency, status,
 *          item_count, total_cents, version, created_at, updated_at,
 *          last_position, carrier, tracking_number, cancel_reason,
 *          refunded_cents, note_count)
 *   order_items(order_id, sku, name, quantity, unit_price_cents, line_no)
 *   order_events(position PK, prev, order_id, version, type, recorded_at,
 *                actor, data)  -- every event, known types or not
 *   sync_state(id = 1, applied_position, known_head, last_contact_at,
 *              last_event_at, server_url)
 *   status_counts(status PK, n)  -- maintained by triggers on orders
 *   pending_commands(...)         -- the outbox, see od-outbox.h
 *   order_search                  -- FTS5 over customer name and email
 *   note_search                   -- FTS5 over note texts, rowid = position
 *   verify_runs(id, verified_at, after_position, upto_position,
 *               events_checked, result, report)  -- see od-verify.h
 *
 * Threads: an OdCache has one connection for reads, used on the thread
 * that opened it (the main thread in the console), and a writer thread
 * with its own connection that applies events and runs outbox writes.
 * Reads never wait for the writer (WAL).  Signals are emitted on the main
 * context of the thread that called od_cache_open().
 *
 * Several processes may open one cache (the console and orderdeskctl):
 * see od_cache_is_writer().  The file, its -wal and -shm and PATH.lock
 * are created 0600 (they hold customer names and e-mail addresses).
 *
 * Signals:
 *   "applied" (gint64 applied_position): after each commit that moved the
 *       applied position; the views now reflect every event up to it.
 *   "reset" (): after a rebuild dropped the views (lists must reload).
 *   "outbox-changed" (): after a commit that changed pending_commands.
 *   "write-failed" (GError*): the writer could not commit (e.g. disk full);
 *       nothing of that batch was applied; the sync engine retries later.
 */

#define OD_CACHE_SCHEMA_VERSION 6

/* Times in the cache are text in RFC 3339 UTC with milliseconds (as the
 * server sends them) for event times, and integer µs since the epoch for
 * local times (last_contact_at, outbox times). */
typedef struct
{
  gint64 applied_position;
  gint64 applied_prev_unused; /* reserved, 0 */
  gint64 known_head;
  gint64 last_contact_at;     /* µs, 0 = never */
  gint64 last_event_at;       /* µs of recorded_at of the newest applied event, 0 = none */
  char  *server_url;
} OdSyncState;

void od_sync_state_clear (OdSyncState *state);

#define OD_TYPE_CACHE (od_cache_get_type ())
G_DECLARE_FINAL_TYPE (OdCache, od_cache, OD, CACHE, GObject)

/* $XDG_DATA_HOME/orderdesk/<profile>.sqlite, the profile being a file-name
 * safe form of the server URL (e.g. "http_127.0.0.1_8080").  Creates the
 * directory. */
char        *od_cache_default_path      (const char  *server_url);

/* Opens (creating and migrating as needed) and starts the writer thread.
 * A file whose schema cannot be migrated is emptied and rebuilt from the
 * event log (applied_position goes back to 0).  Creation and migration
 * are one exclusive transaction, done by one process at a time. */
OdCache     *od_cache_open              (const char  *path,
                                         GError     **error);
const char  *od_cache_get_path          (OdCache     *self);


/* Thread-safe: what the writer last committed. */
gint64       od_cache_get_applied_position (OdCache  *self);

/* Reads sync_state with the read connection. */
gboolean     od_cache_get_sync_state    (OdCache     *self,
                                         OdSyncState *state,
                                         GError     **error);

/* Number of orders per status (indexed by OdOrderStatus; [0] is the total),
 * from the maintained counts table: never a scan. */
gboolean     od_cache_get_status_counts (OdCache     *self,
                                         gint64       counts[OD_STATUS_N],
                                         GError     **error);

/* Whether a search can find every order the cache holds.  FALSE while a
 * bulk catch-up, this process's or another's (see
 * od_cache_set_bulk_threshold), has the search index of customer names
 * and e-mails out: orders it applied are found by id, SKU and note, and
 * by customer only once the index is built, before the catch-up is
 * reported done.  Reads with the read connection, now; the
 * "search-complete" property follows it, notified within a tenth of a
 * second of the commit that changed it (on the cache's main context). */
gboolean     od_cache_get_search_complete (OdCache   *self);

/* Queues events for the writer thread (any thread but the owner's: it
 * blocks while 50,000 events wait to be applied).  Takes ownership of
 * the array (of OdEvent*, with a free func).  Events at or below the
 * applied position are skipped; an event whose prev is not the applied
 * position stops the batch (nothing after it applied) and is reported to
 * the gap callback, see od_cache_set_gap_func(). */
void         od_cache_push_events       (OdCache     *self,
                                         GPtrArray   *events,
                                         gint64       known_head);

/* The writer keeps a transaction open while more events are queued, up to
 * this many events (default 100,000, and 600,000 in bulk mode, see
 * od_cache_set_bulk_threshold); 1 = every batch its own commit.  Setting
 * it sets both. */
void         od_cache_set_max_transaction (OdCache   *self,
                                           guint      max_events);

/* A catch-up more than this many events behind (default 300,000) drops
 * the secondary indexes and the search trigger and builds them once
 * caught up (or when the cache closes; after a crash, on the next open,
 * on the writer thread).  Lists stay correct meanwhile, only slower.
 * G_MAXINT64 turns it off.  Set before events are pushed. */
void         od_cache_set_bulk_threshold (OdCache   *self,
                                          gint64     events);

/* A catch-up also goes in bulk mode when it more than doubles the cache
 * (behind by more events than are applied, as a cold cache is) and is
 * behind by more than this many events (default 10,000).  G_MAXINT64
 * turns that rule off.  Set before events are pushed. */
void         od_cache_set_bulk_min       (OdCache   *self,
                                          gint64     events);

/* After a catch-up of 10,000 events or more the writer gives the memory
 * it used back to the system (SQLite's page cache, malloc_trim()), so that
 * a console left open stays small: a third of a second at 1.2 M events.
 * A tool that exits once caught up keeps it instead (keep = TRUE). */
void         od_cache_set_keep_memory    (OdCache   *self,
                                          gboolean   keep);

/* Called on the writer thread when an event's prev does not match, with
 * event_position -1 after a rebuild reset the checkpoint, and with
 * OD_CACHE_WRITE_FAILED after a commit failed (disk full, I/O error):
 * then the events of the lost transaction must be fetched again, but
 * only after a pause, since the next write may well fail too. */
#define OD_CACHE_WRITE_FAILED (-2)
typedef void (*OdCacheGapFunc) (gint64   applied_position,
                                gint64   event_position,
                                gint64   event_prev,
                                gpointer user_data);
void         od_cache_set_gap_func      (OdCache       *self,
                                         OdCacheGapFunc func,
                                         gpointer       user_data);

/* Persist contact information (known head, last contact) without events. */
void         od_cache_note_contact      (OdCache     *self,
                                         gint64       known_head,
                                         gint64       contact_usec,
                                         const char  *server_url);

/* Blocks the caller until everything queued before the call is committed.
 * For tools and tests, never on a GUI thread.  FALSE with
 * OD_CACHE_ERROR_CLOSED once the cache is closed. */
gboolean     od_cache_flush             (OdCache     *self,
                                         GError     **error);

/* Resolves when applied_position ≥ position (read-your-writes). */
void         od_cache_wait_position_async  (OdCache            *self,
                                            gint64              position,
                                            GCancellable       *cancellable,
                                            GAsyncReadyCallback callback,
                                            gpointer            user_data);
gboolean     od_cache_wait_position_finish (OdCache            *self,
                                            GAsyncResult       *result,
                                            GError            **error);

/* Drops every view and sets applied_position to 0 (events are refetched
 * by the sync engine); runs on the writer thread.  The outbox is kept. */
void         od_cache_rebuild_async     (OdCache            *self,
                                         GCancellable       *cancellable,
                                         GAsyncReadyCallback callback,
                                         gpointer            user_data);
gboolean     od_cache_rebuild_finish    (OdCache            *self,
                                         GAsyncResult       *result,
                                         GError            **error);

/* Runs func on the writer thread, inside its own transaction (committed
 * when func returns TRUE, rolled back otherwise); the task completes on
 * the caller's thread-default context.  For the outbox.  A job (as a
 * rebuild) submitted once the cache is closed is never run: it fails at
 * once with OD_CACHE_ERROR_CLOSED. */
typedef gboolean (*OdCacheWriteFunc) (sqlite3   *db,
                                      gpointer   data,
                                      gpointer  *result,
                                      GError   **error);
void         od_cache_write_async       (OdCache            *self,
                                         OdCacheWriteFunc    func,
                                         gpointer            data,
                                         GDestroyNotify      data_free,
                                         GCancellable       *cancellable,
                                         GAsyncReadyCallback callback,
                                         gpointer            user_data);
gpointer     od_cache_write_finish      (OdCache            *self,
                                         GAsyncResult       *result,
                                         GError            **error);

/* TRUE when this process writes the cache (applies events).  One process
 * at a time does, the one holding PATH.lock; in the others events pushed
 * are dropped, contact notes and rebuilds refused, and the writer's
 * commits are followed instead: "applied" and "outbox-changed" are
 * emitted for them within ~100 ms.  A follower becomes the writer as soon
 * as the lock is free (the sync engine is then told to resume from the
 * checkpoint, as after a rebuild).  Outbox writes work in every process. */
gboolean     od_cache_is_writer         (OdCache     *self);

/* Stops the writer thread after committing what is queued.  Also done by
 * dispose. */
void         od_cache_close             (OdCache     *self);

G_END_DECLS

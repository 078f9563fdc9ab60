/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The cache's schema: creating it, every migration (in the opening
 * process's exclusive transaction), and the upgrades the writer thread
 * does after the open (the search index, the schema-6 fold); the bulk
 * catch-up's indexes and a rebuild of the views. */
#include "od-cache.h"
#include "od-cache-private.h"
#include "od-outbox-store.h"
#include "od-sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <glib/gstdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* Secondary indexes (each list query has its composite index) and the
 * insert trigger that keeps counts and the search index. */
#define INDEXES_SQL \
  "CREATE INDEX IF NOT EXISTS orders_updated ON orders (updated_at, order_id);" \
  "CREATE INDEX IF NOT EXISTS orders_status_updated ON orders (status, updated_at, order_id);" \
  "CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at, order_id);" \
  "CREATE INDEX IF NOT EXISTS orders_status_created ON orders (status, created_at, order_id);" \
  "CREATE INDEX IF NOT EXISTS orders_total ON orders (total_cents, order_id);" \
  "CREATE INDEX IF NOT EXISTS orders_status_total ON orders (status, total_cents, order_id);" \
  "CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_name, order_id);" \
  "CREATE INDEX IF NOT EXISTS orders_status_customer ON orders (status, customer_name, order_id);" \
  "CREATE INDEX IF NOT EXISTS order_items_sku ON order_items (sku, order_id);" \
  "CREATE INDEX IF NOT EXISTS order_events_order ON order_events (order_id, version);" \
  "CREATE TRIGGER IF NOT EXISTS orders_count_insert AFTER INSERT ON orders BEGIN" \
  "  UPDATE status_counts SET n = n + 1 WHERE status = NEW.status;" \
  "  INSERT INTO order_search (rowid, customer_name, customer_email)" \
  "    VALUES (NEW.rowid, NEW.customer_name, NEW.customer_email);" \
  "END;" \
  ""

static const char bulk_begin_sql[] =
  "DROP INDEX IF EXISTS orders_updated;"
  "DROP INDEX IF EXISTS orders_status_updated;"
  "DROP INDEX IF EXISTS orders_created;"
  "DROP INDEX IF EXISTS orders_status_created;"
  "DROP INDEX IF EXISTS orders_total;"
  "DROP INDEX IF EXISTS orders_status_total;"
  "DROP INDEX IF EXISTS orders_customer;"
  "DROP INDEX IF EXISTS orders_status_customer;"
  "DROP INDEX IF EXISTS order_items_sku;"
  "DROP INDEX IF EXISTS order_events_order;"
  "DROP TRIGGER IF EXISTS orders_count_insert;"
  "CREATE TRIGGER orders_count_insert_bulk AFTER INSERT ON orders BEGIN"
  "  UPDATE status_counts SET n = n + 1 WHERE status = NEW.status;"
  "END;";

/* Also run on start when a bulk catch-up was interrupted. */
static const char bulk_end_sql[] =
  "DROP TRIGGER IF EXISTS orders_count_insert_bulk;"
  "INSERT INTO order_search (order_search) VALUES ('delete-all');"
  "INSERT INTO order_search (rowid, customer_name, customer_email)"
  "  SELECT rowid, customer_name, customer_email FROM orders;"
  INDEXES_SQL;

/* Name and e-mail never change after OrderCreated, so the search
 * index is written once per order (by the insert trigger above), not
 * on every update: FTS5 triggers on every write measured 2.5× slower.
 * Every prefix length up to 8 has its own index: a search is a prefix
 * search, and FTS5 answers one without such an index by merging the
 * lists of every word with that prefix ("hopper" matched 42,000
 * orders in 1,000 words at a million orders, 8 ms; a one-letter word
 * such as the "b" of "mug b" merges thousands), where an indexed
 * prefix is one list read newest first (0.3 ms).  It costs the cache
 * about 90 MB at a million orders and about 6 s more to build. */
#define SEARCH_TABLE_SQL \
  "CREATE VIRTUAL TABLE IF NOT EXISTS order_search USING fts5 (" \
  "  customer_name, customer_email, content='', prefix='1 2 3 4 5 6 7 8'," \
  "  tokenize='unicode61 remove_diacritics 2');"

/* Orders whose history from the server breaks the protocol (a version
 * gap, a transition their status does not allow): from the first such
 * event on, the order's events are stored but not applied, and the order
 * is shown as of `version`.  A view like the others: a rebuild drops it.
 * New in version 4. */
#define INCONSISTENT_TABLE_SQL \
  "CREATE TABLE IF NOT EXISTS inconsistent_orders (" \
  "  order_id TEXT PRIMARY KEY," \
  "  version INTEGER NOT NULL," \
  "  position INTEGER NOT NULL," \
  "  reason TEXT NOT NULL) WITHOUT ROWID;"

/* One row per status of od-order.c's table (version 6 added
 * partially_refunded and refunded; INSERT OR IGNORE adds them to an
 * older table). */
#define STATUS_ROWS_SQL \
  "INSERT OR IGNORE INTO status_counts (status) VALUES" \
  "  ('draft'), ('placed'), ('shipped'), ('delivered'), ('cancelled')," \
  "  ('partially_refunded'), ('refunded');"

/* Notes are searched like names: one row per OrderNoteAdded, its rowid
 * the event's position (order_events gives the order).  Written by the
 * writer as it applies the note, so a bulk catch-up keeps it too.  No
 * prefix indexes: notes are few next to orders.  New in version 6. */
#define NOTE_SEARCH_SQL \
  "CREATE VIRTUAL TABLE IF NOT EXISTS note_search USING fts5 (" \
  "  text, content='', tokenize='unicode61 remove_diacritics 2');"

/* The schema of version 4 (versions 1 and 2 indexed fewer prefix lengths
 * for search: 2-3 and 2-8; version 3 had no inconsistent_orders).  Every list query of od-query.c has a
 * composite index that matches it, so a page is a short index walk. */
static const char schema_sql[] =
  "CREATE TABLE IF NOT EXISTS orders ("
  "  order_id TEXT PRIMARY KEY,"
  "  customer_name TEXT NOT NULL DEFAULT '',"
  "  customer_email TEXT NOT NULL DEFAULT '',"
  "  currency TEXT NOT NULL DEFAULT '',"
  "  status TEXT NOT NULL,"
  "  item_count INTEGER NOT NULL DEFAULT 0,"
  "  total_cents INTEGER NOT NULL DEFAULT 0,"
  "  version INTEGER NOT NULL,"
  "  created_at TEXT NOT NULL DEFAULT '',"
  "  updated_at TEXT NOT NULL DEFAULT '',"
  "  last_position INTEGER NOT NULL,"
  "  carrier TEXT,"
  "  tracking_number TEXT,"
  "  cancel_reason TEXT,"
  "  refunded_cents INTEGER NOT NULL DEFAULT 0,"
  "  note_count INTEGER NOT NULL DEFAULT 0);"
  "CREATE TABLE IF NOT EXISTS order_items ("
  "  order_id TEXT NOT NULL,"
  "  sku TEXT NOT NULL,"
  "  name TEXT NOT NULL DEFAULT '',"
  "  quantity INTEGER NOT NULL,"
  "  unit_price_cents INTEGER NOT NULL,"
  "  line_no INTEGER NOT NULL,"
  "  PRIMARY KEY (order_id, sku)) WITHOUT ROWID;"
  "CREATE TABLE IF NOT EXISTS order_events ("
  "  position INTEGER PRIMARY KEY,"
  "  prev INTEGER NOT NULL,"
  "  order_id TEXT NOT NULL,"
  "  version INTEGER NOT NULL,"
  "  type TEXT NOT NULL,"
  "  recorded_at TEXT NOT NULL,"
  "  actor TEXT NOT NULL,"
  "  data TEXT NOT NULL);"
  "CREATE TABLE IF NOT EXISTS sync_state ("
  "  id INTEGER PRIMARY KEY CHECK (id = 1),"
  "  applied_position INTEGER NOT NULL DEFAULT 0,"
  "  known_head INTEGER NOT NULL DEFAULT 0,"
  "  last_contact_at INTEGER NOT NULL DEFAULT 0,"
  "  last_event_at INTEGER NOT NULL DEFAULT 0,"
  "  server_url TEXT);"
  "INSERT OR IGNORE INTO sync_state (id) VALUES (1);"
  "CREATE TABLE IF NOT EXISTS status_counts ("
  "  status TEXT PRIMARY KEY,"
  "  n INTEGER NOT NULL DEFAULT 0);"
  STATUS_ROWS_SQL
  "CREATE TRIGGER IF NOT EXISTS orders_count_delete AFTER DELETE ON orders BEGIN"
  "  UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;"
  "END;"
  "CREATE TRIGGER IF NOT EXISTS orders_count_update AFTER UPDATE OF status ON orders"
  "  WHEN OLD.status <> NEW.status BEGIN"
  "  UPDATE status_counts SET n = n - 1 WHERE status = OLD.status;"
  "  UPDATE status_counts SET n = n + 1 WHERE status = NEW.status;"
  "END;"
  SEARCH_TABLE_SQL
  NOTE_SEARCH_SQL
  INCONSISTENT_TABLE_SQL
  INDEXES_SQL;

/* Tables that hold views only (rebuilt from the event log); the outbox is
 * not among them: a rebuild must never lose an unsent command. */
static const char drop_views_sql[] =
  "DROP TRIGGER IF EXISTS orders_count_insert;"
  "DROP TRIGGER IF EXISTS orders_count_insert_bulk;"
  "DROP TRIGGER IF EXISTS orders_count_delete;"
  "DROP TRIGGER IF EXISTS orders_count_update;"
  "DROP TABLE IF EXISTS order_search;"
  "DROP TABLE IF EXISTS note_search;"
  "DROP TABLE IF EXISTS orders;"
  "DROP TABLE IF EXISTS order_items;"
  "DROP TABLE IF EXISTS order_events;"
  "DROP TABLE IF EXISTS status_counts;"
  "DROP TABLE IF EXISTS inconsistent_orders;"
  "DROP TABLE IF EXISTS refold_pending;"
  "DROP TABLE IF EXISTS sync_state;";

sqlite3 *
od_cache_open_connection (const char  *path,
                 gboolean     writer,
                 GError     **error)
{
  sqlite3 *db = NULL;
  int rc;

  /* The cache holds customer names and e-mail addresses: the file is the
   * user's alone.  SQLite gives -wal and -shm the mode of the database
   * file, so creating it 0600 first (and tightening an older one) covers
   * them too. */
  if (writer)
    {
      int fd = g_open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

      if (fd < 0)
        {
          int saved = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot open cache %s: %s",
                       path, g_strerror (saved));
          return NULL;
        }
      if (fchmod (fd, 0600) != 0)
        g_debug ("cache: cannot make %s private: %s", path, g_strerror (errno));
      close (fd);
      for (guint i = 0; i < 2; i++)
        {
          g_autofree char *side = g_strconcat (path, i == 0 ? "-wal" : "-shm", NULL);

          if (g_chmod (side, 0600) != 0 && errno != ENOENT)
            g_debug ("cache: cannot make %s private: %s", side, g_strerror (errno));
        }
    }

  rc = sqlite3_open_v2 (path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL);
  if (rc != SQLITE_OK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot open cache %s: %s", path,
                   db ? sqlite3_errmsg (db) : sqlite3_errstr (rc));
      sqlite3_close (db);
      return NULL;
    }
  sqlite3_busy_timeout (db, 10000);
  /* The writer gets a 256 MiB page cache and a large checkpoint interval:
   * big catch-up transactions measured 3× faster with both. */
  if (!od_sqlite_exec (db,
             writer ? "PRAGMA journal_mode=WAL;"
                      "PRAGMA synchronous=NORMAL;"
                      "PRAGMA cache_size=-262144;"
                      "PRAGMA wal_autocheckpoint=100000;"
                      "PRAGMA temp_store=MEMORY;"
                      "PRAGMA foreign_keys=OFF;"
                    /* No mmap for reads: mapped pages count in the
                     * console's resident memory (268 MiB at a million
                     * orders against 41 MiB without, at equal page and
                     * search latencies within noise). */
                    : "PRAGMA cache_size=-65536;"
                      "PRAGMA temp_store=MEMORY;",
                      "cache",
             error))
    {
      sqlite3_close (db);
      return NULL;
    }
  return db;
}

/* Version 6: refunds and notes.  An older console kept the OrderRefunded
 * and OrderNoteAdded events it did not know (readers keep unknown types)
 * and only advanced the order's version.  Here, in od_cache_migrate ()'s
 * transaction, only the schema changes: columns added with a constant
 * default do not touch the rows, so this is cheap at any size.  Folding
 * the kept events is the writer thread's work (od_cache_refold_kept_events ()),
 * from the newest position down, in small transactions; refold_pending
 * says how far it has come, so an interrupted fold resumes.  An empty
 * log has nothing to fold.  Idempotent (nothing once the columns
 * exist), so it combines with the steps of other versions. */
#define REFOLD_TABLE_SQL \
  "CREATE TABLE IF NOT EXISTS refold_pending (" \
  "  id INTEGER PRIMARY KEY CHECK (id = 1)," \
  "  remaining INTEGER NOT NULL);"

static gint64
refold_remaining (sqlite3 *db)
{
  return od_sqlite_query_int64 (db, "SELECT remaining FROM refold_pending WHERE id = 1", 0);
}

static gboolean
migrate_refunds_and_notes (sqlite3  *db,
                           GError  **error)
{
  if (od_sqlite_has_column (db, "orders", "refunded_cents"))
    return TRUE;
  /* max (position) is the last row of the table's b-tree: one seek. */
  if (!od_sqlite_exec (db,
             "ALTER TABLE orders ADD COLUMN refunded_cents INTEGER NOT NULL DEFAULT 0;"
             "ALTER TABLE orders ADD COLUMN note_count INTEGER NOT NULL DEFAULT 0;"
             STATUS_ROWS_SQL
             NOTE_SEARCH_SQL
             REFOLD_TABLE_SQL
             "INSERT INTO refold_pending (id, remaining)"
             "  SELECT 1, max (position) FROM order_events HAVING max (position) > 0;",
             "cache",
             error))
    return FALSE;
  /* Nothing kept (no events): nothing to fold. */
  return refold_remaining (db) > 0
        || od_sqlite_exec (db, "DROP TABLE refold_pending", "cache", error);
}

/* Schema 5: a record of every verification (od-verify.c): when, which
 * range, and what was found and repaired.  Idempotent, and in the
 * migration's transaction like every step. */
static gboolean
ensure_verify_table (sqlite3  *db,
                     GError  **error)
{
  return od_sqlite_exec (db,
               "CREATE TABLE IF NOT EXISTS verify_runs ("
               "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
               "  verified_at INTEGER NOT NULL,"
               "  after_position INTEGER NOT NULL,"
               "  upto_position INTEGER NOT NULL,"
               "  events_checked INTEGER NOT NULL,"
               "  result TEXT NOT NULL,"
               "  report TEXT NOT NULL);",
               "cache",
               error);
}

static gboolean
schema_is_current (sqlite3 *db)
{
  return od_sqlite_user_version (db) == OD_CACHE_SCHEMA_VERSION
         && od_outbox_store_is_current (db);
}

/* Brings the schema to OD_CACHE_SCHEMA_VERSION.  Version 0 with tables is
 * some other layout; a version from the future cannot be trusted either:
 * both drop the views and rebuild from the log.  Versions 1 and 2 differ
 * only in the search index, which stays usable: *search_upgrade asks the
 * writer thread to build the new one, so that opening a large cache never
 * waits for it.
 *
 * Every step runs in one exclusive transaction, and the version is read
 * again inside it: another process may be creating or migrating the same
 * file, and what it has not committed is invisible, so a half-made
 * schema is never seen, let alone taken for an old one.  A migration
 * step for a new version goes inside this transaction too. */
gboolean
od_cache_migrate (sqlite3   *db,
         gboolean  *search_upgrade,
         GError   **error)
{
  int version;

  *search_upgrade = FALSE;
  /* Nothing to do (the usual case): no write lock taken. */
  if (schema_is_current (db))
    return TRUE;
  if (!od_sqlite_exec (db, "BEGIN EXCLUSIVE", "cache", error))
    return FALSE;
  version = od_sqlite_user_version (db);
  if (version >= 1 && version < OD_CACHE_SCHEMA_VERSION)
    {
      /* Version 3 lacks only inconsistent_orders (empty until an event
       * breaks the protocol, so nothing to fill); 1 and 2 also get it
       * now, and the current version once their search index is
       * rebuilt.  Each later step is its own idempotent function
       * (verify_runs, version 5, is made below for every version). */
      if (!od_sqlite_exec (db, INCONSISTENT_TABLE_SQL, "cache", error))
        goto fail;
      if (!migrate_refunds_and_notes (db, error))
        goto fail;
      if (version >= 3)
        {
          if (!od_sqlite_exec (db, "PRAGMA user_version = " G_STRINGIFY (OD_CACHE_SCHEMA_VERSION),
                               "cache", error))
            goto fail;
        }
      else
        *search_upgrade = TRUE;
    }
  else if (version != OD_CACHE_SCHEMA_VERSION)
    {
      if (version != 0 || od_sqlite_has_table (db, "orders"))
        {
          g_message ("cache schema version %d cannot be migrated to %d: rebuilding from the log",
                     version, OD_CACHE_SCHEMA_VERSION);
          if (!od_sqlite_exec (db, drop_views_sql, "cache", error))
            goto fail;
          if (version > OD_CACHE_SCHEMA_VERSION && !od_outbox_store_set_aside (db, error))
            goto fail;
        }
      if (!od_sqlite_exec (db, schema_sql, "cache", error))
        goto fail;
      if (!od_sqlite_exec (db, "PRAGMA user_version = " G_STRINGIFY (OD_CACHE_SCHEMA_VERSION),
                           "cache", error))
        goto fail;
    }
  if (!od_outbox_store_ensure (db, error))
    goto fail;
  if (!ensure_verify_table (db, error))
    goto fail;
  return od_sqlite_exec (db, "COMMIT", "cache", error);

fail:
  od_sqlite_exec (db, "ROLLBACK", "cache", NULL);
  return FALSE;
}

static gboolean
run_script_tx (OdCache     *self,
               const char  *sql,
               GError     **error)
{
  if (!od_sqlite_exec (self->wdb, "BEGIN IMMEDIATE", "cache", error))
    return FALSE;
  if (!od_sqlite_exec (self->wdb, sql, "cache", error)
        || !od_sqlite_exec (self->wdb, "COMMIT", "cache", error))
    {
      od_sqlite_exec (self->wdb, "ROLLBACK", "cache", NULL);
      return FALSE;
    }
  return TRUE;
}

void
od_cache_bulk_end (OdCache *self)
{
  g_autoptr(GError) error = NULL;
  gint64 t0 = g_get_monotonic_time ();

  if (!run_script_tx (self, bulk_end_sql, &error))
    {
      /* The indexes are only an accelerator: reads stay correct without
       * them; the next start tries again. */
      g_warning ("could not rebuild the cache's indexes: %s", error->message);
      return;
    }
  self->bulk = FALSE;
  g_debug ("cache indexes built in %.1f s", (g_get_monotonic_time () - t0) / 1e6);
}

void
od_cache_bulk_begin (OdCache *self)
{
  g_autoptr(GError) error = NULL;

  if (!run_script_tx (self, bulk_begin_sql, &error))
    {
      g_warning ("cache could not enter bulk mode: %s", error->message);
      return;
    }
  self->bulk = TRUE;
}

gboolean
od_cache_rebuild_views (OdCache  *self,
            GError  **error)
{
  od_cache_finalize_writer_statements (self);
  if (!od_sqlite_exec (self->wdb, "BEGIN IMMEDIATE", "cache", error))
    return FALSE;
  if (!od_sqlite_exec (self->wdb, drop_views_sql, "cache", error)
        || !od_sqlite_exec (self->wdb, schema_sql, "cache", error))
    {
      od_sqlite_exec (self->wdb, "ROLLBACK", "cache", NULL);
      od_cache_prepare_writer_statements (self, NULL);
      return FALSE;
    }
  if (!od_sqlite_exec (self->wdb, "COMMIT", "cache", error))
    {
      od_sqlite_exec (self->wdb, "ROLLBACK", "cache", NULL);
      od_cache_prepare_writer_statements (self, NULL);
      return FALSE;
    }
  od_cache_set_applied (self, 0);
  return od_cache_prepare_writer_statements (self, error);
}

/* The search index of versions 1 and 2 is replaced by the current one in
 * one transaction: readers use the old one until it commits.  Closing the
 * cache meanwhile interrupts it, and the next open starts it again. */
void
od_cache_upgrade_search (OdCache *self)
{
  g_autoptr(GError) error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok;

  g_mutex_lock (&self->queue_lock);
  self->upgrading = !self->closed;
  g_mutex_unlock (&self->queue_lock);
  if (!self->upgrading)
    return;
  /* Built with a small page cache, and the memory given back after: it
   * runs while the operator browses (the same 6 s either way; 550 MiB
   * resident with the catch-up's 256 MiB cache). */
  od_sqlite_exec (self->wdb, "PRAGMA cache_size=-16384", "cache", NULL);
  ok = run_script_tx (self,
                      "DROP TABLE IF EXISTS order_search;"
                      SEARCH_TABLE_SQL
                      "INSERT INTO order_search (rowid, customer_name, customer_email)"
                      "  SELECT rowid, customer_name, customer_email FROM orders;"
                      "PRAGMA user_version = " G_STRINGIFY (OD_CACHE_SCHEMA_VERSION) ";",
                      &error);
  g_mutex_lock (&self->queue_lock);
  self->upgrading = FALSE;
  g_mutex_unlock (&self->queue_lock);
  od_sqlite_exec (self->wdb, "PRAGMA cache_size=-262144", "cache", NULL);
  sqlite3_wal_checkpoint_v2 (self->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  sqlite3_db_release_memory (self->wdb);
  malloc_trim (0);
  if (ok)
    g_debug ("cache search index upgraded to schema %d in %.1f s", OD_CACHE_SCHEMA_VERSION,
             (g_get_monotonic_time () - t0) / 1e6);
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_debug ("cache search index upgrade interrupted by close; the next open starts it again");
  else
    g_warning ("cache search index not upgraded (%s); the old one serves until the next start",
               error->message);
}

/* The fold of events an older cache kept (schema 6, see
 * migrate_refunds_and_notes()).  Test knobs: the positions a transaction
 * covers, and a hook called on the writer before each transaction. */
static gint64 refold_chunk_positions = 20000;
static OdCacheUpgradeHook refold_hook;
static gpointer refold_hook_data;

void
od_cache_set_upgrade_hook (gint64             chunk_positions,
                           OdCacheUpgradeHook hook,
                           gpointer           data)
{
  refold_chunk_positions = chunk_positions > 0 ? chunk_positions : 20000;
  refold_hook = hook;
  refold_hook_data = data;
}


static gboolean
step_range (sqlite3     *db,
            const char  *sql,
            gint64       lo,
            gint64       hi,
            GError     **error)
{
  sqlite3_stmt *st = NULL;
  int rc;

  if (sqlite3_prepare_v2 (db, sql, -1, &st, NULL) != SQLITE_OK)
    {
      od_sqlite_set_error (error, db, "refold");
      return FALSE;
    }
  if (sqlite3_bind_parameter_count (st) >= 2)
    {
      sqlite3_bind_int64 (st, 1, lo);
      sqlite3_bind_int64 (st, 2, hi);
    }
  else if (sqlite3_bind_parameter_count (st) == 1)
    sqlite3_bind_int64 (st, 1, lo);
  rc = sqlite3_step (st);
  sqlite3_finalize (st);
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, db, "refold");
      return FALSE;
    }
  return TRUE;
}

/* One transaction of the fold: the events at positions (lo, hi].  Every
 * order with a kept OrderRefunded or OrderNoteAdded there is folded
 * again from all its events, exactly as `orderdeskctl verify` repairs
 * it (so later events, and a contract break the new types reveal, come
 * out as the projector makes them), and its rows, the status counts
 * (triggers) and the notes' search entries change in the same commit as
 * the progress: a reader sees an order either as the older console left
 * it or folded, never half.  An order met again in a lower range is
 * folded again, which changes nothing. */
static gboolean
refold_range (OdCache  *self,
              gint64    lo,
              gint64    hi,
              guint    *n_orders,
              GError  **error)
{
  g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);
  sqlite3_stmt *st = NULL;
  gboolean ok = TRUE;
  int rc;

  if (!od_sqlite_exec (self->wdb, "BEGIN IMMEDIATE", "cache", error))
    return FALSE;
  if (sqlite3_prepare_v2 (self->wdb,
                          "SELECT DISTINCT order_id FROM order_events"
                          " WHERE position > ?1 AND position <= ?2"
                          " AND type IN ('OrderNoteAdded', 'OrderRefunded')",
                          -1, &st, NULL) != SQLITE_OK)
    {
      od_sqlite_set_error (error, self->wdb, "refold");
      ok = FALSE;
    }
  else
    {
      sqlite3_bind_int64 (st, 1, lo);
      sqlite3_bind_int64 (st, 2, hi);
      while ((rc = sqlite3_step (st)) == SQLITE_ROW)
        g_ptr_array_add (ids, g_strdup ((const char *) sqlite3_column_text (st, 0)));
      if (rc != SQLITE_DONE)
        {
          od_sqlite_set_error (error, self->wdb, "refold");
          ok = FALSE;
        }
      sqlite3_finalize (st);
    }
  for (guint i = 0; ok && i < ids->len; i++)
    ok = od_verify_rewrite_order (self->wdb, g_ptr_array_index (ids, i), error);
  /* Each note is in exactly one range: indexed once, as the projector
   * indexes a note it applies (none after an order's break). */
  ok = ok && step_range (self->wdb,
                         "INSERT INTO note_search (rowid, text)"
                         "  SELECT position, json_extract (data, '$.text') FROM order_events e"
                         "  WHERE position > ?1 AND position <= ?2 AND type = 'OrderNoteAdded'"
                         "  AND json_type (data, '$.text') = 'text'"
                         "  AND NOT EXISTS (SELECT 1 FROM inconsistent_orders i"
                         "    WHERE i.order_id = e.order_id AND i.position <= e.position)",
                         lo, hi, error);
  ok = ok && step_range (self->wdb,
                         lo > 0 ? "UPDATE refold_pending SET remaining = ?1"
                                : "DROP TABLE refold_pending",
                         lo, hi, error);
  if (!ok || !od_sqlite_exec (self->wdb, "COMMIT", "cache", error))
    {
      od_sqlite_exec (self->wdb, "ROLLBACK", "cache", NULL);
      return FALSE;
    }
  *n_orders += ids->len;
  return TRUE;
}

/* Folds what an older cache kept, on the writer thread after the open
 * (the opening thread only changed the schema): newest positions first,
 * because events of types an older console did not know are recent, so
 * the orders they concern are usually right in the first transactions.
 * Closing the cache interrupts it, like the search upgrade, and the next
 * open (or the process that takes the writer's place) goes on from
 * refold_pending. */
void
od_cache_refold_kept_events (OdCache *self)
{
  g_autoptr(GError) error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  gint64 remaining = refold_remaining (self->wdb);
  guint n_orders = 0;
  gboolean stopped = FALSE;

  if (remaining <= 0)
    return;
  g_debug ("cache folding refunds and notes kept by an older version, positions %" G_GINT64_FORMAT
           " down", remaining);
  od_sqlite_exec (self->wdb, "PRAGMA cache_size=-16384", "cache", NULL);
  while (remaining > 0 && error == NULL)
    {
      gint64 lo = MAX (remaining - refold_chunk_positions, 0);

      g_mutex_lock (&self->queue_lock);
      self->upgrading = !self->closed;
      g_mutex_unlock (&self->queue_lock);
      if (!self->upgrading || (refold_hook != NULL && !refold_hook (remaining, refold_hook_data)))
        {
          stopped = TRUE;
          break;
        }
      if (refold_range (self, lo, remaining, &n_orders, &error))
        remaining = lo;
    }
  g_mutex_lock (&self->queue_lock);
  self->upgrading = FALSE;
  stopped = stopped || self->closed;
  g_mutex_unlock (&self->queue_lock);
  od_sqlite_exec (self->wdb, "PRAGMA cache_size=-262144", "cache", NULL);
  sqlite3_db_release_memory (self->wdb);
  malloc_trim (0);
  if (n_orders > 0)
    od_cache_post_notify (self, od_cache_get_applied_position (self), FALSE, FALSE, NULL);
  if (remaining <= 0)
    g_debug ("cache folded refunds and notes of %u orders in %.1f s", n_orders,
             (g_get_monotonic_time () - t0) / 1e6);
  else if (stopped)
    g_debug ("cache refund and note fold interrupted at position %" G_GINT64_FORMAT
             "; the next open goes on", remaining);
  else
    g_warning ("cache refunds and notes not folded (%s); the next start tries again",
               error->message);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-cache.h"
#include "od-cache-private.h"
#include "od-json.h"
#include "od-outbox-store.h"
#include "od-order.h"
#include "od-query-private.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_QUEUED_EVENTS 50000

/* A catch-up further behind than this drops the secondary indexes and
 * the search trigger, appends to bare tables and builds the indexes once
 * at the end: a sorted build is much cheaper than a million random index
 * inserts.  Reads stay correct meanwhile, only slower. */
#define BULK_THRESHOLD 300000

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

typedef enum
{
  ITEM_EVENTS,
  ITEM_JOB,
  ITEM_FLUSH,
  ITEM_CONTACT,
  ITEM_REBUILD,
  ITEM_TAKEOVER,
  ITEM_STOP,
} ItemKind;

typedef struct
{
  ItemKind   kind;
  GPtrArray *events;
  gint64     known_head;
  gint64     contact_usec;
  char      *server_url;
  GTask     *task;
  OdCacheWriteFunc func;
  gpointer   func_data;
  GDestroyNotify func_data_free;
  gboolean   durable;
  /* ITEM_FLUSH */
  GMutex    *flush_mutex;
  GCond     *flush_cond;
  gboolean  *flush_done;
  gboolean  *flush_refused;
} WriterItem;

typedef struct
{
  OdOrder      *order;
  gboolean      inconsistent; /* in inconsistent_orders: apply nothing more */
  gboolean      in_db;
  gboolean      lines_dirty;
  OdOrderStatus orig_status;  /* as stored, when in_db */
  gint64        orig_total;
} Working;

typedef struct
{
  GTask   *task;
  gint64   position;
  gulong   cancel_id;
  guint64  id;
} Waiter;

struct _OdCache
{
  GObject       parent_instance;

  char         *path;
  sqlite3      *db;            /* read connection, owner thread only */
  GHashTable   *read_stmts;    /* sql → sqlite3_stmt */
  GMainContext *main_context;

  GThread      *writer;
  GAsyncQueue  *queue;
  GMutex        applied_lock;
  gint64        applied;       /* committed applied position, under applied_lock */
  guint64       next_waiter_id;
  guint         max_transaction;
  /* Set on the owner's thread, called on the writer's: gap_lock makes
   * od_cache_set_gap_func (NULL) wait for a call in progress, so the
   * caller may free gap_data right after (the sync engine does). */
  GMutex        gap_lock;
  OdCacheGapFunc gap_func;
  gpointer      gap_data;

  GList        *waiters;       /* Waiter, owner thread only */
  GMutex        queue_lock;
  GCond         queue_cond;
  guint64       queued_events; /* events pushed, not yet applied: back-pressure */
  gboolean      closed;
  gboolean      search_upgrade;  /* version 1 or 2: the writer builds the new index */
  gboolean      upgrading;       /* under queue_lock: close interrupts it */

  /* One process at a time applies events: the one holding the lock on
   * PATH.lock (see take_writer_lock()).  The others follow the file. */
  int           lock_fd;
  gint          is_writer;       /* atomic */
  gboolean      takeover_queued; /* owner thread */
  GSource      *watch;           /* owner thread: polls other processes' commits */
  gint64        data_version;
  char         *outbox_signature;

  /* Writer thread state. */
  sqlite3      *wdb;
  gboolean      in_tx;
  guint         tx_events;
  gint64        tx_started;
  gboolean      bulk;
  gint64        bulk_threshold;
  gint64        tx_applied;
  gint64        tx_known_head;
  gint64        tx_last_event_at;
  GHashTable   *working;       /* order_id → Working */
  sqlite3_stmt *st_insert_event;
  sqlite3_stmt *st_load_order;
  sqlite3_stmt *st_load_lines;
  sqlite3_stmt *st_upsert_order;
  sqlite3_stmt *st_update_order[4]; /* bit 0: status changed, bit 1: total changed */
  sqlite3_stmt *st_delete_lines;
  sqlite3_stmt *st_insert_line;
  sqlite3_stmt *st_sync_state;
  sqlite3_stmt *st_visible;
  sqlite3_stmt *st_contact;
  sqlite3_stmt *st_load_inconsistent;
  sqlite3_stmt *st_mark_inconsistent;
  sqlite3_stmt *st_prior_version;
  sqlite3_stmt *st_insert_note;
};

G_DEFINE_FINAL_TYPE (OdCache, od_cache, G_TYPE_OBJECT)
G_DEFINE_QUARK (od-cache-error-quark, od_cache_error)

enum
{
  SIGNAL_APPLIED,
  SIGNAL_RESET,
  SIGNAL_OUTBOX_CHANGED,
  SIGNAL_WRITE_FAILED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

void
od_sync_state_clear (OdSyncState *state)
{
  g_clear_pointer (&state->server_url, g_free);
}

void
od_core_invoke (GMainContext   *context,
                int             priority,
                GSourceFunc     func,
                gpointer        data,
                GDestroyNotify  notify)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, priority);
  g_source_set_callback (source, func, data, notify);
  g_source_set_static_name (source, "od-core-invoke");
  g_source_attach (source, context);
  g_source_unref (source);
}

void
od_cache_set_sqlite_error (GError    **error,
                           sqlite3    *db,
                           const char *what)
{
  int code = sqlite3_errcode (db);

  g_set_error (error, G_IO_ERROR,
               code == SQLITE_FULL ? G_IO_ERROR_NO_SPACE : G_IO_ERROR_FAILED,
               "%s: %s", what, sqlite3_errmsg (db));
}

static gboolean
exec (sqlite3     *db,
      const char  *sql,
      GError     **error)
{
  char *msg = NULL;

  if (sqlite3_exec (db, sql, NULL, NULL, &msg) != SQLITE_OK)
    {
      int code = sqlite3_errcode (db);

      g_set_error (error, G_IO_ERROR,
                   code == SQLITE_FULL                                 ? G_IO_ERROR_NO_SPACE
                   : (code == SQLITE_NOTADB || code == SQLITE_CORRUPT) ? G_IO_ERROR_INVALID_DATA
                   : code == SQLITE_INTERRUPT                          ? G_IO_ERROR_CANCELLED
                                                                       : G_IO_ERROR_FAILED,
                   "cache: %s", msg ? msg : sqlite3_errstr (code));
      sqlite3_free (msg);
      return FALSE;
    }
  return TRUE;
}

static sqlite3 *
open_connection (const char  *path,
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
  if (!exec (db,
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
             error))
    {
      sqlite3_close (db);
      return NULL;
    }
  return db;
}

static int
get_user_version (sqlite3 *db)
{
  sqlite3_stmt *stmt = NULL;
  int version = -1;

  if (sqlite3_prepare_v2 (db, "PRAGMA user_version", -1, &stmt, NULL) == SQLITE_OK
      && sqlite3_step (stmt) == SQLITE_ROW)
    version = sqlite3_column_int (stmt, 0);
  sqlite3_finalize (stmt);
  return version;
}

static gboolean
has_table (sqlite3    *db,
           const char *name)
{
  sqlite3_stmt *stmt = NULL;
  gboolean found = FALSE;

  if (sqlite3_prepare_v2 (db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          -1, &stmt, NULL) == SQLITE_OK)
    {
      sqlite3_bind_text (stmt, 1, name, -1, SQLITE_STATIC);
      found = sqlite3_step (stmt) == SQLITE_ROW;
    }
  sqlite3_finalize (stmt);
  return found;
}

static gboolean
has_column (sqlite3    *db,
            const char *table,
            const char *column)
{
  sqlite3_stmt *stmt = NULL;
  gboolean found = FALSE;

  if (sqlite3_prepare_v2 (db, "SELECT 1 FROM pragma_table_info (?) WHERE name = ?", -1, &stmt,
                          NULL) == SQLITE_OK)
    {
      sqlite3_bind_text (stmt, 1, table, -1, SQLITE_STATIC);
      sqlite3_bind_text (stmt, 2, column, -1, SQLITE_STATIC);
      found = sqlite3_step (stmt) == SQLITE_ROW;
    }
  sqlite3_finalize (stmt);
  return found;
}

/* Version 6: refunds and notes.  An older console kept the OrderRefunded
 * and OrderNoteAdded events it did not know (readers keep unknown types)
 * and only advanced the order's version.  Here, in migrate()'s
 * transaction, only the schema changes: columns added with a constant
 * default do not touch the rows, so this is cheap at any size.  Folding
 * the kept events is the writer thread's work (refold_kept_events()),
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
  sqlite3_stmt *st = NULL;
  gint64 remaining = 0;

  if (sqlite3_prepare_v2 (db, "SELECT remaining FROM refold_pending WHERE id = 1", -1, &st,
                          NULL) == SQLITE_OK
      && sqlite3_step (st) == SQLITE_ROW)
    remaining = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  return remaining;
}

static gboolean
migrate_refunds_and_notes (sqlite3  *db,
                           GError  **error)
{
  if (has_column (db, "orders", "refunded_cents"))
    return TRUE;
  /* max (position) is the last row of the table's b-tree: one seek. */
  if (!exec (db,
             "ALTER TABLE orders ADD COLUMN refunded_cents INTEGER NOT NULL DEFAULT 0;"
             "ALTER TABLE orders ADD COLUMN note_count INTEGER NOT NULL DEFAULT 0;"
             STATUS_ROWS_SQL
             NOTE_SEARCH_SQL
             REFOLD_TABLE_SQL
             "INSERT INTO refold_pending (id, remaining)"
             "  SELECT 1, max (position) FROM order_events HAVING max (position) > 0;",
             error))
    return FALSE;
  /* Nothing kept (no events): nothing to fold. */
  return refold_remaining (db) > 0 || exec (db, "DROP TABLE refold_pending", error);
}

/* Schema 5: a record of every verification (od-verify.c): when, which
 * range, and what was found and repaired.  Idempotent, and in the
 * migration's transaction like every step. */
static gboolean
ensure_verify_table (sqlite3  *db,
                     GError  **error)
{
  return exec (db,
               "CREATE TABLE IF NOT EXISTS verify_runs ("
               "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
               "  verified_at INTEGER NOT NULL,"
               "  after_position INTEGER NOT NULL,"
               "  upto_position INTEGER NOT NULL,"
               "  events_checked INTEGER NOT NULL,"
               "  result TEXT NOT NULL,"
               "  report TEXT NOT NULL);",
               error);
}

static gboolean
schema_is_current (sqlite3 *db)
{
  return get_user_version (db) == OD_CACHE_SCHEMA_VERSION
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
static gboolean
migrate (sqlite3   *db,
         gboolean  *search_upgrade,
         GError   **error)
{
  int version;

  *search_upgrade = FALSE;
  /* Nothing to do (the usual case): no write lock taken. */
  if (schema_is_current (db))
    return TRUE;
  if (!exec (db, "BEGIN EXCLUSIVE", error))
    return FALSE;
  version = get_user_version (db);
  if (version >= 1 && version < OD_CACHE_SCHEMA_VERSION)
    {
      /* Version 3 lacks only inconsistent_orders (empty until an event
       * breaks the protocol, so nothing to fill); 1 and 2 also get it
       * now, and the current version once their search index is
       * rebuilt.  Each later step is its own idempotent function
       * (verify_runs, version 5, is made below for every version). */
      if (!exec (db, INCONSISTENT_TABLE_SQL, error))
        goto fail;
      if (!migrate_refunds_and_notes (db, error))
        goto fail;
      if (version >= 3)
        {
          if (!exec (db, "PRAGMA user_version = " G_STRINGIFY (OD_CACHE_SCHEMA_VERSION), error))
            goto fail;
        }
      else
        *search_upgrade = TRUE;
    }
  else if (version != OD_CACHE_SCHEMA_VERSION)
    {
      if (version != 0 || has_table (db, "orders"))
        {
          g_message ("cache schema version %d cannot be migrated to %d: rebuilding from the log",
                     version, OD_CACHE_SCHEMA_VERSION);
          if (!exec (db, drop_views_sql, error))
            goto fail;
          if (version > OD_CACHE_SCHEMA_VERSION && !od_outbox_store_set_aside (db, error))
            goto fail;
        }
      if (!exec (db, schema_sql, error))
        goto fail;
      if (!exec (db, "PRAGMA user_version = " G_STRINGIFY (OD_CACHE_SCHEMA_VERSION), error))
        goto fail;
    }
  if (!od_outbox_store_ensure (db, error))
    goto fail;
  if (!ensure_verify_table (db, error))
    goto fail;
  return exec (db, "COMMIT", error);

fail:
  exec (db, "ROLLBACK", NULL);
  return FALSE;
}

/* ------------------------------------------------------------------ */
/* Writer thread                                                       */

/* On the writer thread: tells the gap function, if one is set, under
 * gap_lock (see there). */
static void
call_gap_func (OdCache *self,
               gint64   applied,
               gint64   position,
               gint64   prev)
{
  g_mutex_lock (&self->gap_lock);
  if (self->gap_func != NULL)
    self->gap_func (applied, position, prev, self->gap_data);
  g_mutex_unlock (&self->gap_lock);
}

static void
working_free (Working *w)
{
  od_order_free (w->order);
  g_free (w);
}

static gboolean
prepare (sqlite3       *db,
         const char    *sql,
         sqlite3_stmt **stmt,
         GError       **error)
{
  if (sqlite3_prepare_v3 (db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) != SQLITE_OK)
    {
      od_cache_set_sqlite_error (error, db, "prepare");
      return FALSE;
    }
  return TRUE;
}

static void
finalize_writer_statements (OdCache *self)
{
  g_clear_pointer (&self->st_insert_event, sqlite3_finalize);
  g_clear_pointer (&self->st_load_order, sqlite3_finalize);
  g_clear_pointer (&self->st_load_lines, sqlite3_finalize);
  g_clear_pointer (&self->st_upsert_order, sqlite3_finalize);
  for (guint i = 0; i < G_N_ELEMENTS (self->st_update_order); i++)
    g_clear_pointer (&self->st_update_order[i], sqlite3_finalize);
  g_clear_pointer (&self->st_delete_lines, sqlite3_finalize);
  g_clear_pointer (&self->st_insert_line, sqlite3_finalize);
  g_clear_pointer (&self->st_sync_state, sqlite3_finalize);
  g_clear_pointer (&self->st_visible, sqlite3_finalize);
  g_clear_pointer (&self->st_contact, sqlite3_finalize);
  g_clear_pointer (&self->st_load_inconsistent, sqlite3_finalize);
  g_clear_pointer (&self->st_mark_inconsistent, sqlite3_finalize);
  g_clear_pointer (&self->st_prior_version, sqlite3_finalize);
  g_clear_pointer (&self->st_insert_note, sqlite3_finalize);
}

static gboolean
prepare_writer_statements (OdCache  *self,
                           GError  **error)
{
  sqlite3 *db = self->wdb;

  finalize_writer_statements (self);
  return prepare (db,
                  "INSERT INTO order_events (position, prev, order_id, version, type,"
                  " recorded_at, actor, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  &self->st_insert_event, error)
         && prepare (db,
                     "SELECT " OD_QUERY_ORDER_COLUMNS " FROM orders WHERE order_id = ?",
                     &self->st_load_order, error)
         && prepare (db,
                     "SELECT " OD_QUERY_LINE_COLUMNS " FROM order_items"
                     " WHERE order_id = ? ORDER BY line_no",
                     &self->st_load_lines, error)
         && prepare (db,
                     "INSERT INTO orders (order_id, customer_name, customer_email, currency,"
                     " status, item_count, total_cents, version, created_at, updated_at,"
                     " last_position, carrier, tracking_number, cancel_reason, refunded_cents,"
                     " note_count)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                     " ?15, ?16)"
                     " ON CONFLICT (order_id) DO UPDATE SET"
                     " customer_name = ?2, customer_email = ?3, currency = ?4, status = ?5,"
                     " item_count = ?6, total_cents = ?7, version = ?8, created_at = ?9,"
                     " updated_at = ?10, last_position = ?11, carrier = ?12,"
                     " tracking_number = ?13, cancel_reason = ?14, refunded_cents = ?15,"
                     " note_count = ?16",
                     &self->st_upsert_order, error)
         /* SQLite rewrites every index whose columns are SET, changed or
          * not, so each update names only what changed: the status and
          * total indexes are left alone when those did not move. */
         && prepare (db,
                     "UPDATE orders SET item_count = ?6, version = ?8, updated_at = ?10,"
                     " last_position = ?11, carrier = ?12, tracking_number = ?13,"
                     " cancel_reason = ?14, refunded_cents = ?15, note_count = ?16"
                     " WHERE order_id = ?1",
                     &self->st_update_order[0], error)
         && prepare (db,
                     "UPDATE orders SET status = ?5, item_count = ?6, version = ?8,"
                     " updated_at = ?10, last_position = ?11, carrier = ?12,"
                     " tracking_number = ?13, cancel_reason = ?14, refunded_cents = ?15,"
                     " note_count = ?16 WHERE order_id = ?1",
                     &self->st_update_order[1], error)
         && prepare (db,
                     "UPDATE orders SET item_count = ?6, total_cents = ?7, version = ?8,"
                     " updated_at = ?10, last_position = ?11, carrier = ?12,"
                     " tracking_number = ?13, cancel_reason = ?14, refunded_cents = ?15,"
                     " note_count = ?16 WHERE order_id = ?1",
                     &self->st_update_order[2], error)
         && prepare (db,
                     "UPDATE orders SET status = ?5, item_count = ?6, total_cents = ?7,"
                     " version = ?8, updated_at = ?10, last_position = ?11, carrier = ?12,"
                     " tracking_number = ?13, cancel_reason = ?14, refunded_cents = ?15,"
                     " note_count = ?16 WHERE order_id = ?1",
                     &self->st_update_order[3], error)
         && prepare (db, "DELETE FROM order_items WHERE order_id = ?", &self->st_delete_lines,
                     error)
         && prepare (db,
                     "INSERT INTO order_items (order_id, sku, name, quantity, unit_price_cents,"
                     " line_no) VALUES (?, ?, ?, ?, ?, ?)",
                     &self->st_insert_line, error)
         && prepare (db,
                     "UPDATE sync_state SET applied_position = ?1,"
                     " known_head = max(known_head, ?2),"
                     " last_event_at = CASE WHEN ?3 > 0 THEN ?3 ELSE last_event_at END"
                     " WHERE id = 1",
                     &self->st_sync_state, error)
         && prepare (db,
                     "UPDATE pending_commands SET state = " OD_OUTBOX_SQL_VISIBLE ", visible_at = ?2"
                     " WHERE state = " OD_OUTBOX_SQL_ACCEPTED " AND position <= ?1",
                     &self->st_visible, error)
         && prepare (db,
                     "UPDATE sync_state SET known_head = max(known_head, ?1),"
                     " last_contact_at = max(last_contact_at, ?2),"
                     " server_url = coalesce(?3, server_url) WHERE id = 1",
                     &self->st_contact, error)
         && prepare (db, "SELECT 1 FROM inconsistent_orders WHERE order_id = ?",
                     &self->st_load_inconsistent, error)
         && prepare (db,
                     "INSERT OR IGNORE INTO inconsistent_orders (order_id, version, position,"
                     " reason) VALUES (?, ?, ?, ?)",
                     &self->st_mark_inconsistent, error)
         && prepare (db,
                     "SELECT coalesce(max(version), 0) FROM order_events"
                     " WHERE order_id = ?1 AND position < ?2",
                     &self->st_prior_version, error)
         && prepare (db, "INSERT OR REPLACE INTO note_search (rowid, text) VALUES (?, ?)",
                     &self->st_insert_note, error);
}

static gint64
read_applied (sqlite3 *db)
{
  sqlite3_stmt *stmt = NULL;
  gint64 applied = 0;

  if (sqlite3_prepare_v2 (db, "SELECT applied_position FROM sync_state WHERE id = 1", -1, &stmt,
                          NULL) == SQLITE_OK
      && sqlite3_step (stmt) == SQLITE_ROW)
    applied = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  return applied;
}

static char *
column_strdup (sqlite3_stmt *stmt,
               int           col)
{
  const unsigned char *text = sqlite3_column_text (stmt, col);

  return text ? g_strdup ((const char *) text) : NULL;
}

static OdOrder *
load_order (OdCache    *self,
            const char *order_id,
            gboolean   *found)
{
  sqlite3_stmt *st = self->st_load_order;
  OdOrder *order = od_order_new (order_id);

  *found = FALSE;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_STATIC);
  if (sqlite3_step (st) == SQLITE_ROW)
    {
      *found = TRUE;
      od_query_order_from_row (order, st);
    }
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (!*found)
    return order;

  st = self->st_load_lines;
  sqlite3_bind_text (st, 1, order_id, -1, SQLITE_STATIC);
  while (sqlite3_step (st) == SQLITE_ROW)
    g_ptr_array_add (order->lines, od_query_line_from_row (st));
  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  return order;
}

static gboolean
step_done (sqlite3       *db,
           sqlite3_stmt  *st,
           const char    *what,
           GError       **error)
{
  int rc = sqlite3_step (st);

  sqlite3_reset (st);
  sqlite3_clear_bindings (st);
  if (rc != SQLITE_DONE)
    {
      od_cache_set_sqlite_error (error, db, what);
      return FALSE;
    }
  return TRUE;
}

static void
bind_text_or_null (sqlite3_stmt *st,
                   int           col,
                   const char   *text)
{
  if (text != NULL)
    sqlite3_bind_text (st, col, text, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null (st, col);
}

static gboolean
write_order (OdCache  *self,
             Working  *w,
             GError  **error)
{
  OdOrder *o = w->order;
  sqlite3_stmt *st = self->st_upsert_order;
  gint64 total = od_order_total_cents (o);

  /* Events for an order that was never created (only unknown types so
   * far) are kept in order_events but make no row. */
  if (o->status == OD_STATUS_NONE)
    return TRUE;
  if (w->in_db && w->orig_status != OD_STATUS_NONE)
    st = self->st_update_order[(w->orig_status != o->status ? 1 : 0)
                               | (w->orig_total != total ? 2 : 0)];

  sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 2, o->customer_name ? o->customer_name : "", -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 3, o->customer_email ? o->customer_email : "", -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 4, o->currency ? o->currency : "", -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 5, od_order_status_name (o->status), -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 6, od_order_item_count (o));
  sqlite3_bind_int64 (st, 7, total);
  sqlite3_bind_int64 (st, 8, o->version);
  sqlite3_bind_text (st, 9, o->created_at ? o->created_at : "", -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 10, o->updated_at ? o->updated_at : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 11, o->last_position);
  bind_text_or_null (st, 12, o->carrier);
  bind_text_or_null (st, 13, o->tracking_number);
  bind_text_or_null (st, 14, o->cancel_reason);
  sqlite3_bind_int64 (st, 15, o->refunded_cents);
  sqlite3_bind_int64 (st, 16, o->note_count);
  if (!step_done (self->wdb, st, "write order", error))
    return FALSE;

  if (!w->lines_dirty)
    return TRUE;
  if (w->in_db)
    {
      sqlite3_bind_text (self->st_delete_lines, 1, o->order_id, -1, SQLITE_STATIC);
      if (!step_done (self->wdb, self->st_delete_lines, "delete lines", error))
        return FALSE;
    }
  for (guint i = 0; i < o->lines->len; i++)
    {
      OdLine *line = g_ptr_array_index (o->lines, i);

      st = self->st_insert_line;
      sqlite3_bind_text (st, 1, o->order_id, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 2, line->sku, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 3, line->name ? line->name : "", -1, SQLITE_STATIC);
      sqlite3_bind_int64 (st, 4, line->quantity);
      sqlite3_bind_int64 (st, 5, line->unit_price_cents);
      sqlite3_bind_int (st, 6, i);
      if (!step_done (self->wdb, st, "write line", error))
        return FALSE;
    }
  return TRUE;
}

static int
compare_working (gconstpointer a,
                 gconstpointer b)
{
  const Working *wa = *(Working * const *) a;
  const Working *wb = *(Working * const *) b;

  return strcmp (wa->order->order_id, wb->order->order_id);
}

typedef struct
{
  GWeakRef  cache;  /* weak: a pending notification must not keep a
                     * closed cache (and its writer lock) alive */
  gint64    applied;
  gboolean  outbox_changed;
  gboolean  reset;
  GError   *error;
} Notify;

static void
notify_free (Notify *n)
{
  g_clear_error (&n->error);
  g_weak_ref_clear (&n->cache);
  g_free (n);
}

static void complete_waiters (OdCache *self, gint64 applied);

static void
set_applied (OdCache *self,
             gint64   applied)
{
  g_mutex_lock (&self->applied_lock);
  self->applied = applied;
  g_mutex_unlock (&self->applied_lock);
}

static gboolean
notify_main (gpointer data)
{
  Notify *n = data;
  g_autoptr(OdCache) self = g_weak_ref_get (&n->cache);

  if (self == NULL)
    return G_SOURCE_REMOVE;

  if (n->reset)
    g_signal_emit (self, signals[SIGNAL_RESET], 0);
  if (n->error != NULL)
    g_signal_emit (self, signals[SIGNAL_WRITE_FAILED], 0, n->error);
  if (n->applied >= 0)
    {
      g_signal_emit (self, signals[SIGNAL_APPLIED], 0, n->applied);
      complete_waiters (self, n->applied);
    }
  if (n->outbox_changed)
    g_signal_emit (self, signals[SIGNAL_OUTBOX_CHANGED], 0);
  return G_SOURCE_REMOVE;
}

static void
post_notify (OdCache  *self,
             gint64    applied,
             gboolean  outbox_changed,
             gboolean  reset,
             GError   *error)
{
  Notify *n = g_new0 (Notify, 1);

  g_weak_ref_init (&n->cache, self);
  n->applied = applied;
  n->outbox_changed = outbox_changed;
  n->reset = reset;
  n->error = error;
  od_core_invoke (self->main_context, G_PRIORITY_DEFAULT, notify_main, n,
                              (GDestroyNotify) notify_free);
}

static gboolean
begin_tx (OdCache  *self,
          GError  **error)
{
  if (self->in_tx)
    return TRUE;
  if (!exec (self->wdb, "BEGIN IMMEDIATE", error))
    return FALSE;
  self->in_tx = TRUE;
  self->tx_events = 0;
  self->tx_started = g_get_monotonic_time ();
  self->tx_applied = od_cache_get_applied_position (self);
  self->tx_known_head = 0;
  self->tx_last_event_at = 0;
  return TRUE;
}

static void
rollback_tx (OdCache *self)
{
  exec (self->wdb, "ROLLBACK", NULL);
  self->in_tx = FALSE;
  g_hash_table_remove_all (self->working);
}

static gboolean
run_script_tx (OdCache     *self,
               const char  *sql,
               GError     **error)
{
  if (!exec (self->wdb, "BEGIN IMMEDIATE", error))
    return FALSE;
  if (!exec (self->wdb, sql, error) || !exec (self->wdb, "COMMIT", error))
    {
      exec (self->wdb, "ROLLBACK", NULL);
      return FALSE;
    }
  return TRUE;
}

static void
bulk_end (OdCache *self)
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

static void
bulk_begin (OdCache *self)
{
  g_autoptr(GError) error = NULL;

  if (!run_script_tx (self, bulk_begin_sql, &error))
    {
      g_warning ("cache could not enter bulk mode: %s", error->message);
      return;
    }
  self->bulk = TRUE;
}

/* Writes the folded orders, the new checkpoint and the outbox's visible
 * marks, and commits them together: a kill at any instant leaves either
 * all of it or none. */
static gboolean
commit_tx (OdCache  *self,
           GError  **error)
{
  g_autoptr(GPtrArray) dirty = NULL;
  GHashTableIter iter;
  gpointer value;
  gboolean outbox_changed = FALSE;
  gint64 applied;

  gint64 t0 = g_get_monotonic_time (), t1, t2;

  if (!self->in_tx)
    return TRUE;

  dirty = g_ptr_array_sized_new (g_hash_table_size (self->working));
  g_hash_table_iter_init (&iter, self->working);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    g_ptr_array_add (dirty, value);
  /* Time-ordered ids written in key order touch each B-tree page once. */
  g_ptr_array_sort (dirty, compare_working);
  for (guint i = 0; i < dirty->len; i++)
    if (!write_order (self, g_ptr_array_index (dirty, i), error))
      goto fail;

  sqlite3_bind_int64 (self->st_sync_state, 1, self->tx_applied);
  sqlite3_bind_int64 (self->st_sync_state, 2, self->tx_known_head);
  sqlite3_bind_int64 (self->st_sync_state, 3, self->tx_last_event_at);
  if (!step_done (self->wdb, self->st_sync_state, "sync state", error))
    goto fail;

  sqlite3_bind_int64 (self->st_visible, 1, self->tx_applied);
  sqlite3_bind_int64 (self->st_visible, 2, g_get_real_time ());
  od_outbox_store_bind_states (self->st_visible);
  if (!step_done (self->wdb, self->st_visible, "outbox visible", error))
    goto fail;
  outbox_changed = sqlite3_changes (self->wdb) > 0;

  t1 = g_get_monotonic_time ();
  if (!exec (self->wdb, "COMMIT", error))
    goto fail;
  t2 = g_get_monotonic_time ();
  g_debug ("commit: %u events, %u orders, apply %.0f ms, orders %.0f ms, commit %.0f ms",
           self->tx_events, dirty->len, (t0 - self->tx_started) / 1000.0,
           (t1 - t0) / 1000.0, (t2 - t1) / 1000.0);
  self->in_tx = FALSE;
  g_hash_table_remove_all (self->working);
  applied = self->tx_applied;
  /* Caught up after a bulk catch-up: the indexes are built before
   * anyone is told, so "caught up" also means "fast to query". */
  if (self->bulk && applied >= self->tx_known_head)
    bulk_end (self);
  /* After a big catch-up the page cache and the folded orders are no
   * longer needed: give the memory back (the console's budget is for
   * browsing, not for catching up). */
  if (applied >= self->tx_known_head && self->tx_events >= 10000)
    {
      /* The catch-up's WAL (up to 400 MB with the large autocheckpoint)
       * is folded back now, not by the operator's first command. */
      sqlite3_wal_checkpoint_v2 (self->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
      sqlite3_db_release_memory (self->wdb);
      malloc_trim (0);
    }
  set_applied (self, applied);
  post_notify (self, applied, outbox_changed, FALSE, NULL);
  return TRUE;

fail:
  rollback_tx (self);
  return FALSE;
}

/* Why `ev` cannot follow `order` by the protocol's own rules (versions
 * 1, 2, 3, … without a gap; the command table's status rule for the
 * command that emits it), or NULL when it can.  Only the status: the
 * fold is tolerant of the finer rules (a line present, a line count).
 * Unknown types only need their version. */
/* Makes an OrderNoteAdded's text searchable. */
static gboolean
index_note (OdCache  *self,
            OdEvent  *ev,
            GError  **error)
{
  JsonObject *data = od_event_get_data (ev);
  JsonNode *node = data ? json_object_get_member (data, "text") : NULL;

  if (!od_json_is_string (node))
    return TRUE;
  sqlite3_bind_int64 (self->st_insert_note, 1, ev->position);
  sqlite3_bind_text (self->st_insert_note, 2, json_node_get_string (node), -1, SQLITE_STATIC);
  return step_done (self->wdb, self->st_insert_note, "index note", error);
}

static char *
contract_break (const OdOrder *order,
                const OdEvent *ev)
{
  if (ev->version != order->version + 1)
    return g_strdup_printf ("%s at version %" G_GINT64_FORMAT " after version %" G_GINT64_FORMAT,
                            ev->type, ev->version, order->version);
  OdEventType type = od_event_type_from_name (ev->type);

  if (type == OD_EVENT_UNKNOWN)
    return NULL;
  for (OdCommandType c = 0; c < OD_COMMAND_N_TYPES; c++)
    if (od_command_spec (c)->event == type)
      {
        if (!od_order_status_allows (order->status, c))
          return g_strdup_printf ("%s on an order that is %s", ev->type,
                                  order->status == OD_STATUS_NONE
                                    ? "not created"
                                    : od_order_status_name (order->status));
        break;
      }
  return NULL;
}

char *
od_cache_contract_break (const OdOrder *order,
                         const OdEvent *event)
{
  return contract_break (order, event);
}

static gboolean
mark_inconsistent (OdCache       *self,
                   Working       *w,
                   const OdEvent *ev,
                   const char    *why,
                   GError       **error)
{
  sqlite3_stmt *st = self->st_mark_inconsistent;

  g_message ("order %s breaks the protocol at position %" G_GINT64_FORMAT
             " (%s): shown as of version %" G_GINT64_FORMAT "; its later events are kept, not applied",
             ev->order_id, ev->position, why, w->order->version);
  sqlite3_bind_text (st, 1, ev->order_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 2, w->order->version);
  sqlite3_bind_int64 (st, 3, ev->position);
  sqlite3_bind_text (st, 4, why, -1, SQLITE_STATIC);
  if (!step_done (self->wdb, st, "mark inconsistent", error))
    return FALSE;
  w->inconsistent = TRUE;
  return TRUE;
}

/* Applies one batch inside the open transaction.  Returns FALSE on a
 * database error; a gap stops the batch without error. */
static gboolean
apply_events (OdCache    *self,
              GPtrArray  *events,
              GError    **error)
{
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);
      sqlite3_stmt *st = self->st_insert_event;
      Working *w;

      if (ev->position <= self->tx_applied)
        continue; /* replayed or repeated: a no-op by contract */
      if (ev->prev != self->tx_applied)
        {
          call_gap_func (self, self->tx_applied, ev->position, ev->prev);
          return TRUE;
        }

      sqlite3_bind_int64 (st, 1, ev->position);
      sqlite3_bind_int64 (st, 2, ev->prev);
      sqlite3_bind_text (st, 3, ev->order_id, -1, SQLITE_STATIC);
      sqlite3_bind_int64 (st, 4, ev->version);
      sqlite3_bind_text (st, 5, ev->type, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 6, ev->recorded_at, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 7, ev->actor, -1, SQLITE_STATIC);
      sqlite3_bind_text (st, 8, ev->data ? ev->data : "{}", -1, SQLITE_STATIC);
      if (!step_done (self->wdb, st, "insert event", error))
        return FALSE;

      w = g_hash_table_lookup (self->working, ev->order_id);
      if (w == NULL)
        {
          /* Loaded even for a version 1: a second "first" event of an
           * existing order must be seen as the break it is. */
          w = g_new0 (Working, 1);
          w->order = load_order (self, ev->order_id, &w->in_db);
          w->orig_status = w->order->status;
          w->orig_total = od_order_total_cents (w->order);
          if (!w->in_db && ev->version != 1)
            {
              /* No row: the order had only events of unknown types (or
               * none); its version is that of its stored events. */
              st = self->st_prior_version;
              sqlite3_bind_text (st, 1, ev->order_id, -1, SQLITE_STATIC);
              sqlite3_bind_int64 (st, 2, ev->position);
              if (sqlite3_step (st) == SQLITE_ROW)
                w->order->version = sqlite3_column_int64 (st, 0);
              sqlite3_reset (st);
              sqlite3_clear_bindings (st);
            }
          st = self->st_load_inconsistent;
          sqlite3_bind_text (st, 1, ev->order_id, -1, SQLITE_STATIC);
          w->inconsistent = sqlite3_step (st) == SQLITE_ROW;
          sqlite3_reset (st);
          sqlite3_clear_bindings (st);
          g_hash_table_insert (self->working, w->order->order_id, w);
        }
      /* A server that breaks the contract is not believed: the event is
       * kept (the log stays complete), the order is not changed by it or
       * by anything after it, and says so.  Never invented state. */
      if (!w->inconsistent)
        {
          g_autofree char *why = contract_break (w->order, ev);

          if (why != NULL && !mark_inconsistent (self, w, ev, why, error))
            return FALSE;
        }
      if (!w->inconsistent)
        {
          OdEventType type = od_event_type_from_name (ev->type);

          if (type == OD_EVENT_ITEM_ADDED || type == OD_EVENT_ITEM_REMOVED)
            w->lines_dirty = TRUE;
          if (type == OD_EVENT_ORDER_NOTE_ADDED && !index_note (self, ev, error))
            return FALSE;
          od_order_apply (w->order, ev->type, od_event_get_data (ev), ev->version, ev->position,
                          ev->recorded_at);
        }

      self->tx_applied = ev->position;
      self->tx_events++;
      if (i + 1 == events->len || ((i + 1) % 1024) == 0)
        {
          gint64 usec;

          if (od_timestamp_parse (ev->recorded_at, &usec))
            self->tx_last_event_at = usec;
        }
    }
  return TRUE;
}

static void
fail_write (OdCache *self,
            GError  *error)
{
  g_warning ("cache write failed: %s", error->message);
  rollback_tx (self);
  set_applied (self, read_applied (self->wdb));
  /* The events of the lost transaction must be fetched again: tell the
   * sync engine, as for a gap. */
  call_gap_func (self, od_cache_get_applied_position (self), OD_CACHE_WRITE_FAILED, -1);
  post_notify (self, -1, FALSE, FALSE, error);
}

static void
writer_item_free (WriterItem *item)
{
  if (item->events)
    g_ptr_array_unref (item->events);
  g_free (item->server_url);
  g_clear_object (&item->task);
  if (item->func_data_free && item->func_data)
    item->func_data_free (item->func_data);
  g_free (item);
}

/* An item the writer will never take: its caller hears so at once
 * instead of waiting for ever. */
static void
writer_item_refuse (WriterItem *item)
{
  if (item->task != NULL)
    g_task_return_new_error (item->task, OD_CACHE_ERROR, OD_CACHE_ERROR_CLOSED,
                             "the cache was closed");
  if (item->kind == ITEM_FLUSH)
    {
      g_mutex_lock (item->flush_mutex);
      *item->flush_refused = TRUE;
      *item->flush_done = TRUE;
      g_cond_signal (item->flush_cond);
      g_mutex_unlock (item->flush_mutex);
    }
  writer_item_free (item);
}

/* Every item but close's ITEM_STOP is queued here, under queue_lock, as
 * close sets closed: so an item is either ahead of ITEM_STOP in the
 * queue, and the writer takes it, or refused.  FALSE when refused. */
static gboolean
writer_submit (OdCache    *self,
               WriterItem *item)
{
  gboolean closed;

  g_mutex_lock (&self->queue_lock);
  closed = self->closed;
  if (!closed)
    g_async_queue_push (self->queue, item);
  g_mutex_unlock (&self->queue_lock);
  if (closed)
    writer_item_refuse (item);
  return !closed;
}

static gboolean
do_rebuild (OdCache  *self,
            GError  **error)
{
  finalize_writer_statements (self);
  if (!exec (self->wdb, "BEGIN IMMEDIATE", error))
    return FALSE;
  if (!exec (self->wdb, drop_views_sql, error) || !exec (self->wdb, schema_sql, error))
    {
      exec (self->wdb, "ROLLBACK", NULL);
      prepare_writer_statements (self, NULL);
      return FALSE;
    }
  if (!exec (self->wdb, "COMMIT", error))
    {
      exec (self->wdb, "ROLLBACK", NULL);
      prepare_writer_statements (self, NULL);
      return FALSE;
    }
  set_applied (self, 0);
  return prepare_writer_statements (self, error);
}

/* The search index of versions 1 and 2 is replaced by the current one in
 * one transaction: readers use the old one until it commits.  Closing the
 * cache meanwhile interrupts it, and the next open starts it again. */
static void
upgrade_search (OdCache *self)
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
  exec (self->wdb, "PRAGMA cache_size=-16384", NULL);
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
  exec (self->wdb, "PRAGMA cache_size=-262144", NULL);
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
      od_cache_set_sqlite_error (error, db, "refold");
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
      od_cache_set_sqlite_error (error, db, "refold");
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

  if (!exec (self->wdb, "BEGIN IMMEDIATE", error))
    return FALSE;
  if (sqlite3_prepare_v2 (self->wdb,
                          "SELECT DISTINCT order_id FROM order_events"
                          " WHERE position > ?1 AND position <= ?2"
                          " AND type IN ('OrderNoteAdded', 'OrderRefunded')",
                          -1, &st, NULL) != SQLITE_OK)
    {
      od_cache_set_sqlite_error (error, self->wdb, "refold");
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
          od_cache_set_sqlite_error (error, self->wdb, "refold");
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
  if (!ok || !exec (self->wdb, "COMMIT", error))
    {
      exec (self->wdb, "ROLLBACK", NULL);
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
static void
refold_kept_events (OdCache *self)
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
  exec (self->wdb, "PRAGMA cache_size=-16384", NULL);
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
  exec (self->wdb, "PRAGMA cache_size=-262144", NULL);
  sqlite3_db_release_memory (self->wdb);
  malloc_trim (0);
  if (n_orders > 0)
    post_notify (self, od_cache_get_applied_position (self), FALSE, FALSE, NULL);
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

/* A writer item's task is completed, and its last reference dropped, on
 * the owner's main context: were the writer thread to drop the last
 * reference (the caller's callback having run already), the cache it
 * holds could be disposed there, and dispose joins the writer thread. */
typedef struct
{
  GTask    *task;
  gpointer  result;
  gboolean  boolean;
  GError   *error;
} TaskReturn;

static gboolean
task_return_main (gpointer data)
{
  TaskReturn *r = data;

  if (r->error != NULL)
    g_task_return_error (r->task, g_steal_pointer (&r->error));
  else if (r->boolean)
    g_task_return_boolean (r->task, GPOINTER_TO_INT (r->result));
  else
    g_task_return_pointer (r->task, r->result, NULL);
  return G_SOURCE_REMOVE;
}

static void
task_return_free (TaskReturn *r)
{
  g_clear_error (&r->error);
  g_object_unref (r->task);
  g_free (r);
}

static void
return_task (OdCache    *self,
             WriterItem *item,
             gpointer    result,
             gboolean    boolean,
             GError     *error)
{
  TaskReturn *r = g_new0 (TaskReturn, 1);

  r->task = g_steal_pointer (&item->task);
  r->result = result;
  r->boolean = boolean;
  r->error = error;
  od_core_invoke (self->main_context, G_PRIORITY_DEFAULT, task_return_main, r,
                  (GDestroyNotify) task_return_free);
}

/* What the writing process does first, on open or when it takes over
 * from a writer that left. */
static void
writer_startup (OdCache *self)
{
  /* A bulk catch-up that was interrupted (killed) left the indexes out:
   * build them now, off the caller's thread. */
  {
    sqlite3_stmt *st = NULL;
    gboolean interrupted = FALSE;

    if (sqlite3_prepare_v2 (self->wdb,
                            "SELECT 1 FROM sqlite_master WHERE name = 'orders_count_insert_bulk'",
                            -1, &st, NULL) == SQLITE_OK)
      interrupted = sqlite3_step (st) == SQLITE_ROW;
    sqlite3_finalize (st);
    if (interrupted)
      bulk_end (self);
  }
  if (self->search_upgrade)
    upgrade_search (self);
  refold_kept_events (self);
}

static gpointer
writer_thread (gpointer data)
{
  OdCache *self = data;
  gboolean running = TRUE;

  if (g_atomic_int_get (&self->is_writer))
    writer_startup (self);

  while (running)
    {
      WriterItem *item;
      g_autoptr(GError) error = NULL;

      /* A transaction is never left open while the writer sleeps.  While
       * catching up it waits a little for more events so that
       * transactions stay big; otherwise (a live event, or the head
       * reached) it commits as soon as nothing more is queued. */
      if (self->in_tx)
        {
          gboolean catching_up = self->tx_events < self->max_transaction
                                 && self->tx_applied < self->tx_known_head;

          item = catching_up ? g_async_queue_timeout_pop (self->queue, 50 * 1000)
                             : g_async_queue_try_pop (self->queue);
          if (item == NULL)
            {
              if (!commit_tx (self, &error))
                fail_write (self, g_steal_pointer (&error));
              continue;
            }
        }
      else
        item = g_async_queue_pop (self->queue);

      switch (item->kind)
        {
        case ITEM_EVENTS:
          g_mutex_lock (&self->queue_lock);
          self->queued_events -= item->events->len;
          g_cond_broadcast (&self->queue_cond);
          g_mutex_unlock (&self->queue_lock);
          /* Another process writes this cache: its commits are followed
           * instead (watch_cb); applying these too would collide. */
          if (!g_atomic_int_get (&self->is_writer))
            break;
          if (!self->bulk && !self->in_tx
              && item->known_head - od_cache_get_applied_position (self) > self->bulk_threshold)
            bulk_begin (self);
          if (!begin_tx (self, &error) || !apply_events (self, item->events, &error))
            {
              fail_write (self, g_steal_pointer (&error));
              break;
            }
          self->tx_known_head = MAX (self->tx_known_head, item->known_head);
          self->tx_known_head = MAX (self->tx_known_head, self->tx_applied);
          if (self->tx_events >= self->max_transaction)
            {
              if (!commit_tx (self, &error))
                fail_write (self, g_steal_pointer (&error));
            }
          break;

        case ITEM_CONTACT:
          if (!g_atomic_int_get (&self->is_writer))
            break;
          sqlite3_bind_int64 (self->st_contact, 1, item->known_head);
          sqlite3_bind_int64 (self->st_contact, 2, item->contact_usec);
          bind_text_or_null (self->st_contact, 3, item->server_url);
          if (!step_done (self->wdb, self->st_contact, "contact", &error))
            g_warning ("%s", error->message);
          break;

        case ITEM_JOB:
          {
            gpointer result = NULL;
            gboolean ok;

            if (!commit_tx (self, &error))
              {
                fail_write (self, g_steal_pointer (&error));
                error = NULL;
              }
            /* A command stored before it is sent must survive a power
             * cut, so that write is fsynced; later state changes need not
             * be (losing one only means a resend with the same key). */
            if (item->durable)
              exec (self->wdb, "PRAGMA synchronous=FULL", NULL);
            ok = exec (self->wdb, "BEGIN IMMEDIATE", &error);
            if (ok)
              {
                ok = item->func (self->wdb, item->func_data, &result, &error);
                if (ok)
                  ok = exec (self->wdb, "COMMIT", &error);
                if (!ok)
                  exec (self->wdb, "ROLLBACK", NULL);
              }
            if (item->durable)
              exec (self->wdb, "PRAGMA synchronous=NORMAL", NULL);
            if (ok)
              {
                return_task (self, item, result, FALSE, NULL);
                post_notify (self, -1, TRUE, FALSE, NULL);
              }
            else
              return_task (self, item, NULL, FALSE, g_steal_pointer (&error));
          }
          break;

        case ITEM_FLUSH:
          if (!commit_tx (self, &error))
            fail_write (self, g_steal_pointer (&error));
          g_mutex_lock (item->flush_mutex);
          *item->flush_done = TRUE;
          g_cond_signal (item->flush_cond);
          g_mutex_unlock (item->flush_mutex);
          break;

        case ITEM_REBUILD:
          if (self->in_tx)
            rollback_tx (self);
          if (!g_atomic_int_get (&self->is_writer))
            return_task (self, item, NULL, TRUE,
                         g_error_new (OD_CACHE_ERROR, OD_CACHE_ERROR_BUSY,
                                      "another process writes this cache"));
          else if (do_rebuild (self, &error))
            {
              self->bulk = FALSE;
              return_task (self, item, GINT_TO_POINTER (TRUE), TRUE, NULL);
              post_notify (self, 0, FALSE, TRUE, NULL);
              call_gap_func (self, 0, -1, -1);
            }
          else
            return_task (self, item, NULL, TRUE, g_steal_pointer (&error));
          break;

        case ITEM_TAKEOVER:
          {
            gint64 applied = read_applied (self->wdb);

            /* The writer that held the lock has gone: this process
             * applies events from what it committed.  The sync engine
             * handed events to this cache that were dropped meanwhile: it
             * starts again from the checkpoint, as after a rebuild. */
            set_applied (self, applied);
            g_atomic_int_set (&self->is_writer, TRUE);
            writer_startup (self);
            post_notify (self, applied, TRUE, FALSE, NULL);
            call_gap_func (self, applied, -1, -1);
          }
          break;

        case ITEM_STOP:
          if (!commit_tx (self, &error))
            g_warning ("last cache commit failed: %s", error->message);
          if (self->bulk)
            bulk_end (self);
          running = FALSE;
          break;

        default:
          g_assert_not_reached ();
        }
      writer_item_free (item);
    }
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

static void
complete_waiters (OdCache *self,
                  gint64   applied)
{
  GList *l = self->waiters;

  while (l != NULL)
    {
      GList *next = l->next;
      Waiter *w = l->data;

      if (w->position <= applied)
        {
          self->waiters = g_list_delete_link (self->waiters, l);
          if (w->cancel_id)
            g_cancellable_disconnect (g_task_get_cancellable (w->task), w->cancel_id);
          g_task_return_boolean (w->task, TRUE);
          g_object_unref (w->task);
          g_free (w);
        }
      l = next;
    }
}

static void
od_cache_dispose (GObject *object)
{
  OdCache *self = OD_CACHE (object);

  od_cache_close (self);
  G_OBJECT_CLASS (od_cache_parent_class)->dispose (object);
}

static void
od_cache_finalize (GObject *object)
{
  OdCache *self = OD_CACHE (object);

  g_clear_pointer (&self->read_stmts, g_hash_table_unref);
  if (self->db)
    sqlite3_close (self->db);
  g_clear_pointer (&self->queue, g_async_queue_unref);
  g_clear_pointer (&self->working, g_hash_table_unref);
  g_clear_pointer (&self->main_context, g_main_context_unref);
  g_free (self->path);
  g_free (self->outbox_signature);
  g_mutex_clear (&self->applied_lock);
  g_mutex_clear (&self->queue_lock);
  g_mutex_clear (&self->gap_lock);
  g_cond_clear (&self->queue_cond);
  G_OBJECT_CLASS (od_cache_parent_class)->finalize (object);
}

static void
od_cache_class_init (OdCacheClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_cache_dispose;
  object_class->finalize = od_cache_finalize;

  signals[SIGNAL_APPLIED] = g_signal_new ("applied", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT64);
  signals[SIGNAL_RESET] = g_signal_new ("reset", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                        NULL, NULL, NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_OUTBOX_CHANGED] = g_signal_new ("outbox-changed", G_TYPE_FROM_CLASS (klass),
                                                 G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                                 G_TYPE_NONE, 0);
  signals[SIGNAL_WRITE_FAILED] = g_signal_new ("write-failed", G_TYPE_FROM_CLASS (klass),
                                               G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                               G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void
od_cache_init (OdCache *self)
{
  self->max_transaction = 100000;
  self->bulk_threshold = BULK_THRESHOLD;
  self->read_stmts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify) sqlite3_finalize);
  self->working = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                         (GDestroyNotify) working_free);
  self->queue = g_async_queue_new ();
  self->lock_fd = -1;
  g_mutex_init (&self->applied_lock);
  g_mutex_init (&self->queue_lock);
  g_mutex_init (&self->gap_lock);
  g_cond_init (&self->queue_cond);
}

char *
od_cache_default_path (const char *server_url)
{
  g_autofree char *dir = g_build_filename (g_get_user_data_dir (), "orderdesk", NULL);
  g_autofree char *profile = NULL;
  g_autofree char *file = NULL;
  const char *p = server_url ? server_url : "default";
  GString *s = g_string_new (NULL);

  if (g_str_has_prefix (p, "http://") || g_str_has_prefix (p, "https://"))
    {
      g_string_append (s, g_str_has_prefix (p, "https") ? "https_" : "http_");
      p = strstr (p, "://") + 3;
    }
  for (; *p; p++)
    {
      char c = *p;

      if (g_ascii_isalnum (c) || c == '.' || c == '-')
        g_string_append_c (s, c);
      else if (s->len > 0 && s->str[s->len - 1] != '_')
        g_string_append_c (s, '_');
    }
  while (s->len > 0 && s->str[s->len - 1] == '_')
    g_string_truncate (s, s->len - 1);
  if (s->len == 0)
    g_string_append (s, "default");
  profile = g_string_free (s, FALSE);
  g_mkdir_with_parents (dir, 0700);
  file = g_strconcat (profile, ".sqlite", NULL);
  return g_build_filename (dir, file, NULL);
}

/* One process at a time writes a cache: the one that holds an flock()
 * on the sidecar PATH.lock, for as long as its OdCache is open.  A
 * sidecar flock rather than SQLite's own locks: those last one
 * transaction, while the writer's claim must last its life (two writers
 * each holding a checkpoint in memory collide on order_events.position);
 * holding a SQLite write transaction that long would shut out every
 * outbox write of the other processes.  flock() is also independent of
 * the POSIX locks SQLite takes on the database itself (closing any
 * descriptor of a file drops a process's POSIX locks on it), and the
 * kernel releases it when the process dies, so a crash never leaves a
 * stale lock.  The file is created 0600 next to the cache. */
static gboolean
take_writer_lock (OdCache *self)
{
  if (self->lock_fd < 0)
    {
      g_autofree char *lock_path = g_strconcat (self->path, ".lock", NULL);

      self->lock_fd = g_open (lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (self->lock_fd < 0)
        {
          g_warning ("cannot open %s: %s; following other writers only", lock_path,
                     g_strerror (errno));
          return FALSE;
        }
    }
  return flock (self->lock_fd, LOCK_EX | LOCK_NB) == 0;
}

/* Followers: what other processes committed (the writer's events, their
 * outbox writes) shows here within a tenth of a second.  PRAGMA
 * data_version changes only when another connection commits, so an idle
 * cache costs one pragma per tick.  A follower also takes the writer's
 * place as soon as the lock is free. */
static gboolean
watch_cb (gpointer data)
{
  OdCache *self = data;
  sqlite3_stmt *st;
  gint64 version = -1;

  if (self->closed || self->db == NULL)
    return G_SOURCE_CONTINUE;
  if (!g_atomic_int_get (&self->is_writer) && !self->takeover_queued && take_writer_lock (self))
    {
      WriterItem *item = g_new0 (WriterItem, 1);

      self->takeover_queued = TRUE;
      item->kind = ITEM_TAKEOVER;
      writer_submit (self, item);
    }
  st = od_cache_prepare_read (self, "PRAGMA data_version", NULL);
  if (st != NULL && sqlite3_step (st) == SQLITE_ROW)
    version = sqlite3_column_int64 (st, 0);
  if (st != NULL)
    sqlite3_reset (st);
  if (version == self->data_version)
    return G_SOURCE_CONTINUE;
  self->data_version = version;

  if (!g_atomic_int_get (&self->is_writer))
    {
      gint64 applied = read_applied (self->db);

      if (applied != od_cache_get_applied_position (self))
        {
          set_applied (self, applied);
          g_signal_emit (self, signals[SIGNAL_APPLIED], 0, applied);
          complete_waiters (self, applied);
        }
    }
  /* The outbox may have changed in another process (a submit beside the
   * console): tell the outbox and the views when it did. */
  st = od_cache_prepare_read (self,
                              "SELECT count(*), max(id), total(state), total(attempts),"
                              " total(answered_at), total(visible_at), total(claim_at),"
                              " group_concat(coalesce(identity_fp, '-'))"
                              " FROM pending_commands WHERE state IN " OD_OUTBOX_SQL_NOT_FINAL
                              "   OR answered_at > ?1",
                              NULL);
  if (st != NULL)
    {
      g_autofree char *signature = NULL;

      sqlite3_bind_int64 (st, 1, g_get_real_time () - 60 * G_USEC_PER_SEC);
      od_outbox_store_bind_states (st);
      if (sqlite3_step (st) == SQLITE_ROW)
        signature = g_strdup_printf ("%lld/%lld/%g/%g/%g/%g/%g/%s",
                                     (long long) sqlite3_column_int64 (st, 0),
                                     (long long) sqlite3_column_int64 (st, 1),
                                     sqlite3_column_double (st, 2), sqlite3_column_double (st, 3),
                                     sqlite3_column_double (st, 4), sqlite3_column_double (st, 5),
                                     sqlite3_column_double (st, 6),
                                     (const char *) sqlite3_column_text (st, 7));
      sqlite3_reset (st);
      if (signature != NULL && g_strcmp0 (signature, self->outbox_signature) != 0)
        {
          gboolean first = self->outbox_signature == NULL;

          g_free (self->outbox_signature);
          self->outbox_signature = g_steal_pointer (&signature);
          if (!first)
            g_signal_emit (self, signals[SIGNAL_OUTBOX_CHANGED], 0);
        }
    }
  return G_SOURCE_CONTINUE;
}

gboolean
od_cache_is_writer (OdCache *self)
{
  g_return_val_if_fail (OD_IS_CACHE (self), FALSE);
  return g_atomic_int_get (&self->is_writer);
}

static gboolean
open_and_migrate (OdCache  *self,
                  GError  **error)
{
  static gsize configured = 0;

  /* SQLite's allocation statistics take a global mutex on every malloc;
   * nothing here reads them.  Only possible before SQLite initializes,
   * so it is tried once and a refusal is harmless. */
  if (g_once_init_enter (&configured))
    {
      sqlite3_config (SQLITE_CONFIG_MEMSTATUS, 0);
      g_once_init_leave (&configured, 1);
    }

  self->wdb = open_connection (self->path, TRUE, error);
  if (self->wdb == NULL)
    return FALSE;
  if (!migrate (self->wdb, &self->search_upgrade, error))
    {
      sqlite3_close (self->wdb);
      self->wdb = NULL;
      return FALSE;
    }
  return TRUE;
}

/* The setup lock: a POSIX (fcntl) lock on the first byte of PATH.lock,
 * held while a cache is opened and migrated.  POSIX and flock() locks are
 * independent on local file systems (and SQLite's WAL needs a local one),
 * so this works beside the writer's flock(). */
static void
setup_lock (OdCache  *self,
            gboolean  lock)
{
  struct flock fl = { 0 };

  if (self->lock_fd < 0)
    return;
  fl.l_type = lock ? F_WRLCK : F_UNLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  while (fcntl (self->lock_fd, lock ? F_SETLKW : F_SETLK, &fl) != 0 && errno == EINTR)
    ;
}

static gboolean
open_connections (OdCache  *self,
                  GError  **error)
{
  const char *path = self->path;

  if (!open_and_migrate (self, error))
    {
      /* A file that is not a database (or is damaged beyond use) is
       * only a cache: start it again. */
      if (self->is_writer && g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA))
        {
          g_autofree char *wal = g_strconcat (path, "-wal", NULL);
          g_autofree char *shm = g_strconcat (path, "-shm", NULL);

          g_message ("cache %s is damaged; starting it again", path);
          g_clear_error (error);
          g_unlink (path);
          g_unlink (wal);
          g_unlink (shm);
          if (!open_and_migrate (self, error))
            return FALSE;
        }
      else
        return FALSE;
    }
  if (!prepare_writer_statements (self, error))
    return FALSE;
  self->applied = read_applied (self->wdb);

  self->db = open_connection (path, FALSE, error);
  if (self->db == NULL)
    return FALSE;

  return TRUE;
}

OdCache *
od_cache_open (const char  *path,
               GError     **error)
{
  g_autoptr(OdCache) self = NULL;
  g_autofree char *dir = NULL;
  g_autoptr(GError) local = NULL;
  gboolean ok;

  g_return_val_if_fail (path != NULL, NULL);
  if (error == NULL)
    error = &local;

  dir = g_path_get_dirname (path);
  g_mkdir_with_parents (dir, 0700);

  self = g_object_new (OD_TYPE_CACHE, NULL);
  self->path = g_strdup (path);
  self->main_context = g_main_context_ref_thread_default ();
  /* Taken before the schema is looked at: only the writer may start a
   * damaged file again. */
  self->is_writer = take_writer_lock (self);

  /* Opening (WAL mode set on a new file) and migrating are one process
   * at a time: two processes starting together on a new file otherwise
   * meet in SQLite's lock upgrades, where its busy handler is not
   * called ("database is locked"). */
  setup_lock (self, TRUE);
  ok = open_connections (self, error);
  setup_lock (self, FALSE);
  if (!ok)
    return NULL;

  self->writer = g_thread_new ("od-cache-writer", writer_thread, self);
  self->data_version = -1;
  self->watch = g_timeout_source_new (100);
  g_source_set_callback (self->watch, watch_cb, self, NULL);
  g_source_set_static_name (self->watch, "od-cache-watch");
  g_source_attach (self->watch, self->main_context);
  watch_cb (self);
  return g_steal_pointer (&self);
}

void
od_cache_close (OdCache *self)
{
  WriterItem *item;

  if (self->closed)
    return;
  if (self->watch != NULL)
    {
      g_source_destroy (self->watch);
      g_clear_pointer (&self->watch, g_source_unref);
    }
  g_mutex_lock (&self->queue_lock);
  self->closed = TRUE;
  if (self->upgrading)
    sqlite3_interrupt (self->wdb);
  g_cond_broadcast (&self->queue_cond);
  g_mutex_unlock (&self->queue_lock);
  if (self->writer != NULL)
    {
      item = g_new0 (WriterItem, 1);
      item->kind = ITEM_STOP;
      g_async_queue_push (self->queue, item);
      g_thread_join (self->writer);
      self->writer = NULL;
    }
  /* Nothing is queued behind ITEM_STOP (writer_submit), but should
   * anything be, its caller must not wait for a writer that has gone. */
  while ((item = g_async_queue_try_pop (self->queue)) != NULL)
    writer_item_refuse (item);
  finalize_writer_statements (self);
  if (self->wdb)
    {
      sqlite3_close (self->wdb);
      self->wdb = NULL;
    }
  /* Released only now: everything this process wrote is committed. */
  if (self->lock_fd >= 0)
    {
      close (self->lock_fd);
      self->lock_fd = -1;
      g_atomic_int_set (&self->is_writer, FALSE);
    }
  while (self->waiters)
    {
      Waiter *w = self->waiters->data;

      self->waiters = g_list_delete_link (self->waiters, self->waiters);
      if (w->cancel_id)
        g_cancellable_disconnect (g_task_get_cancellable (w->task), w->cancel_id);
      g_task_return_new_error (w->task, OD_CACHE_ERROR, OD_CACHE_ERROR_CLOSED,
                               "the cache was closed");
      g_object_unref (w->task);
      g_free (w);
    }
}

const char *
od_cache_get_path (OdCache *self)
{
  return self->path;
}

sqlite3 *
od_cache_get_db (OdCache *self)
{
  return self->db;
}

gint64
od_cache_get_applied_position (OdCache *self)
{
  gint64 applied;

  g_mutex_lock (&self->applied_lock);
  applied = self->applied;
  g_mutex_unlock (&self->applied_lock);
  return applied;
}

sqlite3_stmt *
od_cache_prepare_read (OdCache     *self,
                       const char  *sql,
                       GError     **error)
{
  sqlite3_stmt *stmt = g_hash_table_lookup (self->read_stmts, sql);

  if (stmt != NULL)
    {
      sqlite3_reset (stmt);
      sqlite3_clear_bindings (stmt);
      return stmt;
    }
  if (sqlite3_prepare_v3 (self->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK)
    {
      od_cache_set_sqlite_error (error, self->db, "query");
      return NULL;
    }
  g_hash_table_insert (self->read_stmts, g_strdup (sql), stmt);
  return stmt;
}

gboolean
od_cache_get_sync_state (OdCache     *self,
                         OdSyncState *state,
                         GError     **error)
{
  sqlite3_stmt *st = od_cache_prepare_read (self,
                                            "SELECT applied_position, known_head,"
                                            " last_contact_at, last_event_at, server_url"
                                            " FROM sync_state WHERE id = 1",
                                            error);
  int rc;

  memset (state, 0, sizeof *state);
  if (st == NULL)
    return FALSE;
  rc = sqlite3_step (st);
  if (rc == SQLITE_ROW)
    {
      state->applied_position = sqlite3_column_int64 (st, 0);
      state->known_head = sqlite3_column_int64 (st, 1);
      state->last_contact_at = sqlite3_column_int64 (st, 2);
      state->last_event_at = sqlite3_column_int64 (st, 3);
      state->server_url = column_strdup (st, 4);
    }
  sqlite3_reset (st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    {
      od_cache_set_sqlite_error (error, self->db, "sync state");
      return FALSE;
    }
  return TRUE;
}

gboolean
od_cache_get_status_counts (OdCache  *self,
                            gint64    counts[OD_STATUS_N],
                            GError  **error)
{
  sqlite3_stmt *st = od_cache_prepare_read (self, "SELECT status, n FROM status_counts", error);
  int rc;

  memset (counts, 0, sizeof (gint64) * OD_STATUS_N);
  if (st == NULL)
    return FALSE;
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      OdOrderStatus status;

      if (od_order_status_from_name ((const char *) sqlite3_column_text (st, 0), &status))
        {
          counts[status] = sqlite3_column_int64 (st, 1);
          counts[0] += counts[status];
        }
    }
  sqlite3_reset (st);
  if (rc != SQLITE_DONE)
    {
      od_cache_set_sqlite_error (error, self->db, "status counts");
      return FALSE;
    }
  return TRUE;
}

void
od_cache_push_events (OdCache   *self,
                      GPtrArray *events,
                      gint64     known_head)
{
  WriterItem *item = g_new0 (WriterItem, 1);

  item->kind = ITEM_EVENTS;
  item->events = events;
  item->known_head = known_head;
  /* A bounded queue: a producer faster than the disk waits here (and,
   * through the socket, the server waits for it) instead of growing
   * memory. */
  g_mutex_lock (&self->queue_lock);
  while (self->queued_events > MAX_QUEUED_EVENTS && !self->closed)
    g_cond_wait (&self->queue_cond, &self->queue_lock);
  if (self->closed)
    {
      /* Dropped, as a follower drops them: the cache is gone. */
      g_mutex_unlock (&self->queue_lock);
      writer_item_free (item);
      return;
    }
  self->queued_events += events->len;
  g_async_queue_push (self->queue, item);
  g_mutex_unlock (&self->queue_lock);
}

void
od_cache_set_max_transaction (OdCache *self,
                              guint    max_events)
{
  self->max_transaction = MAX (max_events, 1);
}

void
od_cache_set_bulk_threshold (OdCache *self,
                             gint64   events)
{
  self->bulk_threshold = events;
}

void
od_cache_set_gap_func (OdCache        *self,
                       OdCacheGapFunc  func,
                       gpointer        user_data)
{
  g_mutex_lock (&self->gap_lock);
  self->gap_func = func;
  self->gap_data = user_data;
  g_mutex_unlock (&self->gap_lock);
}

void
od_cache_note_contact (OdCache    *self,
                       gint64      known_head,
                       gint64      contact_usec,
                       const char *server_url)
{
  WriterItem *item = g_new0 (WriterItem, 1);

  item->kind = ITEM_CONTACT;
  item->known_head = known_head;
  item->contact_usec = contact_usec;
  item->server_url = g_strdup (server_url);
  writer_submit (self, item);
}

gboolean
od_cache_flush (OdCache  *self,
                GError  **error)
{
  GMutex mutex;
  GCond cond;
  gboolean done = FALSE;
  gboolean refused = FALSE;
  WriterItem *item = g_new0 (WriterItem, 1);

  g_mutex_init (&mutex);
  g_cond_init (&cond);
  item->kind = ITEM_FLUSH;
  item->flush_mutex = &mutex;
  item->flush_cond = &cond;
  item->flush_done = &done;
  item->flush_refused = &refused;
  writer_submit (self, item);
  g_mutex_lock (&mutex);
  while (!done)
    g_cond_wait (&cond, &mutex);
  g_mutex_unlock (&mutex);
  g_mutex_clear (&mutex);
  g_cond_clear (&cond);
  if (refused)
    {
      g_set_error (error, OD_CACHE_ERROR, OD_CACHE_ERROR_CLOSED, "the cache was closed");
      return FALSE;
    }
  return TRUE;
}

typedef struct
{
  OdCache *cache;
  guint64  id;
} CancelData;

static gboolean
cancel_waiter_main (gpointer data)
{
  CancelData *cd = data;
  OdCache *self = cd->cache;

  for (GList *l = self->waiters; l != NULL; l = l->next)
    {
      Waiter *w = l->data;

      if (w->id != cd->id)
        continue;
      self->waiters = g_list_delete_link (self->waiters, l);
      g_task_return_new_error (w->task, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                               "waiting for the position was cancelled");
      g_object_unref (w->task);
      g_free (w);
      break;
    }
  return G_SOURCE_REMOVE;
}

static void
cancel_data_free (CancelData *cd)
{
  g_object_unref (cd->cache);
  g_free (cd);
}

/* Runs where cancel was called; the waiter list belongs to the owner
 * thread, so the work is sent there. */
static void
waiter_cancelled (GCancellable *cancellable,
                  CancelData   *template)
{
  CancelData *cd = g_new0 (CancelData, 1);

  cd->cache = g_object_ref (template->cache);
  cd->id = template->id;
  od_core_invoke (cd->cache->main_context, G_PRIORITY_DEFAULT, cancel_waiter_main,
                              cd, (GDestroyNotify) cancel_data_free);
}

void
od_cache_wait_position_async (OdCache            *self,
                              gint64              position,
                              GCancellable       *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer            user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  Waiter *w;

  g_task_set_source_tag (task, od_cache_wait_position_async);
  if (od_cache_get_applied_position (self) >= position)
    {
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
      return;
    }
  w = g_new0 (Waiter, 1);
  w->task = task;
  w->position = position;
  w->id = ++self->next_waiter_id;
  self->waiters = g_list_prepend (self->waiters, w);
  if (cancellable)
    {
      CancelData *cd = g_new0 (CancelData, 1);

      /* The handler holds no reference: it is disconnected before the
       * waiter goes away, and the cache outlives its waiters. */
      cd->cache = self;
      cd->id = w->id;
      w->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (waiter_cancelled), cd,
                                            g_free);
    }
}

gboolean
od_cache_wait_position_finish (OdCache       *self,
                               GAsyncResult  *result,
                               GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
od_cache_rebuild_async (OdCache            *self,
                        GCancellable       *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer            user_data)
{
  WriterItem *item = g_new0 (WriterItem, 1);

  item->kind = ITEM_REBUILD;
  item->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (item->task, od_cache_rebuild_async);
  writer_submit (self, item);
}

gboolean
od_cache_rebuild_finish (OdCache       *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

void
od_cache_write_async (OdCache            *self,
                      OdCacheWriteFunc    func,
                      gpointer            data,
                      GDestroyNotify      data_free,
                      GCancellable       *cancellable,
                      GAsyncReadyCallback callback,
                      gpointer            user_data)
{
  od_cache_write_async_full (self, TRUE, func, data, data_free, cancellable, callback, user_data);
}

void
od_cache_write_async_full (OdCache            *self,
                           gboolean            durable,
                           OdCacheWriteFunc    func,
                           gpointer            data,
                           GDestroyNotify      data_free,
                           GCancellable       *cancellable,
                           GAsyncReadyCallback callback,
                           gpointer            user_data)
{
  WriterItem *item = g_new0 (WriterItem, 1);

  item->durable = durable;
  item->kind = ITEM_JOB;
  item->func = func;
  item->func_data = data;
  item->func_data_free = data_free;
  item->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (item->task, od_cache_write_async);
  writer_submit (self, item);
}

gpointer
od_cache_write_finish (OdCache       *self,
                       GAsyncResult  *result,
                       GError       **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

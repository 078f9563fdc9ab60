/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-store-sqlite.h"
#include "od-wal-vfs.h"
#include "od-digest.h"
#include "od-sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 2: frame_blocks, the SSE frames of the events, FRAME_BLOCK a row. */
#define SCHEMA_VERSION 2

/* Block k holds the frames of positions k * FRAME_BLOCK + 1 to
 * (k + 1) * FRAME_BLOCK, od_event_append_sse ()'s bytes one after the
 * other, written in the transaction of its last event.  Replay copies a
 * block at a time instead of reading and formatting each event's row
 * (0.10 against 0.41 us of server CPU an event).  The events table stays
 * the truth: a missing block is read from the rows.  A change to the
 * frame format or to this size must bump the schema version and empty
 * frame_blocks (the builder thread then makes them again). */
#define FRAME_BLOCK 256

/* An event's columns in the order event_from_row () reads them. */
#define EVENT_COLUMNS "position, prev, order_id, version, type, recorded_at, actor, data"

/* The aggregate cache is reset when it grows past this many orders; the
 * fold from the log is cheap enough for the rare miss after a reset. */
#define MAX_CACHED_ORDERS 200000
#define MAX_READERS       8
/* Address space each reader may map of the store file (1 GiB). */
#define READER_MMAP_BYTES 1073741824

typedef struct
{
  sqlite3      *db;
  sqlite3_stmt *events;
  sqlite3_stmt *range;    /* events after ?1, up to ?2, at most ?3 */
  sqlite3_stmt *block;
  GString      *frame;    /* a row's frame, formatted */
  sqlite3_stmt *digest;
  sqlite3_stmt *head;
  sqlite3_stmt *begin;
  sqlite3_stmt *commit;
} Reader;

struct _OdStoreSqlite
{
  GObject       parent_instance;

  char         *path;

  /* Writer side: touched only by execute (), which the server calls from
   * one thread at a time. */
  sqlite3      *db;
  sqlite3_stmt *st_begin;
  sqlite3_stmt *st_commit;
  sqlite3_stmt *st_rollback;
  sqlite3_stmt *st_idem_get;
  sqlite3_stmt *st_idem_put;
  sqlite3_stmt *st_idem_purge;
  sqlite3_stmt *st_insert;
  sqlite3_stmt *st_order_events;
  sqlite3_stmt *st_max;
  sqlite3_stmt *st_block_put;
  sqlite3_stmt *st_block_rows;
  gboolean      keep_blocks; /* frame blocks are written (the default) */
  /* Builds the blocks that older servers, or this one with blocks off,
   * did not write, on a connection of its own. */
  GThread      *backfill;
  gint          backfill_stop; /* atomic */
  GString      *block;      /* the frames of the block being filled */
  gboolean      block_whole; /* it holds every frame from its start on */
  GHashTable   *orders;     /* order_id → OdOrder, committed state only */
  gint64        last_position;
  gint64        last_purge;
  GString      *frame;      /* reused to format each appended event */

  GMutex        readers_lock;
  GPtrArray    *readers;    /* idle Reader pool */

  /* Damaged frame blocks already logged, so that each is logged once
   * and not at every replay that reads it. */
  GMutex        damaged_lock;
  GHashTable   *damaged;

  /* Readiness checks: a read-write connection of their own. */
  GMutex        check_lock;
  sqlite3      *checker;
};

static void od_store_sqlite_iface_init (OdStoreInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (OdStoreSqlite, od_store_sqlite, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (OD_TYPE_STORE, od_store_sqlite_iface_init))

/* The store holds customer names and e-mail addresses: only its owner
 * may read it.  SQLite gives the -wal and -shm files the mode of the
 * database file, so creating that one 0600 is enough; a store made
 * readable by others earlier is tightened. */
static gboolean
protect_files (const char  *path,
               GError     **error)
{
  int fd;

  if (g_str_equal (path, ":memory:") || g_str_has_prefix (path, "file:"))
    return TRUE;
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0)
    {
      close (fd);
      return TRUE;
    }
  if (errno != EEXIST)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "cannot create %s: %s",
                   path, g_strerror (saved));
      return FALSE;
    }
  for (guint i = 0; i < 3; i++)
    {
      g_autofree char *name = g_strconcat (path, (const char *[]) { "", "-wal", "-shm" }[i], NULL);
      GStatBuf st;

      if (g_stat (name, &st) == 0 && (st.st_mode & 077) != 0 && S_ISREG (st.st_mode))
        {
          if (g_chmod (name, st.st_mode & 0700) != 0)
            g_warning ("%s is readable by others and cannot be changed: %s", name,
                       g_strerror (errno));
          else
            g_message ("%s was readable by others; now only by its owner", name);
        }
    }
  return TRUE;
}

static sqlite3 *
open_db (const char  *path,
         GError     **error)
{
  sqlite3 *db = NULL;

  if (!protect_files (path, error))
    return NULL;
  /* The writer's connection writes each commit's log frames at once
   * (od-wal-vfs.c); readers and the block backfill use SQLite's own. */
  if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                       od_wal_vfs_register ()) != SQLITE_OK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot open %s: %s", path,
                   db ? sqlite3_errmsg (db) : "out of memory");
      sqlite3_close (db);
      return NULL;
    }
  sqlite3_busy_timeout (db, 10000);
  /* WAL with synchronous=FULL fsyncs the log at every commit: a success is
   * only answered once its transaction is on disk.  The writer checkpoints
   * every 10,000 frames (about 40 MiB of log), not SQLite's 1,000: a
   * command's random key page and the shared pages at the end of each
   * table are then copied into the database once for many commits, and
   * the database is synced less often (benchmarks.md, session 14).
   *
   * The page cache is 8 MiB, not 64: SQLite 3.40's B-tree balance parks a
   * page at the lock-byte page number (262,145) while it reorders
   * siblings, and the commit then walks the cache's whole hash table to
   * drop pages beyond the database's end.  Random Idempotency-Keys make
   * such a balance in most commits; with 64 MiB that walk grew with the
   * cache to 45 % of the writer's time, and commands/s fell by a third
   * in the first minute of sustained load (benchmarks.md, session 17).
   * The pages that matter (the tables' upper levels, their ends) fit in
   * 8 MiB; a random key's leaf is not in the cache at either size. */
  if (!od_sqlite_exec (db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-8192;"
                       "PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=10000;", NULL, error))
    {
      sqlite3_close (db);
      return NULL;
    }
  return db;
}

static gboolean
migrate (sqlite3  *db,
         GError  **error)
{
  sqlite3_stmt *stmt = NULL;
  int version = 0;

  if (sqlite3_prepare_v2 (db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK)
    return od_sqlite_set_error (error, db, "user_version");
  if (sqlite3_step (stmt) == SQLITE_ROW)
    version = sqlite3_column_int (stmt, 0);
  sqlite3_finalize (stmt);

  if (version > SCHEMA_VERSION)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "the store has schema version %d; this server knows up to %d", version,
                   SCHEMA_VERSION);
      return FALSE;
    }
  if (version == 0)
    {
      if (!od_sqlite_exec (db,
                           "BEGIN IMMEDIATE;"
                           "CREATE TABLE IF NOT EXISTS events ("
                           "  position INTEGER PRIMARY KEY,"
                           "  prev INTEGER NOT NULL,"
                           "  order_id TEXT NOT NULL,"
                           "  version INTEGER NOT NULL,"
                           "  type TEXT NOT NULL,"
                           "  recorded_at TEXT NOT NULL,"
                           "  actor TEXT NOT NULL,"
                           "  data TEXT NOT NULL,"
                           "  UNIQUE (order_id, version));"
                           "CREATE TABLE IF NOT EXISTS idempotency ("
                           "  actor TEXT NOT NULL,"
                           "  key TEXT NOT NULL,"
                           "  body_sha256 BLOB NOT NULL,"
                           "  status INTEGER NOT NULL,"
                           "  response TEXT NOT NULL,"
                           "  created_at INTEGER NOT NULL,"
                           "  PRIMARY KEY (actor, key)) WITHOUT ROWID;"
                           "CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);"
                           "PRAGMA user_version = 1;"
                           "COMMIT;",
                           NULL, error))
        {
          od_sqlite_exec (db, "ROLLBACK", NULL, NULL);
          return FALSE;
        }
      version = 1;
    }
  if (version == 1)
    {
      /* Instant: the older events' blocks are built after the open, in
       * the background (backfill_start ()); until then replay reads their
       * rows, as before. */
      if (!od_sqlite_exec (db,
                           "BEGIN IMMEDIATE;"
                           "CREATE TABLE IF NOT EXISTS frame_blocks ("
                           "  block INTEGER PRIMARY KEY,"
                           "  frames BLOB NOT NULL);"
                           "PRAGMA user_version = 2;"
                           "COMMIT;",
                           NULL, error))
        {
          od_sqlite_exec (db, "ROLLBACK", NULL, NULL);
          return FALSE;
        }
    }
  return TRUE;
}

static void
reader_free (Reader *reader)
{
  sqlite3_finalize (reader->events);
  sqlite3_finalize (reader->range);
  sqlite3_finalize (reader->block);
  if (reader->frame != NULL)
    g_string_free (reader->frame, TRUE);
  sqlite3_finalize (reader->digest);
  sqlite3_finalize (reader->head);
  sqlite3_finalize (reader->begin);
  sqlite3_finalize (reader->commit);
  sqlite3_close (reader->db);
  g_free (reader);
}

static Reader *
reader_acquire (OdStoreSqlite  *self,
                GError        **error)
{
  Reader *reader = NULL;

  g_mutex_lock (&self->readers_lock);
  if (self->readers->len > 0)
    reader = g_ptr_array_steal_index_fast (self->readers, self->readers->len - 1);
  g_mutex_unlock (&self->readers_lock);
  if (reader != NULL)
    return reader;

  reader = g_new0 (Reader, 1);
  if (sqlite3_open_v2 (self->path, &reader->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                       NULL) != SQLITE_OK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot open %s for reading",
                   self->path);
      reader_free (reader);
      return NULL;
    }
  sqlite3_busy_timeout (reader->db, 10000);
  /* Replay and pages read every page of the log: mapped, SQLite reads
   * them in place instead of a pread() and a copy each (the main file
   * only; what is still in the WAL is read as before). */
  sqlite3_exec (reader->db, "PRAGMA mmap_size=" G_STRINGIFY (READER_MMAP_BYTES), NULL, NULL,
                NULL);
  if (!od_sqlite_prepare_persistent (reader->db,
                   "SELECT " EVENT_COLUMNS " "
                   "FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
                   &reader->events, error)
      || !od_sqlite_prepare_persistent (reader->db,
                   "SELECT " EVENT_COLUMNS " "
                   "FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position "
                   "LIMIT ?3",
                   &reader->range, error)
      || !od_sqlite_prepare_persistent (reader->db,
                   "SELECT frames FROM frame_blocks WHERE block = ?1", &reader->block, error)
      || !od_sqlite_prepare_persistent (reader->db,
                   "SELECT position, order_id, version, type, recorded_at, actor, data "
                   "FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position",
                   &reader->digest, error)
      || !od_sqlite_prepare_persistent (reader->db,
                   "SELECT coalesce(max(position), 0) FROM events", &reader->head,
                   error)
      || !od_sqlite_prepare_persistent (reader->db, "BEGIN", &reader->begin, error)
      || !od_sqlite_prepare_persistent (reader->db, "COMMIT", &reader->commit, error))
    {
      reader_free (reader);
      return NULL;
    }
  return reader;
}

static void
reader_release (OdStoreSqlite *self,
                Reader        *reader)
{
  g_mutex_lock (&self->readers_lock);
  if (self->readers->len < MAX_READERS)
    {
      g_ptr_array_add (self->readers, reader);
      reader = NULL;
    }
  g_mutex_unlock (&self->readers_lock);
  if (reader != NULL)
    reader_free (reader);
}

static gboolean
read_head (Reader  *reader,
           gint64  *head,
           GError **error)
{
  gboolean ok = sqlite3_step (reader->head) == SQLITE_ROW;

  if (ok)
    *head = sqlite3_column_int64 (reader->head, 0);
  else
    od_sqlite_set_error (error, reader->db, "head");
  sqlite3_reset (reader->head);
  return ok;
}

/* A pooled reader in a read transaction of its own, so that the head
 * (into HEAD) and what is read after agree. */
static Reader *
read_begin (OdStoreSqlite  *self,
            gint64         *head,
            GError        **error)
{
  Reader *reader = reader_acquire (self, error);

  if (reader == NULL)
    return NULL;
  sqlite3_step (reader->begin);
  sqlite3_reset (reader->begin);
  if (!read_head (reader, head, error))
    {
      od_sqlite_exec (reader->db, "ROLLBACK", NULL, NULL);
      reader_release (self, reader);
      return NULL;
    }
  return reader;
}

/* Ends READER's transaction (rolled back after a failure) and gives it
 * back to the pool. */
static void
read_end (OdStoreSqlite *self,
          Reader        *reader,
          gboolean       ok)
{
  if (ok)
    {
      sqlite3_step (reader->commit);
      sqlite3_reset (reader->commit);
    }
  else
    od_sqlite_exec (reader->db, "ROLLBACK", NULL, NULL);
  reader_release (self, reader);
}

static GPtrArray *
od_store_sqlite_read_events (OdStore  *store,
                             gint64    after,
                             guint     limit,
                             gint64   *head,
                             GError  **error)
{
  OdStoreSqlite *self = OD_STORE_SQLITE (store);
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  Reader *reader;
  gint64 h = 0;
  int rc;

  if ((reader = read_begin (self, &h, error)) == NULL)
    return NULL;
  sqlite3_bind_int64 (reader->events, 1, after);
  sqlite3_bind_int64 (reader->events, 2, limit);
  while ((rc = sqlite3_step (reader->events)) == SQLITE_ROW)
    {
      OdEvent *event = od_event_new ();
      const char *order_id = (const char *) sqlite3_column_text (reader->events, 2);

      event->position = sqlite3_column_int64 (reader->events, 0);
      event->prev = sqlite3_column_int64 (reader->events, 1);
      g_strlcpy (event->order_id, order_id ? order_id : "", sizeof event->order_id);
      event->version = sqlite3_column_int64 (reader->events, 3);
      event->type = g_strdup ((const char *) sqlite3_column_text (reader->events, 4));
      event->recorded_at = g_strdup ((const char *) sqlite3_column_text (reader->events, 5));
      event->actor = g_strdup ((const char *) sqlite3_column_text (reader->events, 6));
      event->data = g_strdup ((const char *) sqlite3_column_text (reader->events, 7));
      g_ptr_array_add (events, event);
    }
  sqlite3_reset (reader->events);
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, reader->db, "read events");
      read_end (self, reader, FALSE);
      return NULL;
    }
  read_end (self, reader, TRUE);
  if (head != NULL)
    *head = h;
  return g_steal_pointer (&events);
}

/* The row of STMT (EVENT_COLUMNS) as an event whose strings are borrowed
 * from the column buffers: valid until the statement steps or resets. */
static void
event_from_row (sqlite3_stmt *stmt,
                OdEvent      *event)
{
  const char *order_id = (const char *) sqlite3_column_text (stmt, 2);
  gsize order_id_len = order_id ? (gsize) sqlite3_column_bytes (stmt, 2) : 0;

  /* What g_strlcpy () made of it, without scanning or zeroing more
   * than the id: a replay visits millions of rows. */
  order_id_len = MIN (order_id_len, sizeof event->order_id - 1);
  if (order_id_len > 0)
    memcpy (event->order_id, order_id, order_id_len);
  event->order_id[order_id_len] = '\0';
  event->data_node = NULL;
  event->position = sqlite3_column_int64 (stmt, 0);
  event->prev = sqlite3_column_int64 (stmt, 1);
  event->version = sqlite3_column_int64 (stmt, 3);
  event->type = (char *) sqlite3_column_text (stmt, 4);
  event->recorded_at = (char *) sqlite3_column_text (stmt, 5);
  event->actor = (char *) sqlite3_column_text (stmt, 6);
  event->data = (char *) sqlite3_column_text (stmt, 7);
}

/* read_events () without building the events: one OdEvent on the stack
 * whose strings point into SQLite's column buffers. */
static gboolean
od_store_sqlite_visit_events (OdStore           *store,
                              gint64             after,
                              guint              limit,
                              gint64            *head,
                              OdEventVisitFunc   visit,
                              gpointer           user_data,
                              GError           **error)
{
  OdStoreSqlite *self = OD_STORE_SQLITE (store);
  Reader *reader;
  gint64 h = 0;
  int rc;

  if ((reader = read_begin (self, &h, error)) == NULL)
    return FALSE;
  sqlite3_bind_int64 (reader->events, 1, after);
  sqlite3_bind_int64 (reader->events, 2, limit);
  while ((rc = sqlite3_step (reader->events)) == SQLITE_ROW)
    {
      OdEvent event;

      event_from_row (reader->events, &event);
      if (!visit (&event, user_data))
        {
          rc = SQLITE_DONE;
          break;
        }
    }
  sqlite3_reset (reader->events);
  if (rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, reader->db, "read events");
      read_end (self, reader, FALSE);
      return FALSE;
    }
  read_end (self, reader, TRUE);
  if (head != NULL)
    *head = h;
  return TRUE;
}

/* Where the frames of a block end: ends[i] is the offset just past frame
 * i.  Frames end with an empty line and hold no other (JSON has no raw
 * line break, ids and types none at all).  FALSE when the block does not
 * hold exactly FRAME_BLOCK frames. */
static gboolean
block_frame_ends (const char *frames,
                  gsize       len,
                  gsize      *ends)
{
  const char *p = frames, *end = frames + len;

  for (guint i = 0; i < FRAME_BLOCK; i++)
    {
      const char *nl;

      do
        {
          nl = memchr (p, '\n', end - p);
          if (nl == NULL || nl + 1 == end)
            return FALSE;
          p = nl + 1;
        }
      while (*p != '\n');
      p++;
      ends[i] = p - frames;
    }
  return p == end;
}

/* Events after..end from their rows, at most *remaining, formatted one
 * by one; *pos moves to the last one visited, or to end when the rows
 * ran out first (positions in between do not exist in this snapshot). */
static gboolean
visit_frame_rows (Reader            *reader,
                  gint64            *pos,
                  gint64             end,
                  guint             *remaining,
                  OdFramesVisitFunc  visit,
                  gpointer           user_data,
                  gboolean          *stop)
{
  guint n = 0;
  int rc;

  if (reader->frame == NULL)
    reader->frame = g_string_sized_new (1024);
  sqlite3_bind_int64 (reader->range, 1, *pos);
  sqlite3_bind_int64 (reader->range, 2, end);
  sqlite3_bind_int64 (reader->range, 3, *remaining);
  while ((rc = sqlite3_step (reader->range)) == SQLITE_ROW)
    {
      OdEvent event;

      event_from_row (reader->range, &event);
      g_string_truncate (reader->frame, 0);
      od_store_append_event (reader->frame, &event, TRUE);
      n++;
      *pos = event.position;
      if (!visit (event.position, event.position, 1, reader->frame->str, reader->frame->len,
                  user_data))
        {
          *stop = TRUE;
          rc = SQLITE_DONE;
          break;
        }
    }
  sqlite3_reset (reader->range);
  *remaining -= n;
  if (!*stop && *remaining > 0)
    *pos = end;
  return rc == SQLITE_DONE;
}

/* Whole blocks as stored, cut where the read starts or ends inside one;
 * where there is no block (events of whole blocks from before schema 2,
 * the block being filled, a damaged one), rows. */
static gboolean
od_store_sqlite_visit_frames (OdStore            *store,
                              gint64              after,
                              gint64              upto,
                              guint               limit,
                              gint64             *head,
                              OdFramesVisitFunc   visit,
                              gpointer            user_data,
                              GError            **error)
{
  OdStoreSqlite *self = OD_STORE_SQLITE (store);
  gsize ends[FRAME_BLOCK];
  Reader *reader;
  gint64 h = 0, pos = MAX (after, 0), end;
  guint remaining = limit;
  gboolean stop = FALSE;

  if ((reader = read_begin (self, &h, error)) == NULL)
    return FALSE;
  end = MIN (upto, h);
  while (!stop && remaining > 0 && pos < end)
    {
      gint64 block = pos / FRAME_BLOCK;
      gint64 block_end = (block + 1) * FRAME_BLOCK;
      gint64 stop_at = MIN (end, block_end);
      gboolean whole = FALSE;

      sqlite3_bind_int64 (reader->block, 1, block);
      if (sqlite3_step (reader->block) == SQLITE_ROW)
        {
          const char *frames = sqlite3_column_blob (reader->block, 0);
          gsize len = sqlite3_column_bytes (reader->block, 0);

          whole = frames != NULL && block_frame_ends (frames, len, ends);
          if (whole)
            {
              guint skip = pos - block * FRAME_BLOCK;
              guint take = MIN ((guint) (stop_at - pos), remaining);
              gsize from = skip > 0 ? ends[skip - 1] : 0;

              if (!visit (pos + 1, pos + take, take, frames + from, ends[skip + take - 1] - from,
                          user_data))
                stop = TRUE;
              pos += take;
              remaining -= take;
            }
          else
            {
              gboolean first;

              g_mutex_lock (&self->damaged_lock);
              first = g_hash_table_add (self->damaged, g_memdup2 (&block, sizeof block));
              g_mutex_unlock (&self->damaged_lock);
              if (first)
                g_warning ("frame block %" G_GINT64_FORMAT " (events %" G_GINT64_FORMAT
                           " to %" G_GINT64_FORMAT ") is damaged; replay reads those events "
                           "from their rows, which are not affected", block,
                           block * FRAME_BLOCK + 1, block_end);
            }
        }
      sqlite3_reset (reader->block);
      if (!whole && !visit_frame_rows (reader, &pos, stop_at, &remaining, visit, user_data,
                                       &stop))
        {
          od_sqlite_set_error (error, reader->db, "read events");
          read_end (self, reader, FALSE);
          return FALSE;
        }
    }
  read_end (self, reader, TRUE);
  if (head != NULL)
    *head = h;
  return TRUE;
}

/* A range of the digest on a pooled connection of its own: its lines
 * formatted straight from the column buffers, no event built. */
static gboolean
digest_read_range (gpointer     user_data,
                   gint64       after,
                   gint64       upto,
                   GByteArray  *lines,
                   gint64      *count,
                   GError     **error)
{
  OdStoreSqlite *self = user_data;
  sqlite3_stmt *st;
  Reader *reader;
  int rc;

  if ((reader = reader_acquire (self, error)) == NULL)
    return FALSE;
  st = reader->digest;
  sqlite3_bind_int64 (st, 1, after);
  sqlite3_bind_int64 (st, 2, upto);
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      /* Text before bytes, as SQLite asks; the short fields up to their
       * NUL as before, data by its length. */
      const char *data = (const char *) sqlite3_column_text (st, 6);
      gssize data_len = data ? sqlite3_column_bytes (st, 6) : -1;

      od_digest_append_event (lines, sqlite3_column_int64 (st, 0),
                              (const char *) sqlite3_column_text (st, 1), -1,
                              sqlite3_column_int64 (st, 2),
                              (const char *) sqlite3_column_text (st, 3), -1,
                              (const char *) sqlite3_column_text (st, 4), -1,
                              (const char *) sqlite3_column_text (st, 5), -1,
                              data ? data : "{}", data_len);
      (*count)++;
    }
  sqlite3_reset (st);
  if (rc != SQLITE_DONE)
    od_sqlite_set_error (error, reader->db, "digest");
  reader_release (self, reader);
  return rc == SQLITE_DONE;
}

/* Positions per range a reader takes: ~300 KB of lines. */
#define DIGEST_RANGE 1024

/* The range is read by a reader per core, each on its own connection
 * and so in its own read transaction, one range after another.  That is
 * one view all the same: upto is at most a head already read (the
 * server clamps it before asking), the log is append-only (no event is
 * ever updated or deleted) and the one writer gives out positions in
 * order, so every event at or below that head was committed before it
 * was read and every later snapshot holds exactly those, byte for byte.
 * The lines are hashed in position order whatever reader read them. */
static gboolean
od_store_sqlite_digest (OdStore    *store,
                        gint64      after,
                        gint64      upto,
                        OdDigest   *sum,
                        gint64     *count,
                        GError    **error)
{
  return od_digest_add_ranges (sum, after, upto, DIGEST_RANGE,
                               CLAMP (g_get_num_processors (), 1, 4), digest_read_range,
                               store, count, error);
}

static gboolean
od_store_sqlite_get_head (OdStore  *store,
                          gint64   *head,
                          GError  **error)
{
  OdStoreSqlite *self = OD_STORE_SQLITE (store);
  Reader *reader = reader_acquire (self, error);
  gboolean ok;

  if (reader == NULL)
    return FALSE;
  ok = read_head (reader, head, error);
  reader_release (self, reader);
  return ok;
}

/* BEGIN IMMEDIATE takes the write lock (refused on a read-only file, or
 * when another process holds the lock too long), the head is read, and
 * nothing is written: the store can be read and written now.  The short
 * busy timeout waits out a batch being committed, not a stuck writer. */
static gboolean
od_store_sqlite_check (OdStore  *store,
                       gint64   *head,
                       GError  **error)
{
  OdStoreSqlite *self = OD_STORE_SQLITE (store);
  sqlite3_stmt *stmt = NULL;
  gboolean ok = FALSE;

  g_mutex_lock (&self->check_lock);
  if (self->checker == NULL)
    {
      if (sqlite3_open_v2 (self->path, &self->checker,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot open %s: %s", self->path,
                       self->checker ? sqlite3_errmsg (self->checker) : "out of memory");
          g_clear_pointer (&self->checker, sqlite3_close);
          goto out;
        }
      sqlite3_busy_timeout (self->checker, 900);
    }
  if (!od_sqlite_exec (self->checker, "BEGIN IMMEDIATE", NULL, error))
    goto out;
  if (sqlite3_prepare_v2 (self->checker, "SELECT coalesce(max(position), 0) FROM events", -1,
                          &stmt, NULL) == SQLITE_OK
      && sqlite3_step (stmt) == SQLITE_ROW)
    {
      *head = sqlite3_column_int64 (stmt, 0);
      ok = TRUE;
    }
  else
    od_sqlite_set_error (error, self->checker, "readiness check");
  sqlite3_finalize (stmt);
  od_sqlite_exec (self->checker, "ROLLBACK", NULL, NULL);

out:
  g_mutex_unlock (&self->check_lock);
  return ok;
}

/* The committed state of an order, or a fresh one with version 0. */
static OdOrder *
load_order (OdStoreSqlite  *self,
            const char     *order_id,
            GError        **error)
{
  OdOrder *order = g_hash_table_lookup (self->orders, order_id);
  int rc;

  if (order != NULL)
    return od_order_copy (order);

  order = od_order_new (order_id);
  sqlite3_bind_text (self->st_order_events, 1, order_id, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step (self->st_order_events)) == SQLITE_ROW)
    od_store_fold_event (order, (const char *) sqlite3_column_text (self->st_order_events, 1),
                         (const char *) sqlite3_column_text (self->st_order_events, 2),
                         sqlite3_column_int64 (self->st_order_events, 0),
                         sqlite3_column_int64 (self->st_order_events, 3),
                         (const char *) sqlite3_column_text (self->st_order_events, 4));
  sqlite3_reset (self->st_order_events);
  if (rc != SQLITE_DONE)
    {
      od_order_free (order);
      od_sqlite_set_error (error, self->db, "load order");
      return NULL;
    }
  return order;
}

/* A refusal that depends on the log is part of the key's history and is
 * replayed; anything else leaves the key free for a corrected retry. */
static gboolean
problem_is_stored (guint status)
{
  return status == 404 || status == 409 || status == 422;
}

static gboolean
store_answer (OdStoreSqlite  *self,
              OdJob          *job,
              gint64          now_usec,
              GError        **error)
{
  sqlite3_stmt *st = self->st_idem_put;
  gboolean ok;

  sqlite3_bind_text (st, 1, job->actor, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 2, job->idempotency_key, -1, SQLITE_STATIC);
  sqlite3_bind_blob (st, 3, job->body_sha256, sizeof job->body_sha256, SQLITE_STATIC);
  sqlite3_bind_int (st, 4, job->status);
  sqlite3_bind_text (st, 5, job->response, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 6, now_usec);
  ok = sqlite3_step (st) == SQLITE_DONE;
  sqlite3_reset (st);
  if (!ok)
    return od_sqlite_set_error (error, self->db, "store answer");
  return TRUE;
}

/* Returns TRUE when the key's stored answer decided the job. */
static gboolean
replay_answer (OdStoreSqlite *self,
               OdJob         *job,
               gboolean      *found,
               GError       **error)
{
  sqlite3_stmt *st = self->st_idem_get;
  int rc;

  *found = FALSE;
  sqlite3_bind_text (st, 1, job->actor, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 2, job->idempotency_key, -1, SQLITE_STATIC);
  rc = sqlite3_step (st);
  if (rc == SQLITE_ROW)
    {
      const void *sha = sqlite3_column_blob (st, 0);

      *found = TRUE;
      if (sqlite3_column_bytes (st, 0) == sizeof job->body_sha256
          && memcmp (sha, job->body_sha256, sizeof job->body_sha256) == 0)
        {
          job->status = sqlite3_column_int (st, 1);
          g_free (job->response);
          job->response = g_strdup ((const char *) sqlite3_column_text (st, 2));
          job->replayed = TRUE;
        }
      else
        od_job_set_problem (job, od_problem_new (OD_PROBLEM_IDEMPOTENCY_KEY_REUSED,
                                                 "Idempotency-Key '%s' was used with another body.",
                                                 job->idempotency_key));
    }
  sqlite3_reset (st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return od_sqlite_set_error (error, self->db, "look up key");
  return TRUE;
}

/* Adds the frame of the event at POSITION to the block being filled,
 * and stores the block with its last event.  The block holds every frame
 * from its first position on (block_rebuild () sees to that after a
 * restart or a failed batch), or it is not stored. */
static gboolean
block_add (OdStoreSqlite  *self,
           gint64          position,
           GString        *frame,
           GError        **error)
{
  sqlite3_stmt *st = self->st_block_put;
  gboolean ok;

  if (!self->keep_blocks)
    return TRUE;
  if ((position - 1) % FRAME_BLOCK == 0)
    {
      g_string_truncate (self->block, 0);
      self->block_whole = TRUE;
    }
  if (!self->block_whole)
    return TRUE;
  g_string_append_len (self->block, frame->str, frame->len);
  if (position % FRAME_BLOCK != 0)
    return TRUE;
  self->block_whole = FALSE;
  sqlite3_bind_int64 (st, 1, position / FRAME_BLOCK - 1);
  sqlite3_bind_blob (st, 2, self->block->str, self->block->len, SQLITE_STATIC);
  ok = sqlite3_step (st) == SQLITE_DONE;
  sqlite3_reset (st);
  if (!ok)
    return od_sqlite_set_error (error, self->db, "store frame block");
  return TRUE;
}

static gboolean
append_event (OdStoreSqlite  *self,
              OdOrder        *order,
              OdJob          *job,
              const char     *type,
              const char     *data,
              const char     *recorded_at,
              GError        **error)
{
  sqlite3_stmt *st = self->st_insert;
  gint64 position = self->last_position + 1;
  gint64 version = order->version + 1;
  gboolean ok;

  sqlite3_bind_int64 (st, 1, position);
  sqlite3_bind_int64 (st, 2, self->last_position);
  sqlite3_bind_text (st, 3, order->order_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 4, version);
  sqlite3_bind_text (st, 5, type, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 6, recorded_at, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 7, job->actor, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 8, data, -1, SQLITE_STATIC);
  ok = sqlite3_step (st) == SQLITE_DONE;
  sqlite3_reset (st);
  if (!ok)
    return od_sqlite_set_error (error, self->db, "append event");

  /* The server feeds its live ring from this frame instead of reading
   * the event back after the commit. */
  {
    OdEvent event = { 0 };

    event.position = position;
    event.prev = self->last_position;
    g_strlcpy (event.order_id, order->order_id, sizeof event.order_id);
    event.version = version;
    event.type = (char *) type;
    event.recorded_at = (char *) recorded_at;
    event.actor = job->actor;
    event.data = (char *) data;
    if (self->frame == NULL)
      self->frame = g_string_sized_new (1024);
    g_string_truncate (self->frame, 0);
    od_store_append_event (self->frame, &event, TRUE);
    if (!block_add (self, position, self->frame, error))
      return FALSE;
    g_free (job->frame);
    job->frame_len = self->frame->len;
    job->frame = g_memdup2 (self->frame->str, self->frame->len + 1);
    job->prev = self->last_position;
  }

  self->last_position = position;
  od_store_fold_event (order, type, data, version, position, recorded_at);
  od_job_set_success (job, version, position);
  return TRUE;
}

static gboolean
run_batch (OdStoreSqlite  *self,
           OdJob         **jobs,
           guint           n_jobs,
           GHashTable     *dirty,
           GError        **error)
{
  g_autofree char *now_text = od_timestamp_now ();
  gint64 now = g_get_real_time ();

  for (guint i = 0; i < n_jobs; i++)
    {
      OdJob *job = jobs[i];
      OdProblem *problem = NULL;
      const char *type = NULL;
      g_autofree char *data = NULL;
      OdOrder *order;
      gboolean found;

      job->status = 0;
      job->replayed = FALSE;
      job->position = 0;
      if (job->idempotency_key != NULL)
        {
          if (!replay_answer (self, job, &found, error))
            return FALSE;
          if (found)
            continue;
        }

      order = g_hash_table_lookup (dirty, job->command->order_id);
      if (order == NULL)
        {
          if ((order = load_order (self, job->command->order_id, error)) == NULL)
            return FALSE;
          g_hash_table_insert (dirty, order->order_id, order);
        }

      if (od_order_decide (order, job->command, &type, &data, &problem))
        {
          if (!append_event (self, order, job, type, data,
                             job->recorded_at ? job->recorded_at : now_text, error))
            return FALSE;
        }
      else
        od_job_set_problem (job, problem);

      if (job->idempotency_key != NULL && (job->status == 200 || problem_is_stored (job->status)))
        if (!store_answer (self, job, now, error))
          return FALSE;
    }

  if (now - self->last_purge > G_TIME_SPAN_MINUTE * 10)
    {
      sqlite3_bind_int64 (self->st_idem_purge, 1, now - OD_IDEMPOTENCY_RETENTION_USEC);
      sqlite3_step (self->st_idem_purge);
      sqlite3_reset (self->st_idem_purge);
      self->last_purge = now;
    }
  return TRUE;
}

static gboolean
step_simple (sqlite3_stmt *st)
{
  int rc = sqlite3_step (st);

  sqlite3_reset (st);
  return rc == SQLITE_DONE;
}

static gboolean
reload_last_position (OdStoreSqlite  *self,
                      GError        **error)
{
  gboolean ok = sqlite3_step (self->st_max) == SQLITE_ROW;

  if (ok)
    self->last_position = sqlite3_column_int64 (self->st_max, 0);
  sqlite3_reset (self->st_max);
  if (!ok)
    return od_sqlite_set_error (error, self->db, "max position");
  return TRUE;
}

/* Fills the block being filled again from the rows, formatted as replay
 * would: at open, and after a failed commit took frames out of it.  A
 * restart or a failure then leaves no block to the rows, nor does a
 * store migrated in the middle of one. */
static void
block_rebuild (OdStoreSqlite *self)
{
  sqlite3_stmt *st = self->st_block_rows;
  gint64 start = self->last_position / FRAME_BLOCK * FRAME_BLOCK;
  gint64 expected = start + 1;
  int rc;

  g_string_truncate (self->block, 0);
  self->block_whole = FALSE;
  if (!self->keep_blocks)
    return;
  sqlite3_bind_int64 (st, 1, start);
  sqlite3_bind_int64 (st, 2, self->last_position);
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      OdEvent event;

      event_from_row (st, &event);
      /* A gap (rows deleted by hand): no block until the next one. */
      if (event.position != expected)
        break;
      od_store_append_event (self->block, &event, TRUE);
      expected++;
    }
  sqlite3_reset (st);
  self->block_whole = expected == self->last_position + 1;
}

static gboolean
od_store_sqlite_execute_more (OdStore          *store,
                              GPtrArray        *batch,
                              OdStoreMoreFunc   more,
                              gpointer          user_data,
                              GError          **error)
{
  OdStoreSqlite *self = OD_STORE_SQLITE (store);
  g_autoptr(GHashTable) dirty = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                                       (GDestroyNotify) od_order_free);
  gint64 first_position = self->last_position;
  GHashTableIter iter;
  OdOrder *order;
  guint decided = 0;
  gboolean ok;

  if (!step_simple (self->st_begin))
    return od_sqlite_set_error (error, self->db, "begin");
  /* Jobs that arrive while these are decided join them: the commit (its
   * log write and fdatasync) is then paid once for more commands, and
   * they need not wait for a commit of their own. */
  do
    {
      ok = run_batch (self, (OdJob **) batch->pdata + decided, batch->len - decided, dirty,
                      error);
      decided = batch->len;
    }
  while (ok && more != NULL && more (batch, user_data) > 0);
  if (!ok || !step_simple (self->st_commit))
    {
      if (error != NULL && *error == NULL)
        od_sqlite_set_error (error, self->db, "commit");
      step_simple (self->st_rollback);
      self->last_position = first_position;
      /* The database is the truth after a failed commit. */
      reload_last_position (self, NULL);
      /* Its frames are gone from the block with the batch. */
      block_rebuild (self);
      for (guint i = 0; i < batch->len; i++)
        {
          OdJob *job = g_ptr_array_index (batch, i);

          job->status = 0;
          g_clear_pointer (&job->response, g_free);
          g_clear_pointer (&job->frame, g_free);
        }
      return FALSE;
    }

  if (g_hash_table_size (self->orders) + g_hash_table_size (dirty) > MAX_CACHED_ORDERS)
    g_hash_table_remove_all (self->orders);
  g_hash_table_iter_init (&iter, dirty);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &order))
    {
      g_hash_table_iter_steal (&iter);
      if (order->version > 0)
        g_hash_table_replace (self->orders, order->order_id, order);
      else
        od_order_free (order);
    }

  if (self->last_position != first_position)
    od_store_emit_appended (store);
  return TRUE;
}

static gboolean
od_store_sqlite_execute (OdStore  *store,
                         OdJob   **jobs,
                         guint     n_jobs,
                         GError  **error)
{
  g_autoptr(GPtrArray) batch = g_ptr_array_sized_new (n_jobs);

  for (guint i = 0; i < n_jobs; i++)
    g_ptr_array_add (batch, jobs[i]);
  return od_store_sqlite_execute_more (store, batch, NULL, NULL, error);
}

typedef struct
{
  OdStoreSqlite *store;
  char          *path;
  gint64         below;   /* blocks below this one are whole */
} Backfill;

/* One missing block from its rows, in a transaction of its own.  A block
 * whose rows are not its 256 (some deleted by hand) is left to the rows. */
static gboolean
backfill_block (sqlite3       *db,
                sqlite3_stmt  *rows,
                sqlite3_stmt  *put,
                gint64         block,
                GString       *frames,
                GError       **error)
{
  gint64 expected = block * FRAME_BLOCK + 1;
  gboolean ok;
  int rc;

  g_string_truncate (frames, 0);
  if (!od_sqlite_exec (db, "BEGIN IMMEDIATE", NULL, error))
    return FALSE;
  sqlite3_bind_int64 (rows, 1, block * FRAME_BLOCK);
  sqlite3_bind_int64 (rows, 2, (block + 1) * FRAME_BLOCK);
  while ((rc = sqlite3_step (rows)) == SQLITE_ROW)
    {
      OdEvent event;

      event_from_row (rows, &event);
      if (event.position != expected)
        break;
      od_store_append_event (frames, &event, TRUE);
      expected++;
    }
  sqlite3_reset (rows);
  ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
  if (ok && expected == (block + 1) * FRAME_BLOCK + 1)
    {
      /* Ignores: the writer may have stored it meanwhile. */
      sqlite3_bind_int64 (put, 1, block);
      sqlite3_bind_blob (put, 2, frames->str, frames->len, SQLITE_STATIC);
      ok = sqlite3_step (put) == SQLITE_DONE;
      sqlite3_reset (put);
    }
  if (!ok)
    {
      od_sqlite_set_error (error, db, "build frame block");
      od_sqlite_exec (db, "ROLLBACK", NULL, NULL);
      return FALSE;
    }
  return od_sqlite_exec (db, "COMMIT", NULL, error);
}

static gpointer
backfill_thread (gpointer data)
{
  Backfill *backfill = data;
  OdStoreSqlite *self = backfill->store;
  g_autoptr(GError) error = NULL;
  g_autoptr(GHashTable) stored = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  g_autoptr(GString) frames = g_string_new (NULL);
  sqlite3 *db = NULL;
  sqlite3_stmt *list = NULL, *rows = NULL, *put = NULL;
  gint64 built = 0;

  if (sqlite3_open_v2 (backfill->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
      != SQLITE_OK)
    {
      g_set_error (&error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot open %s", backfill->path);
      goto out;
    }
  sqlite3_busy_timeout (db, 10000);
  /* Blocks are made again from the rows: one lost in a crash costs
   * nothing, so this connection does not wait for the disk. */
  if (!od_sqlite_exec (db, "PRAGMA synchronous=NORMAL", NULL, &error)
      || !od_sqlite_prepare_persistent (db, "SELECT block FROM frame_blocks WHERE block < ?1",
                                        &list, &error)
      || !od_sqlite_prepare_persistent (db,
                   "SELECT " EVENT_COLUMNS " "
                   "FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position",
                   &rows, &error)
      || !od_sqlite_prepare_persistent (db,
                   "INSERT OR IGNORE INTO frame_blocks (block, frames) VALUES (?1, ?2)",
                   &put, &error))
    goto out;
  sqlite3_bind_int64 (list, 1, backfill->below);
  while (sqlite3_step (list) == SQLITE_ROW)
    {
      gint64 block = sqlite3_column_int64 (list, 0);

      g_hash_table_add (stored, g_memdup2 (&block, sizeof block));
    }
  sqlite3_reset (list);
  if ((gint64) g_hash_table_size (stored) < backfill->below)
    g_message ("building frame blocks for %" G_GINT64_FORMAT " older events, in the background",
               (backfill->below - (gint64) g_hash_table_size (stored)) * FRAME_BLOCK);
  for (gint64 block = 0; block < backfill->below; block++)
    {
      if (g_atomic_int_get (&self->backfill_stop))
        goto out;
      if (g_hash_table_contains (stored, &block))
        continue;
      if (!backfill_block (db, rows, put, block, frames, &error))
        goto out;
      built++;
    }
  if (built > 0)
    g_message ("built frame blocks for %" G_GINT64_FORMAT " older events", built * FRAME_BLOCK);

out:
  /* Not a failure of the store: those events are read from their rows. */
  if (error != NULL)
    g_message ("building frame blocks stopped: %s; older events are replayed from their "
               "rows", error->message);
  sqlite3_finalize (list);
  sqlite3_finalize (rows);
  sqlite3_finalize (put);
  sqlite3_close (db);
  g_free (backfill->path);
  g_free (backfill);
  return NULL;
}

/* Starts building the missing whole blocks below the one being filled,
 * unless blocks are off. */
static void
backfill_start (OdStoreSqlite *self)
{
  Backfill *backfill;

  if (self->backfill != NULL || !self->keep_blocks || self->last_position < FRAME_BLOCK)
    return;
  backfill = g_new0 (Backfill, 1);
  backfill->store = self;
  backfill->path = g_strdup (self->path);
  backfill->below = self->last_position / FRAME_BLOCK;
  g_atomic_int_set (&self->backfill_stop, 0);
  self->backfill = g_thread_new ("od-frame-blocks", backfill_thread, backfill);
}

static void
backfill_stop (OdStoreSqlite *self)
{
  if (self->backfill == NULL)
    return;
  g_atomic_int_set (&self->backfill_stop, 1);
  g_thread_join (g_steal_pointer (&self->backfill));
}

static void
od_store_sqlite_finalize (GObject *object)
{
  OdStoreSqlite *self = OD_STORE_SQLITE (object);

  backfill_stop (self);
  sqlite3_stmt **stmts[] = {
    &self->st_begin, &self->st_commit, &self->st_rollback, &self->st_idem_get,
    &self->st_idem_put, &self->st_idem_purge, &self->st_insert, &self->st_order_events,
    &self->st_max, &self->st_block_put, &self->st_block_rows,
  };

  for (guint i = 0; i < G_N_ELEMENTS (stmts); i++)
    g_clear_pointer (stmts[i], sqlite3_finalize);
  g_clear_pointer (&self->db, sqlite3_close);
  g_clear_pointer (&self->readers, g_ptr_array_unref);
  g_clear_pointer (&self->orders, g_hash_table_unref);
  if (self->frame != NULL)
    g_string_free (self->frame, TRUE);
  g_string_free (self->block, TRUE);
  g_mutex_clear (&self->readers_lock);
  g_mutex_clear (&self->damaged_lock);
  g_clear_pointer (&self->damaged, g_hash_table_unref);
  g_clear_pointer (&self->checker, sqlite3_close);
  g_mutex_clear (&self->check_lock);
  g_free (self->path);

  G_OBJECT_CLASS (od_store_sqlite_parent_class)->finalize (object);
}

static void
od_store_sqlite_class_init (OdStoreSqliteClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = od_store_sqlite_finalize;
}

static void
od_store_sqlite_iface_init (OdStoreInterface *iface)
{
  iface->execute = od_store_sqlite_execute;
  iface->execute_more = od_store_sqlite_execute_more;
  iface->read_events = od_store_sqlite_read_events;
  iface->visit_events = od_store_sqlite_visit_events;
  iface->visit_frames = od_store_sqlite_visit_frames;
  iface->digest = od_store_sqlite_digest;
  iface->get_head = od_store_sqlite_get_head;
  iface->check = od_store_sqlite_check;
}

static void
od_store_sqlite_init (OdStoreSqlite *self)
{
  g_mutex_init (&self->readers_lock);
  g_mutex_init (&self->damaged_lock);
  self->damaged = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  g_mutex_init (&self->check_lock);
  self->readers = g_ptr_array_new_with_free_func ((GDestroyNotify) reader_free);
  self->orders = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                        (GDestroyNotify) od_order_free);
  self->block = g_string_sized_new (FRAME_BLOCK * 512);
  self->keep_blocks = TRUE;
}

OdStore *
od_store_sqlite_new (const char  *path,
                     GError     **error)
{
  g_autoptr(OdStoreSqlite) self = g_object_new (OD_TYPE_STORE_SQLITE, NULL);
  g_autofree char *dir = g_path_get_dirname (path);

  if (*path == '\0')
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                           "sqlite: needs a file path");
      return NULL;
    }
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot create %s: %s", dir,
                   g_strerror (errno));
      return NULL;
    }
  self->path = g_strdup (path);
  if ((self->db = open_db (path, error)) == NULL || !migrate (self->db, error))
    return NULL;
  if (!od_sqlite_prepare_persistent (self->db, "BEGIN IMMEDIATE", &self->st_begin, error)
      || !od_sqlite_prepare_persistent (self->db, "COMMIT", &self->st_commit, error)
      || !od_sqlite_prepare_persistent (self->db, "ROLLBACK", &self->st_rollback, error)
      || !od_sqlite_prepare_persistent (self->db,
                   "SELECT body_sha256, status, response FROM idempotency "
                   "WHERE actor = ?1 AND key = ?2",
                   &self->st_idem_get, error)
      || !od_sqlite_prepare_persistent (self->db,
                   "INSERT INTO idempotency (actor, key, body_sha256, status, response, created_at) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                   &self->st_idem_put, error)
      || !od_sqlite_prepare_persistent (self->db, "DELETE FROM idempotency WHERE created_at < ?1",
                   &self->st_idem_purge, error)
      || !od_sqlite_prepare_persistent (self->db,
                   "INSERT INTO events (position, prev, order_id, version, type, recorded_at, "
                   "actor, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                   &self->st_insert, error)
      || !od_sqlite_prepare_persistent (self->db,
                   "SELECT version, type, data, position, recorded_at FROM events "
                   "WHERE order_id = ?1 ORDER BY version",
                   &self->st_order_events, error)
      || !od_sqlite_prepare_persistent (self->db,
                   "SELECT coalesce(max(position), 0) FROM events", &self->st_max,
                   error)
      /* Replaces: a block left by events since deleted by hand must not
       * make every FRAME_BLOCK-th command fail. */
      || !od_sqlite_prepare_persistent (self->db,
                   "INSERT OR REPLACE INTO frame_blocks (block, frames) VALUES (?1, ?2)",
                   &self->st_block_put, error)
      || !od_sqlite_prepare_persistent (self->db,
                   "SELECT " EVENT_COLUMNS " "
                   "FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position",
                   &self->st_block_rows, error)
      || !reload_last_position (self, error))
    return NULL;
  block_rebuild (self);
  backfill_start (self);
  return OD_STORE (g_steal_pointer (&self));
}

/* Whether new events' frames are kept in blocks (the default).  Off, the
 * file grows half as fast and replay formats new events from their rows;
 * blocks already stored are still used, and missing ones are not built.
 * Call before the first execute. */
void
od_store_sqlite_set_frame_blocks (OdStoreSqlite *self,
                                  gboolean       keep)
{
  g_return_if_fail (OD_IS_STORE_SQLITE (self));

  self->keep_blocks = !!keep;
  block_rebuild (self);
  if (!self->keep_blocks)
    backfill_stop (self);
  else
    backfill_start (self);
}

/* Waits until the missing blocks found at open are built (or building
 * them stopped): for tests and tools. */
void
od_store_sqlite_wait_frame_blocks (OdStoreSqlite *self)
{
  g_return_if_fail (OD_IS_STORE_SQLITE (self));

  if (self->backfill != NULL)
    g_thread_join (g_steal_pointer (&self->backfill));
}

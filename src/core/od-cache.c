/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The cache object: open and close, reads on the owner's connection,
 * waiters and signals.  Its schema is in od-cache-schema.c, the writer
 * thread in od-cache-writer.c, the projector in od-cache-project.c. */
#include "od-cache.h"
#include "od-cache-private.h"
#include "od-outbox-store.h"
#include "od-sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

/* A catch-up further behind than this drops the secondary indexes and
 * the search trigger, appends to bare tables and builds the indexes once
 * at the end: a sorted build is much cheaper than a million random index
 * inserts.  Reads stay correct meanwhile, only slower. */
#define BULK_THRESHOLD 300000
/* So does one that more than doubles the cache (a cold cache above all)
 * and is further behind than this: the build at the end then sorts at
 * most twice the new rows, which costs less than keeping ten indexes and
 * the search index up row by row (121,000 events into a cold cache: 3.2 s
 * of CPU row by row, 1.5 s in bulk mode, docs/benchmarks.md). */
#define BULK_MIN 10000
/* A bulk catch-up commits every 600,000 events rather than 100,000: an
 * order folded in one transaction is read and written again in the
 * next, and at 1.2 M demo events (200,000 orders) 409,000 orders were
 * written in 13 commits.  18.0 s against 20.7 s (medians, same binary),
 * 16 MB more resident (docs/benchmarks.md). */
#define BULK_MAX_TRANSACTION 600000

typedef struct
{
  GTask   *task;
  gint64   position;
  gulong   cancel_id;
  guint64  id;
} Waiter;

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

enum
{
  PROP_0,
  PROP_SEARCH_COMPLETE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

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

void
od_cache_set_applied (OdCache *self,
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

void
od_cache_post_notify (OdCache  *self,
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
od_cache_get_property (GObject    *object,
                       guint       prop_id,
                       GValue     *value,
                       GParamSpec *pspec)
{
  OdCache *self = OD_CACHE (object);

  switch (prop_id)
    {
    case PROP_SEARCH_COMPLETE:
      g_value_set_boolean (value, !self->search_incomplete);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_cache_class_init (OdCacheClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_cache_dispose;
  object_class->finalize = od_cache_finalize;
  object_class->get_property = od_cache_get_property;

  /* See od_cache_get_search_complete (); notified on change, within the
   * tenth of a second in which a commit shows (watch_cb). */
  properties[PROP_SEARCH_COMPLETE] =
    g_param_spec_boolean ("search-complete", NULL, NULL, TRUE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

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
  self->bulk_max_transaction = BULK_MAX_TRANSACTION;
  self->bulk_threshold = BULK_THRESHOLD;
  self->bulk_min = BULK_MIN;
  self->read_stmts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            (GDestroyNotify) sqlite3_finalize);
  self->working = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                         od_cache_working_free);
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
  if (!g_atomic_int_get (&self->is_writer) && !self->takeover_queued
      && od_cache_take_writer_lock (self))
    {
      self->takeover_queued = TRUE;
      od_cache_writer_take_over (self);
    }
  st = od_cache_prepare_read (self, "PRAGMA data_version", NULL);
  if (st != NULL && sqlite3_step (st) == SQLITE_ROW)
    version = sqlite3_column_int64 (st, 0);
  if (st != NULL)
    sqlite3_reset (st);
  if (version == self->data_version)
    return G_SOURCE_CONTINUE;
  self->data_version = version;
  /* Notifies "search-complete" when a bulk catch-up began or ended (in
   * this process's writer or another's). */
  od_cache_get_search_complete (self);

  if (!g_atomic_int_get (&self->is_writer))
    {
      gint64 applied = od_cache_read_applied (self->db);

      if (applied != od_cache_get_applied_position (self))
        {
          od_cache_set_applied (self, applied);
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

  self->wdb = od_cache_open_connection (self->path, TRUE, error);
  if (self->wdb == NULL)
    return FALSE;
  if (!od_cache_migrate (self->wdb, &self->search_upgrade, error))
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
  if (!od_cache_prepare_writer_statements (self, error))
    return FALSE;
  self->applied = od_cache_read_applied (self->wdb);

  self->db = od_cache_open_connection (path, FALSE, error);
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
  self->is_writer = od_cache_take_writer_lock (self);

  /* Opening (WAL mode set on a new file) and migrating are one process
   * at a time: two processes starting together on a new file otherwise
   * meet in SQLite's lock upgrades, where its busy handler is not
   * called ("database is locked"). */
  setup_lock (self, TRUE);
  ok = open_connections (self, error);
  setup_lock (self, FALSE);
  if (!ok)
    return NULL;

  od_cache_writer_start (self);
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
  od_cache_writer_stop (self);
  od_cache_finalize_writer_statements (self);
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
      od_sqlite_set_error (error, self->db, "query");
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
      state->server_url = od_sqlite_column_strdup (st, 4);
    }
  sqlite3_reset (st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    {
      od_sqlite_set_error (error, self->db, "sync state");
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
      od_sqlite_set_error (error, self->db, "status counts");
      return FALSE;
    }
  return TRUE;
}

gboolean
od_cache_get_search_complete (OdCache *self)
{
  /* bulk_begin_sql's trigger stands for the whole of bulk mode: it is
   * created with the search trigger's removal and dropped, in the same
   * transaction, with the search index's build (bulk_end_sql). */
  sqlite3_stmt *st;
  gboolean bulk;

  g_return_val_if_fail (OD_IS_CACHE (self), TRUE);

  if (self->db == NULL)
    return TRUE;
  st = od_cache_prepare_read (self,
                              "SELECT 1 FROM sqlite_master WHERE type = 'trigger'"
                              " AND name = 'orders_count_insert_bulk'", NULL);
  if (st == NULL)
    return TRUE;
  bulk = sqlite3_step (st) == SQLITE_ROW;
  sqlite3_reset (st);
  if (bulk != self->search_incomplete)
    {
      self->search_incomplete = bulk;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SEARCH_COMPLETE]);
    }
  return !bulk;
}

void
od_cache_set_max_transaction (OdCache *self,
                              guint    max_events)
{
  self->max_transaction = MAX (max_events, 1);
  self->bulk_max_transaction = self->max_transaction;
}

void
od_cache_set_bulk_threshold (OdCache *self,
                             gint64   events)
{
  self->bulk_threshold = events;
}

void
od_cache_set_bulk_min (OdCache *self,
                       gint64   events)
{
  self->bulk_min = events;
}

void
od_cache_set_keep_memory (OdCache  *self,
                          gboolean  keep)
{
  self->keep_memory = keep;
}

/* Whether a catch-up KNOWN_HEAD - APPLIED events long goes in bulk mode
 * (see od_cache_set_bulk_threshold and od_cache_set_bulk_min). */
gboolean
od_cache_wants_bulk (OdCache *self,
                     gint64   applied,
                     gint64   known_head)
{
  gint64 behind = known_head - applied;

  return behind > self->bulk_threshold || (behind > self->bulk_min && behind > applied);
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

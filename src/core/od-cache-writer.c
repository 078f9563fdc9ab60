/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The cache's writer thread: its queue of items (events, jobs, flushes,
 * rebuilds, the takeover), and the one-writer lock (PATH.lock). */
#include "od-cache.h"
#include "od-cache-private.h"
#include "od-sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sys/file.h>

#define MAX_QUEUED_EVENTS 50000

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

/* ------------------------------------------------------------------ */
/* Writer thread                                                       */

/* On the writer thread: tells the gap function, if one is set, under
 * gap_lock (see there). */
void
od_cache_call_gap_func (OdCache *self,
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
fail_write (OdCache *self,
            GError  *error)
{
  g_warning ("cache write failed: %s", error->message);
  od_cache_rollback_tx (self);
  od_cache_set_applied (self, od_cache_read_applied (self->wdb));
  /* The events of the lost transaction must be fetched again: tell the
   * sync engine, as for a gap. */
  od_cache_call_gap_func (self, od_cache_get_applied_position (self), OD_CACHE_WRITE_FAILED, -1);
  od_cache_post_notify (self, -1, FALSE, FALSE, error);
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
  if (od_sqlite_query_int64 (self->wdb,
                             "SELECT 1 FROM sqlite_master WHERE name = 'orders_count_insert_bulk'",
                             0) == 1)
    od_cache_bulk_end (self);
  if (self->search_upgrade)
    od_cache_upgrade_search (self);
  od_cache_refold_kept_events (self);
}

static guint
writer_max_transaction (OdCache *self)
{
  return self->bulk ? self->bulk_max_transaction : self->max_transaction;
}

static gpointer
od_cache_writer_thread (gpointer data)
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
          gboolean catching_up = self->tx_events < writer_max_transaction (self)
                                 && self->tx_applied < self->tx_known_head;

          item = catching_up ? g_async_queue_timeout_pop (self->queue, 50 * 1000)
                             : g_async_queue_try_pop (self->queue);
          if (item == NULL)
            {
              if (!od_cache_commit_tx (self, &error))
                fail_write (self, g_steal_pointer (&error));
              continue;
            }
        }
      else
        {
          g_autoptr(GPtrArray) spent = NULL;

          /* Going idle: what the sync thread has not taken back yet is
           * freed now, rather than held until its next push. */
          g_mutex_lock (&self->queue_lock);
          if (self->spent != NULL && self->spent->len > 0)
            {
              spent = g_steal_pointer (&self->spent);
              self->spent = g_ptr_array_new_with_free_func ((GDestroyNotify) g_ptr_array_unref);
            }
          g_mutex_unlock (&self->queue_lock);
          g_clear_pointer (&spent, g_ptr_array_unref);
          item = g_async_queue_pop (self->queue);
        }

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
              && od_cache_wants_bulk (self, od_cache_get_applied_position (self),
                                      item->known_head))
            od_cache_bulk_begin (self);
          if (!od_cache_begin_tx (self, &error)
              || !od_cache_apply_events (self, item->events, &error))
            {
              fail_write (self, g_steal_pointer (&error));
              break;
            }
          self->tx_known_head = MAX (self->tx_known_head, item->known_head);
          self->tx_known_head = MAX (self->tx_known_head, self->tx_applied);
          if (self->tx_events >= writer_max_transaction (self))
            {
              if (!od_cache_commit_tx (self, &error))
                fail_write (self, g_steal_pointer (&error));
            }
          /* The events go back to the thread that allocated them (the
           * sync thread frees them on its next push): freed here, every
           * free of a catch-up was a free into another thread's arena,
           * on the thread that bounds the catch-up. */
          g_mutex_lock (&self->queue_lock);
          if (!self->closed)
            g_ptr_array_add (self->spent, g_steal_pointer (&item->events));
          g_mutex_unlock (&self->queue_lock);
          break;

        case ITEM_CONTACT:
          if (!g_atomic_int_get (&self->is_writer))
            break;
          sqlite3_bind_int64 (self->st_contact, 1, item->known_head);
          sqlite3_bind_int64 (self->st_contact, 2, item->contact_usec);
          od_sqlite_bind_text_or_null (self->st_contact, 3, item->server_url);
          if (!od_sqlite_step_done (self->wdb, self->st_contact, "contact", &error))
            g_warning ("%s", error->message);
          break;

        case ITEM_JOB:
          {
            gpointer result = NULL;
            gboolean ok;

            if (!od_cache_commit_tx (self, &error))
              {
                fail_write (self, g_steal_pointer (&error));
                error = NULL;
              }
            /* A command stored before it is sent must survive a power
             * cut, so that write is fsynced; later state changes need not
             * be (losing one only means a resend with the same key). */
            if (item->durable)
              od_sqlite_exec (self->wdb, "PRAGMA synchronous=FULL", "cache", NULL);
            ok = od_sqlite_exec (self->wdb, "BEGIN IMMEDIATE", "cache", &error);
            if (ok)
              {
                ok = item->func (self->wdb, item->func_data, &result, &error);
                if (ok)
                  ok = od_sqlite_exec (self->wdb, "COMMIT", "cache", &error);
                if (!ok)
                  od_sqlite_exec (self->wdb, "ROLLBACK", "cache", NULL);
              }
            if (item->durable)
              od_sqlite_exec (self->wdb, "PRAGMA synchronous=NORMAL", "cache", NULL);
            if (ok)
              {
                return_task (self, item, result, FALSE, NULL);
                od_cache_post_notify (self, -1, TRUE, FALSE, NULL);
              }
            else
              return_task (self, item, NULL, FALSE, g_steal_pointer (&error));
          }
          break;

        case ITEM_FLUSH:
          if (!od_cache_commit_tx (self, &error))
            fail_write (self, g_steal_pointer (&error));
          g_mutex_lock (item->flush_mutex);
          *item->flush_done = TRUE;
          g_cond_signal (item->flush_cond);
          g_mutex_unlock (item->flush_mutex);
          break;

        case ITEM_REBUILD:
          if (self->in_tx)
            od_cache_rollback_tx (self);
          if (!g_atomic_int_get (&self->is_writer))
            return_task (self, item, NULL, TRUE,
                         g_error_new (OD_CACHE_ERROR, OD_CACHE_ERROR_BUSY,
                                      "another process writes this cache"));
          else if (od_cache_rebuild_views (self, &error))
            {
              self->bulk = FALSE;
              return_task (self, item, GINT_TO_POINTER (TRUE), TRUE, NULL);
              od_cache_post_notify (self, 0, FALSE, TRUE, NULL);
              od_cache_call_gap_func (self, 0, -1, -1);
            }
          else
            return_task (self, item, NULL, TRUE, g_steal_pointer (&error));
          break;

        case ITEM_TAKEOVER:
          {
            gint64 applied = od_cache_read_applied (self->wdb);

            /* The writer that held the lock has gone: this process
             * applies events from what it committed.  The sync engine
             * handed events to this cache that were dropped meanwhile: it
             * starts again from the checkpoint, as after a rebuild. */
            od_cache_set_applied (self, applied);
            g_atomic_int_set (&self->is_writer, TRUE);
            writer_startup (self);
            od_cache_post_notify (self, applied, TRUE, FALSE, NULL);
            od_cache_call_gap_func (self, applied, -1, -1);
          }
          break;

        case ITEM_STOP:
          if (!od_cache_commit_tx (self, &error))
            g_warning ("last cache commit failed: %s", error->message);
          if (self->bulk)
            od_cache_bulk_end (self);
          running = FALSE;
          break;

        default:
          g_assert_not_reached ();
        }
      writer_item_free (item);
    }
  return NULL;
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
gboolean
od_cache_take_writer_lock (OdCache *self)
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

gboolean
od_cache_is_writer (OdCache *self)
{
  g_return_val_if_fail (OD_IS_CACHE (self), FALSE);
  return g_atomic_int_get (&self->is_writer);
}

void
od_cache_push_events (OdCache   *self,
                      GPtrArray *events,
                      gint64     known_head)
{
  WriterItem *item = g_new0 (WriterItem, 1);
  g_autoptr(GPtrArray) spent = NULL;

  item->kind = ITEM_EVENTS;
  item->events = events;
  item->known_head = known_head;
  /* A bounded queue: a producer faster than the disk waits here (and,
   * through the socket, the server waits for it) instead of growing
   * memory. */
  g_mutex_lock (&self->queue_lock);
  /* The batches the writer is done with: freed below, out of the lock,
   * on this thread, which allocated them. */
  if (self->spent != NULL && self->spent->len > 0)
    {
      spent = g_steal_pointer (&self->spent);
      self->spent = g_ptr_array_new_with_free_func ((GDestroyNotify) g_ptr_array_unref);
    }
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

void
od_cache_writer_start (OdCache *self)
{
  self->spent = g_ptr_array_new_with_free_func ((GDestroyNotify) g_ptr_array_unref);
  self->writer = g_thread_new ("od-cache-writer", od_cache_writer_thread, self);
}

/* Called by od_cache_close once closed is set: the writer commits what it
 * has and stops. */
void
od_cache_writer_stop (OdCache *self)
{
  WriterItem *item;

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
  /* closed is set: no push takes from it any more. */
  g_mutex_lock (&self->queue_lock);
  g_clear_pointer (&self->spent, g_ptr_array_unref);
  g_mutex_unlock (&self->queue_lock);
}

/* The lock is free and now this process's (watch_cb): the writer takes
 * the writer's place. */
void
od_cache_writer_take_over (OdCache *self)
{
  WriterItem *item = g_new0 (WriterItem, 1);

  item->kind = ITEM_TAKEOVER;
  writer_submit (self, item);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-cache.h"
#include "od-order.h"

G_BEGIN_DECLS

/* Shared by the cache's files: od-cache.c (the object, open and close,
 * reads, waiters, signals), od-cache-schema.c (schema and migrations),
 * od-cache-writer.c (the writer thread and its queue, the one-writer
 * lock), od-cache-project.c (the projector). */
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
  guint         bulk_max_transaction; /* the same in bulk mode */
  gboolean      keep_memory;     /* see od_cache_set_keep_memory */
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
  GPtrArray    *spent;         /* under queue_lock: applied batches, freed by the pusher's thread */
  gboolean      closed;
  gboolean      search_upgrade;  /* version 1 or 2: the writer builds the new index */
  gboolean      upgrading;       /* under queue_lock: close interrupts it */

  /* One process at a time applies events: the one holding the lock on
   * PATH.lock (see od_cache_take_writer_lock ()).  The others follow the file. */
  int           lock_fd;
  gint          is_writer;       /* atomic */
  gboolean      takeover_queued; /* owner thread */
  GSource      *watch;           /* owner thread: polls other processes' commits */
  gint64        data_version;
  gboolean      search_incomplete; /* main thread: as last read, see od_cache_get_search_complete */
  char         *outbox_signature;

  /* Writer thread state. */
  sqlite3      *wdb;
  gboolean      in_tx;
  guint         tx_events;
  gint64        tx_started;
  gboolean      bulk;
  gint64        bulk_threshold;
  gint64        bulk_min;
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

/* od-cache.c */
void          od_cache_set_applied      (OdCache  *self,
                                         gint64    applied);
/* Emits, on the owner's context, applied (unless < 0), outbox-changed,
 * reset and write-failed (taking error). */
void          od_cache_post_notify      (OdCache  *self,
                                         gint64    applied,
                                         gboolean  outbox_changed,
                                         gboolean  reset,
                                         GError   *error);

/* od-cache-schema.c */
sqlite3      *od_cache_open_connection  (const char  *path,
                                         gboolean     writer,
                                         GError     **error);
gboolean      od_cache_migrate          (sqlite3   *db,
                                         gboolean  *search_upgrade,
                                         GError   **error);
void          od_cache_bulk_begin       (OdCache  *self);
gboolean      od_cache_wants_bulk       (OdCache  *self,
                                         gint64    applied,
                                         gint64    known_head);
void          od_cache_bulk_end         (OdCache  *self);
gboolean      od_cache_rebuild_views    (OdCache  *self,
                                         GError  **error);
void          od_cache_upgrade_search   (OdCache  *self);
void          od_cache_refold_kept_events (OdCache *self);

/* od-cache-writer.c */
void          od_cache_writer_start     (OdCache  *self);
void          od_cache_writer_stop      (OdCache  *self);
void          od_cache_writer_take_over (OdCache  *self);
gboolean      od_cache_take_writer_lock (OdCache  *self);
void          od_cache_call_gap_func    (OdCache  *self,
                                         gint64    applied,
                                         gint64    position,
                                         gint64    prev);

/* od-cache-project.c */
void          od_cache_working_free     (gpointer  working);
gboolean      od_cache_prepare_writer_statements  (OdCache  *self,
                                                   GError  **error);
void          od_cache_finalize_writer_statements (OdCache  *self);
gint64        od_cache_read_applied     (sqlite3  *db);
gboolean      od_cache_begin_tx         (OdCache  *self,
                                         GError  **error);
void          od_cache_rollback_tx      (OdCache  *self);
gboolean      od_cache_commit_tx        (OdCache  *self,
                                         GError  **error);
gboolean      od_cache_apply_events     (OdCache    *self,
                                         GPtrArray  *events,
                                         GError    **error);

/* The read connection; only for the thread that opened the cache.  Not
 * public: SQL on the cache belongs in the core (od-query.c, the outbox,
 * the session); tests read the file through it. */
sqlite3      *od_cache_get_db       (OdCache     *self);

/* A statement prepared once on the read connection and kept; reset and
 * cleared of bindings before it is returned. */
sqlite3_stmt *od_cache_prepare_read (OdCache     *self,
                                     const char  *sql,
                                     GError     **error);

/* Like g_main_context_invoke_full() but always through an idle source:
 * never runs the function in the calling thread, even when the target
 * context is free at that moment. */
void          od_core_invoke (GMainContext   *context,
                              int             priority,
                              GSourceFunc     func,
                              gpointer        data,
                              GDestroyNotify  notify);

/* od_cache_write_async() with a choice: durable = fsynced commit. */
void          od_cache_write_async_full (OdCache            *self,
                                         gboolean            durable,
                                         OdCacheWriteFunc    func,
                                         gpointer            data,
                                         GDestroyNotify      data_free,
                                         GCancellable       *cancellable,
                                         GAsyncReadyCallback callback,
                                         gpointer            user_data);

/* Why the event cannot follow the order by the protocol's rules (the
 * projector's check), or NULL: a re-fold must judge as the projector. */
char         *od_cache_contract_break (const OdOrder *order,
                                        const OdEvent *event);

/* Rewrites one order's rows (orders, order_items, its search entry,
 * inconsistent_orders) from the fold of its stored events, inside the
 * caller's transaction on db (od-verify.c's repair; the cache's fold of
 * events an older version kept). */
gboolean      od_verify_rewrite_order (sqlite3     *db,
                                       const char  *order_id,
                                       GError     **error);

/* For tests: the schema-6 fold of kept events covers chunk_positions
 * positions a transaction, and hook, if set, is called on the writer
 * thread before each one with the highest position still to fold;
 * FALSE stops the fold there as closing the cache would. */
typedef gboolean (*OdCacheUpgradeHook) (gint64   remaining,
                                        gpointer data);

void          od_cache_set_upgrade_hook (gint64             chunk_positions,
                                         OdCacheUpgradeHook hook,
                                         gpointer           data);

G_END_DECLS

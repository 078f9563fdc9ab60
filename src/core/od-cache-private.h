/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-cache.h"
#include "od-order.h"

G_BEGIN_DECLS

/* The read connection; only for the thread that opened the cache.  Not
 * public: SQL on the cache belongs in the core (od-query.c, the outbox,
 * the session); tests read the file through it. */
sqlite3      *od_cache_get_db       (OdCache     *self);

/* A statement prepared once on the read connection and kept; reset and
 * cleared of bindings before it is returned. */
sqlite3_stmt *od_cache_prepare_read (OdCache     *self,
                                     const char  *sql,
                                     GError     **error);

void          od_cache_set_sqlite_error (GError   **error,
                                         sqlite3   *db,
                                         const char *what);

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

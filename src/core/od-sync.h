/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "od-cache.h"
#include "od-lag.h"

G_BEGIN_DECLS

/* The sync engine: keeps the cache following the server's event log.
 *
 * It runs the stream on its own thread (blocking HTTP reads of 64 KiB
 * blocks, lines split by hand, JSON parsed there) and hands parsed batches
 * to the cache's writer thread, so parsing and writing overlap and the
 * main loop never blocks.  It connects to /v1/events/stream with
 * Last-Event-ID = applied position, detects gaps with `prev` and fills
 * them from GET /v1/events pages, reconnects with backoff (1 s doubling to
 * 30 s, ±20 % jitter), drops a connection silent for 12 s (heartbeats come
 * every ≤ 5 s), and stops on 401/403 (state SIGN_IN_NEEDED).
 *
 * Properties: "cache" (OdCache, construct-only), "server-url" (char*),
 * "token" (char*, write-only in spirit: never logged), "lag" (OdLag,
 * read-only), "running" (gboolean, read-only).
 * Signals: "caught-up" (gint64 position): applied reached the head the
 * server announced after the replay (emitted on every such transition,
 * always from the main loop, never from within od_sync_engine_start ()). */

#define OD_TYPE_SYNC_ENGINE (od_sync_engine_get_type ())
G_DECLARE_FINAL_TYPE (OdSyncEngine, od_sync_engine, OD, SYNC_ENGINE, GObject)

OdSyncEngine *od_sync_engine_new           (OdCache      *cache,
                                            const char   *server_url,
                                            const char   *token);
OdLag        *od_sync_engine_get_lag       (OdSyncEngine *self);
OdCache      *od_sync_engine_get_cache     (OdSyncEngine *self);
const char   *od_sync_engine_get_server_url (OdSyncEngine *self);

/* Changing the URL or token restarts a running engine. */
void          od_sync_engine_set_server    (OdSyncEngine *self,
                                            const char   *server_url,
                                            const char   *token);
/* The certificates to trust for an HTTPS server (e.g. from
 * g_tls_file_database_new() on a private CA file); NULL = the system's
 * trust store.  Nothing else is ever accepted: a refused certificate is
 * reported in OdLag:last-error (in words) and OdLag:tls-errors (the
 * flags).  Restarts a running engine. */
void          od_sync_engine_set_tls_database (OdSyncEngine *self,
                                               GTlsDatabase *database);
void          od_sync_engine_start         (OdSyncEngine *self);
void          od_sync_engine_stop          (OdSyncEngine *self);
gboolean      od_sync_engine_get_running   (OdSyncEngine *self);

/* Where the engine learns whether the network can reach the server
 * (default: g_network_monitor_get_default(), taken at start).  While it
 * cannot and the engine is not connected, the lag state is OFFLINE; when
 * the network changes the engine tries again at once.  Restarts a
 * running engine. */
void          od_sync_engine_set_network_monitor (OdSyncEngine    *self,
                                                  GNetworkMonitor *monitor);
/* Skips the backoff wait and tries now (the GUI's "Retry now"). */
void          od_sync_engine_reconnect_now (OdSyncEngine *self);

/* For tools: events per stream read are handed on in batches of at most
 * this many (default 2000). */
void          od_sync_engine_set_batch_size (OdSyncEngine *self,
                                             guint         n);

/* Counters for diagnostics and benchmarks: the running engine's, or its
 * last run's once stopped (zero before the first start). */
typedef struct
{
  guint64 events_received;   /* parsed from stream or pages */
  guint64 duplicates_skipped;/* at or below the checkpoint */
  guint64 gaps;              /* prev mismatches seen */
  guint64 pages_fetched;     /* GET /v1/events requests */
  guint64 connections;       /* stream connections opened */
  guint64 bytes;             /* stream bytes read */
} OdSyncStats;

void          od_sync_engine_get_stats     (OdSyncEngine *self,
                                            OdSyncStats  *stats);

G_END_DECLS

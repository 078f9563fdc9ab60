/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

/* The console's non-GUI core: read cache, projector, queries, sync
 * engine, outbox and lag.  Never includes GTK.
 *
 * Typical use (main thread):
 *
 *   g_autoptr(OdCache) cache = od_cache_open (od_cache_default_path (url), &error);
 *   g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, url, token);
 *   g_autoptr(OdOutbox) outbox = od_outbox_new (cache, url, token);
 *   od_sync_engine_start (sync);
 *   g_signal_connect (cache, "applied", G_CALLBACK (on_applied), self);
 *   g_object_bind_property (od_sync_engine_get_lag (sync), "state", ...);
 *   rows = od_query_orders (cache, &query, &cursor, 100, &error);
 */

#include "od-protocol.h"

#include "od-cache.h"
#include "od-lag.h"
#include "od-outbox.h"
#include "od-query.h"
#include "od-sse.h"
#include "od-sync.h"
#include "od-tls.h"
#include "od-verify.h"

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

/* The console's non-GUI core: read cache, projector, queries, sync
 * engine, outbox and lag.  Never includes GTK.
 *
 * Typical use (main thread):
 *
 *   g_autoptr(OdSession) session = od_session_open (NULL, url, OD_SESSION_FLAGS_NONE, &error);
 *   od_session_sign_in (session, token);
 *   od_session_connect (session);
 *   g_signal_connect (od_session_get_cache (session), "applied", G_CALLBACK (on_applied), self);
 *   g_signal_connect (session, "notify::pending-commands", G_CALLBACK (on_pending), self);
 *   od_session_submit_async (session, command, cancellable, on_submitted, self);
 *   rows = od_query_orders (od_session_get_cache (session), &query, &cursor, 100, &error);
 */

#include "od-protocol.h"

#include "od-cache.h"
#include "od-lag.h"
#include "od-outbox.h"
#include "od-query.h"
#include "od-session.h"
#include "od-sse.h"
#include "od-sync.h"
#include "od-tls.h"
#include "od-verify.h"

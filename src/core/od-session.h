/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "od-cache.h"
#include "od-lag.h"
#include "od-outbox.h"
#include "od-sync.h"

G_BEGIN_DECLS

/* One profile's session: the cache, the sync engine that keeps it
 * following the server, the outbox, the TLS trust and the identity (the
 * server URL, the token and its fingerprint).  The console's window and
 * orderdeskctl are both users of it, as GNOME Calendar's views are of
 * GcalContext: they read its objects and properties and never wire the
 * parts together themselves.
 *
 * A session is opened "signed out": the outbox neither sends nor holds
 * anything and the sync engine is stopped.  Then:
 *   od_session_set_identity () names who is asking, for listing (held
 *       commands are those queued under another identity); nothing is
 *       sent;
 *   od_session_sign_in () also lets the outbox send this identity's
 *       commands (at once, if some are stored);
 *   od_session_connect () starts the sync engine and sends what waits.
 *
 * Properties (read-only, notified only when the value changes; all on
 * the thread that opened the session):
 *   "cache", "sync-engine", "outbox", "lag": the parts;
 *   "server-url" (char*), "identity" (char*: the token's fingerprint,
 *       od_outbox_token_fingerprint (), "none" without a token; the token
 *       itself is never readable);
 *   "state" (OdLagState), "applied-position" (the checkpoint),
 *       "known-head" (the server's head as last heard): from the lag;
 *   "pending-commands" (guint): od_outbox_count_pending ();
 *   "latency-last", "latency-p50", "latency-p99" (double ms, -1 before
 *       the first): click-to-visible latency of this session's last 256
 *       visible commands, p50/p99 by nearest rank rounded up (so the p99
 *       of fewer than 100 samples is the largest). */

typedef enum
{
  OD_SESSION_FLAGS_NONE        = 0,
  /* For a window: a small read cache and no memory map (the console's
   * budget is 150 MB at a million orders), and catch-up committed in
   * smaller transactions so the list and the progress move. */
  OD_SESSION_FLAGS_INTERACTIVE = 1 << 0,
} OdSessionFlags;

#define OD_TYPE_SESSION (od_session_get_type ())

G_DECLARE_FINAL_TYPE (OdSession, od_session, OD, SESSION, GObject)

/* Opens the cache at cache_path, or at od_cache_default_path (server_url)
 * when cache_path is NULL (one of them must be given).  server_url NULL:
 * the URL the cache last synced with (or none). */
OdSession    *od_session_open              (const char     *cache_path,
                                            const char     *server_url,
                                            OdSessionFlags  flags,
                                            GError        **error);

/* Of the caches in the default directory (od_cache_default_path ()), the
 * one last in contact with its server, read without opening it (nothing
 * is created, migrated or locked); NULL when none has synced.  For a
 * tool given neither a server nor a cache. */
char         *od_session_find_last_synced  (void);

OdCache      *od_session_get_cache         (OdSession      *self);
OdSyncEngine *od_session_get_sync_engine   (OdSession      *self);
OdOutbox     *od_session_get_outbox        (OdSession      *self);
OdLag        *od_session_get_lag           (OdSession      *self);
const char   *od_session_get_server_url    (OdSession      *self);
const char   *od_session_get_identity      (OdSession      *self);
gboolean      od_session_has_token         (OdSession      *self);

OdLagState    od_session_get_state         (OdSession      *self);
gint64        od_session_get_applied_position (OdSession   *self);
gint64        od_session_get_known_head    (OdSession      *self);
guint         od_session_get_pending_commands (OdSession   *self);
void          od_session_get_latency       (OdSession      *self,
                                            double         *last,
                                            double         *p50,
                                            double         *p99);

/* See above.  The token is copied and cleared from memory when replaced
 * or when the session ends. */
void          od_session_set_identity      (OdSession      *self,
                                            const char     *token);
void          od_session_sign_in           (OdSession      *self,
                                            const char     *token);

/* The certificates to trust for an HTTPS server, for the sync engine and
 * the outbox alike; NULL = the system's trust store.  Nothing else is
 * ever accepted. */
void          od_session_set_tls_database  (OdSession      *self,
                                            GTlsDatabase   *database);
GTlsDatabase *od_session_get_tls_database  (OdSession      *self);
/* Trusts the CA file at path (NULL or "" = the system's store).  A file
 * that cannot be read is an error, and the system's store is trusted:
 * that refuses more, never less. */
gboolean      od_session_set_ca_file       (OdSession      *self,
                                            const char     *path,
                                            GError        **error);

/* Starts the sync engine and sends what waits in the outbox. */
void          od_session_connect           (OdSession      *self);
/* Tries now: starts the sync engine if it is stopped, else skips its
 * backoff wait; and sends what waits in the outbox. */
void          od_session_reconnect         (OdSession      *self);
/* Skips the sync engine's backoff wait only. */
void          od_session_reconnect_now     (OdSession      *self);

/* Validates and queues a command (od_outbox_submit_async ()); resolves
 * with its id once stored, or -1 with the error (G_IO_ERROR_INVALID_DATA
 * for an invalid command). */
void          od_session_submit_async      (OdSession          *self,
                                            const OdCommand    *command,
                                            GCancellable       *cancellable,
                                            GAsyncReadyCallback callback,
                                            gpointer            user_data);
/* The same with a JSON body as in api.md (kept byte for byte). */
void          od_session_submit_json_async (OdSession          *self,
                                            const char         *body,
                                            GCancellable       *cancellable,
                                            GAsyncReadyCallback callback,
                                            gpointer            user_data);
gint64        od_session_submit_finish     (OdSession          *self,
                                            GAsyncResult       *result,
                                            GError            **error);

/* Empties the cache's views (od_cache_rebuild_async ()), then, when
 * signed in, has the sync engine replay the log. */
void          od_session_rebuild_async     (OdSession          *self,
                                            GCancellable       *cancellable,
                                            GAsyncReadyCallback callback,
                                            gpointer            user_data);
gboolean      od_session_rebuild_finish    (OdSession          *self,
                                            GAsyncResult       *result,
                                            GError            **error);

/* Stops the sync engine and closes the cache (committing what is
 * queued).  Also done when the session is disposed. */
void          od_session_close             (OdSession      *self);

G_END_DECLS

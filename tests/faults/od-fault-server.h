/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-core.h"

#include <libsoup/soup.h>

#include "od-test-process.h"

G_BEGIN_DECLS

/* A real orderdesk-server (OD_SERVER_BIN) on loopback for the fault
 * tests, on a SQLite store in a directory of its own, with the tokens
 * "fault-op" (operator "olga") and "fault-view" (viewer "vera"). */
typedef struct
{
  OdTestProcess *process;
  const char    *dir;    /* the process's directory */
  char          *store;
  const char    *log;    /* stdout and stderr of every run */
  char          *url;
  guint16        port;   /* kept across restarts */
  GSubprocess   *proc;   /* the process's; NULL while it does not run */
} OdFaultServer;

#define OD_FAULT_OPERATOR_TOKEN "fault-op"
#define OD_FAULT_VIEWER_TOKEN   "fault-view"

OdFaultServer *od_fault_server_start   (void);
/* kill -9, and wait for the process to be gone. */
void           od_fault_server_kill    (OdFaultServer *server);
/* Starts again on the same store and the same port. */
void           od_fault_server_restart (OdFaultServer *server);
void           od_fault_server_free    (OdFaultServer *server);

/* A session for one thread (a sync SoupSession is not shared between
 * threads). */
SoupSession   *od_fault_session_new    (void);

/* POST /v1/commands with the operator token.  Returns the HTTP status, or
 * 0 when no answer was received (the outcome is unknown); *answer gets
 * the body (or the transport error); *replayed whether the answer had
 * Idempotent-Replayed: true. */
guint          od_fault_post_command   (SoupSession   *session,
                                        const char    *url,
                                        const char    *key,
                                        const char    *body,
                                        char         **answer,
                                        gboolean      *replayed);

/* GET /v1/head; -1 when the server does not answer. */
gint64         od_fault_head           (SoupSession   *session,
                                        const char    *url);

/* Every event of the log through GET /v1/events pages, checking that
 * each event's prev is the position before it. */
GPtrArray     *od_fault_fetch_events   (SoupSession   *session,
                                        const char    *url);

/* Reads "position" and "version" of a 200 answer. */
gboolean       od_fault_parse_answer   (const char    *answer,
                                        gint64        *position,
                                        gint64        *version);

char          *od_fault_tmpdir         (const char    *name);
void           od_fault_rmdir          (const char    *dir);

/* Compares the cache with the server's log: the same events (position,
 * prev, order, version, type, data) and orders/order_items equal to the
 * fold of the log with od_order_apply.  FALSE with *why on a difference. */
gboolean       od_fault_cache_matches_log (sqlite3    *db,
                                           GPtrArray  *events,
                                           char      **why);

/* PRAGMA integrity_check on db: TRUE when "ok". */
gboolean       od_fault_integrity_ok   (sqlite3       *db);
gint64         od_fault_scalar         (sqlite3       *db,
                                        const char    *sql);

/* Percentile (0..100) of n doubles (sorted in place). */
double         od_fault_percentile     (double        *values,
                                        guint          n,
                                        double         pct);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdFaultServer, od_fault_server_free)

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <libpq-fe.h>

G_BEGIN_DECLS

/* Helpers shared by the PostgreSQL test programs.  They need a running
 * PostgreSQL whose socket directory is in OD_TEST_PGHOST (.ci/run starts
 * one; locally `. tests/pg-cluster.sh start`).  Without it the programs
 * fail: they never skip. */

const char *od_pg_test_host         (void);
char       *od_pg_test_create_db    (void);
char       *od_pg_test_uri          (const char *dbname);
PGconn     *od_pg_test_connect      (const char *dbname);
void        od_pg_test_drop_db      (const char *dbname);
PGresult   *od_pg_test_exec         (PGconn     *conn,
                                     const char *sql,
                                     int         n_params,
                                     const char *const *values);
gint64      od_pg_test_scalar       (PGconn     *conn,
                                     const char *sql);
char       *od_pg_test_foreign_append (PGconn   *conn,
                                       gboolean  take_lock,
                                       gboolean  commit,
                                       guint     hold_ms);

G_END_DECLS

/* orderdesk-server processes ------------------------------------------ */

#include <libsoup/soup.h>
#include "od-protocol.h"

G_BEGIN_DECLS

#define OD_PG_TEST_OPERATOR "pg-operator-secret"
#define OD_PG_TEST_VIEWER   "pg-viewer-secret"

typedef struct _OdPgServer OdPgServer;

OdPgServer  *od_pg_server_start       (const char  *store_uri,
                                       const char  *name);
void         od_pg_server_stop        (OdPgServer  *server);
void         od_pg_server_kill        (OdPgServer  *server);
const char  *od_pg_server_url         (OdPgServer  *server);
void         od_pg_server_dump_log    (OdPgServer  *server);

SoupSession *od_pg_session_new        (void);
/* The status, or 0 when the request got no answer from a server that
 * od_pg_server_kill () killed (any other failure aborts the test). */
guint        od_pg_post_command       (SoupSession *session,
                                       OdPgServer  *server,
                                       const char  *key,
                                       const char  *body,
                                       char       **response,
                                       gboolean    *replayed);
gint64       od_pg_get_head           (SoupSession *session,
                                       OdPgServer  *server);

/* A Server-Sent Events subscriber on its own thread.  It checks the
 * chain as it goes (every event's prev is the previous event's
 * position) and keeps every event, in order. */
typedef struct _OdPgSubscriber OdPgSubscriber;

typedef void (*OdPgEventFunc) (OdEvent  *event,
                               gint64    received_usec,
                               gpointer  user_data);

OdPgSubscriber *od_pg_subscriber_start (OdPgServer     *server,
                                        gint64          after,
                                        OdPgEventFunc   func,
                                        gpointer        user_data);
gboolean     od_pg_subscriber_wait     (OdPgSubscriber *sub,
                                        gint64          position,
                                        guint           timeout_ms);
GPtrArray   *od_pg_subscriber_stop     (OdPgSubscriber *sub,
                                        char          **failure);

G_END_DECLS

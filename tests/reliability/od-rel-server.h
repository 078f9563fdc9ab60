/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>
#include <libsoup/soup.h>

G_BEGIN_DECLS

/* Tokens of the servers these tests start: two roles, and names that
 * appear in the log so that a check can tell a name from a token. */
#define OD_REL_OPERATOR "rel-operator-token-5d1e7c"
#define OD_REL_VIEWER   "rel-viewer-token-a93f02"

typedef struct _OdRelServer OdRelServer;

/* Starts orderdesk-server (OD_SERVER_BIN) on 127.0.0.1, a free port, a
 * fresh SQLite store and the two tokens above, with the extra arguments
 * given (NULL-terminated).  Its stderr goes to a log file. */
OdRelServer *od_rel_server_new      (const char  *first_arg,
                                     ...) G_GNUC_NULL_TERMINATED;
const char  *od_rel_server_url      (OdRelServer *server);
guint16      od_rel_server_port     (OdRelServer *server);
const char  *od_rel_server_dir      (OdRelServer *server);
gboolean     od_rel_server_alive    (OdRelServer *server);
/* Stops with SIGTERM and asserts a clean exit (status 0). */
void         od_rel_server_stop     (OdRelServer *server);
/* The whole stderr log so far. */
char        *od_rel_server_log      (OdRelServer *server);
void         od_rel_server_free     (OdRelServer *server);

/* A request through libsoup; returns the status (0 when the request
 * failed, with error set) and the body. */
guint        od_rel_send            (SoupSession *session,
                                     const char  *method,
                                     const char  *url,
                                     const char  *token,
                                     const char  *body,
                                     GBytes     **response,
                                     GError     **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdRelServer, od_rel_server_free)

G_END_DECLS

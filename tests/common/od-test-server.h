/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <libsoup/soup.h>

#include "od-protocol.h"

G_BEGIN_DECLS

/* The one test server harness: an orderdesk-server (OD_SERVER_BIN,
 * through od-test-process.c) for the server's, the core's, orderdeskctl's
 * and the console's tests, with HTTP helpers.
 *
 * The tokens every test server knows (see od-test-server.c). */
#define OD_TEST_ALICE  "op-alice-secret"
#define OD_TEST_BOB    "op-bob-secret"
#define OD_TEST_VICTOR "view-victor-secret"
/* The core's tests speak of an operator and a viewer. */
#define OD_TEST_OPERATOR_TOKEN OD_TEST_ALICE
#define OD_TEST_VIEWER_TOKEN   OD_TEST_VICTOR

typedef struct _OdTestServer OdTestServer;

typedef struct
{
  guint               status;     /* 0: no answer (connection closed) */
  SoupMessageHeaders *headers;
  char               *body;       /* always NUL-terminated */
  gsize               len;
  JsonNode           *json;       /* NULL unless the body parses as JSON */
} OdTestResponse;

/* Server process.  od_test_server_new: the store OD_TEST_STORE names
 * (a fresh SQLite file or PostgreSQL database) and the options given;
 * freeing it stops it with SIGTERM and checks it exits with status 0. */
OdTestServer   *od_test_server_new          (const char      *first_arg,
                                             ...);
/* For the core's tests: a SQLite store, no rate limit, more options
 * (NULL-terminated, may be NULL) and, with demo_orders > 0, the demo seed
 * (--demo --demo-orders N), waited for until the head stops moving.
 * These tests stop, kill and restart the server as they please: freeing
 * it ends it (SIGCONT, SIGTERM) without checking its exit status. */
OdTestServer   *od_test_server_new_seeded   (guint               demo_orders,
                                             const char * const *extra_args);
/* Starts a stopped or killed server again, on any free port. */
void            od_test_server_start        (OdTestServer    *server);
/* kill -9 if it still runs, then starts it again on the same store and
 * the same port (clients keep their URL), without the seed. */
void            od_test_server_restart      (OdTestServer    *server);
void            od_test_server_stop         (OdTestServer    *server);
void            od_test_server_kill         (OdTestServer    *server);
void            od_test_server_signal       (OdTestServer    *server,
                                             int              signum);
void            od_test_server_free         (OdTestServer    *server);
const char     *od_test_server_url          (OdTestServer    *server);
const char     *od_test_server_store        (OdTestServer    *server);
const char     *od_test_server_dir          (OdTestServer    *server);
/* The SQLite store's file, or NULL on PostgreSQL. */
const char     *od_test_server_sqlite_path  (OdTestServer    *server);
/* The server's own session (replaced when the server is killed). */
SoupSession    *od_test_server_session      (OdTestServer    *server);
GPid            od_test_server_pid          (OdTestServer    *server);
gboolean        od_test_server_alive        (OdTestServer    *server);
gsize           od_test_server_rss_kib      (OdTestServer    *server);
gboolean        od_test_server_wrapped      (void);
/* The server's whole log (stdout and stderr) so far. */
char           *od_test_server_read_log     (OdTestServer    *server);
const char     *od_test_store_kind          (void);

/* HTTP through libsoup.  A NULL session means the server's own session,
 * which belongs to the thread that made the server; other threads make
 * their own with od_test_session_new. */
SoupSession    *od_test_session_new         (void);
OdTestResponse *od_test_request             (OdTestServer    *server,
                                             SoupSession     *session,
                                             const char      *method,
                                             const char      *path,
                                             const char      *token,
                                             const char      *content_type,
                                             const char      *body,
                                             gssize           len,
                                             const char      *first_header,
                                             ...);
OdTestResponse *od_test_get                 (OdTestServer    *server,
                                             const char      *token,
                                             const char      *path);
OdTestResponse *od_test_command             (OdTestServer    *server,
                                             SoupSession     *session,
                                             const char      *token,
                                             const char      *key,
                                             const char      *body);
gint64          od_test_command_ok          (OdTestServer    *server,
                                             SoupSession     *session,
                                             const char      *token,
                                             const char      *body,
                                             gint64          *version);
char           *od_test_create_order        (OdTestServer    *server,
                                             SoupSession     *session,
                                             const char      *token,
                                             gint64          *position);
char           *od_test_new_key             (void);
gint64          od_test_head                (OdTestServer    *server);
GPtrArray      *od_test_events              (OdTestServer    *server,
                                             gint64           after);
OdEvent        *od_test_event_at            (OdTestServer    *server,
                                             gint64           position);
void            od_test_assert_chain        (GPtrArray       *events,
                                             gint64           first_prev);

/* Raw TCP, for requests libsoup will not send. */
GSocketConnection *od_test_raw_connect      (OdTestServer    *server);
gboolean        od_test_raw_write           (GSocketConnection *connection,
                                             const void      *data,
                                             gsize            len);
OdTestResponse *od_test_raw_read_response   (GSocketConnection *connection,
                                             guint            timeout_s);
OdTestResponse *od_test_raw                 (OdTestServer    *server,
                                             const void      *request,
                                             gsize            len,
                                             guint            timeout_s);
OdTestResponse *od_test_raw_request         (OdTestServer    *server,
                                             const char      *method,
                                             const char      *path,
                                             const char      *headers,
                                             const char      *body,
                                             gssize           len);

/* Responses. */
void            od_test_response_free       (OdTestResponse  *response);
JsonObject     *od_test_response_object     (OdTestResponse  *response);
const char     *od_test_response_header     (OdTestResponse  *response,
                                             const char      *name);
gint64          od_test_response_int        (OdTestResponse  *response,
                                             const char      *member);
const char     *od_test_response_string     (OdTestResponse  *response,
                                             const char      *member);
gboolean        od_test_response_has_error_field (OdTestResponse *response,
                                                  const char     *field);

void            od_test_check_problem       (const char      *file,
                                             int              line,
                                             OdTestResponse  *response,
                                             guint            status,
                                             const char      *code);
void            od_test_check_status        (const char      *file,
                                             int              line,
                                             OdTestResponse  *response,
                                             guint            status);

#define od_test_assert_problem(r, status, code) \
  od_test_check_problem (__FILE__, __LINE__, (r), (status), (code))
#define od_test_assert_status(r, status) \
  od_test_check_status (__FILE__, __LINE__, (r), (status))

gboolean        od_test_json_equal          (const char      *a,
                                             const char      *b);

/* The core's load and checks.  Every event of the log (GET /v1/events
 * pages, od-test-log.c). */
GPtrArray      *od_test_fetch_events        (OdTestServer    *server);
/* POST /v1/commands as the operator; returns the status (0 when there
 * was no answer), *answer (if non-NULL) gets the body or the transport
 * error.  A NULL session is the server's own. */
guint           od_test_post_command        (OdTestServer    *server,
                                             SoupSession     *session,
                                             const char      *key,
                                             const char      *body,
                                             char           **answer);
/* Sends n_orders orders (create, add an item, place, ship) from
 * `threads` threads; returns the highest position acknowledged. */
gint64          od_test_load                (OdTestServer    *server,
                                             guint            n_orders,
                                             guint            threads);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdTestResponse, od_test_response_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdTestServer, od_test_server_free)

G_END_DECLS

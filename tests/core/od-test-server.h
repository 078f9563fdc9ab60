/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-core.h"

#include <libsoup/soup.h>

#include "od-test-process.h"

G_BEGIN_DECLS

/* A real orderdesk-server (OD_SERVER_BIN) on loopback for the core's
 * tests, with a tokens file of its own: "op-secret" (operator "alice")
 * and "view-secret" (viewer "victor"). */
typedef struct
{
  OdTestProcess *process;
  const char    *dir;        /* the process's directory */
  char          *store;      /* sqlite file */
  char          *url;
  guint16        port;       /* kept across restarts */
  SoupSession   *session;
  guint          demo_orders;
  char         **extra_args; /* more server options, e.g. --tls-cert=FILE */
} OdTestServer;

#define OD_TEST_OPERATOR_TOKEN "op-secret"
#define OD_TEST_VIEWER_TOKEN   "view-secret"

/* demo_orders > 0 seeds the store (--demo --demo-orders N) and waits
 * until the seeding is done. */
OdTestServer *od_test_server_start    (guint          demo_orders);
/* The same with more server options (NULL-terminated). */
OdTestServer *od_test_server_start_with (guint              demo_orders,
                                         const char * const *extra_args);
/* Starts the server again on the same store and port. */
void          od_test_server_restart  (OdTestServer  *server);
void          od_test_server_kill     (OdTestServer  *server);
void          od_test_server_signal   (OdTestServer  *server,
                                       int            signum);
void          od_test_server_free     (OdTestServer  *server);

/* POST /v1/commands; returns the status, *body (if non-NULL) gets the
 * answer. */
guint         od_test_post_command    (OdTestServer  *server,
                                       const char    *key,
                                       const char    *body,
                                       char         **answer);
gint64        od_test_head            (OdTestServer  *server);
/* Every event of the log, through GET /v1/events pages. */
GPtrArray    *od_test_fetch_events    (OdTestServer  *server);

/* Sends n commands (create, add items, place, …) from `threads`
 * threads; returns the highest position acknowledged. */
gint64        od_test_load            (OdTestServer  *server,
                                       guint          n_orders,
                                       guint          threads);

char         *od_test_ctl_path        (void);
/* Runs `orderdeskctl -q --server URL --cache CACHE ARGS…` with
 * ORDERDESK_TOKEN = token and `env` (name, value, …, NULL; may be NULL)
 * and returns its exit status (minus the signal when it was killed); *err,
 * when err is not NULL, gets what it wrote on stderr. */
int           od_test_run_ctl         (OdTestServer       *server,
                                       const char         *cache_path,
                                       const char         *token,
                                       const char * const *env,
                                       const char * const *args,
                                       char              **err);
/* The same, started and not waited for (stdout silenced, stderr to
 * stderr_path, appended, or inherited when NULL):
 * for tests of processes side by side.  od_test_wait_ctl() returns what
 * od_test_run_ctl() would. */
GSubprocess  *od_test_spawn_ctl       (OdTestServer       *server,
                                       const char         *cache_path,
                                       const char         *token,
                                       const char * const *args,
                                       const char         *stderr_path);
int           od_test_wait_ctl        (GSubprocess        *process);

/* The same with the server's URL (NULL: no -q and no --server) and
 * cache (NULL: no --cache) given or not; *out, when out is not NULL, gets
 * stdout.  ORDERDESK_SERVER is never passed on; ORDERDESK_TOKEN only as
 * `token` says (NULL: unset). */
int           od_test_run_ctl_full    (const char         *url,
                                       const char         *cache_path,
                                       const char         *token,
                                       const char * const *env,
                                       const char * const *args,
                                       char              **out,
                                       char              **err);
char         *od_test_tmpdir          (const char    *name);
void          od_test_rmdir           (const char    *dir);

/* Positions once, versions contiguous per order, integrity ok. */
void          od_test_assert_cache_sane (OdCache     *cache);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdTestServer, od_test_server_free)

G_END_DECLS

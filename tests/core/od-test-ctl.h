/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-core.h"

#include <libsoup/soup.h>

#include "od-test-process.h"
#include "od-test-server.h"

G_BEGIN_DECLS

/* The core's and orderdeskctl's test helpers: running orderdeskctl,
 * temporary directories and a cache's sanity.  The server under test is
 * the common harness's (od-test-server.h, od_test_server_new_seeded). */

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

G_END_DECLS

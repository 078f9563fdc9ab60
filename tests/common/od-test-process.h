/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Whether a server's resident memory tells what it holds.  A program
 * built with AddressSanitizer keeps freed blocks resident in its
 * quarantine (256 MiB), so that there its growth follows how much was
 * allocated and freed meanwhile, and with it the machine's load: memory
 * bounds are checked by the plain build. */
#if defined(__SANITIZE_ADDRESS__)
#define OD_TEST_RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OD_TEST_RSS_MEANINGFUL 0
#endif
#endif
#ifndef OD_TEST_RSS_MEANINGFUL
#define OD_TEST_RSS_MEANINGFUL 1
#endif

/* One orderdesk-server (OD_SERVER_BIN) subprocess on 127.0.0.1 for the
 * tests: a temporary directory of its own holding its tokens file, its
 * ready file and its log (stdout and stderr, appended across restarts),
 * OD_TEST_SERVER_WRAPPER (e.g. valgrind) in front of the binary when set,
 * and death with the test process.  The test directories' harnesses are
 * thin layers over this one. */

typedef struct
{
  const char *name;
  const char *role;   /* "operator" or "viewer" */
  const char *token;
} OdTestToken;

typedef struct _OdTestProcess OdTestProcess;

/* Makes the directory (g_dir_make_tmp with "<prefix>-XXXXXX") and writes
 * the tokens file.  label names the server in messages. */
OdTestProcess *od_test_process_new        (const char         *prefix,
                                           const char         *label,
                                           const OdTestToken  *tokens,
                                           guint               n_tokens);
/* Starts the server with --listen 127.0.0.1:PORT (0: any free port),
 * --ready-file and --tokens, then args (NULL-terminated, may be NULL),
 * and waits for the ready file.  With a fixed port, a server that exits
 * before it is ready (the port still held after a kill -9) is started
 * again until the deadline; otherwise that is an error. */
void           od_test_process_start      (OdTestProcess      *process,
                                           guint16             port,
                                           const char * const *args);
/* An environment variable for the server only, from its next start on. */
void           od_test_process_setenv     (OdTestProcess      *process,
                                           const char         *name,
                                           const char         *value);
/* Soft and hard RLIMIT_NOFILE of the server from its next start on (set
 * in the child before exec); 0 leaves the test's own. */
void           od_test_process_set_fd_limit (OdTestProcess    *process,
                                           guint64             limit);
/* SIGTERM; the server must exit with status 0 (under valgrind that also
 * means no error and no definite leak). */
void           od_test_process_stop       (OdTestProcess      *process);
/* SIGCONT and SIGTERM, then waits, whatever the exit status. */
void           od_test_process_terminate  (OdTestProcess      *process);
/* kill -9, and waits for the process to be gone. */
void           od_test_process_kill       (OdTestProcess      *process);
void           od_test_process_signal     (OdTestProcess      *process,
                                           int                 signum);
/* Stops the server if it still runs (od_test_process_stop), and removes
 * the directory unless keep. */
void           od_test_process_free       (OdTestProcess      *process,
                                           gboolean            keep);

/* Waits for a program the test started.  One still running after
 * `seconds` (times the slowdown) is shown on stderr (its threads' stacks
 * when gdb is installed, else what each thread waits in), killed, and the
 * test fails: a hang says where it hangs instead of running into meson's
 * timeout, which shows nothing of it. */
void           od_test_process_wait_or_dump (GSubprocess      *subprocess,
                                           guint               seconds,
                                           const char         *what);

const char    *od_test_process_dir        (OdTestProcess      *process);
const char    *od_test_process_tokens_path (OdTestProcess     *process);
const char    *od_test_process_log_path   (OdTestProcess      *process);
/* The ready file's URL, host and port of the last start. */
const char    *od_test_process_url        (OdTestProcess      *process);
const char    *od_test_process_host       (OdTestProcess      *process);
guint16        od_test_process_port       (OdTestProcess      *process);
GSubprocess   *od_test_process_subprocess (OdTestProcess      *process);
GPid           od_test_process_pid        (OdTestProcess      *process);
gboolean       od_test_process_alive      (OdTestProcess      *process);

/* The whole log so far ("" when there is none). */
char          *od_test_process_read_log   (OdTestProcess      *process);
/* The last 16 KiB of the log on stderr. */
void           od_test_process_dump_log   (OdTestProcess      *process);

/* TRUE when OD_TEST_SERVER_WRAPPER is set; everything then waits
 * od_test_process_slowdown () times longer (20, or OD_TEST_SLOWDOWN
 * without a wrapper). */
gboolean       od_test_process_wrapped    (void);
guint          od_test_process_slowdown   (void);
/* Removes a directory and everything below it (not following symlinks). */
void           od_test_process_rmdir      (const char         *dir);

G_END_DECLS

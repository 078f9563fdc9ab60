/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The server as a service: configuration (file, environment, flags),
 * --version, the demo refusal off loopback, the systemd unit, GET /metrics
 * read by a real Prometheus parser, and the request log. */
#include "od-test-server.h"
#include "od-test-process.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>

static const char *
server_bin (void)
{
  const char *bin = g_getenv ("OD_SERVER_BIN");

  g_assert_nonnull (bin);
  return bin;
}

/* Runs the server binary to completion (it must exit within 30 s) with
 * extra environment variables; returns its exit status. */
static int
run_server (const char * const *argv_tail,
            const char * const *env,
            char              **out,
            char              **err)
{
  g_autoptr(GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GError) error = NULL;

  /* Only what the test sets: no ORDERDESK_* from the caller's shell. */
  {
    g_auto(GStrv) env_vars = g_get_environ ();

    for (guint i = 0; env_vars[i] != NULL; i++)
      if (g_str_has_prefix (env_vars[i], "ORDERDESK_"))
        {
          g_autofree char *name = g_strndup (env_vars[i], strcspn (env_vars[i], "="));

          g_subprocess_launcher_unsetenv (launcher, name);
        }
  }
  for (guint i = 0; env != NULL && env[i] != NULL; i += 2)
    g_subprocess_launcher_setenv (launcher, env[i], env[i + 1], TRUE);
  /* A server that should have refused to start but runs is stopped
   * after 30 s (status 124), and the test fails. */
  g_ptr_array_add (argv, (gpointer) "timeout");
  g_ptr_array_add (argv, (gpointer) "30");
  g_ptr_array_add (argv, (gpointer) server_bin ());
  for (guint i = 0; argv_tail[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) argv_tail[i]);
  g_ptr_array_add (argv, NULL);
  process = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (process, NULL, NULL, out, err, &error);
  g_assert_no_error (error);
  g_subprocess_wait (process, NULL, NULL);
  g_assert_true (g_subprocess_get_if_exited (process));
  return g_subprocess_get_exit_status (process);
}

static char *
write_temp (const char *dir,
            const char *name,
            const char *text)
{
  char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;

  /* 0600: the server refuses a tokens file others may read. */
  g_file_set_contents_full (path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error);
  g_assert_no_error (error);
  return path;
}

static void
test_version (void)
{
  g_autofree char *out = NULL, *err = NULL;
  const char *argv[] = { "--version", NULL };

  g_assert_cmpint (run_server (argv, NULL, &out, &err), ==, 0);
  g_assert_cmpstr (out, ==, "orderdesk-server " OD_VERSION "\n");
}

/* Each bad configuration exits with status 2 and a message naming where
 * the fault is. */
static void
check_config_error (const char         *dir,
                    const char         *file_text,
                    const char * const *flags,
                    const char * const *env,
                    const char         *expected)
{
  g_autofree char *path = write_temp (dir, "server.conf", file_text ? file_text : "[server]\n");
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *want = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();

  g_ptr_array_add (argv, (gpointer) "--config");
  g_ptr_array_add (argv, path);
  g_ptr_array_add (argv, (gpointer) "--print-config");
  for (guint i = 0; flags != NULL && flags[i] != NULL; i++)
    g_ptr_array_add (argv, (gpointer) flags[i]);
  g_ptr_array_add (argv, NULL);
  g_assert_cmpint (run_server ((const char * const *) argv->pdata, env, &out, &err), ==, 2);
  want = g_strdup_printf (expected, path);
  if (strstr (err, want) == NULL)
    g_error ("expected '%s' in the error, got: %s", want, err);
  g_assert_cmpstr (out, ==, "");
}

static void
test_config_errors (void)
{
  g_autofree char *dir = g_dir_make_tmp ("od-config-XXXXXX", NULL);

  check_config_error (dir, "# settings\n[server]\nlisten = 127.0.0.1:0\nstal-timeout = 5\n", NULL,
                      NULL, "%s:4: unknown key 'stal-timeout'");
  check_config_error (dir, "[server]\n\nstall-timeout = soon\n", NULL, NULL,
                      "%s:3: stall-timeout wants a whole number");
  check_config_error (dir, "[server]\ndemo = maybe\n", NULL, NULL,
                      "%s:2: demo wants true or false, not 'maybe'");
  check_config_error (dir, "[server]\nrate-limit = fast\n", NULL, NULL,
                      "%s:2: rate-limit wants RATE[:BURST]");
  check_config_error (dir, "[sever]\nlisten = 127.0.0.1:0\n", NULL, NULL,
                      "%s:1: unknown section [sever]");
  check_config_error (dir, "listen = 127.0.0.1:0\n", NULL, NULL,
                      "%s:1: 'listen' comes before the [server] section");
  check_config_error (dir, "[server]\nlisten 127.0.0.1:0\n", NULL, NULL,
                      "%s:2: expected 'key = value'");
  check_config_error (dir, "[server]\nstore-wait = 1\n# again\nstore-wait = 2\n", NULL, NULL,
                      "%s:4: 'store-wait' is already set on line 2");
  {
    const char *env[] = { "ORDERDESK_REQUEST_TIMEOUT", "-3", NULL };

    check_config_error (dir, NULL, NULL, env,
                        "environment variable ORDERDESK_REQUEST_TIMEOUT: request-timeout wants "
                        "a whole number from 1 to 86400, not '-3'");
  }
  {
    const char *flags[] = { "--demo-traffic", "lots", NULL };

    check_config_error (dir, NULL, flags, NULL, "--demo-traffic: demo-traffic wants a number");
  }
  {
    const char *flags[] = { "--frame-blocks=maybe", NULL };

    check_config_error (dir, NULL, flags, NULL,
                        "--frame-blocks: frame-blocks wants true or false, not 'maybe'");
  }
  {
    g_autofree char *out = NULL, *err = NULL;
    const char *argv[] = { "--config", "/nonexistent/orderdesk.conf", NULL };

    g_assert_cmpint (run_server (argv, NULL, &out, &err), ==, 2);
    g_assert_nonnull (strstr (err, "/nonexistent/orderdesk.conf"));
  }
  od_test_process_rmdir (dir);
}

/* Looks up "name = value  # source" in --print-config output. */
static void
check_setting (const char *dump,
               const char *name,
               const char *value,
               const char *source)
{
  g_autofree char *line = g_strdup_printf ("\n%s = %s  # %s\n", name, value, source);

  if (strstr (dump, line) == NULL)
    g_error ("expected '%s' in:\n%s", line + 1, dump);
}

static void
test_config_precedence (void)
{
  g_autofree char *dir = g_dir_make_tmp ("od-config-XXXXXX", NULL);
  g_autofree char *path = write_temp (dir, "server.conf",
                                      "[server]\n"
                                      "# each key is set here; some are overridden\n"
                                      "stall-timeout = 11\n"
                                      "request-timeout = 12\n"
                                      "store-wait = 13\n"
                                      "demo-orders = 14\n");
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *where = NULL;
  const char *env[] = { "ORDERDESK_REQUEST_TIMEOUT", "22", "ORDERDESK_STORE_WAIT", "23",
                        "ORDERDESK_RATE_LIMIT", "50:60", NULL };
  const char *argv[] = { "--config", path, "--print-config", "--store-wait", "33", NULL };

  g_assert_cmpint (run_server (argv, env, &out, &err), ==, 0);
  where = g_strdup_printf ("%s:3", path);
  check_setting (out, "stall-timeout", "11", where);              /* file */
  check_setting (out, "request-timeout", "22", "ORDERDESK_REQUEST_TIMEOUT"); /* env > file */
  check_setting (out, "store-wait", "33", "--store-wait");        /* flag > env > file */
  g_free (where);
  where = g_strdup_printf ("%s:6", path);
  check_setting (out, "demo-orders", "14", where);
  check_setting (out, "rate-limit", "50:60", "ORDERDESK_RATE_LIMIT");
  check_setting (out, "listen", "127.0.0.1:8080", "default");
  check_setting (out, "frame-blocks", "true", "default");
  /* A boolean flag alone is true; with =false, false. */
  {
    g_autofree char *out3 = NULL, *err3 = NULL;
    const char *argv3[] = { "--print-config", "--demo", "--frame-blocks=false", NULL };

    g_assert_cmpint (run_server (argv3, NULL, &out3, &err3), ==, 0);
    check_setting (out3, "demo", "true", "--demo");
    check_setting (out3, "frame-blocks", "false", "--frame-blocks");
  }

  /* ORDERDESK_CONFIG names the file when --config does not. */
  {
    g_autofree char *out2 = NULL, *err2 = NULL;
    const char *env2[] = { "ORDERDESK_CONFIG", path, NULL };
    const char *argv2[] = { "--print-config", NULL };

    g_assert_cmpint (run_server (argv2, env2, &out2, &err2), ==, 0);
    g_autofree char *line3 = g_strdup_printf ("%s:3", path);

    check_setting (out2, "stall-timeout", "11", line3);
  }
  od_test_process_rmdir (dir);
}

/* The whole server started from a config file alone, with one setting
 * overridden by the environment: the file's store and tokens are used,
 * and the environment's ready file wins over the file's. */
static void
test_config_runs (void)
{
  g_autofree char *dir = g_dir_make_tmp ("od-config-XXXXXX", NULL);
  g_autofree char *hash = g_compute_checksum_for_string (G_CHECKSUM_SHA256, "cfg-secret", -1);
  g_autofree char *tokens_json = g_strdup_printf ("[{\"name\": \"carol\", \"role\": \"operator\", "
                                                  "\"token_sha256\": \"%s\"}]\n", hash);
  g_autofree char *tokens = write_temp (dir, "tokens.json", tokens_json);
  g_autofree char *file_ready = g_build_filename (dir, "ready-from-file", NULL);
  g_autofree char *env_ready = g_build_filename (dir, "ready-from-env", NULL);
  g_autofree char *conf_text = g_strdup_printf ("[server]\nlisten = 127.0.0.1:0\n"
                                                "store = sqlite:%s/events.sqlite\n"
                                                "tokens = %s\nready-file = %s\n",
                                                dir, tokens, file_ready);
  g_autofree char *conf = write_temp (dir, "server.conf", conf_text);
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_SILENCE);
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(SoupSession) session = od_test_session_new ();
  g_autoptr(SoupMessage) msg = NULL;
  g_autoptr(GBytes) body = NULL;
  g_autofree char *url = NULL;
  g_autofree char *head_url = NULL;
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;

  g_subprocess_launcher_setenv (launcher, "ORDERDESK_READY_FILE", env_ready, TRUE);
  process = g_subprocess_launcher_spawn (launcher, &error, server_bin (), "--config", conf, NULL);
  g_assert_no_error (error);
  while (!g_file_get_contents (env_ready, &url, NULL, NULL))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_assert_nonnull (g_subprocess_get_identifier (process));
      g_usleep (10000);
    }
  g_strstrip (url);
  g_assert_false (g_file_test (file_ready, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (dir, G_FILE_TEST_IS_DIR));

  head_url = g_strconcat (url, "/v1/head", NULL);
  msg = soup_message_new ("GET", head_url);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer cfg-secret");
  body = soup_session_send_and_read (session, msg, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (soup_message_get_status (msg), ==, 200);
  {
    g_autofree char *db = g_build_filename (dir, "events.sqlite", NULL);

    g_assert_true (g_file_test (db, G_FILE_TEST_EXISTS));
  }
  g_subprocess_send_signal (process, SIGTERM);
  g_subprocess_wait (process, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_subprocess_get_exit_status (process), ==, 0);
  od_test_process_rmdir (dir);
}

/* --demo off loopback is refused unless --demo-public says so; then, and
 * for plain HTTP off loopback, a loud warning. */
static void
test_demo_public (void)
{
  g_autofree char *dir = g_dir_make_tmp ("od-demo-XXXXXX", NULL);
  g_autofree char *out = NULL, *err = NULL;
  const char *argv[] = { "--demo", "--demo-orders", "0", "--listen", "0.0.0.0:0", NULL };
  const char *env[] = { "XDG_DATA_HOME", dir, NULL };

  g_assert_cmpint (run_server (argv, env, &out, &err), ==, 2);
  g_assert_nonnull (strstr (err, "refusing --demo on 0.0.0.0:0"));
  g_assert_nonnull (strstr (err, "--demo-public"));
  g_assert_cmpstr (out, ==, "");
  /* Refused before anything was written. */
  {
    g_autofree char *data = g_build_filename (dir, "orderdesk-server", NULL);

    g_assert_false (g_file_test (data, G_FILE_TEST_EXISTS));
  }
  {
    g_autofree char *out2 = NULL, *err2 = NULL;
    const char *env2[] = { "XDG_DATA_HOME", dir, "ORDERDESK_LISTEN", "[::]:0", NULL };
    const char *argv2[] = { "--demo", NULL };

    g_assert_cmpint (run_server (argv2, env2, &out2, &err2), ==, 2);
    g_assert_nonnull (strstr (err2, "refusing --demo on [::]:0"));
  }

  /* Allowed with --demo-public, and loud about it. */
  {
    g_autoptr(OdTestServer) server = od_test_server_new ("--listen", "0.0.0.0:0", "--demo",
                                                         "--demo-public", "--demo-orders", "0",
                                                         NULL);
    g_autofree char *log = od_test_server_read_log (server);

    g_assert_nonnull (strstr (log, "DEMO SERVER ON A PUBLIC ADDRESS"));
    g_assert_nonnull (strstr (log, "PLAIN HTTP ON A NON-LOOPBACK ADDRESS"));
  }
  /* On loopback: no warning. */
  {
    g_autoptr(OdTestServer) server = od_test_server_new ("--demo", "--demo-orders", "0", NULL);
    g_autofree char *log = od_test_server_read_log (server);

    g_assert_null (strstr (log, "PUBLIC ADDRESS"));
    g_assert_null (strstr (log, "PLAIN HTTP"));
  }
  od_test_process_rmdir (dir);
}

/* systemd-analyze checks the unit as systemd would load it (unknown keys,
 * bad values, a missing ExecStart binary), and its offline security
 * report scores the hardening. */
static void
test_unit (void)
{
  g_autofree char *analyze = g_find_program_in_path ("systemd-analyze");
  g_autofree char *unit_in = g_build_filename (g_getenv ("OD_BUILD_DIR"), "data",
                                               "orderdesk-server.service", NULL);
  g_autofree char *text = NULL;
  g_autofree char *dir = NULL, *unit = NULL, *bindir = NULL, *local = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GRegex) exec = NULL;
  g_autofree char *out = NULL;
  g_autoptr(GSubprocess) process = NULL;

  if (analyze == NULL)
    {
      g_test_skip ("systemd-analyze is not installed");
      return;
    }
  g_file_get_contents (unit_in, &text, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (strstr (text, "\nType=notify\n"));
  g_assert_nonnull (strstr (text, "\nStateDirectory=orderdesk-server\n"));

  /* The installed path of the binary does not exist here: point
   * ExecStart at the one just built. */
  bindir = g_regex_escape_string (server_bin (), -1);
  exec = g_regex_new ("^ExecStart=\\S+", G_REGEX_MULTILINE, 0, NULL);
  {
    g_autofree char *replacement = g_strconcat ("ExecStart=", server_bin (), NULL);

    local = g_regex_replace_literal (exec, text, -1, 0, replacement, 0, &error);
    g_assert_no_error (error);
  }
  dir = g_dir_make_tmp ("od-unit-XXXXXX", NULL);
  unit = write_temp (dir, "orderdesk-server.service", local);

  process = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE,
                              &error, analyze, "verify", unit, NULL);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (process, NULL, NULL, &out, NULL, &error);
  g_assert_no_error (error);
  /* A warning (an unknown key is only that) fails the test too. */
  if (g_subprocess_get_exit_status (process) != 0 || *out != '\0')
    g_error ("systemd-analyze verify: %s", out);
  g_clear_object (&process);
  g_clear_pointer (&out, g_free);

  process = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE,
                              &error, analyze, "security", "--offline=true", "--threshold=20",
                              unit, NULL);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (process, NULL, NULL, &out, NULL, &error);
  g_assert_no_error (error);
  if (g_subprocess_get_exit_status (process) != 0)
    g_error ("systemd-analyze security: exposure over 2.0:\n%s", out);
  od_test_process_rmdir (dir);
}

/* ---- metrics ---- */

/* Until the server has seen every stream close. */
static void
wait_no_subscribers (OdTestServer *server,
                     const char   *metrics_token)
{
  for (guint i = 0;; i++)
    {
      g_autoptr(OdTestResponse) m = od_test_get (server, metrics_token, "/metrics");

      if (strstr (m->body, "\norderdesk_stream_subscribers 0\n") != NULL)
        break;
      g_assert_cmpuint (i, <, 1000 * (od_test_server_wrapped () ? 20 : 1));
      g_usleep (10000);
    }
}

/* Samples as "name{labels} value" lines from the reference parser. */
static GHashTable *
parse_metrics (const char *text)
{
  g_autofree char *script = g_build_filename (g_getenv ("OD_SOURCE_DIR"), "tests", "server",
                                              "parse-metrics.py", NULL);
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *promtool = g_find_program_in_path ("promtool");
  GHashTable *samples = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_auto(GStrv) lines = NULL;

  process = g_subprocess_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE
                              | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error, script, NULL);
  g_assert_no_error (error);
  g_subprocess_communicate_utf8 (process, text, NULL, &out, &err, &error);
  g_assert_no_error (error);
  if (g_subprocess_get_exit_status (process) != 0)
    g_error ("the Prometheus parser refused /metrics: %s\n%s", err, text);
  lines = g_strsplit (out, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      char *space = strrchr (lines[i], ' ');

      if (space == NULL)
        continue;
      g_hash_table_insert (samples, g_strndup (lines[i], space - lines[i]), g_strdup (space + 1));
    }

  /* promtool (Debian's prometheus package) also lints names, types and
   * help texts, where installed. */
  if (promtool != NULL)
    {
      g_autoptr(GSubprocess) check = NULL;
      g_autofree char *check_out = NULL;

      check = g_subprocess_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE
                                | G_SUBPROCESS_FLAGS_STDERR_MERGE, &error, promtool, "check",
                                "metrics", NULL);
      g_assert_no_error (error);
      g_subprocess_communicate_utf8 (check, text, NULL, &check_out, NULL, &error);
      g_assert_no_error (error);
      if (g_subprocess_get_exit_status (check) != 0)
        g_error ("promtool check metrics: %s", check_out);
    }
  return samples;
}

static double
sample (GHashTable *samples,
        const char *key)
{
  const char *value = g_hash_table_lookup (samples, key);

  if (value == NULL)
    g_error ("no sample %s", key);
  return g_ascii_strtod (value, NULL);
}

static GHashTable *
get_metrics (OdTestServer *server,
             const char   *token)
{
  g_autoptr(OdTestResponse) response = od_test_get (server, token, "/metrics");

  od_test_assert_status (response, 200);
  g_assert_true (g_str_has_prefix (od_test_response_header (response, "Content-Type"),
                                   "text/plain; version=0.0.4"));
  return parse_metrics (response->body);
}

static void
test_metrics (void)
{
  /* A burst of 6 and almost no refill: the 7th command of a token is
   * rate limited, whatever the machine's speed. */
  g_autoptr(OdTestServer) server = od_test_server_new ("--rate-limit", "0.001:6", NULL);
  g_autoptr(GHashTable) samples = NULL;
  g_autoptr(GSocketConnection) stream = NULL;
  g_autofree char *first = NULL;
  g_autofree char *body = NULL;
  g_autofree char *key = od_test_new_key ();
  g_autofree char *stream_text = NULL;
  gint64 before = g_get_real_time () / G_USEC_PER_SEC;
  gint64 head = 0;
  gsize stream_bytes = 0;
  const guint n_created = 4;

  for (guint i = 0; i < n_created; i++)
    g_free (od_test_create_order (server, NULL, OD_TEST_ALICE, &head));
  first = od_test_create_order (server, NULL, OD_TEST_BOB, &head);
  body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                          "{\"customer_name\":\"B\",\"customer_email\":\"b@example.org\","
                          "\"currency\":\"EUR\"}}", first);
  /* Bob: an order that exists, the same request twice (a replay), a
   * missing token, three more fine ones would pass; the burst is 6. */
  {
    g_autoptr(OdTestResponse) r = od_test_command (server, NULL, OD_TEST_BOB, key, body);

    od_test_assert_problem (r, 409, "order_exists");
  }
  {
    g_autoptr(OdTestResponse) r = od_test_command (server, NULL, OD_TEST_BOB, key, body);

    od_test_assert_problem (r, 409, "order_exists");
    g_assert_cmpstr (od_test_response_header (r, "Idempotent-Replayed"), ==, "true");
  }
  {
    g_autoptr(OdTestResponse) r = od_test_command (server, NULL, NULL, key, body);

    od_test_assert_problem (r, 401, "unauthorized");
  }
  for (guint i = 0; i < 3; i++)
    g_free (od_test_create_order (server, NULL, OD_TEST_BOB, &head));
  /* 1 + 2 + 3 = 6 of Bob's burst used: the next one is refused. */
  {
    g_autoptr(OdTestResponse) r = od_test_command (server, NULL, OD_TEST_BOB, key, body);

    od_test_assert_problem (r, 429, "rate_limited");
  }

  /* Alice: a success and its replay (which appends nothing); her burst
   * of 6 is used up too. */
  {
    g_autofree char *id = od_uuid_v7_new ();
    g_autofree char *alice_key = od_test_new_key ();
    g_autofree char *create = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\","
                                               "\"data\":{\"customer_name\":\"C\",\"customer_email\":"
                                               "\"c@example.org\",\"currency\":\"EUR\"}}", id);
    g_autoptr(OdTestResponse) r1 = od_test_command (server, NULL, OD_TEST_ALICE, alice_key, create);
    g_autoptr(OdTestResponse) r2 = od_test_command (server, NULL, OD_TEST_ALICE, alice_key, create);

    od_test_assert_status (r1, 200);
    od_test_assert_status (r2, 200);
    g_assert_cmpstr (od_test_response_header (r2, "Idempotent-Replayed"), ==, "true");
    head = od_test_response_int (r1, "position");
  }

  /* One stream subscriber, read up to its first head frame. */
  stream = od_test_raw_connect (server);
  {
    const char *request = "GET /v1/events/stream?after=0 HTTP/1.1\r\nHost: x\r\n"
                          "Authorization: Bearer " OD_TEST_VICTOR "\r\n\r\n";
    GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (stream));
    g_autoptr(GString) got = g_string_new (NULL);
    char buf[4096];

    g_assert_true (od_test_raw_write (stream, request, strlen (request)));
    while (strstr (got->str, "event: head") == NULL || !g_str_has_suffix (got->str, "\n\n\r\n"))
      {
        gssize n = g_input_stream_read (in, buf, sizeof buf, NULL, NULL);

        g_assert_cmpint (n, >, 0);
        g_string_append_len (got, buf, n);
      }
    /* Body bytes only: what follows the response headers (chunk sizes
     * included, which the server does not count). */
    stream_text = g_strdup (strstr (got->str, "\r\n\r\n") + 4);
    stream_bytes = strlen (stream_text);
  }

  samples = get_metrics (server, NULL);
  g_assert_cmpfloat (sample (samples, "orderdesk_commands_total{outcome=\"ok\",type=\"CreateOrder\"}"),
                     ==, n_created + 1 + 3 + 1);
  g_assert_cmpfloat (sample (samples, "orderdesk_commands_total{outcome=\"order_exists\",type=\"CreateOrder\"}"),
                     ==, 1);
  g_assert_cmpfloat (sample (samples, "orderdesk_commands_total{outcome=\"replayed\",type=\"CreateOrder\"}"),
                     ==, 2);
  g_assert_cmpfloat (sample (samples, "orderdesk_commands_total{outcome=\"unauthorized\",type=\"unknown\"}"),
                     ==, 1);
  g_assert_cmpfloat (sample (samples, "orderdesk_commands_total{outcome=\"rate_limited\",type=\"unknown\"}"),
                     ==, 1);
  g_assert_cmpfloat (sample (samples, "orderdesk_rate_limited_total{}"), ==, 1);
  g_assert_cmpfloat (sample (samples, "orderdesk_events_appended_total{}"), ==, n_created + 5);
  g_assert_cmpfloat (sample (samples, "orderdesk_head_position{}"), ==, head);
  /* Every command that reached the writer: 9 created, 1 exists, 2 replays. */
  g_assert_cmpfloat (sample (samples, "orderdesk_command_duration_seconds_count{}"), ==, 12);
  g_assert_cmpfloat (sample (samples, "orderdesk_command_duration_seconds_bucket{le=\"+Inf\"}"),
                     ==, 12);
  g_assert_cmpfloat (sample (samples, "orderdesk_command_duration_seconds_sum{}"), >, 0);
  g_assert_cmpfloat (sample (samples, "orderdesk_store_batch_size_sum{}"), ==, 12);
  g_assert_cmpfloat (sample (samples, "orderdesk_store_batch_size_count{}"), <=, 12);
  g_assert_cmpfloat (sample (samples, "orderdesk_stream_subscribers{}"), ==, 1);
  g_assert_cmpfloat (sample (samples, "orderdesk_stream_bytes_total{}"), >=, 0);
  g_assert_cmpfloat (sample (samples, "orderdesk_stream_slow_disconnects_total{}"), ==, 0);
  g_assert_cmpfloat (sample (samples, "orderdesk_store_errors_total{}"), ==, 0);
  g_assert_cmpfloat (sample (samples, "orderdesk_build_info{version=\"" OD_VERSION "\"}"), ==, 1);
  g_assert_cmpfloat (sample (samples, "process_start_time_seconds{}"), >=, before - 60);
  g_assert_cmpfloat (sample (samples, "process_start_time_seconds{}"), <=, before + 1);
  {
    /* The stream's bytes: the events and head frame the client read
     * (less the chunk-size lines of the chunked encoding). */
    g_auto(GStrv) chunks = g_strsplit (stream_text, "\r\n", -1);
    gsize payload = 0;

    for (guint i = 1; chunks[i] != NULL; i += 2)
      payload += strlen (chunks[i]);
    g_assert_cmpuint (payload, >, 0);
    g_assert_cmpuint (stream_bytes, >, payload);
    /* A >=, as an idle head frame may have been queued since. */
    g_assert_cmpfloat (sample (samples, "orderdesk_stream_bytes_total{}"), >=, payload);
  }
  g_io_stream_close (G_IO_STREAM (stream), NULL, NULL);
  wait_no_subscribers (server, NULL);
}

static void
test_metrics_token (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new ("--metrics-token", "scrape-secret", NULL);
  g_autoptr(OdTestResponse) open = od_test_get (server, NULL, "/metrics");
  g_autoptr(OdTestResponse) wrong = od_test_get (server, OD_TEST_ALICE, "/metrics");
  g_autoptr(GHashTable) samples = NULL;

  od_test_assert_problem (open, 401, "unauthorized");
  od_test_assert_problem (wrong, 401, "unauthorized");
  samples = get_metrics (server, "scrape-secret");
  g_assert_cmpfloat (sample (samples, "orderdesk_head_position{}"), ==, 0);
}

/* ---- readiness on SQLite ---- */

/* Another process holding the database's write lock: the store cannot be
 * written now, so the server is not ready (within about a second), and
 * is again once the lock goes. */
static void
test_ready_sqlite (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new (NULL);
  const char *path = od_test_server_store (server) + strlen ("sqlite:");
  sqlite3 *db = NULL;
  gint64 t;

  {
    g_autoptr(OdTestResponse) r = od_test_get (server, NULL, "/v1/ready");

    od_test_assert_status (r, 200);
    g_assert_cmpstr (od_test_response_string (r, "status"), ==, "ok");
    g_assert_cmpint (od_test_response_int (r, "head"), ==, 0);
  }
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, "BEGIN IMMEDIATE", NULL, NULL, NULL), ==, SQLITE_OK);
  t = g_get_monotonic_time ();
  {
    g_autoptr(OdTestResponse) r = od_test_get (server, NULL, "/v1/ready");
    g_autoptr(OdTestResponse) h = od_test_get (server, NULL, "/v1/health");

    od_test_assert_problem (r, 503, "not_ready");
    od_test_assert_status (h, 200);
  }
  g_assert_cmpint (g_get_monotonic_time () - t, <, 1500 * 1000 * (od_test_server_wrapped () ? 20 : 1));
  sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_close (db);
  t = g_get_monotonic_time ();
  for (;;)
    {
      g_autoptr(OdTestResponse) r = od_test_get (server, NULL, "/v1/ready");

      if (r->status == 200)
        break;
      od_test_assert_problem (r, 503, "not_ready");
      g_assert_cmpint (g_get_monotonic_time () - t, <, 5 * G_USEC_PER_SEC);
      g_usleep (50000);
    }
}

/* ---- the request log ---- */

static void
test_request_log (void)
{
  g_autoptr(OdTestServer) server = NULL;
  g_autofree char *log = NULL;
  g_autofree char *id = NULL;
  const char *paths[] = { "/v1/events?after=0&limit=5", "/v1/head", "/v1/health", "/v1/ready",
                          "/v1/events/digest?after=0&upto=1",
                          "/v1/nothing?token=" OD_TEST_ALICE, "/" OD_TEST_VICTOR };

  /* From the environment, as a secret should be (a command line is
   * visible to every user, and valgrind prints it in the log). */
  g_setenv ("ORDERDESK_METRICS_TOKEN", "scrape-secret", TRUE);
  server = od_test_server_new (NULL);
  g_unsetenv ("ORDERDESK_METRICS_TOKEN");

  id = od_test_create_order (server, NULL, OD_TEST_ALICE, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (paths); i++)
    {
      g_autoptr(OdTestResponse) a = od_test_get (server, OD_TEST_ALICE, paths[i]);
      g_autoptr(OdTestResponse) v = od_test_get (server, OD_TEST_VICTOR, paths[i]);

      g_assert_cmpuint (a->status, !=, 0);
      g_assert_cmpuint (v->status, !=, 0);
    }
  {
    g_autoptr(OdTestResponse) m = od_test_get (server, "scrape-secret", "/metrics");
    g_autoptr(OdTestResponse) bad = od_test_get (server, "not-a-known-secret", "/v1/head");
    g_autoptr(OdTestResponse) viewer = od_test_command (server, NULL, OD_TEST_VICTOR, "k-1",
                                                        "{}");
    g_autoptr(OdTestResponse) traced = od_test_request (server, NULL, "GET", "/v1/head",
                                                        OD_TEST_VICTOR, NULL, NULL, 0,
                                                        "X-Request-Id", "trace-42", NULL);
    g_autoptr(OdTestResponse) evil = od_test_request (server, NULL, "GET", "/v1/health", NULL,
                                                      NULL, NULL, 0, "X-Request-Id",
                                                      "x y=FAKE-FIELD", NULL);

    od_test_assert_status (m, 200);
    od_test_assert_status (bad, 401);
    od_test_assert_status (viewer, 403);
    od_test_assert_status (traced, 200);
    g_assert_cmpstr (od_test_response_header (traced, "X-Request-Id"), ==, "trace-42");
    od_test_assert_status (evil, 200);
    g_assert_cmpstr (od_test_response_header (evil, "X-Request-Id"), !=, "x y=FAKE-FIELD");
    /* The contract: a new UUID in place of one that is not plain. */
    g_assert_true (od_uuid_is_valid (od_test_response_header (evil, "X-Request-Id")));
  }
  /* A keep-alive connection idle for a second between two requests: the
   * second one's duration is its own, not the idle time (a guard: libsoup
   * 3.2 starts a connection's next message at its first byte). */
  {
    g_autoptr(GSocketConnection) c = od_test_raw_connect (server);
    const char *first = "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *second = "GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Request-Id: after-idle\r\n\r\n";
    g_autoptr(OdTestResponse) r1 = NULL;
    g_autoptr(OdTestResponse) r2 = NULL;

    g_assert_true (od_test_raw_write (c, first, strlen (first)));
    r1 = od_test_raw_read_response (c, 10);
    od_test_assert_status (r1, 200);
    g_usleep (G_USEC_PER_SEC);
    g_assert_true (od_test_raw_write (c, second, strlen (second)));
    r2 = od_test_raw_read_response (c, 10);
    od_test_assert_status (r2, 200);
    g_io_stream_close (G_IO_STREAM (c), NULL, NULL);
  }
  /* A method with a control character (an escape sequence for a
   * terminal that shows the log): logged escaped, never raw. */
  {
    g_autoptr(GSocketConnection) c = od_test_raw_connect (server);
    const char *request = "G\033[2JT /v1/health HTTP/1.1\r\nHost: x\r\n"
                          "X-Request-Id: escaped-method\r\n\r\n";
    g_autoptr(OdTestResponse) r = NULL;

    g_assert_true (od_test_raw_write (c, request, strlen (request)));
    r = od_test_raw_read_response (c, 10);
    g_assert_nonnull (r);
    g_io_stream_close (G_IO_STREAM (c), NULL, NULL);
  }
  /* A stream, briefly. */
  {
    g_autoptr(GSocketConnection) stream = od_test_raw_connect (server);
    const char *request = "GET /v1/events/stream HTTP/1.1\r\nHost: x\r\n"
                          "Authorization: Bearer " OD_TEST_VICTOR "\r\n\r\n";
    char buf[256];

    g_assert_true (od_test_raw_write (stream, request, strlen (request)));
    g_assert_cmpint (g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (stream)),
                                          buf, sizeof buf, NULL, NULL), >, 0);
    g_io_stream_close (G_IO_STREAM (stream), NULL, NULL);
  }
  /* The stream's line is written once the server has seen it close. */
  wait_no_subscribers (server, "scrape-secret");
  od_test_server_stop (server);

  log = od_test_server_read_log (server);
  g_assert_null (strstr (log, OD_TEST_ALICE));
  g_assert_null (strstr (log, OD_TEST_VICTOR));
  g_assert_null (strstr (log, "scrape-secret"));
  g_assert_null (strstr (log, "not-a-known-secret"));
  g_assert_null (strstr (log, "FAKE-FIELD"));
  g_assert_null (strchr (log, '\033'));
  g_assert_nonnull (strstr (log, "G\\u001b[2JT /v1/health"));
  {
    g_autoptr(GRegex) line = g_regex_new ("^.*: (GET|POST) (\\S+) (\\d{3}) (\\d+\\.\\d) ms "
                                          "token=(\\S+) request_id=(\\S+)$",
                                          G_REGEX_MULTILINE, 0, NULL);
    g_autoptr(GMatchInfo) match = NULL;
    g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    const char *expected[] = {
      "POST /v1/commands 200 token=alice", "GET /v1/events 200 token=alice",
      "GET /v1/events 200 token=victor", "GET /v1/head 200 token=victor",
      "GET /v1/health 200 token=-", "GET /v1/ready 200 token=-", "GET other 404 token=-",
      "GET /metrics 200 token=metrics", "GET /v1/head 401 token=-",
      "POST /v1/commands 403 token=victor", "GET /v1/events/stream 200 token=victor",
    };

    g_regex_match (line, log, 0, &match);
    while (g_match_info_matches (match))
      {
        g_autofree char *method = g_match_info_fetch (match, 1);
        g_autofree char *route = g_match_info_fetch (match, 2);
        g_autofree char *status = g_match_info_fetch (match, 3);
        g_autofree char *token = g_match_info_fetch (match, 5);
        g_autofree char *request_id = g_match_info_fetch (match, 6);

        g_hash_table_add (seen, g_strdup_printf ("%s %s %s token=%s", method, route, status,
                                                 token));
        if (strcmp (request_id, "trace-42") == 0)
          g_hash_table_add (seen, g_strdup ("trace-42"));
        if (strcmp (request_id, "after-idle") == 0)
          {
            g_autofree char *duration = g_match_info_fetch (match, 4);

            g_assert_cmpfloat (g_ascii_strtod (duration, NULL), <, 500);
            g_hash_table_add (seen, g_strdup ("after-idle"));
          }
        g_match_info_next (match, NULL);
      }
    for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
      if (!g_hash_table_contains (seen, expected[i]))
        g_error ("no log line '%s' in:\n%s", expected[i], log);
    g_assert_true (g_hash_table_contains (seen, "trace-42"));
    g_assert_true (g_hash_table_contains (seen, "after-idle"));
  }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/service/version", test_version);
  g_test_add_func ("/service/config/errors", test_config_errors);
  g_test_add_func ("/service/config/precedence", test_config_precedence);
  g_test_add_func ("/service/config/runs", test_config_runs);
  g_test_add_func ("/service/demo-public", test_demo_public);
  g_test_add_func ("/service/unit", test_unit);
  g_test_add_func ("/service/metrics", test_metrics);
  g_test_add_func ("/service/metrics-token", test_metrics_token);
  g_test_add_func ("/service/ready-sqlite", test_ready_sqlite);
  g_test_add_func ("/service/request-log", test_request_log);
  return g_test_run ();
}

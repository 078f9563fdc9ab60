/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-server.h"
#include "od-cache-private.h" /* od_cache_get_db () */
#include "od-test-log.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

static const OdTestToken test_tokens[] = {
  { "alice", "operator", OD_TEST_OPERATOR_TOKEN },
  { "victor", "viewer", OD_TEST_VIEWER_TOKEN },
};

char *
od_test_tmpdir (const char *name)
{
  g_autofree char *tmpl = g_strdup_printf ("od-core-%s-XXXXXX", name);
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp (tmpl, &error);

  g_assert_no_error (error);
  return dir;
}

void
od_test_rmdir (const char *dir)
{
  od_test_process_rmdir (dir);
}

char *
od_test_ctl_path (void)
{
  const char *build = g_getenv ("OD_BUILD_DIR");

  g_assert_nonnull (build);
  return g_build_filename (build, "src", "ctl", "orderdeskctl", NULL);
}

int
od_test_run_ctl (OdTestServer       *server,
                 const char         *cache_path,
                 const char         *token,
                 const char * const *env,
                 const char * const *args,
                 char              **err)
{
  return od_test_run_ctl_full (server ? server->url : NULL, cache_path, token, env, args,
                               NULL, err);
}

int
od_test_run_ctl_full (const char         *url,
                      const char         *cache_path,
                      const char         *token,
                      const char * const *env,
                      const char * const *args,
                      char              **out,
                      char              **err)
{
  g_autofree char *ctl = od_test_ctl_path ();
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GSubprocessLauncher) launcher =
    g_subprocess_launcher_new ((out != NULL ? G_SUBPROCESS_FLAGS_STDOUT_PIPE
                                            : G_SUBPROCESS_FLAGS_STDOUT_SILENCE)
                               | (err != NULL ? G_SUBPROCESS_FLAGS_STDERR_PIPE : 0));
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GError) error = NULL;

  g_ptr_array_add (argv, ctl);
  if (url != NULL)
    {
      g_ptr_array_add (argv, (char *) "-q");
      g_ptr_array_add (argv, (char *) "--server");
      g_ptr_array_add (argv, (char *) url);
    }
  if (cache_path != NULL)
    {
      g_ptr_array_add (argv, (char *) "--cache");
      g_ptr_array_add (argv, (char *) cache_path);
    }
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, NULL);
  g_subprocess_launcher_unsetenv (launcher, "ORDERDESK_SERVER");
  if (token != NULL)
    g_subprocess_launcher_setenv (launcher, "ORDERDESK_TOKEN", token, TRUE);
  else
    g_subprocess_launcher_unsetenv (launcher, "ORDERDESK_TOKEN");
  for (guint i = 0; env != NULL && env[i] != NULL; i += 2)
    g_subprocess_launcher_setenv (launcher, env[i], env[i + 1], TRUE);
  process = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);
  if (out != NULL || err != NULL)
    g_assert_true (g_subprocess_communicate_utf8 (process, NULL, NULL, out, err, &error));
  else
    g_assert_true (g_subprocess_wait (process, NULL, &error));
  g_assert_no_error (error);
  if (g_subprocess_get_if_signaled (process))
    return -g_subprocess_get_term_sig (process);
  return g_subprocess_get_exit_status (process);
}

/* A test that fails leaves no orderdeskctl behind (a --follow would run
 * on for ever). */
static void
ctl_die_with_parent (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

GSubprocess *
od_test_spawn_ctl (OdTestServer       *server,
                   const char         *cache_path,
                   const char         *token,
                   const char * const *args,
                   const char         *stderr_path)
{
  g_autofree char *ctl = od_test_ctl_path ();
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_autoptr(GError) error = NULL;
  GSubprocess *process;

  g_ptr_array_add (argv, ctl);
  g_ptr_array_add (argv, (char *) "-q");
  g_ptr_array_add (argv, (char *) "--server");
  g_ptr_array_add (argv, server->url);
  g_ptr_array_add (argv, (char *) "--cache");
  g_ptr_array_add (argv, (char *) cache_path);
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, NULL);
  g_subprocess_launcher_setenv (launcher, "ORDERDESK_TOKEN", token, TRUE);
  g_subprocess_launcher_set_child_setup (launcher, ctl_die_with_parent, NULL, NULL);
  if (stderr_path != NULL)
    {
      int fd = g_open (stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

      g_assert_cmpint (fd, >=, 0);
      g_subprocess_launcher_take_stderr_fd (launcher, fd);
    }
  process = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);
  return process;
}

int
od_test_wait_ctl (GSubprocess *process)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (g_subprocess_wait (process, NULL, &error));
  g_assert_no_error (error);
  if (g_subprocess_get_if_signaled (process))
    return -g_subprocess_get_term_sig (process);
  return g_subprocess_get_exit_status (process);
}

/* Starts the server on the port of the last run (any port the first
 * time), so that a restart keeps the URL the tests' clients use. */
static void
spawn (OdTestServer *s)
{
  g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func (g_free);

  g_ptr_array_add (args, g_strconcat ("--store=sqlite:", s->store, NULL));
  g_ptr_array_add (args, g_strdup ("--rate-limit"));
  g_ptr_array_add (args, g_strdup ("0"));
  if (s->demo_orders > 0)
    {
      g_ptr_array_add (args, g_strdup ("--demo"));
      g_ptr_array_add (args, g_strdup ("--demo-orders"));
      g_ptr_array_add (args, g_strdup_printf ("%u", s->demo_orders));
    }
  for (guint i = 0; s->extra_args != NULL && s->extra_args[i] != NULL; i++)
    g_ptr_array_add (args, g_strdup (s->extra_args[i]));
  g_ptr_array_add (args, NULL);

  od_test_process_start (s->process, s->port, (const char * const *) args->pdata);
  g_free (s->url);
  s->url = g_strdup (od_test_process_url (s->process));
  s->port = od_test_process_port (s->process);
}

OdTestServer *
od_test_server_start (guint demo_orders)
{
  return od_test_server_start_with (demo_orders, NULL);
}

OdTestServer *
od_test_server_start_with (guint              demo_orders,
                           const char * const *extra_args)
{
  OdTestServer *s = g_new0 (OdTestServer, 1);

  s->process = od_test_process_new ("od-core-server", "under test", test_tokens,
                                    G_N_ELEMENTS (test_tokens));
  s->dir = od_test_process_dir (s->process);
  s->store = g_build_filename (s->dir, "store.sqlite", NULL);
  s->demo_orders = demo_orders;
  s->extra_args = g_strdupv ((char **) extra_args);
  s->session = soup_session_new_with_options ("timeout", 30, "max-conns", 64, "max-conns-per-host",
                                              64, NULL);
  spawn (s);
  if (demo_orders > 0)
    {
      /* The seed runs after the server listens; it is done when the head
       * stops moving. */
      gint64 last = -1, head;
      guint still = 0;

      while (still < 8)
        {
          g_usleep (250000);
          head = od_test_head (s);
          still = head == last && head > 0 ? still + 1 : 0;
          last = head;
        }
    }
  return s;
}

void
od_test_server_restart (OdTestServer *s)
{
  od_test_process_kill (s->process);
  /* The seed is in the store already. */
  s->demo_orders = 0;
  spawn (s);
}

void
od_test_server_signal (OdTestServer *s,
                       int           signum)
{
  od_test_process_signal (s->process, signum);
}

void
od_test_server_kill (OdTestServer *s)
{
  od_test_process_kill (s->process);
}

void
od_test_server_free (OdTestServer *s)
{
  od_test_process_terminate (s->process);
  g_clear_object (&s->session);
  od_test_process_free (s->process, FALSE);
  g_free (s->store);
  g_free (s->url);
  g_strfreev (s->extra_args);
  g_free (s);
}

static GBytes *
get (OdTestServer *s,
     const char   *path,
     guint        *status)
{
  g_autofree char *uri = g_strconcat (s->url, path, NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("GET", uri);
  g_autoptr(GError) error = NULL;
  GBytes *body;

  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer " OD_TEST_VIEWER_TOKEN);
  body = soup_session_send_and_read (s->session, msg, NULL, &error);
  g_assert_no_error (error);
  *status = soup_message_get_status (msg);
  return body;
}

gint64
od_test_head (OdTestServer *s)
{
  guint status;
  g_autoptr(GBytes) body = get (s, "/v1/head", &status);
  g_autoptr(JsonNode) root = NULL;

  g_assert_cmpuint (status, ==, 200);
  root = od_json_parse_object (g_bytes_get_data (body, NULL), g_bytes_get_size (body), NULL);
  g_assert_nonnull (root);
  return json_object_get_int_member (json_node_get_object (root), "head");
}

GPtrArray *
od_test_fetch_events (OdTestServer *s)
{
  return od_test_read_log (s->session, s->url, OD_TEST_VIEWER_TOKEN);
}

guint
od_test_post_command (OdTestServer  *s,
                      const char    *key,
                      const char    *body,
                      char         **answer)
{
  g_autofree char *uri = g_strconcat (s->url, "/v1/commands", NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("POST", uri);
  g_autoptr(GBytes) req = g_bytes_new (body, strlen (body));
  g_autoptr(GBytes) resp = NULL;
  g_autoptr(GError) error = NULL;

  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer " OD_TEST_OPERATOR_TOKEN);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Idempotency-Key", key);
  soup_message_set_request_body_from_bytes (msg, "application/json", req);
  resp = soup_session_send_and_read (s->session, msg, NULL, &error);
  if (resp == NULL)
    {
      if (answer)
        *answer = g_strdup (error->message);
      return 0;
    }
  if (answer)
    *answer = g_strndup (g_bytes_get_data (resp, NULL), g_bytes_get_size (resp));
  return soup_message_get_status (msg);
}

typedef struct
{
  OdTestServer *server;
  guint         n_orders;
  gint64        max_position;
} LoadJob;

static gint64
position_of (const char *answer)
{
  g_autoptr(JsonNode) root = od_json_parse_object (answer, -1, NULL);

  g_assert_nonnull (root);
  return json_object_get_int_member (json_node_get_object (root), "position");
}

static gpointer
load_thread (gpointer data)
{
  LoadJob *job = data;
  /* Each thread its own session: a sync session is not shared across
   * threads. */
  OdTestServer local = *job->server;

  local.session = soup_session_new_with_options ("timeout", 30, NULL);
  for (guint i = 0; i < job->n_orders; i++)
    {
      g_autofree char *id = od_uuid_v7_new ();
      const char *steps[4];
      g_autofree char *c0 = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Load %u\",\"customer_email\":\"l%u@example.com\",\"currency\":\"EUR\"}}", id, i, i);
      g_autofree char *c1 = g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"L-%u\",\"name\":\"Thing\",\"quantity\":2,\"unit_price_cents\":250}}", id, i % 7);
      g_autofree char *c2 = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\"}", id);
      g_autofree char *c3 = g_strdup_printf ("{\"type\":\"ShipOrder\",\"order_id\":\"%s\",\"data\":{\"carrier\":\"UPS\",\"tracking_number\":\"Z%u\"}}", id, i);

      steps[0] = c0;
      steps[1] = c1;
      steps[2] = c2;
      steps[3] = c3;
      for (guint k = 0; k < 4; k++)
        {
          g_autofree char *key = g_strdup_printf ("load-%s-%u", id, k);
          g_autofree char *answer = NULL;
          guint status = od_test_post_command (&local, key, steps[k], &answer);

          if (status != 200)
            break; /* the server went away (tests that kill it) */
          job->max_position = MAX (job->max_position, position_of (answer));
        }
    }
  g_object_unref (local.session);
  return NULL;
}

gint64
od_test_load (OdTestServer *s,
              guint         n_orders,
              guint         threads)
{
  g_autofree GThread **t = g_new0 (GThread *, threads);
  g_autofree LoadJob *jobs = g_new0 (LoadJob, threads);
  gint64 max = 0;

  for (guint i = 0; i < threads; i++)
    {
      jobs[i].server = s;
      jobs[i].n_orders = n_orders / threads + (i < n_orders % threads);
      t[i] = g_thread_new ("load", load_thread, &jobs[i]);
    }
  for (guint i = 0; i < threads; i++)
    {
      g_thread_join (t[i]);
      max = MAX (max, jobs[i].max_position);
    }
  return max;
}

static gint64
scalar (sqlite3    *db,
        const char *sql)
{
  sqlite3_stmt *st = NULL;
  gint64 v = -1;

  g_assert_cmpint (sqlite3_prepare_v2 (db, sql, -1, &st, NULL), ==, SQLITE_OK);
  if (sqlite3_step (st) == SQLITE_ROW)
    v = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  return v;
}

void
od_test_assert_cache_sane (OdCache *cache)
{
  sqlite3 *db = od_cache_get_db (cache);
  sqlite3_stmt *st = NULL;

  g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA integrity_check", -1, &st, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
  g_assert_cmpstr ((const char *) sqlite3_column_text (st, 0), ==, "ok");
  sqlite3_finalize (st);
  /* Every position once (also the primary key's job), and the chain of
   * prev links unbroken. */
  g_assert_cmpint (scalar (db, "SELECT count(*) - count(DISTINCT position) FROM order_events"), ==, 0);
  g_assert_cmpint (scalar (db, "SELECT count(*) FROM order_events e WHERE e.prev <> 0 AND NOT EXISTS"
                               " (SELECT 1 FROM order_events p WHERE p.position = e.prev)"), ==, 0);
  g_assert_cmpint (scalar (db, "SELECT coalesce(max(position), 0) FROM order_events"), ==,
                   scalar (db, "SELECT applied_position FROM sync_state"));
  /* Versions 1..n per order, without a gap or a duplicate. */
  g_assert_cmpint (scalar (db, "SELECT count(*) FROM (SELECT order_id FROM order_events GROUP BY order_id"
                               " HAVING min(version) <> 1 OR max(version) <> count(*)"
                               " OR count(DISTINCT version) <> count(*))"), ==, 0);
  g_assert_cmpint (scalar (db, "SELECT (SELECT sum(n) FROM status_counts) - (SELECT count(*) FROM orders)"), ==, 0);
}

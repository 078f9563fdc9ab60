/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-server.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>

static char *
sha256_hex (const char *s)
{
  return g_compute_checksum_for_string (G_CHECKSUM_SHA256, s, -1);
}

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
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);

      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        od_test_rmdir (p);
      else
        g_unlink (p);
    }
  g_rmdir (dir);
}

char *
od_test_ctl_path (void)
{
  const char *build = g_getenv ("OD_BUILD_DIR");

  g_assert_nonnull (build);
  return g_build_filename (build, "src", "ctl", "orderdeskctl", NULL);
}

/* A test that aborts must not leave its server running. */
static void
die_with_parent (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static void
spawn (OdTestServer *s)
{
  const char *bin = g_getenv ("OD_SERVER_BIN");
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autofree char *listen = g_strdup_printf ("127.0.0.1:%u", s->port);
  g_autofree char *store = g_strconcat ("sqlite:", s->store, NULL);
  g_autofree char *log = g_build_filename (s->dir, "server.log", NULL);
  gint64 deadline;

  g_assert_nonnull (bin);
  g_unlink (s->ready);
  g_ptr_array_add (argv, g_strdup (bin));
  g_ptr_array_add (argv, g_strdup ("--listen"));
  g_ptr_array_add (argv, g_strdup (listen));
  g_ptr_array_add (argv, g_strdup ("--store"));
  g_ptr_array_add (argv, g_strdup (store));
  g_ptr_array_add (argv, g_strdup ("--tokens"));
  g_ptr_array_add (argv, g_strdup (s->tokens));
  g_ptr_array_add (argv, g_strdup ("--ready-file"));
  g_ptr_array_add (argv, g_strdup (s->ready));
  g_ptr_array_add (argv, g_strdup ("--rate-limit"));
  g_ptr_array_add (argv, g_strdup ("0"));
  if (s->demo_orders > 0)
    {
      g_ptr_array_add (argv, g_strdup ("--demo"));
      g_ptr_array_add (argv, g_strdup ("--demo-orders"));
      g_ptr_array_add (argv, g_strdup_printf ("%u", s->demo_orders));
    }
  for (guint i = 0; s->extra_args != NULL && s->extra_args[i] != NULL; i++)
    g_ptr_array_add (argv, g_strdup (s->extra_args[i]));
  g_ptr_array_add (argv, NULL);

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  g_subprocess_launcher_set_stderr_file_path (launcher, log);
  s->proc = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);

  deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;
  while (!g_file_test (s->ready, G_FILE_TEST_EXISTS))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (10000);
    }
  {
    g_autofree char *url = NULL;
    const char *colon;

    g_assert_true (g_file_get_contents (s->ready, &url, NULL, NULL));
    g_strstrip (url);
    g_free (s->url);
    s->url = g_steal_pointer (&url);
    colon = strrchr (s->url, ':');
    s->port = atoi (colon + 1);
  }
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
  g_autofree char *op = sha256_hex (OD_TEST_OPERATOR_TOKEN);
  g_autofree char *view = sha256_hex (OD_TEST_VIEWER_TOKEN);
  g_autofree char *tokens = g_strdup_printf (
    "[{\"name\":\"alice\",\"role\":\"operator\",\"token_sha256\":\"%s\"},"
    "{\"name\":\"victor\",\"role\":\"viewer\",\"token_sha256\":\"%s\"}]", op, view);

  s->dir = od_test_tmpdir ("server");
  s->store = g_build_filename (s->dir, "store.sqlite", NULL);
  s->tokens = g_build_filename (s->dir, "tokens.json", NULL);
  s->ready = g_build_filename (s->dir, "ready", NULL);
  s->demo_orders = demo_orders;
  s->extra_args = g_strdupv ((char **) extra_args);
  g_assert_true (g_file_set_contents (s->tokens, tokens, -1, NULL));
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
  g_clear_object (&s->proc);
  /* The seed is in the store already. */
  s->demo_orders = 0;
  spawn (s);
}

void
od_test_server_signal (OdTestServer *s,
                       int           signum)
{
  g_subprocess_send_signal (s->proc, signum);
}

void
od_test_server_kill (OdTestServer *s)
{
  if (s->proc == NULL)
    return;
  g_subprocess_force_exit (s->proc);
  g_subprocess_wait (s->proc, NULL, NULL);
  g_clear_object (&s->proc);
}

void
od_test_server_free (OdTestServer *s)
{
  if (s->proc)
    {
      g_subprocess_send_signal (s->proc, SIGCONT);
      g_subprocess_send_signal (s->proc, SIGTERM);
      g_subprocess_wait (s->proc, NULL, NULL);
      g_clear_object (&s->proc);
    }
  g_clear_object (&s->session);
  od_test_rmdir (s->dir);
  g_free (s->dir);
  g_free (s->store);
  g_free (s->tokens);
  g_free (s->ready);
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
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  gint64 after = 0;

  for (;;)
    {
      g_autofree char *path = g_strdup_printf ("/v1/events?after=%" G_GINT64_FORMAT "&limit=10000",
                                               after);
      guint status;
      g_autoptr(GBytes) body = get (s, path, &status);
      g_autoptr(JsonNode) root = NULL;
      JsonArray *array;
      guint n;

      g_assert_cmpuint (status, ==, 200);
      root = od_json_parse_object (g_bytes_get_data (body, NULL), g_bytes_get_size (body), NULL);
      g_assert_nonnull (root);
      array = json_object_get_array_member (json_node_get_object (root), "events");
      n = json_array_get_length (array);
      if (n == 0)
        break;
      for (guint i = 0; i < n; i++)
        {
          g_autoptr(GError) error = NULL;
          OdEvent *ev = od_event_from_object (json_array_get_object_element (array, i), &error);

          g_assert_no_error (error);
          g_assert_cmpint (ev->prev, ==, after);
          after = ev->position;
          g_ptr_array_add (events, ev);
        }
    }
  return events;
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

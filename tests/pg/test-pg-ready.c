/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Readiness with PostgreSQL going away and coming back, waiting for it at
 * start, and the systemd notifications (READY=1 once the port answers,
 * STOPPING=1 on SIGTERM).  Each test runs its own throwaway cluster, since
 * it stops it: other tests share the one in OD_TEST_PGHOST. */
#include "od-test-process.h"

#include <fcntl.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <libpq-fe.h>
#include <libsoup/soup.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define OPERATOR_TOKEN "ready-operator-secret"

typedef struct
{
  char *dir;
  char *bin;
  char *uri;
  GSubprocess *postgres;
} Cluster;

static char *
pg_bin_dir (void)
{
  g_autoptr(GDir) dir = g_dir_open ("/usr/lib/postgresql", 0, NULL);
  const char *name;
  int best = 0;

  g_assert_nonnull (dir);
  while ((name = g_dir_read_name (dir)) != NULL)
    best = MAX (best, atoi (name));
  g_assert_cmpint (best, >, 0);
  return g_strdup_printf ("/usr/lib/postgresql/%d/bin", best);
}

/* PostgreSQL refuses to run as root: as root, its tools run as postgres. */
static void
cluster_run (Cluster    *cluster,
             const char *program,
             ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  int status = 0;
  va_list ap;

  if (geteuid () == 0)
    {
      g_ptr_array_add (argv, g_strdup ("runuser"));
      g_ptr_array_add (argv, g_strdup ("-u"));
      g_ptr_array_add (argv, g_strdup ("postgres"));
      g_ptr_array_add (argv, g_strdup ("--"));
    }
  g_ptr_array_add (argv, g_build_filename (cluster->bin, program, NULL));
  va_start (ap, program);
  for (const char *arg = va_arg (ap, const char *); arg != NULL; arg = va_arg (ap, const char *))
    g_ptr_array_add (argv, g_strdup (arg));
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL,
                NULL, NULL, &out, NULL, &status, &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, &error))
    g_error ("%s: %s\n%s", program, error->message, out);
}

static void
die_with_parent (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

/* postgres runs as a child of the test (not daemonized by pg_ctl), and
 * dies with it: a failed check must not leave a cluster behind.  As root,
 * runuser dies with the test and setpriv makes postgres die with runuser.
 * PR_SET_PDEATHSIG follows the thread that spawned: call it from a thread
 * that lives as long as the cluster should. */
static void
cluster_start (Cluster *cluster)
{
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autofree char *log = g_build_filename (cluster->dir, "log", NULL);
  g_autofree char *pidfile = g_build_filename (cluster->dir, "data", "postmaster.pid", NULL);
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  int fd;

  g_assert_null (cluster->postgres);
  if (geteuid () == 0)
    {
      g_ptr_array_add (argv, g_strdup ("runuser"));
      g_ptr_array_add (argv, g_strdup ("-u"));
      g_ptr_array_add (argv, g_strdup ("postgres"));
      g_ptr_array_add (argv, g_strdup ("--"));
    }
  g_ptr_array_add (argv, g_strdup ("setpriv"));
  g_ptr_array_add (argv, g_strdup ("--pdeathsig"));
  g_ptr_array_add (argv, g_strdup ("KILL"));
  g_ptr_array_add (argv, g_strdup ("--"));
  g_ptr_array_add (argv, g_build_filename (cluster->bin, "postgres", NULL));
  g_ptr_array_add (argv, g_strdup ("-D"));
  g_ptr_array_add (argv, g_build_filename (cluster->dir, "data", NULL));
  g_ptr_array_add (argv, g_strdup ("-k"));
  g_ptr_array_add (argv, g_strdup (cluster->dir));
  g_ptr_array_add (argv, g_strdup ("-c"));
  g_ptr_array_add (argv, g_strdup ("listen_addresses="));
  g_ptr_array_add (argv, NULL);

  fd = open (log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (fchmod (fd, 0666), ==, 0);
  g_subprocess_launcher_take_stdout_fd (launcher, fd);
  g_subprocess_launcher_set_flags (launcher, G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  cluster->postgres = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata,
                                                    &error);
  g_assert_no_error (error);

  /* postmaster.pid's status line says "ready" once connections are
   * accepted. */
  for (;;)
    {
      g_autofree char *text = NULL;

      if (g_file_get_contents (pidfile, &text, NULL, NULL) && strstr (text, "\nready") != NULL)
        break;
      if (g_subprocess_get_identifier (cluster->postgres) == NULL
          || g_get_monotonic_time () > deadline)
        {
          g_autofree char *out = NULL;

          g_file_get_contents (log, &out, NULL, NULL);
          g_error ("postgres did not start:\n%s", out ? out : "");
        }
      g_usleep (20000);
    }
}

/* SIGINT: a fast shutdown, every session ended, as in a real shutdown or
 * failover. */
static void
cluster_stop (Cluster *cluster)
{
  g_autofree char *pidfile = g_build_filename (cluster->dir, "data", "postmaster.pid", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_nonnull (cluster->postgres);
  g_file_get_contents (pidfile, &text, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (kill ((pid_t) atoi (text), SIGINT), ==, 0);
  g_subprocess_wait (cluster->postgres, NULL, &error);
  g_assert_no_error (error);
  g_clear_object (&cluster->postgres);
}

static Cluster *
cluster_new (void)
{
  Cluster *cluster = g_new0 (Cluster, 1);
  g_autofree char *data = NULL;

  cluster->bin = pg_bin_dir ();
  cluster->dir = g_dir_make_tmp ("od-pg-ready-XXXXXX", NULL);
  g_assert_nonnull (cluster->dir);
  if (geteuid () == 0)
    {
      struct passwd *pw = getpwnam ("postgres");

      g_assert_nonnull (pw);
      g_assert_cmpint (chown (cluster->dir, pw->pw_uid, pw->pw_gid), ==, 0);
    }
  data = g_build_filename (cluster->dir, "data", NULL);
  cluster_run (cluster, "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
               "--no-sync", NULL);
  cluster->uri = g_strdup_printf ("postgresql:///postgres?host=%s&user=postgres", cluster->dir);
  return cluster;
}

static void
cluster_free (Cluster *cluster)
{
  if (cluster->postgres != NULL)
    cluster_stop (cluster);
  od_test_process_rmdir (cluster->dir);
  g_free (cluster->dir);
  g_free (cluster->bin);
  g_free (cluster->uri);
  g_free (cluster);
}

static const OdTestToken tokens[] = {
  { "olga", "operator", OPERATOR_TOKEN },
};

typedef struct
{
  guint  status;
  char  *content_type;
  char  *body;
} Answer;

static void
answer_free (Answer *answer)
{
  g_free (answer->content_type);
  g_free (answer->body);
  g_free (answer);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Answer, answer_free)

static Answer *
request (SoupSession *session,
         const char  *url,
         const char  *method,
         const char  *path,
         const char  *key,
         const char  *body)
{
  g_autofree char *full = g_strconcat (url, path, NULL);
  g_autoptr(SoupMessage) msg = soup_message_new (method, full);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  Answer *answer = g_new0 (Answer, 1);

  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer " OPERATOR_TOKEN);
  if (key != NULL)
    soup_message_headers_replace (soup_message_get_request_headers (msg), "Idempotency-Key", key);
  if (body != NULL)
    {
      g_autoptr(GBytes) b = g_bytes_new (body, strlen (body));

      soup_message_set_request_body_from_bytes (msg, "application/json", b);
    }
  bytes = soup_session_send_and_read (session, msg, NULL, &error);
  g_assert_no_error (error);
  answer->status = soup_message_get_status (msg);
  answer->content_type = g_strdup (soup_message_headers_get_content_type (
                                     soup_message_get_response_headers (msg), NULL));
  answer->body = g_strndup (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  return answer;
}

static SoupSession *
session_new (void)
{
  /* A hang shows as a timeout error, which fails the test. */
  return soup_session_new_with_options ("proxy-resolver", NULL, "timeout", 10,
                                        "idle-timeout", 10, NULL);
}

static char *
create_order_body (void)
{
  g_autofree char *uuid = g_uuid_string_random ();

  return g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                          "{\"customer_name\":\"Pat\",\"customer_email\":\"pat@example.org\","
                          "\"currency\":\"EUR\"}}", uuid);
}

static void
test_outage (void)
{
  Cluster *cluster = cluster_new ();
  OdTestProcess *server = od_test_process_new ("od-pg-ready", "ready", tokens,
                                               G_N_ELEMENTS (tokens));
  g_autoptr(SoupSession) session = session_new ();
  const char *args[] = { "--store", cluster->uri, NULL };
  g_autofree char *body = create_order_body ();
  g_autofree char *body2 = create_order_body ();
  const char *url;
  gint64 stopped, t;

  cluster_start (cluster);
  od_test_process_start (server, 0, args);
  url = od_test_process_url (server);
  {
    g_autoptr(Answer) a = request (session, url, "GET", "/v1/ready", NULL, NULL);
    g_autoptr(Answer) c = request (session, url, "POST", "/v1/commands", "k-before", body);

    g_assert_cmpuint (a->status, ==, 200);
    g_assert_nonnull (strstr (a->body, "\"status\":\"ok\""));
    g_assert_cmpuint (c->status, ==, 200);
  }

  /* A store that does not answer (here: a lock the check waits for) is
   * not ready either, and /v1/ready says so within about a second
   * instead of hanging its caller. */
  {
    const char *keys[] = { "host", "user", "dbname", NULL };
    const char *values[] = { cluster->dir, "postgres", "postgres", NULL };
    PGconn *conn = PQconnectdbParams (keys, values, 0);
    PGresult *res;

    g_assert_cmpint (PQstatus (conn), ==, CONNECTION_OK);
    res = PQexec (conn, "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
    g_assert_cmpint (PQresultStatus (res), ==, PGRES_COMMAND_OK);
    PQclear (res);
    t = g_get_monotonic_time ();
    {
      g_autoptr(Answer) a = request (session, url, "GET", "/v1/ready", NULL, NULL);

      g_assert_cmpuint (a->status, ==, 503);
      g_assert_nonnull (strstr (a->body, "\"code\":\"not_ready\""));
    }
    g_assert_cmpint (g_get_monotonic_time () - t, <, 1500 * 1000);
    g_assert_cmpint (g_get_monotonic_time () - t, >=, 900 * 1000);
    PQclear (PQexec (conn, "ROLLBACK"));
    PQfinish (conn);
    /* The check in flight ends at the rollback (or its 2 s statement
     * timeout); then ready again. */
    t = g_get_monotonic_time ();
    for (;;)
      {
        g_autoptr(Answer) a = request (session, url, "GET", "/v1/ready", NULL, NULL);

        if (a->status == 200)
          break;
        g_assert_cmpint (g_get_monotonic_time () - t, <, 5 * G_USEC_PER_SEC);
        g_usleep (50000);
      }
  }

  cluster_stop (cluster);
  stopped = g_get_monotonic_time ();
  for (;;)
    {
      g_autoptr(Answer) a = request (session, url, "GET", "/v1/ready", NULL, NULL);

      if (a->status == 503)
        {
          g_assert_cmpstr (a->content_type, ==, "application/problem+json");
          g_assert_nonnull (strstr (a->body, "\"code\":\"not_ready\""));
          break;
        }
      g_assert_cmpuint (a->status, ==, 200);
      g_assert_cmpint (g_get_monotonic_time () - stopped, <, G_USEC_PER_SEC);
      g_usleep (20000);
    }
  g_test_message ("/v1/ready answered 503 %.0f ms after PostgreSQL stopped",
                  (g_get_monotonic_time () - stopped) / 1e3);
  /* Liveness is not readiness: the process is fine. */
  {
    g_autoptr(Answer) h = request (session, url, "GET", "/v1/health", NULL, NULL);

    g_assert_cmpuint (h->status, ==, 200);
  }
  /* Commands and reads: a prompt 503 problem, not a hang. */
  t = g_get_monotonic_time ();
  {
    g_autoptr(Answer) c = request (session, url, "POST", "/v1/commands", "k-during", body2);
    g_autoptr(Answer) r = request (session, url, "GET", "/v1/head", NULL, NULL);

    g_assert_cmpuint (c->status, ==, 503);
    g_assert_cmpstr (c->content_type, ==, "application/problem+json");
    g_assert_cmpuint (r->status, ==, 503);
    g_assert_cmpstr (r->content_type, ==, "application/problem+json");
  }
  g_assert_cmpint (g_get_monotonic_time () - t, <, 5 * G_USEC_PER_SEC);
  g_assert_true (od_test_process_alive (server));

  /* Back: ready again, and the refused command goes through on retry. */
  cluster_start (cluster);
  t = g_get_monotonic_time ();
  for (;;)
    {
      g_autoptr(Answer) a = request (session, url, "GET", "/v1/ready", NULL, NULL);

      if (a->status == 200)
        break;
      g_assert_cmpuint (a->status, ==, 503);
      g_assert_cmpint (g_get_monotonic_time () - t, <, 10 * G_USEC_PER_SEC);
      g_usleep (50000);
    }
  {
    g_autoptr(Answer) c = request (session, url, "POST", "/v1/commands", "k-during", body2);
    g_autoptr(Answer) r = request (session, url, "GET", "/v1/head", NULL, NULL);
    g_autoptr(Answer) m = request (session, url, "GET", "/metrics", NULL, NULL);

    g_assert_cmpuint (c->status, ==, 200);
    g_assert_nonnull (strstr (c->body, "\"position\":2"));
    g_assert_cmpuint (r->status, ==, 200);
    g_assert_nonnull (strstr (m->body, "\norderdesk_commands_total{type=\"CreateOrder\","
                                       "outcome=\"unavailable\"} 1\n"));
    g_assert_null (strstr (m->body, "\norderdesk_store_errors_total 0\n"));
  }

  od_test_process_free (server, FALSE);
  cluster_free (cluster);
}

/* ---- waiting for the store at start, and sd_notify ---- */

typedef struct
{
  GSocket *socket;
  GMutex   lock;
  GCond    cond;
  GPtrArray *messages;     /* every datagram, in order */
  gint64   ready_at;       /* monotonic usec */
  gboolean ready_answered; /* the port answered right when READY=1 came */
  gboolean stop;
} Notify;

/* GET /v1/health on a fresh connection, straight away. */
static gboolean
health_answers (const char *url)
{
  g_autoptr(SoupSession) session = session_new ();
  g_autofree char *full = g_strconcat (url, "/v1/health", NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("GET", full);
  g_autoptr(GBytes) bytes = soup_session_send_and_read (session, msg, NULL, NULL);

  return bytes != NULL && soup_message_get_status (msg) == 200;
}

static gpointer
notify_thread (gpointer data)
{
  Notify *notify = data;

  while (!g_atomic_int_get (&notify->stop))
    {
      char buf[4096];
      g_autoptr(GError) error = NULL;
      gssize n = g_socket_receive (notify->socket, buf, sizeof buf - 1, NULL, &error);
      const char *status;

      if (n < 0)
        continue;   /* the socket's timeout: look at stop again */
      buf[n] = '\0';
      if (g_str_has_prefix (buf, "READY=1\n") && (status = strstr (buf, "Listening on ")))
        {
          g_autofree char *url = g_strndup (status + strlen ("Listening on "),
                                            strcspn (status + strlen ("Listening on "), ", \n"));
          gboolean answered = health_answers (url);

          g_mutex_lock (&notify->lock);
          notify->ready_at = g_get_monotonic_time ();
          notify->ready_answered = answered;
          g_mutex_unlock (&notify->lock);
        }
      g_mutex_lock (&notify->lock);
      g_ptr_array_add (notify->messages, g_strdup (buf));
      g_cond_broadcast (&notify->cond);
      g_mutex_unlock (&notify->lock);
    }
  return NULL;
}

static gboolean
notify_wait (Notify     *notify,
             const char *prefix)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  gboolean found = FALSE;

  g_mutex_lock (&notify->lock);
  while (!found)
    {
      for (guint i = 0; i < notify->messages->len && !found; i++)
        found = g_str_has_prefix (g_ptr_array_index (notify->messages, i), prefix);
      if (!found && !g_cond_wait_until (&notify->cond, &notify->lock, deadline))
        break;
    }
  g_mutex_unlock (&notify->lock);
  return found;
}

typedef struct
{
  Cluster *cluster;
  gint64   started_at;
  gint     started;
  gint     finish;
} Later;

/* Starts the cluster 2 s from now, and lives until told to finish (the
 * cluster dies with the thread that started it). */
static gpointer
start_later (gpointer data)
{
  Later *later = data;

  g_usleep (2 * G_USEC_PER_SEC);
  cluster_start (later->cluster);
  later->started_at = g_get_monotonic_time ();
  g_atomic_int_set (&later->started, TRUE);
  while (!g_atomic_int_get (&later->finish))
    g_usleep (10000);
  return NULL;
}

static void
test_store_wait_notify (void)
{
  Cluster *cluster = cluster_new ();
  OdTestProcess *server = od_test_process_new ("od-pg-wait", "wait", tokens,
                                               G_N_ELEMENTS (tokens));
  g_autofree char *path = g_build_filename (od_test_process_dir (server), "notify", NULL);
  g_autoptr(GSocketAddress) address = g_unix_socket_address_new (path);
  g_autoptr(GError) error = NULL;
  const char *args[] = { "--store", cluster->uri, "--store-wait", "30", NULL };
  Notify notify = { 0 };
  Later later = { cluster, 0, FALSE, FALSE };
  GThread *reader, *starter;
  g_autofree char *log = NULL;
  guint retries = 0;
  gboolean waiting_status = FALSE;

  notify.messages = g_ptr_array_new_with_free_func (g_free);
  g_mutex_init (&notify.lock);
  g_cond_init (&notify.cond);
  notify.socket = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_DATAGRAM,
                                G_SOCKET_PROTOCOL_DEFAULT, &error);
  g_assert_no_error (error);
  g_socket_bind (notify.socket, address, FALSE, &error);
  g_assert_no_error (error);
  g_socket_set_timeout (notify.socket, 1);
  reader = g_thread_new ("notify", notify_thread, &notify);

  /* PostgreSQL is down at start and comes up 2 s later. */
  g_setenv ("NOTIFY_SOCKET", path, TRUE);
  starter = g_thread_new ("start-later", start_later, &later);
  od_test_process_start (server, 0, args);
  g_unsetenv ("NOTIFY_SOCKET");
  g_assert_true (g_atomic_int_get (&later.started));

  g_assert_true (notify_wait (&notify, "READY=1"));
  g_mutex_lock (&notify.lock);
  g_assert_cmpint (notify.ready_at, >, later.started_at);
  g_assert_true (notify.ready_answered);
  for (guint i = 0; i < notify.messages->len; i++)
    {
      const char *m = g_ptr_array_index (notify.messages, i);

      if (g_str_has_prefix (m, "READY=1"))
        break;
      waiting_status |= g_str_has_prefix (m, "STATUS=Waiting for the store");
    }
  g_mutex_unlock (&notify.lock);
  g_assert_true (waiting_status);

  log = od_test_process_read_log (server);
  for (const char *p = log; (p = strstr (p, "store not reachable")) != NULL; p++)
    retries++;
  /* 0.25 + 0.5 + 1 s of backoff fit in the 2 s. */
  g_assert_cmpuint (retries, >=, 2);

  od_test_process_stop (server);
  g_assert_true (notify_wait (&notify, "STOPPING=1"));

  g_atomic_int_set (&notify.stop, TRUE);
  g_thread_join (reader);
  g_object_unref (notify.socket);
  g_ptr_array_unref (notify.messages);
  g_mutex_clear (&notify.lock);
  g_cond_clear (&notify.cond);

  /* Past --store-wait, the server gives up with an error. */
  cluster_stop (cluster);
  {
    g_autofree char *err = NULL;
    g_autoptr(GSubprocess) process = NULL;
    gint64 t = g_get_monotonic_time ();

    process = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_PIPE,
                                &error, g_getenv ("OD_SERVER_BIN"), "--listen", "127.0.0.1:0",
                                "--store", cluster->uri, "--tokens",
                                od_test_process_tokens_path (server), "--store-wait", "1", NULL);
    g_assert_no_error (error);
    g_subprocess_communicate_utf8 (process, NULL, NULL, NULL, &err, &error);
    g_assert_no_error (error);
    g_assert_cmpint (g_subprocess_get_exit_status (process), ==, 1);
    g_assert_nonnull (strstr (err, "store not reachable"));
    g_assert_nonnull (strstr (err, "orderdesk-server: store: PostgreSQL: cannot connect"));
    g_assert_cmpint (g_get_monotonic_time () - t, <, 5 * G_USEC_PER_SEC);
  }

  od_test_process_free (server, FALSE);
  cluster_free (cluster);
  g_atomic_int_set (&later.finish, TRUE);
  g_thread_join (starter);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/pg-ready/outage", test_outage);
  g_test_add_func ("/pg-ready/store-wait-notify", test_store_wait_notify);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-pg-test.h"

#include <string.h>
#include <unistd.h>

const char *
od_pg_test_host (void)
{
  const char *host = g_getenv ("OD_TEST_PGHOST");

  /* A PostgreSQL test that cannot reach PostgreSQL has failed. */
  if (host == NULL || *host == '\0')
    g_error ("OD_TEST_PGHOST is not set: start a cluster with `. tests/pg-cluster.sh start`");
  return host;
}

PGconn *
od_pg_test_connect (const char *dbname)
{
  const char *keys[] = { "host", "user", "dbname", NULL };
  const char *values[] = { od_pg_test_host (), "postgres", dbname, NULL };
  PGconn *conn = PQconnectdbParams (keys, values, 0);

  if (PQstatus (conn) != CONNECTION_OK)
    g_error ("cannot connect to PostgreSQL at %s: %s", values[0], PQerrorMessage (conn));
  return conn;
}

PGresult *
od_pg_test_exec (PGconn     *conn,
                 const char *sql,
                 int         n_params,
                 const char *const *values)
{
  PGresult *res = PQexecParams (conn, sql, n_params, NULL, values, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus (res);

  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    g_error ("%s: %s", sql, PQresultErrorMessage (res));
  return res;
}

gint64
od_pg_test_scalar (PGconn     *conn,
                   const char *sql)
{
  PGresult *res = od_pg_test_exec (conn, sql, 0, NULL);
  gint64 value = g_ascii_strtoll (PQgetvalue (res, 0, 0), NULL, 10);

  PQclear (res);
  return value;
}

/* A writer that is not an orderdesk-server: it follows the append
 * protocol of docs/postgresql.md (lock, prev = newest visible position,
 * position from the sequence, NOTIFY), or with take_lock FALSE skips the
 * lock, appends an OrderCreated of a new order by "intruder", holds its
 * transaction open for hold_ms, then commits or rolls back.  Returns the
 * order id. */
char *
od_pg_test_foreign_append (PGconn   *conn,
                           gboolean  take_lock,
                           gboolean  commit,
                           guint     hold_ms)
{
  char *id = od_uuid_v7_new ();
  const char *values[] = { id };

  for (guint attempt = 0; attempt < 100; attempt++)
    {
      PGresult *res;

      PQclear (od_pg_test_exec (conn, "BEGIN", 0, NULL));
      if (take_lock)
        PQclear (od_pg_test_exec (conn, "SELECT pg_advisory_xact_lock(5192120566211906)", 0, NULL));
      res = PQexecParams (conn,
                          "INSERT INTO events (position, prev, order_id, version, type, "
                          "  recorded_at, actor, data) "
                          "SELECT nextval('event_position'), coalesce(max(position), 0), $1, 1, "
                          "  'OrderCreated', now(), 'intruder', "
                          "  '{\"customer_name\":\"I\",\"customer_email\":\"i@x\",\"currency\":\"EUR\"}' "
                          "FROM events",
                          1, NULL, values, NULL, NULL, 0);
      if (PQresultStatus (res) != PGRES_COMMAND_OK)
        {
          /* Without the lock this writer can lose the race for the next
           * link of the chain (UNIQUE (prev)); it tries again, as any
           * writer must. */
          if (take_lock || g_strcmp0 (PQresultErrorField (res, PG_DIAG_SQLSTATE), "23505") != 0)
            g_error ("foreign append: %s", PQresultErrorMessage (res));
          PQclear (res);
          PQclear (od_pg_test_exec (conn, "ROLLBACK", 0, NULL));
          continue;
        }
      PQclear (res);
      PQclear (od_pg_test_exec (conn, "SELECT pg_notify('orderdesk_events', '')", 0, NULL));
      g_usleep ((gulong) hold_ms * 1000);
      PQclear (od_pg_test_exec (conn, commit ? "COMMIT" : "ROLLBACK", 0, NULL));
      return id;
    }
  g_error ("the foreign writer never got its event in");
  return id;
}

/* A database of its own for every test, so tests never see each other's
 * events and can run in parallel. */
char *
od_pg_test_create_db (void)
{
  static gint counter;
  char *name = g_strdup_printf ("od_test_%d_%d_%" G_GINT64_FORMAT, (int) getpid (),
                                g_atomic_int_add (&counter, 1), g_get_real_time () % 1000000);
  PGconn *conn = od_pg_test_connect ("postgres");
  char *ident = PQescapeIdentifier (conn, name, strlen (name));
  g_autofree char *sql = g_strdup_printf ("CREATE DATABASE %s", ident);

  PQclear (od_pg_test_exec (conn, sql, 0, NULL));
  PQfreemem (ident);
  PQfinish (conn);
  return name;
}

char *
od_pg_test_uri (const char *dbname)
{
  g_autofree char *host = g_uri_escape_string (od_pg_test_host (), NULL, FALSE);

  return g_strdup_printf ("postgresql:///%s?host=%s&user=postgres", dbname, host);
}

void
od_pg_test_drop_db (const char *dbname)
{
  PGconn *conn = od_pg_test_connect ("postgres");
  char *ident = PQescapeIdentifier (conn, dbname, strlen (dbname));
  g_autofree char *sql = g_strdup_printf ("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);

  PQclear (od_pg_test_exec (conn, sql, 0, NULL));
  PQfreemem (ident);
  PQfinish (conn);
}

/* orderdesk-server processes ------------------------------------------ */

#include "od-test-process.h"

struct _OdPgServer
{
  char          *name;
  OdTestProcess *test_process;
  char          *url;
  /* A reference of our own: the client threads look at it while
   * od_pg_server_kill () runs. */
  GSubprocess   *process;
  gint           killed;
};

static const OdTestToken pg_tokens[] = {
  { "alice", "operator", OD_PG_TEST_OPERATOR },
  { "victor", "viewer", OD_PG_TEST_VIEWER },
};

OdPgServer *
od_pg_server_start (const char *store_uri,
                    const char *name)
{
  OdPgServer *server = g_new0 (OdPgServer, 1);
  const char *args[] = { "--store", store_uri, "--rate-limit", "0", NULL };

  server->name = g_strdup (name);
  server->test_process = od_test_process_new ("od-pg", name, pg_tokens, G_N_ELEMENTS (pg_tokens));
  od_test_process_start (server->test_process, 0, args);
  server->url = g_strdup (od_test_process_url (server->test_process));
  server->process = g_object_ref (od_test_process_subprocess (server->test_process));
  return server;
}

void
od_pg_server_dump_log (OdPgServer *server)
{
  od_test_process_dump_log (server->test_process);
}

const char *
od_pg_server_url (OdPgServer *server)
{
  return server->url;
}

/* SIGKILL: the instance dies in the middle of whatever it was doing.
 * Requests to it then answer status 0; od_pg_server_stop () frees it. */
void
od_pg_server_kill (OdPgServer *server)
{
  g_atomic_int_set (&server->killed, 1);
  od_test_process_kill (server->test_process);
}

/* SIGTERM and a clean exit (status 0), unless it was killed. */
void
od_pg_server_stop (OdPgServer *server)
{
  if (!g_atomic_int_get (&server->killed))
    od_test_process_stop (server->test_process);
  od_test_process_free (server->test_process, g_getenv ("OD_TEST_KEEP_LOGS") != NULL);
  g_object_unref (server->process);
  g_free (server->name);
  g_free (server->url);
  g_free (server);
}

/* HTTP ------------------------------------------------------------------ */

/* One session per thread: a libsoup session belongs to the thread that
 * made it. */
SoupSession *
od_pg_session_new (void)
{
  return soup_session_new_with_options ("timeout", 60, "idle-timeout", 60,
                                        "max-conns", 64, "max-conns-per-host", 32, NULL);
}

guint
od_pg_post_command (SoupSession *session,
                    OdPgServer  *server,
                    const char  *key,
                    const char  *body,
                    char       **response,
                    gboolean    *replayed)
{
  g_autofree char *uri = g_strconcat (server->url, "/v1/commands", NULL);
  g_autoptr(SoupMessage) msg = NULL;
  g_autoptr(GBytes) answer = NULL;
  g_autoptr(GError) error = NULL;

  for (guint attempt = 1; answer == NULL; attempt++)
    {
      g_autoptr(GBytes) request = g_bytes_new (body, strlen (body));
      SoupMessageHeaders *headers;

      g_clear_object (&msg);
      g_clear_error (&error);
      msg = soup_message_new ("POST", uri);
      headers = soup_message_get_request_headers (msg);
      soup_message_headers_replace (headers, "Authorization", "Bearer " OD_PG_TEST_OPERATOR);
      soup_message_headers_replace (headers, "Idempotency-Key", key);
      soup_message_set_request_body_from_bytes (msg, "application/json", request);
      answer = soup_session_send_and_read (session, msg, NULL, &error);
      /* A connection reset while connecting (an overflowing accept queue
       * ends in one now and then) is retried with the same key, as any
       * client does; it never reached the server.  Anything else fails. */
      if (answer == NULL && attempt < 3
          && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED)
          && g_subprocess_get_identifier (server->process) != NULL)
        {
          g_printerr ("# %s: %s; retrying with the same key\n", server->name, error->message);
          continue;
        }
      if (answer == NULL)
        break;
    }
  if (answer == NULL && g_atomic_int_get (&server->killed))
    return 0;
  if (answer == NULL)
    {
      od_pg_server_dump_log (server);
      g_error ("POST %s to %s (%s): %s", body, server->name,
               g_subprocess_get_identifier (server->process) ? "running" : "exited", error->message);
    }
  if (response != NULL)
    *response = g_strndup (g_bytes_get_data (answer, NULL), g_bytes_get_size (answer));
  if (replayed != NULL)
    *replayed = g_strcmp0 (soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                                         "Idempotent-Replayed"), "true") == 0;
  return soup_message_get_status (msg);
}

gint64
od_pg_get_head (SoupSession *session,
                OdPgServer  *server)
{
  g_autofree char *uri = g_strconcat (server->url, "/v1/head", NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("GET", uri);
  g_autoptr(GBytes) answer = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;

  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer " OD_PG_TEST_VIEWER);
  answer = soup_session_send_and_read (session, msg, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (soup_message_get_status (msg), ==, 200);
  node = od_json_parse_object (g_bytes_get_data (answer, NULL), g_bytes_get_size (answer), &error);
  g_assert_no_error (error);
  return json_object_get_int_member (json_node_get_object (node), "head");
}

/* Server-Sent Events ------------------------------------------------------ */

struct _OdPgSubscriber
{
  OdPgServer    *server;
  gint64         after;
  OdPgEventFunc  func;
  gpointer       user_data;
  GThread       *thread;
  GCancellable  *cancellable;
  GMutex         lock;
  GCond          cond;
  GPtrArray     *events;   /* OdEvent */
  gint64         last;
  char          *failure;  /* the first broken promise seen */
  gboolean       ended;
};

static void
subscriber_fail (OdPgSubscriber *sub,
                 char           *message)
{
  g_mutex_lock (&sub->lock);
  if (sub->failure == NULL)
    sub->failure = message;
  else
    g_free (message);
  g_cond_broadcast (&sub->cond);
  g_mutex_unlock (&sub->lock);
}

static void
subscriber_frame (OdPgSubscriber *sub,
                  const char     *frame)
{
  g_auto(GStrv) lines = g_strsplit (frame, "\n", -1);
  const char *event_type = NULL;
  const char *data = NULL;
  g_autoptr(GError) error = NULL;
  OdEvent *event;

  for (guint i = 0; lines[i]; i++)
    {
      if (g_str_has_prefix (lines[i], "event: "))
        event_type = lines[i] + 7;
      else if (g_str_has_prefix (lines[i], "data: "))
        data = lines[i] + 6;
    }
  if (data == NULL || g_strcmp0 (event_type, "head") == 0)
    return;
  event = od_event_parse (data, -1, &error);
  if (event == NULL)
    {
      subscriber_fail (sub, g_strdup_printf ("unparsable event %s: %s", data, error->message));
      return;
    }
  if (sub->func != NULL)
    sub->func (event, g_get_monotonic_time (), sub->user_data);
  g_mutex_lock (&sub->lock);
  if (event->prev != sub->last && sub->failure == NULL)
    sub->failure = g_strdup_printf ("%s: after %" G_GINT64_FORMAT " came %" G_GINT64_FORMAT
                                    " with prev %" G_GINT64_FORMAT, sub->server->name, sub->last,
                                    event->position, event->prev);
  sub->last = event->position;
  g_ptr_array_add (sub->events, event);
  g_cond_broadcast (&sub->cond);
  g_mutex_unlock (&sub->lock);
}

static gpointer
subscriber_thread (gpointer data)
{
  OdPgSubscriber *sub = data;
  g_autoptr(SoupSession) session = soup_session_new_with_options ("timeout", 0, "idle-timeout", 0, NULL);
  g_autofree char *uri = g_strdup_printf ("%s/v1/events/stream?after=%" G_GINT64_FORMAT,
                                          sub->server->url, sub->after);
  g_autoptr(SoupMessage) msg = soup_message_new ("GET", uri);
  g_autoptr(GInputStream) stream = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) buf = g_string_new (NULL);
  char chunk[65536];

  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer " OD_PG_TEST_VIEWER);
  stream = soup_session_send (session, msg, sub->cancellable, &error);
  if (stream == NULL || soup_message_get_status (msg) != 200)
    {
      subscriber_fail (sub, g_strdup_printf ("%s: stream did not open: %s", sub->server->name,
                                             error ? error->message : "bad status"));
      goto out;
    }
  for (;;)
    {
      gssize n = g_input_stream_read (stream, chunk, sizeof chunk, sub->cancellable, &error);
      char *end;

      if (n <= 0)
        {
          if (!g_cancellable_is_cancelled (sub->cancellable))
            subscriber_fail (sub, g_strdup_printf ("%s: stream ended: %s", sub->server->name,
                                                   error ? error->message : "EOF"));
          break;
        }
      g_string_append_len (buf, chunk, n);
      /* The server ends lines with LF; frames end with an empty line. */
      while ((end = strstr (buf->str, "\n\n")) != NULL)
        {
          *end = '\0';
          subscriber_frame (sub, buf->str);
          g_string_erase (buf, 0, end + 2 - buf->str);
        }
    }
out:
  g_mutex_lock (&sub->lock);
  sub->ended = TRUE;
  g_cond_broadcast (&sub->cond);
  g_mutex_unlock (&sub->lock);
  return NULL;
}

OdPgSubscriber *
od_pg_subscriber_start (OdPgServer    *server,
                        gint64         after,
                        OdPgEventFunc  func,
                        gpointer       user_data)
{
  OdPgSubscriber *sub = g_new0 (OdPgSubscriber, 1);

  sub->server = server;
  sub->after = after;
  sub->last = after;
  sub->func = func;
  sub->user_data = user_data;
  sub->cancellable = g_cancellable_new ();
  sub->events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  g_mutex_init (&sub->lock);
  g_cond_init (&sub->cond);
  sub->thread = g_thread_new ("od-sse", subscriber_thread, sub);
  return sub;
}

/* Waits until the subscriber has seen `position` (or a failure). */
gboolean
od_pg_subscriber_wait (OdPgSubscriber *sub,
                       gint64          position,
                       guint           timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  gboolean reached;

  g_mutex_lock (&sub->lock);
  while (sub->last < position && sub->failure == NULL && !sub->ended)
    if (!g_cond_wait_until (&sub->cond, &sub->lock, deadline))
      break;
  reached = sub->last >= position;
  g_mutex_unlock (&sub->lock);
  return reached;
}

GPtrArray *
od_pg_subscriber_stop (OdPgSubscriber *sub,
                       char          **failure)
{
  GPtrArray *events;

  g_cancellable_cancel (sub->cancellable);
  g_thread_join (sub->thread);
  events = g_steal_pointer (&sub->events);
  *failure = g_steal_pointer (&sub->failure);
  g_object_unref (sub->cancellable);
  g_mutex_clear (&sub->lock);
  g_cond_clear (&sub->cond);
  g_free (sub);
  return events;
}

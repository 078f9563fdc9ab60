/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-server.h"

#include "od-test-log.h"
#include "od-test-process.h"

#include <errno.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct _OdTestServer
{
  OdTestProcess *process;
  char          *store;
  char          *sqlite_path;  /* the SQLite store's file, NULL on PostgreSQL */
  char          *pg_database;  /* NULL on SQLite */
  GStrv          extra_args;   /* --store and the test's own options */
  guint          demo_orders;  /* seeded at the next start (0: none) */
  gboolean       lenient;      /* free ends it without checking its exit */
  char          *url;
  char          *host;
  guint16        port;
  SoupSession   *session;
};

static const OdTestToken test_tokens[] = {
  { "alice", "operator", OD_TEST_ALICE },
  { "bob", "operator", OD_TEST_BOB },
  { "victor", "viewer", OD_TEST_VICTOR },
};

const char *
od_test_store_kind (void)
{
  const char *kind = g_getenv ("OD_TEST_STORE");

  if (kind == NULL || *kind == '\0')
    return "sqlite";
  if (strcmp (kind, "sqlite") != 0 && strcmp (kind, "postgresql") != 0)
    g_error ("OD_TEST_STORE must be sqlite or postgresql, not %s", kind);
  return kind;
}

gboolean
od_test_server_wrapped (void)
{
  return od_test_process_wrapped ();
}

static guint
slowdown (void)
{
  return od_test_process_slowdown ();
}

static PGconn *
pg_connect (void)
{
  const char *host = g_getenv ("OD_TEST_PGHOST");
  const char *keys[] = { "host", "user", "dbname", NULL };
  const char *values[] = { host, "postgres", "postgres", NULL };
  PGconn *conn;

  /* CI always provides a cluster: a missing one must fail, never skip. */
  if (host == NULL || *host == '\0')
    g_error ("OD_TEST_STORE=postgresql needs OD_TEST_PGHOST (run `. tests/pg-cluster.sh start`)");
  conn = PQconnectdbParams (keys, values, 0);
  if (PQstatus (conn) != CONNECTION_OK)
    g_error ("cannot connect to PostgreSQL at %s: %s", host, PQerrorMessage (conn));
  return conn;
}

/* Database names cannot be bound parameters; the name is made here from
 * random hex digits only, never from input. */
static void
pg_exec (const char *sql)
{
  PGconn *conn = pg_connect ();
  PGresult *result = PQexec (conn, sql);

  if (PQresultStatus (result) != PGRES_COMMAND_OK)
    g_error ("%s: %s", sql, PQerrorMessage (conn));
  PQclear (result);
  PQfinish (conn);
}

/* No proxy: a CI machine's http_proxy must not route loopback requests. */
SoupSession *
od_test_session_new (void)
{
  return soup_session_new_with_options ("proxy-resolver", NULL,
                                        "timeout", 60 * slowdown (),
                                        "idle-timeout", 60 * slowdown (),
                                        "max-conns", 256,
                                        "max-conns-per-host", 128,
                                        NULL);
}

static OdTestServer *
server_new (void)
{
  OdTestServer *server = g_new0 (OdTestServer, 1);

  server->process = od_test_process_new ("od-test", "under test", test_tokens,
                                         G_N_ELEMENTS (test_tokens));
  server->session = od_test_session_new ();
  return server;
}

static void
server_use_sqlite (OdTestServer *server)
{
  server->sqlite_path = g_build_filename (od_test_process_dir (server->process), "events.sqlite",
                                          NULL);
  server->store = g_strconcat ("sqlite:", server->sqlite_path, NULL);
}

/* Starts the server on `port` (0: any), with the demo seed while
 * demo_orders says so. */
static void
server_spawn (OdTestServer *server,
              guint16       port)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  g_auto(GStrv) args = NULL;

  g_strv_builder_addv (builder, (const char **) server->extra_args);
  if (server->demo_orders > 0)
    {
      g_autofree char *n = g_strdup_printf ("%u", server->demo_orders);

      g_strv_builder_add_many (builder, "--demo", "--demo-orders", n, NULL);
    }
  args = g_strv_builder_end (builder);
  od_test_process_start (server->process, port, (const char * const *) args);
  g_free (server->url);
  g_free (server->host);
  server->url = g_strdup (od_test_process_url (server->process));
  server->host = g_strdup (od_test_process_host (server->process));
  server->port = od_test_process_port (server->process);
}

OdTestServer *
od_test_server_new (const char *first_arg,
                    ...)
{
  OdTestServer *server = server_new ();
  g_autoptr(GStrvBuilder) args = g_strv_builder_new ();
  va_list ap;

  if (strcmp (od_test_store_kind (), "postgresql") == 0)
    {
      const char *host = g_getenv ("OD_TEST_PGHOST");
      g_autofree char *sql = NULL;

      server->pg_database = g_strdup_printf ("od_t_%08x%08x", g_random_int (), g_random_int ());
      sql = g_strdup_printf ("CREATE DATABASE %s", server->pg_database);
      pg_exec (sql);
      server->store = g_strdup_printf ("postgresql:///%s?host=%s&user=postgres",
                                       server->pg_database, host);
    }
  else
    server_use_sqlite (server);

  g_strv_builder_add (args, "--store");
  g_strv_builder_add (args, server->store);
  va_start (ap, first_arg);
  for (const char *arg = first_arg; arg != NULL; arg = va_arg (ap, const char *))
    g_strv_builder_add (args, arg);
  va_end (ap);
  server->extra_args = g_strv_builder_end (args);

  od_test_server_start (server);
  return server;
}

OdTestServer *
od_test_server_new_seeded (guint               demo_orders,
                           const char * const *extra_args)
{
  OdTestServer *server = server_new ();
  g_autoptr(GStrvBuilder) args = g_strv_builder_new ();

  server_use_sqlite (server);
  server->lenient = TRUE;
  server->demo_orders = demo_orders;
  g_strv_builder_add (args, "--store");
  g_strv_builder_add (args, server->store);
  g_strv_builder_add_many (args, "--rate-limit", "0", NULL);
  if (extra_args != NULL)
    g_strv_builder_addv (args, (const char **) extra_args);
  server->extra_args = g_strv_builder_end (args);
  server_spawn (server, 0);
  if (demo_orders > 0)
    {
      /* The seed runs after the server listens; it is done when the head
       * stops moving. */
      gint64 last = -1, head;
      guint still = 0;

      while (still < 8)
        {
          g_usleep (250000);
          head = od_test_head (server);
          still = head == last && head > 0 ? still + 1 : 0;
          last = head;
        }
    }
  return server;
}

void
od_test_server_start (OdTestServer *server)
{
  server_spawn (server, 0);
}

/* kill -9 (if it still runs) and start again on the same store and port,
 * so that clients keep their URL; a seed is in the store already. */
void
od_test_server_restart (OdTestServer *server)
{
  od_test_process_kill (server->process);
  server->demo_orders = 0;
  server_spawn (server, server->port);
}

/* A clean stop: SIGTERM, the server finishes what it was doing and must
 * exit with status 0. */
void
od_test_server_stop (OdTestServer *server)
{
  od_test_process_stop (server->process);
}

void
od_test_server_kill (OdTestServer *server)
{
  g_assert_nonnull (od_test_process_subprocess (server->process));
  od_test_process_kill (server->process);
  /* Connections to the dead server must not be reused. */
  g_clear_object (&server->session);
  server->session = od_test_session_new ();
}

void
od_test_server_signal (OdTestServer *server,
                       int           signum)
{
  od_test_process_signal (server->process, signum);
}

void
od_test_server_free (OdTestServer *server)
{
  if (server == NULL)
    return;
  if (server->lenient)
    od_test_process_terminate (server->process);
  else if (od_test_process_subprocess (server->process) != NULL)
    od_test_process_stop (server->process);
  g_clear_object (&server->session);
  if (server->pg_database != NULL)
    {
      g_autofree char *sql = g_strdup_printf ("DROP DATABASE IF EXISTS %s WITH (FORCE)",
                                              server->pg_database);

      pg_exec (sql);
    }
  od_test_process_free (server->process, FALSE);
  g_strfreev (server->extra_args);
  g_free (server->store);
  g_free (server->sqlite_path);
  g_free (server->pg_database);
  g_free (server->url);
  g_free (server->host);
  g_free (server);
}

const char *
od_test_server_dir (OdTestServer *server)
{
  return od_test_process_dir (server->process);
}

const char *
od_test_server_sqlite_path (OdTestServer *server)
{
  return server->sqlite_path;
}

SoupSession *
od_test_server_session (OdTestServer *server)
{
  return server->session;
}

const char *
od_test_server_url (OdTestServer *server)
{
  return server->url;
}

char *
od_test_server_read_log (OdTestServer *server)
{
  return od_test_process_read_log (server->process);
}

const char *
od_test_server_store (OdTestServer *server)
{
  return server->store;
}

GPid
od_test_server_pid (OdTestServer *server)
{
  return od_test_process_pid (server->process);
}

gboolean
od_test_server_alive (OdTestServer *server)
{
  return od_test_process_alive (server->process);
}

gsize
od_test_server_rss_kib (OdTestServer *server)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", (int) od_test_server_pid (server));
  g_autofree char *text = NULL;
  const char *line;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  line = strstr (text, "VmRSS:");
  if (line == NULL)
    return 0;
  return g_ascii_strtoull (line + strlen ("VmRSS:"), NULL, 10);
}

/* ---- responses ---- */

void
od_test_response_free (OdTestResponse *response)
{
  if (response == NULL)
    return;
  g_clear_pointer (&response->headers, soup_message_headers_unref);
  g_clear_pointer (&response->json, json_node_unref);
  g_free (response->body);
  g_free (response);
}

static void
response_set_body (OdTestResponse *response,
                   const char     *data,
                   gsize           len)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();

  response->body = g_malloc (len + 1);
  if (len > 0)
    memcpy (response->body, data, len);
  response->body[len] = '\0';
  response->len = len;
  if (len > 0 && json_parser_load_from_data (parser, response->body, len, NULL)
      && json_parser_get_root (parser) != NULL)
    response->json = json_node_ref (json_parser_get_root (parser));
}

JsonObject *
od_test_response_object (OdTestResponse *response)
{
  if (response->json == NULL || !JSON_NODE_HOLDS_OBJECT (response->json))
    return NULL;
  return json_node_get_object (response->json);
}

const char *
od_test_response_header (OdTestResponse *response,
                         const char     *name)
{
  return response->headers ? soup_message_headers_get_one (response->headers, name) : NULL;
}

gint64
od_test_response_int (OdTestResponse *response,
                      const char     *member)
{
  JsonObject *object = od_test_response_object (response);
  JsonNode *node = object ? json_object_get_member (object, member) : NULL;

  if (!od_json_is_integer (node))
    g_error ("response member %s is not an integer: HTTP %u %s", member, response->status,
             response->body);
  return json_node_get_int (node);
}

const char *
od_test_response_string (OdTestResponse *response,
                         const char     *member)
{
  JsonObject *object = od_test_response_object (response);
  JsonNode *node = object ? json_object_get_member (object, member) : NULL;

  return od_json_is_string (node) ? json_node_get_string (node) : NULL;
}

gboolean
od_test_response_has_error_field (OdTestResponse *response,
                                  const char     *field)
{
  JsonObject *object = od_test_response_object (response);
  JsonNode *node = object ? json_object_get_member (object, "errors") : NULL;
  JsonArray *array;

  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    return FALSE;
  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *item = json_array_get_element (array, i);
      JsonObject *error;

      if (!od_json_is_object (item))
        continue;
      error = json_node_get_object (item);
      if (g_strcmp0 (json_object_get_string_member_with_default (error, "field", NULL), field) == 0
          && od_json_is_string (json_object_get_member (error, "message")))
        return TRUE;
    }
  return FALSE;
}

static void
fail_at (const char     *file,
         int             line,
         OdTestResponse *response,
         const char     *what)
{
  g_autofree char *message = g_strdup_printf ("%s; got HTTP %u, Content-Type %s, body: %.2000s",
                                              what, response->status,
                                              od_test_response_header (response, "Content-Type"),
                                              response->body ? response->body : "(none)");

  g_assertion_message ("orderdesk-test", file, line, "", message);
}

void
od_test_check_status (const char     *file,
                      int             line,
                      OdTestResponse *response,
                      guint           status)
{
  g_autofree char *want = g_strdup_printf ("expected HTTP %u", status);

  if (response->status != status)
    fail_at (file, line, response, want);
}

/* A problem must be exactly what docs/protocol.md promises: the status,
 * the media type, and the RFC 9457 members with the `code`. */
void
od_test_check_problem (const char     *file,
                       int             line,
                       OdTestResponse *response,
                       guint           status,
                       const char     *code)
{
  g_autofree char *want = g_strdup_printf ("expected HTTP %u problem %s", status, code);
  g_autofree char *type = g_strconcat ("urn:orderdesk:problem:", code, NULL);
  const char *content_type = od_test_response_header (response, "Content-Type");
  JsonObject *object;

  if (response->status != status)
    fail_at (file, line, response, want);
  if (content_type == NULL || !g_str_has_prefix (content_type, "application/problem+json"))
    fail_at (file, line, response, "Content-Type is not application/problem+json");
  object = od_test_response_object (response);
  if (object == NULL)
    fail_at (file, line, response, "problem body is not a JSON object");
  if (g_strcmp0 (od_test_response_string (response, "code"), code) != 0)
    fail_at (file, line, response, want);
  if (!od_json_is_integer (json_object_get_member (object, "status"))
      || json_object_get_int_member (object, "status") != status)
    fail_at (file, line, response, "problem member status differs from the HTTP status");
  if (od_test_response_string (response, "title") == NULL
      || od_test_response_string (response, "detail") == NULL)
    fail_at (file, line, response, "problem lacks title or detail");
  if (g_strcmp0 (od_test_response_string (response, "type"), type) != 0)
    fail_at (file, line, response, "problem type is not urn:orderdesk:problem:<code>");
}

gboolean
od_test_json_equal (const char *a,
                    const char *b)
{
  g_autoptr(JsonNode) na = json_from_string (a, NULL);
  g_autoptr(JsonNode) nb = json_from_string (b, NULL);

  return na != NULL && nb != NULL && json_node_equal (na, nb);
}

/* ---- libsoup requests ---- */

static OdTestResponse *
request_valist (OdTestServer *server,
                SoupSession  *session,
                const char   *method,
                const char   *path,
                const char   *token,
                const char   *content_type,
                const char   *body,
                gssize        len,
                const char   *first_header,
                va_list       ap)
{
  g_autofree char *uri = g_strconcat (server->url, path, NULL);
  g_autoptr(SoupMessage) msg = soup_message_new (method, uri);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GError) error = NULL;
  OdTestResponse *response;
  SoupMessageHeaders *headers;

  if (msg == NULL)
    g_error ("cannot make a request for %s %s", method, uri);
  headers = soup_message_get_request_headers (msg);
  if (token != NULL)
    {
      g_autofree char *value = g_strconcat ("Bearer ", token, NULL);

      soup_message_headers_replace (headers, "Authorization", value);
    }
  for (const char *name = first_header; name != NULL; name = va_arg (ap, const char *))
    soup_message_headers_append (headers, name, va_arg (ap, const char *));
  if (body != NULL)
    {
      g_autoptr(GBytes) request_body = g_bytes_new (body, len < 0 ? strlen (body) : (gsize) len);

      soup_message_set_request_body_from_bytes (msg, content_type, request_body);
    }

  bytes = soup_session_send_and_read (session ? session : server->session, msg, NULL, &error);
  if (bytes == NULL)
    g_error ("%s %s: %s", method, path, error->message);
  response = g_new0 (OdTestResponse, 1);
  response->status = soup_message_get_status (msg);
  response->headers = soup_message_headers_ref (soup_message_get_response_headers (msg));
  response_set_body (response, g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
  return response;
}

OdTestResponse *
od_test_request (OdTestServer *server,
                 SoupSession  *session,
                 const char   *method,
                 const char   *path,
                 const char   *token,
                 const char   *content_type,
                 const char   *body,
                 gssize        len,
                 const char   *first_header,
                 ...)
{
  OdTestResponse *response;
  va_list ap;

  va_start (ap, first_header);
  response = request_valist (server, session, method, path, token, content_type, body, len,
                             first_header, ap);
  va_end (ap);
  return response;
}

OdTestResponse *
od_test_get (OdTestServer *server,
             const char   *token,
             const char   *path)
{
  return od_test_request (server, NULL, "GET", path, token, NULL, NULL, 0, NULL);
}

OdTestResponse *
od_test_command (OdTestServer *server,
                 SoupSession  *session,
                 const char   *token,
                 const char   *key,
                 const char   *body)
{
  if (key == NULL)
    return od_test_request (server, session, "POST", "/v1/commands", token, "application/json",
                            body, -1, NULL);
  return od_test_request (server, session, "POST", "/v1/commands", token, "application/json",
                          body, -1, "Idempotency-Key", key, NULL);
}

char *
od_test_new_key (void)
{
  static gint counter;

  return g_strdup_printf ("test-%08x-%d", g_random_int (), g_atomic_int_add (&counter, 1));
}

gint64
od_test_command_ok (OdTestServer *server,
                    SoupSession  *session,
                    const char   *token,
                    const char   *body,
                    gint64       *version)
{
  g_autofree char *key = od_test_new_key ();
  g_autoptr(OdTestResponse) response = od_test_command (server, session, token, key, body);

  if (response->status != 200)
    g_error ("command %s: HTTP %u %s", body, response->status, response->body);
  if (version != NULL)
    *version = od_test_response_int (response, "version");
  return od_test_response_int (response, "position");
}

char *
od_test_create_order (OdTestServer *server,
                      SoupSession  *session,
                      const char   *token,
                      gint64       *position)
{
  char *id = od_uuid_v7_new ();
  g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\","
                                           "\"data\":{\"customer_name\":\"Ada Lovelace\","
                                           "\"customer_email\":\"ada@example.org\",\"currency\":\"EUR\"}}",
                                           id);
  gint64 p = od_test_command_ok (server, session, token, body, NULL);

  if (position != NULL)
    *position = p;
  return id;
}

gint64
od_test_head (OdTestServer *server)
{
  g_autoptr(OdTestResponse) response = od_test_get (server, OD_TEST_VICTOR, "/v1/head");

  if (response->status != 200)
    g_error ("GET /v1/head: HTTP %u %s", response->status, response->body);
  return od_test_response_int (response, "head");
}

/* Every event after `after`, paged as a client does. */
GPtrArray *
od_test_events (OdTestServer *server,
                gint64        after)
{
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);

  for (;;)
    {
      g_autofree char *path = g_strdup_printf ("/v1/events?after=%" G_GINT64_FORMAT "&limit=10000",
                                               after);
      g_autoptr(OdTestResponse) response = od_test_get (server, OD_TEST_VICTOR, path);
      JsonObject *object = od_test_response_object (response);
      JsonArray *array;
      guint n;

      if (response->status != 200 || object == NULL
          || !json_object_has_member (object, "events"))
        g_error ("GET %s: HTTP %u %.500s", path, response->status, response->body);
      array = json_object_get_array_member (object, "events");
      n = json_array_get_length (array);
      for (guint i = 0; i < n; i++)
        {
          g_autoptr(GError) error = NULL;
          OdEvent *event = od_event_from_object (json_array_get_object_element (array, i), &error);

          g_assert_no_error (error);
          g_ptr_array_add (events, event);
          after = event->position;
        }
      if (n == 0)
        break;
    }
  return events;
}

OdEvent *
od_test_event_at (OdTestServer *server,
                  gint64        position)
{
  g_autofree char *path = g_strdup_printf ("/v1/events?after=%" G_GINT64_FORMAT "&limit=1",
                                           position - 1);
  g_autoptr(OdTestResponse) response = od_test_get (server, OD_TEST_VICTOR, path);
  g_autoptr(GError) error = NULL;
  JsonObject *object = od_test_response_object (response);
  JsonArray *array;
  OdEvent *event;

  od_test_assert_status (response, 200);
  g_assert_nonnull (object);
  array = json_object_get_array_member (object, "events");
  g_assert_cmpuint (json_array_get_length (array), ==, 1);
  event = od_event_from_object (json_array_get_object_element (array, 0), &error);
  g_assert_no_error (error);
  g_assert_cmpint (event->position, ==, position);
  return event;
}

/* Positions strictly increase and every prev names the event before. */
void
od_test_assert_chain (GPtrArray *events,
                      gint64     first_prev)
{
  gint64 last = first_prev;

  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *event = g_ptr_array_index (events, i);

      g_assert_cmpint (event->prev, ==, last);
      g_assert_cmpint (event->position, >, last);
      last = event->position;
    }
}

/* ---- raw TCP ---- */

GSocketConnection *
od_test_raw_connect (OdTestServer *server)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GError) error = NULL;
  GSocketConnection *connection;

  g_socket_client_set_enable_proxy (client, FALSE);
  connection = g_socket_client_connect_to_host (client, server->host, server->port, NULL, &error);
  g_assert_no_error (error);
  return connection;
}

/* Writes what it can; a server that closes early (e.g. after a 413) is
 * not an error here, the response tells. */
gboolean
od_test_raw_write (GSocketConnection *connection,
                   const void        *data,
                   gsize              len)
{
  GSocket *socket = g_socket_connection_get_socket (connection);
  const char *p = data;

  g_socket_set_timeout (socket, 30 * slowdown ());
  while (len > 0)
    {
      gssize n = g_socket_send_with_blocking (socket, p, len, TRUE, NULL, NULL);

      if (n <= 0)
        return FALSE;
      p += n;
      len -= n;
    }
  return TRUE;
}

static gssize
find_header_end (GByteArray *buf)
{
  for (guint i = 0; i + 3 < buf->len; i++)
    if (memcmp (buf->data + i, "\r\n\r\n", 4) == 0)
      return i + 4;
  return -1;
}

/* Returns the length of a complete chunked body at `data`, the decoded
 * body in `out`, or -1 when more is needed. */
static gssize
dechunk (const guint8 *data,
         gsize         len,
         GByteArray   *out)
{
  gsize pos = 0;

  g_byte_array_set_size (out, 0);
  for (;;)
    {
      const guint8 *eol = NULL;
      g_autofree char *size_text = NULL;
      guint64 size;

      for (gsize i = pos; i + 1 < len && eol == NULL; i++)
        if (data[i] == '\r' && data[i + 1] == '\n')
          eol = data + i;
      if (eol == NULL)
        return -1;
      size_text = g_strndup ((const char *) data + pos, eol - (data + pos));
      size = g_ascii_strtoull (size_text, NULL, 16);
      pos = eol - data + 2;
      if (size == 0)
        {
          /* No trailers are expected: the final CRLF. */
          if (len - pos < 2)
            return -1;
          return pos + 2;
        }
      if (len - pos < size + 2)
        return -1;
      g_byte_array_append (out, data + pos, size);
      pos += size + 2;
    }
}

OdTestResponse *
od_test_raw_read_response (GSocketConnection *connection,
                           guint              timeout_s)
{
  GSocket *socket = g_socket_connection_get_socket (connection);
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autoptr(GByteArray) decoded = g_byte_array_new ();
  OdTestResponse *response = g_new0 (OdTestResponse, 1);
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_s * slowdown () * G_USEC_PER_SEC;
  gssize header_end = -1;
  gboolean eof = FALSE;

  response->headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_RESPONSE);
  g_socket_set_timeout (socket, 1);
  for (;;)
    {
      guint8 chunk[65536];
      gssize n;
      g_autoptr(GError) error = NULL;

      if (header_end < 0)
        header_end = find_header_end (buf);
      if (header_end >= 0)
        {
          const char *length_text;
          const char *encoding;

          if (response->status == 0)
            {
              SoupHTTPVersion version;

              if (!soup_headers_parse_response ((const char *) buf->data, header_end,
                                                response->headers, &version,
                                                &response->status, NULL))
                {
                  g_test_message ("unparsable response head: %.*s", (int) header_end, buf->data);
                  response->status = 0;
                  break;
                }
            }
          length_text = soup_message_headers_get_one (response->headers, "Content-Length");
          encoding = soup_message_headers_get_one (response->headers, "Transfer-Encoding");
          if (length_text != NULL)
            {
              guint64 length = g_ascii_strtoull (length_text, NULL, 10);

              if ((guint64) (buf->len - header_end) >= length)
                {
                  response_set_body (response, (const char *) buf->data + header_end, length);
                  return response;
                }
            }
          else if (encoding != NULL && g_ascii_strcasecmp (encoding, "chunked") == 0)
            {
              if (dechunk (buf->data + header_end, buf->len - header_end, decoded) >= 0)
                {
                  response_set_body (response, (const char *) decoded->data, decoded->len);
                  return response;
                }
            }
          else if (eof || response->status == 204 || response->status == 304)
            {
              response_set_body (response, (const char *) buf->data + header_end,
                                 buf->len - header_end);
              return response;
            }
        }
      if (eof || g_get_monotonic_time () > deadline)
        break;
      n = g_socket_receive (socket, (char *) chunk, sizeof chunk, NULL, &error);
      if (n > 0)
        g_byte_array_append (buf, chunk, n);
      else if (n == 0)
        eof = TRUE;
      else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        eof = TRUE;
    }
  if (header_end < 0 || response->body == NULL)
    {
      /* No complete answer: status 0 unless the head was read. */
      if (header_end < 0)
        response->status = 0;
      response_set_body (response, "", 0);
    }
  return response;
}

OdTestResponse *
od_test_raw (OdTestServer *server,
             const void   *request,
             gsize         len,
             guint         timeout_s)
{
  g_autoptr(GSocketConnection) connection = od_test_raw_connect (server);

  od_test_raw_write (connection, request, len);
  return od_test_raw_read_response (connection, timeout_s);
}

/* One request with exactly the header lines given ("Name: value\r\n"
 * each), plus Host, Connection: close and, with a body, Content-Length. */
OdTestResponse *
od_test_raw_request (OdTestServer *server,
                     const char   *method,
                     const char   *path,
                     const char   *headers,
                     const char   *body,
                     gssize        len)
{
  g_autoptr(GString) request = g_string_new (NULL);

  if (body != NULL && len < 0)
    len = strlen (body);
  g_string_append_printf (request, "%s %s HTTP/1.1\r\nHost: %s:%u\r\n%s", method, path,
                          server->host, server->port, headers ? headers : "");
  if (body != NULL)
    g_string_append_printf (request, "Content-Length: %" G_GSSIZE_FORMAT "\r\n", len);
  g_string_append (request, "Connection: close\r\n\r\n");
  if (body != NULL)
    g_string_append_len (request, body, len);
  return od_test_raw (server, request->str, request->len, 30);
}

/* ---- the core's load and checks ---- */

/* Every event of the log, through GET /v1/events pages as the console's
 * verify reads them. */
GPtrArray *
od_test_fetch_events (OdTestServer *server)
{
  return od_test_read_log (server->session, server->url, OD_TEST_VIEWER_TOKEN);
}

guint
od_test_post_command (OdTestServer  *server,
                      SoupSession   *session,
                      const char    *key,
                      const char    *body,
                      char         **answer)
{
  g_autofree char *uri = g_strconcat (server->url, "/v1/commands", NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("POST", uri);
  g_autoptr(GBytes) req = g_bytes_new (body, strlen (body));
  g_autoptr(GBytes) resp = NULL;
  g_autoptr(GError) error = NULL;

  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer " OD_TEST_OPERATOR_TOKEN);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Idempotency-Key", key);
  soup_message_set_request_body_from_bytes (msg, "application/json", req);
  resp = soup_session_send_and_read (session ? session : server->session, msg, NULL, &error);
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
   * threads.  The harness's (no proxy), as every other request here. */
  g_autoptr(SoupSession) session = od_test_session_new ();

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
          guint status = od_test_post_command (job->server, session, key, steps[k], &answer);

          /* The server went away (tests that kill it); said on stderr,
           * which meson shows when the test fails, as a server that
           * stops answering makes every command wait for its timeout. */
          if (status != 200)
            {
              g_printerr ("od_test_load: %u (%s) for %s\n", status, answer, steps[k]);
              break;
            }
          job->max_position = MAX (job->max_position, position_of (answer));
        }
    }
  return NULL;
}

gint64
od_test_load (OdTestServer *server,
              guint         n_orders,
              guint         threads)
{
  g_autofree GThread **t = g_new0 (GThread *, threads);
  g_autofree LoadJob *jobs = g_new0 (LoadJob, threads);
  gint64 max = 0;

  for (guint i = 0; i < threads; i++)
    {
      jobs[i].server = server;
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

/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Every route against every kind of token, from a table; and no token,
 * good or bad, ever appears in the server's log or in an answer. */

#include "od-rel-server.h"

#include <json-glib/json-glib.h>
#include <string.h>

typedef enum
{
  TOKEN_NONE,
  TOKEN_MALFORMED,
  TOKEN_UNKNOWN,
  TOKEN_VIEWER,
  TOKEN_OPERATOR,
  N_TOKEN_STATES,
} TokenState;

static const char *state_names[] = { "none", "malformed", "unknown", "viewer", "operator" };

/* The Authorization headers tried for each state; NULL means none sent. */
static const char *none_headers[] = { NULL };
static const char *malformed_headers[] = {
  "Bearer",                                    /* no token */
  "Bearer ",                                   /* empty token */
  "Bearer two words-bad-token-61c",            /* space inside */
  "Basic cmVsLW9wZXJhdG9yOng=",                /* another scheme */
  "bearer-less-token-84d1",                    /* no scheme */
  "Bearer \t" OD_REL_OPERATOR,                 /* a tab is not printable */
  NULL,                                        /* + one of 513 characters, added below */
};
static const char *unknown_headers[] = {
  "Bearer unknown-token-0b7e41",
  "Bearer " OD_REL_OPERATOR "x",               /* one character more */
  "Bearer " OD_REL_VIEWER "\x7e",
  NULL,
};
static const char *viewer_headers[] = { "Bearer " OD_REL_VIEWER, NULL };
static const char *operator_headers[] = { "Bearer " OD_REL_OPERATOR, NULL };

typedef struct
{
  const char *method;
  const char *path;
  gboolean    body;     /* send a valid command */
  gboolean    stream;   /* read the headers only */
  guint       status[N_TOKEN_STATES];
} Route;

static const Route routes[] = {
  { "POST", "/v1/commands", TRUE, FALSE, { 401, 401, 401, 403, 200 } },
  { "GET", "/v1/events", FALSE, FALSE, { 401, 401, 401, 200, 200 } },
  { "GET", "/v1/events?after=0&limit=5", FALSE, FALSE, { 401, 401, 401, 200, 200 } },
  { "GET", "/v1/events/stream", FALSE, TRUE, { 401, 401, 401, 200, 200 } },
  { "GET", "/v1/events/stream?after=0", FALSE, TRUE, { 401, 401, 401, 200, 200 } },
  { "GET", "/v1/head", FALSE, FALSE, { 401, 401, 401, 200, 200 } },
  { "GET", "/v1/health", FALSE, FALSE, { 200, 200, 200, 200, 200 } },
};

static char *long_header;

static char *
new_command (void)
{
  g_autofree char *id = NULL;
  guint32 r[4] = { g_random_int (), g_random_int (), g_random_int (), g_random_int () };

  id = g_strdup_printf ("%08x-%04x-7%03x-8%03x-%04x%08x", r[0], r[1] >> 16, r[1] & 0xfff,
                        r[2] & 0xfff, r[2] >> 16, r[3]);
  return g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\","
                          "\"data\":{\"customer_name\":\"Ada\",\"customer_email\":\"ada@example.com\","
                          "\"currency\":\"EUR\"}}", id);
}

/* Sends one request with the given Authorization header (or none) and
 * returns the status; *body gets the answer (empty for a stream). */
static guint
send (SoupSession  *session,
      OdRelServer  *server,
      const Route  *route,
      const char   *authorization,
      char        **body)
{
  g_autofree char *url = g_strconcat (od_rel_server_url (server), route->path, NULL);
  g_autoptr(SoupMessage) msg = soup_message_new (route->method, url);
  SoupMessageHeaders *headers = soup_message_get_request_headers (msg);
  g_autoptr(GError) error = NULL;

  if (authorization != NULL)
    soup_message_headers_replace (headers, "Authorization", authorization);
  if (route->body)
    {
      g_autofree char *json = new_command ();
      g_autofree char *key = g_strdup_printf ("access-%08x", g_random_int ());
      g_autoptr(GBytes) bytes = g_bytes_new (json, strlen (json));

      soup_message_headers_replace (headers, "Idempotency-Key", key);
      soup_message_set_request_body_from_bytes (msg, "application/json", bytes);
    }
  if (route->stream)
    {
      g_autoptr(GInputStream) in = soup_session_send (session, msg, NULL, &error);
      char buffer[4096];
      gssize n;

      g_assert_no_error (error);
      /* A refusal is a short problem body; a stream starts with retry. */
      n = g_input_stream_read (in, buffer, sizeof buffer - 1, NULL, &error);
      g_assert_no_error (error);
      *body = g_strndup (buffer, MAX (n, 0));
      g_input_stream_close (in, NULL, NULL);
    }
  else
    {
      g_autoptr(GBytes) bytes = soup_session_send_and_read (session, msg, NULL, &error);

      g_assert_no_error (error);
      *body = g_strndup (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
    }

  if (soup_message_get_status (msg) == 401)
    {
      const char *challenge = soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                                            "WWW-Authenticate");

      g_assert_nonnull (challenge);
      g_assert_true (g_str_has_prefix (challenge, "Bearer"));
    }
  return soup_message_get_status (msg);
}

static void
check_problem (const char *body,
               guint       status)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  JsonObject *object;

  json_parser_load_from_data (parser, body, -1, &error);
  g_assert_no_error (error);
  object = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpint (json_object_get_int_member (object, "status"), ==, status);
  g_assert_cmpstr (json_object_get_string_member (object, "code"), ==,
                   status == 401 ? "unauthorized" : "forbidden");
}

/* The secret part of an Authorization header, for the leak checks. */
static const char *
secret_of (const char *authorization)
{
  const char *space = strrchr (authorization, ' ');
  const char *secret = space ? space + 1 : authorization;

  return strlen (secret) >= 8 ? secret : NULL;
}

static void
test_routes_by_token (void)
{
  g_autoptr(OdRelServer) server = od_rel_server_new ("--rate-limit", "0", NULL);
  g_autoptr(SoupSession) session = soup_session_new_with_options ("timeout", 30, NULL);
  g_autoptr(GPtrArray) secrets = g_ptr_array_new ();
  const char **headers_by_state[N_TOKEN_STATES] = {
    none_headers, malformed_headers, unknown_headers, viewer_headers, operator_headers,
  };
  guint checked = 0;
  guint accepted = 0;
  g_autofree char *log = NULL;

  for (guint r = 0; r < G_N_ELEMENTS (routes); r++)
    for (guint s = 0; s < N_TOKEN_STATES; s++)
      {
        const char **headers = headers_by_state[s];
        guint n = s == TOKEN_NONE ? 1 : g_strv_length ((char **) headers);

        if (s == TOKEN_MALFORMED)
          n++; /* the long one */
        for (guint h = 0; h < n; h++)
          {
            const char *authorization = s == TOKEN_MALFORMED && h == n - 1 ? long_header : headers[h];
            g_autofree char *body = NULL;
            guint status = send (session, server, &routes[r], authorization, &body);

            g_test_message ("%s %s, token %s (%.40s): %u", routes[r].method, routes[r].path,
                            state_names[s], authorization ? authorization : "-", status);
            g_assert_cmpuint (status, ==, routes[r].status[s]);
            if (status == 401 || status == 403)
              check_problem (body, status);
            if (routes[r].body && status == 200)
              accepted++;
            if (authorization != NULL && secret_of (authorization) != NULL)
              {
                /* No answer repeats the token it was sent. */
                g_assert_null (strstr (body, secret_of (authorization)));
                g_ptr_array_add (secrets, (gpointer) secret_of (authorization));
              }
            checked++;
          }
      }
  g_assert_cmpuint (checked, ==, G_N_ELEMENTS (routes) * 13);

  /* A token in the query string is not a credential. */
  {
    g_autofree char *url = g_strconcat (od_rel_server_url (server),
                                        "/v1/head?access_token=" OD_REL_VIEWER, NULL);
    g_autoptr(GError) error = NULL;

    g_assert_cmpuint (od_rel_send (session, "GET", url, NULL, NULL, NULL, &error), ==, 401);
    g_assert_no_error (error);
  }

  /* Only the accepted commands changed anything, and each event names
   * the operator's token name (never the token) as its actor. */
  {
    g_autofree char *url = g_strconcat (od_rel_server_url (server), "/v1/events", NULL);
    g_autoptr(GBytes) body = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonParser) parser = json_parser_new ();
    JsonArray *events;

    g_assert_cmpuint (od_rel_send (session, "GET", url, OD_REL_VIEWER, NULL, &body, &error), ==, 200);
    g_assert_no_error (error);
    json_parser_load_from_data (parser, g_bytes_get_data (body, NULL), g_bytes_get_size (body),
                                &error);
    g_assert_no_error (error);
    events = json_object_get_array_member (json_node_get_object (json_parser_get_root (parser)),
                                           "events");
    g_assert_cmpuint (accepted, ==, 1);
    g_assert_cmpuint (json_array_get_length (events), ==, accepted);
    for (guint i = 0; i < json_array_get_length (events); i++)
      g_assert_cmpstr (json_object_get_string_member (json_array_get_object_element (events, i),
                                                      "actor"), ==, "olga");
  }

  od_rel_server_stop (server);
  log = od_rel_server_log (server);
  g_assert_cmpuint (strlen (log), >, 0);
  for (guint i = 0; i < secrets->len; i++)
    {
      if (strstr (log, g_ptr_array_index (secrets, i)) != NULL)
        g_error ("the server log holds the token %s:\n%s",
                 (char *) g_ptr_array_index (secrets, i), log);
    }
  g_assert_null (strstr (log, OD_REL_OPERATOR));
  g_assert_null (strstr (log, OD_REL_VIEWER));
  g_assert_null (strstr (log, "unknown-token-0b7e41"));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  long_header = g_strconcat ("Bearer ", OD_REL_OPERATOR, NULL);
  {
    g_autoptr(GString) text = g_string_new ("Bearer ");

    while (text->len < strlen ("Bearer ") + 513)
      g_string_append_c (text, 'a' + text->len % 26);
    g_free (long_header);
    long_header = g_string_free (g_steal_pointer (&text), FALSE);
  }
  g_test_add_func ("/access/routes-by-token", test_routes_by_token);
  return g_test_run ();
}

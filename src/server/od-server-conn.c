/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Connections of OdServer: accepted here, not by libsoup, each given to
 * libsoup wrapped in an OdConnStream; the cap on open connections;
 * limits judged from a request's headers (their size, Content-Length),
 * the request, idle and write-stall timeouts; and answering and closing
 * a connection outside libsoup (drain_and_close). */
#include "od-server-private.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEADER_BYTES   (16 * 1024)
/* Connections refused beyond the cap that are still being answered. */
#define REFUSING_MAX       64
#define ACCEPT_RETRY_MS    100
/* How long what a client still sends after its answer is read and
 * dropped, at most, before the connection closes. */
#define REFUSED_DRAIN_MS   1000
#define REJECTED_DRAIN_MS  2000
#define DRAIN_MAX_BYTES    (16 * 1024 * 1024)

/* Connections                                                         */

/* One accepted connection, from accept() to close.  libsoup 3.2 is given
 * each one through soup_server_accept_iostream() wrapped in an
 * OdConnStream: its own listener drops its listening source for good
 * when accept() fails (EMFILE), and it leaks idle keep-alive connections
 * whose peer closed. */
typedef struct
{
  OdServer          *server;
  GSocket           *socket;
  GIOStream         *base;      /* GSocketConnection or GTlsServerConnection */
  OdConnStream      *stream;    /* what libsoup has; NULL before that */
  GSocketAddress    *remote;
  GCancellable      *handshake;
  guint              handshake_timeout_id;
  SoupServerMessage *last;      /* the last finished request, while idle */
  gboolean           idle;
  gint64             idle_since;
  gboolean           stall_logged;
} Conn;

static void
conn_free (Conn *conn)
{
  OdServer *self = conn->server;

  g_hash_table_remove (self->conns, conn);
  g_clear_handle_id (&conn->handshake_timeout_id, g_source_remove);
  g_clear_object (&conn->handshake);
  g_clear_object (&conn->last);
  if (conn->remote != NULL)
    g_object_set_data (G_OBJECT (conn->remote), "od-conn", NULL);
  g_clear_object (&conn->remote);
  if (conn->stream != NULL)
    {
      g_signal_handlers_disconnect_by_data (conn->stream, conn);
      g_clear_object (&conn->stream);
    }
  if (conn->base != NULL && !g_io_stream_is_closed (conn->base))
    g_io_stream_close (conn->base, NULL, NULL);
  g_clear_object (&conn->base);
  g_clear_object (&conn->socket);
  g_free (conn);
}

/* The connection a request arrived on.  libsoup keeps the remote address
 * object it was given with the stream, and hands it back per request. */
static Conn *
conn_for_msg (SoupServerMessage *msg)
{
  GSocketAddress *remote = soup_server_message_get_remote_address (msg);

  return remote != NULL ? g_object_get_data (G_OBJECT (remote), "od-conn") : NULL;
}

static GSocket *
msg_socket (SoupServerMessage *msg)
{
  Conn *conn = conn_for_msg (msg);

  return conn != NULL ? conn->socket : NULL;
}

/* Ends a connection at once: libsoup's next read or write fails, and it
 * cleans up as for any client that went away. */
void
od_server_msg_shutdown (SoupServerMessage *msg)
{
  GSocket *socket = msg_socket (msg);

  if (socket != NULL && !g_socket_is_closed (socket))
    g_socket_shutdown (socket, TRUE, TRUE, NULL);
}

/* Writes a whole short answer without waiting, through TLS when the
 * connection has it; what does not fit is dropped (the connection is
 * closed next anyway). */
static void
msg_write_raw (SoupServerMessage *msg,
               const char        *response)
{
  Conn *conn = conn_for_msg (msg);
  GOutputStream *out;

  if (conn == NULL || conn->base == NULL || g_io_stream_is_closed (conn->base))
    return;
  out = g_io_stream_get_output_stream (conn->base);
  g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (out), response,
                                              strlen (response), NULL, NULL);
}

/* The response just set has a body: libsoup writes it right after the
 * headers (not for HEAD, whose answer has none). */
void
od_server_msg_body_follows (SoupServerMessage *msg)
{
  Conn *conn;

  if (strcmp (soup_server_message_get_method (msg), SOUP_METHOD_HEAD) == 0)
    return;
  conn = conn_for_msg (msg);
  if (conn != NULL && conn->stream != NULL)
    od_conn_stream_set_body_follows (conn->stream);
}

static void
conn_stream_closed (OdConnStream *stream,
                    Conn         *conn)
{
  conn_free (conn);
}

/* Takes an idle connection back from libsoup and closes it. */
static void
conn_close_idle (Conn *conn)
{
  g_autoptr(GIOStream) stolen = NULL;

  if (conn->last != NULL)
    {
      g_autoptr(SoupServerMessage) last = g_steal_pointer (&conn->last);

      stolen = soup_server_message_steal_connection (last);
    }
  if (stolen != NULL)
    g_io_stream_close (stolen, NULL, NULL);
  else if (conn->socket != NULL && !g_socket_is_closed (conn->socket))
    g_socket_shutdown (conn->socket, TRUE, TRUE, NULL);
}

static void
conn_peer_gone (OdConnStream *stream,
                Conn         *conn)
{
  conn_close_idle (conn);
}

static void
conn_hand_over (Conn *conn)
{
  OdServer *self = conn->server;
  g_autoptr(GSocketAddress) local = g_socket_get_local_address (conn->socket, NULL);
  g_autoptr(GError) error = NULL;

  conn->remote = g_socket_get_remote_address (conn->socket, NULL);
  if (local == NULL || conn->remote == NULL)
    {
      conn_free (conn);
      return;
    }
  conn->stream = od_conn_stream_new (conn->base);
  g_signal_connect (conn->stream, "closed", G_CALLBACK (conn_stream_closed), conn);
  g_signal_connect (conn->stream, "peer-gone", G_CALLBACK (conn_peer_gone), conn);
  g_object_set_data (G_OBJECT (conn->remote), "od-conn", conn);
  if (!soup_server_accept_iostream (self->soup, G_IO_STREAM (conn->stream), local, conn->remote,
                                    &error))
    {
      g_warning ("a connection could not be served: %s", error->message);
      conn_free (conn);
    }
}

static gboolean
conn_handshake_timeout (gpointer data)
{
  Conn *conn = data;

  conn->handshake_timeout_id = 0;
  g_cancellable_cancel (conn->handshake);
  return G_SOURCE_REMOVE;
}

static void
conn_handshake_done (GObject      *source,
                     GAsyncResult *res,
                     gpointer      user_data)
{
  Conn *conn = user_data;
  g_autoptr(OdServer) self = conn->server;

  if (!g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), res, NULL)
      || self->stopping)
    {
      conn_free (conn);
      return;
    }
  g_clear_handle_id (&conn->handshake_timeout_id, g_source_remove);
  g_clear_object (&conn->handshake);
  conn_hand_over (conn);
}

/* A connection answered and closed outside libsoup: one beyond the
 * connection cap (503), or a request refused from its headers alone
 * (400, 413, 431), whose body libsoup would otherwise go on reading.
 * The answer is written, the sending side shut down, and what the client
 * still sends is read and dropped for a moment (DRAIN_MAX_BYTES at most)
 * before the connection is closed, so that closing does not reset it
 * before the client has read the answer. */
typedef struct
{
  OdServer     *counted;    /* counts in its n_refusing, when refused at accept */
  GIOStream    *stream;
  GSocket      *socket;
  GCancellable *cancellable;
  char         *response;
  guint         drain_ms;
  guint8        buf[16384];
  gsize         drained;
  guint         timeout_id;
} Drain;

static void
drain_free (Drain *drain)
{
  if (drain->counted != NULL)
    {
      drain->counted->n_refusing--;
      g_object_unref (drain->counted);
    }
  g_clear_handle_id (&drain->timeout_id, g_source_remove);
  g_io_stream_close (drain->stream, NULL, NULL);
  g_clear_object (&drain->socket);
  g_object_unref (drain->cancellable);
  g_object_unref (drain->stream);
  g_free (drain->response);
  g_free (drain);
}

static gboolean
drain_timeout (gpointer data)
{
  Drain *drain = data;

  /* The pending read ends with G_IO_ERROR_CANCELLED and frees it. */
  drain->timeout_id = 0;
  g_cancellable_cancel (drain->cancellable);
  return G_SOURCE_REMOVE;
}

static void
drain_read (Drain *drain);

static void
drain_read_done (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  Drain *drain = user_data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, NULL);

  drain->drained += MAX (n, 0);
  if (n <= 0 || drain->drained > DRAIN_MAX_BYTES)
    {
      drain_free (drain);
      return;
    }
  drain_read (drain);
}

static void
drain_read (Drain *drain)
{
  g_input_stream_read_async (g_io_stream_get_input_stream (drain->stream), drain->buf,
                             sizeof drain->buf, G_PRIORITY_LOW, drain->cancellable,
                             drain_read_done, drain);
}

static void
drain_written (GObject      *source,
               GAsyncResult *res,
               gpointer      user_data)
{
  Drain *drain = user_data;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL, NULL))
    {
      drain_free (drain);
      return;
    }
  /* End of the answer for the client; what it still sends is read and
   * dropped for a moment at most, then the connection is closed. */
  if (drain->socket != NULL)
    g_socket_shutdown (drain->socket, FALSE, TRUE, NULL);
  drain->timeout_id = g_timeout_add (drain->drain_ms, drain_timeout, drain);
  drain_read (drain);
}

/* A whole HTTP/1.1 answer for a connection that closes after it; takes
 * the problem. */
static char *
raw_response (OdProblem *problem)
{
  g_autofree char *body = od_problem_to_json (problem);
  char *text = g_strdup_printf ("HTTP/1.1 %u %s\r\nContent-Type: application/problem+json\r\n"
                                "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                                problem->status, problem->title, strlen (body), body);

  od_problem_free (problem);
  return text;
}

/* Answers PROBLEM on STREAM (TLS or not) and closes it as above; takes
 * the stream and the problem. */
static void
drain_and_close (GIOStream *stream,
                 GSocket   *socket,
                 OdProblem *problem,
                 guint      drain_ms,
                 OdServer  *counted)
{
  Drain *drain = g_new0 (Drain, 1);

  drain->stream = stream;
  drain->socket = socket ? g_object_ref (socket) : NULL;
  drain->cancellable = g_cancellable_new ();
  drain->response = raw_response (problem);
  drain->drain_ms = drain_ms;
  if (counted != NULL)
    {
      drain->counted = g_object_ref (counted);
      counted->n_refusing++;
    }
  g_output_stream_write_all_async (g_io_stream_get_output_stream (stream), drain->response,
                                   strlen (drain->response), G_PRIORITY_DEFAULT, NULL,
                                   drain_written, drain);
}

/* Beyond the cap a connection gets a short 503 (plain HTTP) or is
 * closed at once (HTTPS: a handshake is what the cap saves). */
static void
refuse_connection (OdServer *self,
                   GSocket  *socket)
{
  OdProblem *problem;

  if (self->certificate != NULL || self->n_refusing >= REFUSING_MAX)
    {
      g_socket_close (socket, NULL);
      return;
    }
  problem = od_problem_new (OD_PROBLEM_UNAVAILABLE,
                            "The server has %u open connections, its limit; retry shortly.",
                            self->max_conns);
  problem->retry_after = 1;
  drain_and_close (G_IO_STREAM (g_socket_connection_factory_create_connection (socket)), socket,
                   problem, REFUSED_DRAIN_MS, self);
}

static void
accept_connection (OdServer *self,
                   GSocket  *socket)
{
  Conn *conn;

  if (g_hash_table_size (self->conns) >= self->max_conns || self->stopping)
    {
      refuse_connection (self, socket);
      return;
    }
  conn = g_new0 (Conn, 1);
  conn->server = self;
  conn->socket = g_object_ref (socket);
  g_hash_table_add (self->conns, conn);
  g_socket_set_option (socket, IPPROTO_TCP, TCP_NODELAY, TRUE, NULL);
  conn->base = G_IO_STREAM (g_socket_connection_factory_create_connection (socket));
  if (self->certificate == NULL)
    {
      conn_hand_over (conn);
      return;
    }

  {
    g_autoptr(GError) error = NULL;
    GIOStream *tls = g_tls_server_connection_new (conn->base, self->certificate, &error);

    if (tls == NULL)
      {
        g_warning ("TLS: %s", error->message);
        conn_free (conn);
        return;
      }
    g_tls_connection_set_require_close_notify (G_TLS_CONNECTION (tls), FALSE);
    g_object_unref (conn->base);
    conn->base = tls;
    /* A client that never finishes its handshake gets the request
     * timeout, like one that never sends its request. */
    conn->handshake = g_cancellable_new ();
    conn->handshake_timeout_id = g_timeout_add (self->request_timeout_usec / 1000,
                                                conn_handshake_timeout, conn);
    g_object_ref (self);
    g_tls_connection_handshake_async (G_TLS_CONNECTION (tls), G_PRIORITY_DEFAULT,
                                      conn->handshake, conn_handshake_done, conn);
  }
}

static gboolean accept_ready (GSocket *listener, GIOCondition condition, gpointer data);

static void
accept_arm (OdServer *self)
{
  self->accept_source = g_socket_create_source (self->listen_socket, G_IO_IN, NULL);
  g_source_set_callback (self->accept_source, G_SOURCE_FUNC (accept_ready), self, NULL);
  g_source_attach (self->accept_source, NULL);
}

static gboolean
accept_retry (gpointer data)
{
  OdServer *self = data;

  self->accept_retry_id = 0;
  accept_arm (self);
  return G_SOURCE_REMOVE;
}

static gboolean
accept_ready (GSocket      *listener,
              GIOCondition  condition,
              gpointer      data)
{
  OdServer *self = data;

  for (guint i = 0; i < 64; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GSocket) socket = g_socket_accept (listener, NULL, &error);

      if (socket != NULL)
        {
          accept_connection (self, socket);
          continue;
        }
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          /* The episode ends when the backlog is taken in, not at the
           * first descriptor freed: under a flood one accept can succeed
           * between failures, and the log would flap. */
          if (self->accept_failing)
            {
              g_message ("accepting connections again (%u open)",
                         g_hash_table_size (self->conns));
              self->accept_failing = FALSE;
            }
          break;
        }
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES)
          || error->code == G_IO_ERROR_NO_SPACE || error->code == G_IO_ERROR_FAILED)
        {
          /* Out of file descriptors (or kernel memory): the pending
           * connections wait in the backlog while open ones finish;
           * accept again shortly, never busy-loop, log once. */
          if (!self->accept_failing)
            g_warning ("accept: %s (%u connections open); retrying every %d ms",
                       error->message, g_hash_table_size (self->conns), ACCEPT_RETRY_MS);
          self->accept_failing = TRUE;
          g_source_destroy (self->accept_source);
          g_clear_pointer (&self->accept_source, g_source_unref);
          self->accept_retry_id = g_timeout_add (ACCEPT_RETRY_MS, accept_retry, self);
          return G_SOURCE_REMOVE;
        }
      /* ECONNABORTED and the like concern one connection only. */
    }
  return G_SOURCE_CONTINUE;
}

/* Raises the soft RLIMIT_NOFILE to the hard limit and returns what is in
 * effect. */
static guint64
raise_fd_limit (void)
{
  struct rlimit limit;

  if (getrlimit (RLIMIT_NOFILE, &limit) != 0)
    return 1024;
  if (limit.rlim_cur < limit.rlim_max)
    {
      struct rlimit raised = limit;

      raised.rlim_cur = limit.rlim_max == RLIM_INFINITY ? 1024 * 1024 : limit.rlim_max;
      if (setrlimit (RLIMIT_NOFILE, &raised) == 0)
        limit = raised;
    }
  return limit.rlim_cur == RLIM_INFINITY ? 1024 * 1024 : limit.rlim_cur;
}


/* A request refused from its headers alone: answered on the raw
 * connection, taken from libsoup, which is then closed. */
static void
reject_connection (OdServer          *server,
                   SoupServerMessage *msg,
                   OdProblem         *problem)
{
  GSocket *socket = msg_socket (msg);

  g_hash_table_remove (server->requests, msg);
  drain_and_close (soup_server_message_steal_connection (msg), socket, problem,
                   REJECTED_DRAIN_MS, NULL);
}

static void
request_got_chunk (SoupServerMessage *msg,
                   GBytes            *chunk,
                   gpointer           user_data)
{
  SoupMessageBody *body = soup_server_message_get_request_body (msg);

  /* A chunked body has no length up front.  Once it is too large it is no
   * longer kept, the 413 goes straight to the socket (libsoup has written
   * nothing for this request yet) and the sending side is closed; the
   * request timeout ends the connection if the client keeps sending. */
  if (body->length > OD_MAX_BODY && !od_server_request_info (msg)->too_large)
    {
      GSocket *socket = msg_socket (msg);

      od_server_request_info (msg)->too_large = TRUE;
      soup_message_body_set_accumulate (body, FALSE);
      soup_message_body_truncate (body);
      if (socket != NULL)
        {
          g_autofree char *response = raw_response (
            od_problem_new (OD_PROBLEM_PAYLOAD_TOO_LARGE, "The body is over %d bytes.",
                            OD_MAX_BODY));

          /* Through TLS when the connection has it. */
          msg_write_raw (msg, response);
          g_socket_shutdown (socket, FALSE, TRUE, NULL);
        }
    }
}

static void
early_handler (SoupServer        *server,
               SoupServerMessage *msg,
               const char        *path,
               GHashTable        *query,
               gpointer           user_data)
{
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  SoupMessageHeadersIter iter;
  const char *name, *value;
  gsize header_bytes = 0;

  od_server_request_info (msg)->headers_read = g_get_monotonic_time ();
  soup_message_headers_iter_init (&iter, headers);
  while (soup_message_headers_iter_next (&iter, &name, &value))
    header_bytes += strlen (name) + strlen (value) + 4;
  if (header_bytes > MAX_HEADER_BYTES)
    {
      reject_connection (user_data, msg, od_problem_new (OD_PROBLEM_HEADERS_TOO_LARGE,
                                            "Request headers are limited to %d bytes.",
                                            MAX_HEADER_BYTES));
      return;
    }

  /* Content-Length is read here, from the raw header, before libsoup
   * uses its own reading of it (which takes "-5" or 2^63 for a length
   * and then reads a body of a different size: request smuggling).  It
   * must be one run of decimal digits; two of them, or one together
   * with Transfer-Encoding, would let two parsers disagree on where the
   * body ends.  Any refusal closes the connection. */
  {
    SoupMessageHeadersIter it;
    const char *hname, *hvalue;
    g_autoptr(GPtrArray) lengths = g_ptr_array_new ();
    guint n_encoding = 0;
    guint64 length = 0;
    OdContentLength verdict;

    soup_message_headers_iter_init (&it, headers);
    while (soup_message_headers_iter_next (&it, &hname, &hvalue))
      {
        if (g_ascii_strcasecmp (hname, "Content-Length") == 0)
          g_ptr_array_add (lengths, (gpointer) hvalue);
        else if (g_ascii_strcasecmp (hname, "Transfer-Encoding") == 0)
          n_encoding++;
      }
    verdict = od_http_content_length ((const char * const *) lengths->pdata, lengths->len,
                                      OD_MAX_BODY, &length);
    if (verdict == OD_CONTENT_LENGTH_MALFORMED
        || (verdict != OD_CONTENT_LENGTH_NONE && n_encoding > 0) || n_encoding > 1)
      {
        reject_connection (user_data, msg,
                           od_problem_new (OD_PROBLEM_MALFORMED,
                                           "Content-Length must be one decimal number, and not "
                                           "given together with Transfer-Encoding."));
        return;
      }
    if (verdict == OD_CONTENT_LENGTH_TOO_LARGE)
      {
        reject_connection (user_data, msg,
                           od_problem_new (OD_PROBLEM_PAYLOAD_TOO_LARGE,
                                           "The body is over %d bytes (Content-Length %.40s).",
                                           OD_MAX_BODY, (const char *) lengths->pdata[0]));
        return;
      }
    /* Only a chunked body can grow past the limit while it is read. */
    if (n_encoding > 0)
      g_signal_connect (msg, "got-chunk", G_CALLBACK (request_got_chunk), NULL);
  }
}

static void
request_started (SoupServer        *server,
                 SoupServerMessage *msg,
                 OdServer          *self)
{
  Conn *conn = conn_for_msg (msg);

  if (conn != NULL)
    {
      conn->idle = FALSE;
      od_conn_stream_set_idle (conn->stream, FALSE);
      g_clear_object (&conn->last);
    }
  g_hash_table_insert (self->requests, g_object_ref (msg), GINT_TO_POINTER (1));
  od_server_request_info (msg);
}

static void
request_ended (SoupServer        *server,
               SoupServerMessage *msg,
               OdServer          *self)
{
  g_hash_table_remove (self->requests, msg);
}

/* Between two requests a connection is idle: a peer that closes it then,
 * or stays silent past the request timeout, loses it (conn_close_idle).
 * If libsoup closes the connection instead, "closed" frees it. */
static void
request_finished (SoupServer        *server,
                  SoupServerMessage *msg,
                  OdServer          *self)
{
  Conn *conn = conn_for_msg (msg);

  g_hash_table_remove (self->requests, msg);
  if (conn == NULL || conn->stream == NULL)
    return;
  conn->idle = TRUE;
  conn->idle_since = g_get_monotonic_time ();
  /* Kept only to take the connection back: not its bodies (a page can
   * be megabytes). */
  soup_message_body_truncate (soup_server_message_get_response_body (msg));
  soup_message_body_truncate (soup_server_message_get_request_body (msg));
  g_set_object (&conn->last, msg);
  od_conn_stream_set_idle (conn->stream, TRUE);
}

/* ------------------------------------------------------------------ */

/* Closes the listening socket and every connection not yet given to
 * libsoup (soup_server_disconnect closes the others). */
void
od_server_stop_accepting (OdServer *self)
{
  GHashTableIter iter;
  gpointer key;

  if (self->accept_source != NULL)
    {
      g_source_destroy (self->accept_source);
      g_clear_pointer (&self->accept_source, g_source_unref);
    }
  g_clear_handle_id (&self->accept_retry_id, g_source_remove);
  if (self->listen_socket != NULL)
    g_socket_close (self->listen_socket, NULL);
  g_clear_object (&self->listen_socket);
  g_hash_table_iter_init (&iter, self->conns);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      Conn *conn = key;

      if (conn->handshake != NULL)
        g_cancellable_cancel (conn->handshake);
    }
}

/* Requests still being read after the request timeout, idle connections
 * past it, and connections whose peer stopped reading. */
void
od_server_conn_tick (OdServer *self,
                     gint64    now)
{
  GHashTableIter iter;
  gpointer key;

  /* Requests still being read after the timeout: slow or stuck clients
   * (including idle keep-alive connections) lose their connection. */
  g_hash_table_iter_init (&iter, self->requests);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      SoupServerMessage *msg = key;
      gint64 started = od_server_request_info (msg)->started;

      if (now - started > self->request_timeout_usec)
        {
          GSocket *socket = msg_socket (msg);

          /* libsoup is still reading this request and has written nothing
           * for it, so the answer can go straight to the connection
           * (through TLS when it has it); shutting the socket down then
           * lets libsoup clean up as for any dropped client. */
          if (socket != NULL && !g_socket_is_closed (socket))
            {
              OdProblem *problem = od_problem_new (OD_PROBLEM_REQUEST_TIMEOUT,
                                                   "The request did not arrive within %"
                                                   G_GINT64_FORMAT " s.",
                                                   self->request_timeout_usec / G_USEC_PER_SEC);
              g_autofree char *response = raw_response (problem);

              msg_write_raw (msg, response);
              g_socket_shutdown (socket, TRUE, TRUE, NULL);
            }
          g_hash_table_iter_remove (&iter);
        }
    }

  /* Idle connections past the request timeout are closed; a response
   * the peer has not read for the stall timeout ends its connection
   * (every response, not only the stream: slow readers must not pin
   * memory). */
  {
    g_autoptr(GPtrArray) idle = g_ptr_array_new ();

    g_hash_table_iter_init (&iter, self->conns);
    while (g_hash_table_iter_next (&iter, &key, NULL))
      {
        Conn *conn = key;
        gint64 blocked = conn->stream ? od_conn_stream_get_write_blocked_since (conn->stream) : 0;

        if (conn->idle && now - conn->idle_since > self->request_timeout_usec)
          g_ptr_array_add (idle, conn);
        else if (blocked != 0 && now - blocked > self->stall_timeout_usec && !conn->stall_logged)
          {
            g_message ("closing a connection whose peer read nothing for %" G_GINT64_FORMAT " s",
                       (now - blocked) / G_USEC_PER_SEC);
            conn->stall_logged = TRUE;
            g_socket_shutdown (conn->socket, TRUE, TRUE, NULL);
          }
      }
    for (guint i = 0; i < idle->len; i++)
      conn_close_idle (g_ptr_array_index (idle, i));
  }
}

/* Hooks the connection limits into the SoupServer. */
void
od_server_conn_attach (OdServer *self)
{
  soup_server_add_early_handler (self->soup, NULL, early_handler, self, NULL);
  g_signal_connect (self->soup, "request-started", G_CALLBACK (request_started), self);
  g_signal_connect (self->soup, "request-read", G_CALLBACK (request_ended), self);
  g_signal_connect (self->soup, "request-finished", G_CALLBACK (request_finished), self);
  g_signal_connect (self->soup, "request-aborted", G_CALLBACK (request_ended), self);
}

/* Listens on ADDRESS:PORT with a socket of our own. */
gboolean
od_server_listen (OdServer      *self,
                  GInetAddress  *address,
                  guint          port,
                  GError       **error)
{
  g_autoptr(GSocketAddress) socket_address = NULL;
  g_autoptr(GSocket) listener = NULL;
  guint64 fd_limit;

  /* Every connection takes a file descriptor: use all the process may
   * have, and keep room for the store, threads and the refused. */
  fd_limit = raise_fd_limit ();
  self->max_conns = (guint) MIN (fd_limit - MAX (64, fd_limit / 8), G_MAXINT);
  {
    /* For tests only: a cap above what the descriptors allow. */
    const char *cap = g_getenv ("OD_SERVER_MAX_CONNECTIONS");
    guint64 value;

    if (cap != NULL && g_ascii_string_to_unsigned (cap, 10, 1, G_MAXINT, &value, NULL))
      self->max_conns = value;
  }
  g_message ("file descriptor limit %" G_GUINT64_FORMAT "; at most %u connections",
             fd_limit, self->max_conns);

  /* libsoup 3.2 keeps a connection alive after a request only while it
   * has a listener of its own.  Connections are accepted here instead
   * (accept_ready), so it gets one that never accepts anything: one end
   * of a socket pair whose other end is closed. */
  {
    int pair[2];
    g_autoptr(GSocket) placeholder = NULL;

    if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
      {
        int saved = errno;

        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "socketpair: %s",
                     g_strerror (saved));
        return FALSE;
      }
    close (pair[1]);
    placeholder = g_socket_new_from_fd (pair[0], error);
    if (placeholder == NULL)
      {
        close (pair[0]);
        return FALSE;
      }
    if (!soup_server_listen_socket (self->soup, placeholder, 0, error))
      return FALSE;
  }

  /* Our own socket, for a listen backlog that absorbs bursts of new
   * connections (GSocket's default of 10 overflows, and clients then see
   * resets), and for accepting that survives running out of file
   * descriptors. */
  socket_address = g_inet_socket_address_new (address, port);
  listener = g_socket_new (g_inet_address_get_family (address), G_SOCKET_TYPE_STREAM,
                           G_SOCKET_PROTOCOL_TCP, error);
  if (listener == NULL)
    return FALSE;
  g_socket_set_listen_backlog (listener, 1024);
  if (!g_socket_bind (listener, socket_address, TRUE, error)
      || !g_socket_listen (listener, error))
    return FALSE;
  g_socket_set_blocking (listener, FALSE);
  self->listen_socket = g_object_ref (listener);
  accept_arm (self);

  return TRUE;
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* /conn-stream/held-headers: OdConnStream holds a response's header block and sends it with the
 * first write of its body, in one call (src/server/od-conn-stream.c).
 * Random responses (header blocks that announce a body and some that do
 * not, bodies of every size, written whole or in pieces) go through it
 * into a socket whose buffers are a few KiB, as libsoup writes them:
 * without blocking, again from where a write stopped, again after
 * "would block" once the peer has read.  The peer reads random amounts
 * at random moments.  Writes stop in the held headers, between them and
 * the body, and in the body; the peer must get every byte in order,
 * once, and nothing more.  No server process.
 *
 * /conn-stream/waiters: on a plain connection the stream's sources have
 * no descriptor of their own; one watch a connection polls it for them
 * (see od-conn-stream.c).  Both ways at once, through sources nested as
 * libsoup nests them, random amounts cross a socket of small buffers:
 * every byte arrives once and in order, no source fires with nothing to
 * read or write, and the loop sleeps while nobody waits: with data
 * pending, after the peer hung up, after the socket was closed under
 * the stream. */
#include "od-conn-stream.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct
{
  int      peer;
  GString *received;
  GRand   *rand;
  guint    blocked;   /* writes that would have blocked */
} Pipe;

/* Reads up to a random amount the peer has, without waiting. */
static void
drain_some (Pipe *pipe)
{
  char buf[8192];
  gsize want = g_rand_int_range (pipe->rand, 1, sizeof buf + 1);
  gssize n = recv (pipe->peer, buf, want, MSG_DONTWAIT);

  if (n > 0)
    g_string_append_len (pipe->received, buf, n);
  else
    g_assert_true (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Writes DATA as libsoup does, the peer reading now and then. */
static void
write_all (GPollableOutputStream *output,
           Pipe                  *pipe,
           const char            *data,
           gsize                  len)
{
  gsize done = 0;

  while (done < len)
    {
      g_autoptr(GError) error = NULL;
      gssize n = g_pollable_output_stream_write_nonblocking (output, data + done, len - done,
                                                             NULL, &error);

      if (n > 0)
        {
          g_assert_cmpint (n, <=, (gssize) (len - done));
          done += n;
        }
      else
        {
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
          g_assert_cmpint (n, ==, -1);
          pipe->blocked++;
          /* libsoup waits for the socket to be writable: the peer reads. */
          drain_some (pipe);
        }
      if (g_rand_int_range (pipe->rand, 0, 4) == 0)
        drain_some (pipe);
    }
}

static char *
random_header_block (GRand    *rand,
                     gsize     body_len,
                     gboolean  announce)
{
  GString *out = g_string_new ("HTTP/1.1 200 OK\r\nServer: test\r\n");
  guint pad = g_rand_int_range (rand, 0, 3000);

  if (announce)
    g_string_append_printf (out, "Content-Length: %" G_GSIZE_FORMAT "\r\n", body_len);
  g_string_append (out, "X-Pad: ");
  for (guint i = 0; i < pad; i++)
    g_string_append_c (out, 'a' + g_rand_int_range (rand, 0, 26));
  g_string_append (out, "\r\n\r\n");
  return g_string_free (out, FALSE);
}

static void
test_held_headers (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GString) expected = g_string_new (NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(OdConnStream) stream = NULL;
  GPollableOutputStream *output;
  Pipe pipe = { 0 };
  int fds[2];
  int small = 2048;

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  g_assert_cmpint (setsockopt (fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), ==, 0);
  g_assert_cmpint (setsockopt (fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), ==, 0);
  socket = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  g_socket_set_blocking (socket, FALSE);
  connection = g_socket_connection_factory_create_connection (socket);
  stream = od_conn_stream_new (G_IO_STREAM (connection));
  output = G_POLLABLE_OUTPUT_STREAM (g_io_stream_get_output_stream (G_IO_STREAM (stream)));
  pipe.peer = fds[1];
  pipe.received = g_string_new (NULL);
  pipe.rand = rand;

  for (guint i = 0; i < 400; i++)
    {
      /* Mostly small bodies (an answer), some far larger than the
       * socket's buffers (a page). */
      gsize body_len = g_rand_int_range (rand, 0, 4) == 0 ? g_rand_int_range (rand, 1, 200000)
                                                          : g_rand_int_range (rand, 1, 600);
      gboolean follows = g_rand_int_range (rand, 0, 5) != 0;
      gboolean announce = g_rand_int_range (rand, 0, 8) != 0;
      g_autofree char *headers = random_header_block (rand, body_len, announce);
      g_autofree char *body = g_malloc (body_len);
      gsize done = 0;

      for (gsize j = 0; j < body_len; j++)
        body[j] = (char) g_rand_int (rand);
      g_string_append (expected, headers);
      g_string_append_len (expected, body, body_len);

      if (follows)
        od_conn_stream_set_body_follows (stream);
      write_all (output, &pipe, headers, strlen (headers));
      /* The body in one write or in pieces. */
      while (done < body_len)
        {
          gsize piece = g_rand_boolean (rand) ? body_len - done
                                              : (gsize) g_rand_int_range (rand, 1, body_len - done + 1);

          write_all (output, &pipe, body + done, piece);
          done += piece;
        }
    }

  /* Everything written has left the stream: the peer gets it all. */
  while (pipe.received->len < expected->len)
    {
      char buf[65536];
      gssize n = recv (pipe.peer, buf, sizeof buf, MSG_DONTWAIT);

      g_assert_true (n > 0);
      g_string_append_len (pipe.received, buf, n);
    }
  g_test_message ("%" G_GSIZE_FORMAT " bytes, %u writes would have blocked", expected->len,
                  pipe.blocked);
  g_assert_cmpuint (pipe.blocked, >, 0);
  g_assert_cmpuint (pipe.received->len, ==, expected->len);
  g_assert_true (memcmp (pipe.received->str, expected->str, expected->len) == 0);
  {
    char byte;

    g_assert_cmpint (recv (pipe.peer, &byte, 1, MSG_DONTWAIT), ==, -1);
  }
  g_string_free (pipe.received, TRUE);
  close (fds[1]);
}

/* ------------------------------------------------------------------ */

typedef struct
{
  GMainContext *context;
  GRand        *rand;
  GIOStream    *base;
  OdConnStream *stream;
  int           peer;
  GString      *to_stream;   /* the peer sends it; the stream reads it into got */
  gsize         sent;
  GString      *got;
  GString      *to_peer;     /* the stream writes it; the peer reads it into peer_got */
  gsize         written;
  GString      *peer_got;
  GSource      *reading;     /* what the stream waits on to read, or NULL */
  GSource      *writing;
  GSource      *resume;      /* a pause's end, when reading is paused */
  gboolean      eof;
  GError       *read_error;
  guint         spurious;    /* waits that fired with nothing to do */
  guint         wakes;       /* waits that fired */
} Duplex;

static gboolean on_readable (GObject *stream, gpointer data);
static gboolean on_writable (GObject *stream, gpointer data);

/* As libsoup waits: a source of its own (not allowed to recurse, so
 * GLib blocks it and its children while it dispatches) around the
 * stream's. */
static GSource *
wait_on (Duplex   *d,
         gboolean  input)
{
  GIOStream *io = G_IO_STREAM (d->stream);
  GObject *pollable = input ? G_OBJECT (g_io_stream_get_input_stream (io))
                            : G_OBJECT (g_io_stream_get_output_stream (io));
  GSource *child = input
    ? g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (pollable), NULL)
    : g_pollable_output_stream_create_source (G_POLLABLE_OUTPUT_STREAM (pollable), NULL);
  GSource *source = g_pollable_source_new_full (pollable, child, NULL);

  g_source_unref (child);
  g_source_set_callback (source, input ? (GSourceFunc) (void (*) (void)) on_readable
                                       : (GSourceFunc) (void (*) (void)) on_writable,
                         d, NULL);
  g_source_attach (source, d->context);
  return source;
}

static void
stop_waiting (GSource **source)
{
  if (*source == NULL)
    return;
  g_source_destroy (*source);
  g_clear_pointer (source, g_source_unref);
}

static gboolean
resume_reading (gpointer data)
{
  Duplex *d = data;

  if (d->resume != NULL)
    {
      g_source_destroy (d->resume);
      g_clear_pointer (&d->resume, g_source_unref);
    }
  if (d->reading == NULL && !d->eof && d->read_error == NULL)
    d->reading = wait_on (d, TRUE);
  return G_SOURCE_REMOVE;
}

static void
pause_reading (Duplex *d,
               guint   ms)
{
  g_assert_null (d->resume);
  d->resume = g_timeout_source_new (ms);
  g_source_set_callback (d->resume, resume_reading, d, NULL);
  g_source_attach (d->resume, d->context);
}

static void
stop_reading (Duplex *d)
{
  stop_waiting (&d->reading);
  if (d->resume != NULL)
    {
      g_source_destroy (d->resume);
      g_clear_pointer (&d->resume, g_source_unref);
    }
}

/* After a wait fired: wait on as before, on a new source (as libsoup
 * does after most reads), or not for a moment (a paused message). */
static gboolean
wait_again (Duplex   *d,
            GSource **slot,
            gboolean  input)
{
  switch (g_rand_int_range (d->rand, 0, 3))
    {
    case 0:
      return G_SOURCE_CONTINUE;
    case 1:
      g_clear_pointer (slot, g_source_unref);
      *slot = wait_on (d, input);
      return G_SOURCE_REMOVE;
    default:
      g_clear_pointer (slot, g_source_unref);
      if (input)
        pause_reading (d, g_rand_int_range (d->rand, 0, 3));
      else
        *slot = wait_on (d, FALSE);
      return G_SOURCE_REMOVE;
    }
}

static gboolean
on_readable (GObject  *stream,
             gpointer  data)
{
  Duplex *d = data;
  gboolean first = TRUE;

  d->wakes++;
  for (;;)
    {
      char buf[8192];
      g_autoptr(GError) error = NULL;
      gssize n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (stream), buf,
                                                           g_rand_int_range (d->rand, 1, sizeof buf),
                                                           NULL, &error);

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          if (first)
            d->spurious++;
          break;
        }
      first = FALSE;
      if (n <= 0)
        {
          d->eof = n == 0;
          d->read_error = g_steal_pointer (&error);
          g_clear_pointer (&d->reading, g_source_unref);
          return G_SOURCE_REMOVE;
        }
      g_string_append_len (d->got, buf, n);
      if (g_rand_int_range (d->rand, 0, 3) == 0)
        break;
    }
  return wait_again (d, &d->reading, TRUE);
}

static gboolean
on_writable (GObject  *stream,
             gpointer  data)
{
  Duplex *d = data;
  gboolean first = TRUE;

  d->wakes++;
  while (d->written < d->to_peer->len)
    {
      g_autoptr(GError) error = NULL;
      gsize left = d->to_peer->len - d->written;
      gssize n = g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (stream),
                                                             d->to_peer->str + d->written,
                                                             g_rand_int_range (d->rand, 1, left + 1),
                                                             NULL, &error);

      if (n < 0)
        {
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
          if (first)
            d->spurious++;
          break;
        }
      first = FALSE;
      d->written += n;
    }
  if (d->written == d->to_peer->len)
    {
      g_clear_pointer (&d->writing, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  return wait_again (d, &d->writing, FALSE);
}

static gboolean
urgent (gpointer data)
{
  return G_SOURCE_REMOVE;
}

/* The peer, now and then: sends some, reads some, and sometimes makes a
 * source more urgent than the watch ready (GLib then polls nothing of a
 * lower priority). */
static gboolean
peer_tick (gpointer data)
{
  Duplex *d = data;
  char buf[8192];
  gssize n;

  if (d->sent < d->to_stream->len)
    {
      gsize piece = g_rand_int_range (d->rand, 1, 6000);
      gsize want = MIN (d->to_stream->len - d->sent, piece);

      n = send (d->peer, d->to_stream->str + d->sent, want, MSG_DONTWAIT);
      if (n > 0)
        d->sent += n;
      else
        g_assert_true (errno == EAGAIN || errno == EWOULDBLOCK);
    }
  n = recv (d->peer, buf, g_rand_int_range (d->rand, 1, sizeof buf), MSG_DONTWAIT);
  if (n > 0)
    g_string_append_len (d->peer_got, buf, n);
  if (g_rand_int_range (d->rand, 0, 4) == 0)
    {
      GSource *source = g_idle_source_new ();

      g_source_set_priority (source, G_PRIORITY_HIGH - 10);
      g_source_set_callback (source, urgent, NULL, NULL);
      g_source_attach (source, d->context);
      g_source_unref (source);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
set_flag (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* The loop sleeps for MS: a few iterations at most, none of them a
 * wait that fires.  One that spins (a descriptor poll () keeps
 * reporting) runs thousands. */
static void
assert_quiet (Duplex     *d,
              guint       ms,
              const char *when)
{
  GSource *timer = g_timeout_source_new (ms);
  gboolean over = FALSE;
  guint iterations = 0;
  guint wakes = d->wakes;

  g_source_set_callback (timer, set_flag, &over, NULL);
  g_source_attach (timer, d->context);
  g_source_unref (timer);
  while (!over)
    {
      g_main_context_iteration (d->context, TRUE);
      iterations++;
    }
  if (iterations > 5 || d->wakes != wakes)
    g_error ("%s: %u iterations in %u ms, %u waits fired", when, iterations, ms,
             d->wakes - wakes);
}

/* Iterates until *done, for 10 s at most. */
static void
iterate_until (Duplex     *d,
               gboolean   *done,
               const char *what)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  while (!*done)
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("no %s within 10 s", what);
      g_main_context_iteration (d->context, TRUE);
    }
}

static void
duplex_open (Duplex *d,
             GRand  *rand)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) socket = NULL;
  int fds[2];
  int small = 2048;

  d->rand = rand;
  d->context = g_main_context_new ();
  g_main_context_push_thread_default (d->context);
  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  for (guint i = 0; i < 2; i++)
    {
      g_assert_cmpint (setsockopt (fds[i], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), ==, 0);
      g_assert_cmpint (setsockopt (fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small), ==, 0);
    }
  socket = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  g_socket_set_blocking (socket, FALSE);
  d->base = G_IO_STREAM (g_socket_connection_factory_create_connection (socket));
  d->stream = od_conn_stream_new (d->base);
  d->peer = fds[1];
  d->to_stream = g_string_new (NULL);
  d->got = g_string_new (NULL);
  d->to_peer = g_string_new (NULL);
  d->peer_got = g_string_new (NULL);
}

static void
duplex_close (Duplex *d)
{
  stop_reading (d);
  stop_waiting (&d->writing);
  g_clear_object (&d->stream);
  g_clear_object (&d->base);
  if (d->peer >= 0)
    close (d->peer);
  g_string_free (d->to_stream, TRUE);
  g_string_free (d->got, TRUE);
  g_string_free (d->to_peer, TRUE);
  g_string_free (d->peer_got, TRUE);
  g_clear_error (&d->read_error);
  /* What the round left (timers, idles) goes with its context. */
  while (g_main_context_iteration (d->context, FALSE))
    ;
  g_main_context_pop_thread_default (d->context);
  g_main_context_unref (d->context);
}

static void
random_bytes (GString *out,
              GRand   *rand,
              gsize    len)
{
  for (gsize i = 0; i < len; i++)
    g_string_append_c (out, (char) g_rand_int (rand));
}

static gboolean
duplex_done (Duplex *d)
{
  return d->got->len == d->to_stream->len && d->peer_got->len == d->to_peer->len;
}

static void
test_waiters (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  guint wakes = 0;

  for (guint round = 0; round < 24; round++)
    {
      Duplex d = { 0 };
      GSource *peer;
      gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

      duplex_open (&d, rand);
      random_bytes (d.to_stream, rand, g_rand_int_range (rand, 1, 150000));
      random_bytes (d.to_peer, rand, g_rand_int_range (rand, 1, 150000));
      d.reading = wait_on (&d, TRUE);
      d.writing = wait_on (&d, FALSE);
      peer = g_timeout_source_new (1);
      g_source_set_callback (peer, peer_tick, &d, NULL);
      g_source_attach (peer, d.context);
      while (!duplex_done (&d))
        {
          if (g_get_monotonic_time () > deadline)
            g_error ("round %u stuck: read %zu of %zu, peer read %zu of %zu (sent %zu), written %zu, "
                     "reading %p writing %p, %u waits", round, d.got->len, d.to_stream->len,
                     d.peer_got->len, d.to_peer->len, d.sent, d.written, d.reading, d.writing, d.wakes);
          g_main_context_iteration (d.context, TRUE);
        }
      g_source_destroy (peer);
      g_source_unref (peer);
      g_assert_true (memcmp (d.got->str, d.to_stream->str, d.got->len) == 0);
      g_assert_true (memcmp (d.peer_got->str, d.to_peer->str, d.peer_got->len) == 0);
      /* Poll said ready each time: something was there to read or room
       * to write. */
      g_assert_cmpuint (d.spurious, ==, 0);
      wakes += d.wakes;

      /* Waiting to read, nothing sent: the loop sleeps. */
      resume_reading (&d);
      assert_quiet (&d, 60, "waiting to read");
      /* Not waiting (a paused request), data pending: it sleeps too. */
      stop_reading (&d);
      g_assert_cmpint (send (d.peer, "pending", 7, 0), ==, 7);
      assert_quiet (&d, 60, "data pending, nobody waiting");
      g_string_append (d.to_stream, "pending");
      resume_reading (&d);
      while (d.got->len < d.to_stream->len)
        g_main_context_iteration (d.context, TRUE);
      g_assert_cmpstr (d.got->str + d.got->len - 7, ==, "pending");

      if (round % 2 == 0)
        {
          /* The peer hangs up while nobody waits: no poll () that keeps
           * reporting it; the next wait hears it at once. */
          stop_reading (&d);
          close (d.peer);
          d.peer = -1;
          assert_quiet (&d, 60, "hung up, nobody waiting");
          resume_reading (&d);
          iterate_until (&d, &d.eof, "end of stream");
          assert_quiet (&d, 60, "after the end of stream");
        }
      else
        {
          /* The socket closed under the stream, a wait armed: the wait
           * fires (its read fails), and then the loop sleeps. */
          g_io_stream_close (d.base, NULL, NULL);
          while (d.read_error == NULL)
            {
              g_assert_cmpint (g_get_monotonic_time (), <, deadline);
              g_main_context_iteration (d.context, TRUE);
            }
          g_assert_error (d.read_error, G_IO_ERROR, G_IO_ERROR_CLOSED);
          assert_quiet (&d, 60, "closed under the stream");
        }
      duplex_close (&d);
    }
  g_test_message ("%u waits fired", wakes);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/conn-stream/held-headers", test_held_headers);
  g_test_add_func ("/conn-stream/waiters", test_waiters);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* OdConnStream holds a response's header block and sends it with the
 * first write of its body, in one call (src/server/od-conn-stream.c).
 * Random responses (header blocks that announce a body and some that do
 * not, bodies of every size, written whole or in pieces) go through it
 * into a socket whose buffers are a few KiB, as libsoup writes them:
 * without blocking, again from where a write stopped, again after
 * "would block" once the peer has read.  The peer reads random amounts
 * at random moments.  Writes stop in the held headers, between them and
 * the body, and in the body; the peer must get every byte in order,
 * once, and nothing more.  No server process. */
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

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/conn-stream/held-headers", test_held_headers);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-conn-stream.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

struct _OdConnStream
{
  GIOStream      parent_instance;

  GIOStream     *base;
  GInputStream  *input;
  GOutputStream *output;
  gboolean       idle;
  gboolean       peer_gone;
  gboolean       closed_emitted;
  gboolean       body_follows;
  gint64         write_blocked_since;
  GSource       *watch;   /* ConnWatch of a plain connection, else NULL */
};

enum { SIGNAL_PEER_GONE, SIGNAL_CLOSED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (OdConnStream, od_conn_stream, G_TYPE_IO_STREAM)

/* ------------------------------------------------------------------ */
/* Input                                                               */

#define OD_TYPE_CONN_INPUT (od_conn_input_get_type ())
G_DECLARE_FINAL_TYPE (OdConnInput, od_conn_input, OD, CONN_INPUT, GInputStream)

struct _OdConnInput
{
  GInputStream  parent_instance;
  GInputStream *base;
  OdConnStream *owner;   /* weak */
};

static void od_conn_input_pollable_init (GPollableInputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (OdConnInput, od_conn_input, G_TYPE_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM,
                                                      od_conn_input_pollable_init))

/* GLib 2.74 blocks a source while it dispatches: it removes the source's
 * file descriptors (and its children's) from the poll set and adds them
 * back afterwards, and each change writes to the main context's wake-up
 * fd, even from the thread that owns it.  libsoup dispatches a few such
 * sources per request: that was 8-11 write()s a request, a quarter of
 * the main thread's time on a command.  A source that may recurse is not
 * blocked; nothing here runs the main loop from inside a callback of
 * libsoup's, so none recurses. */
static GSource *
source_no_block (GSource *source)
{
  g_source_set_can_recurse (source, TRUE);
  return source;
}

/* ------------------------------------------------------------------ */
/* One poll record a connection                                        */

/* libsoup waits on a connection through sources of its own with ours as
 * children, and GLib blocks a dispatching source with all its children:
 * each file descriptor among them leaves the poll set and comes back,
 * and each change writes to the main context's wake-up fd (see
 * source_no_block).  That was still six write()s a command.  So on a
 * plain connection the descriptor is polled by one source for the
 * connection's whole life, the watch, which nobody blocks, and what
 * libsoup waits on are sources without a descriptor (waiters) that read
 * the watch's poll result.  The watch asks poll() for what its waiters
 * wait for; changing that is a field's value, not a call that wakes the
 * context. */
typedef struct
{
  GSource    source;
  GPollFD    pollfd;
  GSocket   *socket;
  GPtrArray *waiters;   /* ConnWaiter *, not referenced: each leaves at its finalize */
} ConnWatch;

typedef struct
{
  GSource       source;
  GObject      *stream;     /* the pollable stream, for the callback */
  ConnWatch    *watch;      /* referenced */
  GIOCondition  condition;  /* G_IO_IN or G_IO_OUT */
} ConnWaiter;

static gboolean
watch_prepare (GSource *source,
               gint    *timeout)
{
  ConnWatch *watch = (ConnWatch *) source;
  gushort events = 0;

  for (guint i = 0; i < watch->waiters->len; i++)
    {
      ConnWaiter *w = g_ptr_array_index (watch->waiters, i);

      if (!g_source_is_destroyed (&w->source) && g_source_get_context (&w->source) != NULL)
        events |= w->condition;
    }
  watch->pollfd.events = events;
  /* Not polled in this iteration (a more urgent source is ready), it
   * says nothing rather than what an earlier poll said. */
  watch->pollfd.revents = 0;
  *timeout = -1;
  return FALSE;
}

static gboolean
watch_check (GSource *source)
{
  ConnWatch *watch = (ConnWatch *) source;
  gushort revents = watch->pollfd.revents;

  if (revents == 0)
    return FALSE;
  /* Closed under us: the number may already be another connection's. */
  if ((revents & G_IO_NVAL) || g_socket_is_closed (watch->socket))
    return TRUE;
  /* poll () reports a hang-up or an error whatever was asked: with
   * nobody waiting to hear it, it would wake every iteration. */
  return (revents & (G_IO_HUP | G_IO_ERR)) != 0 && watch->pollfd.events == 0;
}

/* The descriptor leaves the poll set for good; waiters from now on are
 * ready at once, and the read or write says what happened. */
static gboolean
watch_dispatch (GSource     *source,
                GSourceFunc  callback,
                gpointer     user_data)
{
  return G_SOURCE_REMOVE;
}

static void
watch_finalize (GSource *source)
{
  ConnWatch *watch = (ConnWatch *) source;

  g_assert (watch->waiters->len == 0);
  g_ptr_array_unref (watch->waiters);
  g_clear_object (&watch->socket);
}

static GSourceFuncs watch_funcs = {
  .prepare = watch_prepare,
  .check = watch_check,
  .dispatch = watch_dispatch,
  .finalize = watch_finalize,
};

static GSource *
watch_new (GSocket *socket)
{
  GSource *source = g_source_new (&watch_funcs, sizeof (ConnWatch));
  ConnWatch *watch = (ConnWatch *) source;

  g_source_set_static_name (source, "OdConnWatch");
  watch->socket = g_object_ref (socket);
  watch->waiters = g_ptr_array_new ();
  watch->pollfd.fd = g_socket_get_fd (socket);
  /* Polled before any waiter is checked: their priority is libsoup's
   * (default). */
  g_source_set_priority (source, G_PRIORITY_HIGH);
  g_source_add_poll (source, &watch->pollfd);
  source_no_block (source);
  g_source_attach (source, g_main_context_get_thread_default ());
  return source;
}

static gboolean
waiter_prepare (GSource *source,
                gint    *timeout)
{
  ConnWaiter *w = (ConnWaiter *) source;

  *timeout = -1;
  /* Only a watch that is gone makes a waiter ready before the poll. */
  return g_source_is_destroyed (&w->watch->source);
}

static gboolean
waiter_check (GSource *source)
{
  ConnWaiter *w = (ConnWaiter *) source;

  if (g_source_is_destroyed (&w->watch->source))
    return TRUE;
  return (w->watch->pollfd.revents & (w->condition | G_IO_HUP | G_IO_ERR | G_IO_NVAL)) != 0;
}

static gboolean
waiter_dispatch (GSource     *source,
                 GSourceFunc  callback,
                 gpointer     user_data)
{
  ConnWaiter *w = (ConnWaiter *) source;

  if (callback == NULL)
    return G_SOURCE_CONTINUE;
  return ((GPollableSourceFunc) (void (*) (void)) callback) (w->stream, user_data);
}

static void
waiter_finalize (GSource *source)
{
  ConnWaiter *w = (ConnWaiter *) source;

  g_ptr_array_remove_fast (w->watch->waiters, w);
  g_source_unref (&w->watch->source);
  g_object_unref (w->stream);
}

/* A waiter is a child of libsoup's sources, which give it a dummy
 * callback as a GClosure (g_pollable_source_new_full). */
static gboolean
waiter_closure_callback (GObject  *stream,
                         gpointer  data)
{
  GClosure *closure = data;
  GValue param = G_VALUE_INIT;
  GValue result = G_VALUE_INIT;
  gboolean ret;

  g_value_init (&result, G_TYPE_BOOLEAN);
  g_value_init (&param, G_TYPE_OBJECT);
  g_value_set_object (&param, stream);
  g_closure_invoke (closure, &result, 1, &param, NULL);
  ret = g_value_get_boolean (&result);
  g_value_unset (&result);
  g_value_unset (&param);
  return ret;
}

static GSourceFuncs waiter_funcs = {
  .prepare = waiter_prepare,
  .check = waiter_check,
  .dispatch = waiter_dispatch,
  .finalize = waiter_finalize,
  .closure_callback = (GSourceFunc) (void (*) (void)) waiter_closure_callback,
};

/* A pollable source of STREAM (a GPollableSourceFunc callback), ready
 * when the watch's descriptor is ready for CONDITION. */
static GSource *
waiter_new (GObject      *stream,
            GSource      *watch,
            GIOCondition  condition,
            GCancellable *cancellable)
{
  GSource *source = g_source_new (&waiter_funcs, sizeof (ConnWaiter));
  ConnWaiter *w = (ConnWaiter *) source;

  g_source_set_static_name (source, "OdConnWaiter");
  w->stream = g_object_ref (stream);
  w->watch = (ConnWatch *) g_source_ref (watch);
  w->condition = condition;
  g_ptr_array_add (w->watch->waiters, w);
  if (cancellable != NULL)
    {
      GSource *cancellable_source = g_cancellable_source_new (cancellable);

      g_source_set_dummy_callback (cancellable_source);
      g_source_add_child_source (source, cancellable_source);
      g_source_unref (cancellable_source);
    }
  return source_no_block (source);
}

static void
watch_destroy (OdConnStream *self)
{
  if (self->watch == NULL)
    return;
  g_source_destroy (self->watch);
  g_clear_pointer (&self->watch, g_source_unref);
}

static gboolean
emit_peer_gone (gpointer data)
{
  g_signal_emit (data, signals[SIGNAL_PEER_GONE], 0);
  return G_SOURCE_REMOVE;
}

/* Applies the idle rule to one read's outcome. */
static gssize
input_filter (OdConnInput  *self,
              gssize        n,
              GError      **error)
{
  OdConnStream *owner = self->owner;

  if (owner == NULL || !owner->idle || n > 0
      || (n < 0 && error != NULL && g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)))
    return n;
  /* The peer closed (or reset) a connection between requests: libsoup
   * must not see it (see the header); the server takes the connection
   * back from a fresh main loop iteration, outside libsoup's read. */
  if (n < 0 && error != NULL)
    g_clear_error (error);
  if (!owner->peer_gone)
    {
      owner->peer_gone = TRUE;
      g_idle_add_full (G_PRIORITY_HIGH, emit_peer_gone, g_object_ref (owner), g_object_unref);
    }
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "The peer closed the connection");
  return -1;
}

static gssize
od_conn_input_read (GInputStream  *stream,
                    void          *buffer,
                    gsize          count,
                    GCancellable  *cancellable,
                    GError       **error)
{
  OdConnInput *self = OD_CONN_INPUT (stream);

  if (self->owner != NULL && self->owner->peer_gone)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                           "The peer closed the connection");
      return -1;
    }
  return g_input_stream_read (self->base, buffer, count, cancellable, error);
}

static gboolean
od_conn_input_close (GInputStream  *stream,
                     GCancellable  *cancellable,
                     GError       **error)
{
  /* The base GIOStream closes its own streams. */
  return TRUE;
}

static gboolean
od_conn_input_can_poll (GPollableInputStream *stream)
{
  return TRUE;
}

static gboolean
od_conn_input_is_readable (GPollableInputStream *stream)
{
  OdConnInput *self = OD_CONN_INPUT (stream);

  if (self->owner != NULL && self->owner->peer_gone)
    return FALSE;
  return g_pollable_input_stream_is_readable (G_POLLABLE_INPUT_STREAM (self->base));
}

static GSource *
od_conn_input_create_source (GPollableInputStream *stream,
                             GCancellable         *cancellable)
{
  OdConnInput *self = OD_CONN_INPUT (stream);
  g_autoptr(GSource) base_source = NULL;

  /* Once the peer is gone nothing more is readable for libsoup: a source
   * without a child never fires. */
  if (self->owner != NULL && self->owner->peer_gone)
    return g_pollable_source_new_full (stream, NULL, cancellable);
  if (self->owner != NULL && self->owner->watch != NULL)
    return waiter_new (G_OBJECT (stream), self->owner->watch, G_IO_IN, cancellable);
  base_source = g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (self->base), NULL);
  return source_no_block (g_pollable_source_new_full (stream, source_no_block (base_source),
                                                      cancellable));
}

static gssize
od_conn_input_read_nonblocking (GPollableInputStream  *stream,
                                void                  *buffer,
                                gsize                  count,
                                GError               **error)
{
  OdConnInput *self = OD_CONN_INPUT (stream);
  gssize n;

  if (self->owner != NULL && self->owner->peer_gone)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                           "The peer closed the connection");
      return -1;
    }
  n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (self->base), buffer, count,
                                                NULL, error);
  return input_filter (self, n, error);
}

static void
od_conn_input_finalize (GObject *object)
{
  OdConnInput *self = OD_CONN_INPUT (object);

  g_clear_weak_pointer (&self->owner);
  g_clear_object (&self->base);
  G_OBJECT_CLASS (od_conn_input_parent_class)->finalize (object);
}

static void
od_conn_input_class_init (OdConnInputClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = od_conn_input_finalize;
  G_INPUT_STREAM_CLASS (klass)->read_fn = od_conn_input_read;
  G_INPUT_STREAM_CLASS (klass)->close_fn = od_conn_input_close;
}

static void
od_conn_input_pollable_init (GPollableInputStreamInterface *iface)
{
  iface->can_poll = od_conn_input_can_poll;
  iface->is_readable = od_conn_input_is_readable;
  iface->create_source = od_conn_input_create_source;
  iface->read_nonblocking = od_conn_input_read_nonblocking;
}

static void
od_conn_input_init (OdConnInput *self)
{
}

/* ------------------------------------------------------------------ */
/* Output                                                              */

#define OD_TYPE_CONN_OUTPUT (od_conn_output_get_type ())
G_DECLARE_FINAL_TYPE (OdConnOutput, od_conn_output, OD, CONN_OUTPUT, GOutputStream)

struct _OdConnOutput
{
  GOutputStream  parent_instance;
  GOutputStream *base;
  OdConnStream  *owner;   /* weak */
  GSocket       *socket;  /* of a plain (not TLS) connection, else NULL */
  /* A response's header block, taken from libsoup but not sent yet: it
   * goes out with the body's write (see write_nonblocking). */
  GByteArray    *held;
};

static void od_conn_output_pollable_init (GPollableOutputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (OdConnOutput, od_conn_output, G_TYPE_OUTPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_OUTPUT_STREAM,
                                                      od_conn_output_pollable_init))

static void
output_note (OdConnOutput  *self,
             gssize         n,
             GError       **error)
{
  if (self->owner == NULL)
    return;
  if (n < 0 && error != NULL && g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    {
      if (self->owner->write_blocked_since == 0)
        self->owner->write_blocked_since = g_get_monotonic_time ();
    }
  else
    self->owner->write_blocked_since = 0;
}

/* Sends what is held, blocking: for the blocking calls only, which
 * libsoup's server does not make on a connection it writes without
 * blocking. */
static gboolean
send_held (OdConnOutput  *self,
           GCancellable  *cancellable,
           GError       **error)
{
  gsize written = 0;
  gboolean ok;

  if (self->held->len == 0)
    return TRUE;
  ok = g_output_stream_write_all (self->base, self->held->data, self->held->len, &written,
                                  cancellable, error);
  g_byte_array_remove_range (self->held, 0, written);
  return ok;
}

static gssize
od_conn_output_write (GOutputStream  *stream,
                      const void     *buffer,
                      gsize           count,
                      GCancellable   *cancellable,
                      GError        **error)
{
  OdConnOutput *self = OD_CONN_OUTPUT (stream);
  gssize n = -1;

  if (send_held (self, cancellable, error))
    n = g_output_stream_write (self->base, buffer, count, cancellable, error);
  output_note (self, n, error);
  return n;
}

static gboolean
od_conn_output_flush (GOutputStream  *stream,
                      GCancellable   *cancellable,
                      GError        **error)
{
  OdConnOutput *self = OD_CONN_OUTPUT (stream);

  return send_held (self, cancellable, error)
         && g_output_stream_flush (self->base, cancellable, error);
}

static gboolean
od_conn_output_close (GOutputStream  *stream,
                      GCancellable   *cancellable,
                      GError        **error)
{
  return TRUE;
}

static gboolean
od_conn_output_can_poll (GPollableOutputStream *stream)
{
  return TRUE;
}

static gboolean
od_conn_output_is_writable (GPollableOutputStream *stream)
{
  return g_pollable_output_stream_is_writable (G_POLLABLE_OUTPUT_STREAM (OD_CONN_OUTPUT (stream)->base));
}

static GSource *
od_conn_output_create_source (GPollableOutputStream *stream,
                              GCancellable          *cancellable)
{
  OdConnOutput *self = OD_CONN_OUTPUT (stream);
  g_autoptr(GSource) base_source = NULL;

  if (self->owner != NULL && self->owner->watch != NULL)
    return waiter_new (G_OBJECT (stream), self->owner->watch, G_IO_OUT, cancellable);
  base_source = g_pollable_output_stream_create_source (G_POLLABLE_OUTPUT_STREAM (self->base), NULL);
  return source_no_block (g_pollable_source_new_full (stream, source_no_block (base_source),
                                                      cancellable));
}

/* Whether BUFFER is the end of a response's header block that announces
 * a body: libsoup writes the headers and the body with a write each. */
static gboolean
is_header_block_with_body (const char *buffer,
                           gsize       count)
{
  static const char length[] = "\r\nContent-Length: ";
  const char *p;

  if (count < 12 || memcmp (buffer, "HTTP/1.", 7) != 0
      || memcmp (buffer + count - 4, "\r\n\r\n", 4) != 0)
    return FALSE;
  p = g_strstr_len (buffer, count, length);
  if (p == NULL)
    return FALSE;
  p += sizeof length - 1;
  return *p >= '1' && *p <= '9';
}

static gssize
od_conn_output_write_nonblocking (GPollableOutputStream  *stream,
                                  const void             *buffer,
                                  gsize                   count,
                                  GError                **error)
{
  OdConnOutput *self = OD_CONN_OUTPUT (stream);
  OdConnStream *owner = self->owner;
  gssize n;

  /* The headers of a response whose body is written right after them
   * are held and sent with the body in one sendmsg (): where they went
   * in two, the loopback path cost a second transmit and receive (a
   * tenth of the main thread's time on a command), and with MSG_MORE on
   * the headers still a second call.  The bytes are the same. */
  if (owner != NULL && owner->body_follows && self->socket != NULL && self->held->len == 0
      && is_header_block_with_body (buffer, count))
    {
      g_byte_array_append (self->held, buffer, count);
      owner->body_follows = FALSE;
      n = count;
    }
  else if (self->held->len > 0)
    {
      GOutputVector vectors[] = { { self->held->data, self->held->len }, { buffer, count } };
      gsize written = 0;
      GPollableReturn ret;

      ret = g_socket_send_message_with_timeout (self->socket, NULL, vectors, G_N_ELEMENTS (vectors),
                                                NULL, 0, 0, 0, &written, NULL, error);
      if (ret == G_POLLABLE_RETURN_OK && written > self->held->len)
        {
          n = written - self->held->len;
          g_byte_array_set_size (self->held, 0);
        }
      else
        {
          /* None of the body went (the socket filled up in the headers,
           * or failed): what did go leaves what is held. */
          if (ret == G_POLLABLE_RETURN_OK)
            g_byte_array_remove_range (self->held, 0, written);
          if (ret != G_POLLABLE_RETURN_FAILED)
            g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, g_strerror (EAGAIN));
          n = -1;
        }
    }
  else
    n = g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (self->base),
                                                    buffer, count, NULL, error);

  output_note (self, n, error);
  return n;
}

static void
od_conn_output_finalize (GObject *object)
{
  OdConnOutput *self = OD_CONN_OUTPUT (object);

  g_clear_weak_pointer (&self->owner);
  g_clear_object (&self->base);
  g_clear_object (&self->socket);
  g_byte_array_unref (self->held);
  G_OBJECT_CLASS (od_conn_output_parent_class)->finalize (object);
}

static void
od_conn_output_class_init (OdConnOutputClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = od_conn_output_finalize;
  G_OUTPUT_STREAM_CLASS (klass)->write_fn = od_conn_output_write;
  G_OUTPUT_STREAM_CLASS (klass)->flush = od_conn_output_flush;
  G_OUTPUT_STREAM_CLASS (klass)->close_fn = od_conn_output_close;
}

static void
od_conn_output_pollable_init (GPollableOutputStreamInterface *iface)
{
  iface->can_poll = od_conn_output_can_poll;
  iface->is_writable = od_conn_output_is_writable;
  iface->create_source = od_conn_output_create_source;
  iface->write_nonblocking = od_conn_output_write_nonblocking;
}

static void
od_conn_output_init (OdConnOutput *self)
{
  self->held = g_byte_array_new ();
}

/* ------------------------------------------------------------------ */
/* The stream                                                          */

static GInputStream *
od_conn_stream_get_input_stream (GIOStream *stream)
{
  return OD_CONN_STREAM (stream)->input;
}

static GOutputStream *
od_conn_stream_get_output_stream (GIOStream *stream)
{
  return OD_CONN_STREAM (stream)->output;
}

static void
emit_closed (OdConnStream *self)
{
  if (self->closed_emitted)
    return;
  self->closed_emitted = TRUE;
  g_signal_emit (self, signals[SIGNAL_CLOSED], 0);
}

static gboolean
od_conn_stream_close (GIOStream     *stream,
                      GCancellable  *cancellable,
                      GError       **error)
{
  OdConnStream *self = OD_CONN_STREAM (stream);
  gboolean ok;

  /* Out of the poll set before the number is free for another socket. */
  watch_destroy (self);
  ok = g_io_stream_close (self->base, cancellable, error);

  emit_closed (self);
  return ok;
}

static void
od_conn_stream_dispose (GObject *object)
{
  OdConnStream *self = OD_CONN_STREAM (object);

  watch_destroy (self);
  /* Never leave a file descriptor behind, whoever dropped the stream. */
  if (self->base != NULL && !g_io_stream_is_closed (self->base))
    g_io_stream_close (self->base, NULL, NULL);
  emit_closed (self);
  G_OBJECT_CLASS (od_conn_stream_parent_class)->dispose (object);
}

static void
od_conn_stream_finalize (GObject *object)
{
  OdConnStream *self = OD_CONN_STREAM (object);

  g_clear_object (&self->input);
  g_clear_object (&self->output);
  g_clear_object (&self->base);
  G_OBJECT_CLASS (od_conn_stream_parent_class)->finalize (object);
}

static void
od_conn_stream_class_init (OdConnStreamClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GIOStreamClass *stream_class = G_IO_STREAM_CLASS (klass);

  object_class->dispose = od_conn_stream_dispose;
  object_class->finalize = od_conn_stream_finalize;
  stream_class->get_input_stream = od_conn_stream_get_input_stream;
  stream_class->get_output_stream = od_conn_stream_get_output_stream;
  stream_class->close_fn = od_conn_stream_close;

  signals[SIGNAL_PEER_GONE] = g_signal_new ("peer-gone", G_TYPE_FROM_CLASS (klass),
                                            G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                            G_TYPE_NONE, 0);
  signals[SIGNAL_CLOSED] = g_signal_new ("closed", G_TYPE_FROM_CLASS (klass),
                                         G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                         G_TYPE_NONE, 0);
}

static void
od_conn_stream_init (OdConnStream *self)
{
}

OdConnStream *
od_conn_stream_new (GIOStream *base)
{
  OdConnStream *self = g_object_new (OD_TYPE_CONN_STREAM, NULL);
  OdConnInput *input = g_object_new (OD_TYPE_CONN_INPUT, NULL);
  OdConnOutput *output = g_object_new (OD_TYPE_CONN_OUTPUT, NULL);

  self->base = g_object_ref (base);
  input->base = g_object_ref (g_io_stream_get_input_stream (base));
  g_set_weak_pointer (&input->owner, self);
  output->base = g_object_ref (g_io_stream_get_output_stream (base));
  if (G_IS_SOCKET_CONNECTION (base))
    {
      output->socket = g_object_ref (g_socket_connection_get_socket (G_SOCKET_CONNECTION (base)));
      self->watch = watch_new (output->socket);
    }
  g_set_weak_pointer (&output->owner, self);
  self->input = G_INPUT_STREAM (input);
  self->output = G_OUTPUT_STREAM (output);
  return self;
}

GIOStream *
od_conn_stream_get_base (OdConnStream *self)
{
  return self->base;
}

void
od_conn_stream_set_idle (OdConnStream *self,
                         gboolean      idle)
{
  self->idle = idle;
  /* A new request starts with no promise of a body. */
  self->body_follows = FALSE;
}

void
od_conn_stream_set_body_follows (OdConnStream *self)
{
  self->body_follows = TRUE;
}

gboolean
od_conn_stream_get_peer_gone (OdConnStream *self)
{
  return self->peer_gone;
}

gint64
od_conn_stream_get_write_blocked_since (OdConnStream *self)
{
  return self->write_blocked_since;
}

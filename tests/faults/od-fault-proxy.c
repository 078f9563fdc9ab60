/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-fault-proxy.h"

#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define POLL_MS 20

typedef struct
{
  OdFaultProxy   *proxy;
  guint           id;
  int             client_fd;
  int             server_fd;
  OdFaultConnKind kind;
  guint64         sent[2];   /* by OdFaultDirection */
  GThread        *thread;
  FILE           *dump;      /* OD_FAULT_DUMP: the bytes to the client */
  gboolean        cut;
} Conn;

struct _OdFaultProxy
{
  GMutex           lock;
  int              listen_fd;
  guint            port;
  guint            upstream_port;
  gint             stop;
  GThread         *accept_thread;
  GPtrArray       *conns;       /* Conn, all ever accepted (joined at free) */
  guint            next_id;

  /* Faults, under lock. */
  gboolean         cut_armed[2];  /* by OdFaultDirection */
  guint64          cut_remaining[2];
  gboolean         cut_reset[2];
  guint            n_cuts;
  OdFaultCut       last_cut;
  guint            drop_next;
  guint            n_drops;
  guint            max_delay_ms;
  guint            max_piece;
  guint            stall_below;  /* connections with id < this are stalled */
  OdFaultProbeFunc probe;
  gpointer         probe_data;
};

const char *
od_fault_conn_kind_name (OdFaultConnKind kind)
{
  static const char *names[] = { "unknown", "stream", "events", "head", "command", "other" };

  return kind < OD_FAULT_CONN_N ? names[kind] : "?";
}

static void
close_fd (int      fd,
          gboolean reset)
{
  if (fd < 0)
    return;
  if (reset)
    {
      struct linger lg = { 1, 0 };

      setsockopt (fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
  close (fd);
}

static gboolean
write_all (int         fd,
           const char *buf,
           gsize       len)
{
  while (len > 0)
    {
      ssize_t n = send (fd, buf, len, MSG_NOSIGNAL);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      buf += n;
      len -= n;
    }
  return TRUE;
}

static OdFaultConnKind
classify (const char *buf,
          gsize       len)
{
  g_autofree char *line = g_strndup (buf, MIN (len, 64));

  if (g_str_has_prefix (line, "GET /v1/events/stream"))
    return OD_FAULT_CONN_STREAM;
  if (g_str_has_prefix (line, "GET /v1/events"))
    return OD_FAULT_CONN_EVENTS;
  if (g_str_has_prefix (line, "GET /v1/head"))
    return OD_FAULT_CONN_HEAD;
  if (g_str_has_prefix (line, "POST /v1/commands"))
    return OD_FAULT_CONN_COMMAND;
  return OD_FAULT_CONN_OTHER;
}

/* Forwards len bytes one way; returns FALSE when the connection is to be
 * closed (a cut, or the peer went away). */
static gboolean
forward (Conn             *c,
         OdFaultDirection  dir,
         const char       *buf,
         gsize             len)
{
  OdFaultProxy *p = c->proxy;
  int to = dir == OD_FAULT_TO_SERVER ? c->server_fd : c->client_fd;
  gsize pass = len;
  gboolean cut = FALSE, reset = FALSE;
  guint max_delay, max_piece;

  g_mutex_lock (&p->lock);
  if (dir == OD_FAULT_TO_SERVER && c->kind == OD_FAULT_CONN_UNKNOWN)
    c->kind = classify (buf, len);
  if (p->cut_armed[dir])
    {
      if (p->cut_remaining[dir] < len)
        {
          pass = p->cut_remaining[dir];
          cut = TRUE;
          reset = p->cut_reset[dir];
          p->cut_armed[dir] = FALSE;
        }
      else
        p->cut_remaining[dir] -= len;
    }
  max_delay = p->max_delay_ms;
  max_piece = p->max_piece;
  g_mutex_unlock (&p->lock);

  if (dir == OD_FAULT_TO_CLIENT && max_piece > 0)
    {
      gsize done = 0;

      while (done < pass)
        {
          /* Not inside MIN (): it would draw twice. */
          gsize want = (gsize) g_random_int_range (1, max_piece + 1);
          gsize piece = MIN (pass - done, want);

          if (max_delay > 0)
            g_usleep (g_random_int_range (0, max_delay + 1) * 1000);
          if (c->dump)
            fwrite (buf + done, 1, piece, c->dump);
          if (!write_all (to, buf + done, piece))
            return FALSE;
          done += piece;
        }
    }
  else
    {
      if (dir == OD_FAULT_TO_CLIENT && c->dump)
        fwrite (buf, 1, pass, c->dump);
      if (pass > 0 && !write_all (to, buf, pass))
        return FALSE;
    }

  if (cut)
    {
      OdFaultCut record = { 0 };

      record.time = g_get_monotonic_time ();
      record.direction = dir;
      record.reset = reset;
      g_mutex_lock (&p->lock);
      record.kind = c->kind;
      record.conn_offset = c->sent[dir] + pass;
      g_mutex_unlock (&p->lock);
      /* The probe runs before the connection closes, so that it sees the
       * state of the moment of the cut. */
      if (p->probe)
        record.probe = p->probe (p->probe_data);
      c->cut = TRUE;
      close_fd (c->client_fd, reset);
      close_fd (c->server_fd, reset);
      c->client_fd = c->server_fd = -1;
      g_mutex_lock (&p->lock);
      p->last_cut = record;
      p->n_cuts++;
      g_mutex_unlock (&p->lock);
      return FALSE;
    }
  c->sent[dir] += pass;
  return TRUE;
}

static gpointer
conn_main (gpointer data)
{
  Conn *c = data;
  OdFaultProxy *p = c->proxy;
  char *buf = g_malloc (64 * 1024);

  while (!g_atomic_int_get (&p->stop))
    {
      struct pollfd fds[2];
      gboolean stalled;
      int n;

      g_mutex_lock (&p->lock);
      stalled = c->id < p->stall_below;
      g_mutex_unlock (&p->lock);
      fds[0] = (struct pollfd) { .fd = c->client_fd, .events = stalled ? 0 : POLLIN };
      fds[1] = (struct pollfd) { .fd = c->server_fd, .events = stalled ? 0 : POLLIN };
      n = poll (fds, 2, POLL_MS);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        break;
      if (stalled)
        {
          /* A stalled connection passes nothing, but notices a client
           * that gives up on it. */
          if (fds[0].revents & (POLLHUP | POLLERR))
            break;
          {
            char probe;
            ssize_t r = recv (c->client_fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);

            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
              break;
          }
          continue;
        }
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR))
        {
          ssize_t r = recv (c->client_fd, buf, 64 * 1024, 0);

          if (r <= 0 || !forward (c, OD_FAULT_TO_SERVER, buf, r))
            break;
        }
      if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
        {
          ssize_t r;

          r = recv (c->server_fd, buf, 64 * 1024, 0);

          if (r <= 0 || !forward (c, OD_FAULT_TO_CLIENT, buf, r))
            break;
        }
    }
  close_fd (c->client_fd, FALSE);
  close_fd (c->server_fd, FALSE);
  c->client_fd = c->server_fd = -1;
  if (c->dump)
    {
      fprintf (c->dump, "\n<<<closed: %s, %" G_GUINT64_FORMAT " bytes%s>>>\n",
               od_fault_conn_kind_name (c->kind), c->sent[OD_FAULT_TO_CLIENT],
               c->cut ? ", cut" : "");
      fclose (c->dump);
    }
  g_free (buf);
  return NULL;
}

static int
connect_upstream (guint port)
{
  struct sockaddr_in addr = { 0 };
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;

  addr.sin_family = AF_INET;
  addr.sin_port = htons (port);
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (fd < 0)
    return -1;
  if (connect (fd, (struct sockaddr *) &addr, sizeof addr) < 0)
    {
      close (fd);
      return -1;
    }
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static gpointer
accept_main (gpointer data)
{
  OdFaultProxy *p = data;

  while (!g_atomic_int_get (&p->stop))
    {
      struct pollfd pfd = { .fd = p->listen_fd, .events = POLLIN };
      int fd, up, one = 1;
      gboolean drop;
      Conn *c;

      if (poll (&pfd, 1, POLL_MS) <= 0)
        continue;
      fd = accept (p->listen_fd, NULL, NULL);
      if (fd < 0)
        continue;
      g_mutex_lock (&p->lock);
      drop = p->drop_next > 0;
      if (drop)
        {
          p->drop_next--;
          p->n_drops++;
        }
      g_mutex_unlock (&p->lock);
      if (drop)
        {
          close_fd (fd, TRUE);
          continue;
        }
      up = connect_upstream (p->upstream_port);
      if (up < 0)
        {
          close_fd (fd, TRUE);
          continue;
        }
      setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      c = g_new0 (Conn, 1);
      c->proxy = p;
      c->client_fd = fd;
      c->server_fd = up;
      g_mutex_lock (&p->lock);
      c->id = p->next_id++;
      g_ptr_array_add (p->conns, c);
      g_mutex_unlock (&p->lock);
      if (g_getenv ("OD_FAULT_DUMP"))
        {
          g_autofree char *name = g_strdup_printf ("%s/conn-%05u", g_getenv ("OD_FAULT_DUMP"), c->id);

          c->dump = fopen (name, "wb");
        }
      c->thread = g_thread_new ("fault-conn", conn_main, c);
    }
  return NULL;
}

OdFaultProxy *
od_fault_proxy_new (guint upstream_port)
{
  OdFaultProxy *p = g_new0 (OdFaultProxy, 1);
  struct sockaddr_in addr = { 0 };
  socklen_t len = sizeof addr;

  g_mutex_init (&p->lock);
  p->upstream_port = upstream_port;
  p->conns = g_ptr_array_new ();
  p->listen_fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  g_assert_cmpint (p->listen_fd, >=, 0);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  g_assert_cmpint (bind (p->listen_fd, (struct sockaddr *) &addr, sizeof addr), ==, 0);
  g_assert_cmpint (listen (p->listen_fd, 128), ==, 0);
  g_assert_cmpint (getsockname (p->listen_fd, (struct sockaddr *) &addr, &len), ==, 0);
  p->port = ntohs (addr.sin_port);
  p->accept_thread = g_thread_new ("fault-accept", accept_main, p);
  return p;
}

void
od_fault_proxy_free (OdFaultProxy *p)
{
  g_atomic_int_set (&p->stop, 1);
  g_thread_join (p->accept_thread);
  for (guint i = 0; i < p->conns->len; i++)
    {
      Conn *c = g_ptr_array_index (p->conns, i);

      g_thread_join (c->thread);
      g_free (c);
    }
  g_ptr_array_unref (p->conns);
  close (p->listen_fd);
  g_mutex_clear (&p->lock);
  g_free (p);
}

guint
od_fault_proxy_get_port (OdFaultProxy *p)
{
  return p->port;
}

char *
od_fault_proxy_get_url (OdFaultProxy *p)
{
  return g_strdup_printf ("http://127.0.0.1:%u", p->port);
}

void
od_fault_proxy_set_probe (OdFaultProxy     *p,
                          OdFaultProbeFunc  func,
                          gpointer          user_data)
{
  g_mutex_lock (&p->lock);
  p->probe = func;
  p->probe_data = user_data;
  g_mutex_unlock (&p->lock);
}

void
od_fault_proxy_arm_cut (OdFaultProxy     *p,
                        OdFaultDirection  direction,
                        guint64           offset,
                        gboolean          reset)
{
  g_mutex_lock (&p->lock);
  p->cut_armed[direction] = TRUE;
  p->cut_remaining[direction] = offset;
  p->cut_reset[direction] = reset;
  g_mutex_unlock (&p->lock);
}

guint
od_fault_proxy_get_cuts (OdFaultProxy *p,
                         OdFaultCut   *last)
{
  guint n;

  g_mutex_lock (&p->lock);
  n = p->n_cuts;
  if (last)
    *last = p->last_cut;
  g_mutex_unlock (&p->lock);
  return n;
}

void
od_fault_proxy_drop_next (OdFaultProxy *p,
                          guint         n)
{
  g_mutex_lock (&p->lock);
  p->drop_next = n;
  g_mutex_unlock (&p->lock);
}

guint
od_fault_proxy_get_drops (OdFaultProxy *p)
{
  guint n;

  g_mutex_lock (&p->lock);
  n = p->n_drops;
  g_mutex_unlock (&p->lock);
  return n;
}

void
od_fault_proxy_set_delay (OdFaultProxy *p,
                          guint         max_delay_ms,
                          guint         max_piece)
{
  g_mutex_lock (&p->lock);
  p->max_delay_ms = max_delay_ms;
  p->max_piece = max_piece;
  g_mutex_unlock (&p->lock);
}

void
od_fault_proxy_stall (OdFaultProxy *p,
                      gboolean      stalled)
{
  g_mutex_lock (&p->lock);
  p->stall_below = stalled ? p->next_id : 0;
  g_mutex_unlock (&p->lock);
}

guint
od_fault_proxy_get_connections (OdFaultProxy *p)
{
  guint n;

  g_mutex_lock (&p->lock);
  n = p->next_id;
  g_mutex_unlock (&p->lock);
  return n;
}

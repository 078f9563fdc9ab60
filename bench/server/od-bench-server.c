/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Benchmarks of orderdesk-server; docs/benchmarks.md has the commands. */
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "od-protocol.h"
#include "od-store.h"

static char *opt_url = NULL;
static char *opt_token = NULL;
static char *opt_store = NULL;
static int opt_clients = 16;
static double opt_seconds = 10;
static int opt_events = 1000000;
static int opt_subscribers = 1000;
static int opt_pid = 0;
static gboolean opt_one_thread = FALSE;

static const GOptionEntry entries[] = {
  { "url", 0, 0, G_OPTION_ARG_STRING, &opt_url, "Server base URL", "URL" },
  { "token", 0, 0, G_OPTION_ARG_STRING, &opt_token, "Bearer token", "TOKEN" },
  { "store", 0, 0, G_OPTION_ARG_STRING, &opt_store, "Store URI (preload)", "URI" },
  { "clients", 0, 0, G_OPTION_ARG_INT, &opt_clients, "Concurrent clients (commands)", "N" },
  { "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &opt_seconds, "Duration (commands)", "S" },
  { "events", 0, 0, G_OPTION_ARG_INT, &opt_events, "Events to preload", "N" },
  { "subscribers", 0, 0, G_OPTION_ARG_INT, &opt_subscribers, "Idle subscribers", "N" },
  { "pid", 0, 0, G_OPTION_ARG_INT, &opt_pid, "Server pid, for its RSS", "PID" },
  { "one-thread", 0, 0, G_OPTION_ARG_NONE, &opt_one_thread,
    "All clients on one thread, as redis-benchmark runs them (commands)", NULL },
  { NULL }
};

static long
rss_kib (int pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/status", pid);
  g_autofree char *text = NULL;
  const char *line;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return -1;
  line = strstr (text, "VmRSS:");
  return line ? atol (line + 6) : -1;
}

/* ---------------------------------------------------------------- */

static GSocketConnection *
connect_to (GUri *uri)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GError) error = NULL;
  GSocketConnection *connection;

  connection = g_socket_client_connect_to_host (client, g_uri_get_host (uri), g_uri_get_port (uri),
                                                NULL, &error);
  if (connection == NULL)
    g_error ("connect: %s", error->message);
  g_socket_set_option (g_socket_connection_get_socket (connection), IPPROTO_TCP, 1 /* NODELAY */,
                       1, NULL);
  return connection;
}

/* One recv () into BUF; -1 at the end or on an error. */
static gssize
recv_more (int      fd,
           GString *buf)
{
  char tmp[16384];
  gssize n;

  do
    n = recv (fd, tmp, sizeof tmp, 0);
  while (n < 0 && errno == EINTR);
  if (n > 0)
    g_string_append_len (buf, tmp, n);
  return n > 0 ? n : -1;
}

/* The status of the HTTP response (with Content-Length) at the start of
 * BUF, which is then removed from BUF; 0 while it is incomplete. */
static int
take_response (GString *buf)
{
  char *end = strstr (buf->str, "\r\n\r\n");
  const char *cl;
  gsize header_len, body_len;
  int status;

  if (end == NULL)
    return 0;
  cl = g_strstr_len (buf->str, end - buf->str, "Content-Length: ");
  header_len = end + 4 - buf->str;
  body_len = cl ? strtoul (cl + 16, NULL, 10) : 0;
  if (buf->len < header_len + body_len)
    return 0;
  status = atoi (buf->str + 9);
  g_string_erase (buf, 0, header_len + body_len);
  return status;
}

/* Reads one HTTP response with Content-Length; returns its status. */
static int
read_response (int      fd,
               GString *buf)
{
  int status;

  while ((status = take_response (buf)) == 0)
    if (recv_more (fd, buf) < 0)
      return -1;
  return status;
}

/* The next request of a client: a CreateOrder, then four AddItem to it. */
static char *
next_request (char   order_id[OD_UUID_LEN + 1],
              guint *step)
{
  g_autofree char *body = NULL;
  g_autofree char *key = g_uuid_string_random ();

  if (*step % 5 == 0)
    {
      od_uuid_v7_fill (order_id, g_get_real_time () / 1000);
      body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                              "{\"customer_name\":\"Bench Client\",\"customer_email\":"
                              "\"bench@example.com\",\"currency\":\"EUR\"}}", order_id);
    }
  else
    body = g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":"
                            "\"SKU-%u\",\"name\":\"Bench item\",\"quantity\":1,"
                            "\"unit_price_cents\":999}}", order_id, *step % 5);
  (*step)++;
  return g_strdup_printf ("POST /v1/commands HTTP/1.1\r\nHost: bench\r\n"
                          "Authorization: Bearer %s\r\nIdempotency-Key: %s\r\n"
                          "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                          opt_token, key, strlen (body), body);
}

static void
send_all (int         fd,
          const char *request)
{
  if (send (fd, request, strlen (request), MSG_NOSIGNAL) != (gssize) strlen (request))
    g_error ("send failed");
}

typedef struct
{
  GUri    *uri;
  gint64   deadline;
  guint    ok;
  guint    failed;
  GArray  *latencies; /* gint64 usec */
} Client;

static gpointer
client_thread (gpointer data)
{
  Client *c = data;
  g_autoptr(GSocketConnection) connection = connect_to (c->uri);
  int fd = g_socket_get_fd (g_socket_connection_get_socket (connection));
  g_autoptr(GString) buf = g_string_new (NULL);
  char order_id[OD_UUID_LEN + 1] = "";
  guint step = 0;

  /* Plain blocking calls, one send () and mostly one recv () a command:
   * GSocket's would add a poll () and a failed recv () to each, CPU
   * taken from the server on this two-core machine. */
  fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) & ~O_NONBLOCK);

  while (g_get_monotonic_time () < c->deadline)
    {
      g_autofree char *request = next_request (order_id, &step);
      gint64 start;
      int status;

      start = g_get_monotonic_time ();
      send_all (fd, request);
      status = read_response (fd, buf);
      if (status < 0)
        g_error ("connection closed");
      if (status == 200)
        {
          gint64 latency = g_get_monotonic_time () - start;

          c->ok++;
          g_array_append_val (c->latencies, latency);
        }
      else
        c->failed++;
    }
  return NULL;
}

/* --one-thread: the clients' connections on one epoll loop, one request
 * in flight on each, as redis-benchmark runs its clients.  Sixteen
 * blocking threads cost the load about twice the CPU a command on two
 * cores (a context switch an answer), and that CPU is the server's. */
typedef struct
{
  Client  *client;
  int      fd;
  GString *buf;
  char     order_id[OD_UUID_LEN + 1];
  guint    step;
  gint64   start;
} LoopConn;

static void
loop_send (LoopConn *conn)
{
  g_autofree char *request = next_request (conn->order_id, &conn->step);

  conn->start = g_get_monotonic_time ();
  send_all (conn->fd, request);
}

static void
clients_loop (Client *clients,
              int     n)
{
  g_autoptr(GPtrArray) connections = g_ptr_array_new_with_free_func (g_object_unref);
  LoopConn *conns = g_new0 (LoopConn, n);
  int epfd = epoll_create1 (EPOLL_CLOEXEC);
  int open = n;

  if (epfd < 0)
    g_error ("epoll_create1: %s", g_strerror (errno));
  for (int i = 0; i < n; i++)
    {
      GSocketConnection *connection = connect_to (clients[i].uri);
      struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &conns[i] };

      g_ptr_array_add (connections, connection);
      conns[i].client = &clients[i];
      conns[i].fd = g_socket_get_fd (g_socket_connection_get_socket (connection));
      fcntl (conns[i].fd, F_SETFL, fcntl (conns[i].fd, F_GETFL) & ~O_NONBLOCK);
      conns[i].buf = g_string_new (NULL);
      if (epoll_ctl (epfd, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0)
        g_error ("epoll_ctl: %s", g_strerror (errno));
    }
  /* Blocking sockets: a request is small and its socket's buffer empty,
   * so a send () never waits, and a recv () runs only when epoll says
   * there is something to read. */
  for (int i = 0; i < n; i++)
    loop_send (&conns[i]);
  while (open > 0)
    {
      struct epoll_event events[64];
      int ready = epoll_wait (epfd, events, G_N_ELEMENTS (events), -1);

      if (ready < 0 && errno == EINTR)
        continue;
      if (ready < 0)
        g_error ("epoll_wait: %s", g_strerror (errno));
      for (int e = 0; e < ready; e++)
        {
          LoopConn *conn = events[e].data.ptr;
          Client *c = conn->client;
          int status;

          if (recv_more (conn->fd, conn->buf) < 0)
            g_error ("connection closed");
          status = take_response (conn->buf);
          if (status == 0)
            continue;
          if (status == 200)
            {
              gint64 latency = g_get_monotonic_time () - conn->start;

              c->ok++;
              g_array_append_val (c->latencies, latency);
            }
          else
            c->failed++;
          if (conn->buf->len > 0)
            g_error ("an answer nobody asked for");
          if (g_get_monotonic_time () < c->deadline)
            loop_send (conn);
          else
            {
              epoll_ctl (epfd, EPOLL_CTL_DEL, conn->fd, NULL);
              open--;
            }
        }
    }
  close (epfd);
  for (int i = 0; i < n; i++)
    g_string_free (conns[i].buf, TRUE);
  g_free (conns);
}

static int
compare_gint64 (gconstpointer a,
                gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

static double
process_cpu_s (void)
{
  struct rusage usage;

  getrusage (RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6
         + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

static int
bench_commands (void)
{
  g_autoptr(GUri) uri = g_uri_parse (opt_url, G_URI_FLAGS_NONE, NULL);
  g_autoptr(GArray) all = g_array_new (FALSE, FALSE, sizeof (gint64));
  Client *clients = g_new0 (Client, opt_clients);
  GThread **threads = g_new0 (GThread *, opt_clients);
  gint64 start = g_get_monotonic_time ();
  guint ok = 0, failed = 0;
  double elapsed;
  double cpu_start = process_cpu_s ();

  for (int i = 0; i < opt_clients; i++)
    {
      clients[i].uri = uri;
      clients[i].deadline = start + (gint64) (opt_seconds * G_USEC_PER_SEC);
      clients[i].latencies = g_array_new (FALSE, FALSE, sizeof (gint64));
      if (!opt_one_thread)
        threads[i] = g_thread_new ("client", client_thread, &clients[i]);
    }
  if (opt_one_thread)
    clients_loop (clients, opt_clients);
  for (int i = 0; i < opt_clients; i++)
    {
      if (threads[i] != NULL)
        g_thread_join (threads[i]);
      ok += clients[i].ok;
      failed += clients[i].failed;
      g_array_append_vals (all, clients[i].latencies->data, clients[i].latencies->len);
      g_array_unref (clients[i].latencies);
    }
  elapsed = (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC;
  g_array_sort (all, compare_gint64);
  printf ("clients=%d load=%s seconds=%.1f accepted=%u refused=%u commands/s=%.0f",
          opt_clients, opt_one_thread ? "one-thread" : "threads", elapsed, ok, failed, ok / elapsed);
  if (all->len > 0)
    printf (" p50=%.2fms p99=%.2fms",
            g_array_index (all, gint64, all->len / 2) / 1000.0,
            g_array_index (all, gint64, (all->len * 99) / 100) / 1000.0);
  /* The load's own CPU: it shares the machine's cores with the server. */
  printf (" client-cpu-us/command=%.1f\n", (process_cpu_s () - cpu_start) * 1e6 / MAX (ok + failed, 1));
  g_free (clients);
  g_free (threads);
  return failed == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- */

static gint64
get_head (GUri *uri)
{
  g_autoptr(GSocketConnection) connection = connect_to (uri);
  g_autofree char *request = g_strdup_printf ("GET /v1/head HTTP/1.1\r\nHost: bench\r\n"
                                              "Authorization: Bearer %s\r\n\r\n", opt_token);
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (connection));
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (connection));
  g_autoptr(GString) seen = g_string_new (NULL);
  const char *head;

  g_output_stream_write_all (out, request, strlen (request), NULL, NULL, NULL);
  while ((head = strstr (seen->str, "\"head\":")) == NULL || strchr (head, '}') == NULL)
    {
      char buf[4096];
      gssize n = g_input_stream_read (in, buf, sizeof buf, NULL, NULL);

      if (n <= 0)
        g_error ("head: no answer: %s", seen->str);
      g_string_append_len (seen, buf, n);
    }
  return g_ascii_strtoll (head + 7, NULL, 10);
}

static GSocketConnection *
open_stream (GUri   *uri,
             gint64  after)
{
  GSocketConnection *connection = connect_to (uri);
  g_autofree char *request = g_strdup_printf ("GET /v1/events/stream?after=%" G_GINT64_FORMAT
                                              " HTTP/1.1\r\nHost: bench\r\nAuthorization: "
                                              "Bearer %s\r\n\r\n", after, opt_token);

  g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (connection)), request,
                             strlen (request), NULL, NULL, NULL);
  return connection;
}

/* Reads the stream from 0 in 64 KiB blocks, counting "id:" lines at line
 * starts, until the event at the head has arrived. */
static int
bench_replay (void)
{
  g_autoptr(GUri) uri = g_uri_parse (opt_url, G_URI_FLAGS_NONE, NULL);
  gint64 head = get_head (uri);
  g_autoptr(GSocketConnection) connection = NULL;
  GInputStream *in;
  gint64 start = g_get_monotonic_time (), first = 0;
  gint64 events = 0, bytes = 0, last_id = 0;
  /* Room for a block after the longest line kept from the last one (an
   * event's line stays under 128 KiB: commands are at most 64 KiB). */
  static char buf[65536 + 128 * 1024];
  gsize carry = 0;
  double elapsed;

  connection = open_stream (uri, 0);
  in = g_io_stream_get_input_stream (G_IO_STREAM (connection));
  while (last_id < head)
    {
      gssize n;
      char *p, *end;

      if (carry == sizeof buf)
        g_error ("a line of the stream is longer than %" G_GSIZE_FORMAT " bytes", sizeof buf);
      n = g_input_stream_read (in, buf + carry, MIN (65536, sizeof buf - carry), NULL, NULL);
      if (n <= 0)
        g_error ("stream ended at %" G_GINT64_FORMAT, last_id);
      if (first == 0)
        first = g_get_monotonic_time ();
      bytes += n;
      end = buf + carry + n;
      p = buf;
      for (;;)
        {
          char *nl = memchr (p, '\n', end - p);

          if (nl == NULL)
            break;
          if (nl - p > 4 && memcmp (p, "id: ", 4) == 0)
            {
              events++;
              last_id = g_ascii_strtoll (p + 4, NULL, 10);
            }
          p = nl + 1;
        }
      carry = end - p;
      memmove (buf, p, carry);
    }
  elapsed = (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC;
  printf ("replayed events=%" G_GINT64_FORMAT " bytes=%" G_GINT64_FORMAT
          " seconds=%.2f events/s=%.0f first-byte=%.1fms\n",
          events, bytes, elapsed, events / elapsed, (first - start) / 1000.0);
  return events >= head ? 0 : 1;
}

/* Asks for the digest of events 0..min(head, 1,000,000) and times the
 * whole request: what a client pays to check that many events, to set
 * against replaying them. */
static int
bench_digest (void)
{
  g_autoptr(GUri) uri = g_uri_parse (opt_url, G_URI_FLAGS_NONE, NULL);
  gint64 head = get_head (uri);
  gint64 upto = MIN (head, 1000000);
  g_autoptr(GSocketConnection) connection = connect_to (uri);
  g_autofree char *request = g_strdup_printf ("GET /v1/events/digest?after=0&upto=%" G_GINT64_FORMAT
                                              " HTTP/1.1\r\nHost: bench\r\nAuthorization: "
                                              "Bearer %s\r\n\r\n", upto, opt_token);
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (connection));
  g_autoptr(GString) seen = g_string_new (NULL);
  gint64 start = g_get_monotonic_time ();
  const char *count;
  double elapsed;

  g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (connection)), request,
                             strlen (request), NULL, NULL, NULL);
  while (strchr (seen->str, '}') == NULL)
    {
      char buf[4096];
      gssize n = g_input_stream_read (in, buf, sizeof buf, NULL, NULL);

      if (n <= 0)
        g_error ("digest: no answer: %s", seen->str);
      g_string_append_len (seen, buf, n);
    }
  elapsed = (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC;
  if ((count = strstr (seen->str, "\"count\":")) == NULL)
    g_error ("digest: %s", seen->str);
  printf ("digest events=%" G_GINT64_FORMAT " seconds=%.2f events/s=%.0f\n",
          g_ascii_strtoll (count + 8, NULL, 10), elapsed,
          g_ascii_strtoll (count + 8, NULL, 10) / elapsed);
  return g_ascii_strtoll (count + 8, NULL, 10) == upto ? 0 : 1;
}

/* Opens N streams at the head, waits until each has its head frame, then
 * reports the server's RSS before and after. */
static int
bench_idle (void)
{
  g_autoptr(GUri) uri = g_uri_parse (opt_url, G_URI_FLAGS_NONE, NULL);
  gint64 head = get_head (uri);
  GPtrArray *streams = g_ptr_array_new_with_free_func (g_object_unref);
  long before = rss_kib (opt_pid);

  for (int i = 0; i < opt_subscribers; i++)
    g_ptr_array_add (streams, open_stream (uri, head));
  for (guint i = 0; i < streams->len; i++)
    {
      GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (g_ptr_array_index (streams, i)));
      g_autoptr(GString) seen = g_string_new (NULL);

      while (strstr (seen->str, "event: head") == NULL)
        {
          char tmp[4096];
          gssize n = g_input_stream_read (in, tmp, sizeof tmp, NULL, NULL);

          if (n <= 0)
            g_error ("subscriber %u closed", i);
          g_string_append_len (seen, tmp, n);
        }
    }
  g_usleep (G_USEC_PER_SEC);
  printf ("subscribers=%d server-rss-before=%ldKiB server-rss-with-subscribers=%ldKiB "
          "per-subscriber=%.1fKiB\n", opt_subscribers, before, rss_kib (opt_pid),
          (rss_kib (opt_pid) - before) / (double) opt_subscribers);
  g_ptr_array_unref (streams);
  return 0;
}

/* ---------------------------------------------------------------- */

/* Fills a store with N events (about five per order, UUIDv7 ids close in
 * time) through the store's own execute path, in big batches. */
static int
bench_preload (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OdStore) store = od_store_open (opt_store, &error);
  gint64 start = g_get_monotonic_time ();
  int done = 0;

  if (store == NULL)
    g_error ("%s", error->message);
  while (done < opt_events)
    {
      g_autoptr(GPtrArray) jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) od_job_free);
      char order_id[OD_UUID_LEN + 1];

      for (int i = 0; i < 10000 && done < opt_events; i++, done++)
        {
          OdCommand *command;

          if (done % 5 == 0)
            {
              od_uuid_v7_fill (order_id, g_get_real_time () / 1000);
              command = od_command_new (OD_COMMAND_CREATE_ORDER, order_id);
              command->customer_name = g_strdup_printf ("Customer %d", done / 5);
              command->customer_email = g_strdup_printf ("c%d@example.com", done / 5);
              command->currency = g_strdup ("EUR");
            }
          else if (done % 5 < 4)
            {
              command = od_command_new (OD_COMMAND_ADD_ITEM, order_id);
              command->sku = g_strdup_printf ("SKU-%d", done % 5);
              command->name = g_strdup ("Preloaded item");
              command->quantity = 1 + done % 3;
              command->unit_price_cents = 100 * (done % 97);
            }
          else
            command = od_command_new (OD_COMMAND_PLACE_ORDER, order_id);
          g_ptr_array_add (jobs, od_job_new (command, "bench", NULL, NULL, 0));
        }
      if (!od_store_execute (store, (OdJob **) jobs->pdata, jobs->len, &error))
        g_error ("%s", error->message);
    }
  printf ("preloaded events=%d seconds=%.1f\n", done,
          (g_get_monotonic_time () - start) / (double) G_USEC_PER_SEC);
  return 0;
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GOptionContext) context = g_option_context_new ("commands|replay|digest|idle|preload");
  g_autoptr(GError) error = NULL;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || argc != 2)
    {
      g_printerr ("%s\n", error ? error->message : "usage: od-bench-server MODE [options]");
      return 2;
    }
  if (g_str_equal (argv[1], "preload"))
    return bench_preload ();
  if (opt_url == NULL || opt_token == NULL)
    {
      g_printerr ("--url and --token are required\n");
      return 2;
    }
  if (g_str_equal (argv[1], "commands"))
    return bench_commands ();
  if (g_str_equal (argv[1], "replay"))
    return bench_replay ();
  if (g_str_equal (argv[1], "idle"))
    return bench_idle ();
  if (g_str_equal (argv[1], "digest"))
    return bench_digest ();
  g_printerr ("unknown mode %s\n", argv[1]);
  return 2;
}

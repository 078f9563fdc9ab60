/* SPDX-License-Identifier: GPL-3.0-or-later */
/* What this machine can do for each of OrderDesk's hot paths, measured with
 * nothing of ours in the way (issue 15).  bench/ceilings/run.sh runs each
 * against our own path; docs/benchmarks.md has the figures.
 *
 *   od-ceiling store --dir DIR --batch B --seconds S
 *   od-ceiling fdatasync --dir DIR --seconds S
 *   od-ceiling capture --url URL --token T --events N --out FILE
 *   od-ceiling sendfile --file FILE --events N
 *   od-ceiling cache --source CACHE --out FILE [--indexes-after]
 *   od-ceiling http --out URL-FILE [--threads N] [--conn-stream]
 */
#include "od-core.h"
#include "od-conn-stream.h"
#include "od-wal-vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <glib-unix.h>
#include <libsoup/soup.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

static char *opt_dir = NULL;
static char *opt_url = NULL;
static char *opt_token = NULL;
static char *opt_file = NULL;
static char *opt_out = NULL;
static char *opt_source = NULL;
static int opt_batch = 16;
static double opt_seconds = 3;
static gint64 opt_events = 1000000;
static gboolean opt_indexes_after = FALSE;
static gboolean opt_sqlite_defaults = FALSE;
static int opt_threads = 1;
static gboolean opt_conn_stream = FALSE;

static const GOptionEntry entries[] = {
  { "dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_dir, "Directory for the files (store, fdatasync)", "DIR" },
  { "url", 0, 0, G_OPTION_ARG_STRING, &opt_url, "Server base URL (capture)", "URL" },
  { "token", 0, 0, G_OPTION_ARG_STRING, &opt_token, "Bearer token (capture)", "TOKEN" },
  { "file", 0, 0, G_OPTION_ARG_FILENAME, &opt_file, "Captured bytes (sendfile)", "FILE" },
  { "out", 0, 0, G_OPTION_ARG_FILENAME, &opt_out,
    "Output file (capture, cache; the base URL for http)", "FILE" },
  { "source", 0, 0, G_OPTION_ARG_FILENAME, &opt_source, "A cache filled by a catch-up (cache)", "FILE" },
  { "batch", 0, 0, G_OPTION_ARG_INT, &opt_batch, "Commands a commit (store)", "N" },
  { "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &opt_seconds, "Duration (store, fdatasync)", "S" },
  { "events", 0, 0, G_OPTION_ARG_INT64, &opt_events, "Events to capture or expect", "N" },
  { "threads", 0, 0, G_OPTION_ARG_INT, &opt_threads,
    "HTTP threads, each a SoupServer of its own (http)", "N" },
  { "conn-stream", 0, 0, G_OPTION_ARG_NONE, &opt_conn_stream,
    "Accept as orderdesk-server does: each connection in an OdConnStream (http)", NULL },
  { "sqlite-defaults", 0, 0, G_OPTION_ARG_NONE, &opt_sqlite_defaults,
    "SQLite's own VFS and checkpoint interval, as the store had them until session 14 (store)",
    NULL },
  { "indexes-after", 0, 0, G_OPTION_ARG_NONE, &opt_indexes_after,
    "Secondary indexes and triggers built after the rows, in the same transaction (cache)", NULL },
  { NULL }
};

static double
now_s (void)
{
  return g_get_monotonic_time () / 1e6;
}

/* User + system CPU seconds of this process (or of its waited-for
 * children). */
static double
cpu_s (int who)
{
  struct rusage ru;

  getrusage (who, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
         + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void
exec_or_die (sqlite3    *db,
             const char *sql)
{
  char *message = NULL;

  if (sqlite3_exec (db, sql, NULL, NULL, &message) != SQLITE_OK)
    g_error ("%s: %s", sql, message);
}

static sqlite3_stmt *
prepare_or_die (sqlite3    *db,
                const char *sql)
{
  sqlite3_stmt *st = NULL;

  if (sqlite3_prepare_v3 (db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
    g_error ("%s: %s", sql, sqlite3_errmsg (db));
  return st;
}

static void
step_done (sqlite3_stmt *st)
{
  if (sqlite3_step (st) != SQLITE_DONE)
    g_error ("%s: %s", sqlite3_sql (st), sqlite3_errmsg (sqlite3_db_handle (st)));
  sqlite3_reset (st);
}

/* ---------------------------------------------------------------- */

/* The store's VFS, pragmas, schema and statements, copied from
 * src/server/od-store-sqlite.c (open_db, migrate, od_store_sqlite_new),
 * and the statements one accepted command with an Idempotency-Key runs
 * there: look the key up, read the order's events when it is not yet in
 * the writer's memory (each CreateOrder), insert the event, store the
 * answer, and every 256 events the block of their frames.  The commands
 * are those of od-bench-server: a CreateOrder then four AddItem. */
static int
ceiling_store (void)
{
  g_autofree char *path = g_build_filename (opt_dir, "ceiling-store.sqlite", NULL);
  sqlite3 *db = NULL;
  sqlite3_stmt *begin, *commit, *idem_get, *idem_put, *insert, *order_events, *block_put;
  /* The block of frames the store keeps (FRAME_BLOCK events a row): the
   * same number of bytes, not formatted (the server formats each frame
   * for its live ring anyway).  187 bytes is what a frame adds to its
   * data (id and event lines, the event's members). */
  g_autoptr(GString) block = g_string_new (NULL);
  static const char frame_rest[188] = { [0 ... 186] = 'f' };
  char order_id[OD_UUID_LEN + 1] = "";
  gint64 position = 0, version = 0, done = 0;
  double start, cpu_start, elapsed, cpu;

  if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                       opt_sqlite_defaults ? NULL : od_wal_vfs_register ()) != SQLITE_OK)
    g_error ("cannot open %s", path);
  exec_or_die (db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-8192;"
                   "PRAGMA temp_store=MEMORY;");
  if (!opt_sqlite_defaults)
    exec_or_die (db, "PRAGMA wal_autocheckpoint=10000;");
  exec_or_die (db,
               "BEGIN IMMEDIATE;"
               "CREATE TABLE IF NOT EXISTS events ("
               "  position INTEGER PRIMARY KEY,"
               "  prev INTEGER NOT NULL,"
               "  order_id TEXT NOT NULL,"
               "  version INTEGER NOT NULL,"
               "  type TEXT NOT NULL,"
               "  recorded_at TEXT NOT NULL,"
               "  actor TEXT NOT NULL,"
               "  data TEXT NOT NULL,"
               "  UNIQUE (order_id, version));"
               "CREATE TABLE IF NOT EXISTS idempotency ("
               "  actor TEXT NOT NULL,"
               "  key TEXT NOT NULL,"
               "  body_sha256 BLOB NOT NULL,"
               "  status INTEGER NOT NULL,"
               "  response TEXT NOT NULL,"
               "  created_at INTEGER NOT NULL,"
               "  PRIMARY KEY (actor, key)) WITHOUT ROWID;"
               "CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);"
               "CREATE TABLE IF NOT EXISTS frame_blocks ("
               "  block INTEGER PRIMARY KEY,"
               "  frames BLOB NOT NULL);"
               "PRAGMA user_version = 2;"
               "COMMIT;");
  begin = prepare_or_die (db, "BEGIN IMMEDIATE");
  commit = prepare_or_die (db, "COMMIT");
  idem_get = prepare_or_die (db, "SELECT body_sha256, status, response FROM idempotency "
                                 "WHERE actor = ?1 AND key = ?2");
  idem_put = prepare_or_die (db, "INSERT INTO idempotency (actor, key, body_sha256, status, "
                                 "response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  insert = prepare_or_die (db, "INSERT INTO events (position, prev, order_id, version, type, "
                               "recorded_at, actor, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  block_put = prepare_or_die (db, "INSERT OR REPLACE INTO frame_blocks (block, frames) "
                                  "VALUES (?1, ?2)");
  order_events = prepare_or_die (db, "SELECT version, type, data, position, recorded_at FROM "
                                     "events WHERE order_id = ?1 ORDER BY version");

  start = now_s ();
  cpu_start = cpu_s (RUSAGE_SELF);
  while (now_s () - start < opt_seconds)
    {
      g_autofree char *recorded_at = od_timestamp_now ();

      step_done (begin);
      for (int i = 0; i < opt_batch; i++, done++)
        {
          char key[37];
          guint8 sha[32];
          g_autofree char *response = NULL;
          const char *type, *data;

          /* Fresh random keys, like the bench client's. */
          for (guint j = 0; j < sizeof sha; j++)
            sha[j] = g_random_int ();
          g_snprintf (key, sizeof key, "%08x-%04x-4%03x-%04x-%08x%04x", g_random_int (),
                      g_random_int () & 0xffff, g_random_int () & 0xfff,
                      0x8000 | (g_random_int () & 0x3fff), g_random_int (),
                      g_random_int () & 0xffff);
          sqlite3_bind_text (idem_get, 1, "bench", -1, SQLITE_STATIC);
          sqlite3_bind_text (idem_get, 2, key, -1, SQLITE_STATIC);
          if (sqlite3_step (idem_get) != SQLITE_DONE)
            g_error ("key lookup found a row or failed");
          sqlite3_reset (idem_get);

          if (done % 5 == 0)
            {
              od_uuid_v7_fill (order_id, g_get_real_time () / 1000);
              sqlite3_bind_text (order_events, 1, order_id, -1, SQLITE_STATIC);
              if (sqlite3_step (order_events) != SQLITE_DONE)
                g_error ("new order has events or lookup failed");
              sqlite3_reset (order_events);
              version = 0;
              type = "OrderCreated";
              data = "{\"customer_name\":\"Bench Client\",\"customer_email\":"
                     "\"bench@example.com\",\"currency\":\"EUR\"}";
            }
          else
            {
              type = "ItemAdded";
              data = "{\"sku\":\"SKU-1\",\"name\":\"Bench item\",\"quantity\":1,"
                     "\"unit_price_cents\":999}";
            }
          version++;
          sqlite3_bind_int64 (insert, 1, position + 1);
          sqlite3_bind_int64 (insert, 2, position);
          sqlite3_bind_text (insert, 3, order_id, -1, SQLITE_STATIC);
          sqlite3_bind_int64 (insert, 4, version);
          sqlite3_bind_text (insert, 5, type, -1, SQLITE_STATIC);
          sqlite3_bind_text (insert, 6, recorded_at, -1, SQLITE_STATIC);
          sqlite3_bind_text (insert, 7, "bench", -1, SQLITE_STATIC);
          sqlite3_bind_text (insert, 8, data, -1, SQLITE_STATIC);
          step_done (insert);
          position++;
          g_string_append_len (block, frame_rest, 187);
          g_string_append (block, data);
          if (position % 256 == 0)
            {
              sqlite3_bind_int64 (block_put, 1, position / 256 - 1);
              sqlite3_bind_blob (block_put, 2, block->str, block->len, SQLITE_STATIC);
              step_done (block_put);
              g_string_truncate (block, 0);
            }

          response = g_strdup_printf ("{\"order_id\":\"%s\",\"version\":%" G_GINT64_FORMAT
                                      ",\"position\":%" G_GINT64_FORMAT "}", order_id, version,
                                      position);
          sqlite3_bind_text (idem_put, 1, "bench", -1, SQLITE_STATIC);
          sqlite3_bind_text (idem_put, 2, key, -1, SQLITE_STATIC);
          sqlite3_bind_blob (idem_put, 3, sha, sizeof sha, SQLITE_STATIC);
          sqlite3_bind_int (idem_put, 4, 200);
          sqlite3_bind_text (idem_put, 5, response, -1, SQLITE_STATIC);
          sqlite3_bind_int64 (idem_put, 6, g_get_real_time ());
          step_done (idem_put);
        }
      step_done (commit);
    }
  elapsed = now_s () - start;
  cpu = cpu_s (RUSAGE_SELF) - cpu_start;
  printf ("store batch=%d commands=%" G_GINT64_FORMAT " seconds=%.2f commands/s=%.0f "
          "cpu-us/command=%.1f\n", opt_batch, done, elapsed, done / elapsed, cpu * 1e6 / done);
  for (sqlite3_stmt *st = NULL; (st = sqlite3_next_stmt (db, NULL)) != NULL;)
    sqlite3_finalize (st);
  sqlite3_close (db);
  return done > 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- */

/* Appends 4 KiB and waits for it to be on disk, like a WAL commit of a
 * small transaction. */
static int
ceiling_fdatasync (void)
{
  g_autofree char *path = g_build_filename (opt_dir, "ceiling-fdatasync", NULL);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  char block[4096];
  gint64 n = 0;
  double start;

  if (fd < 0)
    g_error ("%s: %s", path, g_strerror (errno));
  memset (block, 'x', sizeof block);
  start = now_s ();
  while (now_s () - start < opt_seconds)
    {
      if (write (fd, block, sizeof block) != sizeof block || fdatasync (fd) != 0)
        g_error ("write/fdatasync: %s", g_strerror (errno));
      n++;
    }
  printf ("fdatasync count=%" G_GINT64_FORMAT " seconds=%.2f fdatasync/s=%.0f\n", n,
          now_s () - start, n / (now_s () - start));
  close (fd);
  g_unlink (path);
  return n > 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- */

static int
connect_loopback (int port)
{
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons (port) };
  int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;

  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (fd < 0 || connect (fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    g_error ("connect to port %d: %s", port, g_strerror (errno));
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void
write_all (int         fd,
           const char *data,
           gsize       len)
{
  while (len > 0)
    {
      gssize n = write (fd, data, len);

      if (n <= 0)
        g_error ("write: %s", g_strerror (errno));
      data += n;
      len -= n;
    }
}

/* Counts "id: N" lines at line starts in a byte stream (what
 * od-bench-server replay counts), carrying a partial line over. */
typedef struct
{
  char   buf[65536 + 4096];
  gsize  carry;
  gint64 events;
  gint64 last_id;
  gint64 bytes;
  gint64 target;   /* capture: the last event wanted */
  gboolean complete; /* its frame has ended (a blank line after its id) */
} Counter;

/* Feeds the n bytes just read at c->buf + c->carry. */
static void
counter_feed (Counter *c,
              gsize    n)
{
  char *p = c->buf, *end = c->buf + c->carry + n;

  c->bytes += n;
  for (;;)
    {
      char *nl = memchr (p, '\n', end - p);

      if (nl == NULL)
        break;
      if (nl - p > 4 && memcmp (p, "id: ", 4) == 0)
        {
          c->events++;
          c->last_id = g_ascii_strtoll (p + 4, NULL, 10);
        }
      else if (nl == p && c->target > 0 && c->last_id >= c->target)
        c->complete = TRUE;
      p = nl + 1;
    }
  c->carry = end - p;
  if (c->carry > 4096)
    g_error ("a line longer than 4 KiB");
  memmove (c->buf, p, c->carry);
}

/* Saves every byte orderdesk-server sends for GET
 * /v1/events/stream?after=0, response head and chunk framing included,
 * until the frame of event N has ended: the bytes the sendfile ceiling
 * serves. */
static int
ceiling_capture (void)
{
  g_autoptr(GUri) uri = g_uri_parse (opt_url, G_URI_FLAGS_NONE, NULL);
  g_autofree char *request = NULL;
  static Counter c;
  FILE *out;
  int fd;

  if (uri == NULL)
    g_error ("bad --url");
  fd = connect_loopback (g_uri_get_port (uri));
  out = fopen (opt_out, "we");
  if (out == NULL)
    g_error ("%s: %s", opt_out, g_strerror (errno));
  request = g_strdup_printf ("GET /v1/events/stream?after=0 HTTP/1.1\r\nHost: bench\r\n"
                             "Authorization: Bearer %s\r\n\r\n", opt_token);
  write_all (fd, request, strlen (request));
  c.target = opt_events;
  while (!c.complete)
    {
      gssize n = read (fd, c.buf + c.carry, 65536);

      if (n <= 0)
        g_error ("stream ended after event %" G_GINT64_FORMAT, c.last_id);
      if (fwrite (c.buf + c.carry, 1, n, out) != (gsize) n)
        g_error ("%s: %s", opt_out, g_strerror (errno));
      counter_feed (&c, n);
    }
  close (fd);
  if (fclose (out) != 0)
    g_error ("%s: %s", opt_out, g_strerror (errno));
  printf ("captured events=%" G_GINT64_FORMAT " bytes=%" G_GINT64_FORMAT "\n", c.events, c.bytes);
  return 0;
}

/* A child process accepts one connection on loopback, reads the request
 * and sendfile()s the captured bytes; this process reads and counts the
 * events as od-bench-server replay does.  Both CPUs are reported. */
static int
ceiling_sendfile (void)
{
  struct sockaddr_in addr = { .sin_family = AF_INET };
  socklen_t addr_len = sizeof addr;
  int listener = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  static Counter c;
  struct rusage child;
  double start, elapsed, cpu_start, server_cpu, reader_cpu;
  int status;
  pid_t pid;
  int fd;

  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  if (listener < 0 || bind (listener, (struct sockaddr *) &addr, sizeof addr) != 0
      || listen (listener, 1) != 0
      || getsockname (listener, (struct sockaddr *) &addr, &addr_len) != 0)
    g_error ("listen: %s", g_strerror (errno));

  pid = fork ();
  if (pid < 0)
    g_error ("fork: %s", g_strerror (errno));
  if (pid == 0)
    {
      int conn = accept (listener, NULL, NULL);
      int file = open (opt_file, O_RDONLY | O_CLOEXEC);
      char request[4096];
      gsize got = 0;
      struct stat st;
      off_t offset = 0;

      if (conn < 0 || file < 0 || fstat (file, &st) != 0)
        _exit (3);
      while (got < sizeof request - 1)
        {
          gssize n = read (conn, request + got, sizeof request - 1 - got);

          if (n <= 0)
            _exit (4);
          got += n;
          request[got] = '\0';
          if (strstr (request, "\r\n\r\n") != NULL)
            break;
        }
      while (offset < st.st_size)
        if (sendfile (conn, file, &offset, st.st_size - offset) <= 0)
          _exit (5);
      close (conn);
      _exit (0);
    }
  close (listener);

  start = now_s ();
  cpu_start = cpu_s (RUSAGE_SELF);
  fd = connect_loopback (ntohs (addr.sin_port));
  {
    static const char request[] = "GET /v1/events/stream?after=0 HTTP/1.1\r\nHost: bench\r\n\r\n";

    write_all (fd, request, strlen (request));
  }
  for (;;)
    {
      gssize n = read (fd, c.buf + c.carry, 65536);

      if (n < 0)
        g_error ("read: %s", g_strerror (errno));
      if (n == 0)
        break;
      counter_feed (&c, n);
    }
  elapsed = now_s () - start;
  reader_cpu = cpu_s (RUSAGE_SELF) - cpu_start;
  close (fd);
  if (wait4 (pid, &status, 0, &child) != pid || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
    g_error ("sendfile server failed (status %d)", status);
  server_cpu = child.ru_utime.tv_sec + child.ru_stime.tv_sec
               + (child.ru_utime.tv_usec + child.ru_stime.tv_usec) / 1e6;
  printf ("sendfile events=%" G_GINT64_FORMAT " bytes=%" G_GINT64_FORMAT " seconds=%.3f "
          "events/s=%.0f server-cpu-us/event=%.3f reader-cpu-us/event=%.3f\n",
          c.events, c.bytes, elapsed, c.events / elapsed,
          server_cpu * 1e6 / MAX (c.events, 1), reader_cpu * 1e6 / MAX (c.events, 1));
  if (c.events < opt_events)
    {
      g_printerr ("expected %" G_GINT64_FORMAT " events\n", opt_events);
      return 1;
    }
  return 0;
}

/* ---------------------------------------------------------------- */

/* Copies every row of one table of src into the same table of dst: the
 * rows are read into memory first (not timed), then inserted by the
 * caller's loop. */
typedef struct
{
  const char    *table;
  int            n_columns;
  GPtrArray     *rows; /* of sqlite3_value ** (n_columns each) */
  sqlite3_stmt  *insert;
} Table;

static void
table_load (Table   *t,
            sqlite3 *src)
{
  g_autofree char *select = g_strdup_printf ("SELECT * FROM %s", t->table);
  sqlite3_stmt *st = prepare_or_die (src, select);
  int rc;

  t->n_columns = sqlite3_column_count (st);
  t->rows = g_ptr_array_new ();
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      sqlite3_value **row = g_new (sqlite3_value *, t->n_columns);

      for (int i = 0; i < t->n_columns; i++)
        row[i] = sqlite3_value_dup (sqlite3_column_value (st, i));
      g_ptr_array_add (t->rows, row);
    }
  if (rc != SQLITE_DONE)
    g_error ("read %s: %s", t->table, sqlite3_errmsg (src));
  sqlite3_finalize (st);
}

static void
table_prepare (Table   *t,
               sqlite3 *dst)
{
  g_autoptr(GString) sql = g_string_new (NULL);

  g_string_printf (sql, "INSERT INTO %s VALUES (", t->table);
  for (int i = 0; i < t->n_columns; i++)
    g_string_append (sql, i == 0 ? "?" : ", ?");
  g_string_append (sql, ")");
  t->insert = prepare_or_die (dst, sql->str);
}

static void
table_insert_row (Table *t,
                  guint  i)
{
  sqlite3_value **row = g_ptr_array_index (t->rows, i);

  for (int j = 0; j < t->n_columns; j++)
    sqlite3_bind_value (t->insert, j + 1, row[j]);
  step_done (t->insert);
}

/* The rows a catch-up left in the source cache (its events, orders and
 * items), inserted into a cold cache whose schema od_cache_open() made
 * (so it is exactly the console's, indexes and triggers included), with
 * the cache writer's pragmas (od-cache.c open_db), in one transaction:
 * the events in log order, each order's row when its first event comes,
 * and each item with its order. */
static int
ceiling_cache (void)
{
  g_autoptr(GError) error = NULL;
  Table events = { "order_events" }, orders = { "orders" }, items = { "order_items" };
  g_autoptr(GHashTable) order_rows = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GHashTable) item_rows = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                                           (GDestroyNotify) g_array_unref);
  sqlite3 *src = NULL, *dst = NULL;
  double start, cpu_start, elapsed, cpu, close_start;
  guint inserted_orders = 0, inserted_items = 0;
  g_autoptr(GPtrArray) drops = NULL;
  g_autoptr(GPtrArray) later = NULL;

  {
    g_autoptr(OdCache) cache = NULL;

    g_unlink (opt_out);
    cache = od_cache_open (opt_out, &error);
    if (cache == NULL)
      g_error ("%s", error->message);
  }
  if (sqlite3_open_v2 (opt_source, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
    g_error ("cannot open %s", opt_source);
  table_load (&events, src);
  table_load (&orders, src);
  table_load (&items, src);
  sqlite3_close (src);
  for (guint i = 0; i < orders.rows->len; i++)
    {
      sqlite3_value **row = g_ptr_array_index (orders.rows, i);

      g_hash_table_insert (order_rows, (char *) sqlite3_value_text (row[0]), GUINT_TO_POINTER (i));
    }
  for (guint i = 0; i < items.rows->len; i++)
    {
      sqlite3_value **row = g_ptr_array_index (items.rows, i);
      const char *order_id = (const char *) sqlite3_value_text (row[0]);
      GArray *list = g_hash_table_lookup (item_rows, order_id);

      if (list == NULL)
        {
          list = g_array_new (FALSE, FALSE, sizeof (guint));
          g_hash_table_insert (item_rows, (char *) order_id, list);
        }
      g_array_append_val (list, i);
    }

  if (sqlite3_open_v2 (opt_out, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
      != SQLITE_OK)
    g_error ("cannot open %s", opt_out);
  exec_or_die (dst, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                    "PRAGMA cache_size=-262144; PRAGMA wal_autocheckpoint=100000;"
                    "PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=OFF;");
  table_prepare (&events, dst);
  table_prepare (&orders, dst);
  table_prepare (&items, dst);

  /* The other way to fill a table in one go: its secondary indexes and
   * insert triggers out while the rows go in, then built from them (the
   * triggers' work done as one statement each), still in the one
   * transaction.  Their definitions are read from the fresh cache, so
   * the result is the same schema. */
  if (opt_indexes_after)
    {
      sqlite3_stmt *st = prepare_or_die (dst,
          "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
          " AND sql IS NOT NULL AND tbl_name IN ('orders', 'order_items', 'order_events')");

      later = g_ptr_array_new_with_free_func (g_free);
      drops = g_ptr_array_new_with_free_func (g_free);
      while (sqlite3_step (st) == SQLITE_ROW)
        {
          g_ptr_array_add (drops, g_strdup_printf ("DROP %s \"%s\"", sqlite3_column_text (st, 0),
                                                   sqlite3_column_text (st, 1)));
          g_ptr_array_add (later, g_strdup ((const char *) sqlite3_column_text (st, 2)));
        }
      sqlite3_finalize (st);
    }

  start = now_s ();
  cpu_start = cpu_s (RUSAGE_SELF);
  exec_or_die (dst, "BEGIN IMMEDIATE");
  for (guint i = 0; drops != NULL && i < drops->len; i++)
    exec_or_die (dst, g_ptr_array_index (drops, i));
  for (guint i = 0; i < events.rows->len; i++)
    {
      sqlite3_value **row = g_ptr_array_index (events.rows, i);
      const char *order_id = (const char *) sqlite3_value_text (row[2]);
      gpointer index;

      table_insert_row (&events, i);
      /* The first event of an order brings its row and its items. */
      if (g_hash_table_steal_extended (order_rows, order_id, NULL, &index))
        {
          GArray *list = g_hash_table_lookup (item_rows, order_id);

          table_insert_row (&orders, GPOINTER_TO_UINT (index));
          inserted_orders++;
          for (guint j = 0; list != NULL && j < list->len; j++, inserted_items++)
            table_insert_row (&items, g_array_index (list, guint, j));
        }
    }
  if (later != NULL)
    {
      /* What the orders' insert trigger does row by row. */
      exec_or_die (dst, "UPDATE status_counts SET n = n + (SELECT count(*) FROM orders"
                        " WHERE orders.status = status_counts.status)");
      exec_or_die (dst, "INSERT INTO order_search (rowid, customer_name, customer_email)"
                        " SELECT rowid, customer_name, customer_email FROM orders");
      for (guint i = 0; i < later->len; i++)
        exec_or_die (dst, g_ptr_array_index (later, i));
    }
  exec_or_die (dst, "UPDATE sync_state SET applied_position = (SELECT max(position) FROM "
                    "order_events) WHERE id = 1");
  exec_or_die (dst, "COMMIT");
  elapsed = now_s () - start;
  cpu = cpu_s (RUSAGE_SELF) - cpu_start;
  /* Only our own statements: the FTS5 tables hold prepared statements
   * of their own on this connection, which they finalize themselves on
   * close (finalizing them here too was a use after free: SIGBUS). */
  sqlite3_finalize (events.insert);
  sqlite3_finalize (orders.insert);
  sqlite3_finalize (items.insert);
  /* Not in the ceiling's time, but said: closing the last connection
   * checkpoints the WAL into the database file and syncs it, which a
   * catch-up measured from the outside (orderdeskctl) pays. */
  close_start = now_s ();
  sqlite3_close (dst);
  printf ("cache%s events=%u orders=%u items=%u seconds=%.2f events/s=%.0f cpu-s=%.2f "
          "cpu-us/event=%.2f close-seconds=%.2f\n", opt_indexes_after ? "-indexes-after" : "",
          events.rows->len, inserted_orders, inserted_items, elapsed,
          events.rows->len / elapsed, cpu, cpu * 1e6 / MAX (events.rows->len, 1),
          now_s () - close_start);
  if (events.rows->len == 0 || inserted_orders != orders.rows->len
      || inserted_items != items.rows->len)
    {
      g_printerr ("the source cache has no events, or orders without events\n");
      return 1;
    }
  return 0;
}

/* What libsoup itself costs a command: a SoupServer that answers POST
 * /v1/commands at once with a response of the same size and headers as
 * ours, and does nothing else (no token, no JSON, no store, no fsync).
 * It accepts as libsoup does, or (--conn-stream) as orderdesk-server
 * does; --threads runs a SoupServer a thread.  The commands bench drives
 * it like our server; it runs until SIGTERM or SIGINT. */
static void
http_command (SoupServer        *server,
              SoupServerMessage *msg,
              const char        *path,
              GHashTable        *query,
              gpointer           user_data)
{
  static const char body[] =
    "{\"order_id\":\"0190f3a2-1111-7000-8000-000000000001\",\"version\":1,\"position\":1}";
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);

  if (soup_server_message_get_method (msg) != SOUP_METHOD_POST)
    {
      soup_server_message_set_status (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, NULL);
      return;
    }
  soup_message_headers_replace (headers, "X-Request-Id", "01a24d08-8efa-70b6-8b9b-0e49113651e1");
  soup_server_message_set_status (msg, SOUP_STATUS_OK, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_STATIC,
                                    body, sizeof body - 1);
  if (opt_conn_stream)
    {
      OdConnStream *stream = g_object_get_data (G_OBJECT (soup_server_message_get_remote_address (msg)),
                                                "od-conn-stream");

      /* As orderdesk-server does: headers and body in one sendmsg (). */
      if (stream != NULL)
        od_conn_stream_set_body_follows (stream);
    }
}

static gboolean
http_quit (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_CONTINUE;
}

/* One SoupServer on a thread of its own, accepting from its own socket on
 * the shared port (SO_REUSEPORT: the kernel spreads the connections). */
typedef struct
{
  GThread *thread;
  GMainContext *context;
  GSocket *socket;
  SoupServer *server;
  gboolean quit;
} HttpThread;

/* --conn-stream: accept () here and give libsoup each connection in an
 * OdConnStream, as od-server-conn.c does (without its limits and
 * timeouts, which cost nothing per request). */
static gboolean
http_accept (GSocket      *listener,
             GIOCondition  condition,
             gpointer      data)
{
  HttpThread *t = data;
  GSocket *socket;

  while ((socket = g_socket_accept (listener, NULL, NULL)) != NULL)
    {
      g_autoptr(GSocketConnection) connection = g_socket_connection_factory_create_connection (socket);
      g_autoptr(OdConnStream) stream = od_conn_stream_new (G_IO_STREAM (connection));
      g_autoptr(GSocketAddress) local = g_socket_get_local_address (socket, NULL);
      g_autoptr(GSocketAddress) remote = g_socket_get_remote_address (socket, NULL);
      g_autoptr(GError) error = NULL;

      g_object_unref (socket);
      if (local == NULL || remote == NULL)
        continue;
      /* libsoup holds both for the connection's life. */
      g_object_set_data (G_OBJECT (remote), "od-conn-stream", stream);
      if (!soup_server_accept_iostream (t->server, G_IO_STREAM (stream), local, remote, &error))
        {
          g_printerr ("accept: %s\n", error->message);
          g_io_stream_close (G_IO_STREAM (stream), NULL, NULL);
        }
    }
  return G_SOURCE_CONTINUE;
}

static gpointer
http_thread (gpointer data)
{
  HttpThread *t = data;
  g_autoptr(SoupServer) server = NULL;
  g_autoptr(GError) error = NULL;

  g_main_context_push_thread_default (t->context);
  server = soup_server_new ("server-header", "orderdesk-server/0.1.0", NULL);
  t->server = server;
  soup_server_add_handler (server, "/v1/commands", http_command, NULL, NULL);
  if (opt_conn_stream)
    {
      g_autoptr(GSource) source = g_socket_create_source (t->socket, G_IO_IN, NULL);

      g_socket_set_blocking (t->socket, FALSE);
      /* libsoup 3.2 keeps a connection alive after a request only while
       * it has a listener of its own: one on a port nobody uses. */
      if (!soup_server_listen_local (server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error))
        g_error ("listen: %s", error->message);
      g_source_set_callback (source, G_SOURCE_FUNC (http_accept), t, NULL);
      g_source_attach (source, t->context);
      while (!g_atomic_int_get (&t->quit))
        g_main_context_iteration (t->context, TRUE);
      g_source_destroy (source);
    }
  else
    {
      if (!soup_server_listen_socket (server, t->socket, 0, &error))
        g_error ("listen: %s", error->message);
      while (!g_atomic_int_get (&t->quit))
        g_main_context_iteration (t->context, TRUE);
    }
  soup_server_disconnect (server);
  g_main_context_pop_thread_default (t->context);
  return NULL;
}

static GSocket *
http_socket (guint16   port,
             GError  **error)
{
  g_autoptr(GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                            G_SOCKET_PROTOCOL_TCP, error);
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, port);
  struct sockaddr_in native;

  /* bind () itself: g_socket_bind () turns SO_REUSEPORT off on streams. */
  if (socket == NULL
      || !g_socket_set_option (socket, SOL_SOCKET, SO_REUSEPORT, 1, error)
      || !g_socket_address_to_native (address, &native, sizeof native, error))
    return NULL;
  if (bind (g_socket_get_fd (socket), (struct sockaddr *) &native, sizeof native) != 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "bind: %s",
                   g_strerror (saved));
      return NULL;
    }
  /* The server's backlog: GLib's default of 10 drops some of the bench's
   * 16 connects, which then wait a second to retry. */
  g_socket_set_listen_backlog (socket, 1024);
  if (!g_socket_listen (socket, error))
    return NULL;
  return g_steal_pointer (&socket);
}

static int
ceiling_http (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketAddress) bound = NULL;
  g_autofree char *base = NULL;
  g_autofree HttpThread *threads = g_new0 (HttpThread, opt_threads);
  gboolean quit = FALSE;
  guint16 port = 0;
  int status = 1;

  /* Every socket and the URL file before any thread, so that a failure
   * leaves nothing running. */
  for (int i = 0; i < opt_threads; i++)
    {
      threads[i].socket = http_socket (port, &error);
      if (threads[i].socket == NULL)
        goto out;
      if (i == 0)
        {
          bound = g_socket_get_local_address (threads[0].socket, &error);
          if (bound == NULL)
            goto out;
          port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
        }
    }
  base = g_strdup_printf ("http://127.0.0.1:%u", port);
  if (!g_file_set_contents (opt_out, base, -1, &error))
    goto out;
  g_unix_signal_add (SIGTERM, http_quit, &quit);
  g_unix_signal_add (SIGINT, http_quit, &quit);
  for (int i = 0; i < opt_threads; i++)
    {
      threads[i].context = g_main_context_new ();
      threads[i].thread = g_thread_new ("http", http_thread, &threads[i]);
    }
  while (!quit)
    g_main_context_iteration (NULL, TRUE);
  for (int i = 0; i < opt_threads; i++)
    {
      g_atomic_int_set (&threads[i].quit, TRUE);
      g_main_context_wakeup (threads[i].context);
      g_thread_join (threads[i].thread);
      g_main_context_unref (threads[i].context);
    }
  status = 0;

out:
  if (error != NULL)
    g_printerr ("od-ceiling http: %s\n", error->message);
  for (int i = 0; i < opt_threads; i++)
    g_clear_object (&threads[i].socket);
  return status;
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GOptionContext) context =
    g_option_context_new ("store|fdatasync|capture|sendfile|cache|http");
  g_autoptr(GError) error = NULL;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || argc != 2)
    {
      g_printerr ("%s\n", error ? error->message : "usage: od-ceiling MODE [options]");
      return 2;
    }
  if (g_str_equal (argv[1], "store") && opt_dir != NULL && opt_batch > 0)
    return ceiling_store ();
  if (g_str_equal (argv[1], "fdatasync") && opt_dir != NULL)
    return ceiling_fdatasync ();
  if (g_str_equal (argv[1], "capture") && opt_url && opt_token && opt_out)
    return ceiling_capture ();
  if (g_str_equal (argv[1], "sendfile") && opt_file != NULL)
    return ceiling_sendfile ();
  if (g_str_equal (argv[1], "cache") && opt_source && opt_out)
    return ceiling_cache ();
  if (g_str_equal (argv[1], "http") && opt_out && opt_threads > 0)
    return ceiling_http ();
  g_printerr ("unknown mode %s or missing options (see --help)\n", argv[1]);
  return 2;
}

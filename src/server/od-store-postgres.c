/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-store-postgres.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <glib-unix.h>
#include <libpq-fe.h>

/* The design (why readers never skip an event although several instances
 * append at once) is explained in docs/postgresql.md.  In short: every
 * appending transaction takes one transaction-scoped advisory lock before
 * it reads anything, so appends are serialized in commit order; each event
 * stores `prev`, the newest position visible when it was appended, and the
 * database enforces UNIQUE (prev) and position > prev, so the log is one
 * chain that any snapshot sees a prefix of. */

#define OD_PG_SCHEMA_VERSION   1
/* Keys of the advisory locks (appends, schema migration); any program that
 * appends must take the first, see docs/postgresql.md. */
#define OD_PG_APPEND_LOCK      "5192120566211906"
#define OD_PG_SCHEMA_LOCK      "5192120566211907"
#define OD_PG_CHANNEL          "orderdesk_events"
#define OD_PG_MAX_READERS      8
#define OD_PG_MAX_ATTEMPTS     8
#define OD_PG_CACHE_MAX        65536
#define OD_PG_PURGE_INTERVAL   (10 * G_TIME_SPAN_MINUTE)
#define OD_PG_LISTEN_PROBE_MS  10000

#define SQLSTATE_UNIQUE_VIOLATION    "23505"
#define SQLSTATE_CHECK_VIOLATION     "23514"
#define SQLSTATE_SERIALIZATION       "40001"
#define SQLSTATE_DEADLOCK            "40P01"

#define OD_TYPE_STORE_POSTGRES (od_store_postgres_get_type ())
G_DECLARE_FINAL_TYPE (OdStorePostgres, od_store_postgres, OD, STORE_POSTGRES, GObject)

struct _OdStorePostgres
{
  GObject     parent_instance;

  char       *conninfo;

  /* The writer: only execute () uses it, and the server calls execute ()
   * from one thread, but the mutex keeps a second caller safe anyway. */
  GMutex      write_lock;
  PGconn     *writer;
  GHashTable *cache;        /* order id → OdOrder, as committed */
  gint64      last_purge;   /* monotonic usec */
  gint        writer_pid;   /* backend pid of the writer, to ignore our own NOTIFY */

  /* Readers: a small pool, since read_events () runs on many threads. */
  GMutex      pool_lock;
  GCond       pool_cond;
  GPtrArray  *idle;         /* PGconn */
  guint       n_readers;

  /* Readiness checks: a connection of their own, so that a busy reader
   * pool cannot make a healthy store look down. */
  GMutex      check_lock;
  PGconn     *checker;

  /* The listener thread and the pipe that wakes it up to stop. */
  GThread    *listener;
  int         wake_fds[2];
};

static void od_store_postgres_iface_init (OdStoreInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (OdStorePostgres, od_store_postgres, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (OD_TYPE_STORE, od_store_postgres_iface_init))

/* Migration 1: the whole schema.  `data` is json (not jsonb) so that the
 * bytes the writer decided are served unchanged. */
static const char schema_v1[] =
  "CREATE SEQUENCE event_position AS bigint;"
  "CREATE TABLE events ("
  "  position    bigint PRIMARY KEY,"
  "  prev        bigint NOT NULL,"
  "  order_id    uuid NOT NULL,"
  "  version     bigint NOT NULL CHECK (version >= 1),"
  "  type        text NOT NULL,"
  "  recorded_at timestamptz NOT NULL,"
  "  actor       text NOT NULL,"
  "  data        json NOT NULL,"
  "  CONSTRAINT events_chain UNIQUE (prev),"
  "  CONSTRAINT events_prev_before CHECK (position > prev AND prev >= 0),"
  "  CONSTRAINT events_order_version UNIQUE (order_id, version)"
  ");"
  "ALTER SEQUENCE event_position OWNED BY events.position;"
  "CREATE TABLE idempotency_keys ("
  "  actor       text NOT NULL,"
  "  key         text NOT NULL,"
  "  body_sha256 bytea NOT NULL,"
  "  status      integer NOT NULL,"
  "  response    text NOT NULL,"
  "  version     bigint NOT NULL DEFAULT 0,"
  "  position    bigint NOT NULL DEFAULT 0,"
  "  created_at  timestamptz NOT NULL DEFAULT now(),"
  "  PRIMARY KEY (actor, key)"
  ");"
  "CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);";

#define RECORDED_AT_SQL "to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static const char read_sql[] =
  "WITH h AS (SELECT coalesce(max(position), 0) AS head FROM events) "
  "SELECT h.head, e.position, e.prev, e.order_id, e.version, e.type, "
  RECORDED_AT_SQL ", e.actor, e.data "
  "FROM h LEFT JOIN LATERAL "
  "  (SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2) e ON true "
  "ORDER BY e.position";

static const char head_sql[] = "SELECT coalesce(max(position), 0) FROM events";

/* The batch's keys and orders are joined LATERAL, which makes every one
 * an index look-up: as a plain join the planner, which cannot see how few
 * rows the arrays hold, picks a hash join over a scan of the whole table,
 * a cost that grows with the log. */
static const char keys_sql[] =
  "SELECT k.i, i.body_sha256, i.status, i.response, i.version, i.position "
  "FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(actor, key, i) "
  "CROSS JOIN LATERAL (SELECT * FROM idempotency_keys i "
  "                    WHERE i.actor = k.actor AND i.key = k.key) i";

static const char orders_sql[] =
  "SELECT e.order_id, e.version, e.type, e.data, e.position, " RECORDED_AT_SQL " "
  "FROM unnest($1::uuid[], $2::bigint[]) AS t(order_id, after_version) "
  "CROSS JOIN LATERAL (SELECT * FROM events e "
  "                    WHERE e.order_id = t.order_id AND e.version > t.after_version "
  "                    ORDER BY e.version) e "
  "ORDER BY e.order_id, e.version";

/* Under the append lock: the newest visible position becomes the first
 * event's prev, and positions come from the sequence only after it was
 * read, so every new position is above it.  Ordered, so that a batch's
 * events are in the order of its jobs. */
static const char positions_sql[] =
  "SELECT (SELECT coalesce(max(position), 0) FROM events), "
  "       (SELECT array_agg(p ORDER BY p) FROM "
  "          (SELECT nextval('event_position') AS p FROM generate_series(1, $1::int)) s)";

static const char insert_events_sql[] =
  "INSERT INTO events (position, prev, order_id, version, type, recorded_at, actor, data) "
  "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::bigint[], $5::text[], "
  "                     $6::timestamptz[], $7::text[], $8::json[])";

static const char insert_keys_sql[] =
  "INSERT INTO idempotency_keys (actor, key, body_sha256, status, response, version, position) "
  "SELECT a, k, decode(s, 'hex'), st, r, v, p "
  "FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bigint[], "
  "            $7::bigint[]) AS t(a, k, s, st, r, v, p)";

static const char notify_sql[] = "SELECT pg_notify('" OD_PG_CHANNEL "', $1)";

static const char purge_sql[] =
  "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1::double precision)";

/* ------------------------------------------------------------------------ */
/* libpq helpers                                                            */

static void
set_pg_error (GError     **error,
              const char  *what,
              PGconn      *conn,
              PGresult    *res)
{
  const char *msg = res ? PQresultErrorMessage (res) : NULL;
  g_autofree char *text = NULL;

  if (msg == NULL || *msg == '\0')
    msg = conn ? PQerrorMessage (conn) : "no connection";
  text = g_strchomp (g_strdup (msg));
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "PostgreSQL: %s: %s", what, text);
}

static gboolean
result_ok (PGresult *res)
{
  ExecStatusType st = res ? PQresultStatus (res) : PGRES_FATAL_ERROR;

  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

static gboolean
exec_simple (PGconn      *conn,
             const char  *sql,
             GError     **error)
{
  PGresult *res = PQexec (conn, sql);
  gboolean ok = result_ok (res);

  if (!ok)
    set_pg_error (error, sql, conn, res);
  PQclear (res);
  return ok;
}

static PGresult *
exec_params (PGconn      *conn,
             const char  *sql,
             int          n_params,
             const char  *const *values)
{
  return PQexecParams (conn, sql, n_params, NULL, values, NULL, NULL, 0);
}

static gint64
get_int64 (PGresult *res,
           int       row,
           int       col)
{
  return g_ascii_strtoll (PQgetvalue (res, row, col), NULL, 10);
}

static PGconn *
connect_db (const char  *conninfo,
            GError     **error)
{
  /* The URI is expanded as dbname; an application_name it sets wins over
   * the fallback, and a connect_timeout it sets over ours, which keeps a
   * database host that drops packets from holding commands and
   * readiness checks for minutes (libpq's default is to wait forever). */
  const char *keys[] = { "connect_timeout", "dbname", "fallback_application_name", NULL };
  const char *values[] = { "5", conninfo, "orderdesk-server", NULL };
  PGconn *conn = PQconnectdbParams (keys, values, 1);

  if (PQstatus (conn) != CONNECTION_OK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED,
                   "PostgreSQL: cannot connect: %s", PQerrorMessage (conn));
      PQfinish (conn);
      return NULL;
    }
  /* A success is only answered once the commit is on disk, whatever the
   * server's default; readers get the same setting, it costs them
   * nothing. */
  if (!exec_simple (conn,
                    "SET synchronous_commit = on;"
                    "SET client_min_messages = warning;"
                    "SET TIME ZONE 'UTC'",
                    error))
    {
      PQfinish (conn);
      return NULL;
    }
  return conn;
}

/* PostgreSQL array literals, so that one statement carries a whole batch
 * as bound parameters (the values never become SQL text). */
static void
array_append (GString    *arr,
              const char *value)
{
  if (arr->len > 1)
    g_string_append_c (arr, ',');
  g_string_append_c (arr, '"');
  for (const char *p = value; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_c (arr, '\\');
      g_string_append_c (arr, *p);
    }
  g_string_append_c (arr, '"');
}

static void
array_append_int (GString *arr,
                  gint64   value)
{
  char buf[32];

  g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, value);
  array_append (arr, buf);
}

static GString *
array_new (void)
{
  return g_string_new ("{");
}

static char *
array_finish (GString *arr)
{
  g_string_append_c (arr, '}');
  return g_string_free (arr, FALSE);
}

/* ------------------------------------------------------------------------ */
/* Schema                                                                   */

static gboolean
migrate (PGconn  *conn,
         GError **error)
{
  PGresult *res;
  gint64 version;

  /* Two instances starting at once must not both create the schema. */
  if (!exec_simple (conn,
                    "BEGIN;"
                    "SELECT pg_advisory_xact_lock(" OD_PG_SCHEMA_LOCK ");"
                    "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)",
                    error))
    goto fail;

  res = PQexec (conn, "SELECT coalesce(max(version), 0) FROM schema_version");
  if (!result_ok (res))
    {
      set_pg_error (error, "reading schema_version", conn, res);
      PQclear (res);
      goto fail;
    }
  version = get_int64 (res, 0, 0);
  PQclear (res);

  if (version > OD_PG_SCHEMA_VERSION)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "PostgreSQL: the database has schema version %" G_GINT64_FORMAT
                   ", newer than this server knows (%d)",
                   version, OD_PG_SCHEMA_VERSION);
      goto fail;
    }
  if (version < 1)
    {
      if (!exec_simple (conn, schema_v1, error)
          || !exec_simple (conn, "INSERT INTO schema_version VALUES (1)", error))
        goto fail;
      g_info ("PostgreSQL: created schema version 1");
    }
  /* Later migrations go here: if (version < 2) { … INSERT 2 }. */

  return exec_simple (conn, "COMMIT", error);

fail:
  PQclear (PQexec (conn, "ROLLBACK"));
  return FALSE;
}

/* ------------------------------------------------------------------------ */
/* Reader pool                                                              */

static PGconn *
reader_acquire (OdStorePostgres  *self,
                GError          **error)
{
  PGconn *conn = NULL;

  g_mutex_lock (&self->pool_lock);
  while (self->idle->len == 0 && self->n_readers >= OD_PG_MAX_READERS)
    g_cond_wait (&self->pool_cond, &self->pool_lock);
  if (self->idle->len > 0)
    conn = g_ptr_array_steal_index (self->idle, self->idle->len - 1);
  else
    self->n_readers++;
  g_mutex_unlock (&self->pool_lock);

  if (conn != NULL)
    return conn;

  conn = connect_db (self->conninfo, error);
  if (conn == NULL)
    {
      g_mutex_lock (&self->pool_lock);
      self->n_readers--;
      g_cond_signal (&self->pool_cond);
      g_mutex_unlock (&self->pool_lock);
    }
  return conn;
}

static void
reader_release (OdStorePostgres *self,
                PGconn          *conn)
{
  gboolean broken = PQstatus (conn) != CONNECTION_OK
                    || PQtransactionStatus (conn) != PQTRANS_IDLE;

  if (broken)
    PQfinish (conn);
  g_mutex_lock (&self->pool_lock);
  if (broken)
    self->n_readers--;
  else
    g_ptr_array_add (self->idle, conn);
  g_cond_signal (&self->pool_cond);
  g_mutex_unlock (&self->pool_lock);
}

/* ------------------------------------------------------------------------ */
/* Reads                                                                    */

/* One statement, so the page, every prev and the head come from one
 * snapshot; the snapshot sees a prefix of the chain (docs/postgresql.md).
 * Row 0 always has the head; an empty page has one row whose event
 * columns are NULL. */
static PGresult *
read_page (OdStorePostgres  *self,
           gint64            after,
           guint             limit,
           GError          **error)
{
  char after_s[24], limit_s[16];
  const char *values[] = { after_s, limit_s };
  PGresult *res;
  PGconn *conn;

  g_snprintf (after_s, sizeof after_s, "%" G_GINT64_FORMAT, MAX (after, 0));
  g_snprintf (limit_s, sizeof limit_s, "%u", limit);
  conn = reader_acquire (self, error);
  if (conn == NULL)
    return NULL;
  res = exec_params (conn, read_sql, 2, values);
  if (!result_ok (res) && PQstatus (conn) != CONNECTION_OK)
    {
      /* An idle pooled connection may have been closed by the server
       * (restart, idle timeout): one more try on a fresh one. */
      PQclear (res);
      reader_release (self, conn);
      conn = reader_acquire (self, error);
      if (conn == NULL)
        return NULL;
      res = exec_params (conn, read_sql, 2, values);
    }
  if (!result_ok (res))
    {
      set_pg_error (error, "reading events", conn, res);
      g_clear_pointer (&res, PQclear);
    }
  reader_release (self, conn);
  return res;
}

static GPtrArray *
od_store_postgres_read_events (OdStore  *store,
                               gint64    after,
                               guint     limit,
                               gint64   *head,
                               GError  **error)
{
  OdStorePostgres *self = OD_STORE_POSTGRES (store);
  GPtrArray *events;
  PGresult *res;

  if ((res = read_page (self, after, limit, error)) == NULL)
    return NULL;
  events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  for (int i = 0; i < PQntuples (res); i++)
    {
      OdEvent *event;

      if (head != NULL && i == 0)
        *head = get_int64 (res, 0, 0);
      if (PQgetisnull (res, i, 1))
        continue;
      event = od_event_new ();
      event->position = get_int64 (res, i, 1);
      event->prev = get_int64 (res, i, 2);
      g_strlcpy (event->order_id, PQgetvalue (res, i, 3), sizeof event->order_id);
      event->version = get_int64 (res, i, 4);
      event->type = g_strdup (PQgetvalue (res, i, 5));
      event->recorded_at = g_strdup (PQgetvalue (res, i, 6));
      event->actor = g_strdup (PQgetvalue (res, i, 7));
      event->data = g_strdup (PQgetvalue (res, i, 8));
      g_ptr_array_add (events, event);
    }
  PQclear (res);
  return events;
}

/* A digest range: the columns of read_sql, formatted the same way in
 * the database (order_id and recorded_at as text, data as stored), with
 * results in binary so that the two numbers arrive as 8 bytes instead of
 * being printed and parsed again; text and json are their text either
 * way. */
static const char digest_sql[] =
  "SELECT e.position, e.order_id::text, e.version, e.type, " RECORDED_AT_SQL ", e.actor, e.data "
  "FROM events e WHERE e.position > $1 AND e.position <= $2 ORDER BY e.position";

/* Positions per range a reader takes: a result of ~600 KB; 8,192 made
 * no difference measured (statements are cheap next to the rows). */
#define DIGEST_RANGE 2048

static gint64
get_be_int64 (PGresult *res,
              int       row,
              int       col)
{
  guint64 v;

  memcpy (&v, PQgetvalue (res, row, col), sizeof v);
  return (gint64) GUINT64_FROM_BE (v);
}

static gboolean
digest_read_range (gpointer     user_data,
                   gint64       after,
                   gint64       upto,
                   GByteArray  *lines,
                   gint64      *count,
                   GError     **error)
{
  OdStorePostgres *self = user_data;
  char after_s[24], upto_s[24];
  const char *values[] = { after_s, upto_s };
  PGresult *res;
  PGconn *conn;
  gboolean ok;

  g_snprintf (after_s, sizeof after_s, "%" G_GINT64_FORMAT, after);
  g_snprintf (upto_s, sizeof upto_s, "%" G_GINT64_FORMAT, upto);
  if ((conn = reader_acquire (self, error)) == NULL)
    return FALSE;
  res = PQexecParams (conn, digest_sql, 2, NULL, values, NULL, NULL, 1);
  if (!result_ok (res) && PQstatus (conn) != CONNECTION_OK)
    {
      /* An idle pooled connection may have been closed by the server:
       * one more try on a fresh one, as read_page () does. */
      PQclear (res);
      reader_release (self, conn);
      if ((conn = reader_acquire (self, error)) == NULL)
        return FALSE;
      res = PQexecParams (conn, digest_sql, 2, NULL, values, NULL, NULL, 1);
    }
  ok = result_ok (res);
  if (!ok)
    set_pg_error (error, "digest", conn, res);
  reader_release (self, conn);
  for (int i = 0; ok && i < PQntuples (res); i++)
    {
      od_digest_append_event (lines, get_be_int64 (res, i, 0), PQgetvalue (res, i, 1), -1,
                              get_be_int64 (res, i, 2), PQgetvalue (res, i, 3), -1,
                              PQgetvalue (res, i, 4), -1, PQgetvalue (res, i, 5), -1,
                              PQgetvalue (res, i, 6), PQgetlength (res, i, 6));
      (*count)++;
    }
  PQclear (res);
  return ok;
}

/* Ranges read by a reader per core, each its own statement and so its
 * own snapshot, hashed in position order.  One view all the same: upto
 * is at most a head already read, and every snapshot that sees that head
 * sees the same chain below it, byte for byte (appends are serialized in
 * commit order, events never change: docs/postgresql.md).  Two readers
 * keep two backends busy, and the lines are formatted and hashed here
 * while the database produces the next range. */
static gboolean
od_store_postgres_digest (OdStore    *store,
                          gint64      after,
                          gint64      upto,
                          OdDigest   *sum,
                          gint64     *count,
                          GError    **error)
{
  return od_digest_add_ranges (sum, after, upto, DIGEST_RANGE,
                               CLAMP (g_get_num_processors (), 2, 4), digest_read_range, store,
                               count, error);
}

static gboolean
od_store_postgres_get_head (OdStore  *store,
                            gint64   *head,
                            GError  **error)
{
  OdStorePostgres *self = OD_STORE_POSTGRES (store);
  PGresult *res;
  PGconn *conn;
  gboolean ok;

  conn = reader_acquire (self, error);
  if (conn == NULL)
    return FALSE;
  res = PQexec (conn, head_sql);
  if (!result_ok (res) && PQstatus (conn) != CONNECTION_OK)
    {
      PQclear (res);
      reader_release (self, conn);
      conn = reader_acquire (self, error);
      if (conn == NULL)
        return FALSE;
      res = PQexec (conn, head_sql);
    }
  ok = result_ok (res);
  if (ok)
    *head = get_int64 (res, 0, 0);
  else
    set_pg_error (error, "reading the head", conn, res);
  PQclear (res);
  reader_release (self, conn);
  return ok;
}

/* A transaction that takes a transaction id (which a read-only or
 * standby server refuses) and reads the head, then rolls back: the store
 * can be written and read now. */
static gboolean
check_once (PGconn   *conn,
            gint64   *head,
            GError  **error)
{
  PGresult *res;
  gboolean ok;

  if (!exec_simple (conn, "BEGIN", error))
    return FALSE;
  res = PQexec (conn, "SELECT pg_current_xact_id(), coalesce(max(position), 0) FROM events");
  ok = result_ok (res);
  if (ok)
    *head = get_int64 (res, 0, 1);
  else
    set_pg_error (error, "readiness check", conn, res);
  PQclear (res);
  if (PQstatus (conn) == CONNECTION_OK)
    PQclear (PQexec (conn, "ROLLBACK"));
  return ok;
}

static gboolean
od_store_postgres_check (OdStore  *store,
                         gint64   *head,
                         GError  **error)
{
  OdStorePostgres *self = OD_STORE_POSTGRES (store);
  gboolean ok = FALSE;

  g_mutex_lock (&self->check_lock);
  for (guint attempt = 0; attempt < 2 && !ok; attempt++)
    {
      g_clear_error (error);
      if (self->checker == NULL || PQstatus (self->checker) != CONNECTION_OK)
        {
          g_clear_pointer (&self->checker, PQfinish);
          self->checker = connect_db (self->conninfo, error);
          if (self->checker == NULL)
            break;
          /* A check that waits on locks says nothing useful. */
          if (!exec_simple (self->checker, "SET statement_timeout = '2s'", error))
            {
              g_clear_pointer (&self->checker, PQfinish);
              break;
            }
        }
      ok = check_once (self->checker, head, error);
      /* A pooled connection the server closed (restart): one more try on
       * a fresh one; any other failure is the answer. */
      if (!ok && PQstatus (self->checker) == CONNECTION_OK)
        break;
    }
  g_mutex_unlock (&self->check_lock);
  return ok;
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                   */

typedef struct
{
  OdJob   *job;
  char    *order_id;
  gint64   version;
  const char *type;
  char    *data;
  char    *recorded_at;
  gint64   position;
  gint64   prev;
} Pending;

static void
pending_clear (Pending *p)
{
  g_free (p->order_id);
  g_free (p->data);
  g_free (p->recorded_at);
}

/* An answer stored for (actor, key), from the table or from an earlier job
 * of the same batch. */
typedef struct
{
  guint8   sha[32];
  guint    status;
  char    *response;
  gint64   version;
  gint64   position;
} StoredAnswer;

static void
stored_answer_free (StoredAnswer *a)
{
  g_free (a->response);
  g_free (a);
}

static char *
key_id (const char *actor,
        const char *key)
{
  /* A NUL cannot appear in either, so "\n" as a separator is unambiguous
   * for keys of printable ASCII. */
  return g_strconcat (actor, "\n", key, NULL);
}

static void
job_reset (OdJob *job)
{
  job->status = 0;
  g_clear_pointer (&job->response, g_free);
  job->replayed = FALSE;
  job->position = 0;
  job->version = 0;
}

static gboolean
is_retryable (PGresult *res)
{
  const char *state = res ? PQresultErrorField (res, PG_DIAG_SQLSTATE) : NULL;

  return g_strcmp0 (state, SQLSTATE_UNIQUE_VIOLATION) == 0
         || g_strcmp0 (state, SQLSTATE_CHECK_VIOLATION) == 0
         || g_strcmp0 (state, SQLSTATE_SERIALIZATION) == 0
         || g_strcmp0 (state, SQLSTATE_DEADLOCK) == 0;
}

static gboolean
ensure_writer (OdStorePostgres  *self,
               GError          **error)
{
  if (self->writer != NULL && PQstatus (self->writer) == CONNECTION_OK)
    return TRUE;
  g_clear_pointer (&self->writer, PQfinish);
  /* What we cached may be older than what the lost connection committed
   * (or did not): start from the log again. */
  g_hash_table_remove_all (self->cache);
  self->writer = connect_db (self->conninfo, error);
  if (self->writer == NULL)
    return FALSE;
  /* Waiting for the append lock longer than this means another writer is
   * stuck; the server answers 5xx and the client retries with its key.
   * And an instance that vanishes (machine lost, network cut) between the
   * two round trips of a batch must not hold the lock until TCP notices:
   * PostgreSQL ends a session idle in its transaction after 30 s. */
  if (!exec_simple (self->writer,
                    "SET lock_timeout = '15s';"
                    "SET idle_in_transaction_session_timeout = '30s'",
                    error))
    {
      g_clear_pointer (&self->writer, PQfinish);
      return FALSE;
    }
  g_atomic_int_set (&self->writer_pid, PQbackendPID (self->writer));
  return TRUE;
}

/* Puts a copy of the cached state (or an empty order) of every order the
 * batch touches into `states`, and returns in *ids and *afters the arrays
 * for orders_sql: the events appended since, by any instance. */
static void
collect_orders (OdStorePostgres  *self,
                OdJob           **jobs,
                guint             n_jobs,
                GHashTable       *states,
                char            **ids,
                char            **afters)
{
  GString *ids_a = array_new ();
  GString *afters_a = array_new ();

  for (guint i = 0; i < n_jobs; i++)
    {
      const char *id = jobs[i]->command->order_id;
      OdOrder *cached;

      if (g_hash_table_contains (states, id))
        continue;
      cached = g_hash_table_lookup (self->cache, id);
      g_hash_table_insert (states, g_strdup (id), cached ? od_order_copy (cached) : od_order_new (id));
      array_append (ids_a, id);
      array_append_int (afters_a, cached ? cached->version : 0);
    }
  *ids = array_finish (ids_a);
  *afters = array_finish (afters_a);
}

static void
apply_orders (GHashTable *states,
              PGresult   *res)
{
  for (int r = 0; r < PQntuples (res); r++)
    {
      OdOrder *order = g_hash_table_lookup (states, PQgetvalue (res, r, 0));

      if (order == NULL)
        continue;
      od_store_fold_event (order, PQgetvalue (res, r, 2), PQgetvalue (res, r, 3),
                           get_int64 (res, r, 1), get_int64 (res, r, 4), PQgetvalue (res, r, 5));
    }
}

/* The arrays for keys_sql; index[i] is the job of the (i+1)th key. */
static guint
collect_keys (OdJob **jobs,
              guint   n_jobs,
              guint  *index,
              char  **actors,
              char  **keys)
{
  GString *actors_a = array_new ();
  GString *keys_a = array_new ();
  guint n_keyed = 0;

  for (guint i = 0; i < n_jobs; i++)
    if (jobs[i]->idempotency_key != NULL)
      {
        array_append (actors_a, jobs[i]->actor ? jobs[i]->actor : "");
        array_append (keys_a, jobs[i]->idempotency_key);
        index[n_keyed++] = i;
      }
  *actors = array_finish (actors_a);
  *keys = array_finish (keys_a);
  return n_keyed;
}

static void
apply_keys (OdJob      **jobs,
            const guint *index,
            guint        n_keyed,
            GHashTable  *answers,
            PGresult    *res)
{
  for (int r = 0; r < PQntuples (res); r++)
    {
      gint64 ordinal = get_int64 (res, r, 0);
      StoredAnswer *answer;
      OdJob *job;
      size_t sha_len = 0;
      unsigned char *sha;

      if (ordinal < 1 || ordinal > n_keyed)
        continue;
      job = jobs[index[ordinal - 1]];
      answer = g_new0 (StoredAnswer, 1);
      sha = PQunescapeBytea ((const unsigned char *) PQgetvalue (res, r, 1), &sha_len);
      if (sha != NULL && sha_len == sizeof answer->sha)
        memcpy (answer->sha, sha, sizeof answer->sha);
      PQfreemem (sha);
      answer->status = (guint) get_int64 (res, r, 2);
      answer->response = g_strdup (PQgetvalue (res, r, 3));
      answer->version = get_int64 (res, r, 4);
      answer->position = get_int64 (res, r, 5);
      g_hash_table_insert (answers, key_id (job->actor ? job->actor : "", job->idempotency_key),
                           answer);
    }
}

/* One statement of a pipeline. */
typedef struct
{
  const char *what;       /* for error messages */
  const char *sql;
  int         n_params;
  const char *values[8];
  PGresult   *result;
} Query;

static void
queries_clear (Query *q,
               guint  n)
{
  for (guint i = 0; i < n; i++)
    g_clear_pointer (&q[i].result, PQclear);
}

/* Sends the statements in one round trip (libpq pipeline mode) and
 * collects their results.  They still run one after the other, each on
 * its own snapshot, so a read that follows the lock sees every append
 * committed before the lock was granted.  Returns the index of the first
 * statement that failed, n when none did; *broken when the connection
 * was lost, in which case nothing is known about the statements. */
static guint
run_pipeline (PGconn    *conn,
              Query     *q,
              guint      n,
              gboolean  *broken,
              gboolean  *retry,
              GError   **error)
{
  guint failed = n;
  PGresult *res;

  *broken = FALSE;
  if (!PQenterPipelineMode (conn))
    goto lost;
  for (guint i = 0; i < n; i++)
    if (!PQsendQueryParams (conn, q[i].sql, q[i].n_params, NULL, q[i].values, NULL, NULL, 0))
      goto lost;
  if (!PQpipelineSync (conn))
    goto lost;

  for (guint i = 0; i < n; i++)
    {
      q[i].result = PQgetResult (conn);
      if (q[i].result == NULL || PQstatus (conn) != CONNECTION_OK)
        goto lost;
      /* Each statement's results end with a NULL. */
      while ((res = PQgetResult (conn)) != NULL)
        {
          PQclear (res);
          if (PQstatus (conn) != CONNECTION_OK)
            goto lost;
        }
      if (!result_ok (q[i].result) && failed == n)
        {
          failed = i;
          *retry = is_retryable (q[i].result);
          set_pg_error (error, q[i].what, conn, q[i].result);
        }
    }
  res = PQgetResult (conn);
  if (res == NULL || PQresultStatus (res) != PGRES_PIPELINE_SYNC)
    {
      PQclear (res);
      goto lost;
    }
  PQclear (res);
  if (!PQexitPipelineMode (conn))
    goto lost;
  return failed;

lost:
  *broken = TRUE;
  g_clear_error (error);
  set_pg_error (error, "connection lost", conn, NULL);
  return 0;
}

static void
maybe_purge (OdStorePostgres *self)
{
  gint64 now = g_get_monotonic_time ();
  g_autofree char *secs = NULL;
  const char *values[1];
  PGresult *res;

  if (self->last_purge != 0 && now - self->last_purge < OD_PG_PURGE_INTERVAL)
    return;
  self->last_purge = now;
  secs = g_strdup_printf ("%" G_GINT64_FORMAT, (gint64) (OD_IDEMPOTENCY_RETENTION_USEC / G_USEC_PER_SEC));
  values[0] = secs;
  /* Its own transaction, outside the append lock; a failure only delays
   * the purge. */
  res = exec_params (self->writer, purge_sql, 1, values);
  if (!result_ok (res))
    g_message ("PostgreSQL: purging idempotency keys: %s", PQresultErrorMessage (res));
  PQclear (res);
}

/* Decides every job in order against `states` (which it updates, so a
 * later job sees an earlier one's effect) and the stored `answers`: a
 * replay, a refusal, or an event to append (`pending`, answer set once
 * its position is known).  Jobs whose answer must be stored go to
 * `to_store`. */
static void
decide_batch (OdJob     **jobs,
              guint       n_jobs,
              GHashTable *states,
              GHashTable *answers,
              GArray     *pending,
              GPtrArray  *to_store)
{
  for (guint i = 0; i < n_jobs; i++)
    {
      OdJob *job = jobs[i];
      OdOrder *order = g_hash_table_lookup (states, job->command->order_id);
      const char *event_type = NULL;
      char *event_data = NULL;
      OdProblem *problem = NULL;
      g_autofree char *kid = NULL;

      job_reset (job);
      if (job->idempotency_key != NULL)
        {
          StoredAnswer *answer;

          kid = key_id (job->actor ? job->actor : "", job->idempotency_key);
          answer = g_hash_table_lookup (answers, kid);
          if (answer != NULL && memcmp (answer->sha, job->body_sha256, sizeof answer->sha) == 0)
            {
              job->status = answer->status;
              job->response = g_strdup (answer->response);
              job->version = answer->version;
              job->position = answer->position;
              job->replayed = TRUE;
              continue;
            }
          if (answer != NULL)
            {
              od_job_set_problem (job, od_problem_new (OD_PROBLEM_IDEMPOTENCY_KEY_REUSED,
                                                       "Idempotency-Key %s was used with another body.",
                                                       job->idempotency_key));
              continue;
            }
        }

      if (od_order_decide (order, job->command, &event_type, &event_data, &problem))
        {
          Pending p = { 0 };

          p.job = job;
          p.order_id = g_strdup (job->command->order_id);
          p.version = order->version + 1;
          p.type = event_type;
          p.data = event_data;
          p.recorded_at = job->recorded_at ? g_strdup (job->recorded_at) : od_timestamp_now ();
          /* Later jobs of the batch decide against this one's effect. */
          od_store_fold_event (order, p.type, p.data, p.version, 0, p.recorded_at);
          g_array_append_val (pending, p);
          /* The answer (with its position) is set once positions are known. */
          job->status = 200;
        }
      else
        od_job_set_problem (job, problem);

      if (kid != NULL)
        {
          StoredAnswer *answer = g_new0 (StoredAnswer, 1);

          /* A second job with the same key later in this batch replays
           * this one; its answer is filled in below. */
          memcpy (answer->sha, job->body_sha256, sizeof answer->sha);
          g_hash_table_insert (answers, g_steal_pointer (&kid), answer);
          g_ptr_array_add (to_store, job);
        }
    }
}

/* Replays of a key first used earlier in the same batch get that job's
 * answer, now that it is complete. */
static void
fill_batch_replays (OdJob     **jobs,
                    guint       n_jobs,
                    GPtrArray  *to_store,
                    GHashTable *answers)
{
  for (guint i = 0; i < to_store->len; i++)
    {
      OdJob *job = g_ptr_array_index (to_store, i);
      g_autofree char *kid = key_id (job->actor ? job->actor : "", job->idempotency_key);
      StoredAnswer *answer = g_hash_table_lookup (answers, kid);

      if (answer != NULL)
        {
          g_free (answer->response);
          answer->status = job->status;
          answer->response = g_strdup (job->response);
          answer->version = job->status == 200 ? job->version : 0;
          answer->position = job->position;
        }
    }
  for (guint i = 0; i < n_jobs; i++)
    {
      OdJob *job = jobs[i];
      g_autofree char *kid = NULL;
      StoredAnswer *answer;

      if (!job->replayed || job->response != NULL || job->idempotency_key == NULL)
        continue;
      kid = key_id (job->actor ? job->actor : "", job->idempotency_key);
      answer = g_hash_table_lookup (answers, kid);
      if (answer != NULL)
        {
          job->status = answer->status;
          job->response = g_strdup (answer->response);
          job->version = answer->version;
          job->position = answer->position;
        }
    }
}

/* After a commit the batch's states are the truth. */
static void
cache_states (OdStorePostgres *self,
              GHashTable      *states)
{
  GHashTableIter iter;
  gpointer key, value;

  if (g_hash_table_size (self->cache) + g_hash_table_size (states) > OD_PG_CACHE_MAX)
    g_hash_table_remove_all (self->cache);
  g_hash_table_iter_init (&iter, states);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      OdOrder *order = value;

      if (order->version > 0)
        {
          g_hash_table_iter_steal (&iter);
          g_hash_table_replace (self->cache, key, order);
        }
    }
}

/* One attempt at the whole batch, in one transaction.  On a unique or
 * check violation (another writer won a race the lock should have
 * prevented, e.g. one that does not take it) *retry is set: the caller
 * rolls back and decides the batch again against the new state, which
 * gives each job the answer it would have had in the first place. */
static gboolean
execute_once (OdStorePostgres  *self,
              OdJob           **jobs,
              guint             n_jobs,
              gboolean         *appended,
              gboolean         *retry,
              GError          **error)
{
  g_autoptr(GHashTable) states = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                        (GDestroyNotify) od_order_free);
  g_autoptr(GHashTable) answers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                         (GDestroyNotify) stored_answer_free);
  g_autoptr(GArray) pending = g_array_new (FALSE, TRUE, sizeof (Pending));
  g_autoptr(GPtrArray) to_store = g_ptr_array_new ();
  g_autofree guint *key_index = g_new0 (guint, n_jobs + 1);
  g_autofree char *actors_s = NULL;
  g_autofree char *keys_s = NULL;
  g_autofree char *ids_s = NULL;
  g_autofree char *afters_s = NULL;
  g_autofree char *head_s = NULL;
  g_autofree char *n_jobs_s = NULL;
  g_auto(GStrv) positions = NULL;
  char *event_cols[8] = { NULL };
  char *key_cols[7] = { NULL };
  guint n_keyed;
  gint64 prev = 0;

  g_array_set_clear_func (pending, (GDestroyNotify) pending_clear);
  *appended = FALSE;
  *retry = FALSE;

  if (!ensure_writer (self, error))
    return FALSE;
  maybe_purge (self);

  /* One round trip: the lock first (from then on no other instance
   * appends, and every append that held it before is committed and
   * visible), then the orders' new events and the stored answers. */
  n_keyed = collect_keys (jobs, n_jobs, key_index, &actors_s, &keys_s);
  collect_orders (self, jobs, n_jobs, states, &ids_s, &afters_s);
  n_jobs_s = g_strdup_printf ("%u", n_jobs);
  {
    /* Positions for every job are taken now, before deciding, to save a
     * round trip; those of jobs that append nothing stay unused, which
     * only leaves holes, as a rollback does. */
    Query q[] = {
      { "beginning", "BEGIN ISOLATION LEVEL READ COMMITTED", 0, { NULL } },
      { "taking the append lock", "SELECT pg_advisory_xact_lock(" OD_PG_APPEND_LOCK ")", 0, { NULL } },
      { "allocating positions", positions_sql, 1, { n_jobs_s } },
      { "loading orders", orders_sql, 2, { ids_s, afters_s } },
      { "loading idempotency keys", keys_sql, 2, { actors_s, keys_s } },
    };
    guint n = n_keyed > 0 ? 5 : 4;
    gboolean broken;
    guint failed = run_pipeline (self->writer, q, n, &broken, retry, error);
    const char *arr;

    if (broken || failed < n)
      {
        queries_clear (q, n);
        if (broken)
          g_clear_pointer (&self->writer, PQfinish);
        goto fail;
      }
    prev = get_int64 (q[2].result, 0, 0);
    /* "{101,102,103}" */
    arr = PQgetvalue (q[2].result, 0, 1);
    positions = g_strsplit_set (arr[0] == '{' ? arr + 1 : arr, ",}", -1);
    apply_orders (states, q[3].result);
    if (n_keyed > 0)
      apply_keys (jobs, key_index, n_keyed, answers, q[4].result);
    queries_clear (q, n);
  }

  decide_batch (jobs, n_jobs, states, answers, pending, to_store);

  if (pending->len > 0)
    {
      GString *cols[8];
      gsize n_positions = g_strv_length (positions);

      for (guint c = 0; c < G_N_ELEMENTS (cols); c++)
        cols[c] = array_new ();
      for (guint i = 0; i < pending->len; i++)
        {
          Pending *p = &g_array_index (pending, Pending, i);
          OdOrder *order = g_hash_table_lookup (states, p->order_id);

          p->position = i < n_positions ? g_ascii_strtoll (positions[i], NULL, 10) : 0;
          p->prev = prev;
          if (p->position <= prev)
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                           "PostgreSQL: position %" G_GINT64_FORMAT " not above %" G_GINT64_FORMAT,
                           p->position, prev);
              for (guint c = 0; c < G_N_ELEMENTS (cols); c++)
                g_string_free (cols[c], TRUE);
              goto fail;
            }
          prev = p->position;
          if (order != NULL)
            order->last_position = MAX (order->last_position, p->position);

          array_append_int (cols[0], p->position);
          array_append_int (cols[1], p->prev);
          array_append (cols[2], p->order_id);
          array_append_int (cols[3], p->version);
          array_append (cols[4], p->type);
          array_append (cols[5], p->recorded_at);
          array_append (cols[6], p->job->actor ? p->job->actor : "");
          array_append (cols[7], p->data);
          od_job_set_success (p->job, p->version, p->position);
        }
      for (guint c = 0; c < G_N_ELEMENTS (cols); c++)
        event_cols[c] = array_finish (cols[c]);
    }

  if (to_store->len > 0)
    {
      GString *cols[7];

      for (guint c = 0; c < G_N_ELEMENTS (cols); c++)
        cols[c] = array_new ();
      for (guint i = 0; i < to_store->len; i++)
        {
          OdJob *job = g_ptr_array_index (to_store, i);
          char hex[65];

          for (guint b = 0; b < 32; b++)
            g_snprintf (hex + 2 * b, 3, "%02x", job->body_sha256[b]);
          array_append (cols[0], job->actor ? job->actor : "");
          array_append (cols[1], job->idempotency_key);
          array_append (cols[2], hex);
          array_append_int (cols[3], job->status);
          array_append (cols[4], job->response);
          array_append_int (cols[5], job->status == 200 ? job->version : 0);
          array_append_int (cols[6], job->position);
        }
      for (guint c = 0; c < G_N_ELEMENTS (cols); c++)
        key_cols[c] = array_finish (cols[c]);

      fill_batch_replays (jobs, n_jobs, to_store, answers);
    }

  /* One round trip again: the events, the answers, the notification
   * (delivered to every listener when, and only if, this commits), and
   * the commit. */
  head_s = g_strdup_printf ("%" G_GINT64_FORMAT, prev);
  {
    Query q[4];
    guint n = 0;
    gboolean broken;
    guint failed;

    memset (q, 0, sizeof q);
    if (pending->len > 0)
      {
        q[n] = (Query) { "appending events", insert_events_sql, 8, { NULL } };
        memcpy (q[n].values, event_cols, sizeof event_cols);
        n++;
      }
    if (to_store->len > 0)
      {
        q[n] = (Query) { "storing idempotency keys", insert_keys_sql, 7, { NULL } };
        memcpy (q[n].values, key_cols, sizeof key_cols);
        n++;
      }
    if (pending->len > 0)
      q[n++] = (Query) { "notifying", notify_sql, 1, { head_s } };
    q[n++] = (Query) { "committing", "COMMIT", 0, { NULL } };

    failed = run_pipeline (self->writer, q, n, &broken, retry, error);
    queries_clear (q, n);
    for (guint c = 0; c < G_N_ELEMENTS (event_cols); c++)
      g_clear_pointer (&event_cols[c], g_free);
    for (guint c = 0; c < G_N_ELEMENTS (key_cols); c++)
      g_clear_pointer (&key_cols[c], g_free);
    if (broken)
      {
        /* COMMIT may or may not have happened: answer nothing (the
         * clients retry with their keys, which replays a commit that did
         * happen) and start again from the log. */
        g_clear_pointer (&self->writer, PQfinish);
        g_hash_table_remove_all (self->cache);
        *retry = FALSE;
        goto fail_no_rollback;
      }
    if (failed < n - 1)
      goto fail;
    if (failed == n - 1)
      goto fail_no_rollback;
  }

  cache_states (self, states);
  *appended = pending->len > 0;
  return TRUE;

fail:
  for (guint c = 0; c < G_N_ELEMENTS (event_cols); c++)
    g_free (event_cols[c]);
  if (self->writer != NULL && PQstatus (self->writer) == CONNECTION_OK)
    PQclear (PQexec (self->writer, "ROLLBACK"));
  else
    /* The connection died before COMMIT was sent, so nothing of the batch
     * can have been committed: deciding it again on a new connection is
     * safe. */
    *retry = TRUE;
fail_no_rollback:
  for (guint i = 0; i < n_jobs; i++)
    job_reset (jobs[i]);
  return FALSE;
}

static gboolean
od_store_postgres_execute (OdStore  *store,
                           OdJob   **jobs,
                           guint     n_jobs,
                           GError  **error)
{
  OdStorePostgres *self = OD_STORE_POSTGRES (store);
  gint64 start = g_get_monotonic_time ();
  gboolean appended = FALSE;
  gboolean ok = FALSE;

  if (n_jobs == 0)
    return TRUE;

  g_mutex_lock (&self->write_lock);
  for (guint attempt = 1;; attempt++)
    {
      g_autoptr(GError) local_error = NULL;
      gboolean retry = FALSE;

      ok = execute_once (self, jobs, n_jobs, &appended, &retry, &local_error);
      if (ok)
        break;
      if (!retry || attempt >= OD_PG_MAX_ATTEMPTS)
        {
          g_propagate_error (error, g_steal_pointer (&local_error));
          break;
        }
      g_debug ("PostgreSQL: deciding the batch again: %s", local_error->message);
      /* Another writer's commit (or a lost connection) may have changed
       * the orders: decide from the log. */
      g_hash_table_remove_all (self->cache);
    }
  g_mutex_unlock (&self->write_lock);
  g_debug ("PostgreSQL: batch of %u commands in %.2f ms", n_jobs,
           (g_get_monotonic_time () - start) / 1e3);

  if (ok && appended)
    od_store_emit_appended (store);
  return ok;
}

/* ------------------------------------------------------------------------ */
/* LISTEN/NOTIFY                                                            */

static gpointer
listener_thread (gpointer data)
{
  OdStorePostgres *self = data;
  PGconn *conn = NULL;
  guint backoff_ms = 100;

  for (;;)
    {
      struct pollfd fds[2];
      gboolean notified = FALSE;
      int ready;
      PGnotify *n;

      if (conn == NULL)
        {
          g_autoptr(GError) error = NULL;

          conn = connect_db (self->conninfo, &error);
          if (conn != NULL && !exec_simple (conn, "LISTEN " OD_PG_CHANNEL, &error))
            g_clear_pointer (&conn, PQfinish);
          if (conn == NULL)
            {
              g_message ("PostgreSQL listener: %s; retrying", error->message);
              fds[0].fd = self->wake_fds[0];
              fds[0].events = POLLIN;
              if (poll (fds, 1, backoff_ms) > 0)
                break;
              backoff_ms = MIN (backoff_ms * 2, 5000);
              continue;
            }
          backoff_ms = 100;
          /* Whatever was committed while we were not listening. */
          od_store_emit_appended (OD_STORE (self));
        }

      fds[0].fd = PQsocket (conn);
      fds[0].events = POLLIN;
      fds[1].fd = self->wake_fds[0];
      fds[1].events = POLLIN;
      ready = poll (fds, 2, OD_PG_LISTEN_PROBE_MS);
      if (ready < 0)
        {
          if (errno == EINTR)
            continue;
          break;
        }
      if (fds[1].revents != 0)
        break;
      if (ready == 0)
        {
          /* A quiet listener may be a dead one (a TCP peer that vanished
           * says nothing): probe it, so that a lost connection is noticed
           * and replaced, instead of a stream that silently stops. */
          g_autoptr(GError) error = NULL;

          if (!exec_simple (conn, "SELECT 1", &error))
            {
              g_message ("PostgreSQL listener: %s; reconnecting", error->message);
              g_clear_pointer (&conn, PQfinish);
              continue;
            }
        }
      if (!PQconsumeInput (conn))
        {
          g_message ("PostgreSQL listener lost its connection: %s", PQerrorMessage (conn));
          g_clear_pointer (&conn, PQfinish);
          continue;
        }
      while ((n = PQnotifies (conn)) != NULL)
        {
          if (n->be_pid != g_atomic_int_get (&self->writer_pid))
            notified = TRUE;
          PQfreemem (n);
        }
      if (notified)
        od_store_emit_appended (OD_STORE (self));
    }

  g_clear_pointer (&conn, PQfinish);
  return NULL;
}

/* ------------------------------------------------------------------------ */
/* GObject                                                                  */

static void
od_store_postgres_dispose (GObject *object)
{
  OdStorePostgres *self = OD_STORE_POSTGRES (object);

  if (self->listener != NULL)
    {
      char c = 'q';

      while (write (self->wake_fds[1], &c, 1) < 0 && errno == EINTR)
        ;
      g_thread_join (g_steal_pointer (&self->listener));
    }

  G_OBJECT_CLASS (od_store_postgres_parent_class)->dispose (object);
}

static void
od_store_postgres_finalize (GObject *object)
{
  OdStorePostgres *self = OD_STORE_POSTGRES (object);

  g_clear_pointer (&self->writer, PQfinish);
  g_clear_pointer (&self->checker, PQfinish);
  g_ptr_array_unref (self->idle);
  g_hash_table_unref (self->cache);
  for (guint i = 0; i < 2; i++)
    if (self->wake_fds[i] >= 0)
      close (self->wake_fds[i]);
  g_mutex_clear (&self->write_lock);
  g_mutex_clear (&self->pool_lock);
  g_mutex_clear (&self->check_lock);
  g_cond_clear (&self->pool_cond);
  g_free (self->conninfo);

  G_OBJECT_CLASS (od_store_postgres_parent_class)->finalize (object);
}

static void
od_store_postgres_class_init (OdStorePostgresClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_store_postgres_dispose;
  object_class->finalize = od_store_postgres_finalize;
}

static void
od_store_postgres_iface_init (OdStoreInterface *iface)
{
  iface->execute = od_store_postgres_execute;
  iface->read_events = od_store_postgres_read_events;
  iface->get_head = od_store_postgres_get_head;
  iface->check = od_store_postgres_check;
  iface->digest = od_store_postgres_digest;
}

static void
od_store_postgres_init (OdStorePostgres *self)
{
  g_mutex_init (&self->write_lock);
  g_mutex_init (&self->pool_lock);
  g_mutex_init (&self->check_lock);
  g_cond_init (&self->pool_cond);
  self->idle = g_ptr_array_new_with_free_func ((GDestroyNotify) PQfinish);
  self->cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify) od_order_free);
  self->wake_fds[0] = self->wake_fds[1] = -1;
}

OdStore *
od_store_postgres_new (const char  *conninfo,
                       GError     **error)
{
  g_autoptr(OdStorePostgres) self = g_object_new (OD_TYPE_STORE_POSTGRES, NULL);

  self->conninfo = g_strdup (conninfo);
  if (!ensure_writer (self, error) || !migrate (self->writer, error))
    return NULL;
  if (!g_unix_open_pipe (self->wake_fds, FD_CLOEXEC, error))
    return NULL;
  self->listener = g_thread_new ("od-pg-listen", listener_thread, self);
  return OD_STORE (g_steal_pointer (&self));
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-outbox.h"
#include "od-http.h"
#include "od-tls.h"
#include "od-cache-private.h"
#include "od-outbox-store.h"
#include "od-sqlite.h"
#include "od-json.h"
#include "od-uuid.h"

#include <errno.h>
#include <libsoup/soup.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define BACKOFF_MAX_SEC 30

/* A claim on a command (see claim_job()) older than this is taken over
 * even when its owner cannot be proven dead: the session's timeout (30 s)
 * bounds a send, and a resend carries the same Idempotency-Key. */
#define CLAIM_LEASE_USEC (60 * G_USEC_PER_SEC)

struct _OdOutbox
{
  GObject       parent_instance;

  OdCache      *cache;
  char         *server_url;
  char         *token;
  SoupSession  *session;
  GCancellable *cancellable;

  gint64        sending_id;     /* 0 = idle */
  gboolean      paused;         /* 401/403: until set_server */
  guint         retry_source;
  guint         claim_watch;    /* looks again while another process sends */
  guint         backoff_exp;
  GHashTable   *discarding;     /* ids with a discard in flight */
  GHashTable   *accepted;       /* id → last state seen, of commands not final yet */
  char         *identity_fp;    /* fingerprint of the token, see od_outbox_token_fingerprint() */
  char         *claim_owner;    /* this outbox's name in claim_owner */
  gulong        outbox_changed_id;
  guint         writes_in_flight;
};

G_DEFINE_FINAL_TYPE (OdOutbox, od_outbox, G_TYPE_OBJECT)

enum
{
  SIGNAL_COMMAND_CHANGED,
  SIGNAL_SIGN_IN_NEEDED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static const char *state_names[] = {
  "queued", "sent", "accepted", "visible", "rejected", "discarded",
};

GType
od_command_state_get_type (void)
{
  static gsize type_id = 0;

  if (g_once_init_enter (&type_id))
    {
      static const GEnumValue values[] = {
        { OD_COMMAND_STATE_QUEUED, "OD_COMMAND_STATE_QUEUED", "queued" },
        { OD_COMMAND_STATE_SENT, "OD_COMMAND_STATE_SENT", "sent" },
        { OD_COMMAND_STATE_ACCEPTED, "OD_COMMAND_STATE_ACCEPTED", "accepted" },
        { OD_COMMAND_STATE_VISIBLE, "OD_COMMAND_STATE_VISIBLE", "visible" },
        { OD_COMMAND_STATE_REJECTED, "OD_COMMAND_STATE_REJECTED", "rejected" },
        { OD_COMMAND_STATE_DISCARDED, "OD_COMMAND_STATE_DISCARDED", "discarded" },
        { 0, NULL, NULL },
      };
      GType type = g_enum_register_static (g_intern_static_string ("OdCommandState"), values);

      g_once_init_leave (&type_id, type);
    }
  return type_id;
}

const char *
od_command_state_name (OdCommandState state)
{
  return state < G_N_ELEMENTS (state_names) ? state_names[state] : "unknown";
}

void
od_pending_command_free (OdPendingCommand *c)
{
  if (c == NULL)
    return;
  g_free (c->identity_fp);
  g_free (c->identity_server);
  g_free (c->idempotency_key);
  g_free (c->order_id);
  g_free (c->type);
  g_free (c->body);
  g_free (c->code);
  g_free (c->detail);
  g_free (c->problem);
  g_free (c);
}

double
od_pending_command_latency_ms (const OdPendingCommand *c)
{
  if (c->state != OD_COMMAND_STATE_VISIBLE || c->visible_at == 0)
    return -1;
  return (c->visible_at - c->created_at) / 1000.0;
}

static void kick_later (OdOutbox *self, guint seconds);

char *
od_outbox_token_fingerprint (const char *token)
{
  g_autofree char *hex = NULL;

  if (token == NULL || *token == '\0')
    return g_strdup ("none");
  hex = g_compute_checksum_for_string (G_CHECKSUM_SHA256, token, -1);
  /* 64 bits: enough to tell sign-ins apart, too little to be the token. */
  return g_strndup (hex, 16);
}

/* Claims name their owner "PIDNS:PID:N" (N tells apart the outboxes of
 * one process).  Owners of this process are alive while registered
 * here; another process of the same PID namespace while kill(pid, 0)
 * finds it; one of another namespace (a Flatpak sandbox) cannot be
 * checked: its claim lasts the lease. */
static GMutex      owners_lock;
static GHashTable *live_owners;

static const char *
pid_namespace (void)
{
  static gsize ns;

  if (g_once_init_enter (&ns))
    {
      char *link = g_file_read_link ("/proc/self/ns/pid", NULL);

      g_once_init_leave (&ns, (gsize) (link ? link : g_strdup ("pid:?")));
    }
  return (const char *) ns;
}

static char *
new_claim_owner (void)
{
  static gint counter;
  char *owner = g_strdup_printf ("%s:%d:%d", pid_namespace (), (int) getpid (),
                                 g_atomic_int_add (&counter, 1));

  g_mutex_lock (&owners_lock);
  if (live_owners == NULL)
    live_owners = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_hash_table_add (live_owners, g_strdup (owner));
  g_mutex_unlock (&owners_lock);
  return owner;
}

static gboolean
claim_owner_alive (const char *owner)
{
  g_autofree char *prefix = g_strdup_printf ("%s:", pid_namespace ());
  const char *rest;
  gint64 pid;
  gboolean alive;

  if (!g_str_has_prefix (owner, prefix))
    return TRUE;
  rest = owner + strlen (prefix);
  pid = g_ascii_strtoll (rest, NULL, 10);
  if (pid == getpid ())
    {
      g_mutex_lock (&owners_lock);
      alive = live_owners != NULL && g_hash_table_contains (live_owners, owner);
      g_mutex_unlock (&owners_lock);
      return alive;
    }
  return pid > 0 && (kill ((pid_t) pid, 0) == 0 || errno == EPERM);
}

/* May another owner send this command now? */
static gboolean
claimable (const char *claim_owner,
           gint64      claim_at,
           const char *me,
           gint64      now)
{
  return claim_owner == NULL || g_strcmp0 (claim_owner, me) == 0
         || claim_at < now - CLAIM_LEASE_USEC || !claim_owner_alive (claim_owner);
}

/* ------------------------------------------------------------------ */
/* Writer jobs (run on the cache's writer thread; SQL in od-outbox-store.c) */

typedef struct
{
  char   *key;
  char   *order_id;
  char   *type;
  char   *body;
  gint64  created_at;
  char   *identity_fp;
  char   *identity_server;
} InsertJob;

static void
insert_job_free (InsertJob *j)
{
  g_free (j->identity_fp);
  g_free (j->identity_server);
  g_free (j->key);
  g_free (j->order_id);
  g_free (j->type);
  g_free (j->body);
  g_free (j);
}

static gboolean
insert_job (sqlite3   *db,
            gpointer   data,
            gpointer  *result,
            GError   **error)
{
  InsertJob *j = data;
  gint64 *id = g_new (gint64, 1);

  if (!od_outbox_store_insert (db, j->key, j->order_id, j->type, j->body, j->created_at,
                               j->identity_fp, j->identity_server, id, error))
    {
      g_free (id);
      return FALSE;
    }
  *result = id;
  return TRUE;
}

typedef OdOutboxUpdate UpdateJob;

static void
update_job_free (UpdateJob *j)
{
  g_free (j->identity_fp);
  g_free (j->identity_server);
  g_free (j->code);
  g_free (j->detail);
  g_free (j->problem);
  g_free (j);
}

static gboolean
update_job (sqlite3   *db,
            gpointer   data,
            gpointer  *result,
            GError   **error)
{
  UpdateJob *j = data;
  gboolean changed = FALSE;

  j->claim_free_before = j->now - CLAIM_LEASE_USEC;
  if (!od_outbox_store_update (db, j, &changed, error))
    return FALSE;
  *result = GINT_TO_POINTER (changed ? 2 : 1);
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

#define COMMAND_COLUMNS \
  "id, idempotency_key, order_id, type, body, state, attempts, http_status, position," \
  " version, code, detail, problem, created_at, sent_at, answered_at, visible_at," \
  " identity_fp, identity_server"

/* Held: not final, and queued by another identity than `fp`@`server`
 * (NULL server: no identity to compare with, nothing is held). */
static gboolean
is_held (OdPendingCommand *c,
         const char       *fp,
         const char       *server)
{
  if (server == NULL)
    return FALSE;
  if (c->state != OD_COMMAND_STATE_QUEUED && c->state != OD_COMMAND_STATE_SENT)
    return FALSE;
  return g_strcmp0 (c->identity_fp, fp) != 0 || g_strcmp0 (c->identity_server, server) != 0;
}

static OdPendingCommand *
read_command_as (sqlite3_stmt *st,
                 const char   *fp,
                 const char   *server)
{
  OdPendingCommand *c = g_new0 (OdPendingCommand, 1);

  c->id = sqlite3_column_int64 (st, 0);
  c->idempotency_key = g_strdup ((const char *) sqlite3_column_text (st, 1));
  c->order_id = g_strdup ((const char *) sqlite3_column_text (st, 2));
  c->type = g_strdup ((const char *) sqlite3_column_text (st, 3));
  c->body = g_strdup ((const char *) sqlite3_column_text (st, 4));
  c->state = sqlite3_column_int (st, 5);
  c->attempts = sqlite3_column_int (st, 6);
  c->http_status = sqlite3_column_int (st, 7);
  c->position = sqlite3_column_int64 (st, 8);
  c->version = sqlite3_column_int64 (st, 9);
  c->code = g_strdup ((const char *) sqlite3_column_text (st, 10));
  c->detail = g_strdup ((const char *) sqlite3_column_text (st, 11));
  c->problem = g_strdup ((const char *) sqlite3_column_text (st, 12));
  c->created_at = sqlite3_column_int64 (st, 13);
  c->sent_at = sqlite3_column_int64 (st, 14);
  c->answered_at = sqlite3_column_int64 (st, 15);
  c->visible_at = sqlite3_column_int64 (st, 16);
  c->identity_fp = g_strdup ((const char *) sqlite3_column_text (st, 17));
  c->identity_server = g_strdup ((const char *) sqlite3_column_text (st, 18));
  c->held = is_held (c, fp, server);
  return c;
}

#define read_command(st) read_command_as ((st), self->identity_fp, self->server_url)

OdPendingCommand *
od_outbox_get (OdOutbox  *self,
               gint64     id,
               GError   **error)
{
  sqlite3_stmt *st = od_cache_prepare_read (self->cache,
                                            "SELECT " COMMAND_COLUMNS
                                            " FROM pending_commands WHERE id = ?",
                                            error);
  OdPendingCommand *c = NULL;

  if (st == NULL)
    return NULL;
  sqlite3_bind_int64 (st, 1, id);
  if (sqlite3_step (st) == SQLITE_ROW)
    c = read_command (st);
  sqlite3_reset (st);
  return c;
}

GPtrArray *
od_outbox_list (OdOutbox  *self,
                gboolean   include_final,
                guint      limit,
                GError   **error)
{
  GPtrArray *list = g_ptr_array_new_with_free_func ((GDestroyNotify) od_pending_command_free);
  sqlite3_stmt *st;

  st = od_cache_prepare_read (self->cache,
                              include_final
                                ? "SELECT " COMMAND_COLUMNS " FROM pending_commands"
                                  " ORDER BY id DESC LIMIT ?"
                                : "SELECT " COMMAND_COLUMNS " FROM pending_commands"
                                  " WHERE state IN " OD_OUTBOX_SQL_NOT_FINAL " ORDER BY id LIMIT ?1",
                              error);
  if (st == NULL)
    {
      g_ptr_array_unref (list);
      return NULL;
    }
  sqlite3_bind_int64 (st, 1, limit ? limit : G_MAXINT64);
  od_outbox_store_bind_states (st);
  while (sqlite3_step (st) == SQLITE_ROW)
    g_ptr_array_add (list, read_command (st));
  sqlite3_reset (st);
  return list;
}

/* Held commands (another identity's) are not pending here: this
 * outbox will not send them without consent. */
#define NOT_HELD_SQL \
  " AND NOT (state IN " OD_OUTBOX_SQL_UNANSWERED " AND ?2 IS NOT NULL" \
  "   AND (identity_fp IS NOT ?1 OR identity_server IS NOT ?2))"

static void
bind_identity (OdOutbox     *self,
               sqlite3_stmt *st)
{
  sqlite3_bind_text (st, 1, self->identity_fp, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text (st, 2, self->server_url, -1, SQLITE_TRANSIENT);
  od_outbox_store_bind_states (st);
}

guint
od_outbox_count_held (OdOutbox *self)
{
  sqlite3_stmt *st = od_cache_prepare_read (self->cache,
                                            "SELECT count(*) FROM pending_commands"
                                            " WHERE state IN " OD_OUTBOX_SQL_UNANSWERED " AND ?2 IS NOT NULL"
                                            "   AND (identity_fp IS NOT ?1"
                                            "        OR identity_server IS NOT ?2)",
                                            NULL);
  guint n = 0;

  if (st == NULL)
    return 0;
  bind_identity (self, st);
  if (sqlite3_step (st) == SQLITE_ROW)
    n = sqlite3_column_int (st, 0);
  sqlite3_reset (st);
  return n;
}

guint
od_outbox_count_pending (OdOutbox *self)
{
  sqlite3_stmt *st = od_cache_prepare_read (self->cache,
                                            "SELECT count(*) FROM pending_commands"
                                            " WHERE state IN " OD_OUTBOX_SQL_NOT_FINAL NOT_HELD_SQL,
                                            NULL);
  guint n = 0;

  if (st == NULL)
    return 0;
  bind_identity (self, st);
  if (sqlite3_step (st) == SQLITE_ROW)
    n = sqlite3_column_int (st, 0);
  sqlite3_reset (st);
  return n;
}

GHashTable *
od_outbox_pending_orders (OdOutbox *self)
{
  GHashTable *set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  sqlite3_stmt *st = od_cache_prepare_read (self->cache,
                                            "SELECT DISTINCT order_id FROM pending_commands"
                                            " WHERE state IN " OD_OUTBOX_SQL_NOT_FINAL NOT_HELD_SQL,
                                            NULL);

  if (st == NULL)
    return set;
  bind_identity (self, st);
  while (sqlite3_step (st) == SQLITE_ROW)
    g_hash_table_add (set, g_strdup ((const char *) sqlite3_column_text (st, 0)));
  sqlite3_reset (st);
  return set;
}

gboolean
od_outbox_is_busy (OdOutbox *self)
{
  return self->sending_id != 0 || self->writes_in_flight > 0 || od_outbox_count_pending (self) > 0;
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */

/* A command's answer is a small object or a short problem+json: a server
 * that sends more is hostile or broken, and must not grow the console's
 * memory without end. */
#define MAX_ANSWER_BYTES (64 * 1024)
#define ANSWER_BLOCK     (16 * 1024)

typedef struct
{
  OdOutbox *self;
  gint64    id;
  GTlsCertificateFlags tls_errors; /* of a refused server certificate */
  SoupMessage  *msg;               /* sending only: the request */
  GInputStream *in;                /* sending only: its answer, being read */
  GByteArray   *answer;
} SendData;

/* Commands not final are watched: another process (the console, or
 * orderdeskctl beside it) may send them or see them applied. */
static void
track (OdOutbox         *self,
       OdPendingCommand *c)
{
  if (c->state == OD_COMMAND_STATE_QUEUED || c->state == OD_COMMAND_STATE_SENT
      || c->state == OD_COMMAND_STATE_ACCEPTED)
    g_hash_table_insert (self->accepted, g_memdup2 (&c->id, sizeof c->id),
                         GINT_TO_POINTER (c->state + 1));
  else
    g_hash_table_remove (self->accepted, &c->id);
}

static void
emit_changed (OdOutbox *self,
              gint64    id)
{
  g_autoptr(OdPendingCommand) c = od_outbox_get (self, id, NULL);

  if (c == NULL)
    return;
  track (self, c);
  g_signal_emit (self, signals[SIGNAL_COMMAND_CHANGED], 0, id, c->state);
}

static void
update_done (GObject      *source,
             GAsyncResult *result,
             gpointer      data)
{
  SendData *sd = data;
  OdOutbox *self = sd->self;
  g_autoptr(GError) error = NULL;

  self->writes_in_flight--;
  od_cache_write_finish (OD_CACHE (source), result, &error);
  if (error != NULL)
    g_warning ("could not store an outbox command's state: %s", error->message);
  else if (sd->id > 0)
    emit_changed (self, sd->id);
  g_object_unref (self);
  g_free (sd);
}

static void
queue_update (OdOutbox  *self,
              UpdateJob *job,
              gboolean   announce)
{
  SendData *sd = g_new0 (SendData, 1);

  sd->self = g_object_ref (self);
  sd->id = announce ? job->id : 0;
  job->now = g_get_real_time ();
  self->writes_in_flight++;
  od_cache_write_async_full (self->cache, FALSE, update_job, job,
                             (GDestroyNotify) update_job_free, NULL, update_done, sd);
}

static void kick (OdOutbox *self);

typedef struct
{
  OdOutbox *self;
  gint64    id;
} AnswerData;

static void
answer_stored (GObject      *source,
               GAsyncResult *result,
               gpointer      data)
{
  AnswerData *ad = data;
  OdOutbox *self = ad->self;
  g_autoptr(GError) error = NULL;

  self->writes_in_flight--;
  od_cache_write_finish (OD_CACHE (source), result, &error);
  if (error != NULL)
    {
      /* Not stored: the command stays "sent" and is resent with the same
       * key, which the server answers from its idempotency store. */
      g_warning ("could not store a command's answer: %s", error->message);
      self->sending_id = 0;
      kick_later (self, 1);
    }
  else
    {
      self->sending_id = 0;
      emit_changed (self, ad->id);
      kick (self);
    }
  g_object_unref (self);
  g_free (ad);
}

static void
store_answer (OdOutbox  *self,
              UpdateJob *job)
{
  AnswerData *ad = g_new0 (AnswerData, 1);

  ad->self = g_object_ref (self);
  ad->id = job->id;
  job->now = g_get_real_time ();
  self->writes_in_flight++;
  od_cache_write_async_full (self->cache, FALSE, update_job, job,
                             (GDestroyNotify) update_job_free, NULL, answer_stored, ad);
}

static gboolean
retry_cb (gpointer data)
{
  OdOutbox *self = data;

  self->retry_source = 0;
  kick (self);
  return G_SOURCE_REMOVE;
}

static void
kick_later (OdOutbox *self,
            guint     seconds)
{
  if (self->retry_source != 0)
    return;
  self->retry_source = g_timeout_add_seconds (MAX (seconds, 1), retry_cb, self);
}

static void
transient_failure (OdOutbox   *self,
                   gint64      id,
                   guint       http_status,
                   const char *why,
                   guint       retry_after)
{
  UpdateJob *job = g_new0 (UpdateJob, 1);
  guint delay;

  job->id = id;
  job->kind = OD_OUTBOX_UPDATE_TRANSIENT;
  job->http_status = http_status;
  job->detail = g_strdup (why);
  queue_update (self, job, TRUE);
  self->sending_id = 0;
  delay = MIN (BACKOFF_MAX_SEC, 1u << MIN (self->backoff_exp, 5));
  self->backoff_exp++;
  kick_later (self, MAX (delay, retry_after));
}

static void
answer_done (SendData *sd,
             GBytes   *body,
             GError   *error)
{
  OdOutbox *self = sd->self;
  g_autoptr(SoupMessage) msg = g_steal_pointer (&sd->msg);
  gint64 id = sd->id;
  GTlsCertificateFlags tls_errors = sd->tls_errors;
  guint status;
  const char *bytes;
  gsize len;

  if (sd->in != NULL)
    g_input_stream_close (sd->in, NULL, NULL);
  g_clear_object (&sd->in);
  g_clear_pointer (&sd->answer, g_byte_array_unref);
  g_free (sd);
  if (body == NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          /* A refused certificate is said in words; the command stays
           * queued and is resent once the operator trusts the server. */
          g_autofree char *why = od_tls_describe_failure (msg, tls_errors, error);

          transient_failure (self, id, 0, why, 0);
        }
      else
        self->sending_id = 0;
      g_object_unref (self);
      return;
    }

#ifdef OD_TEST_HOOKS
  /* For tests of the outbox's crash safety only (built with
   * -Dtest_hooks=true, never in a release): die after the server
   * answered and before the answer is stored. */
  if (g_getenv ("OD_TEST_OUTBOX_CRASH_AFTER_SEND") != NULL)
    raise (SIGKILL);
#endif

  status = soup_message_get_status (msg);
  bytes = g_bytes_get_data (body, &len);
  if (status == 200)
    {
      g_autoptr(JsonNode) root = od_json_parse_object (bytes, len, NULL);
      JsonObject *o = root ? json_node_get_object (root) : NULL;
      JsonNode *pos = o ? json_object_get_member (o, "position") : NULL;
      JsonNode *ver = o ? json_object_get_member (o, "version") : NULL;
      UpdateJob *job;

      if (!od_json_is_integer (pos))
        {
          transient_failure (self, id, status, "the server's answer has no position", 0);
          g_object_unref (self);
          return;
        }
      self->backoff_exp = 0;
      job = g_new0 (UpdateJob, 1);
      job->id = id;
      job->kind = OD_OUTBOX_UPDATE_ACCEPTED;
      job->http_status = status;
      job->position = json_node_get_int (pos);
      job->version = od_json_is_integer (ver) ? json_node_get_int (ver) : -1;
      store_answer (self, job);
    }
  else
    {
      g_autoptr(OdProblem) problem = od_problem_parse (status, bytes, len);

      if (status == 403)
        {
          /* Forbidden (a viewer's token): this identity may not do it,
           * now or later.  Final at once, never retried; the queue moves
           * on. */
          UpdateJob *job = g_new0 (UpdateJob, 1);

          job->id = id;
          job->kind = OD_OUTBOX_UPDATE_REJECTED;
          job->http_status = status;
          job->code = g_strdup (problem->code_name ? problem->code_name : "forbidden");
          job->detail = g_strdup (problem->detail ? problem->detail
                                                  : "this sign-in may not send commands");
          job->problem = g_strndup (bytes, MIN (len, 64 * 1024));
          store_answer (self, job);
        }
      else if (status == 401)
        {
          self->paused = TRUE;
          self->sending_id = 0;
          {
            UpdateJob *job = g_new0 (UpdateJob, 1);

            job->id = id;
            job->kind = OD_OUTBOX_UPDATE_TRANSIENT;
            job->http_status = status;
            job->detail = g_strdup (problem->detail);
            queue_update (self, job, TRUE);
          }
          g_signal_emit (self, signals[SIGNAL_SIGN_IN_NEEDED], 0);
        }
      else if (status == 429 || status == 408 || status >= 500
               || problem->code == OD_PROBLEM_IDEMPOTENCY_IN_FLIGHT)
        {
          guint retry_after = problem->retry_after;
          const char *ra = soup_message_headers_get_one (soup_message_get_response_headers (msg),
                                                         "Retry-After");

          if (ra != NULL)
            retry_after = MAX (retry_after, (guint) g_ascii_strtoull (ra, NULL, 10));
          transient_failure (self, id, status, problem->detail, retry_after);
        }
      else
        {
          /* A refusal is final and shown with the server's detail; the
           * queue moves on to the next command. */
          UpdateJob *job = g_new0 (UpdateJob, 1);

          job->id = id;
          job->kind = OD_OUTBOX_UPDATE_REJECTED;
          job->http_status = status;
          job->code = g_strdup (problem->code_name);
          job->detail = g_strdup (problem->detail);
          job->problem = g_strndup (bytes, MIN (len, 64 * 1024));
          store_answer (self, job);
        }
    }
  g_object_unref (self);
}

static void
answer_read (GObject      *source,
             GAsyncResult *result,
             gpointer      data)
{
  SendData *sd = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) block = g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), result,
                                                              &error);
  gsize n;

  if (block == NULL)
    {
      answer_done (sd, NULL, error);
      return;
    }
  n = g_bytes_get_size (block);
  if (n == 0)
    {
      g_autoptr(GBytes) body = g_byte_array_free_to_bytes (g_steal_pointer (&sd->answer));

      answer_done (sd, body, NULL);
      return;
    }
  if (n > MAX_ANSWER_BYTES - sd->answer->len)
    {
      g_set_error (&error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                   "the server's answer is larger than 64 KiB");
      answer_done (sd, NULL, error);
      return;
    }
  g_byte_array_append (sd->answer, g_bytes_get_data (block, NULL), n);
  g_input_stream_read_bytes_async (sd->in, ANSWER_BLOCK, G_PRIORITY_DEFAULT,
                                   sd->self->cancellable, answer_read, sd);
}

static void
send_done (GObject      *source,
           GAsyncResult *result,
           gpointer      data)
{
  SendData *sd = data;
  g_autoptr(GError) error = NULL;

  sd->in = soup_session_send_finish (SOUP_SESSION (source), result, &error);
  if (sd->in == NULL)
    {
      answer_done (sd, NULL, error);
      return;
    }
  sd->answer = g_byte_array_new ();
  g_input_stream_read_bytes_async (sd->in, ANSWER_BLOCK, G_PRIORITY_DEFAULT,
                                   sd->self->cancellable, answer_read, sd);
}

/* Claiming a command for sending is one write transaction, so two
 * processes sharing the cache (the console and orderdeskctl) never send
 * the same command at once: the first command of this identity still to
 * send is marked sent and claimed by this outbox unless another live
 * owner claims it (then nothing: this outbox waits, in submission order,
 * for that owner's answer, which the cache reports as outbox-changed). */
typedef struct
{
  char   *identity_fp;
  char   *identity_server;
  char   *owner;
  gint64  now;
} ClaimJob;

static void
claim_job_free (ClaimJob *j)
{
  g_free (j->identity_fp);
  g_free (j->identity_server);
  g_free (j->owner);
  g_free (j);
}

#define NEXT_TO_SEND_SQL \
  "SELECT id, claim_owner, claim_at FROM pending_commands" \
  " WHERE state IN " OD_OUTBOX_SQL_UNANSWERED \
  " AND identity_fp = ?1 AND identity_server = ?2 ORDER BY id LIMIT 1"

static gboolean
claim_job (sqlite3   *db,
           gpointer   data,
           gpointer  *result,
           GError   **error)
{
  ClaimJob *j = data;
  sqlite3_stmt *st = od_sqlite_prepare (db, NEXT_TO_SEND_SQL, error);
  gint64 id = 0;
  gboolean ok = TRUE;

  if (st == NULL)
    return FALSE;
  sqlite3_bind_text (st, 1, j->identity_fp, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 2, j->identity_server, -1, SQLITE_STATIC);
  od_outbox_store_bind_states (st);
  if (sqlite3_step (st) == SQLITE_ROW
      && claimable ((const char *) sqlite3_column_text (st, 1), sqlite3_column_int64 (st, 2),
                    j->owner, j->now))
    id = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  if (id == 0)
    return TRUE;

  if (!od_outbox_store_claim (db, id, j->owner, j->now, error))
    return FALSE;

  st = od_sqlite_prepare (db, "SELECT " COMMAND_COLUMNS " FROM pending_commands WHERE id = ?",
                          error);
  if (st == NULL)
    return FALSE;
  sqlite3_bind_int64 (st, 1, id);
  if (sqlite3_step (st) == SQLITE_ROW)
    *result = read_command_as (st, j->identity_fp, j->identity_server);
  else
    ok = FALSE;
  sqlite3_finalize (st);
  if (!ok)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "outbox: claimed command %"
                 G_GINT64_FORMAT " vanished", id);
  return ok;
}

static void
send_claimed (OdOutbox         *self,
              OdPendingCommand *c)
{
  g_autofree char *uri = NULL;
  g_autoptr(SoupMessage) msg = NULL;
  g_autoptr(GBytes) body = NULL;
  SendData *sd;

  uri = g_strconcat (self->server_url, "/v1/commands", NULL);
  msg = soup_message_new ("POST", uri);
  if (msg == NULL)
    {
      transient_failure (self, c->id, 0, "the server address is not a valid URL", 0);
      return;
    }
  od_http_authorize (msg, self->token);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Idempotency-Key",
                                c->idempotency_key);
  /* The exact bytes stored: a resend must be byte-identical for the
   * server to recognize it. */
  body = g_bytes_new (c->body, strlen (c->body));
  soup_message_set_request_body_from_bytes (msg, "application/json", body);

  self->sending_id = c->id;
  sd = g_new0 (SendData, 1);
  sd->self = g_object_ref (self);
  sd->id = c->id;
  od_tls_watch_message (msg, &sd->tls_errors);
  sd->msg = g_object_ref (msg);
  soup_session_send_async (self->session, msg, G_PRIORITY_DEFAULT, self->cancellable, send_done,
                           sd);
}

static void
claim_done (GObject      *source,
            GAsyncResult *result,
            gpointer      data)
{
  OdOutbox *self = data;
  g_autoptr(GError) error = NULL;
  g_autoptr(OdPendingCommand) c = od_cache_write_finish (OD_CACHE (source), result, &error);

  self->writes_in_flight--;
  self->sending_id = 0;
  if (error != NULL)
    {
      g_warning ("could not claim an outbox command: %s", error->message);
      kick_later (self, 1);
    }
  else if (c != NULL && !g_cancellable_is_cancelled (self->cancellable))
    {
      track (self, c);
      g_signal_emit (self, signals[SIGNAL_COMMAND_CHANGED], 0, c->id, c->state);
      if (self->server_url != NULL && !self->paused)
        send_claimed (self, c);
    }
  g_object_unref (self);
}

static gboolean
claim_watch_cb (gpointer data)
{
  OdOutbox *self = data;

  self->claim_watch = 0;
  kick (self);
  return G_SOURCE_REMOVE;
}

static void
kick (OdOutbox *self)
{
  sqlite3_stmt *st;
  gint64 id = 0;
  gboolean free_to_send = FALSE;
  ClaimJob *job;

  if (self->sending_id != 0 || self->paused || self->server_url == NULL
      || self->retry_source != 0)
    return;
  /* A read first: nothing to send, or another owner sending, costs no
   * write (and no outbox-changed that would kick again). */
  st = od_cache_prepare_read (self->cache, NEXT_TO_SEND_SQL, NULL);
  if (st == NULL)
    return;
  bind_identity (self, st);
  if (sqlite3_step (st) == SQLITE_ROW)
    {
      id = sqlite3_column_int64 (st, 0);
      free_to_send = claimable ((const char *) sqlite3_column_text (st, 1),
                                sqlite3_column_int64 (st, 2), self->claim_owner,
                                g_get_real_time ());
    }
  sqlite3_reset (st);
  if (id != 0 && !free_to_send && self->claim_watch == 0)
    {
      /* Another live process is sending it.  If that process dies or
       * exits before the answer, nothing in the cache changes to say
       * so: look again each second rather than wait for a change. */
      self->claim_watch = g_timeout_add_seconds (1, claim_watch_cb, self);
    }
  if (id == 0 || !free_to_send || g_hash_table_contains (self->discarding, &id))
    return;

  self->sending_id = -1; /* claiming */
  job = g_new0 (ClaimJob, 1);
  job->identity_fp = g_strdup (self->identity_fp);
  job->identity_server = g_strdup (self->server_url);
  job->owner = g_strdup (self->claim_owner);
  job->now = g_get_real_time ();
  self->writes_in_flight++;
  od_cache_write_async_full (self->cache, FALSE, claim_job, job,
                             (GDestroyNotify) claim_job_free, NULL, claim_done,
                             g_object_ref (self));
}

void
od_outbox_kick (OdOutbox *self)
{
  g_clear_handle_id (&self->retry_source, g_source_remove);
  self->backoff_exp = 0;
  kick (self);
}

/* ------------------------------------------------------------------ */

static void
on_outbox_changed (OdCache  *cache,
                   OdOutbox *self)
{
  g_autoptr(GList) ids = g_hash_table_get_keys (self->accepted);

  for (GList *l = ids; l != NULL; l = l->next)
    {
      gint64 id = *(gint64 *) l->data;
      int seen = GPOINTER_TO_INT (g_hash_table_lookup (self->accepted, &id)) - 1;
      g_autoptr(OdPendingCommand) c = od_outbox_get (self, id, NULL);

      if (c == NULL)
        g_hash_table_remove (self->accepted, &id);
      else if ((int) c->state != seen)
        emit_changed (self, id);
    }
  /* Another process may have queued, answered or released a command:
   * what waits for this identity goes now. */
  kick (self);
}

static void
od_outbox_dispose (GObject *object)
{
  OdOutbox *self = OD_OUTBOX (object);

  g_cancellable_cancel (self->cancellable);
  g_clear_handle_id (&self->retry_source, g_source_remove);
  g_clear_handle_id (&self->claim_watch, g_source_remove);
  if (self->cache)
    g_clear_signal_handler (&self->outbox_changed_id, self->cache);
  g_clear_object (&self->session);
  g_clear_object (&self->cache);
  G_OBJECT_CLASS (od_outbox_parent_class)->dispose (object);
}

static void
od_outbox_finalize (GObject *object)
{
  OdOutbox *self = OD_OUTBOX (object);

  g_clear_object (&self->cancellable);
  g_hash_table_unref (self->discarding);
  g_hash_table_unref (self->accepted);
  g_free (self->server_url);
  g_free (self->token);
  g_free (self->identity_fp);
  g_mutex_lock (&owners_lock);
  g_hash_table_remove (live_owners, self->claim_owner);
  g_mutex_unlock (&owners_lock);
  g_free (self->claim_owner);
  G_OBJECT_CLASS (od_outbox_parent_class)->finalize (object);
}

static void
od_outbox_class_init (OdOutboxClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_outbox_dispose;
  object_class->finalize = od_outbox_finalize;

  signals[SIGNAL_COMMAND_CHANGED] = g_signal_new ("command-changed", G_TYPE_FROM_CLASS (klass),
                                                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                                  G_TYPE_NONE, 2, G_TYPE_INT64,
                                                  OD_TYPE_COMMAND_STATE);
  signals[SIGNAL_SIGN_IN_NEEDED] = g_signal_new ("sign-in-needed", G_TYPE_FROM_CLASS (klass),
                                                 G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                                 G_TYPE_NONE, 0);
}

static void
od_outbox_init (OdOutbox *self)
{
  self->cancellable = g_cancellable_new ();
  self->discarding = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  self->accepted = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  self->claim_owner = new_claim_owner ();
  self->identity_fp = od_outbox_token_fingerprint (NULL);
  self->session = soup_session_new_with_options ("timeout", 30, "user-agent",
                                                 "orderdesk-core/0.1", NULL);
}

OdOutbox *
od_outbox_new (OdCache    *cache,
               const char *server_url,
               const char *token)
{
  OdOutbox *self = g_object_new (OD_TYPE_OUTBOX, NULL);
  g_autoptr(GPtrArray) open = NULL;

  self->cache = g_object_ref (cache);
  self->outbox_changed_id = g_signal_connect (cache, "outbox-changed",
                                              G_CALLBACK (on_outbox_changed), self);
  od_outbox_set_server (self, server_url, token);
  open = od_outbox_list (self, FALSE, 0, NULL);
  for (guint i = 0; open && i < open->len; i++)
    {
      OdPendingCommand *c = g_ptr_array_index (open, i);

      track (self, c);
    }
  return self;
}

void
od_outbox_set_tls_database (OdOutbox     *self,
                            GTlsDatabase *database)
{
  g_autoptr(GTlsDatabase) system = NULL;

  g_return_if_fail (OD_IS_OUTBOX (self));
  g_return_if_fail (database == NULL || G_IS_TLS_DATABASE (database));

  /* The session may have had another database: go back to the system's
   * explicitly rather than rely on what NULL means to libsoup. */
  if (database == NULL)
    database = system = g_tls_backend_get_default_database (g_tls_backend_get_default ());
  soup_session_set_tls_database (self->session, database);
  /* A command that failed on the old trust may go now. */
  self->paused = FALSE;
  od_outbox_kick (self);
}

void
od_outbox_set_server (OdOutbox   *self,
                      const char *server_url,
                      const char *token)
{
  g_free (self->server_url);
  self->server_url = g_strdup (server_url);
  while (self->server_url && g_str_has_suffix (self->server_url, "/"))
    self->server_url[strlen (self->server_url) - 1] = '\0';
  g_free (self->token);
  self->token = g_strdup (token);
  g_free (self->identity_fp);
  self->identity_fp = od_outbox_token_fingerprint (token);
  self->paused = FALSE;
  od_outbox_kick (self);
}

void
od_outbox_set_identity (OdOutbox   *self,
                        const char *server_url,
                        const char *token)
{
  g_clear_handle_id (&self->retry_source, g_source_remove);
  od_outbox_set_server (self, NULL, NULL);
  self->paused = TRUE;
  g_free (self->server_url);
  self->server_url = g_strdup (server_url);
  while (self->server_url && g_str_has_suffix (self->server_url, "/"))
    self->server_url[strlen (self->server_url) - 1] = '\0';
  g_free (self->identity_fp);
  self->identity_fp = od_outbox_token_fingerprint (token);
}

const char *
od_outbox_get_identity (OdOutbox *self)
{
  return self->identity_fp;
}

typedef struct
{
  OdOutbox *self;
  GTask    *task;
} SubmitData;

static void
submit_stored (GObject      *source,
               GAsyncResult *result,
               gpointer      data)
{
  GTask *task = data;
  OdOutbox *self = g_task_get_source_object (task);
  GError *error = NULL;
  gint64 *id = od_cache_write_finish (OD_CACHE (source), result, &error);

  self->writes_in_flight--;
  if (id == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  g_hash_table_insert (self->accepted, g_memdup2 (id, sizeof *id),
                       GINT_TO_POINTER (OD_COMMAND_STATE_QUEUED + 1));
  g_signal_emit (self, signals[SIGNAL_COMMAND_CHANGED], 0, *id, OD_COMMAND_STATE_QUEUED);
  g_task_return_int (task, *id);
  g_free (id);
  g_object_unref (task);
  kick (self);
}

static void
submit_body (OdOutbox           *self,
             char               *body,
             const OdCommand    *command,
             GCancellable       *cancellable,
             GAsyncReadyCallback callback,
             gpointer            user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  InsertJob *job = g_new0 (InsertJob, 1);
  g_autofree char *uuid = od_uuid_v7_new ();

  g_task_set_source_tag (task, od_outbox_submit_async);
  job->created_at = g_get_real_time ();
  job->key = g_strconcat ("odc-", uuid, NULL);
  job->order_id = g_strdup (command->order_id);
  job->type = g_strdup (od_command_type_name (command->type));
  job->body = body;
  job->identity_fp = g_strdup (self->identity_fp);
  job->identity_server = g_strdup (self->server_url);
  self->writes_in_flight++;
  od_cache_write_async (self->cache, insert_job, job, (GDestroyNotify) insert_job_free,
                        cancellable, submit_stored, task);
}

void
od_outbox_submit_async (OdOutbox           *self,
                        const OdCommand    *command,
                        GCancellable       *cancellable,
                        GAsyncReadyCallback callback,
                        gpointer            user_data)
{
  g_autoptr(OdProblem) problem = od_command_validate (command);

  if (problem != NULL)
    {
      g_task_report_new_error (self, callback, user_data, od_outbox_submit_async,
                               OD_COMMAND_ERROR, od_command_error_code (problem), "%s",
                               problem->detail);
      return;
    }
  submit_body (self, od_command_to_json (command), command, cancellable, callback, user_data);
}

void
od_outbox_submit_json_async (OdOutbox           *self,
                             const char         *body,
                             GCancellable       *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer            user_data)
{
  g_autoptr(OdProblem) problem = NULL;
  g_autoptr(OdCommand) command = od_command_parse (body, strlen (body), &problem);

  if (command != NULL)
    problem = od_command_validate (command);
  if (problem != NULL)
    {
      GString *msg = g_string_new (problem->detail);

      for (guint i = 0; problem->errors && i < problem->errors->len; i++)
        {
          OdFieldError *fe = g_ptr_array_index (problem->errors, i);

          g_string_append_printf (msg, "\n%s: %s", fe->field, fe->message);
        }
      g_task_report_new_error (self, callback, user_data, od_outbox_submit_async,
                               OD_COMMAND_ERROR, od_command_error_code (problem), "%s", msg->str);
      g_string_free (msg, TRUE);
      return;
    }
  submit_body (self, g_strdup (body), command, cancellable, callback, user_data);
}

gint64
od_outbox_submit_finish (OdOutbox      *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  GError *local = NULL;
  gint64 id = g_task_propagate_int (G_TASK (result), &local);

  if (local != NULL)
    {
      g_propagate_error (error, local);
      return -1;
    }
  return id;
}

/* An operator's decision on one command (discard, send as me), written
 * with this outbox's sign-in: the job checks the row may be changed by it. */
static void
write_operator_update (OdOutbox           *self,
                       gint64              id,
                       OdOutboxUpdateKind  kind,
                       GAsyncReadyCallback done,
                       GTask              *task)
{
  UpdateJob *job = g_new0 (UpdateJob, 1);

  job->id = id;
  job->kind = kind;
  job->now = g_get_real_time ();
  job->identity_fp = g_strdup (self->identity_fp);
  job->identity_server = g_strdup (self->server_url);
  self->writes_in_flight++;
  od_cache_write_async (self->cache, update_job, job, (GDestroyNotify) update_job_free, NULL,
                        done, task);
}

static void
discard_done (GObject      *source,
              GAsyncResult *result,
              gpointer      data)
{
  GTask *task = data;
  OdOutbox *self = g_task_get_source_object (task);
  gint64 id = *(gint64 *) g_task_get_task_data (task);
  GError *error = NULL;
  gpointer r = od_cache_write_finish (OD_CACHE (source), result, &error);

  self->writes_in_flight--;
  g_hash_table_remove (self->discarding, &id);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    {
      gboolean changed = GPOINTER_TO_INT (r) == 2;

      if (changed)
        g_signal_emit (self, signals[SIGNAL_COMMAND_CHANGED], 0, id, OD_COMMAND_STATE_DISCARDED);
      g_task_return_boolean (task, changed);
    }
  g_object_unref (task);
  kick (self);
}

void
od_outbox_discard_async (OdOutbox           *self,
                         gint64              id,
                         GCancellable       *cancellable,
                         GAsyncReadyCallback callback,
                         gpointer            user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, od_outbox_discard_async);
  g_task_set_task_data (task, g_memdup2 (&id, sizeof id), g_free);
  if (id == self->sending_id)
    {
      g_task_return_boolean (task, FALSE);
      g_object_unref (task);
      return;
    }
  g_hash_table_add (self->discarding, g_memdup2 (&id, sizeof id));
  write_operator_update (self, id, OD_OUTBOX_UPDATE_DISCARD, discard_done, task);
}

gboolean
od_outbox_discard_finish (OdOutbox      *self,
                          GAsyncResult  *result,
                          GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
send_as_me_done (GObject      *source,
                 GAsyncResult *result,
                 gpointer      data)
{
  GTask *task = data;
  OdOutbox *self = g_task_get_source_object (task);
  gint64 id = *(gint64 *) g_task_get_task_data (task);
  GError *error = NULL;
  gpointer r = od_cache_write_finish (OD_CACHE (source), result, &error);

  self->writes_in_flight--;
  if (error != NULL)
    g_task_return_error (task, error);
  else
    {
      if (GPOINTER_TO_INT (r) == 2)
        emit_changed (self, id);
      g_task_return_boolean (task, GPOINTER_TO_INT (r) == 2);
    }
  g_object_unref (task);
  od_outbox_kick (self);
}

void
od_outbox_send_as_me_async (OdOutbox           *self,
                            gint64              id,
                            GCancellable       *cancellable,
                            GAsyncReadyCallback callback,
                            gpointer            user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, od_outbox_send_as_me_async);
  g_task_set_task_data (task, g_memdup2 (&id, sizeof id), g_free);
  if (self->server_url == NULL)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED,
                               "no server: nothing can be sent");
      g_object_unref (task);
      return;
    }
  write_operator_update (self, id, OD_OUTBOX_UPDATE_SEND_AS_ME, send_as_me_done, task);
}

gboolean
od_outbox_send_as_me_finish (OdOutbox      *self,
                             GAsyncResult  *result,
                             GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

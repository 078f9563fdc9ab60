/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-server.h"
#include "od-metrics.h"
#include "od-digest.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "od-conn-stream.h"

#define WRITER_BATCH_MAX   1024
#define RING_CAPACITY      32768
#define TAIL_READ_LIMIT    5000
#define REPLAY_READ_LIMIT  2000
#define CHUNK_MAX_BYTES    (64 * 1024)
#define CHUNK_MAX_EVENTS   1000
#define IDLE_HEAD_USEC     (4 * G_USEC_PER_SEC)
#define MAX_HEADER_BYTES   (16 * 1024)
/* A page (or a replay chunk) stops early once its text passes this, so
 * that 10,000 events of 2,000-character notes (~80 MB) never make a body
 * a client must refuse (the console takes pages up to 64 MiB). */
#define PAGE_TEXT_MAX      (16 * 1024 * 1024)
#define READY_TIMEOUT_MS   1000
/* Page bodies built but not yet written, over all connections: beyond
 * it pages are refused with 503 (slow readers must not pin memory). */
#define PAGE_BYTES_MAX     (64 * 1024 * 1024)
/* What reading one event for a page may take, events and text. */
#define PAGE_EVENT_BYTES   512
/* Connections refused beyond the cap that are still being answered. */
#define REFUSING_MAX       64
#define ACCEPT_RETRY_MS    100
/* GnuTLS priorities for the server's TLS: 1.2 and 1.3 only, forward
 * secret key exchange, AEAD ciphers only. */
#define OD_TLS_PRIORITY \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:" \
  "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:" \
  "-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:+DHE-RSA"

typedef struct
{
  gint64  position;
  gint64  prev;
  char   *frame;
  gsize   len;
} RingEntry;

typedef struct _Subscriber Subscriber;

struct _OdServer
{
  GObject        parent_instance;

  SoupServer    *soup;
  OdStore       *store;
  OdAuth        *auth;
  char          *url;
  double         rate_limit;
  double         rate_burst;
  gint64         request_timeout_usec;
  gint64         stall_timeout_usec;
  gboolean       stopping;

  GThread       *writer;
  GAsyncQueue   *queue;
  GHashTable    *in_flight;   /* "actor\nkey" */
  GHashTable    *buckets;     /* token name → Bucket */
  GHashTable    *requests;    /* SoupServerMessage → start time, while being read */

  /* Newest events, as SSE frames, for live fan-out without a database
   * read per subscriber.  Holds every event with position > ring_base up
   * to tail_position. */
  RingEntry     *ring;
  guint          ring_start;
  guint          ring_len;
  gint64         ring_base;
  gint64         tail_position;
  gint64         head;
  gboolean       tail_reading;
  gboolean       tail_again;
  gulong         appended_id;

  GList         *subscribers;
  guint          n_subscribers;
  guint          tick_id;

  gboolean       metrics_protected;
  guint8         metrics_token_sha256[32];
  GPtrArray     *ready_waiters;  /* ReadyWaiter, answered by the check in flight */
  gboolean       ready_checking;
  /* Connections: accepted here, not by libsoup (see accept_ready). */
  GSocket         *listen_socket;
  GSource         *accept_source;
  guint            accept_retry_id;
  gboolean         accept_failing;
  GTlsCertificate *certificate;
  GHashTable      *conns;        /* Conn → itself: every open connection */
  guint            max_conns;
  guint            n_refusing;
  gsize            page_bytes;   /* page bodies not yet written */
};

G_DEFINE_FINAL_TYPE (OdServer, od_server, G_TYPE_OBJECT)

/* The server's view of a command waiting for the writer. */
typedef struct
{
  OdServer          *server;
  SoupServerMessage *msg;
  gulong             finished_id;
  char              *flight_key;
  OdJobDoneFunc      done;
  gpointer           done_data;
  gint64             received;    /* monotonic usec, for the latency histogram */
} Pending;

typedef struct
{
  double tokens;
  gint64 updated;
} Bucket;

struct _Subscriber
{
  gint               ref_count;
  OdServer          *server;
  SoupServerMessage *msg;
  gint64             cursor;
  gint64             connect_head;
  gboolean           head_known;   /* connect_head read from the store; until
                                    * then the response (headers too) waits */
  gboolean           head_sent;
  gboolean           chunk_pending;
  gboolean           reading;
  gboolean           closed;
  gint64             pending_since;
  gint64             last_write;
  gulong             wrote_id;
  gulong             finished_id;
  gboolean           dropped;      /* disconnected as too slow */
};

static OdJob *const STOP_JOB = (OdJob *) &STOP_JOB;

static void tail_read (OdServer *self);
static void msg_shutdown (SoupServerMessage *msg);
static void subscriber_pump (Subscriber *sub);

/* ------------------------------------------------------------------ */
/* Responses                                                           */

static void
respond (SoupServerMessage *msg,
         guint              status,
         const char        *content_type,
         char              *body)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, content_type, SOUP_MEMORY_TAKE, body, strlen (body));
}

static void
respond_problem (SoupServerMessage *msg,
                 OdProblem         *problem)
{
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);

  if (problem->status == 401)
    soup_message_headers_replace (headers, "WWW-Authenticate", "Bearer realm=\"orderdesk\"");
  if (problem->retry_after > 0)
    {
      char value[16];

      g_snprintf (value, sizeof value, "%u", problem->retry_after);
      soup_message_headers_replace (headers, "Retry-After", value);
    }
  respond (msg, problem->status, "application/problem+json", od_problem_to_json (problem));
  od_problem_free (problem);
}

/* Returns the value of a header that must appear at most once.  A header
 * given twice is ambiguous and reported through duplicate. */
static const char *
header_once (SoupMessageHeaders *headers,
             const char         *name,
             gboolean           *duplicate)
{
  SoupMessageHeadersIter iter;
  const char *hname, *hvalue, *found = NULL;
  guint count = 0;

  soup_message_headers_iter_init (&iter, headers);
  while (soup_message_headers_iter_next (&iter, &hname, &hvalue))
    if (g_ascii_strcasecmp (hname, name) == 0)
      {
        found = hvalue;
        count++;
      }
  *duplicate = count > 1;
  return count == 1 ? found : NULL;
}

static char *
head_json (gint64 head)
{
  g_autofree char *now = od_timestamp_now ();

  return g_strdup_printf ("{\"head\":%" G_GINT64_FORMAT ",\"server_time\":\"%s\"}", head, now);
}

/* ------------------------------------------------------------------ */
/* Authentication and rate limit                                       */

static const OdToken *
authenticate (OdServer          *self,
              SoupServerMessage *msg,
              OdRole             needed)
{
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  const OdToken *token;
  gboolean duplicate;
  const char *value = header_once (headers, "Authorization", &duplicate);

  token = duplicate ? NULL : od_auth_check (self->auth, value);
  if (token == NULL)
    {
      respond_problem (msg, od_problem_new (OD_PROBLEM_UNAUTHORIZED,
                                            value == NULL && !duplicate
                                              ? "An Authorization: Bearer token is required."
                                              : "The bearer token is malformed or unknown."));
      return NULL;
    }
  /* For the request log: the name, never the token. */
  g_object_set_data_full (G_OBJECT (msg), "od-token-name", g_strdup (token->name), g_free);
  if (needed == OD_ROLE_OPERATOR && token->role != OD_ROLE_OPERATOR)
    {
      respond_problem (msg, od_problem_new (OD_PROBLEM_FORBIDDEN,
                                            "Token '%s' has the viewer role; commands need an "
                                            "operator token.", token->name));
      return NULL;
    }
  return token;
}

static gboolean
rate_allows (OdServer      *self,
             const OdToken *token,
             guint         *retry_after)
{
  gint64 now = g_get_monotonic_time ();
  Bucket *bucket;

  if (self->rate_limit <= 0)
    return TRUE;
  bucket = g_hash_table_lookup (self->buckets, token->name);
  if (bucket == NULL)
    {
      bucket = g_new0 (Bucket, 1);
      bucket->tokens = self->rate_burst;
      bucket->updated = now;
      g_hash_table_insert (self->buckets, g_strdup (token->name), bucket);
    }
  bucket->tokens = MIN (self->rate_burst,
                        bucket->tokens + (now - bucket->updated) * self->rate_limit / G_USEC_PER_SEC);
  bucket->updated = now;
  if (bucket->tokens >= 1.0)
    {
      bucket->tokens -= 1.0;
      return TRUE;
    }
  *retry_after = MAX (1, (guint) ((1.0 - bucket->tokens) / self->rate_limit + 0.999));
  return FALSE;
}

/* ------------------------------------------------------------------ */
/* Commands and the writer thread                                      */

static void
pending_free (Pending *pending)
{
  if (pending->msg != NULL)
    {
      g_signal_handler_disconnect (pending->msg, pending->finished_id);
      g_object_unref (pending->msg);
    }
  g_free (pending->flight_key);
  g_free (pending);
}

static void
pending_msg_finished (SoupServerMessage *msg,
                      Pending           *pending)
{
  /* The client went away; the command still commits (a retry with the
   * same key will get its answer), there is just no one to tell. */
  g_signal_handler_disconnect (msg, pending->finished_id);
  g_clear_object (&pending->msg);
}

static void
count_job (OdJob *job)
{
  const char *type = od_command_type_name (job->command->type);

  if (job->status == 200)
    {
      od_metrics_command (type, job->replayed ? "replayed" : "ok");
      if (!job->replayed && job->position > 0)
        od_metrics_add (OD_METRIC_EVENTS_APPENDED, 1);
    }
  else
    {
      g_autoptr(OdProblem) problem = od_problem_parse (job->status, job->response,
                                                       strlen (job->response));

      od_metrics_command (type, job->replayed ? "replayed"
                                : problem ? problem->code_name : "unknown");
    }
}

static gboolean
batch_done (gpointer data)
{
  GPtrArray *batch = data;
  OdServer *self = NULL;

  for (guint i = 0; i < batch->len; i++)
    {
      OdJob *job = g_ptr_array_index (batch, i);
      Pending *pending = job->user_data;

      self = pending->server;
      count_job (job);
      if (pending->flight_key != NULL)
        g_hash_table_remove (self->in_flight, pending->flight_key);
      if (pending->msg != NULL)
        {
          SoupServerMessage *msg = pending->msg;

          if (job->replayed)
            soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                          "Idempotent-Replayed", "true");
          respond (msg, job->status,
                   job->status == 200 ? "application/json" : "application/problem+json",
                   g_strdup (job->response));
          soup_server_message_unpause (msg);
        }
      if (pending->done != NULL)
        pending->done (job, pending->done_data);
      pending_free (pending);
      od_job_free (job);
    }
  if (self != NULL)
    tail_read (self);
  for (guint i = 0; i < batch->len; i++)
    g_object_unref (self);
  g_ptr_array_unref (batch);
  return G_SOURCE_REMOVE;
}

static gpointer
writer_thread (gpointer data)
{
  OdServer *self = data;
  gboolean stop = FALSE;

  while (!stop)
    {
      GPtrArray *batch = g_ptr_array_new ();
      g_autoptr(GError) error = NULL;
      OdJob *job = g_async_queue_pop (self->queue);

      if (job == STOP_JOB)
        {
          g_ptr_array_unref (batch);
          break;
        }
      g_ptr_array_add (batch, job);
      while (batch->len < WRITER_BATCH_MAX && (job = g_async_queue_try_pop (self->queue)) != NULL)
        {
          if (job == STOP_JOB)
            {
              stop = TRUE;
              break;
            }
          g_ptr_array_add (batch, job);
        }

      if (od_store_execute (self->store, (OdJob **) batch->pdata, batch->len, &error))
        {
          gint64 durable = g_get_monotonic_time ();

          od_metrics_batch (batch->len);
          for (guint i = 0; i < batch->len; i++)
            {
              Pending *pending = ((OdJob *) g_ptr_array_index (batch, i))->user_data;

              od_metrics_command_latency (durable - pending->received);
            }
        }
      else
        {
          od_metrics_add (OD_METRIC_STORE_ERRORS, 1);
          g_warning ("store: %s; %u commands refused with 503", error->message, batch->len);
          for (guint i = 0; i < batch->len; i++)
            od_job_set_problem (g_ptr_array_index (batch, i),
                                od_problem_new (OD_PROBLEM_UNAVAILABLE,
                                                "The event store failed; nothing was committed. "
                                                "Retry with the same Idempotency-Key."));
        }
      g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, batch_done, batch, NULL);
    }
  return NULL;
}

static void
submit (OdServer *self,
        OdJob    *job,
        Pending  *pending)
{
  pending->server = self;
  pending->received = g_get_monotonic_time ();
  job->user_data = pending;
  if (self->stopping)
    {
      /* The writer is gone or going: answer at once, never queue. */
      od_job_set_problem (job, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The server is stopping."));
      if (pending->done != NULL)
        pending->done (job, pending->done_data);
      pending_free (pending);
      od_job_free (job);
      return;
    }
  g_object_ref (self);
  g_async_queue_push (self->queue, job);
}

void
od_server_submit (OdServer      *self,
                  OdJob         *job,
                  OdJobDoneFunc  done,
                  gpointer       user_data)
{
  Pending *pending = g_new0 (Pending, 1);

  pending->done = done;
  pending->done_data = user_data;
  submit (self, job, pending);
}

/* Answers a command refused before it reaches the writer, and counts
 * it under its problem code. */
static void
refuse_command (SoupServerMessage *msg,
                OdProblem         *problem)
{
  od_metrics_command (NULL, od_problem_code_name (problem->code));
  respond_problem (msg, problem);
}

static void
handle_command (OdServer          *self,
                SoupServerMessage *msg)
{
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  SoupMessageBody *body = soup_server_message_get_request_body (msg);
  g_autoptr(GBytes) bytes = NULL;
  OdProblem *problem = NULL;
  const OdToken *token;
  g_autoptr(GHashTable) type_params = NULL;
  const char *key, *content_type, *charset;
  gboolean duplicate;
  guint retry_after = 0;
  OdCommand *command;
  Pending *pending;
  OdJob *job;
  char *flight_key;
  gsize len;
  const char *data;

  /* The size is decided from the headers, before the token (see
   * early_handler); this catches a chunked body that grew too large. */
  if (body->length > OD_MAX_BODY
      || GPOINTER_TO_INT (g_object_get_data (G_OBJECT (msg), "od-too-large")))
    {
      refuse_command (msg, od_problem_new (OD_PROBLEM_PAYLOAD_TOO_LARGE,
                                           "The body is over %d bytes.", OD_MAX_BODY));
      return;
    }
  if ((token = authenticate (self, msg, OD_ROLE_OPERATOR)) == NULL)
    {
      od_metrics_command (NULL, soup_server_message_get_status (msg) == 403 ? "forbidden"
                                                                            : "unauthorized");
      return;
    }
  if (!rate_allows (self, token, &retry_after))
    {
      od_metrics_add (OD_METRIC_RATE_LIMITED, 1);
      problem = od_problem_new (OD_PROBLEM_RATE_LIMITED,
                                "Token '%s' sent more than %.0f commands a second.", token->name,
                                self->rate_limit);
      problem->retry_after = retry_after;
      refuse_command (msg, problem);
      return;
    }
  key = header_once (headers, "Idempotency-Key", &duplicate);
  if (duplicate || !od_idempotency_key_valid (key))
    {
      refuse_command (msg, od_problem_new (OD_PROBLEM_IDEMPOTENCY_KEY_MISSING,
                                            duplicate ? "Idempotency-Key was given twice."
                                            : key == NULL ? "Commands need an Idempotency-Key header."
                                            : "Idempotency-Key must be 1..128 printable ASCII "
                                              "characters."));
      return;
    }
  /* Media types are case-insensitive and may carry parameters; JSON is
   * UTF-8, so the only charset that makes sense is that one. */
  content_type = soup_message_headers_get_content_type (headers, &type_params);
  charset = type_params ? g_hash_table_lookup (type_params, "charset") : NULL;
  if (soup_message_headers_get_one (headers, "Content-Type") != NULL
      && (content_type == NULL || g_ascii_strcasecmp (content_type, "application/json") != 0
          || (charset != NULL && g_ascii_strcasecmp (charset, "utf-8") != 0)))
    {
      refuse_command (msg, od_problem_new (OD_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                                            "Commands are sent as application/json."));
      return;
    }

  bytes = soup_message_body_flatten (body);
  data = g_bytes_get_data (bytes, &len);
  command = od_command_parse (data ? data : "", len, &problem);
  if (command == NULL)
    {
      refuse_command (msg, problem);
      return;
    }

  flight_key = g_strconcat (token->name, "\n", key, NULL);
  if (g_hash_table_contains (self->in_flight, flight_key))
    {
      g_free (flight_key);
      od_command_free (command);
      refuse_command (msg, od_problem_new (OD_PROBLEM_IDEMPOTENCY_IN_FLIGHT,
                                            "A request with Idempotency-Key '%s' is still being "
                                            "processed; retry in a moment.", key));
      return;
    }
  g_hash_table_add (self->in_flight, flight_key);

  job = od_job_new (command, token->name, key, data ? data : "", len);
  pending = g_new0 (Pending, 1);
  pending->flight_key = g_strdup (flight_key);
  pending->msg = g_object_ref (msg);
  pending->finished_id = g_signal_connect (msg, "finished", G_CALLBACK (pending_msg_finished),
                                           pending);
  soup_server_message_pause (msg);
  submit (self, job, pending);
}

/* ------------------------------------------------------------------ */
/* Reads off the main loop                                             */

typedef struct
{
  gint64   after;
  guint    limit;
  gint64   upto;     /* format no event above this */
  gboolean frames;   /* SSE frames, else a JSON page */
} ReadRequest;

typedef struct
{
  GString   *text;
  GPtrArray *entries; /* RingEntry, for the tail read */
  gint64     last_position;
  gint64     head;
  guint      n_events;
} ReadResult;

static void
ring_entry_clear (RingEntry *entry)
{
  g_clear_pointer (&entry->frame, g_free);
}

static void
read_result_free (ReadResult *result)
{
  if (result->text != NULL)
    g_string_free (result->text, TRUE);
  if (result->entries != NULL)
    g_ptr_array_unref (result->entries);
  g_free (result);
}

static void
read_in_thread (GTask        *task,
                gpointer      source,
                gpointer      task_data,
                GCancellable *cancellable)
{
  OdServer *self = source;
  ReadRequest *request = task_data;
  g_autoptr(GPtrArray) events = NULL;
  GError *error = NULL;
  ReadResult *result;
  gint64 head = 0;

  events = od_store_read_events (self->store, request->after, request->limit, &head, &error);
  if (events == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  result = g_new0 (ReadResult, 1);
  result->head = head;
  result->last_position = request->after;
  result->text = g_string_sized_new (events->len * 320 + 64);
  if (!request->frames)
    g_string_append (result->text, "{\"events\":[");
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *event = g_ptr_array_index (events, i);

      if (event->position > request->upto || (i > 0 && result->text->len >= PAGE_TEXT_MAX))
        break;
      if (request->frames)
        od_event_append_sse (result->text, event);
      else
        {
          if (i > 0)
            g_string_append_c (result->text, ',');
          od_event_append_json (result->text, event);
        }
      result->last_position = event->position;
      result->n_events++;
    }
  if (!request->frames)
    g_string_append_printf (result->text, "],\"head\":%" G_GINT64_FORMAT "}", head);
  g_task_return_pointer (task, result, (GDestroyNotify) read_result_free);
}

static void
start_read (OdServer            *self,
            gint64               after,
            guint                limit,
            gint64               upto,
            gboolean             frames,
            GAsyncReadyCallback  callback,
            gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, NULL, callback, user_data);
  ReadRequest *request = g_new0 (ReadRequest, 1);

  request->after = after;
  request->limit = limit;
  request->upto = upto;
  request->frames = frames;
  g_task_set_task_data (task, request, g_free);
  g_task_run_in_thread (task, read_in_thread);
}

typedef struct
{
  OdServer *server;
  gsize     len;
} PageHold;

static void
page_written (SoupServerMessage *msg,
              PageHold          *hold)
{
  hold->server->page_bytes -= hold->len;
  g_signal_handlers_disconnect_by_data (msg, hold);
  g_object_unref (hold->server);
  g_free (hold);
}

static void
respond_busy (SoupServerMessage *msg)
{
  OdProblem *problem = od_problem_new (OD_PROBLEM_UNAVAILABLE,
                                       "Too many pages are waiting for their readers; retry "
                                       "shortly.");

  problem->retry_after = 1;
  respond_problem (msg, problem);
}

static void
page_read_done (GObject      *source,
                GAsyncResult *res,
                gpointer      user_data)
{
  OdServer *self = OD_SERVER (source);
  SoupServerMessage *msg = user_data;
  g_autoptr(GError) error = NULL;
  ReadResult *result = g_task_propagate_pointer (G_TASK (res), &error);

  self->page_bytes -= GPOINTER_TO_SIZE (g_object_get_data (G_OBJECT (msg), "od-page-estimate"));
  if (result == NULL)
    {
      od_metrics_add (OD_METRIC_STORE_ERRORS, 1);
      respond_problem (msg, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The event store failed: %s",
                                            error->message));
    }
  else
    {
      PageHold *hold = g_new0 (PageHold, 1);

      hold->server = g_object_ref (self);
      hold->len = result->text->len;
      self->page_bytes += hold->len;
      g_signal_connect (msg, "finished", G_CALLBACK (page_written), hold);
      respond (msg, 200, "application/json", g_string_free (g_steal_pointer (&result->text), FALSE));
      read_result_free (result);
    }
  soup_server_message_unpause (msg);
  g_object_unref (msg);
}

static gboolean
query_int (GHashTable         *params,
           const char         *name,
           gint64              fallback,
           gint64             *out,
           SoupServerMessage  *msg)
{
  const char *text = params ? g_hash_table_lookup (params, name) : NULL;
  g_autoptr(GError) error = NULL;

  *out = fallback;
  if (text == NULL)
    return TRUE;
  if (!g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, out, &error))
    {
      respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED, "%s must be an integer.", name));
      return FALSE;
    }
  return TRUE;
}

static GHashTable *
query_params (SoupServerMessage *msg,
              gboolean          *ok)
{
  GUri *uri = soup_server_message_get_uri (msg);
  const char *query = g_uri_get_query (uri);
  GHashTable *params;

  *ok = TRUE;
  if (query == NULL)
    return NULL;
  params = g_uri_parse_params (query, -1, "&", G_URI_PARAMS_NONE, NULL);
  if (params == NULL)
    {
      *ok = FALSE;
      respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED, "The query string is malformed."));
    }
  return params;
}

static void
handle_events_page (OdServer          *self,
                    SoupServerMessage *msg)
{
  g_autoptr(GHashTable) params = NULL;
  gint64 after, limit;
  gsize estimate;
  gboolean ok;

  if (authenticate (self, msg, OD_ROLE_VIEWER) == NULL)
    return;
  params = query_params (msg, &ok);
  if (!ok || !query_int (params, "after", 0, &after, msg) || !query_int (params, "limit", 1000, &limit, msg))
    return;
  after = MAX (after, 0);
  limit = CLAMP (limit, 1, 10000);
  /* Memory for pages is bounded, whether they are being read from the
   * store (an estimate that covers the events read, reserved until the
   * page is made) or waiting for a client that does not read them. */
  estimate = (gsize) limit * PAGE_EVENT_BYTES;
  if (self->page_bytes > 0 && self->page_bytes + estimate > PAGE_BYTES_MAX)
    {
      respond_busy (msg);
      return;
    }
  self->page_bytes += estimate;
  g_object_set_data (G_OBJECT (msg), "od-page-estimate", GSIZE_TO_POINTER (estimate));
  soup_server_message_pause (msg);
  start_read (self, after, limit, G_MAXINT64, FALSE, page_read_done, g_object_ref (msg));
}

typedef struct
{
  gint64 after;
  gint64 upto;
} DigestRequest;

static void
digest_in_thread (GTask        *task,
                  gpointer      source,
                  gpointer      task_data,
                  GCancellable *cancellable)
{
  OdServer *self = source;
  DigestRequest *request = task_data;
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  GError *error = NULL;
  gint64 head = 0, upto, count = 0;

  if (!od_store_get_head (self->store, &head, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  upto = MAX (MIN (request->upto, head), request->after);
  if (!od_store_digest (self->store, request->after, upto, sum, &count, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_return_pointer (task,
                         g_strdup_printf ("{\"after\":%" G_GINT64_FORMAT ",\"upto\":%" G_GINT64_FORMAT
                                          ",\"count\":%" G_GINT64_FORMAT ",\"sha256\":\"%s\"}",
                                          request->after, upto, count,
                                          g_checksum_get_string (sum)),
                         g_free);
}

static void
digest_done (GObject      *source,
             GAsyncResult *res,
             gpointer      user_data)
{
  SoupServerMessage *msg = user_data;
  g_autoptr(GError) error = NULL;
  char *body = g_task_propagate_pointer (G_TASK (res), &error);

  if (body != NULL)
    respond (msg, 200, "application/json", body);
  else
    {
      od_metrics_add (OD_METRIC_STORE_ERRORS, 1);
      respond_problem (msg, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The event store failed: %s",
                                            error->message));
    }
  soup_server_message_unpause (msg);
  g_object_unref (msg);
}

static void
handle_events_digest (OdServer          *self,
                      SoupServerMessage *msg)
{
  g_autoptr(GHashTable) params = NULL;
  g_autoptr(GTask) task = NULL;
  DigestRequest *request;
  gint64 after, upto;
  gboolean ok;

  if (authenticate (self, msg, OD_ROLE_VIEWER) == NULL)
    return;
  params = query_params (msg, &ok);
  if (!ok || !query_int (params, "after", 0, &after, msg)
      || !query_int (params, "upto", -1, &upto, msg))
    return;
  after = MAX (after, 0);
  /* The range is judged as asked, not as clamped to the head, so that
   * whether a request is answered does not depend on the log's length. */
  if (params == NULL || g_hash_table_lookup (params, "upto") == NULL)
    upto = after > G_MAXINT64 - OD_DIGEST_MAX_RANGE ? G_MAXINT64 : after + OD_DIGEST_MAX_RANGE;
  else if (upto > after && upto - after > OD_DIGEST_MAX_RANGE)
    {
      respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED,
                                            "A digest covers at most %d positions.",
                                            OD_DIGEST_MAX_RANGE));
      return;
    }
  request = g_new0 (DigestRequest, 1);
  request->after = after;
  request->upto = upto;
  /* Hashing up to a million events takes a while: never on the main loop. */
  soup_server_message_pause (msg);
  task = g_task_new (self, NULL, digest_done, g_object_ref (msg));
  g_task_set_task_data (task, request, g_free);
  g_task_run_in_thread (task, digest_in_thread);
}

static void
head_done (GObject      *source,
           GAsyncResult *res,
           gpointer      user_data)
{
  SoupServerMessage *msg = user_data;
  g_autoptr(GError) error = NULL;
  gssize head = g_task_propagate_int (G_TASK (res), &error);

  if (error != NULL)
    {
      od_metrics_add (OD_METRIC_STORE_ERRORS, 1);
      respond_problem (msg, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The event store failed: %s",
                                            error->message));
    }
  else
    respond (msg, 200, "application/json", head_json (head));
  soup_server_message_unpause (msg);
  g_object_unref (msg);
}

static void
head_in_thread (GTask        *task,
                gpointer      source,
                gpointer      task_data,
                GCancellable *cancellable)
{
  OdServer *self = source;
  GError *error = NULL;
  gint64 head = 0;

  if (od_store_get_head (self->store, &head, &error))
    g_task_return_int (task, head);
  else
    g_task_return_error (task, error);
}

static void
handle_head (OdServer          *self,
             SoupServerMessage *msg)
{
  g_autoptr(GTask) task = NULL;

  if (authenticate (self, msg, OD_ROLE_VIEWER) == NULL)
    return;
  soup_server_message_pause (msg);
  task = g_task_new (self, NULL, head_done, g_object_ref (msg));
  g_task_run_in_thread (task, head_in_thread);
}

/* ------------------------------------------------------------------ */
/* The ring and the tail                                               */

static RingEntry *
ring_at (OdServer *self,
         guint     i)
{
  return &self->ring[(self->ring_start + i) % RING_CAPACITY];
}

static void
ring_push (OdServer  *self,
           RingEntry *entry)
{
  if (self->ring_len == RING_CAPACITY)
    {
      RingEntry *oldest = ring_at (self, 0);

      self->ring_base = oldest->position;
      ring_entry_clear (oldest);
      self->ring_start = (self->ring_start + 1) % RING_CAPACITY;
      self->ring_len--;
    }
  *ring_at (self, self->ring_len) = *entry;
  self->ring_len++;
}

/* Index of the first entry with position > after. */
static guint
ring_find (OdServer *self,
           gint64    after)
{
  guint lo = 0, hi = self->ring_len;

  while (lo < hi)
    {
      guint mid = lo + (hi - lo) / 2;

      if (ring_at (self, mid)->position <= after)
        lo = mid + 1;
      else
        hi = mid;
    }
  return lo;
}

static void
tail_entries_in_thread (GTask        *task,
                        gpointer      source,
                        gpointer      task_data,
                        GCancellable *cancellable)
{
  OdServer *self = source;
  gint64 after = *(gint64 *) task_data;
  g_autoptr(GPtrArray) events = NULL;
  GError *error = NULL;
  ReadResult *result;
  gint64 head = 0;

  events = od_store_read_events (self->store, after, TAIL_READ_LIMIT, &head, &error);
  if (events == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  result = g_new0 (ReadResult, 1);
  result->head = head;
  result->entries = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *event = g_ptr_array_index (events, i);
      RingEntry *entry = g_new0 (RingEntry, 1);
      GString *frame = g_string_sized_new (320);

      od_event_append_sse (frame, event);
      entry->position = event->position;
      entry->prev = event->prev;
      entry->len = frame->len;
      entry->frame = g_string_free (frame, FALSE);
      g_ptr_array_add (result->entries, entry);
    }
  result->n_events = events->len;
  g_task_return_pointer (task, result, (GDestroyNotify) read_result_free);
}

static void
tail_read_done (GObject      *source,
                GAsyncResult *res,
                gpointer      user_data)
{
  OdServer *self = OD_SERVER (source);
  g_autoptr(GError) error = NULL;
  ReadResult *result = g_task_propagate_pointer (G_TASK (res), &error);
  gboolean more;

  self->tail_reading = FALSE;
  if (result == NULL)
    {
      od_metrics_add (OD_METRIC_STORE_ERRORS, 1);
      g_warning ("reading new events failed: %s", error->message);
      more = TRUE;
    }
  else
    {
      for (guint i = 0; i < result->entries->len; i++)
        {
          RingEntry *entry = g_ptr_array_index (result->entries, i);

          ring_push (self, entry);
          /* The ring owns the frame now; only the holder is freed. */
          entry->frame = NULL;
          self->tail_position = entry->position;
        }
      self->head = self->tail_position;
      more = result->n_events == TAIL_READ_LIMIT;
      read_result_free (result);

      for (GList *l = self->subscribers; l; l = l->next)
        subscriber_pump (l->data);
    }

  if (more || self->tail_again)
    {
      self->tail_again = FALSE;
      if (result == NULL)
        g_timeout_add_once (100, (GSourceOnceFunc) tail_read, self);
      else
        tail_read (self);
    }
  g_object_unref (self);
}

static void
tail_read (OdServer *self)
{
  g_autoptr(GTask) task = NULL;
  gint64 *after;

  if (self->tail_reading)
    {
      self->tail_again = TRUE;
      return;
    }
  self->tail_reading = TRUE;
  after = g_new (gint64, 1);
  *after = self->tail_position;
  task = g_task_new (self, NULL, tail_read_done, g_object_ref (self));
  g_task_set_task_data (task, after, g_free);
  g_task_run_in_thread (task, tail_entries_in_thread);
}

static gboolean
appended_idle (gpointer data)
{
  tail_read (data);
  return G_SOURCE_REMOVE;
}

static void
store_appended (OdStore  *store,
                OdServer *self)
{
  /* From any thread: hop to the main loop, where the tail lives. */
  g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, appended_idle, g_object_ref (self),
                              g_object_unref);
}

/* ------------------------------------------------------------------ */
/* Event stream subscribers                                            */

static Subscriber *
subscriber_ref (Subscriber *sub)
{
  sub->ref_count++;
  return sub;
}

static void
subscriber_unref (Subscriber *sub)
{
  if (--sub->ref_count > 0)
    return;
  g_clear_object (&sub->msg);
  g_free (sub);
}

static void
subscriber_write (Subscriber *sub,
                  GString    *text)
{
  SoupMessageBody *body = soup_server_message_get_response_body (sub->msg);
  gsize len = text->len;

  od_metrics_add (OD_METRIC_STREAM_BYTES, len);
  soup_message_body_append_take (body, (guchar *) g_string_free (text, FALSE), len);
  sub->chunk_pending = TRUE;
  sub->pending_since = sub->last_write = g_get_monotonic_time ();
  soup_server_message_unpause (sub->msg);
}

static void
append_head_frame (GString *out,
                   gint64   head)
{
  g_autofree char *json = head_json (head);

  g_string_append (out, "event: head\ndata: ");
  g_string_append (out, json);
  g_string_append (out, "\n\n");
}

static void
replay_done (GObject      *source,
             GAsyncResult *res,
             gpointer      user_data)
{
  Subscriber *sub = user_data;
  g_autoptr(GError) error = NULL;
  ReadResult *result = g_task_propagate_pointer (G_TASK (res), &error);

  sub->reading = FALSE;
  if (sub->closed)
    goto out;
  if (result == NULL)
    {
      g_warning ("stream replay failed: %s; closing the stream", error->message);
      msg_shutdown (sub->msg);
      goto out;
    }
  if (result->n_events == 0 && sub->cursor < sub->server->ring_base)
    {
      /* Nothing in the log between the cursor and the ring: move on to
       * the ring rather than asking again forever. */
      sub->cursor = sub->server->ring_base;
    }
  else
    sub->cursor = result->last_position;
  if (sub->head_known && !sub->head_sent && sub->cursor >= sub->connect_head)
    {
      append_head_frame (result->text, MAX (sub->server->head, sub->connect_head));
      sub->head_sent = TRUE;
    }
  if (result->text->len > 0)
    subscriber_write (sub, g_steal_pointer (&result->text));
  else
    subscriber_pump (sub);

out:
  if (result != NULL)
    read_result_free (result);
  subscriber_unref (sub);
}

static void
subscriber_pump (Subscriber *sub)
{
  OdServer *self = sub->server;
  gint64 upto = sub->head_sent ? G_MAXINT64 : sub->connect_head;
  GString *out = NULL;

  if (sub->closed || sub->chunk_pending || sub->reading || !sub->head_known)
    return;

  if (sub->cursor < upto && sub->cursor < self->tail_position)
    {
      if (sub->cursor < self->ring_base)
        {
          sub->reading = TRUE;
          start_read (self, sub->cursor, REPLAY_READ_LIMIT, upto, TRUE, replay_done,
                      subscriber_ref (sub));
          return;
        }
      out = g_string_sized_new (CHUNK_MAX_BYTES + 1024);
      for (guint i = ring_find (self, sub->cursor), n = 0;
           i < self->ring_len && out->len < CHUNK_MAX_BYTES && n < CHUNK_MAX_EVENTS; i++, n++)
        {
          RingEntry *entry = ring_at (self, i);

          if (entry->position > upto)
            break;
          g_string_append_len (out, entry->frame, entry->len);
          sub->cursor = entry->position;
        }
    }

  if (sub->head_known && !sub->head_sent && sub->cursor >= sub->connect_head)
    {
      if (out == NULL)
        out = g_string_new (NULL);
      append_head_frame (out, MAX (self->head, sub->connect_head));
      sub->head_sent = TRUE;
    }

  if (out != NULL && out->len > 0)
    subscriber_write (sub, out);
  else if (out != NULL)
    g_string_free (out, TRUE);
}

static void
subscriber_wrote_chunk (SoupServerMessage *msg,
                        Subscriber        *sub)
{
  sub->chunk_pending = FALSE;
  subscriber_pump (sub);
}

static void
subscriber_finished (SoupServerMessage *msg,
                     Subscriber        *sub)
{
  OdServer *self = sub->server;

  sub->closed = TRUE;
  g_signal_handler_disconnect (msg, sub->wrote_id);
  g_signal_handler_disconnect (msg, sub->finished_id);
  self->subscribers = g_list_remove (self->subscribers, sub);
  self->n_subscribers--;
  subscriber_unref (sub);
}

/* The head "current when the client connected" is the store's: the ring's
 * tail may still be reading the newest commit.  The response stays paused
 * until it is known, so a client that reads the head after its stream
 * opened never sees one older than the stream's first head frame. */
static void
stream_head_done (GObject      *source,
                  GAsyncResult *res,
                  gpointer      user_data)
{
  Subscriber *sub = user_data;
  OdServer *self = OD_SERVER (source);
  g_autoptr(GError) error = NULL;
  gssize head = g_task_propagate_int (G_TASK (res), &error);

  if (error != NULL)
    g_warning ("reading the head for a new stream failed: %s", error->message);
  else
    sub->connect_head = MAX (sub->connect_head, head);
  sub->head_known = TRUE;
  if (!sub->closed)
    {
      if (sub->connect_head > self->tail_position)
        tail_read (self);
      /* Unpauses: the headers and this frame go out now; the replay
       * follows once it is written. */
      subscriber_write (sub, g_string_new ("retry: 2000\n\n"));
    }
  subscriber_unref (sub);
}

static void
handle_stream (OdServer          *self,
               SoupServerMessage *msg)
{
  SoupMessageHeaders *request_headers = soup_server_message_get_request_headers (msg);
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);
  g_autoptr(GHashTable) params = NULL;
  const char *last_id;
  Subscriber *sub;
  gboolean duplicate, ok;
  gint64 after;

  if (authenticate (self, msg, OD_ROLE_VIEWER) == NULL)
    return;
  params = query_params (msg, &ok);
  if (!ok || !query_int (params, "after", 0, &after, msg))
    return;
  last_id = header_once (request_headers, "Last-Event-ID", &duplicate);
  if (duplicate)
    {
      respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED, "Last-Event-ID was given twice."));
      return;
    }
  if (last_id != NULL && !g_ascii_string_to_signed (last_id, 10, G_MININT64, G_MAXINT64,
                                                    &after, NULL))
    {
      respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED,
                                            "Last-Event-ID must be an integer."));
      return;
    }

  sub = g_new0 (Subscriber, 1);
  sub->ref_count = 1;
  sub->server = self;
  sub->msg = g_object_ref (msg);
  sub->cursor = MAX (after, 0);
  sub->connect_head = self->head;
  self->subscribers = g_list_prepend (self->subscribers, sub);
  self->n_subscribers++;

  soup_server_message_set_status (msg, 200, NULL);
  /* A stream ends when the client goes, which libsoup reports as a 500:
   * the log says what the client was answered. */
  g_object_set_data (G_OBJECT (msg), "od-status", GUINT_TO_POINTER (200));
  soup_message_headers_set_content_type (headers, "text/event-stream", NULL);
  soup_message_headers_replace (headers, "Cache-Control", "no-store");
  soup_message_headers_set_encoding (headers, SOUP_ENCODING_CHUNKED);
  soup_message_body_set_accumulate (soup_server_message_get_response_body (msg), FALSE);
  sub->wrote_id = g_signal_connect (msg, "wrote-chunk", G_CALLBACK (subscriber_wrote_chunk), sub);
  sub->finished_id = g_signal_connect (msg, "finished", G_CALLBACK (subscriber_finished), sub);

  soup_server_message_pause (msg);

  {
    g_autoptr(GTask) task = g_task_new (self, NULL, stream_head_done, subscriber_ref (sub));

    g_task_run_in_thread (task, head_in_thread);
  }
}

/* ------------------------------------------------------------------ */
/* Readiness, metrics and the request log                              */

/* A /v1/ready request waiting for the store check in flight; it gets a
 * 503 of its own if the check takes longer than READY_TIMEOUT_MS. */
typedef struct
{
  OdServer          *server;
  SoupServerMessage *msg;
  guint              timeout_id;
} ReadyWaiter;

static void
ready_answer (ReadyWaiter *waiter,
              gboolean     ready,
              gint64       head,
              const char  *why)
{
  if (ready)
    respond (waiter->msg, 200, "application/json",
             g_strdup_printf ("{\"status\":\"ok\",\"head\":%" G_GINT64_FORMAT "}", head));
  else
    respond_problem (waiter->msg, od_problem_new (OD_PROBLEM_NOT_READY,
                                                  "The event store cannot be used now: %s", why));
  soup_server_message_unpause (waiter->msg);
  g_clear_handle_id (&waiter->timeout_id, g_source_remove);
  g_object_unref (waiter->msg);
  g_free (waiter);
}

static gboolean
ready_timeout (gpointer data)
{
  ReadyWaiter *waiter = data;

  waiter->timeout_id = 0;
  g_ptr_array_remove_fast (waiter->server->ready_waiters, waiter);
  ready_answer (waiter, FALSE, 0, "it did not answer within 1 s.");
  return G_SOURCE_REMOVE;
}

static void
ready_in_thread (GTask        *task,
                 gpointer      source,
                 gpointer      task_data,
                 GCancellable *cancellable)
{
  OdServer *self = source;
  GError *error = NULL;
  gint64 head = 0;

  if (od_store_check (self->store, &head, &error))
    g_task_return_int (task, head);
  else
    g_task_return_error (task, error);
}

static void
ready_done (GObject      *source,
            GAsyncResult *res,
            gpointer      user_data)
{
  OdServer *self = OD_SERVER (source);
  g_autoptr(GError) error = NULL;
  gssize head = g_task_propagate_int (G_TASK (res), &error);
  g_autoptr(GPtrArray) waiters = g_steal_pointer (&self->ready_waiters);

  self->ready_waiters = g_ptr_array_new ();
  self->ready_checking = FALSE;
  if (error != NULL)
    od_metrics_add (OD_METRIC_STORE_ERRORS, 1);
  for (guint i = 0; i < waiters->len; i++)
    ready_answer (g_ptr_array_index (waiters, i), error == NULL, head,
                  error ? error->message : NULL);
}

/* Requests that arrive while a check runs wait for it: however many load
 * balancers ask, one check at a time reaches the store. */
static void
handle_ready (OdServer          *self,
              SoupServerMessage *msg)
{
  ReadyWaiter *waiter;

  if (self->stopping)
    {
      respond_problem (msg, od_problem_new (OD_PROBLEM_NOT_READY, "The server is stopping."));
      return;
    }
  waiter = g_new0 (ReadyWaiter, 1);
  waiter->server = self;
  waiter->msg = g_object_ref (msg);
  waiter->timeout_id = g_timeout_add (READY_TIMEOUT_MS, ready_timeout, waiter);
  g_ptr_array_add (self->ready_waiters, waiter);
  soup_server_message_pause (msg);
  if (!self->ready_checking)
    {
      g_autoptr(GTask) task = g_task_new (self, NULL, ready_done, NULL);

      self->ready_checking = TRUE;
      g_task_run_in_thread (task, ready_in_thread);
    }
}

static void
handle_metrics (OdServer          *self,
                SoupServerMessage *msg)
{
  if (self->metrics_protected)
    {
      SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
      gboolean duplicate;
      const char *value = header_once (headers, "Authorization", &duplicate);
      guint8 digest[32] = { 0 };
      guint8 diff = 1;

      if (value != NULL && g_ascii_strncasecmp (value, "Bearer ", 7) == 0)
        {
          g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
          gsize len = sizeof digest;

          g_checksum_update (sum, (const guchar *) value + 7, strlen (value + 7));
          g_checksum_get_digest (sum, digest, &len);
          /* Constant time, like the tokens file. */
          diff = 0;
          for (guint i = 0; i < sizeof digest; i++)
            diff |= digest[i] ^ self->metrics_token_sha256[i];
        }
      if (diff != 0)
        {
          respond_problem (msg, od_problem_new (OD_PROBLEM_UNAUTHORIZED,
                                                "GET /metrics needs the metrics token."));
          return;
        }
      g_object_set_data_full (G_OBJECT (msg), "od-token-name", g_strdup ("metrics"), g_free);
    }
  respond (msg, 200, "text/plain; version=0.0.4; charset=utf-8",
           od_metrics_render (self->head, self->n_subscribers));
}

static gboolean
request_id_valid (const char *id)
{
  gsize len = id ? strlen (id) : 0;

  return len >= 1 && len <= 128 && strspn (id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                "0123456789._:-") == len;
}

/* The client's X-Request-Id when it is a plain identifier (so that it can
 * go into the log as is), else a new one; echoed in the answer. */
static void
assign_request_id (SoupServerMessage *msg)
{
  const char *given = soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
                                                    "X-Request-Id");
  char *id = request_id_valid (given) ? g_strdup (given) : g_uuid_string_random ();

  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "X-Request-Id", id);
  g_object_set_data_full (G_OBJECT (msg), "od-request-id", id, g_free);
}

/* The request log times a request from the end of its headers (so a
 * slow upload of headers is the client's time, not ours), in
 * microseconds. */
static void
log_got_headers (SoupServerMessage *msg,
                 gpointer           user_data)
{
  gint64 *start = g_new (gint64, 1);

  *start = g_get_monotonic_time ();
  g_object_set_data_full (G_OBJECT (msg), "od-log-start", start, g_free);
}

static void
log_request_started (SoupServer        *server,
                     SoupServerMessage *msg,
                     OdServer          *self)
{
  g_signal_connect (msg, "got-headers", G_CALLBACK (log_got_headers), NULL);
}

static const char *const known_routes[] = {
  "/v1/commands", "/v1/events", "/v1/events/stream", "/v1/events/digest", "/v1/head",
  "/v1/health", "/v1/ready", "/metrics",
};

/* One line a request, with journald fields when stderr is the journal.
 * Only the route (never a query string, which is client text) and the
 * token's name (never the token) are logged. */
static void
log_request (SoupServer        *server,
             SoupServerMessage *msg,
             OdServer          *self)
{
  const char *method = soup_server_message_get_method (msg);
  GUri *uri = soup_server_message_get_uri (msg);
  const char *path = uri ? g_uri_get_path (uri) : NULL;
  const char *route = "other";
  const char *token_name = g_object_get_data (G_OBJECT (msg), "od-token-name");
  const char *request_id = g_object_get_data (G_OBJECT (msg), "od-request-id");
  const gint64 *start = g_object_get_data (G_OBJECT (msg), "od-log-start");
  char status[16], duration[32];

  if (method == NULL)
    return;
  for (guint i = 0; path != NULL && i < G_N_ELEMENTS (known_routes); i++)
    if (strcmp (path, known_routes[i]) == 0)
      route = known_routes[i];
  if (request_id == NULL)
    {
      assign_request_id (msg);
      request_id = g_object_get_data (G_OBJECT (msg), "od-request-id");
    }
  g_snprintf (status, sizeof status, "%u",
              g_object_get_data (G_OBJECT (msg), "od-status")
                ? GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (msg), "od-status"))
                : soup_server_message_get_status (msg));
  g_snprintf (duration, sizeof duration, "%.1f",
              start ? (g_get_monotonic_time () - *start) / 1000.0 : 0.0);
  g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE,
                    "OD_HTTP_METHOD", method,
                    "OD_HTTP_ROUTE", route,
                    "OD_HTTP_STATUS", status,
                    "OD_DURATION_MS", duration,
                    "OD_TOKEN_NAME", token_name ? token_name : "-",
                    "OD_REQUEST_ID", request_id,
                    "MESSAGE", "%s %s %s %s ms token=%s request_id=%s", method, route, status,
                    duration, token_name ? token_name : "-", request_id);
}

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
static void
msg_shutdown (SoupServerMessage *msg)
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

/* Beyond the cap a connection gets a short 503 (plain HTTP) or is
 * closed at once (HTTPS: a handshake is what the cap saves).  The rest of
 * the client's request is read and dropped for a moment so that closing
 * does not reset the connection before the answer is read. */
typedef struct
{
  OdServer *server;
  GSocket  *socket;
  GSource  *source;
  guint     timeout_id;
} Refusing;

static void
refusing_free (Refusing *refusing)
{
  refusing->server->n_refusing--;
  g_object_unref (refusing->server);
  g_clear_handle_id (&refusing->timeout_id, g_source_remove);
  if (refusing->source != NULL)
    {
      g_source_destroy (refusing->source);
      g_source_unref (refusing->source);
    }
  g_socket_close (refusing->socket, NULL);
  g_object_unref (refusing->socket);
  g_free (refusing);
}

static gboolean
refusing_timeout (gpointer data)
{
  Refusing *refusing = data;

  refusing->timeout_id = 0;
  refusing_free (refusing);
  return G_SOURCE_REMOVE;
}

static gboolean
refusing_readable (GSocket      *socket,
                   GIOCondition  condition,
                   gpointer      data)
{
  Refusing *refusing = data;
  g_autoptr(GError) error = NULL;
  char buf[4096];
  gssize n = g_socket_receive_with_blocking (socket, buf, sizeof buf, FALSE, NULL, &error);

  if (n == 0 || (n < 0 && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)))
    {
      refusing_free (refusing);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static char *raw_response (OdProblem *problem);

static void
refuse_connection (OdServer *self,
                   GSocket  *socket)
{
  Refusing *refusing;
  g_autofree char *response = NULL;
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
  response = raw_response (problem);
  g_socket_send_with_blocking (socket, response, strlen (response), FALSE, NULL, NULL);
  g_socket_shutdown (socket, FALSE, TRUE, NULL);

  refusing = g_new0 (Refusing, 1);
  refusing->server = g_object_ref (self);
  refusing->socket = g_object_ref (socket);
  self->n_refusing++;
  refusing->source = g_socket_create_source (socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback (refusing->source, G_SOURCE_FUNC (refusing_readable), refusing, NULL);
  g_source_attach (refusing->source, NULL);
  refusing->timeout_id = g_timeout_add (1000, refusing_timeout, refusing);
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
          if (self->accept_failing)
            {
              g_message ("accepting connections again (%u open)",
                         g_hash_table_size (self->conns));
              self->accept_failing = FALSE;
            }
          accept_connection (self, socket);
          continue;
        }
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
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

/* ------------------------------------------------------------------ */
/* Routing, limits and timeouts                                        */

static void
handle_request (SoupServer        *server,
                SoupServerMessage *msg,
                const char        *path,
                GHashTable        *query,
                gpointer           user_data)
{
  OdServer *self = user_data;
  const char *method = soup_server_message_get_method (msg);
  const char *allow = NULL;
  gboolean is_get = g_strcmp0 (method, "GET") == 0;
  gboolean is_post = g_strcmp0 (method, "POST") == 0;

  g_hash_table_remove (self->requests, msg);
  assign_request_id (msg);

  if (g_strcmp0 (path, "/v1/ready") == 0 && is_get)
    return handle_ready (self, msg);
  if (self->stopping)
    {
      respond_problem (msg, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The server is stopping."));
      return;
    }

  if (g_strcmp0 (path, "/v1/commands") == 0)
    {
      if (is_post)
        return handle_command (self, msg);
      allow = "POST";
    }
  else if (g_strcmp0 (path, "/v1/events") == 0)
    {
      if (is_get)
        return handle_events_page (self, msg);
      allow = "GET";
    }
  else if (g_strcmp0 (path, "/v1/events/digest") == 0)
    {
      if (is_get)
        return handle_events_digest (self, msg);
      allow = "GET";
    }
  else if (g_strcmp0 (path, "/v1/events/stream") == 0)
    {
      if (is_get)
        return handle_stream (self, msg);
      allow = "GET";
    }
  else if (g_strcmp0 (path, "/v1/head") == 0)
    {
      if (is_get)
        return handle_head (self, msg);
      allow = "GET";
    }
  else if (g_strcmp0 (path, "/v1/health") == 0)
    {
      if (is_get)
        return respond (msg, 200, "application/json", g_strdup ("{\"status\":\"ok\"}"));
      allow = "GET";
    }
  else if (g_strcmp0 (path, "/v1/ready") == 0)
    allow = "GET";
  else if (g_strcmp0 (path, "/metrics") == 0)
    {
      if (is_get)
        return handle_metrics (self, msg);
      allow = "GET";
    }

  if (allow != NULL)
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Allow", allow);
      respond_problem (msg, od_problem_new (OD_PROBLEM_METHOD_NOT_ALLOWED,
                                            "%s is not allowed on %s.", method, path));
    }
  else
    respond_problem (msg, od_problem_new (OD_PROBLEM_NOT_FOUND, "No route %s.", path));
}

/* A request refused from its headers alone (body too large, headers too
 * large) is answered on the raw connection, which is then closed: libsoup
 * would otherwise go on reading a body nobody wants.  The rest of the
 * client's upload is read and dropped for a moment first, so that closing
 * does not reset the connection before the client has read the answer. */
typedef struct
{
  GIOStream    *stream;
  GSocket      *socket;
  GCancellable *cancellable;
  guint8        buf[16384];
  gsize         drained;
  guint         timeout_id;
} Rejected;

static void
rejected_free (Rejected *rejected)
{
  g_clear_handle_id (&rejected->timeout_id, g_source_remove);
  g_io_stream_close (rejected->stream, NULL, NULL);
  g_clear_object (&rejected->socket);
  g_object_unref (rejected->cancellable);
  g_object_unref (rejected->stream);
  g_free (rejected);
}

static gboolean
rejected_timeout (gpointer data)
{
  Rejected *rejected = data;

  /* The pending read ends with G_IO_ERROR_CANCELLED and frees it. */
  rejected->timeout_id = 0;
  g_cancellable_cancel (rejected->cancellable);
  return G_SOURCE_REMOVE;
}

static void
rejected_drained (GObject      *source,
                  GAsyncResult *res,
                  gpointer      user_data)
{
  Rejected *rejected = user_data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, NULL);

  rejected->drained += MAX (n, 0);
  if (n <= 0 || rejected->drained > 16 * 1024 * 1024)
    {
      rejected_free (rejected);
      return;
    }
  g_input_stream_read_async (g_io_stream_get_input_stream (rejected->stream), rejected->buf,
                             sizeof rejected->buf, G_PRIORITY_LOW, rejected->cancellable,
                             rejected_drained, rejected);
}

static void
rejected_written (GObject      *source,
                  GAsyncResult *res,
                  gpointer      user_data)
{
  Rejected *rejected = user_data;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL, NULL))
    {
      rejected_free (rejected);
      return;
    }
  /* End of the answer for the client; what it still sends is read and
   * dropped for 2 s at most, then the connection is closed. */
  if (rejected->socket != NULL)
    g_socket_shutdown (rejected->socket, FALSE, TRUE, NULL);
  rejected->timeout_id = g_timeout_add_seconds (2, rejected_timeout, rejected);
  g_input_stream_read_async (g_io_stream_get_input_stream (rejected->stream), rejected->buf,
                             sizeof rejected->buf, G_PRIORITY_LOW, rejected->cancellable,
                             rejected_drained, rejected);
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

static void
reject_connection (OdServer          *server,
                   SoupServerMessage *msg,
                   OdProblem         *problem)
{
  Rejected *rejected = g_new0 (Rejected, 1);
  char *response = raw_response (problem);
  gsize len = strlen (response);

  g_hash_table_remove (server->requests, msg);
  rejected->cancellable = g_cancellable_new ();
  if (msg_socket (msg) != NULL)
    rejected->socket = g_object_ref (msg_socket (msg));
  rejected->stream = soup_server_message_steal_connection (msg);
  g_object_set_data_full (G_OBJECT (rejected->stream), "od-response", response, g_free);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (rejected->stream),
                                   g_object_get_data (G_OBJECT (rejected->stream), "od-response"),
                                   len, G_PRIORITY_DEFAULT, NULL, rejected_written, rejected);
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
  if (body->length > OD_MAX_BODY
      && !GPOINTER_TO_INT (g_object_get_data (G_OBJECT (msg), "od-too-large")))
    {
      GSocket *socket = msg_socket (msg);

      g_object_set_data (G_OBJECT (msg), "od-too-large", GINT_TO_POINTER (1));
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
  }

  g_signal_connect (msg, "got-chunk", G_CALLBACK (request_got_chunk), NULL);
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
  g_object_set_data (G_OBJECT (msg), "od-started",
                     GSIZE_TO_POINTER ((gsize) (g_get_monotonic_time () / 1000)));
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

static gboolean
tick (gpointer data)
{
  OdServer *self = data;
  gint64 now = g_get_monotonic_time ();
  GHashTableIter iter;
  gpointer key;

  /* Requests still being read after the timeout: slow or stuck clients
   * (including idle keep-alive connections) lose their connection. */
  g_hash_table_iter_init (&iter, self->requests);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      SoupServerMessage *msg = key;
      gint64 started = (gint64) GPOINTER_TO_SIZE (g_object_get_data (G_OBJECT (msg), "od-started"))
                       * 1000;

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

  for (GList *l = self->subscribers; l; l = l->next)
    {
      Subscriber *sub = l->data;

      if (sub->chunk_pending && !sub->dropped
          && now - sub->pending_since > self->stall_timeout_usec)
        {
          sub->dropped = TRUE;
          od_metrics_add (OD_METRIC_SLOW_SUBSCRIBERS, 1);
          g_message ("disconnecting a stream subscriber that read nothing for %" G_GINT64_FORMAT
                     " s (at position %" G_GINT64_FORMAT ")",
                     (now - sub->pending_since) / G_USEC_PER_SEC, sub->cursor);
          msg_shutdown (sub->msg);
        }
      else if (sub->head_sent && !sub->chunk_pending && !sub->reading
               && now - sub->last_write >= IDLE_HEAD_USEC)
        {
          GString *out = g_string_new (NULL);

          append_head_frame (out, self->head);
          subscriber_write (sub, out);
        }
    }
  return G_SOURCE_CONTINUE;
}

/* ------------------------------------------------------------------ */

/* Closes the listening socket and every connection not yet given to
 * libsoup (soup_server_disconnect closes the others). */
static void
stop_accepting (OdServer *self)
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

static void
od_server_dispose (GObject *object)
{
  OdServer *self = OD_SERVER (object);

  g_clear_handle_id (&self->tick_id, g_source_remove);
  if (self->appended_id != 0)
    g_clear_signal_handler (&self->appended_id, self->store);
  stop_accepting (self);
  if (self->soup != NULL)
    soup_server_disconnect (self->soup);
  g_clear_object (&self->soup);
  g_clear_object (&self->certificate);

  G_OBJECT_CLASS (od_server_parent_class)->dispose (object);
}

static void
od_server_finalize (GObject *object)
{
  OdServer *self = OD_SERVER (object);

  for (guint i = 0; i < self->ring_len; i++)
    ring_entry_clear (ring_at (self, i));
  g_free (self->ring);
  g_clear_object (&self->store);
  g_clear_pointer (&self->queue, g_async_queue_unref);
  g_clear_pointer (&self->in_flight, g_hash_table_unref);
  g_clear_pointer (&self->buckets, g_hash_table_unref);
  g_clear_pointer (&self->requests, g_hash_table_unref);
  g_clear_pointer (&self->ready_waiters, g_ptr_array_unref);
  g_clear_pointer (&self->conns, g_hash_table_unref);
  g_free (self->url);

  G_OBJECT_CLASS (od_server_parent_class)->finalize (object);
}

static void
od_server_class_init (OdServerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_server_dispose;
  object_class->finalize = od_server_finalize;
}

static void
od_server_init (OdServer *self)
{
  self->queue = g_async_queue_new ();
  self->in_flight = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->buckets = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->requests = g_hash_table_new_full (NULL, NULL, g_object_unref, NULL);
  self->conns = g_hash_table_new (NULL, NULL);
  self->ring = g_new0 (RingEntry, RING_CAPACITY);
  self->ready_waiters = g_ptr_array_new ();
  od_metrics_init ();
}

static gboolean
parse_listen (const char  *listen,
              char       **host,
              guint       *port,
              GError     **error)
{
  const char *colon = strrchr (listen, ':');
  guint64 value;

  if (colon == NULL || colon == listen
      || !g_ascii_string_to_unsigned (colon + 1, 10, 0, 65535, &value, NULL))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "--listen wants HOST:PORT, not '%s'", listen);
      return FALSE;
    }
  *host = g_strndup (listen, colon - listen);
  if ((*host)[0] == '[')
    {
      char *inner = g_strndup (*host + 1, strlen (*host) - 2);

      g_free (*host);
      *host = inner;
    }
  *port = value;
  return TRUE;
}

/* glib-networking 2.74 has no API for a connection's TLS versions and
 * ciphers; it reads G_TLS_GNUTLS_PRIORITY once, when its first TLS
 * connection class initialises.  The server sets it for itself (an
 * operator's own value is replaced) before any TLS connection exists. */
static gboolean
set_tls_priority (GError **error)
{
  GTlsBackend *backend = g_tls_backend_get_default ();

  if (!g_tls_backend_supports_tls (backend))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                           "no TLS backend (install glib-networking)");
      return FALSE;
    }
  if (g_type_class_peek (g_tls_backend_get_server_connection_type (backend)) != NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                           "TLS was initialised before the server could restrict it");
      return FALSE;
    }
  g_setenv ("G_TLS_GNUTLS_PRIORITY", OD_TLS_PRIORITY, TRUE);
  return TRUE;
}

OdServer *
od_server_new (OdStore               *store,
               OdAuth                *auth,
               const OdServerOptions *options,
               GError               **error)
{
  g_autoptr(OdServer) self = g_object_new (OD_TYPE_SERVER, NULL);
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GInetAddress) address = NULL;
  g_autoptr(GSocketAddress) socket_address = NULL;
  g_autoptr(GSocket) listener = NULL;
  g_autofree char *host = NULL;
  guint64 fd_limit;
  guint port;

  if (!parse_listen (options->listen, &host, &port, error))
    return NULL;
  address = g_inet_address_new_from_string (host);
  if (address == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "--listen wants a numeric address, not '%s'", host);
      return NULL;
    }
  if (options->tls_cert != NULL || options->tls_key != NULL)
    {
      if (options->tls_cert == NULL || options->tls_key == NULL)
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                               "--tls-cert and --tls-key go together");
          return NULL;
        }
      certificate = g_tls_certificate_new_from_files (options->tls_cert, options->tls_key, error);
      if (certificate == NULL)
        return NULL;
      if (!set_tls_priority (error))
        return NULL;
    }

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

  self->certificate = certificate ? g_object_ref (certificate) : NULL;
  self->store = g_object_ref (store);
  self->auth = auth;
  self->rate_limit = options->rate_limit;
  self->rate_burst = MAX (options->rate_burst, 1.0);
  self->request_timeout_usec = (gint64) MAX (options->request_timeout_s, 1) * G_USEC_PER_SEC;
  self->stall_timeout_usec = (gint64) MAX (options->stall_timeout_s, 1) * G_USEC_PER_SEC;
  if (options->metrics_token != NULL)
    {
      g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
      gsize len = sizeof self->metrics_token_sha256;

      g_checksum_update (sum, (const guchar *) options->metrics_token, -1);
      g_checksum_get_digest (sum, self->metrics_token_sha256, &len);
      self->metrics_protected = TRUE;
    }

  if (!od_store_get_head (store, &self->head, error))
    return NULL;
  self->tail_position = self->ring_base = self->head;

  self->soup = soup_server_new ("server-header", "orderdesk-server/" OD_VERSION, NULL);
  soup_server_add_early_handler (self->soup, NULL, early_handler, self, NULL);
  soup_server_add_handler (self->soup, NULL, handle_request, self, NULL);
  g_signal_connect (self->soup, "request-started", G_CALLBACK (request_started), self);
  g_signal_connect (self->soup, "request-read", G_CALLBACK (request_ended), self);
  g_signal_connect (self->soup, "request-finished", G_CALLBACK (request_finished), self);
  g_signal_connect (self->soup, "request-aborted", G_CALLBACK (request_ended), self);
  g_signal_connect (self->soup, "request-started", G_CALLBACK (log_request_started), self);
  g_signal_connect (self->soup, "request-finished", G_CALLBACK (log_request), self);
  g_signal_connect (self->soup, "request-aborted", G_CALLBACK (log_request), self);
  self->appended_id = g_signal_connect (store, "appended", G_CALLBACK (store_appended), self);

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
        return NULL;
      }
    close (pair[1]);
    placeholder = g_socket_new_from_fd (pair[0], error);
    if (placeholder == NULL)
      {
        close (pair[0]);
        return NULL;
      }
    if (!soup_server_listen_socket (self->soup, placeholder, 0, error))
      return NULL;
  }

  /* Our own socket, for a listen backlog that absorbs bursts of new
   * connections (GSocket's default of 10 overflows, and clients then see
   * resets), and for accepting that survives running out of file
   * descriptors. */
  socket_address = g_inet_socket_address_new (address, port);
  listener = g_socket_new (g_inet_address_get_family (address), G_SOCKET_TYPE_STREAM,
                           G_SOCKET_PROTOCOL_TCP, error);
  if (listener == NULL)
    return NULL;
  g_socket_set_listen_backlog (listener, 1024);
  if (!g_socket_bind (listener, socket_address, TRUE, error)
      || !g_socket_listen (listener, error))
    return NULL;
  g_socket_set_blocking (listener, FALSE);
  self->listen_socket = g_object_ref (listener);
  accept_arm (self);

  /* The URL comes from the listening socket itself, which also gives the
   * port chosen for port 0. */
  {
    g_autoptr(GSocketAddress) local = g_socket_get_local_address (listener, error);
    g_autofree char *ip = NULL;

    if (local == NULL)
      return NULL;
    ip = g_inet_address_to_string (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (local)));
    self->url = g_strdup_printf ("%s://%s%s%s:%u", certificate ? "https" : "http",
                                 strchr (ip, ':') ? "[" : "", ip, strchr (ip, ':') ? "]" : "",
                                 g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local)));
  }

  self->writer = g_thread_new ("od-writer", writer_thread, self);
  self->tick_id = g_timeout_add_seconds (1, tick, self);
  return g_steal_pointer (&self);
}

const char *
od_server_get_url (OdServer *self)
{
  return self->url;
}

gint64
od_server_get_head (OdServer *self)
{
  return self->head;
}

guint
od_server_get_n_subscribers (OdServer *self)
{
  return self->n_subscribers;
}

/* Stops taking requests, lets the writer finish what it holds (those
 * commands commit; clients get their answers or retry with the same key)
 * and closes every stream. */
void
od_server_shutdown (OdServer *self)
{
  GMainContext *context = g_main_context_default ();

  self->stopping = TRUE;
  g_async_queue_push (self->queue, STOP_JOB);
  g_thread_join (self->writer);
  self->writer = NULL;
  /* Deliver the answers of the last batches before closing connections. */
  while (g_main_context_pending (context))
    g_main_context_iteration (context, FALSE);
  stop_accepting (self);
  soup_server_disconnect (self->soup);
  while (g_main_context_pending (context))
    g_main_context_iteration (context, FALSE);
}

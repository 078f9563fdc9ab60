/* SPDX-License-Identifier: GPL-3.0-or-later */
/* OdServer: the routes, the commands and their writer thread, pages,
 * digests, head, readiness, metrics and the request log.  The event
 * stream is in od-server-stream.c, the connections in od-server-conn.c. */
#include "od-server-private.h"
#include "od-metrics.h"
#include "od-digest.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define WRITER_BATCH_MAX   1024
#define READY_TIMEOUT_MS   1000
/* Page bodies built but not yet written, over all connections: beyond
 * it pages are refused with 503 (slow readers must not pin memory). */
#define PAGE_BYTES_MAX     (64 * 1024 * 1024)
/* What reading one event for a page may take, events and text. */
#define PAGE_EVENT_BYTES   512
/* GnuTLS priorities for the server's TLS: 1.2 and 1.3 only, forward
 * secret key exchange, AEAD ciphers only. */
#define OD_TLS_PRIORITY \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:" \
  "-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:" \
  "-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:+DHE-RSA"

G_DEFINE_FINAL_TYPE (OdServer, od_server, G_TYPE_OBJECT)

/* The server's view of a command waiting for the writer. */
typedef struct
{
  OdServer          *server;
  SoupServerMessage *msg;       /* NULL once the client went away */
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

static OdJob *const STOP_JOB = (OdJob *) &STOP_JOB;

/* ------------------------------------------------------------------ */
/* Requests                                                            */

G_DEFINE_QUARK (od-request-info, od_request_info)

static void
request_info_free (OdRequestInfo *info)
{
  g_free (info->token_name);
  g_free (info->request_id);
  g_free (info);
}

/* Made when libsoup starts the request (request_started in
 * od-server-conn.c), or here if anything asks before. */
OdRequestInfo *
od_server_request_info (SoupServerMessage *msg)
{
  OdRequestInfo *info = g_object_get_qdata (G_OBJECT (msg), od_request_info_quark ());

  if (info == NULL)
    {
      info = g_new0 (OdRequestInfo, 1);
      info->started = g_get_monotonic_time ();
      g_object_set_qdata_full (G_OBJECT (msg), od_request_info_quark (), info,
                               (GDestroyNotify) request_info_free);
    }
  return info;
}

/* For the request log: the token's name, never the token. */
static void
set_log_token_name (SoupServerMessage *msg,
                    const char        *name)
{
  OdRequestInfo *info = od_server_request_info (msg);

  g_free (info->token_name);
  info->token_name = g_strdup (name);
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */

void
od_server_respond (SoupServerMessage *msg,
                   guint              status,
                   const char        *content_type,
                   char              *body)
{
  gsize len = strlen (body);

  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, content_type, SOUP_MEMORY_TAKE, body, len);
  if (len > 0)
    od_server_msg_body_follows (msg);
}

void
od_server_respond_problem (SoupServerMessage *msg,
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
  od_server_respond (msg, problem->status, "application/problem+json", od_problem_to_json (problem));
  od_problem_free (problem);
}

/* Returns the value of a header that must appear at most once.  A header
 * given twice is ambiguous and reported through duplicate. */
const char *
od_server_header_once (SoupMessageHeaders *headers,
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

char *
od_server_head_json (gint64 head)
{
  g_autofree char *now = od_timestamp_now ();

  return g_strdup_printf ("{\"head\":%" G_GINT64_FORMAT ",\"server_time\":\"%s\"}", head, now);
}

/* ------------------------------------------------------------------ */
/* Authentication and rate limit                                       */

const OdToken *
od_server_authenticate (OdServer          *self,
                        SoupServerMessage *msg,
                        OdRole             needed)
{
  SoupMessageHeaders *headers = soup_server_message_get_request_headers (msg);
  const OdToken *token;
  gboolean duplicate;
  const char *value = od_server_header_once (headers, "Authorization", &duplicate);

  token = duplicate ? NULL : od_auth_check (self->auth, value);
  if (token == NULL)
    {
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_UNAUTHORIZED,
                                                      value == NULL && !duplicate
                                                        ? "An Authorization: Bearer token is required."
                                                        : "The bearer token is malformed or unknown."));
      return NULL;
    }
  set_log_token_name (msg, token->name);
  if (needed == OD_ROLE_OPERATOR && token->role != OD_ROLE_OPERATOR)
    {
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_FORBIDDEN,
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
      od_server_request_info (pending->msg)->pending = NULL;
      g_object_unref (pending->msg);
    }
  g_free (pending->flight_key);
  g_free (pending);
}

/* From request_done (): the request ended (finished or aborted) while
 * its command waits on the writer.  The client went away; the command
 * still commits (a retry with the same key will get its answer), there
 * is just no one to tell. */
static void
pending_msg_gone (Pending *pending)
{
  od_server_request_info (pending->msg)->pending = NULL;
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

  if (batch->len > 0)
    {
      self = ((Pending *) ((OdJob *) g_ptr_array_index (batch, 0))->user_data)->server;
      od_server_stream_feed (self, (OdJob **) batch->pdata, batch->len);
    }
  for (guint i = 0; i < batch->len; i++)
    {
      OdJob *job = g_ptr_array_index (batch, i);
      Pending *pending = job->user_data;

      count_job (job);
      if (pending->flight_key != NULL)
        g_hash_table_remove (self->in_flight, pending->flight_key);
      if (pending->msg != NULL)
        {
          SoupServerMessage *msg = pending->msg;

          if (job->replayed)
            soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                          "Idempotent-Replayed", "true");
          od_server_respond (msg, job->status,
                             job->status == 200 ? "application/json" : "application/problem+json",
                             g_strdup (job->response));
          soup_server_message_unpause (msg);
        }
      if (pending->done != NULL)
        pending->done (job, pending->done_data);
      pending_free (pending);
      od_job_free (job);
    }
  for (guint i = 0; i < batch->len; i++)
    g_object_unref (self);
  g_ptr_array_unref (batch);
  return G_SOURCE_REMOVE;
}

typedef struct
{
  OdServer *server;
  gboolean  stop;
} Writer;

/* Appends to BATCH what waits in the queue, up to WRITER_BATCH_MAX; the
 * stop job ends the taking (and, after this batch, the writer). */
static guint
writer_take (GPtrArray *batch,
             gpointer   data)
{
  Writer *writer = data;
  guint before = batch->len;
  OdJob *job;

  while (!writer->stop && batch->len < WRITER_BATCH_MAX
         && (job = g_async_queue_try_pop (writer->server->queue)) != NULL)
    {
      if (job == STOP_JOB)
        writer->stop = TRUE;
      else
        g_ptr_array_add (batch, job);
    }
  return batch->len - before;
}

static gpointer
writer_thread (gpointer data)
{
  Writer writer = { .server = data, .stop = FALSE };
  OdServer *self = writer.server;

  while (!writer.stop)
    {
      GPtrArray *batch;
      g_autoptr(GError) error = NULL;
      OdJob *job = g_async_queue_pop (self->queue);

      if (job == STOP_JOB)
        break;
      batch = g_ptr_array_new ();
      g_ptr_array_add (batch, job);
      writer_take (batch, &writer);

      /* Commands that arrive while the batch is decided join its commit. */
      if (od_store_execute_more (self->store, batch, writer_take, &writer, &error))
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
  od_server_respond_problem (msg, problem);
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
  const char *key, *raw_type, *content_type, *charset;
  gboolean duplicate;
  guint retry_after = 0;
  OdCommand *command;
  Pending *pending;
  OdJob *job;
  char *flight_key;
  gsize len;
  const char *data;

  /* The size is decided from the headers, before the token (see
   * od_server_early_handler); this catches a chunked body that grew too large. */
  if (body->length > OD_MAX_BODY || od_server_request_info (msg)->too_large)
    {
      refuse_command (msg, od_problem_new (OD_PROBLEM_PAYLOAD_TOO_LARGE,
                                           "The body is over %d bytes.", OD_MAX_BODY));
      return;
    }
  if ((token = od_server_authenticate (self, msg, OD_ROLE_OPERATOR)) == NULL)
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
  key = od_server_header_once (headers, "Idempotency-Key", &duplicate);
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
   * UTF-8, so the only charset that makes sense is that one.  The plain
   * value every client sends needs no parse (a hash table of parameters
   * a command). */
  raw_type = soup_message_headers_get_one (headers, "Content-Type");
  if (raw_type != NULL && g_ascii_strcasecmp (raw_type, "application/json") != 0)
    {
      content_type = soup_message_headers_get_content_type (headers, &type_params);
      charset = type_params ? g_hash_table_lookup (type_params, "charset") : NULL;
      if (content_type == NULL || g_ascii_strcasecmp (content_type, "application/json") != 0
          || (charset != NULL && g_ascii_strcasecmp (charset, "utf-8") != 0))
        {
          refuse_command (msg, od_problem_new (OD_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
                                                "Commands are sent as application/json."));
          return;
        }
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
  od_server_request_info (msg)->pending = pending;
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

void
od_server_read_result_free (ReadResult *result)
{
  if (result->text != NULL)
    g_string_free (result->text, TRUE);
  if (result->entries != NULL)
    g_ptr_array_unref (result->entries);
  g_free (result);
}

typedef struct
{
  ReadRequest *request;
  ReadResult  *result;
  guint        seen;
} ReadVisit;

static gboolean
read_visit (const OdEvent *event,
            gpointer       user_data)
{
  ReadVisit *visit = user_data;
  ReadResult *result = visit->result;

  if (event->position > visit->request->upto
      || (visit->seen++ > 0 && result->text->len >= PAGE_TEXT_MAX))
    return FALSE;
  if (result->n_events > 0)
    g_string_append_c (result->text, ',');
  od_store_append_event (result->text, event, FALSE);
  result->last_position = event->position;
  result->n_events++;
  return TRUE;
}

/* Replay: runs of frames as the store gives them, one copy each. */
static gboolean
read_frames_visit (gint64      first,
                   gint64      last,
                   guint       n,
                   const char *frames,
                   gsize       len,
                   gpointer    user_data)
{
  ReadVisit *visit = user_data;
  ReadResult *result = visit->result;

  /* A run is up to 256 events: the chunk stops before one that would
   * take it past the cap, unless it is the first. */
  if (visit->seen++ > 0 && result->text->len + len > PAGE_TEXT_MAX)
    return FALSE;
  g_string_append_len (result->text, frames, len);
  result->last_position = last;
  result->n_events += n;
  return TRUE;
}

static void
read_in_thread (GTask        *task,
                gpointer      source,
                gpointer      task_data,
                GCancellable *cancellable)
{
  OdServer *self = source;
  ReadRequest *request = task_data;
  ReadVisit visit = { request, g_new0 (ReadResult, 1), 0 };
  ReadResult *result = visit.result;
  GError *error = NULL;
  gint64 head = 0;

  result->last_position = request->after;
  result->text = g_string_sized_new (MIN (request->limit, 2000) * 320 + 64);
  if (!request->frames)
    g_string_append (result->text, "{\"events\":[");
  if (request->frames
      ? !od_store_visit_frames (self->store, request->after, request->upto, request->limit,
                                &head, read_frames_visit, &visit, &error)
      : !od_store_visit_events (self->store, request->after, request->limit, &head, read_visit,
                                &visit, &error))
    {
      od_server_read_result_free (result);
      g_task_return_error (task, error);
      return;
    }
  result->head = head;
  if (!request->frames)
    {
      g_string_append (result->text, "],\"head\":");
      od_store_append_int (result->text, head);
      g_string_append_c (result->text, '}');
    }
  g_task_return_pointer (task, result, (GDestroyNotify) od_server_read_result_free);
}

void
od_server_start_read (OdServer            *self,
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
  od_server_respond_problem (msg, problem);
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
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The event store failed: %s",
                                                      error->message));
    }
  else
    {
      PageHold *hold = g_new0 (PageHold, 1);

      hold->server = g_object_ref (self);
      hold->len = result->text->len;
      self->page_bytes += hold->len;
      g_signal_connect (msg, "finished", G_CALLBACK (page_written), hold);
      od_server_respond (msg, 200, "application/json", g_string_free (g_steal_pointer (&result->text), FALSE));
      od_server_read_result_free (result);
    }
  soup_server_message_unpause (msg);
  g_object_unref (msg);
}

gboolean
od_server_query_int (GHashTable         *params,
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
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED, "%s must be an integer.", name));
      return FALSE;
    }
  return TRUE;
}

GHashTable *
od_server_query_params (SoupServerMessage *msg,
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
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED, "The query string is malformed."));
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

  if (od_server_authenticate (self, msg, OD_ROLE_VIEWER) == NULL)
    return;
  params = od_server_query_params (msg, &ok);
  if (!ok || !od_server_query_int (params, "after", 0, &after, msg) || !od_server_query_int (params, "limit", 1000, &limit, msg))
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
  od_server_start_read (self, after, limit, G_MAXINT64, FALSE, page_read_done, g_object_ref (msg));
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
  g_autoptr(OdDigest) sum = od_digest_new ();
  char hex[OD_DIGEST_HEX_LEN + 1];
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
  od_digest_finish (sum, hex);
  g_task_return_pointer (task,
                         g_strdup_printf ("{\"after\":%" G_GINT64_FORMAT ",\"upto\":%" G_GINT64_FORMAT
                                          ",\"count\":%" G_GINT64_FORMAT ",\"sha256\":\"%s\"}",
                                          request->after, upto, count,
                                          hex),
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
    od_server_respond (msg, 200, "application/json", body);
  else
    {
      od_metrics_add (OD_METRIC_STORE_ERRORS, 1);
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The event store failed: %s",
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

  if (od_server_authenticate (self, msg, OD_ROLE_VIEWER) == NULL)
    return;
  params = od_server_query_params (msg, &ok);
  if (!ok || !od_server_query_int (params, "after", 0, &after, msg)
      || !od_server_query_int (params, "upto", -1, &upto, msg))
    return;
  after = MAX (after, 0);
  /* The range is judged as asked, not as clamped to the head, so that
   * whether a request is answered does not depend on the log's length. */
  if (params == NULL || g_hash_table_lookup (params, "upto") == NULL)
    upto = after > G_MAXINT64 - OD_DIGEST_MAX_RANGE ? G_MAXINT64 : after + OD_DIGEST_MAX_RANGE;
  else if (upto > after && upto - after > OD_DIGEST_MAX_RANGE)
    {
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED,
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
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The event store failed: %s",
                                                      error->message));
    }
  else
    od_server_respond (msg, 200, "application/json", od_server_head_json (head));
  soup_server_message_unpause (msg);
  g_object_unref (msg);
}

void
od_server_head_in_thread (GTask        *task,
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

  if (od_server_authenticate (self, msg, OD_ROLE_VIEWER) == NULL)
    return;
  soup_server_message_pause (msg);
  task = g_task_new (self, NULL, head_done, g_object_ref (msg));
  g_task_run_in_thread (task, od_server_head_in_thread);
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
    od_server_respond (waiter->msg, 200, "application/json",
                       g_strdup_printf ("{\"status\":\"ok\",\"head\":%" G_GINT64_FORMAT "}", head));
  else
    od_server_respond_problem (waiter->msg, od_problem_new (OD_PROBLEM_NOT_READY,
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
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_NOT_READY, "The server is stopping."));
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
      const char *value = od_server_header_once (headers, "Authorization", &duplicate);
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
          od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_UNAUTHORIZED,
                                                          "GET /metrics needs the metrics token."));
          return;
        }
      set_log_token_name (msg, "metrics");
    }
  od_server_respond (msg, 200, "text/plain; version=0.0.4; charset=utf-8",
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
 * go into the log as is), else a new UUID; echoed in the answer.  A
 * UUIDv7: the log's ids then sort by time, and it is formatted by hand,
 * where g_uuid_string_random () goes through printf (about 1 % of the
 * main thread on a command). */
static void
assign_request_id (SoupServerMessage *msg)
{
  const char *given = soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
                                                    "X-Request-Id");
  char *id = request_id_valid (given) ? g_strdup (given) : od_uuid_v7_new ();

  OdRequestInfo *info = od_server_request_info (msg);

  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "X-Request-Id", id);
  g_free (info->request_id);
  info->request_id = id;
}

static const char *const known_routes[] = {
  "/v1/commands", "/v1/events", "/v1/events/stream", "/v1/events/digest", "/v1/head",
  "/v1/health", "/v1/ready", "/metrics",
};

/* Writes LINE, an access log message, to stderr as GLib's writer would
 * (g_log_writer_format_fields ()'s form, no colour), with one writev ().
 * GLib's writer asks for every line whether stderr is a terminal, formats
 * through printf and writes through stdio: 8 % of the main thread's time
 * on a command.  FALSE where that writer does more: colours on a
 * terminal, fields in the journal, escapes for what is not printable
 * ASCII (a client's method may hold anything). */
static gboolean
log_line_direct (const char *line,
                 gsize       len)
{
  static gsize direct = 0; /* 1: write here, 2: through GLib */
  char prefix[64];
  struct iovec iov[3];
  struct tm tm;
  gint64 now;
  time_t secs;
  gssize n;

  if (g_once_init_enter (&direct))
    g_once_init_leave (&direct, isatty (STDERR_FILENO) || g_log_writer_is_journald (STDERR_FILENO)
                                ? 2 : 1);
  if (direct != 1)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (line[i] < 0x20 || line[i] > 0x7e)
      return FALSE;
  now = g_get_real_time ();
  secs = (time_t) (now / G_USEC_PER_SEC);
  if (localtime_r (&secs, &tm) == NULL)
    return FALSE;
  iov[0].iov_base = prefix;
  iov[0].iov_len = g_snprintf (prefix, sizeof prefix, G_LOG_DOMAIN "-Message: %02d:%02d:%02d.%03d: ",
                               tm.tm_hour, tm.tm_min, tm.tm_sec,
                               (int) ((now / 1000) % 1000));
  iov[1].iov_base = (char *) line;
  iov[1].iov_len = len;
  iov[2].iov_base = (char *) "\n";
  iov[2].iov_len = 1;
  /* A short write (a full pipe) finishes through stdio, as before. */
  do
    n = writev (STDERR_FILENO, iov, G_N_ELEMENTS (iov));
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (iov); i++)
    {
      gsize done = MIN ((gsize) n, iov[i].iov_len);

      if (done < iov[i].iov_len)
        fwrite ((const char *) iov[i].iov_base + done, 1, iov[i].iov_len - done, stderr);
      n -= done;
    }
  fflush (stderr);
  return TRUE;
}

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
  OdRequestInfo *info = od_server_request_info (msg);
  const char *token_name = info->token_name;
  const char *request_id;
  /* From the end of its headers, so that a slow upload of headers is the
   * client's time, not ours; from its first byte when libsoup answered
   * it before our handlers saw it. */
  gint64 took = g_get_monotonic_time () - (info->headers_read ? info->headers_read : info->started);
  char status[16], duration[32], line[512];
  gsize len;

  if (method == NULL)
    return;
  for (guint i = 0; path != NULL && i < G_N_ELEMENTS (known_routes); i++)
    if (strcmp (path, known_routes[i]) == 0)
      route = known_routes[i];
  if (info->request_id == NULL)
    assign_request_id (msg);
  request_id = info->request_id;
  g_snprintf (status, sizeof status, "%u",
              info->log_status ? info->log_status : soup_server_message_get_status (msg));
  /* Tenths of a millisecond, as "%.1f" of the milliseconds gave (rounded
   * half up, never negative). */
  took = MAX (took, 0) + 50;
  g_snprintf (duration, sizeof duration, "%" G_GINT64_FORMAT ".%d", took / 1000,
              (int) (took % 1000 / 100));
  len = g_snprintf (line, sizeof line, "%s %s %s %s ms token=%s request_id=%s", method, route,
                    status, duration, token_name ? token_name : "-", request_id);
  if (len < sizeof line && log_line_direct (line, len))
    return;
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

/* Finished or aborted: a command still waiting on the writer loses its
 * client, and the request has its log line. */
static void
request_done (SoupServer        *server,
              SoupServerMessage *msg,
              OdServer          *self)
{
  Pending *pending = od_server_request_info (msg)->pending;

  if (pending != NULL)
    pending_msg_gone (pending);
  log_request (server, msg, self);
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
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_UNAVAILABLE, "The server is stopping."));
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
        return od_server_handle_stream (self, msg);
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
        return od_server_respond (msg, 200, "application/json", g_strdup ("{\"status\":\"ok\"}"));
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
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_METHOD_NOT_ALLOWED,
                                                      "%s is not allowed on %s.", method, path));
    }
  else
    od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_NOT_FOUND, "No route %s.", path));
}
static gboolean
tick (gpointer data)
{
  OdServer *self = data;
  gint64 now = g_get_monotonic_time ();

  od_server_conn_tick (self, now);
  od_server_stream_tick (self, now);

  return G_SOURCE_CONTINUE;
}


static void
od_server_dispose (GObject *object)
{
  OdServer *self = OD_SERVER (object);

  g_clear_handle_id (&self->tick_id, g_source_remove);
  if (self->appended_id != 0)
    g_clear_signal_handler (&self->appended_id, self->store);
  od_server_stop_accepting (self);
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

  od_server_stream_clear (self);
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
  g_autofree char *host = NULL;
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

  {
    gint64 head;

    if (!od_store_get_head (store, &head, error))
      return NULL;
    od_server_stream_init (self, head);
  }

  self->soup = soup_server_new ("server-header", "orderdesk-server/" OD_VERSION, NULL);
  od_server_conn_attach (self);
  soup_server_add_handler (self->soup, NULL, handle_request, self, NULL);
  g_signal_connect (self->soup, "request-finished", G_CALLBACK (request_done), self);
  g_signal_connect (self->soup, "request-aborted", G_CALLBACK (request_done), self);

  if (!od_server_listen (self, address, port, error))
    return NULL;

  /* The URL comes from the listening socket itself, which also gives the
   * port chosen for port 0. */
  {
    g_autoptr(GSocketAddress) local = g_socket_get_local_address (self->listen_socket, error);
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
  od_server_stop_accepting (self);
  soup_server_disconnect (self->soup);
  while (g_main_context_pending (context))
    g_main_context_iteration (context, FALSE);
}

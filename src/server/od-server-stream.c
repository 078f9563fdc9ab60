/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The event stream (GET /v1/events/stream): the ring of the newest
 * events as SSE frames, fed by the tail that follows the store's
 * commits; subscribers, each replaying from the store until the ring
 * covers its cursor and then fed from the ring; head frames. */
#include "od-server-private.h"
#include "od-metrics.h"

#define RING_CAPACITY      32768
#define TAIL_READ_LIMIT    5000
#define REPLAY_READ_LIMIT  2000
#define CHUNK_MAX_BYTES    (64 * 1024)
#define CHUNK_MAX_EVENTS   1000
#define IDLE_HEAD_USEC     (4 * G_USEC_PER_SEC)

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
  /* The next replay batch, read while the previous chunk was still
   * being written, and the ring's base when it arrived. */
  ReadResult        *ahead;
  gint64             ahead_ring_base;
};


static void subscriber_pump (Subscriber *sub);

/* ------------------------------------------------------------------ */
/* The ring and the tail                                               */

static void
ring_entry_clear (RingEntry *entry)
{
  g_clear_pointer (&entry->frame, g_free);
}

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

typedef struct
{
  GPtrArray *entries;
  GString   *frame;     /* reused for every event */
} TailVisit;

/* A tail read's entries own their frames until the ring takes them. */
static void
ring_entry_free (RingEntry *entry)
{
  ring_entry_clear (entry);
  g_free (entry);
}

static gboolean
tail_visit (const OdEvent *event,
            gpointer       user_data)
{
  TailVisit *visit = user_data;
  RingEntry *entry = g_new (RingEntry, 1);

  g_string_truncate (visit->frame, 0);
  od_store_append_event (visit->frame, event, TRUE);
  entry->position = event->position;
  entry->prev = event->prev;
  entry->len = visit->frame->len;
  entry->frame = g_memdup2 (visit->frame->str, visit->frame->len + 1);
  g_ptr_array_add (visit->entries, entry);
  return TRUE;
}

static void
tail_entries_in_thread (GTask        *task,
                        gpointer      source,
                        gpointer      task_data,
                        GCancellable *cancellable)
{
  OdServer *self = source;
  gint64 after = *(gint64 *) task_data;
  TailVisit visit = { g_ptr_array_new_with_free_func ((GDestroyNotify) ring_entry_free),
                      g_string_sized_new (1024) };
  GError *error = NULL;
  ReadResult *result;
  gint64 head = 0;

  if (!od_store_visit_events (self->store, after, TAIL_READ_LIMIT, &head, tail_visit, &visit,
                              &error))
    {
      g_ptr_array_unref (visit.entries);
      g_string_free (visit.frame, TRUE);
      g_task_return_error (task, error);
      return;
    }
  g_string_free (visit.frame, TRUE);
  result = g_new0 (ReadResult, 1);
  result->head = head;
  result->entries = visit.entries;
  result->n_events = visit.entries->len;
  g_task_return_pointer (task, result, (GDestroyNotify) od_server_read_result_free);
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

          /* The writer's batch may have put it there since the read
           * began: its frame goes with the read's entries. */
          if (entry->position <= self->tail_position)
            continue;
          ring_push (self, entry);
          /* The ring owns the frame now; only the holder is freed. */
          entry->frame = NULL;
          self->tail_position = entry->position;
        }
      self->head = self->tail_position;
      more = result->n_events == TAIL_READ_LIMIT;
      od_server_read_result_free (result);

      for (GList *l = self->subscribers; l; l = l->next)
        subscriber_pump (l->data);
    }

  if (more || self->tail_again)
    {
      self->tail_again = FALSE;
      if (result == NULL)
        g_timeout_add_once (100, (GSourceOnceFunc) od_server_tail_read, self);
      else
        od_server_tail_read (self);
    }
  g_object_unref (self);
}

void
od_server_tail_read (OdServer *self)
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
  od_server_tail_read (data);
  return G_SOURCE_REMOVE;
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
  g_clear_pointer (&sub->ahead, od_server_read_result_free);
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
  g_autofree char *json = od_server_head_json (head);

  g_string_append (out, "event: head\ndata: ");
  g_string_append (out, json);
  g_string_append (out, "\n\n");
}

/* Takes RESULT, a replay batch, and queues its frames; RING_BASE is the
 * ring's base when the batch arrived. */
static void
replay_apply (Subscriber *sub,
              ReadResult *result,
              gint64      ring_base)
{
  if (result->n_events == 0 && sub->cursor < ring_base)
    {
      /* Nothing in the log between the cursor and the ring: move on to
       * the ring rather than asking again forever. */
      sub->cursor = ring_base;
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
  od_server_read_result_free (result);
  /* Either feeds the ring's frames, or reads the next batch while this
   * one is written. */
  subscriber_pump (sub);
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
    g_clear_pointer (&result, od_server_read_result_free);
  else if (result == NULL)
    {
      g_warning ("stream replay failed: %s; closing the stream", error->message);
      od_server_msg_shutdown (sub->msg);
    }
  else if (sub->chunk_pending)
    {
      /* Goes out once the chunk before it is written. */
      g_assert (sub->ahead == NULL);
      sub->ahead = result;
      sub->ahead_ring_base = sub->server->ring_base;
    }
  else
    replay_apply (sub, result, sub->server->ring_base);
  subscriber_unref (sub);
}

static void
subscriber_pump (Subscriber *sub)
{
  OdServer *self = sub->server;
  gint64 upto = sub->head_sent ? G_MAXINT64 : sub->connect_head;
  GString *out = NULL;

  if (sub->closed || sub->reading || !sub->head_known)
    return;
  if (sub->chunk_pending)
    {
      /* The replay reads its next batch from the store while the last
       * one is written (one batch ahead at most); the ring's frames
       * wait for the write. */
      if (sub->ahead == NULL && sub->cursor < upto && sub->cursor < self->tail_position
          && sub->cursor < self->ring_base)
        {
          sub->reading = TRUE;
          od_server_start_read (self, sub->cursor, REPLAY_READ_LIMIT, upto, TRUE, replay_done,
                                subscriber_ref (sub));
        }
      return;
    }

  if (sub->cursor < upto && sub->cursor < self->tail_position)
    {
      if (sub->cursor < self->ring_base)
        {
          sub->reading = TRUE;
          od_server_start_read (self, sub->cursor, REPLAY_READ_LIMIT, upto, TRUE, replay_done,
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
  if (sub->ahead != NULL)
    {
      ReadResult *ahead = g_steal_pointer (&sub->ahead);

      replay_apply (sub, ahead, sub->ahead_ring_base);
    }
  else
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
        od_server_tail_read (self);
      /* Unpauses: the headers and this frame go out now; the replay
       * follows once it is written. */
      subscriber_write (sub, g_string_new ("retry: 2000\n\n"));
    }
  subscriber_unref (sub);
}

void
od_server_handle_stream (OdServer          *self,
                         SoupServerMessage *msg)
{
  SoupMessageHeaders *request_headers = soup_server_message_get_request_headers (msg);
  SoupMessageHeaders *headers = soup_server_message_get_response_headers (msg);
  g_autoptr(GHashTable) params = NULL;
  const char *last_id;
  Subscriber *sub;
  gboolean duplicate, ok;
  gint64 after;

  if (od_server_authenticate (self, msg, OD_ROLE_VIEWER) == NULL)
    return;
  params = od_server_query_params (msg, &ok);
  if (!ok || !od_server_query_int (params, "after", 0, &after, msg))
    return;
  last_id = od_server_header_once (request_headers, "Last-Event-ID", &duplicate);
  if (duplicate)
    {
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED, "Last-Event-ID was given twice."));
      return;
    }
  if (last_id != NULL && !g_ascii_string_to_signed (last_id, 10, G_MININT64, G_MAXINT64,
                                                    &after, NULL))
    {
      od_server_respond_problem (msg, od_problem_new (OD_PROBLEM_MALFORMED,
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
  od_server_request_info (msg)->log_status = 200;
  soup_message_headers_set_content_type (headers, "text/event-stream", NULL);
  soup_message_headers_replace (headers, "Cache-Control", "no-store");
  soup_message_headers_set_encoding (headers, SOUP_ENCODING_CHUNKED);
  soup_message_body_set_accumulate (soup_server_message_get_response_body (msg), FALSE);
  sub->wrote_id = g_signal_connect (msg, "wrote-chunk", G_CALLBACK (subscriber_wrote_chunk), sub);
  sub->finished_id = g_signal_connect (msg, "finished", G_CALLBACK (subscriber_finished), sub);

  soup_server_message_pause (msg);

  {
    g_autoptr(GTask) task = g_task_new (self, NULL, stream_head_done, subscriber_ref (sub));

    g_task_run_in_thread (task, od_server_head_in_thread);
  }
}

/* The events a batch of the writer just committed go into the ring as
 * the store formatted them, when they follow its tail directly; anything
 * else (a store that gives no frames, another instance's events in
 * between) is left to a tail read.  Then the subscribers are fed. */
void
od_server_stream_feed (OdServer  *self,
                       OdJob    **jobs,
                       guint      n_jobs)
{
  gboolean fed = FALSE, read = FALSE;

  for (guint i = 0; i < n_jobs; i++)
    {
      OdJob *job = jobs[i];
      RingEntry entry;

      if (job->status != 200 || job->replayed || job->position <= 0
          || job->position <= self->tail_position)
        continue;
      if (job->frame == NULL || job->prev != self->tail_position)
        {
          read = TRUE;
          break;
        }
      entry.position = job->position;
      entry.prev = job->prev;
      entry.frame = g_steal_pointer (&job->frame);
      entry.len = job->frame_len;
      ring_push (self, &entry);
      self->tail_position = job->position;
      fed = TRUE;
    }
  if (fed)
    {
      self->head = MAX (self->head, self->tail_position);
      for (GList *l = self->subscribers; l; l = l->next)
        subscriber_pump (l->data);
    }
  if (read)
    od_server_tail_read (self);
}

/* ------------------------------------------------------------------ */
/* Set-up, the once-a-second check, clean-up                          */

static void
store_appended (OdStore  *store,
                OdServer *self)
{
  /* Our own writer's commits reach the ring through
   * od_server_stream_feed (), which reads the store only when it must. */
  if (g_thread_self () == self->writer)
    return;
  /* From any thread: hop to the main loop, where the tail lives. */
  g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, appended_idle, g_object_ref (self),
                              g_object_unref);
}

void
od_server_stream_init (OdServer *self,
                       gint64    head)
{
  self->ring = g_new0 (RingEntry, RING_CAPACITY);
  self->head = self->tail_position = self->ring_base = head;
  self->appended_id = g_signal_connect (self->store, "appended", G_CALLBACK (store_appended), self);
}

void
od_server_stream_clear (OdServer *self)
{
  if (self->ring != NULL)
    for (guint i = 0; i < self->ring_len; i++)
      ring_entry_clear (ring_at (self, i));
  g_clear_pointer (&self->ring, g_free);
  self->ring_len = 0;
}

/* Subscribers that read nothing for the stall timeout are dropped; the
 * others get a head frame when nothing else went out for a while. */
void
od_server_stream_tick (OdServer *self,
                       gint64    now)
{
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
          od_server_msg_shutdown (sub->msg);
        }
      else if (sub->head_sent && !sub->chunk_pending && !sub->reading
               && now - sub->last_write >= IDLE_HEAD_USEC)
        {
          GString *out = g_string_new (NULL);

          append_head_frame (out, self->head);
          subscriber_write (sub, out);
        }
    }
}

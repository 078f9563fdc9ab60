/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-sync.h"
#include "od-tls.h"
#include "od-http.h"
#include "od-cache-private.h"
#include "od-digest.h"
#include "od-event-fast.h"
#include "od-json.h"
#include "od-problem.h"
#include "od-sse.h"

#include <libsoup/soup.h>
#include <string.h>

#define READ_BLOCK       (64 * 1024)
#define PAGE_LIMIT       10000
#define SILENCE_LIMIT_US (12 * G_USEC_PER_SEC)
#define BACKOFF_MAX_SEC  30
#define WRITE_BACKOFF_MAX_SEC 5
#define CONTACT_EVERY_US G_USEC_PER_SEC
/* Bounds on what the client holds of one answer: a hostile server that
 * sends without end must not grow the console's memory without end
 * (400 MB sent made 414-524 MB resident).  A head is {"head":…,
 * "server_time":…}; an error body is a short problem+json.  A page holds
 * at most PAGE_LIMIT events, and the largest event the field rules allow
 * is about 2.5 KiB (a 500-character reason at 4 bytes a character, plus
 * the envelope): 10,000 of them stay under 25 MiB, and 64 MiB leaves room
 * for event types of later versions. */
#define MAX_HEAD_BYTES    (64 * 1024)
#define MAX_PROBLEM_BYTES (64 * 1024)
#define MAX_PAGE_BYTES    (64 * 1024 * 1024)

typedef enum
{
  RESULT_STOPPED,     /* stop requested */
  RESULT_DROPPED,     /* network error, server closed, silence: back off */
  RESULT_AUTH,        /* 401/403: stop retrying */
  RESULT_GAP,         /* prev mismatch: fill from pages, reconnect at once */
  RESULT_RESYNC,      /* the cache asked to start from its checkpoint again */
  RESULT_HISTORY_LOST,/* the server's log does not contain our checkpoint */
} RunResult;

/* State shared between the main thread and the sync thread, under lock.
 * One per run (start to stop), reference counted (g_atomic_rc_box): the
 * engine holds it while the run is current, the thread until it ends,
 * and each refresh it posts to the main loop until that is dispatched.
 * The cache's gap function gets it without a reference: it is set when
 * the run starts and unset (under the cache's gap lock, which waits for a
 * call in progress) before the engine lets go of it. */
typedef struct
{
  GMutex        lock;
  GCond         cond;
  gboolean      stop;
  gboolean      reconnect_now;
  gboolean      resync;
  gboolean      write_failed;    /* the cache could not commit: pause first */
  GCancellable *op_cancellable;  /* the HTTP operation in progress */
  gint64        watch_since;     /* µs monotonic: op start or last bytes */

  /* Facts for the lag. */
  OdLagState    state;           /* CONNECTING, CATCHING_UP (= connected), RECONNECTING, SIGN_IN_NEEDED */
  gboolean      got_head;        /* a head frame arrived on this connection */
  gint64        replay_head;     /* the first head frame of this connection */
  gint64        known_head;
  gint64        head_learned_at; /* µs real time when known_head first passed the received events */
  gint64        last_received;   /* last event position handed to the cache */
  gint64        last_contact;    /* µs real time */
  gint64        clock_offset;    /* server − local, µs */
  gint64        reconnect_at;    /* µs monotonic */
  guint         attempts;
  char         *last_error;
  GTlsCertificateFlags tls_errors; /* of the last refused certificate, 0 = none */
  GQueue        pending;         /* PendingBatch: handed to the cache, not yet known applied */
  OdSyncStats   stats;
  gboolean      update_posted;
} Shared;

typedef struct
{
  gint64 last_position;
  gint64 oldest_usec; /* local-clock time of the first event of the batch */
} PendingBatch;

struct _OdSyncEngine
{
  GObject       parent_instance;

  OdCache      *cache;
  OdLag        *lag;
  char         *server_url;
  char         *token;
  guint         batch_size;
  GThread      *thread;
  GMainContext *main_context;
  guint         tick_id;
  gulong        applied_id;
  gulong        reset_id;
  gboolean      caught_up_emitted;
  gboolean      starting;        /* in od_sync_engine_start (): no caught-up yet */
  gint64        caught_up_target;
  Shared       *shared;          /* the current run's; NULL when stopped */
  OdSyncStats   last_stats;      /* the counters of the last run, once stopped */
  GTlsDatabase *tls_database;    /* NULL = the system's trust */
  GNetworkMonitor *network;      /* NULL until started: the default one */
  gulong        network_changed_id;
  GCancellable *reach_cancellable;
  gboolean      unreachable;     /* the network cannot reach the server */
};

G_DEFINE_FINAL_TYPE (OdSyncEngine, od_sync_engine, G_TYPE_OBJECT)

enum
{
  PROP_0,
  PROP_CACHE,
  PROP_SERVER_URL,
  PROP_TOKEN,
  PROP_LAG,
  PROP_RUNNING,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum
{
  SIGNAL_CAUGHT_UP,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* What the thread works with: a snapshot of the engine's settings, so
 * that the engine may be disposed while the thread winds down. */
typedef struct
{
  OdSyncEngine *engine;   /* weak: only used through main-context invokes guarded by `alive` */
  OdCache      *cache;
  Shared       *shared;   /* a reference */
  char         *server_url;
  char         *token;
  guint         batch_size;
  GMainContext *main_context;
  GWeakRef      engine_ref;

  /* Sync-thread only. */
  SoupSession  *stream_session;
  SoupSession  *page_session;
  GTlsDatabase *tls_database;
  GTlsCertificateFlags tls_errors; /* of the request in progress */
  JsonNode     *root;      /* the last text parse_json() read */
  char         *refused;   /* why parse_json() last refused a text */
  GPtrArray    *batch;
  gint64        last;        /* position of the last event handed to the cache */
  RunResult     frame_result;/* set by the frame callback to stop the read loop */
  gint64        last_contact_saved;
  gboolean      connection_ok;
  /* This connection proved the server works: it delivered an event or
   * a head frame the cache has reached.  Only then does the backoff
   * start again from 1 s: a server that answers but serves nothing (a
   * head its pages never reach) is retried ever more slowly. */
  gboolean      useful;
  gint64        behind_at_head; /* w->last at a head frame that was ahead of it, -1 = none */
} Worker;

static void post_update (Worker *w);

static Shared *
shared_new (void)
{
  Shared *s = g_atomic_rc_box_new0 (Shared);

  g_mutex_init (&s->lock);
  g_cond_init (&s->cond);
  g_queue_init (&s->pending);
  s->state = OD_LAG_STATE_CONNECTING;
  return s;
}

static void
shared_clear (Shared *s)
{
  g_mutex_clear (&s->lock);
  g_cond_clear (&s->cond);
  g_clear_object (&s->op_cancellable);
  g_free (s->last_error);
  g_queue_clear_full (&s->pending, g_free);
}

static void
shared_unref (Shared *s)
{
  g_atomic_rc_box_release_full (s, (GDestroyNotify) shared_clear);
}

/* ------------------------------------------------------------------ */
/* Sync thread                                                         */

static void
set_state (Worker     *w,
           OdLagState  state,
           const char *error)
{
  Shared *s = w->shared;

  g_mutex_lock (&s->lock);
  s->state = state;
  if (error != NULL)
    {
      g_free (s->last_error);
      s->last_error = g_strdup (error);
    }
  g_mutex_unlock (&s->lock);
  post_update (w);
}

static GCancellable *
begin_op (Worker *w)
{
  Shared *s = w->shared;
  GCancellable *c = g_cancellable_new ();

  g_mutex_lock (&s->lock);
  g_set_object (&s->op_cancellable, c);
  s->watch_since = g_get_monotonic_time ();
  if (s->stop || s->resync)
    g_cancellable_cancel (c);
  g_mutex_unlock (&s->lock);
  return c;
}

static void
end_op (Worker *w)
{
  Shared *s = w->shared;

  g_mutex_lock (&s->lock);
  g_clear_object (&s->op_cancellable);
  g_mutex_unlock (&s->lock);
}

static gboolean
should_stop (Worker *w)
{
  gboolean stop;

  g_mutex_lock (&w->shared->lock);
  stop = w->shared->stop;
  g_mutex_unlock (&w->shared->lock);
  return stop;
}

static void
note_contact (Worker *w,
              gint64  known_head)
{
  Shared *s = w->shared;
  gint64 now = g_get_real_time ();

  g_mutex_lock (&s->lock);
  s->last_contact = now;
  s->watch_since = g_get_monotonic_time ();
  if (known_head > s->known_head)
    {
      if (known_head > s->last_received && s->known_head <= s->last_received)
        s->head_learned_at = now;
      s->known_head = known_head;
    }
  g_mutex_unlock (&s->lock);
  if (now - w->last_contact_saved > CONTACT_EVERY_US)
    {
      w->last_contact_saved = now;
      od_cache_note_contact (w->cache, known_head, now, w->server_url);
      post_update (w);
    }
}

static void
flush_batch (Worker *w)
{
  Shared *s = w->shared;
  OdEvent *first;
  PendingBatch *pb;
  gint64 usec;
  gint64 known_head;

  if (w->batch->len == 0)
    return;
  first = g_ptr_array_index (w->batch, 0);
  pb = g_new0 (PendingBatch, 1);
  pb->last_position = w->last;
  if (!od_timestamp_parse (first->recorded_at, &usec))
    usec = g_get_real_time ();

  g_mutex_lock (&s->lock);
  /* recorded_at is on the server's clock; the offset from head frames
   * brings it to ours.  Never later than now: an event cannot be younger
   * than its arrival. */
  pb->oldest_usec = MIN (usec - s->clock_offset, g_get_real_time ());
  g_queue_push_tail (&s->pending, pb);
  s->last_received = w->last;
  if (s->known_head < w->last)
    s->known_head = w->last;
  known_head = s->known_head;
  g_mutex_unlock (&s->lock);

  od_cache_push_events (w->cache, g_steal_pointer (&w->batch), known_head);
  w->batch = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  post_update (w);
}

/* Every text from the server goes through the strict RFC 8259 gate
 * (od_json_parse_object runs od_json_check first): json-glib alone takes
 * lone surrogates, wraps big integers around and more.  The document
 * stays the worker's until the next one is parsed. */
static JsonNode *
parse_json (Worker     *w,
            const char *text,
            gsize       len)
{
  g_autoptr(GError) error = NULL;

  g_clear_pointer (&w->root, json_node_unref);
  w->root = od_json_parse_object (text, len, &error);
  if (w->root == NULL)
    {
      g_free (w->refused);
      w->refused = g_strdup (error->message);
    }
  return w->root;
}

/* The dedupe and gap rule shared by stream and pages.  Returns FALSE
 * when the event shows a gap. */
static gboolean
accept_event (Worker  *w,
              OdEvent *ev)
{
  Shared *s = w->shared;

  g_mutex_lock (&s->lock);
  s->stats.events_received++;
  g_mutex_unlock (&s->lock);
  if (ev->position <= w->last)
    {
      g_mutex_lock (&s->lock);
      s->stats.duplicates_skipped++;
      g_mutex_unlock (&s->lock);
      od_event_free (ev);
      return TRUE;
    }
  if (ev->prev != w->last)
    {
      g_mutex_lock (&s->lock);
      s->stats.gaps++;
      g_mutex_unlock (&s->lock);
      g_debug ("gap: applied %" G_GINT64_FORMAT ", event %" G_GINT64_FORMAT " prev %"
               G_GINT64_FORMAT, w->last, ev->position, ev->prev);
      od_event_free (ev);
      return FALSE;
    }
  w->last = ev->position;
  w->useful = TRUE;
  g_ptr_array_add (w->batch, ev);
  if (w->batch->len >= w->batch_size)
    flush_batch (w);
  return TRUE;
}

static void
on_frame (const char *event,
          const char *id,
          const char *data,
          gsize       data_len,
          gpointer    user_data)
{
  Worker *w = user_data;
  JsonNode *root;

  if (w->frame_result != RESULT_STOPPED)
    return; /* the read loop is ending; ignore the rest of this block */

  if (id != NULL && g_strcmp0 (event, "head") != 0)
    {
      OdEvent *fast = od_event_parse_fast_lean (data, data_len);

      if (fast != NULL)
        {
          if (!accept_event (w, fast))
            w->frame_result = RESULT_GAP;
          return;
        }
    }

  root = parse_json (w, data, data_len);
  if (g_strcmp0 (event, "head") == 0)
    {
      JsonObject *o = root ? json_node_get_object (root) : NULL;
      JsonNode *h = o ? json_object_get_member (o, "head") : NULL;
      const char *st = o ? json_object_get_string_member_with_default (o, "server_time", NULL)
                         : NULL;
      gint64 server_usec;

      if (od_json_is_integer (h))
        {
          Shared *s = w->shared;
          gint64 head = json_node_get_int (h);

          flush_batch (w);
          /* A head frame ahead of what arrived can be honest (commits
           * between the replay's end and the frame), but two in a row
           * with no event between them is a stream that stopped short of
           * its own head: a frozen feed must not look like a quiet one,
           * so the pages fill in. */
          if (head > w->last)
            {
              if (w->behind_at_head == w->last)
                {
                  g_mutex_lock (&s->lock);
                  s->stats.gaps++;
                  g_mutex_unlock (&s->lock);
                  g_message ("the event stream is stuck at %" G_GINT64_FORMAT " below its head %"
                             G_GINT64_FORMAT "; reading pages", w->last, head);
                  w->frame_result = RESULT_GAP;
                }
              w->behind_at_head = w->last;
            }
          else
            {
              w->behind_at_head = -1;
              w->useful = TRUE;
            }
          g_mutex_lock (&s->lock);
          if (st != NULL && od_timestamp_parse (st, &server_usec))
            s->clock_offset = server_usec - g_get_real_time ();
          if (!s->got_head)
            {
              s->got_head = TRUE;
              s->replay_head = head;
            }
          g_mutex_unlock (&s->lock);
          note_contact (w, head);
          post_update (w);
        }
      return;
    }

  if (root == NULL)
    {
      /* The event it may have carried is not skipped: the next one
       * shows a gap, which the pages fill in. */
      g_message ("refusing a stream frame that is not a strict JSON object (event %s, id %s): %s",
                 event, id ? id : "-", w->refused ? w->refused : "no object");
      return;
    }
  {
    g_autoptr(GError) error = NULL;
    OdEvent *ev = od_event_from_object (json_node_get_object (root), &error);

    if (ev == NULL)
      {
        g_warning ("ignoring a malformed event: %s", error->message);
        return;
      }
    od_event_keep_raw_data (ev, data, data_len);
    if (!accept_event (w, ev))
      w->frame_result = RESULT_GAP;
  }
}

static void
on_retry (guint    retry_ms,
          gpointer user_data)
{
  /* The server's retry hint is a floor for the first reconnect; the
   * backoff schedule of the console is already longer than 2 s after the
   * first attempt, so it is only recorded. */
}

/* A request failed: say why, and a refused certificate in words the
 * operator can act on (the GUI words it from OdLag:tls-errors). */
static void
set_failure (Worker       *w,
             SoupMessage  *msg,
             const GError *error)
{
  g_autofree char *why = od_tls_describe_failure (msg, w->tls_errors, error);
  gboolean refused = w->tls_errors != 0
                     || g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);

  g_mutex_lock (&w->shared->lock);
  w->shared->tls_errors = refused ? (w->tls_errors ? w->tls_errors
                                                   : G_TLS_CERTIFICATE_GENERIC_ERROR)
                                  : 0;
  g_mutex_unlock (&w->shared->lock);
  set_state (w, OD_LAG_STATE_CONNECTING, why);
}

static SoupMessage *
new_request (Worker     *w,
             const char *path_and_query)
{
  g_autofree char *uri = g_strconcat (w->server_url, path_and_query, NULL);
  SoupMessage *msg = soup_message_new ("GET", uri);

  if (msg == NULL)
    return NULL;
  od_tls_watch_message (msg, &w->tls_errors);
  od_http_authorize (msg, w->token);
  return msg;
}

/* "64 KiB", "1 MiB": plain spaces, for logs and for the lag's details. */
static char *
size_words (gsize bytes)
{
  if (bytes >= 1024 * 1024)
    return g_strdup_printf ("%" G_GSIZE_FORMAT " MiB", bytes / (1024 * 1024));
  return g_strdup_printf ("%" G_GSIZE_FORMAT " KiB", bytes / 1024);
}

/* Reads `in` to its end, at most `limit` bytes: more is an error that
 * names `what`.  Arriving bytes count as contact for the silence watch. */
static GBytes *
read_bounded (Worker        *w,
              GInputStream  *in,
              gsize          limit,
              const char    *what,
              GCancellable  *cancellable,
              GError       **error)
{
  g_autoptr(GByteArray) buf = g_byte_array_new ();
  g_autofree guint8 *block = g_malloc (READ_BLOCK);

  for (;;)
    {
      gssize n = g_input_stream_read (in, block, READ_BLOCK, cancellable, error);

      if (n < 0)
        return NULL;
      if (n == 0)
        break;
      if ((gsize) n > limit - buf->len)
        {
          g_autofree char *size = size_words (limit);

          g_set_error (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                       "%s is larger than %s", what, size);
          return NULL;
        }
      g_byte_array_append (buf, block, n);
      g_mutex_lock (&w->shared->lock);
      w->shared->watch_since = g_get_monotonic_time ();
      g_mutex_unlock (&w->shared->lock);
    }
  return g_byte_array_free_to_bytes (g_steal_pointer (&buf));
}

/* soup_session_send_and_read() with a bound: `limit` for a 200, the
 * error body's bound otherwise. */
static GBytes *
send_bounded (Worker        *w,
              SoupMessage   *msg,
              gsize          limit,
              const char    *what,
              GCancellable  *cancellable,
              GError       **error)
{
  g_autoptr(GInputStream) in = soup_session_send (w->page_session, msg, cancellable, error);
  GBytes *body;

  if (in == NULL)
    return NULL;
  if (soup_message_get_status (msg) != 200)
    {
      limit = MAX_PROBLEM_BYTES;
      what = "the server's error body";
    }
  body = read_bounded (w, in, limit, what, cancellable, error);
  g_input_stream_close (in, NULL, NULL);
  return body;
}

/* The server answered other than 200 (`body` its error body, NULL when
 * it could not be read, `error` why): the lag says why, in the problem's
 * words; 401 and 403 stop until signed in again, anything else backs
 * off.  Every request of the engine ends here on such an answer. */
static RunResult
http_failure (Worker       *w,
              SoupMessage  *msg,
              GBytes       *body,
              const GError *error)
{
  guint status = soup_message_get_status (msg);
  gboolean auth = status == 401 || status == 403;
  g_autofree char *why = NULL;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE))
    why = g_strdup_printf ("HTTP %u: %s", status, error->message);
  else
    {
      g_autoptr(OdProblem) problem = od_problem_parse (status,
                                                       body ? g_bytes_get_data (body, NULL) : "",
                                                       body ? g_bytes_get_size (body) : 0);

      why = g_strdup_printf ("HTTP %u: %s", status, problem->detail ? problem->detail : "");
    }
  set_state (w, auth ? OD_LAG_STATE_SIGN_IN_NEEDED : OD_LAG_STATE_CONNECTING, why);
  return auth ? RESULT_AUTH : RESULT_DROPPED;
}

/* The stream's answer was not 200: its error body, bounded, then as
 * any other failed request. */
static RunResult
stream_failure (Worker       *w,
                SoupMessage  *msg,
                GInputStream *in,
                GCancellable *cancellable)
{
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;

  body = read_bounded (w, in, MAX_PROBLEM_BYTES, "the server's error body", cancellable, &error);
  g_input_stream_close (in, NULL, NULL);
  return http_failure (w, msg, body, error);
}

static RunResult
stopped_or (Worker    *w,
            RunResult  other)
{
  gboolean stop, resync;

  g_mutex_lock (&w->shared->lock);
  stop = w->shared->stop;
  resync = w->shared->resync;
  g_mutex_unlock (&w->shared->lock);
  if (stop)
    return RESULT_STOPPED;
  if (resync)
    return RESULT_RESYNC;
  return other;
}

/* GET /v1/events pages from w->last until the head: used after a gap
 * and whenever the stream cannot be trusted to fill in. */
static RunResult
catch_up_pages (Worker *w)
{
  for (;;)
    {
      g_autofree char *path = g_strdup_printf ("/v1/events?after=%" G_GINT64_FORMAT
                                               "&limit=%d", w->last, PAGE_LIMIT);
      g_autoptr(SoupMessage) msg = new_request (w, path);
      g_autoptr(GCancellable) c = begin_op (w);
      g_autoptr(GError) error = NULL;
      g_autoptr(GBytes) body = NULL;
      JsonNode *root;
      JsonObject *o;
      JsonArray *events;
      g_autoptr(GArray) spans = NULL;
      JsonNode *head_node;
      gint64 head;
      guint n;

      if (msg == NULL)
        {
          end_op (w);
          set_state (w, OD_LAG_STATE_CONNECTING, "invalid server URL");
          return RESULT_DROPPED;
        }
      body = send_bounded (w, msg, MAX_PAGE_BYTES, "the server's page of events", c, &error);
      end_op (w);
      if (body == NULL)
        {
          set_failure (w, msg, error);
          return stopped_or (w, RESULT_DROPPED);
        }
      g_mutex_lock (&w->shared->lock);
      w->shared->stats.pages_fetched++;
      g_mutex_unlock (&w->shared->lock);
      if (soup_message_get_status (msg) != 200)
        return http_failure (w, msg, body, NULL);
      root = parse_json (w, g_bytes_get_data (body, NULL), g_bytes_get_size (body));
      o = root ? json_node_get_object (root) : NULL;
      head_node = o ? json_object_get_member (o, "head") : NULL;
      events = o ? json_object_get_array_member (o, "events") : NULL;
      if (events == NULL || !od_json_is_integer (head_node))
        {
          set_state (w, OD_LAG_STATE_CONNECTING, "the server sent a malformed page of events");
          return RESULT_DROPPED;
        }
      head = json_node_get_int (head_node);
      note_contact (w, head);
      n = json_array_get_length (events);
      /* Where each event is in the body, to keep its data as sent. */
      spans = od_json_raw_elements (g_bytes_get_data (body, NULL), g_bytes_get_size (body), "events");
      if (spans != NULL && spans->len != 2 * n)
        g_clear_pointer (&spans, g_array_unref);
      if (n == 0)
        {
          flush_batch (w);
          if (head < w->last)
            return RESULT_HISTORY_LOST;
          if (head > w->last)
            {
              g_autofree char *why = NULL;

              /* The contract says this never happens.  Reconnecting at
               * once made a storm (654 reconnects in 10 s): it is a
               * failure like any other, and backs off. */
              why = g_strdup_printf ("the server's head is %" G_GINT64_FORMAT
                                     " but its pages end at %" G_GINT64_FORMAT,
                                     head, w->last);
              g_message ("%s; retrying later", why);
              set_state (w, OD_LAG_STATE_CONNECTING, why);
              return RESULT_DROPPED;
            }
          return RESULT_STOPPED; /* caught up with the pages */
        }
      for (guint i = 0; i < n; i++)
        {
          JsonNode *en = json_array_get_element (events, i);
          OdEvent *ev = od_json_is_object (en)
                          ? od_event_from_object (json_node_get_object (en), NULL)
                          : NULL;

          if (ev == NULL)
            {
              set_state (w, OD_LAG_STATE_CONNECTING, "the server sent a malformed event");
              flush_batch (w);
              return RESULT_DROPPED;
            }
          if (spans != NULL)
            od_event_keep_raw_data (ev, (const char *) g_bytes_get_data (body, NULL)
                                          + g_array_index (spans, gsize, 2 * i),
                                    g_array_index (spans, gsize, 2 * i + 1));
          /* Pages are contiguous by contract: a first event that does
           * not follow our checkpoint means the server's log is not the
           * one the cache was built from. */
          if (!accept_event (w, ev))
            {
              flush_batch (w);
              return RESULT_HISTORY_LOST;
            }
        }
      flush_batch (w);
      if (w->last >= head)
        return RESULT_STOPPED;
      if (should_stop (w))
        return RESULT_STOPPED;
    }
}

/* GET /v1/head first: the lag shows how far behind the cache is before
 * the replay ends, and the writer knows to keep its transactions big. */
static RunResult
fetch_head (Worker *w)
{
  g_autoptr(SoupMessage) msg = new_request (w, "/v1/head");
  g_autoptr(GCancellable) c = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) body = NULL;
  JsonNode *root;
  JsonNode *head;

  if (msg == NULL)
    {
      set_state (w, OD_LAG_STATE_CONNECTING, "invalid server URL");
      return RESULT_DROPPED;
    }
  c = begin_op (w);
  body = send_bounded (w, msg, MAX_HEAD_BYTES, "the server's head", c, &error);
  end_op (w);
  if (body == NULL)
    {
      set_failure (w, msg, error);
      return stopped_or (w, RESULT_DROPPED);
    }
  if (soup_message_get_status (msg) != 200)
    return http_failure (w, msg, body, NULL);
  root = parse_json (w, g_bytes_get_data (body, NULL), g_bytes_get_size (body));
  head = root ? json_object_get_member (json_node_get_object (root), "head") : NULL;
  if (!od_json_is_integer (head))
    {
      set_state (w, OD_LAG_STATE_CONNECTING, "the server sent a malformed head");
      return RESULT_DROPPED;
    }
  if (json_node_get_int (head) < w->last)
    return RESULT_HISTORY_LOST;
  note_contact (w, json_node_get_int (head));
  return RESULT_STOPPED;
}

static RunResult
run_stream (Worker *w)
{
  g_autofree char *path = g_strdup_printf ("/v1/events/stream?after=%" G_GINT64_FORMAT, w->last);
  g_autofree char *last_id = g_strdup_printf ("%" G_GINT64_FORMAT, w->last);
  g_autoptr(SoupMessage) msg = new_request (w, path);
  g_autoptr(GCancellable) c = NULL;
  g_autoptr(GInputStream) in = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(OdSseParser) sse = NULL;
  g_autofree char *buf = NULL;
  Shared *s = w->shared;

  if (msg == NULL)
    {
      set_state (w, OD_LAG_STATE_CONNECTING, "invalid server URL");
      return RESULT_DROPPED;
    }
  set_state (w, OD_LAG_STATE_CONNECTING, NULL);
  {
    RunResult r = fetch_head (w);

    if (r != RESULT_STOPPED)
      return r;
  }
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Last-Event-ID", last_id);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Accept",
                                "text/event-stream");

  g_mutex_lock (&s->lock);
  s->got_head = FALSE;
  s->replay_head = 0;
  s->stats.connections++;
  g_mutex_unlock (&s->lock);
  set_state (w, OD_LAG_STATE_CONNECTING, NULL);

  c = begin_op (w);
  in = soup_session_send (w->stream_session, msg, c, &error);
  if (in == NULL)
    {
      end_op (w);
      set_failure (w, msg, error);
      return stopped_or (w, RESULT_DROPPED);
    }
  if (soup_message_get_status (msg) != 200)
    {
      RunResult r = stream_failure (w, msg, in, c);

      end_op (w);
      return stopped_or (w, r);
    }

  w->connection_ok = TRUE;
  note_contact (w, 0);
  set_state (w, OD_LAG_STATE_CATCHING_UP, NULL);
  g_mutex_lock (&s->lock);
  g_clear_pointer (&s->last_error, g_free);
  s->tls_errors = 0;
  s->attempts = 0;
  g_mutex_unlock (&s->lock);

  sse = od_sse_parser_new (on_frame, on_retry, w);
  w->behind_at_head = -1;
  buf = g_malloc (READ_BLOCK);
  w->frame_result = RESULT_STOPPED;
  for (;;)
    {
      gssize n = g_input_stream_read (in, buf, READ_BLOCK, c, &error);

      if (n <= 0)
        {
          flush_batch (w);
          end_op (w);
          set_state (w, OD_LAG_STATE_CONNECTING,
                     n == 0 ? "the server closed the stream" : error->message);
          return stopped_or (w, RESULT_DROPPED);
        }
      g_mutex_lock (&s->lock);
      s->stats.bytes += n;
      s->watch_since = g_get_monotonic_time ();
      s->last_contact = g_get_real_time ();
      g_mutex_unlock (&s->lock);
      if (!od_sse_parser_feed (sse, buf, n))
        {
          g_autofree char *size = size_words (OD_SSE_MAX_FRAME);
          g_autofree char *why = g_strdup_printf ("the server sent a stream frame larger than %s",
                                                  size);

          g_message ("%s; dropping the stream", why);
          flush_batch (w);
          end_op (w);
          g_input_stream_close (in, NULL, NULL);
          set_state (w, OD_LAG_STATE_CONNECTING, why);
          return stopped_or (w, RESULT_DROPPED);
        }
      /* Whatever this block held goes to the writer now: live events
       * must not wait for a batch to fill. */
      flush_batch (w);
      if (w->frame_result != RESULT_STOPPED)
        {
          end_op (w);
          g_input_stream_close (in, NULL, NULL);
          return w->frame_result;
        }
      if (g_get_real_time () - w->last_contact_saved > CONTACT_EVERY_US)
        note_contact (w, 0);
    }
}

/* Waits `usec` unless stopped or asked to retry now. */
static void
wait_backoff (Worker *w,
              gint64  usec)
{
  Shared *s = w->shared;
  gint64 deadline = g_get_monotonic_time () + usec;

  g_mutex_lock (&s->lock);
  s->reconnect_at = deadline;
  s->state = OD_LAG_STATE_RECONNECTING;
  g_mutex_unlock (&s->lock);
  post_update (w);
  g_mutex_lock (&s->lock);
  while (!s->stop && !s->reconnect_now && !s->resync)
    if (!g_cond_wait_until (&s->cond, &s->lock, deadline))
      break;
  s->reconnect_now = FALSE;
  s->reconnect_at = 0;
  g_mutex_unlock (&s->lock);
}

static void
wait_sign_in (Worker *w)
{
  Shared *s = w->shared;

  g_mutex_lock (&s->lock);
  s->state = OD_LAG_STATE_SIGN_IN_NEEDED;
  g_mutex_unlock (&s->lock);
  post_update (w);
  g_mutex_lock (&s->lock);
  while (!s->stop && !s->reconnect_now)
    g_cond_wait (&s->cond, &s->lock);
  s->reconnect_now = FALSE;
  g_mutex_unlock (&s->lock);
}

static gboolean
start_rebuild_main (gpointer data)
{
  OdCache *cache = data;

  od_cache_rebuild_async (cache, NULL, NULL, NULL);
  return G_SOURCE_REMOVE;
}

static void
resync_from_cache (Worker *w)
{
  Shared *s = w->shared;

  od_cache_flush (w->cache, NULL);
  g_mutex_lock (&s->lock);
  s->resync = FALSE;
  g_queue_clear_full (&s->pending, g_free);
  g_mutex_unlock (&s->lock);
  w->last = od_cache_get_applied_position (w->cache);
  g_mutex_lock (&s->lock);
  s->last_received = w->last;
  /* After a rebuild the old head means nothing (a server that lost its
   * history has a lower one); the next /v1/head says what is true. */
  s->known_head = w->last;
  s->head_learned_at = 0;
  g_mutex_unlock (&s->lock);
}

static void
worker_free (Worker *w)
{
  g_clear_object (&w->stream_session);
  g_clear_object (&w->page_session);
  g_clear_pointer (&w->root, json_node_unref);
  g_free (w->refused);
  g_clear_object (&w->tls_database);
  g_clear_pointer (&w->batch, g_ptr_array_unref);
  g_object_unref (w->cache);
  shared_unref (w->shared);
  g_weak_ref_clear (&w->engine_ref);
  g_main_context_unref (w->main_context);
  g_free (w->server_url);
  g_free (w->token);
  g_free (w);
}

static gpointer
sync_thread_main (gpointer data)
{
  Worker *w = data;
  guint backoff_exp = 0;
  guint write_backoff_exp = 0;
  gboolean lost_before = FALSE;
  gint64 write_failed_at = -1;

  w->stream_session = soup_session_new_with_options ("timeout", 0, "idle-timeout", 0,
                                                     "user-agent", "orderdesk-core/0.1", NULL);
  w->page_session = soup_session_new_with_options ("timeout", 30, "user-agent",
                                                   "orderdesk-core/0.1", NULL);
  if (w->tls_database != NULL)
    {
      soup_session_set_tls_database (w->stream_session, w->tls_database);
      soup_session_set_tls_database (w->page_session, w->tls_database);
    }
  w->batch = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  resync_from_cache (w);

  for (;;)
    {
      RunResult r;
      gboolean gap;

      w->connection_ok = FALSE;
      w->useful = FALSE;
      r = run_stream (w);
      gap = r == RESULT_GAP;
      /* Never skip: fill the hole from the page endpoint first. */
      if (gap)
        r = catch_up_pages (w);
      if (w->connection_ok && w->useful)
        backoff_exp = 0;
      if (gap && r == RESULT_STOPPED && !should_stop (w))
        continue;
      if (w->connection_ok && w->useful && r != RESULT_HISTORY_LOST)
        lost_before = FALSE;
      if (r == RESULT_HISTORY_LOST)
        {
          /* The first time, rebuild at once (a server restored from a
           * backup); a server whose log never holds the checkpoint made
           * by its own pages would otherwise have the cache rebuilt in
           * a loop with no pause. */
          if (lost_before)
            {
              guint base = MIN (BACKOFF_MAX_SEC, 1u << MIN (backoff_exp, 5));

              backoff_exp++;
              set_state (w, OD_LAG_STATE_CONNECTING,
                         "the server's event log does not follow on from its own pages");
              wait_backoff (w, (gint64) (base * g_random_double_range (0.8, 1.2)
                                         * G_USEC_PER_SEC));
              if (should_stop (w))
                break;
            }
          lost_before = TRUE;
          set_state (w, OD_LAG_STATE_CATCHING_UP,
                     "the server's event log does not contain the cache's checkpoint; "
                     "rebuilding the cache");
          od_core_invoke (w->main_context, G_PRIORITY_DEFAULT, start_rebuild_main,
                                      g_object_ref (w->cache), g_object_unref);
          /* The rebuild resets the checkpoint and asks for a resync. */
          g_mutex_lock (&w->shared->lock);
          while (!w->shared->stop && !w->shared->resync)
            g_cond_wait (&w->shared->cond, &w->shared->lock);
          g_mutex_unlock (&w->shared->lock);
          r = stopped_or (w, RESULT_RESYNC);
        }
      if (should_stop (w) || r == RESULT_STOPPED)
        {
          if (should_stop (w))
            break;
        }
      if (r == RESULT_RESYNC)
        {
          gboolean write_failed;

          g_mutex_lock (&w->shared->lock);
          write_failed = w->shared->write_failed;
          w->shared->write_failed = FALSE;
          if (write_failed)
            w->shared->resync = FALSE;
          g_mutex_unlock (&w->shared->lock);
          /* A full disk stays full for a while: refetching at once would
           * download the backlog again and again.  Back off (1, 2, 4, then
           * every 5 s: space may come back any moment and the operator
           * should not wait 30 s for it); the wait restarts from 1 s once
           * a write has gone through. */
          if (write_failed)
            {
              gint64 applied = od_cache_get_applied_position (w->cache);
              guint base;

              if (applied > write_failed_at)
                write_backoff_exp = 0;
              write_failed_at = applied;
              base = MIN (WRITE_BACKOFF_MAX_SEC, 1u << MIN (write_backoff_exp, 5));
              write_backoff_exp++;
              set_state (w, OD_LAG_STATE_RECONNECTING,
                         "the cache could not be written (is the disk full?); "
                         "the events will be fetched again");
              wait_backoff (w, (gint64) (base * g_random_double_range (0.8, 1.2)
                                         * G_USEC_PER_SEC));
              if (should_stop (w))
                break;
            }
          resync_from_cache (w);
          continue;
        }
      if (r == RESULT_AUTH)
        {
          wait_sign_in (w);
          if (should_stop (w))
            break;
          backoff_exp = 0;
          continue;
        }
      {
        guint base = MIN (BACKOFF_MAX_SEC, 1u << MIN (backoff_exp, 5));
        double jitter = g_random_double_range (0.8, 1.2);

        backoff_exp++;
        g_mutex_lock (&w->shared->lock);
        w->shared->attempts++;
        g_mutex_unlock (&w->shared->lock);
        wait_backoff (w, (gint64) (base * jitter * G_USEC_PER_SEC));
      }
      if (should_stop (w))
        break;
      g_mutex_lock (&w->shared->lock);
      if (w->shared->resync)
        {
          g_mutex_unlock (&w->shared->lock);
          resync_from_cache (w);
        }
      else
        g_mutex_unlock (&w->shared->lock);
    }
  flush_batch (w);
  set_state (w, OD_LAG_STATE_OFFLINE, NULL);
  worker_free (w);
  return NULL;
}

/* Called by the cache's writer when its checkpoint and our stream
 * disagree (a gap it saw, a failed commit, a rebuild). */
static void
on_cache_gap (gint64   applied,
              gint64   position,
              gint64   prev,
              gpointer user_data)
{
  Shared *s = user_data;

  g_mutex_lock (&s->lock);
  s->resync = TRUE;
  if (position == OD_CACHE_WRITE_FAILED)
    s->write_failed = TRUE;
  if (s->op_cancellable)
    g_cancellable_cancel (s->op_cancellable);
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
}

/* ------------------------------------------------------------------ */
/* Main thread                                                         */

static void
refresh_lag (OdSyncEngine *self)
{
  Shared *s = self->shared;
  gint64 applied = od_cache_get_applied_position (self->cache);
  gint64 now = g_get_real_time ();
  gint64 behind_since = 0;
  OdLagState state;
  gint64 known_head, last_contact, reconnect_at, last_event = 0;
  guint attempts, reconnect_in = 0;
  g_autofree char *last_error = NULL;
  GTlsCertificateFlags tls_errors;
  gboolean got_head;
  gint64 replay_head;
  OdSyncState st = { 0 };

  if (s == NULL)
    {
      od_lag_set_tls_errors (self->lag, 0);
      if (od_cache_get_sync_state (self->cache, &st, NULL))
        od_lag_update (self->lag, OD_LAG_STATE_OFFLINE, applied,
                       MAX (st.known_head, applied),
                       st.known_head > applied ? st.last_contact_at : 0,
                       st.last_contact_at, 0, 0, st.last_event_at, NULL);
      od_sync_state_clear (&st);
      return;
    }

  g_mutex_lock (&s->lock);
  while (!g_queue_is_empty (&s->pending)
         && ((PendingBatch *) g_queue_peek_head (&s->pending))->last_position <= applied)
    g_free (g_queue_pop_head (&s->pending));
  if (!g_queue_is_empty (&s->pending))
    behind_since = ((PendingBatch *) g_queue_peek_head (&s->pending))->oldest_usec;
  if (s->known_head > s->last_received && s->head_learned_at > 0)
    behind_since = behind_since ? MIN (behind_since, s->head_learned_at) : s->head_learned_at;
  state = s->state;
  known_head = MAX (s->known_head, applied);
  last_contact = s->last_contact;
  reconnect_at = s->reconnect_at;
  attempts = s->attempts;
  last_error = g_strdup (s->last_error);
  tls_errors = s->tls_errors;
  got_head = s->got_head;
  replay_head = s->replay_head;
  g_mutex_unlock (&s->lock);

  if (self->thread == NULL)
    state = OD_LAG_STATE_OFFLINE;
  else if (state == OD_LAG_STATE_CATCHING_UP && got_head && applied >= known_head)
    state = OD_LAG_STATE_LIVE;
  /* Not connected, and the network says the server is out of reach: that
   * is being offline, not a server that fails to answer.  The engine
   * keeps trying, and tries at once when the network changes. */
  else if (self->unreachable
           && (state == OD_LAG_STATE_RECONNECTING || state == OD_LAG_STATE_CONNECTING))
    state = OD_LAG_STATE_OFFLINE;
  if (state == OD_LAG_STATE_RECONNECTING && reconnect_at > 0)
    reconnect_in = (guint) MAX (0, (reconnect_at - g_get_monotonic_time () + G_USEC_PER_SEC - 1)
                                     / G_USEC_PER_SEC);
  if (applied >= known_head)
    behind_since = 0;
  else if (behind_since == 0)
    behind_since = now;

  /* Offline: what the cache remembers of the last contact. */
  if (last_contact == 0 || known_head == applied)
    {
      if (od_cache_get_sync_state (self->cache, &st, NULL))
        {
          if (last_contact == 0)
            last_contact = st.last_contact_at;
          known_head = MAX (known_head, st.known_head);
          last_event = st.last_event_at;
        }
      od_sync_state_clear (&st);
    }
  else if (od_cache_get_sync_state (self->cache, &st, NULL))
    {
      last_event = st.last_event_at;
      od_sync_state_clear (&st);
    }
  if (applied < known_head && behind_since == 0)
    behind_since = last_contact ? last_contact : now;

  od_lag_set_tls_errors (self->lag, tls_errors);
  od_lag_update (self->lag, state, applied, known_head, behind_since, last_contact,
                 reconnect_in, attempts, last_event, last_error);

  /* Never from within od_sync_engine_start (), even when the sync thread
   * already read the head: a caller that connects, starts and then runs
   * its loop would miss it (a quit before g_main_loop_run () is
   * forgotten).  The thread's update, already posted, says it from the
   * main loop. */
  if (!got_head)
    self->caught_up_emitted = FALSE;
  else if (applied >= replay_head && !self->caught_up_emitted && !self->starting)
    {
      self->caught_up_emitted = TRUE;
      g_signal_emit (self, signals[SIGNAL_CAUGHT_UP], 0, applied);
    }
}

typedef struct
{
  GWeakRef engine;
  Shared  *shared;
} UpdateData;

static gboolean
update_main (gpointer data)
{
  UpdateData *u = data;
  g_autoptr(OdSyncEngine) self = g_weak_ref_get (&u->engine);

  /* A refresh posted by a run that has stopped since: the lag is the
   * current run's (or the cache's, when stopped). */
  if (self == NULL || self->shared != u->shared)
    return G_SOURCE_REMOVE;
  g_mutex_lock (&u->shared->lock);
  u->shared->update_posted = FALSE;
  g_mutex_unlock (&u->shared->lock);
  refresh_lag (self);
  return G_SOURCE_REMOVE;
}

static void
update_data_free (UpdateData *u)
{
  g_weak_ref_clear (&u->engine);
  shared_unref (u->shared);
  g_free (u);
}

/* Coalesced: at most one refresh waits in the main loop at a time. */
static void
post_update (Worker *w)
{
  UpdateData *u;
  g_autoptr(OdSyncEngine) engine = NULL;

  g_mutex_lock (&w->shared->lock);
  if (w->shared->update_posted)
    {
      g_mutex_unlock (&w->shared->lock);
      return;
    }
  w->shared->update_posted = TRUE;
  g_mutex_unlock (&w->shared->lock);

  engine = g_weak_ref_get (&w->engine_ref);
  u = g_new0 (UpdateData, 1);
  g_weak_ref_init (&u->engine, engine);
  u->shared = g_atomic_rc_box_acquire (w->shared);
  od_core_invoke (w->main_context, G_PRIORITY_DEFAULT, update_main, u,
                              (GDestroyNotify) update_data_free);
}

static gboolean
tick (gpointer data)
{
  OdSyncEngine *self = data;
  Shared *s = self->shared;

  if (s != NULL)
    {
      g_mutex_lock (&s->lock);
      /* A silent connection (paused server, dead peer) is dropped so the
       * indicator and the backoff take over. */
      if (s->op_cancellable != NULL
          && g_get_monotonic_time () - s->watch_since > SILENCE_LIMIT_US)
        {
          g_free (s->last_error);
          s->last_error = g_strdup ("no message from the server for 12 s");
          g_cancellable_cancel (s->op_cancellable);
        }
      g_mutex_unlock (&s->lock);
    }
  refresh_lag (self);
  od_lag_tick (self->lag);
  return G_SOURCE_CONTINUE;
}

static void
on_applied (OdCache      *cache,
            gint64        position,
            OdSyncEngine *self)
{
  refresh_lag (self);
}

static void
od_sync_engine_dispose (GObject *object)
{
  OdSyncEngine *self = OD_SYNC_ENGINE (object);

  od_sync_engine_stop (self);
  if (self->cache != NULL)
    {
      g_clear_signal_handler (&self->applied_id, self->cache);
      od_cache_set_gap_func (self->cache, NULL, NULL);
    }
  g_clear_object (&self->cache);
  g_clear_object (&self->lag);
  g_clear_object (&self->tls_database);
  g_clear_object (&self->network);
  G_OBJECT_CLASS (od_sync_engine_parent_class)->dispose (object);
}

static void
od_sync_engine_finalize (GObject *object)
{
  OdSyncEngine *self = OD_SYNC_ENGINE (object);

  g_free (self->server_url);
  if (self->token)
    memset (self->token, 0, strlen (self->token));
  g_free (self->token);
  g_clear_pointer (&self->main_context, g_main_context_unref);
  G_OBJECT_CLASS (od_sync_engine_parent_class)->finalize (object);
}

static void
od_sync_engine_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  OdSyncEngine *self = OD_SYNC_ENGINE (object);

  switch (prop_id)
    {
    case PROP_CACHE:
      g_value_set_object (value, self->cache);
      break;
    case PROP_SERVER_URL:
      g_value_set_string (value, self->server_url);
      break;
    case PROP_TOKEN:
      g_value_set_string (value, NULL); /* never handed out */
      break;
    case PROP_LAG:
      g_value_set_object (value, self->lag);
      break;
    case PROP_RUNNING:
      g_value_set_boolean (value, self->thread != NULL);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_sync_engine_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  OdSyncEngine *self = OD_SYNC_ENGINE (object);

  switch (prop_id)
    {
    case PROP_CACHE:
      self->cache = g_value_dup_object (value);
      break;
    case PROP_SERVER_URL:
      od_sync_engine_set_server (self, g_value_get_string (value), self->token);
      break;
    case PROP_TOKEN:
      {
        g_autofree char *url = g_strdup (self->server_url);

        od_sync_engine_set_server (self, url, g_value_get_string (value));
      }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_sync_engine_class_init (OdSyncEngineClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_sync_engine_dispose;
  object_class->finalize = od_sync_engine_finalize;
  object_class->get_property = od_sync_engine_get_property;
  object_class->set_property = od_sync_engine_set_property;

  properties[PROP_CACHE] = g_param_spec_object ("cache", NULL, NULL, OD_TYPE_CACHE,
                                                G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY
                                                | G_PARAM_STATIC_STRINGS);
  properties[PROP_SERVER_URL] = g_param_spec_string ("server-url", NULL, NULL, NULL,
                                                     G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY
                                                     | G_PARAM_STATIC_STRINGS);
  properties[PROP_TOKEN] = g_param_spec_string ("token", NULL, NULL, NULL,
                                                G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY
                                                | G_PARAM_STATIC_STRINGS);
  properties[PROP_LAG] = g_param_spec_object ("lag", NULL, NULL, OD_TYPE_LAG,
                                              G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  properties[PROP_RUNNING] = g_param_spec_boolean ("running", NULL, NULL, FALSE,
                                                   G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY
                                                   | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[SIGNAL_CAUGHT_UP] = g_signal_new ("caught-up", G_TYPE_FROM_CLASS (klass),
                                            G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                            1, G_TYPE_INT64);
}

static void
od_sync_engine_init (OdSyncEngine *self)
{
  self->lag = od_lag_new ();
  self->batch_size = 2000;
  self->main_context = g_main_context_ref_thread_default ();
}

OdSyncEngine *
od_sync_engine_new (OdCache    *cache,
                    const char *server_url,
                    const char *token)
{
  OdSyncEngine *self;

  g_return_val_if_fail (OD_IS_CACHE (cache), NULL);
  self = g_object_new (OD_TYPE_SYNC_ENGINE, "cache", cache, NULL);
  self->server_url = g_strdup (server_url);
  self->token = g_strdup (token);
  od_lag_set_server_url (self->lag, server_url);
  self->applied_id = g_signal_connect (cache, "applied", G_CALLBACK (on_applied), self);
  refresh_lag (self);
  return self;
}

OdLag *
od_sync_engine_get_lag (OdSyncEngine *self)
{
  return self->lag;
}

OdCache *
od_sync_engine_get_cache (OdSyncEngine *self)
{
  return self->cache;
}

const char *
od_sync_engine_get_server_url (OdSyncEngine *self)
{
  return self->server_url;
}

void
od_sync_engine_set_server (OdSyncEngine *self,
                           const char   *server_url,
                           const char   *token)
{
  gboolean was_running = self->thread != NULL;
  g_autofree char *url = g_strdup (server_url);
  g_autofree char *tok = g_strdup (token);

  if (g_strcmp0 (url, self->server_url) == 0 && g_strcmp0 (tok, self->token) == 0)
    return;
  if (was_running)
    od_sync_engine_stop (self);
  if (g_strcmp0 (url, self->server_url) != 0)
    {
      g_free (self->server_url);
      self->server_url = g_steal_pointer (&url);
      od_lag_set_server_url (self->lag, self->server_url);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SERVER_URL]);
    }
  g_free (self->token);
  self->token = g_steal_pointer (&tok);
  if (was_running)
    od_sync_engine_start (self);
}

void
od_sync_engine_set_tls_database (OdSyncEngine *self,
                                 GTlsDatabase *database)
{
  gboolean was_running = self->thread != NULL;

  g_return_if_fail (OD_IS_SYNC_ENGINE (self));
  g_return_if_fail (database == NULL || G_IS_TLS_DATABASE (database));

  if (self->tls_database == database)
    return;
  if (was_running)
    od_sync_engine_stop (self);
  g_set_object (&self->tls_database, database);
  if (was_running)
    od_sync_engine_start (self);
}

static void
reach_done (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(OdSyncEngine) self = user_data;
  g_autoptr(GError) error = NULL;
  gboolean reachable;
  gboolean was_unreachable = self->unreachable;
  Shared *s = self->shared;

  reachable = g_network_monitor_can_reach_finish (G_NETWORK_MONITOR (source), result, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  /* A name that does not resolve on a working network is the server's
   * problem (the lag details say which), not being offline. */
  self->unreachable = !reachable
                      && (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NETWORK_UNREACHABLE)
                          || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_HOST_UNREACHABLE)
                          || !g_network_monitor_get_network_available (G_NETWORK_MONITOR (source)));
  if (s != NULL && !self->unreachable)
    {
      gboolean waiting;

      g_mutex_lock (&s->lock);
      waiting = s->state == OD_LAG_STATE_RECONNECTING;
      g_mutex_unlock (&s->lock);
      /* The network came back or changed (a VPN, another Wi-Fi): no
       * reason to wait out the backoff. */
      if (waiting)
        od_sync_engine_reconnect_now (self);
    }
  if (was_unreachable != self->unreachable)
    g_debug ("server %s", self->unreachable ? "out of the network's reach" : "reachable");
  refresh_lag (self);
}

static void
check_reachable (OdSyncEngine *self)
{
  g_autoptr(GSocketConnectable) address = NULL;

  if (self->reach_cancellable != NULL)
    g_cancellable_cancel (self->reach_cancellable);
  g_clear_object (&self->reach_cancellable);
  if (self->network == NULL || self->server_url == NULL)
    return;
  address = g_network_address_parse_uri (self->server_url, 443, NULL);
  if (address == NULL)
    return;
  self->reach_cancellable = g_cancellable_new ();
  g_network_monitor_can_reach_async (self->network, address, self->reach_cancellable,
                                     reach_done, g_object_ref (self));
}

static void
on_network_changed (GNetworkMonitor *monitor,
                    gboolean         available,
                    OdSyncEngine    *self)
{
  check_reachable (self);
}

void
od_sync_engine_set_network_monitor (OdSyncEngine    *self,
                                    GNetworkMonitor *monitor)
{
  gboolean was_running;

  g_return_if_fail (OD_IS_SYNC_ENGINE (self));

  was_running = self->thread != NULL;
  od_sync_engine_stop (self);
  if (self->network != NULL)
    g_clear_signal_handler (&self->network_changed_id, self->network);
  g_set_object (&self->network, monitor);
  if (was_running)
    od_sync_engine_start (self);
}

void
od_sync_engine_start (OdSyncEngine *self)
{
  Worker *w;
  Shared *s;

  if (self->thread != NULL || self->server_url == NULL || self->cache == NULL)
    return;

  s = shared_new ();
  self->shared = s;
  self->caught_up_emitted = FALSE;

  w = g_new0 (Worker, 1);
  w->cache = g_object_ref (self->cache);
  w->shared = g_atomic_rc_box_acquire (s);
  w->server_url = g_strdup (self->server_url);
  while (g_str_has_suffix (w->server_url, "/"))
    w->server_url[strlen (w->server_url) - 1] = '\0';
  w->token = g_strdup (self->token);
  w->tls_database = self->tls_database ? g_object_ref (self->tls_database) : NULL;
  w->batch_size = self->batch_size;
  w->main_context = g_main_context_ref (self->main_context);
  g_weak_ref_init (&w->engine_ref, self);

  od_cache_set_gap_func (self->cache, on_cache_gap, s);
  if (self->network == NULL)
    self->network = g_object_ref (g_network_monitor_get_default ());
  if (self->network_changed_id == 0)
    self->network_changed_id = g_signal_connect (self->network, "network-changed",
                                                  G_CALLBACK (on_network_changed), self);
  self->unreachable = FALSE;
  check_reachable (self);
  self->thread = g_thread_new ("od-sync", sync_thread_main, w);
#ifdef OD_TEST_HOOKS
  /* For tests only (built with -Dtest_hooks=true, never in a release): a
   * main thread preempted here until the sync thread knows the head, so
   * that refresh_lag () below finds a cache already caught up. */
  if (g_getenv ("OD_TEST_SYNC_START_STALL") != NULL)
    {
      gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
      gboolean got_head = FALSE;

      while (!got_head && g_get_monotonic_time () < deadline)
        {
          g_mutex_lock (&s->lock);
          got_head = s->got_head;
          g_mutex_unlock (&s->lock);
          if (!got_head)
            g_usleep (10 * 1000);
        }
    }
#endif
  self->tick_id = g_timeout_add_seconds (1, tick, self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
  self->starting = TRUE;
  refresh_lag (self);
  self->starting = FALSE;
}

void
od_sync_engine_stop (OdSyncEngine *self)
{
  Shared *s = self->shared;

  if (self->thread == NULL)
    return;
  g_mutex_lock (&s->lock);
  s->stop = TRUE;
  if (s->op_cancellable)
    g_cancellable_cancel (s->op_cancellable);
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
  g_thread_join (self->thread);
  self->thread = NULL;
  od_cache_set_gap_func (self->cache, NULL, NULL);
  if (self->reach_cancellable != NULL)
    g_cancellable_cancel (self->reach_cancellable);
  g_clear_object (&self->reach_cancellable);
  if (self->network != NULL)
    g_clear_signal_handler (&self->network_changed_id, self->network);
  self->unreachable = FALSE;
  g_clear_handle_id (&self->tick_id, g_source_remove);
  refresh_lag (self);
  /* The thread is gone and the gap function unset: only refreshes still
   * queued hold the run's state now, and they see it is not current. */
  g_mutex_lock (&s->lock);
  self->last_stats = s->stats;
  g_mutex_unlock (&s->lock);
  self->shared = NULL;
  shared_unref (s);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RUNNING]);
}

gboolean
od_sync_engine_get_running (OdSyncEngine *self)
{
  return self->thread != NULL;
}

void
od_sync_engine_reconnect_now (OdSyncEngine *self)
{
  Shared *s = self->shared;

  if (s == NULL)
    return;
  g_mutex_lock (&s->lock);
  s->reconnect_now = TRUE;
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
}

void
od_sync_engine_set_batch_size (OdSyncEngine *self,
                               guint         n)
{
  self->batch_size = MAX (n, 1);
}

void
od_sync_engine_get_stats (OdSyncEngine *self,
                          OdSyncStats  *stats)
{
  Shared *s = self->shared;

  if (s == NULL)
    {
      *stats = self->last_stats;
      return;
    }
  g_mutex_lock (&s->lock);
  *stats = s->stats;
  g_mutex_unlock (&s->lock);
}

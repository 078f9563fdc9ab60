/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The sync engine against a test stream server of our own (libsoup, in
 * this process) that repeats, replays and reorders events and leaves a
 * real gap: repeats and replays change nothing, and a gap is filled from
 * the page endpoint, never skipped. */
#include "od-core.h"
#include "od-cache-private.h" /* od_cache_get_db () */
#include "od-test-events.h"
#include "od-test-process.h" /* od_test_process_rmdir () */

#include <libsoup/soup.h>
#include <string.h>

typedef enum
{
  PLAN_DUPLICATES, /* first stream: events, repeats, replays, then a head frame */
  PLAN_GAP,        /* first stream: events, then events after a hole */
  PLAN_REORDER,    /* first stream: events, then n+2 before n+1 */
  PLAN_STUCK,      /* first stream: events, then only heartbeats below the head */
  PLAN_NOT_STRICT, /* first stream: one event is JSON only a lenient parser takes */
  PLAN_HEAD_ABOVE, /* head frames at 1000, pages empty: a contract break, every time */
  PLAN_BIG_FRAME,  /* a stream frame of data lines without end */
  PLAN_BIG_PROBLEM,/* the stream answers 500 with a problem+json body without end */
  PLAN_BIG_HEAD,   /* /v1/head without end */
  PLAN_BIG_PAGE,   /* a gap in the stream, then a page without end */
  PLAN_CONTRACT,   /* events that break the protocol, all on the stream */
  PLAN_CONTRACT_PAGES, /* the same, the bad ones through the pages (strict parser) */
  PLAN_FOREIGN_LOG,/* every answer starts with an event whose prev is not 0: history lost, always */
  PLAN_BIG_ANSWER, /* POST /v1/commands answered with a body without end */
} Plan;

/* What a hostile server sends at most of one endless answer (the client
 * must give up long before). */
#define ENDLESS_CAP   (300 * 1024 * 1024)
#define ENDLESS_BLOCK (256 * 1024)

typedef struct
{
  SoupServer *server;
  char       *url;
  OdTestLog  *log;
  gint64      served_head;  /* what the log holds (head of /v1/head) */
  Plan        plan;
  guint       streams;
  guint       pages;
  guint       requests;
  GPtrArray  *open_msgs;
} StreamServer;

typedef struct
{
  char  *block;
  gsize  sent;
} Endless;

static void
endless_free (Endless *e)
{
  g_free (e->block);
  g_free (e);
}

static void
endless_more (SoupServerMessage *msg,
              Endless           *e)
{
  SoupMessageBody *body = soup_server_message_get_response_body (msg);

  if (e->sent >= ENDLESS_CAP)
    soup_message_body_complete (body);
  else
    {
      soup_message_body_append (body, SOUP_MEMORY_STATIC, e->block, ENDLESS_BLOCK);
      e->sent += ENDLESS_BLOCK;
    }
  soup_server_message_unpause (msg);
}

/* Answers `prefix` and then `filler` over and over, a block at a time as
 * the socket takes it (up to ENDLESS_CAP). */
static void
answer_endless (SoupServerMessage *msg,
                guint              status,
                const char        *content_type,
                const char        *prefix,
                const char        *filler)
{
  Endless *e = g_new0 (Endless, 1);
  SoupMessageBody *body = soup_server_message_get_response_body (msg);
  gsize flen = strlen (filler);

  e->block = g_malloc (ENDLESS_BLOCK);
  for (gsize i = 0; i < ENDLESS_BLOCK; i++)
    e->block[i] = filler[i % flen];
  soup_server_message_set_status (msg, status, NULL);
  soup_message_headers_set_content_type (soup_server_message_get_response_headers (msg),
                                         content_type, NULL);
  soup_message_headers_set_encoding (soup_server_message_get_response_headers (msg),
                                     SOUP_ENCODING_CHUNKED);
  soup_message_body_set_accumulate (body, FALSE);
  soup_message_body_append (body, SOUP_MEMORY_COPY, prefix, strlen (prefix));
  g_object_set_data_full (G_OBJECT (msg), "endless", e, (GDestroyNotify) endless_free);
  g_signal_connect (msg, "wrote-chunk", G_CALLBACK (endless_more), e);
}

static void
append_range (GString   *out,
              OdTestLog *log,
              gint64     from,
              gint64     to)
{
  /* Positions are contiguous from 1 in a test log. */
  for (gint64 p = from; p <= to && p <= (gint64) log->events->len; p++)
    od_event_append_sse (out, g_ptr_array_index (log->events, p - 1));
}

static void
append_head (GString *out,
             gint64   head)
{
  g_autofree char *now = od_timestamp_now ();

  g_string_append_printf (out, "event: head\ndata: {\"head\":%" G_GINT64_FORMAT ",\"server_time\":\"%s\"}\n\n",
                          head, now);
}

/* An event at 6 whose prev (5) no reader starting from 0 has. */
static void
append_foreign (GString *out,
                gboolean sse)
{
  g_autoptr(OdEvent) ev = od_test_event_new (6, 5, "01900000-0000-7000-8000-0000000000f0", 1,
                                             "OrderCreated", "{}");

  if (sse)
    od_event_append_sse (out, ev);
  else
    od_event_append_json (out, ev);
}

static void
handle_stream (StreamServer      *s,
               SoupServerMessage *msg,
               gint64             after)
{
  GString *out = g_string_new ("retry: 2000\r\n\r\n");
  SoupMessageBody *body;

  s->streams++;
  if (s->plan == PLAN_BIG_FRAME)
    {
      /* 1 KiB lines, each under any line bound; no blank line ever. */
      g_autofree char *line = g_strdup_printf ("data: %01017d\n", 0);

      g_string_free (out, TRUE);
      answer_endless (msg, 200, "text/event-stream", "retry: 2000\n\n", line);
      return;
    }
  if (s->plan == PLAN_BIG_PROBLEM)
    {
      g_string_free (out, TRUE);
      answer_endless (msg, 500, "application/problem+json",
                      "{\"type\":\"about:blank\",\"title\":\"x\",\"detail\":\"", "x");
      return;
    }
  if (s->plan == PLAN_FOREIGN_LOG)
    append_foreign (out, TRUE);
  else if (s->plan == PLAN_HEAD_ABOVE)
    {
      /* The stream stops short of its own head every time. */
      append_head (out, s->served_head);
      append_head (out, s->served_head);
    }
  else if (s->streams == 1)
    {
      switch (s->plan)
        {
        case PLAN_DUPLICATES:
          append_range (out, s->log, 1, 100);
          append_range (out, s->log, 50, 100);  /* repeated */
          append_range (out, s->log, 1, 20);    /* replayed from the start */
          append_range (out, s->log, 100, 100); /* the last one again */
          append_head (out, 100);
          break;
        case PLAN_GAP:
          append_range (out, s->log, 1, 50);
          append_range (out, s->log, 61, 80);   /* 51..60 never sent */
          break;
        case PLAN_STUCK:
          append_range (out, s->log, 1, 30);
          append_head (out, s->served_head);
          append_head (out, s->served_head);
          break;
        case PLAN_REORDER:
          append_range (out, s->log, 1, 40);
          append_range (out, s->log, 42, 42);
          append_range (out, s->log, 41, 41);
          append_range (out, s->log, 43, 60);
          break;
        case PLAN_NOT_STRICT:
          {
            g_autoptr(GString) bad = g_string_new (NULL);

            append_range (out, s->log, 1, 30);
            /* A lone surrogate: json-glib takes it and makes a string
             * that is not UTF-8; the strict check refuses the frame. */
            append_range (bad, s->log, 31, 31);
            g_assert_cmpint (g_string_replace (bad, "\"actor\":\"test\"",
                                               "\"actor\":\"te\\udc00st\"", 1), ==, 1);
            g_string_append (out, bad->str);
            append_range (out, s->log, 32, s->served_head);
          }
          break;
        case PLAN_BIG_PAGE:
          append_range (out, s->log, 1, 30);
          append_range (out, s->log, 40, 40);   /* a gap: the pages fill it */
          break;
        case PLAN_CONTRACT:
          append_range (out, s->log, 1, s->served_head);
          append_head (out, s->served_head);
          break;
        case PLAN_CONTRACT_PAGES:
          /* The fast parser takes the stream's frames, the strict one
           * the pages': both must see the same breaks. */
          append_range (out, s->log, 1, s->served_head - 9);
          append_range (out, s->log, s->served_head, s->served_head);
          break;
        default:
          g_assert_not_reached ();
        }
    }
  else
    {
      /* Later connections are honest: resume after Last-Event-ID. */
      append_range (out, s->log, after + 1, s->served_head);
      append_head (out, s->served_head);
    }

  soup_server_message_set_status (msg, 200, NULL);
  soup_message_headers_set_content_type (soup_server_message_get_response_headers (msg),
                                         "text/event-stream", NULL);
  soup_message_headers_set_encoding (soup_server_message_get_response_headers (msg),
                                     SOUP_ENCODING_CHUNKED);
  body = soup_server_message_get_response_body (msg);
  soup_message_body_set_accumulate (body, FALSE);
  /* Mixed line ends are legal SSE: send this stream with CRLF. */
  {
    GString *crlf = g_string_sized_new (out->len * 11 / 10);

    for (gsize i = 0; i < out->len; i++)
      {
        if (out->str[i] == '\n' && (i == 0 || out->str[i - 1] != '\r'))
          g_string_append_c (crlf, '\r');
        g_string_append_c (crlf, out->str[i]);
      }
    g_string_free (out, TRUE);
    out = crlf;
  }
  {
    gsize len = out->len;

    soup_message_body_append_take (body, (guchar *) g_string_free (out, FALSE), len);
  }
  /* The body is never completed: the stream stays open. */
  g_ptr_array_add (s->open_msgs, g_object_ref (msg));
}

static void
handle_events (StreamServer      *s,
               SoupServerMessage *msg,
               gint64             after,
               gint64             limit)
{
  GString *out;
  gint64 n = 0;

  s->pages++;
  if (s->plan == PLAN_BIG_PAGE)
    {
      answer_endless (msg, 200, "application/json", "{\"events\":[", "{\"position\":1},");
      return;
    }
  out = g_string_new ("{\"events\":[");
  if (s->plan == PLAN_FOREIGN_LOG)
    {
      append_foreign (out, FALSE);
      g_string_append (out, "],\"head\":6}");
      soup_server_message_set_status (msg, 200, NULL);
      soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, out->str,
                                        out->len);
      g_string_free (out, TRUE);
      return;
    }
  if (s->plan == PLAN_HEAD_ABOVE)
    after = s->served_head;
  for (gint64 p = after + 1; p <= s->served_head && n < limit; p++, n++)
    {
      if (n > 0)
        g_string_append_c (out, ',');
      od_event_append_json (out, g_ptr_array_index (s->log->events, p - 1));
    }
  g_string_append_printf (out, "],\"head\":%" G_GINT64_FORMAT "}", s->served_head);
  soup_server_message_set_status (msg, 200, NULL);
  {
    gsize len = out->len;

    soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE,
                                      g_string_free (out, FALSE), len);
  }
}

static gint64
query_int (GHashTable *query,
           const char *name,
           gint64      def)
{
  const char *v = query ? g_hash_table_lookup (query, name) : NULL;

  return v ? g_ascii_strtoll (v, NULL, 10) : def;
}

static void
handler (SoupServer        *server,
         SoupServerMessage *msg,
         const char        *path,
         GHashTable        *query,
         gpointer           data)
{
  StreamServer *s = data;

  s->requests++;
  if (g_str_equal (path, "/v1/commands") && s->plan == PLAN_BIG_ANSWER)
    answer_endless (msg, 200, "application/json", "{\"order_id\":\"", "x");
  else if (g_str_equal (path, "/v1/head") && s->plan == PLAN_BIG_HEAD)
    answer_endless (msg, 200, "application/json", "{\"head\":1", " ");
  else if (g_str_equal (path, "/v1/head"))
    {
      g_autofree char *body = g_strdup_printf ("{\"head\":%" G_GINT64_FORMAT ",\"server_time\":\"2026-11-26T00:00:00.000Z\"}",
                                               s->served_head);

      soup_server_message_set_status (msg, 200, NULL);
      soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, body,
                                        strlen (body));
    }
  else if (g_str_equal (path, "/v1/events/stream"))
    {
      const char *last = soup_message_headers_get_one (soup_server_message_get_request_headers (msg),
                                                       "Last-Event-ID");

      handle_stream (s, msg, last ? g_ascii_strtoll (last, NULL, 10)
                                  : query_int (query, "after", 0));
    }
  else if (g_str_equal (path, "/v1/events"))
    handle_events (s, msg, query_int (query, "after", 0), MIN (query_int (query, "limit", 1000), 10000));
  else
    soup_server_message_set_status (msg, 404, NULL);
}

static StreamServer *
stream_server_new (Plan plan)
{
  StreamServer *s = g_new0 (StreamServer, 1);
  g_autoptr(GError) error = NULL;
  GSList *uris;

  s->plan = plan;
  s->log = od_test_log_new (60, 99);
  s->served_head = plan == PLAN_DUPLICATES   ? 100
                  : plan == PLAN_HEAD_ABOVE ? 1000
                  : plan == PLAN_FOREIGN_LOG ? 6
                                            : s->log->head;
  s->open_msgs = g_ptr_array_new_with_free_func (g_object_unref);
  s->server = soup_server_new (NULL, NULL);
  soup_server_add_handler (s->server, NULL, handler, s, NULL);
  g_assert_true (soup_server_listen_local (s->server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error));
  g_assert_no_error (error);
  uris = soup_server_get_uris (s->server);
  s->url = g_uri_to_string (uris->data);
  while (g_str_has_suffix (s->url, "/"))
    s->url[strlen (s->url) - 1] = '\0';
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  return s;
}

/* Appends to the server's log, after its last event. */
static void
log_append (StreamServer *s,
            const char   *order_id,
            gint64        version,
            const char   *type,
            const char   *data)
{
  s->log->head++;
  g_ptr_array_add (s->log->events,
                   od_test_event_new (s->log->head, s->log->head - 1, order_id, version, type,
                                      data));
  s->served_head = s->log->head;
}

static void
stream_server_free (StreamServer *s)
{
  soup_server_disconnect (s->server);
  g_ptr_array_unref (s->open_msgs);
  g_object_unref (s->server);
  od_test_log_free (s->log);
  g_free (s->url);
  g_free (s);
}

static gboolean
timeout_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
settle (OdCache *cache,
        gint64   target,
        guint    seconds)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add_seconds (seconds, timeout_cb, &timed_out);

  while (od_cache_get_applied_position (cache) < target && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  /* And a little more, for anything wrong that would still arrive. */
  if (!timed_out)
    {
      gboolean done = FALSE;

      g_source_remove (id);
      g_timeout_add (300, timeout_cb, &done);
      while (!done)
        g_main_context_iteration (NULL, TRUE);
    }
}

static void
assert_cache_is_prefix (OdCache   *cache,
                        OdTestLog *log,
                        gint64     upto)
{
  g_autoptr(GPtrArray) prefix = g_ptr_array_new ();
  g_autoptr(GHashTable) fold = NULL;
  g_autofree char *why = NULL;

  for (gint64 i = 0; i < upto; i++)
    g_ptr_array_add (prefix, g_ptr_array_index (log->events, i));
  fold = od_test_fold (prefix);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, upto);
  if (!od_test_cache_equals_fold (cache, fold, &why))
    g_error ("%s", why);
}

static OdCache *
new_cache (char **dir)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  OdCache *cache;

  *dir = g_dir_make_tmp ("od-test-stream-XXXXXX", NULL);
  path = g_build_filename (*dir, "c.sqlite", NULL);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  return cache;
}

/* The whole directory: the cache leaves its -wal, -shm and .lock files
 * beside it. */
static void
rm_cache (OdCache *cache,
          char    *dir)
{
  g_object_unref (cache);
  od_test_process_rmdir (dir);
  g_free (dir);
}

static void
test_duplicates_have_no_effect (void)
{
  StreamServer *s = stream_server_new (PLAN_DUPLICATES);
  char *dir;
  OdCache *cache = new_cache (&dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, s->url, "t");
  OdSyncStats stats;

  od_sync_engine_start (sync);
  settle (cache, 100, 10);
  od_sync_engine_get_stats (sync, &stats);
  assert_cache_is_prefix (cache, s->log, 100);
  g_assert_cmpuint (stats.duplicates_skipped, ==, 51 + 20 + 1);
  g_assert_cmpuint (stats.gaps, ==, 0);
  g_assert_cmpuint (s->pages, ==, 0);
  g_assert_cmpuint (s->streams, ==, 1);
  g_assert_cmpint (od_lag_get_state (od_sync_engine_get_lag (sync)), ==, OD_LAG_STATE_LIVE);
  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  rm_cache (cache, dir);
  stream_server_free (s);
}

static void
test_gap_uses_pages (Plan plan)
{
  StreamServer *s = stream_server_new (plan);
  char *dir;
  OdCache *cache = new_cache (&dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, s->url, "t");
  OdSyncStats stats;

  od_sync_engine_start (sync);
  settle (cache, s->log->head, 10);
  od_sync_engine_get_stats (sync, &stats);
  assert_cache_is_prefix (cache, s->log, s->log->head);
  g_assert_cmpuint (stats.gaps, >=, 1);
  g_assert_cmpuint (s->pages, >=, 1);
  g_assert_cmpuint (s->streams, >=, 2);
  {
    sqlite3_stmt *st = NULL;

    /* Nothing after the hole was applied before the hole was filled:
     * positions are exactly 1..head. */
    sqlite3_prepare_v2 (od_cache_get_db (cache),
                        "SELECT count(*), min(position), max(position) FROM order_events", -1, &st,
                        NULL);
    g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
    g_assert_cmpint (sqlite3_column_int64 (st, 0), ==, s->log->head);
    g_assert_cmpint (sqlite3_column_int64 (st, 1), ==, 1);
    g_assert_cmpint (sqlite3_column_int64 (st, 2), ==, s->log->head);
    sqlite3_finalize (st);
  }
  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  rm_cache (cache, dir);
  stream_server_free (s);
}

/* Each event's data is stored exactly as the server sent it, whether it
 * came through the stream (here the strict parser's path: the fast one
 * takes no spaces or escapes) or a page: verification hashes those bytes
 * (GET /v1/events/digest), so a cache that re-serialised them could
 * never agree with its server. */
static void
test_data_kept_as_sent (void)
{
  StreamServer *s = stream_server_new (PLAN_GAP);
  char *dir;
  OdCache *cache = new_cache (&dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, s->url, "t");
  sqlite3_stmt *st = NULL;
  guint n = 0;

  for (guint i = 0; i < s->log->events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (s->log->events, i);
      char *spaced = g_strdup_printf ("{ \"note\" : \"caf\\u00e9 \\/\" %s%s",
                                      ev->data[1] == '}' ? "" : ",", ev->data + 1);

      g_free (ev->data);
      ev->data = spaced;
    }
  od_sync_engine_start (sync);
  settle (cache, s->log->head, 10);
  g_assert_cmpuint (s->pages, >=, 1);
  sqlite3_prepare_v2 (od_cache_get_db (cache), "SELECT position, data FROM order_events ORDER BY position",
                      -1, &st, NULL);
  while (sqlite3_step (st) == SQLITE_ROW)
    {
      OdEvent *ev = g_ptr_array_index (s->log->events, sqlite3_column_int64 (st, 0) - 1);

      g_assert_cmpint (ev->position, ==, sqlite3_column_int64 (st, 0));
      g_assert_cmpstr ((const char *) sqlite3_column_text (st, 1), ==, ev->data);
      n++;
    }
  sqlite3_finalize (st);
  g_assert_cmpuint (n, ==, s->log->head);
  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  rm_cache (cache, dir);
  stream_server_free (s);
}

static void
test_real_gap (void)
{
  test_gap_uses_pages (PLAN_GAP);
}

static void
test_reordered (void)
{
  test_gap_uses_pages (PLAN_REORDER);
}

static void
test_stuck (void)
{
  test_gap_uses_pages (PLAN_STUCK);
}

/* Frames are read strictly (RFC 8259): a lenient-only event is refused,
 * not applied; the hole it leaves is filled from the pages. */
static void
test_not_strict_refused (void)
{
  StreamServer *s = stream_server_new (PLAN_NOT_STRICT);
  char *dir;
  OdCache *cache = new_cache (&dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, s->url, "t");
  sqlite3_stmt *st = NULL;
  OdSyncStats stats;

  od_sync_engine_start (sync);
  settle (cache, s->log->head, 10);
  od_sync_engine_get_stats (sync, &stats);
  assert_cache_is_prefix (cache, s->log, s->log->head);
  g_assert_cmpuint (stats.gaps, >=, 1);
  g_assert_cmpuint (s->pages, >=, 1);
  sqlite3_prepare_v2 (od_cache_get_db (cache),
                      "SELECT count(*) FROM order_events WHERE actor <> 'test'", -1, &st, NULL);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
  g_assert_cmpint (sqlite3_column_int64 (st, 0), ==, 0);
  sqlite3_finalize (st);
  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  rm_cache (cache, dir);
  stream_server_free (s);
}

static gint64
rss_kib (void)
{
  g_autofree char *status = NULL;
  const char *line;

  g_assert_true (g_file_get_contents ("/proc/self/status", &status, NULL, NULL));
  line = strstr (status, "\nVmRSS:");
  g_assert_nonnull (line);
  return g_ascii_strtoll (line + strlen ("\nVmRSS:"), NULL, 10);
}

typedef struct
{
  gint64 max_rss;
} RssWatch;

/* AddressSanitizer keeps freed blocks in its quarantine (256 MiB by
 * default), so resident memory says nothing about our bounds there: the
 * plain build checks them, the sanitizer build checks everything else. */
#if defined(__SANITIZE_ADDRESS__)
#define OD_RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OD_RSS_MEANINGFUL 0
#endif
#endif
#ifndef OD_RSS_MEANINGFUL
#define OD_RSS_MEANINGFUL 1
#endif

static void
assert_rss_growth_below (gint64 grown_kib,
                         gint64 bound_kib)
{
  if (!OD_RSS_MEANINGFUL)
    {
      g_test_message ("AddressSanitizer build: resident memory grew %" G_GINT64_FORMAT
                      " KiB, not compared with the bound of %" G_GINT64_FORMAT " KiB",
                      grown_kib, bound_kib);
      return;
    }
  g_assert_cmpint (grown_kib, <, bound_kib);
}

static gboolean
sample_rss (gpointer data)
{
  RssWatch *r = data;

  r->max_rss = MAX (r->max_rss, rss_kib ());
  return G_SOURCE_CONTINUE;
}

/* A server that sends without end (a frame, an error body, a head, a
 * page): the engine gives up with an error that says what was too big,
 * and its memory stays bounded (400 MB sent made 414-524 MB resident). */
static void
test_endless (gconstpointer data)
{
  Plan plan = GPOINTER_TO_INT (data);
  StreamServer *s = stream_server_new (plan);
  char *dir;
  OdCache *cache = new_cache (&dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, s->url, "t");
  OdLag *lag = od_sync_engine_get_lag (sync);
  RssWatch watch = { 0 };
  gint64 base = rss_kib ();
  gboolean timed_out = FALSE;
  guint sampler = g_timeout_add (20, sample_rss, &watch);
  guint id = g_timeout_add_seconds (30, timeout_cb, &timed_out);
  const char *what = plan == PLAN_BIG_FRAME     ? "stream frame larger than 1 MiB"
                     : plan == PLAN_BIG_PROBLEM ? "error body is larger than 64 KiB"
                     : plan == PLAN_BIG_HEAD    ? "head is larger than 64 KiB"
                                                : "page of events is larger than 64 MiB";

  od_sync_engine_start (sync);
  while (!timed_out && (od_lag_get_last_error (lag) == NULL
                        || strstr (od_lag_get_last_error (lag), what) == NULL))
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (sampler);
  sample_rss (&watch);
  g_test_message ("%s: resident %" G_GINT64_FORMAT " KiB before, at most %" G_GINT64_FORMAT
                  " KiB", what, base, watch.max_rss);
  /* The page's bound is 64 MiB; everything else is far smaller. */
  assert_rss_growth_below (watch.max_rss - base, (plan == PLAN_BIG_PAGE ? 100 : 24) * 1024);
  g_assert_false (timed_out);
  g_source_remove (id);
  g_assert_cmpint (od_lag_get_state (lag), !=, OD_LAG_STATE_LIVE);
  /* Nothing after the hole was applied. */
  g_assert_cmpint (od_cache_get_applied_position (cache), <=, 30);
  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  rm_cache (cache, dir);
  stream_server_free (s);
}

/* The server's head frames stay above what its pages serve (the pages
 * come back empty): the engine backs off like after any other failure
 * (it made 1,961 requests in 10 s), and does not say it is live. */
static void
test_head_above_pages_backs_off (void)
{
  StreamServer *s = stream_server_new (PLAN_HEAD_ABOVE);
  char *dir;
  OdCache *cache = new_cache (&dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, s->url, "t");
  OdLag *lag = od_sync_engine_get_lag (sync);
  gboolean done = FALSE;
  OdLagState state;

  od_sync_engine_start (sync);
  g_timeout_add_seconds (5, timeout_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
  state = od_lag_get_state (lag);
  g_test_message ("%u requests (%u pages, %u streams) in 5 s; state %d, error: %s", s->requests,
                  s->pages, s->streams, state, od_lag_get_last_error (lag));
  /* Head, stream, page at 0, ~1, ~3 s (1 s doubling, ±20 %). */
  g_assert_cmpuint (s->requests, <=, 10);
  g_assert_cmpuint (s->pages, >=, 1);
  g_assert_true (state == OD_LAG_STATE_RECONNECTING || state == OD_LAG_STATE_CONNECTING);
  g_assert_nonnull (od_lag_get_last_error (lag));
  g_assert_nonnull (strstr (od_lag_get_last_error (lag), "its pages end at 0"));
  g_assert_cmpint (od_lag_get_known_head (lag), ==, 1000);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, 0);
  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  rm_cache (cache, dir);
  stream_server_free (s);
}

/* orderdeskctl on the cache only; returns what it printed. */
static char *
run_ctl (OdCache    *cache,
         const char *arg1,
         const char *arg2)
{
  g_autofree char *ctl = g_build_filename (g_getenv ("OD_BUILD_DIR"), "src", "ctl", "orderdeskctl",
                                           NULL);
  const char *argv[] = { ctl, "-q", "--cache", od_cache_get_path (cache), arg1, arg2, NULL };
  g_autoptr(GError) error = NULL;
  char *out = NULL;
  int status;

  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                               NULL, &status, &error));
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  return out;
}

static OdOrder *
query_order (OdCache    *cache,
             const char *order_id)
{
  g_autoptr(GError) error = NULL;
  OdOrder *order = od_query_order (cache, order_id, &error);

  g_assert_no_error (error);
  g_assert_nonnull (order);
  return order;
}

/* The server sends events that break the protocol: a ShipOrder-made
 * event at version 7 on a draft at version 1, an OrderShipped on a draft
 * without a gap.  Neither is applied, nor anything after it for that
 * order; both orders are marked and say as of which version they are
 * shown; every event is stored; the other orders and the checkpoint go
 * on. */
static void
test_contract_break (gconstpointer data)
{
  Plan plan = GPOINTER_TO_INT (data);
  StreamServer *s = stream_server_new (plan);
  const char *a = "01900000-0000-7000-8000-00000000000a";
  const char *b = "01900000-0000-7000-8000-00000000000b";
  const char *c = "01900000-0000-7000-8000-00000000000c";
  const char *created = "{\"customer_name\":\"N\",\"customer_email\":\"n@example.com\",\"currency\":\"EUR\"}";
  const char *item = "{\"sku\":\"S\",\"name\":\"Mug\",\"quantity\":2,\"unit_price_cents\":500}";
  const char *shipped = "{\"carrier\":\"UPS\",\"tracking_number\":\"Z1\"}";
  gint64 base = s->log->head, bad_a, bad_c, version, position;
  char *dir;
  OdCache *cache;
  g_autoptr(OdSyncEngine) sync = NULL;
  g_autoptr(OdOrder) oa = NULL;
  g_autoptr(OdOrder) ob = NULL;
  g_autoptr(OdOrder) oc = NULL;
  g_autoptr(GPtrArray) rows = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *reason = NULL;
  OdOrderQuery query = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL };
  guint marked = 0;
  sqlite3_stmt *st = NULL;

  log_append (s, a, 1, "OrderCreated", created);
  log_append (s, b, 1, "OrderCreated", created);
  log_append (s, a, 7, "OrderShipped", shipped);
  bad_a = s->log->head;
  log_append (s, a, 2, "ItemAdded", item);      /* fine on its own: after a break, not applied */
  log_append (s, b, 2, "ItemAdded", item);
  log_append (s, c, 1, "OrderCreated", created);
  log_append (s, c, 2, "OrderShipped", shipped); /* no gap, but a draft cannot ship */
  bad_c = s->log->head;
  log_append (s, c, 3, "SomethingNew", "{}");
  log_append (s, b, 3, "OrderPlaced", "{\"total_cents\":1000,\"item_count\":2}");
  log_append (s, b, 4, "OrderShipped", shipped);
  g_assert_cmpint (s->log->head, ==, base + 10);

  cache = new_cache (&dir);
  sync = od_sync_engine_new (cache, s->url, "t");
  od_sync_engine_start (sync);
  settle (cache, s->log->head, 10);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, s->log->head);
  if (plan == PLAN_CONTRACT_PAGES)
    g_assert_cmpuint (s->pages, >=, 1);

  oa = query_order (cache, a);
  g_assert_cmpint (oa->status, ==, OD_STATUS_DRAFT);
  g_assert_cmpint (oa->version, ==, 1);
  g_assert_cmpuint (oa->lines->len, ==, 0);
  g_assert_null (oa->carrier);
  g_assert_true (od_query_inconsistency (cache, a, &version, &position, &reason, &error));
  g_assert_no_error (error);
  g_assert_cmpint (version, ==, 1);
  g_assert_cmpint (position, ==, bad_a);
  g_assert_nonnull (strstr (reason, "version 7 after version 1"));
  g_clear_pointer (&reason, g_free);
  {
    /* The history view makes no state of the refused events either. */
    g_autoptr(OdOrder) past = od_query_order_at (cache, a, s->log->head, &error);

    g_assert_no_error (error);
    g_assert_cmpint (past->status, ==, OD_STATUS_DRAFT);
    g_assert_cmpint (past->version, ==, 1);
  }

  ob = query_order (cache, b);
  g_assert_cmpint (ob->status, ==, OD_STATUS_SHIPPED);
  g_assert_cmpint (ob->version, ==, 4);
  g_assert_false (od_query_inconsistency (cache, b, NULL, NULL, NULL, &error));
  g_assert_no_error (error);

  oc = query_order (cache, c);
  g_assert_cmpint (oc->status, ==, OD_STATUS_DRAFT);
  g_assert_cmpint (oc->version, ==, 1);
  g_assert_true (od_query_inconsistency (cache, c, &version, &position, &reason, &error));
  g_assert_cmpint (version, ==, 1);
  g_assert_cmpint (position, ==, bad_c);
  g_assert_nonnull (strstr (reason, "OrderShipped on an order that is draft"));
  g_assert_cmpint (od_query_count_inconsistent (cache, NULL), ==, 2);

  /* The log stays complete: every event stored, the bad ones too. */
  sqlite3_prepare_v2 (od_cache_get_db (cache),
                      "SELECT count(*), max(position) FROM order_events", -1, &st, NULL);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
  g_assert_cmpint (sqlite3_column_int64 (st, 0), ==, s->log->head);
  g_assert_cmpint (sqlite3_column_int64 (st, 1), ==, s->log->head);
  sqlite3_finalize (st);

  rows = od_query_orders (cache, &query, NULL, 1000, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < rows->len; i++)
    {
      OdOrderRow *row = g_ptr_array_index (rows, i);

      g_assert_cmpint (row->inconsistent, ==, strcmp (row->order_id, a) == 0
                                              || strcmp (row->order_id, c) == 0);
      marked += row->inconsistent;
    }
  g_assert_cmpuint (marked, ==, 2);
  g_assert_cmpint (od_lag_get_state (od_sync_engine_get_lag (sync)), ==, OD_LAG_STATE_LIVE);

  /* orderdeskctl says so too. */
  {
    g_autofree char *status = run_ctl (cache, "status", NULL);
    g_autofree char *status_json = run_ctl (cache, "status", "--json");
    g_autofree char *orders = run_ctl (cache, "orders", NULL);
    g_autofree char *orders_json = run_ctl (cache, "orders", "--json");
    g_auto(GStrv) lines = g_strsplit (orders, "\n", -1);
    g_auto(GStrv) json_lines = g_strsplit (orders_json, "\n", -1);
    guint text_marked = 0, json_marked = 0;

    g_assert_nonnull (strstr (status, "inconsistent:     2 orders"));
    g_assert_nonnull (strstr (status_json, "\"inconsistent_orders\":2,"));
    for (guint i = 0; lines[i] != NULL; i++)
      if (strstr (lines[i], "INCONSISTENT") != NULL)
        {
          g_assert_true (g_str_has_prefix (lines[i], a) || g_str_has_prefix (lines[i], c));
          text_marked++;
        }
    for (guint i = 0; json_lines[i] != NULL; i++)
      if (strstr (json_lines[i], "\"inconsistent\":true") != NULL)
        {
          g_assert_true (strstr (json_lines[i], a) != NULL || strstr (json_lines[i], c) != NULL);
          json_marked++;
        }
    g_assert_cmpuint (text_marked, ==, 2);
    g_assert_cmpuint (json_marked, ==, 2);
  }

  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  rm_cache (cache, dir);
  stream_server_free (s);
}

/* A server whose pages never follow on from the checkpoint they make:
 * the cache is rebuilt at once the first time, then only after a
 * back-off, not in a loop. */
static void
test_history_lost_backs_off (void)
{
  StreamServer *s = stream_server_new (PLAN_FOREIGN_LOG);
  char *dir;
  OdCache *cache = new_cache (&dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, s->url, "t");
  gboolean done = FALSE;

  od_sync_engine_start (sync);
  g_timeout_add_seconds (5, timeout_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
  g_test_message ("%u requests (%u pages, %u streams) in 5 s", s->requests, s->pages,
                  s->streams);
  /* Rebuilds at 0, 0, ~1, ~3 s: head, stream and page each. */
  g_assert_cmpuint (s->requests, <=, 15);
  g_assert_cmpuint (s->pages, >=, 2);
  g_assert_cmpint (od_lag_get_state (od_sync_engine_get_lag (sync)), !=, OD_LAG_STATE_LIVE);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, 0);
  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  rm_cache (cache, dir);
  stream_server_free (s);
}

static void
submitted (GObject      *source,
           GAsyncResult *result,
           gpointer      data)
{
  g_autoptr(GError) error = NULL;

  *(gint64 *) data = od_outbox_submit_finish (OD_OUTBOX (source), result, &error);
  g_assert_no_error (error);
}

/* The outbox reads a command's answer with a bound too: an answer
 * without end is a transient failure that names it, and memory stays
 * bounded. */
static void
test_endless_answer (void)
{
  StreamServer *s = stream_server_new (PLAN_BIG_ANSWER);
  char *dir;
  OdCache *cache = new_cache (&dir);
  g_autoptr(OdOutbox) outbox = od_outbox_new (cache, s->url, "t");
  g_autoptr(OdPendingCommand) c = NULL;
  RssWatch watch = { 0 };
  gint64 base = rss_kib ();
  gint64 id = 0;
  gboolean timed_out = FALSE;
  guint sampler = g_timeout_add (20, sample_rss, &watch);
  guint tid = g_timeout_add_seconds (30, timeout_cb, &timed_out);

  od_outbox_submit_json_async (outbox,
                               "{\"type\":\"CreateOrder\",\"order_id\":\"01900000-0000-7000-8000-0000000000e1\","
                               "\"data\":{\"customer_name\":\"N\",\"customer_email\":\"n@example.com\","
                               "\"currency\":\"EUR\"}}",
                               NULL, submitted, &id);
  for (;;)
    {
      g_main_context_iteration (NULL, TRUE);
      if (timed_out)
        break;
      if (id <= 0)
        continue;
      g_clear_pointer (&c, od_pending_command_free);
      c = od_outbox_get (outbox, id, NULL);
      if (c != NULL && c->detail != NULL && strstr (c->detail, "larger than 64 KiB") != NULL)
        break;
    }
  g_source_remove (sampler);
  sample_rss (&watch);
  g_test_message ("answer: resident %" G_GINT64_FORMAT " KiB before, at most %" G_GINT64_FORMAT
                  " KiB; %s", base, watch.max_rss, c && c->detail ? c->detail : "-");
  assert_rss_growth_below (watch.max_rss - base, 24 * 1024);
  g_assert_false (timed_out);
  g_source_remove (tid);
  /* Not final: it is resent (same key) after the back-off. */
  g_assert_cmpint (c->state, !=, OD_COMMAND_STATE_REJECTED);
  g_clear_object (&outbox);
  rm_cache (cache, dir);
  stream_server_free (s);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/stream/duplicates-have-no-effect", test_duplicates_have_no_effect);
  g_test_add_func ("/stream/real-gap-uses-pages", test_real_gap);
  g_test_add_func ("/stream/data-kept-as-sent", test_data_kept_as_sent);
  g_test_add_func ("/stream/reordered-uses-pages", test_reordered);
  g_test_add_func ("/stream/stuck-below-head-uses-pages", test_stuck);
  g_test_add_func ("/stream/not-strict-json-refused", test_not_strict_refused);
  g_test_add_func ("/stream/head-above-pages-backs-off", test_head_above_pages_backs_off);
  g_test_add_func ("/stream/history-lost-backs-off", test_history_lost_backs_off);
  g_test_add_data_func ("/stream/contract-break", GINT_TO_POINTER (PLAN_CONTRACT),
                        test_contract_break);
  g_test_add_data_func ("/stream/contract-break-pages", GINT_TO_POINTER (PLAN_CONTRACT_PAGES),
                        test_contract_break);
  g_test_add_data_func ("/stream/endless-frame", GINT_TO_POINTER (PLAN_BIG_FRAME), test_endless);
  g_test_add_data_func ("/stream/endless-problem", GINT_TO_POINTER (PLAN_BIG_PROBLEM),
                        test_endless);
  g_test_add_data_func ("/stream/endless-head", GINT_TO_POINTER (PLAN_BIG_HEAD), test_endless);
  g_test_add_data_func ("/stream/endless-page", GINT_TO_POINTER (PLAN_BIG_PAGE), test_endless);
  g_test_add_func ("/stream/endless-command-answer", test_endless_answer);
  return g_test_run ();
}

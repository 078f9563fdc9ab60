/* SPDX-License-Identifier: GPL-3.0-or-later */
/* GET /v1/events/digest: the digest agrees with the events as the page
 * endpoint and the stream serve them, byte for byte. */

#include "od-test-server.h"
#include "od-test-bodies.h"
#include "od-digest.h"

#include <string.h>

static OdTestServer *server;

/* ---- a minimal JSON scanner: the raw bytes of every event's `data` ---- */

static const char *
skip_ws (const char *p)
{
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
    p++;
  return p;
}

/* Returns the end of the JSON value at p. */
static const char *
skip_value (const char *p)
{
  int depth = 0;

  do
    {
      p = skip_ws (p);
      if (*p == '"')
        {
          for (p++; *p != '"'; p++)
            {
              g_assert_cmpint (*p, !=, '\0');
              if (*p == '\\')
                p++;
            }
          p++;
        }
      else if (*p == '{' || *p == '[')
        depth++, p++;
      else if (*p == '}' || *p == ']')
        depth--, p++;
      else if (*p == ',' || *p == ':')
        p++;
      else
        {
          g_assert_cmpint (*p, !=, '\0');
          while (*p != '\0' && strchr (",:}] \n\r\t", *p) == NULL)
            p++;
        }
    }
  while (depth > 0);
  return p;
}

/* The raw `data` text of the event object at p; end receives its end. */
static char *
raw_event_data (const char  *p,
                const char **end)
{
  char *data = NULL;

  p = skip_ws (p);
  g_assert_cmpint (*p, ==, '{');
  p++;
  for (;;)
    {
      const char *key = skip_ws (p), *value, *value_end;

      p = skip_value (key);
      p = skip_ws (p);
      g_assert_cmpint (*p, ==, ':');
      value = skip_ws (p + 1);
      value_end = skip_value (value);
      if (p - key == 6 && memcmp (key, "\"data\"", 6) == 0)
        data = g_strndup (value, value_end - value);
      p = skip_ws (value_end);
      if (*p == '}')
        break;
      g_assert_cmpint (*p, ==, ',');
      p++;
    }
  if (end != NULL)
    *end = p + 1;
  g_assert_nonnull (data);
  return data;
}

typedef struct
{
  OdEvent *event;
  char    *raw_data;
} RawEvent;

static void
raw_event_free (RawEvent *raw)
{
  od_event_free (raw->event);
  g_free (raw->raw_data);
  g_free (raw);
}

/* The events of one page, with their data as served. */
static GPtrArray *
page_events (gint64 after,
             guint  limit)
{
  g_autofree char *path = g_strdup_printf ("/v1/events?after=%" G_GINT64_FORMAT "&limit=%u", after, limit);
  g_autoptr(OdTestResponse) response = od_test_get (server, OD_TEST_VICTOR, path);
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) raw_event_free);
  const char *p;

  od_test_assert_status (response, 200);
  p = strstr (response->body, "\"events\":[");
  g_assert_nonnull (p);
  p = skip_ws (p + strlen ("\"events\":["));
  while (*p == '{')
    {
      const char *start = p;
      g_autoptr(GError) error = NULL;
      RawEvent *raw = g_new0 (RawEvent, 1);

      raw->raw_data = raw_event_data (start, &p);
      raw->event = od_event_parse (start, p - start, &error);
      g_assert_no_error (error);
      g_ptr_array_add (events, raw);
      p = skip_ws (p);
      if (*p == ',')
        p = skip_ws (p + 1);
    }
  return events;
}

static char *
local_digest (GPtrArray *events,
              gint64     after,
              gint64     upto,
              gint64    *count)
{
  g_autoptr(OdDigest) sum = od_digest_new ();
  char hex[OD_DIGEST_HEX_LEN + 1];

  *count = 0;
  for (guint i = 0; i < events->len; i++)
    {
      RawEvent *raw = g_ptr_array_index (events, i);
      OdEvent *e = raw->event;

      if (e->position <= after || e->position > upto)
        continue;
      od_digest_add_event (sum, e->position, e->order_id, e->version, e->type, e->recorded_at,
                           e->actor, raw->raw_data, -1);
      (*count)++;
    }
  od_digest_finish (sum, hex);
  return g_strdup (hex);
}

static OdTestResponse *
get_digest (const char *query)
{
  g_autofree char *path = g_strconcat ("/v1/events/digest", query, NULL);

  return od_test_get (server, OD_TEST_VICTOR, path);
}

/* Events whose data holds bytes a re-serialisation could change. */
static void
write_events (void)
{
  static const char *names[] = {
    "Zoë \\u00e9 \\\"quoted\\\" back\\\\slash \\/ ✓ \\ud83d\\ude00",
    "1e2 0.10 -0 \\u00e9\\u00E9",
    "plain",
  };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *id = od_uuid_v7_new ();
      g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\","
                                               "\"data\":{ \"customer_name\" : \"%s\","
                                               "\"customer_email\":\"z@example.org\","
                                               "\"currency\":\"EUR\"}}", id, names[i]);
      g_autofree char *add = od_body_add (id, -1, "SKU-1", names[i], 3, 1250);

      od_test_command_ok (server, NULL, OD_TEST_ALICE, body, NULL);
      od_test_command_ok (server, NULL, OD_TEST_ALICE, add, NULL);
    }
}

static void
test_digest_matches_page (void)
{
  g_autoptr(GPtrArray) events = NULL;
  gint64 head, count;

  write_events ();
  head = od_test_head (server);
  events = page_events (0, 10000);
  g_assert_cmpint (events->len, ==, head);

  {
    struct { gint64 after, upto; } ranges[] = {
      { 0, head }, { 0, 1 }, { 1, 3 }, { 2, head - 1 }, { head - 1, head }, { head, head },
    };

    for (guint i = 0; i < G_N_ELEMENTS (ranges); i++)
      {
        g_autofree char *query = g_strdup_printf ("?after=%" G_GINT64_FORMAT "&upto=%" G_GINT64_FORMAT,
                                                  ranges[i].after, ranges[i].upto);
        g_autoptr(OdTestResponse) response = get_digest (query);
        g_autofree char *expected = local_digest (events, ranges[i].after, ranges[i].upto, &count);

        od_test_assert_status (response, 200);
        g_assert_cmpint (od_test_response_int (response, "after"), ==, ranges[i].after);
        g_assert_cmpint (od_test_response_int (response, "upto"), ==, ranges[i].upto);
        g_assert_cmpint (od_test_response_int (response, "count"), ==, count);
        g_assert_cmpstr (od_test_response_string (response, "sha256"), ==, expected);
      }
  }

  /* The same range asked twice gives the same answer; a different range
   * a different one. */
  {
    g_autoptr(OdTestResponse) a = get_digest ("?after=0&upto=3");
    g_autoptr(OdTestResponse) b = get_digest ("?after=0&upto=3");
    g_autoptr(OdTestResponse) c = get_digest ("?after=0&upto=2");

    g_assert_cmpstr (od_test_response_string (a, "sha256"), ==, od_test_response_string (b, "sha256"));
    g_assert_cmpstr (od_test_response_string (a, "sha256"), !=, od_test_response_string (c, "sha256"));
  }
}

/* The stream's replay serves the same bytes of data as the page. */
static void
test_stream_serves_same_bytes (void)
{
  g_autoptr(GPtrArray) events = NULL;
  g_autofree char *uri = NULL;
  g_autoptr(SoupSession) session = NULL;
  g_autoptr(SoupMessage) msg = NULL;
  g_autoptr(GInputStream) stream = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) text = g_string_new (NULL);
  g_autofree char *last_id = NULL;
  gint64 head;
  guint matched = 0;

  write_events ();
  head = od_test_head (server);
  events = page_events (0, 10000);
  last_id = g_strdup_printf ("\nid: %" G_GINT64_FORMAT "\n", head);

  uri = g_strconcat (od_test_server_url (server), "/v1/events/stream?after=0", NULL);
  session = soup_session_new_with_options ("proxy-resolver", NULL, "timeout", 15, NULL);
  msg = soup_message_new ("GET", uri);
  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization",
                                "Bearer " OD_TEST_VICTOR);
  stream = soup_session_send (session, msg, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (soup_message_get_status (msg), ==, 200);
  /* Read until the frame of the head event is complete. */
  for (;;)
    {
      char chunk[65536];
      gssize n;
      const char *at;

      g_string_prepend_c (text, '\n');
      at = strstr (text->str, last_id);
      g_string_erase (text, 0, 1);
      if (at != NULL && strstr (at, "\n\n") != NULL)
        break;
      n = g_input_stream_read (stream, chunk, sizeof chunk, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpint (n, >, 0);
      g_string_append_len (text, chunk, n);
    }
  g_input_stream_close (stream, NULL, NULL);

  {
    g_auto(GStrv) lines = g_strsplit (text->str, "\n", -1);

    for (guint i = 0; lines[i] != NULL; i++)
      {
        g_autoptr(OdEvent) event = NULL;
        g_autofree char *data = NULL;
        RawEvent *raw;

        if (!g_str_has_prefix (lines[i], "data: {\"position\""))
          continue;
        event = od_event_parse (lines[i] + 6, -1, &error);
        g_assert_no_error (error);
        data = raw_event_data (lines[i] + 6, NULL);
        g_assert_cmpint (event->position, >=, 1);
        g_assert_cmpint (event->position, <=, events->len);
        raw = g_ptr_array_index (events, event->position - 1);
        g_assert_cmpint (raw->event->position, ==, event->position);
        g_assert_cmpstr (data, ==, raw->raw_data);
        matched++;
      }
  }
  g_assert_cmpint (matched, ==, head);
}

static void
test_bounds (void)
{
  gint64 head, count;
  g_autoptr(GPtrArray) events = NULL;

  write_events ();
  head = od_test_head (server);
  events = page_events (0, 10000);

  /* Q above the head is clamped to it; no upto means the head. */
  {
    g_autoptr(OdTestResponse) response = get_digest ("?after=0&upto=999999");
    g_autoptr(OdTestResponse) whole = get_digest ("");
    g_autofree char *expected = local_digest (events, 0, head, &count);

    od_test_assert_status (response, 200);
    g_assert_cmpint (od_test_response_int (response, "upto"), ==, head);
    g_assert_cmpint (od_test_response_int (response, "count"), ==, head);
    g_assert_cmpstr (od_test_response_string (response, "sha256"), ==, expected);
    od_test_assert_status (whole, 200);
    g_assert_cmpstr (od_test_response_string (whole, "sha256"), ==, expected);
  }
  /* An empty range is the digest of no bytes. */
  {
    g_autoptr(OdTestResponse) response = get_digest ("?after=5&upto=2");

    od_test_assert_status (response, 200);
    g_assert_cmpint (od_test_response_int (response, "count"), ==, 0);
    g_assert_cmpstr (od_test_response_string (response, "sha256"), ==,
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  }
  /* A range of a million positions is answered (then clamped to the
   * head); a larger one is not, whatever the head, nor non-integers. */
  {
    g_autoptr(OdTestResponse) ok = get_digest ("?after=0&upto=1000000");
    g_autoptr(OdTestResponse) ok2 = get_digest ("?after=7&upto=1000007");

    od_test_assert_status (ok, 200);
    g_assert_cmpint (od_test_response_int (ok, "upto"), ==, head);
    od_test_assert_status (ok2, 200);
  }
  {
    const char *bad[] = { "?after=0&upto=1000001", "?after=-1&upto=1000001", "?upto=5000000",
                          "?after=x", "?upto=1.5", "?after=1&upto=", "?upto=9999999999999999999999" };

    for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
      {
        g_autoptr(OdTestResponse) response = get_digest (bad[i]);

        od_test_assert_problem (response, 400, "malformed");
      }
  }
  /* Viewer may read it; no token may not. */
  {
    g_autoptr(OdTestResponse) response = od_test_get (server, NULL, "/v1/events/digest");

    od_test_assert_problem (response, 401, "unauthorized");
  }
}

/* ---- parallel reads against the definition ---- */

/* Every event of the log, data as served, paged. */
static GPtrArray *
all_events (void)
{
  GPtrArray *all = g_ptr_array_new_with_free_func ((GDestroyNotify) raw_event_free);
  gint64 after = 0;

  for (;;)
    {
      GPtrArray *page = page_events (after, 10000);

      if (page->len == 0)
        {
          g_ptr_array_unref (page);
          return all;
        }
      after = ((RawEvent *) g_ptr_array_index (page, page->len - 1))->event->position;
      g_ptr_array_extend_and_steal (all, page);
    }
}

/* The digest as the contract words it, computed apart from od-digest.c:
 * GChecksum over each line formatted with printf. */
static char *
definition_digest (GPtrArray *events,
                   gint64     after,
                   gint64     upto,
                   gint64    *count)
{
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);

  *count = 0;
  for (guint i = 0; i < events->len; i++)
    {
      RawEvent *raw = g_ptr_array_index (events, i);
      OdEvent *e = raw->event;
      g_autofree char *line = NULL;

      if (e->position <= after || e->position > upto)
        continue;
      line = g_strdup_printf ("%" G_GINT64_FORMAT "\t%s\t%" G_GINT64_FORMAT "\t%s\t%s\t%s\t%s\n",
                              e->position, e->order_id, e->version, e->type, e->recorded_at,
                              e->actor, raw->raw_data);
      g_checksum_update (sum, (const guchar *) line, strlen (line));
      (*count)++;
    }
  return g_strdup (g_checksum_get_string (sum));
}

typedef struct
{
  gint64  after;
  gint64  asked;   /* Q */
  gint64  upto;    /* as answered */
  gint64  count;
  char   *sha256;
} Asked;

static gpointer
load_in_thread (gpointer data)
{
  od_test_load (server, GPOINTER_TO_UINT (data), 2);
  return NULL;
}

/* The stores read a digest's range in pieces (1,024 positions on
 * SQLite, 2,048 on PostgreSQL), on several connections at once, and hash
 * them in order; the answer must be that of the definition for ranges
 * across those pieces' bounds, empty ones and ones past the head, while
 * commands are committed. */
#define LOADED_ORDERS 560   /* 4 events each: past both stores' pieces */

static void
test_random_ranges (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GArray) asked = g_array_new (FALSE, TRUE, sizeof (Asked));
  g_autoptr(GPtrArray) events = NULL;
  GThread *writer;
  gint64 head;

  od_test_load (server, LOADED_ORDERS, 16);
  head = od_test_head (server);
  g_assert_cmpint (head, >, 2048 + 128);
  writer = g_thread_new ("writer", load_in_thread, GUINT_TO_POINTER (60));

  for (guint i = 0; i < 80; i++)
    {
      static const gint64 pieces[] = { 1024, 2048 };
      g_autofree char *query = NULL;
      g_autoptr(OdTestResponse) response = NULL;
      gint64 after = g_rand_int_range (rand, 0, head + 1), upto, head_before, head_after;
      Asked a = { 0 };

      switch (i % 5)
        {
        case 0: /* a few pieces long, give or take one position */
          upto = after + pieces[g_rand_int_range (rand, 0, 2)] * g_rand_int_range (rand, 1, 4)
                 + g_rand_int_range (rand, -1, 2);
          break;
        case 1: /* past the head */
          upto = head + g_rand_int_range (rand, 1, 20000);
          break;
        case 2: /* empty, or Q below P */
          upto = after - g_rand_int_range (rand, 0, 3);
          break;
        case 3: /* short, as a bisect asks */
          upto = after + g_rand_int_range (rand, 1, 300);
          break;
        default:
          upto = g_rand_int_range (rand, after, head + 2000);
          break;
        }
      if (i % 17 == 0)
        after = head + g_rand_int_range (rand, 0, 100);   /* P at or past the head */
      upto = MAX (upto, 0);
      query = g_strdup_printf ("?after=%" G_GINT64_FORMAT "&upto=%" G_GINT64_FORMAT, after, upto);
      head_before = od_test_head (server);
      response = get_digest (query);
      head_after = od_test_head (server);
      od_test_assert_status (response, 200);
      a.after = after;
      a.asked = upto;
      a.upto = od_test_response_int (response, "upto");
      a.count = od_test_response_int (response, "count");
      a.sha256 = g_strdup (od_test_response_string (response, "sha256"));
      g_assert_cmpint (od_test_response_int (response, "after"), ==, after);
      /* Q clamped to the head of that moment, never below P. */
      g_assert_cmpint (a.upto, >=, MAX (MIN (upto, head_before), after));
      g_assert_cmpint (a.upto, <=, MAX (MIN (upto, head_after), after));
      g_array_append_val (asked, a);
      head = head_after;
    }
  g_thread_join (writer);

  /* The log only grows and never changes below a head: what it holds now
   * is what every answer covered. */
  events = all_events ();
  for (guint i = 0; i < asked->len; i++)
    {
      Asked *a = &g_array_index (asked, Asked, i);
      gint64 count;
      g_autofree char *expected = definition_digest (events, a->after, a->upto, &count);

      g_test_message ("after=%" G_GINT64_FORMAT " upto=%" G_GINT64_FORMAT " (asked %" G_GINT64_FORMAT
                      ") count=%" G_GINT64_FORMAT, a->after, a->upto, a->asked, a->count);
      g_assert_cmpint (a->count, ==, count);
      g_assert_cmpstr (a->sha256, ==, expected);
      g_free (a->sha256);
    }
}

int
main (int   argc,
      char *argv[])
{
  int status;

  g_test_init (&argc, &argv, NULL);
  g_test_message ("store: %s", od_test_store_kind ());
  server = od_test_server_new (NULL);

  g_test_add_func ("/digest/matches-page", test_digest_matches_page);
  g_test_add_func ("/digest/stream-serves-same-bytes", test_stream_serves_same_bytes);
  g_test_add_func ("/digest/bounds", test_bounds);
  g_test_add_func ("/digest/random-ranges", test_random_ranges);

  status = g_test_run ();
  od_test_server_free (server);
  return status;
}

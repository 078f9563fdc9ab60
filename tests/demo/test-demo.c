/* SPDX-License-Identifier: GPL-3.0-or-later */
/* orderdesk-server --demo: the seed is a valid, realistic history, the
 * URL and tokens are printed, and --demo-traffic keeps the log moving. */
#include <glib/gstdio.h>
#include <libsoup/soup.h>
#include <string.h>

#include "od-protocol.h"
#include "od-test-process.h" /* od_test_process_rmdir () */

typedef struct
{
  char        *dir;
  char        *ready;
  char        *url;
  GSubprocess *process;
} Demo;

static void
demo_start (Demo       *demo,
            const char *traffic)
{
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE
                                                                       | G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_autoptr(GError) error = NULL;
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;

  demo->dir = g_dir_make_tmp ("od-demo-XXXXXX", &error);
  g_assert_no_error (error);
  demo->ready = g_build_filename (demo->dir, "ready", NULL);
  g_subprocess_launcher_setenv (launcher, "XDG_DATA_HOME", demo->dir, TRUE);
  demo->process = g_subprocess_launcher_spawn (launcher, &error, g_getenv ("OD_SERVER_BIN"),
                                               "--demo", "--listen", "127.0.0.1:0",
                                               "--ready-file", demo->ready,
                                               "--demo-traffic", traffic, NULL);
  g_assert_no_error (error);
  while (!g_file_get_contents (demo->ready, &demo->url, NULL, NULL))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20000);
    }
  g_strstrip (demo->url);
}

/* Stops the server, removes its directory and returns everything it
 * printed. */
static char *
demo_stop (Demo *demo)
{
  g_autoptr(GError) error = NULL;
  char *output = NULL;

  g_subprocess_send_signal (demo->process, SIGTERM);
  g_subprocess_communicate_utf8 (demo->process, NULL, NULL, &output, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (demo->process));
  g_assert_cmpint (g_subprocess_get_exit_status (demo->process), ==, 0);
  g_clear_object (&demo->process);
  od_test_process_rmdir (demo->dir);
  g_free (demo->ready);
  g_free (demo->url);
  g_free (demo->dir);
  return output;
}

static JsonNode *
get_json (SoupSession *session,
          const char  *url,
          const char  *token)
{
  g_autoptr(SoupMessage) msg = soup_message_new ("GET", url);
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *auth = g_strconcat ("Bearer ", token, NULL);
  JsonNode *node;
  gsize len;
  const char *data;

  soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization", auth);
  body = soup_session_send_and_read (session, msg, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (soup_message_get_status (msg), ==, 200);
  data = g_bytes_get_data (body, &len);
  node = od_json_parse_object (data, len, &error);
  g_assert_no_error (error);
  return node;
}

/* Reads the whole log, folding every order, and checks it is a history
 * the server itself would have accepted command by command. */
static void
test_seed (void)
{
  g_autoptr(SoupSession) session = soup_session_new ();
  g_autoptr(GHashTable) orders = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                        (GDestroyNotify) od_order_free);
  g_autofree char *output = NULL;
  guint counts[OD_STATUS_N] = { 0 };
  gint64 after = 0, now = g_get_real_time ();
  guint n_events = 0;
  Demo demo = { 0 };
  GHashTableIter iter;
  OdOrder *order;

  demo_start (&demo, "0");
  /* The seed is queued before the server answers; wait until it is in. */
  for (gint64 last = -1, head = 0; head != last;)
    {
      g_autofree char *url = g_strconcat (demo.url, "/v1/head", NULL);
      g_autoptr(JsonNode) node = NULL;

      g_usleep (300000);
      last = head;
      node = get_json (session, url, "demo-viewer");
      head = json_object_get_int_member (json_node_get_object (node), "head");
    }

  for (;;)
    {
      g_autofree char *url = g_strdup_printf ("%s/v1/events?after=%" G_GINT64_FORMAT "&limit=10000",
                                              demo.url, after);
      g_autoptr(JsonNode) node = get_json (session, url, "demo-viewer");
      JsonArray *events = json_object_get_array_member (json_node_get_object (node), "events");

      if (json_array_get_length (events) == 0)
        break;
      for (guint i = 0; i < json_array_get_length (events); i++)
        {
          g_autoptr(GError) error = NULL;
          g_autoptr(OdEvent) event = od_event_from_object (
            json_array_get_object_element (events, i), &error);
          gint64 at;

          g_assert_no_error (error);
          g_assert_cmpint (event->prev, ==, after);
          after = event->position;
          n_events++;
          g_assert_true (od_timestamp_parse (event->recorded_at, &at));
          g_assert_cmpint (at, >, now - 22 * G_TIME_SPAN_DAY);
          g_assert_cmpint (at, <=, now + G_TIME_SPAN_MINUTE);

          order = g_hash_table_lookup (orders, event->order_id);
          if (order == NULL)
            {
              g_assert_cmpstr (event->type, ==, "OrderCreated");
              order = od_order_new (event->order_id);
              g_hash_table_insert (orders, g_strdup (event->order_id), order);
            }
          g_assert_cmpint (event->version, ==, order->version + 1);
          /* Items only go into drafts; placing needs a line. */
          if (g_str_equal (event->type, "ItemAdded"))
            g_assert_cmpint (order->status, ==, OD_STATUS_DRAFT);
          if (g_str_equal (event->type, "OrderPlaced"))
            g_assert_cmpuint (order->lines->len, >, 0);
          g_assert_true (od_order_apply (order, event->type, od_event_get_data (event),
                                         event->version, event->position, event->recorded_at));
        }
    }

  g_hash_table_iter_init (&iter, orders);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &order))
    counts[order->status]++;
  g_test_message ("%u events, %u orders: %u draft, %u placed, %u shipped, %u delivered, "
                  "%u cancelled", n_events, g_hash_table_size (orders), counts[OD_STATUS_DRAFT],
                  counts[OD_STATUS_PLACED], counts[OD_STATUS_SHIPPED],
                  counts[OD_STATUS_DELIVERED], counts[OD_STATUS_CANCELLED]);
  g_assert_cmpuint (g_hash_table_size (orders), ==, 1000);
  /* A shop three weeks in: most orders are done, a few are still open. */
  g_assert_cmpuint (counts[OD_STATUS_DELIVERED], >, 600);
  g_assert_cmpuint (counts[OD_STATUS_CANCELLED], >, 20);
  g_assert_cmpuint (counts[OD_STATUS_DRAFT], <, 100);

  output = demo_stop (&demo);
  g_assert_nonnull (strstr (output, "operator token: demo-operator"));
  g_assert_nonnull (strstr (output, "viewer token:   demo-viewer"));
  g_assert_null (strstr (output, "refused"));
  g_assert_null (strstr (output, "WARNING"));
}

static void
test_traffic (void)
{
  g_autoptr(SoupSession) session = soup_session_new ();
  g_autofree char *url = NULL;
  g_autofree char *output = NULL;
  g_autoptr(JsonNode) first = NULL;
  g_autoptr(JsonNode) second = NULL;
  gint64 before, after;
  Demo demo = { 0 };

  demo_start (&demo, "50");
  url = g_strconcat (demo.url, "/v1/head", NULL);
  g_usleep (G_USEC_PER_SEC);
  first = get_json (session, url, "demo-operator");
  g_usleep (2 * G_USEC_PER_SEC);
  second = get_json (session, url, "demo-operator");
  before = json_object_get_int_member (json_node_get_object (first), "head");
  after = json_object_get_int_member (json_node_get_object (second), "head");
  g_test_message ("traffic: head %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT " in 2 s",
                  before, after);
  /* 50 commands a second for 2 s, each appending one event. */
  g_assert_cmpint (after - before, >=, 80);
  g_assert_cmpint (after - before, <=, 120);
  output = demo_stop (&demo);
  g_assert_null (strstr (output, "WARNING"));
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/demo/seed", test_seed);
  g_test_add_func ("/demo/traffic", test_traffic);
  return g_test_run ();
}

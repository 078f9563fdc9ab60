/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-log.h"

#include "od-protocol.h"

GPtrArray *
od_test_read_log (SoupSession *session,
                  const char  *url,
                  const char  *token)
{
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  g_autofree char *auth = g_strconcat ("Bearer ", token, NULL);
  gint64 after = 0;

  for (;;)
    {
      g_autofree char *uri = g_strdup_printf ("%s/v1/events?after=%" G_GINT64_FORMAT
                                              "&limit=10000", url, after);
      g_autoptr(SoupMessage) msg = soup_message_new ("GET", uri);
      g_autoptr(GError) error = NULL;
      g_autoptr(GBytes) body = NULL;
      g_autoptr(JsonNode) root = NULL;
      JsonArray *array;
      guint n;

      soup_message_headers_replace (soup_message_get_request_headers (msg), "Authorization", auth);
      body = soup_session_send_and_read (session, msg, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpuint (soup_message_get_status (msg), ==, 200);
      root = od_json_parse_object (g_bytes_get_data (body, NULL), g_bytes_get_size (body), NULL);
      g_assert_nonnull (root);
      array = json_object_get_array_member (json_node_get_object (root), "events");
      n = json_array_get_length (array);
      if (n == 0)
        break;
      for (guint i = 0; i < n; i++)
        {
          OdEvent *ev = od_event_from_object (json_array_get_object_element (array, i), &error);

          g_assert_no_error (error);
          g_assert_cmpint (ev->prev, ==, after);
          after = ev->position;
          g_ptr_array_add (events, ev);
        }
    }
  return events;
}

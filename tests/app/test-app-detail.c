/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The order detail of an order whose history from the server breaks the
 * protocol: it shows the order as the cache applied it, and a banner
 * that says so; a consistent order has no banner. */
#include <string.h>

#include "od-core.h"
#include "od-order-detail.h"
#include "od-test-app.h"

static const char *broken_id = "01900000-0000-7000-8000-0000000000d1";
static const char *fine_id = "01900000-0000-7000-8000-0000000000d2";

static OdEvent *
make_event (gint64      position,
            const char *order_id,
            gint64      version,
            const char *type,
            const char *data)
{
  OdEvent *ev = od_event_new ();

  ev->position = position;
  ev->prev = position - 1;
  g_strlcpy (ev->order_id, order_id, sizeof ev->order_id);
  ev->version = version;
  ev->type = g_strdup (type);
  ev->recorded_at = od_timestamp_format (1790000000000000 + position * 1000);
  ev->actor = g_strdup ("test");
  ev->data = g_strdup (data);
  return ev;
}

static void
test_inconsistent_banner (void)
{
  g_autofree char *dir = g_dir_make_tmp ("od-detail-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "c.sqlite", NULL);
  g_autofree char *command = g_strdup_printf ("rm -rf '%s'", dir);
  const char *created = "{\"customer_name\":\"N\",\"customer_email\":\"n@example.com\",\"currency\":\"EUR\"}";
  const char *item = "{\"sku\":\"S\",\"name\":\"Mug\",\"quantity\":2,\"unit_price_cents\":500}";
  const char *shipped = "{\"carrier\":\"UPS\",\"tracking_number\":\"Z1\"}";
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) cache = od_cache_open (path, &error);
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  GtkWidget *detail;
  const char *text;

  g_assert_no_error (error);
  g_ptr_array_add (events, make_event (1, broken_id, 1, "OrderCreated", created));
  g_ptr_array_add (events, make_event (2, broken_id, 2, "ItemAdded", item));
  g_ptr_array_add (events, make_event (3, fine_id, 1, "OrderCreated", created));
  g_ptr_array_add (events, make_event (4, broken_id, 7, "OrderShipped", shipped));
  od_cache_push_events (cache, events, 4);
  g_assert_true (od_cache_flush (cache, NULL));
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, 4);

  detail = g_object_ref_sink (od_order_detail_new ());
  od_order_detail_set_cache (OD_ORDER_DETAIL (detail), cache);
  od_order_detail_show (OD_ORDER_DETAIL (detail), broken_id);
  g_assert_cmpint (od_order_detail_get_order (OD_ORDER_DETAIL (detail))->status, ==,
                   OD_STATUS_DRAFT);
  text = od_order_detail_get_inconsistent_message (OD_ORDER_DETAIL (detail));
  g_assert_nonnull (text);
  g_assert_nonnull (strstr (text, "breaks the protocol"));
  g_assert_nonnull (strstr (text, "version 2"));

  od_order_detail_show (OD_ORDER_DETAIL (detail), fine_id);
  g_assert_null (od_order_detail_get_inconsistent_message (OD_ORDER_DETAIL (detail)));

  g_object_unref (detail);
  g_clear_object (&cache);
  g_spawn_command_line_sync (command, NULL, NULL, NULL, NULL);
}

int
main (int   argc,
      char *argv[])
{
  if (!od_test_app_init (&argc, &argv))
    {
      g_print ("1..0 # SKIP no display\n");
      return 77;
    }
  g_test_add_func ("/app/detail/inconsistent-banner", test_inconsistent_banner);
  return g_test_run ();
}

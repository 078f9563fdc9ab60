/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The order detail of an order whose history from the server breaks the
 * protocol: it shows the order as the cache applied it, and a banner
 * that says so; a consistent order has no banner.  In a pane as narrow
 * as beside the list, short values keep their line and the banner over
 * a past state keeps its text readable. */
#include <string.h>

#include "od-core.h"
#include "od-order-detail.h"
#include "od-test-app.h"
#include "od-test-process.h" /* od_test_process_rmdir () */

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

static const char *created = "{\"customer_name\":\"N\",\"customer_email\":\"n@example.com\",\"currency\":\"EUR\"}";
static const char *item = "{\"sku\":\"S\",\"name\":\"Mug\",\"quantity\":2,\"unit_price_cents\":500}";

/* A cache in a new directory (*DIR, for od_test_process_rmdir ()) that has applied
 * EVENTS (positions 1 to their number). */
static OdCache *
cache_with (char      **dir,
            GPtrArray  *events)
{
  g_autofree char *path = NULL;
  g_autoptr(GError) error = NULL;
  OdCache *cache;
  gint64 head = events->len;

  *dir = g_dir_make_tmp ("od-detail-XXXXXX", NULL);
  path = g_build_filename (*dir, "c.sqlite", NULL);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  od_cache_push_events (cache, events, head);
  g_assert_true (od_cache_flush (cache, NULL));
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, head);
  return cache;
}

static void
test_inconsistent_banner (void)
{
  g_autofree char *dir = NULL;
  const char *shipped = "{\"carrier\":\"UPS\",\"tracking_number\":\"Z1\"}";
  g_autoptr(OdCache) cache = NULL;
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  GtkWidget *detail;
  const char *text;

  g_ptr_array_add (events, make_event (1, broken_id, 1, "OrderCreated", created));
  g_ptr_array_add (events, make_event (2, broken_id, 2, "ItemAdded", item));
  g_ptr_array_add (events, make_event (3, fine_id, 1, "OrderCreated", created));
  g_ptr_array_add (events, make_event (4, broken_id, 7, "OrderShipped", shipped));
  cache = cache_with (&dir, events);

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
  od_test_process_rmdir (dir);
}

static int
line_count (GtkWidget *label)
{
  return pango_layout_get_line_count (gtk_label_get_layout (GTK_LABEL (label)));
}

static void
test_narrow_pane (void)
{
  g_autofree char *dir = NULL;
  const char *shipped = "{\"carrier\":\"Deutsche Post\",\"tracking_number\":\"Z1\"}";
  g_autoptr(OdCache) cache = NULL;
  GPtrArray *events = g_ptr_array_new_with_free_func ((GDestroyNotify) od_event_free);
  GtkWidget *window = gtk_window_new ();
  GtkWidget *detail = od_order_detail_new ();
  GtkWidget *label, *banner;

  g_ptr_array_add (events, make_event (1, fine_id, 1, "OrderCreated", created));
  g_ptr_array_add (events, make_event (2, fine_id, 2, "ItemAdded", item));
  g_ptr_array_add (events, make_event (3, fine_id, 3, "OrderPlaced", "{}"));
  g_ptr_array_add (events, make_event (4, fine_id, 4, "OrderShipped", shipped));
  cache = cache_with (&dir, events);

  /* The pane beside the list in a 1,100 px window is about 350 px. */
  gtk_window_set_default_size (GTK_WINDOW (window), 350, 900);
  gtk_window_set_child (GTK_WINDOW (window), detail);
  od_order_detail_set_cache (OD_ORDER_DETAIL (detail), cache);
  od_order_detail_show (OD_ORDER_DETAIL (detail), fine_id);
  gtk_window_present (GTK_WINDOW (window));
  od_test_wait_frame (window);
  od_test_spin (300);

  /* The carrier may wrap, but only when its row has no room: measured
   * wrapped, a two-word carrier took two lines in a row with room. */
  label = od_test_find_label (detail, "Deutsche Post");
  g_assert_nonnull (label);
  g_assert_cmpint (line_count (label), ==, 1);

  /* The text over a past state has the banner's width, not what a button
   * beside it leaves (a German button left it one or two words a line). */
  od_order_detail_show_past (OD_ORDER_DETAIL (detail), 2);
  od_test_wait_frame (window);
  od_test_spin (600);
  label = od_test_find_label_prefix (detail, "Showing the order as it was on");
  g_assert_nonnull (label);
  banner = gtk_widget_get_parent (label);
  g_test_message ("banner %d px, its text %d px, %d lines", gtk_widget_get_width (banner),
                  gtk_widget_get_width (label), line_count (label));
  g_assert_cmpint (gtk_widget_get_width (label), >=, gtk_widget_get_width (banner) * 8 / 10);
  g_assert_cmpint (line_count (label), <=, 3);

  gtk_window_destroy (GTK_WINDOW (window));
  od_test_spin (50);
  g_clear_object (&cache);
  od_test_process_rmdir (dir);
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
  g_test_add_func ("/app/detail/narrow-pane", test_narrow_pane);
  return g_test_run ();
}

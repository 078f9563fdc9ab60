/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <adwaita.h>

#include "od-order-item.h"
#include "od-test-app.h"
#include "od-test-server.h"
#include "od-window-private.h"

/* Command to visible change in the console's window: an Add Item sent
 * from its dialog against a real orderdesk-server, until the order's row
 * shows the new item count, and until the frame that draws it.  Run
 * under Xvfb with OD_SERVER_BIN set:
 *
 *   OD_SERVER_BIN=build/src/server/orderdesk-server \
 *     xvfb-run -a -s '-screen 0 1280x800x24' build/bench/app/od-bench-live [-n N] */

static int
compare_double (gconstpointer a,
                gconstpointer b)
{
  double x = *(const double *) a;
  double y = *(const double *) b;

  return x < y ? -1 : x > y ? 1 : 0;
}

static void
report (const char *what,
        GArray     *ms)
{
  g_array_sort (ms, compare_double);
  g_print ("%-36s n=%-4u p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  max %7.2f ms\n", what, ms->len,
           g_array_index (ms, double, ms->len / 2),
           g_array_index (ms, double, (ms->len - 1) * 90 / 100),
           g_array_index (ms, double, (ms->len - 1) * 99 / 100),
           g_array_index (ms, double, ms->len - 1));
}

typedef struct
{
  OdOrderItem *item;
  gint64       want;
  gint64       seen_at;
  gboolean     painted;
} Watch;

static void
on_changed (OdOrderItem *item,
            Watch       *w)
{
  if (w->seen_at == 0 && od_order_item_get_row (item)->item_count == w->want)
    w->seen_at = g_get_monotonic_time ();
}

static void
on_after_paint (GdkFrameClock *clock,
                Watch         *w)
{
  if (w->seen_at != 0)
    w->painted = TRUE;
}

static gboolean
timed_out (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Blocking iterations: nothing sleeps between a wake-up and its check. */
static gboolean
run_until (gboolean *flag,
           guint     ms)
{
  gboolean late = FALSE;
  guint id = g_timeout_add (ms, timed_out, &late);

  while (!*flag && !late)
    g_main_context_iteration (NULL, TRUE);
  if (!late)
    g_source_remove (id);
  return *flag;
}

static gboolean
is_live (gpointer data)
{
  return od_lag_get_state (od_lag_indicator_get_lag (od_window_get_lag_indicator (data)))
         == OD_LAG_STATE_LIVE;
}

int
main (int   argc,
      char *argv[])
{
  int n = 200;
  GOptionEntry entries[] = {
    { "commands", 'n', 0, G_OPTION_ARG_INT, &n, "Commands to send", "N" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr(GOptionContext) context = g_option_context_new ("— command to visible in the window");
  g_autoptr(GError) error = NULL;
  g_autoptr(OdTestServer) server = NULL;
  g_autoptr(OdApplication) app = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *cache = NULL;
  g_autoptr(GArray) visible = g_array_new (FALSE, FALSE, sizeof (double));
  g_autoptr(GArray) drawn = g_array_new (FALSE, FALSE, sizeof (double));
  OdWindow *window;
  OdOrderList *list;
  OdOrderItem *item;
  GdkFrameClock *clock;
  gint64 count;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  if (!od_test_app_init (&argc, &argv))
    {
      g_printerr ("no display\n");
      return 77;
    }

  dir = g_dir_make_tmp ("od-bench-live-XXXXXX", &error);
  g_assert_no_error (error);
  g_setenv ("XDG_DATA_HOME", dir, TRUE);
  cache = g_build_filename (dir, "profile.sqlite", NULL);
  server = od_test_server_new ("--rate-limit", "0", NULL);
  app = od_test_app_new ();
  window = g_object_ref_sink (od_window_new (app));
  if (!od_window_open_profile (window, od_test_server_url (server), OD_TEST_ALICE, cache, FALSE,
                               &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }
  gtk_window_present (GTK_WINDOW (window));
  list = od_window_get_order_list (window);
  g_assert_true (od_test_wait (is_live, window, 30000));

  /* One draft order, shown in the first row and selected. */
  {
    OdCommandDialog *dialog = od_window_open_command_dialog (window, OD_COMMAND_CREATE_ORDER);

    od_command_dialog_set_field (dialog, "customer_name", "Bench Mark");
    od_command_dialog_set_field (dialog, "customer_email", "bench@example.org");
    od_command_dialog_set_field (dialog, "currency", "EUR");
    od_command_dialog_send (dialog);
  }
  od_test_spin (1000);
  od_order_list_set_search (list, "Bench Mark");
  g_assert_cmpuint (g_list_model_get_n_items (G_LIST_MODEL (od_order_list_get_model (list))), ==, 1);
  od_order_list_select_position (list, 0);
  item = g_list_model_get_item (G_LIST_MODEL (od_order_list_get_model (list)), 0);
  od_test_wait_frame (GTK_WIDGET (list));
  clock = gtk_widget_get_frame_clock (GTK_WIDGET (list));
  count = od_order_item_get_row (item)->item_count;

  for (int i = 0; i < n; i++)
    {
      OdCommandDialog *dialog = od_window_open_command_dialog (window, OD_COMMAND_ADD_ITEM);
      g_autofree char *sku = g_strdup_printf ("BENCH-%d", i);
      Watch w = { item, count + 1, 0, FALSE };
      gulong changed_id = g_signal_connect (item, "changed", G_CALLBACK (on_changed), &w);
      gulong paint_id = g_signal_connect (clock, "after-paint", G_CALLBACK (on_after_paint), &w);
      gint64 start;

      od_command_dialog_set_field (dialog, "sku", sku);
      od_command_dialog_set_field (dialog, "name", "Bench item");
      od_command_dialog_set_field (dialog, "quantity", "1");
      od_command_dialog_set_field (dialog, "unit_price", "1.00");
      od_test_wait_frame (GTK_WIDGET (list));
      od_test_spin (20);
      start = g_get_monotonic_time ();
      od_command_dialog_send (dialog);
      if (!run_until (&w.painted, 10000))
        {
          g_printerr ("command %d not visible after 10 s\n", i);
          return 1;
        }
      g_array_append_vals (visible, (double[]) { (w.seen_at - start) / 1000.0 }, 1);
      g_array_append_vals (drawn, (double[]) { (g_get_monotonic_time () - start) / 1000.0 }, 1);
      g_signal_handler_disconnect (item, changed_id);
      g_signal_handler_disconnect (clock, paint_id);
      count++;
    }
  report ("click → row shows it", visible);
  report ("click → frame drawn with it", drawn);

  g_object_unref (item);
  gtk_window_destroy (GTK_WINDOW (window));
  g_object_unref (window);
  {
    g_autofree char *command = g_strdup_printf ("rm -rf '%s'", dir);

    g_spawn_command_line_sync (command, NULL, NULL, NULL, NULL);
  }
  return 0;
}

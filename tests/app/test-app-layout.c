/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <glib/gi18n.h>
#include <sqlite3.h>

#include "od-test-app.h"
#include "od-test-cache.h"

/* The window at the widths the metainfo promises (display_length 360):
 * it fits, the lag indicator's state and time and the order count are
 * whole, and a narrow window shows one pane at a time with a way back. */

#define N_ORDERS 5000

static char *tmpdir;

/* Shows the window at width × height: without a window manager the
 * default size applies when the window is mapped again. */
static void
show_at (OdWindow *window,
         int       width,
         int       height)
{
  gtk_widget_set_visible (GTK_WIDGET (window), FALSE);
  gtk_window_set_default_size (GTK_WINDOW (window), width, height);
  gtk_window_present (GTK_WINDOW (window));
  od_test_wait_frame (GTK_WIDGET (window));
  od_test_spin (600);
}

static GtkWidget *
find_action_button (GtkWidget  *root,
                    const char *action)
{
  if (GTK_IS_BUTTON (root) && g_strcmp0 (gtk_actionable_get_action_name (GTK_ACTIONABLE (root)), action) == 0)
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_action_button (child, action);

      if (found != NULL)
        return found;
    }
  return NULL;
}

static void
assert_whole (OdWindow *window)
{
  OdLagIndicator *lag = od_window_get_lag_indicator (window);
  g_autofree char *count = g_strdup_printf (ngettext ("%'u order", "%'u orders", N_ORDERS), N_ORDERS);
  GtkWidget *label;

  label = od_test_find_label (GTK_WIDGET (lag), od_lag_indicator_get_text (lag));
  g_assert_nonnull (label);
  od_test_assert_label_whole (label);
  if (!gtk_widget_get_mapped (GTK_WIDGET (od_window_get_order_list (window))))
    return;
  label = od_test_find_label (GTK_WIDGET (od_window_get_order_list (window)), count);
  g_assert_nonnull (label);
  od_test_assert_label_whole (label);
}

/* The list keeps the order, customer and total in view, whole: at a
 * narrow width it hides items, then updated, makes the status pills
 * compact, then hides status, rather than have them scrolled to
 * sideways.  Every column shown fits without scrolling.  Returns how
 * many of the six columns are shown. */
static guint
assert_columns_fit (OdWindow *window)
{
  GtkColumnView *view = od_order_list_get_column_view (od_window_get_order_list (window));
  GListModel *columns = gtk_column_view_get_columns (view);
  GtkAdjustment *h = gtk_scrollable_get_hadjustment (GTK_SCROLLABLE (view));
  guint shown = 0;

  g_assert_cmpuint (g_list_model_get_n_items (columns), ==, 6);
  for (guint i = 0; i < 6; i++)
    {
      g_autoptr(GtkColumnViewColumn) column = g_list_model_get_item (columns, i);

      /* Order, customer, total: always; status but in the narrowest. */
      if (i != 2 && i != 3 && i != 5)
        g_assert_true (gtk_column_view_column_get_visible (column));
      shown += gtk_column_view_column_get_visible (column);
    }
  g_test_message ("%d px wide: %u columns, %.0f px of columns in %.0f", gtk_widget_get_width (GTK_WIDGET (view)),
                  shown, gtk_adjustment_get_upper (h), gtk_adjustment_get_page_size (h));
  g_assert_cmpfloat (gtk_adjustment_get_upper (h), <=, gtk_adjustment_get_page_size (h) + 0.5);
  return shown;
}

static void
test_widths (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *shared = od_test_shared_cache (N_ORDERS, &error);
  g_autofree char *cache = NULL;
  g_autoptr(OdApplication) app = NULL;
  OdWindow *window;
  GtkWidget *list;
  GtkWidget *detail;
  GtkWidget *back;
  int min_width = 0;
  guint shown;

  g_assert_no_error (error);
  cache = od_test_copy_cache (shared, tmpdir);
  /* Last heard from two days ago: the indicator's text has a date
   * ("Offline · data as of 12-03 10:02").  With the full date and time
   * it kept the window from folding: the wide header's minimum passed the
   * fold width, and a 360 px window opened 713 px wide (found by a run of
   * this test just after midnight). */
  {
    sqlite3 *db = NULL;
    g_autofree char *sql = g_strdup_printf ("UPDATE sync_state SET last_contact_at = %" G_GINT64_FORMAT,
                                            g_get_real_time () - (gint64) 2 * 24 * 3600 * G_USEC_PER_SEC);

    g_assert_cmpint (sqlite3_open (cache, &db), ==, SQLITE_OK);
    g_assert_cmpint (sqlite3_exec (db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
    g_assert_cmpint (sqlite3_changes (db), ==, 1);
    sqlite3_close (db);
  }
  app = od_test_app_new ();
  window = od_window_new (app);
  /* Offline: the indicator's longest text, "Offline · data as of <time>". */
  g_assert_true (od_window_open_profile (window, "http://127.0.0.1:9", NULL, cache, TRUE, &error));
  g_assert_no_error (error);
  list = GTK_WIDGET (od_window_get_order_list (window));
  detail = GTK_WIDGET (od_window_get_order_detail (window));

  /* The narrowest: 360 px, the window included. */
  show_at (window, 360, 640);
  gtk_widget_measure (GTK_WIDGET (window), GTK_ORIENTATION_HORIZONTAL, -1, &min_width, NULL, NULL, NULL);
  g_test_message ("minimum width %d", min_width);
  g_assert_cmpint (min_width, <=, 360);
  g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (window)), <=, 360);
  assert_whole (window);
  g_assert_true (gtk_widget_get_mapped (list));
  g_assert_false (gtk_widget_get_mapped (detail));
  /* At 360 px the four needed sideways scrolling, even with compact
   * status pills: the totals showed their first digits only.  Status is
   * hidden; the three fit. */
  g_assert_cmpuint (assert_columns_fit (window), ==, 3);
  back = find_action_button (GTK_WIDGET (window), "win.back");
  g_assert_nonnull (back);
  g_assert_false (gtk_widget_get_visible (back));

  /* An order opens over the list, with a way back. */
  od_order_list_select_position (od_window_get_order_list (window), 2);
  od_test_spin (800);
  g_assert_true (gtk_widget_get_mapped (detail));
  g_assert_false (gtk_widget_get_mapped (list));
  g_assert_true (gtk_widget_get_mapped (back));
  assert_whole (window);
  gtk_widget_activate (back);
  od_test_spin (800);
  g_assert_true (gtk_widget_get_mapped (list));
  g_assert_false (gtk_widget_get_mapped (detail));
  g_assert_false (gtk_widget_get_visible (back));

  /* Wide enough for both side by side. */
  {
    static const int sizes[][2] = { { 800, 600 }, { 1100, 720 }, { 1280, 800 } };

    for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
      {
        show_at (window, sizes[i][0], sizes[i][1]);
        /* Without a compositor the window's frame takes a few pixels. */
        g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (window)), <=, sizes[i][0]);
        g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (window)), >=, sizes[i][0] - 20);
        g_assert_true (gtk_widget_get_mapped (list));
        g_assert_true (gtk_widget_get_mapped (detail));
        g_assert_false (gtk_widget_get_visible (back));
        assert_whole (window);
        /* Beside the detail at 800 px the four needed about 470 px of
         * the list's 440 (a total is never cut short, and the status
         * column kept room for its widest pill): the totals showed
         * without their currency.  The pills are compact there now, and
         * the four fit. */
        shown = assert_columns_fit (window);
        if (sizes[i][0] == 800)
          g_assert_cmpuint (shown, ==, 4);
        /* Wide, every column again. */
        if (sizes[i][0] >= 1280)
          g_assert_cmpuint (shown, ==, 6);
      }
  }
  gtk_window_destroy (GTK_WINDOW (window));
  od_test_spin (50);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *command = NULL;
  int status;

  tmpdir = g_dir_make_tmp ("od-layout-XXXXXX", NULL);
  g_setenv ("XDG_DATA_HOME", tmpdir, TRUE);
  if (!od_test_app_init (&argc, &argv))
    {
      g_print ("1..0 # SKIP no display\n");
      return 77;
    }
  g_test_add_func ("/app/layout/widths", test_widths);
  status = g_test_run ();

  command = g_strdup_printf ("rm -rf '%s'", tmpdir);
  g_spawn_command_line_sync (command, NULL, NULL, NULL, NULL);
  return status;
}

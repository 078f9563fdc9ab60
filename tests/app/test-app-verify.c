/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Verify Cache in the console, against a real orderdesk-server: a damaged
 * cache is found out through the action, the banner says what differs,
 * its Repair button repairs it and the views and "Verified up to" follow;
 * Cancel stops a run; a long catch-up is followed by a verification of
 * its own. */
#include <string.h>

#include "od-order-item.h"
#include "od-test-app.h"
#include "od-test-cache.h"
#include "od-test-server.h"

typedef OdTestAppFixture Fixture;

static void
fixture_set_up (Fixture       *f,
                gconstpointer  data)
{
  od_test_app_fixture_set_up (f, data);
  g_settings_reset (od_application_get_settings (), "verify-automatically");
  g_settings_reset (od_application_get_settings (), "verify-after-events");
}

static void
open_window (Fixture    *f,
             const char *url,
             const char *cache)
{
  g_autoptr(GError) error = NULL;

  f->window = g_object_ref_sink (od_window_new (f->app));
  g_assert_true (od_window_open_profile (f->window, url, OD_TEST_ALICE, cache, FALSE, &error));
  g_assert_no_error (error);
  gtk_window_present (GTK_WINDOW (f->window));
}

static gboolean
is_live (gpointer data)
{
  Fixture *f = data;
  OdLag *lag = od_lag_indicator_get_lag (od_window_get_lag_indicator (f->window));

  return lag != NULL && od_lag_get_state (lag) == OD_LAG_STATE_LIVE;
}

static gboolean
not_running (gpointer data)
{
  return !od_verify_runner_get_running (data);
}

static OdOrderItem *
find_row (Fixture    *f,
          const char *order_id)
{
  GListModel *model = G_LIST_MODEL (od_order_list_get_model (od_window_get_order_list (f->window)));

  for (guint i = 0; i < g_list_model_get_n_items (model); i++)
    {
      g_autoptr(OdOrderItem) item = g_list_model_get_item (model, i);

      if (g_strcmp0 (od_order_item_get_order_id (item), order_id) == 0)
        return g_steal_pointer (&item);
    }
  return NULL;
}

/* The shown button under root with this label (shown: visible up to
 * root; the banner's revealer maps it only as it slides in). */
static GtkWidget *
find_button (GtkWidget  *root,
             const char *label)
{
  if (!gtk_widget_get_visible (root))
    return NULL;
  if (GTK_IS_BUTTON (root)
      && g_strcmp0 (gtk_button_get_label (GTK_BUTTON (root)), label) == 0)
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_button (child, label);

      if (found != NULL)
        return found;
    }
  return NULL;
}

static void
click (GtkWidget  *root,
       const char *label)
{
  GtkWidget *button = find_button (root, label);

  g_assert_nonnull (button);
  g_assert_true (gtk_widget_is_sensitive (button));
  g_signal_emit_by_name (button, "clicked");
}

static gint64
total_of (Fixture    *f,
          const char *order_id)
{
  g_autoptr(OdOrderItem) item = find_row (f, order_id);

  g_assert_nonnull (item);
  return od_order_item_get_row (item)->total_cents;
}

static void
test_damage_and_repair (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(OdTestServer) server = od_test_server_new ("--demo", NULL);
  g_autofree char *cache = g_build_filename (f->tmpdir, "profile.sqlite", NULL);
  OdVerifyRunner *runner;
  OdVerifyBanner *banner;
  OdOrderItem *item;
  g_autofree char *order_id = NULL;
  g_autofree char *sql = NULL;
  gint64 total;
  const char *text;

  open_window (f, od_test_server_url (server), cache);
  g_assert_true (od_test_wait (is_live, f, 30000));
  od_test_spin (300);
  runner = od_window_get_verify_runner (f->window);
  banner = od_window_get_verify_banner (f->window);
  g_assert_cmpstr (od_verify_runner_get_verified_text (runner), ==, "Never verified");
  g_assert_null (od_verify_banner_get_text (banner));

  /* An order's total is changed behind the console's back, and the list
   * shows it once it reads again. */
  item = g_list_model_get_item (G_LIST_MODEL (od_order_list_get_model (od_window_get_order_list (f->window))), 0);
  order_id = g_strdup (od_order_item_get_order_id (item));
  g_object_unref (item);
  total = total_of (f, order_id);
  sql = g_strdup_printf ("UPDATE orders SET total_cents = total_cents + 100 WHERE order_id = '%s'",
                         order_id);
  od_test_cache_write (cache, sql);
  od_order_list_set_cache (od_window_get_order_list (f->window), od_window_get_cache (f->window));
  od_test_spin (100);
  g_assert_cmpint (total_of (f, order_id), ==, total + 100);

  /* Verify Cache, as the main menu does. */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (f->window), "verify.run", NULL));
  g_assert_true (od_verify_runner_get_running (runner));
  g_assert_true (od_test_wait (not_running, runner, 60000));
  text = od_verify_banner_get_text (banner);
  g_assert_nonnull (text);
  g_assert_nonnull (strstr (text, "The cache differs from the server: 1 order differs"));
  g_assert_cmpint (od_verify_runner_get_outcome (runner), ==, OD_VERIFY_OUTCOME_DIFFERS);
  g_assert_true (g_str_has_prefix (od_verify_runner_get_verified_text (runner), "Differences found, checked up to "));

  /* Repair, from the banner's button. */
  click (GTK_WIDGET (banner), "_Repair");
  g_assert_true (od_verify_runner_get_running (runner));
  g_assert_true (od_test_wait (not_running, runner, 60000));
  g_assert_cmpint (od_verify_runner_get_outcome (runner), ==, OD_VERIFY_OUTCOME_REPAIRED);
  text = od_verify_banner_get_text (banner);
  g_assert_nonnull (strstr (text, "Cache repaired: 1 order repaired"));
  od_test_spin (200);
  g_assert_cmpint (total_of (f, order_id), ==, total);
  g_assert_true (g_str_has_prefix (od_verify_runner_get_verified_text (runner), "Verified up to "));

  /* And again: clean, said as much, and dismissed. */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (f->window), "verify.run", NULL));
  g_assert_true (od_test_wait (not_running, runner, 60000));
  g_assert_cmpint (od_verify_runner_get_outcome (runner), ==, OD_VERIFY_OUTCOME_CLEAN);
  g_assert_true (g_str_has_prefix (od_verify_banner_get_text (banner), "The cache is right"));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (f->window), "verify.dismiss", NULL));
  g_assert_null (od_verify_banner_get_text (banner));
}

/* Cancel stops the run: nothing recorded, nothing said. */
static void
test_cancel (Fixture       *f,
             gconstpointer  data)
{
  g_autoptr(OdTestServer) server = od_test_server_new ("--demo", NULL);
  g_autofree char *cache = g_build_filename (f->tmpdir, "profile.sqlite", NULL);
  OdVerifyRunner *runner;
  OdVerifyBanner *banner;

  open_window (f, od_test_server_url (server), cache);
  g_assert_true (od_test_wait (is_live, f, 30000));
  runner = od_window_get_verify_runner (f->window);
  banner = od_window_get_verify_banner (f->window);

  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (f->window), "verify.run", NULL));
  g_assert_true (od_verify_runner_get_running (runner));
  /* The banner shows the progress and its Cancel. */
  g_assert_true (g_str_has_prefix (od_verify_banner_get_text (banner), "Verifying the cache"));
  /* At once: the worker's first requests to the server are still out. */
  click (GTK_WIDGET (banner), "_Cancel");
  g_assert_true (od_test_wait (not_running, runner, 30000));
  g_assert_cmpint (od_verify_runner_get_outcome (runner), ==, OD_VERIFY_OUTCOME_NONE);
  g_assert_null (od_verify_banner_get_text (banner));
  g_assert_cmpstr (od_verify_runner_get_verified_text (runner), ==, "Never verified");
  /* It can run again. */
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (f->window), "verify.run", NULL));
  g_assert_true (od_test_wait (not_running, runner, 60000));
  g_assert_cmpint (od_verify_runner_get_outcome (runner), ==, OD_VERIFY_OUTCOME_CLEAN);
}

static gboolean
verified (gpointer data)
{
  const char *text = od_verify_runner_get_verified_text (data);

  return text != NULL && g_str_has_prefix (text, "Verified up to ");
}

/* A catch-up of more than verify-after-events events is verified by
 * itself, quietly; with the setting off, it is not. */
static void
test_automatic (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(OdTestServer) server = od_test_server_new ("--demo", NULL);
  g_autofree char *cache = g_build_filename (f->tmpdir, "profile.sqlite", NULL);
  g_autofree char *other = g_build_filename (f->tmpdir, "other.sqlite", NULL);
  GSettings *settings = od_application_get_settings ();
  OdVerifyRunner *runner;

  g_settings_set_int (settings, "verify-after-events", 50);
  g_settings_set_boolean (settings, "verify-automatically", FALSE);
  open_window (f, od_test_server_url (server), other);
  runner = od_window_get_verify_runner (f->window);
  g_assert_true (od_test_wait (is_live, f, 30000));
  od_test_spin (1000);
  g_assert_cmpstr (od_verify_runner_get_verified_text (runner), ==, "Never verified");
  gtk_window_destroy (GTK_WINDOW (f->window));
  g_clear_object (&f->window);

  g_settings_set_boolean (settings, "verify-automatically", TRUE);
  open_window (f, od_test_server_url (server), cache);
  runner = od_window_get_verify_runner (f->window);
  g_assert_cmpstr (od_verify_runner_get_verified_text (runner), ==, "Never verified");
  g_assert_true (od_test_wait (is_live, f, 30000));
  g_assert_true (od_test_wait (verified, runner, 60000));
  g_assert_true (od_test_wait (not_running, runner, 10000));
  /* Quiet when clean. */
  g_assert_null (od_verify_banner_get_text (od_window_get_verify_banner (f->window)));
}

int
main (int    argc,
      char **argv)
{
  if (!od_test_app_init (&argc, &argv))
    return 77;
  g_test_add ("/app/verify/damage-and-repair", Fixture, NULL, fixture_set_up, test_damage_and_repair,
              od_test_app_fixture_tear_down);
  g_test_add ("/app/verify/cancel", Fixture, NULL, fixture_set_up, test_cancel,
              od_test_app_fixture_tear_down);
  g_test_add ("/app/verify/automatic", Fixture, NULL, fixture_set_up, test_automatic,
              od_test_app_fixture_tear_down);
  return g_test_run ();
}

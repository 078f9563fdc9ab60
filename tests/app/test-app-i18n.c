/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <glib/gi18n.h>
#include <locale.h>
#include <string.h>

#include "od-format.h"
#include "od-test-app.h"
#include "od-test-cache.h"

/* The window in German, from the catalogue built from po/de.po. */

static char *tmpdir;

/* Debian installs no German locale by default; build one for this test
 * with localedef when the system lacks it. */
static gboolean
ensure_german_locale (void)
{
  g_autofree char *command = NULL;
  g_autofree char *target = NULL;
  int status = 0;

  if (setlocale (LC_ALL, "de_DE.UTF-8") != NULL)
    return TRUE;
  target = g_build_filename (tmpdir, "de_DE.UTF-8", NULL);
  command = g_strdup_printf ("localedef -i de_DE -f UTF-8 '%s'", target);
  if (!g_spawn_command_line_sync (command, NULL, NULL, &status, NULL))
    return FALSE;
  g_setenv ("LOCPATH", tmpdir, TRUE);
  return setlocale (LC_ALL, "de_DE.UTF-8") != NULL;
}

static void
test_german (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *shared = od_test_shared_cache (5000, &error);
  g_autofree char *cache = NULL;
  g_autoptr(OdApplication) app = NULL;
  OdWindow *window;
  OdOrderList *list;
  GListModel *columns;
  g_autoptr(GtkColumnViewColumn) customer = NULL;
  const char *text;

  g_assert_no_error (error);
  cache = od_test_copy_cache (shared, tmpdir);
  app = od_test_app_new ();
  window = od_window_new (app);
  g_assert_true (od_window_open_profile (window, "http://127.0.0.1:9", NULL, cache, TRUE, &error));
  gtk_window_present (GTK_WINDOW (window));
  list = od_window_get_order_list (window);
  od_test_wait_frame (GTK_WIDGET (list));

  columns = gtk_column_view_get_columns (od_order_list_get_column_view (list));
  customer = g_list_model_get_item (columns, 1);
  g_assert_cmpstr (gtk_column_view_column_get_title (customer), ==, "Kunde");

  text = od_lag_indicator_get_text (od_window_get_lag_indicator (window));
  g_test_message ("indicator: %s", text);
  g_assert_true (g_str_has_prefix (text, "Offline · Datenstand "));

  /* At the default width the German count and indicator are whole. */
  od_test_spin (300);
  od_test_assert_label_whole (od_test_find_label (GTK_WIDGET (od_window_get_lag_indicator (window)), text));
  od_test_assert_label_whole (od_test_find_label (GTK_WIDGET (list), "5.000 Bestellungen"));

  g_assert_cmpstr (_("Welcome to OrderDesk"), ==, "Willkommen bei OrderDesk");
  g_assert_cmpstr (_("must not be empty"), ==, "darf nicht leer sein");
  /* A refusal for the order's status says the rule in German, not the
   * server's English detail; any other detail is shown as it came. */
  {
    const char *id = "01900000-0000-7000-8000-0000000000a1";
    g_autofree char *detail = g_strdup_printf ("Order %s is shipped: only a draft or placed order "
                                               "can be cancelled.", id);
    g_autofree char *why = od_format_refusal ("CancelOrder", id, "invalid_state", detail);
    g_autofree char *other = od_format_refusal ("CancelOrder", id, "invalid_state",
                                                "Order is on hold.");
    g_autofree char *no_detail = od_format_refusal ("CancelOrder", id, "rate_limited", NULL);

    g_assert_cmpstr (why, ==, "nur ein Entwurf oder eine aufgegebene Bestellung kann storniert werden.");
    g_assert_cmpstr (other, ==, "Order is on hold.");
    g_assert_cmpstr (no_detail, ==, "rate_limited");
  }
  {
    OdCommandDialog *dialog = od_window_open_command_dialog (window, OD_COMMAND_CREATE_ORDER);

    g_assert_cmpstr (od_command_dialog_set_field (dialog, "customer_email", "x"), ==,
                     "muss genau ein @ enthalten");
    gtk_window_destroy (GTK_WINDOW (dialog));
  }
  gtk_window_destroy (GTK_WINDOW (window));
  od_test_spin (50);
}

/* Amounts take grouping and decimal point from one place, the regional
 * settings (LC_NUMERIC), whatever language the messages are in. */
static void
test_money_follows_locale (void)
{
  g_autofree char *german = NULL;
  g_autofree char *english_messages = NULL;
  g_autofree char *c_numbers = NULL;
  g_autofree char *negative = NULL;

  german = od_format_money (104075, "EUR");
  negative = od_format_money (-5, "EUR");
  /* English messages under German regional settings. */
  g_assert_nonnull (setlocale (LC_MESSAGES, "C"));
  english_messages = od_format_money (104075, "EUR");
  g_assert_nonnull (setlocale (LC_NUMERIC, "C"));
  c_numbers = od_format_money (104075, "EUR");
  g_assert_nonnull (setlocale (LC_ALL, "de_DE.UTF-8"));

  g_assert_cmpstr (german, ==, "1.040,75 EUR");
  g_assert_cmpstr (negative, ==, "−0,05 EUR");
  g_assert_cmpstr (english_messages, ==, "1.040,75 EUR");
  g_assert_cmpstr (c_numbers, ==, "1040.75 EUR");
}

/* The console the build made, run from the build tree with only
 * LANGUAGE=de (no ORDERDESK_LOCALEDIR), finds the build's catalogues: its
 * --help is German. */
static void
test_build_tree_catalogue (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *exe = g_build_filename (g_getenv ("OD_BUILD_DIR"), "src", "app", "orderdesk", NULL);
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_auto(GStrv) env = g_get_environ ();
  const char *argv[] = { exe, "--help", NULL };
  int status = -1;

  env = g_environ_unsetenv (env, "ORDERDESK_LOCALEDIR");
  env = g_environ_setenv (env, "LANGUAGE", "de", TRUE);
  g_assert_true (g_spawn_sync (NULL, (char **) argv, env, G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &err, &status, &error));
  g_assert_no_error (error);
  g_test_message ("%s", out);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
  g_assert_nonnull (strstr (out, "Basis-URL des Servers"));
}

int
main (int   argc,
      char *argv[])
{
  const char *build = g_getenv ("OD_BUILD_DIR");
  g_autofree char *localedir = NULL;
  g_autofree char *command = NULL;
  int status;

  tmpdir = g_dir_make_tmp ("od-i18n-XXXXXX", NULL);
  g_setenv ("XDG_DATA_HOME", tmpdir, TRUE);
  g_unsetenv ("LANGUAGE");
  if (!ensure_german_locale ())
    {
      g_print ("1..0 # SKIP no German locale and no localedef\n");
      return 77;
    }
  /* GTK sets the locale from the environment again. */
  g_setenv ("LC_ALL", "de_DE.UTF-8", TRUE);
  localedir = g_build_filename (build ? build : ".", "po", NULL);
  bindtextdomain (GETTEXT_PACKAGE, localedir);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  if (!od_test_app_init (&argc, &argv))
    {
      g_print ("1..0 # SKIP no display\n");
      return 77;
    }
  g_test_add_func ("/app/german", test_german);
  g_test_add_func ("/app/build-tree-catalogue", test_build_tree_catalogue);
  g_test_add_func ("/app/money-follows-locale", test_money_follows_locale);
  status = g_test_run ();

  command = g_strdup_printf ("rm -rf '%s'", tmpdir);
  g_spawn_command_line_sync (command, NULL, NULL, NULL, NULL);
  return status;
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <string.h>

#include "od-format.h"
#include "od-ledger-window.h"
#include "od-test-app.h"

/* The ledger shows commands queued by another sign-in as held, with
 * "Send as me" and "Discard"; neither happens without the click.  Its
 * rows name each command as the rest of the console does. */

static char *tmpdir;

static void
async_result (GObject      *source,
              GAsyncResult *result,
              gpointer      data)
{
  *(GAsyncResult **) data = g_object_ref (result);
}

static gint64
queue_body (OdOutbox   *outbox,
            const char *body)
{
  g_autoptr(GAsyncResult) result = NULL;
  g_autoptr(GError) error = NULL;
  gint64 command_id;

  od_outbox_submit_json_async (outbox, body, NULL, async_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  command_id = od_outbox_submit_finish (outbox, result, &error);
  g_assert_no_error (error);
  return command_id;
}

static gint64
queue (OdOutbox   *outbox,
       const char *customer)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\","
                                           "\"data\":{\"customer_name\":\"%s\","
                                           "\"customer_email\":\"h@example.com\","
                                           "\"currency\":\"EUR\"}}", id, customer);

  return queue_body (outbox, body);
}

/* The row's buttons, by label. */
static GtkWidget *
find_button (GtkWidget  *root,
             const char *label,
             guint       nth)
{
  guint seen = 0;
  GtkWidget *stack[64];
  guint depth = 0;

  stack[depth++] = root;
  while (depth > 0)
    {
      GtkWidget *w = stack[--depth];

      if (GTK_IS_BUTTON (w) && g_strcmp0 (gtk_button_get_label (GTK_BUTTON (w)), label) == 0
          && gtk_widget_get_mapped (w) && seen++ == nth)
        return w;
      for (GtkWidget *c = gtk_widget_get_last_child (w); c != NULL && depth < G_N_ELEMENTS (stack);
           c = gtk_widget_get_prev_sibling (c))
        stack[depth++] = c;
    }
  return NULL;
}

typedef struct
{
  OdOutbox *outbox;
  gint64    id;
  int       state;
  gboolean  held;
} Expect;

static gboolean
reached (gpointer data)
{
  Expect *e = data;
  g_autoptr(OdPendingCommand) c = od_outbox_get (e->outbox, e->id, NULL);

  return c != NULL && (int) c->state == e->state && c->held == e->held;
}

static gboolean
one_send_button (gpointer data)
{
  return find_button (data, "Send as _Me", 0) != NULL && find_button (data, "Send as _Me", 1) == NULL;
}

static gboolean
no_send_button (gpointer data)
{
  return find_button (data, "Send as _Me", 0) == NULL;
}

static void
test_held (void)
{
  g_autofree char *path = g_build_filename (tmpdir, "ledger.sqlite", NULL);
  /* Nothing listens there: nothing can be sent, whatever the outbox does. */
  const char *server = "http://127.0.0.1:9";
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) cache = od_cache_open (path, &error);
  g_autoptr(OdOutbox) theirs = NULL;
  g_autoptr(OdOutbox) mine = NULL;
  OdLedgerWindow *ledger;
  GtkWidget *send, *discard;
  gint64 first, second;
  Expect e;

  g_assert_no_error (error);
  theirs = od_outbox_new (cache, NULL, NULL);
  od_outbox_set_identity (theirs, server, "someone-else");
  first = queue (theirs, "Held One");
  second = queue (theirs, "Held Two");
  g_clear_object (&theirs);

  mine = od_outbox_new (cache, NULL, NULL);
  od_outbox_set_identity (mine, server, "my-token");
  ledger = od_ledger_window_new (NULL, mine, cache);
  gtk_window_present (GTK_WINDOW (ledger));
  od_ledger_window_reload (ledger);
  od_test_wait_frame (GTK_WIDGET (ledger));

  /* In a 360 px window a held row's two buttons stand one above the
   * other, and its title keeps half the row at least (side by side, in
   * German, they left it one letter a line). */
  gtk_widget_set_visible (GTK_WIDGET (ledger), FALSE);
  gtk_window_set_default_size (GTK_WINDOW (ledger), 360, 640);
  gtk_window_present (GTK_WINDOW (ledger));
  od_test_wait_frame (GTK_WIDGET (ledger));
  od_test_spin (300);
  {
    GtkWidget *send_button = find_button (GTK_WIDGET (ledger), "Send as _Me", 0);
    GtkWidget *row = gtk_widget_get_ancestor (send_button, ADW_TYPE_ACTION_ROW);
    GtkWidget *title = od_test_find_label (row, adw_preferences_row_get_title (ADW_PREFERENCES_ROW (row)));
    graphene_rect_t send_box, discard_box;

    g_assert_nonnull (title);
    g_test_message ("row %d px, title %d px", gtk_widget_get_width (row), gtk_widget_get_width (title));
    g_assert_cmpint (gtk_widget_get_width (GTK_WIDGET (ledger)), <=, 360);
    g_assert_cmpint (gtk_widget_get_width (title) * 2, >=, gtk_widget_get_width (row));
    g_assert_true (gtk_widget_compute_bounds (send_button, row, &send_box));
    g_assert_true (gtk_widget_compute_bounds (find_button (row, "_Discard", 0), row, &discard_box));
    g_assert_cmpfloat (discard_box.origin.y, >=, send_box.origin.y + send_box.size.height);
  }

  send = find_button (GTK_WIDGET (ledger), "Send as _Me", 0);
  discard = find_button (GTK_WIDGET (ledger), "_Discard", 0);
  g_assert_nonnull (send);
  g_assert_nonnull (discard);
  g_assert_nonnull (find_button (GTK_WIDGET (ledger), "Send as _Me", 1));
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (mine, first, NULL);

    g_assert_true (c->held);
  }

  /* Newest first: the first row is the second command. */
  g_signal_emit_by_name (discard, "clicked");
  e = (Expect) { mine, second, OD_COMMAND_STATE_DISCARDED, FALSE };
  g_assert_true (od_test_wait (reached, &e, 5000));

  g_assert_true (od_test_wait (one_send_button, ledger, 5000));
  send = find_button (GTK_WIDGET (ledger), "Send as _Me", 0);
  g_signal_emit_by_name (send, "clicked");
  /* Bound to this sign-in: no longer held, queued to go as "my-token". */
  e = (Expect) { mine, first, OD_COMMAND_STATE_QUEUED, FALSE };
  g_assert_true (od_test_wait (reached, &e, 5000));
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (mine, first, NULL);

    g_assert_cmpstr (c->identity_fp, ==, od_outbox_get_identity (mine));
  }
  g_assert_true (od_test_wait (no_send_button, ledger, 5000));

  gtk_window_destroy (GTK_WINDOW (ledger));
  od_test_spin (50);
}

/* The rows' titles, top to bottom. */
static GPtrArray *
row_titles (GtkWidget *root)
{
  GPtrArray *titles = g_ptr_array_new_with_free_func (g_free);
  GtkWidget *stack[64];
  guint depth = 0;

  stack[depth++] = root;
  while (depth > 0)
    {
      GtkWidget *w = stack[--depth];

      if (ADW_IS_ACTION_ROW (w))
        g_ptr_array_add (titles, g_strdup (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (w))));
      for (GtkWidget *c = gtk_widget_get_last_child (w); c != NULL && depth < G_N_ELEMENTS (stack);
           c = gtk_widget_get_prev_sibling (c))
        stack[depth++] = c;
    }
  return titles;
}

/* A row says what the command does as the rest of the console does (its
 * toasts and dialogs), not the command's wire name. */
static void
test_titles (void)
{
  g_autofree char *path = g_build_filename (tmpdir, "titles.sqlite", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) cache = od_cache_open (path, &error);
  g_autoptr(OdOutbox) outbox = NULL;
  g_autoptr(GPtrArray) titles = NULL;
  g_autofree char *order_id = od_uuid_v7_new ();
  g_autofree char *short_id = od_format_short_id (order_id);
  g_autofree char *cancel = g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\","
                                             "\"data\":{\"reason\":\"Changed their mind\"}}",
                                             order_id);
  g_autofree char *create = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\","
                                             "\"data\":{\"customer_name\":\"Ada\","
                                             "\"customer_email\":\"ada@example.com\","
                                             "\"currency\":\"EUR\"}}", order_id);
  g_autofree char *want_create = g_strdup_printf ("New order · %s", short_id);
  g_autofree char *want_cancel = g_strdup_printf ("Cancel order · %s", short_id);
  OdLedgerWindow *ledger;

  g_assert_no_error (error);
  outbox = od_outbox_new (cache, NULL, NULL);
  od_outbox_set_identity (outbox, "http://127.0.0.1:9", "my-token");
  queue_body (outbox, create);
  queue_body (outbox, cancel);
  ledger = od_ledger_window_new (NULL, outbox, cache);
  gtk_window_present (GTK_WINDOW (ledger));
  od_ledger_window_reload (ledger);
  od_test_wait_frame (GTK_WIDGET (ledger));

  /* Newest first. */
  titles = row_titles (GTK_WIDGET (ledger));
  g_assert_cmpuint (titles->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (titles, 0), ==, want_cancel);
  g_assert_cmpstr (g_ptr_array_index (titles, 1), ==, want_create);

  gtk_window_destroy (GTK_WINDOW (ledger));
  od_test_spin (50);
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *command = NULL;
  int status;

  tmpdir = g_dir_make_tmp ("od-ledger-XXXXXX", NULL);
  g_setenv ("XDG_DATA_HOME", tmpdir, TRUE);
  if (!od_test_app_init (&argc, &argv))
    {
      g_print ("1..0 # SKIP no display\n");
      return 77;
    }
  g_test_add_func ("/app/ledger-held", test_held);
  g_test_add_func ("/app/ledger-titles", test_titles);
  status = g_test_run ();

  command = g_strdup_printf ("rm -rf '%s'", tmpdir);
  g_spawn_command_line_sync (command, NULL, NULL, NULL, NULL);
  return status;
}

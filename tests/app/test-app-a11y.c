/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <atspi/atspi.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "od-test-process.h"
#include "od-test-server.h"

/* The console as a screen reader sees it: the real orderdesk binary on a
 * real server, read and driven only through the accessibility tree
 * (AT-SPI), on the private session bus that meson.build gives this test
 * (dbus-run-session) with accessibility on.  Every control must have a
 * name, and the operator's flow must work by name alone. */

/* libatspi 2.46 declares no autoptr cleanups. */
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AtspiAccessible, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AtspiAction, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AtspiEditableText, g_object_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (AtspiComponent, g_object_unref)

typedef struct
{
  OdTestServer *server;
  char         *dir;
  GSubprocess  *app_process;
  AtspiAccessible *app;
  GPtrArray    *unnamed;    /* "role 'name' in path" of controls without a name */
} Fixture;

/* Controls: what a screen reader user operates, so what must say what
 * it is.  Labels, panels and images are read through their text or skipped. */
static const AtspiRole control_roles[] = {
  ATSPI_ROLE_PUSH_BUTTON, ATSPI_ROLE_TOGGLE_BUTTON, ATSPI_ROLE_CHECK_BOX,
  ATSPI_ROLE_RADIO_BUTTON, ATSPI_ROLE_COMBO_BOX, ATSPI_ROLE_ENTRY,
  ATSPI_ROLE_PASSWORD_TEXT, ATSPI_ROLE_SPIN_BUTTON, ATSPI_ROLE_SLIDER,
  ATSPI_ROLE_MENU_ITEM, ATSPI_ROLE_CHECK_MENU_ITEM, ATSPI_ROLE_RADIO_MENU_ITEM,
  ATSPI_ROLE_PAGE_TAB, ATSPI_ROLE_LINK, ATSPI_ROLE_TREE_TABLE, ATSPI_ROLE_TABLE,
  ATSPI_ROLE_TEXT,
};

static gboolean
is_control (AtspiRole role)
{
  for (guint i = 0; i < G_N_ELEMENTS (control_roles); i++)
    if (control_roles[i] == role)
      return TRUE;
  return FALSE;
}

/* GTK 4.8 names an accessible without a label after its type
 * ("GtkImage", "GtkMenuButton"): that is no name for a person. */
static gboolean
is_unnamed (const char *name)
{
  if (name == NULL || *name == '\0')
    return TRUE;
  if (!g_str_has_prefix (name, "Gtk") && !g_str_has_prefix (name, "Adw") && !g_str_has_prefix (name, "Od"))
    return FALSE;
  for (const char *p = name; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p))
      return FALSE;
  return TRUE;
}

static char *
get_name (AtspiAccessible *a)
{
  g_autoptr(GError) error = NULL;
  char *name = atspi_accessible_get_name (a, &error);

  return name ? name : g_strdup ("");
}

/* Collects the unnamed controls under a. */
static void
check_names (Fixture         *f,
             AtspiAccessible *a,
             const char      *path,
             guint            depth)
{
  g_autoptr(GError) error = NULL;
  AtspiRole role = atspi_accessible_get_role (a, &error);
  g_autofree char *name = get_name (a);
  g_autofree char *role_name = atspi_accessible_get_role_name (a, NULL);
  g_autofree char *here = g_strdup_printf ("%s/%s", path, role_name ? role_name : "?");
  int n;

  if (error != NULL || depth > 60)
    return;
  if (is_control (role) && is_unnamed (name))
    g_ptr_array_add (f->unnamed, g_strdup_printf ("%s '%s'", here, name));
  n = atspi_accessible_get_child_count (a, NULL);
  for (int i = 0; i < n; i++)
    {
      g_autoptr(AtspiAccessible) child = atspi_accessible_get_child_at_index (a, i, NULL);

      if (child != NULL)
        check_names (f, child, here, depth + 1);
    }
}

static void
assert_all_named (Fixture         *f,
                  AtspiAccessible *root,
                  const char      *what)
{
  g_ptr_array_set_size (f->unnamed, 0);
  check_names (f, root, what, 0);
  for (guint i = 0; i < f->unnamed->len; i++)
    g_test_message ("unnamed control: %s", (char *) g_ptr_array_index (f->unnamed, i));
  g_assert_cmpuint (f->unnamed->len, ==, 0);
}

/* The first accessible under root with this role whose name contains
 * text (any name when text is NULL), depth first. */
static AtspiAccessible *
find (AtspiAccessible *root,
      AtspiRole        role,
      const char      *text)
{
  g_autoptr(GError) error = NULL;
  AtspiRole r = atspi_accessible_get_role (root, &error);
  int n;

  if (error != NULL)
    return NULL;
  if (r == role)
    {
      g_autofree char *name = get_name (root);

      if (text == NULL || strstr (name, text) != NULL)
        return g_object_ref (root);
    }
  n = atspi_accessible_get_child_count (root, NULL);
  for (int i = 0; i < n; i++)
    {
      g_autoptr(AtspiAccessible) child = atspi_accessible_get_child_at_index (root, i, NULL);
      AtspiAccessible *found = child ? find (child, role, text) : NULL;

      if (found != NULL)
        return found;
    }
  return NULL;
}

/* The first table row under root with a label naming each of texts. */
static AtspiAccessible *
find_row (AtspiAccessible    *root,
          const char * const *texts)
{
  g_autoptr(GError) error = NULL;
  AtspiRole r = atspi_accessible_get_role (root, &error);
  int n;

  if (error != NULL)
    return NULL;
  if (r == ATSPI_ROLE_TABLE_ROW)
    {
      gboolean all = TRUE;

      for (guint i = 0; texts[i] != NULL && all; i++)
        {
          g_autoptr(AtspiAccessible) cell = find (root, ATSPI_ROLE_LABEL, texts[i]);

          all = cell != NULL;
        }
      if (all)
        return g_object_ref (root);
      return NULL;
    }
  n = atspi_accessible_get_child_count (root, NULL);
  for (int i = 0; i < n; i++)
    {
      g_autoptr(AtspiAccessible) child = atspi_accessible_get_child_at_index (root, i, NULL);
      AtspiAccessible *found = child ? find_row (child, texts) : NULL;

      if (found != NULL)
        return found;
    }
  return NULL;
}

static void
spin (guint ms)
{
  g_usleep (ms * 1000);
}

/* Waits up to timeout_ms for find() to succeed anywhere in the app. */
static AtspiAccessible *
wait_find (Fixture    *f,
           AtspiRole   role,
           const char *text,
           guint       timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  do
    {
      AtspiAccessible *found = find (f->app, role, text);

      if (found != NULL)
        return found;
      spin (100);
    }
  while (g_get_monotonic_time () < deadline);
  g_test_message ("no %s named '%s'", atspi_role_get_name (role), text ? text : "");
  return NULL;
}

static void
press (AtspiAccessible *a)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(AtspiAction) action = atspi_accessible_get_action_iface (a);
  g_autofree char *name = get_name (a);

  /* A GtkMenuButton is a button holding the toggle that acts. */
  if (action == NULL || atspi_action_get_n_actions (action, NULL) == 0)
    {
      g_autoptr(AtspiAccessible) inner = atspi_accessible_get_child_at_index (a, 0, NULL);

      g_assert_nonnull (inner);
      press (inner);
      return;
    }
  g_test_message ("press '%s'", name);
  g_assert_nonnull (action);
  g_assert_true (atspi_action_do_action (action, 0, &error));
  g_assert_no_error (error);
  spin (300);
}

static void
press_named (Fixture    *f,
             AtspiRole   role,
             const char *text)
{
  g_autoptr(AtspiAccessible) a = wait_find (f, role, text, 10000);

  g_assert_nonnull (a);
  press (a);
}

/* Types into the text field the dialog names label. */
static void
fill (AtspiAccessible *dialog,
      const char      *label,
      const char      *text)
{
  g_autoptr(AtspiAccessible) field = find (dialog, ATSPI_ROLE_TEXT, label);
  g_autoptr(AtspiEditableText) editable = NULL;
  g_autoptr(GError) error = NULL;

  if (field == NULL)
    field = find (dialog, ATSPI_ROLE_ENTRY, label);
  g_assert_nonnull (field);
  editable = atspi_accessible_get_editable_text_iface (field);
  g_assert_nonnull (editable);
  g_assert_true (atspi_editable_text_set_text_contents (editable, text, &error));
  g_assert_no_error (error);
  spin (100);
}

/* The command dialog that is open: a window other than the main one
 * holding the button that sends. */
static AtspiAccessible *
wait_dialog (Fixture    *f,
             const char *send)
{
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  do
    {
      int n = atspi_accessible_get_child_count (f->app, NULL);

      for (int i = n - 1; i >= 0; i--)
        {
          g_autoptr(AtspiAccessible) window = atspi_accessible_get_child_at_index (f->app, i, NULL);
          g_autoptr(AtspiAccessible) button = window ? find (window, ATSPI_ROLE_PUSH_BUTTON, send) : NULL;

          if (button != NULL && find (window, ATSPI_ROLE_PUSH_BUTTON, "Main Menu") == NULL)
            return g_steal_pointer (&window);
        }
      spin (100);
    }
  while (g_get_monotonic_time () < deadline);
  for (int i = 0; i < atspi_accessible_get_child_count (f->app, NULL); i++)
    {
      g_autoptr(AtspiAccessible) window = atspi_accessible_get_child_at_index (f->app, i, NULL);
      g_autofree char *name = window ? get_name (window) : NULL;

      g_test_message ("window %d: '%s'", i, name);
    }
  return NULL;
}

/* Opens the dialog with the detail's (or header's) button open_text,
 * fills it and sends it with send_text. */
static void
run_dialog (Fixture     *f,
            const char  *open_text,
            const char  *send_text,
            const char **fields)
{
  g_autoptr(AtspiAccessible) dialog = NULL;

  if (g_str_equal (open_text, "New Order"))
    press_named (f, ATSPI_ROLE_PUSH_BUTTON, open_text);
  else
    {
      /* The order's actions, not the status filters ("Shipped 3"). */
      g_autoptr(AtspiAccessible) actions = wait_find (f, ATSPI_ROLE_TABLE, "Actions", 5000);
      g_autoptr(AtspiAccessible) button = actions ? find (actions, ATSPI_ROLE_PUSH_BUTTON, open_text) : NULL;

      g_assert_nonnull (button);
      press (button);
    }
  dialog = wait_dialog (f, send_text);
  g_assert_nonnull (dialog);
  assert_all_named (f, dialog, open_text);
  for (guint i = 0; fields != NULL && fields[i] != NULL; i += 2)
    fill (dialog, fields[i], fields[i + 1]);
  {
    g_autoptr(AtspiAccessible) send = find (dialog, ATSPI_ROLE_PUSH_BUTTON, send_text);

    g_assert_nonnull (send);
    press (send);
  }
}

/* Waits until some label in the app contains text. */
static void
wait_label (Fixture    *f,
            const char *text)
{
  g_autoptr(AtspiAccessible) label = wait_find (f, ATSPI_ROLE_LABEL, text, 20000);

  g_assert_nonnull (label);
}

/* The order whose customer is name shown in the detail pane: if creating
 * it did not open it, the operator finds it with the search and opens
 * its row with the keyboard. */
static gboolean
wait_detail (Fixture    *f,
             const char *name,
             const char *action,
             guint       timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  do
    {
      g_autoptr(AtspiAccessible) actions = find (f->app, ATSPI_ROLE_TABLE, "Actions");
      g_autoptr(AtspiAccessible) button = actions ? find (actions, ATSPI_ROLE_PUSH_BUTTON, action) : NULL;
      g_autoptr(AtspiAccessible) title = find (f->app, ATSPI_ROLE_LABEL, name);

      if (title != NULL && button != NULL)
        return TRUE;
      spin (200);
    }
  while (g_get_monotonic_time () < deadline);
  return FALSE;
}

static void
open_order (Fixture    *f,
            const char *name,
            const char *action)
{
  g_autoptr(AtspiAccessible) search = NULL;
  g_autoptr(AtspiEditableText) editable = NULL;
  g_autoptr(AtspiAccessible) cell = NULL;
  g_autoptr(AtspiAccessible) row = NULL;
  g_autoptr(AtspiComponent) component = NULL;

  if (wait_detail (f, name, action, 3000))
    return;
  /* Not shown: search for it, focus its row and press Enter. */
  g_test_message ("'%s' is not shown: searching for it", name);
  press_named (f, ATSPI_ROLE_PUSH_BUTTON, "Search");
  search = wait_find (f, ATSPI_ROLE_ENTRY, "Search orders", 5000);
  g_assert_nonnull (search);
  editable = atspi_accessible_get_editable_text_iface (search);
  g_assert_true (atspi_editable_text_set_text_contents (editable, name, NULL));
  cell = wait_find (f, ATSPI_ROLE_LABEL, name, 10000);
  g_assert_nonnull (cell);
  row = g_object_ref (cell);
  while (row != NULL && atspi_accessible_get_role (row, NULL) != ATSPI_ROLE_TABLE_ROW)
    {
      AtspiAccessible *parent = atspi_accessible_get_parent (row, NULL);

      g_object_unref (row);
      row = parent;
    }
  g_assert_nonnull (row);
  /* GTK 4.8 implements no GrabFocus: click the row where it says it is
   * (the window sits at 0,0 on a bare X server), as a user with a
   * screen magnifier or a switch device would. */
  component = atspi_accessible_get_component_iface (cell);
  g_assert_nonnull (component);
  {
    g_autoptr(GError) error = NULL;
    g_autofree AtspiRect *rect = atspi_component_get_extents (component, ATSPI_COORD_TYPE_WINDOW, &error);

    g_assert_no_error (error);
    g_test_message ("row at %d,%d %dx%d", rect->x, rect->y, rect->width, rect->height);
    g_assert_true (atspi_generate_mouse_event (rect->x + rect->width / 2, rect->y + rect->height / 2,
                                               "b1c", NULL));
  }
  g_assert_true (wait_detail (f, name, action, 10000));
}

static void
launch (Fixture *f)
{
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  g_autofree char *exe = g_build_filename (g_getenv ("OD_BUILD_DIR"), "src", "app", "orderdesk", NULL);
  g_autofree char *data = g_build_filename (f->dir, "data", NULL);
  g_autofree char *cache = g_build_filename (f->dir, "cache", NULL);
  g_autoptr(GError) error = NULL;
  gint64 deadline;

  g_subprocess_launcher_setenv (launcher, "XDG_DATA_HOME", data, TRUE);
  g_subprocess_launcher_setenv (launcher, "XDG_CACHE_HOME", cache, TRUE);
  g_subprocess_launcher_setenv (launcher, "ORDERDESK_TOKEN", OD_TEST_ALICE, TRUE);
  g_subprocess_launcher_setenv (launcher, "LANGUAGE", "en", TRUE);
  /* Amounts read "0.00 EUR" whatever the runner's locale. */
  g_subprocess_launcher_unsetenv (launcher, "LC_ALL");
  g_subprocess_launcher_setenv (launcher, "LC_NUMERIC", "C", TRUE);
  f->app_process = g_subprocess_launcher_spawn (launcher, &error, exe, "--server",
                                                od_test_server_url (f->server), NULL);
  g_assert_no_error (error);

  deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (f->app == NULL && g_get_monotonic_time () < deadline)
    {
      g_autoptr(AtspiAccessible) desktop = atspi_get_desktop (0);
      int n = atspi_accessible_get_child_count (desktop, NULL);
      const char *id = g_subprocess_get_identifier (f->app_process);
      GPid pid;

      /* The console ended before it showed up (no display, a crash):
       * that is the failure, not a NULL pid. */
      if (id == NULL)
        {
          g_subprocess_wait (f->app_process, NULL, NULL);
          g_error ("orderdesk exited before its window showed (%s %d)",
                   g_subprocess_get_if_signaled (f->app_process) ? "signal" : "status",
                   g_subprocess_get_if_signaled (f->app_process)
                     ? g_subprocess_get_term_sig (f->app_process)
                     : g_subprocess_get_exit_status (f->app_process));
        }
      pid = atoi (id);

      for (int i = 0; i < n && f->app == NULL; i++)
        {
          g_autoptr(AtspiAccessible) app = atspi_accessible_get_child_at_index (desktop, i, NULL);

          if (app != NULL && (GPid) atspi_accessible_get_process_id (app, NULL) == pid)
            f->app = g_steal_pointer (&app);
        }
      if (f->app == NULL)
        spin (100);
    }
  g_assert_nonnull (f->app);
}

static void
fixture_set_up (Fixture       *f,
                gconstpointer  data)
{
  f->dir = g_dir_make_tmp ("od-a11y-XXXXXX", NULL);
  f->server = od_test_server_new (NULL);
  f->unnamed = g_ptr_array_new_with_free_func (g_free);
  launch (f);
}

static void
fixture_tear_down (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  g_clear_object (&f->app);
  if (f->app_process != NULL)
    {
      g_subprocess_send_signal (f->app_process, SIGTERM);
      g_subprocess_wait (f->app_process, NULL, &error);
      g_clear_object (&f->app_process);
    }
  od_test_server_free (f->server);
  od_test_process_rmdir (f->dir);
  g_free (f->dir);
  g_ptr_array_unref (f->unnamed);
}

static void
test_operator_flow (Fixture       *f,
                    gconstpointer  data)
{
  g_autofree char *ada = g_strdup_printf ("Ada Access %d", g_random_int_range (1000, 9999));
  g_autofree char *bob = g_strdup_printf ("Bob Access %d", g_random_int_range (1000, 9999));
  const char *new_ada[] = { "Customer name", ada, "Customer e-mail", "ada@example.com",
                            "Currency", "EUR", NULL };
  const char *new_bob[] = { "Customer name", bob, "Customer e-mail", "bob@example.com",
                            "Currency", "EUR", NULL };
  const char *item[] = { "SKU", "MUG-BLUE", "Item name", "Blue mug", "Quantity", "2",
                         "Unit price", "12.99", NULL };
  const char *ship[] = { "Carrier", "DHL", "Tracking number", "JD0001", NULL };
  const char *cancel[] = { "Reason", "Customer called", NULL };
  g_autoptr(AtspiAccessible) lag = NULL;

  /* The lag indicator reads its state, and it updates. */
  lag = wait_find (f, ATSPI_ROLE_PUSH_BUTTON, "Live", 30000);
  g_assert_nonnull (lag);
  assert_all_named (f, f->app, "app");

  /* Create → add item → place → ship → mark delivered. */
  run_dialog (f, "New Order", "Create", new_ada);
  /* The new order's row reads as the text its cells show (the list's
   * text cells are inscriptions: they are named by their text). */
  {
    const char *cells[] = { ada, "Draft", "0.00 EUR", NULL };
    gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
    g_autoptr(AtspiAccessible) row = NULL;

    while (row == NULL && g_get_monotonic_time () < deadline)
      {
        row = find_row (f->app, cells);
        if (row == NULL)
          spin (100);
      }
    g_assert_nonnull (row);
  }
  open_order (f, ada, "Add Item");
  assert_all_named (f, f->app, "app with a draft");
  run_dialog (f, "Add Item", "Add", item);
  wait_label (f, "Blue mug");
  {
    g_autoptr(AtspiAccessible) remove = wait_find (f, ATSPI_ROLE_PUSH_BUTTON, "Remove Blue mug", 10000);

    g_assert_nonnull (remove);
  }
  run_dialog (f, "Place Order", "Place", NULL);
  open_order (f, ada, "Ship");
  run_dialog (f, "Ship", "Ship", ship);
  open_order (f, ada, "Mark Delivered");
  run_dialog (f, "Mark Delivered", "Mark Delivered", NULL);
  wait_label (f, "Delivered");

  /* Another order, cancelled. */
  run_dialog (f, "New Order", "Create", new_bob);
  open_order (f, bob, "Cancel Order");
  run_dialog (f, "Cancel Order", "Cancel Order", cancel);
  wait_label (f, "Customer called");
  assert_all_named (f, f->app, "app at the end");

  /* The shortcuts window has a name. */
  press_named (f, ATSPI_ROLE_PUSH_BUTTON, "Main Menu");
  press_named (f, ATSPI_ROLE_MENU_ITEM, "Keyboard Shortcuts");
  {
    gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
    gboolean found = FALSE;

    while (!found && g_get_monotonic_time () < deadline)
      {
        for (int i = 0; i < atspi_accessible_get_child_count (f->app, NULL) && !found; i++)
          {
            g_autoptr(AtspiAccessible) window = atspi_accessible_get_child_at_index (f->app, i, NULL);
            g_autofree char *name = window ? get_name (window) : NULL;

            if (g_strcmp0 (name, "Keyboard Shortcuts") == 0)
              {
                found = TRUE;
                assert_all_named (f, window, "shortcuts");
              }
          }
        spin (100);
      }
    g_assert_true (found);
  }

  /* The lag indicator's name follows the state. */
  od_test_server_stop (f->server);
  {
    g_autoptr(AtspiAccessible) reconnecting = wait_find (f, ATSPI_ROLE_PUSH_BUTTON, "Reconnecting in", 30000);

    g_assert_nonnull (reconnecting);
  }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  /* libatspi warns (domain "dbind") that GTK 4.8 has no AT-SPI cache
   * object, which it then does without: warnings from this client
   * library are not the console's problems.  Criticals stay fatal. */
  g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  if (g_getenv ("DISPLAY") == NULL || g_getenv ("DBUS_SESSION_BUS_ADDRESS") == NULL)
    {
      g_print ("SKIP: no display or no session bus of its own\n");
      return 77;
    }
  if (atspi_init () < 0)
    {
      g_print ("SKIP: no accessibility bus\n");
      return 77;
    }
  g_test_add ("/app/a11y/operator-flow", Fixture, NULL,
              fixture_set_up, test_operator_flow, fixture_tear_down);
  return g_test_run ();
}

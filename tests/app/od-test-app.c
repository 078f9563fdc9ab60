/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <adwaita.h>
#include <stdio.h>
#include <string.h>

#include "od-test-app.h"

/* The program's own session bus, up to its exit: the tests neither
 * depend on which buses the machine has (with dbus-x11, GLib would
 * autolaunch one) nor touch the developer's session. */
static GTestDBus *test_bus;

/* Whether a log record comes from the console's own code ("orderdesk",
 * "orderdesk-core", ...) rather than from GLib, GTK or a library under
 * them. */
static gboolean
is_our_domain (const GLogField *fields,
               gsize            n_fields)
{
  for (gsize i = 0; i < n_fields; i++)
    if (g_strcmp0 (fields[i].key, "GLIB_DOMAIN") == 0 && fields[i].value != NULL)
      {
        static const char ours[] = "orderdesk";
        const char *domain = fields[i].value;
        gsize length = fields[i].length < 0 ? strlen (domain) : (gsize) fields[i].length;

        return length >= strlen (ours) && strncmp (domain, ours, strlen (ours)) == 0;
      }
  return FALSE;
}

/* A warning from GLib or GTK is a finding (a handler disconnected twice,
 * a widget misused): it fails the test that logged it, including in its
 * tear-down, which destroys the window.  The console's own warnings are
 * not: tests cut connections and fill disks on purpose. */
static GLogWriterOutput
write_log (GLogLevelFlags   log_level,
           const GLogField *fields,
           gsize            n_fields,
           gpointer         user_data)
{
  GLogWriterOutput output = g_log_writer_default (log_level, fields, n_fields, user_data);

  if ((log_level & G_LOG_LEVEL_WARNING) != 0 && !is_our_domain (fields, n_fields))
    {
      const char *message = "";

      for (gsize i = 0; i < n_fields; i++)
        if (g_strcmp0 (fields[i].key, "MESSAGE") == 0 && fields[i].length < 0)
          message = fields[i].value;
      g_test_fail_printf ("a library warned: %s", message);
    }
  return output;
}

gboolean
od_test_app_init (int    *argc,
                  char ***argv)
{
  g_test_init (argc, argv, NULL);
  if (g_getenv ("DISPLAY") == NULL && g_getenv ("WAYLAND_DISPLAY") == NULL)
    return FALSE;
  /* Before any thread, as it sets DBUS_SESSION_BUS_ADDRESS; it also
   * unsets DISPLAY, which the tests need.  Its watcher process stops the
   * daemon when this program exits. */
  {
    g_autofree char *display = g_strdup (g_getenv ("DISPLAY"));

    test_bus = g_test_dbus_new (G_TEST_DBUS_NONE);
    g_test_dbus_up (test_bus);
    if (display != NULL)
      g_setenv ("DISPLAY", display, TRUE);
  }
  /* The sync engine reports lost connections as warnings; they are part
   * of what these tests do, so only criticals stay fatal. */
  g_log_set_always_fatal (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
  g_log_set_writer_func (write_log, NULL, NULL);
  gtk_init ();
  adw_init ();
  return TRUE;
}

/* One application per program.  A registered GtkApplication keeps a
 * reference to itself until its shutdown, which only g_application_run()
 * reaches; a second one with the same id would then find its object path
 * on the bus taken ("An object is already exported for the interface
 * org.gtk.Application").  Each caller gets a reference to the same one. */
OdApplication *
od_test_app_new (void)
{
  static OdApplication *app;

  if (app == NULL)
    {
      g_autoptr(GError) error = NULL;

      app = od_application_new (G_APPLICATION_NON_UNIQUE);
      g_application_register (G_APPLICATION (app), NULL, &error);
      g_assert_no_error (error);
    }
  return g_object_ref (app);
}

void
od_test_app_fixture_set_up (OdTestAppFixture *f,
                            gconstpointer     data)
{
  g_autoptr(GError) error = NULL;

  f->tmpdir = g_dir_make_tmp ("od-app-test-XXXXXX", &error);
  g_assert_no_error (error);
  g_setenv ("XDG_DATA_HOME", f->tmpdir, TRUE);
  f->app = od_test_app_new ();
}

void
od_test_app_close_window (OdTestAppFixture *f)
{
  if (f->window != NULL)
    {
      gtk_window_destroy (GTK_WINDOW (f->window));
      g_clear_object (&f->window);
      od_test_spin (50);
    }
}

void
od_test_app_fixture_tear_down (OdTestAppFixture *f,
                               gconstpointer     data)
{
  g_autofree char *command = NULL;

  od_test_app_close_window (f);
  g_clear_object (&f->app);
  command = g_strdup_printf ("rm -rf '%s'", f->tmpdir);
  g_assert_true (g_spawn_command_line_sync (command, NULL, NULL, NULL, NULL));
  g_free (f->tmpdir);
}

gboolean
od_test_wait (OdTestCondition cond,
              gpointer        data,
              guint           timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (!cond (data))
    {
      if (g_get_monotonic_time () > deadline)
        return FALSE;
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (2000);
    }
  return TRUE;
}

static gboolean
never (gpointer data)
{
  return FALSE;
}

void
od_test_spin (guint ms)
{
  od_test_wait (never, NULL, ms);
}

static void
on_after_paint (GdkFrameClock *clock,
                gboolean      *painted)
{
  *painted = TRUE;
}

static gboolean
is_true (gpointer data)
{
  return *(gboolean *) data;
}

void
od_test_wait_frame (GtkWidget *widget)
{
  GdkFrameClock *clock;
  gboolean painted = FALSE;
  gulong id;

  g_assert_true (od_test_wait ((OdTestCondition) gtk_widget_get_mapped, widget, 10000));
  clock = gtk_widget_get_frame_clock (widget);
  g_assert_nonnull (clock);
  id = g_signal_connect (clock, "after-paint", G_CALLBACK (on_after_paint), &painted);
  gtk_widget_queue_draw (widget);
  g_assert_true (od_test_wait (is_true, &painted, 10000));
  g_signal_handler_disconnect (clock, id);
}

gsize
od_test_rss_kib (void)
{
  g_autofree char *status = NULL;
  const char *line;

  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return 0;
  line = strstr (status, "VmRSS:");
  return line ? g_ascii_strtoull (line + 6, NULL, 10) : 0;
}

guint16
od_test_free_port (void)
{
  g_autoptr(GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                                            G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;
  guint16 port;

  g_socket_bind (socket, address, FALSE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (socket, &error);
  g_assert_no_error (error);
  port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  g_socket_close (socket, NULL);
  return port;
}

char *
od_test_copy_cache (const char *path,
                    const char *dir)
{
  g_autofree char *base = g_path_get_basename (path);
  char *copy = g_build_filename (dir, base, NULL);
  g_autoptr(GFile) from = g_file_new_for_path (path);
  g_autoptr(GFile) to = g_file_new_for_path (copy);
  g_autoptr(GError) error = NULL;

  g_file_copy (from, to, G_FILE_COPY_OVERWRITE, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  return copy;
}

const char *
od_test_cell_text (GtkWidget *cell)
{
  for (GtkWidget *widget = cell; widget != NULL; widget = gtk_widget_get_first_child (widget))
    {
      if (GTK_IS_INSCRIPTION (widget))
        {
          const char *text = gtk_inscription_get_text (GTK_INSCRIPTION (widget));

          return text ? text : "";
        }
      if (GTK_IS_LABEL (widget))
        return gtk_label_get_label (GTK_LABEL (widget));
    }
  return NULL;
}

static GtkWidget *
find_label (GtkWidget  *root,
            const char *text,
            gboolean    prefix)
{
  if (GTK_IS_LABEL (root) && gtk_widget_get_mapped (root)
      && (prefix ? g_str_has_prefix (gtk_label_get_text (GTK_LABEL (root)), text)
                 : g_strcmp0 (gtk_label_get_text (GTK_LABEL (root)), text) == 0))
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_label (child, text, prefix);

      if (found != NULL)
        return found;
    }
  return NULL;
}

GtkWidget *
od_test_find_label (GtkWidget  *root,
                    const char *text)
{
  return find_label (root, text, FALSE);
}

GtkWidget *
od_test_find_label_prefix (GtkWidget  *root,
                           const char *prefix)
{
  return find_label (root, prefix, TRUE);
}

void
od_test_assert_label_whole (GtkWidget *label)
{
  GtkWidget *window = GTK_WIDGET (gtk_widget_get_root (label));
  graphene_rect_t bounds;
  int natural = 0;

  g_assert_true (gtk_widget_get_mapped (label));
  gtk_widget_measure (label, GTK_ORIENTATION_HORIZONTAL, -1, NULL, &natural, NULL, NULL);
  g_test_message ("'%s': %d of %d px in a window %d px wide",
                  gtk_label_get_text (GTK_LABEL (label)), gtk_widget_get_width (label), natural,
                  gtk_widget_get_width (window));
  /* The measure counts the margins, the width does not. */
  g_assert_cmpint (gtk_widget_get_width (label) + gtk_widget_get_margin_start (label)
                   + gtk_widget_get_margin_end (label), >=, natural);
  g_assert_true (gtk_widget_compute_bounds (label, window, &bounds));
  g_assert_cmpfloat (bounds.origin.x, >=, 0);
  g_assert_cmpfloat (bounds.origin.x + bounds.size.width, <=, gtk_widget_get_width (window) + 0.5);
}

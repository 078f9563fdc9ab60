/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <adwaita.h>
#include <glib/gi18n.h>
#include <locale.h>

#include "od-order-item.h"
#include "od-command-dialog-private.h"
#include "od-window-private.h"

/* A guided tour of every screen against a running server, taking a
 * screenshot of each (under Xvfb: `xvfb-run -a -s '-screen 0 1280x800x24'
 * od-tour --server URL --token TOKEN --out DIR`).  The screenshots in
 * data/screenshots/ come from it. */

static char *out_dir;
/* The full tour's window and screenshot size (--width, --height). */
static int tour_w = 1100;
static int tour_h = 720;

static gboolean
never (gpointer data)
{
  return FALSE;
}

static void
spin (guint ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) ms * 1000;

  while (g_get_monotonic_time () < deadline)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (2000);
  (void) never;
}

static void
shot (const char *name,
      int         width,
      int         height)
{
  g_autofree char *path = g_build_filename (out_dir, name, NULL);
  g_autofree char *command = g_strdup_printf ("import -window root -crop %dx%d+0+0 +repage '%s'",
                                              width, height, path);

  spin (400);
  if (!g_spawn_command_line_sync (command, NULL, NULL, NULL, NULL))
    g_printerr ("could not take %s\n", name);
  else
    g_print ("%s\n", path);
}

/* Shrinks the window to WIDTH × HEIGHT without a window manager: the
 * default size only applies to an unmapped window. */
static void
resize (gpointer window,
        int      width,
        int      height)
{
  gtk_widget_set_visible (GTK_WIDGET (window), FALSE);
  gtk_window_set_default_size (GTK_WINDOW (window), width, height);
  gtk_window_present (GTK_WINDOW (window));
  spin (1200);
}

/* The windows shown besides WINDOW (the ledger, the preferences) at
 * the tour's size; or every other window destroyed. */
static void
other_windows (OdWindow *window,
               gboolean  destroy)
{
  GList *toplevels = gtk_window_list_toplevels ();

  for (GList *l = toplevels; l; l = l->next)
    if (l->data != window)
      {
        if (destroy)
          gtk_window_destroy (l->data);
        else if (gtk_widget_get_visible (l->data))
          resize (l->data, tour_w, tour_h);
      }
  g_list_free (toplevels);
}

static gboolean
is_live (OdWindow *window)
{
  OdLag *lag = od_lag_indicator_get_lag (od_window_get_lag_indicator (window));

  return lag != NULL && od_lag_get_state (lag) == OD_LAG_STATE_LIVE;
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *server = NULL;
  g_autofree char *token = NULL;
  g_autofree char *cache = NULL;
  gboolean welcome_only = FALSE;
  g_autofree char *suffix = NULL;
  gboolean sizes = FALSE;
  GOptionEntry entries[] = {
    { "server", 0, 0, G_OPTION_ARG_STRING, &server, "Server URL", "URL" },
    { "token", 0, 0, G_OPTION_ARG_STRING, &token, "Token", "TOKEN" },
    { "cache", 0, 0, G_OPTION_ARG_FILENAME, &cache, "Cache file", "FILE" },
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &out_dir, "Where the PNGs go", "DIR" },
    { "welcome", 0, 0, G_OPTION_ARG_NONE, &welcome_only, "Only the welcome page", NULL },
    { "sizes", 0, 0, G_OPTION_ARG_NONE, &sizes, "Only the list and an order at 1280×800, 800×600 and 360×640", NULL },
    { "suffix", 0, 0, G_OPTION_ARG_STRING, &suffix, "Appended to each size's file names, e.g. -de", "TEXT" },
    { "width", 0, 0, G_OPTION_ARG_INT, &tour_w, "Width of the full tour's window (1100)", "PX" },
    { "height", 0, 0, G_OPTION_ARG_INT, &tour_h, "Height of the full tour's window (720)", "PX" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr(GOptionContext) context = g_option_context_new ("— tour the console's screens");
  g_autoptr(GError) error = NULL;
  g_autoptr(OdApplication) app = NULL;
  OdWindow *window;
  gint64 deadline;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, g_getenv ("ORDERDESK_LOCALEDIR") ? g_getenv ("ORDERDESK_LOCALEDIR") : "/usr/share/locale");
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  if (out_dir == NULL)
    out_dir = g_strdup (".");

  gtk_init ();
  adw_init ();
  /* Xvfb has no compositor: the transparent shadow around popovers would
   * come out black in the screenshots. */
  {
    g_autoptr(GtkCssProvider) css = gtk_css_provider_new ();

    gtk_css_provider_load_from_data (css, "popover > contents { box-shadow: none; border: 1px solid alpha(black, 0.15); }"
                                          "popover > arrow { box-shadow: none; }", -1);
    gtk_style_context_add_provider_for_display (gdk_display_get_default (), GTK_STYLE_PROVIDER (css),
                                                GTK_STYLE_PROVIDER_PRIORITY_APPLICATION + 1);
  }
  app = od_application_new (G_APPLICATION_NON_UNIQUE);
  g_application_register (G_APPLICATION (app), NULL, NULL);

  window = od_window_new (app);
  gtk_window_present (GTK_WINDOW (window));
  if (welcome_only || server == NULL)
    {
      spin (3000);
      shot ("welcome.png", tour_w, tour_h);
      gtk_window_destroy (GTK_WINDOW (window));
      return 0;
    }

  if (!od_window_open_profile (window, server, token, cache, FALSE, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }
  deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (!is_live (window) && g_get_monotonic_time () < deadline)
    spin (100);
  spin (2500);
  if (sizes)
    {
      static const int size[][2] = { { 1280, 800 }, { 800, 600 }, { 360, 640 } };
      OdOrderList *list = od_window_get_order_list (window);

      for (guint i = 0; i < G_N_ELEMENTS (size); i++)
        {
          int w = size[i][0];
          int h = size[i][1];
          g_autofree char *orders = g_strdup_printf ("orders-%dx%d%s.png", w, h, suffix ? suffix : "");
          g_autofree char *detail = g_strdup_printf ("detail-%dx%d%s.png", w, h, suffix ? suffix : "");
          g_autofree char *back = g_strdup_printf ("back-%dx%d%s.png", w, h, suffix ? suffix : "");

          gtk_widget_activate_action (GTK_WIDGET (window), "win.back", NULL);
          resize (window, w, h);
          shot (orders, w, h);
          od_order_list_select_position (list, 3 + i);
          spin (800);
          shot (detail, w, h);
          /* Narrow: the back button leads to the list again. */
          if (w < 720)
            {
              gtk_widget_activate_action (GTK_WIDGET (window), "win.back", NULL);
              spin (800);
              shot (back, w, h);
            }
        }
      gtk_window_destroy (GTK_WINDOW (window));
      return 0;
    }
  resize (window, tour_w, tour_h);
  shot ("orders.png", tour_w, tour_h);

  /* An order with a history: pick one placed or later. */
  {
    OdOrderList *list = od_window_get_order_list (window);
    GListModel *model = G_LIST_MODEL (od_order_list_get_model (list));
    guint chosen = 0;

    for (guint i = 0; i < MIN (g_list_model_get_n_items (model), 60); i++)
      {
        g_autoptr(OdOrderItem) item = g_list_model_get_item (model, i);

        if (od_order_item_get_row (item)->status == OD_STATUS_SHIPPED)
          {
            chosen = i;
            break;
          }
      }
    od_order_list_select_position (list, chosen);
    spin (800);
    shot ("detail.png", tour_w, tour_h);

    /* The same order as it was after its second event. */
    {
      OdOrderDetail *detail = od_window_get_order_detail (window);
      const OdOrder *order = od_order_detail_get_order (detail);
      g_autoptr(GPtrArray) events = order ? od_query_timeline (od_window_get_cache (window),
                                                              order->order_id, NULL) : NULL;

      if (events != NULL && events->len > 2)
        {
          od_order_detail_show_past (detail, ((OdEvent *) g_ptr_array_index (events, 1))->position);
          shot ("detail-past.png", tour_w, tour_h);
          od_order_detail_show_past (detail, -1);
        }
    }
  }

  od_lag_indicator_popup (od_window_get_lag_indicator (window));
  spin (1500);
  shot ("lag.png", tour_w, tour_h);
  od_lag_indicator_popdown (od_window_get_lag_indicator (window));
  spin (300);

  {
    OdCommandDialog *dialog = od_window_open_command_dialog (window, OD_COMMAND_CREATE_ORDER);

    od_command_dialog_set_field (dialog, "customer_name", "Ada Lovelace");
    od_command_dialog_set_field (dialog, "customer_email", "ada@");
    shot ("dialog.png", tour_w, tour_h);
    gtk_window_destroy (GTK_WINDOW (dialog));
  }
  {
    /* Cancelling a shipped order: the server refuses, with its reason. */
    OdCommandDialog *dialog = od_window_open_command_dialog (window, OD_COMMAND_CANCEL_ORDER);

    if (dialog != NULL)
      {
        od_command_dialog_set_field (dialog, "reason", "Customer called");
        od_command_dialog_send (dialog);
        spin (1500);
        shot ("refused.png", tour_w, tour_h);
      }
  }
  gtk_widget_activate_action (GTK_WIDGET (window), "win.ledger", NULL);
  spin (500);
  other_windows (window, FALSE);
  shot ("ledger.png", tour_w, tour_h);
  other_windows (window, TRUE);
  od_window_show_preferences (window);
  spin (500);
  other_windows (window, FALSE);
  shot ("preferences.png", tour_w, tour_h);
  other_windows (window, TRUE);
  od_order_list_focus_search (od_window_get_order_list (window));
  od_order_list_set_search (od_window_get_order_list (window), "Novak");
  spin (600);
  shot ("search.png", tour_w, tour_h);
  /* Nothing found, then rows again: the rows shown after are the new
   * search's (the view kept its row widgets in between). */
  od_order_list_set_search (od_window_get_order_list (window), "Novakx");
  spin (600);
  shot ("search-none.png", tour_w, tour_h);
  od_order_list_set_search (od_window_get_order_list (window), "Vogel");
  spin (600);
  shot ("search-again.png", tour_w, tour_h);
  od_order_list_set_search (od_window_get_order_list (window), NULL);
  od_order_list_set_status (od_window_get_order_list (window), OD_STATUS_PLACED);
  spin (600);
  shot ("filter.png", tour_w, tour_h);
  od_order_list_set_status (od_window_get_order_list (window), OD_STATUS_NONE);
  gtk_widget_activate_action (GTK_WIDGET (window), "win.show-help-overlay", NULL);
  spin (800);
  shot ("shortcuts.png", tour_w, tour_h);
  return 0;
}

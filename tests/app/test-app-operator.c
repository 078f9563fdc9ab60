/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <gdk/x11/gdkx.h>
#include <X11/Xlib.h>
#include <X11/extensions/XTest.h>
#include <X11/keysym.h>
#include <string.h>

#include "od-command.h"
#include "od-format.h"
#include "od-order-item.h"
#include "od-test-app.h"
#include "od-test-cache.h"
#include "od-test-server.h"
#include "od-uuid.h"

/* The console as an operator drives it: keys typed through the X server
 * (XTest, so they take GTK's real input path: the focused window, its
 * shortcuts and event controllers), scrolling as a wheel flick moves the
 * list's adjustment, and checks of what the row widgets on screen show. */

#define ROWS_CACHE 50000

typedef OdTestAppFixture Fixture;

static Display *
x_display (void)
{
  GdkDisplay *display = gdk_display_get_default ();

  if (!GDK_IS_X11_DISPLAY (display))
    return NULL;
  return gdk_x11_display_get_xdisplay (display);
}

static gboolean
window_active (gpointer data)
{
  return gtk_window_is_active (GTK_WINDOW (data));
}

static void
open_window (Fixture    *f,
             const char *url,
             const char *token,
             const char *cache,
             gboolean    offline)
{
  g_autoptr(GError) error = NULL;
  GdkSurface *surface;

  f->window = g_object_ref_sink (od_window_new (f->app));
  g_assert_true (od_window_open_profile (f->window, url, token, cache, offline, &error));
  g_assert_no_error (error);
  gtk_window_set_default_size (GTK_WINDOW (f->window), 1100, 720);
  gtk_window_present (GTK_WINDOW (f->window));
  od_test_wait_frame (GTK_WIDGET (f->window));
  /* No window manager under Xvfb: give the window the keyboard. */
  surface = gtk_native_get_surface (GTK_NATIVE (f->window));
  XSetInputFocus (x_display (), gdk_x11_surface_get_xid (surface), RevertToParent, CurrentTime);
  XSync (x_display (), False);
  g_assert_true (od_test_wait (window_active, f->window, 5000));
}

/* Keys through the X server, as a keyboard sends them. */
static void
press_keysym (KeySym keysym,
              gboolean down)
{
  Display *dpy = x_display ();
  KeyCode code = XKeysymToKeycode (dpy, keysym);

  g_assert_cmpuint (code, !=, 0);
  XTestFakeKeyEvent (dpy, code, down, CurrentTime);
  XFlush (dpy);
}

static void
key (KeySym modifier,
     KeySym keysym)
{
  if (modifier != NoSymbol)
    press_keysym (modifier, TRUE);
  press_keysym (keysym, TRUE);
  press_keysym (keysym, FALSE);
  if (modifier != NoSymbol)
    press_keysym (modifier, FALSE);
  XSync (x_display (), False);
  od_test_spin (20);
}

static void
type_text (const char *text)
{
  for (const char *p = text; *p != '\0'; p++)
    {
      KeySym keysym;

      if (*p == ' ')
        keysym = XK_space;
      else if (*p == '-')
        keysym = XK_minus;
      else if (*p == '.')
        keysym = XK_period;
      else
        keysym = (KeySym) g_ascii_tolower (*p);
      key (g_ascii_isupper (*p) ? XK_Shift_L : NoSymbol, keysym);
    }
}

static OdOrderListModel *
list_model (Fixture *f)
{
  return od_order_list_get_model (od_window_get_order_list (f->window));
}

/* The rows on screen, by the list's own widgets: for each, its position
 * (from where it is drawn and the adjustment) and what its cells say. */

typedef struct
{
  guint  position;
  char  *short_id;
  char  *customer;
  char  *status;
  char  *total;
} ShownRow;

static void
shown_row_free (ShownRow *row)
{
  g_free (row->short_id);
  g_free (row->customer);
  g_free (row->status);
  g_free (row->total);
  g_free (row);
}

/* Whether anything of the cell is drawn: a cell made transparent until
 * it is updated shows nothing, which is allowed; old text is not. */
static gboolean
cell_visible (GtkWidget *cell)
{
  for (GtkWidget *w = cell; w != NULL; w = gtk_widget_get_first_child (w))
    if (gtk_widget_get_opacity (w) <= 0 || !gtk_widget_get_child_visible (w))
      return FALSE;
  return TRUE;
}

static GPtrArray *
shown_rows (GtkColumnView *view,
            guint         *blank)
{
  GPtrArray *rows = g_ptr_array_new_with_free_func ((GDestroyNotify) shown_row_free);
  GtkWidget *list_view = gtk_widget_get_last_child (GTK_WIDGET (view));
  GtkAdjustment *adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (view));
  int height = gtk_widget_get_height (list_view);

  for (GtkWidget *row = gtk_widget_get_first_child (list_view); row != NULL;
       row = gtk_widget_get_next_sibling (row))
    {
      GtkWidget *cells[6];
      graphene_rect_t bounds;
      ShownRow *shown;
      guint i = 0;
      gboolean visible = TRUE;

      if (!gtk_widget_get_mapped (row) || !gtk_widget_get_child_visible (row)
          || !gtk_widget_compute_bounds (row, list_view, &bounds)
          || bounds.size.height <= 0
          || bounds.origin.y + bounds.size.height <= 0 || bounds.origin.y >= height)
        continue;
      for (GtkWidget *cell = gtk_widget_get_first_child (row); cell != NULL && i < 6;
           cell = gtk_widget_get_next_sibling (cell))
        cells[i++] = cell;
      g_assert_cmpuint (i, ==, 6);
      for (i = 0; i < 6; i++)
        visible = visible && cell_visible (cells[i]);
      if (!visible)
        {
          /* All of the row, or nothing of it. */
          for (i = 0; i < 6; i++)
            g_assert_false (cell_visible (cells[i]) && *od_test_cell_text (cells[i]) != '\0');
          (*blank)++;
          continue;
        }
      shown = g_new0 (ShownRow, 1);
      shown->position = (guint) ((gtk_adjustment_get_value (adjustment) + bounds.origin.y
                                  + bounds.size.height / 2) / bounds.size.height);
      shown->short_id = g_strdup (od_test_cell_text (cells[0]));
      shown->customer = g_strdup (od_test_cell_text (cells[1]));
      shown->status = g_strdup (od_test_cell_text (cells[2]));
      shown->total = g_strdup (od_test_cell_text (cells[4]));
      g_ptr_array_add (rows, shown);
    }
  return rows;
}

/* Compares every row on screen with what the core's query gives at that
 * position; returns the number of mismatched rows. */
static guint
count_mismatches (Fixture  *f,
                  gboolean  by_model,
                  guint    *n_shown,
                  guint    *n_blank)
{
  OdOrderList *list = od_window_get_order_list (f->window);
  OdCache *cache = od_window_get_cache (f->window);
  const OdOrderQuery *query = od_order_list_model_get_query (list_model (f));
  g_autoptr(GPtrArray) rows = NULL;
  gint64 count = by_model ? g_list_model_get_n_items (G_LIST_MODEL (list_model (f)))
                          : od_query_count_orders (cache, query, NULL);
  guint mismatched = 0;

  rows = shown_rows (od_order_list_get_column_view (list), n_blank);
  *n_shown += rows->len;
  for (guint i = 0; i < rows->len; i++)
    {
      ShownRow *shown = g_ptr_array_index (rows, i);
      g_autoptr(GPtrArray) truth = NULL;
      const OdOrderRow *row;
      g_autofree char *short_id = NULL;
      g_autofree char *total = NULL;

      if (shown->position >= count)
        {
          g_test_message ("row %u shown (%s %s) beyond the %" G_GINT64_FORMAT " results",
                          shown->position, shown->short_id, shown->customer, count);
          mismatched++;
          continue;
        }
      if (by_model)
        {
          /* Live: the cache moves on between two refreshes of the list;
           * what the list holds is what must be shown. */
          g_autoptr(OdOrderItem) item = g_list_model_get_item (G_LIST_MODEL (list_model (f)),
                                                               shown->position);

          truth = g_ptr_array_new_with_free_func ((GDestroyNotify) od_order_row_free);
          g_ptr_array_add (truth, od_order_row_copy (od_order_item_get_row (item)));
        }
      else
        truth = od_query_orders_at (cache, query, shown->position, 1, NULL);
      g_assert_nonnull (truth);
      g_assert_cmpuint (truth->len, ==, 1);
      row = g_ptr_array_index (truth, 0);
      short_id = od_format_short_id (row->order_id);
      total = od_format_money (row->total_cents, row->currency);
      if (g_strcmp0 (short_id, shown->short_id) != 0
          || g_strcmp0 (row->customer_name, shown->customer) != 0
          || g_strcmp0 (od_format_status (row->status), shown->status) != 0
          || g_strcmp0 (total, shown->total) != 0)
        {
          g_test_message ("row %u shows %s %s %s %s, the query has %s %s %s %s", shown->position,
                          shown->short_id, shown->customer, shown->status, shown->total,
                          short_id, row->customer_name, od_format_status (row->status), total);
          mismatched++;
        }
    }
  return mismatched;
}

typedef struct
{
  Fixture    *f;
  const char *search;
} SearchWait;

static gboolean
search_applied (gpointer data)
{
  SearchWait *w = data;
  const OdOrderQuery *query = od_order_list_model_get_query (list_model (w->f));

  return query->search != NULL && g_ascii_strcasecmp (query->search, w->search) == 0;
}

static gboolean
search_cleared (gpointer data)
{
  Fixture *f = data;

  return od_order_list_model_get_query (list_model (f))->search == NULL;
}

/* A random order's surname, or its short id, or a SKU. */
static char *
random_query (OdCache *cache,
              guint    n)
{
  OdOrderQuery all = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL };
  g_autoptr(GPtrArray) rows = od_query_orders_at (cache, &all, g_test_rand_int_range (0, n), 1, NULL);
  const OdOrderRow *row;
  const char *space;

  g_assert_nonnull (rows);
  g_assert_cmpuint (rows->len, ==, 1);
  row = g_ptr_array_index (rows, 0);
  /* Typed as keys: names with letters beyond ASCII are searched by id. */
  if (!g_str_is_ascii (row->customer_name))
    return od_format_short_id (row->order_id);
  switch (g_test_rand_int_range (0, 3))
    {
    case 0:
      return od_format_short_id (row->order_id);
    case 1:
      space = strrchr (row->customer_name, ' ');
      return g_strdup (space ? space + 1 : row->customer_name);
    default:
      return g_strndup (row->customer_name, strcspn (row->customer_name, " "));
    }
}

/* Scrolls far, as one long wheel flick does (the adjustment moves a
 * little each frame, further and further), then Ctrl+F and a query typed
 * at once: every row on screen must be the query's row at its position. */
static void
test_scroll_then_search (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *shared = od_test_shared_cache (ROWS_CACHE, &error);
  g_autofree char *cache = NULL;
  guint runs = g_test_thorough () ? 300 : 100;
  guint mismatched = 0;
  guint shown = 0;
  guint blank = 0;
  guint from_empty = 0;
  OdOrderList *list;
  GtkColumnView *view;
  GtkAdjustment *adjustment;

  g_assert_no_error (error);
  cache = od_test_copy_cache (shared, f->tmpdir);
  open_window (f, "http://127.0.0.1:9", NULL, cache, TRUE);
  list = od_window_get_order_list (f->window);
  view = od_order_list_get_column_view (list);
  adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (view));
  od_test_spin (100);

  for (guint run = 0; run < runs; run++)
    {
      g_autofree char *query = random_query (od_window_get_cache (f->window), ROWS_CACHE);
      double target;
      double start;
      SearchWait w = { f, query };
      guint run_mismatched = 0;

      /* Back to every order (Escape in the search entry). */
      if (od_order_list_model_get_query (list_model (f))->search != NULL)
        {
          key (NoSymbol, XK_Escape);
          g_assert_true (od_test_wait (search_cleared, f, 5000));
        }
      od_test_wait_frame (GTK_WIDGET (view));

      /* The flick: ten frames, each moving further. */
      start = gtk_adjustment_get_value (adjustment);
      target = g_test_rand_double_range (0.05, 1.0)
               * (gtk_adjustment_get_upper (adjustment) - gtk_adjustment_get_page_size (adjustment));
      for (guint step = 1; step <= 10; step++)
        {
          double t = step / 10.0;

          gtk_adjustment_set_value (adjustment, start + (target - start) * (1 - (1 - t) * (1 - t)));
          od_test_wait_frame (GTK_WIDGET (view));
        }

      /* Where the flick ended, every row shown is the list's. */
      run_mismatched += count_mismatches (f, FALSE, &shown, &blank);

      /* Ctrl+F and the query, at once; one run in three first types
       * past it to a text nothing matches and takes that back: the view
       * keeps its rows hidden meanwhile and must show the query's. */
      key (XK_Control_L, XK_f);
      od_test_spin (60);
      if (g_test_rand_int_range (0, 3) == 0)
        {
          g_autofree char *nothing = g_strconcat (query, "qzx", NULL);
          SearchWait none = { f, nothing };

          type_text (nothing);
          if (!od_test_wait (search_applied, &none, 5000))
            g_error ("\"%s\" typed, the list searches \"%s\"", nothing,
                     od_order_list_model_get_query (list_model (f))->search);
          /* The view is hidden behind the "no orders" page. */
          od_test_wait_frame (GTK_WIDGET (list));
          if (g_list_model_get_n_items (G_LIST_MODEL (list_model (f))) == 0)
            from_empty++;
          for (guint i = 0; i < 3; i++)
            key (NoSymbol, XK_BackSpace);
        }
      else
        type_text (query);
      if (!od_test_wait (search_applied, &w, 5000))
        g_error ("\"%s\" typed, the list searches \"%s\"; focus on %s", query,
                 od_order_list_model_get_query (list_model (f))->search,
                 G_OBJECT_TYPE_NAME (gtk_root_get_focus (GTK_ROOT (f->window))));
      od_test_wait_frame (GTK_WIDGET (view));
      if (g_list_model_get_n_items (G_LIST_MODEL (list_model (f))) == 0)
        continue;
      /* The first frame, and a few later ones as the rest is updated. */
      for (guint frame = 0; frame < 4; frame++)
        {
          run_mismatched += count_mismatches (f, FALSE, &shown, &blank);
          od_test_wait_frame (GTK_WIDGET (view));
        }
      if (run_mismatched > 0)
        g_test_message ("run %u: \"%s\" after scrolling to %.0f: %u mismatched rows",
                        run, query, target, run_mismatched);
      mismatched += run_mismatched;
    }
  g_test_message ("%u runs (%u from an empty result): %u rows compared, %u blank, %u mismatched",
                  runs, from_empty, shown, blank, mismatched);
  g_assert_cmpuint (shown, >, runs);
  g_assert_cmpuint (from_empty, >, 0);
  g_assert_cmpuint (mismatched, ==, 0);
}

/* A search shows its first page at once and reads the rest of the rows
 * GTK holds after that frame (od_order_list_model_settle).  Right after a
 * search with many results (in the same main loop turn, or after its
 * first frame), the view jumps to a random row among the first 300:
 * every row then shown must be the query's, never an older order, and
 * the model must hold the query's rows at every position. */
static void
test_search_then_jump (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *shared = od_test_shared_cache (ROWS_CACHE, &error);
  g_autofree char *cache = NULL;
  guint runs = g_test_thorough () ? 300 : 100;
  guint mismatched = 0;
  guint shown = 0;
  guint blank = 0;
  guint deep = 0;
  OdOrderList *list;
  GtkColumnView *view;
  GtkAdjustment *adjustment;

  g_assert_no_error (error);
  cache = od_test_copy_cache (shared, f->tmpdir);
  open_window (f, "http://127.0.0.1:9", NULL, cache, TRUE);
  list = od_window_get_order_list (f->window);
  view = od_order_list_get_column_view (list);
  adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (view));
  od_test_spin (100);

  for (guint run = 0; run < runs; run++)
    {
      OdCache *c = od_window_get_cache (f->window);
      OdOrderQuery all = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, NULL };
      g_autoptr(GPtrArray) pick = od_query_orders_at (c, &all, g_test_rand_int_range (0, ROWS_CACHE),
                                                      1, NULL);
      const OdOrderRow *picked = g_ptr_array_index (pick, 0);
      /* A first name: hundreds of results; sometimes every order. */
      g_autofree char *query = g_test_rand_int_range (0, 8) == 0
        ? NULL : g_strndup (picked->customer_name, strcspn (picked->customer_name, " "));
      guint n, target, run_mismatched = 0;
      double row_height;

      od_order_list_set_search (list, query);
      n = g_list_model_get_n_items (G_LIST_MODEL (list_model (f)));
      if (n == 0)
        continue;
      if (g_test_rand_bit ())
        od_test_wait_frame (GTK_WIDGET (view));
      /* The rows' height from a layout before this search. */
      row_height = gtk_adjustment_get_upper (adjustment) / MAX (n, 1);
      target = g_test_rand_int_range (0, MIN (n, 300));
      deep += target >= 100;
      if (row_height > 0)
        gtk_adjustment_set_value (adjustment, target * row_height);
      for (guint frame = 0; frame < 4; frame++)
        {
          od_test_wait_frame (GTK_WIDGET (view));
          run_mismatched += count_mismatches (f, FALSE, &shown, &blank);
        }
      /* The model holds the query's rows (read if still deferred). */
      {
        const OdOrderQuery *q = od_order_list_model_get_query (list_model (f));
        g_autoptr(GPtrArray) truth = od_query_orders (c, q, NULL, MIN (n, 300), NULL);

        for (guint i = 0; i < truth->len; i++)
          {
            g_autoptr(OdOrderItem) item = g_list_model_get_item (G_LIST_MODEL (list_model (f)), i);

            if (g_strcmp0 (od_order_item_get_order_id (item),
                           ((OdOrderRow *) g_ptr_array_index (truth, i))->order_id) != 0)
              run_mismatched++;
          }
      }
      if (run_mismatched > 0)
        g_test_message ("run %u: \"%s\" (%u rows), jump to %u: %u mismatched", run,
                        query ? query : "", n, target, run_mismatched);
      mismatched += run_mismatched;
    }
  g_test_message ("%u runs (%u jumps below row 100): %u rows compared, %u blank, %u mismatched",
                  runs, deep, shown, blank, mismatched);
  g_assert_cmpuint (shown, >, runs);
  g_assert_cmpuint (deep, >, runs / 4);
  g_assert_cmpuint (mismatched, ==, 0);
}

static gboolean
window_live (gpointer data)
{
  OdWindow *window = data;
  OdSyncEngine *sync = od_window_get_sync_engine (window);

  return sync != NULL && od_lag_get_state (od_sync_engine_get_lag (sync)) == OD_LAG_STATE_LIVE;
}

static void
focus_window (GtkWindow *window)
{
  GdkSurface *surface = gtk_native_get_surface (GTK_NATIVE (window));

  XSetInputFocus (x_display (), gdk_x11_surface_get_xid (surface), RevertToParent, CurrentTime);
  XSync (x_display (), False);
  g_assert_true (od_test_wait (window_active, window, 5000));
}

static OdCommandDialog *
find_dialog (void)
{
  GListModel *toplevels = gtk_window_get_toplevels ();

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr(GObject) window = g_list_model_get_item (toplevels, i);

      if (OD_IS_COMMAND_DIALOG (window) && gtk_widget_get_mapped (GTK_WIDGET (window)))
        return OD_COMMAND_DIALOG (window);
    }
  return NULL;
}

static gboolean
dialog_shown (gpointer data)
{
  return find_dialog () != NULL;
}

static gboolean
dialog_gone (gpointer data)
{
  return find_dialog () == NULL;
}

/* The dialog opened by the keys just pressed, with the keyboard. */
static OdCommandDialog *
wait_dialog (void)
{
  OdCommandDialog *dialog;

  g_assert_true (od_test_wait (dialog_shown, NULL, 5000));
  dialog = find_dialog ();
  od_test_wait_frame (GTK_WIDGET (dialog));
  focus_window (GTK_WINDOW (dialog));
  return dialog;
}

/* The text of the entry row the focus is in, or NULL. */
static const char *
focused_field (OdCommandDialog *dialog)
{
  GtkWidget *focus = gtk_root_get_focus (GTK_ROOT (dialog));
  GtkWidget *row = focus ? gtk_widget_get_ancestor (focus, ADW_TYPE_ENTRY_ROW) : NULL;

  return row ? gtk_editable_get_text (GTK_EDITABLE (row)) : NULL;
}

typedef struct
{
  OdCommandDialog *dialog;
  const char      *text;
} FieldWait;

static gboolean
field_is (gpointer data)
{
  FieldWait *w = data;

  return find_dialog () == w->dialog && g_strcmp0 (focused_field (w->dialog), w->text) == 0;
}

/* Keys take their time through the X server on a busy machine. */
static void
assert_focused_field (OdCommandDialog *dialog,
                      const char      *text)
{
  FieldWait w = { dialog, text };

  if (!od_test_wait (field_is, &w, 3000))
    g_error ("the focus is not in a field with \"%s\": %s", text,
             find_dialog () == dialog ? focused_field (dialog) : "(the dialog closed)");
}

typedef struct
{
  OdWindow   *window;
  const char *customer;
} CreatedWait;

static gboolean
created_shown (gpointer data)
{
  CreatedWait *w = data;
  OdOrderList *list = od_window_get_order_list (w->window);
  const OdOrder *order = od_order_detail_get_order (od_window_get_order_detail (w->window));
  GtkSingleSelection *selection =
    GTK_SINGLE_SELECTION (gtk_column_view_get_model (od_order_list_get_column_view (list)));
  OdOrderItem *item = gtk_single_selection_get_selected_item (selection);

  return order != NULL && g_strcmp0 (order->customer_name, w->customer) == 0
         && item != NULL && g_strcmp0 (od_order_item_get_row (item)->customer_name, w->customer) == 0;
}

/* Ctrl+N and typing: the keys go into the dialog's first field, Enter
 * goes from field to field and sends from the last; the new order is
 * then selected and shown. */
static void
test_create_by_keyboard (Fixture       *f,
                         gconstpointer  data)
{
  g_autoptr(OdTestServer) server = od_test_server_new ("--demo", NULL);
  g_autofree char *cache = g_build_filename (f->tmpdir, "profile.sqlite", NULL);
  OdCommandDialog *dialog;
  CreatedWait w;

  open_window (f, od_test_server_url (server), OD_TEST_ALICE, cache, FALSE);
  g_assert_true (od_test_wait (window_live, f->window, 30000));
  focus_window (GTK_WINDOW (f->window));

  key (XK_Control_L, XK_n);
  dialog = wait_dialog ();
  type_text ("Zed Keyboard");
  /* Not closed by the space bar on a focused Cancel button. */
  assert_focused_field (dialog, "Zed Keyboard");
  key (NoSymbol, XK_Return);
  type_text ("zed.keyboard");
  key (XK_Shift_L, XK_at);
  type_text ("example.org");
  /* Enter in a field that is not the last does not send. */
  assert_focused_field (dialog, "zed.keyboard@example.org");
  key (NoSymbol, XK_Return);
  assert_focused_field (dialog, "EUR");
  key (NoSymbol, XK_Return);
  g_assert_true (od_test_wait (dialog_gone, NULL, 5000));

  w = (CreatedWait) { f->window, "Zed Keyboard" };
  g_assert_true (od_test_wait (created_shown, &w, 20000));
}

typedef struct
{
  Fixture *f;
  guint    n;
} CountWait;

static gboolean
count_grew (gpointer data)
{
  CountWait *w = data;

  return g_list_model_get_n_items (G_LIST_MODEL (list_model (w->f))) >= w->n;
}

/* Live traffic, sorted by Updated: a view at the top stays there with
 * its selection; a view scrolled down is not pulled to the top. */
static void
test_live_stays_at_top (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(OdTestServer) server = od_test_server_new ("--demo", "--demo-traffic", "20", NULL);
  g_autofree char *cache = g_build_filename (f->tmpdir, "profile.sqlite", NULL);
  OdOrderList *list;
  GtkColumnView *view;
  GtkAdjustment *adjustment;
  GtkSingleSelection *selection;
  g_autofree char *selected_id = NULL;
  CountWait w;

  open_window (f, od_test_server_url (server), OD_TEST_ALICE, cache, FALSE);
  g_assert_true (od_test_wait (window_live, f->window, 30000));
  list = od_window_get_order_list (f->window);
  view = od_order_list_get_column_view (list);
  adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (view));
  selection = GTK_SINGLE_SELECTION (gtk_column_view_get_model (view));
  g_assert_cmpint (od_order_list_model_get_query (list_model (f))->sort, ==, OD_ORDER_SORT_UPDATED);
  od_test_wait_frame (GTK_WIDGET (view));
  g_assert_cmpfloat (gtk_adjustment_get_value (adjustment), ==, 0);
  od_order_list_select_position (list, 3);
  selected_id = g_strdup (od_order_list_get_selected_order_id (list));
  g_assert_nonnull (selected_id);

  /* New orders arrive above. */
  w = (CountWait) { f, g_list_model_get_n_items (G_LIST_MODEL (list_model (f))) + 5 };
  g_assert_true (od_test_wait (count_grew, &w, 30000));
  od_test_wait_frame (GTK_WIDGET (view));
  od_test_wait_frame (GTK_WIDGET (view));
  g_test_message ("after new orders: view at %.0f, upper %.0f",
                  gtk_adjustment_get_value (adjustment), gtk_adjustment_get_upper (adjustment));
  g_assert_cmpfloat (gtk_adjustment_get_value (adjustment), ==, 0);
  g_assert_cmpstr (od_order_list_get_selected_order_id (list), ==, selected_id);
  g_assert_nonnull (gtk_single_selection_get_selected_item (selection));
  g_assert_cmpstr (od_order_item_get_order_id (gtk_single_selection_get_selected_item (selection)),
                   ==, selected_id);
  {
    guint n_shown = 0;
    guint n_blank = 0;

    g_assert_cmpuint (count_mismatches (f, TRUE, &n_shown, &n_blank), ==, 0);
  }

  /* Scrolled down right after a live refresh at the top, before the
   * frame that lays the refresh out: the operator's scroll wins (the
   * refresh's return to the top is only for a view GTK moved). */
  od_order_list_refresh (list);
  gtk_adjustment_set_value (adjustment, 40 * gtk_adjustment_get_upper (adjustment)
                                        / g_list_model_get_n_items (G_LIST_MODEL (list_model (f))));
  od_test_wait_frame (GTK_WIDGET (view));
  od_test_wait_frame (GTK_WIDGET (view));
  g_assert_cmpfloat (gtk_adjustment_get_value (adjustment), >, 0);

  /* Scrolled down: the operator's place is kept, not reset. */
  w.n = g_list_model_get_n_items (G_LIST_MODEL (list_model (f))) + 3;
  g_assert_true (od_test_wait (count_grew, &w, 30000));
  od_test_wait_frame (GTK_WIDGET (view));
  g_assert_cmpfloat (gtk_adjustment_get_value (adjustment), >, 0);
}

typedef struct
{
  Fixture    *f;
  const char *order_id;
} TopWait;

static gboolean
order_on_top (gpointer data)
{
  TopWait *w = data;
  g_autoptr(OdOrderItem) item = g_list_model_get_item (G_LIST_MODEL (list_model (w->f)), 0);

  return item != NULL && g_strcmp0 (od_order_item_get_order_id (item), w->order_id) == 0;
}

/* Sorted by Updated, scrolled down: an order on screen that changes goes
 * to the top of the list; the view stays on the other rows.  GTK keeps
 * one row of the view (its anchor) in place when rows change and, when
 * that row's order moves, follows it: to the top.  Which row it keeps
 * depends on the scroll, so every row on screen changes in turn, from
 * the bottom up (each change below the anchor moves the rows above it,
 * the anchor with them, by one). */
static void
test_live_moved_row (Fixture       *f,
                     gconstpointer  data)
{
  g_autoptr(OdTestServer) server = od_test_server_new ("--demo", NULL);
  g_autofree char *cache = g_build_filename (f->tmpdir, "profile.sqlite", NULL);
  OdOrderList *list;
  GtkColumnView *view;
  GtkAdjustment *adjustment;
  guint n_in_view;
  guint blank = 0;

  open_window (f, od_test_server_url (server), OD_TEST_ALICE, cache, FALSE);
  g_assert_true (od_test_wait (window_live, f->window, 30000));
  list = od_window_get_order_list (f->window);
  view = od_order_list_get_column_view (list);
  adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (view));
  g_assert_cmpint (od_order_list_model_get_query (list_model (f))->sort, ==, OD_ORDER_SORT_UPDATED);
  g_assert_true (od_order_list_model_get_query (list_model (f))->descending);
  od_test_wait_frame (GTK_WIDGET (view));
  gtk_adjustment_set_value (adjustment, 300 * gtk_adjustment_get_upper (adjustment)
                                        / g_list_model_get_n_items (G_LIST_MODEL (list_model (f))));
  od_test_wait_frame (GTK_WIDGET (view));
  od_test_wait_frame (GTK_WIDGET (view));
  {
    g_autoptr(GPtrArray) rows = shown_rows (view, &blank);

    n_in_view = rows->len;
  }
  g_assert_cmpuint (n_in_view, >=, 10);

  for (guint offset = n_in_view; offset > 0; offset--)
    {
      g_autoptr(GPtrArray) before = shown_rows (view, &blank);
      g_autoptr(GPtrArray) after = NULL;
      g_autoptr(OdOrderItem) item = NULL;
      g_autoptr(OdCommand) command = NULL;
      g_autofree char *order_id = NULL;
      g_autofree char *description = NULL;
      guint first = G_MAXUINT;
      guint kept = 0;
      guint n_shown = 0;
      TopWait w;

      for (guint i = 0; i < before->len; i++)
        first = MIN (first, ((ShownRow *) g_ptr_array_index (before, i))->position);
      item = g_list_model_get_item (G_LIST_MODEL (list_model (f)), first + offset - 1);
      g_assert_nonnull (item);
      order_id = g_strdup (od_order_item_get_order_id (item));
      command = od_command_new (OD_COMMAND_ADD_ORDER_NOTE, order_id);
      command->text = g_strdup ("Checked by phone");
      description = g_strdup_printf ("Note on row %u", first + offset - 1);
      od_window_submit (f->window, command, description);
      w = (TopWait) { f, order_id };
      g_assert_true (od_test_wait (order_on_top, &w, 20000));
      od_test_wait_frame (GTK_WIDGET (view));
      od_test_wait_frame (GTK_WIDGET (view));

      /* The rows shown before, but the one that went to the top, are
       * still shown, give or take the one row at each edge. */
      after = shown_rows (view, &blank);
      for (guint i = 0; i < before->len; i++)
        {
          ShownRow *a = g_ptr_array_index (before, i);

          for (guint j = 0; j < after->len; j++)
            if (g_strcmp0 (a->short_id, ((ShownRow *) g_ptr_array_index (after, j))->short_id) == 0)
              kept++;
        }
      g_test_message ("row %u to the top: view at %.0f, %u of %u rows still shown",
                      first + offset - 1, gtk_adjustment_get_value (adjustment), kept, before->len);
      g_assert_cmpfloat (gtk_adjustment_get_value (adjustment), >, 0);
      g_assert_cmpuint (kept + 3, >=, before->len);
      g_assert_cmpuint (count_mismatches (f, TRUE, &n_shown, &blank), ==, 0);
    }
}

/* Many orders at once above a view scrolled down (a catch-up after a
 * while offline), and an order on screen changed too: the rows the view
 * showed are now in pages the list has not read again, and the one it
 * finds is the order that went to the top.  That one order must not take
 * the view there: the view follows the rows it showed, found by a count
 * on the cache, and every row shown is the list's.  Rounds of random
 * sizes and places, bursts both smaller and larger than the pages the
 * list holds. */
static void
test_live_burst_above (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename (f->tmpdir, "burst.sqlite", NULL);
  g_autoptr(OdCache) cache = NULL;
  GtkWidget *window;
  OdOrderList *list;
  GtkColumnView *view;
  GtkAdjustment *adjustment;
  OdOrderListModel *model;
  guint added = 0;

  g_assert_true (od_test_make_cache (path, 3000, &error));
  g_assert_no_error (error);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  window = gtk_window_new ();
  gtk_window_set_default_size (GTK_WINDOW (window), 1100, 720);
  list = OD_ORDER_LIST (od_order_list_new ());
  gtk_window_set_child (GTK_WINDOW (window), GTK_WIDGET (list));
  od_order_list_set_cache (list, cache);
  od_order_list_sort_by (list, OD_ORDER_SORT_UPDATED, TRUE);
  gtk_window_present (GTK_WINDOW (window));
  view = od_order_list_get_column_view (list);
  adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (view));
  model = od_order_list_get_model (list);
  od_test_wait_frame (GTK_WIDGET (view));

  for (guint round = 0; round < 4; round++)
    {
      g_autoptr(GString) sql = g_string_new ("BEGIN;");
      g_autoptr(GPtrArray) before = NULL;
      g_autoptr(GPtrArray) after = NULL;
      g_autoptr(OdOrderItem) moved = NULL;
      g_autoptr(OdOrderItem) top = NULL;
      g_autofree char *moved_short = NULL;
      guint target = g_test_rand_int_range (250, 1500);
      guint burst = round == 0 ? 400 : g_test_rand_int_range (150, 1500);
      guint offset = g_test_rand_int_range (2, 8);
      guint blank = 0;
      guint first = G_MAXUINT;
      guint kept = 0;

      gtk_adjustment_set_value (adjustment, target * gtk_adjustment_get_upper (adjustment)
                                            / g_list_model_get_n_items (G_LIST_MODEL (model)));
      od_test_wait_frame (GTK_WIDGET (view));
      od_test_wait_frame (GTK_WIDGET (view));
      before = shown_rows (view, &blank);
      for (guint i = 0; i < before->len; i++)
        first = MIN (first, ((ShownRow *) g_ptr_array_index (before, i))->position);
      g_assert_cmpuint (first, >=, 200);

      /* `burst` new orders, and a row on screen changed after them. */
      for (guint i = 0; i < burst; i++, added++)
        {
          char id[OD_UUID_LEN + 1];

          od_uuid_v7_fill (id, G_GINT64_CONSTANT (32503680000000) + added);
          g_string_append_printf (sql, "INSERT INTO orders (order_id, customer_name, status,"
                                       " version, created_at, updated_at, last_position) VALUES"
                                       " ('%s', 'Burst %u', 'placed', 1,"
                                       " '2999-01-01T%02u:%02u:%02u.000Z',"
                                       " '2999-01-01T%02u:%02u:%02u.000Z', %u);",
                                  id, added, added / 3600, added / 60 % 60, added % 60,
                                  added / 3600, added / 60 % 60, added % 60, 1000000 + added);
        }
      moved = g_list_model_get_item (G_LIST_MODEL (model), first + offset);
      moved_short = od_format_short_id (od_order_item_get_order_id (moved));
      g_string_append_printf (sql, "UPDATE orders SET updated_at = '3000-01-01T00:00:%02u.000Z'"
                                   " WHERE order_id = '%s'; COMMIT;",
                              round, od_order_item_get_order_id (moved));
      od_test_cache_write (path, sql->str);
      od_order_list_refresh (list);
      od_test_wait_frame (GTK_WIDGET (view));
      od_test_wait_frame (GTK_WIDGET (view));
      top = g_list_model_get_item (G_LIST_MODEL (model), 0);
      g_assert_cmpstr (od_order_item_get_order_id (top), ==, od_order_item_get_order_id (moved));

      /* Every row shown is the list's. */
      after = shown_rows (view, &blank);
      g_assert_cmpuint (after->len, >, 10);
      for (guint i = 0; i < after->len; i++)
        {
          ShownRow *shown = g_ptr_array_index (after, i);
          g_autoptr(OdOrderItem) item = g_list_model_get_item (G_LIST_MODEL (model),
                                                               shown->position);
          g_autofree char *short_id = od_format_short_id (od_order_item_get_order_id (item));

          g_assert_cmpstr (shown->short_id, ==, short_id);
        }
      /* The rows shown before, but the one that went to the top, are
       * still shown, give or take the one row at each edge. */
      for (guint i = 0; i < before->len; i++)
        {
          ShownRow *a = g_ptr_array_index (before, i);

          for (guint j = 0; j < after->len; j++)
            if (g_strcmp0 (a->short_id, ((ShownRow *) g_ptr_array_index (after, j))->short_id) == 0)
              kept++;
        }
      g_test_message ("round %u: %u orders above row %u, row %u to the top: view at row %.0f,"
                      " %u of %u rows still shown", round, burst, first, first + offset,
                      gtk_adjustment_get_value (adjustment)
                      * g_list_model_get_n_items (G_LIST_MODEL (model))
                      / gtk_adjustment_get_upper (adjustment), kept, before->len);
      g_assert_cmpuint (kept + 3, >=, before->len);
    }
  gtk_window_destroy (GTK_WINDOW (window));
  od_test_spin (50);
}

/* A pointer click through the X server at (x, y) of widget. */
static void
click_at (GtkWidget *widget,
          double     x,
          double     y,
          guint      button)
{
  GtkNative *native = gtk_widget_get_native (widget);
  GdkSurface *surface = gtk_native_get_surface (native);
  Display *dpy = x_display ();
  graphene_point_t point;
  double sx;
  double sy;
  int rx;
  int ry;
  Window child;

  g_assert_true (gtk_widget_compute_point (widget, GTK_WIDGET (native),
                                           &GRAPHENE_POINT_INIT (x, y), &point));
  gtk_native_get_surface_transform (native, &sx, &sy);
  XTranslateCoordinates (dpy, gdk_x11_surface_get_xid (surface), DefaultRootWindow (dpy),
                         (int) (point.x + sx), (int) (point.y + sy), &rx, &ry, &child);
  XTestFakeMotionEvent (dpy, -1, rx, ry, CurrentTime);
  XSync (dpy, False);
  od_test_spin (30);
  XTestFakeButtonEvent (dpy, button, True, CurrentTime);
  XTestFakeButtonEvent (dpy, button, False, CurrentTime);
  XSync (dpy, False);
  od_test_spin (30);
}

static void
collect_menu_items (GtkWidget *widget,
                    GString   *out)
{
  if (!gtk_widget_get_visible (widget))
    return;
  if (g_str_equal (G_OBJECT_TYPE_NAME (widget), "GtkModelButton"))
    {
      g_autofree char *text = NULL;

      g_object_get (widget, "text", &text, NULL);
      if (out->len > 0)
        g_string_append (out, ", ");
      g_string_append (out, text);
      return;
    }
  for (GtkWidget *child = gtk_widget_get_first_child (widget); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    collect_menu_items (child, out);
}

/* The row menu open on the list, and what it offers ("" if none). */
static char *
row_menu_items (OdOrderList *list)
{
  GString *out = g_string_new (NULL);

  for (GtkWidget *child = gtk_widget_get_first_child (GTK_WIDGET (list)); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    if (GTK_IS_POPOVER_MENU (child) && gtk_widget_get_mapped (child))
      collect_menu_items (child, out);
  return g_string_free (out, FALSE);
}

static gboolean
row_menu_open (gpointer data)
{
  g_autofree char *items = row_menu_items (data);

  return *items != '\0';
}

static gboolean
row_menu_closed (gpointer data)
{
  return !row_menu_open (data);
}

typedef struct
{
  OdWindow     *window;
  OdOrderStatus status;
} StatusWait;

static gboolean
detail_status_is (gpointer data)
{
  StatusWait *w = data;
  const OdOrder *order = od_order_detail_get_order (od_window_get_order_detail (w->window));

  return order != NULL && order->status == w->status;
}

/* The row menu by right click and by Shift+F10 offers what the order's
 * status allows, and its shortcut opens the dialog, typed into. */
static void
test_row_menu (Fixture       *f,
               gconstpointer  data)
{
  g_autoptr(OdTestServer) server = od_test_server_new ("--demo", NULL);
  g_autofree char *cache = g_build_filename (f->tmpdir, "profile.sqlite", NULL);
  g_autofree char *items = NULL;
  g_autofree char *clicked_id = NULL;
  g_autoptr(GPtrArray) rows = NULL;
  OdOrderList *list;
  GtkColumnView *view;
  GtkWidget *list_view;
  GtkWidget *row = NULL;
  OdCommandDialog *dialog;
  StatusWait w;
  guint blank = 0;
  int n = 0;

  open_window (f, od_test_server_url (server), OD_TEST_ALICE, cache, FALSE);
  g_assert_true (od_test_wait (window_live, f->window, 30000));
  list = od_window_get_order_list (f->window);
  view = od_order_list_get_column_view (list);
  od_order_list_set_status (list, OD_STATUS_PLACED);
  od_test_wait_frame (GTK_WIDGET (view));
  od_test_spin (100);
  focus_window (GTK_WINDOW (f->window));

  /* Right click on the third row on screen. */
  rows = shown_rows (view, &blank);
  g_assert_cmpuint (rows->len, >, 3);
  list_view = gtk_widget_get_last_child (GTK_WIDGET (view));
  for (GtkWidget *r = gtk_widget_get_first_child (list_view); r != NULL; r = gtk_widget_get_next_sibling (r))
    {
      graphene_rect_t bounds;

      if (gtk_widget_get_mapped (r) && gtk_widget_compute_bounds (r, list_view, &bounds)
          && bounds.origin.y >= 0 && n++ == 2)
        {
          row = r;
          break;
        }
    }
  g_assert_nonnull (row);
  clicked_id = g_strdup (od_test_cell_text (gtk_widget_get_first_child (row)));
  click_at (row, 40, gtk_widget_get_height (row) / 2.0, 3);
  g_assert_true (od_test_wait (row_menu_open, list, 5000));
  items = row_menu_items (list);
  g_test_message ("row menu of a placed order: %s", items);
  g_assert_cmpstr (items, ==, "Ship…, Cancel Order…, Add Note…");
  /* The menu is about the row clicked, which is now selected. */
  {
    g_autofree char *short_id = od_format_short_id (od_order_list_get_selected_order_id (list));

    g_assert_cmpstr (short_id, ==, clicked_id);
  }
  key (NoSymbol, XK_Escape);
  g_assert_true (od_test_wait (row_menu_closed, list, 5000));

  /* Shift+F10 on the list: the same menu. */
  gtk_widget_grab_focus (GTK_WIDGET (view));
  key (XK_Shift_L, XK_F10);
  g_assert_true (od_test_wait (row_menu_open, list, 5000));
  g_clear_pointer (&items, g_free);
  items = row_menu_items (list);
  g_assert_cmpstr (items, ==, "Ship…, Cancel Order…, Add Note…");
  key (NoSymbol, XK_Escape);
  g_assert_true (od_test_wait (row_menu_closed, list, 5000));

  /* Its shortcut: Ctrl+Shift+S, then the carrier and tracking number. */
  press_keysym (XK_Control_L, TRUE);
  press_keysym (XK_Shift_L, TRUE);
  press_keysym (XK_s, TRUE);
  press_keysym (XK_s, FALSE);
  press_keysym (XK_Shift_L, FALSE);
  press_keysym (XK_Control_L, FALSE);
  dialog = wait_dialog ();
  type_text ("DHL");
  assert_focused_field (dialog, "DHL");
  key (NoSymbol, XK_Return);
  type_text ("TRACK1");
  assert_focused_field (dialog, "TRACK1");
  key (NoSymbol, XK_Return);
  g_assert_true (od_test_wait (dialog_gone, NULL, 5000));
  w = (StatusWait) { f->window, OD_STATUS_SHIPPED };
  g_assert_true (od_test_wait (detail_status_is, &w, 20000));
}

/* Small wrong things of issue 10, point 8. */
static void
test_format (void)
{
  gint64 now = g_get_real_time ();
  g_autoptr(GDateTime) then = g_date_time_new_from_unix_utc (now / G_USEC_PER_SEC - 50);
  g_autofree char *stamp = g_date_time_format_iso8601 (then);
  g_autofree char *text = od_format_relative (stamp, now);
  g_autoptr(GDateTime) old = g_date_time_new_from_unix_utc (now / G_USEC_PER_SEC - 30 * 86400);
  g_autofree char *old_stamp = g_date_time_format_iso8601 (old);
  g_autofree char *old_text = od_format_relative (old_stamp, now);
  g_autofree char *full = od_format_timestamp (old_stamp);

  /* 45–59 s: the number printed is 1, and so is the plural form's. */
  g_assert_cmpstr (text, ==, "1 minute ago");
  /* The C locale: dates as ISO 8601, not "12/05/26". */
  g_assert_true (od_format_c_time_locale ());
  g_assert_true (g_regex_match_simple ("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", old_text, 0, 0));
  g_assert_true (g_regex_match_simple ("^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$",
                                       full, 0, 0));
}

int
main (int   argc,
      char *argv[])
{
  if (!od_test_app_init (&argc, &argv))
    return 77;
  if (x_display () == NULL)
    {
      g_test_skip ("needs an X display (XTest)");
      return 77;
    }

  g_test_add_func ("/operator/format", test_format);
  g_test_add ("/operator/create-by-keyboard", Fixture, NULL, od_test_app_fixture_set_up,
              test_create_by_keyboard, od_test_app_fixture_tear_down);
  g_test_add ("/operator/row-menu", Fixture, NULL, od_test_app_fixture_set_up,
              test_row_menu, od_test_app_fixture_tear_down);
  g_test_add ("/operator/live-stays-at-top", Fixture, NULL, od_test_app_fixture_set_up,
              test_live_stays_at_top, od_test_app_fixture_tear_down);
  g_test_add ("/operator/live-moved-row", Fixture, NULL, od_test_app_fixture_set_up,
              test_live_moved_row, od_test_app_fixture_tear_down);
  g_test_add ("/operator/live-burst-above", Fixture, NULL, od_test_app_fixture_set_up,
              test_live_burst_above, od_test_app_fixture_tear_down);
  g_test_add ("/operator/scroll-then-search", Fixture, NULL, od_test_app_fixture_set_up,
              test_scroll_then_search, od_test_app_fixture_tear_down);
  g_test_add ("/operator/search-then-jump", Fixture, NULL, od_test_app_fixture_set_up,
              test_search_then_jump, od_test_app_fixture_tear_down);
  return g_test_run ();
}

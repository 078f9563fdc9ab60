/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-application.h"
#include "od-format.h"
#include "od-keep-model.h"
#include "od-order-item.h"
#include "od-order-list.h"
#include "od-status-pill.h"

/* The order list: a GtkColumnView over the lazy OdOrderListModel, with a
 * status filter (with counts), a search bar and sortable columns.  Sorting
 * is done by the cache's indexes, never by a GtkSortListModel: the column
 * view's sorter only tells which column and direction the operator chose. */

typedef enum
{
  COL_ORDER,
  COL_CUSTOMER,
  COL_STATUS,
  COL_ITEMS,
  COL_TOTAL,
  COL_UPDATED,
  N_COLUMNS
} Column;

static const struct
{
  const char *name;
  const char *title;
  int         sort; /* OdOrderSort, or -1 */
  gboolean    expand;
  gboolean    numeric;
  guint       min_chars;  /* a text cell's width, in average characters */
  guint       nat_chars;
} columns[N_COLUMNS] = {
  { "order", N_("Order"), -1, FALSE, TRUE, 13, 13 },
  { "customer", N_("Customer"), OD_ORDER_SORT_CUSTOMER, TRUE, FALSE, 8, 16 },
  { "status", N_("Status"), -1, FALSE, FALSE, 0, 0 },
  { "items", N_("Items"), -1, FALSE, TRUE, 3, 5 },
  /* A total is never cut short: its cell is as wide as "123,456.78 EUR". */
  { "total", N_("Total"), OD_ORDER_SORT_TOTAL, FALSE, TRUE, 12, 12 },
  { "updated", N_("Updated"), OD_ORDER_SORT_UPDATED, FALSE, FALSE, 6, 16 },
};

/* Every status, in the order of the enum: "All" (NONE) first. */
#define N_FILTERS OD_STATUS_N

/* What fit_columns () does, in this order. */
typedef enum
{
  FIT_HIDE_ITEMS,
  FIT_HIDE_UPDATED,
  FIT_COMPACT_STATUS,
  FIT_HIDE_STATUS,
  FIT_N_STEPS
} FitStep;

struct _OdOrderList
{
  GtkWidget            parent_instance;

  GtkSearchBar        *search_bar;
  GtkSearchEntry      *search_entry;
  GtkBox              *filter_box;
  GtkLabel            *count_label;
  GtkLabel            *search_note;
  GtkStack            *stack;
  GtkColumnView       *column_view;
  AdwStatusPage       *empty_page;

  GtkColumnViewColumn *columns[N_COLUMNS];
  GtkToggleButton     *filter_buttons[N_FILTERS];
  OdOrderListModel    *model;
  OdCache             *cache;          /* the model's, for its search-complete */
  GtkSingleSelection  *selection;
  GHashTable          *pending;
  OdOrderStatus        status;
  OdOrderSort          sort;
  gboolean             descending;
  char                *selected_id;
  gboolean             applying_sort;
  GHashTable          *stale_cells; /* GtkListItem → itself, ref held */
  guint                stale_tick_id;
  guint                settle_id;   /* idle: reads a new query's deferred pages */
  gint64               stale_frame;
  GtkAdjustment       *vadjustment;
  GtkAdjustment       *hadjustment;
  guint                fit_idle;
  /* The steps fit_columns () took, and the width the columns needed
   * before each. */
  guint                fit_steps;
  double               fit_need[FIT_N_STEPS];
  double               row_height;
  GdkFrameClock       *frame_clock;
  /* Our handlers on it, by id: GTK's own tick handler there has this
   * widget as its data too, so disconnecting by data would take it. */
  gulong               frame_clock_ids[5];
  gboolean             in_layout;
  GHashTable          *time_cells;  /* bound "Updated" GtkListItems, no refs */
  GHashTable          *status_cells; /* bound "Status" GtkListItems, no refs */
  gboolean             status_compact; /* see fit_columns () */
  gboolean             fit_again;      /* a fit step was taken: fit after its layout */
  gint64               now_usec;    /* what relative times count from */
  guint                times_source;
  gboolean             setting_search;
  gboolean             updating_model; /* and then the counts itself */
  guint                shown_n;        /* the count update_counts() showed */
  /* Where the view goes back to after a live refresh lays out: the top,
   * or where more than half of the rows it showed went. */
  gboolean             keep_place;
  double               keep_value;
  guint                keep_place_tick;
  GtkWidget           *row_menu;
};

G_DEFINE_FINAL_TYPE (OdOrderList, od_order_list, GTK_TYPE_WIDGET)

enum {
  SELECTION_CHANGED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void on_selection_changed (OdOrderList *self);
static void update_cell (GtkListItem *list_item);
static void update_stale_in_view (OdOrderList *self);

/* Set by the column sorters while the view's sorter is probed; see
 * read_view_sort(). */
static int probed_column = -1;

static int
column_compare (gconstpointer a,
                gconstpointer b,
                gpointer      user_data)
{
  probed_column = GPOINTER_TO_INT (user_data);
  return GTK_ORDERING_SMALLER;
}

/* GTK 4.8 has no public way to ask the column view which column is the
 * primary sort key.  Every column sorter reports itself and answers
 * "smaller", so comparing two probe items through the view's sorter
 * calls exactly the primary column, and the sign tells the direction.
 * (Two distinct probes: a sorter may answer "equal" for one item with
 * itself without asking anyone.) */
static gboolean
read_view_sort (OdOrderList *self,
                int         *column,
                gboolean    *descending)
{
  GtkSorter *sorter = gtk_column_view_get_sorter (self->column_view);
  g_autoptr(GObject) probe_a = g_object_new (G_TYPE_OBJECT, NULL);
  g_autoptr(GObject) probe_b = g_object_new (G_TYPE_OBJECT, NULL);
  GtkOrdering order;

  if (sorter == NULL)
    return FALSE;
  probed_column = -1;
  order = gtk_sorter_compare (sorter, probe_a, probe_b);
  if (probed_column < 0)
    return FALSE;
  *column = probed_column;
  *descending = order == GTK_ORDERING_LARGER;
  return TRUE;
}

static void
update_counts (OdOrderList *self)
{
  gint64 counts[OD_STATUS_N] = { 0 };
  g_autoptr(GError) error = NULL;
  OdCache *cache = self->model ? od_order_list_model_get_cache (self->model) : NULL;
  guint n = self->model ? g_list_model_get_n_items (G_LIST_MODEL (self->model)) : 0;
  g_autofree char *text = NULL;
  gboolean searching = *gtk_editable_get_text (GTK_EDITABLE (self->search_entry)) != '\0';
  gboolean incomplete;

  if (cache != NULL && !od_cache_get_status_counts (cache, counts, &error))
    g_warning ("Could not read the status counts: %s", error->message);
  /* A search during a bulk catch-up misses, by customer, the orders it
   * brought so far: the list says so rather than look complete, and the
   * search entry is described by the note only while it is shown. */
  incomplete = cache != NULL && searching && !od_cache_get_search_complete (cache);
  if (incomplete != gtk_widget_get_visible (GTK_WIDGET (self->search_note)))
    {
      gtk_widget_set_visible (GTK_WIDGET (self->search_note), incomplete);
      /* A description, a plain string: a described-by relation takes a
       * list of widgets, passed differently across GTK 4 versions. */
      if (incomplete)
        gtk_accessible_update_property (GTK_ACCESSIBLE (self->search_entry),
                                        GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
                                        gtk_label_get_text (self->search_note), -1);
      else
        gtk_accessible_reset_property (GTK_ACCESSIBLE (self->search_entry),
                                       GTK_ACCESSIBLE_PROPERTY_DESCRIPTION);
    }

  for (guint i = 0; i < N_FILTERS; i++)
    {
      g_autofree char *label = NULL;
      const char *name = (OdOrderStatus) i == OD_STATUS_NONE
        ? C_("status filter", "All") : od_format_status ((OdOrderStatus) i);

      /* TRANSLATORS: a status filter button: "Placed 1,234" */
      label = g_strdup_printf (C_("status filter", "%s %'lld"), name,
                               (long long) counts[(OdOrderStatus) i]);
      gtk_button_set_label (GTK_BUTTON (self->filter_buttons[i]), label);
    }

  text = g_strdup_printf (ngettext ("%'u order", "%'u orders", n), n);
  gtk_label_set_label (self->count_label, text);
  self->shown_n = n;
  if (self->status == OD_STATUS_NONE && !searching)
    {
      adw_status_page_set_icon_name (self->empty_page, "io.github.orderdesk.OrderDesk-symbolic");
      adw_status_page_set_title (self->empty_page, _("No Orders Yet"));
      adw_status_page_set_description (self->empty_page,
                                       _("Orders appear here as they arrive from the server"));
    }
  else
    {
      adw_status_page_set_icon_name (self->empty_page, "edit-find-symbolic");
      adw_status_page_set_title (self->empty_page, _("No Orders Found"));
      adw_status_page_set_description (self->empty_page, _("Try another search or status"));
    }
  gtk_stack_set_visible_child_name (self->stack, n > 0 || cache == NULL ? "list" : "empty");
}

/* The model corrected its count on its own (a search's first count is
 * that of its matches, see od_query_count_orders_quick ()): the count
 * and the empty page follow.  A new query or a live refresh updates them
 * itself. */
static void
on_model_items_changed (OdOrderList *self)
{
  if (!self->updating_model
      && g_list_model_get_n_items (G_LIST_MODEL (self->model)) != self->shown_n)
    update_counts (self);
}

/* A new cache gets its own model and selection. */
static void
set_model (OdOrderList      *self,
           OdOrderListModel *model)
{
  GtkSingleSelection *selection =
    gtk_single_selection_new (model ? G_LIST_MODEL (od_keep_model_new (model)) : NULL);

  gtk_single_selection_set_autoselect (selection, FALSE);
  gtk_single_selection_set_can_unselect (selection, TRUE);
  gtk_single_selection_set_selected (selection, GTK_INVALID_LIST_POSITION);
  g_signal_connect_swapped (selection, "notify::selected",
                            G_CALLBACK (on_selection_changed), self);
  if (model != NULL && self->pending != NULL)
    od_order_list_model_set_pending (model, self->pending);
  gtk_column_view_set_model (self->column_view, GTK_SELECTION_MODEL (selection));
  if (self->selection != NULL)
    g_signal_handlers_disconnect_by_data (self->selection, self);
  if (self->model != NULL)
    g_signal_handlers_disconnect_by_data (self->model, self);
  g_set_object (&self->model, model);
  if (model != NULL)
    g_signal_connect_swapped (model, "items-changed", G_CALLBACK (on_model_items_changed), self);
  g_clear_object (&self->selection);
  self->selection = selection;
  /* A place noted in the rows of the cache before means nothing here. */
  self->keep_place = FALSE;
}

static void
apply_query (OdOrderList *self)
{
  const char *search;
  GtkAdjustment *adjustment;

  if (self->model == NULL)
    return;

  search = gtk_editable_get_text (GTK_EDITABLE (self->search_entry));
  /* The entry reports its text again after its typing delay (after
   * od_order_list_set_search, or typed and taken back): the same query
   * keeps the selection and the scroll position. */
  {
    const OdOrderQuery *now = od_order_list_model_get_query (self->model);

    if (now->sort == self->sort && now->descending == self->descending
        && now->status == self->status
        && g_strcmp0 (now->search, *search != '\0' ? search : NULL) == 0)
      return;
  }
  /* A new query keeps the model (and the row widgets); the selection is
   * by position, so it would now point at another order: drop it. */
  gtk_single_selection_set_selected (self->selection, GTK_INVALID_LIST_POSITION);
  /* To the top before the rows change, while the view's rows still
   * match its adjustment: after a change to fewer rows the view cannot
   * find the row at the new value ("failed to scroll to given position")
   * and keeps its deep anchor. */
  adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (self->column_view));
  if (adjustment != NULL)
    gtk_adjustment_set_value (adjustment, 0);
  self->updating_model = TRUE;
  od_order_list_model_set_query (self->model, self->sort, self->descending,
                                 self->status, search);
  self->updating_model = FALSE;
  /* If the view was at the top already nothing scrolled: the rows there
   * that went stale while the list was hidden are updated before it is
   * shown again. */
  update_stale_in_view (self);
  update_counts (self);
}

static void
on_sorter_changed (GtkSorter       *sorter,
                   GtkSorterChange  change,
                   OdOrderList     *self)
{
  int column;
  gboolean descending;
  GSettings *settings;

  /* Columns going away at dispose also change the sorter. */
  if (self->column_view == NULL || self->applying_sort
      || !read_view_sort (self, &column, &descending))
    return;
  if (columns[column].sort < 0)
    return;
  self->sort = columns[column].sort;
  self->descending = descending;
  settings = od_application_get_settings ();
  if (settings != NULL)
    {
      g_settings_set_string (settings, "sort-column", columns[column].name);
      g_settings_set_boolean (settings, "sort-descending", descending);
    }
  apply_query (self);
}

static void
on_search_changed (OdOrderList *self)
{
  if (!self->setting_search)
    apply_query (self);
}

static void
on_stop_search (OdOrderList *self)
{
  gtk_editable_set_text (GTK_EDITABLE (self->search_entry), "");
  gtk_search_bar_set_search_mode (self->search_bar, FALSE);
}

static void
on_filter_toggled (GtkToggleButton *button,
                   OdOrderList     *self)
{
  if (!gtk_toggle_button_get_active (button))
    return;
  self->status = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "status"));
  apply_query (self);
}

static void
on_activate (OdOrderList *self,
             guint        position)
{
  gtk_single_selection_set_selected (self->selection, position);
}

static void
on_selection_changed (OdOrderList *self)
{
  OdOrderItem *item = gtk_single_selection_get_selected_item (self->selection);
  const char *id = item ? od_order_item_get_order_id (item) : NULL;

  /* A live refresh may briefly unselect: keep showing the order. */
  if (id == NULL || g_strcmp0 (id, self->selected_id) == 0)
    return;
  g_free (self->selected_id);
  self->selected_id = g_strdup (id);
  g_signal_emit (self, signals[SELECTION_CHANGED], 0, self->selected_id);
}

/* Cells. */

/* The text of a cell.  A GtkInscription measures the same whatever its
 * text, so a row taking another order's text is only drawn again.  With
 * a GtkLabel every new text asked for a new size of the whole window:
 * GTK 4.8's X11 backend measures the whole window for that before the
 * next frame (about 4 ms after a search), and the frame's layout then
 * measured the changed rows again.  Screen readers get the text from the
 * inscription itself (its name in GTK 4.8; app-a11y reads a row by it). */
static GtkWidget *
cell_text_new (guint min_chars,
               guint nat_chars,
               float xalign)
{
  GtkWidget *text = gtk_inscription_new (NULL);

  gtk_inscription_set_min_chars (GTK_INSCRIPTION (text), min_chars);
  gtk_inscription_set_nat_chars (GTK_INSCRIPTION (text), nat_chars);
  gtk_inscription_set_xalign (GTK_INSCRIPTION (text), xalign);
  gtk_inscription_set_text_overflow (GTK_INSCRIPTION (text), GTK_INSCRIPTION_OVERFLOW_ELLIPSIZE_END);
  return text;
}

static void
forget_stale_cell (GtkListItem *list_item)
{
  OdOrderList *self = g_object_get_data (G_OBJECT (list_item), "od-list");
  GtkWidget *child = gtk_list_item_get_child (list_item);

  if (self != NULL && self->stale_cells != NULL)
    g_hash_table_remove (self->stale_cells, list_item);
  if (child != NULL && gtk_widget_get_opacity (child) < 1)
    gtk_widget_set_opacity (child, 1);
}

static void
update_cell (GtkListItem *list_item)
{
  OdOrderItem *item = gtk_list_item_get_item (list_item);
  GtkWidget *child = gtk_list_item_get_child (list_item);
  Column column = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (list_item), "od-column"));
  const OdOrderRow *row;
  g_autofree char *text = NULL;

  if (child == NULL)
    return;
  forget_stale_cell (list_item);
  /* No order (or a blank row, while its page is read): nothing, rather
   * than the text of the one shown before. */
  row = item != NULL ? od_order_item_get_row (item) : NULL;
  if (row == NULL || row->order_id[0] == '\0')
    {
      gtk_widget_set_opacity (child, 0);
      return;
    }

  switch (column)
    {
    case COL_ORDER:
      {
        GtkWidget *label = gtk_widget_get_first_child (child);
        GtkWidget *badge = gtk_widget_get_next_sibling (label);

        text = od_format_short_id (row->order_id);
        gtk_inscription_set_text (GTK_INSCRIPTION (label), text);
        gtk_widget_set_visible (badge, od_order_item_get_pending (item));
      }
      break;
    case COL_CUSTOMER:
      gtk_inscription_set_text (GTK_INSCRIPTION (child), row->customer_name);
      break;
    case COL_STATUS:
      od_status_pill_set_status (OD_STATUS_PILL (child), row->status);
      break;
    case COL_ITEMS:
      text = g_strdup_printf ("%'" G_GINT64_FORMAT, row->item_count);
      gtk_inscription_set_text (GTK_INSCRIPTION (child), text);
      break;
    case COL_TOTAL:
      text = od_format_money (row->total_cents, row->currency);
      gtk_inscription_set_text (GTK_INSCRIPTION (child), text);
      break;
    case COL_UPDATED:
      {
        OdOrderList *self = g_object_get_data (G_OBJECT (list_item), "od-list");

        text = od_format_relative (row->updated_at, self && self->now_usec > 0
                                                    ? self->now_usec : g_get_real_time ());
        gtk_inscription_set_text (GTK_INSCRIPTION (child), text);
      }
      break;
    case N_COLUMNS:
    default:
      break;
    }
}

/* Tooltips are computed when asked.  Setting one on every rebind costs
 * GTK 4.8 two X round trips a cell (it looks for the pointer to update
 * a tooltip that may be showing), which made a search's rebinding of
 * the visible rows take most of its 100–200 ms. */
static gboolean
on_query_tooltip (GtkWidget   *widget,
                  int          x,
                  int          y,
                  gboolean     keyboard_mode,
                  GtkTooltip  *tooltip,
                  GtkListItem *list_item)
{
  OdOrderItem *item = gtk_list_item_get_item (list_item);
  Column column = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (list_item), "od-column"));
  const OdOrderRow *row;
  g_autofree char *stamp = NULL;

  if (item == NULL)
    return FALSE;
  row = od_order_item_get_row (item);
  switch (column)
    {
    case COL_ORDER:
      gtk_tooltip_set_text (tooltip, row->order_id);
      return TRUE;
    case COL_CUSTOMER:
      if (row->customer_email == NULL || *row->customer_email == '\0')
        return FALSE;
      gtk_tooltip_set_text (tooltip, row->customer_email);
      return TRUE;
    case COL_UPDATED:
      stamp = od_format_timestamp (row->updated_at);
      gtk_tooltip_set_text (tooltip, stamp);
      return TRUE;
    case COL_STATUS:
    case COL_ITEMS:
    case COL_TOTAL:
    case N_COLUMNS:
    default:
      return FALSE;
    }
}

/* GTK 4.8 keeps about 200 rows bound while 20–40 are on screen.  Only
 * cells on screen (or about to be) are updated at once when their rows
 * change: updating the others would put formatting ~180 rows on the path
 * of the frame that shows the change.  They become transparent instead
 * and are updated from the frame after the change on, nearest to the
 * view first, for up to 4 ms a frame (their text is an inscription, which
 * costs no layout; about three frames for a whole new search); a scroll
 * updates those it brings into view before they are laid out.  Should
 * one still be mapped before its turn (GTK moved the view while laying
 * it out), it is blank for a frame, never showing another order's data:
 * the status pill cannot take a new status as it is mapped, because
 * that happens inside the list's size allocation and the pill asks for
 * one of its own. */
#define STALE_USEC_PER_FRAME 4000

static guint
cell_distance (GtkListItem *list_item,
               guint        center)
{
  guint position = gtk_list_item_get_position (list_item);

  return position > center ? position - center : center - position;
}

static int
compare_cells (gconstpointer a,
               gconstpointer b,
               gpointer      user_data)
{
  guint center = GPOINTER_TO_UINT (user_data);
  guint da = cell_distance (*(GtkListItem **) a, center);
  guint db = cell_distance (*(GtkListItem **) b, center);

  return da < db ? -1 : da > db ? 1 : 0;
}

/* Rows are of one height.  The list sets its adjustment's range (that
 * height times the number of rows) when it lays them out, which is when
 * the range and the model's count agree. */
static void
remember_row_height (OdOrderList *self)
{
  guint n = self->model ? g_list_model_get_n_items (G_LIST_MODEL (self->model)) : 0;

  if (self->vadjustment != NULL && n > 0 && gtk_adjustment_get_upper (self->vadjustment) > 0)
    self->row_height = gtk_adjustment_get_upper (self->vadjustment) / n;
}

/* Whether the row at `position` is on screen, or will be at the next
 * layout, from the adjustment (a row or two either way).  Before the
 * first layout every row counts as shown. */
static gboolean
position_in_view (OdOrderList *self,
                  guint        position)
{
  double value;

  if (self->vadjustment == NULL || self->row_height <= 0)
    return TRUE;
  value = gtk_adjustment_get_value (self->vadjustment);
  return position + 2 >= value / self->row_height
         && position <= (value + gtk_adjustment_get_page_size (self->vadjustment))
                        / self->row_height + 2;
}

/* Rows about to be shown: a scroll (by the operator, or to the top for a
 * new query) updates the stale cells it brings into view before the
 * next layout maps them. */
static void
update_stale_in_view (OdOrderList *self)
{
  g_autoptr(GPtrArray) cells = NULL;
  GHashTableIter iter;
  gpointer key;

  /* The list moves its adjustment while it lays rows out; new text then
   * would leave them unallocated for this frame.  The next frame's tick
   * updates them instead. */
  if (g_hash_table_size (self->stale_cells) == 0 || self->in_layout)
    return;
  cells = g_ptr_array_new_with_free_func (g_object_unref);
  g_hash_table_iter_init (&iter, self->stale_cells);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (position_in_view (self, gtk_list_item_get_position (key)))
      g_ptr_array_add (cells, g_object_ref (key));
  /* Rows a new query left for after its frame are read before they are
   * shown (their items take their rows: the cells stay stale). */
  if (cells->len > 0 && self->model != NULL && !od_order_list_model_is_settled (self->model))
    od_order_list_model_settle (self->model);
  for (guint i = 0; i < cells->len; i++)
    update_cell (g_ptr_array_index (cells, i));
}

static void
on_layout_begins (OdOrderList *self)
{
  self->in_layout = TRUE;
}

static void
on_layout_ends (OdOrderList *self)
{
  self->in_layout = FALSE;
}

static gboolean
settle_model (gpointer data)
{
  OdOrderList *self = data;

  self->settle_id = 0;
  if (self->model != NULL)
    od_order_list_model_settle (self->model);
  return G_SOURCE_REMOVE;
}

/* The frame that shows a new query's first rows is drawn: the rest of
 * the rows GTK holds are read now, off that frame's path. */
static void
on_after_paint (OdOrderList *self)
{
  if (self->settle_id == 0 && self->model != NULL
      && !od_order_list_model_is_settled (self->model))
    self->settle_id = g_idle_add (settle_model, self);
}

static void queue_fit_columns (OdOrderList *self);

/* After the layout phase: the view goes where a live refresh said its
 * rows are (see od_order_list_refresh()).  The frame clock lays out
 * again before it paints, so the view GTK moved is never drawn. */
static void
on_layout_done (OdOrderList *self)
{
  /* A step that changes no scroll range (pills made compact or whole
   * again while everything fits) would not run fit_columns () again. */
  if (self->fit_again)
    {
      self->fit_again = FALSE;
      queue_fit_columns (self);
    }
  if (!self->keep_place)
    return;
  self->keep_place = FALSE;
  if (self->vadjustment != NULL && gtk_adjustment_get_value (self->vadjustment) != self->keep_value)
    gtk_adjustment_set_value (self->vadjustment, self->keep_value);
}

static void
od_order_list_realize (GtkWidget *widget)
{
  OdOrderList *self = OD_ORDER_LIST (widget);

  GTK_WIDGET_CLASS (od_order_list_parent_class)->realize (widget);
  /* Layout follows the update phase, where ticks (ours, kinetic
   * scrolling) run.  While cells are stale our tick runs, so the update
   * phase happens in every frame that lays the list out. */
  self->frame_clock = g_object_ref (gtk_widget_get_frame_clock (widget));
  self->frame_clock_ids[0] =
    g_signal_connect_object (self->frame_clock, "update", G_CALLBACK (on_layout_begins), self,
                             G_CONNECT_SWAPPED | G_CONNECT_AFTER);
  self->frame_clock_ids[1] =
    g_signal_connect_object (self->frame_clock, "layout", G_CALLBACK (on_layout_ends), self,
                             G_CONNECT_SWAPPED | G_CONNECT_AFTER);
  self->frame_clock_ids[2] =
    g_signal_connect_object (self->frame_clock, "layout", G_CALLBACK (on_layout_done), self,
                             G_CONNECT_SWAPPED | G_CONNECT_AFTER);
  /* A frame without a layout phase ends here. */
  self->frame_clock_ids[3] =
    g_signal_connect_object (self->frame_clock, "after-paint", G_CALLBACK (on_layout_ends), self,
                             G_CONNECT_SWAPPED);
  self->frame_clock_ids[4] =
    g_signal_connect_object (self->frame_clock, "after-paint", G_CALLBACK (on_after_paint), self,
                             G_CONNECT_SWAPPED);
}

static void
od_order_list_unrealize (GtkWidget *widget)
{
  OdOrderList *self = OD_ORDER_LIST (widget);

  for (guint i = 0; i < G_N_ELEMENTS (self->frame_clock_ids); i++)
    g_clear_signal_handler (&self->frame_clock_ids[i], self->frame_clock);
  g_clear_object (&self->frame_clock);
  self->in_layout = FALSE;
  GTK_WIDGET_CLASS (od_order_list_parent_class)->unrealize (widget);
}

/* Outside the layout phase only the operator (or code on their behalf)
 * moves the view: a return to the place a live refresh left it still
 * due would undo that scroll. */
static void
on_value_changed (OdOrderList *self)
{
  if (!self->in_layout)
    self->keep_place = FALSE;
  update_stale_in_view (self);
}

/* Runs while a return to a place is due: a frame with a tick has an
 * update phase, which is what tells on_value_changed () that the layout
 * phase has begun. */
static gboolean
keep_place_tick (GtkWidget     *widget,
                 GdkFrameClock *clock,
                 gpointer       user_data)
{
  OdOrderList *self = OD_ORDER_LIST (widget);

  if (self->keep_place)
    return G_SOURCE_CONTINUE;
  self->keep_place_tick = 0;
  return G_SOURCE_REMOVE;
}

/* When the list is too narrow for its columns (1,100 and 800 px windows
 * with the detail beside, 360 px ones), one step at a time: Items, then
 * Updated hidden; then the status pills compact (only the widest status
 * may be cut short); then Status hidden.  A total is never cut: at 800 px
 * the totals showed without their currency, at 360 px only their first
 * digits ("1" for 13.00 EUR).  Undone, the last step first, once the
 * width needed before it is there (so a column never flickers in and out
 * at one width). */
static void
set_status_compact (OdOrderList *self,
                    gboolean     compact)
{
  GHashTableIter iter;
  GtkListItem *list_item;

  self->status_compact = compact;
  g_hash_table_iter_init (&iter, self->status_cells);
  while (g_hash_table_iter_next (&iter, (gpointer *) &list_item, NULL))
    od_status_pill_set_compact (OD_STATUS_PILL (gtk_list_item_get_child (list_item)), compact);
  gtk_widget_queue_resize (GTK_WIDGET (self->column_view));
}

static void
fit_step (OdOrderList *self,
          FitStep      step,
          gboolean     apply)
{
  static const Column hides[] = {
    [FIT_HIDE_ITEMS] = COL_ITEMS, [FIT_HIDE_UPDATED] = COL_UPDATED,
    [FIT_HIDE_STATUS] = COL_STATUS,
  };

  if (step == FIT_COMPACT_STATUS)
    set_status_compact (self, apply);
  else
    gtk_column_view_column_set_visible (self->columns[hides[step]], !apply);
  /* The view lays out again, and this runs again after it. */
  self->fit_again = TRUE;
}

static gboolean
fit_columns (gpointer data)
{
  OdOrderList *self = data;
  double upper;
  double page;

  self->fit_idle = 0;
  if (self->hadjustment == NULL || !gtk_widget_get_mapped (GTK_WIDGET (self)))
    return G_SOURCE_REMOVE;
  upper = gtk_adjustment_get_upper (self->hadjustment);
  page = gtk_adjustment_get_page_size (self->hadjustment);
  if (page <= 0)
    return G_SOURCE_REMOVE;
  if (upper > page + 0.5)
    {
      if (self->fit_steps < FIT_N_STEPS)
        {
          self->fit_need[self->fit_steps] = upper;
          fit_step (self, self->fit_steps++, TRUE);
        }
    }
  else if (self->fit_steps > 0 && page + 0.5 >= self->fit_need[self->fit_steps - 1])
    fit_step (self, --self->fit_steps, FALSE);
  return G_SOURCE_REMOVE;
}

/* The view's width or its columns' changed: fitted after the layout, not
 * inside it (a column shown or hidden lays the view out again). */
static void
queue_fit_columns (OdOrderList *self)
{
  if (self->fit_idle == 0)
    self->fit_idle = g_idle_add (fit_columns, self);
}

static void
on_hadjustment_changed (OdOrderList *self)
{
  GtkAdjustment *adjustment = gtk_scrollable_get_hadjustment (GTK_SCROLLABLE (self->column_view));

  if (adjustment == self->hadjustment)
    return;
  if (self->hadjustment != NULL)
    g_signal_handlers_disconnect_by_data (self->hadjustment, self);
  g_set_object (&self->hadjustment, adjustment);
  if (adjustment != NULL)
    g_signal_connect_swapped (adjustment, "changed", G_CALLBACK (queue_fit_columns), self);
}

static void
on_vadjustment_changed (OdOrderList *self)
{
  GtkAdjustment *adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (self->column_view));

  if (adjustment == self->vadjustment)
    return;
  if (self->vadjustment != NULL)
    g_signal_handlers_disconnect_by_data (self->vadjustment, self);
  g_set_object (&self->vadjustment, adjustment);
  if (adjustment != NULL)
    {
      g_signal_connect_swapped (adjustment, "value-changed", G_CALLBACK (on_value_changed),
                                self);
      g_signal_connect_swapped (adjustment, "changed", G_CALLBACK (remember_row_height), self);
    }
}

static gboolean
drain_stale_cells (GtkWidget     *widget,
                   GdkFrameClock *clock,
                   gpointer       user_data)
{
  OdOrderList *self = OD_ORDER_LIST (widget);
  g_autoptr(GPtrArray) cells = g_ptr_array_new_with_free_func (g_object_unref);
  guint center = 0;
  /* The frame that shows a change updates only its visible rows. */
  gboolean off_screen_too = gdk_frame_clock_get_frame_counter (clock) > self->stale_frame + 1;
  gint64 deadline = g_get_monotonic_time () + STALE_USEC_PER_FRAME;
  GHashTableIter iter;
  gpointer key;

  if (off_screen_too && self->model != NULL && !od_order_list_model_is_settled (self->model))
    od_order_list_model_settle (self->model);
  if (self->vadjustment != NULL && self->row_height > 0)
    center = (gtk_adjustment_get_value (self->vadjustment)
              + gtk_adjustment_get_page_size (self->vadjustment) / 2) / self->row_height;

  g_hash_table_iter_init (&iter, self->stale_cells);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (cells, g_object_ref (key));
  g_ptr_array_sort_with_data (cells, compare_cells, GUINT_TO_POINTER (center));

  for (guint i = 0; i < cells->len; i++)
    {
      GtkListItem *list_item = g_ptr_array_index (cells, i);
      GtkWidget *child = gtk_list_item_get_child (list_item);
      gboolean shown = child != NULL && gtk_widget_get_mapped (child);

      if (!shown && (!off_screen_too || g_get_monotonic_time () >= deadline))
        continue;
      update_cell (list_item);
    }

  if (g_hash_table_size (self->stale_cells) > 0)
    return G_SOURCE_CONTINUE;
  self->stale_tick_id = 0;
  return G_SOURCE_REMOVE;
}

static void
mark_stale_cell (OdOrderList *self,
                 GtkListItem *list_item)
{
  GtkWidget *child = gtk_list_item_get_child (list_item);

  if (child != NULL)
    gtk_widget_set_opacity (child, 0);
  /* The clock kept since realize: looking it up walks to the root, for
   * each of the ~1,200 cells a search makes stale. */
  if (self->frame_clock != NULL)
    self->stale_frame = gdk_frame_clock_get_frame_counter (self->frame_clock);
  if (!g_hash_table_contains (self->stale_cells, list_item))
    g_hash_table_add (self->stale_cells, g_object_ref (list_item));
  if (self->stale_tick_id == 0)
    self->stale_tick_id = gtk_widget_add_tick_callback (GTK_WIDGET (self), drain_stale_cells,
                                                        NULL, NULL);
}

static void
on_item_changed (OdOrderItem *item,
                 GtkListItem *list_item)
{
  GtkWidget *child = gtk_list_item_get_child (list_item);
  OdOrderList *self = g_object_get_data (G_OBJECT (list_item), "od-list");

  if (self == NULL || (child != NULL && gtk_widget_get_mapped (child))
      || position_in_view (self, gtk_list_item_get_position (list_item)))
    update_cell (list_item);
  else
    mark_stale_cell (self, list_item);
}

static void
setup_cell (GtkSignalListItemFactory *factory,
            GtkListItem              *list_item,
            gpointer                  user_data)
{
  Column column = GPOINTER_TO_INT (user_data);
  GtkWidget *child;

  g_object_set_data (G_OBJECT (list_item), "od-column", user_data);
  g_object_set_data (G_OBJECT (list_item), "od-list", g_object_get_data (G_OBJECT (factory), "od-list"));
  switch (column)
    {
    case COL_ORDER:
      {
        GtkWidget *label = cell_text_new (columns[COL_ORDER].min_chars, columns[COL_ORDER].nat_chars, 0);
        GtkWidget *badge = gtk_label_new (_("Pending"));

        child = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
        gtk_widget_add_css_class (label, "monospace");
        gtk_widget_add_css_class (badge, "pending-badge");
        gtk_widget_set_valign (badge, GTK_ALIGN_CENTER);
        gtk_widget_set_visible (badge, FALSE);
        gtk_box_append (GTK_BOX (child), label);
        gtk_box_append (GTK_BOX (child), badge);
      }
      break;
    case COL_STATUS:
      child = od_status_pill_new ();
      break;
    case COL_CUSTOMER:
    case COL_ITEMS:
    case COL_TOTAL:
    case COL_UPDATED:
    case N_COLUMNS:
    default:
      child = cell_text_new (columns[column].min_chars, columns[column].nat_chars,
                             columns[column].numeric ? 1 : 0);
      if (columns[column].numeric)
        gtk_widget_add_css_class (child, "numeric");
      break;
    }
  if (column == COL_ORDER || column == COL_CUSTOMER || column == COL_UPDATED)
    {
      GtkWidget *target = column == COL_ORDER ? gtk_widget_get_first_child (child) : child;

      gtk_widget_set_has_tooltip (target, TRUE);
      g_signal_connect_object (target, "query-tooltip", G_CALLBACK (on_query_tooltip),
                               list_item, 0);
    }
  /* The row menu finds the row under the pointer by its cells. */
  g_object_set_data (G_OBJECT (child), "od-list-item", list_item);
  gtk_list_item_set_child (list_item, child);
}

static void
bind_cell (GtkSignalListItemFactory *factory,
           GtkListItem              *list_item,
           gpointer                  user_data)
{
  OdOrderItem *item = gtk_list_item_get_item (list_item);
  gulong id;

  if (item == NULL)
    {
      update_cell (list_item);
      return;
    }
  id = g_signal_connect (item, "changed", G_CALLBACK (on_item_changed), list_item);
  g_object_set_data (G_OBJECT (list_item), "od-changed-id", GSIZE_TO_POINTER (id));
  /* Disconnected from this item at unbind, whatever the list item holds
   * by then. */
  g_object_set_data_full (G_OBJECT (list_item), "od-bound-item", g_object_ref (item),
                          g_object_unref);
  if (GPOINTER_TO_INT (user_data) == COL_UPDATED)
    {
      OdOrderList *self = g_object_get_data (G_OBJECT (list_item), "od-list");

      if (self != NULL && self->time_cells != NULL)
        g_hash_table_add (self->time_cells, list_item);
    }
  if (GPOINTER_TO_INT (user_data) == COL_STATUS)
    {
      OdOrderList *self = g_object_get_data (G_OBJECT (list_item), "od-list");

      if (self != NULL && self->status_cells != NULL)
        {
          g_hash_table_add (self->status_cells, list_item);
          od_status_pill_set_compact (OD_STATUS_PILL (gtk_list_item_get_child (list_item)),
                                      self->status_compact);
        }
    }
  update_cell (list_item);
}

static void
unbind_cell (GtkSignalListItemFactory *factory,
             GtkListItem              *list_item,
             gpointer                  user_data)
{
  OdOrderItem *item = g_object_get_data (G_OBJECT (list_item), "od-bound-item");
  gulong id = GPOINTER_TO_SIZE (g_object_get_data (G_OBJECT (list_item), "od-changed-id"));

  if (item != NULL && id != 0)
    g_signal_handler_disconnect (item, id);
  g_object_set_data (G_OBJECT (list_item), "od-changed-id", NULL);
  g_object_set_data (G_OBJECT (list_item), "od-bound-item", NULL);
  forget_stale_cell (list_item);
  if (GPOINTER_TO_INT (user_data) == COL_UPDATED || GPOINTER_TO_INT (user_data) == COL_STATUS)
    {
      OdOrderList *self = g_object_get_data (G_OBJECT (list_item), "od-list");
      GHashTable *cells = self == NULL ? NULL
                          : GPOINTER_TO_INT (user_data) == COL_UPDATED ? self->time_cells
                                                                       : self->status_cells;

      if (cells != NULL)
        g_hash_table_remove (cells, list_item);
    }
}

static void
on_column_width (GtkColumnViewColumn *column,
                 GParamSpec          *pspec,
                 OdOrderList         *self)
{
  GSettings *settings = od_application_get_settings ();
  g_autoptr(GVariant) widths = NULL;
  GVariantDict dict;
  const char *name = g_object_get_data (G_OBJECT (column), "od-name");

  if (settings == NULL || name == NULL)
    return;
  widths = g_settings_get_value (settings, "column-widths");
  g_variant_dict_init (&dict, widths);
  g_variant_dict_insert (&dict, name, "i", gtk_column_view_column_get_fixed_width (column));
  g_settings_set_value (settings, "column-widths", g_variant_dict_end (&dict));
}

static void
build_columns (OdOrderList *self)
{
  GSettings *settings = od_application_get_settings ();
  g_autoptr(GVariant) widths = settings ? g_settings_get_value (settings, "column-widths") : NULL;
  g_autofree char *sort_name = settings ? g_settings_get_string (settings, "sort-column") : NULL;
  gboolean descending = settings ? g_settings_get_boolean (settings, "sort-descending") : TRUE;
  GtkColumnViewColumn *sort_column = NULL;

  for (guint i = 0; i < N_COLUMNS; i++)
    {
      GtkListItemFactory *factory = gtk_signal_list_item_factory_new ();
      GtkColumnViewColumn *column;
      int width;

      /* Not a reference: the factories live in the list's own columns. */
      g_object_set_data (G_OBJECT (factory), "od-list", self);
      g_signal_connect (factory, "setup", G_CALLBACK (setup_cell), GINT_TO_POINTER (i));
      g_signal_connect (factory, "bind", G_CALLBACK (bind_cell), GINT_TO_POINTER (i));
      g_signal_connect (factory, "unbind", G_CALLBACK (unbind_cell), GINT_TO_POINTER (i));
      column = gtk_column_view_column_new (_(columns[i].title), factory);
      gtk_column_view_column_set_resizable (column, TRUE);
      gtk_column_view_column_set_expand (column, columns[i].expand);
      g_object_set_data (G_OBJECT (column), "od-name", (gpointer) columns[i].name);
      if (widths != NULL && g_variant_lookup (widths, columns[i].name, "i", &width) && width > 0)
        gtk_column_view_column_set_fixed_width (column, width);
      if (columns[i].sort >= 0)
        {
          g_autoptr(GtkSorter) sorter =
            GTK_SORTER (gtk_custom_sorter_new (column_compare, GINT_TO_POINTER (i), NULL));

          gtk_column_view_column_set_sorter (column, sorter);
          if (g_strcmp0 (sort_name, columns[i].name) == 0)
            {
              sort_column = column;
              self->sort = columns[i].sort;
            }
        }
      g_signal_connect (column, "notify::fixed-width", G_CALLBACK (on_column_width), self);
      gtk_column_view_append_column (self->column_view, column);
      self->columns[i] = column;
      g_object_unref (column);
    }

  if (sort_column == NULL)
    {
      sort_column = self->columns[COL_UPDATED];
      self->sort = OD_ORDER_SORT_UPDATED;
    }
  self->descending = descending;
  self->applying_sort = TRUE;
  gtk_column_view_sort_by_column (self->column_view, sort_column,
                                  descending ? GTK_SORT_DESCENDING : GTK_SORT_ASCENDING);
  self->applying_sort = FALSE;
  g_signal_connect (gtk_column_view_get_sorter (self->column_view), "changed",
                    G_CALLBACK (on_sorter_changed), self);
}

static void
build_filters (OdOrderList *self)
{
  GtkToggleButton *group = NULL;

  for (guint i = 0; i < N_FILTERS; i++)
    {
      GtkWidget *button = gtk_toggle_button_new ();

      gtk_widget_add_css_class (button, "flat");
      gtk_widget_add_css_class (button, "status-filter");
      g_object_set_data (G_OBJECT (button), "status", GINT_TO_POINTER ((OdOrderStatus) i));
      if (group != NULL)
        gtk_toggle_button_set_group (GTK_TOGGLE_BUTTON (button), group);
      else
        group = GTK_TOGGLE_BUTTON (button);
      g_signal_connect (button, "toggled", G_CALLBACK (on_filter_toggled), self);
      gtk_box_append (self->filter_box, button);
      self->filter_buttons[i] = GTK_TOGGLE_BUTTON (button);
    }
  gtk_toggle_button_set_active (group, TRUE);
}

/* The row menu: the commands the order's status allows (the window's
 * "order." actions, enabled for the selected order; the others are
 * hidden), on a right click, a long press, or the Menu key / Shift+F10
 * for the selected row. */

static GtkListItem *
list_item_at (OdOrderList *self,
              double       x,
              double       y)
{
  GtkWidget *widget = gtk_widget_pick (GTK_WIDGET (self->column_view), x, y, GTK_PICK_DEFAULT);

  for (; widget != NULL && widget != GTK_WIDGET (self->column_view);
       widget = gtk_widget_get_parent (widget))
    {
      GtkListItem *list_item = g_object_get_data (G_OBJECT (widget), "od-list-item");

      if (list_item != NULL)
        return gtk_list_item_get_item (list_item) != NULL ? list_item : NULL;
    }
  return NULL;
}

static void
popup_row_menu (OdOrderList *self,
                GtkWidget   *from,
                double       x,
                double       y)
{
  GdkRectangle rect = { 0, 0, 1, 1 };
  graphene_point_t point;
  OdOrderItem *item = gtk_single_selection_get_selected_item (self->selection);
  OdOrderStatus status = item != NULL ? od_order_item_get_row (item)->status : OD_STATUS_NONE;

  /* A delivered or cancelled order takes no command: no empty menu. */
  if (status != OD_STATUS_DRAFT && status != OD_STATUS_PLACED && status != OD_STATUS_SHIPPED)
    return;
  if (!gtk_widget_compute_point (from, GTK_WIDGET (self), &GRAPHENE_POINT_INIT (x, y), &point))
    return;
  rect.x = (int) point.x;
  rect.y = (int) point.y;
  gtk_popover_set_pointing_to (GTK_POPOVER (self->row_menu), &rect);
  gtk_popover_popup (GTK_POPOVER (self->row_menu));
}

static void
row_menu_at (OdOrderList *self,
             double       x,
             double       y)
{
  GtkListItem *list_item = list_item_at (self, x, y);

  if (list_item == NULL)
    return;
  /* The menu is about the row it was opened on. */
  gtk_single_selection_set_selected (self->selection, gtk_list_item_get_position (list_item));
  popup_row_menu (self, GTK_WIDGET (self->column_view), x, y);
}

static void
on_row_right_click (GtkGestureClick *gesture,
                    int              n_press,
                    double           x,
                    double           y,
                    OdOrderList     *self)
{
  gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_CLAIMED);
  row_menu_at (self, x, y);
}

static void
on_row_long_press (GtkGestureLongPress *gesture,
                   double               x,
                   double               y,
                   OdOrderList         *self)
{
  row_menu_at (self, x, y);
}

/* Menu key / Shift+F10: the menu of the selected row, under its order
 * cell (or at the top of the list when that row is not bound). */
static gboolean
on_row_menu_key (GtkWidget *widget,
                 GVariant  *args,
                 gpointer   user_data)
{
  OdOrderList *self = OD_ORDER_LIST (user_data);
  guint selected = gtk_single_selection_get_selected (self->selection);
  GHashTableIter iter;
  gpointer key;

  if (selected == GTK_INVALID_LIST_POSITION)
    return FALSE;
  g_hash_table_iter_init (&iter, self->time_cells);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      GtkWidget *child = gtk_list_item_get_child (key);

      if (gtk_list_item_get_position (key) == selected && child != NULL
          && gtk_widget_get_mapped (child))
        {
          popup_row_menu (self, child, 0, gtk_widget_get_height (child));
          return TRUE;
        }
    }
  popup_row_menu (self, GTK_WIDGET (self->column_view), 24, 24);
  return TRUE;
}

static void
build_row_menu (OdOrderList *self)
{
  static const struct { const char *label; const char *action; } items[] = {
    { N_("_Add Item…"), "order.add-item" },
    { N_("_Place Order…"), "order.place" },
    { N_("_Ship…"), "order.ship" },
    { N_("Mark _Delivered…"), "order.mark-delivered" },
    { N_("_Cancel Order…"), "order.cancel" },
    { N_("Add _Note…"), "order.add-note" },
    { N_("_Refund…"), "order.refund" },
  };
  g_autoptr(GMenu) menu = g_menu_new ();
  GtkGesture *click = gtk_gesture_click_new ();
  GtkGesture *long_press = gtk_gesture_long_press_new ();
  GtkEventController *keys = gtk_shortcut_controller_new ();

  for (guint i = 0; i < G_N_ELEMENTS (items); i++)
    {
      g_autoptr(GMenuItem) item = g_menu_item_new (_(items[i].label), items[i].action);

      g_menu_item_set_attribute (item, "hidden-when", "s", "action-disabled");
      g_menu_append_item (menu, item);
    }
  self->row_menu = gtk_popover_menu_new_from_model (G_MENU_MODEL (menu));
  gtk_popover_set_has_arrow (GTK_POPOVER (self->row_menu), FALSE);
  gtk_widget_set_halign (self->row_menu, GTK_ALIGN_START);
  gtk_widget_set_parent (self->row_menu, GTK_WIDGET (self));

  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (click), GDK_BUTTON_SECONDARY);
  g_signal_connect (click, "pressed", G_CALLBACK (on_row_right_click), self);
  gtk_widget_add_controller (GTK_WIDGET (self->column_view), GTK_EVENT_CONTROLLER (click));
  g_signal_connect (long_press, "pressed", G_CALLBACK (on_row_long_press), self);
  gtk_widget_add_controller (GTK_WIDGET (self->column_view), GTK_EVENT_CONTROLLER (long_press));

  gtk_shortcut_controller_add_shortcut (GTK_SHORTCUT_CONTROLLER (keys),
    gtk_shortcut_new (gtk_alternative_trigger_new (gtk_keyval_trigger_new (GDK_KEY_Menu, 0),
                                                   gtk_keyval_trigger_new (GDK_KEY_F10, GDK_SHIFT_MASK)),
                      gtk_callback_action_new (on_row_menu_key, self, NULL)));
  gtk_widget_add_controller (GTK_WIDGET (self->column_view), keys);
}

/* Public API. */

void
od_order_list_set_cache (OdOrderList *self,
                         OdCache     *cache)
{
  g_autoptr(OdOrderListModel) model = NULL;

  g_return_if_fail (OD_IS_ORDER_LIST (self));

  g_clear_pointer (&self->selected_id, g_free);
  if (cache != NULL)
    model = od_order_list_model_new_for_query (cache, self->sort, self->descending, self->status,
                                               gtk_editable_get_text (GTK_EDITABLE (self->search_entry)));
  if (self->cache != NULL)
    g_signal_handlers_disconnect_by_data (self->cache, self);
  g_set_object (&self->cache, cache);
  if (cache != NULL)
    g_signal_connect_swapped (cache, "notify::search-complete", G_CALLBACK (update_counts), self);
  set_model (self, model);
  update_counts (self);
}

OdOrderListModel *
od_order_list_get_model (OdOrderList *self)
{
  g_return_val_if_fail (OD_IS_ORDER_LIST (self), NULL);
  return self->model;
}

/* The shift of most of `items` (rows of the view, from `first` on)
 * between where they were and `positions`, where they are now; the
 * topmost row's among equals.  FALSE unless more than half of them
 * share it: after many orders arrived above, the rows shown may be in
 * pages not read again, and the one order found, which moved, must not
 * take the view with it. */
static gboolean
common_shift (GPtrArray   *items,
              const guint *positions,
              guint        first,
              gint64      *shift)
{
  guint best = 0;

  for (guint i = 0; i < items->len; i++)
    {
      gint64 d = (gint64) positions[i] - (first + i);
      guint count = 0;

      if (positions[i] == G_MAXUINT)
        continue;
      for (guint j = i; j < items->len; j++)
        if (positions[j] != G_MAXUINT && (gint64) positions[j] - (first + j) == d)
          count++;
      if (count > best)
        {
          best = count;
          *shift = d;
        }
    }
  return best * 2 > items->len;
}

/* The rows shown are no longer in the pages in memory (more orders came
 * above them than those pages hold): where one of them is now is counted
 * on the cache, the rows around that place are read, and the view goes
 * along when most of the rows shown are there together (common_shift ()).
 * A row found in memory moved on its own (to the top, say) and says
 * nothing of the others, so it is not asked about; nor are more than a
 * few rows, each a count on the cache. */
static gboolean
locate_shift (OdOrderList *self,
              GPtrArray   *shown,
              const guint *positions,
              guint        first,
              guint        old_n,
              gint64      *shift)
{
  GListModel *model = G_LIST_MODEL (self->model);
  guint n = g_list_model_get_n_items (model);
  g_autofree guint *found = g_new (guint, shown->len);
  guint asked = 0;

  for (guint k = 0; k < shown->len && asked < 3; k++)
    {
      g_autoptr(GHashTable) around = NULL;
      guint at, from, to;

      if (positions[k] != G_MAXUINT)
        continue;
      asked++;
      /* Most likely moved by the rows the list gained. */
      at = od_order_list_model_locate (self->model,
                                       od_order_item_get_order_id (g_ptr_array_index (shown, k)),
                                       first + k + (n > old_n ? n - old_n : 0));
      if (at == G_MAXUINT)
        continue;
      /* The rows shown before and after this one may have moved a row
       * more or less (one went up from among them). */
      from = at - MIN (at, k + shown->len);
      to = MIN (n, at + 2 * shown->len);
      around = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
      for (guint p = from; p < to; p++)
        {
          g_autoptr(OdOrderItem) item = g_list_model_get_item (model, p);
          const char *id = od_order_item_get_order_id (item);

          /* A row not read yet is blank: it matches nothing. */
          if (id != NULL && id[0] != '\0')
            g_hash_table_insert (around, g_strdup (id), GUINT_TO_POINTER (p + 1));
        }
      for (guint j = 0; j < shown->len; j++)
        {
          const char *id = od_order_item_get_order_id (g_ptr_array_index (shown, j));
          guint p = id != NULL ? GPOINTER_TO_UINT (g_hash_table_lookup (around, id)) : 0;

          found[j] = p > 0 ? p - 1 : G_MAXUINT;
        }
      if (common_shift (shown, found, first, shift))
        return TRUE;
    }
  return FALSE;
}

void
od_order_list_refresh (OdOrderList *self)
{
  g_return_if_fail (OD_IS_ORDER_LIST (self));

  g_autoptr(GPtrArray) shown = NULL;
  g_autofree guint *positions = NULL;
  double value;
  guint first = 0;
  guint old_n;
  gint64 shift = 0;

  if (self->model == NULL)
    return;
  /* Where the view is, or will be once it lays out a refresh before. */
  value = self->keep_place ? self->keep_value
          : self->vadjustment != NULL ? gtk_adjustment_get_value (self->vadjustment) : 0;
  /* GTK keeps one row of the view (its anchor) where it is when the rows
   * change: a view at the top would drift down as new orders arrive,
   * and one further down would follow that row if it were the order
   * that changed, to the top.  An operator at the top stays there (the
   * selection follows its order wherever it goes); one who scrolled down
   * keeps the rows in view, moved by the orders inserted above them,
   * however many (locate_shift ()). */
  if (value > 0 && self->vadjustment != NULL && self->row_height > 0
      && gtk_widget_get_mapped (GTK_WIDGET (self)))
    {
      guint n = g_list_model_get_n_items (G_LIST_MODEL (self->model));
      guint last;

      first = (guint) (value / self->row_height);
      last = (guint) ((value + gtk_adjustment_get_page_size (self->vadjustment)) / self->row_height);
      last = MIN (last, n > 0 ? n - 1 : 0);
      shown = g_ptr_array_new_with_free_func (g_object_unref);
      for (guint p = first; p <= last && p < n; p++)
        {
          OdOrderItem *item = od_order_list_model_peek_item (self->model, p);

          /* The rows compared run from the top of the view to the
           * first one not in memory. */
          if (item == NULL)
            break;
          g_ptr_array_add (shown, g_object_ref (item));
        }
    }
  old_n = g_list_model_get_n_items (G_LIST_MODEL (self->model));
  self->updating_model = TRUE;
  od_order_list_model_refresh (self->model);
  self->updating_model = FALSE;
  if (value <= 0)
    {
      self->keep_place = self->vadjustment != NULL;
      self->keep_value = 0;
    }
  else if (shown != NULL && shown->len > 0)
    {
      positions = g_new (guint, shown->len);
      od_order_list_model_peek_positions (self->model, shown, positions);
      if (common_shift (shown, positions, first, &shift)
          || locate_shift (self, shown, positions, first, old_n, &shift))
        {
          self->keep_place = TRUE;
          self->keep_value = MAX (0, value + shift * self->row_height);
        }
    }
  /* The view moves its adjustment when it lays the rows out: it is moved
   * back right after, in the same frame (see on_layout_done()). */
  if (self->keep_place)
    {
      if (self->keep_place_tick == 0)
        self->keep_place_tick = gtk_widget_add_tick_callback (GTK_WIDGET (self), keep_place_tick,
                                                              NULL, NULL);
      gtk_widget_queue_resize (GTK_WIDGET (self->column_view));
    }
  update_counts (self);
}

void
od_order_list_set_pending (OdOrderList *self,
                           GHashTable  *pending_ids)
{
  g_return_if_fail (OD_IS_ORDER_LIST (self));
  g_clear_pointer (&self->pending, g_hash_table_unref);
  if (pending_ids != NULL)
    self->pending = g_hash_table_ref (pending_ids);
  if (self->model != NULL)
    od_order_list_model_set_pending (self->model, pending_ids);
}

void
od_order_list_focus_search (OdOrderList *self)
{
  g_return_if_fail (OD_IS_ORDER_LIST (self));
  gtk_search_bar_set_search_mode (self->search_bar, TRUE);
  gtk_widget_grab_focus (GTK_WIDGET (self->search_entry));
}

void
od_order_list_set_search (OdOrderList *self,
                          const char  *text)
{
  g_return_if_fail (OD_IS_ORDER_LIST (self));
  /* Replacing the text empties the entry first, and the entry reports an
   * empty text at once: that would show the whole list before the new
   * search.  Hiding the bar empties it too. */
  self->setting_search = TRUE;
  gtk_search_bar_set_search_mode (self->search_bar, text != NULL && *text != '\0');
  gtk_editable_set_text (GTK_EDITABLE (self->search_entry), text ? text : "");
  self->setting_search = FALSE;
  /* Apply at once rather than after the entry's typing delay. */
  apply_query (self);
}

void
od_order_list_set_status (OdOrderList   *self,
                          OdOrderStatus  status)
{
  g_return_if_fail (OD_IS_ORDER_LIST (self));
  for (guint i = 0; i < N_FILTERS; i++)
    if ((OdOrderStatus) i == status)
      gtk_toggle_button_set_active (self->filter_buttons[i], TRUE);
}

void
od_order_list_sort_by (OdOrderList *self,
                       OdOrderSort  sort,
                       gboolean     descending)
{
  g_return_if_fail (OD_IS_ORDER_LIST (self));
  for (guint i = 0; i < N_COLUMNS; i++)
    if (columns[i].sort == (int) sort)
      gtk_column_view_sort_by_column (self->column_view, self->columns[i],
                                      descending ? GTK_SORT_DESCENDING : GTK_SORT_ASCENDING);
}

const char *
od_order_list_get_selected_order_id (OdOrderList *self)
{
  g_return_val_if_fail (OD_IS_ORDER_LIST (self), NULL);
  return self->selected_id;
}

void
od_order_list_select_position (OdOrderList *self,
                               guint        position)
{
  g_return_if_fail (OD_IS_ORDER_LIST (self));
  gtk_single_selection_set_selected (self->selection, position);
}

/* Selects the order and scrolls to it when the list has it near the
 * top or among the rows in memory; returns whether it did. */
gboolean
od_order_list_select_order (OdOrderList *self,
                            const char  *order_id)
{
  guint position;

  g_return_val_if_fail (OD_IS_ORDER_LIST (self), FALSE);

  if (self->model == NULL)
    return FALSE;
  position = od_order_list_model_find (self->model, order_id);
  if (position == G_MAXUINT)
    return FALSE;
  gtk_single_selection_set_selected (self->selection, position);
  if (self->vadjustment != NULL && self->row_height > 0 && !position_in_view (self, position))
    gtk_adjustment_set_value (self->vadjustment,
                              (position > 2 ? position - 2 : 0) * self->row_height);
  return TRUE;
}

/* "5 minutes ago" must not stay that while the window is open: the
 * "Updated" cells are formatted again from `now_usec` (on screen at
 * once, the others as any changed cell). */
void
od_order_list_refresh_times (OdOrderList *self,
                             gint64       now_usec)
{
  g_autoptr(GPtrArray) cells = NULL;
  GHashTableIter iter;
  gpointer key;

  g_return_if_fail (OD_IS_ORDER_LIST (self));

  self->now_usec = now_usec;
  cells = g_ptr_array_new_with_free_func (g_object_unref);
  g_hash_table_iter_init (&iter, self->time_cells);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (cells, g_object_ref (key));
  for (guint i = 0; i < cells->len; i++)
    {
      GtkListItem *list_item = g_ptr_array_index (cells, i);
      OdOrderItem *item = gtk_list_item_get_item (list_item);
      GtkWidget *label = gtk_list_item_get_child (list_item);
      g_autofree char *text = NULL;

      if (item == NULL || label == NULL)
        continue;
      text = od_format_relative (od_order_item_get_row (item)->updated_at, now_usec);
      if (g_strcmp0 (text, gtk_inscription_get_text (GTK_INSCRIPTION (label))) != 0)
        on_item_changed (item, list_item);
    }
}

static gboolean
refresh_times_timeout (gpointer user_data)
{
  OdOrderList *self = user_data;

  od_order_list_refresh_times (self, g_get_real_time ());
  return G_SOURCE_CONTINUE;
}

GtkColumnView *
od_order_list_get_column_view (OdOrderList *self)
{
  g_return_val_if_fail (OD_IS_ORDER_LIST (self), NULL);
  return self->column_view;
}

GtkWidget *
od_order_list_new (void)
{
  return g_object_new (OD_TYPE_ORDER_LIST, NULL);
}

static void
od_order_list_dispose (GObject *object)
{
  OdOrderList *self = OD_ORDER_LIST (object);

  if (self->column_view != NULL)
    gtk_column_view_set_model (self->column_view, NULL);
  if (self->selection != NULL)
    g_signal_handlers_disconnect_by_data (self->selection, self);
  g_clear_object (&self->selection);
  if (self->model != NULL)
    g_signal_handlers_disconnect_by_data (self->model, self);
  g_clear_object (&self->model);
  if (self->cache != NULL)
    g_signal_handlers_disconnect_by_data (self->cache, self);
  g_clear_object (&self->cache);
  g_clear_pointer (&self->pending, g_hash_table_unref);
  g_clear_handle_id (&self->settle_id, g_source_remove);
  g_clear_handle_id (&self->fit_idle, g_source_remove);
  if (self->hadjustment != NULL)
    g_signal_handlers_disconnect_by_data (self->hadjustment, self);
  g_clear_object (&self->hadjustment);
  if (self->stale_tick_id != 0)
    {
      gtk_widget_remove_tick_callback (GTK_WIDGET (self), self->stale_tick_id);
      self->stale_tick_id = 0;
    }
  g_clear_pointer (&self->stale_cells, g_hash_table_unref);
  g_clear_handle_id (&self->times_source, g_source_remove);
  g_clear_pointer (&self->time_cells, g_hash_table_unref);
  g_clear_pointer (&self->status_cells, g_hash_table_unref);
  if (self->column_view != NULL)
    g_signal_handlers_disconnect_by_data (self->column_view, self);
  if (self->vadjustment != NULL)
    g_signal_handlers_disconnect_by_data (self->vadjustment, self);
  g_clear_object (&self->vadjustment);
  gtk_widget_dispose_template (GTK_WIDGET (self), OD_TYPE_ORDER_LIST);
  {
    GtkWidget *child;

    /* Children the template does not name are ours to unparent. */
    while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
      gtk_widget_unparent (child);
  }

  G_OBJECT_CLASS (od_order_list_parent_class)->dispose (object);
}

static void
od_order_list_finalize (GObject *object)
{
  OdOrderList *self = OD_ORDER_LIST (object);

  g_free (self->selected_id);

  G_OBJECT_CLASS (od_order_list_parent_class)->finalize (object);
}

static void
od_order_list_class_init (OdOrderListClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_order_list_dispose;
  object_class->finalize = od_order_list_finalize;
  widget_class->realize = od_order_list_realize;
  widget_class->unrealize = od_order_list_unrealize;

  signals[SELECTION_CHANGED] =
    g_signal_new ("selection-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/orderdesk/OrderDesk/ui/od-order-list.ui");
  gtk_widget_class_bind_template_child (widget_class, OdOrderList, search_bar);
  gtk_widget_class_bind_template_child (widget_class, OdOrderList, search_entry);
  gtk_widget_class_bind_template_child (widget_class, OdOrderList, filter_box);
  gtk_widget_class_bind_template_child (widget_class, OdOrderList, count_label);
  gtk_widget_class_bind_template_child (widget_class, OdOrderList, search_note);
  gtk_widget_class_bind_template_child (widget_class, OdOrderList, stack);
  gtk_widget_class_bind_template_child (widget_class, OdOrderList, column_view);
  gtk_widget_class_bind_template_child (widget_class, OdOrderList, empty_page);
  gtk_widget_class_bind_template_callback (widget_class, on_search_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_stop_search);
  gtk_widget_class_bind_template_callback (widget_class, on_activate);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
}

static void
od_order_list_init (OdOrderList *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));

  self->stale_cells = g_hash_table_new_full (g_direct_hash, g_direct_equal, g_object_unref, NULL);
  self->time_cells = g_hash_table_new (g_direct_hash, g_direct_equal);
  self->status_cells = g_hash_table_new (g_direct_hash, g_direct_equal);
  /* Relative times change at most once a minute. */
  self->times_source = g_timeout_add_seconds (30, refresh_times_timeout, self);
  g_signal_connect_swapped (self->column_view, "notify::vadjustment",
                            G_CALLBACK (on_vadjustment_changed), self);
  on_vadjustment_changed (self);
  g_signal_connect_swapped (self->column_view, "notify::hadjustment",
                            G_CALLBACK (on_hadjustment_changed), self);
  on_hadjustment_changed (self);
  g_signal_connect (self, "map", G_CALLBACK (queue_fit_columns), NULL);
  self->status = OD_STATUS_NONE;
  set_model (self, NULL);
  gtk_search_bar_connect_entry (self->search_bar, GTK_EDITABLE (self->search_entry));
  /* Typing while the list has the focus starts a search. */
  gtk_search_bar_set_key_capture_widget (self->search_bar, GTK_WIDGET (self->column_view));
  build_columns (self);
  build_filters (self);
  build_row_menu (self);
  update_counts (self);
}

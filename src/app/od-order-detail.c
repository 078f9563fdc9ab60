/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-format.h"
#include "od-order-detail.h"
#include "od-query.h"
#include "od-tooltip.h"

/* The order detail: header, lines, totals, and the timeline.  Selecting a
 * timeline entry shows the order as it was right after that event (folded
 * by the core from the local events); the actions only apply to the
 * current state. */

struct _OdOrderDetail
{
  GtkWidget        parent_instance;

  GtkStack        *stack;
  GtkLabel        *title_label;
  GtkLabel        *subtitle_label;
  GtkLabel        *pending_badge;
  GtkLabel        *status_pill;
  GtkRevealer     *past_revealer;
  GtkLabel        *past_label;
  GtkLabel        *inconsistent_label;
  GtkFlowBox      *actions_box;
  GtkListBox      *lines_list;
  GtkLabel        *totals_label;
  AdwPreferencesGroup *info_group;
  GtkListBox      *info_list;
  GtkListBox      *timeline_list;

  OdCache         *cache;
  char            *order_id;
  OdOrder         *current;
  OdOrder         *past;
  gint64           past_position; /* -1: showing the current state */
  GPtrArray       *timeline;      /* OdEvent */
  GHashTable      *pending;
  const char      *status_class;
  guint            actions_mask;  /* the action buttons shown, by index */
};

G_DEFINE_FINAL_TYPE (OdOrderDetail, od_order_detail, GTK_TYPE_WIDGET)

enum {
  COMMAND,
  REMOVE_ITEM,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void
clear_list (GtkListBox *list)
{
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (list))) != NULL)
    gtk_list_box_remove (list, child);
}

static void
clear_flow (GtkFlowBox *box)
{
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (box))) != NULL)
    gtk_flow_box_remove (box, child);
}

static char *
member_string (JsonObject *data,
               const char *name)
{
  if (data == NULL || !json_object_has_member (data, name))
    return NULL;
  return g_strdup (json_object_get_string_member_with_default (data, name, ""));
}

/* What an event changed, in a few words. */
static char *
describe_event (OdEvent *event)
{
  JsonObject *data = od_event_get_data (event);
  g_autofree char *a = NULL;
  g_autofree char *b = NULL;

  if (data == NULL)
    return g_strdup ("");

  switch (od_event_type_from_name (event->type))
    {
    case OD_EVENT_ORDER_CREATED:
    {
      a = member_string (data, "customer_name");
      b = member_string (data, "customer_email");
      return g_strdup_printf ("%s <%s>, %s", a ? a : "", b ? b : "",
                              json_object_get_string_member_with_default (data, "currency", ""));
    }
    case OD_EVENT_ITEM_ADDED:
    {
      g_autofree char *price = od_format_money (json_object_get_int_member_with_default (data, "unit_price_cents", 0), "");

      /* TRANSLATORS: an item added: "2 × Blue mug (MUG-BLUE) at 12.99" */
      return g_strdup_printf (_("%lld × %s (%s) at %s"),
                              (long long) json_object_get_int_member_with_default (data, "quantity", 0),
                              json_object_get_string_member_with_default (data, "name", ""),
                              json_object_get_string_member_with_default (data, "sku", ""),
                              g_strstrip (price));
    }
    case OD_EVENT_ITEM_REMOVED:
      return g_strdup (json_object_get_string_member_with_default (data, "sku", ""));
    case OD_EVENT_ORDER_PLACED:
    {
      g_autofree char *total = od_format_money (json_object_get_int_member_with_default (data, "total_cents", 0), "");

      /* TRANSLATORS: "Total 25.98, 2 items" */
      return g_strdup_printf (ngettext ("Total %s, %lld item",
                                        "Total %s, %lld items",
                                        json_object_get_int_member_with_default (data, "item_count", 0)),
                              g_strstrip (total),
                              (long long) json_object_get_int_member_with_default (data, "item_count", 0));
    }
    case OD_EVENT_ORDER_SHIPPED:
      return g_strdup_printf ("%s · %s",
                            json_object_get_string_member_with_default (data, "carrier", ""),
                            json_object_get_string_member_with_default (data, "tracking_number", ""));
    case OD_EVENT_ORDER_NOTE_ADDED:
      return g_strdup (json_object_get_string_member_with_default (data, "text", ""));
    case OD_EVENT_ORDER_REFUNDED:
      {
        g_autofree char *amount = od_format_money (json_object_get_int_member_with_default (data, "amount_cents", 0), "");

        /* TRANSLATORS: a refund in the history: "12.50 — dented" */
        return g_strdup_printf (_("%s — %s"), g_strstrip (amount),
                                json_object_get_string_member_with_default (data, "reason", ""));
      }
    case OD_EVENT_ORDER_CANCELLED:
      return g_strdup (json_object_get_string_member_with_default (data, "reason", ""));
    case OD_EVENT_ORDER_DELIVERED:
      return g_strdup ("");
    case OD_EVENT_UNKNOWN:
    case OD_EVENT_N:
    default:
      break;
    }
  /* An event type this version does not know: show its data as is. */
  return g_strdup (event->data ? event->data : "");
}

/* Every command of the table has a button, in the table's order, but
 * CreateOrder (no order yet) and RemoveItem (a button on each line). */
static gboolean
has_button (OdCommandType type)
{
  return type != OD_COMMAND_CREATE_ORDER && type != OD_COMMAND_REMOVE_ITEM;
}

static void
on_action_clicked (GtkButton     *button,
                   OdOrderDetail *self)
{
  int type = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "od-command"));

  g_signal_emit (self, signals[COMMAND], 0, type);
}

static void
on_remove_clicked (GtkButton     *button,
                   OdOrderDetail *self)
{
  const char *sku = g_object_get_data (G_OBJECT (button), "od-sku");

  g_signal_emit (self, signals[REMOVE_ITEM], 0, sku);
}

static void
add_info_row (OdOrderDetail *self,
              const char    *title,
              const char    *value,
              gboolean       long_text)
{
  GtkWidget *row = adw_action_row_new ();
  GtkWidget *label = gtk_label_new (value);

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  gtk_label_set_selectable (GTK_LABEL (label), TRUE);
  /* Short values (times, codes) stay on one line.  Long ones wrap only
   * when the row has no room for their line: measured wrapped, "La Poste"
   * next to "Versanddienstleister" took two lines in a wide row. */
  gtk_label_set_wrap (GTK_LABEL (label), long_text);
  gtk_label_set_natural_wrap_mode (GTK_LABEL (label), GTK_NATURAL_WRAP_NONE);
  gtk_label_set_xalign (GTK_LABEL (label), 1);
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), label);
  g_object_set_data (G_OBJECT (row), "od-value", label);
  gtk_list_box_append (self->info_list, row);
}

/* Live events rebuild the shown order often (every event of the selected
 * order), and a new AdwActionRow costs its CSS and first measuring: a
 * dozen lines and events rebuilt made the frame after each event 20-45 ms
 * late.  Rows whose content is the same are kept. */

static char *
line_signature (const OdLine *line,
                const char   *currency,
                gboolean      removable)
{
  return g_strdup_printf ("%s\x1f%s\x1f%lld\x1f%lld\x1f%s\x1f%d", line->sku, line->name,
                          (long long) line->quantity, (long long) line->unit_price_cents,
                          currency ? currency : "", removable);
}

static GtkWidget *
new_line_row (OdOrderDetail *self,
              const OdLine  *line,
              const char    *currency,
              gboolean       removable)
{
  GtkWidget *row = adw_action_row_new ();
  g_autofree char *sub = NULL;
  g_autofree char *unit = od_format_money (line->unit_price_cents, currency);
  g_autofree char *amount = od_format_money (line->quantity * line->unit_price_cents, currency);
  GtkWidget *amount_label = gtk_label_new (amount);

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), line->name);
  adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
  /* TRANSLATORS: a line: "MUG-BLUE · 2 × 12.99 EUR" */
  sub = g_strdup_printf (_("%s · %lld × %s"), line->sku, (long long) line->quantity, unit);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), sub);
  gtk_widget_add_css_class (amount_label, "numeric");
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), amount_label);
  gtk_widget_add_css_class (row, "line-row");
  if (removable)
    {
      GtkWidget *remove = gtk_button_new_from_icon_name ("user-trash-symbolic");

      gtk_widget_set_valign (remove, GTK_ALIGN_CENTER);
      gtk_widget_add_css_class (remove, "flat");
      g_autofree char *label = NULL;

      od_tooltip_set (remove, _("Remove this item"));
      /* TRANSLATORS: a command description, "Remove MUG-BLUE" */
      label = g_strdup_printf (_("Remove %s"), line->name);
      gtk_accessible_update_property (GTK_ACCESSIBLE (remove), GTK_ACCESSIBLE_PROPERTY_LABEL, label, -1);
      g_object_set_data_full (G_OBJECT (remove), "od-sku", g_strdup (line->sku), g_free);
      g_signal_connect (remove, "clicked", G_CALLBACK (on_remove_clicked), self);
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), remove);
    }
  return row;
}

static void
update_lines (OdOrderDetail *self,
              const OdOrder *order,
              gboolean       removable)
{
  guint n = order->lines != NULL ? order->lines->len : 0;
  GtkWidget *child = gtk_widget_get_first_child (GTK_WIDGET (self->lines_list));
  guint i;

  for (i = 0; i < MAX (n, 1); i++)
    {
      const OdLine *line = n > 0 ? g_ptr_array_index (order->lines, i) : NULL;
      g_autofree char *signature = line ? line_signature (line, order->currency, removable)
                                        : g_strdup ("\x1f");
      GtkWidget *row;

      if (child != NULL
          && g_strcmp0 (g_object_get_data (G_OBJECT (child), "od-signature"), signature) == 0)
        {
          child = gtk_widget_get_next_sibling (child);
          continue;
        }
      if (line != NULL)
        row = new_line_row (self, line, order->currency, removable);
      else
        {
          row = adw_action_row_new ();
          adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), _("No items yet"));
        }
      g_object_set_data_full (G_OBJECT (row), "od-signature", g_steal_pointer (&signature), g_free);
      gtk_list_box_insert (self->lines_list, row, i);
      if (child != NULL)
        {
          GtkWidget *next = gtk_widget_get_next_sibling (child);

          gtk_list_box_remove (self->lines_list, child);
          child = next;
        }
    }
  while (child != NULL)
    {
      GtkWidget *next = gtk_widget_get_next_sibling (child);

      gtk_list_box_remove (self->lines_list, child);
      child = next;
    }
}

static void
render_order (OdOrderDetail *self)
{
  const OdOrder *order = self->past ? self->past : self->current;
  gboolean is_current = self->past == NULL;
  g_autofree char *subtitle = NULL;
  g_autofree char *total = NULL;
  g_autofree char *totals = NULL;
  guint actions_mask;
  const char *css;

  if (order == NULL)
    {
      gtk_stack_set_visible_child_name (self->stack, "none");
      return;
    }
  gtk_stack_set_visible_child_name (self->stack, "order");

  gtk_label_set_label (self->title_label, order->customer_name ? order->customer_name : "");
  /* TRANSLATORS: under the customer name: "e-mail · order id · version 3" */
  subtitle = g_strdup_printf (_("%s · %s · version %lld"),
                              order->customer_email ? order->customer_email : "",
                              order->order_id, (long long) order->version);
  gtk_label_set_label (self->subtitle_label, subtitle);

  css = od_status_css_class (order->status);
  if (self->status_class != NULL)
    gtk_widget_remove_css_class (GTK_WIDGET (self->status_pill), self->status_class);
  gtk_widget_add_css_class (GTK_WIDGET (self->status_pill), css);
  self->status_class = css;
  gtk_label_set_label (self->status_pill, od_format_status (order->status));
  gtk_widget_set_visible (GTK_WIDGET (self->pending_badge),
                          self->pending != NULL && g_hash_table_contains (self->pending, order->order_id));

  /* Actions: only for the current state; the buttons are made again
   * only when the set changes. */
  actions_mask = 0;
  for (OdCommandType t = 0; is_current && t < OD_COMMAND_N_TYPES; t++)
    if (has_button (t) && od_order_allows (order, t))
      actions_mask |= 1u << t;
  gtk_widget_set_visible (GTK_WIDGET (self->actions_box), is_current);
  if (actions_mask != self->actions_mask)
    clear_flow (self->actions_box);
  if (actions_mask != self->actions_mask)
    for (OdCommandType t = 0; t < OD_COMMAND_N_TYPES; t++)
      {
        const OdCommandSpec *spec = od_command_spec (t);
        GtkWidget *button;

        if ((actions_mask & (1u << t)) == 0)
          continue;
        button = gtk_button_new_with_mnemonic (_(spec->action_label));
        g_object_set_data (G_OBJECT (button), "od-command", GINT_TO_POINTER (t));
        if (spec->destructive)
          gtk_widget_add_css_class (button, "destructive-action");
        else if (spec->suggested)
          gtk_widget_add_css_class (button, "suggested-action");
        g_signal_connect (button, "clicked", G_CALLBACK (on_action_clicked), self);
        gtk_flow_box_append (self->actions_box, button);
      }
  self->actions_mask = actions_mask;

  update_lines (self, order, is_current && od_order_allows (order, OD_COMMAND_REMOVE_ITEM));

  total = od_format_money (od_order_total_cents (order), order->currency);
  /* TRANSLATORS: "Total 25.98 EUR · 2 items" */
  totals = g_strdup_printf (ngettext ("Total %s · %lld item",
                                      "Total %s · %lld items",
                                      od_order_item_count (order)),
                            total, (long long) od_order_item_count (order));
  gtk_label_set_label (self->totals_label, totals);

  {
    g_autofree char *created = od_format_timestamp (order->created_at);
    g_autofree char *updated = od_format_timestamp (order->updated_at);
    g_autofree char *refunded = order->refunded_cents > 0
      ? od_format_money (order->refunded_cents, order->currency) : NULL;
    const struct { const char *title; const char *value; gboolean long_text; } info[] = {
      { _("Created"), created, FALSE },
      { _("Updated"), updated, FALSE },
      { _("Carrier"), order->carrier, TRUE },
      { _("Tracking number"), order->tracking_number, FALSE },
      { _("Cancelled because"), order->cancel_reason, TRUE },
      { _("Refunded"), refunded, FALSE },
    };
    GtkWidget *child = gtk_widget_get_first_child (GTK_WIDGET (self->info_list));
    gboolean same = TRUE;

    /* The same rows as shown: only their values change. */
    for (guint i = 0; i < G_N_ELEMENTS (info) && same; i++)
      {
        if (info[i].value == NULL)
          continue;
        same = child != NULL
               && g_strcmp0 (adw_preferences_row_get_title (ADW_PREFERENCES_ROW (child)),
                             info[i].title) == 0;
        if (child != NULL)
          child = gtk_widget_get_next_sibling (child);
      }
    same = same && child == NULL;
    child = gtk_widget_get_first_child (GTK_WIDGET (self->info_list));
    if (!same)
      clear_list (self->info_list);
    for (guint i = 0; i < G_N_ELEMENTS (info); i++)
      {
        if (info[i].value == NULL)
          continue;
        if (same)
          {
            gtk_label_set_label (g_object_get_data (G_OBJECT (child), "od-value"), info[i].value);
            child = gtk_widget_get_next_sibling (child);
          }
        else
          add_info_row (self, info[i].title, info[i].value, info[i].long_text);
      }
  }
}

static GtkWidget *
new_timeline_row (OdOrderDetail *self,
                  const OdEvent *event)
{
  GtkWidget *row = adw_action_row_new ();
  g_autofree char *when = od_format_timestamp (event->recorded_at);
  g_autofree char *what = describe_event ((OdEvent *) event);
  g_autofree char *subtitle = NULL;
  g_autofree char *title = NULL;

  /* TRANSLATORS: a history entry's title: "Item added · version 2" */
  title = g_strdup_printf (_("%s · version %lld"),
                           od_format_event_type (event->type), (long long) event->version);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
  /* TRANSLATORS: a history entry: "by alice, 26/11/2026 10:00:01 — 2 × Blue mug" */
  subtitle = *what != '\0'
    ? g_strdup_printf (_("by %s, %s — %s"), event->actor ? event->actor : "?", when, what)
    : g_strdup_printf (_("by %s, %s"), event->actor ? event->actor : "?", when);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
  gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), TRUE);
  g_object_set_data_full (G_OBJECT (row), "od-position64",
                          g_memdup2 (&event->position, sizeof (gint64)), g_free);
  gtk_widget_add_css_class (row, "timeline-row");
  return row;
}

/* `shown` is the timeline the rows show now (NULL: none).  A timeline
 * that only grew gets rows for its new events on top (newest first, as
 * operators read a history); anything else is built again. */
static void
render_timeline (OdOrderDetail *self,
                 GPtrArray     *shown)
{
  guint from = 0;

  if (shown != NULL && self->timeline != NULL && shown->len > 0
      && self->timeline->len >= shown->len
      && ((OdEvent *) g_ptr_array_index (shown, shown->len - 1))->position
         == ((OdEvent *) g_ptr_array_index (self->timeline, shown->len - 1))->position
      && ((OdEvent *) g_ptr_array_index (shown, 0))->position
         == ((OdEvent *) g_ptr_array_index (self->timeline, 0))->position)
    from = shown->len;
  else
    clear_list (self->timeline_list);
  if (self->timeline == NULL)
    return;

  for (guint i = from; i < self->timeline->len; i++)
    {
      OdEvent *event = g_ptr_array_index (self->timeline, i);
      GtkWidget *row = new_timeline_row (self, event);

      gtk_list_box_insert (self->timeline_list, row, 0);
      if (self->past_position == event->position)
        gtk_list_box_select_row (self->timeline_list, GTK_LIST_BOX_ROW (row));
    }
}

void
od_order_detail_show_past (OdOrderDetail *self,
                           gint64         position)
{
  g_autoptr(GError) error = NULL;
  OdEvent *newest;

  g_return_if_fail (OD_IS_ORDER_DETAIL (self));

  g_clear_pointer (&self->past, od_order_free);
  self->past_position = -1;
  newest = self->timeline && self->timeline->len > 0
    ? g_ptr_array_index (self->timeline, self->timeline->len - 1) : NULL;

  if (position >= 0 && self->cache != NULL && self->order_id != NULL
      && (newest == NULL || position != newest->position))
    {
      self->past = od_query_order_at (self->cache, self->order_id, position, &error);
      if (self->past == NULL && error != NULL)
        g_warning ("Could not fold the order's history: %s", error->message);
      if (self->past != NULL)
        self->past_position = position;
    }

  if (self->past != NULL)
    {
      g_autofree char *when = NULL;
      g_autofree char *text = NULL;

      for (guint i = 0; i < self->timeline->len; i++)
        {
          OdEvent *event = g_ptr_array_index (self->timeline, i);

          if (event->position == position)
            when = od_format_timestamp (event->recorded_at);
        }
      /* TRANSLATORS: banner over a past state of an order */
      text = g_strdup_printf (_("Showing the order as it was on %s (version %lld)"),
                              when ? when : "?", (long long) self->past->version);
      gtk_label_set_label (self->past_label, text);
    }
  else
    gtk_list_box_unselect_all (self->timeline_list);
  gtk_revealer_set_reveal_child (self->past_revealer, self->past != NULL);
  render_order (self);
}

static void
on_timeline_activated (OdOrderDetail *self,
                       GtkListBoxRow *row)
{
  gint64 *position = g_object_get_data (G_OBJECT (row), "od-position64");

  if (position != NULL)
    od_order_detail_show_past (self, *position);
}

static void
on_show_current (OdOrderDetail *self)
{
  od_order_detail_show_past (self, -1);
}

static void
load (OdOrderDetail *self,
      gboolean       force)
{
  g_autoptr(GError) error = NULL;
  OdOrder *order = NULL;

  if (self->cache == NULL || self->order_id == NULL)
    {
      g_clear_pointer (&self->current, od_order_free);
      g_clear_pointer (&self->past, od_order_free);
      g_clear_pointer (&self->timeline, g_ptr_array_unref);
      render_order (self);
      return;
    }

  order = od_query_order (self->cache, self->order_id, &error);
  if (order == NULL && error != NULL)
    g_warning ("Could not read order %s: %s", self->order_id, error->message);
  /* The server sent this order an event that breaks the protocol: the
   * cache did not apply it nor anything after it, and says so rather
   * than show a state nobody decided. */
  {
    gint64 version = 0;
    gboolean inconsistent;

    g_clear_error (&error);
    inconsistent = od_query_inconsistency (self->cache, self->order_id, &version, NULL, NULL,
                                           &error);
    if (error != NULL)
      g_warning ("Could not read whether order %s is consistent: %s", self->order_id,
                 error->message);
    if (inconsistent)
      {
        g_autofree char *text = NULL;

        /* TRANSLATORS: banner over an order the server sent impossible events for */
        text = g_strdup_printf (_("This order’s history breaks the protocol: it is shown as of "
                                  "version %lld, and later events are not applied. Verify or "
                                  "rebuild the cache to repair it."),
                                (long long) version);
        gtk_label_set_label (self->inconsistent_label, text);
      }
    gtk_widget_set_visible (GTK_WIDGET (self->inconsistent_label), inconsistent);
  }
  if (!force && order != NULL && self->current != NULL
      && order->version == self->current->version
      && order->last_position == self->current->last_position)
    {
      od_order_free (order);
      render_order (self); /* the pending badge may have changed */
      return;
    }
  g_clear_pointer (&self->current, od_order_free);
  self->current = order;

  {
    g_autoptr(GPtrArray) shown = g_steal_pointer (&self->timeline);

    g_clear_error (&error);
    self->timeline = od_query_timeline (self->cache, self->order_id, &error);
    if (self->timeline == NULL && error != NULL)
      g_warning ("Could not read the history of %s: %s", self->order_id, error->message);
    /* Another order's history is never extended. */
    render_timeline (self, force ? NULL : shown);
  }
  od_order_detail_show_past (self, self->past_position);
}

void
od_order_detail_set_cache (OdOrderDetail *self,
                           OdCache       *cache)
{
  g_return_if_fail (OD_IS_ORDER_DETAIL (self));

  g_set_object (&self->cache, cache);
  if (cache == NULL)
    g_clear_pointer (&self->order_id, g_free);
  self->past_position = -1;
  load (self, TRUE);
}

void
od_order_detail_show (OdOrderDetail *self,
                      const char    *order_id)
{
  g_return_if_fail (OD_IS_ORDER_DETAIL (self));

  if (g_strcmp0 (order_id, self->order_id) == 0)
    return;
  g_free (self->order_id);
  self->order_id = g_strdup (order_id);
  self->past_position = -1;
  load (self, TRUE);
}

const char *
od_order_detail_get_inconsistent_message (OdOrderDetail *self)
{
  g_return_val_if_fail (OD_IS_ORDER_DETAIL (self), NULL);

  if (!gtk_widget_get_visible (GTK_WIDGET (self->inconsistent_label)))
    return NULL;
  return gtk_label_get_label (self->inconsistent_label);
}

void
od_order_detail_reload (OdOrderDetail *self)
{
  g_return_if_fail (OD_IS_ORDER_DETAIL (self));
  load (self, FALSE);
}

void
od_order_detail_set_pending_orders (OdOrderDetail *self,
                                    GHashTable    *pending_ids)
{
  g_return_if_fail (OD_IS_ORDER_DETAIL (self));

  g_clear_pointer (&self->pending, g_hash_table_unref);
  if (pending_ids != NULL)
    self->pending = g_hash_table_ref (pending_ids);
  if (self->current != NULL)
    gtk_widget_set_visible (GTK_WIDGET (self->pending_badge),
                            self->pending != NULL
                            && g_hash_table_contains (self->pending, self->current->order_id));
}

const OdOrder *
od_order_detail_get_order (OdOrderDetail *self)
{
  g_return_val_if_fail (OD_IS_ORDER_DETAIL (self), NULL);
  return self->current;
}

const OdOrder *
od_order_detail_get_shown_order (OdOrderDetail *self)
{
  g_return_val_if_fail (OD_IS_ORDER_DETAIL (self), NULL);
  return self->past ? self->past : self->current;
}

gint64
od_order_detail_get_past_position (OdOrderDetail *self)
{
  g_return_val_if_fail (OD_IS_ORDER_DETAIL (self), -1);
  return self->past_position;
}

guint
od_order_detail_get_timeline_length (OdOrderDetail *self)
{
  g_return_val_if_fail (OD_IS_ORDER_DETAIL (self), 0);
  return self->timeline ? self->timeline->len : 0;
}

GtkWidget *
od_order_detail_new (void)
{
  return g_object_new (OD_TYPE_ORDER_DETAIL, NULL);
}

static void
od_order_detail_dispose (GObject *object)
{
  OdOrderDetail *self = OD_ORDER_DETAIL (object);

  g_clear_object (&self->cache);
  g_clear_pointer (&self->pending, g_hash_table_unref);
  gtk_widget_dispose_template (GTK_WIDGET (self), OD_TYPE_ORDER_DETAIL);
  {
    GtkWidget *child;

    /* Children the template does not name are ours to unparent. */
    while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))) != NULL)
      gtk_widget_unparent (child);
  }

  G_OBJECT_CLASS (od_order_detail_parent_class)->dispose (object);
}

static void
od_order_detail_finalize (GObject *object)
{
  OdOrderDetail *self = OD_ORDER_DETAIL (object);

  g_free (self->order_id);
  g_clear_pointer (&self->current, od_order_free);
  g_clear_pointer (&self->past, od_order_free);
  g_clear_pointer (&self->timeline, g_ptr_array_unref);

  G_OBJECT_CLASS (od_order_detail_parent_class)->finalize (object);
}

static void
od_order_detail_class_init (OdOrderDetailClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_order_detail_dispose;
  object_class->finalize = od_order_detail_finalize;

  signals[COMMAND] =
    g_signal_new ("command", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT);
  signals[REMOVE_ITEM] =
    g_signal_new ("remove-item", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/orderdesk/OrderDesk/ui/od-order-detail.ui");
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, stack);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, title_label);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, subtitle_label);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, pending_badge);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, status_pill);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, past_revealer);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, past_label);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, inconsistent_label);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, actions_box);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, lines_list);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, totals_label);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, info_group);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, info_list);
  gtk_widget_class_bind_template_child (widget_class, OdOrderDetail, timeline_list);
  gtk_widget_class_bind_template_callback (widget_class, on_timeline_activated);
  gtk_widget_class_bind_template_callback (widget_class, on_show_current);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
}

static void
od_order_detail_init (OdOrderDetail *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->past_position = -1;
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "od-keep-model.h"
#include "od-order-item.h"

/* What the order list's view shows: the list model, except that an empty
 * result does not empty the view.  GTK 4.8 destroys every row widget of
 * a list that becomes empty and creates about 200 when it fills again
 * (40 and 90 ms at a million orders, most of a search that finds
 * nothing and of the next one).  While the list model is empty the view
 * is hidden behind the "no orders" page, so this model keeps the rows it
 * had; the list model parks their items, and when a new query has rows
 * they take its rows in place: the view is told only of the positions
 * past them, so GTK keeps its widgets bound as they are.
 *
 * The list model itself always tells the truth (it is what export, the
 * counts and the tests read); only the hidden view sees held rows. */

/* The first rows GTK is given back in the same change as it gives its
 * own up: it looks up every added item to reuse widgets, so the rest of
 * a long result is appended after. */
#define REUSE_SPAN (3 * OD_ORDER_LIST_PAGE_SIZE)

struct _OdKeepModel
{
  GObject           parent_instance;

  OdOrderListModel *source;
  gulong            changed_id;
  guint             n_items;  /* what the view was told */
  gboolean          held;
  GPtrArray        *parked;   /* while held: the items the view has */
};

static void od_keep_model_iface_init (GListModelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (OdKeepModel, od_keep_model, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_LIST_MODEL, od_keep_model_iface_init))

static GType
od_keep_model_get_item_type (GListModel *model)
{
  return OD_TYPE_ORDER_ITEM;
}

static guint
od_keep_model_get_n_items (GListModel *model)
{
  return OD_KEEP_MODEL (model)->n_items;
}

static gpointer
od_keep_model_get_item (GListModel *model,
                        guint       position)
{
  OdKeepModel *self = OD_KEEP_MODEL (model);
  GPtrArray *parked;
  OdOrderRow *blank;

  if (position >= self->n_items)
    return NULL;
  if (!self->held)
    return g_list_model_get_item (G_LIST_MODEL (self->source), position);

  /* Held: the view is hidden and binds no new rows; should it ask, the
   * parked rows, else an empty one. */
  parked = od_order_list_model_get_parked (self->source);
  if (parked != NULL && position < parked->len)
    return g_object_ref (g_ptr_array_index (parked, position));
  blank = g_new0 (OdOrderRow, 1);
  blank->customer_name = g_strdup ("");
  blank->customer_email = g_strdup ("");
  blank->currency = g_strdup ("");
  blank->created_at = g_strdup ("");
  blank->updated_at = g_strdup ("");
  return od_order_item_new (blank);
}

static void
od_keep_model_iface_init (GListModelInterface *iface)
{
  iface->get_item_type = od_keep_model_get_item_type;
  iface->get_n_items = od_keep_model_get_n_items;
  iface->get_item = od_keep_model_get_item;
}

static void
on_source_changed (GListModel  *source,
                   guint        position,
                   guint        removed,
                   guint        added,
                   OdKeepModel *self)
{
  guint n = g_list_model_get_n_items (source);

  if (!self->held)
    {
      /* Emptied: keep the rows, and their items parked by the source. */
      if (n == 0 && removed > 0 && position == 0 && added == 0
          && od_order_list_model_get_parked (OD_ORDER_LIST_MODEL (source)) != NULL)
        {
          self->held = TRUE;
          self->parked = g_ptr_array_ref (od_order_list_model_get_parked (OD_ORDER_LIST_MODEL (source)));
          return;
        }
      self->n_items = n;
      g_list_model_items_changed (G_LIST_MODEL (self), position, removed, added);
      return;
    }

  if (n == 0)
    return;

  /* Rows again.  The first positions whose items are still the parked
   * ones (a new query gives them its rows in place) are the view's
   * already: GTK 4.8 told of them would unbind and bind every row it
   * holds again (12–20 ms at a million orders).  From the first other
   * item on, one change gives GTK the new items, the first of them in
   * the same change as it gives its own up (it looks up every added item
   * to reuse widgets), then the rest.  A refresh that found rows has new
   * items from the first position on. */
  {
    guint held_n = self->n_items;
    guint same = 0;
    guint limit = MIN (MIN (n, held_n), self->parked != NULL ? self->parked->len : 0);

    while (same < limit
           && od_order_list_model_peek_item (OD_ORDER_LIST_MODEL (source), same)
              == g_ptr_array_index (self->parked, same))
      same++;
    g_clear_pointer (&self->parked, g_ptr_array_unref);
    self->held = FALSE;
    if (held_n > same)
      {
        guint first = MIN (n, same + REUSE_SPAN);

        self->n_items = first;
        g_list_model_items_changed (G_LIST_MODEL (self), same, held_n - same, first - same);
      }
    if (n > self->n_items)
      {
        guint old_n = self->n_items;

        self->n_items = n;
        g_list_model_items_changed (G_LIST_MODEL (self), old_n, 0, n - old_n);
      }
  }
}

OdKeepModel *
od_keep_model_new (OdOrderListModel *source)
{
  OdKeepModel *self = g_object_new (OD_TYPE_KEEP_MODEL, NULL);

  self->source = g_object_ref (source);
  self->n_items = g_list_model_get_n_items (G_LIST_MODEL (source));
  self->changed_id = g_signal_connect (source, "items-changed", G_CALLBACK (on_source_changed),
                                       self);
  return self;
}

OdOrderListModel *
od_keep_model_get_source (OdKeepModel *self)
{
  g_return_val_if_fail (OD_IS_KEEP_MODEL (self), NULL);
  return self->source;
}

gboolean
od_keep_model_get_held (OdKeepModel *self)
{
  g_return_val_if_fail (OD_IS_KEEP_MODEL (self), FALSE);
  return self->held;
}

static void
od_keep_model_dispose (GObject *object)
{
  OdKeepModel *self = OD_KEEP_MODEL (object);

  if (self->source != NULL)
    g_clear_signal_handler (&self->changed_id, self->source);
  g_clear_object (&self->source);
  g_clear_pointer (&self->parked, g_ptr_array_unref);

  G_OBJECT_CLASS (od_keep_model_parent_class)->dispose (object);
}

static void
od_keep_model_class_init (OdKeepModelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = od_keep_model_dispose;
}

static void
od_keep_model_init (OdKeepModel *self)
{
}

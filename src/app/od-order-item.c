/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <string.h>

#include "od-order-item.h"

/* One order list row as a GObject.  Only the rows of the pages the list
 * model holds exist as items; the model updates them in place when the
 * cache changes, and cells listen to "changed" to redraw. */

struct _OdOrderItem
{
  GObject     parent_instance;

  OdOrderRow *row;
  gboolean    pending;
};

G_DEFINE_FINAL_TYPE (OdOrderItem, od_order_item, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_ORDER_ID,
  PROP_PENDING,
  N_PROPS
};

enum {
  CHANGED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

static gboolean
rows_equal (const OdOrderRow *a,
            const OdOrderRow *b)
{
  return strcmp (a->order_id, b->order_id) == 0
      && a->status == b->status
      && a->item_count == b->item_count
      && a->total_cents == b->total_cents
      && a->version == b->version
      && a->last_position == b->last_position
      && g_strcmp0 (a->customer_name, b->customer_name) == 0
      && g_strcmp0 (a->customer_email, b->customer_email) == 0
      && g_strcmp0 (a->currency, b->currency) == 0
      && g_strcmp0 (a->updated_at, b->updated_at) == 0
      && g_strcmp0 (a->created_at, b->created_at) == 0;
}

/* Takes ownership of row. */
OdOrderItem *
od_order_item_new (OdOrderRow *row)
{
  OdOrderItem *self = g_object_new (OD_TYPE_ORDER_ITEM, NULL);

  self->row = row;
  return self;
}

const OdOrderRow *
od_order_item_get_row (OdOrderItem *self)
{
  g_return_val_if_fail (OD_IS_ORDER_ITEM (self), NULL);
  return self->row;
}

const char *
od_order_item_get_order_id (OdOrderItem *self)
{
  g_return_val_if_fail (OD_IS_ORDER_ITEM (self), NULL);
  return self->row->order_id;
}

/* Takes ownership of row; returns TRUE and emits "changed" when the
 * content differs. */
gboolean
od_order_item_set_row (OdOrderItem *self,
                       OdOrderRow  *row)
{
  gboolean same;

  g_return_val_if_fail (OD_IS_ORDER_ITEM (self), FALSE);

  same = self->row != NULL && rows_equal (self->row, row);
  g_clear_pointer (&self->row, od_order_row_free);
  self->row = row;
  if (!same)
    g_signal_emit (self, signals[CHANGED], 0);
  return !same;
}

gboolean
od_order_item_get_pending (OdOrderItem *self)
{
  g_return_val_if_fail (OD_IS_ORDER_ITEM (self), FALSE);
  return self->pending;
}

void
od_order_item_set_pending (OdOrderItem *self,
                           gboolean     pending)
{
  g_return_if_fail (OD_IS_ORDER_ITEM (self));

  pending = !!pending;
  if (self->pending == pending)
    return;
  self->pending = pending;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PENDING]);
  g_signal_emit (self, signals[CHANGED], 0);
}

static void
od_order_item_finalize (GObject *object)
{
  OdOrderItem *self = OD_ORDER_ITEM (object);

  g_clear_pointer (&self->row, od_order_row_free);

  G_OBJECT_CLASS (od_order_item_parent_class)->finalize (object);
}

static void
od_order_item_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  OdOrderItem *self = OD_ORDER_ITEM (object);

  switch (prop_id)
    {
    case PROP_ORDER_ID:
      g_value_set_string (value, self->row ? self->row->order_id : NULL);
      break;
    case PROP_PENDING:
      g_value_set_boolean (value, self->pending);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_order_item_class_init (OdOrderItemClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = od_order_item_finalize;
  object_class->get_property = od_order_item_get_property;

  properties[PROP_ORDER_ID] =
    g_param_spec_string ("order-id", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  properties[PROP_PENDING] =
    g_param_spec_boolean ("pending", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[CHANGED] =
    g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
od_order_item_init (OdOrderItem *self)
{
}

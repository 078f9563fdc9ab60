/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib-object.h>

#include "od-query.h"

G_BEGIN_DECLS

#define OD_TYPE_ORDER_ITEM (od_order_item_get_type ())
G_DECLARE_FINAL_TYPE (OdOrderItem, od_order_item, OD, ORDER_ITEM, GObject)

OdOrderItem      *od_order_item_new         (OdOrderRow  *row);
const OdOrderRow *od_order_item_get_row     (OdOrderItem *self);
const char       *od_order_item_get_order_id (OdOrderItem *self);
gboolean          od_order_item_set_row     (OdOrderItem *self,
                                             OdOrderRow  *row);
gboolean          od_order_item_get_pending (OdOrderItem *self);
void              od_order_item_set_pending (OdOrderItem *self,
                                             gboolean     pending);

G_END_DECLS

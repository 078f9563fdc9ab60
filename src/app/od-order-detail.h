/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "od-cache.h"
#include "od-order.h"

G_BEGIN_DECLS

#define OD_TYPE_ORDER_DETAIL (od_order_detail_get_type ())
G_DECLARE_FINAL_TYPE (OdOrderDetail, od_order_detail, OD, ORDER_DETAIL, GtkWidget)

GtkWidget     *od_order_detail_new                (void);
void           od_order_detail_set_cache          (OdOrderDetail *self,
                                                   OdCache       *cache);
void           od_order_detail_show               (OdOrderDetail *self,
                                                   const char    *order_id);
void           od_order_detail_reload             (OdOrderDetail *self);
void           od_order_detail_set_pending_orders (OdOrderDetail *self,
                                                   GHashTable    *pending_ids);
/* The order as the cache has it now (not the past state on screen). */
const OdOrder *od_order_detail_get_order          (OdOrderDetail *self);
void           od_order_detail_show_past          (OdOrderDetail *self,
                                                   gint64         position);
gint64         od_order_detail_get_past_position  (OdOrderDetail *self);
const OdOrder *od_order_detail_get_shown_order    (OdOrderDetail *self);
guint          od_order_detail_get_timeline_length (OdOrderDetail *self);
/* The banner over an order whose history from the server breaks the
 * protocol, NULL when there is none. */
const char    *od_order_detail_get_inconsistent_message (OdOrderDetail *self);

G_END_DECLS

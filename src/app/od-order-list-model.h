/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "od-cache.h"
#include "od-order-item.h"
#include "od-query.h"

G_BEGIN_DECLS

#define OD_ORDER_LIST_PAGE_SIZE 100

#define OD_TYPE_ORDER_LIST_MODEL (od_order_list_model_get_type ())
G_DECLARE_FINAL_TYPE (OdOrderListModel, od_order_list_model, OD, ORDER_LIST_MODEL, GObject)

OdOrderListModel *od_order_list_model_new          (OdCache            *cache);
OdOrderListModel *od_order_list_model_new_for_query (OdCache      *cache,
                                                    OdOrderSort   sort,
                                                    gboolean      descending,
                                                    OdOrderStatus status,
                                                    const char   *search);
OdCache          *od_order_list_model_get_cache    (OdOrderListModel   *self);
void              od_order_list_model_set_query    (OdOrderListModel   *self,
                                                    OdOrderSort         sort,
                                                    gboolean            descending,
                                                    OdOrderStatus       status,
                                                    const char         *search);
const OdOrderQuery *od_order_list_model_get_query  (OdOrderListModel   *self);
void              od_order_list_model_refresh      (OdOrderListModel   *self);
void              od_order_list_model_set_pending  (OdOrderListModel   *self,
                                                    GHashTable         *pending_ids);
GPtrArray        *od_order_list_model_get_parked   (OdOrderListModel   *self);
OdOrderItem      *od_order_list_model_peek_item    (OdOrderListModel   *self,
                                                    guint               position);
void              od_order_list_model_peek_positions (OdOrderListModel *self,
                                                      GPtrArray        *items,
                                                      guint            *positions);
guint             od_order_list_model_locate       (OdOrderListModel   *self,
                                                    const char         *order_id,
                                                    guint               near);
guint             od_order_list_model_find         (OdOrderListModel   *self,
                                                    const char         *order_id);
void              od_order_list_model_settle       (OdOrderListModel   *self);
gboolean          od_order_list_model_is_settled   (OdOrderListModel   *self);
guint             od_order_list_model_get_cached_pages (OdOrderListModel *self);
double            od_order_list_model_get_last_fetch_ms (OdOrderListModel *self);

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "od-order-list-model.h"

G_BEGIN_DECLS

#define OD_TYPE_ORDER_LIST (od_order_list_get_type ())
G_DECLARE_FINAL_TYPE (OdOrderList, od_order_list, OD, ORDER_LIST, GtkWidget)

GtkWidget        *od_order_list_new                (void);
void              od_order_list_set_cache          (OdOrderList   *self,
                                                    OdCache       *cache);
OdOrderListModel *od_order_list_get_model          (OdOrderList   *self);
void              od_order_list_refresh            (OdOrderList   *self);
void              od_order_list_set_pending        (OdOrderList   *self,
                                                    GHashTable    *pending_ids);
void              od_order_list_focus_search       (OdOrderList   *self);
void              od_order_list_set_search         (OdOrderList   *self,
                                                    const char    *text);
void              od_order_list_set_status         (OdOrderList   *self,
                                                    OdOrderStatus  status);
void              od_order_list_sort_by            (OdOrderList   *self,
                                                    OdOrderSort    sort,
                                                    gboolean       descending);
const char       *od_order_list_get_selected_order_id (OdOrderList *self);
gboolean          od_order_list_select_order         (OdOrderList   *self,
                                                      const char    *order_id);
void              od_order_list_select_position    (OdOrderList   *self,
                                                    guint          position);
GtkColumnView    *od_order_list_get_column_view    (OdOrderList   *self);
void              od_order_list_refresh_times      (OdOrderList   *self,
                                                    gint64         now_usec);

G_END_DECLS

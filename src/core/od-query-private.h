/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <sqlite3.h>

#include "od-order.h"

G_BEGIN_DECLS

/* The one mapping of an `orders` row and its `order_items` rows to an
 * OdOrder, for the detail's reads (od-query.c) and the projector's loads
 * (od-cache.c).  A new order column goes here once. */
#define OD_QUERY_ORDER_COLUMNS \
  "customer_name, customer_email, currency, status, version, created_at, updated_at," \
  " last_position, carrier, tracking_number, cancel_reason, refunded_cents, note_count"
#define OD_QUERY_LINE_COLUMNS "sku, name, quantity, unit_price_cents"

/* Fills order from a row of OD_QUERY_ORDER_COLUMNS (from column 0). */
void    od_query_order_from_row (OdOrder      *order,
                                 sqlite3_stmt *stmt);
/* A line from a row of OD_QUERY_LINE_COLUMNS. */
OdLine *od_query_line_from_row  (sqlite3_stmt *stmt);

G_END_DECLS

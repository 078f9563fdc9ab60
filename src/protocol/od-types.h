/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The order statuses of the contract.  Everything that counts or lists
 * statuses sizes its arrays with OD_STATUS_N and walks
 * od_order_status_name (), so a new status is added here and in
 * od-order.c's name table, nowhere else. */
typedef enum
{
  OD_STATUS_NONE, /* no such order yet */
  OD_STATUS_DRAFT,
  OD_STATUS_PLACED,
  OD_STATUS_SHIPPED,
  OD_STATUS_DELIVERED,
  OD_STATUS_CANCELLED,
  OD_STATUS_PARTIALLY_REFUNDED,
  OD_STATUS_REFUNDED,
  OD_STATUS_N,
} OdOrderStatus;

#define OD_STATUS_BIT(s) (1u << (s))

/* The event types of the contract; OD_EVENT_UNKNOWN is any other name,
 * which readers keep but do not apply. */
typedef enum
{
  OD_EVENT_UNKNOWN,
  OD_EVENT_ORDER_CREATED,
  OD_EVENT_ITEM_ADDED,
  OD_EVENT_ITEM_REMOVED,
  OD_EVENT_ORDER_PLACED,
  OD_EVENT_ORDER_SHIPPED,
  OD_EVENT_ORDER_DELIVERED,
  OD_EVENT_ORDER_CANCELLED,
  OD_EVENT_ORDER_NOTE_ADDED,
  OD_EVENT_ORDER_REFUNDED,
  OD_EVENT_N,
} OdEventType;

const char  *od_event_type_name      (OdEventType  type);
OdEventType  od_event_type_from_name (const char  *name);

G_END_DECLS

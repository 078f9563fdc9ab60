/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

/* Command bodies for the server tests, with strings escaped as JSON. */

#include "od-protocol.h"

G_BEGIN_DECLS

static inline char *
od_body (const char *type,
         const char *order_id,
         gint64      expected_version, /* < 0: absent */
         const char *data)             /* a JSON object, or NULL: absent */
{
  GString *out = g_string_new ("{");

  od_json_append_member (out, "type", type);
  g_string_append_c (out, ',');
  od_json_append_member (out, "order_id", order_id);
  if (expected_version >= 0)
    g_string_append_printf (out, ",\"expected_version\":%" G_GINT64_FORMAT, expected_version);
  if (data != NULL)
    g_string_append_printf (out, ",\"data\":%s", data);
  g_string_append_c (out, '}');
  return g_string_free (out, FALSE);
}

static inline char *
od_body_create (const char *order_id,
                const char *customer_name,
                const char *customer_email,
                const char *currency)
{
  g_autoptr(GString) data = g_string_new ("{");

  od_json_append_member (data, "customer_name", customer_name);
  g_string_append_c (data, ',');
  od_json_append_member (data, "customer_email", customer_email);
  g_string_append_c (data, ',');
  od_json_append_member (data, "currency", currency);
  g_string_append_c (data, '}');
  return od_body ("CreateOrder", order_id, -1, data->str);
}

static inline char *
od_body_add (const char *order_id,
             gint64      expected_version,
             const char *sku,
             const char *name,
             gint64      quantity,
             gint64      unit_price_cents)
{
  g_autoptr(GString) data = g_string_new ("{");

  od_json_append_member (data, "sku", sku);
  g_string_append_c (data, ',');
  od_json_append_member (data, "name", name);
  g_string_append_printf (data, ",\"quantity\":%" G_GINT64_FORMAT ",\"unit_price_cents\":%"
                          G_GINT64_FORMAT "}", quantity, unit_price_cents);
  return od_body ("AddItem", order_id, expected_version, data->str);
}

static inline char *
od_body_one (const char *type,
             const char *order_id,
             gint64      expected_version,
             const char *name,
             const char *value)
{
  g_autoptr(GString) data = g_string_new ("{");

  od_json_append_member (data, name, value);
  g_string_append_c (data, '}');
  return od_body (type, order_id, expected_version, data->str);
}

static inline char *
od_body_ship (const char *order_id,
              gint64      expected_version,
              const char *carrier,
              const char *tracking_number)
{
  g_autoptr(GString) data = g_string_new ("{");

  od_json_append_member (data, "carrier", carrier);
  g_string_append_c (data, ',');
  od_json_append_member (data, "tracking_number", tracking_number);
  g_string_append_c (data, '}');
  return od_body ("ShipOrder", order_id, expected_version, data->str);
}

static inline char *
od_repeat (const char *unit,
           guint       n)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < n; i++)
    g_string_append (s, unit);
  return g_string_free (s, FALSE);
}

G_END_DECLS

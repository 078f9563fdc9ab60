/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-order.h"
#include "od-json.h"

#include <string.h>

static const char *status_names[] = {
  "none", "draft", "placed", "shipped", "delivered", "cancelled",
  "partially_refunded", "refunded",
};

G_STATIC_ASSERT (G_N_ELEMENTS (status_names) == OD_STATUS_N);

const char *
od_order_status_name (OdOrderStatus status)
{
  g_return_val_if_fail (status < OD_STATUS_N, "none");
  return status_names[status];
}

gboolean
od_order_status_from_name (const char    *name,
                           OdOrderStatus *status)
{
  for (guint i = 1; i < OD_STATUS_N; i++)
    if (g_strcmp0 (status_names[i], name) == 0)
      {
        *status = i;
        return TRUE;
      }
  return FALSE;
}

static void
line_free (OdLine *line)
{
  g_free (line->sku);
  g_free (line->name);
  g_free (line);
}

OdOrder *
od_order_new (const char *order_id)
{
  OdOrder *order = g_new0 (OdOrder, 1);

  g_strlcpy (order->order_id, order_id ?: "", sizeof order->order_id);
  order->lines = g_ptr_array_new_with_free_func ((GDestroyNotify) line_free);
  return order;
}

OdOrder *
od_order_copy (const OdOrder *order)
{
  OdOrder *copy = od_order_new (order->order_id);

  copy->version = order->version;
  copy->status = order->status;
  copy->customer_name = g_strdup (order->customer_name);
  copy->customer_email = g_strdup (order->customer_email);
  copy->currency = g_strdup (order->currency);
  copy->carrier = g_strdup (order->carrier);
  copy->tracking_number = g_strdup (order->tracking_number);
  copy->cancel_reason = g_strdup (order->cancel_reason);
  copy->refunded_cents = order->refunded_cents;
  copy->note_count = order->note_count;
  copy->created_at = g_strdup (order->created_at);
  copy->updated_at = g_strdup (order->updated_at);
  copy->last_position = order->last_position;
  for (guint i = 0; i < order->lines->len; i++)
    {
      const OdLine *line = g_ptr_array_index (order->lines, i);
      OdLine *dup = g_new0 (OdLine, 1);

      dup->sku = g_strdup (line->sku);
      dup->name = g_strdup (line->name);
      dup->quantity = line->quantity;
      dup->unit_price_cents = line->unit_price_cents;
      g_ptr_array_add (copy->lines, dup);
    }
  return copy;
}

void
od_order_free (OdOrder *order)
{
  if (order == NULL)
    return;
  g_free (order->customer_name);
  g_free (order->customer_email);
  g_free (order->currency);
  g_free (order->carrier);
  g_free (order->tracking_number);
  g_free (order->cancel_reason);
  g_free (order->created_at);
  g_free (order->updated_at);
  g_ptr_array_unref (order->lines);
  g_free (order);
}

OdLine *
od_order_find_line (const OdOrder *order,
                    const char    *sku)
{
  for (guint i = 0; i < order->lines->len; i++)
    {
      OdLine *line = g_ptr_array_index (order->lines, i);

      if (g_strcmp0 (line->sku, sku) == 0)
        return line;
    }
  return NULL;
}

gint64
od_order_total_cents (const OdOrder *order)
{
  gint64 total = 0;

  for (guint i = 0; i < order->lines->len; i++)
    {
      const OdLine *line = g_ptr_array_index (order->lines, i);

      total += line->quantity * line->unit_price_cents;
    }
  return total;
}

gint64
od_order_item_count (const OdOrder *order)
{
  gint64 count = 0;

  for (guint i = 0; i < order->lines->len; i++)
    count += ((const OdLine *) g_ptr_array_index (order->lines, i))->quantity;
  return count;
}

/* The status column of the contract's command table ("allowed when"),
 * alone: the console also holds the server's events to it. */
gboolean
od_order_status_allows (OdOrderStatus status,
                        OdCommandType type)
{
  if (type >= OD_COMMAND_N_TYPES || status >= OD_STATUS_N)
    return FALSE;
  return (od_command_spec (type)->allowed & OD_STATUS_BIT (status)) != 0;
}

gint64
od_order_refundable_cents (const OdOrder *order)
{
  return MAX (od_order_total_cents (order) - order->refunded_cents, 0);
}

/* Status-level rule of the contract's command table; the finer rules
 * (line present, line count, quantity sum) are checked by decide. */
gboolean
od_order_allows (const OdOrder *order,
                 OdCommandType  type)
{
  OdOrderStatus status = order ? order->status : OD_STATUS_NONE;

  if (!od_order_status_allows (status, type))
    return FALSE;
  if (type == OD_COMMAND_REMOVE_ITEM || type == OD_COMMAND_PLACE_ORDER)
    return order->lines->len > 0;
  if (type == OD_COMMAND_REFUND_ORDER)
    return od_order_refundable_cents (order) > 0;
  return TRUE;
}

#define INVALID_STATE_FORMAT "Order %s is %s: %s"

static OdProblem *
invalid_state (const OdOrder *order,
               const char    *why)
{
  return od_problem_new (OD_PROBLEM_INVALID_STATE, INVALID_STATE_FORMAT, order->order_id,
                         od_order_status_name (order->status), why);
}

const char *
od_order_refusal_rule (OdCommandType  type,
                       const char    *order_id,
                       const char    *detail)
{
  const OdCommandSpec *spec;

  if (type >= OD_COMMAND_N_TYPES || order_id == NULL || detail == NULL)
    return NULL;
  spec = od_command_spec (type);
  /* Compared with what invalid_state () writes for each status that
   * refuses the command, never parsed: a detail worded otherwise is
   * not recognised. */
  for (OdOrderStatus status = 0; status < OD_STATUS_N; status++)
    {
      g_autofree char *expected = NULL;

      if (od_order_status_allows (status, type))
        continue;
      expected = g_strdup_printf (INVALID_STATE_FORMAT, order_id, od_order_status_name (status),
                                  spec->refused);
      if (strcmp (expected, detail) == 0)
        return spec->refused;
    }
  return NULL;
}

gboolean
od_order_decide (const OdOrder    *order,
                 const OdCommand  *command,
                 const char      **event_type,
                 char            **event_data,
                 OdProblem       **problem)
{
  GString *data;

  if (command->type == OD_COMMAND_CREATE_ORDER)
    {
      if (order->version > 0)
        {
          *problem = od_problem_new (OD_PROBLEM_ORDER_EXISTS, "Order %s already exists.",
                                     order->order_id);
          (*problem)->current_version = order->version;
          return FALSE;
        }
    }
  else if (order->version == 0)
    {
      *problem = od_problem_new (OD_PROBLEM_NOT_FOUND, "Order %s does not exist.",
                                 command->order_id);
      return FALSE;
    }

  if (command->has_expected_version && command->expected_version != order->version)
    {
      *problem = od_problem_new (OD_PROBLEM_VERSION_CONFLICT,
                                 "Expected version %" G_GINT64_FORMAT
                                 " but order %s is at version %" G_GINT64_FORMAT ".",
                                 command->expected_version, command->order_id, order->version);
      (*problem)->current_version = order->version;
      return FALSE;
    }

  /* The status column of the table first, with the command's own words. */
  if (command->type < OD_COMMAND_N_TYPES && command->type != OD_COMMAND_CREATE_ORDER
      && !od_order_status_allows (order->status, command->type))
    {
      *problem = invalid_state (order, od_command_spec (command->type)->refused);
      return FALSE;
    }

  data = g_string_new ("{");
  switch (command->type)
    {
    case OD_COMMAND_CREATE_ORDER:
      od_json_append_member (data, "customer_name", command->customer_name);
      g_string_append_c (data, ',');
      od_json_append_member (data, "customer_email", command->customer_email);
      g_string_append_c (data, ',');
      od_json_append_member (data, "currency", command->currency);
      break;

    case OD_COMMAND_ADD_ITEM:
      {
        OdLine *line = od_order_find_line (order, command->sku);

        if (line != NULL && line->quantity + command->quantity > OD_MAX_QUANTITY)
          {
            *problem = od_problem_new (OD_PROBLEM_INVALID_COMMAND,
                                       "Line %s would hold %" G_GINT64_FORMAT
                                       " items; a line holds at most %d.",
                                       command->sku, line->quantity + command->quantity,
                                       OD_MAX_QUANTITY);
            od_problem_add_error (*problem, "data.quantity",
                                  "the line would exceed 10000 items");
            goto refused;
          }
        if (line == NULL && order->lines->len >= OD_MAX_LINES)
          {
            *problem = invalid_state (order, "the order already has 200 lines.");
            goto refused;
          }
        od_json_append_member (data, "sku", command->sku);
        g_string_append_c (data, ',');
        od_json_append_member (data, "name", command->name);
        g_string_append_printf (data,
                                ",\"quantity\":%" G_GINT64_FORMAT
                                ",\"unit_price_cents\":%" G_GINT64_FORMAT,
                                command->quantity, command->unit_price_cents);
      }
      break;

    case OD_COMMAND_REMOVE_ITEM:
      if (od_order_find_line (order, command->sku) == NULL)
        {
          *problem = invalid_state (order, "the order has no line with this SKU.");
          goto refused;
        }
      od_json_append_member (data, "sku", command->sku);
      break;

    case OD_COMMAND_PLACE_ORDER:
      if (order->lines->len == 0)
        {
          *problem = invalid_state (order, "an order needs at least one line to be placed.");
          goto refused;
        }
      g_string_append_printf (data,
                              "\"total_cents\":%" G_GINT64_FORMAT
                              ",\"item_count\":%" G_GINT64_FORMAT,
                              od_order_total_cents (order), od_order_item_count (order));
      break;

    case OD_COMMAND_SHIP_ORDER:
      od_json_append_member (data, "carrier", command->carrier);
      g_string_append_c (data, ',');
      od_json_append_member (data, "tracking_number", command->tracking_number);
      break;

    case OD_COMMAND_MARK_DELIVERED:
      break;

    case OD_COMMAND_CANCEL_ORDER:
      od_json_append_member (data, "reason", command->reason);
      break;

    case OD_COMMAND_ADD_ORDER_NOTE:
      od_json_append_member (data, "text", command->text);
      break;

    case OD_COMMAND_REFUND_ORDER:
      {
        gint64 refundable = od_order_refundable_cents (order);

        if (command->amount_cents > refundable)
          {
            *problem = od_problem_new (OD_PROBLEM_REFUND_EXCEEDS_TOTAL,
                                       "A refund of %" G_GINT64_FORMAT " cents exceeds the %"
                                       G_GINT64_FORMAT " cents still refundable on order %s.",
                                       command->amount_cents, refundable, order->order_id);
            (*problem)->refundable_cents = refundable;
            goto refused;
          }
        g_string_append_printf (data, "\"amount_cents\":%" G_GINT64_FORMAT ",",
                                command->amount_cents);
        od_json_append_member (data, "reason", command->reason);
      }
      break;

    case OD_COMMAND_N_TYPES:
    default:
      *problem = od_problem_new (OD_PROBLEM_INVALID_COMMAND, "Unknown command type.");
      goto refused;
    }

  *event_type = od_event_type_name (od_command_spec (command->type)->event);
  g_string_append_c (data, '}');
  *event_data = g_string_free (data, FALSE);
  return TRUE;

refused:
  g_string_free (data, TRUE);
  return FALSE;
}

/* The fold reads its members through one of two sources: a JsonObject
 * (od_order_apply) or a flat data object (od_order_apply_flat).  One fold
 * for both, so that they cannot drift apart. */
typedef struct
{
  const char *(*get_string) (gconstpointer data, const char *name);
  gint64      (*get_int)    (gconstpointer data, const char *name);
} Members;

static const char *
json_get_string (gconstpointer data,
                 const char   *name)
{
  JsonNode *node = data ? json_object_get_member ((JsonObject *) data, name) : NULL;

  return od_json_is_string (node) ? json_node_get_string (node) : NULL;
}

static gint64
json_get_int (gconstpointer data,
              const char   *name)
{
  JsonNode *node = data ? json_object_get_member ((JsonObject *) data, name) : NULL;

  return od_json_is_integer (node) ? json_node_get_int (node) : 0;
}

static const Members json_members = { json_get_string, json_get_int };

static gint
flat_find (const OdFlatData *flat,
           const char       *name)
{
  if (flat == NULL)
    return -1;
  for (guint i = 0; i < flat->n_members; i++)
    if (strcmp (flat->keys[i], name) == 0)
      return i;
  return -1;
}

const char *
od_flat_data_get_string (const OdFlatData *flat,
                         const char       *name)
{
  gint i = flat_find (flat, name);

  return i >= 0 && flat->kinds[i] == OD_FLAT_STRING ? flat->strings[i] : NULL;
}

static const char *
flat_get_string (gconstpointer data,
                 const char   *name)
{
  return od_flat_data_get_string (data, name);
}

static gint64
flat_get_int (gconstpointer data,
              const char   *name)
{
  gint i = flat_find (data, name);

  return i >= 0 && ((const OdFlatData *) data)->kinds[i] == OD_FLAT_INTEGER
           ? ((const OdFlatData *) data)->integers[i]
           : 0;
}

static const Members flat_members = { flat_get_string, flat_get_int };

static gboolean
flat_is_ws (char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A string without escapes or control characters, NUL-terminated in
 * place; *p is past its closing quote. */
static char *
flat_string (char **p,
             char  *end)
{
  char *q, *start;

  if (*p >= end || **p != '"')
    return NULL;
  start = q = *p + 1;
  while (q < end && *q != '"')
    {
      if (*q == '\\' || (unsigned char) *q < 0x20)
        return NULL;
      q++;
    }
  if (q >= end)
    return NULL;
  *q = '\0';
  *p = q + 1;
  return start;
}

/* The same integers as od-event-fast.c accepts: at most 18 digits (no
 * overflow), no leading zero, no fraction or exponent. */
static gboolean
flat_integer (char  **p,
              char   *end,
              gint64 *out)
{
  char *q = *p;
  gboolean neg = FALSE;
  guint64 v = 0;
  guint digits = 0;

  if (q < end && *q == '-')
    {
      neg = TRUE;
      q++;
    }
  if (end - q >= 2 && q[0] == '0' && g_ascii_isdigit (q[1]))
    return FALSE;
  while (q < end && g_ascii_isdigit (*q))
    {
      if (++digits > 18)
        return FALSE;
      v = v * 10 + (*q - '0');
      q++;
    }
  if (digits == 0 || (q < end && (*q == '.' || *q == 'e' || *q == 'E')))
    return FALSE;
  *out = neg ? -(gint64) v : (gint64) v;
  *p = q;
  return TRUE;
}

gboolean
od_flat_data_parse (OdFlatData *flat,
                    const char *text,
                    gsize       len)
{
  char *p, *end;

  flat->n_members = 0;
  if (text == NULL || len >= sizeof flat->buf || !g_utf8_validate (text, len, NULL))
    return FALSE;
  memcpy (flat->buf, text, len);
  flat->buf[len] = '\0';
  p = flat->buf;
  end = flat->buf + len;

#define SKIP_WS() while (p < end && flat_is_ws (*p)) p++
  SKIP_WS ();
  if (p >= end || *p++ != '{')
    return FALSE;
  SKIP_WS ();
  if (p < end && *p == '}')
    p++;
  else
    for (;;)
      {
        guint i = flat->n_members;
        char *key;

        if (i == OD_FLAT_DATA_MAX_MEMBERS)
          return FALSE;
        SKIP_WS ();
        if ((key = flat_string (&p, end)) == NULL)
          return FALSE;
        SKIP_WS ();
        if (p >= end || *p++ != ':')
          return FALSE;
        SKIP_WS ();
        /* A name given twice is malformed (od_json_check). */
        if (flat_find (flat, key) >= 0)
          return FALSE;
        flat->keys[i] = key;
        flat->strings[i] = NULL;
        flat->integers[i] = 0;
        if (p < end && *p == '"')
          {
            if ((flat->strings[i] = flat_string (&p, end)) == NULL)
              return FALSE;
            flat->kinds[i] = OD_FLAT_STRING;
          }
        else if (p < end && (*p == '-' || g_ascii_isdigit (*p)))
          {
            if (!flat_integer (&p, end, &flat->integers[i]))
              return FALSE;
            flat->kinds[i] = OD_FLAT_INTEGER;
          }
        else if (end - p >= 4 && (memcmp (p, "true", 4) == 0 || memcmp (p, "null", 4) == 0))
          {
            p += 4;
            flat->kinds[i] = OD_FLAT_OTHER;
          }
        else if (end - p >= 5 && memcmp (p, "false", 5) == 0)
          {
            p += 5;
            flat->kinds[i] = OD_FLAT_OTHER;
          }
        else
          return FALSE;
        flat->n_members++;
        SKIP_WS ();
        if (p < end && *p == '}')
          {
            p++;
            break;
          }
        if (p >= end || *p++ != ',')
          return FALSE;
      }
  SKIP_WS ();
#undef SKIP_WS
  return p == end;
}

static void
set_string (char       **field,
            const char  *value)
{
  if (value != NULL)
    {
      g_free (*field);
      *field = g_strdup (value);
    }
}

/* Folding is tolerant: events come from the log, which is the truth, so a
 * missing member leaves the old value rather than failing the fold.
 * Returns FALSE for event types this build does not know; the version and
 * times still advance so that the fold stays aligned with the log. */
#define get_string(data, name) (m->get_string ((data), (name)))
#define get_int(data, name) (m->get_int ((data), (name)))

static gboolean
apply (OdOrder       *order,
       const char    *type,
       const Members *m,
       gconstpointer  data,
       gint64         version,
       gint64         position,
       const char    *recorded_at)
{
  gboolean known = TRUE;

  switch (od_event_type_from_name (type))
    {
    case OD_EVENT_ORDER_CREATED:
      order->status = OD_STATUS_DRAFT;
      set_string (&order->customer_name, get_string (data, "customer_name"));
      set_string (&order->customer_email, get_string (data, "customer_email"));
      set_string (&order->currency, get_string (data, "currency"));
      set_string (&order->created_at, recorded_at);
      break;

    case OD_EVENT_ITEM_ADDED:
      {
        const char *sku = get_string (data, "sku");
        OdLine *line = od_order_find_line (order, sku);

        if (sku != NULL && line == NULL)
          {
            line = g_new0 (OdLine, 1);
            line->sku = g_strdup (sku);
            g_ptr_array_add (order->lines, line);
          }
        if (line != NULL)
          {
            /* The console folds what a server sends, which may be any
             * integer: unbounded, the sum below and the totals overflowed
             * (undefined behaviour; fuzz/regressions/event/hostile-values.jsonl).
             * The contract's ranges bound them; a valid log is never clamped. */
            line->quantity = CLAMP (line->quantity
                                    + CLAMP (get_int (data, "quantity"), 0, OD_MAX_QUANTITY),
                                    0, OD_MAX_QUANTITY);
            set_string (&line->name, get_string (data, "name"));
            line->unit_price_cents = CLAMP (get_int (data, "unit_price_cents"), 0,
                                            OD_MAX_UNIT_PRICE_CENTS);
          }
      }
      break;

    case OD_EVENT_ITEM_REMOVED:
      {
        OdLine *line = od_order_find_line (order, get_string (data, "sku"));

        if (line != NULL)
          g_ptr_array_remove (order->lines, line);
      }
      break;

    case OD_EVENT_ORDER_PLACED:
      order->status = OD_STATUS_PLACED;
      break;

    case OD_EVENT_ORDER_SHIPPED:
      order->status = OD_STATUS_SHIPPED;
      set_string (&order->carrier, get_string (data, "carrier"));
      set_string (&order->tracking_number, get_string (data, "tracking_number"));
      break;

    case OD_EVENT_ORDER_DELIVERED:
      order->status = OD_STATUS_DELIVERED;
      break;

    case OD_EVENT_ORDER_CANCELLED:
      order->status = OD_STATUS_CANCELLED;
      set_string (&order->cancel_reason, get_string (data, "reason"));
      break;

    case OD_EVENT_ORDER_NOTE_ADDED:
      order->note_count++;
      break;

    case OD_EVENT_ORDER_REFUNDED:
      {
        /* Clamped like quantities: a hostile amount must not overflow. */
        gint64 total = od_order_total_cents (order);

        order->refunded_cents = CLAMP (order->refunded_cents
                                       + CLAMP (get_int (data, "amount_cents"), 0,
                                                OD_MAX_REFUND_CENTS),
                                       0, OD_MAX_REFUND_CENTS);
        order->status = order->refunded_cents >= total ? OD_STATUS_REFUNDED
                                                       : OD_STATUS_PARTIALLY_REFUNDED;
      }
      break;

    case OD_EVENT_UNKNOWN:
    case OD_EVENT_N:
    default:
      known = FALSE;
      break;
    }

  order->version = version;
  order->last_position = position;
  set_string (&order->updated_at, recorded_at);
  return known;
}

#undef get_string
#undef get_int

gboolean
od_order_apply (OdOrder     *order,
                const char  *type,
                JsonObject  *data,
                gint64       version,
                gint64       position,
                const char  *recorded_at)
{
  return apply (order, type, &json_members, data, version, position, recorded_at);
}

/* The same fold from a flat data object (NULL: no data, as
 * od_order_apply with a NULL object). */
gboolean
od_order_apply_flat (OdOrder          *order,
                     const char       *type,
                     const OdFlatData *data,
                     gint64            version,
                     gint64            position,
                     const char       *recorded_at)
{
  return apply (order, type, &flat_members, data, version, position, recorded_at);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Target: events as a reader receives them (one envelope a line, as in
 * the stream's data lines).  Each goes through od_event_parse, the
 * reader's dedupe and gap rule, and od_order_apply into a fold per
 * order, as the console's cache does; the folded orders are then used
 * the way the console and the write side use them. */

#include "od-fuzz.h"
#include "od-protocol.h"

#include <string.h>

static void
check_same_event (const OdEvent *a,
                  const OdEvent *b)
{
  OD_FUZZ_CHECK (a->position == b->position);
  OD_FUZZ_CHECK (a->prev == b->prev);
  OD_FUZZ_CHECK (strcmp (a->order_id, b->order_id) == 0);
  OD_FUZZ_CHECK (a->version == b->version);
  OD_FUZZ_CHECK (strcmp (a->type, b->type) == 0);
  OD_FUZZ_CHECK (strcmp (a->recorded_at, b->recorded_at) == 0);
  OD_FUZZ_CHECK (strcmp (a->actor, b->actor) == 0);
  OD_FUZZ_CHECK (strcmp (a->data, b->data) == 0);
}

static void
check_order (const OdOrder *order)
{
  g_autoptr(OdOrder) copy = od_order_copy (order);
  g_autoptr(OdCommand) place = od_command_new (OD_COMMAND_PLACE_ORDER, order->order_id);
  g_autoptr(OdCommand) add = od_command_new (OD_COMMAND_ADD_ITEM, order->order_id);
  g_autoptr(OdCommand) remove = od_command_new (OD_COMMAND_REMOVE_ITEM, order->order_id);
  OdCommand *commands[] = { place, add, remove };

  OD_FUZZ_CHECK (copy->version == order->version);
  OD_FUZZ_CHECK (copy->status == order->status);
  OD_FUZZ_CHECK (copy->lines->len == order->lines->len);
  OD_FUZZ_CHECK (od_order_total_cents (copy) == od_order_total_cents (order));
  OD_FUZZ_CHECK (od_order_item_count (copy) == od_order_item_count (order));
  OD_FUZZ_CHECK (od_order_status_name (order->status) != NULL);

  add->sku = g_strdup (order->lines->len ? ((OdLine *) order->lines->pdata[0])->sku : "SKU-1");
  add->name = g_strdup ("Item");
  add->quantity = 1;
  add->unit_price_cents = 1;
  remove->sku = g_strdup (add->sku);

  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      const char *type = NULL;
      g_autofree char *data = NULL;
      g_autoptr(OdProblem) problem = NULL;

      if (od_order_decide (order, commands[i], &type, &data, &problem))
        {
          g_autoptr(JsonNode) node = od_json_parse_object (data, -1, NULL);

          OD_FUZZ_CHECK (node != NULL);
        }
      else
        {
          g_autofree char *json = NULL;

          OD_FUZZ_CHECK (problem != NULL);
          json = od_problem_to_json (problem);
          OD_FUZZ_CHECK (json != NULL);
        }
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr(GHashTable) orders = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                                        (GDestroyNotify) od_order_free);
  const char *text = (const char *) data;
  const char *end = text + size;
  gint64 last = 0;
  GHashTableIter iter;
  gpointer value;

  while (text < end)
    {
      const char *nl = memchr (text, '\n', end - text);
      gsize len = (nl ? nl : end) - text;
      g_autoptr(GError) error = NULL;
      g_autoptr(OdEvent) event = od_event_parse (text, len, &error);
      g_autoptr(OdEvent) again = NULL;
      g_autoptr(GString) json = NULL;
      OdOrder *order;
      gint64 usec;

      text += len + 1;
      if (event == NULL)
        {
          OD_FUZZ_CHECK (error != NULL);
          continue;
        }
      OD_FUZZ_CHECK (error == NULL);
      OD_FUZZ_CHECK (event->position >= 1 && event->prev >= 0 && event->prev < event->position);
      OD_FUZZ_CHECK (event->version >= 1);
      OD_FUZZ_CHECK (od_uuid_is_valid (event->order_id));
      OD_FUZZ_CHECK (event->data != NULL);

      /* A server stores what it received and serves it again. */
      json = g_string_new (NULL);
      od_event_append_json (json, event);
      again = od_event_parse (json->str, json->len, &error);
      if (again == NULL)
        fprintf (stderr, "re-parse of %s failed: %s\n", json->str, error->message);
      OD_FUZZ_CHECK (again != NULL);
      check_same_event (event, again);
      OD_FUZZ_CHECK (od_event_get_data (again) != NULL);

      (void) od_timestamp_parse (event->recorded_at, &usec);

      /* The reader's rule: skip what was seen, stop at a gap. */
      if (event->position <= last)
        continue;
      if (event->prev != last)
        break;
      last = event->position;

      order = g_hash_table_lookup (orders, event->order_id);
      if (order == NULL)
        {
          order = od_order_new (event->order_id);
          g_hash_table_insert (orders, order->order_id, order);
        }
      od_order_apply (order, event->type, od_event_get_data (event), event->version,
                      event->position, event->recorded_at);
      OD_FUZZ_CHECK (order->version == event->version);
      OD_FUZZ_CHECK (order->last_position == event->position);
      OD_FUZZ_CHECK (order->status < OD_STATUS_N);
    }

  g_hash_table_iter_init (&iter, orders);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    check_order (value);
  return 0;
}

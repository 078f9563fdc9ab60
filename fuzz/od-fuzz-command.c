/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Target: a request body as POST /v1/commands receives it.  The fast
 * parser is held to the strict one; then it goes through
 * od_command_parse (JSON, types, field rules), and a command that passes
 * is decided against orders in every status the aggregate knows; an
 * accepted decision is folded back to check that what the write side
 * emits is what the fold expects. */

#include "od-fuzz.h"
#include "od-protocol.h"

#include <string.h>

#define ORDER_ID "0193a1c2-7f00-7abc-8def-0123456789ab"

static GPtrArray *orders; /* OdOrder, one for each interesting state */

static void
apply (OdOrder    *order,
       const char *type,
       const char *data_json)
{
  g_autoptr(JsonNode) node = od_json_parse_object (data_json, -1, NULL);

  OD_FUZZ_CHECK (node != NULL);
  od_order_apply (order, type, json_node_get_object (node), order->version + 1,
                  order->last_position + 1, "2026-11-26T10:00:00.000Z");
}

static OdOrder *
draft (void)
{
  OdOrder *order = od_order_new (ORDER_ID);

  apply (order, "OrderCreated",
         "{\"customer_name\":\"Ada\",\"customer_email\":\"ada@example.com\",\"currency\":\"EUR\"}");
  return order;
}

static void
add_line (OdOrder    *order,
          const char *sku,
          gint64      quantity)
{
  g_autofree char *json = g_strdup_printf ("{\"sku\":\"%s\",\"name\":\"Item\",\"quantity\":%"
                                           G_GINT64_FORMAT ",\"unit_price_cents\":1299}",
                                           sku, quantity);

  apply (order, "ItemAdded", json);
}

static void
init_orders (void)
{
  OdOrder *order;

  orders = g_ptr_array_new_with_free_func ((GDestroyNotify) od_order_free);
  g_ptr_array_add (orders, od_order_new (ORDER_ID));
  g_ptr_array_add (orders, draft ());

  order = draft ();
  add_line (order, "MUG-BLUE", 2);
  add_line (order, "SKU-1", 9999);
  g_ptr_array_add (orders, order);

  order = draft ();
  for (guint i = 0; i < OD_MAX_LINES; i++)
    {
      g_autofree char *sku = g_strdup_printf ("L%03u", i);

      add_line (order, sku, 1);
    }
  g_ptr_array_add (orders, order);

  order = draft ();
  add_line (order, "MUG-BLUE", 2);
  apply (order, "OrderPlaced", "{\"total_cents\":2598,\"item_count\":2}");
  g_ptr_array_add (orders, order);

  order = od_order_copy (order);
  apply (order, "OrderShipped", "{\"carrier\":\"DHL\",\"tracking_number\":\"1Z\"}");
  g_ptr_array_add (orders, order);

  order = od_order_copy (order);
  apply (order, "OrderDelivered", "{}");
  g_ptr_array_add (orders, order);

  order = draft ();
  apply (order, "OrderCancelled", "{\"reason\":\"duplicate\"}");
  g_ptr_array_add (orders, order);
}

static void
check_problem (const OdProblem *problem)
{
  g_autofree char *json = NULL;
  g_autoptr(JsonNode) node = NULL;

  OD_FUZZ_CHECK (problem != NULL);
  OD_FUZZ_CHECK (problem->code_name != NULL && problem->title != NULL);
  OD_FUZZ_CHECK (problem->detail != NULL);
  OD_FUZZ_CHECK (problem->status >= 400 && problem->status < 600);
  /* The server sends this text: it must be JSON a client can read. */
  json = od_problem_to_json (problem);
  node = od_json_parse_object (json, -1, NULL);
  OD_FUZZ_CHECK (node != NULL);
}

static void
check_same_command (const OdCommand *a,
                    const OdCommand *b)
{
  OD_FUZZ_CHECK (a->type == b->type);
  OD_FUZZ_CHECK (strcmp (a->order_id, b->order_id) == 0);
  OD_FUZZ_CHECK (a->has_expected_version == b->has_expected_version);
  OD_FUZZ_CHECK (!a->has_expected_version || a->expected_version == b->expected_version);
  OD_FUZZ_CHECK (g_strcmp0 (a->customer_name, b->customer_name) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (a->customer_email, b->customer_email) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (a->currency, b->currency) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (a->sku, b->sku) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (a->name, b->name) == 0);
  OD_FUZZ_CHECK (a->quantity == b->quantity);
  OD_FUZZ_CHECK (a->unit_price_cents == b->unit_price_cents);
  OD_FUZZ_CHECK (g_strcmp0 (a->carrier, b->carrier) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (a->tracking_number, b->tracking_number) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (a->reason, b->reason) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (a->text, b->text) == 0);
  OD_FUZZ_CHECK (a->amount_cents == b->amount_cents);
}

static void
check_decision (const OdOrder   *order,
                const OdCommand *command)
{
  const char *event_type = NULL;
  g_autofree char *event_data = NULL;
  g_autoptr(OdProblem) problem = NULL;
  g_autoptr(OdOrder) after = NULL;
  g_autoptr(JsonNode) data = NULL;
  OdLine *line;

  if (!od_order_decide (order, command, &event_type, &event_data, &problem))
    {
      check_problem (problem);
      OD_FUZZ_CHECK (event_data == NULL);
      return;
    }

  OD_FUZZ_CHECK (problem == NULL && event_type != NULL && event_data != NULL);
  OD_FUZZ_CHECK (od_order_allows (order, command->type));
  OD_FUZZ_CHECK (!command->has_expected_version || command->expected_version == order->version);

  /* What the write side appends must fold to the state the table says. */
  data = od_json_parse_object (event_data, -1, NULL);
  OD_FUZZ_CHECK (data != NULL);
  after = od_order_copy (order);
  OD_FUZZ_CHECK (od_order_apply (after, event_type, json_node_get_object (data),
                                 order->version + 1, order->last_position + 1,
                                 "2026-11-26T10:00:01.000Z"));
  OD_FUZZ_CHECK (after->version == order->version + 1);
  OD_FUZZ_CHECK (after->lines->len <= OD_MAX_LINES);
  for (guint i = 0; i < after->lines->len; i++)
    {
      line = g_ptr_array_index (after->lines, i);
      OD_FUZZ_CHECK (line->quantity >= 1 && line->quantity <= OD_MAX_QUANTITY);
    }

  switch (command->type)
    {
    case OD_COMMAND_CREATE_ORDER:
      OD_FUZZ_CHECK (after->status == OD_STATUS_DRAFT);
      OD_FUZZ_CHECK (g_strcmp0 (after->customer_name, command->customer_name) == 0);
      OD_FUZZ_CHECK (g_strcmp0 (after->customer_email, command->customer_email) == 0);
      OD_FUZZ_CHECK (g_strcmp0 (after->currency, command->currency) == 0);
      break;
    case OD_COMMAND_ADD_ITEM:
      line = od_order_find_line (after, command->sku);
      OD_FUZZ_CHECK (line != NULL);
      OD_FUZZ_CHECK (g_strcmp0 (line->name, command->name) == 0);
      OD_FUZZ_CHECK (line->unit_price_cents == command->unit_price_cents);
      OD_FUZZ_CHECK (od_order_item_count (after)
                     == od_order_item_count (order) + command->quantity);
      break;
    case OD_COMMAND_REMOVE_ITEM:
      OD_FUZZ_CHECK (od_order_find_line (order, command->sku) != NULL);
      OD_FUZZ_CHECK (od_order_find_line (after, command->sku) == NULL);
      OD_FUZZ_CHECK (after->lines->len + 1 == order->lines->len);
      break;
    case OD_COMMAND_PLACE_ORDER:
      {
        JsonObject *object = json_node_get_object (data);

        OD_FUZZ_CHECK (after->status == OD_STATUS_PLACED);
        OD_FUZZ_CHECK (json_object_get_int_member (object, "total_cents")
                       == od_order_total_cents (order));
        OD_FUZZ_CHECK (json_object_get_int_member (object, "item_count")
                       == od_order_item_count (order));
      }
      break;
    case OD_COMMAND_SHIP_ORDER:
      OD_FUZZ_CHECK (after->status == OD_STATUS_SHIPPED);
      OD_FUZZ_CHECK (g_strcmp0 (after->carrier, command->carrier) == 0);
      OD_FUZZ_CHECK (g_strcmp0 (after->tracking_number, command->tracking_number) == 0);
      break;
    case OD_COMMAND_MARK_DELIVERED:
      OD_FUZZ_CHECK (after->status == OD_STATUS_DELIVERED);
      break;
    case OD_COMMAND_CANCEL_ORDER:
      OD_FUZZ_CHECK (after->status == OD_STATUS_CANCELLED);
      OD_FUZZ_CHECK (g_strcmp0 (after->cancel_reason, command->reason) == 0);
      break;
    case OD_COMMAND_N_TYPES:
    default:
      OD_FUZZ_CHECK (FALSE);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr(OdProblem) problem = NULL;
  g_autoptr(OdProblem) revalidated = NULL;
  g_autoptr(OdCommand) command = NULL;
  g_autoptr(OdCommand) again = NULL;
  g_autoptr(OdCommand) fast = NULL;
  g_autoptr(OdProblem) again_problem = NULL;
  g_autofree char *json = NULL;

  if (orders == NULL)
    init_orders ();

  /* The fast parser may decline anything, but what it takes is what the
   * strict path makes of the same bytes. */
  fast = od_command_parse_fast ((const char *) data, size);
  if (fast != NULL)
    {
      g_autoptr(OdProblem) strict_problem = NULL;
      g_autoptr(OdCommand) strict = od_command_parse_strict ((const char *) data, size,
                                                             &strict_problem);

      OD_FUZZ_CHECK (strict != NULL);
      check_same_command (fast, strict);
    }

  command = od_command_parse ((const char *) data, size, &problem);
  if (command == NULL)
    {
      check_problem (problem);
      OD_FUZZ_CHECK (problem->code == OD_PROBLEM_MALFORMED
                     || problem->code == OD_PROBLEM_INVALID_COMMAND
                     || problem->code == OD_PROBLEM_PAYLOAD_TOO_LARGE);
      OD_FUZZ_CHECK (problem->code != OD_PROBLEM_INVALID_COMMAND
                     || (problem->errors != NULL && problem->errors->len > 0));
      return 0;
    }
  OD_FUZZ_CHECK (problem == NULL);

  /* The codec and the dialogs' validation must agree. */
  revalidated = od_command_validate (command);
  OD_FUZZ_CHECK (revalidated == NULL);

  /* The console sends what od_command_to_json makes of a valid command;
   * the server must accept it and read the same command back. */
  json = od_command_to_json (command);
  again = od_command_parse (json, strlen (json), &again_problem);
  if (again == NULL)
    fprintf (stderr, "re-parse of %s failed: %s\n", json, again_problem->detail);
  OD_FUZZ_CHECK (again != NULL);
  check_same_command (command, again);

  for (guint i = 0; i < orders->len; i++)
    check_decision (g_ptr_array_index (orders, i), command);
  return 0;
}

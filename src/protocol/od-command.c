/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-command.h"
#include "od-json.h"
#include "od-json-scan.h"

#include <glib/gi18n-lib.h>
#include <string.h>

G_DEFINE_QUARK (od-command-error-quark, od_command_error)

OdCommand *
od_command_new (OdCommandType  type,
                const char    *order_id)
{
  OdCommand *command = g_new0 (OdCommand, 1);

  command->type = type;
  if (order_id != NULL)
    g_strlcpy (command->order_id, order_id, sizeof command->order_id);
  return command;
}

OdCommand *
od_command_copy (const OdCommand *command)
{
  OdCommand *copy = g_memdup2 (command, sizeof *command);

  copy->customer_name = g_strdup (command->customer_name);
  copy->customer_email = g_strdup (command->customer_email);
  copy->currency = g_strdup (command->currency);
  copy->sku = g_strdup (command->sku);
  copy->name = g_strdup (command->name);
  copy->carrier = g_strdup (command->carrier);
  copy->tracking_number = g_strdup (command->tracking_number);
  copy->reason = g_strdup (command->reason);
  copy->text = g_strdup (command->text);
  return copy;
}

G_DEFINE_BOXED_TYPE (OdCommand, od_command, od_command_copy, od_command_free)

void
od_command_free (OdCommand *command)
{
  if (command == NULL)
    return;
  g_free (command->customer_name);
  g_free (command->customer_email);
  g_free (command->currency);
  g_free (command->sku);
  g_free (command->name);
  g_free (command->carrier);
  g_free (command->tracking_number);
  g_free (command->reason);
  g_free (command->text);
  g_free (command);
}

gboolean
od_idempotency_key_valid (const char *key)
{
  gsize len;

  if (key == NULL)
    return FALSE;
  len = strlen (key);
  if (len < 1 || len > OD_MAX_IDEMPOTENCY_KEY)
    return FALSE;
  for (const char *p = key; *p; p++)
    if (*p < 0x20 || *p > 0x7e)
      return FALSE;
  return TRUE;
}

/* Text fields count Unicode characters, not bytes, and may not hold
 * control characters: they end up in single-line table cells and CSV. */
static const char *
check_text (const char *value,
            glong       max_chars)
{
  glong n;

  if (value == NULL || *value == '\0')
    return N_("must not be empty");
  if (!g_utf8_validate (value, -1, NULL))
    return N_("must be valid UTF-8");
  n = g_utf8_strlen (value, -1);
  if (n > max_chars)
    return max_chars == 100 ? N_("must be at most 100 characters")
         : max_chars == 200 ? N_("must be at most 200 characters")
         : max_chars == 500 ? N_("must be at most 500 characters")
         : N_("must be at most 2000 characters");
  for (const char *p = value; *p; p++)
    if ((unsigned char) *p < 0x20 || *p == 0x7f)
      return N_("must not contain control characters");
  if (g_unichar_isspace (g_utf8_get_char (value)))
    return N_("must not start with a space");
  return NULL;
}

const char *
od_check_customer_name (const char *value)
{
  return check_text (value, OD_MAX_CUSTOMER_NAME);
}

const char *
od_check_item_name (const char *value)
{
  return check_text (value, OD_MAX_ITEM_NAME);
}

const char *
od_check_carrier (const char *value)
{
  return check_text (value, OD_MAX_CARRIER);
}

const char *
od_check_tracking_number (const char *value)
{
  return check_text (value, OD_MAX_TRACKING);
}

const char *
od_check_reason (const char *value)
{
  return check_text (value, OD_MAX_REASON);
}

const char *
od_check_note_text (const char *value)
{
  return check_text (value, OD_MAX_NOTE);
}

const char *
od_check_refund_amount (gint64 value)
{
  if (value < 1 || value > OD_MAX_REFUND_CENTS)
    return N_("must be at least 0.01");
  return NULL;
}

const char *
od_check_customer_email (const char *value)
{
  const char *at;

  if (value == NULL || *value == '\0')
    return N_("must not be empty");
  if (!g_utf8_validate (value, -1, NULL) || g_utf8_strlen (value, -1) > OD_MAX_EMAIL)
    return N_("must be at most 254 characters");
  at = strchr (value, '@');
  if (at == NULL || strchr (at + 1, '@') != NULL)
    return N_("must contain exactly one @");
  if (at == value || at[1] == '\0')
    return N_("needs text before and after the @");
  for (const char *p = value; *p; p++)
    if ((unsigned char) *p <= 0x20 || *p == 0x7f)
      return N_("must not contain spaces or control characters");
  return NULL;
}

const char *
od_check_currency (const char *value)
{
  if (value == NULL || strlen (value) != 3)
    return N_("must be three upper-case letters");
  for (guint i = 0; i < 3; i++)
    if (value[i] < 'A' || value[i] > 'Z')
      return N_("must be three upper-case letters");
  return NULL;
}

const char *
od_check_sku (const char *value)
{
  gsize len;

  if (value == NULL || *value == '\0')
    return N_("must not be empty");
  len = strlen (value);
  if (len > OD_MAX_SKU)
    return N_("must be at most 64 characters");
  for (const char *p = value; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '.' && *p != '_' && *p != '-')
      return N_("may only contain letters, digits, '.', '_' and '-'");
  return NULL;
}

const char *
od_check_quantity (gint64 value)
{
  if (value < 1 || value > OD_MAX_QUANTITY)
    return N_("must be between 1 and 10000");
  return NULL;
}

const char *
od_check_unit_price (gint64 value)
{
  if (value < 0 || value > OD_MAX_UNIT_PRICE_CENTS)
    return N_("must be between 0 and 100000000 cents");
  return NULL;
}

#define TEXT_FIELD(n, member, label, width, fn) \
  { n, OD_FIELD_TEXT, G_STRUCT_OFFSET (OdCommand, member), label, NULL, width, fn, NULL }
#define INT_FIELD(n, member, label, width, fn) \
  { n, OD_FIELD_INT, G_STRUCT_OFFSET (OdCommand, member), label, NULL, width, NULL, fn }
#define MONEY_FIELD(n, entry, member, label, fn) \
  { n, OD_FIELD_MONEY, G_STRUCT_OFFSET (OdCommand, member), label, entry, 12, NULL, fn }

static const OdFieldSpec create_fields[] = {
  TEXT_FIELD ("customer_name", customer_name, N_("Customer name"), OD_MAX_CUSTOMER_NAME,
              od_check_customer_name),
  TEXT_FIELD ("customer_email", customer_email, N_("Customer e-mail"), OD_MAX_EMAIL,
              od_check_customer_email),
  TEXT_FIELD ("currency", currency, N_("Currency"), 3, od_check_currency),
  { NULL },
};
static const OdFieldSpec add_fields[] = {
  TEXT_FIELD ("sku", sku, N_("SKU"), OD_MAX_SKU, od_check_sku),
  TEXT_FIELD ("name", name, N_("Item name"), OD_MAX_ITEM_NAME, od_check_item_name),
  INT_FIELD ("quantity", quantity, N_("Quantity"), 5, od_check_quantity),
  MONEY_FIELD ("unit_price_cents", "unit_price", unit_price_cents, N_("Unit price"),
               od_check_unit_price),
  { NULL },
};
static const OdFieldSpec remove_fields[] = {
  TEXT_FIELD ("sku", sku, N_("SKU"), OD_MAX_SKU, od_check_sku),
  { NULL },
};
static const OdFieldSpec ship_fields[] = {
  TEXT_FIELD ("carrier", carrier, N_("Carrier"), OD_MAX_CARRIER, od_check_carrier),
  TEXT_FIELD ("tracking_number", tracking_number, N_("Tracking number"), OD_MAX_TRACKING,
              od_check_tracking_number),
  { NULL },
};
static const OdFieldSpec cancel_fields[] = {
  TEXT_FIELD ("reason", reason, N_("Reason"), OD_MAX_REASON, od_check_reason),
  { NULL },
};
static const OdFieldSpec note_fields[] = {
  TEXT_FIELD ("text", text, N_("Note"), 60, od_check_note_text),
  { NULL },
};
static const OdFieldSpec refund_fields[] = {
  MONEY_FIELD ("amount_cents", "amount", amount_cents, N_("Amount"), od_check_refund_amount),
  TEXT_FIELD ("reason", reason, N_("Reason"), OD_MAX_REASON, od_check_reason),
  { NULL },
};
static const OdFieldSpec no_fields[] = {
  { NULL },
};

#define ANY_STATUS (((1u << OD_STATUS_N) - 1) & ~OD_STATUS_BIT (OD_STATUS_NONE))

/* The contract's command table (docs/protocol.md), indexed by type. */
static const OdCommandSpec specs[] = {
  { OD_COMMAND_CREATE_ORDER, "CreateOrder", OD_EVENT_ORDER_CREATED,
    OD_STATUS_BIT (OD_STATUS_NONE), N_("the order already exists."), create_fields,
    N_("_New Order…"), N_("New Order"), N_("_Create"),
    N_("The order starts as a draft; add items, then place it."), N_("New order"), FALSE, TRUE },
  { OD_COMMAND_ADD_ITEM, "AddItem", OD_EVENT_ITEM_ADDED,
    OD_STATUS_BIT (OD_STATUS_DRAFT), N_("items can only be added to a draft order."), add_fields,
    N_("_Add Item…"), N_("Add Item"), N_("_Add"),
    N_("Adding a SKU the order already has adds to its quantity and takes the new name and price."),
    N_("Add item"), FALSE, FALSE },
  { OD_COMMAND_REMOVE_ITEM, "RemoveItem", OD_EVENT_ITEM_REMOVED,
    OD_STATUS_BIT (OD_STATUS_DRAFT), N_("items can only be removed from a draft order."),
    remove_fields, N_("_Remove Item…"), N_("Remove Item"), N_("_Remove"), NULL,
    N_("Remove item"), FALSE, FALSE },
  { OD_COMMAND_PLACE_ORDER, "PlaceOrder", OD_EVENT_ORDER_PLACED,
    OD_STATUS_BIT (OD_STATUS_DRAFT), N_("only a draft order can be placed."), no_fields,
    N_("_Place Order"), N_("Place Order"), N_("_Place"),
    N_("Placing the order fixes its lines and total."), N_("Place order"), FALSE, TRUE },
  { OD_COMMAND_SHIP_ORDER, "ShipOrder", OD_EVENT_ORDER_SHIPPED,
    OD_STATUS_BIT (OD_STATUS_PLACED), N_("only a placed order can be shipped."), ship_fields,
    N_("_Ship…"), N_("Ship Order"), N_("_Ship"), NULL, N_("Ship order"), FALSE, TRUE },
  { OD_COMMAND_MARK_DELIVERED, "MarkDelivered", OD_EVENT_ORDER_DELIVERED,
    OD_STATUS_BIT (OD_STATUS_SHIPPED), N_("only a shipped order can be marked delivered."),
    no_fields, N_("Mark _Delivered"), N_("Mark Delivered"), N_("_Mark Delivered"),
    N_("Record that the customer received the order."), N_("Mark delivered"), FALSE, TRUE },
  { OD_COMMAND_CANCEL_ORDER, "CancelOrder", OD_EVENT_ORDER_CANCELLED,
    OD_STATUS_BIT (OD_STATUS_DRAFT) | OD_STATUS_BIT (OD_STATUS_PLACED),
    N_("only a draft or placed order can be cancelled."), cancel_fields,
    N_("_Cancel Order…"), N_("Cancel Order"), N_("Cancel _Order"),
    N_("A cancelled order cannot be changed any more."), N_("Cancel order"), TRUE, FALSE },
  { OD_COMMAND_ADD_ORDER_NOTE, "AddOrderNote", OD_EVENT_ORDER_NOTE_ADDED,
    ANY_STATUS, N_("the order does not exist."), note_fields,
    N_("Add _Note…"), N_("Add Note"), N_("_Add Note"),
    N_("Notes are kept with the order's history and seen by every operator."),
    N_("Add note"), FALSE, FALSE },
  { OD_COMMAND_REFUND_ORDER, "RefundOrder", OD_EVENT_ORDER_REFUNDED,
    OD_STATUS_BIT (OD_STATUS_DELIVERED) | OD_STATUS_BIT (OD_STATUS_PARTIALLY_REFUNDED),
    N_("only a delivered or partly refunded order can be refunded."), refund_fields,
    N_("_Refund…"), N_("Refund Order"), N_("_Refund"),
    N_("Refunds together may not exceed the order's total."), N_("Refund order"), TRUE, FALSE },
};

G_STATIC_ASSERT (G_N_ELEMENTS (specs) == OD_COMMAND_N_TYPES);

const OdCommandSpec *
od_command_spec (OdCommandType type)
{
  g_return_val_if_fail (type < OD_COMMAND_N_TYPES, NULL);
  g_assert (specs[type].type == type);
  return &specs[type];
}

const OdFieldSpec *
od_command_field (OdCommandType  type,
                  const char    *name)
{
  for (const OdFieldSpec *f = od_command_spec (type)->fields; f->name; f++)
    if (g_strcmp0 (f->name, name) == 0 || g_strcmp0 (f->entry_name, name) == 0)
      return f;
  return NULL;
}

const char *
od_command_type_name (OdCommandType type)
{
  g_return_val_if_fail (type < OD_COMMAND_N_TYPES, NULL);
  return specs[type].name;
}

gboolean
od_command_type_from_name (const char    *name,
                           OdCommandType *type)
{
  for (guint i = 0; i < OD_COMMAND_N_TYPES; i++)
    if (g_strcmp0 (specs[i].name, name) == 0)
      {
        *type = i;
        return TRUE;
      }
  return FALSE;
}

static const OdFieldSpec *
fields_for (OdCommandType type)
{
  return type < OD_COMMAND_N_TYPES ? specs[type].fields : no_fields;
}

static void
add_error (OdProblem  **problem,
           const char  *field,
           const char  *message)
{
  if (*problem == NULL)
    *problem = od_problem_new (OD_PROBLEM_INVALID_COMMAND, "%s: %s", field, message);
  od_problem_add_error (*problem, field, message);
}

OdProblem *
od_command_validate (const OdCommand *command)
{
  OdProblem *problem = NULL;

  if (command->type >= OD_COMMAND_N_TYPES)
    add_error (&problem, "type", N_("unknown command type"));
  if (!od_uuid_is_valid (command->order_id))
    add_error (&problem, "order_id",
               N_("must be a UUID: 36 lower-case hex characters with hyphens"));
  if (command->has_expected_version && command->expected_version < 0)
    add_error (&problem, "expected_version", N_("must not be negative"));

  for (const OdFieldSpec *f = fields_for (command->type); f->name; f++)
    {
      g_autofree char *field = g_strconcat ("data.", f->name, NULL);
      const char *message;

      if (f->kind == OD_FIELD_TEXT)
        message = f->check_text (G_STRUCT_MEMBER (const char *, command, f->offset));
      else
        message = f->check_int (G_STRUCT_MEMBER (gint64, command, f->offset));
      if (message != NULL)
        add_error (&problem, field, message);
    }
  return problem;
}

/* Wrong JSON types are "malformed" (400); values out of range and unknown
 * or missing members are "invalid_command" (422), as in the contract. */
OdCommand *
od_command_from_object (JsonObject  *object,
                        OdProblem  **problem)
{
  g_autoptr(OdCommand) command = g_new0 (OdCommand, 1);
  g_autoptr(OdProblem) invalid = NULL;
  g_autoptr(GList) members = NULL;
  JsonNode *node;
  JsonObject *data = NULL;
  const char *type_name;
  gboolean known_type;

  node = json_object_get_member (object, "type");
  if (node == NULL)
    add_error (&invalid, "type", N_("is required"));
  else if (!od_json_is_string (node))
    goto wrong_type_type;

  type_name = node ? json_node_get_string (node) : NULL;
  known_type = type_name != NULL && od_command_type_from_name (type_name, &command->type);
  if (type_name != NULL && !known_type)
    add_error (&invalid, "type", N_("unknown command type"));

  node = json_object_get_member (object, "order_id");
  if (node == NULL)
    add_error (&invalid, "order_id", N_("is required"));
  else if (!od_json_is_string (node))
    goto wrong_type_order_id;
  else if (!od_uuid_is_valid (json_node_get_string (node)))
    add_error (&invalid, "order_id",
               N_("must be a UUID: 36 lower-case hex characters with hyphens"));
  else
    g_strlcpy (command->order_id, json_node_get_string (node), sizeof command->order_id);

  node = json_object_get_member (object, "expected_version");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!od_json_is_integer (node))
        goto wrong_type_version;
      command->has_expected_version = TRUE;
      command->expected_version = json_node_get_int (node);
      if (command->expected_version < 0)
        add_error (&invalid, "expected_version", N_("must not be negative"));
    }

  node = json_object_get_member (object, "data");
  if (node != NULL && !JSON_NODE_HOLDS_NULL (node))
    {
      if (!od_json_is_object (node))
        goto wrong_type_data;
      data = json_node_get_object (node);
    }

  members = json_object_get_members (object);
  for (GList *l = members; l; l = l->next)
    {
      const char *name = l->data;

      if (strcmp (name, "type") != 0 && strcmp (name, "order_id") != 0
          && strcmp (name, "expected_version") != 0 && strcmp (name, "data") != 0)
        add_error (&invalid, name, N_("unknown member"));
    }

  if (known_type)
    {
      const OdFieldSpec *field_specs = fields_for (command->type);

      for (const OdFieldSpec *f = field_specs; f->name; f++)
        {
          g_autofree char *field = g_strconcat ("data.", f->name, NULL);
          const char *message = NULL;

          node = data ? json_object_get_member (data, f->name) : NULL;
          if (node == NULL)
            {
              add_error (&invalid, field, N_("is required"));
              continue;
            }
          if (f->kind == OD_FIELD_TEXT)
            {
              if (!od_json_is_string (node))
                {
                  *problem = od_problem_new (OD_PROBLEM_MALFORMED, "%s must be a string", field);
                  return NULL;
                }
              G_STRUCT_MEMBER (char *, command, f->offset) = g_strdup (json_node_get_string (node));
              message = f->check_text (json_node_get_string (node));
            }
          else
            {
              if (!od_json_is_integer (node))
                {
                  *problem = od_problem_new (OD_PROBLEM_MALFORMED, "%s must be an integer", field);
                  return NULL;
                }
              G_STRUCT_MEMBER (gint64, command, f->offset) = json_node_get_int (node);
              message = f->check_int (json_node_get_int (node));
            }
          if (message != NULL)
            add_error (&invalid, field, message);
        }

      if (data != NULL)
        {
          g_autoptr(GList) data_members = json_object_get_members (data);

          for (GList *l = data_members; l; l = l->next)
            {
              gboolean known = FALSE;

              for (const OdFieldSpec *f = field_specs; f->name && !known; f++)
                known = strcmp (f->name, l->data) == 0;
              if (!known)
                {
                  g_autofree char *field = g_strconcat ("data.", (const char *) l->data, NULL);

                  add_error (&invalid, field, N_("unknown member"));
                }
            }
        }
    }

  if (invalid != NULL)
    {
      *problem = g_steal_pointer (&invalid);
      return NULL;
    }
  return g_steal_pointer (&command);

wrong_type_type:
  *problem = od_problem_new (OD_PROBLEM_MALFORMED, "type must be a string");
  return NULL;
wrong_type_order_id:
  *problem = od_problem_new (OD_PROBLEM_MALFORMED, "order_id must be a string");
  return NULL;
wrong_type_version:
  *problem = od_problem_new (OD_PROBLEM_MALFORMED, "expected_version must be an integer");
  return NULL;
wrong_type_data:
  *problem = od_problem_new (OD_PROBLEM_MALFORMED, "data must be an object");
  return NULL;
}

/* Whether a string of the (already parsed, so well-formed) JSON text
 * escapes a NUL.  A plain search for "\u0000" also matched an escaped
 * backslash followed by "u0000", text an operator may type, and refused
 * the console's own encoding of it (fuzz/regressions/command/
 * escaped-backslash-u0000.json). */
static gboolean
has_nul_escape (const char *body,
                gsize       len)
{
  for (gsize i = 0; i + 1 < len; i++)
    if (body[i] == '\\')
      {
        if (body[i + 1] == 'u' && i + 5 < len && memcmp (body + i + 2, "0000", 4) == 0)
          return TRUE;
        i++;
      }
  return FALSE;
}

/* The data of a command of a known type, read into it: every field of
 * the type once, nothing else, each of its kind (integers not negative). */
static gboolean
parse_fast_data (OdJsonScan *s,
                 OdCommand  *command)
{
  const OdFieldSpec *fields = fields_for (command->type);
  guint n_fields = 0;
  guint64 seen = 0;

  while (fields[n_fields].name != NULL)
    n_fields++;
  g_assert (n_fields < 64);
  if (!od_json_scan_expect (s, '{'))
    return FALSE;
  if (od_json_scan_expect (s, '}'))
    return n_fields == 0;
  for (;;)
    {
      const char *k, *v;
      gsize klen, vlen;
      guint i;

      if (!od_json_scan_string (s, &k, &klen) || !od_json_scan_expect (s, ':'))
        return FALSE;
      for (i = 0; i < n_fields && !od_json_scan_is (k, klen, fields[i].name); i++)
        ;
      if (i == n_fields || (seen & (G_GUINT64_CONSTANT (1) << i)))
        return FALSE;
      seen |= G_GUINT64_CONSTANT (1) << i;
      if (fields[i].kind == OD_FIELD_TEXT)
        {
          if (!od_json_scan_string (s, &v, &vlen))
            return FALSE;
          G_STRUCT_MEMBER (char *, command, fields[i].offset) = g_strndup (v, vlen);
        }
      else
        {
          od_json_scan_space (s);
          if (s->p < s->end && *s->p == '-')
            return FALSE;
          if (!od_json_scan_integer (s, &G_STRUCT_MEMBER (gint64, command, fields[i].offset)))
            return FALSE;
        }
      if (od_json_scan_expect (s, '}'))
        break;
      if (!od_json_scan_expect (s, ','))
        return FALSE;
    }
  return seen == (G_GUINT64_CONSTANT (1) << n_fields) - 1;
}

/* json-glib took ~6 µs of the server's main thread a command (a
 * GScanner, a hash table per object, the strict check before it).  A
 * command as clients send it is flat: its type first, then plain strings
 * and non-negative integers.  This reads exactly that and returns the
 * command only when it is valid; anything else (escapes, null, data
 * before type, a member twice or unknown, a rule broken) returns NULL,
 * and od_command_parse_strict () gives the answer and its problem.  So a
 * command accepted here is the one the strict path makes of the same
 * bytes (test-protocol's /protocol/command/fast and the command fuzzer
 * hold the two equal). */
OdCommand *
od_command_parse_fast (const char *body,
                       gsize       len)
{
  OdJsonScan s = { body, body + len };
  g_autoptr(OdCommand) command = NULL;
  g_autoptr(OdProblem) problem = NULL;
  enum { TYPE = 1, ID = 2, VERSION = 4, DATA = 8 };
  guint seen = 0;

  if (body == NULL || len > OD_MAX_BODY || !g_utf8_validate (body, len, NULL)
      || !od_json_scan_expect (&s, '{'))
    return NULL;
  command = g_new0 (OdCommand, 1);
  for (;;)
    {
      const char *k, *v;
      gsize klen, vlen;

      if (!od_json_scan_string (&s, &k, &klen) || !od_json_scan_expect (&s, ':'))
        return NULL;
      if (od_json_scan_is (k, klen, "type") && !(seen & TYPE))
        {
          guint i;

          if (!od_json_scan_string (&s, &v, &vlen))
            return NULL;
          for (i = 0; i < OD_COMMAND_N_TYPES && !od_json_scan_is (v, vlen, specs[i].name); i++)
            ;
          if (i == OD_COMMAND_N_TYPES)
            return NULL;
          command->type = i;
          seen |= TYPE;
        }
      else if (od_json_scan_is (k, klen, "order_id") && !(seen & ID))
        {
          if (!od_json_scan_string (&s, &v, &vlen) || vlen != OD_UUID_LEN)
            return NULL;
          memcpy (command->order_id, v, OD_UUID_LEN);
          command->order_id[OD_UUID_LEN] = '\0';
          seen |= ID;
        }
      else if (od_json_scan_is (k, klen, "expected_version") && !(seen & VERSION))
        {
          od_json_scan_space (&s);
          if ((s.p < s.end && *s.p == '-')
              || !od_json_scan_integer (&s, &command->expected_version))
            return NULL;
          command->has_expected_version = TRUE;
          seen |= VERSION;
        }
      else if (od_json_scan_is (k, klen, "data") && (seen & (TYPE | DATA)) == TYPE)
        {
          if (!parse_fast_data (&s, command))
            return NULL;
          seen |= DATA;
        }
      else
        return NULL;
      if (od_json_scan_expect (&s, '}'))
        break;
      if (!od_json_scan_expect (&s, ','))
        return NULL;
    }
  od_json_scan_space (&s);
  if (s.p != s.end || (seen & (TYPE | ID)) != (TYPE | ID)
      || (!(seen & DATA) && fields_for (command->type)->name != NULL))
    return NULL;
  problem = od_command_validate (command);
  if (problem != NULL)
    return NULL;
  return g_steal_pointer (&command);
}

OdCommand *
od_command_parse_strict (const char  *body,
                         gsize        len,
                         OdProblem  **problem)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) root = NULL;

  if (len > OD_MAX_BODY)
    {
      *problem = od_problem_new (OD_PROBLEM_PAYLOAD_TOO_LARGE,
                                 "The body is %" G_GSIZE_FORMAT " bytes; the limit is %d.",
                                 len, OD_MAX_BODY);
      return NULL;
    }
  root = od_json_parse_object (body, len, &error);
  if (root == NULL)
    {
      *problem = od_problem_new (OD_PROBLEM_MALFORMED, "%s", error->message);
      return NULL;
    }
  /* json-glib ends strings at an escaped NUL, which would silently shorten
   * a value; refuse it instead. */
  if (has_nul_escape (body, len))
    {
      *problem = od_problem_new (OD_PROBLEM_INVALID_COMMAND, "strings must not contain NUL");
      od_problem_add_error (*problem, "body", N_("must not contain NUL characters"));
      return NULL;
    }
  return od_command_from_object (json_node_get_object (root), problem);
}

OdCommand *
od_command_parse (const char  *body,
                  gsize        len,
                  OdProblem  **problem)
{
  OdCommand *command = od_command_parse_fast (body, len);

  return command != NULL ? command : od_command_parse_strict (body, len, problem);
}

char *
od_command_to_json (const OdCommand *command)
{
  GString *out = g_string_new ("{");
  gboolean first = TRUE;

  od_json_append_member (out, "type", od_command_type_name (command->type));
  g_string_append_c (out, ',');
  od_json_append_member (out, "order_id", command->order_id);
  if (command->has_expected_version)
    g_string_append_printf (out, ",\"expected_version\":%" G_GINT64_FORMAT,
                            command->expected_version);
  g_string_append (out, ",\"data\":{");
  for (const OdFieldSpec *f = fields_for (command->type); f->name; f++)
    {
      if (!first)
        g_string_append_c (out, ',');
      first = FALSE;
      if (f->kind == OD_FIELD_TEXT)
        od_json_append_member (out, f->name,
                               G_STRUCT_MEMBER (const char *, command, f->offset) ?: "");
      else
        {
          od_json_append_string (out, f->name);
          g_string_append_printf (out, ":%" G_GINT64_FORMAT,
                                  G_STRUCT_MEMBER (gint64, command, f->offset));
        }
    }
  g_string_append (out, "}}");
  return g_string_free (out, FALSE);
}

OdCommandError
od_command_error_code (const OdProblem *problem)
{
  switch (problem->code)
    {
    case OD_PROBLEM_MALFORMED:
      return OD_COMMAND_ERROR_MALFORMED;
    case OD_PROBLEM_PAYLOAD_TOO_LARGE:
      return OD_COMMAND_ERROR_TOO_LARGE;
    default:
      return OD_COMMAND_ERROR_INVALID;
    }
}

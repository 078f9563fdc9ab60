/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The cache folds the stream's events from their data's text
 * (od_flat_data_parse + od_order_apply_flat) and parses them without a
 * JsonObject (od_event_parse_fast_lean): both must give exactly what the
 * json-glib path gives, on random event sequences that include malformed,
 * odd and unknown events. */
#include "od-core.h"
#include "od-event-fast.h"
#include "od-json.h"
#include "od-order.h"

#include <string.h>

static const char *const member_names[] = {
  "customer_name", "customer_email", "currency", "sku", "name", "quantity",
  "unit_price_cents", "carrier", "tracking_number", "reason", "text", "amount_cents",
  "total_cents", "item_count", "x",
};

static const char *const type_names[] = {
  "OrderCreated", "ItemAdded", "ItemRemoved", "OrderPlaced", "OrderShipped",
  "OrderDelivered", "OrderCancelled", "OrderNoteAdded", "OrderRefunded",
  "SomethingNew", "", "itemadded",
};

static void
append_ws (GString *out,
           GRand   *rand)
{
  static const char *const ws[] = { " ", "\t", "\n", "\r\n  " };

  if (g_rand_int_range (rand, 0, 8) == 0)
    g_string_append (out, ws[g_rand_int_range (rand, 0, G_N_ELEMENTS (ws))]);
}

static void
append_value (GString *out,
              GRand   *rand)
{
  static const char *const strings[] = {
    "\"A\"", "\"B\"", "\"C\"", "\"\"", "\"Ada Lovelace\"", "\"EUR\"", "\"caf\xc3\xa9\"",
    "\"a\\\"b\"", "\"\\u00e9\"", "\"\\ud800\"", "\"\xff\"", "\"tab\there\"", "\"A\\/\"",
  };
  static const char *const others[] = {
    "true", "false", "null", "1.5", "1e3", "-0", "01", "-", "9223372036854775807",
    "123456789012345678", "1234567890123456789", "99999999999999999999", "{\"a\":1}",
    "[1,2]", "[]", "{}", "nul", "\"open",
  };

  switch (g_rand_int_range (rand, 0, 4))
    {
    case 0:
    case 1:
      g_string_append (out, strings[g_rand_int_range (rand, 0, G_N_ELEMENTS (strings))]);
      break;
    case 2:
      g_string_append_printf (out, "%d", g_rand_int_range (rand, -50, 20000));
      break;
    default:
      g_string_append (out, others[g_rand_int_range (rand, 0, G_N_ELEMENTS (others))]);
      break;
    }
}

/* A data text: mostly a flat object, sometimes anything. */
static char *
random_data (GRand *rand)
{
  static const char *const odd[] = {
    "", "[]", "5", "\"s\"", "{", "{\"sku\"}", "{\"sku\":\"A\",}", "{\"sku\":\"A\"} x",
    "{,}", "{\"sku\" \"A\"}", "null",
  };
  GString *out = g_string_new (NULL);
  guint n = g_rand_int_range (rand, 0, 7);

  if (g_rand_int_range (rand, 0, 30) == 0)
    {
      g_string_append (out, odd[g_rand_int_range (rand, 0, G_N_ELEMENTS (odd))]);
      return g_string_free (out, FALSE);
    }
  if (g_rand_int_range (rand, 0, 60) == 0)
    n = OD_FLAT_DATA_MAX_MEMBERS + g_rand_int_range (rand, -1, 3);
  append_ws (out, rand);
  g_string_append_c (out, '{');
  for (guint i = 0; i < n; i++)
    {
      const char *name = member_names[g_rand_int_range (rand, 0, G_N_ELEMENTS (member_names))];

      if (i > 0)
        g_string_append_c (out, ',');
      append_ws (out, rand);
      if (n > 8)
        g_string_append_printf (out, "\"m%u\"", i);
      else if (g_rand_int_range (rand, 0, 40) == 0)
        g_string_append (out, "\"s\\u006bu\""); /* "sku", escaped */
      else
        g_string_append_printf (out, "\"%s\"", name);
      append_ws (out, rand);
      g_string_append_c (out, ':');
      append_ws (out, rand);
      /* The values the fold reads, usually of the right kind. */
      if (g_rand_int_range (rand, 0, 3) > 0 && (strstr (name, "cents") || strstr (name, "quantity")
                                                 || strstr (name, "count")))
        g_string_append_printf (out, "%d", g_rand_int_range (rand, -5, 5000));
      else
        append_value (out, rand);
      append_ws (out, rand);
    }
  g_string_append_c (out, '}');
  append_ws (out, rand);
  return g_string_free (out, FALSE);
}

static void
assert_orders_equal (const OdOrder *a,
                     const OdOrder *b)
{
  g_assert_cmpstr (a->order_id, ==, b->order_id);
  g_assert_cmpint (a->version, ==, b->version);
  g_assert_cmpint (a->status, ==, b->status);
  g_assert_cmpstr (a->customer_name, ==, b->customer_name);
  g_assert_cmpstr (a->customer_email, ==, b->customer_email);
  g_assert_cmpstr (a->currency, ==, b->currency);
  g_assert_cmpstr (a->carrier, ==, b->carrier);
  g_assert_cmpstr (a->tracking_number, ==, b->tracking_number);
  g_assert_cmpstr (a->cancel_reason, ==, b->cancel_reason);
  g_assert_cmpint (a->refunded_cents, ==, b->refunded_cents);
  g_assert_cmpint (a->note_count, ==, b->note_count);
  g_assert_cmpstr (a->created_at, ==, b->created_at);
  g_assert_cmpstr (a->updated_at, ==, b->updated_at);
  g_assert_cmpint (a->last_position, ==, b->last_position);
  g_assert_cmpuint (a->lines->len, ==, b->lines->len);
  for (guint i = 0; i < a->lines->len; i++)
    {
      const OdLine *la = g_ptr_array_index (a->lines, i);
      const OdLine *lb = g_ptr_array_index (b->lines, i);

      g_assert_cmpstr (la->sku, ==, lb->sku);
      g_assert_cmpstr (la->name, ==, lb->name);
      g_assert_cmpint (la->quantity, ==, lb->quantity);
      g_assert_cmpint (la->unit_price_cents, ==, lb->unit_price_cents);
    }
}

/* What the flat reader took is what json-glib reads from the same text:
 * the same members, of the same kinds and values. */
static void
assert_flat_matches (const OdFlatData *flat,
                     JsonObject       *object)
{
  g_assert_nonnull (object);
  g_assert_cmpuint (flat->n_members, ==, json_object_get_size (object));
  for (guint i = 0; i < flat->n_members; i++)
    {
      JsonNode *node = json_object_get_member (object, flat->keys[i]);

      g_assert_nonnull (node);
      switch (flat->kinds[i])
        {
        case OD_FLAT_STRING:
          g_assert_true (od_json_is_string (node));
          g_assert_cmpstr (flat->strings[i], ==, json_node_get_string (node));
          break;
        case OD_FLAT_INTEGER:
          g_assert_true (od_json_is_integer (node));
          g_assert_cmpint (flat->integers[i], ==, json_node_get_int (node));
          break;
        case OD_FLAT_OTHER:
        default:
          g_assert_false (od_json_is_string (node));
          g_assert_false (od_json_is_integer (node));
          break;
        }
    }
}

static void
test_fold_random (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  guint flat_events = 0, json_events = 0;

  for (guint seq = 0; seq < 4000; seq++)
    {
      g_autoptr(OdOrder) a = od_order_new ("0193a1c2-7f00-7abc-8def-0123456789ab");
      g_autoptr(OdOrder) b = od_order_new ("0193a1c2-7f00-7abc-8def-0123456789ab");
      guint n = g_rand_int_range (rand, 1, 30);

      for (guint i = 0; i < n; i++)
        {
          g_autofree char *data = random_data (rand);
          g_autofree char *at = g_strdup_printf ("2026-12-05T09:%02u:%02u.000Z", seq % 60, i % 60);
          const char *type = g_rand_int_range (rand, 0, 50) == 0
                               ? NULL
                               : type_names[g_rand_int_range (rand, 0, G_N_ELEMENTS (type_names))];
          g_autoptr(JsonNode) root = od_json_parse_object (data, -1, NULL);
          JsonObject *object = root ? json_node_get_object (root) : NULL;
          OdFlatData flat;
          gboolean ka, kb;

          /* How the cache folded before: json-glib's object (NULL when
           * the strict parser refuses the text). */
          ka = od_order_apply (a, type, object, i + 1, seq * 100 + i + 1, at);
          /* How it folds now. */
          if (od_flat_data_parse (&flat, data, strlen (data)))
            {
              assert_flat_matches (&flat, object);
              kb = od_order_apply_flat (b, type, &flat, i + 1, seq * 100 + i + 1, at);
              flat_events++;
            }
          else
            {
              kb = od_order_apply (b, type, object, i + 1, seq * 100 + i + 1, at);
              json_events++;
            }
          g_assert_cmpint (ka, ==, kb);
          assert_orders_equal (a, b);
        }
    }
  /* Both paths were taken, many times each. */
  g_assert_cmpuint (flat_events, >, 10000);
  g_assert_cmpuint (json_events, >, 10000);
}

/* No data (NULL), as od_order_apply with no object. */
static void
test_fold_no_data (void)
{
  g_autoptr(OdOrder) a = od_order_new ("0193a1c2-7f00-7abc-8def-0123456789ab");
  g_autoptr(OdOrder) b = od_order_new ("0193a1c2-7f00-7abc-8def-0123456789ab");

  for (guint i = 0; i < G_N_ELEMENTS (type_names); i++)
    {
      g_assert_cmpint (od_order_apply (a, type_names[i], NULL, i + 1, i + 1, "t"), ==,
                       od_order_apply_flat (b, type_names[i], NULL, i + 1, i + 1, "t"));
      assert_orders_equal (a, b);
    }
}

/* Texts the flat reader must refuse (json-glib decides them). */
static void
test_flat_refuses (void)
{
  static const char *const refused[] = {
    "", "{", "}", "[]", "{\"a\":1,}", "{\"a\":1} x", "{\"a\":1,\"a\":2}", "{\"a\":\"\\n\"}",
    "{\"a\\u0062\":1}", "{\"a\":1.0}", "{\"a\":1e2}", "{\"a\":01}", "{\"a\":-}",
    "{\"a\":1234567890123456789}", "{\"a\":{}}", "{\"a\":[]}", "{\"a\":\"\xff\"}",
    "{\"a\":\"x\ty\"}", "{\"a\" 1}", "{a:1}", "{\"a\":tru}",
  };
  OdFlatData flat;
  g_autoptr(GString) big = g_string_new ("{\"a\":\"");

  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    g_assert_false (od_flat_data_parse (&flat, refused[i], strlen (refused[i])));
  /* A NUL inside is not JSON text. */
  g_assert_false (od_flat_data_parse (&flat, "{\"a\":\"x\0y\"}", 11));
  /* Larger than the reader's buffer. */
  while (big->len < OD_FLAT_DATA_MAX_BYTES)
    g_string_append_c (big, 'x');
  g_string_append (big, "\"}");
  g_assert_false (od_flat_data_parse (&flat, big->str, big->len));

  {
    const char *text = " { \"a\" : -0 , \"b\":\"\" ,\"c\":null} ";

    g_assert_true (od_flat_data_parse (&flat, text, strlen (text)));
  }
  g_assert_cmpuint (flat.n_members, ==, 3);
  g_assert_cmpint (flat.integers[0], ==, 0);
  g_assert_cmpstr (od_flat_data_get_string (&flat, "b"), ==, "");
  g_assert_null (od_flat_data_get_string (&flat, "c"));
}

/* od_event_parse_fast_lean takes exactly the lines od_event_parse_fast
 * takes, with the same envelope and data text, and no parsed object. */
static void
test_lean_parse_random (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  guint taken = 0;

  for (guint i = 0; i < 20000; i++)
    {
      g_autofree char *data = random_data (rand);
      g_autofree char *line = g_strdup_printf (
        "{\"position\":%u,\"prev\":%u,\"order_id\":\"0193a1c2-7f00-7abc-8def-0123456789ab\","
        "\"version\":1,\"type\":\"%s\",\"recorded_at\":\"t\",\"actor\":\"a\",\"data\":%s}",
        i + 2, i + 1, type_names[i % G_N_ELEMENTS (type_names)], data);
      g_autoptr(OdEvent) full = od_event_parse_fast (line, strlen (line));
      g_autoptr(OdEvent) lean = od_event_parse_fast_lean (line, strlen (line));

      g_assert_true ((full == NULL) == (lean == NULL));
      if (full == NULL)
        continue;
      taken++;
      g_assert_null (lean->data_node);
      g_assert_cmpint (full->position, ==, lean->position);
      g_assert_cmpint (full->prev, ==, lean->prev);
      g_assert_cmpint (full->version, ==, lean->version);
      g_assert_cmpstr (full->order_id, ==, lean->order_id);
      g_assert_cmpstr (full->type, ==, lean->type);
      g_assert_cmpstr (full->recorded_at, ==, lean->recorded_at);
      g_assert_cmpstr (full->actor, ==, lean->actor);
      g_assert_cmpstr (full->data, ==, lean->data);
      /* Asked for, the data is the same object. */
      g_assert_nonnull (od_event_get_data (lean));
      g_assert_true (json_node_equal (full->data_node, lean->data_node));
    }
  g_assert_cmpuint (taken, >, 5000);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/fold/random", test_fold_random);
  g_test_add_func ("/fold/no-data", test_fold_no_data);
  g_test_add_func ("/fold/flat-refuses", test_flat_refuses);
  g_test_add_func ("/fold/lean-parse-random", test_lean_parse_random);
  return g_test_run ();
}

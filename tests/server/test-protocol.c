/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Unit tests of src/protocol: field rules at every boundary, UUIDs, the
 * command codec (malformed versus invalid_command), the order aggregate's
 * decide/apply, and the JSON round trips of problems and events. */
#include "od-protocol.h"

#include <string.h>

static char *
repeat (const char *unit,
        guint       n)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < n; i++)
    g_string_append (s, unit);
  return g_string_free (s, FALSE);
}

static gboolean
od_test_json_equal_local (const char *a,
                          const char *b)
{
  g_autoptr(JsonNode) na = json_from_string (a, NULL);
  g_autoptr(JsonNode) nb = json_from_string (b, NULL);

  return na != NULL && nb != NULL && json_node_equal (na, nb);
}

/* ---- UUIDs ---- */

static void
test_uuid_valid (void)
{
  const char *good[] = {
    "0193a1c2-7f00-7abc-8def-0123456789ab",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
  };
  const char *bad[] = {
    "",
    "0193A1C2-7F00-7ABC-8DEF-0123456789AB",   /* upper case */
    "0193a1c2-7f00-7abc-8def-0123456789aB",
    "0193a1c2-7f00-7abc-8def-0123456789a",    /* 35 */
    "0193a1c2-7f00-7abc-8def-0123456789abc",  /* 37 */
    "0193a1c27f007abc8def0123456789ab",       /* no hyphens */
    "0193a1c2-7f007-abc-8def-0123456789ab",   /* hyphen misplaced */
    "0193a1c2-7f00-7abc-8def_0123456789ab",
    "0193a1c2-7f00-7abc-8def-0123456789ag",   /* not hex */
    "{0193a1c2-7f00-7abc-8def-0123456789ab}",
    " 0193a1c2-7f00-7abc-8def-0123456789ab",
    "0193a1c2-7f00-7abc-8def-0123456789ab ",
    "0193a1c2-7f00-7abc-8def-0123456789a\xc3\xa9",
    "urn:uuid:0193a1c2-7f00-7abc-8def-0123",
  };

  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    g_assert_true (od_uuid_is_valid (good[i]));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *printable = g_strescape (bad[i], NULL);

      g_test_message ("bad uuid %s", printable);
      g_assert_false (od_uuid_is_valid (bad[i]));
    }
  g_assert_false (od_uuid_is_valid (NULL));
}

static gint64
uuid_msec (const char *id)
{
  g_autofree char *hex = g_strndup (id, 8);
  g_autofree char *hex2 = g_strndup (id + 9, 4);

  return (gint64) g_ascii_strtoull (hex, NULL, 16) * 65536 + g_ascii_strtoull (hex2, NULL, 16);
}

static void
check_v7_run (guint n)
{
  g_autofree char *prev = NULL;
  gint64 before = g_get_real_time () / 1000;

  for (guint i = 0; i < n; i++)
    {
      char *id = od_uuid_v7_new ();

      g_assert_true (od_uuid_is_valid (id));
      g_assert_cmpint (id[14], ==, '7');                   /* version */
      g_assert_nonnull (strchr ("89ab", id[19]));          /* RFC 9562 variant */
      if (prev != NULL && strcmp (prev, id) >= 0)
        {
          g_test_fail_printf ("id %u: %s does not sort after %s", i, id, prev);
          g_free (id);
          return;
        }
      g_free (prev);
      prev = id;
    }
  /* The embedded time is "now": not before the loop, not far after it. */
  g_assert_cmpint (uuid_msec (prev), >=, before);
  g_assert_cmpint (uuid_msec (prev), <=, g_get_real_time () / 1000 + 5000);
}

/* Fewer ids than the 12-bit counter holds in one millisecond. */
static void
test_uuid_v7 (void)
{
  for (guint round = 0; round < 20; round++)
    {
      check_v7_run (3000);
      g_usleep (1000);
    }
}

/* More ids in one millisecond than the counter holds: RFC 9562 (6.2,
 * method 1) keeps them monotonic by moving on to the next millisecond, and
 * the ids made after that must still sort after it. */
static void
test_uuid_v7_burst (void)
{
  check_v7_run (50000);
}

/* Runs last of the UUID tests: it moves the generator's clock ahead.
 * A backdated id between two of the newest millisecond must not reset
 * that millisecond's counter: it did, and the third id sorted before
 * the first about once in 30 (a random counter), so this runs 300 times,
 * each in a new millisecond. */
static void
test_uuid_v7_fill (void)
{
  gint64 future = g_get_real_time () / 1000 + 100000;

  for (guint i = 0; i < 300; i++, future += 2000)
    {
      char a[OD_UUID_LEN + 1], b[OD_UUID_LEN + 1], c[OD_UUID_LEN + 1];

      od_uuid_v7_fill (a, future);
      g_assert_true (od_uuid_is_valid (a));
      g_assert_cmpint (uuid_msec (a), ==, future);
      /* A backdated id (the demo seeds weeks of history) keeps its own time. */
      od_uuid_v7_fill (b, future - 50000);
      g_assert_true (od_uuid_is_valid (b));
      g_assert_cmpint (uuid_msec (b), ==, future - 50000);
      g_assert_cmpstr (b, <, a);
      od_uuid_v7_fill (c, future);
      g_assert_true (od_uuid_is_valid (c));
      g_assert_cmpstr (a, <, c);
      g_assert_cmpstr (b, !=, c);
    }
}

/* ---- field rules ---- */

typedef const char *(*TextCheck) (const char *value);

static void
check_text_limit (TextCheck check,
                  guint     max)
{
  g_autofree char *ascii_max = repeat ("a", max);
  g_autofree char *ascii_over = repeat ("a", max + 1);
  g_autofree char *wide_max = repeat ("\xc3\xa9", max);       /* é: 2 bytes, 1 character */
  g_autofree char *wide_over = repeat ("\xc3\xa9", max + 1);
  g_autofree char *emoji_max = repeat ("\xf0\x9f\x98\x80", max);

  g_assert_null (check ("a"));
  g_assert_null (check (ascii_max));
  g_assert_nonnull (check (ascii_over));
  g_assert_null (check (wide_max));
  g_assert_nonnull (check (wide_over));
  g_assert_null (check (emoji_max));
  g_assert_nonnull (check (""));
  g_assert_nonnull (check (NULL));
  g_assert_nonnull (check ("a\x01z"));
  g_assert_nonnull (check ("a\x1fz"));
  g_assert_nonnull (check ("a\x7fz"));
  g_assert_nonnull (check ("a\nz"));
  g_assert_nonnull (check ("a\tz"));
  g_assert_nonnull (check (" a"));
  g_assert_nonnull (check ("\ta"));
  g_assert_nonnull (check ("\xc2\xa0" "a"));                 /* leading no-break space */
  g_assert_nonnull (check ("\xe3\x80\x80" "a"));             /* leading ideographic space */
  g_assert_null (check ("a b"));
  g_assert_null (check ("a "));                              /* only the start is checked */
  g_assert_nonnull (check ("a\xff"));
  g_assert_nonnull (check ("\xc0\xaf"));
  g_assert_nonnull (check ("\xed\xa0\x80"));                 /* a surrogate */
}

static void
test_field_text (void)
{
  check_text_limit (od_check_customer_name, 200);
  check_text_limit (od_check_item_name, 200);
  check_text_limit (od_check_carrier, 100);
  check_text_limit (od_check_tracking_number, 100);
  check_text_limit (od_check_reason, 500);
}

static void
test_field_email (void)
{
  g_autofree char *local = repeat ("a", 252);
  g_autofree char *max = g_strconcat (local, "@b", NULL);            /* 254 */
  g_autofree char *over = g_strconcat (local, "@bc", NULL);          /* 255 */
  g_autofree char *wide_local = repeat ("\xc3\xa9", 252);
  g_autofree char *wide_max = g_strconcat (wide_local, "@b", NULL);  /* 254 characters */

  g_assert_null (od_check_customer_email ("a@b"));
  g_assert_null (od_check_customer_email ("ada.lovelace+x@example.org"));
  g_assert_null (od_check_customer_email (max));
  g_assert_nonnull (od_check_customer_email (over));
  g_assert_null (od_check_customer_email (wide_max));
  g_assert_nonnull (od_check_customer_email (""));
  g_assert_nonnull (od_check_customer_email (NULL));
  g_assert_nonnull (od_check_customer_email ("ab"));
  g_assert_nonnull (od_check_customer_email ("@b"));
  g_assert_nonnull (od_check_customer_email ("a@"));
  g_assert_nonnull (od_check_customer_email ("@"));
  g_assert_nonnull (od_check_customer_email ("a@@b"));
  g_assert_nonnull (od_check_customer_email ("a@b@c"));
  g_assert_nonnull (od_check_customer_email ("a b@c"));
  g_assert_nonnull (od_check_customer_email (" a@c"));
  g_assert_nonnull (od_check_customer_email ("a@c\t"));
  g_assert_nonnull (od_check_customer_email ("a@c\x7f"));
  g_assert_nonnull (od_check_customer_email ("a@\xff"));
}

static void
test_field_currency (void)
{
  const char *bad[] = { "", "E", "EU", "EURO", "eur", "Eur", "E1R", "E R", "\xc3\x89UR", "EU\x01" };

  g_assert_null (od_check_currency ("EUR"));
  g_assert_null (od_check_currency ("AAA"));
  g_assert_null (od_check_currency ("ZZZ"));
  g_assert_nonnull (od_check_currency (NULL));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    g_assert_nonnull (od_check_currency (bad[i]));
}

static void
test_field_sku (void)
{
  g_autofree char *max = repeat ("A", 64);
  g_autofree char *over = repeat ("A", 65);
  const char *bad[] = { "", "a b", "a/b", "a+b", "a,b", "\xc3\xa9", "a\x01", "a:b", "a\"b" };

  g_assert_null (od_check_sku ("a"));
  g_assert_null (od_check_sku ("MUG-blue_1.0"));
  g_assert_null (od_check_sku ("...---___"));
  g_assert_null (od_check_sku (max));
  g_assert_nonnull (od_check_sku (over));
  g_assert_nonnull (od_check_sku (NULL));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    g_assert_nonnull (od_check_sku (bad[i]));
}

static void
test_field_numbers (void)
{
  g_assert_nonnull (od_check_quantity (G_MININT64));
  g_assert_nonnull (od_check_quantity (-1));
  g_assert_nonnull (od_check_quantity (0));
  g_assert_null (od_check_quantity (1));
  g_assert_null (od_check_quantity (10000));
  g_assert_nonnull (od_check_quantity (10001));
  g_assert_nonnull (od_check_quantity (G_MAXINT64));

  g_assert_nonnull (od_check_unit_price (G_MININT64));
  g_assert_nonnull (od_check_unit_price (-1));
  g_assert_null (od_check_unit_price (0));
  g_assert_null (od_check_unit_price (100000000));
  g_assert_nonnull (od_check_unit_price (100000001));
  g_assert_nonnull (od_check_unit_price (G_MAXINT64));
}

static void
test_idempotency_key (void)
{
  g_autofree char *max = repeat ("k", 128);
  g_autofree char *over = repeat ("k", 129);

  g_assert_true (od_idempotency_key_valid ("k"));
  g_assert_true (od_idempotency_key_valid (max));
  g_assert_true (od_idempotency_key_valid ("a key with spaces ~!"));
  g_assert_true (od_idempotency_key_valid (" "));
  g_assert_false (od_idempotency_key_valid (over));
  g_assert_false (od_idempotency_key_valid (""));
  g_assert_false (od_idempotency_key_valid (NULL));
  g_assert_false (od_idempotency_key_valid ("a\tb"));
  g_assert_false (od_idempotency_key_valid ("a\x1f"));
  g_assert_false (od_idempotency_key_valid ("a\x7f"));
  g_assert_false (od_idempotency_key_valid ("cl\xc3\xa9"));
}

/* ---- command codec ---- */

#define ID "0193a1c2-7f00-7abc-8def-0123456789ab"

static OdCommand *
parse_ok (const char *body)
{
  g_autoptr(OdProblem) problem = NULL;
  OdCommand *command = od_command_parse (body, strlen (body), &problem);

  if (command == NULL)
    g_error ("%s: %s %s", body, problem->code_name, problem->detail);
  g_assert_null (problem);
  return command;
}

static OdProblem *
parse_fail (const char *body,
            gssize      len,
            OdProblemCode code)
{
  OdProblem *problem = NULL;
  g_autoptr(OdCommand) command = od_command_parse (body, len < 0 ? strlen (body) : (gsize) len,
                                                   &problem);

  {
    g_autofree char *printable = g_strescape (body, NULL);

    g_test_message ("body %.80s", printable);
  }
  g_assert_null (command);
  g_assert_nonnull (problem);
  if (problem->code != code)
    g_error ("%.200s: expected %s, got %s (%s)", body, od_problem_code_name (code),
             problem->code_name, problem->detail);
  g_assert_cmpuint (problem->status, ==, od_problem_code_status (code));
  return problem;
}

static gboolean
has_field (OdProblem  *problem,
           const char *field)
{
  for (guint i = 0; problem->errors && i < problem->errors->len; i++)
    {
      OdFieldError *error = g_ptr_array_index (problem->errors, i);

      if (g_strcmp0 (error->field, field) == 0 && error->message && *error->message)
        return TRUE;
    }
  return FALSE;
}

static void
test_command_parse_ok (void)
{
  g_autoptr(OdCommand) create = parse_ok ("{\"type\":\"CreateOrder\",\"order_id\":\"" ID "\","
                                          "\"data\":{\"customer_name\":\"Ada\",\"customer_email\":\"a@b\",\"currency\":\"EUR\"}}");
  g_autoptr(OdCommand) add = parse_ok ("{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"expected_version\":3,"
                                       "\"data\":{\"sku\":\"S-1\",\"name\":\"Mug \\u00e9\",\"quantity\":2,\"unit_price_cents\":1299}}");
  g_autoptr(OdCommand) remove = parse_ok ("{\"type\":\"RemoveItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S-1\"}}");
  g_autoptr(OdCommand) place = parse_ok ("{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"data\":{}}");
  g_autoptr(OdCommand) place_null = parse_ok ("{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"data\":null,\"expected_version\":null}");
  g_autoptr(OdCommand) ship = parse_ok ("{\"type\":\"ShipOrder\",\"order_id\":\"" ID "\",\"data\":{\"carrier\":\"DHL\",\"tracking_number\":\"X1\"}}");
  g_autoptr(OdCommand) deliver = parse_ok ("{\"type\":\"MarkDelivered\",\"order_id\":\"" ID "\"}");
  g_autoptr(OdCommand) cancel = parse_ok ("{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"expected_version\":0,\"data\":{\"reason\":\"r\"}}");

  g_assert_cmpint (create->type, ==, OD_COMMAND_CREATE_ORDER);
  g_assert_cmpstr (create->order_id, ==, ID);
  g_assert_false (create->has_expected_version);
  g_assert_cmpstr (create->customer_name, ==, "Ada");
  g_assert_cmpstr (create->customer_email, ==, "a@b");
  g_assert_cmpstr (create->currency, ==, "EUR");

  g_assert_cmpint (add->type, ==, OD_COMMAND_ADD_ITEM);
  g_assert_true (add->has_expected_version);
  g_assert_cmpint (add->expected_version, ==, 3);
  g_assert_cmpstr (add->sku, ==, "S-1");
  g_assert_cmpstr (add->name, ==, "Mug \xc3\xa9");
  g_assert_cmpint (add->quantity, ==, 2);
  g_assert_cmpint (add->unit_price_cents, ==, 1299);

  g_assert_cmpint (remove->type, ==, OD_COMMAND_REMOVE_ITEM);
  g_assert_cmpstr (remove->sku, ==, "S-1");
  g_assert_cmpint (place->type, ==, OD_COMMAND_PLACE_ORDER);
  g_assert_cmpint (place_null->type, ==, OD_COMMAND_PLACE_ORDER);
  g_assert_false (place_null->has_expected_version);
  g_assert_cmpint (ship->type, ==, OD_COMMAND_SHIP_ORDER);
  g_assert_cmpstr (ship->carrier, ==, "DHL");
  g_assert_cmpstr (ship->tracking_number, ==, "X1");
  g_assert_cmpint (deliver->type, ==, OD_COMMAND_MARK_DELIVERED);
  g_assert_cmpint (cancel->type, ==, OD_COMMAND_CANCEL_ORDER);
  g_assert_true (cancel->has_expected_version);
  g_assert_cmpint (cancel->expected_version, ==, 0);
  g_assert_cmpstr (cancel->reason, ==, "r");
}

static void
test_command_malformed (void)
{
  const char *bodies[] = {
    "",
    " ",
    "not json",
    "[]",
    "1",
    "\"text\"",
    "null",
    "{",
    "{\"type\":\"CreateOrder\"",
    "{\"type\":\"CreateOrder\",}",
    "{type:\"CreateOrder\"}",
    "{} x",
    "{\"type\":1,\"order_id\":\"" ID "\"}",
    "{\"type\":null,\"order_id\":\"" ID "\"}",
    "{\"type\":[],\"order_id\":\"" ID "\"}",
    "{\"type\":\"PlaceOrder\",\"order_id\":5}",
    "{\"type\":\"PlaceOrder\",\"order_id\":null}",
    "{\"type\":\"PlaceOrder\",\"order_id\":{}}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":\"1\"}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":1.5}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":2.0}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":1e2}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":true}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"data\":[]}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"data\":\"{}\"}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"data\":1}",
    "{\"type\":\"CreateOrder\",\"order_id\":\"" ID "\",\"data\":{\"customer_name\":5,\"customer_email\":\"a@b\",\"currency\":\"EUR\"}}",
    "{\"type\":\"CreateOrder\",\"order_id\":\"" ID "\",\"data\":{\"customer_name\":\"A\",\"customer_email\":null,\"currency\":\"EUR\"}}",
    "{\"type\":\"CreateOrder\",\"order_id\":\"" ID "\",\"data\":{\"customer_name\":\"A\",\"customer_email\":\"a@b\",\"currency\":[\"EUR\"]}}",
    "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantity\":\"2\",\"unit_price_cents\":1}}",
    "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantity\":2.0,\"unit_price_cents\":1}}",
    "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantity\":2,\"unit_price_cents\":1.5}}",
    "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantity\":true,\"unit_price_cents\":1}}",
    "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":1,\"name\":\"N\",\"quantity\":2,\"unit_price_cents\":1}}",
    "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S\",\"name\":{},\"quantity\":2,\"unit_price_cents\":1}}",
    "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantity\":1e30,\"unit_price_cents\":1}}",
    "{\"type\":\"RemoveItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":false}}",
    "{\"type\":\"ShipOrder\",\"order_id\":\"" ID "\",\"data\":{\"carrier\":\"D\",\"tracking_number\":7}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":null}}",
    "{\"type\":\"CreateOrder\",\"order_id\":\"\xff\"}",
    "{\"type\":\"Create\xc3\"}",
  };
  g_autofree char *deep_ok_inner = repeat ("[", 31);
  g_autofree char *deep_ok_close = repeat ("]", 31);
  g_autofree char *deep_bad_inner = repeat ("[", 32);
  g_autofree char *deep_bad_close = repeat ("]", 32);
  g_autofree char *deep_ok = g_strconcat ("{\"a\":", deep_ok_inner, deep_ok_close, "}", NULL);
  g_autofree char *deep_bad = g_strconcat ("{\"a\":", deep_bad_inner, deep_bad_close, "}", NULL);
  g_autofree char *very_deep = repeat ("[", 60000);
  g_autofree char *brackets_in_string = NULL;
  g_autoptr(OdProblem) p = NULL;
  g_autoptr(OdProblem) p2 = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    od_problem_free (parse_fail (bodies[i], -1, OD_PROBLEM_MALFORMED));

  /* A raw NUL byte inside the body. */
  od_problem_free (parse_fail ("{\"type\":\"Pl\0ceOrder\"}", 21, OD_PROBLEM_MALFORMED));
  /* Nesting: 32 levels are parsed (and then refused as a command), 33 are
   * not parsed at all. */
  p = parse_fail (deep_ok, -1, OD_PROBLEM_INVALID_COMMAND);
  g_assert_true (has_field (p, "a"));
  od_problem_free (parse_fail (deep_bad, -1, OD_PROBLEM_MALFORMED));
  od_problem_free (parse_fail (very_deep, -1, OD_PROBLEM_MALFORMED));
  /* Brackets inside a string do not count as nesting. */
  {
    g_autofree char *many = repeat ("[{", 100);

    brackets_in_string = g_strconcat ("{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"x\":\"", many, "\\\"\"}", NULL);
  }
  p2 = parse_fail (brackets_in_string, -1, OD_PROBLEM_INVALID_COMMAND);
  g_assert_true (has_field (p2, "x"));
}

/* RFC 8259 is strict; json-glib is not (it takes single quotes, comments,
 * hex and leading zeros).  The contract says a body that is not JSON is
 * `malformed`, so these must be refused. */
static void
test_command_strict_json (void)
{
  const char *not_json[] = {
    "{\"type\":'PlaceOrder',\"order_id\":\"" ID "\"}",
    "{'type':\"PlaceOrder\",\"order_id\":\"" ID "\"}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\" /* comment */}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":0x1}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":01}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":.5}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"\\x30193a1c2-7f00-7abc-8def-0123456789a\"}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\"}{}",
  };

  g_autoptr(GString) failures = g_string_new (NULL);

  for (guint i = 0; i < G_N_ELEMENTS (not_json); i++)
    {
      g_autoptr(OdProblem) problem = NULL;
      g_autoptr(OdCommand) command = od_command_parse (not_json[i], strlen (not_json[i]), &problem);

      if (command != NULL || problem == NULL || problem->code != OD_PROBLEM_MALFORMED)
        {
          g_autofree char *printable = g_strescape (not_json[i], NULL);

          g_test_message ("not refused as malformed: %s -> %s", printable,
                          problem ? problem->code_name : "accepted");
          g_string_append_c (failures, 'x');
        }
    }
  if (failures->len > 0)
    g_test_fail_printf ("%" G_GSIZE_FORMAT " bodies that are not JSON were not refused as malformed (listed above)",
                        failures->len);
}

static void
test_command_invalid (void)
{
  struct {
    const char *body;
    const char *fields[4];
  } cases[] = {
    { "{}", { "type", "order_id" } },
    { "{\"type\":\"Frobnicate\",\"order_id\":\"" ID "\"}", { "type" } },
    { "{\"type\":\"createorder\",\"order_id\":\"" ID "\"}", { "type" } },
    { "{\"type\":\"PlaceOrder\"}", { "order_id" } },
    { "{\"type\":\"PlaceOrder\",\"order_id\":\"0193A1C2-7F00-7ABC-8DEF-0123456789AB\"}", { "order_id" } },
    { "{\"type\":\"PlaceOrder\",\"order_id\":\"42\"}", { "order_id" } },
    { "{\"type\":\"PlaceOrder\",\"order_id\":\"\"}", { "order_id" } },
    { "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":-1}", { "expected_version" } },
    { "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_versoin\":1}", { "expected_versoin" } },
    { "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"data\":{\"x\":1}}", { "data.x" } },
    { "{\"type\":\"MarkDelivered\",\"order_id\":\"" ID "\",\"data\":{\"when\":\"now\"}}", { "data.when" } },
    { "{\"type\":\"CreateOrder\",\"order_id\":\"" ID "\"}", { "data.customer_name", "data.customer_email", "data.currency" } },
    { "{\"type\":\"CreateOrder\",\"order_id\":\"" ID "\",\"data\":null}", { "data.customer_name", "data.customer_email", "data.currency" } },
    { "{\"type\":\"CreateOrder\",\"order_id\":\"" ID "\",\"data\":{\"customer_name\":\"\",\"customer_email\":\"ab\",\"currency\":\"eur\"}}",
      { "data.customer_name", "data.customer_email", "data.currency" } },
    { "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"a b\",\"name\":\" x\",\"quantity\":0,\"unit_price_cents\":-1}}",
      { "data.sku", "data.name", "data.quantity", "data.unit_price_cents" } },
    { "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantity\":10001,\"unit_price_cents\":100000001}}",
      { "data.quantity", "data.unit_price_cents" } },
    { "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantitiy\":1,\"unit_price_cents\":1}}",
      { "data.quantity", "data.quantitiy" } },
    { "{\"type\":\"RemoveItem\",\"order_id\":\"" ID "\",\"data\":{}}", { "data.sku" } },
    { "{\"type\":\"ShipOrder\",\"order_id\":\"" ID "\",\"data\":{\"carrier\":\"\",\"tracking_number\":\"a\\nb\"}}",
      { "data.carrier", "data.tracking_number" } },
    { "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"\\t\"}}", { "data.reason" } },
    { "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"a\\u0000b\"}}", { "body" } },
    { "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"ok\"},\"\\u0000\":1}", { "body" } },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(OdProblem) problem = parse_fail (cases[i].body, -1, OD_PROBLEM_INVALID_COMMAND);
      g_autofree char *json = od_problem_to_json (problem);

      g_assert_cmpuint (problem->status, ==, 422);
      for (guint j = 0; j < G_N_ELEMENTS (cases[i].fields) && cases[i].fields[j]; j++)
        if (!has_field (problem, cases[i].fields[j]))
          g_error ("%s: no error for %s in %s", cases[i].body, cases[i].fields[j], json);
    }
}

static void
test_command_size (void)
{
  g_autofree char *big = g_malloc (OD_MAX_BODY + 2);
  g_autoptr(OdProblem) over = NULL;
  g_autoptr(OdProblem) at_limit = NULL;

  memset (big, ' ', OD_MAX_BODY + 1);
  big[0] = '{';
  big[OD_MAX_BODY - 1] = '}';
  big[OD_MAX_BODY + 1] = '\0';
  over = parse_fail (big, OD_MAX_BODY + 1, OD_PROBLEM_PAYLOAD_TOO_LARGE);
  g_assert_cmpuint (over->status, ==, 413);
  /* Exactly 64 KiB is within the limit: it is parsed (and is not a command). */
  at_limit = parse_fail (big, OD_MAX_BODY, OD_PROBLEM_INVALID_COMMAND);
}

static void
test_command_roundtrip (void)
{
  for (OdCommandType t = 0; t < OD_COMMAND_N_TYPES; t++)
    {
      g_autoptr(OdCommand) command = od_command_new (t, ID);
      g_autoptr(OdCommand) back = NULL;
      g_autoptr(OdProblem) problem = NULL;
      g_autofree char *json = NULL;
      OdCommandType parsed;

      g_assert_true (od_command_type_from_name (od_command_type_name (t), &parsed));
      g_assert_cmpint (parsed, ==, t);
      command->has_expected_version = TRUE;
      command->expected_version = 7;
      command->customer_name = g_strdup ("Zoë \"Q\" \\ O'Neil");
      command->customer_email = g_strdup ("z@example.org");
      command->currency = g_strdup ("CHF");
      command->sku = g_strdup ("SKU.1");
      command->name = g_strdup ("Tasse \xe2\x98\x95");
      command->quantity = 10000;
      command->unit_price_cents = 100000000;
      command->carrier = g_strdup ("UPS");
      command->tracking_number = g_strdup ("1Z");
      command->reason = g_strdup ("customer asked");
      command->text = g_strdup ("Rang twice \xe2\x98\x8e");
      command->amount_cents = 250;
      g_assert_null (od_command_validate (command));
      json = od_command_to_json (command);
      back = od_command_parse (json, strlen (json), &problem);
      g_assert_null (problem);
      g_assert_nonnull (back);
      g_assert_cmpint (back->type, ==, t);
      g_assert_cmpstr (back->order_id, ==, ID);
      g_assert_true (back->has_expected_version);
      g_assert_cmpint (back->expected_version, ==, 7);
      if (t == OD_COMMAND_CREATE_ORDER)
        {
          g_assert_cmpstr (back->customer_name, ==, command->customer_name);
          g_assert_cmpstr (back->customer_email, ==, command->customer_email);
          g_assert_cmpstr (back->currency, ==, command->currency);
        }
      if (t == OD_COMMAND_ADD_ITEM)
        {
          g_assert_cmpstr (back->name, ==, command->name);
          g_assert_cmpint (back->quantity, ==, 10000);
          g_assert_cmpint (back->unit_price_cents, ==, 100000000);
        }
      if (t == OD_COMMAND_ADD_ITEM || t == OD_COMMAND_REMOVE_ITEM)
        g_assert_cmpstr (back->sku, ==, command->sku);
      if (t == OD_COMMAND_SHIP_ORDER)
        {
          g_assert_cmpstr (back->carrier, ==, "UPS");
          g_assert_cmpstr (back->tracking_number, ==, "1Z");
        }
      if (t == OD_COMMAND_CANCEL_ORDER || t == OD_COMMAND_REFUND_ORDER)
        g_assert_cmpstr (back->reason, ==, "customer asked");
      if (t == OD_COMMAND_ADD_ORDER_NOTE)
        g_assert_cmpstr (back->text, ==, command->text);
      if (t == OD_COMMAND_REFUND_ORDER)
        g_assert_cmpint (back->amount_cents, ==, 250);
    }
  {
    OdCommandType t;

    g_assert_false (od_command_type_from_name ("Nope", &t));
    g_assert_false (od_command_type_from_name (NULL, &t));
  }
}

static void
test_command_validate (void)
{
  g_autoptr(OdCommand) command = od_command_new (OD_COMMAND_ADD_ITEM, "not-a-uuid");
  g_autoptr(OdProblem) problem = NULL;

  command->has_expected_version = TRUE;
  command->expected_version = -2;
  command->sku = g_strdup ("");
  command->name = g_strdup ("ok");
  command->quantity = 0;
  command->unit_price_cents = 5;
  problem = od_command_validate (command);
  g_assert_nonnull (problem);
  g_assert_cmpint (problem->code, ==, OD_PROBLEM_INVALID_COMMAND);
  g_assert_true (has_field (problem, "order_id"));
  g_assert_true (has_field (problem, "expected_version"));
  g_assert_true (has_field (problem, "data.sku"));
  g_assert_true (has_field (problem, "data.quantity"));
  g_assert_false (has_field (problem, "data.name"));
  g_assert_false (has_field (problem, "data.unit_price_cents"));
}

/* ---- the order aggregate ---- */

static void
apply_json (OdOrder    *order,
            const char *type,
            const char *data)
{
  g_autoptr(JsonNode) node = json_from_string (data, NULL);

  g_assert_nonnull (node);
  g_assert_true (od_order_apply (order, type, json_node_get_object (node), order->version + 1,
                                 order->last_position + 10, "2026-11-26T10:00:00.000Z"));
}

static void
add_line (OdOrder    *order,
          const char *sku,
          gint64      quantity,
          gint64      price)
{
  g_autofree char *data = g_strdup_printf ("{\"sku\":\"%s\",\"name\":\"Item %s\",\"quantity\":%"
                                           G_GINT64_FORMAT ",\"unit_price_cents\":%" G_GINT64_FORMAT "}",
                                           sku, sku, quantity, price);

  apply_json (order, "ItemAdded", data);
}

static OdOrder *
order_in (OdOrderStatus status,
          gboolean      with_lines)
{
  OdOrder *order = od_order_new (ID);

  if (status == OD_STATUS_NONE)
    return order;
  apply_json (order, "OrderCreated", "{\"customer_name\":\"Ada\",\"customer_email\":\"a@b\",\"currency\":\"EUR\"}");
  if (with_lines)
    {
      add_line (order, "A", 2, 150);
      add_line (order, "B", 3, 1000);
    }
  if (status == OD_STATUS_DRAFT)
    return order;
  if (status == OD_STATUS_CANCELLED)
    {
      apply_json (order, "OrderCancelled", "{\"reason\":\"r\"}");
      return order;
    }
  apply_json (order, "OrderPlaced", "{\"total_cents\":3300,\"item_count\":5}");
  if (status == OD_STATUS_PLACED)
    return order;
  apply_json (order, "OrderShipped", "{\"carrier\":\"DHL\",\"tracking_number\":\"T\"}");
  if (status == OD_STATUS_SHIPPED)
    return order;
  apply_json (order, "OrderDelivered", "{}");
  if (status == OD_STATUS_PARTIALLY_REFUNDED)
    apply_json (order, "OrderRefunded", "{\"amount_cents\":300,\"reason\":\"broken\"}");
  else if (status == OD_STATUS_REFUNDED)
    apply_json (order, "OrderRefunded", "{\"amount_cents\":3300,\"reason\":\"lost\"}");
  return order;
}

static OdCommand *
command_for (OdCommandType type)
{
  OdCommand *command = od_command_new (type, ID);

  command->customer_name = g_strdup ("Ada");
  command->customer_email = g_strdup ("a@b");
  command->currency = g_strdup ("EUR");
  command->sku = g_strdup ("A");
  command->name = g_strdup ("Item A v2");
  command->quantity = 1;
  command->unit_price_cents = 200;
  command->carrier = g_strdup ("DHL");
  command->tracking_number = g_strdup ("T-1");
  command->reason = g_strdup ("changed mind");
  command->text = g_strdup ("Customer called");
  command->amount_cents = 1;
  return command;
}

static void
test_order_status_table (void)
{
  /* Rows: none, draft without lines, draft with lines, placed, shipped,
   * delivered, cancelled.  The cell is the problem code, or -1 when the
   * command is allowed (docs/protocol.md's command table). */
  struct { OdOrderStatus status; gboolean lines; } rows[] = {
    { OD_STATUS_NONE, FALSE }, { OD_STATUS_DRAFT, FALSE }, { OD_STATUS_DRAFT, TRUE },
    { OD_STATUS_PLACED, TRUE }, { OD_STATUS_SHIPPED, TRUE }, { OD_STATUS_DELIVERED, TRUE },
    { OD_STATUS_CANCELLED, TRUE },
    { OD_STATUS_PARTIALLY_REFUNDED, TRUE }, { OD_STATUS_REFUNDED, TRUE },
  };
  const int N = OD_PROBLEM_NOT_FOUND, S = OD_PROBLEM_INVALID_STATE, E = OD_PROBLEM_ORDER_EXISTS, OK = -1;
  const int expect[9][OD_COMMAND_N_TYPES] = {
    /* Create AddItem Remove Place Ship Deliver Cancel Note Refund */
    { OK, N, N, N, N, N, N, N, N },
    { E, OK, S, S, S, S, OK, OK, S },
    { E, OK, OK, OK, S, S, OK, OK, S },
    { E, S, S, S, OK, S, OK, OK, S },
    { E, S, S, S, S, OK, S, OK, S },
    { E, S, S, S, S, S, S, OK, OK },
    { E, S, S, S, S, S, S, OK, S },
    { E, S, S, S, S, S, S, OK, OK },
    { E, S, S, S, S, S, S, OK, S },
  };
  const char *emits[OD_COMMAND_N_TYPES] = {
    "OrderCreated", "ItemAdded", "ItemRemoved", "OrderPlaced", "OrderShipped",
    "OrderDelivered", "OrderCancelled", "OrderNoteAdded", "OrderRefunded",
  };
  /* OD_STATUS_NONE: the status does not change. */
  const OdOrderStatus after[OD_COMMAND_N_TYPES] = {
    OD_STATUS_DRAFT, OD_STATUS_DRAFT, OD_STATUS_DRAFT, OD_STATUS_PLACED, OD_STATUS_SHIPPED,
    OD_STATUS_DELIVERED, OD_STATUS_CANCELLED, OD_STATUS_NONE, OD_STATUS_PARTIALLY_REFUNDED,
  };

  for (guint r = 0; r < G_N_ELEMENTS (rows); r++)
    for (OdCommandType t = 0; t < OD_COMMAND_N_TYPES; t++)
      {
        g_autoptr(OdOrder) order = order_in (rows[r].status, rows[r].lines);
        g_autoptr(OdCommand) command = command_for (t);
        g_autoptr(OdProblem) problem = NULL;
        g_autofree char *data = NULL;
        const char *type = NULL;
        gboolean ok = od_order_decide (order, command, &type, &data, &problem);

        g_test_message ("row %u, %s", r, od_command_type_name (t));
        g_assert_cmpint (od_order_allows (order, t), ==, expect[r][t] == OK
                         || (t == OD_COMMAND_REMOVE_ITEM && rows[r].status == OD_STATUS_DRAFT
                             && rows[r].lines));
        if (expect[r][t] == OK)
          {
            g_autoptr(JsonNode) node = NULL;
            gint64 version = order->version;
            OdOrderStatus before = order->status;

            g_assert_true (ok);
            g_assert_null (problem);
            g_assert_cmpstr (type, ==, emits[t]);
            node = json_from_string (data, NULL);
            g_assert_nonnull (node);
            g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
            g_assert_true (od_order_apply (order, type, json_node_get_object (node), version + 1,
                                           100, "2026-11-26T10:00:01.000Z"));
            g_assert_cmpint (order->status, ==, after[t] == OD_STATUS_NONE ? before : after[t]);
            g_assert_cmpint (order->version, ==, version + 1);
          }
        else
          {
            g_assert_false (ok);
            g_assert_nonnull (problem);
            g_assert_cmpint (problem->code, ==, expect[r][t]);
            if (expect[r][t] == OD_PROBLEM_ORDER_EXISTS)
              g_assert_cmpint (problem->current_version, ==, order->version);
            /* A console names the rule in its language when the detail
             * is the status rule's, and only then (a draft without lines
             * refuses for another reason). */
            if (expect[r][t] == OD_PROBLEM_INVALID_STATE)
              {
                const char *rule = od_order_refusal_rule (t, ID, problem->detail);

                if (od_order_status_allows (order->status, t))
                  g_assert_null (rule);
                else
                  g_assert_cmpstr (rule, ==, od_command_spec (t)->refused);
              }
          }
      }
}

/* Only the exact detail of a status refusal is recognised. */
static void
test_order_refusal_rule (void)
{
  g_autoptr(OdOrder) order = order_in (OD_STATUS_SHIPPED, TRUE);
  g_autoptr(OdCommand) cancel = command_for (OD_COMMAND_CANCEL_ORDER);
  g_autoptr(OdProblem) problem = NULL;
  g_autofree char *data = NULL;
  g_autofree char *longer = NULL;
  const char *type = NULL;
  const char *other_id = "01900000-0000-7000-8000-00000000ffff";

  g_assert_false (od_order_decide (order, cancel, &type, &data, &problem));
  g_assert_cmpstr (od_order_refusal_rule (OD_COMMAND_CANCEL_ORDER, ID, problem->detail), ==,
                   "only a draft or placed order can be cancelled.");
  /* Another order, another command, another wording, nothing. */
  g_assert_null (od_order_refusal_rule (OD_COMMAND_CANCEL_ORDER, other_id, problem->detail));
  g_assert_null (od_order_refusal_rule (OD_COMMAND_SHIP_ORDER, ID, problem->detail));
  longer = g_strconcat (problem->detail, " Really.", NULL);
  g_assert_null (od_order_refusal_rule (OD_COMMAND_CANCEL_ORDER, ID, longer));
  g_assert_null (od_order_refusal_rule (OD_COMMAND_CANCEL_ORDER, ID, problem->detail + 1));
  g_assert_null (od_order_refusal_rule (OD_COMMAND_CANCEL_ORDER, ID, NULL));
  g_assert_null (od_order_refusal_rule (OD_COMMAND_CANCEL_ORDER, NULL, problem->detail));
  g_assert_null (od_order_refusal_rule (OD_COMMAND_N_TYPES, ID, problem->detail));
}

static void
decide_expect (OdOrder      *order,
               OdCommand    *command,
               const char   *type,
               const char   *data)
{
  g_autoptr(OdProblem) problem = NULL;
  g_autofree char *event_data = NULL;
  const char *event_type = NULL;

  if (!od_order_decide (order, command, &event_type, &event_data, &problem))
    g_error ("refused: %s %s", problem->code_name, problem->detail);
  g_assert_cmpstr (event_type, ==, type);
  if (!od_test_json_equal_local (event_data, data))
    g_error ("event data %s, expected %s", event_data, data);
}

static void
test_order_data (void)
{
  g_autoptr(OdOrder) none = order_in (OD_STATUS_NONE, FALSE);
  g_autoptr(OdOrder) draft = order_in (OD_STATUS_DRAFT, TRUE);
  g_autoptr(OdOrder) placed = order_in (OD_STATUS_PLACED, TRUE);
  g_autoptr(OdCommand) create = command_for (OD_COMMAND_CREATE_ORDER);
  g_autoptr(OdCommand) add = command_for (OD_COMMAND_ADD_ITEM);
  g_autoptr(OdCommand) remove = command_for (OD_COMMAND_REMOVE_ITEM);
  g_autoptr(OdCommand) place = command_for (OD_COMMAND_PLACE_ORDER);
  g_autoptr(OdCommand) ship = command_for (OD_COMMAND_SHIP_ORDER);
  g_autoptr(OdCommand) cancel = command_for (OD_COMMAND_CANCEL_ORDER);

  decide_expect (none, create, "OrderCreated",
                 "{\"customer_name\":\"Ada\",\"customer_email\":\"a@b\",\"currency\":\"EUR\"}");
  decide_expect (draft, add, "ItemAdded",
                 "{\"sku\":\"A\",\"name\":\"Item A v2\",\"quantity\":1,\"unit_price_cents\":200}");
  decide_expect (draft, remove, "ItemRemoved", "{\"sku\":\"A\"}");
  /* A: 2 × 150, B: 3 × 1000. */
  decide_expect (draft, place, "OrderPlaced", "{\"total_cents\":3300,\"item_count\":5}");
  decide_expect (placed, ship, "OrderShipped", "{\"carrier\":\"DHL\",\"tracking_number\":\"T-1\"}");
  decide_expect (placed, cancel, "OrderCancelled", "{\"reason\":\"changed mind\"}");

  /* Text with quotes and controls is escaped into valid JSON. */
  g_free (cancel->reason);
  cancel->reason = g_strdup ("\"quoted\" \\ back");
  decide_expect (placed, cancel, "OrderCancelled", "{\"reason\":\"\\\"quoted\\\" \\\\ back\"}");
}

static void
test_order_lines (void)
{
  g_autoptr(OdOrder) order = order_in (OD_STATUS_DRAFT, TRUE);
  g_autoptr(OdCommand) add = command_for (OD_COMMAND_ADD_ITEM);
  g_autoptr(OdProblem) problem = NULL;
  g_autofree char *data = NULL;
  const char *type;
  OdLine *line;

  /* The same SKU adds up and takes the latest name and price. */
  apply_json (order, "ItemAdded", "{\"sku\":\"A\",\"name\":\"Renamed\",\"quantity\":5,\"unit_price_cents\":99}");
  line = od_order_find_line (order, "A");
  g_assert_nonnull (line);
  g_assert_cmpint (line->quantity, ==, 7);
  g_assert_cmpstr (line->name, ==, "Renamed");
  g_assert_cmpint (line->unit_price_cents, ==, 99);
  g_assert_cmpuint (order->lines->len, ==, 2);
  g_assert_cmpint (od_order_total_cents (order), ==, 7 * 99 + 3 * 1000);
  g_assert_cmpint (od_order_item_count (order), ==, 10);

  /* Up to 10,000 on a line: 7 + 9993 is fine, 7 + 9994 is refused (422). */
  add->quantity = 9993;
  g_assert_true (od_order_decide (order, add, &type, &data, &problem));
  g_clear_pointer (&data, g_free);
  add->quantity = 9994;
  g_assert_false (od_order_decide (order, add, &type, &data, &problem));
  g_assert_cmpint (problem->code, ==, OD_PROBLEM_INVALID_COMMAND);
  g_assert_cmpuint (problem->status, ==, 422);
  g_assert_true (has_field (problem, "data.quantity"));
  g_clear_pointer (&problem, od_problem_free);

  /* 200 lines: a 201st SKU is refused, an existing one still grows. */
  for (guint i = order->lines->len; i < 200; i++)
    {
      g_autofree char *sku = g_strdup_printf ("L%u", i);

      add_line (order, sku, 1, 1);
    }
  g_assert_cmpuint (order->lines->len, ==, 200);
  g_free (add->sku);
  add->sku = g_strdup ("NEW");
  add->quantity = 1;
  g_assert_false (od_order_decide (order, add, &type, &data, &problem));
  g_assert_cmpint (problem->code, ==, OD_PROBLEM_INVALID_STATE);
  g_clear_pointer (&problem, od_problem_free);
  g_free (add->sku);
  add->sku = g_strdup ("L150");
  g_assert_true (od_order_decide (order, add, &type, &data, &problem));
  g_clear_pointer (&data, g_free);

  /* RemoveItem of a SKU that is not a line. */
  {
    g_autoptr(OdCommand) remove = command_for (OD_COMMAND_REMOVE_ITEM);

    g_free (remove->sku);
    remove->sku = g_strdup ("NOPE");
    g_assert_false (od_order_decide (order, remove, &type, &data, &problem));
    g_assert_cmpint (problem->code, ==, OD_PROBLEM_INVALID_STATE);
    g_clear_pointer (&problem, od_problem_free);
  }

  /* Removing a line, then adding the SKU again starts from zero. */
  apply_json (order, "ItemRemoved", "{\"sku\":\"A\"}");
  g_assert_null (od_order_find_line (order, "A"));
  g_assert_cmpuint (order->lines->len, ==, 199);
  add_line (order, "A", 1, 5);
  g_assert_cmpint (od_order_find_line (order, "A")->quantity, ==, 1);
}

static void
test_order_versions (void)
{
  g_autoptr(OdOrder) order = order_in (OD_STATUS_DRAFT, TRUE);   /* version 3 */
  g_autoptr(OdOrder) none = order_in (OD_STATUS_NONE, FALSE);
  g_autoptr(OdCommand) add = command_for (OD_COMMAND_ADD_ITEM);
  g_autoptr(OdCommand) create = command_for (OD_COMMAND_CREATE_ORDER);
  g_autoptr(OdProblem) problem = NULL;
  g_autofree char *data = NULL;
  g_autoptr(OdOrder) copy = NULL;
  const char *type;

  g_assert_cmpint (order->version, ==, 3);
  add->has_expected_version = TRUE;
  add->expected_version = 2;
  g_assert_false (od_order_decide (order, add, &type, &data, &problem));
  g_assert_cmpint (problem->code, ==, OD_PROBLEM_VERSION_CONFLICT);
  g_assert_cmpint (problem->current_version, ==, 3);
  g_clear_pointer (&problem, od_problem_free);
  add->expected_version = 3;
  g_assert_true (od_order_decide (order, add, &type, &data, &problem));
  g_clear_pointer (&data, g_free);

  /* CreateOrder's expected_version is compared with 0. */
  create->has_expected_version = TRUE;
  create->expected_version = 0;
  g_assert_true (od_order_decide (none, create, &type, &data, &problem));
  g_clear_pointer (&data, g_free);
  create->expected_version = 1;
  g_assert_false (od_order_decide (none, create, &type, &data, &problem));
  g_assert_cmpint (problem->code, ==, OD_PROBLEM_VERSION_CONFLICT);
  g_assert_cmpint (problem->current_version, ==, 0);
  g_clear_pointer (&problem, od_problem_free);

  /* Unknown event types are kept aligned: version and position advance. */
  g_assert_false (od_order_apply (order, "SomethingNew", NULL, 4, 77, "2026-11-26T10:00:02.000Z"));
  g_assert_cmpint (order->version, ==, 4);
  g_assert_cmpint (order->last_position, ==, 77);
  g_assert_cmpint (order->status, ==, OD_STATUS_DRAFT);
  g_assert_cmpstr (order->updated_at, ==, "2026-11-26T10:00:02.000Z");
  g_assert_cmpstr (order->created_at, ==, "2026-11-26T10:00:00.000Z");

  /* A copy is deep. */
  copy = od_order_copy (order);
  g_assert_cmpuint (copy->lines->len, ==, order->lines->len);
  od_order_find_line (copy, "A")->quantity = 999;
  g_assert_cmpint (od_order_find_line (order, "A")->quantity, ==, 2);
  g_assert_cmpstr (copy->customer_name, ==, "Ada");
  g_assert_true (copy->customer_name != order->customer_name);
}

static void
test_order_status_names (void)
{
  for (OdOrderStatus s = OD_STATUS_DRAFT; s < OD_STATUS_N; s++)
    {
      OdOrderStatus back;

      g_assert_true (od_order_status_from_name (od_order_status_name (s), &back));
      g_assert_cmpint (back, ==, s);
    }
  {
    OdOrderStatus back;

    g_assert_false (od_order_status_from_name ("none", &back));
    g_assert_false (od_order_status_from_name ("Draft", &back));
    g_assert_false (od_order_status_from_name (NULL, &back));
  }
}

/* Commands are a boxed type whose copy is deep: the copy outlives and
 * differs in memory from the original, field by field. */
static void
test_command_copy (void)
{
  g_autoptr(OdCommand) command = command_for (OD_COMMAND_REFUND_ORDER);
  g_autoptr(OdCommand) copy = NULL;
  g_autofree char *json = NULL;
  g_autofree char *copy_json = NULL;

  command->has_expected_version = TRUE;
  command->expected_version = 4;
  copy = g_boxed_copy (OD_TYPE_COMMAND, command);
  json = od_command_to_json (command);
  g_clear_pointer (&command->reason, g_free);
  command->reason = g_strdup ("other");
  copy_json = od_command_to_json (copy);
  g_assert_cmpstr (copy_json, ==, json);
  g_assert_true (copy->text != command->text);
  g_assert_cmpstr (copy->text, ==, "Customer called");
  g_assert_cmpstr (copy->reason, ==, "changed mind");
  g_assert_cmpint (copy->amount_cents, ==, 1);
  g_assert_true (G_TYPE_IS_BOXED (OD_TYPE_COMMAND));
}

/* The command table: every field has a label and a rule, every
 * command an event; the event-type enum round-trips its names. */
static void
test_command_table (void)
{
  for (OdCommandType t = 0; t < OD_COMMAND_N_TYPES; t++)
    {
      const OdCommandSpec *spec = od_command_spec (t);

      g_assert_cmpint (spec->type, ==, t);
      g_assert_cmpint (spec->event, !=, OD_EVENT_UNKNOWN);
      g_assert_nonnull (spec->title);
      g_assert_nonnull (spec->send_label);
      for (const OdFieldSpec *f = spec->fields; f->name; f++)
        {
          g_assert_nonnull (f->label);
          g_assert_true (f->kind == OD_FIELD_TEXT ? f->check_text != NULL : f->check_int != NULL);
          g_assert_true (od_command_field (t, f->name) == f);
        }
    }
  for (OdEventType e = 1; e < OD_EVENT_N; e++)
    g_assert_cmpint (od_event_type_from_name (od_event_type_name (e)), ==, e);
  g_assert_cmpint (od_event_type_from_name ("OrderTeleported"), ==, OD_EVENT_UNKNOWN);
  g_assert_cmpint (od_event_type_from_name (NULL), ==, OD_EVENT_UNKNOWN);
  g_assert_null (od_check_note_text ("a"));
  g_assert_nonnull (od_check_note_text (""));
  {
    g_autofree char *long_note = g_strnfill (OD_MAX_NOTE, 'n');
    g_autofree char *too_long = g_strnfill (OD_MAX_NOTE + 1, 'n');

    g_assert_null (od_check_note_text (long_note));
    g_assert_cmpstr (od_check_note_text (too_long), ==, "must be at most 2000 characters");
  }
  g_assert_nonnull (od_check_refund_amount (0));
  g_assert_null (od_check_refund_amount (1));
}

/* Refunds add up to the total and no further; notes count and leave the
 * status alone. */
static void
test_order_refunds (void)
{
  g_autoptr(OdOrder) order = order_in (OD_STATUS_DELIVERED, TRUE);
  g_autoptr(OdCommand) refund = command_for (OD_COMMAND_REFUND_ORDER);
  g_autoptr(OdCommand) note = command_for (OD_COMMAND_ADD_ORDER_NOTE);
  g_autoptr(OdProblem) problem = NULL;
  g_autofree char *data = NULL;
  const char *type = NULL;

  g_assert_cmpint (od_order_total_cents (order), ==, 3300);
  g_assert_cmpint (od_order_refundable_cents (order), ==, 3300);
  apply_json (order, "OrderNoteAdded", "{\"text\":\"Customer called\"}");
  g_assert_cmpint (order->status, ==, OD_STATUS_DELIVERED);
  g_assert_cmpint (order->note_count, ==, 1);
  apply_json (order, "OrderRefunded", "{\"amount_cents\":1000,\"reason\":\"dent\"}");
  g_assert_cmpint (order->status, ==, OD_STATUS_PARTIALLY_REFUNDED);
  g_assert_cmpint (order->refunded_cents, ==, 1000);
  g_assert_cmpint (od_order_refundable_cents (order), ==, 2300);

  refund->amount_cents = 2301;
  g_assert_false (od_order_decide (order, refund, &type, &data, &problem));
  g_assert_cmpint (problem->code, ==, OD_PROBLEM_REFUND_EXCEEDS_TOTAL);
  g_assert_cmpuint (problem->status, ==, 422);
  g_assert_cmpint (problem->refundable_cents, ==, 2300);
  {
    g_autofree char *json = od_problem_to_json (problem);
    g_autoptr(OdProblem) back = od_problem_parse (422, json, strlen (json));

    g_assert_cmpint (back->code, ==, OD_PROBLEM_REFUND_EXCEEDS_TOTAL);
    g_assert_cmpint (back->refundable_cents, ==, 2300);
  }
  g_clear_pointer (&problem, od_problem_free);

  refund->amount_cents = 2300;
  g_assert_true (od_order_decide (order, refund, &type, &data, &problem));
  g_assert_cmpstr (type, ==, "OrderRefunded");
  g_assert_cmpstr (data, ==, "{\"amount_cents\":2300,\"reason\":\"changed mind\"}");
  apply_json (order, type, data);
  g_assert_cmpint (order->status, ==, OD_STATUS_REFUNDED);
  g_assert_cmpint (order->refunded_cents, ==, 3300);
  g_assert_false (od_order_allows (order, OD_COMMAND_REFUND_ORDER));
  g_assert_true (od_order_allows (order, OD_COMMAND_ADD_ORDER_NOTE));

  g_clear_pointer (&data, g_free);
  g_assert_true (od_order_decide (order, note, &type, &data, &problem));
  g_assert_cmpstr (type, ==, "OrderNoteAdded");
  g_assert_cmpstr (data, ==, "{\"text\":\"Customer called\"}");
  apply_json (order, type, data);
  g_assert_cmpint (order->note_count, ==, 2);
  g_assert_cmpint (order->status, ==, OD_STATUS_REFUNDED);

  /* A hostile amount is clamped, never overflowing. */
  apply_json (order, "OrderRefunded", "{\"amount_cents\":9223372036854775807}");
  g_assert_cmpint (order->refunded_cents, <=, OD_MAX_REFUND_CENTS);
}

/* ---- problems ---- */

static void
test_problem_table (void)
{
  /* docs/protocol.md's error table. */
  struct { OdProblemCode code; const char *name; guint status; } table[] = {
    { OD_PROBLEM_MALFORMED, "malformed", 400 },
    { OD_PROBLEM_UNAUTHORIZED, "unauthorized", 401 },
    { OD_PROBLEM_FORBIDDEN, "forbidden", 403 },
    { OD_PROBLEM_NOT_FOUND, "not_found", 404 },
    { OD_PROBLEM_METHOD_NOT_ALLOWED, "method_not_allowed", 405 },
    { OD_PROBLEM_REQUEST_TIMEOUT, "request_timeout", 408 },
    { OD_PROBLEM_VERSION_CONFLICT, "version_conflict", 409 },
    { OD_PROBLEM_INVALID_STATE, "invalid_state", 409 },
    { OD_PROBLEM_ORDER_EXISTS, "order_exists", 409 },
    { OD_PROBLEM_IDEMPOTENCY_KEY_MISSING, "idempotency_key_missing", 400 },
    { OD_PROBLEM_IDEMPOTENCY_IN_FLIGHT, "idempotency_in_flight", 409 },
    { OD_PROBLEM_IDEMPOTENCY_KEY_REUSED, "idempotency_key_reused", 422 },
    { OD_PROBLEM_INVALID_COMMAND, "invalid_command", 422 },
    { OD_PROBLEM_PAYLOAD_TOO_LARGE, "payload_too_large", 413 },
    { OD_PROBLEM_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415 },
    { OD_PROBLEM_HEADERS_TOO_LARGE, "headers_too_large", 431 },
    { OD_PROBLEM_RATE_LIMITED, "rate_limited", 429 },
    { OD_PROBLEM_INTERNAL, "internal", 500 },
    { OD_PROBLEM_UNAVAILABLE, "unavailable", 503 },
    { OD_PROBLEM_NOT_READY, "not_ready", 503 },
    { OD_PROBLEM_REFUND_EXCEEDS_TOTAL, "refund_exceeds_total", 422 },
  };

  G_STATIC_ASSERT (G_N_ELEMENTS (table) == OD_PROBLEM_UNKNOWN);
  for (guint i = 0; i < G_N_ELEMENTS (table); i++)
    {
      g_assert_cmpstr (od_problem_code_name (table[i].code), ==, table[i].name);
      g_assert_cmpuint (od_problem_code_status (table[i].code), ==, table[i].status);
      g_assert_cmpint (od_problem_code_from_name (table[i].name), ==, table[i].code);
    }
  g_assert_cmpint (od_problem_code_from_name ("teapot"), ==, OD_PROBLEM_UNKNOWN);
  g_assert_cmpint (od_problem_code_from_name (NULL), ==, OD_PROBLEM_UNKNOWN);
}

static void
test_problem_roundtrip (void)
{
  for (OdProblemCode code = 0; code < OD_PROBLEM_UNKNOWN; code++)
    {
      g_autoptr(OdProblem) problem = od_problem_new (code, "Detail with \"quotes\", \\ and \xc3\xa9 %d", 42);
      g_autoptr(OdProblem) back = NULL;
      g_autoptr(JsonNode) node = NULL;
      g_autofree char *json = NULL;
      g_autofree char *type = NULL;
      JsonObject *object;

      if (code == OD_PROBLEM_VERSION_CONFLICT || code == OD_PROBLEM_ORDER_EXISTS)
        problem->current_version = code == OD_PROBLEM_ORDER_EXISTS ? 0 : 17;
      if (code == OD_PROBLEM_RATE_LIMITED)
        problem->retry_after = 3;
      if (code == OD_PROBLEM_INVALID_COMMAND)
        {
          od_problem_add_error (problem, "data.sku", "must not be empty");
          od_problem_add_error (problem, "data.name", "must be at most 200 characters");
        }
      json = od_problem_to_json (problem);
      node = json_from_string (json, NULL);
      g_assert_nonnull (node);
      object = json_node_get_object (node);
      type = g_strconcat ("urn:orderdesk:problem:", od_problem_code_name (code), NULL);
      g_assert_cmpstr (json_object_get_string_member (object, "type"), ==, type);
      g_assert_cmpstr (json_object_get_string_member (object, "code"), ==, od_problem_code_name (code));
      g_assert_cmpint (json_object_get_int_member (object, "status"), ==, od_problem_code_status (code));
      g_assert_cmpstr (json_object_get_string_member (object, "detail"), ==,
                       "Detail with \"quotes\", \\ and \xc3\xa9 42");
      g_assert_nonnull (json_object_get_string_member (object, "title"));
      g_assert_cmpint (json_object_has_member (object, "current_version"), ==, problem->current_version >= 0);
      g_assert_cmpint (json_object_has_member (object, "retry_after"), ==, problem->retry_after > 0);
      g_assert_cmpint (json_object_has_member (object, "errors"), ==, problem->errors != NULL);

      back = od_problem_parse (problem->status, json, strlen (json));
      g_assert_cmpint (back->code, ==, code);
      g_assert_cmpstr (back->code_name, ==, problem->code_name);
      g_assert_cmpuint (back->status, ==, problem->status);
      g_assert_cmpstr (back->title, ==, problem->title);
      g_assert_cmpstr (back->detail, ==, problem->detail);
      g_assert_cmpint (back->current_version, ==, problem->current_version);
      g_assert_cmpuint (back->retry_after, ==, problem->retry_after);
      g_assert_cmpuint (back->errors ? back->errors->len : 0, ==,
                        problem->errors ? problem->errors->len : 0);
      for (guint i = 0; problem->errors && i < problem->errors->len; i++)
        {
          OdFieldError *a = g_ptr_array_index (problem->errors, i);
          OdFieldError *b = g_ptr_array_index (back->errors, i);

          g_assert_cmpstr (a->field, ==, b->field);
          g_assert_cmpstr (a->message, ==, b->message);
        }
    }
}

static void
test_problem_parse_tolerant (void)
{
  const char *odd = "{\"code\":\"teapot\",\"title\":\"I'm a teapot\",\"status\":418,"
                    "\"current_version\":\"x\",\"retry_after\":-5,\"errors\":[1,{\"field\":2}]}";
  g_autoptr(OdProblem) unknown = od_problem_parse (418, odd, strlen (odd));
  g_autoptr(OdProblem) html = od_problem_parse (502, "<html>bad gateway</html>", 24);
  g_autoptr(OdProblem) empty = od_problem_parse (500, NULL, 0);

  g_assert_cmpint (unknown->code, ==, OD_PROBLEM_UNKNOWN);
  g_assert_cmpstr (unknown->code_name, ==, "teapot");
  g_assert_cmpstr (unknown->detail, ==, "I'm a teapot");
  g_assert_cmpint (unknown->current_version, ==, -1);
  g_assert_cmpuint (unknown->retry_after, ==, 0);
  g_assert_cmpuint (unknown->errors->len, ==, 1);
  g_assert_cmpstr (((OdFieldError *) g_ptr_array_index (unknown->errors, 0))->field, ==, "");

  g_assert_cmpint (html->code, ==, OD_PROBLEM_UNKNOWN);
  g_assert_cmpuint (html->status, ==, 502);
  g_assert_nonnull (strstr (html->detail, "502"));
  g_assert_cmpint (empty->code, ==, OD_PROBLEM_UNKNOWN);
  g_assert_nonnull (empty->title);
  g_assert_nonnull (empty->detail);
}

/* ---- events ---- */

static void
test_event_roundtrip (void)
{
  g_autoptr(OdEvent) event = od_event_new ();
  g_autoptr(OdEvent) back = NULL;
  g_autoptr(OdEvent) from_sse = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GString) json = g_string_new (NULL);
  g_autoptr(GString) sse = g_string_new (NULL);
  g_autofree char *expected_head = NULL;
  const char *data_line;
  JsonObject *data;

  event->position = 1234;
  event->prev = 1200;
  g_strlcpy (event->order_id, ID, sizeof event->order_id);
  event->version = 3;
  event->type = g_strdup ("ItemAdded");
  event->recorded_at = g_strdup ("2026-11-26T10:00:00.123Z");
  event->actor = g_strdup ("al\"ice");
  event->data = g_strdup ("{\"sku\":\"S\",\"name\":\"Caf\xc3\xa9 \\\"x\\\"\\n\",\"quantity\":2,\"unit_price_cents\":1299}");

  od_event_append_json (json, event);
  g_assert_null (strchr (json->str, '\n'));
  back = od_event_parse (json->str, json->len, &error);
  g_assert_no_error (error);
  g_assert_cmpint (back->position, ==, 1234);
  g_assert_cmpint (back->prev, ==, 1200);
  g_assert_cmpstr (back->order_id, ==, ID);
  g_assert_cmpint (back->version, ==, 3);
  g_assert_cmpstr (back->type, ==, "ItemAdded");
  g_assert_cmpstr (back->recorded_at, ==, "2026-11-26T10:00:00.123Z");
  g_assert_cmpstr (back->actor, ==, "al\"ice");
  g_assert_true (od_test_json_equal_local (back->data, event->data));
  data = od_event_get_data (back);
  g_assert_cmpstr (json_object_get_string_member (data, "name"), ==, "Caf\xc3\xa9 \"x\"\n");
  /* Lazily parsed data for an event read from a store. */
  g_assert_cmpint (json_object_get_int_member (od_event_get_data (event), "quantity"), ==, 2);

  od_event_append_sse (sse, event);
  expected_head = g_strdup ("id: 1234\nevent: ItemAdded\ndata: ");
  g_assert_true (g_str_has_prefix (sse->str, expected_head));
  g_assert_true (g_str_has_suffix (sse->str, "}\n\n"));
  data_line = sse->str + strlen (expected_head);
  g_assert_null (memchr (data_line, '\n', sse->len - strlen (expected_head) - 2));
  from_sse = od_event_parse (data_line, sse->len - strlen (expected_head) - 2, &error);
  g_assert_no_error (error);
  g_assert_cmpint (from_sse->position, ==, 1234);
}

static void
test_event_invalid (void)
{
  const char *bad[] = {
    "{}",
    "[]",
    "{\"position\":0,\"prev\":0,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":5,\"prev\":5,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":5,\"prev\":6,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":5,\"prev\":-1,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":5,\"prev\":4,\"order_id\":\"" ID "\",\"version\":0,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":\"5\",\"prev\":4,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":5,\"prev\":4,\"order_id\":\"nope\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":5,\"prev\":4,\"order_id\":\"" ID "\",\"version\":1,\"type\":7,\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":5,\"prev\":4,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"actor\":\"a\",\"data\":{}}",
    "{\"position\":5,\"prev\":4,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"data\":{}}",
    "{\"position\":5,\"prev\":4,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\"}",
    "{\"position\":5,\"prev\":4,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"T\",\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":[]}",
  };
  const char *good = "{\"position\":5,\"prev\":0,\"order_id\":\"" ID "\",\"version\":1,\"type\":\"FutureType\","
                     "\"recorded_at\":\"r\",\"actor\":\"a\",\"data\":{\"new\":[1,2]},\"extra\":true}";
  g_autoptr(OdEvent) event = NULL;
  g_autoptr(GError) error = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) e = NULL;
      g_autoptr(OdEvent) ev = od_event_parse (bad[i], -1, &e);

      g_autofree char *printable = g_strescape (bad[i], NULL);

      g_test_message ("%s", printable);
      g_assert_null (ev);
      g_assert_nonnull (e);
    }
  /* Unknown types and members are kept, not refused. */
  event = od_event_parse (good, -1, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (event->type, ==, "FutureType");
  g_assert_true (od_test_json_equal_local (event->data, "{\"new\":[1,2]}"));
}

/* ---- JSON helpers ---- */

static void
test_json_string (void)
{
  g_autoptr(GString) out = g_string_new (NULL);
  g_autoptr(JsonNode) node = NULL;
  const char *input = "a\"b\\c\n\r\t\b\f\x01\x1f\x7f \xc3\xa9/";

  od_json_append_string (out, input);
  g_assert_cmpstr (out->str, ==, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f \xc3\xa9/\"");
  node = json_from_string (out->str, NULL);
  g_assert_nonnull (node);
  g_assert_cmpstr (json_node_get_string (node), ==, input);

  g_string_truncate (out, 0);
  od_json_append_member (out, "k", "v");
  g_assert_cmpstr (out->str, ==, "\"k\":\"v\"");
}

static void
test_json_parse_object (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ok = od_json_parse_object ("{\"a\":[1,{\"b\":null}]}", -1, &error);
  const char *bad[] = { "", "[]", "1", "null", "{", "{\"a\":1} 2", "{\"a\":\"\xff\"}" };
  g_autoptr(JsonNode) num = json_from_string ("5", NULL);
  g_autoptr(JsonNode) dbl = json_from_string ("5.0", NULL);
  g_autoptr(JsonNode) str = json_from_string ("\"5\"", NULL);
  g_autoptr(JsonNode) obj = json_from_string ("{}", NULL);

  g_assert_no_error (error);
  g_assert_nonnull (ok);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) e = NULL;
      g_autoptr(JsonNode) n = od_json_parse_object (bad[i], -1, &e);

      g_assert_null (n);
      g_assert_nonnull (e);
    }
  g_assert_true (od_json_is_integer (num));
  g_assert_false (od_json_is_integer (dbl));
  g_assert_false (od_json_is_integer (str));
  g_assert_false (od_json_is_integer (NULL));
  g_assert_true (od_json_is_string (str));
  g_assert_false (od_json_is_string (num));
  g_assert_true (od_json_is_object (obj));
  g_assert_false (od_json_is_object (str));
}

static void
test_timestamps (void)
{
  g_autofree char *epoch = od_timestamp_format (0);
  g_autofree char *t = od_timestamp_format (G_GINT64_CONSTANT (1795687200123456));
  g_autofree char *now = od_timestamp_now ();
  GRegex *re = g_regex_new ("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$", 0, 0, NULL);
  gint64 usec = 0;

  g_assert_cmpstr (epoch, ==, "1970-01-01T00:00:00.000Z");
  g_assert_cmpstr (t, ==, "2026-11-26T10:00:00.123Z");
  g_assert_true (g_regex_match (re, now, 0, NULL));
  g_assert_true (od_timestamp_parse (t, &usec));
  g_assert_cmpint (usec, ==, G_GINT64_CONSTANT (1795687200123000));
  g_assert_true (od_timestamp_parse (now, &usec));
  g_assert_cmpint (ABS (usec - g_get_real_time ()), <, 5 * G_USEC_PER_SEC);
  g_assert_false (od_timestamp_parse ("yesterday", &usec));
  g_assert_false (od_timestamp_parse (NULL, &usec));
  g_regex_unref (re);
}

/* ---- The fast command parser against the strict one ---- */

static gboolean
commands_equal (const OdCommand *a,
                const OdCommand *b)
{
  return a->type == b->type && strcmp (a->order_id, b->order_id) == 0
         && a->has_expected_version == b->has_expected_version
         && (!a->has_expected_version || a->expected_version == b->expected_version)
         && g_strcmp0 (a->customer_name, b->customer_name) == 0
         && g_strcmp0 (a->customer_email, b->customer_email) == 0
         && g_strcmp0 (a->currency, b->currency) == 0 && g_strcmp0 (a->sku, b->sku) == 0
         && g_strcmp0 (a->name, b->name) == 0 && a->quantity == b->quantity
         && a->unit_price_cents == b->unit_price_cents
         && g_strcmp0 (a->carrier, b->carrier) == 0
         && g_strcmp0 (a->tracking_number, b->tracking_number) == 0
         && g_strcmp0 (a->reason, b->reason) == 0 && g_strcmp0 (a->text, b->text) == 0
         && a->amount_cents == b->amount_cents;
}

typedef struct
{
  GRand   *rand;
  GString *out;
  gboolean clean; /* a valid command in the flat shape: fast must take it */
} Gen;

static void
gen_space (Gen *g)
{
  static const char *const spaces[] = { "", "", "", " ", "\n", "\t", "\r\n  " };

  g_string_append (g->out, spaces[g_rand_int_range (g->rand, 0, G_N_ELEMENTS (spaces))]);
}

/* TEXT as a JSON string: plain where JSON allows it, escaped where it
 * must be, and now and then escaped where it need not be. */
static void
gen_string (Gen        *g,
            const char *text)
{
  gboolean escape_some = g_rand_int_range (g->rand, 0, 10) == 0;

  g_string_append_c (g->out, '"');
  for (const char *p = text; *p; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      if (c == '"' || c == '\\' || c < 0x20 || (escape_some && g_rand_boolean (g->rand)))
        {
          g_string_append_printf (g->out, "\\u%04x", c < 0x10000 ? c : 0xfffd);
          g->clean = FALSE;
          if (c >= 0x10000)
            return; /* a different string: close below as usual */
        }
      else
        g_string_append_len (g->out, p, g_utf8_next_char (p) - p);
    }
  g_string_append_c (g->out, '"');
}

/* Mostly a value that keeps the field's rule, else anything. */
static char *
gen_text (Gen               *g,
          const OdFieldSpec *f)
{
  static const char *const pieces[] = {
    "a", "Z", "0", "-", ".", "_", "@", " ", "é", "ß", "\xe2\x98\x95", "\xf0\x9f\x98\x80",
    "\"", "\\", "\x01", "\x7f", "\t", "\xc2\xa0",
  };
  static const char *const pool[] = {
    "", " Ada", "ada@example.com", "EUR", "CHF", "eur", "MUG-BLUE", "MUG BLUE", "SKU_1.2",
    "UPS", "1Z999", "Zoë", "customer asked",
  };
  static const char sku_chars[] = "ABCXYZabc0123456789._-";
  GString *t = g_string_new (NULL);
  guint n;

  if (g_rand_int_range (g->rand, 0, 4) != 0)
    {
      n = g_rand_int_range (g->rand, 1, 40);
      if (strcmp (f->name, "currency") == 0)
        for (guint i = 0; i < 3; i++)
          g_string_append_c (t, 'A' + g_rand_int_range (g->rand, 0, 26));
      else if (strcmp (f->name, "sku") == 0)
        for (guint i = 0; i < n; i++)
          g_string_append_c (t, sku_chars[g_rand_int_range (g->rand, 0, sizeof sku_chars - 1)]);
      else if (strcmp (f->name, "customer_email") == 0)
        g_string_append_printf (t, "a%u@example.org", g_rand_int (g->rand));
      else
        {
          g_string_append (t, "Ada");
          for (guint i = 0; i < n; i++)
            g_string_append (t, pieces[g_rand_int_range (g->rand, 0, 12)]);
        }
      return g_string_free (t, FALSE);
    }
  if (g_rand_int_range (g->rand, 0, 3) == 0)
    {
      g_string_free (t, TRUE);
      return g_strdup (pool[g_rand_int_range (g->rand, 0, G_N_ELEMENTS (pool))]);
    }
  n = g_rand_int_range (g->rand, 0, 5) == 0 ? g_rand_int_range (g->rand, 190, 2010)
                                            : g_rand_int_range (g->rand, 1, 30);
  for (guint i = 0; i < n; i++)
    {
      /* Mostly letters: a rare piece breaks a rule. */
      guint k = g_rand_int_range (g->rand, 0, 40);

      g_string_append (t, k < (guint) G_N_ELEMENTS (pieces) ? pieces[k] : "k");
    }
  return g_string_free (t, FALSE);
}

static void
gen_integer (Gen   *g,
             gint64 max)
{
  switch (g_rand_int_range (g->rand, 0, 24))
    {
    case 0:
      g_string_append (g->out, "-1");
      break;
    case 1:
      g_string_append (g->out, "-0"); /* valid, but not in the flat shape */
      g->clean = FALSE;
      break;
    case 2:
      g_string_append (g->out, "01");
      g->clean = FALSE;
      break;
    case 3:
      g_string_append (g->out, "1.0");
      g->clean = FALSE;
      break;
    case 4:
      g_string_append (g->out, "99999999999999999999");
      g->clean = FALSE;
      break;
    case 5:
      g_string_append (g->out, "999999999999999999");
      break;
    case 6:
      g_string_append (g->out, "null");
      g->clean = FALSE;
      break;
    case 7:
      g_string_append (g->out, "\"1\"");
      g->clean = FALSE;
      break;
    default:
      g_string_append_printf (g->out, "%" G_GINT64_FORMAT,
                              (gint64) g_rand_double_range (g->rand, 0, max + 2));
    }
}

/* One body for POST /v1/commands, followed by 'C' when it is in the flat
 * shape with no irregularity the generator chose (whether its texts and
 * numbers keep their rules, the strict parser judges), else by 'D'. */
static char *
gen_command (GRand *rand)
{
  Gen g = { rand, g_string_new (NULL), TRUE };
  OdCommandType type = g_rand_int_range (rand, 0, OD_COMMAND_N_TYPES);
  const OdCommandSpec *spec = od_command_spec (type);
  guint order[4] = { 0, 1, 2, 3 };
  gboolean first = TRUE;

  /* Type first as our clients write it, but not always. */
  for (guint i = 1; i < 4; i++)
    if (g_rand_int_range (rand, 0, 6) == 0)
      {
        guint j = g_rand_int_range (rand, 0, 4), t = order[i];

        order[i] = order[j];
        order[j] = t;
      }
  gen_space (&g);
  g_string_append_c (g.out, '{');
  for (guint m = 0; m < 4; m++)
    {
      gboolean twice = g_rand_int_range (rand, 0, 40) == 0;

      if ((order[m] == 2 && g_rand_boolean (rand))
          || (order[m] != 2 && g_rand_int_range (rand, 0, 40) == 0))
        continue; /* expected_version is optional; the others are not */
      for (guint rep = 0; rep < (twice ? 2u : 1u); rep++)
        {
          if (!first)
            g_string_append_c (g.out, ',');
          first = FALSE;
          gen_space (&g);
          switch (order[m])
            {
            case 0:
              g_string_append (g.out, "\"type\":");
              gen_space (&g);
              g_string_append_printf (g.out, "\"%s\"",
                                      g_rand_int_range (rand, 0, 30) == 0 ? "Ship"
                                                                          : spec->name);
              break;
            case 1:
              g_string_append (g.out, "\"order_id\":");
              gen_space (&g);
              g_string_append (g.out, g_rand_int_range (rand, 0, 30) == 0
                                        ? "\"0193A1C2-7F00-7ABC-8DEF-0123456789AB\""
                                        : "\"0193a1c2-7f00-7abc-8def-0123456789ab\"");
              break;
            case 2:
              g_string_append (g.out, "\"expected_version\":");
              gen_space (&g);
              gen_integer (&g, 1000);
              break;
            case 3:
              {
                /* Now and then the data of another type. */
                const OdFieldSpec *fields = spec->fields;
                gboolean first_field = TRUE;

                if (g_rand_int_range (rand, 0, 15) == 0)
                  {
                    OdCommandType other = g_rand_int_range (rand, 0, OD_COMMAND_N_TYPES);

                    fields = od_command_spec (other)->fields;
                    g.clean = g.clean && fields == spec->fields;
                  }
                g_string_append (g.out, "\"data\":");
                gen_space (&g);
                g_string_append_c (g.out, '{');
                for (const OdFieldSpec *f = fields; f->name; f++)
                  {
                    if (g_rand_int_range (rand, 0, 60) == 0)
                      continue;
                    if (!first_field)
                      g_string_append_c (g.out, ',');
                    first_field = FALSE;
                    /* A member twice. */
                    if (g_rand_int_range (rand, 0, 60) == 0)
                      {
                        g_string_append_printf (g.out, "\"%s\":%s,", f->name,
                                                f->kind == OD_FIELD_TEXT ? "\"Ada\"" : "1");
                        g.clean = FALSE;
                      }
                    gen_space (&g);
                    g_string_append_printf (g.out, "\"%s\":", f->name);
                    gen_space (&g);
                    if (f->kind == OD_FIELD_TEXT)
                      {
                        g_autofree char *text = gen_text (&g, f);

                        gen_string (&g, text);
                      }
                    else
                      gen_integer (&g, f->kind == OD_FIELD_MONEY ? 100000 : 10001);
                    gen_space (&g);
                  }
                if (g_rand_int_range (rand, 0, 40) == 0)
                  {
                    g_string_append (g.out, first_field ? "\"extra\":1" : ",\"extra\":1");
                    g.clean = FALSE;
                  }
                g_string_append_c (g.out, '}');
                break;
              }
            }
          gen_space (&g);
        }
      if (twice)
        g.clean = FALSE;
    }
  if (order[0] != 0)
    g.clean = FALSE;
  g_string_append_c (g.out, '}');
  gen_space (&g);

  /* Now and then a byte lost, added or changed. */
  if (g_rand_int_range (rand, 0, 5) == 0)
    {
      static const char bytes[] = "{}[]\",:\\ 0a-\xc3\x80";
      guint at = g_rand_int_range (rand, 0, g.out->len);

      switch (g_rand_int_range (rand, 0, 4))
        {
        case 0:
          g_string_erase (g.out, at, 1);
          break;
        case 1:
          g_string_insert_c (g.out, at, bytes[g_rand_int_range (rand, 0, sizeof bytes - 1)]);
          break;
        case 2:
          g.out->str[at] = bytes[g_rand_int_range (rand, 0, sizeof bytes - 1)];
          break;
        default:
          g_string_truncate (g.out, at);
        }
      g.clean = FALSE;
    }
  /* The flag rides on the string's first byte past its end. */
  g_string_append_c (g.out, g.clean ? 'C' : 'D');
  return g_string_free (g.out, FALSE);
}

/* od_command_parse_fast () may decline anything, but a command it returns
 * is the one the strict path makes of the same bytes; it takes every
 * valid command in the flat shape; and od_command_parse () answers as the
 * strict path does. */
static void
test_command_fast (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  guint n = g_test_slow () ? 1000000 : 100000;
  guint n_fast = 0, n_strict = 0, n_clean = 0;

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *body = gen_command (rand);
      gsize len = strlen (body) - 1;
      gboolean clean = body[len] == 'C';
      g_autoptr(OdCommand) fast = NULL;
      g_autoptr(OdCommand) strict = NULL;
      g_autoptr(OdCommand) parsed = NULL;
      g_autoptr(OdProblem) problem = NULL;
      g_autoptr(OdProblem) parse_problem = NULL;
      /* No NUL after the body: a read past it is an error under ASan. */
      g_autofree char *copy = g_memdup2 (body, len ? len : 1);

      fast = od_command_parse_fast (copy, len);
      strict = od_command_parse_strict (copy, len, &problem);
      parsed = od_command_parse (copy, len, &parse_problem);
      if (fast != NULL)
        {
          if (strict == NULL || !commands_equal (fast, strict))
            g_error ("fast and strict differ on %.*s: %s", (int) len, body,
                     problem ? problem->detail : "another command");
          n_fast++;
        }
      if (strict != NULL)
        n_strict++;
      /* A clean body whose text breaks a rule is not valid: the strict
       * path judges that. */
      if (clean && strict != NULL)
        {
          n_clean++;
          if (fast == NULL)
            g_error ("fast declined a valid flat command: %.*s", (int) len, body);
        }
      g_assert_true ((parsed != NULL) == (strict != NULL));
      if (parsed != NULL)
        g_assert_true (commands_equal (parsed, strict));
      else
        {
          g_assert_cmpint (parse_problem->code, ==, problem->code);
          g_assert_cmpstr (parse_problem->detail, ==, problem->detail);
        }
    }
  g_test_message ("%u bodies: %u valid, %u clean and valid, %u taken by the fast parser", n,
                  n_strict, n_clean, n_fast);
  /* The generator must reach every side. */
  g_assert_cmpuint (n_clean, >, n / 20);
  g_assert_cmpuint (n_strict, >, n_clean);
  g_assert_cmpuint (n_strict, <, n);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/protocol/uuid/valid", test_uuid_valid);
  g_test_add_func ("/protocol/uuid/v7", test_uuid_v7);
  g_test_add_func ("/protocol/uuid/v7-burst", test_uuid_v7_burst);
  g_test_add_func ("/protocol/uuid/v7-fill", test_uuid_v7_fill);
  g_test_add_func ("/protocol/field/text", test_field_text);
  g_test_add_func ("/protocol/field/email", test_field_email);
  g_test_add_func ("/protocol/field/currency", test_field_currency);
  g_test_add_func ("/protocol/field/sku", test_field_sku);
  g_test_add_func ("/protocol/field/numbers", test_field_numbers);
  g_test_add_func ("/protocol/field/idempotency-key", test_idempotency_key);
  g_test_add_func ("/protocol/command/parse-ok", test_command_parse_ok);
  g_test_add_func ("/protocol/command/malformed", test_command_malformed);
  g_test_add_func ("/protocol/command/invalid", test_command_invalid);
  g_test_add_func ("/protocol/command/strict-json", test_command_strict_json);
  g_test_add_func ("/protocol/command/size", test_command_size);
  g_test_add_func ("/protocol/command/roundtrip", test_command_roundtrip);
  g_test_add_func ("/protocol/command/validate", test_command_validate);
  g_test_add_func ("/protocol/command/copy", test_command_copy);
  g_test_add_func ("/protocol/command/fast", test_command_fast);
  g_test_add_func ("/protocol/command/table", test_command_table);
  g_test_add_func ("/protocol/order/refunds-and-notes", test_order_refunds);
  g_test_add_func ("/protocol/order/status-table", test_order_status_table);
  g_test_add_func ("/protocol/order/refusal-rule", test_order_refusal_rule);
  g_test_add_func ("/protocol/order/data", test_order_data);
  g_test_add_func ("/protocol/order/lines", test_order_lines);
  g_test_add_func ("/protocol/order/versions", test_order_versions);
  g_test_add_func ("/protocol/order/status-names", test_order_status_names);
  g_test_add_func ("/protocol/problem/table", test_problem_table);
  g_test_add_func ("/protocol/problem/roundtrip", test_problem_roundtrip);
  g_test_add_func ("/protocol/problem/parse-tolerant", test_problem_parse_tolerant);
  g_test_add_func ("/protocol/event/roundtrip", test_event_roundtrip);
  g_test_add_func ("/protocol/event/invalid", test_event_invalid);
  g_test_add_func ("/protocol/json/string", test_json_string);
  g_test_add_func ("/protocol/json/parse-object", test_json_parse_object);
  g_test_add_func ("/protocol/json/timestamps", test_timestamps);

  return g_test_run ();
}

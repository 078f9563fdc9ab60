/* SPDX-License-Identifier: GPL-3.0-or-later */

/* What fuzzing found in the shared JSON reading (src/protocol/od-json.c),
 * as plain cases: json-glib alone takes text that is not JSON and makes
 * strings that are not UTF-8 or integers that are not what was sent. */

#include "od-protocol.h"

#include <string.h>

#define ID "0193a1c2-7f00-7abc-8def-0123456789ab"

static void
test_refused_as_malformed (void)
{
  const char *bodies[] = {
    /* Strings json-glib decodes to bytes that are not UTF-8. */
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"\\ud800\"}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"\\udc00x\"}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"\\ud800\\u0041\"}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"\\udcl0\"}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"\\655\"}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"a\\;b\"}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"a\tb\"}}",
    /* Integers beyond 64 bits, which json-glib wrapped around. */
    "{\"type\":\"AddItem\",\"order_id\":\"" ID "\",\"data\":{\"sku\":\"A\",\"name\":\"a\","
    "\"quantity\":-18446744073709551615,\"unit_price_cents\":1}}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":-9223372036854775809}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":9223372036854775808}",
    /* Not JSON at all. */
    "{\"type\":'PlaceOrder',\"order_id\":\"" ID "\"}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\" // comment\n}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":0x1}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"expected_version\":01}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",}",
    "{\"type\":\"PlaceOrder\" \"order_id\":\"" ID "\"}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\"} x",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"data\":{}",
    /* A member name given twice, whichever value comes last. */
    "{\"type\":\"PlaceOrder\",\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"r\"}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"r\"},\"type\":\"PlaceOrder\"}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"a\",\"reason\":\"b\"}}",
    "{\"type\":\"CancelOrder\",\"\\u0074ype\":\"PlaceOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"r\"}}",
    "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"order\\u005fid\":\"" ID "\",\"data\":{\"reason\":\"r\"}}",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autoptr(OdProblem) problem = NULL;
      g_autoptr(OdCommand) command = od_command_parse (bodies[i], strlen (bodies[i]), &problem);

      g_test_message ("%s -> %s", bodies[i], problem ? problem->detail : "accepted");
      g_assert_null (command);
      g_assert_nonnull (problem);
      g_assert_cmpstr (problem->code_name, ==, "malformed");
      g_assert_true (g_utf8_validate (problem->detail, -1, NULL));
    }
}

static void
test_accepted (void)
{
  struct {
    const char *body;
    const char *reason;
    gint64      expected_version;
  } cases[] = {
    /* An escaped backslash before "u0000" is text, not a NUL. */
    { "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"typed \\\\u0000\"}}",
      "typed \\u0000", -1 },
    { "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"typed \\u005cu0000\"}}",
      "typed \\u0000", -1 },
    /* A surrogate pair is one character. */
    { "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"\\ud83d\\ude00 \\u00e9\\/\"}}",
      "\xf0\x9f\x98\x80 \xc3\xa9/", -1 },
    { " {\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"expected_version\":9223372036854775807,"
      "\"data\":{\"reason\":\"r\"}}\r\n", "r", G_MAXINT64 },
    { "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"expected_version\":0,"
      "\"data\":{\"reason\":\"r\"}}", "r", 0 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(OdProblem) problem = NULL;
      g_autoptr(OdCommand) command = od_command_parse (cases[i].body, strlen (cases[i].body),
                                                       &problem);
      g_autofree char *json = NULL;
      g_autoptr(OdCommand) again = NULL;
      g_autoptr(OdProblem) again_problem = NULL;

      if (command == NULL)
        g_error ("%s refused: %s", cases[i].body, problem->detail);
      g_assert_cmpstr (command->reason, ==, cases[i].reason);
      if (cases[i].expected_version >= 0)
        g_assert_cmpint (command->expected_version, ==, cases[i].expected_version);
      /* What the console sends for it is accepted too. */
      json = od_command_to_json (command);
      again = od_command_parse (json, strlen (json), &again_problem);
      g_assert_nonnull (again);
      g_assert_cmpstr (again->reason, ==, cases[i].reason);
    }
  {
    g_autoptr(OdProblem) problem = NULL;
    const char *body = "{\"type\":\"CancelOrder\",\"order_id\":\"" ID "\",\"data\":{\"reason\":\"a\\u0000b\"}}";
    g_autoptr(OdCommand) command = od_command_parse (body, strlen (body), &problem);

    /* An escaped NUL stays refused, as protocol.md says. */
    g_assert_null (command);
    g_assert_cmpstr (problem->code_name, ==, "invalid_command");
  }
}

/* Member names given twice in one object are refused at any depth
 * (after decoding escapes); the same name in different objects is fine. */
static void
test_duplicate_members (void)
{
  const char *refused[] = {
    "{\"a\":1,\"a\":1}",
    "{\"a\":1,\"b\":2,\"c\":3,\"a\":4}",
    "[{\"x\":{\"y\":[{\"a\":1,\"a\":2}]}}]",
    "{\"\\u00e9\":1,\"\xc3\xa9\":2}",
    "{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}",
    "{\"a\\/b\":1,\"a/b\":2}",
  };
  const char *accepted[] = {
    "{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":2}]}",
    "{\"a\":1,\"A\":2,\"a \":3,\"\\u0062\":4}",
  };

  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    {
      g_autoptr(GError) error = NULL;

      g_test_message ("%s", refused[i]);
      g_assert_false (od_json_check (refused[i], strlen (refused[i]), &error));
      g_assert_nonnull (strstr (error->message, "given twice"));
    }
  for (guint i = 0; i < G_N_ELEMENTS (accepted); i++)
    {
      g_autoptr(GError) error = NULL;

      g_assert_true (od_json_check (accepted[i], strlen (accepted[i]), &error));
      g_assert_no_error (error);
    }
}

/* Whatever bytes a string holds, the JSON written for it is UTF-8. */
static void
test_output_is_utf8 (void)
{
  g_autoptr(GString) out = g_string_new (NULL);
  g_autoptr(JsonNode) node = NULL;

  g_string_append_c (out, '{');
  od_json_append_member (out, "detail", "bad \xed\xa0\x80 and \xff bytes, \"quoted\"\n");
  g_string_append_c (out, '}');
  g_assert_true (g_utf8_validate (out->str, -1, NULL));
  node = od_json_parse_object (out->str, -1, NULL);
  g_assert_nonnull (node);
}

static void
test_event_and_problem (void)
{
  const char *event = "{\"position\":1,\"prev\":0,\"order_id\":\"" ID "\",\"version\":1,"
                      "\"type\":\"OrderCreated\",\"recorded_at\":\"2026-11-26T10:00:00.000Z\","
                      "\"actor\":\"\\udc00\",\"data\":{}}";
  const char *problem_body = "{\"code\":\"internal\",\"detail\":\"\\ud800\",\"title\":\"\\655\"}";
  g_autoptr(GError) error = NULL;
  g_autoptr(OdEvent) ev = od_event_parse (event, -1, &error);
  g_autoptr(OdProblem) problem = od_problem_parse (500, problem_body, strlen (problem_body));

  g_assert_null (ev);
  g_assert_nonnull (error);
  {
    /* json-glib would read it as -inf and write "-inf.0", not JSON. */
    const char *huge = "{\"position\":1,\"prev\":0,\"order_id\":\"" ID "\",\"version\":1,"
                       "\"type\":\"ItemAdded\",\"recorded_at\":\"2026-11-26T10:00:00.000Z\","
                       "\"actor\":\"a\",\"data\":{\"unit_price_cents\":-91e3223372036854775807}}";
    g_autoptr(GError) huge_error = NULL;
    g_autoptr(OdEvent) huge_ev = od_event_parse (huge, -1, &huge_error);

    g_assert_null (huge_ev);
    g_assert_nonnull (huge_error);
  }
  /* Not problem details then: a readable generic problem. */
  g_assert_cmpstr (problem->code_name, ==, "unknown");
  g_assert_true (g_utf8_validate (problem->title, -1, NULL));
  g_assert_true (g_utf8_validate (problem->detail, -1, NULL));
}

/* The fold of hostile event values stays bounded (UBSan found signed
 * overflow in od_order_apply). */
static void
test_fold_bounded (void)
{
  g_autoptr(OdOrder) order = od_order_new (ID);
  const char *items[] = {
    "{\"sku\":\"X\",\"name\":\"x\",\"quantity\":9223372036854775807,\"unit_price_cents\":9223372036854775807}",
    "{\"sku\":\"X\",\"name\":\"x\",\"quantity\":9223372036854775807,\"unit_price_cents\":-9223372036854775807}",
    "{\"sku\":\"Y\",\"name\":\"y\",\"quantity\":-5,\"unit_price_cents\":100}",
  };

  od_order_apply (order, "OrderCreated", NULL, 1, 1, "2026-11-26T10:00:00.000Z");
  for (guint i = 0; i < G_N_ELEMENTS (items); i++)
    {
      g_autoptr(JsonNode) node = od_json_parse_object (items[i], -1, NULL);

      g_assert_nonnull (node);
      od_order_apply (order, "ItemAdded", json_node_get_object (node), i + 2, i + 2,
                      "2026-11-26T10:00:00.000Z");
    }
  g_assert_cmpint (od_order_find_line (order, "X")->quantity, ==, OD_MAX_QUANTITY);
  g_assert_cmpint (od_order_find_line (order, "X")->unit_price_cents, ==, 0);
  g_assert_cmpint (od_order_find_line (order, "Y")->quantity, ==, 0);
  g_assert_cmpint (od_order_total_cents (order), ==, 0);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/json-strict/refused-as-malformed", test_refused_as_malformed);
  g_test_add_func ("/json-strict/accepted", test_accepted);
  g_test_add_func ("/json-strict/duplicate-members", test_duplicate_members);
  g_test_add_func ("/json-strict/output-is-utf8", test_output_is_utf8);
  g_test_add_func ("/json-strict/event-and-problem", test_event_and_problem);
  g_test_add_func ("/json-strict/fold-bounded", test_fold_bounded);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Every command's happy path with the event it appends, every error code
 * of docs/protocol.md with its status, media type and extra members, and
 * the read routes (events page, head, health). */
#include "od-test-server.h"
#include "od-test-bodies.h"

#include <string.h>

static OdTestServer *server;

/* ---- helpers ---- */

typedef struct
{
  gint64 version;
  gint64 position;
} Ack;

/* Sends a command that must succeed and checks the answer's shape. */
static Ack
ok_command (const char *token,
            const char *order_id,
            const char *body)
{
  g_autofree char *key = od_test_new_key ();
  g_autoptr(OdTestResponse) r = od_test_command (server, NULL, token, key, body);
  JsonObject *object;
  Ack ack;

  od_test_assert_status (r, 200);
  g_assert_true (g_str_has_prefix (od_test_response_header (r, "Content-Type"), "application/json"));
  object = od_test_response_object (r);
  g_assert_nonnull (object);
  g_assert_cmpuint (json_object_get_size (object), ==, 3);
  g_assert_cmpstr (od_test_response_string (r, "order_id"), ==, order_id);
  ack.version = od_test_response_int (r, "version");
  ack.position = od_test_response_int (r, "position");
  g_assert_cmpint (ack.position, >=, 1);
  g_assert_null (od_test_response_header (r, "Idempotent-Replayed"));
  return ack;
}

static OdTestResponse *
command (const char *token,
         const char *body)
{
  g_autofree char *key = od_test_new_key ();

  return od_test_command (server, NULL, token, key, body);
}

static gboolean
timestamp_is_recent (const char *text)
{
  g_autoptr(GRegex) re = g_regex_new ("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$",
                                      0, 0, NULL);
  gint64 usec;

  return g_regex_match (re, text, 0, NULL) && od_timestamp_parse (text, &usec)
         && ABS (usec - g_get_real_time ()) < 120 * G_USEC_PER_SEC;
}

/* The event at the acknowledged position, with its whole envelope. */
static void
check_event (const Ack  *ack,
             gint64      prev,
             const char *order_id,
             const char *type,
             const char *actor,
             const char *data)
{
  g_autoptr(OdEvent) event = od_test_event_at (server, ack->position);

  g_assert_cmpint (event->position, ==, ack->position);
  if (prev >= 0)
    g_assert_cmpint (event->prev, ==, prev);
  g_assert_cmpint (event->prev, <, event->position);
  g_assert_cmpstr (event->order_id, ==, order_id);
  g_assert_cmpint (event->version, ==, ack->version);
  g_assert_cmpstr (event->type, ==, type);
  g_assert_cmpstr (event->actor, ==, actor);
  if (!timestamp_is_recent (event->recorded_at))
    g_error ("recorded_at %s is not RFC 3339 UTC with milliseconds, or not now", event->recorded_at);
  if (!od_test_json_equal (event->data, data))
    g_error ("event %s data %s, expected %s", type, event->data, data);
}

static char *
new_order (const char *token)
{
  char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "Grace Hopper", "grace@example.org", "USD");

  ok_command (token, id, body);
  return id;
}

/* ---- happy paths ---- */

static void
test_lifecycle (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *create = od_body_create (id, "Zoë \"Q\" Ñandú", "zoe@example.org", "EUR");
  g_autofree char *add1 = od_body_add (id, 1, "MUG-BLUE", "Blue mug", 2, 1299);
  g_autofree char *add2 = od_body_add (id, -1, "MUG-BLUE", "Blue mug, large", 3, 1499);
  g_autofree char *add3 = od_body_add (id, -1, "TEA.1_x", "Tea \xe2\x98\x95", 1, 0);
  g_autofree char *remove = od_body_one ("RemoveItem", id, -1, "sku", "TEA.1_x");
  g_autofree char *place = od_body ("PlaceOrder", id, 5, "{}");
  g_autofree char *ship = od_body_ship (id, -1, "DHL", "JD0146000");
  g_autofree char *deliver = od_body ("MarkDelivered", id, 7, NULL);
  Ack a, prev;

  a = ok_command (OD_TEST_ALICE, id, create);
  g_assert_cmpint (a.version, ==, 1);
  check_event (&a, -1, id, "OrderCreated", "alice",
               "{\"customer_name\":\"Zoë \\\"Q\\\" Ñandú\",\"customer_email\":\"zoe@example.org\",\"currency\":\"EUR\"}");
  prev = a;

  /* Another operator: the actor follows the token. */
  a = ok_command (OD_TEST_BOB, id, add1);
  g_assert_cmpint (a.version, ==, 2);
  g_assert_cmpint (a.position, >, prev.position);
  check_event (&a, prev.position, id, "ItemAdded", "bob",
               "{\"sku\":\"MUG-BLUE\",\"name\":\"Blue mug\",\"quantity\":2,\"unit_price_cents\":1299}");
  prev = a;

  /* The same SKU: the event carries what was added, the line adds up. */
  a = ok_command (OD_TEST_ALICE, id, add2);
  g_assert_cmpint (a.version, ==, 3);
  check_event (&a, prev.position, id, "ItemAdded", "alice",
               "{\"sku\":\"MUG-BLUE\",\"name\":\"Blue mug, large\",\"quantity\":3,\"unit_price_cents\":1499}");
  prev = a;

  a = ok_command (OD_TEST_ALICE, id, add3);
  g_assert_cmpint (a.version, ==, 4);
  check_event (&a, prev.position, id, "ItemAdded", "alice",
               "{\"sku\":\"TEA.1_x\",\"name\":\"Tea \xe2\x98\x95\",\"quantity\":1,\"unit_price_cents\":0}");
  prev = a;

  a = ok_command (OD_TEST_ALICE, id, remove);
  g_assert_cmpint (a.version, ==, 5);
  check_event (&a, prev.position, id, "ItemRemoved", "alice", "{\"sku\":\"TEA.1_x\"}");
  prev = a;

  /* 5 mugs at the latest price. */
  a = ok_command (OD_TEST_ALICE, id, place);
  g_assert_cmpint (a.version, ==, 6);
  check_event (&a, prev.position, id, "OrderPlaced", "alice",
               "{\"total_cents\":7495,\"item_count\":5}");
  prev = a;

  a = ok_command (OD_TEST_BOB, id, ship);
  g_assert_cmpint (a.version, ==, 7);
  check_event (&a, prev.position, id, "OrderShipped", "bob",
               "{\"carrier\":\"DHL\",\"tracking_number\":\"JD0146000\"}");
  prev = a;

  a = ok_command (OD_TEST_ALICE, id, deliver);
  g_assert_cmpint (a.version, ==, 8);
  check_event (&a, prev.position, id, "OrderDelivered", "alice", "{}");
}

static void
test_cancel (void)
{
  g_autofree char *draft = new_order (OD_TEST_ALICE);
  g_autofree char *placed = new_order (OD_TEST_ALICE);
  g_autofree char *add = od_body_add (placed, -1, "S", "Thing", 1, 100);
  g_autofree char *place = od_body ("PlaceOrder", placed, -1, NULL);
  g_autofree char *cancel_draft = od_body_one ("CancelOrder", draft, 1, "reason", "Customer called");
  g_autofree char *cancel_placed = od_body_one ("CancelOrder", placed, -1, "reason", "Out of stock \xe2\x80\x94 sorry");
  Ack a;

  ok_command (OD_TEST_ALICE, placed, add);
  ok_command (OD_TEST_ALICE, placed, place);

  a = ok_command (OD_TEST_BOB, draft, cancel_draft);
  g_assert_cmpint (a.version, ==, 2);
  check_event (&a, -1, draft, "OrderCancelled", "bob", "{\"reason\":\"Customer called\"}");

  a = ok_command (OD_TEST_ALICE, placed, cancel_placed);
  g_assert_cmpint (a.version, ==, 4);
  check_event (&a, -1, placed, "OrderCancelled", "alice",
               "{\"reason\":\"Out of stock \xe2\x80\x94 sorry\"}");
}

static void
test_optional_members (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *create = NULL;
  g_autofree char *add = od_body_add (id, -1, "S", "Thing", 1, 100);
  g_autofree char *place_null = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\","
                                                 "\"expected_version\":null,\"data\":null}", id);
  g_autoptr(OdTestResponse) r = NULL;
  Ack a;

  /* CreateOrder's expected_version is compared with 0. */
  create = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"expected_version\":0,"
                            "\"data\":{\"customer_name\":\"A\",\"customer_email\":\"a@b\",\"currency\":\"GBP\"}}", id);
  a = ok_command (OD_TEST_ALICE, id, create);
  g_assert_cmpint (a.version, ==, 1);
  ok_command (OD_TEST_ALICE, id, add);
  a = ok_command (OD_TEST_ALICE, id, place_null);
  g_assert_cmpint (a.version, ==, 3);

  /* A missing Content-Type is accepted, so are parameters on the media
   * type, and media types are case-insensitive. */
  {
    const char *types[] = { NULL, "application/json; charset=utf-8", "Application/JSON" };

    for (guint i = 0; i < G_N_ELEMENTS (types); i++)
      {
        g_autofree char *other = od_uuid_v7_new ();
        g_autofree char *body = od_body_create (other, "Typed", "c@c", "EUR");
        g_autofree char *key = od_test_new_key ();

        g_test_message ("Content-Type: %s", types[i] ? types[i] : "(none)");
        r = od_test_request (server, NULL, "POST", "/v1/commands", OD_TEST_ALICE, types[i], body,
                             -1, "Idempotency-Key", key, NULL);
        od_test_assert_status (r, 200);
        g_clear_pointer (&r, od_test_response_free);
      }
  }
}

/* ---- errors ---- */

static void
test_malformed (void)
{
  g_autofree char *id = new_order (OD_TEST_ALICE);
  g_autofree char *wrong_type = g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\","
                                                 "\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantity\":\"2\",\"unit_price_cents\":1}}", id);
  g_autofree char *float_int = g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\","
                                                "\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantity\":2.0,\"unit_price_cents\":1}}", id);
  g_autofree char *version_string = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"expected_version\":\"1\"}", id);
  const char *bodies[] = { "not json", "[]", "{\"type\":", "", "{\"type\":\"PlaceOrder\"} trailing",
                           wrong_type, float_int, version_string };
  gint64 head = od_test_head (server);

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, bodies[i]);

      g_test_message ("body: %s", bodies[i]);
      od_test_assert_problem (r, 400, "malformed");
    }
  g_assert_cmpint (od_test_head (server), ==, head);
}

static void
test_unauthorized (void)
{
  const char *routes[] = { "/v1/events", "/v1/head", "/v1/events/stream", "/v1/events?after=0" };
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "A", "a@b", "EUR");
  g_autofree char *long_token = od_repeat ("t", 513);
  g_autoptr(OdTestResponse) health = od_test_get (server, NULL, "/v1/health");
  const char *bad_auth[] = { NULL, "Bearer nope", "Bearer", "Bearer ", "Basic b3A6YWxpY2U=",
                             "bearer op-alice-secret-x", "Token op-alice-secret", NULL };
  gint64 head = od_test_head (server);

  /* Health needs no token. */
  od_test_assert_status (health, 200);
  g_assert_cmpstr (od_test_response_string (health, "status"), ==, "ok");

  for (guint i = 0; i < G_N_ELEMENTS (bad_auth); i++)
    {
      g_autofree char *key = od_test_new_key ();
      g_autoptr(OdTestResponse) r = NULL;

      if (i == G_N_ELEMENTS (bad_auth) - 1)
        {
          g_autofree char *value = g_strconcat ("Bearer ", long_token, NULL);

          r = od_test_request (server, NULL, "POST", "/v1/commands", NULL, "application/json",
                               body, -1, "Idempotency-Key", key, "Authorization", value, NULL);
        }
      else if (bad_auth[i] == NULL)
        r = od_test_request (server, NULL, "POST", "/v1/commands", NULL, "application/json",
                             body, -1, "Idempotency-Key", key, NULL);
      else
        r = od_test_request (server, NULL, "POST", "/v1/commands", NULL, "application/json",
                             body, -1, "Idempotency-Key", key, "Authorization", bad_auth[i], NULL);
      g_test_message ("Authorization: %s", bad_auth[i] ? bad_auth[i] : "(long or none)");
      od_test_assert_problem (r, 401, "unauthorized");
      g_assert_true (g_str_has_prefix (od_test_response_header (r, "WWW-Authenticate"), "Bearer"));
    }

  for (guint i = 0; i < G_N_ELEMENTS (routes); i++)
    {
      g_autoptr(OdTestResponse) none = od_test_get (server, NULL, routes[i]);
      g_autoptr(OdTestResponse) wrong = od_test_get (server, "view-victor-secreT", routes[i]);

      od_test_assert_problem (none, 401, "unauthorized");
      od_test_assert_problem (wrong, 401, "unauthorized");
      g_assert_nonnull (od_test_response_header (none, "WWW-Authenticate"));
    }

  /* Two Authorization headers, even two good ones: libsoup would merge
   * them, so this goes over a raw socket. */
  {
    g_autofree char *raw = g_strdup_printf ("GET /v1/head HTTP/1.1\r\nHost: x\r\n"
                                            "Authorization: Bearer " OD_TEST_VICTOR "\r\n"
                                            "Authorization: Bearer " OD_TEST_VICTOR "\r\n"
                                            "Connection: close\r\n\r\n");
    g_autoptr(OdTestResponse) r = od_test_raw (server, raw, strlen (raw), 10);

    od_test_assert_problem (r, 401, "unauthorized");
  }
  g_assert_cmpint (od_test_head (server), ==, head);
}

static void
test_forbidden (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "A", "a@b", "EUR");
  g_autoptr(OdTestResponse) r = command (OD_TEST_VICTOR, body);
  g_autoptr(OdTestResponse) events = od_test_get (server, OD_TEST_VICTOR, "/v1/events");
  g_autoptr(OdTestResponse) head = od_test_get (server, OD_TEST_VICTOR, "/v1/head");
  g_autoptr(OdTestResponse) check = NULL;

  od_test_assert_problem (r, 403, "forbidden");
  od_test_assert_status (events, 200);
  od_test_assert_status (head, 200);
  /* Nothing was created: the id is still free. */
  check = command (OD_TEST_ALICE, body);
  od_test_assert_status (check, 200);
}

static void
test_not_found (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  const char *types[] = { "AddItem", "RemoveItem", "PlaceOrder", "ShipOrder", "MarkDelivered", "CancelOrder" };
  const char *paths[] = { "/", "/v1", "/v1/", "/v1/command", "/v1/commands/x", "/v1/events/", "/v1/eventsx",
                          "/v2/head", "/v1/head/x", "/V1/HEAD", "/v1/events/stream/x", "/favicon.ico" };
  gint64 head = od_test_head (server);

  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree char *body = NULL;
      g_autoptr(OdTestResponse) r = NULL;

      if (g_str_equal (types[i], "AddItem"))
        body = od_body_add (id, -1, "S", "N", 1, 1);
      else if (g_str_equal (types[i], "RemoveItem"))
        body = od_body_one ("RemoveItem", id, -1, "sku", "S");
      else if (g_str_equal (types[i], "ShipOrder"))
        body = od_body_ship (id, -1, "C", "T");
      else if (g_str_equal (types[i], "CancelOrder"))
        body = od_body_one ("CancelOrder", id, -1, "reason", "r");
      else
        body = od_body (types[i], id, -1, NULL);
      r = command (OD_TEST_ALICE, body);
      g_test_message ("%s", types[i]);
      od_test_assert_problem (r, 404, "not_found");
    }
  for (guint i = 0; i < G_N_ELEMENTS (paths); i++)
    {
      g_autoptr(OdTestResponse) r = od_test_get (server, OD_TEST_ALICE, paths[i]);

      g_test_message ("GET %s", paths[i]);
      od_test_assert_problem (r, 404, "not_found");
    }
  g_assert_cmpint (od_test_head (server), ==, head);
}

static void
test_method_not_allowed (void)
{
  struct { const char *method; const char *path; const char *allow; } cases[] = {
    { "GET", "/v1/commands", "POST" },
    { "PUT", "/v1/commands", "POST" },
    { "DELETE", "/v1/commands", "POST" },
    { "PATCH", "/v1/commands", "POST" },
    { "POST", "/v1/events", "GET" },
    { "DELETE", "/v1/events", "GET" },
    { "POST", "/v1/events/stream", "GET" },
    { "POST", "/v1/head", "GET" },
    { "PUT", "/v1/head", "GET" },
    { "POST", "/v1/health", "GET" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(OdTestResponse) r = od_test_request (server, NULL, cases[i].method, cases[i].path,
                                                     OD_TEST_ALICE, "application/json", "{}", -1,
                                                     "Idempotency-Key", "k", NULL);
      const char *allow;

      g_test_message ("%s %s", cases[i].method, cases[i].path);
      od_test_assert_problem (r, 405, "method_not_allowed");
      allow = od_test_response_header (r, "Allow");
      g_assert_nonnull (allow);
      g_assert_nonnull (strstr (allow, cases[i].allow));
    }
}

static void
test_request_timeout (void)
{
  g_autoptr(OdTestServer) slow = od_test_server_new ("--request-timeout", "2", NULL);
  g_autoptr(GSocketConnection) headers_only = od_test_raw_connect (slow);
  g_autoptr(GSocketConnection) short_body = od_test_raw_connect (slow);
  const char *partial_headers = "POST /v1/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " OD_TEST_ALICE "\r\n";
  const char *partial_body = "POST /v1/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " OD_TEST_ALICE "\r\n"
                             "Idempotency-Key: t-1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":";
  g_autoptr(OdTestResponse) r1 = NULL;
  g_autoptr(OdTestResponse) r2 = NULL;
  gint64 start = g_get_monotonic_time ();

  od_test_raw_write (headers_only, partial_headers, strlen (partial_headers));
  od_test_raw_write (short_body, partial_body, strlen (partial_body));
  r1 = od_test_raw_read_response (headers_only, 15);
  r2 = od_test_raw_read_response (short_body, 15);
  od_test_assert_problem (r1, 408, "request_timeout");
  od_test_assert_problem (r2, 408, "request_timeout");
  /* Not before the timeout, and not much after it. */
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 1500 * 1000);
  if (!od_test_server_wrapped ())
    g_assert_cmpint (g_get_monotonic_time () - start, <, 10 * G_USEC_PER_SEC);
  g_assert_cmpint (od_test_head (slow), ==, 0);
}

static void
test_version_conflict (void)
{
  g_autofree char *id = new_order (OD_TEST_ALICE);
  g_autofree char *stale = od_body_add (id, 0, "S", "N", 1, 1);
  g_autofree char *ahead = od_body_add (id, 5, "S", "N", 1, 1);
  g_autofree char *right = od_body_add (id, 1, "S", "N", 1, 1);
  g_autofree char *now_stale = od_body_one ("CancelOrder", id, 1, "reason", "r");
  g_autofree char *create_again = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"expected_version\":3,"
                                                   "\"data\":{\"customer_name\":\"A\",\"customer_email\":\"a@b\",\"currency\":\"EUR\"}}", id);
  g_autoptr(OdTestResponse) r1 = command (OD_TEST_ALICE, stale);
  g_autoptr(OdTestResponse) r2 = command (OD_TEST_ALICE, ahead);
  g_autoptr(OdTestResponse) r3 = NULL;

  od_test_assert_problem (r1, 409, "version_conflict");
  g_assert_cmpint (od_test_response_int (r1, "current_version"), ==, 1);
  od_test_assert_problem (r2, 409, "version_conflict");
  g_assert_cmpint (od_test_response_int (r2, "current_version"), ==, 1);
  ok_command (OD_TEST_ALICE, id, right);
  r3 = command (OD_TEST_ALICE, now_stale);
  od_test_assert_problem (r3, 409, "version_conflict");
  g_assert_cmpint (od_test_response_int (r3, "current_version"), ==, 2);
  g_clear_pointer (&r3, od_test_response_free);
  /* Existence is checked before the version. */
  r3 = command (OD_TEST_ALICE, create_again);
  od_test_assert_problem (r3, 409, "order_exists");
}

static void
expect_invalid_state (const char *body)
{
  g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, body);

  g_test_message ("%s", body);
  od_test_assert_problem (r, 409, "invalid_state");
}

static void
test_invalid_state (void)
{
  g_autofree char *id = new_order (OD_TEST_ALICE);
  g_autofree char *place = od_body ("PlaceOrder", id, -1, NULL);
  g_autofree char *remove = od_body_one ("RemoveItem", id, -1, "sku", "NOPE");
  g_autofree char *ship = od_body_ship (id, -1, "C", "T");
  g_autofree char *deliver = od_body ("MarkDelivered", id, -1, NULL);
  g_autofree char *add = od_body_add (id, -1, "S", "N", 1, 1);
  g_autofree char *cancel = od_body_one ("CancelOrder", id, -1, "reason", "r");
  gint64 head;

  /* Draft without lines. */
  expect_invalid_state (place);
  expect_invalid_state (remove);
  expect_invalid_state (ship);
  expect_invalid_state (deliver);
  ok_command (OD_TEST_ALICE, id, add);
  /* Draft with a line, but not this SKU. */
  expect_invalid_state (remove);
  ok_command (OD_TEST_ALICE, id, place);
  /* Placed. */
  expect_invalid_state (add);
  expect_invalid_state (place);
  expect_invalid_state (deliver);
  ok_command (OD_TEST_ALICE, id, ship);
  /* Shipped. */
  expect_invalid_state (cancel);
  expect_invalid_state (ship);
  expect_invalid_state (add);
  ok_command (OD_TEST_ALICE, id, deliver);
  /* Delivered. */
  head = od_test_head (server);
  expect_invalid_state (cancel);
  expect_invalid_state (deliver);
  expect_invalid_state (add);
  g_assert_cmpint (od_test_head (server), ==, head);

  /* Cancelled. */
  {
    g_autofree char *other = new_order (OD_TEST_ALICE);
    g_autofree char *cancel_other = od_body_one ("CancelOrder", other, -1, "reason", "r");
    g_autofree char *add_other = od_body_add (other, -1, "S", "N", 1, 1);
    g_autofree char *place_other = od_body ("PlaceOrder", other, -1, NULL);

    ok_command (OD_TEST_ALICE, other, cancel_other);
    expect_invalid_state (cancel_other);
    expect_invalid_state (add_other);
    expect_invalid_state (place_other);
  }
}

static void
test_line_limits (void)
{
  g_autofree char *id = new_order (OD_TEST_ALICE);
  g_autofree char *full = od_body_add (id, -1, "FULL", "N", 10000, 1);
  g_autofree char *one_more = od_body_add (id, -1, "FULL", "N", 1, 1);
  g_autofree char *new_sku = od_body_add (id, -1, "LINE-201", "N", 1, 1);
  g_autoptr(OdTestResponse) r = NULL;

  /* A line of 10,000 is fine; one more item on it is a 422. */
  ok_command (OD_TEST_ALICE, id, full);
  r = command (OD_TEST_ALICE, one_more);
  od_test_assert_problem (r, 422, "invalid_command");
  g_assert_true (od_test_response_has_error_field (r, "data.quantity"));
  g_clear_pointer (&r, od_test_response_free);

  /* 200 lines; a 201st SKU is invalid_state. */
  for (guint i = 1; i < 200; i++)
    {
      g_autofree char *sku = g_strdup_printf ("LINE-%u", i);
      g_autofree char *body = od_body_add (id, -1, sku, "N", 1, 1);

      ok_command (OD_TEST_BOB, id, body);
    }
  r = command (OD_TEST_ALICE, new_sku);
  od_test_assert_problem (r, 409, "invalid_state");
  g_clear_pointer (&r, od_test_response_free);
  /* An existing line still takes items. */
  {
    g_autofree char *more = od_body_add (id, 201, "LINE-7", "N", 5, 1);
    Ack a = ok_command (OD_TEST_ALICE, id, more);

    g_assert_cmpint (a.version, ==, 202);
  }
}

static void
test_order_exists (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "A", "a@b", "EUR");
  g_autofree char *other_body = od_body_create (id, "B", "b@b", "CHF");
  g_autofree char *add = od_body_add (id, -1, "S", "N", 1, 1);
  g_autoptr(OdTestResponse) r1 = NULL;
  g_autoptr(OdTestResponse) r2 = NULL;

  ok_command (OD_TEST_ALICE, id, body);
  ok_command (OD_TEST_ALICE, id, add);
  /* The same body with a new key is not a replay. */
  r1 = command (OD_TEST_ALICE, body);
  od_test_assert_problem (r1, 409, "order_exists");
  g_assert_cmpint (od_test_response_int (r1, "current_version"), ==, 2);
  r2 = command (OD_TEST_BOB, other_body);
  od_test_assert_problem (r2, 409, "order_exists");
}

static void
test_idempotency_key_missing (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "A", "a@b", "EUR");
  g_autofree char *too_long = od_repeat ("k", 129);
  g_autofree char *longest = od_repeat ("k", 128);
  g_autoptr(OdTestResponse) none = od_test_command (server, NULL, OD_TEST_ALICE, NULL, body);
  g_autoptr(OdTestResponse) empty = od_test_command (server, NULL, OD_TEST_ALICE, "", body);
  g_autoptr(OdTestResponse) over = od_test_command (server, NULL, OD_TEST_ALICE, too_long, body);
  g_autoptr(OdTestResponse) ok = NULL;

  od_test_assert_problem (none, 400, "idempotency_key_missing");
  od_test_assert_problem (empty, 400, "idempotency_key_missing");
  od_test_assert_problem (over, 400, "idempotency_key_missing");
  /* 128 printable characters, spaces included, are a key. */
  longest[5] = ' ';
  ok = od_test_command (server, NULL, OD_TEST_ALICE, longest, body);
  od_test_assert_status (ok, 200);
}

static void
test_idempotency_key_reused (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "A", "a@b", "EUR");
  g_autofree char *other = od_body_create (id, "A", "a@b", "USD");
  g_autofree char *key = od_test_new_key ();
  g_autoptr(OdTestResponse) first = od_test_command (server, NULL, OD_TEST_ALICE, key, body);
  g_autoptr(OdTestResponse) second = od_test_command (server, NULL, OD_TEST_ALICE, key, other);

  od_test_assert_status (first, 200);
  od_test_assert_problem (second, 422, "idempotency_key_reused");
}

static void
expect_invalid (const char *body,
                const char *field)
{
  g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, body);

  g_test_message ("%s -> %s", body, field);
  od_test_assert_problem (r, 422, "invalid_command");
  if (!od_test_response_has_error_field (r, field))
    g_error ("no error for %s in %s", field, r->body);
}

static void
test_invalid_command (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *draft = new_order (OD_TEST_ALICE);
  g_autofree char *name200 = od_repeat ("\xc3\xa9", 200);
  g_autofree char *name201 = od_repeat ("\xc3\xa9", 201);
  g_autofree char *local = od_repeat ("e", 252);
  g_autofree char *email254 = g_strconcat (local, "@x", NULL);
  g_autofree char *email255 = g_strconcat (local, "@xy", NULL);
  g_autofree char *sku64 = od_repeat ("S", 64);
  g_autofree char *sku65 = od_repeat ("S", 65);
  g_autofree char *t100 = od_repeat ("t", 100);
  g_autofree char *t101 = od_repeat ("t", 101);
  g_autofree char *r500 = od_repeat ("\xe2\x82\xac", 500);
  g_autofree char *r501 = od_repeat ("\xe2\x82\xac", 501);
  gint64 head;

  /* The upper bounds are accepted... */
  {
    g_autofree char *b1 = od_body_create (id, name200, email254, "XTS");
    g_autofree char *b2 = od_body_add (id, -1, sku64, name200, 10000, 100000000);
    g_autofree char *b3 = od_body_add (id, -1, "zero-price", "free", 1, 0);

    ok_command (OD_TEST_ALICE, id, b1);
    ok_command (OD_TEST_ALICE, id, b2);
    ok_command (OD_TEST_ALICE, id, b3);
  }
  head = od_test_head (server);

  /* ...and one beyond is refused with the field named. */
  {
    g_autofree char *other = od_uuid_v7_new ();
    struct { char *body; const char *field; } cases[] = {
      { od_body_create (other, name201, "a@b", "EUR"), "data.customer_name" },
      { od_body_create (other, "", "a@b", "EUR"), "data.customer_name" },
      { od_body_create (other, " lead", "a@b", "EUR"), "data.customer_name" },
      { od_body_create (other, "tab\there", "a@b", "EUR"), "data.customer_name" },
      { od_body_create (other, "A", email255, "EUR"), "data.customer_email" },
      { od_body_create (other, "A", "ab", "EUR"), "data.customer_email" },
      { od_body_create (other, "A", "a@b@c", "EUR"), "data.customer_email" },
      { od_body_create (other, "A", "a b@c", "EUR"), "data.customer_email" },
      { od_body_create (other, "A", "a@b", "eur"), "data.currency" },
      { od_body_create (other, "A", "a@b", "EURO"), "data.currency" },
      { od_body_add (draft, -1, sku65, "N", 1, 1), "data.sku" },
      { od_body_add (draft, -1, "", "N", 1, 1), "data.sku" },
      { od_body_add (draft, -1, "a b", "N", 1, 1), "data.sku" },
      { od_body_add (draft, -1, "caf\xc3\xa9", "N", 1, 1), "data.sku" },
      { od_body_add (draft, -1, "S", name201, 1, 1), "data.name" },
      { od_body_add (draft, -1, "S", "", 1, 1), "data.name" },
      { od_body_add (draft, -1, "S", "N", 0, 1), "data.quantity" },
      { od_body_add (draft, -1, "S", "N", 10001, 1), "data.quantity" },
      { od_body_add (draft, -1, "S", "N", -3, 1), "data.quantity" },
      { od_body_add (draft, -1, "S", "N", 1, -1), "data.unit_price_cents" },
      { od_body_add (draft, -1, "S", "N", 1, 100000001), "data.unit_price_cents" },
      { od_body_ship (draft, -1, t101, "T"), "data.carrier" },
      { od_body_ship (draft, -1, "C", t101), "data.tracking_number" },
      { od_body_ship (draft, -1, "", t100), "data.carrier" },
      { od_body_one ("CancelOrder", draft, -1, "reason", r501), "data.reason" },
      { od_body_one ("CancelOrder", draft, -1, "reason", ""), "data.reason" },
      { od_body_one ("CancelOrder", draft, -1, "reason", "a\x7f"), "data.reason" },
      { od_body ("Frobnicate", draft, -1, "{}"), "type" },
      { od_body ("PlaceOrder", "0193A1C2-7F00-7ABC-8DEF-0123456789AB", -1, NULL), "order_id" },
      { od_body ("PlaceOrder", "not-a-uuid", -1, NULL), "order_id" },
      { g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"expected_version\":-1}", draft), "expected_version" },
      { od_body ("PlaceOrder", draft, -1, "{\"extra\":1}"), "data.extra" },
      { g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"expected_versoin\":1}", draft), "expected_versoin" },
      { g_strdup_printf ("{\"order_id\":\"%s\"}", draft), "type" },
      { g_strdup ("{\"type\":\"PlaceOrder\"}"), "order_id" },
      { g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"S\",\"name\":\"N\",\"quantitiy\":1,\"unit_price_cents\":1}}", draft), "data.quantity" },
      { g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\"}", other), "data.customer_name" },
    };

    /* The 500-character reason passes the field rules: the refusal comes
     * from the log (expected_version 0), so nothing is appended. */
    {
      g_autofree char *b = od_body_one ("CancelOrder", draft, 0, "reason", r500);
      g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, b);

      od_test_assert_problem (r, 409, "version_conflict");
    }
    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        expect_invalid (cases[i].body, cases[i].field);
        g_free (cases[i].body);
      }
    /* An escaped NUL anywhere. */
    {
      g_autofree char *nul = g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"a\\u0000b\"}}", draft);
      g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, nul);

      od_test_assert_problem (r, 422, "invalid_command");
    }
  }
  g_assert_cmpint (od_test_head (server), ==, head);
}

/* ---- notes and refunds (v1.1) ---- */

static char *
refund_body (const char *order_id,
             gint64      amount_cents,
             const char *reason)
{
  g_autoptr(GString) data = g_string_new (NULL);

  g_string_printf (data, "{\"amount_cents\":%" G_GINT64_FORMAT ",\"reason\":", amount_cents);
  od_json_append_string (data, reason);
  g_string_append_c (data, '}');
  return od_body ("RefundOrder", order_id, -1, data->str);
}

/* An order delivered with a total of 2 × 1250 cents. */
static char *
delivered_order (void)
{
  char *id = new_order (OD_TEST_ALICE);
  g_autofree char *add = od_body_add (id, -1, "MUG", "Mug", 2, 1250);
  g_autofree char *place = od_body ("PlaceOrder", id, -1, NULL);
  g_autofree char *ship = od_body_ship (id, -1, "DHL", "T1");
  g_autofree char *deliver = od_body ("MarkDelivered", id, -1, NULL);

  ok_command (OD_TEST_ALICE, id, add);
  ok_command (OD_TEST_ALICE, id, place);
  ok_command (OD_TEST_ALICE, id, ship);
  ok_command (OD_TEST_ALICE, id, deliver);
  return id;
}

static void
test_add_order_note (void)
{
  g_autofree char *id = new_order (OD_TEST_ALICE);
  g_autofree char *note = od_body_one ("AddOrderNote", id, 1, "text", "Customer called \xe2\x98\x8e");
  g_autofree char *n2000 = od_repeat ("\xc3\xa9", 2000);
  g_autofree char *n2001 = od_repeat ("\xc3\xa9", 2001);
  g_autofree char *long_note = od_body_one ("AddOrderNote", id, -1, "text", n2000);
  g_autofree char *cancel = od_body_one ("CancelOrder", id, -1, "reason", "r");
  g_autofree char *after_cancel = od_body_one ("AddOrderNote", id, -1, "text", "After");
  g_autofree char *missing = od_uuid_v7_new ();
  g_autofree char *on_missing = od_body_one ("AddOrderNote", missing, -1, "text", "x");
  Ack a;
  gint64 head;

  a = ok_command (OD_TEST_BOB, id, note);
  g_assert_cmpint (a.version, ==, 2);
  check_event (&a, -1, id, "OrderNoteAdded", "bob", "{\"text\":\"Customer called \xe2\x98\x8e\"}");
  a = ok_command (OD_TEST_ALICE, id, long_note);
  g_assert_cmpint (a.version, ==, 3);
  /* Allowed in every status, cancelled too. */
  ok_command (OD_TEST_ALICE, id, cancel);
  a = ok_command (OD_TEST_ALICE, id, after_cancel);
  g_assert_cmpint (a.version, ==, 5);

  head = od_test_head (server);
  {
    struct { char *body; const char *field; } cases[] = {
      { od_body_one ("AddOrderNote", id, -1, "text", n2001), "data.text" },
      { od_body_one ("AddOrderNote", id, -1, "text", ""), "data.text" },
      { od_body_one ("AddOrderNote", id, -1, "text", "bell\a"), "data.text" },
      { od_body ("AddOrderNote", id, -1, "{}"), "data.text" },
      { od_body ("AddOrderNote", id, -1, "{\"text\":\"a\",\"author\":\"eve\"}"), "data.author" },
    };

    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        expect_invalid (cases[i].body, cases[i].field);
        g_free (cases[i].body);
      }
  }
  {
    g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, on_missing);

    od_test_assert_problem (r, 404, "not_found");
  }
  /* Viewers may not add notes. */
  {
    g_autoptr(OdTestResponse) r = command (OD_TEST_VICTOR, after_cancel);

    od_test_assert_problem (r, 403, "forbidden");
  }
  g_assert_cmpint (od_test_head (server), ==, head);
}

static void
test_refund_order (void)
{
  g_autofree char *id = delivered_order ();
  g_autofree char *r1 = refund_body (id, 1000, "Dented");
  g_autofree char *r2 = refund_body (id, 1501, "Too much");
  g_autofree char *r3 = refund_body (id, 1500, "The rest");
  g_autofree char *r4 = refund_body (id, 1, "Once more");
  Ack a;
  gint64 head;

  a = ok_command (OD_TEST_BOB, id, r1);
  g_assert_cmpint (a.version, ==, 6);
  check_event (&a, -1, id, "OrderRefunded", "bob", "{\"amount_cents\":1000,\"reason\":\"Dented\"}");

  /* Partially refunded: 1500 cents left; one more is refused with what
   * is still refundable, and nothing is appended. */
  head = od_test_head (server);
  {
    g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, r2);

    od_test_assert_problem (r, 422, "refund_exceeds_total");
    g_assert_cmpint (od_test_response_int (r, "refundable_cents"), ==, 1500);
  }
  g_assert_cmpint (od_test_head (server), ==, head);

  /* The whole rest: refunded; then nothing more may be refunded. */
  a = ok_command (OD_TEST_ALICE, id, r3);
  g_assert_cmpint (a.version, ==, 7);
  check_event (&a, -1, id, "OrderRefunded", "alice", "{\"amount_cents\":1500,\"reason\":\"The rest\"}");
  head = od_test_head (server);
  expect_invalid_state (r4);
  g_assert_cmpint (od_test_head (server), ==, head);

  /* A single refund of the whole total goes straight to refunded; one
   * beyond it is refused even as the first. */
  {
    g_autofree char *other = delivered_order ();
    g_autofree char *over = refund_body (other, 2501, "All and more");
    g_autofree char *all = refund_body (other, 2500, "All");
    g_autofree char *after = refund_body (other, 1, "After");
    g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, over);

    od_test_assert_problem (r, 422, "refund_exceeds_total");
    g_assert_cmpint (od_test_response_int (r, "refundable_cents"), ==, 2500);
    ok_command (OD_TEST_ALICE, other, all);
    expect_invalid_state (after);
  }

  /* Every status before delivered refuses a refund. */
  {
    g_autofree char *draft = new_order (OD_TEST_ALICE);
    g_autofree char *add = od_body_add (draft, -1, "S", "N", 1, 100);
    g_autofree char *place = od_body ("PlaceOrder", draft, -1, NULL);
    g_autofree char *ship = od_body_ship (draft, -1, "C", "T");
    g_autofree char *refund = refund_body (draft, 1, "r");
    g_autofree char *cancelled = new_order (OD_TEST_ALICE);
    g_autofree char *cancel = od_body_one ("CancelOrder", cancelled, -1, "reason", "r");
    g_autofree char *refund_cancelled = refund_body (cancelled, 1, "r");

    expect_invalid_state (refund);
    ok_command (OD_TEST_ALICE, draft, add);
    ok_command (OD_TEST_ALICE, draft, place);
    expect_invalid_state (refund);
    ok_command (OD_TEST_ALICE, draft, ship);
    expect_invalid_state (refund);
    ok_command (OD_TEST_ALICE, cancelled, cancel);
    expect_invalid_state (refund_cancelled);
  }

  /* Invalid fields. */
  head = od_test_head (server);
  {
    g_autofree char *other = delivered_order ();
    g_autofree char *r501 = od_repeat ("r", 501);
    struct { char *body; const char *field; } cases[] = {
      { refund_body (other, 0, "r"), "data.amount_cents" },
      { refund_body (other, -5, "r"), "data.amount_cents" },
      { refund_body (other, 1, ""), "data.reason" },
      { refund_body (other, 1, r501), "data.reason" },
      { od_body ("RefundOrder", other, -1, "{\"reason\":\"r\"}"), "data.amount_cents" },
      { od_body ("RefundOrder", other, -1, "{\"amount_cents\":1}"), "data.reason" },
    };

    head = od_test_head (server);
    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        expect_invalid (cases[i].body, cases[i].field);
        g_free (cases[i].body);
      }
    /* A string amount is malformed, not invalid. */
    {
      g_autofree char *b = od_body ("RefundOrder", other, -1,
                                    "{\"amount_cents\":\"1\",\"reason\":\"r\"}");
      g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, b);

      od_test_assert_problem (r, 400, "malformed");
    }
  }
  g_assert_cmpint (od_test_head (server), ==, head);
}

static void
test_payload_too_large (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *padding = od_repeat (" ", 70000);
  g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",%s"
                                           "\"data\":{\"customer_name\":\"A\",\"customer_email\":\"a@b\",\"currency\":\"EUR\"}}",
                                           id, padding);
  g_autofree char *exact = NULL;
  g_autoptr(OdTestResponse) r = command (OD_TEST_ALICE, body);
  g_autoptr(OdTestResponse) r2 = NULL;
  gsize base;

  od_test_assert_problem (r, 413, "payload_too_large");
  /* 65,536 bytes exactly is within the limit (valid, padded with spaces). */
  base = strlen (body) - strlen (padding);
  g_free (padding);
  padding = od_repeat (" ", 65536 - base);
  exact = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",%s"
                           "\"data\":{\"customer_name\":\"A\",\"customer_email\":\"a@b\",\"currency\":\"EUR\"}}",
                           id, padding);
  g_assert_cmpuint (strlen (exact), ==, 65536);
  r2 = command (OD_TEST_ALICE, exact);
  od_test_assert_status (r2, 200);
  g_clear_pointer (&r2, od_test_response_free);
  /* One more byte is not. */
  {
    g_autofree char *over = g_strconcat (exact, " ", NULL);

    r2 = command (OD_TEST_ALICE, over);
    od_test_assert_problem (r2, 413, "payload_too_large");
  }
}

static void
test_unsupported_media_type (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "A", "a@b", "EUR");
  const char *types[] = { "text/plain", "application/x-www-form-urlencoded", "application/problem+json",
                          "multipart/form-data; boundary=x", "application/jsonx",
                          "application/json; charset=iso-8859-1", "application/json x" };
  gint64 head = od_test_head (server);

  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree char *key = od_test_new_key ();
      g_autoptr(OdTestResponse) r = od_test_request (server, NULL, "POST", "/v1/commands", OD_TEST_ALICE,
                                                     types[i], body, -1, "Idempotency-Key", key, NULL);

      g_test_message ("Content-Type: %s", types[i]);
      od_test_assert_problem (r, 415, "unsupported_media_type");
    }
  g_assert_cmpint (od_test_head (server), ==, head);
}

static void
test_headers_too_large (void)
{
  g_autofree char *big = od_repeat ("h", 20 * 1024);
  g_autoptr(OdTestResponse) r = od_test_request (server, NULL, "GET", "/v1/head", OD_TEST_VICTOR,
                                                 NULL, NULL, 0, "X-Big", big, NULL);
  g_autoptr(OdTestResponse) after = NULL;

  od_test_assert_problem (r, 431, "headers_too_large");
  /* Just under the limit is fine. */
  g_free (big);
  big = od_repeat ("h", 12 * 1024);
  after = od_test_request (server, NULL, "GET", "/v1/head", OD_TEST_VICTOR, NULL, NULL, 0,
                           "X-Big", big, NULL);
  od_test_assert_status (after, 200);
}

static void
test_rate_limited (void)
{
  g_autoptr(OdTestServer) limited = od_test_server_new ("--rate-limit", "5:5", NULL);
  g_autoptr(OdTestResponse) refused = NULL;
  g_autofree char *refused_key = NULL;
  g_autofree char *refused_body = NULL;
  guint ok = 0, limited_count = 0;
  gint64 retry_after;

  for (guint i = 0; i < 15; i++)
    {
      g_autofree char *id = od_uuid_v7_new ();
      g_autofree char *body = od_body_create (id, "A", "a@b", "EUR");
      g_autofree char *key = od_test_new_key ();
      OdTestResponse *r = od_test_command (limited, NULL, OD_TEST_ALICE, key, body);

      if (r->status == 200)
        ok++;
      else
        {
          od_test_assert_problem (r, 429, "rate_limited");
          limited_count++;
          if (refused == NULL)
            {
              refused = r;
              refused_key = g_steal_pointer (&key);
              refused_body = g_steal_pointer (&body);
              continue;
            }
        }
      od_test_response_free (r);
    }
  g_assert_cmpuint (ok, >=, 5);
  g_assert_cmpuint (limited_count, >=, 1);
  retry_after = g_ascii_strtoll (od_test_response_header (refused, "Retry-After"), NULL, 10);
  g_assert_cmpint (retry_after, >=, 1);
  g_assert_cmpint (retry_after, <=, 60);
  g_assert_cmpint (od_test_response_int (refused, "retry_after"), ==, retry_after);

  /* Reads are not limited. */
  {
    g_autoptr(OdTestResponse) head = od_test_get (limited, OD_TEST_VICTOR, "/v1/head");

    od_test_assert_status (head, 200);
  }
  /* The limit is per token: bob still has his burst. */
  {
    g_autofree char *id = od_uuid_v7_new ();
    g_autofree char *body = od_body_create (id, "B", "b@b", "EUR");
    g_autofree char *key = od_test_new_key ();
    g_autoptr(OdTestResponse) r = od_test_command (limited, NULL, OD_TEST_BOB, key, body);

    od_test_assert_status (r, 200);
  }
  /* A refusal before the log stores nothing: after Retry-After, the same
   * key is processed, not replayed. */
  g_usleep (retry_after * G_USEC_PER_SEC + 200 * 1000);
  {
    g_autoptr(OdTestResponse) again = od_test_command (limited, NULL, OD_TEST_ALICE, refused_key,
                                                       refused_body);

    od_test_assert_status (again, 200);
    g_assert_null (od_test_response_header (again, "Idempotent-Replayed"));
  }
}

/* ---- reads ---- */

/* Events of large notes: a page stops once it passes 16 MiB rather than
 * grow to what a client refuses (10,000 such events are ~80 MB); the
 * next page goes on from its last event. */
static void
test_events_page_bytes (void)
{
  g_autofree char *id = new_order (OD_TEST_ALICE);
  /* 2,000 four-byte characters: 8,000 bytes of data an event. */
  g_autofree char *text = od_repeat ("\xf0\x9f\x93\xa6", 2000);
  g_autofree char *body = od_body_one ("AddOrderNote", id, -1, "text", text);
  g_autofree char *path = NULL;
  g_autoptr(OdTestResponse) r = NULL;
  g_autoptr(OdTestResponse) next = NULL;
  JsonArray *events;
  gint64 last;
  guint n;

  for (guint i = 0; i < 2200; i++)
    od_test_command_ok (server, NULL, i % 2 ? OD_TEST_BOB : OD_TEST_ALICE, body, NULL);
  r = od_test_get (server, OD_TEST_VICTOR, "/v1/events?limit=10000");
  od_test_assert_status (r, 200);
  g_test_message ("a page of 10,000: %" G_GSIZE_FORMAT " bytes", r->len);
  g_assert_cmpuint (r->len, <, 16 * 1024 * 1024 + 64 * 1024);
  events = json_object_get_array_member (od_test_response_object (r), "events");
  n = json_array_get_length (events);
  g_assert_cmpuint (n, >, 1000);
  g_assert_cmpint (json_object_get_int_member (od_test_response_object (r), "head"), ==,
                   od_test_head (server));
  last = json_object_get_int_member (json_array_get_object_element (events, n - 1), "position");
  g_assert_cmpint (last, <, od_test_head (server));
  path = g_strdup_printf ("/v1/events?after=%" G_GINT64_FORMAT "&limit=10000", last);
  next = od_test_get (server, OD_TEST_VICTOR, path);
  od_test_assert_status (next, 200);
  events = json_object_get_array_member (od_test_response_object (next), "events");
  g_assert_cmpuint (json_array_get_length (events), >, 0);
  g_assert_cmpint (json_object_get_int_member (json_array_get_object_element (events, 0), "prev"),
                   ==, last);
}

static void
test_events_page (void)
{
  g_autofree char *id = new_order (OD_TEST_ALICE);
  g_autoptr(GPtrArray) all = NULL;
  gint64 head;
  gint64 first_after;

  /* More than a default page. */
  for (guint i = 0; i < 1010; i++)
    {
      g_autofree char *body = od_body_add (id, -1, "S", "N", 1, 1);

      od_test_command_ok (server, NULL, OD_TEST_BOB, body, NULL);
    }
  head = od_test_head (server);
  all = od_test_events (server, 0);
  g_assert_cmpuint (all->len, >, 1010);
  od_test_assert_chain (all, 0);
  g_assert_cmpint (((OdEvent *) g_ptr_array_index (all, all->len - 1))->position, ==, head);
  first_after = ((OdEvent *) g_ptr_array_index (all, 0))->position;

  {
    struct { const char *query; guint count; gint64 first; } cases[] = {
      { "", 1000, first_after },
      { "?after=0", 1000, first_after },
      { "?after=-5", 1000, first_after },
      { "?limit=0", 1, first_after },
      { "?limit=-3", 1, first_after },
      { "?limit=1", 1, first_after },
      { "?limit=20000", MIN (all->len, 10000), first_after },
      { "?limit=10000", MIN (all->len, 10000), first_after },
    };

    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        g_autofree char *path = g_strconcat ("/v1/events", cases[i].query, NULL);
        g_autoptr(OdTestResponse) r = od_test_get (server, OD_TEST_VICTOR, path);
        JsonArray *events;

        g_test_message ("GET %s", path);
        od_test_assert_status (r, 200);
        g_assert_true (g_str_has_prefix (od_test_response_header (r, "Content-Type"), "application/json"));
        events = json_object_get_array_member (od_test_response_object (r), "events");
        g_assert_cmpuint (json_array_get_length (events), ==, cases[i].count);
        g_assert_cmpint (json_object_get_int_member (json_array_get_object_element (events, 0), "position"),
                         ==, cases[i].first);
        g_assert_cmpint (od_test_response_int (r, "head"), >=, head);
      }
  }
  /* After the head: empty, with the head. */
  {
    g_autofree char *path = g_strdup_printf ("/v1/events?after=%" G_GINT64_FORMAT, head);
    g_autoptr(OdTestResponse) r = od_test_get (server, OD_TEST_VICTOR, path);

    od_test_assert_status (r, 200);
    g_assert_cmpuint (json_array_get_length (json_object_get_array_member (od_test_response_object (r), "events")), ==, 0);
    g_assert_cmpint (od_test_response_int (r, "head"), ==, head);
  }
  /* A page from the middle continues the chain. */
  {
    OdEvent *mid = g_ptr_array_index (all, 500);
    g_autoptr(GPtrArray) tail = od_test_events (server, mid->position);

    g_assert_cmpuint (tail->len, ==, all->len - 501);
    od_test_assert_chain (tail, mid->position);
  }
  /* Not an integer: malformed. */
  {
    const char *bad[] = { "?after=abc", "?after=1.5", "?after=", "?after=1e3", "?after=0x10",
                          "?limit=x", "?limit=1.0", "?after=99999999999999999999",
                          "?limit=99999999999999999999", "?after=5abc" };

    for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
      {
        g_autofree char *path = g_strconcat ("/v1/events", bad[i], NULL);
        g_autoptr(OdTestResponse) r = od_test_get (server, OD_TEST_VICTOR, path);

        g_test_message ("GET %s", path);
        od_test_assert_problem (r, 400, "malformed");
      }
  }
}

static void
test_head_and_health (void)
{
  g_autoptr(OdTestResponse) head = od_test_get (server, OD_TEST_VICTOR, "/v1/head");
  g_autoptr(OdTestResponse) health = od_test_get (server, NULL, "/v1/health");
  g_autoptr(OdTestResponse) health_q = od_test_get (server, NULL, "/v1/health?x=1");
  g_autoptr(OdTestResponse) head_op = od_test_get (server, OD_TEST_ALICE, "/v1/head");
  gint64 position;

  od_test_assert_status (head, 200);
  g_assert_true (g_str_has_prefix (od_test_response_header (head, "Content-Type"), "application/json"));
  g_assert_cmpint (od_test_response_int (head, "head"), >=, 0);
  g_assert_true (timestamp_is_recent (od_test_response_string (head, "server_time")));
  od_test_assert_status (head_op, 200);
  od_test_assert_status (health, 200);
  g_assert_cmpstr (od_test_response_string (health, "status"), ==, "ok");
  /* A query string on a route that takes none is ignored. */
  od_test_assert_status (health_q, 200);

  /* The head follows the acknowledged position. */
  g_free (od_test_create_order (server, NULL, OD_TEST_ALICE, &position));
  g_assert_cmpint (od_test_head (server), ==, position);
}

/* A stopped server keeps the log: restart on the same store. */
static void
test_restart_keeps_log (void)
{
  g_autoptr(OdTestServer) s = od_test_server_new (NULL);
  g_autofree char *id = NULL;
  g_autoptr(GPtrArray) before = NULL;
  g_autoptr(GPtrArray) after = NULL;
  gint64 position;

  id = od_test_create_order (s, NULL, OD_TEST_ALICE, &position);
  before = od_test_events (s, 0);
  od_test_server_stop (s);
  od_test_server_start (s);
  after = od_test_events (s, 0);
  g_assert_cmpuint (after->len, ==, before->len);
  g_assert_cmpint (od_test_head (s), ==, position);
  {
    g_autofree char *body = od_body_add (id, 1, "S", "N", 1, 1);
    gint64 version;
    gint64 p = od_test_command_ok (s, NULL, OD_TEST_ALICE, body, &version);

    g_assert_cmpint (version, ==, 2);
    g_assert_cmpint (p, >, position);
  }
}

int
main (int   argc,
      char *argv[])
{
  int status;

  g_test_init (&argc, &argv, NULL);
  g_test_message ("store: %s", od_test_store_kind ());
  server = od_test_server_new (NULL);

  g_test_add_func ("/commands/lifecycle", test_lifecycle);
  g_test_add_func ("/commands/cancel", test_cancel);
  g_test_add_func ("/commands/optional-members", test_optional_members);
  g_test_add_func ("/errors/malformed", test_malformed);
  g_test_add_func ("/errors/unauthorized", test_unauthorized);
  g_test_add_func ("/errors/forbidden", test_forbidden);
  g_test_add_func ("/errors/not-found", test_not_found);
  g_test_add_func ("/errors/method-not-allowed", test_method_not_allowed);
  g_test_add_func ("/errors/version-conflict", test_version_conflict);
  g_test_add_func ("/errors/invalid-state", test_invalid_state);
  g_test_add_func ("/errors/line-limits", test_line_limits);
  g_test_add_func ("/commands/add-order-note", test_add_order_note);
  g_test_add_func ("/commands/refund-order", test_refund_order);
  g_test_add_func ("/errors/order-exists", test_order_exists);
  g_test_add_func ("/errors/idempotency-key-missing", test_idempotency_key_missing);
  g_test_add_func ("/errors/idempotency-key-reused", test_idempotency_key_reused);
  g_test_add_func ("/errors/invalid-command", test_invalid_command);
  g_test_add_func ("/errors/payload-too-large", test_payload_too_large);
  g_test_add_func ("/errors/unsupported-media-type", test_unsupported_media_type);
  g_test_add_func ("/errors/headers-too-large", test_headers_too_large);
  g_test_add_func ("/errors/rate-limited", test_rate_limited);
  g_test_add_func ("/reads/events-page", test_events_page);
  g_test_add_func ("/reads/events-page-bytes", test_events_page_bytes);
  g_test_add_func ("/reads/head-and-health", test_head_and_health);
  g_test_add_func ("/server/restart-keeps-log", test_restart_keeps_log);
  /* Last: it waits for the request timeout of its own server. */
  g_test_add_func ("/timeouts/request-timeout", test_request_timeout);

  status = g_test_run ();
  od_test_server_free (server);
  return status;
}

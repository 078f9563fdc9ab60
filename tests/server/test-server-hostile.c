/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Hostile input, table-driven: every request below must get the right 4xx
 * as problem+json, leave the log and the head as they were, and leave the
 * server up.  Requests go over raw sockets so that anything can be sent.
 *
 * Some requests are so broken that libsoup's HTTP parser answers itself,
 * before the server's handler runs, with a bare status and no body (a
 * garbage request line, an unparsable Content-Length, HTTP/2.0 on an
 * HTTP/1 port, an unknown Transfer-Encoding).  Those rows are marked BARE:
 * the status must match, the body may be empty.
 *
 * Mismatching rows are collected and reported together at the end, after
 * the state checks and after the server has been stopped, so that one
 * wrong answer does not hide the others (nor, under valgrind, the leak
 * report). */
#include "od-test-server.h"
#include "od-test-bodies.h"

#include <string.h>

#define REQUEST_TIMEOUT 2

enum
{
  BARE = 1 << 0, /* libsoup may answer without problem details */
  SLOW = 1 << 1, /* only the request timeout ends it */
};

typedef struct
{
  char       *name;
  GBytes     *request;
  guint       status;
  const char *code;
  guint       flags;
} Case;

static OdTestServer *server;
static GPtrArray *cases;
static char *draft_id;    /* a draft order with one line */
static char *placed_id;   /* a placed order */
static guint key_counter;

static void
case_free (Case *c)
{
  g_free (c->name);
  g_bytes_unref (c->request);
  g_free (c);
}

static void
add_raw (const char  *name,
         const void  *request,
         gsize        len,
         guint        status,
         const char  *code,
         guint        flags)
{
  Case *c = g_new0 (Case, 1);

  c->name = g_strdup (name);
  c->request = g_bytes_new (request, len);
  c->status = status;
  c->code = code;
  c->flags = flags;
  g_ptr_array_add (cases, c);
}

static const char *auth_alice = "Authorization: Bearer " OD_TEST_ALICE "\r\n";
static const char *auth_victor = "Authorization: Bearer " OD_TEST_VICTOR "\r\n";

/* A command with the given header lines (NULL: alice's token, a fresh key
 * and the JSON media type) and the body with its true length. */
static void
add_command_full (const char *name,
                  const char *headers,
                  const char *body,
                  gssize      len,
                  guint       status,
                  const char *code)
{
  g_autoptr(GString) r = g_string_new ("POST /v1/commands HTTP/1.1\r\nHost: localhost\r\n");

  if (len < 0)
    len = strlen (body);
  if (headers == NULL)
    g_string_append_printf (r, "%sIdempotency-Key: hostile-%u\r\nContent-Type: application/json\r\n",
                            auth_alice, key_counter++);
  else
    g_string_append (r, headers);
  g_string_append_printf (r, "Content-Length: %" G_GSSIZE_FORMAT "\r\nConnection: close\r\n\r\n", len);
  g_string_append_len (r, body, len);
  add_raw (name, r->str, r->len, status, code, 0);
}

static void
add_command (const char *name,
             const char *body,
             gssize      len,
             guint       status,
             const char *code)
{
  add_command_full (name, NULL, body, len, status, code);
}

static void
add_get (const char *name,
         const char *method,
         const char *path,
         const char *headers,
         guint       status,
         const char *code)
{
  g_autofree char *r = g_strdup_printf ("%s %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: close\r\n\r\n",
                                        method, path, headers ? headers : auth_victor);

  add_raw (name, r, strlen (r), status, code, 0);
}

/* ---- the table ---- */

static void
add_malformed_json (void)
{
  const char *bodies[] = {
    "", " ", "\n", "{", "}", "[", "]", "{]", "[}", "{\"type\"", "{\"type\":}", "{\"type\" \"x\"}",
    "{,}", "{\"a\":1,,\"b\":2}", "{\"a\":1,}", "{\"a\":[1,]}", "{\"a\":[1,2}", "{\"a\":{}",
    "{\"a\":1}}", "{\"a\":1} x", "nul", "null", "true", "false", "42", "-1", "\"string\"", "[]",
    "[{}]", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":\"unterminated}", "{\"a\":\"\\u12\"}",
    "{\"a\":--1}", "{\"a\":1e}", "{\"a\":-}",
    "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":+1}", "{\"a\" = 1}", "{\"a\";1}", "\x7f{}",
  };
  g_autofree char *good = od_body_create ("0193a1c2-7f00-7abc-8def-0123456789ab", "Ada", "a@b", "EUR");
  gsize good_len = strlen (good);

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autofree char *name = g_strdup_printf ("malformed json %u: %s", i, bodies[i]);

      add_command (name, bodies[i], -1, 400, "malformed");
    }
  /* Every truncation of a good body. */
  for (gsize cut = 1; cut < good_len; cut += 5)
    {
      g_autofree char *name = g_strdup_printf ("truncated json at %" G_GSIZE_FORMAT, cut);

      add_command (name, good, cut, 400, "malformed");
    }
}

/* A wrong JSON type in each member of each command: 400 malformed.  The
 * commands target a real draft order, so accepting one would show in the
 * log. */
static void
add_wrong_types (void)
{
  const char *not_string[] = { "1", "1.5", "true", "null", "[]", "{}", "[\"x\"]" };
  const char *not_int[] = { "\"1\"", "1.5", "2.0", "1e3", "true", "null", "[]", "{}", "1e30" };
  struct { const char *type; const char *fields[4]; const char *ints[2]; } commands[] = {
    { "CreateOrder", { "customer_name", "customer_email", "currency" }, { NULL } },
    { "AddItem", { "sku", "name" }, { "quantity", "unit_price_cents" } },
    { "RemoveItem", { "sku" }, { NULL } },
    { "ShipOrder", { "carrier", "tracking_number" }, { NULL } },
    { "CancelOrder", { "reason" }, { NULL } },
  };
  const char *good_values[] = {
    "customer_name", "\"Ada\"", "customer_email", "\"a@b\"", "currency", "\"EUR\"",
    "sku", "\"SKU-1\"", "name", "\"Mug\"", "quantity", "1", "unit_price_cents", "100",
    "carrier", "\"DHL\"", "tracking_number", "\"T1\"", "reason", "\"because\"",
  };

  for (guint c = 0; c < G_N_ELEMENTS (commands); c++)
    {
      const char *all[6] = { NULL };
      guint n_all = 0;

      for (guint f = 0; f < 4 && commands[c].fields[f]; f++)
        all[n_all++] = commands[c].fields[f];
      for (guint f = 0; f < 2 && commands[c].ints[f]; f++)
        all[n_all++] = commands[c].ints[f];

      for (guint target = 0; target < n_all; target++)
        {
          gboolean is_int = g_str_equal (all[target], "quantity") || g_str_equal (all[target], "unit_price_cents");
          const char **wrong = is_int ? not_int : not_string;
          guint n_wrong = is_int ? G_N_ELEMENTS (not_int) : G_N_ELEMENTS (not_string);

          for (guint w = 0; w < n_wrong; w++)
            {
              g_autoptr(GString) data = g_string_new ("{");
              g_autofree char *body = NULL;
              g_autofree char *name = NULL;
              const char *id = g_str_equal (commands[c].type, "CreateOrder") ? "0193a1c2-7f00-7abc-8def-00000000c0de" : draft_id;

              for (guint f = 0; f < n_all; f++)
                {
                  const char *value = wrong[w];

                  if (f != target)
                    for (guint g = 0; g < G_N_ELEMENTS (good_values); g += 2)
                      if (g_str_equal (good_values[g], all[f]))
                        value = good_values[g + 1];
                  g_string_append_printf (data, "%s\"%s\":%s", f ? "," : "", all[f], value);
                }
              g_string_append_c (data, '}');
              body = od_body (commands[c].type, id, -1, data->str);
              name = g_strdup_printf ("wrong type %s.%s = %s", commands[c].type, all[target], wrong[w]);
              add_command (name, body, -1, 400, "malformed");
            }
        }
    }

  /* The envelope's own members. */
  {
    const char *type_values[] = { "1", "true", "null", "[]", "{}", "[\"PlaceOrder\"]" };
    const char *version_values[] = { "\"1\"", "1.5", "2.0", "true", "[]", "{}", "\"\"" };
    const char *data_values[] = { "\"{}\"", "1", "true", "[]", "[{}]" };

    for (guint i = 0; i < G_N_ELEMENTS (type_values); i++)
      {
        g_autofree char *body = g_strdup_printf ("{\"type\":%s,\"order_id\":\"%s\"}", type_values[i], draft_id);
        g_autofree char *name = g_strdup_printf ("wrong type type = %s", type_values[i]);

        add_command (name, body, -1, 400, "malformed");
      }
    for (guint i = 0; i < G_N_ELEMENTS (type_values); i++)
      {
        g_autofree char *body = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":%s}", type_values[i]);
        g_autofree char *name = g_strdup_printf ("wrong type order_id = %s", type_values[i]);

        add_command (name, body, -1, 400, "malformed");
      }
    for (guint i = 0; i < G_N_ELEMENTS (version_values); i++)
      {
        g_autofree char *body = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"expected_version\":%s}",
                                                 draft_id, version_values[i]);
        g_autofree char *name = g_strdup_printf ("wrong type expected_version = %s", version_values[i]);

        add_command (name, body, -1, 400, "malformed");
      }
    for (guint i = 0; i < G_N_ELEMENTS (data_values); i++)
      {
        g_autofree char *body = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"data\":%s}",
                                                 draft_id, data_values[i]);
        g_autofree char *name = g_strdup_printf ("wrong type data = %s", data_values[i]);

        add_command (name, body, -1, 400, "malformed");
      }
  }
}

static void
add_field_rules (void)
{
  g_autofree char *huge = od_repeat ("\xe6\xbc\xa2", 20000);   /* 60,000 bytes */
  g_autofree char *huge_ascii = od_repeat ("A", 65000);
  struct { char *body; } bodies[] = {
    { od_body_create ("0193a1c2-7f00-7abc-8def-00000000c0de", huge, "a@b", "EUR") },
    { od_body_add (draft_id, -1, huge_ascii, "N", 1, 1) },
    { od_body_add (draft_id, -1, "S", huge, 1, 1) },
    { od_body_one ("CancelOrder", draft_id, -1, "reason", huge) },
    { od_body_ship (placed_id, -1, "C", huge) },
    { od_body_add (draft_id, -1, "S", "N", 0, 1) },
    { od_body_add (draft_id, -1, "S", "N", G_MAXINT64, 1) },
    { od_body_add (draft_id, -1, "S", "N", G_MININT64, 1) },
    { od_body_add (draft_id, -1, "S", "N", 1, G_MAXINT64) },
    { od_body_add (draft_id, -1, "S\r\nX-Injected: 1", "N", 1, 1) },
    { od_body_add (draft_id, -1, "../../etc/passwd", "N", 1, 1) },
    { od_body_add (draft_id, -1, "S", "\x1b[31mred", 1, 1) },
    { od_body_add (draft_id, -1, "S", "\xe2\x80\x83" "em space first", 1, 1) },
    { od_body ("PlaceOrder", "' OR 1=1 --", -1, NULL) },
    { od_body ("PlaceOrder", "0193a1c2-7f00-7abc-8def-0123456789ab'; DROP TABLE events; --", -1, NULL) },
    { od_body ("placeorder", draft_id, -1, NULL) },
    { od_body ("PlaceOrder ", draft_id, -1, NULL) },
    { od_body ("", draft_id, -1, NULL) },
    { od_body ("PlaceOrder", draft_id, -1, "{\"__proto__\":{}}") },
    { g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"expected_version\":-1}", draft_id) },
    { g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"Type\":\"x\"}", draft_id) },
    { g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"a\\u0000b\"}}", draft_id) },
    { g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"ok\",\"x\\u0000\":1}}", draft_id) },
    { g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"\\u0000\"}}", draft_id) },
    { g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"\\u001b\"}}", draft_id) },
  };

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autofree char *name = g_strdup_printf ("field rule %u: %.60s", i, bodies[i].body);

      add_command (name, bodies[i].body, -1, 422, "invalid_command");
      g_free (bodies[i].body);
    }
}

static void
add_encoding (void)
{
  const char *bad_utf8[] = {
    "\xff", "\xfe\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xed\xbf\xbf",
    "\xf8\x88\x80\x80\x80", "\xf4\x90\x80\x80", "\x80", "\xe2\x82", "caf\xe9",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad_utf8); i++)
    {
      g_autofree char *in_value = g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"%s\"}}",
                                                   draft_id, bad_utf8[i]);
      g_autofree char *in_name = g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"r\"},\"%s\":1}",
                                                  draft_id, bad_utf8[i]);
      g_autofree char *n1 = g_strdup_printf ("invalid UTF-8 %u in a value", i);
      g_autofree char *n2 = g_strdup_printf ("invalid UTF-8 %u in a member name", i);

      add_command (n1, in_value, -1, 400, "malformed");
      add_command (n2, in_name, -1, 400, "malformed");
    }

  /* A raw NUL byte, inside a string and between tokens. */
  {
    g_autofree char *body = g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"aXb\"}}", draft_id);
    char *x = strstr (body, "aXb");

    x[1] = '\0';
    add_command ("raw NUL in a string", body, strlen (x + 2) + (x + 2 - body), 400, "malformed");
    x[1] = 'X';
  }
  add_command ("raw NUL between tokens", "{\"type\":\0\"PlaceOrder\"}", 23, 400, "malformed");

  /* Nesting: refused before json-glib's recursive parser sees it. */
  {
    g_autofree char *open33 = od_repeat ("{\"a\":", 33);
    g_autofree char *close33 = od_repeat ("}", 33);
    g_autofree char *deep33 = g_strconcat (open33, "1", close33, NULL);
    g_autofree char *brackets = od_repeat ("[", 60000);
    g_autofree char *braces = od_repeat ("{\"a\":", 12000);
    g_autofree char *inner = od_repeat ("[", 40000);
    g_autofree char *in_object = g_strconcat ("{\"type\":", inner, NULL);
    g_autofree char *mixed = od_repeat ("[{\"a\":", 5000);

    add_command ("nested 33 objects", deep33, -1, 400, "malformed");
    add_command ("60,000 [", brackets, -1, 400, "malformed");
    add_command ("12,000 nested objects", braces, -1, 400, "malformed");
    add_command ("40,000 [ inside an object", in_object, -1, 400, "malformed");
    add_command ("5,000 [{ pairs", mixed, -1, 400, "malformed");
  }
}

static void
add_sizes (void)
{
  g_autofree char *over = g_malloc (65537);
  g_autofree char *deep = od_repeat ("[", 100000);
  g_autofree char *huge_string = NULL;
  g_autoptr(GString) chunked = g_string_new (NULL);
  g_autoptr(GString) chunked_open = g_string_new (NULL);
  g_autofree char *cl_10mb = NULL;

  memset (over, ' ', 65537);
  over[0] = '{';
  over[65536] = '}';
  add_command ("65,537 bytes", over, 65537, 413, "payload_too_large");
  add_command ("100,000 [", deep, -1, 413, "payload_too_large");
  {
    g_autofree char *s = od_repeat ("x", 200000);

    huge_string = g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"%s\"}}", draft_id, s);
    add_command ("a 200 KB string", huge_string, -1, 413, "payload_too_large");
  }

  /* Content-Length of 10 MB with only the start of the body: the answer
   * comes from the header, before reading. */
  cl_10mb = g_strdup_printf ("POST /v1/commands HTTP/1.1\r\nHost: localhost\r\n%sIdempotency-Key: big-1\r\n"
                             "Content-Type: application/json\r\nContent-Length: 10485760\r\nConnection: close\r\n\r\n{\"type\":",
                             auth_alice);
  add_raw ("Content-Length 10 MB", cl_10mb, strlen (cl_10mb), 413, "payload_too_large", 0);

  /* Chunked: complete and over the limit, and over the limit but never
   * finished. */
  g_string_append_printf (chunked, "POST /v1/commands HTTP/1.1\r\nHost: localhost\r\n%sIdempotency-Key: big-2\r\n"
                          "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                          auth_alice);
  g_string_append (chunked_open, chunked->str);
  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *pad = od_repeat (" ", 4096);

      g_string_append_printf (chunked, "1000\r\n%s\r\n", pad);
      g_string_append_printf (chunked_open, "1000\r\n%s\r\n", pad);
    }
  g_string_append (chunked, "0\r\n\r\n");
  add_raw ("chunked 80 KB", chunked->str, chunked->len, 413, "payload_too_large", 0);
  add_raw ("chunked 80 KB, unfinished", chunked_open->str, chunked_open->len, 413, "payload_too_large", 0);
}

static void
add_headers (void)
{
  g_autofree char *body = od_body ("PlaceOrder", draft_id, 99, NULL);   /* a version conflict if it got through */
  g_autofree char *long_token = od_repeat ("t", 600);
  g_autofree char *long_key = od_repeat ("k", 129);
  g_autofree char *big_header = od_repeat ("h", 20 * 1024);
  const char *ct = "Content-Type: application/json\r\n";
  struct { const char *name; char *headers; guint status; const char *code; } rows[] = {
    { "no Authorization", g_strdup_printf ("Idempotency-Key: h-a1\r\n%s", ct), 401, "unauthorized" },
    { "two Authorization", g_strdup_printf ("%s%sIdempotency-Key: h-a2\r\n%s", auth_alice, auth_alice, ct), 401, "unauthorized" },
    { "Authorization alice then victor", g_strdup_printf ("%s%sIdempotency-Key: h-a3\r\n%s", auth_alice, auth_victor, ct), 401, "unauthorized" },
    { "Basic auth", g_strdup_printf ("Authorization: Basic YWxpY2U6eA==\r\nIdempotency-Key: h-a4\r\n%s", ct), 401, "unauthorized" },
    { "Bearer without token", g_strdup_printf ("Authorization: Bearer\r\nIdempotency-Key: h-a5\r\n%s", ct), 401, "unauthorized" },
    { "Bearer, two spaces", g_strdup_printf ("Authorization: Bearer  " OD_TEST_ALICE "x\r\nIdempotency-Key: h-a6\r\n%s", ct), 401, "unauthorized" },
    { "token with a space", g_strdup_printf ("Authorization: Bearer op-alice secret\r\nIdempotency-Key: h-a7\r\n%s", ct), 401, "unauthorized" },
    { "token with a control character", g_strdup_printf ("Authorization: Bearer op-alice\x01secret\r\nIdempotency-Key: h-a8\r\n%s", ct), 401, "unauthorized" },
    { "token not ASCII", g_strdup_printf ("Authorization: Bearer op-alice-s\xc3\xa9" "cret\r\nIdempotency-Key: h-a9\r\n%s", ct), 401, "unauthorized" },
    { "token of 600 characters", g_strdup_printf ("Authorization: Bearer %s\r\nIdempotency-Key: h-a10\r\n%s", long_token, ct), 401, "unauthorized" },
    { "token prefix", g_strdup_printf ("Authorization: Bearer op-alice\r\nIdempotency-Key: h-a11\r\n%s", ct), 401, "unauthorized" },
    { "token hash instead of token", g_strdup_printf ("Authorization: Bearer %s\r\nIdempotency-Key: h-a12\r\n%s",
                                                      "2b7e3c1a9f0d4e5b6c7a8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c", ct), 401, "unauthorized" },
    { "viewer token", g_strdup_printf ("%sIdempotency-Key: h-a13\r\n%s", auth_victor, ct), 403, "forbidden" },
    { "no Idempotency-Key", g_strdup_printf ("%s%s", auth_alice, ct), 400, "idempotency_key_missing" },
    { "empty Idempotency-Key", g_strdup_printf ("%sIdempotency-Key: \r\n%s", auth_alice, ct), 400, "idempotency_key_missing" },
    { "two Idempotency-Key", g_strdup_printf ("%sIdempotency-Key: h-b1\r\nIdempotency-Key: h-b1\r\n%s", auth_alice, ct), 400, "idempotency_key_missing" },
    { "Idempotency-Key of 129", g_strdup_printf ("%sIdempotency-Key: %s\r\n%s", auth_alice, long_key, ct), 400, "idempotency_key_missing" },
    { "Idempotency-Key not ASCII", g_strdup_printf ("%sIdempotency-Key: cl\xc3\xa9\r\n%s", auth_alice, ct), 400, "idempotency_key_missing" },
    { "Idempotency-Key with a control character", g_strdup_printf ("%sIdempotency-Key: a\x01z\r\n%s", auth_alice, ct), 400, "idempotency_key_missing" },
    { "Content-Type text/plain", g_strdup_printf ("%sIdempotency-Key: h-c1\r\nContent-Type: text/plain\r\n", auth_alice), 415, "unsupported_media_type" },
    { "Content-Type form", g_strdup_printf ("%sIdempotency-Key: h-c2\r\nContent-Type: application/x-www-form-urlencoded\r\n", auth_alice), 415, "unsupported_media_type" },
    { "Content-Type garbage", g_strdup_printf ("%sIdempotency-Key: h-c3\r\nContent-Type: \x01\x02\r\n", auth_alice), 415, "unsupported_media_type" },
    { "Content-Type JSON in Latin-1", g_strdup_printf ("%sIdempotency-Key: h-c4\r\nContent-Type: application/json; charset=iso-8859-1\r\n", auth_alice), 415, "unsupported_media_type" },
    /* Media types are case-insensitive: these get through to the
     * version conflict. */
    { "Content-Type Application/JSON", g_strdup_printf ("%sIdempotency-Key: h-c5\r\nContent-Type: Application/JSON; Charset=UTF-8\r\n", auth_alice), 409, "version_conflict" },
    { "Content-Type APPLICATION/JSON", g_strdup_printf ("%sIdempotency-Key: h-c6\r\nContent-Type: APPLICATION/JSON\r\n", auth_alice), 409, "version_conflict" },

    { "headers of 20 KiB", g_strdup_printf ("%sIdempotency-Key: h-d1\r\n%sX-Big: %s\r\n", auth_alice, ct, big_header), 431, "headers_too_large" },
    /* Gets through every check: the version conflict shows that the
     * headers above were the only fault. */
    { "control row", g_strdup_printf ("%sIdempotency-Key: h-ok\r\n%s", auth_alice, ct), 409, "version_conflict" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      add_command_full (rows[i].name, rows[i].headers, body, -1, rows[i].status, rows[i].code);
      g_free (rows[i].headers);
    }

  /* 413 is decided from the headers, before the token and the role. */
  {
    const char *who[] = { auth_victor, "" };

    for (guint i = 0; i < G_N_ELEMENTS (who); i++)
      {
        g_autofree char *request = g_strdup_printf (
          "POST /v1/commands HTTP/1.1\r\nHost: localhost\r\n%sIdempotency-Key: h-e%u\r\n%s"
          "Content-Length: 70000\r\n\r\n%s", who[i], i, ct, body);

        add_raw (i == 0 ? "viewer token, body declared over 64 KiB"
                        : "no token, body declared over 64 KiB",
                 request, strlen (request), 413, "payload_too_large", 0);
      }
  }

  /* Reads without or with bad tokens. */
  add_get ("GET /v1/events without token", "GET", "/v1/events", "", 401, "unauthorized");
  add_get ("GET /v1/head with a wrong token", "GET", "/v1/head", "Authorization: Bearer wrong\r\n", 401, "unauthorized");
  add_get ("GET /v1/events/stream without token", "GET", "/v1/events/stream", "", 401, "unauthorized");
  add_get ("GET /v1/head with two tokens", "GET", "/v1/head",
           "Authorization: Bearer " OD_TEST_VICTOR "\r\nAuthorization: Bearer " OD_TEST_VICTOR "\r\n", 401, "unauthorized");
}

static void
add_framing (void)
{
  g_autofree char *body = od_body ("PlaceOrder", draft_id, 99, NULL);
  g_autofree char *prefix = g_strdup_printf ("POST /v1/commands HTTP/1.1\r\nHost: localhost\r\n%s"
                                             "Content-Type: application/json\r\n", auth_alice);
  gsize len = strlen (body);
  struct { const char *name; char *request; guint status; const char *code; guint flags; } rows[] = {
    { "two different Content-Length",
      g_strdup_printf ("%sIdempotency-Key: f-1\r\nContent-Length: 5\r\nContent-Length: %" G_GSIZE_FORMAT "\r\nConnection: close\r\n\r\n%s", prefix, len, body),
      400, NULL, BARE },
    { "Content-Length abc",
      g_strdup_printf ("%sIdempotency-Key: f-2\r\nContent-Length: abc\r\nConnection: close\r\n\r\n%s", prefix, body),
      400, NULL, BARE },
    { "Content-Length -1",
      g_strdup_printf ("%sIdempotency-Key: f-3\r\nContent-Length: -1\r\nConnection: close\r\n\r\n%s", prefix, body),
      400, NULL, BARE },
    { "Content-Length shorter than the body",
      g_strdup_printf ("%sIdempotency-Key: f-4\r\nContent-Length: %" G_GSIZE_FORMAT "\r\nConnection: close\r\n\r\n%s", prefix, len - 10, body),
      400, "malformed", 0 },
    { "bad chunk size",
      g_strdup_printf ("%sIdempotency-Key: f-5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", prefix),
      400, "malformed", 0 },
    { "chunked, malformed JSON",
      g_strdup_printf ("%sIdempotency-Key: f-6\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\n{\"a\r\n0\r\n\r\n", prefix),
      400, "malformed", 0 },
    { "Transfer-Encoding gzip",
      g_strdup_printf ("%sIdempotency-Key: f-7\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n%s", prefix, body),
      501, NULL, BARE },
    { "Content-Length larger than the body",
      g_strdup_printf ("%sIdempotency-Key: f-8\r\nContent-Length: %" G_GSIZE_FORMAT "\r\n\r\n%s", prefix, len + 100, body),
      408, "request_timeout", SLOW },
    { "headers never finished",
      g_strdup_printf ("%sIdempotency-Key: f-9\r\n", prefix),
      408, "request_timeout", SLOW },
    { "request line only",
      g_strdup ("GET /v1/head HTTP/1.1\r\n"),
      408, "request_timeout", SLOW },
    /* Not HTTP at all, and libsoup waits for more: the request timeout
     * ends it. */
    { "TLS hello on plain HTTP",
      g_strdup ("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
      408, "request_timeout", SLOW },
  };

  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      add_raw (rows[i].name, rows[i].request, strlen (rows[i].request), rows[i].status, rows[i].code, rows[i].flags);
      g_free (rows[i].request);
    }

  /* Garbage instead of HTTP: libsoup answers these itself. */
  {
    struct { const char *name; const char *raw; gsize len; guint status; } garbage[] = {
      { "garbage request line", "GARBAGE\r\n\r\n", 0, 400 },
      { "method only", "GET\r\n\r\n", 0, 400 },
      { "no version", "GET /v1/health\r\n\r\n", 0, 400 },
      { "FTP/1.0", "GET /v1/health FTP/1.0\r\nHost: x\r\n\r\n", 0, 400 },
      { "HTTP/2.0 on HTTP/1", "GET /v1/health HTTP/2.0\r\nHost: x\r\n\r\n", 0, 505 },
      { "binary", "\x01\x02\x03\xff\xfe\r\n\r\n", 0, 400 },
      { "NUL bytes", "\0\0\0\0\r\n\r\n", 8, 400 },
      { "HTTP/1.1 without Host", "GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n", 0, 400 },

    };

    for (guint i = 0; i < G_N_ELEMENTS (garbage); i++)
      add_raw (garbage[i].name, garbage[i].raw, garbage[i].len ? garbage[i].len : strlen (garbage[i].raw),
               garbage[i].status, NULL, BARE);
  }
}

static void
add_routes (void)
{
  const char *unknown[] = { "/", "/v1", "/v1/", "/v1/command", "/v1/commands/", "/v1/commands/1",
                            "/v1/events/", "/v1/eventsx", "/v1/head/", "/v2/head", "/V1/HEAD",
                            "/v1/events/stream/", "/admin", "/.env", "/v1/\xff", "/v1/head;x",
                            "/v1/head/..", "//v1/head" };
  struct { const char *method; const char *path; } wrong[] = {
    { "GET", "/v1/commands" }, { "PUT", "/v1/commands" }, { "DELETE", "/v1/commands" },
    { "PATCH", "/v1/commands" }, { "OPTIONS", "/v1/commands" }, { "POST", "/v1/events" },
    { "PUT", "/v1/events" }, { "DELETE", "/v1/events/stream" }, { "POST", "/v1/head" },
    { "POST", "/v1/health" }, { "DELETE", "/v1/health" }, { "TRACE", "/v1/head" },
    { "FOO", "/v1/head" },
  };
  g_autofree char *long_path = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (unknown); i++)
    {
      g_autofree char *name = g_strdup_printf ("unknown route %s", unknown[i]);

      add_get (name, "GET", unknown[i], NULL, 404, "not_found");
    }
  {
    g_autofree char *a = od_repeat ("a", 10000);

    long_path = g_strconcat ("/v1/", a, NULL);
    add_get ("unknown route of 10 KB", "GET", long_path, NULL, 404, "not_found");
  }
  for (guint i = 0; i < G_N_ELEMENTS (wrong); i++)
    {
      g_autofree char *name = g_strdup_printf ("%s %s", wrong[i].method, wrong[i].path);

      add_get (name, wrong[i].method, wrong[i].path, auth_alice, 405, "method_not_allowed");
    }
  /* A HEAD answer has no body, by HTTP's rules. */
  {
    g_autofree char *r = g_strdup_printf ("HEAD /v1/commands HTTP/1.1\r\nHost: localhost\r\n%s"
                                          "Connection: close\r\n\r\n", auth_alice);

    add_raw ("HEAD /v1/commands", r, strlen (r), 405, NULL, BARE);
  }
  /* libsoup refuses an encoded NUL in the path itself. */
  {
    g_autofree char *r = g_strdup_printf ("GET /v1/%%00 HTTP/1.1\r\nHost: localhost\r\n%s"
                                          "Connection: close\r\n\r\n", auth_victor);

    add_raw ("GET /v1/%00", r, strlen (r), 400, NULL, BARE);
  }
}

static void
add_queries (void)
{
  const char *bad[] = { "after=abc", "after=1.5", "after=", "after=1e3", "after=0x10", "after=5abc",
                        "after=99999999999999999999", "after=-99999999999999999999", "limit=x",
                        "limit=1.0", "limit=", "limit=99999999999999999999", "after=%00", "after=1%002",
                        "after=0&limit=ten" };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *path = g_strconcat ("/v1/events?", bad[i], NULL);
      g_autofree char *stream = g_strconcat ("/v1/events/stream?", bad[i], NULL);
      g_autofree char *n1 = g_strdup_printf ("GET %s", path);

      add_get (n1, "GET", path, NULL, 400, "malformed");
      if (g_str_has_prefix (bad[i], "after=") && strstr (bad[i], "limit") == NULL)
        {
          g_autofree char *n2 = g_strdup_printf ("GET %s", stream);

          add_get (n2, "GET", stream, NULL, 400, "malformed");
        }
    }
  {
    const char *ids[] = { "abc", "1.5", "", "-", "1 2", "99999999999999999999" };

    for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
      {
        g_autofree char *headers = g_strdup_printf ("%sLast-Event-ID: %s\r\n", auth_victor, ids[i]);
        g_autofree char *name = g_strdup_printf ("Last-Event-ID: %s", ids[i]);

        add_get (name, "GET", "/v1/events/stream", headers, 400, "malformed");
      }
  }
  /* Odd but valid: answered normally, nothing changes. */
  add_get ("after=-5", "GET", "/v1/events?after=-5&limit=1", NULL, 200, NULL);
  add_get ("limit=0", "GET", "/v1/events?limit=0", NULL, 200, NULL);
  add_get ("limit=1000000", "GET", "/v1/events?limit=1000000", NULL, 200, NULL);
  add_get ("unknown parameter", "GET", "/v1/events?foo=bar", NULL, 200, NULL);
  add_get ("query on head", "GET", "/v1/head?after=abc", NULL, 200, NULL);
}

/* ---- running it ---- */

static char *
snapshot (void)
{
  g_autoptr(OdTestResponse) page = od_test_get (server, OD_TEST_VICTOR, "/v1/events?after=0&limit=10000");
  g_autoptr(OdTestResponse) head = od_test_get (server, OD_TEST_VICTOR, "/v1/head");

  od_test_assert_status (page, 200);
  od_test_assert_status (head, 200);
  return g_strdup_printf ("%" G_GINT64_FORMAT "\n%s", od_test_response_int (head, "head"), page->body);
}

static char *
check_case (Case           *c,
            OdTestResponse *r)
{
  const char *content_type = od_test_response_header (r, "Content-Type");

  if (r->status != c->status)
    return g_strdup_printf ("%s: expected %u %s, got %u %.300s", c->name, c->status,
                            c->code ? c->code : "", r->status, r->body);
  if (c->status == 200)
    return NULL;
  if ((c->flags & BARE) && (content_type == NULL || r->len == 0))
    return NULL;
  if (content_type == NULL || !g_str_has_prefix (content_type, "application/problem+json"))
    return g_strdup_printf ("%s: %u without problem+json (Content-Type %s)", c->name, r->status,
                            content_type);
  if (c->code != NULL)
    {
      JsonObject *object = od_test_response_object (r);

      if (object == NULL
          || g_strcmp0 (od_test_response_string (r, "code"), c->code) != 0
          || !json_object_has_member (object, "status")
          || json_object_get_int_member (object, "status") != c->status
          || od_test_response_string (r, "title") == NULL
          || od_test_response_string (r, "type") == NULL)
        return g_strdup_printf ("%s: expected problem %s, got %.300s", c->name, c->code, r->body);
    }
  return NULL;
}

static void
test_hostile (void)
{
  g_autofree char *before = NULL;
  g_autofree char *after = NULL;
  g_autoptr(GPtrArray) failures = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) slow = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GPtrArray) slow_cases = g_ptr_array_new ();
  guint n_problem = 0;
  const char *last_sent = "(none)";

  cases = g_ptr_array_new_with_free_func ((GDestroyNotify) case_free);
  add_malformed_json ();
  add_wrong_types ();
  add_field_rules ();
  add_encoding ();
  add_sizes ();
  add_headers ();
  add_framing ();
  add_routes ();
  add_queries ();
  g_test_message ("%u hostile requests", cases->len);
  g_assert_cmpuint (cases->len, >=, 200);

  before = snapshot ();

  /* The slow ones wait for the request timeout in parallel. */
  for (guint i = 0; i < cases->len; i++)
    {
      Case *c = g_ptr_array_index (cases, i);
      gsize len;
      const char *data;
      GSocketConnection *connection;

      if (!(c->flags & SLOW))
        continue;
      data = g_bytes_get_data (c->request, &len);
      connection = od_test_raw_connect (server);
      od_test_raw_write (connection, data, len);
      g_ptr_array_add (slow, connection);
      g_ptr_array_add (slow_cases, c);
    }

  for (guint i = 0; i < cases->len; i++)
    {
      Case *c = g_ptr_array_index (cases, i);
      g_autoptr(OdTestResponse) r = NULL;
      gsize len;
      const char *data;
      char *failure;

      if (c->flags & SLOW)
        continue;
      /* A crash may come a moment after the request that caused it. */
      if (!od_test_server_alive (server))
        g_error ("the server died; the last request sent was: %s", last_sent);
      last_sent = c->name;
      data = g_bytes_get_data (c->request, &len);
      r = od_test_raw (server, data, len, 10);
      failure = check_case (c, r);
      if (failure != NULL)
        {
          g_autofree char *printable = g_strescape (failure, NULL);

          g_test_message ("MISMATCH %s", printable);
          g_ptr_array_add (failures, failure);
        }
      else if (r->status >= 400 && r->len > 0)
        n_problem++;
      /* The server survives each one. */
      if (!od_test_server_alive (server))
        g_error ("the server died on: %s", c->name);
    }

  for (guint i = 0; i < slow->len; i++)
    {
      Case *c = g_ptr_array_index (slow_cases, i);
      g_autoptr(OdTestResponse) r = od_test_raw_read_response (g_ptr_array_index (slow, i),
                                                               REQUEST_TIMEOUT + 10);
      char *failure = check_case (c, r);

      if (failure != NULL)
        {
          g_autofree char *printable = g_strescape (failure, NULL);

          g_test_message ("MISMATCH %s", printable);
          g_ptr_array_add (failures, failure);
        }
    }
  g_test_message ("%u answered with problem details", n_problem);

  /* Timers that visit finished requests (the request timeout) must run
   * before the server is declared fine. */
  g_usleep ((REQUEST_TIMEOUT + 2) * G_USEC_PER_SEC);
  if (!od_test_server_alive (server))
    g_error ("the server died after the table; the last request sent was: %s", last_sent);

  /* Nothing changed, and the server is fine. */
  after = snapshot ();
  g_assert_cmpstr (after, ==, before);
  {
    g_autoptr(OdTestResponse) health = od_test_get (server, NULL, "/v1/health");
    g_autofree char *body = od_body_add (draft_id, 2, "AFTER", "After the storm", 1, 1);
    gint64 version = 0;

    od_test_assert_status (health, 200);
    g_assert_true (od_test_server_alive (server));
    /* And still takes commands. */
    od_test_command_ok (server, NULL, OD_TEST_ALICE, body, &version);
    g_assert_cmpint (version, ==, 3);
  }

  /* A clean stop (exit status 0; under valgrind: no error, no leak). */
  od_test_server_stop (server);
  od_test_server_start (server);
  g_assert_cmpint (od_test_head (server), >, 0);

  g_ptr_array_unref (cases);
  if (failures->len > 0)
    g_test_fail_printf ("%u of the hostile requests got a wrong answer (MISMATCH lines above)",
                        failures->len);
}

/* RFC 8259 JSON is strict; json-glib is not: it takes single quotes,
 * comments, hex and leading zeros, and several top-level values.  The
 * contract says a body that is not JSON is `malformed`.  Kept apart from
 * the table above, which must pass whatever the JSON parser. */
static void
test_not_json (void)
{
  const char *bodies[] = {
    "{'type':'PlaceOrder'}",
    "{\"type\":\"PlaceOrder\" /* c */}",
    "{\"type\":\"PlaceOrder\",\"expected_version\":0x1}",
    "{\"type\":\"PlaceOrder\",\"expected_version\":01}",
    "{\"type\":\"PlaceOrder\"}{}",
    "{\"type\":\"PlaceOrder\",\"a\":\"\\uZZZZ\"}",
    "{\"type\":\"PlaceOrder\",\"a\":\"\\q\"}",
    "{\"type\":\"PlaceOrder\",\"a\":1.}",
    "{\"type\":\"PlaceOrder\",\"type\":\"CancelOrder\"}",
  };
  g_autoptr(GString) failures = g_string_new (NULL);

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autofree char *key = od_test_new_key ();
      g_autoptr(OdTestResponse) r = od_test_command (server, NULL, OD_TEST_ALICE, key, bodies[i]);

      if (r->status != 400 || g_strcmp0 (od_test_response_string (r, "code"), "malformed") != 0)
        {
          g_autofree char *printable = g_strescape (bodies[i], NULL);

          g_test_message ("not refused as malformed: %s -> %u %s", printable, r->status,
                          od_test_response_string (r, "code"));
          g_string_append_c (failures, 'x');
        }
    }
  if (failures->len > 0)
    g_test_fail_printf ("%" G_GSIZE_FORMAT " bodies that are not JSON were not refused as malformed (listed above)",
                        failures->len);
}

/* Content-Length values libsoup reads differently from us (2^63 wraps
 * negative, "-5" and "+5" pass strtoull): each is answered 400 or 413 at
 * once (not 408 after the timeout), the connection closes, and the bytes
 * that follow never run as a second request (here a GET that would
 * answer 200).  The server runs under G_DEBUG=fatal-warnings: a GObject
 * warning kills it. */
static void
test_content_length (void)
{
  struct { const char *value; guint status; } rows[] = {
    { "9223372036854775808", 413 },
    { "18446744073709551615", 413 },
    { "18446744073709551616", 413 },
    { "12345678901234567890123", 413 },
    { "65537", 413 },
    { "-5", 400 },
    { "-0", 400 },
    { "+5", 400 },
    { "5,5", 400 },
    { "0x10", 400 },
    { "5\r\nContent-Length: 5", 400 },
    { "5\r\nContent-Length: 9223372036854775808", 400 },
    { "5\r\nTransfer-Encoding: chunked", 400 },
  };
  static const char smuggled[] = "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n";

  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      g_autofree char *request = g_strdup_printf (
        "POST /v1/commands HTTP/1.1\r\nHost: localhost\r\n%sContent-Type: application/json\r\n"
        "Idempotency-Key: cl-%u\r\nContent-Length: %s\r\n\r\n%s",
        auth_alice, i, rows[i].value, smuggled);
      g_autoptr(GSocketConnection) connection = od_test_raw_connect (server);
      g_autoptr(OdTestResponse) first = NULL;
      g_autoptr(OdTestResponse) second = NULL;
      gint64 start = g_get_monotonic_time ();

      g_test_message ("Content-Length: %s", rows[i].value);
      od_test_raw_write (connection, request, strlen (request));
      first = od_test_raw_read_response (connection, 5);
      g_assert_cmpuint (first->status, ==, rows[i].status);
      g_assert_cmpint (g_get_monotonic_time () - start, <, (od_test_server_wrapped () ? 60 : 3) * G_USEC_PER_SEC);
      second = od_test_raw_read_response (connection, 3);
      g_assert_cmpuint (second->status, ==, 0);
      g_assert_true (od_test_server_alive (server));
    }
  {
    g_autoptr(OdTestResponse) health = od_test_get (server, NULL, "/v1/health");

    od_test_assert_status (health, 200);
  }
}

int
main (int   argc,
      char *argv[])
{
  g_autofree char *timeout = g_strdup_printf ("%d", REQUEST_TIMEOUT);
  int status;

  g_test_init (&argc, &argv, NULL);
  g_test_message ("store: %s%s", od_test_store_kind (),
                  od_test_server_wrapped () ? " (wrapped)" : "");
  /* For the server (no thread runs yet): any warning of its own or of
   * GObject ends it, and the tests see it die. */
  g_setenv ("G_DEBUG", "gc-friendly,fatal-warnings", TRUE);
  server = od_test_server_new ("--request-timeout", timeout, NULL);

  /* A draft order with a line, and a placed one. */
  draft_id = od_test_create_order (server, NULL, OD_TEST_ALICE, NULL);
  placed_id = od_test_create_order (server, NULL, OD_TEST_ALICE, NULL);
  {
    g_autofree char *add = od_body_add (draft_id, 1, "FIRST", "First", 1, 100);
    g_autofree char *add2 = od_body_add (placed_id, 1, "FIRST", "First", 1, 100);
    g_autofree char *place = od_body ("PlaceOrder", placed_id, 2, NULL);

    od_test_command_ok (server, NULL, OD_TEST_ALICE, add, NULL);
    od_test_command_ok (server, NULL, OD_TEST_ALICE, add2, NULL);
    od_test_command_ok (server, NULL, OD_TEST_ALICE, place, NULL);
  }

  g_test_add_func ("/hostile/table", test_hostile);
  g_test_add_func ("/hostile/not-json", test_not_json);
  g_test_add_func ("/hostile/content-length", test_content_length);

  status = g_test_run ();
  od_test_server_free (server);
  g_free (draft_id);
  g_free (placed_id);
  return status;
}

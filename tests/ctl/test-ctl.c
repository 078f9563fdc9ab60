/* SPDX-License-Identifier: GPL-3.0-or-later */
/* orderdeskctl as a command-line program: help, version and option forms,
 * the default cache, JSON in a comma-decimal locale, the orders table and
 * text from a hostile server on the terminal.  Against a real
 * orderdesk-server, or, where the server must misbehave, a small hostile
 * one in this process. */
#include "od-core.h"
#include "od-test-ctl.h"

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <locale.h>
#include <signal.h>
#include <string.h>

static const char *commands[] = { "sync", "status", "submit", "orders", "export", "outbox" };

/* Runs orderdeskctl with exactly these arguments (NULL-terminated). */
static int
run (const char * const *env,
     char              **out,
     char              **err,
     const char         *first,
     ...)
{
  g_autoptr(GPtrArray) args = g_ptr_array_new ();
  va_list ap;

  va_start (ap, first);
  for (const char *a = first; a != NULL; a = va_arg (ap, const char *))
    g_ptr_array_add (args, (char *) a);
  va_end (ap);
  g_ptr_array_add (args, NULL);
  return od_test_run_ctl_full (NULL, NULL, NULL, env, (const char * const *) args->pdata,
                               out, err);
}

/* Every docs/….md a help text names exists in the source tree. */
static void
assert_names_real_files (const char *help)
{
  const char *source = g_getenv ("OD_SOURCE_DIR");
  guint named = 0;

  g_assert_nonnull (source);
  g_assert_null (strstr (help, "api.md"));
  for (const char *p = strstr (help, "docs/"); p != NULL; p = strstr (p + 1, "docs/"))
    {
      g_autofree char *name = g_strndup (p, strspn (p, "abcdefghijklmnopqrstuvwxyz/._-"));
      g_autofree char *path = g_build_filename (source, name, NULL);

      if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
        g_error ("the help names %s, which does not exist", name);
      named++;
    }
  g_assert_cmpuint (named, >, 0);
}

static void
test_help_version (void)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;

  g_assert_cmpint (run (NULL, &out, &err, "--help", NULL), ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      g_autofree char *line = g_strdup_printf ("\n  %s ", commands[i]);

      g_assert_nonnull (strstr (out, line));
    }
  assert_names_real_files (out);
  g_assert_cmpstr (err, ==, "");
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);

  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    {
      g_autofree char *usage = g_strdup_printf ("orderdeskctl [OPTION…] %s", commands[i]);
      g_autofree char *section = g_strdup_printf ("Options of %s:", commands[i]);
      g_autofree char *out2 = NULL;

      /* Both ways round, and as "help COMMAND": the same text. */
      g_assert_cmpint (run (NULL, &out, NULL, commands[i], "--help", NULL), ==, 0);
      g_assert_nonnull (strstr (out, usage));
      g_assert_nonnull (strstr (out, section));
      g_assert_nonnull (strstr (out, "--server=URL"));
      assert_names_real_files (out);
      g_assert_cmpint (run (NULL, &out2, NULL, "-h", commands[i], NULL), ==, 0);
      g_assert_cmpstr (out, ==, out2);
      g_clear_pointer (&out2, g_free);
      g_assert_cmpint (run (NULL, &out2, NULL, "help", commands[i], NULL), ==, 0);
      g_assert_cmpstr (out, ==, out2);
      g_clear_pointer (&out, g_free);
    }
  /* Each command's help lists its own options. */
  g_assert_cmpint (run (NULL, &out, NULL, "orders", "--help", NULL), ==, 0);
  for (const char *const *o = (const char *[]) { "--status=S", "--search=TEXT", "--limit=N",
                                                  "--sort=KEY", "--asc", "--desc", "--json",
                                                  NULL };
       *o; o++)
    g_assert_nonnull (strstr (out, *o));
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (run (NULL, &out, NULL, "export", "--help", NULL), ==, 0);
  g_assert_nonnull (strstr (out, "--csv=FILE"));
  g_assert_nonnull (strstr (out, "--provenance"));
  g_clear_pointer (&out, g_free);

  g_assert_cmpint (run (NULL, &out, NULL, "--version", NULL), ==, 0);
  g_assert_true (g_str_has_prefix (out, "orderdeskctl "));
  g_assert_true (g_ascii_isdigit (out[strlen ("orderdeskctl ")]));
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (run (NULL, &out, NULL, "status", "--version", NULL), ==, 0);
  g_assert_true (g_str_has_prefix (out, "orderdeskctl "));
  g_clear_pointer (&out, g_free);

  /* Usage errors: exit 2, a message and a hint on stderr, nothing on
   * stdout. */
  {
    const char *bad[][4] = {
      { "orders", "--frob", NULL },
      { "--frob", "orders", NULL },
      { "status", "--follow", NULL },      /* another command's option */
      { "frobnicate", NULL },
      { NULL },
      { "submit", NULL },                  /* FILE|- missing */
      { "submit", "a", "b", NULL },
      { "orders", "--limit=many", NULL },
      { "orders", "--limit", NULL },       /* no value */
      { "orders", "--status=lost", NULL },
      { "orders", "--sort", "price", NULL },
      { "orders", "--asc", "--desc", NULL },
      { "sync", "--timeout=soon", NULL },
      { "help", "frobnicate", NULL },
    };

    for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
      {
        g_autoptr(GPtrArray) args = g_ptr_array_new ();

        for (guint k = 0; bad[i][k] != NULL; k++)
          g_ptr_array_add (args, (char *) bad[i][k]);
        g_ptr_array_add (args, NULL);
        g_assert_cmpint (od_test_run_ctl_full (NULL, NULL, NULL, NULL,
                                               (const char * const *) args->pdata, &out, &err),
                         ==, 2);
        g_assert_cmpstr (out, ==, "");
        g_assert_true (g_str_has_prefix (err, "orderdeskctl: "));
        g_assert_nonnull (strstr (err, "--help'"));
        g_clear_pointer (&out, g_free);
        g_clear_pointer (&err, g_free);
      }
  }
}

/* --opt=value and --opt value, global options before or after the
 * command, a "--": all the same. */
static void
test_option_forms (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (40, NULL);
  g_autofree char *dir = od_test_tmpdir ("ctl-forms");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *reference = NULL;
  const char *sync_args[] = { "sync", NULL };
  const char *forms[][12] = {
    { "--cache", cache, "orders", "--limit", "5", "--sort", "total", "--json", NULL },
    { "--cache=", "orders", "--limit=5", "--sort=total", "--json", NULL },
    { "orders", "--json", "--cache", cache, "--limit=5", "--sort", "total", NULL },
    { "orders", "--sort=total", "--cache=", "--limit", "5", "--json", "-q", NULL },
    { "-q", "--timeout", "5", "orders", "--json", "--limit", "5", "--sort=total",
      "--cache", cache, NULL },
    { "orders", "--json", "--limit=5", "--sort=total", "--cache=", "--", NULL },
  };

  g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_VIEWER_TOKEN, NULL, sync_args, NULL),
                   ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (forms); i++)
    {
      g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func (g_free);
      g_autofree char *out = NULL;
      g_autofree char *err = NULL;

      for (guint k = 0; forms[i][k] != NULL; k++)
        g_ptr_array_add (args, g_str_equal (forms[i][k], "--cache=")
                                 ? g_strconcat ("--cache=", cache, NULL)
                                 : g_strdup (forms[i][k]));
      g_ptr_array_add (args, NULL);
      g_assert_cmpint (od_test_run_ctl_full (NULL, NULL, NULL, NULL,
                                             (const char * const *) args->pdata, &out, &err),
                       ==, 0);
      g_assert_cmpstr (err, ==, "");
      if (reference == NULL)
        {
          g_auto(GStrv) lines = g_strsplit (out, "\n", -1);

          g_assert_cmpuint (g_strv_length (lines), ==, 6);
          reference = g_steal_pointer (&out);
        }
      else
        g_assert_cmpstr (out, ==, reference);
    }
  /* The operand after "--" even when it looks like an option. */
  {
    g_autofree char *err = NULL;

    g_assert_cmpint (run (NULL, NULL, &err, "--cache", cache, "submit", "--", "--no-such-file",
                          NULL),
                     ==, 1);
    g_assert_nonnull (strstr (err, "--no-such-file"));
  }
  od_test_rmdir (dir);
}

/* Without --server and --cache, status, orders, export and outbox use the
 * cache that synced last, and sync goes on with its server. */
static void
test_default_cache (void)
{
  g_autoptr(OdTestServer) a = od_test_server_new_seeded (20, NULL);
  g_autoptr(OdTestServer) b = od_test_server_new_seeded (30, NULL);
  g_autofree char *xdg = od_test_tmpdir ("ctl-xdg");
  const char *env[] = { "XDG_DATA_HOME", xdg, NULL };
  const char *sync_args[] = { "sync", NULL };
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;

  /* Nothing synced yet: a usage error that says what to do. */
  g_assert_cmpint (run (env, &out, &err, "status", NULL), ==, 2);
  g_assert_nonnull (strstr (err, "--server"));
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);

  for (guint round = 0; round < 3; round++)
    {
      OdTestServer *last = round == 1 ? a : b;
      g_autoptr(JsonParser) parser = json_parser_new ();
      JsonObject *status;
      g_auto(GStrv) lines = NULL;

      g_assert_cmpint (od_test_run_ctl_full (od_test_server_url (last), NULL, OD_TEST_VIEWER_TOKEN, env,
                                             sync_args, NULL, NULL),
                       ==, 0);
      g_assert_cmpint (run (env, &out, NULL, "status", "--json", NULL), ==, 0);
      g_assert_true (json_parser_load_from_data (parser, out, -1, NULL));
      status = json_node_get_object (json_parser_get_root (parser));
      g_assert_cmpstr (json_object_get_string_member (status, "server_url"), ==, od_test_server_url (last));
      g_assert_cmpint (json_object_get_int_member (status, "orders"), ==,
                       last == a ? 20 : 30);
      g_clear_pointer (&out, g_free);

      g_assert_cmpint (run (env, &out, NULL, "orders", "--json", "--limit=1000", NULL), ==, 0);
      lines = g_strsplit (out, "\n", -1);
      g_assert_cmpuint (g_strv_length (lines) - 1, ==, last == a ? 20 : 30);
      g_clear_pointer (&out, g_free);
    }
  /* sync without --server: the last one's server again. */
  g_assert_cmpint (run ((const char *[]) { "XDG_DATA_HOME", xdg, "ORDERDESK_TOKEN",
                                           OD_TEST_VIEWER_TOKEN, NULL },
                        NULL, NULL, "-q", "sync", NULL),
                   ==, 0);
  od_test_rmdir (xdg);
}

static gboolean
have_locale (const char *name)
{
  locale_t l = newlocale (LC_ALL_MASK, name, (locale_t) 0);

  if (l == (locale_t) 0)
    return FALSE;
  freelocale (l);
  return TRUE;
}

/* Each line of `out` is a JSON object; returns the last one's root. */
static JsonNode *
parse_json_lines (const char *what,
                  const char *out,
                  guint       expected_lines)
{
  g_auto(GStrv) lines = g_strsplit (out, "\n", -1);
  JsonNode *last = NULL;
  guint n = 0;

  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_autoptr(JsonParser) parser = json_parser_new_immutable ();
      g_autoptr(GError) error = NULL;

      if (lines[i][0] == '\0')
        continue;
      if (!json_parser_load_from_data (parser, lines[i], -1, &error))
        g_error ("%s printed what is not JSON (%s): %s", what, error->message, lines[i]);
      g_assert_true (JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)));
      g_clear_pointer (&last, json_node_unref);
      last = json_node_ref (json_parser_get_root (parser));
      n++;
    }
  g_assert_cmpuint (n, ==, expected_lines);
  return last;
}

/* In a comma-decimal locale every JSON-printing command prints JSON
 * ("latency_ms":59998,784 was not). */
static void
test_json_locale (void)
{
  static const char *locale_name = "de_DE.UTF-8";
  g_autoptr(OdTestServer) server = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *cache = NULL;
  g_autofree char *command = NULL;
  const char *env[] = { "LC_ALL", locale_name, NULL };
  g_autofree char *out = NULL;
  g_autoptr(JsonNode) node = NULL;

  /* Installed by .ci/install-deps; without it this test proves nothing. */
  if (!have_locale (locale_name))
    {
      g_test_fail_printf ("the locale %s is not installed (see .ci/install-deps)", locale_name);
      return;
    }
  server = od_test_server_new_seeded (30, NULL);
  dir = od_test_tmpdir ("ctl-locale");
  cache = g_build_filename (dir, "cache.sqlite", NULL);
  command = g_build_filename (dir, "create.json", NULL);
  g_assert_true (g_file_set_contents (command,
                                      "{\"type\":\"CreateOrder\",\"order_id\":"
                                      "\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"data\":"
                                      "{\"customer_name\":\"Jörg Weiß\",\"customer_email\":"
                                      "\"jw@example.com\",\"currency\":\"EUR\"}}",
                                      -1, NULL));

  g_assert_cmpint (od_test_run_ctl_full (od_test_server_url (server), cache, OD_TEST_OPERATOR_TOKEN, env,
                                         (const char *[]) { "submit", command, NULL }, &out,
                                         NULL),
                   ==, 0);
  node = parse_json_lines ("submit", out, 1);
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (node), "state"), ==,
                   "visible");
  g_assert_cmpint (json_node_get_value_type (json_object_get_member (json_node_get_object (node),
                                                                     "latency_ms")),
                   ==, G_TYPE_DOUBLE);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&node, json_node_unref);

  /* Some time after the contact: seconds_since_contact has decimals (it
   * is printed with one, so at least 0.25 s reads as at least 0.2). */
  g_usleep (250 * 1000);
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, env,
                                         (const char *[]) { "status", "--json", NULL }, &out,
                                         NULL),
                   ==, 0);
  node = parse_json_lines ("status --json", out, 1);
  g_assert_cmpfloat (json_object_get_double_member (json_node_get_object (node),
                                                    "seconds_since_contact"), >=, 0.2);
  g_assert_cmpint (json_object_get_int_member (json_node_get_object (node), "orders"), ==, 31);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&node, json_node_unref);

  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, env,
                                         (const char *[]) { "orders", "--json", "--limit=100",
                                                            NULL },
                                         &out, NULL),
                   ==, 0);
  node = parse_json_lines ("orders --json", out, 31);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&node, json_node_unref);

  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, env,
                                         (const char *[]) { "outbox", "--all", NULL }, &out,
                                         NULL),
                   ==, 0);
  node = parse_json_lines ("outbox --all", out, 1);
  g_assert_cmpint (json_node_get_value_type (json_object_get_member (json_node_get_object (node),
                                                                     "latency_ms")),
                   ==, G_TYPE_DOUBLE);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&node, json_node_unref);

  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, env,
                                         (const char *[]) { "outbox", NULL }, &out, NULL),
                   ==, 0);
  g_assert_cmpstr (out, ==, "");
  od_test_rmdir (dir);
}

/* Columns of a terminal, as a terminal counts them. */
static guint
display_width (const char *text,
               gsize       len)
{
  guint width = 0;

  for (const char *p = text; p < text + len; p = g_utf8_next_char (p))
    {
      gunichar c = g_utf8_get_char (p);

      width += g_unichar_iszerowidth (c) ? 0 : g_unichar_iswide (c) ? 2 : 1;
    }
  return width;
}

/* DIR/cmd.json: CreateOrder of order n for name; its path. */
static char *
write_create (const char *dir,
              guint       n,
              const char *name)
{
  char *path = g_build_filename (dir, "cmd.json", NULL);
  g_autofree char *json = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":"
                                           "\"0193a1c2-7f00-7abc-8def-%012u\",\"data\":"
                                           "{\"customer_name\":\"%s\",\"customer_email\":"
                                           "\"c%u@example.com\",\"currency\":\"EUR\"}}",
                                           n, name, n);

  g_assert_true (g_file_set_contents (path, json, -1, NULL));
  return path;
}

static void
submit_create (OdTestServer *server,
               const char   *cache,
               const char   *dir,
               guint         n,
               const char   *name)
{
  g_autofree char *path = write_create (dir, n, name);

  g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                    (const char *[]) { "submit", path, NULL }, NULL),
                   ==, 0);
}

/* The table pads by what a terminal shows, not by bytes: wide CJK
 * letters, combining accents and two-byte letters line up, under a
 * header line; long names are cut with an ellipsis. */
static void
test_orders_table (void)
{
  static const char *names[] = {
    "Ada Lovelace",
    "山田 太郎",                                /* wide: 2 columns each */
    "Zoe\xcc\x88 A\xcc\x8angstro\xcc\x88m",    /* combining marks: 0 columns */
    "Jörg Weiß-Müller",                        /* two bytes, one column */
    "Maximiliane Wolfeschlegelsteinhausenberger",
  };
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("ctl-table");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *out = NULL;
  g_auto(GStrv) lines = NULL;
  guint cur_column = 0;
  gboolean cut_seen = FALSE;

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    submit_create (server, cache, dir, i, names[i]);
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, NULL,
                                         (const char *[]) { "orders", "--sort", "customer",
                                                            NULL },
                                         &out, NULL),
                   ==, 0);
  lines = g_strsplit (out, "\n", -1);
  g_assert_cmpuint (g_strv_length (lines), ==, G_N_ELEMENTS (names) + 2);
  g_assert_true (g_str_has_prefix (lines[0], "ORDER "));
  g_assert_nonnull (strstr (lines[0], " STATUS "));
  g_assert_nonnull (strstr (lines[0], " CUSTOMER "));
  /* The currency column starts at the same terminal column in the header
   * and in every row, whatever the names before it. */
  for (guint i = 0; i <= G_N_ELEMENTS (names); i++)
    {
      const char *mark = strstr (lines[i], i == 0 ? "  CUR  " : "  EUR  ");
      guint column;

      g_assert_nonnull (mark);
      column = display_width (lines[i], mark - lines[i]);
      if (i == 0)
        cur_column = column;
      else if (column != cur_column)
        g_error ("row %u is out of line (column %u, header %u):\n%s\n%s", i, column, cur_column,
                 lines[0], lines[i]);
      if (strstr (lines[i], "Maximiliane") != NULL)
        {
          g_assert_nonnull (strstr (lines[i], "…"));
          g_assert_null (strstr (lines[i], "hausenberger"));
          cut_seen = TRUE;
        }
      else if (i > 0)
        g_assert_null (strstr (lines[i], "…"));
      g_assert_false (g_str_has_suffix (lines[i], " "));
    }
  g_assert_true (cut_seen);
  g_assert_nonnull (strstr (out, "山田 太郎"));
  g_assert_cmpstr (lines[G_N_ELEMENTS (names) + 1], ==, "");
  od_test_rmdir (dir);
}

/* Refunds bring new statuses: orders --status knows them, status counts
 * them (text and JSON), all from the one status table. */
static void
submit_json (OdTestServer *server,
             const char   *cache,
             const char   *dir,
             const char   *json)
{
  g_autofree char *path = g_build_filename (dir, "cmd.json", NULL);

  g_assert_true (g_file_set_contents (path, json, -1, NULL));
  g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                    (const char *[]) { "submit", path, NULL }, NULL),
                   ==, 0);
}

/* A command refused before it is stored exits 6, whatever the refusal
 * (OD_COMMAND_ERROR: malformed, a field's rule, too large), and leaves
 * nothing in the outbox. */
static void
test_invalid_exit (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("ctl-invalid");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *path = g_build_filename (dir, "cmd.json", NULL);
  g_autofree char *filler = g_strnfill (OD_MAX_BODY, 'a');
  g_autofree char *large = NULL;
  g_autofree char *out = NULL;
  const char *bodies[] = {
    "{\"type\":1,\"order_id\":\"0193a1c2-7f00-7abc-8def-000000000000\",\"data\":{}}",
    "{\"type\":\"CreateOrder\",\"order_id\":\"nope\"}",
    NULL,
  };

  large = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\"}", filler);
  bodies[2] = large;
  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autofree char *err = NULL;

      g_assert_true (g_file_set_contents (path, bodies[i], -1, NULL));
      g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                        (const char *[]) { "submit", path, NULL }, &err),
                       ==, 6);
      g_assert_true (g_str_has_prefix (err, "orderdeskctl: "));
    }
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, NULL,
                                         (const char *[]) { "outbox", "--all", NULL }, &out,
                                         NULL),
                   ==, 0);
  g_assert_cmpstr (out, ==, "");
  od_test_rmdir (dir);
}

static void
test_refund_statuses (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("ctl-refund");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *out = NULL;
  g_autofree char *json = NULL;
  g_autofree char *text = NULL;
  g_autofree char *err = NULL;
  const char *id = "0193a1c2-7f00-7abc-8def-000000000000";
  static const char *steps[] = {
    "{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"MUG\",\"name\":\"Mug\","
    "\"quantity\":2,\"unit_price_cents\":1250}}",
    "{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"data\":{}}",
    "{\"type\":\"ShipOrder\",\"order_id\":\"%s\",\"data\":{\"carrier\":\"DHL\","
    "\"tracking_number\":\"T1\"}}",
    "{\"type\":\"MarkDelivered\",\"order_id\":\"%s\",\"data\":{}}",
    "{\"type\":\"AddOrderNote\",\"order_id\":\"%s\",\"data\":{\"text\":\"Box dented\"}}",
    "{\"type\":\"RefundOrder\",\"order_id\":\"%s\",\"data\":{\"amount_cents\":500,"
    "\"reason\":\"Dent\"}}",
  };

  submit_create (server, cache, dir, 0, "Ada Lovelace");
  submit_create (server, cache, dir, 1, "Grace Hopper");
  for (guint i = 0; i < G_N_ELEMENTS (steps); i++)
    {
      g_autofree char *body = g_strdup_printf (steps[i], id);

      submit_json (server, cache, dir, body);
    }

  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, NULL,
                                         (const char *[]) { "orders", "--status",
                                                            "partially_refunded", "--json",
                                                            NULL },
                                         &out, &err),
                   ==, 0);
  g_assert_cmpstr (err, ==, "");
  g_assert_nonnull (strstr (out, id));
  g_assert_null (strstr (out, "0193a1c2-7f00-7abc-8def-000000000001"));
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, NULL,
                                         (const char *[]) { "status", "--json", NULL }, &json,
                                         NULL),
                   ==, 0);
  g_assert_nonnull (strstr (json, "\"draft\":1,"));
  g_assert_nonnull (strstr (json, "\"partially_refunded\":1,\"refunded\":0}"));
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, NULL,
                                         (const char *[]) { "status", NULL }, &text, NULL),
                   ==, 0);
  g_assert_nonnull (strstr (text, "orders:           2 (draft 1, placed 0, shipped 0, delivered 0,"
                                  " cancelled 0, partially_refunded 1, refunded 0)"));
  /* The note is searchable from the command line too. */
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, NULL,
                                         (const char *[]) { "orders", "--search", "dented",
                                                            "--json", NULL },
                                         &out, NULL),
                   ==, 0);
  g_assert_nonnull (strstr (out, id));
  od_test_rmdir (dir);
}

/* The export is plain CSV unless --provenance asks for the stamp line. */
static void
test_export_provenance (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (25, NULL);
  g_autofree char *dir = od_test_tmpdir ("ctl-export");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *plain = NULL;
  g_autofree char *stamped = NULL;
  g_autofree char *head_text = NULL;

  g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_VIEWER_TOKEN, NULL,
                                    (const char *[]) { "sync", NULL }, NULL),
                   ==, 0);
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, NULL,
                                         (const char *[]) { "export", "--csv", "-", NULL }, &plain,
                                         NULL),
                   ==, 0);
  g_assert_true (g_str_has_prefix (plain, "order_id,customer_name,customer_email,currency,"
                                          "status,item_count,total_cents,version,created_at,"
                                          "updated_at,last_position,note_count,refunded_cents\r\n"));
  g_assert_null (strstr (plain, "#"));
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, NULL, NULL,
                                         (const char *[]) { "export", "--provenance", "--csv",
                                                            "-", NULL },
                                         &stamped, NULL),
                   ==, 0);
  head_text = g_strdup_printf ("# orderdesk export: data as of position %" G_GINT64_FORMAT ", ",
                               od_test_head (server));
  g_assert_true (g_str_has_prefix (stamped, head_text));
  g_assert_nonnull (strstr (stamped, od_test_server_url (server)));
  g_assert_cmpstr (strstr (stamped, "\r\n") + 2, ==, plain);
  od_test_rmdir (dir);
}

/* ------------------------------------------------------------------ */
/* A hostile server                                                    */

/* Terminal controls a server could try: clear the screen, set the window
 * title (OSC), reverse what follows (U+202E), an isolate (U+2067), a C1
 * CSI (U+009B), DEL, and a newline that starts a fake line of ours. */
#define HOSTILE_DETAIL \
  "\x1b[2J\x1b]0;pwned\x07 gpj.\xe2\x80\xae" "exe \xe2\x81\xa7x \xc2\x9b" "31m \x7f" \
  "\norderdeskctl: all good"

typedef struct
{
  GMutex        lock;
  GCond         cond;
  GMainContext *context;
  GMainLoop    *loop;
  GThread      *thread;
  char         *url;
  guint         requests;
  guint         others_status;  /* the answer to all but commands */
} Hostile;

static void
hostile_handler (SoupServer        *server,
                 SoupServerMessage *msg,
                 const char        *path,
                 GHashTable        *query,
                 gpointer           data)
{
  Hostile *h = data;
  gboolean command = g_str_equal (path, "/v1/commands");
  guint status = command ? 409 : g_atomic_int_get (&h->others_status);
  g_autoptr(OdProblem) problem =
    od_problem_new (status == 409 ? OD_PROBLEM_INVALID_STATE
                    : status == 401 ? OD_PROBLEM_UNAUTHORIZED : OD_PROBLEM_UNAVAILABLE,
                    "%s", HOSTILE_DETAIL);
  g_autofree char *body = od_problem_to_json (problem);

  g_atomic_int_inc (&h->requests);
  /* Commands are refused (exit 3); everything else needs a sign-in the
   * token does not give (exit 5) or is unavailable (a retry): each
   * prints the detail. */
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/problem+json", SOUP_MEMORY_COPY, body,
                                    strlen (body));
}

static gpointer
hostile_thread (gpointer data)
{
  Hostile *h = data;
  g_autoptr(SoupServer) server = NULL;
  g_autoptr(GError) error = NULL;
  GSList *uris;

  g_main_context_push_thread_default (h->context);
  server = soup_server_new (NULL, NULL);
  soup_server_add_handler (server, NULL, hostile_handler, h, NULL);
  g_assert_true (soup_server_listen_local (server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error));
  g_assert_no_error (error);
  uris = soup_server_get_uris (server);
  g_mutex_lock (&h->lock);
  h->url = g_strdup_printf ("http://127.0.0.1:%d", g_uri_get_port (uris->data));
  g_cond_signal (&h->cond);
  g_mutex_unlock (&h->lock);
  g_slist_free_full (uris, (GDestroyNotify) g_uri_unref);
  g_main_loop_run (h->loop);
  soup_server_disconnect (server);
  g_main_context_pop_thread_default (h->context);
  return NULL;
}

static Hostile *
hostile_start (void)
{
  Hostile *h = g_new0 (Hostile, 1);

  g_mutex_init (&h->lock);
  g_cond_init (&h->cond);
  h->others_status = 401;
  h->context = g_main_context_new ();
  h->loop = g_main_loop_new (h->context, FALSE);
  h->thread = g_thread_new ("hostile", hostile_thread, h);
  g_mutex_lock (&h->lock);
  while (h->url == NULL)
    g_cond_wait (&h->cond, &h->lock);
  g_mutex_unlock (&h->lock);
  return h;
}

static gboolean
quit_loop (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

static void
hostile_stop (Hostile *h)
{
  g_main_context_invoke (h->context, quit_loop, h->loop);
  g_thread_join (h->thread);
  g_main_loop_unref (h->loop);
  g_main_context_unref (h->context);
  g_mutex_clear (&h->lock);
  g_cond_clear (&h->cond);
  g_free (h->url);
  g_free (h);
}

static void
assert_escaped (const char *what,
                const char *err)
{
  g_auto(GStrv) lines = g_strsplit (err, "\n", -1);

  g_test_message ("%s: %s", what, err);
  g_assert_nonnull (strstr (err, "\\x1B[2J"));
  g_assert_nonnull (strstr (err, "\\x1B]0;pwned\\x07"));
  g_assert_nonnull (strstr (err, "\\u202E"));
  g_assert_nonnull (strstr (err, "\\u2067"));
  g_assert_nonnull (strstr (err, "\\x9B"));
  g_assert_nonnull (strstr (err, "\\x7F"));
  g_assert_nonnull (strstr (err, "\\norderdeskctl: all good"));
  /* None of it raw. */
  g_assert_null (strchr (err, '\x1b'));
  g_assert_null (strchr (err, '\x07'));
  g_assert_null (strchr (err, '\x7f'));
  g_assert_null (strstr (err, "\xe2\x80\xae"));
  g_assert_null (strstr (err, "\xe2\x81\xa7"));
  g_assert_null (strstr (err, "\xc2\x9b"));
  for (guint i = 0; lines[i] != NULL; i++)
    g_assert_false (g_str_has_prefix (lines[i], "orderdeskctl: all good"));
}

/* A one-shot sync ends within --timeout even when it is caught up and
 * the outbox still holds commands the server keeps refusing for now (here
 * its rate limit: one command a token, then one every 100 s): exit 4,
 * saying how many are not settled.  It used to wait for them for ever. */
static void
test_sync_timeout_outbox (void)
{
  const char *args[] = { "--rate-limit", "0.01:1", NULL };
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, args);
  g_autofree char *dir = od_test_tmpdir ("ctl-sync-timeout");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *err = NULL;
  g_autofree char *timeout = NULL;
  g_autofree char *expected = NULL;
  gint64 start;

  /* The first goes through; the next two stay queued (429) when their
   * submit gives up. */
  submit_create (server, cache, dir, 1, "Ada");
  for (guint n = 2; n <= 3; n++)
    {
      g_autofree char *path = write_create (dir, n, "Bo");

      g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                        (const char *[]) { "--timeout", "2", "submit", path,
                                                           NULL }, NULL),
                       ==, 4);
    }

  /* Time enough to catch up (one event), even under the sanitizers. */
  timeout = g_strdup_printf ("%u", 5 * od_test_process_slowdown ());
  expected = g_strdup_printf ("gave up after %s s: caught up, but 2 commands of the outbox"
                              " are not settled", timeout);
  start = g_get_monotonic_time ();
  g_assert_cmpint (od_test_run_ctl_full (od_test_server_url (server), cache,
                                         OD_TEST_OPERATOR_TOKEN, NULL,
                                         (const char *[]) { "--timeout", timeout, "sync", NULL },
                                         NULL, &err),
                   ==, 4);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 60 * G_USEC_PER_SEC);
  g_assert_nonnull (strstr (err, expected));
  od_test_rmdir (dir);
}

/* The sync engine may find the cache caught up while it starts, before
 * the main loop runs: here a cache already at the head, and a test hook
 * that holds the main thread in the engine's start until the sync thread
 * has read the head (as a preempted main thread on a loaded machine
 * does).  The sync still ends at once with 0.  It used to quit a loop
 * that was not running yet, which the loop then forgot: it waited out
 * its --timeout and exited 4 (two_syncs in test-shared, CI run 27). */
static void
test_caught_up_at_start (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (20, NULL);
  g_autofree char *dir = od_test_tmpdir ("ctl-caught-up-start");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *timeout = g_strdup_printf ("%u", 30 * od_test_process_slowdown ());
  const char *stall_env[] = { "OD_TEST_SYNC_START_STALL", "1", NULL };
  g_autofree char *err = NULL;
  gint64 start;

  if (g_strcmp0 (g_getenv ("OD_TEST_HOOKS"), "1") != 0)
    {
      g_test_skip ("built with -Dtest_hooks=false: the sync engine cannot be held at its start");
      od_test_rmdir (dir);
      return;
    }
  g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                    (const char *[]) { "sync", NULL }, NULL),
                   ==, 0);
  start = g_get_monotonic_time ();
  g_assert_cmpint (od_test_run_ctl_full (od_test_server_url (server), cache,
                                         OD_TEST_OPERATOR_TOKEN, stall_env,
                                         (const char *[]) { "--timeout", timeout, "sync", NULL },
                                         NULL, &err),
                   ==, 0);
  g_assert_null (strstr (err, "gave up"));
  /* Done when caught up, not when the time ran out. */
  g_assert_cmpint (g_get_monotonic_time () - start, <,
                   (gint64) 15 * od_test_process_slowdown () * G_USEC_PER_SEC);
  od_test_rmdir (dir);
}

/* Waits until the process catches signum (its handler is installed:
 * /proc/PID/status, SigCgt), so that the signal is not its death. */
static void
wait_catches (GSubprocess *process,
              int          signum)
{
  g_autofree char *path = g_strdup_printf ("/proc/%s/status",
                                           g_subprocess_get_identifier (process));
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

  while (g_get_monotonic_time () < deadline)
    {
      g_autofree char *status = NULL;
      const char *line;

      g_assert_true (g_file_get_contents (path, &status, NULL, NULL));
      line = strstr (status, "\nSigCgt:");
      g_assert_nonnull (line);
      if ((g_ascii_strtoull (line + strlen ("\nSigCgt:"), NULL, 16) >> (signum - 1)) & 1)
        return;
      g_usleep (20 * 1000);
    }
  g_error ("orderdeskctl never caught signal %d", signum);
}

/* A one-shot sync stopped before it is done (here the server is gone)
 * does not exit 0, which says caught up: 128 + the signal.  sync
 * --follow stopped by SIGTERM exits 0 (test-shared.c). */
static void
test_interrupted (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (5, NULL);
  g_autofree char *dir = od_test_tmpdir ("ctl-interrupted");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  const int signals[] = { SIGINT, SIGTERM };

  g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                    (const char *[]) { "sync", NULL }, NULL),
                   ==, 0);
  od_test_server_kill (server);
  for (guint i = 0; i < G_N_ELEMENTS (signals); i++)
    {
      g_autoptr(GSubprocess) sync = od_test_spawn_ctl (server, cache, OD_TEST_OPERATOR_TOKEN,
                                                       (const char *[]) { "sync", NULL }, NULL);

      wait_catches (sync, signals[i]);
      g_subprocess_send_signal (sync, signals[i]);
      g_assert_cmpint (od_test_wait_ctl (sync), ==, 128 + signals[i]);
    }
  od_test_rmdir (dir);
}

/* Commands that do not wait in the main loop keep the signals' default:
 * Ctrl+C stops an export stuck on a full pipe (nobody reads it) at
 * once.  It used to be caught, and looked at only once the export was
 * over. */
static void
test_interrupted_export (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (1000, NULL);
  g_autofree char *dir = od_test_tmpdir ("ctl-export-int");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *ctl = od_test_ctl_path ();
  g_autoptr(GSubprocess) export = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *wchan_path = NULL;
  gint64 deadline;

  g_assert_cmpint (od_test_run_ctl (server, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                    (const char *[]) { "sync", NULL }, NULL),
                   ==, 0);
  /* 1,000 orders of CSV are more than a pipe holds (64 KiB). */
  export = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error, ctl, "--cache", cache,
                             "export", "--csv", "-", NULL);
  g_assert_no_error (error);
  wchan_path = g_strdup_printf ("/proc/%s/wchan", g_subprocess_get_identifier (export));
  deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  for (;;)
    {
      g_autofree char *wchan = NULL;

      g_assert_true (g_file_get_contents (wchan_path, &wchan, NULL, NULL));
      if (strstr (wchan, "pipe") != NULL)
        break;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20 * 1000);
    }
  g_subprocess_send_signal (export, SIGINT);
  od_test_process_wait_or_dump (export, 20, "orderdeskctl export");
  g_assert_true (g_subprocess_get_if_signaled (export));
  g_assert_cmpint (g_subprocess_get_term_sig (export), ==, SIGINT);
  od_test_rmdir (dir);
}

/* A server's problem detail reaches the terminal escaped: for a refused
 * command (submit, exit 3) and a refused sign-in (sync, exit 5). */
static void
test_hostile_detail (void)
{
  Hostile *h = hostile_start ();
  g_autofree char *dir = od_test_tmpdir ("ctl-hostile");
  g_autofree char *cache = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *command = g_build_filename (dir, "create.json", NULL);
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;

  g_assert_true (g_file_set_contents (command,
                                      "{\"type\":\"CreateOrder\",\"order_id\":"
                                      "\"0193a1c2-7f00-7abc-8def-0123456789ab\",\"data\":"
                                      "{\"customer_name\":\"Ada\",\"customer_email\":"
                                      "\"ada@example.com\",\"currency\":\"EUR\"}}",
                                      -1, NULL));
  g_assert_cmpint (od_test_run_ctl_full (h->url, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                         (const char *[]) { "--timeout", "20", "sync", NULL }, &out,
                                         &err),
                   ==, 5);
  assert_escaped ("sync", err);
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);

  /* The stream unavailable (printed as the sync engine retries: no -q),
   * the command refused. */
  g_atomic_int_set (&h->others_status, 503);
  g_assert_cmpint (od_test_run_ctl_full (NULL, cache, OD_TEST_OPERATOR_TOKEN, NULL,
                                         (const char *[]) { "--server", h->url, "--timeout",
                                                            "20", "submit", command, NULL },
                                         &out, &err),
                   ==, 3);
  assert_escaped ("submit", err);
  g_assert_nonnull (strstr (err, "rejected (invalid_state): \\x1B[2J"));
  /* JSON on stdout is escaped by the JSON writer. */
  g_assert_nonnull (strstr (out, "\"state\":\"rejected\""));
  g_assert_null (strchr (out, '\x1b'));
  g_assert_cmpuint (g_atomic_int_get (&h->requests), >, 0);
  hostile_stop (h);
  od_test_rmdir (dir);
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *xdg = od_test_tmpdir ("xdg");

  /* The default cache place stays inside the test. */
  g_setenv ("XDG_DATA_HOME", xdg, TRUE);
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ctl/help-version", test_help_version);
  g_test_add_func ("/ctl/option-forms", test_option_forms);
  g_test_add_func ("/ctl/default-cache", test_default_cache);
  g_test_add_func ("/ctl/json-locale", test_json_locale);
  g_test_add_func ("/ctl/orders-table", test_orders_table);
  g_test_add_func ("/ctl/export-provenance", test_export_provenance);
  g_test_add_func ("/ctl/refund-statuses", test_refund_statuses);
  g_test_add_func ("/ctl/invalid-exit", test_invalid_exit);
  g_test_add_func ("/ctl/hostile-detail", test_hostile_detail);
  g_test_add_func ("/ctl/sync-timeout-outbox", test_sync_timeout_outbox);
  g_test_add_func ("/ctl/caught-up-at-start", test_caught_up_at_start);
  g_test_add_func ("/ctl/interrupted", test_interrupted);
  g_test_add_func ("/ctl/interrupted-export", test_interrupted_export);
  {
    int rc = g_test_run ();

    od_test_rmdir (xdg);
    return rc;
  }
}

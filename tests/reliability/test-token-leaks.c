/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Tokens never end up where they could be read later: not in the
 * console's cache (its SQLite file, WAL and all), not in the error texts
 * the console shows, not in the server's log.  The console core runs
 * here for real against orderdesk-server: the sync engine with a viewer
 * token and the outbox with an operator token, then both with tokens the
 * server does not know. */

#include "od-core.h"
#include "od-rel-server.h"

#include <string.h>
#include <unistd.h>

#define BAD_OPERATOR "rel-bad-operator-token-77c2e9"
#define BAD_VIEWER   "rel-bad-viewer-token-1f04aa"

static const char *all_tokens[] = { OD_REL_OPERATOR, OD_REL_VIEWER, BAD_OPERATOR, BAD_VIEWER };

static gboolean
timeout_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

typedef gboolean (*Condition) (gpointer data);

/* Iterates the main context until the condition holds or 30 s pass. */
static gboolean
run_until (Condition condition,
           gpointer  data)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add_seconds (30, timeout_cb, &timed_out);

  while (!condition (data) && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  return condition (data);
}

/* Wakes the loop regularly so that conditions read from the cache are
 * checked again even when no signal arrives. */
static gboolean
tick (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

static gboolean
contains (const char *text,
          gsize       len,
          const char *needle)
{
  gsize n = strlen (needle);

  for (gsize i = 0; text != NULL && i + n <= len; i++)
    if (text[i] == needle[0] && memcmp (text + i, needle, n) == 0)
      return TRUE;
  return FALSE;
}

static void
check_no_token (const char *what,
                const char *text,
                gsize       len)
{
  for (guint i = 0; i < G_N_ELEMENTS (all_tokens); i++)
    if (contains (text, len, all_tokens[i]))
      g_error ("%s holds the token %s", what, all_tokens[i]);
}

static void
check_text (const char *what,
            const char *text)
{
  check_no_token (what, text, text ? strlen (text) : 0);
}

typedef struct
{
  gint64   id;
  gboolean done;
} Submitted;

static void
on_submitted (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Submitted *s = user_data;
  g_autoptr(GError) error = NULL;

  s->id = od_outbox_submit_finish (OD_OUTBOX (source), result, &error);
  g_assert_no_error (error);
  s->done = TRUE;
}

static gboolean
is_done (gpointer data)
{
  return ((Submitted *) data)->done;
}

static gint64
submit (OdOutbox   *outbox,
        const char *body)
{
  Submitted s = { -1, FALSE };

  od_outbox_submit_json_async (outbox, body, NULL, on_submitted, &s);
  g_assert_true (run_until (is_done, &s));
  g_assert_cmpint (s.id, >, 0);
  return s.id;
}

typedef struct
{
  OdOutbox       *outbox;
  gint64          id;
  OdCommandState  state;
} Wanted;

static gboolean
has_state (gpointer data)
{
  Wanted *w = data;
  g_autoptr(OdPendingCommand) command = od_outbox_get (w->outbox, w->id, NULL);

  return command != NULL && command->state == w->state;
}

static void
wait_state (OdOutbox       *outbox,
            gint64          id,
            OdCommandState  state)
{
  Wanted w = { outbox, id, state };
  g_autoptr(OdPendingCommand) command = NULL;

  if (!run_until (has_state, &w))
    {
      command = od_outbox_get (outbox, id, NULL);
      g_error ("command %" G_GINT64_FORMAT " is %s, not %s (detail: %s)", id,
               command ? od_command_state_name (command->state) : "missing",
               od_command_state_name (state), command ? command->detail : "-");
    }
}

static void
check_command (OdOutbox *outbox,
               gint64    id)
{
  g_autoptr(OdPendingCommand) command = od_outbox_get (outbox, id, NULL);

  g_assert_nonnull (command);
  check_text ("a command's idempotency key", command->idempotency_key);
  check_text ("a command's body", command->body);
  check_text ("a command's detail", command->detail);
  check_text ("a command's problem", command->problem);
}

static gboolean
sign_in_needed (gpointer data)
{
  return od_lag_get_state (data) == OD_LAG_STATE_SIGN_IN_NEEDED;
}

static void
on_sign_in_needed (OdOutbox *outbox,
                   gboolean *flag)
{
  *flag = TRUE;
}

static gboolean
flag_set (gpointer data)
{
  return *(gboolean *) data;
}

static void
check_files (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  guint n = 0;

  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_autofree char *contents = NULL;
      gsize len = 0;

      if (!g_file_get_contents (path, &contents, &len, NULL))
        continue;
      g_test_message ("%s: %" G_GSIZE_FORMAT " bytes", name, len);
      check_no_token (path, contents, len);
      n++;
    }
  g_assert_cmpuint (n, >=, 1);
}

static void
remove_dir (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);

      unlink (path);
    }
  rmdir (dir);
}

static void
test_tokens_stay_secret (void)
{
  g_autoptr(OdRelServer) server = od_rel_server_new ("--rate-limit", "0", NULL);
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-rel-cache-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *create = NULL;
  g_autofree char *place = NULL;
  g_autofree char *cancel = NULL;
  g_autofree char *log = NULL;
  g_autofree char *order_id = od_uuid_v7_new ();
  const char *url = od_rel_server_url (server);
  OdCache *cache;
  OdSyncEngine *sync;
  OdOutbox *outbox;
  gint64 created, refused, unsent;
  gboolean outbox_signed_out = FALSE;
  guint ticker = g_timeout_add (100, tick, NULL);

  g_assert_no_error (error);
  create = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                            "{\"customer_name\":\"Ada\",\"customer_email\":\"ada@example.com\","
                            "\"currency\":\"EUR\"}}", order_id);
  place = g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\"}", order_id);
  cancel = g_strdup_printf ("{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":"
                            "{\"reason\":\"changed their mind\"}}", order_id);

  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  sync = od_sync_engine_new (cache, url, OD_REL_VIEWER);
  outbox = od_outbox_new (cache, url, OD_REL_OPERATOR);
  g_signal_connect (outbox, "sign-in-needed", G_CALLBACK (on_sign_in_needed), &outbox_signed_out);
  od_sync_engine_start (sync);

  /* Good tokens: one command accepted and seen through the stream, one
   * refused by the server (an order without lines cannot be placed). */
  created = submit (outbox, create);
  wait_state (outbox, created, OD_COMMAND_STATE_VISIBLE);
  refused = submit (outbox, place);
  wait_state (outbox, refused, OD_COMMAND_STATE_REJECTED);
  check_command (outbox, created);
  check_command (outbox, refused);

  /* Tokens the server does not know: both stop and say why, without
   * repeating the token. */
  od_sync_engine_set_server (sync, url, BAD_VIEWER);
  g_assert_true (run_until (sign_in_needed, od_sync_engine_get_lag (sync)));
  check_text ("the sync engine's last error", od_lag_get_last_error (od_sync_engine_get_lag (sync)));
  check_text ("the lag's server URL", od_lag_get_server_url (od_sync_engine_get_lag (sync)));
  od_outbox_set_server (outbox, url, BAD_OPERATOR);
  unsent = submit (outbox, cancel);
  g_assert_true (run_until (flag_set, &outbox_signed_out));
  check_command (outbox, unsent);
  {
    g_autoptr(OdPendingCommand) command = od_outbox_get (outbox, unsent, NULL);

    /* Refused for the token: not a final answer, it is sent again after
     * signing in. */
    g_assert_nonnull (command);
    g_assert_cmpint (command->state, !=, OD_COMMAND_STATE_VISIBLE);
    g_assert_cmpint (command->state, !=, OD_COMMAND_STATE_ACCEPTED);
  }

  od_sync_engine_stop (sync);
  g_object_unref (sync);
  g_object_unref (outbox);
  od_cache_close (cache);
  g_object_unref (cache);
  g_source_remove (ticker);

  /* Every file of the cache, WAL and shared memory included. */
  check_files (dir);
  remove_dir (dir);

  od_rel_server_stop (server);
  log = od_rel_server_log (server);
  check_text ("the server log", log);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/token-leaks/console-core", test_tokens_stay_secret);
  return g_test_run ();
}

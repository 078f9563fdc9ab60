/* SPDX-License-Identifier: GPL-3.0-or-later */
/* OdSession: its properties change, and are notified, only when their
 * value does; the latencies are the outbox's, by nearest rank. */
#include "od-core.h"
#include "od-test-server.h"

#include <glib/gstdio.h>
#include <string.h>

typedef struct
{
  GHashTable *notified; /* property name → count */
} Notes;

static void
on_notify (OdSession  *session,
           GParamSpec *pspec,
           Notes      *notes)
{
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (notes->notified, pspec->name));

  g_hash_table_insert (notes->notified, (gpointer) pspec->name, GUINT_TO_POINTER (n + 1));
}

static guint
notified (Notes      *notes,
          const char *name)
{
  return GPOINTER_TO_UINT (g_hash_table_lookup (notes->notified, name));
}

typedef struct
{
  gboolean done;
  gint64   id;
  GError  *error;
} Submit;

static void
submitted (GObject      *source,
           GAsyncResult *result,
           gpointer      data)
{
  Submit *s = data;

  s->id = od_session_submit_finish (OD_SESSION (source), result, &s->error);
  s->done = TRUE;
}

static gint64
submit (OdSession  *session,
        const char *body,
        GError    **error)
{
  Submit s = { 0 };

  od_session_submit_json_async (session, body, NULL, submitted, &s);
  while (!s.done)
    g_main_context_iteration (NULL, TRUE);
  if (s.error != NULL)
    g_propagate_error (error, s.error);
  return s.id;
}

static char *
create_body (const char *name)
{
  g_autofree char *id = od_uuid_v7_new ();

  return g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                          "{\"customer_name\":\"%s\",\"customer_email\":\"s@example.com\","
                          "\"currency\":\"EUR\"}}", id, name);
}

static void
remove_cache (const char *dir,
              const char *path)
{
  const char *suffixes[] = { "", "-wal", "-shm", ".lock" };

  for (guint i = 0; i < G_N_ELEMENTS (suffixes); i++)
    {
      g_autofree char *file = g_strconcat (path, suffixes[i], NULL);

      g_remove (file);
    }
  g_rmdir (dir);
}

static void
test_properties (void)
{
  g_autofree char *dir = g_dir_make_tmp ("od-session-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(OdSession) session = NULL;
  g_autofree char *body = create_body ("Session");
  Notes notes = { g_hash_table_new (g_str_hash, g_str_equal) };
  g_autofree char *fp = od_outbox_token_fingerprint ("op-secret");
  double last, p50, p99;
  gint64 id;

  /* Nothing listens there: commands stay queued. */
  session = od_session_open (path, "http://127.0.0.1:9", OD_SESSION_FLAGS_NONE, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (od_session_get_server_url (session), ==, "http://127.0.0.1:9");
  g_assert_cmpstr (od_session_get_identity (session), ==, "none");
  g_assert_false (od_session_has_token (session));
  g_assert_cmpuint (od_session_get_pending_commands (session), ==, 0);
  od_session_get_latency (session, &last, &p50, &p99);
  g_assert_cmpfloat (last, ==, -1);
  g_assert_cmpfloat (p99, ==, -1);
  g_signal_connect (session, "notify", G_CALLBACK (on_notify), &notes);

  od_session_sign_in (session, "op-secret");
  g_assert_cmpstr (od_session_get_identity (session), ==, fp);
  g_assert_true (od_session_has_token (session));
  g_assert_cmpuint (notified (&notes, "identity"), ==, 1);
  od_session_sign_in (session, "op-secret");
  g_assert_cmpuint (notified (&notes, "identity"), ==, 1);

  id = submit (session, body, &error);
  g_assert_no_error (error);
  g_assert_cmpint (id, >, 0);
  g_assert_cmpuint (od_session_get_pending_commands (session), ==, 1);
  g_assert_cmpuint (notified (&notes, "pending-commands"), ==, 1);

  /* Another sign-in: the command is held, so not pending for it. */
  od_session_set_identity (session, "view-secret");
  g_assert_cmpstr (od_session_get_identity (session), !=, fp);
  g_assert_cmpuint (notified (&notes, "identity"), ==, 2);
  g_assert_cmpuint (od_session_get_pending_commands (session), ==, 0);
  g_assert_cmpuint (notified (&notes, "pending-commands"), ==, 2);
  od_session_set_identity (session, "view-secret");
  g_assert_cmpuint (notified (&notes, "identity"), ==, 2);
  g_assert_cmpuint (notified (&notes, "pending-commands"), ==, 2);

  g_assert_cmpint (submit (session, "{\"type\":\"CreateOrder\"}", &error), ==, -1);
  g_assert_error (error, OD_COMMAND_ERROR, OD_COMMAND_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_cmpuint (notified (&notes, "latency-last"), ==, 0);

  od_session_close (session);
  g_assert_null (od_session_get_outbox (session));
  g_hash_table_unref (notes.notified);
  remove_cache (dir, path);
}

static int
compare_double (gconstpointer a,
                gconstpointer b)
{
  double x = *(const double *) a;
  double y = *(const double *) b;

  return x < y ? -1 : x > y ? 1 : 0;
}

static void
test_live (void)
{
  OdTestServer *server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = g_dir_make_tmp ("od-session-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(OdSession) session = NULL;
  g_autoptr(GArray) samples = g_array_new (FALSE, FALSE, sizeof (double));
  Notes notes = { g_hash_table_new (g_str_hash, g_str_equal) };
  gint64 ids[3];
  double last_visible = -1;
  gint64 last_visible_at = 0;
  double last, p50, p99;
  gint64 deadline;

  session = od_session_open (path, od_test_server_url (server), OD_SESSION_FLAGS_NONE, &error);
  g_assert_no_error (error);
  g_signal_connect (session, "notify", G_CALLBACK (on_notify), &notes);
  od_session_sign_in (session, OD_TEST_OPERATOR_TOKEN);
  od_session_connect (session);
  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    {
      g_autofree char *body = create_body ("Live");

      ids[i] = submit (session, body, &error);
      g_assert_no_error (error);
    }

  deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < deadline
         && (od_session_get_pending_commands (session) > 0
             || od_session_get_state (session) != OD_LAG_STATE_LIVE
             || notified (&notes, "latency-last") == 0))
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (od_session_get_pending_commands (session), ==, 0);
  g_assert_cmpint (od_session_get_state (session), ==, OD_LAG_STATE_LIVE);
  g_assert_cmpint (od_session_get_applied_position (session), ==, od_test_head (server));
  g_assert_cmpint (od_session_get_known_head (session), ==, od_test_head (server));
  g_assert_cmpuint (notified (&notes, "state"), >=, 1);
  g_assert_cmpuint (notified (&notes, "applied-position"), >=, 1);

  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    {
      g_autoptr(OdPendingCommand) c = od_outbox_get (od_session_get_outbox (session), ids[i], NULL);
      double ms;

      g_assert_nonnull (c);
      g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_VISIBLE);
      ms = od_pending_command_latency_ms (c);
      g_array_append_val (samples, ms);
      if (c->visible_at >= last_visible_at)
        {
          last_visible_at = c->visible_at;
          last_visible = ms;
        }
    }
  g_array_sort (samples, compare_double);
  od_session_get_latency (session, &last, &p50, &p99);
  /* Three samples: the p50 is the second, the p99 the largest. */
  g_assert_cmpfloat (p50, ==, g_array_index (samples, double, 1));
  g_assert_cmpfloat (p99, ==, g_array_index (samples, double, 2));
  g_assert_cmpfloat (last, ==, last_visible);

  /* The same changes noticed again, the newest first (as when an answer
   * is handled after a later commit): the last stays the newest's. */
  {
    OdOutbox *outbox = od_session_get_outbox (session);
    gint64 order[G_N_ELEMENTS (ids)];
    guint n = 0;

    for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
      {
        g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, ids[i], NULL);

        if (c->visible_at == last_visible_at)
          order[n++] = ids[i];
      }
    for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
      {
        g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, ids[i], NULL);

        if (c->visible_at != last_visible_at)
          order[n++] = ids[i];
      }
    for (guint i = 0; i < n; i++)
      g_signal_emit_by_name (outbox, "command-changed", order[i], OD_COMMAND_STATE_VISIBLE);
    od_session_get_latency (session, &last, NULL, NULL);
    g_assert_cmpfloat (last, ==, last_visible);
  }

  od_session_close (session);
  g_hash_table_unref (notes.notified);
  remove_cache (dir, path);
  od_test_server_free (server);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/core/session/properties", test_properties);
  g_test_add_func ("/core/session/live", test_live);
  return g_test_run ();
}

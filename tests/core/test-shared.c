/* SPDX-License-Identifier: GPL-3.0-or-later */
/* One cache shared by several processes (the console and orderdeskctl
 * scripts beside it), and an outbox that never acts in another person's
 * name. */
#include "od-core.h"
#include "od-test-events.h"
#include "od-test-ctl.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

#define ROUNDS 20

static void
od_test_async_result (GObject      *source,
                      GAsyncResult *result,
                      gpointer      data)
{
  *(GAsyncResult **) data = g_object_ref (result);
}

static char *
new_order_body (char **order_id)
{
  g_autofree char *id = od_uuid_v7_new ();
  char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":"
                                "{\"customer_name\":\"Shared\",\"customer_email\":"
                                "\"s@example.com\",\"currency\":\"EUR\"}}", id);

  if (order_id != NULL)
    *order_id = g_steal_pointer (&id);
  return body;
}

/* How many events of the server's log belong to the order. */
static guint
events_for (GPtrArray  *events,
            const char *order_id,
            const char **actor)
{
  guint n = 0;

  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);

      if (g_str_equal (ev->order_id, order_id))
        {
          n++;
          if (actor != NULL)
            *actor = ev->actor;
        }
    }
  return n;
}

/* The cache holds exactly the fold of the server's log, and its
 * invariants hold. */
static void
assert_cache_is_fold (OdTestServer *server,
                      const char   *cache_path)
{
  g_autoptr(GPtrArray) events = od_test_fetch_events (server);
  g_autoptr(GHashTable) fold = od_test_fold (events);
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
  g_autofree char *why = NULL;

  g_assert_no_error (error);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, od_test_head (server));
  if (!od_test_cache_equals_fold (cache, fold, &why))
    g_error ("cache differs from the server's fold: %s", why);
  od_test_assert_cache_sane (cache);
}

static void
assert_no_rebuild (const char *log_path)
{
  g_autofree char *log = NULL;

  if (!g_file_get_contents (log_path, &log, NULL, NULL))
    return;
  if (strstr (log, "rebuilding") != NULL || strstr (log, "UNIQUE") != NULL
      || strstr (log, "cache write failed") != NULL)
    g_error ("a process took the shared cache for another: %s", log);
}

static void
two_syncs (OdTestServer *server,
           const char   *cache_path,
           const char   *log_path)
{
  const char *args[] = { "sync", NULL };
  g_autoptr(GSubprocess) a = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, args,
                                                log_path);
  g_autoptr(GSubprocess) b = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, args,
                                                log_path);

  g_assert_cmpint (od_test_wait_ctl (a), ==, 0);
  g_assert_cmpint (od_test_wait_ctl (b), ==, 0);
}

/* Two `orderdeskctl sync` started together on a cache that does not
 * exist yet: one creates the schema, neither takes the other's half-made
 * schema for an old one, both exit 0 once the cache has the head. */
static void
test_two_syncs_new_cache (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (150, NULL);
  g_autofree char *dir = od_test_tmpdir ("shared-new");
  g_autofree char *log_path = g_build_filename (dir, "ctl.log", NULL);

  for (guint round = 0; round < ROUNDS; round++)
    {
      g_autofree char *name = g_strdup_printf ("cache-%u.sqlite", round);
      g_autofree char *cache_path = g_build_filename (dir, name, NULL);

      two_syncs (server, cache_path, log_path);
      assert_cache_is_fold (server, cache_path);
    }
  assert_no_rebuild (log_path);
  od_test_rmdir (dir);
}

/* The same on one existing cache, with new events before every round. */
static void
test_two_syncs_existing_cache (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (150, NULL);
  g_autofree char *dir = od_test_tmpdir ("shared-old");
  g_autofree char *log_path = g_build_filename (dir, "ctl.log", NULL);
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  const char *args[] = { "sync", NULL };

  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL, args, NULL),
                   ==, 0);
  for (guint round = 0; round < ROUNDS; round++)
    {
      od_test_load (server, 20, 2);
      two_syncs (server, cache_path, log_path);
      assert_cache_is_fold (server, cache_path);
    }
  assert_no_rebuild (log_path);
  od_test_rmdir (dir);
}

/* A console-like `sync --follow` holds the cache; one-shot syncs and
 * submits beside it, while others write to the server, all finish with
 * 0; every submitted command is applied once. */
static void
test_follow_beside_one_shots (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (100, NULL);
  g_autofree char *dir = od_test_tmpdir ("shared-follow");
  g_autofree char *log_path = g_build_filename (dir, "ctl.log", NULL);
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  const char *follow_args[] = { "sync", "--follow", NULL };
  const char *sync_args[] = { "sync", NULL };
  g_autoptr(GSubprocess) follow = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN,
                                                     follow_args, log_path);
  g_autoptr(GPtrArray) order_ids = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) events = NULL;

  for (guint round = 0; round < 8; round++)
    {
      g_autofree char *name = g_strdup_printf ("cmd-%u.json", round);
      g_autofree char *cmd_path = g_build_filename (dir, name, NULL);
      char *order_id = NULL;
      g_autofree char *body = new_order_body (&order_id);
      const char *submit_args[] = { "submit", cmd_path, NULL };
      g_autoptr(GSubprocess) sync = NULL;
      g_autoptr(GSubprocess) submit = NULL;
      g_autoptr(GSubprocess) submit2 = NULL;

      g_ptr_array_add (order_ids, order_id);
      g_assert_true (g_file_set_contents (cmd_path, body, -1, NULL));
      sync = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, sync_args, log_path);
      submit = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, submit_args,
                                  log_path);
      /* Every other round a second submit of another command races the
       * first one for the shared outbox. */
      if (round % 2 == 1)
        {
          g_autofree char *name2 = g_strdup_printf ("cmd-%u-b.json", round);
          g_autofree char *cmd2_path = g_build_filename (dir, name2, NULL);
          char *order2_id = NULL;
          g_autofree char *body2 = new_order_body (&order2_id);
          const char *submit2_args[] = { "submit", cmd2_path, NULL };

          g_ptr_array_add (order_ids, order2_id);
          g_assert_true (g_file_set_contents (cmd2_path, body2, -1, NULL));
          submit2 = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, submit2_args,
                                       log_path);
        }
      od_test_load (server, 10, 2);
      g_assert_cmpint (od_test_wait_ctl (sync), ==, 0);
      g_assert_cmpint (od_test_wait_ctl (submit), ==, 0);
      if (submit2 != NULL)
        g_assert_cmpint (od_test_wait_ctl (submit2), ==, 0);
      g_assert_true (g_subprocess_get_identifier (follow) != NULL);
    }
  /* The follower has what the server has, then stops cleanly. */
  {
    const char *final_sync[] = { "sync", NULL };

    g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL,
                                      final_sync, NULL), ==, 0);
  }
  g_subprocess_send_signal (follow, SIGTERM);
  g_assert_cmpint (od_test_wait_ctl (follow), ==, 0);

  events = od_test_fetch_events (server);
  for (guint i = 0; i < order_ids->len; i++)
    g_assert_cmpuint (events_for (events, g_ptr_array_index (order_ids, i), NULL), ==, 1);
  assert_cache_is_fold (server, cache_path);
  assert_no_rebuild (log_path);
  od_test_rmdir (dir);
}

/* The cache's applied position once it reaches `position`, or what it
 * is after `seconds`; read with plain SQLite. */
static gint64
applied_within (const char *path,
                gint64      position,
                guint       seconds)
{
  gint64 deadline = g_get_monotonic_time () + seconds * G_USEC_PER_SEC;
  gint64 applied = -1;

  while (applied < position && g_get_monotonic_time () < deadline)
    {
      sqlite3 *db = NULL;
      sqlite3_stmt *st = NULL;

      if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK
          && sqlite3_prepare_v2 (db, "SELECT applied_position FROM sync_state", -1, &st,
                                 NULL) == SQLITE_OK
          && sqlite3_step (st) == SQLITE_ROW)
        applied = sqlite3_column_int64 (st, 0);
      sqlite3_finalize (st);
      sqlite3_close (db);
      if (applied < position)
        g_usleep (50 * 1000);
    }
  return applied;
}

/* A `sync --follow` started beside a one-shot writer follows it, then
 * writes itself once the writer has gone: events after that reach the
 * cache (a later one-shot sync, itself a follower, sees the head). */
static void
test_follow_takes_over (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (200, NULL);
  g_autofree char *dir = od_test_tmpdir ("shared-takeover");
  g_autofree char *log_path = g_build_filename (dir, "ctl.log", NULL);
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  const char *follow_args[] = { "sync", "--follow", NULL };
  const char *sync_args[] = { "sync", NULL };
  const char *short_sync_args[] = { "--timeout", "20", "sync", NULL };
  g_autoptr(GSubprocess) first = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN,
                                                    sync_args, log_path);
  g_autoptr(GSubprocess) follow = NULL;

  /* Give the one-shot the lock first. */
  g_usleep (50 * 1000);
  follow = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, follow_args, log_path);
  g_assert_cmpint (od_test_wait_ctl (first), ==, 0);
  for (guint round = 0; round < 3; round++)
    {
      gint64 head = od_test_load (server, 30, 2);

      /* No other process now: only the follower, having taken over, can
       * bring the cache to the head (read without opening an OdCache,
       * which would take the lock itself). */
      g_assert_cmpint (applied_within (cache_path, head, 20), >=, head);
    }
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL,
                                    short_sync_args, NULL), ==, 0);
  g_subprocess_send_signal (follow, SIGTERM);
  g_assert_cmpint (od_test_wait_ctl (follow), ==, 0);
  assert_cache_is_fold (server, cache_path);
  assert_no_rebuild (log_path);
  od_test_rmdir (dir);
}

/* Queue a command as someone else (another token): this sign-in's sync
 * never sends it; it is listed as held, and goes only with explicit
 * consent (send-as-me, then as this sign-in) or is discarded. */
static void
test_identity_held (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("identity");
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *first_id = NULL;
  g_autofree char *second_id = NULL;
  g_autofree char *first = new_order_body (&first_id);
  g_autofree char *second = new_order_body (&second_id);
  gint64 ids[2];
  const char *sync_args[] = { "sync", NULL };
  gint64 head_before;

  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
    g_autoptr(OdOutbox) outbox = NULL;
    const char *bodies[2] = { first, second };

    g_assert_no_error (error);
    outbox = od_outbox_new (cache, NULL, NULL);
    /* Queued by "someone-else", who never got to send them. */
    od_outbox_set_identity (outbox, od_test_server_url (server), "someone-else");
    for (guint i = 0; i < 2; i++)
      {
        g_autoptr(GAsyncResult) result = NULL;

        od_outbox_submit_json_async (outbox, bodies[i], NULL, od_test_async_result, &result);
        while (result == NULL)
          g_main_context_iteration (NULL, TRUE);
        ids[i] = od_outbox_submit_finish (outbox, result, &error);
        g_assert_no_error (error);
      }
  }

  head_before = od_test_head (server);
  /* The operator's sync: caught up, exit 0, and nothing sent as them. */
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL, sync_args,
                                    NULL), ==, 0);
  g_assert_cmpint (od_test_head (server), ==, head_before);
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
    g_autoptr(OdOutbox) outbox = od_outbox_new (cache, NULL, NULL);
    g_autoptr(OdPendingCommand) c = NULL;

    od_outbox_set_identity (outbox, od_test_server_url (server), OD_TEST_OPERATOR_TOKEN);
    c = od_outbox_get (outbox, ids[0], &error);
    g_assert_no_error (error);
    g_assert_nonnull (c);
    g_assert_true (c->held);
    g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_QUEUED);
    g_assert_cmpuint (od_outbox_count_held (outbox), ==, 2);
    g_assert_cmpuint (od_outbox_count_pending (outbox), ==, 0);
  }

  /* Consent for the first: sent as the operator, once. */
  {
    g_autofree char *id = g_strdup_printf ("%" G_GINT64_FORMAT, ids[0]);
    g_autofree char *id2 = g_strdup_printf ("%" G_GINT64_FORMAT, ids[1]);
    const char *send_args[] = { "outbox", "send-as-me", id, NULL };
    const char *discard_args[] = { "outbox", "discard", id2, NULL };
    g_autoptr(GPtrArray) events = NULL;
    const char *actor = NULL;

    g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL, send_args,
                                      NULL), ==, 0);
    g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL,
                                      discard_args, NULL), ==, 0);
    g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL, sync_args,
                                      NULL), ==, 0);
    events = od_test_fetch_events (server);
    g_assert_cmpuint (events_for (events, first_id, &actor), ==, 1);
    g_assert_cmpstr (actor, ==, "alice");
    g_assert_cmpuint (events_for (events, second_id, NULL), ==, 0);
  }
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
    g_autoptr(OdOutbox) outbox = od_outbox_new (cache, NULL, NULL);
    g_autoptr(OdPendingCommand) a = od_outbox_get (outbox, ids[0], NULL);
    g_autoptr(OdPendingCommand) b = od_outbox_get (outbox, ids[1], NULL);

    g_assert_cmpint (a->state, ==, OD_COMMAND_STATE_VISIBLE);
    g_assert_cmpint (b->state, ==, OD_COMMAND_STATE_DISCARDED);
  }
  od_test_rmdir (dir);
}

/* A viewer's submit is refused by the server (403): final at once, exit
 * 5 well before the 60 s timeout, and never sent again by an operator. */
static void
test_viewer_refused_at_once (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("viewer");
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *cmd_path = g_build_filename (dir, "cmd.json", NULL);
  g_autofree char *order_id = NULL;
  g_autofree char *body = new_order_body (&order_id);
  const char *submit_args[] = { "submit", cmd_path, NULL };
  const char *sync_args[] = { "sync", NULL };
  g_autofree char *err = NULL;
  g_autoptr(GPtrArray) events = NULL;
  gint64 t0;

  g_assert_true (g_file_set_contents (cmd_path, body, -1, NULL));
  t0 = g_get_monotonic_time ();
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_VIEWER_TOKEN, NULL, submit_args,
                                    &err), ==, 5);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 20 * G_USEC_PER_SEC);
  g_assert_nonnull (strstr (err, "403"));
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
    g_autoptr(OdOutbox) outbox = od_outbox_new (cache, NULL, NULL);
    g_autoptr(GPtrArray) all = od_outbox_list (outbox, TRUE, 10, NULL);
    OdPendingCommand *c;

    g_assert_cmpuint (all->len, ==, 1);
    c = g_ptr_array_index (all, 0);
    g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_REJECTED);
    g_assert_cmpuint (c->http_status, ==, 403);
  }
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL, sync_args,
                                    NULL), ==, 0);
  events = od_test_fetch_events (server);
  g_assert_cmpuint (events_for (events, order_id, NULL), ==, 0);
  od_test_rmdir (dir);
}

/* The numbers a command's state is stored as are frozen (old caches
 * hold them; see od-outbox-store.c): each state the outbox writes reads
 * back in SQL as its number, whatever the enum looks like. */
static gint64
stored_state (const char *cache_path,
              gint64      id)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  gint64 state = -1;

  g_assert_cmpint (sqlite3_open_v2 (cache_path, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (db, "SELECT state FROM pending_commands WHERE id = ?", -1,
                                       &st, NULL), ==, SQLITE_OK);
  sqlite3_bind_int64 (st, 1, id);
  if (sqlite3_step (st) == SQLITE_ROW)
    state = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  sqlite3_close (db);
  return state;
}

static void
test_stored_states (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("states");
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *cmd_path = g_build_filename (dir, "cmd.json", NULL);
  g_autofree char *visible_id = NULL;
  g_autofree char *rejected_id = NULL;
  g_autofree char *queued_id = NULL;
  g_autofree char *discarded_id = NULL;
  g_autofree char *visible_body = new_order_body (&visible_id);
  g_autofree char *rejected_body = new_order_body (&rejected_id);
  g_autofree char *queued_body = new_order_body (&queued_id);
  g_autofree char *discarded_body = new_order_body (&discarded_id);
  const char *submit_args[] = { "submit", cmd_path, NULL };
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdOutbox) outbox = NULL;
  g_autoptr(GPtrArray) all = NULL;
  const char *bodies[2] = { queued_body, discarded_body };
  gint64 ids[2];
  guint seen = 0;

  /* Visible (an operator's), rejected (a viewer's: 403). */
  g_assert_true (g_file_set_contents (cmd_path, visible_body, -1, NULL));
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL, submit_args,
                                    NULL), ==, 0);
  g_assert_true (g_file_set_contents (cmd_path, rejected_body, -1, NULL));
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_VIEWER_TOKEN, NULL, submit_args,
                                    NULL), ==, 5);

  /* Queued (an outbox with no server never sends), discarded. */
  cache = od_cache_open (cache_path, &error);
  g_assert_no_error (error);
  outbox = od_outbox_new (cache, NULL, NULL);
  for (guint i = 0; i < 2; i++)
    {
      g_autoptr(GAsyncResult) result = NULL;

      od_outbox_submit_json_async (outbox, bodies[i], NULL, od_test_async_result, &result);
      while (result == NULL)
        g_main_context_iteration (NULL, TRUE);
      ids[i] = od_outbox_submit_finish (outbox, result, &error);
      g_assert_no_error (error);
    }
  {
    g_autoptr(GAsyncResult) result = NULL;

    od_outbox_discard_async (outbox, ids[1], NULL, od_test_async_result, &result);
    while (result == NULL)
      g_main_context_iteration (NULL, TRUE);
    g_assert_true (od_outbox_discard_finish (outbox, result, &error));
    g_assert_no_error (error);
  }
  g_assert_true (od_cache_flush (cache, &error));
  g_assert_no_error (error);

  all = od_outbox_list (outbox, TRUE, 10, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (all->len, ==, 4);
  for (guint i = 0; i < all->len; i++)
    {
      OdPendingCommand *c = g_ptr_array_index (all, i);
      gint64 stored = stored_state (cache_path, c->id);

      if (g_strcmp0 (c->order_id, visible_id) == 0)
        {
          g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_VISIBLE);
          g_assert_cmpint (stored, ==, 3);
        }
      else if (g_strcmp0 (c->order_id, rejected_id) == 0)
        {
          g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_REJECTED);
          g_assert_cmpint (stored, ==, 4);
        }
      else if (g_strcmp0 (c->order_id, queued_id) == 0)
        {
          g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_QUEUED);
          g_assert_cmpint (stored, ==, 0);
        }
      else
        {
          g_assert_cmpstr (c->order_id, ==, discarded_id);
          g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_DISCARDED);
          g_assert_cmpint (stored, ==, 5);
        }
      seen++;
    }
  g_assert_cmpuint (seen, ==, 4);
  g_clear_object (&outbox);
  g_clear_object (&cache);
  od_test_rmdir (dir);
}

static guint
file_mode (const char *path)
{
  GStatBuf st;

  g_assert_cmpint (g_stat (path, &st), ==, 0);
  return st.st_mode & 0777;
}

/* The cache holds customer names and e-mail addresses: the file, its
 * -wal and -shm and the lock file are the user's alone, whatever the
 * umask; an older, readable cache is made private on open. */
static void
test_file_modes (void)
{
  g_autofree char *dir = od_test_tmpdir ("modes");
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *wal = g_strconcat (path, "-wal", NULL);
  g_autofree char *shm = g_strconcat (path, "-shm", NULL);
  g_autofree char *lock = g_strconcat (path, ".lock", NULL);
  mode_t old_umask = umask (022);

  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (path, &error);

    g_assert_no_error (error);
    g_assert_true (od_cache_is_writer (cache));
    g_assert_true (od_cache_flush (cache, NULL));
    g_assert_cmphex (file_mode (path), ==, 0600);
    g_assert_cmphex (file_mode (wal), ==, 0600);
    g_assert_cmphex (file_mode (shm), ==, 0600);
    g_assert_cmphex (file_mode (lock), ==, 0600);
  }
  g_assert_cmpint (g_chmod (path, 0644), ==, 0);
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (path, &error);

    g_assert_no_error (error);
    g_assert_nonnull (cache);
    g_assert_cmphex (file_mode (path), ==, 0600);
  }
  umask (old_umask);
  od_test_rmdir (dir);
}

/* In one process too: a second OdCache on the file follows the first,
 * and takes over writing once the first is closed. */
static void
test_follower_takes_over (void)
{
  g_autofree char *dir = od_test_tmpdir ("takeover");
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) first = od_cache_open (path, &error);
  g_autoptr(OdCache) second = NULL;
  g_autoptr(OdTestLog) log = od_test_log_new (20, 7);

  g_assert_no_error (error);
  second = od_cache_open (path, &error);
  g_assert_no_error (error);
  g_assert_true (od_cache_is_writer (first));
  g_assert_false (od_cache_is_writer (second));

  /* Events pushed to the follower are not applied by it. */
  od_cache_push_events (second, od_test_log_slice (log, 0, 10), log->head);
  g_assert_true (od_cache_flush (second, NULL));
  od_cache_push_events (first, od_test_log_slice (log, 0, 10), log->head);
  g_assert_true (od_cache_flush (first, NULL));
  /* The follower sees the writer's commits. */
  while (od_cache_get_applied_position (second) < 10)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (od_cache_get_applied_position (second), ==, 10);

  g_clear_object (&first);
  while (!od_cache_is_writer (second))
    g_main_context_iteration (NULL, TRUE);
  od_cache_push_events (second, od_test_log_slice (log, 10, log->events->len), log->head);
  g_assert_true (od_cache_flush (second, NULL));
  g_assert_cmpint (od_cache_get_applied_position (second), ==, log->head);
  od_test_rmdir (dir);
}

/* Marks command `id` as sent by `owner` (a process alive or not). */
static void
claim_for (const char *cache_path,
           gint64      id,
           const char *owner,
           int         state)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;

  g_assert_cmpint (sqlite3_open_v2 (cache_path, &db, SQLITE_OPEN_READWRITE, NULL), ==, SQLITE_OK);
  sqlite3_busy_timeout (db, 5000);
  g_assert_cmpint (sqlite3_prepare_v2 (db, "UPDATE pending_commands SET state = ?1,"
                                       " attempts = 1, sent_at = ?2, claim_owner = ?3,"
                                       " claim_at = ?2 WHERE id = ?4", -1, &st, NULL),
                   ==, SQLITE_OK);
  sqlite3_bind_int (st, 1, state);
  sqlite3_bind_int64 (st, 2, g_get_real_time ());
  sqlite3_bind_text (st, 3, owner, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 4, id);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_DONE);
  g_assert_cmpint (sqlite3_changes (db), ==, 1);
  sqlite3_finalize (st);
  sqlite3_close (db);
}

/* Queues a command as the operator, from this process (which sends
 * nothing: its outbox has no server). */
static gint64
queue_as_operator (OdTestServer  *server,
                   const char    *cache_path,
                   char         **order_id_out)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
  g_autoptr(OdOutbox) outbox = NULL;
  g_autoptr(GAsyncResult) result = NULL;
  g_autofree char *order_id = NULL;
  g_autofree char *body = new_order_body (&order_id);
  gint64 id;

  g_assert_no_error (error);
  outbox = od_outbox_new (cache, NULL, NULL);
  od_outbox_set_identity (outbox, od_test_server_url (server), OD_TEST_OPERATOR_TOKEN);
  od_outbox_submit_json_async (outbox, body, NULL, od_test_async_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  id = od_outbox_submit_finish (outbox, result, &error);
  g_assert_no_error (error);
  if (order_id_out != NULL)
    *order_id_out = g_steal_pointer (&order_id);
  return id;
}

/* A command claimed by another process that then dies without an answer
 * (killed, or a one-shot orderdeskctl that exits once its own command is
 * applied, in the middle of sending the next one) is sent by whoever
 * still waits, promptly: a process's death changes nothing in the cache
 * that would tell the others, so they must look again by themselves.
 * Before, the waiting submit gave up after its --timeout (core-shared
 * failed so under the sanitizers, where exits take longer). */
static void
test_claimer_dies (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("claimer-dies");
  g_autofree char *log_path = g_build_filename (dir, "ctl.log", NULL);
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *cmd_path = g_build_filename (dir, "cmd.json", NULL);
  g_autofree char *first_id = NULL;
  g_autofree char *second_id = NULL;
  g_autofree char *second = new_order_body (&second_id);
  g_autofree char *ns = g_file_read_link ("/proc/self/ns/pid", NULL);
  g_autofree char *owner = NULL;
  g_autoptr(GSubprocess) stand_in = NULL;
  g_autoptr(GSubprocess) submit = NULL;
  g_autoptr(GPtrArray) events = NULL;
  g_autoptr(GError) error = NULL;
  const char *submit_args[] = { "--timeout", "60", "submit", cmd_path, NULL };
  gint64 first_cmd, t0;
  double secs;

  /* The operator's first command, being sent by another process,
   * alive for now. */
  first_cmd = queue_as_operator (server, cache_path, &first_id);
  g_assert_nonnull (ns);
  stand_in = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_SILENCE,
                               &error, "sleep", "600", NULL);
  g_assert_no_error (error);
  owner = g_strdup_printf ("%s:%s:0", ns, g_subprocess_get_identifier (stand_in));
  claim_for (cache_path, first_cmd, owner, OD_COMMAND_STATE_SENT);

  /* The second command waits behind the first, which is another's. */
  g_assert_true (g_file_set_contents (cmd_path, second, -1, NULL));
  submit = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, submit_args, log_path);
  g_usleep (2 * G_USEC_PER_SEC * od_test_process_slowdown ());
  g_assert_cmpint (od_test_head (server), ==, 0);

  /* The sender dies without a word. */
  g_subprocess_force_exit (stand_in);
  g_assert_true (g_subprocess_wait (stand_in, NULL, NULL));
  t0 = g_get_monotonic_time ();
  g_assert_cmpint (od_test_wait_ctl (submit), ==, 0);
  secs = (g_get_monotonic_time () - t0) / 1e6;
  g_test_message ("the waiting submit finished %.1f s after the claimer died", secs);
  g_assert_cmpfloat (secs, <, 5.0 * od_test_process_slowdown ());

  /* Both sent, each once, in their order. */
  events = od_test_fetch_events (server);
  g_assert_cmpuint (events_for (events, first_id, NULL), ==, 1);
  g_assert_cmpuint (events_for (events, second_id, NULL), ==, 1);
  g_assert_cmpstr (((OdEvent *) g_ptr_array_index (events, 0))->order_id, ==, first_id);
  od_test_rmdir (dir);
}

/* A caught-up `sync` waits for the outbox to settle.  A command another
 * process queued after the sync started, and answered itself, changes
 * only the outbox table.  Before, the sync looked again only at commands
 * it had seen and waited forever (core-shared hung in about 1 run in 25
 * under the sanitizers). */
static void
test_sync_sees_others_answer (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (10, NULL);
  g_autofree char *dir = od_test_tmpdir ("others-answer");
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *log_path = g_build_filename (dir, "ctl.log", NULL);
  g_autofree char *ns = g_file_read_link ("/proc/self/ns/pid", NULL);
  g_autofree char *owner = NULL;
  g_autoptr(GSubprocess) stand_in = NULL;
  g_autoptr(GSubprocess) sync = NULL;
  g_autoptr(GError) error = NULL;
  const char *sync_args[] = { "--timeout", "60", "sync", NULL };
  gint64 first, second, deadline;

  /* The first command, being sent by another process alive throughout:
   * the sync waits for it. */
  first = queue_as_operator (server, cache_path, NULL);
  g_assert_nonnull (ns);
  stand_in = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_SILENCE,
                               &error, "sleep", "600", NULL);
  g_assert_no_error (error);
  owner = g_strdup_printf ("%s:%s:0", ns, g_subprocess_get_identifier (stand_in));
  claim_for (cache_path, first, owner, OD_COMMAND_STATE_SENT);
  sync = od_test_spawn_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, sync_args, log_path);
  g_usleep (2 * G_USEC_PER_SEC * od_test_process_slowdown ());
  g_assert_nonnull (g_subprocess_get_identifier (sync));

  /* A second one, queued after the sync started (it stays behind the
   * first, so the sync does not send it), then both answered. */
  second = queue_as_operator (server, cache_path, NULL);
  claim_for (cache_path, second, owner, OD_COMMAND_STATE_SENT);
  claim_for (cache_path, first, owner, OD_COMMAND_STATE_VISIBLE);
  g_usleep (G_USEC_PER_SEC * od_test_process_slowdown ());
  g_assert_nonnull (g_subprocess_get_identifier (sync));
  claim_for (cache_path, second, owner, OD_COMMAND_STATE_VISIBLE);

  deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC * od_test_process_slowdown ();
  while (g_subprocess_get_identifier (sync) != NULL && g_get_monotonic_time () < deadline)
    {
      g_main_context_iteration (NULL, FALSE);
      g_usleep (20 * 1000);
    }
  if (g_subprocess_get_identifier (sync) != NULL)
    {
      g_subprocess_force_exit (sync);
      g_error ("a caught-up sync did not see another process answer the last command");
    }
  g_assert_cmpint (od_test_wait_ctl (sync), ==, 0);
  g_subprocess_force_exit (stand_in);
  g_subprocess_wait (stand_in, NULL, NULL);
  od_test_rmdir (dir);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/shared/file-modes", test_file_modes);
  g_test_add_func ("/shared/follower-takes-over", test_follower_takes_over);
  g_test_add_func ("/shared/two-syncs-new-cache", test_two_syncs_new_cache);
  g_test_add_func ("/shared/two-syncs-existing-cache", test_two_syncs_existing_cache);
  g_test_add_func ("/shared/follow-beside-one-shots", test_follow_beside_one_shots);
  g_test_add_func ("/shared/follow-takes-over", test_follow_takes_over);
  g_test_add_func ("/shared/claimer-dies", test_claimer_dies);
  g_test_add_func ("/shared/sync-sees-others-answer", test_sync_sees_others_answer);
  g_test_add_func ("/outbox/identity-held", test_identity_held);
  g_test_add_func ("/outbox/viewer-refused-at-once", test_viewer_refused_at_once);
  g_test_add_func ("/outbox/stored-states", test_stored_states);
  return g_test_run ();
}

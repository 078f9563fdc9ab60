/* SPDX-License-Identifier: GPL-3.0-or-later */
/* SIGKILL `orderdeskctl sync` at 100+ random instants of a 200,000-event
 * catch-up, restarting it each time: the cache must end equal to the
 * fold of the server's log, with every position once, versions
 * contiguous and an intact database. */
#include "od-core.h"
#include "od-test-events.h"
#include "od-test-ctl.h"

#include <signal.h>

#define KILLS 100
/* Most kills land at a random instant after the start, and under load
 * most of those land before the run's first commit (CI runs saw 4 to 10
 * distinct checkpoints in 100 kills, and once only 4 in 300).  So every
 * PROGRESS_EVERY-th kill waits until the run has committed something new
 * and then lands 0-50 ms later, mid-stream: at least
 * KILLS / PROGRESS_EVERY distinct checkpoints whatever the load, and few
 * enough runs that get far for the catch-up not to finish. */
#define PROGRESS_EVERY 10
#define MIN_CHECKPOINTS 5

static gint64
applied_of (const char *cache_path)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  gint64 v = -1;

  if (sqlite3_open_v2 (cache_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
    {
      sqlite3_close (db);
      return -1;
    }
  sqlite3_busy_timeout (db, 5000);
  if (sqlite3_prepare_v2 (db, "SELECT applied_position FROM sync_state", -1, &st, NULL) == SQLITE_OK
      && sqlite3_step (st) == SQLITE_ROW)
    v = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  sqlite3_close (db);
  return v;
}

static GSubprocess *
spawn_sync (OdTestServer *server,
            const char   *cache_path,
            gboolean      small_transactions)
{
  g_autofree char *ctl = od_test_ctl_path ();
  g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE
                                                                | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
  g_autoptr(GError) error = NULL;
  GSubprocess *p;

  g_subprocess_launcher_setenv (l, "ORDERDESK_TOKEN", OD_TEST_VIEWER_TOKEN, TRUE);
  /* Smaller transactions than the default: more commits, so the kills
   * land in every phase (mid-batch, mid-commit, between commits). */
  if (small_transactions)
    {
      g_subprocess_launcher_setenv (l, "ORDERDESK_MAX_TRANSACTION", "1000", TRUE);
      /* Half the runs in bulk mode (indexes dropped, built at the end),
       * half with every index kept up row by row (a cold catch-up would
       * otherwise go in bulk mode too). */
      if (g_random_boolean ())
        g_subprocess_launcher_setenv (l, "ORDERDESK_BULK_THRESHOLD", "20000", TRUE);
      else
        g_subprocess_launcher_setenv (l, "ORDERDESK_BULK_MIN", "9223372036854775807", TRUE);
    }
  p = g_subprocess_launcher_spawn (l, &error, ctl, "-q", "--timeout", "0", "--server", od_test_server_url (server),
                                   "--cache", cache_path, "sync", NULL);
  g_assert_no_error (error);
  return p;
}

static void
test_kill_during_catch_up (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (40000, NULL);
  g_autofree char *dir = od_test_tmpdir ("kill");
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autoptr(GHashTable) seen_positions = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free,
                                                                NULL);
  gint64 head = od_test_head (server);
  gint64 last_applied = 0;
  guint killed_running = 0;
  guint kills = 0;

  g_test_message ("server head %" G_GINT64_FORMAT, head);
  g_assert_cmpint (head, >=, 190000);

  while (kills < KILLS)
    {
      g_autoptr(GSubprocess) p = spawn_sync (server, cache_path, TRUE);
      gint64 applied;

      if (kills % PROGRESS_EVERY == PROGRESS_EVERY - 1)
        {
          gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

          while (applied_of (cache_path) <= last_applied)
            {
              if (g_subprocess_get_identifier (p) == NULL || g_get_monotonic_time () > deadline)
                g_error ("run %u committed nothing new (applied %" G_GINT64_FORMAT ")", kills,
                         last_applied);
              g_usleep (10 * 1000);
            }
          g_usleep (g_random_int_range (0, 50) * 1000);
        }
      else
        g_usleep (g_random_int_range (20, 300) * 1000);
      if (g_subprocess_get_identifier (p) != NULL)
        killed_running++;
      g_subprocess_send_signal (p, SIGKILL);
      g_subprocess_wait (p, NULL, NULL);
      kills++;

      applied = applied_of (cache_path);
      /* Killed before its first commit (the cache's schema is made in
       * one transaction: under load that can take longer than the
       * 20-300 ms): nothing applied yet.  Once a checkpoint was seen, a
       * cache without one is a failure below. */
      if (applied < 0 && last_applied == 0)
        applied = 0;
      /* The checkpoint never goes back. */
      g_assert_cmpint (applied, >=, last_applied);
      last_applied = applied;
      g_hash_table_add (seen_positions, g_memdup2 (&applied, sizeof applied));
    }
  g_test_message ("%u kills (%u while running), applied %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                  ", %u distinct checkpoints", kills, killed_running, last_applied, head,
                  g_hash_table_size (seen_positions));
  g_assert_cmpuint (killed_running, >=, kills * 9 / 10);
  /* The kills landed during the catch-up, not after it. */
  g_assert_cmpuint (g_hash_table_size (seen_positions), >=, MIN_CHECKPOINTS);
  g_assert_cmpint (last_applied, <, head);

  /* Then to the end. */
  {
    g_autoptr(GSubprocess) p = spawn_sync (server, cache_path, FALSE);

    g_assert_true (g_subprocess_wait (p, NULL, NULL));
    g_assert_true (g_subprocess_get_if_exited (p));
    g_assert_cmpint (g_subprocess_get_exit_status (p), ==, 0);
  }
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
    g_autoptr(GPtrArray) events = od_test_fetch_events (server);
    g_autoptr(GHashTable) fold = od_test_fold (events);
    g_autofree char *why = NULL;

    g_assert_no_error (error);
    g_assert_cmpint (od_cache_get_applied_position (cache), ==, head);
    if (!od_test_cache_equals_fold (cache, fold, &why))
      g_error ("%s", why);
    od_test_assert_cache_sane (cache);
  }
  od_test_rmdir (dir);
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *xdg = od_test_tmpdir ("xdg");

  g_setenv ("XDG_DATA_HOME", xdg, TRUE);
  g_test_init (&argc, &argv, NULL);
  if (g_getenv ("OD_SERVER_BIN") == NULL)
    {
      g_test_skip ("OD_SERVER_BIN is not set");
      od_test_rmdir (xdg);
      return 77;
    }
  g_test_add_func ("/sync/kill-during-catch-up", test_kill_during_catch_up);
  {
    int rc = g_test_run ();

    od_test_rmdir (xdg);
    return rc;
  }
}

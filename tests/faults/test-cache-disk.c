/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The console's cache on a disk that fills up, and on a disk that fails
 * writes, while the server's log keeps growing: the failure is shown
 * (the cache's "write-failed" signal, orderdeskctl's exit status and
 * message), applied_position does not move while nothing can be written,
 * PRAGMA integrity_check stays ok, and sync recovers by itself once
 * writes work again.
 *
 * A full disk is a tmpfs of 16 MiB mounted for the test (needs root, as
 * CI runs); without it, a file-size limit (RLIMIT_FSIZE) stands in for
 * it: writes that would grow a file are refused (SQLite reports that as
 * an I/O error rather than SQLITE_FULL; the test says which ran).  The
 * cache writer's own connection cannot be given PRAGMA max_page_count
 * from outside (it is per connection), so that is no option.  I/O errors are
 * writes refused by that limit with EFBIG, which SQLite reports as
 * SQLITE_IOERR_WRITE.  No LD_PRELOAD, no mock. */
#include "od-fault-server.h"
#include "od-cache-private.h" /* od_cache_get_db () */

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static GPtrArray *warnings;
static guint n_write_warnings;

/* The mount point while mounted, for the abort handler: a failed check
 * aborts the program before the fixture's tear-down could unmount. */
static char mounted_dir[4096];

static void
unmount_on_abort (int signum)
{
  if (mounted_dir[0] != '\0')
    {
      pid_t pid = fork ();

      if (pid == 0)
        {
          execl ("/bin/umount", "umount", "-l", mounted_dir, (char *) NULL);
          _exit (127);
        }
      if (pid > 0)
        waitpid (pid, NULL, 0);
    }
  signal (signum, SIG_DFL);
  raise (signum);
}

static GLogWriterOutput
record_warnings (GLogLevelFlags   level,
                 const GLogField *fields,
                 gsize            n_fields,
                 gpointer         data)
{
  if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
    for (gsize i = 0; i < n_fields; i++)
      if (g_strcmp0 (fields[i].key, "MESSAGE") == 0)
        {
          /* One line each would flood the log: they are counted. */
          if (g_str_has_prefix (fields[i].value, "cache write failed"))
            {
              n_write_warnings++;
              return G_LOG_WRITER_HANDLED;
            }
          g_ptr_array_add (warnings, g_strdup (fields[i].value));
        }
  return g_log_writer_default (level, fields, n_fields, data);
}

typedef struct
{
  OdFaultServer *server;
  SoupSession   *session;
  char          *dir;       /* the small file system, or a plain directory */
  gboolean       mounted;
  char          *path;      /* the cache */
  OdCache       *cache;
  OdSyncEngine  *sync;
  guint          failures;
  GError        *last_failure;
  guint          n_orders;
} Fixture;

static void
on_write_failed (OdCache *cache,
                 GError  *error,
                 Fixture *f)
{
  f->failures++;
  g_clear_error (&f->last_failure);
  f->last_failure = g_error_copy (error);
}

/* Whole order lives posted straight to the server: about 6 events each. */
static gint64
post_orders (Fixture *f,
             guint    n)
{
  gint64 last = 0;

  for (guint i = 0; i < n; i++, f->n_orders++)
    {
      g_autofree char *id = od_uuid_v7_new ();
      const char *fmt[] = {
        "{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Disk %u\","
        "\"customer_email\":\"d%u@example.com\",\"currency\":\"EUR\"}}",
        "{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"D-%u\",\"name\":\"A rather"
        " long product name to fill pages faster %u\",\"quantity\":2,\"unit_price_cents\":999}}",
        "{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"E-%u\",\"name\":\"Another"
        " long product name to fill pages faster %u\",\"quantity\":1,\"unit_price_cents\":5}}",
        "{\"type\":\"PlaceOrder\",\"order_id\":\"%s\"}",
        "{\"type\":\"ShipOrder\",\"order_id\":\"%s\",\"data\":{\"carrier\":\"UPS\","
        "\"tracking_number\":\"Z%u\"}}",
      };

      for (guint k = 0; k < G_N_ELEMENTS (fmt); k++)
        {
          g_autofree char *body = g_strdup_printf (fmt[k], id, f->n_orders, f->n_orders);
          g_autofree char *key = g_strdup_printf ("disk-%s-%u", id, k);
          g_autofree char *answer = NULL;
          gint64 version;

          g_assert_cmpuint (od_fault_post_command (f->session, f->server->url, key, body, &answer,
                                                   NULL), ==, 200);
          g_assert_true (od_fault_parse_answer (answer, &last, &version));
        }
    }
  return last;
}

/* The checks of the two bugs this test found (docs/reliability.md),
 * named by what they check. */
static void
check (gboolean    ok,
       const char *what)
{
  if (!ok)
    g_error ("FAILED CHECK: %s", what);
}

static void
iterate (guint ms)
{
  gint64 end = g_get_monotonic_time () + (gint64) ms * 1000;

  while (g_get_monotonic_time () < end)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
}

static gboolean
wait_applied (Fixture *f,
              gint64   position,
              guint    timeout_ms)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (od_cache_get_applied_position (f->cache) < position)
    {
      if (g_get_monotonic_time () > end)
        return FALSE;
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (1000);
    }
  return TRUE;
}

static gboolean
wait_failures (Fixture *f,
               guint    n,
               guint    timeout_ms)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (f->failures < n)
    {
      if (g_get_monotonic_time () > end)
        return FALSE;
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (1000);
    }
  return TRUE;
}

/* applied_position as stored, read through a connection of our own. */
static gint64
stored_applied (Fixture *f)
{
  sqlite3 *db = NULL;
  gint64 v;

  g_assert_cmpint (sqlite3_open_v2 (f->path, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
  v = od_fault_scalar (db, "SELECT applied_position FROM sync_state");
  sqlite3_close (db);
  return v;
}

static gboolean
run_quiet (const char * const *argv)
{
  g_autoptr(GError) error = NULL;
  int status = 0;

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL
                     | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, &status, &error))
    return FALSE;
  return g_spawn_check_wait_status (status, NULL);
}

static void
fixture_set_up (Fixture       *f,
                gconstpointer  data)
{
  gboolean want_mount = GPOINTER_TO_INT (data);

  f->server = od_fault_server_start ();
  f->session = od_fault_session_new ();
  f->dir = od_fault_tmpdir ("disk");
  if (want_mount && g_getenv ("OD_FAULT_NO_MOUNT") == NULL)
    {
      const char *argv[] = { "mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "od-fault-disk",
                             f->dir, NULL };

      f->mounted = geteuid () == 0 && run_quiet (argv);
      if (f->mounted)
        g_strlcpy (mounted_dir, f->dir, sizeof mounted_dir);
    }
  f->path = g_build_filename (f->dir, "cache.sqlite", NULL);
  warnings = g_ptr_array_new_with_free_func (g_free);
}

static void
fixture_tear_down (Fixture       *f,
                   gconstpointer  data)
{
  struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };

  setrlimit (RLIMIT_FSIZE, &unlimited);
  if (f->sync)
    od_sync_engine_stop (f->sync);
  g_clear_object (&f->sync);
  if (f->cache)
    od_cache_close (f->cache);
  g_clear_object (&f->cache);
  if (f->mounted)
    {
      const char *argv[] = { "umount", "-l", f->dir, NULL };

      g_assert_true (run_quiet (argv));
      mounted_dir[0] = '\0';
    }
  od_fault_rmdir (f->dir);
  g_free (f->dir);
  g_free (f->path);
  g_clear_error (&f->last_failure);
  g_clear_object (&f->session);
  od_fault_server_free (f->server);
  g_clear_pointer (&warnings, g_ptr_array_unref);
}

static void
open_and_sync (Fixture *f)
{
  g_autoptr(GError) error = NULL;

  f->cache = od_cache_open (f->path, &error);
  g_assert_no_error (error);
  g_signal_connect (f->cache, "write-failed", G_CALLBACK (on_write_failed), f);
  f->sync = od_sync_engine_new (f->cache, f->server->url, OD_FAULT_VIEWER_TOKEN);
  od_sync_engine_start (f->sync);
}

/* Writes a ballast file until the file system says it is full. */
static char *
fill_disk (Fixture *f,
           gsize   *written)
{
  char *ballast = g_build_filename (f->dir, "ballast", NULL);
  int fd = g_open (ballast, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  g_autofree char *block = g_malloc0 (64 * 1024);
  gsize size = 64 * 1024;

  g_assert_cmpint (fd, >=, 0);
  *written = 0;
  for (;;)
    {
      ssize_t n = write (fd, block, size);

      if (n > 0)
        *written += n;
      else if (n < 0 && errno == ENOSPC && size > 512)
        size /= 2;
      else
        break;
    }
  g_assert_cmpint (errno, ==, ENOSPC);
  fsync (fd);
  close (fd);
  return ballast;
}

/* The part both tests share: with writes failing, the failure is
 * signalled, the checkpoint does not move and the file stays sound; once
 * writes work again the cache catches up with the server by itself and
 * equals its log. */
static void
check_fault_and_recovery (Fixture    *f,
                          const char *what,
                          void      (*restore) (Fixture *f, gpointer data),
                          gpointer    restore_data)
{
  g_autoptr(GPtrArray) events = NULL;
  g_autofree char *why = NULL;
  OdSyncStats before, after;
  gint64 applied_at_fault, head, t_restore;
  guint failures_at_fault;

  head = post_orders (f, 300);
  if (!wait_failures (f, 1, 20000))
    g_error ("%s: no write-failed signal (applied %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT ")",
             what, od_cache_get_applied_position (f->cache), head);
  g_test_message ("%s: write-failed: %s (code %d)", what, f->last_failure->message,
                  f->last_failure->code);
  /* What the writer committed before the first failure stays; nothing
   * after it commits while the fault lasts. */
  applied_at_fault = od_cache_get_applied_position (f->cache);
  failures_at_fault = f->failures;
  g_assert_cmpint (applied_at_fault, <, head);
  od_sync_engine_get_stats (f->sync, &before);
  iterate (2000);
  od_sync_engine_get_stats (f->sync, &after);
  g_assert_cmpint (od_cache_get_applied_position (f->cache), ==, applied_at_fault);
  g_assert_cmpint (stored_applied (f), ==, applied_at_fault);
  g_assert_true (od_fault_integrity_ok (od_cache_get_db (f->cache)));
  g_test_message ("%s: in 2 s with writes failing: %u more write failures, %" G_GUINT64_FORMAT
                  " stream connections, %" G_GUINT64_FORMAT " events received again (applied"
                  " stays %" G_GINT64_FORMAT ", head %" G_GINT64_FORMAT ")", what,
                  f->failures - failures_at_fault, after.connections - before.connections,
                  after.events_received - before.events_received, applied_at_fault, head);
  /* A failing disk is no reason to download the backlog again and
   * again: the engine's backoff (1 s, doubling) would allow about two
   * attempts in these 2 s. */
  check (after.connections - before.connections <= 5,
             "while cache writes fail, the sync engine reconnects without backoff"
             " (dozens of full replays a second)");
  {
    OdLag *lag = od_sync_engine_get_lag (f->sync);

    g_test_message ("%s: lag while failing: state %d, %" G_GINT64_FORMAT " behind, last error: %s",
                    what, od_lag_get_state (lag), od_lag_get_events_behind (lag),
                    od_lag_get_last_error (lag) ? od_lag_get_last_error (lag) : "(none)");
  }

  restore (f, restore_data);
  t_restore = g_get_monotonic_time ();
  head = post_orders (f, 20);
  if (!wait_applied (f, head, 30000))
    {
      OdLag *lag = od_sync_engine_get_lag (f->sync);

      od_sync_engine_get_stats (f->sync, &after);
      g_error ("%s: no recovery within 30 s after writes work again (applied %" G_GINT64_FORMAT
               " of %" G_GINT64_FORMAT "; lag state %d, known head %" G_GINT64_FORMAT
               ", last error %s; %u write failures; %" G_GUINT64_FORMAT " connections, %"
               G_GUINT64_FORMAT " events received)", what,
               od_cache_get_applied_position (f->cache), head, od_lag_get_state (lag),
               od_lag_get_known_head (lag), od_lag_get_last_error (lag), f->failures,
               after.connections, after.events_received);
    }
  g_test_message ("%s: recovered: applied %" G_GINT64_FORMAT " %.0f ms after writes worked again",
                  what, head, (g_get_monotonic_time () - t_restore) / 1000.0);
  g_assert_true (od_cache_flush (f->cache, NULL));
  g_assert_true (od_fault_integrity_ok (od_cache_get_db (f->cache)));
  events = od_fault_fetch_events (f->session, f->server->url);
  if (!od_fault_cache_matches_log (od_cache_get_db (f->cache), events, &why))
    g_error ("%s: after recovery the cache is not the server's log: %s", what, why);
}

static void
delete_ballast (Fixture  *f,
                gpointer  data)
{
  g_assert_cmpint (g_unlink (data), ==, 0);
}

static void
lift_limit (Fixture  *f,
            gpointer  data)
{
  struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };

  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &unlimited), ==, 0);
}

/* Limits every file this process writes to the size of the largest
 * cache file now: the next write that grows one fails with EFBIG
 * (SQLITE_IOERR_WRITE).  `full` leaves a little room first, as a disk
 * that is nearly full. */
static void
limit_file_size (Fixture  *f,
                 gboolean  full)
{
  const char *suffixes[] = { "", "-wal", "-shm" };
  rlim_t largest = 0;
  struct rlimit limit;

  for (guint i = 0; i < G_N_ELEMENTS (suffixes); i++)
    {
      g_autofree char *p = g_strconcat (f->path, suffixes[i], NULL);
      GStatBuf st;

      if (g_stat (p, &st) == 0)
        largest = MAX (largest, (rlim_t) st.st_size);
    }
  limit.rlim_cur = largest + (full ? 1000 : 0);
  limit.rlim_max = RLIM_INFINITY;
  g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &limit), ==, 0);
}

static void
test_full_disk (Fixture       *f,
                gconstpointer  data)
{
  g_autofree char *ballast = NULL;
  gint64 head;
  gsize written = 0;

  g_test_message ("full disk: %s", f->mounted ? "a 16 MiB tmpfs filled with a ballast file"
                                              : "no mount possible: RLIMIT_FSIZE stands in"
                                                " (SQLite reports it as an I/O error)");
  head = post_orders (f, 100);
  open_and_sync (f);
  g_assert_true (wait_applied (f, head, 20000));
  g_assert_true (od_cache_flush (f->cache, NULL));

  if (f->mounted)
    {
      ballast = fill_disk (f, &written);
      g_test_message ("full disk: ballast of %" G_GSIZE_FORMAT " bytes", written);
      check_fault_and_recovery (f, "full disk", delete_ballast, ballast);
      g_assert_true (g_error_matches (f->last_failure, G_IO_ERROR, G_IO_ERROR_NO_SPACE));
    }
  else
    {
      limit_file_size (f, TRUE);
      check_fault_and_recovery (f, "full disk (file-size limit)", lift_limit, NULL);
    }
  g_assert_cmpuint (f->failures, >, 0);
}

static void
test_io_error (Fixture       *f,
               gconstpointer  data)
{
  gint64 head = post_orders (f, 100);

  open_and_sync (f);
  g_assert_true (wait_applied (f, head, 20000));
  g_assert_true (od_cache_flush (f->cache, NULL));
  limit_file_size (f, FALSE);
  check_fault_and_recovery (f, "I/O error (EFBIG)", lift_limit, NULL);
  g_assert_cmpuint (f->failures, >, 0);
}

/* orderdeskctl on a cache whose disk is full: it must say so and exit
 * with an error, not report the server unreachable or hang. */
static void
test_ctl_full_disk (Fixture       *f,
                    gconstpointer  data)
{
  g_autofree char *ctl = g_strdup (g_getenv ("OD_CTL_BIN"));
  g_autofree char *token_file = g_build_filename (f->server->dir, "viewer-token", NULL);
  g_autofree char *ballast = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr(GError) error = NULL;
  gint64 head, t0;
  gsize written;
  int status = 0;
  double secs;

  if (!f->mounted)
    {
      g_test_skip ("needs a small file system (mount as root)");
      return;
    }
  if (ctl == NULL)
    ctl = g_build_filename (g_getenv ("OD_BUILD_DIR"), "src", "ctl", "orderdeskctl", NULL);
  g_assert_true (g_file_set_contents (token_file, OD_FAULT_VIEWER_TOKEN "\n", -1, NULL));
  head = post_orders (f, 100);
  {
    const char *argv[] = { ctl, "--server", f->server->url, "--token-file", token_file, "--cache",
                           f->path, "--timeout", "20", "-q", "sync", NULL };

    g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                                 &err, &status, &error));
    g_assert_no_error (error);
    g_assert_true (g_spawn_check_wait_status (status, NULL));
    g_clear_pointer (&out, g_free);
    g_clear_pointer (&err, g_free);
  }
  /* Full, but for 256 KiB: enough to open the cache, not to take in
   * 1,500 more events. */
  ballast = fill_disk (f, &written);
  g_assert_cmpint (truncate (ballast, written - 256 * 1024), ==, 0);
  head = post_orders (f, 300);
  {
    const char *argv[] = { ctl, "--server", f->server->url, "--token-file", token_file, "--cache",
                           f->path, "--timeout", "10", "sync", NULL };
    sqlite3 *db = NULL;
    gint64 applied;

    t0 = g_get_monotonic_time ();
    g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                                 &err, &status, &error));
    g_assert_no_error (error);
    secs = (g_get_monotonic_time () - t0) / 1e6;
    g_test_message ("orderdeskctl sync on a full disk: exit status %d after %.1f s; stderr (last"
                    " 300 bytes): %s", WIFEXITED (status) ? WEXITSTATUS (status) : -1, secs,
                    strlen (err) > 300 ? err + strlen (err) - 300 : err);
    /* Looked at with room to open it again: sound, and not advanced past
     * what could be written. */
    g_assert_cmpint (g_unlink (ballast), ==, 0);
    g_assert_cmpint (sqlite3_open_v2 (f->path, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
    g_assert_true (od_fault_integrity_ok (db));
    applied = od_fault_scalar (db, "SELECT applied_position FROM sync_state");
    g_assert_cmpint (applied, <, head);
    g_assert_cmpint (od_fault_scalar (db, "SELECT coalesce(max(position), 0) FROM order_events"),
                     ==, applied);
    sqlite3_close (db);
    /* The operator is told the disk is full (today only through the
     * core's warnings on stderr)... */
    g_assert_nonnull (strstr (err, "full"));
    /* ...and the exit status is "error" (1) at once, not "unreachable"
     * (4) after the timeout. */
    g_assert_true (WIFEXITED (status));
    check (WEXITSTATUS (status) == 1 && secs < 5,
               "orderdeskctl sync on a full disk exits 1 with the disk error (it retried until"
               " --timeout and exited 4, 'server unreachable')");
  }
  {
    const char *argv[] = { ctl, "--server", f->server->url, "--token-file", token_file, "--cache",
                           f->path, "--timeout", "20", "-q", "sync", NULL };
    sqlite3 *db = NULL;

    g_clear_pointer (&out, g_free);
    g_clear_pointer (&err, g_free);
    g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                                 &err, &status, &error));
    g_assert_true (g_spawn_check_wait_status (status, NULL));
    g_assert_cmpint (sqlite3_open_v2 (f->path, &db, SQLITE_OPEN_READONLY, NULL), ==, SQLITE_OK);
    g_assert_cmpint (od_fault_scalar (db, "SELECT applied_position FROM sync_state"), ==, head);
    g_assert_true (od_fault_integrity_ok (db));
    sqlite3_close (db);
  }
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* The core logs a warning for each failed write; those are expected
   * here and must not abort the test. */
  g_log_set_always_fatal (G_LOG_FATAL_MASK);
  g_log_set_writer_func (record_warnings, NULL, NULL);
  /* Writes past RLIMIT_FSIZE raise SIGXFSZ, which would kill us. */
  signal (SIGXFSZ, SIG_IGN);
  signal (SIGABRT, unmount_on_abort);
  signal (SIGTRAP, unmount_on_abort);
  g_test_add ("/faults/cache-disk/full-disk", Fixture, GINT_TO_POINTER (TRUE), fixture_set_up,
              test_full_disk, fixture_tear_down);
  g_test_add ("/faults/cache-disk/io-error", Fixture, GINT_TO_POINTER (FALSE), fixture_set_up,
              test_io_error, fixture_tear_down);
  g_test_add ("/faults/cache-disk/orderdeskctl-full-disk", Fixture, GINT_TO_POINTER (TRUE),
              fixture_set_up, test_ctl_full_disk, fixture_tear_down);
  return g_test_run ();
}

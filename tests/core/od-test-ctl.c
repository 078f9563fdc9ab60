/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-ctl.h"
#include "od-cache-private.h" /* od_cache_get_db () */

#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* orderdeskctl gives up by itself after 60 s (--timeout) unless told
 * otherwise; one still running three minutes on is stuck. */
#define CTL_HANG_SECONDS 180

char *
od_test_tmpdir (const char *name)
{
  g_autofree char *tmpl = g_strdup_printf ("od-core-%s-XXXXXX", name);
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp (tmpl, &error);

  g_assert_no_error (error);
  return dir;
}

void
od_test_rmdir (const char *dir)
{
  od_test_process_rmdir (dir);
}

char *
od_test_ctl_path (void)
{
  const char *build = g_getenv ("OD_BUILD_DIR");

  g_assert_nonnull (build);
  return g_build_filename (build, "src", "ctl", "orderdeskctl", NULL);
}

int
od_test_run_ctl (OdTestServer       *server,
                 const char         *cache_path,
                 const char         *token,
                 const char * const *env,
                 const char * const *args,
                 char              **err)
{
  return od_test_run_ctl_full (server ? od_test_server_url (server) : NULL, cache_path, token, env, args,
                               NULL, err);
}

/* An empty file in TMPDIR for a program's output. */
static char *
output_file (void)
{
  g_autoptr(GError) error = NULL;
  char *path = NULL;
  int fd = g_file_open_tmp ("od-ctl-output-XXXXXX", &path, &error);

  g_assert_no_error (error);
  close (fd);
  return path;
}

/* The output, which must be UTF-8 (as g_subprocess_communicate_utf8
 * checked); the file is removed. */
static char *
read_output (const char *path)
{
  g_autoptr(GError) error = NULL;
  char *text = NULL;
  gsize len;

  g_assert_true (g_file_get_contents (path, &text, &len, &error));
  g_assert_no_error (error);
  g_unlink (path);
  if (!g_utf8_validate (text, len, NULL))
    g_error ("orderdeskctl wrote text that is not UTF-8: %s", text);
  return text;
}

int
od_test_run_ctl_full (const char         *url,
                      const char         *cache_path,
                      const char         *token,
                      const char * const *env,
                      const char * const *args,
                      char              **out,
                      char              **err)
{
  g_autofree char *ctl = od_test_ctl_path ();
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (out != NULL ? G_SUBPROCESS_FLAGS_NONE
                                           : G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_autoptr(GSubprocess) process = NULL;
  g_autoptr(GError) error = NULL;
  /* Its output goes to files, read once it has exited: waiting on pipes
   * would have no bound (od_test_process_wait_or_dump). */
  g_autofree char *out_path = NULL;
  g_autofree char *err_path = NULL;

  g_ptr_array_add (argv, ctl);
  if (url != NULL)
    {
      g_ptr_array_add (argv, (char *) "-q");
      g_ptr_array_add (argv, (char *) "--server");
      g_ptr_array_add (argv, (char *) url);
    }
  if (cache_path != NULL)
    {
      g_ptr_array_add (argv, (char *) "--cache");
      g_ptr_array_add (argv, (char *) cache_path);
    }
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, NULL);
  g_subprocess_launcher_unsetenv (launcher, "ORDERDESK_SERVER");
  if (token != NULL)
    g_subprocess_launcher_setenv (launcher, "ORDERDESK_TOKEN", token, TRUE);
  else
    g_subprocess_launcher_unsetenv (launcher, "ORDERDESK_TOKEN");
  for (guint i = 0; env != NULL && env[i] != NULL; i += 2)
    g_subprocess_launcher_setenv (launcher, env[i], env[i + 1], TRUE);
  if (out != NULL)
    {
      out_path = output_file ();
      g_subprocess_launcher_set_stdout_file_path (launcher, out_path);
    }
  if (err != NULL)
    {
      err_path = output_file ();
      g_subprocess_launcher_set_stderr_file_path (launcher, err_path);
    }
  process = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);
  od_test_process_wait_or_dump (process, CTL_HANG_SECONDS, "orderdeskctl");
  if (out != NULL)
    *out = read_output (out_path);
  if (err != NULL)
    *err = read_output (err_path);
  if (g_subprocess_get_if_signaled (process))
    return -g_subprocess_get_term_sig (process);
  return g_subprocess_get_exit_status (process);
}

/* A test that fails leaves no orderdeskctl behind (a --follow would run
 * on for ever). */
static void
ctl_die_with_parent (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

GSubprocess *
od_test_spawn_ctl (OdTestServer       *server,
                   const char         *cache_path,
                   const char         *token,
                   const char * const *args,
                   const char         *stderr_path)
{
  g_autofree char *ctl = od_test_ctl_path ();
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GSubprocessLauncher) launcher =
    g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_autoptr(GError) error = NULL;
  GSubprocess *process;

  g_ptr_array_add (argv, ctl);
  g_ptr_array_add (argv, (char *) "-q");
  g_ptr_array_add (argv, (char *) "--server");
  g_ptr_array_add (argv, (char *) od_test_server_url (server));
  g_ptr_array_add (argv, (char *) "--cache");
  g_ptr_array_add (argv, (char *) cache_path);
  for (guint i = 0; args[i] != NULL; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, NULL);
  g_subprocess_launcher_setenv (launcher, "ORDERDESK_TOKEN", token, TRUE);
  g_subprocess_launcher_set_child_setup (launcher, ctl_die_with_parent, NULL, NULL);
  if (stderr_path != NULL)
    {
      int fd = g_open (stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

      g_assert_cmpint (fd, >=, 0);
      g_subprocess_launcher_take_stderr_fd (launcher, fd);
    }
  process = g_subprocess_launcher_spawnv (launcher, (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);
  return process;
}

int
od_test_wait_ctl (GSubprocess *process)
{
  od_test_process_wait_or_dump (process, CTL_HANG_SECONDS, "orderdeskctl");
  if (g_subprocess_get_if_signaled (process))
    return -g_subprocess_get_term_sig (process);
  return g_subprocess_get_exit_status (process);
}

static gint64
scalar (sqlite3    *db,
        const char *sql)
{
  sqlite3_stmt *st = NULL;
  gint64 v = -1;

  g_assert_cmpint (sqlite3_prepare_v2 (db, sql, -1, &st, NULL), ==, SQLITE_OK);
  if (sqlite3_step (st) == SQLITE_ROW)
    v = sqlite3_column_int64 (st, 0);
  sqlite3_finalize (st);
  return v;
}

void
od_test_assert_cache_sane (OdCache *cache)
{
  sqlite3 *db = od_cache_get_db (cache);
  sqlite3_stmt *st = NULL;

  g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA integrity_check", -1, &st, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
  g_assert_cmpstr ((const char *) sqlite3_column_text (st, 0), ==, "ok");
  sqlite3_finalize (st);
  /* Every position once (also the primary key's job), and the chain of
   * prev links unbroken. */
  g_assert_cmpint (scalar (db, "SELECT count(*) - count(DISTINCT position) FROM order_events"), ==, 0);
  g_assert_cmpint (scalar (db, "SELECT count(*) FROM order_events e WHERE e.prev <> 0 AND NOT EXISTS"
                               " (SELECT 1 FROM order_events p WHERE p.position = e.prev)"), ==, 0);
  g_assert_cmpint (scalar (db, "SELECT coalesce(max(position), 0) FROM order_events"), ==,
                   scalar (db, "SELECT applied_position FROM sync_state"));
  /* Versions 1..n per order, without a gap or a duplicate. */
  g_assert_cmpint (scalar (db, "SELECT count(*) FROM (SELECT order_id FROM order_events GROUP BY order_id"
                               " HAVING min(version) <> 1 OR max(version) <> count(*)"
                               " OR count(DISTINCT version) <> count(*))"), ==, 0);
  g_assert_cmpint (scalar (db, "SELECT (SELECT sum(n) FROM status_counts) - (SELECT count(*) FROM orders)"), ==, 0);
}

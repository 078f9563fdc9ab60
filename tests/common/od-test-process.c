/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-process.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

struct _OdTestProcess
{
  char        *label;
  char        *dir;
  char        *tokens_path;
  char        *ready_path;
  char        *log_path;
  char        *url;
  char        *host;
  guint16      port;
  GSubprocess *subprocess;
  guint64      fd_limit;
  GStrv        env;          /* NAME=VALUE for the server only */
};

gboolean
od_test_process_wrapped (void)
{
  const char *wrapper = g_getenv ("OD_TEST_SERVER_WRAPPER");

  return wrapper != NULL && *wrapper != '\0';
}

/* valgrind runs the server about twenty times slower; OD_TEST_SLOWDOWN
 * says by how much else (the sanitizer test setup in meson.build). */
guint
od_test_process_slowdown (void)
{
  guint64 factor = 1;

  if (od_test_process_wrapped ())
    return 20;
  if (g_getenv ("OD_TEST_SLOWDOWN") != NULL)
    g_ascii_string_to_unsigned (g_getenv ("OD_TEST_SLOWDOWN"), 10, 1, 100, &factor, NULL);
  return factor;
}

void
od_test_process_rmdir (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);

      if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
        od_test_process_rmdir (path);
      else
        g_unlink (path);
    }
  g_rmdir (dir);
}

OdTestProcess *
od_test_process_new (const char        *prefix,
                     const char        *label,
                     const OdTestToken *tokens,
                     guint              n_tokens)
{
  OdTestProcess *process = g_new0 (OdTestProcess, 1);
  g_autofree char *tmpl = g_strconcat (prefix, "-XXXXXX", NULL);
  g_autoptr(GString) json = g_string_new ("[");
  g_autoptr(GError) error = NULL;

  process->label = g_strdup (label);
  process->dir = g_dir_make_tmp (tmpl, &error);
  g_assert_no_error (error);
  process->tokens_path = g_build_filename (process->dir, "tokens.json", NULL);
  process->ready_path = g_build_filename (process->dir, "ready", NULL);
  process->log_path = g_build_filename (process->dir, "server.log", NULL);

  for (guint i = 0; i < n_tokens; i++)
    {
      g_autofree char *hash = g_compute_checksum_for_string (G_CHECKSUM_SHA256,
                                                             tokens[i].token, -1);

      g_string_append_printf (json, "%s{\"name\": \"%s\", \"role\": \"%s\", \"token_sha256\": \"%s\"}",
                              i ? ",\n " : "", tokens[i].name, tokens[i].role, hash);
    }
  g_string_append (json, "]\n");
  /* 0600: the server refuses a tokens file others can read. */
  if (!g_file_set_contents_full (process->tokens_path, json->str, json->len,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    g_error ("%s", error->message);
  return process;
}

char *
od_test_process_read_log (OdTestProcess *process)
{
  char *log = NULL;

  if (!g_file_get_contents (process->log_path, &log, NULL, NULL))
    return g_strdup ("");
  return log;
}

void
od_test_process_dump_log (OdTestProcess *process)
{
  g_autofree char *log = NULL;
  gsize len = 0;

  if (g_file_get_contents (process->log_path, &log, &len, NULL))
    {
      const char *start = len > 16384 ? log + len - 16384 : log;

      g_printerr ("---- log of server %s (%s), last %" G_GSIZE_FORMAT " bytes ----\n%s\n----\n",
                  process->label, process->log_path, len - (start - log), start);
    }
}

/* In the child before exec: a test that aborts (a failed check) must not
 * leave its servers behind. */
static void
die_with_parent (gpointer data)
{
  OdTestProcess *process = data;

  prctl (PR_SET_PDEATHSIG, SIGKILL);
  if (process->fd_limit > 0)
    {
      struct rlimit limit = { process->fd_limit, process->fd_limit };

      setrlimit (RLIMIT_NOFILE, &limit);
    }
}

void
od_test_process_setenv (OdTestProcess *process,
                        const char    *name,
                        const char    *value)
{
  process->env = g_environ_setenv (process->env, name, value, TRUE);
}

void
od_test_process_set_fd_limit (OdTestProcess *process,
                              guint64        limit)
{
  process->fd_limit = limit;
}

/* The ready file is written atomically (renamed into place), so whatever
 * is read is the whole URL. */
static gboolean
read_ready (OdTestProcess *process)
{
  g_autofree char *text = NULL;
  const char *hostport;
  const char *colon;

  if (!g_file_get_contents (process->ready_path, &text, NULL, NULL))
    return FALSE;
  g_strstrip (text);
  hostport = strstr (text, "://");
  if (hostport == NULL)
    return FALSE;
  hostport += 3;
  colon = strrchr (hostport, ':');
  if (colon == NULL)
    return FALSE;
  process->host = g_strndup (hostport, colon - hostport);
  process->port = (guint16) g_ascii_strtoull (colon + 1, NULL, 10);
  g_assert_cmpuint (process->port, >, 0);
  process->url = g_steal_pointer (&text);
  return TRUE;
}

void
od_test_process_start (OdTestProcess      *process,
                       guint16             port,
                       const char * const *args)
{
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) wrapper = NULL;
  const char *bin = g_getenv ("OD_SERVER_BIN");
  const char *wrapper_text = g_getenv ("OD_TEST_SERVER_WRAPPER");
  guint timeout_s = 30 * od_test_process_slowdown ();
  gint64 deadline;
  int fd;

  g_assert_null (process->subprocess);
  if (bin == NULL || *bin == '\0')
    g_error ("OD_SERVER_BIN is not set (run the tests with meson test)");
  if (od_test_process_wrapped ())
    {
      if (!g_shell_parse_argv (wrapper_text, NULL, &wrapper, &error))
        g_error ("OD_TEST_SERVER_WRAPPER: %s", error->message);
      for (guint i = 0; wrapper[i] != NULL; i++)
        g_ptr_array_add (argv, g_strdup (wrapper[i]));
    }
  g_ptr_array_add (argv, g_strdup (bin));
  g_ptr_array_add (argv, g_strdup ("--listen"));
  g_ptr_array_add (argv, g_strdup_printf ("127.0.0.1:%u", port));
  g_ptr_array_add (argv, g_strdup ("--ready-file"));
  g_ptr_array_add (argv, g_strdup (process->ready_path));
  g_ptr_array_add (argv, g_strdup ("--tokens"));
  g_ptr_array_add (argv, g_strdup (process->tokens_path));
  for (guint i = 0; args != NULL && args[i] != NULL; i++)
    g_ptr_array_add (argv, g_strdup (args[i]));
  g_ptr_array_add (argv, NULL);

  g_clear_pointer (&process->url, g_free);
  g_clear_pointer (&process->host, g_free);
  process->port = 0;

  /* The log is kept in a file (appended across restarts) and shown when a
   * check fails, so that a passing run stays quiet. */
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_INHERIT
                                        | G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_set_cwd (launcher, process->dir);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, process, NULL);
  g_subprocess_launcher_setenv (launcher, "XDG_DATA_HOME", process->dir, TRUE);
  for (guint i = 0; process->env != NULL && process->env[i] != NULL; i++)
    {
      g_auto(GStrv) pair = g_strsplit (process->env[i], "=", 2);

      g_subprocess_launcher_setenv (launcher, pair[0], pair[1], TRUE);
    }
  fd = open (process->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  g_assert_cmpint (fd, >=, 0);
  g_subprocess_launcher_take_stdout_fd (launcher, fd);

  deadline = g_get_monotonic_time () + (gint64) timeout_s * G_USEC_PER_SEC;
  for (;;)
    {
      g_unlink (process->ready_path);
      process->subprocess = g_subprocess_launcher_spawnv (launcher,
                                                          (const char * const *) argv->pdata,
                                                          &error);
      g_assert_no_error (error);
      for (;;)
        {
          if (read_ready (process))
            return;
          /* The identifier is gone once the child has exited and was
           * reaped. */
          if (g_subprocess_get_identifier (process->subprocess) == NULL)
            break;
          if (g_get_monotonic_time () > deadline)
            {
              od_test_process_dump_log (process);
              g_error ("orderdesk-server %s was not ready within %u s", process->label, timeout_s);
            }
          g_usleep (10 * 1000);
        }
      g_subprocess_wait (process->subprocess, NULL, NULL);
      g_clear_object (&process->subprocess);
      /* A restart on the same port right after a kill -9 may find the
       * port still held for a moment; the server's bind error makes it
       * exit, so it is started again. */
      if (port == 0 || g_get_monotonic_time () > deadline)
        {
          od_test_process_dump_log (process);
          g_error ("orderdesk-server %s exited before it was ready", process->label);
        }
      g_usleep (100 * 1000);
    }
}

/* Waits up to seconds for the process to exit (and reaps it); FALSE if
 * it still runs.  GLib's worker thread reaps the child: its identifier
 * goes at exit. */
static gboolean
wait_within (GSubprocess *subprocess,
             guint        seconds)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) seconds * G_USEC_PER_SEC;

  while (g_subprocess_get_identifier (subprocess) != NULL)
    {
      if (g_get_monotonic_time () > deadline)
        return FALSE;
      g_usleep (10 * 1000);
    }
  g_subprocess_wait (subprocess, NULL, NULL);
  return TRUE;
}

/* What a hung process does: gdb's backtraces of every thread, or
 * without gdb the kernel's view of each thread. */
static void
dump_stacks (const char *pid)
{
  g_autofree char *gdb = g_find_program_in_path ("gdb");
  g_autofree char *task_dir = g_strdup_printf ("/proc/%s/task", pid);
  g_autoptr(GDir) tasks = NULL;
  const char *tid;

  if (gdb != NULL)
    {
      const char *argv[] = { gdb, "-p", pid, "-batch", "-nx", "-ex", "thread apply all bt", NULL };
      g_autofree char *out = NULL;

      if (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, &out,
                        NULL, NULL, NULL))
        {
          g_printerr ("%s\n", out);
          return;
        }
    }
  tasks = g_dir_open (task_dir, 0, NULL);
  while (tasks != NULL && (tid = g_dir_read_name (tasks)) != NULL)
    {
      const char *files[] = { "comm", "wchan", "syscall" };

      g_printerr ("thread %s:", tid);
      for (guint i = 0; i < G_N_ELEMENTS (files); i++)
        {
          g_autofree char *path = g_build_filename (task_dir, tid, files[i], NULL);
          g_autofree char *text = NULL;

          if (g_file_get_contents (path, &text, NULL, NULL))
            g_printerr (" %s=%s", files[i], g_strstrip (text));
        }
      g_printerr ("\n");
    }
}

/* The watchdog: a test still running after OD_TEST_WATCHDOG seconds
 * (240 unless set; times the slowdown) prints where its threads and its
 * children's are, then goes on.  meson's timeout kills a hung test
 * without a word of where it hung; a test that passes shows nothing of
 * this (meson prints stderr only for a failure). */
static gpointer
watchdog_thread (gpointer data)
{
  guint seconds = GPOINTER_TO_UINT (data);
  g_autofree char *self = g_strdup_printf ("%d", (int) getpid ());
  g_autoptr(GDir) proc = NULL;
  const char *name;

  g_usleep ((gint64) seconds * G_USEC_PER_SEC);
  g_printerr ("watchdog: the test (pid %s) still runs after %u s; its threads:\n", self, seconds);
  dump_stacks (self);
  proc = g_dir_open ("/proc", 0, NULL);
  while (proc != NULL && (name = g_dir_read_name (proc)) != NULL)
    {
      g_autofree char *stat_path = g_build_filename ("/proc", name, "stat", NULL);
      g_autofree char *stat = NULL;
      const char *end;
      int ppid = -1;

      if (!g_ascii_isdigit (name[0]) || !g_file_get_contents (stat_path, &stat, NULL, NULL))
        continue;
      /* "pid (comm) state ppid ...": comm may hold spaces and ')'. */
      end = strrchr (stat, ')');
      if (end == NULL || sscanf (end + 1, " %*c %d", &ppid) != 1
          || ppid != (int) getpid ())
        continue;
      g_printerr ("watchdog: child %s %.*s; its threads:\n", name, (int) (end + 1 - stat), stat);
      dump_stacks (name);
    }
  return NULL;
}

__attribute__((constructor)) static void
watchdog_start (void)
{
  guint64 seconds = 240;
  const char *value = g_getenv ("OD_TEST_WATCHDOG");

  if (value != NULL)
    g_ascii_string_to_unsigned (value, 10, 0, 86400, &seconds, NULL);
  if (seconds > 0)
    g_thread_unref (g_thread_new ("od-test-watchdog", watchdog_thread,
                                  GUINT_TO_POINTER ((guint) seconds
                                                    * od_test_process_slowdown ())));
}

void
od_test_process_wait_or_dump (GSubprocess *subprocess,
                              guint        seconds,
                              const char  *what)
{
  guint limit = seconds * od_test_process_slowdown ();

  if (!wait_within (subprocess, limit))
    {
      g_autofree char *id = g_strdup (g_subprocess_get_identifier (subprocess));

      /* It exited just now after all. */
      if (id == NULL)
        {
          g_subprocess_wait (subprocess, NULL, NULL);
          return;
        }
      g_printerr ("%s (pid %s) still runs after %u s; its threads:\n", what, id, limit);
      dump_stacks (id);
      g_subprocess_force_exit (subprocess);
      g_subprocess_wait (subprocess, NULL, NULL);
      g_error ("%s (pid %s) hung", what, id);
    }
}

static gboolean
wait_exit (OdTestProcess *process,
           guint          timeout_s)
{
  return wait_within (process->subprocess, timeout_s);
}

void
od_test_process_stop (OdTestProcess *process)
{
  guint timeout_s = 30 * od_test_process_slowdown ();

  g_assert_nonnull (process->subprocess);
  g_subprocess_send_signal (process->subprocess, SIGTERM);
  if (!wait_exit (process, timeout_s))
    {
      g_subprocess_force_exit (process->subprocess);
      wait_exit (process, 10);
      od_test_process_dump_log (process);
      g_error ("orderdesk-server %s did not stop within %u s of SIGTERM", process->label, timeout_s);
    }
  if (!g_subprocess_get_if_exited (process->subprocess)
      || g_subprocess_get_exit_status (process->subprocess) != 0)
    {
      od_test_process_dump_log (process);
      if (g_subprocess_get_if_signaled (process->subprocess))
        g_error ("orderdesk-server %s died of signal %d on SIGTERM", process->label,
                 g_subprocess_get_term_sig (process->subprocess));
      else
        g_error ("orderdesk-server %s exited with status %d on SIGTERM", process->label,
                 g_subprocess_get_exit_status (process->subprocess));
    }
  g_clear_object (&process->subprocess);
}

void
od_test_process_terminate (OdTestProcess *process)
{
  if (process->subprocess == NULL)
    return;
  g_subprocess_send_signal (process->subprocess, SIGCONT);
  g_subprocess_send_signal (process->subprocess, SIGTERM);
  g_subprocess_wait (process->subprocess, NULL, NULL);
  g_clear_object (&process->subprocess);
}

void
od_test_process_kill (OdTestProcess *process)
{
  if (process->subprocess == NULL)
    return;
  g_subprocess_force_exit (process->subprocess);
  g_assert_true (wait_exit (process, 30));
  g_clear_object (&process->subprocess);
}

void
od_test_process_signal (OdTestProcess *process,
                        int            signum)
{
  g_assert_nonnull (process->subprocess);
  g_subprocess_send_signal (process->subprocess, signum);
}

void
od_test_process_free (OdTestProcess *process,
                      gboolean       keep)
{
  if (process == NULL)
    return;
  if (process->subprocess != NULL)
    od_test_process_stop (process);
  if (keep)
    g_printerr ("# kept %s\n", process->dir);
  else
    od_test_process_rmdir (process->dir);
  g_free (process->label);
  g_free (process->dir);
  g_free (process->tokens_path);
  g_free (process->ready_path);
  g_free (process->log_path);
  g_free (process->url);
  g_free (process->host);
  g_strfreev (process->env);
  g_free (process);
}

const char *
od_test_process_dir (OdTestProcess *process)
{
  return process->dir;
}

const char *
od_test_process_tokens_path (OdTestProcess *process)
{
  return process->tokens_path;
}

const char *
od_test_process_log_path (OdTestProcess *process)
{
  return process->log_path;
}

const char *
od_test_process_url (OdTestProcess *process)
{
  return process->url;
}

const char *
od_test_process_host (OdTestProcess *process)
{
  return process->host;
}

guint16
od_test_process_port (OdTestProcess *process)
{
  return process->port;
}

GSubprocess *
od_test_process_subprocess (OdTestProcess *process)
{
  return process->subprocess;
}

GPid
od_test_process_pid (OdTestProcess *process)
{
  const char *id = process->subprocess ? g_subprocess_get_identifier (process->subprocess) : NULL;

  return id ? (GPid) g_ascii_strtoll (id, NULL, 10) : 0;
}

gboolean
od_test_process_alive (OdTestProcess *process)
{
  return process->subprocess != NULL && g_subprocess_get_identifier (process->subprocess) != NULL;
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-rel-server.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

struct _OdRelServer
{
  char        *dir;
  char        *log_path;
  char        *url;
  guint16      port;
  GSubprocess *process;
};

static void
write_tokens (const char *path)
{
  g_autofree char *op = g_compute_checksum_for_string (G_CHECKSUM_SHA256, OD_REL_OPERATOR, -1);
  g_autofree char *view = g_compute_checksum_for_string (G_CHECKSUM_SHA256, OD_REL_VIEWER, -1);
  g_autofree char *json = g_strdup_printf ("[{\"name\": \"olga\", \"role\": \"operator\", \"token_sha256\": \"%s\"},\n"
                                           " {\"name\": \"vera\", \"role\": \"viewer\", \"token_sha256\": \"%s\"}]\n",
                                           op, view);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, json, -1, &error);
  g_assert_no_error (error);
}

/* A test that aborts must not leave servers behind. */
static void
die_with_parent (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

OdRelServer *
od_rel_server_new (const char *first_arg,
                   ...)
{
  OdRelServer *server = g_new0 (OdRelServer, 1);
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GError) error = NULL;
  g_autofree char *tokens = NULL;
  g_autofree char *ready = NULL;
  const char *bin = g_getenv ("OD_SERVER_BIN");
  gint64 deadline;
  va_list ap;
  int fd;

  if (bin == NULL)
    g_error ("OD_SERVER_BIN is not set (run the tests with meson test)");
  server->dir = g_dir_make_tmp ("od-rel-XXXXXX", &error);
  g_assert_no_error (error);
  server->log_path = g_build_filename (server->dir, "server.log", NULL);
  tokens = g_build_filename (server->dir, "tokens.json", NULL);
  ready = g_build_filename (server->dir, "ready", NULL);
  write_tokens (tokens);

  g_ptr_array_add (argv, g_strdup (bin));
  g_ptr_array_add (argv, g_strdup ("--listen"));
  g_ptr_array_add (argv, g_strdup ("127.0.0.1:0"));
  g_ptr_array_add (argv, g_strdup ("--ready-file"));
  g_ptr_array_add (argv, g_strdup (ready));
  g_ptr_array_add (argv, g_strdup ("--tokens"));
  g_ptr_array_add (argv, g_strdup (tokens));
  g_ptr_array_add (argv, g_strdup_printf ("--store=sqlite:%s/events.sqlite", server->dir));
  va_start (ap, first_arg);
  for (const char *arg = first_arg; arg != NULL; arg = va_arg (ap, const char *))
    g_ptr_array_add (argv, g_strdup (arg));
  va_end (ap);
  g_ptr_array_add (argv, NULL);

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDIN_INHERIT
                                        | G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_set_cwd (launcher, server->dir);
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  g_subprocess_launcher_setenv (launcher, "XDG_DATA_HOME", server->dir, TRUE);
  fd = open (server->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  g_assert_cmpint (fd, >=, 0);
  g_subprocess_launcher_take_stdout_fd (launcher, fd);
  server->process = g_subprocess_launcher_spawnv (launcher,
                                                  (const char * const *) argv->pdata, &error);
  g_assert_no_error (error);

  deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  for (;;)
    {
      g_autofree char *text = NULL;

      if (g_file_get_contents (ready, &text, NULL, NULL) && strchr (text, '\n') != NULL)
        {
          const char *colon;

          g_strstrip (text);
          colon = strrchr (text, ':');
          g_assert_nonnull (colon);
          server->port = (guint16) g_ascii_strtoull (colon + 1, NULL, 10);
          g_assert_cmpuint (server->port, >, 0);
          server->url = g_steal_pointer (&text);
          break;
        }
      if (g_subprocess_get_identifier (server->process) == NULL)
        {
          g_autofree char *log = od_rel_server_log (server);

          g_error ("orderdesk-server exited before it was ready:\n%s", log);
        }
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (10 * 1000);
    }
  return server;
}

const char *
od_rel_server_url (OdRelServer *server)
{
  return server->url;
}

guint16
od_rel_server_port (OdRelServer *server)
{
  return server->port;
}

const char *
od_rel_server_dir (OdRelServer *server)
{
  return server->dir;
}

gboolean
od_rel_server_alive (OdRelServer *server)
{
  return server->process != NULL && g_subprocess_get_identifier (server->process) != NULL;
}

char *
od_rel_server_log (OdRelServer *server)
{
  char *log = NULL;

  if (!g_file_get_contents (server->log_path, &log, NULL, NULL))
    return g_strdup ("");
  return log;
}

void
od_rel_server_stop (OdRelServer *server)
{
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;

  g_assert_nonnull (server->process);
  g_subprocess_send_signal (server->process, SIGTERM);
  while (g_subprocess_get_identifier (server->process) != NULL)
    {
      if (g_get_monotonic_time () > deadline)
        {
          g_subprocess_force_exit (server->process);
          g_error ("orderdesk-server did not stop within 30 s of SIGTERM");
        }
      g_usleep (10 * 1000);
    }
  g_subprocess_wait (server->process, NULL, NULL);
  if (!g_subprocess_get_if_exited (server->process)
      || g_subprocess_get_exit_status (server->process) != 0)
    {
      g_autofree char *log = od_rel_server_log (server);

      g_error ("orderdesk-server did not exit cleanly on SIGTERM:\n%s", log);
    }
  g_clear_object (&server->process);
}

void
od_rel_server_free (OdRelServer *server)
{
  g_autoptr(GDir) dir = NULL;
  const char *name;

  if (server == NULL)
    return;
  if (server->process != NULL)
    od_rel_server_stop (server);
  dir = g_dir_open (server->dir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (server->dir, name, NULL);

      unlink (path);
    }
  rmdir (server->dir);
  g_free (server->dir);
  g_free (server->log_path);
  g_free (server->url);
  g_free (server);
}

guint
od_rel_send (SoupSession *session,
             const char  *method,
             const char  *url,
             const char  *token,
             const char  *body,
             GBytes     **response,
             GError     **error)
{
  g_autoptr(SoupMessage) msg = soup_message_new (method, url);
  g_autoptr(GBytes) bytes = NULL;

  g_assert_nonnull (msg);
  if (token != NULL)
    {
      g_autofree char *value = g_strconcat ("Bearer ", token, NULL);

      soup_message_headers_replace (soup_message_get_request_headers (msg),
                                    "Authorization", value);
    }
  if (body != NULL)
    {
      g_autofree char *key = g_strdup_printf ("rel-%08x%08x", g_random_int (), g_random_int ());
      g_autoptr(GBytes) request = g_bytes_new (body, strlen (body));

      soup_message_headers_replace (soup_message_get_request_headers (msg),
                                    "Idempotency-Key", key);
      soup_message_set_request_body_from_bytes (msg, "application/json", request);
    }
  bytes = soup_session_send_and_read (session, msg, NULL, error);
  if (bytes == NULL)
    return 0;
  if (response != NULL)
    *response = g_steal_pointer (&bytes);
  return soup_message_get_status (msg);
}

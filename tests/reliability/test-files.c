/* SPDX-License-Identifier: GPL-3.0-or-later */

/* The server's files hold customer data and token hashes: the SQLite
 * store (and its -wal and -shm) is created 0600 whatever the umask, an
 * existing one others may read is tightened, and a tokens file that
 * group or others may access stops the server with the fix printed. */

#include "od-test-process.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

static const OdTestToken tokens[] = {
  { "ola", "operator", "files-operator-token-0c1f" },
};

static void
assert_private (const char *path,
                gboolean    must_exist)
{
  GStatBuf st;

  if (g_stat (path, &st) != 0)
    {
      g_assert_false (must_exist);
      return;
    }
  g_test_message ("%s: %04o", path, (guint) (st.st_mode & 07777));
  g_assert_cmpuint (st.st_mode & 077, ==, 0);
}

/* One answered request: the server is serving (and has its signal
 * handlers) before it is stopped. */
static void
ping (OdTestProcess *process)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GError) error = NULL;
  static const char request[] = "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  char buf[512] = { 0 };
  gsize n = 0;

  connection = g_socket_client_connect_to_host (client, od_test_process_host (process),
                                                od_test_process_port (process), NULL, &error);
  g_assert_no_error (error);
  g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (connection)), request,
                             strlen (request), NULL, NULL, &error);
  g_assert_no_error (error);
  g_input_stream_read_all (g_io_stream_get_input_stream (G_IO_STREAM (connection)), buf,
                           sizeof buf - 1, &n, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_str_has_prefix (buf, "HTTP/1.1 200"));
}

static void
test_store_mode (void)
{
  OdTestProcess *process = od_test_process_new ("od-files", "under test", tokens,
                                                 G_N_ELEMENTS (tokens));
  g_autofree char *store = g_build_filename (od_test_process_dir (process), "events.sqlite", NULL);
  g_autofree char *old = g_build_filename (od_test_process_dir (process), "old.sqlite", NULL);
  g_autofree char *arg = g_strconcat ("--store=sqlite:", store, NULL);
  g_autofree char *old_arg = g_strconcat ("--store=sqlite:", old, NULL);
  const char *args[] = { arg, NULL };
  const char *old_args[] = { old_arg, NULL };
  const char *suffixes[] = { "", "-wal", "-shm" };
  mode_t saved = umask (022);

  od_test_process_start (process, 0, args);
  ping (process);
  for (guint i = 0; i < G_N_ELEMENTS (suffixes); i++)
    {
      g_autofree char *path = g_strconcat (store, suffixes[i], NULL);

      assert_private (path, i == 0);
    }
  od_test_process_stop (process);

  /* A store an older version made 0644 is tightened at start. */
  g_assert_true (g_file_set_contents (old, "", 0, NULL));
  g_assert_cmpint (g_chmod (old, 0644), ==, 0);
  od_test_process_start (process, 0, old_args);
  ping (process);
  assert_private (old, TRUE);
  od_test_process_stop (process);
  umask (saved);
  od_test_process_free (process, FALSE);
}

static void
test_tokens_mode (void)
{
  OdTestProcess *process = od_test_process_new ("od-files", "under test", tokens,
                                                 G_N_ELEMENTS (tokens));
  const char *path = od_test_process_tokens_path (process);
  g_autofree char *store = g_strdup_printf ("sqlite:%s/events.sqlite", od_test_process_dir (process));
  g_autofree char *expected = g_strconcat ("run: chmod 600 ", path, NULL);
  g_autofree char *err = NULL;
  g_autoptr(GError) error = NULL;
  const char *argv[] = { g_getenv ("OD_SERVER_BIN"), "--listen", "127.0.0.1:0", "--store", store,
                         "--tokens", path, NULL };
  /* Group read alone (0640, root:orderdesk under systemd) is allowed. */
  const guint modes[] = { 0644, 0604, 0660, 0620, 0650 };
  int status;

  for (guint i = 0; i < G_N_ELEMENTS (modes); i++)
    {
      g_clear_pointer (&err, g_free);
      g_assert_cmpint (g_chmod (path, modes[i]), ==, 0);
      g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL,
                                   NULL, NULL, &err, &status, &error));
      g_assert_no_error (error);
      g_test_message ("mode %04o: %s", modes[i], err);
      g_assert_false (g_spawn_check_wait_status (status, NULL));
      g_assert_nonnull (strstr (err, expected));
    }
  g_assert_cmpint (g_chmod (path, 0640), ==, 0);
  od_test_process_start (process, 0, (const char *[]) { "--store", store, NULL });
  ping (process);
  od_test_process_stop (process);
  g_assert_cmpint (g_chmod (path, 0600), ==, 0);
  od_test_process_start (process, 0, (const char *[]) { "--store", store, NULL });
  ping (process);
  od_test_process_free (process, FALSE);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/files/store-mode", test_store_mode);
  g_test_add_func ("/files/tokens-mode", test_tokens_mode);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <glib-unix.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "od-demo.h"
#include "od-server.h"
#include "od-server-config.h"
#include "od-store-sqlite.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

static gboolean stop_requested;

static gboolean
on_signal (gpointer data)
{
  GMainLoop **loop = data;

  stop_requested = TRUE;
  if (*loop != NULL)
    g_main_loop_quit (*loop);
  return G_SOURCE_CONTINUE;
}

/* systemd readiness (Type=notify); nothing without libsystemd or
 * outside systemd (NOTIFY_SOCKET unset). */
static void
notify (const char *state)
{
#ifdef HAVE_LIBSYSTEMD
  sd_notify (0, state);
#endif
}

static gboolean
on_wait_over (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* An unreachable database at boot (PostgreSQL still starting, network not
 * up yet) is retried with backoff for --store-wait seconds rather than
 * failing the service at once. */
static OdStore *
open_store (const char  *uri,
            int          wait_s,
            GError     **error)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) wait_s * G_USEC_PER_SEC;
  guint backoff_ms = 250;

  for (;;)
    {
      g_autoptr(GError) local_error = NULL;
      OdStore *store = od_store_open (uri, &local_error);
      gint64 left_ms = (deadline - g_get_monotonic_time ()) / 1000;
      gboolean over = FALSE;
      guint source;

      if (store != NULL)
        return store;
      if (!g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED)
          || left_ms <= 0 || stop_requested)
        {
          g_propagate_error (error, g_steal_pointer (&local_error));
          return NULL;
        }
      backoff_ms = MIN (backoff_ms, (guint) left_ms);
      g_message ("store not reachable: %s; retrying in %.1f s (giving up in %.0f s)",
                 g_strchomp (local_error->message), backoff_ms / 1000.0, left_ms / 1000.0);
#ifdef HAVE_LIBSYSTEMD
      sd_notifyf (0, "STATUS=Waiting for the store: %s", local_error->message);
#endif
      source = g_timeout_add (backoff_ms, on_wait_over, &over);
      while (!over && !stop_requested)
        g_main_context_iteration (NULL, TRUE);
      if (!over)
        g_source_remove (source);
      backoff_ms = MIN (backoff_ms * 2, 5000);
    }
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(OdServerConfig) config = od_server_config_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(OdStore) store = NULL;
  g_autoptr(OdServer) server = NULL;
  g_autoptr(OdAuth) auth = NULL;
  g_autoptr(GMainLoop) loop = NULL;
  g_autofree char *demo_dir = NULL;
  OdServerOptions options = { 0 };
  OdDemo *demo = NULL;
  gboolean loopback;
  gint64 head;

  /* GLib's log writer calls tzset () for every line's time, which with TZ
   * unset stat()s /etc/localtime each time (one syscall a request).
   * Naming the same file makes tzset () see no change and return. */
  if (g_getenv ("TZ") == NULL && g_file_test ("/etc/localtime", G_FILE_TEST_EXISTS))
    g_setenv ("TZ", ":/etc/localtime", FALSE);
  /* glibc gives the top of the heap back after every free beyond 128 KiB
   * (brk() and a TLB flush, 7% of the main thread on commands) and maps
   * then unmaps each buffer above its threshold: keep both above what a
   * request or a replay batch uses. */
  mallopt (M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  mallopt (M_MMAP_THRESHOLD, 8 * 1024 * 1024);
  setlocale (LC_ALL, "");
  if (!od_server_config_load (config, &argc, &argv, &error))
    {
      g_printerr ("orderdesk-server: %s\n", error->message);
      return 2;
    }
  if (config->show_version)
    {
      printf ("orderdesk-server %s\n", OD_VERSION);
      return 0;
    }

  loopback = od_server_config_listen_is_loopback (config->listen);
  if (config->demo && !loopback && !config->demo_public)
    {
      g_printerr ("orderdesk-server: refusing --demo on %s: its tokens are public, so anyone who "
                  "can reach the address could change orders.  Listen on 127.0.0.1, or add "
                  "--demo-public if that is really what you want.\n", config->listen);
      return 2;
    }

  options.listen = config->listen;
  options.tls_cert = config->tls_cert;
  options.tls_key = config->tls_key;
  options.rate_limit = config->rate_limit;
  options.rate_burst = config->rate_burst;
  options.request_timeout_s = config->request_timeout;
  options.stall_timeout_s = config->stall_timeout;
  options.metrics_token = config->metrics_token;

  if (config->demo)
    {
      demo_dir = g_build_filename (g_get_user_data_dir (), "orderdesk-server", NULL);
      if (config->store == NULL)
        config->store = g_strconcat ("sqlite:", demo_dir, G_DIR_SEPARATOR_S, "demo.sqlite", NULL);
      if (config->tokens == NULL)
        {
          g_autofree char *json = od_demo_tokens_json ();

          config->tokens = g_build_filename (demo_dir, "demo-tokens.json", NULL);
          if (g_mkdir_with_parents (demo_dir, 0700) != 0
              || !g_file_set_contents_full (config->tokens, json, -1,
                                            G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
            {
              g_printerr ("orderdesk-server: cannot write %s: %s\n", config->tokens,
                          error ? error->message : g_strerror (errno));
              return 1;
            }
        }
    }
  if (config->print_config)
    {
      g_autofree char *text = od_server_config_dump (config);

      fputs (text, stdout);
      return 0;
    }
  if (config->store == NULL || config->tokens == NULL)
    {
      g_printerr ("orderdesk-server: --store and --tokens are required (or --demo)\n");
      return 2;
    }

  if (!loopback)
    {
      /* Loud on purpose: these are the two ways to expose orders by
       * accident. */
      if (config->demo)
        g_warning ("DEMO SERVER ON A PUBLIC ADDRESS (%s): its tokens are printed below and "
                   "published in the source; anyone who can reach it can read and change "
                   "orders.", config->listen);
      if (config->tls_cert == NULL)
        g_warning ("PLAIN HTTP ON A NON-LOOPBACK ADDRESS (%s): bearer tokens and orders cross "
                   "the network unencrypted.  Use --tls-cert and --tls-key, or a TLS proxy in "
                   "front listening on loopback.", config->listen);
    }

  if ((auth = od_auth_load (config->tokens, &error)) == NULL)
    {
      g_printerr ("orderdesk-server: tokens file %s: %s\n", config->tokens, error->message);
      return 1;
    }

  loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGTERM, on_signal, &loop);
  g_unix_signal_add (SIGINT, on_signal, &loop);

  if ((store = open_store (config->store, config->store_wait, &error)) == NULL)
    {
      if (stop_requested)
        return 0;
      g_printerr ("orderdesk-server: store: %s\n", error->message);
      return 1;
    }
  if (OD_IS_STORE_SQLITE (store))
    od_store_sqlite_set_frame_blocks (OD_STORE_SQLITE (store), config->frame_blocks);
  if ((server = od_server_new (store, auth, &options, &error)) == NULL)
    {
      g_printerr ("orderdesk-server: %s\n", error->message);
      return 1;
    }
  head = od_server_get_head (server);
  g_message ("orderdesk-server %s listening on %s (store head %" G_GINT64_FORMAT ", %u tokens)",
             OD_VERSION, od_server_get_url (server), head, od_auth_get_n_tokens (auth));

  if (config->demo || config->demo_traffic > 0)
    {
      demo = od_demo_new (server);
      if (config->demo && head == 0 && config->demo_orders > 0)
        od_demo_seed (demo, config->demo_orders);
      od_demo_start (demo, config->demo_traffic);
    }
  if (config->demo)
    {
      printf ("\nOrderDesk demo server\n"
              "  URL:            %s\n"
              "  operator token: %s\n"
              "  viewer token:   %s\n"
              "Connect with:  orderdesk  (choose \"Local demo server\"), or\n"
              "  ORDERDESK_TOKEN=%s orderdeskctl --server %s sync\n\n",
              od_server_get_url (server), OD_DEMO_OPERATOR_TOKEN, OD_DEMO_VIEWER_TOKEN,
              OD_DEMO_VIEWER_TOKEN, od_server_get_url (server));
      fflush (stdout);
    }

  if (config->ready_file != NULL)
    {
      g_autofree char *text = g_strconcat (od_server_get_url (server), "\n", NULL);

      if (!g_file_set_contents (config->ready_file, text, -1, &error))
        {
          g_printerr ("orderdesk-server: --ready-file: %s\n", error->message);
          return 1;
        }
    }

  /* Listening and the store open: only now may systemd start what
   * depends on us. */
#ifdef HAVE_LIBSYSTEMD
  sd_notifyf (0, "READY=1\nSTATUS=Listening on %s, head %" G_GINT64_FORMAT,
              od_server_get_url (server), head);
#endif

  if (!stop_requested)
    g_main_loop_run (loop);

  notify ("STOPPING=1\nSTATUS=Stopping");
  g_message ("stopping");
  od_server_shutdown (server);
  od_demo_free (demo);
  g_message ("stopped at head %" G_GINT64_FORMAT, od_server_get_head (server));
  return 0;
}

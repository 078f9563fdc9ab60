/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include "od-demo.h"
#include "od-server.h"

static char *opt_listen = NULL;
static char *opt_store = NULL;
static char *opt_tokens = NULL;
static char *opt_ready_file = NULL;
static char *opt_rate_limit = NULL;
static char *opt_tls_cert = NULL;
static char *opt_tls_key = NULL;
static gboolean opt_demo = FALSE;
static double opt_demo_traffic = 0;
static int opt_demo_orders = 1000;
static int opt_request_timeout = 30;
static int opt_stall_timeout = 30;

static const GOptionEntry entries[] = {
  { "listen", 0, 0, G_OPTION_ARG_STRING, &opt_listen,
    "Address to listen on (default 127.0.0.1:8080; port 0 picks one)", "HOST:PORT" },
  { "store", 0, 0, G_OPTION_ARG_STRING, &opt_store,
    "Event store: sqlite:PATH or postgresql://…", "URI" },
  { "tokens", 0, 0, G_OPTION_ARG_FILENAME, &opt_tokens,
    "JSON file of {name, role, token_sha256}", "FILE" },
  { "demo", 0, 0, G_OPTION_ARG_NONE, &opt_demo,
    "Demo mode: demo tokens and about 1,000 sample orders", NULL },
  { "demo-orders", 0, 0, G_OPTION_ARG_INT, &opt_demo_orders,
    "Orders to seed an empty demo store with (default 1000)", "N" },
  { "demo-traffic", 0, 0, G_OPTION_ARG_DOUBLE, &opt_demo_traffic,
    "Issue RATE demo commands a second", "RATE" },
  { "rate-limit", 0, 0, G_OPTION_ARG_STRING, &opt_rate_limit,
    "Commands a second per token, with bursts (default 1000:2000; 0 turns it off)",
    "RATE[:BURST]" },
  { "request-timeout", 0, 0, G_OPTION_ARG_INT, &opt_request_timeout,
    "Seconds a request may take to arrive (default 30)", "S" },
  { "stall-timeout", 0, 0, G_OPTION_ARG_INT, &opt_stall_timeout,
    "Seconds a stream subscriber may read nothing before it is dropped (default 30)", "S" },
  { "ready-file", 0, 0, G_OPTION_ARG_FILENAME, &opt_ready_file,
    "Write the base URL to FILE once listening", "FILE" },
  { "tls-cert", 0, 0, G_OPTION_ARG_FILENAME, &opt_tls_cert, "PEM certificate for HTTPS", "FILE" },
  { "tls-key", 0, 0, G_OPTION_ARG_FILENAME, &opt_tls_key, "PEM private key for HTTPS", "FILE" },
  { NULL }
};

static gboolean
on_signal (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

static gboolean
parse_rate (const char *text,
            double     *rate,
            double     *burst)
{
  g_auto(GStrv) parts = NULL;
  char *end = NULL;

  *rate = 1000;
  *burst = 2000;
  if (text == NULL)
    return TRUE;
  parts = g_strsplit (text, ":", 2);
  *rate = g_ascii_strtod (parts[0], &end);
  if (end == parts[0] || *end != '\0' || *rate < 0)
    return FALSE;
  *burst = MAX (*rate * 2, 1);
  if (parts[1] != NULL)
    {
      *burst = g_ascii_strtod (parts[1], &end);
      if (end == parts[1] || *end != '\0' || *burst < 1)
        return FALSE;
    }
  return TRUE;
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(GOptionContext) context = g_option_context_new ("— the OrderDesk write service");
  g_autoptr(GError) error = NULL;
  g_autoptr(OdStore) store = NULL;
  g_autoptr(OdServer) server = NULL;
  g_autoptr(OdAuth) auth = NULL;
  g_autoptr(GMainLoop) loop = NULL;
  g_autofree char *demo_dir = NULL;
  OdServerOptions options = { 0 };
  OdDemo *demo = NULL;
  gint64 head;

  setlocale (LC_ALL, "");
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_set_summary (context,
                                "Accepts order commands (POST /v1/commands) and serves the event "
                                "log (GET /v1/events, /v1/events/stream) as described in "
                                "docs/protocol.md.");
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("orderdesk-server: %s\n", error->message);
      return 2;
    }

  if (!parse_rate (opt_rate_limit, &options.rate_limit, &options.rate_burst))
    {
      g_printerr ("orderdesk-server: --rate-limit wants RATE[:BURST]\n");
      return 2;
    }
  options.listen = opt_listen ? opt_listen : "127.0.0.1:8080";
  options.tls_cert = opt_tls_cert;
  options.tls_key = opt_tls_key;
  options.request_timeout_s = MAX (opt_request_timeout, 1);
  options.stall_timeout_s = MAX (opt_stall_timeout, 1);

  if (opt_demo)
    {
      demo_dir = g_build_filename (g_get_user_data_dir (), "orderdesk-server", NULL);
      if (opt_store == NULL)
        opt_store = g_strconcat ("sqlite:", demo_dir, G_DIR_SEPARATOR_S, "demo.sqlite", NULL);
      if (opt_tokens == NULL)
        {
          g_autofree char *json = od_demo_tokens_json ();

          opt_tokens = g_build_filename (demo_dir, "demo-tokens.json", NULL);
          if (g_mkdir_with_parents (demo_dir, 0700) != 0
              || !g_file_set_contents_full (opt_tokens, json, -1,
                                            G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
            {
              g_printerr ("orderdesk-server: cannot write %s: %s\n", opt_tokens,
                          error ? error->message : g_strerror (errno));
              return 1;
            }
        }
    }
  if (opt_store == NULL || opt_tokens == NULL)
    {
      g_printerr ("orderdesk-server: --store and --tokens are required (or --demo)\n");
      return 2;
    }

  if ((auth = od_auth_load (opt_tokens, &error)) == NULL)
    {
      g_printerr ("orderdesk-server: tokens file %s: %s\n", opt_tokens, error->message);
      return 1;
    }
  if ((store = od_store_open (opt_store, &error)) == NULL)
    {
      g_printerr ("orderdesk-server: store: %s\n", error->message);
      return 1;
    }
  if ((server = od_server_new (store, auth, &options, &error)) == NULL)
    {
      g_printerr ("orderdesk-server: %s\n", error->message);
      return 1;
    }
  head = od_server_get_head (server);
  g_message ("listening on %s (store head %" G_GINT64_FORMAT ", %u tokens)",
             od_server_get_url (server), head, od_auth_get_n_tokens (auth));

  if (opt_demo || opt_demo_traffic > 0)
    {
      demo = od_demo_new (server);
      if (opt_demo && head == 0 && opt_demo_orders > 0)
        od_demo_seed (demo, opt_demo_orders);
      od_demo_start (demo, opt_demo_traffic);
    }
  if (opt_demo)
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

  if (opt_ready_file != NULL)
    {
      g_autofree char *text = g_strconcat (od_server_get_url (server), "\n", NULL);

      if (!g_file_set_contents (opt_ready_file, text, -1, &error))
        {
          g_printerr ("orderdesk-server: --ready-file: %s\n", error->message);
          return 1;
        }
    }

  loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGTERM, on_signal, loop);
  g_unix_signal_add (SIGINT, on_signal, loop);
  g_main_loop_run (loop);

  g_message ("stopping");
  od_server_shutdown (server);
  od_demo_free (demo);
  g_message ("stopped at head %" G_GINT64_FORMAT, od_server_get_head (server));
  return 0;
}

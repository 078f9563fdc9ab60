/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The server's settings, each from (first found) its flag, its ORDERDESK_*
 * environment variable, the [server] group of the --config file, or its
 * default. */
typedef struct
{
  char     *listen;
  char     *store;
  char     *tokens;
  char     *ready_file;
  char     *tls_cert;
  char     *tls_key;
  char     *metrics_token;
  gboolean  demo;
  gboolean  demo_public;
  int       demo_orders;
  double    demo_traffic;
  double    rate_limit;        /* commands a second per token, 0: off */
  double    rate_burst;
  int       request_timeout;
  int       stall_timeout;
  int       store_wait;
  gboolean  frame_blocks;      /* a SQLite store keeps frame blocks */

  /* Only from the command line. */
  char     *config_file;
  gboolean  show_version;
  gboolean  print_config;

  GHashTable *sources;         /* option name → "--flag", "ORDERDESK_X", "FILE:LINE" */
} OdServerConfig;

OdServerConfig *od_server_config_new   (void);
void            od_server_config_free  (OdServerConfig  *config);
/* Parses argv (and removes what it understood), the environment and the
 * config file.  An error message names the flag, the variable, or the
 * file and line at fault. */
gboolean        od_server_config_load  (OdServerConfig  *config,
                                        int             *argc,
                                        char          ***argv,
                                        GError         **error);
/* Every setting as "name = value  # source", secrets masked. */
char           *od_server_config_dump  (OdServerConfig  *config);
/* Whether a --listen HOST:PORT is on a loopback address. */
gboolean        od_server_config_listen_is_loopback (const char *listen);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdServerConfig, od_server_config_free)

G_END_DECLS

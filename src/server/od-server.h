/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <libsoup/soup.h>

#include "od-auth.h"
#include "od-store.h"

G_BEGIN_DECLS

typedef struct
{
  const char *listen;            /* HOST:PORT */
  const char *tls_cert;
  const char *tls_key;
  double      rate_limit;        /* commands a second per token, 0: off */
  double      rate_burst;
  guint       request_timeout_s;
  guint       stall_timeout_s;
  const char *metrics_token;     /* GET /metrics wants it as bearer token; NULL: open */
} OdServerOptions;

typedef void (*OdJobDoneFunc) (OdJob    *job,
                               gpointer  user_data);

#define OD_TYPE_SERVER (od_server_get_type ())
G_DECLARE_FINAL_TYPE (OdServer, od_server, OD, SERVER, GObject)

OdServer   *od_server_new          (OdStore               *store,
                                    OdAuth                *auth,
                                    const OdServerOptions *options,
                                    GError               **error);
const char *od_server_get_url      (OdServer              *self);
gint64      od_server_get_head     (OdServer              *self);
void        od_server_submit       (OdServer              *self,
                                    OdJob                 *job,
                                    OdJobDoneFunc          done,
                                    gpointer               user_data);
void        od_server_shutdown     (OdServer              *self);
guint       od_server_get_n_subscribers (OdServer         *self);

G_END_DECLS

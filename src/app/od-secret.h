/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Access tokens live in the desktop's secret store (libsecret), one per
 * server URL; they are never written anywhere else. */
void      od_secret_store_async   (const char          *server_url,
                                   const char          *token,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data);
gboolean  od_secret_store_finish  (GAsyncResult        *result,
                                   GError             **error);
void      od_secret_lookup_async  (const char          *server_url,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data);
char     *od_secret_lookup_finish (GAsyncResult        *result,
                                   GError             **error);

G_END_DECLS

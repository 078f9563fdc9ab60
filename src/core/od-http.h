/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <libsoup/soup.h>

G_BEGIN_DECLS

/* Signs a request to the server with the token ("Authorization: Bearer
 * TOKEN"); without a token the request goes unsigned.  The one place the
 * client (sync engine, outbox, verify) puts its token on the wire. */
void od_http_authorize (SoupMessage *msg,
                        const char  *token);

G_END_DECLS

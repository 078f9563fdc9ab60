/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <libsoup/soup.h>

G_BEGIN_DECLS

/* The server's whole event log through GET /v1/events, page by page, as
 * OdEvent; fails the test on any error or a broken prev chain. */
GPtrArray *od_test_read_log (SoupSession *session,
                             const char  *url,
                             const char  *token);

G_END_DECLS

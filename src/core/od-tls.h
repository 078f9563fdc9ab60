/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>
#include <libsoup/soup.h>

G_BEGIN_DECLS

/* Why a server's certificate was refused, as English sentences for logs,
 * orderdeskctl and OdLag:last-error ("The server’s certificate was
 * refused: it has expired.").  The GUI translates from the flags itself
 * (OdLag:tls-errors).  `host` may be NULL. */
char *od_tls_explain            (GTlsCertificateFlags flags,
                                 const char          *host);

/* Records on `msg` the flags of a certificate the TLS layer refused, and
 * keeps refusing it: nothing is ever accepted here that the trust
 * database did not accept.  *flags is set to 0 first. */
void  od_tls_watch_message      (SoupMessage         *msg,
                                 GTlsCertificateFlags *flags);

/* A request failed with `error`: the certificate explanation when the
 * failure was a refused certificate, else the error's message. */
char *od_tls_describe_failure   (SoupMessage         *msg,
                                 GTlsCertificateFlags flags,
                                 const GError        *error);

G_END_DECLS

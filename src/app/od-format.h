/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "od-order.h"

G_BEGIN_DECLS

char       *od_format_money        (gint64         cents,
                                    const char    *currency);
gboolean    od_parse_money         (const char    *text,
                                    gint64        *cents);
char       *od_format_relative     (const char    *rfc3339,
                                    gint64         now_usec);
char       *od_format_timestamp    (const char    *rfc3339);
const char *od_format_status       (OdOrderStatus  status);
const char *od_status_css_class    (OdOrderStatus  status);
const char *od_format_event_type   (const char    *type);
char       *od_format_short_id     (const char    *order_id);
/* Why the server refused a command of TYPE (its wire name) on ORDER_ID:
 * the command's rule in the console's language when the server's detail
 * is exactly that rule's (od_order_refusal_rule ()), else the server's
 * own detail, else its problem code. */
char       *od_format_refusal      (const char    *type,
                                    const char    *order_id,
                                    const char    *code,
                                    const char    *detail);
char       *od_format_tls_errors   (GTlsCertificateFlags flags,
                                    const char    *host);
/* Whether dates are written for the C locale (ISO 8601 then). */
gboolean    od_format_c_time_locale (void);

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-event.h"

G_BEGIN_DECLS

/* Parses one event envelope of the common, flat shape without
 * json-glib.  Returns NULL for anything it does not handle (escapes,
 * floats, nested data, unknown members, invalid UTF-8) as well as for
 * invalid events: the caller then parses with od_event_parse(), which is
 * the judge.  data is kept byte for byte as received. */
OdEvent *od_event_parse_fast      (const char *text,
                                   gsize       len);
OdEvent *od_event_parse_fast_lean (const char *text,
                                   gsize       len);

G_END_DECLS

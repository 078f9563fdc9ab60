/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A reader of the flat JSON that the contract's hot paths carry (an
 * event's envelope, a command's body): plain strings, integers and
 * objects of them.  Each call returns FALSE for anything outside that
 * (escapes, control characters, floats, numbers beyond 18 digits or with
 * a leading zero), so that the caller can hand the text to the strict
 * path (od_json_parse_object), which judges it.  The caller validates
 * the text as UTF-8 first. */
typedef struct
{
  const char *p;
  const char *end;
} OdJsonScan;

void     od_json_scan_space   (OdJsonScan  *s);
gboolean od_json_scan_expect  (OdJsonScan  *s,
                               char         c);
gboolean od_json_scan_string  (OdJsonScan  *s,
                               const char **start,
                               gsize       *len);
gboolean od_json_scan_integer (OdJsonScan  *s,
                               gint64      *out);
gboolean od_json_scan_is      (const char  *text,
                               gsize        len,
                               const char  *name);

G_END_DECLS

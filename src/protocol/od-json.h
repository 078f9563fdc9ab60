/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define OD_JSON_MAX_DEPTH 32

void         od_json_append_string   (GString     *out,
                                      const char  *str);
void         od_json_append_member   (GString     *out,
                                      const char  *name,
                                      const char  *value);
gboolean     od_json_check           (const char  *text,
                                      gsize        len,
                                      GError     **error);
JsonNode    *od_json_parse_object    (const char  *text,
                                      gssize       len,
                                      GError     **error);
gboolean     od_json_is_string       (JsonNode    *node);
gboolean     od_json_is_integer      (JsonNode    *node);
gboolean     od_json_is_object       (JsonNode    *node);
char        *od_timestamp_now        (void);
char        *od_timestamp_format     (gint64       unix_usec);
gboolean     od_timestamp_parse      (const char  *text,
                                      gint64      *unix_usec);

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The largest range GET /v1/events/digest answers. */
#define OD_DIGEST_MAX_RANGE 1000000

/* Feeds one event's canonical line to a SHA-256 of
 * GET /v1/events/digest: position TAB order_id TAB version TAB type TAB
 * recorded_at TAB actor TAB data LF.  Server and client share it so that
 * both hash the same bytes. */
void od_digest_add_event (GChecksum  *sum,
                          gint64      position,
                          const char *order_id,
                          gint64      version,
                          const char *type,
                          const char *recorded_at,
                          const char *actor,
                          const char *data,
                          gssize      data_len);

/* Raw JSON spans, for keeping `data` byte for byte as received: json-glib
 * parses but cannot say where a value was in its text.  Both expect text
 * that a strict parser has accepted (they stay within len whatever it
 * is) and return FALSE when the shape is not the expected one. */

/* The value of the top-level member name (a plain key, no escapes) of the
 * JSON object in text. */
gboolean od_json_raw_member   (const char  *text,
                               gsize        len,
                               const char  *name,
                               const char **value,
                               gsize       *value_len);

/* The elements of the array that is the top-level member name of the
 * object in text: pairs of (offset, length) into text, 2 per element. */
GArray  *od_json_raw_elements (const char  *text,
                               gsize        len,
                               const char  *name);

G_END_DECLS

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

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A Server-Sent Events frame parser (WHATWG rules): feed it bytes in any
 * chunking; lines may end in LF, CRLF or CR (also split across chunks).
 * A frame is dispatched at an empty line; comments (":") are ignored;
 * "data" lines are joined with "\n"; an "id" with a NUL is ignored. */

typedef struct _OdSseParser OdSseParser;

/* The most data one frame may carry.  An event is one frame, and the
 * largest event the protocol's field rules allow is a few KiB (commands
 * are at most 64 KiB): a bigger frame is a hostile or broken server. */
#define OD_SSE_MAX_FRAME (1024 * 1024)

/* id is NULL when the frame had no id field; event is "message" when it
 * had none; retry_ms is reported through the retry callback. */
typedef void (*OdSseFrameFunc) (const char *event,
                                const char *id,
                                const char *data,
                                gsize       data_len,
                                gpointer    user_data);
typedef void (*OdSseRetryFunc) (guint       retry_ms,
                                gpointer    user_data);

OdSseParser *od_sse_parser_new   (OdSseFrameFunc frame_func,
                                  OdSseRetryFunc retry_func,
                                  gpointer       user_data);
void         od_sse_parser_free  (OdSseParser   *parser);
/* Returns FALSE once a line or a frame's data went over
 * OD_SSE_MAX_FRAME: the parser then takes nothing more until reset (the
 * stream cannot be trusted; drop it). */
gboolean     od_sse_parser_feed  (OdSseParser   *parser,
                                  const char    *bytes,
                                  gsize          len);
/* Forgets a partial frame (after a reconnect). */
void         od_sse_parser_reset (OdSseParser   *parser);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdSseParser, od_sse_parser_free)

G_END_DECLS

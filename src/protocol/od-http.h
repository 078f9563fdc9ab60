/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  OD_CONTENT_LENGTH_NONE,       /* no Content-Length header */
  OD_CONTENT_LENGTH_OK,
  OD_CONTENT_LENGTH_MALFORMED,  /* not one run of decimal digits, or given twice */
  OD_CONTENT_LENGTH_TOO_LARGE,  /* digits, but over max (however many) */
} OdContentLength;

/* Reads the values of every Content-Length header of a request (n of
 * them) strictly: exactly one, made of decimal digits only (no sign,
 * space, list or hex), compared with max digit by digit so that no value
 * can overflow.  On OK, *length is set. */
OdContentLength od_http_content_length (const char * const *values,
                                        guint               n,
                                        guint64             max,
                                        guint64            *length);

G_END_DECLS

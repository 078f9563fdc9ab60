/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-http.h"

#include <string.h>

OdContentLength
od_http_content_length (const char * const *values,
                        guint               n,
                        guint64             max,
                        guint64            *length)
{
  const char *text;
  guint64 value = 0;

  if (n == 0)
    return OD_CONTENT_LENGTH_NONE;
  /* Two of them, even equal, would let two parsers disagree. */
  if (n > 1)
    return OD_CONTENT_LENGTH_MALFORMED;
  text = values[0];
  if (text == NULL || *text == '\0' || strspn (text, "0123456789") != strlen (text))
    return OD_CONTENT_LENGTH_MALFORMED;
  for (const char *p = text; *p != '\0'; p++)
    {
      guint digit = (guint) (*p - '0');

      /* value * 10 + digit > max, without overflowing. */
      if (value > (max - digit) / 10)
        return OD_CONTENT_LENGTH_TOO_LARGE;
      value = value * 10 + digit;
    }
  *length = value;
  return OD_CONTENT_LENGTH_OK;
}

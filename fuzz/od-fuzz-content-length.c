/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Target: the Content-Length headers of a request, one value a line, as
 * orderdesk-server reads them before libsoup may (request smuggling,
 * issue 16).  The verdict must match a plain reference: one value of
 * digits only, whose number (never overflowing, however long) is within
 * the limit. */

#include "od-fuzz.h"
#include "od-http.h"

#include <string.h>

#define LIMIT 65536

/* Compares a run of digits with LIMIT as numbers, by length without
 * leading zeros, then digit by digit. */
static gboolean
digits_over_limit (const char *digits)
{
  char limit[32];

  while (digits[0] == '0' && digits[1] != '\0')
    digits++;
  g_snprintf (limit, sizeof limit, "%d", LIMIT);
  if (strlen (digits) != strlen (limit))
    return strlen (digits) > strlen (limit);
  return strcmp (digits, limit) > 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autofree char *text = g_strndup ((const char *) data, size);
  g_auto(GStrv) values = NULL;
  guint n;
  guint64 length = G_MAXUINT64;
  OdContentLength verdict;

  /* An empty input is no header at all. */
  values = size == 0 ? g_new0 (char *, 1) : g_strsplit (text, "\n", 8);
  n = g_strv_length (values);
  verdict = od_http_content_length ((const char * const *) values, n, LIMIT, &length);

  if (n == 0)
    OD_FUZZ_CHECK (verdict == OD_CONTENT_LENGTH_NONE);
  else if (n > 1)
    OD_FUZZ_CHECK (verdict == OD_CONTENT_LENGTH_MALFORMED);
  else if (values[0][0] == '\0' || strspn (values[0], "0123456789") != strlen (values[0]))
    OD_FUZZ_CHECK (verdict == OD_CONTENT_LENGTH_MALFORMED);
  else if (digits_over_limit (values[0]))
    OD_FUZZ_CHECK (verdict == OD_CONTENT_LENGTH_TOO_LARGE);
  else
    {
      OD_FUZZ_CHECK (verdict == OD_CONTENT_LENGTH_OK);
      OD_FUZZ_CHECK (length <= LIMIT);
      OD_FUZZ_CHECK (length == g_ascii_strtoull (values[0], NULL, 10));
    }
  if (verdict != OD_CONTENT_LENGTH_OK)
    OD_FUZZ_CHECK (length == G_MAXUINT64);
  return 0;
}

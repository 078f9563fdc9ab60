/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-json-scan.h"

#include <string.h>

void
od_json_scan_space (OdJsonScan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

gboolean
od_json_scan_expect (OdJsonScan *s,
                     char        c)
{
  od_json_scan_space (s);
  if (s->p < s->end && *s->p == c)
    {
      s->p++;
      return TRUE;
    }
  return FALSE;
}

/* A string without escapes or control characters; returns its bounds. */
gboolean
od_json_scan_string (OdJsonScan  *s,
                     const char **start,
                     gsize       *len)
{
  const char *q;

  od_json_scan_space (s);
  if (s->p >= s->end || *s->p != '"')
    return FALSE;
  q = ++s->p;
  while (q < s->end && *q != '"')
    {
      if (*q == '\\' || (unsigned char) *q < 0x20)
        return FALSE;
      q++;
    }
  if (q >= s->end)
    return FALSE;
  *start = s->p;
  *len = q - s->p;
  s->p = q + 1;
  return TRUE;
}

gboolean
od_json_scan_integer (OdJsonScan *s,
                      gint64     *out)
{
  gboolean neg = FALSE;
  guint64 v = 0;
  guint digits = 0;

  od_json_scan_space (s);
  if (s->p < s->end && *s->p == '-')
    {
      neg = TRUE;
      s->p++;
    }
  /* "01" is not JSON: the strict path refuses it. */
  if (s->end - s->p >= 2 && s->p[0] == '0' && g_ascii_isdigit (s->p[1]))
    return FALSE;
  while (s->p < s->end && g_ascii_isdigit (*s->p))
    {
      if (++digits > 18)
        return FALSE;
      v = v * 10 + (*s->p - '0');
      s->p++;
    }
  if (digits == 0 || (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')))
    return FALSE;
  *out = neg ? -(gint64) v : (gint64) v;
  return TRUE;
}

/* Whether a scanned string (not NUL-terminated) is NAME. */
gboolean
od_json_scan_is (const char *text,
                 gsize       len,
                 const char *name)
{
  return strlen (name) == len && memcmp (text, name, len) == 0;
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-digest.h"

#include <string.h>

static inline void
add_text (GChecksum  *sum,
          const char *text,
          gssize      len,
          char        sep)
{
  if (text != NULL)
    g_checksum_update (sum, (const guchar *) text, len < 0 ? strlen (text) : (gsize) len);
  g_checksum_update (sum, (const guchar *) &sep, 1);
}

void
od_digest_add_event (GChecksum  *sum,
                     gint64      position,
                     const char *order_id,
                     gint64      version,
                     const char *type,
                     const char *recorded_at,
                     const char *actor,
                     const char *data,
                     gssize      data_len)
{
  char num[24];
  int n;

  n = g_snprintf (num, sizeof num, "%" G_GINT64_FORMAT "\t", position);
  g_checksum_update (sum, (const guchar *) num, n);
  add_text (sum, order_id, -1, '\t');
  n = g_snprintf (num, sizeof num, "%" G_GINT64_FORMAT "\t", version);
  g_checksum_update (sum, (const guchar *) num, n);
  add_text (sum, type, -1, '\t');
  add_text (sum, recorded_at, -1, '\t');
  add_text (sum, actor, -1, '\t');
  add_text (sum, data, data_len, '\n');
}

static const char *
skip_ws (const char *p,
         const char *end)
{
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  return p;
}

/* The end of the JSON value at p, or NULL when it runs past end. */
static const char *
skip_value (const char *p,
            const char *end)
{
  int depth = 0;

  do
    {
      p = skip_ws (p, end);
      if (p >= end)
        return NULL;
      if (*p == '"')
        {
          for (p++; p < end && *p != '"'; p++)
            if (*p == '\\')
              p++;
          if (p >= end)
            return NULL;
          p++;
        }
      else if (*p == '{' || *p == '[')
        depth++, p++;
      else if (*p == '}' || *p == ']')
        depth--, p++;
      else if (*p == ',' || *p == ':')
        {
          if (depth == 0)
            return NULL;
          p++;
        }
      else
        {
          while (p < end && strchr (",:}] \n\r\t", *p) == NULL)
            p++;
        }
    }
  while (depth > 0);
  return p;
}

gboolean
od_json_raw_member (const char  *text,
                    gsize        len,
                    const char  *name,
                    const char **value,
                    gsize       *value_len)
{
  const char *end = text + len, *p = skip_ws (text, end);
  gsize name_len = strlen (name);

  if (p >= end || *p != '{')
    return FALSE;
  p = skip_ws (p + 1, end);
  if (p < end && *p == '}')
    return FALSE;
  while (p != NULL && p < end)
    {
      const char *key = skip_ws (p, end), *v, *v_end;

      if ((p = skip_value (key, end)) == NULL)
        return FALSE;
      p = skip_ws (p, end);
      if (p >= end || *p != ':')
        return FALSE;
      v = skip_ws (p + 1, end);
      if ((v_end = skip_value (v, end)) == NULL)
        return FALSE;
      if ((gsize) (p - key) >= name_len + 2 && key[0] == '"'
          && memcmp (key + 1, name, name_len) == 0 && key[name_len + 1] == '"'
          && skip_ws (key + name_len + 2, end) == p)
        {
          *value = v;
          *value_len = v_end - v;
          return TRUE;
        }
      p = skip_ws (v_end, end);
      if (p >= end || *p != ',')
        return FALSE;
      p++;
    }
  return FALSE;
}

GArray *
od_json_raw_elements (const char *text,
                      gsize       len,
                      const char *name)
{
  g_autoptr(GArray) spans = g_array_new (FALSE, FALSE, sizeof (gsize));
  const char *array, *end, *p;
  gsize array_len;

  if (!od_json_raw_member (text, len, name, &array, &array_len) || *array != '[')
    return NULL;
  end = array + array_len;
  p = skip_ws (array + 1, end);
  while (p < end && *p != ']')
    {
      const char *e = skip_value (p, end);
      gsize pair[2];

      if (e == NULL)
        return NULL;
      pair[0] = p - text;
      pair[1] = e - p;
      g_array_append_vals (spans, pair, 2);
      p = skip_ws (e, end);
      if (p < end && *p == ',')
        p = skip_ws (p + 1, end);
    }
  return g_steal_pointer (&spans);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-digest.h"

#include <nettle/sha2.h>
#include <string.h>

/* Lines are gathered into buf and hashed a buffer at a time: an event's
 * line has seven fields, and one call per field would cost more than the
 * hashing of the few bytes each holds. */
struct _OdDigest
{
  struct sha256_ctx ctx;
  gsize fill;
  guint8 buf[16384];
};

OdDigest *
od_digest_new (void)
{
  OdDigest *self = g_new (OdDigest, 1);

  sha256_init (&self->ctx);
  self->fill = 0;
  return self;
}

void
od_digest_free (OdDigest *self)
{
  g_free (self);
}

static inline void
flush (OdDigest *self)
{
  sha256_update (&self->ctx, self->fill, self->buf);
  self->fill = 0;
}

void
od_digest_update (OdDigest   *self,
                  const void *data,
                  gsize       len)
{
  if (len > sizeof self->buf - self->fill)
    {
      flush (self);
      if (len >= sizeof self->buf)
        {
          sha256_update (&self->ctx, len, data);
          return;
        }
    }
  memcpy (self->buf + self->fill, data, len);
  self->fill += len;
}

static inline void
add_byte (OdDigest *self,
          char      c)
{
  if (self->fill == sizeof self->buf)
    flush (self);
  self->buf[self->fill++] = (guint8) c;
}

/* Decimal digits without printf, as the store formats replay: a digest
 * formats two numbers for each of a million events. */
static inline void
add_int (OdDigest *self,
         gint64    value)
{
  char num[24];
  char *p = num + sizeof num;
  guint64 v = value < 0 ? -(guint64) value : (guint64) value;

  do
    *--p = '0' + v % 10;
  while ((v /= 10) != 0);
  if (value < 0)
    *--p = '-';
  od_digest_update (self, p, num + sizeof num - p);
}

static inline void
add_text (OdDigest   *self,
          const char *text,
          gssize      len,
          char        sep)
{
  if (text != NULL)
    od_digest_update (self, text, len < 0 ? strlen (text) : (gsize) len);
  add_byte (self, sep);
}

void
od_digest_add_event (OdDigest   *self,
                     gint64      position,
                     const char *order_id,
                     gint64      version,
                     const char *type,
                     const char *recorded_at,
                     const char *actor,
                     const char *data,
                     gssize      data_len)
{
  add_int (self, position);
  add_byte (self, '\t');
  add_text (self, order_id, -1, '\t');
  add_int (self, version);
  add_byte (self, '\t');
  add_text (self, type, -1, '\t');
  add_text (self, recorded_at, -1, '\t');
  add_text (self, actor, -1, '\t');
  add_text (self, data, data_len, '\n');
}

void
od_digest_finish (OdDigest *self,
                  char      hex[OD_DIGEST_HEX_LEN + 1])
{
  static const char digits[] = "0123456789abcdef";
  guint8 sum[SHA256_DIGEST_SIZE];

  G_STATIC_ASSERT (SHA256_DIGEST_SIZE * 2 == OD_DIGEST_HEX_LEN);
  flush (self);
  /* sha256_digest () also starts the context over. */
  sha256_digest (&self->ctx, sizeof sum, sum);
  for (gsize i = 0; i < sizeof sum; i++)
    {
      hex[2 * i] = digits[sum[i] >> 4];
      hex[2 * i + 1] = digits[sum[i] & 15];
    }
  hex[OD_DIGEST_HEX_LEN] = '\0';
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

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-digest.h"

#include <nettle/sha2.h>
#include <string.h>

#define BLOCK_SIZE 65536
/* Blocks a digest owns: one being filled, up to two queued or hashing. */
#define N_BLOCKS 3
/* Blocks hashed on the caller's thread before a hashing thread is worth
 * starting: a bisect's ranges of a few hundred events never start one. */
#define INLINE_BLOCKS 4

typedef struct
{
  gsize len;
  guint8 data[BLOCK_SIZE];
} Block;

/* Lines are gathered into blocks and hashed a block at a time: an event's
 * line has seven fields, and one call per field would cost more than the
 * hashing of the few bytes each holds.  Past INLINE_BLOCKS, blocks are
 * hashed on a thread of the digest's own while the caller formats the
 * next (for a server, reads the next rows): the hashing then costs the
 * caller's thread nothing.  Until finish () joins it, ctx belongs to that
 * thread. */
struct _OdDigest
{
  struct sha256_ctx ctx;
  Block *block;
  guint n_blocks;
  guint n_flushed;
  GThread *hasher;
  GAsyncQueue *full;   /* to the hasher; an empty block (len 0) stops it */
  GAsyncQueue *empty;  /* back from the hasher */
};

static gpointer
hash_blocks (gpointer data)
{
  OdDigest *self = data;

  for (;;)
    {
      Block *block = g_async_queue_pop (self->full);

      if (block->len == 0)
        {
          g_async_queue_push (self->empty, block);
          return NULL;
        }
      sha256_update (&self->ctx, block->len, block->data);
      block->len = 0;
      g_async_queue_push (self->empty, block);
    }
}

OdDigest *
od_digest_new (void)
{
  OdDigest *self = g_new0 (OdDigest, 1);

  sha256_init (&self->ctx);
  self->block = g_new (Block, 1);
  self->block->len = 0;
  self->n_blocks = 1;
  return self;
}

/* Waits for every queued block to be hashed and ends the thread. */
static void
stop_hasher (OdDigest *self)
{
  Block *stop;

  if (self->hasher == NULL)
    return;
  if (self->n_blocks < N_BLOCKS)
    {
      stop = g_new (Block, 1);
      self->n_blocks++;
    }
  else
    stop = g_async_queue_pop (self->empty);
  stop->len = 0;
  g_async_queue_push (self->full, stop);
  g_thread_join (self->hasher);
  self->hasher = NULL;
}

void
od_digest_free (OdDigest *self)
{
  Block *block;

  stop_hasher (self);
  g_free (self->block);
  if (self->empty != NULL)
    {
      while ((block = g_async_queue_try_pop (self->empty)) != NULL)
        g_free (block);
      g_async_queue_unref (self->empty);
      g_async_queue_unref (self->full);
    }
  g_free (self);
}

static void
flush (OdDigest *self)
{
  if (self->block->len == 0)
    return;
  if (self->hasher == NULL && self->n_flushed < INLINE_BLOCKS)
    {
      self->n_flushed++;
      sha256_update (&self->ctx, self->block->len, self->block->data);
      self->block->len = 0;
      return;
    }
  if (self->hasher == NULL)
    {
      if (self->full == NULL)
        {
          self->full = g_async_queue_new ();
          self->empty = g_async_queue_new ();
        }
      self->hasher = g_thread_new ("od-digest", hash_blocks, self);
    }
  g_async_queue_push (self->full, self->block);
  if (self->n_blocks < N_BLOCKS)
    {
      self->block = g_new (Block, 1);
      self->n_blocks++;
    }
  else
    self->block = g_async_queue_pop (self->empty);
  self->block->len = 0;
}

void
od_digest_update (OdDigest   *self,
                  const void *data,
                  gsize       len)
{
  const guint8 *p = data;

  while (len > BLOCK_SIZE - self->block->len)
    {
      gsize n = BLOCK_SIZE - self->block->len;

      memcpy (self->block->data + self->block->len, p, n);
      self->block->len += n;
      flush (self);
      p += n;
      len -= n;
    }
  memcpy (self->block->data + self->block->len, p, len);
  self->block->len += len;
}

static inline void
add_byte (OdDigest *self,
          char      c)
{
  if (self->block->len == BLOCK_SIZE)
    flush (self);
  self->block->data[self->block->len++] = (guint8) c;
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
  stop_hasher (self);
  self->n_flushed = 0;
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

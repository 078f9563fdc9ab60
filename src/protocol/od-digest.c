/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-digest.h"

#include <gio/gio.h>
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

/* Decimal digits without printf, as the store formats replay: a digest
 * formats two numbers for each of a million events. */
static inline char *
put_int (char   *out,
         gint64  value)
{
  char num[24];
  char *p = num + sizeof num;
  guint64 v = value < 0 ? -(guint64) value : (guint64) value;

  do
    *--p = '0' + v % 10;
  while ((v /= 10) != 0);
  if (value < 0)
    *--p = '-';
  memcpy (out, p, num + sizeof num - p);
  return out + (num + sizeof num - p);
}

static inline char *
put_text (char       *out,
          const char *text,
          gsize       len,
          char        sep)
{
  if (len > 0)
    memcpy (out, text, len);
  out[len] = sep;
  return out + len + 1;
}

/* A line's text fields and their lengths (a NULL string is empty). */
typedef struct
{
  const char *text[5];
  gsize len[5];
} Fields;

static inline gsize
fields_init (Fields     *fields,
             const char *order_id,
             gssize      order_id_len,
             const char *type,
             gssize      type_len,
             const char *recorded_at,
             gssize      recorded_at_len,
             const char *actor,
             gssize      actor_len,
             const char *data,
             gssize      data_len)
{
  const char *text[5] = { order_id, type, recorded_at, actor, data };
  gssize len[5] = { order_id_len, type_len, recorded_at_len, actor_len, data_len };
  /* Two numbers of at most 20 characters ("-9223372036854775808") and
   * seven separators. */
  gsize max = 2 * 20 + 7;

  for (guint i = 0; i < 5; i++)
    {
      fields->text[i] = text[i];
      fields->len[i] = text[i] == NULL ? 0 : len[i] < 0 ? strlen (text[i]) : (gsize) len[i];
      max += fields->len[i];
    }
  return max;
}

/* The one formatter of a canonical line; out has room for the maximum
 * fields_init () returned.  Returns the line's end. */
static inline char *
put_line (char         *out,
          gint64        position,
          gint64        version,
          const Fields *f)
{
  out = put_int (out, position);
  *out++ = '\t';
  out = put_text (out, f->text[0], f->len[0], '\t');
  out = put_int (out, version);
  *out++ = '\t';
  out = put_text (out, f->text[1], f->len[1], '\t');
  out = put_text (out, f->text[2], f->len[2], '\t');
  out = put_text (out, f->text[3], f->len[3], '\t');
  return put_text (out, f->text[4], f->len[4], '\n');
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
  Fields fields;
  gsize max = fields_init (&fields, order_id, -1, type, -1, recorded_at, -1, actor, -1, data,
                           data_len);
  char *end;

  if (max <= BLOCK_SIZE)
    {
      /* Formatted straight into the block; a line never straddles two,
       * which changes nothing of the hash (it runs over the bytes, in
       * order, whatever the pieces they are fed in). */
      if (max > BLOCK_SIZE - self->block->len)
        flush (self);
      end = put_line ((char *) self->block->data + self->block->len, position, version, &fields);
      self->block->len = (guint8 *) end - self->block->data;
    }
  else
    {
      g_autofree char *line = g_malloc (max);

      end = put_line (line, position, version, &fields);
      od_digest_update (self, line, end - line);
    }
}

void
od_digest_append_event (GByteArray *lines,
                        gint64      position,
                        const char *order_id,
                        gssize      order_id_len,
                        gint64      version,
                        const char *type,
                        gssize      type_len,
                        const char *recorded_at,
                        gssize      recorded_at_len,
                        const char *actor,
                        gssize      actor_len,
                        const char *data,
                        gssize      data_len)
{
  Fields fields;
  gsize max = fields_init (&fields, order_id, order_id_len, type, type_len, recorded_at,
                           recorded_at_len, actor, actor_len, data, data_len);
  guint len = lines->len;
  char *end;

  g_byte_array_set_size (lines, len + max);
  end = put_line ((char *) lines->data + len, position, version, &fields);
  /* Shrinking a GByteArray is setting its length; set_size () would go
   * through a removal of the tail for every line. */
  lines->len = (guint8 *) end - lines->data;
}

/* od_digest_add_ranges (): readers take ranges in turn and hand their
 * lines back by range index; this thread hashes them strictly in that
 * order.  A reader takes range i only once range i - window is hashed,
 * so slot i % window is free for it and the lines waiting stay bounded. */
typedef struct
{
  GMutex            lock;
  GCond             cond;
  OdDigestReadFunc  read;
  gpointer          user_data;
  gint64            after;
  gint64            upto;
  gint64            range;
  guint64           n_ranges;
  guint             window;
  guint64           next;     /* the next range to be taken */
  guint64           hashed;   /* ranges hashed so far */
  GByteArray      **done;     /* [window]: lines read, by range index % window */
  gint64           *counts;   /* [window]: their events */
  GPtrArray        *spare;    /* buffers to reuse */
  GError           *error;    /* the first failure; stops everyone */
} Ranges;

static void
range_bounds (Ranges  *r,
              guint64  i,
              gint64  *after,
              gint64  *upto)
{
  /* i < n_ranges, so after + i * range <= upto: no overflow. */
  *after = r->after + (gint64) i * r->range;
  *upto = r->upto - *after > r->range ? *after + r->range : r->upto;
}

static gpointer
read_ranges (gpointer data)
{
  Ranges *r = data;

  for (;;)
    {
      GError *error = NULL;
      GByteArray *lines;
      gint64 after, upto, count = 0;
      guint64 i;
      gboolean ok;

      g_mutex_lock (&r->lock);
      while (r->error == NULL && r->next < r->n_ranges && r->next >= r->hashed + r->window)
        g_cond_wait (&r->cond, &r->lock);
      if (r->error != NULL || r->next >= r->n_ranges)
        {
          g_mutex_unlock (&r->lock);
          return NULL;
        }
      i = r->next++;
      lines = r->spare->len > 0 ? g_ptr_array_steal_index_fast (r->spare, r->spare->len - 1)
                                : g_byte_array_new ();
      g_mutex_unlock (&r->lock);

      range_bounds (r, i, &after, &upto);
      g_byte_array_set_size (lines, 0);
      ok = r->read (r->user_data, after, upto, lines, &count, &error);

      g_mutex_lock (&r->lock);
      if (ok)
        {
          r->done[i % r->window] = lines;
          r->counts[i % r->window] = count;
        }
      else
        {
          if (error == NULL)
            error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "reading events %" G_GINT64_FORMAT
                                 "–%" G_GINT64_FORMAT " failed", after + 1, upto);
          if (r->error == NULL)
            r->error = g_steal_pointer (&error);
          g_clear_error (&error);
          g_ptr_array_add (r->spare, lines);
        }
      g_cond_broadcast (&r->cond);
      g_mutex_unlock (&r->lock);
    }
}

gboolean
od_digest_add_ranges (OdDigest          *self,
                      gint64             after,
                      gint64             upto,
                      gint64             range,
                      guint              n_readers,
                      OdDigestReadFunc   read,
                      gpointer           user_data,
                      gint64            *count,
                      GError           **error)
{
  Ranges r = { 0 };
  GThread *readers[OD_DIGEST_MAX_READERS];
  guint n_threads;

  g_return_val_if_fail (range > 0, FALSE);
  if (upto <= after)
    return TRUE;
  r.read = read;
  r.user_data = user_data;
  r.after = after;
  r.upto = upto;
  r.range = range;
  r.n_ranges = ((guint64) upto - (guint64) after - 1) / (guint64) range + 1;
  n_threads = (guint) MIN ((guint64) CLAMP (n_readers, 1, OD_DIGEST_MAX_READERS), r.n_ranges);

  /* One range, or one reader: no thread is worth starting. */
  if (n_threads == 1)
    {
      g_autoptr(GByteArray) lines = g_byte_array_new ();

      for (guint64 i = 0; i < r.n_ranges; i++)
        {
          gint64 a, b;

          range_bounds (&r, i, &a, &b);
          g_byte_array_set_size (lines, 0);
          if (!read (user_data, a, b, lines, count, error))
            return FALSE;
          od_digest_update (self, lines->data, lines->len);
        }
      return TRUE;
    }

  /* The lines arrive in buffers of their own: hashed here straight from
   * them, while the readers read on, instead of being copied into blocks
   * for the hashing thread. */
  flush (self);
  stop_hasher (self);
  g_mutex_init (&r.lock);
  g_cond_init (&r.cond);
  r.window = 2 * n_threads;
  r.done = g_new0 (GByteArray *, r.window);
  r.counts = g_new0 (gint64, r.window);
  r.spare = g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
  for (guint t = 0; t < n_threads; t++)
    readers[t] = g_thread_new ("od-digest-read", read_ranges, &r);

  for (guint64 i = 0; i < r.n_ranges; i++)
    {
      GByteArray *lines;

      g_mutex_lock (&r.lock);
      while (r.done[i % r.window] == NULL && r.error == NULL)
        g_cond_wait (&r.cond, &r.lock);
      if (r.error != NULL)
        {
          g_mutex_unlock (&r.lock);
          break;
        }
      lines = g_steal_pointer (&r.done[i % r.window]);
      *count += r.counts[i % r.window];
      g_mutex_unlock (&r.lock);

      sha256_update (&self->ctx, lines->len, lines->data);

      g_mutex_lock (&r.lock);
      r.hashed++;
      g_ptr_array_add (r.spare, lines);
      g_cond_broadcast (&r.cond);
      g_mutex_unlock (&r.lock);
    }

  for (guint t = 0; t < n_threads; t++)
    g_thread_join (readers[t]);
  for (guint w = 0; w < r.window; w++)
    if (r.done[w] != NULL)
      g_byte_array_unref (r.done[w]);
  g_free (r.done);
  g_free (r.counts);
  g_ptr_array_unref (r.spare);
  g_cond_clear (&r.cond);
  g_mutex_clear (&r.lock);
  if (r.error != NULL)
    {
      g_propagate_error (error, r.error);
      return FALSE;
    }
  return TRUE;
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

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-uuid.h"

/* The contract accepts exactly the canonical lower-case form, so that an
 * order id has a single spelling in the log, the cache and URLs. */
gboolean
od_uuid_is_valid (const char *str)
{
  if (str == NULL)
    return FALSE;
  for (guint i = 0; i < OD_UUID_LEN; i++)
    {
      char c = str[i];

      if (i == 8 || i == 13 || i == 18 || i == 23)
        {
          if (c != '-')
            return FALSE;
        }
      else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
        return FALSE;
    }
  return str[OD_UUID_LEN] == '\0';
}

/* UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits.  A
 * counter in rand_a keeps ids made in the same millisecond ordered, which
 * is what makes them cheap B-tree keys. */
void
od_uuid_v7_fill (char   out[OD_UUID_LEN + 1],
                 gint64 unix_msec)
{
  static const char hex[] = "0123456789abcdef";
  static GMutex lock;
  static gint64 last_msec;
  static guint16 counter;
  guint16 seq;
  guint8 b[16];
  guint j = 0;

  g_mutex_lock (&lock);
  /* Within a second behind the newest id, the clock is taken to be the
   * same millisecond (the counter may have pushed last_msec ahead):
   * ids made in a burst stay ordered. */
  if (unix_msec <= last_msec && last_msec - unix_msec < 1000)
    {
      unix_msec = last_msec;
      counter++;
      if (counter > 0x0fff)
        {
          unix_msec = ++last_msec;
          counter = g_random_int_range (0, 0x100);
        }
      seq = counter;
    }
  else if (unix_msec > last_msec)
    {
      last_msec = unix_msec;
      counter = g_random_int_range (0, 0x100);
      seq = counter;
    }
  else
    {
      /* A backdated id (or a clock that stepped back): its random bits
       * keep it unique, it just does not sort after the previous one.
       * The newest millisecond's counter is left alone, so that the next
       * id of that millisecond still sorts after the ones before it. */
      seq = g_random_int_range (0, 0x1000);
    }
  /* seq, not counter, below: another thread may move the counter on
   * once the lock is released. */
  g_mutex_unlock (&lock);

  for (guint i = 0; i < 6; i++)
    b[i] = (guint8) (unix_msec >> (8 * (5 - i)));
  b[6] = 0x70 | ((seq >> 8) & 0x0f);
  b[7] = seq & 0xff;
  for (guint i = 8; i < 16; i += 4)
    {
      guint32 r = g_random_int ();

      b[i] = r;
      b[i + 1] = r >> 8;
      b[i + 2] = r >> 16;
      b[i + 3] = r >> 24;
    }
  b[8] = 0x80 | (b[8] & 0x3f);

  for (guint i = 0; i < 16; i++)
    {
      if (i == 4 || i == 6 || i == 8 || i == 10)
        out[j++] = '-';
      out[j++] = hex[b[i] >> 4];
      out[j++] = hex[b[i] & 0xf];
    }
  out[j] = '\0';
}

char *
od_uuid_v7_new (void)
{
  char buf[OD_UUID_LEN + 1];

  od_uuid_v7_fill (buf, g_get_real_time () / 1000);
  return g_strdup (buf);
}

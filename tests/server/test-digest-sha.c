/* SPDX-License-Identifier: GPL-3.0-or-later */
/* od_digest (nettle's SHA-256, lines gathered in a buffer, numbers
 * formatted by hand) against the digest's definition as first written:
 * GChecksum over each canonical line formatted with printf.  Any byte of
 * difference would make every client that computed a digest the old way
 * see a mismatch everywhere. */
#include "od-digest.h"

#include <gio/gio.h>
#include <string.h>

/* Bytes a field can hold: ASCII, the JSON escapes' characters, tabs and
 * newlines (which a canonical line keeps as they are), UTF-8 of two,
 * three and four bytes. */
static const char *pieces[] = {
  "a", "Z", "0", " ", "\"", "\\", "{", "}", ":", ",", "\t", "\n", "\r",
  "é", "Zoë", "✓", "€", "😀", "\\u00e9", "\\ud83d\\ude00", "ß", "ı",
};

static char *
random_text (GRand *rand,
             guint  max_pieces)
{
  GString *s = g_string_new (NULL);
  guint n = g_rand_int_range (rand, 0, max_pieces + 1);

  for (guint i = 0; i < n; i++)
    g_string_append (s, pieces[g_rand_int_range (rand, 0, G_N_ELEMENTS (pieces))]);
  return g_string_free (s, FALSE);
}

static gint64
random_int (GRand *rand)
{
  switch (g_rand_int_range (rand, 0, 5))
    {
    case 0:
      return g_rand_int_range (rand, 0, 10);
    case 1:
      return g_rand_int_range (rand, 1, 2000000);
    case 2:
      return G_MAXINT64 - g_rand_int_range (rand, 0, 3);
    case 3:
      return G_MININT64 + g_rand_int_range (rand, 0, 3);
    default:
      /* Built unsigned: a signed left shift of these bits is undefined. */
      return (gint64) ((guint64) g_rand_int (rand) << 32 | g_rand_int (rand));
    }
}

/* The definition: position TAB order_id TAB version TAB type TAB
 * recorded_at TAB actor TAB data LF, a missing string adding nothing. */
static void
old_line (GChecksum  *sum,
          gint64      position,
          const char *order_id,
          gint64      version,
          const char *type,
          const char *recorded_at,
          const char *actor,
          const char *data,
          gssize      data_len)
{
  g_autoptr(GString) line = g_string_new (NULL);

  g_string_append_printf (line, "%" G_GINT64_FORMAT "\t%s\t%" G_GINT64_FORMAT "\t%s\t%s\t%s\t",
                          position, order_id ? order_id : "", version, type ? type : "",
                          recorded_at ? recorded_at : "", actor ? actor : "");
  if (data != NULL)
    g_string_append_len (line, data, data_len < 0 ? (gssize) strlen (data) : data_len);
  g_string_append_c (line, '\n');
  g_checksum_update (sum, (const guchar *) line->str, line->len);
}

static void
test_random_events (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(OdDigest) ours = od_digest_new ();

  for (guint round = 0; round < 300; round++)
    {
      g_autoptr(GChecksum) theirs = g_checksum_new (G_CHECKSUM_SHA256);
      /* From none to a few thousand events: the line buffer fills and
       * is hashed many times over, at every offset. */
      guint n = round % 10 == 0 ? round / 10 : (guint) g_rand_int_range (rand, 1, 3000);
      char hex[OD_DIGEST_HEX_LEN + 1];

      for (guint i = 0; i < n; i++)
        {
          /* Now and then a data larger than the line buffer, which is
           * hashed without passing through it. */
          guint data_pieces = g_rand_int_range (rand, 0, 50) == 0 ? 12000 : 40;
          g_autofree char *order_id = random_text (rand, 12);
          g_autofree char *type = random_text (rand, 6);
          g_autofree char *recorded_at = random_text (rand, 8);
          g_autofree char *actor = random_text (rand, 6);
          g_autofree char *data = random_text (rand, data_pieces);
          gint64 position = random_int (rand), version = random_int (rand);
          gssize data_len = -1;
          const char *strings[] = { order_id, type, recorded_at, actor, data };
          const char **nulled = NULL;

          /* A length shorter than the string (bytes of a column buffer). */
          if (g_rand_boolean (rand))
            data_len = g_rand_int_range (rand, 0, strlen (data) + 1);
          if (g_rand_int_range (rand, 0, 20) == 0)
            nulled = &strings[g_rand_int_range (rand, 0, G_N_ELEMENTS (strings))];
          if (nulled != NULL)
            *nulled = NULL;
          old_line (theirs, position, strings[0], version, strings[1], strings[2], strings[3],
                    strings[4], data_len);
          od_digest_add_event (ours, position, strings[0], version, strings[1], strings[2],
                               strings[3], strings[4], data_len);
        }
      od_digest_finish (ours, hex);
      /* finish () starts over: the next round reuses ours. */
      g_assert_cmpstr (hex, ==, g_checksum_get_string (theirs));
    }
}

/* Fixed answers, so that a change to both sides at once is caught too:
 * the empty hash, FIPS 180-2's "abc" and a million "a" (in one piece, so
 * through the hashing thread), and one event line hashed by
 * `printf '7\tO\t2\tItemAdded\tT\tA\t{"q":1}\n' | sha256sum`. */
static void
test_known (void)
{
  g_autoptr(OdDigest) sum = od_digest_new ();
  g_autofree char *million_a = g_malloc (1000000);
  char hex[OD_DIGEST_HEX_LEN + 1];

  memset (million_a, 'a', 1000000);
  od_digest_finish (sum, hex);
  g_assert_cmpstr (hex, ==, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  od_digest_update (sum, "abc", 3);
  od_digest_finish (sum, hex);
  g_assert_cmpstr (hex, ==, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  od_digest_update (sum, million_a, 1000000);
  od_digest_finish (sum, hex);
  g_assert_cmpstr (hex, ==, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  od_digest_add_event (sum, 7, "O", 2, "ItemAdded", "T", "A", "{\"q\":1}", -1);
  od_digest_finish (sum, hex);
  g_assert_cmpstr (hex, ==, "49a835703880e3eacf80c96465086c3af03bf59857e3bc28775e37a7c86f0a31");
}

/* ---- od_digest_add_ranges (): ranges read on threads, hashed in order ---- */

static guint64
mix (guint64 x)
{
  /* splitmix64: an event's fields from its position alone, so that any
   * thread can produce any range. */
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

typedef struct
{
  guint64 seed;
  gint64  fail_after;   /* a range starting here fails; -1: none */
  gint    calls;
} Source;

/* The event at position p, or FALSE where the log has a gap. */
static gboolean
source_event (Source   *source,
              gint64    p,
              char    **fields,
              gint64   *version)
{
  guint64 h = mix (source->seed ^ (guint64) p);

  if (h % 11 == 0)
    return FALSE;
  for (guint f = 0; f < 5; f++)
    {
      GString *text = g_string_new (NULL);
      guint n = (h >> (f * 8)) % (f == 4 ? 24 : 5);

      for (guint k = 0; k < n; k++)
        g_string_append (text, pieces[mix (h + f * 64 + k) % G_N_ELEMENTS (pieces)]);
      fields[f] = g_string_free (text, FALSE);
    }
  *version = (gint64) (h >> 40) - 5;
  return TRUE;
}

static gboolean
source_read (gpointer     user_data,
             gint64       after,
             gint64       upto,
             GByteArray  *lines,
             gint64      *count,
             GError     **error)
{
  Source *source = user_data;
  guint64 h = mix (source->seed + (guint64) after);

  g_atomic_int_inc (&source->calls);
  if (after == source->fail_after)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "range after %" G_GINT64_FORMAT, after);
      return FALSE;
    }
  /* Now and then a reader is slow, so that ranges finish out of order. */
  if (h % 8 == 0)
    g_usleep (h % 500);
  for (gint64 p = after + 1; p <= upto; p++)
    {
      char *f[5];
      gint64 version;

      if (!source_event (source, p, f, &version))
        continue;
      /* Lengths given, or left to the NUL. */
      od_digest_append_event (lines, p, f[0], (h & 1) ? -1 : (gssize) strlen (f[0]), version,
                              f[1], -1, f[2], (h & 2) ? -1 : (gssize) strlen (f[2]), f[3], -1,
                              f[4], (h & 4) ? -1 : (gssize) strlen (f[4]));
      (*count)++;
      for (guint k = 0; k < 5; k++)
        g_free (f[k]);
    }
  return TRUE;
}

static void
test_ranges (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(OdDigest) ours = od_digest_new ();

  for (guint round = 0; round < 50; round++)
    {
      g_autoptr(GChecksum) theirs = g_checksum_new (G_CHECKSUM_SHA256);
      Source source = { .seed = ((guint64) g_rand_int (rand) << 32) | g_rand_int (rand),
                        .fail_after = -1 };
      gint64 after = g_rand_int_range (rand, 0, 5000);
      gint64 upto = after + (round % 7 == 0 ? -g_rand_int_range (rand, 0, 3)
                                            : g_rand_int_range (rand, 1, 8000));
      gint64 range = g_rand_int_range (rand, 1, 3) == 1 ? g_rand_int_range (rand, 1, 40)
                                                         : g_rand_int_range (rand, 40, 4000);
      guint n_readers = g_rand_int_range (rand, 1, OD_DIGEST_MAX_READERS + 2);
      gint64 count = 0, expected = 0;
      g_autoptr(GError) error = NULL;
      char hex[OD_DIGEST_HEX_LEN + 1];
      gboolean ok;

      /* Something hashed before the ranges, through the hashing thread. */
      if (round % 3 == 0)
        for (guint i = 0; i < 3000; i++)
          {
            od_digest_add_event (ours, -(gint64) i, "pre", i, "T", "R", "A", "{}", -1);
            old_line (theirs, -(gint64) i, "pre", i, "T", "R", "A", "{}", -1);
          }
      if (round % 5 == 4 && upto > after)
        source.fail_after = after + range * g_rand_int_range (rand, 0, (upto - after - 1) / range + 1);

      ok = od_digest_add_ranges (ours, after, upto, range, n_readers, source_read, &source,
                                 &count, &error);
      if (source.fail_after >= 0)
        {
          g_assert_false (ok);
          g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
          od_digest_finish (ours, hex);   /* starts over */
          continue;
        }
      g_assert_no_error (error);
      g_assert_true (ok);
      for (gint64 p = after + 1; p <= upto; p++)
        {
          char *f[5];
          gint64 version;

          if (!source_event (&source, p, f, &version))
            continue;
          old_line (theirs, p, f[0], version, f[1], f[2], f[3], f[4], -1);
          expected++;
          for (guint k = 0; k < 5; k++)
            g_free (f[k]);
        }
      /* And something after them. */
      od_digest_add_event (ours, 1, "post", 2, "T", "R", "A", "{}", -1);
      old_line (theirs, 1, "post", 2, "T", "R", "A", "{}", -1);
      g_assert_cmpint (count, ==, expected);
      g_assert_cmpint (source.calls, ==, upto > after ? (upto - after - 1) / range + 1 : 0);
      od_digest_finish (ours, hex);
      g_assert_cmpstr (hex, ==, g_checksum_get_string (theirs));
    }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/digest/known", test_known);
  g_test_add_func ("/digest/random-events", test_random_events);
  g_test_add_func ("/digest/ranges", test_ranges);
  return g_test_run ();
}

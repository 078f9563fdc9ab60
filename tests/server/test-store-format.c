/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The server formats replay, pages and live frames with its own writer
 * (od_store_append_event, no printf, a one-piece path when no string needs
 * escaping).  It must give the protocol's bytes exactly: random events,
 * many of them, compared with od_event_append_json/_sse. */
#include "od-store.h"

#include <string.h>

#define ROUNDS 20000

static char *
random_text (GRand *rand,
             guint  max_len)
{
  /* Mostly plain (the one-piece path), sometimes what must be escaped:
   * quotes, backslashes, control characters, DEL, non-ASCII UTF-8. */
  static const char *const pieces[] = {
    "a", "Z", "0", "-", ":", ".", " ", "/", "~", "{", "}",
    "\"", "\\", "\n", "\t", "\r", "\b", "\f", "\x01", "\x1f", "\x7f",
    "ü", "€", "😀", "\xe2\x80\xa8",
  };
  guint plain = g_rand_int_range (rand, 0, 4) != 0;
  guint len = g_rand_int_range (rand, 0, max_len + 1);
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < len; i++)
    {
      guint n = plain ? 11 : G_N_ELEMENTS (pieces);

      g_string_append (out, pieces[g_rand_int_range (rand, 0, n)]);
    }
  return g_string_free (out, FALSE);
}

static gint64
random_int (GRand *rand)
{
  switch (g_rand_int_range (rand, 0, 5))
    {
    case 0:
      return 0;
    case 1:
      return G_MAXINT64;
    case 2:
      return G_MININT64;
    case 3:
      return -(gint64) g_rand_int (rand);
    default:
      return ((gint64) g_rand_int (rand) << 31) ^ g_rand_int (rand);
    }
}

static void
test_random_events (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GString) expected = g_string_new (NULL);
  g_autoptr(GString) got = g_string_new (NULL);
  guint one_piece = 0;

  for (guint round = 0; round < ROUNDS; round++)
    {
      OdEvent *event = od_event_new ();
      g_autofree char *order_id = random_text (rand, 12);
      gboolean frame = g_rand_boolean (rand);

      event->position = random_int (rand);
      event->prev = random_int (rand);
      event->version = random_int (rand);
      g_strlcpy (event->order_id, order_id, sizeof event->order_id);
      event->type = random_text (rand, 20);
      event->recorded_at = random_text (rand, 24);
      event->actor = random_text (rand, 16);
      /* The data is stored JSON text, written as it is on both paths. */
      event->data = g_rand_int_range (rand, 0, 8) == 0 ? NULL
                    : g_strdup_printf ("{\"n\":%d}", g_rand_int_range (rand, 0, 1000));

      /* Appended after text already in the buffer, as replay does. */
      g_string_assign (expected, "prefix");
      g_string_assign (got, "prefix");
      if (frame)
        od_event_append_sse (expected, event);
      else
        od_event_append_json (expected, event);
      od_store_append_event (got, event, frame);
      if (strchr (got->str, '\\') == NULL && g_utf8_validate (got->str, -1, NULL)
          && g_str_is_ascii (got->str))
        one_piece++;

      if (!g_str_equal (expected->str, got->str) || expected->len != got->len)
        g_error ("round %u: the server's bytes differ from the protocol's:\n%s\n%s", round,
                 expected->str, got->str);
      od_event_free (event);
    }
  g_test_message ("%u events, %u of them plain ASCII", ROUNDS, one_piece);
  /* Both paths were taken many times. */
  g_assert_cmpuint (one_piece, >, ROUNDS / 4);
  g_assert_cmpuint (one_piece, <, ROUNDS * 9 / 10);
}

static void
test_append_int (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GString) got = g_string_new (NULL);

  for (guint round = 0; round < ROUNDS; round++)
    {
      gint64 value = random_int (rand);
      g_autofree char *expected = g_strdup_printf ("%" G_GINT64_FORMAT, value);

      g_string_truncate (got, 0);
      od_store_append_int (got, value);
      g_assert_cmpstr (got->str, ==, expected);
    }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/store-format/random-events", test_random_events);
  g_test_add_func ("/store-format/append-int", test_append_int);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The server formats replay, pages and live frames with its own writer
 * (od_store_append_event, no printf, a one-piece path when no string needs
 * escaping).  It must give the protocol's bytes exactly: random events,
 * many of them, compared with od_event_append_json/_sse.  Replay and
 * pages read the SQLite store through od_store_visit_events (columns
 * borrowed in place, the file mapped): the same rows must come out as
 * od_store_read_events builds them. */
#include "od-store.h"

#include <glib/gstdio.h>
#include <sqlite3.h>
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
  guint kind = g_rand_int_range (rand, 0, 16);
  guint plain = kind >= 3;
  guint len = g_rand_int_range (rand, 0, max_len + 1);
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < len; i++)
    {
      guint n = plain ? 11 : G_N_ELEMENTS (pieces);

      g_string_append (out, pieces[g_rand_int_range (rand, 0, n)]);
    }
  /* Plain but for one piece anywhere: the server checks eight bytes at a
   * time, so one such piece in any byte of any block must be seen. */
  if (kind == 3 && len > 0)
    g_string_insert (out, g_rand_int_range (rand, 0, out->len + 1),
                     pieces[g_rand_int_range (rand, 11, G_N_ELEMENTS (pieces))]);
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

typedef struct
{
  GString *text;
  guint    n;
} VisitText;

static gboolean
visit_append (const OdEvent *event,
              gpointer       user_data)
{
  VisitText *visit = user_data;

  od_store_append_event (visit->text, event, visit->n++ % 2 == 0);
  return TRUE;
}

/* Random rows (ids of every length up to past the id's room, strings
 * that need escaping) written straight into a store's table, then read
 * back at random offsets and limits both ways. */
static void
test_sqlite_visit (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-store-format-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "store.sqlite", NULL);
  g_autofree char *uri = g_strconcat ("sqlite:", path, NULL);
  g_autoptr(OdStore) store = NULL;
  sqlite3 *db = NULL;
  sqlite3_stmt *insert = NULL;
  const guint n_rows = 3000;

  g_assert_no_error (error);
  store = od_store_open (uri, &error);
  g_assert_no_error (error);
  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_exec (db, "BEGIN", NULL, NULL, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (db, "INSERT INTO events (position, prev, order_id, version, "
                                       "type, recorded_at, actor, data) "
                                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", -1, &insert,
                                       NULL), ==, SQLITE_OK);
  for (guint i = 1; i <= n_rows; i++)
    {
      g_autofree char *order_id = random_text (rand, 50);
      g_autofree char *type = random_text (rand, 20);
      g_autofree char *recorded_at = random_text (rand, 24);
      g_autofree char *actor = random_text (rand, 16);
      g_autofree char *data = g_strdup_printf ("{\"n\":%d}", g_rand_int_range (rand, 0, 1000));

      sqlite3_bind_int64 (insert, 1, i);
      sqlite3_bind_int64 (insert, 2, i - 1);
      sqlite3_bind_text (insert, 3, order_id, -1, SQLITE_STATIC);
      /* Unique with the row (UNIQUE (order_id, version)), else random. */
      sqlite3_bind_int64 (insert, 4, (gint64) (((guint64) g_rand_int (rand) << 32) | i));
      sqlite3_bind_text (insert, 5, type, -1, SQLITE_STATIC);
      sqlite3_bind_text (insert, 6, recorded_at, -1, SQLITE_STATIC);
      sqlite3_bind_text (insert, 7, actor, -1, SQLITE_STATIC);
      sqlite3_bind_text (insert, 8, data, -1, SQLITE_STATIC);
      g_assert_cmpint (sqlite3_step (insert), ==, SQLITE_DONE);
      sqlite3_reset (insert);
    }
  sqlite3_finalize (insert);
  g_assert_cmpint (sqlite3_exec (db, "COMMIT", NULL, NULL, NULL), ==, SQLITE_OK);
  sqlite3_close (db);

  for (guint round = 0; round < 40; round++)
    {
      gint64 after = round == 0 ? 0 : g_rand_int_range (rand, 0, n_rows + 2);
      guint limit = round == 0 ? n_rows : (guint) g_rand_int_range (rand, 1, 1200);
      g_autoptr(GPtrArray) events = NULL;
      g_autoptr(GString) expected = g_string_new (NULL);
      VisitText visit = { g_string_new (NULL), 0 };
      gint64 head_read = -1, head_visited = -1;

      events = od_store_read_events (store, after, limit, &head_read, &error);
      g_assert_no_error (error);
      for (guint i = 0; i < events->len; i++)
        {
          if (i % 2 == 0)
            od_event_append_sse (expected, g_ptr_array_index (events, i));
          else
            od_event_append_json (expected, g_ptr_array_index (events, i));
        }
      g_assert_true (od_store_visit_events (store, after, limit, &head_visited, visit_append,
                                            &visit, &error));
      g_assert_no_error (error);
      g_assert_cmpint (head_read, ==, n_rows);
      g_assert_cmpint (head_visited, ==, n_rows);
      g_assert_cmpuint (visit.n, ==, events->len);
      g_assert_cmpuint (events->len, ==, MIN ((gint64) limit, MAX ((gint64) n_rows - after, 0)));
      if (!g_str_equal (expected->str, visit.text->str))
        g_error ("after %" G_GINT64_FORMAT " limit %u: visited rows differ from read ones",
                 after, limit);
      g_string_free (visit.text, TRUE);
    }

  g_clear_object (&store);
  {
    const char *const suffixes[] = { "", "-wal", "-shm" };

    for (guint i = 0; i < G_N_ELEMENTS (suffixes); i++)
      {
        g_autofree char *file = g_strconcat (path, suffixes[i], NULL);

        g_remove (file);
      }
  }
  g_rmdir (dir);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/store-format/random-events", test_random_events);
  g_test_add_func ("/store-format/append-int", test_append_int);
  g_test_add_func ("/store-format/sqlite-visit", test_sqlite_visit);
  return g_test_run ();
}

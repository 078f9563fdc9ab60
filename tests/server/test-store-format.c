/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The server formats replay, pages and live frames with its own writer
 * (od_store_append_event, no printf, a one-piece path when no string needs
 * escaping).  It must give the protocol's bytes exactly: random events,
 * many of them, compared with od_event_append_json/_sse.  Replay and
 * pages read the SQLite store through od_store_visit_events (columns
 * borrowed in place, the file mapped): the same rows must come out as
 * od_store_read_events builds them.  Replay takes the frames in runs
 * (od_store_visit_frames): from the SQLite store's frame blocks where it
 * has them, else from the rows; the bytes must be the same either way,
 * whatever the batches, restarts and failed commits that wrote them. */
#include "od-store.h"
#include "od-test-store.h"
#include "od-store-sqlite.h"
#include "od-test-process.h" /* od_test_process_rmdir () */
#include "od-uuid.h"

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


typedef struct
{
  GString *text;
  gint64   last;   /* the last position visited, checked against runs */
  guint    n;
  guint    runs;
  guint    stop_after; /* runs; 0: never stops */
} FramesText;

static gboolean
frames_append (gint64      first,
               gint64      last,
               guint       n,
               const char *frames,
               gsize       len,
               gpointer    user_data)
{
  FramesText *visit = user_data;

  g_assert_cmpint (first, >, visit->last);
  g_assert_cmpint (last, >=, first);
  g_assert_cmpuint (n, >=, 1);
  /* A run is consecutive where the store is (the blocks and this test's
   * stores have no gaps). */
  g_assert_cmpint (last - first + 1, ==, n);
  g_assert_true (len >= 4 && memcmp (frames, "id: ", 4) == 0);
  g_string_append_len (visit->text, frames, len);
  visit->last = last;
  visit->n += n;
  visit->runs++;
  return visit->stop_after == 0 || visit->runs < visit->stop_after;
}

typedef struct
{
  GString *text;
  gint64   upto;
  guint    n;
} SseText;

static gboolean
sse_append (const OdEvent *event,
            gpointer       user_data)
{
  SseText *visit = user_data;

  if (event->position > visit->upto)
    return FALSE;
  od_event_append_sse (visit->text, event);
  visit->n++;
  return TRUE;
}

/* Reads after..upto (at most limit) as runs of frames and compares them
 * with the protocol's frames of the rows. */
static void
check_frames (OdStore *store,
              gint64   after,
              gint64   upto,
              guint    limit)
{
  g_autoptr(GError) error = NULL;
  SseText expected = { g_string_new (NULL), upto, 0 };
  FramesText got = { g_string_new (NULL), after, 0, 0, 0 };
  gint64 head_expected = -1, head_got = -1;

  g_assert_true (od_store_visit_events (store, after, limit, &head_expected, sse_append,
                                        &expected, &error));
  g_assert_no_error (error);
  g_assert_true (od_store_visit_frames (store, after, upto, limit, &head_got, frames_append,
                                        &got, &error));
  g_assert_no_error (error);
  g_assert_cmpint (head_got, ==, head_expected);
  g_assert_cmpuint (got.n, ==, expected.n);
  if (!g_str_equal (expected.text->str, got.text->str))
    g_error ("after %" G_GINT64_FORMAT " upto %" G_GINT64_FORMAT " limit %u: the frames "
             "differ from the rows' (%" G_GSIZE_FORMAT " and %" G_GSIZE_FORMAT " bytes)",
             after, upto, limit, got.text->len, expected.text->len);
  g_string_free (expected.text, TRUE);
  g_string_free (got.text, TRUE);
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
      /* No frame blocks here: every frame is made from its row. */
      check_frames (store, after,
                    round % 3 == 0 ? G_MAXINT64 : after + g_rand_int_range (rand, 0, 900), limit);
    }

  g_clear_object (&store);
  od_test_process_rmdir (dir);
}

static GPtrArray *warnings;

static GLogWriterOutput
count_warnings (GLogLevelFlags   level,
                const GLogField *fields,
                gsize            n_fields,
                gpointer         data)
{
  if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
    for (gsize i = 0; i < n_fields; i++)
      if (g_strcmp0 (fields[i].key, "MESSAGE") == 0)
        g_ptr_array_add (warnings, g_strdup (fields[i].value));
  return g_log_writer_default (level, fields, n_fields, data);
}

/* A command on a random order of ORDERS (or a new one), with texts that
 * need escaping; some are refused (no event), as in real use. */
static OdCommand *
random_command (GRand     *rand,
                GPtrArray *orders,
                gboolean   create)
{
  OdCommand *command;

  if (create || orders->len == 0 || g_rand_int_range (rand, 0, 4) == 0)
    {
      char *order_id = od_uuid_v7_new ();

      g_ptr_array_add (orders, order_id);
      command = od_command_new (OD_COMMAND_CREATE_ORDER, order_id);
      command->customer_name = random_text (rand, 30);
      command->customer_email = random_text (rand, 20);
      command->currency = g_strdup ("EUR");
      return command;
    }
  command = od_command_new (g_rand_boolean (rand) ? OD_COMMAND_ADD_ITEM : OD_COMMAND_ADD_ORDER_NOTE,
                            g_ptr_array_index (orders, g_rand_int_range (rand, 0, orders->len)));
  if (command->type == OD_COMMAND_ADD_ITEM)
    {
      command->sku = g_strdup_printf ("SKU-%d", g_rand_int_range (rand, 0, 6));
      command->name = random_text (rand, 24);
      command->quantity = g_rand_int_range (rand, 1, 5);
      command->unit_price_cents = g_rand_int_range (rand, 0, 100000);
    }
  else
    command->text = random_text (rand, 60);
  return command;
}

static gboolean
execute_random (OdStore    *store,
                GRand      *rand,
                GPtrArray  *orders,
                guint       n,
                gboolean    create,
                GError    **error)
{
  g_autoptr(GPtrArray) jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) od_job_free);

  for (guint i = 0; i < n; i++)
    g_ptr_array_add (jobs, od_job_new (random_command (rand, orders, create), "test \"actor\"",
                                       NULL, NULL, 0));
  return od_store_execute (store, (OdJob **) jobs->pdata, jobs->len, error);
}

static gint64
query_int (const char *path,
           const char *sql)
{
  sqlite3 *db = NULL;
  sqlite3_stmt *stmt = NULL;
  gint64 value;

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_step (stmt), ==, SQLITE_ROW);
  value = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  sqlite3_close (db);
  return value;
}

/* Random batches through the store's writer, restarts, and commits made
 * to fail (on an event, and on a block) by a trigger; every whole block
 * must be stored, and reads at random bounds, above all around block
 * edges, must give the rows' frames.  A damaged block is noticed and
 * read from the rows. */
static void
test_frame_blocks (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-store-blocks-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "store.sqlite", NULL);
  g_autofree char *uri = g_strconcat ("sqlite:", path, NULL);
  g_autoptr(GPtrArray) orders = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(OdStore) store = NULL;
  guint restarts = 0, event_failures = 0, block_failures = 0;
  gint64 head = 0, blocks;

  g_assert_no_error (error);
  store = od_store_open (uri, &error);
  g_assert_no_error (error);
  /* A failure on the first block's commit, for sure. */
  g_assert_true (execute_random (store, rand, orders, 10, TRUE, &error));
  g_assert_no_error (error);
  od_test_store_sql (path, "CREATE TRIGGER od_test_fail BEFORE INSERT ON frame_blocks "
                           "BEGIN SELECT RAISE(ABORT, 'injected'); END");
  g_assert_false (execute_random (store, rand, orders, 250, TRUE, &error));
  g_clear_error (&error);
  od_test_store_sql (path, "DROP TRIGGER od_test_fail");
  block_failures++;
  head = od_test_store_head (store);
  g_assert_cmpint (head, ==, 10);
  /* And one on an event inside block 1 (257–512): the frames of the
   * batch that failed were added to the block being filled, which is
   * filled again from the rows. */
  while ((head = od_test_store_head (store)) < 256 + 5)
    g_assert_true (execute_random (store, rand, orders, 50, TRUE, NULL));
  {
    g_autofree char *trigger = g_strdup_printf ("CREATE TRIGGER od_test_fail BEFORE INSERT ON "
                                                "events WHEN NEW.position = %" G_GINT64_FORMAT " "
                                                "BEGIN SELECT RAISE(ABORT, 'injected'); END",
                                                head + 3);

    od_test_store_sql (path, trigger);
    g_assert_false (execute_random (store, rand, orders, 20, TRUE, &error));
    g_clear_error (&error);
    od_test_store_sql (path, "DROP TRIGGER od_test_fail");
    event_failures++;
  }
  while ((head = od_test_store_head (store)) < 2 * 256)
    g_assert_true (execute_random (store, rand, orders, 7, TRUE, NULL));
  g_assert_cmpint (query_int (path, "SELECT count(*) FROM frame_blocks WHERE block = 1"), ==, 1);
  check_frames (store, 0, G_MAXINT64, 1000);
  while (head < 10 * 256 + 77)
    {
      guint r = g_rand_int_range (rand, 0, 100);

      if (r < 3)
        {
          g_clear_object (&store);
          store = od_store_open (uri, &error);
          g_assert_no_error (error);
          restarts++;
        }
      else if (r < 6)
        {
          /* Fails on one of the batch's first events (every job makes an
           * event), or on the block the batch completes. */
          gboolean on_block = r == 5;
          g_autofree char *trigger = on_block
            ? g_strdup ("CREATE TRIGGER od_test_fail BEFORE INSERT ON frame_blocks "
                        "BEGIN SELECT RAISE(ABORT, 'injected'); END")
            : g_strdup_printf ("CREATE TRIGGER od_test_fail BEFORE INSERT ON events "
                               "WHEN NEW.position = %" G_GINT64_FORMAT " "
                               "BEGIN SELECT RAISE(ABORT, 'injected'); END",
                               head + g_rand_int_range (rand, 1, 5));
          guint n = on_block ? (guint) (256 - head % 256 + g_rand_int_range (rand, 0, 8))
                             : (guint) g_rand_int_range (rand, 4, 40);
          gboolean ok;

          od_test_store_sql (path, trigger);
          ok = execute_random (store, rand, orders, n, TRUE, &error);
          od_test_store_sql (path, "DROP TRIGGER od_test_fail");
          g_assert_false (ok);
          g_assert_nonnull (error);
          g_clear_error (&error);
          g_assert_cmpint (od_test_store_head (store), ==, head);
          if (on_block)
            block_failures++;
          else
            event_failures++;
        }
      else
        {
          g_assert_true (execute_random (store, rand, orders, g_rand_int_range (rand, 1, 60),
                                         FALSE, &error));
          g_assert_no_error (error);
        }
      head = od_test_store_head (store);
    }
  blocks = query_int (path, "SELECT count(*) FROM frame_blocks");
  g_test_message ("%" G_GINT64_FORMAT " events, %" G_GINT64_FORMAT " blocks; %u restarts, "
                  "%u failed commits on an event, %u on a block", head, blocks, restarts,
                  event_failures, block_failures);
  /* Neither restarts nor failed commits leave a block to the rows. */
  g_assert_cmpint (blocks, ==, head / 256);

  check_frames (store, 0, G_MAXINT64, (guint) head + 10);
  for (guint round = 0; round < 300; round++)
    {
      gint64 edge = g_rand_int_range (rand, 0, head / 256 + 2) * 256;
      gint64 after = round % 2 ? edge + g_rand_int_range (rand, -2, 3)
                               : g_rand_int_range (rand, 0, head + 2);
      gint64 upto = round % 3 == 0 ? G_MAXINT64
                    : round % 3 == 1 ? g_rand_int_range (rand, 0, head / 256 + 2) * 256
                                       + g_rand_int_range (rand, -2, 3)
                                     : after + g_rand_int_range (rand, 0, 700);

      check_frames (store, MAX (after, 0), upto, g_rand_int_range (rand, 1, 1200));
    }

  /* A block that lost its last byte: its frames come from the rows. */
  {
    gint64 damaged = query_int (path, "SELECT min(block) FROM frame_blocks");
    g_autofree char *pattern = g_strdup_printf ("frame block %" G_GINT64_FORMAT
                                                " (*) is damaged*", damaged);
    g_autofree char *update = g_strdup_printf ("UPDATE frame_blocks SET frames = "
                                               "substr(frames, 1, length(frames) - 1) "
                                               "WHERE block = %" G_GINT64_FORMAT, damaged);

    GLogLevelFlags fatal;

    od_test_store_sql (path, update);
    /* Counted by count_warnings () instead of aborting the test. */
    fatal = g_log_set_always_fatal (G_LOG_FATAL_MASK);
    check_frames (store, damaged * 256 + 3, G_MAXINT64, 400);
    /* Logged once, not at every read. */
    check_frames (store, damaged * 256, damaged * 256 + 300, 400);
    g_log_set_always_fatal (fatal);
    g_assert_cmpuint (warnings->len, ==, 1);
    g_assert_true (g_pattern_match_simple (pattern, g_ptr_array_index (warnings, 0)));
    g_ptr_array_set_size (warnings, 0);
  }

  g_clear_object (&store);
  od_test_process_rmdir (dir);
}

/* A store of schema 1 (no frame blocks) is migrated in place: its
 * events are read from their rows until the blocks of its whole ones are
 * built, the writer stores the one it was in the middle of. */
static void
test_frame_blocks_migration (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-store-v1-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "store.sqlite", NULL);
  g_autofree char *uri = g_strconcat ("sqlite:", path, NULL);
  g_autoptr(GPtrArray) orders = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(OdStore) store = NULL;
  GString *sql = g_string_new ("BEGIN;"
                               "CREATE TABLE events (position INTEGER PRIMARY KEY,"
                               "  prev INTEGER NOT NULL, order_id TEXT NOT NULL,"
                               "  version INTEGER NOT NULL, type TEXT NOT NULL,"
                               "  recorded_at TEXT NOT NULL, actor TEXT NOT NULL,"
                               "  data TEXT NOT NULL, UNIQUE (order_id, version));"
                               "CREATE TABLE idempotency (actor TEXT NOT NULL, key TEXT NOT NULL,"
                               "  body_sha256 BLOB NOT NULL, status INTEGER NOT NULL,"
                               "  response TEXT NOT NULL, created_at INTEGER NOT NULL,"
                               "  PRIMARY KEY (actor, key)) WITHOUT ROWID;"
                               "CREATE INDEX idempotency_created ON idempotency (created_at);");

  g_assert_no_error (error);
  /* 300 events of a store written before schema 2: 300 orders created. */
  for (guint i = 1; i <= 300; i++)
    g_string_append_printf (sql, "INSERT INTO events VALUES (%u, %u,"
                            " '0193a1c2-7f00-7abc-8def-%012u',"
                            " 1, 'OrderCreated', '2026-01-01T00:00:00.000Z', 'old',"
                            " '{\"customer_name\":\"Old \\u00fc %u\",\"customer_email\":"
                            "\"o%u@example.com\",\"currency\":\"EUR\"}');",
                            i, i - 1, i, i, i);
  g_string_append (sql, "PRAGMA user_version = 1; COMMIT;");
  od_test_store_sql (path, sql->str);
  g_string_free (sql, TRUE);

  store = od_store_open (uri, &error);
  g_assert_no_error (error);
  g_assert_cmpint (query_int (path, "PRAGMA user_version"), ==, 2);
  g_assert_cmpint (query_int (path, "SELECT count(*) FROM frame_blocks"), ==, 0);
  check_frames (store, 0, G_MAXINT64, 1000);

  while (od_test_store_head (store) < 800)
    {
      g_assert_true (execute_random (store, rand, orders, 50, TRUE, &error));
      g_assert_no_error (error);
    }
  /* Block 0 (1–256) is the old server's alone: built from its rows
   * since the open.  Block 1 (257–512) was begun by it and finished by
   * this one, block 2 (513–768) is this one's. */
  od_store_sqlite_wait_frame_blocks (OD_STORE_SQLITE (store));
  g_assert_cmpint (query_int (path, "SELECT count(*) FROM frame_blocks WHERE block IN (0, 1, 2)"),
                   ==, 3);
  check_frames (store, 0, G_MAXINT64, 2000);
  check_frames (store, 255, 770, 2000);
  check_frames (store, 600, G_MAXINT64, 100);

  g_clear_object (&store);
  od_test_process_rmdir (dir);
}

/* Frame blocks turned off (--frame-blocks=false): none is written, and
 * replay is the same; on again after a restart, the writer stores blocks
 * from the one the store is in, and the older ones are built. */
static void
test_frame_blocks_off (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-store-off-XXXXXX", &error);
  g_autofree char *path = g_build_filename (dir, "store.sqlite", NULL);
  g_autofree char *uri = g_strconcat ("sqlite:", path, NULL);
  g_autoptr(GPtrArray) orders = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(OdStore) store = NULL;

  g_assert_no_error (error);
  store = od_store_open (uri, &error);
  g_assert_no_error (error);
  od_store_sqlite_set_frame_blocks (OD_STORE_SQLITE (store), FALSE);
  while (od_test_store_head (store) < 600)
    g_assert_true (execute_random (store, rand, orders, 40, TRUE, NULL));
  g_assert_cmpint (query_int (path, "SELECT count(*) FROM frame_blocks"), ==, 0);
  check_frames (store, 0, G_MAXINT64, 2000);

  g_clear_object (&store);
  store = od_store_open (uri, &error);
  g_assert_no_error (error);
  while (od_test_store_head (store) < 1100)
    g_assert_true (execute_random (store, rand, orders, 40, TRUE, NULL));
  /* Blocks 2 (513–768, begun while off) and 3 (769–1024) by the writer;
   * 0 and 1, written while off, built from their rows since the open. */
  od_store_sqlite_wait_frame_blocks (OD_STORE_SQLITE (store));
  g_assert_cmpint (query_int (path, "SELECT count(*) FROM frame_blocks"), ==, 4);
  check_frames (store, 0, G_MAXINT64, 2000);
  check_frames (store, 500, 1030, 2000);

  g_clear_object (&store);
  od_test_process_rmdir (dir);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  warnings = g_ptr_array_new_with_free_func (g_free);
  g_log_set_writer_func (count_warnings, NULL, NULL);
  g_test_add_func ("/store-format/random-events", test_random_events);
  g_test_add_func ("/store-format/append-int", test_append_int);
  g_test_add_func ("/store-format/sqlite-visit", test_sqlite_visit);
  g_test_add_func ("/store-format/frame-blocks", test_frame_blocks);
  g_test_add_func ("/store-format/frame-blocks-migration", test_frame_blocks_migration);
  g_test_add_func ("/store-format/frame-blocks-off", test_frame_blocks_off);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The store's WAL VFS (src/server/od-wal-vfs.c) keeps a commit's frames
 * and writes them at once.  These tests hold it to what SQLite's own
 * unix VFS gives, on random work:
 *
 * - same-as-unix: random transactions (small and large rows, rows larger
 *   than one write, a page cache so small that frames are written before
 *   the commit and read back, rollbacks after such writes, checkpoints
 *   of every kind) under synchronous FULL, NORMAL and OFF and three page
 *   sizes.  After every commit a second connection, on the plain unix
 *   VFS, reads the table and must find exactly the rows committed.
 * - kill: a child process commits rows and reports each commit once
 *   sqlite3_step () returned; the parent kills it at a random moment and
 *   opens the file with the plain VFS: every reported row is there,
 *   whole, and the database passes integrity_check.  Also under
 *   synchronous=NORMAL, where no sync follows a commit: a process that
 *   dies loses nothing of what the kernel was given, so here too nothing
 *   reported may be missing. */
#include "od-wal-vfs.h"
#include "od-test-process.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* A row's content from (id, seed, length), so a reader can tell a whole
 * row from a torn or stale one. */
static void
fill (guint8  *buf,
      gsize    len,
      guint32  seed)
{
  guint32 x = seed * 2654435761u + 1;

  for (gsize i = 0; i < len; i++)
    {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      buf[i] = x & 0xff;
    }
}

static void
exec_ok (sqlite3    *db,
         const char *sql)
{
  char *msg = NULL;

  if (sqlite3_exec (db, sql, NULL, NULL, &msg) != SQLITE_OK)
    g_error ("%s: %s", sql, msg);
}

static sqlite3 *
open_db (const char *path,
         const char *vfs,
         int         page_size,
         const char *sync,
         int         cache_pages)
{
  g_autofree char *pragmas = NULL;
  sqlite3 *db = NULL;

  if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) != SQLITE_OK)
    g_error ("open %s: %s", path, db ? sqlite3_errmsg (db) : "no memory");
  sqlite3_busy_timeout (db, 10000);
  pragmas = g_strdup_printf ("PRAGMA page_size=%d; PRAGMA journal_mode=WAL;"
                             " PRAGMA synchronous=%s; PRAGMA cache_size=%d;"
                             " CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY,"
                             " seed INTEGER NOT NULL, v BLOB NOT NULL);",
                             page_size, sync, cache_pages);
  exec_ok (db, pragmas);
  return db;
}

typedef struct
{
  guint32 seed;
  guint32 len;
} Row;

static void
assert_integrity (sqlite3 *db)
{
  sqlite3_stmt *st = NULL;

  g_assert_cmpint (sqlite3_prepare_v2 (db, "PRAGMA integrity_check", -1, &st, NULL), ==,
                   SQLITE_OK);
  g_assert_cmpint (sqlite3_step (st), ==, SQLITE_ROW);
  g_assert_cmpstr ((const char *) sqlite3_column_text (st, 0), ==, "ok");
  sqlite3_finalize (st);
}

/* Every row of the table is one of `model`, whole, and every row of
 * `model` is there. */
static void
check_rows (sqlite3    *db,
            GHashTable *model,
            const char *when)
{
  sqlite3_stmt *st = NULL;
  guint n = 0;
  int rc;

  g_assert_cmpint (sqlite3_prepare_v2 (db, "SELECT id, seed, v FROM t", -1, &st, NULL), ==,
                   SQLITE_OK);
  while ((rc = sqlite3_step (st)) == SQLITE_ROW)
    {
      gint64 id = sqlite3_column_int64 (st, 0);
      Row *want = g_hash_table_lookup (model, GINT_TO_POINTER ((int) id));
      const guint8 *v = sqlite3_column_blob (st, 2);
      int len = sqlite3_column_bytes (st, 2);
      g_autofree guint8 *expect = NULL;

      if (want == NULL)
        g_error ("%s: row %" G_GINT64_FORMAT " should not be there", when, id);
      if ((guint32) sqlite3_column_int64 (st, 1) != want->seed || (guint32) len != want->len)
        g_error ("%s: row %" G_GINT64_FORMAT " is an old version", when, id);
      expect = g_malloc (MAX (len, 1));
      fill (expect, len, want->seed);
      if (len > 0 && memcmp (v, expect, len) != 0)
        g_error ("%s: row %" G_GINT64_FORMAT " is torn", when, id);
      n++;
    }
  if (rc != SQLITE_DONE)
    g_error ("%s: read: %s", when, sqlite3_errmsg (db));
  sqlite3_finalize (st);
  if (n != g_hash_table_size (model))
    g_error ("%s: %u rows, %u committed", when, n, g_hash_table_size (model));
}

static guint32
random_len (void)
{
  switch (g_test_rand_int_range (0, 40))
    {
    case 0:
      return g_test_rand_int_range (100000, 400000); /* more than one write */
    case 1:
    case 2:
    case 3:
    case 4:
      return g_test_rand_int_range (3000, 20000);
    default:
      return g_test_rand_int_range (0, 600);
    }
}

static void
random_work (const char *sync,
             int         page_size,
             int         cache_pages)
{
  g_autofree char *dir = g_dir_make_tmp ("od-wal-vfs-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "t.sqlite", NULL);
  g_autoptr(GHashTable) model = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                                       g_free);
  sqlite3 *writer = open_db (path, od_wal_vfs_register (), page_size, sync, cache_pages);
  sqlite3 *reader = open_db (path, "unix", page_size, sync, 2000);
  sqlite3_stmt *put = NULL, *del = NULL;
  g_autofree guint8 *buf = g_malloc (400000);
  guint commits = 0, rollbacks = 0;

  g_assert_cmpint (sqlite3_prepare_v2 (writer, "INSERT OR REPLACE INTO t (id, seed, v)"
                                       " VALUES (?1, ?2, ?3)", -1, &put, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_prepare_v2 (writer, "DELETE FROM t WHERE id = ?1", -1, &del, NULL),
                   ==, SQLITE_OK);
  for (guint tx = 0; tx < 100; tx++)
    {
      g_autoptr(GHashTable) changes = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                                             g_free);
      guint n = g_test_rand_int_range (1, 40);
      gboolean rollback = g_test_rand_int_range (0, 8) == 0;
      g_autofree char *when = NULL;

      exec_ok (writer, "BEGIN IMMEDIATE");
      for (guint i = 0; i < n; i++)
        {
          int id = g_test_rand_int_range (1, 200);

          if (g_test_rand_int_range (0, 5) == 0)
            {
              sqlite3_bind_int (del, 1, id);
              g_assert_cmpint (sqlite3_step (del), ==, SQLITE_DONE);
              sqlite3_reset (del);
              g_hash_table_insert (changes, GINT_TO_POINTER (id), NULL);
            }
          else
            {
              Row *row = g_new (Row, 1);

              row->seed = g_test_rand_int ();
              row->len = random_len ();
              fill (buf, row->len, row->seed);
              sqlite3_bind_int (put, 1, id);
              sqlite3_bind_int64 (put, 2, row->seed);
              sqlite3_bind_blob (put, 3, buf, row->len, SQLITE_STATIC);
              g_assert_cmpint (sqlite3_step (put), ==, SQLITE_DONE);
              sqlite3_reset (put);
              g_hash_table_insert (changes, GINT_TO_POINTER (id), row);
            }
        }
      /* The writer reads its own rows back, from frames it may have
       * written already. */
      {
        g_autoptr(GHashTable) mine = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                                            g_free);
        GHashTableIter iter;
        gpointer key, value;

        g_hash_table_iter_init (&iter, model);
        while (g_hash_table_iter_next (&iter, &key, &value))
          if (!g_hash_table_contains (changes, key))
            g_hash_table_insert (mine, key, g_memdup2 (value, sizeof (Row)));
        g_hash_table_iter_init (&iter, changes);
        while (g_hash_table_iter_next (&iter, &key, &value))
          if (value != NULL)
            g_hash_table_insert (mine, key, g_memdup2 (value, sizeof (Row)));
        check_rows (writer, mine, "inside the transaction");
      }
      if (rollback)
        {
          exec_ok (writer, "ROLLBACK");
          rollbacks++;
        }
      else
        {
          GHashTableIter iter;
          gpointer key, value;

          exec_ok (writer, "COMMIT");
          commits++;
          g_hash_table_iter_init (&iter, changes);
          while (g_hash_table_iter_next (&iter, &key, &value))
            {
              g_hash_table_iter_steal (&iter);
              if (value == NULL)
                g_hash_table_remove (model, key);
              else
                g_hash_table_insert (model, key, value);
            }
        }
      when = g_strdup_printf ("synchronous=%s page_size=%d cache=%d, transaction %u", sync,
                              page_size, cache_pages, tx);
      check_rows (reader, model, when);
      switch (g_test_rand_int_range (0, 12))
        {
        case 0:
          exec_ok (writer, "PRAGMA wal_checkpoint(PASSIVE)");
          break;
        case 1:
          exec_ok (writer, "PRAGMA wal_checkpoint(RESTART)");
          break;
        case 2:
          exec_ok (writer, "PRAGMA wal_checkpoint(TRUNCATE)");
          break;
        default:
          break;
        }
    }
  g_test_message ("synchronous=%s page_size=%d cache=%d: %u commits, %u rollbacks, %u rows",
                  sync, page_size, cache_pages, commits, rollbacks, g_hash_table_size (model));
  sqlite3_finalize (put);
  sqlite3_finalize (del);
  g_assert_cmpint (sqlite3_close (writer), ==, SQLITE_OK);
  check_rows (reader, model, "after the writer closed");
  assert_integrity (reader);
  g_assert_cmpint (sqlite3_close (reader), ==, SQLITE_OK);
  od_test_process_rmdir (dir);
}

static void
test_same_as_unix (void)
{
  static const char *syncs[] = { "FULL", "NORMAL", "OFF" };
  static const int page_sizes[] = { 1024, 4096, 65536 };

  /* Every other run with a tiny page cache: frames are then written
   * before the commit (a cache spill) and read back from the log. */
  for (guint s = 0; s < G_N_ELEMENTS (syncs); s++)
    for (guint p = 0; p < G_N_ELEMENTS (page_sizes); p++)
      random_work (syncs[s], page_sizes[p], (s * G_N_ELEMENTS (page_sizes) + p) % 2 ? 8 : 2000);
}

/* The child: commits rows 1, 2, 3... and writes each id to `fd` once its
 * COMMIT returned. */
static void G_GNUC_NORETURN
commit_forever (const char *path,
                const char *sync,
                int         fd,
                int         first,
                guint32     seed)
{
  sqlite3 *db = open_db (path, od_wal_vfs_register (), 4096, sync, 2000);
  sqlite3_stmt *put = NULL;
  guint8 *buf = g_malloc (200000);
  guint32 x = seed;

  if (sqlite3_prepare_v2 (db, "INSERT INTO t (id, seed, v) VALUES (?1, ?2, ?3)", -1, &put, NULL)
      != SQLITE_OK)
    _exit (2);
  for (int id = first;; id++)
    {
      guint32 len;

      x = x * 1103515245u + 12345;
      len = (x >> 8) % 40 == 0 ? 20000 + (x >> 4) % 150000 : (x >> 8) % 700;
      fill (buf, len, (guint32) id);
      sqlite3_exec (db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
      sqlite3_bind_int (put, 1, id);
      sqlite3_bind_int64 (put, 2, id);
      sqlite3_bind_blob (put, 3, buf, len, SQLITE_STATIC);
      if (sqlite3_step (put) != SQLITE_DONE)
        _exit (3);
      sqlite3_reset (put);
      if (sqlite3_exec (db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        _exit (4);
      if (write (fd, &id, sizeof id) != sizeof id)
        _exit (5);
    }
}

static void
kill_rounds (const char *sync)
{
  g_autofree char *dir = g_dir_make_tmp ("od-wal-vfs-kill-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "t.sqlite", NULL);
  g_autoptr(GHashTable) model = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                                       g_free);
  int next = 1;

  for (guint round = 0; round < 6; round++)
    {
      int fds[2];
      pid_t pid;
      int status, id;
      gssize got;
      guint acked = 0;
      sqlite3 *db;
      g_autofree char *when = NULL;

      g_assert_cmpint (pipe (fds), ==, 0);
      pid = fork ();
      g_assert_cmpint (pid, >=, 0);
      if (pid == 0)
        {
          close (fds[0]);
          commit_forever (path, sync, fds[1], next, g_test_rand_int ());
        }
      close (fds[1]);
      g_usleep (g_test_rand_int_range (30, 250) * 1000);
      kill (pid, SIGKILL);
      g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
      g_assert_true (WIFSIGNALED (status));
      while ((got = read (fds[0], &id, sizeof id)) == sizeof id)
        {
          Row *row = g_new (Row, 1);

          g_assert_cmpint (id, ==, next);
          row->seed = id;
          row->len = 0;
          g_hash_table_insert (model, GINT_TO_POINTER (id), row);
          next++;
          acked++;
        }
      close (fds[0]);
      g_assert_cmpint (acked, >, 0);

      /* The plain VFS recovers the log; every reported row is there. */
      db = open_db (path, "unix", 4096, sync, 2000);
      {
        sqlite3_stmt *st = NULL;
        guint found = 0;

        g_assert_cmpint (sqlite3_prepare_v2 (db, "SELECT id, seed, v FROM t ORDER BY id", -1,
                                             &st, NULL), ==, SQLITE_OK);
        while (sqlite3_step (st) == SQLITE_ROW)
          {
            int row_id = sqlite3_column_int (st, 0);
            int len = sqlite3_column_bytes (st, 2);
            g_autofree guint8 *expect = g_malloc (MAX (len, 1));

            fill (expect, len, (guint32) row_id);
            g_assert_cmpint (sqlite3_column_int64 (st, 1), ==, row_id);
            g_assert_true (len == 0 || memcmp (sqlite3_column_blob (st, 2), expect, len) == 0);
            if (row_id >= next)
              {
                /* Committed, not reported before the kill: it is the
                 * next one, and the next child starts after it. */
                g_assert_cmpint (row_id, ==, next);
                next++;
                g_hash_table_insert (model, GINT_TO_POINTER (row_id), g_new0 (Row, 1));
              }
            found++;
          }
        sqlite3_finalize (st);
        when = g_strdup_printf ("synchronous=%s, kill %u: %u rows reported, %u in the file",
                                sync, round, g_hash_table_size (model), found);
        g_test_message ("%s", when);
        if (found != g_hash_table_size (model))
          g_error ("%s", when);
      }
      assert_integrity (db);
      g_assert_cmpint (sqlite3_close (db), ==, SQLITE_OK);
    }
  od_test_process_rmdir (dir);
}

static void
test_kill (void)
{
  kill_rounds ("FULL");
  kill_rounds ("NORMAL");
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/wal-vfs/same-as-unix", test_same_as_unix);
  g_test_add_func ("/wal-vfs/kill", test_kill);
  return g_test_run ();
}

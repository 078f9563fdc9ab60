/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>

#include "od-cache.h"
#include "od-uuid.h"
#include "od-test-cache.h"

#include <sys/wait.h>

static const char *first_names[] = {
  "Ada", "Grace", "Alan", "Linus", "Margaret", "Dennis", "Barbara", "Ken",
  "Frances", "Donald", "Radia", "Edsger", "Hedy", "John", "Katherine", "Tim",
  "Sophie", "Jürgen", "Zoë", "Mateo", "Aiko", "Chidi", "Ingrid", "Rahul",
};
static const char *last_names[] = {
  "Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Ritchie", "Liskov",
  "Thompson", "Allen", "Knuth", "Perlman", "Dijkstra", "Lamarr", "Backus",
  "Johnson", "Berners-Lee", "Wilson", "Schmidt", "Müller", "García", "Tanaka",
  "Okafor", "Larsen", "Sharma",
};
static const char *products[][2] = {
  { "MUG-BLUE", "Blue mug" }, { "MUG-RED", "Red mug" }, { "TEE-S", "T-shirt S" },
  { "TEE-M", "T-shirt M" }, { "TEE-L", "T-shirt L" }, { "CAP-01", "Cap" },
  { "BAG-TOTE", "Tote bag" }, { "PEN-3", "Pen set" }, { "NOTE-A5", "Notebook A5" },
  { "STICK-10", "Sticker pack" },
};
static const char *statuses[] = { "draft", "placed", "shipped", "delivered", "cancelled" };
static const char *currencies[] = { "EUR", "USD", "GBP", "CHF" };

static gboolean
exec (sqlite3     *db,
      const char  *sql,
      GError     **error)
{
  char *message = NULL;

  if (sqlite3_exec (db, sql, NULL, NULL, &message) != SQLITE_OK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s", sql, message);
      sqlite3_free (message);
      return FALSE;
    }
  return TRUE;
}

static char *
format_time (gint64 unix_msec)
{
  g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc (unix_msec / 1000);
  g_autofree char *base = g_date_time_format (t, "%Y-%m-%dT%H:%M:%S");

  return g_strdup_printf ("%s.%03dZ", base, (int) (unix_msec % 1000));
}

/* Reads the CREATE statements of the indexes and triggers of the given
 * tables so they can be dropped for the bulk load and made again after. */
static GPtrArray *
take_schema_objects (sqlite3  *db,
                     GError  **error)
{
  GPtrArray *sqls = g_ptr_array_new_with_free_func (g_free);
  GPtrArray *drops = g_ptr_array_new_with_free_func (g_free);
  sqlite3_stmt *stmt = NULL;

  sqlite3_prepare_v2 (db,
                      "SELECT type, name, sql FROM sqlite_master "
                      "WHERE type IN ('index', 'trigger') AND sql IS NOT NULL "
                      "AND tbl_name IN ('orders', 'order_items')",
                      -1, &stmt, NULL);
  while (sqlite3_step (stmt) == SQLITE_ROW)
    {
      g_ptr_array_add (sqls, g_strdup ((const char *) sqlite3_column_text (stmt, 2)));
      g_ptr_array_add (drops, g_strdup_printf ("DROP %s \"%s\"",
                                               (const char *) sqlite3_column_text (stmt, 0),
                                               (const char *) sqlite3_column_text (stmt, 1)));
    }
  sqlite3_finalize (stmt);
  for (guint i = 0; i < drops->len; i++)
    if (!exec (db, g_ptr_array_index (drops, i), error))
      {
        g_ptr_array_unref (drops);
        g_ptr_array_unref (sqls);
        return NULL;
      }
  g_ptr_array_unref (drops);
  return sqls;
}

gboolean
od_test_make_cache (const char  *path,
                    guint        n_orders,
                    GError     **error)
{
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(GPtrArray) objects = NULL;
  g_autoptr(GRand) rand = g_rand_new_with_seed (42);
  sqlite3 *db = NULL;
  sqlite3_stmt *order_stmt = NULL;
  sqlite3_stmt *item_stmt = NULL;
  sqlite3_stmt *state_stmt = NULL;
  gint64 now_ms = g_get_real_time () / 1000;
  gint64 span_ms = (gint64) 21 * 24 * 3600 * 1000;
  gboolean ok = FALSE;

  g_unlink (path);
  {
    g_autofree char *wal = g_strconcat (path, "-wal", NULL);
    g_autofree char *shm = g_strconcat (path, "-shm", NULL);

    g_unlink (wal);
    g_unlink (shm);
  }

  /* The core makes the schema. */
  cache = od_cache_open (path, error);
  if (cache == NULL)
    return FALSE;
  od_cache_close (cache);
  g_clear_object (&cache);

  if (sqlite3_open (path, &db) != SQLITE_OK)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", sqlite3_errmsg (db));
      sqlite3_close (db);
      return FALSE;
    }
  if (!exec (db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;", error)
      || !exec (db, "BEGIN", error))
    goto out;
  objects = take_schema_objects (db, error);
  if (objects == NULL)
    goto out;

  sqlite3_prepare_v2 (db,
                      "INSERT INTO orders (order_id, customer_name, customer_email, currency, status,"
                      " item_count, total_cents, version, created_at, updated_at, last_position,"
                      " carrier, tracking_number, cancel_reason)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                      -1, &order_stmt, NULL);
  sqlite3_prepare_v2 (db,
                      "INSERT INTO order_items (order_id, sku, name, quantity, unit_price_cents, line_no)"
                      " VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                      -1, &item_stmt, NULL);

  for (guint i = 0; i < n_orders; i++)
    {
      char id[OD_UUID_LEN + 1];
      gint64 created = now_ms - span_ms + (span_ms * (gint64) i) / MAX (n_orders, 1);
      gint64 updated = created + g_rand_int_range (rand, 0, 3600 * 1000);
      const char *first = first_names[g_rand_int_range (rand, 0, G_N_ELEMENTS (first_names))];
      const char *last = last_names[g_rand_int_range (rand, 0, G_N_ELEMENTS (last_names))];
      g_autofree char *name = g_strdup_printf ("%s %s", first, last);
      g_autofree char *email = g_ascii_strdown (name, -1);
      g_autofree char *mail = NULL;
      g_autofree char *created_at = format_time (created);
      g_autofree char *updated_at = format_time (MIN (updated, now_ms));
      guint product = g_rand_int_range (rand, 0, G_N_ELEMENTS (products));
      gint64 quantity = g_rand_int_range (rand, 1, 6);
      gint64 price = g_rand_int_range (rand, 199, 4999);
      guint status = g_rand_int_range (rand, 0, 100);
      guint s = status < 10 ? 0 : status < 35 ? 1 : status < 55 ? 2 : status < 92 ? 3 : 4;

      for (char *p = email; *p; p++)
        if (*p == ' ')
          *p = '.';
      mail = g_strdup_printf ("%s%u@example.org", email, i % 1000);
      od_uuid_v7_fill (id, created);

      sqlite3_bind_text (order_stmt, 1, id, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text (order_stmt, 2, name, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text (order_stmt, 3, mail, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text (order_stmt, 4, currencies[i % G_N_ELEMENTS (currencies)], -1, SQLITE_STATIC);
      sqlite3_bind_text (order_stmt, 5, statuses[s], -1, SQLITE_STATIC);
      sqlite3_bind_int64 (order_stmt, 6, quantity);
      sqlite3_bind_int64 (order_stmt, 7, quantity * price);
      sqlite3_bind_int64 (order_stmt, 8, 2 + (s > 0) + (s > 1) + (s > 2));
      sqlite3_bind_text (order_stmt, 9, created_at, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text (order_stmt, 10, updated_at, -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64 (order_stmt, 11, i + 1);
      if (s == 2 || s == 3)
        {
          sqlite3_bind_text (order_stmt, 12, "DHL", -1, SQLITE_STATIC);
          sqlite3_bind_text (order_stmt, 13, id + 24, -1, SQLITE_TRANSIENT);
        }
      else
        {
          sqlite3_bind_null (order_stmt, 12);
          sqlite3_bind_null (order_stmt, 13);
        }
      if (s == 4)
        sqlite3_bind_text (order_stmt, 14, "Customer changed their mind", -1, SQLITE_STATIC);
      else
        sqlite3_bind_null (order_stmt, 14);
      if (sqlite3_step (order_stmt) != SQLITE_DONE)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "insert: %s", sqlite3_errmsg (db));
          goto out;
        }
      sqlite3_reset (order_stmt);

      sqlite3_bind_text (item_stmt, 1, id, -1, SQLITE_TRANSIENT);
      sqlite3_bind_text (item_stmt, 2, products[product][0], -1, SQLITE_STATIC);
      sqlite3_bind_text (item_stmt, 3, products[product][1], -1, SQLITE_STATIC);
      sqlite3_bind_int64 (item_stmt, 4, quantity);
      sqlite3_bind_int64 (item_stmt, 5, price);
      if (sqlite3_step (item_stmt) != SQLITE_DONE)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "insert item: %s", sqlite3_errmsg (db));
          goto out;
        }
      sqlite3_reset (item_stmt);
    }

  /* What the triggers would have done, in bulk. */
  if (!exec (db,
             "UPDATE status_counts SET n = (SELECT count(*) FROM orders WHERE orders.status = status_counts.status);"
             "INSERT INTO order_search (rowid, customer_name, customer_email)"
             "  SELECT rowid, customer_name, customer_email FROM orders;",
             error))
    goto out;
  for (guint i = 0; i < objects->len; i++)
    if (!exec (db, g_ptr_array_index (objects, i), error))
      goto out;

  sqlite3_prepare_v2 (db,
                      "UPDATE sync_state SET applied_position = ?1, known_head = ?1,"
                      " last_contact_at = ?2, last_event_at = ?3 WHERE id = 1",
                      -1, &state_stmt, NULL);
  sqlite3_bind_int64 (state_stmt, 1, n_orders);
  sqlite3_bind_int64 (state_stmt, 2, (now_ms - 3600 * 1000) * 1000);
  sqlite3_bind_int64 (state_stmt, 3, (now_ms - 3600 * 1000) * 1000);
  if (sqlite3_step (state_stmt) != SQLITE_DONE)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "sync_state: %s", sqlite3_errmsg (db));
      goto out;
    }
  if (!exec (db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;", error))
    goto out;
  ok = TRUE;

out:
  sqlite3_finalize (order_stmt);
  sqlite3_finalize (item_stmt);
  sqlite3_finalize (state_stmt);
  sqlite3_close (db);
  return ok;
}

char *
od_test_shared_cache (guint    n_orders,
                      GError **error)
{
  const char *dir = g_getenv ("OD_BUILD_DIR");
  g_autofree char *name = g_strdup_printf ("test-cache-%u.sqlite", n_orders);
  g_autofree char *path = g_build_filename (dir ? dir : g_get_tmp_dir (), "tests", "app", name, NULL);
  g_autofree char *done = g_strconcat (path, ".done", NULL);
  g_autofree char *tmp = g_strdup_printf ("%s.%d.tmp", path, (int) getpid ());
  g_autofree char *dirname = g_path_get_dirname (path);

  if (g_file_test (done, G_FILE_TEST_EXISTS) && g_file_test (path, G_FILE_TEST_EXISTS))
    return g_steal_pointer (&path);
  g_mkdir_with_parents (dirname, 0755);
  /* Made under a name of this process and renamed, so a test run killed
   * midway never leaves a half-made cache that looks finished, and two
   * tests making it at once do not write into the same file. */
  /* Made in a child process: making a million orders takes a few hundred
   * MB that the test's own memory measurements must not see. */
  {
    pid_t pid = fork ();
    int status = 0;

    if (pid < 0)
      {
        g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "fork: %s",
                     g_strerror (errno));
        return NULL;
      }
    if (pid == 0)
      {
        g_autoptr(GError) child_error = NULL;

        if (!od_test_make_cache (tmp, n_orders, &child_error))
          {
            g_printerr ("making the test cache failed: %s\n", child_error->message);
            _exit (1);
          }
        _exit (0);
      }
    if (waitpid (pid, &status, 0) != pid || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
      {
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "making the test cache %s failed", tmp);
        return NULL;
      }
  }
  if (g_rename (tmp, path) != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "rename: %s", g_strerror (errno));
      return NULL;
    }
  if (!g_file_set_contents (done, "", 0, error))
    return NULL;
  return g_steal_pointer (&path);
}

void
od_test_cache_write (const char *path,
                     const char *sql)
{
  sqlite3 *db = NULL;

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  sqlite3_busy_timeout (db, 10000);
  g_assert_cmpint (sqlite3_exec (db, sql, NULL, NULL, NULL), ==, SQLITE_OK);
  g_assert_cmpint (sqlite3_changes (db), >, 0);
  sqlite3_close (db);
}

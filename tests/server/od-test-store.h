/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

/* What the store tests (no server) share: a store's head, and SQL run on
 * its file through a connection of its own (a trigger that makes a commit
 * fail, say). */

#include <sqlite3.h>

#include "od-store.h"

G_BEGIN_DECLS

static inline gint64
od_test_store_head (OdStore *store)
{
  g_autoptr(GError) error = NULL;
  gint64 head = -1;

  g_assert_true (od_store_get_head (store, &head, &error));
  g_assert_no_error (error);
  return head;
}

static inline void
od_test_store_sql (const char *path,
                   const char *sql)
{
  sqlite3 *db = NULL;
  char *message = NULL;

  g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
  sqlite3_busy_timeout (db, 10000);
  if (sqlite3_exec (db, sql, NULL, NULL, &message) != SQLITE_OK)
    g_error ("%s: %s", sql, message);
  sqlite3_close (db);
}

G_END_DECLS

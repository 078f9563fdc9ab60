/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-sqlite.h"

static GIOErrorEnum
io_error_code (int code)
{
  switch (code & 0xff)
    {
    case SQLITE_FULL:
      return G_IO_ERROR_NO_SPACE;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return G_IO_ERROR_INVALID_DATA;
    case SQLITE_INTERRUPT:
      return G_IO_ERROR_CANCELLED;
    default:
      return G_IO_ERROR_FAILED;
    }
}

gboolean
od_sqlite_set_error (GError     **error,
                     sqlite3     *db,
                     const char  *what)
{
  g_set_error (error, G_IO_ERROR, io_error_code (sqlite3_errcode (db)), "%s: %s", what,
               sqlite3_errmsg (db));
  return FALSE;
}

gboolean
od_sqlite_exec (sqlite3     *db,
                const char  *sql,
                const char  *what,
                GError     **error)
{
  char *msg = NULL;

  if (sqlite3_exec (db, sql, NULL, NULL, &msg) != SQLITE_OK)
    {
      int code = sqlite3_errcode (db);
      const char *text = msg ? msg : sqlite3_errstr (code);

      if (what != NULL)
        g_set_error (error, G_IO_ERROR, io_error_code (code), "%s: %s", what, text);
      else
        g_set_error_literal (error, G_IO_ERROR, io_error_code (code), text);
      sqlite3_free (msg);
      return FALSE;
    }
  return TRUE;
}

sqlite3_stmt *
od_sqlite_prepare (sqlite3     *db,
                   const char  *sql,
                   GError     **error)
{
  sqlite3_stmt *stmt = NULL;

  if (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) != SQLITE_OK)
    {
      od_sqlite_set_error (error, db, "prepare");
      sqlite3_finalize (stmt);
      return NULL;
    }
  return stmt;
}

gboolean
od_sqlite_prepare_persistent (sqlite3       *db,
                              const char    *sql,
                              sqlite3_stmt **stmt,
                              GError       **error)
{
  if (sqlite3_prepare_v3 (db, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, NULL) != SQLITE_OK)
    {
      od_sqlite_set_error (error, db, "prepare");
      return FALSE;
    }
  return TRUE;
}

sqlite3_stmt *
od_sqlite_reuse (sqlite3       *db,
                 sqlite3_stmt **slot,
                 const char    *sql,
                 GError       **error)
{
  if (*slot == NULL)
    {
      if (sqlite3_prepare_v2 (db, sql, -1, slot, NULL) != SQLITE_OK)
        {
          od_sqlite_set_error (error, db, "prepare");
          g_clear_pointer (slot, sqlite3_finalize);
          return NULL;
        }
    }
  else
    {
      sqlite3_reset (*slot);
      sqlite3_clear_bindings (*slot);
    }
  return *slot;
}

gboolean
od_sqlite_step_done (sqlite3       *db,
                     sqlite3_stmt  *stmt,
                     const char    *what,
                     GError       **error)
{
  int rc = sqlite3_step (stmt);

  /* The error is read before the reset, which may replace it. */
  if (rc != SQLITE_DONE)
    od_sqlite_set_error (error, db, what);
  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
  return rc == SQLITE_DONE;
}

gboolean
od_sqlite_run (sqlite3       *db,
               sqlite3_stmt  *stmt,
               const char    *what,
               GError       **error)
{
  int rc = sqlite3_step (stmt);

  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    od_sqlite_set_error (error, db, what);
  sqlite3_finalize (stmt);
  return rc == SQLITE_DONE || rc == SQLITE_ROW;
}

void
od_sqlite_bind_text_or_null (sqlite3_stmt *stmt,
                             int           col,
                             const char   *text)
{
  if (text != NULL)
    sqlite3_bind_text (stmt, col, text, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null (stmt, col);
}

char *
od_sqlite_column_strdup (sqlite3_stmt *stmt,
                         int           col)
{
  return g_strdup ((const char *) sqlite3_column_text (stmt, col));
}

gint64
od_sqlite_query_int64 (sqlite3    *db,
                       const char *sql,
                       gint64      fallback)
{
  sqlite3_stmt *stmt = NULL;
  gint64 value = fallback;

  if (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) == SQLITE_OK
      && sqlite3_step (stmt) == SQLITE_ROW)
    value = sqlite3_column_int64 (stmt, 0);
  sqlite3_finalize (stmt);
  return value;
}

int
od_sqlite_user_version (sqlite3 *db)
{
  return (int) od_sqlite_query_int64 (db, "PRAGMA user_version", -1);
}

gboolean
od_sqlite_has_table (sqlite3    *db,
                     const char *table)
{
  sqlite3_stmt *stmt = NULL;
  gboolean found = FALSE;

  if (sqlite3_prepare_v2 (db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          -1, &stmt, NULL) == SQLITE_OK)
    {
      sqlite3_bind_text (stmt, 1, table, -1, SQLITE_STATIC);
      found = sqlite3_step (stmt) == SQLITE_ROW;
    }
  sqlite3_finalize (stmt);
  return found;
}

gboolean
od_sqlite_has_column (sqlite3    *db,
                      const char *table,
                      const char *column)
{
  sqlite3_stmt *stmt = NULL;
  gboolean found = FALSE;

  if (sqlite3_prepare_v2 (db, "SELECT 1 FROM pragma_table_info (?) WHERE name = ?", -1, &stmt,
                          NULL) == SQLITE_OK)
    {
      sqlite3_bind_text (stmt, 1, table, -1, SQLITE_STATIC);
      sqlite3_bind_text (stmt, 2, column, -1, SQLITE_STATIC);
      found = sqlite3_step (stmt) == SQLITE_ROW;
    }
  sqlite3_finalize (stmt);
  return found;
}

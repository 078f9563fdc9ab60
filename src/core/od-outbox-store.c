/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-outbox-store.h"
#include "od-cache-private.h"
#include "od-outbox.h"

/* What each state is stored as.  These numbers are on disk in every
 * cache: never change them; a new state takes a new number. */
G_STATIC_ASSERT (OD_COMMAND_STATE_QUEUED == 0);
G_STATIC_ASSERT (OD_COMMAND_STATE_SENT == 1);
G_STATIC_ASSERT (OD_COMMAND_STATE_ACCEPTED == 2);
G_STATIC_ASSERT (OD_COMMAND_STATE_VISIBLE == 3);
G_STATIC_ASSERT (OD_COMMAND_STATE_REJECTED == 4);
G_STATIC_ASSERT (OD_COMMAND_STATE_DISCARDED == 5);

/* Binds every state placeholder (OD_OUTBOX_SQL_*) a statement uses.
 * Binding one it does not use fails with SQLITE_RANGE, harmlessly. */
void
od_outbox_store_bind_states (sqlite3_stmt *st)
{
  static const struct { int param; OdCommandState state; } params[] = {
    { 60, OD_COMMAND_STATE_QUEUED },   /* OD_OUTBOX_SQL_QUEUED */
    { 61, OD_COMMAND_STATE_SENT },     /* OD_OUTBOX_SQL_SENT */
    { 62, OD_COMMAND_STATE_ACCEPTED }, /* OD_OUTBOX_SQL_ACCEPTED */
    { 63, OD_COMMAND_STATE_VISIBLE },  /* OD_OUTBOX_SQL_VISIBLE */
    { 64, OD_COMMAND_STATE_REJECTED }, /* OD_OUTBOX_SQL_REJECTED */
    { 65, OD_COMMAND_STATE_DISCARDED },/* OD_OUTBOX_SQL_DISCARDED */
  };

  for (guint i = 0; i < G_N_ELEMENTS (params); i++)
    sqlite3_bind_int (st, params[i].param, params[i].state);
}

static gboolean
exec (sqlite3     *db,
      const char  *sql,
      GError     **error)
{
  if (sqlite3_exec (db, sql, NULL, NULL, NULL) != SQLITE_OK)
    {
      od_cache_set_sqlite_error (error, db, "outbox schema");
      return FALSE;
    }
  return TRUE;
}

static gboolean
has_column (sqlite3    *db,
            const char *column)
{
  sqlite3_stmt *stmt = NULL;
  gboolean found = FALSE;

  if (sqlite3_prepare_v2 (db, "SELECT 1 FROM pragma_table_info ('pending_commands') WHERE name = ?",
                          -1, &stmt, NULL) == SQLITE_OK)
    {
      sqlite3_bind_text (stmt, 1, column, -1, SQLITE_STATIC);
      found = sqlite3_step (stmt) == SQLITE_ROW;
    }
  sqlite3_finalize (stmt);
  return found;
}

/* Not a view: a rebuild of the cache never drops it (an unsent command
 * exists nowhere else). */
static const char schema_sql[] =
  "CREATE TABLE IF NOT EXISTS pending_commands ("
  "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
  "  idempotency_key TEXT NOT NULL UNIQUE,"
  "  order_id TEXT NOT NULL,"
  "  type TEXT NOT NULL,"
  "  body TEXT NOT NULL,"
  "  state INTEGER NOT NULL DEFAULT 0,"
  "  attempts INTEGER NOT NULL DEFAULT 0,"
  "  http_status INTEGER NOT NULL DEFAULT 0,"
  "  position INTEGER NOT NULL DEFAULT -1,"
  "  version INTEGER NOT NULL DEFAULT -1,"
  "  code TEXT,"
  "  detail TEXT,"
  "  problem TEXT,"
  "  created_at INTEGER NOT NULL,"
  "  sent_at INTEGER NOT NULL DEFAULT 0,"
  "  answered_at INTEGER NOT NULL DEFAULT 0,"
  "  visible_at INTEGER NOT NULL DEFAULT 0);"
  "CREATE INDEX IF NOT EXISTS pending_commands_state ON pending_commands (state, position);";

/* Creates the table, or brings an older one up to date.  The identity
 * and claim columns (see od-outbox.h) came after the table, without a
 * new schema version: each ALTER is guarded by a column check, and runs
 * inside the caller's migration transaction.  Commands queued before
 * have no identity: they are held until someone sends them as
 * themselves or discards them. */
gboolean
od_outbox_store_ensure (sqlite3  *db,
                        GError  **error)
{
  static const struct { const char *name; const char *sql; } columns[] = {
    { "identity_fp", "ALTER TABLE pending_commands ADD COLUMN identity_fp TEXT" },
    { "identity_server", "ALTER TABLE pending_commands ADD COLUMN identity_server TEXT" },
    { "claim_owner", "ALTER TABLE pending_commands ADD COLUMN claim_owner TEXT" },
    { "claim_at", "ALTER TABLE pending_commands ADD COLUMN claim_at INTEGER NOT NULL DEFAULT 0" },
  };

  if (!exec (db, schema_sql, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (columns); i++)
    if (!has_column (db, columns[i].name) && !exec (db, columns[i].sql, error))
      return FALSE;
  return TRUE;
}

/* The last column added: with it, nothing is left to do. */
gboolean
od_outbox_store_is_current (sqlite3 *db)
{
  return has_column (db, "claim_at");
}

/* A cache from a newer version: its outbox layout may not fit ours.
 * Kept aside rather than dropped, so that no unsent command is lost. */
gboolean
od_outbox_store_set_aside (sqlite3  *db,
                           GError  **error)
{
  sqlite3_stmt *stmt = NULL;
  gboolean found = FALSE;

  if (sqlite3_prepare_v2 (db, "SELECT 1 FROM sqlite_master WHERE type = 'table'"
                          " AND name = 'pending_commands'", -1, &stmt, NULL) == SQLITE_OK)
    found = sqlite3_step (stmt) == SQLITE_ROW;
  sqlite3_finalize (stmt);
  return !found || exec (db, "ALTER TABLE pending_commands RENAME TO pending_commands_future;",
                         error);
}

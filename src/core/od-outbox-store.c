/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-outbox-store.h"
#include "od-cache-private.h"
#include "od-outbox.h"
#include "od-sqlite.h"

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

  if (!od_sqlite_exec (db, schema_sql, "outbox schema", error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (columns); i++)
    if (!od_sqlite_has_column (db, "pending_commands", columns[i].name)
        && !od_sqlite_exec (db, columns[i].sql, "outbox schema", error))
      return FALSE;
  return TRUE;
}

/* The last column added: with it, nothing is left to do. */
gboolean
od_outbox_store_is_current (sqlite3 *db)
{
  return od_sqlite_has_column (db, "pending_commands", "claim_at");
}

/* A cache from a newer version: its outbox layout may not fit ours.
 * Kept aside rather than dropped, so that no unsent command is lost. */
gboolean
od_outbox_store_set_aside (sqlite3  *db,
                           GError  **error)
{
  return !od_sqlite_has_table (db, "pending_commands")
         || od_sqlite_exec (db, "ALTER TABLE pending_commands RENAME TO pending_commands_future;",
                            "outbox schema", error);
}

/* ------------------------------------------------------------------ */
/* Writes (run on the cache's writer thread, see od_cache_write_async)  */

gboolean
od_outbox_store_insert (sqlite3     *db,
                        const char  *key,
                        const char  *order_id,
                        const char  *type,
                        const char  *body,
                        gint64       created_at,
                        const char  *identity_fp,
                        const char  *identity_server,
                        gint64      *id,
                        GError     **error)
{
  sqlite3_stmt *st = od_sqlite_prepare (db,
                           "INSERT INTO pending_commands (idempotency_key, order_id, type, body,"
                           " state, created_at, identity_fp, identity_server)"
                           " VALUES (?1, ?2, ?3, ?4, " OD_OUTBOX_SQL_QUEUED ", ?5, ?6, ?7)",
                           error);

  if (st == NULL)
    return FALSE;
  sqlite3_bind_text (st, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 2, order_id, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 3, type, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 4, body, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 5, created_at);
  sqlite3_bind_text (st, 6, identity_fp, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 7, identity_server, -1, SQLITE_STATIC);
  od_outbox_store_bind_states (st);
  if (!od_sqlite_run (db, st, "outbox", error))
    return FALSE;
  *id = sqlite3_last_insert_rowid (db);
  return TRUE;
}

/* Stores what happened to a command; *changed is FALSE when the row
 * was no longer in a state the update applies to (e.g. a discard that
 * lost the race with a send). */
gboolean
od_outbox_store_update (sqlite3               *db,
                        const OdOutboxUpdate  *j,
                        gboolean              *changed,
                        GError               **error)
{
  sqlite3_stmt *st = NULL;

  switch (j->kind)
    {
    case OD_OUTBOX_UPDATE_MARK_SENT:
      st = od_sqlite_prepare (db,
                 "UPDATE pending_commands SET state = " OD_OUTBOX_SQL_SENT ", attempts = attempts + 1,"
                 " sent_at = CASE WHEN sent_at = 0 THEN ?2 ELSE sent_at END"
                 " WHERE id = ?1 AND state IN " OD_OUTBOX_SQL_UNANSWERED,
                 error);
      break;
    case OD_OUTBOX_UPDATE_ACCEPTED:
      /* If the cache already applied the position (the stream was
       * faster than this answer), the command is visible right away. */
      st = od_sqlite_prepare (db,
                 "UPDATE pending_commands SET http_status = ?3, position = ?4, version = ?5,"
                 " answered_at = ?2, detail = NULL,"
                 " state = CASE WHEN ?4 <= (SELECT applied_position FROM sync_state WHERE id = 1)"
                 "   THEN " OD_OUTBOX_SQL_VISIBLE " ELSE " OD_OUTBOX_SQL_ACCEPTED " END,"
                 " visible_at = CASE WHEN ?4 <= (SELECT applied_position FROM sync_state"
                 "   WHERE id = 1) THEN ?2 ELSE 0 END"
                 " WHERE id = ?1 AND state IN " OD_OUTBOX_SQL_UNANSWERED,
                 error);
      break;
    case OD_OUTBOX_UPDATE_REJECTED:
      st = od_sqlite_prepare (db,
                 "UPDATE pending_commands SET state = " OD_OUTBOX_SQL_REJECTED ", http_status = ?3,"
                 " answered_at = ?2, code = ?6, detail = ?7, problem = ?8"
                 " WHERE id = ?1 AND state IN " OD_OUTBOX_SQL_UNANSWERED,
                 error);
      break;
    case OD_OUTBOX_UPDATE_TRANSIENT:
      /* The claim goes: any process of this identity may retry it. */
      st = od_sqlite_prepare (db,
                 "UPDATE pending_commands SET detail = ?7, http_status = ?3,"
                 " claim_owner = NULL WHERE id = ?1",
                 error);
      break;
    case OD_OUTBOX_UPDATE_DISCARD:
      /* A command never sent, or one held (queued by another sign-in)
       * that nobody is sending now. */
      st = od_sqlite_prepare (db,
                 "UPDATE pending_commands SET state = " OD_OUTBOX_SQL_DISCARDED ", answered_at = ?2"
                 " WHERE id = ?1 AND (state = " OD_OUTBOX_SQL_QUEUED
                 "   OR (state = " OD_OUTBOX_SQL_SENT
                 "   AND (identity_fp IS NOT ?9 OR identity_server IS NOT ?10)"
                 "   AND (claim_owner IS NULL OR claim_at < ?11)))", error);
      break;
    case OD_OUTBOX_UPDATE_SEND_AS_ME:
      /* The operator's consent: from now on it goes as them.  Only a
       * command never sent: keys are scoped by token on the server, so
       * one sent under the other sign-in (answer unknown) could be
       * applied a second time under this one. */
      st = od_sqlite_prepare (db,
                 "UPDATE pending_commands SET identity_fp = ?9, identity_server = ?10"
                 " WHERE id = ?1 AND state = " OD_OUTBOX_SQL_QUEUED
                 "   AND (identity_fp IS NOT ?9 OR identity_server IS NOT ?10)"
                 "   AND (claim_owner IS NULL OR claim_at < ?11)", error);
      break;
    default:
      g_assert_not_reached ();
    }
  if (st == NULL)
    return FALSE;
  /* Every value is bound, used or not: binding a parameter a statement
   * does not have fails with SQLITE_RANGE, harmlessly. */
  sqlite3_bind_int64 (st, 1, j->id);
  sqlite3_bind_int64 (st, 2, j->now);
  sqlite3_bind_int (st, 3, j->http_status);
  sqlite3_bind_int64 (st, 4, j->position);
  sqlite3_bind_int64 (st, 5, j->version);
  sqlite3_bind_text (st, 6, j->code, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 7, j->detail, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 8, j->problem, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 9, j->identity_fp, -1, SQLITE_STATIC);
  sqlite3_bind_text (st, 10, j->identity_server, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (st, 11, j->claim_free_before);
  od_outbox_store_bind_states (st);
  if (!od_sqlite_run (db, st, "outbox", error))
    return FALSE;
  *changed = sqlite3_changes (db) > 0;
  return TRUE;
}

/* Marks a command sent by `owner` (its claim: see claim_job() in
 * od-outbox.c). */
gboolean
od_outbox_store_claim (sqlite3     *db,
                       gint64       id,
                       const char  *owner,
                       gint64       now,
                       GError     **error)
{
  sqlite3_stmt *st = od_sqlite_prepare (db,
                           "UPDATE pending_commands SET state = " OD_OUTBOX_SQL_SENT ","
                           " attempts = attempts + 1,"
                           " sent_at = CASE WHEN sent_at = 0 THEN ?2 ELSE sent_at END,"
                           " claim_owner = ?3, claim_at = ?2 WHERE id = ?1",
                           error);

  if (st == NULL)
    return FALSE;
  sqlite3_bind_int64 (st, 1, id);
  sqlite3_bind_int64 (st, 2, now);
  sqlite3_bind_text (st, 3, owner, -1, SQLITE_STATIC);
  od_outbox_store_bind_states (st);
  return od_sqlite_run (db, st, "outbox", error);
}

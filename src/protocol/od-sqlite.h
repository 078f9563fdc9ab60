/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>
#include <sqlite3.h>

G_BEGIN_DECLS

/* The SQLite helpers of the console's cache and outbox and of the
 * server's SQLite store: one way to prepare, step, run scripts and report
 * errors.  A SQLite failure is an I/O error: G_IO_ERROR with the code a
 * caller can act on (NO_SPACE for a full disk, INVALID_DATA for a file
 * that is not a database or is damaged, CANCELLED for an interrupt,
 * FAILED otherwise), and the message "WHAT: SQLite's message". */

/* Always FALSE, so that `return od_sqlite_set_error (…);` fails. */
gboolean      od_sqlite_set_error       (GError       **error,
                                         sqlite3       *db,
                                         const char    *what);
/* Runs a script of statements without parameters (PRAGMAs, schema,
 * BEGIN/COMMIT).  what may be NULL: the message is SQLite's alone. */
gboolean      od_sqlite_exec            (sqlite3       *db,
                                         const char    *sql,
                                         const char    *what,
                                         GError       **error);
/* A statement for one use (sqlite3_finalize it), or NULL with error. */
sqlite3_stmt *od_sqlite_prepare         (sqlite3       *db,
                                         const char    *sql,
                                         GError       **error);
/* A statement kept for the connection's life (SQLITE_PREPARE_PERSISTENT). */
gboolean      od_sqlite_prepare_persistent (sqlite3     *db,
                                         const char    *sql,
                                         sqlite3_stmt **stmt,
                                         GError       **error);
/* A statement prepared on first use into *slot and kept there; on later
 * uses reset and cleared of bindings.  NULL with error on failure. */
sqlite3_stmt *od_sqlite_reuse           (sqlite3       *db,
                                         sqlite3_stmt **slot,
                                         const char    *sql,
                                         GError       **error);
/* Steps a kept statement that returns no row, then resets it and clears
 * its bindings, whatever the outcome. */
gboolean      od_sqlite_step_done       (sqlite3       *db,
                                         sqlite3_stmt  *stmt,
                                         const char    *what,
                                         GError       **error);
/* Steps a one-use statement once (a row or done is success) and
 * finalizes it, whatever the outcome. */
gboolean      od_sqlite_run             (sqlite3       *db,
                                         sqlite3_stmt  *stmt,
                                         const char    *what,
                                         GError       **error);
void          od_sqlite_bind_text_or_null (sqlite3_stmt *stmt,
                                         int            col,
                                         const char    *text);
/* A copy of the column's text, NULL for NULL. */
char         *od_sqlite_column_strdup   (sqlite3_stmt  *stmt,
                                         int            col);
/* The first column of the first row of a statement without parameters,
 * or fallback when there is no row or the statement fails. */
gint64        od_sqlite_query_int64     (sqlite3       *db,
                                         const char    *sql,
                                         gint64         fallback);
int           od_sqlite_user_version    (sqlite3       *db);
gboolean      od_sqlite_has_table       (sqlite3       *db,
                                         const char    *table);
gboolean      od_sqlite_has_column      (sqlite3       *db,
                                         const char    *table,
                                         const char    *column);

G_END_DECLS

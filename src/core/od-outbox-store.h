/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <sqlite3.h>

G_BEGIN_DECLS

/* The outbox's table, pending_commands, lives in the cache's file (one
 * transaction covers an event and the command it makes visible) but its
 * schema and its states belong here.  The cache calls these from its
 * schema creation and migration; nothing else writes the layout.
 *
 * A command's state is stored as its OdCommandState number; statements
 * never write those numbers in their text: they name the states with the
 * placeholders below, and od_outbox_store_bind_states() binds them from
 * the enum.  The stored values are frozen (see the static asserts in
 * od-outbox-store.c): renumbering the enum would change what old rows
 * mean. */
#define OD_OUTBOX_SQL_QUEUED    "?60"
#define OD_OUTBOX_SQL_SENT      "?61"
#define OD_OUTBOX_SQL_ACCEPTED  "?62"
#define OD_OUTBOX_SQL_VISIBLE   "?63"
#define OD_OUTBOX_SQL_REJECTED  "?64"
#define OD_OUTBOX_SQL_DISCARDED "?65"
/* Not final: the outbox still watches it. */
#define OD_OUTBOX_SQL_NOT_FINAL \
  "(" OD_OUTBOX_SQL_QUEUED ", " OD_OUTBOX_SQL_SENT ", " OD_OUTBOX_SQL_ACCEPTED ")"
/* Not answered yet: it may still be (re)sent. */
#define OD_OUTBOX_SQL_UNANSWERED "(" OD_OUTBOX_SQL_QUEUED ", " OD_OUTBOX_SQL_SENT ")"

void     od_outbox_store_bind_states (sqlite3_stmt  *st);

gboolean od_outbox_store_ensure      (sqlite3       *db,
                                      GError       **error);
gboolean od_outbox_store_is_current  (sqlite3       *db);
gboolean od_outbox_store_set_aside   (sqlite3       *db,
                                      GError       **error);

G_END_DECLS

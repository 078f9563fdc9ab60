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

/* What an update stores (od_outbox_store_update()). */
typedef enum
{
  OD_OUTBOX_UPDATE_MARK_SENT,
  OD_OUTBOX_UPDATE_ACCEPTED,
  OD_OUTBOX_UPDATE_REJECTED,
  OD_OUTBOX_UPDATE_TRANSIENT,  /* a failure to retry: network, 5xx, 429 */
  OD_OUTBOX_UPDATE_DISCARD,
  OD_OUTBOX_UPDATE_SEND_AS_ME, /* a held command adopted by the current identity */
} OdOutboxUpdateKind;

typedef struct
{
  gint64              id;
  OdOutboxUpdateKind  kind;
  guint               http_status;
  gint64              position;
  gint64              version;
  char               *code;
  char               *detail;
  char               *problem;
  gint64              now;
  char               *identity_fp;      /* discard, send as me: the current identity */
  char               *identity_server;
  gint64              claim_free_before; /* a claim older than this is nobody's */
} OdOutboxUpdate;

gboolean od_outbox_store_insert      (sqlite3               *db,
                                      const char            *key,
                                      const char            *order_id,
                                      const char            *type,
                                      const char            *body,
                                      gint64                 created_at,
                                      const char            *identity_fp,
                                      const char            *identity_server,
                                      gint64                *id,
                                      GError               **error);
gboolean od_outbox_store_update      (sqlite3               *db,
                                      const OdOutboxUpdate  *update,
                                      gboolean              *changed,
                                      GError               **error);
gboolean od_outbox_store_claim       (sqlite3               *db,
                                      gint64                 id,
                                      const char            *owner,
                                      gint64                 now,
                                      GError               **error);

G_END_DECLS

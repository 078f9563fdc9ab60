/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "od-cache.h"
#include "od-command.h"
#include "od-problem.h"

G_BEGIN_DECLS

/* The command outbox.  A command is validated, then stored in
 * pending_commands (with its Idempotency-Key and the exact body) before it
 * is sent; it is resent with the same key and body after a crash, restart
 * or network failure until the server answers.  Commands are sent one at
 * a time in submission order; a refusal never blocks the ones after it.
 *
 * Table pending_commands(id INTEGER PK, idempotency_key UNIQUE, order_id,
 *   type, body, state, attempts, http_status, position, version, code,
 *   detail, problem, created_at, sent_at, answered_at, visible_at,
 *   identity_fp, identity_server, claim_owner, claim_at)
 * with times in µs since the epoch (created_at = the operator's click).
 *
 * The cache's writer marks accepted commands visible in the same
 * transaction that applies their position, so "visible" is exact.
 *
 * Identity: each command is bound to who queued it, identity_fp (the
 * fingerprint of the token, od_outbox_token_fingerprint(): never the
 * token) and identity_server (the server URL).  An outbox sends only its
 * own identity's commands; the others' are "held" (queued by another
 * sign-in): listed with held = TRUE, never sent until
 * od_outbox_send_as_me_async() binds one to the current identity, or
 * discarded.  A 403 (forbidden: e.g. a viewer's token) is final at once:
 * the command is rejected with http_status 403, not retried.
 *
 * Several processes may share one outbox (the cache file): a command is
 * claimed for sending (claim_owner, claim_at) in the same write
 * transaction that marks it sent, and only the first unsent command of an
 * identity is sent at a time, so nothing goes twice at once and the
 * submission order holds across processes.  A claim whose owner has died
 * (or older than 60 s) is taken over; the resend carries the same key. */

typedef enum
{
  OD_COMMAND_STATE_QUEUED,    /* stored, not sent yet (or sending failed: will retry) */
  OD_COMMAND_STATE_SENT,      /* sent at least once, no answer stored yet */
  OD_COMMAND_STATE_ACCEPTED,  /* 200 with position; waiting for the cache */
  OD_COMMAND_STATE_VISIBLE,   /* the cache applied ≥ position */
  OD_COMMAND_STATE_REJECTED,  /* refused (4xx): detail says why; final */
  OD_COMMAND_STATE_DISCARDED, /* the operator discarded it before it was sent */
} OdCommandState;

GType       od_command_state_get_type  (void) G_GNUC_CONST;
#define OD_TYPE_COMMAND_STATE (od_command_state_get_type ())
const char *od_command_state_name      (OdCommandState state);

typedef struct
{
  gint64          id;
  char           *idempotency_key;
  char           *order_id;
  char           *type;
  char           *body;
  OdCommandState  state;
  guint           attempts;
  guint           http_status;
  gint64          position;    /* -1 until accepted */
  gint64          version;     /* -1 until accepted */
  char           *code;        /* problem code when rejected */
  char           *detail;      /* server's detail when rejected, or last transient error */
  char           *problem;     /* the whole problem+json when rejected */
  gint64          created_at;  /* µs */
  gint64          sent_at;
  gint64          answered_at;
  gint64          visible_at;
  char           *identity_fp;     /* who queued it; NULL: before identities were kept */
  char           *identity_server;
  gboolean        held;            /* queued by another sign-in: not sent without consent */
} OdPendingCommand;

void              od_pending_command_free (OdPendingCommand *command);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdPendingCommand, od_pending_command_free)

/* Click → visible latency in ms, or -1 when not visible. */
double            od_pending_command_latency_ms (const OdPendingCommand *command);

#define OD_TYPE_OUTBOX (od_outbox_get_type ())
G_DECLARE_FINAL_TYPE (OdOutbox, od_outbox, OD, OUTBOX, GObject)

/* Signals:
 *   "command-changed" (gint64 id, OdCommandState state): after the change
 *       is stored.
 *   "sign-in-needed" (): the server answered 401/403; sending paused until
 *       od_outbox_set_server().
 */
OdOutbox         *od_outbox_new           (OdCache          *cache,
                                           const char       *server_url,
                                           const char       *token);
void              od_outbox_set_server    (OdOutbox         *self,
                                           const char       *server_url,
                                           const char       *token);

/* The identity (server and token) to compare commands with, for an
 * outbox that only lists, discards or re-binds: nothing is sent until
 * od_outbox_set_server(). */
void              od_outbox_set_identity  (OdOutbox         *self,
                                           const char       *server_url,
                                           const char       *token);
/* The current token's fingerprint ("none" without a token). */
const char       *od_outbox_get_identity  (OdOutbox         *self);
/* Hex SHA-256 of the token, first 16 digits: names a sign-in without
 * revealing it. */
char             *od_outbox_token_fingerprint (const char   *token);

/* The certificates to trust for an HTTPS server; NULL = the system's
 * trust store.  A refused certificate is never accepted: the command
 * stays queued with the reason in words in its detail. */
void              od_outbox_set_tls_database (OdOutbox      *self,
                                              GTlsDatabase  *database);

/* Validates the command (od_command_validate), stores it and starts
 * sending.  Resolves with the new id once stored (not once answered),
 * or fails with OD_COMMAND_ERROR when the command is refused before it
 * is stored.  created_at is the time of this call. */
void              od_outbox_submit_async  (OdOutbox         *self,
                                           const OdCommand  *command,
                                           GCancellable     *cancellable,
                                           GAsyncReadyCallback callback,
                                           gpointer          user_data);
/* The same with a JSON body as in api.md (kept byte for byte). */
void              od_outbox_submit_json_async (OdOutbox     *self,
                                               const char   *body,
                                               GCancellable *cancellable,
                                               GAsyncReadyCallback callback,
                                               gpointer      user_data);
/* Returns the id, or -1 with an error (G_IO_ERROR_INVALID_DATA with the
 * validation message when the command is invalid). */
gint64            od_outbox_submit_finish (OdOutbox         *self,
                                           GAsyncResult     *result,
                                           GError          **error);

/* Sends what is stored and unanswered now, skipping a backoff wait (done
 * on creation; call it when the sync engine's lag state becomes
 * CATCHING_UP or LIVE again, i.e. the server is back, as orderdeskctl
 * does). */
void              od_outbox_kick          (OdOutbox         *self);

/* Discards a QUEUED command (one never sent), or a held one that no one
 * is sending.  FALSE if it was sent in the meantime (it may have been
 * applied: it must take its course). */
void              od_outbox_discard_async (OdOutbox         *self,
                                           gint64            id,
                                           GCancellable     *cancellable,
                                           GAsyncReadyCallback callback,
                                           gpointer          user_data);
gboolean          od_outbox_discard_finish (OdOutbox        *self,
                                            GAsyncResult    *result,
                                            GError         **error);

/* Binds a held command to the current identity (the operator's explicit
 * consent) and sends it.  FALSE when it is not held (any more), or was
 * already sent under the other sign-in (idempotency keys are scoped by
 * token: sending it again as another could apply it twice; it can be
 * discarded, or goes when that sign-in returns). */
void              od_outbox_send_as_me_async  (OdOutbox     *self,
                                               gint64        id,
                                               GCancellable *cancellable,
                                               GAsyncReadyCallback callback,
                                               gpointer      user_data);
gboolean          od_outbox_send_as_me_finish (OdOutbox     *self,
                                               GAsyncResult *result,
                                               GError      **error);

/* Read from the cache's read connection.  `include_final` adds visible,
 * rejected and discarded commands (newest first, at most `limit`). */
GPtrArray        *od_outbox_list          (OdOutbox         *self,
                                           gboolean          include_final,
                                           guint             limit,
                                           GError          **error);
OdPendingCommand *od_outbox_get           (OdOutbox         *self,
                                           gint64            id,
                                           GError          **error);
/* Number of commands neither final nor visible (queued, sent, accepted),
 * held ones not counted. */
guint             od_outbox_count_pending (OdOutbox         *self);
/* Number of held commands (queued by another sign-in). */
guint             od_outbox_count_held    (OdOutbox         *self);
/* Order ids with a command queued, sent or accepted-not-visible: the
 * list shows them as pending. */
GHashTable       *od_outbox_pending_orders (OdOutbox        *self);

/* TRUE while commands are being sent or waiting to be sent. */
gboolean          od_outbox_is_busy       (OdOutbox         *self);

G_END_DECLS

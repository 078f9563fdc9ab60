/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "od-digest.h"
#include "od-protocol.h"

G_BEGIN_DECLS

/* One command on its way from the HTTP side to the store's writer. */
typedef struct
{
  /* Input. */
  OdCommand *command;
  char      *actor;            /* the token's name: audit trail and key scope */
  char      *idempotency_key;  /* NULL for the server's own demo commands */
  guint8     body_sha256[32];  /* of the exact request body */
  char      *recorded_at;      /* NULL means now; demo seeding backdates */

  /* Output, set by od_store_execute (). */
  guint      status;           /* HTTP status of the answer */
  char      *response;         /* its JSON body */
  gboolean   replayed;         /* an idempotent replay of a stored answer */
  gint64     position;         /* of the appended event, 0 when none */
  gint64     version;
  gint64     prev;             /* of the appended event */
  char      *frame;            /* the appended event as an SSE frame, from
                                * stores that make it (NULL otherwise) */
  gsize      frame_len;

  gpointer   user_data;        /* the caller's, untouched by the store */
} OdJob;

OdJob    *od_job_new          (OdCommand        *command,
                               const char       *actor,
                               const char       *idempotency_key,
                               const char       *body,
                               gsize             body_len);
void      od_job_free         (OdJob            *job);
void      od_job_set_success  (OdJob            *job,
                               gint64            version,
                               gint64            position);
void      od_job_set_problem  (OdJob            *job,
                               OdProblem        *problem);

void      od_store_append_int   (GString          *out,
                                 gint64            value);
void      od_store_append_event (GString          *out,
                                 const OdEvent    *event,
                                 gboolean          frame);

/* Asked before a batch commits: appends to BATCH the jobs that arrived
 * since it was taken, returns how many it appended (0: commit now). */
typedef guint (*OdStoreMoreFunc) (GPtrArray *batch,
                                  gpointer   user_data);

/* Called for one event of a read; the event and its strings are the
 * store's, valid during the call only.  Returns FALSE to stop the read. */
typedef gboolean (*OdEventVisitFunc) (const OdEvent *event,
                                      gpointer       user_data);

/* Called for a run of N events of a read, FIRST to LAST, as their SSE
 * frames: the bytes od_event_append_sse () gives for each, LEN of them
 * in all (not NUL-terminated), the store's and valid during the call
 * only.  Returns FALSE to stop the read. */
typedef gboolean (*OdFramesVisitFunc) (gint64      first,
                                       gint64      last,
                                       guint       n,
                                       const char *frames,
                                       gsize       len,
                                       gpointer    user_data);

#define OD_TYPE_STORE (od_store_get_type ())
G_DECLARE_INTERFACE (OdStore, od_store, OD, STORE, GObject)

/* Every method blocks; the server calls them from worker threads, never
 * from its main loop.  execute () is only ever called from one thread at a
 * time per store object; the read methods may run on any thread at once. */
struct _OdStoreInterface
{
  GTypeInterface parent_iface;

  /* Decides every job in order (a later job sees the effect of an earlier
   * one on the same order), appends their events, stores the answers of
   * jobs that carry an idempotency key, and commits the whole batch
   * durably once (group commit).  On FALSE nothing of the batch is
   * committed and no job has an answer. */
  gboolean   (*execute)     (OdStore  *self,
                             OdJob   **jobs,
                             guint     n_jobs,
                             GError  **error);

  /* execute () of the OdJob *s of batch, and before the commit, of the
   * jobs more () appends to it, decided after those before them in the
   * same transaction: commands that reach the writer while it decides a
   * batch share its commit instead of waiting for the next.  On FALSE no
   * job of batch (appended ones too) has an answer.  Optional: execute ()
   * of the batch as it is when NULL. */
  gboolean   (*execute_more) (OdStore          *self,
                              GPtrArray        *batch,
                              OdStoreMoreFunc   more,
                              gpointer          user_data,
                              GError          **error);

  /* Events with position > after, ascending, at most limit, each with
   * `prev` set, never one a later call could precede with a smaller
   * position.  head receives the newest position a reader may see. */
  GPtrArray *(*read_events) (OdStore  *self,
                             gint64    after,
                             guint     limit,
                             gint64   *head,
                             GError  **error);

  /* The events read_events () would return, one call of visit each in
   * order until it returns FALSE, with no allocation per event: what
   * replay and the tail read, which only format each event once.
   * Optional: through read_events () when NULL. */
  gboolean   (*visit_events) (OdStore          *self,
                              gint64            after,
                              guint             limit,
                              gint64           *head,
                              OdEventVisitFunc  visit,
                              gpointer          user_data,
                              GError          **error);

  /* The events with after < position <= upto that visit_events () would
   * give, at most limit, as runs of frames: a store that keeps its
   * frames hands them over as stored, which is what makes replay cheap.
   * Optional: formatted from visit_events () when NULL. */
  gboolean   (*visit_frames) (OdStore           *self,
                              gint64             after,
                              gint64             upto,
                              guint              limit,
                              gint64            *head,
                              OdFramesVisitFunc  visit,
                              gpointer           user_data,
                              GError           **error);

  gboolean   (*get_head)    (OdStore  *self,
                             gint64   *head,
                             GError  **error);

  /* Readiness: a trivial transaction that shows the store can be read
   * and written now; head receives the head.  Optional: get_head () when
   * NULL. */
  gboolean   (*check)       (OdStore  *self,
                             gint64   *head,
                             GError  **error);

  /* Feeds the canonical line (od_digest_add_event) of every event with
   * after < position <= upto, ascending, to sum; count receives their
   * number.  upto is at most a head already read.  Optional: paged
   * through read_events () when NULL. */
  gboolean   (*digest)      (OdStore   *self,
                             gint64     after,
                             gint64     upto,
                             OdDigest  *sum,
                             gint64    *count,
                             GError   **error);
};

OdStore   *od_store_open        (const char  *uri,
                                 GError     **error);
gboolean   od_store_execute     (OdStore     *self,
                                 OdJob      **jobs,
                                 guint        n_jobs,
                                 GError     **error);
gboolean   od_store_execute_more (OdStore         *self,
                                  GPtrArray       *batch,
                                  OdStoreMoreFunc  more,
                                  gpointer         user_data,
                                  GError         **error);
GPtrArray *od_store_read_events (OdStore     *self,
                                 gint64       after,
                                 guint        limit,
                                 gint64      *head,
                                 GError     **error);
gboolean   od_store_visit_events (OdStore         *self,
                                  gint64           after,
                                  guint            limit,
                                  gint64          *head,
                                  OdEventVisitFunc visit,
                                  gpointer         user_data,
                                  GError         **error);
gboolean   od_store_visit_frames (OdStore          *self,
                                  gint64            after,
                                  gint64            upto,
                                  guint             limit,
                                  gint64           *head,
                                  OdFramesVisitFunc visit,
                                  gpointer          user_data,
                                  GError          **error);
gboolean   od_store_get_head    (OdStore     *self,
                                 gint64      *head,
                                 GError     **error);
gboolean   od_store_check       (OdStore     *self,
                                 gint64      *head,
                                 GError     **error);
gboolean   od_store_digest      (OdStore     *self,
                                 gint64       after,
                                 gint64       upto,
                                 OdDigest    *sum,
                                 gint64      *count,
                                 GError     **error);
void       od_store_emit_appended (OdStore   *self);
/* Folds one stored event into ORDER, as od_order_apply () does from
 * its parsed data. */
void       od_store_fold_event  (OdOrder     *order,
                                 const char  *type,
                                 const char  *data,
                                 gint64       version,
                                 gint64       position,
                                 const char  *recorded_at);

/* Idempotency keys are kept at least this long (the contract says 24 h). */
#define OD_IDEMPOTENCY_RETENTION_USEC (48 * G_TIME_SPAN_HOUR)

G_END_DECLS

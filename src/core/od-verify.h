/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-cache.h"

G_BEGIN_DECLS

/* Proves the cache right against its server, and repairs it:
 *
 * 1. stored events = the server's events: digests of ranges
 *    (GET /v1/events/digest) against the same digest computed from
 *    order_events, bisected down to ranges of a few hundred positions,
 *    which are read again with the page endpoint and compared event by
 *    event (edited, missing and extra events);
 * 2. views = the fold of the stored events: every order (or those touched
 *    in the range) folded again from order_events with od_order_apply and
 *    the cache's contract checks, compared with orders, order_items,
 *    inconsistent_orders, and status_counts with the orders.
 *
 * Reads use a connection of their own in one read transaction (a
 * snapshot: sync goes on meanwhile); repairs go through the cache's writer
 * in one transaction, which folds again what it writes, so a repair never
 * undoes an event applied meanwhile.  Every run is recorded in
 * verify_runs.  A cache whose first events are not the server's is "not
 * this server's log" (OD_VERIFY_ERROR_FOREIGN_LOG) and is never repaired. */

#define OD_VERIFY_ERROR (od_verify_error_quark ())
GQuark od_verify_error_quark (void);

typedef enum
{
  OD_VERIFY_ERROR_FOREIGN_LOG,
  OD_VERIFY_ERROR_SERVER,
  OD_VERIFY_ERROR_SIGN_IN,   /* 401/403 */
} OdVerifyError;

typedef struct
{
  gint64     after;            /* the range checked: after < position <= upto */
  gint64     upto;
  gint64     events_checked;   /* stored events in the range */
  gint64     orders_checked;
  guint      requests;         /* HTTP requests made */
  GArray    *positions;        /* gint64: events that differed (edited, missing, extra) */
  GPtrArray *orders;           /* char *: orders whose views differed */
  gboolean   counts_differed;  /* status_counts did not match the orders */
  gboolean   repaired;         /* everything that differed was repaired */
  double     events_seconds;   /* time of the event check */
  double     views_seconds;    /* time of the re-fold */
} OdVerifyReport;

void            od_verify_report_free  (OdVerifyReport *report);
gboolean        od_verify_report_clean (const OdVerifyReport *report);
/* {"after":…,"upto":…,"positions":[…],"orders":[…],"counts_differed":…,…} */
char           *od_verify_report_to_json (const OdVerifyReport *report);

typedef void (*OdVerifyProgress) (double   fraction,
                                  gpointer user_data);

/* Blocking: for a worker thread only, never the thread that opened the
 * cache (its repairs complete through that thread's main context), which
 * uses od_verify_run_async(); cache may be in use by sync meanwhile.  token may be
 * NULL.  after < 0 means "since the last verified position" (0 when
 * never).  tls_database: the authorities to trust for HTTPS (NULL: the
 * system's). */
OdVerifyReport *od_verify_run          (OdCache          *cache,
                                        const char       *server_url,
                                        const char       *token,
                                        GTlsDatabase     *tls_database,
                                        gint64            after,
                                        gboolean          repair,
                                        OdVerifyProgress  progress,
                                        gpointer          progress_data,
                                        GCancellable     *cancellable,
                                        GError          **error);

/* The last run recorded in the cache: FALSE when there is none. */
gboolean        od_verify_get_last     (OdCache          *cache,
                                        gint64           *verified_at_usec,
                                        gint64           *upto,
                                        char            **result,
                                        GError          **error);

typedef enum
{
  OD_VERIFY_STEP_EVENTS,   /* done/total: positions compared by digest */
  OD_VERIFY_STEP_VIEWS,    /* done/total: orders folded again and compared */
} OdVerifyStep;

typedef void (*OdVerifyStepFunc) (OdVerifyStep step,
                                  gint64       done,
                                  gint64       total,
                                  gpointer     user_data);

/* The same, in a thread; completes on the caller's thread-default
 * context. */
void            od_verify_run_async    (OdCache            *cache,
                                        const char         *server_url,
                                        const char         *token,
                                        GTlsDatabase       *tls_database,
                                        gint64              after,
                                        gboolean            repair,
                                        GCancellable       *cancellable,
                                        GAsyncReadyCallback callback,
                                        gpointer            user_data);
/* The same with steps reported on the caller's thread-default context
 * (ranges of about a fiftieth of the positions, then every 1,024
 * orders), and, when paced, a rest after each piece as long as the piece
 * took: the automatic run, which must not slow the list or sync. */
void            od_verify_run_full_async (OdCache            *cache,
                                          const char         *server_url,
                                          const char         *token,
                                          GTlsDatabase       *tls_database,
                                          gint64              after,
                                          gboolean            repair,
                                          gboolean            paced,
                                          OdVerifyStepFunc    step,
                                          gpointer            step_data,
                                          GDestroyNotify      step_destroy,
                                          GCancellable       *cancellable,
                                          GAsyncReadyCallback callback,
                                          gpointer            user_data);
OdVerifyReport *od_verify_run_finish   (GAsyncResult       *result,
                                        GError            **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdVerifyReport, od_verify_report_free)

G_END_DECLS

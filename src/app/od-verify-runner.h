/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

#include "od-core.h"

G_BEGIN_DECLS

/* What the last verification of this session said, for the banner. */
typedef enum
{
  OD_VERIFY_OUTCOME_NONE,      /* no run, a clean automatic run, or dismissed */
  OD_VERIFY_OUTCOME_CLEAN,     /* a run asked for found nothing */
  OD_VERIFY_OUTCOME_DIFFERS,   /* differences found, not repaired */
  OD_VERIFY_OUTCOME_REPAIRED,
  OD_VERIFY_OUTCOME_FOREIGN,   /* the cache is of another server's log */
  OD_VERIFY_OUTCOME_FAILED,    /* the server could not be asked */
} OdVerifyOutcome;

#define OD_TYPE_VERIFY_RUNNER (od_verify_runner_get_type ())

G_DECLARE_FINAL_TYPE (OdVerifyRunner, od_verify_runner, OD, VERIFY_RUNNER, GObject)

OdVerifyRunner  *od_verify_runner_new              (void);
/* The session to verify (NULL cache: none; a run going on is cancelled).
 * lag tells of catch-ups, for the automatic run. */
void             od_verify_runner_set_session      (OdVerifyRunner *self,
                                                    OdCache        *cache,
                                                    OdLag          *lag,
                                                    const char     *server_url);
void             od_verify_runner_set_token        (OdVerifyRunner *self,
                                                    const char     *token);
void             od_verify_runner_set_tls_database (OdVerifyRunner *self,
                                                    GTlsDatabase   *database);
/* "run", "repair", "cancel", and "dismiss": insert as "verify". */
GActionGroup    *od_verify_runner_get_actions      (OdVerifyRunner *self);
/* automatic: since the last verified position, at a modest pace, and
 * quiet when clean. */
gboolean         od_verify_runner_start            (OdVerifyRunner *self,
                                                    gboolean        repair,
                                                    gboolean        automatic);
void             od_verify_runner_cancel           (OdVerifyRunner *self);

gboolean         od_verify_runner_get_running      (OdVerifyRunner *self);
gboolean         od_verify_runner_get_automatic    (OdVerifyRunner *self);
double           od_verify_runner_get_fraction     (OdVerifyRunner *self);
const char      *od_verify_runner_get_progress_text (OdVerifyRunner *self);
/* "Verified up to P · T", "Never verified", … */
const char      *od_verify_runner_get_verified_text (OdVerifyRunner *self);
OdVerifyOutcome  od_verify_runner_get_outcome      (OdVerifyRunner *self);
/* What the outcome says, in a sentence or two. */
const char      *od_verify_runner_get_message      (OdVerifyRunner *self);

G_END_DECLS

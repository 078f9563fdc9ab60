/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  OD_PROBLEM_MALFORMED,
  OD_PROBLEM_UNAUTHORIZED,
  OD_PROBLEM_FORBIDDEN,
  OD_PROBLEM_NOT_FOUND,
  OD_PROBLEM_METHOD_NOT_ALLOWED,
  OD_PROBLEM_REQUEST_TIMEOUT,
  OD_PROBLEM_VERSION_CONFLICT,
  OD_PROBLEM_INVALID_STATE,
  OD_PROBLEM_ORDER_EXISTS,
  OD_PROBLEM_IDEMPOTENCY_KEY_MISSING,
  OD_PROBLEM_IDEMPOTENCY_IN_FLIGHT,
  OD_PROBLEM_IDEMPOTENCY_KEY_REUSED,
  OD_PROBLEM_INVALID_COMMAND,
  OD_PROBLEM_PAYLOAD_TOO_LARGE,
  OD_PROBLEM_UNSUPPORTED_MEDIA_TYPE,
  OD_PROBLEM_HEADERS_TOO_LARGE,
  OD_PROBLEM_RATE_LIMITED,
  OD_PROBLEM_INTERNAL,
  OD_PROBLEM_UNAVAILABLE,
  OD_PROBLEM_NOT_READY,
  OD_PROBLEM_REFUND_EXCEEDS_TOTAL,
  OD_PROBLEM_UNKNOWN, /* a code this build does not know, parsed from a peer */
} OdProblemCode;

typedef struct
{
  char *field;
  char *message;
} OdFieldError;

typedef struct
{
  OdProblemCode  code;
  guint          status;
  char          *code_name;  /* as on the wire, kept for unknown codes */
  char          *title;
  char          *detail;
  gint64         current_version; /* -1 when absent */
  guint          retry_after;     /* seconds, 0 when absent */
  gint64         refundable_cents; /* refund_exceeds_total: -1 when absent */
  GPtrArray     *errors;          /* OdFieldError, may be NULL */
} OdProblem;

OdProblem   *od_problem_new            (OdProblemCode    code,
                                        const char      *detail_format,
                                        ...) G_GNUC_PRINTF (2, 3);
void         od_problem_free           (OdProblem       *problem);
void         od_problem_add_error      (OdProblem       *problem,
                                        const char      *field,
                                        const char      *message);
guint        od_problem_code_status    (OdProblemCode    code);
const char  *od_problem_code_name      (OdProblemCode    code);
OdProblemCode od_problem_code_from_name (const char     *name);
char        *od_problem_to_json        (const OdProblem *problem);
OdProblem   *od_problem_parse          (guint            status,
                                        const char      *body,
                                        gsize            len);
void         od_field_error_free       (OdFieldError    *error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdProblem, od_problem_free)

G_END_DECLS

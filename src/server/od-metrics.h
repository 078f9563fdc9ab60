/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Process-wide counters for GET /metrics (Prometheus text format).  Every
 * function may be called from any thread. */

typedef enum
{
  OD_METRIC_EVENTS_APPENDED,
  OD_METRIC_STREAM_BYTES,
  OD_METRIC_SLOW_SUBSCRIBERS,
  OD_METRIC_STORE_ERRORS,
  OD_METRIC_RATE_LIMITED,
  OD_METRIC_N_COUNTERS
} OdMetricCounter;

void   od_metrics_init            (void);
void   od_metrics_add             (OdMetricCounter  counter,
                                   guint64          n);
/* type NULL: not known (the command was refused before it was parsed). */
void   od_metrics_command         (const char      *type,
                                   const char      *outcome);
/* From receiving a command to its batch being durable. */
void   od_metrics_command_latency (gint64           usec);
void   od_metrics_batch           (guint            n_commands);
char  *od_metrics_render          (gint64           head,
                                   guint            subscribers);

G_END_DECLS

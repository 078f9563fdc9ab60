/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-core.h"

G_BEGIN_DECLS

/* A synthetic event log for tests that need no server: orders created,
 * filled, placed, shipped, delivered or cancelled, ~5 events an order,
 * with contiguous positions (prev = position - 1). */
typedef struct
{
  GPtrArray *events;   /* OdEvent */
  gint64     head;
} OdTestLog;

OdTestLog  *od_test_log_new        (guint        n_orders,
                                    guint32      seed);
void        od_test_log_free       (OdTestLog   *log);
OdEvent    *od_test_event_new      (gint64       position,
                                    gint64       prev,
                                    const char  *order_id,
                                    gint64       version,
                                    const char  *type,
                                    const char  *data_json);
GPtrArray  *od_test_log_slice      (OdTestLog   *log,
                                    guint        from,
                                    guint        to);

/* Folds events (OdEvent) with od_order_apply into order_id → OdOrder. */
GHashTable *od_test_fold           (GPtrArray   *events);

/* Compares the cache's orders and order_items with a fold; on mismatch
 * returns FALSE and says why in *why. */
gboolean    od_test_cache_equals_fold (OdCache    *cache,
                                       GHashTable *fold,
                                       char      **why);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdTestLog, od_test_log_free)

G_END_DECLS

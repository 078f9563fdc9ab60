/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-verify-banner.h"
#include "od-window.h"

G_BEGIN_DECLS

/* For tests and benchmarks only: the window's parts, to drive and read
 * them.  Application code goes through the window's actions instead. */
OdOrderList    *od_window_get_order_list    (OdWindow      *self);
OdOrderDetail  *od_window_get_order_detail  (OdWindow      *self);
OdLagIndicator *od_window_get_lag_indicator (OdWindow      *self);
OdVerifyBanner *od_window_get_verify_banner (OdWindow      *self);
OdVerifyRunner *od_window_get_verify_runner (OdWindow      *self);
OdCache        *od_window_get_cache         (OdWindow      *self);
OdOutbox       *od_window_get_outbox        (OdWindow      *self);
OdSyncEngine   *od_window_get_sync_engine   (OdWindow      *self);
const char     *od_window_get_last_toast    (OdWindow      *self);
const char     *od_window_get_page          (OdWindow      *self);

G_END_DECLS

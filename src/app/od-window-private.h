/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-ledger-window.h"
#include "od-welcome.h"
#include "od-verify-banner.h"
#include "od-window.h"

G_BEGIN_DECLS

/* Shared by od-window.c and od-window-actions.c. */
struct _OdWindow
{
  AdwApplicationWindow  parent_instance;

  AdwToastOverlay      *toast_overlay;
  GtkStack             *main_stack;
  OdWelcome            *welcome;
  AdwWindowTitle       *window_title;
  GtkLabel             *pending_label;
  OdLagIndicator       *lag_indicator;
  GtkRevealer          *progress_revealer;
  GtkLabel             *progress_label;
  GtkProgressBar       *progress_bar;
  GtkWidget            *header_bar;
  GtkWidget            *ledger_button;
  GtkWidget            *back_button;
  GtkWidget            *new_button;
  GtkWidget            *search_button;
  GtkWidget            *lag_header_box;
  GtkWidget            *lag_strip;
  /* AdwLeaflet from the template; on libadwaita 1.4+ it is replaced by an
   * AdwNavigationSplitView (see setup_split_view()) and is NULL. */
  GtkWidget            *leaflet;
  GtkWidget            *split_view;
  guint                 relayout_source;
  guint                 label_toasts_source;
  gboolean              disposed;
  OdOrderList          *order_list;
  OdOrderDetail        *order_detail;
  OdVerifyBanner       *verify_banner;
  OdVerifyRunner       *verifier;

  OdSession            *session;
  GCancellable         *cancellable;
  GHashTable           *descriptions; /* command id → what the operator did */
  OdLedgerWindow       *ledger;

  guint                 refresh_source;
  gint64                last_refresh;
  gboolean              refresh_wanted;

  /* An order created here, to select and show once it is cached. */
  char                 *created_id;

  /* Catch-up progress. */
  gint64                progress_start_position;
  gint64                progress_start_time;
  char                 *last_toast;
};

void             _od_window_class_actions_init  (GtkWidgetClass  *widget_class);
/* Enables the order actions the shown order's status allows. */
void             _od_window_actions_update      (OdWindow        *self);
void             _od_window_show_detail         (OdWindow        *self,
                                                 gboolean         detail);
/* prefill: a command to edit (from the outbox), else NULL. */
OdCommandDialog *_od_window_open_command_dialog (OdWindow        *self,
                                                 OdCommandType    type,
                                                 const OdCommand *prefill);

/* For tests and benchmarks only: the window's parts, to drive and read
 * them.  Application code goes through the window's actions instead. */
OdOrderList    *od_window_get_order_list    (OdWindow      *self);
OdOrderDetail  *od_window_get_order_detail  (OdWindow      *self);
OdLagIndicator *od_window_get_lag_indicator (OdWindow      *self);
OdVerifyBanner *od_window_get_verify_banner (OdWindow      *self);
OdVerifyRunner *od_window_get_verify_runner (OdWindow      *self);
OdSession      *od_window_get_session       (OdWindow      *self);
OdCache        *od_window_get_cache         (OdWindow      *self);
OdOutbox       *od_window_get_outbox        (OdWindow      *self);
OdSyncEngine   *od_window_get_sync_engine   (OdWindow      *self);
const char     *od_window_get_last_toast    (OdWindow      *self);
const char     *od_window_get_page          (OdWindow      *self);

G_END_DECLS

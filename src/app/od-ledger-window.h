/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "od-cache.h"
#include "od-outbox.h"

G_BEGIN_DECLS

#define OD_TYPE_LEDGER_WINDOW (od_ledger_window_get_type ())
G_DECLARE_FINAL_TYPE (OdLedgerWindow, od_ledger_window, OD, LEDGER_WINDOW, AdwWindow)

/* Emits "edit" (OdCommand *, owned by the window) to edit and resubmit. */
OdLedgerWindow *od_ledger_window_new    (GtkWindow      *parent,
                                         OdOutbox       *outbox,
                                         OdCache        *cache);
void            od_ledger_window_reload (OdLedgerWindow *self);

G_END_DECLS

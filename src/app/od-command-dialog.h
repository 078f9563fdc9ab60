/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <adwaita.h>

#include "od-command.h"
#include "od-order.h"

G_BEGIN_DECLS

#define OD_TYPE_COMMAND_DIALOG (od_command_dialog_get_type ())
G_DECLARE_FINAL_TYPE (OdCommandDialog, od_command_dialog, OD, COMMAND_DIALOG, AdwWindow)

/* order: the order as the cache has it now (NULL for CreateOrder);
 * prefill: a command to edit (e.g. a refused one), or NULL.
 * Emits "submit" (OdCommand *, owned by the dialog) and closes. */
OdCommandDialog *od_command_dialog_new             (GtkWindow       *parent,
                                                    OdCommandType    type,
                                                    const OdOrder   *order,
                                                    const OdCommand *prefill);
const char      *od_command_dialog_get_description (OdCommandDialog *self);

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-command-dialog.h"

G_BEGIN_DECLS

/* For tests only: drives the dialog as an operator would.  Application
 * code only creates the dialog and connects to "submit". */

/* Sets a field by its wire name ("customer_name", "quantity",
 * "unit_price" as an amount, …) as if typed; returns the field's error
 * message (translated), or NULL when valid. */
const char      *od_command_dialog_set_field       (OdCommandDialog *self,
                                                    const char      *name,
                                                    const char      *text);
gboolean         od_command_dialog_can_send        (OdCommandDialog *self);
void             od_command_dialog_send            (OdCommandDialog *self);

G_END_DECLS

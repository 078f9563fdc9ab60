/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

void od_tooltip_set (GtkWidget  *widget,
                     const char *text);

void od_accessible_label_buttons (GtkWidget  *root,
                                  const char *label);

G_END_DECLS

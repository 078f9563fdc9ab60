/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include "od-tooltip.h"

/* A tooltip looked up when it is about to show.  In GTK 4.8,
 * gtk_widget_set_tooltip_text() asks the display where the pointer is
 * (two X round trips) on every call, in case that tooltip is showing:
 * screens that build a row per line or per command, or check a form on
 * every key, paid that per row and per field (a list search spent two
 * thirds of its time there). */

static gboolean
on_query_tooltip (GtkWidget  *widget,
                  int         x,
                  int         y,
                  gboolean    keyboard_mode,
                  GtkTooltip *tooltip,
                  gpointer    user_data)
{
  const char *text = g_object_get_data (G_OBJECT (widget), "od-tooltip");

  if (text == NULL)
    return FALSE;
  gtk_tooltip_set_text (tooltip, text);
  return TRUE;
}

void
od_tooltip_set (GtkWidget  *widget,
                const char *text)
{
  g_return_if_fail (GTK_IS_WIDGET (widget));

  if (g_object_get_data (G_OBJECT (widget), "od-tooltip-handler") == NULL)
    {
      g_signal_connect (widget, "query-tooltip", G_CALLBACK (on_query_tooltip), NULL);
      g_object_set_data (G_OBJECT (widget), "od-tooltip-handler", GINT_TO_POINTER (TRUE));
    }
  g_object_set_data_full (G_OBJECT (widget), "od-tooltip", g_strdup (text), g_free);
  gtk_widget_set_has_tooltip (widget, text != NULL);
  /* gtk_widget_set_tooltip_text() would also tell assistive technology;
   * this is the same, without the display round trips. */
  if (text != NULL)
    gtk_accessible_update_property (GTK_ACCESSIBLE (widget),
                                    GTK_ACCESSIBLE_PROPERTY_DESCRIPTION, text, -1);
  else
    gtk_accessible_reset_property (GTK_ACCESSIBLE (widget), GTK_ACCESSIBLE_PROPERTY_DESCRIPTION);
}

/* Names the icon-only buttons a composite widget makes itself (the
 * show-text toggle of AdwPasswordEntryRow, a toast's close button: both
 * read "GtkImage" in libadwaita 1.2). */
void
od_accessible_label_buttons (GtkWidget  *root,
                             const char *label)
{
  g_return_if_fail (GTK_IS_WIDGET (root));

  for (GtkWidget *child = gtk_widget_get_first_child (root); child != NULL;
       child = gtk_widget_get_next_sibling (child))
    {
      if (GTK_IS_BUTTON (child) && gtk_button_get_icon_name (GTK_BUTTON (child)) != NULL)
        gtk_accessible_update_property (GTK_ACCESSIBLE (child), GTK_ACCESSIBLE_PROPERTY_LABEL, label, -1);
      od_accessible_label_buttons (child, label);
    }
}

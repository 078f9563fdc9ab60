/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-window-private.h"

/* The window's actions (win.*, and order.* for the selected order), as
 * gnome-text-editor keeps editor-window-actions.c: what each one does,
 * and when the order's are enabled. */

static void
back_action (GtkWidget  *widget,
             const char *action_name,
             GVariant   *parameter)
{
  _od_window_show_detail (OD_WINDOW (widget), FALSE);
}

static void
on_ledger_edit (OdLedgerWindow *ledger,
                gpointer        command,
                OdWindow       *self)
{
  _od_window_open_command_dialog (self, ((OdCommand *) command)->type, command);
}

/* The commands on the selected order, for the list's row menu and the
 * keyboard; each is enabled only when the order's status allows it. */
static const struct
{
  const char    *action;
  OdCommandType  type;
} order_actions[] = {
  { "order.add-item", OD_COMMAND_ADD_ITEM },
  { "order.place", OD_COMMAND_PLACE_ORDER },
  { "order.ship", OD_COMMAND_SHIP_ORDER },
  { "order.mark-delivered", OD_COMMAND_MARK_DELIVERED },
  { "order.cancel", OD_COMMAND_CANCEL_ORDER },
  { "order.add-note", OD_COMMAND_ADD_ORDER_NOTE },
  { "order.refund", OD_COMMAND_REFUND_ORDER },
};

void
_od_window_actions_update (OdWindow *self)
{
  const OdOrder *order = od_order_detail_get_order (self->order_detail);
  const char *selected = od_order_list_get_selected_order_id (self->order_list);
  /* The order shown is the selected one (not a created order shown
   * without being in the list, nor an old version of it). */
  gboolean current = order != NULL && self->session != NULL
                     && g_strcmp0 (order->order_id, selected) == 0;

  for (guint i = 0; i < G_N_ELEMENTS (order_actions); i++)
    gtk_widget_action_set_enabled (GTK_WIDGET (self), order_actions[i].action,
                                   current && od_order_allows (order, order_actions[i].type));
}

static void
order_action (GtkWidget  *widget,
              const char *action_name,
              GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);

  for (guint i = 0; i < G_N_ELEMENTS (order_actions); i++)
    if (g_str_equal (action_name, order_actions[i].action))
      _od_window_open_command_dialog (self, order_actions[i].type, NULL);
}

static void
new_order_action (GtkWidget  *widget,
                  const char *action_name,
                  GVariant   *parameter)
{
  _od_window_open_command_dialog (OD_WINDOW (widget), OD_COMMAND_CREATE_ORDER, NULL);
}

static void
search_action (GtkWidget  *widget,
               const char *action_name,
               GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);

  _od_window_show_detail (self, FALSE);
  od_order_list_focus_search (self->order_list);
}

static void
ledger_action (GtkWidget  *widget,
               const char *action_name,
               GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);

  if (self->session == NULL)
    return;
  if (self->ledger == NULL)
    {
      self->ledger = od_ledger_window_new (GTK_WINDOW (self), od_session_get_outbox (self->session),
                                           od_session_get_cache (self->session));
      g_object_add_weak_pointer (G_OBJECT (self->ledger), (gpointer *) &self->ledger);
      g_signal_connect_object (self->ledger, "edit", G_CALLBACK (on_ledger_edit), self, 0);
    }
  gtk_window_present (GTK_WINDOW (self->ledger));
}

static void
reconnect_action (GtkWidget  *widget,
                  const char *action_name,
                  GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);

  if (self->session == NULL)
    return;
  if (!od_session_has_token (self->session))
    {
      od_window_show_preferences (self);
      return;
    }
  od_session_reconnect (self->session);
}

static void
on_rebuilt (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(OdWindow) self = user_data;
  g_autoptr(GError) error = NULL;

  /* The session has the sync engine replay the log (when signed in). */
  if (!od_session_rebuild_finish (OD_SESSION (source), result, &error))
    {
      g_autofree char *message = g_strdup_printf (_("Could not rebuild the cache: %s"), error->message);

      od_window_toast (self, message);
      return;
    }
  od_window_toast (self, _("Cache emptied: replaying the event log"));
  if (self->session != NULL)
    od_order_list_set_cache (self->order_list, od_session_get_cache (self->session));
}

static void
on_rebuild_response (AdwMessageDialog *dialog,
                     const char       *response,
                     OdWindow         *self)
{
  if (g_strcmp0 (response, "rebuild") != 0 || self->session == NULL)
    return;
  od_session_rebuild_async (self->session, self->cancellable, on_rebuilt, g_object_ref (self));
}

static void
rebuild_action (GtkWidget  *widget,
                const char *action_name,
                GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);
  GtkWidget *dialog;

  if (self->session == NULL)
    return;
  dialog = adw_message_dialog_new (GTK_WINDOW (self), _("Rebuild the Cache?"),
                                   _("Every order is dropped from this computer and read again from the server’s event log. Queued commands are kept."));
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog),
                                    "cancel", _("_Cancel"),
                                    "rebuild", _("_Rebuild"),
                                    NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "rebuild",
                                              ADW_RESPONSE_DESTRUCTIVE);
  g_signal_connect_object (dialog, "response", G_CALLBACK (on_rebuild_response), self, 0);
  gtk_window_present (GTK_WINDOW (dialog));
}

gboolean
od_window_export_csv (OdWindow  *self,
                      GFile     *file,
                      GError   **error)
{
  g_autoptr(GFileOutputStream) stream = NULL;
  OdOrderListModel *model;

  g_return_val_if_fail (OD_IS_WINDOW (self), FALSE);

  model = od_order_list_get_model (self->order_list);
  if (model == NULL || self->session == NULL)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED, _("No cache is open"));
      return FALSE;
    }
  /* The rows of the view as it is filtered, searched and sorted now;
   * the core stamps the file with the position it is as of. */
  stream = g_file_replace (file, NULL, FALSE, G_FILE_CREATE_REPLACE_DESTINATION, NULL, error);
  return stream != NULL
      && od_query_export_csv (od_session_get_cache (self->session), od_order_list_model_get_query (model),
                              G_OUTPUT_STREAM (stream), NULL, error)
      && g_output_stream_close (G_OUTPUT_STREAM (stream), NULL, error);
}

typedef struct
{
  OdWindow         *self;
  GFile            *file;
  GFileOutputStream *stream;
} ExportJob;

static void
export_done (GObject      *source,
             GAsyncResult *result,
             gpointer      data)
{
  ExportJob *job = data;
  g_autoptr(GError) error = NULL;
  gboolean ok = od_query_export_csv_finish (OD_CACHE (source), result, &error);

  if (ok)
    ok = g_output_stream_close (G_OUTPUT_STREAM (job->stream), NULL, &error);
  else
    {
      /* Closing a replacing stream with a cancelled cancellable keeps
       * the file that was there: a failed export leaves no half file. */
      g_autoptr(GCancellable) abort = g_cancellable_new ();

      g_cancellable_cancel (abort);
      g_output_stream_close (G_OUTPUT_STREAM (job->stream), abort, NULL);
    }
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    ;
  else if (ok)
    {
      g_autofree char *name = g_file_get_basename (job->file);
      g_autofree char *message = g_strdup_printf (_("Exported to %s"), name);

      od_window_toast (job->self, message);
    }
  else
    {
      g_autofree char *message = g_strdup_printf (_("Could not export: %s"), error->message);

      od_window_toast (job->self, message);
    }
  g_object_unref (job->self);
  g_object_unref (job->file);
  g_object_unref (job->stream);
  g_free (job);
}

static void
on_export_response (GtkNativeDialog *dialog,
                    int              response,
                    OdWindow        *self)
{
  g_autoptr(GError) error = NULL;
  OdOrderListModel *model = od_order_list_get_model (self->order_list);

  if (response == GTK_RESPONSE_ACCEPT && model != NULL && self->session != NULL)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autoptr(GFileOutputStream) stream = g_file_replace (file, NULL, FALSE,
                                                            G_FILE_CREATE_REPLACE_DESTINATION,
                                                            NULL, &error);

      /* A million rows take seconds: written by a worker thread with its
       * own read connection while the window goes on. */
      if (stream != NULL)
        {
          ExportJob *job = g_new0 (ExportJob, 1);

          job->self = g_object_ref (self);
          job->file = g_object_ref (file);
          job->stream = g_steal_pointer (&stream);
          od_window_toast (self, _("Exporting…"));
          od_query_export_csv_async (od_session_get_cache (self->session),
                                     od_order_list_model_get_query (model),
                                     G_OUTPUT_STREAM (job->stream), self->cancellable,
                                     export_done, job);
        }
      else
        {
          g_autofree char *message = g_strdup_printf (_("Could not export: %s"), error->message);

          od_window_toast (self, message);
        }
    }
  gtk_native_dialog_destroy (dialog);
  g_object_unref (dialog);
}

static void
export_action (GtkWidget  *widget,
               const char *action_name,
               GVariant   *parameter)
{
  OdWindow *self = OD_WINDOW (widget);
  GtkFileChooserNative *chooser;
  g_autoptr(GtkFileFilter) filter = gtk_file_filter_new ();

  if (self->session == NULL)
    return;
  chooser = gtk_file_chooser_native_new (_("Export Orders"), GTK_WINDOW (self),
                                         GTK_FILE_CHOOSER_ACTION_SAVE, _("_Export"), _("_Cancel"));
  gtk_file_filter_set_name (filter, _("CSV files"));
  gtk_file_filter_add_mime_type (filter, "text/csv");
  gtk_file_filter_add_suffix (filter, "csv");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), filter);
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), "orders.csv");
  g_signal_connect (chooser, "response", G_CALLBACK (on_export_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

void
_od_window_class_actions_init (GtkWidgetClass *widget_class)
{
  gtk_widget_class_install_action (widget_class, "win.new-order", NULL, new_order_action);
  gtk_widget_class_install_action (widget_class, "win.search", NULL, search_action);
  gtk_widget_class_install_action (widget_class, "win.ledger", NULL, ledger_action);
  gtk_widget_class_install_action (widget_class, "win.reconnect", NULL, reconnect_action);
  gtk_widget_class_install_action (widget_class, "win.rebuild", NULL, rebuild_action);
  gtk_widget_class_install_action (widget_class, "win.export", NULL, export_action);
  gtk_widget_class_install_action (widget_class, "win.back", NULL, back_action);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Left, GDK_ALT_MASK, "win.back", NULL);
  for (guint i = 0; i < G_N_ELEMENTS (order_actions); i++)
    gtk_widget_class_install_action (widget_class, order_actions[i].action, NULL, order_action);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <string.h>

#include "od-format.h"
#include "od-lag-indicator.h"
#include "od-ledger-window.h"
#include "od-tooltip.h"

/* The command ledger: every command with where it stands (queued, sent,
 * accepted at P, visible, refused), and what can be done about it. */

#define LEDGER_LIMIT 200

struct _OdLedgerWindow
{
  AdwWindow       parent_instance;

  AdwWindowTitle *window_title;
  GtkStack       *stack;
  GtkListBox     *list;

  OdOutbox       *outbox;
  OdCache        *cache;
  gulong          changed_id;
};

G_DEFINE_FINAL_TYPE (OdLedgerWindow, od_ledger_window, ADW_TYPE_WINDOW)

enum {
  EDIT,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

/* "Cancel order · 01a2496c-ae9e": the command as the rest of the console
 * names it (its toasts, its dialogs), not its wire name, which the
 * row's tooltip still shows with the rest of the body.  A type this
 * console does not know keeps its wire name. */
static char *
command_title (const OdPendingCommand *command)
{
  g_autofree char *short_id = od_format_short_id (command->order_id);
  const char *what = command->type;
  OdCommandType type;

  if (od_command_type_from_name (command->type, &type))
    what = _(od_command_spec (type)->description);
  /* TRANSLATORS: a command in the ledger: what it does · the order */
  return g_strdup_printf (C_("ledger row", "%s · %s"), what, short_id);
}

static char *
describe_state (const OdPendingCommand *command)
{
  g_autofree char *why = NULL;

  /* Queued by another sign-in: never sent in this one's name without
   * consent. */
  if (command->held)
    return g_strdup (_("Held: queued by another sign-in"));
  switch (command->state)
    {
    case OD_COMMAND_STATE_QUEUED:
      if (command->attempts > 0 && command->detail != NULL)
        /* TRANSLATORS: a queued command that could not be sent yet */
        return g_strdup_printf (_("Queued, will retry (%s)"), command->detail);
      return g_strdup (_("Queued"));
    case OD_COMMAND_STATE_SENT:
      return g_strdup (_("Sent, waiting for the answer"));
    case OD_COMMAND_STATE_ACCEPTED:
      /* TRANSLATORS: accepted by the server at a log position */
      return g_strdup_printf (_("Accepted at position %'lld, waiting for the cache"),
                              (long long) command->position);
    case OD_COMMAND_STATE_VISIBLE:
      return g_strdup_printf (_("Visible (position %'lld, %.0f ms after the click)"),
                              (long long) command->position, od_pending_command_latency_ms (command));
    case OD_COMMAND_STATE_REJECTED:
      why = od_format_refusal (command->type, command->order_id, command->code, command->detail);
      if (command->http_status == 403)
        /* TRANSLATORS: the server refused the command for who sent it (e.g. a viewer) */
        return g_strdup_printf (_("Refused, not allowed for this sign-in: %s"), why);
      return g_strdup_printf (_("Refused: %s"), why);
    case OD_COMMAND_STATE_DISCARDED:
      return g_strdup (_("Discarded"));
    default:
      return g_strdup ("");
    }
}

static void
on_discarded (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(OdLedgerWindow) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!od_outbox_discard_finish (OD_OUTBOX (source), result, &error) && error != NULL)
    g_message ("Could not discard: %s", error->message);
  od_ledger_window_reload (self);
}

static void
on_discard (GtkButton      *button,
            OdLedgerWindow *self)
{
  gint64 *id = g_object_get_data (G_OBJECT (button), "od-id");

  od_outbox_discard_async (self->outbox, *id, NULL, on_discarded, g_object_ref (self));
}

static void
on_sent_as_me (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(OdLedgerWindow) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!od_outbox_send_as_me_finish (OD_OUTBOX (source), result, &error) && error != NULL)
    g_message ("Could not send as me: %s", error->message);
  od_ledger_window_reload (self);
}

static void
on_send_as_me (GtkButton      *button,
               OdLedgerWindow *self)
{
  gint64 *id = g_object_get_data (G_OBJECT (button), "od-id");

  od_outbox_send_as_me_async (self->outbox, *id, NULL, on_sent_as_me, g_object_ref (self));
}

static void
on_edit (GtkButton      *button,
         OdLedgerWindow *self)
{
  const char *body = g_object_get_data (G_OBJECT (button), "od-body");
  g_autoptr(OdProblem) problem = NULL;
  g_autoptr(OdCommand) command = od_command_parse (body, strlen (body), &problem);

  if (command != NULL)
    g_signal_emit (self, signals[EDIT], 0, command);
}

static void
on_retry (GtkButton      *button,
          OdLedgerWindow *self)
{
  const char *body = g_object_get_data (G_OBJECT (button), "od-body");

  /* A refused command is final; retrying sends the same body as a new
   * command, with a new Idempotency-Key. */
  od_outbox_submit_json_async (self->outbox, body, NULL, NULL, NULL);
}

static GtkWidget *
add_button (GtkWidget  *row,
            const char *label,
            GCallback   callback,
            gpointer    self)
{
  GtkWidget *button = gtk_button_new_with_mnemonic (label);
  GtkWidget *buttons = g_object_get_data (G_OBJECT (row), "od-buttons");

  /* A row's buttons stand one above the other: side by side, "Erneut
   * versuchen" and "Bearbeiten …" left a 360 px window's row title one
   * letter a line. */
  if (buttons == NULL)
    {
      buttons = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
      gtk_box_set_homogeneous (GTK_BOX (buttons), TRUE);
      gtk_widget_set_valign (buttons, GTK_ALIGN_CENTER);
      gtk_widget_set_margin_top (buttons, 6);
      gtk_widget_set_margin_bottom (buttons, 6);
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), buttons);
      g_object_set_data (G_OBJECT (row), "od-buttons", buttons);
    }
  g_signal_connect (button, "clicked", callback, self);
  gtk_box_append (GTK_BOX (buttons), button);
  return button;
}

void
od_ledger_window_reload (OdLedgerWindow *self)
{
  g_autoptr(GPtrArray) commands = NULL;
  g_autoptr(GError) error = NULL;
  GtkWidget *child;
  g_autofree char *subtitle = NULL;
  guint pending;

  g_return_if_fail (OD_IS_LEDGER_WINDOW (self));

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->list))) != NULL)
    gtk_list_box_remove (self->list, child);

  commands = od_outbox_list (self->outbox, TRUE, LEDGER_LIMIT, &error);
  if (commands == NULL)
    {
      g_warning ("Could not read the outbox: %s", error->message);
      return;
    }
  pending = od_outbox_count_pending (self->outbox);
  subtitle = g_strdup_printf (ngettext ("%u pending", "%u pending", pending), pending);
  adw_window_title_set_subtitle (self->window_title, subtitle);
  gtk_stack_set_visible_child_name (self->stack, commands->len > 0 ? "list" : "empty");

  for (guint i = 0; i < commands->len; i++)
    {
      OdPendingCommand *command = g_ptr_array_index (commands, i);
      GtkWidget *row = adw_action_row_new ();
      g_autofree char *title = command_title (command);
      g_autofree char *state = describe_state (command);
      g_autofree char *when = od_format_time_of_day_or_date (command->created_at);
      g_autofree char *sub = g_strdup_printf ("%s — %s", when, state);

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
      adw_preferences_row_set_use_markup (ADW_PREFERENCES_ROW (row), FALSE);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), sub);
      adw_action_row_set_subtitle_lines (ADW_ACTION_ROW (row), 3);
      od_tooltip_set (row, command->body);

      if (command->held)
        {
          GtkWidget *send = add_button (row, _("Send as _Me"), G_CALLBACK (on_send_as_me), self);
          g_autofree char *send_name = NULL;

          /* TRANSLATORS: accessible name; %s is the command, e.g. "New order · 0193a2" */
          send_name = g_strdup_printf (_("Send %s as me"), title);
          gtk_accessible_update_property (GTK_ACCESSIBLE (send), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                          send_name, -1);
          g_object_set_data_full (G_OBJECT (send), "od-id",
                                  g_memdup2 (&command->id, sizeof (gint64)), g_free);
          gtk_widget_add_css_class (row, "warning");
        }
      if (command->state == OD_COMMAND_STATE_QUEUED || command->held)
        {
          GtkWidget *button = add_button (row, _("_Discard"), G_CALLBACK (on_discard), self);
          g_autofree char *discard_name = NULL;

          /* TRANSLATORS: accessible name; %s is the command, e.g. "New order · 0193a2" */
          discard_name = g_strdup_printf (_("Discard %s"), title);
          gtk_accessible_update_property (GTK_ACCESSIBLE (button), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                          discard_name, -1);
          g_object_set_data_full (G_OBJECT (button), "od-id",
                                  g_memdup2 (&command->id, sizeof (gint64)), g_free);
          gtk_widget_add_css_class (button, "destructive-action");
        }
      if (command->state == OD_COMMAND_STATE_REJECTED)
        {
          GtkWidget *retry = add_button (row, _("_Retry"), G_CALLBACK (on_retry), self);
          GtkWidget *edit = add_button (row, _("_Edit…"), G_CALLBACK (on_edit), self);

          g_object_set_data_full (G_OBJECT (retry), "od-body", g_strdup (command->body), g_free);
          g_object_set_data_full (G_OBJECT (edit), "od-body", g_strdup (command->body), g_free);
          gtk_widget_add_css_class (row, "error");
        }
      gtk_list_box_append (self->list, row);
    }
}

static void
on_outbox_changed (OdCache        *cache,
                   OdLedgerWindow *self)
{
  od_ledger_window_reload (self);
}

static void
on_kick (OdLedgerWindow *self)
{
  od_outbox_kick (self->outbox);
}

OdLedgerWindow *
od_ledger_window_new (GtkWindow *parent,
                      OdOutbox  *outbox,
                      OdCache   *cache)
{
  OdLedgerWindow *self = g_object_new (OD_TYPE_LEDGER_WINDOW, "transient-for", parent, NULL);

  self->outbox = g_object_ref (outbox);
  self->cache = g_object_ref (cache);
  self->changed_id = g_signal_connect (cache, "outbox-changed", G_CALLBACK (on_outbox_changed), self);
  od_ledger_window_reload (self);
  return self;
}

static void
od_ledger_window_dispose (GObject *object)
{
  OdLedgerWindow *self = OD_LEDGER_WINDOW (object);

  if (self->cache != NULL)
    g_clear_signal_handler (&self->changed_id, self->cache);
  g_clear_object (&self->cache);
  g_clear_object (&self->outbox);
  gtk_widget_dispose_template (GTK_WIDGET (object), OD_TYPE_LEDGER_WINDOW);

  G_OBJECT_CLASS (od_ledger_window_parent_class)->dispose (object);
}

static void
od_ledger_window_class_init (OdLedgerWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_ledger_window_dispose;

  signals[EDIT] =
    g_signal_new ("edit", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_POINTER);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/orderdesk/OrderDesk/ui/od-ledger-window.ui");
  gtk_widget_class_bind_template_child (widget_class, OdLedgerWindow, window_title);
  gtk_widget_class_bind_template_child (widget_class, OdLedgerWindow, stack);
  gtk_widget_class_bind_template_child (widget_class, OdLedgerWindow, list);
  gtk_widget_class_bind_template_callback (widget_class, on_kick);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);
}

static void
od_ledger_window_init (OdLedgerWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-command-dialog-private.h"
#include "od-format.h"
#include "od-tooltip.h"
#include "od-uuid.h"

/* One dialog for every command, its rows made from the protocol's
 * command table (od_command_spec ()).  Each field is checked on every
 * change with the table's own rules (the ones the server applies), so a
 * command the dialog sends is never refused for its shape. */

#define MAX_FIELDS 8

struct _OdCommandDialog
{
  AdwWindow       parent_instance;

  AdwWindowTitle *window_title;
  GtkButton      *send_button;
  GtkLabel       *description_label;
  GtkListBox     *fields_list;
  GtkLabel       *error_label;

  OdCommandType   type;
  char            order_id[OD_UUID_LEN + 1];
  gboolean        has_expected_version;
  gint64          expected_version;
  char           *currency;
  const OdCommandSpec *spec;
  guint           n_fields;
  AdwEntryRow    *rows[MAX_FIELDS];
  gboolean        touched[MAX_FIELDS];
  char           *description;
};

G_DEFINE_FINAL_TYPE (OdCommandDialog, od_command_dialog, ADW_TYPE_WINDOW)

enum {
  SUBMIT,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static const char *
field_text (OdCommandDialog *self,
            guint            i)
{
  return gtk_editable_get_text (GTK_EDITABLE (self->rows[i]));
}

/* Reads field i as the command holds it; returns the untranslated
 * message of its rule, or NULL. */
static const char *
read_field (OdCommandDialog   *self,
            guint              i,
            OdCommand         *command)
{
  const OdFieldSpec *f = &self->spec->fields[i];
  const char *text = field_text (self, i);
  gint64 number = 0;

  switch (f->kind)
    {
    case OD_FIELD_TEXT:
      if (command != NULL)
        {
          g_free (G_STRUCT_MEMBER (char *, command, f->offset));
          G_STRUCT_MEMBER (char *, command, f->offset) = g_strdup (text);
        }
      return f->check_text (text);
    case OD_FIELD_INT:
      if (!g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, &number, NULL))
        return N_("must be a whole number");
      break;
    case OD_FIELD_MONEY:
    default:
      if (!od_parse_money (text, &number))
        return N_("must be an amount such as 12.99");
      break;
    }
  if (command != NULL)
    G_STRUCT_MEMBER (gint64, command, f->offset) = number;
  return f->check_int (number);
}

static const char *
check_field (OdCommandDialog *self,
             guint            i)
{
  return read_field (self, i, NULL);
}

static gboolean
validate (OdCommandDialog *self)
{
  gboolean all_valid = TRUE;
  g_autofree char *shown = NULL;

  for (guint i = 0; i < self->n_fields; i++)
    {
      const char *message = check_field (self, i);

      if (message != NULL)
        all_valid = FALSE;
      if (message != NULL && self->touched[i])
        {
          gtk_widget_add_css_class (GTK_WIDGET (self->rows[i]), "error");
          od_tooltip_set (GTK_WIDGET (self->rows[i]), _(message));
          if (shown == NULL)
            /* TRANSLATORS: a field error: "Quantity: must be between 1 and 10000" */
            shown = g_strdup_printf (_("%s: %s"), _(self->spec->fields[i].label), _(message));
        }
      else
        {
          gtk_widget_remove_css_class (GTK_WIDGET (self->rows[i]), "error");
          od_tooltip_set (GTK_WIDGET (self->rows[i]), NULL);
        }
    }
  gtk_label_set_label (self->error_label, shown ? shown : "");
  gtk_widget_set_visible (GTK_WIDGET (self->error_label), shown != NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->send_button), all_valid);
  return all_valid;
}

static void
on_field_changed (GtkEditable     *editable,
                  OdCommandDialog *self)
{
  guint i = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (editable), "od-field"));

  self->touched[i] = TRUE;
  validate (self);
}

/* The prefill's value of a field, as the entry shows it. */
static char *
prefill_text (const OdFieldSpec *f,
              const OdCommand   *prefill)
{
  gint64 number;

  if (prefill == NULL)
    return NULL;
  if (f->kind == OD_FIELD_TEXT)
    return g_strdup (G_STRUCT_MEMBER (const char *, prefill, f->offset));
  number = G_STRUCT_MEMBER (gint64, prefill, f->offset);
  if (f->kind == OD_FIELD_INT)
    return g_strdup_printf ("%" G_GINT64_FORMAT, number);
  return g_strdup_printf ("%" G_GINT64_FORMAT ".%02d", number / 100, (int) (number % 100));
}

static void
on_entry_activated (AdwEntryRow     *row,
                    OdCommandDialog *self)
{
  GtkWidget *next = gtk_widget_get_next_sibling (GTK_WIDGET (row));

  if (next != NULL)
    gtk_widget_grab_focus (next);
}

static void
add_field (OdCommandDialog *self,
           guint            i,
           const char      *initial)
{
  const OdFieldSpec *f = &self->spec->fields[i];
  AdwEntryRow *row = ADW_ENTRY_ROW (adw_entry_row_new ());

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), _(f->label));
  if (initial != NULL)
    gtk_editable_set_text (GTK_EDITABLE (row), initial);
  gtk_editable_set_max_width_chars (GTK_EDITABLE (row), f->width_chars);
  /* Enter goes on to the next field; the last one's sends (see
   * od_command_dialog_new()). */
  adw_entry_row_set_activates_default (row, FALSE);
  g_signal_connect (row, "entry-activated", G_CALLBACK (on_entry_activated), self);
  if (f->kind == OD_FIELD_INT)
    gtk_editable_set_alignment (GTK_EDITABLE (row), 1);
  g_object_set_data (G_OBJECT (row), "od-field", GUINT_TO_POINTER (i));
  g_signal_connect (row, "changed", G_CALLBACK (on_field_changed), self);
  gtk_list_box_append (self->fields_list, GTK_WIDGET (row));
  self->rows[i] = row;
}

static OdCommand *
build_command (OdCommandDialog *self)
{
  OdCommand *command = od_command_new (self->type, self->order_id);

  command->has_expected_version = self->has_expected_version;
  command->expected_version = self->expected_version;
  for (guint i = 0; i < self->n_fields; i++)
    read_field (self, i, command);
  return command;
}

static void
on_send (OdCommandDialog *self)
{
  g_autoptr(OdCommand) command = NULL;
  g_autoptr(OdProblem) problem = NULL;

  for (guint i = 0; i < self->n_fields; i++)
    self->touched[i] = TRUE;
  if (!validate (self))
    return;

  command = build_command (self);
  /* The whole command once more, as the server will see it. */
  problem = od_command_validate (command);
  if (problem != NULL)
    {
      gtk_label_set_label (self->error_label, problem->detail ? problem->detail : problem->title);
      gtk_widget_set_visible (GTK_WIDGET (self->error_label), TRUE);
      return;
    }
  if (self->type == OD_COMMAND_ADD_ITEM)
    {
      g_free (self->description);
      /* TRANSLATORS: a command description: "Add 2 × MUG-BLUE" */
      self->description = g_strdup_printf (_("Add %lld × %s"),
                                           (long long) command->quantity, command->sku);
    }
  else if (self->type == OD_COMMAND_CREATE_ORDER)
    {
      g_free (self->description);
      /* TRANSLATORS: a command description: "New order for Ada Lovelace" */
      self->description = g_strdup_printf (_("New order for %s"), command->customer_name);
    }
  g_signal_emit (self, signals[SUBMIT], 0, command);
  gtk_window_close (GTK_WINDOW (self));
}

const char *
od_command_dialog_set_field (OdCommandDialog *self,
                             const char      *name,
                             const char      *text)
{
  g_return_val_if_fail (OD_IS_COMMAND_DIALOG (self), NULL);

  for (guint i = 0; i < self->n_fields; i++)
    if (g_strcmp0 (self->spec->fields[i].name, name) == 0
        || g_strcmp0 (self->spec->fields[i].entry_name, name) == 0)
      {
        const char *message;

        gtk_editable_set_text (GTK_EDITABLE (self->rows[i]), text);
        self->touched[i] = TRUE;
        validate (self);
        message = check_field (self, i);
        return message ? _(message) : NULL;
      }
  g_return_val_if_reached (NULL);
}

gboolean
od_command_dialog_can_send (OdCommandDialog *self)
{
  g_return_val_if_fail (OD_IS_COMMAND_DIALOG (self), FALSE);
  return gtk_widget_get_sensitive (GTK_WIDGET (self->send_button));
}

void
od_command_dialog_send (OdCommandDialog *self)
{
  g_return_if_fail (OD_IS_COMMAND_DIALOG (self));
  on_send (self);
}

const char *
od_command_dialog_get_description (OdCommandDialog *self)
{
  g_return_val_if_fail (OD_IS_COMMAND_DIALOG (self), NULL);
  return self->description;
}

OdCommandDialog *
od_command_dialog_new (GtkWindow       *parent,
                       OdCommandType    type,
                       const OdOrder   *order,
                       const OdCommand *prefill)
{
  OdCommandDialog *self = g_object_new (OD_TYPE_COMMAND_DIALOG,
                                        "transient-for", parent,
                                        NULL);
  g_autofree char *who = NULL;
  const char *title;

  g_return_val_if_fail (type < OD_COMMAND_N_TYPES, self);
  self->type = type;
  self->spec = od_command_spec (type);
  if (prefill != NULL)
    g_strlcpy (self->order_id, prefill->order_id, sizeof self->order_id);
  else if (order != NULL)
    g_strlcpy (self->order_id, order->order_id, sizeof self->order_id);
  else
    {
      g_autofree char *id = od_uuid_v7_new ();

      g_strlcpy (self->order_id, id, sizeof self->order_id);
    }
  /* Commands on an existing order say which version they were decided
   * on, so a concurrent change is refused instead of overwritten. */
  if (order != NULL)
    {
      self->has_expected_version = TRUE;
      self->expected_version = order->version;
      who = g_strdup (order->customer_name);
    }
  else if (prefill != NULL && type != OD_COMMAND_CREATE_ORDER)
    {
      self->has_expected_version = prefill->has_expected_version;
      self->expected_version = prefill->expected_version;
    }

  for (const OdFieldSpec *f = self->spec->fields; f->name && self->n_fields < MAX_FIELDS; f++)
    {
      g_autofree char *initial = prefill_text (f, prefill);

      /* Defaults a new command starts with. */
      if (initial == NULL && type == OD_COMMAND_CREATE_ORDER && g_str_equal (f->name, "currency"))
        initial = g_strdup ("EUR");
      else if (initial == NULL && type == OD_COMMAND_ADD_ITEM && g_str_equal (f->name, "quantity"))
        initial = g_strdup ("1");
      else if (prefill != NULL && type == OD_COMMAND_CREATE_ORDER
               && g_str_equal (f->name, "currency") && initial == NULL)
        initial = g_strdup ("EUR");
      add_field (self, self->n_fields++, initial);
    }
  title = _(self->spec->title);
  if (self->spec->explanation != NULL)
    gtk_label_set_label (self->description_label, _(self->spec->explanation));
  if (self->spec->destructive)
    {
      gtk_widget_remove_css_class (GTK_WIDGET (self->send_button), "suggested-action");
      gtk_widget_add_css_class (GTK_WIDGET (self->send_button), "destructive-action");
    }
  self->description = g_strdup (_(self->spec->description));
  gtk_button_set_label (self->send_button, _(self->spec->send_label));

  gtk_window_set_title (GTK_WINDOW (self), title);
  adw_window_title_set_title (self->window_title, title);
  adw_window_title_set_subtitle (self->window_title, who ? who : "");
  gtk_widget_set_visible (GTK_WIDGET (self->fields_list),
                          gtk_widget_get_first_child (GTK_WIDGET (self->fields_list)) != NULL);
  gtk_widget_set_visible (GTK_WIDGET (self->description_label),
                          *gtk_label_get_label (self->description_label) != '\0');
  gtk_window_set_default_widget (GTK_WINDOW (self), GTK_WIDGET (self->send_button));
  validate (self);
  /* Typing goes into the first field (GTK would focus Cancel, the first
   * focusable widget), and Enter in the last one sends when the input is
   * valid (the default widget is insensitive otherwise).  Without fields
   * the primary button has the focus. */
  {
    GtkWidget *first = gtk_widget_get_first_child (GTK_WIDGET (self->fields_list));
    GtkWidget *last = gtk_widget_get_last_child (GTK_WIDGET (self->fields_list));

    if (last != NULL)
      adw_entry_row_set_activates_default (ADW_ENTRY_ROW (last), TRUE);
    gtk_window_set_focus (GTK_WINDOW (self), first != NULL ? first : GTK_WIDGET (self->send_button));
  }
  return self;
}

static void
od_command_dialog_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), OD_TYPE_COMMAND_DIALOG);
  G_OBJECT_CLASS (od_command_dialog_parent_class)->dispose (object);
}

static void
od_command_dialog_finalize (GObject *object)
{
  OdCommandDialog *self = OD_COMMAND_DIALOG (object);

  g_free (self->currency);
  g_free (self->description);

  G_OBJECT_CLASS (od_command_dialog_parent_class)->finalize (object);
}

static void
od_command_dialog_class_init (OdCommandDialogClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = od_command_dialog_dispose;
  object_class->finalize = od_command_dialog_finalize;

  signals[SUBMIT] =
    g_signal_new ("submit", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_POINTER);

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/orderdesk/OrderDesk/ui/od-command-dialog.ui");
  gtk_widget_class_bind_template_child (widget_class, OdCommandDialog, window_title);
  gtk_widget_class_bind_template_child (widget_class, OdCommandDialog, send_button);
  gtk_widget_class_bind_template_child (widget_class, OdCommandDialog, description_label);
  gtk_widget_class_bind_template_child (widget_class, OdCommandDialog, fields_list);
  gtk_widget_class_bind_template_child (widget_class, OdCommandDialog, error_label);
  gtk_widget_class_bind_template_callback (widget_class, on_send);
  gtk_widget_class_bind_template_callback (widget_class, gtk_window_close);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);
}

static void
od_command_dialog_init (OdCommandDialog *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

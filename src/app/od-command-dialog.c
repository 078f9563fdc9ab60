/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>

#include "od-command-dialog.h"
#include "od-format.h"
#include "od-tooltip.h"
#include "od-uuid.h"

/* One dialog for every command.  Each field is checked on every change
 * with the protocol's own field rules (the ones the server applies), so
 * a command the dialog sends is never refused for its shape. */

typedef enum
{
  FIELD_CUSTOMER_NAME,
  FIELD_CUSTOMER_EMAIL,
  FIELD_CURRENCY,
  FIELD_SKU,
  FIELD_NAME,
  FIELD_QUANTITY,
  FIELD_UNIT_PRICE,
  FIELD_CARRIER,
  FIELD_TRACKING,
  FIELD_REASON,
  N_FIELDS
} FieldKind;

static const struct
{
  const char *name;
  const char *label;
  int         max_chars;
} field_info[N_FIELDS] = {
  { "customer_name", N_("Customer name"), OD_MAX_CUSTOMER_NAME },
  { "customer_email", N_("Customer e-mail"), OD_MAX_EMAIL },
  { "currency", N_("Currency"), 3 },
  { "sku", N_("SKU"), OD_MAX_SKU },
  { "name", N_("Item name"), OD_MAX_ITEM_NAME },
  { "quantity", N_("Quantity"), 5 },
  { "unit_price", N_("Unit price"), 12 },
  { "carrier", N_("Carrier"), OD_MAX_CARRIER },
  { "tracking_number", N_("Tracking number"), OD_MAX_TRACKING },
  { "reason", N_("Reason"), OD_MAX_REASON },
};

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
  AdwEntryRow    *rows[N_FIELDS];
  gboolean        touched[N_FIELDS];
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
            FieldKind        kind)
{
  return self->rows[kind] ? gtk_editable_get_text (GTK_EDITABLE (self->rows[kind])) : NULL;
}

/* Returns the untranslated message of the rule, or NULL. */
static const char *
check_field (OdCommandDialog *self,
             FieldKind        kind)
{
  const char *text = field_text (self, kind);
  gint64 number = 0;

  switch (kind)
    {
    case FIELD_CUSTOMER_NAME:
      return od_check_customer_name (text);
    case FIELD_CUSTOMER_EMAIL:
      return od_check_customer_email (text);
    case FIELD_CURRENCY:
      return od_check_currency (text);
    case FIELD_SKU:
      return od_check_sku (text);
    case FIELD_NAME:
      return od_check_item_name (text);
    case FIELD_QUANTITY:
      if (!g_ascii_string_to_signed (text, 10, G_MININT64, G_MAXINT64, &number, NULL))
        return N_("must be a whole number");
      return od_check_quantity (number);
    case FIELD_UNIT_PRICE:
      if (!od_parse_money (text, &number))
        return N_("must be an amount such as 12.99");
      return od_check_unit_price (number);
    case FIELD_CARRIER:
      return od_check_carrier (text);
    case FIELD_TRACKING:
      return od_check_tracking_number (text);
    case FIELD_REASON:
      return od_check_reason (text);
    case N_FIELDS:
    default:
      return NULL;
    }
}

static gboolean
validate (OdCommandDialog *self)
{
  gboolean all_valid = TRUE;
  g_autofree char *shown = NULL;

  for (guint i = 0; i < N_FIELDS; i++)
    {
      const char *message;

      if (self->rows[i] == NULL)
        continue;
      message = check_field (self, i);
      if (message != NULL)
        all_valid = FALSE;
      if (message != NULL && self->touched[i])
        {
          gtk_widget_add_css_class (GTK_WIDGET (self->rows[i]), "error");
          od_tooltip_set (GTK_WIDGET (self->rows[i]), _(message));
          if (shown == NULL)
            /* TRANSLATORS: a field error: "Quantity: must be between 1 and 10000" */
            shown = g_strdup_printf (_("%s: %s"), _(field_info[i].label), _(message));
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
  FieldKind kind = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (editable), "od-field"));

  self->touched[kind] = TRUE;
  validate (self);
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
           FieldKind        kind,
           const char      *initial)
{
  AdwEntryRow *row = ADW_ENTRY_ROW (adw_entry_row_new ());

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), _(field_info[kind].label));
  if (initial != NULL)
    gtk_editable_set_text (GTK_EDITABLE (row), initial);
  gtk_editable_set_max_width_chars (GTK_EDITABLE (row), field_info[kind].max_chars);
  /* Enter goes on to the next field; the last one's sends (see
   * od_command_dialog_new()). */
  adw_entry_row_set_activates_default (row, FALSE);
  g_signal_connect (row, "entry-activated", G_CALLBACK (on_entry_activated), self);
  if (kind == FIELD_QUANTITY)
    gtk_editable_set_alignment (GTK_EDITABLE (row), 1);
  g_object_set_data (G_OBJECT (row), "od-field", GINT_TO_POINTER (kind));
  g_signal_connect (row, "changed", G_CALLBACK (on_field_changed), self);
  gtk_list_box_append (self->fields_list, GTK_WIDGET (row));
  self->rows[kind] = row;
}

static OdCommand *
build_command (OdCommandDialog *self)
{
  OdCommand *command = od_command_new (self->type, self->order_id);
  gint64 number = 0;

  command->has_expected_version = self->has_expected_version;
  command->expected_version = self->expected_version;
  switch (self->type)
    {
    case OD_COMMAND_CREATE_ORDER:
      command->customer_name = g_strdup (field_text (self, FIELD_CUSTOMER_NAME));
      command->customer_email = g_strdup (field_text (self, FIELD_CUSTOMER_EMAIL));
      command->currency = g_strdup (field_text (self, FIELD_CURRENCY));
      break;
    case OD_COMMAND_ADD_ITEM:
      command->sku = g_strdup (field_text (self, FIELD_SKU));
      command->name = g_strdup (field_text (self, FIELD_NAME));
      g_ascii_string_to_signed (field_text (self, FIELD_QUANTITY), 10, 0, G_MAXINT64, &number, NULL);
      command->quantity = number;
      od_parse_money (field_text (self, FIELD_UNIT_PRICE), &number);
      command->unit_price_cents = number;
      break;
    case OD_COMMAND_REMOVE_ITEM:
      command->sku = g_strdup (field_text (self, FIELD_SKU));
      break;
    case OD_COMMAND_SHIP_ORDER:
      command->carrier = g_strdup (field_text (self, FIELD_CARRIER));
      command->tracking_number = g_strdup (field_text (self, FIELD_TRACKING));
      break;
    case OD_COMMAND_CANCEL_ORDER:
      command->reason = g_strdup (field_text (self, FIELD_REASON));
      break;
    case OD_COMMAND_PLACE_ORDER:
    case OD_COMMAND_MARK_DELIVERED:
    case OD_COMMAND_N_TYPES:
    default:
      break;
    }
  return command;
}

static void
on_send (OdCommandDialog *self)
{
  g_autoptr(OdCommand) command = NULL;
  g_autoptr(OdProblem) problem = NULL;

  for (guint i = 0; i < N_FIELDS; i++)
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

  for (guint i = 0; i < N_FIELDS; i++)
    if (self->rows[i] != NULL && g_strcmp0 (field_info[i].name, name) == 0)
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
  const char *title = NULL;
  const char *send = _("_Send");
  g_autofree char *quantity = NULL;
  g_autofree char *price = NULL;

  self->type = type;
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

  switch (type)
    {
    case OD_COMMAND_CREATE_ORDER:
      title = _("New Order");
      send = _("_Create");
      add_field (self, FIELD_CUSTOMER_NAME, prefill ? prefill->customer_name : NULL);
      add_field (self, FIELD_CUSTOMER_EMAIL, prefill ? prefill->customer_email : NULL);
      add_field (self, FIELD_CURRENCY, prefill && prefill->currency ? prefill->currency : "EUR");
      gtk_label_set_label (self->description_label,
                           _("The order starts as a draft; add items, then place it."));
      self->description = g_strdup (_("New order"));
      break;
    case OD_COMMAND_ADD_ITEM:
      title = _("Add Item");
      send = _("_Add");
      if (prefill != NULL)
        {
          quantity = g_strdup_printf ("%" G_GINT64_FORMAT, prefill->quantity);
          price = g_strdup_printf ("%" G_GINT64_FORMAT ".%02d", prefill->unit_price_cents / 100,
                                   (int) (prefill->unit_price_cents % 100));
        }
      add_field (self, FIELD_SKU, prefill ? prefill->sku : NULL);
      add_field (self, FIELD_NAME, prefill ? prefill->name : NULL);
      add_field (self, FIELD_QUANTITY, quantity ? quantity : "1");
      add_field (self, FIELD_UNIT_PRICE, price);
      gtk_label_set_label (self->description_label,
                           _("Adding a SKU the order already has adds to its quantity and takes the new name and price."));
      self->description = g_strdup (_("Add item"));
      break;
    case OD_COMMAND_REMOVE_ITEM:
      title = _("Remove Item");
      send = _("_Remove");
      add_field (self, FIELD_SKU, prefill ? prefill->sku : NULL);
      self->description = g_strdup (_("Remove item"));
      break;
    case OD_COMMAND_PLACE_ORDER:
      title = _("Place Order");
      send = _("_Place");
      gtk_label_set_label (self->description_label,
                           _("Placing the order fixes its lines and total."));
      self->description = g_strdup (_("Place order"));
      break;
    case OD_COMMAND_SHIP_ORDER:
      title = _("Ship Order");
      send = _("_Ship");
      add_field (self, FIELD_CARRIER, prefill ? prefill->carrier : NULL);
      add_field (self, FIELD_TRACKING, prefill ? prefill->tracking_number : NULL);
      self->description = g_strdup (_("Ship order"));
      break;
    case OD_COMMAND_MARK_DELIVERED:
      title = _("Mark Delivered");
      send = _("_Mark Delivered");
      gtk_label_set_label (self->description_label,
                           _("Record that the customer received the order."));
      self->description = g_strdup (_("Mark delivered"));
      break;
    case OD_COMMAND_CANCEL_ORDER:
      title = _("Cancel Order");
      send = _("Cancel _Order");
      add_field (self, FIELD_REASON, prefill ? prefill->reason : NULL);
      gtk_label_set_label (self->description_label,
                           _("A cancelled order cannot be changed any more."));
      gtk_widget_remove_css_class (GTK_WIDGET (self->send_button), "suggested-action");
      gtk_widget_add_css_class (GTK_WIDGET (self->send_button), "destructive-action");
      self->description = g_strdup (_("Cancel order"));
      break;
    case OD_COMMAND_N_TYPES:
    default:
      g_return_val_if_reached (self);
    }

  gtk_window_set_title (GTK_WINDOW (self), title);
  adw_window_title_set_title (self->window_title, title);
  adw_window_title_set_subtitle (self->window_title, who ? who : "");
  gtk_button_set_label (self->send_button, send);
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

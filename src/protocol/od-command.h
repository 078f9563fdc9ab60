/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <json-glib/json-glib.h>

#include "od-problem.h"
#include "od-types.h"
#include "od-uuid.h"

G_BEGIN_DECLS

/* Why a command was refused before it was sent: the codec's and the
 * field rules' refusals (the server answers the same with a problem). */
#define OD_COMMAND_ERROR (od_command_error_quark ())
GQuark od_command_error_quark (void);

typedef enum
{
  OD_COMMAND_ERROR_MALFORMED, /* not a command: no JSON object, a member of the wrong type */
  OD_COMMAND_ERROR_INVALID,   /* a command whose fields break their rules */
  OD_COMMAND_ERROR_TOO_LARGE, /* larger than the protocol allows */
} OdCommandError;

typedef enum
{
  OD_COMMAND_CREATE_ORDER,
  OD_COMMAND_ADD_ITEM,
  OD_COMMAND_REMOVE_ITEM,
  OD_COMMAND_PLACE_ORDER,
  OD_COMMAND_SHIP_ORDER,
  OD_COMMAND_MARK_DELIVERED,
  OD_COMMAND_CANCEL_ORDER,
  OD_COMMAND_ADD_ORDER_NOTE,
  OD_COMMAND_REFUND_ORDER,
  OD_COMMAND_N_TYPES,
} OdCommandType;

/* Limits of the v1 contract; dialogs use them for their entries. */
#define OD_MAX_CUSTOMER_NAME    200
#define OD_MAX_EMAIL            254
#define OD_MAX_SKU              64
#define OD_MAX_ITEM_NAME        200
#define OD_MAX_QUANTITY         10000
#define OD_MAX_UNIT_PRICE_CENTS 100000000
#define OD_MAX_LINES            200
#define OD_MAX_CARRIER          100
#define OD_MAX_TRACKING         100
#define OD_MAX_REASON           500
#define OD_MAX_NOTE             2000
/* A refund is bounded by the order's total; this only keeps the sum of
 * refunds far from overflowing. */
#define OD_MAX_REFUND_CENTS     (OD_MAX_UNIT_PRICE_CENTS * (gint64) OD_MAX_QUANTITY * OD_MAX_LINES)
#define OD_MAX_BODY             (64 * 1024)
#define OD_MAX_IDEMPOTENCY_KEY  128

typedef struct
{
  OdCommandType type;
  char          order_id[OD_UUID_LEN + 1];
  gboolean      has_expected_version;
  gint64        expected_version;
  char         *customer_name;
  char         *customer_email;
  char         *currency;
  char         *sku;
  char         *name;
  gint64        quantity;
  gint64        unit_price_cents;
  char         *carrier;
  char         *tracking_number;
  char         *reason;
  char         *text;
  gint64        amount_cents;
} OdCommand;

#define OD_TYPE_COMMAND (od_command_get_type ())
GType          od_command_get_type       (void) G_GNUC_CONST;

typedef enum
{
  OD_FIELD_TEXT,
  OD_FIELD_INT,
  OD_FIELD_MONEY, /* integer cents on the wire, an amount ("12.99") in dialogs */
} OdFieldKind;

/* One member of a command's data: its wire name, where it lives in
 * OdCommand, its rule (the server's and the dialogs') and its label. */
typedef struct
{
  const char  *name;
  OdFieldKind  kind;
  gsize        offset;
  const char  *label;        /* N_(): translate with _() */
  const char  *entry_name;   /* the dialog's name when not `name` */
  int          width_chars;
  const char *(*check_text) (const char *value);
  const char *(*check_int) (gint64 value);
} OdFieldSpec;

/* Everything known about one command type: the contract's row (data,
 * allowed statuses, event) and what a console shows for it.  Strings
 * marked N_() are translated by the user of the table. */
typedef struct
{
  OdCommandType      type;
  const char        *name;            /* on the wire */
  OdEventType        event;
  guint              allowed;         /* OD_STATUS_BIT of each status that allows it */
  const char        *refused;         /* why another status refuses it: the problem's
                                       * detail, in English; N_() for consoles
                                       * (od_order_refusal_rule ()) */
  const OdFieldSpec *fields;          /* ends with { NULL } */
  const char        *action_label;    /* N_(): button or menu item, with mnemonic */
  const char        *title;           /* N_(): dialog title */
  const char        *send_label;      /* N_(): with mnemonic */
  const char        *explanation;     /* N_() or NULL */
  const char        *description;     /* N_(): the outbox's description */
  gboolean           destructive;
  gboolean           suggested;       /* moves the order on: the button stands out */
} OdCommandSpec;

const OdCommandSpec *od_command_spec     (OdCommandType     type);
const OdFieldSpec   *od_command_field    (OdCommandType     type,
                                          const char       *name);

const char    *od_command_type_name      (OdCommandType     type);
gboolean       od_command_type_from_name (const char       *name,
                                          OdCommandType    *type);
OdCommand     *od_command_new            (OdCommandType     type,
                                          const char       *order_id);
OdCommand     *od_command_copy           (const OdCommand  *command);
void           od_command_free           (OdCommand        *command);
/* A request body as POST /v1/commands receives it: the command, or NULL
 * and the problem to answer.  od_command_parse () takes the common flat
 * shape on od_command_parse_fast () (NULL for anything else, valid or
 * not) and the rest on od_command_parse_strict () (json-glib); both give
 * the same command for the same bytes. */
OdCommand     *od_command_parse          (const char       *body,
                                          gsize             len,
                                          OdProblem       **problem);
OdCommand     *od_command_parse_fast     (const char       *body,
                                          gsize             len);
OdCommand     *od_command_parse_strict   (const char       *body,
                                          gsize             len,
                                          OdProblem       **problem);
OdCommand     *od_command_from_object    (JsonObject       *object,
                                          OdProblem       **problem);
OdProblem     *od_command_validate       (const OdCommand  *command);
/* The OD_COMMAND_ERROR code of a problem from od_command_parse() or
 * od_command_validate(). */
OdCommandError od_command_error_code     (const OdProblem  *problem);
char          *od_command_to_json        (const OdCommand  *command);
gboolean       od_idempotency_key_valid  (const char       *key);

/* Field rules, shared by the codec and by the console's dialogs.  Each
 * returns NULL when the value is valid, else a message for the operator. */
const char    *od_check_customer_name    (const char       *value);
const char    *od_check_customer_email   (const char       *value);
const char    *od_check_currency         (const char       *value);
const char    *od_check_sku              (const char       *value);
const char    *od_check_item_name        (const char       *value);
const char    *od_check_quantity         (gint64            value);
const char    *od_check_unit_price       (gint64            value);
const char    *od_check_carrier          (const char       *value);
const char    *od_check_tracking_number  (const char       *value);
const char    *od_check_reason           (const char       *value);
const char    *od_check_note_text        (const char       *value);
const char    *od_check_refund_amount    (gint64            value);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdCommand, od_command_free)

G_END_DECLS

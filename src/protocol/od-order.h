/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <json-glib/json-glib.h>

#include "od-command.h"
#include "od-problem.h"

G_BEGIN_DECLS

typedef struct
{
  char   *sku;
  char   *name;
  gint64  quantity;
  gint64  unit_price_cents;
} OdLine;

/* The order aggregate: the write side decides commands against it and the
 * console folds its local events into it ("the order as it was"). */
typedef struct
{
  char           order_id[OD_UUID_LEN + 1];
  gint64         version;
  OdOrderStatus  status;
  char          *customer_name;
  char          *customer_email;
  char          *currency;
  GPtrArray     *lines; /* OdLine, in the order they were first added */
  char          *carrier;
  char          *tracking_number;
  char          *cancel_reason;
  gint64         refunded_cents; /* sum of OrderRefunded amounts */
  gint64         note_count;     /* OrderNoteAdded events */
  char          *created_at;
  char          *updated_at;
  gint64         last_position;
} OdOrder;

const char     *od_order_status_name      (OdOrderStatus     status);
gboolean        od_order_status_from_name (const char       *name,
                                           OdOrderStatus    *status);
OdOrder        *od_order_new              (const char       *order_id);
OdOrder        *od_order_copy             (const OdOrder    *order);
void            od_order_free             (OdOrder          *order);
OdLine         *od_order_find_line        (const OdOrder    *order,
                                           const char       *sku);
gint64          od_order_total_cents      (const OdOrder    *order);
gint64          od_order_item_count       (const OdOrder    *order);
gint64          od_order_refundable_cents (const OdOrder    *order);
gboolean        od_order_status_allows    (OdOrderStatus     status,
                                           OdCommandType     type);
gboolean        od_order_allows           (const OdOrder    *order,
                                           OdCommandType     type);
gboolean        od_order_decide           (const OdOrder    *order,
                                           const OdCommand  *command,
                                           const char      **event_type,
                                           char            **event_data,
                                           OdProblem       **problem);
/* The rule (the command table's `refused`, untranslated) when DETAIL is
 * exactly the detail od_order_decide () gives a command of TYPE on
 * ORDER_ID refused for the order's status; NULL for any other detail
 * (another reason, another server's wording), which a console then
 * shows as it came. */
const char     *od_order_refusal_rule     (OdCommandType     type,
                                           const char       *order_id,
                                           const char       *detail);
gboolean        od_order_apply            (OdOrder          *order,
                                           const char       *type,
                                           JsonObject       *data,
                                           gint64            version,
                                           gint64            position,
                                           const char       *recorded_at);

/* An event's `data` of the common flat shape (plain strings without
 * escapes, integers of at most 18 digits, true, false, null; no member
 * twice), read without json-glib: keys and strings point into `buf`,
 * NUL-terminated there.  od_flat_data_parse() refuses anything else
 * (escapes, floats, nesting, invalid UTF-8, more than
 * OD_FLAT_DATA_MAX_MEMBERS members or OD_FLAT_DATA_MAX_BYTES bytes), and
 * the caller then folds through od_json_parse_object() and
 * od_order_apply(), the judge. */
#define OD_FLAT_DATA_MAX_MEMBERS 16
#define OD_FLAT_DATA_MAX_BYTES   2048

typedef enum
{
  OD_FLAT_STRING,
  OD_FLAT_INTEGER,
  OD_FLAT_OTHER, /* true, false, null */
} OdFlatKind;

typedef struct
{
  guint       n_members;
  const char *keys[OD_FLAT_DATA_MAX_MEMBERS];
  OdFlatKind  kinds[OD_FLAT_DATA_MAX_MEMBERS];
  const char *strings[OD_FLAT_DATA_MAX_MEMBERS];
  gint64      integers[OD_FLAT_DATA_MAX_MEMBERS];
  char        buf[OD_FLAT_DATA_MAX_BYTES];
} OdFlatData;

gboolean        od_flat_data_parse        (OdFlatData       *flat,
                                           const char       *text,
                                           gsize             len);
const char     *od_flat_data_get_string   (const OdFlatData *flat,
                                           const char       *name);
gboolean        od_order_apply_flat       (OdOrder          *order,
                                           const char       *type,
                                           const OdFlatData *data,
                                           gint64            version,
                                           gint64            position,
                                           const char       *recorded_at);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdOrder, od_order_free)

G_END_DECLS

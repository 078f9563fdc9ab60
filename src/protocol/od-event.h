/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <json-glib/json-glib.h>

#include "od-types.h"
#include "od-uuid.h"

G_BEGIN_DECLS

/* One event of the log with its envelope as served by the contract. */
typedef struct
{
  gint64    position;
  gint64    prev;
  char      order_id[OD_UUID_LEN + 1];
  gint64    version;
  char     *type;
  char     *recorded_at;
  char     *actor;
  char     *data;      /* the data object as JSON text */
  JsonNode *data_node; /* the same, parsed; set by od_event_from_object */
} OdEvent;

OdEvent    *od_event_new           (void);
void        od_event_free          (OdEvent      *event);
void        od_event_append_json   (GString      *out,
                                    const OdEvent *event);
void        od_event_append_sse    (GString      *out,
                                    const OdEvent *event);
OdEvent    *od_event_from_object   (JsonObject   *object,
                                    GError      **error);
OdEvent    *od_event_parse         (const char   *text,
                                    gssize        len,
                                    GError      **error);
JsonObject *od_event_get_data      (OdEvent      *event);
void        od_event_keep_raw_data (OdEvent      *event,
                                    const char   *text,
                                    gsize         len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdEvent, od_event_free)

G_END_DECLS

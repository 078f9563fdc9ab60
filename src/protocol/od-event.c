/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-event.h"
#include "od-json.h"
#include "od-digest.h"

#include <string.h>

static const char *event_type_names[] = {
  NULL, "OrderCreated", "ItemAdded", "ItemRemoved", "OrderPlaced", "OrderShipped",
  "OrderDelivered", "OrderCancelled", "OrderNoteAdded", "OrderRefunded",
};

G_STATIC_ASSERT (G_N_ELEMENTS (event_type_names) == OD_EVENT_N);

/* NULL for OD_EVENT_UNKNOWN: an unknown event keeps its own name. */
const char *
od_event_type_name (OdEventType type)
{
  g_return_val_if_fail (type < OD_EVENT_N, NULL);
  return event_type_names[type];
}

OdEventType
od_event_type_from_name (const char *name)
{
  if (name == NULL)
    return OD_EVENT_UNKNOWN;
  for (guint i = 1; i < OD_EVENT_N; i++)
    if (strcmp (event_type_names[i], name) == 0)
      return i;
  return OD_EVENT_UNKNOWN;
}

OdEvent *
od_event_new (void)
{
  return g_new0 (OdEvent, 1);
}

void
od_event_free (OdEvent *event)
{
  if (event == NULL)
    return;
  g_free (event->type);
  g_free (event->recorded_at);
  g_free (event->actor);
  g_free (event->data);
  g_clear_pointer (&event->data_node, json_node_unref);
  g_free (event);
}

/* The envelope on one line; `data` is stored as JSON text already and is
 * copied verbatim, which keeps serving a page or a replay cheap. */
void
od_event_append_json (GString       *out,
                      const OdEvent *event)
{
  g_string_append_printf (out, "{\"position\":%" G_GINT64_FORMAT ",\"prev\":%" G_GINT64_FORMAT ",",
                          event->position, event->prev);
  od_json_append_member (out, "order_id", event->order_id);
  g_string_append_printf (out, ",\"version\":%" G_GINT64_FORMAT ",", event->version);
  od_json_append_member (out, "type", event->type);
  g_string_append_c (out, ',');
  od_json_append_member (out, "recorded_at", event->recorded_at);
  g_string_append_c (out, ',');
  od_json_append_member (out, "actor", event->actor);
  g_string_append (out, ",\"data\":");
  g_string_append (out, event->data ? event->data : "{}");
  g_string_append_c (out, '}');
}

void
od_event_append_sse (GString       *out,
                     const OdEvent *event)
{
  g_string_append_printf (out, "id: %" G_GINT64_FORMAT "\nevent: %s\ndata: ", event->position,
                          event->type);
  od_event_append_json (out, event);
  g_string_append (out, "\n\n");
}

static gboolean
get_int (JsonObject  *object,
         const char  *name,
         gint64       min,
         gint64      *out,
         GError     **error)
{
  JsonNode *node = json_object_get_member (object, name);

  if (!od_json_is_integer (node) || json_node_get_int (node) < min)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "event member %s is missing or not an integer >= %" G_GINT64_FORMAT, name, min);
      return FALSE;
    }
  *out = json_node_get_int (node);
  return TRUE;
}

static char *
get_string (JsonObject  *object,
            const char  *name,
            GError     **error)
{
  JsonNode *node = json_object_get_member (object, name);

  if (!od_json_is_string (node))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "event member %s is missing or not a string", name);
      return NULL;
    }
  return g_strdup (json_node_get_string (node));
}

OdEvent *
od_event_from_object (JsonObject  *object,
                      GError     **error)
{
  g_autoptr(OdEvent) event = od_event_new ();
  g_autofree char *order_id = NULL;
  JsonNode *data;

  if (!get_int (object, "position", 1, &event->position, error)
      || !get_int (object, "prev", 0, &event->prev, error)
      || !get_int (object, "version", 1, &event->version, error))
    return NULL;
  if (event->prev >= event->position)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "event %" G_GINT64_FORMAT " has prev %" G_GINT64_FORMAT " not below it",
                   event->position, event->prev);
      return NULL;
    }
  if (!(order_id = get_string (object, "order_id", error))
      || !(event->type = get_string (object, "type", error))
      || !(event->recorded_at = get_string (object, "recorded_at", error))
      || !(event->actor = get_string (object, "actor", error)))
    return NULL;
  if (!od_uuid_is_valid (order_id))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "event %" G_GINT64_FORMAT " has an invalid order_id", event->position);
      return NULL;
    }
  memcpy (event->order_id, order_id, OD_UUID_LEN + 1);
  data = json_object_get_member (object, "data");
  if (!od_json_is_object (data))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "event %" G_GINT64_FORMAT " has no data object", event->position);
      return NULL;
    }
  event->data_node = json_node_ref (data);
  event->data = json_to_string (data, FALSE);
  return g_steal_pointer (&event);
}

OdEvent *
od_event_parse (const char  *text,
                gssize       len,
                GError     **error)
{
  g_autoptr(JsonNode) root = od_json_parse_object (text, len, error);
  OdEvent *event;

  if (root == NULL)
    return NULL;
  event = od_event_from_object (json_node_get_object (root), error);
  if (event != NULL)
    od_event_keep_raw_data (event, text, len < 0 ? strlen (text) : (gsize) len);
  return event;
}

/* Replaces data (as json-glib wrote it again) with its bytes in text, the
 * event object it was parsed from: a digest of the log hashes `data` as
 * the server sent it, which re-serialising changes (escapes, numbers,
 * spaces). */
void
od_event_keep_raw_data (OdEvent    *event,
                        const char *text,
                        gsize       len)
{
  const char *value;
  gsize value_len;

  if (od_json_raw_member (text, len, "data", &value, &value_len) && *value == '{')
    {
      g_free (event->data);
      event->data = g_strndup (value, value_len);
    }
}

/* Parses `data` lazily for events read from a store. */
JsonObject *
od_event_get_data (OdEvent *event)
{
  if (event->data_node == NULL && event->data != NULL)
    event->data_node = od_json_parse_object (event->data, -1, NULL);
  return event->data_node ? json_node_get_object (event->data_node) : NULL;
}

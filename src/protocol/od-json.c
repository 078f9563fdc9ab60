/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-json.h"

#include <string.h>

/* Escapes per RFC 8259; the input is valid UTF-8, which passes through. */
void
od_json_append_string (GString    *out,
                       const char *str)
{
  static const char hex[] = "0123456789abcdef";
  const char *p = str;
  const char *run = str;

  g_string_append_c (out, '"');
  for (; *p; p++)
    {
      unsigned char c = (unsigned char) *p;

      if (c >= 0x20 && c != '"' && c != '\\')
        continue;
      g_string_append_len (out, run, p - run);
      switch (c)
        {
        case '"': g_string_append (out, "\\\""); break;
        case '\\': g_string_append (out, "\\\\"); break;
        case '\n': g_string_append (out, "\\n"); break;
        case '\r': g_string_append (out, "\\r"); break;
        case '\t': g_string_append (out, "\\t"); break;
        case '\b': g_string_append (out, "\\b"); break;
        case '\f': g_string_append (out, "\\f"); break;
        default:
          g_string_append (out, "\\u00");
          g_string_append_c (out, hex[c >> 4]);
          g_string_append_c (out, hex[c & 0xf]);
          break;
        }
      run = p + 1;
    }
  g_string_append_len (out, run, p - run);
  g_string_append_c (out, '"');
}

void
od_json_append_member (GString    *out,
                       const char *name,
                       const char *value)
{
  od_json_append_string (out, name);
  g_string_append_c (out, ':');
  od_json_append_string (out, value);
}

/* json-glib parses recursively, so nesting must be bounded before it
 * sees the text or a small hostile body could exhaust the stack. */
static gboolean
nesting_within (const char *text,
                gsize       len,
                guint       max_depth)
{
  guint depth = 0;
  gboolean in_string = FALSE;

  for (gsize i = 0; i < len; i++)
    {
      char c = text[i];

      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = FALSE;
        }
      else if (c == '"')
        in_string = TRUE;
      else if (c == '{' || c == '[')
        {
          if (++depth > max_depth)
            return FALSE;
        }
      else if ((c == '}' || c == ']') && depth > 0)
        depth--;
    }
  return TRUE;
}

/* Returns the root node when the text is a JSON object, else NULL with an
 * error.  json-glib rejects invalid UTF-8 and truncated documents. */
JsonNode *
od_json_parse_object (const char  *text,
                      gssize       len,
                      GError     **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable ();
  JsonNode *root;

  if (len < 0)
    len = strlen (text);
  if (!g_utf8_validate (text, len, NULL))
    {
      g_set_error_literal (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                           "body is not valid UTF-8");
      return NULL;
    }
  if (memchr (text, '\0', len) != NULL)
    {
      g_set_error_literal (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                           "body contains a NUL byte");
      return NULL;
    }
  if (!nesting_within (text, len, OD_JSON_MAX_DEPTH))
    {
      g_set_error (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                   "JSON nested deeper than %d levels", OD_JSON_MAX_DEPTH);
      return NULL;
    }
  if (!json_parser_load_from_data (parser, text, len, error))
    return NULL;
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error_literal (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
                           "body is not a JSON object");
      return NULL;
    }
  return json_node_ref (root);
}

gboolean
od_json_is_string (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node)
         && json_node_get_value_type (node) == G_TYPE_STRING;
}

gboolean
od_json_is_integer (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_VALUE (node)
         && json_node_get_value_type (node) == G_TYPE_INT64;
}

gboolean
od_json_is_object (JsonNode *node)
{
  return node != NULL && JSON_NODE_HOLDS_OBJECT (node);
}

char *
od_timestamp_format (gint64 unix_usec)
{
  g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc (unix_usec / G_USEC_PER_SEC);

  if (dt == NULL)
    return g_strdup ("1970-01-01T00:00:00.000Z");
  return g_strdup_printf ("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                          g_date_time_get_year (dt), g_date_time_get_month (dt),
                          g_date_time_get_day_of_month (dt), g_date_time_get_hour (dt),
                          g_date_time_get_minute (dt), g_date_time_get_second (dt),
                          (int) ((unix_usec % G_USEC_PER_SEC) / 1000));
}

char *
od_timestamp_now (void)
{
  return od_timestamp_format (g_get_real_time ());
}

gboolean
od_timestamp_parse (const char *text,
                    gint64     *unix_usec)
{
  g_autoptr(GDateTime) dt = NULL;

  if (text == NULL)
    return FALSE;
  dt = g_date_time_new_from_iso8601 (text, NULL);
  if (dt == NULL)
    return FALSE;
  *unix_usec = g_date_time_to_unix (dt) * G_USEC_PER_SEC + g_date_time_get_microsecond (dt);
  return TRUE;
}

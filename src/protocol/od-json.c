/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-json.h"

#include <math.h>
#include <string.h>

/* Escapes per RFC 8259; valid UTF-8 passes through. */
void
od_json_append_string (GString    *out,
                       const char *str)
{
  static const char hex[] = "0123456789abcdef";
  g_autofree char *valid = NULL;
  const char *p = str;
  const char *run = str;

  /* Found by fuzzing (fuzz/regressions/command): a string that is not
   * UTF-8 (json-glib's own error messages quote the input, and it decodes
   * "\udc00" to bytes that are not UTF-8) must not make the output
   * invalid JSON text; such bytes become U+FFFD. */
  if (!g_utf8_validate (str, -1, NULL))
    p = run = valid = g_utf8_make_valid (str, -1);

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

/* A strict RFC 8259 reader that only checks, run before json-glib sees
 * the text.  json-glib parses recursively, so nesting must be bounded
 * first or a small hostile body could exhaust the stack.  And json-glib
 * is lenient: it takes single quotes, comments, hex and octal numbers,
 * raw control characters, unknown escapes and octal ones ("\655"), "\u"
 * with fewer than four hex digits and lone UTF-16 surrogates; the last
 * three make strings that are not UTF-8, which then reached problem
 * details, the cache and GTK labels (found by fuzzing:
 * fuzz/regressions/{command,event,problem}).  Lone surrogates have no
 * meaning in RFC 8259 and I-JSON (RFC 7493) forbids them. */
typedef struct
{
  const char *start;
  const char *p;
  const char *end;
  guint       depth;
  const char *error;
} Scan;

static gboolean
scan_fail (Scan       *s,
           const char *message)
{
  s->error = message;
  return FALSE;
}

static void
scan_space (Scan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static int
scan_hex4 (Scan       *s,
           const char *at)
{
  int value = 0;

  if (s->end - at < 4)
    return -1;
  for (guint k = 0; k < 4; k++)
    {
      int digit = g_ascii_xdigit_value (at[k]);

      if (digit < 0)
        return -1;
      value = value * 16 + digit;
    }
  return value;
}

static gboolean
scan_string (Scan *s)
{
  s->p++; /* the opening quote */
  while (s->p < s->end)
    {
      unsigned char c = (unsigned char) *s->p;

      if (c == '"')
        {
          s->p++;
          return TRUE;
        }
      if (c < 0x20)
        return scan_fail (s, "control character in a JSON string");
      if (c != '\\')
        {
          s->p++;
          continue;
        }
      if (s->end - s->p < 2)
        break;
      switch (s->p[1])
        {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          s->p += 2;
          break;
        case 'u':
          {
            int unit = scan_hex4 (s, s->p + 2);

            if (unit < 0)
              return scan_fail (s, "invalid \\u escape in a JSON string");
            if (unit >= 0xdc00 && unit <= 0xdfff)
              return scan_fail (s, "lone UTF-16 surrogate in a JSON string");
            if (unit >= 0xd800 && unit <= 0xdbff)
              {
                int low = -1;

                if (s->end - s->p >= 12 && s->p[6] == '\\' && s->p[7] == 'u')
                  low = scan_hex4 (s, s->p + 8);
                if (low < 0xdc00 || low > 0xdfff)
                  return scan_fail (s, "lone UTF-16 surrogate in a JSON string");
                s->p += 6;
              }
            s->p += 6;
          }
          break;
        default:
          return scan_fail (s, "invalid escape in a JSON string");
        }
    }
  return scan_fail (s, "unterminated JSON string");
}

static gboolean
scan_digits (Scan *s)
{
  if (s->p >= s->end || !g_ascii_isdigit (*s->p))
    return scan_fail (s, "invalid JSON number");
  while (s->p < s->end && g_ascii_isdigit (*s->p))
    s->p++;
  return TRUE;
}

static gboolean
scan_number (Scan *s)
{
  const char *number = s->p;
  gboolean negative = *s->p == '-';
  gboolean integer = TRUE;
  const char *digits;
  gsize n;

  if (negative)
    s->p++;
  digits = s->p;
  /* No leading zeros: "01" is not a JSON number. */
  if (s->p < s->end && *s->p == '0')
    s->p++;
  else if (!scan_digits (s))
    return FALSE;
  n = s->p - digits;
  if (s->p < s->end && *s->p == '.')
    {
      s->p++;
      integer = FALSE;
      if (!scan_digits (s))
        return FALSE;
    }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E'))
    {
      s->p++;
      integer = FALSE;
      if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
        s->p++;
      if (!scan_digits (s))
        return FALSE;
    }
  /* json-glib wraps integers beyond 64 bits around without a word:
   * "quantity": -18446744073709551615 was read as 1
   * (fuzz/regressions/command/integer-wraps-around.json). */
  if (integer && (n > 19 || (n == 19 && memcmp (digits, negative ? "9223372036854775808"
                                                                 : "9223372036854775807",
                                                19) > 0)))
    return scan_fail (s, "JSON integer beyond the 64-bit range");
  /* json-glib reads "-91e3223372036854775807" as -inf and writes it back
   * as "-inf.0", which is not JSON: an event's data stored by the console
   * could then not be read again
   * (fuzz/regressions/event/crash-da21bad2b40c5c8da1d365bc796bbc962445da7c). */
  if (!integer)
    {
      g_autofree char *copy = g_strndup (number, s->p - number);

      if (isinf (g_ascii_strtod (copy, NULL)))
        return scan_fail (s, "JSON number beyond the range of a double");
    }
  return TRUE;
}

static gboolean
scan_word (Scan       *s,
           const char *word)
{
  gsize len = strlen (word);

  if ((gsize) (s->end - s->p) < len || memcmp (s->p, word, len) != 0)
    return scan_fail (s, "invalid JSON value");
  s->p += len;
  return TRUE;
}

/* The member name between the quotes at start..end (already checked by
 * scan_string), with its escapes decoded. */
static char *
member_name (const char *start,
             const char *end)
{
  GString *name;

  if (memchr (start, '\\', end - start) == NULL)
    return g_strndup (start, end - start);
  name = g_string_sized_new (end - start);
  for (const char *p = start; p < end; p++)
    {
      gunichar c;

      if (*p != '\\')
        {
          g_string_append_c (name, *p);
          continue;
        }
      p++;
      switch (*p)
        {
        case 'b': g_string_append_c (name, '\b'); break;
        case 'f': g_string_append_c (name, '\f'); break;
        case 'n': g_string_append_c (name, '\n'); break;
        case 'r': g_string_append_c (name, '\r'); break;
        case 't': g_string_append_c (name, '\t'); break;
        case 'u':
          c = 0;
          for (guint i = 1; i <= 4; i++)
            c = c << 4 | g_ascii_xdigit_value (p[i]);
          p += 4;
          if (c >= 0xd800 && c < 0xdc00 && p + 6 < end && p[1] == '\\' && p[2] == 'u')
            {
              gunichar low = 0;

              for (guint i = 3; i <= 6; i++)
                low = low << 4 | g_ascii_xdigit_value (p[i]);
              if (low >= 0xdc00 && low < 0xe000)
                {
                  c = 0x10000 + ((c - 0xd800) << 10) + (low - 0xdc00);
                  p += 6;
                }
            }
          g_string_append_unichar (name, c);
          break;
        default:
          g_string_append_c (name, *p);
          break;
        }
    }
  return g_string_free (name, FALSE);
}

static gboolean
scan_value (Scan *s)
{
  g_autoptr(GHashTable) names = NULL;
  g_autofree char *first_name = NULL;
  char close;

  scan_space (s);
  if (s->p >= s->end)
    return scan_fail (s, "JSON value missing");
  switch (*s->p)
    {
    case '"':
      return scan_string (s);
    case 't':
      return scan_word (s, "true");
    case 'f':
      return scan_word (s, "false");
    case 'n':
      return scan_word (s, "null");
    case '{':
    case '[':
      break;
    default:
      if (*s->p == '-' || g_ascii_isdigit (*s->p))
        return scan_number (s);
      return scan_fail (s, "invalid JSON value");
    }

  /* The depth is checked before going one level deeper. */
  if (++s->depth > OD_JSON_MAX_DEPTH)
    return scan_fail (s, "JSON nested deeper than " G_STRINGIFY (OD_JSON_MAX_DEPTH) " levels");
  close = *s->p == '{' ? '}' : ']';
  s->p++;
  scan_space (s);
  if (s->p < s->end && *s->p == close)
    {
      s->p++;
      s->depth--;
      return TRUE;
    }
  for (;;)
    {
      if (close == '}')
        {
          scan_space (s);
          const char *name_start = s->p + 1;
          char *name;

          if (s->p >= s->end || *s->p != '"')
            return scan_fail (s, "JSON member name missing");
          if (!scan_string (s))
            return FALSE;
          /* A name given twice is refused: json-glib keeps the last, a
           * proxy or another reader may take the first. */
          name = member_name (name_start, s->p - 1);
          if (first_name == NULL && names == NULL)
            first_name = name;
          else
            {
              if (names == NULL)
                {
                  names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
                  g_hash_table_add (names, g_steal_pointer (&first_name));
                }
              if (!g_hash_table_add (names, name))
                return scan_fail (s, "JSON member name given twice");
            }
          scan_space (s);
          if (s->p >= s->end || *s->p != ':')
            return scan_fail (s, "':' missing after a JSON member name");
          s->p++;
        }
      if (!scan_value (s))
        return FALSE;
      scan_space (s);
      if (s->p < s->end && *s->p == ',')
        {
          s->p++;
          continue;
        }
      if (s->p < s->end && *s->p == close)
        {
          s->p++;
          s->depth--;
          return TRUE;
        }
      return scan_fail (s, close == '}' ? "',' or '}' missing in a JSON object"
                                        : "',' or ']' missing in a JSON array");
    }
}

/* Whether text is one strict RFC 8259 value (see Scan), nested at most
 * OD_JSON_MAX_DEPTH deep: the gate before json-glib for any text that
 * comes from outside. */
gboolean
od_json_check (const char  *text,
               gsize        len,
               GError     **error)
{
  Scan s = { text, text, text + len, 0, NULL };

  if (scan_value (&s))
    {
      scan_space (&s);
      if (s.p == s.end)
        return TRUE;
      s.error = "trailing text after the JSON value";
    }
  g_set_error (error, JSON_PARSER_ERROR, JSON_PARSER_ERROR_INVALID_DATA,
               "%s (at byte %" G_GSIZE_FORMAT ")", s.error, (gsize) (s.p - s.start));
  return FALSE;
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

  /* An empty body can come as NULL (g_bytes_get_data() of an empty
   * GBytes): memchr (NULL, …, 0) below is undefined behaviour (found by
   * UBSan in faults-proxy, through the outbox's send_done). */
  if (text == NULL)
    {
      text = "";
      len = 0;
    }
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
  if (!od_json_check (text, len, error))
    return NULL;
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

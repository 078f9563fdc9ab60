/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Target: the console core's Server-Sent Events parser (src/core/od-sse.c)
 * fed what a server, or anything between it and the console, may send.
 * The network splits a stream anywhere, so the same bytes are fed whole,
 * one byte at a time and in chunks cut at places chosen from the input;
 * every way must give the same frames, and the same as a plain reading
 * of the rules.  Event frames then go through od_event_parse as the sync
 * engine does. */

#include "od-fuzz.h"
#include "od-protocol.h"
#include "od-sse.h"

#include <string.h>

typedef struct
{
  GString *log;
  guint    frames;
} Record;

static void
on_frame (const char *event,
          const char *id,
          const char *data,
          gsize       data_len,
          gpointer    user_data)
{
  Record *r = user_data;

  OD_FUZZ_CHECK (event != NULL && data != NULL);
  OD_FUZZ_CHECK (data[data_len] == '\0');
  OD_FUZZ_CHECK (id == NULL || strchr (id, '\0') != NULL);
  r->frames++;
  /* Lengths first, so that the log is unambiguous whatever the bytes. */
  g_string_append_printf (r->log, "F %zu %s %zu:", strlen (event), id ? "id" : "no-id",
                          data_len);
  g_string_append (r->log, event);
  g_string_append_c (r->log, '|');
  if (id != NULL)
    g_string_append (r->log, id);
  g_string_append_c (r->log, '|');
  g_string_append_len (r->log, data, data_len);
  g_string_append_c (r->log, '\n');

  if (strcmp (event, "head") != 0)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(OdEvent) ev = od_event_parse (data, data_len, &error);

      OD_FUZZ_CHECK ((ev == NULL) != (error == NULL));
    }
}

static void
on_retry (guint    retry_ms,
          gpointer user_data)
{
  Record *r = user_data;

  g_string_append_printf (r->log, "R %u\n", retry_ms);
}

/* Feeds data in chunks whose lengths come from a generator seeded by
 * the input itself, so that a crash reproduces from the file alone. */
static char *
run (const uint8_t *data,
     size_t         size,
     guint          mode)
{
  Record r = { g_string_new (NULL), 0 };
  g_autoptr(OdSseParser) parser = od_sse_parser_new (on_frame, on_retry, &r);
  guint32 seed = 2166136261u;
  size_t off = 0;

  for (size_t i = 0; i < size; i++)
    seed = (seed ^ data[i]) * 16777619u;
  seed ^= mode;

  while (off < size)
    {
      size_t chunk;

      if (mode == 0)
        chunk = size;
      else if (mode == 1)
        chunk = 1;
      else
        {
          seed = seed * 1103515245u + 12345u;
          chunk = 1 + (seed >> 16) % 17;
        }
      chunk = MIN (chunk, size - off);
      od_sse_parser_feed (parser, (const char *) data + off, chunk);
      off += chunk;
    }
  /* Empty feeds happen when a read returns nothing; they change nothing. */
  od_sse_parser_feed (parser, "", 0);
  g_string_append_printf (r.log, "frames %u\n", r.frames);
  return g_string_free (r.log, FALSE);
}

/* The same rules written the plain way, straight from the WHATWG text
 * and od-sse.h's documented choices (an id belongs to its frame only; a
 * retry of 1 to 9 digits), over the whole input at once. */
static char *
reference (const uint8_t *data,
           size_t         size)
{
  Record r = { g_string_new (NULL), 0 };
  g_autoptr(GString) event = g_string_new (NULL);
  g_autoptr(GString) id = g_string_new (NULL);
  g_autoptr(GString) buffer = g_string_new (NULL);
  gboolean has_id = FALSE;
  gboolean has_data = FALSE;
  size_t start = 0;

  for (size_t i = 0; i < size; i++)
    {
      const char *line = (const char *) data + start;
      size_t len = i - start;
      const char *value;
      size_t name_len, value_len;
      const char *colon;

      if (data[i] != '\r' && data[i] != '\n')
        continue;
      /* CRLF is one line end. */
      start = (data[i] == '\r' && i + 1 < size && data[i + 1] == '\n') ? i + 2 : i + 1;
      i = start - 1;

      if (len == 0)
        {
          if (has_data)
            on_frame (event->len ? event->str : "message", has_id ? id->str : NULL,
                      buffer->str, buffer->len, &r);
          g_string_truncate (event, 0);
          g_string_truncate (id, 0);
          g_string_truncate (buffer, 0);
          has_id = has_data = FALSE;
          continue;
        }
      if (line[0] == ':')
        continue;
      colon = memchr (line, ':', len);
      name_len = colon ? (size_t) (colon - line) : len;
      value = colon ? colon + 1 : line + len;
      value_len = colon ? len - name_len - 1 : 0;
      if (value_len > 0 && value[0] == ' ')
        {
          value++;
          value_len--;
        }
      if (name_len == 4 && memcmp (line, "data", 4) == 0)
        {
          if (has_data)
            g_string_append_c (buffer, '\n');
          g_string_append_len (buffer, value, value_len);
          has_data = TRUE;
        }
      else if (name_len == 5 && memcmp (line, "event", 5) == 0)
        {
          g_string_truncate (event, 0);
          g_string_append_len (event, value, value_len);
        }
      else if (name_len == 2 && memcmp (line, "id", 2) == 0)
        {
          if (memchr (value, '\0', value_len) == NULL)
            {
              g_string_truncate (id, 0);
              g_string_append_len (id, value, value_len);
              has_id = TRUE;
            }
        }
      else if (name_len == 5 && memcmp (line, "retry", 5) == 0)
        {
          guint ms = 0;
          gboolean ok = value_len >= 1 && value_len <= 9;

          for (size_t k = 0; k < value_len && ok; k++)
            {
              ok = value[k] >= '0' && value[k] <= '9';
              ms = ms * 10 + (guint) (value[k] - '0');
            }
          if (ok)
            on_retry (ms, &r);
        }
    }
  g_string_append_printf (r.log, "frames %u\n", r.frames);
  return g_string_free (r.log, FALSE);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autofree char *whole = run (data, size, 0);
  g_autofree char *bytes = run (data, size, 1);
  g_autofree char *chunks = run (data, size, 2);
  g_autofree char *chunks2 = run (data, size, 3);

  OD_FUZZ_CHECK (strcmp (whole, bytes) == 0);
  OD_FUZZ_CHECK (strcmp (whole, chunks) == 0);
  OD_FUZZ_CHECK (strcmp (whole, chunks2) == 0);

  {
    g_autofree char *expected = reference (data, size);

    if (strcmp (whole, expected) != 0)
      fprintf (stderr, "od-sse:\n%s\nreference:\n%s\n", whole, expected);
    OD_FUZZ_CHECK (strcmp (whole, expected) == 0);
  }

  /* After a reset the parser starts clean: the same bytes give the same
   * frames as a new parser. */
  {
    Record r = { g_string_new (NULL), 0 };
    g_autoptr(OdSseParser) parser = od_sse_parser_new (on_frame, on_retry, &r);
    g_autofree char *log = NULL;

    od_sse_parser_feed (parser, (const char *) data, size / 2);
    od_sse_parser_reset (parser);
    g_string_truncate (r.log, 0);
    r.frames = 0;
    od_sse_parser_feed (parser, (const char *) data, size);
    od_sse_parser_feed (parser, "", 0);
    g_string_append_printf (r.log, "frames %u\n", r.frames);
    log = g_string_free (r.log, FALSE);
    OD_FUZZ_CHECK (strcmp (whole, log) == 0);
  }
  return 0;
}

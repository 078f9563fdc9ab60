/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-sse.h"

#include <string.h>

/* A line may hold a whole frame's data after its field name. */
#define MAX_LINE (OD_SSE_MAX_FRAME + 64)

struct _OdSseParser
{
  OdSseFrameFunc frame_func;
  OdSseRetryFunc retry_func;
  gpointer       user_data;

  GString       *line;        /* partial line carried over between feeds */
  gboolean       skip_lf;     /* the previous chunk ended in CR */
  gboolean       failed;      /* a line or a frame was over the bound */
  GString       *data;
  GString       *event;
  GString       *id;
  gboolean       has_id;
  gboolean       has_data;
};

OdSseParser *
od_sse_parser_new (OdSseFrameFunc frame_func,
                   OdSseRetryFunc retry_func,
                   gpointer       user_data)
{
  OdSseParser *p = g_new0 (OdSseParser, 1);

  p->frame_func = frame_func;
  p->retry_func = retry_func;
  p->user_data = user_data;
  p->line = g_string_sized_new (4096);
  p->data = g_string_sized_new (4096);
  p->event = g_string_new (NULL);
  p->id = g_string_new (NULL);
  return p;
}

void
od_sse_parser_free (OdSseParser *p)
{
  if (p == NULL)
    return;
  g_string_free (p->line, TRUE);
  g_string_free (p->data, TRUE);
  g_string_free (p->event, TRUE);
  g_string_free (p->id, TRUE);
  g_free (p);
}

static void
reset_frame (OdSseParser *p)
{
  g_string_truncate (p->data, 0);
  g_string_truncate (p->event, 0);
  g_string_truncate (p->id, 0);
  p->has_id = FALSE;
  p->has_data = FALSE;
}

void
od_sse_parser_reset (OdSseParser *p)
{
  g_string_truncate (p->line, 0);
  p->skip_lf = FALSE;
  p->failed = FALSE;
  reset_frame (p);
}

static void
dispatch (OdSseParser *p)
{
  if (p->has_data)
    p->frame_func (p->event->len ? p->event->str : "message", p->has_id ? p->id->str : NULL,
                   p->data->str, p->data->len, p->user_data);
  reset_frame (p);
}

static void
process_line (OdSseParser *p,
              const char  *line,
              gsize        len)
{
  const char *colon;
  gsize name_len;
  const char *value;
  gsize value_len;

  if (len == 0)
    {
      dispatch (p);
      return;
    }
  if (line[0] == ':')
    return;
  colon = memchr (line, ':', len);
  if (colon != NULL)
    {
      name_len = colon - line;
      value = colon + 1;
      value_len = len - name_len - 1;
      if (value_len > 0 && value[0] == ' ')
        {
          value++;
          value_len--;
        }
    }
  else
    {
      name_len = len;
      value = line + len;
      value_len = 0;
    }

  if (name_len == 4 && memcmp (line, "data", 4) == 0)
    {
      /* Many data lines and no blank line would grow the frame without
       * bound: the per-line bound does not bound the frame. */
      if (p->data->len + 1 + value_len > OD_SSE_MAX_FRAME)
        {
          p->failed = TRUE;
          reset_frame (p);
          return;
        }
      if (p->has_data)
        g_string_append_c (p->data, '\n');
      g_string_append_len (p->data, value, value_len);
      p->has_data = TRUE;
    }
  else if (name_len == 5 && memcmp (line, "event", 5) == 0)
    {
      g_string_truncate (p->event, 0);
      g_string_append_len (p->event, value, value_len);
    }
  else if (name_len == 2 && memcmp (line, "id", 2) == 0)
    {
      if (memchr (value, '\0', value_len) == NULL)
        {
          g_string_truncate (p->id, 0);
          g_string_append_len (p->id, value, value_len);
          p->has_id = TRUE;
        }
    }
  else if (name_len == 5 && memcmp (line, "retry", 5) == 0)
    {
      guint64 ms = 0;
      gboolean digits = value_len > 0 && value_len < 10;

      for (gsize i = 0; i < value_len && digits; i++)
        {
          if (!g_ascii_isdigit (value[i]))
            digits = FALSE;
          else
            ms = ms * 10 + (value[i] - '0');
        }
      if (digits && p->retry_func)
        p->retry_func ((guint) ms, p->user_data);
    }
}

/* Splits by hand with memchr: much faster than reading line by line. */
gboolean
od_sse_parser_feed (OdSseParser *p,
                    const char  *bytes,
                    gsize        len)
{
  const char *cur = bytes;
  const char *end = bytes + len;

  if (p->failed)
    return FALSE;

  if (len > 0 && p->skip_lf)
    {
      if (*cur == '\n')
        cur++;
      p->skip_lf = FALSE;
    }
  while (cur < end)
    {
      const char *nl = memchr (cur, '\n', end - cur);
      const char *cr = memchr (cur, '\r', (nl ? nl : end) - cur);
      const char *eol = cr ? cr : nl;
      gsize seg;

      if (eol == NULL)
        {
          /* No line end in what is left: keep it for the next feed. */
          if (p->line->len + (end - cur) > MAX_LINE)
            {
              p->failed = TRUE;
              g_string_truncate (p->line, 0);
              reset_frame (p);
              return FALSE;
            }
          g_string_append_len (p->line, cur, end - cur);
          return TRUE;
        }
      seg = eol - cur;
      if (p->line->len + seg > MAX_LINE)
        {
          p->failed = TRUE;
          g_string_truncate (p->line, 0);
          reset_frame (p);
          return FALSE;
        }
      if (p->line->len > 0)
        {
          g_string_append_len (p->line, cur, seg);
          process_line (p, p->line->str, p->line->len);
          g_string_truncate (p->line, 0);
        }
      else
        process_line (p, cur, seg);
      if (p->failed)
        return FALSE;

      cur = eol + 1;
      if (*eol == '\r')
        {
          if (cur < end)
            {
              if (*cur == '\n')
                cur++;
            }
          else
            p->skip_lf = TRUE;
        }
    }
  return TRUE;
}

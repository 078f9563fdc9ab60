/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-event-fast.h"
#include "od-json.h"
#include "od-json-scan.h"

#include <string.h>

/* json-glib costs ~10 µs an event (a GScanner, signals, a hash table per
 * object), which alone caps a catch-up near 100k events/s on one core.
 * Events as the contract defines them are flat: integers and plain
 * strings, and a `data` object of the same.  This scanner reads exactly
 * that shape and builds the OdEvent directly; anything else (escapes,
 * floats, nesting, odd members) returns NULL and the caller parses the
 * line on the strict path (od_json_parse_object), so no valid input is
 * ever refused here, and nothing the strict check refuses (escapes such
 * as lone surrogates, raw control characters, integers beyond 64 bits,
 * leading zeros, invalid UTF-8 or NUL bytes) is ever accepted here. */

/* The data object: plain strings, integers, true, false, null.  With
 * `object` NULL it is only checked (the cache folds it from its text);
 * otherwise *object is set to it, parsed. */
#define MAX_DATA_MEMBERS 32

static gboolean
data_object (OdJsonScan  *s,
             JsonObject **object)
{
  g_autoptr(JsonObject) o = object ? json_object_new () : NULL;
  const char *keys[MAX_DATA_MEMBERS];
  gsize key_lens[MAX_DATA_MEMBERS];
  guint n = 0;

  if (!od_json_scan_expect (s, '{'))
    return FALSE;
  if (od_json_scan_expect (s, '}'))
    goto done;
  for (;;)
    {
      const char *k, *v;
      gsize klen, vlen;
      g_autofree char *key = NULL;

      if (!od_json_scan_string (s, &k, &klen) || !od_json_scan_expect (s, ':'))
        return FALSE;
      /* A name given twice is malformed (od_json_check): the strict
       * path says so.  So does an object with more members than we
       * compare here. */
      if (n == MAX_DATA_MEMBERS)
        return FALSE;
      for (guint i = 0; i < n; i++)
        if (key_lens[i] == klen && memcmp (keys[i], k, klen) == 0)
          return FALSE;
      keys[n] = k;
      key_lens[n++] = klen;
      if (o != NULL)
        key = g_strndup (k, klen);
      od_json_scan_space (s);
      if (s->p >= s->end)
        return FALSE;
      if (*s->p == '"')
        {
          if (!od_json_scan_string (s, &v, &vlen))
            return FALSE;
          if (o != NULL)
            {
              g_autofree char *value = g_strndup (v, vlen);

              json_object_set_string_member (o, key, value);
            }
        }
      else if (*s->p == '-' || g_ascii_isdigit (*s->p))
        {
          gint64 number;

          if (!od_json_scan_integer (s, &number))
            return FALSE;
          if (o != NULL)
            json_object_set_int_member (o, key, number);
        }
      else if (s->end - s->p >= 4 && memcmp (s->p, "true", 4) == 0)
        {
          s->p += 4;
          if (o != NULL)
            json_object_set_boolean_member (o, key, TRUE);
        }
      else if (s->end - s->p >= 5 && memcmp (s->p, "false", 5) == 0)
        {
          s->p += 5;
          if (o != NULL)
            json_object_set_boolean_member (o, key, FALSE);
        }
      else if (s->end - s->p >= 4 && memcmp (s->p, "null", 4) == 0)
        {
          s->p += 4;
          if (o != NULL)
            json_object_set_null_member (o, key);
        }
      else
        return FALSE;
      if (od_json_scan_expect (s, '}'))
        break;
      if (!od_json_scan_expect (s, ','))
        return FALSE;
    }
done:
  if (object != NULL)
    *object = g_steal_pointer (&o);
  return TRUE;
}

/* In the order of the bits of `seen` below. */
static const char *const member_names[] = {
  "position", "prev", "order_id", "version", "type", "recorded_at", "actor", "data",
};

static OdEvent *
parse_fast (const char *text,
            gsize       len,
            gboolean    with_node)
{
  OdJsonScan s = { text, text + len };
  g_autoptr(OdEvent) ev = NULL;
  guint seen = 0;
  enum { POS = 1, PREV = 2, ID = 4, VER = 8, TYPE = 16, AT = 32, ACTOR = 64, DATA = 128 };

  if (!g_utf8_validate (text, len, NULL) || !od_json_scan_expect (&s, '{'))
    return NULL;
  ev = od_event_new ();
  for (;;)
    {
      const char *k, *v;
      gsize klen, vlen;

      if (!od_json_scan_string (&s, &k, &klen) || !od_json_scan_expect (&s, ':'))
        return NULL;
      /* A member given twice goes to the strict path, which keeps the last
       * one as json-glib does; here the first value would leak (found by
       * fuzzing: fuzz/regressions/event-fast/). */
      for (guint i = 0; i < G_N_ELEMENTS (member_names); i++)
        if ((seen & (1u << i)) && od_json_scan_is (k, klen, member_names[i]))
          return NULL;
      if (od_json_scan_is (k, klen, "position") || od_json_scan_is (k, klen, "prev")
          || od_json_scan_is (k, klen, "version"))
        {
          gint64 n;

          if (!od_json_scan_integer (&s, &n))
            return NULL;
          if (k[0] == 'p' && k[1] == 'o')
            ev->position = n, seen |= POS;
          else if (k[0] == 'p')
            ev->prev = n, seen |= PREV;
          else
            ev->version = n, seen |= VER;
        }
      else if (od_json_scan_is (k, klen, "data"))
        {
          const char *start;
          JsonObject *o = NULL;

          od_json_scan_space (&s);
          start = s.p;
          if (!data_object (&s, with_node ? &o : NULL))
            return NULL;
          if (o != NULL)
            {
              ev->data_node = json_node_init_object (json_node_alloc (), o);
              json_object_unref (o);
            }
          /* The data exactly as the server sent it. */
          ev->data = g_strndup (start, s.p - start);
          seen |= DATA;
        }
      else
        {
          if (!od_json_scan_string (&s, &v, &vlen))
            return NULL;
          if (od_json_scan_is (k, klen, "order_id"))
            {
              if (vlen != OD_UUID_LEN)
                return NULL;
              memcpy (ev->order_id, v, OD_UUID_LEN);
              ev->order_id[OD_UUID_LEN] = '\0';
              seen |= ID;
            }
          else if (od_json_scan_is (k, klen, "type"))
            ev->type = g_strndup (v, vlen), seen |= TYPE;
          else if (od_json_scan_is (k, klen, "recorded_at"))
            ev->recorded_at = g_strndup (v, vlen), seen |= AT;
          else if (od_json_scan_is (k, klen, "actor"))
            ev->actor = g_strndup (v, vlen), seen |= ACTOR;
          else
            return NULL; /* a member we do not know: let json-glib judge */
        }
      if (od_json_scan_expect (&s, '}'))
        break;
      if (!od_json_scan_expect (&s, ','))
        return NULL;
    }
  od_json_scan_space (&s);
  if (s.p != s.end || seen != 255)
    return NULL;
  /* The same rules as od_event_from_object(). */
  if (ev->position < 1 || ev->prev < 0 || ev->prev >= ev->position || ev->version < 1
      || !od_uuid_is_valid (ev->order_id))
    return NULL;
  return g_steal_pointer (&ev);
}

OdEvent *
od_event_parse_fast (const char *text,
                     gsize       len)
{
  return parse_fast (text, len, TRUE);
}

/* The same events, their data kept as text only (data_node NULL, parsed
 * when asked: od_event_get_data): the cache folds the flat shape from
 * the text (od_order_apply_flat), and a JsonObject per event was a good
 * part of a catch-up's allocations. */
OdEvent *
od_event_parse_fast_lean (const char *text,
                          gsize       len)
{
  return parse_fast (text, len, FALSE);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Target: the console core's hand-written event parser
 * (src/core/od-event-fast.c), checked against the strict reference,
 * od_event_parse (src/protocol: the strict RFC 8259 check, then
 * json-glib), which is the judge.  The fast parser may decline anything
 * (the sync engine then falls back to od_event_parse), but what it
 * accepts must be exactly what the reference makes of the same bytes:
 *
 *  - fast returns an event  =>  the reference accepts the text, with the
 *    same position, prev, order_id, version, type, recorded_at, actor and
 *    an equal data object;
 *  - the reference refuses  =>  fast returns NULL (the same rule read the
 *    other way; checked by the first).
 *
 * The input is one envelope, as in one SSE data field; it is passed
 * without a terminating NUL, as the SSE parser may hand over a slice. */

#include "od-fuzz.h"
#include "od-protocol.h"
#include "od-event-fast.h"

#include <string.h>

/* Prints both results, so that a failure in CI says what differs. */
static void
describe (const char    *what,
          const uint8_t *data,
          size_t         size,
          const OdEvent *fast,
          const OdEvent *strict,
          const GError  *error)
{
  /* Cut at the first NUL, which is enough to identify the input; the
   * file itself is kept by libFuzzer. */
  g_autofree char *copy = g_strndup ((const char *) data, size);
  g_autofree char *input = g_strescape (copy, NULL);
  GString *out = g_string_new (NULL);

  g_string_append_printf (out, "event-fast: %s\n  input: \"%s\" (%zu bytes)\n", what, input,
                          size);
  for (guint i = 0; i < 2; i++)
    {
      const OdEvent *e = i == 0 ? fast : strict;

      g_string_append (out, i == 0 ? "  fast:   " : "  strict: ");
      if (e == NULL)
        g_string_append_printf (out, "NULL%s%s\n", i == 1 && error ? ": " : "",
                                i == 1 && error ? error->message : "");
      else
        {
          g_autofree char *node = e->data_node ? json_to_string (e->data_node, FALSE) : NULL;

          g_string_append_printf (out,
                                  "position=%" G_GINT64_FORMAT " prev=%" G_GINT64_FORMAT
                                  " order_id=%s version=%" G_GINT64_FORMAT
                                  " type=%s recorded_at=%s actor=%s data=%s data_node=%s\n",
                                  e->position, e->prev, e->order_id, e->version, e->type,
                                  e->recorded_at, e->actor, e->data, node ? node : "(null)");
        }
    }
  fputs (out->str, stderr);
  g_string_free (out, TRUE);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OdEvent) strict = NULL;
  g_autoptr(OdEvent) fast = NULL;
  g_autoptr(JsonNode) reparsed = NULL;
  g_autoptr(GError) reparse_error = NULL;
  /* A private copy without a NUL after it: a read past the slice is an
   * ASan error in the fuzzing build. */
  g_autofree char *text = g_memdup2 (size ? (const char *) data : "", size ? size : 1);

  strict = od_event_parse (text, size, &error);
  OD_FUZZ_CHECK ((strict == NULL) != (error == NULL));
  fast = od_event_parse_fast (text, size);
  if (fast == NULL)
    return 0;

  if (strict == NULL)
    {
      describe ("the fast parser accepted what the strict parser refuses", data, size, fast,
                strict, error);
      OD_FUZZ_CHECK (strict != NULL);
    }

  if (fast->position != strict->position || fast->prev != strict->prev
      || strcmp (fast->order_id, strict->order_id) != 0 || fast->version != strict->version
      || g_strcmp0 (fast->type, strict->type) != 0
      || g_strcmp0 (fast->recorded_at, strict->recorded_at) != 0
      || g_strcmp0 (fast->actor, strict->actor) != 0)
    describe ("envelopes differ", data, size, fast, strict, error);
  OD_FUZZ_CHECK (fast->position == strict->position);
  OD_FUZZ_CHECK (fast->prev == strict->prev);
  OD_FUZZ_CHECK (strcmp (fast->order_id, strict->order_id) == 0);
  OD_FUZZ_CHECK (fast->version == strict->version);
  OD_FUZZ_CHECK (g_strcmp0 (fast->type, strict->type) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (fast->recorded_at, strict->recorded_at) == 0);
  OD_FUZZ_CHECK (g_strcmp0 (fast->actor, strict->actor) == 0);

  /* data: fast keeps the bytes as received, the reference re-serialises,
   * so the objects are compared, not the texts.  The fast parser's own
   * node, and the reference's reading of the text it kept (the console
   * stores that text and parses it again from its cache), must both
   * equal the reference's object. */
  OD_FUZZ_CHECK (fast->data != NULL && fast->data_node != NULL);
  OD_FUZZ_CHECK (JSON_NODE_HOLDS_OBJECT (fast->data_node));
  if (!json_node_equal (fast->data_node, strict->data_node))
    describe ("data objects differ", data, size, fast, strict, error);
  OD_FUZZ_CHECK (json_node_equal (fast->data_node, strict->data_node));
  reparsed = od_json_parse_object (fast->data, -1, &reparse_error);
  if (reparsed == NULL || !json_node_equal (reparsed, strict->data_node))
    describe ("the data text kept by the fast parser does not read back as the same object",
              data, size, fast, strict, reparse_error);
  OD_FUZZ_CHECK (reparsed != NULL);
  OD_FUZZ_CHECK (json_node_equal (reparsed, strict->data_node));

  /* What the console stores and serves again reads back the same. */
  {
    g_autoptr(GString) json = g_string_new (NULL);
    g_autoptr(OdEvent) again = NULL;

    od_event_append_json (json, fast);
    again = od_event_parse_fast (json->str, json->len);
    if (again == NULL)
      again = od_event_parse (json->str, json->len, NULL);
    OD_FUZZ_CHECK (again != NULL);
    OD_FUZZ_CHECK (again->position == fast->position && again->prev == fast->prev);
    OD_FUZZ_CHECK (strcmp (again->type, fast->type) == 0);
    OD_FUZZ_CHECK (json_node_equal (again->data_node, strict->data_node));
  }
  return 0;
}

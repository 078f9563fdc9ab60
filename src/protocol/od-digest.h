/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The largest range GET /v1/events/digest answers. */
#define OD_DIGEST_MAX_RANGE 1000000

/* The SHA-256 of GET /v1/events/digest, shared by server and client so
 * that both hash the same bytes the same way: nettle's, which uses the
 * CPU's SHA instructions where there are any (GChecksum never does). */
typedef struct _OdDigest OdDigest;

#define OD_DIGEST_HEX_LEN 64

OdDigest *od_digest_new       (void);
void      od_digest_free      (OdDigest   *self);
void      od_digest_update    (OdDigest   *self,
                               const void *data,
                               gsize       len);

/* Feeds one event's canonical line: position TAB order_id TAB version
 * TAB type TAB recorded_at TAB actor TAB data LF (a NULL string adds
 * nothing but its separator; data_len < 0: up to its NUL). */
void      od_digest_add_event (OdDigest   *self,
                               gint64      position,
                               const char *order_id,
                               gint64      version,
                               const char *type,
                               const char *recorded_at,
                               const char *actor,
                               const char *data,
                               gssize      data_len);

/* The same line appended to lines, for readers that format events on
 * threads of their own (od_digest_add_ranges ()); lengths < 0: up to the
 * string's NUL. */
void      od_digest_append_event (GByteArray *lines,
                                  gint64      position,
                                  const char *order_id,
                                  gssize      order_id_len,
                                  gint64      version,
                                  const char *type,
                                  gssize      type_len,
                                  const char *recorded_at,
                                  gssize      recorded_at_len,
                                  const char *actor,
                                  gssize      actor_len,
                                  const char *data,
                                  gssize      data_len);

/* Appends to lines the canonical line (od_digest_append_event ()) of
 * every event with after < position <= upto, in position order, and adds
 * their number to count; FALSE with error set on failure. */
typedef gboolean (*OdDigestReadFunc) (gpointer     user_data,
                                      gint64       after,
                                      gint64       upto,
                                      GByteArray  *lines,
                                      gint64      *count,
                                      GError     **error);

#define OD_DIGEST_MAX_READERS 8

/* Feeds the events of after < position <= upto, read by read () in
 * ranges of `range` positions on up to n_readers threads at once, in
 * position order: the hash is that of one read of the whole range.  The
 * ranges are read at different moments, so the caller must know that
 * the events up to upto no longer change (upto at most a head already
 * read, in an append-only log).  The events' number is added to
 * count. */
gboolean  od_digest_add_ranges (OdDigest          *self,
                                gint64             after,
                                gint64             upto,
                                gint64             range,
                                guint              n_readers,
                                OdDigestReadFunc   read,
                                gpointer           user_data,
                                gint64            *count,
                                GError           **error);

/* Writes the lower-case hex SHA-256 of everything fed, NUL-terminated,
 * into hex; the digest starts over afterwards. */
void      od_digest_finish    (OdDigest   *self,
                               char        hex[OD_DIGEST_HEX_LEN + 1]);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (OdDigest, od_digest_free)

/* Raw JSON spans, for keeping `data` byte for byte as received: json-glib
 * parses but cannot say where a value was in its text.  Both expect text
 * that a strict parser has accepted (they stay within len whatever it
 * is) and return FALSE when the shape is not the expected one. */

/* The value of the top-level member name (a plain key, no escapes) of the
 * JSON object in text. */
gboolean od_json_raw_member   (const char  *text,
                               gsize        len,
                               const char  *name,
                               const char **value,
                               gsize       *value_len);

/* The elements of the array that is the top-level member name of the
 * object in text: pairs of (offset, length) into text, 2 per element. */
GArray  *od_json_raw_elements (const char  *text,
                               gsize        len,
                               const char  *name);

G_END_DECLS

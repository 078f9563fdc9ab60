/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-digest.h"

#include <string.h>

static inline void
add_text (GChecksum  *sum,
          const char *text,
          gssize      len,
          char        sep)
{
  if (text != NULL)
    g_checksum_update (sum, (const guchar *) text, len < 0 ? strlen (text) : (gsize) len);
  g_checksum_update (sum, (const guchar *) &sep, 1);
}

void
od_digest_add_event (GChecksum  *sum,
                     gint64      position,
                     const char *order_id,
                     gint64      version,
                     const char *type,
                     const char *recorded_at,
                     const char *actor,
                     const char *data,
                     gssize      data_len)
{
  char num[24];
  int n;

  n = g_snprintf (num, sizeof num, "%" G_GINT64_FORMAT "\t", position);
  g_checksum_update (sum, (const guchar *) num, n);
  add_text (sum, order_id, -1, '\t');
  n = g_snprintf (num, sizeof num, "%" G_GINT64_FORMAT "\t", version);
  g_checksum_update (sum, (const guchar *) num, n);
  add_text (sum, type, -1, '\t');
  add_text (sum, recorded_at, -1, '\t');
  add_text (sum, actor, -1, '\t');
  add_text (sum, data, data_len, '\n');
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define OD_UUID_LEN 36

gboolean  od_uuid_is_valid (const char *str);
char     *od_uuid_v7_new   (void);
void      od_uuid_v7_fill  (char        out[OD_UUID_LEN + 1],
                            gint64      unix_msec);

G_END_DECLS

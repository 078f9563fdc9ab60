/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <sqlite3.h>

G_BEGIN_DECLS

#define OD_WAL_VFS_NAME "od-wal"

/* Registers the VFS (once; not as the default) and returns its name, for
 * sqlite3_open_v2 (). */
const char *od_wal_vfs_register (void);

G_END_DECLS

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-store.h"

G_BEGIN_DECLS

#define OD_TYPE_STORE_SQLITE (od_store_sqlite_get_type ())
G_DECLARE_FINAL_TYPE (OdStoreSqlite, od_store_sqlite, OD, STORE_SQLITE, GObject)

OdStore *od_store_sqlite_new (const char  *path,
                              GError     **error);
void     od_store_sqlite_set_frame_blocks (OdStoreSqlite *self,
                                           gboolean       keep);
void     od_store_sqlite_wait_frame_blocks (OdStoreSqlite *self);

G_END_DECLS

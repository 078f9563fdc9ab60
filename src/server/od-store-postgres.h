/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include "od-store.h"

G_BEGIN_DECLS

OdStore *od_store_postgres_new (const char  *conninfo,
                                GError     **error);

G_END_DECLS

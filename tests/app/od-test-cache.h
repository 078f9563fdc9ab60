/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Writes a read cache of n_orders orders (one line each, no events) into
 * the core's own schema: the core creates the file, then rows go in with
 * plain SQL with the indexes and triggers set aside, which makes a million
 * orders in seconds rather than the minutes replaying events takes.
 * sync_state says the cache applied position n_orders and last heard from
 * the server an hour ago. */
gboolean od_test_make_cache        (const char  *path,
                                    guint        n_orders,
                                    GError     **error);

/* The path of a shared cache of n_orders in the build directory, made on
 * first use (and kept for the next test run). */
char    *od_test_shared_cache      (guint        n_orders,
                                    GError     **error);

/* Commits `sql` to the cache at `path` from a connection of its own, as
 * another program would; its last statement must change a row. */
void     od_test_cache_write       (const char  *path,
                                    const char  *sql);

G_END_DECLS

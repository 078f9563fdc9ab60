/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* A GNetworkMonitor whose network the test switches on and off: the
 * machine's own network cannot be taken away in a test.  While off, it
 * can reach nothing (G_IO_ERROR_NETWORK_UNREACHABLE); while on, every
 * address. */
#define OD_TYPE_TEST_NETWORK (od_test_network_get_type ())
G_DECLARE_FINAL_TYPE (OdTestNetwork, od_test_network, OD, TEST_NETWORK, GObject)

OdTestNetwork *od_test_network_new           (gboolean       available);
/* Emits GNetworkMonitor::network-changed when it changes. */
void           od_test_network_set_available (OdTestNetwork *self,
                                              gboolean       available);

G_END_DECLS

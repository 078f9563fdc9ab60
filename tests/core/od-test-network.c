/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-network.h"

struct _OdTestNetwork
{
  GObject  parent_instance;

  gboolean available;
};

enum {
  PROP_0,
  PROP_NETWORK_AVAILABLE,
  PROP_NETWORK_METERED,
  PROP_CONNECTIVITY,
};

static void od_test_network_initable_iface_init (GInitableIface *iface);
static void od_test_network_monitor_iface_init (GNetworkMonitorInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (OdTestNetwork, od_test_network, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_INITABLE,
                                                      od_test_network_initable_iface_init)
                               G_IMPLEMENT_INTERFACE (G_TYPE_NETWORK_MONITOR,
                                                      od_test_network_monitor_iface_init))

static gboolean
od_test_network_initable_init (GInitable     *initable,
                               GCancellable  *cancellable,
                               GError       **error)
{
  return TRUE;
}

static void
od_test_network_initable_iface_init (GInitableIface *iface)
{
  iface->init = od_test_network_initable_init;
}

static gboolean
od_test_network_can_reach (GNetworkMonitor     *monitor,
                           GSocketConnectable  *connectable,
                           GCancellable        *cancellable,
                           GError             **error)
{
  if (OD_TEST_NETWORK (monitor)->available)
    return TRUE;
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NETWORK_UNREACHABLE, "Network unreachable");
  return FALSE;
}

static void
od_test_network_monitor_iface_init (GNetworkMonitorInterface *iface)
{
  /* can_reach_async: the interface's default runs can_reach. */
  iface->can_reach = od_test_network_can_reach;
}

static void
od_test_network_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  OdTestNetwork *self = OD_TEST_NETWORK (object);

  switch (prop_id)
    {
    case PROP_NETWORK_AVAILABLE:
      g_value_set_boolean (value, self->available);
      break;
    case PROP_NETWORK_METERED:
      g_value_set_boolean (value, FALSE);
      break;
    case PROP_CONNECTIVITY:
      g_value_set_enum (value, self->available ? G_NETWORK_CONNECTIVITY_FULL
                                               : G_NETWORK_CONNECTIVITY_LOCAL);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_test_network_class_init (OdTestNetworkClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = od_test_network_get_property;
  g_object_class_override_property (object_class, PROP_NETWORK_AVAILABLE, "network-available");
  g_object_class_override_property (object_class, PROP_NETWORK_METERED, "network-metered");
  g_object_class_override_property (object_class, PROP_CONNECTIVITY, "connectivity");
}

static void
od_test_network_init (OdTestNetwork *self)
{
}

OdTestNetwork *
od_test_network_new (gboolean available)
{
  OdTestNetwork *self = g_object_new (OD_TYPE_TEST_NETWORK, NULL);

  self->available = available;
  return self;
}

void
od_test_network_set_available (OdTestNetwork *self,
                               gboolean       available)
{
  g_return_if_fail (OD_IS_TEST_NETWORK (self));

  available = !!available;
  if (self->available == available)
    return;
  self->available = available;
  g_object_notify (G_OBJECT (self), "network-available");
  g_object_notify (G_OBJECT (self), "connectivity");
  g_signal_emit_by_name (self, "network-changed", available);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A TCP proxy on loopback that injects faults between a client and a
 * server: cuts at a chosen byte offset (FIN or RST), refused (reset)
 * connections, delays with fragmentation, and stalls.  It runs on threads
 * of its own (one per connection), so the test's main loop stays free.
 * With OD_FAULT_DUMP=DIR set, the bytes each connection passed to the
 * client are written to DIR/conn-NNNNN (for looking into a failure). */

typedef enum
{
  OD_FAULT_TO_SERVER, /* bytes from the client to the server */
  OD_FAULT_TO_CLIENT, /* bytes from the server to the client */
} OdFaultDirection;

/* Which request a connection carried first (from its request line). */
typedef enum
{
  OD_FAULT_CONN_UNKNOWN, /* nothing sent yet */
  OD_FAULT_CONN_STREAM,  /* GET /v1/events/stream */
  OD_FAULT_CONN_EVENTS,  /* GET /v1/events */
  OD_FAULT_CONN_HEAD,    /* GET /v1/head */
  OD_FAULT_CONN_COMMAND, /* POST /v1/commands */
  OD_FAULT_CONN_OTHER,
  OD_FAULT_CONN_N,
} OdFaultConnKind;

const char *od_fault_conn_kind_name (OdFaultConnKind kind);

typedef struct
{
  gint64           time;       /* g_get_monotonic_time () of the cut */
  OdFaultDirection direction;
  OdFaultConnKind  kind;
  guint64          conn_offset;/* bytes that connection had carried that way before the cut */
  gboolean         reset;      /* RST rather than FIN */
  gint64           probe;      /* what the probe function returned at the cut */
} OdFaultCut;

typedef struct _OdFaultProxy OdFaultProxy;

/* Called on a proxy thread at each cut; its value is kept in the cut's
 * record (e.g. the server head at that moment). */
typedef gint64 (*OdFaultProbeFunc) (gpointer user_data);

OdFaultProxy *od_fault_proxy_new        (guint             upstream_port);
void          od_fault_proxy_free       (OdFaultProxy     *proxy);
guint         od_fault_proxy_get_port   (OdFaultProxy     *proxy);
/* "http://127.0.0.1:PORT" */
char         *od_fault_proxy_get_url    (OdFaultProxy     *proxy);
void          od_fault_proxy_set_probe  (OdFaultProxy     *proxy,
                                         OdFaultProbeFunc  func,
                                         gpointer          user_data);

/* Arms one cut: the connection carrying the `offset`-th byte (0 = the
 * next byte) going `direction` from now on, on whichever connection, gets
 * that many bytes through and is then closed on both sides, with a RST
 * when `reset`.  One cut can be armed each way. */
void          od_fault_proxy_arm_cut    (OdFaultProxy     *proxy,
                                         OdFaultDirection  direction,
                                         guint64           offset,
                                         gboolean          reset);
/* Number of cuts done so far; *last gets the last one. */
guint         od_fault_proxy_get_cuts   (OdFaultProxy     *proxy,
                                         OdFaultCut       *last);
/* The next `n` connections are reset as soon as they are accepted. */
void          od_fault_proxy_drop_next  (OdFaultProxy     *proxy,
                                         guint             n);
guint         od_fault_proxy_get_drops  (OdFaultProxy     *proxy);
/* Bytes to the client go in pieces of 1..max_piece bytes, each after a
 * pause of 0..max_delay_ms (0, 0 = off). */
void          od_fault_proxy_set_delay  (OdFaultProxy     *proxy,
                                         guint             max_delay_ms,
                                         guint             max_piece);
/* Connections open now stop passing bytes either way (new ones are not
 * affected) until od_fault_proxy_stall (proxy, FALSE). */
void          od_fault_proxy_stall      (OdFaultProxy     *proxy,
                                         gboolean          stalled);
guint         od_fault_proxy_get_connections (OdFaultProxy *proxy);

G_END_DECLS

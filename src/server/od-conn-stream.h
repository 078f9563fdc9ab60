/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The stream libsoup reads and writes one accepted connection through.
 * It forwards to the real stream (a GSocketConnection or a
 * GTlsServerConnection) and does two things libsoup 3.2 cannot:
 *
 * - While "idle" (between two requests of a keep-alive connection) it
 *   holds back end-of-stream and read errors and emits "peer-gone"
 *   instead.  libsoup 3.2 leaks an idle connection whose peer closes
 *   (it ends the waiting request without telling anyone); a connection
 *   whose EOF it never saw can still be taken back with
 *   soup_server_message_steal_connection() and closed.
 * - It records when a write last made progress and whether one is
 *   waiting for the peer, for the server's write-stall timeout.
 * - On a plain connection one source (the watch, attached to the
 *   thread-default main context at creation: use the stream from that
 *   context, as libsoup does) polls the socket for the connection's
 *   whole life; the sources the stream gives out have no descriptor of
 *   their own, so that GLib's blocking of libsoup's sources while they
 *   dispatch costs no wake-ups.
 *
 * "closed" is emitted once, when the stream is closed (by libsoup or by
 * the server). */

#define OD_TYPE_CONN_STREAM (od_conn_stream_get_type ())
G_DECLARE_FINAL_TYPE (OdConnStream, od_conn_stream, OD, CONN_STREAM, GIOStream)

OdConnStream *od_conn_stream_new              (GIOStream    *base);
GIOStream    *od_conn_stream_get_base         (OdConnStream *self);
void          od_conn_stream_set_idle         (OdConnStream *self,
                                               gboolean      idle);
gboolean      od_conn_stream_get_peer_gone    (OdConnStream *self);
/* The next response header block that announces a body (Content-Length
 * above 0) is followed by that body at once: on a plain connection it is
 * held and sent with the body's first write, in one call and one
 * segment.  Never for a HEAD request. */
void          od_conn_stream_set_body_follows (OdConnStream *self);
/* Monotonic time since which a write has been waiting for the peer to
 * read, or 0 when no write waits. */
gint64        od_conn_stream_get_write_blocked_since (OdConnStream *self);

G_END_DECLS

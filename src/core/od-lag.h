/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* What the lag indicator says.  Derived from facts (positions, times,
 * connection attempts), never from a flag that could drift. */
typedef enum
{
  OD_LAG_STATE_OFFLINE,        /* no server configured, engine stopped, or no network */
  OD_LAG_STATE_CONNECTING,     /* a connection attempt is in progress */
  OD_LAG_STATE_CATCHING_UP,    /* connected, applied < known head: the replay after
                                * connecting, or 2 s or more behind since */
  OD_LAG_STATE_LIVE,           /* connected and caught up since connecting, and now
                                * less than 2 s behind (events_behind may be > 0
                                * while the last events are applied) */
  OD_LAG_STATE_RECONNECTING,   /* waiting `reconnect-in` seconds before the next attempt */
  OD_LAG_STATE_SIGN_IN_NEEDED, /* the server answered 401/403: retrying stopped */
} OdLagState;

GType od_lag_state_get_type (void) G_GNUC_CONST;
#define OD_TYPE_LAG_STATE (od_lag_state_get_type ())

/* One point of the lag plot. */
typedef struct
{
  gint64 time_usec;       /* real time (g_get_real_time) of the sample */
  gint64 events_behind;
  double seconds_behind;
} OdLagSample;

#define OD_LAG_RING_SIZE 600 /* one sample a second: ten minutes */

#define OD_TYPE_LAG (od_lag_get_type ())
G_DECLARE_FINAL_TYPE (OdLag, od_lag, OD, LAG, GObject)

/* Properties (all read-only for bindings, notified only on change, on the
 * main context of the OdSyncEngine that owns the lag):
 *   state            OdLagState
 *   events-behind    gint64   known-head − applied-position, never negative
 *   seconds-behind   double   0 when caught up; else the age of the oldest
 *                             event not yet applied, or of the moment the head
 *                             first moved past the cache, whichever is older;
 *                             once a heartbeat is overdue (no message for
 *                             6 s; they come every ≤ 5 s) or the connection
 *                             is down, at least the time since the last
 *                             contact, which bounds the truth from above
 *   freshness        double   seconds since the last byte from the server
 *                             (-1 when never in contact)
 *   last-contact     gint64   real time (µs) of the last message, 0 = never;
 *                             persisted in sync_state.last_contact_at
 *   applied-position gint64
 *   known-head       gint64
 *   reconnect-in     guint    seconds until the next attempt (RECONNECTING)
 *   reconnect-attempts guint  attempts since the last successful connection
 *   last-event-time  gint64   recorded_at (µs) of the newest applied event
 *   last-error       char*    human-readable reason of the last failure
 *   server-url       char*
 *   tls-errors       GTlsCertificateFlags  why the server's certificate
 *                             was last refused (0 = it was not); the GUI
 *                             explains it in the operator's language
 */
OdLagState         od_lag_get_state              (OdLag     *self);
gint64             od_lag_get_events_behind      (OdLag     *self);
double             od_lag_get_seconds_behind     (OdLag     *self);
double             od_lag_get_freshness          (OdLag     *self);
gint64             od_lag_get_last_contact       (OdLag     *self);
gint64             od_lag_get_applied_position   (OdLag     *self);
gint64             od_lag_get_known_head         (OdLag     *self);
guint              od_lag_get_reconnect_in       (OdLag     *self);
guint              od_lag_get_reconnect_attempts (OdLag     *self);
gint64             od_lag_get_last_event_time    (OdLag     *self);
const char        *od_lag_get_last_error         (OdLag     *self);
const char        *od_lag_get_server_url         (OdLag     *self);
GTlsCertificateFlags od_lag_get_tls_errors       (OdLag     *self);

/* The ring of samples, oldest first, one a second; *n_samples ≤
 * OD_LAG_RING_SIZE.  Returns a new array (g_free it).  The signal
 * "sampled" (no arguments) is emitted after each new sample. */
OdLagSample       *od_lag_get_samples            (OdLag     *self,
                                                  guint     *n_samples);

/* A short operator-facing text such as "Live", "Catching up (1,234 behind)",
 * "Reconnecting in 4 s", "Offline — data as of 10:02:11", "Sign-in needed".
 * Not translated here (src/core has no gettext domain of its own); the GUI
 * builds its own translated labels from the properties. */
char              *od_lag_describe               (OdLag     *self);

/* Used by the sync engine; the GUI never calls these. */
OdLag             *od_lag_new                    (void);
void               od_lag_update                 (OdLag     *self,
                                                  OdLagState state,
                                                  gint64     applied_position,
                                                  gint64     known_head,
                                                  gint64     behind_since_usec,
                                                  gint64     last_contact_usec,
                                                  guint      reconnect_in,
                                                  guint      reconnect_attempts,
                                                  gint64     last_event_time_usec,
                                                  const char *last_error);
void               od_lag_set_server_url         (OdLag     *self,
                                                  const char *url);
void               od_lag_set_tls_errors         (OdLag     *self,
                                                  GTlsCertificateFlags errors);
void               od_lag_tick                   (OdLag     *self);

G_END_DECLS

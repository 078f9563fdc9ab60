/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-lag.h"
#include "od-json.h"

/* Heartbeats come at least every 5 s.  An event the console has not
 * heard of was committed after its last message from the server (the
 * stream sends events as they commit and heads while idle), so the time
 * since that message bounds the true lag from above.  Once a heartbeat
 * is overdue that bound is what the indicator shows: it may over-state
 * the lag of a stalled feed, never under-state it. */
#define HEARTBEAT_OVERDUE_SEC 6.0

/* A live feed is always a moment behind: an event is received, then
 * parsed and committed a few milliseconds later.  Calling that
 * "catching up" would flip the indicator on every event, so once the
 * engine has been caught up, a cache less than this far behind (and
 * still connected) is shown as live.  The counts stay exact. */
#define LIVE_TOLERANCE_SEC 2.0

struct _OdLag
{
  GObject     parent_instance;

  OdLagState  state;          /* what is shown */
  OdLagState  engine_state;   /* what the sync engine reported */
  gboolean    was_live;       /* caught up since the connection was made */
  gint64      applied_position;
  gint64      known_head;
  gint64      behind_since;   /* µs real time, 0 = caught up */
  gint64      last_contact;
  guint       reconnect_in;
  guint       reconnect_attempts;
  gint64      last_event_time;
  char       *last_error;
  char       *server_url;
  GTlsCertificateFlags tls_errors;

  gint64      events_behind;
  double      seconds_behind;
  double      freshness;

  OdLagSample ring[OD_LAG_RING_SIZE];
  guint       ring_start;
  guint       ring_len;
};

G_DEFINE_FINAL_TYPE (OdLag, od_lag, G_TYPE_OBJECT)

enum
{
  PROP_0,
  PROP_STATE,
  PROP_EVENTS_BEHIND,
  PROP_SECONDS_BEHIND,
  PROP_FRESHNESS,
  PROP_LAST_CONTACT,
  PROP_APPLIED_POSITION,
  PROP_KNOWN_HEAD,
  PROP_RECONNECT_IN,
  PROP_RECONNECT_ATTEMPTS,
  PROP_LAST_EVENT_TIME,
  PROP_LAST_ERROR,
  PROP_SERVER_URL,
  PROP_TLS_ERRORS,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum
{
  SIGNAL_SAMPLED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

GType
od_lag_state_get_type (void)
{
  static gsize type_id = 0;

  if (g_once_init_enter (&type_id))
    {
      static const GEnumValue values[] = {
        { OD_LAG_STATE_OFFLINE, "OD_LAG_STATE_OFFLINE", "offline" },
        { OD_LAG_STATE_CONNECTING, "OD_LAG_STATE_CONNECTING", "connecting" },
        { OD_LAG_STATE_CATCHING_UP, "OD_LAG_STATE_CATCHING_UP", "catching-up" },
        { OD_LAG_STATE_LIVE, "OD_LAG_STATE_LIVE", "live" },
        { OD_LAG_STATE_RECONNECTING, "OD_LAG_STATE_RECONNECTING", "reconnecting" },
        { OD_LAG_STATE_SIGN_IN_NEEDED, "OD_LAG_STATE_SIGN_IN_NEEDED", "sign-in-needed" },
        { 0, NULL, NULL },
      };
      GType type = g_enum_register_static (g_intern_static_string ("OdLagState"), values);

      g_once_init_leave (&type_id, type);
    }
  return type_id;
}

static void
od_lag_get_property (GObject    *object,
                     guint       prop_id,
                     GValue     *value,
                     GParamSpec *pspec)
{
  OdLag *self = OD_LAG (object);

  switch (prop_id)
    {
    case PROP_STATE:
      g_value_set_enum (value, self->state);
      break;
    case PROP_EVENTS_BEHIND:
      g_value_set_int64 (value, self->events_behind);
      break;
    case PROP_SECONDS_BEHIND:
      g_value_set_double (value, self->seconds_behind);
      break;
    case PROP_FRESHNESS:
      g_value_set_double (value, self->freshness);
      break;
    case PROP_LAST_CONTACT:
      g_value_set_int64 (value, self->last_contact);
      break;
    case PROP_APPLIED_POSITION:
      g_value_set_int64 (value, self->applied_position);
      break;
    case PROP_KNOWN_HEAD:
      g_value_set_int64 (value, self->known_head);
      break;
    case PROP_RECONNECT_IN:
      g_value_set_uint (value, self->reconnect_in);
      break;
    case PROP_RECONNECT_ATTEMPTS:
      g_value_set_uint (value, self->reconnect_attempts);
      break;
    case PROP_LAST_EVENT_TIME:
      g_value_set_int64 (value, self->last_event_time);
      break;
    case PROP_LAST_ERROR:
      g_value_set_string (value, self->last_error);
      break;
    case PROP_SERVER_URL:
      g_value_set_string (value, self->server_url);
      break;
    case PROP_TLS_ERRORS:
      g_value_set_flags (value, self->tls_errors);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
od_lag_finalize (GObject *object)
{
  OdLag *self = OD_LAG (object);

  g_free (self->last_error);
  g_free (self->server_url);
  G_OBJECT_CLASS (od_lag_parent_class)->finalize (object);
}

static void
od_lag_class_init (OdLagClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags flags = G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS;

  object_class->get_property = od_lag_get_property;
  object_class->finalize = od_lag_finalize;

  properties[PROP_STATE] = g_param_spec_enum ("state", NULL, NULL, OD_TYPE_LAG_STATE,
                                              OD_LAG_STATE_OFFLINE, flags);
  properties[PROP_EVENTS_BEHIND] = g_param_spec_int64 ("events-behind", NULL, NULL, 0,
                                                       G_MAXINT64, 0, flags);
  properties[PROP_SECONDS_BEHIND] = g_param_spec_double ("seconds-behind", NULL, NULL, 0,
                                                         G_MAXDOUBLE, 0, flags);
  properties[PROP_FRESHNESS] = g_param_spec_double ("freshness", NULL, NULL, -1, G_MAXDOUBLE,
                                                    -1, flags);
  properties[PROP_LAST_CONTACT] = g_param_spec_int64 ("last-contact", NULL, NULL, 0, G_MAXINT64,
                                                      0, flags);
  properties[PROP_APPLIED_POSITION] = g_param_spec_int64 ("applied-position", NULL, NULL, 0,
                                                          G_MAXINT64, 0, flags);
  properties[PROP_KNOWN_HEAD] = g_param_spec_int64 ("known-head", NULL, NULL, 0, G_MAXINT64, 0,
                                                    flags);
  properties[PROP_RECONNECT_IN] = g_param_spec_uint ("reconnect-in", NULL, NULL, 0, G_MAXUINT, 0,
                                                     flags);
  properties[PROP_RECONNECT_ATTEMPTS] = g_param_spec_uint ("reconnect-attempts", NULL, NULL, 0,
                                                           G_MAXUINT, 0, flags);
  properties[PROP_LAST_EVENT_TIME] = g_param_spec_int64 ("last-event-time", NULL, NULL, 0,
                                                         G_MAXINT64, 0, flags);
  properties[PROP_LAST_ERROR] = g_param_spec_string ("last-error", NULL, NULL, NULL, flags);
  properties[PROP_SERVER_URL] = g_param_spec_string ("server-url", NULL, NULL, NULL, flags);
  properties[PROP_TLS_ERRORS] = g_param_spec_flags ("tls-errors", NULL, NULL,
                                                    G_TYPE_TLS_CERTIFICATE_FLAGS, 0, flags);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  signals[SIGNAL_SAMPLED] = g_signal_new ("sampled", G_TYPE_FROM_CLASS (klass),
                                          G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
od_lag_init (OdLag *self)
{
  self->freshness = -1;
}

OdLag *
od_lag_new (void)
{
  return g_object_new (OD_TYPE_LAG, NULL);
}

#define SET(field, value, prop)                                \
  G_STMT_START {                                               \
    if (self->field != (value))                                \
      {                                                        \
        self->field = (value);                                 \
        g_object_notify_by_pspec (G_OBJECT (self), properties[prop]); \
      }                                                        \
  } G_STMT_END

/* The state to show for the engine's state and the current lag.  The
 * replay after a connection is "catching up" until the engine is first
 * caught up; after that only a lag of LIVE_TOLERANCE_SEC or more (or an
 * overdue heartbeat, which raises seconds_behind) is, and the indicator
 * stays there until the engine is caught up again, so it does not
 * flicker around the threshold. */
static OdLagState
shown_state (OdLag *self)
{
  switch (self->engine_state)
    {
    case OD_LAG_STATE_LIVE:
      self->was_live = TRUE;
      return OD_LAG_STATE_LIVE;
    case OD_LAG_STATE_CATCHING_UP:
      if (self->was_live && self->seconds_behind < LIVE_TOLERANCE_SEC)
        return OD_LAG_STATE_LIVE;
      self->was_live = FALSE;
      return OD_LAG_STATE_CATCHING_UP;
    case OD_LAG_STATE_OFFLINE:
    case OD_LAG_STATE_CONNECTING:
    case OD_LAG_STATE_RECONNECTING:
    case OD_LAG_STATE_SIGN_IN_NEEDED:
    default:
      self->was_live = FALSE;
      return self->engine_state;
    }
}

static void
recompute (OdLag *self)
{
  gint64 now = g_get_real_time ();
  gint64 behind = MAX (0, self->known_head - self->applied_position);
  double freshness = self->last_contact > 0 ? (now - self->last_contact) / (double) G_USEC_PER_SEC
                                            : -1;
  double seconds = 0;

  if (freshness < 0 && self->last_contact > 0)
    freshness = 0;
  if (behind > 0 && self->behind_since > 0)
    seconds = MAX (0, (now - self->behind_since) / (double) G_USEC_PER_SEC);
  /* Without a recent message nobody can say the data is current: while
   * the connection is down or silent past the heartbeat, the lag is at
   * least the time since the last contact. */
  if (self->engine_state != OD_LAG_STATE_LIVE
      && self->engine_state != OD_LAG_STATE_CATCHING_UP
      && freshness > 0)
    seconds = MAX (seconds, freshness);
  else if (freshness > HEARTBEAT_OVERDUE_SEC)
    seconds = MAX (seconds, freshness);
  /* Round to 0.1 s so that notifications stay rare. */
  seconds = (gint64) (seconds * 10) / 10.0;
  freshness = freshness < 0 ? -1 : (gint64) freshness;

  SET (events_behind, behind, PROP_EVENTS_BEHIND);
  SET (seconds_behind, seconds, PROP_SECONDS_BEHIND);
  SET (freshness, freshness, PROP_FRESHNESS);
  SET (state, shown_state (self), PROP_STATE);
}

void
od_lag_update (OdLag      *self,
               OdLagState  state,
               gint64      applied_position,
               gint64      known_head,
               gint64      behind_since_usec,
               gint64      last_contact_usec,
               guint       reconnect_in,
               guint       reconnect_attempts,
               gint64      last_event_time_usec,
               const char *last_error)
{
  g_object_freeze_notify (G_OBJECT (self));
  self->engine_state = state;
  SET (applied_position, applied_position, PROP_APPLIED_POSITION);
  SET (known_head, MAX (known_head, applied_position), PROP_KNOWN_HEAD);
  self->behind_since = behind_since_usec;
  SET (last_contact, last_contact_usec, PROP_LAST_CONTACT);
  SET (reconnect_in, reconnect_in, PROP_RECONNECT_IN);
  SET (reconnect_attempts, reconnect_attempts, PROP_RECONNECT_ATTEMPTS);
  SET (last_event_time, last_event_time_usec, PROP_LAST_EVENT_TIME);
  if (g_strcmp0 (self->last_error, last_error) != 0)
    {
      g_free (self->last_error);
      self->last_error = g_strdup (last_error);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LAST_ERROR]);
    }
  recompute (self);
  g_object_thaw_notify (G_OBJECT (self));
}

void
od_lag_set_server_url (OdLag      *self,
                       const char *url)
{
  if (g_strcmp0 (self->server_url, url) == 0)
    return;
  g_free (self->server_url);
  self->server_url = g_strdup (url);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SERVER_URL]);
}

void
od_lag_set_tls_errors (OdLag               *self,
                       GTlsCertificateFlags errors)
{
  if (self->tls_errors == errors)
    return;
  self->tls_errors = errors;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TLS_ERRORS]);
}

GTlsCertificateFlags
od_lag_get_tls_errors (OdLag *self)
{
  return self->tls_errors;
}

void
od_lag_tick (OdLag *self)
{
  OdLagSample *sample;

  g_object_freeze_notify (G_OBJECT (self));
  recompute (self);
  g_object_thaw_notify (G_OBJECT (self));

  if (self->ring_len < OD_LAG_RING_SIZE)
    sample = &self->ring[(self->ring_start + self->ring_len++) % OD_LAG_RING_SIZE];
  else
    {
      sample = &self->ring[self->ring_start];
      self->ring_start = (self->ring_start + 1) % OD_LAG_RING_SIZE;
    }
  sample->time_usec = g_get_real_time ();
  sample->events_behind = self->events_behind;
  sample->seconds_behind = self->seconds_behind;
  g_signal_emit (self, signals[SIGNAL_SAMPLED], 0);
}

OdLagSample *
od_lag_get_samples (OdLag *self,
                    guint *n_samples)
{
  OdLagSample *out = g_new (OdLagSample, MAX (self->ring_len, 1));

  for (guint i = 0; i < self->ring_len; i++)
    out[i] = self->ring[(self->ring_start + i) % OD_LAG_RING_SIZE];
  *n_samples = self->ring_len;
  return out;
}

OdLagState
od_lag_get_state (OdLag *self)
{
  return self->state;
}

gint64
od_lag_get_events_behind (OdLag *self)
{
  return self->events_behind;
}

double
od_lag_get_seconds_behind (OdLag *self)
{
  return self->seconds_behind;
}

double
od_lag_get_freshness (OdLag *self)
{
  return self->freshness;
}

gint64
od_lag_get_last_contact (OdLag *self)
{
  return self->last_contact;
}

gint64
od_lag_get_applied_position (OdLag *self)
{
  return self->applied_position;
}

gint64
od_lag_get_known_head (OdLag *self)
{
  return self->known_head;
}

guint
od_lag_get_reconnect_in (OdLag *self)
{
  return self->reconnect_in;
}

guint
od_lag_get_reconnect_attempts (OdLag *self)
{
  return self->reconnect_attempts;
}

gint64
od_lag_get_last_event_time (OdLag *self)
{
  return self->last_event_time;
}

const char *
od_lag_get_last_error (OdLag *self)
{
  return self->last_error;
}

const char *
od_lag_get_server_url (OdLag *self)
{
  return self->server_url;
}

char *
od_lag_describe (OdLag *self)
{
  g_autofree char *as_of = NULL;

  if (self->last_contact > 0)
    {
      g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local (self->last_contact
                                                                 / G_USEC_PER_SEC);

      as_of = dt ? g_date_time_format (dt, "%Y-%m-%d %H:%M:%S") : NULL;
    }
  switch (self->state)
    {
    case OD_LAG_STATE_LIVE:
      return g_strdup ("Live");
    case OD_LAG_STATE_CATCHING_UP:
      return g_strdup_printf ("Catching up (%" G_GINT64_FORMAT " behind, %.1f s)",
                              self->events_behind, self->seconds_behind);
    case OD_LAG_STATE_CONNECTING:
      return g_strdup ("Connecting");
    case OD_LAG_STATE_RECONNECTING:
      return g_strdup_printf ("Reconnecting in %u s%s%s", self->reconnect_in,
                              as_of ? " — data as of " : "", as_of ? as_of : "");
    case OD_LAG_STATE_SIGN_IN_NEEDED:
      return g_strdup ("Sign-in needed");
    case OD_LAG_STATE_OFFLINE:
    default:
      return g_strdup_printf ("Offline%s%s", as_of ? " — data as of " : "",
                              as_of ? as_of : "");
    }
}

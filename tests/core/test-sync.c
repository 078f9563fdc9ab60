/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The sync engine, outbox and lag against a real orderdesk-server. */
#include "od-core.h"
#include "od-test-events.h"
#include "od-test-network.h"
#include "od-test-ctl.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>

static gboolean
timeout_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterates the main context until *flag or the timeout. */
static gboolean
run_until (gboolean *flag,
           guint     seconds)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add_seconds (seconds, timeout_cb, &timed_out);

  while (!*flag && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  return *flag;
}

static void
sleep_loop (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, timeout_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

typedef struct
{
  OdCache *cache;
  gint64   target;
  gboolean reached;
} Reach;

static void
on_applied (OdCache *cache,
            gint64   position,
            Reach   *r)
{
  if (position >= r->target)
    r->reached = TRUE;
}

static gboolean
wait_applied (OdCache *cache,
              gint64   target,
              guint    seconds)
{
  Reach r = { cache, target, od_cache_get_applied_position (cache) >= target };
  gulong id = g_signal_connect (cache, "applied", G_CALLBACK (on_applied), &r);
  gboolean ok = run_until (&r.reached, seconds);

  g_signal_handler_disconnect (cache, id);
  return ok;
}

static void
assert_equals_server (OdCache      *cache,
                      OdTestServer *server)
{
  g_autoptr(GPtrArray) events = od_test_fetch_events (server);
  g_autoptr(GHashTable) fold = od_test_fold (events);
  g_autofree char *why = NULL;

  g_assert_cmpint (od_cache_get_applied_position (cache), ==,
                   ((OdEvent *) events->pdata[events->len - 1])->position);
  if (!od_test_cache_equals_fold (cache, fold, &why))
    g_error ("cache differs from the fold of GET /v1/events: %s", why);
  od_test_assert_cache_sane (cache);
}

static OdCache *
new_cache (const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autoptr(GError) error = NULL;
  OdCache *cache = od_cache_open (path, &error);

  g_assert_no_error (error);
  return cache;
}

/* ------------------------------------------------------------------ */

static void
test_sync_equals_fold (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (1500, NULL);
  g_autofree char *dir = od_test_tmpdir ("fold");
  g_autoptr(OdCache) cache = new_cache (dir);
  g_autoptr(OdSyncEngine) sync = NULL;
  gint64 head = od_test_head (server);
  gint64 last;

  g_assert_cmpint (head, >, 5000);
  sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  od_sync_engine_start (sync);
  g_assert_true (wait_applied (cache, head, 30));
  /* Live: more commands while following. */
  last = od_test_load (server, 200, 4);
  g_assert_true (wait_applied (cache, last, 30));
  assert_equals_server (cache, server);
  g_assert_cmpint (od_lag_get_events_behind (od_sync_engine_get_lag (sync)), ==, 0);
  od_sync_engine_stop (sync);
  od_test_rmdir (dir);
}

static gpointer
background_load (gpointer data)
{
  od_test_load (data, 400, 2);
  return NULL;
}

static void
test_server_restart (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("restart");
  g_autoptr(OdCache) cache = new_cache (dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  OdSyncStats stats;
  gint64 last;

  od_sync_engine_start (sync);
  last = od_test_load (server, 300, 4);
  g_assert_true (wait_applied (cache, last, 30));

  /* Kill -9 mid-stream (a load is running), start it again on the same
   * port and store: the client resumes from its checkpoint. */
  for (guint round = 0; round < 3; round++)
    {
      GThread *t = g_thread_new ("load", background_load, server);

      sleep_loop (150 + g_random_int_range (0, 300));
      od_test_server_kill (server);
      g_thread_join (t);
      sleep_loop (300);
      od_test_server_restart (server);
      last = od_test_load (server, 100, 4);
      g_assert_true (wait_applied (cache, last, 40));
    }
  assert_equals_server (cache, server);
  od_sync_engine_get_stats (sync, &stats);
  g_assert_cmpuint (stats.connections, >=, 4);
  od_sync_engine_stop (sync);
  od_test_rmdir (dir);
}

static void
test_auth_stops (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("auth");
  g_autoptr(OdCache) cache = new_cache (dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), "wrong-token");
  OdLag *lag = od_sync_engine_get_lag (sync);
  OdSyncStats stats;
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  od_sync_engine_start (sync);
  while (od_lag_get_state (lag) != OD_LAG_STATE_SIGN_IN_NEEDED
         && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_SIGN_IN_NEEDED);
  sleep_loop (2500);
  /* No retry while the token is wrong. */
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_SIGN_IN_NEEDED);
  od_sync_engine_get_stats (sync, &stats);
  g_assert_cmpuint (stats.connections, ==, 0);
  /* A new token resumes. */
  od_sync_engine_set_server (sync, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  {
    gint64 last = od_test_load (server, 5, 1);

    g_assert_true (wait_applied (cache, last, 20));
  }
  od_sync_engine_stop (sync);
  od_test_rmdir (dir);
}

/* The lag never says less than what is known to be true: positions the
 * server acknowledged are at most the real head, and an acknowledged
 * event is at least as old as its acknowledgement. */
typedef struct
{
  OdTestServer *server;
  gint64        max_position;
  gint64        ack_time[4096];  /* real time of the ack for position % 4096 */
  gint64        positions[4096];
  guint         n;
  gboolean      stop;
  GMutex        lock;
} Acks;

static gpointer
ack_thread (gpointer data)
{
  Acks *a = data;
  g_autoptr(SoupSession) session = soup_session_new_with_options ("timeout", 3, NULL);

  while (!g_atomic_int_get (&a->stop))
    {
      g_autofree char *id = od_uuid_v7_new ();
      g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Lag\",\"customer_email\":\"lag@example.com\",\"currency\":\"EUR\"}}", id);
      g_autofree char *answer = NULL;
      guint status = od_test_post_command (a->server, session, id, body, &answer);

      if (status == 200)
        {
          g_autoptr(JsonNode) root = od_json_parse_object (answer, -1, NULL);
          gint64 pos = json_object_get_int_member (json_node_get_object (root), "position");

          g_mutex_lock (&a->lock);
          a->max_position = MAX (a->max_position, pos);
          if (a->n < G_N_ELEMENTS (a->positions))
            {
              a->positions[a->n] = pos;
              a->ack_time[a->n] = g_get_real_time ();
              a->n++;
            }
          g_mutex_unlock (&a->lock);
        }
      else
        g_usleep (20000);
    }
  return NULL;
}

/* What the truth is at least: the server acknowledged these positions
 * at these times.  An acknowledged event the console was told of (it
 * was acknowledged well before the console's last message from the
 * server, and the stream sends events as they commit) must count in
 * events_behind; and once a heartbeat is overdue the indicator must show
 * at least the age of the oldest acknowledged event it has not applied. */
static void
check_lag_truth (OdCache *cache,
                 OdLag   *lag,
                 Acks    *a)
{
  gint64 applied = od_lag_get_applied_position (lag);
  gint64 now = g_get_real_time ();
  gint64 contact = od_lag_get_last_contact (lag);
  gint64 oldest_unapplied_ack = 0;
  gint64 known_max = 0;

  g_mutex_lock (&a->lock);
  for (guint i = 0; i < a->n; i++)
    {
      if (a->positions[i] > applied
          && (oldest_unapplied_ack == 0 || a->ack_time[i] < oldest_unapplied_ack))
        oldest_unapplied_ack = a->ack_time[i];
      if (a->ack_time[i] < contact - G_USEC_PER_SEC / 2)
        known_max = MAX (known_max, a->positions[i]);
    }
  g_mutex_unlock (&a->lock);

  g_assert_cmpint (od_lag_get_events_behind (lag) + applied, >=, known_max);
  if (oldest_unapplied_ack > 0 && od_lag_get_freshness (lag) > 6.5)
    g_assert_cmpfloat (od_lag_get_seconds_behind (lag) + 0.2, >=,
                       (now - oldest_unapplied_ack) / 1e6);
}

/* The state rule on its own: a cache a moment behind a live feed is
 * live, one really behind is catching up, and the counts stay exact. */
static void
test_lag_live_tolerance (void)
{
  g_autoptr(OdLag) lag = od_lag_new ();
  gint64 now = g_get_real_time ();

  /* The replay after connecting is catching up, however young. */
  od_lag_update (lag, OD_LAG_STATE_CATCHING_UP, 0, 1000000, now - G_USEC_PER_SEC / 10, now,
                 0, 0, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_CATCHING_UP);
  g_assert_cmpint (od_lag_get_events_behind (lag), ==, 1000000);

  od_lag_update (lag, OD_LAG_STATE_LIVE, 1000000, 1000000, 0, now, 0, 0, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_LIVE);

  /* One event received and not yet applied: still live, counted. */
  now = g_get_real_time ();
  od_lag_update (lag, OD_LAG_STATE_CATCHING_UP, 1000000, 1000001,
                 now - G_USEC_PER_SEC / 5, now, 0, 0, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_LIVE);
  g_assert_cmpint (od_lag_get_events_behind (lag), ==, 1);
  g_assert_cmpfloat (od_lag_get_seconds_behind (lag), >=, 0.2);

  /* The same event unapplied past the tolerance: the tick says so. */
  now = g_get_real_time ();
  od_lag_update (lag, OD_LAG_STATE_CATCHING_UP, 1000000, 1000001,
                 now - 19 * G_USEC_PER_SEC / 10, now, 0, 0, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_LIVE);
  g_usleep (G_USEC_PER_SEC / 5);
  od_lag_tick (lag);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_CATCHING_UP);
  g_assert_cmpfloat (od_lag_get_seconds_behind (lag), >=, 2.0);
  g_assert_cmpint (od_lag_get_events_behind (lag), ==, 1);

  /* Once really behind, a younger event does not make it live again:
   * only being caught up does. */
  now = g_get_real_time ();
  od_lag_update (lag, OD_LAG_STATE_CATCHING_UP, 1000001, 1000002,
                 now - G_USEC_PER_SEC / 10, now, 0, 0, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_CATCHING_UP);
  od_lag_update (lag, OD_LAG_STATE_LIVE, 1000002, 1000002, 0, now, 0, 0, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_LIVE);

  /* A silent feed (heartbeat overdue) is not live, even one event behind. */
  now = g_get_real_time ();
  od_lag_update (lag, OD_LAG_STATE_CATCHING_UP, 1000002, 1000003,
                 now - G_USEC_PER_SEC / 10, now - 7 * G_USEC_PER_SEC, 0, 0, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_CATCHING_UP);
  g_assert_cmpfloat (od_lag_get_seconds_behind (lag), >=, 7.0);

  /* A reconnection starts over: its replay is catching up again. */
  od_lag_update (lag, OD_LAG_STATE_LIVE, 1000003, 1000003, 0, now, 0, 0, 0, NULL);
  od_lag_update (lag, OD_LAG_STATE_CONNECTING, 1000003, 1000003, 0, now, 0, 1, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_CONNECTING);
  now = g_get_real_time ();
  od_lag_update (lag, OD_LAG_STATE_CATCHING_UP, 1000003, 1000010, now, now, 0, 0, 0, NULL);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_CATCHING_UP);
}

static void
on_state_seen (OdLag      *lag,
               GParamSpec *pspec,
               guint      *not_live)
{
  if (od_lag_get_state (lag) != OD_LAG_STATE_LIVE)
    (*not_live)++;
}

/* A server trickling events: the indicator stays live throughout. */
static void
test_lag_trickle_stays_live (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("trickle");
  g_autoptr(OdCache) cache = new_cache (dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  OdLag *lag = od_sync_engine_get_lag (sync);
  guint not_live = 0;
  gint64 last = 0;
  gulong id;

  od_sync_engine_start (sync);
  for (guint i = 0; i < 100 && od_lag_get_state (lag) != OD_LAG_STATE_LIVE; i++)
    sleep_loop (100);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_LIVE);

  id = g_signal_connect (lag, "notify::state", G_CALLBACK (on_state_seen), &not_live);
  for (guint i = 0; i < 15; i++)
    {
      g_autofree char *oid = od_uuid_v7_new ();
      g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Trickle\",\"customer_email\":\"t@example.com\",\"currency\":\"EUR\"}}", oid);
      g_autofree char *answer = NULL;
      g_autoptr(JsonNode) root = NULL;

      g_assert_cmpuint (od_test_post_command (server, NULL, oid, body, &answer), ==, 200);
      root = od_json_parse_object (answer, -1, NULL);
      last = json_object_get_int_member (json_node_get_object (root), "position");
      sleep_loop (200);
    }
  g_assert_true (wait_applied (cache, last, 10));
  sleep_loop (300);
  g_signal_handler_disconnect (lag, id);
  g_assert_cmpuint (not_live, ==, 0);
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_LIVE);
  g_assert_cmpint (od_lag_get_events_behind (lag), ==, 0);
  od_sync_engine_stop (sync);
  od_test_rmdir (dir);
}

static void
test_lag_paused_and_stopped (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("lag");
  g_autoptr(OdCache) cache = new_cache (dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  OdLag *lag = od_sync_engine_get_lag (sync);
  Acks *a = g_new0 (Acks, 1);
  GThread *t;
  gint64 end;
  guint checks = 0;

  g_mutex_init (&a->lock);
  a->server = server;
  od_sync_engine_start (sync);
  t = g_thread_new ("acks", ack_thread, a);
  sleep_loop (1500);
  g_assert_true (wait_applied (cache, a->max_position, 10));

  /* Paused: the connection stays open but nothing arrives; past the
   * heartbeat the indicator must own up to the silence. */
  od_test_server_signal (server, SIGSTOP);
  end = g_get_monotonic_time () + 8 * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < end)
    {
      sleep_loop (200);
      od_lag_tick (lag);
      check_lag_truth (cache, lag, a);
      checks++;
    }
  g_assert_cmpfloat (od_lag_get_freshness (lag), >=, 7);
  g_assert_cmpfloat (od_lag_get_seconds_behind (lag), >=, 6.5);
  od_test_server_signal (server, SIGCONT);
  sleep_loop (1000);
  g_assert_true (wait_applied (cache, a->max_position, 20));

  /* Stopped: the indicator must not claim to be current. */
  od_test_server_kill (server);
  end = g_get_monotonic_time () + 3 * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < end)
    {
      sleep_loop (200);
      od_lag_tick (lag);
      check_lag_truth (cache, lag, a);
    }
  g_assert_cmpint (od_lag_get_state (lag), !=, OD_LAG_STATE_LIVE);
  g_assert_cmpfloat (od_lag_get_seconds_behind (lag), >=, 2);

  g_atomic_int_set (&a->stop, TRUE);
  g_thread_join (t);
  od_test_server_restart (server);
  g_assert_true (wait_applied (cache, od_test_head (server), 40));
  g_assert_cmpuint (checks, >=, 10);
  od_sync_engine_stop (sync);
  g_mutex_clear (&a->lock);
  g_free (a);
  od_test_rmdir (dir);
}

/* Waits (iterating the main context) until the lag is in `state`. */
static gboolean
wait_lag_state (OdLag      *lag,
                OdLagState  state,
                guint       seconds)
{
  gint64 end = g_get_monotonic_time () + seconds * G_USEC_PER_SEC;

  while (od_lag_get_state (lag) != state && g_get_monotonic_time () < end)
    sleep_loop (50);
  return od_lag_get_state (lag) == state;
}

/* No network: the indicator says Offline, not "Reconnecting"; when the
 * network returns the engine connects at once instead of waiting out its
 * backoff. */
static void
test_network_offline (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("network");
  g_autoptr(OdCache) cache = new_cache (dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  g_autoptr(OdTestNetwork) network = od_test_network_new (TRUE);
  OdLag *lag = od_sync_engine_get_lag (sync);
  OdSyncStats stats;
  guint connections;
  guint backoff_left;
  gint64 end;
  gint64 flipped;
  gint64 last;

  od_sync_engine_set_network_monitor (sync, G_NETWORK_MONITOR (network));
  od_sync_engine_start (sync);
  last = od_test_load (server, 20, 2);
  g_assert_true (wait_applied (cache, last, 30));
  g_assert_true (wait_lag_state (lag, OD_LAG_STATE_LIVE, 10));

  /* The server goes away: reconnecting, with a backoff that grows. */
  od_test_server_kill (server);
  end = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (!(od_lag_get_state (lag) == OD_LAG_STATE_RECONNECTING && od_lag_get_reconnect_in (lag) >= 6)
         && g_get_monotonic_time () < end)
    {
      sleep_loop (100);
      od_lag_tick (lag);
    }
  g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_RECONNECTING);
  backoff_left = od_lag_get_reconnect_in (lag);
  g_test_message ("next attempt in %u s", backoff_left);

  /* Then the network: offline, and the cache's time of last contact. */
  od_test_network_set_available (network, FALSE);
  g_assert_true (wait_lag_state (lag, OD_LAG_STATE_OFFLINE, 3));
  g_assert_cmpint (od_lag_get_last_contact (lag), >, 0);

  /* Server and network back: connected well before the backoff's end. */
  od_test_server_restart (server);
  od_sync_engine_get_stats (sync, &stats);
  connections = stats.connections;
  flipped = g_get_monotonic_time ();
  od_test_network_set_available (network, TRUE);
  g_assert_true (wait_lag_state (lag, OD_LAG_STATE_LIVE, 10));
  g_test_message ("live %.1f s after the network came back",
                  (g_get_monotonic_time () - flipped) / (double) G_USEC_PER_SEC);
  g_assert_cmpint (g_get_monotonic_time () - flipped, <, 3 * G_USEC_PER_SEC);
  od_sync_engine_get_stats (sync, &stats);
  g_assert_cmpuint (stats.connections, >, connections);

  last = od_test_load (server, 5, 1);
  g_assert_true (wait_applied (cache, last, 30));
  od_sync_engine_stop (sync);
  od_test_rmdir (dir);
}

/* ------------------------------------------------------------------ */
/* Outbox                                                              */

typedef struct
{
  gint64   id;
  gboolean done;
  GError  *error;
} Submit;

static void
submitted (GObject      *source,
           GAsyncResult *result,
           gpointer      data)
{
  Submit *s = data;

  s->id = od_outbox_submit_finish (OD_OUTBOX (source), result, &s->error);
  s->done = TRUE;
}

static gint64
submit (OdOutbox   *outbox,
        const char *body)
{
  Submit s = { 0 };

  od_outbox_submit_json_async (outbox, body, NULL, submitted, &s);
  g_assert_true (run_until (&s.done, 10));
  g_assert_no_error (s.error);
  return s.id;
}

static OdCommandState
wait_state (OdOutbox       *outbox,
            gint64          id,
            OdCommandState  want,
            guint           seconds)
{
  gint64 deadline = g_get_monotonic_time () + seconds * G_USEC_PER_SEC;

  for (;;)
    {
      g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, id, NULL);

      g_assert_nonnull (c);
      if (c->state == want || c->state == OD_COMMAND_STATE_REJECTED
          || g_get_monotonic_time () > deadline)
        return c->state;
      sleep_loop (20);
    }
}

static void
discard_done (GObject      *source,
              GAsyncResult *result,
              gpointer      data)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (od_outbox_discard_finish (OD_OUTBOX (source), result, &error));
  g_assert_no_error (error);
  *(gboolean *) data = TRUE;
}

static void
test_outbox_rejected_then_next (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("outbox");
  g_autoptr(OdCache) cache = new_cache (dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  g_autoptr(OdOutbox) outbox = od_outbox_new (cache, od_test_server_url (server), OD_TEST_OPERATOR_TOKEN);
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *bad = g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"A\",\"name\":\"x\",\"quantity\":1,\"unit_price_cents\":1}}", id);
  g_autofree char *good = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Next\",\"customer_email\":\"n@example.com\",\"currency\":\"EUR\"}}", id);
  gint64 bad_id, good_id;

  od_sync_engine_start (sync);
  /* Both queued at once: the first is refused (no such order), the
   * second must still go. */
  bad_id = submit (outbox, bad);
  good_id = submit (outbox, good);
  g_assert_cmpint (wait_state (outbox, bad_id, OD_COMMAND_STATE_REJECTED, 10), ==,
                   OD_COMMAND_STATE_REJECTED);
  g_assert_cmpint (wait_state (outbox, good_id, OD_COMMAND_STATE_VISIBLE, 10), ==,
                   OD_COMMAND_STATE_VISIBLE);
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, bad_id, NULL);
    g_autoptr(OdPendingCommand) g = od_outbox_get (outbox, good_id, NULL);
    g_autoptr(OdOrder) order = od_query_order (cache, id, NULL);

    g_assert_cmpstr (c->code, ==, "not_found");
    g_assert_nonnull (c->detail);
    g_assert_nonnull (strstr (c->detail, id));
    g_assert_cmpuint (c->http_status, ==, 404);
    g_assert_cmpint (g->position, >, 0);
    g_assert_cmpfloat (od_pending_command_latency_ms (g), >, 0);
    g_assert_nonnull (order);
    g_assert_cmpstr (order->customer_name, ==, "Next");
  }

  /* Invalid before sending: never stored. */
  {
    Submit s = { 0 };

    od_outbox_submit_json_async (outbox, "{\"type\":\"CreateOrder\",\"order_id\":\"nope\"}", NULL,
                                 submitted, &s);
    g_assert_true (run_until (&s.done, 5));
    g_assert_error (s.error, OD_COMMAND_ERROR, OD_COMMAND_ERROR_INVALID);
    g_clear_error (&s.error);
  }

  /* Discard: queued while the server is unreachable. */
  od_test_server_kill (server);
  {
    g_autofree char *id2 = od_uuid_v7_new ();
    g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Gone\",\"customer_email\":\"g@example.com\",\"currency\":\"EUR\"}}", id2);
    g_autofree char *id3 = od_uuid_v7_new ();
    g_autofree char *body3 = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Kept\",\"customer_email\":\"k@example.com\",\"currency\":\"EUR\"}}", id3);
    gint64 first = submit (outbox, body);
    gint64 queued = submit (outbox, body3);
    gboolean discarded = FALSE;

    /* The first was tried (and failed): it is "sent"; the second never
     * left: it can be discarded. */
    sleep_loop (300);
    od_outbox_discard_async (outbox, queued, NULL, discard_done, &discarded);
    g_assert_true (run_until (&discarded, 5));
    {
      g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, queued, NULL);

      g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_DISCARDED);
    }
    od_test_server_restart (server);
    od_sync_engine_set_server (sync, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
    od_outbox_set_server (outbox, od_test_server_url (server), OD_TEST_OPERATOR_TOKEN);
    g_assert_cmpint (wait_state (outbox, first, OD_COMMAND_STATE_VISIBLE, 20), ==,
                     OD_COMMAND_STATE_VISIBLE);
    {
      g_autoptr(OdOrder) gone = od_query_order (cache, id3, NULL);

      g_assert_null (gone);
    }
  }
  od_sync_engine_stop (sync);
  od_test_rmdir (dir);
}

static void
test_outbox_crash_after_send (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("crash");
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *cmd_path = g_build_filename (dir, "cmd.json", NULL);
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Once\",\"customer_email\":\"o@example.com\",\"currency\":\"EUR\"}}", id);
  const char *submit_args[] = { "submit", cmd_path, NULL };
  const char *crash_env[] = { "OD_TEST_OUTBOX_CRASH_AFTER_SEND", "1", NULL };
  const char *sync_args[] = { "sync", NULL };
  g_autoptr(GPtrArray) events = NULL;
  guint n_for_order = 0;
  gint64 position = 0;

  if (g_strcmp0 (g_getenv ("OD_TEST_HOOKS"), "1") != 0)
    {
      g_test_skip ("built with -Dtest_hooks=false: the outbox has no crash switch");
      od_test_rmdir (dir);
      return;
    }
  g_assert_true (g_file_set_contents (cmd_path, body, -1, NULL));
  /* Killed after the server answered, before the answer was stored. */
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, crash_env,
                                    submit_args, NULL), ==,
                   -SIGKILL);
  /* Restart: the stored command goes again with the same key. */
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_OPERATOR_TOKEN, NULL, sync_args, NULL), ==, 0);

  events = od_test_fetch_events (server);
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);

      if (g_str_equal (ev->order_id, id))
        {
          n_for_order++;
          position = ev->position;
        }
    }
  g_assert_cmpuint (n_for_order, ==, 1);
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
    g_autoptr(OdOutbox) outbox = od_outbox_new (cache, NULL, NULL);
    g_autoptr(GPtrArray) all = od_outbox_list (outbox, TRUE, 10, NULL);
    OdPendingCommand *c;

    g_assert_no_error (error);
    g_assert_cmpuint (all->len, ==, 1);
    c = g_ptr_array_index (all, 0);
    g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_VISIBLE);
    g_assert_cmpint (c->position, ==, position);
    g_assert_cmpuint (c->attempts, ==, 2);
    assert_equals_server (cache, server);
  }
  od_test_rmdir (dir);
}

/* The server's log is replaced by a shorter one (a store reset): the
 * cache must notice that its checkpoint is not in the log any more and
 * rebuild from the new log, not loop and not keep the old orders. */
static void
test_history_lost (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (0, NULL);
  g_autofree char *dir = od_test_tmpdir ("lost");
  g_autoptr(OdCache) cache = new_cache (dir);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  gint64 last;

  od_sync_engine_start (sync);
  last = od_test_load (server, 60, 2);
  g_assert_true (wait_applied (cache, last, 30));

  od_test_server_kill (server);
  {
    g_autofree char *wal = g_strconcat (od_test_server_sqlite_path (server), "-wal", NULL);
    g_autofree char *shm = g_strconcat (od_test_server_sqlite_path (server), "-shm", NULL);

    g_assert_cmpint (g_unlink (od_test_server_sqlite_path (server)), ==, 0);
    g_unlink (wal);
    g_unlink (shm);
  }
  od_test_server_restart (server);
  last = od_test_load (server, 10, 1);
  g_assert_cmpint (last, <, od_cache_get_applied_position (cache));
  {
    gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
    gboolean done = FALSE;

    while (!done && g_get_monotonic_time () < deadline)
      {
        sleep_loop (100);
        done = od_cache_get_applied_position (cache) == last
               && od_lag_get_state (od_sync_engine_get_lag (sync)) == OD_LAG_STATE_LIVE;
      }
    if (!done)
      g_test_message ("applied %" G_GINT64_FORMAT ", head %" G_GINT64_FORMAT ", state %d, error %s",
                      od_cache_get_applied_position (cache), last,
                      od_lag_get_state (od_sync_engine_get_lag (sync)),
                      od_lag_get_last_error (od_sync_engine_get_lag (sync)));
    g_assert_true (done);
  }
  assert_equals_server (cache, server);
  od_sync_engine_stop (sync);
  od_test_rmdir (dir);
}

static void
test_ctl_export_and_status (void)
{
  g_autoptr(OdTestServer) server = od_test_server_new_seeded (300, NULL);
  g_autofree char *dir = od_test_tmpdir ("export");
  g_autofree char *cache_path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *csv_path = g_build_filename (dir, "out.csv", NULL);
  g_autofree char *csv = NULL;
  g_auto(GStrv) lines = NULL;
  const char *sync_args[] = { "sync", NULL };
  const char *export_args[] = { "export", "--csv", csv_path, "--status", "delivered",
                                "--provenance", NULL };
  const char *bad_args[] = { "frobnicate", NULL };
  gint64 head = od_test_head (server);
  g_autofree char *head_text = g_strdup_printf ("as of position %" G_GINT64_FORMAT ",", head);
  guint delivered = 0;

  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_VIEWER_TOKEN, NULL, sync_args, NULL), ==, 0);
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_VIEWER_TOKEN, NULL, export_args, NULL), ==, 0);
  g_assert_cmpint (od_test_run_ctl (server, cache_path, OD_TEST_VIEWER_TOKEN, NULL, bad_args, NULL), ==, 2);
  g_assert_cmpint (od_test_run_ctl (server, cache_path, "wrong", NULL, sync_args, NULL), ==, 5);
  g_assert_true (g_file_get_contents (csv_path, &csv, NULL, NULL));
  lines = g_strsplit (csv, "\r\n", -1);
  g_assert_true (g_str_has_prefix (lines[0], "# orderdesk export: data as of position"));
  g_assert_nonnull (strstr (lines[0], head_text));
  g_assert_true (g_str_has_prefix (lines[1], "order_id,customer_name,"));
  for (guint i = 2; lines[i] && lines[i][0]; i++)
    {
      g_assert_nonnull (strstr (lines[i], ",delivered,"));
      delivered++;
    }
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) cache = od_cache_open (cache_path, &error);
    gint64 counts[OD_STATUS_N];

    g_assert_no_error (error);
    g_assert_true (od_cache_get_status_counts (cache, counts, NULL));
    g_assert_cmpint (delivered, ==, counts[OD_STATUS_DELIVERED]);
    g_assert_cmpuint (delivered, >, 0);
  }
  od_test_rmdir (dir);
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *xdg = od_test_tmpdir ("xdg");

  g_setenv ("XDG_DATA_HOME", xdg, TRUE);
  g_test_init (&argc, &argv, NULL);
  if (g_getenv ("OD_SERVER_BIN") == NULL)
    {
      g_test_skip ("OD_SERVER_BIN is not set");
      od_test_rmdir (xdg);
      return 77;
    }
  g_test_add_func ("/sync/equals-fold", test_sync_equals_fold);
  g_test_add_func ("/sync/server-restart", test_server_restart);
  g_test_add_func ("/sync/auth-stops", test_auth_stops);
  g_test_add_func ("/lag/live-tolerance", test_lag_live_tolerance);
  g_test_add_func ("/lag/trickle-stays-live", test_lag_trickle_stays_live);
  g_test_add_func ("/lag/paused-and-stopped", test_lag_paused_and_stopped);
  g_test_add_func ("/lag/network-offline", test_network_offline);
  g_test_add_func ("/outbox/rejected-then-next", test_outbox_rejected_then_next);
  g_test_add_func ("/outbox/crash-after-send", test_outbox_crash_after_send);
  g_test_add_func ("/sync/history-lost", test_history_lost);
  g_test_add_func ("/ctl/export-and-status", test_ctl_export_and_status);
  {
    int rc = g_test_run ();

    od_test_rmdir (xdg);
    return rc;
  }
}

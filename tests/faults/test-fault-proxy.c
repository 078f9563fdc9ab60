/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The console core's sync engine behind a fault-injecting proxy, with a
 * server that keeps taking commands: at least 200 cuts at random byte
 * offsets (FIN and RST, either way), refused connections, delays with
 * fragmentation, a short stall and one longer than the engine's silence
 * limit.  In the end the cache must hold exactly the server's log, each
 * event applied once, and views equal to the fold of the log.  The time
 * from each cut until the cache has everything acknowledged at the cut
 * is reported as "# resume p50=… p99=…".
 *
 * A second case sends the outbox's commands through the proxy, with a
 * cut in the request or in the response of each: every command must be
 * accepted exactly once. */
#include "od-fault-proxy.h"
#include "od-cache-private.h" /* od_cache_get_db () */
#include "od-fault-server.h"

#include <string.h>

#define N_CUTS        200
#define CUT_TIMEOUT_S 15

/* A warning of the core is a finding: it is recorded and fails the test
 * at the end, after the end state was checked. */
static GPtrArray *warnings;

/* Whether run_until() plays the operator's "Retry now". */
static gboolean retry_now = TRUE;

typedef struct
{
  OdFaultServer *server;
  GMutex         lock;
  gint64         max_acked;
  guint          commands;
  gint           stop;
  char          *failure;
  GThread       *thread;
} Traffic;

typedef struct
{
  Traffic       *traffic;
  OdSyncEngine  *sync;
} Probe;

static gboolean
post (Traffic     *t,
      SoupSession *session,
      const char  *key,
      const char  *body)
{
  g_autofree char *answer = NULL;
  gint64 position, version;
  guint status = od_fault_post_command (session, t->server->url, key, body, &answer, NULL);

  if (status != 200 || !od_fault_parse_answer (answer, &position, &version))
    {
      g_mutex_lock (&t->lock);
      if (t->failure == NULL)
        t->failure = g_strdup_printf ("%s answered %u: %s", body, status, answer);
      g_mutex_unlock (&t->lock);
      return FALSE;
    }
  g_mutex_lock (&t->lock);
  t->max_acked = MAX (t->max_acked, position);
  t->commands++;
  g_mutex_unlock (&t->lock);
  return TRUE;
}

/* The server's traffic, sent straight to it (not through the proxy):
 * whole order lives, with quantities that add up and lines removed, so
 * that an event applied twice or skipped changes the fold. */
static gpointer
traffic_main (gpointer data)
{
  Traffic *t = data;
  g_autoptr(SoupSession) session = od_fault_session_new ();

  for (guint n = 0; !g_atomic_int_get (&t->stop); n++)
    {
      g_autofree char *id = od_uuid_v7_new ();
      g_autoptr(GPtrArray) bodies = g_ptr_array_new_with_free_func (g_free);

      g_ptr_array_add (bodies, g_strdup_printf (
        "{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"Proxy %u\","
        "\"customer_email\":\"p%u@example.com\",\"currency\":\"EUR\"}}", id, n, n));
      g_ptr_array_add (bodies, g_strdup_printf (
        "{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"A\",\"name\":\"Apple\","
        "\"quantity\":%u,\"unit_price_cents\":120}}", id, 1 + n % 4));
      g_ptr_array_add (bodies, g_strdup_printf (
        "{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"B\",\"name\":\"Banana\","
        "\"quantity\":2,\"unit_price_cents\":80}}", id));
      g_ptr_array_add (bodies, g_strdup_printf (
        "{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"A\",\"name\":\"Apples\","
        "\"quantity\":3,\"unit_price_cents\":110}}", id));
      if (n % 3 == 0)
        g_ptr_array_add (bodies, g_strdup_printf (
          "{\"type\":\"RemoveItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"B\"}}", id));
      if (n % 5 == 4)
        g_ptr_array_add (bodies, g_strdup_printf (
          "{\"type\":\"CancelOrder\",\"order_id\":\"%s\",\"data\":{\"reason\":\"changed mind\"}}", id));
      else
        {
          g_ptr_array_add (bodies, g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\"}", id));
          g_ptr_array_add (bodies, g_strdup_printf (
            "{\"type\":\"ShipOrder\",\"order_id\":\"%s\",\"data\":{\"carrier\":\"DHL\","
            "\"tracking_number\":\"T%u\"}}", id, n));
          if (n % 2 == 0)
            g_ptr_array_add (bodies, g_strdup_printf ("{\"type\":\"MarkDelivered\",\"order_id\":\"%s\"}", id));
        }
      for (guint k = 0; k < bodies->len; k++)
        {
          g_autofree char *key = g_strdup_printf ("traffic-%s-%u", id, k);

          if (!post (t, session, key, bodies->pdata[k]))
            return NULL;
          /* About 300 commands a second: enough for events to be in
           * flight at every cut, light on the shared cores. */
          g_usleep (2000);
        }
    }
  return NULL;
}

static gint64
traffic_max_acked (Traffic *t)
{
  gint64 v;

  g_mutex_lock (&t->lock);
  v = t->max_acked;
  g_mutex_unlock (&t->lock);
  return v;
}

/* At a cut: what the server had acknowledged (low 40 bits) and how many
 * stream connections the engine had opened (the bits above). */
static gint64
probe_at_cut (gpointer data)
{
  Probe *p = data;
  OdSyncStats stats;

  od_sync_engine_get_stats (p->sync, &stats);
  return ((gint64) stats.connections << 40) | traffic_max_acked (p->traffic);
}

/* Runs the main context until cond() holds or timeout_ms passed; the
 * engine's backoff is skipped whenever it waits (the operator's "Retry
 * now"), or every cut would cost a second. */
typedef gboolean (*Cond) (gpointer data);

static gboolean
run_until (OdSyncEngine *sync,
           Cond          cond,
           gpointer      data,
           guint         timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  while (!cond (data))
    {
      if (g_get_monotonic_time () > deadline)
        return FALSE;
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (300);
      if (sync && retry_now && od_lag_get_state (od_sync_engine_get_lag (sync)) == OD_LAG_STATE_RECONNECTING)
        od_sync_engine_reconnect_now (sync);
    }
  return TRUE;
}

typedef struct
{
  OdCache      *cache;
  OdSyncEngine *sync;
  OdFaultProxy *proxy;
  Traffic      *traffic;
  guint         cuts_before;
  gint64        target;
  guint64       connections;
} Wait;

static gboolean
cut_done (gpointer data)
{
  Wait *w = data;

  return od_fault_proxy_get_cuts (w->proxy, NULL) > w->cuts_before;
}

static gboolean
resumed (gpointer data)
{
  Wait *w = data;
  OdSyncStats stats;

  od_sync_engine_get_stats (w->sync, &stats);
  return stats.connections > w->connections
         && od_cache_get_applied_position (w->cache) >= w->target;
}

static gboolean
applied_reached (gpointer data)
{
  Wait *w = data;

  return od_cache_get_applied_position (w->cache) >= w->target;
}

static gboolean
not_live (gpointer data)
{
  Wait *w = data;

  return od_lag_get_state (od_sync_engine_get_lag (w->sync)) != OD_LAG_STATE_LIVE;
}

static gboolean
four_dropped (gpointer data)
{
  Wait *w = data;

  return od_fault_proxy_get_drops (w->proxy) >= 4;
}

static gboolean
never (gpointer data)
{
  return FALSE;
}

static void
on_write_failed (OdCache *cache,
                 GError  *error,
                 guint   *count)
{
  g_test_message ("write-failed: %s", error->message);
  (*count)++;
}

/* One fault, then the wait until the engine is back: returns the time
 * from the cut until the cache had everything acknowledged at the cut,
 * in ms.  A cut on the way to the server needs a request in flight: it
 * is armed for the next request, and a cut on the way to the client
 * makes the engine send one. */
static double
cut_and_resume (Wait             *w,
                OdFaultDirection  dir,
                guint64           offset,
                gboolean          reset,
                guint            *kinds)
{
  OdFaultCut cut;
  guint armed = 1;

  w->cuts_before = od_fault_proxy_get_cuts (w->proxy, NULL);
  od_fault_proxy_arm_cut (w->proxy, dir, offset, reset);
  if (dir == OD_FAULT_TO_SERVER)
    {
      od_fault_proxy_arm_cut (w->proxy, OD_FAULT_TO_CLIENT, g_random_int_range (0, 4096),
                              g_random_boolean ());
      armed = 2;
    }
  w->cuts_before += armed - 1;
  if (!run_until (w->sync, cut_done, w, CUT_TIMEOUT_S * 1000))
    {
      g_autoptr(SoupSession) quick = soup_session_new_with_options ("timeout", 3, NULL);
      gint64 t = g_get_monotonic_time ();
      gint64 head = od_fault_head (quick, w->traffic->server->url);

      g_test_message ("server head %" G_GINT64_FORMAT " (asked directly, %.0f ms); proxy"
                      " connections %u; server pid %s", head,
                      (g_get_monotonic_time () - t) / 1000.0,
                      od_fault_proxy_get_connections (w->proxy),
                      g_subprocess_get_identifier (w->traffic->server->proc));
    g_error ("an armed cut (#%u, %s, offset %" G_GUINT64_FORMAT ") did not happen within %d s"
             " (state %d, applied %" G_GINT64_FORMAT ", acked %" G_GINT64_FORMAT ", traffic: %s)",
             w->cuts_before, dir == OD_FAULT_TO_CLIENT ? "to client" : "to server", offset,
             CUT_TIMEOUT_S, od_lag_get_state (od_sync_engine_get_lag (w->sync)),
             od_cache_get_applied_position (w->cache), traffic_max_acked (w->traffic),
             w->traffic->failure ? w->traffic->failure : "running");
    }
  od_fault_proxy_get_cuts (w->proxy, &cut);
  kinds[cut.kind]++;
  w->target = cut.probe & ((G_GINT64_CONSTANT (1) << 40) - 1);
  w->connections = (guint64) (cut.probe >> 40);
  if (!run_until (w->sync, resumed, w, CUT_TIMEOUT_S * 1000))
    g_error ("no resume within %d s after a cut of a %s connection at byte %" G_GUINT64_FORMAT
             " (applied %" G_GINT64_FORMAT ", wanted %" G_GINT64_FORMAT "; %s)", CUT_TIMEOUT_S,
             od_fault_conn_kind_name (cut.kind), cut.conn_offset,
             od_cache_get_applied_position (w->cache), w->target,
             od_lag_get_last_error (od_sync_engine_get_lag (w->sync)));
  return (g_get_monotonic_time () - cut.time) / 1000.0;
}

static void
test_proxy_cuts (void)
{
  g_autoptr(OdFaultServer) server = od_fault_server_start ();
  g_autoptr(SoupSession) session = od_fault_session_new ();
  g_autofree char *dir = od_fault_tmpdir ("proxy-cache");
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *url = NULL;
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdSyncEngine) sync = NULL;
  g_autoptr(GPtrArray) events = NULL;
  g_autoptr(GArray) resume = g_array_new (FALSE, FALSE, sizeof (double));
  g_autofree char *why = NULL;
  OdFaultProxy *proxy;
  Traffic traffic = { 0 };
  Probe probe;
  Wait w = { 0 };
  OdSyncStats stats;
  guint kinds[OD_FAULT_CONN_N] = { 0 };
  guint write_failed = 0, n_cuts, resets = 0, to_server = 0;
  double stall_short_ms, stall_long_ms, drop_ms, p50, p99, max;
  double silent_ms = 0, seconds_behind_at_drop = 0;
  gint64 t_drop;
  double natural[3];
  gint64 t0 = g_get_monotonic_time (), head;

  /* Every insert into the history is recorded by a trigger of the
   * test's own, in the writer's transaction: an event applied twice
   * leaves two rows, a rolled-back batch none. */
  {
    g_autoptr(GError) error = NULL;
    sqlite3 *db = NULL;

    cache = od_cache_open (path, &error);
    g_assert_no_error (error);
    g_clear_object (&cache);
    g_assert_cmpint (sqlite3_open (path, &db), ==, SQLITE_OK);
    g_assert_cmpint (sqlite3_exec (db, "CREATE TABLE fault_applied (position INTEGER NOT NULL);"
                                       "CREATE TRIGGER fault_applied_insert AFTER INSERT ON order_events"
                                       " BEGIN INSERT INTO fault_applied VALUES (NEW.position); END;",
                                   NULL, NULL, NULL), ==, SQLITE_OK);
    sqlite3_close (db);
    cache = od_cache_open (path, &error);
    g_assert_no_error (error);
  }
  g_signal_connect (cache, "write-failed", G_CALLBACK (on_write_failed), &write_failed);

  g_mutex_init (&traffic.lock);
  traffic.server = server;
  traffic.thread = g_thread_new ("traffic", traffic_main, &traffic);

  proxy = od_fault_proxy_new (server->port);
  url = od_fault_proxy_get_url (proxy);
  sync = od_sync_engine_new (cache, url, OD_FAULT_VIEWER_TOKEN);
  probe.traffic = &traffic;
  probe.sync = sync;
  od_fault_proxy_set_probe (proxy, probe_at_cut, &probe);
  od_sync_engine_start (sync);
  w.cache = cache;
  w.sync = sync;
  w.proxy = proxy;
  w.traffic = &traffic;

  /* Some history first, so that the first cuts also land in replays. */
  g_usleep (500 * 1000);
  w.target = traffic_max_acked (&traffic);
  g_assert_true (run_until (sync, applied_reached, &w, 20000));

  /* Cuts at random byte offsets: a third of them in the first 400 bytes
   * (status line, headers, the first frame), the rest anywhere in the
   * next 24 KiB; one in seven on the way to the server (in a request);
   * half of them with a RST. */
  for (guint i = 0; i < N_CUTS; i++)
    {
      OdFaultDirection dir = g_random_int_range (0, 7) == 0 ? OD_FAULT_TO_SERVER : OD_FAULT_TO_CLIENT;
      guint64 offset = dir == OD_FAULT_TO_SERVER ? g_random_int_range (0, 200)
                       : g_random_int_range (0, 3) == 0 ? g_random_int_range (0, 400)
                                                        : g_random_int_range (0, 24 * 1024);
      gboolean reset = g_random_boolean ();
      double ms = cut_and_resume (&w, dir, offset, reset, kinds);

      g_array_append_val (resume, ms);
      resets += reset;
      to_server += dir == OD_FAULT_TO_SERVER;
      /* Sometimes straight on, sometimes after a little live traffic. */
      if (g_random_boolean ())
        run_until (NULL, never, NULL, g_random_int_range (0, 30));
    }

  /* A few cuts with the engine's own backoff (1 s ± 20 % after a
   * connection that worked), as an operator who does nothing sees it. */
  retry_now = FALSE;
  for (guint i = 0; i < 3; i++)
    {
      double ms = cut_and_resume (&w, OD_FAULT_TO_CLIENT, g_random_int_range (0, 8192), FALSE, kinds);

      natural[i] = ms;
    }
  retry_now = TRUE;

  /* Delays and fragmentation: pieces of 1..1400 bytes, each up to 4 ms
   * late, with 10 more cuts meanwhile. */
  od_fault_proxy_set_delay (proxy, 4, 1400);
  for (guint i = 0; i < 10; i++)
    {
      double ms = cut_and_resume (&w, OD_FAULT_TO_CLIENT, g_random_int_range (0, 8192),
                                  g_random_boolean (), kinds);

      g_array_append_val (resume, ms);
    }
  run_until (NULL, never, NULL, 1500);
  od_fault_proxy_set_delay (proxy, 0, 0);

  /* Refused connections: after a cut, the next 4 connection attempts
   * are reset at once; the engine backs off, and is told to retry. */
  t_drop = g_get_monotonic_time ();
  od_fault_proxy_drop_next (proxy, 4);
  drop_ms = cut_and_resume (&w, OD_FAULT_TO_CLIENT, g_random_int_range (0, 4096), TRUE, kinds);
  g_assert_true (run_until (sync, four_dropped, &w, 15000));
  w.target = traffic_max_acked (&traffic);
  g_assert_true (run_until (sync, applied_reached, &w, 15000));
  drop_ms = (g_get_monotonic_time () - t_drop) / 1000.0;

  /* A short stall (under the engine's 12 s silence limit): nothing is
   * lost, and the same connection goes on afterwards. */
  {
    gint64 start = g_get_monotonic_time ();
    guint64 conns;

    od_sync_engine_get_stats (sync, &stats);
    conns = stats.connections;
    od_fault_proxy_stall (proxy, TRUE);
    run_until (NULL, never, NULL, 3000);
    od_fault_proxy_stall (proxy, FALSE);
    w.target = traffic_max_acked (&traffic);
    g_assert_true (run_until (sync, applied_reached, &w, 10000));
    stall_short_ms = (g_get_monotonic_time () - start) / 1000.0 - 3000;
    od_sync_engine_get_stats (sync, &stats);
    g_assert_cmpuint (stats.connections, ==, conns);
  }

  /* A stall longer than the silence limit: the engine must give up on
   * the silent connection by itself, show that it is not live, and
   * resume on a new one (new connections are not stalled). */
  {
    gint64 start;
    guint64 conns;
    OdLag *lag = od_sync_engine_get_lag (sync);

    od_sync_engine_get_stats (sync, &stats);
    conns = stats.connections;
    w.target = traffic_max_acked (&traffic);
    od_fault_proxy_stall (proxy, TRUE);
    start = g_get_monotonic_time ();
    run_until (NULL, never, NULL, 8000);
    /* The lag indicator's view of a silent connection, for the record:
     * freshness shows it; the state and seconds behind only change once
     * the engine gives up on the connection (12 s). */
    g_test_message ("after 8 s of stall: state %d, seconds behind %.1f, freshness %.1f",
                    od_lag_get_state (lag), od_lag_get_seconds_behind (lag),
                    od_lag_get_freshness (lag));
    /* Read current, as the indicator's next tick will show it: what
     * the engine's last once-a-second tick computed can be more than a
     * second old under a loaded sanitizer run, and is truncated to
     * whole seconds (6.0 after 8 s was seen). */
    od_lag_tick (lag);
    g_assert_cmpfloat (od_lag_get_freshness (lag), >=, 7.0);
    g_assert_true (run_until (sync, not_live, &w, 10000));
    /* Once the engine has given up on it, the lag must say how long the
     * data has not been known current. */
    g_main_context_iteration (NULL, FALSE);
    silent_ms = (g_get_monotonic_time () - start) / 1000.0;
    seconds_behind_at_drop = od_lag_get_seconds_behind (lag);
    g_assert_cmpfloat (silent_ms, >=, 11000);
    /* The network comes back.  (Left stalled, the old keep-alive
     * connection the engine sends its GET /v1/head on stays silent too,
     * and the resume takes about 13 s more.) */
    od_fault_proxy_stall (proxy, FALSE);
    w.connections = conns;
    w.target = traffic_max_acked (&traffic);
    g_assert_true (run_until (sync, resumed, &w, 15000));
    stall_long_ms = (g_get_monotonic_time () - start) / 1000.0;
  }

  /* The end: traffic stops, the cache catches up with the head. */
  g_atomic_int_set (&traffic.stop, 1);
  g_thread_join (traffic.thread);
  g_assert_null (traffic.failure);
  head = od_fault_head (session, server->url);
  w.target = head;
  g_assert_true (run_until (sync, applied_reached, &w, 20000));
  g_assert_true (od_cache_flush (cache, NULL));
  od_sync_engine_get_stats (sync, &stats);
  od_sync_engine_stop (sync);
  n_cuts = od_fault_proxy_get_cuts (proxy, NULL);

  events = od_fault_fetch_events (session, server->url);
  g_assert_cmpint (((OdEvent *) g_ptr_array_index (events, events->len - 1))->position, ==, head);
  {
    sqlite3 *db = od_cache_get_db (cache);
    gint64 applied_rows = od_fault_scalar (db, "SELECT count(*) FROM fault_applied");
    gint64 distinct_rows = od_fault_scalar (db, "SELECT count(DISTINCT position) FROM fault_applied");

    if (!od_fault_cache_matches_log (db, events, &why))
      g_error ("the cache is not the server's log: %s", why);
    g_assert_true (od_fault_integrity_ok (db));
    g_assert_cmpint (od_fault_scalar (db, "SELECT applied_position FROM sync_state"), ==, head);
    /* 0 skipped: every event of the log was applied; 0 twice: no
     * position applied more than once. */
    g_assert_cmpint (distinct_rows, ==, events->len);
    g_assert_cmpint (applied_rows, ==, distinct_rows);
  }
  g_assert_cmpuint (write_failed, ==, 0);
  g_assert_cmpuint (n_cuts, >=, N_CUTS);

  p50 = od_fault_percentile ((double *) resume->data, resume->len, 50);
  p99 = od_fault_percentile ((double *) resume->data, resume->len, 99);
  max = od_fault_percentile ((double *) resume->data, resume->len, 100);
  g_test_message ("resume p50=%.1fms p99=%.1fms max=%.1fms over %u cuts (retry at once)",
                  p50, p99, max, resume->len);
  g_test_message ("resume with the engine's own backoff (no retry now): %.0f, %.0f, %.0f ms",
                  natural[0], natural[1], natural[2]);
  g_test_message ("cuts: %u (%u with RST, %u on the way to the server); by connection: stream %u,"
                  " head %u, events %u, unknown %u, other %u",
                  n_cuts, resets, to_server, kinds[OD_FAULT_CONN_STREAM], kinds[OD_FAULT_CONN_HEAD],
                  kinds[OD_FAULT_CONN_EVENTS], kinds[OD_FAULT_CONN_UNKNOWN],
                  kinds[OD_FAULT_CONN_OTHER]);
  g_test_message ("refused connections: resume %.0f ms after 4 resets; short stall 3 s: caught up"
                  " %.0f ms after it ended on the same connection; long stall: resumed on a new"
                  " connection %.1f s after it began (the engine gave up on the silent one after %.1f s;"
                  " the lag then said %.1f s behind)", drop_ms, stall_short_ms,
                  stall_long_ms / 1000, silent_ms / 1000, seconds_behind_at_drop);
  g_test_message ("events %u, skipped 0, applied twice 0; engine: %" G_GUINT64_FORMAT
                  " events received, %" G_GUINT64_FORMAT " duplicates skipped, %" G_GUINT64_FORMAT
                  " gaps, %" G_GUINT64_FORMAT " pages, %" G_GUINT64_FORMAT " stream connections;"
                  " %u commands; %.1f s", events->len, stats.events_received,
                  stats.duplicates_skipped, stats.gaps, stats.pages_fetched, stats.connections,
                  traffic.commands, (g_get_monotonic_time () - t0) / 1e6);

  for (guint i = 0; i < warnings->len; i++)
    g_test_message ("FAILED CHECK: the core warned: %s", (char *) warnings->pdata[i]);
  g_assert_cmpuint (warnings->len, ==, 0);

  g_clear_object (&sync);
  od_cache_close (cache);
  g_clear_object (&cache);
  od_fault_proxy_free (proxy);
  g_mutex_clear (&traffic.lock);
  g_free (traffic.failure);
  od_fault_rmdir (dir);
}


/* The outbox through the proxy: commands cut in the request (not
 * executed) and in the response (executed, but the outbox cannot know)
 * are sent again with the same key and body; each is accepted exactly
 * once. */
typedef struct
{
  guint submitted;
  guint failed;
} Submits;

static void
submitted_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      data)
{
  Submits *s = data;
  g_autoptr(GError) error = NULL;

  if (od_outbox_submit_finish (OD_OUTBOX (source), result, &error) < 0)
    {
      g_test_message ("submit failed: %s", error->message);
      s->failed++;
    }
  s->submitted++;
}

typedef struct
{
  OdOutbox     *outbox;
  OdFaultProxy *proxy;
  guint         cuts_before;
  Submits      *submits;
  guint         total;
  guint         submitted_target;
} OutboxWait;

/* Also plays the console's "network is back" every 5 ms: a kick while
 * the failed attempt is still being noted would be lost, and the
 * outbox's own backoff (1 s) would make this test slow. */
static gboolean
outbox_progress (gpointer data)
{
  OutboxWait *w = data;
  static gint64 last_kick;

  if (g_get_monotonic_time () - last_kick > 5000)
    {
      last_kick = g_get_monotonic_time ();
      od_outbox_kick (w->outbox);
    }
  return w->submits->submitted == w->submitted_target && od_outbox_count_pending (w->outbox) == 0;
}

static gboolean
outbox_done (gpointer data)
{
  OutboxWait *w = data;

  return w->submits->submitted == w->total && od_outbox_count_pending (w->outbox) == 0;
}

#define OUTBOX_ORDERS 40

static void
test_outbox_cuts (void)
{
  g_autoptr(OdFaultServer) server = od_fault_server_start ();
  g_autoptr(SoupSession) session = od_fault_session_new ();
  g_autofree char *dir = od_fault_tmpdir ("outbox-cache");
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autofree char *url = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdOutbox) outbox = NULL;
  g_autoptr(OdSyncEngine) sync = NULL;
  g_autoptr(GPtrArray) events = NULL;
  g_autoptr(GPtrArray) commands = NULL;
  g_autoptr(GHashTable) by_position = g_hash_table_new (g_int64_hash, g_int64_equal);
  OdFaultProxy *proxy;
  Submits submits = { 0 };
  OutboxWait w = { 0 };
  guint cuts_request = 0, cuts_response = 0, resent = 0, total = 0, arms = 0;
  gint64 t0 = g_get_monotonic_time ();

  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  proxy = od_fault_proxy_new (server->port);
  url = od_fault_proxy_get_url (proxy);
  outbox = od_outbox_new (cache, url, OD_FAULT_OPERATOR_TOKEN);
  /* The events come straight from the server: accepted commands become
   * visible, which is when the outbox counts them done. */
  sync = od_sync_engine_new (cache, server->url, OD_FAULT_VIEWER_TOKEN);
  od_sync_engine_start (sync);

  w.outbox = outbox;
  w.proxy = proxy;
  w.submits = &submits;
  w.total = OUTBOX_ORDERS * 5;

  /* One command at a time, with a cut armed for it (in its request: not
   * executed; or in the response: executed, the outbox cannot know); an
   * armed cut that the command was too short for waits for the next. */
  for (guint n = 0; n < OUTBOX_ORDERS; n++)
    {
      g_autofree char *id = od_uuid_v7_new ();
      char *bodies[] = {
        g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":"
                         "\"Outbox %u\",\"customer_email\":\"o%u@example.com\",\"currency\":\"EUR\"}}",
                         id, n, n),
        g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"O-1\","
                         "\"name\":\"Mug\",\"quantity\":2,\"unit_price_cents\":700}}", id),
        g_strdup_printf ("{\"type\":\"AddItem\",\"order_id\":\"%s\",\"data\":{\"sku\":\"O-1\","
                         "\"name\":\"Mug\",\"quantity\":1,\"unit_price_cents\":700}}", id),
        g_strdup_printf ("{\"type\":\"PlaceOrder\",\"order_id\":\"%s\",\"expected_version\":3}", id),
        g_strdup_printf ("{\"type\":\"ShipOrder\",\"order_id\":\"%s\",\"data\":{\"carrier\":\"GLS\","
                         "\"tracking_number\":\"G%u\"}}", id, n),
      };

      for (guint k = 0; k < G_N_ELEMENTS (bodies); k++)
        {
          guint cuts = od_fault_proxy_get_cuts (proxy, NULL);

          if (cuts >= arms)
            {
              gboolean in_response = g_random_boolean ();

              od_fault_proxy_arm_cut (proxy, in_response ? OD_FAULT_TO_CLIENT : OD_FAULT_TO_SERVER,
                                      g_random_int_range (0, in_response ? 250 : 450),
                                      g_random_boolean ());
              arms = cuts + 1;
            }
          w.submitted_target = total + 1;
          od_outbox_submit_json_async (outbox, bodies[k], NULL, submitted_cb, &submits);
          g_free (bodies[k]);
          total++;
          if (!run_until (NULL, outbox_progress, &w, 20000))
            g_error ("command %u not visible within 20 s (%u pending)", total,
                     od_outbox_count_pending (outbox));
          if (od_fault_proxy_get_cuts (proxy, NULL) > cuts)
            {
              OdFaultCut cut;

              od_fault_proxy_get_cuts (proxy, &cut);
              if (cut.direction == OD_FAULT_TO_CLIENT)
                cuts_response++;
              else
                cuts_request++;
            }
        }
    }
  /* Everything visible: the outbox is empty. */
  if (!run_until (NULL, outbox_done, &w, 20000))
    g_error ("%u commands still pending", od_outbox_count_pending (outbox));
  g_assert_cmpuint (submits.failed, ==, 0);
  g_assert_cmpuint (cuts_request + cuts_response, >=, 100);

  /* Every command accepted, none refused (a retried CreateOrder that the
   * server ran twice would come back 409 order_exists). */
  commands = od_outbox_list (outbox, TRUE, 10000, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (commands->len, ==, total);
  events = od_fault_fetch_events (session, server->url);
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *ev = g_ptr_array_index (events, i);

      g_hash_table_insert (by_position, &ev->position, ev);
    }
  for (guint i = 0; i < commands->len; i++)
    {
      OdPendingCommand *c = g_ptr_array_index (commands, i);
      OdEvent *ev;

      if (c->state != OD_COMMAND_STATE_VISIBLE)
        g_error ("command %s (%s) ended %s: %s", c->idempotency_key, c->type,
                 od_command_state_name (c->state), c->detail ? c->detail : "");
      ev = g_hash_table_lookup (by_position, &c->position);
      g_assert_nonnull (ev);
      g_assert_cmpstr (ev->order_id, ==, c->order_id);
      g_assert_cmpint (ev->version, ==, c->version);
      g_hash_table_remove (by_position, &c->position);
      if (c->attempts > 1)
        resent++;
    }
  /* Nothing in the log that no command accounts for: nothing ran twice. */
  g_assert_cmpuint (events->len, ==, total);
  g_assert_cmpuint (g_hash_table_size (by_position), ==, 0);
  g_test_message ("outbox: %u commands through %u cuts (%u in the request, %u in the response);"
                  " %u commands sent more than once; %u events in the log: each command"
                  " exactly once; %.1f s", total, cuts_request + cuts_response, cuts_request,
                  cuts_response, resent, events->len, (g_get_monotonic_time () - t0) / 1e6);

  for (guint i = 0; i < warnings->len; i++)
    g_test_message ("FAILED CHECK: the core warned: %s", (char *) warnings->pdata[i]);
  g_assert_cmpuint (warnings->len, ==, 0);
  {
    g_autofree char *why = NULL;

    g_assert_true (od_cache_flush (cache, NULL));
    if (!od_fault_cache_matches_log (od_cache_get_db (cache), events, &why))
      g_error ("the cache is not the server's log: %s", why);
  }
  od_sync_engine_stop (sync);
  g_clear_object (&sync);
  g_clear_object (&outbox);
  od_cache_close (cache);
  g_clear_object (&cache);
  od_fault_proxy_free (proxy);
  od_fault_rmdir (dir);
}

static GLogWriterOutput
record_warnings (GLogLevelFlags   level,
                 const GLogField *fields,
                 gsize            n_fields,
                 gpointer         data)
{
  if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL))
    for (gsize i = 0; i < n_fields; i++)
      if (g_strcmp0 (fields[i].key, "MESSAGE") == 0)
        g_ptr_array_add (warnings, g_strdup (fields[i].value));
  return g_log_writer_default (level, fields, n_fields, data);
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  warnings = g_ptr_array_new_with_free_func (g_free);
  g_log_set_always_fatal (G_LOG_FATAL_MASK);
  g_log_set_writer_func (record_warnings, NULL, NULL);
  g_test_add_func ("/faults/proxy/cuts-drops-delays-stalls", test_proxy_cuts);
  g_test_add_func ("/faults/proxy/outbox-cuts", test_outbox_cuts);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Idempotency-Key: replays (of successes and of stored refusals), key
 * reuse, scope per token, concurrent duplicates, malformed keys, and a
 * retry that survives a crash of the server. */
#include "od-test-server.h"
#include "od-test-bodies.h"

#include <string.h>

static OdTestServer *server;

static gsize
count_events (OdTestServer *s)
{
  g_autoptr(GPtrArray) events = od_test_events (s, 0);

  return events->len;
}

/* The replay is the first answer again, byte for byte, and says so. */
static void
assert_replay (OdTestResponse *first,
               OdTestResponse *again)
{
  g_assert_cmpuint (again->status, ==, first->status);
  g_assert_cmpstr (again->body, ==, first->body);
  g_assert_cmpstr (od_test_response_header (again, "Idempotent-Replayed"), ==, "true");
  g_assert_cmpstr (od_test_response_header (again, "Content-Type"), ==,
                   od_test_response_header (first, "Content-Type"));
  g_assert_null (od_test_response_header (first, "Idempotent-Replayed"));
}

static void
test_replay_success (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *create = od_body_create (id, "Ada", "ada@example.org", "EUR");
  g_autofree char *add = od_body_add (id, 1, "S", "N", 2, 10);
  g_autofree char *k1 = od_test_new_key ();
  g_autofree char *k2 = od_test_new_key ();
  g_autoptr(OdTestResponse) first = od_test_command (server, NULL, OD_TEST_ALICE, k1, create);
  g_autoptr(OdTestResponse) add_first = od_test_command (server, NULL, OD_TEST_ALICE, k2, add);
  gint64 head = od_test_head (server);
  gsize n = count_events (server);

  od_test_assert_status (first, 200);
  od_test_assert_status (add_first, 200);
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr(OdTestResponse) again = od_test_command (server, NULL, OD_TEST_ALICE, k1, create);
      g_autoptr(OdTestResponse) add_again = od_test_command (server, NULL, OD_TEST_ALICE, k2, add);

      assert_replay (first, again);
      assert_replay (add_first, add_again);
    }
  g_assert_cmpint (od_test_head (server), ==, head);
  g_assert_cmpuint (count_events (server), ==, n);

  /* The order really is at version 2: nothing was applied twice. */
  {
    g_autofree char *next = od_body_add (id, 2, "S", "N", 1, 10);

    g_assert_cmpint (od_test_command_ok (server, NULL, OD_TEST_ALICE, next, NULL), >, head);
  }
}

/* How many events of the log belong to one of the orders IDS. */
static guint
count_events_of (GPtrArray *ids)
{
  g_autoptr(GPtrArray) events = od_test_events (server, 0);
  g_autoptr(GHashTable) wanted = g_hash_table_new (g_str_hash, g_str_equal);
  guint n = 0;

  for (guint i = 0; i < ids->len; i++)
    g_hash_table_add (wanted, ids->pdata[i]);
  for (guint i = 0; i < events->len; i++)
    if (g_hash_table_contains (wanted, ((OdEvent *) events->pdata[i])->order_id))
      n++;
  return n;
}

/* Clients that send a command and close at once, without reading the
 * answer: every command still commits, once, and a retry with the same
 * key gets its answer.  The answers are written to closed connections;
 * that must not take the server down or leave a key in flight.  (Counted
 * by order, not by head: a PostgreSQL server learns its head through
 * notifications, a moment later.) */
static void
test_client_gone (void)
{
  const guint n = 60;
  g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func (g_free);
  gint64 deadline = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GSocketConnection) connection = od_test_raw_connect (server);
      char *id = od_uuid_v7_new ();
      char *key = od_test_new_key ();
      g_autofree char *body = od_body_create (id, "Ada", "ada@example.org", "EUR");
      g_autofree char *request = g_strdup_printf ("POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                                                  "Authorization: Bearer %s\r\n"
                                                  "Idempotency-Key: %s\r\n"
                                                  "Content-Type: application/json\r\n"
                                                  "Content-Length: %zu\r\n\r\n%s",
                                                  OD_TEST_ALICE, key, strlen (body), body);

      g_ptr_array_add (ids, id);
      g_ptr_array_add (keys, key);
      g_assert_true (od_test_raw_write (connection, request, strlen (request)));
      g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
    }
  while (count_events_of (ids) < n)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20000);
    }
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *body = od_body_create (ids->pdata[i], "Ada", "ada@example.org", "EUR");
      g_autoptr(OdTestResponse) again = od_test_command (server, NULL, OD_TEST_ALICE,
                                                         keys->pdata[i], body);

      /* A command's event can be read a moment before the writer's answer
       * reaches the main loop and frees its key; until then the key is
       * in flight, and the contract says to retry in a moment. */
      while (again->status == 409
             && g_strcmp0 (od_test_response_string (again, "code"), "idempotency_in_flight") == 0)
        {
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_usleep (10000);
          od_test_response_free (again);
          again = od_test_command (server, NULL, OD_TEST_ALICE, keys->pdata[i], body);
        }
      od_test_assert_status (again, 200);
      g_assert_cmpstr (od_test_response_header (again, "Idempotent-Replayed"), ==, "true");
    }
  g_assert_cmpuint (count_events_of (ids), ==, n);
  g_assert_true (od_test_server_alive (server));
}

static void
test_replay_refusal (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *create = od_body_create (id, "Ada", "ada@example.org", "EUR");
  g_autofree char *add = od_body_add (id, -1, "S", "N", 1, 10);
  g_autofree char *stale = od_body_add (id, 0, "S", "N", 1, 10);
  g_autofree char *place_empty = od_body ("PlaceOrder", id, -1, NULL);
  g_autofree char *k_missing = od_test_new_key ();
  g_autofree char *k_stale = od_test_new_key ();
  g_autofree char *k_state = od_test_new_key ();
  g_autofree char *k_exists = od_test_new_key ();
  g_autoptr(OdTestResponse) missing = od_test_command (server, NULL, OD_TEST_ALICE, k_missing, add);
  g_autoptr(OdTestResponse) stale_r = NULL;
  g_autoptr(OdTestResponse) state_r = NULL;
  g_autoptr(OdTestResponse) exists_r = NULL;
  gint64 head;

  /* 404 while the order does not exist... */
  od_test_assert_problem (missing, 404, "not_found");
  od_test_command_ok (server, NULL, OD_TEST_ALICE, create, NULL);
  stale_r = od_test_command (server, NULL, OD_TEST_ALICE, k_stale, stale);
  od_test_assert_problem (stale_r, 409, "version_conflict");
  state_r = od_test_command (server, NULL, OD_TEST_ALICE, k_state, place_empty);
  od_test_assert_problem (state_r, 409, "invalid_state");
  exists_r = od_test_command (server, NULL, OD_TEST_ALICE, k_exists, create);
  od_test_assert_problem (exists_r, 409, "order_exists");

  /* ...is still the answer for that key once it exists: the stored answer
   * is replayed, the command is not decided again. */
  head = od_test_head (server);
  {
    g_autoptr(OdTestResponse) a = od_test_command (server, NULL, OD_TEST_ALICE, k_missing, add);
    g_autoptr(OdTestResponse) b = od_test_command (server, NULL, OD_TEST_ALICE, k_stale, stale);
    g_autoptr(OdTestResponse) c = od_test_command (server, NULL, OD_TEST_ALICE, k_state, place_empty);
    g_autoptr(OdTestResponse) d = od_test_command (server, NULL, OD_TEST_ALICE, k_exists, create);

    assert_replay (missing, a);
    assert_replay (stale_r, b);
    assert_replay (state_r, c);
    assert_replay (exists_r, d);
    g_assert_true (g_str_has_prefix (od_test_response_header (a, "Content-Type"), "application/problem+json"));
  }
  g_assert_cmpint (od_test_head (server), ==, head);

  /* Even after the order moved on, a refusal replays. */
  od_test_command_ok (server, NULL, OD_TEST_ALICE, add, NULL);
  {
    g_autoptr(OdTestResponse) c = od_test_command (server, NULL, OD_TEST_ALICE, k_state, place_empty);

    assert_replay (state_r, c);
  }
}

/* Refusals made before the log is consulted store nothing: the same key
 * can then carry a good request. */
static void
test_early_refusals_store_nothing (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *good = od_body_create (id, "Ada", "ada@example.org", "EUR");
  g_autofree char *invalid = od_body_create (id, "Ada", "ada@example.org", "eur");
  g_autofree char *key = od_test_new_key ();
  g_autoptr(OdTestResponse) r1 = od_test_command (server, NULL, OD_TEST_ALICE, key, invalid);
  g_autoptr(OdTestResponse) r2 = od_test_command (server, NULL, OD_TEST_ALICE, key, "{\"type\":");
  g_autoptr(OdTestResponse) r3 = od_test_request (server, NULL, "POST", "/v1/commands", OD_TEST_ALICE,
                                                  "text/plain", good, -1, "Idempotency-Key", key, NULL);
  g_autoptr(OdTestResponse) r4 = od_test_command (server, NULL, "nobody", key, good);
  g_autoptr(OdTestResponse) ok = NULL;

  od_test_assert_problem (r1, 422, "invalid_command");
  od_test_assert_problem (r2, 400, "malformed");
  od_test_assert_problem (r3, 415, "unsupported_media_type");
  od_test_assert_problem (r4, 401, "unauthorized");
  ok = od_test_command (server, NULL, OD_TEST_ALICE, key, good);
  od_test_assert_status (ok, 200);
  g_assert_null (od_test_response_header (ok, "Idempotent-Replayed"));
}

static void
test_key_reused (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "Ada", "ada@example.org", "EUR");
  g_autofree char *spaced = g_strconcat (body, " ", NULL);
  g_autofree char *other = od_body_create (id, "Ada", "ada@example.org", "USD");
  g_autofree char *key = od_test_new_key ();
  g_autoptr(OdTestResponse) first = od_test_command (server, NULL, OD_TEST_ALICE, key, body);
  g_autoptr(OdTestResponse) r_other = NULL;
  g_autoptr(OdTestResponse) r_spaced = NULL;
  g_autoptr(OdTestResponse) again = NULL;
  gint64 head;

  od_test_assert_status (first, 200);
  head = od_test_head (server);
  r_other = od_test_command (server, NULL, OD_TEST_ALICE, key, other);
  od_test_assert_problem (r_other, 422, "idempotency_key_reused");
  /* "Same body" is byte-identical: the same JSON spelled differently is
   * another body. */
  r_spaced = od_test_command (server, NULL, OD_TEST_ALICE, key, spaced);
  od_test_assert_problem (r_spaced, 422, "idempotency_key_reused");
  /* The first body still replays. */
  again = od_test_command (server, NULL, OD_TEST_ALICE, key, body);
  assert_replay (first, again);
  g_assert_cmpint (od_test_head (server), ==, head);
}

static void
test_scope_per_token (void)
{
  g_autofree char *a = od_uuid_v7_new ();
  g_autofree char *b = od_uuid_v7_new ();
  g_autofree char *body_a = od_body_create (a, "Ada", "ada@example.org", "EUR");
  g_autofree char *body_b = od_body_create (b, "Bob", "bob@example.org", "EUR");
  g_autofree char *key = od_test_new_key ();
  g_autofree char *key2 = od_test_new_key ();
  g_autoptr(OdTestResponse) ra = od_test_command (server, NULL, OD_TEST_ALICE, key, body_a);
  g_autoptr(OdTestResponse) rb = od_test_command (server, NULL, OD_TEST_BOB, key, body_b);
  g_autoptr(OdTestResponse) rb_a = NULL;
  g_autoptr(OdTestResponse) rb_a2 = NULL;
  g_autoptr(OdTestResponse) ra_again = NULL;

  /* The same key from two tokens: two commands. */
  od_test_assert_status (ra, 200);
  od_test_assert_status (rb, 200);
  g_assert_null (od_test_response_header (rb, "Idempotent-Replayed"));
  g_assert_cmpstr (od_test_response_string (rb, "order_id"), ==, b);
  /* Bob's key now holds bob's body. */
  rb_a = od_test_command (server, NULL, OD_TEST_BOB, key, body_a);
  od_test_assert_problem (rb_a, 422, "idempotency_key_reused");
  /* Alice's body under a key bob never used is not a replay of alice's. */
  rb_a2 = od_test_command (server, NULL, OD_TEST_BOB, key2, body_a);
  od_test_assert_problem (rb_a2, 409, "order_exists");
  ra_again = od_test_command (server, NULL, OD_TEST_ALICE, key, body_a);
  assert_replay (ra, ra_again);

  /* The actor of the event is the token that sent it. */
  {
    g_autoptr(OdEvent) ea = od_test_event_at (server, od_test_response_int (ra, "position"));
    g_autoptr(OdEvent) eb = od_test_event_at (server, od_test_response_int (rb, "position"));

    g_assert_cmpstr (ea->actor, ==, "alice");
    g_assert_cmpstr (eb->actor, ==, "bob");
  }
}

/* ---- concurrent duplicates ---- */

typedef struct
{
  GMutex          lock;
  GCond           cond;
  guint           waiting;
  gboolean        go;
  const char     *key;
  const char    **bodies;
  guint           n_bodies;
  OdTestResponse *responses[32];
} Race;

typedef struct
{
  Race  *race;
  guint  index;
} Runner;

static gpointer
race_thread (gpointer data)
{
  Runner *runner = data;
  Race *race = runner->race;
  g_autoptr(SoupSession) session = od_test_session_new ();
  const char *body = race->bodies[runner->index % race->n_bodies];

  /* A first request opens the connection, so that the racing ones start
   * together. */
  g_autoptr(OdTestResponse) warm = od_test_request (server, session, "GET", "/v1/health", NULL,
                                                    NULL, NULL, 0, NULL);

  g_assert_cmpuint (warm->status, ==, 200);
  g_mutex_lock (&race->lock);
  race->waiting++;
  g_cond_broadcast (&race->cond);
  while (!race->go)
    g_cond_wait (&race->cond, &race->lock);
  g_mutex_unlock (&race->lock);

  race->responses[runner->index] = od_test_command (server, session, OD_TEST_ALICE, race->key, body);
  return NULL;
}

static void
run_race (Race  *race,
          guint  n)
{
  GThread *threads[32];
  Runner runners[32];

  g_assert_cmpuint (n, <=, 32);
  g_mutex_init (&race->lock);
  g_cond_init (&race->cond);
  for (guint i = 0; i < n; i++)
    {
      runners[i].race = race;
      runners[i].index = i;
      threads[i] = g_thread_new ("race", race_thread, &runners[i]);
    }
  g_mutex_lock (&race->lock);
  while (race->waiting < n)
    g_cond_wait (&race->cond, &race->lock);
  race->go = TRUE;
  g_cond_broadcast (&race->cond);
  g_mutex_unlock (&race->lock);
  for (guint i = 0; i < n; i++)
    g_thread_join (threads[i]);
  g_mutex_clear (&race->lock);
  g_cond_clear (&race->cond);
}

static void
test_concurrent_duplicate (void)
{
  guint in_flight_total = 0, replay_total = 0;

  for (guint round = 0; round < 5; round++)
    {
      g_autofree char *id = od_uuid_v7_new ();
      g_autofree char *body = od_body_create (id, "Racer", "race@example.org", "EUR");
      g_autofree char *key = od_test_new_key ();
      const char *bodies[] = { body };
      Race race = { .key = key, .bodies = bodies, .n_bodies = 1 };
      const guint n = 16;
      gint64 head = od_test_head (server);
      g_autoptr(GPtrArray) appended = NULL;
      OdTestResponse *winner = NULL;
      guint processed = 0;

      run_race (&race, n);
      for (guint i = 0; i < n; i++)
        {
          OdTestResponse *r = race.responses[i];

          if (r->status == 200 && od_test_response_header (r, "Idempotent-Replayed") == NULL)
            {
              processed++;
              winner = r;
            }
          else if (r->status == 200)
            {
              g_assert_cmpstr (od_test_response_header (r, "Idempotent-Replayed"), ==, "true");
              replay_total++;
            }
          else
            {
              od_test_assert_problem (r, 409, "idempotency_in_flight");
              in_flight_total++;
            }
        }
      g_assert_cmpuint (processed, ==, 1);
      for (guint i = 0; i < n; i++)
        if (race.responses[i]->status == 200)
          g_assert_cmpstr (race.responses[i]->body, ==, winner->body);
      /* Exactly one event for the order. */
      appended = od_test_events (server, head);
      g_assert_cmpuint (appended->len, ==, 1);
      g_assert_cmpstr (((OdEvent *) g_ptr_array_index (appended, 0))->order_id, ==, id);
      for (guint i = 0; i < n; i++)
        od_test_response_free (race.responses[i]);
    }
  g_test_message ("in flight: %u, replays: %u", in_flight_total, replay_total);
}

/* Same key, different bodies, at once: one is processed, the others are
 * in flight or reused, never a second success. */
static void
test_concurrent_different_bodies (void)
{
  /* Not g_autofree: on an array it frees only the first element. */
  char *ids[8];
  char *bodies[8];
  g_autofree char *key = od_test_new_key ();
  Race race = { .key = key, .bodies = (const char **) bodies, .n_bodies = 8 };
  gint64 head = od_test_head (server);
  g_autoptr(GPtrArray) appended = NULL;
  guint processed = 0;

  for (guint i = 0; i < 8; i++)
    {
      ids[i] = od_uuid_v7_new ();
      bodies[i] = od_body_create (ids[i], "Racer", "race@example.org", "EUR");
    }
  run_race (&race, 16);
  for (guint i = 0; i < 16; i++)
    {
      OdTestResponse *r = race.responses[i];

      if (r->status == 200)
        {
          if (od_test_response_header (r, "Idempotent-Replayed") == NULL)
            processed++;
        }
      else if (r->status == 409)
        od_test_assert_problem (r, 409, "idempotency_in_flight");
      else
        od_test_assert_problem (r, 422, "idempotency_key_reused");
      od_test_response_free (r);
    }
  g_assert_cmpuint (processed, ==, 1);
  appended = od_test_events (server, head);
  g_assert_cmpuint (appended->len, ==, 1);
  for (guint i = 0; i < 8; i++)
    {
      g_free (ids[i]);
      g_free (bodies[i]);
    }
}

/* ---- malformed keys ---- */

static void
test_bad_keys (void)
{
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = od_body_create (id, "Ada", "ada@example.org", "EUR");
  g_autofree char *too_long = od_repeat ("k", 129);
  const char *raw_headers[] = {
    "",                                              /* none */
    "Idempotency-Key: \r\n",                         /* empty */
    "Idempotency-Key: caf\xc3\xa9\r\n",              /* not ASCII */
    "Idempotency-Key: \xff\xfe\r\n",                 /* not even UTF-8 */
    "Idempotency-Key: a\tb\r\n",                     /* a control character */
    "Idempotency-Key: a\177b\r\n",                  /* DEL */
    "Idempotency-Key: k-1\r\nIdempotency-Key: k-1\r\n", /* twice */
    "Idempotency-Key: k-1\r\nIdempotency-Key: k-2\r\n",
  };
  gint64 head = od_test_head (server);

  for (guint i = 0; i < G_N_ELEMENTS (raw_headers); i++)
    {
      g_autofree char *headers = g_strconcat ("Authorization: Bearer " OD_TEST_ALICE "\r\n"
                                              "Content-Type: application/json\r\n", raw_headers[i], NULL);
      g_autoptr(OdTestResponse) r = od_test_raw_request (server, "POST", "/v1/commands", headers, body, -1);

      g_autofree char *printable = g_strescape (raw_headers[i], NULL);

      g_test_message ("case %u: %s", i, printable);
      od_test_assert_problem (r, 400, "idempotency_key_missing");
    }
  {
    g_autoptr(OdTestResponse) r = od_test_command (server, NULL, OD_TEST_ALICE, too_long, body);

    od_test_assert_problem (r, 400, "idempotency_key_missing");
  }
  g_assert_cmpint (od_test_head (server), ==, head);
  /* The body itself was fine. */
  {
    g_autoptr(OdTestResponse) r = od_test_command (server, NULL, OD_TEST_ALICE, "k-1", body);

    od_test_assert_status (r, 200);
  }
}

/* ---- durability of the stored answer ---- */

static void
test_survives_crash (void)
{
  g_autoptr(OdTestServer) s = od_test_server_new (NULL);
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *create = od_body_create (id, "Crash", "crash@example.org", "EUR");
  g_autofree char *add = od_body_add (id, -1, "S", "N", 1, 10);
  g_autofree char *k1 = od_test_new_key ();
  g_autofree char *k2 = od_test_new_key ();
  g_autoptr(OdTestResponse) first = od_test_command (s, NULL, OD_TEST_ALICE, k1, create);
  g_autoptr(OdTestResponse) refused = od_test_command (s, NULL, OD_TEST_ALICE, k2, "{\"type\":\"PlaceOrder\",\"order_id\":\"00000000-0000-7000-8000-000000000000\"}");
  gint64 head;

  od_test_assert_status (first, 200);
  od_test_assert_problem (refused, 404, "not_found");
  head = od_test_head (s);

  /* The answer was given, so it is durable: kill -9 and come back. */
  od_test_server_kill (s);
  od_test_server_start (s);
  {
    g_autoptr(OdTestResponse) again = od_test_command (s, NULL, OD_TEST_ALICE, k1, create);
    g_autoptr(OdTestResponse) refused_again = od_test_command (s, NULL, OD_TEST_ALICE, k2, "{\"type\":\"PlaceOrder\",\"order_id\":\"00000000-0000-7000-8000-000000000000\"}");
    g_autoptr(OdTestResponse) reused = od_test_command (s, NULL, OD_TEST_ALICE, k1, add);

    assert_replay (first, again);
    assert_replay (refused, refused_again);
    od_test_assert_problem (reused, 422, "idempotency_key_reused");
  }
  g_assert_cmpint (od_test_head (s), ==, head);

  /* And once more after a clean stop. */
  od_test_server_stop (s);
  od_test_server_start (s);
  {
    g_autoptr(OdTestResponse) again = od_test_command (s, NULL, OD_TEST_ALICE, k1, create);

    assert_replay (first, again);
  }
  g_assert_cmpint (od_test_head (s), ==, head);
}

int
main (int   argc,
      char *argv[])
{
  int status;

  g_test_init (&argc, &argv, NULL);
  g_test_message ("store: %s", od_test_store_kind ());
  server = od_test_server_new ("--rate-limit", "0", NULL);

  g_test_add_func ("/idempotency/replay-success", test_replay_success);
  g_test_add_func ("/idempotency/replay-refusal", test_replay_refusal);
  g_test_add_func ("/idempotency/client-gone", test_client_gone);
  g_test_add_func ("/idempotency/early-refusals-store-nothing", test_early_refusals_store_nothing);
  g_test_add_func ("/idempotency/key-reused", test_key_reused);
  g_test_add_func ("/idempotency/scope-per-token", test_scope_per_token);
  g_test_add_func ("/idempotency/concurrent-duplicate", test_concurrent_duplicate);
  g_test_add_func ("/idempotency/concurrent-different-bodies", test_concurrent_different_bodies);
  g_test_add_func ("/idempotency/bad-keys", test_bad_keys);
  g_test_add_func ("/idempotency/survives-crash", test_survives_crash);

  status = g_test_run ();
  od_test_server_free (server);
  return status;
}

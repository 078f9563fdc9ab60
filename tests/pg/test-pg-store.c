/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The PostgreSQL store, driven directly through the OdStore interface:
 * every command path, idempotency, constraints enforced by the database
 * with two store objects (two "instances") racing on one database, the
 * prev chain, writers that hold the append transaction open or roll it
 * back, LISTEN/NOTIFY across store objects, and schema migration. */
#include <string.h>

#include "od-store.h"
#include "od-store-postgres.h"
#include "od-pg-test.h"

typedef struct
{
  char    *dbname;
  char    *uri;
  OdStore *store;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  f->dbname = od_pg_test_create_db ();
  f->uri = od_pg_test_uri (f->dbname);
  f->store = od_store_open (f->uri, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f->store);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_clear_object (&f->store);
  od_pg_test_drop_db (f->dbname);
  g_free (f->dbname);
  g_free (f->uri);
}

/* Commands ------------------------------------------------------------- */

static char *
new_id (void)
{
  return od_uuid_v7_new ();
}

static OdCommand *
cmd_create (const char *id)
{
  OdCommand *c = od_command_new (OD_COMMAND_CREATE_ORDER, id);

  c->customer_name = g_strdup ("Ada \"Quote\" Lovelace\\");
  c->customer_email = g_strdup ("ada@example.com");
  c->currency = g_strdup ("EUR");
  return c;
}

static OdCommand *
cmd_add (const char *id,
         const char *sku,
         gint64      quantity,
         gint64      price)
{
  OdCommand *c = od_command_new (OD_COMMAND_ADD_ITEM, id);

  c->sku = g_strdup (sku);
  c->name = g_strdup ("Blue mug, {large}");
  c->quantity = quantity;
  c->unit_price_cents = price;
  return c;
}

static OdCommand *
cmd_simple (OdCommandType type,
            const char   *id)
{
  OdCommand *c = od_command_new (type, id);

  switch (type)
    {
    case OD_COMMAND_REMOVE_ITEM:
      c->sku = g_strdup ("MUG");
      break;
    case OD_COMMAND_SHIP_ORDER:
      c->carrier = g_strdup ("DHL");
      c->tracking_number = g_strdup ("TRACK-1");
      break;
    case OD_COMMAND_CANCEL_ORDER:
      c->reason = g_strdup ("customer asked");
      break;
    default:
      break;
    }
  return c;
}

static OdCommand *
expect (OdCommand *c,
        gint64     version)
{
  c->has_expected_version = TRUE;
  c->expected_version = version;
  return c;
}

static OdJob *
make_job (OdCommand  *command,
          const char *actor,
          const char *key)
{
  g_autofree char *body = od_command_to_json (command);

  return od_job_new (command, actor, key, body, strlen (body));
}

/* Runs one command alone in a batch; returns the job (caller frees). */
static OdJob *
run (OdStore    *store,
     OdCommand  *command,
     const char *key)
{
  g_autoptr(GError) error = NULL;
  OdJob *job = make_job (command, "alice", key);

  g_assert_true (od_store_execute (store, &job, 1, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (job->status, !=, 0);
  g_assert_nonnull (job->response);
  return job;
}

static void
assert_problem (OdJob      *job,
                guint       status,
                const char *code)
{
  g_autofree char *needle = g_strdup_printf ("\"code\":\"%s\"", code);

  g_assert_cmpuint (job->status, ==, status);
  if (strstr (job->response, needle) == NULL)
    g_error ("expected %s in %s", needle, job->response);
  g_assert_cmpint (job->position, ==, 0);
}

static GPtrArray *
read_all (OdStore *store,
          gint64  *head)
{
  g_autoptr(GError) error = NULL;
  GPtrArray *events = od_store_read_events (store, 0, 100000, head, &error);

  g_assert_no_error (error);
  g_assert_nonnull (events);
  return events;
}

/* The contract's chain: strictly increasing positions, each prev the one
 * before, the first prev 0, and head the last position. */
static void
assert_chain (GPtrArray *events,
              gint64     head)
{
  gint64 last = 0;

  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *e = g_ptr_array_index (events, i);

      g_assert_cmpint (e->prev, ==, last);
      g_assert_cmpint (e->position, >, last);
      last = e->position;
    }
  g_assert_cmpint (head, ==, last);
}

/* Tests ---------------------------------------------------------------- */

static void
test_commands (Fixture       *f,
               gconstpointer  data)
{
  g_autofree char *id = new_id ();
  g_autofree char *other = new_id ();
  g_autofree char *missing = new_id ();
  g_autoptr(GPtrArray) events = NULL;
  gint64 head = -1;
  OdJob *job;
  OdEvent *e;

  g_assert_true (od_store_get_head (f->store, &head, NULL));
  g_assert_cmpint (head, ==, 0);
  events = read_all (f->store, &head);
  g_assert_cmpuint (events->len, ==, 0);
  g_assert_cmpint (head, ==, 0);
  g_clear_pointer (&events, g_ptr_array_unref);

  job = run (f->store, cmd_create (id), "k1");
  g_assert_cmpuint (job->status, ==, 200);
  g_assert_cmpint (job->version, ==, 1);
  g_assert_cmpint (job->position, >, 0);
  g_assert_false (job->replayed);
  od_job_free (job);

  job = run (f->store, cmd_create (id), "k2");
  assert_problem (job, 409, "order_exists");
  g_assert_nonnull (strstr (job->response, "\"current_version\":1"));
  od_job_free (job);

  job = run (f->store, cmd_add (missing, "MUG", 1, 100), "k3");
  assert_problem (job, 404, "not_found");
  od_job_free (job);

  job = run (f->store, expect (cmd_add (id, "MUG", 2, 1299), 1), "k4");
  g_assert_cmpuint (job->status, ==, 200);
  g_assert_cmpint (job->version, ==, 2);
  od_job_free (job);

  job = run (f->store, expect (cmd_add (id, "MUG", 1, 1299), 1), "k5");
  assert_problem (job, 409, "version_conflict");
  g_assert_nonnull (strstr (job->response, "\"current_version\":2"));
  od_job_free (job);

  job = run (f->store, cmd_add (id, "MUG", 3, 1000), "k6");
  g_assert_cmpuint (job->status, ==, 200);
  g_assert_cmpint (job->version, ==, 3);
  od_job_free (job);

  job = run (f->store, cmd_add (id, "MUG", 9996, 1000), "k7");
  assert_problem (job, 422, "invalid_command");
  od_job_free (job);

  job = run (f->store, cmd_add (id, "PLATE", 1, 500), "k8");
  g_assert_cmpuint (job->status, ==, 200);
  od_job_free (job);

  job = run (f->store, cmd_simple (OD_COMMAND_SHIP_ORDER, id), "k9");
  assert_problem (job, 409, "invalid_state");
  od_job_free (job);

  job = run (f->store, cmd_simple (OD_COMMAND_REMOVE_ITEM, id), "k10");
  g_assert_cmpuint (job->status, ==, 200);
  g_assert_cmpint (job->version, ==, 5);
  od_job_free (job);

  job = run (f->store, cmd_simple (OD_COMMAND_PLACE_ORDER, id), "k11");
  g_assert_cmpuint (job->status, ==, 200);
  od_job_free (job);

  job = run (f->store, cmd_add (id, "CUP", 1, 1), "k12");
  assert_problem (job, 409, "invalid_state");
  od_job_free (job);

  job = run (f->store, cmd_simple (OD_COMMAND_SHIP_ORDER, id), "k13");
  g_assert_cmpuint (job->status, ==, 200);
  od_job_free (job);

  job = run (f->store, cmd_simple (OD_COMMAND_CANCEL_ORDER, id), "k14");
  assert_problem (job, 409, "invalid_state");
  od_job_free (job);

  /* The demo's own commands carry no key and are not stored. */
  job = run (f->store, cmd_simple (OD_COMMAND_MARK_DELIVERED, id), NULL);
  g_assert_cmpuint (job->status, ==, 200);
  g_assert_cmpint (job->version, ==, 8);
  od_job_free (job);

  job = run (f->store, cmd_create (other), "k15");
  od_job_free (job);
  job = run (f->store, cmd_simple (OD_COMMAND_PLACE_ORDER, other), "k16");
  assert_problem (job, 409, "invalid_state");
  od_job_free (job);
  job = run (f->store, cmd_simple (OD_COMMAND_CANCEL_ORDER, other), "k17");
  g_assert_cmpuint (job->status, ==, 200);
  od_job_free (job);

  events = read_all (f->store, &head);
  assert_chain (events, head);
  g_assert_cmpuint (events->len, ==, 10);
  {
    const char *types[] = { "OrderCreated", "ItemAdded", "ItemAdded", "ItemAdded", "ItemRemoved",
                            "OrderPlaced", "OrderShipped", "OrderDelivered", "OrderCreated",
                            "OrderCancelled" };

    for (guint i = 0; i < events->len; i++)
      {
        e = g_ptr_array_index (events, i);
        g_assert_cmpstr (e->type, ==, types[i]);
        g_assert_cmpstr (e->actor, ==, "alice");
        g_assert_cmpstr (e->order_id, ==, i < 8 ? id : other);
        g_assert_cmpint (e->version, ==, i < 8 ? i + 1 : i - 7);
        g_assert_true (g_regex_match_simple ("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$",
                                             e->recorded_at, 0, 0));
      }
  }
  /* The text of data is kept as decided, escapes included. */
  e = g_ptr_array_index (events, 0);
  g_assert_cmpstr (e->data, ==,
                   "{\"customer_name\":\"Ada \\\"Quote\\\" Lovelace\\\\\","
                   "\"customer_email\":\"ada@example.com\",\"currency\":\"EUR\"}");
  /* The mugs were removed; the plate (1 × 500) is what was placed. */
  e = g_ptr_array_index (events, 5);
  g_assert_cmpstr (e->data, ==, "{\"total_cents\":500,\"item_count\":1}");

  /* Paging: after and limit, with prev set on the first of a page. */
  {
    g_autoptr(GPtrArray) page = NULL;
    OdEvent *third = g_ptr_array_index (events, 2);
    OdEvent *second = g_ptr_array_index (events, 1);

    page = od_store_read_events (f->store, second->position, 3, &head, NULL);
    g_assert_cmpuint (page->len, ==, 3);
    e = g_ptr_array_index (page, 0);
    g_assert_cmpint (e->position, ==, third->position);
    g_assert_cmpint (e->prev, ==, second->position);
    g_clear_pointer (&page, g_ptr_array_unref);

    page = od_store_read_events (f->store, head, 10, &head, NULL);
    g_assert_cmpuint (page->len, ==, 0);
  }
}

static void
test_recorded_at (Fixture       *f,
                  gconstpointer  data)
{
  g_autofree char *id = new_id ();
  g_autoptr(GPtrArray) events = NULL;
  OdJob *job = make_job (cmd_create (id), "demo", NULL);
  gint64 head;

  /* Demo seeding backdates its events. */
  job->recorded_at = g_strdup ("2026-11-05T08:09:10.123Z");
  g_assert_true (od_store_execute (f->store, &job, 1, NULL));
  g_assert_cmpuint (job->status, ==, 200);
  od_job_free (job);

  events = read_all (f->store, &head);
  g_assert_cmpuint (events->len, ==, 1);
  g_assert_cmpstr (((OdEvent *) events->pdata[0])->recorded_at, ==, "2026-11-05T08:09:10.123Z");
  g_assert_cmpstr (((OdEvent *) events->pdata[0])->actor, ==, "demo");
}

static void
test_idempotency (Fixture       *f,
                  gconstpointer  data)
{
  g_autofree char *id = new_id ();
  g_autofree char *missing = new_id ();
  g_autofree char *first_response = NULL;
  g_autoptr(GPtrArray) events = NULL;
  g_autoptr(GError) error = NULL;
  gint64 head;
  OdJob *job;

  job = run (f->store, cmd_create (id), "key-1");
  g_assert_cmpuint (job->status, ==, 200);
  first_response = g_strdup (job->response);
  od_job_free (job);

  /* Same key, same body: the first answer again, nothing appended. */
  job = run (f->store, cmd_create (id), "key-1");
  g_assert_cmpuint (job->status, ==, 200);
  g_assert_true (job->replayed);
  g_assert_cmpstr (job->response, ==, first_response);
  g_assert_cmpint (job->version, ==, 1);
  g_assert_cmpint (job->position, >, 0);
  od_job_free (job);

  /* Same key, another body. */
  job = run (f->store, cmd_add (id, "MUG", 1, 1), "key-1");
  assert_problem (job, 422, "idempotency_key_reused");
  g_assert_false (job->replayed);
  od_job_free (job);

  /* The same key of another token is another key. */
  job = make_job (cmd_create (id), "bob", "key-1");
  g_assert_true (od_store_execute (f->store, &job, 1, NULL));
  assert_problem (job, 409, "order_exists");
  g_assert_false (job->replayed);
  od_job_free (job);

  /* A refusal that depends on the log is stored and replayed, even once
   * the log has changed. */
  job = run (f->store, cmd_add (missing, "MUG", 1, 1), "key-2");
  assert_problem (job, 404, "not_found");
  od_job_free (job);
  od_job_free (run (f->store, cmd_create (missing), "key-3"));
  job = run (f->store, cmd_add (missing, "MUG", 1, 1), "key-2");
  assert_problem (job, 404, "not_found");
  g_assert_true (job->replayed);
  od_job_free (job);

  /* Keys are in the database: a new store object (a restart, or another
   * instance) replays them. */
  {
    g_autoptr(OdStore) again = od_store_open (f->uri, &error);

    g_assert_no_error (error);
    job = run (again, cmd_create (id), "key-1");
    g_assert_true (job->replayed);
    g_assert_cmpstr (job->response, ==, first_response);
    od_job_free (job);
  }

  /* One key twice in one batch: the second replays the first. */
  {
    g_autofree char *third = new_id ();
    OdJob *jobs[3];

    jobs[0] = make_job (cmd_create (third), "alice", "key-4");
    jobs[1] = make_job (cmd_create (third), "alice", "key-4");
    jobs[2] = make_job (cmd_add (third, "X", 1, 1), "alice", "key-4");
    g_assert_true (od_store_execute (f->store, jobs, 3, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (jobs[0]->status, ==, 200);
    g_assert_false (jobs[0]->replayed);
    g_assert_cmpuint (jobs[1]->status, ==, 200);
    g_assert_true (jobs[1]->replayed);
    g_assert_cmpstr (jobs[1]->response, ==, jobs[0]->response);
    g_assert_cmpint (jobs[1]->position, ==, jobs[0]->position);
    assert_problem (jobs[2], 422, "idempotency_key_reused");
    for (guint i = 0; i < 3; i++)
      od_job_free (jobs[i]);
  }

  events = read_all (f->store, &head);
  assert_chain (events, head);
  g_assert_cmpuint (events->len, ==, 3);
}

static void
test_batch (Fixture       *f,
            gconstpointer  data)
{
  g_autofree char *id = new_id ();
  g_autoptr(GPtrArray) events = NULL;
  g_autoptr(GError) error = NULL;
  OdJob *jobs[6];
  gint64 head;

  /* Later jobs see earlier ones: one order touched five times. */
  jobs[0] = make_job (cmd_create (id), "alice", "b1");
  jobs[1] = make_job (expect (cmd_add (id, "MUG", 2, 100), 1), "alice", "b2");
  jobs[2] = make_job (expect (cmd_add (id, "MUG", 2, 100), 1), "alice", "b3");
  jobs[3] = make_job (cmd_add (id, "MUG", 3, 200), "alice", "b4");
  jobs[4] = make_job (cmd_simple (OD_COMMAND_PLACE_ORDER, id), "alice", "b5");
  jobs[5] = make_job (cmd_simple (OD_COMMAND_PLACE_ORDER, id), "alice", NULL);
  g_assert_true (od_store_execute (f->store, jobs, G_N_ELEMENTS (jobs), &error));
  g_assert_no_error (error);
  g_assert_cmpuint (jobs[0]->status, ==, 200);
  g_assert_cmpuint (jobs[1]->status, ==, 200);
  g_assert_cmpint (jobs[1]->version, ==, 2);
  assert_problem (jobs[2], 409, "version_conflict");
  g_assert_cmpuint (jobs[3]->status, ==, 200);
  g_assert_cmpuint (jobs[4]->status, ==, 200);
  g_assert_cmpint (jobs[4]->version, ==, 4);
  assert_problem (jobs[5], 409, "invalid_state");
  g_assert_cmpint (jobs[0]->position, <, jobs[1]->position);
  g_assert_cmpint (jobs[1]->position, <, jobs[3]->position);
  g_assert_cmpint (jobs[3]->position, <, jobs[4]->position);
  for (guint i = 0; i < G_N_ELEMENTS (jobs); i++)
    od_job_free (jobs[i]);

  events = read_all (f->store, &head);
  assert_chain (events, head);
  g_assert_cmpuint (events->len, ==, 4);
  g_assert_cmpstr (((OdEvent *) events->pdata[3])->data, ==,
                   "{\"total_cents\":1000,\"item_count\":5}");
}

/* Two store objects on one database are two server instances.  Each
 * thread plays one instance's writer thread. */
typedef struct
{
  OdStore    *store;
  char      **ids;
  guint       n_ids;
  guint       rounds;
  guint       thread;
  gint64     *known;      /* per order: newest version this thread saw */
  GPtrArray  *successes;  /* "order_id/version" */
  guint       conflicts;
  gint       *ready;      /* start barrier */
} Racer;

/* Both "instances" start at the same moment, so that they really race. */
static void
barrier (gint *ready,
         gint  n)
{
  g_atomic_int_inc (ready);
  while (g_atomic_int_get (ready) < n)
    g_thread_yield ();
}

static gpointer
racer_thread (gpointer data)
{
  Racer *r = data;

  barrier (r->ready, 2);
  for (guint round = 0; round < r->rounds; round++)
    {
      OdJob *jobs[4];
      guint n = 1 + round % 4;

      for (guint j = 0; j < n; j++)
        {
          guint o = (round * 7 + j * 3 + r->thread) % r->n_ids;
          g_autofree char *sku = g_strdup_printf ("S%u", (round + j) % 150);
          g_autofree char *key = g_strdup_printf ("racer-%u-%u-%u", r->thread, round, j);
          OdCommand *c = cmd_add (r->ids[o], sku, 1, 1);

          /* Half the commands race with expected_version, half without. */
          if (round % 2 == 0)
            expect (c, r->known[o]);
          jobs[j] = make_job (c, "alice", key);
        }
      g_assert_true (od_store_execute (r->store, jobs, n, NULL));
      for (guint j = 0; j < n; j++)
        {
          OdJob *job = jobs[j];
          guint o = (round * 7 + j * 3 + r->thread) % r->n_ids;

          if (job->status == 200)
            {
              g_ptr_array_add (r->successes,
                               g_strdup_printf ("%s/%" G_GINT64_FORMAT, r->ids[o], job->version));
              r->known[o] = job->version;
            }
          else
            {
              const char *cv = strstr (job->response, "\"current_version\":");

              assert_problem (job, 409, "version_conflict");
              g_assert_nonnull (cv);
              r->known[o] = g_ascii_strtoll (cv + strlen ("\"current_version\":"), NULL, 10);
              r->conflicts++;
            }
          od_job_free (job);
        }
    }
  return NULL;
}

static void
test_race (Fixture       *f,
           gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OdStore) other = od_store_open (f->uri, &error);
  g_autoptr(GPtrArray) events = NULL;
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  char *ids[5];
  Racer racers[2];
  GThread *threads[2];
  guint total = 0, conflicts = 0;
  gint ready = 0;
  gint64 head;

  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    {
      ids[i] = new_id ();
      od_job_free (run (f->store, cmd_create (ids[i]), NULL));
    }
  for (guint t = 0; t < 2; t++)
    {
      racers[t] = (Racer) { t == 0 ? f->store : other, ids, G_N_ELEMENTS (ids), 120, t,
                            g_new0 (gint64, G_N_ELEMENTS (ids)),
                            g_ptr_array_new_with_free_func (g_free), 0, &ready };
      for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
        racers[t].known[i] = 1;
    }
  for (guint t = 0; t < 2; t++)
    threads[t] = g_thread_new ("racer", racer_thread, &racers[t]);
  for (guint t = 0; t < 2; t++)
    g_thread_join (threads[t]);

  /* No (order, version) was acknowledged twice, and every acknowledged
   * one is in the log. */
  for (guint t = 0; t < 2; t++)
    {
      for (guint i = 0; i < racers[t].successes->len; i++)
        {
          const char *s = g_ptr_array_index (racers[t].successes, i);

          g_assert_false (g_hash_table_contains (seen, s));
          g_hash_table_add (seen, (gpointer) s);
        }
      total += racers[t].successes->len;
      conflicts += racers[t].conflicts;
    }
  events = read_all (f->store, &head);
  assert_chain (events, head);
  g_assert_cmpuint (events->len, ==, total + G_N_ELEMENTS (ids));
  for (guint i = 0; i < events->len; i++)
    {
      OdEvent *e = g_ptr_array_index (events, i);
      g_autofree char *s = g_strdup_printf ("%s/%" G_GINT64_FORMAT, e->order_id, e->version);

      if (e->version > 1)
        g_assert_true (g_hash_table_contains (seen, s));
    }
  /* The two writers really raced. */
  g_test_message ("%u successes, %u version conflicts", total, conflicts);
  g_assert_cmpuint (conflicts, >, 0);

  for (guint t = 0; t < 2; t++)
    {
      g_free (racers[t].known);
      g_ptr_array_unref (racers[t].successes);
    }
  for (guint i = 0; i < G_N_ELEMENTS (ids); i++)
    g_free (ids[i]);
}

/* The same keys sent through both instances at once: each key is accepted
 * once, the other request replays that answer. */
typedef struct
{
  OdStore *store;
  char   **ids;
  guint    n;
  OdJob  **jobs;
  gboolean down;
  gint    *ready;
} KeyRacer;

static gpointer
key_racer_thread (gpointer data)
{
  KeyRacer *r = data;

  barrier (r->ready, 2);
  /* One instance goes up the list, the other down: they meet in the
   * middle, where both send the same keys at the same time. */
  for (guint b = 0; b < r->n / 5; b++)
    {
      guint i = r->down ? r->n - 5 * (b + 1) : 5 * b;

      for (guint j = 0; j < 5; j++)
        {
          g_autofree char *key = g_strdup_printf ("create-%u", i + j);

          r->jobs[i + j] = make_job (cmd_create (r->ids[i + j]), "alice", key);
        }
      g_assert_true (od_store_execute (r->store, r->jobs + i, 5, NULL));
    }
  return NULL;
}

static void
test_key_race (Fixture       *f,
               gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OdStore) other = od_store_open (f->uri, &error);
  g_autoptr(GPtrArray) events = NULL;
  const guint n = 200;
  char **ids = g_new0 (char *, n + 1);
  KeyRacer racers[2];
  GThread *threads[2];
  guint replays = 0;
  gint ready = 0;
  gint64 head;

  g_assert_no_error (error);
  for (guint i = 0; i < n; i++)
    ids[i] = new_id ();
  for (guint t = 0; t < 2; t++)
    {
      racers[t] = (KeyRacer) { t == 0 ? f->store : other, ids, n, g_new0 (OdJob *, n), t == 1, &ready };
      threads[t] = g_thread_new ("key-racer", key_racer_thread, &racers[t]);
    }
  for (guint t = 0; t < 2; t++)
    g_thread_join (threads[t]);

  for (guint i = 0; i < n; i++)
    {
      OdJob *a = racers[0].jobs[i];
      OdJob *b = racers[1].jobs[i];

      g_assert_cmpuint (a->status, ==, 200);
      g_assert_cmpuint (b->status, ==, 200);
      g_assert_cmpstr (a->response, ==, b->response);
      g_assert_true (a->replayed != b->replayed);
      replays += a->replayed;
      od_job_free (a);
      od_job_free (b);
    }
  /* Which side wins a key depends on timing; that each key was accepted
   * once and replayed once is what must hold. */
  g_test_message ("instance A replayed %u of %u keys", replays, n);
  events = read_all (f->store, &head);
  assert_chain (events, head);
  g_assert_cmpuint (events->len, ==, n);
  g_free (racers[0].jobs);
  g_free (racers[1].jobs);
  g_strfreev (ids);
}

/* Readers poll while writers commit; each reader must see the chain with
 * no gap: every event's prev is the last position it saw. */
typedef struct
{
  OdStore  *store;
  gint      stop;
  gint64    last;
  guint     count;
  GHashTable *orders; /* order ids seen */
} Poller;

static gpointer
poller_thread (gpointer data)
{
  Poller *p = data;

  for (;;)
    {
      gboolean stopping = g_atomic_int_get (&p->stop);
      g_autoptr(GPtrArray) page = NULL;
      g_autoptr(GError) error = NULL;
      gint64 head = 0;

      page = od_store_read_events (p->store, p->last, 7, &head, &error);
      g_assert_no_error (error);
      for (guint i = 0; i < page->len; i++)
        {
          OdEvent *e = g_ptr_array_index (page, i);

          if (e->prev != p->last)
            g_error ("reader after %" G_GINT64_FORMAT " got %" G_GINT64_FORMAT " with prev %"
                     G_GINT64_FORMAT, p->last, e->position, e->prev);
          p->last = e->position;
          p->count++;
          g_hash_table_add (p->orders, g_strdup (e->order_id));
        }
      g_assert_cmpint (head, >=, p->last);
      if (page->len == 0)
        {
          /* An empty page means the reader has everything up to head. */
          g_assert_cmpint (head, ==, p->last);
          if (stopping)
            break;
          g_usleep (2000);
        }
    }
  return NULL;
}

typedef struct
{
  OdStore   *store;
  gint       stop;
  GPtrArray *acked;  /* order ids acknowledged */
} Writer;

static gpointer
writer_thread (gpointer data)
{
  Writer *w = data;

  while (!g_atomic_int_get (&w->stop))
    {
      OdJob *jobs[3];

      for (guint j = 0; j < G_N_ELEMENTS (jobs); j++)
        {
          g_autofree char *id = new_id ();

          jobs[j] = make_job (cmd_create (id), "alice", NULL);
        }
      g_assert_true (od_store_execute (w->store, jobs, G_N_ELEMENTS (jobs), NULL));
      for (guint j = 0; j < G_N_ELEMENTS (jobs); j++)
        {
          g_assert_cmpuint (jobs[j]->status, ==, 200);
          g_ptr_array_add (w->acked, g_strdup (jobs[j]->command->order_id));
          od_job_free (jobs[j]);
        }
      g_usleep (3000);
    }
  return NULL;
}

static void
test_foreign_writers (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OdStore) other = od_store_open (f->uri, &error);
  g_autoptr(GPtrArray) committed = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) rolled_back = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GPtrArray) events = NULL;
  PGconn *conn = od_pg_test_connect (f->dbname);
  Writer writer = { f->store, 0, g_ptr_array_new_with_free_func (g_free) };
  Poller pollers[2] = {
    { f->store, 0, 0, 0, g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) },
    { other, 0, 0, 0, g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) },
  };
  GThread *writer_t, *poller_t[2];
  struct { gboolean lock, commit; guint hold_ms; } plan[] = {
    { TRUE, TRUE, 1500 }, { TRUE, FALSE, 1000 }, { FALSE, TRUE, 1000 },
    { FALSE, FALSE, 700 }, { TRUE, TRUE, 300 }, { FALSE, TRUE, 300 },
  };
  gint64 head;

  g_assert_no_error (error);
  writer_t = g_thread_new ("writer", writer_thread, &writer);
  for (guint i = 0; i < 2; i++)
    poller_t[i] = g_thread_new ("poller", poller_thread, &pollers[i]);

  for (guint i = 0; i < G_N_ELEMENTS (plan); i++)
    {
      char *id = od_pg_test_foreign_append (conn, plan[i].lock, plan[i].commit, plan[i].hold_ms);

      g_ptr_array_add (plan[i].commit ? committed : rolled_back, id);
      g_usleep (50000);
    }

  g_atomic_int_set (&writer.stop, 1);
  g_thread_join (writer_t);
  for (guint i = 0; i < 2; i++)
    {
      g_atomic_int_set (&pollers[i].stop, 1);
      g_thread_join (poller_t[i]);
    }

  events = read_all (f->store, &head);
  assert_chain (events, head);
  g_test_message ("%u events, %u acknowledged by the store", events->len, writer.acked->len);
  g_assert_cmpuint (events->len, ==, writer.acked->len + committed->len);
  for (guint i = 0; i < 2; i++)
    {
      g_assert_cmpuint (pollers[i].count, ==, events->len);
      g_assert_cmpint (pollers[i].last, ==, head);
      for (guint j = 0; j < writer.acked->len; j++)
        g_assert_true (g_hash_table_contains (pollers[i].orders, writer.acked->pdata[j]));
      for (guint j = 0; j < committed->len; j++)
        g_assert_true (g_hash_table_contains (pollers[i].orders, committed->pdata[j]));
      for (guint j = 0; j < rolled_back->len; j++)
        g_assert_false (g_hash_table_contains (pollers[i].orders, rolled_back->pdata[j]));
      g_hash_table_unref (pollers[i].orders);
    }
  g_ptr_array_unref (writer.acked);
  PQfinish (conn);
}

/* A writer that skips the append lock wins a race on the very order and
 * key the store is deciding: its uncommitted event (version 2) and stored
 * answer make the store's insert wait, then fail on a unique constraint
 * once it commits.  The store must decide the batch again and give each
 * job the answer it would have had: a version conflict, a replay of the
 * other writer's answer, a success on the next version — never a 500. */
typedef struct
{
  OdStore *store;
  OdJob  **jobs;
  guint    n;
  gboolean ok;
} Exec;

static gpointer
exec_thread (gpointer data)
{
  Exec *e = data;

  e->ok = od_store_execute (e->store, e->jobs, e->n, NULL);
  return NULL;
}

static void
test_lost_race (Fixture       *f,
                gconstpointer  data)
{
  g_autofree char *id = new_id ();
  g_autoptr(GPtrArray) events = NULL;
  PGconn *conn = od_pg_test_connect (f->dbname);
  OdJob *jobs[3];
  Exec exec;
  GThread *thread;
  char hex[65];
  g_autofree char *stolen_response = NULL;
  g_autofree char *position_s = NULL;
  gint64 head, position;

  od_job_free (run (f->store, cmd_create (id), NULL));
  jobs[0] = make_job (expect (cmd_add (id, "A", 1, 1), 1), "alice", "lr-1");
  jobs[1] = make_job (cmd_add (id, "B", 1, 1), "alice", "lr-stolen");
  jobs[2] = make_job (cmd_add (id, "C", 1, 1), "alice", "lr-3");
  for (guint b = 0; b < 32; b++)
    g_snprintf (hex + 2 * b, 3, "%02x", jobs[1]->body_sha256[b]);

  position = od_pg_test_scalar (conn, "SELECT nextval('event_position')");
  position_s = g_strdup_printf ("%" G_GINT64_FORMAT, position);
  stolen_response = g_strdup_printf ("{\"order_id\":\"%s\",\"version\":2,\"position\":%s}", id,
                                     position_s);
  {
    const char *values[] = { position_s, id };

    PQclear (od_pg_test_exec (conn, "BEGIN", 0, NULL));
    PQclear (od_pg_test_exec (conn,
                              "INSERT INTO events (position, prev, order_id, version, type, "
                              "  recorded_at, actor, data) "
                              "SELECT $1::bigint, max(position), $2, 2, 'ItemAdded', now(), 'alice', "
                              "  '{\"sku\":\"B\",\"name\":\"Blue mug, {large}\",\"quantity\":1,\"unit_price_cents\":1}' "
                              "FROM events",
                              2, values));
    PQclear (od_pg_test_exec (conn,
                              "INSERT INTO idempotency_keys (actor, key, body_sha256, status, "
                              "  response, version, position) "
                              "VALUES ('alice', 'lr-stolen', decode($2, 'hex'), 200, $3, 2, $1::bigint)",
                              3, (const char *const[]) { position_s, hex, stolen_response }));
  }

  exec = (Exec) { f->store, jobs, 3, FALSE };
  thread = g_thread_new ("exec", exec_thread, &exec);
  g_usleep (500000);
  PQclear (od_pg_test_exec (conn, "COMMIT", 0, NULL));
  g_thread_join (thread);
  g_assert_true (exec.ok);

  assert_problem (jobs[0], 409, "version_conflict");
  g_assert_nonnull (strstr (jobs[0]->response, "\"current_version\":2"));
  g_assert_cmpuint (jobs[1]->status, ==, 200);
  g_assert_true (jobs[1]->replayed);
  g_assert_cmpstr (jobs[1]->response, ==, stolen_response);
  g_assert_cmpuint (jobs[2]->status, ==, 200);
  g_assert_false (jobs[2]->replayed);
  g_assert_cmpint (jobs[2]->version, ==, 3);
  for (guint i = 0; i < 3; i++)
    od_job_free (jobs[i]);

  events = read_all (f->store, &head);
  assert_chain (events, head);
  g_assert_cmpuint (events->len, ==, 3);
  PQfinish (conn);
}

/* Keys are kept 48 hours, then purged; a purged key may be used again. */
static void
test_purge (Fixture       *f,
            gconstpointer  data)
{
  g_autofree char *id = new_id ();
  g_autoptr(GError) error = NULL;
  g_autoptr(OdStore) other = NULL;
  PGconn *conn = od_pg_test_connect (f->dbname);
  OdJob *job;

  od_job_free (run (f->store, cmd_create (id), "old-key"));
  od_job_free (run (f->store, cmd_add (id, "X", 1, 1), "young-key"));
  PQclear (od_pg_test_exec (conn,
                            "UPDATE idempotency_keys SET created_at = now() - interval '49 hours' "
                            "WHERE key = 'old-key'", 0, NULL));
  PQclear (od_pg_test_exec (conn,
                            "UPDATE idempotency_keys SET created_at = now() - interval '47 hours' "
                            "WHERE key = 'young-key'", 0, NULL));

  /* A new store object purges before its first batch. */
  other = od_store_open (f->uri, &error);
  g_assert_no_error (error);
  job = run (other, cmd_create (id), "old-key");
  assert_problem (job, 409, "order_exists");
  g_assert_false (job->replayed);
  od_job_free (job);
  job = run (other, cmd_add (id, "X", 1, 1), "young-key");
  g_assert_true (job->replayed);
  od_job_free (job);
  g_assert_cmpint (od_pg_test_scalar (conn, "SELECT count(*) FROM idempotency_keys"), ==, 2);
  PQfinish (conn);
}

static void
count_signal (OdStore *store,
              gint    *count)
{
  g_atomic_int_inc (count);
}

static gboolean
wait_for_count (gint *count,
                gint  at_least)
{
  for (guint i = 0; i < 500; i++)
    {
      if (g_atomic_int_get (count) >= at_least)
        return TRUE;
      g_usleep (10000);
    }
  return FALSE;
}

static void
test_notify (Fixture       *f,
             gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(OdStore) other = od_store_open (f->uri, &error);
  g_autofree char *id = new_id ();
  g_autofree char *id2 = new_id ();
  gint mine = 0, theirs = 0;
  OdJob *job;

  g_assert_no_error (error);
  /* The listener of a new store reports once when it starts listening. */
  g_signal_connect (f->store, "appended", G_CALLBACK (count_signal), &mine);
  g_signal_connect (other, "appended", G_CALLBACK (count_signal), &theirs);
  g_usleep (300000);
  g_atomic_int_set (&mine, 0);
  g_atomic_int_set (&theirs, 0);

  /* The appending store tells its own subscribers before execute
   * returns; the other learns it by NOTIFY. */
  job = run (f->store, cmd_create (id), "n1");
  g_assert_cmpint (g_atomic_int_get (&mine), >=, 1);
  od_job_free (job);
  g_assert_true (wait_for_count (&theirs, 1));

  /* A batch that appends nothing notifies nobody. */
  g_usleep (200000);
  g_atomic_int_set (&mine, 0);
  g_atomic_int_set (&theirs, 0);
  job = run (other, cmd_create (id), "n2");
  assert_problem (job, 409, "order_exists");
  od_job_free (job);
  g_usleep (300000);
  g_assert_cmpint (g_atomic_int_get (&mine), ==, 0);
  g_assert_cmpint (g_atomic_int_get (&theirs), ==, 0);

  /* After every connection of the database was killed, the store
   * reconnects: writes, reads and the listener work again. */
  {
    PGconn *conn = od_pg_test_connect (f->dbname);
    g_autoptr(GPtrArray) events = NULL;
    gint64 head;

    g_assert_cmpint (od_pg_test_scalar (conn,
                                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"),
                     >=, 4);
    PQfinish (conn);
    g_usleep (200000);
    g_atomic_int_set (&mine, 0);
    job = run (other, cmd_create (id2), "n3");
    g_assert_cmpuint (job->status, ==, 200);
    od_job_free (job);
    g_assert_true (wait_for_count (&mine, 1));
    events = read_all (f->store, &head);
    assert_chain (events, head);
    g_assert_cmpuint (events->len, ==, 2);
  }
}

typedef struct
{
  const char *uri;
  OdStore    *store;
} Opener;

static gpointer
opener_thread (gpointer data)
{
  Opener *o = data;
  g_autoptr(GError) error = NULL;

  o->store = od_store_open (o->uri, &error);
  g_assert_no_error (error);
  return NULL;
}

static void
test_migrate (void)
{
  g_autofree char *dbname = od_pg_test_create_db ();
  g_autofree char *uri = od_pg_test_uri (dbname);
  g_autoptr(GError) error = NULL;
  Opener openers[4];
  GThread *threads[4];
  OdStore *store;
  PGconn *conn;

  /* Instances starting together on an empty database. */
  for (guint i = 0; i < G_N_ELEMENTS (openers); i++)
    {
      openers[i] = (Opener) { uri, NULL };
      threads[i] = g_thread_new ("opener", opener_thread, &openers[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (openers); i++)
    {
      g_thread_join (threads[i]);
      g_assert_nonnull (openers[i].store);
      g_object_unref (openers[i].store);
    }

  conn = od_pg_test_connect (dbname);
  g_assert_cmpint (od_pg_test_scalar (conn, "SELECT count(*) FROM schema_version"), ==, 1);
  g_assert_cmpint (od_pg_test_scalar (conn, "SELECT max(version) FROM schema_version"), ==, 1);

  /* A database from a newer release is refused, not damaged. */
  PQclear (od_pg_test_exec (conn, "INSERT INTO schema_version VALUES (99)", 0, NULL));
  store = od_store_open (uri, &error);
  g_assert_null (store);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  PQfinish (conn);

  /* An unreachable database is an error at start. */
  store = od_store_open ("postgresql:///nosuchdb?host=/nonexistent&user=postgres", &error);
  g_assert_null (store);
  g_assert_nonnull (error);

  od_pg_test_drop_db (dbname);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  od_pg_test_host ();

#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/pg/store/commands", test_commands);
  ADD ("/pg/store/recorded-at", test_recorded_at);
  ADD ("/pg/store/idempotency", test_idempotency);
  ADD ("/pg/store/batch", test_batch);
  ADD ("/pg/store/race-versions", test_race);
  ADD ("/pg/store/race-keys", test_key_race);
  ADD ("/pg/store/foreign-writers", test_foreign_writers);
  ADD ("/pg/store/lost-race", test_lost_race);
  ADD ("/pg/store/purge", test_purge);
  ADD ("/pg/store/notify-reconnect", test_notify);
#undef ADD
  g_test_add_func ("/pg/store/migrate", test_migrate);

  return g_test_run ();
}

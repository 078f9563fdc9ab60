/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The SQLite store's writer decides the commands that reach it while it
 * decides a batch in the same transaction (od_store_execute_more): one
 * commit for all of them.  That must answer and store exactly what
 * deciding each command alone, in the same order, does: random commands
 * (some refused, some retried with their key, some reusing a key with
 * another body), random batches and random arrivals, compared job by job
 * and event by event with a second store fed one command a commit.  A
 * commit that fails takes the commands that joined it with it. */
#include "od-store.h"
#include "od-test-store.h"
#include "od-test-process.h" /* od_test_process_rmdir () */
#include "od-uuid.h"

#include <string.h>

#define N_SPECS 2500
#define RECORDED_AT "2026-12-06T12:00:00.000Z"

/* What a job is made of, so that the same job can be made twice. */
typedef struct
{
  OdCommandType type;
  char         *order_id;
  char         *key;   /* NULL: none */
  char         *body;  /* what the key's sum is of */
  guint         sku;
} Spec;

static void
spec_free (Spec *spec)
{
  g_free (spec->order_id);
  g_free (spec->key);
  g_free (spec->body);
  g_free (spec);
}

static OdJob *
job_of (const Spec *spec)
{
  OdCommand *command = od_command_new (spec->type, spec->order_id);
  OdJob *job;

  switch (spec->type)
    {
    case OD_COMMAND_CREATE_ORDER:
      command->customer_name = g_strdup ("Random \"Customer\"");
      command->customer_email = g_strdup ("random@example.com");
      command->currency = g_strdup ("EUR");
      break;
    case OD_COMMAND_ADD_ITEM:
      command->sku = g_strdup_printf ("SKU-%u", spec->sku);
      command->name = g_strdup ("Item ü");
      command->quantity = spec->sku + 1;
      command->unit_price_cents = 100 * spec->sku;
      break;
    default:
      command->text = g_strdup_printf ("note %u\n", spec->sku);
      break;
    }
  job = od_job_new (command, "test actor", spec->key, spec->body, strlen (spec->body));
  job->recorded_at = g_strdup (RECORDED_AT);
  return job;
}

/* Commands on a few orders, new and old: a second CreateOrder of an order
 * and items for an order never created are refused (no event); a fifth
 * carry no key, some repeat an earlier command with its key (a replay),
 * some reuse a key with another body (refused as such). */
static GPtrArray *
random_specs (GRand *rand,
              guint  n)
{
  GPtrArray *specs = g_ptr_array_new_with_free_func ((GDestroyNotify) spec_free);
  g_autoptr(GPtrArray) orders = g_ptr_array_new_with_free_func (g_free);

  while (specs->len < n)
    {
      Spec *spec = g_new0 (Spec, 1);
      guint pick = g_rand_int_range (rand, 0, 20);

      if (specs->len > 0 && pick < 2)
        {
          const Spec *earlier = g_ptr_array_index (specs, g_rand_int_range (rand, 0, specs->len));

          spec->type = earlier->type;
          spec->order_id = g_strdup (earlier->order_id);
          spec->key = g_strdup (earlier->key);
          spec->body = g_strdup (earlier->body);
          spec->sku = earlier->sku;
          /* Another body under the same key. */
          if (pick == 1 && spec->key != NULL)
            {
              g_free (spec->body);
              spec->body = g_strdup_printf ("other body %u", specs->len);
            }
          g_ptr_array_add (specs, spec);
          continue;
        }
      if (orders->len == 0 || pick < 6)
        {
          spec->type = OD_COMMAND_CREATE_ORDER;
          if (orders->len > 0 && pick == 5)
            spec->order_id = g_strdup (g_ptr_array_index (orders, g_rand_int_range (rand, 0, orders->len)));
          else
            {
              spec->order_id = od_uuid_v7_new ();
              g_ptr_array_add (orders, g_strdup (spec->order_id));
            }
        }
      else
        {
          spec->type = pick < 14 ? OD_COMMAND_ADD_ITEM : OD_COMMAND_ADD_ORDER_NOTE;
          spec->order_id = pick == 19 ? od_uuid_v7_new ()
                           : g_strdup (g_ptr_array_index (orders, g_rand_int_range (rand, 0, orders->len)));
        }
      spec->sku = g_rand_int_range (rand, 0, 5);
      spec->key = g_rand_int_range (rand, 0, 5) == 0 ? NULL : g_uuid_string_random ();
      spec->body = g_strdup_printf ("body %u", specs->len);
      g_ptr_array_add (specs, spec);
    }
  return specs;
}

typedef struct
{
  GRand     *rand;
  GPtrArray *specs;
  guint      next;      /* the next spec to make a job of */
  guint      calls;
  guint      appended;
} Arrivals;

/* Sometimes nothing more has come, sometimes one to three jobs. */
static guint
arrivals_more (GPtrArray *batch,
               gpointer   data)
{
  Arrivals *arrivals = data;
  guint n = g_rand_int_range (arrivals->rand, 0, 4);
  guint added = 0;

  arrivals->calls++;
  while (added < n && arrivals->next < arrivals->specs->len)
    {
      g_ptr_array_add (batch, job_of (g_ptr_array_index (arrivals->specs, arrivals->next++)));
      added++;
    }
  arrivals->appended += added;
  return added;
}

static void
assert_same_job (const OdJob *a,
                 const OdJob *b,
                 guint        index)
{
  if (a->status != b->status || g_strcmp0 (a->response, b->response) != 0
      || a->replayed != b->replayed || a->position != b->position || a->version != b->version
      || (a->position > 0 && a->prev != b->prev) || a->frame_len != b->frame_len
      || (a->frame_len > 0 && memcmp (a->frame, b->frame, a->frame_len) != 0))
    g_error ("job %u: %u %s (replayed %d, position %" G_GINT64_FORMAT ") against %u %s "
             "(replayed %d, position %" G_GINT64_FORMAT ")", index, a->status, a->response,
             a->replayed, a->position, b->status, b->response, b->replayed, b->position);
}

static gboolean
append_frames (gint64      first,
               gint64      last,
               guint       n,
               const char *frames,
               gsize       len,
               gpointer    user_data)
{
  g_string_append_len (user_data, frames, len);
  return TRUE;
}

static GString *
all_frames (OdStore *store)
{
  g_autoptr(GError) error = NULL;
  GString *out = g_string_new (NULL);
  gint64 head = 0;

  g_assert_true (od_store_get_head (store, &head, &error));
  g_assert_no_error (error);
  g_assert_true (od_store_visit_frames (store, 0, head, G_MAXUINT, NULL, append_frames, out,
                                        &error));
  g_assert_no_error (error);
  return out;
}

/* All the jobs left, at the first ask. */
static guint
arrivals_all (GPtrArray *batch,
              gpointer   data)
{
  Arrivals *arrivals = data;
  guint added = 0;

  arrivals->calls++;
  while (arrivals->next < arrivals->specs->len)
    {
      g_ptr_array_add (batch, job_of (g_ptr_array_index (arrivals->specs, arrivals->next++)));
      added++;
    }
  return added;
}

/* A batch whose commit fails on an event of a job that joined it: no job
 * of it has an answer, and the store is as before (what follows must
 * still match the store that never saw it). */
static void
failing_batch (OdStore    *store,
               const char *path,
               GRand      *rand)
{
  g_autoptr(GPtrArray) specs = g_ptr_array_new_with_free_func ((GDestroyNotify) spec_free);
  g_autoptr(GPtrArray) batch = g_ptr_array_new_with_free_func ((GDestroyNotify) od_job_free);
  g_autoptr(GError) error = NULL;
  g_autofree char *trigger = NULL;
  gint64 head = od_test_store_head (store);
  guint n = g_rand_int_range (rand, 3, 9);
  Arrivals arrivals = { rand, specs, 0, 0, 0 };

  /* New orders without keys: an event each, positions head + 1 on. */
  for (guint i = 0; i < n; i++)
    {
      Spec *spec = g_new0 (Spec, 1);

      spec->type = OD_COMMAND_CREATE_ORDER;
      spec->order_id = od_uuid_v7_new ();
      spec->body = g_strdup ("failing");
      g_ptr_array_add (specs, spec);
    }
  /* The batch starts with two; the event that fails is a later one's. */
  trigger = g_strdup_printf ("CREATE TRIGGER od_test_fail BEFORE INSERT ON events WHEN "
                             "NEW.position = %" G_GINT64_FORMAT " BEGIN SELECT "
                             "RAISE(ABORT, 'injected'); END",
                             head + g_rand_int_range (rand, 3, n + 1));
  od_test_store_sql (path, trigger);
  g_ptr_array_add (batch, job_of (g_ptr_array_index (specs, arrivals.next++)));
  g_ptr_array_add (batch, job_of (g_ptr_array_index (specs, arrivals.next++)));
  g_assert_false (od_store_execute_more (store, batch, arrivals_all, &arrivals, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  od_test_store_sql (path, "DROP TRIGGER od_test_fail");
  g_assert_cmpuint (arrivals.calls, ==, 1);
  g_assert_cmpuint (batch->len, ==, n);
  for (guint i = 0; i < batch->len; i++)
    {
      OdJob *job = g_ptr_array_index (batch, i);

      g_assert_cmpuint (job->status, ==, 0);
      g_assert_null (job->response);
      g_assert_null (job->frame);
    }
  g_assert_cmpint (od_test_store_head (store), ==, head);
}

static void
test_execute_more_random (void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed (g_test_rand_int ());
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("od-store-batch-XXXXXX", &error);
  g_autofree char *path_a = g_build_filename (dir, "batched.sqlite", NULL);
  g_autofree char *path_b = g_build_filename (dir, "alone.sqlite", NULL);
  g_autofree char *uri_a = g_strconcat ("sqlite:", path_a, NULL);
  g_autofree char *uri_b = g_strconcat ("sqlite:", path_b, NULL);
  g_autoptr(GPtrArray) specs = random_specs (rand, N_SPECS);
  g_autoptr(GPtrArray) jobs_a = g_ptr_array_new_with_free_func ((GDestroyNotify) od_job_free);
  g_autoptr(OdStore) a = NULL;
  g_autoptr(OdStore) b = NULL;
  g_autoptr(GString) frames_a = NULL;
  g_autoptr(GString) frames_b = NULL;
  Arrivals arrivals = { rand, specs, 0, 0, 0 };
  guint batches = 0, failures = 0, replays = 0, reused = 0, refused = 0, most = 0;

  g_assert_no_error (error);
  a = od_store_open (uri_a, &error);
  g_assert_no_error (error);
  b = od_store_open (uri_b, &error);
  g_assert_no_error (error);

  while (arrivals.next < specs->len)
    {
      g_autoptr(GPtrArray) batch = g_ptr_array_new ();
      guint first = g_rand_int_range (rand, 1, 5);

      /* One in a hundred, and the tenth for sure. */
      if (batches == 10 || g_rand_int_range (rand, 0, 100) == 0)
        {
          failing_batch (a, path_a, rand);
          failures++;
        }
      for (guint i = 0; i < first && arrivals.next < specs->len; i++)
        g_ptr_array_add (batch, job_of (g_ptr_array_index (specs, arrivals.next++)));
      g_assert_true (od_store_execute_more (a, batch, arrivals_more, &arrivals, &error));
      g_assert_no_error (error);
      most = MAX (most, batch->len);
      batches++;
      for (guint i = 0; i < batch->len; i++)
        g_ptr_array_add (jobs_a, g_ptr_array_index (batch, i));
    }
  g_assert_cmpuint (jobs_a->len, ==, specs->len);

  /* The same commands, each alone in its transaction. */
  for (guint i = 0; i < specs->len; i++)
    {
      OdJob *job = job_of (g_ptr_array_index (specs, i));

      g_assert_true (od_store_execute (b, &job, 1, &error));
      g_assert_no_error (error);
      assert_same_job (g_ptr_array_index (jobs_a, i), job, i);
      replays += job->replayed;
      reused += !job->replayed && strstr (job->response, "used with another body") != NULL;
      refused += job->status != 200;
      od_job_free (job);
    }

  frames_a = all_frames (a);
  frames_b = all_frames (b);
  g_assert_cmpint (od_test_store_head (a), ==, od_test_store_head (b));
  g_assert_cmpuint (frames_a->len, ==, frames_b->len);
  g_assert_true (memcmp (frames_a->str, frames_b->str, frames_a->len) == 0);
  g_test_message ("%u commands in %u batches (at most %u; %u joined a batch being decided, "
                  "%u asks), %u failed batches, %u replays, %u keys reused, %u refused, head %"
                  G_GINT64_FORMAT, specs->len, batches, most, arrivals.appended, arrivals.calls,
                  failures, replays, reused, refused, od_test_store_head (b));
  /* The random input did reach every case. */
  g_assert_cmpuint (arrivals.appended, >, specs->len / 4);
  g_assert_cmpuint (failures, >, 0);
  g_assert_cmpuint (replays, >, 0);
  g_assert_cmpuint (reused, >, 0);
  /* Refused for what the command asks, not only for its key. */
  g_assert_cmpuint (refused, >, reused);

  g_clear_object (&a);
  g_clear_object (&b);
  od_test_process_rmdir (dir);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/store-batch/execute-more-random", test_execute_more_random);
  return g_test_run ();
}

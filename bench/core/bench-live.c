/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Live latency: a command submitted through the outbox until its change
 * is visible in the cache (applied by the sync engine from the stream),
 * one command at a time, as an operator clicks.
 *
 *   bench-core-live URL OPERATOR_TOKEN [N]
 */
#include "od-core.h"

#include <glib/gstdio.h>
#include <stdlib.h>

typedef struct
{
  GMainLoop *loop;
  gint64     waiting_id;
  gboolean   caught_up;
} Bench;

static void
on_changed (OdOutbox       *outbox,
            gint64          id,
            OdCommandState  state,
            Bench          *b)
{
  if (id == b->waiting_id
      && (state == OD_COMMAND_STATE_VISIBLE || state == OD_COMMAND_STATE_REJECTED))
    g_main_loop_quit (b->loop);
}

static void
on_caught_up (OdSyncEngine *sync,
              gint64        position,
              Bench        *b)
{
  b->caught_up = TRUE;
}

static void
submitted (GObject      *source,
           GAsyncResult *result,
           gpointer      data)
{
  Bench *b = data;
  g_autoptr(GError) error = NULL;

  b->waiting_id = od_outbox_submit_finish (OD_OUTBOX (source), result, &error);
  g_assert_no_error (error);
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (OD_OUTBOX (source), b->waiting_id, NULL);

    if (c->state == OD_COMMAND_STATE_VISIBLE || c->state == OD_COMMAND_STATE_REJECTED)
      g_main_loop_quit (b->loop);
  }
}

static int
cmp_double (const void *a,
            const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static void
report (const char *what,
        double     *v,
        guint       n)
{
  qsort (v, n, sizeof *v, cmp_double);
  g_print ("%-34s p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (n=%u)\n", what,
           v[n / 2], v[(guint) (n * 0.9)], v[(guint) (n * 0.99)], v[n - 1], n);
}

int
main (int    argc,
      char **argv)
{
  const char *url = argc > 1 ? argv[1] : NULL;
  const char *token = argc > 2 ? argv[2] : NULL;
  guint n = argc > 3 ? atoi (argv[3]) : 1000;
  g_autofree char *dir = g_dir_make_tmp ("od-bench-live-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "cache.sqlite", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(OdCache) cache = NULL;
  g_autoptr(OdSyncEngine) sync = NULL;
  g_autoptr(OdOutbox) outbox = NULL;
  g_autofree double *click_visible = g_new0 (double, n);
  g_autofree double *answer_visible = g_new0 (double, n);
  g_autofree double *click_answer = g_new0 (double, n);
  g_autofree char *order_id = NULL;
  Bench b = { 0 };
  guint rejected = 0;

  if (url == NULL || token == NULL)
    {
      g_printerr ("usage: bench-core-live URL OPERATOR_TOKEN [N]\n");
      g_rmdir (dir);
      return 2;
    }
  b.loop = g_main_loop_new (NULL, FALSE);
  cache = od_cache_open (path, &error);
  g_assert_no_error (error);
  sync = od_sync_engine_new (cache, url, token);
  outbox = od_outbox_new (cache, url, token);
  g_signal_connect (sync, "caught-up", G_CALLBACK (on_caught_up), &b);
  g_signal_connect (outbox, "command-changed", G_CALLBACK (on_changed), &b);
  od_sync_engine_start (sync);
  /* caught-up comes again on later transitions: it only marks the wait
   * for it over, and never ends the wait for a command. */
  while (!b.caught_up)
    g_main_context_iteration (NULL, TRUE);
  g_print ("caught up at %" G_GINT64_FORMAT "; %u commands, one at a time\n",
           od_cache_get_applied_position (cache), n);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(OdCommand) cmd = NULL;
      g_autoptr(OdPendingCommand) c = NULL;
      guint step = i % 6;

      if (step == 0)
        {
          g_free (order_id);
          order_id = od_uuid_v7_new ();
          cmd = od_command_new (OD_COMMAND_CREATE_ORDER, order_id);
          cmd->customer_name = g_strdup ("Bench Customer");
          cmd->customer_email = g_strdup ("bench@example.com");
          cmd->currency = g_strdup ("EUR");
        }
      else if (step <= 2)
        {
          cmd = od_command_new (OD_COMMAND_ADD_ITEM, order_id);
          cmd->sku = g_strdup_printf ("B-%u", step);
          cmd->name = g_strdup ("Bench item");
          cmd->quantity = 1;
          cmd->unit_price_cents = 999;
        }
      else if (step == 3)
        cmd = od_command_new (OD_COMMAND_PLACE_ORDER, order_id);
      else if (step == 4)
        {
          cmd = od_command_new (OD_COMMAND_SHIP_ORDER, order_id);
          cmd->carrier = g_strdup ("DHL");
          cmd->tracking_number = g_strdup ("BENCH");
        }
      else
        cmd = od_command_new (OD_COMMAND_MARK_DELIVERED, order_id);

      b.waiting_id = 0;
      od_outbox_submit_async (outbox, cmd, NULL, submitted, &b);
      g_main_loop_run (b.loop);
      c = od_outbox_get (outbox, b.waiting_id, NULL);
      if (c->state != OD_COMMAND_STATE_VISIBLE)
        {
          rejected++;
          i--;
          continue;
        }
      click_visible[i] = (c->visible_at - c->created_at) / 1000.0;
      answer_visible[i] = (c->visible_at - c->answered_at) / 1000.0;
      click_answer[i] = (c->answered_at - c->created_at) / 1000.0;
    }
  report ("click -> visible in the cache", click_visible, n);
  report ("click -> server answer stored", click_answer, n);
  report ("answer -> visible", answer_visible, n);
  if (rejected)
    g_print ("(%u rejected and retried)\n", rejected);

  od_sync_engine_stop (sync);
  g_clear_object (&outbox);
  g_clear_object (&sync);
  g_clear_object (&cache);
  {
    g_autofree char *wal = g_strconcat (path, "-wal", NULL);
    g_autofree char *shm = g_strconcat (path, "-shm", NULL);
    /* PATH.lock too (the writer lock), or the directory stays. */
    g_autofree char *lock = g_strconcat (path, ".lock", NULL);

    g_unlink (path);
    g_unlink (wal);
    g_unlink (shm);
    g_unlink (lock);
    g_rmdir (dir);
  }
  g_main_loop_unref (b.loop);
  return 0;
}

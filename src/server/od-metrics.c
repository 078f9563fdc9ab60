/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-metrics.h"

#include <stdlib.h>
#include <string.h>

static const double latency_bounds[] = {
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
static const double batch_bounds[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

typedef struct
{
  const double *bounds;
  guint         n_bounds;
  guint64       counts[16];   /* per bucket, not cumulative; the last one is +Inf */
  double        sum;
  guint64       count;
} Histogram;

static GMutex lock;
static guint64 counters[OD_METRIC_N_COUNTERS];
static GHashTable *commands;    /* "type\toutcome" → guint64 * */
static Histogram latency = { latency_bounds, G_N_ELEMENTS (latency_bounds) };
static Histogram batches = { batch_bounds, G_N_ELEMENTS (batch_bounds) };
static gint64 start_time;       /* real time, usec */

G_STATIC_ASSERT (G_N_ELEMENTS (latency_bounds) < 16 && G_N_ELEMENTS (batch_bounds) < 16);

static const struct
{
  const char *name;
  const char *help;
} counter_info[OD_METRIC_N_COUNTERS] = {
  { "orderdesk_events_appended_total", "Events appended to the log by this process." },
  { "orderdesk_stream_bytes_total", "Bytes queued to event stream subscribers." },
  { "orderdesk_stream_slow_disconnects_total",
    "Stream subscribers disconnected for reading too slowly." },
  { "orderdesk_store_errors_total", "Failed event store operations (writes, reads, checks)." },
  { "orderdesk_rate_limited_total", "Commands refused by the per-token rate limit." },
};

void
od_metrics_init (void)
{
  g_mutex_lock (&lock);
  if (commands == NULL)
    {
      commands = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
      start_time = g_get_real_time ();
    }
  g_mutex_unlock (&lock);
}

void
od_metrics_add (OdMetricCounter counter,
                guint64         n)
{
  g_mutex_lock (&lock);
  counters[counter] += n;
  g_mutex_unlock (&lock);
}

void
od_metrics_command (const char *type,
                    const char *outcome)
{
  g_autofree char *key = g_strconcat (type ? type : "unknown", "\t", outcome, NULL);
  guint64 *count;

  g_mutex_lock (&lock);
  if (commands == NULL)
    commands = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  count = g_hash_table_lookup (commands, key);
  if (count == NULL)
    {
      count = g_new0 (guint64, 1);
      g_hash_table_insert (commands, g_steal_pointer (&key), count);
    }
  (*count)++;
  g_mutex_unlock (&lock);
}

static void
observe (Histogram *h,
         double     value)
{
  guint i = 0;

  while (i < h->n_bounds && value > h->bounds[i])
    i++;
  h->counts[i]++;
  h->sum += value;
  h->count++;
}

void
od_metrics_command_latency (gint64 usec)
{
  g_mutex_lock (&lock);
  observe (&latency, usec / 1e6);
  g_mutex_unlock (&lock);
}

void
od_metrics_batch (guint n_commands)
{
  g_mutex_lock (&lock);
  observe (&batches, n_commands);
  g_mutex_unlock (&lock);
}

static void
render_histogram (GString         *out,
                  const char      *name,
                  const char      *help,
                  const Histogram *h)
{
  guint64 cumulative = 0;

  g_string_append_printf (out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  for (guint i = 0; i <= h->n_bounds; i++)
    {
      char le[G_ASCII_DTOSTR_BUF_SIZE];

      cumulative += h->counts[i];
      if (i < h->n_bounds)
        g_ascii_formatd (le, sizeof le, "%g", h->bounds[i]);
      else
        strcpy (le, "+Inf");
      g_string_append_printf (out, "%s_bucket{le=\"%s\"} %" G_GUINT64_FORMAT "\n", name, le,
                              cumulative);
    }
  {
    char sum[G_ASCII_DTOSTR_BUF_SIZE];

    g_ascii_formatd (sum, sizeof sum, "%.9g", h->sum);
    g_string_append_printf (out, "%s_sum %s\n%s_count %" G_GUINT64_FORMAT "\n", name, sum, name,
                            h->count);
  }
}

static int
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return strcmp (*(const char **) a, *(const char **) b);
}

char *
od_metrics_render (gint64 head,
                   guint  subscribers)
{
  GString *out = g_string_sized_new (4096);
  g_autofree gpointer *keys = NULL;
  guint n_keys = 0;

  g_mutex_lock (&lock);

  g_string_append (out, "# HELP orderdesk_commands_total Commands answered, by type and "
                        "outcome (ok, replayed, or the problem code).\n"
                        "# TYPE orderdesk_commands_total counter\n");
  if (commands != NULL)
    {
      keys = g_hash_table_get_keys_as_array (commands, &n_keys);
      qsort (keys, n_keys, sizeof (gpointer), compare_strings);
    }
  for (guint i = 0; i < n_keys; i++)
    {
      const char *key = keys[i];
      const char *tab = strchr (key, '\t');

      /* Types and outcomes are fixed identifiers from the protocol tables,
       * never client text, so they need no escaping. */
      g_string_append_printf (out, "orderdesk_commands_total{type=\"%.*s\",outcome=\"%s\"} %"
                              G_GUINT64_FORMAT "\n", (int) (tab - key), key, tab + 1,
                              *(guint64 *) g_hash_table_lookup (commands, key));
    }

  render_histogram (out, "orderdesk_command_duration_seconds",
                    "Time from receiving a command to its batch being durable.", &latency);
  render_histogram (out, "orderdesk_store_batch_size",
                    "Commands decided and committed in one store transaction.", &batches);

  for (guint i = 0; i < OD_METRIC_N_COUNTERS; i++)
    g_string_append_printf (out, "# HELP %s %s\n# TYPE %s counter\n%s %" G_GUINT64_FORMAT "\n",
                            counter_info[i].name, counter_info[i].help, counter_info[i].name,
                            counter_info[i].name, counters[i]);

  g_string_append_printf (out,
                          "# HELP orderdesk_head_position Newest position in the event log.\n"
                          "# TYPE orderdesk_head_position gauge\n"
                          "orderdesk_head_position %" G_GINT64_FORMAT "\n"
                          "# HELP orderdesk_stream_subscribers Event stream subscribers connected.\n"
                          "# TYPE orderdesk_stream_subscribers gauge\n"
                          "orderdesk_stream_subscribers %u\n"
                          "# HELP process_start_time_seconds Start time of the process since the "
                          "Unix epoch in seconds.\n"
                          "# TYPE process_start_time_seconds gauge\n"
                          "process_start_time_seconds %" G_GINT64_FORMAT ".%06" G_GINT64_FORMAT "\n"
                          "# HELP orderdesk_build_info The server's version.\n"
                          "# TYPE orderdesk_build_info gauge\n"
                          "orderdesk_build_info{version=\"%s\"} 1\n",
                          head, subscribers, start_time / G_USEC_PER_SEC,
                          start_time % G_USEC_PER_SEC, OD_VERSION);

  g_mutex_unlock (&lock);
  return g_string_free (out, FALSE);
}

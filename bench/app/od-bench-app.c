/* SPDX-License-Identifier: GPL-3.0-or-later */
#include <adwaita.h>
#include <math.h>
#include <string.h>

#include "od-order-item.h"
#include "od-test-app.h"
#include "od-test-cache.h"
#include "od-window-private.h"

/* The console at a million orders: window ready, page fetch, search,
 * filter and sort latency, and memory.  Run under Xvfb:
 *
 *   xvfb-run -a -s '-screen 0 1280x800x24' build/bench/app/od-bench-app [--orders N] [--cache FILE] [-v]
 *
 * The cache is made once (build/tests/app/test-cache-N.sqlite) and reused. */

static int
compare_double (gconstpointer a,
                gconstpointer b)
{
  double x = *(const double *) a;
  double y = *(const double *) b;

  return x < y ? -1 : x > y ? 1 : 0;
}

static void
report (const char *what,
        GArray     *ms)
{
  double sum = 0;

  g_array_sort (ms, compare_double);
  for (guint i = 0; i < ms->len; i++)
    sum += g_array_index (ms, double, i);
  g_print ("%-34s n=%-4u mean %8.3f ms  p50 %8.3f ms  p99 %8.3f ms  max %8.3f ms\n", what, ms->len,
           sum / ms->len, g_array_index (ms, double, ms->len / 2),
           g_array_index (ms, double, (ms->len - 1) * 99 / 100),
           g_array_index (ms, double, ms->len - 1));
}

/* When the frame after a search ended each phase of the frame clock
 * (GTK's own handlers run first): the wait after the call (for the
 * clock's next frame, or the toplevel's size computation first), then
 * its layout and its paint.  A frame without ticks has no update phase. */
typedef enum
{
  PHASE_BEFORE_PAINT,
  PHASE_UPDATE,
  PHASE_LAYOUT,
  PHASE_PAINT,
  N_PHASES
} Phase;

static const char *phase_signals[N_PHASES] = { "before-paint", "update", "layout", "paint" };

static void
on_phase (GdkFrameClock *clock,
          gint64        *when)
{
  if (*when == 0)
    *when = g_get_monotonic_time ();
}

static void
on_frame_start (GdkFrameClock *clock,
                gint64        *when)
{
  *when = g_get_monotonic_time ();
}

/* Runs the main loop until @until (monotonic), to the tenth of a
 * millisecond: od_test_spin () sleeps in steps of 2 ms. */
static void
spin_until (gint64 until)
{
  while (g_get_monotonic_time () < until)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (100);
}

static double
thread_cpu_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static double
since_ms (gint64 start)
{
  return (g_get_monotonic_time () - start) / 1000.0;
}

int
main (int   argc,
      char *argv[])
{
  int orders = 1000000;
  g_autofree char *cache = NULL;
  gboolean verbose = FALSE;
  int search_rounds = 1;
  gboolean no_blink = FALSE;
  g_autofree char *phase = NULL;
  gboolean locked;
  GOptionEntry entries[] = {
    { "orders", 0, 0, G_OPTION_ARG_INT, &orders, "Orders in the generated cache", "N" },
    { "cache", 0, 0, G_OPTION_ARG_FILENAME, &cache, "Use this cache", "FILE" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, "Print each search of the frame loop", NULL },
    { "search-rounds", 0, 0, G_OPTION_ARG_INT, &search_rounds, "Rounds of the ten searches timed to their frame (1)", "N" },
    { "no-blink", 0, 0, G_OPTION_ARG_NONE, &no_blink, "Cursors do not blink (a blinking one in the search entry keeps the frame clock at 60 Hz)", NULL },
    { "phase", 0, 0, G_OPTION_ARG_STRING, &phase, "When in the frame interval a timed search starts: random (as a key press does, the default) or locked (right after a frame)", "random|locked" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_autoptr(GOptionContext) context = g_option_context_new ("— console benchmark");
  g_autoptr(GError) error = NULL;
  g_autoptr(OdApplication) app = NULL;
  OdWindow *window;
  OdOrderList *list;
  gint64 start;
  double init_ms;
  g_autoptr(GRand) rand = g_rand_new_with_seed (7);

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  if (phase != NULL && strcmp (phase, "random") != 0 && strcmp (phase, "locked") != 0)
    {
      g_printerr ("--phase: random or locked, not %s\n", phase);
      return 2;
    }
  locked = phase != NULL && strcmp (phase, "locked") == 0;
  if (cache == NULL)
    {
      start = g_get_monotonic_time ();
      cache = od_test_shared_cache (orders, &error);
      if (cache == NULL)
        {
          g_printerr ("%s\n", error->message);
          return 1;
        }
      g_print ("cache %s (made or found in %.1f s)\n", cache, since_ms (start) / 1000);
    }

  start = g_get_monotonic_time ();
  gtk_init ();
  adw_init ();
  if (no_blink)
    g_object_set (gtk_settings_get_default (), "gtk-cursor-blink", FALSE, NULL);
  init_ms = since_ms (start);

  /* Window ready: from creating the application to the first frame with
   * rows on screen. */
  start = g_get_monotonic_time ();
  app = od_application_new (G_APPLICATION_NON_UNIQUE);
  g_application_register (G_APPLICATION (app), NULL, NULL);
  window = od_window_new (app);
  if (!od_window_open_profile (window, "http://127.0.0.1:9", NULL, cache, TRUE, &error))
    {
      g_printerr ("%s\n", error->message);
      return 1;
    }
  gtk_window_present (GTK_WINDOW (window));
  list = od_window_get_order_list (window);
  od_test_wait_frame (GTK_WIDGET (list));
  g_print ("gtk_init + adw_init                %8.1f ms\n", init_ms);
  g_print ("window ready (%u orders)       %8.1f ms\n",
           g_list_model_get_n_items (G_LIST_MODEL (od_order_list_get_model (list))), since_ms (start));
  g_print ("RSS after window ready             %8.1f MiB\n", od_test_rss_kib () / 1024.0);

  /* Page fetch: scrolling down page by page (keyset from the previous
   * page), then random jumps. */
  {
    g_autoptr(GArray) scroll = g_array_new (FALSE, FALSE, sizeof (double));
    g_autoptr(GArray) jumps = g_array_new (FALSE, FALSE, sizeof (double));
    g_autoptr(GArray) ends = g_array_new (FALSE, FALSE, sizeof (double));
    guint n = g_list_model_get_n_items (G_LIST_MODEL (od_order_list_get_model (list)));

    for (guint page = 1; page < 500; page++)
      {
        g_autoptr(OdOrderItem) item = NULL;

        start = g_get_monotonic_time ();
        item = g_list_model_get_item (G_LIST_MODEL (od_order_list_get_model (list)), page * OD_ORDER_LIST_PAGE_SIZE);
        g_array_append_vals (scroll, (double[]) { since_ms (start) }, 1);
      }
    report ("page fetch, scrolling (100 rows)", scroll);

    for (guint i = 0; i < 20; i++)
      {
        g_autoptr(OdOrderItem) item = NULL;
        guint position = n - 1 - g_rand_int_range (rand, 0, 20000);

        start = g_get_monotonic_time ();
        item = g_list_model_get_item (G_LIST_MODEL (od_order_list_get_model (list)), position);
        g_array_append_vals (ends, (double[]) { since_ms (start) }, 1);
      }
    report ("page fetch, jump near the end", ends);

    for (guint i = 0; i < 10; i++)
      {
        g_autoptr(OdOrderItem) item = NULL;
        guint position = g_rand_int_range (rand, 0, n);

        /* A fresh query: no anchor from earlier jumps. */
        od_order_list_set_status (list, OD_STATUS_DRAFT);
        od_order_list_set_status (list, OD_STATUS_NONE);
        start = g_get_monotonic_time ();
        item = g_list_model_get_item (G_LIST_MODEL (od_order_list_get_model (list)), position);
        g_array_append_vals (jumps, (double[]) { since_ms (start) }, 1);
      }
    report ("page fetch, random jump (walk)", jumps);
    g_print ("RSS after page fetches             %8.1f MiB\n", od_test_rss_kib () / 1024.0);
  }

  /* The core's queries alone: what a search costs before GTK. */
  {
    const char *terms[] = { "Lovelace", "ada", "Müller", "Jürgen Schmidt", "MUG-B", "TEE",
                            "01a2", "zzz-nothing", "Hopper", "NOTE-A5" };
    g_autoptr(GArray) query = g_array_new (FALSE, FALSE, sizeof (double));
    OdCache *c = od_window_get_cache (window);

    for (guint round = 0; round < 3; round++)
      for (guint i = 0; i < G_N_ELEMENTS (terms); i++)
        {
          OdOrderQuery q = { OD_ORDER_SORT_UPDATED, TRUE, OD_STATUS_NONE, terms[i] };
          g_autoptr(GPtrArray) rows = NULL;

          start = g_get_monotonic_time ();
          od_query_count_orders (c, &q, NULL);
          rows = od_query_orders (c, &q, NULL, OD_ORDER_LIST_PAGE_SIZE, NULL);
          g_array_append_vals (query, (double[]) { since_ms (start) }, 1);
        }
    report ("search, core query (count + page)", query);
  }

  /* Search, filter, sort: from the call to the first page in memory. */
  {
    const char *terms[] = { "Lovelace", "ada", "Müller", "Jürgen Schmidt", "MUG-B", "TEE",
                            "01a2", "zzz-nothing", "Hopper", "NOTE-A5" };
    g_autoptr(GArray) search = g_array_new (FALSE, FALSE, sizeof (double));
    g_autoptr(GArray) filter = g_array_new (FALSE, FALSE, sizeof (double));
    g_autoptr(GArray) sort = g_array_new (FALSE, FALSE, sizeof (double));

    for (guint round = 0; round < 3; round++)
      for (guint i = 0; i < G_N_ELEMENTS (terms); i++)
        {
          g_autoptr(OdOrderItem) item = NULL;

          start = g_get_monotonic_time ();
          od_order_list_set_search (list, terms[i]);
          if (g_list_model_get_n_items (G_LIST_MODEL (od_order_list_get_model (list))) > 0)
            item = g_list_model_get_item (G_LIST_MODEL (od_order_list_get_model (list)), 0);
          g_array_append_vals (search, (double[]) { since_ms (start) }, 1);
          od_order_list_set_search (list, NULL);
        }
    report ("search (count + first page)", search);

    {
      g_autoptr(GArray) frame = g_array_new (FALSE, FALSE, sizeof (double));
      g_autoptr(GArray) call = g_array_new (FALSE, FALSE, sizeof (double));
      g_autoptr(GArray) call_cpu = g_array_new (FALSE, FALSE, sizeof (double));
      g_autoptr(GArray) wait = g_array_new (FALSE, FALSE, sizeof (double));
      g_autoptr(GArray) layout = g_array_new (FALSE, FALSE, sizeof (double));
      g_autoptr(GArray) paint = g_array_new (FALSE, FALSE, sizeof (double));
      GdkFrameClock *clock = gtk_widget_get_frame_clock (GTK_WIDGET (list));
      gint64 last_frame_start = 0;
      gint64 interval_us = 0;
      gulong frame_start_id;

      gdk_frame_clock_get_refresh_info (clock, g_get_monotonic_time (), &interval_us, NULL);
      if (interval_us <= 0)
        interval_us = 16667;
      frame_start_id = g_signal_connect (clock, "before-paint", G_CALLBACK (on_frame_start), &last_frame_start);

      for (guint n = 0; n < search_rounds * G_N_ELEMENTS (terms); n++)
        {
          guint i = n % G_N_ELEMENTS (terms);
          gint64 when[N_PHASES] = { 0 };
          gulong ids[N_PHASES];
          gint64 returned;
          double cpu;
          double since_frame;

          /* Settle first, so the frame measured is the search's own. */
          od_test_wait_frame (GTK_WIDGET (list));
          od_test_spin (200);
          /* A key press comes at any point of the frame interval.  200 ms
           * is exactly 12 frames of the 60 Hz a blinking cursor keeps, so
           * without this every search would start just after a frame
           * and wait most of an interval for the next one. */
          if (!locked)
            spin_until (g_get_monotonic_time () + g_rand_int_range (rand, 0, interval_us));
          for (guint k = 0; k < N_PHASES; k++)
            ids[k] = g_signal_connect (clock, phase_signals[k], G_CALLBACK (on_phase), &when[k]);
          cpu = thread_cpu_ms ();
          start = g_get_monotonic_time ();
          od_order_list_set_search (list, terms[i]);
          returned = g_get_monotonic_time ();
          cpu = thread_cpu_ms () - cpu;
          since_frame = (start - last_frame_start) / 1000.0;
          od_test_wait_frame (GTK_WIDGET (list));
          for (guint k = 0; k < N_PHASES; k++)
            g_signal_handler_disconnect (clock, ids[k]);
          g_array_append_vals (frame, (double[]) { since_ms (start) }, 1);
          g_array_append_vals (call, (double[]) { (returned - start) / 1000.0 }, 1);
          g_array_append_vals (call_cpu, (double[]) { cpu }, 1);
          if (when[PHASE_UPDATE] == 0)
            when[PHASE_UPDATE] = when[PHASE_BEFORE_PAINT];
          g_array_append_vals (wait, (double[]) { (when[PHASE_BEFORE_PAINT] - returned) / 1000.0 }, 1);
          g_array_append_vals (layout, (double[]) { (when[PHASE_LAYOUT] - when[PHASE_UPDATE]) / 1000.0 }, 1);
          g_array_append_vals (paint, (double[]) { (when[PHASE_PAINT] - when[PHASE_LAYOUT]) / 1000.0 }, 1);
          if (verbose)
            g_print ("  %-16s %7u rows  %5.1f ms after a frame's start  call %6.1f ms  to frame %6.1f ms"
                     " (wait %4.1f, layout %4.1f, paint %4.1f)\n", terms[i],
                     g_list_model_get_n_items (G_LIST_MODEL (od_order_list_get_model (list))),
                     since_frame, (returned - start) / 1000.0, since_ms (start),
                     (when[PHASE_BEFORE_PAINT] - returned) / 1000.0,
                     (when[PHASE_LAYOUT] - when[PHASE_UPDATE]) / 1000.0,
                     (when[PHASE_PAINT] - when[PHASE_LAYOUT]) / 1000.0);
        }
      g_signal_handler_disconnect (clock, frame_start_id);
      od_order_list_set_search (list, NULL);
      g_print ("search timing: %s phase, frame interval %.1f ms\n",
               locked ? "locked" : "random", interval_us / 1000.0);
      report ("search, to the next frame drawn", frame);
      /* The synchronous part: search bar, entry, count, pages and the
       * visible rows taking their new rows; the rest is the frame. */
      report ("  of which the set_search call", call);
      /* Wall time above CPU time is time blocked, mostly writing to the
       * X server. */
      report ("  set_search call, CPU time", call_cpu);
      /* From the call's return to the frame's start: the frame clock's
       * pacing (a focused entry's blinking cursor keeps it ticking at
       * 60 Hz) and any size computation of the toplevel before it. */
      report ("  then waiting for the frame", wait);
      report ("  the frame's layout", layout);
      report ("  the frame's paint", paint);
    }

    /* Clearing a search: back to every order (hiding the search bar). */
    {
      g_autoptr(GArray) clear = g_array_new (FALSE, FALSE, sizeof (double));

      for (guint i = 0; i < G_N_ELEMENTS (terms); i++)
        {
          if (strcmp (terms[i], "zzz-nothing") == 0)
            continue;
          od_order_list_set_search (list, terms[i]);
          od_test_wait_frame (GTK_WIDGET (list));
          od_test_spin (200);
          start = g_get_monotonic_time ();
          od_order_list_set_search (list, NULL);
          od_test_wait_frame (GTK_WIDGET (list));
          g_array_append_vals (clear, (double[]) { since_ms (start) }, 1);
        }
      report ("clear search, to the next frame", clear);
      {
        g_autoptr(GArray) from_empty = g_array_new (FALSE, FALSE, sizeof (double));

        /* From an empty result back to every order. */
        for (guint i = 0; i < 5; i++)
          {
            od_order_list_set_search (list, "zzz-nothing");
            od_test_wait_frame (GTK_WIDGET (list));
            od_test_spin (200);
            start = g_get_monotonic_time ();
            od_order_list_set_search (list, NULL);
            od_test_wait_frame (GTK_WIDGET (list));
            g_array_append_vals (from_empty, (double[]) { since_ms (start) }, 1);
          }
        report ("clear an empty search, to next frame", from_empty);
      }
    }

    for (guint round = 0; round < 4; round++)
      for (OdOrderStatus status = OD_STATUS_DRAFT; status <= OD_STATUS_CANCELLED; status++)
        {
          g_autoptr(OdOrderItem) item = NULL;

          start = g_get_monotonic_time ();
          od_order_list_set_status (list, status);
          item = g_list_model_get_item (G_LIST_MODEL (od_order_list_get_model (list)), 0);
          g_array_append_vals (filter, (double[]) { since_ms (start) }, 1);
        }
    od_order_list_set_status (list, OD_STATUS_NONE);
    report ("status filter (count + first page)", filter);

    for (guint round = 0; round < 3; round++)
      for (OdOrderSort s = OD_ORDER_SORT_UPDATED; s <= OD_ORDER_SORT_CUSTOMER; s++)
        {
          g_autoptr(OdOrderItem) item = NULL;

          start = g_get_monotonic_time ();
          od_order_list_sort_by (list, s, round % 2 == 0);
          item = g_list_model_get_item (G_LIST_MODEL (od_order_list_get_model (list)), 0);
          g_array_append_vals (sort, (double[]) { since_ms (start) }, 1);
        }
    report ("sort change (first page)", sort);

    /* The same, to the next frame drawn. */
    {
      g_autoptr(GArray) filter_frame = g_array_new (FALSE, FALSE, sizeof (double));
      g_autoptr(GArray) sort_frame = g_array_new (FALSE, FALSE, sizeof (double));

      for (guint round = 0; round < 2; round++)
        for (OdOrderStatus status = OD_STATUS_DRAFT; status <= OD_STATUS_CANCELLED + 1; status++)
          {
            od_test_wait_frame (GTK_WIDGET (list));
            od_test_spin (100);
            start = g_get_monotonic_time ();
            /* One past the last status: back to every order. */
            od_order_list_set_status (list, status > OD_STATUS_CANCELLED ? OD_STATUS_NONE : status);
            od_test_wait_frame (GTK_WIDGET (list));
            g_array_append_vals (filter_frame, (double[]) { since_ms (start) }, 1);
          }
      report ("status filter, to the next frame", filter_frame);

      for (guint round = 0; round < 2; round++)
        for (OdOrderSort s = OD_ORDER_SORT_UPDATED; s <= OD_ORDER_SORT_CUSTOMER; s++)
          {
            od_test_wait_frame (GTK_WIDGET (list));
            od_test_spin (100);
            start = g_get_monotonic_time ();
            od_order_list_sort_by (list, s, round % 2 == 0);
            od_test_wait_frame (GTK_WIDGET (list));
            g_array_append_vals (sort_frame, (double[]) { since_ms (start) }, 1);
          }
      report ("sort change, to the next frame", sort_frame);
    }
  }

  /* Drawing after a change: frames while scrolling the view. */
  {
    g_autoptr(GArray) frames = g_array_new (FALSE, FALSE, sizeof (double));
    GtkColumnView *view = od_order_list_get_column_view (list);
    GtkWidget *scroller = gtk_widget_get_parent (GTK_WIDGET (view));
    GtkAdjustment *adjustment = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (view));

    (void) scroller;
    for (guint i = 0; i < 40; i++)
      {
        start = g_get_monotonic_time ();
        gtk_adjustment_set_value (adjustment, gtk_adjustment_get_value (adjustment) + 600);
        od_test_wait_frame (GTK_WIDGET (list));
        g_array_append_vals (frames, (double[]) { since_ms (start) }, 1);
      }
    report ("scroll by a screen, to next frame", frames);
  }
  g_print ("RSS at the end                     %8.1f MiB\n", od_test_rss_kib () / 1024.0);
  gtk_window_destroy (GTK_WINDOW (window));
  return 0;
}

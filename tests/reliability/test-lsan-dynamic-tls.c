/* SPDX-License-Identifier: GPL-3.0-or-later */

/* LeakSanitizer at exit with a thread whose dynamic TLS block starts 16
 * bytes into a page: the situation in which clang 14's runtime crashed
 * in orderdeskctl, core-shared, core-tls, ctl-cli, reliability-tls and
 * faults-cache-disk at random ("Tracer caught signal 11"; the __tls_get_addr
 * interceptor takes such a block for glibc 2.19's and records a garbage
 * range).  Built only with AddressSanitizer; it fails if the sanitize
 * setup's ASAN_OPTIONS lose intercept_tls_get_addr=0 on a runtime that
 * has the bug (docs/reliability.md). */

#include <glib.h>
#include <dlfcn.h>
#include <stdint.h>

static uintptr_t (*probe_touch) (void);
static GMutex lock;
static GCond cond;
static gboolean kept;   /* a thread with such a block waits for the exit */
static guint finished;  /* threads whose block was elsewhere */

static gpointer
probe_thread (gpointer data)
{
  uintptr_t block = probe_touch ();

  g_mutex_lock (&lock);
  if (block % 4096 == 16 && !kept)
    {
      kept = TRUE;
      g_cond_broadcast (&cond);
      /* Alive, holding its block, when the process exits. */
      for (;;)
        g_cond_wait (&cond, &lock);
    }
  finished++;
  g_cond_broadcast (&cond);
  g_mutex_unlock (&lock);
  return NULL;
}

/* Runs in a subprocess, which LeakSanitizer checks when it exits. */
static void
exit_with_block_at_page_offset_16 (void)
{
  const char *path = g_getenv ("OD_TLS_PROBE");
  void *module;
  guint started;

  g_assert_nonnull (path);
  module = dlopen (path, RTLD_NOW | RTLD_LOCAL);
  if (module == NULL)
    g_error ("dlopen %s: %s", path, dlerror ());
  probe_touch = (uintptr_t (*) (void)) dlsym (module, "od_tls_probe_touch");
  g_assert_nonnull (probe_touch);

  for (started = 0; started < 20000; started++)
    {
      GThread *thread = g_thread_new ("od-tls-probe", probe_thread, NULL);

      g_mutex_lock (&lock);
      while (!kept && finished < started + 1)
        g_cond_wait (&cond, &lock);
      g_mutex_unlock (&lock);
      if (kept)
        {
          g_thread_unref (thread);
          break;
        }
      g_thread_join (thread);
    }
  /* The situation was made, or the test says nothing. */
  g_assert_true (kept);
  g_printerr ("a dynamic TLS block at offset 16 of a page after %u threads\n", started + 1);
}

static void
test_dynamic_tls (void)
{
  if (g_test_subprocess ())
    {
      exit_with_block_at_page_offset_16 ();
      return;
    }
  g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_stderr ("*a dynamic TLS block at offset 16*");
  g_test_trap_assert_stderr_unmatched ("*LeakSanitizer has encountered a fatal error*");
  g_test_trap_assert_passed ();
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/sanitize/lsan-dynamic-tls", test_dynamic_tls);
  return g_test_run ();
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
/* The sync engine and the outbox against an orderdesk-server over HTTPS
 * with certificates made here by openssl: a private CA is trusted only
 * once it is given (od_*_set_tls_database), and a refused certificate is
 * explained (expired, unknown authority, wrong host), never accepted. */
#include "od-core.h"
#include "od-test-ctl.h"
#include "od-test-certs.h"

#include <string.h>

static char *dir;      /* certificates of this run */

static GTlsDatabase *
trust (const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;
  GTlsDatabase *database = g_tls_file_database_new (path, &error);

  g_assert_no_error (error);
  return database;
}

static OdTestServer *
start_with (const char *name)
{
  g_autofree char *cert = g_strdup_printf ("--tls-cert=%s/%s.pem", dir, name);
  g_autofree char *key = g_strdup_printf ("--tls-key=%s/%s.key", dir, name);
  const char *args[] = { cert, key, NULL };
  OdTestServer *server = od_test_server_new_seeded (0, args);
  g_autoptr(GTlsDatabase) ca = trust ("ca.pem");

  g_assert_true (g_str_has_prefix (od_test_server_url (server), "https://127.0.0.1:"));
  /* The test's own requests trust the CA; the client under test decides
   * for itself. */
  soup_session_set_tls_database (od_test_server_session (server), ca);
  return server;
}

static gboolean
timeout_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
sleep_loop (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, timeout_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

static OdCache *
new_cache (const char *tmp)
{
  g_autofree char *path = g_build_filename (tmp, "cache.sqlite", NULL);
  g_autoptr(GError) error = NULL;
  OdCache *cache = od_cache_open (path, &error);

  g_assert_no_error (error);
  return cache;
}

/* Waits until the engine reports a refused certificate. */
static GTlsCertificateFlags
wait_refused (OdSyncEngine *sync)
{
  OdLag *lag = od_sync_engine_get_lag (sync);

  for (guint i = 0; i < 100 && od_lag_get_tls_errors (lag) == 0; i++)
    sleep_loop (50);
  return od_lag_get_tls_errors (lag);
}

static char *
create_body (const char *id,
             const char *name)
{
  return g_strdup_printf ("{\"type\":\"CreateOrder\",\"order_id\":\"%s\",\"data\":{\"customer_name\":\"%s\",\"customer_email\":\"t@example.com\",\"currency\":\"EUR\"}}",
                          id, name);
}

typedef struct
{
  gboolean done;
  gint64   id;
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

static void
test_private_ca (void)
{
  g_autoptr(OdTestServer) server = start_with ("good");
  g_autofree char *tmp = od_test_tmpdir ("tls");
  g_autoptr(OdCache) cache = new_cache (tmp);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  g_autoptr(OdOutbox) outbox = od_outbox_new (cache, od_test_server_url (server), OD_TEST_OPERATOR_TOKEN);
  g_autoptr(GTlsDatabase) ca = trust ("ca.pem");
  g_autoptr(GTlsDatabase) other = trust ("other-ca.pem");
  OdLag *lag = od_sync_engine_get_lag (sync);
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = create_body (id, "Seen");
  g_autofree char *id2 = od_uuid_v7_new ();
  g_autofree char *body2 = create_body (id2, "Through the outbox");
  Submit sub = { 0 };
  gint64 head;

  g_assert_cmpuint (od_test_post_command (server, NULL, id, body, NULL), ==, 200);
  head = od_test_head (server);
  g_assert_cmpint (head, >, 0);

  /* The system's trust does not know our CA: refused and said so. */
  od_sync_engine_start (sync);
  g_assert_true (wait_refused (sync) & G_TLS_CERTIFICATE_UNKNOWN_CA);
  g_assert_nonnull (strstr (od_lag_get_last_error (lag), "not signed by an authority"));
  g_assert_cmpint (od_lag_get_state (lag), !=, OD_LAG_STATE_LIVE);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, 0);

  /* Another CA does not help. */
  od_sync_engine_set_tls_database (sync, other);
  sleep_loop (100);
  g_assert_true (wait_refused (sync) & G_TLS_CERTIFICATE_UNKNOWN_CA);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, 0);

  /* The outbox refuses it too; the command stays queued with the why. */
  od_outbox_submit_json_async (outbox, body2, NULL, submitted, &sub);
  while (!sub.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (sub.error);
  for (guint i = 0; i < 100; i++)
    {
      g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, sub.id, NULL);

      if (c->detail != NULL)
        break;
      sleep_loop (50);
    }
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, sub.id, NULL);

    g_assert_nonnull (c->detail);
    g_assert_nonnull (strstr (c->detail, "certificate was refused"));
    g_assert_cmpint (c->position, ==, -1);
    g_assert_true (c->state == OD_COMMAND_STATE_QUEUED || c->state == OD_COMMAND_STATE_SENT);
  }

  /* Trusting the CA: both go through. */
  od_sync_engine_set_tls_database (sync, ca);
  od_outbox_set_tls_database (outbox, ca);
  for (guint i = 0; i < 200; i++)
    {
      g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, sub.id, NULL);

      if (c->state == OD_COMMAND_STATE_VISIBLE && od_lag_get_state (lag) == OD_LAG_STATE_LIVE)
        break;
      sleep_loop (50);
    }
  {
    g_autoptr(OdPendingCommand) c = od_outbox_get (outbox, sub.id, NULL);
    g_autoptr(OdOrder) order = od_query_order (cache, id, NULL);

    g_assert_cmpint (c->state, ==, OD_COMMAND_STATE_VISIBLE);
    g_assert_cmpint (od_lag_get_state (lag), ==, OD_LAG_STATE_LIVE);
    g_assert_cmpuint (od_lag_get_tls_errors (lag), ==, 0);
    g_assert_nonnull (order);
    g_assert_cmpstr (order->customer_name, ==, "Seen");
  }
  od_sync_engine_stop (sync);
  od_test_rmdir (tmp);
}

static void
check_refused (const char           *cert,
               GTlsCertificateFlags  flag,
               const char           *words)
{
  g_autoptr(OdTestServer) server = start_with (cert);
  g_autofree char *tmp = od_test_tmpdir ("tls");
  g_autoptr(OdCache) cache = new_cache (tmp);
  g_autoptr(OdSyncEngine) sync = od_sync_engine_new (cache, od_test_server_url (server), OD_TEST_VIEWER_TOKEN);
  g_autoptr(GTlsDatabase) ca = trust ("ca.pem");
  OdLag *lag = od_sync_engine_get_lag (sync);

  od_sync_engine_set_tls_database (sync, ca);
  od_sync_engine_start (sync);
  g_assert_true (wait_refused (sync) & flag);
  g_test_message ("%s: %s", cert, od_lag_get_last_error (lag));
  g_assert_nonnull (strstr (od_lag_get_last_error (lag), words));
  sleep_loop (300);
  g_assert_cmpint (od_lag_get_state (lag), !=, OD_LAG_STATE_LIVE);
  g_assert_cmpint (od_cache_get_applied_position (cache), ==, 0);
  {
    g_autofree char *text = od_tls_explain (od_lag_get_tls_errors (lag), NULL);

    g_assert_true (g_str_has_prefix (text, "The server’s certificate was refused: "));
  }
  od_sync_engine_stop (sync);
  od_test_rmdir (tmp);
}

static void
test_expired (void)
{
  check_refused ("expired", G_TLS_CERTIFICATE_EXPIRED, "it has expired");
}

static void
test_wrong_host (void)
{
  check_refused ("wrong-host", G_TLS_CERTIFICATE_BAD_IDENTITY,
                 "issued for another host than 127.0.0.1");
}

/* orderdeskctl: --ca-file trusts a private authority; without it a
 * one-shot sync stops at once and says why. */
static int
run_ctl (OdTestServer  *server,
         const char    *cache,
         const char    *ca_file,
         char         **err)
{
  const char *with_ca[] = { "--timeout", "30", "--ca-file", ca_file, "sync", NULL };
  const char *without[] = { "--timeout", "30", "sync", NULL };

  return od_test_run_ctl (server, cache, OD_TEST_VIEWER_TOKEN, NULL,
                          ca_file != NULL ? with_ca : without, err);
}

static void
test_ctl_ca_file (void)
{
  g_autoptr(OdTestServer) server = start_with ("good");
  g_autofree char *tmp = od_test_tmpdir ("tls-ctl");
  g_autofree char *cache = g_build_filename (tmp, "cache.sqlite", NULL);
  g_autofree char *ca = g_build_filename (dir, "ca.pem", NULL);
  g_autofree char *other = g_build_filename (dir, "other-ca.pem", NULL);
  g_autofree char *id = od_uuid_v7_new ();
  g_autofree char *body = create_body (id, "Over TLS");
  g_autofree char *err = NULL;
  gint64 start;
  int status;

  g_assert_cmpuint (od_test_post_command (server, NULL, id, body, NULL), ==, 200);

  /* The system's trust, then another authority: refused at once. */
  start = g_get_monotonic_time ();
  status = run_ctl (server, cache, NULL, &err);
  g_test_message ("%s", err);
  g_assert_cmpint (status, ==, 4);
  g_assert_nonnull (strstr (err, "not signed by an authority"));
  g_assert_nonnull (strstr (err, "--ca-file"));
  g_assert_cmpint (g_get_monotonic_time () - start, <, 10 * G_USEC_PER_SEC);
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (run_ctl (server, cache, other, &err), ==, 4);

  /* The server's authority: synced. */
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (run_ctl (server, cache, ca, &err), ==, 0);
  {
    g_autoptr(GError) error = NULL;
    g_autoptr(OdCache) c = od_cache_open (cache, &error);

    g_assert_no_error (error);
    g_assert_cmpint (od_cache_get_applied_position (c), ==, od_test_head (server));
  }
  od_test_rmdir (tmp);
}

static void
test_explain (void)
{
  g_autofree char *one = od_tls_explain (G_TLS_CERTIFICATE_EXPIRED, "h");
  g_autofree char *two = od_tls_explain (G_TLS_CERTIFICATE_UNKNOWN_CA
                                         | G_TLS_CERTIFICATE_BAD_IDENTITY, "h");
  g_autofree char *none = od_tls_explain (0, NULL);

  g_assert_cmpstr (one, ==, "The server’s certificate was refused: it has expired.");
  g_assert_nonnull (strstr (two, "not signed by an authority"));
  g_assert_nonnull (strstr (two, " and it was issued for another host than h."));
  g_assert_cmpstr (none, ==, "The server’s certificate was refused: it could not be verified.");
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *xdg = od_test_tmpdir ("xdg");
  int status;

  g_setenv ("XDG_DATA_HOME", xdg, TRUE);
  g_test_init (&argc, &argv, NULL);
  if (g_getenv ("OD_SERVER_BIN") == NULL)
    {
      g_test_skip ("OD_SERVER_BIN is not set");
      od_test_rmdir (xdg);
      return 77;
    }
  dir = od_test_certs_make ();

  g_test_add_func ("/tls/explain", test_explain);
  g_test_add_func ("/tls/private-ca", test_private_ca);
  g_test_add_func ("/tls/expired", test_expired);
  g_test_add_func ("/tls/wrong-host", test_wrong_host);
  g_test_add_func ("/tls/ctl-ca-file", test_ctl_ca_file);
  status = g_test_run ();
  od_test_certs_remove (dir);
  od_test_rmdir (xdg);
  g_free (dir);
  return status;
}

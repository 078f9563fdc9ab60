/* SPDX-License-Identifier: GPL-3.0-or-later */

/* orderdesk-server over HTTPS with certificates made here by openssl:
 * a libsoup client refuses an expired, a self-signed, a wrong-host and
 * an unknown-CA certificate, and accepts a certificate only when the
 * operator trusts its CA file explicitly (SoupSession "tls-database"). */

#include "od-rel-server.h"
#include "od-test-certs.h"

#include <string.h>
#include <unistd.h>

static char *dir;      /* certificates of this run */

typedef struct
{
  GTlsCertificateFlags errors;
  gboolean             asked;
} Seen;

/* Records why the certificate was refused and keeps refusing it: an
 * application that connects this handler must still say no. */
static gboolean
on_accept_certificate (SoupMessage          *msg,
                       GTlsCertificate      *certificate,
                       GTlsCertificateFlags  errors,
                       gpointer              user_data)
{
  Seen *seen = user_data;

  seen->asked = TRUE;
  seen->errors = errors;
  return FALSE;
}

/* GET /v1/health over HTTPS; trust is the CA file the client trusts, or
 * NULL for the system's store.  Returns the status (0 when refused). */
static guint
get_health (OdRelServer *server,
            const char  *trust,
            Seen        *seen)
{
  g_autoptr(SoupSession) session = soup_session_new_with_options ("timeout", 20, NULL);
  g_autofree char *url = g_strconcat (od_rel_server_url (server), "/v1/health", NULL);
  g_autoptr(SoupMessage) msg = soup_message_new ("GET", url);
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_true (g_str_has_prefix (od_rel_server_url (server), "https://127.0.0.1:"));
  if (trust != NULL)
    {
      g_autofree char *path = g_build_filename (dir, trust, NULL);
      g_autoptr(GTlsDatabase) database = g_tls_file_database_new (path, &error);

      g_assert_no_error (error);
      soup_session_set_tls_database (session, database);
    }
  *seen = (Seen) { 0, FALSE };
  g_signal_connect (msg, "accept-certificate", G_CALLBACK (on_accept_certificate), seen);
  body = soup_session_send_and_read (session, msg, NULL, &error);
  if (body == NULL)
    {
      g_test_message ("%s trusting %s: %s", url, trust ? trust : "the system store",
                      error->message);
      g_assert_true (g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE));
      g_assert_true (seen->asked);
      g_assert_cmpint (seen->errors, !=, 0);
      return 0;
    }
  g_assert_false (seen->asked);
  return soup_message_get_status (msg);
}

static OdRelServer *
start_with (const char *name)
{
  g_autofree char *cert = g_strdup_printf ("--tls-cert=%s/%s.pem", dir, name);
  g_autofree char *key = g_strdup_printf ("--tls-key=%s/%s.key", dir, name);

  return od_rel_server_new (cert, key, NULL);
}

static void
test_good (void)
{
  g_autoptr(OdRelServer) server = start_with ("good");
  Seen seen;

  /* Our test CA is in no system store: refused by default. */
  g_assert_cmpuint (get_health (server, NULL, &seen), ==, 0);
  g_assert_true (seen.errors & G_TLS_CERTIFICATE_UNKNOWN_CA);
  /* Trusting another CA does not help. */
  g_assert_cmpuint (get_health (server, "other-ca.pem", &seen), ==, 0);
  g_assert_true (seen.errors & G_TLS_CERTIFICATE_UNKNOWN_CA);
  /* Trusting its CA explicitly: accepted. */
  g_assert_cmpuint (get_health (server, "ca.pem", &seen), ==, 200);
}

static void
test_expired (void)
{
  g_autoptr(OdRelServer) server = start_with ("expired");
  Seen seen;

  g_assert_cmpuint (get_health (server, NULL, &seen), ==, 0);
  /* Even with its CA trusted, an expired certificate is refused. */
  g_assert_cmpuint (get_health (server, "ca.pem", &seen), ==, 0);
  g_assert_true (seen.errors & G_TLS_CERTIFICATE_EXPIRED);
}

static void
test_wrong_host (void)
{
  g_autoptr(OdRelServer) server = start_with ("wrong-host");
  Seen seen;

  g_assert_cmpuint (get_health (server, NULL, &seen), ==, 0);
  g_assert_cmpuint (get_health (server, "ca.pem", &seen), ==, 0);
  g_assert_true (seen.errors & G_TLS_CERTIFICATE_BAD_IDENTITY);
}

static void
test_self_signed (void)
{
  g_autoptr(OdRelServer) server = start_with ("self-signed");
  Seen seen;

  g_assert_cmpuint (get_health (server, NULL, &seen), ==, 0);
  g_assert_true (seen.errors & G_TLS_CERTIFICATE_UNKNOWN_CA);
  g_assert_cmpuint (get_health (server, "ca.pem", &seen), ==, 0);
  g_assert_true (seen.errors & G_TLS_CERTIFICATE_UNKNOWN_CA);
  /* The operator trusts exactly this certificate as its own CA file. */
  g_assert_cmpuint (get_health (server, "self-signed.pem", &seen), ==, 200);
}

static void
test_unknown_ca (void)
{
  g_autoptr(OdRelServer) server = start_with ("unknown-ca");
  Seen seen;

  g_assert_cmpuint (get_health (server, NULL, &seen), ==, 0);
  g_assert_true (seen.errors & G_TLS_CERTIFICATE_UNKNOWN_CA);
  g_assert_cmpuint (get_health (server, "ca.pem", &seen), ==, 0);
  g_assert_true (seen.errors & G_TLS_CERTIFICATE_UNKNOWN_CA);
  g_assert_cmpuint (get_health (server, "other-ca.pem", &seen), ==, 200);
}

/* Plain HTTP to the HTTPS port gets no answer the client could take for
 * a success. */
static void
test_plain_http_refused (void)
{
  g_autoptr(OdRelServer) server = start_with ("good");
  g_autoptr(SoupSession) session = soup_session_new_with_options ("timeout", 10, NULL);
  g_autofree char *url = g_strdup_printf ("http://127.0.0.1:%u/v1/health",
                                          od_rel_server_port (server));
  g_autoptr(GError) error = NULL;
  guint status = od_rel_send (session, "GET", url, NULL, NULL, NULL, &error);

  g_assert_true (status == 0 || status >= 400);
  g_assert_true (od_rel_server_alive (server));
}

/* An RSA certificate: with one, GnuTLS would also offer static-RSA key
 * exchange and CBC suites unless the server restricts them. */
static void
make_rsa_certificate (void)
{
  g_autofree char *cert = g_build_filename (dir, "rsa.pem", NULL);
  g_autofree char *key = g_build_filename (dir, "rsa.key", NULL);
  const char *argv[] = { "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                         "-keyout", key, "-out", cert, NULL };
  g_autoptr(GError) error = NULL;
  int status;

  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL,
                               G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL
                               | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, &status,
                               &error));
  g_assert_no_error (error);
  g_assert_true (g_spawn_check_wait_status (status, NULL));
}

/* openssl s_client with the given options; returns the protocol and
 * cipher negotiated ("TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"), or NULL when
 * the handshake failed. */
static char *
s_client (OdRelServer *server,
          const char  *version,
          const char  *ciphers)
{
  g_autofree char *connect = g_strdup_printf ("127.0.0.1:%u", od_rel_server_port (server));
  g_autofree char *out = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  const char *line;
  int status;

  g_ptr_array_add (argv, "openssl");
  g_ptr_array_add (argv, "s_client");
  g_ptr_array_add (argv, "-connect");
  g_ptr_array_add (argv, connect);
  g_ptr_array_add (argv, (char *) version);
  if (ciphers != NULL)
    {
      g_ptr_array_add (argv, g_str_equal (version, "-tls1_3") ? "-ciphersuites" : "-cipher");
      g_ptr_array_add (argv, (char *) ciphers);
    }
  g_ptr_array_add (argv, NULL);
  /* stdin is /dev/null: s_client handshakes, then leaves. */
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL,
                               G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, &out,
                               NULL, &status, &error));
  g_assert_no_error (error);
  line = strstr (out, "\nNew, ");
  if (!g_spawn_check_wait_status (status, NULL) || line == NULL
      || g_str_has_prefix (line, "\nNew, (NONE)"))
    return NULL;
  {
    g_auto(GStrv) words = g_strsplit_set (line + 6, " ,\n", 0);

    /* "TLSv1.2, Cipher is ECDHE-…" */
    return g_strdup_printf ("%s %s", words[0], words[4]);
  }
}

static void
test_versions_and_suites (void)
{
  g_autoptr(OdRelServer) server = start_with ("rsa");
  struct { const char *version; const char *ciphers; const char *expected; } rows[] = {
    { "-tls1", "ALL:@SECLEVEL=0", NULL },
    { "-tls1_1", "ALL:@SECLEVEL=0", NULL },
    /* Static RSA, CBC or not. */
    { "-tls1_2", "AES128-SHA:@SECLEVEL=0", NULL },
    { "-tls1_2", "AES128-GCM-SHA256:AES256-GCM-SHA384", NULL },
    /* Forward secret but CBC. */
    { "-tls1_2", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:@SECLEVEL=0", NULL },
    { "-tls1_2", "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384", NULL },
    { "-tls1_2", "DHE-RSA-AES128-SHA:DHE-RSA-AES256-SHA256:@SECLEVEL=0", NULL },
    /* What remains. */
    { "-tls1_2", "ECDHE-RSA-AES128-GCM-SHA256", "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256" },
    { "-tls1_2", "ECDHE-RSA-CHACHA20-POLY1305", "TLSv1.2 ECDHE-RSA-CHACHA20-POLY1305" },
    { "-tls1_3", NULL, "TLSv1.3 TLS_AES_256_GCM_SHA384" },
    { "-tls1_3", "TLS_CHACHA20_POLY1305_SHA256", "TLSv1.3 TLS_CHACHA20_POLY1305_SHA256" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (rows); i++)
    {
      g_autofree char *got = s_client (server, rows[i].version, rows[i].ciphers);

      g_test_message ("%s %s: %s", rows[i].version, rows[i].ciphers ? rows[i].ciphers : "",
                      got ? got : "refused");
      g_assert_cmpstr (got, ==, rows[i].expected);
    }
  g_assert_true (od_rel_server_alive (server));
}

/* A TLS connection to the server, certificate not checked (the tests
 * above check it). */
static GIOStream *
tls_connect (OdRelServer *server)
{
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketConnection) tcp = NULL;
  g_autoptr(GError) error = NULL;
  GIOStream *tls;

  tcp = g_socket_client_connect_to_host (client, "127.0.0.1", od_rel_server_port (server), NULL,
                                         &error);
  g_assert_no_error (error);
  tls = g_tls_client_connection_new (G_IO_STREAM (tcp), NULL, &error);
  g_assert_no_error (error);
  G_GNUC_BEGIN_IGNORE_DEPRECATIONS
  g_tls_client_connection_set_validation_flags (G_TLS_CLIENT_CONNECTION (tls), 0);
  G_GNUC_END_IGNORE_DEPRECATIONS
  g_tls_connection_handshake (G_TLS_CONNECTION (tls), NULL, &error);
  g_assert_no_error (error);
  return tls;
}

/* Reads what the server sends until it closes; TLS errors end it too. */
static char *
tls_read_all (GIOStream *tls)
{
  g_autoptr(GString) in = g_string_new (NULL);
  char buf[4096];
  gssize n;

  while ((n = g_input_stream_read (g_io_stream_get_input_stream (tls), buf, sizeof buf, NULL,
                                   NULL)) > 0)
    g_string_append_len (in, buf, n);
  return g_string_free (g_steal_pointer (&in), FALSE);
}

/* The answers the server writes outside libsoup (408 after the request
 * timeout, 413 for a chunked body that grows too large) go through TLS:
 * the client reads them as HTTP, not as a broken record. */
static void
test_raw_answers_through_tls (void)
{
  g_autofree char *cert = g_strdup_printf ("--tls-cert=%s/good.pem", dir);
  g_autofree char *key = g_strdup_printf ("--tls-key=%s/good.key", dir);
  g_autoptr(OdRelServer) server = od_rel_server_new (cert, key, "--request-timeout=1", NULL);

  {
    g_autoptr(GIOStream) tls = tls_connect (server);
    static const char partial[] = "GET /v1/head HTTP/1.1\r\nHost: x\r\n";
    g_autofree char *answer = NULL;

    g_output_stream_write_all (g_io_stream_get_output_stream (tls), partial, strlen (partial),
                               NULL, NULL, NULL);
    answer = tls_read_all (tls);
    g_test_message ("after the request timeout: %.40s", answer);
    g_assert_true (g_str_has_prefix (answer, "HTTP/1.1 408 "));
    g_assert_nonnull (strstr (answer, "\"request_timeout\""));
  }
  {
    g_autoptr(GIOStream) tls = tls_connect (server);
    g_autofree char *head = g_strdup_printf (
      "POST /v1/commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
      "Content-Type: application/json\r\nIdempotency-Key: big\r\nTransfer-Encoding: chunked\r\n\r\n"
      "11170\r\n", OD_REL_OPERATOR);
    g_autofree char *chunk = g_strnfill (0x11170, ' ');
    g_autofree char *answer = NULL;

    g_output_stream_write_all (g_io_stream_get_output_stream (tls), head, strlen (head), NULL,
                               NULL, NULL);
    g_output_stream_write_all (g_io_stream_get_output_stream (tls), chunk, strlen (chunk), NULL,
                               NULL, NULL);
    answer = tls_read_all (tls);
    g_test_message ("chunked body over 64 KiB: %.40s", answer);
    g_assert_true (g_str_has_prefix (answer, "HTTP/1.1 413 "));
    g_assert_nonnull (strstr (answer, "\"payload_too_large\""));
  }
  g_assert_true (od_rel_server_alive (server));
}

int
main (int    argc,
      char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  dir = od_test_certs_make ();
  make_rsa_certificate ();

  g_test_add_func ("/tls/good", test_good);
  g_test_add_func ("/tls/expired", test_expired);
  g_test_add_func ("/tls/wrong-host", test_wrong_host);
  g_test_add_func ("/tls/self-signed", test_self_signed);
  g_test_add_func ("/tls/unknown-ca", test_unknown_ca);
  g_test_add_func ("/tls/plain-http-refused", test_plain_http_refused);
  g_test_add_func ("/tls/versions-and-suites", test_versions_and_suites);
  g_test_add_func ("/tls/raw-answers-through-tls", test_raw_answers_through_tls);
  status = g_test_run ();
  od_test_certs_remove (dir);
  g_free (dir);
  return status;
}

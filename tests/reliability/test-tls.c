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

int
main (int    argc,
      char **argv)
{
  g_autoptr(GError) error = NULL;
  int status;

  g_test_init (&argc, &argv, NULL);
  dir = od_test_certs_make ();

  g_test_add_func ("/tls/good", test_good);
  g_test_add_func ("/tls/expired", test_expired);
  g_test_add_func ("/tls/wrong-host", test_wrong_host);
  g_test_add_func ("/tls/self-signed", test_self_signed);
  g_test_add_func ("/tls/unknown-ca", test_unknown_ca);
  g_test_add_func ("/tls/plain-http-refused", test_plain_http_refused);
  status = g_test_run ();
  od_test_certs_remove (dir);
  g_free (dir);
  return status;
}

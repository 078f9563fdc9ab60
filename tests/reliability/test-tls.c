/* SPDX-License-Identifier: GPL-3.0-or-later */

/* orderdesk-server over HTTPS with certificates made here by openssl:
 * a libsoup client refuses an expired, a self-signed, a wrong-host and
 * an unknown-CA certificate, and accepts a certificate only when the
 * operator trusts its CA file explicitly (SoupSession "tls-database"). */

#include "od-rel-server.h"

#include <string.h>
#include <unistd.h>

static char *dir;      /* certificates of this run */
static char *openssl;

static void
run_openssl (const char *first_arg,
             ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status = 0;
  va_list ap;

  g_ptr_array_add (argv, openssl);
  va_start (ap, first_arg);
  for (const char *arg = first_arg; arg != NULL; arg = va_arg (ap, const char *))
    g_ptr_array_add (argv, (gpointer) arg);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  g_spawn_sync (dir, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                &out, &err, &status, &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("openssl %s failed:\n%s%s", first_arg, out, err);
}

static void
write_file (const char *name,
            const char *text)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

static void
make_ca (const char *name)
{
  g_autofree char *key = g_strconcat (name, ".key", NULL);
  g_autofree char *pem = g_strconcat (name, ".pem", NULL);
  g_autofree char *subject = g_strconcat ("/CN=OrderDesk test ", name, NULL);

  run_openssl ("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-keyout", key, "-out", pem, "-days", "30", "-subj", subject,
               "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign,cRLSign", NULL);
}

/* A server certificate signed by ca with the given subjectAltName; with
 * expired, its validity ended long ago (openssl ca sets the dates). */
static void
make_leaf (const char *name,
           const char *ca,
           const char *san,
           gboolean    expired)
{
  g_autofree char *key = g_strconcat (name, ".key", NULL);
  g_autofree char *csr = g_strconcat (name, ".csr", NULL);
  g_autofree char *pem = g_strconcat (name, ".pem", NULL);
  g_autofree char *ca_key = g_strconcat (ca, ".key", NULL);
  g_autofree char *ca_pem = g_strconcat (ca, ".pem", NULL);
  g_autofree char *conf = g_strdup_printf (
    "[ca]\ndefault_ca = test\n"
    "[test]\ndir = .\ndatabase = index-%s.txt\nnew_certs_dir = .\nserial = serial-%s\n"
    "default_md = sha256\npolicy = any\ncopy_extensions = none\nunique_subject = no\n"
    "x509_extensions = leaf\n"
    "[any]\ncommonName = supplied\n"
    "[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\nsubjectAltName = %s\n", name, name, san);
  g_autofree char *conf_name = g_strconcat (name, ".cnf", NULL);
  g_autofree char *index_name = g_strconcat ("index-", name, ".txt", NULL);
  g_autofree char *serial_name = g_strconcat ("serial-", name, NULL);
  g_autofree char *serial = g_strdup_printf ("%08X%08X\n", g_random_int (), g_random_int ());

  write_file (conf_name, conf);
  write_file (index_name, "");
  write_file (serial_name, serial);
  run_openssl ("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=orderdesk test server", NULL);
  run_openssl ("ca", "-batch", "-config", conf_name, "-cert", ca_pem, "-keyfile", ca_key,
               "-in", csr, "-out", pem, "-notext",
               "-startdate", expired ? "20200101000000Z" : "20250101000000Z",
               "-enddate", expired ? "20200201000000Z" : "20991231000000Z", NULL);
}

static void
make_certificates (void)
{
  make_ca ("ca");
  make_ca ("other-ca");
  make_leaf ("good", "ca", "IP:127.0.0.1,DNS:localhost", FALSE);
  make_leaf ("expired", "ca", "IP:127.0.0.1,DNS:localhost", TRUE);
  make_leaf ("wrong-host", "ca", "DNS:orders.example.com", FALSE);
  make_leaf ("unknown-ca", "other-ca", "IP:127.0.0.1,DNS:localhost", FALSE);
  run_openssl ("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-keyout", "self-signed.key", "-out", "self-signed.pem", "-days", "30",
               "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
               NULL);
}

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

static void
remove_dir (void)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);

      unlink (path);
    }
  rmdir (dir);
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(GError) error = NULL;
  int status;

  g_test_init (&argc, &argv, NULL);
  openssl = g_find_program_in_path ("openssl");
  if (openssl == NULL)
    g_error ("openssl is needed to make the test certificates");
  dir = g_dir_make_tmp ("od-tls-XXXXXX", &error);
  g_assert_no_error (error);
  make_certificates ();

  g_test_add_func ("/tls/good", test_good);
  g_test_add_func ("/tls/expired", test_expired);
  g_test_add_func ("/tls/wrong-host", test_wrong_host);
  g_test_add_func ("/tls/self-signed", test_self_signed);
  g_test_add_func ("/tls/unknown-ca", test_unknown_ca);
  g_test_add_func ("/tls/plain-http-refused", test_plain_http_refused);
  status = g_test_run ();
  remove_dir ();
  return status;
}

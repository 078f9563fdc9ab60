/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-test-certs.h"

#include <gio/gio.h>
#include <glib/gstdio.h>

static void
run_openssl (const char *dir,
             const char *first_arg,
             ...)
{
  g_autofree char *openssl = g_find_program_in_path ("openssl");
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status = 0;
  va_list ap;

  if (openssl == NULL)
    g_error ("openssl is needed to make the test certificates");
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
write_file (const char *dir,
            const char *name,
            const char *text)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

static void
make_ca (const char *dir,
         const char *name)
{
  g_autofree char *key = g_strconcat (name, ".key", NULL);
  g_autofree char *pem = g_strconcat (name, ".pem", NULL);
  g_autofree char *subject = g_strconcat ("/CN=OrderDesk test ", name, NULL);

  run_openssl (dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-keyout", key, "-out", pem, "-days", "30", "-subj", subject,
               "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign,cRLSign", NULL);
}

/* A server certificate signed by ca with the given subjectAltName; with
 * expired, its validity ended long ago (openssl ca sets the dates). */
static void
make_leaf (const char *dir,
           const char *name,
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

  write_file (dir, conf_name, conf);
  write_file (dir, index_name, "");
  write_file (dir, serial_name, serial);
  run_openssl (dir, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=orderdesk test server", NULL);
  run_openssl (dir, "ca", "-batch", "-config", conf_name, "-cert", ca_pem, "-keyfile", ca_key,
               "-in", csr, "-out", pem, "-notext",
               "-startdate", expired ? "20200101000000Z" : "20250101000000Z",
               "-enddate", expired ? "20200201000000Z" : "20991231000000Z", NULL);
}

char *
od_test_certs_make (void)
{
  g_autoptr(GError) error = NULL;
  char *dir = g_dir_make_tmp ("od-certs-XXXXXX", &error);

  g_assert_no_error (error);
  make_ca (dir, "ca");
  make_ca (dir, "other-ca");
  make_leaf (dir, "good", "ca", "IP:127.0.0.1,DNS:localhost", FALSE);
  make_leaf (dir, "expired", "ca", "IP:127.0.0.1,DNS:localhost", TRUE);
  make_leaf (dir, "wrong-host", "ca", "DNS:orders.example.com", FALSE);
  make_leaf (dir, "unknown-ca", "other-ca", "IP:127.0.0.1,DNS:localhost", FALSE);
  run_openssl (dir, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
               "-nodes", "-keyout", "self-signed.key", "-out", "self-signed.pem", "-days", "30",
               "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
               NULL);
  return dir;
}

void
od_test_certs_remove (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);

      g_unlink (path);
    }
  g_rmdir (dir);
}

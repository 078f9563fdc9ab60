/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "od-tls.h"

char *
od_tls_explain (GTlsCertificateFlags flags,
                const char          *host)
{
  g_autoptr(GPtrArray) why = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GString) out = g_string_new ("The server’s certificate was refused: ");

  if (flags & G_TLS_CERTIFICATE_UNKNOWN_CA)
    g_ptr_array_add (why, g_strdup ("it is not signed by an authority this computer trusts "
                                    "(a private server's CA file must be trusted explicitly)"));
  if (flags & G_TLS_CERTIFICATE_BAD_IDENTITY)
    g_ptr_array_add (why, host ? g_strdup_printf ("it was issued for another host than %s", host)
                               : g_strdup ("it was issued for another host"));
  if (flags & G_TLS_CERTIFICATE_NOT_ACTIVATED)
    g_ptr_array_add (why, g_strdup ("it is not valid yet (check the computer’s clock)"));
  if (flags & G_TLS_CERTIFICATE_EXPIRED)
    g_ptr_array_add (why, g_strdup ("it has expired"));
  if (flags & G_TLS_CERTIFICATE_REVOKED)
    g_ptr_array_add (why, g_strdup ("it has been revoked"));
  if (flags & G_TLS_CERTIFICATE_INSECURE)
    g_ptr_array_add (why, g_strdup ("it uses an insecure algorithm"));
  if (why->len == 0)
    g_ptr_array_add (why, g_strdup ("it could not be verified"));
  for (guint i = 0; i < why->len; i++)
    {
      if (i > 0)
        g_string_append (out, i + 1 == why->len ? " and " : ", ");
      g_string_append (out, why->pdata[i]);
    }
  g_string_append_c (out, '.');
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static gboolean
on_accept_certificate (SoupMessage          *msg,
                       GTlsCertificate      *certificate,
                       GTlsCertificateFlags  errors,
                       GTlsCertificateFlags *flags)
{
  *flags = errors ? errors : G_TLS_CERTIFICATE_GENERIC_ERROR;
  return FALSE;
}

void
od_tls_watch_message (SoupMessage          *msg,
                      GTlsCertificateFlags *flags)
{
  *flags = 0;
  g_signal_connect (msg, "accept-certificate", G_CALLBACK (on_accept_certificate), flags);
}

char *
od_tls_describe_failure (SoupMessage          *msg,
                         GTlsCertificateFlags  flags,
                         const GError         *error)
{
  if (flags != 0 || g_error_matches (error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE))
    {
      GUri *uri = msg ? soup_message_get_uri (msg) : NULL;

      return od_tls_explain (flags, uri ? g_uri_get_host (uri) : NULL);
    }
  return g_strdup (error ? error->message : "unknown error");
}

/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <langinfo.h>
#include <locale.h>
#include <string.h>

#include "od-format.h"

/* Grouping and decimal point both come from LC_NUMERIC: with the
 * separator from the translation, English messages under German
 * regional settings (common) showed 1.040.75 EUR. */
char *
od_format_money (gint64      cents,
                 const char *currency)
{
  gboolean negative = cents < 0;
  guint64 abs_cents = negative ? (guint64) -cents : (guint64) cents;
  const char *point = nl_langinfo (RADIXCHAR);

  return g_strdup_printf ("%s%'" G_GUINT64_FORMAT "%s%02u %s",
                          negative ? "−" : "",
                          abs_cents / 100,
                          point != NULL && *point != '\0' ? point : ".",
                          (guint) (abs_cents % 100),
                          currency ? currency : "");
}

/* Accepts "12", "12.5", "12.50" and "12,50"; an amount with more than two
 * decimals is refused rather than rounded. */
gboolean
od_parse_money (const char *text,
                gint64     *cents)
{
  gint64 whole = 0;
  gint64 fraction = 0;
  int fraction_digits = 0;
  gboolean seen_separator = FALSE;
  gboolean seen_digit = FALSE;

  if (text == NULL)
    return FALSE;
  while (*text == ' ')
    text++;
  for (const char *p = text; *p != '\0'; p++)
    {
      if (*p >= '0' && *p <= '9')
        {
          seen_digit = TRUE;
          if (seen_separator)
            {
              if (++fraction_digits > 2)
                return FALSE;
              fraction = fraction * 10 + (*p - '0');
            }
          else
            {
              if (whole > G_MAXINT64 / 1000)
                return FALSE;
              whole = whole * 10 + (*p - '0');
            }
        }
      else if ((*p == '.' || *p == ',') && !seen_separator)
        seen_separator = TRUE;
      else if (*p == ' ' && p[1] == '\0')
        break;
      else
        return FALSE;
    }
  if (!seen_digit)
    return FALSE;
  if (fraction_digits == 1)
    fraction *= 10;
  *cents = whole * 100 + fraction;
  return TRUE;
}

/* The C locale writes dates as "12/05/26", which reads differently
 * around the world: there the console writes them the ISO 8601 way. */
gboolean
od_format_c_time_locale (void)
{
  const char *name = setlocale (LC_TIME, NULL);

  return name == NULL || strcmp (name, "C") == 0 || strcmp (name, "POSIX") == 0
         || g_str_has_prefix (name, "C.");
}

char *
od_format_relative (const char *rfc3339,
                    gint64      now_usec)
{
  g_autoptr(GDateTime) when = NULL;
  g_autoptr(GDateTime) local = NULL;
  gint64 seconds;

  if (rfc3339 == NULL || *rfc3339 == '\0')
    return g_strdup ("");
  when = g_date_time_new_from_iso8601 (rfc3339, NULL);
  if (when == NULL)
    return g_strdup (rfc3339);

  seconds = now_usec / G_USEC_PER_SEC - g_date_time_to_unix (when);
  if (seconds < 0)
    seconds = 0;
  if (seconds < 45)
    return g_strdup (_("just now"));
  /* The plural form is chosen from the number printed. */
  if (seconds < 3600)
    {
      int minutes = MAX (1, (int) (seconds / 60));

      return g_strdup_printf (ngettext ("%d minute ago", "%d minutes ago", minutes), minutes);
    }
  if (seconds < 86400)
    {
      int hours = (int) (seconds / 3600);

      return g_strdup_printf (ngettext ("%d hour ago", "%d hours ago", hours), hours);
    }
  if (seconds < 7 * 86400)
    {
      int days = (int) (seconds / 86400);

      return g_strdup_printf (ngettext ("%d day ago", "%d days ago", days), days);
    }
  local = g_date_time_to_local (when);
  return g_date_time_format (local, od_format_c_time_locale () ? "%Y-%m-%d" : "%x");
}

char *
od_format_timestamp (const char *rfc3339)
{
  g_autoptr(GDateTime) when = NULL;
  g_autoptr(GDateTime) local = NULL;

  if (rfc3339 == NULL)
    return g_strdup ("");
  when = g_date_time_new_from_iso8601 (rfc3339, NULL);
  if (when == NULL)
    return g_strdup (rfc3339);
  local = g_date_time_to_local (when);
  if (od_format_c_time_locale ())
    return g_date_time_format (local, "%Y-%m-%d %H:%M:%S");
  /* TRANSLATORS: a date and time, see g_date_time_format() */
  return g_date_time_format (local, _("%x %X"));
}

/* Indexed by OdOrderStatus: a new status must add its label and class
 * here (the assertions keep the tables as long as the enum). */
static const struct
{
  const char *label;
  const char *css_class;
} status_info[] = {
  { NC_("order status", "Unknown"), "status-draft" },
  { NC_("order status", "Draft"), "status-draft" },
  { NC_("order status", "Placed"), "status-placed" },
  { NC_("order status", "Shipped"), "status-shipped" },
  { NC_("order status", "Delivered"), "status-delivered" },
  { NC_("order status", "Cancelled"), "status-cancelled" },
  { NC_("order status", "Partially refunded"), "status-partially-refunded" },
  { NC_("order status", "Refunded"), "status-refunded" },
};

G_STATIC_ASSERT (G_N_ELEMENTS (status_info) == OD_STATUS_N);

const char *
od_format_status (OdOrderStatus status)
{
  if (status >= OD_STATUS_N)
    status = OD_STATUS_NONE;
  return g_dpgettext2 (NULL, "order status", status_info[status].label);
}

const char *
od_status_css_class (OdOrderStatus status)
{
  if (status >= OD_STATUS_N)
    status = OD_STATUS_NONE;
  return status_info[status].css_class;
}

/* Indexed by OdEventType. */
static const char *event_labels[] = {
  NULL,
  N_("Order created"),
  N_("Item added"),
  N_("Item removed"),
  N_("Order placed"),
  N_("Order shipped"),
  N_("Order delivered"),
  N_("Order cancelled"),
  N_("Note added"),
  N_("Order refunded"),
};

G_STATIC_ASSERT (G_N_ELEMENTS (event_labels) == OD_EVENT_N);

const char *
od_format_event_type (const char *type)
{
  OdEventType known = od_event_type_from_name (type);

  /* Unknown event types are shown by their wire name. */
  if (known == OD_EVENT_UNKNOWN)
    return type;
  return _(event_labels[known]);
}

char *
od_format_short_id (const char *order_id)
{
  if (order_id == NULL)
    return g_strdup ("");
  /* UUIDv7 ids begin with the millisecond of creation, so the first 13
   * characters tell orders apart and are a prefix search can find. */
  if (strlen (order_id) == 36)
    return g_strndup (order_id, 13);
  return g_strdup (order_id);
}

/* Why the server's certificate was refused, in the operator's language:
 * one sentence per reason. */
char *
od_format_tls_errors (GTlsCertificateFlags flags,
                      const char          *host)
{
  g_autoptr(GString) out = g_string_new (_("The server’s certificate was refused."));

  if (flags & G_TLS_CERTIFICATE_UNKNOWN_CA)
    {
      g_string_append_c (out, ' ');
      g_string_append (out, _("It is not signed by an authority this computer trusts. For a "
                              "private server, choose its certificate authority file in "
                              "Preferences."));
    }
  if (flags & G_TLS_CERTIFICATE_BAD_IDENTITY)
    {
      g_string_append_c (out, ' ');
      if (host != NULL)
        /* TRANSLATORS: %s is the server's host name or address */
        g_string_append_printf (out, _("It was issued for another host than %s."), host);
      else
        g_string_append (out, _("It was issued for another host."));
    }
  if (flags & G_TLS_CERTIFICATE_NOT_ACTIVATED)
    {
      g_string_append_c (out, ' ');
      g_string_append (out, _("It is not valid yet: check the computer’s clock."));
    }
  if (flags & G_TLS_CERTIFICATE_EXPIRED)
    {
      g_string_append_c (out, ' ');
      g_string_append (out, _("It has expired."));
    }
  if (flags & G_TLS_CERTIFICATE_REVOKED)
    {
      g_string_append_c (out, ' ');
      g_string_append (out, _("It has been revoked."));
    }
  if (flags & G_TLS_CERTIFICATE_INSECURE)
    {
      g_string_append_c (out, ' ');
      g_string_append (out, _("It uses an insecure algorithm."));
    }
  if ((flags & (G_TLS_CERTIFICATE_UNKNOWN_CA | G_TLS_CERTIFICATE_BAD_IDENTITY
                | G_TLS_CERTIFICATE_NOT_ACTIVATED | G_TLS_CERTIFICATE_EXPIRED
                | G_TLS_CERTIFICATE_REVOKED | G_TLS_CERTIFICATE_INSECURE)) == 0)
    {
      g_string_append_c (out, ' ');
      g_string_append (out, _("It could not be verified."));
    }
  return g_string_free (g_steal_pointer (&out), FALSE);
}

char *
od_format_refusal (const char *type,
                   const char *order_id,
                   const char *code,
                   const char *detail)
{
  OdCommandType command_type;
  const char *rule = NULL;

  if (g_strcmp0 (code, od_problem_code_name (OD_PROBLEM_INVALID_STATE)) == 0
      && type != NULL && od_command_type_from_name (type, &command_type))
    rule = od_order_refusal_rule (command_type, order_id, detail);
  if (rule != NULL)
    return g_strdup (_(rule));
  return g_strdup (detail != NULL ? detail : code != NULL ? code : "");
}

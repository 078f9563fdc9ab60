/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <locale.h>
#include <sys/prctl.h>

#include "od-application.h"

int
main (int   argc,
      char *argv[])
{
  g_autoptr(OdApplication) app = NULL;

  /* The console holds the access token: no core dump may carry it. */
  prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);
  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, g_getenv ("ORDERDESK_LOCALEDIR") ? g_getenv ("ORDERDESK_LOCALEDIR") : LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  app = od_application_new (G_APPLICATION_DEFAULT_FLAGS);
  return g_application_run (G_APPLICATION (app), argc, argv);
}

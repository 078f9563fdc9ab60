/* SPDX-License-Identifier: GPL-3.0-or-later */
#include "config.h"

#include <glib/gi18n.h>
#include <locale.h>
#include <stdlib.h>
#include <sys/prctl.h>

#include "od-application.h"

/* Where the catalogues are: ORDERDESK_LOCALEDIR if set; the build tree's
 * compiled po/ (<build>/po/<lang>/LC_MESSAGES) when this is the binary
 * the build made, so `LANGUAGE=de ./build/src/app/orderdesk` is German
 * without installing; else the installed locale directory. */
static char *
find_localedir (void)
{
  const char *env = g_getenv ("ORDERDESK_LOCALEDIR");
  g_autofree char *exe = NULL;
  g_autofree char *exe_dir = NULL;
  g_autofree char *build_dir = NULL;

  if (env != NULL && *env != '\0')
    return g_strdup (env);
  exe = g_file_read_link ("/proc/self/exe", NULL);
  build_dir = realpath (BUILD_APP_DIR, NULL);
  if (exe != NULL && build_dir != NULL)
    {
      exe_dir = g_path_get_dirname (exe);
      if (g_strcmp0 (exe_dir, build_dir) == 0)
        return g_strdup (BUILD_LOCALEDIR);
    }
  return g_strdup (LOCALEDIR);
}

int
main (int   argc,
      char *argv[])
{
  g_autoptr(OdApplication) app = NULL;
  g_autofree char *localedir = find_localedir ();

  /* The console holds the access token: no core dump may carry it. */
  prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);
  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, localedir);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  app = od_application_new (G_APPLICATION_DEFAULT_FLAGS);
  return g_application_run (G_APPLICATION (app), argc, argv);
}

/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Runs a fuzz target over saved inputs without libFuzzer, so that the
 * seed corpus and every crash ever found are checked by each ordinary
 * build (gcc, no sanitizer needed).  Arguments are files or directories;
 * a directory is read in name order, and files whose names start with a
 * dot (.gitkeep) are skipped.  Output is TAP, one test per input. */

#include "od-fuzz.h"

#include <string.h>

static guint n_run;

static void
run_file (const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *contents = NULL;
  gsize len;

  if (!g_file_get_contents (path, &contents, &len, &error))
    {
      printf ("not ok %u - %s: %s\n", ++n_run, path, error->message);
      exit (1);
    }
  /* A private copy of exactly len bytes, so that a read past the input
   * is caught by valgrind or ASan as it would be under libFuzzer. */
  {
    g_autofree uint8_t *copy = g_memdup2 (contents, len);

    fflush (stdout);
    LLVMFuzzerTestOneInput (len ? copy : (const uint8_t *) "", len);
  }
  printf ("ok %u - %s\n", ++n_run, path);
}

static int
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(char * const *) a, *(char * const *) b);
}

static void
run_path (const char *path)
{
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GPtrArray) names = NULL;
  const char *name;

  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      run_file (path);
      return;
    }
  dir = g_dir_open (path, 0, NULL);
  if (dir == NULL)
    return;
  names = g_ptr_array_new_with_free_func (g_free);
  while ((name = g_dir_read_name (dir)) != NULL)
    if (name[0] != '.')
      g_ptr_array_add (names, g_build_filename (path, name, NULL));
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len; i++)
    run_path (g_ptr_array_index (names, i));
}

int
main (int    argc,
      char **argv)
{
  for (int i = 1; i < argc; i++)
    run_path (argv[i]);
  if (n_run == 0)
    {
      printf ("Bail out! no input found\n");
      return 1;
    }
  printf ("1..%u\n", n_run);
  return 0;
}

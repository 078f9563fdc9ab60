/* SPDX-License-Identifier: GPL-3.0-or-later */

/* Target: an error body as the console and orderdeskctl receive it from
 * a server, which may be any server.  od_problem_parse must always give a
 * readable problem, and what it gives must survive being written out
 * again (the console shows it and orderdeskctl prints it as JSON). */

#include "od-fuzz.h"
#include "od-protocol.h"

#include <string.h>

static const guint statuses[] = { 400, 409, 422, 429, 500 };

static void
check_text (const char *text)
{
  OD_FUZZ_CHECK (text != NULL);
  /* Shown in GTK labels, which need UTF-8. */
  OD_FUZZ_CHECK (g_utf8_validate (text, -1, NULL));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data,
                        size_t         size)
{
  for (guint s = 0; s < G_N_ELEMENTS (statuses); s++)
    {
      g_autoptr(OdProblem) problem = od_problem_parse (statuses[s], (const char *) data, size);
      g_autoptr(OdProblem) again = NULL;
      g_autofree char *json = NULL;

      OD_FUZZ_CHECK (problem != NULL);
      OD_FUZZ_CHECK (problem->status == statuses[s]);
      check_text (problem->code_name);
      check_text (problem->title);
      check_text (problem->detail);
      OD_FUZZ_CHECK (problem->code <= OD_PROBLEM_UNKNOWN);
      OD_FUZZ_CHECK (problem->code == od_problem_code_from_name (problem->code_name));
      if (problem->errors != NULL)
        for (guint i = 0; i < problem->errors->len; i++)
          {
            OdFieldError *error = g_ptr_array_index (problem->errors, i);

            check_text (error->field);
            check_text (error->message);
          }

      json = od_problem_to_json (problem);
      again = od_problem_parse (statuses[s], json, strlen (json));
      OD_FUZZ_CHECK (again != NULL);
      OD_FUZZ_CHECK (again->code == problem->code);
      OD_FUZZ_CHECK (strcmp (again->code_name, problem->code_name) == 0);
      OD_FUZZ_CHECK (strcmp (again->title, problem->title) == 0);
      OD_FUZZ_CHECK (strcmp (again->detail, problem->detail) == 0);
      OD_FUZZ_CHECK (again->retry_after == problem->retry_after);
      OD_FUZZ_CHECK (problem->current_version < 0
                     || again->current_version == problem->current_version);
      OD_FUZZ_CHECK ((again->errors ? again->errors->len : 0)
                     == (problem->errors ? problem->errors->len : 0));
    }
  return 0;
}

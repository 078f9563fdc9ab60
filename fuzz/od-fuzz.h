/* SPDX-License-Identifier: GPL-3.0-or-later */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

G_BEGIN_DECLS

/* The entry point every target defines: libFuzzer calls it, and so does
 * od-fuzz-replay.c in builds without libFuzzer. */
int LLVMFuzzerTestOneInput (const uint8_t *data,
                            size_t         size);

/* An invariant of the code under test.  Unlike g_assert it cannot be
 * compiled out, and it aborts so that libFuzzer saves the input. */
#define OD_FUZZ_CHECK(cond)                                             \
  G_STMT_START {                                                        \
    if (G_UNLIKELY (!(cond)))                                           \
      {                                                                 \
        fprintf (stderr, "%s:%d: invariant failed: %s\n",               \
                 __FILE__, __LINE__, #cond);                            \
        abort ();                                                       \
      }                                                                 \
  } G_STMT_END

G_END_DECLS

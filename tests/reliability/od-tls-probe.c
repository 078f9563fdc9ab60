/* SPDX-License-Identifier: GPL-3.0-or-later */

/* A module with a thread-local variable of its own, for
 * test-lsan-dynamic-tls: loaded with dlopen(), its TLS block is dynamic,
 * allocated with malloc() by glibc on each thread's first use. */

#include <stdint.h>

uintptr_t od_tls_probe_touch (void);

static __thread uint64_t od_tls_probe_value;

/* Uses the variable and says where this thread's copy is: the module's
 * only variable sits at the start of the block. */
uintptr_t
od_tls_probe_touch (void)
{
  od_tls_probe_value++;
  return (uintptr_t) &od_tls_probe_value;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Messages through the caller's callback, and array growth. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <bpf/libbpf.h>
#include "internal.h"

static dt_print_fn print_fn;

/* libbpf's own messages (verifier logs, attach failures) are debug output for our callers. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (!print_fn || level == LIBBPF_DEBUG)
		return 0;
	return print_fn(DT_DEBUG, fmt, ap);
}

dt_print_fn dt_set_print(dt_print_fn fn)
{
	dt_print_fn old = print_fn;

	print_fn = fn;
	libbpf_set_print(libbpf_print);
	return old;
}

/* libbpf prints to stderr until told otherwise: the library promises silence by default. */
void dt_quiet_libbpf(void)
{
	static bool done;

	if (!done) {
		libbpf_set_print(libbpf_print);
		done = true;
	}
}

void dt_pr(enum dt_print_level level, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;	/* callers print between a failure and returning -errno */

	if (!print_fn)
		return;
	va_start(ap, fmt);
	print_fn(level, fmt, ap);
	va_end(ap);
	errno = saved;
}

int dt_grow(void **v, size_t *cap, size_t want, size_t sz)
{
	size_t ncap = *cap ? *cap : 64;
	void *nv;

	if (want <= *cap)
		return 0;
	while (ncap < want) {
		if (ncap > SIZE_MAX / 2 / sz)
			return -ENOMEM;
		ncap *= 2;
	}
	nv = realloc(*v, ncap * sz);
	if (!nv)
		return -ENOMEM;
	*v = nv;
	*cap = ncap;
	return 0;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A program of a library user: tests/check_install.sh builds it against an installed
 * libdirtytrace with nothing but `pkg-config --cflags --libs dirtytrace`, runs it, and checks
 * what it prints. It uses only pure calls (no BPF, no root), so it runs anywhere.
 */
#include <stdio.h>
#include <dirtytrace/dirtytrace.h>

int main(void)
{
	struct dt_window *w = dt_window__new(10000000000ull, 16);
	struct dt_rate r;

	if (!w) {
		perror("install_probe: dt_window__new");
		return 1;
	}
	/* two 1 s epochs: 100 then 300 unique pages, 1000 then 3000 raw events */
	if (dt_window__add(w, 0, 1000000000, 1000, 100) ||
	    dt_window__add(w, 1000000000, 2000000000, 3000, 300)) {
		fprintf(stderr, "install_probe: dt_window__add failed\n");
		dt_window__free(w);
		return 1;
	}
	dt_window__rate(w, &r);
	printf("pages_per_s %.1f raw_per_s %.1f epochs %zu source %s\n", r.pages_per_s,
	       r.raw_per_s, r.epochs, dt_source__name(DT_SOURCE_RING_PUSH));
	dt_window__free(w);
	return 0;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

/* Forked tests append here; the parent counts lines after the run. */
static char skip_path[] = "/tmp/dt-skips-XXXXXX";

void dt_test_skip(const char *test, const char *fmt, ...)
{
	char reason[512];
	size_t len = strlen(test);
	va_list ap;
	FILE *f;

	/* Check's START_TEST names the function <test>_fn */
	if (len > 3 && !strcmp(test + len - 3, "_fn"))
		len -= 3;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	fprintf(stderr, "SKIP %.*s: %s\n", (int)len, test, reason);
	f = fopen(skip_path, "a");
	if (f) {
		fprintf(f, "%.*s\n", (int)len, test);
		fclose(f);
	}
}

const char *dt_test_need_root(void)
{
	if (geteuid())
		return "needs root (BPF)";
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return "kernel lacks BTF (/sys/kernel/btf/vmlinux)";
	return NULL;
}

const char *dt_test_need_kvm(void)
{
	const char *why = dt_test_need_root();
	int fd;

	if (why)
		return why;
	fd = open("/dev/kvm", O_RDWR);
	if (fd < 0)
		return "no usable /dev/kvm";
	close(fd);
	return NULL;
}

int dt_test_main(Suite *s, const char *name)
{
	SRunner *sr;
	int fd, run, failed, skipped = 0;
	FILE *f;
	char line[512];

	fd = mkstemp(skip_path);
	if (fd >= 0)
		close(fd);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	run = srunner_ntests_run(sr);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	f = fopen(skip_path, "r");
	while (f && fgets(line, sizeof(line), f))
		skipped++;
	if (f)
		fclose(f);
	unlink(skip_path);
	printf("RESULT %s passed %d failed %d skipped %d\n", name, run - failed - skipped, failed,
	       skipped);
	return failed ? 1 : 0;
}

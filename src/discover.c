// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* VM discovery: loads the task_file iterator, reads its records, unloads it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "internal.h"
#include "discover.skel.h"

int dt_discover_raw(void **bufp, size_t *lenp)
{
	struct discover *skel;
	struct bpf_link *link = NULL;
	unsigned char *buf = NULL;
	size_t len = 0, cap = 0;
	int iter_fd = -1, err;
	ssize_t n;

	*bufp = NULL;
	*lenp = 0;
	dt_quiet_libbpf();
	skel = discover__open_and_load();
	if (!skel) {
		err = -errno;
		pr_debug("failed to load the VM discovery iterator: %s\n", strerror(-err));
		return err;
	}
	link = bpf_program__attach_iter(skel->progs.dt_discover, NULL);
	if (!link) {
		err = -errno;
		pr_debug("failed to attach iter/task_file: %s\n", strerror(-err));
		goto out;
	}
	iter_fd = bpf_iter_create(bpf_link__fd(link));
	if (iter_fd < 0) {
		err = -errno;
		pr_debug("failed to create the discovery iterator: %s\n", strerror(-err));
		goto out;
	}
	for (;;) {
		err = dt_grow((void **)&buf, &cap, len + 16384, 1);
		if (err)
			goto out;
		n = read(iter_fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err = -errno;
			pr_debug("failed to read the discovery iterator: %s\n", strerror(-err));
			goto out;
		}
		if (n == 0)
			break;
		len += n;
	}
	*bufp = buf;
	*lenp = len;
	buf = NULL;
	err = 0;
out:
	free(buf);
	if (iter_fd >= 0)
		close(iter_fd);
	bpf_link__destroy(link);
	discover__destroy(skel);
	return err;
}

int dt_vms__discover(struct dt_vm_list **out)
{
	void *buf;
	size_t len;
	int err;

	*out = NULL;
	err = dt_discover_raw(&buf, &len);
	if (err)
		return err;
	err = dt_vms__parse(buf, len, out);
	free(buf);
	return err;
}

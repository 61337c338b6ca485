// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* VM discovery: the task_file iterator, loaded once per user (a tracer keeps it), read per pass. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "internal.h"
#include "discover.skel.h"

/* The iterator, loaded and attached once: a tracer keeps one for its refreshes. */
struct dt_discoverer {
	struct discover *skel;
	struct bpf_link *link;
};

void dt_discoverer__close(struct dt_discoverer *d)
{
	if (!d)
		return;
	bpf_link__destroy(d->link);
	discover__destroy(d->skel);
	free(d);
}

struct dt_discoverer *dt_discoverer__open(void)
{
	struct dt_discoverer *d = calloc(1, sizeof(*d));
	int err;

	if (!d)
		return NULL;
	dt_quiet_libbpf();
	d->skel = discover__open_and_load();
	if (!d->skel) {
		err = -errno;
		pr_debug("failed to load the VM discovery iterator: %s\n", strerror(-err));
		goto fail;
	}
	d->link = bpf_program__attach_iter(d->skel->progs.dt_discover, NULL);
	if (!d->link) {
		err = -errno;
		pr_debug("failed to attach iter/task_file: %s\n", strerror(-err));
		goto fail;
	}
	return d;
fail:
	dt_discoverer__close(d);
	errno = -err;
	return NULL;
}

/* One pass of the iterator: its raw records (malloc'd). */
int dt_discoverer__read(struct dt_discoverer *d, void **bufp, size_t *lenp)
{
	unsigned char *buf = NULL;
	size_t len = 0, cap = 0;
	int iter_fd, err;
	ssize_t n;

	*bufp = NULL;
	*lenp = 0;
	iter_fd = bpf_iter_create(bpf_link__fd(d->link));
	if (iter_fd < 0) {
		err = -errno;
		pr_debug("failed to create the discovery iterator: %s\n", strerror(-err));
		return err;
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
	close(iter_fd);
	return err;
}

int dt_discoverer__vms(struct dt_discoverer *d, struct dt_vm_list **out)
{
	void *buf;
	size_t len;
	int err;

	*out = NULL;
	err = dt_discoverer__read(d, &buf, &len);
	if (err)
		return err;
	err = dt_vms__parse(buf, len, out);
	free(buf);
	return err;
}

int dt_discover_raw(void **bufp, size_t *lenp)
{
	struct dt_discoverer *d = dt_discoverer__open();
	int err;

	*bufp = NULL;
	*lenp = 0;
	if (!d)
		return -errno;
	err = dt_discoverer__read(d, bufp, lenp);
	dt_discoverer__close(d);
	return err;
}

int dt_vms__discover(struct dt_vm_list **out)
{
	struct dt_discoverer *d = dt_discoverer__open();
	int err;

	*out = NULL;
	if (!d)
		return -errno;
	err = dt_discoverer__vms(d, out);
	dt_discoverer__close(d);
	return err;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A minimal QMP client: enough to ask a QEMU to keep dirty logging on while we watch, and to put
 * things back. QMP speaks one JSON object per line; asynchronous events may come between a
 * command and its answer and are skipped.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include "internal.h"

#define QMP_TIMEOUT_MS 5000
/* A limit no guest reaches (MB/s): dirty logging on, no throttling. */
#define NO_LIMIT_MBPS 1000000000ull

struct dt_qmp {
	int fd;
	pid_t pid;
	bool holding;		/* we set the dirty limit and must cancel it */
	char buf[65536];
	size_t len;
};

/* Reads one line (without the newline) into out; 0 or -errno (-ETIMEDOUT, -ECONNRESET). */
static int read_line(struct dt_qmp *q, char *out, size_t sz)
{
	for (;;) {
		char *nl = memchr(q->buf, '\n', q->len);
		struct pollfd p = { .fd = q->fd, .events = POLLIN };
		ssize_t n;

		if (nl) {
			size_t l = nl - q->buf;

			snprintf(out, sz, "%.*s", (int)(l && nl[-1] == '\r' ? l - 1 : l), q->buf);
			q->len -= l + 1;
			memmove(q->buf, nl + 1, q->len);
			return 0;
		}
		if (q->len == sizeof(q->buf))
			return -EMSGSIZE;
		n = poll(&p, 1, QMP_TIMEOUT_MS);
		if (n == 0)
			return -ETIMEDOUT;
		if (n < 0)
			return errno == EINTR ? -EINTR : -errno;
		n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			q->len += n;
	}
}

int dt_qmp__execute(struct dt_qmp *q, const char *cmd, char *resp, size_t sz)
{
	char line[8192];
	size_t len = strlen(cmd);
	int err;

	if (write(q->fd, cmd, len) != (ssize_t)len || write(q->fd, "\n", 1) != 1)
		return -errno;
	for (;;) {
		err = read_line(q, line, sizeof(line));
		if (err)
			return err;
		if (!strncmp(line, "{\"event\"", 8) || !strncmp(line, "{\"timestamp\"", 12))
			continue;
		if (resp)
			snprintf(resp, sz, "%s", line);
		return strstr(line, "\"return\"") ? 0 : -EREMOTEIO;
	}
}

struct dt_qmp *dt_qmp__open(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct dt_qmp *q;
	char line[4096];
	int err;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		errno = ENAMETOOLONG;
		return NULL;
	}
	q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	strcpy(addr.sun_path, path);
	q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&addr, sizeof(addr))) {
		err = -errno;
		goto fail;
	}
	/* the peer's pid: which VM this socket controls */
	if (!getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl))
		q->pid = cred.pid;
	err = read_line(q, line, sizeof(line));
	if (!err && !strstr(line, "\"QMP\""))
		err = -EPROTO;	/* not a QMP greeting */
	if (!err)
		err = dt_qmp__execute(q, "{\"execute\":\"qmp_capabilities\"}", NULL, 0);
	if (err)
		goto fail;
	return q;
fail:
	if (q->fd >= 0)
		close(q->fd);
	free(q);
	errno = -err;
	return NULL;
}

pid_t dt_qmp__pid(const struct dt_qmp *q)
{
	return q->pid;
}

int dt_qmp__hold_dirty_logging(struct dt_qmp *q, char *why, size_t sz)
{
	char resp[4096], cmd[160];
	int err;

	if (q->holding)
		return 0;
	err = dt_qmp__execute(q, "{\"execute\":\"query-vcpu-dirty-limit\"}", resp, sizeof(resp));
	if (err) {
		snprintf(why, sz, "query-vcpu-dirty-limit: %s", err == -EREMOTEIO ? resp : strerror(-err));
		return err;
	}
	/* a limit someone else set already keeps logging on: leave it, and leave it alone later */
	if (strstr(resp, "limit-rate"))
		return 0;
	snprintf(cmd, sizeof(cmd), "{\"execute\":\"set-vcpu-dirty-limit\","
		 "\"arguments\":{\"dirty-rate\":%llu}}", NO_LIMIT_MBPS);
	err = dt_qmp__execute(q, cmd, resp, sizeof(resp));
	if (err) {
		snprintf(why, sz, "set-vcpu-dirty-limit: %s", err == -EREMOTEIO ? resp : strerror(-err));
		return err;
	}
	q->holding = true;
	return 0;
}

int dt_qmp__release(struct dt_qmp *q)
{
	int err;

	if (!q->holding)
		return 0;
	err = dt_qmp__execute(q, "{\"execute\":\"cancel-vcpu-dirty-limit\"}", NULL, 0);
	if (!err)
		q->holding = false;
	return err;
}

void dt_qmp__close(struct dt_qmp *q)
{
	if (!q)
		return;
	dt_qmp__release(q);
	close(q->fd);
	free(q);
}

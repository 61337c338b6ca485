// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dirtytrace against a real VMM: QEMU runs tests/qemu-guest.S, a guest that writes exactly 64
 * known pages and nothing else, and `dirtytrace gfns` must list exactly those pages. QEMU keeps
 * dirty logging off while idle, so the test turns it on through QMP with calc-dirty-rate in
 * dirty-ring mode, which logs for its calc window only. Tags: qemu, slow.
 *
 * Check's fork mode _exit()s a test on a failed assertion, which would leave QEMU running and the
 * temp dir behind: the scenarios below return an error with a message instead, the caller cleans
 * up, and only then asserts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "testlib.h"

#define GUEST_ELF	"qemu-guest.elf"
/* tests/qemu-guest.S: GUEST_BASE >> 12 and GUEST_NPAGES */
#define GUEST_GFN	0x200
#define GUEST_NPAGES	64

struct run {
	char dir[32];		/* temp dir: QMP socket and the children's output */
	bool have_dir;
	char elf[PATH_MAX];
	char tool_path[PATH_MAX];
	pid_t qemu, qemu_pid;	/* qemu: 0 once reaped; qemu_pid stays for messages */
	pid_t tool;		/* 0 once reaped */
	int qmp;
	char rbuf[1 << 14];	/* QMP bytes read but not yet consumed as lines */
	size_t rlen;
	char resp[1 << 14];	/* the last QMP response */
	int tool_status;
	bool bitmap;		/* boot without the dirty ring */
	uint64_t boot_ms;	/* QEMU start to the guest's first full sweep */
	char *out, *err;	/* the tool's stdout and stderr, once it exited */
	char msg[1024];		/* why the scenario failed */
};

__attribute__((format(printf, 2, 3)))
static void set_msg(struct run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);	/* long QMP answers are cut: fine */
	va_end(ap);
}

/* Records why the scenario fails and returns from it. */
#define FAIL_IF(r, cond, ...)							\
	do {									\
		if (cond) {							\
			set_msg(r, __VA_ARGS__);				\
			return -1;						\
		}								\
	} while (0)

static void in_dir(const struct run *r, const char *name, char *out, size_t sz)
{
	snprintf(out, sz, "%s/%s", r->dir, name);
}

/* The whole file as a string ("" when missing), for messages and output checks. */
static char *read_all(const char *path)
{
	char *s = dt_test_read_file(path, NULL);

	return s ? s : strdup("");
}

/* The tool, and the guest next to the test binaries (see dt_test_find_built). */
static int find_files(struct run *r)
{
	const char *bin = getenv("DT_BIN") ?: ".output/bin";

	snprintf(r->tool_path, sizeof(r->tool_path), "%s/dirtytrace", bin);
	FAIL_IF(r, access(r->tool_path, X_OK), "no tool at %s (set DT_BIN)", r->tool_path);
	FAIL_IF(r, dt_test_find_built(GUEST_ELF, r->elf, sizeof(r->elf)),
		"no guest " GUEST_ELF " next to this test nor at %s: build it from "
		"tests/qemu-guest.S", r->elf);
	return 0;
}

static void describe_status(int status, char *buf, size_t sz)
{
	if (WIFEXITED(status))
		snprintf(buf, sz, "exit status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sz, "signal %d", WTERMSIG(status));
	else
		snprintf(buf, sz, "status %#x", status);
}

/* Fails the scenario if QEMU is gone: every later step would only time out. */
static int qemu_alive(struct run *r)
{
	char how[64];
	int status;

	if (r->qemu && waitpid(r->qemu, &status, WNOHANG) == r->qemu) {
		r->qemu = 0;
		describe_status(status, how, sizeof(how));
		FAIL_IF(r, true, "QEMU exited early (%s)", how);
	}
	FAIL_IF(r, !r->qemu, "QEMU is not running");
	return 0;
}

/* One QMP line (responses and events are one line each), without its CR LF. */
static int qmp_line(struct run *r, char *line, size_t sz, int timeout_ms)
{
	uint64_t end = dt_test_now_ms() + timeout_ms;

	for (;;) {
		char *nl = memchr(r->rbuf, '\n', r->rlen);
		struct pollfd pfd = { .fd = r->qmp, .events = POLLIN };
		uint64_t now;
		ssize_t n;

		if (nl) {
			size_t len = nl - r->rbuf;

			while (len && r->rbuf[len - 1] == '\r')
				len--;
			snprintf(line, sz, "%.*s", (int)len, r->rbuf);
			r->rlen -= nl + 1 - r->rbuf;
			memmove(r->rbuf, nl + 1, r->rlen);
			return 0;
		}
		FAIL_IF(r, r->rlen == sizeof(r->rbuf), "QMP line longer than %zu bytes",
			sizeof(r->rbuf));
		now = dt_test_now_ms();
		FAIL_IF(r, now >= end, "QMP: no answer in %d ms", timeout_ms);
		if (poll(&pfd, 1, end - now) <= 0)
			continue;	/* timeout or signal: the deadline check decides */
		n = read(r->qmp, r->rbuf + r->rlen, sizeof(r->rbuf) - r->rlen);
		FAIL_IF(r, n < 0 && errno != EINTR, "QMP read: %s", strerror(errno));
		FAIL_IF(r, !n, "QMP: QEMU closed the connection");
		if (n > 0)
			r->rlen += n;
	}
}

/* Sends one command and leaves its response in r->resp; asynchronous events are skipped. */
static int qmp_cmd(struct run *r, const char *cmd)
{
	size_t len = strlen(cmd), off = 0;

	while (off < len) {
		ssize_t n = send(r->qmp, cmd + off, len - off, MSG_NOSIGNAL);

		FAIL_IF(r, n < 0 && errno != EINTR, "QMP write: %s", strerror(errno));
		if (n > 0)
			off += n;
	}
	FAIL_IF(r, send(r->qmp, "\n", 1, MSG_NOSIGNAL) != 1, "QMP write: %s", strerror(errno));
	for (;;) {
		if (qmp_line(r, r->resp, sizeof(r->resp), 10000))
			return -1;
		if (!strncmp(r->resp, "{\"return\"", 9))
			return 0;
		FAIL_IF(r, !strncmp(r->resp, "{\"error\"", 8), "QMP %s: %s", cmd, r->resp);
	}
}

/*
 * An integer member of the returned object itself, not of a nested one: query-dirty-rate has
 * "dirty-rate" both per vCPU and for the VM.
 */
static bool qmp_return_int(const char *resp, const char *key, long long *val)
{
	size_t klen = strlen(key);
	bool in_str = false;
	int depth = 0;

	for (const char *p = resp; *p; p++) {
		if (in_str) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_str = false;
			continue;
		}
		if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			depth--;
		} else if (*p == '"') {
			const char *v = p + 1 + klen;
			char *end;

			in_str = true;
			/* {"return": {"key": N}}: the members we want are at depth 2 */
			if (depth != 2 || strncmp(p + 1, key, klen) || *v != '"')
				continue;
			for (v++; *v == ' '; v++)
				;
			if (*v++ != ':')
				continue;
			*val = strtoll(v, &end, 10);
			return end != v;
		}
	}
	return false;
}

static int qmp_connect(struct run *r, const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t end = dt_test_now_ms() + 15000;
	char line[1024];

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	for (;;) {
		if (qemu_alive(r))
			return -1;
		r->qmp = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		FAIL_IF(r, r->qmp < 0, "socket: %s", strerror(errno));
		if (!connect(r->qmp, (struct sockaddr *)&sa, sizeof(sa)))
			break;
		close(r->qmp);
		r->qmp = -1;
		FAIL_IF(r, dt_test_now_ms() > end, "QMP socket %s did not open in 15 s", sock);
		dt_test_sleep_ms(50);
	}
	if (qmp_line(r, line, sizeof(line), 10000))
		return -1;
	FAIL_IF(r, !strstr(line, "\"QMP\""), "not a QMP greeting: %s", line);
	return qmp_cmd(r, "{\"execute\":\"qmp_capabilities\"}");
}

/* The counter the guest stores in its last page: non-zero once it has swept every page. */
static int guest_counter(struct run *r, unsigned long *val)
{
	char cmd[160];
	const char *p;

	snprintf(cmd, sizeof(cmd), "{\"execute\":\"human-monitor-command\",\"arguments\":"
		 "{\"command-line\":\"xp /1wx %#x\"}}", (GUEST_GFN + GUEST_NPAGES - 1) << 12);
	if (qmp_cmd(r, cmd))
		return -1;
	p = strstr(r->resp, ": 0x");
	FAIL_IF(r, !p, "unexpected xp answer: %s", r->resp);
	*val = strtoul(p + 2, NULL, 16);
	return 0;
}

/* Starts QEMU on our guest and returns once the guest loops over its pages. */
static int boot(struct run *r)
{
	char sock[64], qmp_arg[96], top_arg[96], top_sock[64], err[64];
	/* a QMP socket serves one client: the second one is dirtytop's */
	char *argv[] = {
		DT_QEMU_BIN, "-accel", r->bitmap ? "kvm" : "kvm,dirty-ring-size=4096", "-m", "128", "-smp", "1",
		"-cpu", "qemu64,kvmclock=off", "-global", "kvm-apic.vapic=off", "-nodefaults",
		"-display", "none", "-kernel", r->elf, "-qmp", qmp_arg, "-qmp", top_arg, NULL,
	};
	uint64_t start = dt_test_now_ms(), end;
	unsigned long counter = 0;

	if (find_files(r))
		return -1;
	FAIL_IF(r, !mkdtemp(r->dir), "mkdtemp: %s", strerror(errno));
	r->have_dir = true;
	in_dir(r, "qmp.sock", sock, sizeof(sock));
	in_dir(r, "qemu.err", err, sizeof(err));
	snprintf(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off", sock);
	in_dir(r, "top.sock", top_sock, sizeof(top_sock));
	snprintf(top_arg, sizeof(top_arg), "unix:%s,server=on,wait=off", top_sock);
	r->qemu = r->qemu_pid = dt_test_spawn(argv, NULL, err);
	FAIL_IF(r, r->qemu < 0, "fork: %s", strerror(errno));
	if (qmp_connect(r, sock))
		return -1;
	/* "running" comes with the firmware; the guest's own loop starts seconds later */
	end = dt_test_now_ms() + 30000;
	for (;;) {
		bool running;

		if (qemu_alive(r) || qmp_cmd(r, "{\"execute\":\"query-status\"}"))
			return -1;
		running = strstr(r->resp, "\"status\": \"running\"");
		if (running) {
			if (guest_counter(r, &counter))
				return -1;
			if (counter)
				break;
		}
		FAIL_IF(r, dt_test_now_ms() > end, "the guest did not sweep its pages within 30 s "
			"(QEMU %s, counter in its last page %#x: %lu)",
			running ? "running" : "not running", (GUEST_GFN + GUEST_NPAGES - 1) << 12,
			counter);
		dt_test_sleep_ms(100);
	}
	r->boot_ms = dt_test_now_ms() - start;
	return 0;
}

static int tool_start(struct run *r, const char *seconds)
{
	char pid[16], out[64], err[64];
	char *argv[] = { r->tool_path, "gfns", "-p", pid, "-d", (char *)seconds, NULL };

	snprintf(pid, sizeof(pid), "%d", r->qemu);
	in_dir(r, "tool.out", out, sizeof(out));
	in_dir(r, "tool.err", err, sizeof(err));
	r->tool = dt_test_spawn(argv, out, err);
	FAIL_IF(r, r->tool < 0, "fork: %s", strerror(errno));
	return 0;
}

/* Waits for the tool to exit and reads what it printed. */
static int tool_wait(struct run *r, unsigned int timeout_ms)
{
	uint64_t end = dt_test_now_ms() + timeout_ms;
	char path[64];

	while (waitpid(r->tool, &r->tool_status, WNOHANG) != r->tool) {
		FAIL_IF(r, dt_test_now_ms() > end, "dirtytrace still running after %u ms", timeout_ms);
		dt_test_sleep_ms(20);
	}
	r->tool = 0;
	in_dir(r, "tool.out", path, sizeof(path));
	r->out = read_all(path);
	in_dir(r, "tool.err", path, sizeof(path));
	r->err = read_all(path);
	FAIL_IF(r, !r->out || !r->err, "out of memory");
	return 0;
}

/* Turns QEMU's dirty logging on for `seconds` (dirty-ring mode: the ring must be in use). */
static int calc_dirty_rate(struct run *r, int seconds)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "{\"execute\":\"calc-dirty-rate\",\"arguments\":"
		 "{\"calc-time\":%d,\"mode\":\"dirty-ring\"}}", seconds);
	return qmp_cmd(r, cmd);
}

/*
 * Checks the tool's stdout: every line a guest page "0:gfn" (hex), once; with all, every guest
 * page present. Explains the first differences in why.
 */
static bool gfn_lines_ok(const char *out, bool all, int *lines, char *why, size_t sz)
{
	bool seen[GUEST_NPAGES] = {};
	size_t len = 0;
	int bad = 0;

	why[0] = 0;
	*lines = 0;
	for (const char *p = out; *p; ) {
		size_t n = strcspn(p, "\n");
		unsigned long gfn = 0;
		char tail = 0;
		bool ok;

		ok = sscanf(p, "0:%lx%c", &gfn, &tail) == 2 && tail == '\n' &&
		     gfn >= GUEST_GFN && gfn < GUEST_GFN + GUEST_NPAGES;
		if (ok && !seen[gfn - GUEST_GFN]) {
			seen[gfn - GUEST_GFN] = true;
		} else if (bad++ < 5 && len < sz) {
			len += snprintf(why + len, sz - len, "%s%s '%.*s'", len ? ", " : "",
					ok ? "repeated" : "extra", (int)n, p);
		}
		(*lines)++;
		p += n + (p[n] == '\n');
	}
	for (int i = 0; all && i < GUEST_NPAGES; i++) {
		if (!seen[i] && bad++ < 5 && len < sz)
			len += snprintf(why + len, sz - len, "%smissing 0:%x", len ? ", " : "",
					GUEST_GFN + i);
	}
	return !bad;
}

/* The tool's summary line ("N pages, N raw events, ..."), for the log. */
static void summary_line(const char *err, char *buf, size_t sz)
{
	const char *p = strstr(err ?: "", " raw events, ");

	snprintf(buf, sz, "(no summary line)");
	if (!p)
		return;
	while (p > err && p[-1] != '\n')
		p--;
	snprintf(buf, sz, "%.*s", (int)strcspn(p, "\n"), p);
}

static int gfns_equal(struct run *r)
{
	char expected[GUEST_NPAGES * 8 + 1], why[512], how[64], summary[256];
	long long rate = -1;
	uint64_t end;
	size_t len = 0;
	int lines;

	if (boot(r) || tool_start(r, "4"))
		return -1;
	/* well inside the tool's 4 s: it attaches in ~0.1 s and gets a full epoch after */
	dt_test_sleep_ms(1000);
	if (calc_dirty_rate(r, 1))
		return -1;
	end = dt_test_now_ms() + 10000;
	for (;;) {
		dt_test_sleep_ms(200);
		if (qmp_cmd(r, "{\"execute\":\"query-dirty-rate\"}"))
			return -1;
		if (strstr(r->resp, "\"status\": \"measured\""))
			break;
		FAIL_IF(r, dt_test_now_ms() > end, "calc-dirty-rate did not finish: %s", r->resp);
	}
	FAIL_IF(r, !qmp_return_int(r->resp, "dirty-rate", &rate), "no dirty-rate in %s", r->resp);
	if (tool_wait(r, 15000))
		return -1;
	describe_status(r->tool_status, how, sizeof(how));
	FAIL_IF(r, !WIFEXITED(r->tool_status) || WEXITSTATUS(r->tool_status),
		"dirtytrace gfns failed: %s", how);
	for (int i = 0; i < GUEST_NPAGES; i++)
		len += snprintf(expected + len, sizeof(expected) - len, "0:%x\n", GUEST_GFN + i);
	gfn_lines_ok(r->out, true, &lines, why, sizeof(why));
	FAIL_IF(r, strcmp(r->out, expected), "stdout is not exactly the guest's %d pages, "
		"sorted (%d lines): %s", GUEST_NPAGES, lines, why[0] ? why : "order differs");
	FAIL_IF(r, rate <= 0, "QEMU measured dirty-rate %lld MB/s with the guest writing", rate);
	summary_line(r->err, summary, sizeof(summary));
	printf("gfns_equal_guest_pages: guest up in %.1f s; QEMU dirty-rate %lld MB/s; %s\n",
	       r->boot_ms / 1000.0, rate, summary);
	return 0;
}

/* The BPF programs a process holds: prog fds and link fds both name theirs in fdinfo. */
static size_t held_prog_ids(const char *pid, unsigned int *ids, size_t max)
{
	char path[PATH_MAX], line[256];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%s/fdinfo", pid);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fdinfo/%s", pid, de->d_name);
		f = fopen(path, "re");
		while (f && fgets(line, sizeof(line), f)) {
			unsigned int id;

			if (sscanf(line, "prog_id: %u", &id) == 1 && n < max)
				ids[n++] = id;
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return n;
}

static bool id_in(unsigned int id, const unsigned int *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* Whether any process holds an fd of program id (a program held by none is pinned or leaked). */
static bool prog_held(unsigned int id)
{
	unsigned int ids[256];
	struct dirent *de;
	bool held = false;
	DIR *d = opendir("/proc");

	while (d && !held && (de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		held = id_in(id, ids, held_prog_ids(de->d_name, ids, 256));
	}
	if (d)
		closedir(d);
	return held;
}

/*
 * dt_ring_push programs still loaded that are the tool's or held by no process. Others may run
 * dirtytrace at the same time: their programs are theirs. Programs are freed after an RCU grace
 * period, so a just-exited tool's may linger briefly: retry for a while.
 */
static int left_attached(struct run *r, const unsigned int *tool_ids, size_t n_tool)
{
	uint64_t end = dt_test_now_ms() + 3000;
	char line[512], left[256];

	for (;;) {
		FILE *p = popen("bpftool prog show 2>&1", "r");
		size_t len = 0;
		int status;

		FAIL_IF(r, !p, "popen bpftool: %s", strerror(errno));
		left[0] = 0;
		while (fgets(line, sizeof(line), p)) {
			unsigned int id;
			const char *name = strstr(line, " name ");

			if (sscanf(line, "%u:", &id) != 1 || !name ||
			    strncmp(name + 6, "dt_ring_push ", 13))
				continue;
			if ((id_in(id, tool_ids, n_tool) || !prog_held(id)) && len < sizeof(left))
				len += snprintf(left + len, sizeof(left) - len, " %u%s", id,
						id_in(id, tool_ids, n_tool) ? " (the tool's)" : "");
		}
		status = pclose(p);
		FAIL_IF(r, !WIFEXITED(status) || WEXITSTATUS(status),
			"bpftool prog show failed (status %#x)", status);
		if (!left[0])
			return 0;
		FAIL_IF(r, dt_test_now_ms() > end, "dt_ring_push still loaded after the tool exited:%s",
			left);
		dt_test_sleep_ms(100);
	}
}

/* The tool's stderr after the VM died: the exit line and the summary, nothing else. */
static int check_vm_exit_stderr(struct run *r)
{
	char prefix[96];
	int vm_lines = 0, summaries = 0, others = 0;

	snprintf(prefix, sizeof(prefix), "dirtytrace: VM pid %d exited during the run",
		 r->qemu_pid);
	for (const char *p = r->err; *p; ) {
		size_t n = strcspn(p, "\n");

		if (!strncmp(p, prefix, strlen(prefix)))
			vm_lines++;
		else if (!strncmp(p, "dirtytrace: ", 12) && memmem(p, n, " raw events, ", 13))
			summaries++;
		else
			others++;
		p += n + (p[n] == '\n');
	}
	FAIL_IF(r, vm_lines != 1 || summaries != 1 || others,
		"stderr: %d '%s' lines, %d summary lines, %d others (want 1, 1, 0)", vm_lines,
		prefix, summaries, others);
	return 0;
}

static int vm_exit(struct run *r)
{
	unsigned int tool_ids[64];
	char pid[16], why[512], how[64], summary[256];
	size_t n_ids = 0;
	uint64_t killed, end;
	int lines, status;

	if (boot(r) || tool_start(r, "30"))
		return -1;
	dt_test_sleep_ms(1500);
	if (calc_dirty_rate(r, 2))
		return -1;
	/* what the tool loaded, to tell its programs from those of other dirtytrace users */
	snprintf(pid, sizeof(pid), "%d", r->tool);
	end = dt_test_now_ms() + 3000;
	while (!(n_ids = held_prog_ids(pid, tool_ids, 64)) && dt_test_now_ms() < end)
		dt_test_sleep_ms(50);
	FAIL_IF(r, !n_ids, "dirtytrace holds no BPF program 1.5 s after it started");
	dt_test_sleep_ms(500);

	kill(r->qemu, SIGKILL);
	waitpid(r->qemu, &status, 0);
	r->qemu = 0;
	killed = dt_test_now_ms();
	if (tool_wait(r, 5000))
		return -1;
	describe_status(r->tool_status, how, sizeof(how));
	FAIL_IF(r, !WIFEXITED(r->tool_status) || !WEXITSTATUS(r->tool_status),
		"dirtytrace gfns must fail when its VM dies, got %s", how);
	if (check_vm_exit_stderr(r))
		return -1;
	FAIL_IF(r, !gfn_lines_ok(r->out, false, &lines, why, sizeof(why)),
		"stdout has pages the guest never wrote: %s", why);
	/* logging was on for 0.5 s, the guest sweeps its pages in a few ms */
	FAIL_IF(r, !lines, "no pages listed although the guest wrote with logging on");
	if (left_attached(r, tool_ids, n_ids))
		return -1;
	summary_line(r->err, summary, sizeof(summary));
	printf("vm_exit_during_run: tool exited %.1f s after the kill with %s, %d pages listed; "
	       "%s\n", (dt_test_now_ms() - killed) / 1000.0, how, lines, summary);
	return 0;
}

/* The last max_lines lines of text, per_row of them joined on one line (GFN lists are long). */
static void print_block(const char *title, const char *text, int max_lines, int per_row)
{
	int total = 0, skip, col = 0;
	const char *p;

	text = text ?: "";
	for (p = text; *p; p++)
		total += *p == '\n';
	if (*text && text[strlen(text) - 1] != '\n')
		total++;
	skip = total > max_lines ? total - max_lines : 0;
	fprintf(stderr, "--- %s (%d lines%s)\n", title, total, skip ? ", the last shown" : "");
	for (p = text; skip && *p; p++)
		skip -= *p == '\n';
	while (*p) {
		int n = strcspn(p, "\n");

		fprintf(stderr, "%s%.*s", col ? " " : "", n, p);
		if (++col == per_row || !p[n]) {
			fputc('\n', stderr);
			col = 0;
		}
		p += n + (p[n] == '\n');
	}
	if (col)
		fputc('\n', stderr);
}

/* Says everything we know on failure, then kills and reaps the children and removes the dir. */
static void finish(struct run *r, int err)
{
	char path[64];

	if (r->qmp >= 0)
		close(r->qmp);
	if (r->tool > 0) {
		kill(r->tool, SIGKILL);
		waitpid(r->tool, NULL, 0);
	}
	if (r->qemu > 0) {
		kill(r->qemu, SIGKILL);
		waitpid(r->qemu, NULL, 0);
	}
	if (err && r->have_dir) {
		char *qemu_err;

		in_dir(r, "qemu.err", path, sizeof(path));
		qemu_err = read_all(path);
		fprintf(stderr, "check_qemu: %s\n", r->msg);
		if (!r->out) {	/* the tool was killed above: show what it had printed */
			in_dir(r, "tool.out", path, sizeof(path));
			r->out = read_all(path);
			in_dir(r, "tool.err", path, sizeof(path));
			r->err = read_all(path);
		}
		print_block("dirtytrace stdout", r->out, 256, 8);
		print_block("dirtytrace stderr", r->err, 20, 1);
		print_block("qemu stderr", qemu_err, 10, 1);
		free(qemu_err);
	} else if (err) {
		fprintf(stderr, "check_qemu: %s\n", r->msg);
	}
	if (r->have_dir) {
		static const char *const files[] = {
			"qmp.sock", "top.sock", "qemu.err", "tool.out", "tool.err",
		};

		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			in_dir(r, files[i], path, sizeof(path));
			unlink(path);
		}
		rmdir(r->dir);
	}
	free(r->out);
	free(r->err);
}

static struct run *run_new(void)
{
	struct run *r = calloc(1, sizeof(*r));

	ck_assert_ptr_nonnull(r);
	snprintf(r->dir, sizeof(r->dir), "/tmp/dt-qemu-XXXXXX");
	r->qmp = -1;
	return r;
}

#define QEMU_TEST(name, fn)							\
	START_TEST(name)							\
	{									\
		const char *why = dt_test_need_qemu();					\
		struct run *r;							\
		char msg[sizeof(r->msg)];					\
		int err;							\
										\
		if (why)							\
			DT_SKIP("%s", why);					\
		r = run_new();							\
		err = fn(r);							\
		finish(r, err);							\
		snprintf(msg, sizeof(msg), "%s", r->msg);			\
		free(r);							\
		ck_assert_msg(!err, "%s", msg);					\
	}									\
	END_TEST

QEMU_TEST(gfns_equal_guest_pages, gfns_equal)
QEMU_TEST(vm_exit_during_run, vm_exit)

/* The value of "key": in s, at or after s; false when missing. */
static bool json_num(const char *s, const char *key, double *v)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(s, pat);
	if (!p)
		return false;
	*v = strtod(p + strlen(pat), NULL);
	return true;
}

/* Starts dirtytop on our QEMU, with --qmp on QEMU's second socket when qmp, plus extra args. */
static int dirtytop_start(struct run *r, bool qmp, char **extra)
{
	char pid[16], out[64], err[64], sock[64], path[PATH_MAX];
	char *argv[16] = { path, "-p", pid };
	int n = 3;

	snprintf(path, sizeof(path), "%.*sdirtytop",
		 (int)(strrchr(r->tool_path, '/') + 1 - r->tool_path), r->tool_path);
	snprintf(pid, sizeof(pid), "%d", r->qemu);
	in_dir(r, "top.sock", sock, sizeof(sock));
	in_dir(r, "tool.out", out, sizeof(out));
	in_dir(r, "tool.err", err, sizeof(err));
	if (qmp) {
		argv[n++] = "--qmp";
		argv[n++] = sock;
	}
	while (*extra && n < 15)
		argv[n++] = *extra++;
	argv[n] = NULL;
	r->tool = dt_test_spawn(argv, out, err);
	FAIL_IF(r, r->tool < 0, "fork: %s", strerror(errno));
	return 0;
}

/* Whether QEMU holds a vCPU dirty limit now (dirtytop's way of keeping logging on). */
static int limit_held(struct run *r, bool *held)
{
	if (qmp_cmd(r, "{\"execute\":\"query-vcpu-dirty-limit\"}"))
		return -1;
	*held = strstr(r->resp, "limit-rate") != NULL;
	return 0;
}

/*
 * dirtytop --qmp on an idle QEMU (dirty logging off): it turns logging on without throttling,
 * its raw rate agrees with QEMU's calc-dirty-rate (dirty-ring mode counts ring pushes, as
 * dirtytop's raw events do), its unique rate is the guest's 64 pages per interval, and QEMU is
 * left as it was, after -n runs out and after SIGINT.
 */
static int dirtytop_qmp(struct run *r)
{
	char *json_args[] = { "--json", "-n", "5", "-d", "1", NULL };
	char *line, *save, how[64];
	double top_mib = 0, secs = 0;
	long long rate = -1;
	int frames = 0;
	bool held;
	uint64_t end;

	if (boot(r) || limit_held(r, &held))
		return -1;
	FAIL_IF(r, held, "QEMU holds a dirty limit before dirtytop ran: %s", r->resp);
	if (dirtytop_start(r, true, json_args))
		return -1;
	dt_test_sleep_ms(1500);
	if (limit_held(r, &held))
		return -1;
	FAIL_IF(r, !held, "dirtytop --qmp set no dirty limit: %s", r->resp);
	/* QEMU's own measurement over 2 s, inside dirtytop's 5 */
	if (calc_dirty_rate(r, 2))
		return -1;
	end = dt_test_now_ms() + 10000;
	do {
		dt_test_sleep_ms(200);
		if (qmp_cmd(r, "{\"execute\":\"query-dirty-rate\"}"))
			return -1;
		FAIL_IF(r, dt_test_now_ms() > end, "calc-dirty-rate did not finish: %s", r->resp);
	} while (!strstr(r->resp, "\"status\": \"measured\""));
	FAIL_IF(r, !qmp_return_int(r->resp, "dirty-rate", &rate), "no dirty-rate: %s", r->resp);
	if (tool_wait(r, 15000))
		return -1;
	describe_status(r->tool_status, how, sizeof(how));
	FAIL_IF(r, !WIFEXITED(r->tool_status) || WEXITSTATUS(r->tool_status), "dirtytop: %s", how);
	if (limit_held(r, &held))
		return -1;
	FAIL_IF(r, held, "dirtytop left QEMU's dirty limit set: %s", r->resp);

	for (line = strtok_r(r->out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *vm = strstr(line, "\"vms\":[{");
		double iv, pages, raw;

		frames++;
		FAIL_IF(r, !vm || !strstr(vm, "\"tracking\":true"), "frame %d: %s", frames, line);
		FAIL_IF(r, !json_num(line, "interval_s", &iv) ||
			!json_num(vm, "dirty_pages_per_s", &pages) ||
			!json_num(vm, "raw_events_per_s", &raw), "frame %d: keys missing", frames);
		/* the guest sweeps its 64 pages ~500 times a second: every page, every interval */
		FAIL_IF(r, pages * iv < 63.4 || pages * iv > 64.6,
			"frame %d: %.1f pages/s over %.3f s, the guest writes 64 pages", frames, pages,
			iv);
		top_mib += raw * 4096 / (1 << 20) * iv;
		secs += iv;
	}
	FAIL_IF(r, frames != 5, "%d JSON frames, want 5", frames);
	/*
	 * QEMU reports whole MB/s (MiB, truncated) for a 2 s window; dirtytop averages 5 s of a
	 * steady guest. 15% covers the truncation and the guest's speed drifting between windows.
	 */
	printf("dirtytop_qmp: QEMU calc-dirty-rate %lld MB/s, dirtytop raw %.1f MiB/s\n", rate,
	       top_mib / secs);
	FAIL_IF(r, top_mib / secs < rate * 0.85 || top_mib / secs > (rate + 1) * 1.15,
		"dirtytop raw %.1f MiB/s vs QEMU %lld MB/s", top_mib / secs, rate);

	/* Ctrl-C: the limit goes too */
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
	if (dirtytop_start(r, true, (char *[]){ "-b", NULL }))
		return -1;
	dt_test_sleep_ms(1500);
	if (limit_held(r, &held))
		return -1;
	FAIL_IF(r, !held, "dirtytop -b --qmp set no dirty limit");
	kill(r->tool, SIGINT);
	if (tool_wait(r, 5000))
		return -1;
	FAIL_IF(r, !WIFEXITED(r->tool_status) || WEXITSTATUS(r->tool_status),
		"dirtytop after SIGINT: status %#x", r->tool_status);
	if (limit_held(r, &held))
		return -1;
	FAIL_IF(r, held, "dirtytop left the dirty limit set after SIGINT: %s", r->resp);
	return 0;
}

/*
 * A bitmap-mode QEMU: calc-dirty-rate in dirty-bitmap mode turns logging on, and dirtytop must
 * see the guest's 64 distinct pages per interval. Only fentry/kprobe report pages of a VM without
 * the dirty ring; where they cannot attach the test skips (the caller checks).
 */
static int dirtytop_bitmap(struct run *r)
{
	char *json_args[] = { "--json", "-n", "2", "-d", "1", NULL };
	char *line, *save;
	int frames = 0;

	r->bitmap = true;
	if (boot(r))
		return -1;
	/* no --qmp: a dirty limit needs the ring; QEMU's own measurement turns logging on */
	if (qmp_cmd(r, "{\"execute\":\"calc-dirty-rate\",\"arguments\":"
		    "{\"calc-time\":4,\"mode\":\"dirty-bitmap\"}}"))
		return -1;
	dt_test_sleep_ms(300);
	if (dirtytop_start(r, false, json_args))
		return -1;
	if (tool_wait(r, 15000))
		return -1;
	FAIL_IF(r, !WIFEXITED(r->tool_status) || WEXITSTATUS(r->tool_status), "dirtytop failed");
	for (line = strtok_r(r->out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *vm = strstr(line, "\"vms\":[{");
		double iv, pages;

		frames++;
		FAIL_IF(r, !vm || !json_num(line, "interval_s", &iv) ||
			!json_num(vm, "dirty_pages_per_s", &pages), "frame %d: %s", frames, line);
		FAIL_IF(r, pages * iv < 63.4 || pages * iv > 64.6,
			"frame %d: %.1f pages/s over %.3f s, the guest writes 64 pages", frames, pages,
			iv);
	}
	FAIL_IF(r, frames != 2, "%d frames", frames);
	return 0;
}

/* Which page source this host gives a tracer (fentry/kprobe see bitmap-mode VMs). */
static enum dt_source_id host_source(void)
{
	struct dt_tracer_opts o = { .sz = sizeof(o) };
	struct dt_tracer *t = dt_tracer__open(&o);
	enum dt_source_id src = t ? dt_tracer__source(t) : DT_SOURCE_RING_PUSH;

	dt_tracer__close(t);
	return src;
}

START_TEST(dirtytop_bitmap_vm)
{
	struct run *r;
	const char *why = dt_test_need_qemu();
	int err;

	if (why)
		DT_SKIP("%s", why);
	if (host_source() == DT_SOURCE_RING_PUSH)
		DT_SKIP("a bitmap-mode VM's pages are seen only by fentry or kprobe on "
			"mark_page_dirty_in_slot, and this kernel allows neither");
	r = run_new();
	err = dirtytop_bitmap(r);
	finish(r, err);
	ck_assert_msg(!err, "%s", r->msg);
	free(r);
}
END_TEST

START_TEST(dirtytop_qmp_rates)
{
	struct run *r;
	const char *why = dt_test_need_qemu();
	int err;

	if (why)
		DT_SKIP("%s", why);
	r = run_new();
	err = dirtytop_qmp(r);
	finish(r, err);
	ck_assert_msg(!err, "%s", r->msg);
	free(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("qemu");
	TCase *tc = tcase_create("qemu");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, gfns_equal_guest_pages);
	tcase_add_test(tc, vm_exit_during_run);
	tcase_add_test(tc, dirtytop_qmp_rates);
	tcase_add_test(tc, dirtytop_bitmap_vm);
	suite_add_tcase(s, tc);
	return dt_test_main(s, "qemu");
}

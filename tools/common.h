/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What every dirtytrace tool says the same way: preflight checks, error hints, JSON strings. */
#ifndef DT_TOOLS_COMMON_H
#define DT_TOOLS_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <dirtytrace/dirtytrace.h>

/* CLOCK_MONOTONIC in nanoseconds: the clock of epochs, BPF timestamps and the tools' timers. */
static inline uint64_t tool_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* The checks every tool needs first: NULL, or the message (with the hint a user can act on). */
static inline const char *tool_preflight(void)
{
	if (geteuid() != 0)
		return "must run as root (needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)";
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return "kernel lacks BTF: /sys/kernel/btf/vmlinux is missing "
		       "(needs CONFIG_DEBUG_INFO_BTF=y)";
	return NULL;
}

/* A hint for a failed load or attach. */
static inline const char *tool_err_hint(int err)
{
	switch (err) {
	case -EPERM:
	case -EACCES:
		return " (run as root; lockdown or a seccomp policy may also forbid BPF)";
	case -ENOENT:
		return " (no KVM tracepoints: is KVM loaded? modprobe kvm_intel or kvm_amd)";
	case -EINVAL:
		return " (kernel too old? dirtytrace needs 5.12+ with BTF; the dirty ring needs 5.11+)";
	}
	return "";
}

static inline void tool_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* The library's messages: DT_INFO with -v, DT_DEBUG (libbpf's too) with -vv, warnings always. */
/* One error line on stderr, "prog: msg"; in JSON mode also {"error": msg} on stdout. Returns 1. */
static inline int tool_vfail(const char *prog, int json, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "%s: %s\n", prog, msg);
	if (json) {
		printf("{\"error\":");
		tool_json_str(msg);
		printf("}\n");
	}
	return 1;
}

/* QEMU's -name (guest=NAME,... or NAME) from /proc/PID/cmdline; out is empty when there is none. */
static inline void tool_qemu_name(pid_t pid, char *out, size_t sz)
{
	char path[64], buf[8192];
	ssize_t n;
	int fd;

	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	for (char *a = buf; a < buf + n; a += strlen(a) + 1) {
		char *v = a + strlen(a) + 1;

		if (strcmp(a, "-name") || v >= buf + n)
			continue;
		if (!strncmp(v, "guest=", 6))
			v += 6;
		snprintf(out, sz, "%.*s", (int)strcspn(v, ","), v);
		return;
	}
}

/* A trace file, mapped and opened for reading (the reader decodes in memory). */
struct tool_trace {
	struct dt_trace_reader *r;
	void *map;
	size_t len;
};

/* 0, or -1 with err holding the one-line reason ("cannot open F: ...", "F: damaged ..."). */
static inline int tool_trace_open(struct tool_trace *tt, const char *path, char *err, size_t sz)
{
	char why[256];
	struct stat st;
	int fd;

	tt->r = NULL;
	tt->map = MAP_FAILED;
	tt->len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		snprintf(err, sz, "cannot open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_size) {
		tt->map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		tt->len = tt->map == MAP_FAILED ? 0 : st.st_size;
	}
	close(fd);
	tt->r = dt_trace_reader__new(tt->len ? tt->map : "", tt->len, why, sizeof(why));
	if (!tt->r) {
		snprintf(err, sz, "%s: %s", path, why);
		return -1;
	}
	return 0;
}

static inline void tool_trace_close(struct tool_trace *tt)
{
	dt_trace_reader__free(tt->r);
	if (tt->map != MAP_FAILED)
		munmap(tt->map, tt->len);
	tt->r = NULL;
	tt->map = MAP_FAILED;
}

static inline int tool_message(const char *prog, int verbose, enum dt_print_level level,
			       const char *fmt, va_list ap)
{
	if ((level == DT_INFO && verbose < 1) || (level == DT_DEBUG && verbose < 2))
		return 0;
	fprintf(stderr, "%s: ", prog);
	return vfprintf(stderr, fmt, ap);
}

/* -v: every source the loader tried, and why it is or is not used. */
static inline void tool_print_probes(const char *prog, const struct dt_tracer *t)
{
	const struct dt_probe *p;
	size_t n = dt_tracer__probes(t, &p);

	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "%s: %-44s %s\n", prog, p[i].what, p[i].why);
}

#endif

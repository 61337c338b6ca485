// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dirtyplan as a user meets it: recordings built here whose answer is known in closed form (a
 * constant rate well below the bandwidth converges after one pass; a rate far above it never
 * does, and the bandwidth that would make it converge lies between the dirty rate and the
 * one-pass bound), the JSON keys carry those values, --plot writes valid SVG with real content,
 * bad input gets one line and a non-zero exit, and a live run on a VM of ours works.
 * Tags: unit (recordings), root + kvm (live).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "testlib.h"

#define PS	4096ull
#define HDR	8ull	/* QEMU's per-page header on the wire, as the model counts it */
#define BASE	0x100000ull

struct run {
	char out[1 << 18];
	char err[1 << 14];
	int rc;
};

static const char *plan_bin(void)
{
	static char path[512];
	const char *bin = getenv("DT_BIN");

	snprintf(path, sizeof(path), "%s/dirtyplan", bin ? bin : ".output/bin");
	return path;
}

/* Runs dirtyplan with args (NULL-terminated). */
static void run(struct run *r, char *const *args)
{
	int out_fd, err_fd;
	pid_t pid = dt_test_start(plan_bin(), args, -1, &out_fd, &err_fd);

	r->rc = dt_test_finish(pid, out_fd, err_fd, r->out, sizeof(r->out), r->err,
			       sizeof(r->err));
	ck_assert_msg(r->rc != 127, "cannot run %s", plan_bin());
}

#define RUN(r, ...) run(r, (char *const[]){ __VA_ARGS__, NULL })

/* ---- recordings with a known answer ---- */

struct rec {
	uint32_t page_size;
	uint64_t ram_pages;	/* one logged slot at BASE */
	int epochs;
	double epoch_s;
	uint32_t pages;		/* distinct pages per epoch, fresh ones each epoch (cycling RAM) */
	bool no_header_slot;
};

static int cmp_gfn(const void *a, const void *b)
{
	const struct dt_gfn *x = a, *y = b;

	return (x->gfn > y->gfn) - (x->gfn < y->gfn);
}

static void write_buf(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
	close(fd);
}

/* Epoch k dirties pages k*n .. k*n+n-1 (mod RAM): the rate is exactly n / epoch_s. */
static void write_rec(const char *path, const struct rec *o)
{
	struct dt_slot slot = { .as_id = 0, .id = 1, .flags = DT_SLOT_LOG_DIRTY,
				.base_gfn = BASE, .npages = o->ram_pages,
				.userspace_addr = 0x7f0000000000ull };
	struct dt_trace_header h = {
		.version = DT_TRACE_VERSION, .page_size = o->page_size, .source = 2, .clock = 1,
		.start_ns = 1000000000ull, .pid = 4242, .nr_vcpus = 2, .ring_entries = 4096,
		.kvm = 0xffff888100000000ull, .comm = "synthetic",
		.nr_slots = o->no_header_slot ? 0 : 1, .slots = &slot,
	};
	struct dt_gfn *g = calloc(o->pages + 1, sizeof(*g));
	uint64_t ep_ns = o->epoch_s * 1e9;
	void *buf = NULL;
	size_t len = 0, cap = 0;

	ck_assert_ptr_nonnull(g);
	ck_assert_int_eq(dt_trace__encode_header(&h, &buf, &len, &cap), 0);
	for (int k = 0; k < o->epochs; k++) {
		struct dt_trace_epoch e = {
			.seq = k, .start_ns = h.start_ns + k * ep_ns,
			.end_ns = h.start_ns + (k + 1) * ep_ns, .raw = 3ull * o->pages,
			.nr_gfns = o->pages, .gfns = g,
		};

		for (uint32_t i = 0; i < o->pages; i++) {
			uint64_t off = ((uint64_t)k * o->pages + i) % o->ram_pages;

			g[i] = (struct dt_gfn){ .gfn = BASE + off, .offset = off, .as_id = 0,
						.slot = 1, .vcpu = i % 2 };
		}
		qsort(g, o->pages, sizeof(*g), cmp_gfn);
		ck_assert_int_eq(dt_trace__encode_epoch(&e, &buf, &len, &cap), 0);
	}
	write_buf(path, buf, len);
	free(buf);
	free(g);
}

static char dir[] = "/tmp/dt-plan-XXXXXX";

static const char *tmp_path(const char *name)
{
	static char path[4][512];
	static int i;

	i = (i + 1) % 4;
	snprintf(path[i], sizeof(path[i]), "%s/%s", dir, name);
	return path[i];
}

static void setup(void)
{
	strcpy(dir, "/tmp/dt-plan-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* The value after the first "key": in a JSON text (the keys tested are unique or come first
 * at the top level, where dirtyplan prints them before the nested objects). */
static const char *jfind(const char *json, const char *key)
{
	char pat[128];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	ck_assert_msg(p, "no key %s in: %.300s", key, json);
	return p + strlen(pat);
}

static double jnum(const char *json, const char *key)
{
	const char *v = jfind(json, key);
	char *end;
	double d = strtod(v, &end);

	ck_assert_msg(end != v, "%s is not a number: %.40s", key, v);
	return d;
}

static bool jbool(const char *json, const char *key)
{
	const char *v = jfind(json, key);

	ck_assert_msg(!strncmp(v, "true", 4) || !strncmp(v, "false", 5), "%s: %.20s", key, v);
	return v[0] == 't';
}

static void jstr(const char *json, const char *key, const char *want)
{
	const char *v = jfind(json, key);
	size_t n = strlen(want);

	ck_assert_msg(v[0] == '"' && !strncmp(v + 1, want, n) && v[n + 1] == '"',
		      "%s: want \"%s\", got %.40s", key, want, v);
}

/* The whole output parses as JSON (python3's parser), when python3 is there. */
static void assert_json_valid(const char *text)
{
	const char *f = tmp_path("out.json");
	char cmd[1024];

	if (access("/usr/bin/python3", X_OK)) {
		fprintf(stderr, "note: no /usr/bin/python3, JSON syntax not checked\n");
		return;
	}
	write_buf(f, text, strlen(text));
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 -c 'import json,sys; "
		 "json.load(open(sys.argv[1]))' '%s'", f);
	ck_assert_msg(system(cmd) == 0, "not valid JSON: %.500s", text);
}

static void assert_close(double got, double want, double rel, const char *what)
{
	ck_assert_msg(fabs(got - want) <= rel * fabs(want) + 1e-9, "%s: got %.6g, want %.6g "
		      "(within %.1f%%)", what, got, want, rel * 100);
}

/*
 * 64 MiB of RAM, 1000 fresh pages a second, 64 MiB/s: iteration 0 sends 16384 pages of
 * 4096 + 8 bytes in 1.00195 s, while 1000 + round(0.00195 * 1000) = 1002 pages are dirtied;
 * 1002 pages are far below the 300 ms threshold (19.2 MiB): it stops and copies them.
 */
static const struct rec slow = { .page_size = 4096, .ram_pages = 16384, .epochs = 20,
				 .epoch_s = 1, .pages = 1000 };

START_TEST(below_bandwidth_converges)
{
	const char *f = tmp_path("slow.dtt");
	double t0 = 16384.0 * (PS + HDR) / (64 << 20);
	static struct run r;

	write_rec(f, &slow);
	RUN(&r, (char *)f, "--bandwidth", "64M", "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	assert_json_valid(r.out);
	ck_assert(jbool(r.out, "converges"));
	jstr(r.out, "stop", "converged");
	ck_assert_int_eq(jnum(r.out, "iterations"), 1);
	ck_assert_int_eq(jnum(r.out, "ram_pages"), 16384);
	jstr(r.out, "ram_from", "logged-slots");
	ck_assert(!jbool(r.out, "zero_pages_counted"));
	ck_assert_int_eq(jnum(r.out, "zero_pages"), 0);
	ck_assert_int_eq(jnum(r.out, "remaining_pages"), 1002);
	assert_close(jnum(r.out, "total_bytes"), (16384.0 + 1002) * (PS + HDR), 0.001,
		     "total_bytes");
	assert_close(jnum(r.out, "total_seconds"), t0 + 1002.0 * (PS + HDR) / (64 << 20), 0.01,
		     "total_seconds");
	/* downtime: the remainder at the bandwidth; the threshold: bandwidth x 300 ms */
	assert_close(jnum(r.out, "downtime_ms"), 1002.0 * PS / (64 << 20) * 1e3, 0.02,
		     "downtime_ms");
	assert_close(jnum(r.out, "threshold_bytes"), 0.3 * (64 << 20), 0.001, "threshold");
	jstr(r.out, "recommendation", "precopy");
	ck_assert_int_eq(jnum(r.out, "throttle_pct"), 0);
	ck_assert_int_eq(jnum(r.out, "dirty_limit"), 0);
	/* the recording's own numbers */
	ck_assert_int_eq(jnum(r.out, "epochs"), 20);
	assert_close(jnum(r.out, "seconds"), 20, 1e-9, "seconds");
	assert_close(jnum(r.out, "pages_per_s"), 1000, 1e-9, "pages_per_s");
	ck_assert_int_eq(jnum(r.out, "distinct_pages"), 16384);	/* 20 s x 1000 wraps RAM */
	/* the first pass in the per-pass list */
	ck_assert_int_eq(jnum(r.out, "pages"), 16384);
	ck_assert_int_eq(jnum(r.out, "dirtied"), 1002);

	/* the same in text */
	RUN(&r, (char *)f, "--bandwidth", "64M");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	ck_assert_msg(strstr(r.out, "converges: yes"), "%s", r.out);
	ck_assert_msg(strstr(r.out, "recommendation: precopy"), "%s", r.out);
	ck_assert_msg(strstr(r.out, "zero pages: not counted; none assumed"), "%s", r.out);
	ck_assert_msg(strstr(r.out, "lower bound"), "%s", r.out);
	ck_assert_msg(strstr(r.out, "write intervals"), "%s", r.out);
	ck_assert_str_eq(r.err, "");
}
END_TEST

/*
 * 4000 fresh pages a second over 64 MiB at 1 MiB/s: iteration 0 takes 64 s, in which every page
 * is dirtied again: no pass ever sends fewer than all of RAM. Precopy converges only above the
 * dirty rate (4000 x 4104 B/s, where passes shrink) and surely where one pass is enough:
 * 4000 x t0 x 4096 <= 0.3 B with t0 = 16384 x 4104 / B, i.e. B >= 60.6 MB/s. Making it converge
 * by throttling would slow the guest by more than 90%: postcopy.
 */
static const struct rec fast = { .page_size = 4096, .ram_pages = 16384, .epochs = 30,
				 .epoch_s = 1, .pages = 4000 };

START_TEST(above_bandwidth_does_not_converge)
{
	const char *f = tmp_path("fast.dtt");
	double minbw, one_pass = sqrt(4000.0 * 16384 * (PS + HDR) * PS / 0.3);
	static struct run r;

	write_rec(f, &fast);
	RUN(&r, (char *)f, "--bandwidth", "1M", "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	assert_json_valid(r.out);
	ck_assert(!jbool(r.out, "converges"));
	ck_assert(jbool(r.out, "looped"));	/* 64 s of pass 0 > the 30 s recording */
	jstr(r.out, "recommendation", "postcopy");
	ck_assert_int_ge(jnum(r.out, "iterations"), 2);
	ck_assert_int_eq(jnum(r.out, "remaining_pages"), 16384);
	minbw = jnum(r.out, "min_bandwidth");
	ck_assert_msg(minbw >= 0.995 * 4000 * (PS + HDR) && minbw <= 1.005 * one_pass,
		      "min_bandwidth %.4g not in [%.4g, %.4g]", minbw, 4000.0 * (PS + HDR),
		      one_pass);
	/* postcopy: switch after pass 0 (64 s), then all of RAM is pending */
	assert_close(jnum(r.out, "switchover_s"), 16384.0 * (PS + HDR) / (1 << 20), 0.01,
		     "switchover_s");
	ck_assert_int_eq(jnum(r.out, "pending_pages"), 16384);
	ck_assert_int_gt(jnum(r.out, "fault_pages_min"), 0);

	/* at the converging bandwidth it does converge */
	{
		char bw[32];

		snprintf(bw, sizeof(bw), "%.0f", minbw * 1.01);
		RUN(&r, (char *)f, "--bandwidth", bw, "--json");
		ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
		ck_assert_msg(jbool(r.out, "converges"), "not converging at %s B/s", bw);
		jstr(r.out, "recommendation", "precopy");
	}
	/* --max-iterations and --timeout bound the passes */
	RUN(&r, (char *)f, "--bandwidth", "1M", "--max-iterations", "3", "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	ck_assert_int_eq(jnum(r.out, "iterations"), 3);
	jstr(r.out, "stop", "max-iterations");
	RUN(&r, (char *)f, "--bandwidth", "1M", "--timeout", "100s", "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	jstr(r.out, "stop", "timeout");
	ck_assert_int_eq(jnum(r.out, "iterations"), 2);	/* 64 s each: the 2nd ends past 100 s */
}
END_TEST

/* --ram overrides the slots; --link speeds up only the stop-and-copy. */
START_TEST(ram_and_link)
{
	const char *f = tmp_path("slow.dtt");
	static struct run r;

	write_rec(f, &slow);
	RUN(&r, (char *)f, "--bandwidth", "64M", "--ram", "128M", "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	ck_assert_int_eq(jnum(r.out, "ram_pages"), 32768);
	jstr(r.out, "ram_from", "option");
	ck_assert_int_eq(jnum(r.out, "pages"), 32768);
	RUN(&r, (char *)f, "--bandwidth", "64M", "--link", "10gbit", "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	assert_close(jnum(r.out, "link_bandwidth"), 1.25e9, 1e-9, "link_bandwidth");
	assert_close(jnum(r.out, "downtime_ms"), 1002.0 * PS / 1.25e9 * 1e3, 0.02, "downtime");
	assert_close(jnum(r.out, "bandwidth"), 64.0 * 1048576, 1e-9, "bandwidth");
	/* a link alone is the migration's bandwidth as well */
	RUN(&r, (char *)f, "--link", "10gbit", "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	assert_close(jnum(r.out, "bandwidth"), 1.25e9, 1e-9, "bandwidth from --link");
	assert_close(jnum(r.out, "link_bandwidth"), 1.25e9, 1e-9, "link_bandwidth");
	/* no memslot in the header: RAM must be given */
	{
		struct rec o = slow;

		o.no_header_slot = true;
		write_rec(tmp_path("noslot.dtt"), &o);
		RUN(&r, (char *)tmp_path("noslot.dtt"));
		ck_assert_int_ne(r.rc, 0);
		ck_assert_msg(strstr(r.err, "--ram"), "%s", r.err);
		RUN(&r, (char *)tmp_path("noslot.dtt"), "--ram", "64M", "--json");
		ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
		ck_assert_int_eq(jnum(r.out, "ram_pages"), 16384);
	}
}
END_TEST

static int count(const char *s, const char *what)
{
	int n = 0;

	while ((s = strstr(s, what))) {
		n++;
		s += strlen(what);
	}
	return n;
}

/* Each chart is well-formed XML (xmllint), an SVG, and draws what it is about. */
static void check_plots(const char *pdir, int epochs, int iters)
{
	static const char *const names[] = { "rate.svg", "heatmap.svg", "wss.svg",
					      "precopy.svg" };
	bool lint = !access("/usr/bin/xmllint", X_OK);

	if (!lint)
		fprintf(stderr, "note: no xmllint (libxml2-utils): SVG well-formedness unchecked\n");
	for (int i = 0; i < 4; i++) {
		char path[600], cmd[800];
		char *s;

		snprintf(path, sizeof(path), "%s/%s", pdir, names[i]);
		if (lint) {
			snprintf(cmd, sizeof(cmd), "/usr/bin/xmllint --noout '%s'", path);
			ck_assert_msg(system(cmd) == 0, "%s is not well-formed XML", path);
		}
		s = dt_test_read_file(path, NULL);
		ck_assert_msg(s, "%s: %s", path, strerror(errno));
		ck_assert_msg(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\""), "%s", path);
		ck_assert_msg(strstr(s, "</svg>"), "%s is cut short", path);
		ck_assert_msg(count(s, "<text") >= 8, "%s: too few labels", path);
		if (i == 0) {	/* a step per epoch: 2 points each */
			ck_assert_int_eq(count(s, "<polyline"), 1);
			ck_assert_int_ge(count(strstr(s, "<polyline"), ","), 2 * epochs);
		} else if (i == 1) {	/* cells dirtied: fresh pages sweep RAM, every row lit */
			ck_assert_int_ge(count(s, "<rect"), 128);
		} else if (i == 2) {
			ck_assert_int_eq(count(s, "<polyline"), 2);
			ck_assert_int_ge(count(s, "<circle"), 4);
		} else {	/* two bars per iteration */
			ck_assert_int_ge(count(s, "<rect"), 2 * iters + 2);
		}
		free(s);
	}
}

START_TEST(plots)
{
	const char *f = tmp_path("slow.dtt"), *pdir = tmp_path("plots");
	static struct run r;
	int iters;

	write_rec(f, &slow);
	RUN(&r, (char *)f, "--bandwidth", "64M", "--plot", (char *)pdir, "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	jstr(r.out, "plot_dir", pdir);
	check_plots(pdir, 20, 1);
	write_rec(f, &fast);
	RUN(&r, (char *)f, "--bandwidth", "1M", "--plot", (char *)pdir, "--json");
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	iters = jnum(r.out, "iterations");
	check_plots(pdir, 30, iters);
	/* a file where the directory should be */
	write_buf(tmp_path("afile"), "x", 1);
	RUN(&r, (char *)f, "--plot", (char *)tmp_path("afile"));
	ck_assert_int_ne(r.rc, 0);
	ck_assert_msg(strstr(r.err, "--plot"), "%s", r.err);
}
END_TEST

/* One line on stderr, "dirtyplan: " and want in it, a non-zero exit, nothing on stdout. */
static void assert_one_error(const struct run *r, const char *want)
{
	ck_assert_msg(r->rc != 0, "exit status 0; stderr: %s", r->err);
	ck_assert_msg(strchr(r->err, '\n') == r->err + strlen(r->err) - 1,
		      "want one line, got: %s", r->err);
	ck_assert_msg(!strncmp(r->err, "dirtyplan: ", 11), "no prefix: %s", r->err);
	ck_assert_msg(strstr(r->err, want), "'%s' not in: %s", want, r->err);
	ck_assert_msg(r->out[0] == 0, "stdout: %s", r->out);
}

static pid_t unused_pid(void)
{
	char path[64];
	pid_t pid = 4000000;

	for (;; pid--) {
		snprintf(path, sizeof(path), "/proc/%d", pid);
		if (access(path, F_OK))
			return pid;
	}
}

START_TEST(bad_input)
{
	const char *f = tmp_path("slow.dtt");
	static struct run r;
	char pid[16];

	write_rec(f, &slow);
	RUN(&r, (char *)f, "--bandwidth", "0");
	assert_one_error(&r, "invalid --bandwidth '0'");
	RUN(&r, (char *)f, "--bandwidth", "-5M");
	assert_one_error(&r, "invalid --bandwidth '-5M'");
	RUN(&r, (char *)f, "--bandwidth", "fast");
	assert_one_error(&r, "invalid --bandwidth 'fast'");
	RUN(&r, (char *)f, "--bandwidth", "10furlongs");
	assert_one_error(&r, "invalid --bandwidth");
	RUN(&r, (char *)f, "--link", "0");
	assert_one_error(&r, "invalid --link");
	RUN(&r, (char *)f, "--downtime", "0");
	assert_one_error(&r, "invalid --downtime '0'");
	RUN(&r, (char *)f, "--downtime", "0ms");
	assert_one_error(&r, "invalid --downtime");
	RUN(&r, (char *)f, "--downtime", "300");	/* a unit is required */
	assert_one_error(&r, "invalid --downtime");
	RUN(&r, (char *)f, "--timeout", "-1s");
	assert_one_error(&r, "invalid --timeout");
	RUN(&r, (char *)f, "--max-iterations", "0");
	assert_one_error(&r, "invalid --max-iterations");
	RUN(&r, (char *)f, "--page-size", "4000");
	assert_one_error(&r, "invalid --page-size");
	RUN(&r, (char *)f, "--ram", "1K");	/* less than a page */
	assert_one_error(&r, "invalid --ram");
	RUN(&r, (char *)f, "--ram", "lots");
	assert_one_error(&r, "invalid --ram");
	RUN(&r, "-d", "1");
	assert_one_error(&r, "nothing to plan");
	RUN(&r, (char *)f, "-p", "1");
	assert_one_error(&r, "not both");
	RUN(&r, (char *)f, "--scan-ram");
	assert_one_error(&r, "--scan-ram");
	snprintf(pid, sizeof(pid), "%d", unused_pid());
	RUN(&r, "-p", pid, "-d", "1");
	assert_one_error(&r, "no process with pid");
	RUN(&r, "-p", "abc");
	assert_one_error(&r, "invalid --pid");
	RUN(&r, "/nonexistent/vm.dtt");
	assert_one_error(&r, "cannot open /nonexistent/vm.dtt");

	/* a recording of 8 KiB pages, against QEMU's (and the default) 4 KiB */
	{
		struct rec o = slow;

		o.page_size = 8192;
		write_rec(tmp_path("8k.dtt"), &o);
		RUN(&r, (char *)tmp_path("8k.dtt"));
		assert_one_error(&r, "recorded with 8192-byte pages, not 4096");
		RUN(&r, (char *)tmp_path("8k.dtt"), "--page-size", "8192", "--json");
		ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
		ck_assert_int_eq(jnum(r.out, "page_size"), 8192);
	}
	/* an empty recording: a header and no epoch */
	{
		struct rec o = slow;

		o.epochs = 0;
		write_rec(tmp_path("empty.dtt"), &o);
		RUN(&r, (char *)tmp_path("empty.dtt"));
		assert_one_error(&r, "empty recording");
	}
	/* not a trace, and a damaged one (a flipped byte in the 3rd epoch's block) */
	write_buf(tmp_path("text.dtt"), "hello, world\n", 13);
	RUN(&r, (char *)tmp_path("text.dtt"));
	assert_one_error(&r, "text.dtt");
	{
		struct rec o = slow;
		char *buf;
		size_t len;
		struct stat st;
		int fd;

		o.epochs = 5;
		o.pages = 10;
		write_rec(tmp_path("bad.dtt"), &o);
		ck_assert_int_eq(stat(tmp_path("bad.dtt"), &st), 0);
		len = st.st_size;
		buf = malloc(len);
		fd = open(tmp_path("bad.dtt"), O_RDONLY);
		ck_assert_int_eq(read(fd, buf, len), (ssize_t)len);
		close(fd);
		buf[len - 20] ^= 0x5a;	/* inside the last block's pages */
		write_buf(tmp_path("bad.dtt"), buf, len);
		free(buf);
		RUN(&r, (char *)tmp_path("bad.dtt"));
		assert_one_error(&r, "good epochs");
	}
	/* JSON mode: the same line, and {"error": ...} on stdout */
	RUN(&r, (char *)f, "--bandwidth", "0", "--json");
	ck_assert_int_ne(r.rc, 0);
	ck_assert_msg(!strncmp(r.out, "{\"error\":\"invalid --bandwidth", 29), "%s", r.out);
	assert_json_valid(r.out);
}
END_TEST

/*
 * Live: a VM of ours whose vCPU writes random pages of its 64 MiB logged slot, watched for 2 s.
 * The RAM is that slot (slot 0 has logging off), the pages come in, --scan-ram counts zero
 * pages of a slot the guest has not finished writing.
 */
START_TEST(live_vm)
{
	const char *why = dt_test_need_kvm(), *pdir = tmp_path("live");
	static struct run r;
	double zero, ram;
	char pid[16];
	int vmm;

	if (why)
		DT_SKIP("%s", why);
	vmm = dt_test_writer_vmm(1);
	snprintf(pid, sizeof(pid), "%d", vmm);
	RUN(&r, "-p", pid, "-d", "2", "-i", "250", "--scan-ram", "--bandwidth", "64M", "--json",
	    "--plot", (char *)pdir);
	dt_test_kill(vmm);
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	assert_json_valid(r.out);
	ck_assert_int_eq(jnum(r.out, "pid"), vmm);
	ram = jnum(r.out, "ram_pages");
	ck_assert_int_eq(ram, DT_WRITER_SIZE / PS);
	jstr(r.out, "ram_from", "logged-slots");
	ck_assert(jbool(r.out, "zero_pages_counted"));
	zero = jnum(r.out, "zero_pages");
	ck_assert_msg(zero >= 0 && zero <= ram, "zero pages %g of %g", zero, ram);
	ck_assert_int_ge(jnum(r.out, "epochs"), 7);	/* 2 s of 250 ms, and the last cut */
	assert_close(jnum(r.out, "seconds"), 2, 0.1, "watched seconds");
	ck_assert_int_gt(jnum(r.out, "page_epochs"), 100);
	ck_assert_int_gt(jnum(r.out, "raw_events"), 0);
	ck_assert_int_ge(jnum(r.out, "iterations"), 1);
	(void)jbool(r.out, "converges");
	check_plots(pdir, 7, (int)jnum(r.out, "iterations"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("plan_tool");
	TCase *tc = tcase_create("recordings");
	TCase *te = tcase_create("errors");
	TCase *tl = tcase_create("live");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(te, setup, teardown);
	tcase_add_checked_fixture(tl, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_set_timeout(te, 60);
	tcase_set_timeout(tl, 60);
	tcase_add_test(tc, below_bandwidth_converges);
	tcase_add_test(tc, above_bandwidth_does_not_converge);
	tcase_add_test(tc, ram_and_link);
	tcase_add_test(tc, plots);
	tcase_add_test(te, bad_input);
	tcase_add_test(tl, live_vm);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, te);
	suite_add_tcase(s, tl);
	return dt_test_main(s, "plan_tool");
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dirtytrace exporter: the exposition text (unit-checked, and by promtool), HTTP routing and
 * --listen parsing; bad input; a real Prometheus server scraping it while a VM of ours dirties
 * a known set of pages, the values asserted through Prometheus' HTTP API; stuck and slow
 * clients that must not stall the harvester; VMs that come and go; and the systemd unit's
 * capability set, which must be enough and not more than enough.
 * Tags: unit (render, route, parse), root + kvm (the rest), prometheus (the server test).
 */
#include "../tools/exporter.c"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "testlib.h"
#include "vmm.h"

static const char *tool(void)
{
	static char path[512];
	const char *dir = getenv("DT_BIN");

	snprintf(path, sizeof(path), "%s/dirtytrace", dir ? dir : ".output/bin");
	return path;
}

/* ---- the exposition text ---- */

/* Checks the text's shape: every sample's family has HELP and TYPE before it, a family's samples
 * are contiguous, counters end in _total and nothing else does. Returns the sample count. */
static int check_shape(const char *text)
{
	char fam[64][96] = {}, type[64][16] = {};
	int nfam = 0, samples = 0, cur = -1;
	const char *p = text;

	while (*p) {
		const char *eol = strchr(p, '\n');
		char line[1024], name[96];

		ck_assert_msg(eol, "text does not end with a newline");
		snprintf(line, sizeof(line), "%.*s", (int)(eol - p), p);
		p = eol + 1;
		if (!strncmp(line, "# HELP ", 7)) {
			sscanf(line + 7, "%95s", name);
			ck_assert_int_lt(nfam, 64);
			for (int i = 0; i < nfam; i++)
				ck_assert_msg(strcmp(fam[i], name), "family %s twice", name);
			snprintf(fam[nfam], sizeof(fam[nfam]), "%s", name);
			cur = nfam++;
			continue;
		}
		if (!strncmp(line, "# TYPE ", 7)) {
			char t[16];

			ck_assert_int_eq(sscanf(line + 7, "%95s %15s", name, t), 2);
			ck_assert_msg(cur >= 0 && !strcmp(fam[cur], name), "TYPE %s without HELP", name);
			ck_assert_msg(!strcmp(t, "counter") || !strcmp(t, "gauge"), "type %s", t);
			snprintf(type[cur], sizeof(type[cur]), "%s", t);
			ck_assert_msg(!strcmp(t, "counter") == (strlen(name) > 6 &&
				      !strcmp(name + strlen(name) - 6, "_total")),
				      "%s: a counter must end in _total and only a counter", name);
			continue;
		}
		ck_assert_msg(line[0] != '#', "stray comment: %s", line);
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(line, "{ "), line);
		ck_assert_msg(cur >= 0 && !strcmp(fam[cur], name) && type[cur][0],
			      "sample %s outside its family (HELP/TYPE missing or not contiguous)",
			      line);
		ck_assert_msg(strchr(line, ' '), "no value: %s", line);
		samples++;
	}
	return samples;
}

/* The value of the sample whose name and labels are exactly `series`, NAN if absent. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return NAN;
}

/* promtool check metrics on text: 0 ok, 1 failed (its output in why), -1 no promtool. */
static int promtool(const char *text, char *why, size_t sz)
{
	char path[] = "/tmp/dt-exp-XXXXXX", cmd[256];
	int fd, rc;
	FILE *p;
	size_t n;

	if (access("/usr/bin/promtool", X_OK))
		return -1;
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
	p = popen(cmd, "r");
	n = fread(why, 1, sz - 1, p);
	why[n] = 0;
	rc = pclose(p);
	unlink(path);
	return rc ? 1 : 0;
}

START_TEST(render_format)
{
	struct dt_top_vcpu vc[] = {
		{ .id = 0, .pages_per_s = 200, .ring_size = 4096, .ring_used = 17,
		  .ring_full_exits = 3, .ring_overflows = 0 },
		{ .id = 1, .pages_per_s = 100.5, .ring_size = 4096, .ring_used = 4 },
	};
	struct dt_top_slot sl[] = {
		{ .as_id = 0, .id = 1, .logging = true, .pages = 4096, .pages_per_s = 200 },
		{ .as_id = 1, .id = 2, .logging = false, .pages = 512 },
	};
	struct dt_top_vm vms[] = {
		{ .pid = 100, .name = "vm-a", .nr_vcpus = 2, .ring_entries = 4096, .tracking = true,
		  .pages_per_s = 300.5, .bytes_per_s = 300.5 * 4096, .wss_1s = 300, .wss_10s = 310,
		  .wss_60s = 320, .total_pages = 999, .drops = 7, .nr_vcpus_rows = 2, .vcpus = vc,
		  .nr_slots = 2, .slots = sl },
		{ .pid = 100, .name = "vm-b", .nr_vcpus = 1 },	/* a second VM of the same VMM */
		{ .pid = 200, .name = "we\"ird\\na\nme", .nr_vcpus = 1 },
	};
	struct dt_top_frame f = { .interval_s = 1, .nr_vms = 3, .vms = vms };
	struct exp_vm x[] = { { .pages_total = 1234, .raw_total = 56789 }, { .index = 1 }, {} };
	struct exp_totals t = { .source = "raw_tp/kvm_dirty_ring_push", .epoch_s = 1.002,
				.st = { .raw = 56789, .rb_drops = 5, .lost = 1, .epochs = 9 },
				.scrapes = 4, .dropped_timeout = 2 };
	char why[4096];
	size_t len;
	char *text = exp_render(&f, x, &t, &len);
	int rc;

	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(len, strlen(text));
	ck_assert_int_gt(check_shape(text), 40);
	ck_assert_double_eq(sample(text, "dirtytrace_source_info{source=\"raw_tp/kvm_dirty_ring_push\"}"), 1);
	ck_assert_double_eq(sample(text, "dirtytrace_dropped_records_total"), 5);
	ck_assert_double_eq(sample(text, "dirtytrace_lost_pages_total"), 1);
	ck_assert_double_eq(sample(text, "dirtytrace_epochs_total"), 9);
	ck_assert_double_eq(sample(text, "dirtytrace_vms"), 3);
	ck_assert_double_eq(sample(text, "dirtytrace_exporter_scrapes_total"), 4);
	ck_assert_double_eq(sample(text, "dirtytrace_exporter_clients_dropped_total{reason=\"timeout\"}"), 2);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_dirty_pages_per_second{pid=\"100\",name=\"vm-a\"}"), 300.5);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_dirty_bytes_per_second{pid=\"100\",name=\"vm-a\"}"), 300.5 * 4096);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_dirty_pages_total{pid=\"100\",name=\"vm-a\"}"), 1234);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_dirty_events_total{pid=\"100\",name=\"vm-a\"}"), 56789);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_wss_pages{pid=\"100\",name=\"vm-a\",window=\"1s\"}"), 300);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_wss_pages{pid=\"100\",name=\"vm-a\",window=\"10s\"}"), 310);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_wss_pages{pid=\"100\",name=\"vm-a\",window=\"60s\"}"), 320);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_tracking{pid=\"100\",name=\"vm-a\"}"), 1);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_tracking{pid=\"100\",name=\"vm-b\",vm=\"1\"}"), 0);
	ck_assert_double_eq(sample(text, "dirtytrace_vm_recovered_pages_total{pid=\"100\",name=\"vm-a\"}"), 7);
	ck_assert_double_eq(sample(text, "dirtytrace_vcpu_dirty_pages_per_second{pid=\"100\",name=\"vm-a\",vcpu=\"1\"}"), 100.5);
	ck_assert_double_eq(sample(text, "dirtytrace_vcpu_dirty_ring_used_entries{pid=\"100\",name=\"vm-a\",vcpu=\"0\"}"), 17);
	ck_assert_double_eq(sample(text, "dirtytrace_vcpu_dirty_ring_full_exits_total{pid=\"100\",name=\"vm-a\",vcpu=\"0\"}"), 3);
	ck_assert_double_eq(sample(text, "dirtytrace_memslot_dirty_pages_per_second{pid=\"100\",name=\"vm-a\",as_id=\"0\",slot=\"1\"}"), 200);
	ck_assert_double_eq(sample(text, "dirtytrace_memslot_dirty_logging{pid=\"100\",name=\"vm-a\",as_id=\"1\",slot=\"2\"}"), 0);
	/* label values escaped: quote, backslash, newline */
	ck_assert_double_eq(sample(text, "dirtytrace_vm_vcpus{pid=\"200\",name=\"we\\\"ird\\\\na\\nme\"}"), 1);
	rc = promtool(text, why, sizeof(why));
	if (rc < 0)
		fprintf(stderr, "note render_format: promtool not installed, text checked by shape only\n");
	ck_assert_msg(rc <= 0, "promtool check metrics: %s\n%s", why, text);
	free(text);
}
END_TEST

START_TEST(render_before_first_cut)
{
	struct exp_totals t = { .source = "raw_tp/kvm_dirty_ring_push" };
	char why[4096];
	size_t len;
	char *text = exp_render(NULL, NULL, &t, &len);

	ck_assert_ptr_nonnull(text);
	check_shape(text);
	ck_assert_double_eq(sample(text, "dirtytrace_vms"), 0);
	ck_assert_double_eq(sample(text, "dirtytrace_epochs_total"), 0);
	if (promtool(text, why, sizeof(why)) < 0)
		DT_SKIP("promtool not installed (Debian package prometheus): shape checked only");
	ck_assert_msg(promtool(text, why, sizeof(why)) == 0, "promtool: %s", why);
	free(text);
}
END_TEST

static const struct route_case {
	const char *req;
	int status;
	bool head;
} routes[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200, false },
	{ "GET /metrics HTTP/1.0\r\n\r\n", 200, false },
	{ "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", 200, false },
	{ "HEAD /metrics HTTP/1.1\r\n\r\n", 200, true },
	{ "GET / HTTP/1.1\r\n\r\n", 404, false },
	{ "GET /metricsx HTTP/1.1\r\n\r\n", 404, false },
	{ "GET /metric HTTP/1.1\r\n\r\n", 404, false },
	{ "POST /metrics HTTP/1.1\r\n\r\n", 405, false },
	{ "PUT /metrics HTTP/1.1\r\n\r\n", 405, false },
	{ "DELETE / HTTP/1.1\r\n\r\n", 405, false },
	{ "GET /metrics\r\n\r\n", 400, false },
	{ "GET /metrics SPDY/3\r\n\r\n", 400, false },
	{ "garbage\r\n\r\n", 400, false },
	{ "\r\n\r\n", 400, false },
};

START_TEST(http_route)
{
	const struct route_case *c = &routes[_i];
	bool head;

	ck_assert_msg(exp_http_route(c->req, strlen(c->req), &head) == c->status,
		      "'%s': status %d, want %d", c->req,
		      exp_http_route(c->req, strlen(c->req), &head), c->status);
	ck_assert_int_eq(head, c->head);
}
END_TEST

static const struct listen_case {
	const char *arg;
	const char *canon;	/* NULL: invalid */
} listens[] = {
	{ "127.0.0.1:19555", "127.0.0.1:19555" },
	{ "localhost:80", "127.0.0.1:80" },
	{ ":9999", "0.0.0.0:9999" },
	{ "0.0.0.0:1", "0.0.0.0:1" },
	{ "[::1]:19555", "[::1]:19555" },
	{ "[::]:0", "[::]:0" },
	{ "10.1.2.3:65535", "10.1.2.3:65535" },
	{ "127.0.0.1:65536", NULL },
	{ "127.0.0.1:", NULL },
	{ "127.0.0.1", NULL },
	{ "127.0.0.1:-1", NULL },
	{ "127.0.0.1:80x", NULL },
	{ "::1:80", NULL },
	{ "[::1]80", NULL },
	{ "[::1", NULL },
	{ "256.0.0.1:80", NULL },
	{ "example.com:80", NULL },
	{ "", NULL },
	{ "19555", NULL },
};

START_TEST(parse_listen)
{
	const struct listen_case *c = &listens[_i];
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256] = "", got[80];
	int err = exp_parse_listen(c->arg, &ss, &len, why, sizeof(why));

	if (!c->canon) {
		ck_assert_msg(err == -EINVAL, "'%s' accepted", c->arg);
		ck_assert_msg(strstr(why, "--listen") && !strchr(why, '\n'), "message: %s", why);
		return;
	}
	ck_assert_msg(!err, "'%s': %s", c->arg, why);
	addr_str(&ss, got, sizeof(got));
	ck_assert_str_eq(got, c->canon);
}
END_TEST

/* ---- running the exporter ---- */

struct exporter {
	pid_t pid;
	int err_fd;		/* its stderr */
	int port;
	char err[4096];		/* what it printed until it listened, or exited */
};

/* Starts `[wrapper...] dirtytrace exporter ARGS`; waits for its "listening" line (port set) or
 * its exit (port 0). argv: NULL-terminated. */
static void exporter_start(struct exporter *e, char *const *wrapper, char *const *args)
{
	char *argv[32];
	int n = 0, pipefd[2];
	size_t len = 0;
	double t0 = dt_test_now_s();

	for (; wrapper && *wrapper; wrapper++)
		argv[n++] = *wrapper;
	argv[n++] = (char *)tool();
	argv[n++] = "exporter";
	for (; args && *args; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	memset(e, 0, sizeof(*e));
	ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
	e->pid = fork();
	ck_assert_int_ge(e->pid, 0);
	if (!e->pid) {
		dup2(pipefd[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	e->err_fd = pipefd[0];
	while (dt_test_now_s() - t0 < 20 && len < sizeof(e->err) - 1) {
		struct pollfd p = { .fd = e->err_fd, .events = POLLIN };
		ssize_t r;
		char *at;

		if (poll(&p, 1, 200) <= 0)
			continue;
		r = read(e->err_fd, e->err + len, sizeof(e->err) - 1 - len);
		if (r <= 0)
			break;		/* it exited */
		len += r;
		e->err[len] = 0;
		at = strstr(e->err, "listening on http://");
		if (at && strchr(at, '\n')) {
			at = strstr(at, "]:") ? strstr(at, "]:") + 1 : strchr(at + 20, ':');
			e->port = atoi(at + 1);
			return;
		}
	}
}

/* SIGTERM; its exit status. */
static int exporter_stop(struct exporter *e)
{
	int st;

	kill(e->pid, SIGTERM);
	ck_assert_int_eq(waitpid(e->pid, &st, 0), e->pid);
	close(e->err_fd);
	return st;
}

/* Runs the exporter to its exit (bad input): its status, stderr in out. */
static int exporter_fail(char *const *args, char *out, size_t sz)
{
	struct exporter e;
	int st;

	exporter_start(&e, NULL, args);
	if (e.port)
		return exporter_stop(&e), 0;
	ck_assert_int_eq(waitpid(e.pid, &st, 0), e.pid);
	snprintf(out, sz, "%s", e.err);
	close(e.err_fd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* A plain HTTP GET on 127.0.0.1:port; the status, the body (malloc'd) in *body. */
static int http_get(int port, const char *path, char **body, double *secs)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 5 };
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap), req[1024];
	double t0 = dt_test_now_s();
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		free(buf);
		*body = NULL;
		return -errno;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	ck_assert_int_eq(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	while ((n = recv(fd, buf + len, cap - 1 - len, 0)) > 0) {
		len += n;
		if (len == cap - 1)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = 0;
	close(fd);
	if (secs)
		*secs = dt_test_now_s() - t0;
	sscanf(buf, "HTTP/1.1 %d", &status);
	*body = buf;
	return status;
}

static char *scrape(int port)
{
	char *body;
	int st = http_get(port, "/metrics", &body, NULL);

	ck_assert_msg(st == 200, "GET /metrics: %d", st);
	return body;
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(fd, (struct sockaddr *)&a, &len);
	close(fd);
	return ntohs(a.sin_port);
}

/* ---- bad input ---- */

START_TEST(bad_listen)
{
	static const char *const bad[] = { "nonsense", "127.0.0.1:99999", "1.2.3.4.5:80",
					   "127.0.0.1:", "[::1]" };
	char out[4096];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *args[] = { "--listen", (char *)bad[i], NULL };
		int rc = exporter_fail(args, out, sizeof(out));

		ck_assert_msg(rc == 1, "--listen %s: exit %d", bad[i], rc);
		ck_assert_msg(lines(out) == 1 && strstr(out, "--listen") &&
			      !strncmp(out, "dirtytrace: ", 12),
			      "--listen %s: want one line naming --listen, got: %s", bad[i], out);
	}
}
END_TEST

START_TEST(port_in_use)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	char out[4096], where[64];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	getsockname(fd, (struct sockaddr *)&a, &len);
	snprintf(where, sizeof(where), "127.0.0.1:%d", ntohs(a.sin_port));
	char *args[] = { "--listen", where, NULL };

	rc = exporter_fail(args, out, sizeof(out));
	ck_assert_msg(rc == 1, "exit %d", rc);
	ck_assert_msg(lines(out) == 1 && strstr(out, where) && strstr(out, "in use"),
		      "want one line with %s and 'in use', got: %s", where, out);
	/* an address this host does not have */
	char *args2[] = { "--listen", "192.0.2.1:19555", NULL };

	rc = exporter_fail(args2, out, sizeof(out));
	ck_assert_msg(rc == 1 && lines(out) == 1 && strstr(out, "192.0.2.1"), "%d: %s", rc, out);
	close(fd);
}
END_TEST

/* ---- a VM of ours with a known pattern ---- */

/* vCPU 0 writes the first 200 pages of slot 1, vCPU 1 the first 100 of slot 2, again and
 * again: every epoch of the exporter sees exactly these 300 distinct pages. */
/* "metric{pid="P",name="NAME"" for this process's VM (its comm is the name) */
static const char *vm_series(const char *metric, const char *more)
{
	static char s[2][256];
	static int i;
	char comm[32] = "";
	FILE *f = fopen("/proc/self/comm", "r");

	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	i ^= 1;
	snprintf(s[i], sizeof(s[i]), "%s{pid=\"%d\",name=\"%s\"%s}", metric, getpid(), comm,
		 more ? more : "");
	return s[i];
}

/* ---- a real Prometheus server ---- */

static void url_encode(const char *in, char *out, size_t sz)
{
	size_t n = 0;

	for (; *in && n + 4 < sz; in++) {
		if (isalnum((unsigned char)*in) || strchr("-_.~", *in))
			out[n++] = *in;
		else
			n += snprintf(out + n, sz - n, "%%%02X", (unsigned char)*in);
	}
	out[n] = 0;
}

/* The value of an instant query that selects one series; NAN when it selects none. */
static double prom_query(int port, const char *q)
{
	char path[2048], enc[1536], *body, *v;
	double val = NAN;
	int st;

	url_encode(q, enc, sizeof(enc));
	snprintf(path, sizeof(path), "/api/v1/query?query=%s", enc);
	st = http_get(port, path, &body, NULL);
	ck_assert_msg(st == 200, "query %s: HTTP %d: %.300s", q, st, body ? body : "");
	v = strstr(body, "\"value\":[");
	if (v) {
		v = strstr(v, ",\"");
		ck_assert_ptr_nonnull(v);
		val = strtod(v + 2, NULL);
		ck_assert_msg(!strstr(v + 1, "\"value\":["), "query %s selects several series: %s",
			      q, body);
	}
	free(body);
	return val;
}

static void assert_near(const char *what, double got, double want, double tol)
{
	ck_assert_msg(!isnan(got), "%s: no value", what);
	ck_assert_msg(fabs(got - want) <= tol * want, "%s = %.2f, want %.2f within %.0f%%", what,
		      got, want, tol * 100);
	fprintf(stderr, "note prometheus: %s = %.2f (want %.2f)\n", what, got, want);
}

START_TEST(prometheus_scrapes)
{
	char dir[] = "/tmp/dt-prom-XXXXXX", cfg[256], data[256], log[256], listen_arg[64];
	char q[512], pidsel[64];
	struct exporter e;
	struct dt_known_writer w;
	pid_t prom;
	int pport, st = 0;
	FILE *f;
	double t0, w0 = 0, tw0 = 0, v;

	if (dt_test_need_kvm())
		DT_SKIP("%s", dt_test_need_kvm());
	if (access("/usr/bin/prometheus", X_OK))
		DT_SKIP("/usr/bin/prometheus not installed (Debian package prometheus)");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	dt_test_known_writer_start(&w);
	char *args[] = { "--listen", "127.0.0.1:0", NULL };

	exporter_start(&e, NULL, args);
	ck_assert_msg(e.port, "the exporter did not start: %s", e.err);

	snprintf(cfg, sizeof(cfg), "%s/prometheus.yml", dir);
	snprintf(data, sizeof(data), "--storage.tsdb.path=%s/data", dir);
	snprintf(log, sizeof(log), "%s/prometheus.log", dir);
	f = fopen(cfg, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
		"  evaluation_interval: 1s\nscrape_configs:\n  - job_name: dirtytrace\n"
		"    static_configs:\n      - targets: ['127.0.0.1:%d']\n", e.port);
	fclose(f);
	pport = free_port();
	snprintf(listen_arg, sizeof(listen_arg), "--web.listen-address=127.0.0.1:%d", pport);
	prom = fork();
	ck_assert_int_ge(prom, 0);
	if (!prom) {
		char cfg_arg[300];
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		snprintf(cfg_arg, sizeof(cfg_arg), "--config.file=%s", cfg);
		dup2(fd, 1);
		dup2(fd, 2);
		execl("/usr/bin/prometheus", "prometheus", cfg_arg, data, listen_arg,
		      "--storage.tsdb.retention.time=1h", "--log.level=warn", (char *)NULL);
		_exit(127);
	}
	/* ready, then 14 s of 1 s scrapes: rate()[10s] has a full window */
	t0 = dt_test_now_s();
	for (;;) {
		char *body;

		ck_assert_msg(waitpid(prom, &st, WNOHANG) == 0, "prometheus exited, see %s", log);
		if (http_get(pport, "/-/ready", &body, NULL) == 200) {
			free(body);
			break;
		}
		free(body);
		ck_assert_msg(dt_test_now_s() - t0 < 30, "prometheus not ready after 30 s, see %s", log);
		usleep(200000);
	}
	fprintf(stderr, "note prometheus: ready after %.1f s\n", dt_test_now_s() - t0);
	snprintf(pidsel, sizeof(pidsel), "pid=\"%d\"", getpid());
	t0 = dt_test_now_s();
	while (dt_test_now_s() - t0 < 14) {
		if (dt_test_now_s() - t0 > 3 && !tw0) {	/* the writer's own count from here */
			tw0 = dt_test_now_s();
			w0 = __atomic_load_n(&w.writes, __ATOMIC_RELAXED);
		}
		usleep(250000);
	}
	double writes_per_s = (__atomic_load_n(&w.writes, __ATOMIC_RELAXED) - w0) / (dt_test_now_s() - tw0);

	ck_assert_double_eq(prom_query(pport, "up{job=\"dirtytrace\"}"), 1);
	/* The counter grows 300 at each cut; 1 s scrapes of a 1 s step function alias: the
	 * samples in a 10 s window span 8 to 10 steps, so rate()[10s] is 300 within ~11 %. */
	snprintf(q, sizeof(q), "rate(dirtytrace_vm_dirty_pages_total{%s}[10s])", pidsel);
	assert_near(q, prom_query(pport, q), 300, 0.15);
	/* exactly: every epoch held the same 300 pages (both counters from the same scrape) */
	snprintf(q, sizeof(q), "dirtytrace_vm_dirty_pages_total{%s} / ignoring(pid, name) "
		 "dirtytrace_epochs_total", pidsel);
	v = prom_query(pport, q);
	ck_assert_msg(v == 300, "%s = %.3f, want exactly 300", q, v);
	snprintf(q, sizeof(q), "dirtytrace_vm_dirty_pages_per_second{%s}", pidsel);
	assert_near(q, prom_query(pport, q), 300, 0.10);
	snprintf(q, sizeof(q), "dirtytrace_vm_dirty_bytes_per_second{%s}", pidsel);
	assert_near(q, prom_query(pport, q), 300 * 4096, 0.10);
	snprintf(q, sizeof(q), "rate(dirtytrace_vm_dirty_events_total{%s}[10s])", pidsel);
	assert_near(q, prom_query(pport, q), writes_per_s, 0.20);
	static const char *const windows[] = { "1s", "10s", "60s" };

	for (int i = 0; i < 3; i++) {
		snprintf(q, sizeof(q), "dirtytrace_vm_wss_pages{%s,window=\"%s\"}", pidsel,
			 windows[i]);
		v = prom_query(pport, q);
		ck_assert_msg(v == 300, "%s = %.0f, want exactly 300", q, v);
	}
	snprintf(q, sizeof(q), "dirtytrace_vm_tracking{%s}", pidsel);
	ck_assert_double_eq(prom_query(pport, q), 1);
	snprintf(q, sizeof(q), "dirtytrace_vm_dirty_ring_entries{%s}", pidsel);
	ck_assert_double_eq(prom_query(pport, q), 4096);
	snprintf(q, sizeof(q), "dirtytrace_vcpu_dirty_pages_per_second{%s,vcpu=\"0\"}", pidsel);
	assert_near(q, prom_query(pport, q), 200, 0.10);
	snprintf(q, sizeof(q), "dirtytrace_vcpu_dirty_pages_per_second{%s,vcpu=\"1\"}", pidsel);
	assert_near(q, prom_query(pport, q), 100, 0.10);
	snprintf(q, sizeof(q), "dirtytrace_vcpu_dirty_ring_size_entries{%s,vcpu=\"1\"}", pidsel);
	ck_assert_double_eq(prom_query(pport, q), 4096);
	snprintf(q, sizeof(q), "dirtytrace_memslot_dirty_pages_per_second{%s,slot=\"1\"}", pidsel);
	assert_near(q, prom_query(pport, q), 200, 0.10);
	snprintf(q, sizeof(q), "dirtytrace_memslot_dirty_pages_per_second{%s,slot=\"2\"}", pidsel);
	assert_near(q, prom_query(pport, q), 100, 0.10);
	ck_assert_double_eq(prom_query(pport, "dirtytrace_lost_pages_total"), 0);
	ck_assert_double_eq(prom_query(pport, "count(dirtytrace_source_info)"), 1);
	/* the README's example queries run */
	ck_assert(!isnan(prom_query(pport, "max(topk(10, sum by (pid, name) "
					   "(rate(dirtytrace_vm_dirty_pages_total[10s]))))")));

	kill(prom, SIGTERM);
	waitpid(prom, &st, 0);
	st = exporter_stop(&e);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exporter exit status %d", st);
	dt_test_known_writer_stop(&w);
	char rm[300];

	snprintf(rm, sizeof(rm), "rm -rf %s", dir);
	ck_assert_int_eq(system(rm), 0);
}
END_TEST

/* ---- stuck clients do not stall capture ---- */

static int connect_local(int port, bool tiny_rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	ck_assert_int_ge(fd, 0);
	if (tiny_rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &one, sizeof(one));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

START_TEST(stuck_clients)
{
	struct exporter e;
	struct dt_known_writer w;
	int idle[24], nosend[4], st;
	double e0, e1, t0, worst = 0, v;
	char *body;

	if (dt_test_need_kvm())
		DT_SKIP("%s", dt_test_need_kvm());
	dt_test_known_writer_start(&w);
	char *args[] = { "--listen", "127.0.0.1:0", "-i", "200", "--client-timeout", "1", NULL };

	exporter_start(&e, NULL, args);
	ck_assert_msg(e.port, "the exporter did not start: %s", e.err);
	usleep(500000);
	body = scrape(e.port);
	e0 = sample(body, "dirtytrace_epochs_total");
	free(body);
	/* requests sent, never read, tiny receive windows; then more silent ones than slots */
	for (int i = 0; i < 4; i++) {
		static const char req[] = "GET /metrics HTTP/1.1\r\n\r\n";

		nosend[i] = connect_local(e.port, true);
		ck_assert_int_eq(send(nosend[i], req, sizeof(req) - 1, 0), sizeof(req) - 1);
	}
	for (int i = 0; i < 24; i++)
		idle[i] = connect_local(e.port, false);
	/* 3 s: fresh scrapes answered at once, epochs still cut every 200 ms */
	t0 = dt_test_now_s();
	while (dt_test_now_s() - t0 < 3) {
		double secs;

		ck_assert_int_eq(http_get(e.port, "/metrics", &body, &secs), 200);
		if (secs > worst)
			worst = secs;
		free(body);
		usleep(200000);
	}
	body = scrape(e.port);
	e1 = sample(body, "dirtytrace_epochs_total");
	fprintf(stderr, "note stuck_clients: %.0f epochs in 3 s of stuck clients, slowest scrape "
		"%.1f ms, last epoch %.3f s\n", e1 - e0, worst * 1e3,
		sample(body, "dirtytrace_epoch_seconds"));
	ck_assert_msg(e1 - e0 >= 12, "only %.0f epochs of 200 ms in 3 s", e1 - e0);
	ck_assert_msg(sample(body, "dirtytrace_epoch_seconds") < 0.3, "last epoch %.3f s",
		      sample(body, "dirtytrace_epoch_seconds"));
	ck_assert_msg(worst < 1.0, "a scrape took %.2f s", worst);
	/* past the limit the oldest went; past the timeout the silent ones went */
	v = sample(body, "dirtytrace_exporter_clients_dropped_total{reason=\"limit\"}");
	ck_assert_msg(v >= 8, "dropped for the limit: %.0f", v);
	v = sample(body, "dirtytrace_exporter_clients_dropped_total{reason=\"timeout\"}");
	ck_assert_msg(v >= 1, "dropped for timeout: %.0f", v);
	ck_assert(!isnan(sample(body, vm_series("dirtytrace_vm_dirty_pages_per_second", NULL))));
	free(body);
	/* the server closed the idle connections: EOF, or a reset for one closed unread */
	for (int i = 0; i < 24; i++) {
		struct timeval tv = { .tv_sec = 2 };
		char c;
		ssize_t n;

		setsockopt(idle[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		n = recv(idle[i], &c, 1, 0);
		ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET),
			      "idle connection %d still open after the timeout (%zd, %s)", i, n,
			      strerror(errno));
		close(idle[i]);
	}
	for (int i = 0; i < 4; i++)
		close(nosend[i]);
	st = exporter_stop(&e);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
	dt_test_known_writer_stop(&w);
}
END_TEST

/* ---- VMs come and go; the exporter stays ---- */

static bool wait_series(int port, const char *series, bool present, double secs)
{
	double t0 = dt_test_now_s();

	while (dt_test_now_s() - t0 < secs) {
		char *body = scrape(port);
		bool has = !isnan(sample(body, series));

		free(body);
		if (has == present)
			return true;
		usleep(100000);
	}
	return false;
}

START_TEST(vms_come_and_go)
{
	struct exporter e;
	struct dt_known_writer w;
	const char *series = vm_series("dirtytrace_vm_tracking", NULL);
	int st;

	if (dt_test_need_kvm())
		DT_SKIP("%s", dt_test_need_kvm());
	char *args[] = { "--listen", "127.0.0.1:0", "-i", "200", NULL };

	exporter_start(&e, NULL, args);
	ck_assert_msg(e.port, "the exporter did not start: %s", e.err);
	ck_assert(wait_series(e.port, "dirtytrace_epochs_total", true, 3));
	for (int round = 0; round < 2; round++) {
		dt_test_known_writer_start(&w);
		ck_assert_msg(wait_series(e.port, series, true, 5), "round %d: %s never appeared",
			      round, series);
		dt_test_known_writer_stop(&w);
		ck_assert_msg(wait_series(e.port, series, false, 5),
			      "round %d: %s still there after the VM is gone", round, series);
		ck_assert_int_eq(kill(e.pid, 0), 0);
	}
	st = exporter_stop(&e);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
}
END_TEST

/* ---- the systemd unit's capabilities: enough, and each one needed ---- */

/* CapabilityBoundingSet of the unit, as setpriv names: "bpf perfmon" */
static void unit_caps(char caps[8][32], int *n)
{
	FILE *f = fopen("tools/dirtytrace-exporter.service", "r");
	char line[512];

	*n = 0;
	ck_assert_msg(f, "tools/dirtytrace-exporter.service: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *save, *tok;

		if (strncmp(line, "CapabilityBoundingSet=", 22))
			continue;
		for (tok = strtok_r(line + 22, " \n", &save); tok && *n < 8;
		     tok = strtok_r(NULL, " \n", &save)) {
			ck_assert_msg(!strncmp(tok, "CAP_", 4), "capability %s", tok);
			for (char *c = tok + 4; *c; c++)
				*c = tolower(*c);
			snprintf(caps[(*n)++], 32, "%s", tok + 4);
		}
	}
	fclose(f);
	ck_assert_msg(*n > 0, "the unit has no CapabilityBoundingSet");
}

START_TEST(unit_capabilities)
{
	char caps[8][32], set[256], drop[256];
	struct exporter e;
	struct dt_known_writer w;
	int n, st;

	if (dt_test_need_kvm())
		DT_SKIP("%s", dt_test_need_kvm());
	if (access("/usr/bin/setpriv", X_OK))
		DT_SKIP("setpriv (util-linux) not installed");
	unit_caps(caps, &n);
	dt_test_known_writer_start(&w);
	/* exactly the unit's set: root keeps only the bounding set at exec */
	snprintf(set, sizeof(set), "--bounding-set=-all");
	for (int i = 0; i < n; i++)
		snprintf(set + strlen(set), sizeof(set) - strlen(set), ",+%.28s", caps[i]);
	char *wrap[] = { "setpriv", "--inh-caps=-all", set, "--", NULL };
	char *args[] = { "--listen", "127.0.0.1:0", "-i", "200", NULL };

	exporter_start(&e, wrap, args);
	ck_assert_msg(e.port, "with %s the exporter did not start: %s", set, e.err);
	ck_assert_msg(wait_series(e.port, vm_series("dirtytrace_vm_tracking", NULL), true, 5),
		      "with %s: our VM never appeared", set);
	fprintf(stderr, "note unit_capabilities: works with %s\n", set);
	st = exporter_stop(&e);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
	/* each one of them is needed: without it, one clear line and exit 1 */
	for (int d = 0; d < n; d++) {
		snprintf(drop, sizeof(drop), "--bounding-set=-all");
		for (int i = 0; i < n; i++)
			if (i != d)
				snprintf(drop + strlen(drop), sizeof(drop) - strlen(drop), ",+%.28s",
					 caps[i]);
		wrap[2] = drop;
		exporter_start(&e, wrap, args);
		if (e.port) {
			exporter_stop(&e);
			ck_abort_msg("without %s the exporter started: the unit grants too much",
				     caps[d]);
		}
		ck_assert_int_eq(waitpid(e.pid, &st, 0), e.pid);
		close(e.err_fd);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "without %s: status %d",
			      caps[d], st);
		ck_assert_msg(lines(e.err) == 1 && strcasestr(e.err, caps[d]),
			      "without %s: want one line naming it, got: %s", caps[d], e.err);
	}
	dt_test_known_writer_stop(&w);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("exporter");
	TCase *unit = tcase_create("unit"), *errors = tcase_create("errors");
	TCase *kvm = tcase_create("kvm");

	tcase_add_test(unit, render_format);
	tcase_add_test(unit, render_before_first_cut);
	tcase_add_loop_test(unit, http_route, 0, sizeof(routes) / sizeof(routes[0]));
	tcase_add_loop_test(unit, parse_listen, 0, sizeof(listens) / sizeof(listens[0]));
	tcase_set_timeout(unit, 20);
	tcase_add_test(errors, bad_listen);
	tcase_add_test(errors, port_in_use);
	tcase_set_timeout(errors, 30);
	tcase_add_test(kvm, stuck_clients);
	tcase_add_test(kvm, vms_come_and_go);
	tcase_add_test(kvm, unit_capabilities);
	tcase_add_test(kvm, prometheus_scrapes);
	tcase_set_timeout(kvm, 90);
	suite_add_tcase(s, unit);
	suite_add_tcase(s, errors);
	suite_add_tcase(s, kvm);
	return dt_test_main(s, "exporter");
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The dirtytrace command as a user meets it: bad input gets one clear line and a non-zero exit,
 * `vms` lists a VM of ours, `gfns` lists exactly the pages it wrote, and nothing stays attached.
 * Tags: root, kvm.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "testlib.h"
#include "vmm.h"

struct run {
	char out[1 << 16];
	char err[1 << 14];
	int rc;
};

static const char *bin_path(const char *name)
{
	static char path[2][512];
	static int i;
	const char *bin = getenv("DT_BIN");

	i ^= 1;
	snprintf(path[i], sizeof(path[i]), "%s/%s", bin ? bin : ".output/bin", name);
	return path[i];
}

static const char *tool(void)
{
	return bin_path("dirtytrace");
}

/* dirtytrace itself. */
static pid_t start(char *const *args, int uid, int *out_fd, int *err_fd)
{
	return dt_test_start(tool(), args, uid, out_fd, err_fd);
}

static void finish(pid_t pid, int out_fd, int err_fd, struct run *r)
{
	r->rc = dt_test_finish(pid, out_fd, err_fd, r->out, sizeof(r->out), r->err,
			       sizeof(r->err));
}

static void run_as(int uid, struct run *r, char *const *args)
{
	int o, e;
	pid_t pid = start(args, uid, &o, &e);

	finish(pid, o, e, r);
}

#define RUN(r, ...) run_as(-1, r, (char *const[]){ __VA_ARGS__, NULL })

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* One line on stderr starting "dirtytrace: " and containing want, non-zero exit, no stdout. */
static void assert_one_error(const struct run *r, const char *want)
{
	ck_assert_msg(r->rc != 0, "exit status 0; stderr: %s", r->err);
	ck_assert_msg(count_lines(r->err) == 1, "want one line, got: %s", r->err);
	ck_assert_msg(!strncmp(r->err, "dirtytrace: ", 12), "no prefix: %s", r->err);
	ck_assert_msg(strstr(r->err, want), "'%s' not in: %s", want, r->err);
	ck_assert_str_eq(r->out, "");
}

/*
 * Our BPF programs are all named dt_*. One that no live process holds (bpftool prints no "pids"
 * line for it) was pinned or leaked by a tool that has exited. Programs of another running
 * dirtytrace are not ours to judge.
 */
static int count_orphans(void)
{
	char line[512];
	FILE *p = popen("bpftool prog show 2>/dev/null", "r");
	int orphans = 0;
	bool in_ours = false, held = false;

	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p)) {
		if (line[0] != ' ' && line[0] != '\t') {	/* "ID: type name ..." starts a program */
			orphans += in_ours && !held;
			in_ours = strstr(line, " name dt_") != NULL;
			held = false;
		} else if (strstr(line, "pids ")) {
			held = true;
		}
	}
	orphans += in_ours && !held;
	pclose(p);
	return orphans;
}

/*
 * The kernel frees a dead process's programs a little after it exits (deferred release), and
 * meanwhile they show with no owner: only programs that stay ownerless for 3 s are leaked.
 */
static void assert_nothing_attached(void)
{
	int orphans = 0;

	for (int i = 0; i < 30; i++) {
		orphans = count_orphans();
		if (!orphans)
			return;
		usleep(100 * 1000);
	}
	ck_assert_msg(!orphans, "%d dirtytrace BPF programs outlived their process by 3 s", orphans);
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

#define NEED(fn) do { const char *why = fn(); if (why) DT_SKIP("%s", why); } while (0)

START_TEST(usage_errors)
{
	struct run r;

	NEED(dt_test_need_root);
	run_as(-1, &r, (char *const[]){ NULL });
	ck_assert_int_ne(r.rc, 0);
	ck_assert_ptr_nonnull(strstr(r.err, "missing command"));
	RUN(&r, "frobnicate");
	assert_one_error(&r, "unknown command 'frobnicate'");
	RUN(&r, "gfns");
	assert_one_error(&r, "gfns needs -p PID");
	RUN(&r, "gfns", "-p", "abc");
	ck_assert_int_ne(r.rc, 0);
	ck_assert_ptr_nonnull(strstr(r.err, "invalid pid: abc"));
}
END_TEST

START_TEST(unknown_pid)
{
	char pid[16];
	struct run r;

	NEED(dt_test_need_root);
	snprintf(pid, sizeof(pid), "%d", unused_pid());
	RUN(&r, "gfns", "-p", pid, "-d", "1");
	assert_one_error(&r, "no process with pid");
	/* in JSON mode the error is also the output */
	RUN(&r, "--json", "gfns", "-p", pid);
	ck_assert_int_ne(r.rc, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "{\"error\":\"no process with pid"));
	assert_nothing_attached();
}
END_TEST

START_TEST(pid_not_a_vm)
{
	char pid[16];
	struct run r;

	NEED(dt_test_need_root);
	snprintf(pid, sizeof(pid), "%d", getpid());	/* we hold no VM here */
	RUN(&r, "gfns", "-p", pid, "-d", "1");
	assert_one_error(&r, "is not a KVM VMM");
	assert_nothing_attached();
}
END_TEST

START_TEST(not_root)
{
	struct run r;

	if (geteuid())
		DT_SKIP("needs root to drop to an unprivileged user");
	run_as(65534, &r, (char *const[]){ "vms", NULL });
	assert_one_error(&r, "must run as root");
}
END_TEST

/* A VM of ours, writing known pages on a thread while the tool watches. */
struct writer {
	struct tvm *vm;
	struct tvm_pages truth;
	volatile int stop;
	int epochs;
};

/* The VM write_loop writes to: slot 1 (16 MiB at 16 MiB) and slot 2 (64 MiB at 1 GiB). */
static struct tvm *writer_vm(void)
{
	struct tvm_opts o = { .nr_vcpus = 1, .ring_entries = 1024 };
	struct tvm *vm = tvm_create(&o);

	ck_assert_msg(vm, "tvm_create: %s", strerror(errno));
	ck_assert_int_eq(tvm_add_slot(vm, 1, 16 << 20, 16 << 20, true), 0);
	ck_assert_int_eq(tvm_add_slot(vm, 2, 1ull << 30, 64 << 20, true), 0);
	return vm;
}

static void *write_loop(void *arg)
{
	struct writer *w = arg;
	uint64_t list[48];
	const uint64_t *lists[1] = { list };
	size_t n = 48;

	/* pages 0..47 of slot 1 and every 7th page of slot 2 */
	tvm_pattern_seq(list, 32, 16 << 20, 16 << 20, 0);
	for (int i = 0; i < 16; i++)
		list[32 + i] = (1ull << 30) + (uint64_t)i * 7 * 4096;
	while (!w->stop) {
		ck_assert_int_eq(tvm_run_epoch(w->vm, lists, &n, w->epochs), 0);
		ck_assert_int_eq(tvm_harvest(w->vm, &w->truth), 0);
		w->epochs++;
	}
	return NULL;
}

START_TEST(vms_and_gfns_of_our_vm)
{
	struct writer w = {};
	char pid[16], want[64], *line, *save;
	pthread_t th;
	struct run r;
	int out_fd, err_fd, lines = 0;
	pid_t tp;

	NEED(dt_test_need_kvm);
	w.vm = writer_vm();
	snprintf(pid, sizeof(pid), "%d", getpid());

	RUN(&r, "vms");
	ck_assert_int_eq(r.rc, 0);
	ck_assert_msg(strstr(r.out, pid), "our pid not in: %s", r.out);
	RUN(&r, "vms", "--json");
	ck_assert_int_eq(r.rc, 0);
	snprintf(want, sizeof(want), "{\"pid\":%s,", pid);
	ck_assert_msg(strstr(r.out, want), "%s not in: %s", want, r.out);
	ck_assert_ptr_nonnull(strstr(r.out, "\"ring_entries\":1024"));
	ck_assert_ptr_nonnull(strstr(r.out, "\"id\":2,\"base_gfn\":262144,\"npages\":16384"));

	/* start watching, then write: -v tells when the page source is attached */
	tp = start((char *const[]){ "-v", "gfns", "-p", pid, "-d", "2", "-i", "300", NULL }, -1,
		   &out_fd, &err_fd);
	for (int i = 0; i < 100; i++) {
		char buf[4096] = "";

		pread(err_fd, buf, sizeof(buf) - 1, 0);
		if (strstr(buf, "active (page source)"))
			break;
		usleep(50 * 1000);
	}
	pthread_create(&th, NULL, write_loop, &w);
	usleep(1000 * 1000);
	w.stop = 1;
	pthread_join(th, NULL);
	finish(tp, out_fd, err_fd, &r);
	ck_assert_msg(r.rc == 0, "rc %d: %s", r.rc, r.err);
	ck_assert_int_gt(w.epochs, 0);

	/* exactly the pages KVM reported, as sorted as_id:gfn lines */
	tvm_pages_sort_unique(&w.truth);
	ck_assert_uint_eq(w.truth.n, 48);
	for (line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const struct tvm_page *p;
		uint64_t base;

		ck_assert_msg((size_t)lines < w.truth.n, "extra line: %s", line);
		p = &w.truth.v[lines++];
		base = p->slot == 1 ? (16 << 20) >> 12 : (1ull << 30) >> 12;
		snprintf(want, sizeof(want), "0:%llx", (unsigned long long)(base + p->offset));
		ck_assert_str_eq(line, want);
	}
	ck_assert_int_eq(lines, (int)w.truth.n);
	ck_assert_msg(strstr(r.err, "48 pages"), "summary: %s", r.err);
	assert_nothing_attached();
	tvm_pages_free(&w.truth);
	tvm_destroy(w.vm);
}
END_TEST

/* The VMM dies mid-run: what was seen is printed, then one error line, non-zero exit. */
START_TEST(vm_exits_during_run)
{
	struct tvm_opts o = { .nr_vcpus = 1, .ring_entries = 1024 };
	int out_fd, err_fd, sync[2];
	char pid_s[16], c;
	struct run r;
	pid_t vmm, tp;

	NEED(dt_test_need_kvm);
	ck_assert_int_eq(pipe(sync), 0);
	vmm = fork();
	ck_assert_int_ge(vmm, 0);
	if (!vmm) {
		struct tvm *vm = tvm_create(&o);
		uint64_t list[8];
		const uint64_t *lists[1] = { list };
		size_t n = 8;
		struct tvm_pages p = {};

		if (!vm || tvm_add_slot(vm, 1, 16 << 20, 16 << 20, true))
			_exit(1);
		tvm_pattern_seq(list, n, 16 << 20, 16 << 20, 100);
		write(sync[1], "x", 1);
		for (int i = 0;; i++) {
			tvm_run_epoch(vm, lists, &n, i);
			tvm_pages_clear(&p);
			tvm_harvest(vm, &p);
		}
	}
	ck_assert_int_eq(read(sync[0], &c, 1), 1);
	snprintf(pid_s, sizeof(pid_s), "%d", vmm);
	tp = start((char *const[]){ "gfns", "-p", pid_s, "-d", "30", NULL }, -1, &out_fd, &err_fd);
	usleep(1500 * 1000);
	kill(vmm, SIGKILL);
	waitpid(vmm, NULL, 0);
	finish(tp, out_fd, err_fd, &r);
	ck_assert_int_eq(r.rc, 1);
	ck_assert_msg(strstr(r.err, "exited during the run"), "stderr: %s", r.err);
	/* the summary and the error: two lines */
	ck_assert_int_eq(count_lines(r.err), 2);
	ck_assert_msg(strstr(r.out, "0:1064\n") && count_lines(r.out) == 8, "stdout: %s", r.out);
	assert_nothing_attached();
	close(sync[0]);
	close(sync[1]);
}
END_TEST

/* record --events: every page of every epoch carries the time of its first write in it. */
START_TEST(record_events)
{
	char pid[16], path[] = "/tmp/dt-trace-XXXXXX", why[128];
	struct dt_trace_reader *rd;
	struct dt_trace_epoch e;
	struct writer w = {};
	uint64_t pages = 0;
	size_t len;
	pthread_t th;
	struct run r;
	void *buf;
	int fd, n = 0;

	NEED(dt_test_need_kvm);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	w.vm = writer_vm();
	snprintf(pid, sizeof(pid), "%d", getpid());
	pthread_create(&th, NULL, write_loop, &w);
	RUN(&r, "record", "--events", "-p", pid, "-d", "1", "-i", "250", "-o", path);
	w.stop = 1;
	pthread_join(th, NULL);
	ck_assert_msg(r.rc == 0, "record: %s", r.err);
	buf = dt_test_read_file(path, &len);
	ck_assert_ptr_nonnull(buf);
	rd = dt_trace_reader__new(buf, len, why, sizeof(why));
	ck_assert_msg(rd, "%s", why);
	while (dt_trace_reader__next(rd, &e, why, sizeof(why)) > 0) {
		n++;
		ck_assert(e.events);
		for (size_t i = 0; i < e.nr_gfns; i++) {
			const struct dt_gfn *g = &e.gfns[i];

			if (g->recovered)
				continue;
			/*
			 * Stamped by the kernel inside the epoch: its edges are the cut's clock reads,
			 * a few microseconds from the epoch flip, hence the slack.
			 */
			ck_assert_msg(g->ts + 1000000 >= e.start_ns && g->ts <= e.end_ns + 1000000,
				      "ts %llu outside epoch [%llu, %llu]",
				      (unsigned long long)g->ts, (unsigned long long)e.start_ns,
				      (unsigned long long)e.end_ns);
			pages++;
		}
	}
	ck_assert_int_ge(n, 3);
	ck_assert_uint_ge(pages, 48);
	dt_trace_reader__free(rd);
	free(buf);
	RUN(&r, "--json", "report", path);
	ck_assert_msg(r.rc == 0, "report: %s", r.err);
	ck_assert_msg(strstr(r.out, "\"event_epochs\":"), "%s", r.out);
	ck_assert_msg(!strstr(r.out, "\"event_epochs\":0,"), "%s", r.out);
	/* JSON lines have no timestamps: asking for them there is an error, said once */
	RUN(&r, "stream", "--events", "-p", pid, "-d", "1");
	assert_one_error(&r, "--events needs --format bin");
	unlink(path);
	tvm_pages_free(&w.truth);
	tvm_destroy(w.vm);
}
END_TEST

/* record then report: the trace of our VM says what KVM said; a cut-short copy still reads. */
START_TEST(record_and_report)
{
	char pid[16], path[] = "/tmp/dt-trace-XXXXXX", cut[64], cmd[256];
	struct writer w = {};
	pthread_t th;
	struct run r;
	int fd;
	FILE *f;

	NEED(dt_test_need_kvm);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	w.vm = writer_vm();
	snprintf(pid, sizeof(pid), "%d", getpid());
	pthread_create(&th, NULL, write_loop, &w);
	RUN(&r, "record", "-p", pid, "-d", "1.5", "-i", "300", "-o", path);
	w.stop = 1;
	pthread_join(th, NULL);
	ck_assert_msg(r.rc == 0, "record: %s", r.err);
	ck_assert_ptr_nonnull(strstr(r.err, "bytes per page"));

	RUN(&r, "--json", "report", path);
	ck_assert_msg(r.rc == 0, "report: %s", r.err);
	ck_assert_msg(strstr(r.out, "\"distinct_pages\":48,"), "%s", r.out);
	ck_assert_ptr_nonnull(strstr(r.out, "\"truncated\":false"));
	ck_assert_ptr_nonnull(strstr(r.out, "{\"as_id\":0,\"slot\":1,"));
	ck_assert_ptr_nonnull(strstr(r.out, "{\"as_id\":0,\"slot\":2,"));
	RUN(&r, "report", path);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "48 distinct"));

	/* cut short: whole epochs and a warning; damaged: one error line */
	snprintf(cut, sizeof(cut), "%s.cut", path);
	snprintf(cmd, sizeof(cmd), "head -c $(( $(stat -c %%s %s) - 100 )) %s > %s", path, path, cut);
	ck_assert_int_eq(system(cmd), 0);
	RUN(&r, "report", cut);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_ptr_nonnull(strstr(r.err, "recording cut short"));
	f = fopen(cut, "r+");
	ck_assert_ptr_nonnull(f);
	{
		long mid;
		int c;

		fseek(f, 0, SEEK_END);
		mid = ftell(f) / 2;	/* inside a whole block, not the cut-off one */
		fseek(f, mid, SEEK_SET);
		c = fgetc(f);
		fseek(f, mid, SEEK_SET);	/* a seek between reading and writing */
		fputc(c ^ 0x55, f);
	}
	fclose(f);
	RUN(&r, "report", cut);
	assert_one_error(&r, "damaged block");
	RUN(&r, "report", "/etc/hostname");
	assert_one_error(&r, "not a dirtytrace trace");
	RUN(&r, "record", "-p", pid, "-d", "1");
	assert_one_error(&r, "record needs -o FILE");
	unlink(cut);
	unlink(path);
	assert_nothing_attached();
	tvm_pages_free(&w.truth);
	tvm_destroy(w.vm);
}
END_TEST

/* stream: json by time and by trigger, and bin that report reads as a trace */
START_TEST(stream_json_and_bin)
{
	char pid[16], path[] = "/tmp/dt-stream-XXXXXX", cmd[768];
	struct writer w = {};
	int lines = 0, trig = 0, fd;
	pthread_t th;
	struct run r;
	char *line, *save;

	NEED(dt_test_need_kvm);
	w.vm = writer_vm();
	snprintf(pid, sizeof(pid), "%d", getpid());
	pthread_create(&th, NULL, write_loop, &w);

	RUN(&r, "stream", "-p", pid, "--epoch-ms", "200", "-d", "1");
	ck_assert_msg(r.rc == 0, "%s", r.err);
	for (line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lines++;
		ck_assert_msg(!strncmp(line, "{\"seq\":", 7) && strstr(line, "\"gfns\":["),
			      "%s", line);
		/* the writer sweeps its 48 pages many times per 200 ms: all of them, each epoch
		 * but the short last one */
		if (strstr(line, "\"end_ns\"") && lines < 4)
			ck_assert_msg(strstr(line, "[0,4096],[0,4097]") &&
				      strstr(line, "[0,262144],[0,262151]"), "%s", line);
	}
	ck_assert_int_ge(lines, 5);

	/* the budget: 40 of the 48 pages end an epoch */
	RUN(&r, "stream", "-p", pid, "--trigger", "40", "-i", "1000", "-d", "0.5");
	ck_assert_msg(r.rc == 0, "%s", r.err);
	for (line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *g = strstr(line, "\"gfns\":[");
		size_t len = strlen(line);
		int n = 0;

		/* the capture holds 64 KiB: a line cut off at its end is not an epoch */
		if (!g || len < 2 || strcmp(line + len - 2, "]}"))
			continue;
		/* each page is one "[as_id,gfn]" inside the gfns array's own bracket */
		for (const char *p = g + 7; (p = strchr(p + 1, '[')); )
			n++;
		if (strstr(line, "\"trigger\":true")) {
			trig++;
			ck_assert_msg(n >= 40 && n <= 48, "a triggered epoch of %d pages", n);
		}
	}
	ck_assert_int_ge(trig, 3);

	/* bin is the trace format */
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(cmd, sizeof(cmd), "%s stream -p %s --format bin -d 0.6 > %s 2>/dev/null", tool(),
		 pid, path);
	ck_assert_int_eq(system(cmd), 0);
	RUN(&r, "--json", "report", path);
	ck_assert_msg(r.rc == 0 && strstr(r.out, "\"distinct_pages\":48,"), "%s %s", r.out, r.err);
	unlink(path);
	w.stop = 1;
	pthread_join(th, NULL);
	assert_nothing_attached();
	tvm_pages_free(&w.truth);
	tvm_destroy(w.vm);
}
END_TEST

struct reader {
	int fd;
	char *buf;
	size_t len, cap;
};

static void *read_stream(void *arg)
{
	struct reader *rd = arg;
	ssize_t n;

	for (;;) {
		if (rd->len == rd->cap) {
			rd->cap = rd->cap ? rd->cap * 2 : 1 << 20;
			rd->buf = realloc(rd->buf, rd->cap);
		}
		n = read(rd->fd, rd->buf + rd->len, rd->cap - rd->len);
		if (n <= 0)
			return NULL;
		rd->len += n;
	}
}

static int connect_to(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	for (int i = 0; i < 100; i++) {
		if (!connect(fd, (struct sockaddr *)&addr, sizeof(addr)))
			return fd;
		usleep(20000);
	}
	ck_abort_msg("could not connect to %s: %s", path, strerror(errno));
	return -1;
}

/* --socket: a reader gets a whole trace; a client that never reads is dropped, alone. */
START_TEST(stream_socket_clients)
{
	char pid[16], sock[64], why[128], line[256];
	struct reader rd = {};
	struct writer w = {};
	struct dt_trace_reader *tr;
	struct dt_trace_epoch e;
	struct stat sst;
	pthread_t th, rth;
	struct run r;
	int out_fd, err_fd, silent, epochs = 0, cout, cerr, client_epochs = 0;
	unsigned long long streamed = 0, first = 0;
	const char *p;
	pid_t tp, cp;
	struct run cr;

	NEED(dt_test_need_kvm);
	w.vm = writer_vm();
	snprintf(pid, sizeof(pid), "%d", getpid());
	snprintf(sock, sizeof(sock), "/tmp/dt-sock-%d", getpid());
	unlink(sock);
	pthread_create(&th, NULL, write_loop, &w);
	tp = start((char *const[]){ "stream", "-p", pid, "--socket", sock, "--format", "bin",
				    "-i", "5", "-d", "3", "--client-buffer", "65536", NULL },
		   -1, &out_fd, &err_fd);
	rd.fd = connect_to(sock);
	silent = connect_to(sock);
	/* the C client example a migration tool starts from, reading the same stream */
	cp = dt_test_start(bin_path("dtstream-client"), (char *const[]){ "-l", sock, NULL }, -1, &cout,
		       &cerr);
	ck_assert_int_eq(stat(sock, &sst), 0);
	ck_assert_int_eq(sst.st_mode & 0777, 0600);
	pthread_create(&rth, NULL, read_stream, &rd);
	finish(tp, out_fd, err_fd, &r);
	pthread_join(rth, NULL);
	finish(cp, cout, cerr, &cr);
	w.stop = 1;
	pthread_join(th, NULL);
	ck_assert_msg(r.rc == 0, "%s", r.err);
	ck_assert_msg(access(sock, F_OK), "the socket was left behind");
	/* exactly one client dropped: the silent one */
	p = strstr(r.err, "dropped stream client");
	ck_assert_msg(p && !strstr(p + 1, "dropped stream client"), "stderr: %s", r.err);
	ck_assert_ptr_nonnull(strstr(r.err, "fell"));
	p = strstr(r.err, "epochs streamed");
	ck_assert_ptr_nonnull(p);
	while (p > r.err && p[-1] != ';')
		p--;
	sscanf(p, " %llu", &streamed);
	/* the reader's bytes are a whole trace holding every epoch streamed */
	tr = dt_trace_reader__new(rd.buf, rd.len, why, sizeof(why));
	ck_assert_msg(tr, "%s", why);
	/* epochs cut before the client connected are not its; from there on, none is missing */
	ck_assert_msg(cr.rc == 0, "dtstream-client: %s", cr.err);
	ck_assert_msg(strstr(cr.err, "VM pid ") && strstr(cr.err, "dirty ring"), "%s", cr.err);
	while (dt_trace_reader__next(tr, &e, why, sizeof(why)) > 0) {
		char want[128];
		const char *at;

		if (!epochs++)
			first = e.seq;
		ck_assert_uint_eq(e.seq, first + epochs - 1);
		/* the example decoded the same epochs the same way (it may have joined later) */
		snprintf(want, sizeof(want), "epoch %llu %zu %llu %llu %llu\n",
			 (unsigned long long)e.seq, e.nr_gfns, (unsigned long long)e.start_ns,
			 (unsigned long long)e.end_ns, (unsigned long long)e.raw);
		at = strstr(cr.out, want);
		if (!at)
			continue;
		client_epochs++;
		if (!e.nr_gfns)
			continue;
		snprintf(want, sizeof(want), "  %x:%llx\n", e.gfns[0].as_id,
			 (unsigned long long)e.gfns[0].gfn);
		ck_assert_msg(!strncmp(strchr(at, '\n') + 1, want, strlen(want)),
			      "epoch %llu's first page: want %s", (unsigned long long)e.seq, want);
	}
	/* it joined at about the same time: the same epochs, as far as its captured output goes */
	ck_assert_msg(client_epochs > 50, "the example matched %d of %d epochs", client_epochs,
		      epochs);
	ck_assert(!dt_trace_reader__truncated(tr));
	ck_assert_msg(epochs > 100 && first + epochs == streamed,
		      "read %d epochs from seq %llu of %llu streamed", epochs,
		      (unsigned long long)first, streamed);
	dt_trace_reader__free(tr);

	/* a path in use is refused */
	snprintf(line, sizeof(line), "%s", sock);
	ck_assert_int_eq(close(open(line, O_CREAT | O_WRONLY, 0600)) , 0);
	RUN(&r, "stream", "-p", pid, "--socket", sock, "-d", "1");
	assert_one_error(&r, "is taken");
	unlink(sock);
	close(silent);
	close(rd.fd);
	free(rd.buf);
	assert_nothing_attached();
	tvm_pages_free(&w.truth);
	tvm_destroy(w.vm);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tools");
	TCase *errors = tcase_create("errors"), *kvm = tcase_create("kvm");

	tcase_add_test(errors, usage_errors);
	tcase_add_test(errors, unknown_pid);
	tcase_add_test(errors, pid_not_a_vm);
	tcase_add_test(errors, not_root);
	tcase_set_timeout(errors, 30);
	tcase_add_test(kvm, vms_and_gfns_of_our_vm);
	tcase_add_test(kvm, vm_exits_during_run);
	tcase_add_test(kvm, record_and_report);
	tcase_add_test(kvm, record_events);
	tcase_add_test(kvm, stream_json_and_bin);
	tcase_add_test(kvm, stream_socket_clients);
	tcase_set_timeout(kvm, 60);
	suite_add_tcase(s, errors);
	suite_add_tcase(s, kvm);
	return dt_test_main(s, "tools");
}

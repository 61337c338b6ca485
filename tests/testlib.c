// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include "testlib.h"
#include "vmm.h"

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

int dt_test_writer_vmm(int vcpus)
{
	int sync[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(sync), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		struct tvm_opts o = { .nr_vcpus = vcpus, .ring_entries = 4096 };
		struct tvm *vm = tvm_create(&o);
		static uint64_t list[TVM_MAX_VCPUS][3000];
		const uint64_t *lists[TVM_MAX_VCPUS];
		size_t n[TVM_MAX_VCPUS];
		struct tvm_pages p = {};
		uint64_t seed = 5;

		if (!vm || vcpus > TVM_MAX_VCPUS ||
		    tvm_add_slot(vm, 1, DT_WRITER_GPA, DT_WRITER_SIZE, true))
			_exit(1);
		for (int v = 0; v < vcpus; v++) {
			lists[v] = list[v];
			n[v] = 3000;
		}
		if (write(sync[1], "x", 1) != 1)
			_exit(1);
		for (uint32_t it = 0;; it++) {
			for (int v = 0; v < vcpus; v++)
				tvm_pattern_random(list[v], n[v], DT_WRITER_GPA, DT_WRITER_SIZE,
						   &seed);
			if (tvm_run_epoch(vm, lists, n, it))
				_exit(2);
			tvm_pages_clear(&p);
			tvm_harvest(vm, &p);	/* like a VMM: the ring keeps moving */
		}
	}
	close(sync[1]);
	ck_assert_msg(read(sync[0], &c, 1) == 1, "the writer VMM did not start");
	close(sync[0]);
	return pid;
}

void dt_test_kill(int pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static bool in_path(const char *name)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	while (path && *path) {
		size_t n = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, name);
		if (n && !access(buf, X_OK))
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

const char *dt_test_need_qemu(void)
{
	const char *why = dt_test_need_kvm();

	if (why)
		return why;
	return in_path(DT_QEMU_BIN) ? NULL : "no " DT_QEMU_BIN " in PATH";
}

int dt_test_find_built(const char *name, char *out, size_t sz)
{
	const char *tests = getenv("DT_TESTS_DIR");
	const char *bin = getenv("DT_BIN") ?: ".output/bin";
	char self[PATH_MAX], *slash;
	ssize_t n;

	if (tests) {
		snprintf(out, sz, "%s/%s", tests, name);
		return access(out, R_OK) ? -ENOENT : 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = 0;
		slash = strrchr(self, '/');
		if (slash) {
			*slash = 0;
			snprintf(out, sz, "%s/%s", self, name);
			if (!access(out, R_OK))
				return 0;
		}
	}
	snprintf(out, sz, "%s/../tests/%s", bin, name);
	return access(out, R_OK) ? -ENOENT : 0;
}

int dt_test_spawn(char *const argv[], const char *out, const char *err)
{
	pid_t parent = getpid(), pid = fork();
	int fd;

	if (pid)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	fd = open("/dev/null", O_RDONLY);
	dup2(fd, 0);
	fd = open(out ?: "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 1);
	if (!err || !out || strcmp(err, out))
		fd = open(err ?: "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	execvp(argv[0], argv);
	_exit(127);
}

uint64_t dt_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dt_test_sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

char *dt_test_read_file(const char *path, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *m;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	while ((n = read(fd, buf + len, cap - 1 - len)) > 0) {
		len += n;
		if (len == cap - 1) {
			m = realloc(buf, cap * 2);
			if (!m) {
				free(buf);
				close(fd);
				errno = ENOMEM;
				return NULL;
			}
			buf = m;
			cap *= 2;
		}
	}
	close(fd);
	buf[len] = 0;
	if (lenp)
		*lenp = len;
	return buf;
}

pid_t dt_test_start(const char *bin, char *const *args, int uid, int *out_fd, int *err_fd)
{
	char out_t[] = "/tmp/dt-out-XXXXXX", err_t[] = "/tmp/dt-err-XXXXXX";
	char *argv[32] = { (char *)bin };
	pid_t pid;

	for (int i = 0; args[i] && i < 30; i++)
		argv[i + 1] = args[i];
	*out_fd = mkstemp(out_t);
	*err_fd = mkstemp(err_t);
	ck_assert(*out_fd >= 0 && *err_fd >= 0);
	unlink(out_t);
	unlink(err_t);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		dup2(*out_fd, 1);
		dup2(*err_fd, 2);
		if (uid >= 0 && setuid(uid))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* What a finished program wrote to fd, from the start, into buf; closes fd. */
static void read_back(int fd, char *buf, size_t cap)
{
	ssize_t n, len = 0;

	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, buf + len, cap - 1 - len)) > 0)
		len += n;
	buf[len] = 0;
	close(fd);
}

int dt_test_finish(pid_t pid, int out_fd, int err_fd, char *out, size_t outsz, char *err,
		   size_t errsz)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	read_back(out_fd, out, outsz);
	read_back(err_fd, err, errsz);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

double dt_test_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *known_write_loop(void *arg)
{
	struct dt_known_writer *w = arg;
	uint64_t a[200], b[100];
	const uint64_t *lists[2] = { a, b };
	size_t counts[2] = { 200, 100 };
	struct tvm_pages p = {};
	uint32_t it = 0;

	tvm_pattern_seq(a, 200, 16 << 20, 16 << 20, 0);
	tvm_pattern_seq(b, 100, 1ull << 30, 16 << 20, 0);
	w->t0 = dt_test_now_s();
	while (!w->stop) {
		if (tvm_run_epoch(w->vm, lists, counts, it++))
			break;
		tvm_pages_clear(&p);
		tvm_harvest(w->vm, &p);
		__atomic_add_fetch(&w->writes, DT_KNOWN_PAGES, __ATOMIC_RELAXED);
	}
	w->t1 = dt_test_now_s();
	tvm_pages_free(&p);
	return NULL;
}

void dt_test_known_writer_start(struct dt_known_writer *w)
{
	struct tvm_opts o = { .nr_vcpus = 2, .ring_entries = 4096 };

	memset(w, 0, sizeof(*w));
	w->vm = tvm_create(&o);
	ck_assert_msg(w->vm, "tvm_create: %s", strerror(errno));
	ck_assert_int_eq(tvm_add_slot(w->vm, 1, 16 << 20, 16 << 20, true), 0);
	ck_assert_int_eq(tvm_add_slot(w->vm, 2, 1ull << 30, 16 << 20, true), 0);
	ck_assert_int_eq(pthread_create(&w->thr, NULL, known_write_loop, w), 0);
}

void dt_test_known_writer_stop(struct dt_known_writer *w)
{
	w->stop = 1;
	pthread_join(w->thr, NULL);
	tvm_destroy(w->vm);
	w->vm = NULL;
}

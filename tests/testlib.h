/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Shared by the Check suites. Check has no "skip": a test that cannot run here calls DT_SKIP,
 * which prints the reason and records it, and the summary counts it as skipped, not passed.
 */
#ifndef DT_TESTLIB_H
#define DT_TESTLIB_H

#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

void dt_test_skip(const char *test, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define DT_SKIP(...) do { dt_test_skip(__func__, __VA_ARGS__); return; } while (0)

/* Why this machine cannot run a test needing root / KVM / BPF, or NULL when it can. */
const char *dt_test_need_root(void);
const char *dt_test_need_kvm(void);

/*
 * A child VMM (tests/vmm.h) whose vCPUs write their epoch number into random pages of a 64 MiB
 * slot at GPA 16 MiB, harvesting its dirty ring between epochs like a VMM does, until killed.
 * Returns once the VM exists; fails the test if it cannot start.
 */
#define DT_WRITER_GPA	(16ULL << 20)
#define DT_WRITER_SIZE	(64ULL << 20)
int dt_test_writer_vmm(int vcpus);
/* SIGKILL and reap. */
void dt_test_kill(int pid);

/* qemu-system-x86_64, the VMM the QEMU suites start. */
#define DT_QEMU_BIN "qemu-system-x86_64"
/* Why QEMU cannot be run here (no KVM, no DT_QEMU_BIN in PATH), or NULL. */
const char *dt_test_need_qemu(void);
/*
 * A file built next to the test binaries (a guest image): $DT_TESTS_DIR/name, else beside this
 * binary, else $DT_BIN/../tests/name. 0, or -ENOENT with out holding the last path tried.
 */
int dt_test_find_built(const char *name, char *out, size_t sz);
/*
 * fork + exec (PATH searched for a bare name) with stdin from /dev/null and stdout / stderr to
 * the files out / err (NULL: /dev/null; the same path: both into it). The child gets SIGKILL
 * when the test process dies, even if Check kills it.
 */
int dt_test_spawn(char *const argv[], const char *out, const char *err);

/*
 * A VM of ours (tests/vmm.h) whose 2 vCPUs write, every epoch, the first 200 pages of slot 1
 * (16 MiB at GPA 16 MiB) and the first 100 of slot 2 (16 MiB at GPA 1 GiB), harvesting like a
 * VMM, on a thread of this process: every interval sees exactly DT_KNOWN_PAGES distinct pages.
 */
#define DT_KNOWN_PAGES 300
struct dt_known_writer {
	struct tvm *vm;
	pthread_t thr;
	volatile int stop;
	uint64_t writes;	/* guest writes so far (atomic) */
	double t0, t1;		/* CLOCK_MONOTONIC seconds: when the writing started and ended */
};
void dt_test_known_writer_start(struct dt_known_writer *w);
/* Stops and joins the thread, destroys the VM; writes, t0 and t1 stay readable. */
void dt_test_known_writer_stop(struct dt_known_writer *w);

/* CLOCK_MONOTONIC in milliseconds and in seconds; a sleep that resumes after signals. */
uint64_t dt_test_now_ms(void);
double dt_test_now_s(void);
void dt_test_sleep_ms(unsigned int ms);
/* A whole file, malloc'd and NUL-terminated (len, if given, excludes the NUL); NULL and errno. */
char *dt_test_read_file(const char *path, size_t *len);

/*
 * Runs program bin with args (NULL-terminated, without argv[0], at most 30), stdout and stderr
 * into unlinked temporary files; uid >= 0 drops root first. dt_test_finish waits for it and
 * copies what it printed into out / err (NUL-terminated, cut at the size); returns the exit
 * status, or 128 + the signal.
 */
pid_t dt_test_start(const char *bin, char *const *args, int uid, int *out_fd, int *err_fd);
int dt_test_finish(pid_t pid, int out_fd, int err_fd, char *out, size_t outsz, char *err,
		   size_t errsz);

/* Runs the suite, prints "RESULT <suite> passed N failed N skipped N"; exit status for main. */
int dt_test_main(Suite *s, const char *name);

#endif

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Benchmarks that need a running guest (the test VMM, tests/vmm.c), each measured side by side
 * in one run because this host is shared and noisy:
 *
 *   bench/guest overhead [--quick]   the guest's write rate with the capture attached vs not,
 *                                    alternating rounds; median of each, and the slowdown
 *   bench/guest trigger [--quick]    latency from the Nth dirty page (the BPF program's
 *                                    timestamp) to the woken consumer, p50 / p99 / max
 *
 * Output: "key value" lines the bench runner (tests/bench/run) puts into its table.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "../../tools/common.h"	/* tool_now_ns */
#include "vmm.h"

#define SLOT_GPA	(16ULL << 20)
#define SLOT_SIZE	(64ULL << 20)

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n ? v[(size_t)(p * (n - 1) + 0.5)] : 0;
}

static int die(const char *what, int err)
{
	fprintf(stderr, "bench/guest: %s: %s\n", what, strerror(err));
	return 1;
}

/* ---- overhead ---- */

struct consumer {
	struct dt_tracer *t;
	volatile int stop;
};

/* Reads records as dirtytop or a checkpointer would, so the ring buffer never fills. */
static void *consume(void *arg)
{
	struct consumer *c = arg;

	while (!c->stop)
		dt_tracer__poll(c->t, 50);
	return NULL;
}

/* One round: every vCPU writes n random pages; returns guest writes per second. */
static double round_rate(struct tvm *vm, uint64_t **lists, size_t n, uint32_t iter, uint64_t *seed)
{
	int vcpus = tvm_nr_vcpus(vm);
	const uint64_t *cl[TVM_MAX_VCPUS];
	size_t counts[TVM_MAX_VCPUS];
	struct tvm_pages p = {};
	uint64_t t0, t1;
	int err;

	for (int v = 0; v < vcpus; v++) {
		tvm_pattern_random(lists[v], n, SLOT_GPA, SLOT_SIZE, seed);
		cl[v] = lists[v];
		counts[v] = n;
	}
	t0 = tool_now_ns();
	err = tvm_run_epoch(vm, cl, counts, iter);
	t1 = tool_now_ns();
	tvm_harvest(vm, &p);	/* between rounds, not timed: what a VMM does */
	tvm_pages_free(&p);
	return err ? -1 : (double)n * vcpus / ((t1 - t0) / 1e9);
}

static int bench_overhead(bool quick)
{
	struct tvm_opts o = { .nr_vcpus = 2, .ring_entries = 4096 };
	int rounds = quick ? 2 : 8;
	size_t n = quick ? 2000 : 15000;
	double off[8], on[8], lazy[8], moff, mon, mlazy;
	uint64_t *lists[2], seed = 1, events = 0;
	pid_t self = getpid();
	struct tvm *vm;

	vm = tvm_create(&o);
	if (!vm)
		return die("tvm_create", errno);
	if (tvm_add_slot(vm, 1, SLOT_GPA, SLOT_SIZE, true))
		return die("tvm_add_slot", errno);
	for (int v = 0; v < 2; v++) {
		lists[v] = calloc(n, sizeof(uint64_t));
		if (!lists[v])
			return die("calloc", ENOMEM);
	}
	round_rate(vm, lists, n / 4, 0, &seed);	/* warm up: threads, guest pages */
	/*
	 * Rounds in threes, side by side: off; attached with a consumer thread reading records as
	 * they come (what dirtytop does; on this 2-core host it competes with the 2 vCPUs for CPU);
	 * attached with records left in the ring buffer until the round ends (the capture's own
	 * cost on the vCPU threads, nothing else).
	 */
	for (int r = 0; r < 3 * rounds; r++) {
		struct dt_tracer_opts to = { .sz = sizeof(to), .pids = &self, .nr_pids = 1 };
		struct consumer c = {};
		pthread_t th;
		double rate;

		if (r % 3 == 0) {
			rate = round_rate(vm, lists, n, r + 1, &seed);
			if (rate < 0)
				return die("guest run", EIO);
			off[r / 3] = rate;
			continue;
		}
		c.t = dt_tracer__open(&to);
		if (!c.t)
			return die("dt_tracer__open", errno);
		if (r % 3 == 1)
			pthread_create(&th, NULL, consume, &c);
		rate = round_rate(vm, lists, n, r + 1, &seed);
		c.stop = 1;
		if (r % 3 == 1)
			pthread_join(th, NULL);
		else
			dt_tracer__poll(c.t, 0);
		{
			struct dt_stats st;

			if (!dt_tracer__stats(c.t, &st))
				events += st.raw;
		}
		dt_tracer__close(c.t);
		if (rate < 0)
			return die("guest run", EIO);
		if (r % 3 == 1)
			on[r / 3] = rate;
		else
			lazy[r / 3] = rate;
	}
	moff = pct(off, rounds, 0.5);
	mon = pct(on, rounds, 0.5);
	mlazy = pct(lazy, rounds, 0.5);
	printf("overhead_rounds %d\n", rounds);
	printf("overhead_writes_per_round %zu\n", n * 2);
	printf("overhead_rate_off %.0f\n", moff);
	printf("overhead_rate_on %.0f\n", mon);
	printf("overhead_ratio %.4f\n", mon / moff);
	printf("overhead_slowdown_pct %.1f\n", (1 - mon / moff) * 100);
	printf("overhead_rate_capture_only %.0f\n", mlazy);
	printf("overhead_capture_only_slowdown_pct %.1f\n", (1 - mlazy / moff) * 100);
	printf("overhead_events_seen %llu\n", (unsigned long long)events);
	for (int v = 0; v < 2; v++)
		free(lists[v]);
	tvm_destroy(vm);
	/* the capture saw every write of the traced rounds, or the comparison means nothing */
	return events >= (uint64_t)rounds * n * 2 * 2 ? 0 : die("capture missed writes", EIO);
}

/* ---- trigger latency ---- */

/* A VMM in a child process whose vCPUs write random pages until killed. */
static pid_t writer(int vcpus)
{
	int sync[2];
	pid_t pid;
	char c;

	if (pipe(sync))
		return -1;
	pid = fork();
	if (!pid) {
		struct tvm_opts o = { .nr_vcpus = vcpus, .ring_entries = 4096 };
		struct tvm *vm = tvm_create(&o);
		uint64_t *lists[2], seed = 3;

		close(sync[0]);
		if (!vm || tvm_add_slot(vm, 1, SLOT_GPA, SLOT_SIZE, true))
			_exit(1);
		lists[0] = calloc(2000, 8);
		lists[1] = calloc(2000, 8);
		if (!lists[0] || !lists[1] || write(sync[1], "x", 1) != 1)
			_exit(1);
		for (uint32_t it = 1;; it++)
			if (round_rate(vm, lists, 2000, it, &seed) < 0)
				_exit(2);
	}
	close(sync[1]);
	if (pid < 0 || read(sync[0], &c, 1) != 1) {
		close(sync[0]);
		return -1;
	}
	close(sync[0]);
	return pid;
}

/*
 * With 1 vCPU a core is free for the consumer; with 2 both cores are busy with guest vCPUs and
 * the wakeup waits for the scheduler: what a fully loaded host sees.
 */
static int bench_trigger(int vcpus, bool quick)
{
	const uint64_t pages = 500;
	int want = quick ? 10 : 200, got = 0, ret = 0;
	double lat[200];
	struct dt_tracer_opts to = { .sz = sizeof(to), .nr_pids = 1, .trigger_pages = pages };
	struct dt_tracer *t;
	struct dt_epoch *e;
	pid_t vmm = writer(vcpus);

	if (vmm < 0)
		return die("writer VMM", errno ? errno : EIO);
	to.pids = &vmm;
	t = dt_tracer__open(&to);
	if (!t) {
		ret = die("dt_tracer__open", errno);
		goto out;
	}
	dt_tracer__cut(t, &e);	/* a clean first epoch */
	dt_epoch__free(e);
	while (got < want) {
		struct dt_trigger tr;
		int err = dt_tracer__wait_trigger(t, 10000, &tr);

		if (err) {
			ret = die("wait_trigger", -err);
			break;
		}
		/* fired_ns is 0 when the waiter found the count itself (a dropped record) */
		if (tr.fired_ns && tr.woke_ns >= tr.fired_ns)
			lat[got++] = (tr.woke_ns - tr.fired_ns) / 1e3;
		if (dt_tracer__cut(t, &e)) {
			ret = die("cut", EIO);
			break;
		}
		dt_epoch__free(e);
	}
	if (!ret) {
		printf("trigger%d_pages %llu\n", vcpus, (unsigned long long)pages);
		printf("trigger%d_samples %d\n", vcpus, got);
		printf("trigger%d_latency_p50_us %.1f\n", vcpus, pct(lat, got, 0.5));
		printf("trigger%d_latency_p99_us %.1f\n", vcpus, pct(lat, got, 0.99));
		printf("trigger%d_latency_max_us %.1f\n", vcpus, lat[got - 1]);
	}
	dt_tracer__close(t);
out:
	kill(vmm, SIGKILL);
	waitpid(vmm, NULL, 0);
	return ret;
}

int main(int argc, char **argv)
{
	bool quick = argc > 2 && !strcmp(argv[2], "--quick");

	if (argc >= 2 && !strcmp(argv[1], "overhead"))
		return bench_overhead(quick);
	if (argc >= 2 && !strcmp(argv[1], "trigger"))
		return bench_trigger(1, quick) || bench_trigger(2, quick);
	fprintf(stderr, "usage: bench/guest overhead|trigger [--quick]\n");
	return 2;
}

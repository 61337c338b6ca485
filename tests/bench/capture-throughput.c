// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * capture-throughput: how many dirtying events per second the capture program and the harvester
 * take, against the bare BPF ring buffer on the same machine in the same run (issue #5, item 1).
 *
 * Producers: the synthetic driver in bpf/capture.bpf.c (dt_synth_drive) runs the push
 * tracepoint's own code in a bpf_loop, through BPF_PROG_TEST_RUN, from threads pinned to CPU 0
 * (and 1). A consumer thread harvests through the library's record path (dt_tracer__poll), and
 * the epoch is cut at the end of each run. Baseline: bpf/rbbench.bpf.c, the same loop reserving
 * and submitting records of the same size into a ring buffer of the same size, with an empty
 * consumer.
 *
 * events/s = events the producers ran / time from their start until the consumer had read the
 * last record. The cut is timed apart (cut ms). Every run is checked: the kernel's counters, and
 * the cut epoch's list against the exact pages sent (GFN, vCPU, recovered pages == drops).
 * The VM is a real one of ours when /dev/kvm works (so GFNs resolve), otherwise a made-up one.
 *
 * Exit: 0 all checks passed, 1 a check failed, 2 usage, 77 skipped (reason on stdout).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/kvm.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "internal.h"
#include "capture.h"
#include "rbbench.skel.h"
#include "vmm.h"
#include "../../tools/common.h"	/* tool_now_ns */

#define MAX_ROUNDS	 32
#define MAX_PRODUCERS	 2
#define CHUNK		 8192		/* events per test run (preemption is off in it) */
#define REPEAT_PAGES	 512		/* the repeated cases' hot set, per producer */
#define SLOT_ID		 1
#define SLOT_GPA	 (1ULL << 40)
#define SLOT_PAGES	 (16ULL << 20)	/* 64 GiB, MAP_NORESERVE: nothing is touched */
#define DEDUP_WORDS	 (1u << 18)	/* per dedup map: 16 M pages dense, 256 K scattered */
#define SMALL_RINGBUF	 (64u << 10)
#define FAKE_KVM	 0xffff888012340000ULL

enum pattern { PAT_BASELINE, PAT_DENSE, PAT_SCATTER, PAT_REPEAT };

struct bcase {
	const char *name;
	enum pattern pat;
	int producers;
	bool small_rb;		/* the tracer with a SMALL_RINGBUF ring buffer: drops forced */
	int runs;
	double rate[MAX_ROUNDS];	/* events harvested per second (baseline: records read) */
	double cut_rate[MAX_ROUNDS];	/* events per second with the cut's time added */
	double cpu_ns[MAX_ROUNDS];	/* producers' CPU time per event: robust to a busy host */
	double cons_ns[MAX_ROUNDS];	/* the consumer's CPU time per record it read */
	double drop_pct[MAX_ROUNDS], cut_ms[MAX_ROUNDS];
	uint64_t pages;		/* unique pages of the last run's epoch (verified) */
};

struct producer {
	pthread_t th;
	int cpu, prog_fd;
	bool baseline;
	struct dt_synth_args a;	/* kvm, base, span, stride, slot, vcpu; start/count per run */
	uint64_t cap;		/* at most this many events */
	uint64_t deadline_ns;	/* 0: run exactly cap */
	pthread_barrier_t *go;
	uint64_t done, drops, end_ns, cpu_ns;
	int err;
};

struct consumer {
	pthread_t th;
	struct dt_tracer *t;
	struct ring_buffer *rb;
	atomic_bool stop;
	uint64_t consumed, last_ns, cpu_ns;
	int err;
};

static struct {
	bool quick, verbose;
	int rounds;
	double secs;
	size_t ringbuf;
} cfg = { .rounds = 7, .secs = 0.4, .ringbuf = 4u << 20 };

static struct {
	uint64_t kvm;
	struct tvm *vm;
	void *mem;
	bool real;
	uint64_t base_gfn;
} vmx;

static int failures;

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "FAIL: " __VA_ARGS__); \
	fputc('\n', stderr); failures++; } } while (0)

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static int pin(pthread_t th, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return pthread_setaffinity_np(th, sizeof(set), &set);
}

static void *produce(void *arg)
{
	struct producer *p = arg;
	uint64_t cpu0;

	p->err = pin(pthread_self(), p->cpu);
	pthread_barrier_wait(p->go);
	if (p->err)
		return NULL;
	cpu0 = thread_cpu_ns();
	while (p->done < p->cap && (!p->deadline_ns || !p->done || tool_now_ns() < p->deadline_ns)) {
		struct dt_synth_args a = p->a;
		LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &a, .ctx_size_in = sizeof(a));

		a.start = p->done;
		a.count = p->cap - p->done < CHUNK ? p->cap - p->done : CHUNK;
		if (bpf_prog_test_run_opts(p->prog_fd, &opts)) {
			p->err = -errno;
			break;
		}
		if (p->baseline) {
			p->drops += opts.retval;
		} else if (opts.retval != a.count) {
			p->err = -EIO;
			break;
		}
		p->done += a.count;
	}
	p->end_ns = tool_now_ns();
	p->cpu_ns = thread_cpu_ns() - cpu0;
	return NULL;
}

static int count_record(void *ctx, void *data, size_t size)
{
	return 0;	/* the baseline's consumer: empty */
}

static void *consume(void *arg)
{
	struct consumer *c = arg;
	uint64_t cpu0;

	cpu0 = thread_cpu_ns();
	for (;;) {
		bool stopping = atomic_load(&c->stop);
		int n = c->t ? dt_tracer__poll(c->t, 5) : ring_buffer__poll(c->rb, 5);

		if (n < 0 && n != -EINTR) {
			c->err = n;
			break;
		}
		if (n > 0) {
			c->consumed += n;
			c->last_ns = tool_now_ns();
		}
		if (stopping && n <= 0) {
			/* the producers are done: whatever is left is read without waiting */
			n = c->t ? dt_tracer__poll(c->t, 0) : ring_buffer__consume(c->rb);
			if (n > 0) {
				c->consumed += n;
				c->last_ns = tool_now_ns();
			}
			break;
		}
	}
	c->cpu_ns = thread_cpu_ns() - cpu0;
	return NULL;
}

/* Where producer p's pages start, and how they repeat, for a pattern. */
static void pattern_args(enum pattern pat, int p, struct dt_synth_args *a, uint64_t *cap)
{
	uint64_t range = SLOT_PAGES / MAX_PRODUCERS;

	*a = (struct dt_synth_args){ .kvm = vmx.kvm, .base = p * range, .span = range,
				     .stride = 1, .slot = SLOT_ID, .vcpu = p };
	switch (pat) {
	case PAT_BASELINE:
	case PAT_DENSE:
		/* half the range: both producers' words stay well inside the dedup map */
		*cap = cfg.quick ? 20000 : range / 2;
		break;
	case PAT_SCATTER:
		a->stride = 1ULL << DT_WORD_SHIFT;
		a->span = range >> DT_WORD_SHIFT;
		/* one dedup word per page: both producers together must fit the map */
		if (a->span > DEDUP_WORDS / MAX_PRODUCERS - 1024)
			a->span = DEDUP_WORDS / MAX_PRODUCERS - 1024;
		*cap = cfg.quick ? 5000 : a->span;
		break;
	case PAT_REPEAT:
		a->span = REPEAT_PAGES;
		*cap = cfg.quick ? 50000 : UINT64_MAX;
		break;
	}
}

/* Runs one case once: producers and consumer, then (capture) the cut and the checks. */
static int run_once(struct bcase *bc, int round, struct dt_tracer *t, struct rbbench *rbs)
{
	struct producer prod[MAX_PRODUCERS] = {};
	/*
	 * The consumer is left to the scheduler: pinned to a CPU of its own, it starved for up to
	 * seconds here whenever another tenant's emulated vCPU held that CPU in the kernel.
	 */
	struct consumer cons = { .t = bc->pat == PAT_BASELINE ? NULL : t };
	struct dt_stats s0 = {}, s1 = {};
	uint64_t start, run_start, end = 0, prod_end = 0;
	uint64_t events = 0, drops = 0, expect = 0, cpu = 0;
	pthread_barrier_t go;
	struct dt_epoch *e = NULL;
	int err = 0;

	if (cons.t) {
		err = dt_tracer__stats(t, &s0);
		if (err)
			return err;
	} else {
		cons.rb = ring_buffer__new(bpf_map__fd(rbs->maps.rb), count_record, NULL, NULL);
		if (!cons.rb)
			return -errno;
	}
	pthread_barrier_init(&go, NULL, bc->producers + 1);
	if (pthread_create(&cons.th, NULL, consume, &cons)) {
		err = -EAGAIN;
		goto out;
	}
	for (int p = 0; p < bc->producers; p++) {
		struct producer *pr = &prod[p];

		pr->cpu = p;
		pr->go = &go;
		pr->baseline = bc->pat == PAT_BASELINE;
		pr->prog_fd = pr->baseline ? bpf_program__fd(rbs->progs.dt_rb_drive) :
			dt_tracer_synth_fd(t);
		pattern_args(bc->pat, p, &pr->a, &pr->cap);
		if (pthread_create(&pr->th, NULL, produce, pr)) {
			fprintf(stderr, "capture-throughput: cannot start a producer thread\n");
			exit(1);
		}
	}
	start = tool_now_ns();
	for (int p = 0; p < bc->producers; p++)
		prod[p].deadline_ns = cfg.quick ? 0 : start + (uint64_t)(cfg.secs * 1e9);
	pthread_barrier_wait(&go);
	for (int p = 0; p < bc->producers; p++) {
		pthread_join(prod[p].th, NULL);
		err = err ?: prod[p].err;
		events += prod[p].done;
		drops += prod[p].drops;
		cpu += prod[p].cpu_ns;
		if (prod[p].end_ns > prod_end)
			prod_end = prod[p].end_ns;
	}
	atomic_store(&cons.stop, true);
	pthread_join(cons.th, NULL);
	err = err ?: cons.err;
	if (err)
		goto out;
	end = cons.last_ns > prod_end ? cons.last_ns : prod_end;
	bc->cpu_ns[round] = (double)cpu / events;
	/* with few records the consumer's time is its idle polling, not a cost per record */
	bc->cons_ns[round] = cons.consumed >= 10000 ? (double)cons.cpu_ns / cons.consumed : 0;
	/* the baseline's records refused by a full ring never reached the consumer: not counted */
	bc->rate[round] = (events - drops) * 1e9 / (end - start);

	if (bc->pat == PAT_BASELINE) {
		bc->drop_pct[round] = 100.0 * drops / events;	/* every event is a record */
		bc->cut_ms[round] = 0;
		bc->cut_rate[round] = bc->rate[round];
		CHECK(cons.consumed == events - drops,
		      "%s: %llu records consumed, %llu sent - %llu dropped", bc->name,
		      (unsigned long long)cons.consumed, (unsigned long long)events,
		      (unsigned long long)drops);
		bc->pages = 0;
		goto out;
	}

	run_start = start;
	start = tool_now_ns();
	err = dt_tracer__cut(t, &e);
	if (err)
		goto out;
	bc->cut_ms[round] = (tool_now_ns() - start) / 1e6;
	bc->cut_rate[round] = events / ((end - run_start) / 1e9 + bc->cut_ms[round] / 1e3);
	err = dt_tracer__stats(t, &s1);
	if (err)
		goto out;

	/* the exact pages sent: producer p's k-th distinct page is base_p + k * stride */
	const struct dt_epoch_vm *vm = NULL;
	uint64_t recovered_seen = 0;
	size_t i = 0;

	for (int p = 0; p < bc->producers; p++)
		expect += prod[p].done < prod[p].a.span ? prod[p].done : prod[p].a.span;
	for (size_t v = 0; v < e->nr_vms; v++)
		if (e->vms[v].kvm == vmx.kvm)
			vm = &e->vms[v];
	CHECK(e->nr_vms == 1 && vm, "%s: the epoch holds %zu VMs, ours %s", bc->name, e->nr_vms,
	      vm ? "among them" : "missing");
	CHECK(s1.raw - s0.raw == events, "%s: kernel counted %llu events, %llu sent", bc->name,
	      (unsigned long long)(s1.raw - s0.raw), (unsigned long long)events);
	CHECK(s1.unique - s0.unique == expect, "%s: kernel counted %llu unique pages, %llu sent",
	      bc->name, (unsigned long long)(s1.unique - s0.unique), (unsigned long long)expect);
	CHECK(s1.lost == s0.lost && s1.map_full == s0.map_full,
	      "%s: %llu pages lost, %llu not deduplicated", bc->name,
	      (unsigned long long)(s1.lost - s0.lost),
	      (unsigned long long)(s1.map_full - s0.map_full));
	CHECK(s1.barrier_timeouts == s0.barrier_timeouts, "%s: the cut's barrier timed out",
	      bc->name);
	drops = s1.rb_drops - s0.rb_drops;
	bc->drop_pct[round] = 100.0 * drops / expect;
	if (!vm)
		goto out;
	bc->pages = vm->nr_gfns;
	CHECK(vm->nr_gfns == expect, "%s: the epoch lists %zu pages, %llu were sent", bc->name,
	      vm->nr_gfns, (unsigned long long)expect);
	CHECK(vm->recovered == drops, "%s: %llu pages recovered, %llu records dropped", bc->name,
	      (unsigned long long)vm->recovered, (unsigned long long)drops);
	CHECK(s1.records - s0.records == expect - drops, "%s: %llu records read, %llu expected",
	      bc->name, (unsigned long long)(s1.records - s0.records),
	      (unsigned long long)(expect - drops));
	for (int p = 0; p < bc->producers && vm->nr_gfns == expect; p++) {
		uint64_t n = prod[p].done < prod[p].a.span ? prod[p].done : prod[p].a.span;

		for (uint64_t k = 0; k < n; k++, i++) {
			const struct dt_gfn *g = &vm->gfns[i];
			uint64_t off = prod[p].a.base + k * prod[p].a.stride;
			uint64_t gfn = vmx.real ? vmx.base_gfn + off : DT_GFN_NONE;

			recovered_seen += g->recovered;
			if (g->offset != off || g->gfn != gfn || g->slot != SLOT_ID || g->as_id ||
			    (!g->recovered && g->vcpu != p) || (g->recovered && g->vcpu != -1)) {
				CHECK(0, "%s: page %zu is slot %u offset %llu gfn %llx vcpu %d, "
				      "expected slot %u offset %llu gfn %llx vcpu %d", bc->name, i,
				      g->slot, (unsigned long long)g->offset,
				      (unsigned long long)g->gfn, g->vcpu, SLOT_ID,
				      (unsigned long long)off, (unsigned long long)gfn, p);
				goto out;
			}
		}
	}
	CHECK(recovered_seen == vm->recovered, "%s: %llu pages flagged recovered, epoch says %llu",
	      bc->name, (unsigned long long)recovered_seen, (unsigned long long)vm->recovered);
out:
	dt_epoch__free(e);
	ring_buffer__free(cons.rb);
	pthread_barrier_destroy(&go);
	bc->runs += !err;
	return err;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[MAX_ROUNDS];

	if (!n)
		return 0;
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* A VM of our own with a big logged slot, so the synthetic pages resolve to real GFNs. */
static void make_vm(void)
{
	struct tvm_opts o = { .nr_vcpus = 1, .ring_entries = 4096 };
	struct kvm_userspace_memory_region r = {
		.slot = SLOT_ID, .flags = KVM_MEM_LOG_DIRTY_PAGES, .guest_phys_addr = SLOT_GPA,
		.memory_size = SLOT_PAGES * 4096,
	};

	vmx.kvm = FAKE_KVM;
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("note: no /dev/kvm: a made-up VM, its pages stay unresolved (no GFN) and "
		       "each cut also re-runs VM discovery\n");
		return;
	}
	vmx.vm = tvm_create(&o);
	if (!vmx.vm) {
		printf("note: no test VM (%s): a made-up VM, pages unresolved\n", strerror(errno));
		return;
	}
	vmx.mem = mmap(NULL, r.memory_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vmx.mem == MAP_FAILED) {
		vmx.mem = NULL;
		return;
	}
	r.userspace_addr = (uintptr_t)vmx.mem;
	if (ioctl(tvm_vm_fd(vmx.vm), KVM_SET_USER_MEMORY_REGION, &r)) {
		printf("note: cannot add a %llu GiB slot (%s): a made-up VM, pages unresolved\n",
		       (unsigned long long)(r.memory_size >> 30), strerror(errno));
		return;
	}
	vmx.base_gfn = SLOT_GPA / 4096;
	vmx.real = true;
}

static void drop_vm(void)
{
	tvm_destroy(vmx.vm);
	if (vmx.mem)
		munmap(vmx.mem, SLOT_PAGES * 4096);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: capture-throughput [--quick] [--rounds N] [--seconds S] [--ringbuf BYTES]"
		" [-v]\n"
		"  Capture + harvest events/s against the bare BPF ring buffer, side by side.\n"
		"  --quick      tiny sizes, one round: proves it runs and is correct (CI)\n"
		"  --rounds N   rounds, alternating the cases (default 7, at most %d); medians\n"
		"  --seconds S  producing time per case and round (default 0.4)\n"
		"  --ringbuf B  ring buffer bytes, both sides (default 4 MiB, the library's)\n",
		MAX_ROUNDS);
}

static int print_libbpf(enum dt_print_level level, const char *fmt, va_list ap)
{
	return vfprintf(stderr, fmt, ap);
}

static const char *why_not(void)
{
	if (geteuid())
		return "needs root (BPF)";
	if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_RAW_TRACEPOINT, BPF_FUNC_loop, NULL) != 1)
		return "this kernel has no bpf_loop (5.17+)";
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quick", no_argument, NULL, 'q' }, { "rounds", required_argument, NULL, 'r' },
		{ "seconds", required_argument, NULL, 's' },
		{ "ringbuf", required_argument, NULL, 'b' }, { "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' }, {},
	};
#define CASE(n, pt, np, small) { .name = n, .pat = pt, .producers = np, .small_rb = small }
	struct bcase cases[] = {
		CASE("baseline: bare ring buffer", PAT_BASELINE, 1, false),
		CASE("unique pages", PAT_DENSE, 1, false),
		CASE("unique, 1 page per 64-page word", PAT_SCATTER, 1, false),
		CASE("512 pages repeated (dedup hits)", PAT_REPEAT, 1, false),
		CASE("unique, 64 KiB ring buffer", PAT_DENSE, 1, true),
		CASE("baseline: bare ring buffer", PAT_BASELINE, 2, false),
		CASE("unique pages", PAT_DENSE, 2, false),
		CASE("unique, 1 page per 64-page word", PAT_SCATTER, 2, false),
		CASE("512 pages repeated (dedup hits)", PAT_REPEAT, 2, false),
	};
#undef CASE
	const int nr_cases = sizeof(cases) / sizeof(cases[0]);
	struct dt_tracer *t = NULL, *small = NULL;
	struct rbbench *rbs = NULL;
	int c, err = 0, ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *why;
	char *end;

	opterr = 0;	/* one line of our own for bad input */
	while ((c = getopt_long(argc, argv, "qr:s:b:hv", lo, NULL)) != -1) {
		switch (c) {
		case 'q':
			cfg.quick = true;
			break;
		case 'r':
			cfg.rounds = strtol(optarg, &end, 10);
			if (*end || cfg.rounds < 1 || cfg.rounds > MAX_ROUNDS) {
				fprintf(stderr, "capture-throughput: --rounds: 1..%d, not '%s'\n",
					MAX_ROUNDS, optarg);
				return 2;
			}
			break;
		case 's':
			cfg.secs = strtod(optarg, &end);
			if (*end || !(cfg.secs > 0 && cfg.secs <= 60)) {
				fprintf(stderr, "capture-throughput: --seconds: (0, 60], not '%s'\n",
					optarg);
				return 2;
			}
			break;
		case 'b':
			cfg.ringbuf = strtoull(optarg, &end, 0);
			if (*end || cfg.ringbuf < 4096 || (cfg.ringbuf & (cfg.ringbuf - 1))) {
				fprintf(stderr, "capture-throughput: --ringbuf: a power of two >= "
					"4096, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'v':
			cfg.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "capture-throughput: bad option '%s' (--help lists them)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "capture-throughput: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (cfg.quick)
		cfg.rounds = 1;
	why = why_not();
	if (why) {
		printf("SKIP capture-throughput: %s\n", why);
		return 77;
	}
	if (cfg.verbose)
		dt_set_print(print_libbpf);

	make_vm();
	struct dt_tracer_opts o = { .sz = sizeof(o), .ringbuf_bytes = cfg.ringbuf,
				    .dedup_words = DEDUP_WORDS };
	t = dt_tracer_open_flags(&o, DT_OPEN_SYNTHETIC);
	o.ringbuf_bytes = SMALL_RINGBUF;
	small = t ? dt_tracer_open_flags(&o, DT_OPEN_SYNTHETIC) : NULL;
	if (!t || !small) {
		fprintf(stderr, "capture-throughput: failed to load the capture program with its "
			"synthetic driver: %s\n", strerror(errno));
		err = 1;
		goto out;
	}
	if (vmx.real) {
		/* the VM as discovery sees it: its struct kvm is what the pages must carry */
		const struct dt_vm *vm = dt_vm_list__find(dt_tracer__vms(t), getpid());
		const struct dt_slot *sl = vm ? dt_vm__slot(vm, 0, SLOT_ID) : NULL;

		if (!sl || sl->base_gfn != vmx.base_gfn || sl->npages != SLOT_PAGES) {
			fprintf(stderr, "capture-throughput: discovery does not show our VM's slot "
				"0:%d\n", SLOT_ID);
			err = 1;
			goto out;
		}
		vmx.kvm = vm->kvm;
	}
	rbs = rbbench__open();
	if (!rbs || bpf_map__set_max_entries(rbs->maps.rb, cfg.ringbuf) || rbbench__load(rbs)) {
		fprintf(stderr, "capture-throughput: failed to load the ring buffer baseline: %s\n",
			strerror(errno));
		err = 1;
		goto out;
	}

	printf("capture and harvest throughput: %d round%s, %s per case, cases alternating; "
	       "medians\n", cfg.rounds, cfg.rounds > 1 ? "s" : "",
	       cfg.quick ? "fixed tiny sizes" : "timed");
	printf("ring buffer %zu KiB (both sides), %zu-byte records; dedup maps %u words; "
	       "%s VM, slot 0:%d of %llu pages\n", cfg.ringbuf >> 10, sizeof(struct dt_event),
	       DEDUP_WORDS, vmx.real ? "a real (idle)" : "a made-up", SLOT_ID,
	       (unsigned long long)SLOT_PAGES);
	if (ncpu < 2)
		printf("note: %d CPU online: the 2-producer cases are left out\n", ncpu);

	for (int r = 0; r < cfg.rounds && !err; r++) {
		for (int k = 0; k < nr_cases && !err; k++) {
			/* alternate: each round starts one case further on */
			struct bcase *bc = &cases[(k + r) % nr_cases];

			if (bc->producers > ncpu)
				continue;
			err = run_once(bc, bc->runs, bc->small_rb ? small : t, rbs);
			if (err)
				fprintf(stderr, "capture-throughput: %s, %d producer(s): %s\n",
					bc->name, bc->producers, strerror(-err));
		}
	}
	if (err) {
		err = 1;
		goto out;
	}

	printf("\n%-32s %4s %10s %6s %10s %6s %6s %6s %8s %7s\n", "case", "prod", "events/s",
	       "ratio", "+cut ev/s", "BPF ns", "rd ns", "drops%", "pages", "cut ms");
	for (int k = 0; k < nr_cases; k++) {
		struct bcase *bc = &cases[k];
		double base = 0, rate = median(bc->rate, bc->runs);
		char pages[24] = "-", cut[24] = "-", rd[24] = "-";
		double rd_ns = median(bc->cons_ns, bc->runs);

		if (!bc->runs)
			continue;
		for (int b = 0; b < nr_cases; b++)
			if (cases[b].pat == PAT_BASELINE && cases[b].producers == bc->producers)
				base = median(cases[b].rate, cases[b].runs);
		if (bc->pat != PAT_BASELINE) {
			snprintf(pages, sizeof(pages), "%llu", (unsigned long long)bc->pages);
			snprintf(cut, sizeof(cut), "%.1f", median(bc->cut_ms, bc->runs));
		}
		if (rd_ns > 0)
			snprintf(rd, sizeof(rd), "%.1f", rd_ns);
		printf("%-32s %4d %10.0f %6.3f %10.0f %6.1f %6s %6.1f %8s %7s\n", bc->name,
		       bc->producers, rate, base ? rate / base : 0, median(bc->cut_rate, bc->runs),
		       median(bc->cpu_ns, bc->runs), rd, median(bc->drop_pct, bc->runs), pages,
		       cut);
	}
	printf("\n"
	       "events/s   events run / (start -> the consumer read the last record); baseline: "
	       "records read\n"
	       "ratio      events/s / the baseline's with as many producers\n"
	       "+cut ev/s  events / (that time + the epoch cut's)\n"
	       "BPF ns     producers' CPU time per event (thread clocks; includes the test-run "
	       "syscall, 1 per %d events)\n"
	       "rd ns      consumer's CPU time per record read (baseline: libbpf and an empty "
	       "callback; capture: + the library's record path); - under 10,000 records\n"
	       "drops%%     records refused by a full ring buffer, per record sent (capture: each "
	       "page recovered at the cut, checked)\n"
	       "pages      unique pages in the last run's epoch, checked page by page (GFN, "
	       "vCPU) against what was sent\n"
	       "cut ms     dt_tracer__cut: drain, recover from the dedup map, sort, resolve\n",
	       CHUNK);
	if (cfg.quick)
		printf("--quick: sizes too small for these numbers to mean anything; "
		       "the checks do\n");
	if (failures) {
		printf("capture-throughput: %d check(s) FAILED\n", failures);
		err = 1;
	} else {
		printf("capture-throughput: all checks passed\n");
	}
out:
	rbbench__destroy(rbs);
	dt_tracer__close(small);
	dt_tracer__close(t);
	drop_vm();
	return err;
}

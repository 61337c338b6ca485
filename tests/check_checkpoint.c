// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dtcheckpoint's replica must equal guest memory byte for byte after every cycle taken with the
 * VM stopped. This process is the VMM (tests/vmm.c) and dtcheckpoint's core, included below,
 * reads its guest memory with process_vm_readv() on our own pid, as it would read another VMM's.
 * Tags: root, kvm.
 */
#define DTCHECKPOINT_NO_MAIN
#include "../tools/dtcheckpoint.c"

#include <stdlib.h>
#include <sys/wait.h>
#include "testlib.h"
#include "vmm.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define NR_SLOTS 2

/* A small slot, and a larger sparse one far up (its replica must stay sparse too). */
static const struct {
	uint16_t id;
	uint64_t gpa, size;
} slots[NR_SLOTS] = {
	{ 1, 16 * MiB, 16 * MiB },
	{ 2, 1 * GiB, 64 * MiB },
};

struct fx {
	struct tvm *vm;
	struct ckpt *c;
	int vcpus;
	uint64_t *lists[TVM_MAX_VCPUS];
	const uint64_t *clists[TVM_MAX_VCPUS];
	size_t counts[TVM_MAX_VCPUS];
	size_t max_writes;
	struct tvm_pages reaped;
	uint64_t seed;
	uint8_t *written[NR_SLOTS];	/* a byte per page: ever written */
	uint64_t *ever;			/* the pages ever written, as GPAs, for sampling */
	size_t nr_ever;
	uint64_t pages, recovered, cut_ns, copy_ns;
	uint64_t parallel;		/* cycles that copied with more than one thread */
	bool wide;			/* gen: all of slot 2, not its first 16 MiB */
};

static int print_warn(enum dt_print_level level, const char *fmt, va_list ap)
{
	return level == DT_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static int slot_of(uint64_t gpa)
{
	for (int i = 0; i < NR_SLOTS; i++)
		if (gpa >= slots[i].gpa && gpa < slots[i].gpa + slots[i].size)
			return i;
	return -1;
}

static void check_page(struct fx *f, uint64_t gpa, int epoch)
{
	int i = slot_of(gpa);
	const uint8_t *rep, *mem;
	uint64_t page;

	ck_assert_int_ge(i, 0);
	page = (gpa - slots[i].gpa) / TVM_PAGE_SIZE;
	rep = (const uint8_t *)ckpt_replica(f->c, 0, slots[i].id) + page * TVM_PAGE_SIZE;
	mem = tvm_gpa_to_hva(f->vm, slots[i].gpa + page * TVM_PAGE_SIZE);
	ck_assert_msg(!memcmp(rep, mem, TVM_PAGE_SIZE),
		      "epoch %d: slot %u page %#llx: replica holds %u, guest %u", epoch,
		      slots[i].id, (unsigned long long)page, *(const uint32_t *)rep,
		      *(const uint32_t *)mem);
}

static void check_slot(struct fx *f, int i, int epoch)
{
	const uint8_t *rep = ckpt_replica(f->c, 0, slots[i].id);
	const uint8_t *mem = tvm_gpa_to_hva(f->vm, slots[i].gpa);

	ck_assert_ptr_nonnull(rep);
	if (memcmp(rep, mem, slots[i].size))	/* find the page, for the message */
		for (uint64_t off = 0; off < slots[i].size; off += TVM_PAGE_SIZE)
			check_page(f, slots[i].gpa + off, epoch);
}

static void fx_open(struct fx *f, int vcpus, size_t max_writes, size_t ringbuf,
		    unsigned int threads)
{
	struct tvm_opts vo = { .nr_vcpus = vcpus, .ring_entries = 4096 };
	struct ckpt_opts co = { .ringbuf_bytes = ringbuf, .threads = threads };
	char err[256];

	memset(f, 0, sizeof(*f));
	f->vcpus = vcpus;
	f->max_writes = max_writes;
	f->seed = 7 + vcpus + ringbuf;
	f->vm = tvm_create(&vo);
	ck_assert_msg(f->vm, "tvm_create: %s", strerror(errno));
	for (int i = 0; i < NR_SLOTS; i++) {
		ck_assert_int_eq(tvm_add_slot(f->vm, slots[i].id, slots[i].gpa, slots[i].size,
					      true), 0);
		f->written[i] = calloc(slots[i].size / TVM_PAGE_SIZE, 1);
		ck_assert_ptr_nonnull(f->written[i]);
	}
	f->ever = calloc((16 * MiB + 64 * MiB) / TVM_PAGE_SIZE, sizeof(uint64_t));
	ck_assert_ptr_nonnull(f->ever);
	for (int v = 0; v < vcpus; v++) {
		f->lists[v] = calloc(max_writes, sizeof(uint64_t));
		ck_assert_ptr_nonnull(f->lists[v]);
		f->clists[v] = f->lists[v];
	}
	/* guest memory that is not zero before the tracer opens: the full copy must carry it */
	for (int i = 0; i < NR_SLOTS; i++)
		memset(tvm_gpa_to_hva(f->vm, slots[i].gpa + 5 * TVM_PAGE_SIZE), 0xa5, 3 * 4096);
	/* one empty epoch so the vCPU threads exist before discovery */
	ck_assert_int_eq(tvm_run_epoch(f->vm, f->clists, f->counts, 0), 0);
	ck_assert_int_eq(tvm_harvest(f->vm, &f->reaped), 0);

	dt_set_print(print_warn);
	f->c = ckpt_open2(getpid(), &co, err, sizeof(err));
	ck_assert_msg(f->c, "ckpt_open: %s", err);
	ck_assert_uint_eq(f->c->nr_slots, NR_SLOTS);
	ck_assert_int_eq(ckpt_full_copy(f->c), 0);
	ck_assert_uint_eq(f->c->full_nonzero, 2 * 3);
	for (int i = 0; i < NR_SLOTS; i++)
		check_slot(f, i, 0);
}

static void fx_close(struct fx *f)
{
	ckpt_close(f->c);
	tvm_destroy(f->vm);
	tvm_pages_free(&f->reaped);
	for (int v = 0; v < f->vcpus; v++)
		free(f->lists[v]);
	for (int i = 0; i < NR_SLOTS; i++)
		free(f->written[i]);
	free(f->ever);
}

/* Fills each vCPU's list with n random pages, in either slot (slot 2: its first 16 MiB). */
static void gen(struct fx *f, size_t n)
{
	for (int v = 0; v < f->vcpus; v++) {
		for (size_t k = 0; k < n; k++) {
			int i = tvm_rand(&f->seed) & 1;
			uint64_t pages = (i && !f->wide ? 16 * MiB : slots[i].size) / TVM_PAGE_SIZE;

			f->lists[v][k] = slots[i].gpa + tvm_rand(&f->seed) % pages * TVM_PAGE_SIZE;
		}
		f->counts[v] = n;
	}
}

/* The guest writes, stops; the VMM harvests (re-arming KVM's write traps); then one cycle. */
static void epoch(struct fx *f, uint32_t iter)
{
	struct ckpt_stats st;
	int err;

	err = tvm_run_epoch(f->vm, f->clists, f->counts, iter);
	ck_assert_msg(!err, "tvm_run_epoch: %s", strerror(-err));
	tvm_pages_clear(&f->reaped);
	ck_assert_int_eq(tvm_harvest(f->vm, &f->reaped), 0);
	ck_assert_int_eq(ckpt_cycle(f->c, &st), 0);
	ck_assert_uint_eq(st.skipped, 0);
	ck_assert_uint_eq(st.unreadable, 0);
	ck_assert_uint_eq(st.seq + 1, iter);	/* epoch 0 was the full copy's */
	f->pages += st.pages;
	f->recovered += st.recovered;
	f->cut_ns += st.cut_ns;
	f->copy_ns += st.copy_ns;
	f->parallel += st.threads > 1;
	for (int v = 0; v < f->vcpus; v++) {
		for (size_t k = 0; k < f->counts[v]; k++) {
			uint64_t gpa = f->lists[v][k];
			int i = slot_of(gpa);
			uint8_t *w = &f->written[i][(gpa - slots[i].gpa) / TVM_PAGE_SIZE];

			if (!*w) {
				*w = 1;
				f->ever[f->nr_ever++] = gpa;
			}
		}
	}
}

/* What this epoch wrote, a sample of what earlier ones wrote, and a sample of any page. */
static void check_epoch(struct fx *f, int ep)
{
	for (int v = 0; v < f->vcpus; v++)
		for (size_t k = 0; k < f->counts[v]; k++)
			check_page(f, f->lists[v][k], ep);
	for (int k = 0; k < 16 && f->nr_ever; k++)
		check_page(f, f->ever[tvm_rand(&f->seed) % f->nr_ever], ep);
	for (int i = 0; i < NR_SLOTS; i++)
		for (int k = 0; k < 8; k++)
			check_page(f, slots[i].gpa + tvm_rand(&f->seed) %
				   (slots[i].size / TVM_PAGE_SIZE) * TVM_PAGE_SIZE, ep);
}

static void run(int vcpus, int epochs, size_t max_writes, size_t ringbuf, unsigned int threads,
		const char *label)
{
	struct dt_stats ds;
	struct fx f;

	fx_open(&f, vcpus, max_writes * 8, ringbuf, threads);
	for (int ep = 1; ep <= epochs; ep++) {
		/* now and then an epoch big enough for ring-full exits */
		gen(&f, ep % 100 == 50 ? max_writes * 8 : 1 + tvm_rand(&f.seed) % max_writes);
		epoch(&f, ep);
		check_epoch(&f, ep);
		if (ep % 100 == 0)
			check_slot(&f, 0, ep);
	}
	for (int i = 0; i < NR_SLOTS; i++)
		check_slot(&f, i, epochs);
	ck_assert_int_eq(dt_tracer__stats(ckpt_tracer(f.c), &ds), 0);
	printf("%s: %s, %d vCPU, %d epochs: %llu pages copied (%zu distinct), rb drops %llu, "
	       "recovered %llu, lost %llu; %llu cycles copied by %u threads; %.0f cycles/s\n", label,
	       dt_source__name(dt_tracer__source(ckpt_tracer(f.c))), vcpus, epochs,
	       (unsigned long long)f.pages, f.nr_ever, (unsigned long long)ds.rb_drops,
	       (unsigned long long)f.recovered, (unsigned long long)ds.lost,
	       (unsigned long long)f.parallel, threads, epochs / ((f.cut_ns + f.copy_ns) / 1e9));
	ck_assert_uint_eq(ds.lost, 0);
	if (ringbuf) {
		/* the point of this run: records were dropped, yet nothing is missing */
		ck_assert_uint_gt(ds.rb_drops, 0);
		ck_assert_uint_gt(f.recovered, 0);
	}
	if (threads > 1)	/* the lists were long enough for the threads to share them */
		ck_assert_uint_gt(f.parallel, 0);
	fx_close(&f);
}

START_TEST(replica_exact)
{
	const char *why = dt_test_need_kvm();

	if (why)
		DT_SKIP("%s", why);
	run(2, 1000, 64, 0, 1, "replica_exact");
}
END_TEST

START_TEST(replica_exact_1vcpu)
{
	const char *why = dt_test_need_kvm();

	if (why)
		DT_SKIP("%s", why);
	run(1, 300, 64, 0, 1, "replica_exact_1vcpu");
}
END_TEST

/* A 4 KiB BPF ring buffer holds ~70 records: most pages come back from the dedup map. */
START_TEST(replica_exact_drops)
{
	const char *why = dt_test_need_kvm();

	if (why)
		DT_SKIP("%s", why);
	run(2, 60, 800, 4096, 2, "replica_exact_drops");
}
END_TEST

/* Long lists copied by three threads claiming sublists (dt_fetch): still byte-identical. */
START_TEST(replica_exact_threads)
{
	const char *why = dt_test_need_kvm();

	if (why)
		DT_SKIP("%s", why);
	run(2, 30, 3000, 0, 3, "replica_exact_threads");
}
END_TEST

/* The cost of a cycle (cut + copy, not the guest's writing) at ~n dirty pages per cycle. */
static void rate(struct fx *f, size_t n, int epochs, uint32_t *iter)
{
	uint64_t pages0 = f->pages, cut0 = f->cut_ns, copy0 = f->copy_ns;
	double cut, copy;

	for (int ep = 0; ep < epochs; ep++) {
		gen(f, n / f->vcpus);
		epoch(f, ++*iter);
		check_epoch(f, *iter);
	}
	cut = (f->cut_ns - cut0) / 1e3 / epochs;
	copy = (f->copy_ns - copy0) / 1e3 / epochs;
	printf("cycle rate: %.0f pages per cycle, %u copy thread(s): cut %.1f us + copy %.1f us, "
	       "%.0f cycles/s\n", (double)(f->pages - pages0) / epochs, f->c->threads, cut, copy,
	       1e6 / (cut + copy));
}

START_TEST(cycle_rate)
{
	const char *why = dt_test_need_kvm();
	uint32_t iter = 0;
	struct fx f;

	if (why)
		DT_SKIP("%s", why);
	fx_open(&f, 2, 9000, 0, 2);
	f.c->threads = 1;
	rate(&f, 100, 200, &iter);
	rate(&f, 1000, 50, &iter);
	/* 18,000 random writes, half in each slot: about 10,000 distinct pages a cycle */
	f.wide = true;
	rate(&f, 18000, 10, &iter);
	f.c->threads = 2;
	rate(&f, 18000, 10, &iter);
	for (int i = 0; i < NR_SLOTS; i++)
		check_slot(&f, i, iter);
	fx_close(&f);
}
END_TEST

/*
 * dtcheckpoint -t N --stop against another process's VM: the BPF program stops the VMM at its
 * Nth dirty page of the epoch, the cycle copies that bounded set, and the replica then equals
 * the stopped VMM's guest memory byte for byte, read independently here.
 */
#define TRIG 500

static void compare_stopped(struct ckpt *c, uint8_t *mem, int round)
{
	for (size_t i = 0; i < c->nr_slots; i++) {
		const struct ckpt_slot *s = &c->slots[i];
		size_t len = s->npages * CKPT_PAGE;
		struct iovec l = { mem, len }, r = { (void *)(uintptr_t)s->uaddr, len };

		ck_assert_uint_le(len, DT_WRITER_SIZE);
		ck_assert_int_eq(process_vm_readv(c->pid, &l, 1, &r, 1, 0), (ssize_t)len);
		if (!memcmp(mem, s->replica, len))
			continue;
		for (uint64_t pg = 0; pg < s->npages; pg++)
			ck_assert_msg(!memcmp(mem + pg * CKPT_PAGE, s->replica + pg * CKPT_PAGE,
					      CKPT_PAGE), "round %d: slot %u page %llu differs "
				      "(guest %08x, replica %08x)", round, s->id,
				      (unsigned long long)pg, *(uint32_t *)(mem + pg * CKPT_PAGE),
				      *(uint32_t *)(s->replica + pg * CKPT_PAGE));
	}
}

START_TEST(trigger_stop_cycles)
{
	const char *why = dt_test_need_kvm();
	uint64_t over_max = 0, pages = 0;
	uint8_t *mem;
	char err[256];
	struct ckpt *c;
	pid_t vmm;

	if (why)
		DT_SKIP("%s", why);
	mem = malloc(DT_WRITER_SIZE);
	ck_assert_ptr_nonnull(mem);
	vmm = dt_test_writer_vmm(2);
	/* armed from the first page, as dtcheckpoint does: the VMM may stop during the full copy */
	c = ckpt_open2(vmm, &(struct ckpt_opts){ .threads = 2, .trigger_pages = TRIG,
						 .trigger_stop = true }, err, sizeof(err));
	ck_assert_msg(c, "ckpt_open: %s", err);
	ck_assert_int_eq(ckpt_full_copy(c), 0);
	for (int round = 0; round < 12; round++) {
		struct ckpt_stats st;

		ck_assert_int_eq(ckpt_wait(c, 10000), 1);
		ck_assert_int_eq(ckpt_wait_stopped(c, 5000), 0);
		ck_assert_int_eq(ckpt_cycle(c, &st), 0);
		ck_assert_uint_eq(st.unreadable, 0);
		/*
		 * The bounded set: the Nth page, plus what other vCPUs wrote while the signal flew:
		 * 0-4 pages as a rule, once 141 seen here (a vCPU thread slow to take its signal).
		 */
		ck_assert_uint_ge(st.pages, TRIG);
		ck_assert_uint_le(st.pages, TRIG + 1024);
		if (st.pages - TRIG > over_max)
			over_max = st.pages - TRIG;
		pages += st.pages;
		compare_stopped(c, mem, round);
		ck_assert_int_eq(ckpt_resume(c), 0);
	}
	printf("trigger %d pages with the VMM stopped: 12 checkpoints exact, %.1f pages per cycle, "
	       "overshoot at most %llu\n", TRIG, pages / 12.0, (unsigned long long)over_max);
	ckpt_set_trigger(c, 0, false);
	ckpt_resume(c);
	ckpt_close(c);
	dt_test_kill(vmm);
	free(mem);
}
END_TEST

/* The one-line reasons dtcheckpoint exits with. */
START_TEST(open_errors)
{
	struct tvm_opts vo = { .nr_vcpus = 1, .ring_entries = 4096 };
	const char *why = dt_test_need_kvm();
	size_t counts[1] = {};
	const uint64_t *lists[1] = { NULL };
	char err[256] = "";
	struct tvm *vm;
	pid_t child;

	if (why)
		DT_SKIP("%s", why);
	dt_set_print(print_warn);
	child = fork();
	ck_assert_int_ge(child, 0);
	if (!child)
		_exit(0);
	ck_assert_int_eq(waitpid(child, NULL, 0), child);
	ck_assert_ptr_null(ckpt_open(child, err, sizeof(err)));
	ck_assert_int_eq(errno, ESRCH);
	ck_assert_msg(strstr(err, "no process"), "%s", err);

	ck_assert_ptr_null(ckpt_open(getpid(), err, sizeof(err)));
	ck_assert_msg(strstr(err, "holds no KVM VM"), "%s", err);

	vm = tvm_create(&vo);
	ck_assert_msg(vm, "tvm_create: %s", strerror(errno));
	ck_assert_int_eq(tvm_add_slot(vm, 1, 16 * MiB, 16 * MiB, false), 0);
	ck_assert_int_eq(tvm_run_epoch(vm, lists, counts, 0), 0);
	ck_assert_ptr_null(ckpt_open(getpid(), err, sizeof(err)));
	ck_assert_msg(strstr(err, "no memslot with dirty logging on"), "%s", err);
	tvm_destroy(vm);
}
END_TEST

/* A page the VMM has not mapped costs that page only, wherever it falls in a batch. */
START_TEST(readv_holes)
{
	const size_t pg = TVM_PAGE_SIZE, n = 8;
	uint8_t *src = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);
	uint8_t *dst = calloc(n, pg);
	uint64_t unreadable = 0, calls = 0;
	/* pages 0-4 in one iovec (hole at 3 inside it), 5 alone, 6-7 (hole at 6 first) */
	struct iovec l[3] = { { dst, 5 * pg }, { dst + 5 * pg, pg }, { dst + 6 * pg, 2 * pg } };
	struct iovec r[3] = { { src, 5 * pg }, { src + 5 * pg, pg }, { src + 6 * pg, 2 * pg } };

	ck_assert_ptr_ne(src, MAP_FAILED);
	ck_assert_ptr_nonnull(dst);
	for (size_t i = 0; i < n; i++)
		memset(src + i * pg, 0x10 + i, pg);
	ck_assert_int_eq(mprotect(src + 3 * pg, pg, PROT_NONE), 0);
	ck_assert_int_eq(mprotect(src + 6 * pg, pg, PROT_NONE), 0);
	ck_assert_int_eq(ckpt_readv(getpid(), l, r, 3, &unreadable, &calls), 0);
	ck_assert_uint_eq(unreadable, 2);
	for (size_t i = 0; i < n; i++) {
		uint8_t want = i == 3 || i == 6 ? 0 : 0x10 + i;

		ck_assert_uint_eq(dst[i * pg], want);
		ck_assert_uint_eq(dst[i * pg + pg - 1], want);
	}
	munmap(src, n * pg);
	free(dst);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("checkpoint");
	TCase *tc = tcase_create("kvm");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, replica_exact);
	tcase_add_test(tc, replica_exact_1vcpu);
	tcase_add_test(tc, replica_exact_drops);
	tcase_add_test(tc, replica_exact_threads);
	tcase_add_test(tc, trigger_stop_cycles);
	tcase_add_test(tc, cycle_rate);
	tcase_add_test(tc, open_errors);
	tcase_add_test(tc, readv_holes);
	suite_add_tcase(s, tc);
	return dt_test_main(s, "checkpoint");
}

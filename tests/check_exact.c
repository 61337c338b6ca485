// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Exactness against ground truth: for every epoch, the GFN set dirtytrace harvests for our test
 * VM must equal the set the VMM reaped from KVM's own dirty ring (or dirty bitmap) for the same
 * epoch: nothing missing, nothing extra. Tags: root, kvm.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "testlib.h"
#include "vmm.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

struct slot_def {
	uint16_t id;
	uint64_t gpa, size;
};

/* Three logged slots: a small one, a large sparse one, one high up. */
static const struct slot_def slots[] = {
	{ 1, 16 * MiB, 16 * MiB },
	{ 2, 1 * GiB, 1 * GiB },
	{ 3, 3 * GiB, 64 * MiB },
};
#define NR_SLOTS (sizeof(slots) / sizeof(slots[0]))

struct scenario {
	const char *label;
	int vcpus;
	uint32_t ring;		/* 0: bitmap */
	bool manual_protect;
	int epochs;
	size_t max_writes;	/* per vCPU per epoch; every 16th epoch writes 8x that */
	size_t ringbuf;		/* 0: default */
};

static int print_warn(enum dt_print_level level, const char *fmt, va_list ap)
{
	return level == DT_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static struct dt_tracer *open_tracer(size_t ringbuf)
{
	pid_t self = getpid();
	struct dt_tracer_opts o = {
		.sz = sizeof(o), .pids = &self, .nr_pids = 1, .ringbuf_bytes = ringbuf,
	};

	dt_set_print(print_warn);
	return dt_tracer__open(&o);
}

/* What dirtytrace found for us in an epoch, as the VMM's page type. */
static void epoch_pages(const struct dt_epoch_vm *vm, struct tvm_pages *out)
{
	tvm_pages_clear(out);
	for (size_t i = 0; vm && i < vm->nr_gfns; i++) {
		struct tvm_page p = {
			.as_id = vm->gfns[i].as_id, .slot = vm->gfns[i].slot,
			.offset = vm->gfns[i].offset,
		};

		ck_assert_int_eq(tvm_pages_add(out, &p), 0);
	}
	tvm_pages_sort_unique(out);
}

static void report_diff(int epoch, const struct tvm_pages *truth, const struct tvm_pages *got)
{
	size_t i = 0, j = 0, shown = 0;

	fprintf(stderr, "epoch %d: KVM reported %zu pages, dirtytrace %zu\n", epoch, truth->n,
		got->n);
	while ((i < truth->n || j < got->n) && shown < 10) {
		const struct tvm_page *a = i < truth->n ? &truth->v[i] : NULL;
		const struct tvm_page *b = j < got->n ? &got->v[j] : NULL;
		int c = !a ? 1 : !b ? -1 : a->slot != b->slot ? (a->slot < b->slot ? -1 : 1) :
			a->offset != b->offset ? (a->offset < b->offset ? -1 : 1) : 0;

		if (c < 0) {
			fprintf(stderr, "  missing slot %u page %#llx\n", a->slot,
				(unsigned long long)a->offset);
			i++, shown++;
		} else if (c > 0) {
			fprintf(stderr, "  extra   slot %u page %#llx\n", b->slot,
				(unsigned long long)b->offset);
			j++, shown++;
		} else {
			i++, j++;
		}
	}
}

/* vCPU v writes in slot (v % NR_SLOTS) + 1, a region no other vCPU writes: attribution check. */
static size_t gen_writes(uint64_t *out, int v, int epoch, size_t max, uint64_t *seed)
{
	const struct slot_def *s = &slots[v % NR_SLOTS];
	size_t n = 1 + tvm_rand(seed) % max;

	if (epoch % 16 == 15)
		n *= 8;	/* enough to run a 256-entry ring into ring-full exits */
	switch (epoch % 3) {
	case 0:
		tvm_pattern_random(out, n, s->gpa, s->size, seed);
		break;
	case 1:
		tvm_pattern_hotcold(out, n, s->gpa, s->size, 16, 80, seed);
		break;
	default:
		tvm_pattern_seq(out, n, s->gpa, s->size, tvm_rand(seed) % (s->size >> 12));
		break;
	}
	return n;
}

static void run_scenario(const struct scenario *sc)
{
	struct tvm_opts vo = { .nr_vcpus = sc->vcpus, .ring_entries = sc->ring,
			       .manual_protect = sc->manual_protect };
	uint64_t *lists[TVM_MAX_VCPUS] = {}, seed = 42 + sc->vcpus * 7 + sc->ring;
	const uint64_t *clists[TVM_MAX_VCPUS];
	size_t counts[TVM_MAX_VCPUS], max = sc->max_writes * 8;
	struct tvm_pages truth = {}, got = {};
	uint64_t total_unique = 0, total_recovered = 0;
	struct dt_ring_view *views;
	struct dt_tracer *t;
	struct tvm_stats ts;
	struct dt_stats st;
	struct tvm *vm;
	size_t nviews;
	struct dt_epoch *e;
	int err;

	vm = tvm_create(&vo);
	ck_assert_msg(vm, "tvm_create: %s", strerror(errno));
	for (size_t i = 0; i < NR_SLOTS; i++)
		ck_assert_int_eq(tvm_add_slot(vm, slots[i].id, slots[i].gpa, slots[i].size, true), 0);
	for (int v = 0; v < sc->vcpus; v++) {
		lists[v] = calloc(max, sizeof(uint64_t));
		ck_assert_ptr_nonnull(lists[v]);
		clists[v] = lists[v];
	}
	/* one empty epoch first so every vCPU thread exists before discovery maps its tid */
	memset(counts, 0, sizeof(counts));
	ck_assert_int_eq(tvm_run_epoch(vm, clists, counts, 0), 0);

	t = open_tracer(sc->ringbuf);
	ck_assert_msg(t, "dt_tracer__open: %s", strerror(errno));
	if (!sc->ring && dt_tracer__source(t) == DT_SOURCE_RING_PUSH) {
		dt_tracer__close(t);
		tvm_destroy(vm);
		for (int v = 0; v < sc->vcpus; v++)
			free(lists[v]);
		dt_test_skip(sc->label, "bitmap-mode VMs need fentry or kprobe on "
			     "mark_page_dirty_in_slot; this kernel allows only %s",
			     dt_source__name(DT_SOURCE_RING_PUSH));
		return;
	}
	err = dt_tracer__cut(t, &e);	/* start from a clean epoch */
	ck_assert_int_eq(err, 0);
	dt_epoch__free(e);
	ck_assert_int_eq(tvm_harvest(vm, &truth), 0);
	tvm_pages_clear(&truth);

	for (int ep = 1; ep <= sc->epochs; ep++) {
		const struct dt_epoch_vm *mine;

		for (int v = 0; v < sc->vcpus; v++)
			counts[v] = gen_writes(lists[v], v, ep, sc->max_writes, &seed);
		err = tvm_run_epoch(vm, clists, counts, ep);
		ck_assert_msg(!err, "tvm_run_epoch: %s (exit reason %u)", strerror(-err),
			      tvm_vcpu_exit_reason(vm, 0));
		tvm_pages_clear(&truth);	/* tvm_harvest appends */
		ck_assert_int_eq(tvm_harvest(vm, &truth), 0);
		tvm_pages_sort_unique(&truth);
		ck_assert_int_eq(dt_tracer__cut(t, &e), 0);
		mine = dt_epoch__vm(e, getpid());
		epoch_pages(mine, &got);
		if (!tvm_pages_equal(&truth, &got))
			report_diff(ep, &truth, &got);
		ck_assert_msg(tvm_pages_equal(&truth, &got), "epoch %d: sets differ", ep);
		ck_assert_ptr_nonnull(mine);
		ck_assert_uint_eq(mine->unresolved, 0);
		for (size_t i = 0; i < mine->nr_gfns; i++) {
			const struct dt_gfn *g = &mine->gfns[i];
			const struct slot_def *s = &slots[g->slot - 1];

			ck_assert_uint_eq(g->gfn, (s->gpa >> 12) + g->offset);
			if (i)	/* dense and sorted */
				ck_assert_uint_lt(mine->gfns[i - 1].gfn, g->gfn);
			/* only vCPU v writes slot v + 1 (vcpus <= NR_SLOTS); recovered: no vCPU */
			ck_assert_int_eq(g->vcpu, g->recovered ? -1 : g->slot - 1);
		}
		total_unique += mine->nr_gfns;
		total_recovered += mine->recovered;
		dt_epoch__free(e);
	}

	ck_assert_int_eq(dt_tracer__stats(t, &st), 0);
	tvm_get_stats(vm, &ts);
	printf("%s: %d vCPU, %s, %d epochs: %llu pages, raw %llu, records %llu, rb drops %llu, "
	       "recovered %llu, ring-full exits %llu\n", dt_source__name(dt_tracer__source(t)),
	       sc->vcpus, sc->ring ? "ring" : "bitmap", sc->epochs,
	       (unsigned long long)total_unique, (unsigned long long)st.raw,
	       (unsigned long long)st.records, (unsigned long long)st.rb_drops,
	       (unsigned long long)st.recovered, (unsigned long long)ts.ring_full_exits);
	ck_assert_uint_eq(st.lost, 0);
	ck_assert_uint_eq(st.map_full, 0);
	ck_assert_uint_eq(st.barrier_timeouts, 0);
	ck_assert_uint_eq(st.recovered, total_recovered);
	/* every record dropped in the kernel came back from the dedup map at the cut */
	ck_assert_uint_eq(st.rb_drops, st.recovered);
	ck_assert_uint_eq(st.records + st.recovered, total_unique);
	if (sc->ring) {
		uint64_t pushes = 0, exits = 0, overflows = 0, raw = 0;

		/* here every emulated write is one push: raw events are exactly KVM's ring entries */
		if (dt_tracer__source(t) == DT_SOURCE_RING_PUSH)
			ck_assert_uint_eq(st.raw, ts.reaped);
		ck_assert_int_eq(dt_tracer__ring_views(t, &views, &nviews), 0);
		for (size_t i = 0; i < nviews; i++) {
			ck_assert_int_eq(views[i].pid, getpid());
			ck_assert_uint_eq(views[i].ring_size, sc->ring);
			pushes += views[i].pushes;
			exits += views[i].full_exits;
			overflows += views[i].overflows;
			raw += views[i].raw;
		}
		free(views);
		ck_assert_uint_eq(pushes, ts.reaped);
		ck_assert_uint_eq(exits, ts.ring_full_exits);
		ck_assert_uint_eq(overflows, 0);
		ck_assert_uint_eq(raw, st.raw);	/* per-vCPU raw adds up to the total */
	}
	dt_tracer__close(t);
	tvm_destroy(vm);
	tvm_pages_free(&truth);
	tvm_pages_free(&got);
	for (int v = 0; v < sc->vcpus; v++)
		free(lists[v]);
}

#define SCENARIO_TEST(name, ...)					\
	START_TEST(name)						\
	{								\
		static const struct scenario sc = { .label = #name, __VA_ARGS__ };	\
		const char *why = dt_test_need_kvm();			\
		if (why)						\
			DT_SKIP("%s", why);				\
		run_scenario(&sc);					\
	}								\
	END_TEST

/* 256-entry rings: ring-full exits (and KVM_RESET_DIRTY_RINGS mid-epoch) in every 16th epoch */
SCENARIO_TEST(ring_1vcpu, .vcpus = 1, .ring = 256, .epochs = 2000, .max_writes = 40)
SCENARIO_TEST(ring_2vcpu, .vcpus = 2, .ring = 256, .epochs = 2000, .max_writes = 40)
SCENARIO_TEST(ring_4096_big_epochs, .vcpus = 2, .ring = 4096, .epochs = 40, .max_writes = 1500)
/* a 4 KiB BPF ring buffer holds ~70 records: most are dropped and must be recovered */
SCENARIO_TEST(ring_tiny_ringbuf, .vcpus = 2, .ring = 4096, .epochs = 60, .max_writes = 800,
	      .ringbuf = 4096)
SCENARIO_TEST(bitmap_2vcpu, .vcpus = 2, .ring = 0, .epochs = 200, .max_writes = 40)
SCENARIO_TEST(bitmap_manual_protect, .vcpus = 2, .ring = 0, .manual_protect = true, .epochs = 200,
	      .max_writes = 40)

int main(void)
{
	Suite *s = suite_create("exact");
	TCase *tc = tcase_create("kvm");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, ring_1vcpu);
	tcase_add_test(tc, ring_2vcpu);
	tcase_add_test(tc, ring_4096_big_epochs);
	tcase_add_test(tc, ring_tiny_ringbuf);
	tcase_add_test(tc, bitmap_2vcpu);
	tcase_add_test(tc, bitmap_manual_protect);
	suite_add_tcase(s, tc);
	return dt_test_main(s, "exact");
}

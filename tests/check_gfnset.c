// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Pure core: epoch page sets into sorted unique per-VM GFN lists. Tag: unit. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "testlib.h"
#include "../src/internal.h"

#define KVM_A 0xffff888100000000ull
#define KVM_B 0xffff888200000000ull

/* splitmix64 */
static uint64_t tvm_like_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static struct dt_slot slots_a[] = {
	{ .as_id = 0, .id = 1, .base_gfn = 0x1000, .npages = 0x1000 },
	{ .as_id = 0, .id = 2, .base_gfn = 0x40000, .npages = 0x40000 },
	{ .as_id = 1, .id = 1, .base_gfn = 0x1000, .npages = 0x100 },	/* SMM twin of slot 1 */
};
static struct dt_vm vms_arr[] = {
	{ .pid = 100, .kvm = KVM_A, .slots_known = true, .nr_slots = 3, .slots = slots_a },
	{ .pid = 50, .kvm = KVM_B, .slots_known = true },
};
static const struct dt_vm_list vms = { .n = 2, .vms = vms_arr };

static void add(struct dt_pageset *s, uint64_t kvm, uint16_t as, uint16_t slot, uint64_t off,
		int32_t vcpu, pid_t pid, bool recovered)
{
	struct dt_page_rec r = {
		.kvm = kvm, .as_id = as, .slot = slot, .offset = off, .gfn = DT_GFN_NONE,
		.vcpu = vcpu, .pid = pid, .recovered = recovered,
	};

	ck_assert_int_eq(dt_pageset_add(s, &r), 0);
}

static struct dt_epoch *build(struct dt_pageset *s, uint64_t *unresolved)
{
	struct dt_epoch *e = calloc(1, sizeof(*e));

	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(dt_epoch_build(s, &vms, e, unresolved), 0);
	ck_assert_uint_eq(s->n, 0);	/* the set is emptied for the next epoch */
	return e;
}

START_TEST(dedup_and_first_record_wins)
{
	struct dt_pageset s = {};
	uint64_t unres;
	struct dt_epoch *e;

	add(&s, KVM_A, 0, 1, 5, 1, 100, false);
	add(&s, KVM_A, 0, 1, 5, 0, 100, false);	/* same page, later, other vCPU */
	add(&s, KVM_A, 0, 1, 5, -1, 0, true);	/* and its dedup bit */
	add(&s, KVM_A, 0, 1, 6, -1, 0, true);	/* a page whose record was dropped */
	e = build(&s, &unres);
	ck_assert_uint_eq(e->nr_vms, 1);
	ck_assert_uint_eq(e->vms[0].nr_gfns, 2);
	ck_assert_uint_eq(e->vms[0].gfns[0].gfn, 0x1005);
	ck_assert_int_eq(e->vms[0].gfns[0].vcpu, 1);
	ck_assert(!e->vms[0].gfns[0].recovered);
	ck_assert_uint_eq(e->vms[0].gfns[1].gfn, 0x1006);
	ck_assert(e->vms[0].gfns[1].recovered);
	ck_assert_int_eq(e->vms[0].gfns[1].vcpu, -1);
	ck_assert_uint_eq(e->vms[0].recovered, 1);
	ck_assert_uint_eq(unres, 0);
	dt_epoch__free(e);
	dt_pageset_free(&s);
}
END_TEST

START_TEST(resolve_sort_and_split_vms)
{
	struct dt_pageset s = {};
	uint64_t unres;
	struct dt_epoch *e;
	const struct dt_epoch_vm *a, *b;

	add(&s, KVM_A, 0, 2, 7, 0, 100, false);	/* gfn 0x40007 */
	add(&s, KVM_A, 1, 1, 3, 0, 100, false);	/* as 1: gfn 0x1003 */
	add(&s, KVM_A, 0, 1, 0xfff, 1, 100, false);	/* gfn 0x1fff */
	add(&s, KVM_A, 0, 9, 1, 1, 100, false);	/* unknown slot */
	add(&s, KVM_A, 1, 1, 0x100, 0, 100, false);	/* past the slot's end */
	add(&s, KVM_B, 0, 1, 1, -1, 0, true);	/* B seen only through a recovered bit */
	e = build(&s, &unres);
	ck_assert_uint_eq(e->nr_vms, 2);
	/* sorted by pid: B (50) before A (100); B's pid comes from discovery */
	b = &e->vms[0];
	a = &e->vms[1];
	ck_assert_int_eq(b->pid, 50);
	ck_assert_int_eq(a->pid, 100);
	ck_assert_ptr_eq(dt_epoch__vm(e, 100), a);
	ck_assert_ptr_null(dt_epoch__vm(e, 7));
	ck_assert_uint_eq(b->nr_gfns, 1);
	ck_assert_uint_eq(b->gfns[0].gfn, DT_GFN_NONE);	/* B has no slot table */
	ck_assert_uint_eq(a->nr_gfns, 5);
	/* (as_id, gfn) order, unresolved last within their address space */
	ck_assert_uint_eq(a->gfns[0].gfn, 0x1fff);
	ck_assert_uint_eq(a->gfns[1].gfn, 0x40007);
	ck_assert_uint_eq(a->gfns[2].gfn, DT_GFN_NONE);
	ck_assert_uint_eq(a->gfns[2].slot, 9);
	ck_assert_uint_eq(a->gfns[3].as_id, 1);
	ck_assert_uint_eq(a->gfns[3].gfn, 0x1003);
	ck_assert_uint_eq(a->gfns[4].gfn, DT_GFN_NONE);
	ck_assert_uint_eq(a->unresolved, 2);
	ck_assert_uint_eq(unres, 3);
	/* per vCPU and per slot, sorted by id, summing to the pages */
	ck_assert_uint_eq(a->nr_vcpus, 2);
	ck_assert_int_eq(a->vcpus[0].id, 0);
	ck_assert_uint_eq(a->vcpus[0].pages, 3);
	ck_assert_uint_eq(a->vcpus[1].pages, 2);
	ck_assert_uint_eq(a->nr_slots, 4);
	ck_assert_int_eq(a->slots[0].id, 1);
	ck_assert_int_eq(a->slots[1].id, 2);
	ck_assert_int_eq(a->slots[2].id, 9);
	ck_assert_int_eq(a->slots[3].id, (1 << 16) | 1);
	ck_assert_uint_eq(a->slots[3].pages, 2);
	dt_epoch__free(e);
	dt_pageset_free(&s);
}
END_TEST

START_TEST(empty_epoch)
{
	struct dt_pageset s = {};
	uint64_t unres = 99;
	struct dt_epoch *e = build(&s, &unres);

	ck_assert_uint_eq(e->nr_vms, 0);
	ck_assert_ptr_null(e->vms);
	ck_assert_uint_eq(unres, 0);
	dt_epoch__free(e);
}
END_TEST

START_TEST(dedup_word_bits)
{
	struct dt_pageset s = {};
	int n = dt_pageset_add_word(&s, KVM_A, (1u << 16) | 3, 2, (1ull << 0) | (1ull << 63) | 0x30);

	ck_assert_int_eq(n, 4);
	ck_assert_uint_eq(s.n, 4);
	ck_assert_uint_eq(s.v[0].offset, 128);
	ck_assert_uint_eq(s.v[1].offset, 128 + 4);
	ck_assert_uint_eq(s.v[2].offset, 128 + 5);
	ck_assert_uint_eq(s.v[3].offset, 128 + 63);
	ck_assert_uint_eq(s.v[3].as_id, 1);
	ck_assert_uint_eq(s.v[3].slot, 3);
	ck_assert(s.v[3].recovered);
	ck_assert_int_eq(dt_pageset_add_word(&s, KVM_A, 1, 0, 0), 0);
	dt_pageset_free(&s);
}
END_TEST

/* A 1 TiB slot with 1,000 dirty pages: memory follows the dirty set, not the slot. */
START_TEST(memory_follows_dirty_set)
{
	struct dt_slot big = { .as_id = 0, .id = 1, .base_gfn = 1ull << 20, .npages = 1ull << 28 };
	struct dt_vm vm = { .pid = 1, .kvm = KVM_A, .slots_known = true, .nr_slots = 1,
			    .slots = &big };
	struct dt_vm_list l = { .n = 1, .vms = &vm };
	struct dt_pageset s = {};
	struct dt_epoch e = {};
	uint64_t unres, seed = 7;

	for (int i = 0; i < 1000; i++) {
		struct dt_page_rec r = { .kvm = KVM_A, .slot = 1, .gfn = DT_GFN_NONE, .vcpu = 0 };

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		r.offset = (seed >> 20) % big.npages;
		ck_assert_int_eq(dt_pageset_add(&s, &r), 0);
	}
	/* 32 MiB would be the slot's bitmap; the set holds ~1,000 entries of ~48 bytes */
	ck_assert_uint_le(s.cap * sizeof(*s.v), 128 * 1024);
	ck_assert_int_eq(dt_epoch_build(&s, &l, &e, &unres), 0);
	ck_assert_uint_le(e.vms[0].nr_gfns, 1000);
	ck_assert_uint_ge(e.vms[0].nr_gfns, 990);
	for (size_t i = 1; i < e.vms[0].nr_gfns; i++)
		ck_assert_uint_gt(e.vms[0].gfns[i].gfn, e.vms[0].gfns[i - 1].gfn);
	ck_assert_uint_ge(e.vms[0].gfns[0].gfn, big.base_gfn);
	free(e.vms[0].gfns);
	free(e.vms[0].vcpus);
	free(e.vms[0].slots);
	free(e.vms);
	dt_pageset_free(&s);
}
END_TEST

/* Random input against a reference computed another way: a bitmap over a small slot. */
/* Sublists claimed by four threads at once: every page exactly once, in order within a claim. */
#define FETCH_PAGES	100003
#define FETCH_THREADS	4

struct fetcher {
	struct dt_fetch *f;
	size_t max;
	unsigned char *seen;	/* shared; each index must be claimed once */
	size_t claims, pages;
	bool bad;
};

static void *fetch_worker(void *arg)
{
	struct fetcher *w = arg;
	const struct dt_gfn *sub;
	size_t n;

	while ((n = dt_fetch__next(w->f, w->max, &sub))) {
		size_t at = sub - w->f->vm->gfns;

		if (n > w->max || at + n > w->f->vm->nr_gfns)
			w->bad = true;
		for (size_t i = 0; i < n; i++) {
			if (sub[i].gfn != (at + i) * 3)
				w->bad = true;
			__atomic_fetch_add(&w->seen[at + i], 1, __ATOMIC_RELAXED);
		}
		w->claims++;
		w->pages += n;
	}
	return NULL;
}

START_TEST(sublists_from_threads)
{
	struct dt_epoch_vm vm = { .nr_gfns = FETCH_PAGES };
	struct fetcher w[FETCH_THREADS];
	pthread_t th[FETCH_THREADS];
	const struct dt_gfn *sub;
	size_t total = 0, claims = 0;
	unsigned char *seen;
	struct dt_fetch f;

	vm.gfns = calloc(FETCH_PAGES, sizeof(*vm.gfns));
	seen = calloc(FETCH_PAGES, 1);
	ck_assert(vm.gfns && seen);
	for (size_t i = 0; i < FETCH_PAGES; i++)
		vm.gfns[i].gfn = i * 3;
	dt_fetch__init(&f, &vm);
	ck_assert_uint_eq(dt_fetch__next(&f, 0, &sub), 0);	/* max 0 claims nothing */
	for (int i = 0; i < FETCH_THREADS; i++) {
		w[i] = (struct fetcher){ .f = &f, .max = 97 + i, .seen = seen };
		ck_assert_int_eq(pthread_create(&th[i], NULL, fetch_worker, &w[i]), 0);
	}
	for (int i = 0; i < FETCH_THREADS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(!w[i].bad, "thread %d got a bad sublist", i);
		total += w[i].pages;
		claims += w[i].claims;
	}
	ck_assert_uint_eq(total, FETCH_PAGES);
	for (size_t i = 0; i < FETCH_PAGES; i++)
		ck_assert_msg(seen[i] == 1, "page %zu claimed %d times", i, seen[i]);
	ck_assert_uint_ge(claims, FETCH_PAGES / (97 + FETCH_THREADS));
	/* exhausted stays exhausted */
	ck_assert_uint_eq(dt_fetch__next(&f, 10, &sub), 0);
	ck_assert_ptr_null(sub);
	/* an empty VM list, and a fresh fetch of the same list gives it whole again */
	dt_fetch__init(&f, &(struct dt_epoch_vm){});
	ck_assert_uint_eq(dt_fetch__next(&f, 10, &sub), 0);
	dt_fetch__init(&f, &vm);
	ck_assert_uint_eq(dt_fetch__next(&f, FETCH_PAGES * 2, &sub), FETCH_PAGES);
	ck_assert_ptr_eq(sub, vm.gfns);
	free(seen);
	free(vm.gfns);
}
END_TEST

/*
 * The radix fast path against the general one on the same records: several VMs (one unknown to
 * discovery, one without slots), known and unknown slots, offsets past a slot's end, GFNs given
 * by the record, duplicates, recovered twins; now and then a slot id the keys cannot hold.
 */
#define KVM_C 0xffff888300000000ull

static void add_rec(struct dt_pageset *a, struct dt_pageset *b, const struct dt_page_rec *r)
{
	ck_assert_int_eq(dt_pageset_add(a, r), 0);
	ck_assert_int_eq(dt_pageset_add(b, r), 0);
}

START_TEST(fast_path_equals_general)
{
	static const uint64_t kvms[3] = { KVM_A, KVM_B, KVM_C };
	static const uint16_t slot_ids[5] = { 1, 2, 3, 7, 0x8001 };
	uint64_t seed = 77 + _i * 7919, ua, ub;
	struct dt_pageset sa = {}, sb = {};
	struct dt_epoch *ea = calloc(1, sizeof(*ea)), *eb = calloc(1, sizeof(*eb));
	int n;

	ck_assert(ea && eb);
	n = tvm_like_rand(&seed) % 4000;
	for (int i = 0; i < n; i++) {
		uint64_t x = tvm_like_rand(&seed);
		struct dt_page_rec r = {
			.kvm = kvms[x % 3], .as_id = (x >> 2) & 1,
			/* the id the keys cannot hold only in a tenth of the runs */
			.slot = slot_ids[(x >> 3) % (_i % 10 == 9 ? 5 : 4)],
			.offset = (x >> 8) % 0x1200, .gfn = DT_GFN_NONE,
			.vcpu = (int32_t)((x >> 24) % 5) - 1, .pid = (x >> 28) & 1 ? 100 : 0,
			.recovered = ((x >> 30) & 3) == 0, .ts = x >> 40,
		};

		if (((x >> 33) & 7) == 0 && !r.recovered)
			r.gfn = 0x900000 + r.offset;	/* a source that knows the GFN */
		add_rec(&sa, &sb, &r);
		if (((x >> 36) & 3) == 0)	/* and its twin from the dedup map */
			add_rec(&sa, &sb, &(struct dt_page_rec){ .kvm = r.kvm, .as_id = r.as_id,
				.slot = r.slot, .offset = r.offset, .gfn = DT_GFN_NONE, .vcpu = -1,
				.recovered = true });
	}
	ck_assert_int_eq(dt_epoch_build(&sa, &vms, ea, &ua), 0);
	ck_assert_int_eq(dt_epoch_build_general(&sb, &vms, eb, &ub), 0);
	ck_assert_uint_eq(ua, ub);
	ck_assert_uint_eq(ea->nr_vms, eb->nr_vms);
	for (size_t v = 0; v < ea->nr_vms; v++) {
		const struct dt_epoch_vm *a = &ea->vms[v], *b = &eb->vms[v];

		ck_assert_uint_eq(a->kvm, b->kvm);
		ck_assert_int_eq(a->pid, b->pid);
		ck_assert_uint_eq(a->nr_gfns, b->nr_gfns);
		ck_assert_uint_eq(a->recovered, b->recovered);
		ck_assert_uint_eq(a->unresolved, b->unresolved);
		ck_assert_uint_eq(a->nr_vcpus, b->nr_vcpus);
		ck_assert_uint_eq(a->nr_slots, b->nr_slots);
		for (size_t i = 0; i < a->nr_vcpus; i++)
			ck_assert(a->vcpus[i].id == b->vcpus[i].id &&
				  a->vcpus[i].pages == b->vcpus[i].pages);
		for (size_t i = 0; i < a->nr_slots; i++)
			ck_assert(a->slots[i].id == b->slots[i].id &&
				  a->slots[i].pages == b->slots[i].pages);
		for (size_t i = 0; i < a->nr_gfns; i++) {
			const struct dt_gfn *g = &a->gfns[i], *h = &b->gfns[i];

			ck_assert_msg(g->gfn == h->gfn && g->offset == h->offset &&
				      g->as_id == h->as_id && g->slot == h->slot &&
				      g->vcpu == h->vcpu && g->ts == h->ts &&
				      g->recovered == h->recovered,
				      "vm %zu page %zu: fast %u:%u+%llx gfn %llx vcpu %d, general "
				      "%u:%u+%llx gfn %llx vcpu %d", v, i, g->as_id, g->slot,
				      (unsigned long long)g->offset, (unsigned long long)g->gfn,
				      g->vcpu, h->as_id, h->slot, (unsigned long long)h->offset,
				      (unsigned long long)h->gfn, h->vcpu);
			if (i)
				ck_assert_int_lt(dt_gfn__cmp(g - 1, g), 0);
		}
	}
	dt_epoch__free(ea);
	dt_epoch__free(eb);
	dt_pageset_free(&sa);
	dt_pageset_free(&sb);
}
END_TEST

START_TEST(random_against_reference)
{
	uint64_t seed = 1000 + _i;
	struct dt_pageset s = {};
	unsigned char ref[0x1000] = {};
	size_t want = 0;
	uint64_t unres;
	struct dt_epoch *e;
	int n;

	seed = seed * 2862933555777941757ull + 3037000493ull;
	n = (seed >> 33) % 3000;
	for (int i = 0; i < n; i++) {
		uint64_t off;

		seed = seed * 2862933555777941757ull + 3037000493ull;
		off = (seed >> 33) % 0x1000;
		add(&s, KVM_A, 0, 1, off, (seed >> 20) & 1, 100, (seed >> 10) & 1);
		if (!ref[off]++)
			want++;
	}
	e = build(&s, &unres);
	if (!want) {
		ck_assert_uint_eq(e->nr_vms, 0);
	} else {
		size_t j = 0;

		ck_assert_uint_eq(e->vms[0].nr_gfns, want);
		for (uint64_t off = 0; off < 0x1000; off++)
			if (ref[off])
				ck_assert_uint_eq(e->vms[0].gfns[j++].gfn, 0x1000 + off);
	}
	dt_epoch__free(e);
	dt_pageset_free(&s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("gfnset");
	TCase *core = tcase_create("core"), *limits = tcase_create("limits");

	tcase_add_test(core, dedup_and_first_record_wins);
	tcase_add_test(core, resolve_sort_and_split_vms);
	tcase_add_test(core, empty_epoch);
	tcase_add_test(core, dedup_word_bits);
	tcase_add_test(core, sublists_from_threads);
	tcase_add_loop_test(core, random_against_reference, 0, 50);
	tcase_add_loop_test(core, fast_path_equals_general, 0, 60);
	tcase_add_test(limits, memory_follows_dirty_set);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return dt_test_main(s, "gfnset");
}

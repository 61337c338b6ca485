// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Pure core: an epoch's pages, as records and recovered dedup bits arrive, into dense sorted
 * per-VM GFN lists. Memory is proportional to the pages seen, never to guest size.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

int dt_pageset_add(struct dt_pageset *s, const struct dt_page_rec *r)
{
	if (dt_grow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v)))
		return -ENOMEM;
	s->v[s->n] = *r;
	s->v[s->n].seq = s->seq++;
	s->n++;
	return 0;
}

int dt_pageset_add_word(struct dt_pageset *s, uint64_t kvm, uint32_t slot_key, uint32_t word,
			uint64_t bits)
{
	struct dt_page_rec r = {
		.kvm = kvm, .gfn = DT_GFN_NONE, .vcpu = -1, .recovered = true,
		.as_id = slot_key >> 16, .slot = slot_key & 0xffff,
	};
	int n = 0;

	while (bits) {
		int bit = __builtin_ctzll(bits);

		bits &= bits - 1;
		r.offset = ((uint64_t)word << 6) | bit;
		if (dt_pageset_add(s, &r))
			return -ENOMEM;
		n++;
	}
	return n;
}

void dt_pageset_clear(struct dt_pageset *s)
{
	s->n = 0;
	s->seq = 0;
}

void dt_pageset_free(struct dt_pageset *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

#define CMP(a, b) do { if ((a) != (b)) return (a) < (b) ? -1 : 1; } while (0)

/* Same page together; a real record before a recovered bit; the earliest record first. */
static int cmp_page(const void *pa, const void *pb)
{
	const struct dt_page_rec *a = pa, *b = pb;

	CMP(a->kvm, b->kvm);
	CMP(a->as_id, b->as_id);
	CMP(a->slot, b->slot);
	CMP(a->offset, b->offset);
	CMP(a->recovered, b->recovered);
	CMP(a->seq, b->seq);
	return 0;
}

int dt_gfn__cmp(const struct dt_gfn *a, const struct dt_gfn *b)
{
	CMP(a->as_id, b->as_id);
	CMP(a->gfn, b->gfn);
	CMP(a->slot, b->slot);
	CMP(a->offset, b->offset);
	return 0;
}

static int cmp_gfn(const void *a, const void *b)
{
	return dt_gfn__cmp(a, b);
}

static int cmp_count(const void *pa, const void *pb)
{
	const struct dt_count *a = pa, *b = pb;

	CMP(a->id, b->id);
	return 0;
}

/* Adds one page to the count of id in a small sorted-at-the-end table. */
static int count_add(struct dt_count **v, size_t *n, size_t *cap, int32_t id)
{
	for (size_t i = 0; i < *n; i++) {
		if ((*v)[i].id == id) {
			(*v)[i].pages++;
			return 0;
		}
	}
	if (dt_grow((void **)v, cap, *n + 1, sizeof(**v)))
		return -ENOMEM;
	(*v)[*n].id = id;
	(*v)[*n].pages = 1;
	(*n)++;
	return 0;
}

static void epoch_vm_free(struct dt_epoch_vm *vm)
{
	free(vm->gfns);
	free(vm->vcpus);
	free(vm->slots);
}

/*
 * Builds one VM's lists from its unique pages: v[idx[0..n)] when idx is given, else v[0..n),
 * all of one kvm. If they come in list order (the fast path sorts them so) the list is only
 * checked, else it is sorted.
 */
static int build_vm(const struct dt_page_rec *v, const uint32_t *idx, size_t n,
		    const struct dt_vm_list *vms, struct dt_epoch_vm *out, uint64_t *unresolved)
{
	const struct dt_page_rec *u0 = &v[idx ? idx[0] : 0];
	const struct dt_vm *vm = vms ? dt_vm_list__find_kvm(vms, u0->kvm) : NULL;
	const struct dt_slot *s = NULL;
	size_t vcap = 0, scap = 0;
	bool sorted = true;

	memset(out, 0, sizeof(*out));
	out->kvm = u0->kvm;
	out->pid = vm ? vm->pid : 0;
	out->gfns = calloc(n, sizeof(*out->gfns));
	if (!out->gfns)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct dt_page_rec *u = &v[idx ? idx[i] : i];
		struct dt_gfn *g = &out->gfns[i];

		if (!out->pid && u->pid)
			out->pid = u->pid;
		g->as_id = u->as_id;
		g->slot = u->slot;
		g->offset = u->offset;
		g->vcpu = u->vcpu;
		g->ts = u->ts;
		g->recovered = u->recovered;
		g->gfn = u->gfn;
		if (g->gfn == DT_GFN_NONE) {
			/* a slot's pages come together: one lookup per slot */
			if (!s || s->as_id != g->as_id || s->id != g->slot)
				s = vm ? dt_vm__slot(vm, g->as_id, g->slot) : NULL;
			if (s && g->offset < s->npages)
				g->gfn = s->base_gfn + g->offset;
			else
				out->unresolved++;
		}
		if (i && sorted && dt_gfn__cmp(g - 1, g) >= 0)
			sorted = false;
		out->recovered += g->recovered;
		if (count_add(&out->vcpus, &out->nr_vcpus, &vcap, g->vcpu) ||
		    count_add(&out->slots, &out->nr_slots, &scap,
			      ((int32_t)g->as_id << 16) | g->slot)) {
			epoch_vm_free(out);
			return -ENOMEM;
		}
	}
	out->nr_gfns = n;
	if (!sorted)
		dt_sort(out->gfns, n, sizeof(*out->gfns), cmp_gfn);
	dt_sort(out->vcpus, out->nr_vcpus, sizeof(*out->vcpus), cmp_count);
	dt_sort(out->slots, out->nr_slots, sizeof(*out->slots), cmp_count);
	*unresolved += out->unresolved;
	return 0;
}

static int cmp_epoch_vm(const void *pa, const void *pb)
{
	const struct dt_epoch_vm *a = pa, *b = pb;

	CMP(a->pid, b->pid);
	CMP(a->kvm, b->kvm);
	return 0;
}

/*
 * The fast path. Each page gets one 64-bit key in the final list order: the VM's ordinal in
 * this epoch, as_id, the slot's rank in the VM's (as_id, base_gfn) order (unknown slots after
 * the known ones, by id), offset. Memslots do not overlap, so within a VM that is GFN order.
 * A stable radix sort of (key, arrival index) then puts each page's first record before its
 * later ones and its recovered twin, with no comparison callbacks and no 56-byte moves.
 */
#define KEY_ORD_BITS	12
#define KEY_AS_BITS	2
#define KEY_RANK_BITS	16
#define KEY_OFF_BITS	34
#define RANK_UNKNOWN	0x8000u

struct sort_item {
	uint64_t key;
	uint32_t idx;
	uint32_t pad;
};

struct vm_ord {
	uint64_t kvm;
	const struct dt_vm *vm;
	size_t last_slot;	/* cache: pages of one slot come in runs */
};

/* Stable LSD radix sort by key, a byte at a time; returns whichever buffer holds the result. */
static struct sort_item *radix_sort(struct sort_item *a, struct sort_item *tmp, size_t n)
{
	static __thread size_t count[8][256];

	memset(count, 0, sizeof(count));
	for (size_t i = 0; i < n; i++)
		for (int d = 0; d < 8; d++)
			count[d][(a[i].key >> (8 * d)) & 0xff]++;
	for (int d = 0; d < 8 && n; d++) {
		size_t sum = 0, *c = count[d];
		struct sort_item *t;

		if (c[(a[0].key >> (8 * d)) & 0xff] == n)
			continue;	/* every key has the same byte here */
		for (int b = 0; b < 256; b++) {
			size_t k = c[b];

			c[b] = sum;
			sum += k;
		}
		for (size_t i = 0; i < n; i++)
			tmp[c[(a[i].key >> (8 * d)) & 0xff]++] = a[i];
		t = a;
		a = tmp;
		tmp = t;
	}
	return a;
}

/*
 * The slot's rank in the VM's slot table (sorted by as_id, base_gfn), or RANK_UNKNOWN | id for a
 * slot discovery does not know; UINT32_MAX when neither can be told apart from another slot
 * (the key must name one page only).
 */
static uint32_t slot_rank(struct vm_ord *o, uint16_t as_id, uint16_t id)
{
	const struct dt_vm *vm = o->vm;

	if (id >= RANK_UNKNOWN || (vm && vm->nr_slots >= RANK_UNKNOWN))
		return UINT32_MAX;
	if (!vm)
		return RANK_UNKNOWN | id;
	if (o->last_slot < vm->nr_slots && vm->slots[o->last_slot].as_id == as_id &&
	    vm->slots[o->last_slot].id == id)
		return o->last_slot;
	for (size_t i = 0; i < vm->nr_slots; i++)
		if (vm->slots[i].as_id == as_id && vm->slots[i].id == id) {
			o->last_slot = i;
			return i;
		}
	return RANK_UNKNOWN | id;
}

/* 0 done, 1: the keys cannot hold this epoch (the caller takes the general path), -ENOMEM. */
static int build_fast(struct dt_pageset *set, const struct dt_vm_list *vms, struct dt_epoch *e,
		      uint64_t *unresolved)
{
	struct dt_page_rec *v = set->v;
	struct sort_item *items, *tmp, *it;
	struct vm_ord *ords = NULL;
	size_t nord = 0, cord = 0, last = 0, n = 0, cap = 0, at = 0;
	uint32_t *uniq;
	int err = -ENOMEM;

	items = malloc(set->n * sizeof(*items));
	tmp = malloc(set->n * sizeof(*tmp));
	uniq = malloc(set->n * sizeof(*uniq));
	if (!items || !tmp || !uniq)
		goto out;
	/*
	 * Items go in arrival order, records before recovered dedup bits (as the general path
	 * ranks them), so the stable sort keeps, for each page, its first real record first.
	 */
	for (size_t i = 0; i < set->n; i++)
		if (!v[i].recovered)
			items[at++].idx = i;
	for (size_t i = 0; i < set->n; i++)
		if (v[i].recovered)
			items[at++].idx = i;
	for (size_t i = 0; i < set->n; i++) {
		const struct dt_page_rec *r = &v[items[i].idx];
		uint32_t rank;

		if (!nord || ords[last].kvm != r->kvm) {
			for (last = 0; last < nord && ords[last].kvm != r->kvm; last++)
				;
			if (last == nord) {
				if (nord == 1u << KEY_ORD_BITS) {
					err = 1;
					goto out;
				}
				if (dt_grow((void **)&ords, &cord, nord + 1, sizeof(*ords)))
					goto out;
				ords[nord++] = (struct vm_ord){
					.kvm = r->kvm,
					.vm = vms ? dt_vm_list__find_kvm(vms, r->kvm) : NULL,
				};
			}
		}
		rank = slot_rank(&ords[last], r->as_id, r->slot);
		if (r->as_id >= 1u << KEY_AS_BITS || r->offset >> KEY_OFF_BITS || rank == UINT32_MAX) {
			err = 1;
			goto out;
		}
		items[i].key = (uint64_t)last << (64 - KEY_ORD_BITS) |
			       (uint64_t)r->as_id << (KEY_RANK_BITS + KEY_OFF_BITS) |
			       (uint64_t)rank << KEY_OFF_BITS | r->offset;
	}
	it = radix_sort(items, tmp, set->n);
	/* unique: the first of each key's run is the earliest record; a twin adds the pid */
	for (size_t i = 0; i < set->n; i++) {
		if (n && it[i].key == it[i - 1].key) {
			struct dt_page_rec *first = &v[uniq[n - 1]];

			if (!first->pid)
				first->pid = v[it[i].idx].pid;
			continue;
		}
		uniq[n++] = it[i].idx;
	}
	err = 0;
	for (size_t start = 0; start < n && !err; ) {
		uint64_t ord = v[uniq[start]].kvm;
		size_t end = start;

		while (end < n && v[uniq[end]].kvm == ord)
			end++;
		err = dt_grow((void **)&e->vms, &cap, e->nr_vms + 1, sizeof(*e->vms));
		if (!err)
			err = build_vm(v, uniq + start, end - start, vms, &e->vms[e->nr_vms],
				       unresolved);
		if (!err)
			e->nr_vms++;
		start = end;
	}
out:
	free(items);
	free(tmp);
	free(uniq);
	free(ords);
	return err;
}

/* The general path: sorts the records themselves; any as_id, slot id or offset. */
static int build_general(struct dt_pageset *set, const struct dt_vm_list *vms, struct dt_epoch *e,
			 uint64_t *unresolved)
{
	struct dt_page_rec *v = set->v;
	size_t n = 0, cap = 0, start;
	int err = 0;

	dt_sort(v, set->n, sizeof(*v), cmp_page);
	/* unique in place: keep the first of each (kvm, as_id, slot, offset) run */
	for (size_t i = 0; i < set->n; i++) {
		if (n && v[n - 1].kvm == v[i].kvm && v[n - 1].as_id == v[i].as_id &&
		    v[n - 1].slot == v[i].slot && v[n - 1].offset == v[i].offset) {
			/* a recovered twin adds what the record lacked */
			if (!v[n - 1].pid)
				v[n - 1].pid = v[i].pid;
			continue;
		}
		v[n++] = v[i];
	}
	for (start = 0; start < n && !err; ) {
		size_t end = start;

		while (end < n && v[end].kvm == v[start].kvm)
			end++;
		err = dt_grow((void **)&e->vms, &cap, e->nr_vms + 1, sizeof(*e->vms));
		if (!err)
			err = build_vm(v + start, NULL, end - start, vms, &e->vms[e->nr_vms],
				       unresolved);
		if (!err)
			e->nr_vms++;
		start = end;
	}
	return err;
}

static int epoch_build(struct dt_pageset *set, const struct dt_vm_list *vms, struct dt_epoch *e,
		       uint64_t *unresolved, bool general)
{
	int err = 0;

	e->nr_vms = 0;
	e->vms = NULL;
	*unresolved = 0;
	if (set->n && !general)
		err = build_fast(set, vms, e, unresolved);
	if (set->n && (general || err == 1))
		err = build_general(set, vms, e, unresolved);
	dt_pageset_clear(set);
	if (err) {
		for (size_t i = 0; i < e->nr_vms; i++)
			epoch_vm_free(&e->vms[i]);
		free(e->vms);
		e->vms = NULL;
		e->nr_vms = 0;
		return err;
	}
	dt_sort(e->vms, e->nr_vms, sizeof(*e->vms), cmp_epoch_vm);
	return 0;
}

int dt_epoch_build(struct dt_pageset *set, const struct dt_vm_list *vms, struct dt_epoch *e,
		   uint64_t *unresolved)
{
	return epoch_build(set, vms, e, unresolved, false);
}

int dt_epoch_build_general(struct dt_pageset *set, const struct dt_vm_list *vms,
			   struct dt_epoch *e, uint64_t *unresolved)
{
	return epoch_build(set, vms, e, unresolved, true);
}

void dt_epoch__free(struct dt_epoch *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->nr_vms; i++)
		epoch_vm_free(&e->vms[i]);
	free(e->vms);
	free(e);
}

const struct dt_epoch_vm *dt_epoch__vm(const struct dt_epoch *e, pid_t pid)
{
	for (size_t i = 0; e && i < e->nr_vms; i++)
		if (e->vms[i].pid == pid)
			return &e->vms[i];
	return NULL;
}

void dt_fetch__init(struct dt_fetch *f, const struct dt_epoch_vm *vm)
{
	f->vm = vm;
	__atomic_store_n(&f->next, 0, __ATOMIC_RELAXED);
}

size_t dt_fetch__next(struct dt_fetch *f, size_t max, const struct dt_gfn **sub)
{
	size_t n = f->vm ? f->vm->nr_gfns : 0, at;

	*sub = NULL;
	/* a cheap look first, so callers polling an exhausted fetch do not keep adding */
	if (!max || __atomic_load_n(&f->next, __ATOMIC_RELAXED) >= n)
		return 0;
	at = __atomic_fetch_add(&f->next, max, __ATOMIC_RELAXED);
	if (at >= n)
		return 0;
	*sub = f->vm->gfns + at;
	return n - at < max ? n - at : max;
}

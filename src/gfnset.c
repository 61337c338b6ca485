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

/* Builds one VM's lists from the unique pages u[0..n), which share one kvm. */
static int build_vm(const struct dt_page_rec *u, size_t n, const struct dt_vm_list *vms,
		    struct dt_epoch_vm *out, uint64_t *unresolved)
{
	const struct dt_vm *vm = vms ? dt_vm_list__find_kvm(vms, u[0].kvm) : NULL;
	size_t vcap = 0, scap = 0;

	memset(out, 0, sizeof(*out));
	out->kvm = u[0].kvm;
	out->pid = vm ? vm->pid : 0;
	out->gfns = calloc(n, sizeof(*out->gfns));
	if (!out->gfns)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct dt_gfn *g = &out->gfns[i];

		if (!out->pid && u[i].pid)
			out->pid = u[i].pid;
		g->as_id = u[i].as_id;
		g->slot = u[i].slot;
		g->offset = u[i].offset;
		g->vcpu = u[i].vcpu;
		g->ts = u[i].ts;
		g->recovered = u[i].recovered;
		g->gfn = u[i].gfn;
		if (g->gfn == DT_GFN_NONE) {
			const struct dt_slot *s = vm ? dt_vm__slot(vm, g->as_id, g->slot) : NULL;

			if (s && g->offset < s->npages)
				g->gfn = s->base_gfn + g->offset;
			else
				out->unresolved++;
		}
		out->recovered += g->recovered;
		if (count_add(&out->vcpus, &out->nr_vcpus, &vcap, g->vcpu) ||
		    count_add(&out->slots, &out->nr_slots, &scap,
			      ((int32_t)g->as_id << 16) | g->slot)) {
			epoch_vm_free(out);
			return -ENOMEM;
		}
	}
	out->nr_gfns = n;
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

int dt_epoch_build(struct dt_pageset *set, const struct dt_vm_list *vms, struct dt_epoch *e,
		   uint64_t *unresolved)
{
	struct dt_page_rec *v = set->v;
	size_t n = 0, cap = 0, start;
	int err = 0;

	e->nr_vms = 0;
	e->vms = NULL;
	*unresolved = 0;
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
			err = build_vm(v + start, end - start, vms, &e->vms[e->nr_vms], unresolved);
		if (!err)
			e->nr_vms++;
		start = end;
	}
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

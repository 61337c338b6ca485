// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Pure core of the live monitor: per interval, turns an epoch, the per-vCPU views (totals since
 * the tracer opened) and VM discovery into rates per VM, vCPU and memslot. Rates are deltas over
 * the epoch's own measured length, never over a nominal interval.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define NS 1000000000ull

struct vcpu_prev {
	int32_t id;
	uint64_t raw, resets, full_exits;
};

struct vm_state {
	uint64_t kvm;
	struct dt_wss *wss;
	uint64_t drops;
	struct vcpu_prev *prev;
	size_t nr_prev, cap_prev;
	bool seen;
};

struct dt_top {
	struct vm_state *st;
	size_t n, cap;
	struct dt_top_frame frame;
};

struct dt_top *dt_top__new(void)
{
	return calloc(1, sizeof(struct dt_top));
}

static void free_frame(struct dt_top_frame *f)
{
	for (size_t i = 0; i < f->nr_vms; i++) {
		free(f->vms[i].vcpus);
		free(f->vms[i].slots);
	}
	free(f->vms);
	f->vms = NULL;
	f->nr_vms = 0;
}

static void free_state(struct vm_state *s)
{
	dt_wss__free(s->wss);
	free(s->prev);
}

void dt_top__free(struct dt_top *top)
{
	if (!top)
		return;
	free_frame(&top->frame);
	for (size_t i = 0; i < top->n; i++)
		free_state(&top->st[i]);
	free(top->st);
	free(top);
}

static struct vm_state *state_of(struct dt_top *top, uint64_t kvm)
{
	struct vm_state *s;

	for (size_t i = 0; i < top->n; i++)
		if (top->st[i].kvm == kvm)
			return &top->st[i];
	if (dt_grow((void **)&top->st, &top->cap, top->n + 1, sizeof(*top->st)))
		return NULL;
	s = &top->st[top->n];
	memset(s, 0, sizeof(*s));
	s->kvm = kvm;
	s->wss = dt_wss__new(60 * NS);
	if (!s->wss)
		return NULL;
	top->n++;
	return s;
}

static struct vcpu_prev *prev_of(struct vm_state *s, int32_t id)
{
	for (size_t i = 0; i < s->nr_prev; i++)
		if (s->prev[i].id == id)
			return &s->prev[i];
	if (dt_grow((void **)&s->prev, &s->cap_prev, s->nr_prev + 1, sizeof(*s->prev)))
		return NULL;
	s->prev[s->nr_prev] = (struct vcpu_prev){ .id = id };
	return &s->prev[s->nr_prev++];
}

/* The row for vCPU id, added in id order when missing. */
static struct dt_top_vcpu *vcpu_row(struct dt_top_vm *vm, size_t *cap, int32_t id)
{
	size_t i;

	for (i = 0; i < vm->nr_vcpus_rows && vm->vcpus[i].id <= id; i++)
		if (vm->vcpus[i].id == id)
			return &vm->vcpus[i];
	if (dt_grow((void **)&vm->vcpus, cap, vm->nr_vcpus_rows + 1, sizeof(*vm->vcpus)))
		return NULL;
	memmove(&vm->vcpus[i + 1], &vm->vcpus[i], (vm->nr_vcpus_rows - i) * sizeof(*vm->vcpus));
	memset(&vm->vcpus[i], 0, sizeof(*vm->vcpus));
	vm->vcpus[i].id = id;
	vm->nr_vcpus_rows++;
	return &vm->vcpus[i];
}

static const struct dt_epoch_vm *epoch_vm(const struct dt_epoch *e, uint64_t kvm)
{
	for (size_t i = 0; i < e->nr_vms; i++)
		if (e->vms[i].kvm == kvm)
			return &e->vms[i];
	return NULL;
}

static int fill_vm(struct vm_state *s, const struct dt_vm *d, const struct dt_epoch *e,
		   const struct dt_ring_view *views, size_t nr_views, double secs,
		   struct dt_top_vm *row)
{
	const struct dt_epoch_vm *ev = epoch_vm(e, d->kvm);
	size_t vcap = 0;
	int err;

	row->pid = d->pid;
	row->kvm = d->kvm;
	memcpy(row->name, d->comm, sizeof(d->comm));
	row->nr_vcpus = d->nr_vcpus;
	row->ring_entries = d->ring_entries;
	row->tracking = d->nr_slots_logging > 0;
	for (size_t i = 0; i < d->nr_slots; i++)
		row->tracking |= !!(d->slots[i].flags & DT_SLOT_LOG_DIRTY);

	if (ev) {
		err = dt_wss__add(s->wss, e->end_ns, ev->gfns, ev->nr_gfns);
		if (err)
			return err;
		row->pages_per_s = ev->nr_gfns / secs;
		s->drops += ev->recovered;
	}
	row->bytes_per_s = row->pages_per_s * 4096;
	row->wss_1s = dt_wss__pages(s->wss, 1 * NS);
	row->wss_10s = dt_wss__pages(s->wss, 10 * NS);
	row->wss_60s = dt_wss__pages(s->wss, 60 * NS);
	row->total_pages = dt_wss__total(s->wss);
	row->drops = s->drops;

	/* a row for every vCPU discovery knows, and for any that dirtied or has a ring view */
	for (size_t i = 0; i < d->nr_threads; i++)
		if (!vcpu_row(row, &vcap, d->threads[i].id))
			return -ENOMEM;
	for (size_t i = 0; ev && i < ev->nr_vcpus; i++) {
		struct dt_top_vcpu *v = vcpu_row(row, &vcap, ev->vcpus[i].id);

		if (!v)
			return -ENOMEM;
		v->pages_per_s = ev->vcpus[i].pages / secs;
	}
	for (size_t i = 0; i < nr_views; i++) {
		const struct dt_ring_view *w = &views[i];
		struct dt_top_vcpu *v;
		struct vcpu_prev *p;

		if (w->kvm != d->kvm)
			continue;
		v = vcpu_row(row, &vcap, w->vcpu);
		p = prev_of(s, w->vcpu);
		if (!v || !p)
			return -ENOMEM;
		/* totals only grow; a smaller one means a new tracer: start over */
		v->raw_per_s = (w->raw >= p->raw ? w->raw - p->raw : w->raw) / secs;
		v->ring_resets_per_s = (w->resets >= p->resets ? w->resets - p->resets : 0) / secs;
		v->ring_full_exits_per_s =
			(w->full_exits >= p->full_exits ? w->full_exits - p->full_exits : 0) / secs;
		v->ring_size = w->ring_size;
		v->ring_used = w->used;
		v->ring_max_used = w->max_used;
		v->ring_full_exits = w->full_exits;
		v->ring_overflows = w->overflows;
		p->raw = w->raw;
		p->resets = w->resets;
		p->full_exits = w->full_exits;
		row->raw_per_s += v->raw_per_s;
	}

	row->slots = calloc(d->nr_slots ? d->nr_slots : 1, sizeof(*row->slots));
	if (!row->slots)
		return -ENOMEM;
	row->nr_slots = d->nr_slots;
	for (size_t i = 0; i < d->nr_slots; i++) {
		struct dt_top_slot *sl = &row->slots[i];
		int32_t key = ((int32_t)d->slots[i].as_id << 16) | d->slots[i].id;

		sl->as_id = d->slots[i].as_id;
		sl->id = d->slots[i].id;
		sl->logging = d->slots[i].flags & DT_SLOT_LOG_DIRTY;
		sl->base_gfn = d->slots[i].base_gfn;
		sl->pages = d->slots[i].npages;
		for (size_t j = 0; ev && j < ev->nr_slots; j++) {
			if (ev->slots[j].id != key)
				continue;
			sl->pages_per_s = ev->slots[j].pages / secs;
			sl->share = ev->nr_gfns ? (double)ev->slots[j].pages / ev->nr_gfns : 0;
		}
	}
	return 0;
}

int dt_top__update(struct dt_top *top, const struct dt_epoch *e,
		   const struct dt_ring_view *views, size_t nr_views,
		   const struct dt_vm_list *vms, const struct dt_top_frame **frame)
{
	struct dt_top_frame *f = &top->frame;
	double secs = e->end_ns > e->start_ns ? (e->end_ns - e->start_ns) / 1e9 : 0;
	size_t n = 0;
	int err = 0;

	*frame = NULL;
	if (secs < 1e-6)
		secs = 1e-6;	/* a zero-length epoch has no rate worth dividing by zero for */
	free_frame(f);
	f->now_ns = e->end_ns;
	f->interval_s = secs;
	for (size_t i = 0; i < top->n; i++)
		top->st[i].seen = false;
	f->vms = calloc(vms && vms->n ? vms->n : 1, sizeof(*f->vms));
	if (!f->vms)
		return -ENOMEM;
	for (size_t i = 0; vms && i < vms->n && !err; i++) {
		struct vm_state *s = state_of(top, vms->vms[i].kvm);

		if (!s) {
			err = -ENOMEM;
			break;
		}
		s->seen = true;
		f->nr_vms = ++n;	/* counted before filling, so a failure frees it */
		err = fill_vm(s, &vms->vms[i], e, views, nr_views, secs, &f->vms[n - 1]);
	}
	/* VMs that exited: forget them */
	for (size_t i = 0; i < top->n; ) {
		if (top->st[i].seen) {
			i++;
			continue;
		}
		free_state(&top->st[i]);
		top->st[i] = top->st[--top->n];
	}
	if (err) {
		free_frame(f);
		return err;
	}
	*frame = f;
	return 0;
}

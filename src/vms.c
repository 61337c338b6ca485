// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Pure core: the discovery iterator's records into a VM list, and lookups on it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "capture.h"

void dt_vm_list__free(struct dt_vm_list *list)
{
	if (!list)
		return;
	for (size_t i = 0; i < list->n; i++) {
		free(list->vms[i].slots);
		free(list->vms[i].threads);
	}
	free(list->vms);
	free(list);
}

const struct dt_vm *dt_vm_list__find(const struct dt_vm_list *list, pid_t pid)
{
	for (size_t i = 0; list && i < list->n; i++)
		if (list->vms[i].pid == pid)
			return &list->vms[i];
	return NULL;
}

const struct dt_vm *dt_vm_list__find_kvm(const struct dt_vm_list *list, uint64_t kvm)
{
	for (size_t i = 0; list && i < list->n; i++)
		if (list->vms[i].kvm == kvm)
			return &list->vms[i];
	return NULL;
}

const struct dt_slot *dt_vm__slot(const struct dt_vm *vm, uint16_t as_id, uint16_t id)
{
	for (size_t i = 0; i < vm->nr_slots; i++)
		if (vm->slots[i].as_id == as_id && vm->slots[i].id == id)
			return &vm->slots[i];
	return NULL;
}

#define CMP(a, b) do { if ((a) != (b)) return (a) < (b) ? -1 : 1; } while (0)

static int cmp_vm(const void *pa, const void *pb)
{
	const struct dt_vm *a = pa, *b = pb;

	CMP(a->pid, b->pid);
	CMP(a->kvm, b->kvm);
	return 0;
}

static int cmp_slot(const void *pa, const void *pb)
{
	const struct dt_slot *a = pa, *b = pb;

	CMP(a->as_id, b->as_id);
	CMP(a->base_gfn, b->base_gfn);
	return 0;
}

static int cmp_thread(const void *pa, const void *pb)
{
	const struct dt_vcpu_thread *a = pa, *b = pb;

	CMP(a->id, b->id);
	return 0;
}

struct parse_state {
	struct dt_vm_list *list;
	size_t vm_cap;
	size_t *slot_cap;	/* per VM */
	size_t *thr_cap;
};

static struct dt_vm *vm_of(struct parse_state *ps, uint64_t kvm, size_t *idx)
{
	for (size_t i = 0; i < ps->list->n; i++) {
		if (ps->list->vms[i].kvm == kvm) {
			*idx = i;
			return &ps->list->vms[i];
		}
	}
	return NULL;
}

static int add_vm(struct parse_state *ps, const struct dt_rec_vm *r)
{
	struct dt_vm *vm;
	size_t i, old_cap = ps->vm_cap;

	vm = vm_of(ps, r->kvm, &i);
	if (vm) {
		/* the iterator repeats the VM record to flag a truncated slot walk */
		vm->slots_truncated |= !!(r->flags & DT_VM_SLOTS_TRUNCATED);
		return 0;
	}
	if (dt_grow((void **)&ps->list->vms, &ps->vm_cap, ps->list->n + 1, sizeof(*vm)))
		return -ENOMEM;
	if (ps->vm_cap != old_cap) {
		size_t *sc = realloc(ps->slot_cap, ps->vm_cap * sizeof(size_t));
		size_t *tc;

		if (!sc)
			return -ENOMEM;
		ps->slot_cap = sc;
		tc = realloc(ps->thr_cap, ps->vm_cap * sizeof(size_t));
		if (!tc)
			return -ENOMEM;
		ps->thr_cap = tc;
	}
	i = ps->list->n++;
	vm = &ps->list->vms[i];
	memset(vm, 0, sizeof(*vm));
	ps->slot_cap[i] = ps->thr_cap[i] = 0;
	vm->pid = r->tgid;
	memcpy(vm->comm, r->comm, sizeof(vm->comm));
	vm->comm[sizeof(vm->comm) - 1] = 0;
	vm->kvm = r->kvm;
	vm->fd = r->fd;
	vm->nr_vcpus = r->online_vcpus;
	/* KVM keeps the ring size in bytes; a struct kvm_dirty_gfn is 16 */
	vm->ring_entries = r->dirty_ring_size / 16;
	vm->nr_slots_logging = r->nr_slots_dirty_logging;
	vm->slots_known = !(r->flags & DT_VM_NO_SLOTS);
	vm->slots_truncated = !!(r->flags & DT_VM_SLOTS_TRUNCATED);
	return 0;
}

static int add_slot(struct parse_state *ps, const struct dt_rec_slot *r)
{
	size_t i;
	struct dt_vm *vm = vm_of(ps, r->kvm, &i);
	struct dt_slot *s;

	if (!vm)
		return -EBADMSG;	/* a slot before its VM */
	if (dt_grow((void **)&vm->slots, &ps->slot_cap[i], vm->nr_slots + 1, sizeof(*s)))
		return -ENOMEM;
	s = &vm->slots[vm->nr_slots++];
	s->as_id = r->as_id;
	s->id = r->id;
	s->flags = r->flags;
	s->base_gfn = r->base_gfn;
	s->npages = r->npages;
	s->userspace_addr = r->userspace_addr;
	return 0;
}

static int add_vcpu(struct parse_state *ps, const struct dt_rec_vcpu *r)
{
	size_t i;
	struct dt_vm *vm = vm_of(ps, r->kvm, &i);
	struct dt_vcpu_thread *t;

	if (!vm)
		return 0;	/* vCPU fds may come before the VM fd; the caller orders records */
	if (dt_grow((void **)&vm->threads, &ps->thr_cap[i], vm->nr_threads + 1, sizeof(*t)))
		return -ENOMEM;
	t = &vm->threads[vm->nr_threads++];
	t->id = r->vcpu_id;
	t->tid = r->tid;
	return 0;
}

static size_t rec_size(uint32_t type)
{
	switch (type) {
	case DT_REC_VM:
		return sizeof(struct dt_rec_vm);
	case DT_REC_SLOT:
		return sizeof(struct dt_rec_slot);
	case DT_REC_VCPU:
		return sizeof(struct dt_rec_vcpu);
	}
	return 0;
}

/* Two passes: VMs first, so vCPU and slot records can come in any order after them. */
static int parse_pass(struct parse_state *ps, const unsigned char *p, size_t len, bool vms)
{
	size_t off = 0;
	int err = 0;

	while (off < len && !err) {
		uint32_t type;
		size_t sz;

		if (len - off < sizeof(type))
			return -EBADMSG;
		memcpy(&type, p + off, sizeof(type));
		sz = rec_size(type);
		if (!sz || len - off < sz)
			return -EBADMSG;
		if (vms && type == DT_REC_VM) {
			struct dt_rec_vm r;

			memcpy(&r, p + off, sz);
			err = add_vm(ps, &r);
		} else if (!vms && type == DT_REC_SLOT) {
			struct dt_rec_slot r;

			memcpy(&r, p + off, sz);
			err = add_slot(ps, &r);
		} else if (!vms && type == DT_REC_VCPU) {
			struct dt_rec_vcpu r;

			memcpy(&r, p + off, sz);
			err = add_vcpu(ps, &r);
		}
		off += sz;
	}
	return err;
}

int dt_vms__parse(const void *buf, size_t len, struct dt_vm_list **out)
{
	struct parse_state ps = {};
	int err;

	*out = NULL;
	ps.list = calloc(1, sizeof(*ps.list));
	if (!ps.list)
		return -ENOMEM;
	err = parse_pass(&ps, buf, len, true);
	if (!err)
		err = parse_pass(&ps, buf, len, false);
	free(ps.slot_cap);
	free(ps.thr_cap);
	if (err) {
		dt_vm_list__free(ps.list);
		return err;
	}
	for (size_t i = 0; i < ps.list->n; i++) {
		struct dt_vm *vm = &ps.list->vms[i];

		dt_sort(vm->slots, vm->nr_slots, sizeof(*vm->slots), cmp_slot);
		dt_sort(vm->threads, vm->nr_threads, sizeof(*vm->threads), cmp_thread);
	}
	dt_sort(ps.list->vms, ps.list->n, sizeof(*ps.list->vms), cmp_vm);
	*out = ps.list;
	return 0;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Pure core of dirtytop: epochs, vCPU views and discovery into per-VM/vCPU/slot rates. Tag: unit. */
#include <stdlib.h>
#include <string.h>
#include <dirtytrace/dirtytrace.h>
#include "testlib.h"

#define S 1000000000ull
#define KVM 0xffff888100000000ull

static struct dt_slot slots[] = {
	{ .as_id = 0, .id = 0, .base_gfn = 0, .npages = 256 },
	{ .as_id = 0, .id = 1, .base_gfn = 0x1000, .npages = 4096, .flags = DT_SLOT_LOG_DIRTY },
};
static struct dt_vcpu_thread threads[] = { { 0, 11 }, { 1, 12 } };
static struct dt_vm vm = {
	.pid = 42, .comm = "qemu", .kvm = KVM, .nr_vcpus = 2, .ring_entries = 4096,
	.nr_slots_logging = 1, .slots_known = true, .nr_slots = 2, .slots = slots,
	.nr_threads = 2, .threads = threads,
};
static struct dt_vm_list vms = { .n = 1, .vms = &vm };

/* An epoch of `pages` pages in slot 1, the first `by0` by vCPU 0, the rest by vCPU 1. */
static struct dt_epoch *epoch(uint64_t start, uint64_t end, int pages, int by0, uint64_t first)
{
	struct dt_epoch *e = calloc(1, sizeof(*e));
	struct dt_epoch_vm *v = calloc(1, sizeof(*v));

	e->start_ns = start;
	e->end_ns = end;
	e->nr_vms = 1;
	e->vms = v;
	v->pid = 42;
	v->kvm = KVM;
	v->nr_gfns = pages;
	v->gfns = calloc(pages, sizeof(*v->gfns));
	for (int i = 0; i < pages; i++)
		v->gfns[i] = (struct dt_gfn){ .gfn = 0x1000 + first + i, .offset = first + i,
					      .slot = 1, .vcpu = i < by0 ? 0 : 1 };
	v->nr_vcpus = 2;
	v->vcpus = calloc(2, sizeof(*v->vcpus));
	v->vcpus[0] = (struct dt_count){ 0, by0 };
	v->vcpus[1] = (struct dt_count){ 1, pages - by0 };
	v->nr_slots = 1;
	v->slots = calloc(1, sizeof(*v->slots));
	v->slots[0] = (struct dt_count){ 1, pages };
	v->recovered = 3;
	return e;
}

START_TEST(rates_and_sums)
{
	struct dt_top *top = dt_top__new();
	struct dt_ring_view views[2] = {
		{ .pid = 42, .kvm = KVM, .vcpu = 0, .ring_size = 4096, .used = 10, .raw = 1000,
		  .resets = 4, .full_exits = 1 },
		{ .pid = 42, .kvm = KVM, .vcpu = 1, .ring_size = 4096, .used = 20, .raw = 3000,
		  .resets = 4 },
	};
	const struct dt_top_frame *f;
	const struct dt_top_vm *v;
	struct dt_epoch *e = epoch(0, S / 2, 100, 25, 0);	/* half a second */

	ck_assert_int_eq(dt_top__update(top, e, views, 2, &vms, &f), 0);
	dt_epoch__free(e);
	ck_assert_double_eq_tol(f->interval_s, 0.5, 1e-9);
	ck_assert_uint_eq(f->nr_vms, 1);
	v = &f->vms[0];
	ck_assert_str_eq(v->name, "qemu");
	ck_assert(v->tracking);
	ck_assert_double_eq_tol(v->pages_per_s, 200, 1e-9);
	ck_assert_double_eq_tol(v->bytes_per_s, 200 * 4096, 1e-6);
	ck_assert_double_eq_tol(v->raw_per_s, 8000, 1e-9);	/* (1000 + 3000) / 0.5 s */
	ck_assert_uint_eq(v->nr_vcpus_rows, 2);
	ck_assert_double_eq_tol(v->vcpus[0].pages_per_s + v->vcpus[1].pages_per_s,
				v->pages_per_s, 1e-9);
	ck_assert_double_eq_tol(v->vcpus[0].pages_per_s, 50, 1e-9);
	ck_assert_uint_eq(v->vcpus[1].ring_used, 20);
	ck_assert_uint_eq(v->nr_slots, 2);
	ck_assert_double_eq_tol(v->slots[1].pages_per_s, 200, 1e-9);
	ck_assert_double_eq_tol(v->slots[1].share, 1.0, 1e-9);
	ck_assert_double_eq_tol(v->slots[0].pages_per_s, 0, 1e-9);
	ck_assert_uint_eq(v->drops, 3);
	ck_assert_uint_eq(v->total_pages, 100);

	/* second interval: deltas of the view totals, working sets over both epochs */
	views[0].raw = 1500;
	views[0].resets = 6;
	views[0].full_exits = 3;
	views[1].raw = 3000;
	e = epoch(S / 2, S, 100, 100, 50);	/* pages 50..149, all vCPU 0 */
	ck_assert_int_eq(dt_top__update(top, e, views, 2, &vms, &f), 0);
	dt_epoch__free(e);
	v = &f->vms[0];
	ck_assert_double_eq_tol(v->raw_per_s, 1000, 1e-9);
	ck_assert_double_eq_tol(v->vcpus[0].raw_per_s, 1000, 1e-9);
	ck_assert_double_eq_tol(v->vcpus[1].raw_per_s, 0, 1e-9);
	ck_assert_double_eq_tol(v->vcpus[0].ring_resets_per_s, 4, 1e-9);
	ck_assert_double_eq_tol(v->vcpus[0].ring_full_exits_per_s, 4, 1e-9);
	ck_assert_uint_eq(v->vcpus[0].ring_full_exits, 3);
	ck_assert_uint_eq(v->wss_1s, 150);	/* both half-second epochs */
	ck_assert_uint_eq(v->total_pages, 150);
	ck_assert_uint_eq(v->drops, 6);
	dt_top__free(top);
}
END_TEST

START_TEST(vm_comes_and_goes)
{
	struct dt_top *top = dt_top__new();
	struct dt_vm_list none = { .n = 0 };
	struct dt_epoch empty = { .start_ns = 0, .end_ns = S };
	const struct dt_top_frame *f;
	struct dt_epoch *e;

	ck_assert_int_eq(dt_top__update(top, &empty, NULL, 0, &none, &f), 0);
	ck_assert_uint_eq(f->nr_vms, 0);
	/* a VM appears; with tracking off it says so */
	vm.nr_slots_logging = 0;
	slots[1].flags = 0;
	empty.start_ns = S;
	empty.end_ns = 2 * S;
	ck_assert_int_eq(dt_top__update(top, &empty, NULL, 0, &vms, &f), 0);
	ck_assert_uint_eq(f->nr_vms, 1);
	ck_assert(!f->vms[0].tracking);
	ck_assert_double_eq_tol(f->vms[0].pages_per_s, 0, 1e-9);
	ck_assert_uint_eq(f->vms[0].nr_vcpus_rows, 2);	/* from discovery's threads */
	vm.nr_slots_logging = 1;
	slots[1].flags = DT_SLOT_LOG_DIRTY;
	/* and exits: its row and its history go */
	e = epoch(2 * S, 3 * S, 10, 10, 0);
	ck_assert_int_eq(dt_top__update(top, e, NULL, 0, &none, &f), 0);
	dt_epoch__free(e);
	ck_assert_uint_eq(f->nr_vms, 0);
	/* back again (same kvm address reused): it starts from nothing */
	e = epoch(3 * S, 4 * S, 10, 10, 0);
	ck_assert_int_eq(dt_top__update(top, e, NULL, 0, &vms, &f), 0);
	dt_epoch__free(e);
	ck_assert_uint_eq(f->vms[0].total_pages, 10);
	ck_assert_uint_eq(f->vms[0].drops, 3);
	dt_top__free(top);
}
END_TEST

START_TEST(zero_length_interval)
{
	struct dt_top *top = dt_top__new();
	struct dt_epoch *e = epoch(5 * S, 5 * S, 10, 10, 0);
	const struct dt_top_frame *f;

	ck_assert_int_eq(dt_top__update(top, e, NULL, 0, &vms, &f), 0);
	dt_epoch__free(e);
	ck_assert(f->interval_s > 0);	/* guarded: a finite rate, no division by zero */
	ck_assert(f->vms[0].pages_per_s > 0 && f->vms[0].pages_per_s < 1e8);
	dt_top__free(top);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("top");
	TCase *core = tcase_create("core"), *limits = tcase_create("limits");

	tcase_add_test(core, rates_and_sums);
	tcase_add_test(core, vm_comes_and_goes);
	tcase_add_test(limits, zero_length_interval);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return dt_test_main(s, "top");
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * VM discovery: the record parser with synthetic iterator output (unit), and the task_file
 * iterator against a VM of our own whose layout we know (kvm).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "testlib.h"
#include "capture.h"
#include "vmm.h"

struct buf {
	unsigned char data[4096];
	size_t len;
};

static void put(struct buf *b, const void *rec, size_t sz)
{
	ck_assert_uint_le(b->len + sz, sizeof(b->data));
	memcpy(b->data + b->len, rec, sz);
	b->len += sz;
}

static void put_vm(struct buf *b, __u32 tgid, __u64 kvm, __u32 flags)
{
	struct dt_rec_vm r = { .type = DT_REC_VM, .tgid = tgid, .kvm = kvm, .fd = 11,
			       .online_vcpus = 2, .dirty_ring_size = 4096 * 16, .flags = flags };

	strcpy(r.comm, "qemu-system-x86");
	put(b, &r, sizeof(r));
}

static void put_slot(struct buf *b, __u64 kvm, __u16 as, __u16 id, __u64 base, __u64 npages)
{
	struct dt_rec_slot r = { .type = DT_REC_SLOT, .kvm = kvm, .as_id = as, .id = id,
				 .base_gfn = base, .npages = npages, .flags = 1 };

	put(b, &r, sizeof(r));
}

static void put_vcpu(struct buf *b, __u64 kvm, __s32 id, __u32 tid)
{
	struct dt_rec_vcpu r = { .type = DT_REC_VCPU, .kvm = kvm, .vcpu_id = id, .tid = tid };

	put(b, &r, sizeof(r));
}

START_TEST(parse_vms_slots_vcpus)
{
	struct buf b = {};
	struct dt_vm_list *l;
	const struct dt_vm *vm;

	put_vcpu(&b, 0xa000, 1, 201);	/* a vCPU fd can come before its VM's fd */
	put_vm(&b, 200, 0xa000, 0);
	put_slot(&b, 0xa000, 0, 5, 0x100, 0x7f00);
	put_slot(&b, 0xa000, 0, 0, 0, 0xc0);
	put_vcpu(&b, 0xa000, 0, 202);
	put_vm(&b, 100, 0xb000, DT_VM_NO_SLOTS);
	put_vcpu(&b, 0xdead, 0, 5);	/* a vCPU of a VM we did not see: ignored */
	ck_assert_int_eq(dt_vms__parse(b.data, b.len, &l), 0);
	ck_assert_uint_eq(l->n, 2);
	ck_assert_int_eq(l->vms[0].pid, 100);	/* sorted by pid */
	ck_assert(!l->vms[0].slots_known);
	vm = dt_vm_list__find(l, 200);
	ck_assert_ptr_nonnull(vm);
	ck_assert_str_eq(vm->comm, "qemu-system-x86");
	ck_assert_uint_eq(vm->ring_entries, 4096);
	ck_assert_uint_eq(vm->nr_vcpus, 2);
	ck_assert_uint_eq(vm->nr_slots, 2);
	ck_assert_uint_eq(vm->slots[0].id, 0);	/* sorted by base GFN */
	ck_assert_uint_eq(vm->slots[1].base_gfn, 0x100);
	ck_assert_ptr_eq(dt_vm__slot(vm, 0, 5), &vm->slots[1]);
	ck_assert_ptr_null(dt_vm__slot(vm, 1, 5));
	ck_assert_uint_eq(vm->nr_threads, 2);
	ck_assert_int_eq(vm->threads[0].id, 0);
	ck_assert_int_eq(vm->threads[0].tid, 202);
	ck_assert_int_eq(vm->threads[1].tid, 201);
	ck_assert_ptr_null(dt_vm_list__find(l, 300));
	dt_vm_list__free(l);
}
END_TEST

START_TEST(parse_truncated_flag)
{
	struct buf b = {};
	struct dt_vm_list *l;

	put_vm(&b, 1, 0xa000, 0);
	put_slot(&b, 0xa000, 0, 1, 0, 1);
	put_vm(&b, 1, 0xa000, DT_VM_SLOTS_TRUNCATED);	/* the iterator's "more slots" repeat */
	ck_assert_int_eq(dt_vms__parse(b.data, b.len, &l), 0);
	ck_assert_uint_eq(l->n, 1);
	ck_assert(l->vms[0].slots_truncated);
	ck_assert_uint_eq(l->vms[0].nr_slots, 1);
	dt_vm_list__free(l);
}
END_TEST

START_TEST(parse_empty)
{
	struct dt_vm_list *l;

	ck_assert_int_eq(dt_vms__parse("", 0, &l), 0);
	ck_assert_uint_eq(l->n, 0);
	dt_vm_list__free(l);
}
END_TEST

/* Every way the input can be cut short or wrong is refused, never half-read. */
START_TEST(parse_bad_input)
{
	struct buf b = {};
	struct dt_vm_list *l = (void *)1;
	__u32 junk = 77;

	put_vm(&b, 1, 0xa000, 0);
	put_slot(&b, 0xa000, 0, 1, 0, 1);
	for (size_t cut = 1; cut < b.len; cut++) {
		if (cut == sizeof(struct dt_rec_vm))
			continue;	/* a whole VM record alone is valid */
		ck_assert_int_eq(dt_vms__parse(b.data, cut, &l), -EBADMSG);
		ck_assert_ptr_null(l);
	}
	put(&b, &junk, sizeof(junk));
	ck_assert_int_eq(dt_vms__parse(b.data, b.len, &l), -EBADMSG);

	memset(&b, 0, sizeof(b));
	put_slot(&b, 0xa000, 0, 1, 0, 1);	/* a slot of no VM */
	ck_assert_int_eq(dt_vms__parse(b.data, b.len, &l), -EBADMSG);
}
END_TEST

START_TEST(discover_our_vm)
{
	struct tvm_opts o = { .nr_vcpus = 2, .ring_entries = 512 };
	const uint64_t *lists[2] = { NULL, NULL };
	size_t counts[2] = { 0, 0 };
	struct dt_vm_list *l;
	const struct dt_vm *vm;
	const struct dt_slot *s;
	const char *why = dt_test_need_kvm();
	struct tvm *tv;

	if (why)
		DT_SKIP("%s", why);
	tv = tvm_create(&o);
	ck_assert_msg(tv, "tvm_create: %s", strerror(errno));
	ck_assert_int_eq(tvm_add_slot(tv, 1, 16 << 20, 16 << 20, true), 0);
	ck_assert_int_eq(tvm_add_slot(tv, 7, 1ull << 30, 1ull << 30, false), 0);
	ck_assert_int_eq(tvm_run_epoch(tv, lists, counts, 0), 0);	/* vCPU threads run once */

	ck_assert_int_eq(dt_vms__discover(&l), 0);
	vm = dt_vm_list__find(l, getpid());
	ck_assert_ptr_nonnull(vm);
	ck_assert_uint_eq(vm->ring_entries, 512);
	ck_assert_uint_eq(vm->nr_vcpus, 2);
	ck_assert_int_eq(vm->fd, tvm_vm_fd(tv));
	ck_assert(vm->slots_known);
	ck_assert(!vm->slots_truncated);
	ck_assert_uint_eq(vm->nr_slots, 3);	/* slot 0 is the VMM's code and tables */
	s = dt_vm__slot(vm, 0, 0);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->base_gfn, 0);
	ck_assert_uint_eq(s->npages, TVM_SLOT0_SIZE >> 12);
	s = dt_vm__slot(vm, 0, 1);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->base_gfn, (16 << 20) >> 12);
	ck_assert_uint_eq(s->npages, (16 << 20) >> 12);
	ck_assert_uint_eq(s->flags & DT_SLOT_LOG_DIRTY, DT_SLOT_LOG_DIRTY);
	s = dt_vm__slot(vm, 0, 7);
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->base_gfn, 1ull << 18);
	ck_assert_uint_eq(s->flags & DT_SLOT_LOG_DIRTY, 0);
	ck_assert_uint_eq(vm->nr_slots_logging, 1);
	ck_assert_uint_eq(vm->nr_threads, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(vm->threads[i].id, i);
		ck_assert_int_eq(vm->threads[i].tid, tvm_vcpu_tid(tv, i));
	}
	dt_vm_list__free(l);

	/* logging switched on for slot 7: the next discovery sees it */
	ck_assert_int_eq(tvm_set_logging(tv, 7, true), 0);
	ck_assert_int_eq(dt_vms__discover(&l), 0);
	vm = dt_vm_list__find(l, getpid());
	ck_assert_ptr_nonnull(vm);
	ck_assert_uint_eq(dt_vm__slot(vm, 0, 7)->flags & DT_SLOT_LOG_DIRTY, DT_SLOT_LOG_DIRTY);
	ck_assert_uint_eq(vm->nr_slots_logging, 2);
	dt_vm_list__free(l);
	tvm_destroy(tv);

	/* and once the VM is gone, so is its entry */
	ck_assert_int_eq(dt_vms__discover(&l), 0);
	ck_assert_ptr_null(dt_vm_list__find(l, getpid()));
	dt_vm_list__free(l);
}
END_TEST

/*
 * The library prints nothing unless the caller installs a print callback, libbpf's messages
 * included (here the refused fentry program makes libbpf talk).
 */
START_TEST(silent_by_default)
{
	struct dt_tracer_opts o = { .sz = sizeof(o) };
	char path[] = "/tmp/dt-stderr-XXXXXX", buf[256] = "";
	int fd, saved;
	struct dt_tracer *t;
	ssize_t n;
	const char *why = dt_test_need_root();

	if (why)
		DT_SKIP("%s", why);
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	unlink(path);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	t = dt_tracer__open(&o);
	dt_tracer__close(t);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	ck_assert_ptr_nonnull(t);
	ck_assert_msg(n == 0, "library wrote to stderr: %s", buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("discover");
	TCase *core = tcase_create("core"), *errors = tcase_create("errors");
	TCase *kvm = tcase_create("kvm");

	tcase_add_test(core, parse_vms_slots_vcpus);
	tcase_add_test(core, parse_truncated_flag);
	tcase_add_test(core, parse_empty);
	tcase_add_test(errors, parse_bad_input);
	tcase_add_test(kvm, discover_our_vm);
	tcase_add_test(kvm, silent_by_default);
	tcase_set_timeout(kvm, 30);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	suite_add_tcase(s, kvm);
	return dt_test_main(s, "discover");
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The checkpoint trigger: woken when a VM's unique pages in the epoch reach N, optionally with
 * the VMM stopped from the BPF program at that page. The VMM runs in a child process (SIGSTOP
 * stops a whole process). Latency and overshoot are printed, not asserted: speed belongs in
 * make bench. Tags: root, kvm.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "testlib.h"
#include "vmm.h"

#define TRIGGER 500

static struct dt_tracer *open_for(pid_t pid)
{
	struct dt_tracer_opts o = { .sz = sizeof(o), .pids = &pid, .nr_pids = 1 };
	struct dt_tracer *t = dt_tracer__open(&o);
	struct dt_epoch *e;

	ck_assert_msg(t, "dt_tracer__open: %s", strerror(errno));
	ck_assert_int_eq(dt_tracer__cut(t, &e), 0);	/* the VM's discovery, a clean epoch */
	dt_epoch__free(e);
	return t;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

#define NEED_KVM() do { const char *why = dt_test_need_kvm(); if (why) DT_SKIP("%s", why); } \
	while (0)

START_TEST(wakes_at_n_pages)
{
	pid_t vmm;
	struct dt_tracer *t;
	uint64_t lat[20];

	NEED_KVM();
	vmm = dt_test_writer_vmm(1);
	t = open_for(vmm);
	dt_tracer__set_trigger(t, TRIGGER, false);
	for (int i = 0; i < 20; i++) {
		struct dt_trigger tr;
		struct dt_epoch *e;
		const struct dt_epoch_vm *v;
		int err = dt_tracer__wait_trigger(t, 10000, &tr);

		ck_assert_msg(!err, "wait_trigger: %s", strerror(-err));
		ck_assert_int_eq(tr.pid, vmm);
		ck_assert_uint_le(tr.fired_ns, tr.woke_ns);
		lat[i] = tr.woke_ns - tr.fired_ns;
		ck_assert_uint_ge(dt_tracer__epoch_pages(t, tr.kvm), TRIGGER);
		ck_assert_int_eq(dt_tracer__cut(t, &e), 0);
		v = dt_epoch__vm(e, vmm);
		ck_assert_ptr_nonnull(v);
		ck_assert_uint_ge(v->nr_gfns, TRIGGER);	/* the VM kept running: at least N */
		dt_epoch__free(e);
	}
	qsort(lat, 20, sizeof(lat[0]), cmp_u64);
	printf("trigger at %d pages: wake latency median %.1f us, max %.1f us (20 epochs)\n",
	       TRIGGER, lat[10] / 1e3, lat[19] / 1e3);
	dt_tracer__close(t);
	dt_test_kill(vmm);
}
END_TEST

static void stop_test(int vcpus)
{
	uint64_t over[10];
	struct dt_tracer *t;
	pid_t vmm;

	vmm = dt_test_writer_vmm(vcpus);
	t = open_for(vmm);
	dt_tracer__set_trigger(t, TRIGGER, true);
	for (int i = 0; i < 10; i++) {
		struct dt_trigger tr;
		struct dt_epoch *e;
		const struct dt_epoch_vm *v;
		uint64_t count, later;

		ck_assert_int_eq(dt_tracer__wait_trigger(t, 10000, &tr), 0);
		ck_assert_int_eq(dt_tracer__wait_stopped(vmm, 1000), 0);	/* every thread */
		count = dt_tracer__epoch_pages(t, tr.kvm);
		usleep(100000);
		later = dt_tracer__epoch_pages(t, tr.kvm);
		ck_assert_uint_eq(later, count);	/* stopped means stopped */
		ck_assert_uint_ge(count, TRIGGER);
		over[i] = count - TRIGGER;
		/* the bounded set a checkpointer copies: exactly what the kernel counted */
		ck_assert_int_eq(dt_tracer__cut(t, &e), 0);
		v = dt_epoch__vm(e, vmm);
		ck_assert_ptr_nonnull(v);
		ck_assert_uint_eq(v->nr_gfns, count);
		dt_epoch__free(e);
		ck_assert_int_eq(dt_tracer__resume(vmm), 0);
	}
	qsort(over, 10, sizeof(over[0]), cmp_u64);
	printf("stop at %d pages: overshoot median %llu, max %llu pages (10 stops, %d vCPU)\n",
	       TRIGGER, (unsigned long long)over[5], (unsigned long long)over[9], vcpus);
	dt_tracer__close(t);
	dt_test_kill(vmm);
}

START_TEST(stops_the_vmm)
{
	NEED_KVM();
	stop_test(1);
}
END_TEST

/* The other vCPU runs on until the signal reaches it: its pages are the overshoot. */
START_TEST(stops_the_vmm_2vcpu)
{
	NEED_KVM();
	stop_test(2);
}
END_TEST

/* Armed while the VM is already past the count: it fires (and stops the VMM) at once. */
START_TEST(armed_past_the_count)
{
	const struct dt_vm *vm;
	struct dt_trigger tr;
	struct dt_tracer *t;
	uint64_t count;
	pid_t vmm;

	NEED_KVM();
	vmm = dt_test_writer_vmm(1);
	t = open_for(vmm);
	vm = dt_vm_list__find(dt_tracer__vms(t), vmm);
	ck_assert_ptr_nonnull(vm);
	for (int w = 0; w < 500 && dt_tracer__epoch_pages(t, vm->kvm) < 2 * TRIGGER; w++) {
		usleep(10000);
		dt_tracer__poll(t, 0);
	}
	ck_assert_int_eq(dt_tracer__set_trigger(t, TRIGGER, true), 0);
	ck_assert_int_eq(dt_tracer__wait_trigger(t, 10000, &tr), 0);
	ck_assert_int_eq(tr.pid, vmm);
	ck_assert_int_eq(dt_tracer__wait_stopped(vmm, 1000), 0);	/* every thread */
	count = dt_tracer__epoch_pages(t, tr.kvm);
	ck_assert_uint_ge(count, 2 * TRIGGER);
	usleep(100000);
	ck_assert_uint_eq(dt_tracer__epoch_pages(t, tr.kvm), count);
	ck_assert_int_eq(dt_tracer__resume(vmm), 0);
	dt_tracer__close(t);
	dt_test_kill(vmm);
}
END_TEST

static void *quiesce_later(void *t)
{
	usleep(200000);
	dt_tracer__quiesce(t);
	return NULL;
}

START_TEST(quiesce_and_timeout)
{
	struct dt_tracer *t;
	struct dt_trigger tr;
	pthread_t th;
	pid_t vmm;

	NEED_KVM();
	vmm = dt_test_writer_vmm(1);
	t = open_for(vmm);
	dt_tracer__set_trigger(t, 1ull << 40, false);	/* never reached */
	ck_assert_int_eq(dt_tracer__wait_trigger(t, 100, &tr), -ETIMEDOUT);
	pthread_create(&th, NULL, quiesce_later, t);
	ck_assert_int_eq(dt_tracer__wait_trigger(t, 10000, &tr), -ECANCELED);
	pthread_join(th, NULL);
	dt_tracer__close(t);
	dt_test_kill(vmm);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("trigger");
	TCase *tc = tcase_create("kvm");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, wakes_at_n_pages);
	tcase_add_test(tc, stops_the_vmm);
	tcase_add_test(tc, stops_the_vmm_2vcpu);
	tcase_add_test(tc, quiesce_and_timeout);
	tcase_add_test(tc, armed_past_the_count);
	suite_add_tcase(s, tc);
	return dt_test_main(s, "trigger");
}

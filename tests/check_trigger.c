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

/* A VMM that dirties random pages of a 64 MiB slot until killed. */
static pid_t start_vmm(int vcpus)
{
	int sync[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(sync), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		struct tvm_opts o = { .nr_vcpus = vcpus, .ring_entries = 4096 };
		struct tvm *vm = tvm_create(&o);
		static uint64_t list[2][3000];
		const uint64_t *lists[2] = { list[0], list[1] };
		size_t n[2] = { 3000, 3000 };
		struct tvm_pages p = {};
		uint64_t seed = 5;

		if (!vm || tvm_add_slot(vm, 1, 16 << 20, 64 << 20, true))
			_exit(1);
		if (write(sync[1], "x", 1) != 1)
			_exit(1);
		for (uint32_t it = 0;; it++) {
			for (int v = 0; v < vcpus; v++)
				tvm_pattern_random(list[v], n[v], 16 << 20, 64 << 20, &seed);
			tvm_run_epoch(vm, lists, n, it);
			tvm_pages_clear(&p);
			tvm_harvest(vm, &p);	/* like a VMM: the ring keeps moving */
		}
	}
	ck_assert_int_eq(read(sync[0], &c, 1), 1);
	close(sync[0]);
	close(sync[1]);
	return pid;
}

static void stop_vmm(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p ? p[2] : '?';
}

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
	vmm = start_vmm(1);
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
	stop_vmm(vmm);
}
END_TEST

static void stop_test(int vcpus)
{
	uint64_t over[10];
	struct dt_tracer *t;
	pid_t vmm;

	vmm = start_vmm(vcpus);
	t = open_for(vmm);
	dt_tracer__set_trigger(t, TRIGGER, true);
	for (int i = 0; i < 10; i++) {
		struct dt_trigger tr;
		struct dt_epoch *e;
		const struct dt_epoch_vm *v;
		uint64_t count, later;
		char st = '?';

		ck_assert_int_eq(dt_tracer__wait_trigger(t, 10000, &tr), 0);
		for (int w = 0; w < 100 && (st = proc_state(vmm)) != 'T'; w++)
			usleep(10000);
		ck_assert_msg(st == 'T', "VMM state %c, want stopped", st);
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
	stop_vmm(vmm);
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
	vmm = start_vmm(1);
	t = open_for(vmm);
	dt_tracer__set_trigger(t, 1ull << 40, false);	/* never reached */
	ck_assert_int_eq(dt_tracer__wait_trigger(t, 100, &tr), -ETIMEDOUT);
	pthread_create(&th, NULL, quiesce_later, t);
	ck_assert_int_eq(dt_tracer__wait_trigger(t, 10000, &tr), -ECANCELED);
	pthread_join(th, NULL);
	dt_tracer__close(t);
	stop_vmm(vmm);
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
	suite_add_tcase(s, tc);
	return dt_test_main(s, "trigger");
}

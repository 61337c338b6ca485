// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The harvester: ring-buffer records into the epoch's page set, and the epoch cut.
 *
 * Cutting epoch E (userspace)            a capture program on some CPU
 *   epoch = E + 1                          enter++ (atomic: a full barrier)
 *   full fence                             ep = epoch
 *   wait until exit >= enter, per CPU      mark page in dedup[ep & 1], emit record tagged ep
 *   drain the ring buffer                  exit++
 *   drain dedup[E & 1] (recover drops)
 * Either the program read E + 1, or the cut saw its enter and waits for its exit: after the wait
 * nothing touches dedup[E & 1] and every record of E is in the ring buffer. (An RCU grace period,
 * e.g. membarrier(MEMBARRIER_CMD_GLOBAL), would do too but costs ~15 ms per cut here.)
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "tracer.h"
#include "capture.skel.h"

#define BARRIER_TIMEOUT_NS (200 * 1000000ull)
#define RECOVER_BATCH	   4096

static bool slot_known(const struct dt_tracer *t, uint64_t kvm, uint16_t as_id, uint16_t id)
{
	const struct dt_vm *vm = dt_vm_list__find_kvm(t->vms, kvm);

	return vm && dt_vm__slot(vm, as_id, id);
}

int dt_harvest_record(void *ctx, void *data, size_t size)
{
	struct dt_tracer *t = ctx;
	const struct dt_event *e = data;
	struct dt_page_rec r;

	if (size < sizeof(*e))
		return 0;
	/*
	 * A trigger record only wakes the consumer: what fired is read from the BPF program's
	 * note (fired_note), which a full ring buffer cannot drop. Its page has its own record.
	 */
	if (e->flags & DT_EV_TRIGGER)
		return 0;
	t->records++;
	r = (struct dt_page_rec){
		.kvm = e->kvm, .offset = e->offset, .gfn = e->gfn, .ts = e->ts, .pid = e->tgid,
		.vcpu = e->vcpu, .as_id = e->as_id, .slot = e->slot,
	};
	if (r.gfn == DT_GFN_NONE && !t->need_refresh && !slot_known(t, r.kvm, r.as_id, r.slot))
		t->need_refresh = true;
	/* a failed add loses nothing: the page is still in the dedup map for the cut */
	if (dt_pageset_add(&t->sets[e->epoch & 1], &r))
		t->add_failed = true;
	return 0;
}

/* Waits until no capture program that may have read the old epoch is still running. */
static void wait_inflight(struct dt_tracer *t)
{
	struct dt_inflight *fl = t->skel->bss->inflight;
	uint64_t deadline = 0;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (int cpu = 0; cpu < t->nr_cpus; cpu++) {
		uint64_t enter = __atomic_load_n(&fl[cpu].enter, __ATOMIC_ACQUIRE);
		unsigned int spins = 0;

		while (__atomic_load_n(&fl[cpu].exit, __ATOMIC_ACQUIRE) < enter) {
			if (++spins < 1000)
				continue;
			if (!deadline)
				deadline = dt_now_ns() + BARRIER_TIMEOUT_NS;
			if (dt_now_ns() > deadline) {
				/* cannot happen unless a program is stuck; its page lands one epoch late */
				t->barrier_timeouts++;
				return;
			}
			sched_yield();
		}
	}
}

/* Drains the old epoch's dedup map into set; pages whose records were dropped come back here. */
static int recover(struct dt_tracer *t, int map_fd, struct dt_pageset *set, bool add)
{
	struct dt_dedup_key *keys;
	__u64 *vals;
	__u32 batch, count;
	void *in = NULL;
	int err = 0;

	keys = calloc(RECOVER_BATCH, sizeof(*keys));
	vals = calloc(RECOVER_BATCH, sizeof(*vals));
	if (!keys || !vals) {
		err = -ENOMEM;
		goto out;
	}
	for (;;) {
		int ret;

		count = RECOVER_BATCH;
		ret = bpf_map_lookup_and_delete_batch(map_fd, in, &batch, keys, vals, &count, NULL);
		if (ret && errno != ENOENT) {
			err = -errno;
			pr_debug("failed to drain the dedup map: %s\n", strerror(-err));
			goto out;
		}
		for (__u32 i = 0; add && i < count; i++) {
			uint16_t as_id = keys[i].slot >> 16, id = keys[i].slot & 0xffff;

			if (dt_pageset_add_word(set, keys[i].kvm, keys[i].slot, keys[i].word,
						vals[i]) < 0) {
				err = -ENOMEM;
				goto out;
			}
			if (!t->need_refresh && !slot_known(t, keys[i].kvm, as_id, id))
				t->need_refresh = true;
		}
		if (ret)	/* ENOENT: that was the last batch */
			break;
		in = &batch;
	}
out:
	free(keys);
	free(vals);
	return err;
}

/* The per-VM page counts of a finished epoch are no longer anyone's business. */
static void forget_epoch_counts(struct dt_tracer *t, uint32_t old)
{
	int fd = bpf_map__fd(t->skel->maps.vm_pages);
	struct dt_epoch_key key, next, stale[64];
	void *prev = NULL;
	size_t n = 0;

	while (!bpf_map_get_next_key(fd, prev, &next) && n < 64) {
		key = next;
		prev = &key;
		if (key.epoch == old)
			stale[n++] = key;
	}
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(fd, &stale[i]);
}

int dt_tracer__set_trigger(struct dt_tracer *t, uint64_t pages, bool stop_vmm)
{
	t->skel->bss->trigger_stop = stop_vmm;
	__atomic_store_n(&t->skel->bss->trigger_pages, pages, __ATOMIC_SEQ_CST);
	return 0;
}

uint64_t dt_tracer__epoch_pages(const struct dt_tracer *t, uint64_t kvm)
{
	struct dt_epoch_key key = { .kvm = kvm, .epoch = t->epoch };
	struct dt_vm_count n = {};

	bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.vm_pages), &key, &n);
	return n.pages;
}

int dt_tracer__quiesce(struct dt_tracer *t)
{
	uint64_t one = 1;

	return write(t->quiesce_fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}

/* Task state letter of /proc/PID/task/TID/stat, '?' if unreadable (the thread is gone). */
static char task_state(pid_t pid, const char *tid)
{
	char path[PATH_MAX], buf[256], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%.32s/stat", pid, tid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	p = fgets(buf, sizeof(buf), f);
	fclose(f);
	p = p ? strrchr(buf, ')') : NULL;
	return p && p[1] == ' ' ? p[2] : '?';
}

int dt_tracer__wait_stopped(pid_t pid, int timeout_ms)
{
	uint64_t deadline = dt_now_ns() + (uint64_t)timeout_ms * 1000000;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	for (;;) {
		DIR *d = opendir(path);
		struct dirent *de;
		bool all = true;

		if (!d)
			return -ESRCH;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.') {
				char st = task_state(pid, de->d_name);

				/* T stopped, t traced; Z/X/?: a thread on its way out runs nothing */
				if (st != 'T' && st != 't' && st != 'Z' && st != 'X' && st != '?')
					all = false;
			}
		closedir(d);
		if (all)
			return 0;
		if (dt_now_ns() > deadline)
			return -ETIMEDOUT;
		usleep(200);
	}
}

int dt_tracer__resume(pid_t pid)
{
	return kill(pid, SIGCONT) ? -errno : 0;
}

static pid_t pid_of(const struct dt_tracer *t, uint64_t kvm)
{
	for (size_t i = 0; t->vms && i < t->vms->n; i++)
		if (t->vms->vms[i].kvm == kvm)
			return t->vms->vms[i].pid;
	return 0;
}

/*
 * Whether some watched VM's kernel count reached the trigger: its record may have been dropped,
 * or it reached the count and went idle before the trigger was armed. In that last case no page
 * fired the trigger in the kernel, so the VMM to stop is stopped from here.
 */
static bool count_reached(struct dt_tracer *t)
{
	int fd = bpf_map__fd(t->skel->maps.vm_pages);
	uint64_t want = t->skel->bss->trigger_pages;
	struct dt_epoch_key key, next;
	struct dt_vm_count n;
	void *prev = NULL;

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (key.epoch != t->epoch || bpf_map_lookup_elem(fd, &key, &n) || n.pages < want)
			continue;
		t->trigger_fired = true;
		t->trigger = (struct dt_trigger){ .kvm = key.kvm, .pid = pid_of(t, key.kvm),
						  .woke_ns = dt_now_ns() };
		/*
		 * Not written back to the map (that would race with the kernel's count): a page
		 * racing in now may stop the VMM too, and a second SIGSTOP changes nothing.
		 */
		if (!n.fired && t->skel->bss->trigger_stop && t->trigger.pid)
			kill(t->trigger.pid, SIGSTOP);
		return true;
	}
	return false;
}

/* The BPF program's note of its last firing, read without draining the ring buffer first. */
static bool fired_note(struct dt_tracer *t)
{
	struct capture__bss *b = t->skel->bss;
	uint32_t seq = __atomic_load_n(&b->fired_seq, __ATOMIC_ACQUIRE);

	if (seq == t->fired_seq_seen)
		return false;
	t->fired_seq_seen = seq;
	if (b->fired_epoch != t->epoch)
		return false;	/* a firing of an epoch already cut */
	t->trigger_fired = true;
	t->trigger = (struct dt_trigger){ .kvm = b->fired_kvm, .pid = b->fired_tgid,
					  .fired_ns = b->fired_ns, .woke_ns = dt_now_ns() };
	return true;
}

int dt_tracer__wait_trigger(struct dt_tracer *t, int timeout_ms, struct dt_trigger *out)
{
	uint64_t end = dt_now_ns() + (uint64_t)timeout_ms * 1000000;
	struct pollfd pfd[2] = {
		{ .fd = ring_buffer__epoll_fd(t->rb), .events = POLLIN },
		{ .fd = t->quiesce_fd, .events = POLLIN },
	};

	for (;;) {
		uint64_t now = dt_now_ns(), v;
		int ms;

		/* the note first: the record may wait behind a bulk of page records */
		if (t->trigger_fired || fired_note(t)) {
			*out = t->trigger;
			return 0;
		}
		ring_buffer__consume(t->rb);
		if (t->trigger_fired || (t->skel->bss->trigger_pages && count_reached(t))) {
			*out = t->trigger;
			return 0;
		}
		if (now >= end)
			return -ETIMEDOUT;
		/* wake on records, on quiesce, and every 10 ms to check the count itself */
		ms = (end - now) / 1000000 > 10 ? 10 : (int)((end - now) / 1000000) + 1;
		if (poll(pfd, 2, ms) < 0 && errno != EINTR)
			return -errno;
		if (pfd[1].revents & POLLIN) {
			if (read(t->quiesce_fd, &v, sizeof(v)) < 0)
				return -errno;
			return -ECANCELED;
		}
	}
}

/*
 * Whether the old epoch's dedup map holds pages whose records never arrived. Without a drop,
 * the map only repeats what the records said, and adding it would double the pages to sort
 * (most of a cut's cost). A drop is counted before the cut that follows the epoch it belongs to,
 * or before the one after (if it raced with the previous cut's read): both cuts recover.
 */
static bool must_recover(struct dt_tracer *t)
{
	struct dt_stats st;
	bool now;

	if (dt_tracer__stats(t, &st))
		return true;
	now = st.rb_drops != t->drops_at_cut || t->add_failed;
	t->drops_at_cut = st.rb_drops;
	t->add_failed = false;
	if (now || t->drops_last_cut) {
		t->drops_last_cut = now;
		return true;
	}
	return false;
}

int dt_tracer__cut(struct dt_tracer *t, struct dt_epoch **out)
{
	uint32_t old = t->epoch;
	struct dt_pageset *set = &t->sets[old & 1];
	int maps[2] = { bpf_map__fd(t->skel->maps.dedup0), bpf_map__fd(t->skel->maps.dedup1) };
	uint64_t unresolved;
	struct dt_epoch *e;
	int err;

	*out = NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	t->epoch = old + 1;
	__atomic_store_n(&t->skel->bss->epoch, t->epoch, __ATOMIC_SEQ_CST);
	wait_inflight(t);
	e->end_ns = dt_now_ns();
	ring_buffer__consume(t->rb);

	err = recover(t, maps[old & 1], set, must_recover(t));
	if (err) {
		free(e);
		return err;
	}
	forget_epoch_counts(t, old);
	t->trigger_fired = false;
	/* a slot created or moved since the last discovery: look again, once per cut */
	if (t->need_refresh && dt_tracer__refresh(t))
		pr_debug("VM rediscovery failed; some GFNs stay unresolved\n");
	err = dt_epoch_build(set, t->vms, e, &unresolved);
	if (err) {
		free(e);
		return err;
	}
	for (size_t i = 0; i < e->nr_vms; i++)
		t->recovered += e->vms[i].recovered;
	e->seq = t->epochs++;
	e->start_ns = t->epoch_start_ns;
	t->epoch_start_ns = e->end_ns;
	*out = e;
	return 0;
}

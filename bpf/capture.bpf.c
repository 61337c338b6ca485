// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dirtytrace capture: every page a KVM guest dirties, once per epoch, into a BPF ring buffer.
 *
 * Page sources (the loader attaches exactly one, the best the kernel allows):
 *   fentry/mark_page_dirty_in_slot   every dirtied page, bitmap and ring mode
 *   kprobe/mark_page_dirty_in_slot   the same where fentry is refused
 *   raw_tp/kvm_dirty_ring_push       VMs using KVM's dirty ring
 * The ring-push program always runs for the in-kernel ring view (with the reset and exit
 * programs) and emits pages only when it is the page source, so no write is counted twice.
 * Fault tracepoints add a write-fault signal; they never emit pages.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "capture.h"

#define KVM_MEM_LOG_DIRTY_PAGES 0x1
#define PFERR_WRITE_MASK	0x2
#define SPTE_WRITABLE		0x2	/* bit 1 is "writable" in EPT, NPT and legacy SPTEs */
#define EEXIST			17

/* Set by the loader before load. */
const volatile __u32 filter_pids[DT_MAX_PIDS] = {};
const volatile __u32 nr_filter_pids = 0;
const volatile __u32 filter_slot = DT_SLOT_ANY;
const volatile __u32 page_source = DT_SRC_RING_PUSH;
/*
 * Page records wake the consumer only once this much is waiting (0: on every record, the ring
 * buffer's default). A wakeup per record costs the consumer a context switch per page, taken
 * from the vCPUs on a busy host; consumers read on their own timers and the cut drains anyway.
 */
const volatile __u64 wakeup_bytes = 0;

/*
 * Epoch number, written by userspace through the mmapped .bss. Pages are deduplicated in
 * dedup[epoch & 1]; userspace flips the epoch, waits on `inflight` until every program that
 * may have read the old number has finished, then drains dedup[old & 1].
 */
__u32 epoch = 0;
struct dt_inflight inflight[DT_MAX_CPUS] = {};
/* Checkpoint trigger, set by userspace at run time: 0 = off. */
__u64 trigger_pages = 0;
__u32 trigger_stop = 0;		/* also stop the VMM (SIGSTOP) at the triggering page */
/*
 * The last firing, for a waiter to read at once: its record may sit behind thousands of page
 * records in the ring buffer. The fields are written first, then the sequence bumped.
 */
__u64 fired_kvm = 0, fired_ns = 0;
__u32 fired_tgid = 0, fired_epoch = 0, fired_seq = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);	/* resized by the loader */
} events SEC(".maps");

struct dedup_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);	/* resized by the loader */
	__type(key, struct dt_dedup_key);
	__type(value, __u64);
};
struct dedup_map dedup0 SEC(".maps");
struct dedup_map dedup1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dt_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct dt_vcpu_key);
	__type(value, struct dt_vcpu_stats);
} vcpus SEC(".maps");

/* vCPU thread id → vCPU id, filled from VM discovery: mark_page_dirty_in_slot has no vCPU. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __s32);
} tid_vcpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct dt_epoch_key);
	__type(value, struct dt_vm_count);
} vm_pages SEC(".maps");

/* Write faults per VMM tgid (fault tracepoints carry no struct kvm). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} tgid_faults SEC(".maps");

static __always_inline struct dt_counters *cnt(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

static __always_inline bool pid_wanted(__u32 tgid)
{
	if (!nr_filter_pids)
		return true;
	for (int i = 0; i < DT_MAX_PIDS; i++) {
		if (i >= nr_filter_pids)
			break;
		if (filter_pids[i] == tgid)
			return true;
	}
	return false;
}

/* Sets the page's bit in the epoch's dedup map: 1 if new, 0 if seen, -1 if the map is full. */
static __always_inline int dedup_mark(void *map, struct dt_dedup_key *key, __u64 bit)
{
	__u64 *word = bpf_map_lookup_elem(map, key);
	long err;

	if (!word) {
		err = bpf_map_update_elem(map, key, &bit, BPF_NOEXIST);
		if (!err)
			return 1;
		if (err != -EEXIST)
			return -1;
		/* another CPU inserted the word between our lookup and update */
		word = bpf_map_lookup_elem(map, key);
		if (!word)
			return -1;
	}
	return (__sync_fetch_and_or(word, bit) & bit) ? 0 : 1;
}

static __always_inline struct dt_vcpu_stats *vcpu_stats(__u64 kvm, __s32 vcpu, __u32 tgid,
							__u32 ring_size)
{
	struct dt_vcpu_key key = { .kvm = kvm, .vcpu = vcpu };
	struct dt_vcpu_stats *st, zero = {};

	st = bpf_map_lookup_elem(&vcpus, &key);
	if (st)
		return st;
	zero.tgid = tgid;
	zero.ring_size = ring_size;
	bpf_map_update_elem(&vcpus, &key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&vcpus, &key);
}

/*
 * Every record goes out through here: built from a template whose unnamed fields (padding too)
 * are zero, stamped, submitted. False when the ring buffer is full.
 */
static __always_inline bool submit_event(const struct dt_event *tmpl, __u64 rb_flags)
{
	struct dt_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return false;
	__builtin_memcpy(e, tmpl, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, rb_flags);
	return true;
}

/*
 * Counts a VM's new page in the epoch; at exactly trigger_pages (when set), wakes the consumer at
 * once and,
 * if asked, stops the VMM here. Other vCPUs run on until the signal reaches them: the overshoot
 * is theirs (measured in tests/check_trigger).
 */
static __always_inline void count_for_trigger(__u64 kvm, __u32 tgid, __s32 vcpu, __u32 ep)
{
	__u64 want = *(volatile __u64 *)&trigger_pages, count;
	struct dt_epoch_key key = { .kvm = kvm, .epoch = ep };
	struct dt_vm_count zero = {}, *n;

	/* counted with or without a trigger: one set mid-epoch must see the whole epoch */
	n = bpf_map_lookup_elem(&vm_pages, &key);
	if (!n) {
		bpf_map_update_elem(&vm_pages, &key, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&vm_pages, &key);
		if (!n)
			return;
	}
	count = __sync_fetch_and_add(&n->pages, 1) + 1;
	/*
	 * At the first page at or past the count, once per VM and epoch: a trigger armed after
	 * the VM passed the count fires at its next page (the cmpxchg picks one vCPU).
	 */
	if (!want || count < want || __sync_val_compare_and_swap(&n->fired, 0, 1))
		return;
	if (trigger_stop)
		bpf_send_signal(19 /* SIGSTOP */);
	fired_kvm = kvm;
	fired_ns = bpf_ktime_get_ns();
	fired_tgid = tgid;
	fired_epoch = ep;
	__sync_fetch_and_add(&fired_seq, 1);
	/* lost to a full ring buffer, it is not missed: the waiter also polls the count */
	submit_event(&(struct dt_event){ .kvm = kvm, .offset = count, .gfn = DT_GFN_UNKNOWN,
					 .tgid = tgid, .vcpu = vcpu, .epoch = ep,
					 .flags = DT_EV_TRIGGER }, BPF_RB_FORCE_WAKEUP);
}

static __always_inline __u64 page_wakeup(void)
{
	if (!wakeup_bytes)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
	       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* st: the vCPU's stats entry when the caller has it, else looked up here (raw per vCPU). */
static __always_inline void emit_page(__u64 kvm, __u32 tgid, __s32 vcpu, __u16 as_id, __u16 id,
				      __u64 offset, __u64 gfn, __u8 source,
				      struct dt_vcpu_stats *st)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct dt_inflight *fl = cpu < DT_MAX_CPUS ? &inflight[cpu] : 0;
	struct dt_dedup_key key = {};
	struct dt_counters *c;
	__u32 ep;
	__u8 flags = 0;
	int fresh;

	c = cnt();
	if (!c || !fl)
		return;
	/* a full barrier before reading the epoch: pairs with the fence in dt_tracer__cut() */
	__sync_fetch_and_add(&fl->enter, 1);
	ep = *(volatile __u32 *)&epoch;
	c->raw++;
	if (!st)
		st = vcpu_stats(kvm, vcpu, tgid, 0);
	if (st)
		__sync_fetch_and_add(&st->raw, 1);

	key.kvm = kvm;
	key.slot = ((__u32)as_id << 16) | id;
	key.word = offset >> DT_WORD_SHIFT;
	if (ep & 1)
		fresh = dedup_mark(&dedup1, &key, 1ULL << (offset & 63));
	else
		fresh = dedup_mark(&dedup0, &key, 1ULL << (offset & 63));
	if (!fresh)
		goto out;
	if (fresh < 0) {
		c->map_full++;
		flags |= DT_EV_UNDEDUPED;
	}
	c->unique++;
	count_for_trigger(kvm, tgid, vcpu, ep);

	if (!submit_event(&(struct dt_event){ .kvm = kvm, .offset = offset, .gfn = gfn,
					      .tgid = tgid, .vcpu = vcpu, .epoch = ep, .as_id = as_id,
					      .slot = id, .source = source, .flags = flags },
			  page_wakeup())) {
		/* a page marked in the dedup map is recovered at the cut; one that is not is lost */
		if (fresh < 0)
			c->lost++;
		else
			c->rb_drops++;
	}
out:
	__sync_fetch_and_add(&fl->exit, 1);
}

static __always_inline struct kvm *ring_to_kvm(struct kvm_dirty_ring *ring)
{
	struct kvm_vcpu *vcpu;

	/* the ring is embedded in its vCPU */
	vcpu = (void *)ring - bpf_core_field_offset(struct kvm_vcpu, dirty_ring);
	return BPF_CORE_READ(vcpu, kvm);
}

/* The push tracepoint's filter: the counters when the event is wanted, else NULL. */
static __always_inline struct dt_counters *push_wanted(__u32 tgid, __u32 slot)
{
	struct dt_counters *c = cnt();

	if (!c)
		return NULL;
	if (!pid_wanted(tgid) || (filter_slot != DT_SLOT_ANY && filter_slot != slot)) {
		c->filtered++;
		return NULL;
	}
	return c;
}

/*
 * What the push tracepoint does once it has read the ring: the vCPU's ring view, then the page.
 * The synthetic driver (dt_synth_drive) runs this same code with made-up ring values.
 */
static __always_inline void ring_push(struct dt_counters *c, __u32 tgid, __u64 kvm, __s32 index,
				      __u32 didx, __u32 ridx, __u32 size, __u32 slot,
				      __u64 offset)
{
	struct dt_vcpu_stats *st;
	__u32 used = didx - ridx;

	c->ring_events++;
	st = vcpu_stats(kvm, index, tgid, size);
	if (st) {
		__sync_fetch_and_add(&st->pushes, 1);
		st->ring_size = size;	/* the entry may come from a page source without the ring */
		st->dirty_index = didx;
		st->reset_index = ridx;
		if (used > st->max_used)
			st->max_used = used;
		if (size && used > size)
			__sync_fetch_and_add(&st->overflows, 1);
	}
	if (page_source == DT_SRC_RING_PUSH)
		emit_page(kvm, tgid, index, slot >> 16, slot & 0xffff, offset, DT_GFN_UNKNOWN,
			  DT_SRC_RING_PUSH, st);
}

SEC("raw_tp/kvm_dirty_ring_push")
int BPF_PROG(dt_ring_push, struct kvm_dirty_ring *ring, __u32 slot, __u64 offset)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct dt_counters *c = push_wanted(tgid, slot);

	if (!c)
		return 0;
	ring_push(c, tgid, (__u64)ring_to_kvm(ring), BPF_CORE_READ(ring, index),
		  BPF_CORE_READ(ring, dirty_index), BPF_CORE_READ(ring, reset_index),
		  BPF_CORE_READ(ring, size), slot, offset);
	return 0;
}

/*
 * The synthetic driver, for tests/bench/capture-throughput only: `count` push events through
 * the push tracepoint's own code (filter, ring view, dedup, counters, ring buffer), faster than
 * any guest writes. Event i dirties page base + ((start + i) % span) * stride. Only the
 * tracepoint's dispatch and its four reads of struct kvm_dirty_ring are not exercised.
 * "?": never loaded unless the bench's internal open flag asks for it (src/internal.h).
 */
struct synth_loop {
	struct dt_synth_args a;
	__u32 tgid;
};

static long synth_one(__u64 i, void *ctx)
{
	struct synth_loop *l = ctx;
	__u64 n = l->a.start + i;
	__u64 span = l->a.span ? l->a.span : 1;
	struct dt_counters *c = push_wanted(l->tgid, l->a.slot);

	if (c)
		ring_push(c, l->tgid, l->a.kvm, l->a.vcpu, n, n, 1u << 16, l->a.slot,
			  l->a.base + (n % span) * l->a.stride);
	return 0;
}

SEC("?raw_tp")
int dt_synth_drive(struct bpf_raw_tracepoint_args *ctx)
{
	struct synth_loop l = {
		.a = {
			.kvm = ctx->args[0], .base = ctx->args[1], .start = ctx->args[2],
			.count = ctx->args[3], .span = ctx->args[4], .stride = ctx->args[5],
			.slot = ctx->args[6], .vcpu = ctx->args[7],
		},
		.tgid = bpf_get_current_pid_tgid() >> 32,
	};

	if (l.a.count > DT_SYNTH_MAX_COUNT)
		return -1;
	return bpf_loop(l.a.count, synth_one, &l, 0);
}

SEC("raw_tp/kvm_dirty_ring_reset")
int BPF_PROG(dt_ring_reset, struct kvm_dirty_ring *ring)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct dt_vcpu_stats *st;
	struct dt_counters *c;

	c = cnt();
	if (!c)
		return 0;
	if (!pid_wanted(tgid)) {
		c->filtered++;
		return 0;
	}
	c->ring_events++;
	st = vcpu_stats((__u64)ring_to_kvm(ring), BPF_CORE_READ(ring, index), tgid,
			BPF_CORE_READ(ring, size));
	if (!st)
		return 0;
	__sync_fetch_and_add(&st->resets, 1);
	st->dirty_index = BPF_CORE_READ(ring, dirty_index);
	st->reset_index = BPF_CORE_READ(ring, reset_index);
	return 0;
}

SEC("raw_tp/kvm_dirty_ring_exit")
int BPF_PROG(dt_ring_exit, struct kvm_vcpu *vcpu)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct dt_vcpu_stats *st;
	struct dt_counters *c;

	c = cnt();
	if (!c)
		return 0;
	if (!pid_wanted(tgid)) {
		c->filtered++;
		return 0;
	}
	c->ring_events++;
	st = vcpu_stats((__u64)BPF_CORE_READ(vcpu, kvm), BPF_CORE_READ(vcpu, vcpu_id), tgid,
			BPF_CORE_READ(vcpu, dirty_ring.size));
	if (st)
		__sync_fetch_and_add(&st->full_exits, 1);
	return 0;
}

/* Shared by fentry and kprobe: mirrors the early returns of mark_page_dirty_in_slot(). */
static __always_inline void mark_dirty(struct kvm *kvm, const struct kvm_memory_slot *memslot,
				       __u64 gfn, __u8 source)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct dt_counters *c;
	__u64 base;
	__u16 as_id, id;
	__s32 *vcpu;

	if (!memslot || !(BPF_CORE_READ(memslot, flags) & KVM_MEM_LOG_DIRTY_PAGES))
		return;
	c = cnt();
	if (!c)
		return;
	as_id = BPF_CORE_READ(memslot, as_id);
	id = BPF_CORE_READ(memslot, id);
	if (!pid_wanted(tgid) ||
	    (filter_slot != DT_SLOT_ANY && filter_slot != (((__u32)as_id << 16) | id))) {
		c->filtered++;
		return;
	}
	base = BPF_CORE_READ(memslot, base_gfn);
	vcpu = bpf_map_lookup_elem(&tid_vcpu, &tid);
	emit_page((__u64)kvm, tgid, vcpu ? *vcpu : -1, as_id, id, gfn - base, gfn, source, NULL);
}

SEC("fentry/mark_page_dirty_in_slot")
int BPF_PROG(dt_fentry_mark, struct kvm *kvm, const struct kvm_memory_slot *memslot, gfn_t gfn)
{
	mark_dirty(kvm, memslot, gfn, DT_SRC_FENTRY);
	return 0;
}

SEC("kprobe/mark_page_dirty_in_slot")
int BPF_KPROBE(dt_kprobe_mark, struct kvm *kvm, const struct kvm_memory_slot *memslot, gfn_t gfn)
{
	mark_dirty(kvm, memslot, gfn, DT_SRC_KPROBE);
	return 0;
}

static __always_inline void count_write_fault(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct dt_counters *c = cnt();
	__u64 one = 1, *n;

	if (!c || !pid_wanted(tgid))
		return;
	c->write_faults++;
	n = bpf_map_lookup_elem(&tgid_faults, &tgid);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&tgid_faults, &tgid, &one, BPF_NOEXIST);
}

/* Write faults fixed by the fast path: write protection lifted for dirty logging. */
SEC("tracepoint/kvmmmu/fast_page_fault")
int dt_fast_page_fault(struct trace_event_raw_fast_page_fault *ctx)
{
	if (bpf_core_type_exists(struct trace_event_raw_fast_page_fault) &&
	    (BPF_CORE_READ(ctx, error_code) & PFERR_WRITE_MASK))
		count_write_fault();
	return 0;
}

SEC("tracepoint/kvm/kvm_page_fault")
int dt_page_fault(struct trace_event_raw_kvm_page_fault *ctx)
{
	if (bpf_core_type_exists(struct trace_event_raw_kvm_page_fault) &&
	    (BPF_CORE_READ(ctx, error_code) & PFERR_WRITE_MASK))
		count_write_fault();
	return 0;
}

/* TDP MMU: an SPTE that becomes writable is a write-protection fault being fixed. */
SEC("tracepoint/kvmmmu/kvm_tdp_mmu_spte_changed")
int dt_spte_changed(struct trace_event_raw_kvm_tdp_mmu_spte_changed *ctx)
{
	if (bpf_core_type_exists(struct trace_event_raw_kvm_tdp_mmu_spte_changed) &&
	    !(BPF_CORE_READ(ctx, old_spte) & SPTE_WRITABLE) &&
	    (BPF_CORE_READ(ctx, new_spte) & SPTE_WRITABLE))
		count_write_fault();
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types shared by the BPF capture programs (capture.bpf.c, discover.bpf.c) and libdirtytrace.
 * Kernel-style fixed-size types only, no libc: this header is compiled for both sides.
 */
#ifndef DT_CAPTURE_H
#define DT_CAPTURE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define DT_MAX_PIDS	 16
#define DT_MAX_CPUS	 512
#define DT_GFN_UNKNOWN	 (~0ULL)
#define DT_SLOT_ANY	 0xffffffffU
/* Pages per dedup map value: one u64 bitmap word. */
#define DT_WORD_SHIFT	 6

/* Where a record came from; also the bit in the `sources` mask. */
enum dt_source {
	DT_SRC_FENTRY = 0,	/* fentry/mark_page_dirty_in_slot */
	DT_SRC_KPROBE = 1,	/* kprobe/mark_page_dirty_in_slot */
	DT_SRC_RING_PUSH = 2,	/* raw_tp/kvm_dirty_ring_push */
	DT_SRC_MAX,
};

/* Record flags. */
#define DT_EV_UNDEDUPED 0x1	/* dedup map was full: this page may be emitted again */
#define DT_EV_TRIGGER	0x2	/* not a page: the VM reached trigger_pages in this epoch
				 * (offset = the count, ts = when) */

/* Unique pages of one VM in one epoch, for the checkpoint trigger. */
struct dt_epoch_key {
	__u64 kvm;
	__u32 epoch;
	__u32 pad;
};

struct dt_vm_count {
	__u64 pages;
	__u32 fired;		/* the trigger fired for this VM in this epoch */
	__u32 pad;
};

/*
 * One dirtied page, the same for every source. 56 bytes, zeroed before it is filled.
 * slot is KVM's memslot id and as_id its address space; offset is the page index in the slot.
 * gfn is known to the mark_page_dirty_in_slot sources; the ring-push tracepoint has only
 * (slot, offset) and userspace adds the slot's base GFN from VM discovery.
 */
struct dt_event {
	__u64 kvm;		/* struct kvm address: identifies the VM */
	__u64 ts;		/* bpf_ktime_get_ns() */
	__u64 offset;
	__u64 gfn;		/* DT_GFN_UNKNOWN when the source does not have it */
	__u32 tgid;		/* VMM process */
	__s32 vcpu;		/* vCPU id, -1 unknown */
	__u32 epoch;
	__u16 as_id;
	__u16 slot;
	__u8 source;		/* enum dt_source */
	__u8 flags;
	__u8 pad[6];
};

/* Dedup map: one bitmap word of 64 pages of one slot of one VM. */
struct dt_dedup_key {
	__u64 kvm;
	__u32 slot;		/* (as_id << 16) | id, as in KVM's dirty ring */
	__u32 word;		/* offset >> DT_WORD_SHIFT */
};

/* Per-CPU counters (summed by userspace). */
struct dt_counters {
	__u64 raw;		/* dirtying events seen by the active source, after filtering */
	__u64 unique;		/* first time a page was seen in its epoch: emitted */
	__u64 rb_drops;		/* bpf_ringbuf_reserve failed: record lost, page kept in dedup map */
	__u64 map_full;		/* dedup map had no room: page emitted without dedup */
	__u64 lost;		/* map full and ring buffer full: page lost for good */
	__u64 filtered;		/* events of VMs or slots outside the filter */
	__u64 write_faults;	/* write faults from the fault tracepoints (a signal, not pages) */
	__u64 ring_events;	/* push/reset/exit events seen for the in-kernel ring view */
};

/*
 * The synthetic driver's ctx (BPF_PROG_TEST_RUN ctx_in, as u64 raw_tp arguments), for the
 * capture benchmark: event i of a run dirties page base + ((start + i) % span) * stride of slot
 * (as_id << 16 | id) in VM kvm, from vCPU vcpu. The program returns the events run.
 */
#define DT_SYNTH_MAX_COUNT (1u << 23)	/* bpf_loop's limit */

struct dt_synth_args {
	__u64 kvm;
	__u64 base;
	__u64 start;
	__u64 count;
	__u64 span;	/* distinct pages cycled through; 0 counts as 1 */
	__u64 stride;
	__u64 slot;
	__u64 vcpu;
};

/* Per-vCPU view of KVM's own dirty ring, from the push/reset/exit tracepoints. */
struct dt_vcpu_key {
	__u64 kvm;
	__s32 vcpu;
	__u32 pad;
};

struct dt_vcpu_stats {
	__u32 tgid;
	__u32 ring_size;	/* entries, 0 if unknown */
	__u32 dirty_index;	/* last seen, free running */
	__u32 reset_index;
	__u32 max_used;		/* largest dirty_index - reset_index seen */
	__u32 pad;
	__u64 pushes;		/* kvm_dirty_ring_push */
	__u64 resets;		/* kvm_dirty_ring_reset */
	__u64 full_exits;	/* kvm_dirty_ring_exit */
	__u64 overflows;	/* pushes seen with used > ring size: KVM overwrote entries */
	__u64 raw;		/* dirtying events of the page source on this vCPU (-1: unknown) */
};

/* Entry/exit counts of the page-emitting programs on one CPU: the epoch-cut barrier. */
struct dt_inflight {
	__u64 enter;
	__u64 exit;
	__u64 pad[6];		/* a cache line each */
};

/*
 * VM discovery records written by the task_file iterator (discover.bpf.c), in this order per VM:
 * one DT_REC_VM, then its memslots and vCPUs.
 */
enum dt_rec_type {
	DT_REC_VM = 1,
	DT_REC_SLOT = 2,
	DT_REC_VCPU = 3,
};

struct dt_rec_vm {
	__u32 type;		/* DT_REC_VM */
	__u32 tgid;
	__u64 kvm;
	__u32 fd;
	__u32 online_vcpus;
	__u32 dirty_ring_size;	/* bytes per vCPU, 0 = bitmap mode */
	__u32 nr_slots_dirty_logging;
	__u32 nr_as;		/* address spaces walked */
	__u32 flags;		/* DT_VM_* */
	__u64 manual_protect;	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 flags */
	char comm[16];
};

#define DT_VM_SLOTS_TRUNCATED 0x1	/* more memslots than the iterator walks */
#define DT_VM_NO_SLOTS	     0x2	/* this kernel's memslot layout is not known to dirtytrace */

struct dt_rec_slot {
	__u32 type;		/* DT_REC_SLOT */
	__u16 as_id;
	__u16 id;
	__u64 kvm;
	__u64 base_gfn;
	__u64 npages;
	__u64 userspace_addr;
	__u32 flags;		/* KVM_MEM_* (bit 0: dirty logging) */
	__u32 pad;
};

struct dt_rec_vcpu {
	__u32 type;		/* DT_REC_VCPU */
	__s32 vcpu_id;
	__u64 kvm;
	__u32 tid;		/* thread last running it, 0 if none */
	__u32 pad;
};

#endif /* DT_CAPTURE_H */

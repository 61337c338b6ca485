// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tvm: a tiny test VMM whose guest writes exactly the guest physical addresses a test chooses.
 *
 * What KVM reports to this VMM (dirty ring entries or dirty bitmaps) is the ground truth that
 * dirtytrace's harvested page lists are compared with. The guest runs in 32-bit flat protected
 * mode without paging and without a stack, so its only writes to logged memory are the ones the
 * test asked for. It pads every store with more than 40 instructions: a software-emulating KVM
 * checks for a nearly full dirty ring only every 1,024 instructions, and a faster writer would
 * overrun the ring.
 *
 * Not thread-safe: one thread drives a struct tvm. The library never prints.
 */
#ifndef DIRTYTRACE_TESTS_VMM_H
#define DIRTYTRACE_TESTS_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TVM_MAX_VCPUS		8
#define TVM_PAGE_SIZE		4096ULL

/* Slot 0 holds the guest code and the per-vCPU address tables; dirty logging is off for it. */
#define TVM_SLOT0_SIZE		(2ULL << 20)
/* Guest writes must not land below this address: code, GDT and the address tables live there. */
#define TVM_SLOT0_RESERVED	0x110000ULL
/* I/O port the guest writes to when it has finished its address list. */
#define TVM_DONE_PORT		0xf4
/* Guest instructions between two of the guest's stores. */
#define TVM_INSNS_PER_WRITE	45

struct tvm;

struct tvm_opts {
	int nr_vcpus;		/* 1..TVM_MAX_VCPUS */
	uint32_t ring_entries;	/* per vCPU ring entries, a power of 2 >= 256; 0: bitmap */
	bool manual_protect;	/* bitmap: MANUAL_DIRTY_LOG_PROTECT2 + KVM_CLEAR_DIRTY_LOG */
};

/* One dirty page as KVM reports it. slot is the KVM slot id (0..32767), as_id the address space. */
struct tvm_page {
	uint16_t as_id;
	uint16_t slot;
	uint64_t offset;		/* page index within the slot */
};

/* A growable list of pages (the ground truth a test compares with). */
struct tvm_pages {
	struct tvm_page *v;
	size_t n, cap;
};

/* Appends one page; 0 or -ENOMEM. */
int tvm_pages_add(struct tvm_pages *p, const struct tvm_page *pg);
/* Sorts by (as_id, slot, offset) and drops duplicates. */
void tvm_pages_sort_unique(struct tvm_pages *p);
/* True if both lists hold the same pages in the same order (sort_unique both first). */
bool tvm_pages_equal(const struct tvm_pages *a, const struct tvm_pages *b);
/* n = 0, keeps the memory. */
void tvm_pages_clear(struct tvm_pages *p);
void tvm_pages_free(struct tvm_pages *p);

/*
 * Opens /dev/kvm, creates the VM, enables the dirty ring (before any vCPU exists, as KVM
 * requires), creates slot 0 at GPA 0 (TVM_SLOT0_SIZE, dirty logging off) and the vCPUs in 32-bit
 * flat protected mode. Returns NULL and sets errno on failure (EOPNOTSUPP: capability missing).
 */
struct tvm *tvm_create(const struct tvm_opts *opts);
/* Joins the vCPU threads, closes every fd, unmaps all guest memory. NULL is a no-op. */
void tvm_destroy(struct tvm *vm);

int tvm_vm_fd(const struct tvm *vm);
int tvm_nr_vcpus(const struct tvm *vm);
/* Dirty ring entries per vCPU, 0 in bitmap mode. */
uint32_t tvm_ring_entries(const struct tvm *vm);
/* vCPU fd, or -EINVAL for a bad index. */
int tvm_vcpu_fd(const struct tvm *vm, int vcpu);
/* Thread id of the thread that runs this vCPU (once the first epoch started it), or 0. */
pid_t tvm_vcpu_tid(const struct tvm *vm, int vcpu);
/* kvm_run.exit_reason of the vCPU's last KVM_RUN (for messages after -EIO), or 0. */
uint32_t tvm_vcpu_exit_reason(const struct tvm *vm, int vcpu);

/*
 * Adds memslot `slot` (1..32767) at guest physical `gpa` (page aligned, below 4 GiB, not
 * overlapping another slot) of `size` bytes (page multiple) backed by anonymous MAP_NORESERVE
 * memory, so large slots cost only the pages the guest touches. The slot may extend past 4 GiB
 * (up to what KVM accepts); the 32-bit guest writes only its part below 4 GiB. Returns 0 or
 * -errno.
 */
int tvm_add_slot(struct tvm *vm, uint16_t slot, uint64_t gpa, uint64_t size, bool log_dirty);
/*
 * Turns dirty logging on or off for an existing slot. In bitmap mode pages dirtied since the
 * last harvest in a slot whose logging is turned off are lost (KVM drops its bitmap).
 */
int tvm_set_logging(struct tvm *vm, uint16_t slot, bool log_dirty);
/* Host pointer to guest physical address gpa, NULL if no slot holds it. */
void *tvm_gpa_to_hva(struct tvm *vm, uint64_t gpa);
/* (slot, offset) of a guest physical address; 0 or -ENOENT. */
int tvm_gpa_to_page(struct tvm *vm, uint64_t gpa, struct tvm_page *out);

/*
 * Runs one epoch: vCPU i stores the 32-bit value `iter` at each guest physical address
 * gpas[i][0..counts[i]-1] in order (4-byte aligned, inside a slot, at or above
 * TVM_SLOT0_RESERVED), TVM_INSNS_PER_WRITE guest instructions apart. The vCPUs run concurrently,
 * each on its own thread (created on the first call). Returns once every vCPU has finished and
 * is back in userspace. In ring mode ring-full exits are served by reaping that vCPU's ring into
 * the VM's pending list and resetting, so nothing is lost. Lists longer than one guest table
 * (32,768 addresses) are run in several guest entries. A vCPU with counts[i] == 0 still enters
 * the guest once. Returns 0, -EINVAL for a bad address (nothing runs then), -EIO for an
 * unexpected exit (see tvm_vcpu_exit_reason) or another -errno.
 */
int tvm_run_epoch(struct tvm *vm, const uint64_t *const *gpas, const size_t *counts, uint32_t iter);

/*
 * Appends to `out` every page KVM reported since the last harvest. Ring mode: what ring-full
 * exits reaped during the epoch, then every vCPU ring (entries are marked reset), then one
 * KVM_RESET_DIRTY_RINGS. Bitmap mode: KVM_GET_DIRTY_LOG on every logging slot, followed by
 * KVM_CLEAR_DIRTY_LOG with manual_protect. Not deduplicated: in ring mode a page appears once per
 * ring entry. Call only between epochs. Returns 0 or -errno.
 */
int tvm_harvest(struct tvm *vm, struct tvm_pages *out);

struct tvm_stats {
	uint64_t ring_full_exits;	/* KVM_EXIT_DIRTY_RING_FULL seen, all vCPUs */
	uint64_t reaped;		/* ring entries reaped */
	uint64_t resets;		/* KVM_RESET_DIRTY_RINGS calls */
	uint64_t epochs;
	/* CLOCK_MONOTONIC ns spent reaping rings (entries read, marked, KVM_RESET_DIRTY_RINGS) */
	uint64_t reap_ns;		/* all of it: ring-full exits and tvm_harvest */
	uint64_t reap_exit_ns;		/* the part in ring-full exits (vCPU threads) */
};
void tvm_get_stats(const struct tvm *vm, struct tvm_stats *st);

/*
 * Fill `out` (n entries, caller-allocated) with page-aligned GPAs inside [gpa, gpa + size).
 * seq: pages start_page, start_page + 1, ... wrapping at the end of the range.
 * random: uniform pages, repeats allowed.
 * hotcold: hot_pct % of the writes go to the first hot_pages pages, the rest uniformly to the
 * other pages (all hot if hot_pages covers the range).
 * Deterministic for a given *seed, which is advanced (any value, 0 included, is a valid seed).
 */
void tvm_pattern_seq(uint64_t *out, size_t n, uint64_t gpa, uint64_t size, uint64_t start_page);
void tvm_pattern_random(uint64_t *out, size_t n, uint64_t gpa, uint64_t size, uint64_t *seed);
void tvm_pattern_hotcold(uint64_t *out, size_t n, uint64_t gpa, uint64_t size, uint64_t hot_pages,
			 unsigned int hot_pct, uint64_t *seed);
/* Next value of the patterns' generator (splitmix64), for tests that want their own choices. */
uint64_t tvm_rand(uint64_t *seed);

#endif /* DIRTYTRACE_TESTS_VMM_H */

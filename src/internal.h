/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* libdirtytrace internals: not installed, not part of the API. */
#ifndef DT_INTERNAL_H
#define DT_INTERNAL_H

#include <stdlib.h>
#include <dirtytrace/dirtytrace.h>

#define DT_HIDDEN __attribute__((visibility("hidden")))

__attribute__((format(printf, 2, 3)))
DT_HIDDEN void dt_pr(enum dt_print_level level, const char *fmt, ...);
/* Routes libbpf's messages through our callback; every entry point that loads BPF calls it. */
DT_HIDDEN void dt_quiet_libbpf(void);
#define pr_warn(...)  dt_pr(DT_WARN, __VA_ARGS__)
#define pr_info(...)  dt_pr(DT_INFO, __VA_ARGS__)
#define pr_debug(...) dt_pr(DT_DEBUG, __VA_ARGS__)

/* qsort, but an empty array may be NULL (qsort's pointer must not be, even for 0 elements). */
static inline void dt_sort(void *v, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(v, n, sz, cmp);
}

/* Grows *v (of elements of size sz) to hold at least want; 0 or -ENOMEM. */
DT_HIDDEN int dt_grow(void **v, size_t *cap, size_t want, size_t sz);

/*
 * Pure core: the pages of one epoch, all VMs, as they arrive (records and recovered dedup bits,
 * duplicates allowed), turned into per-VM sorted unique GFN lists. No BPF, no I/O.
 */
struct dt_page_rec {
	uint64_t kvm;
	uint64_t offset;
	uint64_t gfn;		/* DT_GFN_NONE: resolve from the slot table */
	uint64_t ts;		/* the kernel's timestamp of the record, 0 when recovered */
	uint32_t seq;		/* arrival order: the first record of a page wins */
	pid_t pid;		/* 0 when unknown (recovered) */
	int32_t vcpu;
	uint16_t as_id;
	uint16_t slot;
	bool recovered;
};

struct dt_pageset {
	struct dt_page_rec *v;
	size_t n, cap;
	uint32_t seq;
};

DT_HIDDEN int dt_pageset_add(struct dt_pageset *s, const struct dt_page_rec *r);
DT_HIDDEN void dt_pageset_clear(struct dt_pageset *s);
DT_HIDDEN void dt_pageset_free(struct dt_pageset *s);
/* Adds each set bit of a dedup word as a recovered page; returns pages added or -ENOMEM. */
DT_HIDDEN int dt_pageset_add_word(struct dt_pageset *s, uint64_t kvm, uint32_t slot_key,
				  uint32_t word, uint64_t bits);

/*
 * Sorts, deduplicates and resolves set into e (whose seq and times the caller sets); vms gives
 * base GFNs and the pid of VMs seen only through recovered pages (may be NULL). Sets
 * *unresolved to the number of pages whose slot vms does not know. Empties set.
 */
DT_HIDDEN int dt_epoch_build(struct dt_pageset *set, const struct dt_vm_list *vms,
			     struct dt_epoch *e, uint64_t *unresolved);
/* The same without the radix fast path (it handles every input): the tests' reference. */
DT_HIDDEN int dt_epoch_build_general(struct dt_pageset *set, const struct dt_vm_list *vms,
				     struct dt_epoch *e, uint64_t *unresolved);

DT_HIDDEN const struct dt_vm *dt_vm_list__find_kvm(const struct dt_vm_list *list, uint64_t kvm);

/* Runs the discovery iterator and returns its raw output (malloc'd). */
DT_HIDDEN int dt_discover_raw(void **buf, size_t *len);
struct dt_discoverer;
DT_HIDDEN struct dt_discoverer *dt_discoverer__open(void);
DT_HIDDEN void dt_discoverer__close(struct dt_discoverer *d);
DT_HIDDEN int dt_discoverer__read(struct dt_discoverer *d, void **buf, size_t *len);
DT_HIDDEN int dt_discoverer__vms(struct dt_discoverer *d, struct dt_vm_list **out);

/*
 * Benchmarks only (tests/bench/capture-throughput.c); no tool sets it. DT_OPEN_SYNTHETIC loads
 * the ring-push page source together with the synthetic driver (dt_synth_drive in
 * bpf/capture.bpf.c) and attaches nothing: every event then comes from the driver, run through
 * BPF_PROG_TEST_RUN, and is harvested and cut as usual. opts->sources must allow the ring push.
 */
#define DT_OPEN_SYNTHETIC 0x1
struct dt_tracer;
DT_HIDDEN struct dt_tracer *dt_tracer_open_flags(const struct dt_tracer_opts *opts,
						 unsigned int flags);
/* The synthetic driver's program fd (ctx: struct dt_synth_args), or -ENOENT without it. */
DT_HIDDEN int dt_tracer_synth_fd(const struct dt_tracer *t);

#endif /* DT_INTERNAL_H */

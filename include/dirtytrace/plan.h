/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * dirtyplan's model core (pure: no BPF, no I/O): from a recorded dirty trace, predict how a QEMU
 * live migration of that guest goes, and what would make it go.
 *
 * A workload is the time-ordered epochs of one VM (start, end, raw events, sorted unique GFN list:
 * struct dt_trace_epoch from a recording, struct dt_epoch_vm from the live tracer), the guest's RAM
 * size in pages and its page size, and optionally how many RAM pages are zero.
 *
 * The model, and where it follows QEMU (migration/ram.c, migration/migration.c):
 *
 * - Time. The epochs are laid end to end: a gap between two epochs is time nobody watched and is
 *   dropped (as dt_window does), so the workload's length is the sum of its epochs' lengths. When
 *   a simulation runs longer than that, the recording is replayed from its start (the
 *   steady-state assumption; results say so with looped).
 * - Inside an epoch only the set of pages is known, not when each was written. The model gives
 *   each page of an epoch one write moment, spread evenly over the epoch in an order fixed by a
 *   hash of (page, epoch): an interval covering a fraction f of an epoch takes round(f * n) of its
 *   n pages, a pseudo-random subset that does not depend on the GFN. The dirtied set of an
 *   interval is the union of those pages over the epochs it overlaps. This is exact when the
 *   interval's ends fall on epoch edges; otherwise it assumes writes spread evenly in the epoch.
 *   Results are deterministic. A zero-length epoch's pages all count at its instant.
 * - Iteration 0 sends every RAM page; later iteration k sends the pages dirtied during iteration
 *   k - 1 (QEMU syncs the dirty log once per pass; a page written twice in a pass is sent once).
 *   A normal page costs page_size + page_header_bytes on the wire; a zero page costs
 *   page_header_bytes + 1 (QEMU sends RAM_SAVE_FLAG_ZERO and one fill byte, no contents). Zero
 *   pages matter only in iteration 0. Unknown zero pages: assume_zero_frac of RAM (default 0:
 *   every page is sent in full, the pessimistic case; results say it was assumed).
 * - Each iteration takes its bytes / bandwidth (QEMU's max-bandwidth is a rate limit on the
 *   stream, headers included). After each iteration the remainder (pages dirtied during it) is
 *   compared with QEMU's threshold, bandwidth x downtime-limit, as QEMU counts it (pages x
 *   page size, headers aside): when it fits, the VM stops and the
 *   remainder is copied: downtime = remainder bytes / switchover bandwidth + switchover_ns
 *   (QEMU lifts the rate limit for the stop-and-copy, so the switchover bandwidth may be the
 *   link's; 0 means the same bandwidth). Otherwise the next iteration starts, up to
 *   max_iterations or timeout_ns, or until it stalls: no pass has left fewer pages than the best
 *   one for stall_iterations passes covering at least one replay of the recording (every phase
 *   of the workload was seen and did no better; QEMU itself would go on for ever).
 *   QEMU checks the threshold as soon as the current pass's remainder falls below it (and syncs
 *   then), not only at the end of a pass; the model checks at pass ends, so it may count one
 *   iteration more than QEMU's dirty-sync-count near convergence.
 * - Auto-converge (throttle p%) slows the guest's progress: what it dirtied in 1 s of the
 *   recording takes 1 / (1 - p) s. QEMU raises the throttle step by step (cpu-throttle-initial,
 *   -increment, max-cpu-throttle) from the second sync that sees a high dirty ratio; the model
 *   applies the percentage from the start, so a real migration reaches it later and takes longer.
 * - Dirty limit (QEMU's vcpu-dirty-limit, MB/s per vCPU, MB = 2^20 bytes as QEMU counts it): an
 *   epoch in which one vCPU dirtied more than limit x length takes as long as that vCPU needs at
 *   the limit. With pages attributed to vCPUs (struct dt_gfn.vcpu) the limit is per vCPU; pages
 *   of unknown vCPU form one bucket, so a trace without attribution gives a per-VM figure
 *   (dirty_limit_per_vcpu false).
 * - Postcopy: by default the switch happens after postcopy_after_passes = 1 full precopy pass
 *   (0: postcopy from the start). What was dirtied during the last pass (all of RAM when switching
 *   at once) is still at the source; the background push sends it at the bandwidth, and the
 *   exposure window (a failure of either side loses the VM) lasts until it is all sent. The pages
 *   the guest writes in that window that are still pending are the writable working set the
 *   destination faults on: a lower bound, since dirty tracking does not see reads.
 *
 * Conventions as in dirtytrace.h: 0 or a negative errno; constructors NULL and errno.
 */
#ifndef DIRTYTRACE_PLAN_H
#define DIRTYTRACE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <dirtytrace/dirtytrace.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- units (parsers for the command line) ---- */

/*
 * Bandwidth in bytes/s. A number (fractions allowed) and a unit, case-insensitive, "/s" optional:
 *   bytes, binary as QEMU's sizes:  "" "b" (bytes), "k" "kb" "kib", "m" "mb" "mib", "g" "gb" "gib",
 *                                   "t" "tb" "tib" (x 1024^n: "1G" = 1 GiB/s, "100M" = 100 MiB/s)
 *   bits, decimal as links are sold: "bit" "kbit" "mbit" "gbit" "tbit", "bps" "kbps" "mbps" "gbps"
 *                                   "tbps" (x 1000^n / 8: "10gbit" = 1.25e9 B/s)
 * -EINVAL: empty, no number, unknown unit, trailing text; -ERANGE: zero, negative, not finite,
 * or beyond 2^53 bytes/s.
 */
DT_API int dt_plan_parse_bandwidth(const char *s, double *bytes_per_s);
/*
 * Duration in ns. A number (fractions allowed) and a unit, required: "ns" "us" "ms" "s" "m"/"min"
 * "h" ("300ms", "2s", "1.5s"). -EINVAL: empty, no unit, unknown unit, trailing text; -ERANGE:
 * zero, negative, below 1 ns, or beyond 2^63 ns.
 */
DT_API int dt_plan_parse_duration(const char *s, uint64_t *ns);

/* ---- the workload ---- */

struct dt_workload;

/* ram_pages >= 1, page_size a power of two >= 512; NULL and EINVAL or ENOMEM. */
DT_API struct dt_workload *dt_workload__new(uint64_t ram_pages, uint32_t page_size);
DT_API void dt_workload__free(struct dt_workload *w);
/*
 * Appends one epoch. Epochs come in time order: -EINVAL when end < start or start is before the
 * previous epoch's end. gfns should be sorted and unique (duplicates are dropped); n may be 0.
 */
DT_API int dt_workload__add(struct dt_workload *w, uint64_t start_ns, uint64_t end_ns, uint64_t raw,
			    const struct dt_gfn *gfns, size_t n);
/* An epoch of a recording (dt_trace_reader__next). */
DT_API int dt_workload__add_trace_epoch(struct dt_workload *w, const struct dt_trace_epoch *e);
/* The VM pid's part of a live epoch; a VM absent from e dirtied nothing in it (an empty epoch). */
DT_API int dt_workload__add_epoch(struct dt_workload *w, const struct dt_epoch *e, pid_t pid);
/* Zero pages in RAM, as counted by scanning it (<= ram_pages). */
DT_API int dt_workload__set_zero_pages(struct dt_workload *w, uint64_t zero_pages);

struct dt_workload_info {
	size_t epochs;
	double seconds;		/* watched time: the sum of the epochs' lengths */
	uint64_t page_epochs;	/* sum of the epochs' page counts */
	uint64_t distinct_pages;/* pages dirtied at least once */
	uint64_t raw;
	double pages_per_s;	/* page_epochs / seconds (0 when seconds is 0) */
	uint32_t vcpus;		/* distinct vCPU ids pages are attributed to (0: none) */
};
DT_API void dt_workload__info(const struct dt_workload *w, struct dt_workload_info *out);

/* ---- parameters ---- */

struct dt_plan_params {
	double bandwidth;		/* bytes/s, QEMU max-bandwidth (QEMU's default: 128 MiB/s) */
	double switchover_bandwidth;	/* bytes/s for the stop-and-copy; 0: bandwidth */
	uint64_t downtime_limit_ns;	/* QEMU downtime-limit: 300 ms */
	uint64_t switchover_ns;		/* fixed cost added to the downtime: 0 */
	uint32_t max_iterations;	/* passes, iteration 0 included: 100 (QEMU has no limit) */
	uint64_t timeout_ns;		/* give up once iterations took this long; 0: none */
	uint32_t stall_iterations;	/* give up when the remainder has made no new low for this
					 * many passes spanning a whole replay: 10; 0: never */
	uint32_t page_size;		/* 0: the workload's; else must match it (-EINVAL) */
	uint32_t page_header_bytes;	/* per page on the wire: 8 (QEMU's be64 offset|flags) */
	double assume_zero_frac;	/* of RAM, when zero pages were not counted: 0 */
	/* scenario knobs, off by default */
	uint32_t throttle_pct;		/* auto-converge throttle applied from the start, 0..99 */
	double dirty_limit;		/* bytes/s per vCPU (vcpu-dirty-limit x 2^20); 0: none */
	/* what the searches try (QEMU's names and defaults) */
	uint32_t cpu_throttle_initial;	/* 20 */
	uint32_t cpu_throttle_increment;/* 10 */
	uint32_t max_cpu_throttle;	/* 99 */
	/* postcopy */
	uint32_t postcopy_after_passes;	/* 1: after iteration 0; 0: postcopy at once */
	/* advice: the most guest slowdown a throttle or dirty limit may cost, 0..1: 0.5 */
	double max_slowdown;
};

/* Fills p with the defaults above (bandwidth 128 MiB/s). */
DT_API void dt_plan_params__init(struct dt_plan_params *p);

/* ---- precopy ---- */

struct dt_plan_iter {
	uint64_t pages;		/* pages sent in full */
	uint64_t zero_pages;	/* pages sent as a zero flag (iteration 0 only) */
	uint64_t bytes;		/* on the wire */
	double seconds;
	uint64_t dirtied;	/* distinct pages dirtied meanwhile: what the next pass sends */
};

enum dt_plan_stop {
	DT_PLAN_CONVERGED = 0,
	DT_PLAN_MAX_ITERATIONS,	/* the remainder never fit in max_iterations passes */
	DT_PLAN_TIMEOUT,	/* nor within timeout_ns */
	DT_PLAN_STALLED,	/* the remainder stopped shrinking (stall_iterations) */
};

struct dt_plan_precopy {
	bool converges;
	enum dt_plan_stop stop;
	size_t nr_iters;
	struct dt_plan_iter *iters;	/* owned: dt_plan_precopy__free() */
	double iter_seconds;		/* the iterations, the guest running */
	double downtime_s;		/* the stop-and-copy: remaining / switchover bw + switchover_ns
					 * (when it does not converge: what stopping now would cost) */
	double total_seconds;		/* iter_seconds + downtime_s */
	uint64_t total_bytes;		/* all iterations and the final copy */
	uint64_t remaining_pages;	/* copied while stopped */
	uint64_t threshold_bytes;	/* bandwidth x downtime limit */
	uint64_t zero_pages;		/* what iteration 0 took as zero */
	bool zero_pages_assumed;	/* from assume_zero_frac, not counted */
	bool looped;			/* ran past the recording's end: steady state assumed */
	double replays;			/* simulated guest time / recording length */
};

/* Runs the precopy simulation with p's bandwidth, limits and scenario knobs. -ENODATA: no epoch,
 * or the epochs last 0 ns in all; -EINVAL: bad parameters; -ENOMEM. */
DT_API int dt_workload__precopy(const struct dt_workload *w, const struct dt_plan_params *p,
				struct dt_plan_precopy *out);
DT_API void dt_plan_precopy__free(struct dt_plan_precopy *r);

/* ---- what would make it converge ---- */

/*
 * The smallest throttle among cpu_throttle_initial, + increment, ..., max_cpu_throttle that
 * converges: *pct = 0 when it converges without one, -1 when none does.
 */
DT_API int dt_workload__min_throttle(const struct dt_workload *w, const struct dt_plan_params *p,
				     int *pct);
/*
 * The highest dirty limit (bytes/s per vCPU, within 0.5%) that converges: 0 when none is needed,
 * -1 when even 1 page/s per vCPU does not. per_vcpu: false when the trace has no vCPU attribution
 * (the figure is then per VM).
 */
DT_API int dt_workload__max_dirty_limit(const struct dt_workload *w,
					const struct dt_plan_params *p, double *bytes_per_s,
					bool *per_vcpu);
/* The lowest bandwidth (bytes/s, within 0.5%) at which precopy converges unaided; -ERANGE when
 * not even 2^50 bytes/s does (max_iterations too low for the workload). */
DT_API int dt_workload__min_bandwidth(const struct dt_workload *w, const struct dt_plan_params *p,
				      double *bytes_per_s);

/* ---- postcopy ---- */

struct dt_plan_postcopy {
	uint32_t passes;		/* precopy passes before the switch */
	double switchover_s;		/* when the guest moves to the destination */
	uint64_t precopy_bytes;		/* sent before it */
	uint64_t pending_pages;		/* still at the source then */
	uint64_t pending_bytes;
	double exposure_s;		/* switch to the last page at the destination */
	uint64_t fault_pages;		/* pending pages the guest writes during exposure (writes
					 * only: reads are unseen, so a lower bound) */
	double expected_write_faults;	/* of those, written before the push sent them */
	double total_seconds;		/* switchover_s + exposure_s */
	uint64_t total_bytes;
	bool looped;
};

DT_API int dt_workload__postcopy(const struct dt_workload *w, const struct dt_plan_params *p,
				 struct dt_plan_postcopy *out);

/* ---- advice ---- */

enum dt_plan_rec {
	DT_PLAN_PRECOPY = 0,
	DT_PLAN_PRECOPY_THROTTLE,
	DT_PLAN_PRECOPY_DIRTY_LIMIT,
	DT_PLAN_POSTCOPY,
};
DT_API const char *dt_plan_rec__name(enum dt_plan_rec r);	/* "precopy", ... "postcopy" */

#define DT_PLAN_MAX_REASONS 6

struct dt_plan_advice {
	enum dt_plan_rec rec;
	size_t nr_reasons;
	char reasons[DT_PLAN_MAX_REASONS][200];	/* one sentence each, no trailing newline */
	struct dt_plan_precopy precopy;		/* unaided, with p's knobs off */
	int throttle_pct;			/* as dt_workload__min_throttle */
	struct dt_plan_precopy throttled;	/* at throttle_pct (empty when <= 0) */
	double dirty_limit;			/* as dt_workload__max_dirty_limit */
	bool dirty_limit_per_vcpu;
	double dirty_limit_slowdown;		/* share of guest progress the limit costs, 0..1 */
	struct dt_plan_precopy limited;		/* at dirty_limit (empty when <= 0) */
	double min_bandwidth;			/* 0 when no bandwidth found */
	struct dt_plan_postcopy postcopy;
};

/*
 * All of the above and a recommendation: precopy when it converges unaided; else a throttle or a
 * dirty limit, whichever costs the guest less work (its slowdown times the migration's length),
 * among those whose slowdown is at most max_slowdown; else postcopy. free with
 * dt_plan_advice__free().
 */
DT_API int dt_workload__advise(const struct dt_workload *w, const struct dt_plan_params *p,
			       struct dt_plan_advice *out);
DT_API void dt_plan_advice__free(struct dt_plan_advice *a);

/* ---- workload character ---- */

/*
 * How soon pages are written again: for each page, the time between the starts of successive
 * epochs that dirtied it (watched time), in log2 buckets of milliseconds: bucket 0 < 1 ms,
 * bucket k in [2^(k-1), 2^k) ms, the last bucket open-ended. *once: pages dirtied in one epoch only.
 */
#define DT_PLAN_HIST_BUCKETS 32
DT_API int dt_workload__write_intervals(const struct dt_workload *w,
					uint64_t hist[DT_PLAN_HIST_BUCKETS], uint64_t *once);

/* Distinct pages dirtied over windows of 1, 2, 4, ... s tiling the recording (partial epochs
 * prorated as above); the last point is the whole recording. */
struct dt_plan_wss_point {
	double window_s;
	double mean_pages;	/* over the whole windows (the whole recording if none fits) */
	uint64_t max_pages;
	size_t windows;
};
/* Fills up to max points, *n gets how many. */
DT_API int dt_workload__wss_curve(const struct dt_workload *w, struct dt_plan_wss_point *pts,
				  size_t max, size_t *n);

/* Aligned GFN ranges of range_pages (a power of two) by writes, hottest first. */
struct dt_plan_range {
	uint16_t as_id;
	bool resolved;		/* false: GFN unknown, first is (slot, offset) in slot */
	uint16_t slot;
	uint64_t first;		/* first GFN (or slot offset) of the range */
	uint64_t pages;		/* range_pages */
	uint64_t dirty_pages;	/* distinct pages dirtied in it */
	uint64_t page_epochs;	/* (page, epoch) pairs: how often it was written */
};
/* Fills up to max ranges, *n gets how many (ties: lower address first). */
DT_API int dt_workload__hot_ranges(const struct dt_workload *w, uint64_t range_pages,
				   struct dt_plan_range *out, size_t max, size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* DIRTYTRACE_PLAN_H */

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The tracer object, shared by the loader (tracer.c) and the harvester (harvest.c). */
#ifndef DT_TRACER_H
#define DT_TRACER_H

#include "internal.h"
#include "capture.h"

struct capture;
struct ring_buffer;
struct bpf_object;

#define DT_MAX_PROBES 8

struct dt_tracer {
	struct capture *skel;
	struct ring_buffer *rb;
	enum dt_source_id source;
	unsigned int flags;		/* DT_OPEN_* (internal) */
	struct dt_probe probes[DT_MAX_PROBES];
	size_t nr_probes;
	char why[DT_MAX_PROBES][160];

	struct dt_vm_list *vms;		/* latest discovery */
	struct dt_discoverer *disc;	/* the discovery iterator, kept loaded */
	bool need_refresh;		/* a record named a slot discovery does not know */

	/* pages of the current and the next epoch, by epoch parity (see dt_tracer__cut) */
	struct dt_pageset sets[2];
	uint32_t epoch;
	uint64_t epoch_start_ns;
	int nr_cpus;

	uint64_t records, recovered, epochs, barrier_timeouts;
	uint64_t drops_at_cut;		/* rb_drops at the last cut */
	bool drops_last_cut;		/* the last cut saw new drops */
	bool add_failed;		/* a record could not be kept: recover from the map */

	int quiesce_fd;			/* eventfd: wakes dt_tracer__wait_trigger */
	bool trigger_fired;
	uint32_t fired_seq_seen;	/* the BPF program's fired_seq last read */
	struct dt_trigger trigger;
};

DT_HIDDEN int dt_harvest_record(void *ctx, void *data, size_t size);
DT_HIDDEN uint64_t dt_now_ns(void);
/* The loaded BPF object, for measurements of its maps (tests/bench/list-vs-bitmap). */
DT_HIDDEN struct bpf_object *dt_tracer_bpf_object(const struct dt_tracer *t);
/* Fills the vCPU thread map the mark_page_dirty_in_slot sources use. */
DT_HIDDEN void dt_tracer_sync_threads(struct dt_tracer *t);

#endif /* DT_TRACER_H */

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The baseline of tests/bench/capture-throughput: the bare BPF ring buffer. The same loop as
 * capture.bpf.c's synthetic driver (bpf_loop under BPF_PROG_TEST_RUN, the same ctx), but each
 * event only reserves a record of the capture's size (struct dt_event), writes one field and
 * submits it; the consumer is empty. Nothing else: no dedup, no counters, no maps but the ring.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "capture.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);	/* set to the capture's size by the bench */
} rb SEC(".maps");

struct rb_loop {
	__u64 start;
	__u64 drops;
};

static long rb_one(__u64 i, void *ctx)
{
	struct rb_loop *l = ctx;
	struct dt_event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);

	if (!e) {
		l->drops++;
		return 0;
	}
	e->offset = l->start + i;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* ctx: struct dt_synth_args (only start and count are used); returns the records dropped. */
SEC("raw_tp")
int dt_rb_drive(struct bpf_raw_tracepoint_args *ctx)
{
	struct rb_loop l = { .start = ctx->args[2] };
	__u64 count = ctx->args[3];

	if (count > DT_SYNTH_MAX_COUNT)
		return -1;
	bpf_loop(count, rb_one, &l, 0);
	return l.drops;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Pure core: the trace file format, round trip and every kind of damage. Tag: unit. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <dirtytrace/dirtytrace.h>
#include <zlib.h>
#include "testlib.h"

static struct dt_slot slots[] = {
	{ .as_id = 0, .id = 1, .base_gfn = 0x1000, .npages = 4096, .flags = 1,
	  .userspace_addr = 0x7f0000000000 },
	{ .as_id = 1, .id = 2, .base_gfn = 0x40000, .npages = 1 << 18 },
};

struct trace {
	void *buf;
	size_t len, cap;
	size_t block_end[16];	/* offset after each epoch block */
	int nr_epochs;
};

/*
 * A header and n epochs; epoch k has k + 3 pages, one of them unresolved. Odd epochs are event
 * blocks (type 2): each page carries its first write's time.
 */
static void build(struct trace *t, int n)
{
	struct dt_trace_header h = {
		.version = DT_TRACE_VERSION, .page_size = 4096, .source = DT_SOURCE_RING_PUSH,
		.clock = 1, .start_ns = 1000, .start_unix_ns = 1795000000000000000ull, .pid = 4242,
		.nr_vcpus = 2, .ring_entries = 4096, .kvm = 0xffff888100000000ull,
		.comm = "qemu-system-x86", .nr_slots = 2, .slots = slots,
	};

	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(dt_trace__encode_header(&h, &t->buf, &t->len, &t->cap), 0);
	for (int k = 0; k < n; k++) {
		struct dt_gfn g[32];
		struct dt_trace_epoch e = {
			.seq = k, .start_ns = 1000 + k * 100, .end_ns = 1100 + k * 100,
			.raw = 10 * k, .recovered = k % 2, .nr_gfns = k + 3, .gfns = g,
			.events = k % 2,
		};

		for (int i = 0; i < k + 3; i++)
			g[i] = (struct dt_gfn){ .gfn = 0x1000 + i * 7, .offset = i * 7, .as_id = 0,
						.slot = 1, .vcpu = i % 2,
						.ts = 1000 + k * 100 + i };
		g[k + 2] = (struct dt_gfn){ .gfn = DT_GFN_NONE, .offset = 99, .slot = 9, .vcpu = -1,
					    .ts = 1000 + k * 100 + k + 2 };
		ck_assert_int_eq(dt_trace__encode_epoch(&e, &t->buf, &t->len, &t->cap), 0);
		t->block_end[k] = t->len;
	}
	t->nr_epochs = n;
}

/* Reads what can be read; returns epochs, sets *res to the last next() result. */
static int read_all(const void *buf, size_t len, int *res, bool *truncated)
{
	char why[128];
	struct dt_trace_reader *r = dt_trace_reader__new(buf, len, why, sizeof(why));
	struct dt_trace_epoch e;
	int n = 0;

	if (!r) {
		*res = -errno;
		return -1;
	}
	while ((*res = dt_trace_reader__next(r, &e, why, sizeof(why))) > 0)
		n++;
	*truncated = dt_trace_reader__truncated(r);
	dt_trace_reader__free(r);
	return n;
}

START_TEST(round_trip)
{
	struct trace t;
	struct dt_trace_reader *r;
	const struct dt_trace_header *h;
	struct dt_trace_epoch e;
	char why[128];

	build(&t, 5);
	r = dt_trace_reader__new(t.buf, t.len, why, sizeof(why));
	ck_assert_msg(r, "%s", why);
	h = dt_trace_reader__header(r);
	ck_assert_int_eq(h->pid, 4242);
	ck_assert_str_eq(h->comm, "qemu-system-x86");
	ck_assert_uint_eq(h->ring_entries, 4096);
	ck_assert_uint_eq(h->start_unix_ns, 1795000000000000000ull);
	ck_assert_uint_eq(h->nr_slots, 2);
	ck_assert_uint_eq(h->slots[1].base_gfn, 0x40000);
	ck_assert_uint_eq(h->slots[0].userspace_addr, 0x7f0000000000);
	for (int k = 0; k < 5; k++) {
		ck_assert_int_eq(dt_trace_reader__next(r, &e, why, sizeof(why)), 1);
		ck_assert_uint_eq(e.seq, k);
		ck_assert_uint_eq(e.end_ns, 1100 + k * 100);
		ck_assert_uint_eq(e.raw, 10 * k);
		ck_assert_uint_eq(e.recovered, k % 2);
		ck_assert_uint_eq(e.nr_gfns, k + 3);
		ck_assert_uint_eq(e.gfns[1].gfn, 0x1007);
		ck_assert_uint_eq(e.gfns[1].offset, 7);	/* from the slot table */
		ck_assert_int_eq(e.gfns[1].vcpu, 1);
		ck_assert_uint_eq(e.gfns[k + 2].gfn, DT_GFN_NONE);	/* unresolved stays so */
		ck_assert_uint_eq(e.gfns[k + 2].offset, 99);
		ck_assert_uint_eq(e.gfns[k + 2].slot, 9);
		ck_assert_int_eq(e.gfns[k + 2].vcpu, -1);
		/* timestamps only where the block carries them */
		ck_assert_int_eq(e.events, k % 2);
		ck_assert_uint_eq(e.gfns[1].ts, k % 2 ? 1000 + k * 100 + 1 : 0);
		ck_assert_uint_eq(e.gfns[k + 2].ts, k % 2 ? 1000 + k * 100 + k + 2 : 0);
	}
	ck_assert_int_eq(dt_trace_reader__next(r, &e, why, sizeof(why)), 0);
	ck_assert(!dt_trace_reader__truncated(r));
	dt_trace_reader__free(r);
	free(t.buf);
}
END_TEST

/* Cut at every byte: the header or nothing, else every whole epoch and "truncated". */
START_TEST(cut_anywhere)
{
	struct trace t;
	size_t header_end;
	bool trunc;
	int res;

	build(&t, 4);
	header_end = t.block_end[0] - (16 + 48 + 3 * 16);	/* epoch 0 holds 3 pages */
	for (size_t cut = 0; cut <= t.len; cut++) {
		int n = read_all(t.buf, cut, &res, &trunc), whole = 0;

		if (cut < header_end) {
			ck_assert_int_eq(n, -1);
			ck_assert_int_eq(res, -EBADMSG);
			continue;
		}
		while (whole < 4 && t.block_end[whole] <= cut)
			whole++;
		ck_assert_msg(n == whole && res == 0, "cut at %zu: %d epochs (want %d), res %d",
			      cut, n, whole, res);
		ck_assert(trunc == (cut != header_end && cut != t.block_end[whole ? whole - 1 : 0]));
	}
	free(t.buf);
}
END_TEST

/* One flipped byte anywhere: refused, or a damaged block, never a wrong epoch read as good. */
START_TEST(flip_anywhere)
{
	struct trace t;
	bool trunc;
	int res;

	build(&t, 3);
	for (size_t at = 0; at < t.len; at++) {
		unsigned char *p = t.buf;
		int n;

		p[at] ^= 0x40;
		n = read_all(t.buf, t.len, &res, &trunc);
		p[at] ^= 0x40;
		if (n < 0)	/* the header: refused */
			continue;
		/* a block: reading stops there, before the damaged epoch, with an error; a flip
		 * in a length field may instead make the rest look cut short */
		ck_assert_msg(n < 3 && (res == -EBADMSG || (res == 0 && trunc)),
			      "flip at %zu: %d epochs read, res %d", at, n, res);
	}
	free(t.buf);
}
END_TEST

START_TEST(foreign_and_newer)
{
	char why[128];
	struct trace t;

	ck_assert_ptr_null(dt_trace_reader__new("root:x:0:0:root:/root:/bin/bash\n", 32, why,
						sizeof(why)));
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert_ptr_nonnull(strstr(why, "not a dirtytrace trace"));
	ck_assert_ptr_null(dt_trace_reader__new("", 0, why, sizeof(why)));
	build(&t, 1);
	((unsigned char *)t.buf)[8] = DT_TRACE_VERSION + 1;
	ck_assert_ptr_null(dt_trace_reader__new(t.buf, t.len, why, sizeof(why)));
	ck_assert_int_eq(errno, ENOTSUP);
	ck_assert_ptr_nonnull(strstr(why, "newer"));
	free(t.buf);
}
END_TEST

/* A block type this reader does not know (from a newer writer) is skipped, not an error. */
START_TEST(unknown_block_skipped)
{
	struct trace t;
	unsigned char blk[16 + 8] = { 'D', 'T', 'B', 'K', 7, 0, 0, 0, 8, 0, 0, 0 };
	unsigned char *nb;
	uLong c = crc32(crc32(0, blk + 4, 4), blk + 16, 8);	/* type and payload */
	bool trunc;
	int res;

	build(&t, 2);
	memcpy(blk + 12, &c, 4);
	nb = malloc(t.len + sizeof(blk));
	memcpy(nb, t.buf, t.block_end[0]);
	memcpy(nb + t.block_end[0], blk, sizeof(blk));
	memcpy(nb + t.block_end[0] + sizeof(blk), (char *)t.buf + t.block_end[0],
	       t.len - t.block_end[0]);
	ck_assert_int_eq(read_all(nb, t.len + sizeof(blk), &res, &trunc), 2);
	ck_assert_int_eq(res, 0);
	free(nb);
	free(t.buf);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("trace");
	TCase *core = tcase_create("core"), *errors = tcase_create("errors");

	tcase_add_test(core, round_trip);
	tcase_add_test(core, unknown_block_skipped);
	tcase_add_test(errors, cut_anywhere);
	tcase_add_test(errors, flip_anywhere);
	tcase_add_test(errors, foreign_and_newer);
	tcase_set_timeout(errors, 60);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	return dt_test_main(s, "trace");
}

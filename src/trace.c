// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Pure core: the trace file format. Layout (little-endian):
 *
 *   header:  "DTTRACE\0" | u32 version | u32 payload length | payload | u32 crc32(payload)
 *            payload: page_size, source, clock, start_ns, start_unix_ns, pid, nr_vcpus,
 *                     ring_entries, kvm, comm[16], nr_slots, slots[] (32 bytes each)
 *   blocks:  "DTBK" | u32 type (1 = epoch) | u32 payload length | u32 crc32(type, payload) |
 *            payload
 *            epoch payload: seq, start_ns, end_ns, raw, recovered (u64 each), u32 nr_gfns,
 *                           u32 reserved, gfns[] (16 bytes: u64 gfn, u16 as_id, u16 slot,
 *                           i32 vcpu); an unresolved page stores 1 << 63 | its slot offset
 *
 * Every block checks itself, so a reader stops at damage instead of reading garbage, and a file
 * cut short is good up to its last whole block.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "internal.h"

#define FILE_MAGIC	"DTTRACE"	/* 8 bytes with the NUL */
#define BLOCK_MAGIC	0x4b425444u	/* "DTBK" */
#define BLOCK_EPOCH	1
#define BLOCK_EVENTS	2	/* an epoch whose pages carry their first write's timestamp */
#define SLOT_BYTES	32
#define GFN_BYTES	16
#define EVENT_BYTES	24	/* GFN_BYTES, then u64 ts */
#define EPOCH_FIXED	48
#define HEADER_FIXED	(4 * 4 + 8 * 2 + 4 * 3 + 8 + 16 + 4)
#define MAX_PAYLOAD	(1u << 30)
#define UNRESOLVED	(1ull << 63)	/* 64 M pages in one epoch: beyond that, damage */

struct out {
	void **buf;
	size_t *len, *cap;
	int err;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->err)
		return;
	if (dt_grow(o->buf, o->cap, *o->len + n, 1)) {
		o->err = -ENOMEM;
		return;
	}
	memcpy((char *)*o->buf + *o->len, p, n);
	*o->len += n;
}

/* x86 and arm64 are little-endian: the encoding is the memory layout of fixed-width integers */
static void put32(struct out *o, uint32_t v) { put(o, &v, 4); }
static void put64(struct out *o, uint64_t v) { put(o, &v, 8); }

static uint32_t crc(const void *p, size_t n)
{
	return crc32(0, p, n);
}

/* A block's checksum covers its type too: a damaged type must not pass as an unknown block. */
static uint32_t block_crc(uint32_t type, const void *p, size_t n)
{
	return crc32(crc32(0, (const void *)&type, 4), p, n);
}

/* Writes a length placeholder, returns its offset; patch_len fills it in after the payload. */
static size_t begin_payload(struct out *o)
{
	size_t at = *o->len;

	put32(o, 0);
	return at;
}

int dt_trace__encode_header(const struct dt_trace_header *h, void **buf, size_t *len, size_t *cap)
{
	struct out o = { buf, len, cap, 0 };
	size_t at, start;
	uint32_t plen, c;

	put(&o, FILE_MAGIC, 8);
	put32(&o, DT_TRACE_VERSION);
	at = begin_payload(&o);
	start = *len;
	put32(&o, h->page_size);
	put32(&o, h->source);
	put32(&o, h->clock);
	put32(&o, 0);	/* reserved */
	put64(&o, h->start_ns);
	put64(&o, h->start_unix_ns);
	put32(&o, h->pid);
	put32(&o, h->nr_vcpus);
	put32(&o, h->ring_entries);
	put64(&o, h->kvm);
	put(&o, h->comm, 16);
	put32(&o, h->nr_slots);
	for (uint32_t i = 0; i < h->nr_slots; i++) {
		const struct dt_slot *s = &h->slots[i];

		put(&o, &s->as_id, 2);
		put(&o, &s->id, 2);
		put32(&o, s->flags);
		put64(&o, s->base_gfn);
		put64(&o, s->npages);
		put64(&o, s->userspace_addr);
	}
	if (o.err)
		return o.err;
	plen = *len - start;
	memcpy((char *)*buf + at, &plen, 4);
	c = crc((char *)*buf + start, plen);
	put32(&o, c);
	return o.err;
}

int dt_trace__encode_epoch(const struct dt_trace_epoch *e, void **buf, size_t *len, size_t *cap)
{
	struct out o = { buf, len, cap, 0 };
	uint32_t type = e->events ? BLOCK_EVENTS : BLOCK_EPOCH, plen, c;
	size_t hdr = *len, start;

	put32(&o, BLOCK_MAGIC);
	put32(&o, type);
	put32(&o, 0);	/* length and crc, filled in below */
	put32(&o, 0);
	start = *len;
	put64(&o, e->seq);
	put64(&o, e->start_ns);
	put64(&o, e->end_ns);
	put64(&o, e->raw);
	put64(&o, e->recovered);
	put32(&o, e->nr_gfns);
	put32(&o, 0);
	for (size_t i = 0; i < e->nr_gfns; i++) {
		const struct dt_gfn *g = &e->gfns[i];

		put64(&o, g->gfn != DT_GFN_NONE ? g->gfn : UNRESOLVED | g->offset);
		put(&o, &e->gfns[i].as_id, 2);
		put(&o, &e->gfns[i].slot, 2);
		put(&o, &e->gfns[i].vcpu, 4);
		if (e->events)
			put64(&o, g->ts);
	}
	if (o.err)
		return o.err;
	plen = *len - start;
	c = block_crc(type, (char *)*buf + start, plen);
	memcpy((char *)*buf + hdr + 8, &plen, 4);
	memcpy((char *)*buf + hdr + 12, &c, 4);
	return 0;
}

struct dt_trace_reader {
	const unsigned char *p;
	size_t len, off;
	bool truncated;
	struct dt_trace_header h;
	struct dt_gfn *gfns;
	size_t cap;
};

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* The page's index in its slot, from the header's slot table (0 when the slot is not there). */
static uint64_t slot_offset(const struct dt_trace_header *h, const struct dt_gfn *g)
{
	for (uint32_t i = 0; i < h->nr_slots; i++) {
		const struct dt_slot *s = &h->slots[i];

		if (s->as_id == g->as_id && s->id == g->slot && g->gfn >= s->base_gfn)
			return g->gfn - s->base_gfn;
	}
	return 0;
}

#define WHY(...) do { if (why) snprintf(why, whysz, __VA_ARGS__); } while (0)

struct dt_trace_reader *dt_trace_reader__new(const void *buf, size_t len, char *why, size_t whysz)
{
	const unsigned char *p = buf;
	struct dt_trace_reader *r;
	struct dt_trace_header *h;
	uint32_t plen, ver;
	const unsigned char *q;

	if (len < 16 || memcmp(p, FILE_MAGIC, 8)) {
		WHY("not a dirtytrace trace (no DTTRACE magic)");
		errno = EBADMSG;
		return NULL;
	}
	ver = get32(p + 8);
	if (ver > DT_TRACE_VERSION) {
		WHY("trace version %u is newer than this dirtytrace (%u)", ver, DT_TRACE_VERSION);
		errno = ENOTSUP;
		return NULL;
	}
	plen = get32(p + 12);
	if (plen < HEADER_FIXED || plen > len - 16 || len - 16 - plen < 4) {
		WHY("trace header cut short or damaged");
		errno = EBADMSG;
		return NULL;
	}
	q = p + 16;
	if (crc(q, plen) != get32(q + plen)) {
		WHY("trace header damaged (checksum)");
		errno = EBADMSG;
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	h = &r->h;
	h->version = ver;
	h->page_size = get32(q);
	h->source = get32(q + 4);
	h->clock = get32(q + 8);
	h->start_ns = get64(q + 16);
	h->start_unix_ns = get64(q + 24);
	h->pid = get32(q + 32);
	h->nr_vcpus = get32(q + 36);
	h->ring_entries = get32(q + 40);
	h->kvm = get64(q + 44);
	memcpy(h->comm, q + 52, 16);
	h->comm[15] = 0;
	h->nr_slots = get32(q + 68);
	if ((uint64_t)h->nr_slots * SLOT_BYTES != plen - HEADER_FIXED) {
		WHY("trace header damaged (slot table)");
		free(r);
		errno = EBADMSG;
		return NULL;
	}
	h->slots = calloc(h->nr_slots ? h->nr_slots : 1, sizeof(*h->slots));
	if (!h->slots) {
		free(r);
		return NULL;
	}
	for (uint32_t i = 0; i < h->nr_slots; i++) {
		const unsigned char *s = q + HEADER_FIXED + i * SLOT_BYTES;

		memcpy(&h->slots[i].as_id, s, 2);
		memcpy(&h->slots[i].id, s + 2, 2);
		h->slots[i].flags = get32(s + 4);
		h->slots[i].base_gfn = get64(s + 8);
		h->slots[i].npages = get64(s + 16);
		h->slots[i].userspace_addr = get64(s + 24);
	}
	r->p = p;
	r->len = len;
	r->off = 16 + plen + 4;
	return r;
}

void dt_trace_reader__free(struct dt_trace_reader *r)
{
	if (!r)
		return;
	free(r->h.slots);
	free(r->gfns);
	free(r);
}

const struct dt_trace_header *dt_trace_reader__header(const struct dt_trace_reader *r)
{
	return &r->h;
}

bool dt_trace_reader__truncated(const struct dt_trace_reader *r)
{
	return r->truncated;
}

int dt_trace_reader__next(struct dt_trace_reader *r, struct dt_trace_epoch *e, char *why,
			  size_t whysz)
{
	const unsigned char *b, *q;
	size_t left, each;
	uint32_t plen, n, type;

	memset(e, 0, sizeof(*e));
	for (;;) {	/* skips blocks of types from a newer writer */
		b = r->p + r->off;
		left = r->len - r->off;
		if (!left)
			return 0;
		if (left >= 4 && get32(b) != BLOCK_MAGIC)
			goto damaged;
		if (left < 16 || left - 16 < get32(b + 8)) {
			/* the last block was being written when the recording stopped */
			r->truncated = true;
			r->off = r->len;
			return 0;
		}
		plen = get32(b + 8);
		q = b + 16;
		if (plen > MAX_PAYLOAD || block_crc(get32(b + 4), q, plen) != get32(b + 12))
			goto damaged;
		type = get32(b + 4);
		if (type == BLOCK_EPOCH || type == BLOCK_EVENTS)
			break;
		r->off += 16 + plen;
	}
	if (plen < EPOCH_FIXED)
		goto damaged;
	n = get32(q + 40);
	each = type == BLOCK_EVENTS ? EVENT_BYTES : GFN_BYTES;
	if ((uint64_t)n * each != plen - EPOCH_FIXED)
		goto damaged;
	if (dt_grow((void **)&r->gfns, &r->cap, n ? n : 1, sizeof(*r->gfns)))
		return -ENOMEM;
	e->seq = get64(q);
	e->start_ns = get64(q + 8);
	e->end_ns = get64(q + 16);
	e->raw = get64(q + 24);
	e->recovered = get64(q + 32);
	e->events = type == BLOCK_EVENTS;
	e->nr_gfns = n;
	e->gfns = r->gfns;
	for (uint32_t i = 0; i < n; i++) {
		const unsigned char *g = q + EPOCH_FIXED + (size_t)i * each;

		struct dt_gfn *d = &r->gfns[i];
		uint64_t v = get64(g);

		memset(d, 0, sizeof(*d));
		memcpy(&d->as_id, g + 8, 2);
		memcpy(&d->slot, g + 10, 2);
		memcpy(&d->vcpu, g + 12, 4);
		if (e->events)
			d->ts = get64(g + 16);
		if (v & UNRESOLVED) {
			d->gfn = DT_GFN_NONE;
			d->offset = v & ~UNRESOLVED;
		} else {
			d->gfn = v;
			d->offset = slot_offset(&r->h, d);
		}
	}
	r->off += 16 + plen;
	return 1;
damaged:
	WHY("damaged block at byte %zu", r->off);
	return -EBADMSG;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Pure core: writable working set over time. Two open-addressing tables keyed by page: one maps
 * each page to the end of the last epoch that dirtied it (pruned to max_span), one only records
 * that a page was ever seen (the cumulative total).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

/* Key 0 marks an empty bucket, so keys are never 0 (see page_key). */
struct table {
	uint64_t *keys;
	uint64_t *vals;		/* NULL for a set */
	size_t cap, n;		/* cap: a power of two, kept at most half full */
};

struct dt_wss {
	uint64_t max_span, newest;
	uint64_t last_len;	/* time between the last two epoch ends */
	struct table recent;	/* page -> last dirtied (epoch end) */
	struct table ever;
};

/* (as_id, gfn), or (as_id, slot, offset) for an unresolved page; bit 63 keeps them apart. */
static uint64_t page_key(const struct dt_gfn *g)
{
	if (g->gfn != DT_GFN_NONE)
		return ((uint64_t)g->as_id << 48 | (g->gfn & ((1ull << 48) - 1))) + 1;
	return (1ull << 63 | (uint64_t)g->as_id << 56 | (uint64_t)g->slot << 40 |
		(g->offset & ((1ull << 40) - 1))) + 1;
}

static size_t slot_of(const struct table *t, uint64_t key)
{
	size_t i = (key * 0x9e3779b97f4a7c15ull) >> 20 & (t->cap - 1);

	while (t->keys[i] && t->keys[i] != key)
		i = (i + 1) & (t->cap - 1);
	return i;
}

static int table_init(struct table *t, size_t cap, bool vals)
{
	t->keys = calloc(cap, sizeof(*t->keys));
	t->vals = vals ? calloc(cap, sizeof(*t->vals)) : NULL;
	t->cap = cap;
	t->n = 0;
	if (!t->keys || (vals && !t->vals)) {
		free(t->keys);
		free(t->vals);
		return -ENOMEM;
	}
	return 0;
}

/* Rebuilds t into a table of cap buckets, keeping the entries with val >= min_val. */
static int table_rebuild(struct table *t, size_t cap, uint64_t min_val)
{
	struct table nt;

	if (table_init(&nt, cap, t->vals != NULL))
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		size_t j;

		if (!t->keys[i] || (t->vals && t->vals[i] < min_val))
			continue;
		j = slot_of(&nt, t->keys[i]);
		nt.keys[j] = t->keys[i];
		if (nt.vals)
			nt.vals[j] = t->vals[i];
		nt.n++;
	}
	free(t->keys);
	free(t->vals);
	*t = nt;
	return 0;
}

/* Inserts key (or updates its value); 1 if it is new. */
static int table_put(struct table *t, uint64_t key, uint64_t val)
{
	size_t i;
	int fresh;

	if ((t->n + 1) * 2 > t->cap && table_rebuild(t, t->cap * 2, 0))
		return -ENOMEM;
	i = slot_of(t, key);
	fresh = !t->keys[i];
	t->keys[i] = key;
	if (t->vals)
		t->vals[i] = val;
	t->n += fresh;
	return fresh;
}

struct dt_wss *dt_wss__new(uint64_t max_span_ns)
{
	struct dt_wss *w;

	if (!max_span_ns) {
		errno = EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->max_span = max_span_ns;
	if (table_init(&w->recent, 64, true) || table_init(&w->ever, 64, false)) {
		dt_wss__free(w);
		errno = ENOMEM;
		return NULL;
	}
	return w;
}

void dt_wss__free(struct dt_wss *w)
{
	if (!w)
		return;
	free(w->recent.keys);
	free(w->recent.vals);
	free(w->ever.keys);
	free(w);
}

int dt_wss__add(struct dt_wss *w, uint64_t end_ns, const struct dt_gfn *gfns, size_t n)
{
	if (end_ns < w->newest)
		return -EINVAL;
	w->last_len = end_ns - w->newest;
	w->newest = end_ns;
	for (size_t i = 0; i < n; i++) {
		uint64_t key = page_key(&gfns[i]);

		if (table_put(&w->recent, key, end_ns) < 0 || table_put(&w->ever, key, 0) < 0)
			return -ENOMEM;
	}
	/* forget pages older than the longest span once they are a quarter of the table */
	if (end_ns > w->max_span) {
		uint64_t cutoff = end_ns - w->max_span, old = 0;

		for (size_t i = 0; i < w->recent.cap; i++)
			old += w->recent.keys[i] && w->recent.vals[i] <= cutoff;
		if (old * 4 > w->recent.n) {
			size_t cap = 64;

			while ((w->recent.n - old + 1) * 2 > cap)
				cap *= 2;
			if (table_rebuild(&w->recent, cap, cutoff + 1))
				return -ENOMEM;
		}
	}
	return 0;
}

uint64_t dt_wss__pages(const struct dt_wss *w, uint64_t span_ns)
{
	uint64_t n = 0, cutoff;

	uint64_t tol;

	if (span_ns > w->max_span)
		span_ns = w->max_span;
	/*
	 * Epochs end at jittery times: with 1 s epochs the one before the newest ends about 1 s
	 * earlier, right on a 1 s window's edge. Half an epoch of slack puts the edge between
	 * two ends, so a span of S holds S / epoch-length epochs.
	 */
	tol = (w->last_len < span_ns ? w->last_len : span_ns) / 2;
	cutoff = w->newest + tol > span_ns ? w->newest + tol - span_ns : 0;
	for (size_t i = 0; i < w->recent.cap; i++)
		n += w->recent.keys[i] && w->recent.vals[i] > cutoff;
	return n;
}

uint64_t dt_wss__total(const struct dt_wss *w)
{
	return w->ever.n;
}

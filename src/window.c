// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Pure core: dirty rates over a sliding window of epochs (a ring of the newest epochs). */
#include <errno.h>
#include <stdlib.h>
#include "internal.h"

struct epoch_sample {
	uint64_t start, end, raw, pages;
};

struct dt_window {
	uint64_t span;
	size_t cap, head, n;	/* samples[(head + i) % cap], oldest first */
	struct epoch_sample s[];
};

struct dt_window *dt_window__new(uint64_t span_ns, size_t max_epochs)
{
	struct dt_window *w;

	if (!span_ns || !max_epochs || max_epochs > (1u << 24)) {
		errno = EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w) + max_epochs * sizeof(w->s[0]));
	if (!w)
		return NULL;
	w->span = span_ns;
	w->cap = max_epochs;
	return w;
}

void dt_window__free(struct dt_window *w)
{
	free(w);
}

static struct epoch_sample *at(const struct dt_window *w, size_t i)
{
	return (struct epoch_sample *)&w->s[(w->head + i) % w->cap];
}

int dt_window__add(struct dt_window *w, uint64_t start_ns, uint64_t end_ns, uint64_t raw,
		   uint64_t pages)
{
	if (end_ns < start_ns || (w->n && start_ns < at(w, w->n - 1)->end))
		return -EINVAL;
	if (w->n == w->cap) {	/* full: the oldest goes */
		w->head = (w->head + 1) % w->cap;
		w->n--;
	}
	*at(w, w->n++) = (struct epoch_sample){ start_ns, end_ns, raw, pages };
	/* keep the epochs that end within the span of the newest end */
	while (w->n > 1 && at(w, 0)->end + w->span <= end_ns) {
		w->head = (w->head + 1) % w->cap;
		w->n--;
	}
	return 0;
}

void dt_window__rate(const struct dt_window *w, struct dt_rate *out)
{
	uint64_t raw = 0, pages = 0, busy = 0;

	*out = (struct dt_rate){ .epochs = w->n };
	for (size_t i = 0; i < w->n; i++) {
		raw += at(w, i)->raw;
		pages += at(w, i)->pages;
		busy += at(w, i)->end - at(w, i)->start;
	}
	/* time between epochs is not observed time: rates are over the epochs themselves */
	out->covered_ns = busy;
	if (!busy)
		return;
	out->raw_per_s = raw * 1e9 / busy;
	out->pages_per_s = pages * 1e9 / busy;
}

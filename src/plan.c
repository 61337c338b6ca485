// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Pure core of dirtyplan: a precopy/postcopy migration model driven by a dirty trace. The model
 * and its assumptions are described in include/dirtytrace/plan.h.
 *
 * Pages get dense ids (0..nr_pages-1) when they are added, so a union over an interval is a walk
 * over the epochs it covers with a generation-stamped array, no hashing. Each epoch keeps its ids
 * in the order of its virtual write moments (a hash of page and epoch), so the pages of an
 * epoch falling in [x, y) are one contiguous slice of that array.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirtytrace/plan.h>
#include "internal.h"

/* ---- units ---- */

/* Splits "<number><spaces><unit>" into a value and the unit; -EINVAL when there is no number.
 * The caller checks the unit first: a bad unit is -EINVAL even on a zero. */
static int parse_number(const char *s, double *v, const char **unit)
{
	const char *p = s;
	bool neg = false, digits = false;
	char buf[64];
	size_t len;

	if (!s)
		return -EINVAL;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	s = p;
	while (isdigit((unsigned char)*p)) {
		p++;
		digits = true;
	}
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p)) {
			p++;
			digits = true;
		}
	}
	if (!digits)
		return -EINVAL;
	/* strtod alone would take "inf", "nan" and hex: only plain decimals are numbers here */
	len = p - s;
	if (len >= sizeof(buf))
		return -ERANGE;
	memcpy(buf, s, len);
	buf[len] = '\0';
	*v = strtod(buf, NULL);
	while (isspace((unsigned char)*p))
		p++;
	*unit = p;
	if (neg)
		*v = -*v;
	return 0;
}

struct unit {
	const char *name;
	double mult;
};

static int find_unit(const struct unit *units, size_t n, const char *u, size_t len, double *mult)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(units[i].name) == len && !strncasecmp(units[i].name, u, len)) {
			*mult = units[i].mult;
			return 0;
		}
	}
	return -EINVAL;
}

int dt_plan_parse_bandwidth(const char *s, double *bytes_per_s)
{
	static const struct unit units[] = {
		{ "", 1 }, { "b", 1 },
		{ "k", 0x1p10 }, { "kb", 0x1p10 }, { "kib", 0x1p10 },
		{ "m", 0x1p20 }, { "mb", 0x1p20 }, { "mib", 0x1p20 },
		{ "g", 0x1p30 }, { "gb", 0x1p30 }, { "gib", 0x1p30 },
		{ "t", 0x1p40 }, { "tb", 0x1p40 }, { "tib", 0x1p40 },
		{ "bit", 1 / 8.0 }, { "bps", 1 / 8.0 },
		{ "kbit", 1e3 / 8 }, { "kbps", 1e3 / 8 },
		{ "mbit", 1e6 / 8 }, { "mbps", 1e6 / 8 },
		{ "gbit", 1e9 / 8 }, { "gbps", 1e9 / 8 },
		{ "tbit", 1e12 / 8 }, { "tbps", 1e12 / 8 },
	};
	const char *u = NULL;
	double v, mult;
	size_t len;
	int err;

	err = parse_number(s, &v, &u);
	if (err)
		return err;
	len = strlen(u);
	while (len && isspace((unsigned char)u[len - 1]))
		len--;
	if (len >= 2 && !strncasecmp(u + len - 2, "/s", 2))
		len -= 2;
	if (find_unit(units, sizeof(units) / sizeof(units[0]), u, len, &mult))
		return -EINVAL;
	v *= mult;
	if (!(v > 0) || !isfinite(v) || v > 0x1p53)
		return -ERANGE;
	*bytes_per_s = v;
	return 0;
}

int dt_plan_parse_duration(const char *s, uint64_t *ns)
{
	static const struct unit units[] = {
		{ "ns", 1 }, { "us", 1e3 }, { "ms", 1e6 }, { "s", 1e9 },
		{ "m", 60e9 }, { "min", 60e9 }, { "h", 3600e9 },
	};
	const char *u = NULL;
	double v, mult;
	size_t len;
	int err;

	err = parse_number(s, &v, &u);
	if (err)
		return err;
	len = strlen(u);
	while (len && isspace((unsigned char)u[len - 1]))
		len--;
	if (!len || find_unit(units, sizeof(units) / sizeof(units[0]), u, len, &mult))
		return -EINVAL;
	v *= mult;
	if (!(v > 0) || !isfinite(v) || v >= 0x1p63)
		return -ERANGE;
	v = round(v);
	if (v < 1)
		return -ERANGE;
	*ns = (uint64_t)v;
	return 0;
}

/* ---- the workload ---- */

struct wl_page {
	uint64_t gfn;		/* DT_GFN_NONE: unresolved, see slot/offset */
	uint64_t offset;
	uint16_t as_id;
	uint16_t slot;
};

struct wl_epoch {
	double pos, len;	/* on the watched timeline, seconds */
	uint64_t raw;
	size_t first;		/* into ids */
	uint32_t n;
	uint32_t max_vcpu;	/* most pages one vCPU (or the unknown bucket) dirtied */
};

struct dt_workload {
	uint64_t ram_pages;
	uint32_t page_size;
	bool zero_known;
	uint64_t zero_pages;
	struct wl_epoch *ep;
	size_t nr_ep, cap_ep;
	uint32_t *ids;		/* per epoch, in virtual write order */
	size_t nr_ids, cap_ids;
	struct wl_page *pages;	/* by id */
	size_t nr_pages, cap_pages;
	uint64_t *hkeys;	/* page key -> id, open addressing, key 0 = empty */
	uint32_t *hvals;
	size_t hcap;
	uint32_t *seen;		/* per id: last epoch (+1) that added it, for duplicates */
	int32_t *vcpus;		/* distinct vCPU ids seen, sorted */
	size_t nr_vcpus, cap_vcpus;
	double length;
	uint64_t last_end_ns;
	uint64_t raw;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* (as_id, gfn), or (as_id, slot, offset) for an unresolved page; never 0. */
static uint64_t page_key(const struct dt_gfn *g)
{
	if (g->gfn != DT_GFN_NONE)
		return ((uint64_t)g->as_id << 48 | (g->gfn & ((1ull << 48) - 1))) + 1;
	return (1ull << 63 | (uint64_t)g->as_id << 56 | (uint64_t)g->slot << 40 |
		(g->offset & ((1ull << 40) - 1))) + 1;
}

static size_t hslot(const struct dt_workload *w, uint64_t key)
{
	size_t i = mix64(key) & (w->hcap - 1);

	while (w->hkeys[i] && w->hkeys[i] != key)
		i = (i + 1) & (w->hcap - 1);
	return i;
}

static int hgrow(struct dt_workload *w)
{
	size_t ocap = w->hcap, ncap = ocap ? ocap * 2 : 1024;
	uint64_t *ok = w->hkeys;
	uint32_t *ov = w->hvals;

	w->hkeys = calloc(ncap, sizeof(*w->hkeys));
	w->hvals = calloc(ncap, sizeof(*w->hvals));
	if (!w->hkeys || !w->hvals) {
		free(w->hkeys);
		free(w->hvals);
		w->hkeys = ok;
		w->hvals = ov;
		return -ENOMEM;
	}
	w->hcap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (ok[i]) {
			size_t j = hslot(w, ok[i]);

			w->hkeys[j] = ok[i];
			w->hvals[j] = ov[i];
		}
	}
	free(ok);
	free(ov);
	return 0;
}

/* The id of g's page, a new one if it was never seen; -ENOMEM. */
static int64_t page_id(struct dt_workload *w, const struct dt_gfn *g)
{
	uint64_t key = page_key(g);
	size_t i;
	int err;

	if ((w->nr_pages + 1) * 2 > w->hcap && (err = hgrow(w)))
		return err;
	i = hslot(w, key);
	if (w->hkeys[i])
		return w->hvals[i];
	if (w->nr_pages >= UINT32_MAX)
		return -ENOMEM;
	if (w->nr_pages == w->cap_pages) {
		size_t cap = w->cap_pages;

		if (dt_grow((void **)&w->pages, &cap, w->nr_pages + 1, sizeof(*w->pages)))
			return -ENOMEM;
		cap = w->cap_pages;
		if (dt_grow((void **)&w->seen, &cap, w->nr_pages + 1, sizeof(*w->seen)))
			return -ENOMEM;
		w->cap_pages = cap;
	}
	w->hkeys[i] = key;
	w->hvals[i] = w->nr_pages;
	w->pages[w->nr_pages] = (struct wl_page){ .gfn = g->gfn, .offset = g->offset,
						  .as_id = g->as_id, .slot = g->slot };
	w->seen[w->nr_pages] = 0;
	return w->nr_pages++;
}

struct dt_workload *dt_workload__new(uint64_t ram_pages, uint32_t page_size)
{
	struct dt_workload *w;

	if (!ram_pages || page_size < 512 || (page_size & (page_size - 1))) {
		errno = EINVAL;
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		errno = ENOMEM;
		return NULL;
	}
	w->ram_pages = ram_pages;
	w->page_size = page_size;
	return w;
}

void dt_workload__free(struct dt_workload *w)
{
	if (!w)
		return;
	free(w->ep);
	free(w->ids);
	free(w->pages);
	free(w->hkeys);
	free(w->hvals);
	free(w->seen);
	free(w->vcpus);
	free(w);
}

struct ordered {
	uint64_t h;
	uint32_t id;
};

static int cmp_ordered(const void *a, const void *b)
{
	const struct ordered *x = a, *y = b;

	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return x < y ? -1 : x > y;
}

static int note_vcpu(struct dt_workload *w, int32_t v)
{
	size_t lo = 0, hi = w->nr_vcpus;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (w->vcpus[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < w->nr_vcpus && w->vcpus[lo] == v)
		return 0;
	if (dt_grow((void **)&w->vcpus, &w->cap_vcpus, w->nr_vcpus + 1, sizeof(*w->vcpus)))
		return -ENOMEM;
	memmove(w->vcpus + lo + 1, w->vcpus + lo, (w->nr_vcpus - lo) * sizeof(*w->vcpus));
	w->vcpus[lo] = v;
	w->nr_vcpus++;
	return 0;
}

int dt_workload__add(struct dt_workload *w, uint64_t start_ns, uint64_t end_ns, uint64_t raw,
		     const struct dt_gfn *gfns, size_t n)
{
	struct ordered *ord = NULL;
	int32_t *vc = NULL;
	struct wl_epoch *e;
	uint32_t tag, m = 0, run = 0, best = 0;
	int err = -ENOMEM;

	if (!w || (n && !gfns) || end_ns < start_ns || (w->nr_ep && start_ns < w->last_end_ns))
		return -EINVAL;
	if (w->nr_ep >= UINT32_MAX - 1 || n > UINT32_MAX)
		return -ENOMEM;
	if (dt_grow((void **)&w->ep, &w->cap_ep, w->nr_ep + 1, sizeof(*w->ep)))
		return -ENOMEM;
	if (n && (!(ord = malloc(n * sizeof(*ord))) || !(vc = malloc(n * sizeof(*vc)))))
		goto out;
	tag = w->nr_ep + 1;
	for (size_t i = 0; i < n; i++) {
		int64_t id = page_id(w, &gfns[i]);

		if (id < 0)
			goto out;
		if (w->seen[id] == tag)
			continue;	/* a duplicate in this epoch */
		w->seen[id] = tag;
		ord[m].h = mix64((uint64_t)id * 0x9e3779b97f4a7c15ull ^ mix64(tag));
		ord[m].id = id;
		vc[m] = gfns[i].vcpu < 0 ? -1 : gfns[i].vcpu;
		if (gfns[i].vcpu >= 0 && note_vcpu(w, gfns[i].vcpu))
			goto out;
		m++;
	}
	if (dt_grow((void **)&w->ids, &w->cap_ids, w->nr_ids + m, sizeof(*w->ids)))
		goto out;
	dt_sort(ord, m, sizeof(*ord), cmp_ordered);
	dt_sort(vc, m, sizeof(*vc), cmp_i32);
	for (uint32_t i = 0; i < m; i++) {
		w->ids[w->nr_ids + i] = ord[i].id;
		run = i && vc[i] == vc[i - 1] ? run + 1 : 1;
		if (run > best)
			best = run;
	}
	e = &w->ep[w->nr_ep++];
	e->pos = w->length;
	e->len = (end_ns - start_ns) / 1e9;
	e->raw = raw;
	e->first = w->nr_ids;
	e->n = m;
	e->max_vcpu = best;
	w->nr_ids += m;
	w->length += e->len;
	w->last_end_ns = end_ns;
	w->raw += raw;
	err = 0;
out:
	free(ord);
	free(vc);
	return err;
}

int dt_workload__add_trace_epoch(struct dt_workload *w, const struct dt_trace_epoch *e)
{
	if (!e)
		return -EINVAL;
	return dt_workload__add(w, e->start_ns, e->end_ns, e->raw, e->gfns, e->nr_gfns);
}

int dt_workload__add_epoch(struct dt_workload *w, const struct dt_epoch *e, pid_t pid)
{
	const struct dt_epoch_vm *vm;

	if (!e)
		return -EINVAL;
	vm = dt_epoch__vm(e, pid);
	if (!vm)
		return dt_workload__add(w, e->start_ns, e->end_ns, 0, NULL, 0);
	return dt_workload__add(w, e->start_ns, e->end_ns, 0, vm->gfns, vm->nr_gfns);
}

int dt_workload__set_zero_pages(struct dt_workload *w, uint64_t zero_pages)
{
	if (!w || zero_pages > w->ram_pages)
		return -EINVAL;
	w->zero_known = true;
	w->zero_pages = zero_pages;
	return 0;
}

void dt_workload__info(const struct dt_workload *w, struct dt_workload_info *out)
{
	memset(out, 0, sizeof(*out));
	if (!w)
		return;
	out->epochs = w->nr_ep;
	out->seconds = w->length;
	out->page_epochs = w->nr_ids;
	out->distinct_pages = w->nr_pages;
	out->raw = w->raw;
	out->pages_per_s = w->length > 0 ? w->nr_ids / w->length : 0;
	out->vcpus = w->nr_vcpus;
}

/* ---- parameters ---- */

void dt_plan_params__init(struct dt_plan_params *p)
{
	memset(p, 0, sizeof(*p));
	p->bandwidth = 128.0 * (1 << 20);
	p->downtime_limit_ns = 300000000ull;
	p->max_iterations = 100;
	p->stall_iterations = 10;
	p->page_header_bytes = 8;
	p->cpu_throttle_initial = 20;
	p->cpu_throttle_increment = 10;
	p->max_cpu_throttle = 99;
	p->postcopy_after_passes = 1;
	p->max_slowdown = 0.5;
}

static int check_params(const struct dt_workload *w, const struct dt_plan_params *p)
{
	if (!w || !p)
		return -EINVAL;
	if (!(p->bandwidth > 0) || !isfinite(p->bandwidth) || !(p->switchover_bandwidth >= 0) ||
	    !isfinite(p->switchover_bandwidth) || !p->downtime_limit_ns || !p->max_iterations ||
	    (p->page_size && p->page_size != w->page_size) || p->throttle_pct > 99 ||
	    !(p->dirty_limit >= 0) || !isfinite(p->dirty_limit) ||
	    !(p->assume_zero_frac >= 0 && p->assume_zero_frac <= 1) ||
	    !(p->max_slowdown >= 0 && p->max_slowdown <= 1) || p->max_cpu_throttle > 99)
		return -EINVAL;
	if (!w->nr_ep || !(w->length > 0))
		return -ENODATA;
	return 0;
}

/* ---- timeline: the epochs end to end, stretched by a throttle or a dirty limit ---- */

struct timeline {
	const struct dt_workload *w;
	double *pos, *len;
	double L;
};

static int tl_init(struct timeline *t, const struct dt_workload *w, double throttle,
		   double limit_pages)
{
	double at = 0;

	t->w = w;
	t->pos = malloc((w->nr_ep + 1) * sizeof(*t->pos));
	t->len = malloc((w->nr_ep + 1) * sizeof(*t->len));
	if (!t->pos || !t->len) {
		free(t->pos);
		free(t->len);
		return -ENOMEM;
	}
	for (size_t i = 0; i < w->nr_ep; i++) {
		double len = w->ep[i].len / (1 - throttle);

		if (limit_pages > 0 && w->ep[i].max_vcpu / limit_pages > len)
			len = w->ep[i].max_vcpu / limit_pages;
		t->pos[i] = at;
		t->len[i] = len;
		at += len;
	}
	t->L = at;
	return 0;
}

static void tl_free(struct timeline *t)
{
	free(t->pos);
	free(t->len);
}

/* Marks the pages dirtied in intervals; counts the new ones. */
struct marker {
	const struct timeline *t;
	uint32_t *stamp;
	uint32_t gen;
	uint64_t count;
	/* postcopy: first writes to pending pages within [t0, t0 + E) */
	bool post;
	const uint32_t *pend;	/* NULL: every page is pending */
	uint32_t pend_gen;
	double t0, E;
	uint64_t fault_pages;
	double faults;
};

static size_t rank_at(double x, double pos, double len, uint32_t n)
{
	double r = ceil((x - pos) / len * n - 0.5);

	if (r <= 0)
		return 0;
	return r >= n ? n : (size_t)r;
}

static void mark_slice(struct marker *m, size_t i, size_t lo, size_t hi, double at)
{
	const struct wl_epoch *e = &m->t->w->ep[i];
	const uint32_t *ids = m->t->w->ids + e->first;
	double len = m->t->len[i];

	for (size_t r = lo; r < hi; r++) {
		uint32_t id = ids[r];

		if (m->stamp[id] == m->gen)
			continue;
		m->stamp[id] = m->gen;
		m->count++;
		if (m->post && (!m->pend || m->pend[id] == m->pend_gen)) {
			double when = at + m->t->pos[i] + len * (r + 0.5) / e->n - m->t0;

			m->fault_pages++;
			if (when < m->E)
				m->faults += 1 - (when > 0 ? when : 0) / m->E;
		}
	}
}

/* [x, y) within one replay of the recording, which starts at simulated time at. */
static void mark_seg(struct marker *m, double x, double y, double at)
{
	const struct timeline *t = m->t;
	size_t lo = 0, hi = t->w->nr_ep;
	bool to_end = y >= t->L;

	while (lo < hi) {	/* the first epoch ending at or after x */
		size_t mid = (lo + hi) / 2;

		if (t->pos[mid] + t->len[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < t->w->nr_ep && (t->pos[i] < y || to_end); i++) {
		const struct wl_epoch *e = &t->w->ep[i];

		if (!e->n)
			continue;
		if (t->len[i] <= 0) {
			/* all its pages at its instant; one at the very end belongs to [x, L] */
			if (t->pos[i] >= x && (t->pos[i] < y || to_end))
				mark_slice(m, i, 0, e->n, at);
			continue;
		}
		mark_slice(m, i, rank_at(x, t->pos[i], t->len[i], e->n),
			   rank_at(y, t->pos[i], t->len[i], e->n), at);
	}
}

/* Pages dirtied in simulated [a, b) (seconds, a >= 0). Without marks to keep (counting only),
 * an interval covering a whole replay is every page at once. */
static uint64_t mark_interval(struct marker *m, double a, double b, bool keep_marks)
{
	double L = m->t->L, x, y, k;

	m->count = 0;
	if (!(b > a))
		return 0;
	if (b - a >= L) {
		if (!keep_marks && !m->post) {
			m->count = m->t->w->nr_pages;
			return m->count;
		}
		b = a + L;
	}
	k = floor(a / L);
	x = a - k * L;
	if (x < 0)
		x = 0;
	if (x >= L) {
		x -= L;
		k++;
	}
	y = x + (b - a);
	if (y <= L) {
		mark_seg(m, x, y, k * L);
	} else {
		mark_seg(m, x, L, k * L);
		mark_seg(m, 0, y - L, (k + 1) * L);
	}
	return m->count;
}

/* ---- precopy ---- */

struct sim {
	const struct dt_workload *w;
	const struct dt_plan_params *p;
	double page_wire, zero_wire;	/* bytes per page on the wire */
	uint64_t zero;
	bool zero_assumed;
	uint32_t *stamp;
	uint32_t gen;
};

static int sim_init(struct sim *s, const struct dt_workload *w, const struct dt_plan_params *p)
{
	int err = check_params(w, p);

	if (err)
		return err;
	s->w = w;
	s->p = p;
	s->page_wire = (double)w->page_size + p->page_header_bytes;
	s->zero_wire = p->page_header_bytes + 1.0;
	if (w->zero_known) {
		s->zero = w->zero_pages;
		s->zero_assumed = false;
	} else {
		s->zero = (uint64_t)floor(p->assume_zero_frac * w->ram_pages);
		s->zero_assumed = true;
	}
	s->gen = 0;
	s->stamp = calloc(w->nr_pages + 1, sizeof(*s->stamp));
	return s->stamp ? 0 : -ENOMEM;
}

static void sim_free(struct sim *s)
{
	free(s->stamp);
}

static uint32_t next_gen(struct sim *s)
{
	if (++s->gen == 0) {	/* wrapped: old stamps could match again */
		memset(s->stamp, 0, (s->w->nr_pages + 1) * sizeof(*s->stamp));
		s->gen = 1;
	}
	return s->gen;
}

static int run_precopy(struct sim *s, double throttle, double limit_pages,
		       struct dt_plan_precopy *out)
{
	const struct dt_plan_params *p = s->p;
	const struct dt_workload *w = s->w;
	double bw = p->bandwidth, sw_bw = p->switchover_bandwidth > 0 ? p->switchover_bandwidth : bw;
	double thr = bw * (p->downtime_limit_ns / 1e9), t = 0;
	uint64_t pend = 0, total = 0, rem = 0, best = UINT64_MAX;
	uint32_t since_best = 0;
	double best_t = 0;
	struct timeline tl;
	struct marker m = { .stamp = s->stamp };
	size_t cap = 0;
	int err;

	memset(out, 0, sizeof(*out));
	err = tl_init(&tl, w, throttle, limit_pages);
	if (err)
		return err;
	m.t = &tl;
	out->threshold_bytes = (uint64_t)thr;
	out->zero_pages = s->zero;
	out->zero_pages_assumed = s->zero_assumed;
	for (uint32_t k = 0;; k++) {
		struct dt_plan_iter it = { 0 };

		if (k == 0) {
			it.pages = w->ram_pages - s->zero;
			it.zero_pages = s->zero;
		} else {
			it.pages = pend;
		}
		it.bytes = (uint64_t)(it.pages * s->page_wire + it.zero_pages * s->zero_wire);
		it.seconds = it.bytes / bw;
		m.gen = next_gen(s);
		rem = mark_interval(&m, t, t + it.seconds, false);
		if (rem > w->ram_pages)
			rem = w->ram_pages;
		it.dirtied = rem;
		if (dt_grow((void **)&out->iters, &cap, out->nr_iters + 1, sizeof(*out->iters))) {
			tl_free(&tl);
			dt_plan_precopy__free(out);
			return -ENOMEM;
		}
		out->iters[out->nr_iters++] = it;
		t += it.seconds;
		total += it.bytes;
		/* QEMU's test: the dirty bitmap's pages x page size against bandwidth x limit */
		if ((double)rem * w->page_size <= thr) {
			out->converges = true;
			out->stop = DT_PLAN_CONVERGED;
			break;
		}
		if (k + 1 >= p->max_iterations) {
			out->stop = DT_PLAN_MAX_ITERATIONS;
			break;
		}
		if (p->timeout_ns && t * 1e9 >= p->timeout_ns) {
			out->stop = DT_PLAN_TIMEOUT;
			break;
		}
		if (rem < best) {
			best = rem;
			best_t = t;
			since_best = 0;
		} else if (p->stall_iterations && ++since_best >= p->stall_iterations &&
			   t - best_t >= tl.L) {
			out->stop = DT_PLAN_STALLED;
			break;
		}
		pend = rem;
	}
	out->remaining_pages = rem;
	out->iter_seconds = t;
	out->downtime_s = rem * s->page_wire / sw_bw + p->switchover_ns / 1e9;
	out->total_seconds = t + out->downtime_s;
	out->total_bytes = total + (uint64_t)(rem * s->page_wire);
	out->replays = t / tl.L;
	out->looped = t > tl.L;
	tl_free(&tl);
	return 0;
}

static double limit_pages(const struct dt_workload *w, double bytes_per_s)
{
	return bytes_per_s / w->page_size;
}

int dt_workload__precopy(const struct dt_workload *w, const struct dt_plan_params *p,
			 struct dt_plan_precopy *out)
{
	struct sim s;
	int err;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	err = sim_init(&s, w, p);
	if (err)
		return err;
	err = run_precopy(&s, p->throttle_pct / 100.0, limit_pages(w, p->dirty_limit), out);
	sim_free(&s);
	return err;
}

void dt_plan_precopy__free(struct dt_plan_precopy *r)
{
	if (!r)
		return;
	free(r->iters);
	r->iters = NULL;
	r->nr_iters = 0;
}

/* Whether it converges under (throttle, limit); 1, 0 or -errno. */
static int converges(struct sim *s, double throttle, double limit)
{
	struct dt_plan_precopy r;
	int err = run_precopy(s, throttle, limit, &r);

	if (err)
		return err;
	dt_plan_precopy__free(&r);
	return r.converges;
}

static int min_throttle(struct sim *s, int *pct)
{
	const struct dt_plan_params *p = s->p;
	uint32_t step = p->cpu_throttle_increment, max = p->max_cpu_throttle;
	uint32_t pc = p->cpu_throttle_initial < max ? p->cpu_throttle_initial : max;
	int c = converges(s, 0, 0);

	if (c)
		return c < 0 ? c : (*pct = 0, 0);
	for (;;) {
		c = converges(s, pc / 100.0, 0);
		if (c < 0)
			return c;
		if (c) {
			*pct = pc;
			return 0;
		}
		if (pc >= max || !step)
			break;
		pc = pc + step < max ? pc + step : max;
	}
	*pct = -1;
	return 0;
}

int dt_workload__min_throttle(const struct dt_workload *w, const struct dt_plan_params *p,
			      int *pct)
{
	struct sim s;
	int err;

	if (!pct)
		return -EINVAL;
	err = sim_init(&s, w, p);
	if (err)
		return err;
	err = min_throttle(&s, pct);
	sim_free(&s);
	return err;
}

/* In pages/s per vCPU: 0 not needed, -1 none works. */
static int max_dirty_limit(struct sim *s, double *pages)
{
	const struct dt_workload *w = s->w;
	double lo = 1, hi = 2;
	int c = converges(s, 0, 0);

	if (c)
		return c < 0 ? c : (*pages = 0, 0);
	c = converges(s, 0, lo);
	if (c <= 0)
		return c < 0 ? c : (*pages = -1, 0);
	for (size_t i = 0; i < w->nr_ep; i++)
		if (w->ep[i].len > 0 && w->ep[i].max_vcpu / w->ep[i].len > hi)
			hi = w->ep[i].max_vcpu / w->ep[i].len;
	c = converges(s, 0, hi);
	if (c)
		return c < 0 ? c : (*pages = hi, 0);
	while (hi / lo > 1.005) {
		double mid = sqrt(lo * hi);

		c = converges(s, 0, mid);
		if (c < 0)
			return c;
		if (c)
			lo = mid;
		else
			hi = mid;
	}
	*pages = lo;
	return 0;
}

int dt_workload__max_dirty_limit(const struct dt_workload *w, const struct dt_plan_params *p,
				 double *bytes_per_s, bool *per_vcpu)
{
	struct sim s;
	double pages = 0;
	int err;

	if (!bytes_per_s)
		return -EINVAL;
	err = sim_init(&s, w, p);
	if (err)
		return err;
	err = max_dirty_limit(&s, &pages);
	sim_free(&s);
	if (err)
		return err;
	*bytes_per_s = pages > 0 ? pages * w->page_size : pages;
	if (per_vcpu)
		*per_vcpu = w->nr_vcpus > 0;
	return 0;
}

static int min_bandwidth(struct sim *s, double *out)
{
	struct dt_plan_params q = *s->p;
	const struct dt_plan_params *saved = s->p;
	double lo, hi = q.bandwidth;
	int c, err = 0;

	s->p = &q;
	q.throttle_pct = 0;
	q.dirty_limit = 0;
	c = converges(s, 0, 0);
	if (c < 0) {
		err = c;
		goto out;
	}
	if (c) {
		/* down until it fails */
		for (lo = hi / 2;; lo /= 2) {
			q.bandwidth = lo;
			if ((c = converges(s, 0, 0)) < 0) {
				err = c;
				goto out;
			}
			if (!c)
				break;
			hi = lo;
			if (lo < 1) {
				*out = hi;
				goto out;
			}
		}
	} else {
		for (;;) {
			lo = hi;
			hi *= 2;
			if (hi > 0x1p50) {
				err = -ERANGE;
				goto out;
			}
			q.bandwidth = hi;
			if ((c = converges(s, 0, 0)) < 0) {
				err = c;
				goto out;
			}
			if (c)
				break;
		}
	}
	while (hi / lo > 1.005) {
		double mid = sqrt(lo * hi);

		q.bandwidth = mid;
		if ((c = converges(s, 0, 0)) < 0) {
			err = c;
			goto out;
		}
		if (c)
			hi = mid;
		else
			lo = mid;
	}
	*out = hi;
out:
	s->p = saved;
	return err;
}

int dt_workload__min_bandwidth(const struct dt_workload *w, const struct dt_plan_params *p,
			       double *bytes_per_s)
{
	struct sim s;
	int err;

	if (!bytes_per_s)
		return -EINVAL;
	err = sim_init(&s, w, p);
	if (err)
		return err;
	err = min_bandwidth(&s, bytes_per_s);
	sim_free(&s);
	return err;
}

/* ---- postcopy ---- */

static int run_postcopy(struct sim *s, struct dt_plan_postcopy *out)
{
	const struct dt_plan_params *p = s->p;
	const struct dt_workload *w = s->w;
	double bw = p->bandwidth, t = 0, win;
	uint32_t *pend = NULL, pend_gen = 0;
	uint64_t pending = 0, total = 0;
	struct timeline tl;
	struct marker m = { .stamp = s->stamp };
	int err;

	memset(out, 0, sizeof(*out));
	err = tl_init(&tl, w, p->throttle_pct / 100.0, limit_pages(w, p->dirty_limit));
	if (err)
		return err;
	m.t = &tl;
	out->passes = p->postcopy_after_passes;
	if (out->passes) {
		pend = calloc(w->nr_pages + 1, sizeof(*pend));
		if (!pend) {
			tl_free(&tl);
			return -ENOMEM;
		}
		/* the precopy passes, keeping the set of the last one */
		m.stamp = pend;
		for (uint32_t k = 0; k < out->passes; k++) {
			uint64_t pages = k ? pending : w->ram_pages - s->zero;
			uint64_t bytes = (uint64_t)(pages * s->page_wire +
						    (k ? 0 : s->zero * s->zero_wire));
			double d = bytes / bw;

			m.gen = ++pend_gen;
			pending = mark_interval(&m, t, t + d, true);
			if (pending > w->ram_pages)
				pending = w->ram_pages;
			t += d;
			total += bytes;
		}
		out->pending_pages = pending;
		out->pending_bytes = (uint64_t)(pending * s->page_wire);
	} else {
		out->pending_pages = w->ram_pages;
		out->pending_bytes = (uint64_t)((w->ram_pages - s->zero) * s->page_wire +
						s->zero * s->zero_wire);
	}
	t += p->switchover_ns / 1e9;
	out->switchover_s = t;
	out->precopy_bytes = total;
	out->exposure_s = out->pending_bytes / bw;
	/* the guest's first writes in the window: every page's falls within one replay */
	win = out->exposure_s < tl.L ? out->exposure_s : tl.L;
	m.stamp = s->stamp;
	m.gen = next_gen(s);
	m.post = true;
	m.pend = pend;
	m.pend_gen = pend_gen;
	m.t0 = t;
	m.E = out->exposure_s;
	mark_interval(&m, t, t + win, true);
	/* a trace may hold more distinct pages than ram_pages says RAM has; pending is capped */
	if (m.fault_pages > out->pending_pages) {
		m.faults *= (double)out->pending_pages / m.fault_pages;
		m.fault_pages = out->pending_pages;
	}
	out->fault_pages = m.fault_pages;
	out->expected_write_faults = m.faults;
	out->total_seconds = t + out->exposure_s;
	out->total_bytes = total + out->pending_bytes;
	out->looped = out->total_seconds > tl.L;
	free(pend);
	tl_free(&tl);
	return 0;
}

int dt_workload__postcopy(const struct dt_workload *w, const struct dt_plan_params *p,
			  struct dt_plan_postcopy *out)
{
	struct sim s;
	int err;

	if (!out)
		return -EINVAL;
	err = sim_init(&s, w, p);
	if (err)
		return err;
	err = run_postcopy(&s, out);
	sim_free(&s);
	return err;
}

/* ---- advice ---- */

const char *dt_plan_rec__name(enum dt_plan_rec r)
{
	switch (r) {
	case DT_PLAN_PRECOPY:
		return "precopy";
	case DT_PLAN_PRECOPY_THROTTLE:
		return "precopy+throttle";
	case DT_PLAN_PRECOPY_DIRTY_LIMIT:
		return "precopy+dirty-limit";
	case DT_PLAN_POSTCOPY:
		return "postcopy";
	}
	return "unknown";
}

__attribute__((format(printf, 2, 3)))
static void reason(struct dt_plan_advice *a, const char *fmt, ...)
{
	va_list ap;

	if (a->nr_reasons >= DT_PLAN_MAX_REASONS)
		return;
	va_start(ap, fmt);
	vsnprintf(a->reasons[a->nr_reasons++], sizeof(a->reasons[0]), fmt, ap);
	va_end(ap);
}

int dt_workload__advise(const struct dt_workload *w, const struct dt_plan_params *p,
			struct dt_plan_advice *out)
{
	struct dt_plan_params q;
	struct sim s;
	double limit = 0, thr_slow, lim_slow = 1, thr_cost, lim_cost;
	int err;

	if (!out || !p)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	q = *p;
	q.throttle_pct = 0;
	q.dirty_limit = 0;
	err = sim_init(&s, w, &q);
	if (err)
		return err;
	err = run_precopy(&s, 0, 0, &out->precopy);
	if (!err)
		err = min_throttle(&s, &out->throttle_pct);
	if (!err && out->throttle_pct > 0)
		err = run_precopy(&s, out->throttle_pct / 100.0, 0, &out->throttled);
	if (!err)
		err = max_dirty_limit(&s, &limit);
	if (!err && limit > 0) {
		struct timeline tl;

		err = run_precopy(&s, 0, limit, &out->limited);
		if (!err && !(err = tl_init(&tl, w, 0, limit))) {
			lim_slow = 1 - w->length / tl.L;
			tl_free(&tl);
		}
	}
	out->dirty_limit = limit > 0 ? limit * w->page_size : limit;
	out->dirty_limit_per_vcpu = w->nr_vcpus > 0;
	out->dirty_limit_slowdown = limit > 0 ? lim_slow : 0;
	if (!err) {
		err = min_bandwidth(&s, &out->min_bandwidth);
		if (err == -ERANGE) {
			out->min_bandwidth = 0;
			err = 0;
		}
	}
	if (!err)
		err = run_postcopy(&s, &out->postcopy);
	sim_free(&s);
	if (err) {
		dt_plan_advice__free(out);
		return err;
	}

	thr_slow = out->throttle_pct > 0 ? out->throttle_pct / 100.0 : 1;
	/*
	 * Between auto-converge and a dirty limit, the one that costs the guest less work: its
	 * slowdown times how long the migration then lasts (a light limit that makes precopy run
	 * for minutes can cost more than a stronger throttle that ends in seconds).
	 */
	thr_cost = out->throttle_pct > 0 && thr_slow <= p->max_slowdown ?
		   thr_slow * out->throttled.total_seconds : INFINITY;
	lim_cost = limit > 0 && lim_slow <= p->max_slowdown ?
		   lim_slow * out->limited.total_seconds : INFINITY;
	if (out->precopy.converges) {
		out->rec = DT_PLAN_PRECOPY;
		reason(out, "precopy converges unaided in %zu iterations, %.1f s, downtime %.0f ms "
		       "(limit %.0f ms)", out->precopy.nr_iters, out->precopy.total_seconds,
		       out->precopy.downtime_s * 1e3, p->downtime_limit_ns / 1e6);
	} else if (thr_cost < INFINITY || lim_cost < INFINITY) {
		reason(out, "precopy alone does not converge: after %zu iterations %llu pages "
		       "(%.1f MiB) remain against a threshold of %.1f MiB",
		       out->precopy.nr_iters, (unsigned long long)out->precopy.remaining_pages,
		       out->precopy.remaining_pages * (double)w->page_size / (1 << 20),
		       out->precopy.threshold_bytes / (double)(1 << 20));
		if (thr_cost <= lim_cost) {
			out->rec = DT_PLAN_PRECOPY_THROTTLE;
			reason(out, "auto-converge at %d%% (guest slowed by %d%%) converges in %zu "
			       "iterations, %.1f s: %.1f s of guest time lost", out->throttle_pct,
			       out->throttle_pct, out->throttled.nr_iters,
			       out->throttled.total_seconds, thr_cost);
			if (lim_cost < INFINITY)
				reason(out, "a dirty limit would lose %.1f s (%.0f%% for %.1f s)",
				       lim_cost, lim_slow * 100, out->limited.total_seconds);
		} else {
			out->rec = DT_PLAN_PRECOPY_DIRTY_LIMIT;
			reason(out, "a dirty limit of %.2f MB/s %s (guest slowed by %.0f%%) converges "
			       "in %zu iterations, %.1f s: %.1f s of guest time lost",
			       out->dirty_limit / (1 << 20),
			       out->dirty_limit_per_vcpu ? "per vCPU" : "for the VM",
			       lim_slow * 100, out->limited.nr_iters, out->limited.total_seconds,
			       lim_cost);
			if (thr_cost < INFINITY)
				reason(out, "auto-converge would lose %.1f s (%d%% for %.1f s)",
				       thr_cost, out->throttle_pct, out->throttled.total_seconds);
			if (out->dirty_limit < (1 << 20))
				reason(out, "QEMU's vcpu-dirty-limit is whole MB/s: below 1 MB/s it "
				       "cannot be set this low");
		}
	} else {
		out->rec = DT_PLAN_POSTCOPY;
		reason(out, "precopy does not converge: after %zu iterations%s %llu pages remain "
		       "against a threshold of %.1f MiB", out->precopy.nr_iters,
		       out->precopy.stop == DT_PLAN_STALLED ? " (no longer shrinking)" : "",
		       (unsigned long long)out->precopy.remaining_pages,
		       out->precopy.threshold_bytes / (double)(1 << 20));
		if (out->throttle_pct < 0 && limit < 0)
			reason(out, "no throttle up to %u%% and no dirty limit makes it converge",
			       p->max_cpu_throttle);
		else
			reason(out, "making it converge would slow the guest by %.0f%%, more than "
			       "the %.0f%% allowed", 100 * (thr_slow <= lim_slow ? thr_slow : lim_slow),
			       100 * p->max_slowdown);
	}
	if (out->rec == DT_PLAN_POSTCOPY || !out->precopy.converges)
		reason(out, "postcopy switches over after %.1f s; the destination then faults on at "
		       "least %llu written pages (reads are not seen) during a %.1f s exposure window",
		       out->postcopy.switchover_s, (unsigned long long)out->postcopy.fault_pages,
		       out->postcopy.exposure_s);
	if (out->min_bandwidth > 0 && !out->precopy.converges)
		reason(out, "precopy would converge unaided from %.1f MiB/s", out->min_bandwidth /
		       (1 << 20));
	if (out->precopy.looped)
		reason(out, "the simulation ran %.1f times the recording's length: its dirtying "
		       "was assumed to repeat", out->precopy.replays);
	return 0;
}

void dt_plan_advice__free(struct dt_plan_advice *a)
{
	if (!a)
		return;
	dt_plan_precopy__free(&a->precopy);
	dt_plan_precopy__free(&a->throttled);
	dt_plan_precopy__free(&a->limited);
}

/* ---- workload character ---- */

int dt_workload__write_intervals(const struct dt_workload *w,
				 uint64_t hist[DT_PLAN_HIST_BUCKETS], uint64_t *once)
{
	double *last;
	uint32_t *cnt;
	uint64_t one = 0;

	if (!w || !hist)
		return -EINVAL;
	memset(hist, 0, DT_PLAN_HIST_BUCKETS * sizeof(*hist));
	last = malloc((w->nr_pages + 1) * sizeof(*last));
	cnt = calloc(w->nr_pages + 1, sizeof(*cnt));
	if (!last || !cnt) {
		free(last);
		free(cnt);
		return -ENOMEM;
	}
	for (size_t i = 0; i < w->nr_ep; i++) {
		const struct wl_epoch *e = &w->ep[i];

		for (uint32_t r = 0; r < e->n; r++) {
			uint32_t id = w->ids[e->first + r];

			if (cnt[id]++) {
				double ms = (e->pos - last[id]) * 1e3;
				int b = 0;

				if (ms >= 1) {
					b = ilogb(ms) + 1;
					if (b >= DT_PLAN_HIST_BUCKETS)
						b = DT_PLAN_HIST_BUCKETS - 1;
				}
				hist[b]++;
			}
			last[id] = e->pos;
		}
	}
	for (size_t i = 0; i < w->nr_pages; i++)
		one += cnt[i] == 1;
	if (once)
		*once = one;
	free(last);
	free(cnt);
	return 0;
}

int dt_workload__wss_curve(const struct dt_workload *w, struct dt_plan_wss_point *pts, size_t max,
			   size_t *n)
{
	struct timeline tl;
	struct marker m = { 0 };
	uint32_t *stamp;
	size_t k = 0;
	int err;

	if (!w || (max && !pts) || !n)
		return -EINVAL;
	*n = 0;
	if (!w->nr_ep || !(w->length > 0))
		return -ENODATA;
	stamp = calloc(w->nr_pages + 1, sizeof(*stamp));
	if (!stamp)
		return -ENOMEM;
	err = tl_init(&tl, w, 0, 0);
	if (err) {
		free(stamp);
		return err;
	}
	m.t = &tl;
	m.stamp = stamp;
	for (double win = 1; win < tl.L && k + 1 < max; win *= 2) {
		size_t nw = (size_t)(tl.L / win);
		struct dt_plan_wss_point *pt = &pts[k++];
		double sum = 0;

		pt->window_s = win;
		pt->windows = nw;
		pt->max_pages = 0;
		for (size_t j = 0; j < nw; j++) {
			uint64_t c;

			m.gen++;	/* < 2^32 windows: tl.L / win of them */
			c = mark_interval(&m, j * win, (j + 1) * win, true);
			sum += c;
			if (c > pt->max_pages)
				pt->max_pages = c;
		}
		pt->mean_pages = nw ? sum / nw : 0;
	}
	if (k < max) {
		pts[k++] = (struct dt_plan_wss_point){ .window_s = tl.L, .mean_pages = w->nr_pages,
						       .max_pages = w->nr_pages, .windows = 1 };
	}
	*n = k;
	tl_free(&tl);
	free(stamp);
	return 0;
}

struct range_ent {
	uint64_t first;
	uint64_t pe;
	uint16_t as_id, slot;
	bool resolved;
};

static int cmp_range_key(const void *a, const void *b)
{
	const struct range_ent *x = a, *y = b;

	if (x->resolved != y->resolved)
		return x->resolved ? -1 : 1;
	if (x->as_id != y->as_id)
		return x->as_id < y->as_id ? -1 : 1;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

static int cmp_range_hot(const void *a, const void *b)
{
	const struct dt_plan_range *x = a, *y = b;

	if (x->page_epochs != y->page_epochs)
		return x->page_epochs > y->page_epochs ? -1 : 1;
	if (x->resolved != y->resolved)
		return x->resolved ? -1 : 1;
	if (x->as_id != y->as_id)
		return x->as_id < y->as_id ? -1 : 1;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

int dt_workload__hot_ranges(const struct dt_workload *w, uint64_t range_pages,
			    struct dt_plan_range *out, size_t max, size_t *n)
{
	struct range_ent *ent;
	struct dt_plan_range *agg;
	size_t na = 0;

	if (!w || !n || (max && !out) || !range_pages || (range_pages & (range_pages - 1)))
		return -EINVAL;
	*n = 0;
	ent = calloc(w->nr_pages + 1, sizeof(*ent));
	agg = calloc(w->nr_pages + 1, sizeof(*agg));
	if (!ent || !agg) {
		free(ent);
		free(agg);
		return -ENOMEM;
	}
	for (size_t i = 0; i < w->nr_pages; i++) {
		const struct wl_page *pg = &w->pages[i];

		ent[i].resolved = pg->gfn != DT_GFN_NONE;
		ent[i].as_id = pg->as_id;
		ent[i].slot = ent[i].resolved ? 0 : pg->slot;
		ent[i].first = (ent[i].resolved ? pg->gfn : pg->offset) & ~(range_pages - 1);
	}
	for (size_t i = 0; i < w->nr_ids; i++)
		ent[w->ids[i]].pe++;
	dt_sort(ent, w->nr_pages, sizeof(*ent), cmp_range_key);
	for (size_t i = 0; i < w->nr_pages; i++) {
		if (!na || cmp_range_key(&ent[i], &ent[i - 1])) {
			agg[na++] = (struct dt_plan_range){ .as_id = ent[i].as_id,
							    .resolved = ent[i].resolved,
							    .slot = ent[i].slot,
							    .first = ent[i].first,
							    .pages = range_pages };
		}
		agg[na - 1].dirty_pages++;
		agg[na - 1].page_epochs += ent[i].pe;
	}
	dt_sort(agg, na, sizeof(*agg), cmp_range_hot);
	*n = na < max ? na : max;
	if (*n)
		memcpy(out, agg, *n * sizeof(*out));
	free(ent);
	free(agg);
	return 0;
}

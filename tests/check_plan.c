// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Pure core: dirtyplan's migration model, against workloads whose answer is known in closed
 * form (constant rates below and above the bandwidth, hot working sets that fit and that do
 * not), the unit parsers, and robustness on odd input. Tag: unit.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <dirtytrace/plan.h>
#include "testlib.h"

#define MS 1000000ull
#define PAGE 4096
#define MiB (1024.0 * 1024.0)

static struct dt_gfn g(uint64_t gfn, int32_t vcpu)
{
	return (struct dt_gfn){ .gfn = gfn, .vcpu = vcpu };
}

/*
 * Every epoch_ms, per_epoch pages, continuing a counter modulo ram (fresh pages while the
 * counter has not wrapped), for seconds; vcpus > 0 spreads them round-robin over that many vCPUs.
 */
static struct dt_workload *cycling(uint64_t ram, uint32_t per_epoch, uint64_t epoch_ms,
				   double seconds, int vcpus)
{
	struct dt_workload *w = dt_workload__new(ram, PAGE);
	struct dt_gfn *v = calloc(per_epoch, sizeof(*v));
	uint64_t next = 0, epochs = (uint64_t)(seconds * 1000 / epoch_ms);

	ck_assert_ptr_nonnull(w);
	ck_assert_ptr_nonnull(v);
	for (uint64_t e = 0; e < epochs; e++) {
		for (uint32_t i = 0; i < per_epoch; i++)
			v[i] = g(next++ % ram, vcpus > 0 ? (int32_t)(i % vcpus) : -1);
		ck_assert_int_eq(dt_workload__add(w, e * epoch_ms * MS, (e + 1) * epoch_ms * MS,
						  per_epoch * 3, v, per_epoch), 0);
	}
	free(v);
	return w;
}

/* The same hot pages 0..hot-1 in every epoch. */
static struct dt_workload *hot_set(uint64_t ram, uint32_t hot, uint64_t epoch_ms, double seconds)
{
	struct dt_workload *w = dt_workload__new(ram, PAGE);
	struct dt_gfn *v = calloc(hot, sizeof(*v));
	uint64_t epochs = (uint64_t)(seconds * 1000 / epoch_ms);

	ck_assert_ptr_nonnull(w);
	for (uint32_t i = 0; i < hot; i++)
		v[i] = g(i, -1);
	for (uint64_t e = 0; e < epochs; e++)
		ck_assert_int_eq(dt_workload__add(w, e * epoch_ms * MS, (e + 1) * epoch_ms * MS, hot,
						  v, hot), 0);
	free(v);
	return w;
}

static void params(struct dt_plan_params *p, double bw, uint64_t downtime_ms)
{
	dt_plan_params__init(p);
	p->bandwidth = bw;
	p->downtime_limit_ns = downtime_ms * MS;
}

static void assert_rel(double got, double want, double tol)
{
	ck_assert_msg(fabs(got - want) <= tol * fabs(want), "got %.6g, want %.6g (tolerance %g)",
		      got, want, tol);
}

/*
 * Constant rate R of fresh pages, below the bandwidth: iteration k lasts d0 * rho^k with
 * d0 = N * P / B and rho = R * P / B (P: page plus header on the wire), and it stops after the
 * first iteration whose dirtied pages x page size fit in B x downtime.
 */
START_TEST(rate_below_bandwidth)
{
	const uint64_t N = 10000;
	const double R = 5000, B = 40 * MiB, P = PAGE + 8, T = 0.030;
	struct dt_workload *w = cycling(N, 50, 10, 4, 0);	/* 5000 pages/s, 2 s cycle */
	struct dt_plan_params p;
	struct dt_plan_precopy r;
	double d = N * P / B, total = 0, rem = 0;
	size_t k;

	params(&p, B, 30);
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(r.converges);
	ck_assert_int_eq(r.stop, DT_PLAN_CONVERGED);
	for (k = 0;; k++) {
		ck_assert_uint_lt(k, r.nr_iters);
		assert_rel(r.iters[k].seconds, d, 0.005);
		if (k == 0)
			ck_assert_uint_eq(r.iters[0].pages, N);
		else
			assert_rel(r.iters[k].pages, rem, 0.005);
		rem = R * d;
		assert_rel(r.iters[k].dirtied, rem, 0.005);
		total += d;
		d = rem * P / B;
		if (rem * PAGE <= B * T)
			break;
	}
	ck_assert_uint_eq(r.nr_iters, k + 1);
	ck_assert_uint_eq(r.nr_iters, 5);	/* 4892, 2393, 1171, 573, 280 pages left */
	assert_rel(r.iter_seconds, total, 0.005);
	assert_rel(r.downtime_s, rem * P / B, 0.01);
	assert_rel(r.total_seconds, total + rem * P / B, 0.005);
	assert_rel(r.total_bytes, (total + rem * P / B) * B, 0.005);
	ck_assert(!r.looped);
	ck_assert(r.zero_pages_assumed);
	ck_assert_uint_eq(r.zero_pages, 0);
	dt_plan_precopy__free(&r);

	/* unaided from about R x P: rho just under 1 still converges within 100 iterations */
	double bmin;

	ck_assert_int_eq(dt_workload__min_bandwidth(w, &p, &bmin), 0);
	ck_assert_msg(bmin > R * P && bmin < 1.1 * R * P, "min bandwidth %.0f", bmin);
	p.bandwidth = bmin;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(r.converges);
	dt_plan_precopy__free(&r);
	p.bandwidth = bmin / 1.01;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(!r.converges);
	dt_plan_precopy__free(&r);
	dt_workload__free(w);
}
END_TEST

/*
 * Twice the bandwidth's page rate: every pass finds all of RAM dirty again, so it never
 * converges. A throttle p leaves 2 (1 - p) of it: 50% keeps it level, 60% shrinks it by 0.8 a
 * pass, so 60 is the smallest of QEMU's steps (20, 30, ..., 99) that converges.
 */
START_TEST(rate_above_bandwidth)
{
	const uint64_t N = 10240;
	const double B = 40 * MiB;	/* 10240 pages/s: iteration 0 lasts 1 s */
	struct dt_workload *w = cycling(N, 1024, 50, 8, 0);	/* 20480 pages/s */
	struct dt_plan_params p;
	struct dt_plan_precopy r;
	int pct = 0;

	params(&p, B, 300);
	p.page_header_bytes = 0;
	/* 1 s passes: no new low for 10 of them, which cover the 8 s recording: stalled */
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(!r.converges);
	ck_assert_int_eq(r.stop, DT_PLAN_STALLED);
	ck_assert_uint_eq(r.nr_iters, 11);
	dt_plan_precopy__free(&r);
	p.stall_iterations = 0;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(!r.converges);
	ck_assert_int_eq(r.stop, DT_PLAN_MAX_ITERATIONS);
	ck_assert_uint_eq(r.nr_iters, 100);
	for (size_t k = 0; k < r.nr_iters; k++)
		ck_assert_uint_eq(r.iters[k].dirtied, N);	/* all RAM, every pass */
	ck_assert_uint_eq(r.remaining_pages, N);
	ck_assert(r.looped);	/* 100 s simulated on an 8 s recording */
	dt_plan_precopy__free(&r);

	ck_assert_int_eq(dt_workload__min_throttle(w, &p, &pct), 0);
	ck_assert_int_eq(pct, 60);
	p.throttle_pct = 60;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(r.converges);
	/* 8192 x 0.8^k pages left: 3072 pages fit in 300 ms, after 6 passes */
	ck_assert_uint_eq(r.nr_iters, 6);
	assert_rel(r.iters[0].dirtied, 8192, 0.005);
	assert_rel(r.iters[1].dirtied, 8192 * 0.8, 0.005);
	dt_plan_precopy__free(&r);
	p.throttle_pct = 50;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(!r.converges);
	dt_plan_precopy__free(&r);

	/* tighter steps find the same boundary more finely */
	p.throttle_pct = 0;
	p.cpu_throttle_initial = 51;
	p.cpu_throttle_increment = 1;
	ck_assert_int_eq(dt_workload__min_throttle(w, &p, &pct), 0);
	ck_assert_int_ge(pct, 51);
	ck_assert_int_le(pct, 60);
	dt_workload__free(w);
}
END_TEST

/* A per-VM dirty limit under the bandwidth's page rate converges; per vCPU it is half with 2. */
START_TEST(dirty_limit)
{
	const double B = 40 * MiB;
	struct dt_workload *w = cycling(10240, 1024, 50, 8, 0);
	struct dt_workload *w2 = cycling(10240, 1024, 50, 8, 2);
	struct dt_plan_params p;
	struct dt_plan_precopy r;
	double lim, lim2;
	bool per_vcpu = true;

	params(&p, B, 300);
	p.page_header_bytes = 0;
	ck_assert_int_eq(dt_workload__max_dirty_limit(w, &p, &lim, &per_vcpu), 0);
	ck_assert(!per_vcpu);
	/* below the bandwidth (B bytes/s of pages), and not far below it */
	ck_assert_msg(lim > 0.5 * B && lim < B, "limit %.0f", lim);
	p.dirty_limit = lim;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(r.converges);
	dt_plan_precopy__free(&r);
	p.dirty_limit = lim * 1.02;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(!r.converges);
	dt_plan_precopy__free(&r);

	p.dirty_limit = 0;
	ck_assert_int_eq(dt_workload__max_dirty_limit(w2, &p, &lim2, &per_vcpu), 0);
	ck_assert(per_vcpu);
	assert_rel(lim2, lim / 2, 0.02);
	dt_workload__free(w);
	dt_workload__free(w2);
}
END_TEST

/*
 * A hot set of W pages rewritten every 10 ms that fits in B x downtime: iteration 0 sends RAM,
 * W pages are dirty after it, and they are the downtime: W x page / B.
 */
START_TEST(hot_set_fits)
{
	const uint64_t N = 10000, W = 1000;
	const double B = 40 * MiB;
	struct dt_workload *w = hot_set(N, W, 10, 4);
	struct dt_plan_params p;
	struct dt_plan_precopy r;
	struct dt_plan_advice a;
	double bmin;
	int pct = -2;

	params(&p, B, 300);
	p.page_header_bytes = 0;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(r.converges);
	ck_assert_uint_eq(r.nr_iters, 1);
	ck_assert_uint_eq(r.iters[0].pages, N);
	ck_assert_uint_eq(r.iters[0].bytes, N * PAGE);
	ck_assert_uint_eq(r.iters[0].dirtied, W);
	ck_assert_uint_eq(r.remaining_pages, W);
	assert_rel(r.downtime_s, W * PAGE / B, 1e-9);
	assert_rel(r.total_seconds, (N + W) * PAGE / B, 1e-9);
	ck_assert_uint_eq(r.total_bytes, (N + W) * PAGE);
	dt_plan_precopy__free(&r);

	/* a fixed switchover cost adds to the downtime; a faster link shortens it */
	p.switchover_ns = 5 * MS;
	p.switchover_bandwidth = 4 * B;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	assert_rel(r.downtime_s, W * PAGE / (4 * B) + 0.005, 1e-9);
	dt_plan_precopy__free(&r);
	p.switchover_ns = 0;
	p.switchover_bandwidth = 0;

	/*
	 * QEMU compares the dirty bitmap's pages x page size with the threshold, headers aside:
	 * 40 MiB/s x 300 ms is 3072 pages, so 3071 hot pages fit even with 8-byte headers.
	 */
	{
		struct dt_workload *edge = hot_set(N, 3071, 10, 4);

		p.page_header_bytes = 8;
		ck_assert_int_eq(dt_workload__precopy(edge, &p, &r), 0);
		ck_assert(r.converges);
		ck_assert_uint_eq(r.nr_iters, 1);
		assert_rel(r.downtime_s, 3071 * (PAGE + 8) / B, 1e-9);
		dt_plan_precopy__free(&r);
		p.page_header_bytes = 0;
		dt_workload__free(edge);
	}

	/* it converges unaided from W x page / downtime */
	ck_assert_int_eq(dt_workload__min_bandwidth(w, &p, &bmin), 0);
	assert_rel(bmin, W * PAGE / 0.3, 0.006);
	ck_assert_int_eq(dt_workload__min_throttle(w, &p, &pct), 0);
	ck_assert_int_eq(pct, 0);

	ck_assert_int_eq(dt_workload__advise(w, &p, &a), 0);
	ck_assert_int_eq(a.rec, DT_PLAN_PRECOPY);
	ck_assert_str_eq(dt_plan_rec__name(a.rec), "precopy");
	ck_assert_uint_ge(a.nr_reasons, 1);
	ck_assert_ptr_nonnull(strstr(a.reasons[0], "converges unaided in 1 iterations"));
	ck_assert_int_eq(a.throttle_pct, 0);
	ck_assert(a.dirty_limit == 0);
	dt_plan_advice__free(&a);
	dt_workload__free(w);
}
END_TEST

/* W pages that do not fit: every pass leaves W, it never converges; postcopy then faults on W. */
START_TEST(hot_set_does_not_fit)
{
	const uint64_t N = 10000, W = 5000;
	const double B = 40 * MiB, P = PAGE + 8;
	struct dt_workload *w = hot_set(N, W, 10, 4);
	struct dt_plan_params p;
	struct dt_plan_precopy r;
	struct dt_plan_postcopy pc;
	struct dt_plan_advice a;

	params(&p, B, 300);
	p.max_iterations = 20;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(!r.converges);
	/* 0.49 s passes: 10 without a new low (4.9 s) cover the 4 s recording: stalled... */
	ck_assert_int_eq(r.stop, DT_PLAN_STALLED);
	ck_assert_uint_eq(r.nr_iters, 11);
	dt_plan_precopy__free(&r);
	p.stall_iterations = 20;	/* ...while 20 would come after max_iterations */
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert_int_eq(r.stop, DT_PLAN_MAX_ITERATIONS);
	ck_assert_uint_eq(r.nr_iters, 20);
	for (size_t k = 1; k < r.nr_iters; k++) {
		ck_assert_uint_eq(r.iters[k].pages, W);
		ck_assert_uint_eq(r.iters[k].dirtied, W);
	}
	dt_plan_precopy__free(&r);

	/* a timeout stops it too */
	p.timeout_ns = 2000 * MS;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert_int_eq(r.stop, DT_PLAN_TIMEOUT);
	ck_assert(r.iter_seconds >= 2.0 && r.iter_seconds < 2.0 + W * P / B + 1e-9);
	dt_plan_precopy__free(&r);
	p.timeout_ns = 0;

	/* postcopy after one pass: W pending, all of them written at once at the destination */
	ck_assert_int_eq(dt_workload__postcopy(w, &p, &pc), 0);
	ck_assert_uint_eq(pc.passes, 1);
	assert_rel(pc.switchover_s, N * P / B, 1e-9);
	ck_assert_uint_eq(pc.pending_pages, W);
	assert_rel(pc.exposure_s, W * P / B, 1e-9);
	ck_assert_uint_eq(pc.fault_pages, W);
	/* each is written within 10 ms of a 0.49 s window: almost all before the push sends it */
	ck_assert(pc.expected_write_faults > 0.97 * W && pc.expected_write_faults <= W);
	assert_rel(pc.total_seconds, (N + W) * P / B, 1e-9);
	/* postcopy at once: all RAM pending, the same W faults */
	p.postcopy_after_passes = 0;
	ck_assert_int_eq(dt_workload__postcopy(w, &p, &pc), 0);
	ck_assert_uint_eq(pc.pending_pages, N);
	assert_rel(pc.exposure_s, N * P / B, 1e-9);
	ck_assert_uint_eq(pc.fault_pages, W);
	ck_assert(pc.switchover_s == 0);
	p.postcopy_after_passes = 1;

	ck_assert_int_eq(dt_workload__advise(w, &p, &a), 0);
	ck_assert_int_eq(a.rec, DT_PLAN_POSTCOPY);
	ck_assert_str_eq(dt_plan_rec__name(a.rec), "postcopy");
	ck_assert(!a.precopy.converges);
	ck_assert_uint_eq(a.postcopy.fault_pages, W);
	/* it converges unaided once W x page fits: from W x page / 300 ms */
	assert_rel(a.min_bandwidth, W * PAGE / 0.3, 0.006);
	for (size_t i = 0; i < a.nr_reasons; i++)
		ck_assert(strlen(a.reasons[i]) > 10);
	dt_plan_advice__free(&a);
	dt_workload__free(w);
}
END_TEST

/* With a throttle allowed, the advice picks it; and says so. */
START_TEST(advice_throttle)
{
	struct dt_workload *w = cycling(10240, 1024, 50, 8, 0);
	struct dt_plan_params p;
	struct dt_plan_advice a;

	params(&p, 40 * MiB, 300);
	p.page_header_bytes = 0;
	p.max_slowdown = 0.7;
	ck_assert_int_eq(dt_workload__advise(w, &p, &a), 0);
	ck_assert_int_eq(a.throttle_pct, 60);
	ck_assert(a.throttled.converges);
	ck_assert(a.dirty_limit > 0);
	ck_assert(a.limited.converges);
	/* the limit keeps the rate just under 10240 of 20480 pages/s: about half the progress */
	ck_assert(a.dirty_limit_slowdown > 0.5 && a.dirty_limit_slowdown < 0.6);
	/* the one that costs the guest less work: slowdown x how long the migration lasts */
	ck_assert_int_eq(a.rec, 0.6 * a.throttled.total_seconds <=
			 a.dirty_limit_slowdown * a.limited.total_seconds ?
			 DT_PLAN_PRECOPY_THROTTLE : DT_PLAN_PRECOPY_DIRTY_LIMIT);
	ck_assert_ptr_nonnull(strstr(a.reasons[1], "of guest time lost"));
	dt_plan_advice__free(&a);

	p.max_slowdown = 0.4;	/* neither is acceptable */
	ck_assert_int_eq(dt_workload__advise(w, &p, &a), 0);
	ck_assert_int_eq(a.rec, DT_PLAN_POSTCOPY);
	dt_plan_advice__free(&a);
	dt_workload__free(w);
}
END_TEST

/* Zero pages cost a header and a byte in iteration 0, counted or assumed. */
START_TEST(zero_pages)
{
	struct dt_workload *w = hot_set(10000, 100, 10, 2);
	struct dt_plan_params p;
	struct dt_plan_precopy r;

	params(&p, 40 * MiB, 300);
	p.assume_zero_frac = 0.25;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(r.zero_pages_assumed);
	ck_assert_uint_eq(r.iters[0].zero_pages, 2500);
	ck_assert_uint_eq(r.iters[0].pages, 7500);
	dt_plan_precopy__free(&r);
	ck_assert_int_eq(dt_workload__set_zero_pages(w, 6000), 0);
	ck_assert_int_eq(dt_workload__set_zero_pages(w, 10001), -EINVAL);
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(!r.zero_pages_assumed);
	ck_assert_uint_eq(r.zero_pages, 6000);
	ck_assert_uint_eq(r.iters[0].bytes, 4000 * (PAGE + 8) + 6000 * 9);
	dt_plan_precopy__free(&r);
	dt_workload__free(w);
}
END_TEST

/* A recording shorter than the migration is replayed; gaps between epochs are not time. */
START_TEST(loop_and_gaps)
{
	struct dt_workload *w = dt_workload__new(100000, PAGE);
	struct dt_workload_info info;
	struct dt_plan_params p;
	struct dt_plan_precopy r;
	struct dt_gfn v[100];

	for (int i = 0; i < 100; i++)
		v[i] = g(i, -1);
	/* 100 ms, a 900 ms gap, 100 ms */
	ck_assert_int_eq(dt_workload__add(w, 0, 100 * MS, 7, v, 50), 0);
	ck_assert_int_eq(dt_workload__add(w, 1000 * MS, 1100 * MS, 9, v + 50, 50), 0);
	dt_workload__info(w, &info);
	ck_assert_uint_eq(info.epochs, 2);
	assert_rel(info.seconds, 0.2, 1e-12);
	ck_assert_uint_eq(info.page_epochs, 100);
	ck_assert_uint_eq(info.distinct_pages, 100);
	ck_assert_uint_eq(info.raw, 16);
	assert_rel(info.pages_per_s, 500, 1e-9);
	ck_assert_uint_eq(info.vcpus, 0);
	params(&p, 40 * MiB, 300);
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	ck_assert(r.looped);
	assert_rel(r.replays, r.iter_seconds / 0.2, 1e-9);
	ck_assert_uint_eq(r.iters[0].dirtied, 100);	/* 10 s of iteration 0: every page */
	ck_assert(r.converges);
	dt_plan_precopy__free(&r);
	dt_workload__free(w);
}
END_TEST

/* An interval covering part of an epoch takes that share of its pages. */
START_TEST(prorated_epochs)
{
	struct dt_workload *w = dt_workload__new(10000, PAGE);
	struct dt_plan_wss_point pts[8];
	struct dt_gfn v[1000];
	size_t n;

	for (int i = 0; i < 1000; i++)
		v[i] = g(i, -1);
	ck_assert_int_eq(dt_workload__add(w, 0, 4000 * MS, 0, v, 1000), 0);
	ck_assert_int_eq(dt_workload__wss_curve(w, pts, 8, &n), 0);
	ck_assert_uint_eq(n, 3);	/* 1 s, 2 s, and the whole 4 s */
	ck_assert(pts[0].window_s == 1 && pts[0].windows == 4);
	ck_assert(pts[0].mean_pages == 250 && pts[0].max_pages == 250);
	ck_assert(pts[1].window_s == 2 && pts[1].windows == 2 && pts[1].max_pages == 500);
	ck_assert(pts[2].window_s == 4 && pts[2].max_pages == 1000);
	dt_workload__free(w);
}
END_TEST

START_TEST(wss_curve_shapes)
{
	struct dt_workload *hot = hot_set(10000, 300, 10, 8);
	struct dt_workload *fresh = cycling(100000, 10, 10, 8, 0);	/* 1000 pages/s */
	struct dt_plan_wss_point pts[8];
	size_t n;

	ck_assert_int_eq(dt_workload__wss_curve(hot, pts, 8, &n), 0);
	ck_assert_uint_eq(n, 4);	/* 1, 2, 4, 8 s */
	for (size_t i = 0; i < n; i++)
		ck_assert(pts[i].mean_pages == 300 && pts[i].max_pages == 300);
	ck_assert_int_eq(dt_workload__wss_curve(fresh, pts, 8, &n), 0);
	for (size_t i = 0; i < n; i++)
		assert_rel(pts[i].mean_pages, 1000 * pts[i].window_s, 1e-9);
	ck_assert_int_eq(dt_workload__wss_curve(fresh, pts, 2, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(dt_workload__wss_curve(fresh, NULL, 0, &n), 0);
	ck_assert_uint_eq(n, 0);
	dt_workload__free(hot);
	dt_workload__free(fresh);
}
END_TEST

/* Page 1 every 100 ms, page 2 every 1 s, page 3 once. */
START_TEST(write_intervals)
{
	struct dt_workload *w = dt_workload__new(100, PAGE);
	uint64_t hist[DT_PLAN_HIST_BUCKETS], once = 0, total = 0;

	for (int e = 0; e < 30; e++) {
		struct dt_gfn v[3];
		size_t n = 0;

		v[n++] = g(1, 0);
		if (e % 10 == 0)
			v[n++] = g(2, 1);
		if (e == 5)
			v[n++] = g(3, 0);
		ck_assert_int_eq(dt_workload__add(w, e * 100 * MS, (e + 1) * 100 * MS, 0, v, n), 0);
	}
	ck_assert_int_eq(dt_workload__write_intervals(w, hist, &once), 0);
	ck_assert_uint_eq(once, 1);
	ck_assert_uint_eq(hist[7], 29);		/* 100 ms in [64, 128) */
	ck_assert_uint_eq(hist[10], 2);		/* 1000 ms in [512, 1024) */
	for (int b = 0; b < DT_PLAN_HIST_BUCKETS; b++)
		total += hist[b];
	ck_assert_uint_eq(total, 31);
	dt_workload__free(w);
}
END_TEST

START_TEST(hot_ranges)
{
	struct dt_workload *w = dt_workload__new(1 << 20, PAGE);
	struct dt_plan_range out[4];
	struct dt_gfn v[64];
	size_t n;

	for (int e = 0; e < 10; e++) {
		size_t k = 0;

		for (int i = 0; i < 32; i++)
			v[k++] = g(0x1000 + i * 3, -1);		/* hot: 32 pages x 10 epochs */
		if (e < 2)
			for (int i = 0; i < 20; i++)
				v[k++] = g(0x8000 + i, -1);	/* 20 pages x 2 epochs */
		v[k] = g(DT_GFN_NONE, -1);			/* one unresolved page */
		v[k].slot = 3;
		v[k++].offset = 700;
		ck_assert_int_eq(dt_workload__add(w, e * 10 * MS, (e + 1) * 10 * MS, 0, v, k), 0);
	}
	ck_assert_int_eq(dt_workload__hot_ranges(w, 512, out, 4, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert(out[0].resolved && out[0].first == 0x1000 && out[0].pages == 512);
	ck_assert_uint_eq(out[0].dirty_pages, 32);
	ck_assert_uint_eq(out[0].page_epochs, 320);
	ck_assert(out[1].resolved && out[1].first == 0x8000 && out[1].page_epochs == 40);
	ck_assert(!out[2].resolved && out[2].slot == 3 && out[2].first == 512);
	ck_assert_uint_eq(out[2].page_epochs, 10);
	ck_assert_int_eq(dt_workload__hot_ranges(w, 500, out, 4, &n), -EINVAL);
	ck_assert_int_eq(dt_workload__hot_ranges(w, 512, out, 1, &n), 0);
	ck_assert_uint_eq(n, 1);
	dt_workload__free(w);
}
END_TEST

struct bw_case {
	const char *s;
	int err;
	double want;
};

static const struct bw_case bw_cases[] = {
	{ "1G", 0, 1073741824.0 },
	{ "1g/s", 0, 1073741824.0 },
	{ "10gbit", 0, 1.25e9 },
	{ "10Gbps", 0, 1.25e9 },
	{ "100M", 0, 100 * MiB },
	{ "500MiB", 0, 500 * MiB },
	{ "500 MiB/s", 0, 500 * MiB },
	{ "1.5k", 0, 1536 },
	{ "4096", 0, 4096 },
	{ "12B", 0, 12 },
	{ "800mbit", 0, 1e8 },
	{ "2T", 0, 2199023255552.0 },
	{ "0", -ERANGE, 0 },
	{ "0G", -ERANGE, 0 },
	{ "-1G", -ERANGE, 0 },
	{ "", -EINVAL, 0 },
	{ "G", -EINVAL, 0 },
	{ "fast", -EINVAL, 0 },
	{ "1Q", -EINVAL, 0 },
	{ "1G extra", -EINVAL, 0 },
	{ "inf", -EINVAL, 0 },
	{ "nan", -EINVAL, 0 },
	{ "0x10", -EINVAL, 0 },
	{ "1e3", -EINVAL, 0 },
	{ "9999999T", -ERANGE, 0 },
};

START_TEST(parse_bandwidth)
{
	const struct bw_case *c = &bw_cases[_i];
	double v = -1;

	ck_assert_msg(dt_plan_parse_bandwidth(c->s, &v) == c->err, "\"%s\": want %d", c->s,
		      c->err);
	if (!c->err)
		assert_rel(v, c->want, 1e-12);
}
END_TEST

struct dur_case {
	const char *s;
	int err;
	uint64_t want;
};

static const struct dur_case dur_cases[] = {
	{ "300ms", 0, 300 * MS },
	{ "2s", 0, 2000 * MS },
	{ "1.5s", 0, 1500 * MS },
	{ "250us", 0, 250000 },
	{ "10ns", 0, 10 },
	{ "2m", 0, 120000 * MS },
	{ "1min", 0, 60000 * MS },
	{ "1h", 0, 3600000 * MS },
	{ " 30 MS ", 0, 30 * MS },
	{ "300", -EINVAL, 0 },		/* a unit is required: 300 what? */
	{ "0ms", -ERANGE, 0 },
	{ "-1s", -ERANGE, 0 },
	{ "0.1ns", -ERANGE, 0 },
	{ "ms", -EINVAL, 0 },
	{ "3 fortnights", -EINVAL, 0 },
	{ "1s2", -EINVAL, 0 },
	{ "", -EINVAL, 0 },
	{ "99999999999h", -ERANGE, 0 },
};

START_TEST(parse_duration)
{
	const struct dur_case *c = &dur_cases[_i];
	uint64_t v = 0;

	ck_assert_msg(dt_plan_parse_duration(c->s, &v) == c->err, "\"%s\": want %d", c->s,
		      c->err);
	if (!c->err)
		ck_assert_uint_eq(v, c->want);
}
END_TEST

START_TEST(bad_input)
{
	struct dt_workload *w = dt_workload__new(1000, PAGE);
	struct dt_plan_params p;
	struct dt_plan_precopy r;
	struct dt_plan_postcopy pc;
	struct dt_plan_advice a;
	struct dt_plan_wss_point pts[4];
	struct dt_gfn v[2] = { g(1, -1), g(2, -1) };
	double x;
	int pct;
	size_t n;

	ck_assert_ptr_null(dt_workload__new(0, PAGE));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(dt_workload__new(10, 3000));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(dt_workload__new(10, 256));
	ck_assert_int_eq(dt_plan_parse_bandwidth(NULL, &x), -EINVAL);

	/* an empty workload is an error, not a plan */
	params(&p, 40 * MiB, 300);
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -ENODATA);
	ck_assert_int_eq(dt_workload__postcopy(w, &p, &pc), -ENODATA);
	ck_assert_int_eq(dt_workload__advise(w, &p, &a), -ENODATA);
	ck_assert_int_eq(dt_workload__min_throttle(w, &p, &pct), -ENODATA);
	ck_assert_int_eq(dt_workload__min_bandwidth(w, &p, &x), -ENODATA);
	ck_assert_int_eq(dt_workload__max_dirty_limit(w, &p, &x, NULL), -ENODATA);
	ck_assert_int_eq(dt_workload__wss_curve(w, pts, 4, &n), -ENODATA);
	/* nor is one that lasts no time */
	ck_assert_int_eq(dt_workload__add(w, 5, 5, 0, v, 2), 0);
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -ENODATA);

	/* time order */
	ck_assert_int_eq(dt_workload__add(w, 10, 9, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(dt_workload__add(w, 4, 20, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(dt_workload__add(w, 5, 20, 0, NULL, 1), -EINVAL);	/* n without gfns */
	ck_assert_int_eq(dt_workload__add(w, 5, 1000 * MS, 0, v, 2), 0);

	/* parameters */
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	dt_plan_precopy__free(&r);
	p.bandwidth = 0;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -EINVAL);
	p.bandwidth = -5;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -EINVAL);
	p.bandwidth = NAN;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -EINVAL);
	params(&p, 40 * MiB, 300);
	p.downtime_limit_ns = 0;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -EINVAL);
	params(&p, 40 * MiB, 300);
	p.page_size = 2 * 1024 * 1024;	/* a recording of another page size */
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -EINVAL);
	p.page_size = PAGE;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), 0);
	dt_plan_precopy__free(&r);
	p.max_iterations = 0;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -EINVAL);
	params(&p, 40 * MiB, 300);
	p.throttle_pct = 100;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -EINVAL);
	params(&p, 40 * MiB, 300);
	p.assume_zero_frac = 1.5;
	ck_assert_int_eq(dt_workload__precopy(w, &p, &r), -EINVAL);
	ck_assert_int_eq(dt_workload__precopy(NULL, &p, &r), -EINVAL);
	dt_workload__free(w);
	dt_workload__free(NULL);
}
END_TEST

/* Empty epochs, zero-length epochs, duplicates, unresolved pages, odd parameters: no crash,
 * and the results keep their invariants. */
START_TEST(robustness)
{
	uint64_t seed = 0x5eed + _i;
	struct dt_gfn v[300];

	for (int round = 0; round < 20; round++) {
		uint64_t ram = 1 + seed % 5000, t = 0;
		struct dt_workload *w = dt_workload__new(ram, PAGE);
		struct dt_plan_params p;
		struct dt_plan_advice a;
		struct dt_plan_wss_point pts[12];
		struct dt_plan_range rg[5];
		uint64_t hist[DT_PLAN_HIST_BUCKETS], once;
		int epochs = seed % 40, err;
		size_t n;

		ck_assert_ptr_nonnull(w);
		for (int e = 0; e < epochs; e++) {
			size_t k;

			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			k = (seed >> 40) % 300;
			if (seed % 5 == 0)
				k = 0;	/* empty */
			for (size_t i = 0; i < k; i++) {
				seed = seed * 6364136223846793005ull + 1442695040888963407ull;
				v[i] = g((seed >> 33) % (ram + 10), (int32_t)(seed % 5) - 1);
				if (seed % 17 == 0) {
					v[i].gfn = DT_GFN_NONE;
					v[i].slot = seed % 3;
					v[i].offset = (seed >> 20) % 100;
				}
			}
			/* a third of the epochs last no time; some start after a gap */
			uint64_t len = seed % 3 == 0 ? 0 : (seed >> 50) % (200 * MS);
			uint64_t gap = seed % 7 == 0 ? 50 * MS : 0;

			ck_assert_int_eq(dt_workload__add(w, t + gap, t + gap + len, k, v, k), 0);
			t += gap + len;
		}
		params(&p, 1 + (double)(seed % (64 << 20)), 1 + seed % 500);
		p.max_iterations = 1 + seed % 50;
		p.postcopy_after_passes = seed % 3;
		p.assume_zero_frac = (seed % 11) / 10.0;
		err = dt_workload__advise(w, &p, &a);
		if (err) {
			ck_assert_int_eq(err, -ENODATA);
		} else {
			uint64_t sum = 0;

			ck_assert_uint_ge(a.precopy.nr_iters, 1);
			ck_assert_uint_le(a.precopy.nr_iters, p.max_iterations);
			for (size_t k = 0; k < a.precopy.nr_iters; k++) {
				ck_assert_uint_le(a.precopy.iters[k].dirtied, ram);
				ck_assert(a.precopy.iters[k].seconds >= 0);
				sum += a.precopy.iters[k].bytes;
			}
			ck_assert_uint_ge(a.precopy.total_bytes, sum);
			ck_assert(a.precopy.converges ==
				  (a.precopy.remaining_pages * (double)PAGE <=
				   p.bandwidth * p.downtime_limit_ns / 1e9));
			ck_assert(a.postcopy.fault_pages <= a.postcopy.pending_pages);
			ck_assert(a.postcopy.expected_write_faults <= a.postcopy.fault_pages + 1e-9);
			ck_assert(a.nr_reasons >= 1 && a.nr_reasons <= DT_PLAN_MAX_REASONS);
			dt_plan_advice__free(&a);
		}
		err = dt_workload__wss_curve(w, pts, 12, &n);
		ck_assert(err == 0 || err == -ENODATA);
		ck_assert_int_eq(dt_workload__write_intervals(w, hist, &once), 0);
		ck_assert_int_eq(dt_workload__hot_ranges(w, 64, rg, 5, &n), 0);
		dt_workload__free(w);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("plan");
	TCase *core = tcase_create("core"), *parse = tcase_create("parse");
	TCase *errors = tcase_create("errors"), *limits = tcase_create("limits");

	tcase_add_test(core, rate_below_bandwidth);
	tcase_add_test(core, rate_above_bandwidth);
	tcase_add_test(core, dirty_limit);
	tcase_add_test(core, hot_set_fits);
	tcase_add_test(core, hot_set_does_not_fit);
	tcase_add_test(core, advice_throttle);
	tcase_add_test(core, zero_pages);
	tcase_add_test(core, loop_and_gaps);
	tcase_add_test(core, prorated_epochs);
	tcase_add_test(core, wss_curve_shapes);
	tcase_add_test(core, write_intervals);
	tcase_add_test(core, hot_ranges);
	tcase_add_loop_test(parse, parse_bandwidth, 0, sizeof(bw_cases) / sizeof(bw_cases[0]));
	tcase_add_loop_test(parse, parse_duration, 0, sizeof(dur_cases) / sizeof(dur_cases[0]));
	tcase_add_test(errors, bad_input);
	tcase_add_loop_test(limits, robustness, 0, 8);
	suite_add_tcase(s, core);
	suite_add_tcase(s, parse);
	suite_add_tcase(s, errors);
	suite_add_tcase(s, limits);
	return dt_test_main(s, "plan");
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Pure core: dirty-rate windows over epochs. Tag: unit. */
#include <errno.h>
#include <stdint.h>
#include <dirtytrace/dirtytrace.h>
#include "testlib.h"

#define MS 1000000ull

START_TEST(steady_rate)
{
	struct dt_window *w = dt_window__new(1000 * MS, 64);
	struct dt_rate r;

	ck_assert_ptr_nonnull(w);
	dt_window__rate(w, &r);
	ck_assert_uint_eq(r.covered_ns, 0);	/* no epoch: no rate, and no division by zero */
	ck_assert(r.pages_per_s == 0 && r.raw_per_s == 0);
	/* 100 ms epochs, 50 pages and 400 writes each: 500 pages/s, 4000 writes/s */
	for (int i = 0; i < 30; i++)
		ck_assert_int_eq(dt_window__add(w, i * 100 * MS, (i + 1) * 100 * MS, 400, 50), 0);
	dt_window__rate(w, &r);
	ck_assert_uint_eq(r.epochs, 10);	/* only the last second is kept */
	ck_assert_uint_eq(r.covered_ns, 1000 * MS);
	ck_assert_double_eq_tol(r.pages_per_s, 500, 1e-9);
	ck_assert_double_eq_tol(r.raw_per_s, 4000, 1e-9);
	dt_window__free(w);
}
END_TEST

START_TEST(uneven_epochs_and_gaps)
{
	struct dt_window *w = dt_window__new(10000 * MS, 8);
	struct dt_rate r;

	ck_assert_int_eq(dt_window__add(w, 0, 100 * MS, 0, 100), 0);	/* 1000 pages/s */
	ck_assert_int_eq(dt_window__add(w, 500 * MS, 900 * MS, 0, 100), 0);	/* 250 pages/s */
	dt_window__rate(w, &r);
	/* 200 pages over 500 ms watched; the 400 ms gap is not watched time */
	ck_assert_uint_eq(r.covered_ns, 500 * MS);
	ck_assert_double_eq_tol(r.pages_per_s, 400, 1e-9);
	dt_window__free(w);
}
END_TEST

START_TEST(capacity_evicts_oldest)
{
	struct dt_window *w = dt_window__new(1000000 * MS, 3);
	struct dt_rate r;

	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(dt_window__add(w, i * MS, (i + 1) * MS, 0, i), 0);
	dt_window__rate(w, &r);
	ck_assert_uint_eq(r.epochs, 3);
	ck_assert_double_eq_tol(r.pages_per_s, (2 + 3 + 4) / 3e-3, 1e-6);
	dt_window__free(w);
}
END_TEST

START_TEST(zero_length_epoch)
{
	struct dt_window *w = dt_window__new(1000 * MS, 4);
	struct dt_rate r;

	ck_assert_int_eq(dt_window__add(w, 5 * MS, 5 * MS, 10, 10), 0);
	dt_window__rate(w, &r);
	ck_assert_uint_eq(r.epochs, 1);
	ck_assert_uint_eq(r.covered_ns, 0);
	ck_assert(r.pages_per_s == 0);
	dt_window__free(w);
}
END_TEST

START_TEST(bad_input)
{
	struct dt_window *w = dt_window__new(1000 * MS, 4);

	ck_assert_ptr_null(dt_window__new(0, 4));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(dt_window__new(1, 0));
	ck_assert_int_eq(dt_window__add(w, 10, 5, 0, 0), -EINVAL);	/* ends before it starts */
	ck_assert_int_eq(dt_window__add(w, 10, 20, 0, 0), 0);
	ck_assert_int_eq(dt_window__add(w, 15, 30, 0, 0), -EINVAL);	/* overlaps the last */
	dt_window__free(w);
}
END_TEST

static struct dt_gfn g(uint64_t gfn)
{
	return (struct dt_gfn){ .gfn = gfn, .vcpu = -1 };
}

/* 1 s epochs: pages 0..99 in the first, then 50..149 every second after */
START_TEST(wss_windows)
{
	struct dt_wss *w = dt_wss__new(60000 * MS);
	struct dt_gfn a[100], b[100];

	ck_assert_ptr_nonnull(w);
	for (int i = 0; i < 100; i++) {
		a[i] = g(i);
		b[i] = g(50 + i);
	}
	ck_assert_int_eq(dt_wss__add(w, 1000 * MS, a, 100), 0);
	ck_assert_uint_eq(dt_wss__pages(w, 1000 * MS), 100);
	for (int s = 2; s <= 30; s++)
		ck_assert_int_eq(dt_wss__add(w, s * 1000 * MS, b, 100), 0);
	ck_assert_uint_eq(dt_wss__pages(w, 1000 * MS), 100);
	ck_assert_uint_eq(dt_wss__pages(w, 10000 * MS), 100);
	ck_assert_uint_eq(dt_wss__pages(w, 60000 * MS), 150);	/* the first epoch still counts */
	ck_assert_uint_eq(dt_wss__total(w), 150);
	/* 31 s later the first epoch is out of every window, but not out of the total */
	ck_assert_int_eq(dt_wss__add(w, 62000 * MS, b, 10), 0);
	ck_assert_uint_eq(dt_wss__pages(w, 60000 * MS), 100);
	ck_assert_uint_eq(dt_wss__pages(w, 1000 * MS), 10);
	ck_assert_uint_eq(dt_wss__total(w), 150);
	ck_assert_int_eq(dt_wss__add(w, 1000 * MS, a, 1), -EINVAL);	/* time went back */
	/* jitter: an epoch 1.004 s after the last still makes a 1 s window of one epoch */
	ck_assert_int_eq(dt_wss__add(w, 63004 * MS, a, 5), 0);
	ck_assert_uint_eq(dt_wss__pages(w, 1000 * MS), 5);
	ck_assert_uint_eq(dt_wss__pages(w, 2000 * MS), 15);	/* and 2 s holds two */
	dt_wss__free(w);
}
END_TEST

/* Same GFN in two address spaces, and unresolved pages: all distinct. */
START_TEST(wss_keys)
{
	struct dt_wss *w = dt_wss__new(1000 * MS);
	struct dt_gfn v[5] = { g(7), g(7), g(7), g(DT_GFN_NONE), g(DT_GFN_NONE) };

	v[2].as_id = 1;
	v[3].slot = 3;
	v[3].offset = 7;
	v[4].slot = 4;
	v[4].offset = 7;
	ck_assert_int_eq(dt_wss__add(w, 1, v, 5), 0);
	ck_assert_uint_eq(dt_wss__pages(w, 1000 * MS), 4);
	ck_assert_uint_eq(dt_wss__total(w), 4);
	dt_wss__free(w);
}
END_TEST

/* Many pages, most of them old: the table shrinks back to what is recent. */
START_TEST(wss_against_reference)
{
	struct dt_wss *w = dt_wss__new(5000 * MS);
	static uint64_t last[20000];
	struct dt_gfn v[500];
	uint64_t seed = 3, ever = 0;
	static unsigned char seen[20000];

	for (int s = 1; s <= 40; s++) {
		uint64_t want = 0;

		for (int i = 0; i < 500; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			v[i] = g((seed >> 33) % (s < 20 ? 20000 : 600));
			last[v[i].gfn] = s;
			ever += !seen[v[i].gfn]++;
		}
		ck_assert_int_eq(dt_wss__add(w, s * 1000 * MS, v, 500), 0);
		for (int p = 0; p < 20000; p++)
			want += last[p] && (int64_t)last[p] > s - 3;
		ck_assert_uint_eq(dt_wss__pages(w, 3000 * MS), want);
		ck_assert_uint_eq(dt_wss__total(w), ever);
	}
	dt_wss__free(w);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("window");
	TCase *core = tcase_create("core"), *errors = tcase_create("errors");

	tcase_add_test(core, steady_rate);
	tcase_add_test(core, uneven_epochs_and_gaps);
	tcase_add_test(core, capacity_evicts_oldest);
	tcase_add_test(core, zero_length_epoch);
	tcase_add_test(errors, bad_input);
	tcase_add_test(core, wss_windows);
	tcase_add_test(core, wss_keys);
	tcase_add_test(core, wss_against_reference);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	return dt_test_main(s, "window");
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Self-test of the test VMM: after every epoch, the pages KVM reports must be exactly the pages
 * the guest was told to write, and each of them must hold the epoch's value. Needs root and
 * /dev/kvm; exits 77 (skip) without them, 1 on any mismatch.
 *
 *   gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread tests/vmm.c tests/vmm_selftest.c \
 *       -o /tmp/vmm_selftest && /tmp/vmm_selftest
 */
#include "vmm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB		(1ULL << 20)
#define GIB		(1ULL << 30)
#define EXIT_SKIP	77

struct region {
	uint16_t slot;
	uint64_t gpa;
	uint64_t size;
};

/* Slot 1 small and dense, slots 2 and 3 large and sparse (only touched pages cost memory). */
static const struct region regions[] = {
	{ 1, 16 * MIB, 16 * MIB },
	{ 2, 1 * GIB, 64 * MIB },
	{ 3, 2 * GIB, 1 * GIB },
};
#define NR_REGIONS	(sizeof(regions) / sizeof(regions[0]))
/* Slot whose logging a few epochs turn off, to check that its writes then go unreported. */
#define TOGGLE_SLOT	2

struct scenario {
	const char *name;
	int nr_vcpus;
	uint32_t ring_entries;
	bool manual_protect;
	int epochs;
	size_t writes;			/* per vCPU per epoch */
	bool seq_only;			/* a sequential sweep of slot 1, not mixed patterns */
};

struct result {
	uint64_t writes;
	uint64_t logged;		/* writes to slots with logging on */
	uint64_t raw;			/* pages as reported, before dedup */
	uint64_t unique;
	double run_s;
	double total_s;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void shuffle(uint64_t *v, size_t n, uint64_t *seed)
{
	size_t i;

	for (i = n; i > 1; i--) {
		size_t j = tvm_rand(seed) % i;
		uint64_t t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

/* A quarter of the writes to slot 1, a quarter to slot 2, half to slot 3, interleaved. */
static void make_list(uint64_t *out, size_t n, int epoch, int vcpu, uint64_t *seed)
{
	size_t part[NR_REGIONS] = { n / 4, n / 4, n - 2 * (n / 4) };
	size_t r, at = 0;

	for (r = 0; r < NR_REGIONS; r++) {
		const struct region *g = &regions[r];

		if (r == 0 && epoch % 7 == 3)
			tvm_pattern_seq(out + at, part[r], g->gpa, g->size, epoch * 37ULL);
		else if ((epoch + vcpu) % 2)
			tvm_pattern_random(out + at, part[r], g->gpa, g->size, seed);
		else
			tvm_pattern_hotcold(out + at, part[r], g->gpa, g->size, 64, 90, seed);
		at += part[r];
	}
	shuffle(out, n, seed);
}

static int page_order(const struct tvm_page *a, const struct tvm_page *b)
{
	if (a->as_id != b->as_id)
		return a->as_id < b->as_id ? -1 : 1;
	if (a->slot != b->slot)
		return a->slot < b->slot ? -1 : 1;
	if (a->offset != b->offset)
		return a->offset < b->offset ? -1 : 1;
	return 0;
}

/* The first differences between two sorted, unique page lists. */
static void print_diff(const struct tvm_pages *got, const struct tvm_pages *want)
{
	size_t a = 0, b = 0, shown = 0;

	while ((a < got->n || b < want->n) && shown < 10) {
		int c = a == got->n ? 1 : b == want->n ? -1 : page_order(&got->v[a], &want->v[b]);
		const struct tvm_page *pg = c < 0 ? &got->v[a] : &want->v[b];

		if (c)
			fprintf(stderr, "  %s as %u slot %u page %llu\n",
				c < 0 ? "extra  " : "missing", pg->as_id, pg->slot,
				(unsigned long long)pg->offset);
		shown += c != 0;
		a += c <= 0;
		b += c >= 0;
	}
}

#define FAIL(...)					\
	do {						\
		fprintf(stderr, "vmm_selftest: " __VA_ARGS__);	\
		fputc('\n', stderr);			\
		goto out;				\
	} while (0)

static int run_scenario(const struct scenario *sc, uint32_t iter_base, struct result *res)
{
	struct tvm_opts opts = {
		.nr_vcpus = sc->nr_vcpus,
		.ring_entries = sc->ring_entries,
		.manual_protect = sc->manual_protect,
	};
	uint64_t *lists[TVM_MAX_VCPUS] = { 0 };
	size_t counts[TVM_MAX_VCPUS];
	struct tvm_pages got = { 0 }, want = { 0 };
	uint64_t seed = 0x5eed0000 + iter_base;
	double t0 = now(), t;
	struct tvm *vm;
	int e, v, ret = 1, err;
	size_t i, r;

	memset(res, 0, sizeof(*res));
	vm = tvm_create(&opts);
	if (!vm) {
		fprintf(stderr, "vmm_selftest: %s: tvm_create: %s\n", sc->name, strerror(errno));
		return errno == EOPNOTSUPP ? EXIT_SKIP : 1;
	}
	for (r = 0; r < NR_REGIONS; r++) {
		err = tvm_add_slot(vm, regions[r].slot, regions[r].gpa, regions[r].size, true);
		if (err)
			FAIL("%s: add slot %u: %s", sc->name, regions[r].slot, strerror(-err));
	}
	for (v = 0; v < sc->nr_vcpus; v++) {
		lists[v] = calloc(sc->writes, sizeof(uint64_t));
		if (!lists[v])
			FAIL("%s: out of memory", sc->name);
	}

	for (e = 0; e < sc->epochs; e++) {
		uint32_t iter = iter_base + e + 1;
		bool toggle = e % 10 == 9;

		for (v = 0; v < sc->nr_vcpus; v++) {
			counts[v] = sc->writes;
			/* an idle vCPU must still come back cleanly */
			if (v == 1 && e % 13 == 5)
				counts[v] = 0;
			if (sc->seq_only)
				tvm_pattern_seq(lists[v], counts[v], regions[0].gpa,
						regions[0].size, v * 1000);
			else
				make_list(lists[v], counts[v], e, v, &seed);
		}
		if (toggle) {
			err = tvm_set_logging(vm, TOGGLE_SLOT, false);
			if (err)
				FAIL("%s: logging off: %s", sc->name, strerror(-err));
		}

		t = now();
		err = tvm_run_epoch(vm, (const uint64_t *const *)lists, counts, iter);
		res->run_s += now() - t;
		if (err)
			FAIL("%s: epoch %d: %s (exit reason %u)", sc->name, e, strerror(-err),
			     tvm_vcpu_exit_reason(vm, 0));

		tvm_pages_clear(&got);
		err = tvm_harvest(vm, &got);
		if (err)
			FAIL("%s: epoch %d: harvest: %s", sc->name, e, strerror(-err));
		res->raw += got.n;
		tvm_pages_sort_unique(&got);

		tvm_pages_clear(&want);
		for (v = 0; v < sc->nr_vcpus; v++) {
			for (i = 0; i < counts[v]; i++) {
				uint64_t gpa = lists[v][i];
				uint32_t *hva = tvm_gpa_to_hva(vm, gpa);
				struct tvm_page pg;

				if (!hva || tvm_gpa_to_page(vm, gpa, &pg))
					FAIL("%s: gpa %#llx not mapped", sc->name,
					     (unsigned long long)gpa);
				if (*hva != iter)
					FAIL("%s: epoch %d: vcpu %d: gpa %#llx holds %u, want %u",
					     sc->name, e, v, (unsigned long long)gpa, *hva, iter);
				res->writes++;
				if (toggle && pg.slot == TOGGLE_SLOT)
					continue;
				res->logged++;
				if (tvm_pages_add(&want, &pg))
					FAIL("%s: out of memory", sc->name);
			}
		}
		tvm_pages_sort_unique(&want);
		if (!tvm_pages_equal(&got, &want)) {
			fprintf(stderr, "vmm_selftest: %s: epoch %d: %zu pages harvested, "
				"%zu written\n", sc->name, e, got.n, want.n);
			print_diff(&got, &want);
			goto out;
		}
		res->unique += got.n;

		if (toggle) {
			err = tvm_set_logging(vm, TOGGLE_SLOT, true);
			if (err)
				FAIL("%s: logging on: %s", sc->name, strerror(-err));
		}
	}
	ret = 0;
out:
	res->total_s = now() - t0;
	if (!ret) {
		struct tvm_stats st;

		tvm_get_stats(vm, &st);
		printf("%-22s vcpus %d epochs %3llu writes %7llu logged %7llu raw %7llu "
		       "unique %7llu ring-full %5llu resets %5llu  %5.2f s  %6.0f writes/s\n",
		       sc->name, sc->nr_vcpus, (unsigned long long)st.epochs,
		       (unsigned long long)res->writes, (unsigned long long)res->logged,
		       (unsigned long long)res->raw,
		       (unsigned long long)res->unique, (unsigned long long)st.ring_full_exits,
		       (unsigned long long)st.resets, res->total_s,
		       res->run_s > 0 ? res->writes / res->run_s : 0.0);
		if (sc->ring_entries && sc->ring_entries * 2 < sc->writes && !st.ring_full_exits) {
			fprintf(stderr, "vmm_selftest: %s: no ring-full exit, %u-entry ring\n",
				sc->name, sc->ring_entries);
			ret = 1;
		}
		/*
		 * Each ring entry needs a logged guest store: more entries than stores means a bug.
		 * (Software-emulating KVM pushes one per store, hardware one per page and reset.)
		 */
		if (sc->ring_entries && (res->raw > res->logged || st.reaped != res->raw)) {
			fprintf(stderr, "vmm_selftest: %s: %llu entries for %llu logged writes, "
				"%llu reaped\n", sc->name, (unsigned long long)res->raw,
				(unsigned long long)res->logged, (unsigned long long)st.reaped);
			ret = 1;
		}
	}
	for (v = 0; v < sc->nr_vcpus; v++)
		free(lists[v]);
	tvm_pages_free(&got);
	tvm_pages_free(&want);
	tvm_destroy(vm);
	return ret;
}

/* Argument checking that must not need a guest to run. */
static int check_api(void)
{
	struct tvm_opts opts = { .nr_vcpus = 1, .ring_entries = 256 };
	uint64_t bad[] = { 2 * GIB + 2 }, low[] = { 0x2000 }, hole[] = { 512 * MIB };
	const uint64_t *lists[1];
	size_t counts[1] = { 1 };
	struct tvm_page pg;
	struct tvm *vm = NULL;
	int ret = 1;

	opts.nr_vcpus = 9;
	if (tvm_create(&opts) || errno != EINVAL)
		FAIL("api: 9 vCPUs accepted");
	opts.nr_vcpus = 1;
	opts.ring_entries = 300;
	if (tvm_create(&opts) || errno != EINVAL)
		FAIL("api: ring of 300 entries accepted");
	opts.ring_entries = 256;
	vm = tvm_create(&opts);
	if (!vm) {
		fprintf(stderr, "vmm_selftest: api: tvm_create: %s\n", strerror(errno));
		return errno == EOPNOTSUPP ? EXIT_SKIP : 1;
	}
	if (tvm_add_slot(vm, 1, 16 * MIB, 16 * MIB, true) ||
	    tvm_add_slot(vm, 3, 2 * GIB, 1 * GIB, true))
		FAIL("api: add slot");
	if (tvm_add_slot(vm, 2, 20 * MIB, 4 * MIB, true) != -EEXIST)
		FAIL("api: overlapping slot accepted");
	if (tvm_add_slot(vm, 1, 64 * MIB, 4 * MIB, true) != -EEXIST)
		FAIL("api: duplicate slot id accepted");
	if (tvm_add_slot(vm, 4, 4 * GIB, 2 * TVM_PAGE_SIZE, true) != -EINVAL)
		FAIL("api: slot starting at 4 GiB accepted");
	if (tvm_add_slot(vm, 4, 4 * GIB - TVM_PAGE_SIZE, 2 * TVM_PAGE_SIZE, true))
		FAIL("api: slot crossing 4 GiB refused");
	if (tvm_gpa_to_page(vm, 512 * MIB, &pg) != -ENOENT || tvm_gpa_to_hva(vm, 512 * MIB))
		FAIL("api: unmapped gpa resolved");
	if (tvm_gpa_to_page(vm, 2 * GIB + 5 * TVM_PAGE_SIZE + 8, &pg) || pg.slot != 3 ||
	    pg.offset != 5 || pg.as_id)
		FAIL("api: gpa_to_page");
	if (tvm_set_logging(vm, 7, true) != -ENOENT)
		FAIL("api: logging on a missing slot");
	lists[0] = bad;
	if (tvm_run_epoch(vm, lists, counts, 1) != -EINVAL)
		FAIL("api: unaligned address accepted");
	lists[0] = low;
	if (tvm_run_epoch(vm, lists, counts, 1) != -EINVAL)
		FAIL("api: address in the code area accepted");
	lists[0] = hole;
	if (tvm_run_epoch(vm, lists, counts, 1) != -EINVAL)
		FAIL("api: address outside every slot accepted");
	if (tvm_vcpu_tid(vm, 0))
		FAIL("api: vCPU thread before the first epoch");
	counts[0] = 0;
	if (tvm_run_epoch(vm, lists, counts, 1) || tvm_vcpu_tid(vm, 0) <= 0 ||
	    tvm_vcpu_tid(vm, 0) == getpid())
		FAIL("api: empty epoch");
	printf("%-22s ok\n", "api");
	ret = 0;
out:
	if (vm)
		tvm_destroy(vm);
	return ret;
}

int main(void)
{
	static const struct scenario scenarios[] = {
		{ "ring-256 1 vcpu", 1, 256, false, 200, 1000, false },
		{ "ring-256 2 vcpus", 2, 256, false, 200, 1000, false },
		{ "ring-4096 big list", 1, 4096, false, 1, 40000, true },
		{ "bitmap 2 vcpus", 2, 0, false, 50, 2000, false },
		{ "bitmap-manual 2 vcpus", 2, 0, true, 50, 2000, false },
	};
	struct result res;
	double t0 = now();
	size_t i;
	int ret;

	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: /dev/kvm: %s\n", strerror(errno));
		return EXIT_SKIP;
	}
	ret = check_api();
	if (ret)
		return ret;
	for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		ret = run_scenario(&scenarios[i], (i + 1) * 100000, &res);
		if (ret == EXIT_SKIP) {
			printf("%-22s SKIP\n", scenarios[i].name);
			continue;
		}
		if (ret)
			return ret;
	}
	printf("all scenarios passed in %.1f s\n", now() - t0);
	return 0;
}

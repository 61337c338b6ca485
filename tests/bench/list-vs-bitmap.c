// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * list-vs-bitmap: what it costs to obtain one epoch's dirty list, and what memory that needs,
 * as a function of guest size and of the number of dirty pages (issue 5, items 3 and 5).
 *
 * For slots of 1 GiB, 64 GiB and 1 TiB (sparse MAP_NORESERVE memory of the test VMM) and 1,000 or
 * 100,000 dirty pages, the guest writes the same distinct pages (random, in the first 3 GiB of
 * the slot: the test guest is 32-bit) and the dirty list is obtained three ways:
 *   bitmap  a VM in bitmap mode with manual protect: KVM_GET_DIRTY_LOG, a scan of the bitmap into
 *           a GFN list, KVM_CLEAR_DIRTY_LOG (what a migration does per pass);
 *   ring    a VM with KVM's dirty ring: the entries reaped at ring-full exits during the epoch
 *           and at its end, with KVM_RESET_DIRTY_RINGS (tvm_stats.reap_ns);
 *   cut     dirtytrace on that ring VM: dt_tracer__cut, which drains the BPF ring buffer,
 *           recovers dropped records from the dedup map, sorts and resolves GFNs.
 * Every list is checked: the bitmap's and the ring's against the pages the guest was told to
 * write, dirtytrace's against the ring's. A mismatch is an error (exit 1), never a number.
 *
 * Memory: the tracer's BPF maps (the "memlock:" of each map fd in /proc/self/fdinfo, as bpftool
 * shows it), the harvester's heap held after the first cut of a fresh tracer (mallinfo2 in-use
 * bytes, mmap'd blocks included), KVM's dirty bitmap (2 x S/32768 bytes, and the host's
 * VmallocUsed change when logging is turned on), and KVM's own per-slot metadata (VmallocUsed
 * change when the slot is added; host-wide counters, so another process may add noise).
 *
 * Times are medians over --rounds epochs; the machine is shared, so read the ratios.
 * Exit status: 0, 1 on an error or a wrong list, 77 when this machine cannot run it (SKIP line).
 */
#include <errno.h>
#include <getopt.h>
#include <linux/kvm.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <dirtytrace/dirtytrace.h>
#include "../../tools/common.h"	/* tool_now_ns */
#include "tracer.h"
#include "vmm.h"

#define KiB		(1ull << 10)
#define MiB		(1ull << 20)
#define GiB		(1ull << 30)
#define SLOT_ID		1
#define SLOT_GPA	(4 * MiB)
/* the 32-bit guest reaches [SLOT_GPA, SLOT_GPA + WRITE_SPAN) of the slot */
#define WRITE_SPAN	(3 * GiB)
#define MAX_ROUNDS	15
#define EXIT_SKIP	77

static const uint64_t full_sizes[] = { 1 * GiB, 64 * GiB, 1024 * GiB };
static const size_t full_pages[] = { 1000, 100000 };
static const uint64_t quick_sizes[] = { 1 * GiB, 64 * GiB };
static const size_t quick_pages[] = { 1000 };

static struct {
	bool quick, json, verbose;
	int rounds;
	uint32_t ring;
	size_t ringbuf;		/* the tracer's BPF ring buffer, 0: the library's default */
	bool heap_ok;		/* mallinfo2 sees our allocations (not under ASan) */
	uint64_t slot_bytes;	/* --slot: this one size only */
	size_t pages;		/* --pages: this one count only */
} env = { .rounds = 5, .ring = 65536 };

/* One (slot size, dirty pages) case: per-round samples, then medians. */
struct bench_case {
	uint64_t slot_bytes;
	size_t pages;
	/* per round, ns */
	uint64_t get[MAX_ROUNDS], scan[MAX_ROUNDS], clear[MAX_ROUNDS], bitmap[MAX_ROUNDS];
	uint64_t reap[MAX_ROUNDS], reap_exit[MAX_ROUNDS], ring_sort[MAX_ROUNDS];
	uint64_t cut[MAX_ROUNDS];
	uint64_t cut_empty;	/* median cut of an epoch with no dirty page: the fixed part */
	uint64_t exits[MAX_ROUNDS], recovered[MAX_ROUNDS], rb_drops[MAX_ROUNDS];
	/* memory, bytes */
	uint64_t bpf_maps;	/* tracer's BPF maps, memlock */
	uint64_t heap;		/* harvester heap held after a fresh tracer's first cut */
	int64_t kvm_slot_vmalloc;	/* VmallocUsed change at slot creation (ring VM) */
	int64_t kvm_log_vmalloc;	/* VmallocUsed change at logging on (bitmap VM) */
};

static int cmp_u64(const void *pa, const void *pb)
{
	uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;

	return a < b ? -1 : a > b;
}

static uint64_t median(const uint64_t *v, int n)
{
	uint64_t s[MAX_ROUNDS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_u64);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double us(uint64_t ns)
{
	return ns / 1000.0;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "list-vs-bitmap: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int print_warn(enum dt_print_level level, const char *fmt, va_list ap)
{
	return level == DT_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

/* ---- memory probes ---- */

/* Heap bytes in use, mmap'd blocks included (large lists live there). */
static uint64_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* Whether mallinfo2 sees this process's allocations (an ASan build replaces malloc). */
static bool heap_measurable(void)
{
	uint64_t h0 = heap_used(), h1;
	volatile char *p = malloc(MiB);

	if (!p)
		return false;
	p[0] = 1;
	h1 = heap_used();
	free((void *)p);
	return h1 >= h0 + MiB;
}

/* Host-wide vmalloc use (KVM allocates dirty bitmaps and slot metadata there), bytes. */
static int64_t vmalloc_used(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	long long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmallocUsed: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

/* A map's memlock as the kernel accounts it (bpftool's "memlock"), or 0 if unreadable. */
static uint64_t map_memlock(int fd)
{
	char path[64], line[256];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "memlock: %llu", &v) == 1)
			break;
	fclose(f);
	return v;
}

static uint64_t tracer_map_bytes(const struct dt_tracer *t)
{
	struct bpf_object *obj = dt_tracer_bpf_object(t);
	struct bpf_map *map;
	uint64_t sum = 0;

	bpf_object__for_each_map(map, obj) {
		int fd = bpf_map__fd(map);
		uint64_t b;

		if (fd < 0)
			continue;
		b = map_memlock(fd);
		if (env.verbose && !env.json)
			printf("    map %-16s %10llu bytes\n", bpf_map__name(map),
			       (unsigned long long)b);
		sum += b;
	}
	return sum;
}

/* ---- the guest's writes ---- */

/*
 * n distinct random pages of the write span (within the slot), in random order (gpas) and as
 * sorted slot offsets (truth). The same (n, round) gives the same pages in both VMs.
 */
static void pick_pages(uint64_t slot_bytes, size_t n, int round, uint64_t *gpas, uint64_t *truth)
{
	uint64_t span = (slot_bytes < WRITE_SPAN ? slot_bytes : WRITE_SPAN) / TVM_PAGE_SIZE;
	uint64_t seed = 0x11575eed + n * 131 + round, *seen;
	size_t i = 0;

	if (n > span)
		fail("%zu pages do not fit in %llu", n, (unsigned long long)span);
	seen = calloc((span + 63) / 64, sizeof(*seen));
	if (!seen)
		fail("out of memory");
	while (i < n) {
		uint64_t p = tvm_rand(&seed) % span;

		if (seen[p / 64] & (1ull << (p % 64)))
			continue;
		seen[p / 64] |= 1ull << (p % 64);
		gpas[i] = SLOT_GPA + p * TVM_PAGE_SIZE;
		truth[i++] = p;
	}
	free(seen);
	qsort(truth, n, sizeof(*truth), cmp_u64);
}

static void run_epoch(struct tvm *vm, const uint64_t *gpas, size_t n, uint32_t iter)
{
	const uint64_t *lists[1] = { gpas };
	size_t counts[1] = { n };
	int err = tvm_run_epoch(vm, lists, counts, iter);

	if (err)
		fail("tvm_run_epoch: %s (exit reason %u)", strerror(-err),
		     tvm_vcpu_exit_reason(vm, 0));
}

static struct tvm *make_vm(uint32_t ring, uint64_t slot_bytes, bool log, int64_t *vmalloc_delta)
{
	struct tvm_opts o = { .nr_vcpus = 1, .ring_entries = ring, .manual_protect = !ring };
	struct tvm *vm = tvm_create(&o);
	int64_t v0;
	int err;

	if (!vm)
		fail("tvm_create (%s): %s", ring ? "dirty ring" : "bitmap, manual protect",
		     strerror(errno));
	v0 = vmalloc_used();
	err = tvm_add_slot(vm, SLOT_ID, SLOT_GPA, slot_bytes, log);
	if (err)
		fail("a %llu GiB slot was refused: %s", (unsigned long long)(slot_bytes / GiB),
		     strerror(-err));
	*vmalloc_delta = vmalloc_used() - v0;
	return vm;
}

/* ---- bitmap: KVM_GET_DIRTY_LOG + scan into a GFN list + KVM_CLEAR_DIRTY_LOG ---- */

struct gfn_list {
	uint64_t *v;
	size_t n, cap;
};

static int gfn_list_add(struct gfn_list *l, uint64_t gfn)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		uint64_t *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = gfn;
	return 0;
}

static void bitmap_round(struct tvm *vm, struct bench_case *c, int r, uint64_t *bitmap,
			 const uint64_t *truth)
{
	uint64_t npages = c->slot_bytes / TVM_PAGE_SIZE, words = (npages + 63) / 64;
	uint64_t base_gfn = SLOT_GPA / TVM_PAGE_SIZE, t0, t1, t2, t3;
	struct kvm_dirty_log log = { .slot = SLOT_ID, .dirty_bitmap = bitmap };
	struct kvm_clear_dirty_log clr = {
		.slot = SLOT_ID, .first_page = 0, .num_pages = (uint32_t)npages,
		.dirty_bitmap = bitmap,
	};
	struct gfn_list list = {};
	int fd = tvm_vm_fd(vm);

	t0 = tool_now_ns();
	if (ioctl(fd, KVM_GET_DIRTY_LOG, &log) < 0)
		fail("KVM_GET_DIRTY_LOG: %s", strerror(errno));
	t1 = tool_now_ns();
	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = bitmap[w];

		while (bits) {
			if (gfn_list_add(&list, base_gfn + w * 64 + __builtin_ctzll(bits)))
				fail("out of memory");
			bits &= bits - 1;
		}
	}
	t2 = tool_now_ns();
	/* re-arms write tracking for the pages just reported, as a migration pass does */
	if (ioctl(fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
		fail("KVM_CLEAR_DIRTY_LOG: %s", strerror(errno));
	t3 = tool_now_ns();

	if (list.n != c->pages)
		fail("bitmap, %llu GiB slot: KVM reported %zu pages, the guest wrote %zu",
		     (unsigned long long)(c->slot_bytes / GiB), list.n, c->pages);
	for (size_t i = 0; i < list.n; i++)
		if (list.v[i] != base_gfn + truth[i])
			fail("bitmap: page %zu is gfn %#llx, the guest wrote %#llx", i,
			     (unsigned long long)list.v[i],
			     (unsigned long long)(base_gfn + truth[i]));
	free(list.v);
	c->get[r] = t1 - t0;
	c->scan[r] = t2 - t1;
	c->clear[r] = t3 - t2;
	c->bitmap[r] = t3 - t0;
}

static void run_bitmap(uint64_t slot_bytes, struct bench_case *cases, size_t nr_cases)
{
	uint64_t npages = slot_bytes / TVM_PAGE_SIZE, *bitmap, *gpas, *truth;
	int64_t slot_delta, v0, log_delta;
	struct tvm *vm;
	uint32_t iter = 1;

	/* logging off first, so that turning it on shows what KVM's bitmap costs */
	vm = make_vm(0, slot_bytes, false, &slot_delta);
	v0 = vmalloc_used();
	if (tvm_set_logging(vm, SLOT_ID, true))
		fail("dirty logging on a %llu GiB slot: refused",
		     (unsigned long long)(slot_bytes / GiB));
	log_delta = vmalloc_used() - v0;
	bitmap = calloc((npages + 63) / 64, sizeof(*bitmap));
	if (!bitmap)
		fail("out of memory for a %llu-byte bitmap", (unsigned long long)(npages / 8));
	run_epoch(vm, NULL, 0, iter++);	/* the vCPU thread exists before anything is timed */

	for (size_t i = 0; i < nr_cases; i++) {
		struct bench_case *c = &cases[i];

		gpas = calloc(c->pages, sizeof(*gpas));
		truth = calloc(c->pages, sizeof(*truth));
		if (!gpas || !truth)
			fail("out of memory");
		c->kvm_log_vmalloc = log_delta;
		for (int r = 0; r < env.rounds; r++) {
			pick_pages(slot_bytes, c->pages, r, gpas, truth);
			run_epoch(vm, gpas, c->pages, iter++);
			bitmap_round(vm, c, r, bitmap, truth);
			if (env.verbose && !env.json)
				printf("  bitmap %5llu GiB %6zu pages round %d: get %.0f scan %.0f "
				       "clear %.0f us\n", (unsigned long long)(slot_bytes / GiB),
				       c->pages, r, us(c->get[r]), us(c->scan[r]), us(c->clear[r]));
		}
		free(gpas);
		free(truth);
	}
	free(bitmap);
	tvm_destroy(vm);
}

/* ---- dirty ring, and dirtytrace on the same VM ---- */

/* Opens a tracer on this process and times cuts of empty epochs (the guest is idle). */
static struct dt_tracer *open_tracer(uint64_t *cut_empty)
{
	pid_t self = getpid();
	struct dt_tracer_opts o = { .sz = sizeof(o), .pids = &self, .nr_pids = 1,
				    .ringbuf_bytes = env.ringbuf };
	uint64_t ns[MAX_ROUNDS];
	struct dt_tracer *t;
	struct dt_epoch *e;

	t = dt_tracer__open(&o);
	if (!t)
		fail("dt_tracer__open: %s", strerror(errno));
	if (dt_tracer__cut(t, &e))	/* a clean epoch to start from */
		fail("dt_tracer__cut: first cut failed");
	dt_epoch__free(e);
	for (int r = 0; r < env.rounds; r++) {
		uint64_t t0 = tool_now_ns();

		if (dt_tracer__cut(t, &e))
			fail("dt_tracer__cut of an empty epoch failed");
		ns[r] = tool_now_ns() - t0;
		if (dt_epoch__vm(e, getpid()))
			fail("dirtytrace: pages in an epoch where the guest did not run");
		dt_epoch__free(e);
	}
	*cut_empty = median(ns, env.rounds);
	return t;
}

static void ring_round(struct tvm *vm, struct dt_tracer *t, struct bench_case *c, int r,
		       const uint64_t *gpas, const uint64_t *truth, uint32_t iter)
{
	uint64_t base_gfn = SLOT_GPA / TVM_PAGE_SIZE, t0, t1, h0, h1;
	struct tvm_pages kvm_pages = {};
	struct tvm_stats s0, s1;
	struct dt_stats d0, d1;
	const struct dt_epoch_vm *mine;
	struct dt_epoch *e;
	int err;

	tvm_get_stats(vm, &s0);
	dt_tracer__stats(t, &d0);
	run_epoch(vm, gpas, c->pages, iter);
	err = tvm_harvest(vm, &kvm_pages);
	if (err)
		fail("tvm_harvest: %s", strerror(-err));
	tvm_get_stats(vm, &s1);
	c->reap[r] = s1.reap_ns - s0.reap_ns;
	c->reap_exit[r] = s1.reap_exit_ns - s0.reap_exit_ns;
	c->exits[r] = s1.ring_full_exits - s0.ring_full_exits;
	t0 = tool_now_ns();
	/* the entries as a sorted list, which the cut also makes */
	tvm_pages_sort_unique(&kvm_pages);
	c->ring_sort[r] = tool_now_ns() - t0;

	h0 = heap_used();
	t0 = tool_now_ns();
	err = dt_tracer__cut(t, &e);
	t1 = tool_now_ns();
	h1 = heap_used();
	if (err)
		fail("dt_tracer__cut: %s", strerror(-err));
	c->cut[r] = t1 - t0;
	if (r == 0)
		c->heap = h1 > h0 ? h1 - h0 : 0;
	dt_tracer__stats(t, &d1);
	c->rb_drops[r] = d1.rb_drops - d0.rb_drops;
	c->recovered[r] = d1.recovered - d0.recovered;

	/* KVM's ring against the guest's writes, then dirtytrace against KVM's ring */
	if (kvm_pages.n != c->pages)
		fail("ring, %llu GiB slot: KVM reported %zu pages, the guest wrote %zu",
		     (unsigned long long)(c->slot_bytes / GiB), kvm_pages.n, c->pages);
	for (size_t i = 0; i < kvm_pages.n; i++)
		if (kvm_pages.v[i].slot != SLOT_ID || kvm_pages.v[i].offset != truth[i])
			fail("ring: page %zu is slot %u offset %#llx, the guest wrote %#llx", i,
			     kvm_pages.v[i].slot, (unsigned long long)kvm_pages.v[i].offset,
			     (unsigned long long)truth[i]);
	mine = dt_epoch__vm(e, getpid());
	if (!mine || mine->nr_gfns != kvm_pages.n)
		fail("dirtytrace, %llu GiB slot: %zu pages, KVM's ring %zu",
		     (unsigned long long)(c->slot_bytes / GiB), mine ? mine->nr_gfns : 0,
		     kvm_pages.n);
	for (size_t i = 0; i < mine->nr_gfns; i++) {
		const struct dt_gfn *g = &mine->gfns[i];

		if (g->slot != SLOT_ID || g->offset != kvm_pages.v[i].offset ||
		    g->gfn != base_gfn + kvm_pages.v[i].offset)
			fail("dirtytrace: page %zu is gfn %#llx (slot %u offset %#llx), KVM's ring "
			     "has offset %#llx", i, (unsigned long long)g->gfn, g->slot,
			     (unsigned long long)g->offset,
			     (unsigned long long)kvm_pages.v[i].offset);
	}
	dt_epoch__free(e);
	tvm_pages_free(&kvm_pages);
}

static void run_ring(uint64_t slot_bytes, struct bench_case *cases, size_t nr_cases)
{
	struct tvm_pages none = {};
	int64_t slot_delta;
	struct tvm *vm;
	uint32_t iter = 1;

	vm = make_vm(env.ring, slot_bytes, true, &slot_delta);
	run_epoch(vm, NULL, 0, iter++);
	if (tvm_harvest(vm, &none))
		fail("tvm_harvest failed");
	tvm_pages_free(&none);

	for (size_t i = 0; i < nr_cases; i++) {
		struct bench_case *c = &cases[i];
		uint64_t *gpas = calloc(c->pages, sizeof(*gpas));
		uint64_t *truth = calloc(c->pages, sizeof(*truth));
		struct dt_tracer *t;

		if (!gpas || !truth)
			fail("out of memory");
		c->kvm_slot_vmalloc = slot_delta;
		/* a fresh tracer per case: its heap then starts from nothing */
		t = open_tracer(&c->cut_empty);
		if (env.verbose && !env.json)
			printf("  tracer maps, %llu GiB slot, %zu pages (source %s):\n",
			       (unsigned long long)(slot_bytes / GiB), c->pages,
			       dt_source__name(dt_tracer__source(t)));
		c->bpf_maps = tracer_map_bytes(t);
		for (int r = 0; r < env.rounds; r++) {
			pick_pages(slot_bytes, c->pages, r, gpas, truth);
			ring_round(vm, t, c, r, gpas, truth, iter++);
			if (env.verbose && !env.json)
				printf("  ring   %5llu GiB %6zu pages round %d: reap %.0f us (%.0f in "
				       "%llu ring-full exits), sort %.0f us; cut %.0f us (%llu "
				       "records dropped, %llu pages recovered)\n",
				       (unsigned long long)(slot_bytes / GiB), c->pages, r,
				       us(c->reap[r]), us(c->reap_exit[r]),
				       (unsigned long long)c->exits[r], us(c->ring_sort[r]),
				       us(c->cut[r]), (unsigned long long)c->rb_drops[r],
				       (unsigned long long)c->recovered[r]);
		}
		dt_tracer__close(t);
		free(gpas);
		free(truth);
	}
	tvm_destroy(vm);
}

/* ---- report ---- */

static const char *size_name(uint64_t bytes, char *buf, size_t sz)
{
	if (bytes >= 1024 * GiB)
		snprintf(buf, sz, "%llu TiB", (unsigned long long)(bytes / (1024 * GiB)));
	else
		snprintf(buf, sz, "%llu GiB", (unsigned long long)(bytes / GiB));
	return buf;
}

static void print_table(const struct bench_case *cs, size_t n)
{
	char name[32];

	printf("GFN list vs bitmap: cost to obtain one epoch's dirty list, median of %d rounds "
	       "(us; ratios against the dirtytrace cut)\n", env.rounds);
	printf("%-8s %7s %9s %11s %9s %8s %8s | %9s %9s %8s %11s %10s\n", "slot", "dirty",
	       "cut_us", "bitmap_us", "ring_us", "bm/cut", "ring/cut", "dt_bpf_KiB",
	       "dt_heap_KiB", "heap_B/pg", "kvm_bm_KiB", "kvm_md_MiB");
	for (size_t i = 0; i < n; i++) {
		const struct bench_case *c = &cs[i];
		double cut = median(c->cut, env.rounds), bm = median(c->bitmap, env.rounds);
		double ring = median(c->reap, env.rounds);

		char heap[24] = "n/a", per_page[24] = "n/a";

		if (env.heap_ok) {
			snprintf(heap, sizeof(heap), "%.0f", c->heap / 1024.0);
			snprintf(per_page, sizeof(per_page), "%.0f", (double)c->heap / c->pages);
		}
		printf("%-8s %7zu %9.0f %11.0f %9.0f %8.2f %8.2f | %10.0f %11s %9s %11.0f %10.0f\n",
		       size_name(c->slot_bytes, name, sizeof(name)), c->pages, cut / 1000,
		       bm / 1000, ring / 1000, bm / cut, ring / cut, c->bpf_maps / 1024.0,
		       heap, per_page, 2.0 * c->slot_bytes / TVM_PAGE_SIZE / 8 / 1024,
		       c->kvm_slot_vmalloc / (double)MiB);
	}
	printf("\nbitmap parts and ring details (medians, us):\n");
	printf("%-8s %7s %9s %9s %9s | %9s %9s %6s %9s | %9s %8s %9s\n", "slot", "dirty", "get",
	       "scan", "clear", "reap_exit", "reap_end", "exits", "ring_sort", "cut_empty",
	       "rb_drops", "recovered");
	for (size_t i = 0; i < n; i++) {
		const struct bench_case *c = &cs[i];
		uint64_t end[MAX_ROUNDS];

		for (int r = 0; r < env.rounds; r++)
			end[r] = c->reap[r] - c->reap_exit[r];
		printf("%-8s %7zu %9.0f %9.0f %9.0f | %9.0f %9.0f %6llu %9.0f | %9.0f %8llu "
		       "%9llu\n", size_name(c->slot_bytes, name, sizeof(name)), c->pages,
		       us(median(c->get, env.rounds)), us(median(c->scan, env.rounds)),
		       us(median(c->clear, env.rounds)), us(median(c->reap_exit, env.rounds)),
		       us(median(end, env.rounds)),
		       (unsigned long long)median(c->exits, env.rounds),
		       us(median(c->ring_sort, env.rounds)), us(c->cut_empty),
		       (unsigned long long)median(c->rb_drops, env.rounds),
		       (unsigned long long)median(c->recovered, env.rounds));
	}
	printf("\n"
	       "cut_us      dt_tracer__cut: drain the BPF ring buffer, recover dropped records, "
	       "sort, resolve GFNs\n"
	       "bitmap_us   KVM_GET_DIRTY_LOG + scan into a GFN list + KVM_CLEAR_DIRTY_LOG\n"
	       "ring_us     KVM dirty ring (%u entries): entries read + KVM_RESET_DIRTY_RINGS, "
	       "ring-full exits included, unsorted\n"
	       "dt_bpf_KiB  the tracer's BPF maps (memlock)\n"
	       "dt_heap_KiB harvester heap held after the first cut (n/a: not glibc's malloc, "
	       "e.g. ASan)\n"
	       "kvm_bm_KiB  KVM's dirty bitmap, 2 x slot/32768 (turning logging on: %+.0f KiB "
	       "of vmalloc, largest slot)\n"
	       "kvm_md_MiB  KVM's own per-slot metadata (vmalloc at slot creation)\n", env.ring,
	       cs[n - 1].kvm_log_vmalloc / 1024.0);
}

static void print_json(const struct bench_case *cs, size_t n)
{
	printf("{\"rounds\":%d,\"ring_entries\":%u,\"cases\":[", env.rounds, env.ring);
	for (size_t i = 0; i < n; i++) {
		const struct bench_case *c = &cs[i];
		char heap[24] = "null";

		if (env.heap_ok)
			snprintf(heap, sizeof(heap), "%llu", (unsigned long long)c->heap);
		printf("%s{\"slot_bytes\":%llu,\"dirty_pages\":%zu,\"cut_us\":%.1f,"
		       "\"bitmap_us\":%.1f,\"get_us\":%.1f,\"scan_us\":%.1f,\"clear_us\":%.1f,"
		       "\"ring_reap_us\":%.1f,\"ring_reap_exit_us\":%.1f,\"ring_full_exits\":%llu,"
		       "\"ring_sort_us\":%.1f,\"cut_empty_us\":%.1f,\"rb_drops\":%llu,"
		       "\"recovered\":%llu,"
		       "\"dt_bpf_map_bytes\":%llu,\"dt_heap_bytes\":%s,"
		       "\"kvm_bitmap_bytes\":%llu,\"kvm_log_vmalloc_bytes\":%lld,"
		       "\"kvm_slot_vmalloc_bytes\":%lld}",
		       i ? "," : "", (unsigned long long)c->slot_bytes, c->pages,
		       us(median(c->cut, env.rounds)), us(median(c->bitmap, env.rounds)),
		       us(median(c->get, env.rounds)), us(median(c->scan, env.rounds)),
		       us(median(c->clear, env.rounds)), us(median(c->reap, env.rounds)),
		       us(median(c->reap_exit, env.rounds)),
		       (unsigned long long)median(c->exits, env.rounds),
		       us(median(c->ring_sort, env.rounds)), us(c->cut_empty),
		       (unsigned long long)median(c->rb_drops, env.rounds),
		       (unsigned long long)median(c->recovered, env.rounds),
		       (unsigned long long)c->bpf_maps, heap,
		       (unsigned long long)(2 * c->slot_bytes / TVM_PAGE_SIZE / 8),
		       (long long)c->kvm_log_vmalloc, (long long)c->kvm_slot_vmalloc);
	}
	printf("]}\n");
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: list-vs-bitmap [--quick] [--rounds N] [--ring N] [--ringbuf B] [--slot GIB]\n"
		"                      [--pages N] [--json] [-v]\n"
		"The cost of an epoch's dirty list: dirtytrace cut vs KVM dirty bitmap vs KVM\n"
		"dirty ring, for 1 GiB, 64 GiB and 1 TiB slots with 1,000 and 100,000 dirty pages.\n"
		"  --quick      1,000 pages, 1 GiB and 64 GiB slots only (CI: it still runs)\n"
		"  --rounds N   epochs per case, median reported (1..%d, default 5)\n"
		"  --ring N     dirty ring entries per vCPU (power of 2, 256..65536; 65536)\n"
		"  --ringbuf B  the tracer's BPF ring buffer, bytes (power of 2 >= 4096; 4 MiB)\n"
		"  --slot GIB   only this slot size (1..8192 GiB)\n"
		"  --pages N    only this many dirty pages (1..786432, at most the slot's pages)\n"
		"  --json       one JSON object instead of the tables\n"
		"  -v           per-round values and the tracer's maps\n", MAX_ROUNDS);
}

static void parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "ring", required_argument, NULL, 'R' },
		{ "json", no_argument, NULL, 'j' },
		{ "slot", required_argument, NULL, 's' },
		{ "ringbuf", required_argument, NULL, 'b' },
		{ "pages", required_argument, NULL, 'p' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	char *end;
	long v;
	int o;

	opterr = 0;	/* one line of our own for a bad option */
	while ((o = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (o) {
		case 'q':
			env.quick = true;
			break;
		case 'r':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > MAX_ROUNDS) {
				fprintf(stderr, "list-vs-bitmap: --rounds: expected 1..%d, got '%s'\n",
					MAX_ROUNDS, optarg);
				exit(2);
			}
			env.rounds = v;
			break;
		case 'R':
			v = strtol(optarg, &end, 10);
			if (*end || v < 256 || v > 65536 || (v & (v - 1))) {
				fprintf(stderr, "list-vs-bitmap: --ring: expected a power of 2 in "
					"256..65536, got '%s'\n", optarg);
				exit(2);
			}
			env.ring = v;
			break;
		case 'j':
			env.json = true;
			break;
		case 'b':
			v = strtol(optarg, &end, 10);
			if (*end || v < 4096 || v > (1l << 30) || (v & (v - 1))) {
				fprintf(stderr, "list-vs-bitmap: --ringbuf: expected a power of 2 in "
					"4096..1073741824, got '%s'\n", optarg);
				exit(2);
			}
			env.ringbuf = v;
			break;
		case 's':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 8192) {
				fprintf(stderr, "list-vs-bitmap: --slot: expected 1..8192 (GiB), got "
					"'%s'\n", optarg);
				exit(2);
			}
			env.slot_bytes = v * GiB;
			break;
		case 'p':
			v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > (long)(WRITE_SPAN / TVM_PAGE_SIZE)) {
				fprintf(stderr, "list-vs-bitmap: --pages: expected 1..%llu, got '%s'\n",
					WRITE_SPAN / TVM_PAGE_SIZE, optarg);
				exit(2);
			}
			env.pages = v;
			break;
		case 'v':
			env.verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			fprintf(stderr, "list-vs-bitmap: bad option or missing value: '%s' (--help "
				"lists the options)\n", argv[optind - 1]);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "list-vs-bitmap: unexpected argument '%s'\n", argv[optind]);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	const uint64_t *sizes;
	size_t nr_sizes, nr_pages, nr_cases;
	struct bench_case *cases;
	const size_t *pages;
	uint64_t t0 = tool_now_ns();

	parse_args(argc, argv);
	sizes = env.quick ? quick_sizes : full_sizes;
	nr_sizes = env.quick ? 2 : 3;
	pages = env.quick ? quick_pages : full_pages;
	nr_pages = env.quick ? 1 : 2;
	if (env.slot_bytes) {
		sizes = &env.slot_bytes;
		nr_sizes = 1;
	}
	if (env.pages) {
		pages = &env.pages;
		nr_pages = 1;
	}
	for (size_t s = 0; s < nr_sizes; s++)
		if (pages[nr_pages - 1] > sizes[s] / TVM_PAGE_SIZE) {
			fprintf(stderr, "list-vs-bitmap: %zu pages do not fit in a %llu GiB slot\n",
				pages[nr_pages - 1], (unsigned long long)(sizes[s] / GiB));
			return 2;
		}
	if (geteuid() || access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP list-vs-bitmap: needs root (BPF) and a usable /dev/kvm\n");
		return EXIT_SKIP;
	}
	dt_set_print(print_warn);
	env.heap_ok = heap_measurable();
	nr_cases = nr_sizes * nr_pages;
	cases = calloc(nr_cases, sizeof(*cases));
	if (!cases)
		fail("out of memory");
	for (size_t s = 0; s < nr_sizes; s++) {
		struct bench_case *row = &cases[s * nr_pages];

		for (size_t p = 0; p < nr_pages; p++) {
			row[p].slot_bytes = sizes[s];
			row[p].pages = pages[p];
		}
		/* one VM at a time: a 1 TiB slot costs KVM GiBs of metadata here */
		run_bitmap(sizes[s], row, nr_pages);
		run_ring(sizes[s], row, nr_pages);
	}
	if (env.json)
		print_json(cases, nr_cases);
	else
		print_table(cases, nr_cases);
	if (!env.json)
		printf("all lists checked against the guest's writes; %.1f s\n",
		       (tool_now_ns() - t0) / 1e9);
	free(cases);
	return 0;
}

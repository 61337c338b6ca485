// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The capture programs driven through BPF_PROG_TEST_RUN (raw_tp programs take their argument
 * array as ctx): per-epoch dedup, filters, drops, map-full, the epoch barrier counters; and the
 * fentry/kprobe variants through the verifier. Tag: root.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "testlib.h"
#include "capture.h"
#include "capture.skel.h"

struct opts {
	size_t ringbuf;
	__u32 dedup_words;
	__u32 pid;		/* filter on this pid; 0: none */
	__u32 slot;		/* slot filter; DT_SLOT_ANY: none */
	enum dt_source src;
};

static struct capture *load_synth(const struct opts *o, bool synth)
{
	struct capture *skel;
	const char *why = dt_test_need_root();
	int err;

	ck_assert_msg(!why, "%s", why);	/* callers skip first */
	skel = capture__open();
	ck_assert_ptr_nonnull(skel);
	skel->rodata->page_source = o->src;
	skel->rodata->filter_slot = o->slot;
	if (o->pid) {
		skel->rodata->filter_pids[0] = o->pid;
		skel->rodata->nr_filter_pids = 1;
	}
	bpf_map__set_max_entries(skel->maps.events, o->ringbuf ? o->ringbuf : 1 << 20);
	bpf_map__set_max_entries(skel->maps.dedup0, o->dedup_words ? o->dedup_words : 1024);
	bpf_map__set_max_entries(skel->maps.dedup1, o->dedup_words ? o->dedup_words : 1024);
	/* only the raw_tp programs: test runs need no attach point */
	bpf_program__set_autoload(skel->progs.dt_fentry_mark, false);
	bpf_program__set_autoload(skel->progs.dt_kprobe_mark, false);
	bpf_program__set_autoload(skel->progs.dt_fast_page_fault, false);
	bpf_program__set_autoload(skel->progs.dt_page_fault, false);
	bpf_program__set_autoload(skel->progs.dt_spte_changed, false);
	if (synth)
		bpf_program__set_autoload(skel->progs.dt_synth_drive, true);
	err = capture__load(skel);
	ck_assert_msg(!err, "capture__load: %s", strerror(-err));
	return skel;
}

static struct capture *load(const struct opts *o)
{
	return load_synth(o, false);
}

static const struct opts defaults = { .slot = DT_SLOT_ANY, .src = DT_SRC_RING_PUSH };

/* One kvm_dirty_ring_push(ring, slot, offset). The ring pointer is NULL: CO-RE reads through it
 * fail and yield 0, so the VM is kvm 0, vCPU 0. */
static void push(struct capture *skel, __u32 slot, __u64 offset)
{
	__u64 args[3] = { 0, slot, offset };
	LIBBPF_OPTS(bpf_test_run_opts, topts, .ctx_in = args, .ctx_size_in = sizeof(args));
	int err;

	err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.dt_ring_push), &topts);
	ck_assert_msg(!err, "test run: %s", strerror(errno));
	ck_assert_int_eq(topts.retval, 0);
}

static struct dt_counters counters(struct capture *skel)
{
	int ncpu = libbpf_num_possible_cpus();
	struct dt_counters per[ncpu], sum = {};
	__u32 zero = 0;

	ck_assert_int_eq(bpf_map_lookup_elem(bpf_map__fd(skel->maps.counters), &zero, per), 0);
	for (int i = 0; i < ncpu; i++) {
		sum.raw += per[i].raw;
		sum.unique += per[i].unique;
		sum.rb_drops += per[i].rb_drops;
		sum.map_full += per[i].map_full;
		sum.lost += per[i].lost;
		sum.filtered += per[i].filtered;
		sum.ring_events += per[i].ring_events;
	}
	return sum;
}

struct seen {
	struct dt_event ev[512];
	int n;
};

static int on_event(void *ctx, void *data, size_t size)
{
	struct seen *s = ctx;

	ck_assert_uint_eq(size, sizeof(struct dt_event));
	if (s->n < 512)
		memcpy(&s->ev[s->n], data, sizeof(struct dt_event));
	s->n++;
	return 0;
}

static void drain(struct capture *skel, struct seen *s)
{
	struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, s, NULL);

	ck_assert_ptr_nonnull(rb);
	s->n = 0;
	ring_buffer__consume(rb);
	ring_buffer__free(rb);
}

static __u64 dedup_word(struct capture *skel, int map, __u32 slot, __u32 word)
{
	struct dt_dedup_key key = { .kvm = 0, .slot = slot, .word = word };
	__u64 v = 0;
	int fd = bpf_map__fd(map ? skel->maps.dedup1 : skel->maps.dedup0);

	if (bpf_map_lookup_elem(fd, &key, &v))
		return 0;
	return v;
}

#define NEED_ROOT() do { const char *why = dt_test_need_root(); if (why) DT_SKIP("%s", why); } \
	while (0)

START_TEST(dedup_per_epoch)
{
	struct capture *skel;
	struct seen s;
	struct dt_counters c;

	NEED_ROOT();
	skel = load(&defaults);
	push(skel, 1, 5);
	push(skel, 1, 5);	/* same page, same epoch: counted raw, not emitted */
	push(skel, (1 << 16) | 2, 67);	/* as_id 1, slot 2, second dedup word */
	drain(skel, &s);
	ck_assert_int_eq(s.n, 2);
	ck_assert_uint_eq(s.ev[0].slot, 1);
	ck_assert_uint_eq(s.ev[0].as_id, 0);
	ck_assert_uint_eq(s.ev[0].offset, 5);
	ck_assert_uint_eq(s.ev[0].gfn, DT_GFN_UNKNOWN);
	ck_assert_uint_eq(s.ev[0].source, DT_SRC_RING_PUSH);
	ck_assert_uint_eq(s.ev[0].tgid, getpid());
	ck_assert_uint_eq(s.ev[0].epoch, 0);
	ck_assert_uint_eq(s.ev[1].as_id, 1);
	ck_assert_uint_eq(s.ev[1].slot, 2);
	ck_assert_uint_eq(s.ev[1].offset, 67);
	ck_assert_uint_eq(dedup_word(skel, 0, 1, 0), 1ull << 5);
	ck_assert_uint_eq(dedup_word(skel, 0, (1 << 16) | 2, 1), 1ull << 3);
	c = counters(skel);
	ck_assert_uint_eq(c.raw, 3);
	ck_assert_uint_eq(c.unique, 2);

	/* the next epoch dedups in the other map: the page is new again */
	skel->bss->epoch = 1;
	push(skel, 1, 5);
	push(skel, 1, 5);
	drain(skel, &s);
	ck_assert_int_eq(s.n, 1);
	ck_assert_uint_eq(s.ev[0].epoch, 1);
	ck_assert_uint_eq(dedup_word(skel, 1, 1, 0), 1ull << 5);
	c = counters(skel);
	ck_assert_uint_eq(c.raw, 5);
	ck_assert_uint_eq(c.unique, 3);

	/* every program that entered has left: the cut's barrier would not wait */
	for (int cpu = 0; cpu < libbpf_num_possible_cpus(); cpu++)
		ck_assert_uint_eq(skel->bss->inflight[cpu].enter, skel->bss->inflight[cpu].exit);
	ck_assert_uint_ge(skel->bss->inflight[0].enter + skel->bss->inflight[1].enter, 1);
	capture__destroy(skel);
}
END_TEST

START_TEST(ring_view)
{
	struct dt_vcpu_key key = { .kvm = 0, .vcpu = 0 };
	struct dt_vcpu_stats st;
	struct capture *skel;

	NEED_ROOT();
	skel = load(&defaults);
	for (int i = 0; i < 7; i++)
		push(skel, 1, i % 2);
	ck_assert_int_eq(bpf_map_lookup_elem(bpf_map__fd(skel->maps.vcpus), &key, &st), 0);
	ck_assert_uint_eq(st.pushes, 7);
	ck_assert_uint_eq(st.tgid, getpid());
	ck_assert_uint_eq(st.overflows, 0);
	ck_assert_uint_eq(counters(skel).ring_events, 7);
	capture__destroy(skel);
}
END_TEST

START_TEST(pid_filter)
{
	struct opts o = defaults;
	struct capture *skel;
	struct seen s;

	NEED_ROOT();
	o.pid = getpid() + 100000;	/* some other VMM */
	skel = load(&o);
	push(skel, 1, 1);
	drain(skel, &s);
	ck_assert_int_eq(s.n, 0);
	ck_assert_uint_eq(counters(skel).filtered, 1);
	ck_assert_uint_eq(counters(skel).raw, 0);
	capture__destroy(skel);

	o.pid = getpid();
	skel = load(&o);
	push(skel, 1, 1);
	drain(skel, &s);
	ck_assert_int_eq(s.n, 1);
	capture__destroy(skel);
}
END_TEST

START_TEST(slot_filter)
{
	struct opts o = defaults;
	struct capture *skel;
	struct seen s;

	NEED_ROOT();
	o.slot = (1 << 16) | 3;
	skel = load(&o);
	push(skel, 3, 1);		/* as_id 0: not ours */
	push(skel, (1 << 16) | 3, 1);
	drain(skel, &s);
	ck_assert_int_eq(s.n, 1);
	ck_assert_uint_eq(s.ev[0].as_id, 1);
	ck_assert_uint_eq(counters(skel).filtered, 1);
	capture__destroy(skel);
}
END_TEST

/* A full ring buffer drops records but keeps every page in the dedup map for the cut. */
START_TEST(drops_counted_pages_kept)
{
	struct opts o = defaults;
	struct capture *skel;
	struct dt_counters c;
	struct seen s;
	int kept = 0;

	NEED_ROOT();
	o.ringbuf = 4096;
	skel = load(&o);
	for (int i = 0; i < 256; i++)
		push(skel, 1, i);
	drain(skel, &s);
	c = counters(skel);
	ck_assert_int_gt(c.rb_drops, 0);
	ck_assert_uint_eq(c.rb_drops + s.n, 256);
	ck_assert_uint_eq(c.lost, 0);
	for (int w = 0; w < 4; w++)
		kept += __builtin_popcountll(dedup_word(skel, 0, 1, w));
	ck_assert_int_eq(kept, 256);
	capture__destroy(skel);
}
END_TEST

/* A full dedup map still emits the page (flagged), and counts it. */
START_TEST(map_full_still_emits)
{
	struct opts o = defaults;
	struct capture *skel;
	struct dt_counters c;
	struct seen s;

	NEED_ROOT();
	o.dedup_words = 2;
	skel = load(&o);
	push(skel, 1, 0);	/* word 0 */
	push(skel, 1, 64);	/* word 1: the map is full now */
	push(skel, 1, 128);	/* word 2: no room */
	push(skel, 1, 128);	/* and again: emitted again, undeduplicated */
	drain(skel, &s);
	c = counters(skel);
	ck_assert_int_eq(s.n, 4);
	ck_assert_uint_eq(c.map_full, 2);
	ck_assert(s.ev[2].flags & DT_EV_UNDEDUPED);
	ck_assert(!(s.ev[0].flags & DT_EV_UNDEDUPED));
	capture__destroy(skel);
}
END_TEST

/*
 * The benchmark's synthetic driver must do exactly what the push tracepoint does: the same
 * pushes through both give the same records, counters, dedup bits and ring view. And nothing
 * loads it unless asked ("?" section: autoload off).
 */
START_TEST(synth_driver_matches_push)
{
	static const __u64 offsets[] = { 5, 5, 70, 5, 71, 200 };
	const __u32 slot = (1 << 16) | 2;
	struct dt_vcpu_key vk = { .kvm = 0, .vcpu = 0 };
	struct dt_vcpu_stats st[2];
	struct dt_counters c[2];
	struct capture *skel;
	struct seen s[2];

	NEED_ROOT();
	skel = load(&defaults);
	ck_assert_int_lt(bpf_program__fd(skel->progs.dt_synth_drive), 0);
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++)
		push(skel, slot, offsets[i]);
	drain(skel, &s[0]);
	c[0] = counters(skel);
	ck_assert_int_eq(bpf_map_lookup_elem(bpf_map__fd(skel->maps.vcpus), &vk, &st[0]), 0);
	capture__destroy(skel);

	skel = load_synth(&defaults, true);
	/* the same six events, one run each */
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		struct dt_synth_args a = { .kvm = 0, .base = offsets[i], .start = 0, .count = 1,
					   .span = 1, .stride = 1, .slot = slot, .vcpu = 0 };
		LIBBPF_OPTS(bpf_test_run_opts, topts, .ctx_in = &a, .ctx_size_in = sizeof(a));

		ck_assert_int_eq(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.dt_synth_drive),
							&topts), 0);
		ck_assert_uint_eq(topts.retval, 1);
	}
	drain(skel, &s[1]);
	c[1] = counters(skel);
	ck_assert_int_eq(bpf_map_lookup_elem(bpf_map__fd(skel->maps.vcpus), &vk, &st[1]), 0);

	ck_assert_int_eq(s[0].n, 4);
	ck_assert_int_eq(s[1].n, s[0].n);
	for (int i = 0; i < s[0].n; i++) {
		s[0].ev[i].ts = s[1].ev[i].ts = 0;
		ck_assert_msg(!memcmp(&s[0].ev[i], &s[1].ev[i], sizeof(s[0].ev[i])),
			      "record %d differs", i);
	}
	ck_assert_int_eq(memcmp(&c[0], &c[1], sizeof(c[0])), 0);
	ck_assert_uint_eq(c[1].raw, 6);
	ck_assert_uint_eq(c[1].unique, 4);
	ck_assert_uint_eq(st[1].pushes, st[0].pushes);
	ck_assert_uint_eq(st[1].raw, 6);
	ck_assert_uint_eq(dedup_word(skel, 0, slot, 1), (1ull << 6) | (1ull << 7));

	/* one run of many: 1,000 events cycling over 10 pages 64 apart (one dedup word each) */
	{
		struct dt_synth_args a = { .kvm = 0, .base = 1000, .start = 7, .count = 1000,
					   .span = 10, .stride = 64, .slot = slot, .vcpu = 0 };
		LIBBPF_OPTS(bpf_test_run_opts, topts, .ctx_in = &a, .ctx_size_in = sizeof(a));

		ck_assert_int_eq(bpf_prog_test_run_opts(bpf_program__fd(skel->progs.dt_synth_drive),
							&topts), 0);
		ck_assert_uint_eq(topts.retval, 1000);
		drain(skel, &s[1]);
		ck_assert_int_eq(s[1].n, 10);
		/* event 0 is n = 7: page 1000 + 7 * 64 comes first */
		ck_assert_uint_eq(s[1].ev[0].offset, 1000 + 7 * 64);
		ck_assert_uint_eq(s[1].ev[3].offset, 1000);
		ck_assert_uint_eq(counters(skel).raw, 1006);
		ck_assert_uint_eq(counters(skel).unique, 14);
	}
	capture__destroy(skel);
}
END_TEST

/*
 * The fentry and kprobe page sources cannot attach here, but they must pass the verifier so a
 * production host can use them: load each (attach is the loader's probe, not ours).
 */
static int load_variant(enum dt_source src, char *why, size_t len)
{
	struct capture *skel;
	int err;

	libbpf_set_print(NULL);	/* the verifier's refusal is the expected outcome here */
	skel = capture__open();
	ck_assert_ptr_nonnull(skel);
	skel->rodata->page_source = src;
	bpf_program__set_autoload(skel->progs.dt_fentry_mark, src == DT_SRC_FENTRY);
	bpf_program__set_autoload(skel->progs.dt_kprobe_mark, src == DT_SRC_KPROBE);
	bpf_program__set_autoload(skel->progs.dt_fast_page_fault, true);
	bpf_program__set_autoload(skel->progs.dt_page_fault, true);
	bpf_program__set_autoload(skel->progs.dt_spte_changed, true);
	err = capture__load(skel);
	snprintf(why, len, "%s", strerror(-err));
	capture__destroy(skel);
	return err;
}

START_TEST(kprobe_variant_verifies)
{
	char why[128];
	int err;

	NEED_ROOT();
	err = load_variant(DT_SRC_KPROBE, why, sizeof(why));
	if (err == -EINVAL && access("/sys/bus/event_source/devices/kprobe", F_OK))
		DT_SKIP("this kernel cannot load kprobe programs (%s)", why);
	ck_assert_msg(!err, "kprobe variant (with fault tracepoints) failed to load: %s", why);
}
END_TEST

START_TEST(fentry_variant_verifies)
{
	char why[128];
	int err;

	NEED_ROOT();
	err = load_variant(DT_SRC_FENTRY, why, sizeof(why));
	if (err == -EPERM || err == -524 /* ENOTSUPP */ || err == -EOPNOTSUPP)
		DT_SKIP("this kernel refuses fentry programs (%s); the loader falls back", why);
	ck_assert_msg(!err, "fentry variant failed to load: %s", why);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bpf");
	TCase *core = tcase_create("core"), *limits = tcase_create("limits");
	TCase *variants = tcase_create("variants");

	tcase_add_test(core, dedup_per_epoch);
	tcase_add_test(core, ring_view);
	tcase_add_test(core, pid_filter);
	tcase_add_test(core, slot_filter);
	tcase_add_test(limits, drops_counted_pages_kept);
	tcase_add_test(limits, map_full_still_emits);
	tcase_add_test(core, synth_driver_matches_push);
	tcase_add_test(variants, kprobe_variant_verifies);
	tcase_add_test(variants, fentry_variant_verifies);
	tcase_set_timeout(variants, 30);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, variants);
	return dt_test_main(s, "bpf");
}

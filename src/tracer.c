// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The loader: one place that opens, probes, configures, loads and attaches the capture programs.
 *
 * A page source is probed for real: the capture object is loaded with that source's program
 * and the program attached; on failure the object is dropped and the next source tried. Results
 * are cached per process, so a second tracer does not retry what failed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "tracer.h"
#include "capture.skel.h"

_Static_assert((int)DT_SOURCE_FENTRY == DT_SRC_FENTRY && (int)DT_SOURCE_KPROBE == DT_SRC_KPROBE &&
	       (int)DT_SOURCE_RING_PUSH == DT_SRC_RING_PUSH, "source ids match capture.h");

static const char *const source_names[DT_SOURCE_MAX] = {
	[DT_SOURCE_FENTRY] = "fentry/mark_page_dirty_in_slot",
	[DT_SOURCE_KPROBE] = "kprobe/mark_page_dirty_in_slot",
	[DT_SOURCE_RING_PUSH] = "raw_tp/kvm_dirty_ring_push",
};

/* Per process: 0 not tried, 1 worked, -errno failed (with the reason). */
static int source_cache[DT_SOURCE_MAX];
static char source_cache_why[DT_SOURCE_MAX][160];

const char *dt_source__name(enum dt_source_id id)
{
	return (unsigned int)id < DT_SOURCE_MAX ? source_names[id] : "unknown";
}

uint64_t dt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void add_probe(struct dt_tracer *t, const char *what, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void add_probe(struct dt_tracer *t, const char *what, int err, const char *fmt, ...)
{
	va_list ap;
	size_t i = t->nr_probes;

	if (i >= DT_MAX_PROBES)
		return;
	va_start(ap, fmt);
	vsnprintf(t->why[i], sizeof(t->why[i]), fmt, ap);
	va_end(ap);
	t->probes[i].what = what;
	t->probes[i].err = err;
	t->probes[i].why = t->why[i];
	t->nr_probes++;
}

static bool tracefs_event(const char *sys, const char *name)
{
	static const char *const roots[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };
	char path[256];

	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		snprintf(path, sizeof(path), "%s/events/%s/%s", roots[i], sys, name);
		if (!access(path, F_OK))
			return true;
	}
	return false;
}

/*
 * At most one fault signal: a write fault can pass through several of these tracepoints, and
 * counting it in each would count it twice. Best first: the fast path that lifts dirty-logging
 * write protection, then the TDP MMU's SPTE change, then every page fault with the write bit.
 */
static const struct {
	const char *sys, *name, *what;
} fault_signals[] = {
	{ "kvmmmu", "fast_page_fault", "tracepoint/kvmmmu/fast_page_fault" },
	{ "kvmmmu", "kvm_tdp_mmu_spte_changed", "tracepoint/kvmmmu/kvm_tdp_mmu_spte_changed" },
	{ "kvm", "kvm_page_fault", "tracepoint/kvm/kvm_page_fault" },
};

/* Fault signal i (in fault_signals order): its program, and where the skeleton keeps its link. */
static struct bpf_program *fault_prog(struct capture *skel, size_t i, struct bpf_link ***link)
{
	struct bpf_program *progs[] = {
		skel->progs.dt_fast_page_fault, skel->progs.dt_spte_changed,
		skel->progs.dt_page_fault,
	};
	struct bpf_link **links[] = {
		&skel->links.dt_fast_page_fault, &skel->links.dt_spte_changed,
		&skel->links.dt_page_fault,
	};

	if (link)
		*link = links[i];
	return progs[i];
}

static int configure(struct dt_tracer *t, struct capture *skel, const struct dt_tracer_opts *o,
		     enum dt_source_id src, int *fault_idx)
{
	size_t rb = o->ringbuf_bytes ? o->ringbuf_bytes : 4u << 20;
	uint32_t words = o->dedup_words ? o->dedup_words : 1u << 16;
	int err;

	for (size_t i = 0; i < o->nr_pids; i++)
		skel->rodata->filter_pids[i] = o->pids[i];
	skel->rodata->nr_filter_pids = o->nr_pids;
	skel->rodata->filter_slot = o->filter_slot ?
		((uint32_t)o->slot_as_id << 16) | o->slot_id : DT_SLOT_ANY;
	skel->rodata->page_source = src;
	skel->rodata->wakeup_bytes = rb / 8;
	skel->bss->trigger_pages = o->trigger_pages;
	skel->bss->trigger_stop = o->trigger_stop;

	err = bpf_map__set_max_entries(skel->maps.events, rb);
	err = err ?: bpf_map__set_max_entries(skel->maps.dedup0, words);
	err = err ?: bpf_map__set_max_entries(skel->maps.dedup1, words);
	err = err ?: bpf_program__set_autoload(skel->progs.dt_fentry_mark, src == DT_SOURCE_FENTRY);
	err = err ?: bpf_program__set_autoload(skel->progs.dt_kprobe_mark, src == DT_SOURCE_KPROBE);
	err = err ?: bpf_program__set_autoload(skel->progs.dt_synth_drive,
					       t->flags & DT_OPEN_SYNTHETIC);
	*fault_idx = -1;
	for (size_t i = 0; i < sizeof(fault_signals) / sizeof(fault_signals[0]) && !err; i++) {
		bool use = *fault_idx < 0 && tracefs_event(fault_signals[i].sys, fault_signals[i].name);

		if (use)
			*fault_idx = i;
		err = bpf_program__set_autoload(fault_prog(skel, i, NULL), use);
	}
	return err;
}

/* Loads the capture object with src as page source and attaches it; 0 or -errno. */
static int try_source(struct dt_tracer *t, const struct dt_tracer_opts *o, enum dt_source_id src)
{
	struct bpf_program *page_prog[DT_SOURCE_MAX];
	struct bpf_link **page_link[DT_SOURCE_MAX];
	struct capture *skel;
	int err, fault_idx;

	skel = capture__open();
	if (!skel)
		return -errno;
	page_prog[DT_SOURCE_FENTRY] = skel->progs.dt_fentry_mark;
	page_prog[DT_SOURCE_KPROBE] = skel->progs.dt_kprobe_mark;
	page_prog[DT_SOURCE_RING_PUSH] = skel->progs.dt_ring_push;
	page_link[DT_SOURCE_FENTRY] = &skel->links.dt_fentry_mark;
	page_link[DT_SOURCE_KPROBE] = &skel->links.dt_kprobe_mark;
	page_link[DT_SOURCE_RING_PUSH] = &skel->links.dt_ring_push;

	err = configure(t, skel, o, src, &fault_idx);
	if (err) {
		snprintf(source_cache_why[src], sizeof(source_cache_why[src]),
			 "configure: %s", strerror(-err));
		goto fail;
	}
	err = capture__load(skel);
	if (err) {
		err = -errno;
		snprintf(source_cache_why[src], sizeof(source_cache_why[src]), "load: %s",
			 strerror(-err));
		goto fail;
	}
	/* epoch 0 starts as the first page can be seen: every page's timestamp is inside it */
	t->epoch_start_ns = dt_now_ns();
	if (t->flags & DT_OPEN_SYNTHETIC) {
		/* nothing attached, nothing learnt about this kernel: the cache stays as it is */
		t->skel = skel;
		t->source = src;
		add_probe(t, "raw_tp (synthetic driver)", 0,
			  "active: events come from BPF_PROG_TEST_RUN, nothing is attached");
		return 0;
	}
	*page_link[src] = bpf_program__attach(page_prog[src]);
	if (!*page_link[src]) {
		err = -errno;
		snprintf(source_cache_why[src], sizeof(source_cache_why[src]), "attach: %s",
			 strerror(-err));
		goto fail;
	}
	t->skel = skel;
	t->source = src;
	source_cache[src] = 1;
	add_probe(t, source_names[src], 0, "active (page source)");

	/* the in-kernel ring view; optional unless the push is the page source */
	if (src != DT_SOURCE_RING_PUSH) {
		skel->links.dt_ring_push = bpf_program__attach(skel->progs.dt_ring_push);
		add_probe(t, "raw_tp/kvm_dirty_ring_push", skel->links.dt_ring_push ? 0 : -errno,
			  skel->links.dt_ring_push ? "ring view only (pages come from %s)" :
			  "ring view unavailable: %m", source_names[src]);
	}
	skel->links.dt_ring_reset = bpf_program__attach(skel->progs.dt_ring_reset);
	add_probe(t, "raw_tp/kvm_dirty_ring_reset", skel->links.dt_ring_reset ? 0 : -errno,
		  skel->links.dt_ring_reset ? "ring view" : "unavailable: %m");
	skel->links.dt_ring_exit = bpf_program__attach(skel->progs.dt_ring_exit);
	add_probe(t, "raw_tp/kvm_dirty_ring_exit", skel->links.dt_ring_exit ? 0 : -errno,
		  skel->links.dt_ring_exit ? "ring view" : "unavailable: %m");
	if (fault_idx >= 0) {
		struct bpf_link **link, *l;

		l = bpf_program__attach(fault_prog(skel, fault_idx, &link));
		*link = l;	/* capture__destroy() detaches it */
		add_probe(t, fault_signals[fault_idx].what, l ? 0 : -errno,
			  l ? "write-fault signal (counted, never listed as pages)" :
			  "unavailable: %m");
	} else {
		add_probe(t, "fault tracepoints", -ENOENT,
			  "none of kvmmmu:fast_page_fault, kvm_tdp_mmu_spte_changed, "
			  "kvm:kvm_page_fault exists");
	}
	return 0;
fail:
	if (!(t->flags & DT_OPEN_SYNTHETIC))
		source_cache[src] = err;
	capture__destroy(skel);
	return err;
}

void dt_tracer_sync_threads(struct dt_tracer *t)
{
	int fd;

	if (!t->skel || !t->vms || t->source == DT_SOURCE_RING_PUSH)
		return;
	fd = bpf_map__fd(t->skel->maps.tid_vcpu);
	for (size_t i = 0; i < t->vms->n; i++) {
		const struct dt_vm *vm = &t->vms->vms[i];

		for (size_t j = 0; j < vm->nr_threads; j++) {
			__u32 tid = vm->threads[j].tid;
			__s32 id = vm->threads[j].id;

			if (tid)
				bpf_map_update_elem(fd, &tid, &id, BPF_ANY);
		}
	}
}

int dt_tracer__refresh(struct dt_tracer *t)
{
	struct dt_vm_list *vms;
	int err;

	/* loaded at the first refresh and kept: dirtytop refreshes every interval */
	if (!t->disc && !(t->disc = dt_discoverer__open()))
		return -errno;
	err = dt_discoverer__vms(t->disc, &vms);
	if (err)
		return err;
	dt_vm_list__free(t->vms);
	t->vms = vms;
	t->need_refresh = false;
	dt_tracer_sync_threads(t);
	return 0;
}

const struct dt_vm_list *dt_tracer__vms(const struct dt_tracer *t)
{
	return t->vms;
}

static int check_opts(const struct dt_tracer_opts *o)
{
	size_t rb;

	if (!o || o->sz < sizeof(*o) || o->nr_pids > DT_MAX_PIDS || (o->nr_pids && !o->pids))
		return -EINVAL;
	rb = o->ringbuf_bytes;
	if (rb && (rb < 4096 || (rb & (rb - 1))))
		return -EINVAL;
	if (o->sources >= (1u << DT_SOURCE_MAX))
		return -EINVAL;
	return 0;
}

struct dt_tracer *dt_tracer__open(const struct dt_tracer_opts *opts)
{
	return dt_tracer_open_flags(opts, 0);
}

struct dt_tracer *dt_tracer_open_flags(const struct dt_tracer_opts *opts, unsigned int flags)
{
	unsigned int mask = opts && opts->sources ? opts->sources : (1u << DT_SOURCE_MAX) - 1;
	struct dt_tracer *t;
	int err = check_opts(opts);

	/* the driver runs the push tracepoint's code, which emits pages only as the page source */
	if (!err && (flags & DT_OPEN_SYNTHETIC)) {
		if (!(mask & (1u << DT_SOURCE_RING_PUSH)))
			err = -EINVAL;
		mask = 1u << DT_SOURCE_RING_PUSH;
	}
	if (err) {
		errno = -err;
		return NULL;
	}
	dt_quiet_libbpf();
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->flags = flags;
	t->quiesce_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->quiesce_fd < 0) {
		free(t);
		return NULL;
	}
	t->nr_cpus = libbpf_num_possible_cpus();
	if (t->nr_cpus <= 0 || t->nr_cpus > DT_MAX_CPUS) {
		pr_debug("%d possible CPUs: dirtytrace supports at most %d\n", t->nr_cpus,
			DT_MAX_CPUS);
		err = -E2BIG;
		goto fail;
	}
	err = -ENOENT;
	for (int src = 0; src < DT_SOURCE_MAX && !t->skel; src++) {
		if (!(mask & (1u << src))) {
			add_probe(t, source_names[src], -ECANCELED, "not tried: excluded by options");
			continue;
		}
		if (source_cache[src] < 0 && !(flags & DT_OPEN_SYNTHETIC)) {
			err = source_cache[src];
			add_probe(t, source_names[src], err, "%s (cached)", source_cache_why[src]);
			continue;
		}
		err = try_source(t, opts, src);
		if (err)
			add_probe(t, source_names[src], err, "%s", source_cache_why[src]);
	}
	if (!t->skel) {
		pr_debug("no page source could be attached (last: %s)\n", strerror(-err));
		goto fail;
	}
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), dt_harvest_record, t, NULL);
	if (!t->rb) {
		err = -errno;
		pr_debug("failed to create ring buffer: %s\n", strerror(-err));
		goto fail;
	}
	/* discovery is what turns (slot, offset) into GFNs; without it lists still come, unresolved */
	err = dt_tracer__refresh(t);
	if (err)
		pr_warn("VM discovery failed (%s): ring-push pages will lack GFNs\n", strerror(-err));
	return t;
fail:
	dt_tracer__close(t);
	errno = -err;
	return NULL;
}

void dt_tracer__close(struct dt_tracer *t)
{
	if (!t)
		return;
	ring_buffer__free(t->rb);
	capture__destroy(t->skel);
	dt_vm_list__free(t->vms);
	dt_discoverer__close(t->disc);
	dt_pageset_free(&t->sets[0]);
	dt_pageset_free(&t->sets[1]);
	close(t->quiesce_fd);
	free(t);
}

int dt_tracer__poll(struct dt_tracer *t, int timeout_ms)
{
	int n = ring_buffer__poll(t->rb, timeout_ms);

	/* page records wake us only in bulk: what waits below that is read now */
	if (n == 0)
		n = ring_buffer__consume(t->rb);
	return n < 0 ? (n == -EINTR ? -EINTR : n) : n;
}

int dt_tracer_synth_fd(const struct dt_tracer *t)
{
	return t->flags & DT_OPEN_SYNTHETIC ? bpf_program__fd(t->skel->progs.dt_synth_drive) :
		-ENOENT;
}

int dt_tracer__fd(const struct dt_tracer *t)
{
	return ring_buffer__epoll_fd(t->rb);
}

enum dt_source_id dt_tracer__source(const struct dt_tracer *t)
{
	return t->source;
}

struct bpf_object *dt_tracer_bpf_object(const struct dt_tracer *t)
{
	return t->skel->obj;
}

size_t dt_tracer__probes(const struct dt_tracer *t, const struct dt_probe **probes)
{
	*probes = t->probes;
	return t->nr_probes;
}

int dt_tracer__stats(const struct dt_tracer *t, struct dt_stats *st)
{
	struct dt_counters *per_cpu;
	__u32 zero = 0;
	int err;

	memset(st, 0, sizeof(*st));
	per_cpu = calloc(t->nr_cpus, sizeof(*per_cpu));
	if (!per_cpu)
		return -ENOMEM;
	err = bpf_map_lookup_elem(bpf_map__fd(t->skel->maps.counters), &zero, per_cpu);
	if (err) {
		err = -errno;
		free(per_cpu);
		return err;
	}
	for (int i = 0; i < t->nr_cpus; i++) {
		st->raw += per_cpu[i].raw;
		st->unique += per_cpu[i].unique;
		st->rb_drops += per_cpu[i].rb_drops;
		st->map_full += per_cpu[i].map_full;
		st->lost += per_cpu[i].lost;
		st->filtered += per_cpu[i].filtered;
		st->write_faults += per_cpu[i].write_faults;
		st->ring_events += per_cpu[i].ring_events;
	}
	free(per_cpu);
	st->recovered = t->recovered;
	st->records = t->records;
	st->epochs = t->epochs;
	st->barrier_timeouts = t->barrier_timeouts;
	return 0;
}

static int cmp_view(const void *pa, const void *pb)
{
	const struct dt_ring_view *a = pa, *b = pb;

	if (a->pid != b->pid)
		return a->pid < b->pid ? -1 : 1;
	if (a->kvm != b->kvm)
		return a->kvm < b->kvm ? -1 : 1;
	return a->vcpu < b->vcpu ? -1 : a->vcpu > b->vcpu;
}

int dt_tracer__ring_views(const struct dt_tracer *t, struct dt_ring_view **out, size_t *n)
{
	int fd = bpf_map__fd(t->skel->maps.vcpus);
	struct dt_vcpu_key key, next;
	struct dt_ring_view *v = NULL;
	size_t cap = 0, cnt = 0;
	void *prev = NULL;

	while (!bpf_map_get_next_key(fd, prev, &next)) {
		struct dt_vcpu_stats st;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &st))
			continue;	/* deleted under us */
		if (dt_grow((void **)&v, &cap, cnt + 1, sizeof(*v))) {
			free(v);
			return -ENOMEM;
		}
		v[cnt] = (struct dt_ring_view){
			.pid = st.tgid, .kvm = key.kvm, .vcpu = key.vcpu, .ring_size = st.ring_size,
			.used = st.dirty_index - st.reset_index, .max_used = st.max_used,
			.pushes = st.pushes, .resets = st.resets, .full_exits = st.full_exits,
			.overflows = st.overflows, .raw = st.raw,
		};
		cnt++;
	}
	dt_sort(v, cnt, sizeof(*v), cmp_view);
	*out = v;
	*n = cnt;
	return 0;
}

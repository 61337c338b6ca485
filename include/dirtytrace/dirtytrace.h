/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * libdirtytrace: which guest pages KVM VMs dirty, seen from the outside with eBPF.
 *
 * A tracer attaches the best page source the kernel offers (fentry or kprobe on KVM's
 * mark_page_dirty_in_slot, else the kvm:kvm_dirty_ring_push tracepoint), deduplicates pages in
 * the kernel per epoch, and hands out, when the caller cuts an epoch, the dense sorted list of
 * guest frame numbers each VM dirtied in it.
 *
 * Conventions (libbpf's): functions return 0 or a negative errno; constructors return NULL and
 * set errno; objects are opaque, named dt_<object>__<verb>(). The library prints nothing except
 * through the callback installed with dt_set_print(). Root (CAP_BPF + CAP_PERFMON +
 * CAP_SYS_ADMIN for the iterator) and kernel BTF are needed.
 */
#ifndef DIRTYTRACE_DIRTYTRACE_H
#define DIRTYTRACE_DIRTYTRACE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DT_API __attribute__((visibility("default")))

/* ---- messages ---- */

enum dt_print_level { DT_WARN, DT_INFO, DT_DEBUG };
typedef int (*dt_print_fn)(enum dt_print_level level, const char *fmt, va_list ap);
/* Installs the message callback (NULL: silent, the default); returns the previous one.
 * libbpf's own messages go through it too (as DT_DEBUG): libdirtytrace installs a libbpf print
 * function when it first loads BPF, replacing any the application set before. */
DT_API dt_print_fn dt_set_print(dt_print_fn fn);

/* ---- VM discovery ---- */

#define DT_GFN_NONE UINT64_MAX	/* a page whose slot base GFN is not known */

struct dt_slot {
	uint16_t as_id;
	uint16_t id;
	uint32_t flags;		/* KVM_MEM_*; bit 0 (DT_SLOT_LOG_DIRTY): dirty logging on */
	uint64_t base_gfn;
	uint64_t npages;
	uint64_t userspace_addr;
};
#define DT_SLOT_LOG_DIRTY 0x1

struct dt_vcpu_thread {
	int32_t id;		/* vCPU id */
	pid_t tid;		/* thread that last ran it, 0 if it never ran */
};

struct dt_vm {
	pid_t pid;		/* VMM process (tgid) */
	char comm[16];
	uint64_t kvm;		/* struct kvm address: the VM's identity while it lives */
	int fd;			/* the VMM's VM file descriptor */
	uint32_t nr_vcpus;	/* online vCPUs */
	uint32_t ring_entries;	/* dirty ring entries per vCPU, 0 = bitmap mode */
	uint32_t nr_slots_logging; /* memslots with dirty logging on (kernel's count) */
	bool slots_known;	/* false: this kernel's memslot layout is not read (before 5.17) */
	bool slots_truncated;	/* more memslots than discovery walks */
	size_t nr_slots;
	struct dt_slot *slots;	/* sorted by (as_id, base_gfn) */
	size_t nr_threads;
	struct dt_vcpu_thread *threads;	/* sorted by id */
};

struct dt_vm_list {
	size_t n;
	struct dt_vm *vms;	/* sorted by (pid, kvm) */
};

/* Every VM on the host, read by a BPF task_file iterator. */
DT_API int dt_vms__discover(struct dt_vm_list **out);
/* Builds a list from raw iterator output (the records of bpf/capture.h); -EBADMSG if truncated. */
DT_API int dt_vms__parse(const void *buf, size_t len, struct dt_vm_list **out);
DT_API void dt_vm_list__free(struct dt_vm_list *list);
/* The first VM of pid (a VMM may hold several), or NULL. */
DT_API const struct dt_vm *dt_vm_list__find(const struct dt_vm_list *list, pid_t pid);
/* The slot holding (as_id, id), or NULL. */
DT_API const struct dt_slot *dt_vm__slot(const struct dt_vm *vm, uint16_t as_id, uint16_t id);

/* ---- the tracer ---- */

enum dt_source_id {
	DT_SOURCE_FENTRY = 0,	/* fentry/mark_page_dirty_in_slot: every page, bitmap and ring */
	DT_SOURCE_KPROBE = 1,	/* kprobe/mark_page_dirty_in_slot: the same, where fentry fails */
	DT_SOURCE_RING_PUSH = 2,/* raw_tp/kvm_dirty_ring_push: VMs using the dirty ring */
	DT_SOURCE_MAX,
};
DT_API const char *dt_source__name(enum dt_source_id id);

struct dt_tracer_opts {
	size_t sz;		/* sizeof(struct dt_tracer_opts), for forward compatibility */
	const pid_t *pids;	/* only these VMM processes (at most 16); NULL: every VM */
	size_t nr_pids;
	bool filter_slot;	/* only slot (as_id, slot_id) */
	uint16_t slot_as_id;
	uint16_t slot_id;
	unsigned int sources;	/* mask of 1 << DT_SOURCE_*, tried best first; 0: all */
	size_t ringbuf_bytes;	/* BPF ring buffer, power of two >= 4096; 0: 4 MiB */
	uint32_t dedup_words;	/* entries per dedup map (64 pages each); 0: 65536 */
	uint64_t trigger_pages;	/* checkpoint trigger armed from the first page (see */
	bool trigger_stop;	/* dt_tracer__set_trigger, which arms it later); 0: off */
};

struct dt_tracer;

/* Probes, loads and attaches; the VMs to watch need not exist yet. */
DT_API struct dt_tracer *dt_tracer__open(const struct dt_tracer_opts *opts);
DT_API void dt_tracer__close(struct dt_tracer *t);
/*
 * Waits up to timeout_ms for records and consumes them; returns records consumed or -errno
 * (-EINTR when a signal arrived: not an error for a tool). Page records wake a waiter only in
 * bulk (an eighth of the ring buffer), to spare a context switch per page: a call returns
 * at its timeout with what was waiting. The cut drains everything whatever the caller did.
 */
DT_API int dt_tracer__poll(struct dt_tracer *t, int timeout_ms);
/* An fd that becomes readable when records are waiting in bulk, or a trigger fired (for the
 * caller's own event loop, which should also call dt_tracer__poll(t, 0) on its timer). */
DT_API int dt_tracer__fd(const struct dt_tracer *t);
DT_API enum dt_source_id dt_tracer__source(const struct dt_tracer *t);

/* What the loader tried, best first: for -v output. */
struct dt_probe {
	const char *what;	/* "fentry/mark_page_dirty_in_slot", ... */
	int err;		/* 0: attached; else -errno */
	const char *why;	/* why it is not used, or "active", "signal" */
};
DT_API size_t dt_tracer__probes(const struct dt_tracer *t, const struct dt_probe **probes);

/* One page in an epoch's list. */
struct dt_gfn {
	uint64_t gfn;		/* DT_GFN_NONE when the slot was not found by discovery */
	uint64_t offset;	/* page index in the slot */
	uint16_t as_id;
	uint16_t slot;
	int32_t vcpu;		/* vCPU that dirtied it first in the epoch, -1 unknown */
	bool recovered;		/* its record was dropped; found in the kernel's dedup map */
	uint64_t ts;		/* CLOCK_MONOTONIC ns of that first write; 0: not known (recovered,
				 * or read from a trace recorded without --events) */
};

/* The order of every GFN list: (as_id, gfn, slot, offset); for merging lists across epochs. */
DT_API int dt_gfn__cmp(const struct dt_gfn *a, const struct dt_gfn *b);

struct dt_count {
	int32_t id;		/* vCPU id, or (as_id << 16) | slot id */
	uint64_t pages;
};

struct dt_epoch_vm {
	pid_t pid;
	uint64_t kvm;
	size_t nr_gfns;
	struct dt_gfn *gfns;	/* sorted by (as_id, gfn), unique */
	uint64_t recovered;	/* pages recovered from the dedup map */
	uint64_t unresolved;	/* pages without a known base GFN */
	size_t nr_vcpus;
	struct dt_count *vcpus;	/* pages per vCPU (first writer), sorted by id; -1: unknown */
	size_t nr_slots;
	struct dt_count *slots;	/* pages per slot, sorted by id */
};

struct dt_epoch {
	uint64_t seq;		/* 0, 1, 2, ... per tracer */
	uint64_t start_ns;	/* CLOCK_MONOTONIC */
	uint64_t end_ns;
	size_t nr_vms;
	struct dt_epoch_vm *vms; /* sorted by (pid, kvm); VMs with no dirty page are absent */
};

/* Ends the current epoch and starts the next: returns what each VM dirtied in it. Records still
 * in flight are drained, dropped ones recovered from the dedup map, and GFNs resolved. */
DT_API int dt_tracer__cut(struct dt_tracer *t, struct dt_epoch **out);
DT_API void dt_epoch__free(struct dt_epoch *e);
DT_API const struct dt_epoch_vm *dt_epoch__vm(const struct dt_epoch *e, pid_t pid);

/*
 * Bounded sublists of one VM's list, fetched by several threads at once (what the Stratus
 * series' KVM_MT_SUBLIST_FETCH was for: copy threads each take the next chunk). Each call claims
 * the next at most max pages; no page is given twice, and together the calls give the whole list
 * in order. Lock-free (one atomic add per call); the epoch must outlive the fetch.
 */
struct dt_fetch {
	const struct dt_epoch_vm *vm;
	size_t next;		/* first unclaimed index (atomic) */
};

DT_API void dt_fetch__init(struct dt_fetch *f, const struct dt_epoch_vm *vm);
/* Points *sub at the claimed pages and returns how many: 0 when the list is exhausted. */
DT_API size_t dt_fetch__next(struct dt_fetch *f, size_t max, const struct dt_gfn **sub);

struct dt_stats {
	uint64_t raw;		/* dirtying events seen by the page source */
	uint64_t unique;	/* pages emitted: first in their epoch */
	uint64_t rb_drops;	/* records dropped by a full ring buffer (pages recovered at the cut) */
	uint64_t map_full;	/* pages not deduplicated: dedup map full */
	uint64_t lost;		/* pages lost: map full and ring buffer full together */
	uint64_t filtered;	/* events of other VMs or slots */
	uint64_t write_faults;	/* fault tracepoint signal */
	uint64_t ring_events;	/* in-kernel ring tracepoint events */
	uint64_t recovered;	/* pages the harvester recovered from dedup maps */
	uint64_t records;	/* records read from the ring buffer */
	uint64_t epochs;
	uint64_t barrier_timeouts; /* cuts that gave up waiting for in-flight programs */
};
DT_API int dt_tracer__stats(const struct dt_tracer *t, struct dt_stats *st);

/* Per vCPU: the page source's raw events, and KVM's own dirty ring as the tracepoints show it
 * (ring fields are 0 for a VM without a ring). All counts are totals since the tracer opened. */
struct dt_ring_view {
	pid_t pid;
	uint64_t kvm;
	int32_t vcpu;
	uint32_t ring_size;	/* entries */
	uint32_t used;		/* dirty_index - reset_index at the last event */
	uint32_t max_used;
	uint64_t pushes;
	uint64_t resets;
	uint64_t full_exits;
	uint64_t overflows;	/* pushes with used > ring size: KVM overwrote unharvested entries */
	uint64_t raw;		/* dirtying events of the page source (vcpu -1: not attributed) */
};
/* Sorted by (pid, kvm, vcpu); free(*out) when done. */
DT_API int dt_tracer__ring_views(const struct dt_tracer *t, struct dt_ring_view **out, size_t *n);

/* ---- checkpoint trigger ---- */

/*
 * When a watched VM's unique dirty pages in the current epoch reach pages (0: off), the BPF
 * program wakes the consumer at once and, with stop_vmm, sends the VMM SIGSTOP from the very
 * page that reached the count: a checkpointer then copies a bounded set. The vCPUs already in
 * flight finish the instruction they are in, so the epoch may hold a few pages more than asked
 * (the overshoot, measured in tests/check_trigger). Resuming the VMM is the caller's call.
 * It fires once per VM and epoch. Armed while a VM is already past the count, it fires at that
 * VM's next page, or, if the VM writes nothing more, from dt_tracer__wait_trigger, which then
 * sends the SIGSTOP itself. To bound the very first epoch too, arm it in dt_tracer_opts.
 */
DT_API int dt_tracer__set_trigger(struct dt_tracer *t, uint64_t pages, bool stop_vmm);

struct dt_trigger {
	uint64_t kvm;
	pid_t pid;
	uint64_t fired_ns;	/* CLOCK_MONOTONIC: the page that reached the count */
	uint64_t woke_ns;	/* when the waiter saw it */
};

/* Blocks until the trigger fires (0, *out filled), timeout_ms passes (-ETIMEDOUT), or another
 * thread calls dt_tracer__quiesce (-ECANCELED). Records are consumed meanwhile. */
DT_API int dt_tracer__wait_trigger(struct dt_tracer *t, int timeout_ms, struct dt_trigger *out);
/* Wakes a thread blocked in dt_tracer__wait_trigger, e.g. when the VM is quiesced. */
DT_API int dt_tracer__quiesce(struct dt_tracer *t);
/* Unique pages of the VM in the current epoch so far, as the kernel counts them. */
DT_API uint64_t dt_tracer__epoch_pages(const struct dt_tracer *t, uint64_t kvm);
/*
 * Waits until every thread of a VMM the trigger stopped is stopped: SIGSTOP reaches the vCPU
 * threads one by one, and a vCPU still running keeps dirtying pages behind a cut. 0,
 * -ETIMEDOUT, -ESRCH (no such process).
 */
DT_API int dt_tracer__wait_stopped(pid_t pid, int timeout_ms);
/* SIGCONT to a VMM the trigger stopped. */
DT_API int dt_tracer__resume(pid_t pid);

/* Re-reads VM discovery (new VMs, memslots, vCPU threads). Cut does it when it meets an
 * unknown slot. */
DT_API int dt_tracer__refresh(struct dt_tracer *t);
/* The tracer's latest discovery snapshot (owned by the tracer, valid until the next refresh). */
DT_API const struct dt_vm_list *dt_tracer__vms(const struct dt_tracer *t);

/* ---- rate windows (pure: no BPF, no I/O) ---- */

/*
 * Dirty rates over a sliding window of epochs. Each epoch adds (start, end, raw events, unique
 * pages); the window keeps the epochs that end within span_ns of the newest one (at most
 * max_epochs). Rates are sums over the kept epochs' own durations, so uneven epochs weigh by
 * length and a gap between epochs (time nobody watched) does not dilute the rate.
 */
struct dt_window;

struct dt_rate {
	double raw_per_s;	/* dirtying events per second (how often the guest writes) */
	double pages_per_s;	/* unique pages per epoch, per second: what must be copied */
	uint64_t covered_ns;	/* summed duration of the kept epochs; 0: no rate yet */
	size_t epochs;
};

DT_API struct dt_window *dt_window__new(uint64_t span_ns, size_t max_epochs);
DT_API void dt_window__free(struct dt_window *w);
/* -EINVAL when end < start or the epoch starts before the previous one ended. */
DT_API int dt_window__add(struct dt_window *w, uint64_t start_ns, uint64_t end_ns, uint64_t raw,
			  uint64_t pages);
DT_API void dt_window__rate(const struct dt_window *w, struct dt_rate *out);

/*
 * Writable working set of one VM (pure): distinct pages dirtied within a span of time, from the
 * epoch lists added in time order, and the distinct pages ever added. Memory follows the pages
 * seen within max_span_ns, plus one 8-byte key per page ever seen for the total.
 */
struct dt_wss;

DT_API struct dt_wss *dt_wss__new(uint64_t max_span_ns);
DT_API void dt_wss__free(struct dt_wss *w);
/* An epoch ending at end_ns (not before the previous one); -EINVAL, -ENOMEM. */
DT_API int dt_wss__add(struct dt_wss *w, uint64_t end_ns, const struct dt_gfn *gfns, size_t n);
/* Distinct pages in epochs that ended within span_ns (<= max_span_ns) of the newest end, the
 * window's edge moved in by half the last epoch's length (so 1 s of 1 s epochs is one epoch). */
DT_API uint64_t dt_wss__pages(const struct dt_wss *w, uint64_t span_ns);
DT_API uint64_t dt_wss__total(const struct dt_wss *w);

/* ---- trace files (pure: encoding and decoding in memory; the caller does the I/O) ---- */

/*
 * A trace: a header describing the VM, then self-checking blocks, one per epoch. All integers
 * little-endian. See README "Trace file format" for the layout and the size per page.
 */
#define DT_TRACE_VERSION 1

struct dt_trace_header {
	uint32_t version;
	uint32_t page_size;
	uint32_t source;	/* enum dt_source_id */
	uint32_t clock;		/* 1: CLOCK_MONOTONIC nanoseconds */
	uint64_t start_ns;	/* the clock at the start of the recording */
	uint64_t start_unix_ns;	/* wall time then */
	int32_t pid;
	uint32_t nr_vcpus;
	uint32_t ring_entries;	/* 0: dirty bitmap */
	uint64_t kvm;
	char comm[16];
	uint32_t nr_slots;
	struct dt_slot *slots;	/* decoded: owned by the reader */
};

struct dt_trace_epoch {
	uint64_t seq;
	uint64_t start_ns, end_ns;
	uint64_t raw;		/* dirtying events in the epoch (all watched VMs) */
	uint64_t recovered;
	bool events;		/* each page carries its first write's time (ts): block type 2 */
	size_t nr_gfns;
	struct dt_gfn *gfns;	/* decoded: owned by the reader until the next call */
};

/* Appends the encoded header (or an epoch block) to *buf (realloc'd, *len grows). */
DT_API int dt_trace__encode_header(const struct dt_trace_header *h, void **buf, size_t *len,
				   size_t *cap);
DT_API int dt_trace__encode_epoch(const struct dt_trace_epoch *e, void **buf, size_t *len,
				  size_t *cap);

struct dt_trace_reader;

/*
 * Reads a trace held in memory (buf must outlive the reader). NULL with errno: EBADMSG (not a
 * dirtytrace trace, or its header is damaged), ENOTSUP (a newer version); why says which.
 */
DT_API struct dt_trace_reader *dt_trace_reader__new(const void *buf, size_t len, char *why,
						    size_t whysz);
DT_API void dt_trace_reader__free(struct dt_trace_reader *r);
DT_API const struct dt_trace_header *dt_trace_reader__header(const struct dt_trace_reader *r);
/*
 * The next epoch: 1, or 0 at the end, or -EBADMSG for a damaged block (why says where). A file
 * cut short ends at its last whole block: 0, and dt_trace_reader__truncated() is true.
 */
DT_API int dt_trace_reader__next(struct dt_trace_reader *r, struct dt_trace_epoch *e, char *why,
				 size_t whysz);
DT_API bool dt_trace_reader__truncated(const struct dt_trace_reader *r);

/* ---- QEMU control over QMP ---- */

struct dt_qmp;

/* Connects to a QMP unix socket and negotiates capabilities; NULL and errno on failure
 * (EPROTO: not QMP). */
DT_API struct dt_qmp *dt_qmp__open(const char *path);
/* Releases what this connection holds, then closes it. */
DT_API void dt_qmp__close(struct dt_qmp *q);
/* The QEMU process behind the socket (SO_PEERCRED), 0 if unknown. */
DT_API pid_t dt_qmp__pid(const struct dt_qmp *q);
/* Sends one command (a JSON object); resp gets the answer line. -EREMOTEIO: QEMU said error. */
DT_API int dt_qmp__execute(struct dt_qmp *q, const char *cmd, char *resp, size_t sz);
/*
 * Keeps QEMU's dirty logging on without throttling: a vCPU dirty limit no guest reaches
 * (QEMU 7.1+, needs -accel kvm,dirty-ring-size=N). A limit already set by someone else is left
 * as it is. why gets QEMU's refusal on failure.
 */
DT_API int dt_qmp__hold_dirty_logging(struct dt_qmp *q, char *why, size_t sz);
/* Cancels the limit hold_dirty_logging set, if it set one: QEMU is as it was. */
DT_API int dt_qmp__release(struct dt_qmp *q);

/* ---- live monitor model (what dirtytop shows), fed once per interval ---- */

struct dt_top_vcpu {
	int32_t id;
	double pages_per_s;	/* unique pages it dirtied first, per second */
	double raw_per_s;	/* dirtying events per second */
	uint32_t ring_size;	/* 0: no dirty ring */
	uint32_t ring_used;	/* dirty_index - reset_index at the last push or reset */
	uint32_t ring_max_used;
	double ring_resets_per_s;
	double ring_full_exits_per_s;
	uint64_t ring_full_exits;	/* since dirtytop started */
	uint64_t ring_overflows;	/* pushes with used > size: entries KVM overwrote */
};

struct dt_top_slot {
	uint16_t as_id;
	uint16_t id;
	bool logging;
	uint64_t base_gfn;
	uint64_t pages;		/* slot size */
	double pages_per_s;
	double share;		/* of the VM's dirty pages this interval, 0..1 */
};

struct dt_top_vm {
	pid_t pid;
	uint64_t kvm;
	char name[64];		/* comm until the caller sets something better */
	uint32_t nr_vcpus;
	uint32_t ring_entries;	/* 0: dirty bitmap */
	bool tracking;		/* dirty logging on for some memslot */
	double pages_per_s;
	double bytes_per_s;	/* pages_per_s * 4096 */
	double raw_per_s;
	uint64_t wss_1s, wss_10s, wss_60s;	/* distinct pages dirtied in the last 1/10/60 s */
	uint64_t total_pages;	/* distinct pages dirtied since dirtytop started */
	uint64_t drops;		/* records dropped for this VM, pages recovered (since start) */
	size_t nr_vcpus_rows;
	struct dt_top_vcpu *vcpus;	/* sorted by id */
	size_t nr_slots;
	struct dt_top_slot *slots;	/* sorted by (as_id, base_gfn) */
};

struct dt_top_frame {
	uint64_t now_ns;	/* CLOCK_MONOTONIC at the cut */
	double interval_s;	/* measured, never 0 */
	size_t nr_vms;
	struct dt_top_vm *vms;	/* sorted by pid; owned by the model, valid until the next update */
};

struct dt_top;

DT_API struct dt_top *dt_top__new(void);
DT_API void dt_top__free(struct dt_top *top);
/*
 * One interval: the epoch just cut, the per-vCPU views read right after it, and the latest VM
 * discovery. VMs absent from vms have exited and are dropped; new ones appear. Pure: no I/O.
 */
DT_API int dt_top__update(struct dt_top *top, const struct dt_epoch *e,
			  const struct dt_ring_view *views, size_t nr_views,
			  const struct dt_vm_list *vms, const struct dt_top_frame **frame);

#ifdef __cplusplus
}
#endif
#endif /* DIRTYTRACE_DIRTYTRACE_H */

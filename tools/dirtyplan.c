// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dirtyplan: will a live migration of this VM converge, and what would make it?
 *
 * It feeds a dirty trace (a recording made by `dirtytrace record`, or a VM watched for -d
 * seconds) into the model of include/dirtytrace/plan.h, which replays it through QEMU's precopy,
 * searches the throttle, dirty limit and bandwidth that would make it converge, and estimates
 * postcopy. This file only gathers the input, prints the answers and draws them: all arithmetic
 * about migrations is in src/plan.c, where the unit tests reach it.
 *
 * The pictures are hand-written SVG: four charts of rectangles, lines and text need no plotting
 * library, the files are deterministic, any browser shows them, and xmllint checks them.
 */
#include <argp.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include <dirtytrace/plan.h>
#include "common.h"

#define PROG "dirtyplan"
#define HEAT_ROWS	128	/* GFN ranges in the heatmap */
#define HEAT_COLS	200	/* time columns, at most */
#define RATE_SLICES	10	/* the text's rate-over-time summary */
#define TOP_N		10	/* hottest ranges and memslots shown */
#define HOT_RANGE_BYTES	(2u << 20)	/* hot ranges of 2 MiB, as dirtytrace report's */
#define SCAN_CHUNK	256	/* pages per process_vm_readv while counting zero pages */
#define ITER_HEAD	20	/* text: first iterations shown, then the last ITER_TAIL */
#define ITER_TAIL	5

static struct env {
	const char *file;
	pid_t pid;
	double duration;
	unsigned int interval_ms;
	const char *qmp;
	const char *bandwidth, *link, *downtime, *timeout, *ram, *max_iter, *page_size;
	bool scan_ram;
	bool json;
	const char *plot_dir;
	int verbose;
} env = { .duration = 10, .interval_ms = 1000 };

static volatile sig_atomic_t exiting;

const char *argp_program_version = "dirtyplan 0.1.0";
static const char doc[] =
"Predict a live migration of a VM from its dirty trace: does precopy converge,\n"
"in how long, with how many bytes and what downtime; else which throttle, dirty\n"
"limit or bandwidth makes it converge, and what postcopy would cost. Input: a\n"
"recording (FILE, from 'dirtytrace record') or a VM watched live (-p PID).\n"
"\n"
"EXAMPLES:\n"
"  dirtyplan vm.dtt                  # QEMU's defaults: 128 MiB/s, 300 ms\n"
"  dirtyplan vm.dtt --bandwidth 10gbit --downtime 100ms --json\n"
"  dirtyplan -p 1234 -d 30 --qmp /run/vm1.qmp --scan-ram --plot /tmp/vm1\n";

static const struct argp_option opts[] = {
	{ "pid", 'p', "PID", 0, "Watch this VMM live instead of reading a FILE", 0 },
	{ "duration", 'd', "SECONDS", 0, "Live: watch for this long (default 10)", 0 },
	{ "interval", 'i', "MS", 0, "Live: epoch length in milliseconds (default 1000)", 0 },
	{ "qmp", 'Q', "PATH", 0, "Live: QEMU's QMP socket; keep its dirty logging on while "
	  "watching", 0 },
	{ "bandwidth", 'b', "BW", 0, "QEMU's max-bandwidth: 1G = 1 GiB/s, 100M, 10gbit "
	  "(default 128M)", 0 },
	{ "link", 'l', "BW", 0, "The link's speed, for the stop-and-copy QEMU runs unthrottled "
	  "(default: --bandwidth)", 0 },
	{ "downtime", 'D', "TIME", 0, "QEMU's downtime-limit: 300ms, 1s (default 300ms)", 0 },
	{ "max-iterations", 'm', "N", 0, "Give up after N precopy passes (default 100)", 0 },
	{ "timeout", 'T', "TIME", 0, "Give up once the passes took this long (default: none)", 0 },
	{ "page-size", 'P', "BYTES", 0, "QEMU's target page size; the recording must have it "
	  "(default 4096)", 0 },
	{ "ram", 'r', "SIZE", 0, "Guest RAM: 4G, 512M (default: the VM's logged memslots)", 0 },
	{ "scan-ram", 's', NULL, 0, "Live: count zero pages by reading guest memory (QEMU sends "
	  "them as a flag)", 0 },
	{ "plot", 'o', "DIR", 0, "Write SVG charts into DIR: rate, heatmap, wss, precopy", 0 },
	{ "json", 'j', NULL, 0, "JSON output", 0 },
	{ "verbose", 'v', NULL, 0, "Progress while watching, the sources tried (-vv: libbpf "
	  "too)", 0 },
	{},
};

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	char *end;

	errno = 0;
	switch (key) {
	case 'p':
		env.pid = strtol(arg, &end, 10);
		if (errno || *end || env.pid <= 0)
			env.pid = -1;	/* reported by validate(): one line */
		break;
	case 'd':
		env.duration = strtod(arg, &end);
		if (errno || *end || !(env.duration > 0) || env.duration > 30 * 86400)
			env.duration = -1;
		break;
	case 'i':
		env.interval_ms = strtoul(arg, &end, 10);
		if (errno || *end || arg[0] == '-' || env.interval_ms > 3600000)
			env.interval_ms = 0;
		break;
	case 'Q': env.qmp = arg; break;
	case 'b': env.bandwidth = arg; break;
	case 'l': env.link = arg; break;
	case 'D': env.downtime = arg; break;
	case 'm': env.max_iter = arg; break;
	case 'T': env.timeout = arg; break;
	case 'P': env.page_size = arg; break;
	case 'r': env.ram = arg; break;
	case 's': env.scan_ram = true; break;
	case 'o': env.plot_dir = arg; break;
	case 'j': env.json = true; break;
	case 'v': env.verbose++; break;
	case ARGP_KEY_ARG:
		if (env.file)
			argp_error(state, "unexpected argument: %s", arg);
		env.file = arg;
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

/* One error line: to stderr, and as {"error": ...} on stdout in JSON mode. */
__attribute__((format(printf, 1, 2)))
static int fail(const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = tool_vfail(PROG, env.json, fmt, ap);
	va_end(ap);
	return ret;
}

static int print_fn(enum dt_print_level level, const char *fmt, va_list ap)
{
	return tool_message(PROG, env.verbose, level, fmt, ap);
}

static void sig_handler(int sig)
{
	exiting = 1;
}

/* ---- parameters ---- */

/* A size in bytes: a number and a binary unit ("", b, k/kb/kib, m.., g.., t..). */
static int parse_size(const char *s, uint64_t *bytes)
{
	static const char *const units[] = { "k", "m", "g", "t" };
	double v, mult = 1;
	char *end;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno)
		return -EINVAL;
	if (*end && strcasecmp(end, "b")) {
		size_t i, n = strlen(end);

		for (i = 0; i < 4; i++)
			if (!strncasecmp(end, units[i], 1) &&
			    (n == 1 || !strcasecmp(end + 1, "b") || !strcasecmp(end + 1, "ib")))
				break;
		if (i == 4)
			return -EINVAL;
		mult = (double)(1ull << (10 * (i + 1)));
	}
	v *= mult;
	if (!(v >= 1) || v > 0x1p60)
		return -ERANGE;
	*bytes = (uint64_t)v;
	return 0;
}

static const char *unit_why(int err, const char *what)
{
	return err == -ERANGE ? "must be above zero and finite" : what;
}

/* Checks what argp stored; fills p. 0, or 1 after the error line. */
static int validate(struct dt_plan_params *p, uint64_t *ram_bytes, uint32_t *page_size)
{
	char *end;
	int err;

	dt_plan_params__init(p);
	if (env.pid < 0)
		return fail("invalid --pid: a process id above 0");
	if (env.duration < 0)
		return fail("invalid --duration: seconds above 0 (fractions allowed)");
	if (!env.interval_ms)
		return fail("invalid --interval: milliseconds, 1 to 3600000");
	if (env.file && env.pid)
		return fail("give a recording FILE or -p PID, not both");
	if (!env.file && !env.pid)
		return fail("nothing to plan: give a recording FILE (dirtytrace record) or -p PID");
	if (env.file && env.qmp)
		return fail("--qmp is for a live VM (-p PID)");
	if (env.file && env.scan_ram)
		return fail("--scan-ram reads a running VM's memory: it needs -p PID, not a FILE "
			    "(give --ram and let the output say zero pages were not counted)");
	if (env.bandwidth && (err = dt_plan_parse_bandwidth(env.bandwidth, &p->bandwidth)))
		return fail("invalid --bandwidth '%s': %s", env.bandwidth,
			    unit_why(err, "a number and a unit, e.g. 1G (GiB/s), 100M, 10gbit"));
	if (env.link && (err = dt_plan_parse_bandwidth(env.link, &p->switchover_bandwidth)))
		return fail("invalid --link '%s': %s", env.link,
			    unit_why(err, "a number and a unit, e.g. 10gbit, 1G (GiB/s)"));
	/* a link alone is the bandwidth too: the user said what the wire carries */
	if (env.link && !env.bandwidth)
		p->bandwidth = p->switchover_bandwidth;
	if (env.downtime && (err = dt_plan_parse_duration(env.downtime, &p->downtime_limit_ns)))
		return fail("invalid --downtime '%s': %s", env.downtime,
			    unit_why(err, "a number and a unit, e.g. 300ms, 1s"));
	if (env.timeout && (err = dt_plan_parse_duration(env.timeout, &p->timeout_ns)))
		return fail("invalid --timeout '%s': %s", env.timeout,
			    unit_why(err, "a number and a unit, e.g. 10min, 600s"));
	if (env.max_iter) {
		unsigned long v;

		errno = 0;
		v = strtoul(env.max_iter, &end, 10);
		if (errno || *end || env.max_iter[0] == '-' || !v || v > 1000000)
			return fail("invalid --max-iterations '%s': 1 to 1000000", env.max_iter);
		p->max_iterations = v;
	}
	*page_size = 4096;
	if (env.page_size) {
		unsigned long v;

		errno = 0;
		v = strtoul(env.page_size, &end, 10);
		if (errno || *end || v < 512 || v > (1ul << 30) || (v & (v - 1)))
			return fail("invalid --page-size '%s': a power of two, 512 or more",
				    env.page_size);
		*page_size = v;
	}
	p->page_size = *page_size;
	*ram_bytes = 0;
	if (env.ram && (err = parse_size(env.ram, ram_bytes)))
		return fail("invalid --ram '%s': %s", env.ram,
			    unit_why(err, "a size such as 4G, 512M, 1073741824"));
	if (env.ram && *ram_bytes < *page_size)
		return fail("invalid --ram '%s': smaller than one %u-byte page", env.ram,
			    *page_size);
	return 0;
}

/* ---- what the plan is made from ---- */

/* A memslot of guest RAM: the heatmap's axis puts them end to end, in discovery's order. */
struct ram_slot {
	uint16_t as_id, id;
	uint64_t base_gfn, npages, uaddr;
	uint64_t pos;		/* first page on the axis */
	uint64_t page_epochs;	/* (page, epoch) pairs dirtied in it */
};

struct ep {
	double t0, len;		/* watched time, seconds */
	uint64_t pages, raw;
	uint32_t heat[HEAT_ROWS];	/* pages dirtied per GFN range */
};

struct plan {
	pid_t pid;
	char comm[16];
	uint32_t vcpus, ring_entries;
	uint32_t page_size;
	struct ram_slot *slots;
	size_t nr_slots;
	uint64_t axis_pages;	/* pages of slots, end to end */
	uint64_t row_pages;	/* axis pages per heatmap row */
	uint64_t other_page_epochs;	/* dirtied outside slots */
	uint64_t ram_pages;
	bool ram_given;
	bool slots_all;		/* no slot had dirty logging on: RAM counted from all */
	struct ep *eps;
	size_t nr_eps, cap_eps;
	double watched;
	bool truncated;
	bool zero_counted;
	uint64_t zero_pages, scan_unreadable;
	double scan_s;
	struct dt_workload *w;
};

static void plan_free(struct plan *pl)
{
	dt_workload__free(pl->w);
	free(pl->slots);
	free(pl->eps);
}

/* Guest RAM from the VM's memslots: those with dirty logging on (what a migration tracks), or
 * all of them when none has it (a recording made while logging was off). */
static int plan_take_slots(struct plan *pl, const struct dt_slot *s, size_t n)
{
	size_t logged = 0;

	for (size_t i = 0; i < n; i++)
		logged += (s[i].flags & DT_SLOT_LOG_DIRTY) && s[i].npages;
	pl->slots_all = !logged;
	pl->slots = calloc(n ?: 1, sizeof(*pl->slots));
	if (!pl->slots)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct ram_slot *r;

		if (!s[i].npages || (logged && !(s[i].flags & DT_SLOT_LOG_DIRTY)))
			continue;
		r = &pl->slots[pl->nr_slots++];
		r->as_id = s[i].as_id;
		r->id = s[i].id;
		r->base_gfn = s[i].base_gfn;
		r->npages = s[i].npages;
		r->uaddr = s[i].userspace_addr;
		r->pos = pl->axis_pages;
		pl->axis_pages += s[i].npages;
	}
	pl->row_pages = (pl->axis_pages + HEAT_ROWS - 1) / HEAT_ROWS ?: 1;
	return 0;
}

/* RAM size and the workload; 0 or 1 after the error line. */
static int plan_start(struct plan *pl, uint64_t ram_bytes)
{
	if (ram_bytes) {
		pl->ram_pages = ram_bytes / pl->page_size;
		pl->ram_given = true;
	} else {
		pl->ram_pages = pl->axis_pages;
	}
	if (!pl->ram_pages)
		return fail("guest RAM size unknown: no memslot is known for pid %d; give --ram "
			    "SIZE", pl->pid);
	pl->w = dt_workload__new(pl->ram_pages, pl->page_size);
	if (!pl->w)
		return fail("cannot model %llu pages of %u bytes: %s",
			    (unsigned long long)pl->ram_pages, pl->page_size, strerror(errno));
	return 0;
}

static struct ram_slot *find_slot(struct plan *pl, uint16_t as_id, uint16_t id)
{
	for (size_t i = 0; i < pl->nr_slots; i++)
		if (pl->slots[i].as_id == as_id && pl->slots[i].id == id)
			return &pl->slots[i];
	return NULL;
}

/* One epoch of the VM into the model and into the character the plots show. */
static int plan_add(struct plan *pl, uint64_t start_ns, uint64_t end_ns, uint64_t raw,
		    const struct dt_gfn *g, size_t n)
{
	struct ram_slot *s = NULL;
	struct ep *e;
	int err;

	err = dt_workload__add(pl->w, start_ns, end_ns, raw, g, n);
	if (err)
		return err;
	if (pl->nr_eps == pl->cap_eps) {
		size_t cap = pl->cap_eps ? pl->cap_eps * 2 : 64;
		struct ep *v = realloc(pl->eps, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		pl->eps = v;
		pl->cap_eps = cap;
	}
	e = &pl->eps[pl->nr_eps++];
	memset(e, 0, sizeof(*e));
	e->t0 = pl->watched;
	e->len = (end_ns - start_ns) / 1e9;
	e->pages = n;
	e->raw = raw;
	pl->watched += e->len;
	for (size_t i = 0; i < n; i++) {
		if (!s || s->as_id != g[i].as_id || s->id != g[i].slot)
			s = find_slot(pl, g[i].as_id, g[i].slot);
		if (!s || g[i].offset >= s->npages) {
			pl->other_page_epochs++;
			continue;
		}
		s->page_epochs++;
		e->heat[(s->pos + g[i].offset) / pl->row_pages]++;
	}
	return 0;
}

/* ---- input: a recording ---- */

static int load_file(struct plan *pl, uint64_t ram_bytes, uint32_t page_size)
{
	const struct dt_trace_header *h;
	struct dt_trace_reader *r;
	struct dt_trace_epoch e;
	struct tool_trace tt;
	char why[512];
	int err, ret = 1;

	if (tool_trace_open(&tt, env.file, why, sizeof(why))) {
		fail("%s", why);
		goto out;
	}
	r = tt.r;
	h = dt_trace_reader__header(r);
	if (h->page_size != page_size) {
		ret = fail("%s: recorded with %u-byte pages, not %u (--page-size)", env.file,
			   h->page_size, page_size);
		goto out;
	}
	pl->pid = h->pid;
	memcpy(pl->comm, h->comm, sizeof(pl->comm));
	pl->comm[sizeof(pl->comm) - 1] = 0;
	pl->vcpus = h->nr_vcpus;
	pl->ring_entries = h->ring_entries;
	pl->page_size = h->page_size;
	if (plan_take_slots(pl, h->slots, h->nr_slots)) {
		ret = fail("out of memory");
		goto out;
	}
	if (plan_start(pl, ram_bytes))
		goto out;
	while ((err = dt_trace_reader__next(r, &e, why, sizeof(why))) > 0) {
		err = plan_add(pl, e.start_ns, e.end_ns, e.raw, e.gfns, e.nr_gfns);
		if (err) {
			ret = fail("%s: epoch %llu: %s", env.file, (unsigned long long)e.seq,
				   err == -EINVAL ? "epochs out of time order" : strerror(-err));
			goto out;
		}
	}
	if (err < 0) {
		ret = fail("%s: %s after %zu good epochs", env.file, why, pl->nr_eps);
		goto out;
	}
	pl->truncated = dt_trace_reader__truncated(r);
	if (!pl->nr_eps) {
		ret = fail("%s: an empty recording: no epoch to plan from", env.file);
		goto out;
	}
	if (!(pl->watched > 0)) {
		ret = fail("%s: the recording's epochs last 0 s in all", env.file);
		goto out;
	}
	if (pl->truncated)
		fprintf(stderr, PROG ": warning: %s ends inside a block (recording cut short); "
			"read %zu whole epochs\n", env.file, pl->nr_eps);
	ret = 0;
out:
	tool_trace_close(&tt);
	return ret;
}

/* ---- input: a live VM ---- */

static uint64_t plan_page_epochs(const struct plan *pl)
{
	uint64_t n = 0;

	for (size_t i = 0; i < pl->nr_eps; i++)
		n += pl->eps[i].pages;
	return n;
}

static int pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
	return syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/* Holds QEMU's dirty logging on through QMP; *q stays NULL when no --qmp. */
static int hold_qmp(struct dt_qmp **q)
{
	char why[512];
	pid_t peer;
	int err;

	*q = NULL;
	if (!env.qmp)
		return 0;
	*q = dt_qmp__open(env.qmp);
	if (!*q)
		return fail("cannot talk QMP on %s: %s", env.qmp,
			    errno == EPROTO ? "not a QMP socket" :
			    errno == ETIMEDOUT ? "no greeting (another client holds it? QEMU serves "
			    "one client per -qmp socket: give QEMU another)" : strerror(errno));
	peer = dt_qmp__pid(*q);
	if (peer && peer != env.pid) {
		dt_qmp__close(*q);
		*q = NULL;
		return fail("--qmp %s is the socket of pid %d, not of %d", env.qmp, peer, env.pid);
	}
	err = dt_qmp__hold_dirty_logging(*q, why, sizeof(why));
	if (err) {
		dt_qmp__close(*q);
		*q = NULL;
		return fail("QEMU on %s will not keep dirty logging on: %s%s", env.qmp, why,
			    strstr(why, "dirty-ring-size") ? "" :
			    " (needs QEMU 7.1+ with -accel kvm,dirty-ring-size=N)");
	}
	if (env.verbose)
		fprintf(stderr, PROG ": %s: holding dirty logging on for pid %d\n", env.qmp,
			env.pid);
	return 0;
}

static int cut_epoch(struct plan *pl, struct dt_tracer *t, uint64_t *raw_seen)
{
	const struct dt_epoch_vm *vm;
	struct dt_stats st = {};
	struct dt_epoch *e;
	uint64_t raw;
	int err;

	err = dt_tracer__cut(t, &e);
	if (err)
		return fail("failed to cut an epoch: %s", strerror(-err));
	/* the tracer watches this pid only: its raw count is the VM's */
	dt_tracer__stats(t, &st);
	raw = st.raw - *raw_seen;
	*raw_seen = st.raw;
	vm = dt_epoch__vm(e, pl->pid);
	err = plan_add(pl, e->start_ns, e->end_ns, raw, vm ? vm->gfns : NULL,
		       vm ? vm->nr_gfns : 0);
	if (!err && env.verbose)
		fprintf(stderr, PROG ": epoch %llu: %zu pages, %llu raw events\n",
			(unsigned long long)e->seq, vm ? vm->nr_gfns : 0,
			(unsigned long long)raw);
	dt_epoch__free(e);
	return err ? fail("out of memory") : 0;
}

/* Cuts an epoch every -i ms for -d seconds, or until Ctrl-C or the VM's exit. */
static int watch(struct plan *pl, struct dt_tracer *t, int pidfd)
{
	uint64_t now = tool_now_ns() / 1000000, raw_seen = 0, next_cut, end_ms;
	bool gone = false;
	int err;

	end_ms = now + (uint64_t)(env.duration * 1000);
	next_cut = now + env.interval_ms;
	while (!exiting) {
		struct pollfd pfd[2] = {
			{ .fd = dt_tracer__fd(t), .events = POLLIN },
			{ .fd = pidfd, .events = POLLIN },
		};
		uint64_t wake = end_ms < next_cut ? end_ms : next_cut;

		now = tool_now_ns() / 1000000;
		if (poll(pfd, pidfd >= 0 ? 2 : 1, wake > now ? (int)(wake - now) : 0) < 0 &&
		    errno != EINTR)
			return fail("poll: %s", strerror(errno));
		err = dt_tracer__poll(t, 0);
		if (err < 0 && err != -EINTR)
			return fail("failed to read the ring buffer: %s", strerror(-err));
		if (pidfd >= 0 && (pfd[1].revents & POLLIN)) {
			gone = true;
			break;
		}
		now = tool_now_ns() / 1000000;
		if (now >= end_ms)
			break;
		if (now >= next_cut) {
			if (cut_epoch(pl, t, &raw_seen))
				return 1;
			next_cut = now + env.interval_ms;
		}
	}
	/* the last, partial epoch: nothing seen is left behind */
	if (cut_epoch(pl, t, &raw_seen))
		return 1;
	if (gone)
		fprintf(stderr, PROG ": warning: pid %d exited after %.1f s of watching\n",
			pl->pid, pl->watched);
	return 0;
}

/*
 * Counts the zero pages of guest RAM, reading the VMM's mapping of each slot like
 * dtcheckpoint's full copy does. A page the VMM has no mapping for cannot be read: it is
 * counted as not zero (QEMU would send it in full if it existed) and reported.
 */
static int scan_ram(struct plan *pl)
{
	size_t chunk = (size_t)SCAN_CHUNK * pl->page_size;
	uint64_t t0 = tool_now_ns();
	uint8_t *buf = malloc(chunk);

	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < pl->nr_slots; i++) {
		const struct ram_slot *s = &pl->slots[i];

		for (uint64_t off = 0; off < s->npages; off += SCAN_CHUNK) {
			uint64_t n = s->npages - off < SCAN_CHUNK ? s->npages - off : SCAN_CHUNK;
			struct iovec l = { buf, n * pl->page_size };
			struct iovec r = { (void *)(uintptr_t)(s->uaddr + off * pl->page_size),
					   n * pl->page_size };
			ssize_t got = process_vm_readv(pl->pid, &l, 1, &r, 1, 0);
			uint64_t whole;

			if (got < 0 && errno != EFAULT) {
				free(buf);
				return -errno;
			}
			whole = got > 0 ? (uint64_t)got / pl->page_size : 0;
			/* a short read stops at an unmapped page: read the rest page by page */
			for (uint64_t k = whole; k < n; k++) {
				struct iovec l1 = { buf + k * pl->page_size, pl->page_size };
				struct iovec r1 = { (char *)r.iov_base + k * pl->page_size,
						    pl->page_size };

				if (process_vm_readv(pl->pid, &l1, 1, &r1, 1, 0) !=
				    (ssize_t)pl->page_size) {
					pl->scan_unreadable++;
					memset(buf + k * pl->page_size, 0xff, pl->page_size);
				}
			}
			for (uint64_t k = 0; k < n; k++) {
				const uint64_t *w = (const uint64_t *)(buf + k * pl->page_size);
				size_t j = 0;

				while (j < pl->page_size / 8 && !w[j])
					j++;
				pl->zero_pages += j == pl->page_size / 8;
			}
		}
	}
	free(buf);
	pl->scan_s = (tool_now_ns() - t0) / 1e9;
	if (pl->zero_pages > pl->ram_pages)
		pl->zero_pages = pl->ram_pages;	/* --ram smaller than the slots */
	pl->zero_counted = true;
	return dt_workload__set_zero_pages(pl->w, pl->zero_pages);
}

static int load_live(struct plan *pl, uint64_t ram_bytes, uint32_t page_size)
{
	struct dt_tracer_opts o = { .sz = sizeof(o), .nr_pids = 1 };
	struct dt_vm_list *vms = NULL;
	struct dt_tracer *t = NULL;
	struct sigaction sa = { .sa_handler = sig_handler };
	const struct dt_vm *vm;
	struct dt_qmp *q = NULL;
	const char *why;
	int err, pidfd = -1, ret = 1;

	if (kill(env.pid, 0) && errno == ESRCH)
		return fail("no process with pid %d", env.pid);
	why = tool_preflight();
	if (why)
		return fail("%s", why);
	/* QEMU turns logging on when asked: discover after, so the slots say it is on */
	if (hold_qmp(&q))
		return 1;
	err = dt_vms__discover(&vms);
	if (err) {
		ret = fail("failed to discover VMs: %s%s", strerror(-err), tool_err_hint(err));
		goto out;
	}
	vm = dt_vm_list__find(vms, env.pid);
	if (!vm) {
		ret = fail("pid %d is not a KVM VMM: it holds no kvm-vm file descriptor", env.pid);
		goto out;
	}
	pl->pid = vm->pid;
	memcpy(pl->comm, vm->comm, sizeof(pl->comm));
	pl->vcpus = vm->nr_vcpus;
	pl->ring_entries = vm->ring_entries;
	pl->page_size = page_size;
	if (plan_take_slots(pl, vm->slots, vm->nr_slots)) {
		ret = fail("out of memory");
		goto out;
	}
	if (plan_start(pl, ram_bytes))
		goto out;
	if (env.scan_ram && !pl->nr_slots) {
		ret = fail("--scan-ram: the memslots of pid %d are not known (needs Linux 5.17+)",
			   env.pid);
		goto out;
	}
	pidfd = pidfd_of(env.pid);
	o.pids = &env.pid;
	t = dt_tracer__open(&o);
	if (!t) {
		err = -errno;
		ret = fail("failed to attach: %s%s", strerror(-err), tool_err_hint(err));
		goto out;
	}
	if (env.verbose)
		tool_print_probes(PROG, t);
	if (!vm->ring_entries && dt_tracer__source(t) == DT_SOURCE_RING_PUSH)
		fprintf(stderr, PROG ": warning: pid %d uses the dirty bitmap, which only "
			"fentry/kprobe see; expect no pages\n", env.pid);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (watch(pl, t, pidfd))
		goto out;
	dt_tracer__close(t);
	t = NULL;
	if (q) {
		dt_qmp__close(q);	/* releases the held limit: QEMU is as it was */
		q = NULL;
	}
	if (!(pl->watched > 0)) {
		ret = fail("watched pid %d for 0 s: nothing to plan from", env.pid);
		goto out;
	}
	if (!pl->w || !pl->eps || !plan_page_epochs(pl))
		fprintf(stderr, PROG ": warning: pid %d dirtied no page in %.1f s: is its dirty "
			"logging on? (QEMU turns it on only when it needs it: --qmp PATH)\n",
			env.pid, pl->watched);
	/* after watching: the scan's reads do not disturb the measurement */
	if (env.scan_ram && (err = scan_ram(pl))) {
		ret = fail("--scan-ram: cannot read the memory of pid %d: %s%s", env.pid,
			   strerror(-err), err == -EPERM ? " (needs CAP_SYS_PTRACE)" : "");
		goto out;
	}
	ret = 0;
out:
	dt_tracer__close(t);
	if (q)
		dt_qmp__close(q);
	dt_vm_list__free(vms);
	if (pidfd >= 0)
		close(pidfd);
	return ret;
}

/* ---- the answers ---- */

struct results {
	struct dt_plan_params p;
	struct dt_plan_advice a;
	struct dt_workload_info info;
	uint64_t hist[DT_PLAN_HIST_BUCKETS], once;
	struct dt_plan_wss_point wss[40];
	size_t nr_wss;
	struct dt_plan_range hot[TOP_N];
	size_t nr_hot;
	uint64_t hot_range_pages;
	double rate_p50, rate_p90, rate_max, rate_mean;	/* pages/s over epochs */
	double slice_rate[RATE_SLICES];
	size_t nr_slices;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Per-epoch rates (epochs shorter than half the median left out, as dirtytrace report does:
 * the last epoch cut at Ctrl-C is short and its rate runs high). */
static int rate_stats(const struct plan *pl, struct results *r)
{
	double *lens = malloc(pl->nr_eps * sizeof(double));
	double *rates = malloc(pl->nr_eps * sizeof(double));
	double med, slice;
	size_t n = 0;

	if (!lens || !rates) {
		free(lens);
		free(rates);
		return -ENOMEM;
	}
	for (size_t i = 0; i < pl->nr_eps; i++)
		lens[i] = pl->eps[i].len;
	qsort(lens, pl->nr_eps, sizeof(*lens), cmp_double);
	med = lens[pl->nr_eps / 2];
	for (size_t i = 0; i < pl->nr_eps; i++)
		if (pl->eps[i].len > 0 && pl->eps[i].len >= med / 2)
			rates[n++] = pl->eps[i].pages / pl->eps[i].len;
	qsort(rates, n, sizeof(*rates), cmp_double);
	if (n) {
		r->rate_p50 = rates[(n - 1) / 2];
		r->rate_p90 = rates[(size_t)((n - 1) * 0.9)];
		r->rate_max = rates[n - 1];
	}
	r->rate_mean = r->info.pages_per_s;
	/* the recording in RATE_SLICES slices of watched time: each epoch to its midpoint's */
	r->nr_slices = pl->nr_eps < RATE_SLICES ? pl->nr_eps : RATE_SLICES;
	slice = pl->watched / r->nr_slices;
	{
		double pages[RATE_SLICES] = {}, secs[RATE_SLICES] = {};

		for (size_t i = 0; i < pl->nr_eps; i++) {
			size_t k = (pl->eps[i].t0 + pl->eps[i].len / 2) / slice;

			k = k < r->nr_slices ? k : r->nr_slices - 1;
			pages[k] += pl->eps[i].pages;
			secs[k] += pl->eps[i].len;
		}
		for (size_t k = 0; k < r->nr_slices; k++)
			r->slice_rate[k] = secs[k] > 0 ? pages[k] / secs[k] : 0;
	}
	free(lens);
	free(rates);
	return 0;
}

static int compute(struct plan *pl, struct results *r)
{
	int err;

	dt_workload__info(pl->w, &r->info);
	err = dt_workload__advise(pl->w, &r->p, &r->a);
	if (err)
		return fail("the model failed: %s", strerror(-err));
	err = dt_workload__write_intervals(pl->w, r->hist, &r->once);
	if (!err)
		err = dt_workload__wss_curve(pl->w, r->wss, 40, &r->nr_wss);
	r->hot_range_pages = HOT_RANGE_BYTES / pl->page_size ?: 1;
	if (!err)
		err = dt_workload__hot_ranges(pl->w, r->hot_range_pages, r->hot, TOP_N, &r->nr_hot);
	if (!err)
		err = rate_stats(pl, r);
	if (err)
		return fail("the workload's character: %s", strerror(-err));
	return 0;
}

static const char *stop_name(enum dt_plan_stop s)
{
	switch (s) {
	case DT_PLAN_CONVERGED:
		return "converged";
	case DT_PLAN_MAX_ITERATIONS:
		return "max-iterations";
	case DT_PLAN_TIMEOUT:
		return "timeout";
	case DT_PLAN_STALLED:
		return "stalled";
	}
	return "unknown";
}

static double mib(double bytes)
{
	return bytes / 1048576.0;
}

/* "< 1 ms", "1-2 ms", ... "4.1-8.2 s", "> 1.2 h" for a write-interval bucket. */
static void bucket_label(size_t k, char *buf, size_t sz)
{
	double lo = k ? ldexp(1, k - 1) : 0, hi = ldexp(1, k);
	const char *u = "ms";

	if (!k) {
		snprintf(buf, sz, "< 1 ms");
		return;
	}
	if (lo >= 1000) {
		lo /= 1000;
		hi /= 1000;
		u = "s";
	}
	if (k == DT_PLAN_HIST_BUCKETS - 1)
		snprintf(buf, sz, ">= %.4g %s", lo, u);
	else
		snprintf(buf, sz, "%.4g-%.4g %s", lo, hi, u);
}

static void slot_name(const struct dt_plan_range *h, char *buf, size_t sz)
{
	if (h->resolved)
		snprintf(buf, sz, "%u:0x%llx", h->as_id, (unsigned long long)h->first);
	else
		snprintf(buf, sz, "%u:slot%u+0x%llx", h->as_id, h->slot,
			 (unsigned long long)h->first);
}

static void print_precopy_iters(const struct dt_plan_precopy *pc, uint32_t page_size)
{
	printf("  %5s %12s %10s %11s %9s %12s\n", "iter", "pages", "zero", "MiB", "seconds",
	       "dirtied");
	for (size_t i = 0; i < pc->nr_iters; i++) {
		const struct dt_plan_iter *it = &pc->iters[i];

		if (pc->nr_iters > ITER_HEAD + ITER_TAIL + 1 && i == ITER_HEAD) {
			printf("  %5s (%zu more; --json lists them all)\n", "...",
			       pc->nr_iters - ITER_HEAD - ITER_TAIL);
			i = pc->nr_iters - ITER_TAIL - 1;
			continue;
		}
		printf("  %5zu %12llu %10llu %11.1f %9.3f %12llu\n", i,
		       (unsigned long long)it->pages, (unsigned long long)it->zero_pages,
		       mib(it->bytes), it->seconds, (unsigned long long)it->dirtied);
	}
}

static void print_text(const struct plan *pl, const struct results *r)
{
	const struct dt_plan_advice *a = &r->a;
	const struct dt_plan_precopy *pc = &a->precopy;
	const struct dt_plan_postcopy *po = &a->postcopy;
	double bw = r->p.bandwidth, link = r->p.switchover_bandwidth ?: bw;
	uint64_t ps = pl->page_size;

	printf("VM: pid %d (%s), %u vCPUs, %s\n", pl->pid, pl->comm, pl->vcpus,
	       pl->ring_entries ? "dirty ring" : "dirty bitmap");
	if (env.file)
		printf("input: %s, %zu epochs, %.1f s watched%s\n", env.file, r->info.epochs,
		       r->info.seconds, pl->truncated ? " (cut short)" : "");
	else
		printf("input: watched live for %.1f s in %zu epochs\n", r->info.seconds,
		       r->info.epochs);
	printf("guest RAM: %llu pages of %u bytes (%.1f MiB), %s\n",
	       (unsigned long long)pl->ram_pages, pl->page_size, mib(pl->ram_pages * ps),
	       pl->ram_given ? "from --ram" : pl->slots_all ?
	       "from all memslots (none had dirty logging on)" : "from the logged memslots");
	if (pl->zero_counted)
		printf("zero pages: %llu (%.1f%%), counted by reading guest memory in %.2f s%s\n",
		       (unsigned long long)pl->zero_pages, 100.0 * pl->zero_pages / pl->ram_pages,
		       pl->scan_s, pl->scan_unreadable ? " (some pages unreadable: not zero)" : "");
	else
		printf("zero pages: not counted; none assumed, every page is sent in full "
		       "(--scan-ram counts them on a live VM)\n");
	printf("migration: bandwidth %.1f MiB/s, link %.1f MiB/s, downtime limit %.0f ms, "
	       "at most %u iterations", mib(bw), mib(link), r->p.downtime_limit_ns / 1e6,
	       r->p.max_iterations);
	if (r->p.timeout_ns)
		printf(", timeout %.1f s", r->p.timeout_ns / 1e9);
	printf("\n\n");

	printf("precopy (threshold %.1f MiB = bandwidth x downtime limit)\n",
	       mib(pc->threshold_bytes));
	print_precopy_iters(pc, pl->page_size);
	printf("  converges: %s%s\n", pc->converges ? "yes" : "no",
	       pc->converges ? "" : pc->stop == DT_PLAN_STALLED ? " (the remainder stopped "
	       "shrinking)" : pc->stop == DT_PLAN_TIMEOUT ? " (timeout)" :
	       " (max iterations)");
	printf("  iterations: %zu, total time %.2f s, total %.1f MiB (%llu bytes)\n",
	       pc->nr_iters, pc->total_seconds, mib(pc->total_bytes),
	       (unsigned long long)pc->total_bytes);
	printf("  %s downtime: %.0f ms for %llu pages (limit %.0f ms)\n",
	       pc->converges ? "expected" : "stopping now would cost a", pc->downtime_s * 1e3,
	       (unsigned long long)pc->remaining_pages, r->p.downtime_limit_ns / 1e6);
	if (pc->looped)
		printf("  the simulation ran %.1f times the recording: its dirtying was assumed "
		       "to repeat\n", pc->replays);
	printf("\n");

	printf("what makes it converge\n");
	if (a->min_bandwidth > 0)
		printf("  bandwidth: converges unaided from %.1f MiB/s (%.2f Gbit/s)\n",
		       mib(a->min_bandwidth), a->min_bandwidth * 8 / 1e9);
	else
		printf("  bandwidth: no bandwidth makes it converge within %u iterations\n",
		       r->p.max_iterations);
	if (a->throttle_pct == 0)
		printf("  auto-converge throttle: not needed\n");
	else if (a->throttle_pct < 0)
		printf("  auto-converge throttle: none up to %u%% converges\n",
		       r->p.max_cpu_throttle);
	else
		printf("  auto-converge throttle: %d%% (guest slowed by %d%%): %zu iterations, "
		       "%.2f s, downtime %.0f ms\n", a->throttle_pct, a->throttle_pct,
		       a->throttled.nr_iters, a->throttled.total_seconds,
		       a->throttled.downtime_s * 1e3);
	if (a->dirty_limit == 0)
		printf("  dirty limit: not needed\n");
	else if (a->dirty_limit < 0)
		printf("  dirty limit: none converges\n");
	else
		printf("  dirty limit: %.2f MB/s %s (vcpu-dirty-limit; guest slowed by %.0f%%): "
		       "%zu iterations, %.2f s\n", mib(a->dirty_limit),
		       a->dirty_limit_per_vcpu ? "per vCPU" : "for the whole VM (no vCPU "
		       "attribution)", a->dirty_limit_slowdown * 100, a->limited.nr_iters,
		       a->limited.total_seconds);
	printf("\n");

	printf("postcopy (switch after %u precopy pass%s)\n", po->passes,
	       po->passes == 1 ? "" : "es");
	printf("  switchover after %.2f s, %.1f MiB sent; %llu pages (%.1f MiB) still at the "
	       "source\n", po->switchover_s, mib(po->precopy_bytes),
	       (unsigned long long)po->pending_pages, mib(po->pending_bytes));
	printf("  exposure window: %.2f s (a failure of either side meanwhile loses the VM)\n",
	       po->exposure_s);
	printf("  writable working set faulted on: at least %llu pages (%.1f expected before "
	       "the push sends them); a lower bound: dirty tracking does not see reads\n",
	       (unsigned long long)po->fault_pages, po->expected_write_faults);
	printf("  total %.2f s, %.1f MiB\n\n", po->total_seconds, mib(po->total_bytes));

	printf("recommendation: %s\n", dt_plan_rec__name(a->rec));
	for (size_t i = 0; i < a->nr_reasons; i++)
		printf("  - %s\n", a->reasons[i]);
	printf("\n");

	printf("workload\n");
	printf("  dirty rate: mean %.0f pages/s (%.2f MiB/s); per epoch p50 %.0f, p90 %.0f, "
	       "max %.0f pages/s; %.0f raw events/s\n", r->rate_mean, mib(r->rate_mean * ps),
	       r->rate_p50, r->rate_p90, r->rate_max,
	       r->info.seconds > 0 ? r->info.raw / r->info.seconds : 0);
	printf("  rate over time (pages/s, %zu slices of %.1f s):", r->nr_slices,
	       pl->watched / r->nr_slices);
	for (size_t k = 0; k < r->nr_slices; k++)
		printf(" %.0f", r->slice_rate[k]);
	printf("\n  distinct pages dirtied: %llu (%.1f%% of RAM)\n",
	       (unsigned long long)r->info.distinct_pages,
	       100.0 * r->info.distinct_pages / pl->ram_pages);
	printf("  write intervals (how soon a page is written again):\n");
	{
		uint64_t total = r->once, top = 1;

		for (size_t k = 0; k < DT_PLAN_HIST_BUCKETS; k++) {
			total += r->hist[k];
			top = r->hist[k] > top ? r->hist[k] : top;
		}
		for (size_t k = 0; k < DT_PLAN_HIST_BUCKETS; k++) {
			char label[32], bar[41];
			size_t len;

			if (!r->hist[k])
				continue;
			bucket_label(k, label, sizeof(label));
			len = (size_t)(40.0 * r->hist[k] / top + 0.5);
			memset(bar, '#', len);
			bar[len] = 0;
			printf("    %-16s %10llu %5.1f%% %s\n", label,
			       (unsigned long long)r->hist[k], 100.0 * r->hist[k] / (total ?: 1),
			       bar);
		}
		printf("    %-16s %10llu %5.1f%%\n", "written once", (unsigned long long)r->once,
		       100.0 * r->once / (total ?: 1));
	}
	printf("  writable working set (distinct pages over windows):\n");
	for (size_t i = 0; i < r->nr_wss; i++)
		printf("    %8.2f s %12.0f mean %10llu max (%zu windows)\n", r->wss[i].window_s,
		       r->wss[i].mean_pages, (unsigned long long)r->wss[i].max_pages,
		       r->wss[i].windows);
	printf("  hottest %u KiB ranges (GFN):\n", (unsigned)(r->hot_range_pages * ps >> 10));
	for (size_t i = 0; i < r->nr_hot; i++) {
		char name[48];

		slot_name(&r->hot[i], name, sizeof(name));
		printf("    %-24s %8llu pages dirtied, %10llu page-epochs\n", name,
		       (unsigned long long)r->hot[i].dirty_pages,
		       (unsigned long long)r->hot[i].page_epochs);
	}
	printf("  memslots:\n");
	{
		uint64_t total = pl->other_page_epochs;

		for (size_t i = 0; i < pl->nr_slots; i++)
			total += pl->slots[i].page_epochs;
		for (size_t i = 0; i < pl->nr_slots; i++) {
			const struct ram_slot *s = &pl->slots[i];

			printf("    %u:%-5u gfn 0x%llx-0x%llx %10llu pages %12llu page-epochs "
			       "%5.1f%%\n", s->as_id, s->id, (unsigned long long)s->base_gfn,
			       (unsigned long long)(s->base_gfn + s->npages - 1),
			       (unsigned long long)s->npages, (unsigned long long)s->page_epochs,
			       100.0 * s->page_epochs / (total ?: 1));
		}
		if (pl->other_page_epochs)
			printf("    outside them: %llu page-epochs\n",
			       (unsigned long long)pl->other_page_epochs);
	}
}

/* ---- JSON ---- */

static void jnum(const char *key, double v, bool comma)
{
	if (isfinite(v))
		printf("\"%s\":%.10g%s", key, v, comma ? "," : "");
	else
		printf("\"%s\":null%s", key, comma ? "," : "");
}

static void ju64(const char *key, uint64_t v, bool comma)
{
	printf("\"%s\":%llu%s", key, (unsigned long long)v, comma ? "," : "");
}

static void jbool(const char *key, bool v, bool comma)
{
	printf("\"%s\":%s%s", key, v ? "true" : "false", comma ? "," : "");
}

static void json_precopy(const char *key, const struct dt_plan_precopy *pc)
{
	printf("\"%s\":{", key);
	jbool("converges", pc->converges, true);
	printf("\"stop\":\"%s\",", stop_name(pc->stop));
	ju64("iterations", pc->nr_iters, true);
	jnum("total_seconds", pc->total_seconds, true);
	ju64("total_bytes", pc->total_bytes, true);
	jnum("downtime_ms", pc->downtime_s * 1e3, true);
	ju64("remaining_pages", pc->remaining_pages, false);
	printf("}");
}

static void print_json(const struct plan *pl, const struct results *r)
{
	const struct dt_plan_advice *a = &r->a;
	const struct dt_plan_precopy *pc = &a->precopy;
	const struct dt_plan_postcopy *po = &a->postcopy;

	printf("{");
	if (env.file) {
		printf("\"file\":");
		tool_json_str(env.file);
		printf(",");
	} else {
		printf("\"file\":null,");
	}
	printf("\"pid\":%d,\"comm\":", pl->pid);
	tool_json_str(pl->comm);
	printf(",\"vcpus\":%u,\"ring_entries\":%u,", pl->vcpus, pl->ring_entries);
	ju64("page_size", pl->page_size, true);
	ju64("ram_pages", pl->ram_pages, true);
	ju64("ram_bytes", pl->ram_pages * pl->page_size, true);
	printf("\"ram_from\":\"%s\",", pl->ram_given ? "option" : pl->slots_all ? "all-slots" :
	       "logged-slots");
	ju64("zero_pages", pc->zero_pages, true);
	jbool("zero_pages_counted", pl->zero_counted, true);
	printf("\"recording\":{");
	ju64("epochs", r->info.epochs, true);
	jnum("seconds", r->info.seconds, true);
	ju64("page_epochs", r->info.page_epochs, true);
	ju64("distinct_pages", r->info.distinct_pages, true);
	ju64("raw_events", r->info.raw, true);
	jbool("truncated", pl->truncated, false);
	printf("},\"params\":{");
	jnum("bandwidth", r->p.bandwidth, true);
	jnum("link_bandwidth", r->p.switchover_bandwidth ?: r->p.bandwidth, true);
	jnum("downtime_limit_ms", r->p.downtime_limit_ns / 1e6, true);
	ju64("max_iterations", r->p.max_iterations, true);
	jnum("timeout_s", r->p.timeout_ns / 1e9, false);
	printf("},");

	/* the unaided precopy at the top level: the keys scripts read first */
	jbool("converges", pc->converges, true);
	printf("\"stop\":\"%s\",", stop_name(pc->stop));
	ju64("iterations", pc->nr_iters, true);
	jnum("total_seconds", pc->total_seconds, true);
	ju64("total_bytes", pc->total_bytes, true);
	jnum("downtime_ms", pc->downtime_s * 1e3, true);
	ju64("remaining_pages", pc->remaining_pages, true);
	ju64("threshold_bytes", pc->threshold_bytes, true);
	jbool("looped", pc->looped, true);
	jnum("replays", pc->replays, true);
	printf("\"passes\":[");
	for (size_t i = 0; i < pc->nr_iters; i++) {
		const struct dt_plan_iter *it = &pc->iters[i];

		printf("%s{", i ? "," : "");
		ju64("pages", it->pages, true);
		ju64("zero_pages", it->zero_pages, true);
		ju64("bytes", it->bytes, true);
		jnum("seconds", it->seconds, true);
		ju64("dirtied", it->dirtied, false);
		printf("}");
	}
	printf("],");
	if (a->min_bandwidth > 0)
		jnum("min_bandwidth", a->min_bandwidth, true);
	else
		printf("\"min_bandwidth\":null,");
	printf("\"throttle_pct\":");
	if (a->throttle_pct < 0)
		printf("null,");
	else
		printf("%d,", a->throttle_pct);
	if (a->throttle_pct > 0) {
		json_precopy("throttled", &a->throttled);
		printf(",");
	}
	if (a->dirty_limit < 0)
		printf("\"dirty_limit\":null,");
	else
		jnum("dirty_limit", a->dirty_limit, true);
	jbool("dirty_limit_per_vcpu", a->dirty_limit_per_vcpu, true);
	if (a->dirty_limit > 0) {
		jnum("dirty_limit_slowdown", a->dirty_limit_slowdown, true);
		json_precopy("limited", &a->limited);
		printf(",");
	}
	printf("\"postcopy\":{");
	ju64("passes", po->passes, true);
	jnum("switchover_s", po->switchover_s, true);
	ju64("precopy_bytes", po->precopy_bytes, true);
	ju64("pending_pages", po->pending_pages, true);
	jnum("exposure_s", po->exposure_s, true);
	ju64("fault_pages_min", po->fault_pages, true);
	jnum("expected_write_faults", po->expected_write_faults, true);
	jnum("total_seconds", po->total_seconds, true);
	ju64("total_bytes", po->total_bytes, false);
	printf("},\"recommendation\":\"%s\",\"reasons\":[", dt_plan_rec__name(a->rec));
	for (size_t i = 0; i < a->nr_reasons; i++) {
		printf("%s", i ? "," : "");
		tool_json_str(a->reasons[i]);
	}
	printf("],\"workload\":{");
	jnum("pages_per_s", r->rate_mean, true);
	jnum("raw_per_s", r->info.seconds > 0 ? r->info.raw / r->info.seconds : 0, true);
	printf("\"rate_pages_per_s\":{");
	jnum("p50", r->rate_p50, true);
	jnum("p90", r->rate_p90, true);
	jnum("max", r->rate_max, false);
	printf("},\"rate_slices\":[");
	for (size_t k = 0; k < r->nr_slices; k++)
		printf("%s%.10g", k ? "," : "", r->slice_rate[k]);
	printf("],\"write_intervals\":[");
	{
		bool first = true;

		for (size_t k = 0; k < DT_PLAN_HIST_BUCKETS; k++) {
			if (!r->hist[k])
				continue;
			printf("%s{", first ? "" : ",");
			jnum("from_ms", k ? ldexp(1, k - 1) : 0, true);
			if (k == DT_PLAN_HIST_BUCKETS - 1)
				printf("\"to_ms\":null,");
			else
				jnum("to_ms", ldexp(1, k), true);
			ju64("pages", r->hist[k], false);
			printf("}");
			first = false;
		}
	}
	printf("],");
	ju64("written_once", r->once, true);
	printf("\"wss\":[");
	for (size_t i = 0; i < r->nr_wss; i++) {
		printf("%s{", i ? "," : "");
		jnum("window_s", r->wss[i].window_s, true);
		jnum("mean_pages", r->wss[i].mean_pages, true);
		ju64("max_pages", r->wss[i].max_pages, true);
		ju64("windows", r->wss[i].windows, false);
		printf("}");
	}
	printf("],\"hot_ranges\":[");
	for (size_t i = 0; i < r->nr_hot; i++) {
		const struct dt_plan_range *h = &r->hot[i];

		printf("%s{\"as_id\":%u,", i ? "," : "", h->as_id);
		if (h->resolved)
			printf("\"gfn\":%llu,\"slot\":null,\"offset\":null,",
			       (unsigned long long)h->first);
		else
			printf("\"gfn\":null,\"slot\":%u,\"offset\":%llu,", h->slot,
			       (unsigned long long)h->first);
		ju64("pages", h->pages, true);
		ju64("dirty_pages", h->dirty_pages, true);
		ju64("page_epochs", h->page_epochs, false);
		printf("}");
	}
	printf("],\"slots\":[");
	for (size_t i = 0; i < pl->nr_slots; i++) {
		const struct ram_slot *s = &pl->slots[i];

		printf("%s{\"as_id\":%u,\"slot\":%u,", i ? "," : "", s->as_id, s->id);
		ju64("base_gfn", s->base_gfn, true);
		ju64("pages", s->npages, true);
		ju64("page_epochs", s->page_epochs, false);
		printf("}");
	}
	printf("]}");
	if (env.plot_dir) {
		printf(",\"plot_dir\":");
		tool_json_str(env.plot_dir);
	}
	printf("}\n");
}

/* ---- SVG charts ---- */

struct chart {
	FILE *f;
	double x0, x1, y0, y1;	/* data ranges; log10 of y when ylog */
	bool ylog;
	double L, T, W, H;	/* plot area, px */
};

static void svg_esc(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '"')
			fputs("&quot;", f);
		else if ((unsigned char)*s >= 0x20)
			fputc(*s, f);
	}
}

static FILE *svg_open(const char *name, int w, int h, const char *title, const char *sub)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", env.plot_dir, name);
	f = fopen(path, "w");
	if (!f)
		return NULL;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", w, h, w, h);
	fprintf(f, "<title>");
	svg_esc(f, title);
	fprintf(f, "</title>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n",
		w, h);
	fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"15\" font-weight=\"bold\" "
		"text-anchor=\"middle\">", w / 2);
	svg_esc(f, title);
	fprintf(f, "</text>\n<text x=\"%d\" y=\"40\" fill=\"#555\" text-anchor=\"middle\">",
		w / 2);
	svg_esc(f, sub);
	fprintf(f, "</text>\n");
	return f;
}

static int svg_close(FILE *f)
{
	fprintf(f, "</svg>\n");
	return fclose(f) ? -errno : 0;
}

static double cx(const struct chart *c, double x)
{
	return c->L + (c->x1 > c->x0 ? (x - c->x0) / (c->x1 - c->x0) : 0) * c->W;
}

static double cy(const struct chart *c, double y)
{
	if (c->ylog)
		y = y > 0 ? log10(y) : c->y0;
	if (y < c->y0)
		y = c->y0;
	return c->T + c->H - (c->y1 > c->y0 ? (y - c->y0) / (c->y1 - c->y0) : 0) * c->H;
}

/* A round step giving about n ticks over span: 1, 2 or 5 x 10^k. */
static double nice_step(double span, int n)
{
	double raw = span / n, p = pow(10, floor(log10(raw))), m = raw / p;

	return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void fmt_num(char *buf, size_t sz, double v)
{
	double a = fabs(v);

	if (a >= 1e9)
		snprintf(buf, sz, "%.3gG", v / 1e9);
	else if (a >= 1e6)
		snprintf(buf, sz, "%.3gM", v / 1e6);
	else if (a >= 1e4)
		snprintf(buf, sz, "%.3gk", v / 1e3);
	else
		snprintf(buf, sz, "%.4g", v);
}

/* Frame, grid, ticks and labels; without xticks or yticks the caller labels that axis. */
static void svg_axes(const struct chart *c, const char *xlabel, const char *ylabel, bool xticks,
		     bool yticks)
{
	FILE *f = c->f;
	char b[32];

	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
		"stroke=\"#333\"/>\n", c->L, c->T, c->W, c->H);
	if (!yticks) {
		/* the caller's labels */
	} else if (c->ylog) {
		for (double e = ceil(c->y0); e <= c->y1 + 1e-9; e++) {
			double y = cy(c, pow(10, e));

			fmt_num(b, sizeof(b), pow(10, e));
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
				"stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
				"text-anchor=\"end\">%s</text>\n", c->L, y, c->L + c->W, y,
				c->L - 5, y + 4, b);
		}
	} else {
		double st = nice_step(c->y1 - c->y0, 5);

		for (double v = ceil(c->y0 / st) * st; v <= c->y1 + st * 1e-6; v += st) {
			double y = cy(c, v);

			fmt_num(b, sizeof(b), v);
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
				"stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
				"text-anchor=\"end\">%s</text>\n", c->L, y, c->L + c->W, y,
				c->L - 5, y + 4, b);
		}
	}
	if (xticks) {
		double st = nice_step(c->x1 - c->x0, 8);

		for (double v = ceil(c->x0 / st) * st; v <= c->x1 + st * 1e-6; v += st) {
			double x = cx(c, v);

			fmt_num(b, sizeof(b), v);
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
				"stroke=\"#333\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
				"text-anchor=\"middle\">%s</text>\n", x, c->T + c->H, x,
				c->T + c->H + 5, x, c->T + c->H + 18, b);
		}
	}
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", c->L + c->W / 2,
		c->T + c->H + 36);
	svg_esc(f, xlabel);
	fprintf(f, "</text>\n<text transform=\"translate(%.1f,%.1f) rotate(-90)\" "
		"text-anchor=\"middle\">", c->L - 58, c->T + c->H / 2);
	svg_esc(f, ylabel);
	fprintf(f, "</text>\n");
}

/* A dashed horizontal line at y, labelled at the right end. */
static void svg_hline(const struct chart *c, double y, const char *color, const char *label)
{
	double py = cy(c, y);

	fprintf(c->f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
		"stroke-width=\"1.5\" stroke-dasharray=\"6,4\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
		"fill=\"%s\" text-anchor=\"end\" stroke=\"white\" stroke-width=\"3\" "
		"paint-order=\"stroke\">", c->L, py, c->L + c->W, py, color,
		c->L + c->W - 4, py - 4, color);
	svg_esc(c->f, label);
	fprintf(c->f, "</text>\n");
}

static void svg_legend(const struct chart *c, int i, const char *color, const char *label)
{
	double x = c->L + 10, y = c->T + 14 + 16 * i;

	fprintf(c->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"10\" fill=\"%s\"/>\n"
		"<text x=\"%.1f\" y=\"%.1f\">", x, y - 9, color, x + 16, y);
	svg_esc(c->f, label);
	fprintf(c->f, "</text>\n");
}

static void subtitle(const struct plan *pl, const struct results *r, char *buf, size_t sz)
{
	snprintf(buf, sz, "pid %d (%s), %.1f s watched, RAM %.0f MiB, bandwidth %.1f MiB/s, "
		 "downtime limit %.0f ms", pl->pid, pl->comm, pl->watched,
		 mib(pl->ram_pages * (double)pl->page_size), mib(r->p.bandwidth),
		 r->p.downtime_limit_ns / 1e6);
}

/* Dirty rate per epoch over watched time, with the bandwidth the precopy has. */
static int plot_rate(const struct plan *pl, const struct results *r)
{
	struct chart c = { .L = 80, .T = 55, .W = 680, .H = 320 };
	double top = 0, ps = pl->page_size, bw = mib(r->p.bandwidth);
	char sub[256];

	subtitle(pl, r, sub, sizeof(sub));
	c.f = svg_open("rate.svg", 800, 430, "Dirty rate over time", sub);
	if (!c.f)
		return -errno;
	for (size_t i = 0; i < pl->nr_eps; i++)
		if (pl->eps[i].len > 0 && mib(pl->eps[i].pages * ps / pl->eps[i].len) > top)
			top = mib(pl->eps[i].pages * ps / pl->eps[i].len);
	/* the bandwidth line shows when it is in the same range as the rate */
	if (bw < 4 * (top ?: 1) && bw > top)
		top = bw;
	c.x1 = pl->watched;
	c.y1 = top > 0 ? top * 1.1 : 1;
	svg_axes(&c, "watched time (s)", "dirtied (MiB/s of distinct pages)", true, true);
	fprintf(c.f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" "
		"points=\"");
	for (size_t i = 0; i < pl->nr_eps; i++) {
		const struct ep *e = &pl->eps[i];
		double v = e->len > 0 ? mib(e->pages * ps / e->len) : 0;

		fprintf(c.f, "%.1f,%.1f %.1f,%.1f ", cx(&c, e->t0), cy(&c, v),
			cx(&c, e->t0 + e->len), cy(&c, v));
	}
	fprintf(c.f, "\"/>\n");
	if (bw <= c.y1)
		svg_hline(&c, bw, "#d62728", "migration bandwidth");
	svg_legend(&c, 0, "#1f77b4", "distinct pages dirtied per epoch");
	return svg_close(c.f);
}

/* Light yellow to dark red through orange, t in 0..1. */
static void heat_color(double t, char *buf, size_t sz)
{
	static const double stops[3][3] = { { 255, 237, 160 }, { 253, 141, 60 }, { 128, 0, 38 } };
	int seg = t < 0.5 ? 0 : 1;
	double u = t < 0.5 ? t * 2 : (t - 0.5) * 2;
	int rgb[3];

	for (int k = 0; k < 3; k++)
		rgb[k] = (int)(stops[seg][k] + (stops[seg + 1][k] - stops[seg][k]) * u + 0.5);
	snprintf(buf, sz, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* The GFN at a position of the axis (slots end to end). */
static uint64_t axis_gfn(const struct plan *pl, uint64_t pos)
{
	for (size_t i = 0; i < pl->nr_slots; i++)
		if (pos < pl->slots[i].pos + pl->slots[i].npages)
			return pl->slots[i].base_gfn + (pos - pl->slots[i].pos);
	return pl->nr_slots ? pl->slots[pl->nr_slots - 1].base_gfn +
	       pl->slots[pl->nr_slots - 1].npages : 0;
}

/*
 * GFN ranges by time, in the spirit of DAMON's heatmap: a cell's colour is the share of its
 * range's pages dirtied per epoch, on a log scale (a 1-page write and a full range both show).
 */
static int plot_heatmap(const struct plan *pl, const struct results *r)
{
	struct chart c = { .L = 110, .T = 55, .W = 640, .H = 384 };
	size_t cols = pl->nr_eps < HEAT_COLS ? pl->nr_eps : HEAT_COLS, rows;
	double *cell, *neps, lo = 1.0 / pl->row_pages, cw, rh;
	char sub[256], col[16], b[32];

	subtitle(pl, r, sub, sizeof(sub));
	c.f = svg_open("heatmap.svg", 800, 520, "Dirtied GFN ranges over time", sub);
	if (!c.f)
		return -errno;
	rows = pl->axis_pages ? (pl->axis_pages + pl->row_pages - 1) / pl->row_pages : 0;
	cell = calloc(cols * HEAT_ROWS + 1, sizeof(*cell));
	neps = calloc(cols + 1, sizeof(*neps));
	if (!cell || !neps) {
		free(cell);
		free(neps);
		fclose(c.f);
		return -ENOMEM;
	}
	for (size_t i = 0; i < pl->nr_eps; i++) {
		const struct ep *e = &pl->eps[i];
		size_t k = pl->watched > 0 ? (e->t0 + e->len / 2) / pl->watched * cols : 0;

		k = k < cols ? k : cols - 1;
		neps[k]++;
		for (size_t y = 0; y < rows; y++)
			cell[k * HEAT_ROWS + y] += e->heat[y];
	}
	c.x1 = pl->watched;
	c.y0 = 0;
	c.y1 = rows ?: 1;
	cw = c.W / (cols ?: 1);
	rh = c.H / (rows ?: 1);
	fprintf(c.f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
		"fill=\"#f4f4f4\"/>\n", c.L, c.T, c.W, c.H);
	for (size_t k = 0; k < cols; k++) {
		for (size_t y = 0; y < rows; y++) {
			double v = neps[k] ? cell[k * HEAT_ROWS + y] / (neps[k] * pl->row_pages) : 0;
			double t;

			if (v <= 0)
				continue;
			t = lo < 1 ? (log10(v) - log10(lo)) / -log10(lo) : 1;
			heat_color(t < 0 ? 0 : t > 1 ? 1 : t, col, sizeof(col));
			/* row 0 (lowest GFNs) at the bottom */
			fprintf(c.f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
				"fill=\"%s\"/>\n", c.L + k * cw, c.T + c.H - (y + 1) * rh,
				cw + 0.05, rh + 0.05, col);
		}
	}
	svg_axes(&c, "watched time (s)", "", true, false);
	/* GFN labels at a few row boundaries */
	for (size_t y = 0; rows && y <= rows; y += rows / 8 ? rows / 8 : 1) {
		snprintf(b, sizeof(b), "0x%llx",
			 (unsigned long long)axis_gfn(pl, y * pl->row_pages));
		fprintf(c.f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
			c.L - 5, c.T + c.H - y * rh + 4, b);
	}
	fprintf(c.f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" "
		"text-anchor=\"middle\">GFN (logged memslots end to end, %llu pages a row)"
		"</text>\n", c.L - 90, c.T + c.H / 2, (unsigned long long)pl->row_pages);
	/* the colour scale */
	for (int i = 0; i < 10; i++) {
		heat_color(i / 9.0, col, sizeof(col));
		fprintf(c.f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"12\" fill=\"%s\"/>\n",
			c.L + c.W + 16, c.T + c.H - 12 * (i + 1), col);
	}
	fprintf(c.f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">1 page</text>\n"
		"<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\">all</text>\n", c.L + c.W + 8,
		c.T + c.H + 12, c.L + c.W + 14, c.T + c.H - 124);
	free(cell);
	free(neps);
	return svg_close(c.f);
}

/* Distinct pages over windows of 1, 2, 4 ... s, against the precopy threshold. */
static int plot_wss(const struct plan *pl, const struct results *r)
{
	struct chart c = { .L = 80, .T = 55, .W = 680, .H = 320 };
	double top = 0, thr = r->a.precopy.threshold_bytes / (double)pl->page_size;
	char sub[256], b[32];

	subtitle(pl, r, sub, sizeof(sub));
	c.f = svg_open("wss.svg", 800, 430, "Writable working set", sub);
	if (!c.f)
		return -errno;
	for (size_t i = 0; i < r->nr_wss; i++)
		top = r->wss[i].max_pages > top ? r->wss[i].max_pages : top;
	if (thr > top && thr < 4 * (top ?: 1))
		top = thr;
	/* windows double: a log2 axis spaces them evenly, the whole recording at its length */
	c.x0 = r->nr_wss ? log2(r->wss[0].window_s) : 0;
	c.x1 = r->nr_wss ? log2(r->wss[r->nr_wss - 1].window_s) : 1;
	c.y1 = top > 0 ? top * 1.1 : 1;
	svg_axes(&c, "window (s, log scale)", "distinct pages dirtied", false, true);
	for (size_t i = 0; i < r->nr_wss; i++) {
		double x = cx(&c, log2(r->wss[i].window_s));

		/* the last point (the whole recording) may sit next to the one before it */
		if (i + 1 < r->nr_wss && i && cx(&c, log2(r->wss[i + 1].window_s)) - x < 30)
			continue;

		snprintf(b, sizeof(b), "%.3g", r->wss[i].window_s);
		fprintf(c.f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>"
			"\n<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x,
			c.T + c.H, x, c.T + c.H + 5, x, c.T + c.H + 18, b);
	}
	for (int s = 0; s < 2; s++) {
		const char *color = s ? "#d62728" : "#1f77b4";

		fprintf(c.f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
			color);
		for (size_t i = 0; i < r->nr_wss; i++)
			fprintf(c.f, "%.1f,%.1f ", cx(&c, log2(r->wss[i].window_s)),
				cy(&c, s ? r->wss[i].max_pages : r->wss[i].mean_pages));
		fprintf(c.f, "\"/>\n");
		for (size_t i = 0; i < r->nr_wss; i++)
			fprintf(c.f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
				cx(&c, log2(r->wss[i].window_s)),
				cy(&c, s ? r->wss[i].max_pages : r->wss[i].mean_pages), color);
	}
	if (thr <= c.y1)
		svg_hline(&c, thr, "#2ca02c", "precopy threshold (bandwidth x downtime limit)");
	svg_legend(&c, 0, "#1f77b4", "mean over windows");
	svg_legend(&c, 1, "#d62728", "max over windows");
	return svg_close(c.f);
}

/* Each precopy pass: pages sent and pages dirtied meanwhile, against the threshold. */
static int plot_precopy(const struct plan *pl, const struct results *r)
{
	const struct dt_plan_precopy *pc = &r->a.precopy;
	struct chart c = { .L = 80, .T = 55, .W = 680, .H = 320 };
	double thr = pc->threshold_bytes / (double)pl->page_size, top = thr, low = thr, bw;
	char sub[256], title[128], b[32];
	size_t step;

	subtitle(pl, r, sub, sizeof(sub));
	snprintf(title, sizeof(title), "Simulated precopy: %s after %zu iterations, %.2f s",
		 pc->converges ? "converges" : "does not converge", pc->nr_iters,
		 pc->total_seconds);
	c.f = svg_open("precopy.svg", 800, 430, title, sub);
	if (!c.f)
		return -errno;
	for (size_t i = 0; i < pc->nr_iters; i++) {
		double v[2] = { pc->iters[i].pages + pc->iters[i].zero_pages,
				pc->iters[i].dirtied };

		for (int k = 0; k < 2; k++) {
			top = v[k] > top ? v[k] : top;
			low = v[k] > 0 && v[k] < low ? v[k] : low;
		}
	}
	/* a log scale when iteration 0 (all of RAM) dwarfs the rest */
	c.ylog = top / (low > 0 ? low : 1) > 50;
	if (c.ylog) {
		c.y0 = floor(log10(low > 1 ? low : 1));
		c.y1 = ceil(log10(top * 1.05));
		if (c.y1 <= c.y0)
			c.y1 = c.y0 + 1;
	} else {
		c.y1 = top > 0 ? top * 1.1 : 1;
	}
	c.x0 = 0;
	c.x1 = pc->nr_iters ?: 1;
	svg_axes(&c, "iteration", c.ylog ? "pages (log scale)" : "pages", false, true);
	bw = c.W / (pc->nr_iters ?: 1);
	step = pc->nr_iters / 20 + 1;
	for (size_t i = 0; i < pc->nr_iters; i++) {
		double x = cx(&c, i), base = c.T + c.H;
		double sent = pc->iters[i].pages + pc->iters[i].zero_pages;
		double ys = cy(&c, sent), yd = cy(&c, pc->iters[i].dirtied);

		fprintf(c.f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
			"fill=\"#1f77b4\"><title>iteration %zu: %.0f pages sent in %.3f s"
			"</title></rect>\n", x + bw * 0.1, ys, bw * 0.4, base - ys, i, sent,
			pc->iters[i].seconds);
		fprintf(c.f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
			"fill=\"#ff7f0e\"><title>iteration %zu: %llu pages dirtied meanwhile"
			"</title></rect>\n", x + bw * 0.5, yd, bw * 0.4, base - yd, i,
			(unsigned long long)pc->iters[i].dirtied);
		if (i % step == 0) {
			snprintf(b, sizeof(b), "%zu", i);
			fprintf(c.f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
				x + bw / 2, base + 18, b);
		}
	}
	svg_hline(&c, thr, "#2ca02c", "threshold: bandwidth x downtime limit");
	svg_legend(&c, 0, "#1f77b4", "pages sent");
	svg_legend(&c, 1, "#ff7f0e", "pages dirtied meanwhile (sent next)");
	return svg_close(c.f);
}

static int plot_all(const struct plan *pl, const struct results *r)
{
	static const char *const names[] = { "rate.svg", "heatmap.svg", "wss.svg",
					      "precopy.svg" };
	int (*const fns[])(const struct plan *, const struct results *) = {
		plot_rate, plot_heatmap, plot_wss, plot_precopy,
	};

	if (mkdir(env.plot_dir, 0755) && errno != EEXIST)
		return fail("--plot: cannot create %s: %s", env.plot_dir, strerror(errno));
	for (size_t i = 0; i < 4; i++) {
		int err = fns[i](pl, r);

		if (err)
			return fail("--plot: cannot write %s/%s: %s", env.plot_dir, names[i],
				    strerror(-err));
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = doc,
					  .args_doc = "[FILE]" };
	struct plan pl = {};
	struct results *r;
	uint64_t ram_bytes = 0;
	uint32_t page_size = 4096;
	int ret;

	if (argp_parse(&argp, argc, argv, 0, NULL, NULL))
		return 64;
	r = calloc(1, sizeof(*r));
	if (!r)
		return fail("out of memory");
	dt_set_print(print_fn);
	ret = validate(&r->p, &ram_bytes, &page_size);
	if (!ret)
		ret = env.file ? load_file(&pl, ram_bytes, page_size) :
			load_live(&pl, ram_bytes, page_size);
	if (!ret)
		ret = compute(&pl, r);
	if (!ret && env.plot_dir)
		ret = plot_all(&pl, r);
	if (!ret) {
		if (env.json) {
			print_json(&pl, r);
		} else {
			print_text(&pl, r);
			if (env.plot_dir)
				printf("\nplots: %s/{rate,heatmap,wss,precopy}.svg\n",
				       env.plot_dir);
		}
	}
	dt_plan_advice__free(&r->a);
	free(r);
	plan_free(&pl);
	return ret;
}

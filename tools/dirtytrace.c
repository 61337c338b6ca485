// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* dirtytrace: list the KVM VMs on this host and the guest pages they dirty. */
#include <argp.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "common.h"
#include "exporter.h"

#define PROG "dirtytrace"

static struct env {
	int verbose;
	bool json;
	pid_t pid;
	double duration;	/* seconds, 0: until Ctrl-C */
	unsigned int interval_ms;
	unsigned int sources;
	size_t ringbuf;
	const char *cmd;
	const char *output;	/* record -o */
	bool events;		/* record/stream bin: each page's first-write timestamp */
	uint64_t trigger;	/* stream --trigger PAGES */
	bool bin;		/* stream --format bin */
	const char *socket;	/* stream --socket PATH */
	size_t client_buffer;	/* stream: bytes queued for one client before it is dropped */
	const char *file;	/* report FILE */
	const char *listen;	/* exporter --listen ADDR:PORT */
	unsigned int client_timeout_ms;	/* exporter: a scrape's whole exchange */
} env = { .interval_ms = 1000, .client_buffer = 16u << 20 };

static volatile sig_atomic_t exiting;

const char *argp_program_version = "dirtytrace 0.1.0";
static const char doc[] =
"Show which guest pages KVM VMs dirty, from eBPF, without touching the VMM.\n"
"\n"
"USAGE: dirtytrace [-v] COMMAND [OPTIONS]\n"
"\n"
"COMMANDS:\n"
"  vms                 list the VMs on this host (VMM pid, vCPUs, dirty ring, memslots)\n"
"  gfns -p PID         the sorted unique GFNs VM PID dirties, as hex as_id:gfn\n"
"  record -p PID -o F  record VM PID's dirty pages, epoch by epoch, into trace file F\n"
"  report F            what trace F says: rates, working sets, vCPU/slot shares, hot regions\n"
"  stream -p PID       every epoch's GFN list to stdout (--epoch-ms MS or --trigger PAGES;\n"
"                      --format json or bin)\n"
"  exporter            serve Prometheus metrics of every VM on /metrics (--listen ADDR:PORT,\n"
"                      default " EXP_DEFAULT_LISTEN ")\n"
"\n"
"EXAMPLES:\n"
"  dirtytrace vms --json          # every VM, as JSON\n"
"  dirtytrace gfns -p 1234 -d 5   # pages VM 1234 dirties in 5 s\n"
"  dirtytrace -v gfns -p 1234     # until Ctrl-C; -v says which event source is used\n"
"  dirtytrace record -p 1234 -d 60 -o vm.dtt && dirtytrace report vm.dtt\n"
"  dirtytrace exporter --listen :19555   # Prometheus metrics on every address\n";

static const struct argp_option opts[] = {
	{ "verbose", 'v', NULL, 0, "Say which event sources were tried and chosen (-vv: libbpf too)", 0 },
	{ "json", 'j', NULL, 0, "JSON output", 0 },
	{ "pid", 'p', "PID", 0, "VMM process to watch (gfns)", 0 },
	{ "duration", 'd', "SECONDS", 0, "Watch for this long (default: until Ctrl-C)", 0 },
	{ "interval", 'i', "MS", 0, "Epoch length; count = epochs a page was dirty in (1000)", 0 },
	{ "source", 's', "SRC", 0, "Only this page source: fentry, kprobe or ring", 0 },
	{ "ringbuf", 'r', "BYTES", 0, "BPF ring buffer size, a power of two (4194304)", 0 },
	{ "output", 'o', "FILE", 0, "record: the trace file to write", 0 },
	{ "events", 'e', NULL, 0, "record, stream --format bin: keep each page's first-write "
	  "time in the epoch (24 bytes a page instead of 16)", 0 },
	{ "epoch-ms", 'E', "MS", 0, "stream: an epoch every MS (same as -i)", 0 },
	{ "trigger", 'T', "PAGES", 0, "stream: end an epoch when the VM has dirtied PAGES "
	  "(or after -i/--epoch-ms at the latest)", 0 },
	{ "format", 'F', "FMT", 0, "stream: json (default) or bin (trace blocks)", 0 },
	{ "socket", 'S', "PATH", 0, "stream: serve clients on this UNIX socket (mode 0600) "
	  "instead of stdout", 0 },
	{ "client-buffer", 'B', "BYTES", 0, "stream: drop a client with more than this queued "
	  "(16777216)", 0 },
	{ "listen", 'L', "ADDR:PORT", 0, "exporter: serve /metrics here (" EXP_DEFAULT_LISTEN
	  "; :PORT: every address)", 0 },
	{ "client-timeout", 'C', "SECONDS", 0, "exporter: close a connection not done within this "
	  "(10)", 0 },
	{ NULL, 'h', NULL, OPTION_HIDDEN, "Show this help", 0 },
	{},
};

static void die_usage(struct argp_state *state, const char *fmt, const char *arg)
{
	fprintf(stderr, PROG ": ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	argp_usage(state);
}

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	char *end;

	switch (key) {
	case 'v':
		env.verbose++;
		break;
	case 'j':
		env.json = true;
		break;
	case 'p':
		errno = 0;
		env.pid = strtol(arg, &end, 10);
		if (errno || *end || env.pid <= 0)
			die_usage(state, "invalid pid: %s", arg);
		break;
	case 'd':
		errno = 0;
		env.duration = strtod(arg, &end);
		if (errno || *end || env.duration <= 0)
			die_usage(state, "invalid duration: %s", arg);
		break;
	case 'i':
		errno = 0;
		env.interval_ms = strtoul(arg, &end, 10);
		if (errno || *end || !env.interval_ms)
			die_usage(state, "invalid interval: %s", arg);
		break;
	case 's':
		if (!strcmp(arg, "fentry"))
			env.sources = 1u << DT_SOURCE_FENTRY;
		else if (!strcmp(arg, "kprobe"))
			env.sources = 1u << DT_SOURCE_KPROBE;
		else if (!strcmp(arg, "ring"))
			env.sources = 1u << DT_SOURCE_RING_PUSH;
		else
			die_usage(state, "unknown source: %s (fentry, kprobe or ring)", arg);
		break;
	case 'r':
		errno = 0;
		env.ringbuf = strtoull(arg, &end, 0);
		if (errno || *end || env.ringbuf < 4096 || (env.ringbuf & (env.ringbuf - 1)))
			die_usage(state, "invalid ring buffer size: %s (a power of two >= 4096)", arg);
		break;
	case 'h':
		argp_state_help(state, stderr, ARGP_HELP_STD_HELP);
		break;
	case 'o':
		env.output = arg;
		break;
	case 'e':
		env.events = true;
		break;
	case 'E':
		errno = 0;
		env.interval_ms = strtoul(arg, &end, 10);
		if (errno || *end || !env.interval_ms)
			die_usage(state, "invalid epoch length: %s", arg);
		break;
	case 'T':
		errno = 0;
		env.trigger = strtoull(arg, &end, 10);
		if (errno || *end || !env.trigger)
			die_usage(state, "invalid trigger: %s (pages, > 0)", arg);
		break;
	case 'S':
		env.socket = arg;
		break;
	case 'B':
		errno = 0;
		env.client_buffer = strtoull(arg, &end, 0);
		if (errno || *end || env.client_buffer < 4096)
			die_usage(state, "invalid client buffer: %s (bytes, >= 4096)", arg);
		break;
	case 'F':
		if (strcmp(arg, "json") && strcmp(arg, "bin"))
			die_usage(state, "unknown format: %s (json or bin)", arg);
		env.bin = !strcmp(arg, "bin");
		break;
	case 'L':
		env.listen = arg;
		break;
	case 'C': {
		double secs;

		errno = 0;
		secs = strtod(arg, &end);
		if (errno || *end || secs < 0.1 || secs > 3600)
			die_usage(state, "invalid client timeout: %s (0.1 to 3600 seconds)", arg);
		env.client_timeout_ms = secs * 1000;
		break;
	}
	case ARGP_KEY_ARG:
		if (!env.cmd)
			env.cmd = arg;
		else if (!strcmp(env.cmd, "report") && !env.file)
			env.file = arg;
		else
			die_usage(state, "unexpected argument: %s", arg);
		break;
	case ARGP_KEY_END:
		if (!env.cmd)
			die_usage(state, "%s",
				  "missing command (vms, gfns, record, report, stream or exporter)");
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static int print_fn(enum dt_print_level level, const char *fmt, va_list ap)
{
	return tool_message(PROG, env.verbose, level, fmt, ap);
}

/* The tool's timers run in milliseconds. */
static uint64_t now_ms(void)
{
	return tool_now_ns() / 1000000;
}

static void sig_handler(int sig)
{
	exiting = 1;
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

/* The checks every command needs first. */
static int preflight(void)
{
	const char *why = tool_preflight();

	return why ? fail("%s", why) : 0;
}

static void print_vms_json(const struct dt_vm_list *l)
{
	printf("[");
	for (size_t i = 0; i < l->n; i++) {
		const struct dt_vm *vm = &l->vms[i];

		printf("%s{\"pid\":%d,\"comm\":", i ? "," : "", vm->pid);
		tool_json_str(vm->comm);
		printf(",\"kvm\":\"0x%llx\",\"fd\":%d,\"vcpus\":%u,\"ring_entries\":%u,"
		       "\"slots_logging\":%u,\"slots_known\":%s,\"slots_truncated\":%s,\"slots\":[",
		       (unsigned long long)vm->kvm, vm->fd, vm->nr_vcpus, vm->ring_entries,
		       vm->nr_slots_logging, vm->slots_known ? "true" : "false",
		       vm->slots_truncated ? "true" : "false");
		for (size_t j = 0; j < vm->nr_slots; j++) {
			const struct dt_slot *s = &vm->slots[j];

			printf("%s{\"as_id\":%u,\"id\":%u,\"base_gfn\":%llu,\"npages\":%llu,"
			       "\"flags\":%u,\"dirty_logging\":%s}", j ? "," : "", s->as_id, s->id,
			       (unsigned long long)s->base_gfn, (unsigned long long)s->npages,
			       s->flags, s->flags & DT_SLOT_LOG_DIRTY ? "true" : "false");
		}
		printf("],\"vcpu_threads\":[");
		for (size_t j = 0; j < vm->nr_threads; j++)
			printf("%s{\"id\":%d,\"tid\":%d}", j ? "," : "", vm->threads[j].id,
			       vm->threads[j].tid);
		printf("]}");
	}
	printf("]\n");
}

static void print_vms_text(const struct dt_vm_list *l)
{
	if (!l->n) {
		printf("no KVM VMs on this host\n");
		return;
	}
	printf("%-8s %-16s %-18s %5s %6s %5s %7s\n", "PID", "COMM", "KVM", "VCPUS", "RING",
	       "SLOTS", "LOGGING");
	for (size_t i = 0; i < l->n; i++) {
		const struct dt_vm *vm = &l->vms[i];
		char ring[16];

		if (vm->ring_entries)
			snprintf(ring, sizeof(ring), "%u", vm->ring_entries);
		else
			snprintf(ring, sizeof(ring), "bitmap");
		printf("%-8d %-16s %-18llx %5u %6s %5zu %7u\n", vm->pid, vm->comm,
		       (unsigned long long)vm->kvm, vm->nr_vcpus, ring, vm->nr_slots,
		       vm->nr_slots_logging);
		for (size_t j = 0; j < vm->nr_slots; j++) {
			const struct dt_slot *s = &vm->slots[j];

			char range[48];

			snprintf(range, sizeof(range), "0x%llx-0x%llx",
				 (unsigned long long)s->base_gfn,
				 (unsigned long long)(s->base_gfn + s->npages - 1));
			printf("  slot %u:%-5u gfn %-26s %10llu pages  logging %s\n", s->as_id, s->id,
			       range, (unsigned long long)s->npages,
			       s->flags & DT_SLOT_LOG_DIRTY ? "on" : "off");
		}
		if (!vm->slots_known)
			printf("  (memslots not readable on this kernel: needs 5.17+)\n");
		if (vm->slots_truncated)
			printf("  (more memslots than dirtytrace walks: list truncated)\n");
	}
}

static int cmd_vms(void)
{
	struct dt_vm_list *l;
	int err;

	err = dt_vms__discover(&l);
	if (err)
		return fail("failed to discover VMs: %s%s", strerror(-err), tool_err_hint(err));
	if (env.json)
		print_vms_json(l);
	else
		print_vms_text(l);
	dt_vm_list__free(l);
	return 0;
}

/* Pages over the whole run: epoch lists merged, count = epochs the page was dirty in. */
struct acc_page {
	struct dt_gfn g;
	uint64_t count;
};

struct acc {
	struct acc_page *v;
	size_t n;
};

/* Both lists are sorted the same way: a linear merge keeps memory to the dirty set. */
static int acc_merge(struct acc *a, const struct dt_epoch_vm *vm)
{
	struct acc_page *m = malloc((a->n + vm->nr_gfns + 1) * sizeof(*m));
	size_t i = 0, j = 0, n = 0;

	if (!m)
		return -ENOMEM;
	while (i < a->n || j < vm->nr_gfns) {
		int c = i == a->n ? 1 : j == vm->nr_gfns ? -1 : dt_gfn__cmp(&a->v[i].g, &vm->gfns[j]);

		if (c < 0) {
			m[n++] = a->v[i++];
		} else if (c > 0) {
			m[n].g = vm->gfns[j++];
			m[n++].count = 1;
		} else {
			m[n] = a->v[i++];
			m[n++].count++;
			j++;
		}
	}
	free(a->v);
	a->v = m;
	a->n = n;
	return 0;
}

static void print_gfns(const struct acc *a, const struct dt_tracer *t, uint64_t epochs)
{
	if (!env.json) {
		for (size_t i = 0; i < a->n; i++) {
			const struct dt_gfn *g = &a->v[i].g;

			if (g->gfn == DT_GFN_NONE)
				printf("%x:slot%u+%llx\n", g->as_id, g->slot,
				       (unsigned long long)g->offset);
			else
				printf("%x:%llx\n", g->as_id, (unsigned long long)g->gfn);
		}
		return;
	}
	printf("{\"pid\":%d,\"source\":\"%s\",\"epochs\":%llu,\"interval_ms\":%u,\"gfns\":[",
	       env.pid, dt_source__name(dt_tracer__source(t)), (unsigned long long)epochs,
	       env.interval_ms);
	for (size_t i = 0; i < a->n; i++) {
		const struct dt_gfn *g = &a->v[i].g;

		printf("%s{\"as_id\":%u,\"slot\":%u,\"offset\":%llu,", i ? "," : "", g->as_id,
		       g->slot, (unsigned long long)g->offset);
		if (g->gfn == DT_GFN_NONE)
			printf("\"gfn\":null,");
		else
			printf("\"gfn\":%llu,", (unsigned long long)g->gfn);
		printf("\"count\":%llu}", (unsigned long long)a->v[i].count);
	}
	printf("]}\n");
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

/* One watched VM: its discovery, the tracer on it, and a pidfd that tells when it exits. */
struct session {
	struct dt_vm_list *vms;
	const struct dt_vm *vm;
	struct dt_tracer *t;
	int pidfd;
	bool vm_exited;
};

static void session_close(struct session *s)
{
	dt_tracer__close(s->t);
	dt_vm_list__free(s->vms);
	if (s->pidfd >= 0)
		close(s->pidfd);
}

/* Checks -p, finds the VM and attaches; 0, or 1 after printing the one error line. */
static int session_open(struct session *s, const char *cmd)
{
	struct dt_tracer_opts o = { .sz = sizeof(o) };
	int err;

	memset(s, 0, sizeof(*s));
	s->pidfd = -1;
	if (!env.pid)
		return fail("%s needs -p PID (see 'dirtytrace vms')", cmd);
	if (kill(env.pid, 0) && errno == ESRCH)
		return fail("no process with pid %d", env.pid);
	err = dt_vms__discover(&s->vms);
	if (err)
		return fail("failed to discover VMs: %s%s", strerror(-err), tool_err_hint(err));
	s->vm = dt_vm_list__find(s->vms, env.pid);
	if (!s->vm) {
		session_close(s);
		return fail("pid %d is not a KVM VMM: it holds no kvm-vm file descriptor", env.pid);
	}
	if (env.verbose)
		fprintf(stderr, PROG ": watching pid %d (%s), %u vCPUs, %s\n", s->vm->pid,
			s->vm->comm, s->vm->nr_vcpus,
			s->vm->ring_entries ? "dirty ring" : "dirty bitmap");
	s->pidfd = pidfd_of(env.pid);
	o.pids = &env.pid;
	o.nr_pids = 1;
	o.sources = env.sources;
	o.ringbuf_bytes = env.ringbuf;
	s->t = dt_tracer__open(&o);
	if (!s->t) {
		err = -errno;
		session_close(s);
		return fail("failed to attach: %s%s", strerror(-err), tool_err_hint(err));
	}
	if (env.verbose)
		tool_print_probes(PROG, s->t);
	if (!s->vm->ring_entries && dt_tracer__source(s->t) == DT_SOURCE_RING_PUSH)
		fprintf(stderr, PROG ": warning: pid %d uses the dirty bitmap, which only "
			"fentry/kprobe see; expect no pages\n", env.pid);
	return 0;
}

/* Called with every epoch; vm is the watched VM's part of it, NULL when it dirtied nothing. */
typedef int (*epoch_fn)(const struct dt_epoch *e, const struct dt_epoch_vm *vm, void *ctx);

static int cut(struct session *s, epoch_fn fn, void *ctx)
{
	struct dt_epoch *e;
	int err;

	err = dt_tracer__cut(s->t, &e);
	if (err)
		return fail("failed to cut an epoch: %s", strerror(-err));
	err = fn(e, dt_epoch__vm(e, env.pid), ctx);
	dt_epoch__free(e);
	return err;
}

/* Cuts an epoch every -i ms until -d, Ctrl-C or the VM's exit; 0, or 1 after an error line. */
static int session_watch(struct session *s, epoch_fn fn, void *ctx)
{
	uint64_t end_ms = 0, next_cut, now = now_ms();
	int err;

	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);
	if (env.duration)
		end_ms = now + (uint64_t)(env.duration * 1000);
	next_cut = now + env.interval_ms;
	while (!exiting) {
		struct pollfd pfd[2] = {
			{ .fd = dt_tracer__fd(s->t), .events = POLLIN },
			{ .fd = s->pidfd, .events = POLLIN },
		};
		uint64_t wake = end_ms && end_ms < next_cut ? end_ms : next_cut;

		now = now_ms();
		err = poll(pfd, s->pidfd >= 0 ? 2 : 1, wake > now ? (int)(wake - now) : 0);
		if (err < 0 && errno != EINTR)
			return fail("poll: %s", strerror(errno));
		err = dt_tracer__poll(s->t, 0);
		if (err < 0 && err != -EINTR)
			return fail("failed to read the ring buffer: %s", strerror(-err));
		if (s->pidfd >= 0 && (pfd[1].revents & POLLIN)) {
			s->vm_exited = true;
			break;
		}
		now = now_ms();
		if (now >= next_cut) {
			if (cut(s, fn, ctx))
				return 1;
			next_cut = now + env.interval_ms;
		}
		if (end_ms && now >= end_ms)
			break;
	}
	/* the last, partial epoch: nothing seen is left behind */
	return cut(s, fn, ctx);
}

static void print_summary(const struct session *s, size_t pages, const char *extra)
{
	struct dt_stats st;

	if (dt_tracer__stats(s->t, &st))
		return;
	fprintf(stderr, PROG ": %zu pages, %llu raw events, %llu unique, %llu drops "
		"(%llu recovered, %llu lost), %llu epochs, source %s%s\n", pages,
		(unsigned long long)st.raw, (unsigned long long)st.unique,
		(unsigned long long)st.rb_drops, (unsigned long long)st.recovered,
		(unsigned long long)st.lost, (unsigned long long)st.epochs,
		dt_source__name(dt_tracer__source(s->t)), extra);
}

static int merge_epoch(const struct dt_epoch *e, const struct dt_epoch_vm *vm, void *acc)
{
	int err = vm ? acc_merge(acc, vm) : 0;

	return err ? fail("out of memory") : 0;
}

static int cmd_gfns(void)
{
	struct session s;
	struct acc acc = {};
	struct dt_stats st;
	int ret;

	if (session_open(&s, "gfns"))
		return 1;
	ret = session_watch(&s, merge_epoch, &acc);
	if (!ret) {
		dt_tracer__stats(s.t, &st);
		print_gfns(&acc, s.t, st.epochs);
		fflush(stdout);
		print_summary(&s, acc.n, "");
		if (s.vm_exited)
			ret = fail("VM pid %d exited during the run; pages until then are listed",
				   env.pid);
	}
	free(acc.v);
	session_close(&s);
	return ret;
}

/* ---- record: epochs into a trace file ---- */

struct recorder {
	struct session *s;
	int fd;
	void *buf;
	size_t len, cap;
	uint64_t last_raw, pages, epochs, bytes;
};

/* Writes all of buf; a full disk or a dead disk is an error the user must see. */
static int write_all(int fd, const void *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf = (const char *)buf + n;
		len -= n;
	}
	return 0;
}

/* Raw events since the last call: the tracer watches only this VM, so they are the VM's. */
static uint64_t raw_since(const struct session *s, uint64_t *last)
{
	struct dt_stats st;
	uint64_t d = 0;

	if (!dt_tracer__stats(s->t, &st)) {
		d = st.raw - *last;
		*last = st.raw;
	}
	return d;
}

static int record_epoch(const struct dt_epoch *e, const struct dt_epoch_vm *vm, void *ctx)
{
	struct recorder *r = ctx;
	struct dt_trace_epoch te = {
		.seq = e->seq, .start_ns = e->start_ns, .end_ns = e->end_ns,
		.recovered = vm ? vm->recovered : 0, .nr_gfns = vm ? vm->nr_gfns : 0,
		.gfns = vm ? vm->gfns : NULL, .events = env.events,
	};
	int err;

	te.raw = raw_since(r->s, &r->last_raw);
	r->len = 0;
	err = dt_trace__encode_epoch(&te, &r->buf, &r->len, &r->cap);
	err = err ?: write_all(r->fd, r->buf, r->len);
	if (err)
		return fail("writing %s: %s; the trace is good up to epoch %llu", env.output,
			    strerror(-err), (unsigned long long)r->epochs);
	r->pages += te.nr_gfns;
	r->epochs++;
	r->bytes += r->len;
	return 0;
}

static int cmd_record(void)
{
	struct recorder r = { .fd = -1 };
	struct dt_trace_header h = { .version = DT_TRACE_VERSION, .page_size = 4096, .clock = 1 };
	struct session s;
	struct timespec mono, wall;
	char extra[160];
	int err, ret = 1;

	if (!env.output)
		return fail("record needs -o FILE");
	if (session_open(&s, "record"))
		return 1;
	r.s = &s;
	r.fd = open(env.output, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (r.fd < 0) {
		fail("cannot create %s: %s", env.output, strerror(errno));
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &wall);
	h.source = dt_tracer__source(s.t);
	h.start_ns = (uint64_t)mono.tv_sec * 1000000000ull + mono.tv_nsec;
	h.start_unix_ns = (uint64_t)wall.tv_sec * 1000000000ull + wall.tv_nsec;
	h.pid = s.vm->pid;
	h.nr_vcpus = s.vm->nr_vcpus;
	h.ring_entries = s.vm->ring_entries;
	h.kvm = s.vm->kvm;
	memcpy(h.comm, s.vm->comm, sizeof(h.comm));
	h.nr_slots = s.vm->nr_slots;
	h.slots = s.vm->slots;
	err = dt_trace__encode_header(&h, &r.buf, &r.len, &r.cap);
	err = err ?: write_all(r.fd, r.buf, r.len);
	if (err) {
		fail("writing %s: %s", env.output, strerror(-err));
		goto out;
	}
	r.bytes = r.len;
	if (session_watch(&s, record_epoch, &r))
		goto out;
	if (fsync(r.fd) && errno != EINVAL) {
		fail("writing %s: %s", env.output, strerror(errno));
		goto out;
	}
	snprintf(extra, sizeof(extra), "; %s: %llu bytes, %.1f bytes per page", env.output,
		 (unsigned long long)r.bytes, r.pages ? (double)r.bytes / r.pages : 0.0);
	print_summary(&s, r.pages, extra);
	ret = s.vm_exited ? fail("VM pid %d exited during the run; the trace holds it until then",
				 env.pid) : 0;
out:
	if (r.fd >= 0)
		close(r.fd);
	free(r.buf);
	session_close(&s);
	return ret;
}

/* ---- stream: every epoch's list to stdout or to the clients of a UNIX socket ---- */

/* A socket client: what it has not read yet waits in q (at most --client-buffer bytes). */
struct client {
	int fd;
	unsigned id;
	char *q;
	size_t len, cap;
};

struct streamer {
	struct session *s;
	void *buf, *hdr;
	size_t len, cap, hdr_len;
	bool triggered;		/* this epoch ended on the trigger */
	uint64_t epochs, pages, last_raw;
	int lfd;		/* --socket: listening, -1 for stdout */
	struct client *cl;
	size_t nr_cl, cap_cl;
	unsigned next_id;
};

static void client_drop(struct streamer *st, size_t i, const char *why)
{
	if (why)
		fprintf(stderr, PROG ": dropped stream client %u: %s\n", st->cl[i].id, why);
	close(st->cl[i].fd);
	free(st->cl[i].q);
	st->cl[i] = st->cl[--st->nr_cl];
}

/* Queues data for client i and writes what the socket takes now; never blocks. */
static void client_send(struct streamer *st, size_t i, const void *data, size_t len)
{
	struct client *c = &st->cl[i];
	char why[96];
	ssize_t n;

	if (c->len + len > env.client_buffer) {
		/* a slow reader must not stall the harvester or the other clients */
		snprintf(why, sizeof(why), "it fell %zu bytes behind (--client-buffer)",
			 c->len + len);
		client_drop(st, i, why);
		return;
	}
	if (c->len + len > c->cap) {
		size_t ncap = c->cap ? c->cap : 65536;
		char *nq;

		while (ncap < c->len + len)
			ncap *= 2;
		nq = realloc(c->q, ncap);
		if (!nq) {
			client_drop(st, i, "out of memory");
			return;
		}
		c->q = nq;
		c->cap = ncap;
	}
	memcpy(c->q + c->len, data, len);
	c->len += len;
	while (c->len) {
		n = send(c->fd, c->q, c->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;	/* the rest goes with the next epoch */
		if (n <= 0) {
			client_drop(st, i, env.verbose ? "disconnected" : NULL);
			return;
		}
		memmove(c->q, c->q + n, c->len - n);
		c->len -= n;
	}
}

static void accept_clients(struct streamer *st)
{
	for (;;) {
		int fd = accept4(st->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct client *c;

		if (fd < 0)
			return;	/* EAGAIN: nobody else is waiting */
		if (st->nr_cl == st->cap_cl) {
			size_t ncap = st->cap_cl ? st->cap_cl * 2 : 8;
			struct client *nc = realloc(st->cl, ncap * sizeof(*nc));

			if (!nc) {
				close(fd);
				return;
			}
			st->cl = nc;
			st->cap_cl = ncap;
		}
		c = &st->cl[st->nr_cl++];
		*c = (struct client){ .fd = fd, .id = st->next_id++ };
		if (env.verbose)
			fprintf(stderr, PROG ": stream client %u connected\n", c->id);
		if (st->hdr_len)	/* bin: every client's stream is a whole trace */
			client_send(st, st->nr_cl - 1, st->hdr, st->hdr_len);
	}
}

/* One epoch's bytes to stdout, or to every client. */
static int emit(struct streamer *st, const void *data, size_t len)
{
	int err;

	if (st->lfd < 0) {
		err = write_all(STDOUT_FILENO, data, len);
		return err ? fail("writing the stream: %s", strerror(-err)) : 0;
	}
	accept_clients(st);
	for (size_t i = st->nr_cl; i-- > 0; )
		client_send(st, i, data, len);
	return 0;
}

static int stream_epoch(const struct dt_epoch *e, const struct dt_epoch_vm *vm, void *ctx)
{
	struct streamer *st = ctx;
	size_t n = vm ? vm->nr_gfns : 0;
	char *json = NULL;
	size_t json_len = 0;
	FILE *f;
	int err;

	st->epochs++;
	st->pages += n;
	if (env.bin) {
		struct dt_trace_epoch te = {
			.seq = e->seq, .start_ns = e->start_ns, .end_ns = e->end_ns,
			.recovered = vm ? vm->recovered : 0, .nr_gfns = n,
			.gfns = vm ? vm->gfns : NULL, .raw = raw_since(st->s, &st->last_raw),
			.events = env.events,
		};

		st->len = 0;
		err = dt_trace__encode_epoch(&te, &st->buf, &st->len, &st->cap);
		return err ? fail("out of memory") : emit(st, st->buf, st->len);
	}
	f = open_memstream(&json, &json_len);
	if (!f)
		return fail("out of memory");
	fprintf(f, "{\"seq\":%llu,\"start_ns\":%llu,\"end_ns\":%llu,\"pid\":%d,\"trigger\":%s,"
		"\"recovered\":%llu,\"gfns\":[", (unsigned long long)e->seq,
		(unsigned long long)e->start_ns, (unsigned long long)e->end_ns, env.pid,
		st->triggered ? "true" : "false", (unsigned long long)(vm ? vm->recovered : 0));
	for (size_t i = 0; i < n; i++) {
		const struct dt_gfn *g = &vm->gfns[i];

		if (g->gfn == DT_GFN_NONE)
			fprintf(f, "%s[%u,null,%u,%llu]", i ? "," : "", g->as_id, g->slot,
				(unsigned long long)g->offset);
		else
			fprintf(f, "%s[%u,%llu]", i ? "," : "", g->as_id,
				(unsigned long long)g->gfn);
	}
	fprintf(f, "]}\n");
	if (fclose(f)) {
		free(json);
		return fail("out of memory");
	}
	err = emit(st, json, json_len);
	free(json);
	return err;
}

/* --socket: refuses a path in use; the socket is the owner's alone (0600). */
static int open_socket(struct streamer *st)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	mode_t old;
	int err;

	if (strlen(env.socket) >= sizeof(addr.sun_path))
		return fail("socket path too long: %s", env.socket);
	if (!access(env.socket, F_OK))
		return fail("socket path %s is taken (remove it if no stream serves it)",
			    env.socket);
	strcpy(addr.sun_path, env.socket);
	st->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (st->lfd < 0)
		return fail("socket: %s", strerror(errno));
	old = umask(0177);
	err = bind(st->lfd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old);
	if (err || listen(st->lfd, 16)) {
		err = errno;
		close(st->lfd);
		st->lfd = -1;
		return fail("cannot serve on %s: %s", env.socket, strerror(err));
	}
	return 0;
}

/*
 * At the end, what each client still has queued is delivered before its socket closes: up to
 * 2 s in all, so a client that stopped reading cannot hold the exit.
 */
static void flush_clients(struct streamer *st)
{
	uint64_t end = now_ms() + 2000;

	for (size_t i = st->nr_cl; i-- > 0; ) {
		struct client *c = &st->cl[i];

		while (c->len && now_ms() < end) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
			ssize_t n;

			if (poll(&pfd, 1, (int)(end - now_ms())) <= 0)
				break;
			n = send(c->fd, c->q, c->len, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n <= 0 && errno != EAGAIN && errno != EINTR)
				break;
			if (n > 0) {
				memmove(c->q, c->q + n, c->len - n);
				c->len -= n;
			}
		}
		if (c->len)
			fprintf(stderr, PROG ": stream client %u left %zu bytes unread at exit\n",
				c->id, c->len);
	}
}

static void close_socket(struct streamer *st)
{
	if (st->lfd < 0)
		return;
	flush_clients(st);
	while (st->nr_cl)
		client_drop(st, st->nr_cl - 1, NULL);
	free(st->cl);
	close(st->lfd);
	unlink(env.socket);
}

/* --trigger: an epoch ends when the VM reaches the page budget, or after -i at the latest. */
static int stream_by_trigger(struct session *s, struct streamer *st)
{
	uint64_t end_ms = env.duration ? now_ms() + (uint64_t)(env.duration * 1000) : 0;
	struct pollfd pfd = { .fd = s->pidfd, .events = POLLIN };

	dt_tracer__set_trigger(s->t, env.trigger, false);
	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);
	while (!exiting && (!end_ms || now_ms() < end_ms)) {
		struct dt_trigger tr;
		int err = dt_tracer__wait_trigger(s->t, env.interval_ms, &tr);

		if (err && err != -ETIMEDOUT)
			return fail("waiting for the trigger: %s", strerror(-err));
		st->triggered = !err;
		if (cut(s, stream_epoch, st))
			return 1;
		if (s->pidfd >= 0 && poll(&pfd, 1, 0) > 0) {
			s->vm_exited = true;
			break;
		}
	}
	st->triggered = false;
	return cut(s, stream_epoch, st);
}

static int cmd_stream(void)
{
	struct streamer st = { .lfd = -1 };
	struct session s;
	char extra[96];
	int ret = 1;

	if (env.events && !env.bin)
		return fail("--events needs --format bin (JSON lines carry no timestamps)");
	if (session_open(&s, "stream"))
		return 1;
	st.s = &s;
	signal(SIGPIPE, SIG_IGN);	/* a reader that goes away is a write error, said once */
	if (env.socket && open_socket(&st))
		goto out;
	if (env.bin) {
		struct dt_trace_header h = {
			.version = DT_TRACE_VERSION, .page_size = 4096, .clock = 1,
			.source = dt_tracer__source(s.t), .start_ns = now_ms() * 1000000,
			.pid = s.vm->pid, .nr_vcpus = s.vm->nr_vcpus,
			.ring_entries = s.vm->ring_entries, .kvm = s.vm->kvm,
			.nr_slots = s.vm->nr_slots, .slots = s.vm->slots,
		};
		size_t cap = 0;

		memcpy(h.comm, s.vm->comm, sizeof(h.comm));
		if (dt_trace__encode_header(&h, &st.hdr, &st.hdr_len, &cap)) {
			fail("out of memory");
			goto out;
		}
		/* stdout gets it now; a socket client when it connects */
		if (st.lfd < 0 && emit(&st, st.hdr, st.hdr_len))
			goto out;
	}
	ret = env.trigger ? stream_by_trigger(&s, &st) : session_watch(&s, stream_epoch, &st);
	if (!ret) {
		snprintf(extra, sizeof(extra), "; %llu epochs streamed%s",
			 (unsigned long long)st.epochs, st.lfd >= 0 ? " to the socket" : "");
		print_summary(&s, st.pages, extra);
		if (s.vm_exited)
			ret = fail("VM pid %d exited during the run; its epochs until then were "
				   "streamed", env.pid);
	}
out:
	close_socket(&st);
	free(st.buf);
	free(st.hdr);
	session_close(&s);
	return ret;
}

/* ---- report: what a trace file says ---- */

struct share {
	int64_t key;
	uint64_t pages;
};

static int share_add(struct share **v, size_t *n, size_t *cap, int64_t key, uint64_t pages)
{
	for (size_t i = 0; i < *n; i++) {
		if ((*v)[i].key == key) {
			(*v)[i].pages += pages;
			return 0;
		}
	}
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct share *nv = realloc(*v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = (struct share){ key, pages };
	return 0;
}

static int cmp_share_desc(const void *a, const void *b)
{
	const struct share *x = a, *y = b;

	return x->pages < y->pages ? 1 : x->pages > y->pages ? -1 : (x->key > y->key) - (x->key < y->key);
}

static int cmp_share_key(const void *a, const void *b)
{
	const struct share *x = a, *y = b;

	return (x->key > y->key) - (x->key < y->key);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
	return n ? v[(size_t)(p * (n - 1) + 0.5)] : 0;
}

#define REGION_SHIFT 9	/* 2 MiB of 4 KiB pages */

struct report {
	uint64_t epochs, raw, page_epochs, first_ns, last_ns, wss_max[3];
	uint64_t event_epochs;	/* epochs whose pages carry first-write times (record --events) */
	double *rates, *lens;	/* per epoch: pages/s, and its length */
	size_t nr_rates, cap_rates;
	struct share *vcpus, *slots, *regions;
	size_t nv, cv, ns, cs, nr, cr;
};

static int report_epoch(struct report *rp, struct dt_wss *wss, const struct dt_trace_epoch *e)
{
	static const uint64_t spans[3] = { 1000000000ull, 10000000000ull, 60000000000ull };
	double secs = e->end_ns > e->start_ns ? (e->end_ns - e->start_ns) / 1e9 : 0;

	if (!rp->epochs)
		rp->first_ns = e->start_ns;
	rp->last_ns = e->end_ns;
	rp->epochs++;
	rp->event_epochs += e->events;
	rp->raw += e->raw;
	rp->page_epochs += e->nr_gfns;
	if (secs > 0) {
		if (rp->nr_rates == rp->cap_rates) {
			size_t nc = rp->cap_rates ? rp->cap_rates * 2 : 64;
			double *nv = realloc(rp->rates, nc * sizeof(*nv));

			if (!nv)
				return -ENOMEM;
			rp->rates = nv;
			nv = realloc(rp->lens, nc * sizeof(*nv));
			if (!nv)
				return -ENOMEM;
			rp->lens = nv;
			rp->cap_rates = nc;
		}
		rp->lens[rp->nr_rates] = secs;
		rp->rates[rp->nr_rates++] = e->nr_gfns / secs;
	}
	if (dt_wss__add(wss, e->end_ns, e->gfns, e->nr_gfns))
		return -ENOMEM;	/* time order is the writer's; a damaged one fails its checksum */
	for (int i = 0; i < 3; i++) {
		uint64_t w = dt_wss__pages(wss, spans[i]);

		if (w > rp->wss_max[i])
			rp->wss_max[i] = w;
	}
	for (size_t i = 0; i < e->nr_gfns; i++) {
		const struct dt_gfn *g = &e->gfns[i];
		int64_t region = g->gfn == DT_GFN_NONE ? -1 :
				 (int64_t)((uint64_t)g->as_id << 48 | g->gfn >> REGION_SHIFT);

		if (share_add(&rp->vcpus, &rp->nv, &rp->cv, g->vcpu, 1) ||
		    share_add(&rp->slots, &rp->ns, &rp->cs, (int64_t)g->as_id << 16 | g->slot, 1) ||
		    (region >= 0 && share_add(&rp->regions, &rp->nr, &rp->cr, region, 1)))
			return -ENOMEM;
	}
	return 0;
}

/*
 * A short epoch (the last one of a recording, cut at Ctrl-C) counts each page once over less
 * time, so its unique rate runs high: rates of epochs shorter than half the median length are
 * left out of the percentiles. Leaves rp->rates sorted.
 */
static void rate_percentiles_prepare(struct report *rp)
{
	double *lens = malloc((rp->nr_rates ? rp->nr_rates : 1) * sizeof(double)), median;
	size_t n = 0;

	if (!lens) {	/* keep every epoch: no worse than before */
		qsort(rp->rates, rp->nr_rates, sizeof(*rp->rates), cmp_double);
		return;
	}
	memcpy(lens, rp->lens, rp->nr_rates * sizeof(double));
	qsort(lens, rp->nr_rates, sizeof(double), cmp_double);
	median = pct(lens, rp->nr_rates, 0.5);
	free(lens);
	for (size_t i = 0; i < rp->nr_rates; i++)
		if (rp->lens[i] >= median / 2)
			rp->rates[n++] = rp->rates[i];
	rp->nr_rates = n;
	qsort(rp->rates, rp->nr_rates, sizeof(*rp->rates), cmp_double);
}

static void print_report(const struct report *rp, const struct dt_trace_header *h,
			 struct dt_wss *wss, bool truncated)
{
	double secs = rp->last_ns > rp->first_ns ? (rp->last_ns - rp->first_ns) / 1e9 : 0;
	double p50 = pct(rp->rates, rp->nr_rates, 0.5), p90 = pct(rp->rates, rp->nr_rates, 0.9);
	double p99 = pct(rp->rates, rp->nr_rates, 0.99);
	double max = rp->nr_rates ? rp->rates[rp->nr_rates - 1] : 0;
	size_t top = rp->nr < 10 ? rp->nr : 10;

	if (env.json) {
		printf("{\"pid\":%d,\"comm\":", h->pid);
		tool_json_str(h->comm);
		printf(",\"vcpus\":%u,\"ring_entries\":%u,\"source\":\"%s\",\"start_unix\":%.3f,"
		       "\"truncated\":%s,\"duration_s\":%.3f,\"epochs\":%llu,\"event_epochs\":%llu,"
		       "\"raw_events\":%llu,"
		       "\"raw_per_s\":%.1f,\"page_epochs\":%llu,\"distinct_pages\":%llu,"
		       "\"rate_pages_per_s\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f},"
		       "\"wss_max_pages\":{\"1s\":%llu,\"10s\":%llu,\"60s\":%llu},\"vcpu_shares\":[",
		       h->nr_vcpus, h->ring_entries, dt_source__name(h->source),
		       h->start_unix_ns / 1e9, truncated ? "true" : "false", secs,
		       (unsigned long long)rp->epochs, (unsigned long long)rp->event_epochs,
		       (unsigned long long)rp->raw, secs ? rp->raw / secs : 0,
		       (unsigned long long)rp->page_epochs,
		       (unsigned long long)dt_wss__total(wss), p50, p90, p99, max,
		       (unsigned long long)rp->wss_max[0], (unsigned long long)rp->wss_max[1],
		       (unsigned long long)rp->wss_max[2]);
		for (size_t i = 0; i < rp->nv; i++)
			printf("%s{\"id\":%lld,\"pages\":%llu,\"share\":%.4f}", i ? "," : "",
			       (long long)rp->vcpus[i].key, (unsigned long long)rp->vcpus[i].pages,
			       (double)rp->vcpus[i].pages / rp->page_epochs);
		printf("],\"slot_shares\":[");
		for (size_t i = 0; i < rp->ns; i++)
			printf("%s{\"as_id\":%lld,\"slot\":%lld,\"pages\":%llu,\"share\":%.4f}",
			       i ? "," : "", (long long)(rp->slots[i].key >> 16),
			       (long long)(rp->slots[i].key & 0xffff),
			       (unsigned long long)rp->slots[i].pages,
			       (double)rp->slots[i].pages / rp->page_epochs);
		printf("],\"hot_regions\":[");
		for (size_t i = 0; i < top; i++)
			printf("%s{\"as_id\":%lld,\"gfn_start\":%llu,\"pages\":%llu,\"share\":%.4f}",
			       i ? "," : "", (long long)(rp->regions[i].key >> 48),
			       (unsigned long long)((rp->regions[i].key & ((1ll << 48) - 1))
						    << REGION_SHIFT),
			       (unsigned long long)rp->regions[i].pages,
			       (double)rp->regions[i].pages / rp->page_epochs);
		printf("]}\n");
		return;
	}
	printf("pid %d (%s), %u vCPUs, %s, source %s\n", h->pid, h->comm, h->nr_vcpus,
	       h->ring_entries ? "dirty ring" : "dirty bitmap", dt_source__name(h->source));
	printf("duration %.2f s, %llu epochs%s%s\n", secs, (unsigned long long)rp->epochs,
	       rp->event_epochs ? ", with first-write times" : "",
	       truncated ? " (recording cut short)" : "");
	printf("raw events %llu (%.0f/s); dirty pages %llu over all epochs, %llu distinct\n",
	       (unsigned long long)rp->raw, secs ? rp->raw / secs : 0,
	       (unsigned long long)rp->page_epochs, (unsigned long long)dt_wss__total(wss));
	printf("dirty rate, pages/s per epoch: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f\n", p50, p90,
	       p99, max);
	printf("writable working set, largest: 1s %llu  10s %llu  60s %llu pages\n",
	       (unsigned long long)rp->wss_max[0], (unsigned long long)rp->wss_max[1],
	       (unsigned long long)rp->wss_max[2]);
	printf("per vCPU:");
	for (size_t i = 0; i < rp->nv; i++)
		printf("  %lld %.1f%%", (long long)rp->vcpus[i].key,
		       100.0 * rp->vcpus[i].pages / rp->page_epochs);
	printf("\nper slot:");
	for (size_t i = 0; i < rp->ns; i++)
		printf("  %lld:%lld %.1f%%", (long long)(rp->slots[i].key >> 16),
		       (long long)(rp->slots[i].key & 0xffff),
		       100.0 * rp->slots[i].pages / rp->page_epochs);
	printf("\nhot 2 MiB regions (share of dirty pages):\n");
	for (size_t i = 0; i < top; i++) {
		uint64_t g = (rp->regions[i].key & ((1ll << 48) - 1)) << REGION_SHIFT;

		printf("  %lld:%llx-%llx  %5.1f%%\n", (long long)(rp->regions[i].key >> 48),
		       (unsigned long long)g, (unsigned long long)(g + (1 << REGION_SHIFT) - 1),
		       100.0 * rp->regions[i].pages / rp->page_epochs);
	}
}

static int cmd_report(void)
{
	struct report rp = {};
	struct dt_trace_reader *r;
	struct dt_trace_epoch e;
	struct dt_wss *wss = NULL;
	struct tool_trace tt;
	char why[512];
	int err, ret = 1;

	if (!env.file)
		return fail("report needs a FILE (made by 'dirtytrace record')");
	if (tool_trace_open(&tt, env.file, why, sizeof(why))) {
		fail("%s", why);
		goto out;
	}
	r = tt.r;
	wss = dt_wss__new(60000000000ull);
	if (!wss) {
		ret = fail("out of memory");
		goto out;
	}
	while ((err = dt_trace_reader__next(r, &e, why, sizeof(why))) > 0) {
		if (report_epoch(&rp, wss, &e)) {
			ret = fail("out of memory");
			goto out;
		}
	}
	if (err < 0) {
		ret = fail("%s: %s after %llu good epochs", env.file, why,
			   (unsigned long long)rp.epochs);
		goto out;
	}
	if (dt_trace_reader__truncated(r))
		fprintf(stderr, PROG ": warning: %s ends inside a block (recording cut short); "
			"read %llu whole epochs\n", env.file, (unsigned long long)rp.epochs);
	rate_percentiles_prepare(&rp);
	qsort(rp.vcpus, rp.nv, sizeof(*rp.vcpus), cmp_share_key);
	qsort(rp.slots, rp.ns, sizeof(*rp.slots), cmp_share_key);
	qsort(rp.regions, rp.nr, sizeof(*rp.regions), cmp_share_desc);
	print_report(&rp, dt_trace_reader__header(r), wss, dt_trace_reader__truncated(r));
	ret = 0;
out:
	free(rp.rates);
	free(rp.lens);
	free(rp.vcpus);
	free(rp.slots);
	free(rp.regions);
	dt_wss__free(wss);
	tool_trace_close(&tt);
	return ret;
}

/* ---- exporter: Prometheus metrics (tools/exporter.c) ---- */

static int cmd_exporter(void)
{
	struct exp_opts o = {
		.listen = env.listen, .interval_ms = env.interval_ms,
		.client_timeout_ms = env.client_timeout_ms, .sources = env.sources,
		.ringbuf = env.ringbuf, .verbose = env.verbose,
	};

	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);
	return exp_run(PROG, &o, &exiting);
}

static const struct cmd {
	const char *name;
	int (*fn)(void);
} cmds[] = {
	{ "vms", cmd_vms },
	{ "gfns", cmd_gfns },
	{ "record", cmd_record },
	{ "report", cmd_report },
	{ "stream", cmd_stream },
	{ "exporter", cmd_exporter },
};

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = doc };
	int err;

	err = argp_parse(&argp, argc, argv, 0, NULL, NULL);
	if (err)
		return 1;
	dt_set_print(print_fn);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (strcmp(env.cmd, cmds[i].name))
			continue;
		/* a file needs no BPF; the exporter checks its address first, then the rest */
		err = cmds[i].fn == cmd_report || cmds[i].fn == cmd_exporter ? 0 : preflight();
		return err ? err : cmds[i].fn();
	}
	return fail("unknown command '%s' (vms, gfns, record, report, stream or exporter)", env.cmd);
}

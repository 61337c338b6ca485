// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* dirtytrace: list the KVM VMs on this host and the guest pages they dirty. */
#include <argp.h>
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
} env = { .interval_ms = 1000 };

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
"\n"
"EXAMPLES:\n"
"  dirtytrace vms --json          # every VM, as JSON\n"
"  dirtytrace gfns -p 1234 -d 5   # pages VM 1234 dirties in 5 s\n"
"  dirtytrace -v gfns -p 1234     # until Ctrl-C; -v says which event source is used\n";

static const struct argp_option opts[] = {
	{ "verbose", 'v', NULL, 0, "Say which event sources were tried and chosen (-vv: libbpf too)", 0 },
	{ "json", 'j', NULL, 0, "JSON output", 0 },
	{ "pid", 'p', "PID", 0, "VMM process to watch (gfns)", 0 },
	{ "duration", 'd', "SECONDS", 0, "Watch for this long (default: until Ctrl-C)", 0 },
	{ "interval", 'i', "MS", 0, "Epoch length; count = epochs a page was dirty in (1000)", 0 },
	{ "source", 's', "SRC", 0, "Only this page source: fentry, kprobe or ring", 0 },
	{ "ringbuf", 'r', "BYTES", 0, "BPF ring buffer size, a power of two (4194304)", 0 },
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
	case ARGP_KEY_ARG:
		if (env.cmd)
			die_usage(state, "unexpected argument: %s", arg);
		env.cmd = arg;
		break;
	case ARGP_KEY_END:
		if (!env.cmd)
			die_usage(state, "%s", "missing command (vms or gfns)");
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static int print_fn(enum dt_print_level level, const char *fmt, va_list ap)
{
	if ((level == DT_INFO && env.verbose < 1) || (level == DT_DEBUG && env.verbose < 2))
		return 0;
	fprintf(stderr, PROG ": ");
	return vfprintf(stderr, fmt, ap);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sig_handler(int sig)
{
	exiting = 1;
}

/* One error line: to stderr, and as {"error": ...} on stdout in JSON mode. */
__attribute__((format(printf, 1, 2)))
static int fail(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, PROG ": %s\n", msg);
	if (env.json) {
		printf("{\"error\":");
		tool_json_str(msg);
		printf("}\n");
	}
	return 1;
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

/* Cuts an epoch and merges the watched VM's pages into acc. */
static int harvest(struct dt_tracer *t, struct acc *acc)
{
	const struct dt_epoch_vm *vm;
	struct dt_epoch *e;
	int err;

	err = dt_tracer__cut(t, &e);
	if (err)
		return err;
	vm = dt_epoch__vm(e, env.pid);
	err = vm ? acc_merge(acc, vm) : 0;
	dt_epoch__free(e);
	return err;
}

static int cmd_gfns(void)
{
	struct dt_tracer_opts o = { .sz = sizeof(o) };
	struct dt_tracer *t = NULL;
	struct dt_vm_list *vms = NULL;
	const struct dt_vm *vm;
	struct acc acc = {};
	struct dt_stats st;
	uint64_t end_ms = 0, next_cut, now;
	bool vm_exited = false;
	int err, pidfd = -1, ret = 1;

	if (!env.pid)
		return fail("gfns needs -p PID (see 'dirtytrace vms')");
	if (kill(env.pid, 0) && errno == ESRCH)
		return fail("no process with pid %d", env.pid);
	err = dt_vms__discover(&vms);
	if (err)
		return fail("failed to discover VMs: %s%s", strerror(-err), tool_err_hint(err));
	vm = dt_vm_list__find(vms, env.pid);
	if (!vm) {
		fail("pid %d is not a KVM VMM: it holds no kvm-vm file descriptor", env.pid);
		goto out;
	}
	if (env.verbose)
		fprintf(stderr, PROG ": watching pid %d (%s), %u vCPUs, %s\n", vm->pid, vm->comm,
			vm->nr_vcpus, vm->ring_entries ? "dirty ring" : "dirty bitmap");
	pidfd = pidfd_of(env.pid);

	o.pids = &env.pid;
	o.nr_pids = 1;
	o.sources = env.sources;
	o.ringbuf_bytes = env.ringbuf;
	t = dt_tracer__open(&o);
	if (!t) {
		err = -errno;
		fail("failed to attach: %s%s", strerror(-err), tool_err_hint(err));
		goto out;
	}
	if (env.verbose)
		tool_print_probes(PROG, t);
	if (!vm->ring_entries && dt_tracer__source(t) == DT_SOURCE_RING_PUSH)
		fprintf(stderr, PROG ": warning: pid %d uses the dirty bitmap, which only "
			"fentry/kprobe see; expect no pages\n", env.pid);

	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);
	now = now_ms();
	if (env.duration)
		end_ms = now + (uint64_t)(env.duration * 1000);
	next_cut = now + env.interval_ms;
	while (!exiting) {
		struct pollfd pfd[2] = {
			{ .fd = dt_tracer__fd(t), .events = POLLIN },
			{ .fd = pidfd, .events = POLLIN },
		};
		uint64_t wake = end_ms && end_ms < next_cut ? end_ms : next_cut;

		now = now_ms();
		err = poll(pfd, pidfd >= 0 ? 2 : 1, wake > now ? (int)(wake - now) : 0);
		if (err < 0 && errno != EINTR) {
			fail("poll: %s", strerror(errno));
			goto out;
		}
		err = dt_tracer__poll(t, 0);
		if (err < 0 && err != -EINTR) {
			fail("failed to read the ring buffer: %s", strerror(-err));
			goto out;
		}
		if (pidfd >= 0 && (pfd[1].revents & POLLIN)) {
			vm_exited = true;
			break;
		}
		now = now_ms();
		if (now >= next_cut) {
			err = harvest(t, &acc);
			if (err) {
				fail("failed to cut an epoch: %s", strerror(-err));
				goto out;
			}
			next_cut = now + env.interval_ms;
		}
		if (end_ms && now >= end_ms)
			break;
	}
	/* the last, partial epoch: nothing seen is left behind */
	err = harvest(t, &acc);
	if (err) {
		fail("failed to cut an epoch: %s", strerror(-err));
		goto out;
	}
	if (dt_tracer__stats(t, &st)) {
		fail("failed to read counters: %s", strerror(errno));
		goto out;
	}
	print_gfns(&acc, t, st.epochs);
	fflush(stdout);
	{
		fprintf(stderr, PROG ": %zu pages, %llu raw events, %llu unique, %llu drops "
			"(%llu recovered, %llu lost), %llu epochs, source %s\n", acc.n,
			(unsigned long long)st.raw, (unsigned long long)st.unique,
			(unsigned long long)st.rb_drops, (unsigned long long)st.recovered,
			(unsigned long long)st.lost, (unsigned long long)st.epochs,
			dt_source__name(dt_tracer__source(t)));
	}
	if (vm_exited) {
		fail("VM pid %d exited during the run; pages until then are listed", env.pid);
		goto out;
	}
	ret = 0;
out:
	free(acc.v);
	dt_tracer__close(t);
	dt_vm_list__free(vms);
	if (pidfd >= 0)
		close(pidfd);
	return ret;
}

static const struct cmd {
	const char *name;
	int (*fn)(void);
} cmds[] = {
	{ "vms", cmd_vms },
	{ "gfns", cmd_gfns },
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
		err = preflight();
		return err ? err : cmds[i].fn();
	}
	return fail("unknown command '%s' (vms or gfns)", env.cmd);
}

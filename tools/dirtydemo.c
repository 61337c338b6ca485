// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dirtydemo: a small VM that dirties memory in a known way, for trying dirtytrace and dirtytop
 * without a real guest. Runs on the project's own VMM (tests/vmm.c): a 32-bit guest writing the
 * pages it is told to, 45 instructions apart.
 */
#include <argp.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "vmm.h"

#define PROG "dirtydemo"
#define SLOT_GPA (16ull << 20)
#define WRITES_PER_EPOCH 1500	/* ~40 ms of guest time at this host's emulation speed */

static struct env {
	int vcpus;
	uint64_t pages;
	const char *pattern;
	uint32_t ring;
	double phase, duration;
	bool quiet;
} env = { .vcpus = 2, .pages = 16384, .pattern = "hotcold", .ring = 4096, .phase = 4 };

static volatile sig_atomic_t exiting;

const char *argp_program_version = "dirtydemo 0.1.0";
static const char doc[] =
"Run a demo VM that dirties memory in a known pattern (for dirtytop and dirtytrace).\n"
"\n"
"Patterns: hotcold (a hot set taking 80% of the writes, moving and resizing every phase),\n"
"random (uniform over all pages), seq (sweeps the pages in order).\n"
"\n"
"EXAMPLES:\n"
"  dirtydemo &                          # 2 vCPUs, hot/cold over 64 MiB, dirty ring\n"
"  dirtydemo --bitmap --pattern random  # a bitmap-mode VM\n";

static const struct argp_option opts[] = {
	{ "vcpus", 'c', "N", 0, "vCPUs (1-8, default 2)", 0 },
	{ "pages", 'P', "N", 0, "Guest pages the pattern spans (default 16384 = 64 MiB)", 0 },
	{ "pattern", 't', "NAME", 0, "hotcold, random or seq (default hotcold)", 0 },
	{ "ring", 'r', "ENTRIES", 0, "Dirty ring entries per vCPU (default 4096)", 0 },
	{ "bitmap", 'B', NULL, 0, "Use the dirty bitmap instead of the ring", 0 },
	{ "phase", 'f', "SECONDS", 0, "Seconds between phase changes (default 4)", 0 },
	{ "duration", 'd', "SECONDS", 0, "Stop after this long (default: until killed)", 0 },
	{ "quiet", 'q', NULL, 0, "Print nothing but errors", 0 },
	{},
};

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	char *end;

	errno = 0;
	switch (key) {
	case 'c':
		env.vcpus = strtol(arg, &end, 10);
		if (errno || *end || env.vcpus < 1 || env.vcpus > TVM_MAX_VCPUS)
			argp_error(state, "invalid vCPU count: %s", arg);
		break;
	case 'P':
		env.pages = strtoull(arg, &end, 0);
		if (errno || *end || env.pages < 16 || env.pages > (1ull << 20))
			argp_error(state, "invalid page count: %s (16 to 1048576)", arg);
		break;
	case 't':
		if (strcmp(arg, "hotcold") && strcmp(arg, "random") && strcmp(arg, "seq"))
			argp_error(state, "unknown pattern: %s", arg);
		env.pattern = arg;
		break;
	case 'r':
		env.ring = strtoul(arg, &end, 0);
		if (errno || *end || env.ring < 256 || (env.ring & (env.ring - 1)))
			argp_error(state, "invalid ring size: %s (a power of two >= 256)", arg);
		break;
	case 'B':
		env.ring = 0;
		break;
	case 'f':
		env.phase = strtod(arg, &end);
		if (errno || *end || env.phase <= 0)
			argp_error(state, "invalid phase: %s", arg);
		break;
	case 'd':
		env.duration = strtod(arg, &end);
		if (errno || *end || env.duration <= 0)
			argp_error(state, "invalid duration: %s", arg);
		break;
	case 'q':
		env.quiet = true;
		break;
	case ARGP_KEY_ARG:
		argp_error(state, "unexpected argument: %s", arg);
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static void sig_handler(int sig)
{
	exiting = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Phase p: the hot set moves through the span and alternates between 1/16 and 1/4 of it. */
static void fill(uint64_t *list, size_t n, int vcpu, int phase, uint64_t *seed, uint64_t *cursor)
{
	uint64_t size = env.pages * TVM_PAGE_SIZE;

	if (!strcmp(env.pattern, "random")) {
		tvm_pattern_random(list, n, SLOT_GPA, size, seed);
	} else if (!strcmp(env.pattern, "seq")) {
		tvm_pattern_seq(list, n, SLOT_GPA, size, *cursor);
		*cursor = (*cursor + n) % env.pages;
	} else {
		uint64_t hot = env.pages / (phase % 2 ? 4 : 16);
		uint64_t start = (phase * env.pages / 8 + vcpu * hot) % (env.pages - hot + 1);

		tvm_pattern_hotcold(list, n, SLOT_GPA, size, hot, 80, seed);
		/* shift the hot set to this phase's place */
		for (size_t i = 0; i < n; i++) {
			uint64_t page = (list[i] - SLOT_GPA) / TVM_PAGE_SIZE;

			if (page < hot)
				list[i] = SLOT_GPA + (start + page) * TVM_PAGE_SIZE;
		}
	}
}

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = doc };
	struct tvm_opts o = {};
	uint64_t *lists[TVM_MAX_VCPUS] = {}, seeds[TVM_MAX_VCPUS], cursors[TVM_MAX_VCPUS] = {};
	const uint64_t *clists[TVM_MAX_VCPUS];
	size_t counts[TVM_MAX_VCPUS];
	struct tvm_pages reaped = {};
	struct tvm *vm;
	double start, last_phase;
	int err, phase = 0, ret = 1;
	uint32_t iter = 0;

	if (argp_parse(&argp, argc, argv, 0, NULL, NULL))
		return 1;
	o.nr_vcpus = env.vcpus;
	o.ring_entries = env.ring;
	vm = tvm_create(&o);
	if (!vm) {
		fprintf(stderr, PROG ": failed to create the VM: %s%s\n", strerror(errno),
			errno == ENOENT || errno == EACCES ? " (needs /dev/kvm, as root)" : "");
		return 1;
	}
	err = tvm_add_slot(vm, 1, SLOT_GPA, env.pages * TVM_PAGE_SIZE, true);
	if (err) {
		fprintf(stderr, PROG ": failed to add guest memory: %s\n", strerror(-err));
		goto out;
	}
	for (int v = 0; v < env.vcpus; v++) {
		lists[v] = calloc(WRITES_PER_EPOCH, sizeof(uint64_t));
		if (!lists[v]) {
			fprintf(stderr, PROG ": out of memory\n");
			goto out;
		}
		clists[v] = lists[v];
		counts[v] = WRITES_PER_EPOCH;
		seeds[v] = 1 + v;
	}
	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);
	if (!env.quiet)
		fprintf(stderr, PROG ": pid %d, %d vCPUs, %llu pages at GFN 0x%llx, %s, pattern %s\n",
			getpid(), env.vcpus, (unsigned long long)env.pages,
			(unsigned long long)(SLOT_GPA >> 12),
			env.ring ? "dirty ring" : "dirty bitmap", env.pattern);
	start = last_phase = now_s();
	while (!exiting && (!env.duration || now_s() - start < env.duration)) {
		if (now_s() - last_phase >= env.phase) {
			phase++;
			last_phase = now_s();
		}
		for (int v = 0; v < env.vcpus; v++)
			fill(lists[v], WRITES_PER_EPOCH, v, phase, &seeds[v], &cursors[v]);
		err = tvm_run_epoch(vm, clists, counts, iter++);
		/* harvest like a VMM would, so the ring keeps moving */
		err = err ?: tvm_harvest(vm, &reaped);
		tvm_pages_clear(&reaped);
		if (err) {
			fprintf(stderr, PROG ": guest stopped: %s\n", strerror(-err));
			goto out;
		}
	}
	ret = 0;
out:
	tvm_pages_free(&reaped);
	for (int v = 0; v < env.vcpus; v++)
		free(lists[v]);
	tvm_destroy(vm);
	return ret;
}

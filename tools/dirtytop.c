// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* dirtytop: which VMs write memory how fast, live; per VM, vCPU and memslot. */
#include <argp.h>
#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <ncurses.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "common.h"

#define PROG "dirtytop"
#define MAX_PIDS 16
#define MAX_QMP 32

static struct env {
	double delay;
	bool batch, json, expand;
	long count;
	pid_t pids[MAX_PIDS];
	size_t nr_pids;
	int verbose;
	const char *qmp_args[MAX_QMP];
	size_t nr_qmp_args;
} env = { .delay = 1.0 };

static volatile sig_atomic_t exiting;
static bool curses_on;

const char *argp_program_version = "dirtytop 0.1.0";
static const char doc[] =
"Show live which KVM VMs dirty memory how fast: per VM, per vCPU, per memslot.\n"
"\n"
"USAGE: dirtytop [-b] [-d SECONDS] [-n COUNT] [-p PID[,PID...]] [--json]\n"
"\n"
"KEYS: q quit, < > or s sort column, I reverse, / filter, p pause, Enter or v vCPUs,\n"
"      m memslots, up/down select, ? help\n"
"\n"
"EXAMPLES:\n"
"  dirtytop                     # every VM, refreshed each second\n"
"  dirtytop -p 1234 -d 0.5      # one VM, twice a second\n"
"  dirtytop -b -n 5 -e          # five text reports with vCPU and memslot rows\n"
"  dirtytop --json -n 10        # ten JSON lines, one per interval\n"
"  dirtytop --qmp /run/vm1.qmp  # keep that QEMU's dirty logging on while watching\n";

static const struct argp_option opts[] = {
	{ "delay", 'd', "SECONDS", 0, "Refresh interval, fractions allowed (1)", 0 },
	{ "batch", 'b', NULL, 0, "Plain text, never clears the screen", 0 },
	{ "count", 'n', "COUNT", 0, "Stop after COUNT intervals", 0 },
	{ "pid", 'p', "PID[,PID]", 0, "Only these VMM processes", 0 },
	{ "json", 'j', NULL, 0, "One JSON object per interval, one line each", 0 },
	{ "expand", 'e', NULL, 0, "Batch: add vCPU and memslot rows", 0 },
	{ "verbose", 'v', NULL, 0, "Say which event sources were tried (-vv: libbpf too)", 0 },
	{ "qmp", 'Q', "PATH", 0, "QEMU QMP socket (or a directory of them): keep its dirty logging "
	  "on while watching, restore it at exit; repeatable", 0 },
	{},
};

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	char *end, *tok, *save;

	switch (key) {
	case 'd':
		errno = 0;
		env.delay = strtod(arg, &end);
		if (errno || *end || env.delay < 0.05 || env.delay > 3600)
			argp_error(state, "invalid delay: %s (0.05 to 3600 seconds)", arg);
		break;
	case 'b':
		env.batch = true;
		break;
	case 'n':
		errno = 0;
		env.count = strtol(arg, &end, 10);
		if (errno || *end || env.count <= 0)
			argp_error(state, "invalid count: %s", arg);
		break;
	case 'p':
		for (tok = strtok_r(arg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			long pid = strtol(tok, &end, 10);

			if (*end || pid <= 0)
				argp_error(state, "invalid pid: %s", tok);
			if (env.nr_pids == MAX_PIDS)
				argp_error(state, "at most %d pids", MAX_PIDS);
			env.pids[env.nr_pids++] = pid;
		}
		break;
	case 'j':
		env.json = true;
		break;
	case 'e':
		env.expand = true;
		break;
	case 'v':
		env.verbose++;
		break;
	case 'Q':
		if (env.nr_qmp_args == MAX_QMP)
			argp_error(state, "at most %d --qmp", MAX_QMP);
		env.qmp_args[env.nr_qmp_args++] = arg;
		break;
	case ARGP_KEY_ARG:
		argp_error(state, "unexpected argument: %s", arg);
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static int print_fn(enum dt_print_level level, const char *fmt, va_list ap)
{
	if (curses_on)
		return 0;	/* would tear the screen; -v is for batch runs */
	return tool_message(PROG, env.verbose, level, fmt, ap);
}

static void sig_handler(int sig)
{
	exiting = 1;
}

/* ---- names: QEMU's -name guest=NAME, else comm ---- */

static struct name_cache {
	pid_t pid;
	char name[64];
} names[64];

static void qemu_name(pid_t pid, char *out, size_t sz)
{
	struct name_cache *c = &names[pid % 64];

	if (c->pid != pid) {
		c->pid = pid;
		tool_qemu_name(pid, c->name, sizeof(c->name));
	}
	if (c->name[0])
		snprintf(out, sz, "%s", c->name);
}

static bool wanted(pid_t pid)
{
	if (!env.nr_pids)
		return true;
	for (size_t i = 0; i < env.nr_pids; i++)
		if (env.pids[i] == pid)
			return true;
	return false;
}

/* ---- sorting ---- */

enum col { C_PID, C_NAME, C_PAGES, C_RAW, C_WSS1, C_WSS10, C_WSS60, C_TOTAL, C_MAX };
static const char *const col_names[C_MAX] = {
	"PID", "NAME", "PAGES/s", "RAW/s", "WSS1s", "WSS10s", "WSS60s", "TOTAL",
};
static enum col sort_col = C_PAGES;
static bool sort_rev;	/* false: biggest first (names and pids: smallest first) */

static double col_val(const struct dt_top_vm *v, enum col c)
{
	switch (c) {
	case C_PID: return -v->pid;
	case C_PAGES: return v->pages_per_s;
	case C_RAW: return v->raw_per_s;
	case C_WSS1: return v->wss_1s;
	case C_WSS10: return v->wss_10s;
	case C_WSS60: return v->wss_60s;
	case C_TOTAL: return v->total_pages;
	default: return 0;
	}
}

static int cmp_vm(const void *pa, const void *pb)
{
	const struct dt_top_vm *a = *(const struct dt_top_vm *const *)pa;
	const struct dt_top_vm *b = *(const struct dt_top_vm *const *)pb;
	int r;

	if (sort_col == C_NAME) {
		r = strcmp(a->name, b->name);
	} else {
		double x = col_val(a, sort_col), y = col_val(b, sort_col);

		r = x > y ? -1 : x < y ? 1 : 0;
	}
	if (!r)
		r = a->pid < b->pid ? -1 : a->pid > b->pid;
	return sort_rev ? -r : r;
}

/* The frame's VMs that pass -p and the / filter, sorted; returns how many. */
static size_t visible(const struct dt_top_frame *f, const char *filter,
		      const struct dt_top_vm **out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < f->nr_vms && n < max; i++) {
		const struct dt_top_vm *v = &f->vms[i];
		char pid[16];

		if (!wanted(v->pid))
			continue;
		snprintf(pid, sizeof(pid), "%d", v->pid);
		if (filter && *filter && !strstr(v->name, filter) && strcmp(pid, filter))
			continue;
		out[n++] = v;
	}
	qsort(out, n, sizeof(*out), cmp_vm);
	return n;
}

/* ---- batch text and JSON ---- */

struct totals {
	const char *source;
	uint64_t drops, lost;
};

static void print_json(const struct dt_top_frame *f, const struct totals *t)
{
	const struct dt_top_vm *vms[256];
	size_t n = visible(f, NULL, vms, 256);
	struct timespec rt;

	clock_gettime(CLOCK_REALTIME, &rt);
	printf("{\"time\":%.3f,\"interval_s\":%.3f,\"source\":\"%s\",\"drops\":%llu,\"lost\":%llu,"
	       "\"vms\":[", rt.tv_sec + rt.tv_nsec / 1e9, f->interval_s, t->source,
	       (unsigned long long)t->drops, (unsigned long long)t->lost);
	for (size_t i = 0; i < n; i++) {
		const struct dt_top_vm *v = vms[i];

		printf("%s{\"pid\":%d,\"name\":", i ? "," : "", v->pid);
		tool_json_str(v->name);
		printf(",\"kvm\":\"0x%llx\",\"vcpus_online\":%u,\"ring_entries\":%u,\"tracking\":%s,"
		       "\"dirty_pages_per_s\":%.1f,\"dirty_bytes_per_s\":%.0f,"
		       "\"raw_events_per_s\":%.1f,\"wss_pages\":{\"1s\":%llu,\"10s\":%llu,"
		       "\"60s\":%llu},\"unique_pages_total\":%llu,\"drops\":%llu,\"vcpus\":[",
		       (unsigned long long)v->kvm, v->nr_vcpus, v->ring_entries,
		       v->tracking ? "true" : "false", v->pages_per_s, v->bytes_per_s, v->raw_per_s,
		       (unsigned long long)v->wss_1s, (unsigned long long)v->wss_10s,
		       (unsigned long long)v->wss_60s, (unsigned long long)v->total_pages,
		       (unsigned long long)v->drops);
		for (size_t j = 0; j < v->nr_vcpus_rows; j++) {
			const struct dt_top_vcpu *c = &v->vcpus[j];

			printf("%s{\"id\":%d,\"dirty_pages_per_s\":%.1f,\"raw_events_per_s\":%.1f,"
			       "\"ring_size\":%u,\"ring_used\":%u,\"ring_max_used\":%u,"
			       "\"ring_resets_per_s\":%.1f,\"ring_full_exits\":%llu,"
			       "\"ring_full_exits_per_s\":%.1f,\"ring_overflows\":%llu}",
			       j ? "," : "", c->id, c->pages_per_s, c->raw_per_s, c->ring_size,
			       c->ring_used, c->ring_max_used, c->ring_resets_per_s,
			       (unsigned long long)c->ring_full_exits, c->ring_full_exits_per_s,
			       (unsigned long long)c->ring_overflows);
		}
		printf("],\"slots\":[");
		for (size_t j = 0; j < v->nr_slots; j++) {
			const struct dt_top_slot *s = &v->slots[j];

			printf("%s{\"as_id\":%u,\"slot\":%u,\"base_gfn\":%llu,\"pages\":%llu,"
			       "\"dirty_logging\":%s,\"dirty_pages_per_s\":%.1f,\"share\":%.4f}",
			       j ? "," : "", s->as_id, s->id, (unsigned long long)s->base_gfn,
			       (unsigned long long)s->pages, s->logging ? "true" : "false",
			       s->pages_per_s, s->share);
		}
		printf("]}");
	}
	printf("]}\n");
	fflush(stdout);
}

static const char *tracking_hint =
	"dirty tracking is off: KVM marks nothing dirty until the VMM turns dirty logging on "
	"(QEMU: during migration, calc-dirty-rate, or set-vcpu-dirty-limit)";

static void vm_line(char *buf, size_t sz, const struct dt_top_vm *v)
{
	snprintf(buf, sz, "%8d %-16.16s %5u %5s %9.0f %8.1f %10.0f %8llu %8llu %8llu %9llu %6llu",
		 v->pid, v->name, v->nr_vcpus, v->tracking ? "on" : "off", v->pages_per_s,
		 v->bytes_per_s / (1 << 20), v->raw_per_s, (unsigned long long)v->wss_1s,
		 (unsigned long long)v->wss_10s, (unsigned long long)v->wss_60s,
		 (unsigned long long)v->total_pages, (unsigned long long)v->drops);
}

static const char *vm_header =
	"     PID NAME             VCPUS TRACK   PAGES/s    MiB/s      RAW/s    WSS1s   WSS10s"
	"   WSS60s     TOTAL  DROPS";

static void vcpu_line(char *buf, size_t sz, const struct dt_top_vcpu *c)
{
	char ring[32] = "-";

	if (c->ring_size)
		snprintf(ring, sizeof(ring), "%u/%u", c->ring_used, c->ring_size);
	snprintf(buf, sz, "    vcpu %-4d pages/s %9.0f  raw/s %10.0f  ring %-11s resets/s %6.0f  "
		 "full-exits/s %5.0f%s", c->id, c->pages_per_s, c->raw_per_s, ring,
		 c->ring_resets_per_s, c->ring_full_exits_per_s,
		 c->ring_overflows ? "  OVERFLOW: KVM overwrote ring entries" : "");
}

static void slot_line(char *buf, size_t sz, const struct dt_top_slot *s)
{
	char gfn[24];

	snprintf(gfn, sizeof(gfn), "0x%llx", (unsigned long long)s->base_gfn);
	snprintf(buf, sz, "    slot %u:%-5u gfn %-12s %10llu pages  log %-3s pages/s %9.0f  "
		 "share %5.1f%%", s->as_id, s->id, gfn, (unsigned long long)s->pages,
		 s->logging ? "on" : "off", s->pages_per_s, s->share * 100);
}

static void print_batch(const struct dt_top_frame *f, const struct totals *t)
{
	const struct dt_top_vm *vms[256];
	size_t n = visible(f, NULL, vms, 256);
	char line[256], when[32];
	time_t now = time(NULL);

	strftime(when, sizeof(when), "%H:%M:%S", localtime(&now));
	printf("dirtytop %s  interval %.2fs  source %s  drops %llu  lost %llu  VMs %zu\n", when,
	       f->interval_s, t->source, (unsigned long long)t->drops,
	       (unsigned long long)t->lost, n);
	printf("%s\n", vm_header);
	for (size_t i = 0; i < n; i++) {
		vm_line(line, sizeof(line), vms[i]);
		printf("%s\n", line);
		if (!vms[i]->tracking)
			printf("    %s\n", tracking_hint);
		for (size_t j = 0; env.expand && j < vms[i]->nr_vcpus_rows; j++) {
			vcpu_line(line, sizeof(line), &vms[i]->vcpus[j]);
			printf("%s\n", line);
		}
		for (size_t j = 0; env.expand && j < vms[i]->nr_slots; j++) {
			slot_line(line, sizeof(line), &vms[i]->slots[j]);
			printf("%s\n", line);
		}
	}
	printf("\n");
	fflush(stdout);
}

/* ---- interactive ---- */

static struct ui {
	char filter[64];
	bool paused, help, show_vcpus, show_slots;
	pid_t selected;
	int sel_idx;
} ui;

static void draw(const struct dt_top_frame *f, const struct totals *t)
{
	const struct dt_top_vm *vms[256];
	size_t n = visible(f, ui.filter, vms, 256);
	char line[256];
	int y = 0, rows = LINES;

	erase();
	mvprintw(y++, 0, "dirtytop - interval %.2fs - source %s - drops %llu lost %llu - %zu VMs%s",
		 f->interval_s, t->source, (unsigned long long)t->drops,
		 (unsigned long long)t->lost, n, ui.paused ? " - PAUSED" : "");
	mvprintw(y++, 0, "sort: %s%s%s%s   (q quit, ? help)", col_names[sort_col],
		 sort_rev ? " (reversed)" : "", ui.filter[0] ? "   filter: " : "", ui.filter);
	attron(A_REVERSE);
	mvprintw(y++, 0, "%-*s", COLS, vm_header);
	attroff(A_REVERSE);
	if (ui.sel_idx >= (int)n)
		ui.sel_idx = n ? n - 1 : 0;
	for (size_t i = 0; i < n && y < rows - 1; i++) {
		const struct dt_top_vm *v = vms[i];

		vm_line(line, sizeof(line), v);
		if ((int)i == ui.sel_idx) {
			ui.selected = v->pid;
			attron(A_BOLD | A_UNDERLINE);
		}
		mvprintw(y++, 0, "%.*s", COLS, line);
		attroff(A_BOLD | A_UNDERLINE);
		if (!v->tracking && y < rows - 1)
			mvprintw(y++, 4, "%.*s", COLS - 4, tracking_hint);
		if ((int)i != ui.sel_idx)
			continue;
		for (size_t j = 0; ui.show_vcpus && j < v->nr_vcpus_rows && y < rows - 1; j++) {
			vcpu_line(line, sizeof(line), &v->vcpus[j]);
			mvprintw(y++, 0, "%.*s", COLS, line);
		}
		for (size_t j = 0; ui.show_slots && j < v->nr_slots && y < rows - 1; j++) {
			slot_line(line, sizeof(line), &v->slots[j]);
			mvprintw(y++, 0, "%.*s", COLS, line);
		}
	}
	if (!n)
		mvprintw(y++, 0, "no KVM VMs%s", env.nr_pids || ui.filter[0] ? " match" : " on this host");
	if (ui.help) {
		static const char *const help[] = {
			"q        quit",
			"< > s    sort by the previous / next column",
			"I        reverse the sort",
			"/        filter by name or pid (Enter applies, empty clears)",
			"p        pause / resume",
			"Enter v  show the selected VM's vCPUs",
			"m        show the selected VM's memslots",
			"up down  select a VM",
			"?        this help (any key closes it)",
		};
		int top = 4;

		for (size_t i = 0; i < sizeof(help) / sizeof(help[0]); i++)
			mvprintw(top + i, 4, " %-60s ", help[i]);
	}
	refresh();
}

static void read_filter(void)
{
	int len = 0, c;

	timeout(-1);
	echo();
	curs_set(1);
	mvprintw(LINES - 1, 0, "filter: ");
	clrtoeol();
	while ((c = getch()) != '\n' && c != KEY_ENTER && c != ERR && !exiting) {
		if ((c == KEY_BACKSPACE || c == 127 || c == 8) && len)
			ui.filter[--len] = 0;
		else if (isprint(c) && len < (int)sizeof(ui.filter) - 1)
			ui.filter[len++] = c, ui.filter[len] = 0;
	}
	if (!len)
		ui.filter[0] = 0;
	noecho();
	curs_set(0);
}

/* Handles one key; false to quit. */
static bool key(int c)
{
	if (ui.help && c != ERR) {
		ui.help = false;
		return true;
	}
	switch (c) {
	case 'q':
	case 'Q':
		return false;
	case '<':
		sort_col = (sort_col + C_MAX - 1) % C_MAX;
		break;
	case '>':
	case 's':
		sort_col = (sort_col + 1) % C_MAX;
		break;
	case 'I':
		sort_rev = !sort_rev;
		break;
	case '/':
		read_filter();
		break;
	case 'p':
	case 'Z':
		ui.paused = !ui.paused;
		break;
	case '\n':
	case KEY_ENTER:
	case 'v':
		ui.show_vcpus = !ui.show_vcpus;
		break;
	case 'm':
		ui.show_slots = !ui.show_slots;
		break;
	case KEY_UP:
		if (ui.sel_idx > 0)
			ui.sel_idx--;
		break;
	case KEY_DOWN:
		ui.sel_idx++;
		break;
	case '?':
	case 'h':
		ui.help = true;
		break;
	}
	return true;
}

static void curses_end(void)
{
	if (curses_on) {
		endwin();
		curses_on = false;
	}
}

/* ---- QEMU: dirty logging held on through QMP while we watch ---- */

static struct dt_qmp *qmps[MAX_QMP];
static size_t nr_qmps;

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int hold_one(const char *path)
{
	char why[512];
	struct dt_qmp *q;
	int err;

	if (nr_qmps == MAX_QMP)
		return fail("more than %d QMP sockets", MAX_QMP);
	q = dt_qmp__open(path);
	if (!q)
		return fail("cannot talk QMP on %s: %s", path,
			    errno == EPROTO ? "not a QMP socket" :
			    errno == ETIMEDOUT ? "no greeting (another client holds it? QEMU serves "
			    "one client per -qmp socket: give QEMU another for dirtytop)" :
			    strerror(errno));
	err = dt_qmp__hold_dirty_logging(q, why, sizeof(why));
	if (err) {
		dt_qmp__close(q);
		return fail("QEMU on %s will not keep dirty logging on: %s%s", path, why,
			    strstr(why, "dirty-ring-size") ? "" :
			    " (needs QEMU 7.1+ with -accel kvm,dirty-ring-size=N)");
	}
	qmps[nr_qmps++] = q;
	if (env.verbose && !curses_on)
		fprintf(stderr, PROG ": %s: holding dirty logging on for pid %d\n", path,
			dt_qmp__pid(q));
	return 0;
}

/* Each --qmp: a socket, or a directory whose sockets are all QEMUs to hold. */
static int hold_all(void)
{
	for (size_t i = 0; i < env.nr_qmp_args; i++) {
		const char *arg = env.qmp_args[i];
		struct stat st;
		DIR *d;
		struct dirent *de;
		int err = 0;

		if (stat(arg, &st))
			return fail("--qmp %s: %s", arg, strerror(errno));
		if (!S_ISDIR(st.st_mode)) {
			err = hold_one(arg);
			if (err)
				return err;
			continue;
		}
		d = opendir(arg);
		if (!d)
			return fail("--qmp %s: %s", arg, strerror(errno));
		while (!err && (de = readdir(d))) {
			char path[4096];

			snprintf(path, sizeof(path), "%s/%s", arg, de->d_name);
			if (!stat(path, &st) && S_ISSOCK(st.st_mode))
				err = hold_one(path);
		}
		closedir(d);
		if (err)
			return err;
	}
	return 0;
}

static void release_all(void)
{
	while (nr_qmps)
		dt_qmp__close(qmps[--nr_qmps]);
}

/* ---- main loop ---- */

static int fail(const char *fmt, ...)
{
	va_list ap;
	int ret;

	curses_end();
	va_start(ap, fmt);
	ret = tool_vfail(PROG, 0, fmt, ap);
	va_end(ap);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = doc };
	struct dt_tracer_opts o = { .sz = sizeof(o) };
	struct dt_tracer *t = NULL;
	struct dt_top *top = NULL;
	const struct dt_top_frame *frame = NULL;
	struct totals tot = {};
	long done = 0;
	int err, ret = 1;

	if (argp_parse(&argp, argc, argv, 0, NULL, NULL))
		return 1;
	dt_set_print(print_fn);
	if (!env.json && !env.batch && !isatty(STDOUT_FILENO))
		env.batch = true;	/* like top: a pipe gets text, not escape codes */
	if (tool_preflight())
		return fail("%s", tool_preflight());
	for (size_t i = 0; i < env.nr_pids; i++)
		if (kill(env.pids[i], 0) && errno == ESRCH)
			return fail("no process with pid %d", env.pids[i]);

	if (hold_all()) {
		release_all();
		return 1;
	}
	o.pids = env.nr_pids ? env.pids : NULL;
	o.nr_pids = env.nr_pids;
	t = dt_tracer__open(&o);
	if (!t) {
		err = -errno;
		release_all();
		return fail("failed to attach: %s%s", strerror(-err), tool_err_hint(err));
	}
	top = dt_top__new();
	if (!top) {
		ret = fail("out of memory");
		goto out;
	}
	tot.source = dt_source__name(dt_tracer__source(t));
	if (env.verbose)
		tool_print_probes(PROG, t);
	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);
	if (!env.batch && !env.json) {
		initscr();
		curses_on = true;
		cbreak();
		noecho();
		keypad(stdscr, TRUE);
		curs_set(0);
	}

	uint64_t next = tool_now_ns() + (uint64_t)(env.delay * 1e9);

	while (!exiting) {
		uint64_t now = tool_now_ns();
		int wait_ms = next > now ? (int)((next - now) / 1000000) : 0;

		if (curses_on) {
			/* keys arrive while we wait; records are read at the cut */
			timeout(wait_ms > 100 ? 100 : wait_ms);
			int c = getch();

			if (c != ERR) {
				if (!key(c))
					break;
				if (frame)
					draw(frame, &tot);
			}
			err = dt_tracer__poll(t, 0);
		} else {
			err = dt_tracer__poll(t, wait_ms > 100 ? 100 : wait_ms);
		}
		if (err < 0 && err != -EINTR) {
			ret = fail("failed to read the ring buffer: %s", strerror(-err));
			goto out;
		}
		if (tool_now_ns() < next)
			continue;
		next += (uint64_t)(env.delay * 1e9);

		struct dt_epoch *e;
		struct dt_ring_view *views = NULL;
		size_t nviews = 0;
		struct dt_stats st;

		err = dt_tracer__cut(t, &e);
		if (err) {
			ret = fail("failed to cut an epoch: %s", strerror(-err));
			goto out;
		}
		/* new VMs, exited ones, logging switched; on failure the last discovery stays */
		dt_tracer__refresh(t);
		err = dt_tracer__ring_views(t, &views, &nviews);
		err = err ?: dt_top__update(top, e, views, nviews, dt_tracer__vms(t), &frame);
		dt_epoch__free(e);
		free(views);
		if (err) {
			ret = fail("failed to update: %s", strerror(-err));
			goto out;
		}
		if (!dt_tracer__stats(t, &st)) {
			tot.drops = st.rb_drops;
			tot.lost = st.lost;
		}
		for (size_t i = 0; i < frame->nr_vms; i++)
			qemu_name(frame->vms[i].pid, frame->vms[i].name, sizeof(frame->vms[i].name));
		if (env.json)
			print_json(frame, &tot);
		else if (env.batch)
			print_batch(frame, &tot);
		else if (!ui.paused)
			draw(frame, &tot);
		if (env.count && ++done >= env.count)
			break;
	}
	ret = 0;
out:
	curses_end();
	release_all();	/* QEMU's dirty logging back as it was, also after Ctrl-C */
	dt_top__free(top);
	dt_tracer__close(t);
	return ret;
}

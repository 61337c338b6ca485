// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dirtytop as users run it: JSON and batch output checked against a VM of ours with a known
 * pattern, and the interactive screen driven through tmux (send-keys, capture-pane).
 * Tags: root, kvm, tmux.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "testlib.h"
#include "vmm.h"

static const char *bin(const char *tool)
{
	static char path[4][512];
	static int i;
	const char *dir = getenv("DT_BIN");

	i = (i + 1) % 4;
	snprintf(path[i], sizeof(path[i]), "%s/%s", dir ? dir : ".output/bin", tool);
	return path[i];
}

/* Runs cmd, returns its stdout (malloc'd) and exit status. */
static char *run(const char *cmd, int *status)
{
	FILE *p = popen(cmd, "r");
	size_t len = 0, cap = 1 << 16;
	char *out = malloc(cap);
	size_t n;

	ck_assert_ptr_nonnull(p);
	while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0) {
		len += n;
		if (len + 1 == cap)
			out = realloc(out, cap *= 2);
	}
	out[len] = 0;
	*status = pclose(p);
	return out;
}

/* The number after "key": in s (first occurrence at or after s). */
static double num(const char *s, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(s, pat);
	ck_assert_msg(p, "key %s missing in: %.300s", key, s);
	return strtod(p + strlen(pat), NULL);
}

static char *slurp(const char *path)
{
	char *buf = dt_test_read_file(path, NULL);

	ck_assert_msg(buf, "%s: %s", path, strerror(errno));
	return buf;
}

/* JSON keys are an API: every key dirtytop prints is in its man page and in the README. */
static void assert_keys_documented(const char *frame)
{
	char *man = slurp("tools/man/dirtytop.8.scd"), *readme = slurp("README.md");
	int keys = 0;

	for (const char *p = strchr(frame, '"'); p; p = strchr(p, '"')) {
		const char *end = strchr(p + 1, '"');
		char key[64], man_key[96], md_key[96];

		ck_assert_ptr_nonnull(end);
		if (end[1] != ':') {	/* a string value, not a key */
			p = end + 1;
			continue;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(end - p - 1), p + 1);
		/* in the man page's scdoc source every key is bold; in the README in backquotes */
		snprintf(man_key, sizeof(man_key), "*%s*", key);
		snprintf(md_key, sizeof(md_key), "`%s`", key);
		ck_assert_msg(strstr(man, man_key), "JSON key %s not in tools/man/dirtytop.8.scd", key);
		ck_assert_msg(strstr(readme, md_key), "JSON key %s not in README.md", key);
		keys++;
		p = end + 1;
	}
	ck_assert_int_gt(keys, 30);
	free(man);
	free(readme);
}

#define NEED(fn) do { const char *why = fn(); if (why) DT_SKIP("%s", why); } while (0)

START_TEST(json_against_known_vm)
{
	struct dt_known_writer w;
	char cmd[512], *out, *line, *save;
	int status, frames = 0;
	double raw_sum = 0, secs = 0;
	const char *last = NULL;

	NEED(dt_test_need_kvm);
	dt_test_known_writer_start(&w);
	snprintf(cmd, sizeof(cmd), "%s --json -n 4 -d 0.5 -p %d 2>&1", bin("dirtytop"), getpid());
	out = run(cmd, &status);
	dt_test_known_writer_stop(&w);
	ck_assert_msg(WIFEXITED(status) && !WEXITSTATUS(status), "status %#x: %s", status, out);

	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *vm, *v0, *v1, *s1, *s2;

		last = line;
		double iv = num(line, "interval_s"), pages, raw;

		frames++;
		ck_assert_msg(line[0] == '{' && strstr(line, "\"source\":\"") && strstr(line, "\"time\":"),
			      "not a frame: %s", line);
		vm = strstr(line, "\"vms\":[{");
		ck_assert_msg(vm, "our VM missing: %s", line);
		ck_assert_int_eq((int)num(vm, "pid"), getpid());
		ck_assert_ptr_nonnull(strstr(vm, "\"tracking\":true"));
		pages = num(vm, "dirty_pages_per_s");
		raw = num(vm, "raw_events_per_s");
		/* pages/s is printed to 0.1, so times 4096 it is good to 205 B/s */
		ck_assert_double_eq_tol(num(vm, "dirty_bytes_per_s"), pages * 4096, 0.05 * 4096 + 1);
		/* every interval (0.5 s = ~50 of the writer's epochs) sees all 300 pages, once */
		ck_assert_msg(pages * iv > 299.4 && pages * iv < 300.6,
			      "frame %d: %.1f pages/s over %.3f s, want 300 pages", frames, pages, iv);
		ck_assert_int_eq((int)num(vm, "1s"), 300);
		ck_assert_int_eq((int)num(vm, "unique_pages_total"), 300);
		/* per vCPU and per slot add up to the VM */
		v0 = strstr(vm, "\"vcpus\":[{\"id\":0,");
		ck_assert_ptr_nonnull(v0);
		v1 = strstr(v0, "{\"id\":1,");
		ck_assert_ptr_nonnull(v1);
		ck_assert_double_eq_tol(num(v0, "dirty_pages_per_s") * iv, 200, 0.6);
		ck_assert_double_eq_tol(num(v1, "dirty_pages_per_s") * iv, 100, 0.6);
		ck_assert_double_eq_tol(num(v0, "raw_events_per_s") + num(v1, "raw_events_per_s"),
					raw, raw * 1e-3 + 0.2);
		s1 = strstr(vm, "{\"as_id\":0,\"slot\":1,");
		s2 = strstr(vm, "{\"as_id\":0,\"slot\":2,");
		ck_assert(s1 && s2);
		ck_assert_double_eq_tol(num(s1, "dirty_pages_per_s") * iv, 200, 0.6);
		ck_assert_double_eq_tol(num(s2, "dirty_pages_per_s") * iv, 100, 0.6);
		ck_assert_double_eq_tol(num(s1, "share"), 2.0 / 3, 1e-3);
		ck_assert_int_eq((int)num(s1, "base_gfn"), (16 << 20) >> 12);
		raw_sum += raw * iv;
		secs += iv;
	}
	ck_assert_int_eq(frames, 4);
	assert_keys_documented(last);
	/*
	 * Raw events are the guest's writes (one ring push each on this host). The writer ran a
	 * little longer than dirtytop watched (start-up, exit), so compare rates, not counts: the
	 * two windows differ by well under 15% of a 2 s run.
	 */
	printf("json: dirtytop raw %.0f/s, writer %.0f/s over %.2f s\n", raw_sum / secs,
	       w.writes / (w.t1 - w.t0), w.t1 - w.t0);
	ck_assert_double_eq_tol(raw_sum / secs, w.writes / (w.t1 - w.t0),
				0.15 * w.writes / (w.t1 - w.t0));
	free(out);
}
END_TEST

START_TEST(batch_and_errors)
{
	struct dt_known_writer w;
	char cmd[512], *out;
	int status;

	NEED(dt_test_need_kvm);
	dt_test_known_writer_start(&w);
	snprintf(cmd, sizeof(cmd), "%s -b -e -n 2 -d 0.5 -p %d 2>&1", bin("dirtytop"), getpid());
	out = run(cmd, &status);
	dt_test_known_writer_stop(&w);
	ck_assert_int_eq(status, 0);
	ck_assert_msg(strstr(out, "source raw_tp/kvm_dirty_ring_push") ||
		      strstr(out, "source fentry") || strstr(out, "source kprobe"), "%s", out);
	ck_assert_ptr_nonnull(strstr(out, "PAGES/s"));
	ck_assert_ptr_nonnull(strstr(out, "    vcpu 1 "));
	ck_assert_ptr_nonnull(strstr(out, "    slot 0:2 "));
	ck_assert_ptr_null(strstr(out, "\033["));	/* batch never clears the screen */
	free(out);

	snprintf(cmd, sizeof(cmd), "%s -b -n 1 -p 3999999 2>&1", bin("dirtytop"));
	out = run(cmd, &status);
	ck_assert_int_ne(status, 0);
	ck_assert_str_eq(out, "dirtytop: no process with pid 3999999\n");
	free(out);
	snprintf(cmd, sizeof(cmd), "%s -d 0 2>&1", bin("dirtytop"));
	out = run(cmd, &status);
	ck_assert_int_ne(status, 0);
	ck_assert_ptr_nonnull(strstr(out, "invalid delay"));
	free(out);
}
END_TEST

/* ---- the screen, through tmux ---- */

static const char *need_tmux(void)
{
	const char *why = dt_test_need_kvm();
	int st;

	if (why)
		return why;
	st = system("tmux -V >/dev/null 2>&1");
	return st ? "tmux is not installed (apt-get install tmux)" : NULL;
}

static char session[32];
static pid_t demo_pid;

/* A failed assertion exits the test process: leave no session, dirtytop or demo VM behind. */
static void tui_cleanup(void)
{
	char cmd[96];

	snprintf(cmd, sizeof(cmd), "tmux kill-session -t %s >/dev/null 2>&1", session);
	(void)!system(cmd);	/* fails when the session is already gone: fine */
	if (demo_pid > 0) {
		kill(demo_pid, SIGTERM);
		waitpid(demo_pid, NULL, 0);
	}
}

static void tmux(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tmux(const char *fmt, ...)
{
	char cmd[1024], args[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "tmux %s >/dev/null 2>&1", args);
	ck_assert_msg(system(cmd) == 0, "failed: %s", cmd);
}

static char *screen(void)
{
	char cmd[128];
	int st;

	snprintf(cmd, sizeof(cmd), "tmux capture-pane -p -t %s", session);
	return run(cmd, &st);
}

/* Waits up to 5 s for text to appear (or, with gone, to disappear) on the screen. */
static bool wait_for(const char *text, bool gone)
{
	for (int i = 0; i < 50; i++) {
		char *s = screen();
		bool there = strstr(s, text) != NULL;

		free(s);
		if (there != gone)
			return true;
		usleep(100 * 1000);
	}
	return false;
}

#define EXPECT(text) do { char *s_ = screen(); ck_assert_msg(wait_for(text, false), \
	"'%s' never showed; screen:\n%s", text, s_); free(s_); } while (0)
#define EXPECT_GONE(text) do { char *s_ = screen(); ck_assert_msg(wait_for(text, true), \
	"'%s' stayed; screen:\n%s", text, s_); free(s_); } while (0)

START_TEST(tui_keys)
{
	char cmd[512];
	pid_t demo;

	NEED(need_tmux);
	snprintf(session, sizeof(session), "dt%d", getpid());
	atexit(tui_cleanup);
	demo = fork();
	ck_assert_int_ge(demo, 0);
	if (!demo) {
		execl(bin("dirtydemo"), "dirtydemo", "-q", "-d", "60", NULL);
		_exit(127);
	}
	demo_pid = demo;
	/* the shell after dirtytop shows how it exited, on the restored normal screen */
	snprintf(cmd, sizeof(cmd), "new-session -d -s %s -x 160 -y 40 '%s -d 0.5 -p %d; "
		 "echo EXITED=$?; sleep 60'", session, bin("dirtytop"), demo);
	tmux("%s", cmd);
	EXPECT("dirtydemo");
	EXPECT("sort: PAGES/s");
	tmux("send-keys -t %s s", session);
	EXPECT("sort: RAW/s");
	tmux("send-keys -t %s '>'", session);
	EXPECT("sort: WSS1s");
	tmux("send-keys -t %s '<' '<' I", session);
	EXPECT("sort: PAGES/s (reversed)");
	tmux("send-keys -t %s v", session);
	EXPECT("vcpu 1 ");
	tmux("send-keys -t %s m", session);
	EXPECT("slot 0:1 ");
	tmux("send-keys -t %s Enter", session);	/* Enter toggles the vCPUs again */
	EXPECT_GONE("vcpu 1 ");
	tmux("send-keys -t %s '?'", session);
	EXPECT("this help");
	tmux("send-keys -t %s x", session);
	EXPECT_GONE("this help");
	tmux("send-keys -t %s / n o m a t c h Enter", session);
	EXPECT("no KVM VMs match");
	tmux("send-keys -t %s / Enter", session);
	EXPECT("dirtydemo");
	tmux("send-keys -t %s p", session);
	EXPECT("PAUSED");
	tmux("send-keys -t %s p", session);
	EXPECT_GONE("PAUSED");
	tmux("send-keys -t %s q", session);
	EXPECT("EXITED=0");
	/* the terminal is back: the alternate screen with dirtytop's header is gone */
	EXPECT_GONE("sort: PAGES/s");
	tmux("kill-session -t %s", session);

	/* SIGTERM restores the terminal too */
	snprintf(cmd, sizeof(cmd), "new-session -d -s %s -x 160 -y 40 '%s -p %d; "
		 "echo EXITED=$?; sleep 60'", session, bin("dirtytop"), demo);
	tmux("%s", cmd);
	EXPECT("dirtydemo");
	/* the pane runs sh, and sh runs our dirtytop */
	snprintf(cmd, sizeof(cmd), "pkill -TERM -x dirtytop -P $(tmux list-panes -t %s "
		 "-F '#{pane_pid}')", session);
	ck_assert_int_eq(system(cmd), 0);
	EXPECT("EXITED=0");
	EXPECT_GONE("sort: PAGES/s");
	tui_cleanup();
	demo_pid = 0;
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dirtytop");
	TCase *kvm = tcase_create("kvm"), *tui = tcase_create("tui");

	tcase_add_test(kvm, json_against_known_vm);
	tcase_add_test(kvm, batch_and_errors);
	tcase_set_timeout(kvm, 60);
	tcase_add_test(tui, tui_keys);
	tcase_set_timeout(tui, 90);
	suite_add_tcase(s, kvm);
	suite_add_tcase(s, tui);
	return dt_test_main(s, "dirtytop");
}

/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * dirtytrace exporter: the live monitor model (struct dt_top) served to Prometheus on /metrics.
 *
 * One harvester thread cuts an epoch every interval, feeds dt_top and renders the exposition
 * text into an immutable, reference-counted snapshot. The HTTP thread only takes a reference to
 * the latest snapshot (a mutex held for a pointer copy) and writes it out: a scraper, however
 * slow or stuck, never runs any code of the harvester's and never waits for it.
 */
#ifndef DT_TOOLS_EXPORTER_H
#define DT_TOOLS_EXPORTER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <dirtytrace/dirtytrace.h>

/* Not in the 9100-9999 range of Prometheus' port allocations, which is full: see README. */
#define EXP_DEFAULT_LISTEN	"127.0.0.1:19555"
#define EXP_MAX_CLIENTS		16	/* a new connection past this closes the oldest */
#define EXP_REQ_MAX		8192	/* request head bytes */

struct exp_opts {
	const char *listen;		/* ADDR:PORT; NULL: EXP_DEFAULT_LISTEN */
	unsigned int interval_ms;	/* epoch length (1000) */
	unsigned int client_timeout_ms;	/* a connection's whole exchange (10000) */
	unsigned int sources;		/* dt_tracer_opts.sources */
	size_t ringbuf;
	int verbose;
};

/* Runs until *exiting; 0, or 1 after printing one error line (prog: the message prefix). */
int exp_run(const char *prog, const struct exp_opts *o, volatile sig_atomic_t *exiting);

/* ---- pure parts, unit-tested ---- */

/*
 * "127.0.0.1:PORT", "[::1]:PORT", "localhost:PORT", ":PORT" (every IPv4 address) or
 * "[::]:PORT"; numeric only (no DNS at startup). 0, or -EINVAL with why filled.
 */
int exp_parse_listen(const char *arg, struct sockaddr_storage *ss, socklen_t *len, char *why,
		     size_t whysz);

/* What a request head asks for: its HTTP status (200, 400, 404, 405), and whether it is HEAD. */
int exp_http_route(const char *req, size_t len, bool *head_only);

/* What the exporter adds to the model's frame, per VM (same order as frame->vms). */
struct exp_vm {
	uint64_t pages_total;	/* sum over epochs of the VM's unique pages per epoch */
	uint64_t raw_total;	/* dirtying events of the page source, since the exporter started */
	unsigned int index;	/* 0, or n for the n-th further VM of the same pid: label vm="n" */
};

struct exp_totals {
	const char *source;	/* page source name */
	struct dt_stats st;
	double epoch_s;		/* measured length of the last epoch, 0 before the first */
	double cut_unix_s;	/* wall time of the last cut */
	uint64_t scrapes, dropped_timeout, dropped_limit, bad_requests;
};

/* The exposition text (Prometheus text format 0.0.4) of a frame (NULL: before the first cut);
 * malloc'd, *len set; NULL on ENOMEM. */
char *exp_render(const struct dt_top_frame *f, const struct exp_vm *x, const struct exp_totals *t,
		 size_t *len);

#endif

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dirtytrace exporter: Prometheus text exposition of the live monitor model on /metrics.
 *
 * Two threads. The harvester (the caller's thread) owns the tracer: it cuts an epoch every
 * interval, feeds dt_top, renders the whole exposition into a fresh buffer and publishes it.
 * The HTTP thread owns the sockets: a poll() loop over non-blocking connections, each with a
 * deadline, at most EXP_MAX_CLIENTS of them (a new one closes the oldest). A scrape takes a
 * reference to the latest published buffer under a mutex held for a pointer copy, then writes
 * from it at the client's pace; the buffer is freed by whoever drops the last reference. So a
 * client that connects and never sends, or never reads, costs a slot and a timeout, never an
 * epoch.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "common.h"
#include "exporter.h"

/* ---- listen address ---- */

int exp_parse_listen(const char *arg, struct sockaddr_storage *ss, socklen_t *len, char *why,
		     size_t whysz)
{
	char host[64];
	const char *port, *h = arg;
	size_t hlen;
	char *end;
	unsigned long p;

	memset(ss, 0, sizeof(*ss));
	if (!arg || !*arg)
		goto bad;
	if (*arg == '[') {
		const char *close = strchr(arg, ']');

		if (!close || close[1] != ':')
			goto bad;
		h = arg + 1;
		hlen = close - h;
		port = close + 2;
	} else {
		const char *colon = strrchr(arg, ':');

		if (!colon || memchr(arg, ':', colon - arg))	/* bare IPv6 needs [ ] */
			goto bad;
		hlen = colon - arg;
		port = colon + 1;
	}
	if (hlen >= sizeof(host) || !*port || strspn(port, "0123456789") != strlen(port))
		goto bad;
	errno = 0;
	p = strtoul(port, &end, 10);
	if (errno || p > 65535) {
		snprintf(why, whysz, "invalid port in --listen %s: %s (0 to 65535)", arg, port);
		return -EINVAL;
	}
	memcpy(host, h, hlen);
	host[hlen] = 0;
	if (*arg != '[' && (!hlen || !strcmp(host, "localhost"))) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(p);
		in->sin_addr.s_addr = htonl(hlen ? INADDR_LOOPBACK : INADDR_ANY);
		*len = sizeof(*in);
		return 0;
	}
	if (*arg != '[') {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
			goto bad;
		in->sin_family = AF_INET;
		in->sin_port = htons(p);
		*len = sizeof(*in);
		return 0;
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
		goto bad;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(p);
	*len = sizeof(*in6);
	return 0;
bad:
	snprintf(why, whysz, "invalid --listen address '%s': want ADDR:PORT with a numeric "
		 "address, e.g. 127.0.0.1:19555, [::1]:19555 or :19555 (every address)",
		 arg ? arg : "");
	return -EINVAL;
}

static void addr_str(const struct sockaddr_storage *ss, char *buf, size_t sz)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a));
		snprintf(buf, sz, "[%s]:%u", a, ntohs(in6->sin6_port));
	} else {
		const struct sockaddr_in *in = (const void *)ss;

		inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
		snprintf(buf, sz, "%s:%u", a, ntohs(in->sin_port));
	}
}

/* ---- HTTP requests ---- */

int exp_http_route(const char *req, size_t len, bool *head_only)
{
	const char *sp1, *sp2, *eol = memchr(req, '\n', len);
	size_t plen;

	*head_only = false;
	if (!eol)
		return 400;
	sp1 = memchr(req, ' ', eol - req);
	if (!sp1)
		return 400;
	sp2 = memchr(sp1 + 1, ' ', eol - sp1 - 1);
	if (!sp2 || strncmp(sp2 + 1, "HTTP/1.", 7))
		return 400;
	plen = strcspn(sp1 + 1, "? ");	/* a query string is ignored */
	if (sp1 - req == 4 && !memcmp(req, "HEAD", 4))
		*head_only = true;
	else if (sp1 - req != 3 || memcmp(req, "GET", 3))
		return 405;
	if (plen != 8 || memcmp(sp1 + 1, "/metrics", 8))
		return 404;
	return 200;
}

/* ---- exposition text ---- */

struct out {
	FILE *f;
	const struct dt_top_frame *fr;
	const struct exp_vm *x;
};

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped, as the format requires. */
static void label_value(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* name{pid="..",name=".."[,vm="n"] and no closing brace: the caller adds labels and "}". */
static void vm_sample(struct out *o, const char *metric, size_t i)
{
	const struct dt_top_vm *v = &o->fr->vms[i];

	fprintf(o->f, "%s{pid=\"%d\",name=\"", metric, v->pid);
	label_value(o->f, v->name);
	fputc('"', o->f);
	if (o->x[i].index)
		fprintf(o->f, ",vm=\"%u\"", o->x[i].index);
}

/* Gauges in %.10g: rates need no more digits, and integers up to 10^10 print as integers. */
#define NR_VMS(o) ((o)->fr ? (o)->fr->nr_vms : 0)

#define PER_VM(o, metric, type, help, fmt, expr) do {				\
	family((o)->f, metric, type, help);					\
	for (size_t i = 0; i < NR_VMS(o); i++) {				\
		const struct dt_top_vm *v = &(o)->fr->vms[i];			\
		(void)v;							\
		vm_sample(o, metric, i);					\
		fprintf((o)->f, "} " fmt "\n", expr);				\
	}									\
} while (0)

#define PER_VCPU(o, metric, type, help, cond, fmt, expr) do {			\
	family((o)->f, metric, type, help);					\
	for (size_t i = 0; i < NR_VMS(o); i++) {				\
		const struct dt_top_vm *v = &(o)->fr->vms[i];			\
		for (size_t j = 0; j < v->nr_vcpus_rows; j++) {			\
			const struct dt_top_vcpu *c = &v->vcpus[j];		\
			if (!(cond))						\
				continue;					\
			vm_sample(o, metric, i);				\
			fprintf((o)->f, ",vcpu=\"%d\"} " fmt "\n", c->id, expr);\
		}								\
	}									\
} while (0)

#define PER_SLOT(o, metric, type, help, fmt, expr) do {				\
	family((o)->f, metric, type, help);					\
	for (size_t i = 0; i < NR_VMS(o); i++) {				\
		const struct dt_top_vm *v = &(o)->fr->vms[i];			\
		for (size_t j = 0; j < v->nr_slots; j++) {			\
			const struct dt_top_slot *s = &v->slots[j];		\
			vm_sample(o, metric, i);				\
			fprintf((o)->f, ",as_id=\"%u\",slot=\"%u\"} " fmt "\n",	\
				s->as_id, s->id, expr);				\
		}								\
	}									\
} while (0)

char *exp_render(const struct dt_top_frame *fr, const struct exp_vm *x, const struct exp_totals *t,
		 size_t *len)
{
	char *buf = NULL;
	struct out o = { .fr = fr, .x = x };
	static const char *const windows[] = { "1s", "10s", "60s" };

	o.f = open_memstream(&buf, len);
	if (!o.f)
		return NULL;

	/* the tracer */
	family(o.f, "dirtytrace_source_info", "gauge",
	       "The page source the tracer attached (always 1; the source is the label).");
	fprintf(o.f, "dirtytrace_source_info{source=\"%s\"} 1\n", t->source);
	family(o.f, "dirtytrace_raw_events_total", "counter",
	       "Dirtying events the page source saw, all VMs (on the ring tracepoint: every write).");
	fprintf(o.f, "dirtytrace_raw_events_total %llu\n", (unsigned long long)t->st.raw);
	family(o.f, "dirtytrace_dropped_records_total", "counter",
	       "Records dropped by a full BPF ring buffer; their pages are recovered at the cut.");
	fprintf(o.f, "dirtytrace_dropped_records_total %llu\n", (unsigned long long)t->st.rb_drops);
	family(o.f, "dirtytrace_lost_pages_total", "counter",
	       "Dirty pages lost: the dedup map and the ring buffer were full together.");
	fprintf(o.f, "dirtytrace_lost_pages_total %llu\n", (unsigned long long)t->st.lost);
	family(o.f, "dirtytrace_epochs_total", "counter", "Epochs cut since the exporter started.");
	fprintf(o.f, "dirtytrace_epochs_total %llu\n", (unsigned long long)t->st.epochs);
	family(o.f, "dirtytrace_epoch_seconds", "gauge",
	       "Measured length of the last epoch: the interval every rate here is over.");
	fprintf(o.f, "dirtytrace_epoch_seconds %.6f\n", t->epoch_s);
	family(o.f, "dirtytrace_last_epoch_timestamp_seconds", "gauge",
	       "Unix time of the last cut (0 before the first).");
	fprintf(o.f, "dirtytrace_last_epoch_timestamp_seconds %.3f\n", t->cut_unix_s);
	family(o.f, "dirtytrace_vms", "gauge", "KVM VMs on this host.");
	fprintf(o.f, "dirtytrace_vms %zu\n", NR_VMS(&o));
	family(o.f, "dirtytrace_exporter_scrapes_total", "counter",
	       "Requests for /metrics answered (as of the last cut).");
	fprintf(o.f, "dirtytrace_exporter_scrapes_total %llu\n", (unsigned long long)t->scrapes);
	family(o.f, "dirtytrace_exporter_clients_dropped_total", "counter",
	       "Connections closed unanswered: timeout (too slow), limit (closed for a newer one), "
	       "bad_request (as of the last cut).");
	fprintf(o.f, "dirtytrace_exporter_clients_dropped_total{reason=\"timeout\"} %llu\n",
		(unsigned long long)t->dropped_timeout);
	fprintf(o.f, "dirtytrace_exporter_clients_dropped_total{reason=\"limit\"} %llu\n",
		(unsigned long long)t->dropped_limit);
	fprintf(o.f, "dirtytrace_exporter_clients_dropped_total{reason=\"bad_request\"} %llu\n",
		(unsigned long long)t->bad_requests);

	/* per VM */
	PER_VM(&o, "dirtytrace_vm_dirty_pages_per_second", "gauge",
	       "Unique guest pages dirtied per second over the last epoch.", "%.10g",
	       v->pages_per_s);
	PER_VM(&o, "dirtytrace_vm_dirty_bytes_per_second", "gauge",
	       "Unique dirty pages per second times the 4096-byte page size.", "%.10g",
	       v->bytes_per_s);
	PER_VM(&o, "dirtytrace_vm_dirty_pages_total", "counter",
	       "Unique dirty pages per epoch, summed over epochs (rate() of it: pages per second).",
	       "%llu", (unsigned long long)x[i].pages_total);
	PER_VM(&o, "dirtytrace_vm_dirty_events_total", "counter",
	       "Raw dirtying events (guest writes as KVM reports them, repeats included).", "%llu",
	       (unsigned long long)x[i].raw_total);
	family(o.f, "dirtytrace_vm_wss_pages", "gauge",
	       "Writable working set: distinct pages dirtied within the window (1s, 10s, 60s).");
	for (size_t i = 0; i < NR_VMS(&o); i++) {
		const struct dt_top_vm *v = &fr->vms[i];
		const uint64_t w[] = { v->wss_1s, v->wss_10s, v->wss_60s };

		for (int k = 0; k < 3; k++) {
			vm_sample(&o, "dirtytrace_vm_wss_pages", i);
			fprintf(o.f, ",window=\"%s\"} %llu\n", windows[k], (unsigned long long)w[k]);
		}
	}
	PER_VM(&o, "dirtytrace_vm_distinct_pages", "gauge",
	       "Distinct pages the VM dirtied since the exporter started.", "%llu",
	       (unsigned long long)v->total_pages);
	PER_VM(&o, "dirtytrace_vm_tracking", "gauge",
	       "1 when dirty logging is on for some memslot; 0: KVM marks nothing dirty.", "%d",
	       v->tracking ? 1 : 0);
	PER_VM(&o, "dirtytrace_vm_vcpus", "gauge", "Online vCPUs.", "%u", v->nr_vcpus);
	PER_VM(&o, "dirtytrace_vm_dirty_ring_entries", "gauge",
	       "KVM dirty ring entries per vCPU; 0: the VM uses the dirty bitmap.", "%u",
	       v->ring_entries);
	PER_VM(&o, "dirtytrace_vm_recovered_pages_total", "counter",
	       "Pages whose record was dropped and that were recovered from the dedup map.", "%llu",
	       (unsigned long long)v->drops);

	/* per vCPU */
	PER_VCPU(&o, "dirtytrace_vcpu_dirty_pages_per_second", "gauge",
		 "Unique pages the vCPU dirtied first in the last epoch, per second (-1: pages not "
		 "attributed to a vCPU).", true, "%.10g", c->pages_per_s);
	PER_VCPU(&o, "dirtytrace_vcpu_dirty_ring_used_entries", "gauge",
		 "KVM dirty ring entries in use (dirty_index - reset_index) at the last push or reset.",
		 c->ring_size, "%u", c->ring_used);
	PER_VCPU(&o, "dirtytrace_vcpu_dirty_ring_size_entries", "gauge",
		 "KVM dirty ring size of the vCPU.", c->ring_size, "%u", c->ring_size);
	PER_VCPU(&o, "dirtytrace_vcpu_dirty_ring_full_exits_total", "counter",
		 "Exits to the VMM because the dirty ring was full.", c->ring_size, "%llu",
		 (unsigned long long)c->ring_full_exits);
	PER_VCPU(&o, "dirtytrace_vcpu_dirty_ring_overflows_total", "counter",
		 "Pushes with more entries used than the ring holds: KVM overwrote entries the VMM "
		 "never harvested.", c->ring_size, "%llu", (unsigned long long)c->ring_overflows);

	/* per memslot */
	PER_SLOT(&o, "dirtytrace_memslot_dirty_pages_per_second", "gauge",
		 "Unique pages dirtied in the memslot per second over the last epoch.", "%.10g",
		 s->pages_per_s);
	PER_SLOT(&o, "dirtytrace_memslot_size_pages", "gauge", "Memslot size in pages.", "%llu",
		 (unsigned long long)s->pages);
	PER_SLOT(&o, "dirtytrace_memslot_dirty_logging", "gauge",
		 "1 when dirty logging is on for the memslot.", "%d", s->logging ? 1 : 0);

	if (fclose(o.f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- published snapshots ---- */

struct snapshot {
	unsigned int refs;	/* atomic */
	size_t len;
	char *text;
};

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapshot *latest;

static void snap_put(struct snapshot *s)
{
	if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		free(s->text);
		free(s);
	}
}

/* The latest snapshot, with a reference for the caller; NULL before the first. */
static struct snapshot *snap_get(void)
{
	struct snapshot *s;

	pthread_mutex_lock(&snap_lock);
	s = latest;
	if (s)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&snap_lock);
	return s;
}

static void snap_publish(char *text, size_t len)
{
	struct snapshot *s = malloc(sizeof(*s)), *old;

	if (!s) {
		free(text);
		return;		/* the previous one stays */
	}
	s->refs = 1;
	s->text = text;
	s->len = len;
	pthread_mutex_lock(&snap_lock);
	old = latest;
	latest = s;
	pthread_mutex_unlock(&snap_lock);
	snap_put(old);
}

/* ---- the HTTP thread ---- */

static struct {
	uint64_t scrapes, dropped_timeout, dropped_limit, bad_requests;	/* atomic */
} counters;

struct conn {
	int fd;
	uint64_t opened_ns, deadline_ns;
	char req[EXP_REQ_MAX];
	size_t req_len;
	bool writing;
	char head[256];
	size_t head_len;
	const char *body;
	size_t body_len;
	size_t sent;		/* of head + body */
	struct snapshot *snap;
};

struct server {
	int lfd;
	int stop_rd;		/* readable: stop */
	unsigned int timeout_ms;
	struct conn conns[EXP_MAX_CLIENTS];
	size_t n;
};

static void conn_close(struct server *sv, size_t i)
{
	close(sv->conns[i].fd);
	snap_put(sv->conns[i].snap);
	sv->conns[i] = sv->conns[--sv->n];
}

static void count(uint64_t *c)
{
	__atomic_add_fetch(c, 1, __ATOMIC_RELAXED);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	default: return "Service Unavailable";
	}
}

/* The request is in: prepare the whole response. */
static void respond(struct conn *c, int status, bool head_only)
{
	static const char *const bodies[] = {
		[0] = "only GET and HEAD /metrics are served\n",
		[1] = "not found: the metrics are at /metrics\n",
		[2] = "bad request\n",
	};
	const char *type = "text/plain; charset=utf-8";

	if (status == 200) {
		c->snap = snap_get();
		if (!c->snap)
			status = 503;
	}
	if (status == 200) {
		c->body = c->snap->text;
		c->body_len = c->snap->len;
		type = "text/plain; version=0.0.4; charset=utf-8";
		count(&counters.scrapes);
	} else {
		c->body = status == 405 ? bodies[0] : status == 404 ? bodies[1] :
			  status == 503 ? "no epoch cut yet\n" : bodies[2];
		c->body_len = strlen(c->body);
		if (status == 400 || status == 431)
			count(&counters.bad_requests);
	}
	c->head_len = snprintf(c->head, sizeof(c->head),
			       "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			       "%sConnection: close\r\n\r\n", status, reason(status), type,
			       c->body_len, status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (head_only)
		c->body_len = 0;
	c->writing = true;
}

/* Reads what is there; false when the connection is done with (closed by the peer). */
static bool conn_read(struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->req + c->req_len, sizeof(c->req) - 1 - c->req_len, 0);
		bool head_only;

		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		if (n == 0)
			return false;
		c->req_len += n;
		c->req[c->req_len] = 0;
		if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n")) {
			int st = exp_http_route(c->req, c->req_len, &head_only);

			respond(c, st, head_only);
			return true;
		}
		if (c->req_len == sizeof(c->req) - 1) {
			respond(c, 431, false);
			return true;
		}
	}
}

/* Writes what the socket takes; false when done (all sent, or the peer is gone). */
static bool conn_write(struct conn *c)
{
	while (c->sent < c->head_len + c->body_len) {
		struct iovec iov[2];
		struct msghdr m = { .msg_iov = iov };
		ssize_t n;

		if (c->sent < c->head_len) {
			iov[0] = (struct iovec){ c->head + c->sent, c->head_len - c->sent };
			iov[1] = (struct iovec){ (void *)c->body, c->body_len };
			m.msg_iovlen = 2;
		} else {
			iov[0] = (struct iovec){ (void *)(c->body + c->sent - c->head_len),
						 c->body_len - (c->sent - c->head_len) };
			m.msg_iovlen = 1;
		}
		n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		c->sent += n;
	}
	shutdown(c->fd, SHUT_WR);
	return false;
}

static void accept_one(struct server *sv)
{
	int fd = accept4(sv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	struct conn *c;

	if (fd < 0)
		return;
	if (sv->n == EXP_MAX_CLIENTS) {
		size_t oldest = 0;

		for (size_t i = 1; i < sv->n; i++)
			if (sv->conns[i].opened_ns < sv->conns[oldest].opened_ns)
				oldest = i;
		conn_close(sv, oldest);
		count(&counters.dropped_limit);
	}
	c = &sv->conns[sv->n++];
	c->fd = fd;
	c->req_len = 0;
	c->writing = false;
	c->head_len = c->body_len = c->sent = 0;
	c->body = NULL;
	c->snap = NULL;
	c->opened_ns = tool_now_ns();
	c->deadline_ns = c->opened_ns + sv->timeout_ms * 1000000ull;
}

static void *serve(void *arg)
{
	struct server *sv = arg;
	struct pollfd pfd[EXP_MAX_CLIENTS + 2];

	for (;;) {
		uint64_t now = tool_now_ns(), next = now + 1000000000ull;
		int n;

		for (size_t i = 0; i < sv->n; ) {
			if (sv->conns[i].deadline_ns <= now) {
				conn_close(sv, i);
				count(&counters.dropped_timeout);
				continue;
			}
			if (sv->conns[i].deadline_ns < next)
				next = sv->conns[i].deadline_ns;
			i++;
		}
		pfd[0] = (struct pollfd){ .fd = sv->stop_rd, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = sv->lfd, .events = POLLIN };
		for (size_t i = 0; i < sv->n; i++)
			pfd[i + 2] = (struct pollfd){ .fd = sv->conns[i].fd,
				.events = sv->conns[i].writing ? POLLOUT : POLLIN };
		n = poll(pfd, sv->n + 2, (int)((next - now) / 1000000) + 1);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if (pfd[0].revents)
			break;
		/* connections first, from the last: conn_close moves the last into the hole */
		for (size_t i = sv->n; i-- > 0; ) {
			struct conn *c = &sv->conns[i];
			short re = pfd[i + 2].revents;
			bool keep = true;

			if (!re)
				continue;
			if (!c->writing)
				keep = conn_read(c);
			if (keep && c->writing)
				keep = conn_write(c);
			if (!keep)
				conn_close(sv, i);
		}
		if (pfd[1].revents & POLLIN)
			accept_one(sv);
	}
	while (sv->n)
		conn_close(sv, sv->n - 1);
	return NULL;
}

/* ---- the harvester ---- */

/* Per VM, what the exporter keeps besides the model: the counters and the name. */
struct vm_state {
	uint64_t kvm;
	pid_t pid;
	uint64_t pages_total;
	char name[64];
	bool seen;
};

struct harvester {
	struct dt_tracer *t;
	struct dt_top *top;
	struct vm_state *vms;
	size_t nr_vms, cap_vms;
	struct exp_vm *x;
	size_t cap_x;
};

static struct vm_state *vm_state(struct harvester *h, const struct dt_top_vm *v)
{
	for (size_t i = 0; i < h->nr_vms; i++)
		if (h->vms[i].kvm == v->kvm && h->vms[i].pid == v->pid)
			return &h->vms[i];
	if (h->nr_vms == h->cap_vms) {
		size_t cap = h->cap_vms ? h->cap_vms * 2 : 16;
		void *p = realloc(h->vms, cap * sizeof(*h->vms));

		if (!p)
			return NULL;
		h->vms = p;
		h->cap_vms = cap;
	}
	struct vm_state *s = &h->vms[h->nr_vms++];

	memset(s, 0, sizeof(*s));
	s->kvm = v->kvm;
	s->pid = v->pid;
	tool_qemu_name(v->pid, s->name, sizeof(s->name));
	return s;
}

/* One epoch: cut, model, counters, render, publish. 0 or -errno. */
static int harvest(struct harvester *h, struct exp_totals *tot)
{
	const struct dt_top_frame *fr = NULL;
	struct dt_ring_view *views = NULL;
	struct dt_epoch *e;
	size_t nviews = 0, len;
	struct timespec rt;
	char *text;
	int err;

	err = dt_tracer__cut(h->t, &e);
	if (err)
		return err;
	dt_tracer__refresh(h->t);	/* on failure the last discovery stays */
	err = dt_tracer__ring_views(h->t, &views, &nviews);
	err = err ?: dt_top__update(h->top, e, views, nviews, dt_tracer__vms(h->t), &fr);
	if (!err && fr->nr_vms > h->cap_x) {
		void *p = realloc(h->x, fr->nr_vms * sizeof(*h->x));

		if (p) {
			h->x = p;
			h->cap_x = fr->nr_vms;
		} else {
			err = -ENOMEM;
		}
	}
	for (size_t i = 0; i < h->nr_vms; i++)
		h->vms[i].seen = false;
	for (size_t i = 0; !err && i < fr->nr_vms; i++) {
		struct dt_top_vm *v = &fr->vms[i];
		struct vm_state *s = vm_state(h, v);
		const struct dt_epoch_vm *ev = NULL;

		if (!s) {
			err = -ENOMEM;
			break;
		}
		s->seen = true;
		for (size_t j = 0; j < e->nr_vms; j++)
			if (e->vms[j].kvm == v->kvm)
				ev = &e->vms[j];
		s->pages_total += ev ? ev->nr_gfns : 0;
		h->x[i].pages_total = s->pages_total;
		h->x[i].raw_total = 0;
		for (size_t j = 0; j < nviews; j++)
			if (views[j].kvm == v->kvm)
				h->x[i].raw_total += views[j].raw;
		/* frame VMs are sorted by pid: the n-th VM of a pid gets vm="n" */
		h->x[i].index = i && fr->vms[i - 1].pid == v->pid ? h->x[i - 1].index + 1 : 0;
		if (s->name[0])
			snprintf(v->name, sizeof(v->name), "%s", s->name);
	}
	/* VMs that are gone take their counters with them */
	for (size_t i = 0; i < h->nr_vms; ) {
		if (h->vms[i].seen)
			i++;
		else
			h->vms[i] = h->vms[--h->nr_vms];
	}
	if (!err) {
		clock_gettime(CLOCK_REALTIME, &rt);
		tot->epoch_s = fr->interval_s;
		tot->cut_unix_s = rt.tv_sec + rt.tv_nsec / 1e9;
	}
	dt_epoch__free(e);
	free(views);
	if (err)
		return err;
	dt_tracer__stats(h->t, &tot->st);
	tot->scrapes = __atomic_load_n(&counters.scrapes, __ATOMIC_RELAXED);
	tot->dropped_timeout = __atomic_load_n(&counters.dropped_timeout, __ATOMIC_RELAXED);
	tot->dropped_limit = __atomic_load_n(&counters.dropped_limit, __ATOMIC_RELAXED);
	tot->bad_requests = __atomic_load_n(&counters.bad_requests, __ATOMIC_RELAXED);
	text = exp_render(fr, h->x, tot, &len);
	if (!text)
		return -ENOMEM;
	snap_publish(text, len);
	return 0;
}

/* CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN, which older kernels need): the missing one's name,
 * or NULL. The unit file's CapabilityBoundingSet gives exactly these. */
static const char *missing_cap(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2] = {};
	uint64_t eff;

	if (syscall(SYS_capget, &hdr, d))
		return NULL;	/* cannot tell: let the attach say */
	eff = d[0].effective | (uint64_t)d[1].effective << 32;
	if (eff & (1ull << CAP_SYS_ADMIN))
		return NULL;
	if (!(eff & (1ull << 39)))	/* CAP_BPF (5.8+) */
		return "CAP_BPF";
	if (!(eff & (1ull << 38)))	/* CAP_PERFMON (5.8+) */
		return "CAP_PERFMON";
	return NULL;
}

static int print_err(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int print_err(const char *prog, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

int exp_run(const char *prog, const struct exp_opts *o, volatile sig_atomic_t *exiting)
{
	struct dt_tracer_opts to = { .sz = sizeof(to), .sources = o->sources,
				     .ringbuf_bytes = o->ringbuf };
	const char *listen_arg = o->listen ? o->listen : EXP_DEFAULT_LISTEN;
	struct server sv = { .lfd = -1, .stop_rd = -1,
			     .timeout_ms = o->client_timeout_ms ?: 10000 };
	uint64_t interval_ns = (o->interval_ms ?: 1000) * 1000000ull, next;
	struct harvester h = {};
	struct exp_totals tot = {};
	struct sockaddr_storage ss;
	socklen_t sslen;
	char why[256], where[80];
	const char *why_preflight, *cap;
	int stop[2] = { -1, -1 }, one = 1, err, ret = 1;
	pthread_t thr;
	bool thr_on = false;
	sigset_t block, old;
	size_t len;
	char *text;

	/* the address first: a typo or a port in use is found before anything is loaded */
	if (exp_parse_listen(listen_arg, &ss, &sslen, why, sizeof(why)))
		return print_err(prog, "%s", why);
	addr_str(&ss, where, sizeof(where));
	sv.lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (sv.lfd < 0)
		return print_err(prog, "cannot listen on %s: %s", where, strerror(errno));
	setsockopt(sv.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(sv.lfd, (struct sockaddr *)&ss, sslen) || listen(sv.lfd, 64)) {
		err = errno;
		close(sv.lfd);
		return print_err(prog, "cannot listen on %s: %s%s", where, strerror(err),
				 err == EADDRINUSE ? " (another exporter? pick one with --listen)" :
				 err == EADDRNOTAVAIL ? " (not an address of this host)" : "");
	}
	sslen = sizeof(ss);
	getsockname(sv.lfd, (struct sockaddr *)&ss, &sslen);
	addr_str(&ss, where, sizeof(where));

	why_preflight = tool_preflight();
	if (why_preflight) {
		ret = print_err(prog, "%s", why_preflight);
		goto out;
	}
	cap = missing_cap();
	if (cap) {
		ret = print_err(prog, "missing capability %s: the exporter needs CAP_BPF and "
				"CAP_PERFMON (or CAP_SYS_ADMIN)", cap);
		goto out;
	}
	h.t = dt_tracer__open(&to);
	if (!h.t) {
		err = -errno;
		ret = print_err(prog, "failed to attach: %s%s", strerror(-err), tool_err_hint(err));
		goto out;
	}
	h.top = dt_top__new();
	if (!h.top || pipe2(stop, O_CLOEXEC)) {
		ret = print_err(prog, "out of memory");
		goto out;
	}
	if (o->verbose)
		tool_print_probes(prog, h.t);
	tot.source = dt_source__name(dt_tracer__source(h.t));
	dt_tracer__stats(h.t, &tot.st);
	text = exp_render(NULL, NULL, &tot, &len);	/* served until the first cut */
	if (text)
		snap_publish(text, len);

	/* signals go to this thread: its poll wakes, the HTTP thread never sees them */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	sv.stop_rd = stop[0];
	err = pthread_create(&thr, NULL, serve, &sv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		ret = print_err(prog, "cannot start the HTTP thread: %s", strerror(err));
		goto out;
	}
	thr_on = true;
	fprintf(stderr, "%s: exporter listening on http://%s/metrics, source %s, an epoch every "
		"%u ms\n", prog, where, tot.source, o->interval_ms ?: 1000);

	next = tool_now_ns() + interval_ns;
	while (!*exiting) {
		uint64_t now = tool_now_ns();
		int wait_ms = next > now ? (int)((next - now) / 1000000) + 1 : 0;

		err = dt_tracer__poll(h.t, wait_ms > 100 ? 100 : wait_ms);
		if (err < 0 && err != -EINTR) {
			ret = print_err(prog, "failed to read the ring buffer: %s", strerror(-err));
			goto out;
		}
		now = tool_now_ns();
		if (now < next)
			continue;
		/* a late cut (a stalled host) restarts the schedule rather than catching up */
		next = now - next > interval_ns ? now + interval_ns : next + interval_ns;
		err = harvest(&h, &tot);
		if (err) {
			ret = print_err(prog, "failed to harvest an epoch: %s", strerror(-err));
			goto out;
		}
	}
	ret = 0;
out:
	if (thr_on) {
		if (write(stop[1], "x", 1) != 1)
			pthread_cancel(thr);
		pthread_join(thr, NULL);
	}
	if (stop[0] >= 0) {
		close(stop[0]);
		close(stop[1]);
	}
	close(sv.lfd);
	pthread_mutex_lock(&snap_lock);
	snap_put(latest);
	latest = NULL;
	pthread_mutex_unlock(&snap_lock);
	dt_top__free(h.top);
	dt_tracer__close(h.t);
	free(h.vms);
	free(h.x);
	return ret;
}

// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dtcheckpoint: an example Remus-style checkpointer built only on libdirtytrace's public API.
 *
 * It keeps a replica of a running VM's guest memory: one full copy of every memslot with dirty
 * logging on, then, every epoch, only the pages the VM dirtied in it, taken from the dense GFN
 * list a cut returns. This is what the Stratus ring patches were for: a checkpoint cycle's cost
 * should follow the pages dirtied, not the size of guest memory, so no bitmap is walked here.
 *
 * Guest pages are read with process_vm_readv() from the VMM's mapping of each slot
 * (userspace_addr), never through the VMM itself: the VMM does not know it is being copied.
 *
 * Why the replica converges although the VM keeps running (the races):
 *  - the tracer is opened before the full copy, so a page written during the full copy is
 *    dirtied in epoch 0 as well and is copied again by the first cycle;
 *  - a page copied while the guest writes it may be copied half old, half new, but that write is
 *    in the list of the epoch that is running, so the next cycle copies the page again.
 * So the replica trails the VM by at most one epoch, and one last cycle with the VM stopped
 * (what a real checkpointer does at each checkpoint: pause, cut, copy, resume) makes it exact.
 *
 * What it relies on: dirtytrace only observes. The VMM must keep dirty logging on and keep
 * harvesting (a migration or a dirty-rate measurement in progress); KVM re-arms a page's write
 * trap only when the VMM harvests it, and a page written again before that makes no event.
 * A memslot the VMM deletes and re-creates under the same id is not followed.
 *
 * The test (tests/check_checkpoint.c) includes this file with DTCHECKPOINT_NO_MAIN defined and
 * drives ckpt_open/ckpt_full_copy/ckpt_cycle against its own in-process VM.
 */
#include <argp.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <dirtytrace/dirtytrace.h>
#include "common.h"

#define CKPT_PAGE		4096ULL
/* Full copy bounce buffer: big enough for few syscalls, small enough to stay in cache. */
#define CKPT_CHUNK_PAGES	256
/* Copy threads claim the list in sublists of this many pages (dt_fetch) ... */
#define CKPT_SUBLIST		512
/* ... and are started only for lists long enough to give each a few. */
#define CKPT_PARALLEL_MIN	(4 * CKPT_SUBLIST)
#define CKPT_MAX_THREADS	16

struct ckpt_opts {
	size_t ringbuf_bytes;		/* BPF ring buffer, power of two >= 4096; 0: default */
	uint64_t trigger_pages;		/* checkpoint trigger armed from the first page; 0: off */
	bool trigger_stop;
	const char *replica_dir;	/* NULL: anonymous replica; else sparse files in this dir */
	unsigned int threads;		/* copy threads per cycle, 1..CKPT_MAX_THREADS; 0: 1 */
};

struct ckpt_stats {
	uint64_t seq;		/* epoch number the cut returned */
	uint64_t pages;		/* pages copied */
	uint64_t bytes;
	uint64_t recovered;	/* of them, dropped records' pages (found in the dedup map) */
	uint64_t skipped;	/* dirtied in a slot we do not replicate */
	uint64_t unreadable;	/* listed, but not mapped in the VMM: left as they were */
	uint64_t syscalls;	/* process_vm_readv calls */
	uint64_t cut_ns;	/* dt_tracer__cut */
	uint64_t copy_ns;	/* the copies */
	unsigned int threads;	/* copy threads that ran */
};

struct ckpt_slot {
	uint16_t as_id;
	uint16_t id;
	uint64_t base_gfn;
	uint64_t npages;
	uint64_t uaddr;		/* in the VMM */
	uint8_t *replica;
	int fd;			/* replica file, -1 when anonymous */
};

/* A batch of page copies for one process_vm_readv (adjacent pages merged): one per thread. */
struct ckpt_batch {
	struct iovec local[IOV_MAX];
	struct iovec remote[IOV_MAX];
	size_t n;
};

struct ckpt_worker {
	struct ckpt *c;
	struct dt_fetch *fetch;
	struct ckpt_batch batch;
	struct ckpt_stats st;
	pthread_t thread;
	int ret;
};

struct ckpt {
	pid_t pid;
	uint64_t kvm;		/* which VM of pid: a VMM may hold several */
	char comm[16];
	struct dt_tracer *tracer;
	size_t nr_slots;
	struct ckpt_slot *slots;	/* sorted by (as_id, base_gfn), as discovery gives them */
	unsigned int threads;
	struct ckpt_worker *workers;	/* threads of them; workers[0] runs on the caller's thread */
	uint64_t full_pages;	/* pages the full copy read */
	uint64_t full_nonzero;	/* of them, non-zero pages (the replica's resident part) */
	uint64_t full_unreadable;
};

__attribute__((format(printf, 3, 4)))
static void ckpt_err(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errsz)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

static void ckpt_comm(pid_t pid, char *out, size_t sz)
{
	char path[64];
	FILE *f;

	snprintf(out, sz, "?");
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	f = fopen(path, "r");
	if (!f)
		return;
	if (fgets(out, sz, f))
		out[strcspn(out, "\n")] = 0;
	fclose(f);
}

/*
 * A replica starts as zeros that cost nothing: untouched pages of a MAP_NORESERVE anonymous
 * mapping, or the holes of a sparse file; only pages written to it take memory or disk.
 */
static int ckpt_map_replica(struct ckpt *c, struct ckpt_slot *s, const char *dir)
{
	size_t len = s->npages * CKPT_PAGE;
	char path[PATH_MAX];
	void *p;

	s->fd = -1;
	if (!dir) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
			 MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return -errno;
		s->replica = p;
		return 0;
	}
	snprintf(path, sizeof(path), "%s/slot-%u-%u.img", dir, s->as_id, s->id);
	s->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (s->fd < 0)
		return -errno;
	if (ftruncate(s->fd, len))
		return -errno;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	s->replica = p;
	return 0;
}

/* Where each slot file belongs in guest physical memory, so the replica can be put back. */
static int ckpt_write_layout(const struct ckpt *c, const char *dir)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/layout", dir);
	f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "# as_id slot base_gfn npages file (pid %d, %s)\n", c->pid, c->comm);
	for (size_t i = 0; i < c->nr_slots; i++) {
		const struct ckpt_slot *s = &c->slots[i];

		fprintf(f, "%u %u 0x%llx %llu slot-%u-%u.img\n", s->as_id, s->id,
			(unsigned long long)s->base_gfn, (unsigned long long)s->npages, s->as_id,
			s->id);
	}
	return fclose(f) ? -errno : 0;
}

void ckpt_close(struct ckpt *c)
{
	if (!c)
		return;
	dt_tracer__close(c->tracer);
	for (size_t i = 0; i < c->nr_slots; i++) {
		struct ckpt_slot *s = &c->slots[i];

		if (s->replica)
			munmap(s->replica, s->npages * CKPT_PAGE);
		if (s->fd >= 0)
			close(s->fd);
	}
	free(c->slots);
	free(c->workers);
	free(c);
}

/* Takes the VM's logged slots from discovery; the one-line reason in err when there is none. */
static int ckpt_take_slots(struct ckpt *c, const struct dt_vm *vm, char *err, size_t errsz)
{
	if (!vm->slots_known) {
		ckpt_err(err, errsz, "this kernel's memslot layout is not known to dirtytrace "
			 "(needs Linux 5.17+)");
		return -EOPNOTSUPP;
	}
	c->slots = calloc(vm->nr_slots ?: 1, sizeof(*c->slots));
	if (!c->slots)
		return -ENOMEM;
	for (size_t i = 0; i < vm->nr_slots; i++) {
		const struct dt_slot *d = &vm->slots[i];
		struct ckpt_slot *s;

		if (!(d->flags & DT_SLOT_LOG_DIRTY) || !d->npages)
			continue;
		s = &c->slots[c->nr_slots++];
		s->as_id = d->as_id;
		s->id = d->id;
		s->base_gfn = d->base_gfn;
		s->npages = d->npages;
		s->uaddr = d->userspace_addr;
		s->fd = -1;
	}
	if (!c->nr_slots) {
		ckpt_err(err, errsz, "the VM of process %d (%s) has no memslot with dirty "
			 "logging on (start a migration or dirty-rate tracking in the VMM first)",
			 c->pid, c->comm);
		return -ENOENT;
	}
	return 0;
}

/* Finds the VM, maps a replica per logged slot and opens the tracer; NULL and err on failure. */
struct ckpt *ckpt_open2(pid_t pid, const struct ckpt_opts *opts, char *err, size_t errsz)
{
	struct dt_tracer_opts to = { .sz = sizeof(to), .nr_pids = 1 };
	const char *dir = opts ? opts->replica_dir : NULL;
	struct dt_vm_list *list = NULL;
	const struct dt_vm *vm;
	struct ckpt *c;
	int ret;

	if (kill(pid, 0) && errno == ESRCH) {
		ckpt_err(err, errsz, "no process %d", pid);
		errno = ESRCH;
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		ckpt_err(err, errsz, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	c->pid = pid;
	c->threads = opts && opts->threads ? opts->threads : 1;
	if (c->threads > CKPT_MAX_THREADS)
		c->threads = CKPT_MAX_THREADS;
	c->workers = calloc(c->threads, sizeof(*c->workers));
	if (!c->workers) {
		ckpt_err(err, errsz, "out of memory");
		free(c);
		errno = ENOMEM;
		return NULL;
	}
	ckpt_comm(pid, c->comm, sizeof(c->comm));
	ret = dt_vms__discover(&list);
	if (ret) {
		ckpt_err(err, errsz, "failed to discover VMs: %s%s", strerror(-ret),
			 tool_err_hint(ret));
		goto fail;
	}
	vm = dt_vm_list__find(list, pid);
	if (!vm) {
		ckpt_err(err, errsz, "process %d (%s) holds no KVM VM", pid, c->comm);
		ret = -ENOENT;
		goto fail;
	}
	c->kvm = vm->kvm;
	ret = ckpt_take_slots(c, vm, err, errsz);
	if (ret) {
		if (ret == -ENOMEM)
			ckpt_err(err, errsz, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < c->nr_slots; i++) {
		ret = ckpt_map_replica(c, &c->slots[i], dir);
		if (ret) {
			ckpt_err(err, errsz, "failed to map the replica of slot %u (%llu MiB): %s",
				 c->slots[i].id,
				 (unsigned long long)(c->slots[i].npages * CKPT_PAGE >> 20),
				 strerror(-ret));
			goto fail;
		}
	}
	if (dir && (ret = ckpt_write_layout(c, dir))) {
		ckpt_err(err, errsz, "failed to write %s/layout: %s", dir, strerror(-ret));
		goto fail;
	}
	to.pids = &pid;
	to.ringbuf_bytes = opts ? opts->ringbuf_bytes : 0;
	to.trigger_pages = opts ? opts->trigger_pages : 0;
	to.trigger_stop = opts && opts->trigger_stop;
	c->tracer = dt_tracer__open(&to);
	if (!c->tracer) {
		ret = -errno;
		ckpt_err(err, errsz, "failed to attach: %s%s", strerror(-ret), tool_err_hint(ret));
		goto fail;
	}
	dt_vm_list__free(list);
	return c;
fail:
	dt_vm_list__free(list);
	ckpt_close(c);
	errno = -ret;
	return NULL;
}

struct ckpt *ckpt_open(pid_t pid, char *err, size_t errsz)
{
	return ckpt_open2(pid, NULL, err, errsz);
}

struct dt_tracer *ckpt_tracer(struct ckpt *c)
{
	return c->tracer;
}

const void *ckpt_replica(struct ckpt *c, uint16_t as_id, uint16_t slot)
{
	for (size_t i = 0; i < c->nr_slots; i++)
		if (c->slots[i].as_id == as_id && c->slots[i].id == slot)
			return c->slots[i].replica;
	return NULL;
}

/*
 * Reads local[0..n) from remote[0..n) of the VMM. A page the VMM has no mapping for stops
 * process_vm_readv; that page is skipped (counted in *unreadable) and the rest read, so one
 * bad page does not leave a batch of good ones stale. Modifies the iovecs.
 */
static int ckpt_readv(pid_t pid, struct iovec *local, struct iovec *remote, size_t n,
		      uint64_t *unreadable, uint64_t *syscalls)
{
	size_t i = 0;

	while (i < n) {
		ssize_t got = process_vm_readv(pid, local + i, n - i, remote + i, n - i, 0);

		(*syscalls)++;
		if (got < 0) {
			if (errno != EFAULT)
				return -errno;
			got = 0;
		}
		while (i < n && (size_t)got >= remote[i].iov_len)
			got -= remote[i++].iov_len;
		if (i == n)
			break;
		/* stopped inside remote[i]: past what was read, then past the page that failed */
		got += CKPT_PAGE;
		(*unreadable)++;
		if ((size_t)got >= remote[i].iov_len) {
			i++;
			continue;
		}
		remote[i].iov_base = (char *)remote[i].iov_base + got;
		remote[i].iov_len -= got;
		local[i].iov_base = (char *)local[i].iov_base + got;
		local[i].iov_len -= got;
	}
	return 0;
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < CKPT_PAGE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

/*
 * The first copy of every slot. Read through a bounce buffer so zero pages (most of a fresh
 * VM's memory, and what the VMM never touched reads as) are not written into the replica: it
 * stays sparse. Call after ckpt_open, so that writes racing with it are in epoch 0.
 */
int ckpt_full_copy(struct ckpt *c)
{
	uint64_t unreadable = 0, syscalls = 0;
	size_t bounce_len = CKPT_CHUNK_PAGES * CKPT_PAGE;
	uint8_t *bounce = malloc(bounce_len);
	int ret = 0;

	if (!bounce)
		return -ENOMEM;
	for (size_t i = 0; i < c->nr_slots && !ret; i++) {
		struct ckpt_slot *s = &c->slots[i];

		for (uint64_t pg = 0; pg < s->npages && !ret; pg += CKPT_CHUNK_PAGES) {
			uint64_t n = s->npages - pg < CKPT_CHUNK_PAGES ? s->npages - pg :
				     CKPT_CHUNK_PAGES;
			struct iovec l = { bounce, n * CKPT_PAGE };
			struct iovec r = { (void *)(uintptr_t)(s->uaddr + pg * CKPT_PAGE),
					   n * CKPT_PAGE };

			/* a page that cannot be read is left zero in the bounce buffer */
			memset(bounce, 0, n * CKPT_PAGE);
			ret = ckpt_readv(c->pid, &l, &r, 1, &unreadable, &syscalls);
			for (uint64_t j = 0; j < n && !ret; j++) {
				const uint8_t *src = bounce + j * CKPT_PAGE;

				if (page_is_zero(src))
					continue;
				memcpy(s->replica + (pg + j) * CKPT_PAGE, src, CKPT_PAGE);
				c->full_nonzero++;
			}
			c->full_pages += n;
		}
	}
	c->full_unreadable += unreadable;
	free(bounce);
	return ret;
}

static struct ckpt_slot *ckpt_find_slot(struct ckpt *c, uint16_t as_id, uint16_t id)
{
	for (size_t i = 0; i < c->nr_slots; i++)
		if (c->slots[i].as_id == as_id && c->slots[i].id == id)
			return &c->slots[i];
	return NULL;
}

static int ckpt_flush(const struct ckpt *c, struct ckpt_batch *b, struct ckpt_stats *st)
{
	int ret = ckpt_readv(c->pid, b->local, b->remote, b->n, &st->unreadable, &st->syscalls);

	b->n = 0;
	return ret;
}

/* Queues one page; a page right after the previous one in the same slot extends its iovec. */
static int ckpt_queue(const struct ckpt *c, struct ckpt_batch *b, struct ckpt_slot *s, uint64_t off,
		      struct ckpt_stats *st)
{
	void *dst = s->replica + off * CKPT_PAGE;
	void *src = (void *)(uintptr_t)(s->uaddr + off * CKPT_PAGE);
	int ret;

	if (b->n) {
		struct iovec *l = &b->local[b->n - 1], *r = &b->remote[b->n - 1];

		if ((char *)l->iov_base + l->iov_len == dst &&
		    (char *)r->iov_base + r->iov_len == src) {
			l->iov_len += CKPT_PAGE;
			r->iov_len += CKPT_PAGE;
			return 0;
		}
	}
	if (b->n == IOV_MAX && (ret = ckpt_flush(c, b, st)))
		return ret;
	b->local[b->n] = (struct iovec){ dst, CKPT_PAGE };
	b->remote[b->n] = (struct iovec){ src, CKPT_PAGE };
	b->n++;
	return 0;
}

static const struct dt_epoch_vm *ckpt_epoch_vm(const struct ckpt *c, const struct dt_epoch *e)
{
	for (size_t i = 0; i < e->nr_vms; i++)
		if (e->vms[i].pid == c->pid && e->vms[i].kvm == c->kvm)
			return &e->vms[i];
	return NULL;
}

/*
 * Copies the sublists this worker claims until the list is exhausted. The slots are only read
 * here and each page is claimed once, so workers need no lock: they write disjoint replica pages.
 */
static void *ckpt_copy(void *arg)
{
	struct ckpt_worker *w = arg;
	struct ckpt_stats *st = &w->st;
	struct ckpt_slot *s = NULL;
	const struct dt_gfn *sub;
	size_t n;

	w->ret = 0;
	w->batch.n = 0;
	while (!w->ret && (n = dt_fetch__next(w->fetch, CKPT_SUBLIST, &sub))) {
		for (size_t i = 0; i < n && !w->ret; i++) {
			const struct dt_gfn *g = &sub[i];

			/* sorted by gfn, so a slot's pages come together: one lookup per slot */
			if (!s || s->as_id != g->as_id || s->id != g->slot)
				s = ckpt_find_slot(w->c, g->as_id, g->slot);
			if (!s || g->offset >= s->npages) {
				st->skipped++;
				continue;
			}
			w->ret = ckpt_queue(w->c, &w->batch, s, g->offset, st);
			st->pages++;
			st->recovered += g->recovered;
		}
	}
	if (!w->ret && w->batch.n)
		w->ret = ckpt_flush(w->c, &w->batch, st);
	return NULL;
}

/*
 * One checkpoint cycle: cut the epoch, copy every page the VM dirtied in it into the replica,
 * with the opened number of threads when the list is long. Returns 0 or -errno (-ESRCH: the
 * VMM is gone).
 */
int ckpt_cycle(struct ckpt *c, struct ckpt_stats *st)
{
	unsigned int nw = 1, started = 1;
	const struct dt_epoch_vm *vm;
	struct dt_fetch fetch;
	struct dt_epoch *e;
	uint64_t t0, t1;
	int ret;

	memset(st, 0, sizeof(*st));
	t0 = tool_now_ns();
	ret = dt_tracer__cut(c->tracer, &e);
	if (ret)
		return ret;
	t1 = tool_now_ns();
	st->cut_ns = t1 - t0;
	st->seq = e->seq;
	vm = ckpt_epoch_vm(c, e);
	dt_fetch__init(&fetch, vm);
	if (vm && vm->nr_gfns >= CKPT_PARALLEL_MIN)
		nw = c->threads;
	for (unsigned int i = 0; i < nw; i++) {
		c->workers[i] = (struct ckpt_worker){ .c = c, .fetch = &fetch };
		if (i && !pthread_create(&c->workers[i].thread, NULL, ckpt_copy, &c->workers[i]))
			started++;
		else if (i)
			break;	/* no thread: the others take its share */
	}
	ckpt_copy(&c->workers[0]);
	for (unsigned int i = 0; i < started; i++) {
		struct ckpt_worker *w = &c->workers[i];

		if (i)
			pthread_join(w->thread, NULL);
		ret = ret ?: w->ret;
		st->pages += w->st.pages;
		st->recovered += w->st.recovered;
		st->skipped += w->st.skipped;
		st->unreadable += w->st.unreadable;
		st->syscalls += w->st.syscalls;
	}
	st->threads = started;
	st->pages -= st->unreadable;
	st->bytes = st->pages * CKPT_PAGE;
	st->copy_ns = tool_now_ns() - t1;
	dt_epoch__free(e);
	return ret;
}

/* ---- trigger mode: cycles bounded by a dirty-page count ---- */

/*
 * From now on, a cycle is due once the VM has dirtied `pages` pages in the epoch; with stop, the
 * BPF program stops the VMM (SIGSTOP) at that page, so the cycle copies a bounded set from a VM
 * that is not running and the replica then equals guest memory exactly.
 */
int ckpt_set_trigger(struct ckpt *c, uint64_t pages, bool stop)
{
	return dt_tracer__set_trigger(c->tracer, pages, stop);
}

/* 1: the trigger fired, 0: timeout_ms passed first, -errno. Consumes records meanwhile. */
int ckpt_wait(struct ckpt *c, int timeout_ms)
{
	struct dt_trigger tr;
	int ret = dt_tracer__wait_trigger(c->tracer, timeout_ms, &tr);

	if (ret == -ETIMEDOUT || ret == -ECANCELED)
		return 0;
	return ret ? ret : 1;
}

/* Every thread of the VMM stopped (dt_tracer__wait_stopped): 0, -ETIMEDOUT, -ESRCH. */
int ckpt_wait_stopped(struct ckpt *c, int timeout_ms)
{
	return dt_tracer__wait_stopped(c->pid, timeout_ms);
}

int ckpt_resume(struct ckpt *c)
{
	return dt_tracer__resume(c->pid);
}

#ifndef DTCHECKPOINT_NO_MAIN

#define PROG "dtcheckpoint"

static struct env {
	pid_t pid;
	unsigned int interval_ms;
	uint64_t epochs;	/* 0: until Ctrl-C */
	const char *dir;
	uint64_t trigger;	/* 0: cycles every interval only */
	bool stop;
	unsigned int threads;
	int verbose;
} env = { .interval_ms = 100, .threads = 1 };

static volatile sig_atomic_t exiting;

const char *argp_program_version = "dtcheckpoint 0.1.0";
static const char doc[] =
"Keep a replica of a running VM's guest memory, Remus style: one full copy, then every epoch\n"
"only the pages the VM dirtied in it (an example built on libdirtytrace).\n"
"\n"
"The VMM must have dirty logging on (a migration or dirty-rate tracking in progress).\n"
"\n"
"EXAMPLES:\n"
"  dtcheckpoint -p 1234 -v                # 100 ms epochs until Ctrl-C\n"
"  dtcheckpoint -p 1234 -i 25 -n 400 -o /var/tmp/replica\n"
"  dtcheckpoint -p 1234 -t 1000 --stop -j 2   # a checkpoint every 1000 dirty pages\n";

static const struct argp_option opts[] = {
	{ "pid", 'p', "PID", 0, "VMM process to replicate (required)", 0 },
	{ "interval", 'i', "MS", 0, "Epoch length in milliseconds (default 100)", 0 },
	{ "epochs", 'n', "N", 0, "Stop after N epochs (default: until Ctrl-C)", 0 },
	{ "output", 'o', "DIR", 0, "Keep the replica in sparse files in DIR (and DIR/layout)", 0 },
	{ "trigger", 't', "PAGES", 0, "Also cycle as soon as the VM has dirtied PAGES pages in the "
	  "epoch (the interval stays the longest epoch)", 0 },
	{ "stop", 's', NULL, 0, "With -t: stop the VMM at that page, copy, resume (a checkpoint "
	  "of a bounded set; the replica then equals guest memory)", 0 },
	{ "threads", 'j', "N", 0, "Copy threads for long lists (1-16, default 1)", 0 },
	{ "verbose", 'v', NULL, 0, "A line per epoch, the sources tried (-vv: libbpf too)", 0 },
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
			argp_error(state, "invalid pid: %s", arg);
		break;
	case 'i':
		env.interval_ms = strtoul(arg, &end, 10);
		if (errno || *end || !env.interval_ms || env.interval_ms > 3600000)
			argp_error(state, "invalid interval: %s", arg);
		break;
	case 'n':
		env.epochs = strtoull(arg, &end, 10);
		if (errno || *end || !env.epochs)
			argp_error(state, "invalid epoch count: %s", arg);
		break;
	case 'o':
		env.dir = arg;
		break;
	case 't':
		env.trigger = strtoull(arg, &end, 10);
		if (errno || *end || !env.trigger || env.trigger > (1ULL << 40))
			argp_error(state, "invalid page count: %s", arg);
		break;
	case 's':
		env.stop = true;
		break;
	case 'j':
		env.threads = strtoul(arg, &end, 10);
		if (errno || *end || !env.threads || env.threads > CKPT_MAX_THREADS)
			argp_error(state, "invalid thread count: %s", arg);
		break;
	case 'v':
		env.verbose++;
		break;
	case ARGP_KEY_ARG:
		argp_error(state, "unexpected argument: %s", arg);
		break;
	case ARGP_KEY_END:
		if (!env.pid)
			argp_error(state, "missing -p PID");
		if (env.stop && !env.trigger)
			argp_error(state, "--stop needs -t PAGES");
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

static void sig_handler(int sig)
{
	exiting = 1;
}

/*
 * Sleeps until the epoch ends, consuming records meanwhile: a ring buffer left unread while
 * the guest runs would drop records and make the cut recover them from the dedup map instead.
 */
static void wait_epoch(struct ckpt *c, uint64_t deadline_ns)
{
	uint64_t now;

	while (!exiting && (now = tool_now_ns()) < deadline_ns) {
		int ms = (deadline_ns - now + 999999) / 1000000;

		if (dt_tracer__poll(ckpt_tracer(c), ms) == -EINTR)
			break;
	}
}

struct totals {
	uint64_t epochs, pages, recovered, skipped, unreadable, syscalls, cut_ns, copy_ns;
	uint64_t triggered, max_pages;
};

/* Trigger mode's wait: 1 when the VM reached the page count, 0 at the deadline or a signal. */
static int wait_trigger(struct ckpt *c, uint64_t deadline_ns)
{
	uint64_t now;

	while (!exiting && (now = tool_now_ns()) < deadline_ns) {
		int ret = ckpt_wait(c, (deadline_ns - now + 999999) / 1000000);

		if (ret)
			return ret;
	}
	return 0;
}

static void print_summary(const struct ckpt *c, const struct totals *t, double wall_s)
{
	double busy_s = (t->cut_ns + t->copy_ns) / 1e9, n = t->epochs ?: 1;
	struct dt_stats st = {};

	dt_tracer__stats(c->tracer, &st);
	printf(PROG ": pid %d (%s): full copy %llu pages (%llu non-zero), then %llu epochs in "
	       "%.1f s\n", c->pid, c->comm, (unsigned long long)c->full_pages,
	       (unsigned long long)c->full_nonzero, (unsigned long long)t->epochs, wall_s);
	printf(PROG ": copied %llu pages (%.1f MiB) in %llu process_vm_readv calls; %llu of them "
	       "recovered (ring buffer drops %llu); %llu in slots not replicated, "
	       "%llu unreadable\n",
	       (unsigned long long)t->pages, t->pages * CKPT_PAGE / 1048576.0,
	       (unsigned long long)t->syscalls, (unsigned long long)t->recovered,
	       (unsigned long long)st.rb_drops, (unsigned long long)t->skipped,
	       (unsigned long long)(t->unreadable + c->full_unreadable));
	printf(PROG ": per cycle %.1f pages (at most %llu), cut %.1f us + copy %.1f us: %.0f "
	       "cycles/s possible\n", t->pages / n, (unsigned long long)t->max_pages,
	       t->cut_ns / 1e3 / n, t->copy_ns / 1e3 / n, busy_s > 0 ? t->epochs / busy_s : 0.0);
	if (env.trigger)
		printf(PROG ": %llu of %llu cycles triggered at %llu pages%s\n",
		       (unsigned long long)t->triggered, (unsigned long long)t->epochs,
		       (unsigned long long)env.trigger, env.stop ? " with the VMM stopped" : "");
}

static int run(struct ckpt *c)
{
	uint64_t start = tool_now_ns(), deadline = start;
	struct totals tot = {};
	struct ckpt_stats st;
	int ret = 0;

	while (!exiting && (!env.epochs || tot.epochs < env.epochs)) {
		bool fired = false;

		deadline += env.interval_ms * 1000000ULL;
		if (env.trigger)
			fired = wait_trigger(c, deadline) > 0;
		else
			wait_epoch(c, deadline);
		if (fired && env.stop && ckpt_wait_stopped(c, 5000) == -ETIMEDOUT)
			fprintf(stderr, PROG ": the VMM's threads did not all stop within 5 s; "
				"copying anyway, the next cycle catches up\n");
		ret = ckpt_cycle(c, &st);
		if (fired && env.stop)
			ckpt_resume(c);
		if (ret) {
			fprintf(stderr, PROG ": %s\n",
				ret == -ESRCH ? "the VMM exited" : strerror(-ret));
			break;
		}
		tot.epochs++;
		tot.triggered += fired;
		tot.max_pages = st.pages > tot.max_pages ? st.pages : tot.max_pages;
		tot.pages += st.pages;
		tot.recovered += st.recovered;
		tot.skipped += st.skipped;
		tot.unreadable += st.unreadable;
		tot.syscalls += st.syscalls;
		tot.cut_ns += st.cut_ns;
		tot.copy_ns += st.copy_ns;
		if (env.verbose)
			printf("epoch %llu%s: %llu pages (%llu KiB), %llu recovered, %llu skipped, "
			       "cut %llu us, copy %llu us\n", (unsigned long long)st.seq,
			       fired ? (env.stop ? " (triggered, VMM stopped)" : " (triggered)") : "",
			       (unsigned long long)st.pages, (unsigned long long)st.bytes >> 10,
			       (unsigned long long)st.recovered, (unsigned long long)st.skipped,
			       (unsigned long long)st.cut_ns / 1000,
			       (unsigned long long)st.copy_ns / 1000);
		/* a slow cycle, or a triggered one, starts the next epoch's full interval now */
		if (fired || tool_now_ns() > deadline)
			deadline = tool_now_ns();
	}
	print_summary(c, &tot, (tool_now_ns() - start) / 1e9);
	return ret == -ESRCH ? 0 : !!ret;
}

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = doc };
	struct ckpt_opts o = {};
	struct sigaction sa = { .sa_handler = sig_handler };
	const char *why;
	char err[256];
	struct ckpt *c;
	int ret;

	if (argp_parse(&argp, argc, argv, 0, NULL, NULL))
		return 1;
	why = tool_preflight();
	if (why) {
		fprintf(stderr, PROG ": %s\n", why);
		return 1;
	}
	dt_set_print(print_fn);
	if (env.dir && mkdir(env.dir, 0700) && errno != EEXIST) {
		fprintf(stderr, PROG ": cannot create %s: %s\n", env.dir, strerror(errno));
		return 1;
	}
	o.replica_dir = env.dir;
	o.threads = env.threads;
	/* armed from the tracer's first page: epoch 0, the full copy's, is bounded too */
	o.trigger_pages = env.trigger;
	o.trigger_stop = env.stop;
	c = ckpt_open2(env.pid, &o, err, sizeof(err));
	if (!c) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	if (env.verbose)
		tool_print_probes(PROG, c->tracer);
	/* no SA_RESTART: a signal must end the poll in wait_epoch at once */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	ret = ckpt_full_copy(c);
	if (ret) {
		fprintf(stderr, PROG ": full copy failed: %s\n", strerror(-ret));
		ckpt_close(c);
		return 1;
	}
	if (env.verbose)
		fprintf(stderr, PROG ": %zu slot(s), full copy %llu pages (%llu non-zero)\n",
			c->nr_slots, (unsigned long long)c->full_pages,
			(unsigned long long)c->full_nonzero);
	ret = run(c);
	if (env.trigger) {
		ckpt_set_trigger(c, 0, false);
		/* a trigger that fired after the last cycle left the VMM stopped: that stop was ours */
		if (env.stop)
			ckpt_resume(c);
	}
	ckpt_close(c);
	return ret;
}
#endif /* DTCHECKPOINT_NO_MAIN */

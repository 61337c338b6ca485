// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tvm: the test VMM behind dirtytrace's ground truth. See vmm.h for the contract.
 *
 * Guest physical layout of slot 0 (never dirty-logged):
 *   0x00800  flat GDT (only so that GDTR points at something sane)
 *   0x01000  guest code
 *   0x10000  address table of vCPU 0, then one TABLE_BYTES table per vCPU
 *   TVM_SLOT0_RESERVED .. TVM_SLOT0_SIZE  free for tests
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define GDT_GPA		0x800ULL
#define CODE_GPA	0x1000ULL
#define TABLE_BASE	0x10000ULL
#define TABLE_BYTES	0x20000ULL
#define TABLE_ENTRIES	(TABLE_BYTES / 4)
#define TABLE_GPA(i)	(TABLE_BASE + (uint64_t)(i) * TABLE_BYTES)
#define GPA_LIMIT	(1ULL << 32)
#define MAX_SLOT_ID	32767
#define PAD_LOOPS	20

_Static_assert(TABLE_GPA(TVM_MAX_VCPUS) == TVM_SLOT0_RESERVED, "slot 0 layout");
_Static_assert(TVM_SLOT0_RESERVED <= TVM_SLOT0_SIZE, "slot 0 layout");
_Static_assert(TVM_INSNS_PER_WRITE == 2 * PAD_LOOPS + 5, "pad loop length");

/*
 * ESI = address table, ECX = number of entries, EBX = value to store, all set by the host
 * before each entry. No stack and no segment loads: the stores below are the guest's only
 * writes, so every dirty page KVM reports is one the test asked for.
 */
static const uint8_t guest_code[] = {
	0x85, 0xc9,				/* top:  test ecx, ecx */
	0x74, 0x12,				/*       jz done */
	0x8b, 0x06,				/* next: mov eax, [esi] */
	0x89, 0x18,				/*       mov [eax], ebx */
	0x83, 0xc6, 0x04,			/*       add esi, 4 */
	0xba, PAD_LOOPS, 0x00, 0x00, 0x00,	/*       mov edx, PAD_LOOPS */
	0x4a,					/* pad:  dec edx */
	0x75, 0xfd,				/*       jnz pad */
	0x49,					/*       dec ecx */
	0x75, 0xee,				/*       jnz next */
	0xe6, TVM_DONE_PORT,			/* done: out TVM_DONE_PORT, al */
	0xeb, 0xfc,				/*       jmp done */
};

/* Null, flat 4 GiB code (0x08) and data (0x10) descriptors, marked accessed. */
static const uint64_t guest_gdt[] = {
	0,
	0x00cf9b000000ffffULL,
	0x00cf93000000ffffULL,
};

struct tvm_slot {
	uint16_t id;
	uint32_t flags;
	uint64_t gpa;
	uint64_t size;
	void *hva;
	uint64_t *bitmap;		/* bitmap mode: KVM_GET_DIRTY_LOG buffer */
};

struct tvm_vcpu {
	struct tvm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	struct kvm_dirty_gfn *ring;
	uint32_t fetch;			/* free-running index of the next entry to reap */
	pthread_t thread;
	bool thread_started;
	pid_t tid;
	uint64_t gen_seen;		/* last epoch generation this vCPU's thread took up */
	uint32_t exit_reason;
	/* work for the current epoch, handed over under vm->lock */
	const uint64_t *gpas;
	size_t count;
	int err;
};

struct tvm {
	int kvm_fd;
	int vm_fd;
	int nr_vcpus;
	uint32_t ring_entries;
	bool manual_protect;
	size_t run_size;
	size_t page_size;

	struct tvm_slot *slots;
	size_t nr_slots, cap_slots;
	void *slot0;

	struct tvm_vcpu vcpus[TVM_MAX_VCPUS];
	bool threads_started;

	pthread_mutex_t lock;		/* epoch hand-over */
	pthread_cond_t work_cond;
	pthread_cond_t done_cond;
	uint64_t gen;
	int nr_done;
	bool quit;
	uint32_t iter;

	pthread_mutex_t pending_lock;	/* pages reaped on ring-full exits, until harvested */
	struct tvm_pages pending;

	uint64_t ring_full_exits;
	uint64_t reaped;
	uint64_t resets;
	uint64_t epochs;
	uint64_t reap_ns;
	uint64_t reap_exit_ns;
};

static void stat_add(uint64_t *ctr, uint64_t n)
{
	__atomic_fetch_add(ctr, n, __ATOMIC_RELAXED);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- page lists ---- */

int tvm_pages_add(struct tvm_pages *p, const struct tvm_page *pg)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 256;
		struct tvm_page *v = realloc(p->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		p->v = v;
		p->cap = cap;
	}
	p->v[p->n++] = *pg;
	return 0;
}

static int page_cmp(const struct tvm_page *a, const struct tvm_page *b)
{
	if (a->as_id != b->as_id)
		return a->as_id < b->as_id ? -1 : 1;
	if (a->slot != b->slot)
		return a->slot < b->slot ? -1 : 1;
	if (a->offset != b->offset)
		return a->offset < b->offset ? -1 : 1;
	return 0;
}

static int page_qsort_cmp(const void *a, const void *b)
{
	return page_cmp(a, b);
}

void tvm_pages_sort_unique(struct tvm_pages *p)
{
	size_t i, n = 0;

	if (!p->n)
		return;
	qsort(p->v, p->n, sizeof(*p->v), page_qsort_cmp);
	for (i = 1; i < p->n; i++)
		if (page_cmp(&p->v[n], &p->v[i]))
			p->v[++n] = p->v[i];
	p->n = n + 1;
}

bool tvm_pages_equal(const struct tvm_pages *a, const struct tvm_pages *b)
{
	size_t i;

	if (a->n != b->n)
		return false;
	for (i = 0; i < a->n; i++)
		if (page_cmp(&a->v[i], &b->v[i]))
			return false;
	return true;
}

void tvm_pages_clear(struct tvm_pages *p)
{
	p->n = 0;
}

void tvm_pages_free(struct tvm_pages *p)
{
	free(p->v);
	p->v = NULL;
	p->n = 0;
	p->cap = 0;
}

/* ---- slots ---- */

static struct tvm_slot *slot_by_id(struct tvm *vm, uint16_t id)
{
	size_t i;

	for (i = 0; i < vm->nr_slots; i++)
		if (vm->slots[i].id == id)
			return &vm->slots[i];
	return NULL;
}

static struct tvm_slot *slot_by_gpa(struct tvm *vm, uint64_t gpa)
{
	size_t i;

	for (i = 0; i < vm->nr_slots; i++) {
		struct tvm_slot *s = &vm->slots[i];

		if (gpa >= s->gpa && gpa - s->gpa < s->size)
			return s;
	}
	return NULL;
}

static size_t bitmap_words(const struct tvm_slot *s)
{
	return (s->size / TVM_PAGE_SIZE + 63) / 64;
}

static int slot_set_region(struct tvm *vm, const struct tvm_slot *s, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->id,
		.flags = flags,
		.guest_phys_addr = s->gpa,
		.memory_size = s->size,
		.userspace_addr = (uintptr_t)s->hva,
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static int slot_add(struct tvm *vm, uint16_t id, uint64_t gpa, uint64_t size, bool log_dirty)
{
	struct tvm_slot s = { .id = id, .gpa = gpa, .size = size };
	size_t i;
	int err;

	/* the guest reaches only the part below 4 GiB; the rest may be as large as KVM allows */
	if (id > MAX_SLOT_ID || !size || (gpa | size) & (TVM_PAGE_SIZE - 1) ||
	    gpa >= GPA_LIMIT || gpa + size < gpa)
		return -EINVAL;
	for (i = 0; i < vm->nr_slots; i++) {
		const struct tvm_slot *o = &vm->slots[i];

		if (o->id == id || (gpa < o->gpa + o->size && o->gpa < gpa + size))
			return -EEXIST;
	}
	if (vm->nr_slots == vm->cap_slots) {
		size_t cap = vm->cap_slots ? vm->cap_slots * 2 : 8;
		struct tvm_slot *v = realloc(vm->slots, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		vm->slots = v;
		vm->cap_slots = cap;
	}

	s.hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s.hva == MAP_FAILED)
		return -errno;
	if (!vm->ring_entries) {
		s.bitmap = calloc(bitmap_words(&s), sizeof(uint64_t));
		if (!s.bitmap) {
			err = -ENOMEM;
			goto err_unmap;
		}
	}
	s.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0;
	err = slot_set_region(vm, &s, s.flags);
	if (err)
		goto err_free;
	vm->slots[vm->nr_slots++] = s;
	return 0;

err_free:
	free(s.bitmap);
err_unmap:
	munmap(s.hva, size);
	return err;
}

int tvm_add_slot(struct tvm *vm, uint16_t slot, uint64_t gpa, uint64_t size, bool log_dirty)
{
	if (!vm || !slot)
		return -EINVAL;
	return slot_add(vm, slot, gpa, size, log_dirty);
}

int tvm_set_logging(struct tvm *vm, uint16_t slot, bool log_dirty)
{
	struct tvm_slot *s;
	uint32_t flags;
	int err;

	if (!vm)
		return -EINVAL;
	s = slot_by_id(vm, slot);
	if (!s)
		return -ENOENT;
	flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0;
	if (flags == s->flags)
		return 0;
	err = slot_set_region(vm, s, flags);
	if (!err)
		s->flags = flags;
	return err;
}

void *tvm_gpa_to_hva(struct tvm *vm, uint64_t gpa)
{
	struct tvm_slot *s = vm ? slot_by_gpa(vm, gpa) : NULL;

	return s ? (char *)s->hva + (gpa - s->gpa) : NULL;
}

int tvm_gpa_to_page(struct tvm *vm, uint64_t gpa, struct tvm_page *out)
{
	struct tvm_slot *s = vm ? slot_by_gpa(vm, gpa) : NULL;

	if (!s)
		return -ENOENT;
	out->as_id = 0;
	out->slot = s->id;
	out->offset = (gpa - s->gpa) / TVM_PAGE_SIZE;
	return 0;
}

/* ---- dirty ring ---- */

/*
 * Each ring has exactly one consumer at a time: its vCPU thread during an epoch, the harvesting
 * thread between epochs (the epoch hand-over under vm->lock orders the two), so fetch needs no
 * lock. Entries must be taken in order and none skipped, or KVM's reset would stop early.
 */
static int ring_collect(struct tvm *vm, struct tvm_vcpu *vc, struct tvm_pages *out)
{
	uint32_t mask = vm->ring_entries - 1;
	uint64_t n = 0;
	int err = 0;

	for (;;) {
		struct kvm_dirty_gfn *e = &vc->ring[vc->fetch & mask];
		/* acquire: slot and offset are valid once DIRTY is seen */
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		struct tvm_page pg;

		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		pg.as_id = e->slot >> 16;
		pg.slot = e->slot & 0xffff;
		pg.offset = e->offset;
		err = tvm_pages_add(out, &pg);
		if (err)
			break;
		/* release: KVM may recycle the entry only after we have read it */
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		vc->fetch++;
		n++;
	}
	stat_add(&vm->reaped, n);
	return err;
}

static int ring_reset(struct tvm *vm)
{
	int r;

	/* Recent kernels give up on a pending signal; the remaining entries stay marked. */
	do {
		r = ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	stat_add(&vm->resets, 1);
	return 0;
}

static int ring_full(struct tvm_vcpu *vc)
{
	struct tvm *vm = vc->vm;
	uint64_t t0 = mono_ns(), dt;
	int err;

	stat_add(&vm->ring_full_exits, 1);
	pthread_mutex_lock(&vm->pending_lock);
	err = ring_collect(vm, vc, &vm->pending);
	pthread_mutex_unlock(&vm->pending_lock);
	err = err ?: ring_reset(vm);
	dt = mono_ns() - t0;
	stat_add(&vm->reap_ns, dt);
	stat_add(&vm->reap_exit_ns, dt);
	return err;
}

/* ---- vCPUs ---- */

static void flat_segment(struct kvm_segment *seg, uint16_t selector, uint8_t type)
{
	memset(seg, 0, sizeof(*seg));
	seg->base = 0;
	seg->limit = 0xffffffff;
	seg->selector = selector;
	seg->type = type;
	seg->present = 1;
	seg->db = 1;
	seg->s = 1;
	seg->g = 1;
}

static int vcpu_init(struct tvm *vm, int id)
{
	struct tvm_vcpu *vc = &vm->vcpus[id];
	struct kvm_sregs sregs;
	void *p;

	vc->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (vc->fd < 0)
		return -errno;
	p = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vc->fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	vc->run = p;
	if (vm->ring_entries) {
		p = mmap(NULL, vm->ring_entries * sizeof(struct kvm_dirty_gfn),
			 PROT_READ | PROT_WRITE, MAP_SHARED, vc->fd,
			 (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * vm->page_size);
		if (p == MAP_FAILED)
			return -errno;
		vc->ring = p;
	}

	/*
	 * Enter protected mode by setting the hidden segment state directly: no real-mode
	 * trampoline to emulate, and paging stays off (32-bit paging is refused by some
	 * software hypervisors). No IDT: any exception escalates to a triple fault, which
	 * surfaces as KVM_EXIT_SHUTDOWN -> -EIO.
	 */
	if (ioctl(vc->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	flat_segment(&sregs.cs, 0x08, 0xb);
	flat_segment(&sregs.ds, 0x10, 0x3);
	sregs.es = sregs.ds;
	sregs.fs = sregs.ds;
	sregs.gs = sregs.ds;
	sregs.ss = sregs.ds;
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = sizeof(guest_gdt) - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = 0x1;			/* PE */
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(vc->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	return 0;
}

static int vcpu_enter(struct tvm_vcpu *vc)
{
	struct tvm *vm = vc->vm;
	struct kvm_run *run = vc->run;
	int err;

	for (;;) {
		if (ioctl(vc->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		vc->exit_reason = run->exit_reason;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == TVM_DONE_PORT)
				return 0;
			return -EIO;
		case KVM_EXIT_DIRTY_RING_FULL:
			if (!vm->ring_entries)
				return -EIO;
			err = ring_full(vc);
			if (err)
				return err;
			break;
		case KVM_EXIT_INTR:
			break;
		default:
			return -EIO;
		}
	}
}

/* Runs this vCPU's whole list, one guest entry per table-full of addresses. */
static int vcpu_run_list(struct tvm_vcpu *vc, uint32_t iter)
{
	struct tvm *vm = vc->vm;
	uint32_t *table = (uint32_t *)((char *)vm->slot0 + TABLE_GPA(vc->id));
	size_t done = 0;
	int err;

	do {
		size_t i, n = vc->count - done;
		struct kvm_regs regs;

		if (n > TABLE_ENTRIES)
			n = TABLE_ENTRIES;
		for (i = 0; i < n; i++)
			table[i] = (uint32_t)vc->gpas[done + i];

		memset(&regs, 0, sizeof(regs));
		regs.rip = CODE_GPA;
		regs.rsi = TABLE_GPA(vc->id);
		regs.rcx = n;
		regs.rbx = iter;
		regs.rflags = 0x2;		/* reserved bit; IF clear: nothing interrupts */
		if (ioctl(vc->fd, KVM_SET_REGS, &regs) < 0)
			return -errno;
		err = vcpu_enter(vc);
		if (err)
			return err;
		done += n;
	} while (done < vc->count);
	return 0;
}

static void *vcpu_thread(void *arg)
{
	struct tvm_vcpu *vc = arg;
	struct tvm *vm = vc->vm;
	uint64_t seen = vc->gen_seen;

	__atomic_store_n(&vc->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	pthread_mutex_lock(&vm->lock);
	for (;;) {
		uint32_t iter;
		int err;

		while (!vm->quit && vm->gen == seen)
			pthread_cond_wait(&vm->work_cond, &vm->lock);
		if (vm->quit)
			break;
		seen = vm->gen;
		iter = vm->iter;
		pthread_mutex_unlock(&vm->lock);

		err = vcpu_run_list(vc, iter);

		pthread_mutex_lock(&vm->lock);
		vc->err = err;
		if (++vm->nr_done == vm->nr_vcpus)
			pthread_cond_signal(&vm->done_cond);
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

static int start_threads(struct tvm *vm)
{
	sigset_t all, old;
	int i, err = 0;

	if (vm->threads_started)
		return 0;
	/* Signals meant for the test stay with its threads; KVM_RUN is then never interrupted. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct tvm_vcpu *vc = &vm->vcpus[i];

		if (vc->thread_started)
			continue;
		/* taken before the thread runs: the epoch may be posted before it first waits */
		vc->gen_seen = vm->gen;
		err = -pthread_create(&vc->thread, NULL, vcpu_thread, vc);
		if (err)
			break;
		vc->thread_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!err)
		vm->threads_started = true;
	return err;
}

/* ---- VM ---- */

static int enable_cap(int fd, uint32_t cap, uint64_t arg0)
{
	struct kvm_enable_cap ec = { .cap = cap, .args = { arg0 } };

	return ioctl(fd, KVM_ENABLE_CAP, &ec) < 0 ? -errno : 0;
}

static int enable_dirty_ring(struct tvm *vm)
{
	uint64_t bytes = (uint64_t)vm->ring_entries * sizeof(struct kvm_dirty_gfn);
	uint32_t cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	int max;

	if (vm->ring_entries & (vm->ring_entries - 1))
		return -EINVAL;
	/* The acquire/release flavour is the one weakly ordered hosts require; prefer it. */
	max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);
	if (max <= 0) {
		cap = KVM_CAP_DIRTY_LOG_RING;
		max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);
	}
	if (max <= 0)
		return -EOPNOTSUPP;
	if (bytes > (uint64_t)max)
		return -E2BIG;
	return enable_cap(vm->vm_fd, cap, bytes);
}

static int enable_manual_protect(struct tvm *vm)
{
	int r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

	/* INITIALLY_SET stays off: a fresh slot must report nothing until the guest writes. */
	if (r <= 0 || !(r & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return -EOPNOTSUPP;
	return enable_cap(vm->vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
			  KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
}

static int vm_init(struct tvm *vm)
{
	int i, r, err;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return -errno;
	r = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (r < 0)
		return -errno;
	vm->run_size = r;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return -errno;

	if (vm->ring_entries) {
		err = enable_dirty_ring(vm);
		if (err)
			return err;
	} else if (vm->manual_protect) {
		err = enable_manual_protect(vm);
		if (err)
			return err;
	}

	err = slot_add(vm, 0, 0, TVM_SLOT0_SIZE, false);
	if (err)
		return err;
	vm->slot0 = vm->slots[0].hva;
	memcpy((char *)vm->slot0 + GDT_GPA, guest_gdt, sizeof(guest_gdt));
	memcpy((char *)vm->slot0 + CODE_GPA, guest_code, sizeof(guest_code));

	for (i = 0; i < vm->nr_vcpus; i++) {
		err = vcpu_init(vm, i);
		if (err)
			return err;
	}
	return 0;
}

struct tvm *tvm_create(const struct tvm_opts *opts)
{
	struct tvm *vm;
	int i, err;

	if (!opts || opts->nr_vcpus < 1 || opts->nr_vcpus > TVM_MAX_VCPUS ||
	    (opts->ring_entries && opts->manual_protect)) {
		errno = EINVAL;
		return NULL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		errno = ENOMEM;
		return NULL;
	}
	vm->kvm_fd = -1;
	vm->vm_fd = -1;
	vm->nr_vcpus = opts->nr_vcpus;
	vm->ring_entries = opts->ring_entries;
	vm->manual_protect = opts->manual_protect;
	vm->page_size = sysconf(_SC_PAGESIZE);
	for (i = 0; i < TVM_MAX_VCPUS; i++) {
		vm->vcpus[i].vm = vm;
		vm->vcpus[i].id = i;
		vm->vcpus[i].fd = -1;
	}
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->pending_lock, NULL);
	pthread_cond_init(&vm->work_cond, NULL);
	pthread_cond_init(&vm->done_cond, NULL);

	err = vm_init(vm);
	if (err) {
		tvm_destroy(vm);
		errno = -err;
		return NULL;
	}
	return vm;
}

void tvm_destroy(struct tvm *vm)
{
	size_t s;
	int i;

	if (!vm)
		return;
	pthread_mutex_lock(&vm->lock);
	vm->quit = true;
	pthread_cond_broadcast(&vm->work_cond);
	pthread_mutex_unlock(&vm->lock);

	for (i = 0; i < TVM_MAX_VCPUS; i++) {
		struct tvm_vcpu *vc = &vm->vcpus[i];

		if (vc->thread_started)
			pthread_join(vc->thread, NULL);
		if (vc->ring)
			munmap(vc->ring, vm->ring_entries * sizeof(struct kvm_dirty_gfn));
		if (vc->run)
			munmap(vc->run, vm->run_size);
		if (vc->fd >= 0)
			close(vc->fd);
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	/* Guest memory goes last, once KVM no longer maps it. */
	for (s = 0; s < vm->nr_slots; s++) {
		munmap(vm->slots[s].hva, vm->slots[s].size);
		free(vm->slots[s].bitmap);
	}
	free(vm->slots);
	tvm_pages_free(&vm->pending);
	pthread_cond_destroy(&vm->done_cond);
	pthread_cond_destroy(&vm->work_cond);
	pthread_mutex_destroy(&vm->pending_lock);
	pthread_mutex_destroy(&vm->lock);
	free(vm);
}

int tvm_vm_fd(const struct tvm *vm)
{
	return vm ? vm->vm_fd : -EINVAL;
}

int tvm_nr_vcpus(const struct tvm *vm)
{
	return vm ? vm->nr_vcpus : 0;
}

uint32_t tvm_ring_entries(const struct tvm *vm)
{
	return vm ? vm->ring_entries : 0;
}

int tvm_vcpu_fd(const struct tvm *vm, int vcpu)
{
	if (!vm || vcpu < 0 || vcpu >= vm->nr_vcpus)
		return -EINVAL;
	return vm->vcpus[vcpu].fd;
}

pid_t tvm_vcpu_tid(const struct tvm *vm, int vcpu)
{
	if (!vm || vcpu < 0 || vcpu >= vm->nr_vcpus)
		return 0;
	return __atomic_load_n(&vm->vcpus[vcpu].tid, __ATOMIC_ACQUIRE);
}

uint32_t tvm_vcpu_exit_reason(const struct tvm *vm, int vcpu)
{
	if (!vm || vcpu < 0 || vcpu >= vm->nr_vcpus)
		return 0;
	return vm->vcpus[vcpu].exit_reason;
}

/* ---- epochs ---- */

static int check_list(struct tvm *vm, const uint64_t *gpas, size_t n)
{
	const struct tvm_slot *s = NULL;
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t a = gpas[i];

		if ((a & 3) || a >= GPA_LIMIT || a < TVM_SLOT0_RESERVED)
			return -EINVAL;
		/* 4-byte aligned and slots are page multiples: a store never straddles a slot */
		if (!s || a < s->gpa || a - s->gpa >= s->size) {
			s = slot_by_gpa(vm, a);
			if (!s)
				return -EINVAL;
		}
	}
	return 0;
}

int tvm_run_epoch(struct tvm *vm, const uint64_t *const *gpas, const size_t *counts, uint32_t iter)
{
	int i, err;

	if (!vm || !gpas || !counts)
		return -EINVAL;
	for (i = 0; i < vm->nr_vcpus; i++) {
		if (counts[i] && !gpas[i])
			return -EINVAL;
		err = check_list(vm, gpas[i], counts[i]);
		if (err)
			return err;
	}
	err = start_threads(vm);
	if (err)
		return err;

	pthread_mutex_lock(&vm->lock);
	for (i = 0; i < vm->nr_vcpus; i++) {
		vm->vcpus[i].gpas = gpas[i];
		vm->vcpus[i].count = counts[i];
		vm->vcpus[i].err = 0;
	}
	vm->iter = iter;
	vm->nr_done = 0;
	vm->gen++;
	pthread_cond_broadcast(&vm->work_cond);
	while (vm->nr_done < vm->nr_vcpus)
		pthread_cond_wait(&vm->done_cond, &vm->lock);
	for (i = 0; i < vm->nr_vcpus && !err; i++)
		err = vm->vcpus[i].err;
	vm->epochs++;
	pthread_mutex_unlock(&vm->lock);
	return err;
}

/* ---- harvest ---- */

static int bitmap_collect(struct tvm *vm, struct tvm_slot *s, struct tvm_pages *out)
{
	struct kvm_dirty_log log = { .slot = s->id, .dirty_bitmap = s->bitmap };
	uint64_t npages = s->size / TVM_PAGE_SIZE;
	size_t w, words = bitmap_words(s);
	int err;

	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	if (vm->manual_protect) {
		/* Re-arms write tracking only for the pages reported, as a migration would. */
		struct kvm_clear_dirty_log clr = {
			.slot = s->id,
			.num_pages = (uint32_t)npages,
			.first_page = 0,
			.dirty_bitmap = s->bitmap,
		};

		if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0)
			return -errno;
	}
	for (w = 0; w < words; w++) {
		uint64_t bits = s->bitmap[w];

		while (bits) {
			struct tvm_page pg = {
				.as_id = 0,
				.slot = s->id,
				.offset = w * 64 + __builtin_ctzll(bits),
			};

			err = tvm_pages_add(out, &pg);
			if (err)
				return err;
			bits &= bits - 1;
		}
	}
	return 0;
}

static int append_pages(struct tvm_pages *out, const struct tvm_pages *in)
{
	size_t i;
	int err;

	for (i = 0; i < in->n; i++) {
		err = tvm_pages_add(out, &in->v[i]);
		if (err)
			return err;
	}
	return 0;
}

int tvm_harvest(struct tvm *vm, struct tvm_pages *out)
{
	uint64_t t0;
	size_t s;
	int i, err;

	if (!vm || !out)
		return -EINVAL;
	if (!vm->ring_entries) {
		for (s = 0; s < vm->nr_slots; s++) {
			if (!(vm->slots[s].flags & KVM_MEM_LOG_DIRTY_PAGES))
				continue;
			err = bitmap_collect(vm, &vm->slots[s], out);
			if (err)
				return err;
		}
		return 0;
	}

	t0 = mono_ns();
	pthread_mutex_lock(&vm->pending_lock);
	err = append_pages(out, &vm->pending);
	if (!err)
		tvm_pages_clear(&vm->pending);
	pthread_mutex_unlock(&vm->pending_lock);
	for (i = 0; i < vm->nr_vcpus && !err; i++)
		err = ring_collect(vm, &vm->vcpus[i], out);
	err = err ?: ring_reset(vm);
	stat_add(&vm->reap_ns, mono_ns() - t0);
	return err;
}

void tvm_get_stats(const struct tvm *vm, struct tvm_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!vm)
		return;
	st->ring_full_exits = __atomic_load_n(&vm->ring_full_exits, __ATOMIC_RELAXED);
	st->reaped = __atomic_load_n(&vm->reaped, __ATOMIC_RELAXED);
	st->resets = __atomic_load_n(&vm->resets, __ATOMIC_RELAXED);
	st->epochs = __atomic_load_n(&vm->epochs, __ATOMIC_RELAXED);
	st->reap_ns = __atomic_load_n(&vm->reap_ns, __ATOMIC_RELAXED);
	st->reap_exit_ns = __atomic_load_n(&vm->reap_exit_ns, __ATOMIC_RELAXED);
}

/* ---- address patterns ---- */

uint64_t tvm_rand(uint64_t *seed)
{
	uint64_t z = (*seed += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Lemire's multiply-shift: uniform enough for test patterns, no modulo bias worth noticing. */
static uint64_t rand_below(uint64_t *seed, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)tvm_rand(seed) * n) >> 64);
}

static uint64_t range_pages(uint64_t size)
{
	uint64_t n = size / TVM_PAGE_SIZE;

	return n ? n : 1;
}

void tvm_pattern_seq(uint64_t *out, size_t n, uint64_t gpa, uint64_t size, uint64_t start_page)
{
	uint64_t pages = range_pages(size);
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = gpa + ((start_page + i) % pages) * TVM_PAGE_SIZE;
}

void tvm_pattern_random(uint64_t *out, size_t n, uint64_t gpa, uint64_t size, uint64_t *seed)
{
	uint64_t pages = range_pages(size);
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = gpa + rand_below(seed, pages) * TVM_PAGE_SIZE;
}

void tvm_pattern_hotcold(uint64_t *out, size_t n, uint64_t gpa, uint64_t size, uint64_t hot_pages,
			 unsigned int hot_pct, uint64_t *seed)
{
	uint64_t pages = range_pages(size);
	uint64_t hot = hot_pages < pages ? hot_pages : pages;
	uint64_t cold = pages - hot;
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t page;

		if (hot && (!cold || rand_below(seed, 100) < hot_pct))
			page = rand_below(seed, hot);
		else
			page = hot + rand_below(seed, cold);
		out[i] = gpa + page * TVM_PAGE_SIZE;
	}
}

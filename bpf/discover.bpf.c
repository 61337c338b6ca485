// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * VM discovery: a task_file iterator that finds every KVM VM on the host by its anon-inode
 * file ("kvm-vm", "kvm-vcpu:N") and writes dt_rec_* records for the VM, its memslots and
 * its vCPUs. Memslots give tracepoint records (slot, offset) their true guest frame numbers.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "capture.h"

#define NR_ID_BUCKETS	 128	/* DECLARE_HASHTABLE(id_hash, 7) */
#define MAX_CHAIN	 8
#define MAX_AS		 2

/* Kernels before 5.17 keep memslots in an array; dirtytrace reads the id hash of 5.17+. */
struct kvm_memslots___new {
	struct hlist_head id_hash[NR_ID_BUCKETS];
	int node_idx;
} __attribute__((preserve_access_index));

static __always_inline bool name_is(const unsigned char *name, const char *want, int len)
{
	char buf[16] = {};

	if (bpf_probe_read_kernel_str(buf, sizeof(buf), name) < 0)
		return false;
	for (int i = 0; i < len && i < (int)sizeof(buf); i++)
		if (buf[i] != want[i])
			return false;
	return true;
}

static __always_inline int emit_slot(struct seq_file *seq, __u64 kvm,
				     const struct kvm_memory_slot *s)
{
	struct dt_rec_slot r = {};

	r.type = DT_REC_SLOT;
	r.kvm = kvm;
	r.as_id = BPF_CORE_READ(s, as_id);
	r.id = BPF_CORE_READ(s, id);
	r.base_gfn = BPF_CORE_READ(s, base_gfn);
	r.npages = BPF_CORE_READ(s, npages);
	r.userspace_addr = BPF_CORE_READ(s, userspace_addr);
	r.flags = BPF_CORE_READ(s, flags);
	return bpf_seq_write(seq, &r, sizeof(r));
}

struct walk_ctx {
	struct seq_file *seq;
	struct kvm_memslots___new *slots;
	__u64 kvm;
	__u64 node_off;
	bool truncated;
};

/* One id-hash bucket per call: bpf_loop keeps the verifier from walking 128 x chain paths. */
static long walk_bucket(__u32 b, void *data)
{
	struct walk_ctx *w = data;
	struct kvm_memslots___new *slots = w->slots;	/* CO-RE reads start from a plain pointer */
	struct hlist_node *node;

	if (b >= NR_ID_BUCKETS)
		return 1;
	node = BPF_CORE_READ(slots, id_hash[b].first);
	/* no slot counter here: a value tracked across calls keeps the verifier from converging */
	for (int j = 0; j < MAX_CHAIN && node; j++) {
		if (emit_slot(w->seq, w->kvm, (void *)node - w->node_off)) {
			w->truncated = true;	/* the seq_file buffer is full */
			return 1;
		}
		node = BPF_CORE_READ(node, next);
	}
	if (node) {
		w->truncated = true;
		return 1;
	}
	return 0;
}

/* Walks one address space's memslot id hash; false when it could not write every slot. */
static __always_inline bool walk_slots(struct seq_file *seq, __u64 kvm, struct kvm_memslots *ms)
{
	struct kvm_memslots___new *slots = (void *)ms;
	struct walk_ctx w = { .seq = seq, .slots = slots, .kvm = kvm };
	int idx;

	if (!slots)
		return true;
	idx = BPF_CORE_READ(slots, node_idx) & 1;
	/* id_node[2]: the slot is linked through the node of the active set */
	w.node_off = bpf_core_field_offset(struct kvm_memory_slot, id_node) +
		     idx * bpf_core_type_size(struct hlist_node);
	bpf_loop(NR_ID_BUCKETS, walk_bucket, &w, 0);
	return !w.truncated;
}

SEC("iter/task_file")
int dt_discover(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	const unsigned char *name;
	int nr_as;

	if (!task || !file)
		return 0;
	name = BPF_CORE_READ(file, f_path.dentry, d_name.name);

	if (name_is(name, "kvm-vcpu:", 9)) {
		struct kvm_vcpu *vcpu = BPF_CORE_READ(file, private_data);
		struct dt_rec_vcpu r = {};
		struct pid *pid;

		r.type = DT_REC_VCPU;
		r.kvm = (__u64)BPF_CORE_READ(vcpu, kvm);
		r.vcpu_id = BPF_CORE_READ(vcpu, vcpu_id);
		pid = BPF_CORE_READ(vcpu, pid);
		if (pid)
			r.tid = BPF_CORE_READ(pid, numbers[0].nr);
		bpf_seq_write(seq, &r, sizeof(r));
		return 0;
	}
	if (!name_is(name, "kvm-vm", 7))
		return 0;

	struct kvm *kvm = BPF_CORE_READ(file, private_data);
	struct dt_rec_vm vm = {};

	vm.type = DT_REC_VM;
	vm.tgid = BPF_CORE_READ(task, tgid);
	vm.kvm = (__u64)kvm;
	vm.fd = ctx->fd;
	bpf_probe_read_kernel_str(vm.comm, sizeof(vm.comm), task->comm);
	vm.online_vcpus = BPF_CORE_READ(kvm, online_vcpus.counter);
	if (bpf_core_field_exists(kvm->dirty_ring_size))
		vm.dirty_ring_size = BPF_CORE_READ(kvm, dirty_ring_size);
	if (bpf_core_field_exists(kvm->nr_memslots_dirty_logging))
		vm.nr_slots_dirty_logging = BPF_CORE_READ(kvm, nr_memslots_dirty_logging.counter);
	if (bpf_core_field_exists(kvm->manual_dirty_log_protect))
		vm.manual_protect = BPF_CORE_READ(kvm, manual_dirty_log_protect);

	if (!bpf_core_field_exists(struct kvm_memslots___new, id_hash)) {
		vm.flags |= DT_VM_NO_SLOTS;
		bpf_seq_write(seq, &vm, sizeof(vm));
		return 0;
	}
	nr_as = bpf_core_field_size(kvm->memslots) / sizeof(void *);
	vm.nr_as = nr_as < MAX_AS ? nr_as : MAX_AS;
	bpf_seq_write(seq, &vm, sizeof(vm));
	for (int as = 0; as < MAX_AS; as++) {
		if (as >= nr_as)
			break;
		if (!walk_slots(seq, vm.kvm, BPF_CORE_READ(kvm, memslots[as]))) {
			/* tell userspace its slot table is partial */
			vm.flags |= DT_VM_SLOTS_TRUNCATED;
			bpf_seq_write(seq, &vm, sizeof(vm));
			break;
		}
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

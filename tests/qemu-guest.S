/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The guest of check_qemu: a multiboot (v1) kernel QEMU boots with -kernel. Its dirty set is known
 * exactly: forever, it writes an iteration counter into the first dword of each of GUEST_NPAGES
 * pages from GUEST_BASE on (GFNs 0x200..0x23f), and writes nothing else.
 *
 * QEMU enters it in 32-bit flat protected mode with paging and interrupts off. It uses registers
 * only: a push, call or int would write the stack, a page outside the expected set.
 *
 * Every write is followed by a pad loop of PAD_LOOPS * 2 instructions: the KVM here emulates each
 * instruction and checks for a nearly full dirty ring only every 1,024 of them, so a guest writing
 * more often than once per ~40 instructions overruns the ring (see /work/shared/HOST.md).
 *
 * Build: gcc -m32 -c qemu-guest.S -o qemu-guest.o
 *        ld -m elf_i386 -n -Ttext=0x100000 -nostdlib qemu-guest.o -o qemu-guest.elf
 * (-n: one LOAD segment at 1 MiB; without it ld adds one for the ELF headers at 0xff000, in the
 * BIOS area.)
 */

#define GUEST_BASE	0x200000	/* guest physical address of page 0 (GFN 0x200) */
#define GUEST_NPAGES	64
#define PAGE_SIZE	0x1000
#define PAD_LOOPS	24

#define MB_MAGIC	0x1badb002
#define MB_FLAGS	0		/* no memory map, no video mode, ELF layout */

	.section .text
	.code32
	.globl _start

	/* QEMU looks for the header, 4-byte aligned, in the first 8 KiB of the file */
	.p2align 2
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	/* %eax: iteration counter, %edi: page being written, %ecx: pad count */
_start:
	cli
	xorl	%eax, %eax
sweep:
	incl	%eax
	movl	$GUEST_BASE, %edi
page:
	movl	%eax, (%edi)
	movl	$PAD_LOOPS, %ecx
pad:
	decl	%ecx
	jnz	pad
	addl	$PAGE_SIZE, %edi
	cmpl	$(GUEST_BASE + GUEST_NPAGES * PAGE_SIZE), %edi
	jb	page
	jmp	sweep

	/* no executable stack request: there is no stack at all */
	.section .note.GNU-stack, "", @progbits

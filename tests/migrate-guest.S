/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The guest of check_migrate: a multiboot (v1) kernel whose dirtying pattern and rate the test
 * sets on QEMU's command line (-append "w=PAGES d=DELAY"):
 *
 *   forever, it writes an iteration counter into the first dword of each of w pages from
 *   GUEST_BASE on (GFN 0x200 ...), round-robin, and after each write spins d times around a
 *   two-instruction pad loop. It writes nothing else.
 *
 * So it dirties w distinct pages at about IPS / (2 d + 7) writes per second, IPS being the
 * vCPU's instruction rate (1-1.7 M/s on the test host, where KVM emulates every instruction).
 * The first sweep runs at d = MIN_DELAY, so that all w pages hold data (none is a zero page)
 * a moment after boot.
 * d is at least MIN_DELAY: the KVM here checks for a nearly full dirty ring only every 1,024
 * instructions, and a guest writing more often than once per ~40 of them overruns the ring (see
 * /work/shared/HOST.md). w is at most MAX_PAGES (the guest has 64 MiB or more). Missing or bad
 * values fall back to the defaults.
 *
 * QEMU enters it in 32-bit flat protected mode, paging and interrupts off, %eax = 0x2badb002 and
 * %ebx = the multiboot info, whose cmdline is "KERNEL-PATH ARGS". It uses registers only: a push
 * or call would write the stack, a page outside the set.
 *
 * Build: gcc -m32 -c migrate-guest.S; ld -m elf_i386 -n -Ttext=0x100000 -nostdlib (as qemu-guest.S)
 */

#define GUEST_BASE	0x200000	/* guest physical address of page 0 (GFN 0x200) */
#define PAGE_SIZE	0x1000
#define DEFAULT_PAGES	1024
#define MAX_PAGES	15360		/* 60 MiB from 2 MiB: fits a 64 MiB guest */
#define DEFAULT_DELAY	500
#define MIN_DELAY	20

#define MB_MAGIC	0x1badb002
#define MB_BOOT_MAGIC	0x2badb002
#define MB_FLAGS	0
#define MB_INFO_CMDLINE	0x4		/* flags bit: the cmdline field (offset 16) is valid */

	.section .text
	.code32
	.globl _start

	.p2align 2
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	/* %esi: pages, %ebp: delay; while parsing %edx: cmdline, %ebx: key, %ecx: value */
_start:
	cli
	movl	$DEFAULT_PAGES, %esi
	movl	$DEFAULT_DELAY, %ebp
	cmpl	$MB_BOOT_MAGIC, %eax
	jne	check
	testl	$MB_INFO_CMDLINE, (%ebx)
	jz	check
	movl	16(%ebx), %edx
	/* " k=N": a space, a key letter, '=', decimal digits */
scan:
	movzbl	(%edx), %eax
	testl	%eax, %eax
	jz	check
	incl	%edx
	cmpl	$' ', %eax
	jne	scan
	movzbl	(%edx), %ebx
	cmpb	$'=', 1(%edx)
	jne	scan
	addl	$2, %edx
	xorl	%ecx, %ecx
digit:
	movzbl	(%edx), %eax
	subl	$'0', %eax
	cmpl	$9, %eax
	ja	value
	imull	$10, %ecx, %ecx
	addl	%eax, %ecx
	incl	%edx
	jmp	digit
value:
	cmpl	$'w', %ebx
	jne	1f
	movl	%ecx, %esi
1:	cmpl	$'d', %ebx
	jne	scan
	movl	%ecx, %ebp
	jmp	scan

check:
	testl	%esi, %esi
	jz	1f
	cmpl	$MAX_PAGES, %esi
	jbe	2f
1:	movl	$DEFAULT_PAGES, %esi
2:	cmpl	$MIN_DELAY, %ebp
	jae	3f
	movl	$MIN_DELAY, %ebp
3:	shll	$12, %esi
	addl	$GUEST_BASE, %esi		/* %esi: end of the page set */

	/* %eax: iteration counter, %edi: page being written, %ecx: pad count */
	xorl	%eax, %eax
sweep:
	incl	%eax
	movl	$GUEST_BASE, %edi
page:
	movl	%eax, (%edi)
	movl	%ebp, %ecx
	cmpl	$1, %eax
	jne	pad
	movl	$MIN_DELAY, %ecx		/* first sweep: every page holds data at once */
pad:
	decl	%ecx
	jnz	pad
	addl	$PAGE_SIZE, %edi
	cmpl	%esi, %edi
	jb	page
	jmp	sweep

	.section .note.GNU-stack, "", @progbits

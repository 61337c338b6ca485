// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dtstream-client: the smallest useful consumer of `dirtytrace stream --socket PATH --format bin`,
 * written as the place a migration or checkpoint tool starts from.
 *
 * It does not link libdirtytrace on purpose: the wire format is the trace file format (README,
 * "Trace file format"), small enough to read with nothing but read(2) and zlib's crc32, so a
 * tool in another code base (or language) can copy this. A C program that links libdirtytrace
 * can hand a buffer to dt_trace_reader__new() instead.
 *
 * What a consumer must do, all of it below:
 *  - read the header: magic "DTTRACE\0", version (refuse a newer one), a checksummed payload that
 *    describes the VM (pid, vCPUs, memslots, page size, clock);
 *  - then read blocks forever: "DTBK", type, payload length, crc32 over (type, payload);
 *    type 1 is an epoch's sorted GFN list, type 2 the same with each page's first-write time;
 *    skip any other type (a newer writer), but only after its checksum passed;
 *  - an end of stream between two blocks is the normal end (the tracer exited); one inside a
 *    block means the stream was cut.
 *
 * Output: one line per epoch, "epoch SEQ PAGES START_NS END_NS RAW", and with -l the pages as
 * "  as_id:gfn" lines (hex, as `dirtytrace gfns` prints them) after it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zlib.h>

#define HDR_MAGIC	"DTTRACE"	/* 8 bytes with its NUL */
#define BLK_MAGIC	0x4b425444u	/* "DTBK" read as a little-endian u32 */
#define VERSION		1
#define MAX_PAYLOAD	(1u << 30)
#define EPOCH_FIXED	48		/* seq, start, end, raw, recovered, nr_gfns, reserved */
#define UNRESOLVED	(1ull << 63)	/* gfn field: 1<<63 | offset when the slot was unknown */

static uint32_t le32(const unsigned char *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Reads exactly n bytes: 1, or 0 at a clean end before the first byte, or -1 (cut, error). */
static int read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return !got && !r ? 0 : -1;
		got += r;
	}
	return 1;
}

static int die(const char *msg)
{
	fprintf(stderr, "dtstream-client: %s\n", msg);
	return 1;
}

static int connect_unix(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The header: "DTTRACE\0" | u32 version | u32 len | payload | u32 crc32(payload). */
static int read_header(int fd)
{
	unsigned char fixed[16], *p;
	uint32_t len, nr_slots;
	int ok;

	if (read_full(fd, fixed, 16) != 1 || memcmp(fixed, HDR_MAGIC, 8))
		return die("not a dirtytrace stream (no trace header)");
	if (le32(fixed + 8) > VERSION)
		return die("the stream is of a newer format version than this client reads");
	len = le32(fixed + 12);
	if (len < 72 || len > MAX_PAYLOAD || !(p = malloc(len + 4)))
		return die("damaged header");
	ok = read_full(fd, p, len + 4) == 1 && crc32(0, p, len) == le32(p + len);
	/* payload: u32 page_size, source, clock, reserved | u64 start_ns, start_unix_ns |
	 * i32 pid | u32 nr_vcpus, ring_entries | u64 kvm | char comm[16] | u32 nr_slots | slots */
	nr_slots = ok ? le32(p + 68) : 0;
	if (ok && (uint64_t)nr_slots * 32 != len - 72)
		ok = 0;
	if (ok)
		fprintf(stderr, "VM pid %d (%.16s): %u vCPUs, %s, %u memslots, %u-byte pages\n",
			(int32_t)le32(p + 32), (const char *)p + 52, le32(p + 36),
			le32(p + 40) ? "dirty ring" : "dirty bitmap", nr_slots, le32(p));
	free(p);
	return ok ? 0 : die("damaged header");
}

int main(int argc, char **argv)
{
	unsigned char bh[16], *p = NULL;
	unsigned long long epochs = 0;
	int fd, list = 0, ret = 0;
	size_t cap = 0;

	if (argc == 3 && !strcmp(argv[1], "-l"))
		list = 1;
	if (argc != 2 + list) {
		fprintf(stderr, "usage: dtstream-client [-l] SOCKET\n"
			"  reads `dirtytrace stream --format bin --socket SOCKET` and prints a line "
			"per epoch (-l: and its pages)\n");
		return 2;
	}
	fd = connect_unix(argv[1 + list]);
	if (fd < 0) {
		fprintf(stderr, "dtstream-client: cannot connect to %s: %s\n", argv[1 + list],
			strerror(errno));
		return 1;
	}
	if (read_header(fd))
		return 1;
	for (;;) {
		uint32_t type, len, n, each;
		int r = read_full(fd, bh, 16);

		if (!r)
			break;	/* between blocks: the tracer ended the stream */
		if (r < 0 || le32(bh) != BLK_MAGIC || (len = le32(bh + 8)) > MAX_PAYLOAD) {
			ret = die(r < 0 ? "stream cut inside a block" : "damaged block header");
			break;
		}
		if (len > cap) {
			free(p);
			cap = len;
			p = malloc(cap);
			if (!p) {
				ret = die("out of memory");
				break;
			}
		}
		type = le32(bh + 4);
		if (read_full(fd, p, len) != 1) {
			ret = die("stream cut inside a block");
			break;
		}
		if (crc32(crc32(0, bh + 4, 4), p, len) != le32(bh + 12)) {
			ret = die("block checksum mismatch");
			break;
		}
		if (type != 1 && type != 2)
			continue;	/* a block type from a newer writer */
		each = type == 2 ? 24 : 16;
		n = len >= EPOCH_FIXED ? le32(p + 40) : 0;
		if (len < EPOCH_FIXED || (uint64_t)n * each != len - EPOCH_FIXED) {
			ret = die("damaged epoch block");
			break;
		}
		printf("epoch %llu %u %llu %llu %llu\n", (unsigned long long)le64(p), n,
		       (unsigned long long)le64(p + 8), (unsigned long long)le64(p + 16),
		       (unsigned long long)le64(p + 24));
		for (uint32_t i = 0; list && i < n; i++) {
			const unsigned char *g = p + EPOCH_FIXED + (size_t)i * each;
			uint64_t gfn = le64(g);
			unsigned int as_id = g[8] | g[9] << 8, slot = g[10] | g[11] << 8;

			if (gfn & UNRESOLVED)
				printf("  %x:slot%u+%llx\n", as_id, slot,
				       (unsigned long long)(gfn & ~UNRESOLVED));
			else
				printf("  %x:%llx\n", as_id, (unsigned long long)gfn);
		}
		fflush(stdout);
		epochs++;
	}
	fprintf(stderr, "%llu epochs\n", epochs);
	free(p);
	close(fd);
	return ret;
}

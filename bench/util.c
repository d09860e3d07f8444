/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by every engine, so that none of them gets a
 * cheaper clock, offset generator or buffer than another. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "tl.h"

double now_sec(void)
{
	return (double)tl_now_ns() * 1e-9;
}

/* splitmix64: a hash of (seed, index) rather than a stream, so that
 * callbacks on a library thread and the submitter can draw offsets
 * without sharing state, and every engine sees the same sequence. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

uint64_t req_offset(const struct workload *w, uint64_t idx)
{
	uint64_t blocks = w->span / w->bs;

	if (!blocks)
		return 0;
	if (w->random)
		return mix(w->seed ^ mix(idx)) % blocks * w->bs;
	return idx % blocks * w->bs;
}

bool want_more(const struct workload *w, double start, uint64_t issued)
{
	if (w->bytes)
		return issued * w->bs < w->bytes;
	return now_sec() - start < w->seconds;
}

/* Page-aligned, so that no engine pays for bouncing; written buffers hold
 * a pattern rather than zeroes, in case anything below compresses. */
void *bench_buffer(size_t bs, enum io_dir dir, unsigned int salt)
{
	unsigned char *p;
	size_t i;

	if (posix_memalign((void **)&p, 4096, bs))
		die("out of memory for a %zu-byte buffer", bs);
	for (i = 0; i < bs; i++)
		p[i] = dir == DIR_WRITE ? (unsigned char)(i * 131 + salt) : 0;
	return p;
}

int open_dev(const char *path, bool direct, bool write)
{
	int fd = open(path, (write ? O_RDWR : O_RDONLY) |
				    (direct ? O_DIRECT : 0) | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

void die(const char *fmt, ...)
{
	va_list ap;

	fputs("dmio-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Write-behind for block devices that a copy writes through the page
 * cache (--buffered).
 *
 * Left alone, a copy to N such devices keeps N times its length in the
 * page cache until the final flush: the kernel must find that many fresh
 * pages (slow to touch for the first time, in a virtual machine above
 * all), and writes them all back at the end.  So as each job completes,
 * its stretch of every such destination goes to write-back at once, and
 * the stretch of the job before is waited for and dropped from the cache:
 * the copy works in a few jobs' worth of pages, reused while still hot,
 * and write-back overlaps the copy.  That is what three `dd conv=fsync`
 * get by closing each device before the next, since the last close of a
 * block device drops its cache; so dropping takes from the user nothing
 * that the end of the copy would not.
 *
 * Best effort, through a descriptor of our own on the same device (the
 * page cache is the device's, shared by every open): errors are left to
 * the final flush, whose descriptor sees write-back errors all the same.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmio.h"

struct writeback {
	unsigned int nr;
	int fd[DM_KCOPYD_MAX_REGIONS];
	uint64_t base[DM_KCOPYD_MAX_REGIONS]; /* the region's first byte */
	bool has_prev;
	uint64_t prev_off, prev_len; /* sent to write-back, not yet dropped */
};

static bool buffered_block_device(struct block_device *bdev)
{
	struct dm_bdev_info info;

	return bdev && !dm_bdev_get_info(bdev, &info) &&
	       !strcmp(info.kind, "block device") &&
	       info.flags & DM_BDEV_BUFFERED;
}

struct writeback *writeback_start(const struct target *dst, unsigned int nr)
{
	struct writeback *wb = calloc(1, sizeof(*wb));
	unsigned int i;

	if (!wb)
		return NULL;
	for (i = 0; i < nr; i++) {
		struct stat st;
		int fd;

		if (!buffered_block_device(dst[i].bdev))
			continue;
		fd = open(dm_bdev_name(dst[i].bdev), O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) || !S_ISBLK(st.st_mode)) {
			close(fd);
			continue;
		}
		wb->fd[wb->nr] = fd;
		wb->base[wb->nr++] = BYTES(dst[i].sector);
	}
	if (!wb->nr) {
		free(wb);
		return NULL;
	}
	return wb;
}

void writeback_job_done(struct writeback *wb, sector_t off, sector_t len)
{
	unsigned int i;

	if (!wb)
		return;
	for (i = 0; i < wb->nr; i++)
		sync_file_range(wb->fd[i], (off64_t)(wb->base[i] + BYTES(off)),
				(off64_t)BYTES(len), SYNC_FILE_RANGE_WRITE);
	for (i = 0; wb->has_prev && i < wb->nr; i++) {
		off64_t at = (off64_t)(wb->base[i] + wb->prev_off);

		sync_file_range(wb->fd[i], at, (off64_t)wb->prev_len,
				SYNC_FILE_RANGE_WAIT_BEFORE |
					SYNC_FILE_RANGE_WRITE |
					SYNC_FILE_RANGE_WAIT_AFTER);
		posix_fadvise(wb->fd[i], at, (off_t)wb->prev_len,
			      POSIX_FADV_DONTNEED);
	}
	wb->has_prev = true;
	wb->prev_off = BYTES(off);
	wb->prev_len = BYTES(len);
}

void writeback_end(struct writeback *wb)
{
	unsigned int i;

	if (!wb)
		return;
	for (i = 0; i < wb->nr; i++)
		close(wb->fd[i]);
	free(wb);
}

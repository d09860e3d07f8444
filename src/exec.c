/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The system-call executor: a chunk runs as plain preadv2/pwritev2,
 * fdatasync, fallocate or a block ioctl, on the calling thread.  It serves a
 * lone synchronous chunk on the caller's own thread (the engine's inline
 * path) and the workers of the thread-pool backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backend.h"
#include "device.h"

/* Bytes moved, 0 for a data-less success, or -errno. */
static int chunk_syscall(struct dmi_chunk *c)
{
	const struct block_device *b = c->bdev;
	off_t off = (off_t)(c->pos + c->done);
	uint64_t range[2] = {c->pos, c->len};
	const struct iovec *iov;
	ssize_t ret;
	int niov;

	switch (c->op) {
	case DMI_CHUNK_READ:
		niov = dmi_chunk_iov(c, &iov);
		ret = preadv2(b->fd, iov, niov, off, 0);
		break;
	case DMI_CHUNK_WRITE:
	case DMI_CHUNK_ZERO_WRITE:
		niov = dmi_chunk_iov(c, &iov);
		ret = pwritev2(b->fd, iov, niov, off,
			       c->flags & DMI_CHUNK_FUA ? RWF_DSYNC : 0);
		break;
	case DMI_CHUNK_FLUSH:
		ret = fdatasync(b->fd);
		break;
	case DMI_CHUNK_DISCARD:
		ret = b->lim.is_blk ? ioctl(b->fd, BLKDISCARD, range)
				    : fallocate(b->fd,
						FALLOC_FL_PUNCH_HOLE |
							FALLOC_FL_KEEP_SIZE,
						off, (off_t)c->len);
		break;
	case DMI_CHUNK_ZEROES:
		ret = b->lim.is_blk ? ioctl(b->fd, BLKZEROOUT, range)
				    : fallocate(b->fd,
						FALLOC_FL_ZERO_RANGE |
							FALLOC_FL_KEEP_SIZE,
						off, (off_t)c->len);
		break;
	default:
		ret = 0;
		break;
	}
	return ret < 0 ? -errno : (int)ret;
}

/* Run a chunk to its end on this thread. */
void dmi_chunk_exec(struct dmi_chunk *c)
{
	struct dmi_chunk_queue again;

	dmi_cq_init(&again);
	do
		dmi_chunk_complete(c, chunk_syscall(c), &again);
	while ((c = dmi_cq_pop(&again)));
}

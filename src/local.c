/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Local devices: regular files and block devices, probed once at open so
 * that the engine plans every request from cached facts, without system
 * calls.  The client's backend does their I/O on the file descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "device.h"

#define DMI_FILE_MAX_BYTES (1u << 20)
/* Data-less operations are cut at 1 GiB to bound how long one call runs. */
#define DMI_DATALESS_MAX (1ull << 30)

static unsigned long long read_sysfs_ull(dev_t rdev, const char *attr)
{
	char path[128], buf[32];
	unsigned long long val = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/%s",
		 major(rdev), minor(rdev), attr);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fgets(buf, sizeof(buf), f))
		val = strtoull(buf, NULL, 10);
	fclose(f);
	return val;
}

/* O_DIRECT alignment as the kernel reports it; 0s when it cannot say. */
static void dio_align(int fd, unsigned int *mem, unsigned int *offset)
{
	struct statx stx;

	*mem = *offset = 0;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		*mem = stx.stx_dio_mem_align;
		*offset = stx.stx_dio_offset_align;
	}
}

static uint64_t clamp_dataless(unsigned long long bytes)
{
	return bytes > DMI_DATALESS_MAX ? DMI_DATALESS_MAX : bytes;
}

static int probe_blk(struct block_device *bdev, dev_t rdev)
{
	struct dmi_bdev_limits *lim = &bdev->lim;
	unsigned long long kb, wz;
	uint64_t size;
	int lbs, ro = 0;

	if (ioctl(bdev->fd, BLKGETSIZE64, &size) < 0 ||
	    ioctl(bdev->fd, BLKSSZGET, &lbs) < 0)
		return -errno;
	lim->size = size;
	lim->lbs = lbs > 0 ? (unsigned int)lbs : 512;
	/* A device set read-only (blockdev --setro) opens for writing but
	 * refuses every write: say so up front, as for DM_BDEV_RDONLY. */
	if (!ioctl(bdev->fd, BLKROGET, &ro) && ro)
		bdev->flags |= DM_BDEV_RDONLY;
	kb = read_sysfs_ull(rdev, "max_sectors_kb");
	lim->max_bytes = kb ? (uint32_t)(kb > 4096 ? 4096 : kb) << 10
			    : DMI_FILE_MAX_BYTES;
	/* No discard limit means no discard; without a write-zeroes limit
	 * the kernel still zeroes, by writing. */
	lim->discard_max =
		clamp_dataless(read_sysfs_ull(rdev, "discard_max_bytes"));
	wz = read_sysfs_ull(rdev, "write_zeroes_max_bytes");
	lim->zeroes_max = clamp_dataless(wz ? wz : 64ull << 20);
	return 0;
}

/* What the device is, to tell when two handles reach the same storage:
 * st_rdev of a block device, st_dev and st_ino of a file. */
struct local_id {
	dev_t dev;
	ino_t ino;
};

static bool local_same(const struct block_device *a,
		       const struct block_device *b)
{
	const struct local_id *x = a->priv, *y = b->priv;

	return x->dev == y->dev && x->ino == y->ino;
}

static int local_close(struct block_device *bdev)
{
	int ret = 0;

	if (close(bdev->fd) < 0 && errno != EINTR)
		ret = -errno;
	free(bdev->priv);
	free(bdev);
	return ret;
}

static const struct dmi_bdev_ops file_ops = {
	.kind = "file",
	.close = local_close,
	.same = local_same,
};

static const struct dmi_bdev_ops blk_ops = {
	.kind = "block device",
	.close = local_close,
	.same = local_same,
};

dmi_bdev_open_fn dmi_local_open;

struct block_device *dmi_local_open(const char *spec, unsigned int flags)
{
	struct dmi_bdev_limits *lim;
	struct block_device *bdev;
	struct local_id *id;
	struct stat st;
	int oflags, err;
	bool is_blk;

	/* Refuse what is not a device before open(2), which would block on a
	 * FIFO; fstat below closes the race. */
	if (stat(spec, &st) < 0)
		return NULL;
	if (S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		return NULL;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		errno = ENODEV;
		return NULL;
	}

	is_blk = S_ISBLK(st.st_mode);
	id = calloc(1, sizeof(*id));
	bdev = id ? dmi_bdev_alloc(spec, is_blk ? &blk_ops : &file_ops, id)
		  : NULL;
	if (!bdev) {
		free(id);
		return NULL;
	}
	lim = &bdev->lim;
	bdev->flags = flags;
	lim->is_blk = is_blk;
	lim->direct = flags & DM_BDEV_DIRECT ||
		      (is_blk && !(flags & DM_BDEV_BUFFERED));

	oflags = O_CLOEXEC | (flags & DM_BDEV_RDONLY ? O_RDONLY : O_RDWR);
	if (lim->direct)
		oflags |= O_DIRECT;
	bdev->fd = open(spec, oflags);
	if (bdev->fd < 0 || fstat(bdev->fd, &st) < 0)
		goto fail;
	if (S_ISBLK(st.st_mode) != lim->is_blk || S_ISDIR(st.st_mode)) {
		errno = ENODEV;
		goto fail;
	}

	id->dev = lim->is_blk ? st.st_rdev : st.st_dev;
	id->ino = lim->is_blk ? 0 : st.st_ino;
	if (lim->is_blk) {
		err = probe_blk(bdev, st.st_rdev);
		if (err) {
			errno = -err;
			goto fail;
		}
	} else {
		lim->size = (uint64_t)st.st_size;
		lim->lbs = 512;
		lim->max_bytes = DMI_FILE_MAX_BYTES;
		lim->discard_max = DMI_DATALESS_MAX;
		lim->zeroes_max = DMI_DATALESS_MAX;
	}

	lim->mem_align = 1;
	if (lim->direct) {
		unsigned int mem, off;

		dio_align(bdev->fd, &mem, &off);
		if (off > lim->lbs)
			lim->lbs = off;
		/* Unknown memory alignment: ask for the block size, which
		 * every kernel accepts. */
		lim->mem_align = mem ? mem : lim->lbs;
	}
	/* Submissions stay whole blocks and whole pages. */
	lim->discard_max &= ~(uint64_t)(lim->lbs - 1);
	lim->zeroes_max &= ~(uint64_t)(lim->lbs - 1);
	lim->max_bytes &= ~(uint32_t)(DM_PAGE_SIZE - 1);
	lim->max_bytes &= ~(uint32_t)(lim->lbs - 1);
	if (lim->max_bytes < lim->lbs || lim->max_bytes < DM_PAGE_SIZE)
		lim->max_bytes =
			lim->lbs > DM_PAGE_SIZE ? lim->lbs : DM_PAGE_SIZE;
	return bdev;

fail:
	err = errno;
	if (bdev->fd >= 0)
		close(bdev->fd);
	free(id);
	free(bdev);
	errno = err;
	return NULL;
}

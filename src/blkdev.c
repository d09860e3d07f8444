/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Devices: regular files and block devices, probed once at open so that
 * the engine plans every request from cached facts, without system calls.
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

#include "dmio-internal.h"

#define DM_FILE_MAX_BYTES (1u << 20)
/* Data-less operations are cut at 1 GiB to bound how long one call runs. */
#define DM_DATALESS_MAX	    (1ull << 30)
#define DM_BDEV_KNOWN_FLAGS (DM_BDEV_RDONLY | DM_BDEV_DIRECT | DM_BDEV_BUFFERED)

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
	return bytes > DM_DATALESS_MAX ? DM_DATALESS_MAX : bytes;
}

static int probe_blk(struct block_device *bdev, dev_t rdev)
{
	unsigned long long kb, wz;
	uint64_t size;
	int lbs, ro = 0;

	if (ioctl(bdev->fd, BLKGETSIZE64, &size) < 0 ||
	    ioctl(bdev->fd, BLKSSZGET, &lbs) < 0)
		return -errno;
	bdev->size = size;
	bdev->lbs = lbs > 0 ? (unsigned int)lbs : 512;
	/* A device set read-only (blockdev --setro) opens for writing but
	 * refuses every write: say so up front, as for DM_BDEV_RDONLY. */
	if (!ioctl(bdev->fd, BLKROGET, &ro) && ro)
		bdev->flags |= DM_BDEV_RDONLY;
	kb = read_sysfs_ull(rdev, "max_sectors_kb");
	bdev->max_bytes = kb ? (uint32_t)(kb > 4096 ? 4096 : kb) << 10
			     : DM_FILE_MAX_BYTES;
	/* No discard limit means no discard; without a write-zeroes limit
	 * the kernel still zeroes, by writing. */
	bdev->discard_max =
		clamp_dataless(read_sysfs_ull(rdev, "discard_max_bytes"));
	wz = read_sysfs_ull(rdev, "write_zeroes_max_bytes");
	bdev->zeroes_max = clamp_dataless(wz ? wz : 64ull << 20);
	return 0;
}

/* Does @spec name an NBD export rather than a path? */
static bool is_nbd_uri(const char *spec)
{
	static const char *const schemes[] = {
		"nbd://",	"nbds://",	"nbd+unix://",
		"nbds+unix://", "nbd+vsock://", "nbds+vsock://",
	};
	size_t i;

	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (!strncmp(spec, schemes[i], strlen(schemes[i])))
			return true;
	return false;
}

DMIO_EXPORT struct block_device *dm_bdev_open(const char *spec,
					      unsigned int flags)
{
	struct block_device *bdev;
	struct stat st;
	int oflags, err;
	size_t len;

	if (!spec || (flags & ~DM_BDEV_KNOWN_FLAGS) ||
	    (flags & DM_BDEV_DIRECT && flags & DM_BDEV_BUFFERED)) {
		errno = EINVAL;
		return NULL;
	}
	if (!strncmp(spec, "fault:", 6))
		return dm_fault_open(spec, flags);
	if (is_nbd_uri(spec)) {
#ifdef DMIO_HAVE_NBD
		return dm_nbd_open(spec, flags);
#else
		errno = EPROTONOSUPPORT; /* built without libnbd */
		return NULL;
#endif
	}
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

	len = strlen(spec);
	bdev = calloc(1, sizeof(*bdev) + len + 1);
	if (!bdev)
		return NULL;
	memcpy(bdev->name, spec, len + 1);
	bdev->fd = -1;
	bdev->flags = flags;
	bdev->is_blk = S_ISBLK(st.st_mode);
	bdev->direct = flags & DM_BDEV_DIRECT ||
		       (bdev->is_blk && !(flags & DM_BDEV_BUFFERED));

	oflags = O_CLOEXEC | (flags & DM_BDEV_RDONLY ? O_RDONLY : O_RDWR);
	if (bdev->direct)
		oflags |= O_DIRECT;
	bdev->fd = open(spec, oflags);
	if (bdev->fd < 0 || fstat(bdev->fd, &st) < 0)
		goto fail;
	if (S_ISBLK(st.st_mode) != bdev->is_blk || S_ISDIR(st.st_mode)) {
		errno = ENODEV;
		goto fail;
	}

	bdev->id_dev = bdev->is_blk ? st.st_rdev : st.st_dev;
	bdev->id_ino = bdev->is_blk ? 0 : st.st_ino;
	if (bdev->is_blk) {
		err = probe_blk(bdev, st.st_rdev);
		if (err) {
			errno = -err;
			goto fail;
		}
	} else {
		bdev->size = (uint64_t)st.st_size;
		bdev->lbs = 512;
		bdev->max_bytes = DM_FILE_MAX_BYTES;
		bdev->discard_max = DM_DATALESS_MAX;
		bdev->zeroes_max = DM_DATALESS_MAX;
	}

	bdev->mem_align = 1;
	if (bdev->direct) {
		unsigned int mem, off;

		dio_align(bdev->fd, &mem, &off);
		if (off > bdev->lbs)
			bdev->lbs = off;
		/* Unknown memory alignment: ask for the block size, which
		 * every kernel accepts. */
		bdev->mem_align = mem ? mem : bdev->lbs;
	}
	/* Submissions stay whole blocks and whole pages. */
	bdev->discard_max &= ~(uint64_t)(bdev->lbs - 1);
	bdev->zeroes_max &= ~(uint64_t)(bdev->lbs - 1);
	bdev->max_bytes &= ~(uint32_t)(DM_PAGE_SIZE - 1);
	bdev->max_bytes &= ~(uint32_t)(bdev->lbs - 1);
	if (bdev->max_bytes < bdev->lbs || bdev->max_bytes < DM_PAGE_SIZE)
		bdev->max_bytes =
			bdev->lbs > DM_PAGE_SIZE ? bdev->lbs : DM_PAGE_SIZE;
	atomic_init(&bdev->inflight, 0);
	atomic_init(&bdev->no_zero_range, false);
	return bdev;

fail:
	err = errno;
	if (bdev->fd >= 0)
		close(bdev->fd);
	free(bdev);
	errno = err;
	return NULL;
}

/* I/O in flight on @bdev or on any device a fault: level routes it to.
 * Levels are read from the top down and a chunk passed on counts below
 * before it stops counting above, so a chunk on its way is always seen. */
static bool busy(const struct block_device *bdev)
{
	for (; bdev; bdev = bdev->fault ? dm_fault_inner(bdev->fault) : NULL)
		if (atomic_load(&bdev->inflight))
			return true;
	return false;
}

DMIO_EXPORT int dm_bdev_close(struct block_device *bdev)
{
	int ret = 0;

	if (!bdev)
		return 0;
	/* Refused means nothing is torn down, at any level. */
	if (busy(bdev))
		return -EBUSY;
	if (bdev->fault)
		return dm_fault_close(bdev);
#ifdef DMIO_HAVE_NBD
	if (bdev->nbd)
		return dm_nbd_close(bdev);
#endif
	if (close(bdev->fd) < 0 && errno != EINTR)
		ret = -errno;
	free(bdev);
	return ret;
}

/* The device a fault: wrapper (or a stack of them) passes I/O on to. */
static const struct block_device *storage(const struct block_device *bdev)
{
	while (bdev->fault)
		bdev = dm_fault_inner(bdev->fault);
	return bdev;
}

DMIO_EXPORT int dm_bdev_same(const struct block_device *a,
			     const struct block_device *b)
{
	if (!a || !b)
		return 0;
	a = storage(a);
	b = storage(b);
	if (a == b)
		return 1;
#ifdef DMIO_HAVE_NBD
	if (a->nbd || b->nbd)
		return a->nbd && b->nbd &&
		       !strcmp(dm_nbd_uri(a->nbd), dm_nbd_uri(b->nbd));
#endif
	return a->is_blk == b->is_blk && a->id_dev == b->id_dev &&
	       a->id_ino == b->id_ino;
}

DMIO_EXPORT sector_t dm_bdev_nr_sectors(const struct block_device *bdev)
{
	return bdev ? bdev->size >> SECTOR_SHIFT : 0;
}

DMIO_EXPORT unsigned dm_bdev_logical_block_size(const struct block_device *bdev)
{
	return bdev ? bdev->lbs : 0;
}

DMIO_EXPORT const char *dm_bdev_name(const struct block_device *bdev)
{
	return bdev ? bdev->name : NULL;
}

DMIO_EXPORT int dm_bdev_get_info(const struct block_device *bdev,
				 struct dm_bdev_info *info)
{
	if (!bdev || !info)
		return -EINVAL;
	info->kind = bdev->fault    ? "fault"
		     : bdev->nbd    ? "nbd"
		     : bdev->is_blk ? "block device"
				    : "file";
	info->nr_sectors = bdev->size >> SECTOR_SHIFT;
	info->logical_block_size = bdev->lbs;
	info->mem_align = bdev->mem_align;
	info->max_transfer = bdev->max_bytes;
	info->discard_max = bdev->discard_max;
	info->write_zeroes_max = bdev->zeroes_max;
	info->flags = (bdev->flags & DM_BDEV_RDONLY) |
		      (bdev->direct ? DM_BDEV_DIRECT : 0) |
		      (bdev->direct || bdev->contig ? 0 : DM_BDEV_BUFFERED);
	return 0;
}

DMIO_EXPORT int dm_bdev_set_timeout(struct block_device *bdev,
				    unsigned int timeout_ms)
{
	if (!bdev)
		return -EINVAL;
	if (bdev->fault)
		return dm_bdev_set_timeout(dm_fault_inner(bdev->fault),
					   timeout_ms);
#ifdef DMIO_HAVE_NBD
	if (bdev->nbd)
		return dm_nbd_set_timeout(bdev->nbd, timeout_ms);
#endif
	(void)timeout_ms;
	return -EOPNOTSUPP; /* local devices answer or fail by themselves */
}

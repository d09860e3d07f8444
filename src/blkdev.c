/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Devices: the public dm_bdev_* calls, and the table that finds a spec's
 * device kind by its prefix.  Each kind (local.c, nbd.c, fault.c) opens,
 * probes and closes its own devices behind struct dmi_bdev_ops.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"

#define DMI_BDEV_KNOWN_FLAGS                                                   \
	(DM_BDEV_RDONLY | DM_BDEV_DIRECT | DM_BDEV_BUFFERED)

#ifdef DMIO_HAVE_NBD
#define NBD_OPEN dmi_nbd_open
#else
#define NBD_OPEN no_libnbd
static struct block_device *no_libnbd(const char *spec, unsigned int flags)
{
	(void)spec;
	(void)flags;
	errno = EPROTONOSUPPORT; /* built without libnbd */
	return NULL;
}
#endif

/*
 * The device kinds, by the prefix of their specs: the first that matches
 * opens the device, and the empty prefix, last, takes paths.  A new kind
 * is one line here, KIND(prefix, its dmi_bdev_open_fn).
 */
#define DMI_BDEV_KINDS(KIND)                                                   \
	KIND("fault:", dmi_fault_open)                                         \
	KIND("nbd://", NBD_OPEN)                                               \
	KIND("nbds://", NBD_OPEN)                                              \
	KIND("nbd+unix://", NBD_OPEN)                                          \
	KIND("nbds+unix://", NBD_OPEN)                                         \
	KIND("nbd+vsock://", NBD_OPEN)                                         \
	KIND("nbds+vsock://", NBD_OPEN)                                        \
	KIND("", dmi_local_open)

#define DECLARE(prefix, open) dmi_bdev_open_fn open;
#define ENTRY(prefix, open)   {prefix, sizeof(prefix) - 1, open},

DMI_BDEV_KINDS(DECLARE)

static const struct {
	const char *prefix;
	size_t len;
	dmi_bdev_open_fn *open;
} kinds[] = {DMI_BDEV_KINDS(ENTRY)};

struct block_device *dmi_bdev_alloc(const char *spec,
				    const struct dmi_bdev_ops *ops, void *priv)
{
	size_t len = strlen(spec);
	struct block_device *bdev = calloc(1, sizeof(*bdev) + len + 1);

	if (!bdev)
		return NULL;
	memcpy(bdev->name, spec, len + 1);
	bdev->ops = ops;
	bdev->priv = priv;
	bdev->fd = -1;
	atomic_init(&bdev->inflight, 0);
	atomic_init(&bdev->no_zero_range, false);
	return bdev;
}

DMIO_EXPORT struct block_device *dm_bdev_open(const char *spec,
					      unsigned int flags)
{
	size_t i;

	if (!spec || (flags & ~DMI_BDEV_KNOWN_FLAGS) ||
	    (flags & DM_BDEV_DIRECT && flags & DM_BDEV_BUFFERED)) {
		errno = EINVAL;
		return NULL;
	}
	for (i = 0; strncmp(spec, kinds[i].prefix, kinds[i].len); i++)
		;
	return kinds[i].open(spec, flags);
}

/* I/O in flight on @bdev or on any device a wrapper (fault:) routes it to.
 * Levels are read from the top down and a chunk passed on counts below
 * before it stops counting above, so a chunk on its way is always seen. */
static bool busy(const struct block_device *bdev)
{
	for (; bdev; bdev = bdev->ops->inner ? bdev->ops->inner(bdev) : NULL)
		if (atomic_load(&bdev->inflight))
			return true;
	return false;
}

DMIO_EXPORT int dm_bdev_close(struct block_device *bdev)
{
	if (!bdev)
		return 0;
	/* Refused means nothing is torn down, at any level. */
	if (busy(bdev))
		return -EBUSY;
	return bdev->ops->close(bdev);
}

/* The device a wrapper (or a stack of them) passes I/O on to. */
static const struct block_device *storage(const struct block_device *bdev)
{
	while (bdev->ops->inner)
		bdev = bdev->ops->inner(bdev);
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
	/* Files and block devices are kinds of their own here. */
	return a->ops == b->ops && a->ops->same && a->ops->same(a, b);
}

DMIO_EXPORT sector_t dm_bdev_nr_sectors(const struct block_device *bdev)
{
	return bdev ? bdev->lim.size >> SECTOR_SHIFT : 0;
}

DMIO_EXPORT unsigned dm_bdev_logical_block_size(const struct block_device *bdev)
{
	return bdev ? bdev->lim.lbs : 0;
}

DMIO_EXPORT const char *dm_bdev_name(const struct block_device *bdev)
{
	return bdev ? bdev->name : NULL;
}

DMIO_EXPORT int dm_bdev_get_info(const struct block_device *bdev,
				 struct dm_bdev_info *info)
{
	const struct dmi_bdev_limits *lim;

	if (!bdev || !info)
		return -EINVAL;
	lim = &bdev->lim;
	info->kind = bdev->ops->kind;
	info->nr_sectors = lim->size >> SECTOR_SHIFT;
	info->logical_block_size = lim->lbs;
	info->mem_align = lim->mem_align;
	info->max_transfer = lim->max_bytes;
	info->discard_max = lim->discard_max;
	info->write_zeroes_max = lim->zeroes_max;
	info->flags = (bdev->flags & DM_BDEV_RDONLY) |
		      (lim->direct ? DM_BDEV_DIRECT : 0) |
		      (lim->direct || lim->contig ? 0 : DM_BDEV_BUFFERED);
	return 0;
}

DMIO_EXPORT int dm_bdev_set_timeout(struct block_device *bdev,
				    unsigned int timeout_ms)
{
	if (!bdev)
		return -EINVAL;
	/* Local devices answer or fail by themselves. */
	if (!bdev->ops->set_timeout)
		return -EOPNOTSUPP;
	return bdev->ops->set_timeout(bdev, timeout_ms);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * For device kinds (local.c, nbd.c, fault.c): what a kind implements and
 * what the engine reads from every device.  A kind is a file of its own
 * with a dmi_bdev_open_fn, a line in blkdev.c's prefix table, and a line in
 * meson.build.
 */
#ifndef DMIO_DEVICE_H
#define DMIO_DEVICE_H

#include "chunk.h"

/* What a device kind finds out at open: the facts the engine plans every
 * request from, without system calls. */
struct dmi_bdev_limits {
	uint64_t size;		/* bytes */
	unsigned int lbs;	/* logical block size */
	unsigned int mem_align; /* O_DIRECT buffer alignment */
	uint32_t max_bytes;	/* largest single submission */
	uint64_t discard_max;	/* bytes per discard; 0: cannot discard */
	uint64_t zeroes_max;	/* bytes per write-zeroes */
	bool is_blk;		/* a block device, not a regular file */
	bool direct;		/* opened O_DIRECT: alignment rules apply */
	bool contig;		/* takes one contiguous buffer per command */
};

/* What a device kind implements. */
struct dmi_bdev_ops {
	const char *kind; /* dm_bdev_get_info()'s name for it */
	/* Take one chunk (->next is NULL) to a thread of the device's own,
	 * which completes it through dmi_chunk_complete().  NULL: the device
	 * has a file descriptor and the client's backend does the I/O. */
	void (*submit)(struct block_device *bdev, struct dmi_chunk *c);
	/* Free the device and what it holds; nothing is in flight. */
	int (*close)(struct block_device *bdev);
	/* dm_bdev_set_timeout(); NULL: -EOPNOTSUPP. */
	int (*set_timeout)(struct block_device *bdev, unsigned int ms);
	/* A wrapper's: the device it passes chunks on to.  NULL otherwise. */
	struct block_device *(*inner)(const struct block_device *bdev);
	/* dm_bdev_same() of two devices of this kind (not wrappers, not the
	 * same handle).  NULL: never. */
	bool (*same)(const struct block_device *a,
		     const struct block_device *b);
};

struct block_device {
	const struct dmi_bdev_ops *ops;
	void *priv;	    /* the kind's own state */
	int fd;		    /* -1 unless the client's backend does the I/O */
	unsigned int flags; /* DM_BDEV_* as asked, RDONLY as found */
	struct dmi_bdev_limits lim; /* filled in by the opener */
	atomic_bool no_zero_range;  /* fallocate(ZERO_RANGE) said no: write */
	atomic_uint inflight;	    /* chunks issued and not completed */
	char name[];
};

/*
 * A device kind's opener, found by the prefix of the spec in blkdev.c's
 * table; returns NULL and sets errno on failure.  Declare yours with this
 * type (dmi_bdev_open_fn dmi_x_open;) so that the compiler checks it.
 */
typedef struct block_device *dmi_bdev_open_fn(const char *spec,
					      unsigned int flags);

/* A device named @spec, with no file descriptor and nothing in flight, for
 * an opener to fill in; free() frees it. */
struct block_device *dmi_bdev_alloc(const char *spec,
				    const struct dmi_bdev_ops *ops, void *priv);

#endif /* DMIO_DEVICE_H */

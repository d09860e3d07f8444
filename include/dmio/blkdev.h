/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * <dmio/blkdev.h> - the devices that regions name: regular files and Linux
 * block devices, opened once and shared by any number of requests.
 */
#ifndef DMIO_BLKDEV_H
#define DMIO_BLKDEV_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef DMIO_SECTOR_T_DEFINED
#define DMIO_SECTOR_T_DEFINED
typedef uint64_t sector_t; /* 512-byte sectors, always */
#define SECTOR_SHIFT 9
#endif

#define DM_BDEV_RDONLY	 (1u << 0) /* open read-only; writes fail with -EROFS */
#define DM_BDEV_DIRECT	 (1u << 1) /* O_DIRECT; the default for block devices */
#define DM_BDEV_BUFFERED (1u << 2) /* the page cache; the default for files */

struct block_device; /* opaque */

/*
 * dm_bdev_open - open a device for use in regions.
 * @spec:  path to a regular file or a block device, or an NBD URI:
 *         nbd://host[:port]/export, nbd+unix:///export?socket=PATH, and
 *         their TLS forms nbds:// and nbds+unix:// (libnbd's URI syntax,
 *         e.g. ?tls-psk-file=PATH with a user name before '@'), or a
 *         fault-injecting wrapper of any of these:
 *             fault:OPTIONS:SPEC
 *         OPTIONS, comma-separated: fail=S+N, fail-reads=S+N,
 *         fail-writes=S+N (sectors S..S+N-1, or "all"; writes include
 *         discard, write-zeroes and flush), drop-writes=S+N (report done,
 *         write nothing), after=N (rules apply from the (N+1)th I/O),
 *         errno=EIO|ENOSPC|EROFS|ENXIO|ETIMEDOUT|ECONNRESET|EOPNOTSUPP|number,
 *         delay=MS.  Up to 8 rules; e.g.
 *         "fault:fail-writes=0+8,errno=ENOSPC:/dev/loop0".
 * @flags: DM_BDEV_* (DIRECT and BUFFERED together are refused; NBD exports
 *         ignore both).
 *
 * The size, logical block size and maximum transfer are read once, here:
 * a file is a device of the size it had when opened.  It never creates a
 * file: a 0-byte file is a device of 0 sectors, on which every region with
 * sectors fails with ENXIO.  An NBD export gets a
 * thread and one connection (several when the server offers multi-conn);
 * connecting gives up after 5 seconds (ETIMEDOUT).
 * Returns the device, or NULL with errno set: ENOENT (missing), EISDIR (a
 * directory), ENODEV (a character device, FIFO or socket), EINVAL (bad
 * flags), EACCES/EROFS (permissions), ECONNREFUSED/ETIMEDOUT/... (NBD),
 * EPROTONOSUPPORT (an NBD URI in a build without libnbd), EAGAIN (no thread
 * for an NBD export or fault: device), or what open(2)
 * said.
 */
struct block_device *dm_bdev_open(const char *spec, unsigned int flags);

/*
 * dm_bdev_set_timeout - how long an NBD export may go without answering
 * while requests are in flight, in milliseconds (default 5000; 0: wait for
 * ever).  When it passes, everything in flight fails with -ETIMEDOUT, and
 * so does every later request until the export is reopened; a dropped
 * connection does the same with -ECONNRESET.  Other regions of the same
 * requests complete normally.  Returns 0, -EINVAL, or -EOPNOTSUPP for local
 * devices (their I/O cannot hang on a network).
 *
 * A timeout means no answer came in time, not that nothing happened: a
 * server that wakes up later may still carry out a write that was reported
 * failed.  Overlapping writes in flight to one export may land in any
 * order, as on any block device: a caller that needs an order waits for
 * the first write to complete before issuing the second.
 */
int dm_bdev_set_timeout(struct block_device *bdev, unsigned int timeout_ms);

/*
 * dm_bdev_close - close a device opened by dm_bdev_open().
 * Close does not flush: make writes durable first with a DM_IO_OP_FLUSH
 * request (or write with DM_IO_FUA).  Returns 0, -EBUSY (I/O to it is
 * still in flight: nothing is closed), or the negative errno of close(2).
 * NULL is ignored (returns 0).
 */
int dm_bdev_close(struct block_device *bdev);

/* dm_bdev_nr_sectors - the device's size in 512-byte sectors. */
sector_t dm_bdev_nr_sectors(const struct block_device *bdev);

/*
 * dm_bdev_logical_block_size - the smallest unit the device accepts, in
 * bytes (512 or 4096 for most block devices, 512 for buffered files).
 * With O_DIRECT, regions must start and end on this boundary.
 */
unsigned dm_bdev_logical_block_size(const struct block_device *bdev);

/*
 * dm_bdev_same - do @a and @b reach the same storage (beyond the kernel)?
 * True for two handles on one regular file (the same st_dev and st_ino,
 * whatever the path), on one block device (the same st_rdev), or on one
 * NBD export (the same URI in libnbd's normal form), looking through
 * fault: wrappers.  A partition and its disk, or a loop device and its
 * backing file, are not recognised.  kcopyd uses this to copy overlapping
 * regions safely.  Returns 1 or 0 (also for NULL).
 */
int dm_bdev_same(const struct block_device *a, const struct block_device *b);

/* dm_bdev_name - the spec the device was opened with. */
const char *dm_bdev_name(const struct block_device *bdev);

/* What a device is and can do, as probed at open (beyond the kernel). */
struct dm_bdev_info {
	const char *kind; /* "file", "block device", "nbd", "fault" */
	sector_t nr_sectors;
	unsigned int logical_block_size;
	unsigned int mem_align;	   /* O_DIRECT buffer alignment; 1 if none */
	unsigned int max_transfer; /* bytes per submission */
	uint64_t discard_max;	   /* bytes per discard; 0: cannot discard */
	uint64_t write_zeroes_max; /* bytes per write-zeroes */
	unsigned int flags;	   /* DM_BDEV_* in effect */
};

/*
 * dm_bdev_get_info - fill @info for @bdev.  Returns 0, or -EINVAL for a
 * NULL argument.  info->kind stays valid as long as the device.
 */
int dm_bdev_get_info(const struct block_device *bdev,
		     struct dm_bdev_info *info);

#ifdef __cplusplus
}
#endif

#endif /* DMIO_BLKDEV_H */

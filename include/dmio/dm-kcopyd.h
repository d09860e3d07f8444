/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * <dmio/dm-kcopyd.h> - the kernel's kcopyd in userspace: copy one region to
 * up to DM_KCOPYD_MAX_REGIONS destinations, or zero regions, with big jobs
 * cut into sub-jobs that run concurrently.  Built on dm_io().
 */
#ifndef DMIO_DM_KCOPYD_H
#define DMIO_DM_KCOPYD_H

#include <dmio/dm-io.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DM_KCOPYD_MAX_REGIONS 8

/* Flag bit numbers, as in the kernel: pass 1u << DM_KCOPYD_... */
#define DM_KCOPYD_IGNORE_ERROR 1 /* keep copying to healthy destinations */
#define DM_KCOPYD_WRITE_SEQ    2 /* issue writes in ascending order */
/* Beyond the kernel: every write is durable when it completes (DM_IO_FUA). */
#define DM_KCOPYD_FUA 16
/* Beyond the kernel: a failed read stops the job and is never written,
 * even when IGNORE_ERROR keeps it going past failed destinations. */
#define DM_KCOPYD_STOP_ON_READ_ERROR 17

/*
 * Called exactly once per accepted job, on the kcopyd client's own thread;
 * callbacks of one client never run concurrently.  @read_err is 1 when
 * reading the source failed; bit i of @write_err is set when destination i
 * failed.  The callback may start more jobs.
 */
typedef void (*dm_kcopyd_notify_fn)(int read_err, unsigned long write_err,
				    void *context);

/* Tuning for dm_kcopyd_client_create_opts(); 0 keeps the default. */
struct dm_kcopyd_options {
	unsigned int sub_job_sectors;  /* default 1024 (512 KiB), a multiple
					  of 8, at most 32768 (16 MiB) */
	unsigned int sub_jobs_per_job; /* in flight per job: default 8, <= 64 */
	/* The dm-io client to issue on, shared with its owner, who destroys
	 * it after the kcopyd client; NULL: one of its own. */
	struct dm_io_client *io_client;
};

/*
 * dm_kcopyd_client_create - a copier with its own thread, dm-io client and
 * page reserve (two jobs' worth of sub-jobs), so that jobs wait for pages
 * rather than fail for memory.
 * Returns the client, or NULL with errno set (ENOMEM, or why its dm-io
 * client could not be made).
 */
struct dm_kcopyd_client *dm_kcopyd_client_create(void);

/*
 * dm_kcopyd_client_create_opts - the same with other sub-job sizes, or on
 * the caller's dm-io client (opts->io_client), so that one program's copies
 * and its own dm_io() requests (a flush, say) share one client.
 * Returns NULL with errno EINVAL for options out of range.
 */
struct dm_kcopyd_client *
dm_kcopyd_client_create_opts(const struct dm_kcopyd_options *opts);

/*
 * dm_kcopyd_client_destroy - wait until every job has been notified, then
 * free the client.  Called from one of its own callbacks, it returns at
 * once and the client is freed once the remaining jobs are notified.
 * NULL is ignored.
 */
void dm_kcopyd_client_destroy(struct dm_kcopyd_client *kc);

/*
 * dm_kcopyd_copy - copy @from to each of @dests (1..DM_KCOPYD_MAX_REGIONS);
 * each destination receives from->count sectors at its own sector.
 * @flags: 1u << DM_KCOPYD_IGNORE_ERROR, _WRITE_SEQ (which turns
 * IGNORE_ERROR off), _FUA and/or _STOP_ON_READ_ERROR.  After an error no
 * new sub-jobs are issued, unless IGNORE_ERROR is set: then healthy
 * destinations still receive everything, and a sub-job whose read failed
 * is written with zeroes there, unless STOP_ON_READ_ERROR is set too.
 * A source of count 0 is notified at once.
 *
 * Regions on the same storage (dm_bdev_same()) may overlap: a destination
 * that overlaps the source is copied in an order that reads every source
 * sector before it is overwritten (from the end when the destination lies
 * above the source), as memmove() does.
 *
 * Returns 0 (then @fn runs exactly once) or a negative errno (then it never
 * runs): -EINVAL for a NULL client, region, device or @fn, 0 or too many
 * destinations, unknown flags, a destination whose count is smaller than
 * the source's, sector + count overflowing, two destinations that overlap
 * each other, or destinations that overlap the source from below and from
 * above; -ENOMEM.  A destination too small for its region is an I/O
 * failure, reported by its bit.
 */
int dm_kcopyd_copy(struct dm_kcopyd_client *kc, struct io_region *from,
		   unsigned int num_dests, struct io_region *dests,
		   unsigned int flags, dm_kcopyd_notify_fn fn, void *context);

/* Why a job failed (beyond the kernel): the first negative errno met, or
 * 0.  A sub-job that could not even be issued records -ENOMEM. */
struct dm_kcopyd_errors {
	int read;			  /* reading the source */
	int dests[DM_KCOPYD_MAX_REGIONS]; /* writing destination i */
};

/*
 * dm_kcopyd_copy_errors - dm_kcopyd_copy() that also fills @errors (when
 * not NULL) before @fn runs; @errors must stay valid until then.
 */
int dm_kcopyd_copy_errors(struct dm_kcopyd_client *kc, struct io_region *from,
			  unsigned int num_dests, struct io_region *dests,
			  unsigned int flags, dm_kcopyd_notify_fn fn,
			  void *context, struct dm_kcopyd_errors *errors);

/*
 * dm_kcopyd_zero - zero each of @dests over its own count, with the
 * device's write-zeroes where it has one and writes from a shared zero
 * page where not.  Arguments, return and notification as dm_kcopyd_copy(),
 * except that 1u << DM_KCOPYD_FUA is refused with -EINVAL (flush the
 * devices afterwards instead); read_err is always 0.
 */
int dm_kcopyd_zero(struct dm_kcopyd_client *kc, unsigned int num_dests,
		   struct io_region *dests, unsigned int flags,
		   dm_kcopyd_notify_fn fn, void *context);

/* dm_kcopyd_zero_errors - dm_kcopyd_zero() that also fills @errors. */
int dm_kcopyd_zero_errors(struct dm_kcopyd_client *kc, unsigned int num_dests,
			  struct io_region *dests, unsigned int flags,
			  dm_kcopyd_notify_fn fn, void *context,
			  struct dm_kcopyd_errors *errors);

#ifdef __cplusplus
}
#endif

#endif /* DMIO_DM_KCOPYD_H */

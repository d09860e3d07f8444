/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kcopyd: copy one region to many, built on the public dm_io() API (and
 * the library's detached-thread helper, for a destroy from a callback).
 *
 * A job is cut into sub-jobs.  Each sub-job takes one of the client's
 * preallocated, page-aligned buffers, reads the source into it, then
 * writes it to every destination with one multi-region dm_io(); the buffer
 * goes back when that write completes, or when the job fails.  The
 * client's thread hands out buffers (jobs wait when they run out), issues
 * the reads, and calls the notify functions, one at a time.  Completions
 * run on dm-io's completion threads and take the client's lock: a read's
 * completion issues its sub-job's write itself (asynchronously; for
 * ordered jobs with the lock held, so that none overtakes), a write's
 * gives the buffer back and, when the job is over, queues the job for the
 * thread to notify.  A zero job is one write-zeroes, whose completion
 * queues the job the same way.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <dmio/dm-kcopyd.h>

#include "engine.h"

#define DEFAULT_SUB_JOB_SECTORS 1024 /* 512 KiB, as in the kernel */
#define DEFAULT_SUB_JOBS	8
#define MAX_SUB_JOB_SECTORS	32768
#define MAX_SUB_JOBS		64
#define KNOWN_FLAGS                                                            \
	(1u << DM_KCOPYD_IGNORE_ERROR | 1u << DM_KCOPYD_WRITE_SEQ |            \
	 1u << DM_KCOPYD_FUA | 1u << DM_KCOPYD_STOP_ON_READ_ERROR)

struct kjob;

struct sub_job {
	struct kjob *job;
	struct sub_job *next; /* free list, or an ordered job's ready list */
	sector_t off;	      /* into the job */
	sector_t seq;	      /* ordered jobs: how much went out before it */
	sector_t count;
	void *buf;
	int errs[DM_KCOPYD_MAX_REGIONS]; /* this sub-job's region_errors */
};

struct kjob {
	struct dm_kcopyd_client *kc;
	struct kjob *next; /* the client's active or complete list */
	struct io_region from;
	unsigned int num_dests;
	struct io_region dests[DM_KCOPYD_MAX_REGIONS];
	unsigned int flags;
	dm_kcopyd_notify_fn fn;
	void *context;
	sector_t count;	    /* sectors to copy */
	sector_t next_off;  /* sectors handed to sub-jobs so far */
	sector_t write_off; /* ordered: the next write allowed out, by seq */
	bool ordered;	    /* writes go out in the order sub-jobs started */
	bool backward;	    /* sub-jobs start from the end of the job */
	unsigned int inflight;
	bool failed; /* no more sub-jobs */
	int read_err;
	unsigned long write_err;
	struct dm_kcopyd_errors errs;
	struct dm_kcopyd_errors *user_errs;
	int zero_errs[DM_KCOPYD_MAX_REGIONS];
	struct sub_job *ready; /* ordered: read, waiting for their turn */
};

struct dm_kcopyd_client {
	struct dm_io_client *io;
	bool own_io; /* made by us, not lent by opts->io_client */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake; /* for the thread: work to do */
	pthread_cond_t idle; /* for destroy: no jobs left */
	struct kjob *active, **active_tail;
	struct kjob *complete, **complete_tail;
	unsigned long nr_jobs; /* accepted, not yet notified */
	bool stop;
	sector_t sub_job_sectors;
	unsigned int sub_jobs_per_job;
	void *buffers;
	struct sub_job *free_subs;
	struct sub_job subs[];
};

static DMI_TLS struct dm_kcopyd_client *current_kc;

/* ---- ending sub-jobs and jobs (the client's lock held) ---- */

static void job_complete_locked(struct kjob *job)
{
	struct dm_kcopyd_client *kc = job->kc;
	struct kjob **link;

	for (link = &kc->active; *link; link = &(*link)->next) {
		if (*link == job) {
			*link = job->next;
			if (!*link)
				kc->active_tail = link;
			break;
		}
	}
	job->next = NULL;
	*kc->complete_tail = job;
	kc->complete_tail = &job->next;
}

static void sub_end_locked(struct sub_job *sj)
{
	struct kjob *job = sj->job;
	struct dm_kcopyd_client *kc = job->kc;

	sj->next = kc->free_subs;
	kc->free_subs = sj;
	job->inflight--;
	if (!job->inflight && (job->failed || job->next_off == job->count))
		job_complete_locked(job);
	pthread_cond_signal(&kc->wake);
}

static void fail_job_locked(struct kjob *job)
{
	job->failed = true;
	/* Sub-jobs waiting for their turn to write will never get it. */
	while (job->ready) {
		struct sub_job *sj = job->ready;

		job->ready = sj->next;
		sub_end_locked(sj);
	}
}

/* ---- I/O ---- */

/* Keep the first errno each destination met. */
static void note_dest_errors(struct kjob *job, const int *errs,
			     unsigned long bits)
{
	unsigned int i;

	for (i = 0; i < job->num_dests; i++)
		if (bits & 1UL << i && !job->errs.dests[i])
			job->errs.dests[i] = errs[i] ? errs[i] : -EIO;
}

static void write_done(unsigned long error, void *context)
{
	struct sub_job *sj = context;
	struct kjob *job = sj->job;

	pthread_mutex_lock(&job->kc->lock);
	job->write_err |= error;
	note_dest_errors(job, sj->errs, error);
	if (error && !(job->flags & 1u << DM_KCOPYD_IGNORE_ERROR))
		fail_job_locked(job);
	sub_end_locked(sj);
	pthread_mutex_unlock(&job->kc->lock);
}

static int start_write(struct sub_job *sj)
{
	struct kjob *job = sj->job;
	struct io_region where[DM_KCOPYD_MAX_REGIONS];
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE |
			  (job->flags & 1u << DM_KCOPYD_FUA ? DM_IO_FUA : 0),
		.mem = {.type = DM_IO_KMEM, .ptr.addr = sj->buf},
		.notify = {.fn = write_done, .context = sj},
		.client = job->kc->io,
		.region_errors = sj->errs,
	};
	unsigned int i;

	for (i = 0; i < job->num_dests; i++) {
		where[i].bdev = job->dests[i].bdev;
		where[i].sector = job->dests[i].sector + sj->off;
		where[i].count = sj->count;
	}
	return dm_io(&req, job->num_dests, where, NULL);
}

/* A write that could not even be issued failed on every destination. */
static unsigned long all_dests(const struct kjob *job)
{
	return job->num_dests == 8 * sizeof(unsigned long)
		       ? ~0UL
		       : (1UL << job->num_dests) - 1;
}

static void write_refused_locked(struct sub_job *sj)
{
	struct kjob *job = sj->job;
	unsigned long all = all_dests(job);
	unsigned int i;

	for (i = 0; i < job->num_dests; i++)
		sj->errs[i] = -ENOMEM;
	job->write_err |= all;
	note_dest_errors(job, sj->errs, all);
	fail_job_locked(job);
	sub_end_locked(sj);
}

/* Ordered jobs: let out, in order, the writes whose turn has come. */
static void seq_writes_locked(struct kjob *job)
{
	while (job->ready && job->ready->seq == job->write_off &&
	       !job->failed) {
		struct sub_job *sj = job->ready;

		job->ready = sj->next;
		job->write_off += sj->count;
		/* Issued with the lock held so that no other thread can
		 * overtake; dm_io() does not wait for I/O to complete. */
		if (start_write(sj)) {
			write_refused_locked(sj);
		}
	}
}

static void read_done(unsigned long error, void *context)
{
	struct sub_job *sj = context;
	struct kjob *job = sj->job;
	struct dm_kcopyd_client *kc = job->kc;
	struct sub_job **link;

	pthread_mutex_lock(&kc->lock);
	if (error) {
		job->read_err = 1;
		if (!job->errs.read)
			job->errs.read = sj->errs[0] ? sj->errs[0] : -EIO;
		/* As in the kernel: with IGNORE_ERROR the (zeroed) data is
		 * still written, so the destinations stay in step; unless
		 * the caller never wants data written that was not read. */
		if (!(job->flags & 1u << DM_KCOPYD_IGNORE_ERROR) ||
		    job->flags & 1u << DM_KCOPYD_STOP_ON_READ_ERROR)
			fail_job_locked(job);
	}
	if (job->failed) {
		sub_end_locked(sj);
	} else if (job->ordered) {
		for (link = &job->ready; *link && (*link)->seq < sj->seq;
		     link = &(*link)->next)
			;
		sj->next = *link;
		*link = sj;
		seq_writes_locked(job);
	} else {
		pthread_mutex_unlock(&kc->lock);
		if (start_write(sj)) {
			pthread_mutex_lock(&kc->lock);
			write_refused_locked(sj);
		} else {
			return;
		}
	}
	pthread_mutex_unlock(&kc->lock);
}

static int start_read(struct sub_job *sj)
{
	struct kjob *job = sj->job;
	struct io_region where = {
		.bdev = job->from.bdev,
		.sector = job->from.sector + sj->off,
		.count = sj->count,
	};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = sj->buf},
		.notify = {.fn = read_done, .context = sj},
		.client = job->kc->io,
		.region_errors = sj->errs,
	};

	return dm_io(&req, 1, &where, NULL);
}

/* ---- the client's thread ---- */

/* Take the next sub-job some active job may start, or NULL. */
static struct sub_job *next_sub_locked(struct dm_kcopyd_client *kc)
{
	struct kjob *job;
	struct sub_job *sj;

	if (!kc->free_subs)
		return NULL;
	for (job = kc->active; job; job = job->next)
		if (!job->failed && job->next_off < job->count &&
		    job->inflight < kc->sub_jobs_per_job)
			break;
	if (!job)
		return NULL;
	sj = kc->free_subs;
	kc->free_subs = sj->next;
	sj->job = job;
	sj->next = NULL;
	sj->seq = job->next_off;
	sj->count = job->count - job->next_off < kc->sub_job_sectors
			    ? job->count - job->next_off
			    : kc->sub_job_sectors;
	sj->off = job->backward ? job->count - job->next_off - sj->count
				: job->next_off;
	job->next_off += sj->count;
	job->inflight++;
	return sj;
}

static void *kcopyd_thread(void *arg)
{
	struct dm_kcopyd_client *kc = arg;

	current_kc = kc;
	pthread_mutex_lock(&kc->lock);
	for (;;) {
		struct sub_job *sj;
		struct kjob *job;

		if ((job = kc->complete)) {
			kc->complete = job->next;
			if (!kc->complete)
				kc->complete_tail = &kc->complete;
			pthread_mutex_unlock(&kc->lock);
			if (job->user_errs)
				*job->user_errs = job->errs;
			job->fn(job->read_err, job->write_err, job->context);
			free(job);
			pthread_mutex_lock(&kc->lock);
			if (!--kc->nr_jobs)
				pthread_cond_broadcast(&kc->idle);
			continue;
		}
		if ((sj = next_sub_locked(kc))) {
			/* Not under the lock: dm_io() may wait for memory,
			 * which completions (taking the lock) give back. */
			pthread_mutex_unlock(&kc->lock);
			if (start_read(sj)) {
				pthread_mutex_lock(&kc->lock);
				sj->job->read_err = 1;
				if (!sj->job->errs.read)
					sj->job->errs.read = -ENOMEM;
				fail_job_locked(sj->job);
				sub_end_locked(sj);
			} else {
				pthread_mutex_lock(&kc->lock);
			}
			continue;
		}
		if (kc->stop)
			break;
		pthread_cond_wait(&kc->wake, &kc->lock);
	}
	pthread_mutex_unlock(&kc->lock);
	return NULL;
}

/* ---- jobs ---- */

static bool region_ok(const struct io_region *r)
{
	return r->bdev && r->count <= UINT64_MAX - r->sector &&
	       r->sector + r->count <= (UINT64_MAX >> SECTOR_SHIFT);
}

static bool overlap(sector_t a, sector_t b, sector_t count)
{
	return count && a < b + count && b < a + count;
}

/*
 * Plan a copy whose regions may share a device (dm_bdev_same()): no
 * source sector may be written before it is read.  A destination below
 * the source it overlaps is safe when writes go out in the order the
 * sub-jobs start, from the front: each sub-job's write then only reaches
 * source sectors that earlier sub-jobs (and itself) have read.  One above
 * the source needs the same from the end, as memmove() does.  Returns 0,
 * or -EINVAL when no order serves: two destinations overlap each other,
 * or two overlap the source from either side.
 */
static int plan_overlap(struct kjob *job)
{
	const struct io_region *from = &job->from;
	bool below = false, above = false;
	unsigned int i, j;

	for (i = 0; i < job->num_dests; i++) {
		const struct io_region *d = &job->dests[i];

		for (j = 0; j < i; j++)
			if (dm_bdev_same(d->bdev, job->dests[j].bdev) &&
			    overlap(d->sector, job->dests[j].sector,
				    job->count))
				return -EINVAL;
		/* Onto itself: each sub-job writes back what it read. */
		if (d->sector == from->sector ||
		    !overlap(d->sector, from->sector, job->count) ||
		    !dm_bdev_same(d->bdev, from->bdev))
			continue;
		below |= d->sector < from->sector;
		above |= d->sector > from->sector;
	}
	if (below && above)
		return -EINVAL;
	job->ordered |= below || above;
	job->backward = above;
	return 0;
}

static int queue_job(struct dm_kcopyd_client *kc, struct kjob *job)
{
	pthread_mutex_lock(&kc->lock);
	kc->nr_jobs++;
	if (job->count) {
		*kc->active_tail = job;
		kc->active_tail = &job->next;
	} else {
		*kc->complete_tail = job;
		kc->complete_tail = &job->next;
	}
	pthread_cond_signal(&kc->wake);
	pthread_mutex_unlock(&kc->lock);
	return 0;
}

static struct kjob *new_job(struct dm_kcopyd_client *kc, unsigned int num_dests,
			    struct io_region *dests, unsigned int flags,
			    dm_kcopyd_notify_fn fn, void *context, int *err)
{
	struct kjob *job;
	unsigned int i;

	*err = -EINVAL;
	if (!kc || !dests || !fn || !num_dests ||
	    num_dests > DM_KCOPYD_MAX_REGIONS || flags & ~KNOWN_FLAGS)
		return NULL;
	for (i = 0; i < num_dests; i++)
		if (!region_ok(&dests[i]))
			return NULL;
	job = calloc(1, sizeof(*job));
	if (!job) {
		*err = -ENOMEM;
		return NULL;
	}
	job->kc = kc;
	job->num_dests = num_dests;
	memcpy(job->dests, dests, num_dests * sizeof(*dests));
	/* Writes in order cannot skip a failed one. */
	if (flags & 1u << DM_KCOPYD_WRITE_SEQ) {
		flags &= ~(1u << DM_KCOPYD_IGNORE_ERROR);
		job->ordered = true;
	}
	job->flags = flags;
	job->fn = fn;
	job->context = context;
	return job;
}

DMIO_EXPORT int
dm_kcopyd_copy_errors(struct dm_kcopyd_client *kc, struct io_region *from,
		      unsigned int num_dests, struct io_region *dests,
		      unsigned int flags, dm_kcopyd_notify_fn fn, void *context,
		      struct dm_kcopyd_errors *errors)
{
	struct kjob *job;
	unsigned int i;
	int err;

	if (!from || !region_ok(from))
		return -EINVAL;
	for (i = 0; dests && i < num_dests && i < DM_KCOPYD_MAX_REGIONS; i++)
		if (dests[i].count < from->count)
			return -EINVAL;
	job = new_job(kc, num_dests, dests, flags, fn, context, &err);
	if (!job)
		return err;
	job->from = *from;
	job->count = from->count;
	job->user_errs = errors;
	err = plan_overlap(job);
	if (err) {
		free(job);
		return err;
	}
	return queue_job(kc, job);
}

DMIO_EXPORT int dm_kcopyd_copy(struct dm_kcopyd_client *kc,
			       struct io_region *from, unsigned int num_dests,
			       struct io_region *dests, unsigned int flags,
			       dm_kcopyd_notify_fn fn, void *context)
{
	return dm_kcopyd_copy_errors(kc, from, num_dests, dests, flags, fn,
				     context, NULL);
}

static void zero_done(unsigned long error, void *context)
{
	struct kjob *job = context;
	struct dm_kcopyd_client *kc = job->kc;

	pthread_mutex_lock(&kc->lock);
	job->write_err = error;
	note_dest_errors(job, job->zero_errs, error);
	*kc->complete_tail = job;
	kc->complete_tail = &job->next;
	pthread_cond_signal(&kc->wake);
	pthread_mutex_unlock(&kc->lock);
}

DMIO_EXPORT int dm_kcopyd_zero_errors(struct dm_kcopyd_client *kc,
				      unsigned int num_dests,
				      struct io_region *dests,
				      unsigned int flags,
				      dm_kcopyd_notify_fn fn, void *context,
				      struct dm_kcopyd_errors *errors)
{
	struct dm_io_request req = {.bi_opf = DM_IO_OP_WRITE_ZEROES};
	struct kjob *job;
	unsigned int i;
	int err;

	/* There is no durable write-zeroes: say so rather than ignore it. */
	if (flags & 1u << DM_KCOPYD_FUA)
		return -EINVAL;
	job = new_job(kc, num_dests, dests, flags, fn, context, &err);
	if (!job)
		return err;
	job->user_errs = errors;
	for (i = 0; i < num_dests; i++)
		job->count |= dests[i].count;
	if (!job->count)
		return queue_job(kc, job);

	/* One write-zeroes over every destination: the engine cuts it by
	 * each device's limits and writes zero pages where it must. */
	req.notify.fn = zero_done;
	req.notify.context = job;
	req.client = kc->io;
	req.region_errors = job->zero_errs;
	pthread_mutex_lock(&kc->lock);
	kc->nr_jobs++;
	pthread_mutex_unlock(&kc->lock);
	err = dm_io(&req, num_dests, job->dests, NULL);
	if (err) {
		pthread_mutex_lock(&kc->lock);
		if (!--kc->nr_jobs)
			pthread_cond_broadcast(&kc->idle);
		pthread_mutex_unlock(&kc->lock);
		free(job);
	}
	return err;
}

DMIO_EXPORT int dm_kcopyd_zero(struct dm_kcopyd_client *kc,
			       unsigned int num_dests, struct io_region *dests,
			       unsigned int flags, dm_kcopyd_notify_fn fn,
			       void *context)
{
	return dm_kcopyd_zero_errors(kc, num_dests, dests, flags, fn, context,
				     NULL);
}

/* ---- clients ---- */

DMIO_EXPORT struct dm_kcopyd_client *
dm_kcopyd_client_create_opts(const struct dm_kcopyd_options *opts)
{
	unsigned int sectors = DEFAULT_SUB_JOB_SECTORS;
	unsigned int per_job = DEFAULT_SUB_JOBS, nr, i;
	struct dm_kcopyd_client *kc;
	int ret;

	if (opts && opts->sub_job_sectors)
		sectors = opts->sub_job_sectors;
	if (opts && opts->sub_jobs_per_job)
		per_job = opts->sub_jobs_per_job;
	if (sectors % 8 || sectors > MAX_SUB_JOB_SECTORS ||
	    per_job > MAX_SUB_JOBS) {
		errno = EINVAL;
		return NULL;
	}
	nr = 2 * per_job; /* two jobs at full depth */
	kc = calloc(1, sizeof(*kc) + nr * sizeof(struct sub_job));
	if (!kc)
		return NULL;
	kc->sub_job_sectors = sectors;
	kc->sub_jobs_per_job = per_job;
	kc->active_tail = &kc->active;
	kc->complete_tail = &kc->complete;
	/* Page-aligned so that O_DIRECT devices need no bounce; untouched
	 * pages cost nothing until a copy first uses them. */
	ret = posix_memalign(&kc->buffers, DM_PAGE_SIZE,
			     (size_t)nr * sectors << SECTOR_SHIFT);
	if (ret) {
		free(kc);
		errno = ret;
		return NULL;
	}
	for (i = 0; i < nr; i++) {
		kc->subs[i].buf = (char *)kc->buffers +
				  ((size_t)i * sectors << SECTOR_SHIFT);
		kc->subs[i].next = kc->free_subs;
		kc->free_subs = &kc->subs[i];
	}
	kc->io = opts ? opts->io_client : NULL;
	kc->own_io = !kc->io;
	if (kc->own_io)
		kc->io = dm_io_client_create();
	if (!kc->io)
		goto fail;
	pthread_mutex_init(&kc->lock, NULL);
	pthread_cond_init(&kc->wake, NULL);
	pthread_cond_init(&kc->idle, NULL);
	ret = pthread_create(&kc->thread, NULL, kcopyd_thread, kc);
	if (ret) {
		pthread_cond_destroy(&kc->idle);
		pthread_cond_destroy(&kc->wake);
		pthread_mutex_destroy(&kc->lock);
		if (kc->own_io)
			dm_io_client_destroy(kc->io);
		errno = ret;
		goto fail;
	}
	return kc;

fail:
	ret = errno;
	free(kc->buffers);
	free(kc);
	errno = ret;
	return NULL;
}

DMIO_EXPORT struct dm_kcopyd_client *dm_kcopyd_client_create(void)
{
	return dm_kcopyd_client_create_opts(NULL);
}

static void *destroy_client(void *arg)
{
	struct dm_kcopyd_client *kc = arg;

	pthread_mutex_lock(&kc->lock);
	while (kc->nr_jobs)
		pthread_cond_wait(&kc->idle, &kc->lock);
	kc->stop = true;
	pthread_cond_signal(&kc->wake);
	pthread_mutex_unlock(&kc->lock);
	pthread_join(kc->thread, NULL);
	if (kc->own_io)
		dm_io_client_destroy(kc->io);
	pthread_cond_destroy(&kc->idle);
	pthread_cond_destroy(&kc->wake);
	pthread_mutex_destroy(&kc->lock);
	free(kc->buffers);
	free(kc);
	return NULL;
}

DMIO_EXPORT void dm_kcopyd_client_destroy(struct dm_kcopyd_client *kc)
{
	if (!kc)
		return;
	if (current_kc != kc) {
		destroy_client(kc);
		return;
	}
	/* From one of its own callbacks: finish on a thread of its own once
	 * this callback has returned. */
	dmi_run_detached(destroy_client, kc);
}

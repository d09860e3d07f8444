// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio copy and dmio zero: kcopyd jobs over the regions, then a flush.
 *
 * One kcopyd job per stretch of the regions (up to 64 MiB), a few in
 * flight, so that the bar moves as jobs complete and a stop takes effect
 * soon; kcopyd cuts each job into its own concurrent sub-jobs.  Errors are
 * gathered per destination across jobs, and a destination that failed is
 * left out of later jobs so that it cannot slow the healthy ones.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dmio.h"

#define JOB_MIN_SECTORS (1u << 11)  /* 1 MiB: whole blocks of any device */
#define JOB_MAX_SECTORS (64u << 11) /* 64 MiB */
#define JOBS_PER_RUN	32	    /* aim for this many bar steps */
#define JOBS_IN_FLIGHT	4
#define WAKE_NS		100000000L /* redraw the bar this often */
#define RESCUE_SECTORS	1024u	   /* pieces of a stretch copied again */

struct run;

struct job {
	struct run *run;
	bool busy;
	bool wb_pending; /* done; its stretch not yet given to write-behind */
	bool rescue;	 /* a piece of a stretch copied again */
	bool zero_fill;	 /* noerror: written with zeroes for what failed */
	bool read_failed;
	sector_t pos; /* where it starts, in the order jobs are issued */
	sector_t len;
	uint64_t bytes; /* counted as done when the job completes */
	unsigned int nr;
	unsigned int map[DM_KCOPYD_MAX_REGIONS]; /* job region -> target */
	sector_t lens[DM_KCOPYD_MAX_REGIONS];
	struct dm_kcopyd_errors errs;
};

struct run {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct target *src; /* NULL: zeroing */
	struct target *dst;
	unsigned int nr;
	unsigned int inflight, max_inflight;
	sector_t span; /* sectors, in the order jobs are issued */
	bool backward;
	bool stop_on_error;
	uint64_t done; /* bytes of the jobs completed, for the bar */
	uint64_t read; /* bytes read from the source */
	int read_err;
	bool failed;
	/* Stretches whose read failed, to be copied again in pieces. */
	struct sector_range fails[JOBS_IN_FLIGHT];
	unsigned int nr_fails;
	sector_t stop_pos; /* the copy is good before this */
	sector_t bad_at[DM_KCOPYD_MAX_REGIONS]; /* a destination failed here */
	struct writeback *wb; /* buffered block devices; NULL: none */
	struct job jobs[JOBS_IN_FLIGHT];
};

/*
 * Start the dm-io client and, when @kcopyd, a kcopyd client that issues
 * on it, so that the copy and the final flush share one ring and one
 * completion thread.  Returns 0, or EXIT_USAGE once the reason is printed.
 */
int clients_start(struct clients *c, bool kcopyd)
{
	const char *backend = getenv("DMIO_BACKEND");
	struct dm_kcopyd_options opts = {0};
	int err;

	c->kc = NULL;
	c->io = dm_io_client_create();
	if (c->io && !kcopyd)
		return 0;
	opts.io_client = c->io;
	if (c->io)
		c->kc = dm_kcopyd_client_create_opts(&opts);
	if (c->kc)
		return 0;
	err = errno;
	dm_io_client_destroy(c->io);
	c->io = NULL;
	if (err == EINVAL && backend)
		return fatal(
			"DMIO_BACKEND='%s' is neither io_uring nor threads",
			backend);
	return fatal("cannot start the I/O clients: %s", strerror(err));
}

/* The kcopyd client first: it issues on the dm-io client. */
void clients_stop(struct clients *c)
{
	dm_kcopyd_client_destroy(c->kc);
	dm_io_client_destroy(c->io);
}

static void on_signal(int sig)
{
	interrupted = sig;
}

/*
 * Ctrl-C and SIGTERM only set a flag that the copy and compare loops
 * check, so that I/O in flight drains and the destinations are flushed
 * and reported; a second one kills as usual (SA_RESETHAND).  Start the
 * library's threads with @blocked blocked, so that the main thread is the
 * one woken; SA_RESTART keeps any other thread's system calls going.
 */
void catch_signals(sigset_t *blocked)
{
	struct sigaction sa = {.sa_handler = on_signal,
			       .sa_flags = SA_RESETHAND | SA_RESTART};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(blocked);
	sigaddset(blocked, SIGINT);
	sigaddset(blocked, SIGTERM);
}

static bool overlap(sector_t a, sector_t b, sector_t count)
{
	return count && a < b + count && b < a + count;
}

/* Does @dst overlap @src on the same storage: -1 from below, 1 from
 * above, 0 not (or at the same sector, which is a copy onto itself). */
int overlap_side(const struct target *src, const struct target *dst)
{
	if (!dst->bdev || dst->sector == src->sector ||
	    !overlap(src->sector, dst->sector, src->count) ||
	    !dm_bdev_same(src->bdev, dst->bdev))
		return 0;
	return dst->sector > src->sector ? 1 : -1;
}

static bool healthy(const struct target *t)
{
	return t->bdev && !t->err;
}

/* Where the stretch at @pos (in the order jobs are issued) starts in the
 * regions: a backward copy issues its last stretch first. */
static sector_t stretch_start(const struct run *run, sector_t pos, sector_t len)
{
	return run->backward ? run->span - pos - len : pos;
}

static sector_t min_sector(sector_t a, sector_t b)
{
	return a < b ? a : b;
}

/* Runs on kcopyd's thread. */
static void job_done(int read_err, unsigned long write_err, void *context)
{
	struct job *job = context;
	struct run *run = job->run;
	unsigned int i;

	pthread_mutex_lock(&run->lock);
	job->read_failed = read_err;
	if (read_err && !run->read_err)
		run->read_err = job->errs.read ? job->errs.read : -EIO;
	if (!read_err && run->src)
		run->read += BYTES(job->len);
	/* A stretch that failed to read is copied again in pieces, once
	 * nothing is in flight; with STOP_ON_READ_ERROR nothing of it may
	 * have been written, so nothing of it counts yet. */
	if (read_err && !job->rescue)
		run->fails[run->nr_fails++] =
			(struct sector_range){job->pos, job->len};
	for (i = 0; i < job->nr; i++) {
		struct target *t = &run->dst[job->map[i]];

		if (write_err & 1UL << i) {
			if (!t->err)
				t->err = job->errs.dests[i] ? job->errs.dests[i]
							    : -EIO;
			run->bad_at[job->map[i]] =
				min_sector(run->bad_at[job->map[i]], job->pos);
		} else if (!read_err || job->zero_fill) {
			t->written += BYTES(job->lens[i]);
		}
	}
	if (write_err)
		run->failed = true;
	/* Without IGNORE_ERROR the job stopped there for everyone. */
	if (write_err && run->stop_on_error)
		run->stop_pos = min_sector(run->stop_pos, job->pos);
	run->done += job->bytes;
	job->wb_pending = run->wb != NULL;
	job->busy = false;
	run->inflight--;
	pthread_cond_signal(&run->wake);
	pthread_mutex_unlock(&run->lock);
}

/*
 * Fill @dests with the healthy destinations' share of the stretch at
 * @pos: all of it for a copy, what each region has of it for zeroing.
 * Returns how many there are.
 */
static unsigned int job_regions(struct run *run, struct job *job, sector_t pos,
				sector_t len, struct io_region *dests)
{
	sector_t off = stretch_start(run, pos, len);
	unsigned int i;

	job->pos = pos;
	job->len = len;
	job->nr = 0;
	job->bytes = run->src ? BYTES(len) : 0;
	for (i = 0; i < run->nr; i++) {
		struct target *t = &run->dst[i];
		sector_t n = len;

		if (!healthy(t))
			continue;
		if (!run->src)
			n = t->count <= off	   ? 0
			    : t->count - off < len ? t->count - off
						   : len;
		if (!n)
			continue;
		dests[job->nr] =
			(struct io_region){t->bdev, t->sector + off, n};
		job->lens[job->nr] = n;
		job->map[job->nr++] = i;
		if (!run->src)
			job->bytes += BYTES(n);
	}
	return job->nr;
}

static struct job *free_job(struct run *run)
{
	unsigned int i;

	for (i = 0; i < JOBS_IN_FLIGHT; i++)
		if (!run->jobs[i].busy && !run->jobs[i].wb_pending)
			return &run->jobs[i];
	return NULL;
}

/* Start @job (its regions set) with the run's lock held; 0 or kcopyd's
 * refusal. */
static int start_job(struct clients *c, struct run *run, struct job *job,
		     struct io_region *dests, unsigned int flags)
{
	struct io_region from;
	int ret;

	job->busy = true;
	job->read_failed = false;
	run->inflight++;
	pthread_mutex_unlock(&run->lock);
	if (run->src) {
		from = (struct io_region){
			run->src->bdev,
			run->src->sector +
				stretch_start(run, job->pos, job->len),
			job->len};
		ret = dm_kcopyd_copy_errors(c->kc, &from, job->nr, dests, flags,
					    job_done, job, &job->errs);
	} else {
		ret = dm_kcopyd_zero_errors(c->kc, job->nr, dests, flags,
					    job_done, job, &job->errs);
	}
	pthread_mutex_lock(&run->lock);
	if (ret) {
		job->busy = false;
		run->inflight--;
	}
	return ret;
}

/* Hand the stretches of the jobs done since the last call to write-behind,
 * the lock held (dropped meanwhile); returns how many. */
static unsigned int write_behind(struct run *run)
{
	sector_t done[JOBS_IN_FLIGHT][2];
	unsigned int i, n = 0;

	for (i = 0; i < JOBS_IN_FLIGHT; i++) {
		struct job *job = &run->jobs[i];

		if (!job->wb_pending)
			continue;
		done[n][0] = stretch_start(run, job->pos, job->len);
		done[n++][1] = job->len;
		job->wb_pending = false;
	}
	if (!n)
		return 0;
	pthread_mutex_unlock(&run->lock);
	for (i = 0; i < n; i++)
		writeback_job_done(run->wb, done[i][0], done[i][1]);
	pthread_mutex_lock(&run->lock);
	return n;
}

/* Wait (the lock held) for the jobs in flight, or a tenth of a second. */
static void wait_a_little(struct run *run, struct progress *pg)
{
	struct timespec ts;
	uint64_t done;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += WAKE_NS;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	/* Jobs freed by write-behind are a wake-up of their own. */
	if (!write_behind(run)) {
		pthread_cond_timedwait(&run->wake, &run->lock, &ts);
		write_behind(run);
	}
	done = run->done;
	pthread_mutex_unlock(&run->lock);
	progress_update(pg, done);
	pthread_mutex_lock(&run->lock);
}

/* Can the source's @len sectors at @pos (in issue order) be read?  A
 * plain read, for telling where an unreadable stretch ends. */
static bool readable(struct clients *c, struct run *run, sector_t pos,
		     sector_t len, void *buf)
{
	struct io_region where = {
		run->src->bdev, run->src->sector + stretch_start(run, pos, len),
		len};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = c->io,
	};

	return !dm_io(&req, 1, &where, NULL);
}

/* Note the unreadable source sectors @r in @res, joined to the last range
 * when they touch it on either side (a backward copy finds them from the
 * end). */
void note_unreadable(struct transfer_result *res, struct sector_range r)
{
	struct sector_range *last = res->nr_bad ? &res->bad[res->nr_bad - 1]
						: NULL,
			    *more;

	if (last && (last->sector + last->count == r.sector ||
		     r.sector + r.count == last->sector)) {
		last->sector = min_sector(last->sector, r.sector);
		last->count += r.count;
		return;
	}
	more = realloc(res->bad, (res->nr_bad + 1) * sizeof(*more));
	if (!more)
		return; /* the total still says; the list misses one */
	res->bad = more;
	res->bad[res->nr_bad++] = r;
}

/*
 * Copy the stretch [@pos, +@len) again in pieces (the lock held, nothing
 * in flight), halving a piece that fails to read down to the source's
 * logical block, so that exactly the unreadable blocks are found.  Those
 * are written as zeroes with --noerror, and the copy goes on; otherwise
 * the copy stops at the first, which is noted in @res with the blocks
 * after it that cannot be read either.
 */
static void rescue(struct clients *c, struct run *run, sector_t pos,
		   sector_t len, const struct transfer_opts *o,
		   unsigned int flags, struct progress *pg,
		   struct transfer_result *res)
{
	struct io_region dests[DM_KCOPYD_MAX_REGIONS];
	sector_t unit = dm_bdev_logical_block_size(run->src->bdev) >>
			SECTOR_SHIFT,
		 end = pos + len, piece = RESCUE_SECTORS, n, q;
	struct job *job = &run->jobs[0];
	void *buf = NULL;

	if (!unit)
		unit = 1;
	job->rescue = true;
	while (pos < end && !interrupted) {
		n = end - pos < piece ? end - pos : piece;
		if (!job_regions(run, job, pos, n, dests))
			break;
		job->zero_fill = false;
		res->submit_err = start_job(c, run, job, dests, flags);
		while (!res->submit_err && job->busy)
			wait_a_little(run, pg);
		if (res->submit_err || (run->stop_on_error && run->failed))
			break;
		if (!job->read_failed) {
			pos += n;
			piece = piece * 2 > RESCUE_SECTORS ? RESCUE_SECTORS
							   : piece * 2;
			continue;
		}
		if (n > unit) {
			piece = n / 2 / unit * unit;
			piece = piece ? piece : unit;
			continue;
		}
		/* [pos, q) is unreadable, block by block. */
		if (!buf && posix_memalign(&buf, DM_PAGE_SIZE, BYTES(unit)))
			break;
		pthread_mutex_unlock(&run->lock);
		for (q = pos + n;
		     q < end && !interrupted && !readable(c, run, q, unit, buf);
		     q += unit)
			;
		pthread_mutex_lock(&run->lock);
		note_unreadable(res, (struct sector_range){
					     stretch_start(run, pos, q - pos),
					     q - pos});
		if (!o->noerror) {
			run->stop_pos = pos;
			break;
		}
		if (!job_regions(run, job, pos, q - pos, dests))
			break;
		job->zero_fill = true;
		res->submit_err = start_job(
			c, run, job, dests,
			flags & ~(1u << DM_KCOPYD_STOP_ON_READ_ERROR));
		while (!res->submit_err && job->busy)
			wait_a_little(run, pg);
		if (res->submit_err)
			break;
		pos = q;
		piece = unit;
	}
	job->rescue = false;
	job->zero_fill = false;
	free(buf);
	if (pos < end && run->stop_pos > pos)
		run->stop_pos = pos;
}

/* A failed flush fails its destination, since its data may not be
 * durable. */
void flush_destinations(struct clients *c, struct target *dst, unsigned int nr)
{
	struct io_region where[DM_KCOPYD_MAX_REGIONS];
	int errs[DM_KCOPYD_MAX_REGIONS] = {0};
	unsigned int map[DM_KCOPYD_MAX_REGIONS], n = 0, i;
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_FLUSH,
		.client = c->io,
		.region_errors = errs,
	};
	unsigned long bits = 0;
	int ret;

	for (i = 0; i < nr; i++) {
		if (!healthy(&dst[i]))
			continue;
		where[n] = (struct io_region){dst[i].bdev, 0, 0};
		map[n++] = i;
	}
	if (!n)
		return;
	ret = dm_io(&req, n, where, &bits);
	for (i = 0; i < n; i++) {
		if (ret != -EIO)
			errs[i] = ret;
		else if (bits & 1UL << i && !errs[i])
			errs[i] = -EIO;
		if (errs[i])
			dst[map[i]].err = errs[i];
	}
}

/* Settle what each destination holds: the stretch before the first place
 * where the run stopped or the destination failed, in issue order. */
static void settle_destinations(struct run *run, sector_t pos,
				const struct transfer_opts *o)
{
	bool stopped_early;
	unsigned int i;

	if (run->stop_pos > pos)
		run->stop_pos = pos;
	stopped_early =
		run->stop_pos < run->span || (o->stop_on_error && run->failed);
	for (i = 0; i < run->nr; i++) {
		struct target *t = &run->dst[i];
		sector_t good = min_sector(run->stop_pos, run->bad_at[i]);
		sector_t count = run->src ? run->span : t->count;

		if (!t->bdev) {
			t->good_from = t->good_to = 0;
			continue;
		}
		if (good > count)
			good = count;
		t->good_from = run->backward ? count - good : 0;
		t->good_to = run->backward ? count : good;
		/* Destinations that did not fail themselves still missed
		 * the rest. */
		if (healthy(t) && (stopped_early || good < count))
			t->err = interrupted ? -EINTR : -ECANCELED;
	}
}

/*
 * Copy @src to every healthy destination of @dst, or zero them when @src
 * is NULL, then make them durable as @o asks.  A source overlapping a
 * destination on the same storage is copied one job at a time, from the
 * end when the destination lies above it.  Per-destination errors land
 * in dst[i].err; the rest in @res.
 */
void transfer(struct clients *c, struct target *src, struct target *dst,
	      unsigned int nr, const struct transfer_opts *o,
	      struct progress *pg, struct transfer_result *res)
{
	struct run run = {.src = src,
			  .dst = dst,
			  .nr = nr,
			  .max_inflight = JOBS_IN_FLIGHT,
			  .stop_on_error = o->stop_on_error,
			  .wb = src ? writeback_start(dst, nr) : NULL};
	struct io_region dests[DM_KCOPYD_MAX_REGIONS];
	sector_t step, pos = 0;
	pthread_condattr_t attr;
	unsigned int flags = 0, i;

	memset(res, 0, sizeof(*res));
	if (src)
		run.span = src->count;
	for (i = 0; i < nr; i++) {
		if (!src && dst[i].count > run.span)
			run.span = dst[i].count;
		if (src && overlap_side(src, &dst[i])) {
			run.max_inflight = 1;
			run.backward |= overlap_side(src, &dst[i]) > 0;
		}
	}
	res->backward = run.backward;
	run.stop_pos = run.span;
	step = (run.span / JOBS_PER_RUN + JOB_MIN_SECTORS - 1) /
	       JOB_MIN_SECTORS * JOB_MIN_SECTORS;
	step = step < JOB_MIN_SECTORS	? JOB_MIN_SECTORS
	       : step > JOB_MAX_SECTORS ? JOB_MAX_SECTORS
					: step;
	if (!o->stop_on_error)
		flags |= 1u << DM_KCOPYD_IGNORE_ERROR;
	/* The tool never writes what it did not read; --noerror writes
	 * zeroes for exactly the blocks that failed, found by rescue(). */
	if (src)
		flags |= 1u << DM_KCOPYD_STOP_ON_READ_ERROR;
	if (o->durability == DURABLE_FUA)
		flags |= 1u << DM_KCOPYD_FUA;
	for (i = 0; i < JOBS_IN_FLIGHT; i++)
		run.jobs[i].run = &run;
	/* Destinations that could not be opened count as the first error. */
	for (i = 0; i < nr; i++) {
		run.failed |= dst[i].err != 0;
		run.bad_at[i] = dst[i].err ? 0 : run.span;
	}

	pthread_mutex_init(&run.lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&run.wake, &attr);
	pthread_condattr_destroy(&attr);

	pthread_mutex_lock(&run.lock);
	for (;;) {
		bool stop = interrupted || res->submit_err ||
			    run.stop_pos < run.span ||
			    (o->stop_on_error && run.failed);
		struct job *job;

		while (!stop && !run.nr_fails && pos < run.span &&
		       run.inflight < run.max_inflight &&
		       (job = free_job(&run))) {
			sector_t len =
				run.span - pos < step ? run.span - pos : step;

			if (!job_regions(&run, job, pos, len, dests)) {
				/* A copy with no destination left is over;
				 * zeroing goes on to the longer regions. */
				stop = src != NULL;
				pos += src ? 0 : len;
				continue;
			}
			res->submit_err = start_job(c, &run, job, dests, flags);
			if (res->submit_err)
				stop = true;
			else
				pos += len;
			res->started |= !res->submit_err;
		}
		if (!run.inflight && run.nr_fails && !stop) {
			/* Copy again, in order, what failed to read. */
			struct sector_range f = run.fails[0];

			for (i = 1; i < run.nr_fails; i++)
				if (run.fails[i].sector < f.sector)
					f = run.fails[i];
			for (i = 0; run.fails[i].sector != f.sector; i++)
				;
			run.fails[i] = run.fails[--run.nr_fails];
			rescue(c, &run, f.sector, f.count, o, flags, pg, res);
			continue;
		}
		if (!run.inflight && (stop || pos >= run.span))
			break;
		wait_a_little(&run, pg);
	}
	/* What failed to read and was not copied again is not good. */
	for (i = 0; i < run.nr_fails; i++)
		run.stop_pos = min_sector(run.stop_pos, run.fails[i].sector);
	res->bytes = src ? run.read : run.done;
	res->read_err = run.read_err;
	write_behind(&run);
	pthread_mutex_unlock(&run.lock);
	pthread_cond_destroy(&run.wake);
	pthread_mutex_destroy(&run.lock);
	writeback_end(run.wb);

	settle_destinations(&run, pos, o);
	if (o->durability == DURABLE_FLUSH && res->started) {
		progress_phase(pg, "flushing", run.done);
		flush_destinations(c, dst, nr);
	}
}

/* ---- the commands ---- */

struct transfer_cli {
	bool copy; /* else zero */
	bool no_create, truncate;
	struct common_opts co;
	struct transfer_opts opts;
};

/*
 * Open a destination, or mark a missing file for creation, and check that
 * its region fits the copy (@count sectors) before any I/O.  A destination
 * that cannot be opened fails alone; a region that cannot fit ends the
 * command.  Returns 0 or EXIT_USAGE.
 */
static int prepare_destination(struct target *t, const struct target *src,
			       const struct transfer_cli *c)
{
	sector_t size, need;
	struct stat st;
	int ret;

	if (src && t->has_count && t->count < src->count)
		return fatal("destination region '%s' is shorter than the "
			     "copy (%llu sectors)",
			     t->arg, (unsigned long long)src->count);
	if (src && BYTES(t->sector) > INT64_MAX - BYTES(src->count))
		return usage_error("region '%s' is out of range", t->arg);
	if (src && target_is_path(t) && stat(t->spec, &st) && errno == ENOENT) {
		if (c->no_create)
			return fatal("destination '%s' does not exist "
				     "(--no-create)",
				     t->spec);
		t->create = true;
		return 0;
	}
	ret = target_open(t, c->co.open_flags);
	if (ret) {
		t->err = ret;
		return 0;
	}
	size = dm_bdev_nr_sectors(t->bdev);
	if (!src && !t->has_count)
		t->count = size > t->sector ? size - t->sector : 0;
	need = src ? src->count : t->count;
	if (t->sector > size || need > size - t->sector)
		return fatal("destination '%s' is too small: the region needs "
			     "%llu sectors, the device has %llu",
			     t->arg, (unsigned long long)(t->sector + need),
			     (unsigned long long)size);
	return check_aligned(t, need, src ? "destination region" : "region");
}

/*
 * The key that names a file still to be created: its folder's real path
 * and its own name, so that "new.img" and "./new.img" are seen to be one.
 * NULL when the folder cannot be resolved (creating it will fail).
 */
static char *new_file_key(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, *real, *key = NULL;

	dir = slash ? strndup(path, (size_t)(slash - path + 1)) : strdup(".");
	real = dir ? realpath(dir, NULL) : NULL;
	if (real && asprintf(&key, "%s/%s", real, slash ? slash + 1 : path) < 0)
		key = NULL;
	free(real);
	free(dir);
	return key;
}

static bool same_new_file(const struct target *a, const struct target *b)
{
	char *ka, *kb;
	bool same;

	if (!a->create || !b->create)
		return false;
	ka = new_file_key(a->spec);
	kb = new_file_key(b->spec);
	same = ka && kb && !strcmp(ka, kb);
	free(ka);
	free(kb);
	return same;
}

/*
 * Before any I/O: the same storage named twice among the destinations
 * (whatever the spelling), or a source overlapping destinations from
 * both sides, cannot be copied safely.  Returns 0 or EXIT_USAGE.
 */
static int check_same_storage(const struct target *src,
			      const struct target *dst, unsigned int nr)
{
	/* A stream's length is unknown: any two regions of a device meet. */
	sector_t len = src->stream ? (sector_t)1 << 62 : src->count;
	bool below = false, above = false;
	unsigned int i, j;

	for (i = 0; i < nr; i++) {
		for (j = 0; j < i; j++)
			if (same_new_file(&dst[j], &dst[i]) ||
			    (dst[i].bdev && dst[j].bdev &&
			     dm_bdev_same(dst[i].bdev, dst[j].bdev) &&
			     dst[i].sector < dst[j].sector + len &&
			     dst[j].sector < dst[i].sector + len))
				return fatal("destinations '%s' and '%s' are "
					     "the same device and overlap",
					     dst[j].arg, dst[i].arg);
		below |= overlap_side(src, &dst[i]) < 0;
		above |= overlap_side(src, &dst[i]) > 0;
	}
	if (below && above)
		return fatal("the source overlaps destinations below and above "
			     "it on the same device: copy to them one at a "
			     "time");
	return 0;
}

/* --truncate works on regular files: say so before any I/O. */
static int check_truncate(const struct target *t)
{
	struct stat st;

	if (t->create ||
	    (target_is_path(t) && !stat(t->spec, &st) && S_ISREG(st.st_mode)))
		return 0;
	return usage_error("--truncate: destination '%s' is not a regular "
			   "file",
			   t->arg);
}

/* End each complete file destination at the end of its copy. */
static void truncate_destinations(struct target *dst, unsigned int nr,
				  sector_t count)
{
	unsigned int i;

	for (i = 0; i < nr; i++) {
		if (dst[i].err)
			continue;
		if (truncate(dst[i].spec, (off_t)BYTES(dst[i].sector + count)))
			dst[i].err = -errno;
	}
}

static void print_json(FILE *out, const struct transfer_cli *c,
		       const struct target *src, const struct target *dst,
		       unsigned int nr, const struct transfer_result *res,
		       double seconds, int status)
{
	unsigned int i;

	fprintf(out,
		"{\"command\":\"%s\",\"source\":", c->copy ? "copy" : "zero");
	json_string(out, src ? src->arg : NULL);
	fprintf(out, ",\"source_error\":");
	json_string(out, res->read_err ? error_text(res->read_err) : NULL);
	fprintf(out, ",\"bytes\":%llu,", (unsigned long long)res->bytes);
	if (src)
		fprintf(out, "\"bytes_read\":%llu,",
			(unsigned long long)res->bytes);
	fprintf(out, "\"seconds\":%.3f,\"mib_per_s\":%.1f,\"interrupted\":%s",
		seconds, mib_per_s(res->bytes, seconds),
		interrupted ? "true" : "false");
	if (src) {
		fprintf(out, ",\"unreadable\":[");
		for (i = 0; i < res->nr_bad; i++)
			fprintf(out, "%s{\"sector\":%llu,\"count\":%llu}",
				i ? "," : "",
				(unsigned long long)res->bad[i].sector,
				(unsigned long long)res->bad[i].count);
		fprintf(out, "],\"unreadable_zeroed\":%s",
			c->opts.noerror && res->nr_bad ? "true" : "false");
	}
	fprintf(out, ",\"destinations\":[");
	for (i = 0; i < nr; i++) {
		fprintf(out, "%s{\"spec\":", i ? "," : "");
		json_string(out, dst[i].arg);
		fprintf(out, ",\"ok\":%s,\"errno\":%d,\"error\":",
			dst[i].err ? "false" : "true", -dst[i].err);
		json_string(out, dst[i].err ? error_text(dst[i].err) : NULL);
		fprintf(out,
			",\"bytes_written\":%llu,\"correct_from\":%llu,"
			"\"correct_to\":%llu",
			(unsigned long long)dst[i].written,
			(unsigned long long)dst[i].good_from,
			(unsigned long long)dst[i].good_to);
		fprintf(out, "}");
	}
	fprintf(out, "],\"exit\":%d}\n", status);
}
/*
 * The summary line's words after the amount: "to 3 destinations" when
 * every destination received all that was read, else what each one did
 * receive.  Returns the verb.
 */
static const char *summary(const struct transfer_cli *c,
			   const struct target *dst, unsigned int nr,
			   const struct transfer_result *res, char *what,
			   size_t len)
{
	const char *dests = nr == 1 ? "destination" : "destinations";
	bool all = true, same = true;
	char size[24];
	size_t used;
	unsigned int i;

	for (i = 0; i < nr; i++) {
		all &= !dst[i].err &&
		       (!c->copy || dst[i].written == res->bytes);
		same &= dst[i].written == dst[0].written;
	}
	if (all || !c->copy) {
		snprintf(what, len, "%s %u %s", c->copy ? "to" : "on", nr,
			 c->copy ? dests : (nr == 1 ? "region" : "regions"));
		return c->copy ? "copied" : "zeroed";
	}
	if (same) {
		used = (size_t)snprintf(
			what, len, "from the source, wrote %s to ",
			human_bytes(dst[0].written, size, sizeof(size)));
		if (used < len && nr == 1)
			snprintf(what + used, len - used, "the destination");
		else if (used < len)
			snprintf(what + used, len - used, "each of %u %s", nr,
				 dests);
		return "read";
	}
	used = (size_t)snprintf(what, len, "from the source, wrote");
	for (i = 0; i < nr && used < len; i++)
		used += (size_t)snprintf(
			what + used, len - used, "%s %s", i ? "," : "",
			human_bytes(dst[i].written, size, sizeof(size)));
	if (used < len)
		snprintf(what + used, len - used, " to the %u %s", nr, dests);
	return "read";
}

/* After the table: which source sectors could not be read. */
static void print_unreadable(FILE *out, const struct transfer_cli *c,
			     const struct transfer_result *res)
{
	unsigned int i;

	for (i = 0; i < res->nr_bad; i++)
		fprintf(out, "source sectors %llu-%llu: unreadable, %s\n",
			(unsigned long long)res->bad[i].sector,
			(unsigned long long)(res->bad[i].sector +
					     res->bad[i].count - 1),
			c->opts.noerror ? "written as zeroes"
					: "the copy stopped there");
}

/* "-" is standard input as the source of a copy, or standard output as
 * its only destination, and has no sectors: anything else is refused
 * before any I/O.  Returns 0 or EXIT_USAGE. */
static int check_streams(const struct target *src, const struct target *dst,
			 unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr + 1; i++) {
		const struct target *t = i < nr ? &dst[i] : src;

		if (t && t->stream && (t->sector || t->has_count))
			return usage_error("'%s': a stream has no sectors",
					   t->arg);
	}
	for (i = 0; i < nr; i++) {
		if (!dst[i].stream)
			continue;
		if (!src)
			return usage_error("'-' is a stream, not a region to "
					   "zero");
		if (src->stream)
			return usage_error("from standard input to standard "
					   "output: use cat");
		if (nr > 1)
			return usage_error("standard output ('-') must be the "
					   "only destination");
	}
	return 0;
}

/* Everything after the arguments parsed: the source, the destinations,
 * the copy, the report. */
static int run_transfer(const struct transfer_cli *c, struct target *src,
			struct target *dst, unsigned int nr)
{
	struct transfer_result res = {0};
	struct clients cl = {0};
	struct progress pg;
	const char *verb;
	char what[256], done[24], total_text[24];
	unsigned int i;
	uint64_t total = 0;
	int status = 0, ret;
	bool any_failed = false;
	bool stream_in = src && src->stream, to_stdout = src && dst[0].stream;
	/* stdout may carry the data: the report goes to stderr then. */
	FILE *out = to_stdout ? stderr : stdout;
	sigset_t blocked;

	catch_signals(&blocked);
	status = check_streams(src, dst, nr);
	if (!status && src && !src->stream)
		status = open_source(src, c->co.open_flags);
	for (i = 0; !status && i < nr && !to_stdout; i++)
		status = prepare_destination(&dst[i], src, c);
	if (!status && src)
		status = check_same_storage(src, dst, nr);
	for (i = 0; !status && c->truncate && i < nr; i++)
		status = check_truncate(&dst[i]);
	if (!status && stream_in && isatty(STDIN_FILENO))
		status = fatal("standard input is a terminal: pipe the data "
			       "in, or name a file");
	if (!status) {
		pthread_sigmask(SIG_BLOCK, &blocked, NULL);
		status = clients_start(&cl, true);
		pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
	}
	if (status)
		goto out;

	for (i = 0; i < nr; i++)
		any_failed |= dst[i].err != 0;
	for (i = 0; i < nr; i++) {
		if (!dst[i].create)
			continue;
		/* A copy that will stop at once has no use for new files. */
		if (any_failed && c->opts.stop_on_error) {
			dst[i].err = -ECANCELED;
			continue;
		}
		ret = target_create(&dst[i],
				    BYTES(dst[i].sector) + BYTES(src->count),
				    c->co.open_flags);
		if (ret)
			dst[i].err = ret;
		any_failed |= ret != 0;
	}

	total = src ? BYTES(src->count) : 0;
	for (i = 0; !src && i < nr; i++)
		total += dst[i].err ? 0 : BYTES(dst[i].count);
	progress_start(&pg, c->copy ? "copied" : "zeroed", total, c->co.quiet);
	pg.unknown = stream_in;
	if (stream_in || to_stdout)
		stream_transfer(&cl, src, dst, nr, &c->opts, c->co.open_flags,
				c->truncate, &pg, &res);
	else
		transfer(&cl, src, dst, nr, &c->opts, &pg, &res);
	if (c->truncate && !interrupted && !stream_in)
		truncate_destinations(dst, nr, src->count);
	verb = summary(c, dst, nr, &res, what, sizeof(what));
	pg.verb = verb;
	progress_end(&pg, res.bytes, what);

	if (res.submit_err)
		warn("kcopyd refused the job: %s", error_text(res.submit_err));
	if (res.read_err && c->opts.noerror)
		warn("reading '%s' failed: %s; %u unreadable %s written as "
		     "zeroes (--noerror)",
		     src->arg, error_text(res.read_err), res.nr_bad,
		     res.nr_bad == 1 ? "range was" : "ranges were");
	else if (res.read_err && res.nr_bad)
		warn("reading '%s' failed at sector %llu: %s; the copy stopped "
		     "there, and nothing was written that was not read",
		     src->arg, (unsigned long long)res.bad[0].sector,
		     error_text(res.read_err));
	else if (res.read_err)
		warn("reading '%s' failed: %s; the destinations are incomplete",
		     src->arg, error_text(res.read_err));
	if (interrupted)
		warn("interrupted after %s %s of %s; the I/O in flight was "
		     "completed%s",
		     c->copy ? "reading" : "zeroing",
		     human_bytes(res.bytes, done, sizeof(done)),
		     stream_in ? "standard input"
			       : human_bytes(total, total_text,
					     sizeof(total_text)),
		     c->opts.durability == DURABLE_FLUSH
			     ? " and the destinations flushed"
			     : "");
	status = res.submit_err || res.read_err ? EXIT_USAGE : 0;
	for (i = 0; i < nr && !status; i++)
		if (dst[i].err)
			status = EXIT_SOME_FAILED;
	if (interrupted)
		status = 128 + interrupted;
	if (c->co.json) {
		print_json(out, c, src, dst, nr, &res, pg.seconds, status);
	} else {
		print_table(out, c->copy ? "destination" : "region", dst, nr,
			    copy_result);
		print_unreadable(out, c, &res);
	}
out:
	clients_stop(&cl);
	free(res.bad);
	if (src)
		targets_release(src, 1, false);
	/* New files that nothing was written to are removed, unless that
	 * was all there was to copy (an empty stream). */
	for (i = 0; i < nr; i++)
		targets_release(&dst[i], 1,
				!dst[i].written && (dst[i].err || status));
	return status;
}

static int transfer_option(int opt, void *ctx)
{
	struct transfer_cli *c = ctx;

	switch (opt) {
	case OPT_NO_CREATE:
		c->no_create = true;
		break;
	case OPT_IGNORE_ERRORS:
		c->opts.stop_on_error = false;
		break;
	case OPT_STOP_ON_ERROR:
		c->opts.stop_on_error = true;
		break;
	case OPT_FLUSH:
		c->opts.durability = DURABLE_FLUSH;
		break;
	case OPT_FUA:
		c->opts.durability = DURABLE_FUA;
		break;
	case OPT_NO_FLUSH:
		c->opts.durability = DURABLE_NONE;
		break;
	case OPT_NOERROR:
		c->opts.noerror = true;
		break;
	case OPT_TRUNCATE:
		c->truncate = true;
		break;
	default:
		return EXIT_USAGE;
	}
	return GO_ON;
}

static int transfer_command(int argc, char *argv[], struct transfer_cli *c)
{
	struct target *targets;
	unsigned int nr, first = c->copy ? 1 : 0;
	int status;

	c->opts.durability = DURABLE_FLUSH;
	status = parse_options(argc, argv, &c->co, transfer_option, c);
	if (status != GO_ON)
		return status;
	if (c->opts.noerror && c->opts.stop_on_error)
		return usage_error(
			"--noerror and --stop-on-error exclude each other");
	nr = (unsigned int)(argc - optind);
	if (c->copy && !nr)
		return usage_error("missing source and destination");
	if (nr <= first)
		return usage_error(c->copy ? "missing destination"
					   : "missing region");
	if (nr - first > DM_KCOPYD_MAX_REGIONS)
		return usage_error("at most %d %s", DM_KCOPYD_MAX_REGIONS,
				   c->copy ? "destinations" : "regions");

	targets = parse_targets(argv + optind, nr, &status);
	if (!targets)
		return status;
	status = run_transfer(c, c->copy ? targets : NULL, targets + first,
			      nr - first);
	free(targets);
	return status;
}

static int run_copy(int argc, char *argv[])
{
	struct transfer_cli c = {.copy = true};

	return transfer_command(argc, argv, &c);
}

static int run_zero(int argc, char *argv[])
{
	struct transfer_cli c = {.copy = false};

	return transfer_command(argc, argv, &c);
}

static const struct cli_option copy_options[] = {
	{"no-create", no_argument, OPT_NO_CREATE, NULL,
	 "refuse missing destinations, create nothing"},
	{"ignore-errors", no_argument, OPT_IGNORE_ERRORS, NULL,
	 "after a destination fails, keep copying to\n"
	 "the others (the default)"},
	{"stop-on-error", no_argument, OPT_STOP_ON_ERROR, NULL,
	 "stop the whole copy at the first error"},
	{"noerror", no_argument, OPT_NOERROR, NULL,
	 "write zeroes for unreadable source blocks\n"
	 "and go on (default: stop at the first)"},
	{"truncate", no_argument, OPT_TRUNCATE, NULL,
	 "end file destinations where the copy ends"},
	{"flush", no_argument, OPT_FLUSH, NULL,
	 "flush each destination at the end (default)"},
	{"fua", no_argument, OPT_FUA, NULL, "make every write durable instead"},
	{"no-flush", no_argument, OPT_NO_FLUSH, NULL,
	 "neither: leave durability to the system"},
	CLI_END,
};

static const char copy_usage[] =
	"Usage: dmio copy [OPTIONS] SRC DST...\n"
	"\n"
	"Copy region SRC to each of 1..8 regions DST with kcopyd.  SRC is\n"
	"the whole device unless it says otherwise; a DST without +COUNT\n"
	"receives the copy's length at its SECTOR.  Missing destination\n"
	"files are created at the size they need.  SRC - is standard\n"
	"input, DST - standard output (the only DST).\n";

const struct command copy_command = {
	.name = "copy",
	.run = run_copy,
	.usage = copy_usage,
	.options = copy_options,
	.common = COMMON_DATA,
};

static const struct cli_option zero_options[] = {
	{"ignore-errors", no_argument, OPT_IGNORE_ERRORS, NULL,
	 "after a region fails, keep zeroing the others\n(the default)"},
	{"stop-on-error", no_argument, OPT_STOP_ON_ERROR, NULL,
	 "stop at the first error"},
	{"flush", no_argument, OPT_FLUSH, NULL,
	 "flush each device at the end (the default)"},
	{"no-flush", no_argument, OPT_NO_FLUSH, NULL, "do not"},
	CLI_END,
};

static const char zero_usage[] =
	"Usage: dmio zero [OPTIONS] DST...\n"
	"\n"
	"Zero 1..8 regions with kcopyd, by the devices' write-zeroes where\n"
	"they have one.  A DST without +COUNT runs to the end of its device.\n";

const struct command zero_command = {
	.name = "zero",
	.run = run_zero,
	.usage = zero_usage,
	.options = zero_options,
	.common = COMMON_DATA,
};

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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dmio.h"

#define JOB_MIN_SECTORS (1u << 11)  /* 1 MiB: whole blocks of any device */
#define JOB_MAX_SECTORS (64u << 11) /* 64 MiB */
#define JOBS_PER_RUN	32	    /* aim for this many bar steps */
#define JOBS_IN_FLIGHT	4
#define WAKE_NS		100000000L /* redraw the bar this often */

struct run;

struct job {
	struct run *run;
	bool busy;
	bool finished;	   /* done: the loop frees it, after write-behind */
	sector_t off, len; /* the job's stretch of the regions */
	uint64_t bytes;	   /* counted as done when the job completes */
	unsigned int nr;
	unsigned int map[DM_KCOPYD_MAX_REGIONS]; /* job region -> target */
	struct dm_kcopyd_errors errs;
};

struct run {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct target *dst;
	unsigned int nr;
	unsigned int inflight;
	uint64_t done;
	int read_err;
	bool failed;
	struct job jobs[JOBS_IN_FLIGHT];
};

int engine_start(struct engine *e)
{
	const char *backend = getenv("DMIO_BACKEND");
	int err;

	e->kc = NULL;
	e->io = dm_io_client_create();
	if (e->io)
		e->kc = dm_kcopyd_client_create();
	if (e->kc)
		return 0;
	err = errno;
	dm_io_client_destroy(e->io);
	e->io = NULL;
	if (err == EINVAL && backend)
		return fatal(
			"DMIO_BACKEND='%s' is neither io_uring nor threads",
			backend);
	return fatal("cannot start the I/O engine: %s", strerror(err));
}

void engine_stop(struct engine *e)
{
	dm_kcopyd_client_destroy(e->kc);
	dm_io_client_destroy(e->io);
}

static bool healthy(const struct target *t)
{
	return t->bdev && !t->err;
}

/* Runs on kcopyd's thread. */
static void job_done(int read_err, unsigned long write_err, void *context)
{
	struct job *job = context;
	struct run *run = job->run;
	unsigned int i;

	pthread_mutex_lock(&run->lock);
	if (read_err && !run->read_err)
		run->read_err = job->errs.read ? job->errs.read : -EIO;
	for (i = 0; i < job->nr; i++) {
		struct target *t = &run->dst[job->map[i]];

		if (write_err & 1UL << i && !t->err)
			t->err = job->errs.dests[i] ? job->errs.dests[i] : -EIO;
	}
	if (read_err || write_err)
		run->failed = true;
	run->done += job->bytes;
	job->finished = true;
	run->inflight--;
	pthread_cond_signal(&run->wake);
	pthread_mutex_unlock(&run->lock);
}

/*
 * Fill @dests with the healthy destinations' share of [@off, @off + @len):
 * all of it for a copy, what each region has of it for zeroing.  Returns
 * how many there are.
 */
static unsigned int job_regions(struct run *run, struct job *job, bool copy,
				sector_t off, sector_t len,
				struct io_region *dests)
{
	unsigned int i;

	job->nr = 0;
	job->bytes = copy ? BYTES(len) : 0;
	for (i = 0; i < run->nr; i++) {
		struct target *t = &run->dst[i];
		sector_t n = len;

		if (!healthy(t))
			continue;
		if (!copy)
			n = t->count <= off	   ? 0
			    : t->count - off < len ? t->count - off
						   : len;
		if (!n)
			continue;
		dests[job->nr] =
			(struct io_region){t->bdev, t->sector + off, n};
		job->map[job->nr++] = i;
		if (!copy)
			job->bytes += BYTES(n);
	}
	return job->nr;
}

static struct job *free_job(struct run *run)
{
	unsigned int i;

	for (i = 0; i < JOBS_IN_FLIGHT; i++)
		if (!run->jobs[i].busy)
			return &run->jobs[i];
	return NULL;
}

/* One data-less flush over every healthy destination; a failed flush
 * fails its destination, since its data may not be durable. */
static void flush_destinations(struct engine *e, struct target *dst,
			       unsigned int nr)
{
	struct io_region where[DM_KCOPYD_MAX_REGIONS];
	int errs[DM_KCOPYD_MAX_REGIONS] = {0};
	unsigned int map[DM_KCOPYD_MAX_REGIONS], n = 0, i;
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_FLUSH,
		.client = e->io,
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

/* Free the jobs that completed (the lock held) and put their stretches in
 * @out, for write-behind; returns how many. */
static unsigned int reap_jobs(struct run *run, sector_t out[][2])
{
	unsigned int i, n = 0;

	for (i = 0; i < JOBS_IN_FLIGHT; i++) {
		struct job *job = &run->jobs[i];

		if (!job->finished)
			continue;
		out[n][0] = job->off;
		out[n++][1] = job->len;
		job->finished = job->busy = false;
	}
	return n;
}

/*
 * Copy @src to every healthy destination of @dst, or zero them when @src
 * is NULL, then make them durable as @o asks.  Per-destination errors land
 * in dst[i].err; the rest in @res.
 */
void transfer(struct engine *e, struct target *src, struct target *dst,
	      unsigned int nr, const struct transfer_opts *o,
	      struct progress *pg, struct transfer_result *res)
{
	struct run run = {.dst = dst, .nr = nr};
	struct writeback *wb = src ? writeback_start(dst, nr) : NULL;
	struct io_region from, dests[DM_KCOPYD_MAX_REGIONS];
	sector_t span = 0, step, off = 0, finished[JOBS_IN_FLIGHT][2];
	pthread_condattr_t attr;
	unsigned int flags = 0, nr_finished, i;
	struct timespec ts;

	memset(res, 0, sizeof(*res));
	if (src)
		span = src->count;
	for (i = 0; !src && i < nr; i++)
		if (dst[i].count > span)
			span = dst[i].count;
	step = (span / JOBS_PER_RUN + JOB_MIN_SECTORS - 1) / JOB_MIN_SECTORS *
	       JOB_MIN_SECTORS;
	step = step < JOB_MIN_SECTORS	? JOB_MIN_SECTORS
	       : step > JOB_MAX_SECTORS ? JOB_MAX_SECTORS
					: step;
	if (!o->stop_on_error)
		flags |= 1u << DM_KCOPYD_IGNORE_ERROR;
	if (o->durability == DURABLE_FUA)
		flags |= 1u << DM_KCOPYD_FUA;
	for (i = 0; i < JOBS_IN_FLIGHT; i++)
		run.jobs[i].run = &run;
	/* Destinations that could not be opened count as the first error. */
	for (i = 0; i < nr; i++)
		run.failed |= dst[i].err != 0;

	pthread_mutex_init(&run.lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&run.wake, &attr);
	pthread_condattr_destroy(&attr);

	pthread_mutex_lock(&run.lock);
	for (;;) {
		bool stop = interrupted || res->submit_err || run.read_err ||
			    (o->stop_on_error && run.failed);
		struct job *job;
		uint64_t done;
		int ret;

		while (!stop && off < span && (job = free_job(&run))) {
			sector_t len = span - off < step ? span - off : step;
			unsigned int n;

			n = job_regions(&run, job, src != NULL, off, len,
					dests);
			if (!n) {
				/* A copy with no destination left is over;
				 * zeroing goes on to the longer regions. */
				stop = src != NULL;
				off += src ? 0 : len;
				continue;
			}
			job->busy = true;
			job->off = off;
			job->len = len;
			run.inflight++;
			pthread_mutex_unlock(&run.lock);
			if (src) {
				from = (struct io_region){
					src->bdev, src->sector + off, len};
				ret = dm_kcopyd_copy_errors(
					e->kc, &from, n, dests, flags, job_done,
					job, &job->errs);
			} else {
				ret = dm_kcopyd_zero_errors(e->kc, n, dests,
							    flags, job_done,
							    job, &job->errs);
			}
			pthread_mutex_lock(&run.lock);
			if (ret) {
				job->busy = false;
				run.inflight--;
				res->submit_err = ret;
				stop = true;
			} else {
				res->started = true;
				off += len;
			}
		}
		if (!run.inflight && (stop || off >= span))
			break;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += WAKE_NS;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&run.wake, &run.lock, &ts);
		done = run.done;
		nr_finished = reap_jobs(&run, finished);
		pthread_mutex_unlock(&run.lock);
		progress_update(pg, done);
		for (i = 0; i < nr_finished; i++)
			writeback_job_done(wb, finished[i][0], finished[i][1]);
		pthread_mutex_lock(&run.lock);
	}
	res->bytes = run.done;
	res->read_err = run.read_err;
	nr_finished = reap_jobs(&run, finished);
	pthread_mutex_unlock(&run.lock);
	for (i = 0; i < nr_finished; i++)
		writeback_job_done(wb, finished[i][0], finished[i][1]);
	pthread_cond_destroy(&run.wake);
	pthread_mutex_destroy(&run.lock);
	writeback_end(wb);

	/* Destinations that did not fail themselves still missed the rest,
	 * or received zeroes for what the source could not give. */
	if (off < span || run.read_err || (o->stop_on_error && run.failed))
		for (i = 0; i < nr; i++)
			if (healthy(&dst[i]))
				dst[i].err = -ECANCELED;
	if (o->durability == DURABLE_FLUSH && res->started)
		flush_destinations(e, dst, nr);
}

/* ---- the commands ---- */

struct transfer_cli {
	bool copy; /* else zero */
	bool quiet, json, no_create;
	unsigned int open_flags;
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
	ret = target_open(t, c->open_flags);
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

static void print_json(const struct transfer_cli *c, const struct target *src,
		       const struct target *dst, unsigned int nr,
		       uint64_t bytes, double seconds, int read_err, int status)
{
	unsigned int i;

	printf("{\"command\":\"%s\",\"source\":", c->copy ? "copy" : "zero");
	json_string(stdout, src ? src->arg : NULL);
	printf(",\"source_error\":");
	json_string(stdout, read_err ? error_text(read_err) : NULL);
	printf(",\"bytes\":%llu,\"seconds\":%.3f,\"mib_per_s\":%.1f,"
	       "\"destinations\":[",
	       (unsigned long long)bytes, seconds, mib_per_s(bytes, seconds));
	for (i = 0; i < nr; i++) {
		printf("%s{\"spec\":", i ? "," : "");
		json_string(stdout, dst[i].arg);
		printf(",\"ok\":%s,\"errno\":%d,\"error\":",
		       dst[i].err ? "false" : "true", -dst[i].err);
		json_string(stdout, dst[i].err ? error_text(dst[i].err) : NULL);
		printf("}");
	}
	printf("],\"exit\":%d}\n", status);
}

/* Everything after the arguments parsed: the source, the destinations,
 * the copy, the report. */
static int run_transfer(const struct transfer_cli *c, struct target *src,
			struct target *dst, unsigned int nr)
{
	struct transfer_result res = {0};
	struct engine e = {0};
	struct progress pg;
	char what[48];
	unsigned int i;
	uint64_t total = 0;
	int status = 0, ret;
	bool any_failed = false;

	if (src)
		status = open_source(src, c->open_flags);
	for (i = 0; !status && i < nr; i++)
		status = prepare_destination(&dst[i], src, c);
	if (!status)
		status = engine_start(&e);
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
				    c->open_flags);
		if (ret)
			dst[i].err = ret;
		any_failed |= ret != 0;
	}

	total = src ? BYTES(src->count) : 0;
	for (i = 0; !src && i < nr; i++)
		total += dst[i].err ? 0 : BYTES(dst[i].count);
	progress_start(&pg, c->copy ? "copied" : "zeroed", total, c->quiet);
	transfer(&e, src, dst, nr, &c->opts, &pg, &res);
	snprintf(what, sizeof(what), "%s %u %s", c->copy ? "to" : "on", nr,
		 c->copy ? (nr == 1 ? "destination" : "destinations")
			 : (nr == 1 ? "region" : "regions"));
	progress_end(&pg, res.bytes, what);

	if (res.submit_err)
		warn("kcopyd refused the job: %s", error_text(res.submit_err));
	if (res.read_err)
		warn("reading '%s' failed: %s; the destinations are incomplete",
		     src->arg, error_text(res.read_err));
	status = res.submit_err || res.read_err ? EXIT_USAGE : 0;
	for (i = 0; i < nr && !status; i++)
		if (dst[i].err)
			status = EXIT_SOME_FAILED;
	if (c->json)
		print_json(c, src, dst, nr, res.bytes, pg.seconds, res.read_err,
			   status);
	else
		print_table(c->copy ? "destination" : "region", dst, nr,
			    copy_result);
out:
	engine_stop(&e);
	if (src)
		targets_release(src, 1, false);
	/* A run that failed before writing anything leaves no new files. */
	targets_release(dst, nr, status && !res.started);
	return status;
}

static int transfer_command(int argc, char *argv[], struct transfer_cli *c,
			    const struct option *options)
{
	struct target *targets;
	unsigned int nr, first = c->copy ? 1 : 0;
	int opt, status;

	c->opts.durability = DURABLE_FLUSH;
	while ((opt = next_option(argc, argv, ":hq", options)) != -1) {
		switch (opt) {
		case 'h':
			return print_command_help();
		case 'q':
			c->quiet = true;
			break;
		case OPT_JSON:
			c->json = true;
			break;
		case OPT_DIRECT:
			c->open_flags |= DM_BDEV_DIRECT;
			break;
		case OPT_BUFFERED:
			c->open_flags |= DM_BDEV_BUFFERED;
			break;
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
		default:
			return EXIT_USAGE;
		}
	}
	if (check_open_flags(c->open_flags))
		return EXIT_USAGE;
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

int cmd_copy(int argc, char *argv[])
{
	static const struct option options[] = {
		{"no-create", no_argument, NULL, OPT_NO_CREATE},
		{"ignore-errors", no_argument, NULL, OPT_IGNORE_ERRORS},
		{"stop-on-error", no_argument, NULL, OPT_STOP_ON_ERROR},
		{"flush", no_argument, NULL, OPT_FLUSH},
		{"fua", no_argument, NULL, OPT_FUA},
		{"no-flush", no_argument, NULL, OPT_NO_FLUSH},
		{"direct", no_argument, NULL, OPT_DIRECT},
		{"buffered", no_argument, NULL, OPT_BUFFERED},
		{"quiet", no_argument, NULL, 'q'},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct transfer_cli c = {.copy = true};

	return transfer_command(argc, argv, &c, options);
}

int cmd_zero(int argc, char *argv[])
{
	static const struct option options[] = {
		{"ignore-errors", no_argument, NULL, OPT_IGNORE_ERRORS},
		{"stop-on-error", no_argument, NULL, OPT_STOP_ON_ERROR},
		{"flush", no_argument, NULL, OPT_FLUSH},
		{"no-flush", no_argument, NULL, OPT_NO_FLUSH},
		{"direct", no_argument, NULL, OPT_DIRECT},
		{"buffered", no_argument, NULL, OPT_BUFFERED},
		{"quiet", no_argument, NULL, 'q'},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct transfer_cli c = {.copy = false};

	return transfer_command(argc, argv, &c, options);
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio bench: the library's side of docs/performance.md on devices the
 * user names, so that anyone can measure their own hardware.  Reads by
 * default; writes (which destroy the devices' data) only with --write.
 *
 * Each workload runs --runs times for --seconds and reports the median
 * run: I/Os per second, MiB/s, CPU time per I/O (user + system, every
 * thread of the process, from getrusage()) and, for the synchronous one,
 * latency.  The asynchronous patterns are the two ways programs use
 * dm_io(): a thread that submits and waits on a condition variable while
 * QD requests are in flight (the callback signals it), and callbacks that
 * issue the next request themselves.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dmio.h"

#define MAX_QD	 256
#define MAX_RUNS 15
#define MAX_LAT	 (1u << 20) /* latencies kept for percentiles */

enum pattern {
	SUBMITTER, /* one thread submits, a condvar waits for room */
	CALLBACK,  /* callbacks issue the next request */
	SYNC,	   /* dm_io() with no callback, one at a time */
};

struct workload {
	const char *name;
	enum pattern pattern;
	bool write;   /* to every device at once (a mirror) */
	bool random;  /* else sequential */
	size_t bytes; /* per I/O */
	unsigned int qd;
};

struct bench {
	struct dm_io_client *io;
	struct block_device *bdev[DM_IO_MAX_REGIONS];
	unsigned int nr;
	uint64_t size; /* bytes every device has */
	/* as the options set them */
	double seconds;
	unsigned int runs, qd;
	bool write;
};

struct result {
	double iops, mib_s, cpu_us, lat_us, p99_us;
};

struct run;

struct slot {
	struct run *run;
	void *buf;
};

struct run {
	const struct bench *b;
	const struct workload *w;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int inflight, active;
	atomic_bool stop;
	atomic_ullong done, errors;
	atomic_ullong seq; /* sequential: the next offset */
	atomic_ullong rng;
	struct slot slots[MAX_QD];
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Where the next I/O goes: a random aligned offset, or the next one. */
static uint64_t next_offset(struct run *r)
{
	uint64_t blocks = r->b->size / r->w->bytes, x;

	if (!r->w->random)
		return atomic_fetch_add(&r->seq, 1) % blocks * r->w->bytes;
	/* splitmix64 over a shared counter: cheap, and no two threads
	 * draw the same offset. */
	x = atomic_fetch_add(&r->rng, 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x % blocks * r->w->bytes;
}

static void io_done(unsigned long error, void *context);

/* Issue one I/O for @s, synchronously when @fn is NULL. */
static int issue(struct slot *s, io_notify_fn fn)
{
	struct run *r = s->run;
	struct io_region where[DM_IO_MAX_REGIONS];
	uint64_t off = next_offset(r);
	unsigned int i, n = r->w->write ? r->b->nr : 1;
	struct dm_io_request req = {
		.bi_opf = r->w->write ? DM_IO_OP_WRITE : DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = s->buf},
		.notify = {.fn = fn, .context = s},
		.client = r->b->io,
	};
	unsigned long bits = 0;

	for (i = 0; i < n; i++)
		where[i] =
			(struct io_region){r->b->bdev[i], off >> SECTOR_SHIFT,
					   r->w->bytes >> SECTOR_SHIFT};
	return dm_io(&req, n, where, fn ? NULL : &bits);
}

static void io_done(unsigned long error, void *context)
{
	struct slot *s = context;
	struct run *r = s->run;

	atomic_fetch_add_explicit(&r->done, 1, memory_order_relaxed);
	if (error)
		atomic_fetch_add_explicit(&r->errors, 1, memory_order_relaxed);
	if (r->w->pattern == CALLBACK && !atomic_load(&r->stop) &&
	    !issue(s, io_done))
		return;
	pthread_mutex_lock(&r->lock);
	r->inflight--;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One run of @w for the bench's seconds; fills @res. */
static int run_once(const struct bench *b, const struct workload *w,
		    struct result *res)
{
	struct run *r = calloc(1, sizeof(*r));
	double *lat = NULL, t0, c0, t, elapsed;
	unsigned int qd = w->pattern == SYNC ? 1 : w->qd, i, next = 0;
	size_t nlat = 0;
	int ret = 0;

	if (!r)
		return -ENOMEM;
	r->b = b;
	r->w = w;
	atomic_init(&r->rng, (uint64_t)time(NULL) * 0x2545f4914f6cdd1dull);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	for (i = 0; i < qd && !ret; i++) {
		r->slots[i].run = r;
		if (posix_memalign(&r->slots[i].buf, DM_PAGE_SIZE, w->bytes))
			ret = -ENOMEM;
		else
			memset(r->slots[i].buf, 0x5a, w->bytes);
	}
	if (!ret && w->pattern == SYNC &&
	    !(lat = malloc(MAX_LAT * sizeof(*lat))))
		ret = -ENOMEM;
	t0 = now();
	c0 = cpu_seconds();
	if (ret) {
		/* nothing to run */
	} else if (w->pattern == SYNC) {
		while (!ret && !interrupted && (t = now()) - t0 < b->seconds) {
			ret = issue(&r->slots[0], NULL);
			if (nlat < MAX_LAT)
				lat[nlat++] = now() - t;
			atomic_fetch_add(&r->done, 1);
		}
		ret = ret == -EIO ? 0 : ret;
	} else if (w->pattern == CALLBACK) {
		r->inflight = qd;
		for (i = 0; i < qd; i++) {
			ret = issue(&r->slots[i], io_done);
			if (ret) {
				pthread_mutex_lock(&r->lock);
				r->inflight -= qd - i;
				pthread_mutex_unlock(&r->lock);
				break;
			}
		}
		while (!interrupted && now() - t0 < b->seconds)
			nanosleep(&(struct timespec){0, 10000000}, NULL);
	} else {
		/* Slots are handed out in turn: at most qd are in flight,
		 * and a slot's I/O has completed before it comes round. */
		pthread_mutex_lock(&r->lock);
		while (!ret && !interrupted && now() - t0 < b->seconds) {
			while (r->inflight == qd)
				pthread_cond_wait(&r->cond, &r->lock);
			r->inflight++;
			pthread_mutex_unlock(&r->lock);
			ret = issue(&r->slots[next], io_done);
			next = (next + 1) % qd;
			pthread_mutex_lock(&r->lock);
			if (ret)
				r->inflight--;
		}
		pthread_mutex_unlock(&r->lock);
	}
	atomic_store(&r->stop, true);
	pthread_mutex_lock(&r->lock);
	while (r->inflight)
		pthread_cond_wait(&r->cond, &r->lock);
	pthread_mutex_unlock(&r->lock);
	elapsed = now() - t0;

	res->iops = (double)atomic_load(&r->done) / elapsed;
	res->mib_s = res->iops * (double)w->bytes / (1 << 20);
	res->cpu_us = atomic_load(&r->done)
			      ? (cpu_seconds() - c0) * 1e6 /
					(double)atomic_load(&r->done)
			      : 0;
	res->lat_us = res->p99_us = 0;
	if (nlat) {
		double sum = 0;

		for (i = 0; i < nlat; i++)
			sum += lat[i];
		qsort(lat, nlat, sizeof(*lat), cmp_double);
		res->lat_us = sum / (double)nlat * 1e6;
		res->p99_us = lat[nlat * 99 / 100] * 1e6;
	}
	if (!ret && atomic_load(&r->errors))
		ret = -EIO;
	free(lat);
	for (i = 0; i < qd; i++)
		free(r->slots[i].buf);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	free(r);
	return ret;
}

static int cmp_iops(const void *a, const void *b)
{
	return cmp_double(&((const struct result *)a)->iops,
			  &((const struct result *)b)->iops);
}

/* The median of the bench's runs of @w, by I/Os per second. */
static int run_workload(const struct bench *b, const struct workload *w,
			struct result *median)
{
	struct result r[MAX_RUNS];
	unsigned int i;
	int ret;

	for (i = 0; i < b->runs; i++) {
		ret = run_once(b, w, &r[i]);
		if (ret)
			return ret;
		if (interrupted)
			return -EINTR;
	}
	qsort(r, b->runs, sizeof(r[0]), cmp_iops);
	*median = r[b->runs / 2];
	return 0;
}

/* A whole number from 1 to @max, or 0 for anything else. */
static unsigned int count_arg(const char *s, unsigned int max)
{
	unsigned long long v;

	return parse_uint(s, max, &v) ? 0 : (unsigned int)v;
}

static int bench_option(int opt, void *ctx)
{
	struct bench *b = ctx;
	char *end;

	switch (opt) {
	case OPT_SECONDS:
		b->seconds = strtod(optarg, &end);
		if (*end || !(b->seconds > 0 && b->seconds <= 3600))
			return usage_error("bad --seconds '%s'", optarg);
		break;
	case OPT_RUNS:
		b->runs = count_arg(optarg, MAX_RUNS);
		if (!b->runs)
			return usage_error("--runs: 1 to %d, not '%s'",
					   MAX_RUNS, optarg);
		break;
	case OPT_QD:
		b->qd = count_arg(optarg, MAX_QD);
		if (!b->qd)
			return usage_error("--qd: 1 to %d, not '%s'", MAX_QD,
					   optarg);
		break;
	case OPT_WRITE:
		b->write = true;
		break;
	default:
		return EXIT_USAGE;
	}
	return GO_ON;
}

static void print_results(const struct bench *b, const struct workload *w,
			  const struct result *res, unsigned int n, bool json,
			  int status)
{
	unsigned int i;

	if (json) {
		printf("{\"command\":\"bench\",\"backend\":");
		json_string(stdout, dm_io_client_backend(b->io, NULL));
		printf(",\"devices\":%u,\"seconds\":%.3f,\"runs\":%u,"
		       "\"workloads\":[",
		       b->nr, b->seconds, b->runs);
		for (i = 0; i < n; i++) {
			printf("%s{\"name\":", i ? "," : "");
			json_string(stdout, w[i].name);
			printf(",\"iops\":%.0f,\"mib_per_s\":%.1f,"
			       "\"cpu_us_per_io\":%.2f",
			       res[i].iops, res[i].mib_s, res[i].cpu_us);
			if (w[i].pattern == SYNC)
				printf(",\"latency_us\":%.1f,\"p99_us\":%.1f",
				       res[i].lat_us, res[i].p99_us);
			printf("}");
		}
		printf("],\"exit\":%d}\n", status);
		return;
	}
	printf("%-34s %10s %9s %10s %9s\n", "workload", "IOPS", "MiB/s",
	       "CPU us/IO", "lat us");
	for (i = 0; i < n; i++) {
		printf("%-34s %10.0f %9.1f %10.2f", w[i].name, res[i].iops,
		       res[i].mib_s, res[i].cpu_us);
		if (w[i].pattern == SYNC)
			printf(" %9.1f (p99 %.1f)", res[i].lat_us,
			       res[i].p99_us);
		printf("\n");
	}
	printf("backend %s; median of %u runs of %.1f s each\n",
	       dm_io_client_backend(b->io, NULL), b->runs, b->seconds);
}

/* Append a workload named by @fmt. */
static void __attribute__((format(printf, 9, 10)))
add(struct workload *w, char (*names)[48], unsigned int *n, enum pattern p,
    bool write, bool random, size_t bytes, unsigned int qd, const char *fmt,
    ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(names[*n], sizeof(names[*n]), fmt, ap);
	va_end(ap);
	w[*n] = (struct workload){names[*n], p, write, random, bytes, qd};
	(*n)++;
}

static int run(int argc, char *argv[])
{
	struct bench b = {.seconds = 3, .runs = 3, .qd = 32};
	struct common_opts co = {0};
	struct workload w[6];
	struct result res[6];
	char names[6][48];
	unsigned int i, n = 0;
	int status, ret = 0;
	sigset_t blocked;

	status = parse_options(argc, argv, &co, bench_option, &b);
	if (status != GO_ON)
		return status;
	status = 0;
	if (optind == argc)
		return usage_error("missing device");
	if (argc - optind > DM_KCOPYD_MAX_REGIONS)
		return usage_error("at most %d devices", DM_KCOPYD_MAX_REGIONS);
	for (i = 0; i < (unsigned int)(argc - optind); i++) {
		char *spec = argv[optind + (int)i];
		/* target_open() tells a FIFO or character device apart. */
		struct target t = {.arg = spec, .spec = spec};
		int err;

		if (!strcmp(spec, "-")) {
			status = usage_error("'-' is a stream: bench measures "
					     "devices");
			goto out;
		}
		err = target_open(&t, co.open_flags |
					      (b.write ? 0 : DM_BDEV_RDONLY));
		if (err) {
			/* Not error_text(): its hint at - is copy's. */
			status = fatal("cannot open '%s': %s", spec,
				       err == -ENOTBLK
					       ? "not a file or block device"
					       : error_text(err));
			goto out;
		}
		b.bdev[i] = t.bdev;
		b.nr = i + 1;
		if (!i || BYTES(dm_bdev_nr_sectors(b.bdev[i])) < b.size)
			b.size = BYTES(dm_bdev_nr_sectors(b.bdev[i]));
	}
	if (b.size < (2u << 20)) {
		status = fatal("the devices must hold 2 MiB at least");
		goto out;
	}
	catch_signals(&blocked);
	pthread_sigmask(SIG_BLOCK, &blocked, NULL);
	b.io = dm_io_client_create();
	pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
	if (!b.io) {
		status = fatal("cannot start the I/O client: %s",
			       strerror(errno));
		goto out;
	}

	add(w, names, &n, SUBMITTER, false, true, 4096, b.qd,
	    "4k randread QD%u submitter+condvar", b.qd);
	add(w, names, &n, CALLBACK, false, true, 4096, b.qd,
	    "4k randread QD%u callbacks", b.qd);
	add(w, names, &n, SYNC, false, true, 4096, 1, "4k randread QD1 sync");
	if (b.write) {
		add(w, names, &n, SUBMITTER, true, true, 4096, b.qd,
		    "4k randwrite x%u QD%u", b.nr, b.qd);
		add(w, names, &n, SUBMITTER, true, false, 1u << 20, 4,
		    "1M seqwrite x%u QD4", b.nr);
		add(w, names, &n, SYNC, true, true, 4096, 1,
		    "4k randwrite x%u QD1 sync", b.nr);
	}
	for (i = 0; i < n && !ret; i++)
		ret = run_workload(&b, &w[i], &res[i]);
	if (ret == -EINTR || interrupted) {
		warn("interrupted");
		status = 128 + (interrupted ? interrupted : SIGINT);
	} else if (ret) {
		status = fatal("%s: %s", w[i - 1].name, error_text(ret));
	}
	if (!ret)
		print_results(&b, w, res, n, co.json, status);
out:
	dm_io_client_destroy(b.io);
	for (i = 0; i < b.nr; i++)
		dm_bdev_close(b.bdev[i]);
	return status;
}

static const struct cli_option bench_options[] = {
	{"seconds", required_argument, OPT_SECONDS, "S",
	 "each run's length (default 3)"},
	{"runs", required_argument, OPT_RUNS, "N",
	 "runs per workload; the median is shown\n(default 3)"},
	{"qd", required_argument, OPT_QD, "N", "I/Os in flight (default 32)"},
	{"write", no_argument, OPT_WRITE, NULL,
	 "also write: DESTROYS the devices' data"},
	CLI_END,
};

static const char bench_usage[] =
	"Usage: dmio bench [OPTIONS] DEV...\n"
	"\n"
	"Measure libdmio on 1..8 devices: 4 KiB random reads from the first\n"
	"at queue depth QD (a submitting thread waiting on a condition\n"
	"variable, and callbacks that issue the next read) and at QD1\n"
	"synchronously; with --write, 4 KiB random and 1 MiB sequential\n"
	"writes of the same data to every device at once.  Shows I/Os per\n"
	"second, MiB/s, CPU time per I/O and latency.\n";

const struct command bench_command = {
	.name = "bench",
	.run = run,
	.usage = bench_usage,
	.options = bench_options,
	.common = COMMON_OPEN | COMMON_JSON,
};

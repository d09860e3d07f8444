// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio verify: compare region A with each region B, chunk by chunk.  Each
 * chunk of A and of every B still in the running is read at once (async
 * dm_io() requests on the tool's dm-io client), so that mirrors on separate
 * devices are read in parallel.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dmio.h"

#define CHUNK_SECTORS (4u << 11) /* 4 MiB per read */

/* The reads of one chunk, and the wait for all of them. */
struct batch {
	pthread_mutex_t lock;
	pthread_cond_t done;
	unsigned int pending;
};

struct chunk_read {
	struct batch *batch;
	int region_err;
	int result; /* 0 or a negative errno */
};

static void read_done(unsigned long error, void *context)
{
	struct chunk_read *r = context;
	struct batch *batch = r->batch;

	pthread_mutex_lock(&batch->lock);
	r->result = !error ? 0 : r->region_err ? r->region_err : -EIO;
	if (!--batch->pending)
		pthread_cond_signal(&batch->done);
	pthread_mutex_unlock(&batch->lock);
}

static void start_read(struct clients *c, struct chunk_read *r,
		       struct block_device *bdev, sector_t sector,
		       sector_t count, void *buf)
{
	struct io_region where = {bdev, sector, count};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.notify = {.fn = read_done, .context = r},
		.client = c->io,
		.region_errors = &r->region_err,
	};
	int ret;

	r->result = 0;
	pthread_mutex_lock(&r->batch->lock);
	r->batch->pending++;
	pthread_mutex_unlock(&r->batch->lock);
	ret = dm_io(&req, 1, &where, NULL);
	if (ret) {
		pthread_mutex_lock(&r->batch->lock);
		r->result = ret;
		r->batch->pending--;
		pthread_mutex_unlock(&r->batch->lock);
	}
}

static void wait_batch(struct batch *batch)
{
	pthread_mutex_lock(&batch->lock);
	while (batch->pending)
		pthread_cond_wait(&batch->done, &batch->lock);
	pthread_mutex_unlock(&batch->lock);
}

static bool undecided(const struct target *b)
{
	return b->bdev && !b->err && !b->differs;
}

static bool any_undecided(const struct target *b, unsigned int nr)
{
	unsigned int i;

	for (i = 0; i < nr; i++)
		if (undecided(&b[i]))
			return true;
	return false;
}

/* How much of @b's region its device has. */
static sector_t available(const struct target *b)
{
	sector_t size = dm_bdev_nr_sectors(b->bdev);

	if (b->sector >= size)
		return 0;
	return size - b->sector < b->count ? size - b->sector : b->count;
}

/* @b differs from A at sector @at: its content, or one region ends there. */
static void set_difference(struct target *b, sector_t at)
{
	b->differs = true;
	b->first_diff = at;
	b->compared = at;
}

/* The first sector at which @x and @y differ, or @sectors. */
static sector_t first_difference(const char *x, const char *y, sector_t sectors)
{
	sector_t s;

	if (!memcmp(x, y, BYTES(sectors)))
		return sectors;
	for (s = 0; s < sectors; s++)
		if (memcmp(x + BYTES(s), y + BYTES(s), 1 << SECTOR_SHIFT))
			break;
	return s;
}

/* Compare one chunk of A with the undecided Bs; returns A's read error. */
static int compare_chunk(struct clients *c, struct target *a, struct target *b,
			 unsigned int nr, sector_t off, sector_t n, char **buf,
			 struct chunk_read *reads, struct batch *batch)
{
	sector_t avail, m, at;
	unsigned int i;

	start_read(c, &reads[0], a->bdev, a->sector + off, n, buf[0]);
	for (i = 0; i < nr; i++) {
		reads[i + 1].result = 0;
		if (!undecided(&b[i]) || available(&b[i]) <= off)
			continue;
		avail = available(&b[i]) - off;
		start_read(c, &reads[i + 1], b[i].bdev, b[i].sector + off,
			   avail < n ? avail : n, buf[i + 1]);
	}
	wait_batch(batch);
	if (reads[0].result)
		return reads[0].result;

	for (i = 0; i < nr; i++) {
		if (!undecided(&b[i]))
			continue;
		if (reads[i + 1].result) {
			b[i].err = reads[i + 1].result;
			b[i].compared = off;
			continue;
		}
		avail = available(&b[i]);
		m = avail <= off ? 0 : avail - off < n ? avail - off : n;
		at = first_difference(buf[0], buf[i + 1], m);
		if (at < m) {
			set_difference(&b[i], off + at);
		} else if (m < n) {
			set_difference(&b[i], off + m);
			b[i].shorter = true;
		} else {
			b[i].compared = off + n;
		}
	}
	return 0;
}

/*
 * Compare @a with each of @b (whose counts are settled) and record in each
 * B whether it is the same, where it first differs, or why it could not be
 * read.  Returns 0, or the negative errno of reading A (then the Bs not
 * yet decided fail with -ECANCELED, as they do when interrupted).
 */
int compare_regions(struct clients *c, struct target *a, struct target *b,
		    unsigned int nr, struct progress *pg, uint64_t *compared)
{
	struct batch batch = {.pending = 0};
	sector_t off = 0, n, chunk;
	struct chunk_read *reads;
	unsigned int i;
	char **buf;
	int ret = 0;

	chunk = a->count < CHUNK_SECTORS ? a->count : CHUNK_SECTORS;
	reads = calloc(nr + 1, sizeof(*reads));
	buf = calloc(nr + 1, sizeof(*buf));
	if (!reads || !buf)
		ret = -ENOMEM;
	for (i = 0; !ret && i <= nr; i++) {
		void *mem;

		reads[i].batch = &batch;
		/* Page-aligned, so that O_DIRECT devices need no bounce. */
		if (posix_memalign(&mem, DM_PAGE_SIZE,
				   chunk ? BYTES(chunk) : 1))
			ret = -ENOMEM;
		else
			buf[i] = mem;
	}
	pthread_mutex_init(&batch.lock, NULL);
	pthread_cond_init(&batch.done, NULL);

	while (!ret && off < a->count && !interrupted && any_undecided(b, nr)) {
		n = a->count - off < chunk ? a->count - off : chunk;
		ret = compare_chunk(c, a, b, nr, off, n, buf, reads, &batch);
		if (!ret)
			off += n;
		progress_update(pg, BYTES(off));
	}
	/* What was compared, not what was read: a chunk read in full may be
	 * decided after its first sector. */
	*compared = 0;
	for (i = 0; i < nr; i++) {
		if (undecided(&b[i]) && (ret || interrupted)) {
			b[i].err = -ECANCELED;
			b[i].compared = off;
		} else if (undecided(&b[i]) && b[i].count > a->count) {
			set_difference(&b[i], a->count);
			b[i].longer = true;
		}
		if (BYTES(b[i].compared) > *compared)
			*compared = BYTES(b[i].compared);
	}

	pthread_cond_destroy(&batch.done);
	pthread_mutex_destroy(&batch.lock);
	for (i = 0; buf && i <= nr; i++)
		free(buf[i]);
	free(buf);
	free(reads);
	return ret;
}

static void print_json(const struct target *a, const struct target *b,
		       unsigned int nr, uint64_t bytes, double seconds,
		       int read_err, int status)
{
	unsigned int i;

	printf("{\"command\":\"verify\",\"source\":");
	json_string(stdout, a->arg);
	printf(",\"source_error\":");
	json_string(stdout, read_err ? error_text(read_err) : NULL);
	printf(",\"bytes\":%llu,\"seconds\":%.3f,\"mib_per_s\":%.1f,"
	       "\"compared\":[",
	       (unsigned long long)bytes, seconds, mib_per_s(bytes, seconds));
	for (i = 0; i < nr; i++) {
		printf("%s{\"spec\":", i ? "," : "");
		json_string(stdout, b[i].arg);
		printf(",\"same\":%s,\"first_difference\":",
		       b[i].err || b[i].differs ? "false" : "true");
		if (b[i].differs)
			printf("%llu", (unsigned long long)b[i].first_diff);
		else
			printf("null");
		printf(",\"bytes\":%llu,\"ends_first\":%s",
		       (unsigned long long)BYTES(b[i].compared),
		       b[i].shorter  ? "\"B\""
		       : b[i].longer ? "\"A\""
				     : "null");
		printf(",\"ok\":%s,\"errno\":%d,\"error\":",
		       b[i].err ? "false" : "true", -b[i].err);
		json_string(stdout, b[i].err ? error_text(b[i].err) : NULL);
		printf("}");
	}
	printf("],\"exit\":%d}\n", status);
}

/* Open the Bs: each takes A's length unless it gives its own. */
static int open_others(struct target *a, struct target *b, unsigned int nr,
		       unsigned int flags)
{
	unsigned int i;
	int status;

	for (i = 0; i < nr; i++) {
		if (!b[i].has_count)
			b[i].count = a->count;
		b[i].err = target_open(&b[i], flags | DM_BDEV_RDONLY);
		if (b[i].err)
			continue;
		status = check_aligned(&b[i], b[i].count, "region");
		if (status)
			return status;
	}
	return 0;
}

static int run_verify(struct target *t, unsigned int nr, unsigned int flags,
		      bool quiet, bool json)
{
	struct clients cl = {0};
	struct progress pg;
	uint64_t compared = 0;
	char what[48];
	unsigned int i;
	int status, ret;
	sigset_t blocked;

	catch_signals(&blocked);
	status = open_source(&t[0], flags);
	if (!status)
		status = open_others(&t[0], t + 1, nr - 1, flags);
	if (!status) {
		pthread_sigmask(SIG_BLOCK, &blocked, NULL);
		status = clients_start(&cl, false);
		pthread_sigmask(SIG_UNBLOCK, &blocked, NULL);
	}
	if (status)
		goto out;

	progress_start(&pg, "compared", BYTES(t[0].count), quiet);
	ret = compare_regions(&cl, &t[0], t + 1, nr - 1, &pg, &compared);
	snprintf(what, sizeof(what), "with %u region%s", nr - 1,
		 nr == 2 ? "" : "s");
	progress_end(&pg, compared, what);
	if (ret)
		warn("reading '%s' failed: %s", t[0].arg, error_text(ret));

	status = ret ? EXIT_USAGE : 0;
	for (i = 1; i < nr && !status; i++)
		if (t[i].err || t[i].differs)
			status = EXIT_SOME_FAILED;
	if (interrupted) {
		warn("interrupted after comparing the first %llu sectors",
		     (unsigned long long)(compared >> SECTOR_SHIFT));
		status = 128 + interrupted;
	}
	if (json)
		print_json(&t[0], t + 1, nr - 1, compared, pg.seconds, ret,
			   status);
	else
		print_table(stdout, "region", t + 1, nr - 1, verify_result);
out:
	clients_stop(&cl);
	targets_release(t, nr, false);
	return status;
}

static int run(int argc, char *argv[])
{
	struct common_opts co = {0};
	struct target *t;
	unsigned int nr, i;
	int status;

	status = parse_options(argc, argv, &co, NULL, NULL);
	if (status != GO_ON)
		return status;
	nr = (unsigned int)(argc - optind);
	if (nr < 2)
		return usage_error(nr ? "missing a region to compare with"
				      : "missing regions");

	t = parse_targets(argv + optind, nr, &status);
	if (!t)
		return status;
	for (i = 0; i < nr; i++)
		if (t[i].stream)
			break;
	if (i < nr) {
		status = usage_error("'-' is a stream: verify compares regions "
				     "of devices");
		targets_release(t, nr, false);
	} else {
		status = run_verify(t, nr, co.open_flags, co.quiet, co.json);
	}
	free(t);
	return status;
}

static const char verify_usage[] =
	"Usage: dmio verify [OPTIONS] A B...\n"
	"\n"
	"Compare region A with each region B and report \"same\" or the\n"
	"first differing sector, counted from the start of the regions.\n"
	"A B without +COUNT is as long as A.\n";

const struct command verify_command = {
	.name = "verify",
	.run = run,
	.usage = verify_usage,
	.common = COMMON_DATA,
};

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * kcopyd (issue 4, <dmio/dm-kcopyd.h>): one region copied to 1, 3 and 8
 * destinations across sub-job boundaries and an unaligned tail; a short or
 * failing destination with and without IGNORE_ERROR; WRITE_SEQ order;
 * zeroing; a count-0 source; the errno per destination; destroy with jobs
 * in flight; callbacks one at a time on the client's thread; refusals;
 * regions that overlap on one device (issue 11); STOP_ON_READ_ERROR.
 *
 * Callbacks run on the kcopyd client's thread: they record what they saw
 * and the test thread checks it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <dmio/dm-kcopyd.h>

#include "harness.h"

#define SUB	  1024u		  /* the default sub-job, in sectors */
#define COUNT	  (3 * SUB + 200) /* three sub-jobs and a partial one */
#define SRC_SECT  40
#define SRC_SEED  500
#define DEV_BYTES (4 * MiB)

#define IGNORE (1u << DM_KCOPYD_IGNORE_ERROR)
#define SEQ    (1u << DM_KCOPYD_WRITE_SEQ)

/* The test's kcopyd clients, destroyed by kc_teardown() even when the test
 * fails, before the harness closes the devices. */
static struct dm_kcopyd_client *cur_kc[2];

static int kc_teardown(void **state)
{
	unsigned int i;

	for (i = 0; i < H_NR(cur_kc); i++) {
		dm_kcopyd_client_destroy(cur_kc[i]);
		cur_kc[i] = NULL;
	}
	return h_test_teardown(state);
}

#define K_TEST(f) cmocka_unit_test_setup_teardown(f, h_test_setup, kc_teardown)

/* A client: default options when @sub is 0, else sub-jobs of @sub sectors,
 * @per_job in flight per job. */
static struct dm_kcopyd_client *kc_new(unsigned int sub, unsigned int per_job)
{
	struct dm_kcopyd_options opts = {.sub_job_sectors = sub,
					 .sub_jobs_per_job = per_job};
	struct dm_kcopyd_client *kc;
	unsigned int i;

	kc = sub ? dm_kcopyd_client_create_opts(&opts)
		 : dm_kcopyd_client_create();
	if (!kc)
		fail_msg("creating a kcopyd client: %s", strerror(errno));
	for (i = 0; i < H_NR(cur_kc) && cur_kc[i]; i++)
		;
	assert_true(i < H_NR(cur_kc));
	cur_kc[i] = kc;
	return kc;
}

struct job {
	atomic_uint n; /* callbacks */
	int read_err;
	unsigned long write_err;
	pthread_t thread;
};

static void job_cb(int read_err, unsigned long write_err, void *context)
{
	struct job *j = context;

	j->read_err = read_err;
	j->write_err = write_err;
	j->thread = pthread_self();
	atomic_fetch_add(&j->n, 1);
}

static void job_init(struct job *j)
{
	memset(j, 0, sizeof(*j));
	atomic_init(&j->n, 0);
	j->read_err = -1;
	j->write_err = ~0ul;
}

/* Wait for the job's one callback. */
static void job_wait(struct job *j)
{
	if (!h_wait_count(&j->n, 1, 60000))
		fail_msg("the kcopyd callback did not run within 60 s");
	h_sleep_ms(2);
	assert_int_equal(atomic_load(&j->n), 1);
}

/* The source device, holding h_pattern(SRC_SEED). */
static struct block_device *src_new(struct h_env *env, struct h_dev **dev)
{
	*dev = h_dev_new(env, DEV_BYTES, SRC_SEED);
	return h_open(env, *dev, 0);
}

/* @dev holds the source's sectors [@src_sect, +@count) at @sect, and its
 * own bytes elsewhere. */
static void expect_copy(struct h_dev *dev, sector_t sect, sector_t src_sect,
			sector_t count)
{
	h_expect_initial(dev, 0, sect * 512);
	h_expect_pattern(dev, sect * 512, count * 512, SRC_SEED,
			 src_sect * 512);
	h_expect_initial(dev, (sect + count) * 512,
			 dev->size - (sect + count) * 512);
	assert_int_equal(h_dev_file_size(dev), dev->size);
}

/* ---- copies ------------------------------------------------------------- */

static void copy_to_1_3_8_destinations_byte_for_byte(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	const unsigned int nds[3] = {1, 3, 8};
	struct h_dev *src;
	struct io_region from = {src_new(env, &src), SRC_SECT, COUNT};
	struct h_dev *dev[DM_KCOPYD_MAX_REGIONS];
	struct io_region dests[DM_KCOPYD_MAX_REGIONS];
	unsigned int k, i;

	for (k = 0; k < 3; k++) {
		struct dm_kcopyd_errors errs;
		struct job j;

		/* Fresh devices each round, each region somewhere else. */
		for (i = 0; i < nds[k]; i++) {
			dev[i] = h_dev_new(env, DEV_BYTES, 510 + 10 * k + i);
			dests[i] = (struct io_region){h_open(env, dev[i], 0),
						      8 + 24 * i, COUNT};
		}
		job_init(&j);
		memset(&errs, 0x7f, sizeof(errs));
		assert_int_equal(dm_kcopyd_copy_errors(kc, &from, nds[k], dests,
						       0, job_cb, &j, &errs),
				 0);
		job_wait(&j);
		assert_int_equal(j.read_err, 0);
		assert_int_equal(j.write_err, 0);
		assert_int_equal(errs.read, 0);
		for (i = 0; i < nds[k]; i++) {
			assert_int_equal(errs.dests[i], 0);
			expect_copy(dev[i], dests[i].sector, SRC_SECT, COUNT);
		}
	}
	h_expect_untouched(src);
}

/* Source, and three destinations: 0 and 2 healthy, 1 too short (1 MiB, so
 * that sub-jobs 0 and 1 fit and 2 and the tail do not). */
struct three {
	struct h_dev *src, *dev[3];
	struct io_region from, dests[3];
};

static void three_setup(struct h_env *env, struct three *t)
{
	unsigned int i;

	t->from = (struct io_region){src_new(env, &t->src), SRC_SECT, COUNT};
	for (i = 0; i < 3; i++) {
		t->dev[i] =
			h_dev_new(env, i == 1 ? 1 * MiB : DEV_BYTES, 520 + i);
		t->dests[i] =
			(struct io_region){h_open(env, t->dev[i], 0), 0, COUNT};
	}
}

static void short_destination_with_ignore_error_others_complete(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	struct dm_kcopyd_errors errs;
	struct three t;
	struct job j;

	three_setup(env, &t);
	job_init(&j);
	assert_int_equal(dm_kcopyd_copy_errors(kc, &t.from, 3, t.dests, IGNORE,
					       job_cb, &j, &errs),
			 0);
	job_wait(&j);
	assert_int_equal(j.read_err, 0);
	assert_int_equal(j.write_err, 0x2);
	assert_int_equal(errs.dests[0], 0);
	assert_int_equal(errs.dests[1], -ENXIO);
	assert_int_equal(errs.dests[2], 0);
	expect_copy(t.dev[0], 0, SRC_SECT, COUNT);
	expect_copy(t.dev[2], 0, SRC_SECT, COUNT);
	/* What fitted on the short one was copied, and it did not grow. */
	h_expect_pattern(t.dev[1], 0, 2 * SUB * 512, SRC_SEED, SRC_SECT * 512);
	assert_int_equal(h_dev_file_size(t.dev[1]), 1 * MiB);
}

static void short_destination_without_ignore_error_stops(void **state)
{
	struct h_env *env = h_env(state);
	/* One sub-job at a time: the stop is exact. */
	struct dm_kcopyd_client *kc = kc_new(SUB, 1);
	struct three t;
	struct job j;

	three_setup(env, &t);
	job_init(&j);
	assert_int_equal(dm_kcopyd_copy(kc, &t.from, 3, t.dests, 0, job_cb, &j),
			 0);
	job_wait(&j);
	assert_int_equal(j.read_err, 0);
	assert_int_equal(j.write_err, 0x2);
	/* Sub-jobs 0 and 1 went everywhere, 2 failed on the short one (and
	 * was written to the others by the same write); the tail was never
	 * started. */
	h_expect_pattern(t.dev[0], 0, 3 * SUB * 512, SRC_SEED, SRC_SECT * 512);
	h_expect_initial(t.dev[0], 3 * SUB * 512,
			 t.dev[0]->size - 3 * SUB * 512);
	h_expect_pattern(t.dev[2], 0, 3 * SUB * 512, SRC_SEED, SRC_SECT * 512);
	h_expect_initial(t.dev[2], 3 * SUB * 512,
			 t.dev[2]->size - 3 * SUB * 512);
	h_expect_pattern(t.dev[1], 0, 2 * SUB * 512, SRC_SEED, SRC_SECT * 512);
}

/* 40 sub-jobs of 64 sectors, 8 in flight. */
#define SMALL	   64u
#define SMALL_JOBS 40u

static void failing_destination_with_and_without_ignore_error(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(SMALL, 8);
	struct h_dev *src, *dev[3];
	struct io_region from = {src_new(env, &src), SRC_SECT,
				 SMALL * SMALL_JOBS};
	struct io_region dests[3];
	struct dm_kcopyd_errors errs;
	char spec[256];
	unsigned int i, pass;
	struct job j;

	for (i = 0; i < 3; i++)
		dev[i] = h_dev_new(env, DEV_BYTES, 530 + i);
	snprintf(spec, sizeof(spec), "fault:fail-writes=all,errno=ENOSPC:%s",
		 dev[1]->path);
	for (pass = 0; pass < 2; pass++) {
		sector_t at = pass * 4096;

		for (i = 0; i < 3; i++)
			dests[i] = (struct io_region){
				i == 1 ? h_open_spec(env, spec, 0)
				       : h_open(env, dev[i], 0),
				at, from.count};
		job_init(&j);
		memset(&errs, 0x7f, sizeof(errs));
		assert_int_equal(dm_kcopyd_copy_errors(kc, &from, 3, dests,
						       pass ? 0 : IGNORE,
						       job_cb, &j, &errs),
				 0);
		job_wait(&j);
		assert_int_equal(j.read_err, 0);
		assert_int_equal(j.write_err, 0x2);
		assert_int_equal(errs.read, 0);
		assert_int_equal(errs.dests[0], 0);
		assert_int_equal(errs.dests[1], -ENOSPC);
		assert_int_equal(errs.dests[2], 0);
		for (i = 0; i < 3; i += 2) {
			uint64_t off = at * 512, len = from.count * 512;

			if (!pass) {
				/* IGNORE_ERROR: the healthy ones get all. */
				h_expect_pattern(dev[i], off, len, SRC_SEED,
						 SRC_SECT * 512);
				continue;
			}
			/* Without it: the first sub-job failed, so at most
			 * the 7 that were in flight beside it followed; no
			 * new sub-job started after the error. */
			off += 8 * SMALL * 512;
			len -= 8 * SMALL * 512;
			h_expect_initial(dev[i], off, len);
		}
	}
	h_expect_untouched(dev[1]);
}

static void write_seq_writes_in_ascending_order(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(SMALL, 8);
	struct h_dev *src, *dev[2];
	struct io_region from = {src_new(env, &src), SRC_SECT,
				 SMALL * SMALL_JOBS};
	const unsigned int n = 5; /* writes that pass before the fault */
	struct io_region dests[2];
	char spec[256];
	unsigned int pass;
	struct job j;

	dev[0] = h_dev_new(env, DEV_BYTES, 540);
	dev[1] = h_dev_new(env, DEV_BYTES, 541);
	/* Destination 0 takes n writes, then fails every one: in order,
	 * those n are sub-jobs 0..n-1. */
	snprintf(spec, sizeof(spec), "fault:fail-writes=all,after=%u:%s", n,
		 dev[0]->path);
	for (pass = 0; pass < 2; pass++) {
		sector_t at = pass * 4096;
		uint64_t off = at * 512, done = n * SMALL * 512;
		/* the last sub-job that can have started: n - 1 done, the
		 * failing one and 7 beside it */
		uint64_t started = (n + 8) * SMALL * 512;

		dests[0] = (struct io_region){h_open_spec(env, spec, 0), at,
					      from.count};
		dests[1] = (struct io_region){h_open(env, dev[1], 0), at,
					      from.count};
		job_init(&j);
		/* WRITE_SEQ turns IGNORE_ERROR off: the second pass must stop
		 * just the same. */
		assert_int_equal(dm_kcopyd_copy(kc, &from, 2, dests,
						pass ? SEQ | IGNORE : SEQ,
						job_cb, &j),
				 0);
		job_wait(&j);
		assert_int_equal(j.read_err, 0);
		assert_int_equal(j.write_err & 1, 1);
		h_expect_pattern(dev[0], off, done, SRC_SEED, SRC_SECT * 512);
		h_expect_initial(dev[0], off + done, from.count * 512 - done);
		h_expect_pattern(dev[1], off, done, SRC_SEED, SRC_SECT * 512);
		h_expect_initial(dev[1], off + started,
				 from.count * 512 - started);
	}
}

static void copy_with_fua_flag_copies(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	struct h_dev *src, *dev = h_dev_new(env, DEV_BYTES, 545);
	struct io_region from = {src_new(env, &src), SRC_SECT, COUNT};
	struct io_region to = {h_open(env, dev, 0), 16, COUNT};
	struct job j;

	/* Documented in <dmio/dm-kcopyd.h>, used by dmio copy --fua. */
	job_init(&j);
	assert_int_equal(dm_kcopyd_copy(kc, &from, 1, &to, 1u << DM_KCOPYD_FUA,
					job_cb, &j),
			 0);
	job_wait(&j);
	assert_int_equal(j.write_err, 0);
	expect_copy(dev, 16, SRC_SECT, COUNT);
}

/* ---- errors per destination --------------------------------------------- */

static void copy_errors_reports_the_errno_per_destination(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	static const char *const opts[3] = {NULL, "errno=ENOSPC",
					    "errno=EROFS"};
	struct h_dev *src, *dev[5];
	struct io_region from = {src_new(env, &src), SRC_SECT, COUNT};
	struct io_region dests[5];
	struct dm_kcopyd_errors errs;
	char spec[256];
	unsigned int i;
	struct job j;

	for (i = 0; i < 5; i++) {
		dev[i] = h_dev_new(env, i == 3 ? 1 * MiB : DEV_BYTES, 550 + i);
		if (i == 1 || i == 2) {
			snprintf(spec, sizeof(spec),
				 "fault:fail-writes=all,%s:%s", opts[i],
				 dev[i]->path);
			dests[i].bdev = h_open_spec(env, spec, 0);
		} else {
			dests[i].bdev = h_open(env, dev[i], 0);
		}
		dests[i].sector = 8;
		dests[i].count = COUNT;
	}
	job_init(&j);
	memset(&errs, 0x7f, sizeof(errs));
	assert_int_equal(dm_kcopyd_copy_errors(kc, &from, 5, dests, IGNORE,
					       job_cb, &j, &errs),
			 0);
	job_wait(&j);
	assert_int_equal(j.read_err, 0);
	assert_int_equal(j.write_err, 0xe);
	assert_int_equal(errs.read, 0);
	assert_int_equal(errs.dests[0], 0);
	assert_int_equal(errs.dests[1], -ENOSPC);
	assert_int_equal(errs.dests[2], -EROFS);
	assert_int_equal(errs.dests[3], -ENXIO);
	assert_int_equal(errs.dests[4], 0);
	expect_copy(dev[0], 8, SRC_SECT, COUNT);
	expect_copy(dev[4], 8, SRC_SECT, COUNT);

	/* A source that cannot be read: read_err and its errno, and without
	 * IGNORE_ERROR nothing is written. */
	snprintf(spec, sizeof(spec), "fault:fail-reads=all,errno=ETIMEDOUT:%s",
		 src->path);
	from.bdev = h_open_spec(env, spec, 0);
	dests[0].sector = 4096;
	job_init(&j);
	memset(&errs, 0x7f, sizeof(errs));
	assert_int_equal(dm_kcopyd_copy_errors(kc, &from, 1, dests, 0, job_cb,
					       &j, &errs),
			 0);
	job_wait(&j);
	assert_int_equal(j.read_err, 1);
	assert_int_equal(j.write_err, 0);
	assert_int_equal(errs.read, -ETIMEDOUT);
	assert_int_equal(errs.dests[0], 0);
	h_expect_initial(dev[0], 4096 * 512, COUNT * 512);
	h_expect_untouched(src);
}

/* ---- zero and count 0 --------------------------------------------------- */

static void zero_writes_zeroes_to_each_destination(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	const sector_t counts[3] = {COUNT, 1024, 8};
	struct h_dev *dev[3];
	struct io_region dests[3];
	struct dm_kcopyd_errors errs;
	char *buf = h_alloc(COUNT * 512);
	unsigned int i;
	struct job j;

	for (i = 0; i < 3; i++) {
		dev[i] = h_dev_new(env, DEV_BYTES, 560 + i);
		dests[i] = (struct io_region){h_open(env, dev[i], 0),
					      16 + 8 * i, counts[i]};
	}
	job_init(&j);
	memset(&errs, 0x7f, sizeof(errs));
	assert_int_equal(
		dm_kcopyd_zero_errors(kc, 3, dests, 0, job_cb, &j, &errs), 0);
	job_wait(&j);
	assert_int_equal(j.read_err, 0);
	assert_int_equal(j.write_err, 0);
	for (i = 0; i < 3; i++) {
		uint64_t off = dests[i].sector * 512, len = counts[i] * 512;

		assert_int_equal(errs.dests[i], 0);
		h_dev_read(dev[i], off, buf, len);
		assert_int_equal(h_byte_mismatch(buf, len, 0), -1);
		h_expect_initial(dev[i], 0, off);
		h_expect_initial(dev[i], off + len, dev[i]->size - off - len);
	}
	free(buf);
}

static void count_zero_source_calls_back_at_once(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	struct h_dev *src, *dev = h_dev_new(env, 1 * MiB, 570);
	struct io_region from = {src_new(env, &src), SRC_SECT, 0};
	struct io_region to = {h_open(env, dev, 0), 8, 0};
	struct job j;

	job_init(&j);
	assert_int_equal(dm_kcopyd_copy(kc, &from, 1, &to, 0, job_cb, &j), 0);
	if (!h_wait_count(&j.n, 1, 5000))
		fail_msg("a count-0 copy did not call back within 5 s");
	assert_int_equal(j.read_err, 0);
	assert_int_equal(j.write_err, 0);
	/* The same for zeroing nothing. */
	job_init(&j);
	assert_int_equal(dm_kcopyd_zero(kc, 1, &to, 0, job_cb, &j), 0);
	if (!h_wait_count(&j.n, 1, 5000))
		fail_msg("a count-0 zero did not call back within 5 s");
	assert_int_equal(j.write_err, 0);
	h_sleep_ms(20);
	assert_int_equal(atomic_load(&j.n), 1);
	h_expect_untouched(dev);
	h_expect_untouched(src);
}

/* ---- the client --------------------------------------------------------- */

static void destroy_waits_for_every_job_in_flight(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	struct h_dev *src, *dev = h_dev_new(env, DEV_BYTES, 580);
	struct io_region from = {src_new(env, &src), SRC_SECT, COUNT};
	struct io_region to;
	char spec[256];
	static struct job jobs[3]; /* outlive the test if it fails */
	unsigned int i;

	/* Slow writes: every I/O waits 100 ms. */
	snprintf(spec, sizeof(spec), "fault:delay=100:%s", dev->path);
	to.bdev = h_open_spec(env, spec, 0);
	from.count = to.count = 1200;
	for (i = 0; i < 3; i++) {
		job_init(&jobs[i]);
		to.sector = 8 + 1400 * i;
		assert_int_equal(
			dm_kcopyd_copy(kc, &from, 1, &to, 0, job_cb, &jobs[i]),
			0);
	}
	cur_kc[0] = NULL;
	dm_kcopyd_client_destroy(kc);
	/* Returned: every callback has run, once. */
	for (i = 0; i < 3; i++) {
		assert_int_equal(atomic_load(&jobs[i].n), 1);
		assert_int_equal(jobs[i].write_err, 0);
		h_expect_pattern(dev, (8 + 1400 * i) * 512, 1200 * 512,
				 SRC_SEED, SRC_SECT * 512);
	}
}

#define MANY 48

static atomic_uint in_cb, overlaps, many_done;
static pthread_t cb_threads[MANY];

static void serial_cb(int read_err, unsigned long write_err, void *context)
{
	unsigned int i = (unsigned int)(uintptr_t)context;

	if (atomic_exchange(&in_cb, 1))
		atomic_fetch_add(&overlaps, 1);
	if (read_err || write_err)
		atomic_fetch_add(&overlaps, 1000);
	cb_threads[i] = pthread_self();
	h_sleep_ms(2);
	atomic_store(&in_cb, 0);
	atomic_fetch_add(&many_done, 1);
}

static void callbacks_never_run_concurrently(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	struct h_dev *src, *dev = h_dev_new(env, DEV_BYTES, 590);
	struct io_region from = {src_new(env, &src), 0, 16};
	struct io_region to = {h_open(env, dev, 0), 0, 16};
	unsigned int i;

	atomic_store(&in_cb, 0);
	atomic_store(&overlaps, 0);
	atomic_store(&many_done, 0);
	for (i = 0; i < MANY; i++) {
		from.sector = 16 * i;
		to.sector = 16 * (MANY - 1 - i);
		assert_int_equal(dm_kcopyd_copy(kc, &from, 1, &to, 0, serial_cb,
						(void *)(uintptr_t)i),
				 0);
	}
	if (!h_wait_count(&many_done, MANY, 60000))
		fail_msg("%u of %u callbacks within 60 s",
			 atomic_load(&many_done), MANY);
	assert_int_equal(atomic_load(&overlaps), 0);
	/* All on one thread: the client's own, not ours. */
	for (i = 0; i < MANY; i++) {
		assert_true(pthread_equal(cb_threads[i], cb_threads[0]));
		h_expect_pattern(dev, 16 * (MANY - 1 - i) * 512, 16 * 512,
				 SRC_SEED, 16 * i * 512);
	}
	assert_false(pthread_equal(cb_threads[0], pthread_self()));
}

struct chain {
	struct dm_kcopyd_client *kc;
	struct io_region from, to;
	struct job second;
	atomic_int first_ret;
	atomic_uint first_done;
};

static void chain_cb(int read_err, unsigned long write_err, void *context)
{
	struct chain *c = context;

	(void)read_err;
	(void)write_err;
	/* From the callback, start the next job. */
	atomic_store(&c->first_ret, dm_kcopyd_copy(c->kc, &c->from, 1, &c->to,
						   0, job_cb, &c->second));
	atomic_fetch_add(&c->first_done, 1);
}

static void callback_may_start_another_job(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *src, *dev = h_dev_new(env, DEV_BYTES, 595);
	static struct chain c; /* outlives the test if it fails */
	struct io_region from = {src_new(env, &src), SRC_SECT, COUNT};
	struct io_region to = {h_open(env, dev, 0), 8, COUNT};

	c.kc = kc_new(0, 0);
	c.from = from;
	c.to = (struct io_region){to.bdev, 4096, COUNT};
	job_init(&c.second);
	atomic_store(&c.first_done, 0);
	atomic_store(&c.first_ret, 1);
	assert_int_equal(dm_kcopyd_copy(c.kc, &from, 1, &to, 0, chain_cb, &c),
			 0);
	assert_true(h_wait_count(&c.first_done, 1, 60000));
	assert_int_equal(atomic_load(&c.first_ret), 0);
	job_wait(&c.second);
	assert_int_equal(c.second.write_err, 0);
	h_expect_pattern(dev, 8 * 512, COUNT * 512, SRC_SEED, SRC_SECT * 512);
	h_expect_pattern(dev, 4096 * 512, COUNT * 512, SRC_SEED,
			 SRC_SECT * 512);
}

/* ---- refusals ----------------------------------------------------------- */

static atomic_uint refused_cb;

static void refused(int read_err, unsigned long write_err, void *context)
{
	(void)read_err;
	(void)write_err;
	(void)context;
	atomic_fetch_add(&refused_cb, 1);
}

static void bad_arguments_are_einval_without_callback(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(0, 0);
	struct h_dev *src, *dev = h_dev_new(env, DEV_BYTES, 599);
	struct io_region from = {src_new(env, &src), SRC_SECT, 64};
	struct io_region d[DM_KCOPYD_MAX_REGIONS + 1], shorter, nobdev, huge;
	const unsigned int bad_flags[] = {1u << 0, 1u << 3, 1u << 15, 1u << 31};
	const struct dm_kcopyd_options bad_opts[] = {
		{.sub_job_sectors = 7},
		{.sub_job_sectors = 32776},
		{.sub_job_sectors = 1u << 20},
		{.sub_jobs_per_job = 65}};
	unsigned int i;

	atomic_store(&refused_cb, 0);
	for (i = 0; i <= DM_KCOPYD_MAX_REGIONS; i++)
		d[i] = (struct io_region){h_open(env, dev, 0), 8 + 64 * i, 64};
	shorter = (struct io_region){d[0].bdev, 8, 63};
	nobdev = (struct io_region){NULL, 8, 64};
	huge = (struct io_region){d[0].bdev, UINT64_MAX - 8, 64};

	/* 0 or 9 destinations */
	assert_int_equal(dm_kcopyd_copy(kc, &from, 0, d, 0, refused, NULL),
			 -EINVAL);
	assert_int_equal(dm_kcopyd_copy(kc, &from, DM_KCOPYD_MAX_REGIONS + 1, d,
					0, refused, NULL),
			 -EINVAL);
	/* NULL client, regions, callback, device */
	assert_int_equal(dm_kcopyd_copy(NULL, &from, 1, d, 0, refused, NULL),
			 -EINVAL);
	assert_int_equal(dm_kcopyd_copy(kc, NULL, 1, d, 0, refused, NULL),
			 -EINVAL);
	assert_int_equal(dm_kcopyd_copy(kc, &from, 1, NULL, 0, refused, NULL),
			 -EINVAL);
	assert_int_equal(dm_kcopyd_copy(kc, &from, 1, d, 0, NULL, NULL),
			 -EINVAL);
	assert_int_equal(
		dm_kcopyd_copy(kc, &from, 1, &nobdev, 0, refused, NULL),
		-EINVAL);
	/* a destination shorter than the source */
	assert_int_equal(
		dm_kcopyd_copy(kc, &from, 1, &shorter, 0, refused, NULL),
		-EINVAL);
	d[1] = shorter;
	assert_int_equal(dm_kcopyd_copy(kc, &from, 3, d, 0, refused, NULL),
			 -EINVAL);
	d[1] = d[2];
	/* sector + count overflowing */
	assert_int_equal(dm_kcopyd_copy(kc, &from, 1, &huge, 0, refused, NULL),
			 -EINVAL);
	/* unknown flags */
	for (i = 0; i < H_NR(bad_flags); i++) {
		assert_int_equal(dm_kcopyd_copy(kc, &from, 1, d, bad_flags[i],
						refused, NULL),
				 -EINVAL);
		assert_int_equal(
			dm_kcopyd_zero(kc, 1, d, bad_flags[i], refused, NULL),
			-EINVAL);
	}
	/* zeroing: the same rules */
	assert_int_equal(dm_kcopyd_zero(kc, 0, d, 0, refused, NULL), -EINVAL);
	assert_int_equal(dm_kcopyd_zero(kc, DM_KCOPYD_MAX_REGIONS + 1, d, 0,
					refused, NULL),
			 -EINVAL);
	assert_int_equal(dm_kcopyd_zero(kc, 1, NULL, 0, refused, NULL),
			 -EINVAL);
	assert_int_equal(dm_kcopyd_zero(NULL, 1, d, 0, refused, NULL), -EINVAL);
	assert_int_equal(dm_kcopyd_zero(kc, 1, d, 0, NULL, NULL), -EINVAL);
	assert_int_equal(dm_kcopyd_zero(kc, 1, &nobdev, 0, refused, NULL),
			 -EINVAL);
	/* client options out of range */
	for (i = 0; i < H_NR(bad_opts); i++) {
		errno = 0;
		assert_null(dm_kcopyd_client_create_opts(&bad_opts[i]));
		assert_int_equal(errno, EINVAL);
	}

	h_sleep_ms(100);
	assert_int_equal(atomic_load(&refused_cb), 0);
	h_expect_untouched(dev);
	/* The client still works. */
	{
		struct job j;

		job_init(&j);
		assert_int_equal(dm_kcopyd_copy(kc, &from, 1, d, 0, job_cb, &j),
				 0);
		job_wait(&j);
		assert_int_equal(j.write_err, 0);
		h_expect_pattern(dev, 8 * 512, 64 * 512, SRC_SEED,
				 SRC_SECT * 512);
	}
}

/* ---- regions that share a device ---------------------------------------- */

/* @dev's path with "/./" for its last '/': another name for the file. */
static void other_name(const struct h_dev *dev, char *buf, size_t len)
{
	const char *slash = strrchr(dev->path, '/');

	snprintf(buf, len, "%.*s/.%s", (int)(slash - dev->path), dev->path,
		 slash);
}

static void same_storage_seen_through_names_and_fault_layers(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, DEV_BYTES, 535);
	struct h_dev *other = h_dev_new(env, DEV_BYTES, 536);
	struct block_device *a = h_open(env, dev, 0);
	struct block_device *b = h_open(env, dev, DM_BDEV_RDONLY);
	char spec[300], name[200];

	other_name(dev, name, sizeof(name));
	snprintf(spec, sizeof(spec), "fault:fail-reads=all:%s", name);
	assert_int_equal(dm_bdev_same(a, b), 1);
	assert_int_equal(dm_bdev_same(a, h_open_spec(env, name, 0)), 1);
	assert_int_equal(dm_bdev_same(h_open_spec(env, spec, 0), b), 1);
	assert_int_equal(dm_bdev_same(a, h_open(env, other, 0)), 0);
	assert_int_equal(dm_bdev_same(a, NULL), 0);
	assert_int_equal(dm_bdev_same(NULL, NULL), 0);
}

/*
 * Copy [@src_sect, +@count) of one device to @dst_sect of the same device,
 * through two handles (the source one a fault: wrapper that delays every
 * read, so that concurrent sub-jobs finish out of step), and check that
 * the destination holds what the source held before, memmove()-style.
 */
static void overlapping_copy(void **state, unsigned int per_job,
			     sector_t src_sect, sector_t dst_sect,
			     sector_t count)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(SMALL, per_job);
	struct h_dev *dev = h_dev_new(env, DEV_BYTES, 540);
	char spec[200];
	struct io_region from, to;
	struct job j;

	snprintf(spec, sizeof(spec), "fault:delay=1:%s", dev->path);
	from = (struct io_region){h_open_spec(env, spec, 0), src_sect, count};
	to = (struct io_region){h_open(env, dev, 0), dst_sect, count};
	job_init(&j);
	assert_int_equal(dm_kcopyd_copy(kc, &from, 1, &to, IGNORE, job_cb, &j),
			 0);
	job_wait(&j);
	assert_int_equal(j.read_err, 0);
	assert_int_equal(j.write_err, 0);
	h_expect_initial(dev, 0, dst_sect * 512);
	h_expect_pattern(dev, dst_sect * 512, count * 512, dev->seed,
			 src_sect * 512);
	h_expect_initial(dev, (dst_sect + count) * 512,
			 dev->size - (dst_sect + count) * 512);
}

static void overlap_above_the_source_one_sub_job_at_a_time(void **state)
{
	/* In order from the front, every sub-job would read what the one
	 * before it had just written. */
	overlapping_copy(state, 1, 8, 9, SMALL * SMALL_JOBS);
}

static void overlap_above_the_source_concurrent(void **state)
{
	overlapping_copy(state, 8, 8, 8 + SMALL / 2, SMALL * SMALL_JOBS);
	overlapping_copy(state, 8, 0, 3 * SMALL + 8, SMALL * SMALL_JOBS + 5);
}

static void overlap_below_the_source_concurrent(void **state)
{
	overlapping_copy(state, 8, 8 + SMALL / 2, 8, SMALL * SMALL_JOBS);
	overlapping_copy(state, 8, 3 * SMALL + 8, 0, SMALL * SMALL_JOBS + 5);
}

static void overlap_onto_itself_copies(void **state)
{
	overlapping_copy(state, 8, 8, 8, SMALL * SMALL_JOBS);
}

static void overlaps_no_order_can_serve_are_einval(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_kcopyd_client *kc = kc_new(SMALL, 8);
	struct h_dev *dev = h_dev_new(env, DEV_BYTES, 545);
	struct block_device *a = h_open(env, dev, 0), *b = h_open(env, dev, 0);
	struct io_region from = {a, 1000, 100};
	struct io_region twice[2] = {{a, 3000, 100}, {b, 3050, 100}};
	struct io_region sides[2] = {{b, 950, 100}, {a, 1050, 100}};
	struct io_region apart[2] = {{a, 3000, 100}, {b, 3100, 100}};
	struct job j;

	atomic_store(&refused_cb, 0);
	assert_int_equal(dm_kcopyd_copy(kc, &from, 2, twice, 0, refused, NULL),
			 -EINVAL);
	assert_int_equal(dm_kcopyd_copy(kc, &from, 2, sides, 0, refused, NULL),
			 -EINVAL);
	h_sleep_ms(50);
	assert_int_equal(atomic_load(&refused_cb), 0);
	h_expect_untouched(dev);
	/* Side by side on one device is fine. */
	job_init(&j);
	assert_int_equal(dm_kcopyd_copy(kc, &from, 2, apart, 0, job_cb, &j), 0);
	job_wait(&j);
	assert_int_equal(j.write_err, 0);
	h_expect_pattern(dev, 3000 * 512, 100 * 512, dev->seed, 1000 * 512);
	h_expect_pattern(dev, 3100 * 512, 100 * 512, dev->seed, 1000 * 512);
}

/* ---- STOP_ON_READ_ERROR ------------------------------------------------- */

static void stop_on_read_error_never_writes_what_was_not_read(void **state)
{
	struct h_env *env = h_env(state);
	/* One sub-job at a time: where the job stops is exact. */
	struct dm_kcopyd_client *kc = kc_new(SMALL, 1);
	struct h_dev *src = h_dev_new(env, DEV_BYTES, SRC_SEED);
	struct h_dev *dev[2];
	struct dm_kcopyd_errors errs;
	struct io_region from, dests[2];
	char rspec[200], wspec[200];
	unsigned int i, pass;
	struct job j;

	/* Sub-job 3's read fails; destination 1 refuses every write. */
	snprintf(rspec, sizeof(rspec), "fault:fail-reads=%u+8:%s",
		 3 * SMALL + 10, src->path);
	for (pass = 0; pass < 2; pass++) {
		unsigned int flags =
			IGNORE |
			(pass ? 1u << DM_KCOPYD_STOP_ON_READ_ERROR : 0);

		for (i = 0; i < 2; i++)
			dev[i] = h_dev_new(env, DEV_BYTES, 550 + 2 * pass + i);
		snprintf(wspec, sizeof(wspec), "fault:fail-writes=all:%s",
			 dev[1]->path);
		from = (struct io_region){h_open_spec(env, rspec, 0), 0,
					  SMALL * 8};
		dests[0] = (struct io_region){h_open(env, dev[0], 0), 0,
					      SMALL * 8};
		dests[1] = (struct io_region){h_open_spec(env, wspec, 0), 0,
					      SMALL * 8};
		job_init(&j);
		assert_int_equal(dm_kcopyd_copy_errors(kc, &from, 2, dests,
						       flags, job_cb, &j,
						       &errs),
				 0);
		job_wait(&j);
		assert_int_equal(j.read_err, 1);
		assert_int_equal(errs.read, -EIO);
		assert_int_equal(j.write_err, 0x2);
		/* The failed destination did not stop the healthy one. */
		h_expect_pattern(dev[0], 0, 3 * SMALL * 512, SRC_SEED, 0);
		if (!pass) {
			/* The kernel's way: the failed sub-job is written
			 * (zeroes where the read failed), then the rest. */
			h_expect_pattern(dev[0], 4 * SMALL * 512,
					 4 * SMALL * 512, SRC_SEED,
					 4 * SMALL * 512);
		} else {
			/* Nothing from the failed sub-job on. */
			h_expect_initial(dev[0], 3 * SMALL * 512,
					 dev[0]->size - 3 * SMALL * 512);
		}
		h_expect_untouched(dev[1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		K_TEST(copy_to_1_3_8_destinations_byte_for_byte),
		K_TEST(short_destination_with_ignore_error_others_complete),
		K_TEST(short_destination_without_ignore_error_stops),
		K_TEST(failing_destination_with_and_without_ignore_error),
		K_TEST(write_seq_writes_in_ascending_order),
		K_TEST(copy_with_fua_flag_copies),
		K_TEST(copy_errors_reports_the_errno_per_destination),
		K_TEST(zero_writes_zeroes_to_each_destination),
		K_TEST(count_zero_source_calls_back_at_once),
		K_TEST(destroy_waits_for_every_job_in_flight),
		K_TEST(callbacks_never_run_concurrently),
		K_TEST(callback_may_start_another_job),
		K_TEST(bad_arguments_are_einval_without_callback),
		K_TEST(same_storage_seen_through_names_and_fault_layers),
		K_TEST(overlap_above_the_source_one_sub_job_at_a_time),
		K_TEST(overlap_above_the_source_concurrent),
		K_TEST(overlap_below_the_source_concurrent),
		K_TEST(overlap_onto_itself_copies),
		K_TEST(overlaps_no_order_can_serve_are_einval),
		K_TEST(stop_on_read_error_never_writes_what_was_not_read),
	};

	return H_RUN("kcopyd", tests, tests);
}

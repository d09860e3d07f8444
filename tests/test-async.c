/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Asynchronous I/O (design.md 1.1 "Async", 1.2 clients): callbacks run
 * exactly once, after every region completed; refused requests never call
 * back; callbacks may submit more I/O, even more than the ring holds; a
 * sync call from a callback is -EDEADLK; many threads may submit at once;
 * dm_io_client_destroy() drains, also when called from a callback; a
 * request never waits behind a slow one.
 *
 * Callbacks run on library threads: they never use cmocka asserts, they
 * record what they saw and the test thread checks it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NDEV 3

struct devs {
	struct h_dev *dev[NDEV];
	struct block_device *bdev[NDEV];
};

static void devs_setup(struct h_env *env, struct devs *d, uint64_t bytes)
{
	unsigned int i;

	for (i = 0; i < NDEV; i++) {
		d->dev[i] = h_dev_new(env, bytes, 30 + i);
		d->bdev[i] = h_open(env, d->dev[i], 0);
	}
}

/* pread, for callbacks: true when the device holds the pattern there. */
static bool holds_pattern(struct h_dev *dev, uint64_t off, size_t len,
			  uint32_t seed, uint64_t pos)
{
	char buf[4096];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(buf) ? len - done : sizeof(buf);

		if (pread(dev->fd, buf, n, (off_t)(off + done)) != (ssize_t)n)
			return false;
		if (h_pattern_mismatch(buf, n, seed, pos + done) >= 0)
			return false;
		done += n;
	}
	return true;
}

/* ---- exactly once ------------------------------------------------------- */

#define ONCE_REQS 200
#define ONCE_LEN  (8 * KiB)

struct once {
	struct devs *d;
	struct io_region where[NDEV];
	atomic_uint calls;
	atomic_ulong bits;
	bool complete_when_called; /* all regions held the data */
	unsigned int idx;
};

static atomic_uint once_total;

static void once_cb(unsigned long error, void *context)
{
	struct once *o = context;
	unsigned int i;
	bool complete = true;

	for (i = 0; i < NDEV; i++)
		if (!(error & (1ul << i)) &&
		    !holds_pattern(o->d->dev[i], o->where[i].sector * 512,
				   ONCE_LEN, 500 + o->idx, 0))
			complete = false;
	o->complete_when_called = complete;
	atomic_store(&o->bits, error);
	atomic_fetch_add(&o->calls, 1);
	atomic_fetch_add(&once_total, 1);
}

static void async_callback_runs_exactly_once_after_all_regions(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_io_client *client = dm_io_client_create();
	struct once *o = calloc(ONCE_REQS, sizeof(*o));
	char *data = h_alloc_aligned((size_t)ONCE_REQS * ONCE_LEN);
	struct devs d;
	unsigned int i, k;

	assert_non_null(client);
	assert_non_null(o);
	devs_setup(env, &d, 2 * MiB);
	atomic_store(&once_total, 0);
	for (i = 0; i < ONCE_REQS; i++) {
		char *buf = data + (size_t)i * ONCE_LEN;
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
			.notify = {once_cb, &o[i]},
			.client = client,
		};

		o[i].d = &d;
		o[i].idx = i;
		atomic_init(&o[i].calls, 0);
		atomic_init(&o[i].bits, ~0ul);
		for (k = 0; k < NDEV; k++)
			o[i].where[k] = (struct io_region){
				d.bdev[k], (sector_t)i * (ONCE_LEN >> 9),
				ONCE_LEN >> 9};
		/* every seventh: region 1 runs past the end */
		if (i % 7 == 3)
			o[i].where[1].sector = 4096 - 8;
		h_pattern(buf, ONCE_LEN, 500 + i, 0);
		/* alternate the front doors */
		if (i % 2)
			assert_int_equal(dm_io(&req, NDEV, o[i].where, NULL),
					 0);
		else
			assert_int_equal(dm_io_async_vm(NDEV, o[i].where,
							DM_IO_WRITE, buf,
							once_cb, &o[i]),
					 0);
	}
	assert_true(h_wait_count(&once_total, ONCE_REQS, 60000));
	/* Drain the client, give stray callbacks a chance, then count. */
	dm_io_client_destroy(client);
	h_sleep_ms(50);
	assert_int_equal(atomic_load(&once_total), ONCE_REQS);
	for (i = 0; i < ONCE_REQS; i++) {
		unsigned long want = i % 7 == 3 ? 1ul << 1 : 0;

		if (atomic_load(&o[i].calls) != 1)
			fail_msg("request %u: %u callbacks", i,
				 atomic_load(&o[i].calls));
		if (atomic_load(&o[i].bits) != want)
			fail_msg("request %u: bits %#lx, expected %#lx", i,
				 atomic_load(&o[i].bits), want);
		if (!o[i].complete_when_called)
			fail_msg("request %u: called back before every "
				 "region held its data",
				 i);
	}
	free(o);
	free(data);
}

/* ---- refused requests --------------------------------------------------- */

static atomic_uint stray;

static void stray_cb(unsigned long error, void *context)
{
	(void)error;
	(void)context;
	atomic_fetch_add(&stray, 1);
}

static void refused_async_request_never_calls_back(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_io_client *client = dm_io_client_create();
	char *data = h_alloc_aligned(8 * KiB);
	struct io_region bad[NDEV];
	struct devs d;
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.notify = {stray_cb, NULL},
		.client = client,
	};
	unsigned int i;

	assert_non_null(client);
	devs_setup(env, &d, 1 * MiB);
	atomic_store(&stray, 0);
	for (i = 0; i < NDEV; i++)
		bad[i] = (struct io_region){d.bdev[i], 8, 16};
	bad[2].count = UINT64_MAX; /* overflows */
	assert_int_equal(dm_io(&req, NDEV, bad, NULL), -EINVAL);
	assert_int_equal(
		dm_io_async_vm(NDEV, bad, DM_IO_WRITE, data, stray_cb, NULL),
		-EINVAL);
	assert_int_equal(
		dm_io_async_vm(2, bad, DM_IO_READ, data, stray_cb, NULL),
		-EINVAL);
	req.mem.ptr.addr = NULL;
	assert_int_equal(dm_io(&req, 2, bad, NULL), -EINVAL);
	/* Accepted requests still call back, exactly once each. */
	req.mem.ptr.addr = data;
	assert_int_equal(dm_io(&req, 2, bad, NULL), 0);
	assert_int_equal(
		dm_io_async_vm(2, bad, DM_IO_WRITE, data, stray_cb, NULL), 0);
	dm_io_client_destroy(client);
	assert_true(h_wait_count(&stray, 2, 30000));
	h_sleep_ms(50);
	assert_int_equal(atomic_load(&stray), 2);
	h_expect_untouched(d.dev[2]);
	free(data);
}

/* ---- where callbacks run ------------------------------------------------ */

struct where_cb {
	atomic_uint calls;
	pthread_t thread;
	unsigned long bits;
};

static void where_cb(unsigned long error, void *context)
{
	struct where_cb *w = context;

	w->thread = pthread_self();
	w->bits = error;
	atomic_fetch_add(&w->calls, 1);
}

/* dm_io(3): notify.fn runs on a library thread, never inside dm_io() on
 * the caller's, even for a request with nothing to issue or whose regions
 * all fail before issue. */
static void callback_never_runs_on_the_callers_thread(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_io_client *client = dm_io_client_create();
	char *data = h_alloc_aligned(8 * KiB);
	struct devs d;
	struct io_region cases[3];
	const unsigned long want_bits[3] = {0, 0, 1};
	unsigned int i;

	assert_non_null(client);
	devs_setup(env, &d, 1 * MiB);
	memset(data, 0x3c, 8 * KiB);
	cases[0] = (struct io_region){d.bdev[0], 8, 16};    /* real I/O */
	cases[1] = (struct io_region){d.bdev[0], 8, 0};	    /* nothing to do */
	cases[2] = (struct io_region){d.bdev[0], 2048, 16}; /* past the end */
	for (i = 0; i < 3; i++) {
		struct where_cb w = {0};
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
			.notify = {where_cb, &w},
			.client = client,
		};

		assert_int_equal(dm_io(&req, 1, &cases[i], NULL), 0);
		assert_true(h_wait_count(&w.calls, 1, 30000));
		assert_false(pthread_equal(w.thread, pthread_self()));
		assert_int_equal(w.bits, want_bits[i]);
	}
	dm_io_client_destroy(client);
	free(data);
}

/* ---- chains ------------------------------------------------------------- */

#define CHAIN_LEN 200

struct chain {
	struct devs *d;
	struct dm_io_client *client; /* NULL: the seed API */
	char *data;
	unsigned int next;
	atomic_uint calls;
	atomic_uint failures;
};

static int chain_submit(struct chain *c);

static void chain_cb(unsigned long error, void *context)
{
	struct chain *c = context;

	if (error)
		atomic_fetch_add(&c->failures, 1);
	if (c->next < CHAIN_LEN && chain_submit(c))
		atomic_fetch_add(&c->failures, 1);
	/* Counted last: once the main thread sees the final count, no
	 * callback touches the chain any more. */
	atomic_fetch_add(&c->calls, 1);
}

/* Write link c->next to sector 8 * link of every device. */
static int chain_submit(struct chain *c)
{
	unsigned int n = c->next++;
	struct io_region where[NDEV];
	char *buf = c->data + (size_t)n * 4096;
	unsigned int i;

	for (i = 0; i < NDEV; i++)
		where[i] =
			(struct io_region){c->d->bdev[i], (sector_t)n * 8, 8};
	if (c->client) {
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_VMA, .ptr.vma = buf},
			.notify = {chain_cb, c},
			.client = c->client,
		};

		return dm_io(&req, NDEV, where, NULL);
	}
	return dm_io_async_vm(NDEV, where, DM_IO_WRITE, buf, chain_cb, c);
}

static void run_chain(struct h_env *env, bool seed)
{
	size_t len = (size_t)CHAIN_LEN * 4096;
	struct chain c = {.data = h_alloc_aligned(len)};
	struct devs d;
	unsigned int i;

	devs_setup(env, &d, 1 * MiB);
	c.d = &d;
	atomic_init(&c.calls, 0);
	atomic_init(&c.failures, 0);
	if (!seed) {
		c.client = dm_io_client_create();
		assert_non_null(c.client);
	}
	h_pattern(c.data, len, seed ? 600 : 601, 0);
	assert_int_equal(chain_submit(&c), 0);
	if (!h_wait_count(&c.calls, CHAIN_LEN, 60000))
		fail_msg("chain stopped after %u of %u links",
			 atomic_load(&c.calls), CHAIN_LEN);
	dm_io_client_destroy(c.client);
	h_sleep_ms(20);
	assert_int_equal(atomic_load(&c.calls), CHAIN_LEN);
	assert_int_equal(atomic_load(&c.failures), 0);
	for (i = 0; i < NDEV; i++) {
		h_expect_pattern(d.dev[i], 0, len, seed ? 600 : 601, 0);
		h_expect_initial(d.dev[i], len, d.dev[i]->size - len);
	}
	free(c.data);
}

static void chain_of_200_async_writes_from_callbacks_seed(void **state)
{
	run_chain(h_env(state), true);
}

static void chain_of_200_async_writes_from_callbacks_client(void **state)
{
	run_chain(h_env(state), false);
}

/* ---- sync from a callback ----------------------------------------------- */

struct deadlk {
	struct io_region where; /* a region the sync calls aim at */
	struct dm_io_client *client;
	char *buf;
	int seed_write, seed_read, seed_pl, req_write, req_read;
	atomic_uint done;
};

static void deadlk_seed_cb(unsigned long error, void *context)
{
	struct deadlk *k = context;
	struct page_list *pl = dm_page_list_alloc(2);

	(void)error;
	k->seed_write = dm_io_sync_vm(1, &k->where, DM_IO_WRITE, k->buf, NULL);
	k->seed_read = dm_io_sync_vm(1, &k->where, DM_IO_READ, k->buf, NULL);
	k->seed_pl = pl ? dm_io_sync(1, &k->where, DM_IO_WRITE, pl, 0, NULL)
			: -ENOMEM;
	dm_page_list_free(pl);
	atomic_fetch_add(&k->done, 1);
}

static void deadlk_req_cb(unsigned long error, void *context)
{
	struct deadlk *k = context;
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = k->buf},
		.client = k->client,
	};

	(void)error;
	k->req_write = dm_io(&req, 1, &k->where, NULL);
	req.bi_opf = DM_IO_OP_READ;
	k->req_read = dm_io(&req, 1, &k->where, NULL);
	atomic_fetch_add(&k->done, 1);
}

static void sync_call_from_callback_is_edeadlk(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *target = h_dev_new(env, 256 * KiB, 40);
	char *data = h_alloc_aligned(8 * KiB);
	struct deadlk k = {.buf = h_alloc_aligned(8 * KiB)};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.notify = {deadlk_req_cb, &k},
	};
	struct io_region where[NDEV];
	struct devs d;
	unsigned int i;

	devs_setup(env, &d, 256 * KiB);
	k.where = (struct io_region){h_open(env, target, 0), 16, 16};
	k.client = dm_io_client_create();
	assert_non_null(k.client);
	req.client = k.client;
	atomic_init(&k.done, 0);
	memset(k.buf, 0x5a, 8 * KiB);
	h_pattern(data, 8 * KiB, 41, 0);
	for (i = 0; i < NDEV; i++)
		where[i] = (struct io_region){d.bdev[i], 32, 16};

	assert_int_equal(dm_io_async_vm(NDEV, where, DM_IO_WRITE, data,
					deadlk_seed_cb, &k),
			 0);
	assert_true(h_wait_count(&k.done, 1, 30000));
	assert_int_equal(dm_io(&req, NDEV, where, NULL), 0);
	assert_true(h_wait_count(&k.done, 2, 30000));
	dm_io_client_destroy(k.client);

	assert_int_equal(k.seed_write, -EDEADLK);
	assert_int_equal(k.seed_read, -EDEADLK);
	assert_int_equal(k.seed_pl, -EDEADLK);
	assert_int_equal(k.req_write, -EDEADLK);
	assert_int_equal(k.req_read, -EDEADLK);
	/* The refused calls did nothing; the async writes did their job. */
	h_expect_untouched(target);
	assert_int_equal(h_byte_mismatch(k.buf, 8 * KiB, 0x5a), -1);
	for (i = 0; i < NDEV; i++)
		h_expect_pattern(d.dev[i], 32 * 512, 8 * KiB, 41, 0);
	free(data);
	free(k.buf);
}

/* ---- many threads ------------------------------------------------------- */

#define THREADS	   8
#define PER_THREAD 2000

static atomic_uint thr_total, thr_failures, thr_refused;
static atomic_int thr_first_refusal;

struct submitter {
	struct devs *d;
	struct dm_io_client *client; /* NULL: the seed API */
	unsigned int t;
	char *data;	    /* PER_THREAD sectors of pattern 700 + t */
	atomic_uchar *seen; /* callbacks per write */
};

static void thread_cb(unsigned long error, void *context)
{
	atomic_uchar *seen = context;

	if (error)
		atomic_fetch_add(&thr_failures, 1);
	atomic_fetch_add(seen, 1);
	atomic_fetch_add(&thr_total, 1);
}

/* Sector t * PER_THREAD + i of every device gets sector i of the
 * thread's pattern, one async write each. */
static void *submit_thread(void *arg)
{
	struct submitter *s = arg;
	unsigned int i, k;

	for (i = 0; i < PER_THREAD; i++) {
		struct io_region where[NDEV];
		char *buf = s->data + (size_t)i * 512;
		int ret;

		for (k = 0; k < NDEV; k++)
			where[k] = (struct io_region){
				s->d->bdev[k], (sector_t)s->t * PER_THREAD + i,
				1};
		if (s->client) {
			struct dm_io_request req = {
				.bi_opf = DM_IO_OP_WRITE,
				.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
				.notify = {thread_cb, &s->seen[i]},
				.client = s->client,
			};

			ret = dm_io(&req, NDEV, where, NULL);
		} else {
			ret = dm_io_async_vm(NDEV, where, DM_IO_WRITE, buf,
					     thread_cb, &s->seen[i]);
		}
		if (ret) {
			int none = 0;

			atomic_compare_exchange_strong(&thr_first_refusal,
						       &none, ret);
			atomic_fetch_add(&thr_refused, 1);
		}
	}
	return NULL;
}

static void eight_threads_2000_async_mirrored_writes(void **state)
{
	struct h_env *env = h_env(state);
	const unsigned int total = THREADS * PER_THREAD;
	const size_t len = (size_t)PER_THREAD * 512;
	struct dm_io_client *client = dm_io_client_create();
	atomic_uchar *seen = calloc(total, sizeof(*seen));
	struct submitter s[THREADS];
	pthread_t tid[THREADS];
	struct devs d;
	unsigned int t, i;

	assert_non_null(client);
	assert_non_null(seen);
	devs_setup(env, &d, 8 * MiB);
	atomic_store(&thr_total, 0);
	atomic_store(&thr_failures, 0);
	atomic_store(&thr_refused, 0);
	atomic_store(&thr_first_refusal, 0);
	for (t = 0; t < THREADS; t++) {
		/* half on the seed API, half on one shared client */
		s[t] = (struct submitter){
			.d = &d,
			.client = t % 2 ? client : NULL,
			.t = t,
			.data = h_alloc_aligned(len),
			.seen = seen + (size_t)t * PER_THREAD,
		};
		h_pattern(s[t].data, len, 700 + t, 0);
	}
	for (t = 0; t < THREADS; t++)
		assert_int_equal(
			pthread_create(&tid[t], NULL, submit_thread, &s[t]), 0);
	for (t = 0; t < THREADS; t++)
		pthread_join(tid[t], NULL);
	if (atomic_load(&thr_refused))
		fail_msg("%u of %u submissions refused, the first with %d (%s)",
			 atomic_load(&thr_refused), total,
			 atomic_load(&thr_first_refusal),
			 strerror(-atomic_load(&thr_first_refusal)));
	if (!h_wait_count(&thr_total, total, 90000))
		fail_msg("%u of %u callbacks after 90 s",
			 atomic_load(&thr_total), total);
	dm_io_client_destroy(client);
	h_sleep_ms(20);
	assert_int_equal(atomic_load(&thr_total), total);
	assert_int_equal(atomic_load(&thr_failures), 0);
	for (i = 0; i < total; i++)
		if (atomic_load(&seen[i]) != 1)
			fail_msg("write %u of thread %u: %u callbacks",
				 i % PER_THREAD, i / PER_THREAD,
				 atomic_load(&seen[i]));
	for (i = 0; i < NDEV; i++) {
		for (t = 0; t < THREADS; t++)
			h_expect_pattern(d.dev[i], (uint64_t)t * len, len,
					 700 + t, 0);
		h_expect_initial(d.dev[i], THREADS * len,
				 d.dev[i]->size - THREADS * len);
	}
	for (t = 0; t < THREADS; t++)
		free(s[t].data);
	free(seen);
}

/* ---- submitters that go away -------------------------------------------- */

#define EPHEMERAL_THREADS 64
#define EPHEMERAL_WRITES  200
#define EPHEMERAL_ROUNDS  3

struct ephemeral {
	struct devs *d;
	struct dm_io_client *client; /* NULL: the seed API */
	unsigned int t;
	char *data;
	struct ephemeral_req *reqs; /* EPHEMERAL_WRITES of them */
	atomic_uint *calls, *failures, *refused;
	atomic_int *first_errno; /* from region_errors (client half) */
};

struct ephemeral_req {
	struct ephemeral *e;
	int errs[NDEV];
};

static void ephemeral_cb(unsigned long error, void *context)
{
	struct ephemeral_req *q = context;
	struct ephemeral *e = q->e;
	unsigned int k;

	if (error) {
		for (k = 0; k < NDEV; k++) {
			int none = 0;

			if (q->errs[k])
				atomic_compare_exchange_strong(
					e->first_errno, &none, q->errs[k]);
		}
		atomic_fetch_add(e->failures, 1);
	}
	atomic_fetch_add(e->calls, 1);
}

/* Submit, then exit at once: the I/O outlives the thread. */
static void *ephemeral_thread(void *arg)
{
	struct ephemeral *e = arg;
	unsigned int i, k;

	for (i = 0; i < EPHEMERAL_WRITES; i++) {
		sector_t s = (sector_t)e->t * EPHEMERAL_WRITES + i;
		struct ephemeral_req *q = &e->reqs[i];
		struct io_region where[NDEV];
		char *buf = e->data + (size_t)s * 512;
		int ret;

		q->e = e;
		for (k = 0; k < NDEV; k++) {
			where[k] = (struct io_region){e->d->bdev[k], s, 1};
			q->errs[k] = 0;
		}
		if (e->client) {
			struct dm_io_request req = {
				.bi_opf = DM_IO_OP_WRITE,
				.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
				.notify = {ephemeral_cb, q},
				.client = e->client,
				.region_errors = q->errs,
			};

			ret = dm_io(&req, NDEV, where, NULL);
		} else {
			ret = dm_io_async_vm(NDEV, where, DM_IO_WRITE, buf,
					     ephemeral_cb, q);
		}
		if (ret)
			atomic_fetch_add(e->refused, 1);
	}
	return NULL;
}

static void async_io_outlives_the_thread_that_submitted_it(void **state)
{
	struct h_env *env = h_env(state);
	const unsigned int per_round = EPHEMERAL_THREADS * EPHEMERAL_WRITES;
	const size_t len = (size_t)per_round * 512;
	struct dm_io_client *client = dm_io_client_create();
	struct ephemeral e[EPHEMERAL_THREADS];
	pthread_t tid[EPHEMERAL_THREADS];
	atomic_uint calls, failures, refused;
	atomic_int first_errno;
	char *data = h_alloc_aligned(len);
	struct ephemeral_req *reqs = calloc(per_round, sizeof(*reqs));
	unsigned int round, t, i;
	struct devs d;

	assert_non_null(client);
	assert_non_null(reqs);
	devs_setup(env, &d, 8 * MiB);
	for (round = 0; round < EPHEMERAL_ROUNDS; round++) {
		atomic_init(&calls, 0);
		atomic_init(&failures, 0);
		atomic_init(&refused, 0);
		atomic_init(&first_errno, 0);
		h_pattern(data, len, 1100 + round, 0);
		for (t = 0; t < EPHEMERAL_THREADS; t++) {
			e[t] = (struct ephemeral){
				.d = &d,
				.client = t % 2 ? client : NULL,
				.t = t,
				.data = data,
				.reqs = reqs + (size_t)t * EPHEMERAL_WRITES,
				.calls = &calls,
				.failures = &failures,
				.refused = &refused,
				.first_errno = &first_errno,
			};
			assert_int_equal(pthread_create(&tid[t], NULL,
							ephemeral_thread,
							&e[t]),
					 0);
		}
		for (t = 0; t < EPHEMERAL_THREADS; t++)
			pthread_join(tid[t], NULL);
		assert_int_equal(atomic_load(&refused), 0);
		if (!h_wait_count(&calls, per_round, 60000))
			fail_msg("round %u: %u of %u callbacks after 60 s",
				 round, atomic_load(&calls), per_round);
		if (atomic_load(&failures))
			fail_msg("round %u: %u of %u writes failed after their "
				 "submitting threads exited (a region error: "
				 "%d, %s)",
				 round, atomic_load(&failures), per_round,
				 atomic_load(&first_errno),
				 strerror(-atomic_load(&first_errno)));
		for (i = 0; i < NDEV; i++)
			h_expect_pattern(d.dev[i], 0, len, 1100 + round, 0);
	}
	dm_io_client_destroy(client);
	free(reqs);
	free(data);
}

/* ---- more than the ring holds, from a callback -------------------------- */

#define FLOOD_REQS 40 /* x 64 regions: 2560 chunks, more than the ring */

struct flood {
	struct devs *d;
	struct dm_io_client *client; /* NULL: the seed API */
	char *data;		     /* FLOOD_REQS pages, pattern 800 + r */
	struct io_region where[FLOOD_REQS][DM_IO_MAX_REGIONS];
	int ret[FLOOD_REQS];
	atomic_uint calls, failures;
};

static void flood_cb(unsigned long error, void *context)
{
	struct flood *f = context;

	if (error)
		atomic_fetch_add(&f->failures, 1);
	atomic_fetch_add(&f->calls, 1);
}

static void flood_trigger_cb(unsigned long error, void *context)
{
	struct flood *f = context;
	unsigned int r;

	if (error)
		atomic_fetch_add(&f->failures, 1);
	for (r = 0; r < FLOOD_REQS; r++) {
		char *buf = f->data + (size_t)r * DM_PAGE_SIZE;
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
			.notify = {flood_cb, f},
			.client = f->client,
		};

		f->ret[r] = f->client ? dm_io(&req, DM_IO_MAX_REGIONS,
					      f->where[r], NULL)
				      : dm_io_async_vm(DM_IO_MAX_REGIONS,
						       f->where[r], DM_IO_WRITE,
						       buf, flood_cb, f);
	}
	/* The trigger counts too, after its ret[] stores: the main thread
	 * reads them only once it has seen every count. */
	atomic_fetch_add(&f->calls, 1);
}

static void run_flood(struct h_env *env, bool seed)
{
	struct flood *f = calloc(1, sizeof(*f));
	struct devs d;
	struct io_region trigger;
	unsigned int r, j;

	assert_non_null(f);
	devs_setup(env, &d, 4 * MiB);
	f->d = &d;
	f->data = h_alloc_aligned((size_t)FLOOD_REQS * DM_PAGE_SIZE);
	atomic_init(&f->calls, 0);
	atomic_init(&f->failures, 0);
	if (!seed) {
		f->client = dm_io_client_create();
		assert_non_null(f->client);
	}
	for (r = 0; r < FLOOD_REQS; r++) {
		h_pattern(f->data + (size_t)r * DM_PAGE_SIZE, DM_PAGE_SIZE,
			  800 + r, 0);
		for (j = 0; j < DM_IO_MAX_REGIONS; j++) {
			unsigned int n = r * DM_IO_MAX_REGIONS + j;

			f->where[r][j] = (struct io_region){
				d.bdev[n % NDEV], (sector_t)(n / NDEV) * 8, 8};
		}
	}
	trigger = (struct io_region){d.bdev[0], 8000, 8};
	if (seed) {
		assert_int_equal(dm_io_async_vm(1, &trigger, DM_IO_WRITE,
						f->data, flood_trigger_cb, f),
				 0);
	} else {
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = f->data},
			.notify = {flood_trigger_cb, f},
			.client = f->client,
		};

		assert_int_equal(dm_io(&req, 1, &trigger, NULL), 0);
	}
	if (!h_wait_count(&f->calls, FLOOD_REQS + 1, 60000))
		fail_msg("%u of %u callbacks after 60 s",
			 atomic_load(&f->calls), FLOOD_REQS + 1);
	dm_io_client_destroy(f->client);
	for (r = 0; r < FLOOD_REQS; r++)
		assert_int_equal(f->ret[r], 0);
	assert_int_equal(atomic_load(&f->failures), 0);
	assert_int_equal(atomic_load(&f->calls), FLOOD_REQS + 1);
	for (r = 0; r < FLOOD_REQS; r++)
		for (j = 0; j < DM_IO_MAX_REGIONS; j++)
			h_expect_pattern(
				d.dev[(r * DM_IO_MAX_REGIONS + j) % NDEV],
				f->where[r][j].sector * 512, DM_PAGE_SIZE,
				800 + r, 0);
	free(f->data);
	free(f);
}

static void callback_can_submit_more_than_the_ring_holds_seed(void **state)
{
	run_flood(h_env(state), true);
}

static void callback_can_submit_more_than_the_ring_holds_client(void **state)
{
	run_flood(h_env(state), false);
}

/* ---- destroy ------------------------------------------------------------ */

#define SLOW_REQS 32

static atomic_uint slow_calls, slow_failures;

static void slow_cb(unsigned long error, void *context)
{
	(void)context;
	h_sleep_ms(2);
	if (error)
		atomic_fetch_add(&slow_failures, 1);
	atomic_fetch_add(&slow_calls, 1);
}

static void client_destroy_waits_for_in_flight_io(void **state)
{
	struct h_env *env = h_env(state);
	const size_t len = 256 * KiB;
	struct dm_io_client *client = dm_io_client_create();
	char *data = h_alloc_aligned(SLOW_REQS * len);
	struct devs d;
	unsigned int r, i;

	assert_non_null(client);
	devs_setup(env, &d, 8 * MiB);
	atomic_store(&slow_calls, 0);
	atomic_store(&slow_failures, 0);
	for (r = 0; r < SLOW_REQS; r++) {
		struct io_region where[NDEV];
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM,
				.ptr.addr = data + (size_t)r * len},
			.notify = {slow_cb, NULL},
			.client = client,
		};

		h_pattern(data + (size_t)r * len, len, 900 + r, 0);
		for (i = 0; i < NDEV; i++)
			where[i] = (struct io_region){
				d.bdev[i], (sector_t)r * (len >> 9), len >> 9};
		assert_int_equal(dm_io(&req, NDEV, where, NULL), 0);
	}
	dm_io_client_destroy(client);
	/* Not a moment later: every callback has returned. */
	assert_int_equal(atomic_load(&slow_calls), SLOW_REQS);
	assert_int_equal(atomic_load(&slow_failures), 0);
	for (i = 0; i < NDEV; i++)
		for (r = 0; r < SLOW_REQS; r++)
			h_expect_pattern(d.dev[i], r * len, len, 900 + r, 0);
	free(data);
}

#define SELF_REQS 10

struct selfd {
	struct dm_io_client *client;
	atomic_bool all_submitted;
	atomic_uint calls, destroy_returned, failures;
};

struct selfd_req {
	struct selfd *s;
	unsigned int idx;
};

static void selfd_cb(unsigned long error, void *context)
{
	struct selfd_req *q = context;
	struct selfd *s = q->s;

	if (error)
		atomic_fetch_add(&s->failures, 1);
	if (q->idx == 0) {
		unsigned int ms = 0;

		/* Every request is in before the client goes. */
		while (!atomic_load(&s->all_submitted) && ms++ < 10000)
			h_sleep_ms(1);
		dm_io_client_destroy(s->client);
		atomic_fetch_add(&s->destroy_returned, 1);
	}
	atomic_fetch_add(&s->calls, 1);
}

static void client_destroy_from_callback_does_not_hang(void **state)
{
	struct h_env *env = h_env(state);
	const size_t len = 64 * KiB;
	char *data = h_alloc_aligned(SELF_REQS * len);
	struct selfd s = {.client = dm_io_client_create()};
	struct selfd_req q[SELF_REQS];
	struct devs d;
	unsigned int r, i;

	assert_non_null(s.client);
	devs_setup(env, &d, 1 * MiB);
	atomic_init(&s.all_submitted, false);
	atomic_init(&s.calls, 0);
	atomic_init(&s.destroy_returned, 0);
	atomic_init(&s.failures, 0);
	for (r = 0; r < SELF_REQS; r++) {
		struct io_region where[NDEV];
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM,
				.ptr.addr = data + (size_t)r * len},
			.notify = {selfd_cb, &q[r]},
			.client = s.client,
		};

		q[r] = (struct selfd_req){&s, r};
		h_pattern(data + (size_t)r * len, len, 950 + r, 0);
		for (i = 0; i < NDEV; i++)
			where[i] = (struct io_region){
				d.bdev[i], (sector_t)r * (len >> 9), len >> 9};
		assert_int_equal(dm_io(&req, NDEV, where, NULL), 0);
	}
	atomic_store(&s.all_submitted, true);
	if (!h_wait_count(&s.destroy_returned, 1, 30000))
		fail_msg("dm_io_client_destroy() from a callback hangs");
	/* The rest still completes, exactly once each. */
	if (!h_wait_count(&s.calls, SELF_REQS, 30000))
		fail_msg("%u of %u callbacks after the destroy",
			 atomic_load(&s.calls), SELF_REQS);
	h_sleep_ms(50); /* the client frees itself meanwhile */
	assert_int_equal(atomic_load(&s.calls), SELF_REQS);
	assert_int_equal(atomic_load(&s.failures), 0);
	for (i = 0; i < NDEV; i++)
		for (r = 0; r < SELF_REQS; r++)
			h_expect_pattern(d.dev[i], r * len, len, 950 + r, 0);
	free(data);
}

/* ---- a request behind a slow one ---------------------------------------- */

#define SLOW_MS 3000

/*
 * A request submitted while another waits on a slow device starts at once
 * and completes first.  On io_uring the completion thread sleeps in the
 * kernel waiting for the slow read, and a submitter that leaves its entry
 * to it must wake it (design.md, the kick); unwoken, the entry would
 * wait in the ring for the slow read's completion.
 */
static void request_does_not_wait_behind_a_slow_one(void **state)
{
	struct h_env *env = h_env(state);
	const char *slow_path = h_delayfs_file(env, 1, SLOW_MS);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 42);
	struct block_device *slow = h_open_spec(env, slow_path, 0);
	struct block_device *fast = h_open(env, dev, 0);
	struct dm_io_client *client = dm_io_client_create();
	char *a = h_alloc_aligned(4096), *b = h_alloc_aligned(4096);
	char *want = h_alloc(4096);
	struct io_region rslow = {slow, 0, 8}, rfast = {fast, 8, 8};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = a},
		.client = client,
	};
	struct tl_rec rs, rf;
	uint64_t t0;
	bool fast_done, slow_done;

	assert_non_null(client);
	tl_rec_init(&rs);
	tl_rec_init(&rf);
	t0 = h_now_ms();
	req.notify = (struct dm_io_notify){tl_rec_cb, &rs};
	assert_int_equal(dm_io(&req, 1, &rslow, NULL), 0);
	h_sleep_ms(200); /* the completion thread goes back to sleep */
	req.mem.ptr.addr = b;
	req.notify = (struct dm_io_notify){tl_rec_cb, &rf};
	assert_int_equal(dm_io(&req, 1, &rfast, NULL), 0);
	fast_done = tl_rec_wait(&rf, 1, SLOW_MS);
	/* Both drained before any assert: teardown must find nothing in
	 * flight on the delayfs file. */
	slow_done = tl_rec_wait(&rs, 1, 20000);
	dm_io_client_destroy(client);
	assert_true(slow_done);
	assert_true(fast_done);
	if (atomic_load(&rf.done_ms) >= atomic_load(&rs.done_ms))
		fail_msg("the fast read completed %llu ms after the start, "
			 "the slow one %llu ms: it waited behind it",
			 (unsigned long long)(atomic_load(&rf.done_ms) - t0),
			 (unsigned long long)(atomic_load(&rs.done_ms) - t0));
	/* The delay was real, or this proved nothing. */
	assert_true(atomic_load(&rs.done_ms) - t0 >= SLOW_MS - 100);
	assert_int_equal(atomic_load(&rs.bits), 0);
	assert_int_equal(atomic_load(&rf.bits), 0);
	h_pattern(want, 4096, 42, 4096);
	assert_memory_equal(b, want, 4096);
	memset(want, 0, 4096);
	assert_memory_equal(a, want, 4096);
	free(a);
	free(b);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		H_TEST(async_callback_runs_exactly_once_after_all_regions),
		H_TEST(refused_async_request_never_calls_back),
		H_TEST(callback_never_runs_on_the_callers_thread),
		H_TEST(chain_of_200_async_writes_from_callbacks_seed),
		H_TEST(chain_of_200_async_writes_from_callbacks_client),
		H_TEST(sync_call_from_callback_is_edeadlk),
		H_TEST(eight_threads_2000_async_mirrored_writes),
		H_TEST(async_io_outlives_the_thread_that_submitted_it),
		H_TEST(callback_can_submit_more_than_the_ring_holds_seed),
		H_TEST(callback_can_submit_more_than_the_ring_holds_client),
		H_TEST(client_destroy_waits_for_in_flight_io),
		H_TEST(client_destroy_from_callback_does_not_hang),
		H_TEST(request_does_not_wait_behind_a_slow_one),
	};

	h_group_seed_pages = 1024;
	return H_RUN("async", tests, tests);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The seed API's reservation rules (design.md 1.1 "Reservation"):
 * dm_io_get()/dm_io_put() add up across callers and threads, the six seed
 * functions refuse to work without a reservation, a put larger than what
 * is held changes nothing, and the last put waits for in-flight I/O.
 *
 * This program holds no group reservation: every test starts with none.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define DEV_BYTES (1 * MiB)

static atomic_uint cb_count;

static void count_cb(unsigned long error, void *context)
{
	(void)error;
	(void)context;
	atomic_fetch_add(&cb_count, 1);
}

/*
 * Try the six seed functions with valid arguments: a write of 4 KiB at
 * sector 8 to every region, a read of region 0.  Returns how many did not
 * return @expect.  The read goes to @rbuf.
 */
static int six_forms(struct io_region *where, unsigned int n, int expect,
		     char *rbuf)
{
	struct page_list *pl = h_pl_alloc(1);
	struct bio_vec bv = {pl->page, 4096, 0};
	char *wbuf = h_alloc_aligned(4 * KiB);
	int bad = 0, ret;

	h_pattern(wbuf, 4 * KiB, 42, 0);
	h_pl_fill(pl, 0, wbuf, 4 * KiB);
#define TRY(call)                                                              \
	do {                                                                   \
		ret = (call);                                                  \
		if (ret != expect) {                                           \
			print_message("%s returned %d, expected %d\n", #call,  \
				      ret, expect);                            \
			bad++;                                                 \
		}                                                              \
	} while (0)
	TRY(dm_io_sync(n, where, DM_IO_WRITE, pl, 0, NULL));
	TRY(dm_io_sync_bvec(n, where, DM_IO_WRITE, &bv, NULL));
	TRY(dm_io_sync_vm(n, where, DM_IO_WRITE, wbuf, NULL));
	TRY(dm_io_sync_vm(1, where, DM_IO_READ, rbuf, NULL));
	if (expect) {
		/* Refused async calls: nothing may be in flight afterwards. */
		TRY(dm_io_async(n, where, DM_IO_WRITE, pl, 0, count_cb, NULL));
		TRY(dm_io_async_bvec(n, where, DM_IO_WRITE, &bv, count_cb,
				     NULL));
		TRY(dm_io_async_vm(n, where, DM_IO_WRITE, wbuf, count_cb,
				   NULL));
		TRY(dm_io_async_vm(1, where, DM_IO_READ, rbuf, count_cb, NULL));
	}
#undef TRY
	dm_page_list_free(pl);
	free(wbuf);
	return bad;
}

/* Assert that the seed functions are refused: no reservation is held. */
static void expect_no_reservation(struct h_env *env)
{
	struct h_dev *dev = h_dev_new(env, DEV_BYTES, 3);
	struct block_device *bdev = h_open(env, dev, 0);
	struct io_region where = {bdev, 8, 8};
	char *rbuf = h_alloc_aligned(4 * KiB);

	atomic_store(&cb_count, 0);
	memset(rbuf, 0xaa, 4 * KiB);
	assert_int_equal(six_forms(&where, 1, -EINVAL, rbuf), 0);
	h_sleep_ms(20);
	assert_int_equal(atomic_load(&cb_count), 0);
	assert_int_equal(h_byte_mismatch(rbuf, 4 * KiB, 0xaa), -1);
	h_expect_untouched(dev);
	free(rbuf);
}

/* Assert that synchronous seed I/O works: a reservation is held. */
static void expect_reservation(struct h_env *env)
{
	struct h_dev *dev = h_dev_new(env, DEV_BYTES, 4);
	struct block_device *bdev = h_open(env, dev, 0);
	struct io_region where = {bdev, 8, 8};
	char *rbuf = h_alloc_aligned(4 * KiB);

	assert_int_equal(six_forms(&where, 1, 0, rbuf), 0);
	assert_int_equal(h_pattern_mismatch(rbuf, 4 * KiB, 42, 0), -1);
	h_expect_pattern(dev, 8 * 512, 4 * KiB, 42, 0);
	free(rbuf);
}

static void seed_calls_without_reservation_are_einval_no_io(void **state)
{
	struct h_env *env = h_env(state);

	expect_no_reservation(env);
	/* Also after a reservation came and went. */
	h_seed_get(env, 4);
	expect_reservation(env);
	h_seed_put(env, 4);
	expect_no_reservation(env);
}

static void get_zero_is_einval(void **state)
{
	struct h_env *env = h_env(state);

	assert_int_equal(dm_io_get(0), -EINVAL);
	expect_no_reservation(env);
	h_seed_get(env, 2);
	assert_int_equal(dm_io_get(0), -EINVAL);
	h_seed_put(env, 2);
	expect_no_reservation(env);
}

static void get_absurd_is_einval_and_reserves_nothing(void **state)
{
	struct h_env *env = h_env(state);

	assert_int_equal(dm_io_get(UINT_MAX), -EINVAL);
	expect_no_reservation(env);
	/* Refused on top of a reservation, it adds nothing either: one put
	 * of what was really taken is the last. */
	h_seed_get(env, 4);
	assert_int_equal(dm_io_get(UINT_MAX), -EINVAL);
	expect_reservation(env);
	h_seed_put(env, 4);
	expect_no_reservation(env);
}

static void get_then_put_enables_then_disables_io(void **state)
{
	struct h_env *env = h_env(state);

	h_seed_get(env, 8);
	expect_reservation(env);
	h_seed_put(env, 8);
	expect_no_reservation(env);
}

static void reservations_add_up_across_callers(void **state)
{
	struct h_env *env = h_env(state);

	h_seed_get(env, 3);
	h_seed_get(env, 5);
	h_seed_put(env, 3);
	expect_reservation(env);
	h_seed_put(env, 5);
	expect_no_reservation(env);
}

static void put_larger_than_held_changes_nothing(void **state)
{
	struct h_env *env = h_env(state);

	h_seed_get(env, 2);
	dm_io_put(3);
	expect_reservation(env);
	dm_io_put(0);
	expect_reservation(env);
	h_seed_put(env, 2);
	expect_no_reservation(env);
	/* Nothing held: a put changes nothing, and a get still works. */
	dm_io_put(1);
	h_seed_get(env, 1);
	expect_reservation(env);
	h_seed_put(env, 1);
	expect_no_reservation(env);
}

/* ---- across threads ----------------------------------------------------- */

struct getter {
	unsigned int pages;
	int ret;
	bool put;
};

static void *get_or_put(void *arg)
{
	struct getter *g = arg;

	if (g->put)
		dm_io_put(g->pages);
	else
		g->ret = dm_io_get(g->pages);
	return NULL;
}

static void run_getter(struct getter *g)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, get_or_put, g), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

static void reservation_taken_by_another_thread_serves_this_one(void **state)
{
	struct h_env *env = h_env(state);
	struct getter g = {.pages = 8};

	run_getter(&g);
	assert_int_equal(g.ret, 0);
	expect_reservation(env);
	g.put = true;
	run_getter(&g);
	expect_no_reservation(env);
}

#define WORKERS	   4
#define ROUNDS	   100
#define WORK_SECTS 8

struct worker {
	struct io_region where;
	uint32_t seed;
	atomic_uint *failures;
};

/* Each worker takes its own reservation around its own I/O: another
 * worker's put must never take it away. */
static void *seed_worker(void *arg)
{
	struct worker *w = arg;
	size_t len = WORK_SECTS * 512;
	char *buf = aligned_alloc(DM_PAGE_SIZE, len);
	char *back = aligned_alloc(DM_PAGE_SIZE, len);
	unsigned int i;

	if (!buf || !back) {
		atomic_fetch_add(w->failures, 1);
		goto out;
	}
	for (i = 0; i < ROUNDS; i++) {
		h_pattern(buf, len, w->seed + i, 0);
		if (dm_io_get(2)) {
			atomic_fetch_add(w->failures, 1);
			continue;
		}
		if (dm_io_sync_vm(1, &w->where, DM_IO_WRITE, buf, NULL) ||
		    dm_io_sync_vm(1, &w->where, DM_IO_READ, back, NULL) ||
		    memcmp(buf, back, len))
			atomic_fetch_add(w->failures, 1);
		dm_io_put(2);
	}
out:
	free(buf);
	free(back);
	return NULL;
}

static void reservations_add_up_across_threads(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, DEV_BYTES, 5);
	struct block_device *bdev = h_open(env, dev, 0);
	struct worker w[WORKERS];
	pthread_t t[WORKERS];
	atomic_uint failures;
	unsigned int i;

	atomic_init(&failures, 0);
	for (i = 0; i < WORKERS; i++) {
		w[i].where =
			(struct io_region){bdev, i * WORK_SECTS, WORK_SECTS};
		w[i].seed = 1000 * (i + 1);
		w[i].failures = &failures;
		assert_int_equal(
			pthread_create(&t[i], NULL, seed_worker, &w[i]), 0);
	}
	for (i = 0; i < WORKERS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(atomic_load(&failures), 0);
	for (i = 0; i < WORKERS; i++)
		h_expect_pattern(dev, i * WORK_SECTS * 512, WORK_SECTS * 512,
				 w[i].seed + ROUNDS - 1, 0);
	expect_no_reservation(env);
}

/* ---- the last put ------------------------------------------------------- */

static void slow_cb(unsigned long error, void *context)
{
	atomic_ulong *bits = context;

	h_sleep_ms(100);
	atomic_store(bits, error);
	atomic_fetch_add(&cb_count, 1);
}

static void last_put_waits_for_in_flight_io(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev[3];
	struct io_region where[3];
	size_t len = 4 * MiB;
	char *buf = h_alloc_aligned(len);
	atomic_ulong bits;
	unsigned int i;

	for (i = 0; i < 3; i++) {
		dev[i] = h_dev_new(env, 8 * MiB, 10 + i);
		where[i] = (struct io_region){h_open(env, dev[i], 0), 2048,
					      len >> SECTOR_SHIFT};
	}
	h_pattern(buf, len, 77, 0);
	atomic_init(&bits, ~0ul);
	atomic_store(&cb_count, 0);
	h_seed_get(env, 16);
	assert_int_equal(
		dm_io_async_vm(3, where, DM_IO_WRITE, buf, slow_cb, &bits), 0);
	h_seed_put(env, 16);
	/* The put returned: the callback has run, the data is there. */
	assert_int_equal(atomic_load(&cb_count), 1);
	assert_int_equal(atomic_load(&bits), 0);
	for (i = 0; i < 3; i++)
		h_expect_pattern(dev[i], 1 * MiB, len, 77, 0);
	h_sleep_ms(20);
	assert_int_equal(atomic_load(&cb_count), 1);
	free(buf);
	expect_no_reservation(env);
}

static void io_beyond_reservation_still_works(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev[3];
	struct io_region where[3];
	size_t len = 1 * MiB;
	char *buf = h_alloc_aligned(len);
	unsigned long bits = ~0ul;
	unsigned int i;

	for (i = 0; i < 3; i++) {
		dev[i] = h_dev_new(env, 2 * MiB, 20 + i);
		where[i] = (struct io_region){h_open(env, dev[i], 0), 1024,
					      len >> SECTOR_SHIFT};
	}
	h_pattern(buf, len, 88, 0);
	atomic_store(&cb_count, 0);
	/* One page reserved, 768 pages of I/O, 16 requests in flight. */
	h_seed_get(env, 1);
	assert_int_equal(dm_io_sync_vm(3, where, DM_IO_WRITE, buf, &bits), 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < 16; i++)
		assert_int_equal(dm_io_async_vm(3, where, DM_IO_WRITE, buf,
						count_cb, NULL),
				 0);
	assert_true(h_wait_count(&cb_count, 16, 30000));
	h_seed_put(env, 1);
	for (i = 0; i < 3; i++) {
		h_expect_initial(dev[i], 0, 512 * KiB);
		h_expect_pattern(dev[i], 512 * KiB, len, 88, 0);
		h_expect_initial(dev[i], 512 * KiB + len, 512 * KiB);
	}
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		H_TEST(seed_calls_without_reservation_are_einval_no_io),
		H_TEST(get_zero_is_einval),
		H_TEST(get_absurd_is_einval_and_reserves_nothing),
		H_TEST(get_then_put_enables_then_disables_io),
		H_TEST(reservations_add_up_across_callers),
		H_TEST(put_larger_than_held_changes_nothing),
		H_TEST(reservation_taken_by_another_thread_serves_this_one),
		H_TEST(reservations_add_up_across_threads),
		H_TEST(last_put_waits_for_in_flight_io),
		H_TEST(io_beyond_reservation_still_works),
	};

	h_group_seed_pages = 0;
	return H_RUN("seed", tests, tests);
}

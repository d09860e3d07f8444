/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mempool promise (design.md 1.1 "Reservation"): after dm_io_get(n),
 * I/O within the reservation never waits on or fails for memory.  This
 * program links the static library with the allocators wrapped
 * (-Wl,--wrap=malloc,...): once armed, every call counts and fails.  The
 * I/O must still complete, correctly, and no allocator may even be called.
 *
 * While armed the test code itself allocates nothing and asserts nothing:
 * it records, disarms, then checks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../src/engine.h"
#include "harness.h"

/* ---- the wrapped allocators --------------------------------------------- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t nmemb, size_t size);
void *__real_realloc(void *ptr, size_t size);
int __real_posix_memalign(void **memptr, size_t alignment, size_t size);
void *__real_aligned_alloc(size_t alignment, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t nmemb, size_t size);
void *__wrap_realloc(void *ptr, size_t size);
int __wrap_posix_memalign(void **memptr, size_t alignment, size_t size);
void *__wrap_aligned_alloc(size_t alignment, size_t size);

static atomic_bool armed;
static atomic_ulong armed_calls;

static bool fail_now(void)
{
	if (!atomic_load_explicit(&armed, memory_order_relaxed))
		return false;
	atomic_fetch_add(&armed_calls, 1);
	errno = ENOMEM;
	return true;
}

void *__wrap_malloc(size_t size)
{
	return fail_now() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t nmemb, size_t size)
{
	return fail_now() ? NULL : __real_calloc(nmemb, size);
}

void *__wrap_realloc(void *ptr, size_t size)
{
	return fail_now() ? NULL : __real_realloc(ptr, size);
}

int __wrap_posix_memalign(void **memptr, size_t alignment, size_t size)
{
	return fail_now() ? ENOMEM
			  : __real_posix_memalign(memptr, alignment, size);
}

void *__wrap_aligned_alloc(size_t alignment, size_t size)
{
	return fail_now() ? NULL : __real_aligned_alloc(alignment, size);
}

static void arm(void)
{
	atomic_store(&armed_calls, 0);
	atomic_store(&armed, true);
}

/* Disarm; returns the allocator calls made while armed. */
static unsigned long disarm(void)
{
	atomic_store(&armed, false);
	return atomic_load(&armed_calls);
}

static int teardown(void **state)
{
	disarm();
	return h_test_teardown(state);
}

#define R_TEST(f) cmocka_unit_test_setup_teardown(f, h_test_setup, teardown)

/* ---- fixtures ----------------------------------------------------------- */

#define NDEV	  3
#define IO_BYTES  (16 * KiB)
#define IO_PAGES  (IO_BYTES / DM_PAGE_SIZE)
#define RESERVE	  256 /* pages; the biggest test keeps 4 x 12 in flight */
#define MAX_CALLS 32

struct fx {
	struct h_dev *dev[NDEV];
	struct io_region where[NDEV];
	struct page_list *pl, *rpl;
	struct bio_vec bv[IO_PAGES], rbv[IO_PAGES];
	char *wbuf, *rbuf;
	/* recorded while armed */
	int ret[MAX_CALLS];
	unsigned long bits[MAX_CALLS];
	unsigned int n;
};

static void fx_setup(struct h_env *env, struct fx *f, bool loops)
{
	struct page_list *p, *q;
	unsigned int i;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < NDEV; i++) {
		f->dev[i] = loops ? h_loop_new(env, 1 * MiB, 20 + i, 512)
				  : h_dev_new(env, 1 * MiB, 20 + i);
		f->where[i] = (struct io_region){h_open(env, f->dev[i], 0),
						 64 + 40 * i, IO_BYTES >> 9};
	}
	f->pl = h_pl_alloc(IO_PAGES + 1);
	f->rpl = h_pl_alloc(IO_PAGES + 1);
	for (i = 0, p = f->pl, q = f->rpl; i < IO_PAGES;
	     i++, p = p->next, q = q->next) {
		f->bv[i] = (struct bio_vec){p->page, DM_PAGE_SIZE, 0};
		f->rbv[i] = (struct bio_vec){q->page, DM_PAGE_SIZE, 0};
	}
	f->wbuf = h_alloc_aligned(IO_BYTES + DM_PAGE_SIZE);
	f->rbuf = h_alloc_aligned(IO_BYTES + DM_PAGE_SIZE);
}

static void fx_free(struct fx *f)
{
	dm_page_list_free(f->pl);
	dm_page_list_free(f->rpl);
	free(f->wbuf);
	free(f->rbuf);
}

static void record(struct fx *f, int ret, unsigned long bits)
{
	if (f->n < MAX_CALLS) {
		f->ret[f->n] = ret;
		f->bits[f->n] = bits;
	}
	f->n++;
}

static void expect_all_ok(struct fx *f, unsigned long calls)
{
	unsigned int i;

	assert_true(f->n <= MAX_CALLS);
	for (i = 0; i < f->n; i++) {
		if (f->ret[i] || f->bits[i])
			fail_msg("I/O %u within the reservation, with malloc "
				 "failing: returned %d, bits %#lx",
				 i, f->ret[i], f->bits[i]);
	}
	if (calls)
		fail_msg("%lu allocator calls during I/O within the "
			 "reservation",
			 calls);
}

/* Every region holds h_pattern(@seed) from @pos. */
static void expect_written(struct fx *f, uint32_t seed, uint64_t pos)
{
	unsigned int i;

	for (i = 0; i < NDEV; i++)
		h_expect_pattern(f->dev[i], f->where[i].sector * 512, IO_BYTES,
				 seed, pos);
}

/* ---- the tests ---------------------------------------------------------- */

static void wrapped_allocators_fail_when_armed(void **state)
{
	void *p = NULL;
	struct page *page;
	struct page_list *pl;
	unsigned long calls;

	(void)h_env(state);
	arm();
	page = dm_page_alloc();	    /* the library's posix_memalign */
	pl = dm_page_list_alloc(2); /* and its malloc */
	p = malloc(16);		    /* and ours */
	calls = disarm();
	assert_null(page);
	assert_null(pl);
	assert_null(p);
	assert_true(calls >= 3);
	page = dm_page_alloc();
	assert_non_null(page);
	dm_page_free(page);
}

static void sync_io_within_reservation_never_allocates(void **state)
{
	struct h_env *env = h_env(state);
	unsigned long bits, calls;
	struct fx f;
	unsigned int i;
	int ret;

	fx_setup(env, &f, false);
	h_seed_get(env, RESERVE);
	h_pattern(f.wbuf, IO_BYTES, 1, 0);
	h_pl_fill(f.pl, 0, f.wbuf, IO_BYTES);

	arm();
	/* page list: mirrored write, read back */
	ret = dm_io_sync(NDEV, f.where, DM_IO_WRITE, f.pl, 0, &bits);
	record(&f, ret, bits);
	ret = dm_io_sync(1, &f.where[1], DM_IO_READ, f.rpl, 0, &bits);
	record(&f, ret, bits);
	/* bio_vec */
	ret = dm_io_sync_bvec(NDEV, f.where, DM_IO_WRITE, f.bv, &bits);
	record(&f, ret, bits);
	ret = dm_io_sync_bvec(1, &f.where[2], DM_IO_READ, f.rbv, &bits);
	record(&f, ret, bits);
	/* contiguous */
	ret = dm_io_sync_vm(NDEV, f.where, DM_IO_WRITE, f.wbuf, &bits);
	record(&f, ret, bits);
	ret = dm_io_sync_vm(1, &f.where[0], DM_IO_READ, f.rbuf, &bits);
	record(&f, ret, bits);
	calls = disarm();

	expect_all_ok(&f, calls);
	expect_written(&f, 1, 0);
	assert_int_equal(h_pattern_mismatch(f.rbuf, IO_BYTES, 1, 0), -1);
	for (i = 0; i < IO_PAGES; i++)
		assert_int_equal(
			h_pattern_mismatch(dm_page_address(f.rbv[i].bv_page),
					   DM_PAGE_SIZE, 1, i * DM_PAGE_SIZE),
			-1);
	fx_free(&f);
}

static void async_io_within_reservation_never_allocates(void **state)
{
	struct h_env *env = h_env(state);
	struct tl_rec wr, rd;
	unsigned long calls;
	struct fx f;
	bool all;

	fx_setup(env, &f, false);
	h_seed_get(env, RESERVE);
	h_pattern(f.wbuf, IO_BYTES, 2, 0);
	h_pl_fill(f.pl, 0, f.wbuf, IO_BYTES);
	tl_rec_init(&wr);
	tl_rec_init(&rd);

	arm();
	/* four mirrored writes in flight at once: 48 pages */
	record(&f,
	       dm_io_async(NDEV, f.where, DM_IO_WRITE, f.pl, 0, tl_rec_cb, &wr),
	       0);
	record(&f,
	       dm_io_async_bvec(NDEV, f.where, DM_IO_WRITE, f.bv, tl_rec_cb,
				&wr),
	       0);
	record(&f,
	       dm_io_async_vm(NDEV, f.where, DM_IO_WRITE, f.wbuf, tl_rec_cb,
			      &wr),
	       0);
	record(&f,
	       dm_io_async_vm(NDEV, f.where, DM_IO_WRITE, f.wbuf, tl_rec_cb,
			      &wr),
	       0);
	all = tl_rec_wait(&wr, 4, 30000);
	record(&f,
	       dm_io_async(1, &f.where[0], DM_IO_READ, f.rpl, 0, tl_rec_cb,
			   &rd),
	       0);
	record(&f,
	       dm_io_async_bvec(1, &f.where[1], DM_IO_READ, f.rbv, tl_rec_cb,
				&rd),
	       0);
	record(&f,
	       dm_io_async_vm(1, &f.where[2], DM_IO_READ, f.rbuf, tl_rec_cb,
			      &rd),
	       0);
	all = tl_rec_wait(&rd, 3, 30000) && all;
	calls = disarm();

	assert_true(all);
	expect_all_ok(&f, calls);
	assert_int_equal(atomic_load(&wr.bits_or), 0);
	assert_int_equal(atomic_load(&rd.bits_or), 0);
	expect_written(&f, 2, 0);
	assert_int_equal(h_pattern_mismatch(f.rbuf, IO_BYTES, 2, 0), -1);
	fx_free(&f);
}

static void bounced_io_within_reservation_never_allocates(void **state)
{
	struct h_env *env = h_env(state);
	char *wbuf, *rbuf, *got = NULL;
	struct tl_rec cb;
	unsigned long bits, calls;
	struct fx f;
	bool all;
	int ret;

	fx_setup(env, &f, true); /* O_DIRECT loop devices */
	h_seed_get(env, RESERVE);
	wbuf = f.wbuf + 1;
	rbuf = f.rbuf + 3;
	h_pattern(wbuf, IO_BYTES, 3, 0);
	tl_rec_init(&cb);
	got = h_alloc(IO_BYTES);

	arm();
	/* unaligned contiguous memory: bounced through reserved pages */
	ret = dm_io_sync_vm(NDEV, f.where, DM_IO_WRITE, wbuf, &bits);
	record(&f, ret, bits);
	ret = dm_io_sync_vm(1, &f.where[1], DM_IO_READ, rbuf, &bits);
	record(&f, ret, bits);
	record(&f,
	       dm_io_async_vm(NDEV, f.where, DM_IO_WRITE, wbuf, tl_rec_cb, &cb),
	       0);
	all = tl_rec_wait(&cb, 1, 30000);
	/* a page list starting 100 bytes in */
	ret = dm_io_sync(1, &f.where[2], DM_IO_READ, f.rpl, 100, &bits);
	record(&f, ret, bits);
	calls = disarm();

	assert_true(all);
	expect_all_ok(&f, calls);
	assert_int_equal(atomic_load(&cb.bits_or), 0);
	expect_written(&f, 3, 0);
	assert_int_equal(h_pattern_mismatch(rbuf, IO_BYTES, 3, 0), -1);
	h_pl_copy_out(f.rpl, 100, got, IO_BYTES);
	assert_int_equal(h_pattern_mismatch(got, IO_BYTES, 3, 0), -1);

	/* and a page-list write from offset 100, armed again */
	h_pattern(got, IO_BYTES, 4, 0);
	h_pl_fill(f.pl, 100, got, IO_BYTES);
	f.n = 0;
	arm();
	ret = dm_io_sync(NDEV, f.where, DM_IO_WRITE, f.pl, 100, &bits);
	record(&f, ret, bits);
	calls = disarm();
	expect_all_ok(&f, calls);
	expect_written(&f, 4, 0);
	free(got);
	fx_free(&f);
}

static void client_reservation_small_io_never_allocates(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_io_client *client = dm_io_client_create();
	int errs[NDEV] = {-1, -1, -1};
	struct dm_io_request req = {.client = client, .region_errors = errs};
	struct tl_rec cb;
	unsigned long bits, calls;
	struct fx f;
	bool all;
	int ret;

	assert_non_null(client);
	fx_setup(env, &f, false);
	h_pattern(f.wbuf, IO_BYTES, 5, 0);
	tl_rec_init(&cb);

	arm();
	req.bi_opf = DM_IO_OP_WRITE;
	req.mem = (struct dm_io_memory){.type = DM_IO_KMEM, .ptr.addr = f.wbuf};
	ret = dm_io(&req, NDEV, f.where, &bits);
	record(&f, ret, bits);
	req.notify = (struct dm_io_notify){tl_rec_cb, &cb};
	record(&f, dm_io(&req, NDEV, f.where, NULL), 0);
	all = tl_rec_wait(&cb, 1, 30000);
	req.bi_opf = DM_IO_OP_READ;
	req.mem.ptr.addr = f.rbuf;
	req.notify = (struct dm_io_notify){NULL, NULL};
	ret = dm_io(&req, 1, &f.where[1], &bits);
	record(&f, ret, bits);
	calls = disarm();

	dm_io_client_destroy(client);
	assert_true(all);
	expect_all_ok(&f, calls);
	assert_int_equal(errs[0], 0);
	expect_written(&f, 5, 0);
	assert_int_equal(h_pattern_mismatch(f.rbuf, IO_BYTES, 5, 0), -1);
	fx_free(&f);
}

static atomic_uint stray;

static void stray_cb(unsigned long error, void *context)
{
	(void)error;
	(void)context;
	atomic_fetch_add(&stray, 1);
}

static void beyond_reservation_failing_malloc_is_enomem_no_io(void **state)
{
	struct h_env *env = h_env(state);
	const size_t len = 4 * MiB;
	struct io_region where[DM_IO_MAX_REGIONS];
	struct h_dev *dev[NDEV];
	char *data = h_alloc_aligned(len);
	unsigned long bits = 0, calls;
	int sync_ret, async_ret;
	unsigned int i;

	for (i = 0; i < NDEV; i++)
		dev[i] = h_dev_new(env, len, 30 + i);
	for (i = 0; i < DM_IO_MAX_REGIONS; i++)
		where[i] = (struct io_region){i < NDEV ? h_open(env, dev[i], 0)
						       : where[i % NDEV].bdev,
					      0, len >> 9};
	h_pattern(data, len, 6, 0);
	atomic_store(&stray, 0);
	/* One page reserved; 64 regions of 4 MiB need far more bookkeeping
	 * than that, and the heap says no. */
	h_seed_get(env, 1);
	arm();
	sync_ret = dm_io_sync_vm(DM_IO_MAX_REGIONS, where, DM_IO_WRITE, data,
				 &bits);
	async_ret = dm_io_async_vm(DM_IO_MAX_REGIONS, where, DM_IO_WRITE, data,
				   stray_cb, NULL);
	calls = disarm();

	assert_true(calls > 0);
	assert_int_equal(sync_ret, -ENOMEM);
	assert_int_equal(async_ret, -ENOMEM);
	h_seed_put(env, 1); /* drains the default client */
	h_sleep_ms(20);
	assert_int_equal(atomic_load(&stray), 0);
	for (i = 0; i < NDEV; i++)
		h_expect_untouched(dev[i]);
	free(data);
}

/* Bounces beyond the reservation with the heap failing: nothing is in
 * flight that could give memory back, so -ENOMEM at once (and no
 * callback), not a retry loop. */
static void beyond_reservation_bounce_failing_heap_is_enomem(void **state)
{
	struct h_env *env = h_env(state);
	const size_t small = 64 * KiB, big = 4 * MiB;
	struct dm_io_client *client = dm_io_client_create();
	struct dm_io_request req = {.bi_opf = DM_IO_OP_WRITE, .client = client};
	struct h_dev *dev = h_loop_new(env, 8 * MiB, 40, 512);
	struct io_region where = {h_open(env, dev, 0), 0, small >> 9};
	char *buf = h_alloc_aligned(big + DM_PAGE_SIZE);
	int ret[4];
	unsigned long calls;

	assert_non_null(client);
	h_pattern(buf, big + 1, 7, 0);
	atomic_store(&stray, 0);
	h_seed_get(env, 1);
	req.mem =
		(struct dm_io_memory){.type = DM_IO_KMEM, .ptr.addr = buf + 1};
	h_watchdog(10, "ENOMEM beyond the reservation");
	arm();
	ret[0] = dm_io_sync_vm(1, &where, DM_IO_WRITE, buf + 1, NULL);
	ret[1] =
		dm_io_async_vm(1, &where, DM_IO_WRITE, buf + 1, stray_cb, NULL);
	where.count = big >> 9;
	ret[2] = dm_io(&req, 1, &where, NULL);
	req.notify = (struct dm_io_notify){stray_cb, NULL};
	ret[3] = dm_io(&req, 1, &where, NULL);
	calls = disarm();
	h_watchdog(0, NULL);

	assert_true(calls > 0);
	assert_int_equal(ret[0], -ENOMEM);
	assert_int_equal(ret[1], -ENOMEM);
	assert_int_equal(ret[2], -ENOMEM);
	assert_int_equal(ret[3], -ENOMEM);
	dm_io_client_destroy(client);
	h_seed_put(env, 1);
	assert_int_equal(atomic_load(&stray), 0);
	h_expect_untouched(dev);
	free(buf);
}

/* dm_io_get(n), then one unaligned O_DIRECT write and read of n pages:
 * the bounce pages are part of the reservation too. */
static void bounce_of_whole_reservation_never_allocates(void **state)
{
	static const unsigned int sizes[] = {1, 3, 5, 16};
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_loop_new(env, 1 * MiB, 41, 512);
	struct io_region where = {h_open(env, dev, 0), 8, 0};
	char *wbuf = h_alloc_aligned(64 * KiB + DM_PAGE_SIZE);
	char *rbuf = h_alloc_aligned(64 * KiB + DM_PAGE_SIZE);
	unsigned long calls;
	unsigned int i;
	int ret[3];

	for (i = 0; i < H_NR(sizes); i++) {
		size_t len = sizes[i] * DM_PAGE_SIZE;
		struct tl_rec cb;

		tl_rec_init(&cb);
		where.count = len >> 9;
		h_pattern(wbuf + 5, len, 50 + i, 0);
		memset(rbuf, 0, len + 9);
		h_seed_get(env, sizes[i]);
		h_watchdog(10, "bounced I/O within the reservation");
		arm();
		ret[0] = dm_io_sync_vm(1, &where, DM_IO_WRITE, wbuf + 5, NULL);
		ret[1] = dm_io_sync_vm(1, &where, DM_IO_READ, rbuf + 9, NULL);
		ret[2] = dm_io_async_vm(1, &where, DM_IO_WRITE, wbuf + 5,
					tl_rec_cb, &cb);
		if (!ret[2])
			tl_rec_wait(&cb, 1, 10000);
		calls = disarm();
		h_watchdog(0, NULL);
		h_seed_put(env, sizes[i]);

		if (calls || ret[0] || ret[1] || ret[2])
			fail_msg("dm_io_get(%u), %u-page bounced I/O: "
				 "returned %d %d %d, %lu allocator calls",
				 sizes[i], sizes[i], ret[0], ret[1], ret[2],
				 calls);
		assert_int_equal(atomic_load(&cb.calls), 1);
		assert_int_equal(atomic_load(&cb.bits_or), 0);
		assert_int_equal(h_pattern_mismatch(rbuf + 9, len, 50 + i, 0),
				 -1);
		h_expect_pattern(dev, 8 * 512, len, 50 + i, 0);
	}
	/* Reservations add up: five of one page carry one 5-page bounce. */
	where.count = 5 * DM_PAGE_SIZE >> 9;
	h_pattern(wbuf + 5, 5 * DM_PAGE_SIZE, 60, 0);
	for (i = 0; i < 5; i++)
		h_seed_get(env, 1);
	h_watchdog(10, "bounced I/O within the reservation");
	arm();
	ret[0] = dm_io_sync_vm(1, &where, DM_IO_WRITE, wbuf + 5, NULL);
	calls = disarm();
	h_watchdog(0, NULL);
	for (i = 0; i < 5; i++)
		h_seed_put(env, 1);
	assert_int_equal(ret[0], 0);
	assert_int_equal(calls, 0);
	h_expect_pattern(dev, 8 * 512, 5 * DM_PAGE_SIZE, 60, 0);
	free(wbuf);
	free(rbuf);
}

/* Requests' small blocks, freed, wait on the pool's quick lists for the
 * next request of their size; a block as big as the whole reservation
 * must still come from it, the heap failing, and the quick lists must
 * hand a freed block straight back. */
static void quick_lists_give_way_to_a_whole_reservation(void **state)
{
	void *small[2 * DMI_QUICK_DEPTH], *big, *again;
	struct dmi_pool pool;
	unsigned long calls;
	unsigned int i;

	(void)h_env(state);
	assert_int_equal(dmi_pool_init(&pool), 0);
	/* One page: an arena of one 16 KiB buddy block. */
	assert_int_equal(dmi_pool_reserve(&pool, 1), 0);
	for (i = 0; i < 2 * DMI_QUICK_DEPTH; i++) {
		small[i] =
			dmi_pool_alloc(&pool, i < DMI_QUICK_DEPTH ? 64 : 128);
		assert_non_null(small[i]);
	}
	for (i = 0; i < 2 * DMI_QUICK_DEPTH; i++)
		dmi_pool_free(&pool, small[i], i < DMI_QUICK_DEPTH ? 64 : 128);

	arm();
	again = dmi_pool_alloc(&pool, 100); /* 128 bytes: the last freed */
	dmi_pool_free(&pool, again, 100);
	big = dmi_pool_alloc(&pool, 16 * KiB);
	calls = disarm();

	assert_ptr_equal(again, small[2 * DMI_QUICK_DEPTH - 1]);
	assert_non_null(big);
	assert_int_equal(calls, 0);
	dmi_pool_free(&pool, big, 16 * KiB);
	dmi_pool_unreserve(&pool, 1);
	dmi_pool_destroy(&pool);
}

/* A completion thread's batch: a block freed in it goes to the next
 * allocation of its order in it, whatever its size, with no allocator and
 * without the pool seeing it come back; what is left at the end goes back
 * to the pool (its quick list hands it out again) and is no longer live. */
static void a_batch_keeps_what_its_requests_free_for_its_callbacks(void **state)
{
	struct dmi_pool pool;
	struct dmi_batch b;
	void *p, *q, *r;
	unsigned long calls, gen;

	(void)h_env(state);
	assert_int_equal(dmi_pool_init(&pool), 0);
	assert_int_equal(dmi_pool_reserve(&pool, 1), 0);
	p = dmi_pool_alloc(&pool, 300); /* order 9: 512 bytes */
	assert_non_null(p);
	assert_int_equal(atomic_load(&pool.live), 1);
	gen = dmi_pool_gen(&pool);

	dmi_pool_batch_begin(&b, &pool);
	arm();
	dmi_pool_free(&pool, p, 300);
	q = dmi_pool_alloc(&pool, 500); /* the same order */
	dmi_pool_free(&pool, q, 500);
	calls = disarm();
	assert_ptr_equal(q, p);
	assert_int_equal(calls, 0);
	/* Kept by the batch: still live, no news for waiters yet. */
	assert_int_equal(atomic_load(&pool.live), 1);
	assert_int_equal(dmi_pool_gen(&pool), gen);
	dmi_batch_end(&b);
	assert_int_equal(atomic_load(&pool.live), 0);
	assert_true(dmi_pool_gen(&pool) != gen);

	/* Outside the batch, from the pool's quick list. */
	r = dmi_pool_alloc(&pool, 300);
	assert_ptr_equal(r, p);
	dmi_pool_free(&pool, r, 300);
	dmi_pool_unreserve(&pool, 1);
	dmi_pool_destroy(&pool);
}

/* Beyond the reservation a small block comes from the heap as big as its
 * order, since a batch may hand it out again for a bigger size of that
 * order (ASan checks the writes); another pool's blocks pass the batch by,
 * and a block kept from the heap is freed when the batch ends. */
static void a_batch_takes_heap_blocks_and_only_its_own_pool(void **state)
{
	struct dmi_pool pool, other;
	struct dmi_batch b;
	void *p, *q, *o;

	(void)h_env(state);
	assert_int_equal(dmi_pool_init(&pool), 0);
	assert_int_equal(dmi_pool_init(&other), 0);
	p = dmi_pool_alloc(&pool, 260); /* no reservation: the heap */
	assert_non_null(p);
	o = dmi_pool_alloc(&other, 260);
	assert_non_null(o);

	dmi_pool_batch_begin(&b, &pool);
	dmi_pool_free(&other, o, 260);
	assert_int_equal(atomic_load(&other.live), 0);
	dmi_pool_free(&pool, p, 260);
	q = dmi_pool_alloc(&pool, 512);
	assert_ptr_equal(q, p);
	memset(q, 0xa5, 512);
	dmi_pool_free(&pool, q, 512);
	assert_int_equal(atomic_load(&pool.live), 1);
	dmi_batch_end(&b);
	assert_int_equal(atomic_load(&pool.live), 0);
	dmi_pool_destroy(&other);
	dmi_pool_destroy(&pool);
}

int main(void)
{
	const struct CMUnitTest file_tests[] = {
		R_TEST(wrapped_allocators_fail_when_armed),
		R_TEST(sync_io_within_reservation_never_allocates),
		R_TEST(async_io_within_reservation_never_allocates),
		R_TEST(client_reservation_small_io_never_allocates),
		R_TEST(beyond_reservation_failing_malloc_is_enomem_no_io),
		R_TEST(quick_lists_give_way_to_a_whole_reservation),
		R_TEST(a_batch_keeps_what_its_requests_free_for_its_callbacks),
		R_TEST(a_batch_takes_heap_blocks_and_only_its_own_pool),
	};
	const struct CMUnitTest loop_tests[] = {
		R_TEST(sync_io_within_reservation_never_allocates),
		R_TEST(async_io_within_reservation_never_allocates),
		R_TEST(bounced_io_within_reservation_never_allocates),
		R_TEST(client_reservation_small_io_never_allocates),
		R_TEST(beyond_reservation_failing_malloc_is_enomem_no_io),
		R_TEST(beyond_reservation_bounce_failing_heap_is_enomem),
		R_TEST(bounce_of_whole_reservation_never_allocates),
	};

	h_group_seed_pages = 0;
	return H_RUN("reserve", file_tests, loop_tests);
}

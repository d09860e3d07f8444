/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bad arguments (design.md 1.1 "Errors", 1.2): refused up front with
 * -EINVAL, and nothing is issued: the devices keep their bytes and mtime,
 * a read buffer keeps its bytes, a refused async request never calls back.
 *
 * Every refusal is tried through every front door: the six seed functions
 * (with the group's reservation held, so the refusal is the argument's
 * fault) and dm_io() with each memory type, synchronous and asynchronous.
 * Each test ends with a valid call on the same fixture, which must work.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NDEV	  3
#define DEV_BYTES (1 * MiB)
#define IO_BYTES  (4 * KiB)
#define IO_SECTS  (IO_BYTES >> SECTOR_SHIFT)
#define WSEED	  0x5eed

static atomic_uint cb_count;

static void count_cb(unsigned long error, void *context)
{
	(void)error;
	(void)context;
	atomic_fetch_add(&cb_count, 1);
}

struct fixture {
	struct h_env *env;
	struct h_dev *dev[NDEV];
	struct block_device *bdev[NDEV];
	/* region i: device i % NDEV, its own 4 KiB */
	struct io_region where[DM_IO_MAX_REGIONS + 1];
	struct page_list *pl; /* 4 pages, the write pattern at offset 0 */
	struct bio_vec bv[2];
	char *wbuf; /* the write pattern, page aligned */
	char *rbuf; /* read target, 0xaa */
	struct dm_io_client *client;
};

static void fx_setup(struct h_env *env, struct fixture *fx)
{
	unsigned int i;

	memset(fx, 0, sizeof(*fx));
	fx->env = env;
	for (i = 0; i < NDEV; i++) {
		fx->dev[i] = h_dev_new(env, DEV_BYTES, 100 + i);
		fx->bdev[i] = h_open(env, fx->dev[i], 0);
	}
	for (i = 0; i <= DM_IO_MAX_REGIONS; i++)
		fx->where[i] =
			(struct io_region){fx->bdev[i % NDEV],
					   8 + (i / NDEV) * IO_SECTS, IO_SECTS};
	fx->wbuf = h_alloc_aligned(4 * DM_PAGE_SIZE);
	fx->rbuf = h_alloc_aligned(4 * DM_PAGE_SIZE);
	h_pattern(fx->wbuf, 4 * DM_PAGE_SIZE, WSEED, 0);
	memset(fx->rbuf, 0xaa, 4 * DM_PAGE_SIZE);
	fx->pl = h_pl_alloc(4);
	h_pl_fill(fx->pl, 0, fx->wbuf, 4 * DM_PAGE_SIZE);
	fx->bv[0] = (struct bio_vec){fx->pl->page, DM_PAGE_SIZE, 0};
	fx->bv[1] = (struct bio_vec){fx->pl->next->page, DM_PAGE_SIZE, 0};
	fx->client = dm_io_client_create();
	assert_non_null(fx->client);
	atomic_store(&cb_count, 0);
}

/* Nothing happened: no callback (after draining the client), no byte of
 * any device and no byte of the read buffer changed. */
static void fx_expect_no_io(struct fixture *fx)
{
	unsigned int i;

	dm_io_client_destroy(fx->client);
	fx->client = NULL;
	h_sleep_ms(10);
	assert_int_equal(atomic_load(&cb_count), 0);
	assert_int_equal(h_byte_mismatch(fx->rbuf, 4 * DM_PAGE_SIZE, 0xaa), -1);
	for (i = 0; i < NDEV; i++)
		h_expect_untouched(fx->dev[i]);
}

/* The control: a valid mirrored write of the fixture works. */
static void fx_control(struct fixture *fx)
{
	unsigned long bits = ~0ul;
	unsigned int i;

	assert_int_equal(
		dm_io_sync_vm(NDEV, fx->where, DM_IO_WRITE, fx->wbuf, &bits),
		0);
	assert_int_equal(bits, 0);
	for (i = 0; i < NDEV; i++)
		h_expect_pattern(fx->dev[i], 8 * 512, IO_BYTES, WSEED, 0);
}

static void fx_teardown(struct fixture *fx)
{
	dm_io_client_destroy(fx->client);
	dm_page_list_free(fx->pl);
	free(fx->wbuf);
	free(fx->rbuf);
}

#define EXPECT_REFUSED(call, expect)                                           \
	do {                                                                   \
		int ret_ = (call);                                             \
		if (ret_ != (expect))                                          \
			fail_msg("%s returned %d (%s), expected %d", #call,    \
				 ret_, ret_ ? strerror(-ret_) : "success",     \
				 (expect));                                    \
	} while (0)

/* Every seed form, sync and async, with @n regions at @where and @rw. */
static void seed_forms_refused(struct fixture *fx, unsigned int n,
			       struct io_region *where, int rw)
{
	unsigned long bits = 0;
	char *buf = rw == DM_IO_READ ? fx->rbuf : fx->wbuf;

	/* A read into the page list or bio_vec would land in the write
	 * pattern: it must not happen either, checked by the next write. */
	EXPECT_REFUSED(dm_io_sync(n, where, rw, fx->pl, 0, &bits), -EINVAL);
	EXPECT_REFUSED(dm_io_sync_bvec(n, where, rw, fx->bv, &bits), -EINVAL);
	EXPECT_REFUSED(dm_io_sync_vm(n, where, rw, buf, &bits), -EINVAL);
	EXPECT_REFUSED(dm_io_async(n, where, rw, fx->pl, 0, count_cb, NULL),
		       -EINVAL);
	EXPECT_REFUSED(dm_io_async_bvec(n, where, rw, fx->bv, count_cb, NULL),
		       -EINVAL);
	EXPECT_REFUSED(dm_io_async_vm(n, where, rw, buf, count_cb, NULL),
		       -EINVAL);
}

/* dm_io() with @req's op and client, every memory type, sync and async. */
static void request_forms_refused(struct fixture *fx, struct dm_io_request *req,
				  unsigned int n, struct io_region *where)
{
	bool read = (req->bi_opf & DM_IO_OP_MASK) == DM_IO_OP_READ;
	struct dm_io_memory mems[] = {
		{.type = DM_IO_PAGE_LIST, .ptr.pl = fx->pl},
		{.type = DM_IO_BVEC, .ptr.bvec = fx->bv},
		{.type = DM_IO_VMA, .ptr.vma = read ? fx->rbuf : fx->wbuf},
		{.type = DM_IO_KMEM, .ptr.addr = read ? fx->rbuf : fx->wbuf},
	};
	unsigned long bits = 0;
	unsigned int i;

	for (i = 0; i < H_NR(mems); i++) {
		req->mem = mems[i];
		req->notify = (struct dm_io_notify){NULL, NULL};
		EXPECT_REFUSED(dm_io(req, n, where, &bits), -EINVAL);
		req->notify = (struct dm_io_notify){count_cb, NULL};
		EXPECT_REFUSED(dm_io(req, n, where, NULL), -EINVAL);
	}
}

/* Both front doors, @rw given in the seed's terms. */
static void all_forms_refused(struct fixture *fx, unsigned int n,
			      struct io_region *where, int rw)
{
	struct dm_io_request req = {
		.bi_opf = rw == DM_IO_READ ? DM_IO_OP_READ : DM_IO_OP_WRITE,
		.client = fx->client,
	};

	seed_forms_refused(fx, n, where, rw);
	request_forms_refused(fx, &req, n, where);
}

/* ---- the tests ---------------------------------------------------------- */

static void null_regions_is_einval_no_io(void **state)
{
	struct fixture fx;

	fx_setup(h_env(state), &fx);
	all_forms_refused(&fx, 1, NULL, DM_IO_WRITE);
	all_forms_refused(&fx, NDEV, NULL, DM_IO_WRITE);
	all_forms_refused(&fx, 1, NULL, DM_IO_READ);
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void null_buffer_is_einval_no_io(void **state)
{
	enum dm_io_mem_type types[] = {DM_IO_PAGE_LIST, DM_IO_BVEC, DM_IO_VMA,
				       DM_IO_KMEM};
	unsigned int ops[] = {DM_IO_OP_WRITE, DM_IO_OP_READ};
	struct fixture fx;
	unsigned int t, o;
	int rw;

	fx_setup(h_env(state), &fx);
	for (rw = DM_IO_READ; rw <= DM_IO_WRITE; rw++) {
		unsigned int n = rw == DM_IO_READ ? 1 : NDEV;

		EXPECT_REFUSED(dm_io_sync(n, fx.where, rw, NULL, 0, NULL),
			       -EINVAL);
		EXPECT_REFUSED(dm_io_sync_bvec(n, fx.where, rw, NULL, NULL),
			       -EINVAL);
		EXPECT_REFUSED(dm_io_sync_vm(n, fx.where, rw, NULL, NULL),
			       -EINVAL);
		EXPECT_REFUSED(
			dm_io_async(n, fx.where, rw, NULL, 0, count_cb, NULL),
			-EINVAL);
		EXPECT_REFUSED(
			dm_io_async_bvec(n, fx.where, rw, NULL, count_cb, NULL),
			-EINVAL);
		EXPECT_REFUSED(
			dm_io_async_vm(n, fx.where, rw, NULL, count_cb, NULL),
			-EINVAL);
	}
	for (o = 0; o < H_NR(ops); o++) {
		for (t = 0; t < H_NR(types); t++) {
			struct dm_io_request req = {
				.bi_opf = ops[o],
				.mem = {.type = types[t]},
				.client = fx.client,
			};
			unsigned int n = ops[o] == DM_IO_OP_READ ? 1 : NDEV;

			EXPECT_REFUSED(dm_io(&req, n, fx.where, NULL), -EINVAL);
			req.notify.fn = count_cb;
			EXPECT_REFUSED(dm_io(&req, n, fx.where, NULL), -EINVAL);
		}
	}
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void bad_rw_is_einval_no_io(void **state)
{
	int bad[] = {-1, 2, 3, 4, 256, DM_IO_WRITE | 0x100, INT_MAX, INT_MIN};
	struct fixture fx;
	unsigned int i;

	fx_setup(h_env(state), &fx);
	for (i = 0; i < H_NR(bad); i++) {
		seed_forms_refused(&fx, 1, fx.where, bad[i]);
		seed_forms_refused(&fx, NDEV, fx.where, bad[i]);
	}
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void zero_regions_is_einval_no_io(void **state)
{
	struct fixture fx;

	fx_setup(h_env(state), &fx);
	all_forms_refused(&fx, 0, fx.where, DM_IO_WRITE);
	all_forms_refused(&fx, 0, fx.where, DM_IO_READ);
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void too_many_regions_is_einval_no_io(void **state)
{
	struct fixture fx;
	unsigned long bits = ~0ul;
	unsigned int i;

	fx_setup(h_env(state), &fx);
	all_forms_refused(&fx, DM_IO_MAX_REGIONS + 1, fx.where, DM_IO_WRITE);
	all_forms_refused(&fx, UINT_MAX, fx.where, DM_IO_WRITE);
	fx_expect_no_io(&fx);
	/* The limit itself is fine: one bit per region. */
	assert_int_equal(DM_IO_MAX_REGIONS, 8 * sizeof(unsigned long));
	assert_int_equal(dm_io_sync_vm(DM_IO_MAX_REGIONS, fx.where, DM_IO_WRITE,
				       fx.wbuf, &bits),
			 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < DM_IO_MAX_REGIONS; i++)
		h_expect_pattern(fx.dev[i % NDEV], fx.where[i].sector * 512,
				 IO_BYTES, WSEED, 0);
	/* ... and region 64 was not part of it. */
	h_expect_initial(fx.dev[DM_IO_MAX_REGIONS % NDEV],
			 fx.where[DM_IO_MAX_REGIONS].sector * 512, IO_BYTES);
	fx_teardown(&fx);
}

static void page_list_offset_of_page_size_or_more_is_einval_no_io(void **state)
{
	unsigned int offsets[] = {DM_PAGE_SIZE, DM_PAGE_SIZE + 1, UINT_MAX};
	struct fixture fx;
	unsigned long bits = ~0ul;
	unsigned int i;
	int rw;

	fx_setup(h_env(state), &fx);
	for (i = 0; i < H_NR(offsets); i++) {
		for (rw = DM_IO_READ; rw <= DM_IO_WRITE; rw++) {
			unsigned int n = rw == DM_IO_READ ? 1 : NDEV;
			struct dm_io_request req = {
				.bi_opf = (unsigned int)rw,
				.mem = {.type = DM_IO_PAGE_LIST,
					.offset = offsets[i],
					.ptr.pl = fx.pl},
				.client = fx.client,
			};

			EXPECT_REFUSED(dm_io_sync(n, fx.where, rw, fx.pl,
						  offsets[i], NULL),
				       -EINVAL);
			EXPECT_REFUSED(dm_io_async(n, fx.where, rw, fx.pl,
						   offsets[i], count_cb, NULL),
				       -EINVAL);
			EXPECT_REFUSED(dm_io(&req, n, fx.where, NULL), -EINVAL);
			req.notify.fn = count_cb;
			EXPECT_REFUSED(dm_io(&req, n, fx.where, NULL), -EINVAL);
		}
	}
	fx_expect_no_io(&fx);
	/* The last valid offset works: the data starts there. */
	assert_int_equal(dm_io_sync(NDEV, fx.where, DM_IO_WRITE, fx.pl,
				    DM_PAGE_SIZE - 1, &bits),
			 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < NDEV; i++)
		h_expect_pattern(fx.dev[i], 8 * 512, IO_BYTES, WSEED,
				 DM_PAGE_SIZE - 1);
	fx_teardown(&fx);
}

/* Region 0 of @where is @bad; for writes it is also tried last of three
 * behind good regions: the good ones must not be written either. */
static void region_refused(struct fixture *fx, struct io_region bad)
{
	struct io_region where[NDEV];

	where[0] = bad;
	all_forms_refused(fx, 1, where, DM_IO_READ);
	all_forms_refused(fx, 1, where, DM_IO_WRITE);
	where[0] = fx->where[0];
	where[1] = fx->where[1];
	where[2] = bad;
	all_forms_refused(fx, NDEV, where, DM_IO_WRITE);
}

static void sector_plus_count_overflow_is_einval_no_io(void **state)
{
	struct fixture fx;
	struct block_device *b;

	fx_setup(h_env(state), &fx);
	b = fx.bdev[0];
	region_refused(&fx, (struct io_region){b, UINT64_MAX, 1});
	region_refused(&fx, (struct io_region){b, UINT64_MAX - 7, 8});
	region_refused(&fx, (struct io_region){b, 1, UINT64_MAX});
	region_refused(&fx, (struct io_region){b, UINT64_MAX, UINT64_MAX});
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void byte_offset_overflow_is_einval_no_io(void **state)
{
	const sector_t max =
		UINT64_MAX >> SECTOR_SHIFT; /* last sector_t
					       with a byte offset */
	struct fixture fx;
	struct block_device *b;
	struct io_region far;
	unsigned long bits = 0;
	int errs[1] = {0};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.region_errors = errs,
	};

	fx_setup(h_env(state), &fx);
	b = fx.bdev[0];
	/* sector + count fits a sector_t, (sector + count) << 9 does not */
	region_refused(&fx, (struct io_region){b, max, 1});
	region_refused(&fx, (struct io_region){b, 0, max + 1});
	region_refused(&fx, (struct io_region){b, max - 3, 8});
	region_refused(&fx, (struct io_region){b, 1ull << 60, 8});
	fx_expect_no_io(&fx);

	/* Just representable: a valid request for a region far past the
	 * end, which is an I/O error of that region, not a bad argument. */
	far = (struct io_region){b, max - 8, 8};
	assert_int_equal(dm_io_sync_vm(1, &far, DM_IO_WRITE, fx.wbuf, &bits),
			 -EIO);
	assert_int_equal(bits, 1);
	fx.client = dm_io_client_create();
	assert_non_null(fx.client);
	req.client = fx.client;
	req.mem =
		(struct dm_io_memory){.type = DM_IO_KMEM, .ptr.addr = fx.wbuf};
	bits = 0;
	assert_int_equal(dm_io(&req, 1, &far, &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(errs[0], -ENXIO);
	h_expect_untouched(fx.dev[0]);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void read_of_two_regions_is_einval_no_io(void **state)
{
	struct fixture fx;

	fx_setup(h_env(state), &fx);
	all_forms_refused(&fx, 2, fx.where, DM_IO_READ);
	all_forms_refused(&fx, NDEV, fx.where, DM_IO_READ);
	all_forms_refused(&fx, DM_IO_MAX_REGIONS, fx.where, DM_IO_READ);
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void null_bdev_in_a_region_is_einval_no_io(void **state)
{
	struct fixture fx;

	fx_setup(h_env(state), &fx);
	region_refused(&fx, (struct io_region){NULL, 8, 8});
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void async_with_null_fn_is_einval_no_io(void **state)
{
	struct fixture fx;

	fx_setup(h_env(state), &fx);
	EXPECT_REFUSED(
		dm_io_async(NDEV, fx.where, DM_IO_WRITE, fx.pl, 0, NULL, NULL),
		-EINVAL);
	EXPECT_REFUSED(dm_io_async_bvec(NDEV, fx.where, DM_IO_WRITE, fx.bv,
					NULL, NULL),
		       -EINVAL);
	EXPECT_REFUSED(dm_io_async_vm(NDEV, fx.where, DM_IO_WRITE, fx.wbuf,
				      NULL, NULL),
		       -EINVAL);
	EXPECT_REFUSED(
		dm_io_async_vm(1, fx.where, DM_IO_READ, fx.rbuf, NULL, NULL),
		-EINVAL);
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void page_list_shorter_than_region_is_einval_no_io(void **state)
{
	struct fixture fx;
	struct page_list *one = h_pl_alloc(1);
	struct io_region where[NDEV];
	unsigned int i;

	fx_setup(h_env(state), &fx);
	h_pl_fill(one, 0, fx.wbuf, DM_PAGE_SIZE);
	for (i = 0; i < NDEV; i++)
		where[i] = (struct io_region){fx.bdev[i], 8, 16};
	/* 8 KiB from a 1-page list; 4 KiB from 2 KiB into it. */
	EXPECT_REFUSED(dm_io_sync(NDEV, where, DM_IO_WRITE, one, 0, NULL),
		       -EINVAL);
	EXPECT_REFUSED(
		dm_io_async(NDEV, where, DM_IO_WRITE, one, 0, count_cb, NULL),
		-EINVAL);
	EXPECT_REFUSED(dm_io_sync(NDEV, fx.where, DM_IO_WRITE, one, 2048, NULL),
		       -EINVAL);
	EXPECT_REFUSED(dm_io_sync(1, where, DM_IO_READ, one, 0, NULL), -EINVAL);
	dm_page_list_free(one);
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void bvec_not_covering_region_is_einval_no_io(void **state)
{
	struct fixture fx;
	struct io_region where[NDEV];
	struct bio_vec short_bv[2], over_bv[2];
	unsigned int i;

	fx_setup(h_env(state), &fx);
	for (i = 0; i < NDEV; i++)
		where[i] = (struct io_region){fx.bdev[i], 8, 16};
	/* One page for 8 KiB, then a terminating empty entry. */
	short_bv[0] = (struct bio_vec){fx.pl->page, DM_PAGE_SIZE, 0};
	short_bv[1] = (struct bio_vec){NULL, 0, 0};
	/* An entry running past the end of its page. */
	over_bv[0] = (struct bio_vec){fx.pl->page, DM_PAGE_SIZE, 512};
	over_bv[1] = (struct bio_vec){fx.pl->next->page, DM_PAGE_SIZE, 0};
	EXPECT_REFUSED(
		dm_io_sync_bvec(NDEV, where, DM_IO_WRITE, short_bv, NULL),
		-EINVAL);
	EXPECT_REFUSED(dm_io_async_bvec(NDEV, where, DM_IO_WRITE, short_bv,
					count_cb, NULL),
		       -EINVAL);
	EXPECT_REFUSED(dm_io_sync_bvec(NDEV, where, DM_IO_WRITE, over_bv, NULL),
		       -EINVAL);
	EXPECT_REFUSED(dm_io_sync_bvec(1, where, DM_IO_READ, over_bv, NULL),
		       -EINVAL);
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

/* ---- the request API's own arguments ------------------------------------ */

static void request_null_client_is_einval_no_io(void **state)
{
	struct fixture fx;
	struct dm_io_request req = {.bi_opf = DM_IO_OP_WRITE};

	fx_setup(h_env(state), &fx);
	request_forms_refused(&fx, &req, NDEV, fx.where);
	req.bi_opf = DM_IO_OP_READ;
	request_forms_refused(&fx, &req, 1, fx.where);
	EXPECT_REFUSED(dm_io(NULL, NDEV, fx.where, NULL), -EINVAL);
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void request_bad_op_bits_is_einval_no_io(void **state)
{
	/* Not READ/WRITE with known flags: unknown ops and unknown flags.
	 * (The data-less ops are another issue's business.) */
	unsigned int bad[] = {
		5,
		0x7f,
		DM_IO_OP_MASK,
		DM_IO_OP_WRITE | (1u << 10),
		DM_IO_OP_WRITE | (1u << 31),
		DM_IO_OP_READ | (1u << 16),
		~0u,
	};
	struct fixture fx;
	unsigned int i;

	fx_setup(h_env(state), &fx);
	for (i = 0; i < H_NR(bad); i++) {
		struct dm_io_request req = {.bi_opf = bad[i],
					    .client = fx.client};

		request_forms_refused(&fx, &req, 1, fx.where);
		request_forms_refused(&fx, &req, NDEV, fx.where);
	}
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

static void request_bad_memory_type_is_einval_no_io(void **state)
{
	int bad[] = {DM_IO_KMEM + 1, 99, -1};
	struct fixture fx;
	unsigned int i;

	fx_setup(h_env(state), &fx);
	for (i = 0; i < H_NR(bad); i++) {
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = (enum dm_io_mem_type)bad[i],
				.ptr.addr = fx.wbuf},
			.client = fx.client,
		};

		EXPECT_REFUSED(dm_io(&req, NDEV, fx.where, NULL), -EINVAL);
		req.notify.fn = count_cb;
		EXPECT_REFUSED(dm_io(&req, NDEV, fx.where, NULL), -EINVAL);
		req.bi_opf = DM_IO_OP_READ;
		req.mem.ptr.addr = fx.rbuf;
		EXPECT_REFUSED(dm_io(&req, 1, fx.where, NULL), -EINVAL);
	}
	fx_expect_no_io(&fx);
	fx_control(&fx);
	fx_teardown(&fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		H_TEST(null_regions_is_einval_no_io),
		H_TEST(null_buffer_is_einval_no_io),
		H_TEST(bad_rw_is_einval_no_io),
		H_TEST(zero_regions_is_einval_no_io),
		H_TEST(too_many_regions_is_einval_no_io),
		H_TEST(page_list_offset_of_page_size_or_more_is_einval_no_io),
		H_TEST(sector_plus_count_overflow_is_einval_no_io),
		H_TEST(byte_offset_overflow_is_einval_no_io),
		H_TEST(read_of_two_regions_is_einval_no_io),
		H_TEST(null_bdev_in_a_region_is_einval_no_io),
		H_TEST(async_with_null_fn_is_einval_no_io),
		H_TEST(page_list_shorter_than_region_is_einval_no_io),
		H_TEST(bvec_not_covering_region_is_einval_no_io),
		H_TEST(request_null_client_is_einval_no_io),
		H_TEST(request_bad_op_bits_is_einval_no_io),
		H_TEST(request_bad_memory_type_is_einval_no_io),
	};

	h_group_seed_pages = 256;
	return H_RUN("validate", tests, tests);
}

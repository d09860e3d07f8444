/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Mirrored writes and reads (design.md 1.1 "Directions", "Errors",
 * "Buffers", "Failed reads"): the same data to every region from each
 * kind of buffer, the error bitset and region_errors for every way a
 * region can fail, partial failure that never hides, zero-count regions,
 * zero-filled failed reads and large writes cut into many chunks.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NDEV 3

/* Wait for the one callback; returns its error bits. */
static unsigned long done_wait(struct tl_rec *d)
{
	if (!tl_rec_wait(d, 1, 30000))
		fail_msg("the callback did not run within 30 s");
	h_sleep_ms(5);
	assert_int_equal(atomic_load(&d->calls), 1);
	return atomic_load(&d->bits);
}

struct mirror {
	struct h_dev *dev[NDEV];
	struct block_device *bdev[NDEV];
	struct io_region where[NDEV];
};

/* Three devices of @dev_bytes; region i at @sector + 40 * i, @count long. */
static void mirror_setup(struct h_env *env, struct mirror *m,
			 uint64_t dev_bytes, sector_t sector, sector_t count)
{
	unsigned int i;

	for (i = 0; i < NDEV; i++) {
		m->dev[i] = h_dev_new(env, dev_bytes, 10 + i);
		m->bdev[i] = h_open(env, m->dev[i], 0);
		m->where[i] =
			(struct io_region){m->bdev[i], sector + 40 * i, count};
	}
}

/* Region @i of @m holds h_pattern(@seed, @pos...), the rest of its device
 * is as it was, and the device did not grow. */
static void expect_region(struct mirror *m, unsigned int i, uint32_t seed,
			  uint64_t pos)
{
	struct h_dev *dev = m->dev[i];
	uint64_t start = m->where[i].sector << SECTOR_SHIFT;
	uint64_t len = m->where[i].count << SECTOR_SHIFT;

	h_expect_initial(dev, 0, start);
	h_expect_pattern(dev, start, len, seed, pos);
	h_expect_initial(dev, start + len, dev->size - start - len);
	assert_int_equal(h_dev_file_size(dev), dev->size);
}

/* Read region @i back through the library into a contiguous buffer. */
static void expect_read_back(struct mirror *m, unsigned int i, uint32_t seed,
			     uint64_t pos)
{
	size_t len = m->where[i].count << SECTOR_SHIFT;
	char *buf = h_alloc_aligned(len);
	unsigned long bits = ~0ul;

	memset(buf, 0xaa, len);
	assert_int_equal(dm_io_sync_vm(1, &m->where[i], DM_IO_READ, buf, &bits),
			 0);
	assert_int_equal(bits, 0);
	assert_int_equal(h_pattern_mismatch(buf, len, seed, pos), -1);
	free(buf);
}

static void move_regions(struct mirror *m, sector_t by)
{
	unsigned int i;

	for (i = 0; i < NDEV; i++)
		m->where[i].sector += by;
}

/* ---- one buffer type at a time ------------------------------------------ */

static void mirror_write_page_list_to_three_devices_reads_back(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 32 * KiB;
	struct page_list *pl = h_pl_alloc(8), *back = h_pl_alloc(8);
	char *data = h_alloc(len), *got = h_alloc(len);
	unsigned long bits = ~0ul;
	struct mirror m;
	struct tl_rec d;
	unsigned int i;

	mirror_setup(env, &m, 1 * MiB, 64, len >> SECTOR_SHIFT);
	h_pattern(data, len, 1, 0);
	h_pl_fill(pl, 0, data, len);
	assert_int_equal(dm_io_sync(NDEV, m.where, DM_IO_WRITE, pl, 0, &bits),
			 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < NDEV; i++) {
		expect_region(&m, i, 1, 0);
		assert_int_equal(
			dm_io_sync(1, &m.where[i], DM_IO_READ, back, 0, &bits),
			0);
		h_pl_copy_out(back, 0, got, len);
		assert_memory_equal(got, data, len);
	}

	/* The same, asynchronously, elsewhere. */
	move_regions(&m, 1024);
	tl_rec_init(&d);
	assert_int_equal(
		dm_io_async(NDEV, m.where, DM_IO_WRITE, pl, 0, tl_rec_cb, &d),
		0);
	assert_int_equal(done_wait(&d), 0);
	for (i = 0; i < NDEV; i++) {
		h_expect_pattern(m.dev[i], m.where[i].sector * 512, len, 1, 0);
		tl_rec_init(&d);
		memset(dm_page_address(back->page), 0, DM_PAGE_SIZE);
		assert_int_equal(dm_io_async(1, &m.where[i], DM_IO_READ, back,
					     0, tl_rec_cb, &d),
				 0);
		assert_int_equal(done_wait(&d), 0);
		h_pl_copy_out(back, 0, got, len);
		assert_memory_equal(got, data, len);
	}
	dm_page_list_free(pl);
	dm_page_list_free(back);
	free(data);
	free(got);
}

static void mirror_write_bvec_to_three_devices_reads_back(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 32 * KiB;
	struct page_list *pl = h_pl_alloc(8), *back = h_pl_alloc(8), *p, *q;
	struct bio_vec bv[8], bvb[8];
	char *data = h_alloc(len), *got = h_alloc(len);
	unsigned long bits = ~0ul;
	struct mirror m;
	struct tl_rec d;
	unsigned int i;

	for (i = 0, p = pl, q = back; i < 8; i++, p = p->next, q = q->next) {
		bv[i] = (struct bio_vec){p->page, DM_PAGE_SIZE, 0};
		bvb[i] = (struct bio_vec){q->page, DM_PAGE_SIZE, 0};
	}
	mirror_setup(env, &m, 1 * MiB, 64, len >> SECTOR_SHIFT);
	h_pattern(data, len, 2, 0);
	h_pl_fill(pl, 0, data, len);
	assert_int_equal(dm_io_sync_bvec(NDEV, m.where, DM_IO_WRITE, bv, &bits),
			 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < NDEV; i++) {
		expect_region(&m, i, 2, 0);
		assert_int_equal(
			dm_io_sync_bvec(1, &m.where[i], DM_IO_READ, bvb, &bits),
			0);
		h_pl_copy_out(back, 0, got, len);
		assert_memory_equal(got, data, len);
	}

	move_regions(&m, 1024);
	tl_rec_init(&d);
	assert_int_equal(
		dm_io_async_bvec(NDEV, m.where, DM_IO_WRITE, bv, tl_rec_cb, &d),
		0);
	assert_int_equal(done_wait(&d), 0);
	for (i = 0; i < NDEV; i++) {
		h_expect_pattern(m.dev[i], m.where[i].sector * 512, len, 2, 0);
		tl_rec_init(&d);
		memset(dm_page_address(back->page), 0, DM_PAGE_SIZE);
		assert_int_equal(dm_io_async_bvec(1, &m.where[i], DM_IO_READ,
						  bvb, tl_rec_cb, &d),
				 0);
		assert_int_equal(done_wait(&d), 0);
		h_pl_copy_out(back, 0, got, len);
		assert_memory_equal(got, data, len);
	}
	dm_page_list_free(pl);
	dm_page_list_free(back);
	free(data);
	free(got);
}

static void mirror_write_vm_to_three_devices_reads_back(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 32 * KiB;
	char *data = h_alloc_aligned(len), *got = h_alloc_aligned(len);
	unsigned long bits = ~0ul;
	struct mirror m;
	struct tl_rec d;
	unsigned int i;

	mirror_setup(env, &m, 1 * MiB, 64, len >> SECTOR_SHIFT);
	h_pattern(data, len, 3, 0);
	assert_int_equal(dm_io_sync_vm(NDEV, m.where, DM_IO_WRITE, data, &bits),
			 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < NDEV; i++) {
		expect_region(&m, i, 3, 0);
		expect_read_back(&m, i, 3, 0);
	}

	move_regions(&m, 1024);
	tl_rec_init(&d);
	assert_int_equal(
		dm_io_async_vm(NDEV, m.where, DM_IO_WRITE, data, tl_rec_cb, &d),
		0);
	assert_int_equal(done_wait(&d), 0);
	for (i = 0; i < NDEV; i++) {
		h_expect_pattern(m.dev[i], m.where[i].sector * 512, len, 3, 0);
		tl_rec_init(&d);
		memset(got, 0, len);
		assert_int_equal(dm_io_async_vm(1, &m.where[i], DM_IO_READ, got,
						tl_rec_cb, &d),
				 0);
		assert_int_equal(done_wait(&d), 0);
		assert_memory_equal(got, data, len);
	}
	free(data);
	free(got);
}

static void mirror_write_request_api_every_memory_type(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 16 * KiB;
	struct page_list *pl = h_pl_alloc(4), *p;
	struct bio_vec bv[4];
	char *data = h_alloc_aligned(len), *got = h_alloc_aligned(len);
	struct dm_io_client *client = dm_io_client_create();
	struct dm_io_memory mems[] = {
		{.type = DM_IO_PAGE_LIST, .ptr.pl = pl},
		{.type = DM_IO_BVEC, .ptr.bvec = bv},
		{.type = DM_IO_VMA, .ptr.vma = data},
		{.type = DM_IO_KMEM, .ptr.addr = data},
	};
	struct mirror m;
	unsigned int t, i;

	assert_non_null(client);
	for (i = 0, p = pl; i < 4; i++, p = p->next)
		bv[i] = (struct bio_vec){p->page, DM_PAGE_SIZE, 0};
	mirror_setup(env, &m, 1 * MiB, 64, len >> SECTOR_SHIFT);
	for (t = 0; t < H_NR(mems); t++) {
		int errs[NDEV] = {-1, -1, -1};
		unsigned long bits = ~0ul;
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = mems[t],
			.client = client,
			.region_errors = errs,
		};

		h_pattern(data, len, 40 + t, 0);
		h_pl_fill(pl, 0, data, len);
		assert_int_equal(dm_io(&req, NDEV, m.where, &bits), 0);
		assert_int_equal(bits, 0);
		for (i = 0; i < NDEV; i++) {
			assert_int_equal(errs[i], 0);
			expect_region(&m, i, 40 + t, 0);
		}
		/* Read back region 1 through the same memory type. */
		memset(data, 0, len);
		h_pl_fill(pl, 0, data, len);
		req.bi_opf = DM_IO_OP_READ;
		errs[0] = -1;
		assert_int_equal(dm_io(&req, 1, &m.where[1], &bits), 0);
		assert_int_equal(errs[0], 0);
		if (mems[t].type == DM_IO_PAGE_LIST ||
		    mems[t].type == DM_IO_BVEC)
			h_pl_copy_out(pl, 0, got, len);
		else
			memcpy(got, data, len);
		assert_int_equal(h_pattern_mismatch(got, len, 40 + t, 0), -1);
	}
	dm_io_client_destroy(client);
	dm_page_list_free(pl);
	free(data);
	free(got);
}

static void page_list_offset_crossing_pages_round_trip(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 12 * KiB; /* from 3000 into page 0 to 3288 into page 3 */
	struct page_list *pl = h_pl_alloc(4), *back = h_pl_alloc(5), *p;
	char *data = h_alloc(len), *got = h_alloc(len);
	char *whole = h_alloc(5 * DM_PAGE_SIZE);
	unsigned long bits = ~0ul;
	struct mirror m;
	unsigned int i;

	mirror_setup(env, &m, 1 * MiB, 8, len >> SECTOR_SHIFT);
	h_pattern(data, len, 4, 0);
	h_pl_fill(pl, 3000, data, len);
	assert_int_equal(
		dm_io_sync(NDEV, m.where, DM_IO_WRITE, pl, 3000, &bits), 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < NDEV; i++)
		expect_region(&m, i, 4, 0);

	/* Read into another list at another offset: exactly the region's
	 * bytes land there, nothing before or after is touched. */
	for (p = back; p; p = p->next)
		memset(dm_page_address(p->page), 0xaa, DM_PAGE_SIZE);
	assert_int_equal(
		dm_io_sync(1, &m.where[2], DM_IO_READ, back, 1234, &bits), 0);
	h_pl_copy_out(back, 1234, got, len);
	assert_memory_equal(got, data, len);
	h_pl_copy_out(back, 0, whole, 5 * DM_PAGE_SIZE);
	assert_int_equal(h_byte_mismatch(whole, 1234, 0xaa), -1);
	assert_int_equal(h_byte_mismatch(whole + 1234 + len,
					 5 * DM_PAGE_SIZE - 1234 - len, 0xaa),
			 -1);
	dm_page_list_free(pl);
	dm_page_list_free(back);
	free(data);
	free(got);
	free(whole);
}

static void bvec_with_offsets_and_odd_lengths_round_trip(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 8 * KiB;
	struct page_list *pl = h_pl_alloc(4), *back = h_pl_alloc(3), *p;
	struct page *pg[4], *bk[3];
	struct bio_vec bv[4], bvb[3];
	char *data = h_alloc(len);
	unsigned long bits = ~0ul;
	struct mirror m;
	size_t pos;
	unsigned int i;

	for (i = 0, p = pl; p; p = p->next, i++)
		pg[i] = p->page;
	for (i = 0, p = back; p; p = p->next, i++) {
		bk[i] = p->page;
		memset(dm_page_address(bk[i]), 0xaa, DM_PAGE_SIZE);
	}
	/* 100 + 3000 + 4096 + 996 = 8192 bytes, at odd places. */
	bv[0] = (struct bio_vec){pg[0], 100, 7};
	bv[1] = (struct bio_vec){pg[1], 3000, 1000};
	bv[2] = (struct bio_vec){pg[2], 4096, 0};
	bv[3] = (struct bio_vec){pg[3], 996, 3100};
	/* 1 + 4096 + 4095 = 8192, cut elsewhere. */
	bvb[0] = (struct bio_vec){bk[0], 1, 4095};
	bvb[1] = (struct bio_vec){bk[1], 4096, 0};
	bvb[2] = (struct bio_vec){bk[2], 4095, 0};

	h_pattern(data, len, 5, 0);
	for (i = 0, pos = 0; i < 4; pos += bv[i].bv_len, i++)
		memcpy((char *)dm_page_address(bv[i].bv_page) + bv[i].bv_offset,
		       data + pos, bv[i].bv_len);
	mirror_setup(env, &m, 1 * MiB, 16, len >> SECTOR_SHIFT);
	assert_int_equal(dm_io_sync_bvec(NDEV, m.where, DM_IO_WRITE, bv, &bits),
			 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < NDEV; i++)
		expect_region(&m, i, 5, 0);

	assert_int_equal(
		dm_io_sync_bvec(1, &m.where[1], DM_IO_READ, bvb, &bits), 0);
	for (i = 0, pos = 0; i < 3; pos += bvb[i].bv_len, i++)
		assert_memory_equal((char *)dm_page_address(bvb[i].bv_page) +
					    bvb[i].bv_offset,
				    data + pos, bvb[i].bv_len);
	/* Outside the entries: untouched. */
	assert_int_equal(h_byte_mismatch(dm_page_address(bk[0]), 4095, 0xaa),
			 -1);
	assert_int_equal(
		h_byte_mismatch((char *)dm_page_address(bk[2]) + 4095, 1, 0xaa),
		-1);
	dm_page_list_free(pl);
	dm_page_list_free(back);
	free(data);
}

static void mirror_write_to_regions_of_one_device(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 6);
	struct block_device *bdev = h_open(env, dev, 0);
	struct io_region where[4] = {{bdev, 0, 16},
				     {bdev, 100, 16},
				     {bdev, 1000, 16},
				     {bdev, 2032, 16}};
	char *data = h_alloc_aligned(8 * KiB);
	unsigned long bits = ~0ul;
	unsigned int i;

	h_pattern(data, 8 * KiB, 7, 0);
	assert_int_equal(dm_io_sync_vm(4, where, DM_IO_WRITE, data, &bits), 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < 4; i++)
		h_expect_pattern(dev, where[i].sector * 512, 8 * KiB, 7, 0);
	h_expect_initial(dev, 8 * KiB, 100 * 512 - 8 * KiB);
	h_expect_initial(dev, 116 * 512, 884 * 512);
	h_expect_initial(dev, 1016 * 512, 1016 * 512);
	free(data);
}

/* ---- skipped regions ---------------------------------------------------- */

static void zero_count_region_is_skipped(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *ro = h_dev_new(env, 64 * KiB, 50);
	struct block_device *rob = h_open(env, ro, DM_BDEV_RDONLY);
	char *data = h_alloc_aligned(16 * KiB);
	int errs[5];
	unsigned long bits = ~0ul;
	struct dm_io_client *client = dm_io_client_create();
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.client = client,
		.region_errors = errs,
	};
	struct io_region where[5];
	struct mirror m;
	struct tl_rec d;
	unsigned int i;

	assert_non_null(client);
	mirror_setup(env, &m, 1 * MiB, 8, 32);
	h_pattern(data, 16 * KiB, 8, 0);
	/* A, skipped, C, skipped-past-the-end, skipped-read-only */
	where[0] = m.where[0];
	where[1] = (struct io_region){m.bdev[1], 8, 0};
	where[2] = m.where[2];
	where[3] = (struct io_region){m.bdev[1], 1u << 30, 0};
	where[4] = (struct io_region){rob, 0, 0};
	memset(errs, 0x7f, sizeof(errs));
	assert_int_equal(dm_io(&req, 5, where, &bits), 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < 5; i++)
		assert_int_equal(errs[i], 0);
	expect_region(&m, 0, 8, 0);
	expect_region(&m, 2, 8, 0);
	h_expect_untouched(m.dev[1]);
	h_expect_untouched(ro);

	/* Seed API, async: same answer. */
	tl_rec_init(&d);
	assert_int_equal(
		dm_io_async_vm(5, where, DM_IO_WRITE, data, tl_rec_cb, &d), 0);
	assert_int_equal(done_wait(&d), 0);
	h_expect_untouched(m.dev[1]);

	/* Nothing but skipped regions: success, sync and async, no I/O. */
	memset(data, 0x5a, 16 * KiB);
	assert_int_equal(dm_io_sync_vm(1, &where[1], DM_IO_WRITE, data, &bits),
			 0);
	assert_int_equal(bits, 0);
	tl_rec_init(&d);
	assert_int_equal(
		dm_io_async_vm(1, &where[3], DM_IO_WRITE, data, tl_rec_cb, &d),
		0);
	assert_int_equal(done_wait(&d), 0);
	assert_int_equal(dm_io_sync_vm(1, &where[1], DM_IO_READ, data, &bits),
			 0);
	assert_int_equal(h_byte_mismatch(data, 16 * KiB, 0x5a), -1);
	h_expect_untouched(m.dev[1]);
	dm_io_client_destroy(client);
	free(data);
}

/* ---- partial failure ---------------------------------------------------- */

static void region_past_end_fails_alone_and_file_does_not_grow(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 32 * KiB;
	char *data = h_alloc_aligned(len);
	struct dm_io_client *client = dm_io_client_create();
	int errs[NDEV];
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.client = client,
		.region_errors = errs,
	};
	sector_t past[] = {480, 512, 600, 1ull << 40};
	unsigned long bits;
	struct mirror m;
	struct tl_rec d;
	unsigned int i, k;

	assert_non_null(client);
	/* 256 KiB = 512 sectors; region 1 starts inside or beyond, ends
	 * beyond. */
	mirror_setup(env, &m, 256 * KiB, 16, len >> SECTOR_SHIFT);
	for (k = 0; k < H_NR(past); k++) {
		h_pattern(data, len, 60 + k, 0);
		m.where[1].sector = past[k];
		bits = 0;
		assert_int_equal(
			dm_io_sync_vm(NDEV, m.where, DM_IO_WRITE, data, &bits),
			-EIO);
		assert_int_equal(bits, 1ul << 1);
		expect_region(&m, 0, 60 + k, 0);
		expect_region(&m, 2, 60 + k, 0);
		h_expect_untouched(m.dev[1]);

		h_pattern(data, len, 70 + k, 0);
		memset(errs, 0x7f, sizeof(errs));
		bits = 0;
		assert_int_equal(dm_io(&req, NDEV, m.where, &bits), -EIO);
		assert_int_equal(bits, 1ul << 1);
		assert_int_equal(errs[0], 0);
		assert_int_equal(errs[1], -ENXIO);
		assert_int_equal(errs[2], 0);
		expect_region(&m, 0, 70 + k, 0);
		expect_region(&m, 2, 70 + k, 0);
		h_expect_untouched(m.dev[1]);

		h_pattern(data, len, 80 + k, 0);
		tl_rec_init(&d);
		assert_int_equal(dm_io_async_vm(NDEV, m.where, DM_IO_WRITE,
						data, tl_rec_cb, &d),
				 0);
		assert_int_equal(done_wait(&d), 1ul << 1);
		for (i = 0; i < NDEV; i += 2)
			expect_region(&m, i, 80 + k, 0);
		h_expect_untouched(m.dev[1]);
	}
	dm_io_client_destroy(client);
	free(data);
}

static void rdonly_device_write_sets_its_bit_with_erofs(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 16 * KiB;
	char *data = h_alloc_aligned(len);
	struct dm_io_client *client = dm_io_client_create();
	int errs[NDEV];
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_VMA, .ptr.vma = data},
		.client = client,
		.region_errors = errs,
	};
	unsigned long bits = 0;
	struct mirror m;
	struct tl_rec d;

	assert_non_null(client);
	mirror_setup(env, &m, 256 * KiB, 16, len >> SECTOR_SHIFT);
	h_close(env, m.bdev[1]);
	m.bdev[1] = h_open(env, m.dev[1], DM_BDEV_RDONLY);
	m.where[1].bdev = m.bdev[1];

	h_pattern(data, len, 90, 0);
	assert_int_equal(dm_io_sync_vm(NDEV, m.where, DM_IO_WRITE, data, &bits),
			 -EIO);
	assert_int_equal(bits, 1ul << 1);
	expect_region(&m, 0, 90, 0);
	expect_region(&m, 2, 90, 0);
	h_expect_untouched(m.dev[1]);

	h_pattern(data, len, 91, 0);
	memset(errs, 0x7f, sizeof(errs));
	assert_int_equal(dm_io(&req, NDEV, m.where, &bits), -EIO);
	assert_int_equal(bits, 1ul << 1);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], -EROFS);
	assert_int_equal(errs[2], 0);
	expect_region(&m, 0, 91, 0);
	h_expect_untouched(m.dev[1]);

	tl_rec_init(&d);
	assert_int_equal(dm_io_async_vm(1, &m.where[1], DM_IO_WRITE, data,
					tl_rec_cb, &d),
			 0);
	assert_int_equal(done_wait(&d), 1);
	h_expect_untouched(m.dev[1]);
	/* Reading from it is fine. */
	expect_read_back(&m, 1, m.dev[1]->seed, m.where[1].sector * 512);
	dm_io_client_destroy(client);
	free(data);
}

struct errs_seen {
	struct tl_rec d;
	int *errs;
	int seen[4];
};

static void errs_cb(unsigned long error, void *context)
{
	struct errs_seen *s = context;

	/* region_errors are written before the callback runs */
	memcpy(s->seen, s->errs, sizeof(s->seen));
	tl_rec_cb(error, &s->d);
}

static void region_errors_report_each_failure_kind(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 8 * KiB;
	char *data = h_alloc_aligned(len);
	struct dm_io_client *client = dm_io_client_create();
	struct h_dev *rodev = h_dev_new(env, 256 * KiB, 51);
	struct block_device *ro = h_open(env, rodev, DM_BDEV_RDONLY);
	const int want[4] = {0, -ENXIO, -EROFS, 0};
	int errs[4];
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.client = client,
		.region_errors = errs,
	};
	struct io_region where[4];
	struct errs_seen s = {.errs = errs};
	unsigned long bits = 0;
	struct mirror m;
	unsigned int i;

	assert_non_null(client);
	mirror_setup(env, &m, 256 * KiB, 16, len >> SECTOR_SHIFT);
	where[0] = m.where[0];				   /* fine */
	where[1] = (struct io_region){m.bdev[1], 508, 16}; /* runs past end */
	where[2] = (struct io_region){ro, 16, 16};	   /* read-only */
	where[3] = (struct io_region){m.bdev[2], 16, 0};   /* skipped */
	h_pattern(data, len, 92, 0);
	memset(errs, 0x7f, sizeof(errs));
	assert_int_equal(dm_io(&req, 4, where, &bits), -EIO);
	assert_int_equal(bits, 0x6);
	for (i = 0; i < 4; i++)
		assert_int_equal(errs[i], want[i]);
	expect_region(&m, 0, 92, 0);
	h_expect_untouched(m.dev[1]);
	h_expect_untouched(m.dev[2]);
	h_expect_untouched(rodev);

	/* Asynchronously: written before the callback runs. */
	tl_rec_init(&s.d);
	memset(errs, 0x7f, sizeof(errs));
	req.notify = (struct dm_io_notify){errs_cb, &s};
	assert_int_equal(dm_io(&req, 4, where, NULL), 0);
	assert_int_equal(done_wait(&s.d), 0x6);
	for (i = 0; i < 4; i++)
		assert_int_equal(s.seen[i], want[i]);

	/* A read past the end reports it too. */
	req.bi_opf = DM_IO_OP_READ;
	req.notify = (struct dm_io_notify){NULL, NULL};
	errs[0] = 0x7f;
	assert_int_equal(dm_io(&req, 1, &where[1], &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(errs[0], -ENXIO);
	dm_io_client_destroy(client);
	free(data);
}

static void write_to_max_regions_reports_the_highest_bit(void **state)
{
	struct h_env *env = h_env(state);
	struct io_region where[DM_IO_MAX_REGIONS];
	int errs[DM_IO_MAX_REGIONS];
	char *data = h_alloc_aligned(4 * KiB);
	struct dm_io_client *client = dm_io_client_create();
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.client = client,
		.region_errors = errs,
	};
	const unsigned int last = DM_IO_MAX_REGIONS - 1;
	unsigned long bits = 0;
	struct mirror m;
	unsigned int i;

	assert_non_null(client);
	mirror_setup(env, &m, 1 * MiB, 0, 8);
	for (i = 0; i < DM_IO_MAX_REGIONS; i++)
		where[i] = (struct io_region){m.bdev[i % NDEV],
					      8 + 8 * (i / NDEV), 8};
	where[last].sector = 2048; /* the end of a 1 MiB device */
	h_pattern(data, 4 * KiB, 93, 0);
	memset(errs, 0x7f, sizeof(errs));
	assert_int_equal(dm_io(&req, DM_IO_MAX_REGIONS, where, &bits), -EIO);
	assert_int_equal(bits, 1ul << last);
	for (i = 0; i < last; i++) {
		assert_int_equal(errs[i], 0);
		h_expect_pattern(m.dev[i % NDEV], where[i].sector * 512,
				 4 * KiB, 93, 0);
	}
	assert_int_equal(errs[last], -ENXIO);
	assert_int_equal(h_dev_file_size(m.dev[last % NDEV]), 1 * MiB);

	bits = 0;
	assert_int_equal(dm_io_sync_vm(DM_IO_MAX_REGIONS, where, DM_IO_WRITE,
				       data, &bits),
			 -EIO);
	assert_int_equal(bits, 1ul << last);
	dm_io_client_destroy(client);
	free(data);
}

static void error_bits_may_be_null(void **state)
{
	struct h_env *env = h_env(state);
	char *data = h_alloc_aligned(4 * KiB);
	struct mirror m;

	mirror_setup(env, &m, 256 * KiB, 16, 8);
	h_pattern(data, 4 * KiB, 94, 0);
	assert_int_equal(dm_io_sync_vm(NDEV, m.where, DM_IO_WRITE, data, NULL),
			 0);
	expect_region(&m, 1, 94, 0);
	m.where[1].sector = 512;
	assert_int_equal(dm_io_sync_vm(NDEV, m.where, DM_IO_WRITE, data, NULL),
			 -EIO);
	assert_int_equal(dm_io_sync_vm(1, &m.where[1], DM_IO_READ, data, NULL),
			 -EIO);
	free(data);
}

/* ---- failed reads ------------------------------------------------------- */

/*
 * A read of @len bytes at byte @off of @dev failed into @buf (pre-filled
 * with 0xaa).  Every byte is either what the device holds there or zero
 * (the failed part), and bytes beyond the device's end are zero: never
 * the stale 0xaa.
 */
static void expect_failed_read(const char *what, const char *buf, size_t len,
			       struct h_dev *dev, uint64_t off,
			       uint64_t dev_end)
{
	size_t i;

	for (i = 0; i < len; i++) {
		uint64_t pos = off + i;
		uint8_t b = (uint8_t)buf[i];

		if (b == 0)
			continue;
		if (pos < dev_end && b == h_pattern_byte(dev->seed, pos))
			continue;
		fail_msg("failed read (%s): buffer byte %zu (device byte "
			 "%llu) is %#04x, neither zero nor the device's data",
			 what, i, (unsigned long long)pos, b);
	}
}

static void failed_read_past_end_zero_fills_buffer(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 256 * KiB, 52);
	struct block_device *bdev = h_open(env, dev, 0);
	size_t len = 8 * KiB, buflen = 12 * KiB;
	char *buf = h_alloc_aligned(buflen), *got = h_alloc(buflen);
	struct page_list *pl = h_pl_alloc(3), *p;
	struct bio_vec bv[2];
	/* runs past the end; wholly beyond it */
	struct io_region regions[2] = {{bdev, 504, 16}, {bdev, 1024, 16}};
	unsigned long bits;
	struct tl_rec d;
	unsigned int k;

	bv[0] = (struct bio_vec){pl->page, DM_PAGE_SIZE, 0};
	bv[1] = (struct bio_vec){pl->next->page, DM_PAGE_SIZE, 0};
	for (k = 0; k < 2; k++) {
		struct io_region *r = &regions[k];
		uint64_t off = r->sector * 512;

		/* contiguous memory, sync */
		memset(buf, 0xaa, buflen);
		bits = 0;
		assert_int_equal(dm_io_sync_vm(1, r, DM_IO_READ, buf, &bits),
				 -EIO);
		assert_int_equal(bits, 1);
		expect_failed_read("sync vm", buf, len, dev, off, dev->size);
		/* not a byte beyond the region's share of the buffer */
		assert_int_equal(h_byte_mismatch(buf + len, buflen - len, 0xaa),
				 -1);

		/* contiguous memory, async */
		memset(buf, 0xaa, buflen);
		tl_rec_init(&d);
		assert_int_equal(
			dm_io_async_vm(1, r, DM_IO_READ, buf, tl_rec_cb, &d),
			0);
		assert_int_equal(done_wait(&d), 1);
		expect_failed_read("async vm", buf, len, dev, off, dev->size);

		/* page list at an offset */
		for (p = pl; p; p = p->next)
			memset(dm_page_address(p->page), 0xaa, DM_PAGE_SIZE);
		assert_int_equal(dm_io_sync(1, r, DM_IO_READ, pl, 512, &bits),
				 -EIO);
		h_pl_copy_out(pl, 512, got, len);
		expect_failed_read("page list", got, len, dev, off, dev->size);

		/* bio_vec */
		for (p = pl; p; p = p->next)
			memset(dm_page_address(p->page), 0xaa, DM_PAGE_SIZE);
		assert_int_equal(dm_io_sync_bvec(1, r, DM_IO_READ, bv, &bits),
				 -EIO);
		h_pl_copy_out(pl, 0, got, len);
		expect_failed_read("bvec", got, len, dev, off, dev->size);
	}
	h_expect_untouched(dev);
	dm_page_list_free(pl);
	free(buf);
	free(got);
}

static void failed_read_of_shrunk_device_zero_fills_the_rest(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 256 * KiB, 53);
	struct block_device *bdev = h_open(env, dev, 0);
	const uint64_t new_end = 128 * KiB + 2048;
	struct io_region r = {bdev, 240, 32}; /* 120 KiB .. 136 KiB */
	size_t len = 16 * KiB;
	size_t good = (size_t)(new_end - r.sector * 512);
	char *buf = h_alloc_aligned(len);
	int errs[1] = {0};
	struct dm_io_client *client = dm_io_client_create();
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = client,
		.region_errors = errs,
	};
	unsigned long bits = 0;
	struct tl_rec d;

	assert_non_null(client);
	/* The device ends under the library, after it was opened. */
	assert_int_equal(h_loop_shrink(dev, new_end), 0);
	assert_int_equal(dm_bdev_nr_sectors(bdev), 512);

	memset(buf, 0xaa, len);
	assert_int_equal(dm_io(&req, 1, &r, &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_true(errs[0] < 0);
	/* What could be read was read (a short transfer is resubmitted for
	 * the rest), the part that failed is zeroes. */
	assert_int_equal(
		h_pattern_mismatch(buf, good, dev->seed, r.sector * 512), -1);
	assert_int_equal(h_byte_mismatch(buf + good, len - good, 0), -1);

	memset(buf, 0xaa, len);
	tl_rec_init(&d);
	req.notify = (struct dm_io_notify){tl_rec_cb, &d};
	assert_int_equal(dm_io(&req, 1, &r, NULL), 0);
	assert_int_equal(done_wait(&d), 1);
	assert_int_equal(
		h_pattern_mismatch(buf, good, dev->seed, r.sector * 512), -1);
	assert_int_equal(h_byte_mismatch(buf + good, len - good, 0), -1);
	dm_io_client_destroy(client);
	free(buf);
}

/* ---- large I/O ---------------------------------------------------------- */

static void large_write_split_into_chunks_round_trip(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 8 * MiB + 12 * KiB; /* many chunks, a partial last one */
	unsigned int npages = (unsigned int)(len / DM_PAGE_SIZE);
	char *data = h_alloc_aligned(len), *got = h_alloc(len);
	struct page_list *back = h_pl_alloc(npages);
	unsigned long bits = ~0ul;
	struct mirror m;
	struct tl_rec d;
	unsigned int i;

	mirror_setup(env, &m, 10 * MiB, 8, len >> SECTOR_SHIFT);
	h_pattern(data, len, 95, 0);
	assert_int_equal(dm_io_sync_vm(NDEV, m.where, DM_IO_WRITE, data, &bits),
			 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < NDEV; i++)
		expect_region(&m, i, 95, 0);
	/* Read back into a long page list. */
	assert_int_equal(dm_io_sync(1, &m.where[1], DM_IO_READ, back, 0, &bits),
			 0);
	h_pl_copy_out(back, 0, got, len);
	assert_int_equal(h_pattern_mismatch(got, len, 95, 0), -1);

	/* Asynchronously, another pattern. */
	h_pattern(data, len, 96, 0);
	tl_rec_init(&d);
	assert_int_equal(
		dm_io_async_vm(NDEV, m.where, DM_IO_WRITE, data, tl_rec_cb, &d),
		0);
	assert_int_equal(done_wait(&d), 0);
	for (i = 0; i < NDEV; i++)
		expect_region(&m, i, 96, 0);
	memset(got, 0, len);
	assert_int_equal(dm_io_sync_vm(1, &m.where[2], DM_IO_READ, got, &bits),
			 0);
	assert_int_equal(h_pattern_mismatch(got, len, 96, 0), -1);
	dm_page_list_free(back);
	free(data);
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		H_TEST(mirror_write_page_list_to_three_devices_reads_back),
		H_TEST(mirror_write_bvec_to_three_devices_reads_back),
		H_TEST(mirror_write_vm_to_three_devices_reads_back),
		H_TEST(mirror_write_request_api_every_memory_type),
		H_TEST(page_list_offset_crossing_pages_round_trip),
		H_TEST(bvec_with_offsets_and_odd_lengths_round_trip),
		H_TEST(mirror_write_to_regions_of_one_device),
		H_TEST(zero_count_region_is_skipped),
		H_TEST(region_past_end_fails_alone_and_file_does_not_grow),
		H_TEST(rdonly_device_write_sets_its_bit_with_erofs),
		H_TEST(region_errors_report_each_failure_kind),
		H_TEST(write_to_max_regions_reports_the_highest_bit),
		H_TEST(error_bits_may_be_null),
		H_TEST(failed_read_past_end_zero_fills_buffer),
		H_TEST(failed_read_of_shrunk_device_zero_fills_the_rest),
		H_TEST(large_write_split_into_chunks_round_trip),
	};

	h_group_seed_pages = 1024;
	return H_RUN("mirror", tests, tests);
}

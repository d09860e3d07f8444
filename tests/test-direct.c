/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * O_DIRECT on block devices (design.md 1.1 "Buffers", 1.3): the default
 * for block devices; buffers the device cannot take are bounced, never
 * refused; a region the device cannot address with its logical block size
 * fails alone with -EINVAL.  Loop devices only: every test needs root.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define NDEV 3

struct direct {
	struct h_dev *dev[NDEV];
	struct block_device *bdev[NDEV];
	struct io_region where[NDEV];
};

/* Three 512-byte-block loop devices; region i at @sector + 40 * i. */
static void direct_setup(struct h_env *env, struct direct *x, uint64_t bytes,
			 sector_t sector, sector_t count)
{
	unsigned int i;

	for (i = 0; i < NDEV; i++) {
		x->dev[i] = h_loop_new(env, bytes, 60 + i, 512);
		x->bdev[i] = h_open(env, x->dev[i], 0);
		x->where[i] =
			(struct io_region){x->bdev[i], sector + 40 * i, count};
	}
}

static void expect_written(struct direct *x, uint32_t seed)
{
	unsigned int i;

	for (i = 0; i < NDEV; i++) {
		uint64_t off = x->where[i].sector * 512;
		uint64_t len = x->where[i].count * 512;

		h_expect_initial(x->dev[i], 0, off);
		h_expect_pattern(x->dev[i], off, len, seed, 0);
		h_expect_initial(x->dev[i], off + len,
				 x->dev[i]->size - off - len);
	}
}

static unsigned long async_vm(unsigned int n, struct io_region *where, int rw,
			      void *buf)
{
	struct tl_rec d;

	tl_rec_init(&d);
	assert_int_equal(dm_io_async_vm(n, where, rw, buf, tl_rec_cb, &d), 0);
	if (!tl_rec_wait(&d, 1, 30000))
		fail_msg("no callback within 30 s");
	return atomic_load(&d.bits);
}

static void unaligned_vm_buffer_is_bounced_round_trip(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 64 * KiB;
	char *wmem = h_alloc_aligned(len + DM_PAGE_SIZE);
	char *rmem = h_alloc_aligned(len + DM_PAGE_SIZE);
	char *wbuf = wmem + 1, *rbuf = rmem + 3; /* as malloc() + 1 might */
	unsigned long bits = ~0ul;
	struct direct x;
	unsigned int i;

	direct_setup(env, &x, 1 * MiB, 8, len >> SECTOR_SHIFT);
	h_pattern(wbuf, len, 61, 0);
	assert_int_equal(dm_io_sync_vm(NDEV, x.where, DM_IO_WRITE, wbuf, &bits),
			 0);
	assert_int_equal(bits, 0);
	expect_written(&x, 61);
	for (i = 0; i < NDEV; i++) {
		memset(rmem, 0xaa, len + DM_PAGE_SIZE);
		assert_int_equal(
			dm_io_sync_vm(1, &x.where[i], DM_IO_READ, rbuf, &bits),
			0);
		assert_int_equal(h_pattern_mismatch(rbuf, len, 61, 0), -1);
		/* the bounce copies back exactly the region's bytes */
		assert_int_equal(h_byte_mismatch(rmem, 3, 0xaa), -1);
		assert_int_equal(
			h_byte_mismatch(rbuf + len, DM_PAGE_SIZE - 3, 0xaa),
			-1);
	}

	/* asynchronously */
	h_pattern(wbuf, len, 62, 0);
	assert_int_equal(async_vm(NDEV, x.where, DM_IO_WRITE, wbuf), 0);
	expect_written(&x, 62);
	memset(rmem, 0, len + DM_PAGE_SIZE);
	assert_int_equal(async_vm(1, &x.where[2], DM_IO_READ, rbuf), 0);
	assert_int_equal(h_pattern_mismatch(rbuf, len, 62, 0), -1);
	free(wmem);
	free(rmem);
}

static void page_list_offset_100_is_bounced_round_trip(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 16 * KiB;
	struct page_list *pl = h_pl_alloc(5), *back = h_pl_alloc(5);
	char *data = h_alloc(len), *got = h_alloc(len);
	unsigned long bits = ~0ul;
	struct direct x;

	direct_setup(env, &x, 1 * MiB, 8, len >> SECTOR_SHIFT);
	h_pattern(data, len, 63, 0);
	h_pl_fill(pl, 100, data, len);
	assert_int_equal(dm_io_sync(NDEV, x.where, DM_IO_WRITE, pl, 100, &bits),
			 0);
	assert_int_equal(bits, 0);
	expect_written(&x, 63);
	assert_int_equal(
		dm_io_sync(1, &x.where[1], DM_IO_READ, back, 100, &bits), 0);
	h_pl_copy_out(back, 100, got, len);
	assert_memory_equal(got, data, len);
	/* and read into a list at offset 0: aligned, no bounce needed */
	assert_int_equal(dm_io_sync(1, &x.where[2], DM_IO_READ, back, 0, &bits),
			 0);
	h_pl_copy_out(back, 0, got, len);
	assert_memory_equal(got, data, len);
	dm_page_list_free(pl);
	dm_page_list_free(back);
	free(data);
	free(got);
}

static void misaligned_region_on_4k_device_fails_alone_with_einval(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *d4k = h_loop_new(env, 1 * MiB, 64, 4096);
	struct h_dev *d512 = h_loop_new(env, 1 * MiB, 65, 512);
	struct block_device *b4k = h_open(env, d4k, 0);
	struct block_device *b512 = h_open(env, d512, 0);
	size_t len = 4 * KiB;
	char *data = h_alloc_aligned(len);
	struct dm_io_client *client = dm_io_client_create();
	int errs[4];
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.client = client,
		.region_errors = errs,
	};
	struct io_region where[4] = {
		{b4k, 8, 8},   /* 4096-aligned: fine */
		{b4k, 33, 8},  /* 512-aligned only */
		{b512, 1, 8},  /* fine on a 512-byte device */
		{b4k, 200, 8}, /* fine */
	};
	unsigned long bits = 0;

	assert_non_null(client);
	assert_int_equal(dm_bdev_logical_block_size(b4k), 4096);
	h_pattern(data, len, 66, 0);
	memset(errs, 0x7f, sizeof(errs));
	assert_int_equal(dm_io(&req, 4, where, &bits), -EIO);
	assert_int_equal(bits, 1ul << 1);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], -EINVAL);
	assert_int_equal(errs[2], 0);
	assert_int_equal(errs[3], 0);
	h_expect_pattern(d4k, 8 * 512, len, 66, 0);
	h_expect_pattern(d4k, 200 * 512, len, 66, 0);
	h_expect_pattern(d512, 1 * 512, len, 66, 0);
	h_expect_initial(d4k, 16 * 512, (200 - 16) * 512); /* 33..41 too */

	/* The seed API says the same with its bits. */
	h_pattern(data, len, 67, 0);
	bits = 0;
	assert_int_equal(dm_io_sync_vm(4, where, DM_IO_WRITE, data, &bits),
			 -EIO);
	assert_int_equal(bits, 1ul << 1);
	h_expect_initial(d4k, 16 * 512, (200 - 16) * 512);
	h_expect_pattern(d4k, 8 * 512, len, 67, 0);

	/* A length that is not whole blocks fails the same way. */
	where[1] = (struct io_region){b4k, 64, 1};
	memset(errs, 0x7f, sizeof(errs));
	assert_int_equal(dm_io(&req, 2, where, &bits), -EIO);
	assert_int_equal(bits, 1ul << 1);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], -EINVAL);
	h_expect_initial(d4k, 16 * 512, (200 - 16) * 512);
	dm_io_client_destroy(client);
	free(data);
}

static void misaligned_read_on_4k_device_zero_fills(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *d4k = h_loop_new(env, 1 * MiB, 68, 4096);
	struct block_device *b4k = h_open(env, d4k, 0);
	struct io_region r = {b4k, 33, 8};
	char *buf = h_alloc_aligned(8 * KiB);
	unsigned long bits = 0;
	long bad;

	memset(buf, 0xaa, 8 * KiB);
	assert_int_equal(dm_io_sync_vm(1, &r, DM_IO_READ, buf, &bits), -EIO);
	assert_int_equal(bits, 1);
	bad = h_byte_mismatch(buf, 4 * KiB, 0);
	if (bad >= 0)
		fail_msg("failed read left byte %ld as %#04x, not zero", bad,
			 (uint8_t)buf[bad]);
	assert_int_equal(h_byte_mismatch(buf + 4 * KiB, 4 * KiB, 0xaa), -1);
	free(buf);
}

static void buffered_flag_lifts_alignment_on_block_device(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *d4k = h_loop_new(env, 1 * MiB, 69, 4096);
	struct block_device *b4k = h_open(env, d4k, DM_BDEV_BUFFERED);
	struct io_region r = {b4k, 33, 3};
	char *data = h_alloc(1536 + 1) + 1, *got = h_alloc(1536);
	unsigned long bits = ~0ul;

	h_pattern(data, 1536, 70, 0);
	assert_int_equal(dm_io_sync_vm(1, &r, DM_IO_WRITE, data, &bits), 0);
	assert_int_equal(bits, 0);
	assert_int_equal(dm_io_sync_vm(1, &r, DM_IO_READ, got, &bits), 0);
	assert_memory_equal(got, data, 1536);
	h_expect_initial(d4k, 0, 33 * 512);
	h_expect_pattern(d4k, 33 * 512, 1536, 70, 0);
	h_expect_initial(d4k, 36 * 512, 1 * MiB - 36 * 512);
	free(data - 1);
	free(got);
}

static void block_device_writes_are_direct_by_default(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_loop_new(env, 1 * MiB, 71, 512);
	struct block_device *def = h_open(env, dev, 0);
	struct block_device *dir = h_open(env, dev, DM_BDEV_DIRECT);
	struct io_region r[2] = {{def, 64, 16}, {dir, 128, 16}};
	char *data = h_alloc_aligned(8 * KiB), *got = h_alloc(8 * KiB);
	unsigned long bits = ~0ul;

	h_pattern(data, 8 * KiB, 72, 0);
	assert_int_equal(dm_io_sync_vm(2, r, DM_IO_WRITE, data, &bits), 0);
	assert_int_equal(bits, 0);
	/* No fsync of the block device: bytes written through its page
	 * cache would not be in the backing file yet.  Direct I/O is. */
	assert_int_equal(pread(dev->fd, got, 8 * KiB, 64 * 512), 8 * KiB);
	assert_memory_equal(got, data, 8 * KiB);
	assert_int_equal(pread(dev->fd, got, 8 * KiB, 128 * 512), 8 * KiB);
	assert_memory_equal(got, data, 8 * KiB);
	free(data);
	free(got);
}

static void mirror_to_devices_with_different_limits(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev[3];
	struct block_device *bdev[3];
	struct io_region where[3];
	size_t len = 40 * KiB;
	char *mem = h_alloc_aligned(len + DM_PAGE_SIZE), *wbuf = mem + 5;
	unsigned long bits = ~0ul;
	unsigned int i;

	dev[0] = h_loop_new(env, 1 * MiB, 73, 512);
	dev[1] = h_loop_new(env, 1 * MiB, 74, 4096);
	dev[2] = h_file_new(env, 1 * MiB, 75);
	for (i = 0; i < 3; i++) {
		bdev[i] = h_open(env, dev[i], 0);
		where[i] = (struct io_region){bdev[i], 64 + 8 * i, len >> 9};
	}
	/* an unaligned buffer: bounced for the loops, not for the file */
	h_pattern(wbuf, len, 76, 0);
	assert_int_equal(dm_io_sync_vm(3, where, DM_IO_WRITE, wbuf, &bits), 0);
	assert_int_equal(bits, 0);
	for (i = 0; i < 3; i++) {
		h_expect_initial(dev[i], 0, where[i].sector * 512);
		h_expect_pattern(dev[i], where[i].sector * 512, len, 76, 0);
		h_expect_initial(dev[i], where[i].sector * 512 + len,
				 1 * MiB - where[i].sector * 512 - len);
	}
	/* and from an aligned one */
	wbuf = mem;
	h_pattern(wbuf, len, 77, 0);
	assert_int_equal(dm_io_sync_vm(3, where, DM_IO_WRITE, wbuf, &bits), 0);
	for (i = 0; i < 3; i++)
		h_expect_pattern(dev[i], where[i].sector * 512, len, 77, 0);
	free(mem);
}

static void large_unaligned_write_is_bounced_in_pieces(void **state)
{
	struct h_env *env = h_env(state);
	size_t len = 8 * MiB + 4 * KiB;
	char *wmem = h_alloc_aligned(len + DM_PAGE_SIZE), *wbuf = wmem + 7;
	char *rmem = h_alloc_aligned(len + DM_PAGE_SIZE), *rbuf = rmem + 9;
	unsigned long bits = ~0ul;
	struct direct x;

	direct_setup(env, &x, 10 * MiB, 8, len >> SECTOR_SHIFT);
	h_pattern(wbuf, len, 78, 0);
	assert_int_equal(dm_io_sync_vm(NDEV, x.where, DM_IO_WRITE, wbuf, &bits),
			 0);
	assert_int_equal(bits, 0);
	expect_written(&x, 78);
	assert_int_equal(dm_io_sync_vm(1, &x.where[0], DM_IO_READ, rbuf, &bits),
			 0);
	assert_int_equal(h_pattern_mismatch(rbuf, len, 78, 0), -1);

	h_pattern(wbuf, len, 79, 0);
	assert_int_equal(async_vm(NDEV, x.where, DM_IO_WRITE, wbuf), 0);
	expect_written(&x, 79);
	memset(rmem, 0, len + DM_PAGE_SIZE);
	assert_int_equal(async_vm(1, &x.where[1], DM_IO_READ, rbuf), 0);
	assert_int_equal(h_pattern_mismatch(rbuf, len, 79, 0), -1);
	free(wmem);
	free(rmem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		H_TEST(unaligned_vm_buffer_is_bounced_round_trip),
		H_TEST(page_list_offset_100_is_bounced_round_trip),
		H_TEST(misaligned_region_on_4k_device_fails_alone_with_einval),
		H_TEST(misaligned_read_on_4k_device_zero_fills),
		H_TEST(buffered_flag_lifts_alignment_on_block_device),
		H_TEST(block_device_writes_are_direct_by_default),
		H_TEST(mirror_to_devices_with_different_limits),
		H_TEST(large_unaligned_write_is_bounced_in_pieces),
	};

	h_group_seed_pages = 1024;
	return h_run("direct", NULL, 0, tests, H_NR(tests));
}

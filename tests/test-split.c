/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Splitting (issue 3): requests are cut by each device's own transfer
 * limit, read when the device is opened (a loop device whose
 * queue/max_sectors_kb was lowered through sysfs), and by IOV_MAX
 * segments (page lists and bio_vec arrays of more than IOV_MAX entries),
 * and still write and read exactly the right bytes.
 *
 * White box: the chunk trace (trace.h) shows the size of each chunk and
 * the number of iovec segments in it.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "trace.h"

static struct dm_io_client *cur_client;
static struct t_trace *cur_trace;

static int split_teardown(void **state)
{
	t_trace_free(cur_trace, cur_client);
	dm_io_client_destroy(cur_client);
	cur_trace = NULL;
	cur_client = NULL;
	return h_test_teardown(state);
}

#define S_TEST(f)                                                              \
	cmocka_unit_test_setup_teardown(f, h_test_setup, split_teardown)

static struct t_trace *traced_client(struct dm_io_client **client)
{
	*client = cur_client = dm_io_client_create();
	if (!*client)
		fail_msg("dm_io_client_create: %s", strerror(errno));
	cur_trace = t_trace_new(*client);
	assert_non_null(cur_trace);
	return cur_trace;
}

static struct tl_rec rec; /* outlives a test that fails */

/* Chunks of @op for @region: each at most @max bytes, adding up to @len,
 * at least @min of them. */
static void expect_chunks(struct t_trace *t, enum dmi_chunk_op op,
			  unsigned int region, uint64_t max, uint64_t len,
			  unsigned int min)
{
	uint64_t sum = 0;
	unsigned int i, n = 0;

	for (i = 0; i < t->n; i++) {
		const struct t_event *e = &t->ev[i];

		if (e->ev != DMI_TRACE_END || e->op != op ||
		    e->region != region)
			continue;
		n++;
		sum += e->len;
		if (e->len > max || e->res) {
			t_dump(t);
			fail_msg("a %s chunk of region %u: %llu bytes, res %d "
				 "(the limit is %llu)",
				 t_op_name(op), region,
				 (unsigned long long)e->len, e->res,
				 (unsigned long long)max);
		}
	}
	if (sum != len || n < min) {
		t_dump(t);
		fail_msg("region %u: %u %s chunks of %llu bytes in all, "
			 "expected %u or more of %llu",
			 region, n, t_op_name(op), (unsigned long long)sum, min,
			 (unsigned long long)len);
	}
}

/* ---- a lowered max_sectors_kb ------------------------------------------- */

static void lowered_max_sectors_kb_splits_a_mirrored_write(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *small = h_loop_new(env, 4 * MiB, 71, 512);
	struct h_dev *loop = h_loop_new(env, 4 * MiB, 72, 512);
	struct h_dev *file = h_file_new(env, 4 * MiB, 73);
	size_t len = 3 * MiB + 4 * KiB;
	char *data = h_alloc_aligned(len), *got = h_alloc_aligned(len);
	struct page_list *pl = h_pl_alloc((unsigned int)(len / DM_PAGE_SIZE));
	struct dm_io_client *client;
	struct t_trace *t = traced_client(&client);
	struct dm_bdev_info info;
	struct io_region where[3];
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.client = client,
	};
	unsigned long bits = ~0ul;
	unsigned int i;

	/* After the attach, before the library opens it. */
	h_loop_set_queue_attr(small, "max_sectors_kb", "8");
	where[0] = (struct io_region){h_open(env, small, 0), 8, len >> 9};
	where[1] = (struct io_region){h_open(env, loop, 0), 16, len >> 9};
	where[2] = (struct io_region){h_open(env, file, 0), 24, len >> 9};
	assert_int_equal(dm_bdev_get_info(where[0].bdev, &info), 0);
	assert_int_equal(info.max_transfer, 8 * KiB);
	assert_int_equal(dm_bdev_get_info(where[1].bdev, &info), 0);
	assert_true(info.max_transfer > 8 * KiB);

	h_pattern(data, len, 74, 0);
	assert_int_equal(dm_io(&req, 3, where, &bits), 0);
	assert_int_equal(bits, 0);
	expect_chunks(t, DMI_CHUNK_WRITE, 0, 8 * KiB, len, len / (8 * KiB));
	expect_chunks(t, DMI_CHUNK_WRITE, 1, info.max_transfer, len, 1);
	h_expect_initial(small, 0, 8 * 512);
	h_expect_pattern(small, 8 * 512, len, 74, 0);
	h_expect_initial(small, 8 * 512 + len, small->size - 8 * 512 - len);
	h_expect_pattern(loop, 16 * 512, len, 74, 0);
	h_expect_pattern(file, 24 * 512, len, 74, 0);

	/* Read back from the small device, contiguous and as pages. */
	t_trace_reset(t);
	req.bi_opf = DM_IO_OP_READ;
	req.mem.ptr.addr = got;
	memset(got, 0, len);
	assert_int_equal(dm_io(&req, 1, &where[0], &bits), 0);
	assert_int_equal(h_pattern_mismatch(got, len, 74, 0), -1);
	expect_chunks(t, DMI_CHUNK_READ, 0, 8 * KiB, len, len / (8 * KiB));
	req.mem = (struct dm_io_memory){.type = DM_IO_PAGE_LIST, .ptr.pl = pl};
	assert_int_equal(dm_io(&req, 1, &where[0], &bits), 0);
	memset(got, 0, len);
	h_pl_copy_out(pl, 0, got, len);
	assert_int_equal(h_pattern_mismatch(got, len, 74, 0), -1);

	/* Asynchronously, another pattern, from the page list. */
	h_pattern(data, len, 75, 0);
	h_pl_fill(pl, 0, data, len);
	req.bi_opf = DM_IO_OP_WRITE;
	req.notify = (struct dm_io_notify){tl_rec_cb, &rec};
	tl_rec_init(&rec);
	assert_int_equal(dm_io(&req, 3, where, NULL), 0);
	assert_true(tl_rec_wait(&rec, 1, 30000));
	assert_int_equal(atomic_load(&rec.bits), 0);
	for (i = 0; i < 3; i++) {
		struct h_dev *dev = i == 0 ? small : i == 1 ? loop : file;

		h_expect_pattern(dev, where[i].sector * 512, len, 75, 0);
	}
	dm_page_list_free(pl);
	free(data);
	free(got);
}

/* ---- more than IOV_MAX segments ----------------------------------------- */

static int by_address_down(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)dm_page_address(*(struct page *const *)a);
	uintptr_t y = (uintptr_t)dm_page_address(*(struct page *const *)b);

	return x < y ? 1 : x > y ? -1 : 0;
}

/* A page list of @nr pages in descending address order: no two neighbours
 * touch, so no segments can merge. */
static struct page_list *scattered_pl(unsigned int nr)
{
	struct page_list *pl = h_pl_alloc(nr), *p;
	struct page **pages = h_alloc(nr * sizeof(*pages));
	unsigned int i;

	for (i = 0, p = pl; p; p = p->next)
		pages[i++] = p->page;
	qsort(pages, nr, sizeof(*pages), by_address_down);
	for (i = 0, p = pl; p; p = p->next)
		p->page = pages[i++];
	free(pages);
	return pl;
}

/* No chunk has more than IOV_MAX segments, unless it is bounced (then one
 * buffer goes to the kernel); returns the largest count seen. */
static unsigned int max_segments(struct t_trace *t)
{
	unsigned int i, max = 0;

	for (i = 0; i < t->n; i++) {
		const struct t_event *e = &t->ev[i];

		if (e->bounced)
			continue;
		if (e->niov > IOV_MAX) {
			t_dump(t);
			fail_msg("event %u: a chunk of %u segments (IOV_MAX is "
				 "%d)",
				 i, e->niov, IOV_MAX);
		}
		if (e->niov > max)
			max = e->niov;
	}
	return max;
}

static void page_list_longer_than_iov_max_round_trip(void **state)
{
	struct h_env *env = h_env(state);
	const unsigned int nr = 1100;
	struct page_list *pl = scattered_pl(nr), *back = scattered_pl(nr);
	struct h_dev *d0 = h_dev_new(env, 10 * MiB, 81);
	struct h_dev *d1 = h_dev_new(env, 10 * MiB, 82);
	struct dm_io_client *client;
	struct t_trace *t = traced_client(&client);
	unsigned int offsets[2] = {0, 512}, k;
	char *data = h_alloc((size_t)nr * DM_PAGE_SIZE);
	char *got = h_alloc((size_t)nr * DM_PAGE_SIZE);
	struct io_region where[2];
	unsigned long bits = ~0ul;

	assert_true(nr > IOV_MAX);
	where[0].bdev = h_open(env, d0, 0);
	where[1].bdev = h_open(env, d1, 0);
	for (k = 0; k < 2; k++) {
		size_t len = (size_t)nr * DM_PAGE_SIZE - offsets[k];
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_PAGE_LIST,
				.offset = offsets[k],
				.ptr.pl = pl},
			.client = client,
		};

		where[0].sector = 8 + k;
		where[1].sector = 4096 + 2 * k;
		where[0].count = where[1].count = len >> SECTOR_SHIFT;
		h_pattern(data, len, 83 + k, 0);
		h_pl_fill(pl, offsets[k], data, len);
		t_trace_reset(t);
		assert_int_equal(dm_io(&req, 2, where, &bits), 0);
		assert_int_equal(bits, 0);
		h_expect_pattern(d0, where[0].sector * 512, len, 83 + k, 0);
		h_expect_pattern(d1, where[1].sector * 512, len, 83 + k, 0);

		req.bi_opf = DM_IO_OP_READ;
		req.mem.ptr.pl = back;
		assert_int_equal(dm_io(&req, 1, &where[1], &bits), 0);
		memset(got, 0, len);
		h_pl_copy_out(back, offsets[k], got, len);
		assert_int_equal(h_pattern_mismatch(got, len, 83 + k, 0), -1);
		max_segments(t);
	}
	dm_page_list_free(pl);
	dm_page_list_free(back);
	free(data);
	free(got);
}

/* 2100 entries of 512 bytes, each in a page of its own: a 1 MiB piece
 * would need 2048 segments, so IOV_MAX cuts it. */
#define NR_BV 2100

static void bvec_of_more_than_iov_max_segments_cut_at_iov_max(void **state)
{
	struct h_env *env = h_env(state);
	struct page_list *pl = scattered_pl(NR_BV), *bpl = scattered_pl(NR_BV);
	struct bio_vec *bv = h_alloc(NR_BV * sizeof(*bv));
	struct bio_vec *bback = h_alloc(NR_BV * sizeof(*bv));
	struct h_dev *d0 = h_dev_new(env, 2 * MiB, 91);
	struct h_dev *d1 = h_dev_new(env, 2 * MiB, 92);
	size_t len = NR_BV * 512;
	char *data = h_alloc(len), *got = h_alloc(len);
	struct dm_io_client *client;
	struct t_trace *t = traced_client(&client);
	struct io_region where[2];
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_BVEC, .ptr.bvec = bv},
		.client = client,
	};
	unsigned long bits = ~0ul;
	struct page_list *p, *q;
	unsigned int i, max;
	bool bounced = false;

	for (i = 0, p = pl, q = bpl; i < NR_BV; i++, p = p->next, q = q->next) {
		unsigned int off = (i % 8) * 512;

		bv[i] = (struct bio_vec){p->page, 512, off};
		bback[i] = (struct bio_vec){q->page, 512, off};
	}
	h_pattern(data, len, 93, 0);
	for (i = 0; i < NR_BV; i++)
		memcpy((char *)dm_page_address(bv[i].bv_page) + bv[i].bv_offset,
		       data + i * 512, 512);
	where[0] = (struct io_region){h_open(env, d0, 0), 8, len >> 9};
	where[1] = (struct io_region){h_open(env, d1, 0), 64, len >> 9};
	assert_int_equal(dm_io(&req, 2, where, &bits), 0);
	assert_int_equal(bits, 0);
	h_expect_pattern(d0, 8 * 512, len, 93, 0);
	h_expect_pattern(d1, 64 * 512, len, 93, 0);

	req.bi_opf = DM_IO_OP_READ;
	req.mem.ptr.bvec = bback;
	assert_int_equal(dm_io(&req, 1, &where[0], &bits), 0);
	for (i = 0; i < NR_BV; i++)
		memcpy(got + i * 512,
		       (char *)dm_page_address(bback[i].bv_page) +
			       bback[i].bv_offset,
		       512);
	assert_int_equal(h_pattern_mismatch(got, len, 93, 0), -1);

	max = max_segments(t);
	for (i = 0; i < t->n; i++)
		bounced |= t->ev[i].bounced;
	/* Unless the device made us bounce, some chunk went out with
	 * exactly IOV_MAX segments: the cut, not the transfer limit. */
	if (!bounced)
		assert_int_equal(max, IOV_MAX);
	else
		print_message("note: %s bounces these buffers\n", d0->path);
	dm_page_list_free(pl);
	dm_page_list_free(bpl);
	free(bv);
	free(bback);
	free(data);
	free(got);
}

int main(void)
{
	const struct CMUnitTest file_tests[] = {
		S_TEST(page_list_longer_than_iov_max_round_trip),
		S_TEST(bvec_of_more_than_iov_max_segments_cut_at_iov_max),
	};
	const struct CMUnitTest loop_tests[] = {
		S_TEST(lowered_max_sectors_kb_splits_a_mirrored_write),
		S_TEST(page_list_longer_than_iov_max_round_trip),
		S_TEST(bvec_of_more_than_iov_max_segments_cut_at_iov_max),
	};

	return H_RUN("split", file_tests, loop_tests);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NBD exports as devices (issue 5, design.md 1.3): real nbdkit servers on
 * Unix sockets, started by each test and stopped by its teardown whether it
 * passed or not.  The memory plugin as a plain leg (write, read, flush,
 * trim, write-zeroes, splitting, page lists and bio_vecs); the error filter
 * on one leg of a mirror; many requests in flight through the delay filter;
 * a server killed mid-write, a server that stops answering (SIGSTOP, the
 * pause filter) against the device timeout; TLS with a PSK file; one
 * request over a file, a loop device and two exports; opening a URI with no
 * server; fault: wrapped around an export; the server's block-size limits
 * and errnos; slow servers, busy devices, callbacks on the export's thread.
 *
 * Without nbdkit (or in a build without libnbd) the tests are skipped with
 * a printed reason (the one that needs no server still runs).  Callbacks run on
 * library threads: they only record what they saw, in static storage (a failed
 * test may leave I/O behind it that completes during teardown), and the test
 * thread checks it.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../harness.h"
#include "nbdkit.h"

#define EXPORT_SIZE (64 * MiB)
#define MEMORY	    "memory", "size=64M"
#define SERVER(...) start_server((const char *const[]){__VA_ARGS__, NULL})

static struct dm_io_client *client; /* the test's own, made by setup */
static unsigned int nbd_skips;
static bool lib_has_nbd = true;

/* ---- fixtures and skips ------------------------------------------------- */

static void skip_test(const char *why)
{
	nbd_skips++;
	print_message("SKIP: %s\n", why);
	skip();
}

static void need_library(void)
{
	if (!lib_has_nbd)
		skip_test("libdmio was built without libnbd (NBD URIs give "
			  "EPROTONOSUPPORT)");
}

/* The environment of a test that needs nbdkit. */
static struct h_env *nbd_env(void **state)
{
	char why[256];

	need_library();
	if (!nbdkit_available(why, sizeof(why)))
		skip_test(why);
	return h_env(state);
}

static void need_filter(const char *filter)
{
	char why[128];

	if (!nbdkit_have_filter(filter)) {
		snprintf(why, sizeof(why), "nbdkit has no %s filter", filter);
		skip_test(why);
	}
}

static int nbd_setup(void **state)
{
	h_test_setup(state);
	client = dm_io_client_create();
	if (!client) {
		fprintf(stderr, "dm_io_client_create: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Whatever a failed test left in flight drains first (a stopped server is
 * woken; a silent one times out), then the devices close, then the
 * servers stop: nbdkit waits for its clients to hang up before it exits.
 */
static int nbd_teardown(void **state)
{
	int ret = 0;

	nbdkit_sigcont_all();
	dm_io_client_destroy(client);
	client = NULL;
	if (h_test_teardown(state))
		ret = -1;
	if (nbdkit_stop_all())
		ret = -1;
	return ret;
}

#define NBD_TEST(f) cmocka_unit_test_setup_teardown(f, nbd_setup, nbd_teardown)

/* nbdkit with @args (NULL-terminated); skips when a filter is missing. */
static struct nbdkit *start_server(const char *const *args)
{
	char why[512];
	struct nbdkit *s;
	const char *const *a;

	for (a = args; *a; a++)
		if (!strncmp(*a, "--filter=", 9))
			need_filter(*a + 9);
	s = nbdkit_start(args, why, sizeof(why));
	if (!s)
		fail_msg("starting nbdkit: %s", why);
	return s;
}

static struct block_device *open_nbd(struct h_env *env, const struct nbdkit *s)
{
	return h_open_spec(env, s->uri, 0);
}

/* ---- I/O through the test's client -------------------------------------- */

static int io(unsigned int opf, void *buf, unsigned int n,
	      struct io_region *where, int *errs, unsigned long *bits)
{
	struct dm_io_request req = {
		.bi_opf = opf,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = client,
		.region_errors = errs,
	};

	return dm_io(&req, n, where, bits);
}

/* A synchronous request that must succeed on every region. */
static void io_ok(unsigned int opf, void *buf, unsigned int n,
		  struct io_region *where)
{
	unsigned long bits = ~0ul;
	int errs[DM_IO_MAX_REGIONS], ret;
	unsigned int i;

	for (i = 0; i < n; i++)
		errs[i] = 1;
	ret = io(opf, buf, n, where, errs, &bits);
	if (ret || bits)
		fail_msg("dm_io(op %#x, %u regions) = %d, bits %#lx, first "
			 "errno %d",
			 opf, n, ret, bits, errs[0]);
	for (i = 0; i < n; i++)
		assert_int_equal(errs[i], 0);
}

static void write_pattern(struct block_device *b, sector_t sector, size_t len,
			  uint32_t seed)
{
	char *buf = h_alloc(len);
	struct io_region r = {b, sector, len >> SECTOR_SHIFT};

	h_pattern(buf, len, seed, 0);
	io_ok(DM_IO_OP_WRITE, buf, 1, &r);
	free(buf);
}

/* Read [@sector, +@len) through the library; it must hold
 * h_pattern(@seed, @pos...), or zeroes when @zero.  @line: the caller's. */
static void expect_read(int line, struct block_device *b, sector_t sector,
			size_t len, bool zero, uint32_t seed, uint64_t pos)
{
	char *buf = h_alloc(len);
	struct io_region r = {b, sector, len >> SECTOR_SHIFT};
	long bad;

	memset(buf, 0xaa, len);
	io_ok(DM_IO_OP_READ, buf, 1, &r);
	bad = zero ? h_byte_mismatch(buf, len, 0)
		   : h_pattern_mismatch(buf, len, seed, pos);
	if (bad >= 0) {
		uint8_t got = (uint8_t)buf[bad];

		free(buf);
		fail_msg("line %d: %s: byte %ld of the %zu read at sector %llu "
			 "is %#04x, expected %#04x",
			 line, dm_bdev_name(b), bad, len,
			 (unsigned long long)sector, got,
			 zero ? 0 : h_pattern_byte(seed, pos + (uint64_t)bad));
	}
	free(buf);
}

#define expect_pattern(b, sector, len, seed, pos)                              \
	expect_read(__LINE__, b, sector, len, false, seed, pos)
#define expect_zero(b, sector, len)                                            \
	expect_read(__LINE__, b, sector, len, true, 0, 0)

static bool conn_errno(int e)
{
	return e == -ECONNRESET || e == -EIO;
}

/* ---- asynchronous requests ---------------------------------------------- */

struct waiter {
	struct tl_rec rec;
	int errs[8];
};

static void submit(struct waiter *w, unsigned int opf, void *buf,
		   unsigned int n, struct io_region *where)
{
	struct dm_io_request req = {
		.bi_opf = opf,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.notify = {tl_rec_cb, &w->rec},
		.client = client,
		.region_errors = w->errs,
	};
	unsigned int i;
	int ret;

	assert_true(n <= 8);
	tl_rec_init(&w->rec);
	for (i = 0; i < 8; i++)
		w->errs[i] = 1;
	ret = dm_io(&req, n, where, NULL);
	if (ret)
		fail_msg("async dm_io refused: %s", strerror(-ret));
}

/* Wait at most @ms for the callback; its bits. */
static unsigned long waiter_wait(struct waiter *w, unsigned int ms)
{
	if (!tl_rec_wait(&w->rec, 1, ms))
		fail_msg("no callback within %u ms: a request hangs", ms);
	return atomic_load(&w->rec.bits);
}

/* The callback ran exactly once (give a second call a moment to show). */
static void waiter_once(struct waiter *w)
{
	h_sleep_ms(20);
	assert_int_equal(atomic_load(&w->rec.calls), 1);
}

/* ---- the memory plugin as a plain leg ----------------------------------- */

static void memory_export_plain_leg(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	struct block_device *b = open_nbd(env, s);
	struct dm_bdev_info info;
	size_t len = 256 * KiB;
	sector_t at = 2048, n = len >> SECTOR_SHIFT;
	struct io_region r;

	assert_int_equal(dm_bdev_get_info(b, &info), 0);
	assert_string_equal(info.kind, "nbd");
	assert_int_equal(info.nr_sectors, EXPORT_SIZE >> SECTOR_SHIFT);
	assert_int_equal(dm_bdev_nr_sectors(b), EXPORT_SIZE >> SECTOR_SHIFT);
	assert_int_equal(info.logical_block_size, 512);
	assert_int_equal(dm_bdev_logical_block_size(b), 512);
	assert_string_equal(dm_bdev_name(b), s->uri);
	assert_false(info.flags & DM_BDEV_RDONLY);
	assert_true(info.max_transfer >= 64 * KiB);
	assert_true(info.max_transfer <= 64 * MiB);
	assert_true(info.discard_max > 0); /* the memory plugin can trim */

	/* A fresh export reads as zeroes; writes read back. */
	expect_zero(b, at, len);
	write_pattern(b, at, len, 1);
	expect_pattern(b, at, len, 1, 0);
	expect_zero(b, 0, at << SECTOR_SHIFT);
	expect_zero(b, at + n, 64 * KiB);

	/* Flush: the region names the device, count 0 or not. */
	r = (struct io_region){b, 0, 0};
	io_ok(DM_IO_OP_FLUSH, NULL, 1, &r);
	r = (struct io_region){b, at, n};
	io_ok(DM_IO_OP_FLUSH, NULL, 1, &r);
	/* A FUA write and a PREFLUSH write land like any other. */
	{
		char *buf = h_alloc(8 * KiB);

		h_pattern(buf, 8 * KiB, 2, 0);
		r = (struct io_region){b, at + n, 16};
		io_ok(DM_IO_OP_WRITE | DM_IO_FUA, buf, 1, &r);
		h_pattern(buf, 8 * KiB, 3, 0);
		r = (struct io_region){b, at + n + 16, 16};
		io_ok(DM_IO_OP_WRITE | DM_IO_PREFLUSH, buf, 1, &r);
		free(buf);
		expect_pattern(b, at + n, 8 * KiB, 2, 0);
		expect_pattern(b, at + n + 16, 8 * KiB, 3, 0);
	}

	/* Trim 64 KiB inside the data: it reads as zeroes, the rest stays. */
	r = (struct io_region){b, at + 32, 128};
	io_ok(DM_IO_OP_DISCARD, NULL, 1, &r);
	expect_pattern(b, at, 16 * KiB, 1, 0);
	expect_zero(b, at + 32, 64 * KiB);
	expect_pattern(b, at + 160, len - 80 * KiB, 1, 80 * KiB);

	/* Write-zeroes 32 KiB further on: zeroes there, the rest stays. */
	r = (struct io_region){b, at + 200, 64};
	io_ok(DM_IO_OP_WRITE_ZEROES, NULL, 1, &r);
	expect_pattern(b, at + 160, 40 * 512, 1, 160 * 512);
	expect_zero(b, at + 200, 32 * KiB);
	expect_pattern(b, at + 264, len - 264 * 512, 1, 264 * 512);

	/* The last sector of the export, and one past it. */
	{
		unsigned long bits = 0;
		char buf[512];
		int err = 0;

		h_pattern(buf, 512, 4, 0);
		r = (struct io_region){b, (EXPORT_SIZE >> SECTOR_SHIFT) - 1, 1};
		io_ok(DM_IO_OP_WRITE, buf, 1, &r);
		expect_pattern(b, r.sector, 512, 4, 0);
		r.sector++;
		assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &r, &err, &bits),
				 -EIO);
		assert_int_equal(bits, 1);
		assert_int_equal(err, -ENXIO);
	}
}

/* Bigger than the largest NBD request the library sends, from memory that
 * is not aligned to anything: split, and every piece lands. */
static void large_unaligned_write_is_split_and_reads_back(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	struct block_device *b = open_nbd(env, s);
	struct dm_bdev_info info;
	size_t len = 9 * MiB + 512;
	char *mem = h_alloc(len + 3), *buf = mem + 3;
	struct io_region r = {b, 1, len >> SECTOR_SHIFT};

	assert_int_equal(dm_bdev_get_info(b, &info), 0);
	assert_true(len > info.max_transfer);
	h_pattern(buf, len, 5, 0);
	io_ok(DM_IO_OP_WRITE, buf, 1, &r);
	free(mem);
	expect_zero(b, 0, 512);
	expect_pattern(b, 1, len, 5, 0);
	expect_zero(b, 1 + (len >> SECTOR_SHIFT), 4096);
}

/* Without the server's zero command, write-zeroes is written (by more
 * than one emulation write here) and still reads as zeroes. */
static void write_zeroes_without_zero_command_is_emulated(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER("--filter=nozero", MEMORY);
	struct block_device *b = open_nbd(env, s);
	size_t len = 3 * MiB;
	struct io_region r = {b, 8, (2 * MiB + 4 * KiB) >> SECTOR_SHIFT};

	write_pattern(b, 0, len, 6);
	io_ok(DM_IO_OP_WRITE_ZEROES, NULL, 1, &r);
	expect_pattern(b, 0, 4 * KiB, 6, 0);
	expect_zero(b, 8, 2 * MiB + 4 * KiB);
	expect_pattern(b, 8 + r.count, len - (4 * KiB + 2 * MiB + 4 * KiB), 6,
		       4 * KiB + 2 * MiB + 4 * KiB);
}

/* nbdkit -r: the export says it is read-only; writes get -EROFS. */
static void read_only_export_refuses_writes(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER("-r", MEMORY);
	struct block_device *b = open_nbd(env, s);
	struct dm_bdev_info info;
	struct io_region r = {b, 0, 8};
	unsigned long bits = 0;
	char buf[4096];
	int err = 0;

	assert_int_equal(dm_bdev_get_info(b, &info), 0);
	assert_true(info.flags & DM_BDEV_RDONLY);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &r, &err, &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(err, -EROFS);
	expect_zero(b, 0, sizeof(buf));
}

/* ---- page lists and bio_vecs (not contiguous: bounced) ------------------ */

static void page_list_and_bvec_with_offsets_read_back(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	struct block_device *b = open_nbd(env, s);
	size_t len = 5 * DM_PAGE_SIZE; /* 100 bytes in: six pages */
	struct page_list *pl = h_pl_alloc(6), *back = h_pl_alloc(6);
	char *data = h_alloc(len), *got = h_alloc(len);
	struct io_region r = {b, 8, len >> SECTOR_SHIFT};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_PAGE_LIST, .offset = 100, .ptr.pl = pl},
		.client = client,
	};
	unsigned long bits = ~0ul;

	/* The request API, a page list starting 100 bytes in. */
	h_pattern(data, len, 7, 0);
	h_pl_fill(pl, 100, data, len);
	assert_int_equal(dm_io(&req, 1, &r, &bits), 0);
	assert_int_equal(bits, 0);
	expect_pattern(b, 8, len, 7, 0);

	/* Read it back into another page list, 3000 bytes in. */
	req.bi_opf = DM_IO_OP_READ;
	req.mem.offset = 3000;
	req.mem.ptr.pl = back;
	assert_int_equal(dm_io(&req, 1, &r, &bits), 0);
	assert_int_equal(bits, 0);
	h_pl_copy_out(back, 3000, got, len);
	assert_int_equal(h_pattern_mismatch(got, len, 7, 0), -1);

	/* The seed API: dm_io_sync() with an offset. */
	h_seed_get(env, 16);
	h_pattern(data, len, 8, 0);
	h_pl_fill(pl, 4000, data, len - DM_PAGE_SIZE);
	r = (struct io_region){b, 200, (len - DM_PAGE_SIZE) >> SECTOR_SHIFT};
	assert_int_equal(dm_io_sync(1, &r, DM_IO_WRITE, pl, 4000, &bits), 0);
	assert_int_equal(bits, 0);
	expect_pattern(b, 200, len - DM_PAGE_SIZE, 8, 0);

	/* bio_vecs of odd lengths at odd offsets, 4 KiB in all. */
	{
		struct page_list *p = pl;
		struct bio_vec bv[3];
		unsigned int i, off = 0;
		static const unsigned int lens[3] = {1536, 2048, 512};
		static const unsigned int offs[3] = {512, 7, 3000};

		h_pattern(data, 4096, 9, 0);
		for (i = 0; i < 3; i++, p = p->next) {
			bv[i] = (struct bio_vec){p->page, lens[i], offs[i]};
			memcpy((char *)dm_page_address(p->page) + offs[i],
			       data + off, lens[i]);
			off += lens[i];
		}
		r = (struct io_region){b, 400, 8};
		assert_int_equal(dm_io_sync_bvec(1, &r, DM_IO_WRITE, bv, &bits),
				 0);
		assert_int_equal(bits, 0);
		expect_pattern(b, 400, 4096, 9, 0);
	}
	dm_page_list_free(pl);
	dm_page_list_free(back);
	free(data);
	free(got);
}

/* ---- the error filter on one leg of a three-leg mirror ------------------ */

static void error_filter_fails_only_its_leg_of_three(void **state)
{
	struct h_env *env = nbd_env(state);
	struct h_dev *file = h_file_new(env, 1 * MiB, 20);
	struct nbdkit *good = SERVER(MEMORY);
	struct nbdkit *bad =
		SERVER("--filter=error", MEMORY, "error-pwrite-rate=100%");
	size_t len = 64 * KiB;
	struct io_region where[3] = {
		{h_open(env, file, 0), 16, len >> SECTOR_SHIFT},
		{open_nbd(env, good), 32, len >> SECTOR_SHIFT},
		{open_nbd(env, bad), 48, len >> SECTOR_SHIFT},
	};
	char *buf = h_alloc(len);
	static struct waiter w;
	unsigned long bits = 0;
	int errs[3] = {1, 1, 1};

	/* Synchronous. */
	h_pattern(buf, len, 21, 0);
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 3, where, errs, &bits), -EIO);
	assert_int_equal(bits, 1ul << 2);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], 0);
	/* The filter's default error, EIO, as the server said it. */
	if (errs[2] != -EIO)
		fail_msg("the failing leg's errno is %d (%s), not -EIO",
			 errs[2], strerror(-errs[2]));
	h_expect_initial(file, 0, 16 * 512);
	h_expect_pattern(file, 16 * 512, len, 21, 0);
	h_expect_initial(file, 16 * 512 + len, file->size - 16 * 512 - len);
	expect_pattern(where[1].bdev, 32, len, 21, 0);
	expect_zero(where[2].bdev, 48, len); /* reads pass; nothing written */

	/* Asynchronous, the same again with other data. */
	h_pattern(buf, len, 22, 0);
	submit(&w, DM_IO_OP_WRITE, buf, 3, where);
	assert_int_equal(waiter_wait(&w, 20000), 1ul << 2);
	waiter_once(&w);
	assert_int_equal(w.errs[0], 0);
	assert_int_equal(w.errs[1], 0);
	assert_int_equal(w.errs[2], -EIO);
	h_expect_pattern(file, 16 * 512, len, 22, 0);
	expect_pattern(where[1].bdev, 32, len, 22, 0);
	free(buf);
}

/* A read the server fails leaves zeroes, not stale bytes. */
static void failed_read_leaves_zeroes(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s =
		SERVER("--filter=error", MEMORY, "error-pread-rate=100%");
	struct block_device *b = open_nbd(env, s);
	size_t len = 32 * KiB;
	char *buf = h_alloc(len);
	struct io_region r = {b, 0, len >> SECTOR_SHIFT};
	unsigned long bits = 0;
	int err = 0;

	write_pattern(b, 0, len, 23); /* writes pass */
	memset(buf, 0xaa, len);
	assert_int_equal(io(DM_IO_OP_READ, buf, 1, &r, &err, &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_true(err < 0);
	assert_int_equal(h_byte_mismatch(buf, len, 0), -1);
	free(buf);
}

/* ---- many requests in flight -------------------------------------------- */

#define DELAY_MS      20
#define DELAY_SERIAL  8
#define DELAY_PARALEL 32

static void delayed_writes_run_in_parallel(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER("--filter=delay", MEMORY, "delay-write=20ms");
	struct block_device *b = open_nbd(env, s);
	static struct waiter w[DELAY_PARALEL];
	struct io_region r[DELAY_PARALEL];
	size_t len = 4 * KiB;
	char *buf = h_alloc(len * DELAY_PARALEL);
	uint64_t t0, serial, parallel, per;
	unsigned int i;

	/* One by one: each write waits for the one before. */
	h_pattern(buf, len * DELAY_PARALEL, 24, 0);
	t0 = h_now_ms();
	for (i = 0; i < DELAY_SERIAL; i++) {
		struct io_region one = {b, i * 8, 8};

		io_ok(DM_IO_OP_WRITE, buf + i * len, 1, &one);
	}
	serial = h_now_ms() - t0;
	per = serial / DELAY_SERIAL;
	/* The filter really delays (else the comparison proves nothing). */
	if (per < DELAY_MS - 2)
		fail_msg("a delayed write took %llu ms, less than the filter's "
			 "%d ms",
			 (unsigned long long)per, DELAY_MS);

	/* All at once. */
	h_pattern(buf, len * DELAY_PARALEL, 25, 0);
	t0 = h_now_ms();
	for (i = 0; i < DELAY_PARALEL; i++) {
		r[i] = (struct io_region){b, 1024 + i * 8, 8};
		submit(&w[i], DM_IO_OP_WRITE, buf + i * len, 1, &r[i]);
	}
	for (i = 0; i < DELAY_PARALEL; i++)
		if (waiter_wait(&w[i], 30000) != 0 || w[i].errs[0] != 0)
			fail_msg("write %u: bits %#lx, errno %d", i,
				 atomic_load(&w[i].rec.bits), w[i].errs[0]);
	parallel = h_now_ms() - t0;
	print_message("%d writes delayed %d ms: one by one %llu ms each, "
		      "all at once %llu ms in all\n",
		      DELAY_PARALEL, DELAY_MS, (unsigned long long)per,
		      (unsigned long long)parallel);
	/* A lower bound on parallelism, not a tight timing: in flight
	 * together they take less than half of one after another. */
	if (parallel * 2 >= DELAY_PARALEL * per ||
	    parallel * 2 >= DELAY_PARALEL * DELAY_MS)
		fail_msg("%d writes in flight took %llu ms; one by one each "
			 "takes %llu ms: they did not overlap",
			 DELAY_PARALEL, (unsigned long long)parallel,
			 (unsigned long long)per);
	for (i = 0; i < DELAY_PARALEL; i++)
		waiter_once(&w[i]);
	expect_pattern(b, 1024, len * DELAY_PARALEL, 25, 0);
	expect_pattern(b, 0, len * DELAY_SERIAL, 24, 0);
	free(buf);
}

/* ---- a server killed mid-write ------------------------------------------ */

static void killed_server_fails_its_leg_fast(void **state)
{
	struct h_env *env = nbd_env(state);
	struct h_dev *file = h_file_new(env, 1 * MiB, 30);
	struct nbdkit *good = SERVER(MEMORY);
	/* Each write sits in the server for 3 s: it is in flight when the
	 * server dies. */
	struct nbdkit *victim =
		SERVER("--filter=delay", MEMORY, "delay-write=3");
	size_t len = 64 * KiB;
	struct io_region where[3] = {
		{h_open(env, file, 0), 16, len >> SECTOR_SHIFT},
		{open_nbd(env, good), 16, len >> SECTOR_SHIFT},
		{open_nbd(env, victim), 16, len >> SECTOR_SHIFT},
	};
	struct block_device *dead = where[2].bdev;
	char *buf = h_alloc(len);
	static struct waiter w;
	unsigned long bits;
	uint64_t t0, took;
	int errs[3], err;

	h_pattern(buf, len, 31, 0);
	submit(&w, DM_IO_OP_WRITE, buf, 3, where);
	h_sleep_ms(300);
	assert_int_equal(atomic_load(&w.rec.calls), 0); /* still in flight */
	t0 = h_now_ms();
	assert_int_equal(nbdkit_sigkill(victim), 0);
	bits = waiter_wait(&w, 15000);
	took = atomic_load(&w.rec.done_ms) - t0;
	print_message("killed server: its leg failed %llu ms later, errno "
		      "%s\n",
		      (unsigned long long)took, strerror(-w.errs[2]));
	assert_int_equal(bits, 1ul << 2);
	waiter_once(&w);
	assert_int_equal(w.errs[0], 0);
	assert_int_equal(w.errs[1], 0);
	if (!conn_errno(w.errs[2]))
		fail_msg("the dead leg's errno is %d (%s), not -ECONNRESET or "
			 "-EIO",
			 w.errs[2], strerror(-w.errs[2]));
	/* Well before the 5 s default timeout: the drop itself was seen. */
	if (took > 2500)
		fail_msg("the dead leg failed %llu ms after the kill",
			 (unsigned long long)took);
	h_expect_pattern(file, 16 * 512, len, 31, 0);
	expect_pattern(where[1].bdev, 16, len, 31, 0);

	/* Later requests to the dead export fail at once. */
	t0 = h_now_ms();
	bits = 0;
	err = 0;
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &where[2], &err, &bits),
			 -EIO);
	assert_int_equal(bits, 1);
	if (!conn_errno(err))
		fail_msg("a write to the dead export: errno %d", err);
	bits = 0;
	err = 0;
	assert_int_equal(io(DM_IO_OP_READ, buf, 1, &where[2], &err, &bits),
			 -EIO);
	assert_int_equal(bits, 1);
	assert_true(err < 0);
	assert_int_equal(h_byte_mismatch(buf, len, 0), -1);
	bits = 0;
	assert_int_equal(io(DM_IO_OP_FLUSH, NULL, 1, &where[2], NULL, &bits),
			 -EIO);
	assert_int_equal(bits, 1);
	took = h_now_ms() - t0;
	if (took > 1000)
		fail_msg("requests to a dead export took %llu ms",
			 (unsigned long long)took);

	/* The other legs still work, in a request with the dead one. */
	h_pattern(buf, len, 32, 0);
	errs[0] = errs[1] = errs[2] = 1;
	bits = 0;
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 3, where, errs, &bits), -EIO);
	assert_int_equal(bits, 1ul << 2);
	assert_int_equal(errs[0], 0);
	assert_int_equal(errs[1], 0);
	assert_true(conn_errno(errs[2]));
	h_expect_pattern(file, 16 * 512, len, 32, 0);
	expect_pattern(where[1].bdev, 16, len, 32, 0);
	free(buf);

	/* Closing the dead export is clean; reopening it is refused. */
	h_close(env, dead);
	t0 = h_now_ms();
	errno = 0;
	assert_null(dm_bdev_open(victim->uri, 0));
	if (errno != ECONNREFUSED && errno != ENOENT)
		fail_msg("reopening the dead export: errno %d (%s)", errno,
			 strerror(errno));
	assert_true(h_now_ms() - t0 < 2000);
}

/* ---- a server that stops answering -------------------------------------- */

#define TIMEOUT_MS 500
#define MARGIN_MS  2500

/* Three legs, the last on @victim with a 500 ms timeout, written while
 * @silence has made it stop answering: only that leg fails, with
 * -ETIMEDOUT, within the timeout and a margin; later requests to it fail
 * at once. */
static void silent_leg(struct h_env *env, struct nbdkit *victim,
		       void (*silence)(struct nbdkit *),
		       void (*speak)(struct nbdkit *))
{
	struct h_dev *file = h_file_new(env, 2 * MiB, 40);
	struct nbdkit *good = SERVER(MEMORY);
	size_t len = 64 * KiB;
	struct io_region where[3] = {
		{h_open(env, file, 0), 16, len >> SECTOR_SHIFT},
		{open_nbd(env, good), 16, len >> SECTOR_SHIFT},
		{open_nbd(env, victim), 16, len >> SECTOR_SHIFT},
	};
	char *buf = h_alloc(len);
	static struct waiter w;
	unsigned long bits;
	uint64_t t0, took;
	int err;

	assert_int_equal(dm_bdev_set_timeout(where[2].bdev, TIMEOUT_MS), 0);
	assert_int_equal(dm_bdev_set_timeout(where[0].bdev, TIMEOUT_MS),
			 -EOPNOTSUPP);
	write_pattern(where[2].bdev, 0, 4096, 41); /* it answers so far */

	silence(victim);
	h_pattern(buf, len, 42, 0);
	t0 = h_now_ms();
	submit(&w, DM_IO_OP_WRITE, buf, 3, where);
	bits = waiter_wait(&w, 20000);
	took = atomic_load(&w.rec.done_ms) - t0;
	print_message("silent server: its leg failed after %llu ms (timeout "
		      "%d ms), errno %s\n",
		      (unsigned long long)took, TIMEOUT_MS,
		      strerror(-w.errs[2]));
	assert_int_equal(bits, 1ul << 2);
	waiter_once(&w);
	assert_int_equal(w.errs[0], 0);
	assert_int_equal(w.errs[1], 0);
	assert_int_equal(w.errs[2], -ETIMEDOUT);
	if (took < TIMEOUT_MS - 50 || took > TIMEOUT_MS + MARGIN_MS)
		fail_msg("the silent leg failed after %llu ms; the timeout is "
			 "%d ms",
			 (unsigned long long)took, TIMEOUT_MS);
	h_expect_pattern(file, 16 * 512, len, 42, 0);
	expect_pattern(where[1].bdev, 16, len, 42, 0);

	/* Later requests fail at once, with the same errno. */
	t0 = h_now_ms();
	bits = 0;
	err = 0;
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &where[2], &err, &bits),
			 -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(err, -ETIMEDOUT);
	took = h_now_ms() - t0;
	if (took > TIMEOUT_MS / 2)
		fail_msg("a request to a timed-out export took %llu ms",
			 (unsigned long long)took);

	/* Even once the server speaks again, until the export is
	 * reopened; reopened, it works. */
	speak(victim);
	bits = 0;
	err = 0;
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &where[2], &err, &bits),
			 -EIO);
	assert_int_equal(err, -ETIMEDOUT);
	h_close(env, where[2].bdev);
	where[2].bdev = open_nbd(env, victim);
	/*
	 * Elsewhere: the server, awake again, still carries out the writes
	 * that timed out (they were in its socket), whenever it gets to
	 * them, maybe after newer ones through the new connection.  A
	 * timeout says "no answer in time", not "not written".
	 */
	where[0].sector = where[1].sector = where[2].sector = 1024;
	h_pattern(buf, len, 43, 0);
	io_ok(DM_IO_OP_WRITE, buf, 3, where);
	h_expect_pattern(file, 1024 * 512, len, 43, 0);
	expect_pattern(where[1].bdev, 1024, len, 43, 0);
	expect_pattern(where[2].bdev, 1024, len, 43, 0);
	free(buf);
}

static void sigstop(struct nbdkit *s)
{
	assert_int_equal(nbdkit_sigstop(s), 0);
}

static void sigcont(struct nbdkit *s)
{
	assert_int_equal(nbdkit_sigcont(s), 0);
}

static void stopped_server_times_out(void **state)
{
	struct h_env *env = nbd_env(state);

	silent_leg(env, SERVER(MEMORY), sigstop, sigcont);
}

static void pause_server(struct nbdkit *s)
{
	int err = nbdkit_pause_control(s, 'p');

	if (err)
		fail_msg("pausing nbdkit through %s: %s", s->ctl,
			 strerror(-err));
}

static void resume_server(struct nbdkit *s)
{
	int err = nbdkit_pause_control(s, 'r');

	if (err)
		fail_msg("resuming nbdkit through %s: %s", s->ctl,
			 strerror(-err));
}

static void paused_server_times_out(void **state)
{
	struct h_env *env = nbd_env(state);

	silent_leg(env, SERVER("--filter=pause", MEMORY, "pause-control=@CTL@"),
		   pause_server, resume_server);
}

/* ---- TLS ---------------------------------------------------------------- */

static void tls_psk_round_trips(void **state)
{
	struct h_env *env = nbd_env(state);
	const char *const args[] = {MEMORY, NULL};
	char why[512], plain[256], wrong[512], psk2[200];
	struct block_device *b;
	struct nbdkit *s;
	uint64_t t0;
	FILE *f;

	if (!nbdkit_have_tls())
		skip_test("nbdkit was built without TLS");
	s = nbdkit_start_tls("alice", args, why, sizeof(why));
	if (!s)
		fail_msg("starting nbdkit with TLS: %s", why);
	assert_non_null(strstr(s->uri, "nbds+unix://alice@/?socket="));
	b = open_nbd(env, s);
	write_pattern(b, 64, 128 * KiB, 50);
	expect_pattern(b, 64, 128 * KiB, 50, 0);
	expect_zero(b, 0, 32 * KiB);

	/* The server requires TLS: no plain connection, and not with
	 * another key. */
	snprintf(plain, sizeof(plain), "nbd+unix:///?socket=%s", s->sock);
	t0 = h_now_ms();
	errno = 0;
	assert_null(dm_bdev_open(plain, 0));
	assert_true(errno != 0);
	snprintf(psk2, sizeof(psk2), "%s/other.psk", env->dir);
	f = fopen(psk2, "we");
	assert_non_null(f);
	fprintf(f, "alice:%064x\n", 0x1234);
	fclose(f);
	snprintf(wrong, sizeof(wrong),
		 "nbds+unix://alice@/?socket=%s&tls-psk-file=%s", s->sock,
		 psk2);
	errno = 0;
	assert_null(dm_bdev_open(wrong, 0));
	assert_true(errno != 0);
	assert_true(h_now_ms() - t0 < 10000);
	unlink(psk2);
}

/* ---- one request, four kinds of device ---------------------------------- */

static void mixed_request_file_loop_and_two_exports(void **state)
{
	struct h_env *env = nbd_env(state);
	struct h_dev *file = h_file_new(env, 1 * MiB, 60), *loop = NULL;
	struct nbdkit *good = SERVER(MEMORY);
	struct nbdkit *bad =
		SERVER("--filter=error", MEMORY, "error-pwrite-rate=100%");
	size_t len = 96 * KiB;
	struct io_region where[4];
	char *mem = h_alloc(len + 1), *buf = mem + 1; /* unaligned */
	static struct waiter w;
	unsigned int n = 0, i_good, i_bad, i;
	unsigned long bits;

	where[n++] = (struct io_region){h_open(env, file, 0), 8,
					len >> SECTOR_SHIFT};
	if (geteuid() == 0 && access("/dev/loop-control", R_OK | W_OK) == 0) {
		loop = h_loop_new(env, 1 * MiB, 61, 512);
		where[n++] = (struct io_region){h_open(env, loop, 0), 24,
						len >> SECTOR_SHIFT};
	} else {
		print_message("SKIP (loop-device leg only): loop devices need "
			      "root and /dev/loop-control\n");
	}
	i_good = n;
	where[n++] = (struct io_region){open_nbd(env, good), 40,
					len >> SECTOR_SHIFT};
	i_bad = n;
	where[n++] =
		(struct io_region){open_nbd(env, bad), 56, len >> SECTOR_SHIFT};

	/* Asynchronous, on the test's client: one callback for all. */
	h_pattern(buf, len, 62, 0);
	submit(&w, DM_IO_OP_WRITE, buf, n, where);
	bits = waiter_wait(&w, 20000);
	waiter_once(&w);
	assert_int_equal(bits, 1ul << i_bad);
	for (i = 0; i < n; i++)
		if (i != i_bad)
			assert_int_equal(w.errs[i], 0);
	if (w.errs[i_bad] >= 0)
		fail_msg("the failing export's errno is %d", w.errs[i_bad]);
	h_expect_pattern(file, 8 * 512, len, 62, 0);
	h_expect_initial(file, 0, 8 * 512);
	if (loop) {
		h_expect_pattern(loop, 24 * 512, len, 62, 0);
		h_expect_initial(loop, 0, 24 * 512);
	}
	expect_pattern(where[i_good].bdev, 40, len, 62, 0);
	expect_zero(where[i_bad].bdev, 56, len);

	/* Synchronous, through the seed API on the default client. */
	h_seed_get(env, 32);
	h_pattern(buf, len, 63, 0);
	bits = 0;
	assert_int_equal(dm_io_sync_vm(n, where, DM_IO_WRITE, buf, &bits),
			 -EIO);
	assert_int_equal(bits, 1ul << i_bad);
	h_expect_pattern(file, 8 * 512, len, 63, 0);
	if (loop)
		h_expect_pattern(loop, 24 * 512, len, 63, 0);
	expect_pattern(where[i_good].bdev, 40, len, 63, 0);
	free(mem);
}

/* ---- no server ---------------------------------------------------------- */

static void expect_open_refused(const char *uri, int e1, int e2)
{
	uint64_t t0 = h_now_ms(), took;
	struct block_device *b;

	errno = 0;
	b = dm_bdev_open(uri, 0);
	took = h_now_ms() - t0;
	if (b) {
		dm_bdev_close(b);
		fail_msg("dm_bdev_open(%s) succeeded with no server", uri);
	}
	if (errno != e1 && errno != e2)
		fail_msg("dm_bdev_open(%s): errno %d (%s), expected %s or %s",
			 uri, errno, strerror(errno), strerror(e1),
			 strerror(e2));
	if (took > 2000)
		fail_msg("dm_bdev_open(%s) took %llu ms to fail", uri,
			 (unsigned long long)took);
}

static void open_without_server_fails_fast(void **state)
{
	struct h_env *env;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	char uri[256];
	int fd;

	need_library(); /* no nbdkit needed */
	env = h_env(state);

	/* No socket file at all. */
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s/none.sock",
		 env->dir);
	expect_open_refused(uri, ENOENT, ECONNREFUSED);

	/* A socket file nobody listens on. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/deaf.sock", env->dir);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sa.sun_path);
	expect_open_refused(uri, ECONNREFUSED, ECONNREFUSED);
	close(fd);
	unlink(sa.sun_path);

	/* TCP: a port held by a socket that does not listen. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	snprintf(uri, sizeof(uri), "nbd://127.0.0.1:%u/",
		 (unsigned int)ntohs(sin.sin_port));
	expect_open_refused(uri, ECONNREFUSED, ECONNREFUSED);
	close(fd);
}

/* ---- fault: around an export -------------------------------------------- */

static void fault_spec_wraps_an_export(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	struct block_device *plain = open_nbd(env, s), *f;
	struct dm_bdev_info info;
	char spec[640], buf[8 * KiB];
	struct io_region r;
	unsigned long bits;
	int err;

	snprintf(spec, sizeof(spec), "fault:fail-writes=0+8:%s", s->uri);
	f = h_open_spec(env, spec, 0);
	assert_int_equal(dm_bdev_get_info(f, &info), 0);
	assert_string_equal(info.kind, "fault");
	assert_int_equal(info.nr_sectors, EXPORT_SIZE >> SECTOR_SHIFT);
	assert_int_equal(dm_bdev_set_timeout(f, 2000), 0); /* the export's */

	/* Touching sectors 0..7 fails; past them, writes land. */
	h_pattern(buf, sizeof(buf), 70, 0);
	r = (struct io_region){f, 4, 16};
	bits = 0;
	err = 0;
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &r, &err, &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(err, -EIO);
	expect_zero(plain, 0, 4 * 512);
	r = (struct io_region){f, 8, 16};
	io_ok(DM_IO_OP_WRITE, buf, 1, &r);
	expect_pattern(f, 8, sizeof(buf), 70, 0);
	expect_pattern(plain, 8, sizeof(buf), 70, 0);
	expect_zero(f, 0, 8 * 512); /* reads of 0..7 pass */

	/* Another errno. */
	snprintf(spec, sizeof(spec), "fault:fail-writes=all,errno=ENOSPC:%s",
		 s->uri);
	f = h_open_spec(env, spec, 0);
	r = (struct io_region){f, 100, 16};
	bits = 0;
	err = 0;
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &r, &err, &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(err, -ENOSPC);
	expect_zero(plain, 100, sizeof(buf));
}

/* ---- open flags, ENOSPC, block-size constraints ------------------------- */

static void open_flags_on_an_export(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	struct block_device *ro, *direct;
	struct dm_bdev_info info;
	struct io_region r;
	unsigned long bits = 0;
	char buf[4096];
	int err = 0;

	/* DM_BDEV_RDONLY: writes fail with -EROFS and reach nothing. */
	ro = h_open_spec(env, s->uri, DM_BDEV_RDONLY);
	assert_int_equal(dm_bdev_get_info(ro, &info), 0);
	assert_true(info.flags & DM_BDEV_RDONLY);
	memset(buf, 0x5a, sizeof(buf));
	r = (struct io_region){ro, 0, 8};
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &r, &err, &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(err, -EROFS);
	expect_zero(ro, 0, sizeof(buf));

	/* DIRECT and BUFFERED mean nothing to an export; both together are
	 * refused as for any device. */
	direct = h_open_spec(env, s->uri, DM_BDEV_DIRECT);
	assert_int_equal(dm_bdev_get_info(direct, &info), 0);
	assert_false(info.flags & DM_BDEV_DIRECT);
	write_pattern(direct, 0, sizeof(buf), 80);
	expect_pattern(ro, 0, sizeof(buf), 80, 0);
	errno = 0;
	assert_null(dm_bdev_open(s->uri, DM_BDEV_DIRECT | DM_BDEV_BUFFERED));
	assert_int_equal(errno, EINVAL);
}

/* The server's errno reaches region_errors: ENOSPC is not EIO. */
static void server_enospc_reaches_region_errors(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER("--filter=error", MEMORY, "error=ENOSPC",
				  "error-pwrite-rate=100%");
	struct block_device *b = open_nbd(env, s);
	struct io_region r = {b, 0, 8};
	unsigned long bits = 0;
	char buf[4096];
	int err = 0;

	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &r, &err, &bits), -EIO);
	assert_int_equal(bits, 1);
	if (err != -ENOSPC)
		fail_msg("the server said ENOSPC; region_errors has %d (%s)",
			 err, strerror(-err));
}

/*
 * A server that wants 4 KiB blocks and at most 64 KiB per request, and
 * fails anything else with EINVAL: the library reads the constraints,
 * splits at the maximum and refuses what it cannot align.
 */
static void server_block_size_constraints_are_kept(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(
		"--filter=blocksize-policy", MEMORY, "blocksize-minimum=4096",
		"blocksize-preferred=4096", "blocksize-maximum=65536",
		"blocksize-error-policy=error");
	struct block_device *b = open_nbd(env, s);
	struct dm_bdev_info info;
	size_t len = 1 * MiB + 4 * KiB;
	char *mem = h_alloc(len + 5), *buf = mem + 5;
	struct io_region r;
	unsigned long bits = 0;
	int err = 0;

	assert_int_equal(dm_bdev_get_info(b, &info), 0);
	assert_int_equal(info.logical_block_size, 4096);
	assert_int_equal(dm_bdev_logical_block_size(b), 4096);
	assert_true(info.max_transfer <= 65536);

	/* Aligned: split into requests the server takes. */
	h_pattern(buf, len, 81, 0);
	r = (struct io_region){b, 8, len >> SECTOR_SHIFT};
	io_ok(DM_IO_OP_WRITE, buf, 1, &r);
	expect_pattern(b, 8, len, 81, 0);
	expect_zero(b, 0, 4096);

	/* Not on a 4 KiB boundary: refused, nothing sent. */
	r = (struct io_region){b, 1, 8};
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &r, &err, &bits), -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(err, -EINVAL);
	expect_zero(b, 0, 4096);
	free(mem);
}

/* ---- slow servers, busy devices, silence at connect --------------------- */

/*
 * The timeout is how long the export may go without answering, not how
 * long one request may take: four writes that the server serialises at
 * 300 ms each take 1.2 s in all, and with a 500 ms timeout they all
 * succeed, since something completes every 300 ms.
 */
static void slow_server_that_answers_does_not_time_out(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s =
		SERVER("--filter=noparallel", "--filter=delay", MEMORY,
		       "serialize=all-requests", "delay-write=300ms");
	struct block_device *b = open_nbd(env, s);
	static struct waiter w[4];
	struct io_region r[4];
	size_t len = 4 * KiB;
	char *buf = h_alloc(4 * len);
	uint64_t t0, took;
	unsigned int i;

	assert_int_equal(dm_bdev_set_timeout(b, TIMEOUT_MS), 0);
	h_pattern(buf, 4 * len, 82, 0);
	t0 = h_now_ms();
	for (i = 0; i < 4; i++) {
		r[i] = (struct io_region){b, i * 8, 8};
		submit(&w[i], DM_IO_OP_WRITE, buf + i * len, 1, &r[i]);
	}
	for (i = 0; i < 4; i++)
		if (waiter_wait(&w[i], 20000) || w[i].errs[0])
			fail_msg(
				"write %u to a slow server: bits %#lx, errno "
				"%d after %llu ms",
				i, atomic_load(&w[i].rec.bits), w[i].errs[0],
				(unsigned long long)(atomic_load(
							     &w[i].rec.done_ms) -
						     t0));
	took = h_now_ms() - t0;
	print_message("4 serialised 300 ms writes, timeout %d ms: %llu ms\n",
		      TIMEOUT_MS, (unsigned long long)took);
	/* They were serialised (else this proves nothing). */
	assert_true(took >= 4 * 300 - 50);
	for (i = 0; i < 4; i++)
		waiter_once(&w[i]);
	expect_pattern(b, 0, 4 * len, 82, 0);
	free(buf);
}

/* dm_bdev_close() of an export with I/O in flight: -EBUSY, nothing
 * closed; once the I/O is done, it closes. */
static void close_with_io_in_flight_is_busy(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER("--filter=delay", MEMORY, "delay-write=1");
	struct block_device *b = open_nbd(env, s);
	static struct waiter w;
	struct io_region r = {b, 0, 8};
	char buf[4096];

	h_pattern(buf, sizeof(buf), 83, 0);
	submit(&w, DM_IO_OP_WRITE, buf, 1, &r);
	assert_int_equal(dm_bdev_close(b), -EBUSY);
	assert_int_equal(waiter_wait(&w, 20000), 0);
	assert_int_equal(w.errs[0], 0);
	waiter_once(&w);
	expect_pattern(b, 0, sizeof(buf), 83, 0);
	h_close(env, b);
}

/* Two fault: levels over an export: the write waits at the server while
 * both levels have passed it on.  Closing the outer one is refused, and
 * refused means untouched: it takes more I/O, then closes. */
static void close_busy_faults_over_export_keeps_device(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER("--filter=delay", MEMORY, "delay-write=1");
	static struct waiter w;
	struct block_device *f;
	struct io_region r;
	char spec[640], buf[8192];
	int busy;

	snprintf(spec, sizeof(spec), "fault::fault::%s", s->uri);
	f = h_open_spec(env, spec, 0);
	r = (struct io_region){f, 0, 8};
	h_pattern(buf, sizeof(buf), 84, 0);
	h_watchdog(30, "I/O to nested fault: devices after -EBUSY");
	submit(&w, DM_IO_OP_WRITE, buf, 1, &r);
	h_sleep_ms(200); /* the fault: levels pass it on at once */
	busy = dm_bdev_close(f);
	r.sector = 8;
	io_ok(DM_IO_OP_WRITE, buf + 4096, 1, &r);
	assert_int_equal(waiter_wait(&w, 20000), 0);
	h_watchdog(0, NULL);
	assert_int_equal(busy, -EBUSY);
	waiter_once(&w);
	expect_pattern(f, 0, sizeof(buf), 84, 0);
	h_close(env, f);
}

/* A server that accepts the connection but never speaks: the open gives
 * up after the default timeout (5 s) with ETIMEDOUT. */
static void silent_server_at_connect_times_out(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	struct block_device *b;
	uint64_t t0, took;
	int err;

	(void)env;
	assert_int_equal(nbdkit_sigstop(s), 0);
	t0 = h_now_ms();
	errno = 0;
	b = dm_bdev_open(s->uri, 0);
	err = errno;
	took = h_now_ms() - t0;
	assert_int_equal(nbdkit_sigcont(s), 0);
	if (b) {
		dm_bdev_close(b);
		fail_msg("opened an export whose server is stopped");
	}
	print_message("open of a silent server: %s after %llu ms\n",
		      strerror(err), (unsigned long long)took);
	assert_int_equal(err, ETIMEDOUT);
	if (took < 4500 || took > 5000 + MARGIN_MS)
		fail_msg("the open gave up after %llu ms; the default timeout "
			 "is 5000 ms",
			 (unsigned long long)took);
}

/* A server that dies while nothing is in flight: the next request fails
 * at once, with a connection errno. */
static void server_killed_while_idle_fails_next_request(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	struct block_device *b = open_nbd(env, s);
	struct io_region r = {b, 0, 8};
	unsigned long bits = 0;
	char buf[4096];
	uint64_t t0, took;
	int err = 0;

	write_pattern(b, 0, sizeof(buf), 84);
	assert_int_equal(nbdkit_sigkill(s), 0);
	h_sleep_ms(100);
	t0 = h_now_ms();
	assert_int_equal(io(DM_IO_OP_WRITE, buf, 1, &r, &err, &bits), -EIO);
	took = h_now_ms() - t0;
	assert_int_equal(bits, 1);
	if (!conn_errno(err))
		fail_msg("a write to a dead server: errno %d (%s)", err,
			 strerror(-err));
	if (took > 2000)
		fail_msg("a write to a dead server took %llu ms",
			 (unsigned long long)took);
}

/* ---- callbacks on the export's thread ----------------------------------- */

#define CHAIN_LEN 24

struct chain {
	struct block_device *bdev;
	char *buf;
	atomic_uint calls;
	atomic_uint fails;
	atomic_int deadlk;  /* what a sync dm_io() in the callback returned */
	atomic_int refused; /* a refused async submission */
};

static struct chain chain;

static void chain_cb(unsigned long error, void *context)
{
	struct chain *c = context;
	unsigned int n = atomic_fetch_add(&c->calls, 1) + 1;
	struct io_region r = {c->bdev, (sector_t)n * 8, 8};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = c->buf + n * 4096},
		.client = client,
	};
	int ret;

	if (error)
		atomic_fetch_add(&c->fails, 1);
	if (n == 1) {
		ret = dm_io(&req, 1, &r, NULL); /* synchronous */
		atomic_store(&c->deadlk, ret);
	}
	if (n >= CHAIN_LEN)
		return;
	req.notify = (struct dm_io_notify){chain_cb, c};
	ret = dm_io(&req, 1, &r, NULL);
	if (ret)
		atomic_store(&c->refused, ret);
}

/* A callback may submit the next request, from the export's own thread;
 * a synchronous call from it is -EDEADLK rather than a hang. */
static void callbacks_chain_more_io_to_the_export(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	struct io_region r;
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.notify = {chain_cb, &chain},
		.client = client,
	};

	chain.bdev = open_nbd(env, s);
	chain.buf = h_alloc(CHAIN_LEN * 4096);
	atomic_init(&chain.calls, 0);
	atomic_init(&chain.fails, 0);
	atomic_init(&chain.deadlk, 1);
	atomic_init(&chain.refused, 0);
	h_pattern(chain.buf, CHAIN_LEN * 4096, 85, 0);
	req.mem = (struct dm_io_memory){.type = DM_IO_KMEM,
					.ptr.addr = chain.buf};
	r = (struct io_region){chain.bdev, 0, 8};
	assert_int_equal(dm_io(&req, 1, &r, NULL), 0);
	if (!h_wait_count(&chain.calls, CHAIN_LEN, 30000))
		fail_msg("the chain stopped after %u of %d callbacks",
			 atomic_load(&chain.calls), CHAIN_LEN);
	h_sleep_ms(20);
	assert_int_equal(atomic_load(&chain.calls), CHAIN_LEN);
	assert_int_equal(atomic_load(&chain.fails), 0);
	assert_int_equal(atomic_load(&chain.refused), 0);
	assert_int_equal(atomic_load(&chain.deadlk), -EDEADLK);
	expect_pattern(chain.bdev, 0, CHAIN_LEN * 4096, 85, 0);
	free(chain.buf);
	chain.buf = NULL;
}

/*
 * A callback that closes the export its request went to (its last user):
 * the close must either work or be refused with an errno, never free the
 * export under its own thread.  Run in a child process, so that a crash
 * is a failure of this test only.
 */
#if defined(__SANITIZE_ADDRESS__)
#define CHILD_GRACE_MS 3000
#else
#define CHILD_GRACE_MS 300
#endif

static atomic_int close_ret;
static atomic_uint close_calls;

static void close_cb(unsigned long error, void *context)
{
	(void)error;
	atomic_store(&close_ret, dm_bdev_close(context));
	atomic_fetch_add(&close_calls, 1);
}

static int close_from_callback_child(const char *uri)
{
	struct dm_io_client *c = dm_io_client_create();
	struct block_device *b = dm_bdev_open(uri, 0);
	static char buf[4096];
	struct io_region r = {b, 0, 8};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = c,
	};
	int ret;

	if (!c || !b)
		return 10;
	/* Freed memory is scribbled on: a use after free shows without a
	 * sanitizer too. */
	mallopt(M_PERTURB, 0xa5);
	req.notify = (struct dm_io_notify){close_cb, b};
	atomic_init(&close_ret, 1);
	atomic_init(&close_calls, 0);
	if (dm_io(&req, 1, &r, NULL))
		return 11;
	if (!h_wait_count(&close_calls, 1, 10000))
		return 12;
	/* The export's thread runs on after the callback: give what it does
	 * then time to show (a sanitizer's report takes a while). */
	h_sleep_ms(CHILD_GRACE_MS);
	ret = atomic_load(&close_ret);
	dm_io_client_destroy(c);
	if (ret) /* refused: it must still be usable, then close */
		return dm_bdev_close(b) ? 13 : 0;
	return 0;
}

static void close_from_its_own_callback(void **state)
{
	struct h_env *env = nbd_env(state);
	struct nbdkit *s = SERVER(MEMORY);
	pid_t pid;
	int status;

	(void)env;
#if defined(__SANITIZE_THREAD__)
	/* TSan cannot follow a forked multi-threaded process: run it here,
	 * where a report fails the run anyway. */
	(void)pid;
	(void)status;
	assert_int_equal(close_from_callback_child(s->uri), 0);
	return;
#endif
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka's handlers would turn a crash into a test failure
		 * and run on in the child: let the signal kill it. */
		static const int sigs[] = {SIGSEGV, SIGBUS,  SIGILL,
					   SIGFPE,  SIGABRT, SIGSYS};
		unsigned int i;

		for (i = 0; i < H_NR(sigs); i++)
			signal(sigs[i], SIG_DFL);
		_exit(close_from_callback_child(s->uri));
	}
	status = tl_wait_bounded(pid, 20000);
	if (status == -ETIMEDOUT)
		fail_msg("dm_bdev_close() from the export's own callback: the "
			 "process hung");
	assert_true(status >= 0);
	if (WIFSIGNALED(status))
		fail_msg("dm_bdev_close() from the export's own callback: the "
			 "process died of signal %d (%s); see the report above",
			 WTERMSIG(status), strsignal(WTERMSIG(status)));
	if (WEXITSTATUS(status))
		fail_msg("dm_bdev_close() from the export's own callback: the "
			 "process exited with status %d (1: a sanitizer report "
			 "above; 10-13: a step of close_from_callback_child())",
			 WEXITSTATUS(status));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		NBD_TEST(memory_export_plain_leg),
		NBD_TEST(large_unaligned_write_is_split_and_reads_back),
		NBD_TEST(write_zeroes_without_zero_command_is_emulated),
		NBD_TEST(read_only_export_refuses_writes),
		NBD_TEST(page_list_and_bvec_with_offsets_read_back),
		NBD_TEST(error_filter_fails_only_its_leg_of_three),
		NBD_TEST(failed_read_leaves_zeroes),
		NBD_TEST(delayed_writes_run_in_parallel),
		NBD_TEST(killed_server_fails_its_leg_fast),
		NBD_TEST(stopped_server_times_out),
		NBD_TEST(paused_server_times_out),
		NBD_TEST(tls_psk_round_trips),
		NBD_TEST(mixed_request_file_loop_and_two_exports),
		NBD_TEST(open_without_server_fails_fast),
		NBD_TEST(fault_spec_wraps_an_export),
		NBD_TEST(open_flags_on_an_export),
		NBD_TEST(server_enospc_reaches_region_errors),
		NBD_TEST(server_block_size_constraints_are_kept),
		NBD_TEST(slow_server_that_answers_does_not_time_out),
		NBD_TEST(close_with_io_in_flight_is_busy),
		NBD_TEST(close_busy_faults_over_export_keeps_device),
		NBD_TEST(silent_server_at_connect_times_out),
		NBD_TEST(server_killed_while_idle_fails_next_request),
		NBD_TEST(callbacks_chain_more_io_to_the_export),
		NBD_TEST(close_from_its_own_callback),
	};
	struct block_device *probe;
	char why[256];
	int ret;

	/* Does this build open NBD URIs at all? */
	errno = 0;
	probe = dm_bdev_open("nbd+unix:///?socket=/nonexistent/dmio.sock", 0);
	if (probe)
		dm_bdev_close(probe);
	else if (errno == EPROTONOSUPPORT)
		lib_has_nbd = false;
	if (!nbdkit_available(why, sizeof(why)))
		printf("nbdkit: %s: the tests that need it are skipped\n", why);

	ret = h_run("nbd", tests, H_NR(tests), NULL, 0);
	if (!ret && nbd_skips == H_NR(tests))
		return 77;
	return ret;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault: devices (issue 7, <dmio/blkdev.h>): fault:OPTIONS:SPEC wraps any
 * device and fails reads and/or writes on sector ranges with a chosen
 * errno, from the (N+1)th I/O on, drops writes when asked, and adds
 * latency.  Wrapped here around regular files and loop devices.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static struct dm_io_client *cur_client;

static int fault_teardown(void **state)
{
	dm_io_client_destroy(cur_client);
	cur_client = NULL;
	return h_test_teardown(state);
}

#define F_TEST(f)                                                              \
	cmocka_unit_test_setup_teardown(f, h_test_setup, fault_teardown)

static struct dm_io_client *client(void)
{
	if (!cur_client)
		cur_client = dm_io_client_create();
	if (!cur_client)
		fail_msg("dm_io_client_create: %s", strerror(errno));
	return cur_client;
}

/* fault:@opts:<@dev's path>, which must open. */
static struct block_device *fault_open(struct h_env *env, const char *opts,
				       struct h_dev *dev)
{
	char spec[256];

	snprintf(spec, sizeof(spec), "fault:%s:%s", opts, dev->path);
	return h_open_spec(env, spec, 0);
}

/* One synchronous dm_io() of @count sectors at @sector; returns its result,
 * stores the bits and the region errno. */
static int io(unsigned int opf, void *buf, struct block_device *bdev,
	      sector_t sector, sector_t count, unsigned long *bits, int *err)
{
	struct io_region r = {bdev, sector, count};
	struct dm_io_request req = {
		.bi_opf = opf,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = client(),
		.region_errors = err,
	};

	*bits = ~0ul;
	*err = 0x7f;
	return dm_io(&req, 1, &r, bits);
}

/* A write of h_pattern(@seed) that must succeed / must fail with @errno. */
static void write_ok(struct block_device *bdev, sector_t sector, sector_t count,
		     uint32_t seed)
{
	char *buf = h_alloc_aligned(count * 512);
	unsigned long bits;
	int err;

	h_pattern(buf, count * 512, seed, 0);
	assert_int_equal(
		io(DM_IO_OP_WRITE, buf, bdev, sector, count, &bits, &err), 0);
	assert_int_equal(bits, 0);
	assert_int_equal(err, 0);
	free(buf);
}

static void write_fails(struct block_device *bdev, sector_t sector,
			sector_t count, int errno_want)
{
	char *buf = h_alloc_aligned(count * 512);
	unsigned long bits;
	int err;

	h_pattern(buf, count * 512, 999, 0);
	assert_int_equal(
		io(DM_IO_OP_WRITE, buf, bdev, sector, count, &bits, &err),
		-EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(err, -errno_want);
	free(buf);
}

/* ---- fail-writes, fail-reads, fail -------------------------------------- */

static void fail_writes_fails_only_writes_touching_the_range(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 101);
	struct h_dev *other = h_dev_new(env, 1 * MiB, 102);
	struct block_device *f =
		fault_open(env, "fail-writes=64+8,errno=ENOSPC", dev);
	struct block_device *ob = h_open(env, other, 0);
	char *buf = h_alloc_aligned(32 * KiB);
	struct io_region where[2] = {{f, 64, 8}, {ob, 64, 8}};
	int errs[2];
	unsigned long bits;
	int err;

	/* Around the range: fine. */
	write_ok(f, 0, 64, 103);
	write_ok(f, 72, 8, 104);
	h_expect_pattern(dev, 0, 32 * KiB, 103, 0);
	h_expect_pattern(dev, 72 * 512, 4 * KiB, 104, 0);
	/* Touching it, or in it: the bit, with the chosen errno, and the
	 * range keeps its bytes. */
	write_fails(f, 60, 8, ENOSPC);
	write_fails(f, 64, 8, ENOSPC);
	write_fails(f, 71, 1, ENOSPC);
	h_expect_initial(dev, 64 * 512, 4 * KiB);
	/* Reads of the range are not affected. */
	memset(buf, 0, 4 * KiB);
	assert_int_equal(io(DM_IO_OP_READ, buf, f, 64, 8, &bits, &err), 0);
	assert_int_equal(h_pattern_mismatch(buf, 4 * KiB, dev->seed, 64 * 512),
			 -1);
	/* A flush has no range: it goes through. */
	assert_int_equal(io(DM_IO_OP_FLUSH, NULL, f, 0, 0, &bits, &err), 0);
	/* Discard and write-zeroes are writes. */
	assert_int_equal(io(DM_IO_OP_DISCARD, NULL, f, 56, 16, &bits, &err),
			 -EIO);
	assert_int_equal(err, -ENOSPC);
	assert_int_equal(io(DM_IO_OP_WRITE_ZEROES, NULL, f, 64, 8, &bits, &err),
			 -EIO);
	assert_int_equal(err, -ENOSPC);
	h_expect_initial(dev, 64 * 512, 4 * KiB);
	assert_int_equal(io(DM_IO_OP_WRITE_ZEROES, NULL, f, 80, 8, &bits, &err),
			 0);

	/* In a mirror, only the fault: leg fails. */
	{
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
			.client = client(),
			.region_errors = errs,
		};

		h_pattern(buf, 4 * KiB, 105, 0);
		assert_int_equal(dm_io(&req, 2, where, &bits), -EIO);
		assert_int_equal(bits, 1);
		assert_int_equal(errs[0], -ENOSPC);
		assert_int_equal(errs[1], 0);
		h_expect_pattern(other, 64 * 512, 4 * KiB, 105, 0);
	}
	h_expect_initial(dev, 64 * 512, 4 * KiB);
	free(buf);
}

static void every_errno_option_reaches_region_errors(void **state)
{
	struct h_env *env = h_env(state);
	static const struct {
		const char *opt;
		int err;
	} errnos[] = {
		{"", EIO}, /* the default */
		{",errno=EIO", EIO},
		{",errno=ENOSPC", ENOSPC},
		{",errno=EROFS", EROFS},
		{",errno=ENXIO", ENXIO},
		{",errno=ETIMEDOUT", ETIMEDOUT},
		{",errno=ECONNRESET", ECONNRESET},
		{",errno=EOPNOTSUPP", EOPNOTSUPP},
		{",errno=121", 121},
	};
	struct h_dev *dev = h_dev_new(env, 256 * KiB, 106);
	unsigned long bits;
	unsigned int i;
	int err;

	for (i = 0; i < H_NR(errnos); i++) {
		char opts[64];
		struct block_device *f;

		snprintf(opts, sizeof(opts), "fail-writes=all%s",
			 errnos[i].opt);
		f = fault_open(env, opts, dev);
		write_fails(f, 8, 8, errnos[i].err);
		/* "all" takes flushes too. */
		assert_int_equal(io(DM_IO_OP_FLUSH, NULL, f, 0, 0, &bits, &err),
				 -EIO);
		assert_int_equal(err, -errnos[i].err);
		h_close(env, f);
	}
	h_expect_untouched(dev);
}

/* Every byte of @buf is zero or what @dev holds at @off + i. */
static void expect_zero_or_data(const char *buf, size_t len, struct h_dev *dev,
				uint64_t off)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (buf[i] &&
		    (uint8_t)buf[i] != h_pattern_byte(dev->seed, off + i))
			fail_msg("failed read: byte %zu is %#04x, neither zero "
				 "nor the device's",
				 i, (uint8_t)buf[i]);
}

static void fail_reads_sets_the_bit_and_zero_fills(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 107);
	struct block_device *f = fault_open(env, "fail-reads=16+8", dev);
	struct block_device *both = fault_open(env, "fail=16+8", dev);
	size_t len = 16 * KiB;
	char *buf = h_alloc_aligned(len);
	unsigned long bits;
	int err;

	memset(buf, 0xaa, len);
	assert_int_equal(io(DM_IO_OP_READ, buf, f, 8, 32, &bits, &err), -EIO);
	assert_int_equal(bits, 1);
	assert_int_equal(err, -EIO);
	expect_zero_or_data(buf, len, dev, 8 * 512);
	/* sectors 16..23 failed: zeroes, never the stale 0xaa */
	assert_int_equal(h_byte_mismatch(buf + 8 * 512, 4 * KiB, 0), -1);

	/* Beside the range: the data. */
	memset(buf, 0xaa, len);
	assert_int_equal(io(DM_IO_OP_READ, buf, f, 24, 32, &bits, &err), 0);
	assert_int_equal(h_pattern_mismatch(buf, len, dev->seed, 24 * 512), -1);
	/* Writes to the range are fine, */
	write_ok(f, 16, 8, 108);
	h_expect_pattern(dev, 16 * 512, 4 * KiB, 108, 0);
	/* unless the rule is fail=, which takes both. */
	write_fails(both, 16, 8, EIO);
	h_expect_pattern(dev, 16 * 512, 4 * KiB, 108, 0);
	memset(buf, 0xaa, len);
	assert_int_equal(io(DM_IO_OP_READ, buf, both, 16, 8, &bits, &err),
			 -EIO);
	assert_int_equal(h_byte_mismatch(buf, 4 * KiB, 0), -1);
	free(buf);
}

/* ---- after=N ------------------------------------------------------------ */

static void after_n_the_rules_apply_from_the_next_io(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 109);
	struct block_device *f = fault_open(env, "fail=all,after=3", dev);
	char *buf = h_alloc_aligned(4 * KiB);
	unsigned long bits;
	int err;

	write_ok(f, 0, 8, 110); /* 1 */
	assert_int_equal(io(DM_IO_OP_READ, buf, f, 0, 8, &bits, &err),
			 0); /* 2 */
	assert_int_equal(h_pattern_mismatch(buf, 4 * KiB, 110, 0), -1);
	write_ok(f, 8, 8, 111);	    /* 3 */
	write_fails(f, 16, 8, EIO); /* 4 */
	write_fails(f, 0, 8, EIO);  /* 5 */
	memset(buf, 0xaa, 4 * KiB);
	assert_int_equal(io(DM_IO_OP_READ, buf, f, 0, 8, &bits, &err), -EIO);
	assert_int_equal(h_byte_mismatch(buf, 4 * KiB, 0), -1);
	h_expect_pattern(dev, 0, 4 * KiB, 110, 0);
	h_expect_pattern(dev, 4 * KiB, 4 * KiB, 111, 0);
	h_expect_initial(dev, 8 * KiB, dev->size - 8 * KiB);

	/* after=0 is from the first I/O on. */
	f = fault_open(env, "fail-writes=all,after=0", dev);
	write_fails(f, 32, 8, EIO);
	h_expect_initial(dev, 8 * KiB, dev->size - 8 * KiB);
	free(buf);
}

/* ---- drop-writes -------------------------------------------------------- */

static void drop_writes_reports_success_and_writes_nothing(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 112);
	struct block_device *f = fault_open(env, "drop-writes=0+64", dev);
	char *buf = h_alloc_aligned(32 * KiB);
	unsigned long bits;
	int err;

	write_ok(f, 0, 64, 113);
	write_ok(f, 8, 8, 114);
	/* Not a byte written, not even the mtime moved. */
	h_expect_untouched(dev);
	memset(buf, 0, 32 * KiB);
	assert_int_equal(io(DM_IO_OP_READ, buf, f, 0, 64, &bits, &err), 0);
	assert_int_equal(h_pattern_mismatch(buf, 32 * KiB, dev->seed, 0), -1);
	/* Elsewhere, writes land. */
	write_ok(f, 128, 8, 115);
	h_expect_pattern(dev, 128 * 512, 4 * KiB, 115, 0);
	h_expect_initial(dev, 0, 32 * KiB);
	free(buf);
}

static void drop_writes_drops_only_its_own_sectors(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 116);
	struct block_device *f = fault_open(env, "drop-writes=64+8", dev);

	/* Sectors 56..79: only 64..71 are the rule's to drop; the others
	 * were not asked to be lost. */
	write_ok(f, 56, 24, 117);
	h_expect_initial(dev, 64 * 512, 4 * KiB);
	h_expect_pattern(dev, 56 * 512, 4 * KiB, 117, 0);
	h_expect_pattern(dev, 72 * 512, 4 * KiB, 117, 16 * 512);
}

/* ---- delay -------------------------------------------------------------- */

static struct tl_rec rec; /* outlives a test that fails */

static void delay_ms_delays_every_io(void **state)
{
	struct h_env *env = h_env(state);
	const uint64_t ms = 80;
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 118);
	struct block_device *f = fault_open(env, "delay=80", dev);
	char *buf = h_alloc_aligned(4 * KiB);
	struct io_region r = {f, 24, 8};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.notify = {tl_rec_cb, &rec},
		.client = client(),
	};
	unsigned long bits;
	uint64_t t0;
	int err;

	t0 = h_now_ms();
	write_ok(f, 0, 8, 119);
	assert_true(h_now_ms() - t0 >= ms);
	t0 = h_now_ms();
	assert_int_equal(io(DM_IO_OP_READ, buf, f, 0, 8, &bits, &err), 0);
	assert_true(h_now_ms() - t0 >= ms);
	assert_int_equal(h_pattern_mismatch(buf, 4 * KiB, 119, 0), -1);

	h_pattern(buf, 4 * KiB, 120, 0);
	tl_rec_init(&rec);
	t0 = h_now_ms();
	assert_int_equal(dm_io(&req, 1, &r, NULL), 0);
	assert_true(tl_rec_wait(&rec, 1, 30000));
	assert_int_equal(atomic_load(&rec.bits), 0);
	assert_true(atomic_load(&rec.done_ms) - t0 >= ms);
	h_expect_pattern(dev, 24 * 512, 4 * KiB, 120, 0);
	free(buf);
}

/* ---- opening ------------------------------------------------------------ */

static void bad_option_strings_are_einval(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 256 * KiB, 121);
	static const char nine_rules[] = "fail=0+1,fail=1+1,fail=2+1,fail=3+1,"
					 "fail=4+1,fail=5+1,fail=6+1,fail=7+1,"
					 "fail=8+1";
	static const char *const bad[] = {
		"bogus=1",
		"fail=8",
		"fail=0+0",
		"fail=+8",
		"fail=x+8",
		"fail=0+y",
		"fail=",
		"fail-reads=8+-1",
		"fail=18446744073709551615+2",
		"errno=EFOO",
		"errno=0",
		"errno=5000",
		"errno=",
		"delay=x",
		"delay=-5",
		"delay=3600001",
		"after=",
		"after=-1",
		"after=1x",
		"fail=all,Fail=all",
		nine_rules, /* one rule too many */
	};
	char spec[512];
	unsigned int i;

	for (i = 0; i < H_NR(bad); i++) {
		struct block_device *b;

		snprintf(spec, sizeof(spec), "fault:%s:%s", bad[i], dev->path);
		errno = 0;
		b = dm_bdev_open(spec, 0);
		if (b) {
			dm_bdev_close(b);
			fail_msg("dm_bdev_open(\"%s\") accepted it", spec);
		}
		if (errno != EINVAL)
			fail_msg(
				"dm_bdev_open(\"%s\"): errno %d (%s), expected "
				"EINVAL",
				spec, errno, strerror(errno));
	}
	/* No device after the options, or none at all. */
	for (i = 0; i < 3; i++) {
		const char *s[] = {"fault:fail=0+8",
				   "fault:fail=0+8:", "fault:"};

		errno = 0;
		assert_null(dm_bdev_open(s[i], 0));
		assert_int_equal(errno, EINVAL);
	}
	/* Eight rules are fine, and so is the same spec with good options;
	 * a missing device is the device's error. */
	fault_open(env,
		   "fail=0+1,fail=1+1,fail=2+1,fail=3+1,fail=4+1,fail=5+1,"
		   "fail=6+1,fail=7+1,after=5,delay=0,errno=EROFS",
		   dev);
	errno = 0;
	assert_null(dm_bdev_open("fault:fail=all:/nonexistent/dmio", 0));
	assert_int_equal(errno, ENOENT);
	h_expect_untouched(dev);
}

static void bad_option_without_value_is_einval(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 256 * KiB, 122);
	static const char *const bad[] = {
		"bogus", "fail",	   "after",
		",",	 "fail=0+8,after", "fail=0+8,,after=1"};
	char spec[256];
	unsigned int i;

	for (i = 0; i < H_NR(bad); i++) {
		snprintf(spec, sizeof(spec), "fault:%s:%s", bad[i], dev->path);
		errno = 0;
		assert_null(dm_bdev_open(spec, 0));
		assert_int_equal(errno, EINVAL);
	}
}

static void fault_device_has_the_wrapped_devices_geometry(void **state)
{
	struct h_env *env = h_env(state);
	/* 4096-byte blocks on a loop device; files have 512. */
	struct h_dev *dev = h_dev_new_lbs(env, 1 * MiB, 123, 4096);
	struct block_device *inner = h_open(env, dev, 0);
	struct block_device *f = fault_open(env, "fail-reads=0+8", dev);
	struct dm_bdev_info info, iinfo;
	char spec[256];

	snprintf(spec, sizeof(spec), "fault:fail-reads=0+8:%s", dev->path);
	assert_string_equal(dm_bdev_name(f), spec);
	assert_int_equal(dm_bdev_nr_sectors(f), dm_bdev_nr_sectors(inner));
	assert_int_equal(dm_bdev_logical_block_size(f),
			 dm_bdev_logical_block_size(inner));
	assert_int_equal(dm_bdev_get_info(f, &info), 0);
	assert_int_equal(dm_bdev_get_info(inner, &iinfo), 0);
	assert_string_equal(info.kind, "fault");
	assert_int_equal(info.max_transfer, iinfo.max_transfer);
	assert_int_equal(info.flags, iinfo.flags);
	/* Past the end and (on 4096-byte blocks) misaligned regions fail
	 * as they would on the device itself. */
	write_fails(f, 2048, 8, ENXIO);
	if (dm_bdev_logical_block_size(inner) == 4096)
		write_fails(f, 1, 8, EINVAL);
	write_ok(f, 8, 8, 124);
	h_expect_pattern(dev, 8 * 512, 4 * KiB, 124, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		F_TEST(fail_writes_fails_only_writes_touching_the_range),
		F_TEST(every_errno_option_reaches_region_errors),
		F_TEST(fail_reads_sets_the_bit_and_zero_fills),
		F_TEST(after_n_the_rules_apply_from_the_next_io),
		F_TEST(drop_writes_reports_success_and_writes_nothing),
		F_TEST(drop_writes_drops_only_its_own_sectors),
		F_TEST(delay_ms_delays_every_io),
		F_TEST(bad_option_strings_are_einval),
		F_TEST(bad_option_without_value_is_einval),
		F_TEST(fault_device_has_the_wrapped_devices_geometry),
	};

	return H_RUN("fault", tests, tests);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * <dmio/blkdev.h>: opening regular files and block devices, what they
 * report, the errno of every refusal, and close.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static void open_reports_size_in_sectors(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 3 * MiB, 1);
	struct block_device *bdev = h_open(env, dev, 0);

	assert_int_equal(dm_bdev_nr_sectors(bdev), 3 * MiB / 512);
}

static void open_file_size_rounds_down_to_whole_sectors(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_file_new(env, 64 * KiB + 100, 1);
	struct block_device *bdev = h_open(env, dev, 0);

	assert_int_equal(dm_bdev_nr_sectors(bdev), 128);
}

static void file_size_is_read_at_open(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_file_new(env, 64 * KiB, 1);
	struct block_device *bdev = h_open(env, dev, 0);
	struct io_region where = {bdev, 128, 8};
	unsigned long bits = 0;
	char *buf = h_alloc(4 * KiB);

	/* The file grows after open: the device keeps the size it had. */
	assert_int_equal(ftruncate(dev->fd, 128 * KiB), 0);
	assert_int_equal(dm_bdev_nr_sectors(bdev), 128);
	memset(buf, 0x5a, 4 * KiB);
	assert_int_equal(dm_io_sync_vm(1, &where, DM_IO_WRITE, buf, &bits),
			 -EIO);
	assert_int_equal(bits, 1);
	free(buf);
}

static void open_reports_512_logical_block_size(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new_lbs(env, 1 * MiB, 1, 512);
	struct block_device *bdev = h_open(env, dev, 0);

	assert_int_equal(dm_bdev_logical_block_size(bdev), 512);
}

static void open_reports_4096_logical_block_size(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_loop_new(env, 1 * MiB, 1, 4096);
	struct block_device *bdev = h_open(env, dev, 0);

	assert_int_equal(dm_bdev_logical_block_size(bdev), 4096);
	assert_int_equal(dm_bdev_nr_sectors(bdev), 1 * MiB / 512);
}

static void name_is_the_spec(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 64 * KiB, 1);
	struct block_device *bdev = h_open(env, dev, 0);

	assert_string_equal(dm_bdev_name(bdev), dev->path);
	assert_ptr_not_equal(dm_bdev_name(bdev), dev->path);
}

static void close_returns_zero(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 64 * KiB, 1);
	struct block_device *bdev = dm_bdev_open(dev->path, 0);

	assert_non_null(bdev);
	assert_int_equal(dm_bdev_close(bdev), 0);
	assert_int_equal(dm_bdev_close(NULL), 0);
}

static void open_missing_path_is_enoent(void **state)
{
	struct h_env *env = h_env(state);
	char path[128];

	snprintf(path, sizeof(path), "%s/no-such-file", env->dir);
	errno = 0;
	assert_null(dm_bdev_open(path, 0));
	assert_int_equal(errno, ENOENT);
	errno = 0;
	assert_null(dm_bdev_open(path, DM_BDEV_RDONLY));
	assert_int_equal(errno, ENOENT);
	/* dm_bdev_open(3): it never creates a file. */
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(errno, ENOENT);
}

/* dm_bdev_open(3): a 0-byte file opens as a device of 0 sectors, on which
 * every region with sectors fails with ENXIO and nothing grows the file;
 * a region of count 0 is skipped, and a flush succeeds. */
static void open_empty_file_is_a_device_of_no_sectors(void **state)
{
	struct h_env *env = h_env(state);
	char path[128], buf[512];
	struct block_device *bdev;
	struct io_region one, none;
	struct dm_io_request req = {
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = dm_io_client_create(),
	};
	unsigned long bits;
	int errs[1], fd, rw;
	struct stat st;

	assert_non_null(req.client);
	req.region_errors = errs;
	snprintf(path, sizeof(path), "%s/empty", env->dir);
	fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	bdev = h_open_spec(env, path, 0);
	assert_int_equal(dm_bdev_nr_sectors(bdev), 0);
	one = (struct io_region){bdev, 0, 1};
	none = (struct io_region){bdev, 0, 0};
	for (rw = DM_IO_OP_READ; rw <= DM_IO_OP_WRITE; rw++) {
		memset(buf, 0x77, sizeof(buf));
		req.bi_opf = (unsigned int)rw;
		bits = 0;
		errs[0] = 0;
		assert_int_equal(dm_io(&req, 1, &one, &bits), -EIO);
		assert_int_equal(bits, 1);
		assert_int_equal(errs[0], -ENXIO);
		assert_int_equal(dm_io(&req, 1, &none, &bits), 0);
		assert_int_equal(bits, 0);
	}
	req.bi_opf = DM_IO_OP_FLUSH;
	assert_int_equal(dm_io(&req, 1, &none, &bits), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
	dm_io_client_destroy(req.client);
	unlink(path);
}

static void open_directory_is_eisdir(void **state)
{
	struct h_env *env = h_env(state);

	errno = 0;
	assert_null(dm_bdev_open(env->dir, 0));
	assert_int_equal(errno, EISDIR);
	errno = 0;
	assert_null(dm_bdev_open(env->dir, DM_BDEV_RDONLY));
	assert_int_equal(errno, EISDIR);
}

static void open_char_device_is_enodev(void **state)
{
	(void)h_env(state);
	errno = 0;
	assert_null(dm_bdev_open("/dev/null", 0));
	assert_int_equal(errno, ENODEV);
	errno = 0;
	assert_null(dm_bdev_open("/dev/null", DM_BDEV_RDONLY));
	assert_int_equal(errno, ENODEV);
}

static void open_fifo_is_enodev_without_blocking(void **state)
{
	struct h_env *env = h_env(state);
	char path[128];

	snprintf(path, sizeof(path), "%s/fifo", env->dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	/* open(2) of a FIFO with no writer would block: the test timeout
	 * catches that. */
	errno = 0;
	assert_null(dm_bdev_open(path, 0));
	assert_int_equal(errno, ENODEV);
	unlink(path);
}

static void open_bad_flags_is_einval(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 64 * KiB, 1);

	errno = 0;
	assert_null(dm_bdev_open(dev->path, DM_BDEV_DIRECT | DM_BDEV_BUFFERED));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(dm_bdev_open(dev->path, 1u << 7));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(dm_bdev_open(dev->path, ~0u));
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_null(dm_bdev_open(NULL, 0));
	assert_int_equal(errno, EINVAL);
	h_expect_untouched(dev);
}

static void open_rdonly_reads_and_refuses_writes(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 64 * KiB, 7);
	struct block_device *bdev = h_open(env, dev, DM_BDEV_RDONLY);
	struct io_region where = {bdev, 8, 16};
	unsigned long bits = 0;
	char *buf = h_alloc_aligned(8 * KiB);

	assert_int_equal(dm_bdev_nr_sectors(bdev), 128);
	assert_int_equal(dm_io_sync_vm(1, &where, DM_IO_READ, buf, &bits), 0);
	assert_int_equal(bits, 0);
	assert_int_equal(h_pattern_mismatch(buf, 8 * KiB, 7, 8 * 512), -1);

	memset(buf, 0x5a, 8 * KiB);
	assert_int_equal(dm_io_sync_vm(1, &where, DM_IO_WRITE, buf, &bits),
			 -EIO);
	assert_int_equal(bits, 1);
	free(buf);
	h_expect_untouched(dev);
}

/* The EBUSY test holds the completion thread in one callback so that a
 * second request's completion cannot be reaped: its device is busy. */
struct busy {
	sem_t entered, release;
	atomic_uint done;
};

static void hold_cb(unsigned long error, void *context)
{
	struct busy *b = context;

	(void)error;
	sem_post(&b->entered);
	sem_wait(&b->release);
	atomic_fetch_add(&b->done, 1);
}

static void count_cb(unsigned long error, void *context)
{
	struct busy *b = context;

	(void)error;
	atomic_fetch_add(&b->done, 1);
}

static void close_with_io_in_flight_is_ebusy(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *d0 = h_dev_new(env, 256 * KiB, 1);
	struct h_dev *d1 = h_dev_new(env, 256 * KiB, 2);
	struct block_device *b0 = h_open(env, d0, 0);
	struct block_device *b1 = dm_bdev_open(d1->path, 0);
	struct dm_io_client *client = dm_io_client_create();
	struct io_region r0 = {b0, 0, 8}, r1 = {b1, 0, 64};
	char *buf = h_alloc_aligned(32 * KiB);
	static struct busy b; /* outlives the test if it fails */
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.notify = {.fn = hold_cb, .context = &b},
	};

	assert_non_null(b1);
	assert_non_null(client);
	if (strcmp(dm_io_client_backend(client, NULL), "io_uring")) {
		/* Holding the one completion thread keeps the second write's
		 * completion unreaped only where there is one such thread. */
		print_message("SKIP: needs the io_uring backend, this client "
			      "runs on \"%s\"\n",
			      dm_io_client_backend(client, NULL));
		dm_io_client_destroy(client);
		dm_bdev_close(b1);
		free(buf);
		skip();
	}
	req.client = client;
	sem_init(&b.entered, 0, 0);
	sem_init(&b.release, 0, 0);
	atomic_init(&b.done, 0);
	h_pattern(buf, 32 * KiB, 99, 0);

	assert_int_equal(dm_io(&req, 1, &r0, NULL), 0);
	sem_wait(&b.entered);
	req.notify.fn = count_cb;
	assert_int_equal(dm_io(&req, 1, &r1, NULL), 0);
	/* Whether or not the write has reached the file, its completion
	 * has not been reaped: the device is in use. */
	if (dm_bdev_close(b1) != -EBUSY) {
		sem_post(&b.release);
		dm_io_client_destroy(client);
		free(buf);
		fail_msg("dm_bdev_close() of a device with I/O in flight did "
			 "not return -EBUSY");
	}
	sem_post(&b.release);
	assert_true(h_wait_count(&b.done, 2, 30000));
	/* Still open and usable after -EBUSY, then closes normally. */
	assert_int_equal(dm_bdev_nr_sectors(b1), 512);
	assert_int_equal(dm_bdev_close(b1), 0);
	dm_io_client_destroy(client);
	h_expect_pattern(d1, 0, 32 * KiB, 99, 0);
	h_expect_initial(d1, 32 * KiB, 224 * KiB);
	sem_destroy(&b.entered);
	sem_destroy(&b.release);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest file_tests[] = {
		H_TEST(open_reports_size_in_sectors),
		H_TEST(open_reports_512_logical_block_size),
		H_TEST(name_is_the_spec),
		H_TEST(close_returns_zero),
		H_TEST(open_missing_path_is_enoent),
		H_TEST(open_directory_is_eisdir),
		H_TEST(open_char_device_is_enodev),
		H_TEST(open_fifo_is_enodev_without_blocking),
		H_TEST(open_bad_flags_is_einval),
		H_TEST(open_rdonly_reads_and_refuses_writes),
		H_TEST(close_with_io_in_flight_is_ebusy),
		H_TEST(open_file_size_rounds_down_to_whole_sectors),
		H_TEST(file_size_is_read_at_open),
		H_TEST(open_empty_file_is_a_device_of_no_sectors),
	};
	const struct CMUnitTest loop_tests[] = {
		H_TEST(open_reports_size_in_sectors),
		H_TEST(open_reports_512_logical_block_size),
		H_TEST(name_is_the_spec),
		H_TEST(close_returns_zero),
		H_TEST(open_missing_path_is_enoent),
		H_TEST(open_directory_is_eisdir),
		H_TEST(open_char_device_is_enodev),
		H_TEST(open_fifo_is_enodev_without_blocking),
		H_TEST(open_bad_flags_is_einval),
		H_TEST(open_rdonly_reads_and_refuses_writes),
		H_TEST(close_with_io_in_flight_is_ebusy),
		H_TEST(open_reports_4096_logical_block_size),
	};

	h_group_seed_pages = 256;
	return H_RUN("bdev", file_tests, loop_tests);
}

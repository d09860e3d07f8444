/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test harness shared by every test program: a private directory under
 * /dev/shm, pattern-filled devices that are either regular files or loop
 * block devices over files, and helpers to check what really reached them.
 *
 * Every behaviour test runs in two cmocka groups, "file" and "loop", on the
 * same test functions; the group's struct h_env says which kind of device
 * h_dev_new() makes.  Loop devices need root: h_env() skips the test with a
 * printed reason otherwise.
 *
 * Include <cmocka.h>'s prerequisites and <cmocka.h> itself through this file.
 */
#ifndef DMIO_TESTS_HARNESS_H
#define DMIO_TESTS_HARNESS_H

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include <dmio/dm-io.h>

#include "tl.h"

#define H_MAX_DEVS   16
#define H_MAX_BDEVS  32
#define H_MAX_MOUNTS 4
#define KiB	     (1024ul)
#define MiB	     (1024ul * 1024ul)

enum h_kind {
	H_FILE,
	H_LOOP
};

struct h_dev {
	char path[128]; /* what dm_bdev_open() takes */
	char file[128]; /* the regular file (unlinked for loops) */
	int fd;		/* the real bytes: the file or the loop's backing */
	struct tl_loop loop; /* loop.fd < 0 for a plain file */
	uint64_t size;	     /* bytes at creation */
	uint32_t seed;	     /* initial content: h_pattern(seed, offset) */
	bool sparse;	     /* initial content: a hole (zeroes), not seed's */
	struct timespec mtime;
	/* a queue attribute changed by h_loop_set_queue_attr(), restored by
	 * h_test_teardown() */
	char attr_name[32];
	char attr_old[32];
};

struct h_env {
	enum h_kind kind;
	char dir[64];
	unsigned int nr_devs;
	struct h_dev devs[H_MAX_DEVS];
	unsigned int nr_bdevs;
	struct block_device *bdevs[H_MAX_BDEVS];
	unsigned int nr_mounts;
	char mounts[H_MAX_MOUNTS][96]; /* h_mount(): unmounted at teardown */
	pid_t delayfs_pid;	       /* h_delayfs_file()'s server, or 0 */
	unsigned int seed_held;	 /* pages this test holds by h_seed_get() */
	unsigned int group_seed; /* pages the group holds */
};

/* Pages the group setups reserve with dm_io_get() (0: none).  Set it in
 * main() before running the groups. */
extern unsigned int h_group_seed_pages;

/* ---- patterns ----------------------------------------------------------- */

/* The byte at stream position @pos of the pattern @seed. */
uint8_t h_pattern_byte(uint32_t seed, uint64_t pos);
/* Fill @buf with the pattern @seed starting at stream position @pos. */
void h_pattern(void *buf, size_t len, uint32_t seed, uint64_t pos);
/* Offset of the first byte of @buf that differs from the pattern, or -1. */
long h_pattern_mismatch(const void *buf, size_t len, uint32_t seed,
			uint64_t pos);
/* Offset of the first byte of @buf that is not @byte, or -1. */
long h_byte_mismatch(const void *buf, size_t len, uint8_t byte);

/* ---- directories, files, loop devices --------------------------------------
 * (built on tests/lib/tl.h: tl_rmtree(), tl_loop_attach(), ...)
 */

/* mkdtemp /dev/shm/dmio-test-PID-XXXXXX, first removing such directories
 * left by test processes that died without their teardown. */
int h_tmpdir_make(char *dir, size_t size);
static inline int h_tmpdir_remove(const char *dir)
{
	return tl_rmtree(dir);
}
/* Create @path of @size bytes filled with h_pattern(@seed, 0); returns an
 * O_RDWR fd or -errno. */
int h_file_create(const char *path, uint64_t size, uint32_t seed);
/* Attach a free loop device over @backing_fd with logical block size @lbs
 * (LOOP_CTL_GET_FREE + LOOP_CONFIGURE, LO_FLAGS_AUTOCLEAR).  0 or -errno. */
static inline int h_loop_attach(int backing_fd, unsigned int lbs,
				struct tl_loop *lo)
{
	return tl_loop_attach(backing_fd, lbs, lo);
}
static inline void h_loop_detach(struct tl_loop *lo)
{
	tl_loop_detach(lo);
}
/* Shrink a loop device with its backing file to @size bytes. */
int h_loop_shrink(struct h_dev *dev, uint64_t size);

/* Skip the running test with "SKIP: <why>" unless we can make loop devices. */
void h_need_root(const char *why);
/* Skip the running test with "SKIP: <why>" unless we may mount(2). */
void h_need_mount(const char *why);

/* ---- cmocka fixtures --------------------------------------------------------
 */

int h_group_setup_file(void **state);
int h_group_setup_loop(void **state);
int h_group_teardown(void **state);
int h_test_setup(void **state);
int h_test_teardown(void **state);

/* The test's environment; skips the test in the loop group without root. */
struct h_env *h_env(void **state);

/* Run @tests in the "file" and "loop" groups (either may be NULL); returns
 * the number of failures for main(), or 77 (meson's "skipped") when every
 * test was skipped for want of root. */
int h_run(const char *name, const struct CMUnitTest *file_tests, size_t nr_file,
	  const struct CMUnitTest *loop_tests, size_t nr_loop);

#define H_TEST(f)                                                              \
	cmocka_unit_test_setup_teardown(f, h_test_setup, h_test_teardown)
#define H_NR(a)		    (sizeof(a) / sizeof((a)[0]))
#define H_RUN(name, ft, lt) h_run(name, ft, H_NR(ft), lt, H_NR(lt))

/* ---- devices in a test -------------------------------------------------- */

/* A device of @size bytes holding h_pattern(@seed, offset): a file in the
 * file group, a loop device with logical block size @lbs in the loop group.
 * Fails the test when it cannot be made; cleaned up by h_test_teardown(). */
struct h_dev *h_dev_new(struct h_env *env, uint64_t size, uint32_t seed);
struct h_dev *h_dev_new_lbs(struct h_env *env, uint64_t size, uint32_t seed,
			    unsigned int lbs);
/* Always a regular file / always a loop device (skips without root). */
struct h_dev *h_file_new(struct h_env *env, uint64_t size, uint32_t seed);
struct h_dev *h_loop_new(struct h_env *env, uint64_t size, uint32_t seed,
			 unsigned int lbs);

/*
 * A device like h_dev_new()'s of kind @kind whose file lives in @dir (a
 * mount from h_mount(), say).  @sparse: the file is a hole of @size bytes
 * (reads as zeroes; it takes no space) instead of the pattern @seed.
 */
struct h_dev *h_dev_new_in(struct h_env *env, const char *dir, enum h_kind kind,
			   uint64_t size, uint32_t seed, bool sparse);

/*
 * Write @value to the loop device's /sys/block/loopN/queue/@attr (e.g.
 * "max_sectors_kb"), remembering the old value: h_test_teardown() puts it
 * back before the device is detached, so that the next user of the loop
 * number does not inherit it.  Fails the test when the kernel refuses.
 */
void h_loop_set_queue_attr(struct h_dev *dev, const char *attr,
			   const char *value);

/* ---- mounts ------------------------------------------------------------- */

/*
 * Mount a new file system of type @fstype ("tmpfs", "ramfs") with options
 * @opts (may be NULL) on a fresh directory inside the test's directory and
 * return that directory.  Skips the test without root; fails it when the
 * mount fails.  h_test_teardown() unmounts it after the devices are gone.
 */
const char *h_mount(struct h_env *env, const char *fstype, const char *opts);

/*
 * A file of @size_mib MiB, initially zeroes, on a delayfs mount
 * (bench/delayfs.c, FUSE) whose reads complete @read_delay_ms after they
 * arrive: I/O that stays in flight for as long as a test needs.  Skips
 * without root, /dev/fuse or the program (DMIO_TEST_DELAYFS, set by the
 * build when libfuse3 is there); h_test_teardown() unmounts it.
 */
const char *h_delayfs_file(struct h_env *env, unsigned int size_mib,
			   unsigned int read_delay_ms);

/* dm_bdev_open() that must succeed; closed by h_test_teardown(). */
struct block_device *h_open(struct h_env *env, struct h_dev *dev,
			    unsigned int flags);
/* The same for any spec (a fault: wrapper, ...). */
struct block_device *h_open_spec(struct h_env *env, const char *spec,
				 unsigned int flags);
/* Close a device from h_open() now; asserts dm_bdev_close() returned 0. */
void h_close(struct h_env *env, struct block_device *bdev);

/* Read @len real bytes at @off (pread on the file or the loop's backing). */
void h_dev_read(struct h_dev *dev, uint64_t off, void *buf, size_t len);
/* Assert the device holds h_pattern(@seed, @pos...) at [@off, @off+@len). */
void h_expect_pattern(struct h_dev *dev, uint64_t off, size_t len,
		      uint32_t seed, uint64_t pos);
/* Assert [@off, @off+@len) still holds the device's initial content
 * (zeroes for a sparse device). */
void h_expect_initial(struct h_dev *dev, uint64_t off, size_t len);
/* Assert the whole device holds its initial content, its size is the same
 * and (files) its mtime has not moved. */
void h_expect_untouched(struct h_dev *dev);
/* Current size in bytes of the file or the loop's backing file. */
uint64_t h_dev_file_size(struct h_dev *dev);

/* ---- the seed reservation, undone by h_test_teardown() ----------------------
 */

void h_seed_get(struct h_env *env, unsigned int pages);
void h_seed_put(struct h_env *env, unsigned int pages);

/* ---- memory ------------------------------------------------------------- */

/* malloc'ed memory that must succeed; 4096-aligned for h_alloc_aligned(). */
void *h_alloc(size_t size);
void *h_alloc_aligned(size_t size);
/* A page list of @nr pages; its bytes, starting @offset into the first page,
 * copied from / to a contiguous buffer. */
struct page_list *h_pl_alloc(unsigned int nr);
void h_pl_fill(struct page_list *pl, unsigned int offset, const void *src,
	       size_t len);
void h_pl_copy_out(struct page_list *pl, unsigned int offset, void *dst,
		   size_t len);

/* ---- waiting on completion counters ----------------------------------------
 */

/* Wait until *@v >= @target, at most @timeout_ms; true when reached. */
static inline bool h_wait_count(atomic_uint *v, unsigned int target,
				unsigned int timeout_ms)
{
	return tl_wait_count(v, target, timeout_ms);
}
static inline void h_sleep_ms(unsigned int ms)
{
	tl_sleep_ms(ms);
}
/* CLOCK_MONOTONIC in milliseconds. */
static inline uint64_t h_now_ms(void)
{
	return tl_now_ms();
}

/*
 * Fail the whole program, with "FAIL: <what> took over @seconds s", unless
 * h_watchdog(0, NULL) comes first: how a test whose bug is a hang or a
 * spin fails rather than stalls.  Allocates nothing (the allocators may be
 * failing); @what must outlive the watch.
 */
void h_watchdog(unsigned int seconds, const char *what);

#endif /* DMIO_TESTS_HARNESS_H */

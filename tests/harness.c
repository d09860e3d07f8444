/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test harness: pattern-filled files and devices made with tests/lib
 * (temporary directories, loop devices attached with LOOP_CONFIGURE and
 * LO_FLAGS_AUTOCLEAR, so that a crashing test still leaves no device
 * behind), and cmocka fixtures that clean up whatever a test made, whether
 * it passed or not.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define H_TMPDIR_PARENT "/dev/shm"

unsigned int h_group_seed_pages;
static unsigned int h_skips; /* tests skipped by h_need_root() */

/* ---- patterns ----------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static uint64_t pattern_word(uint32_t seed, uint64_t word)
{
	return mix(word * 0x9e3779b97f4a7c15ull ^
		   ((uint64_t)seed << 32 | seed));
}

uint8_t h_pattern_byte(uint32_t seed, uint64_t pos)
{
	return (uint8_t)(pattern_word(seed, pos >> 3) >> ((pos & 7) * 8));
}

void h_pattern(void *buf, size_t len, uint32_t seed, uint64_t pos)
{
	uint8_t *p = buf;
	size_t i = 0;

	while (i < len) {
		uint64_t w = pattern_word(seed, (pos + i) >> 3);
		unsigned int b = (unsigned int)((pos + i) & 7);

		for (; b < 8 && i < len; b++, i++)
			p[i] = (uint8_t)(w >> (b * 8));
	}
}

long h_pattern_mismatch(const void *buf, size_t len, uint32_t seed,
			uint64_t pos)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != h_pattern_byte(seed, pos + i))
			return (long)i;
	return -1;
}

long h_byte_mismatch(const void *buf, size_t len, uint8_t byte)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != byte)
			return (long)i;
	return -1;
}

/* ---- directories, files, loop devices --------------------------------------
 */

int h_tmpdir_make(char *dir, size_t size)
{
	tl_tmpdir_remove_stale(H_TMPDIR_PARENT);
	return tl_tmpdir_make(dir, size, H_TMPDIR_PARENT, "");
}

int h_file_create(const char *path, uint64_t size, uint32_t seed)
{
	size_t bufsz = 1 * MiB;
	uint64_t off = 0;
	uint8_t *buf;
	int fd, err = 0;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	buf = malloc(bufsz);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	while (off < size) {
		size_t n = size - off < bufsz ? (size_t)(size - off) : bufsz;
		ssize_t w;

		h_pattern(buf, n, seed, off);
		w = pwrite(fd, buf, n, (off_t)off);
		if (w < 0) {
			err = -errno;
			break;
		}
		off += (uint64_t)w;
	}
	free(buf);
out:
	if (err) {
		close(fd);
		unlink(path);
		return err;
	}
	return fd;
}

/* A hole of @size bytes: an O_RDWR fd or -errno. */
static int sparse_create(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		int err = -errno;

		close(fd);
		unlink(path);
		return err;
	}
	return fd;
}

int h_loop_shrink(struct h_dev *dev, uint64_t size)
{
	if (ftruncate(dev->fd, (off_t)size) < 0)
		return -errno;
	return dev->loop.fd >= 0 ? tl_loop_set_capacity(&dev->loop) : 0;
}

void h_need_mount(const char *why)
{
	if (geteuid() != 0) {
		h_skips++;
		print_message("SKIP: %s: mounting a file system needs root "
			      "(euid %u)\n",
			      why, (unsigned int)geteuid());
		skip();
	}
}

void h_need_root(const char *why)
{
	char reason[128];

	if (!tl_loop_available(reason, sizeof(reason))) {
		h_skips++;
		print_message("SKIP: %s: %s\n", why, reason);
		skip();
	}
}

static int queue_attr_path(const struct h_dev *dev, const char *attr,
			   char *path, size_t size)
{
	if (dev->loop.nr < 0 ||
	    snprintf(path, size, "/sys/block/loop%d/queue/%s", dev->loop.nr,
		     attr) >= (int)size) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

static int write_queue_attr(const struct h_dev *dev, const char *attr,
			    const char *value)
{
	char path[128];
	int fd;
	ssize_t w;

	if (queue_attr_path(dev, attr, path, sizeof(path)) < 0)
		return -1;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	w = write(fd, value, strlen(value));
	close(fd);
	return w < 0 ? -1 : 0;
}

void h_loop_set_queue_attr(struct h_dev *dev, const char *attr,
			   const char *value)
{
	char path[128], old[32] = "";
	FILE *f;

	assert_true(dev->loop.fd >= 0);
	assert_true(strlen(attr) < sizeof(dev->attr_name));
	assert_int_equal(queue_attr_path(dev, attr, path, sizeof(path)), 0);
	f = fopen(path, "re");
	if (!f || !fgets(old, sizeof(old), f))
		fail_msg("reading %s: %s", path, strerror(errno));
	fclose(f);
	old[strcspn(old, "\n")] = '\0';
	/* Only the first change is remembered: that is the original. */
	if (!dev->attr_name[0]) {
		memcpy(dev->attr_old, old, sizeof(old));
		snprintf(dev->attr_name, sizeof(dev->attr_name), "%s", attr);
	}
	if (write_queue_attr(dev, attr, value) < 0)
		fail_msg("writing %s to %s: %s", value, path, strerror(errno));
}

/* Unmount and remove a test's mount point.  The loop devices over its
 * files may take a moment to let go of them. */
static int unmount(const char *dir)
{
	int i;

	for (i = 0; i < 200; i++) {
		if (umount2(dir, 0) == 0)
			break;
		if (errno != EBUSY) {
			fprintf(stderr, "harness: umount %s: %s\n", dir,
				strerror(errno));
			return -1;
		}
		h_sleep_ms(10);
	}
	if (i == 200) {
		/* Still busy: detach it now, the kernel frees it when the
		 * last user goes. */
		fprintf(stderr, "harness: %s still busy, lazy unmount\n", dir);
		if (umount2(dir, MNT_DETACH) < 0) {
			fprintf(stderr, "harness: umount -l %s: %s\n", dir,
				strerror(errno));
			return -1;
		}
	}
	rmdir(dir);
	return 0;
}

const char *h_mount(struct h_env *env, const char *fstype, const char *opts)
{
	char *dir;
	int err;

	h_need_mount(fstype);
	assert_true(env->nr_mounts < H_MAX_MOUNTS);
	dir = env->mounts[env->nr_mounts];
	if (snprintf(dir, sizeof(env->mounts[0]), "%s/mnt%u", env->dir,
		     env->nr_mounts) >= (int)sizeof(env->mounts[0]))
		fail_msg("path too long in %s", env->dir);
	if (mkdir(dir, 0700) < 0)
		fail_msg("mkdir %s: %s", dir, strerror(errno));
	err = mount(fstype, dir, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, opts)
		      ? errno
		      : 0;
	if (err) {
		rmdir(dir);
		fail_msg("mount -t %s -o %s %s: %s", fstype, opts ? opts : "",
			 dir, strerror(err));
	}
	env->nr_mounts++;
	return dir;
}

const char *h_delayfs_file(struct h_env *env, unsigned int size_mib,
			   unsigned int read_delay_ms)
{
	const char *prog = getenv("DMIO_TEST_DELAYFS");
	static char file[128];
	char size[16], delay[16], *dir;
	const struct tl_child quiet = {TL_DEVNULL, TL_DEVNULL, TL_DEVNULL,
				       true};
	uint64_t until;
	struct stat st;

	if (!prog || !*prog) {
		h_skips++;
		print_message("SKIP: delayfs was not built (libfuse3-dev)\n");
		skip();
	}
	h_need_mount("delayfs");
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		h_skips++;
		print_message("SKIP: /dev/fuse: %s\n", strerror(errno));
		skip();
	}
	assert_true(env->nr_mounts < H_MAX_MOUNTS);
	assert_int_equal(env->delayfs_pid, 0);
	dir = env->mounts[env->nr_mounts];
	if (snprintf(dir, sizeof(env->mounts[0]), "%s/mnt%u", env->dir,
		     env->nr_mounts) >= (int)sizeof(env->mounts[0]) ||
	    snprintf(file, sizeof(file), "%s/d0", dir) >= (int)sizeof(file))
		fail_msg("path too long in %s", env->dir);
	if (mkdir(dir, 0700) < 0)
		fail_msg("mkdir %s: %s", dir, strerror(errno));
	snprintf(size, sizeof(size), "%u", size_mib);
	snprintf(delay, sizeof(delay), "%llu",
		 (unsigned long long)read_delay_ms * 1000);
	{
		char *argv[] = {(char *)prog, dir, "1", size, "0", delay, NULL};
		pid_t pid = tl_spawn(argv, &quiet);

		if (pid < 0) {
			rmdir(dir);
			fail_msg("%s: %s", prog, strerror((int)-pid));
		}
		env->delayfs_pid = pid;
	}
	/* Counted now, so that teardown unmounts it whatever happens. */
	env->nr_mounts++;
	until = h_now_ms() + 10000;
	while (stat(file, &st) < 0 || (uint64_t)st.st_size != (uint64_t)size_mib
								      << 20) {
		if (h_now_ms() > until)
			fail_msg("delayfs on %s: no %s after 10 s", dir, file);
		h_sleep_ms(10);
	}
	return file;
}

/* ---- cmocka fixtures --------------------------------------------------------
 */

static int group_setup(void **state, enum h_kind kind)
{
	struct h_env *env = calloc(1, sizeof(*env));
	int err;

	if (!env)
		return -1;
	env->kind = kind;
	err = h_tmpdir_make(env->dir, sizeof(env->dir));
	if (err) {
		fprintf(stderr, "harness: mkdtemp: %s\n", strerror(-err));
		free(env);
		return -1;
	}
	if (h_group_seed_pages) {
		err = dm_io_get(h_group_seed_pages);
		if (err) {
			fprintf(stderr, "harness: dm_io_get(%u): %s\n",
				h_group_seed_pages, strerror(-err));
			tl_rmtree(env->dir);
			free(env);
			return -1;
		}
		env->group_seed = h_group_seed_pages;
	}
	*state = env;
	return 0;
}

int h_group_setup_file(void **state)
{
	return group_setup(state, H_FILE);
}

int h_group_setup_loop(void **state)
{
	return group_setup(state, H_LOOP);
}

int h_group_teardown(void **state)
{
	struct h_env *env = *state;

	if (!env)
		return 0;
	if (env->group_seed)
		dm_io_put(env->group_seed);
	tl_rmtree(env->dir);
	free(env);
	*state = NULL;
	return 0;
}

int h_test_setup(void **state)
{
	struct h_env *env = *state;

	env->nr_devs = 0;
	env->nr_bdevs = 0;
	env->nr_mounts = 0;
	env->delayfs_pid = 0;
	env->seed_held = 0;
	return 0;
}

int h_test_teardown(void **state)
{
	struct h_env *env = *state;
	unsigned int i;
	int ret = 0;

	for (i = 0; i < env->nr_bdevs; i++) {
		int err = dm_bdev_close(env->bdevs[i]);

		if (err) {
			fprintf(stderr, "harness: dm_bdev_close(%s): %s\n",
				dm_bdev_name(env->bdevs[i]), strerror(-err));
			ret = -1;
		}
	}
	env->nr_bdevs = 0;
	if (env->seed_held)
		dm_io_put(env->seed_held);
	env->seed_held = 0;
	for (i = 0; i < env->nr_devs; i++) {
		struct h_dev *dev = &env->devs[i];

		if (dev->attr_name[0] && dev->loop.fd >= 0 &&
		    write_queue_attr(dev, dev->attr_name, dev->attr_old) < 0)
			fprintf(stderr, "harness: restoring %s of %s: %s\n",
				dev->attr_name, dev->loop.path,
				strerror(errno));
		dev->attr_name[0] = '\0';
		tl_loop_detach(&dev->loop);
		if (dev->fd >= 0)
			close(dev->fd);
		if (dev->file[0])
			unlink(dev->file);
	}
	env->nr_devs = 0;
	while (env->nr_mounts)
		if (unmount(env->mounts[--env->nr_mounts]))
			ret = -1;
	if (env->delayfs_pid > 0) {
		/* Unmounted, it exits by itself; killed if it does not. */
		tl_wait_bounded(env->delayfs_pid, 5000);
		env->delayfs_pid = 0;
	}
	return ret;
}

struct h_env *h_env(void **state)
{
	struct h_env *env = *state;

	if (env->kind == H_LOOP)
		h_need_root("loop-device group");
	return env;
}

int h_run(const char *name, const struct CMUnitTest *file_tests, size_t nr_file,
	  const struct CMUnitTest *loop_tests, size_t nr_loop)
{
	char group[128];
	int fails = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (nr_file) {
		snprintf(group, sizeof(group), "%s/file", name);
		print_message("[ GROUP    ] %s: regular files\n", group);
		fails += _cmocka_run_group_tests(group, file_tests, nr_file,
						 h_group_setup_file,
						 h_group_teardown);
	}
	if (nr_loop) {
		snprintf(group, sizeof(group), "%s/loop", name);
		print_message("[ GROUP    ] %s: loop devices over /dev/shm "
			      "files\n",
			      group);
		fails += _cmocka_run_group_tests(group, loop_tests, nr_loop,
						 h_group_setup_loop,
						 h_group_teardown);
	}
	/* Nothing ran: tell meson it was skipped (exit status 77). */
	if (!fails && h_skips && h_skips == nr_file + nr_loop)
		return 77;
	return fails;
}

/* ---- devices in a test -------------------------------------------------- */

static struct h_dev *dev_new(struct h_env *env, const char *dir,
			     enum h_kind kind, uint64_t size, uint32_t seed,
			     unsigned int lbs, bool sparse)
{
	struct h_dev *dev;
	struct stat st;
	int fd, err;

	if (kind == H_LOOP)
		h_need_root("loop device");
	assert_true(env->nr_devs < H_MAX_DEVS);
	dev = &env->devs[env->nr_devs];
	memset(dev, 0, sizeof(*dev));
	dev->fd = -1;
	dev->loop.fd = -1;
	if (snprintf(dev->file, sizeof(dev->file), "%s/dev%u.img", dir,
		     env->nr_devs) >= (int)sizeof(dev->file))
		fail_msg("path too long in %s", dir);
	fd = sparse ? sparse_create(dev->file, size)
		    : h_file_create(dev->file, size, seed);
	if (fd < 0)
		fail_msg("creating %s: %s", dev->file, strerror(-fd));
	dev->fd = fd;
	dev->size = size;
	dev->seed = seed;
	dev->sparse = sparse;
	env->nr_devs++; /* from here on teardown cleans it up */

	if (kind == H_LOOP) {
		err = tl_loop_attach(fd, lbs, &dev->loop);
		if (err)
			fail_msg("attaching a loop device (lbs %u) to %s: %s",
				 lbs, dev->file, strerror(-err));
		/* The loop holds the file now: its name is not needed. */
		unlink(dev->file);
		dev->file[0] = '\0';
		memcpy(dev->path, dev->loop.path, sizeof(dev->loop.path));
	} else {
		memcpy(dev->path, dev->file, sizeof(dev->path));
	}
	assert_int_equal(fstat(fd, &st), 0);
	dev->mtime = st.st_mtim;
	return dev;
}

struct h_dev *h_dev_new(struct h_env *env, uint64_t size, uint32_t seed)
{
	return dev_new(env, env->dir, env->kind, size, seed, 512, false);
}

struct h_dev *h_dev_new_lbs(struct h_env *env, uint64_t size, uint32_t seed,
			    unsigned int lbs)
{
	return dev_new(env, env->dir, env->kind, size, seed, lbs, false);
}

struct h_dev *h_file_new(struct h_env *env, uint64_t size, uint32_t seed)
{
	return dev_new(env, env->dir, H_FILE, size, seed, 512, false);
}

struct h_dev *h_loop_new(struct h_env *env, uint64_t size, uint32_t seed,
			 unsigned int lbs)
{
	return dev_new(env, env->dir, H_LOOP, size, seed, lbs, false);
}

struct h_dev *h_dev_new_in(struct h_env *env, const char *dir, enum h_kind kind,
			   uint64_t size, uint32_t seed, bool sparse)
{
	return dev_new(env, dir, kind, size, seed, 512, sparse);
}

struct block_device *h_open_spec(struct h_env *env, const char *spec,
				 unsigned int flags)
{
	struct block_device *bdev;

	assert_true(env->nr_bdevs < H_MAX_BDEVS);
	bdev = dm_bdev_open(spec, flags);
	if (!bdev)
		fail_msg("dm_bdev_open(%s, %#x): %s", spec, flags,
			 strerror(errno));
	env->bdevs[env->nr_bdevs++] = bdev;
	return bdev;
}

struct block_device *h_open(struct h_env *env, struct h_dev *dev,
			    unsigned int flags)
{
	return h_open_spec(env, dev->path, flags);
}

void h_close(struct h_env *env, struct block_device *bdev)
{
	unsigned int i;

	for (i = 0; i < env->nr_bdevs; i++) {
		if (env->bdevs[i] != bdev)
			continue;
		env->bdevs[i] = env->bdevs[--env->nr_bdevs];
		assert_int_equal(dm_bdev_close(bdev), 0);
		return;
	}
	fail_msg("h_close: %p was not opened by h_open()", (void *)bdev);
}

void h_dev_read(struct h_dev *dev, uint64_t off, void *buf, size_t len)
{
	size_t done = 0;

	/* Buffered writes to a block device sit in its page cache until
	 * written back: push them to the backing file first. */
	if (dev->loop.fd >= 0)
		assert_int_equal(fsync(dev->loop.fd), 0);
	while (done < len) {
		ssize_t r = pread(dev->fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (r < 0)
			fail_msg("pread %s: %s", dev->path, strerror(errno));
		if (r == 0)
			fail_msg("pread %s: end of file at %llu", dev->path,
				 (unsigned long long)(off + done));
		done += (size_t)r;
	}
}

void h_expect_pattern(struct h_dev *dev, uint64_t off, size_t len,
		      uint32_t seed, uint64_t pos)
{
	uint8_t *buf = h_alloc(len ? len : 1);
	long bad;

	h_dev_read(dev, off, buf, len);
	bad = h_pattern_mismatch(buf, len, seed, pos);
	if (bad >= 0) {
		uint8_t got = buf[bad];

		free(buf);
		fail_msg("%s: byte %llu is %#04x, expected %#04x (pattern %u "
			 "at %llu)",
			 dev->path, (unsigned long long)(off + (uint64_t)bad),
			 got, h_pattern_byte(seed, pos + (uint64_t)bad), seed,
			 (unsigned long long)(pos + (uint64_t)bad));
	}
	free(buf);
}

void h_expect_initial(struct h_dev *dev, uint64_t off, size_t len)
{
	uint8_t *buf;
	long bad;

	if (!dev->sparse) {
		h_expect_pattern(dev, off, len, dev->seed, off);
		return;
	}
	buf = h_alloc(len ? len : 1);
	h_dev_read(dev, off, buf, len);
	bad = h_byte_mismatch(buf, len, 0);
	free(buf);
	if (bad >= 0)
		fail_msg("%s: byte %llu of a hole is not zero", dev->path,
			 (unsigned long long)(off + (uint64_t)bad));
}

uint64_t h_dev_file_size(struct h_dev *dev)
{
	struct stat st;

	assert_int_equal(fstat(dev->fd, &st), 0);
	return (uint64_t)st.st_size;
}

void h_expect_untouched(struct h_dev *dev)
{
	struct stat st;

	assert_int_equal(fstat(dev->fd, &st), 0);
	if ((uint64_t)st.st_size != dev->size)
		fail_msg("%s: size changed from %llu to %llu", dev->path,
			 (unsigned long long)dev->size,
			 (unsigned long long)st.st_size);
	h_expect_initial(dev, 0, dev->size);
	if (st.st_mtim.tv_sec != dev->mtime.tv_sec ||
	    st.st_mtim.tv_nsec != dev->mtime.tv_nsec)
		fail_msg("%s: modified (mtime moved) although its bytes are "
			 "the same",
			 dev->path);
}

/* ---- the seed reservation ----------------------------------------------- */

void h_seed_get(struct h_env *env, unsigned int pages)
{
	assert_int_equal(dm_io_get(pages), 0);
	env->seed_held += pages;
}

void h_seed_put(struct h_env *env, unsigned int pages)
{
	dm_io_put(pages);
	if (pages <= env->seed_held)
		env->seed_held -= pages;
}

/* ---- memory ------------------------------------------------------------- */

void *h_alloc(size_t size)
{
	void *p = malloc(size);

	if (!p)
		fail_msg("malloc(%zu) failed", size);
	return p;
}

void *h_alloc_aligned(size_t size)
{
	void *p = NULL;

	if (posix_memalign(&p, DM_PAGE_SIZE, size))
		fail_msg("posix_memalign(%zu) failed", size);
	/* Defined bytes: a test that writes a buffer it never filled must
	 * not trip memcheck. */
	memset(p, 0, size);
	return p;
}

struct page_list *h_pl_alloc(unsigned int nr)
{
	struct page_list *pl = dm_page_list_alloc(nr);

	if (!pl)
		fail_msg("dm_page_list_alloc(%u): %s", nr, strerror(errno));
	return pl;
}

static void pl_copy(struct page_list *pl, unsigned int offset, void *buf,
		    size_t len, bool in)
{
	char *p = buf;

	while (len) {
		size_t n = DM_PAGE_SIZE - offset;
		char *addr;

		assert_non_null(pl);
		addr = (char *)dm_page_address(pl->page) + offset;
		if (n > len)
			n = len;
		if (in)
			memcpy(addr, p, n);
		else
			memcpy(p, addr, n);
		p += n;
		len -= n;
		offset = 0;
		pl = pl->next;
	}
}

void h_pl_fill(struct page_list *pl, unsigned int offset, const void *src,
	       size_t len)
{
	pl_copy(pl, offset, (void *)src, len, true);
}

void h_pl_copy_out(struct page_list *pl, unsigned int offset, void *dst,
		   size_t len)
{
	pl_copy(pl, offset, dst, len, false);
}

/* ---- watchdog ---------------------------------------------------------- */

static const char *watch_what;

static void watch_fired(int sig)
{
	static const char fail[] = "FAIL: ", took[] = " took too long\n";

	(void)sig;
	if (write(2, fail, sizeof(fail) - 1) < 0 ||
	    write(2, watch_what, strlen(watch_what)) < 0 ||
	    write(2, took, sizeof(took) - 1) < 0)
		_exit(1);
	_exit(1);
}

void h_watchdog(unsigned int seconds, const char *what)
{
	watch_what = what ? what : "the test";
	signal(SIGALRM, watch_fired);
	alarm(seconds);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backends (issue 3, design.md 2): DMIO_BACKEND=threads and =io_uring
 * force one, an unknown value is refused with EINVAL, and without it the
 * library takes io_uring where io_uring_setup(2) works and the thread pool
 * where it does not; dm_io_client_backend() says which and why.
 *
 * The suite also runs every program under no-uring (io_uring_setup fails
 * with EPERM), with DMIO_TEST_EXPECT_BACKEND=threads in the environment:
 * then this program checks that the filter is in force and that the
 * library noticed it by itself.
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <dmio/dm-kcopyd.h>

#include "harness.h"

/* DMIO_BACKEND as the test found it, put back by backend_teardown(). */
static char *saved_backend;
static bool had_backend;

static int backend_setup(void **state)
{
	const char *v = getenv("DMIO_BACKEND");

	had_backend = v != NULL;
	free(saved_backend);
	saved_backend = v ? strdup(v) : NULL;
	if (v && !saved_backend)
		return -1;
	return h_test_setup(state);
}

static int backend_teardown(void **state)
{
	if (had_backend)
		setenv("DMIO_BACKEND", saved_backend, 1);
	else
		unsetenv("DMIO_BACKEND");
	return h_test_teardown(state);
}

#define B_TEST(f)                                                              \
	cmocka_unit_test_setup_teardown(f, backend_setup, backend_teardown)

static void set_backend(const char *value)
{
	if (value)
		assert_int_equal(setenv("DMIO_BACKEND", value, 1), 0);
	else
		assert_int_equal(unsetenv("DMIO_BACKEND"), 0);
}

/* Are we under no-uring?  Then io_uring must be blocked. */
static bool expect_threads(void)
{
	const char *v = getenv("DMIO_TEST_EXPECT_BACKEND");

	return v && !strcmp(v, "threads");
}

/* 0 when io_uring_setup(2) works here, else its errno. */
static int probe_uring(void)
{
	struct io_uring_params p;
	long fd;

	memset(&p, 0, sizeof(p));
	fd = syscall(__NR_io_uring_setup, 4, &p);
	if (fd < 0)
		return errno;
	close((int)fd);
	return 0;
}

static void expect_why(const char *why, const char *needle)
{
	assert_non_null(why);
	if (!strstr(why, needle))
		fail_msg("the backend's why \"%s\" does not mention \"%s\"",
			 why, needle);
}

/* The client moves data: a mirrored write to two devices of the group,
 * read back synchronously and asynchronously. */
static struct tl_rec rec; /* outlives a test that fails */

static void round_trip(struct h_env *env, struct dm_io_client *client)
{
	size_t len = 96 * KiB;
	struct h_dev *d0 = h_dev_new(env, 1 * MiB, 61);
	struct h_dev *d1 = h_dev_new(env, 1 * MiB, 62);
	struct io_region where[2] = {{h_open(env, d0, 0), 8, len >> 9},
				     {h_open(env, d1, 0), 1024, len >> 9}};
	char *data = h_alloc_aligned(len), *got = h_alloc_aligned(len);
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.client = client,
	};
	unsigned long bits = ~0ul;

	h_pattern(data, len, 63, 0);
	assert_int_equal(dm_io(&req, 2, where, &bits), 0);
	assert_int_equal(bits, 0);
	h_expect_pattern(d0, 8 * 512, len, 63, 0);
	h_expect_pattern(d1, 1024 * 512, len, 63, 0);
	req.bi_opf = DM_IO_OP_READ;
	req.mem.ptr.addr = got;
	assert_int_equal(dm_io(&req, 1, &where[1], &bits), 0);
	assert_memory_equal(got, data, len);
	memset(got, 0, len);
	tl_rec_init(&rec);
	req.notify = (struct dm_io_notify){tl_rec_cb, &rec};
	assert_int_equal(dm_io(&req, 1, &where[0], NULL), 0);
	assert_true(tl_rec_wait(&rec, 1, 30000));
	assert_int_equal(atomic_load(&rec.bits), 0);
	assert_memory_equal(got, data, len);
	free(data);
	free(got);
}

static void threads_forced_by_dmio_backend(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_io_client *client;
	const char *why = NULL;

	set_backend("threads");
	client = dm_io_client_create();
	if (!client)
		fail_msg("DMIO_BACKEND=threads: dm_io_client_create: %s",
			 strerror(errno));
	assert_string_equal(dm_io_client_backend(client, &why), "threads");
	expect_why(why, "DMIO_BACKEND");
	/* why may be NULL */
	assert_string_equal(dm_io_client_backend(client, NULL), "threads");
	round_trip(env, client);
	dm_io_client_destroy(client);
}

static void io_uring_forced_by_dmio_backend(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_io_client *client;
	const char *why = NULL;
	int uring = probe_uring();

	set_backend("io_uring");
	client = dm_io_client_create();
	if (expect_threads() || uring) {
		/* Forced and unavailable: refused, with io_uring_setup's
		 * errno, never a silent fallback. */
		if (client)
			fail_msg("DMIO_BACKEND=io_uring without io_uring gave "
				 "a client on \"%s\"",
				 dm_io_client_backend(client, NULL));
		assert_int_equal(errno, uring ? uring : EPERM);
		return;
	}
	if (!client)
		fail_msg("DMIO_BACKEND=io_uring: dm_io_client_create: %s",
			 strerror(errno));
	assert_string_equal(dm_io_client_backend(client, &why), "io_uring");
	expect_why(why, "DMIO_BACKEND");
	round_trip(env, client);
	dm_io_client_destroy(client);
}

static void unknown_dmio_backend_is_einval(void **state)
{
	const char *bogus[] = {"bogus", "THREADS", "threads ", "uring"};
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 64 * KiB, 64);
	struct io_region r = {h_open(env, dev, 0), 0, 8};
	char *buf = h_alloc_aligned(4 * KiB);
	unsigned int i;

	for (i = 0; i < H_NR(bogus); i++) {
		struct dm_io_client *client;
		struct dm_kcopyd_client *kc;

		set_backend(bogus[i]);
		errno = 0;
		client = dm_io_client_create();
		if (client)
			fail_msg("DMIO_BACKEND=\"%s\" gave a client on \"%s\"",
				 bogus[i], dm_io_client_backend(client, NULL));
		assert_int_equal(errno, EINVAL);
		/* Everything that makes a client says so too. */
		errno = 0;
		kc = dm_kcopyd_client_create();
		if (kc)
			fail_msg("DMIO_BACKEND=\"%s\" gave a kcopyd client",
				 bogus[i]);
		assert_int_equal(errno, EINVAL);
		assert_int_equal(dm_io_get(16), -EINVAL);
	}
	/* Nothing was reserved by the refused dm_io_get()s: the seed API
	 * still has no client. */
	set_backend("threads");
	assert_int_equal(dm_io_sync_vm(1, &r, DM_IO_READ, buf, NULL), -EINVAL);
	free(buf);
}

static void default_is_io_uring_else_threads_with_the_reason(void **state)
{
	struct h_env *env = h_env(state);
	struct dm_io_client *client;
	const char *name, *why = NULL;
	int uring = probe_uring();

	set_backend(NULL);
	if (expect_threads() && uring != EPERM)
		fail_msg("DMIO_TEST_EXPECT_BACKEND=threads, but io_uring_setup "
			 "says %s: the no-uring filter is not in force",
			 uring ? strerror(uring) : "fine");
	client = dm_io_client_create();
	if (!client)
		fail_msg("dm_io_client_create: %s", strerror(errno));
	name = dm_io_client_backend(client, &why);
	print_message("backend: %s (%s)\n", name, why);
	if (uring) {
		assert_string_equal(name, "threads");
		expect_why(why, "io_uring_setup failed");
	} else {
		assert_string_equal(name, "io_uring");
	}
	round_trip(env, client);
	dm_io_client_destroy(client);
}

static void backend_of_null_client_is_null(void **state)
{
	const char *why = "untouched";

	(void)h_env(state);
	assert_null(dm_io_client_backend(NULL, &why));
	assert_null(dm_io_client_backend(NULL, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		B_TEST(threads_forced_by_dmio_backend),
		B_TEST(io_uring_forced_by_dmio_backend),
		B_TEST(unknown_dmio_backend_is_einval),
		B_TEST(default_is_io_uring_else_threads_with_the_reason),
		B_TEST(backend_of_null_client_is_null),
	};
	int ret;

	ret = H_RUN("backend", tests, tests);
	free(saved_backend);
	return ret;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The default client's life (design.md 1.1 "Reservation"): reservations
 * that come and go while another is held, the last put made from a
 * completion callback, and a child of fork() using the seed API.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__) && !defined(UNDER_TSAN)
#define UNDER_TSAN 1
#endif

/* Resident set size, or with @mapped the whole mapped size, in bytes. */
static uint64_t statm_bytes(bool mapped)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
	fclose(f);
	return (uint64_t)(mapped ? size : resident) *
	       (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t rss_bytes(void)
{
	return statm_bytes(false);
}

/* 20,000 get/put cycles beside a held reservation: a put gives its share
 * back (or the next get reuses it), so the process stays flat. */
static void reserve_cycles_keep_rss_flat(void **state)
{
	enum {
		CYCLES = 20000,
		WARMUP = 1000,
		SAMPLE = 500
	};
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 70);
	struct io_region where = {h_open(env, dev, 0), 16, 8};
	char *buf = h_alloc_aligned(DM_PAGE_SIZE);
	uint64_t base = 0, peak = 0, rss;
	unsigned int i;

	h_seed_get(env, 16);
	h_pattern(buf, DM_PAGE_SIZE, 71, 0);
	for (i = 0; i < CYCLES; i++) {
		assert_int_equal(dm_io_get(4), 0);
		/* Now and then some I/O, so that the arenas are used. */
		if (i % SAMPLE == 0)
			assert_int_equal(dm_io_sync_vm(1, &where, DM_IO_WRITE,
						       buf, NULL),
					 0);
		dm_io_put(4);
		if (i == WARMUP)
			base = rss_bytes();
		if (i > WARMUP && i % SAMPLE == 0) {
			rss = rss_bytes();
			peak = rss > peak ? rss : peak;
		}
	}
	h_expect_pattern(dev, 16 * 512, DM_PAGE_SIZE, 71, 0);
	free(buf);
	if (peak > base + 8 * MiB)
		fail_msg("RSS grew by %llu KiB over %d get(4)/put(4) cycles",
			 (unsigned long long)((peak - base) / KiB),
			 CYCLES - WARMUP);
}

/* A big reservation given back while a small one stays: its arena (mapped
 * for the sum) is replaced by one the size of what is still held. */
static void big_reservation_put_unmaps_its_arena(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 75);
	struct io_region where = {h_open(env, dev, 0), 0, 8};
	char *buf = h_alloc_aligned(DM_PAGE_SIZE);
	uint64_t before, during, after;

	h_seed_get(env, 16);
	h_pattern(buf, DM_PAGE_SIZE, 76, 0);
	before = statm_bytes(true);
	h_seed_get(env, 32768); /* 128 MiB of I/O: a few hundred MiB mapped */
	during = statm_bytes(true);
	h_seed_put(env, 32768);
	after = statm_bytes(true);
	assert_int_equal(dm_io_sync_vm(1, &where, DM_IO_WRITE, buf, NULL), 0);
	h_expect_pattern(dev, 0, DM_PAGE_SIZE, 76, 0);
	free(buf);
	assert_true(during > before + 128 * MiB);
	if (after > before + 16 * MiB)
		fail_msg("%llu MiB still mapped after the put",
			 (unsigned long long)((after - before) / MiB));
}

struct put_race {
	struct io_region where;
	char *buf;
	int ret;
	atomic_uint put_done;
};

static void *sync_writer(void *arg)
{
	struct put_race *r = arg;

	r->ret = dm_io_sync_vm(1, &r->where, DM_IO_WRITE, r->buf, NULL);
	return NULL;
}

static void put_from_callback(unsigned long error, void *context)
{
	struct put_race *r = context;

	(void)error;
	dm_io_put(1); /* the last one */
	atomic_store(&r->put_done, 1);
}

/* The last put, made from a completion callback while another thread
 * waits in a synchronous seed write that this completion thread has to
 * finish: the put returns at once, the write completes, the default
 * client goes once both are done. */
static void last_put_from_callback_during_sync_write(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *slow = h_dev_new(env, 1 * MiB, 72);
	struct h_dev *fast = h_dev_new(env, 1 * MiB, 73);
	char spec[sizeof(slow->path) + 32];
	struct io_region where;
	struct put_race r = {.ret = 1};
	pthread_t writer;
	bool put_returned;

	snprintf(spec, sizeof(spec), "fault:delay=300:%s", slow->path);
	r.where = (struct io_region){h_open_spec(env, spec, 0), 0, 8};
	where = (struct io_region){h_open(env, fast, 0), 0, 8};
	r.buf = h_alloc_aligned(DM_PAGE_SIZE);
	h_pattern(r.buf, DM_PAGE_SIZE, 74, 0);
	atomic_init(&r.put_done, 0);
	assert_int_equal(dm_io_get(1), 0); /* put by the callback */

	h_watchdog(20, "dm_io_put() from a callback during a sync write");
	assert_int_equal(pthread_create(&writer, NULL, sync_writer, &r), 0);
	h_sleep_ms(50); /* let the writer get into its delayed write */
	assert_int_equal(dm_io_async_vm(1, &where, DM_IO_WRITE, r.buf,
					put_from_callback, &r),
			 0);
	put_returned = h_wait_count(&r.put_done, 1, 15000);
	pthread_join(writer, NULL);
	h_watchdog(0, NULL);

	assert_true(put_returned);
	assert_int_equal(r.ret, 0);
	h_expect_pattern(slow, 0, DM_PAGE_SIZE, 74, 0);
	h_expect_pattern(fast, 0, DM_PAGE_SIZE, 74, 0);
	/* The reservation is gone. */
	assert_int_equal(dm_io_sync_vm(1, &where, DM_IO_WRITE, r.buf, NULL),
			 -EINVAL);
	free(r.buf);
}

/* The child's side of fork_child_uses_seed_api: its exit status says which
 * step went wrong (0: none).  No cmocka here: this is another process. */
static int child_seed_io(struct io_region *where, char *buf, char *back)
{
	h_watchdog(20, "seed I/O in a child of fork()");
	/* Two regions: handed to the backend, not run on this thread. */
	if (dm_io_sync_vm(2, where, DM_IO_WRITE, buf, NULL))
		return 10;
	if (dm_io_sync_vm(1, where, DM_IO_READ, back, NULL) ||
	    memcmp(buf, back, DM_PAGE_SIZE))
		return 11;
	dm_io_put(16); /* the inherited reservation: the child's client goes */
	if (dm_io_sync_vm(1, where, DM_IO_READ, back, NULL) != -EINVAL)
		return 12;
	if (dm_io_get(2) || dm_io_sync_vm(1, where, DM_IO_READ, back, NULL))
		return 13;
	dm_io_put(2);
	h_watchdog(0, NULL);
	return 0;
}

/* TSan cannot start threads in the child of a multi-threaded fork (it
 * dies, or loses track of thread ids): the child's own client is checked
 * by the other builds. */
static void skip_under_tsan(void)
{
#ifdef UNDER_TSAN
	printf("SKIP: TSan does not run threads started after fork()\n");
	skip();
#endif
}

/* A child of fork() that uses the seed API works on a client of its own,
 * and the parent's default client is untouched. */
static void fork_child_uses_seed_api(void **state)
{
	skip_under_tsan();
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 90);
	struct block_device *b = h_open(env, dev, 0);
	struct io_region parent[2] = {{b, 0, 8}, {b, 8, 8}};
	struct io_region child[2] = {{b, 64, 8}, {b, 72, 8}};
	char *buf = h_alloc_aligned(DM_PAGE_SIZE);
	char *back = h_alloc_aligned(DM_PAGE_SIZE);
	unsigned int i;
	int status;
	pid_t pid;

	h_seed_get(env, 16);
	h_pattern(buf, DM_PAGE_SIZE, 91, 0);
	assert_int_equal(dm_io_sync_vm(2, parent, DM_IO_WRITE, buf, NULL), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		int code;

		h_pattern(buf, DM_PAGE_SIZE, 92, 0);
		code = child_seed_io(child, buf, back);
		free(buf);
		free(back);
		_exit(code);
	}
	/* Meanwhile, and after, the parent goes on with its own. */
	for (i = 0; i < 200; i++) {
		h_pattern(buf, DM_PAGE_SIZE, 100 + i, 0);
		assert_int_equal(
			dm_io_sync_vm(2, parent, DM_IO_WRITE, buf, NULL), 0);
		assert_int_equal(
			dm_io_sync_vm(1, parent, DM_IO_READ, back, NULL), 0);
		assert_int_equal(
			h_pattern_mismatch(back, DM_PAGE_SIZE, 100 + i, 0), -1);
		if (i == 100)
			assert_int_equal(waitpid(pid, &status, 0), pid);
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	h_expect_pattern(dev, 64 * 512, DM_PAGE_SIZE, 92, 0);
	h_expect_pattern(dev, 72 * 512, DM_PAGE_SIZE, 92, 0);
	h_expect_pattern(dev, 8 * 512, DM_PAGE_SIZE, 299, 0);
	free(buf);
	free(back);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		H_TEST(reserve_cycles_keep_rss_flat),
		H_TEST(big_reservation_put_unmaps_its_arena),
		H_TEST(last_put_from_callback_during_sync_write),
		H_TEST(fork_child_uses_seed_api),
	};

	h_group_seed_pages = 0;
	return h_run("seed-life", tests, H_NR(tests), NULL, 0);
}

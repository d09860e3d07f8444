/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The default client's life (design.md 1.1 "Reservation"): reservations
 * that come and go while another is held, the last put made from a
 * completion callback, and a child of fork() using the seed API.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* Resident set size in bytes. */
static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%lu %lu", &size, &resident), 2);
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* 20,000 get/put cycles beside a held reservation: a put gives its share
 * back (or the next get reuses it), so the process stays flat. */
static void reserve_cycles_keep_rss_flat(void **state)
{
	enum { CYCLES = 20000, WARMUP = 1000, SAMPLE = 500 };
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		H_TEST(reserve_cycles_keep_rss_flat),
	};

	h_group_seed_pages = 0;
	return h_run("seed-life", tests, H_NR(tests), NULL, 0);
}

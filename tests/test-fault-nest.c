/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault: devices over fault: devices.  Closing the outer one while I/O is
 * in flight in any level below is refused with -EBUSY, and refused means
 * nothing was torn down: the device stays fully usable, and closes once
 * the I/O is done.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void count_cb(unsigned long error, void *context)
{
	atomic_uint *n = context;

	if (!error)
		atomic_fetch_add(n, 1);
}

/* Three levels, the delay innermost: the write waits in the bottom level
 * while the two above have passed it on. */
static void close_busy_nested_fault_keeps_device(void **state)
{
	struct h_env *env = h_env(state);
	struct h_dev *dev = h_dev_new(env, 1 * MiB, 80);
	char spec[sizeof(dev->path) + 64];
	struct block_device *outer;
	struct io_region where;
	char *buf = h_alloc_aligned(2 * DM_PAGE_SIZE);
	atomic_uint done;
	int busy, again;

	snprintf(spec, sizeof(spec), "fault::fault::fault:delay=1000:%s",
		 dev->path);
	outer = h_open_spec(env, spec, 0);
	h_pattern(buf, 2 * DM_PAGE_SIZE, 81, 0);
	atomic_init(&done, 0);
	h_seed_get(env, 8);
	where = (struct io_region){outer, 0, 8};

	h_watchdog(30, "I/O to a nested fault: device after -EBUSY");
	assert_int_equal(
		dm_io_async_vm(1, &where, DM_IO_WRITE, buf, count_cb, &done),
		0);
	h_sleep_ms(200); /* the upper levels pass it on at once */
	busy = dm_bdev_close(outer);
	/* Refused: the device works as before, every level of it. */
	where.sector = 8;
	again = dm_io_sync_vm(1, &where, DM_IO_WRITE, buf + DM_PAGE_SIZE, NULL);
	assert_true(h_wait_count(&done, 1, 20000));
	h_watchdog(0, NULL);

	assert_int_equal(busy, -EBUSY);
	assert_int_equal(again, 0);
	h_close(env, outer); /* nothing in flight now: 0 */
	h_expect_pattern(dev, 0, 2 * DM_PAGE_SIZE, 81, 0);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		H_TEST(close_busy_nested_fault_keeps_device),
	};

	h_group_seed_pages = 0;
	return H_RUN("fault-nest", tests, tests);
}

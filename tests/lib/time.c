/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Clocks and bounded waits (see tl.h). */
#include <errno.h>
#include <time.h>

#include "tl.h"

uint64_t tl_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tl_now_ms(void)
{
	return tl_now_ns() / 1000000u;
}

void tl_sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

bool tl_wait_count(atomic_uint *v, unsigned int target, unsigned int timeout_ms)
{
	uint64_t start = tl_now_ms();

	for (;;) {
		if (atomic_load(v) >= target)
			return true;
		if (tl_now_ms() - start >= timeout_ms)
			return atomic_load(v) >= target;
		tl_sleep_ms(1);
	}
}

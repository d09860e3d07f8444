/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The completion-callback recorder (see tl.h). */
#include "tl.h"

void tl_rec_init(struct tl_rec *r)
{
	atomic_init(&r->calls, 0);
	atomic_init(&r->bits, ~0ul);
	atomic_init(&r->bits_or, 0);
	atomic_init(&r->done_ms, 0);
}

void tl_rec_cb(unsigned long error, void *context)
{
	struct tl_rec *r = context;

	/* Everything before the count: a waiter that sees the count sees
	 * the rest. */
	atomic_store(&r->done_ms, tl_now_ms());
	atomic_store(&r->bits, error);
	atomic_fetch_or(&r->bits_or, error);
	atomic_fetch_add(&r->calls, 1);
}

bool tl_rec_wait(struct tl_rec *r, unsigned int calls, unsigned int timeout_ms)
{
	return tl_wait_count(&r->calls, calls, timeout_ms);
}

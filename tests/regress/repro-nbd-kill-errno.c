/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * repro-nbd-kill-errno - when an NBD server dies, the failed regions must
 * say so with a connection errno (<dmio/blkdev.h>: "a dropped connection
 * does the same with -ECONNRESET"), never -EINVAL.
 *
 * Found by the soak (seed 1734088684790544: "region 1 (nbdfile/fault1@...)
 * failed with EINVAL; expected success or a connection error").  Two
 * faults in src/nbd.c:
 *  - issue(): a command issued on a handle that has just closed (the
 *    previous command of the same batch met the dead socket) fails in
 *    libnbd with EINVAL ("invalid state: CLOSED"), which becomes the
 *    chunk's result;
 *  - nbd_thread(): kill_export() is given nbd_get_errno(), the thread's
 *    last libnbd error, which may be that EINVAL: the export's sticky
 *    errno is then -EINVAL, and every later request fails with -EINVAL
 *    until the export is reopened.
 *
 * Streams 64-region async writes to an nbdkit memory export, kills the
 * server, and counts the errnos of the failed regions, over a few rounds.
 * Needs nbdkit (exit 77 otherwise).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <dmio/dm-io.h>

#include "nbdkit.h"
#include "tl.h"

#define NR_REG 64
#define ROUNDS 8

static atomic_int inflight, conn_errs, einval_errs, other_errs;

struct ctx {
	int errs[NR_REG];
};

static void done(unsigned long bits, void *context)
{
	struct ctx *c = context;
	int i;

	for (i = 0; i < NR_REG; i++) {
		if (!(bits >> i & 1))
			continue;
		if (c->errs[i] == -EINVAL)
			einval_errs++;
		else if (c->errs[i] == -ECONNRESET || c->errs[i] == -ETIMEDOUT)
			conn_errs++;
		else
			other_errs++;
	}
	free(c);
	inflight--;
}

/* Whatever way we leave, no server and no socket directory stay. */
static void cleanup(void)
{
	nbdkit_stop_all();
}

int main(void)
{
	static const char *const args[] = {"memory", "size=16M", NULL};
	static char buf[4096];
	struct dm_io_client *client;
	char why[512];
	int round, n, i;

	if (!nbdkit_available(why, sizeof(why))) {
		printf("SKIP: needs nbdkit (%s)\n", why);
		return 77;
	}
	atexit(cleanup);
	client = dm_io_client_create();
	if (!client)
		return 2;
	for (round = 0; round < ROUNDS; round++) {
		struct io_region where[NR_REG];
		struct block_device *bdev;
		int einval_before = atomic_load(&einval_errs);
		struct nbdkit *srv = nbdkit_start(args, why, sizeof(why));

		if (!srv) {
			fprintf(stderr, "starting nbdkit: %s\n", why);
			return 2;
		}
		bdev = dm_bdev_open(srv->uri, 0);
		if (!bdev) {
			fprintf(stderr, "cannot reach nbdkit\n");
			return 2;
		}
		for (i = 0; i < NR_REG; i++)
			where[i] =
				(struct io_region){bdev, (sector_t)i * 64, 8};
		for (n = 0; n < 3000; n++) {
			struct ctx *c = calloc(1, sizeof(*c));
			struct dm_io_request rq = {
				.bi_opf = DM_IO_OP_WRITE,
				.client = client,
				.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
				.notify = {done, c},
				.region_errors = c->errs,
			};

			inflight++;
			if (dm_io(&rq, NR_REG, where, NULL)) {
				inflight--;
				free(c);
			}
			while (atomic_load(&inflight) > 16)
				usleep(50);
			if (n == 200)
				nbdkit_sigkill(srv);
		}
		while (atomic_load(&inflight))
			tl_sleep_ms(1);
		dm_bdev_close(bdev);
		nbdkit_stop(srv);
		printf("round %d: failed regions with EINVAL: %d\n", round,
		       atomic_load(&einval_errs) - einval_before);
	}
	printf("failed regions after the kills: connection errno %d, EINVAL "
	       "%d, other %d\n",
	       atomic_load(&conn_errs), atomic_load(&einval_errs),
	       atomic_load(&other_errs));
	dm_io_client_destroy(client);
	return atomic_load(&einval_errs) || atomic_load(&other_errs) ? 1 : 0;
}

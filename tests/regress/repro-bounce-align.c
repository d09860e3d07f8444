/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * repro-bounce-align - O_DIRECT bounce buffers allocated beyond a client's
 * reservation must still be aligned for the device.
 *
 * Found by the soak (seed 318304300372753: "region 3 (loop512/plain@...)
 * failed with EINVAL; expected success").  dmi_pool_alloc() takes memory
 * beyond the reservation from the heap with posix_memalign(), aligned to
 * the page for a page or more but only to 64 bytes below that, while the
 * reserved buddy blocks are aligned to their size.  A bounce buffer of
 * less than a page (a misaligned 3584-byte write) then fails on an
 * O_DIRECT device whose memory alignment is 512 with EINVAL.
 *
 * This fills a client's reservation with requests held in flight by a
 * fault: device's delay, then issues more misaligned 3584-byte writes to an
 * O_DIRECT loop device: every region must succeed.  Needs root (exit 77
 * otherwise).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dmio/dm-io.h>

#include "tl.h"

#define NR_REQS 600

static atomic_int left, failed_einval, failed_other, succeeded;
static int errs[NR_REQS];

static void done(unsigned long bits, void *context)
{
	int i = (int)(long)context;

	if (!bits)
		succeeded++;
	else if (errs[i] == -EINVAL)
		failed_einval++;
	else
		failed_other++;
	left--;
}

/* A loop device over an unlinked /dev/shm file, cleared by the kernel when
 * our descriptor closes. */
static int loop_setup(struct tl_loop *lo)
{
	char img[] = "/dev/shm/dmio-repro-XXXXXX", why[128];
	int fd, err;

	if (!tl_loop_available(why, sizeof(why)))
		return 77;
	fd = mkstemp(img);
	if (fd < 0 || ftruncate(fd, 8 << 20))
		return 2;
	unlink(img);
	err = tl_loop_attach(fd, 512, lo);
	close(fd);
	if (err) {
		fprintf(stderr, "LOOP_CONFIGURE: %s\n", strerror(-err));
		return 77;
	}
	return 0;
}

int main(void)
{
	struct dm_io_client *client;
	struct block_device *bdev;
	struct tl_loop lo;
	char spec[64];
	char *buf;
	int i, ret;

	ret = loop_setup(&lo);
	if (ret) {
		if (ret == 77)
			printf("SKIP: needs root and loop devices\n");
		return ret;
	}
	/* The delay holds every request, and its memory, in flight. */
	snprintf(spec, sizeof(spec), "fault:delay=300:%s", lo.path);
	bdev = dm_bdev_open(spec, 0); /* a block device: O_DIRECT */
	client = dm_io_client_create();
	buf = aligned_alloc(4096, 8192);
	if (!bdev || !client || !buf) {
		perror("setup");
		return 2;
	}
	memset(buf, 0x5a, 8192);
	atomic_store(&left, NR_REQS);
	for (i = 0; i < NR_REQS; i++) {
		struct io_region where = {bdev, (sector_t)i * 8, 7};
		struct dm_io_request rq = {
			.bi_opf = DM_IO_OP_WRITE,
			.client = client,
			/* Misaligned: the library bounces it. */
			.mem = {.type = DM_IO_KMEM, .ptr.addr = buf + 1},
			.notify = {done, (void *)(long)i},
			.region_errors = &errs[i],
		};

		ret = dm_io(&rq, 1, &where, NULL);
		if (ret) {
			printf("request %d refused: %d\n", i, ret);
			left--;
		}
	}
	while (atomic_load(&left))
		tl_sleep_ms(1);
	printf("%s: %d of %d bounced 3584-byte O_DIRECT writes succeeded, "
	       "%d failed with EINVAL, %d otherwise\n",
	       lo.path, atomic_load(&succeeded), NR_REQS,
	       atomic_load(&failed_einval), atomic_load(&failed_other));
	dm_io_client_destroy(client);
	dm_bdev_close(bdev);
	tl_loop_detach(&lo);
	free(buf);
	return atomic_load(&failed_einval) || atomic_load(&failed_other) ? 1
									 : 0;
}

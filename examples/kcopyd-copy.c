/*
 * kcopyd-copy: copy the first MiB of SRC to two destinations with kcopyd,
 * and report each destination's result.
 *
 *   kcopyd-copy SRC DST1 DST2
 */
#include <dmio/dm-kcopyd.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>

static sem_t done;
static struct dm_kcopyd_errors errs;

/* Runs on the kcopyd client's thread, once per job. */
static void copied(int read_err, unsigned long write_err, void *context)
{
	const char **names = context;
	int i;

	if (read_err)
		printf("%s: read failed: %s\n", names[1], strerror(-errs.read));
	for (i = 0; i < 2; i++)
		printf("%s: %s\n", names[i + 2],
		       write_err & 1UL << i ? strerror(-errs.dests[i])
					    : "copied");
	sem_post(&done);
}

int main(int argc, char **argv)
{
	struct block_device *bdev[3];
	struct io_region from, to[2];
	struct dm_kcopyd_client *kc;
	int i, ret;

	if (argc != 4) {
		fprintf(stderr, "usage: kcopyd-copy SRC DST1 DST2\n");
		return 2;
	}
	for (i = 0; i < 3; i++) {
		bdev[i] = dm_bdev_open(argv[i + 1], i ? 0 : DM_BDEV_RDONLY);
		if (!bdev[i]) {
			perror(argv[i + 1]);
			return 1;
		}
	}
	from = (struct io_region){bdev[0], 0, 2048};
	to[0] = (struct io_region){bdev[1], 0, 2048};
	to[1] = (struct io_region){bdev[2], 0, 2048};
	sem_init(&done, 0, 0);
	kc = dm_kcopyd_client_create();
	ret = kc ? dm_kcopyd_copy_errors(kc, &from, 2, to, 0, copied, argv,
					 &errs)
		 : -1;
	if (ret) {
		fprintf(stderr, "kcopyd refused the job\n");
		return 1;
	}
	sem_wait(&done);
	dm_kcopyd_client_destroy(kc);
	for (i = 0; i < 3; i++)
		dm_bdev_close(bdev[i]);
	return 0;
}

/*
 * async-chain: write a file front to back, one 4 KiB block at a time, each
 * write submitted from the completion callback of the one before — the
 * pattern kcopyd-like engines use.  The main thread just waits.
 *
 *   async-chain FILE
 */
#include <dmio/dm-io.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define BLOCKS 256

struct chain {
	struct dm_io_client *client;
	struct block_device *bdev;
	char block[4096];
	unsigned int next, failed;
	pthread_mutex_t lock;
	pthread_cond_t done;
	int finished;
};

static void write_next(struct chain *ch);

/* Runs on the library's completion thread; it may submit more I/O. */
static void written(unsigned long error, void *context)
{
	struct chain *ch = context;

	if (error)
		ch->failed++;
	write_next(ch);
}

static void write_next(struct chain *ch)
{
	struct io_region where = {ch->bdev, (sector_t)ch->next * 8, 8};
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = ch->block},
		.notify = {.fn = written, .context = ch},
		.client = ch->client,
	};

	if (ch->next < BLOCKS) {
		ch->next++;
		if (dm_io(&req, 1, &where, NULL) == 0)
			return; /* written() runs exactly once */
		ch->failed++;
	}
	pthread_mutex_lock(&ch->lock);
	ch->finished = 1;
	pthread_cond_signal(&ch->done);
	pthread_mutex_unlock(&ch->lock);
}

int main(int argc, char **argv)
{
	static struct chain ch = {.lock = PTHREAD_MUTEX_INITIALIZER,
				  .done = PTHREAD_COND_INITIALIZER};

	if (argc != 2) {
		fprintf(stderr, "usage: async-chain FILE\n");
		return 2;
	}
	ch.bdev = dm_bdev_open(argv[1], 0);
	ch.client = dm_io_client_create();
	if (!ch.bdev || !ch.client) {
		perror(argv[1]);
		return 1;
	}
	memset(ch.block, 'c', sizeof(ch.block));
	write_next(&ch);

	pthread_mutex_lock(&ch.lock);
	while (!ch.finished)
		pthread_cond_wait(&ch.done, &ch.lock);
	pthread_mutex_unlock(&ch.lock);
	printf("%u blocks written in a chain of callbacks, %u failed\n",
	       ch.next, ch.failed);
	dm_io_client_destroy(ch.client);
	dm_bdev_close(ch.bdev);
	return ch.failed ? 1 : 0;
}

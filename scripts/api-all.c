/*
 * api-all: a program outside the tree that uses every function of the
 * seed API, the request API, devices and pages, built against an
 * installed libdmio with pkg-config.  Exit 0 when everything behaved.
 *
 *   api-all FILE   (FILE: at least 1 MiB, its first 64 KiB are rewritten)
 */
#include <dmio/dm-io.h>
#include <dmio/dm-kcopyd.h>
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>

static sem_t done;
static unsigned long last_error = ~0UL;

static void notify(unsigned long error, void *context)
{
	(void)context;
	last_error = error;
	sem_post(&done);
}

static void copied(int read_err, unsigned long write_err, void *context)
{
	(void)context;
	last_error = (unsigned long)read_err | write_err;
	sem_post(&done);
}

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "api-all: %s:%d: %s\n", __FILE__,      \
				__LINE__, #cond);                              \
			return 1;                                              \
		}                                                              \
	} while (0)

int main(int argc, char **argv)
{
	struct page_list *pl = dm_page_list_alloc(2);
	struct page *page = dm_page_alloc();
	struct bio_vec bvec[2];
	struct block_device *bdev;
	struct io_region r, to;
	struct dm_io_client *client;
	struct dm_kcopyd_client *kc;
	unsigned long bits;
	static char buf[8192];

	CHECK(argc == 2 && pl && page);
	sem_init(&done, 0, 0);
	bdev = dm_bdev_open(argv[1], 0);
	CHECK(bdev && dm_bdev_nr_sectors(bdev) >= 2048);
	CHECK(dm_bdev_logical_block_size(bdev) >= 512);
	CHECK(!strcmp(dm_bdev_name(bdev), argv[1]));
	memset(dm_page_address(page), 'p', DM_PAGE_SIZE);
	memset(dm_page_address(pl->page), 'l', DM_PAGE_SIZE);
	memset(dm_page_address(pl->next->page), 'l', DM_PAGE_SIZE);
	bvec[0] = (struct bio_vec){page, DM_PAGE_SIZE, 0};
	bvec[1] = (struct bio_vec){pl->page, DM_PAGE_SIZE, 0};
	r = (struct io_region){bdev, 0, 16};

	CHECK(dm_io_sync_vm(1, &r, DM_IO_WRITE, buf, &bits) == -EINVAL);
	CHECK(dm_io_get(16) == 0);
	CHECK(dm_io_sync(1, &r, DM_IO_WRITE, pl, 0, &bits) == 0 && !bits);
	CHECK(dm_io_sync_bvec(1, &r, DM_IO_WRITE, bvec, &bits) == 0);
	CHECK(dm_io_sync_vm(1, &r, DM_IO_READ, buf, &bits) == 0);
	CHECK(buf[0] == 'p' && buf[8191] == 'l');
	CHECK(dm_io_async(1, &r, DM_IO_WRITE, pl, 0, notify, NULL) == 0);
	sem_wait(&done);
	CHECK(last_error == 0);
	CHECK(dm_io_async_bvec(1, &r, DM_IO_READ, bvec, notify, NULL) == 0);
	sem_wait(&done);
	CHECK(last_error == 0);
	CHECK(dm_io_async_vm(1, &r, DM_IO_WRITE, buf, notify, NULL) == 0);
	sem_wait(&done);
	CHECK(last_error == 0);
	dm_io_put(16);

	client = dm_io_client_create();
	CHECK(client);
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = client,
	};
	CHECK(dm_io(&req, 1, &r, &bits) == 0 && buf[0] == 'p');

	kc = dm_kcopyd_client_create();
	CHECK(kc);
	to = (struct io_region){bdev, 1024, 16};
	CHECK(dm_kcopyd_copy(kc, &r, 1, &to, 0, copied, NULL) == 0);
	sem_wait(&done);
	CHECK(last_error == 0);
	dm_kcopyd_client_destroy(kc);

	dm_io_client_destroy(client);
	CHECK(dm_bdev_close(bdev) == 0);
	dm_page_free(page);
	dm_page_list_free(pl);
	printf("api-all: every function of the public API works here\n");
	return 0;
}

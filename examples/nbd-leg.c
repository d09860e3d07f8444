/*
 * nbd-leg: mirror a write to a local file and an NBD export, then read the
 * export back.  The export can be on another machine: the API is the same.
 *
 *   nbd-leg FILE nbd+unix:///?socket=/tmp/nbd.sock
 *   nbd-leg FILE nbd://server.example/export
 */
#include <dmio/dm-io.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	static char data[1 << 20], back[1 << 20];
	struct io_region where[2];
	struct block_device *bdev[2];
	struct dm_io_client *client = dm_io_client_create();
	unsigned long bits = 0;
	int errs[2], i, ret;

	if (argc != 3 || !client) {
		fprintf(stderr, "usage: nbd-leg FILE NBD-URI\n");
		return 2;
	}
	for (i = 0; i < 2; i++) {
		bdev[i] = dm_bdev_open(argv[i + 1], 0);
		if (!bdev[i]) {
			fprintf(stderr, "%s: %s\n", argv[i + 1],
				strerror(errno));
			return 1;
		}
		where[i] = (struct io_region){bdev[i], 0, sizeof(data) >> 9};
	}
	/* A leg that stops answering fails with -ETIMEDOUT after 2 s. */
	dm_bdev_set_timeout(bdev[1], 2000);
	memset(data, 'n', sizeof(data));
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE,
		.mem = {.type = DM_IO_VMA, .ptr.vma = data},
		.client = client,
		.region_errors = errs,
	};
	ret = dm_io(&req, 2, where, &bits);
	for (i = 0; i < 2; i++)
		printf("%s: %s\n", argv[i + 1],
		       bits & 1UL << i ? strerror(-errs[i]) : "written");
	req.bi_opf = DM_IO_OP_READ;
	req.mem.ptr.vma = back;
	if (!ret)
		ret = dm_io(&req, 1, &where[1], NULL);
	printf("read back from the export: %s\n",
	       ret				  ? strerror(-ret)
	       : memcmp(back, data, sizeof(data)) ? "DIFFERENT"
						  : "same");
	dm_io_client_destroy(client);
	dm_bdev_close(bdev[0]);
	dm_bdev_close(bdev[1]);
	return ret ? 1 : 0;
}

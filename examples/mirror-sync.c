/*
 * mirror-sync: write the same 64 KiB to every device named on the command
 * line in one call, and say which legs failed and why.
 *
 *   mirror-sync /dev/shm/a.img /dev/shm/b.img nbd+unix:///?socket=/run/nbd.sock
 */
#include <dmio/dm-io.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	static char data[64 << 10];
	struct io_region where[8];
	unsigned long bits = 0;
	int errs[8], i, ret, n = argc - 1 < 8 ? argc - 1 : 8;

	for (i = 0; i < n; i++) {
		where[i] =
			(struct io_region){dm_bdev_open(argv[i + 1], 0), 2048,
					   sizeof(data) >> SECTOR_SHIFT};
		if (!where[i].bdev) {
			perror(argv[i + 1]);
			return 2;
		}
	}
	memset(data, 'x', sizeof(data));
	struct dm_io_request req = {
		.bi_opf = DM_IO_OP_WRITE | DM_IO_FUA, /* durable on return */
		.mem = {.type = DM_IO_KMEM, .ptr.addr = data},
		.client = dm_io_client_create(), /* notify.fn NULL: sync */
		.region_errors = errs, /* beyond the kernel: why a leg failed */
	};
	ret = dm_io(&req, (unsigned int)n, where, &bits);
	if (ret && ret != -EIO) {
		fprintf(stderr, "refused: %s\n", strerror(-ret)); /* no I/O */
		return 2;
	}
	for (i = 0; i < n; i++) {
		printf("%s: %s\n", argv[i + 1],
		       bits & 1UL << i ? strerror(-errs[i]) : "written");
		dm_bdev_close(where[i].bdev);
	}
	dm_io_client_destroy(req.client);
	return ret ? 1 : 0;
}

/*
 * mirror: write the same 256 KiB to three files in one call, read each copy
 * back, and print what happened to every leg.
 *
 *   cc mirror.c $(pkg-config --cflags --libs dmio)
 */
#include <dmio/dm-io.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LEGS	   3
#define FILE_BYTES (1 << 20)
#define IO_BYTES   (256 << 10)

int main(void)
{
	char dir[] = "/tmp/dmio-mirror-XXXXXX", path[LEGS][64] = {{0}};
	struct block_device *bdev[LEGS] = {0};
	struct io_region where[LEGS];
	unsigned long bits = 0;
	char *data, *back;
	int i, ret, status = 1;

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	data = malloc(IO_BYTES);
	back = malloc(IO_BYTES);
	if (!data || !back)
		goto out;
	for (i = 0; i < IO_BYTES; i++)
		data[i] = (char)(i * 31 + 7);

	for (i = 0; i < LEGS; i++) {
		int fd;

		snprintf(path[i], sizeof(path[i]), "%s/leg%d.img", dir, i);
		fd = open(path[i], O_CREAT | O_RDWR, 0600);
		if (fd < 0 || ftruncate(fd, FILE_BYTES) < 0) {
			perror(path[i]);
			goto out;
		}
		close(fd);
		bdev[i] = dm_bdev_open(path[i], 0);
		if (!bdev[i]) {
			perror(path[i]);
			goto out;
		}
		/* Each copy at a different place: sector 0, 512, 1024. */
		where[i] = (struct io_region){bdev[i], (sector_t)i * 512,
					      IO_BYTES >> SECTOR_SHIFT};
	}

	ret = dm_io_get(IO_BYTES / DM_PAGE_SIZE * LEGS);
	if (ret) {
		fprintf(stderr, "dm_io_get: %s\n", strerror(-ret));
		goto out;
	}
	ret = dm_io_sync_vm(LEGS, where, DM_IO_WRITE, data, &bits);
	printf("mirrored %d KiB to %d files: %s (error bits 0x%lx)\n",
	       IO_BYTES >> 10, LEGS, ret ? strerror(-ret) : "ok", bits);

	status = ret ? 1 : 0;
	for (i = 0; i < LEGS; i++) {
		int same;

		memset(back, 0, IO_BYTES);
		ret = dm_io_sync_vm(1, &where[i], DM_IO_READ, back, NULL);
		same = !ret && !memcmp(back, data, IO_BYTES);
		printf("  leg %d  %-36s sector %-5llu %s\n", i, path[i],
		       (unsigned long long)where[i].sector,
		       same ? "read back: identical" : "read back: DIFFERENT");
		if (!same)
			status = 1;
	}
	dm_io_put(IO_BYTES / DM_PAGE_SIZE * LEGS);

out:
	for (i = 0; i < LEGS; i++) {
		if (bdev[i])
			dm_bdev_close(bdev[i]);
		if (path[i][0])
			unlink(path[i]);
	}
	rmdir(dir);
	free(data);
	free(back);
	return status;
}

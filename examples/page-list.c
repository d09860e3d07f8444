/*
 * page-list: the seed API with the kernel's memory types.  Write 3 pages'
 * worth of data that starts 512 bytes into the first page of a page list,
 * then read it back through a bio_vec array of another list's pages.
 *
 *   page-list FILE
 */
#include <dmio/dm-io.h>
#include <stdio.h>
#include <string.h>

#define OFFSET 512
#define BYTES  (3 * DM_PAGE_SIZE)

int main(int argc, char **argv)
{
	struct page_list *out = dm_page_list_alloc(4),
			 *in = dm_page_list_alloc(3);
	struct bio_vec bvec[3];
	struct page_list *pl;
	struct block_device *bdev;
	struct io_region where;
	unsigned long bits;
	int i, ret, same = 1;

	if (argc != 2 || !out || !in) {
		fprintf(stderr, "usage: page-list FILE\n");
		return 2;
	}
	bdev = dm_bdev_open(argv[1], 0);
	if (!bdev || dm_io_get(8)) { /* the seed API needs a reservation */
		perror(argv[1]);
		return 1;
	}
	for (pl = out, i = 0; pl; pl = pl->next, i++)
		memset(dm_page_address(pl->page), 'a' + i, DM_PAGE_SIZE);
	where = (struct io_region){bdev, 0, BYTES >> SECTOR_SHIFT};
	ret = dm_io_sync(1, &where, DM_IO_WRITE, out, OFFSET, &bits);

	for (pl = in, i = 0; pl; pl = pl->next, i++)
		bvec[i] = (struct bio_vec){pl->page, DM_PAGE_SIZE, 0};
	if (!ret)
		ret = dm_io_sync_bvec(1, &where, DM_IO_READ, bvec, &bits);

	/* Byte k of the region came from byte OFFSET + k of the page list. */
	for (i = 0; !ret && i < BYTES; i++) {
		char want = (char)('a' + (OFFSET + i) / DM_PAGE_SIZE);
		char got = ((char *)dm_page_address(
			bvec[i / DM_PAGE_SIZE].bv_page))[i % DM_PAGE_SIZE];

		same &= got == want;
	}
	printf("page list at offset %d written, read back through bio_vecs: "
	       "%s\n",
	       OFFSET,
	       ret    ? strerror(-ret)
	       : same ? "same"
		      : "DIFFERENT");
	dm_io_put(8);
	dm_bdev_close(bdev);
	dm_page_list_free(out);
	dm_page_list_free(in);
	return ret || !same;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * <dmio/dm-io.h> - the device-mapper dm-io service in userspace.
 *
 * Read one region, or write the same data to many regions at once, with a
 * per-region error bitset.  Two front doors share one engine: the six seed
 * functions (dm_io_sync(), dm_io_async(), ... on a default client sized by
 * dm_io_get()/dm_io_put()) and the request API (dm_io() on a client of your
 * own).  See libdmio(7) for the overview.
 */
#ifndef DMIO_DM_IO_H
#define DMIO_DM_IO_H

#include <stdint.h>

#include <dmio/blkdev.h>
#include <dmio/page.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef DMIO_SECTOR_T_DEFINED
#define DMIO_SECTOR_T_DEFINED
typedef uint64_t sector_t; /* 512-byte sectors, always */
#define SECTOR_SHIFT 9
#endif

struct io_region {
	struct block_device *bdev;
	sector_t sector;
	sector_t count; /* 0: the region is skipped */
};

struct bio_vec {
	struct page *bv_page;
	unsigned int bv_len;
	unsigned int bv_offset;
};

/*
 * Called exactly once per accepted asynchronous request, when every region
 * has completed, on a completion thread owned by the library.  @error has
 * bit i set when region i failed.  The callback may submit more asynchronous
 * I/O; a synchronous call made from it returns -EDEADLK.
 */
typedef void (*io_notify_fn)(unsigned long error, void *context);

#define DM_IO_READ	  0 /* the seed's rw: read one region */
#define DM_IO_WRITE	  1 /* the seed's rw: write the same data to every region */
#define DM_IO_MAX_REGIONS (8 * sizeof(unsigned long)) /* one error bit each */

/*
 * dm_io_get - reserve resources for @num_pages pages of I/O in flight at
 * once on the default client (each region's pages count: a 2-page write to
 * 3 regions uses 6).  I/O within the reservation never allocates memory and
 * never fails for lack of it.  Reservations from all callers add up.
 * Returns 0, -EINVAL (num_pages 0 or absurdly large), -ENOMEM, or, when the
 * first reservation cannot create the default client, the error
 * dm_io_client_create() would give (-EINVAL for an unknown DMIO_BACKEND,
 * -EPERM when DMIO_BACKEND=io_uring and io_uring is blocked).
 */
int dm_io_get(unsigned int num_pages);

/*
 * dm_io_put - give back a reservation made with dm_io_get().  The put that
 * brings the total to zero waits for the default client's in-flight I/O,
 * then frees it.  A put larger than what is held changes nothing.
 */
void dm_io_put(unsigned int num_pages);

/*
 * The six seed functions.  @rw is DM_IO_READ (exactly one region) or
 * DM_IO_WRITE (1..DM_IO_MAX_REGIONS regions, same data to each).  Memory:
 * a page list starting @offset bytes into its first page, a bio_vec array
 * covering the region, or any contiguous buffer (the _vm forms).
 *
 * Sync forms return 0 when every region succeeded, -EIO when any bit is set
 * (stored in *@error_bits, which may be NULL), -EINVAL for bad arguments or
 * when no dm_io_get() reservation is held (nothing is issued), -EDEADLK from
 * a completion callback.
 *
 * Async forms return 0 once the request is accepted, then @fn(error,
 * @context) runs exactly once; or a negative errno, and @fn never runs.
 */
int dm_io_sync(unsigned int num_regions, struct io_region *where, int rw,
	       struct page_list *pl, unsigned int offset,
	       unsigned long *error_bits);
int dm_io_async(unsigned int num_regions, struct io_region *where, int rw,
		struct page_list *pl, unsigned int offset, io_notify_fn fn,
		void *context);
int dm_io_sync_bvec(unsigned int num_regions, struct io_region *where, int rw,
		    struct bio_vec *bvec, unsigned long *error_bits);
int dm_io_async_bvec(unsigned int num_regions, struct io_region *where, int rw,
		     struct bio_vec *bvec, io_notify_fn fn, void *context);
int dm_io_sync_vm(unsigned int num_regions, struct io_region *where, int rw,
		  void *data, unsigned long *error_bits);
int dm_io_async_vm(unsigned int num_regions, struct io_region *where, int rw,
		   void *data, io_notify_fn fn, void *context);

/* ---- The request API ---- */

enum dm_io_mem_type {
	DM_IO_PAGE_LIST,
	DM_IO_BVEC,
	DM_IO_VMA,
	DM_IO_KMEM
};

struct dm_io_memory {
	enum dm_io_mem_type type;
	unsigned int offset; /* page-list offset into its first page */
	union {
		struct page_list *pl;
		struct bio_vec *bvec;
		void *vma;
		void *addr;
	} ptr;
};

struct dm_io_notify {
	io_notify_fn fn; /* NULL: dm_io() is synchronous */
	void *context;
};

struct dm_io_client; /* opaque: a ring, a completion thread, reserved memory */

/*
 * dm_io_client_create - a client with its own completion thread and a
 * modest reservation of its own (no dm_io_get() needed).  The backend is
 * io_uring where it works, else a thread pool; DMIO_BACKEND=io_uring or
 * =threads in the environment forces one.
 * Returns the client, or NULL with errno set: ENOMEM; EINVAL for an
 * unknown DMIO_BACKEND value; the io_uring_setup(2) error (EPERM, ENOSYS)
 * when DMIO_BACKEND=io_uring and io_uring is unavailable.
 */
struct dm_io_client *dm_io_client_create(void);

/*
 * dm_io_client_destroy - wait for the client's in-flight I/O (every
 * callback has returned), then free it.  Called from one of the client's
 * own callbacks, it frees the client once that callback has returned and
 * the remaining I/O has drained.  NULL is ignored.
 */
void dm_io_client_destroy(struct dm_io_client *client);

/*
 * dm_io_client_backend - the backend that runs @client's I/O: "io_uring",
 * or "threads" (system calls on a thread pool, used when io_uring is
 * disabled or blocked here, or when the environment variable DMIO_BACKEND
 * is "threads").  When @why is not NULL it receives a sentence saying why
 * (valid as long as the client).  Returns NULL for a NULL client.
 */
const char *dm_io_client_backend(const struct dm_io_client *client,
				 const char **why);

/* bi_opf: one op | flags */
#define DM_IO_OP_READ	      0
#define DM_IO_OP_WRITE	      1
#define DM_IO_OP_FLUSH	      2 /* data-less: make earlier writes durable */
#define DM_IO_OP_DISCARD      3 /* data-less */
#define DM_IO_OP_WRITE_ZEROES 4 /* data-less */
#define DM_IO_OP_MASK	      0xff
#define DM_IO_FUA	      (1u << 8) /* this write is durable when it completes */
/* flush before the write; with count-0 regions, a flush alone */
#define DM_IO_PREFLUSH (1u << 9)

struct dm_io_request {
	unsigned int bi_opf;
	struct dm_io_memory mem;
	struct dm_io_notify notify;
	struct dm_io_client *client;
	/*
	 * Beyond the kernel: when not NULL, an array of num_regions ints that
	 * receives, per region, 0 or the first negative errno that region met
	 * (-EIO, -ENOSPC, -EROFS for a read-only device, -ENXIO for a region
	 * past the end of its device, -EINVAL for a region the device cannot
	 * address with its alignment, ...).  It is written before a sync call
	 * returns or before the callback runs, and must stay valid until then.
	 */
	int *region_errors;
	/* I/O priority for every submission (ioprio_set(2) encoding:
	 * IOPRIO_PRIO_VALUE(class, data)); 0 = default.  A class above 3, or
	 * data with class 0, is refused with -EINVAL.  The thread pool
	 * applies it to its worker threads with ioprio_set(2). */
	unsigned short ioprio;
};

/*
 * dm_io - issue a request on io_req->client.
 * @num_regions, @where: the regions (a read takes exactly one).
 * @sync_error_bits:     for a synchronous request, receives the bitset (may
 *                       be NULL); ignored when notify.fn is set.
 *
 * Synchronous (notify.fn NULL): returns 0 when every region succeeded,
 * -EIO when any region failed, or a negative errno for a refused request.
 * Asynchronous: returns 0 and calls notify.fn exactly once later, or
 * returns a negative errno and never calls it.  notify.fn runs on a library
 * thread, never on the caller's inside dm_io(), but it may run (and
 * return) before dm_io() has returned.  Refusals issue no I/O:
 * -EINVAL (bad argument or unknown op), -EDEADLK (sync call from a
 * completion callback), -ENOMEM (beyond the reservation, and no memory to
 * wait for).  An op a device cannot do is not a refusal: that region gets
 * its bit (and -EOPNOTSUPP in region_errors).  The memory is walked only
 * for regions that will be issued: a request whose every region fails at
 * planning (past the end, read-only, ...) is accepted with all its bits
 * set even if the page list or bio_vec array is malformed.  A flush to a
 * device opened read-only is allowed (there is nothing to write back).
 */
int dm_io(struct dm_io_request *io_req, unsigned int num_regions,
	  struct io_region *where, unsigned long *sync_error_bits);

#ifdef __cplusplus
}
#endif

#endif /* DMIO_DM_IO_H */

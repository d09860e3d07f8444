/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Engine-private: the request, the memory iterators, the reserved pool and
 * the client, shared by dm-io.c, dpages.c, pool.c, client.c, seed.c and
 * kcopyd.c, and by white-box tests.  Backends and device kinds do not
 * include this.
 */
#ifndef DMIO_ENGINE_H
#define DMIO_ENGINE_H

#include "chunk.h"

struct dm_backend;

/* ---- memory iterators (the kernel's dpages) ---- */

struct dpages {
	/* the contiguous run at the current position; len may exceed need */
	int (*get)(struct dpages *dp, void **addr, size_t *len);
	/* move the position on by n bytes of the current run */
	void (*next)(struct dpages *dp, size_t n);
	union {
		struct page_list *pl;
		struct bio_vec *bvec;
		char *addr;
	} p;
	unsigned int off; /* into the current page or bio_vec */
	bool linear;	  /* contiguous memory: p.addr is all there is */
};

int dp_init(struct dpages *dp, const struct dm_io_memory *mem);

/* ---- the reserved pool ---- */

struct dm_arena;

struct dm_pool {
	pthread_spinlock_t spin; /* the arenas */
	struct dm_arena *arenas;
	/* pages reserved, pages the arenas were mapped for; reserve and
	 * unreserve are serialised by their callers */
	unsigned long reserved, capacity;
	atomic_ulong gen; /* bumped by frees of I/O's memory, reservations */
	atomic_long live; /* blocks handed out */
	atomic_ulong waiters; /* callers in dm_pool_wait() */
	pthread_mutex_t lock; /* for those waiters only */
	pthread_cond_t freed; /* somebody gave memory back */
};

int dm_pool_init(struct dm_pool *pool);
void dm_pool_destroy(struct dm_pool *pool);
int dm_pool_reserve(struct dm_pool *pool, unsigned int nr_pages);
void dm_pool_unreserve(struct dm_pool *pool, unsigned int nr_pages);
void *dm_pool_alloc(struct dm_pool *pool, size_t size);
void dm_pool_free(struct dm_pool *pool, void *p, size_t size);
/* dm_pool_free() of a block that never carried I/O (an allocation undone):
 * waiters are not told to try again, since nothing really came back. */
void dm_pool_unalloc(struct dm_pool *pool, void *p, size_t size);
unsigned long dm_pool_gen(struct dm_pool *pool);
int dm_pool_wait(struct dm_pool *pool, unsigned long gen);

/* ---- requests ---- */

struct dm_sync_wait {
	atomic_uint done; /* futex word */
	unsigned long bits;
};

/* One request: a single allocation holding its chunks, pieces and iovecs. */
struct dm_io {
	struct dm_io_client *client;
	atomic_uint pending; /* chunks not yet completed */
	atomic_ulong error_bits;
	unsigned short ioprio;
	unsigned int nr_regions;
	unsigned int nr_chunks;
	unsigned int nr_pieces;
	size_t alloc_size;
	io_notify_fn fn;
	void *context;
	struct dm_sync_wait *waiter;
	int *out_errors;  /* region_errors, or NULL */
	atomic_int *errs; /* first errno per region */
	struct dm_piece *pieces;
	struct dm_chunk chunks[];
};

/* ---- the client ---- */

#define DM_ZERO_IOV 256 /* zero-page iovecs: 1 MiB of zeroes per call */

/* An observer of every chunk, for white-box tests (not exported). */
enum dm_trace_event {
	DM_TRACE_SUBMIT,
	DM_TRACE_END
};
typedef void (*dm_trace_fn)(void *ctx, enum dm_trace_event ev,
			    const struct dm_chunk *c, int res);

struct dm_io_client {
	struct dm_backend *be;
	struct dm_pool pool;
	pthread_mutex_t lock;
	pthread_cond_t drained;
	atomic_ulong nr_requests; /* accepted and not yet fully notified, and
				     seed calls under way (dm_client_hold) */
	atomic_uint submitting;	  /* threads inside dm_submit() */
	char why[160];		  /* why this backend runs */
	dm_trace_fn trace;
	void *trace_ctx;
	struct iovec zero_iov[DM_ZERO_IOV];
};

/* Set while the library runs a client's completions on this thread: a sync
 * call from there could wait for itself, and memory must not be waited
 * for. */
extern DM_TLS struct dm_io_client *dm_current_cb_client;

struct dm_io_client *dm_client_create(unsigned int reserve_pages);
/* Grow or shrink @client's reservation (the seed API's dm_io_get/put);
 * callers serialise these. */
int dm_client_reserve(struct dm_io_client *client, unsigned int nr_pages);
void dm_client_unreserve(struct dm_io_client *client, unsigned int nr_pages);
void dm_run_detached(void *(*fn)(void *), void *arg);
/* Count one more user of @client, as an accepted request is: its destroy
 * waits until dm_client_release() (which ends requests too). */
void dm_client_hold(struct dm_io_client *client);
void dm_client_release(struct dm_io_client *client);
/* dm_io_client_destroy() on a thread of its own: for callers that must not
 * wait (a completion callback). */
void dm_client_destroy_detached(struct dm_io_client *client);
void dm_client_set_trace(struct dm_io_client *client, dm_trace_fn fn,
			 void *ctx);

/* Hand chunks to the backend or device that serves them. */
void dm_submit(struct dm_io_client *client, struct dm_chunk *head);

#endif /* DMIO_ENGINE_H */

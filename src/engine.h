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

struct dmi_backend;

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

int dmi_dp_init(struct dpages *dp, const struct dm_io_memory *mem);

/* ---- the reserved pool ---- */

struct dmi_arena;

/* Small blocks freed lately, kept whole for the next request of their size
 * rather than merged back into the buddies (DMI_QUICK_DEPTH per order). */
#define DMI_QUICK_ORDERS 5 /* 64 bytes to 1 KiB */
#define DMI_QUICK_DEPTH	 64

struct dmi_pool {
	pthread_spinlock_t spin; /* the arenas and the quick lists */
	struct dmi_arena *arenas;
	void *quick[DMI_QUICK_ORDERS];
	unsigned int nr_quick[DMI_QUICK_ORDERS];
	/* pages reserved, pages the arenas were mapped for; reserve and
	 * unreserve are serialised by their callers */
	unsigned long reserved, capacity;
	atomic_ulong gen; /* bumped by frees of I/O's memory, reservations */
	atomic_long live; /* blocks handed out */
	atomic_ulong waiters; /* callers in dmi_pool_wait() */
	pthread_mutex_t lock; /* for those waiters only */
	pthread_cond_t freed; /* somebody gave memory back */
};

int dmi_pool_init(struct dmi_pool *pool);
void dmi_pool_destroy(struct dmi_pool *pool);
int dmi_pool_reserve(struct dmi_pool *pool, unsigned int nr_pages);
void dmi_pool_unreserve(struct dmi_pool *pool, unsigned int nr_pages);
void *dmi_pool_alloc(struct dmi_pool *pool, size_t size);
void dmi_pool_free(struct dmi_pool *pool, void *p, size_t size);
/* dmi_pool_free() of a block that never carried I/O (an allocation undone):
 * waiters are not told to try again, since nothing really came back. */
void dmi_pool_unalloc(struct dmi_pool *pool, void *p, size_t size);
/* dmi_batch_begin() (chunk.h) on a pool of its own: for the tests. */
void dmi_pool_batch_begin(struct dmi_batch *batch, struct dmi_pool *pool);
unsigned long dmi_pool_gen(struct dmi_pool *pool);
int dmi_pool_wait(struct dmi_pool *pool, unsigned long gen);

/* ---- requests ---- */

struct dmi_sync_wait {
	atomic_uint done; /* futex word */
	unsigned long bits;
};

/* One request: a single allocation holding its chunks, pieces and iovecs. */
struct dmi_io {
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
	struct dmi_sync_wait *waiter;
	int *out_errors;  /* region_errors, or NULL */
	atomic_int *errs; /* first errno per region */
	struct dmi_piece *pieces;
	struct dmi_chunk chunks[];
};

/* ---- the client ---- */

#define DMI_ZERO_IOV 256 /* zero-page iovecs: 1 MiB of zeroes per call */

/* An observer of every chunk, for white-box tests (not exported). */
enum dmi_trace_event {
	DMI_TRACE_SUBMIT,
	DMI_TRACE_END
};
typedef void (*dmi_trace_fn)(void *ctx, enum dmi_trace_event ev,
			     const struct dmi_chunk *c, int res);

struct dm_io_client {
	struct dmi_backend *be;
	struct dmi_pool pool;
	pthread_mutex_t lock;
	pthread_cond_t drained;
	atomic_ulong nr_requests; /* accepted and not yet fully notified, and
				     seed calls under way (dmi_client_hold) */
	atomic_uint submitting;	  /* threads inside dmi_submit() */
	char why[160];		  /* why this backend runs */
	dmi_trace_fn trace;
	void *trace_ctx;
	struct iovec zero_iov[DMI_ZERO_IOV];
};

/* Set while the library runs a client's completions on this thread: a sync
 * call from there could wait for itself, and memory must not be waited
 * for. */
extern DMI_TLS struct dm_io_client *dmi_current_cb_client;

struct dm_io_client *dmi_client_create(unsigned int reserve_pages);
/* Grow or shrink @client's reservation (the seed API's dm_io_get/put);
 * callers serialise these. */
int dmi_client_reserve(struct dm_io_client *client, unsigned int nr_pages);
void dmi_client_unreserve(struct dm_io_client *client, unsigned int nr_pages);
void dmi_run_detached(void *(*fn)(void *), void *arg);
/* Count one more user of @client, as an accepted request is: its destroy
 * waits until dmi_client_release() (which ends requests too). */
void dmi_client_hold(struct dm_io_client *client);
void dmi_client_release(struct dm_io_client *client);
/* dm_io_client_destroy() on a thread of its own: for callers that must not
 * wait (a completion callback). */
void dmi_client_destroy_detached(struct dm_io_client *client);
void dmi_client_set_trace(struct dm_io_client *client, dmi_trace_fn fn,
			  void *ctx);

/* Hand chunks to the backend or device that serves them. */
void dmi_submit(struct dm_io_client *client, struct dmi_chunk *head);

#endif /* DMIO_ENGINE_H */

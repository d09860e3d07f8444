/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal structures shared by the engine, the pool and the backends.
 * Nothing here is installed.
 */
#ifndef DMIO_INTERNAL_H
#define DMIO_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <dmio/dm-io.h>

#define DMIO_EXPORT __attribute__((visibility("default")))
/* Thread-locals of a shared library cost a __tls_get_addr call each time
 * unless they come from the static TLS block, which a few pointers may. */
#define DM_TLS _Thread_local __attribute__((tls_model("initial-exec")))

/* ---- devices ---- */

struct dm_chunk;

/* What a device kind finds out at open: the facts the engine plans every
 * request from, without system calls. */
struct dm_bdev_limits {
	uint64_t size;		/* bytes */
	unsigned int lbs;	/* logical block size */
	unsigned int mem_align; /* O_DIRECT buffer alignment */
	uint32_t max_bytes;	/* largest single submission */
	uint64_t discard_max;	/* bytes per discard; 0: cannot discard */
	uint64_t zeroes_max;	/* bytes per write-zeroes */
	bool is_blk;		/* a block device, not a regular file */
	bool direct;		/* opened O_DIRECT: alignment rules apply */
	bool contig;		/* takes one contiguous buffer per command */
};

/* What a device kind implements. */
struct dm_bdev_ops {
	const char *kind; /* dm_bdev_get_info()'s name for it */
	/* Take one chunk (->next is NULL) to a thread of the device's own,
	 * which completes it through dm_chunk_complete().  NULL: the device
	 * has a file descriptor and the client's backend does the I/O. */
	void (*submit)(struct block_device *bdev, struct dm_chunk *c);
	/* Free the device and what it holds; nothing is in flight. */
	int (*close)(struct block_device *bdev);
	/* dm_bdev_set_timeout(); NULL: -EOPNOTSUPP. */
	int (*set_timeout)(struct block_device *bdev, unsigned int ms);
	/* A wrapper's: the device it passes chunks on to.  NULL otherwise. */
	struct block_device *(*inner)(const struct block_device *bdev);
	/* dm_bdev_same() of two devices of this kind (not wrappers, not the
	 * same handle).  NULL: never. */
	bool (*same)(const struct block_device *a,
		     const struct block_device *b);
};

struct block_device {
	const struct dm_bdev_ops *ops;
	void *priv;	    /* the kind's own state */
	int fd;		    /* -1 unless the client's backend does the I/O */
	unsigned int flags; /* DM_BDEV_* as asked, RDONLY as found */
	struct dm_bdev_limits lim; /* filled in by the opener */
	atomic_bool no_zero_range; /* fallocate(ZERO_RANGE) said no: write */
	atomic_uint inflight;	   /* chunks issued and not completed */
	char name[];
};

/*
 * A device kind's opener, found by the prefix of the spec in blkdev.c's
 * table; returns NULL and sets errno on failure.  Declare yours with this
 * type (dm_bdev_open_fn dm_x_open;) so that the compiler checks it.
 */
typedef struct block_device *dm_bdev_open_fn(const char *spec,
					     unsigned int flags);

/* A device named @spec, with no file descriptor and nothing in flight, for
 * an opener to fill in; free() frees it. */
struct block_device *dm_bdev_alloc(const char *spec,
				   const struct dm_bdev_ops *ops, void *priv);

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

/* what a chunk asks its backend to do */
enum dm_chunk_op {
	DM_CHUNK_READ,
	DM_CHUNK_WRITE,
	DM_CHUNK_FLUSH,	     /* fdatasync */
	DM_CHUNK_DISCARD,    /* BLKDISCARD, or punch a hole in a file */
	DM_CHUNK_ZEROES,     /* fallocate(ZERO_RANGE), BLKZEROOUT on devices */
	DM_CHUNK_ZERO_WRITE, /* writes from the shared zero page */
	DM_CHUNK_NOP,	     /* completes a request with no I/O, on the
				completion thread like any other */
};

#define DM_CHUNK_FUA	   (1u << 0) /* write durably: RWF_DSYNC */
#define DM_CHUNK_FUA_FLUSH (1u << 1) /* FUA emulated: the flush is out */
#define DM_CHUNK_FAILED                                                        \
	(1u << 2) /* fails with be.uring.err, through the ring */

/* A stretch of the buffer, planned once and shared by every region whose
 * device splits it the same way: the iovecs are not copied per region. */
struct dm_piece {
	size_t buf_off; /* where the piece starts in the caller's buffer */
	size_t len;
	struct iovec *iov; /* the caller's memory */
	unsigned int niov;
	void *bounce; /* aligned copy used instead of iov, or NULL */
};

/* One submission: a piece of one region, or a data-less operation. */
struct dm_chunk {
	struct dm_io *io;
	struct dm_chunk *next; /* backend queues */
	struct dm_chunk *deps; /* issued once this one succeeds (PREFLUSH) */
	struct block_device *bdev;
	const struct dm_piece *piece; /* data ops only */
	uint64_t pos;		      /* device byte offset */
	uint64_t len;
	uint64_t done; /* bytes already transferred */
	unsigned int region;
	enum dm_chunk_op op;
	unsigned int flags;    /* DM_CHUNK_* */
	unsigned int retries;  /* resubmissions that made no progress */
	unsigned short ioprio; /* the request's, for whoever issues the I/O */
	struct iovec tail;     /* a partly transferred segment's rest */
	/* Scratch of the backend or device that holds the chunk now; only
	 * one does at a time. */
	union {
		struct {
			int err; /* DM_CHUNK_FAILED: what it fails with */
		} uring;
		struct {
			int res;	   /* libnbd's result, or RES_PENDING */
			unsigned int len;  /* bytes the command moves */
			unsigned int conn; /* the connection it went out on */
		} nbd;
		struct {
			uint64_t arrival; /* when it came in, for delay= */
		} fault;
	} be;
};

/* A FIFO of chunks linked through ->next: every backend and device queue. */
struct dm_chunk_queue {
	struct dm_chunk *head, **tail;
};

static inline void dm_cq_init(struct dm_chunk_queue *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

static inline bool dm_cq_empty(const struct dm_chunk_queue *q)
{
	return !q->head;
}

static inline void dm_cq_push(struct dm_chunk_queue *q, struct dm_chunk *c)
{
	c->next = NULL;
	*q->tail = c;
	q->tail = &c->next;
}

/* Append a NULL-terminated list; returns how many chunks it held. */
static inline unsigned int dm_cq_splice(struct dm_chunk_queue *q,
					struct dm_chunk *list)
{
	unsigned int n = 0;

	*q->tail = list;
	for (; list; list = list->next) {
		q->tail = &list->next;
		n++;
	}
	return n;
}

/* Move all of @from to the end of @q, leaving @from empty. */
static inline void dm_cq_move(struct dm_chunk_queue *q,
			      struct dm_chunk_queue *from)
{
	if (from->head) {
		*q->tail = from->head;
		q->tail = from->tail;
	}
	dm_cq_init(from);
}

/* Take the first chunk, or NULL. */
static inline struct dm_chunk *dm_cq_pop(struct dm_chunk_queue *q)
{
	struct dm_chunk *c = q->head;

	if (c) {
		q->head = c->next;
		if (!q->head)
			q->tail = &q->head;
		c->next = NULL;
	}
	return c;
}

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

/* ---- backends ---- */

struct dm_backend;

struct dm_backend_ops {
	const char *name;
	/* Queue a list of chunks (linked by ->next).  Never waits for I/O to
	 * complete, so callbacks may submit.  Completion is reported through
	 * dm_chunk_complete() on a thread the backend owns. */
	void (*submit)(struct dm_backend *be, struct dm_chunk *head);
	/* Stop the backend's threads and free it; nothing is in flight. */
	void (*destroy)(struct dm_backend *be);
};

struct dm_backend {
	const struct dm_backend_ops *ops;
	struct dm_io_client *client;
};

struct dm_backend *dm_uring_create(struct dm_io_client *client, int *err);
struct dm_backend *dm_threads_create(struct dm_io_client *client,
				     unsigned int nr_threads, int *err);

/*
 * Helpers (threads.c): a small thread pool that a backend hands the chunks
 * it cannot issue itself (io_uring: block-device discards on kernels
 * without BLOCK_URING_CMD_DISCARD).  They run with the system-call
 * executor and complete through dm_chunk_complete() on the helpers' own
 * threads, as from any backend: the engine does not see the difference.
 */
struct dm_helpers;
struct dm_helpers *dm_helpers_create(struct dm_io_client *client, int *err);
void dm_helpers_submit(struct dm_helpers *helpers, struct dm_chunk *chunk);
/* Stop and free, once nothing handed over is in flight; NULL is a no-op. */
void dm_helpers_destroy(struct dm_helpers *helpers);

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

/* Engine entry points for backends. */
void dm_submit(struct dm_io_client *client, struct dm_chunk *head);
/* A wrapper device hands @chunk on to the device @to, which now owns it
 * and counts it in flight. */
void dm_chunk_forward(struct dm_chunk *chunk, struct block_device *to);
/*
 * The one way a backend or device reports @res (bytes, 0 for a data-less
 * op, or -errno) for a chunk.  The completion, and any callback it runs,
 * runs with dm_current_cb_client set to the chunk's client.  A chunk that
 * must go again (a short transfer, an interrupted call, a write-zeroes
 * turned into writes) is put on @again, for the caller to resubmit.
 */
void dm_chunk_complete(struct dm_chunk *chunk, int res,
		       struct dm_chunk_queue *again);
int dm_chunk_iov(struct dm_chunk *chunk, const struct iovec **iov);
void dm_chunk_exec(struct dm_chunk *chunk); /* exec.c */

#endif /* DMIO_INTERNAL_H */

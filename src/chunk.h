/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Chunks: what the engine hands to backends and device kinds, and the
 * calls by which they hand chunks back.  Both plug-in kinds include this
 * (through backend.h or device.h); only the engine sees the request a
 * chunk belongs to (engine.h).
 */
#ifndef DMIO_CHUNK_H
#define DMIO_CHUNK_H

#include "common.h"

struct dmi_io;
struct dmi_pool;
struct dm_io_client;

/* what a chunk asks its backend to do */
enum dmi_chunk_op {
	DMI_CHUNK_READ,
	DMI_CHUNK_WRITE,
	DMI_CHUNK_FLUSH,      /* fdatasync */
	DMI_CHUNK_DISCARD,    /* BLKDISCARD, or punch a hole in a file */
	DMI_CHUNK_ZEROES,     /* fallocate(ZERO_RANGE), BLKZEROOUT on devices */
	DMI_CHUNK_ZERO_WRITE, /* writes from the shared zero page */
	DMI_CHUNK_NOP,	      /* completes a request with no I/O, on the
				 completion thread like any other */
};

#define DMI_CHUNK_FUA	    (1u << 0) /* write durably: RWF_DSYNC */
#define DMI_CHUNK_FUA_FLUSH (1u << 1) /* FUA emulated: the flush is out */
#define DMI_CHUNK_FAILED                                                       \
	(1u << 2) /* fails with be.uring.err, through the ring */

/* A stretch of the buffer, planned once and shared by every region whose
 * device splits it the same way: the iovecs are not copied per region. */
struct dmi_piece {
	size_t buf_off; /* where the piece starts in the caller's buffer */
	size_t len;
	struct iovec *iov; /* the caller's memory */
	unsigned int niov;
	void *bounce; /* aligned copy used instead of iov, or NULL */
};

/* One submission: a piece of one region, or a data-less operation. */
struct dmi_chunk {
	struct dmi_io *io;
	struct dmi_chunk *next; /* backend queues */
	struct dmi_chunk *deps; /* issued once this one succeeds (PREFLUSH) */
	struct block_device *bdev;
	const struct dmi_piece *piece; /* data ops only */
	uint64_t pos;		       /* device byte offset */
	uint64_t len;
	uint64_t done; /* bytes already transferred */
	unsigned int region;
	enum dmi_chunk_op op;
	unsigned int flags;    /* DMI_CHUNK_* */
	unsigned int retries;  /* resubmissions that made no progress */
	unsigned short ioprio; /* the request's, for whoever issues the I/O */
	struct iovec tail;     /* a partly transferred segment's rest */
	/* Scratch of the backend or device that holds the chunk now; only
	 * one does at a time. */
	union {
		struct {
			int err; /* DMI_CHUNK_FAILED: what it fails with */
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
struct dmi_chunk_queue {
	struct dmi_chunk *head, **tail;
};

static inline void dmi_cq_init(struct dmi_chunk_queue *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

static inline bool dmi_cq_empty(const struct dmi_chunk_queue *q)
{
	return !q->head;
}

static inline void dmi_cq_push(struct dmi_chunk_queue *q, struct dmi_chunk *c)
{
	c->next = NULL;
	*q->tail = c;
	q->tail = &c->next;
}

/* Append a NULL-terminated list; returns how many chunks it held. */
static inline unsigned int dmi_cq_splice(struct dmi_chunk_queue *q,
					 struct dmi_chunk *list)
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
static inline void dmi_cq_move(struct dmi_chunk_queue *q,
			       struct dmi_chunk_queue *from)
{
	if (from->head) {
		*q->tail = from->head;
		q->tail = from->tail;
	}
	dmi_cq_init(from);
}

/* Take the first chunk, or NULL. */
static inline struct dmi_chunk *dmi_cq_pop(struct dmi_chunk_queue *q)
{
	struct dmi_chunk *c = q->head;

	if (c) {
		q->head = c->next;
		if (!q->head)
			q->tail = &q->head;
		c->next = NULL;
	}
	return c;
}

/* The iovecs for what is left of a data chunk; returns how many. */
int dmi_chunk_iov_rest(struct dmi_chunk *chunk, const struct iovec **iov);

static inline int dmi_chunk_iov(struct dmi_chunk *chunk,
				const struct iovec **iov)
{
	const struct dmi_piece *p = chunk->piece;

	/* The common case, inline: untouched, in the caller's memory. */
	if (!chunk->done && chunk->op != DMI_CHUNK_ZERO_WRITE && !p->bounce) {
		*iov = p->iov;
		return (int)p->niov;
	}
	return dmi_chunk_iov_rest(chunk, iov);
}
/*
 * The one way a backend or device reports @res (bytes, 0 for a data-less
 * op, or -errno) for a chunk.  The completion, and any callback it runs,
 * runs with dmi_current_cb_client set to the chunk's client.  A chunk that
 * must go again (a short transfer, an interrupted call, a write-zeroes
 * turned into writes) is put on @again, for the caller to resubmit.
 */
void dmi_chunk_complete(struct dmi_chunk *chunk, int res,
			struct dmi_chunk_queue *again);
/*
 * A completion thread brackets each run of dmi_chunk_complete() calls with
 * these (on its stack): the small blocks the requests that end in the run
 * give back are kept for the requests their callbacks submit, with no
 * lock, and what is left goes back to the client's pool at the end.
 */
#define DMI_BATCH_ORDERS 5 /* the pool's quick orders: 64 bytes to 1 KiB */
struct dmi_batch {
	struct dmi_pool *pool;
	struct dmi_batch *prev;
	void *blocks[DMI_BATCH_ORDERS];
	unsigned int nr;
};
void dmi_batch_begin(struct dmi_batch *batch, struct dm_io_client *client);
void dmi_batch_end(struct dmi_batch *batch);
/* A wrapper device hands @chunk on to the device @to, which now owns it
 * and counts it in flight. */
void dmi_chunk_forward(struct dmi_chunk *chunk, struct block_device *to);

#endif /* DMIO_CHUNK_H */

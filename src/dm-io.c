/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine.  A request flows down this file as in the kernel's dm-io.c:
 * check the arguments, plan each region, cut the buffer into pieces that
 * every region with the same device limits shares, allocate the request in
 * one block, submit its chunks, count completions, OR the error bits and
 * notify.  Backends only see chunks.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdalign.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend.h"
#include "device.h"
#include "engine.h"

/* Largest bounce buffer per piece: big enough to amortise the syscall,
 * small enough to come from a modest reservation. */
#define BOUNCE_MAX (256u << 10)
/* EAGAIN/EINTR resubmissions without progress before we call it an error. */
#define MAX_RETRIES 64

DMI_TLS struct dm_io_client *dmi_current_cb_client;

/* ---- waking synchronous callers ---- */

/* The futex word: 0 pending, 1 done, 2 the caller sleeps on it. */
static void sync_wait(struct dmi_sync_wait *w)
{
	unsigned int v;

	while ((v = atomic_load_explicit(&w->done, memory_order_acquire)) !=
	       1) {
		if (!v && !atomic_compare_exchange_strong(&w->done, &v, 2))
			continue;
		syscall(SYS_futex, &w->done, FUTEX_WAIT_PRIVATE, 2, NULL, NULL,
			0);
	}
}

static void sync_wake(struct dmi_sync_wait *w, unsigned long bits)
{
	w->bits = bits;
	/* Only a caller that went to sleep needs a system call (never the
	 * one whose chunk ran on its own thread).  It may already have
	 * returned: waking a stale address is harmless. */
	if (atomic_exchange_explicit(&w->done, 1, memory_order_acq_rel) == 2)
		syscall(SYS_futex, &w->done, FUTEX_WAKE_PRIVATE, 1, NULL, NULL,
			0);
}

/* ---- completion ---- */

void dmi_client_release(struct dm_io_client *client)
{
	unsigned long n = atomic_load_explicit(&client->nr_requests,
					       memory_order_relaxed);

	while (n > 1)
		if (atomic_compare_exchange_weak_explicit(
			    &client->nr_requests, &n, n - 1,
			    memory_order_acq_rel, memory_order_relaxed))
			return;
	/* What may be the last one drops the count under the lock: a
	 * destroy waiting for the count to reach 0 would otherwise free the
	 * client between the drop and the wake-up. */
	pthread_mutex_lock(&client->lock);
	if (atomic_fetch_sub_explicit(&client->nr_requests, 1,
				      memory_order_acq_rel) == 1)
		pthread_cond_broadcast(&client->drained);
	pthread_mutex_unlock(&client->lock);
}

/* @undo: the request never went out (its allocation failed half-way). */
static void free_io(struct dmi_io *io, bool undo)
{
	void (*release)(struct dmi_pool *, void *, size_t) =
		undo ? dmi_pool_unalloc : dmi_pool_free;
	struct dmi_pool *pool = &io->client->pool;
	unsigned int i;

	for (i = 0; i < io->nr_pieces; i++)
		if (io->pieces[i].bounce)
			release(pool, io->pieces[i].bounce, io->pieces[i].len);
	release(pool, io, io->alloc_size);
}

/* The last chunk is done: report, free, then notify, so that the callback
 * may reuse everything (the request's memory is already back). */
static void io_end(struct dmi_io *io)
{
	struct dm_io_client *client = io->client;
	unsigned long bits = atomic_load(&io->error_bits);
	struct dmi_sync_wait *waiter = io->waiter;
	io_notify_fn fn = io->fn;
	void *context = io->context;
	unsigned int i;

	if (io->out_errors)
		for (i = 0; i < io->nr_regions; i++)
			io->out_errors[i] = atomic_load(&io->errs[i]);
	free_io(io, false);
	if (waiter) {
		dmi_client_release(client);
		sync_wake(waiter, bits);
		return;
	}
	fn(bits, context);
	dmi_client_release(client);
}

static void region_fail(struct dmi_io *io, unsigned int region, int err)
{
	int none = 0;

	atomic_fetch_or(&io->error_bits, 1UL << region);
	atomic_compare_exchange_strong(&io->errs[region], &none, err);
}

/* Copy @src (or zeroes when NULL) into bytes [from, to) of a piece's
 * memory. */
static void piece_fill(const struct dmi_piece *p, size_t from, size_t to,
		       const char *src)
{
	size_t pos = 0;
	unsigned int i;

	for (i = 0; i < p->niov && pos < to; i++) {
		size_t len = p->iov[i].iov_len, a, b;

		a = from > pos ? from - pos : 0;
		b = to - pos < len ? to - pos : len;
		if (a < b) {
			char *dst = (char *)p->iov[i].iov_base + a;

			if (src)
				memcpy(dst, src + pos + a - from, b - a);
			else
				memset(dst, 0, b - a);
		}
		pos += len;
	}
}

static void trace(struct dm_io_client *client, enum dmi_trace_event ev,
		  const struct dmi_chunk *c, int res)
{
	if (client->trace)
		client->trace(client->trace_ctx, ev, c, res);
}

/* Hand chunks to the backend that serves them: the device's own thread
 * (fault: devices, NBD exports), or the client's backend. */
void dmi_submit(struct dm_io_client *client, struct dmi_chunk *head)
{
	struct dmi_chunk_queue local;
	struct dmi_chunk *c, *next;

	dmi_cq_init(&local);

	/* The chunks may complete, and their request, and the client be
	 * destroyed, before the backend's submit returns: destroy waits for
	 * this count, not only for the requests. */
	atomic_fetch_add_explicit(&client->submitting, 1, memory_order_acquire);
	for (c = head; c; c = next) {
		next = c->next;
		trace(client, DMI_TRACE_SUBMIT, c, 0);
		c->next = NULL;
		if (c->bdev && c->bdev->ops->submit)
			c->bdev->ops->submit(c->bdev, c);
		else
			dmi_cq_push(&local, c);
	}
	if (!dmi_cq_empty(&local))
		client->be->ops->submit(client->be, local.head);
	atomic_fetch_sub_explicit(&client->submitting, 1, memory_order_release);
}

void dmi_chunk_forward(struct dmi_chunk *c, struct block_device *to)
{
	/* Counted below before it stops counting above, so that a close
	 * checking from the top down always sees it. */
	atomic_fetch_add(&to->inflight, 1);
	atomic_fetch_sub(&c->bdev->inflight, 1);
	c->bdev = to;
	dmi_submit(c->io->client, c);
}

static void chunk_end(struct dmi_chunk *c, int err)
{
	struct dmi_io *io = c->io;
	const struct dmi_piece *p = c->piece;
	struct dmi_chunk *dep = c->deps;

	trace(io->client, DMI_TRACE_END, c, err);
	if (c->op == DMI_CHUNK_READ) {
		if (p->bounce)
			piece_fill(p, 0, c->done, p->bounce);
		/* A failed read leaves zeroes, never stale bytes. */
		if (err)
			piece_fill(p, c->done, p->len, NULL);
	}
	if (err)
		region_fail(io, c->region, err);
	if (c->bdev)
		atomic_fetch_sub_explicit(&c->bdev->inflight, 1,
					  memory_order_release);
	/* What waited for this chunk (a write after its PREFLUSH) goes now,
	 * or fails with it: a write must not pass a flush that failed. */
	if (dep && !err) {
		dmi_submit(io->client, dep);
	} else {
		while (dep) {
			struct dmi_chunk *next = dep->next;

			chunk_end(dep, err);
			dep = next;
		}
	}
	if (atomic_fetch_sub_explicit(&io->pending, 1, memory_order_acq_rel) ==
	    1)
		io_end(io);
}

/* Returns true when the chunk must be submitted again (a short transfer,
 * an interrupted call, a write-zeroes turned into writes); the chunk has
 * then not ended. */
static bool chunk_done(struct dmi_chunk *c, int res)
{
	switch (c->op) {
	case DMI_CHUNK_READ:
	case DMI_CHUNK_WRITE:
	case DMI_CHUNK_ZERO_WRITE:
		if (res > 0) {
			c->done += (uint64_t)res;
			c->retries = 0;
			if (c->done < c->len)
				return true;
			res = 0;
		} else if (!res) {
			/* Zero bytes: the device ended under us (a file
			 * truncated since it was opened). */
			res = -EIO;
		}
		break;
	case DMI_CHUNK_ZEROES:
		if ((res == -EOPNOTSUPP || res == -EINVAL) &&
		    !c->bdev->lim.is_blk) {
			/* The file system cannot zero a range: write zeroes,
			 * and remember not to ask again. */
			atomic_store(&c->bdev->no_zero_range, true);
			c->op = DMI_CHUNK_ZERO_WRITE;
			return true;
		}
		break;
	default:
		break;
	}
	/* Interrupted, or cancelled because the thread that submitted it has
	 * exited (io_uring ties requests to their task): the chunk is intact,
	 * and going again from a library thread it stays put. */
	if ((res == -EINTR || res == -EAGAIN || res == -ECANCELED) &&
	    ++c->retries < MAX_RETRIES)
		return true;
	chunk_end(c, res);
	return false;
}

void dmi_chunk_complete(struct dmi_chunk *c, int res,
			struct dmi_chunk_queue *again)
{
	struct dm_io_client *prev = dmi_current_cb_client;

	/* The callbacks this may run see their client's flag, whichever
	 * thread runs them. */
	dmi_current_cb_client = c->io->client;
	if (chunk_done(c, res))
		dmi_cq_push(again, c);
	dmi_current_cb_client = prev;
}

/* The iovecs for what is left of a chunk, past the inline common case. */
int dmi_chunk_iov_rest(struct dmi_chunk *c, const struct iovec **iovp)
{
	const struct dmi_piece *p = c->piece;
	uint64_t skip = c->done;
	unsigned int i;

	if (c->op == DMI_CHUNK_ZERO_WRITE) {
		uint64_t left = c->len - skip;

		if (left >= DM_PAGE_SIZE) {
			*iovp = c->io->client->zero_iov;
			return left / DM_PAGE_SIZE < DMI_ZERO_IOV
				       ? (int)(left / DM_PAGE_SIZE)
				       : DMI_ZERO_IOV;
		}
		c->tail.iov_base = c->io->client->zero_iov[0].iov_base;
		c->tail.iov_len = left;
		*iovp = &c->tail;
		return 1;
	}
	if (p->bounce) {
		c->tail.iov_base = (char *)p->bounce + skip;
		c->tail.iov_len = p->len - skip;
		*iovp = &c->tail;
		return 1;
	}
	for (i = 0; skip && skip >= p->iov[i].iov_len; i++)
		skip -= p->iov[i].iov_len;
	if (!skip) {
		*iovp = &p->iov[i];
		return (int)(p->niov - i);
	}
	/* The shared iovecs are not ours to change: the partly done segment
	 * goes alone, the rest follow on the next round. */
	c->tail.iov_base = (char *)p->iov[i].iov_base + skip;
	c->tail.iov_len = p->iov[i].iov_len - skip;
	*iovp = &c->tail;
	return 1;
}

/* ---- planning ---- */

/* Regions whose devices cut the buffer the same way share one shape, and
 * with it the pieces and their iovecs. */
struct shape {
	size_t len;
	uint32_t max_bytes;
	unsigned int lbs, mem_align; /* 0 for buffered devices */
	bool contig;		     /* one segment per piece (libnbd) */
	bool bounce;
	unsigned int first_piece, nr_pieces, nr_iov, nr_regions;
};

struct plan {
	unsigned int op, flags;
	unsigned int nr_shapes, nr_pieces, nr_iov, nr_chunks, max_parts;
	int shape_of[DM_IO_MAX_REGIONS]; /* -1: no data for this region */
	int early[DM_IO_MAX_REGIONS];	 /* an error found while planning */
	bool flush[DM_IO_MAX_REGIONS];	 /* a flush goes first */
	unsigned int parts[DM_IO_MAX_REGIONS]; /* chunks after the flush */
	uint64_t step[DM_IO_MAX_REGIONS];      /* data-less chunk size */
	struct shape shapes[DM_IO_MAX_REGIONS];
};

static int check_request(const struct dm_io_request *req,
			 unsigned int num_regions,
			 const struct io_region *where)
{
	unsigned int op, i;

	if (!req || !req->client || !where || !num_regions ||
	    num_regions > DM_IO_MAX_REGIONS)
		return -EINVAL;
	op = req->bi_opf & DM_IO_OP_MASK;
	if (req->bi_opf & ~(DM_IO_OP_MASK | DM_IO_FUA | DM_IO_PREFLUSH) ||
	    op > DM_IO_OP_WRITE_ZEROES)
		return -EINVAL;
	if (op == DM_IO_OP_READ && num_regions != 1)
		return -EINVAL;
	for (i = 0; i < num_regions; i++) {
		const struct io_region *r = &where[i];

		/* Byte offsets must fit: sector + count, then << 9. */
		if (!r->bdev || r->count > UINT64_MAX - r->sector ||
		    r->sector + r->count > (UINT64_MAX >> SECTOR_SHIFT))
			return -EINVAL;
	}
	/* IOPRIO_PRIO_CLASS is the top 3 bits: NONE (no data), RT, BE,
	 * IDLE; the kernel judges the rest. */
	if (req->ioprio >> 13 > 3 || (req->ioprio >> 13 == 0 && req->ioprio))
		return -EINVAL;
	/* FUA and PREFLUSH qualify writes only. */
	if (req->bi_opf & (DM_IO_FUA | DM_IO_PREFLUSH) && op != DM_IO_OP_WRITE)
		return -EINVAL;
	return 0;
}

/* What keeps a region from being issued at all, or 0. */
static int region_errno(const struct io_region *r, unsigned int op)
{
	const struct block_device *b = r->bdev;
	uint64_t start = r->sector << SECTOR_SHIFT;
	uint64_t len = r->count << SECTOR_SHIFT;

	bool dataless = op == DM_IO_OP_DISCARD || op == DM_IO_OP_WRITE_ZEROES;

	if (op != DM_IO_OP_READ && b->flags & DM_BDEV_RDONLY)
		return -EROFS;
	if (start > b->lim.size || len > b->lim.size - start)
		return -ENXIO;
	/* O_DIRECT, NBD servers, and the block layer's own discard and
	 * zeroout address whole logical blocks. */
	if ((b->lim.direct || b->lim.contig || (dataless && b->lim.is_blk)) &&
	    (start | len) & (b->lim.lbs - 1))
		return -EINVAL;
	if (op == DM_IO_OP_DISCARD && !b->lim.discard_max)
		return -EOPNOTSUPP;
	return 0;
}

static unsigned int shape_for(struct plan *pl, const struct io_region *r)
{
	const struct block_device *b = r->bdev;
	struct shape key = {
		.len = r->count << SECTOR_SHIFT,
		.max_bytes = b->lim.max_bytes,
		.lbs = b->lim.direct ? b->lim.lbs : 0,
		.mem_align = b->lim.direct ? b->lim.mem_align : 0,
		.contig = b->lim.contig,
	};
	unsigned int s;

	for (s = 0; s < pl->nr_shapes; s++) {
		struct shape *sh = &pl->shapes[s];

		if (sh->len == key.len && sh->max_bytes == key.max_bytes &&
		    sh->lbs == key.lbs && sh->mem_align == key.mem_align &&
		    sh->contig == key.contig)
			break;
	}
	if (s == pl->nr_shapes)
		pl->shapes[pl->nr_shapes++] = key;
	pl->shapes[s].nr_regions++;
	return s;
}

/*
 * Cut a shape's share of the buffer into pieces of at most the device's
 * transfer size and IOV_MAX segments, merging segments that touch.
 * Counting (pieces == NULL) and filling run the same code, so they agree.
 * Returns 0, -EINVAL when the memory ends early or is malformed, or 1 when
 * an O_DIRECT or contiguous-only shape meets memory it has to bounce.
 */
static int walk(struct dpages dp, struct shape *sh, struct dmi_piece *pieces,
		struct iovec *iov)
{
	size_t cap = sh->bounce && sh->max_bytes > BOUNCE_MAX ? BOUNCE_MAX
							      : sh->max_bytes;
	bool check = sh->lbs && !sh->bounce;
	unsigned int np = 0, ni = 0;
	size_t off = 0;

	if (dp.linear) {
		/* One run of memory: the pieces are arithmetic, one segment
		 * each (the common case, kept cheap). */
		char *base = dp.p.addr;

		if (check && ((uintptr_t)base & (sh->mem_align - 1)))
			return 1;
		for (; off < sh->len; off += cap, np++) {
			size_t plen = sh->len - off < cap ? sh->len - off : cap;

			if (!pieces)
				continue;
			iov[np].iov_base = base + off;
			iov[np].iov_len = plen;
			pieces[np] = (struct dmi_piece){
				.buf_off = off,
				.len = plen,
				.iov = &iov[np],
				.niov = 1,
			};
		}
		sh->nr_pieces = sh->nr_iov = np;
		return 0;
	}
	while (off < sh->len) {
		size_t want = sh->len - off < cap ? sh->len - off : cap;
		unsigned int first = ni, nseg = 0;
		size_t plen = 0;
		char *end = NULL;

		while (plen < want) {
			void *addr;
			size_t len;

			if (dp.get(&dp, &addr, &len))
				return -EINVAL;
			if (len > want - plen)
				len = want - plen;
			if (check && (((uintptr_t)addr & (sh->mem_align - 1)) ||
				      (len & (sh->lbs - 1))))
				return 1;
			if (nseg && (char *)addr == end) {
				if (iov)
					iov[ni - 1].iov_len += len;
			} else {
				if (nseg && sh->contig && !sh->bounce)
					return 1;
				if (!sh->bounce && nseg == IOV_MAX)
					break;
				if (iov) {
					iov[ni].iov_base = addr;
					iov[ni].iov_len = len;
				}
				ni++;
				nseg++;
			}
			end = (char *)addr + len;
			plen += len;
			dp.next(&dp, len);
		}
		if (pieces)
			pieces[np] = (struct dmi_piece){
				.buf_off = off,
				.len = plen,
				.iov = &iov[first],
				.niov = nseg,
			};
		np++;
		off += plen;
	}
	sh->nr_pieces = np;
	sh->nr_iov = ni;
	return 0;
}

static int plan_request(struct plan *pl, unsigned int bi_opf,
			unsigned int num_regions, const struct io_region *where,
			const struct dpages *dp)
{
	unsigned int op = bi_opf & DM_IO_OP_MASK, i, s;
	int ret;

	/* Only the first num_regions entries are ever read: clear no more. */
	pl->op = op;
	pl->flags = bi_opf & ~DM_IO_OP_MASK;
	pl->nr_shapes = pl->nr_pieces = pl->nr_iov = pl->nr_chunks = 0;
	pl->max_parts = 0;
	for (i = 0; i < num_regions; i++) {
		const struct io_region *r = &where[i];
		uint64_t len = r->count << SECTOR_SHIFT;

		pl->shape_of[i] = -1;
		pl->early[i] = 0;
		pl->flush[i] = false;
		pl->parts[i] = 0;
		if (op == DM_IO_OP_FLUSH) {
			/* The region names the device; its range is moot. */
			pl->flush[i] = true;
			pl->nr_chunks++;
			continue;
		}
		if (r->count)
			pl->early[i] = region_errno(r, op);
		if (pl->early[i])
			continue;
		if (pl->flags & DM_IO_PREFLUSH) {
			pl->flush[i] = true;
			pl->nr_chunks++;
		}
		if (!r->count)
			continue;
		if (op == DM_IO_OP_READ || op == DM_IO_OP_WRITE) {
			pl->shape_of[i] = (int)shape_for(pl, r);
			continue;
		}
		pl->step[i] = op == DM_IO_OP_DISCARD ? r->bdev->lim.discard_max
						     : r->bdev->lim.zeroes_max;
		pl->parts[i] =
			(unsigned int)((len + pl->step[i] - 1) / pl->step[i]);
		pl->nr_chunks += pl->parts[i];
	}
	for (s = 0; s < pl->nr_shapes; s++) {
		struct shape *sh = &pl->shapes[s];

		ret = walk(*dp, sh, NULL, NULL);
		if (ret == 1) {
			sh->bounce = true;
			ret = walk(*dp, sh, NULL, NULL);
		}
		if (ret < 0)
			return ret;
		sh->first_piece = pl->nr_pieces;
		pl->nr_pieces += sh->nr_pieces;
		pl->nr_iov += sh->nr_iov;
		pl->nr_chunks += sh->nr_pieces * sh->nr_regions;
	}
	for (i = 0; i < num_regions; i++) {
		if (pl->shape_of[i] >= 0)
			pl->parts[i] = pl->shapes[pl->shape_of[i]].nr_pieces;
		if (pl->parts[i] > pl->max_parts)
			pl->max_parts = pl->parts[i];
	}
	return 0;
}

/* A read that is refused at planning still leaves zeroes, as one that
 * fails in flight does. */
static void zero_memory(struct dpages dp, uint64_t len)
{
	while (len) {
		void *addr;
		size_t n;

		if (dp.get(&dp, &addr, &n))
			return;
		if (n > len)
			n = (size_t)len;
		memset(addr, 0, n);
		dp.next(&dp, n);
		len -= n;
	}
}

/* ---- building and submitting ---- */

#define ALIGN_UP(x, a) (((x) + (a)-1) / (a) * (a))

struct layout {
	size_t pieces, errs, iov, size;
};

/* Where the parts of a request block go: the request and its chunks, then
 * the pieces, the per-region errnos and the iovecs. */
static void layout_of(unsigned int chunks, unsigned int pieces,
		      unsigned int regions, unsigned int iovs,
		      struct layout *lo)
{
	lo->pieces = ALIGN_UP(sizeof(struct dmi_io) +
				      chunks * sizeof(struct dmi_chunk),
			      alignof(struct dmi_piece));
	lo->errs = ALIGN_UP(lo->pieces + pieces * sizeof(struct dmi_piece),
			    alignof(atomic_int));
	lo->iov = ALIGN_UP(lo->errs + regions * sizeof(atomic_int),
			   alignof(struct iovec));
	lo->size = lo->iov + iovs * sizeof(struct iovec);
}

/* The request block and its bounce buffers, all or nothing. */
static struct dmi_io *alloc_io(struct dm_io_client *client,
			       const struct plan *pl, const struct layout *lo,
			       const struct dpages *dp)
{
	struct dmi_io *io = dmi_pool_alloc(&client->pool, lo->size);
	struct iovec *iov;
	unsigned int s, p;

	if (!io)
		return NULL;
	memset(io, 0, lo->size);
	io->client = client;
	io->alloc_size = lo->size;
	io->pieces = (struct dmi_piece *)((char *)io + lo->pieces);
	io->errs = (atomic_int *)((char *)io + lo->errs);
	iov = (struct iovec *)((char *)io + lo->iov);
	for (s = 0; s < pl->nr_shapes; s++) {
		struct shape sh = pl->shapes[s];
		struct dmi_piece *pieces = io->pieces + sh.first_piece;

		walk(*dp, &sh, pieces, iov);
		iov += sh.nr_iov;
		for (p = 0; sh.bounce && p < sh.nr_pieces; p++) {
			pieces[p].bounce =
				dmi_pool_alloc(&client->pool, pieces[p].len);
			io->nr_pieces = sh.first_piece + p + 1;
			if (!pieces[p].bounce) {
				free_io(io, true);
				return NULL;
			}
		}
		io->nr_pieces = sh.first_piece + sh.nr_pieces;
	}
	return io;
}

static const enum dmi_chunk_op chunk_op_of[] = {
	[DM_IO_OP_READ] = DMI_CHUNK_READ,
	[DM_IO_OP_WRITE] = DMI_CHUNK_WRITE,
	[DM_IO_OP_FLUSH] = DMI_CHUNK_FLUSH,
	[DM_IO_OP_DISCARD] = DMI_CHUNK_DISCARD,
	[DM_IO_OP_WRITE_ZEROES] = DMI_CHUNK_ZEROES,
};

static struct dmi_chunk *new_chunk(struct dmi_io *io, struct block_device *bdev,
				   unsigned int region, enum dmi_chunk_op op)
{
	struct dmi_chunk *c = &io->chunks[io->nr_chunks++];

	c->io = io;
	c->bdev = bdev;
	c->region = region;
	c->op = op;
	c->ioprio = io->ioprio;
	if (bdev)
		atomic_fetch_add_explicit(&bdev->inflight, 1,
					  memory_order_relaxed);
	return c;
}

/* Make the chunks; returns the list to submit now.  A region's chunks that
 * must wait for its PREFLUSH hang off that flush instead. */
static struct dmi_chunk *build_chunks(struct dmi_io *io, const struct plan *pl,
				      const struct io_region *where)
{
	struct dmi_chunk_queue out, deps[DM_IO_MAX_REGIONS];
	struct dmi_chunk *flush[DM_IO_MAX_REGIONS], *c;
	unsigned int p, i;

	dmi_cq_init(&out);
	for (i = 0; i < io->nr_regions; i++) {
		if (!pl->flush[i])
			continue;
		flush[i] = new_chunk(io, where[i].bdev, i, DMI_CHUNK_FLUSH);
		dmi_cq_push(&out, flush[i]);
		dmi_cq_init(&deps[i]);
	}
	/* Part-major, so that every leg of a mirror makes progress at once. */
	for (p = 0; p < pl->max_parts; p++) {
		for (i = 0; i < io->nr_regions; i++) {
			struct block_device *bdev = where[i].bdev;
			uint64_t start = where[i].sector << SECTOR_SHIFT;
			uint64_t len = where[i].count << SECTOR_SHIFT;
			enum dmi_chunk_op op = chunk_op_of[pl->op];

			if (p >= pl->parts[i])
				continue;
			if (op == DMI_CHUNK_ZEROES &&
			    atomic_load(&bdev->no_zero_range))
				op = DMI_CHUNK_ZERO_WRITE;
			c = new_chunk(io, bdev, i, op);
			if (pl->shape_of[i] >= 0) {
				const struct shape *sh =
					&pl->shapes[pl->shape_of[i]];

				c->piece = &io->pieces[sh->first_piece + p];
				c->pos = start + c->piece->buf_off;
				c->len = c->piece->len;
			} else {
				c->pos = start + p * pl->step[i];
				c->len = len - p * pl->step[i] < pl->step[i]
						 ? len - p * pl->step[i]
						 : pl->step[i];
			}
			if (pl->flags & DM_IO_FUA)
				c->flags |= DMI_CHUNK_FUA;
			dmi_cq_push(pl->flush[i] ? &deps[i] : &out, c);
		}
	}
	for (i = 0; i < io->nr_regions; i++)
		if (pl->flush[i])
			flush[i]->deps = deps[i].head;
	if (!io->nr_chunks) {
		/* Nothing to issue: a no-op still completes the request on
		 * the completion thread, like any other. */
		dmi_cq_push(&out, new_chunk(io, NULL, 0, DMI_CHUNK_NOP));
	}
	atomic_init(&io->pending, io->nr_chunks);
	return out.head;
}

static void fill_bounces(struct dmi_io *io)
{
	unsigned int i;

	for (i = 0; i < io->nr_pieces; i++) {
		const struct dmi_piece *p = &io->pieces[i];
		size_t pos = 0;
		unsigned int k;

		if (!p->bounce)
			continue;
		for (k = 0; k < p->niov; k++) {
			memcpy((char *)p->bounce + pos, p->iov[k].iov_base,
			       p->iov[k].iov_len);
			pos += p->iov[k].iov_len;
		}
	}
}

/* ---- the quick path ---- */

/* Whether a request is valid (check_request() would pass it) and takes the
 * quick path below; false sends it the long way, which says what is
 * wrong. */
static bool quick_ok(const struct dm_io_request *req, unsigned int num_regions,
		     const struct io_region *where)
{
	unsigned int op, i;
	uint64_t count;

	if (!req || !req->client || !where || !num_regions ||
	    num_regions > DM_IO_MAX_REGIONS || !req->mem.ptr.addr ||
	    (req->mem.type != DM_IO_VMA && req->mem.type != DM_IO_KMEM) ||
	    req->bi_opf & ~(DM_IO_OP_MASK | DM_IO_FUA) ||
	    req->ioprio >> 13 > 3 || (req->ioprio >> 13 == 0 && req->ioprio))
		return false;
	op = req->bi_opf & DM_IO_OP_MASK;
	if (!(op == DM_IO_OP_WRITE ||
	      (op == DM_IO_OP_READ && num_regions == 1 &&
	       !(req->bi_opf & DM_IO_FUA))))
		return false;
	count = where[0].count;
	for (i = 0; i < num_regions; i++) {
		const struct io_region *r = &where[i];
		const struct dmi_bdev_limits *lim;

		/* Byte offsets fit: count is at most a transfer's. */
		if (!r->bdev || !r->count || r->count != count)
			return false;
		lim = &r->bdev->lim;
		if (count > lim->max_bytes >> SECTOR_SHIFT ||
		    r->sector > (UINT64_MAX >> SECTOR_SHIFT) - count ||
		    (lim->direct &&
		     (uintptr_t)req->mem.ptr.addr & (lim->mem_align - 1)) ||
		    region_errno(r, op))
			return false;
	}
	return true;
}

/*
 * A read or write of contiguous memory that every region's device takes
 * whole, as one piece (no split, no bounce, no flush first): what planning
 * would find is known, so it is skipped.  Returns the request with its
 * chunks linked, or NULL when it needs planning (or memory is short: the
 * planned path knows how to wait for it).
 */
static struct dmi_io *quick_io(struct dm_io_client *client,
			       const struct dm_io_request *req,
			       unsigned int num_regions,
			       const struct io_region *where)
{
	unsigned int op = req->bi_opf & DM_IO_OP_MASK, i;
	enum dmi_chunk_op cop =
		op == DM_IO_OP_READ ? DMI_CHUNK_READ : DMI_CHUNK_WRITE;
	char *addr = req->mem.ptr.addr;
	uint64_t len = where[0].count << SECTOR_SHIFT;
	struct dmi_piece *piece;
	struct iovec *iov;
	struct layout lo;
	struct dmi_io *io;

	layout_of(num_regions, 1, num_regions, 1, &lo);
	io = dmi_pool_alloc(&client->pool, lo.size);
	if (!io)
		return NULL;
	/* Field by field: the block is not cleared, and dm_io() sets the
	 * notification. */
	io->client = client;
	io->ioprio = req->ioprio;
	io->nr_regions = num_regions;
	io->nr_chunks = num_regions;
	io->nr_pieces = 1;
	io->alloc_size = lo.size;
	io->out_errors = req->region_errors;
	io->errs = (atomic_int *)((char *)io + lo.errs);
	io->pieces = (struct dmi_piece *)((char *)io + lo.pieces);
	atomic_init(&io->pending, num_regions);
	atomic_init(&io->error_bits, 0);
	iov = (struct iovec *)((char *)io + lo.iov);
	*iov = (struct iovec){.iov_base = addr, .iov_len = len};
	piece = io->pieces;
	*piece = (struct dmi_piece){.len = len, .iov = iov, .niov = 1};
	/* new_chunk()'s work, with the fields a cleared block would have
	 * zero set here: calling it and then these costs ~20 instructions
	 * per request more (callgrind). */
	for (i = 0; i < num_regions; i++) {
		struct dmi_chunk *c = &io->chunks[i];

		c->io = io;
		c->next = i + 1 < num_regions ? c + 1 : NULL;
		c->deps = NULL;
		c->bdev = where[i].bdev;
		c->piece = piece;
		c->pos = where[i].sector << SECTOR_SHIFT;
		c->len = len;
		c->done = 0;
		c->region = i;
		c->op = cop;
		c->flags = req->bi_opf & DM_IO_FUA ? DMI_CHUNK_FUA : 0;
		c->retries = 0;
		c->ioprio = req->ioprio;
		atomic_init(&io->errs[i], 0);
		atomic_fetch_add_explicit(&where[i].bdev->inflight, 1,
					  memory_order_relaxed);
	}
	return io;
}

/* Everything else: plan each region, allocate (waiting for memory when
 * the reservation is spent), build the chunks.  Returns 0 with the
 * request in *iop and the chunks to submit now in *headp. */
static int planned_io(struct dm_io_request *req, unsigned int num_regions,
		      struct io_region *where, struct dmi_io **iop,
		      struct dmi_chunk **headp)
{
	struct dm_io_client *client = req->client;
	unsigned int op = req->bi_opf & DM_IO_OP_MASK, i;
	unsigned long early_bits = 0;
	struct dpages dp = {0};
	struct layout lo;
	struct plan pl;
	struct dmi_io *io;
	int ret;

	/* Data-less operations ignore the memory. */
	if (op == DM_IO_OP_READ || op == DM_IO_OP_WRITE) {
		ret = dmi_dp_init(&dp, &req->mem);
		if (ret)
			return ret;
	}
	ret = plan_request(&pl, req->bi_opf, num_regions, where, &dp);
	if (ret)
		return ret;
	for (i = 0; i < num_regions; i++)
		if (pl.early[i])
			early_bits |= 1UL << i;
	if (op == DM_IO_OP_READ && pl.early[0])
		zero_memory(dp, where[0].count << SECTOR_SHIFT);

	/* No chunks: a NOP still completes the request. */
	layout_of(pl.nr_chunks ? pl.nr_chunks : 1, pl.nr_pieces, num_regions,
		  pl.nr_iov, &lo);
	for (;;) {
		unsigned long gen = dmi_pool_gen(&client->pool);

		io = alloc_io(client, &pl, &lo, &dp);
		if (io)
			break;
		/* Beyond the reservation and out of heap: wait for I/O in
		 * flight to give memory back, unless we are the thread that
		 * would have to complete it, or there is none (what we just
		 * gave back ourselves does not count as news). */
		if (dmi_current_cb_client || dmi_pool_wait(&client->pool, gen))
			return -ENOMEM;
	}
	io->ioprio = req->ioprio;
	io->nr_regions = num_regions;
	io->out_errors = req->region_errors;
	for (i = 0; i < num_regions; i++)
		atomic_init(&io->errs[i], pl.early[i]);
	atomic_init(&io->error_bits, early_bits);
	*headp = build_chunks(io, &pl, where);
	if (op == DM_IO_OP_WRITE)
		fill_bounces(io);
	*iop = io;
	return 0;
}

DMIO_EXPORT int dm_io(struct dm_io_request *req, unsigned int num_regions,
		      struct io_region *where, unsigned long *sync_error_bits)
{
	struct dmi_sync_wait waiter = {0};
	struct dm_io_client *client;
	struct dmi_chunk *head;
	struct dmi_io *io;
	bool sync, quick;
	int ret;

	quick = quick_ok(req, num_regions, where);
	if (!quick && (ret = check_request(req, num_regions, where)))
		return ret;
	client = req->client;
	sync = !req->notify.fn;
	if (sync && dmi_current_cb_client)
		return -EDEADLK;
	io = quick ? quick_io(client, req, num_regions, where) : NULL;
	if (io) {
		head = io->chunks;
	} else {
		ret = planned_io(req, num_regions, where, &io, &head);
		if (ret)
			return ret;
	}
	io->waiter = sync ? &waiter : NULL;
	io->fn = req->notify.fn;
	io->context = req->notify.context;
	atomic_fetch_add_explicit(&client->nr_requests, 1,
				  memory_order_relaxed);
	/* A lone synchronous chunk on a local device (one with a file
	 * descriptor) runs here: no thread hand-off at all. */
	if (sync && io->nr_chunks == 1 && !io->ioprio &&
	    (!head->bdev || !head->bdev->ops->submit))
		dmi_chunk_exec(head);
	else
		dmi_submit(client, head);
	if (!sync)
		return 0;
	sync_wait(&waiter);
	if (sync_error_bits)
		*sync_error_bits = waiter.bits;
	return waiter.bits ? -EIO : 0;
}

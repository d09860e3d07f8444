/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NBD exports as devices, through libnbd's asynchronous API.
 *
 * Each export gets a thread of its own that owns its connections (several
 * when the server allows multi-conn): submitters only queue chunks and
 * poke an eventfd, the thread issues them, polls the sockets and completes
 * chunks.  libnbd calls a command's free function exactly once, whatever
 * happens to the command (done, failed to issue, abandoned when the
 * connection is closed), so that is where a chunk is handed back: nothing
 * in flight can be lost.  A server that makes no progress for the device's
 * timeout, or a connection that dies, fails everything in flight; later
 * requests fail at once with the same error until the export is reopened.
 */
#include <errno.h>
#include <limits.h>
#include <libnbd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "device.h"

#define NBD_MAX_CONN	       4
#define NBD_MAX_INFLIGHT       64	  /* per connection */
#define NBD_MAX_XFER	       (4u << 20) /* libnbd takes at most 64 MiB */
#define NBD_DATALESS_MAX       (1u << 30) /* the protocol's lengths are 32-bit */
#define NBD_ZERO_BUF	       (1u << 20) /* contiguous zeroes for emulation */
#define NBD_DEFAULT_TIMEOUT_MS 5000
#define RES_PENDING	       INT_MIN /* libnbd never reached the completion */

struct dmi_nbd {
	struct block_device *bdev;
	pthread_t thread;
	int efd; /* wakes the thread: work queued, or stop */
	pthread_mutex_t lock;
	struct dmi_chunk_queue queue; /* under lock */
	bool stop;		      /* under lock */
	bool self_close;	/* closed from a callback on its own thread */
	atomic_int dead;	/* what killed the export */
	atomic_uint timeout_ms; /* 0: wait for ever */
	bool can_flush, can_fua;
	void *zero_buf;
	/* The thread's own: */
	struct nbd_handle *h[NBD_MAX_CONN];
	unsigned int inflight[NBD_MAX_CONN];
	unsigned int nconn, total_inflight;
	struct dmi_chunk_queue backlog; /* not issued yet */
	struct dmi_chunk_queue done;	/* handed back by libnbd */
	uint64_t last_progress_ns;
	char *uri; /* libnbd's normal form of the export's URI, or NULL */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- libnbd's callbacks (on the thread, inside libnbd calls) ---- */

static int cmd_complete(void *user_data, int *error)
{
	struct dmi_chunk *c = user_data;

	c->be.nbd.res = *error ? -*error : 0;
	return 1; /* retire the command */
}

static void cmd_free(void *user_data)
{
	struct dmi_chunk *c = user_data;
	struct dmi_nbd *n = c->bdev->priv;

	dmi_cq_push(&n->done, c);
}

/* ---- issuing ---- */

/* The connection with the most room, or -1 when all are full. */
static int pick_conn(const struct dmi_nbd *n)
{
	unsigned int i, best = 0;

	for (i = 1; i < n->nconn; i++)
		if (n->inflight[i] < n->inflight[best])
			best = i;
	return n->nconn && n->inflight[best] < NBD_MAX_INFLIGHT ? (int)best
								: -1;
}

static int64_t issue_cmd(struct dmi_nbd *n, struct nbd_handle *h,
			 struct dmi_chunk *c)
{
	nbd_completion_callback cb = {
		.callback = cmd_complete, .user_data = c, .free = cmd_free};
	uint64_t off = c->pos + c->done;
	const struct iovec *iov;

	switch (c->op) {
	case DMI_CHUNK_READ:
	case DMI_CHUNK_WRITE:
		/* Planned contiguous: one segment, or a bounce buffer. */
		dmi_chunk_iov(c, &iov);
		c->be.nbd.len = (unsigned int)iov->iov_len;
		if (c->op == DMI_CHUNK_READ)
			return nbd_aio_pread(h, iov->iov_base, iov->iov_len,
					     off, cb, 0);
		return nbd_aio_pwrite(h, iov->iov_base, iov->iov_len, off, cb,
				      c->flags & DMI_CHUNK_FUA && n->can_fua
					      ? LIBNBD_CMD_FLAG_FUA
					      : 0);
	case DMI_CHUNK_ZERO_WRITE:
		c->be.nbd.len = c->len - c->done < NBD_ZERO_BUF
					? (unsigned int)(c->len - c->done)
					: NBD_ZERO_BUF;
		return nbd_aio_pwrite(h, n->zero_buf, c->be.nbd.len, off, cb,
				      0);
	case DMI_CHUNK_FLUSH:
		return nbd_aio_flush(h, cb, 0);
	case DMI_CHUNK_DISCARD:
		return nbd_aio_trim(h, c->len, c->pos, cb, 0);
	case DMI_CHUNK_ZEROES:
		return nbd_aio_zero(h, c->len, c->pos, cb, 0);
	default: /* no-ops never name a device */
		c->be.nbd.res = 0;
		cmd_free(c);
		return 0;
	}
}

static void issue(struct dmi_nbd *n, struct dmi_chunk *c, int conn)
{
	c->be.nbd.res = RES_PENDING;
	c->be.nbd.conn = (unsigned int)conn;
	n->inflight[conn]++;
	n->total_inflight++;
	/* A server without a flush command has no volatile cache: its
	 * writes are durable when acknowledged, so there is nothing to do. */
	if (c->op == DMI_CHUNK_FLUSH && !n->can_flush) {
		c->be.nbd.res = 0;
		cmd_free(c);
		return;
	}
	if (issue_cmd(n, n->h[conn], c) < 0) {
		/* libnbd has already called cmd_free(): say why.  A handle
		 * that has just died answers EINVAL ("invalid state"), but
		 * the caller's truth is that the connection went. */
		int err = nbd_get_errno();

		if (nbd_aio_is_dead(n->h[conn]) ||
		    nbd_aio_is_closed(n->h[conn]))
			err = ECONNRESET;
		c->be.nbd.res = -(err ? err : EIO);
	}
}

static void fail_now(struct dmi_nbd *n, struct dmi_chunk *c, int err)
{
	c->be.nbd.res = err;
	c->be.nbd.conn = UINT_MAX; /* never issued */
	dmi_cq_push(&n->done, c);
}

static void issue_backlog(struct dmi_nbd *n)
{
	int dead = atomic_load(&n->dead);

	while (!dmi_cq_empty(&n->backlog)) {
		int conn = dead ? -1 : pick_conn(n);
		struct dmi_chunk *c;

		if (!dead && conn < 0)
			break;
		c = dmi_cq_pop(&n->backlog);
		if (dead)
			fail_now(n, c, dead);
		else
			issue(n, c, conn);
	}
}

/* The export is gone: close every connection, which hands back all that
 * was in flight; the rest fails as it comes. */
static void kill_export(struct dmi_nbd *n, int err)
{
	unsigned int i;
	int none = 0;

	atomic_compare_exchange_strong(&n->dead, &none, err);
	for (i = 0; i < n->nconn; i++) {
		if (n->h[i]) {
			nbd_close(n->h[i]);
			n->h[i] = NULL;
		}
	}
	n->nconn = 0;
	issue_backlog(n);
}

/* ---- completing ---- */

static int connection_errno(int err)
{
	/* However the socket went, callers see one errno for it. */
	if (err == -ENOTCONN || err == -EPIPE || err == -ESHUTDOWN)
		return -ECONNRESET;
	return err;
}

static void finish_done(struct dmi_nbd *n)
{
	struct dmi_chunk *c;

	while ((c = dmi_cq_pop(&n->done))) {
		int res = c->be.nbd.res;

		if (c->be.nbd.conn != UINT_MAX) {
			n->inflight[c->be.nbd.conn]--;
			n->total_inflight--;
			n->last_progress_ns = now_ns();
		}
		if (res == RES_PENDING)
			res = atomic_load(&n->dead) ? atomic_load(&n->dead)
						    : -EIO;
		res = connection_errno(res);

		if (c->flags & DMI_CHUNK_FUA_FLUSH) {
			/* The flush behind an emulated FUA write is done: the
			 * write completes now. */
			c->flags &= ~DMI_CHUNK_FUA_FLUSH;
			c->op = DMI_CHUNK_WRITE;
			if (!res)
				res = (int)c->be.nbd.len;
		} else if (!res && (c->op == DMI_CHUNK_READ ||
				    c->op == DMI_CHUNK_WRITE ||
				    c->op == DMI_CHUNK_ZERO_WRITE)) {
			res = (int)c->be.nbd.len;
			if (c->op == DMI_CHUNK_WRITE &&
			    c->flags & DMI_CHUNK_FUA && !n->can_fua &&
			    n->can_flush) {
				c->flags |= DMI_CHUNK_FUA_FLUSH;
				c->op = DMI_CHUNK_FLUSH;
				dmi_cq_push(&n->backlog, c);
				continue;
			}
		}

		dmi_chunk_complete(c, res, &n->backlog);
	}
}

/* ---- the thread ---- */

static void take_queue(struct dmi_nbd *n, bool *stop)
{
	pthread_mutex_lock(&n->lock);
	dmi_cq_move(&n->backlog, &n->queue);
	*stop = n->stop;
	pthread_mutex_unlock(&n->lock);
}

static int poll_timeout(const struct dmi_nbd *n)
{
	unsigned int ms = atomic_load(&n->timeout_ms);
	uint64_t waited;

	if (!n->total_inflight || !ms)
		return -1;
	waited = (now_ns() - n->last_progress_ns) / 1000000u;
	return waited >= ms ? 0 : (int)(ms - waited);
}

static void free_nbd(struct dmi_nbd *n);

static void *nbd_thread(void *arg)
{
	struct dmi_nbd *n = arg;

	for (;;) {
		struct pollfd pfd[NBD_MAX_CONN + 1];
		unsigned int i;
		uint64_t val;
		bool stop;
		int ms;

		take_queue(n, &stop);
		if (n->total_inflight == 0)
			n->last_progress_ns = now_ns();
		issue_backlog(n);
		finish_done(n);
		if (n->self_close) {
			/* Nothing is in flight (close checked), and nothing
			 * else will come: the thread frees what it ran. */
			struct block_device *bdev = n->bdev;

			/* A submitter may still hold the lock it woke us
			 * under: let it leave first. */
			pthread_mutex_lock(&n->lock);
			pthread_mutex_unlock(&n->lock);
			pthread_detach(pthread_self());
			free_nbd(n);
			free(bdev);
			return NULL;
		}
		if (!dmi_cq_empty(&n->done) ||
		    (!dmi_cq_empty(&n->backlog) && pick_conn(n) >= 0))
			continue;
		if (stop && !n->total_inflight && dmi_cq_empty(&n->backlog))
			break;

		pfd[0] = (struct pollfd){.fd = n->efd, .events = POLLIN};
		for (i = 0; i < n->nconn; i++) {
			unsigned int dir = nbd_aio_get_direction(n->h[i]);

			pfd[i + 1].fd = nbd_aio_get_fd(n->h[i]);
			pfd[i + 1].events =
				(dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
				(dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT
								  : 0);
			pfd[i + 1].revents = 0;
		}
		ms = poll_timeout(n);
		if (poll(pfd, n->nconn + 1, ms) < 0 && errno != EINTR)
			continue;
		if (pfd[0].revents & POLLIN &&
		    read(n->efd, &val, sizeof(val)) < 0)
			val = 0;
		for (i = 0; i < n->nconn; i++) {
			short ev = pfd[i + 1].revents;

			if (ev & (POLLIN | POLLHUP | POLLERR))
				nbd_aio_notify_read(n->h[i]);
			if (ev & POLLOUT)
				nbd_aio_notify_write(n->h[i]);
			if (nbd_aio_is_dead(n->h[i]) ||
			    nbd_aio_is_closed(n->h[i])) {
				/* nbd_get_errno() is this thread's last libnbd
				 * error, not necessarily the connection's:
				 * every caller of a dead export sees one
				 * errno. */
				kill_export(n, -ECONNRESET);
				break;
			}
		}
		if (n->total_inflight && !poll_timeout(n))
			kill_export(n, -ETIMEDOUT);
	}
	return NULL;
}

/* The device's submit hook: queue a chunk for the export's thread. */
static void nbd_submit(struct block_device *bdev, struct dmi_chunk *head)
{
	struct dmi_nbd *n = bdev->priv;
	uint64_t one = 1;

	/* Woken under the lock: once the chunks are queued they may
	 * complete and the export be closed from their callback, so nothing
	 * here may touch it after unlocking. */
	pthread_mutex_lock(&n->lock);
	dmi_cq_splice(&n->queue, head);
	if (write(n->efd, &one, sizeof(one)) < 0)
		one = 0; /* the counter is saturated: the thread is awake */
	pthread_mutex_unlock(&n->lock);
}

static int export_set_timeout(struct block_device *bdev, unsigned int ms)
{
	struct dmi_nbd *n = bdev->priv;
	uint64_t one = 1;

	atomic_store(&n->timeout_ms, ms);
	if (write(n->efd, &one, sizeof(one)) < 0)
		return 0; /* already awake */
	return 0;
}

/* ---- opening and closing ---- */

/* Connect within the timeout: a server that accepts and then says nothing
 * must not hang dm_bdev_open(). */
static struct nbd_handle *connect_one(const char *uri, unsigned int ms,
				      int *err)
{
	struct nbd_handle *h = nbd_create();
	uint64_t deadline = now_ns() + (uint64_t)ms * 1000000u;

	if (!h) {
		*err = -ENOMEM;
		return NULL;
	}
	nbd_set_uri_allow_local_file(h, true); /* tls-psk-file= */
	nbd_set_pread_initialize(h, false);    /* we zero failed reads */
	if (nbd_aio_connect_uri(h, uri) < 0)
		goto fail;
	while (nbd_aio_is_connecting(h)) {
		uint64_t now = now_ns();

		if (now >= deadline) {
			nbd_close(h);
			*err = -ETIMEDOUT;
			return NULL;
		}
		if (nbd_poll(h, (int)((deadline - now) / 1000000u) + 1) < 0)
			goto fail;
	}
	if (nbd_aio_is_ready(h))
		return h;
fail:
	*err = -(nbd_get_errno() ? nbd_get_errno() : ECONNREFUSED);
	nbd_close(h);
	return NULL;
}

static uint32_t pow2_floor(uint64_t v)
{
	uint32_t p = 1;

	while ((uint64_t)p * 2 <= v && p < (1u << 30))
		p *= 2;
	return p;
}

static void probe(struct block_device *bdev, struct nbd_handle *h)
{
	struct dmi_nbd *n = bdev->priv;
	struct dmi_bdev_limits *lim = &bdev->lim;
	int64_t min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	int64_t max = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM);

	lim->size = (uint64_t)nbd_get_size(h);
	lim->lbs = min > 512 ? pow2_floor((uint64_t)min) : 512;
	lim->mem_align = 1;
	lim->max_bytes = NBD_MAX_XFER;
	if (max > 0 && (uint64_t)max < lim->max_bytes)
		lim->max_bytes = pow2_floor((uint64_t)max);
	if (lim->max_bytes < lim->lbs)
		lim->max_bytes = lim->lbs;
	lim->discard_max = nbd_can_trim(h) > 0 ? NBD_DATALESS_MAX : 0;
	lim->zeroes_max = NBD_DATALESS_MAX;
	/* Without the zero command, write-zeroes is written. */
	atomic_init(&bdev->no_zero_range, nbd_can_zero(h) <= 0);
	n->can_flush = nbd_can_flush(h) > 0;
	n->can_fua = nbd_can_fua(h) > 0;
	if (nbd_is_read_only(h) > 0)
		bdev->flags |= DM_BDEV_RDONLY;
}

/* Say goodbye properly (TLS servers log an abrupt close), but never wait
 * long for a server that no longer answers. */
static void disconnect(struct nbd_handle *h)
{
	uint64_t deadline = now_ns() + 200000000u;

	if (!nbd_aio_is_ready(h) || nbd_aio_disconnect(h, 0) < 0)
		return;
	while (!nbd_aio_is_closed(h) && !nbd_aio_is_dead(h)) {
		uint64_t now = now_ns();

		if (now >= deadline ||
		    nbd_poll(h, (int)((deadline - now) / 1000000u) + 1) < 0)
			return;
	}
}

static void free_nbd(struct dmi_nbd *n)
{
	unsigned int i;

	for (i = 0; i < n->nconn; i++) {
		disconnect(n->h[i]);
		nbd_close(n->h[i]);
	}
	if (n->zero_buf)
		munmap(n->zero_buf, NBD_ZERO_BUF);
	if (n->efd >= 0)
		close(n->efd);
	pthread_mutex_destroy(&n->lock);
	free(n->uri);
	free(n);
}

static int export_close(struct block_device *bdev);

/* What the export is: two URIs spelt differently may name the same. */
static const char *export_uri(const struct block_device *bdev)
{
	const struct dmi_nbd *n = bdev->priv;

	return n->uri ? n->uri : bdev->name;
}

static bool export_same(const struct block_device *a,
			const struct block_device *b)
{
	return !strcmp(export_uri(a), export_uri(b));
}

static const struct dmi_bdev_ops nbd_ops = {
	.kind = "nbd",
	.submit = nbd_submit,
	.close = export_close,
	.set_timeout = export_set_timeout,
	.same = export_same,
};

dmi_bdev_open_fn dmi_nbd_open;

struct block_device *dmi_nbd_open(const char *uri, unsigned int flags)
{
	struct dmi_nbd *n = calloc(1, sizeof(*n));
	struct block_device *bdev = dmi_bdev_alloc(uri, &nbd_ops, n);
	unsigned int want, i;
	int err = -ENOMEM;

	if (!bdev || !n)
		goto fail;
	bdev->flags = flags & DM_BDEV_RDONLY;
	bdev->lim.contig = true; /* libnbd takes one buffer per command */
	n->bdev = bdev;
	dmi_cq_init(&n->queue);
	dmi_cq_init(&n->backlog);
	dmi_cq_init(&n->done);
	n->efd = -1;
	atomic_init(&n->timeout_ms, NBD_DEFAULT_TIMEOUT_MS);
	atomic_init(&n->dead, 0);
	pthread_mutex_init(&n->lock, NULL);

	n->h[0] = connect_one(uri, NBD_DEFAULT_TIMEOUT_MS, &err);
	if (!n->h[0])
		goto fail;
	n->nconn = 1;
	n->uri = nbd_get_uri(n->h[0]);
	probe(bdev, n->h[0]);
	/* More connections only where the server promises that they all see
	 * the same data (multi-conn); one that fails just is not used. */
	want = nbd_can_multi_conn(n->h[0]) > 0 ? NBD_MAX_CONN : 1;
	for (i = 1; i < want; i++) {
		n->h[i] = connect_one(uri, NBD_DEFAULT_TIMEOUT_MS, &err);
		if (!n->h[i])
			break;
		n->nconn++;
	}

	n->zero_buf = mmap(NULL, NBD_ZERO_BUF, PROT_READ,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	n->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->zero_buf == MAP_FAILED || n->efd < 0) {
		if (n->zero_buf == MAP_FAILED)
			n->zero_buf = NULL;
		err = -ENOMEM;
		goto fail;
	}
	err = -pthread_create(&n->thread, NULL, nbd_thread, n);
	if (err)
		goto fail;
	return bdev;

fail:
	if (n)
		free_nbd(n);
	free(bdev);
	errno = -err;
	return NULL;
}

static int export_close(struct block_device *bdev)
{
	struct dmi_nbd *n = bdev->priv;
	uint64_t one = 1;

	if (pthread_equal(pthread_self(), n->thread)) {
		/* From one of this export's callbacks: joining would wait
		 * for ourselves, so the thread finishes the job on return. */
		n->self_close = true;
		return 0;
	}
	pthread_mutex_lock(&n->lock);
	n->stop = true;
	pthread_mutex_unlock(&n->lock);
	if (write(n->efd, &one, sizeof(one)) < 0)
		one = 0; /* awake already */
	pthread_join(n->thread, NULL);
	free_nbd(n);
	free(bdev);
	return 0;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engines on local devices: libdmio through its public API, and the
 * three ways people do the same without it (a pread/pwrite loop, glibc
 * POSIX AIO, raw liburing).  Each opens its own descriptors outside the
 * timed part and counts a request once it has completed on every device.
 */
#include <aio.h>
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dmio/dm-io.h>
#include <dmio/dm-kcopyd.h>

#include "bench.h"

static void close_fds(int *fd, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (fd[i] >= 0)
			close(fd[i]);
}

static int open_fds(const struct workload *w, unsigned int n, int *fd)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		fd[i] = -1;
	for (i = 0; i < n; i++) {
		/* Copies read device 0 and write the others. */
		bool write = w->dir == DIR_WRITE || (w->bytes && i > 0);

		fd[i] = open_dev(w->paths[i], w->direct, write);
		if (fd[i] < 0) {
			int err = fd[i];

			close_fds(fd, i);
			return err;
		}
	}
	return 0;
}

static void free_bufs(void **buf, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		free(buf[i]);
}

/* ---- libdmio ---- */

static unsigned int bdev_flags(const struct workload *w)
{
	/* NBD exports ignore these; local devices get what the peers get. */
	return w->direct ? DM_BDEV_DIRECT : DM_BDEV_BUFFERED;
}

static int open_bdevs(const struct workload *w, unsigned int n,
		      struct block_device **bdev)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		bdev[i] = dm_bdev_open(w->paths[i], bdev_flags(w));
		if (!bdev[i]) {
			int err = -errno;

			while (i--)
				dm_bdev_close(bdev[i]);
			return err;
		}
	}
	return 0;
}

static void close_bdevs(struct block_device **bdev, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		dm_bdev_close(bdev[i]);
}

struct lib_run;

struct lib_slot {
	struct lib_run *run;
	void *buf;
};

struct lib_run {
	const struct workload *w;
	struct dm_io_client *client;
	struct block_device *bdev[MAX_DEVS];
	double start;
	atomic_uint_fast64_t issued, done;
	atomic_uint live; /* slots still cycling */
	atomic_int err;
	sem_t finished;
	struct lib_slot slot[MAX_QD];
};

static void lib_done(unsigned long error, void *context);

static void lib_slot_end(struct lib_run *run)
{
	if (atomic_fetch_sub(&run->live, 1) == 1)
		sem_post(&run->finished);
}

/* Issue a slot's next request: one dm_io() call for every region. */
static bool lib_issue(struct lib_slot *s)
{
	struct lib_run *run = s->run;
	const struct workload *w = run->w;
	struct io_region where[MAX_DEVS];
	struct dm_io_request req = {
		.bi_opf = w->dir == DIR_WRITE ? DM_IO_OP_WRITE : DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = s->buf},
		.notify = {.fn = lib_done, .context = s},
		.client = run->client,
	};
	uint64_t idx, off;
	unsigned int i;
	int ret;

	if (atomic_load(&run->err))
		return false;
	idx = atomic_fetch_add(&run->issued, 1);
	if (!want_more(w, run->start, idx))
		return false;
	off = req_offset(w, idx);
	for (i = 0; i < w->nr_regions; i++)
		where[i] = (struct io_region){run->bdev[i], off >> SECTOR_SHIFT,
					      w->bs >> SECTOR_SHIFT};
	ret = dm_io(&req, w->nr_regions, where, NULL);
	if (ret) {
		atomic_store(&run->err, ret);
		return false;
	}
	return true;
}

/* Runs on libdmio's completion thread: the next request of this slot goes
 * from here, as kcopyd does, so the queue never drains while we wait. */
static void lib_done(unsigned long error, void *context)
{
	struct lib_slot *s = context;
	struct lib_run *run = s->run;

	if (error)
		atomic_store(&run->err, -EIO);
	else
		atomic_fetch_add(&run->done, 1);
	if (!lib_issue(s))
		lib_slot_end(run);
}

int eng_libdmio(const struct workload *w, struct result *r)
{
	struct lib_run *run = calloc(1, sizeof(*run));
	unsigned int i;
	int ret;

	if (!run)
		return -ENOMEM;
	run->w = w;
	ret = open_bdevs(w, w->nr_regions, run->bdev);
	if (ret)
		goto out_free;
	run->client = dm_io_client_create();
	if (!run->client) {
		ret = -errno;
		goto out_close;
	}
	sem_init(&run->finished, 0, 0);
	for (i = 0; i < w->qd; i++) {
		run->slot[i].run = run;
		run->slot[i].buf = bench_buffer(w->bs, w->dir, i);
	}
	atomic_init(&run->live, w->qd);
	run->start = now_sec();
	for (i = 0; i < w->qd; i++)
		if (!lib_issue(&run->slot[i]))
			lib_slot_end(run);
	sem_wait(&run->finished);
	r->secs = now_sec() - run->start;
	r->ops = atomic_load(&run->done);
	r->err = atomic_load(&run->err);
	ret = r->err;
	dm_io_client_destroy(run->client);
	sem_destroy(&run->finished);
	for (i = 0; i < w->qd; i++)
		free(run->slot[i].buf);
out_close:
	close_bdevs(run->bdev, w->nr_regions);
out_free:
	free(run);
	return ret;
}

/* Queue depth 1 through the synchronous form: the caller's thread waits. */
int eng_libdmio_sync(const struct workload *w, struct result *r)
{
	struct block_device *bdev[MAX_DEVS];
	struct io_region where[MAX_DEVS];
	struct dm_io_request req = {
		.bi_opf = w->dir == DIR_WRITE ? DM_IO_OP_WRITE : DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM},
	};
	uint64_t idx;
	double start;
	unsigned int i;
	int ret;

	ret = open_bdevs(w, w->nr_regions, bdev);
	if (ret)
		return ret;
	req.client = dm_io_client_create();
	if (!req.client) {
		ret = -errno;
		goto out;
	}
	req.mem.ptr.addr = bench_buffer(w->bs, w->dir, 0);
	start = now_sec();
	for (idx = 0; want_more(w, start, idx); idx++) {
		uint64_t off = req_offset(w, idx);

		for (i = 0; i < w->nr_regions; i++)
			where[i] =
				(struct io_region){bdev[i], off >> SECTOR_SHIFT,
						   w->bs >> SECTOR_SHIFT};
		ret = dm_io(&req, w->nr_regions, where, NULL);
		if (ret)
			break;
	}
	r->secs = now_sec() - start;
	r->ops = idx;
	r->err = ret;
	free(req.mem.ptr.addr);
	dm_io_client_destroy(req.client);
out:
	close_bdevs(bdev, w->nr_regions);
	return ret;
}

/* ---- a pread/pwrite loop: one device after another, queue depth 1 ---- */

static int full_io(int fd, enum io_dir dir, char *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = dir == DIR_WRITE ? pwrite(fd, buf, len, (off_t)off)
					     : pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return -EIO;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int eng_pio_loop(const struct workload *w, struct result *r)
{
	int fd[MAX_DEVS];
	char *buf;
	uint64_t idx;
	double start;
	unsigned int i;
	int ret;

	ret = open_fds(w, w->nr_regions, fd);
	if (ret)
		return ret;
	buf = bench_buffer(w->bs, w->dir, 0);
	start = now_sec();
	for (idx = 0; !ret && want_more(w, start, idx); idx++) {
		uint64_t off = req_offset(w, idx);

		for (i = 0; !ret && i < w->nr_regions; i++)
			ret = full_io(fd[i], w->dir, buf, w->bs, off);
	}
	r->secs = now_sec() - start;
	r->ops = ret ? idx - 1 : idx;
	r->err = ret;
	free(buf);
	close_fds(fd, w->nr_regions);
	return ret;
}

/* ---- glibc POSIX AIO: one lio_listio() list per request ---- */

struct lio_run {
	const struct workload *w;
	struct aiocb *cb;	      /* qd lists of nr_regions entries */
	struct aiocb **list;	      /* entries still in flight, or NULL */
	const struct aiocb **wait;    /* scratch for aio_suspend() */
	unsigned int pending[MAX_QD]; /* entries in flight per slot */
	void *buf[MAX_QD];
	int fd[MAX_DEVS];
	uint64_t issued;
	double start;
};

/* Issue slot @s's next request as one list; 1 issued, 0 run over. */
static int lio_issue(struct lio_run *l, unsigned int s)
{
	const struct workload *w = l->w;
	unsigned int n = w->nr_regions, i;
	uint64_t off;

	if (!want_more(w, l->start, l->issued))
		return 0;
	off = req_offset(w, l->issued++);
	for (i = 0; i < n; i++) {
		struct aiocb *c = &l->cb[s * n + i];

		memset(c, 0, sizeof(*c));
		c->aio_fildes = l->fd[i];
		c->aio_buf = l->buf[s];
		c->aio_nbytes = w->bs;
		c->aio_offset = (off_t)off;
		c->aio_lio_opcode = w->dir == DIR_WRITE ? LIO_WRITE : LIO_READ;
		l->list[s * n + i] = c;
	}
	if (lio_listio(LIO_NOWAIT, &l->list[s * n], (int)n, NULL)) {
		int err = -errno;

		/* What was queued still runs: forget none of it. */
		for (i = 0; i < n; i++)
			if (aio_error(&l->cb[s * n + i]) == EINVAL)
				l->list[s * n + i] = NULL;
		return err;
	}
	l->pending[s] = n;
	return 1;
}

/* Reap slot @s's finished entries; 1 when its request is complete. */
static int lio_reap(struct lio_run *l, unsigned int s, int *err)
{
	unsigned int n = l->w->nr_regions, i;

	for (i = 0; l->pending[s] && i < n; i++) {
		struct aiocb *c = l->list[s * n + i];
		int e;

		if (!c || (e = aio_error(c)) == EINPROGRESS)
			continue;
		if ((e || aio_return(c) != (ssize_t)l->w->bs) && !*err)
			*err = e ? -e : -EIO;
		l->list[s * n + i] = NULL;
		l->pending[s]--;
	}
	return !l->pending[s];
}

int eng_lio(const struct workload *w, struct result *r)
{
	/* Threads enough for every request in flight, so that what limits
	 * it is glibc's queueing per descriptor, not a small pool. */
	struct aioinit init = {
		.aio_threads = 64,
		.aio_num = 1024,
		.aio_idle_time = 1,
	};
	unsigned int total = w->nr_regions * w->qd, live = 0, s, i, k;
	bool active[MAX_QD] = {false};
	struct lio_run l = {.w = w};
	uint64_t done = 0;
	int ret;

	l.cb = calloc(total, sizeof(*l.cb));
	l.list = calloc(total, sizeof(*l.list));
	l.wait = calloc(total, sizeof(*l.wait));
	if (!l.cb || !l.list || !l.wait) {
		ret = -ENOMEM;
		goto out_free;
	}
	aio_init(&init);
	ret = open_fds(w, w->nr_regions, l.fd);
	if (ret)
		goto out_free;
	for (s = 0; s < w->qd; s++)
		l.buf[s] = bench_buffer(w->bs, w->dir, s);

	l.start = now_sec();
	for (s = 0; s < w->qd && !ret; s++) {
		ret = lio_issue(&l, s);
		if (ret > 0) {
			active[s] = true;
			live++;
			ret = 0;
		}
	}
	while (live && !ret) {
		k = 0;
		for (i = 0; i < total; i++)
			if (l.list[i])
				l.wait[k++] = l.list[i];
		if (aio_suspend(l.wait, (int)k, NULL) && errno != EINTR &&
		    errno != EAGAIN) {
			ret = -errno;
			break;
		}
		for (s = 0; s < w->qd; s++) {
			if (!active[s] || !lio_reap(&l, s, &ret))
				continue;
			active[s] = false;
			live--;
			if (ret)
				continue;
			done++;
			ret = lio_issue(&l, s);
			if (ret > 0) {
				active[s] = true;
				live++;
				ret = 0;
			}
		}
	}
	r->secs = now_sec() - l.start;
	r->ops = done;
	r->err = ret;
	/* An error can leave requests in flight: they must end before their
	 * buffers go. */
	for (i = 0; i < total; i++) {
		if (l.list[i]) {
			const struct aiocb *one[1] = {l.list[i]};

			while (aio_error(l.list[i]) == EINPROGRESS)
				aio_suspend(one, 1, NULL);
			aio_return(l.list[i]);
		}
	}
	free_bufs(l.buf, w->qd);
	close_fds(l.fd, w->nr_regions);
out_free:
	free(l.cb);
	free(l.list);
	free(l.wait);
	return ret;
}

/* ---- raw liburing, same queue depth ---- */

struct uring_run {
	struct io_uring ring;
	const struct workload *w;
	int fd[MAX_DEVS];
	void *buf[MAX_QD];
	unsigned int pending[MAX_QD];
	uint64_t issued;
	double start;
};

static bool uring_issue(struct uring_run *u, unsigned int s)
{
	const struct workload *w = u->w;
	uint64_t off;
	unsigned int i;

	if (!want_more(w, u->start, u->issued))
		return false;
	off = req_offset(w, u->issued++);
	for (i = 0; i < w->nr_regions; i++) {
		/* Room is guaranteed: the ring holds every request's entries
		 * and a slot is refilled only after its own completed. */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

		if (w->dir == DIR_WRITE)
			io_uring_prep_write(sqe, u->fd[i], u->buf[s],
					    (unsigned int)w->bs, off);
		else
			io_uring_prep_read(sqe, u->fd[i], u->buf[s],
					   (unsigned int)w->bs, off);
		io_uring_sqe_set_data64(sqe, s);
	}
	u->pending[s] = w->nr_regions;
	return true;
}

int eng_uring(const struct workload *w, struct result *r)
{
	struct uring_run *u = calloc(1, sizeof(*u));
	unsigned int entries = 8, live = 0, s;
	uint64_t done = 0;
	int ret;

	if (!u)
		return -ENOMEM;
	u->w = w;
	while (entries < w->qd * w->nr_regions)
		entries *= 2;
	ret = io_uring_queue_init(entries, &u->ring, 0);
	if (ret)
		goto out_free;
	ret = open_fds(w, w->nr_regions, u->fd);
	if (ret)
		goto out_ring;
	for (s = 0; s < w->qd; s++)
		u->buf[s] = bench_buffer(w->bs, w->dir, s);

	u->start = now_sec();
	for (s = 0; s < w->qd; s++)
		if (uring_issue(u, s))
			live++;
	while (live) {
		struct io_uring_cqe *cqe;
		unsigned int head, seen = 0;

		ret = io_uring_submit_and_wait(&u->ring, 1);
		if (ret == -EINTR)
			continue;
		if (ret < 0)
			break;
		ret = 0;
		io_uring_for_each_cqe(&u->ring, head, cqe)
		{
			s = (unsigned int)io_uring_cqe_get_data64(cqe);
			seen++;
			if (cqe->res != (int)w->bs && !ret)
				ret = cqe->res < 0 ? cqe->res : -EIO;
			if (--u->pending[s])
				continue;
			done++;
			if (ret || !uring_issue(u, s))
				live--;
		}
		io_uring_cq_advance(&u->ring, seen);
	}
	r->secs = now_sec() - u->start;
	r->ops = done;
	r->err = ret;
	free_bufs(u->buf, w->qd);
	close_fds(u->fd, w->nr_regions);
out_ring:
	/* queue_exit waits for anything still in flight after an error. */
	io_uring_queue_exit(&u->ring);
out_free:
	free(u);
	return ret;
}

/* ---- the submitting-thread pattern ----
 *
 * How programs most often use an async API: one thread submits while
 * fewer than QD requests are in flight and otherwise waits on a condition
 * variable, which the completion signals.  libdmio's callback runs on its
 * completion thread; raw liburing gets a reaper thread of its own doing
 * the same, so that both pay the same hand-off.
 */
struct sub_run;

/* A request's slot: its buffer and, for raw liburing, its entries left.
 * Completions come back in any order, so a slot is reused only once it
 * is free again, never by turn. */
struct sub_slot {
	struct sub_run *s;
	unsigned int idx;
};

struct sub_run {
	pthread_mutex_t lock;
	pthread_cond_t room;
	unsigned int inflight;
	unsigned int nfree;
	unsigned int free[MAX_QD];
	struct sub_slot slot[MAX_QD];
	uint64_t done;
	int err;
};

static void sub_init(struct sub_run *s)
{
	unsigned int i;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->room, NULL);
	for (i = 0; i < MAX_QD; i++) {
		s->slot[i] = (struct sub_slot){s, i};
		s->free[s->nfree++] = MAX_QD - 1 - i;
	}
}

static void sub_destroy(struct sub_run *s)
{
	pthread_cond_destroy(&s->room);
	pthread_mutex_destroy(&s->lock);
}

/* A completion: one more done, one less in flight, its slot free again,
 * wake the submitter. */
static void sub_complete(struct sub_run *s, unsigned int slot, int err)
{
	pthread_mutex_lock(&s->lock);
	if (err && !s->err)
		s->err = err;
	else if (!err)
		s->done++;
	s->inflight--;
	s->free[s->nfree++] = slot;
	pthread_cond_signal(&s->room);
	pthread_mutex_unlock(&s->lock);
}

/* Wait (the lock held) until fewer than @qd are in flight. */
static void sub_wait_room(struct sub_run *s, unsigned int qd)
{
	while (s->inflight >= qd)
		pthread_cond_wait(&s->room, &s->lock);
}

/* Wait for room (the lock held), then take a free slot for one more in
 * flight. */
static unsigned int sub_take(struct sub_run *s, unsigned int qd)
{
	sub_wait_room(s, qd);
	s->inflight++;
	return s->free[--s->nfree];
}

/* A request that never went: its slot back, one less in flight. */
static void sub_untake(struct sub_run *s, unsigned int slot, int err)
{
	s->inflight--;
	s->free[s->nfree++] = slot;
	s->err = err;
}

struct libsub {
	struct sub_run s;
	struct dm_io_client *client;
	struct block_device *bdev[MAX_DEVS];
};

static void libsub_done(unsigned long error, void *context)
{
	struct sub_slot *slot = context;

	sub_complete(slot->s, slot->idx, error ? -EIO : 0);
}

int eng_libdmio_submitter(const struct workload *w, struct result *r)
{
	struct libsub *l = calloc(1, sizeof(*l));
	void *buf[MAX_QD] = {0};
	unsigned int i;
	uint64_t issued = 0;
	double start;
	int ret;

	if (!l)
		return -ENOMEM;
	sub_init(&l->s);
	ret = open_bdevs(w, w->nr_regions, l->bdev);
	if (ret)
		goto out_free;
	l->client = dm_io_client_create();
	if (!l->client) {
		ret = -errno;
		goto out_close;
	}
	for (i = 0; i < w->qd; i++)
		buf[i] = bench_buffer(w->bs, w->dir, i);
	start = now_sec();
	pthread_mutex_lock(&l->s.lock);
	while (!l->s.err && want_more(w, start, issued)) {
		struct io_region where[MAX_DEVS];
		uint64_t off = req_offset(w, issued++);
		unsigned int slot = sub_take(&l->s, w->qd);
		struct dm_io_request req = {
			.bi_opf = w->dir == DIR_WRITE ? DM_IO_OP_WRITE
						      : DM_IO_OP_READ,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = buf[slot]},
			.notify = {.fn = libsub_done,
				   .context = &l->s.slot[slot]},
			.client = l->client,
		};

		pthread_mutex_unlock(&l->s.lock);
		for (i = 0; i < w->nr_regions; i++)
			where[i] = (struct io_region){l->bdev[i],
						      off >> SECTOR_SHIFT,
						      w->bs >> SECTOR_SHIFT};
		ret = dm_io(&req, w->nr_regions, where, NULL);
		pthread_mutex_lock(&l->s.lock);
		if (ret)
			sub_untake(&l->s, slot, ret);
	}
	sub_wait_room(&l->s, 1);
	pthread_mutex_unlock(&l->s.lock);
	r->secs = now_sec() - start;
	r->ops = l->s.done;
	r->err = ret = l->s.err;
	dm_io_client_destroy(l->client);
	free_bufs(buf, w->qd);
out_close:
	close_bdevs(l->bdev, w->nr_regions);
out_free:
	sub_destroy(&l->s);
	free(l);
	return ret;
}

struct uringsub {
	struct sub_run s;
	struct io_uring ring; /* the submitter fills the SQ, the reaper
				 empties the CQ */
	const struct workload *w;
	unsigned int pending[MAX_QD]; /* entries in flight per slot */
	int err[MAX_QD];	      /* the first failure per slot */
};

static void *uringsub_reaper(void *arg)
{
	struct uringsub *u = arg;

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned int s;
		int res;

		if (io_uring_wait_cqe(&u->ring, &cqe))
			continue;
		s = (unsigned int)io_uring_cqe_get_data64(cqe);
		res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		if (s == MAX_QD)
			return NULL; /* the stop request */
		if (res != (int)u->w->bs && !u->err[s])
			u->err[s] = res < 0 ? res : -EIO;
		if (!--u->pending[s]) {
			sub_complete(&u->s, s, u->err[s]);
			u->err[s] = 0;
		}
	}
}

int eng_uring_submitter(const struct workload *w, struct result *r)
{
	struct uringsub *u = calloc(1, sizeof(*u));
	int fd[MAX_DEVS];
	void *buf[MAX_QD] = {0};
	unsigned int entries = 8, i;
	struct io_uring_sqe *sqe;
	pthread_t reaper;
	uint64_t issued = 0;
	double start;
	int ret;

	if (!u)
		return -ENOMEM;
	sub_init(&u->s);
	u->w = w;
	while (entries < w->qd * w->nr_regions + 1)
		entries *= 2;
	ret = io_uring_queue_init(entries, &u->ring, 0);
	if (ret)
		goto out_free;
	ret = open_fds(w, w->nr_regions, fd);
	if (ret)
		goto out_ring;
	for (i = 0; i < w->qd; i++)
		buf[i] = bench_buffer(w->bs, w->dir, i);
	ret = -pthread_create(&reaper, NULL, uringsub_reaper, u);
	if (ret)
		goto out_fds;
	start = now_sec();
	pthread_mutex_lock(&u->s.lock);
	while (!u->s.err && want_more(w, start, issued)) {
		uint64_t off = req_offset(w, issued++);
		unsigned int slot = sub_take(&u->s, w->qd);

		pthread_mutex_unlock(&u->s.lock);
		u->pending[slot] = w->nr_regions;
		for (i = 0; i < w->nr_regions; i++) {
			sqe = io_uring_get_sqe(&u->ring);
			if (w->dir == DIR_WRITE)
				io_uring_prep_write(sqe, fd[i], buf[slot],
						    (unsigned int)w->bs, off);
			else
				io_uring_prep_read(sqe, fd[i], buf[slot],
						   (unsigned int)w->bs, off);
			io_uring_sqe_set_data64(sqe, slot);
		}
		io_uring_submit(&u->ring);
		pthread_mutex_lock(&u->s.lock);
	}
	sub_wait_room(&u->s, 1);
	pthread_mutex_unlock(&u->s.lock);
	r->secs = now_sec() - start;
	r->ops = u->s.done;
	r->err = ret = u->s.err;
	/* A no-op tagged MAX_QD tells the reaper to go. */
	sqe = io_uring_get_sqe(&u->ring);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, MAX_QD);
	io_uring_submit(&u->ring);
	pthread_join(reaper, NULL);
out_fds:
	free_bufs(buf, w->qd);
	close_fds(fd, w->nr_regions);
out_ring:
	io_uring_queue_exit(&u->ring);
out_free:
	sub_destroy(&u->s);
	free(u);
	return ret;
}

/* ---- copies: kcopyd, and a read-then-write-each loop ---- */

struct kc_wait {
	sem_t sem;
	int read_err;
	unsigned long write_err;
};

static void kc_done(int read_err, unsigned long write_err, void *context)
{
	struct kc_wait *kw = context;

	kw->read_err = read_err;
	kw->write_err = write_err;
	sem_post(&kw->sem);
}

int eng_kcopyd(const struct workload *w, struct result *r)
{
	struct block_device *bdev[MAX_DEVS];
	struct io_region from, dests[MAX_DEVS];
	struct dm_kcopyd_client *kc;
	struct kc_wait kw = {.read_err = 0};
	unsigned int n = w->nr_regions, i;
	double start;
	int ret;

	ret = open_bdevs(w, n, bdev);
	if (ret)
		return ret;
	kc = dm_kcopyd_client_create();
	if (!kc) {
		ret = -errno;
		goto out;
	}
	sem_init(&kw.sem, 0, 0);
	from = (struct io_region){bdev[0], 0, w->bytes >> SECTOR_SHIFT};
	for (i = 1; i < n; i++)
		dests[i - 1] = (struct io_region){bdev[i], 0,
						  w->bytes >> SECTOR_SHIFT};
	start = now_sec();
	ret = dm_kcopyd_copy(kc, &from, n - 1, dests, 0, kc_done, &kw);
	if (!ret) {
		sem_wait(&kw.sem);
		if (kw.read_err || kw.write_err)
			ret = -EIO;
	}
	r->secs = now_sec() - start;
	r->ops = ret ? 0 : w->bytes / w->bs;
	r->err = ret;
	dm_kcopyd_client_destroy(kc);
	sem_destroy(&kw.sem);
out:
	close_bdevs(bdev, n);
	return ret;
}

/* What a hand-rolled mirror copy does: read a block, write it to each
 * destination in turn. */
int eng_copy_loop(const struct workload *w, struct result *r)
{
	int fd[MAX_DEVS];
	char *buf;
	uint64_t idx;
	double start;
	unsigned int i;
	int ret;

	ret = open_fds(w, w->nr_regions, fd);
	if (ret)
		return ret;
	buf = bench_buffer(w->bs, DIR_READ, 0);
	start = now_sec();
	for (idx = 0; !ret && want_more(w, start, idx); idx++) {
		uint64_t off = idx * w->bs;

		ret = full_io(fd[0], DIR_READ, buf, w->bs, off);
		for (i = 1; !ret && i < w->nr_regions; i++)
			ret = full_io(fd[i], DIR_WRITE, buf, w->bs, off);
	}
	r->secs = now_sec() - start;
	r->ops = ret ? 0 : idx;
	r->err = ret;
	free(buf);
	close_fds(fd, w->nr_regions);
	return ret;
}

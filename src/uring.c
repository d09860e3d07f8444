/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The io_uring backend.  Any thread fills submission entries under a short
 * spin lock; one completion thread per client reaps, and it alone enters
 * them: it submits everything in the ring with the same system call that
 * waits for the next completions, so a request submitted while it runs
 * callbacks costs no system call of its own, and one submitted while it
 * sleeps costs a write to an eventfd that it keeps a read armed on.  The
 * kernel posts a request's completion through task work on the thread that
 * entered it: were that the submitting thread, it would be woken for each
 * batch of completions on top of the callback's own wake.  In-flight entries
 * are capped at the completion queue's size: what does not fit waits on a
 * pending list that the completion thread drains as room appears, so a callback
 * can always submit, even into a full ring, without waiting for itself.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backend.h"
#include "device.h"

#ifndef BLOCK_URING_CMD_DISCARD
#define BLOCK_URING_CMD_DISCARD _IO(0x12, 0) /* <linux/blkdev.h>, 6.12 */
#endif

#define SQ_ENTRIES   256
#define CQ_ENTRIES   1024
#define CQ_ROOM	     (CQ_ENTRIES - 1) /* one CQE is the kick read's */
#define IOWQ_WORKERS 8 /* per kind: enough to overlap, not a thread storm */

struct dmi_uring {
	struct dmi_backend be;
	struct io_uring ring;
	/* The SQ and pending.  A spin lock: what it covers is a few
	 * stores per entry, never a system call. */
	pthread_spinlock_t lock;
	atomic_uint inflight; /* entries in the ring: the reaper lowers it */
	pthread_mutex_t helpers_lock;
	struct dmi_chunk_queue pending;
	pthread_t thread;
	/* Block-device discard as a uring command (Linux 6.12): 0 untried,
	 * 1 works, -1 absent, and then helper threads issue BLKDISCARD. */
	atomic_int cmd_discard;
	struct dmi_helpers *helpers;
	/* 1 while the reaper is running, not yet committed to its
	 * submit-and-wait; see uring_submit(). */
	atomic_uint awake;
	/* Wakes a reaper asleep in its submit-and-wait: an eventfd on
	 * which it keeps a read armed (@armed, under @lock). */
	int kick_fd;
	bool armed;
};

/* Where every ring's kick read lands, and its user data.  Not in the ring's
 * struct: a read owned by a thread that outlives the ring may complete
 * after the ring is freed. */
static uint64_t kick_sink;

#define to_uring(b) ((struct dmi_uring *)(b))

static void prep_sqe(struct io_uring_sqe *sqe, struct dmi_chunk *c)
{
	int fd = c->bdev ? c->bdev->fd : -1;
	off_t off = (off_t)(c->pos + c->done);
	const struct iovec *iov;
	int niov;

	switch (c->flags & DMI_CHUNK_FAILED ? DMI_CHUNK_NOP : c->op) {
	case DMI_CHUNK_READ:
	case DMI_CHUNK_WRITE:
	case DMI_CHUNK_ZERO_WRITE:
		niov = dmi_chunk_iov(c, &iov);
		if (c->op == DMI_CHUNK_READ && niov == 1)
			io_uring_prep_read(sqe, fd, iov->iov_base,
					   (unsigned int)iov->iov_len, off);
		else if (c->op == DMI_CHUNK_READ)
			io_uring_prep_readv(sqe, fd, iov, (unsigned int)niov,
					    off);
		else if (niov == 1)
			io_uring_prep_write(sqe, fd, iov->iov_base,
					    (unsigned int)iov->iov_len, off);
		else
			io_uring_prep_writev(sqe, fd, iov, (unsigned int)niov,
					     off);
		if (c->flags & DMI_CHUNK_FUA)
			sqe->rw_flags = RWF_DSYNC;
		sqe->ioprio = c->ioprio;
		break;
	case DMI_CHUNK_FLUSH:
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		break;
	case DMI_CHUNK_DISCARD:
		if (c->bdev->lim.is_blk) {
			io_uring_prep_rw(IORING_OP_URING_CMD, sqe, fd, NULL, 0,
					 0);
			sqe->cmd_op = BLOCK_URING_CMD_DISCARD;
			sqe->addr = c->pos;
			sqe->addr3 = c->len;
		} else {
			io_uring_prep_fallocate(sqe, fd,
						FALLOC_FL_PUNCH_HOLE |
							FALLOC_FL_KEEP_SIZE,
						off, (off_t)c->len);
		}
		break;
	case DMI_CHUNK_ZEROES:
		/* On a block device this is BLKZEROOUT, made asynchronous. */
		io_uring_prep_fallocate(
			sqe, fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
			off, (off_t)c->len);
		break;
	case DMI_CHUNK_NOP:
		io_uring_prep_nop(sqe);
		break;
	}
	io_uring_sqe_set_data(sqe, c);
}

/* Block-device discards go to helper threads when the kernel has no
 * discard command; they are made on first need.  False: the ring keeps
 * the chunk. */
static bool to_helpers(struct dmi_uring *u, struct dmi_chunk *c)
{
	int err = 0;

	if (c->op != DMI_CHUNK_DISCARD || !c->bdev->lim.is_blk ||
	    atomic_load(&u->cmd_discard) >= 0)
		return false;
	pthread_mutex_lock(&u->helpers_lock);
	if (!u->helpers)
		u->helpers = dmi_helpers_create(u->be.client, &err);
	pthread_mutex_unlock(&u->helpers_lock);
	if (!u->helpers) {
		/* No helper: fail it through the ring, so that it still
		 * completes on the reaper like everything else. */
		c->flags |= DMI_CHUNK_FAILED;
		c->be.uring.err = err;
		return false;
	}
	dmi_helpers_submit(u->helpers, c);
	return true;
}

/* Make filled entries visible to the kernel; the caller holds the lock. */
static void flush_sq(struct dmi_uring *u)
{
	struct io_uring_sq *sq = &u->ring.sq;

	sq->sqe_head = sq->sqe_tail;
	io_uring_smp_store_release(sq->ktail, sq->sqe_tail);
}

/* Move pending chunks, then the list @more, into the ring while there is
 * room; the rest waits on the pending list, in order.  Returns entries
 * filled. */
static unsigned int fill_locked(struct dmi_uring *u, struct dmi_chunk *more)
{
	unsigned int n = 0, room;
	struct io_uring_sqe *sqe;
	struct dmi_chunk *c;

	/* Most submissions are one chunk into a ring with room. */
	if (more && !more->next && dmi_cq_empty(&u->pending) &&
	    atomic_load_explicit(&u->inflight, memory_order_relaxed) <
		    CQ_ROOM &&
	    (sqe = io_uring_get_sqe(&u->ring))) {
		prep_sqe(sqe, more);
		atomic_fetch_add_explicit(&u->inflight, 1,
					  memory_order_release);
		flush_sq(u);
		return 1;
	}
	if (more && !dmi_cq_empty(&u->pending)) {
		dmi_cq_splice(&u->pending, more);
		more = NULL;
	}
	room = CQ_ROOM -
	       atomic_load_explicit(&u->inflight, memory_order_relaxed);
	while (n < room) {
		c = dmi_cq_empty(&u->pending) ? more : u->pending.head;
		if (!c)
			break;
		sqe = io_uring_get_sqe(&u->ring);
		if (!sqe)
			break; /* others' entries not yet entered; they will */
		if (c == more)
			more = c->next;
		else
			dmi_cq_pop(&u->pending);
		c->next = NULL;
		prep_sqe(sqe, c);
		n++;
	}
	if (more)
		dmi_cq_splice(&u->pending, more);
	if (n) {
		/* Release, and the reaper's acquire: what the kernel orders
		 * between an entry and its completion, made visible to
		 * ThreadSanitizer too. */
		atomic_fetch_add_explicit(&u->inflight, n,
					  memory_order_release);
		flush_sq(u);
	}
	return n;
}

static void enter(struct dmi_uring *u, unsigned int n)
{
	while (n) {
		int ret = io_uring_enter(u->ring.ring_fd, n, 0, 0, NULL);

		if (ret > 0) {
			n -= (unsigned int)ret < n ? (unsigned int)ret : n;
			continue;
		}
		if (ret == 0)
			break; /* the SQ is empty: the reaper took them */
		if (ret == -EAGAIN || ret == -EBUSY)
			sched_yield();
		else if (ret != -EINTR)
			break; /* left in the SQ: the next enter takes it */
	}
}

/* Entries in the SQ that the kernel has not yet taken. */
static unsigned int sq_unsubmitted(struct dmi_uring *u)
{
	/* The head first: it never passes a tail read after it. */
	unsigned int head = io_uring_smp_load_acquire(u->ring.sq.khead);

	return io_uring_smp_load_acquire(u->ring.sq.ktail) - head;
}

/* The eventfd's counter cannot overflow: the reaper's read empties it,
 * and only the submitter that finds it asleep writes. */
static void kick(struct dmi_uring *u)
{
	uint64_t one = 1;

	while (write(u->kick_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Arm the read that a kick completes (spin lock held).  False when the SQ
 * is full: the reaper's next enter submits those entries and waits for
 * them, and it arms again after that. */
static bool arm_kick(struct dmi_uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe)
		return false;
	io_uring_prep_read(sqe, u->kick_fd, &kick_sink, sizeof(kick_sink), 0);
	io_uring_sqe_set_data(sqe, &kick_sink);
	flush_sq(u);
	return true;
}

static void uring_submit(struct dmi_backend *be, struct dmi_chunk *head)
{
	struct dmi_uring *u = to_uring(be);
	struct dmi_chunk_queue keep;
	struct dmi_chunk *c;
	unsigned int n;
	bool idle;

	if (atomic_load_explicit(&u->cmd_discard, memory_order_relaxed) < 0) {
		dmi_cq_init(&keep);
		while ((c = head)) {
			head = c->next;
			if (!to_helpers(u, c))
				dmi_cq_push(&keep, c);
		}
		head = keep.head;
	}
	pthread_spin_lock(&u->lock);
	n = fill_locked(u, head);
	/* Idle: nothing else in flight, nor in the SQ (an unsubmitted kick
	 * read entered from here would belong to this thread, and its
	 * wake-up would wait on this thread's task work).  Unarmed (the SQ was
	 * full when the reaper re-armed): a kick would wake nobody. */
	idle = n && ((atomic_load_explicit(&u->inflight,
					   memory_order_relaxed) == n &&
		      sq_unsubmitted(u) == n) ||
		     !u->armed);
	pthread_spin_unlock(&u->lock);
	/* A reaper still awake has not yet read the SQ's tail for its
	 * submit-and-wait: it takes these entries with its own.  Both sides
	 * update @awake, so one comes first: either the reaper's exchange
	 * sees the tail stored above, or this sees it asleep and wakes it,
	 * and submitters after this one leave their entries to it too. */
	if (idle) {
		if (!atomic_fetch_or_explicit(&u->awake, 0,
					      memory_order_acq_rel))
			enter(u, n);
	} else if (n && !atomic_fetch_or_explicit(&u->awake, 1,
						  memory_order_acq_rel)) {
		kick(u);
	}
}

/* The first block-device discard tells whether the kernel has the uring
 * command; false sends it to the helpers instead. */
static bool discard_probed(struct dmi_uring *u, int res)
{
	int expected = 0;

	if (atomic_load(&u->cmd_discard) > 0)
		return true;
	/* The device can discard (or it would not have been issued), so
	 * EOPNOTSUPP here means the kernel lacks the command. */
	atomic_compare_exchange_strong(&u->cmd_discard, &expected,
				       res == -EOPNOTSUPP ? -1 : 1);
	return atomic_load(&u->cmd_discard) > 0;
}

/* Submit every entry in the SQ, whoever filled it, and wait for a
 * completion unless one is there: one system call.  While the reaper is
 * in here, a submitter kicks it awake, or enters its own entries into an
 * idle or unarmed ring (see uring_submit()). */
static void submit_and_wait(struct dmi_uring *u)
{
	unsigned int n;
	bool ready;
	int ret;

	atomic_exchange_explicit(&u->awake, 0, memory_order_acq_rel);
	for (;;) {
		n = sq_unsubmitted(u);
		ready = io_uring_cq_ready(&u->ring) > 0;
		if (ready && !n)
			break;
		ret = io_uring_enter(u->ring.ring_fd, n, ready ? 0 : 1,
				     ready ? 0 : IORING_ENTER_GETEVENTS, NULL);
		if (ready || (ret >= 0 && io_uring_cq_ready(&u->ring)))
			break;
		if (ret == -EAGAIN || ret == -EBUSY)
			sched_yield(); /* short of memory */
	}
	/* An exchange, not a store: a store would end the release sequence
	 * of a submitter's fetch_or() that this thread's next exchange must
	 * synchronise with. */
	atomic_exchange_explicit(&u->awake, 1, memory_order_relaxed);
}

static void *reaper(void *arg)
{
	struct dmi_uring *u = arg;

	pthread_spin_lock(&u->lock);
	u->armed = arm_kick(u);
	pthread_spin_unlock(&u->lock);
	for (;;) {
		struct dmi_chunk_queue again;
		struct io_uring_cqe *cqe;
		struct dmi_batch batch;
		unsigned int head, ready, n = 0, kicks = 0;
		bool stop = false;

		dmi_cq_init(&again);
		submit_and_wait(u);
		ready = io_uring_cq_ready(&u->ring);

		/* The acquire pairs with the fillers' release: the chunks
		 * read below were set before their entries went in. */
		(void)atomic_load_explicit(&u->inflight, memory_order_acquire);

		dmi_batch_begin(&batch, u->be.client);
		io_uring_for_each_cqe(&u->ring, head, cqe)
		{
			struct dmi_chunk *c = io_uring_cqe_get_data(cqe);

			if (n == ready)
				break;
			n++;
			if (!c) {
				stop = true;
			} else if ((void *)c == &kick_sink) {
				kicks++;
			} else if (c->flags & DMI_CHUNK_FAILED) {
				dmi_chunk_complete(c, c->be.uring.err, &again);
			} else if (c->op == DMI_CHUNK_DISCARD &&
				   c->bdev->lim.is_blk &&
				   !discard_probed(u, cqe->res)) {
				if (!to_helpers(u, c))
					dmi_cq_push(&again, c);
			} else {
				dmi_chunk_complete(c, cqe->res, &again);
			}
		}
		dmi_batch_end(&batch);
		io_uring_cq_advance(&u->ring, n);
		/* Room only once the CQEs are gone: until then they occupy the
		 * CQ, and entries counted against the room they leave could
		 * overflow it.  Callbacks' submissions that found no room wait
		 * on the pending list, filled just below. */
		atomic_fetch_sub_explicit(&u->inflight, n - kicks,
					  memory_order_relaxed);

		pthread_spin_lock(&u->lock);
		if (kicks || !u->armed)
			u->armed = arm_kick(u);
		fill_locked(u, again.head);
		pthread_spin_unlock(&u->lock);

		if (stop) {
			/* No submit-and-wait follows: nothing may leave its
			 * entries to this thread any more. */
			atomic_store(&u->awake, 0);
			return NULL;
		}
	}
}

static void uring_destroy(struct dmi_backend *be)
{
	struct dmi_uring *u = to_uring(be);
	struct dmi_chunk *stop = NULL;
	struct io_uring_sqe *sqe;

	pthread_spin_lock(&u->lock);
	while (!(sqe = io_uring_get_sqe(&u->ring))) {
		pthread_spin_unlock(&u->lock);
		sched_yield();
		pthread_spin_lock(&u->lock);
	}
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data(sqe, stop);
	atomic_fetch_add(&u->inflight, 1);
	flush_sq(u);
	pthread_spin_unlock(&u->lock);
	enter(u, 1);
	pthread_join(u->thread, NULL);
	dmi_helpers_destroy(u->helpers);
	io_uring_queue_exit(&u->ring);
	close(u->kick_fd);
	pthread_mutex_destroy(&u->helpers_lock);
	pthread_spin_destroy(&u->lock);
	free(u);
}

static const struct dmi_backend_ops uring_ops = {
	.name = "io_uring",
	.submit = uring_submit,
	.destroy = uring_destroy,
};

/* COOP_TASKRUN: the kernel posts a completion through task work on the
 * thread that entered the request, and by default interrupts that thread
 * with an IPI to run it.  Nearly every entry is the reaper's, which runs
 * its task work as it waits anyway; a submitter that entered into an idle
 * ring and sleeps is still woken; only one busy in user space runs it at
 * its next kernel entry or tick.  The IPIs cost 5 % of the callback
 * pattern's IOPS and 18 % of the submitting thread's (docs/performance.md).
 * Kernels before 5.19 know no COOP_TASKRUN, before 5.18 no SUBMIT_ALL. */
static int setup_ring(struct io_uring *ring)
{
	static const unsigned int flags[] = {
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_SUBMIT_ALL,
		0,
	};
	unsigned int workers[2] = {IOWQ_WORKERS, IOWQ_WORKERS};
	int ret = -EINVAL;

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
		struct io_uring_params p = {
			.flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
				 flags[i],
			.cq_entries = CQ_ENTRIES,
		};

		ret = io_uring_queue_init_params(SQ_ENTRIES, ring, &p);
		if (ret != -EINVAL)
			break;
	}
	if (ret)
		return ret;
	/* Bound io-wq, so that buffered or punted work cannot grow into
	 * hundreds of kernel threads; old kernels say no and keep theirs. */
	io_uring_register_iowq_max_workers(ring, workers);
	return 0;
}

struct dmi_backend *dmi_uring_create(struct dm_io_client *client, int *err)
{
	struct dmi_uring *u = calloc(1, sizeof(*u));
	int ret;

	if (!u) {
		*err = -ENOMEM;
		return NULL;
	}
	ret = setup_ring(&u->ring);
	if (ret) {
		free(u);
		*err = ret;
		return NULL;
	}
	u->be.ops = &uring_ops;
	u->be.client = client;
	dmi_cq_init(&u->pending);
	atomic_init(&u->cmd_discard, 0);
	atomic_init(&u->inflight, 0);
	atomic_init(&u->awake, 1);
	u->kick_fd = eventfd(0, EFD_CLOEXEC);
	ret = u->kick_fd < 0 ? -errno : 0;
	if (!ret)
		ret = -pthread_spin_init(&u->lock, PTHREAD_PROCESS_PRIVATE);
	if (!ret)
		ret = -pthread_mutex_init(&u->helpers_lock, NULL);
	if (!ret)
		ret = -pthread_create(&u->thread, NULL, reaper, u);
	if (ret) {
		io_uring_queue_exit(&u->ring);
		if (u->kick_fd >= 0)
			close(u->kick_fd);
		free(u);
		*err = ret;
		return NULL;
	}
	return &u->be;
}

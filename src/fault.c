/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fault: devices, the library's dm-flakey/dm-dust: a device spec
 *
 *	fault:OPTIONS:SPEC
 *
 * wraps any other device (SPEC may be a path or an NBD URI) and fails,
 * drops or delays I/O to it as OPTIONS say, deterministically, so that
 * callers can test their own error handling.  OPTIONS, comma-separated:
 *
 *	fail=S+N	 fail reads and writes touching sectors [S, S+N)
 *	fail-reads=S+N	 only reads; fail-writes=S+N only writes (with
 *			 discard, write-zeroes and flush); "all" for the device
 *	drop-writes=S+N	 report writes there as done, write nothing
 *	after=N		 the rules apply from the (N+1)th I/O on
 *	errno=E		 EIO (default), ENOSPC, EROFS, ENXIO, ETIMEDOUT,
 *			 ECONNRESET, EOPNOTSUPP, or a number
 *	delay=MS	 every I/O waits MS milliseconds first
 *
 * Every chunk passes through the device's thread, which fails, drops or
 * forwards it to the wrapped device; failures complete on that thread, as
 * real ones would on a completion thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "device.h"

#define MAX_RULES  8
#define RULE_READ  (1u << 0)
#define RULE_WRITE (1u << 1)

struct rule {
	uint64_t start, end; /* bytes */
	unsigned int ops;
	bool drop;
};

struct dmi_fault {
	struct block_device *bdev, *inner;
	struct dm_io_client *client; /* writes what a drop rule leaves */
	struct rule rules[MAX_RULES];
	unsigned int nr_rules;
	uint64_t after;
	atomic_ulong seen;
	int err;
	uint64_t delay_ns;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct dmi_chunk_queue queue;
	bool stop;
	bool self_close; /* closed from a callback on its own thread */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- options ---- */

static const struct {
	const char *name;
	int err;
} errnos[] = {
	{"EIO", EIO},
	{"ENOSPC", ENOSPC},
	{"EROFS", EROFS},
	{"ENXIO", ENXIO},
	{"ETIMEDOUT", ETIMEDOUT},
	{"ECONNRESET", ECONNRESET},
	{"EOPNOTSUPP", EOPNOTSUPP},
};

static int parse_u64(const char *s, const char *end, uint64_t *out)
{
	char *stop;

	if (s == end || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &stop, 10);
	return errno || stop != end ? -EINVAL : 0;
}

static int parse_range(const char *v, const char *end, struct rule *r)
{
	const char *plus = memchr(v, '+', (size_t)(end - v));
	uint64_t s, n;

	if ((size_t)(end - v) == 3 && !memcmp(v, "all", 3)) {
		r->start = 0;
		r->end = UINT64_MAX;
		return 0;
	}
	if (!plus || parse_u64(v, plus, &s) || parse_u64(plus + 1, end, &n) ||
	    !n || s > UINT64_MAX >> SECTOR_SHIFT ||
	    n > (UINT64_MAX >> SECTOR_SHIFT) - s)
		return -EINVAL;
	r->start = s << SECTOR_SHIFT;
	r->end = (s + n) << SECTOR_SHIFT;
	return 0;
}

static int parse_errno(const char *v, const char *end, int *err)
{
	size_t len = (size_t)(end - v), i;
	uint64_t n;

	for (i = 0; i < sizeof(errnos) / sizeof(errnos[0]); i++) {
		if (strlen(errnos[i].name) == len &&
		    !memcmp(v, errnos[i].name, len)) {
			*err = errnos[i].err;
			return 0;
		}
	}
	if (parse_u64(v, end, &n) || !n || n > 4095)
		return -EINVAL;
	*err = (int)n;
	return 0;
}

static bool key_is(const char *k, size_t klen, const char *name)
{
	return strlen(name) == klen && !memcmp(k, name, klen);
}

static int parse_option(struct dmi_fault *f, const char *k, const char *end)
{
	const char *eq = memchr(k, '=', (size_t)(end - k));
	struct rule *r = &f->rules[f->nr_rules];
	const char *v;
	size_t klen;
	uint64_t n;

	if (!eq)
		return -EINVAL;
	klen = (size_t)(eq - k);
	v = eq + 1;
	if (key_is(k, klen, "after"))
		return parse_u64(v, end, &f->after);
	if (key_is(k, klen, "errno"))
		return parse_errno(v, end, &f->err);
	if (key_is(k, klen, "delay")) {
		if (parse_u64(v, end, &n) || n > 3600000)
			return -EINVAL;
		f->delay_ns = n * 1000000u;
		return 0;
	}
	if (f->nr_rules == MAX_RULES)
		return -EINVAL;
	if (key_is(k, klen, "fail"))
		r->ops = RULE_READ | RULE_WRITE;
	else if (key_is(k, klen, "fail-reads"))
		r->ops = RULE_READ;
	else if (key_is(k, klen, "fail-writes"))
		r->ops = RULE_WRITE;
	else if (key_is(k, klen, "drop-writes"))
		r->ops = RULE_WRITE, r->drop = true;
	else
		return -EINVAL;
	if (parse_range(v, end, r))
		return -EINVAL;
	f->nr_rules++;
	return 0;
}

/* ---- the thread ---- */

static void fault_queue(struct dmi_fault *f, struct dmi_chunk *c);

static bool is_write(enum dmi_chunk_op op)
{
	return op != DMI_CHUNK_READ && op != DMI_CHUNK_NOP;
}

/* The rule that catches @c, or NULL. */
static const struct rule *match(struct dmi_fault *f, const struct dmi_chunk *c)
{
	unsigned int want = is_write(c->op) ? RULE_WRITE : RULE_READ;
	uint64_t start = c->pos + c->done, end = c->pos + c->len;
	unsigned int i;

	if (atomic_fetch_add(&f->seen, 1) < f->after)
		return NULL;
	for (i = 0; i < f->nr_rules; i++) {
		const struct rule *r = &f->rules[i];

		if (!(r->ops & want))
			continue;
		/* A flush has no range: only a whole-device rule takes it. */
		if (c->op == DMI_CHUNK_FLUSH ? r->end == UINT64_MAX
					     : start < r->end && end > r->start)
			return r;
	}
	return NULL;
}

/* Copy @len bytes, @off bytes into what is left of a write chunk. */
static void copy_from_chunk(struct dmi_chunk *c, uint64_t off, char *dst,
			    uint64_t len)
{
	const struct iovec *iov;
	int i, n = dmi_chunk_iov(c, &iov);

	for (i = 0; i < n && len; i++) {
		uint64_t seg = iov[i].iov_len;

		if (off >= seg) {
			off -= seg;
			continue;
		}
		seg -= off;
		if (seg > len)
			seg = len;
		memcpy(dst, (char *)iov[i].iov_base + off, seg);
		dst += seg;
		len -= seg;
		off = 0;
	}
}

/* Write one stretch [start, end) of a chunk to the wrapped device. */
static int write_stretch(struct dmi_fault *f, struct dmi_chunk *c,
			 uint64_t start, uint64_t end)
{
	struct io_region where = {f->inner, start >> SECTOR_SHIFT,
				  (end - start) >> SECTOR_SHIFT};
	struct dm_io_request req = {
		.bi_opf = c->op == DMI_CHUNK_DISCARD ? DM_IO_OP_DISCARD
			  : c->op == DMI_CHUNK_WRITE ? DM_IO_OP_WRITE
						     : DM_IO_OP_WRITE_ZEROES,
		.client = f->client,
	};
	char *buf = NULL;
	int err = 0, ret;

	if (c->op == DMI_CHUNK_WRITE) {
		buf = malloc(end - start);
		if (!buf)
			return -ENOMEM;
		copy_from_chunk(c, start - c->pos - c->done, buf, end - start);
		req.bi_opf |= c->flags & DMI_CHUNK_FUA ? DM_IO_FUA : 0;
		req.mem = (struct dm_io_memory){.type = DM_IO_KMEM,
						.ptr.addr = buf};
	}
	req.region_errors = &err;
	ret = dm_io(&req, 1, &where, NULL);
	free(buf);
	return ret == -EIO ? err : ret;
}

/*
 * A drop rule that covers only part of a write: the rest must still land,
 * or the device would lose data nobody asked it to.  Written through a
 * client of the device's own, before the chunk is reported done.
 */
static int write_outside(struct dmi_fault *f, struct dmi_chunk *c,
			 const struct rule *r)
{
	uint64_t a = c->pos + c->done, b = c->pos + c->len;
	int err = 0;

	if (c->op == DMI_CHUNK_FLUSH || (r->start <= a && r->end >= b))
		return 0;
	if (!f->client && !(f->client = dm_io_client_create()))
		return -errno;
	if (r->start > a)
		err = write_stretch(f, c, a, r->start < b ? r->start : b);
	if (!err && r->end < b)
		err = write_stretch(f, c, r->end > a ? r->end : a, b);
	return err;
}

static void handle(struct dmi_fault *f, struct dmi_chunk *c)
{
	const struct rule *r = match(f, c);
	struct dmi_chunk_queue again;
	int res;

	if (!r) {
		dmi_chunk_forward(c, f->inner);
		return;
	}
	res = -f->err;
	if (r->drop) {
		res = write_outside(f, c, r);
		/* Data ops report their bytes; data-less ones 0. */
		if (!res &&
		    (c->op == DMI_CHUNK_WRITE || c->op == DMI_CHUNK_ZERO_WRITE))
			res = (int)(c->len - c->done);
	}
	dmi_cq_init(&again);
	dmi_chunk_complete(c, res, &again);
	c = dmi_cq_pop(&again);
	if (c)
		fault_queue(f, c); /* once more through the rules */
}

static int free_fault(struct dmi_fault *f);

static void *fault_thread(void *arg)
{
	struct dmi_fault *f = arg;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		struct dmi_chunk *c = f->queue.head;
		uint64_t now;

		if (!c) {
			if (f->stop)
				break;
			pthread_cond_wait(&f->cond, &f->lock);
			continue;
		}
		now = now_ns();
		if (c->be.fault.arrival + f->delay_ns > now) {
			uint64_t due = c->be.fault.arrival + f->delay_ns;
			struct timespec ts;

			/* The condition variable runs on the monotonic clock
			 * (see dmi_fault_open), like the arrival time. */
			ts.tv_sec = (time_t)(due / 1000000000u);
			ts.tv_nsec = (long)(due % 1000000000u);
			pthread_cond_timedwait(&f->cond, &f->lock, &ts);
			continue;
		}
		dmi_cq_pop(&f->queue);
		pthread_mutex_unlock(&f->lock);
		handle(f, c);
		pthread_mutex_lock(&f->lock);
		if (f->self_close) {
			/* Closed from that chunk's callback: nothing is in
			 * flight (close checked), the thread frees it all. */
			pthread_mutex_unlock(&f->lock);
			pthread_detach(pthread_self());
			free_fault(f);
			return NULL;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

static void fault_queue(struct dmi_fault *f, struct dmi_chunk *c)
{
	c->be.fault.arrival = now_ns();
	pthread_mutex_lock(&f->lock);
	dmi_cq_push(&f->queue, c);
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

/* The device's submit hook: every chunk goes through the thread first. */
static void fault_submit(struct block_device *bdev, struct dmi_chunk *c)
{
	fault_queue(bdev->priv, c);
}

/* ---- opening and closing ---- */

static int fault_close(struct block_device *bdev);

static struct block_device *fault_inner(const struct block_device *bdev)
{
	const struct dmi_fault *f = bdev->priv;

	return f->inner;
}

static int fault_set_timeout(struct block_device *bdev, unsigned int ms)
{
	struct dmi_fault *f = bdev->priv;

	return dm_bdev_set_timeout(f->inner, ms);
}

static const struct dmi_bdev_ops fault_ops = {
	.kind = "fault",
	.submit = fault_submit,
	.close = fault_close,
	.set_timeout = fault_set_timeout,
	.inner = fault_inner,
};

static int free_fault(struct dmi_fault *f)
{
	int ret;

	dm_io_client_destroy(f->client);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
	ret = dm_bdev_close(f->inner);
	free(f->bdev);
	free(f);
	return ret;
}

dmi_bdev_open_fn dmi_fault_open;

struct block_device *dmi_fault_open(const char *spec, unsigned int flags)
{
	const char *opts = spec + strlen("fault:"), *sep = strchr(opts, ':');
	struct block_device *bdev = NULL;
	pthread_condattr_t attr;
	struct dmi_fault *f;
	const char *k;
	int err = -EINVAL;

	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->err = EIO;
	dmi_cq_init(&f->queue);
	atomic_init(&f->seen, 0);
	for (k = opts; sep && k < sep;) {
		const char *end = memchr(k, ',', (size_t)(sep - k));

		if (!end)
			end = sep;
		err = parse_option(f, k, end);
		if (err)
			goto fail;
		k = end + 1;
	}
	err = -EINVAL; /* no device after the options */
	if (!sep || !sep[1])
		goto fail;
	f->inner = dm_bdev_open(sep + 1, flags);
	if (!f->inner) {
		err = -errno;
		goto fail;
	}
	bdev = dmi_bdev_alloc(spec, &fault_ops, f);
	err = -ENOMEM;
	if (!bdev)
		goto fail_inner;
	/* Look like the wrapped device to the planner, but with no fd:
	 * every chunk must come here first. */
	bdev->flags = f->inner->flags;
	bdev->lim = f->inner->lim;
	atomic_store(&bdev->no_zero_range,
		     atomic_load(&f->inner->no_zero_range));
	f->bdev = bdev;

	pthread_mutex_init(&f->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cond, &attr);
	pthread_condattr_destroy(&attr);
	err = -pthread_create(&f->thread, NULL, fault_thread, f);
	if (!err)
		return bdev;
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->lock);
fail_inner:
	dm_bdev_close(f->inner);
fail:
	free(bdev);
	free(f);
	errno = -err;
	return NULL;
}

/* dm_bdev_close() has found no I/O in flight on this level or below. */
static int fault_close(struct block_device *bdev)
{
	struct dmi_fault *f = bdev->priv;

	pthread_mutex_lock(&f->lock);
	if (pthread_equal(pthread_self(), f->thread)) {
		/* From a callback on our own thread: it finishes the job. */
		f->self_close = true;
		pthread_mutex_unlock(&f->lock);
		return 0;
	}
	f->stop = true;
	pthread_cond_signal(&f->cond);
	pthread_mutex_unlock(&f->lock);
	pthread_join(f->thread, NULL);
	return free_fault(f);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peers on NBD exports, where libdmio goes through libnbd too: libnbd's
 * synchronous calls one leg after another (what a hand-rolled mirror
 * does), and libnbd's asynchronous API driven by hand at the same queue
 * depth with every leg in flight at once (the best one can do without a
 * library doing it for you).  libdmio itself runs through eng_libdmio()
 * with the URIs as device specs.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#ifdef HAVE_LIBNBD
#include <libnbd.h>

bool have_nbd(void)
{
	return true;
}

static void close_handles(struct nbd_handle **h, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (h[i])
			nbd_close(h[i]);
}

static int connect_all(const struct workload *w, struct nbd_handle **h)
{
	unsigned int i;

	memset(h, 0, sizeof(*h) * w->nr_regions);
	for (i = 0; i < w->nr_regions; i++) {
		h[i] = nbd_create();
		if (!h[i] || nbd_connect_uri(h[i], w->paths[i])) {
			int err = nbd_get_errno();

			close_handles(h, i + 1);
			return err ? -err : -ECONNREFUSED;
		}
	}
	return 0;
}

int eng_nbd_loop(const struct workload *w, struct result *r)
{
	struct nbd_handle *h[MAX_DEVS];
	uint64_t idx;
	double start;
	unsigned int i;
	void *buf;
	int ret;

	ret = connect_all(w, h);
	if (ret)
		return ret;
	buf = bench_buffer(w->bs, w->dir, 0);
	start = now_sec();
	for (idx = 0; !ret && want_more(w, start, idx); idx++) {
		uint64_t off = req_offset(w, idx);

		for (i = 0; !ret && i < w->nr_regions; i++) {
			int rc = w->dir == DIR_WRITE
					 ? nbd_pwrite(h[i], buf, w->bs, off, 0)
					 : nbd_pread(h[i], buf, w->bs, off, 0);

			if (rc)
				ret = nbd_get_errno() ? -nbd_get_errno() : -EIO;
		}
	}
	r->secs = now_sec() - start;
	r->ops = ret ? idx - 1 : idx;
	r->err = ret;
	free(buf);
	close_handles(h, w->nr_regions);
	return ret;
}

struct nbd_slot {
	unsigned int pending;
	int err;
	bool active;
};

static int nbd_slot_done(void *user_data, int *error)
{
	struct nbd_slot *s = user_data;

	if (*error && !s->err)
		s->err = -*error;
	s->pending--;
	return 1; /* retire the command: we never ask for it again */
}

static int nbd_issue(const struct workload *w, struct nbd_handle **h,
		     struct nbd_slot *s, void *buf, uint64_t idx)
{
	uint64_t off = req_offset(w, idx);
	unsigned int i;

	s->pending = 0;
	s->active = true;
	for (i = 0; i < w->nr_regions; i++) {
		nbd_completion_callback cb = {.callback = nbd_slot_done,
					      .user_data = s};
		int64_t rc =
			w->dir == DIR_WRITE
				? nbd_aio_pwrite(h[i], buf, w->bs, off, cb, 0)
				: nbd_aio_pread(h[i], buf, w->bs, off, cb, 0);

		if (rc < 0)
			return nbd_get_errno() ? -nbd_get_errno() : -EIO;
		s->pending++;
	}
	return 0;
}

int eng_nbd_aio(const struct workload *w, struct result *r)
{
	struct nbd_handle *h[MAX_DEVS];
	struct nbd_slot slot[MAX_QD] = {{0}};
	void *buf[MAX_QD] = {NULL};
	unsigned int n = w->nr_regions, live = 0, i, s;
	uint64_t issued = 0, done = 0;
	double start;
	int ret;

	ret = connect_all(w, h);
	if (ret)
		return ret;
	for (s = 0; s < w->qd; s++)
		buf[s] = bench_buffer(w->bs, w->dir, s);
	start = now_sec();
	for (s = 0; s < w->qd && !ret && want_more(w, start, issued); s++) {
		ret = nbd_issue(w, h, &slot[s], buf[s], issued++);
		live++;
	}
	while (live) {
		struct pollfd pfd[MAX_DEVS];
		unsigned int dir[MAX_DEVS];

		for (i = 0; i < n; i++) {
			dir[i] = nbd_aio_get_direction(h[i]);
			pfd[i].fd = nbd_aio_get_fd(h[i]);
			pfd[i].events =
				(dir[i] & LIBNBD_AIO_DIRECTION_READ ? POLLIN
								    : 0) |
				(dir[i] & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT
								     : 0);
			pfd[i].revents = 0;
		}
		if (poll(pfd, n, -1) < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		for (i = 0; i < n; i++) {
			int rc = 0;

			if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR) &&
			    dir[i] & LIBNBD_AIO_DIRECTION_READ)
				rc = nbd_aio_notify_read(h[i]);
			else if (pfd[i].revents & POLLOUT &&
				 dir[i] & LIBNBD_AIO_DIRECTION_WRITE)
				rc = nbd_aio_notify_write(h[i]);
			if (rc && !ret)
				ret = -EIO;
		}
		if (ret)
			break; /* a dead connection never completes the rest */
		/* Refill from here: libnbd's callbacks must not call back
		 * into the handle that runs them. */
		for (s = 0; s < w->qd; s++) {
			if (!slot[s].active || slot[s].pending)
				continue;
			slot[s].active = false;
			live--;
			if (slot[s].err) {
				ret = slot[s].err;
				continue;
			}
			done++;
			if (!ret && want_more(w, start, issued)) {
				ret = nbd_issue(w, h, &slot[s], buf[s],
						issued++);
				live++;
			}
		}
	}
	r->secs = now_sec() - start;
	r->ops = done;
	r->err = ret;
	/* Closing a handle drops whatever is still in flight on it. */
	close_handles(h, n);
	for (s = 0; s < w->qd; s++)
		free(buf[s]);
	return ret;
}

#else /* !HAVE_LIBNBD */

bool have_nbd(void)
{
	return false;
}

int eng_nbd_loop(const struct workload *w, struct result *r)
{
	(void)w;
	(void)r;
	return -EPROTONOSUPPORT;
}

int eng_nbd_aio(const struct workload *w, struct result *r)
{
	(void)w;
	(void)r;
	return -EPROTONOSUPPORT;
}

#endif

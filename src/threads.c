/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The thread-pool backend, for when io_uring is disabled or blocked: a
 * queue and worker threads that run each chunk with the system-call
 * executor (exec.c).  The same pool, small, serves io_uring's helpers for
 * what a kernel's io_uring cannot do.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend.h"

struct dmi_threads {
	struct dmi_backend be;
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct dmi_chunk_queue queue;
	bool stop;
	unsigned int nr_threads;
	pthread_t threads[];
};

#define to_threads(b) ((struct dmi_threads *)(b))

static void *worker(void *arg)
{
	struct dmi_threads *t = arg;
	unsigned short prio = 0;

	pthread_mutex_lock(&t->lock);
	for (;;) {
		struct dmi_chunk *c;

		while (dmi_cq_empty(&t->queue) && !t->stop)
			pthread_cond_wait(&t->work, &t->lock);
		c = dmi_cq_pop(&t->queue);
		if (!c)
			break;
		pthread_mutex_unlock(&t->lock);

		/* I/O priority belongs to the thread that issues the I/O. */
		if (c->ioprio != prio) {
			prio = c->ioprio;
			syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0,
				prio);
		}
		dmi_chunk_exec(c);
		pthread_mutex_lock(&t->lock);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static void threads_submit(struct dmi_backend *be, struct dmi_chunk *head)
{
	struct dmi_threads *t = to_threads(be);
	unsigned int n;

	pthread_mutex_lock(&t->lock);
	n = dmi_cq_splice(&t->queue, head);
	if (n == 1)
		pthread_cond_signal(&t->work);
	else
		pthread_cond_broadcast(&t->work);
	pthread_mutex_unlock(&t->lock);
}

static void threads_stop(struct dmi_threads *t, unsigned int started)
{
	unsigned int i;

	pthread_mutex_lock(&t->lock);
	t->stop = true;
	pthread_cond_broadcast(&t->work);
	pthread_mutex_unlock(&t->lock);
	for (i = 0; i < started; i++)
		pthread_join(t->threads[i], NULL);
	pthread_cond_destroy(&t->work);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static void threads_destroy(struct dmi_backend *be)
{
	struct dmi_threads *t = to_threads(be);

	threads_stop(t, t->nr_threads);
}

static const struct dmi_backend_ops threads_ops = {
	.name = "threads",
	.submit = threads_submit,
	.destroy = threads_destroy,
};

struct dmi_backend *dmi_threads_create(struct dm_io_client *client,
				       unsigned int nr_threads, int *err)
{
	struct dmi_threads *t;
	unsigned int i;
	int ret;

	t = calloc(1, sizeof(*t) + nr_threads * sizeof(pthread_t));
	if (!t) {
		*err = -ENOMEM;
		return NULL;
	}
	t->be.ops = &threads_ops;
	t->be.client = client;
	dmi_cq_init(&t->queue);
	t->nr_threads = nr_threads;
	if (pthread_mutex_init(&t->lock, NULL)) {
		free(t);
		*err = -ENOMEM;
		return NULL;
	}
	pthread_cond_init(&t->work, NULL);
	for (i = 0; i < nr_threads; i++) {
		ret = pthread_create(&t->threads[i], NULL, worker, t);
		if (ret) {
			threads_stop(t, i);
			*err = -ret;
			return NULL;
		}
	}
	return &t->be;
}

#define NR_HELPERS 2 /* enough to overlap a few slow discards */

/* The helpers are a thread pool of their own, kept out of the client's
 * backend slot. */
struct dmi_helpers {
	struct dmi_backend *pool;
};

struct dmi_helpers *dmi_helpers_create(struct dm_io_client *client, int *err)
{
	struct dmi_helpers *h = malloc(sizeof(*h));

	if (!h) {
		*err = -ENOMEM;
		return NULL;
	}
	h->pool = dmi_threads_create(client, NR_HELPERS, err);
	if (!h->pool) {
		free(h);
		return NULL;
	}
	return h;
}

void dmi_helpers_submit(struct dmi_helpers *h, struct dmi_chunk *c)
{
	c->next = NULL; /* one chunk, not the rest of a list */
	threads_submit(h->pool, c);
}

void dmi_helpers_destroy(struct dmi_helpers *h)
{
	if (!h)
		return;
	threads_destroy(h->pool);
	free(h);
}

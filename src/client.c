/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Clients: a backend with its completion thread(s), a reserved pool, and
 * the count of requests whose callbacks have not yet returned, which
 * destroy waits for.  The backend is io_uring unless it cannot be set up
 * here, or DMIO_BACKEND says otherwise; the client remembers why.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "engine.h"

/* The reservation of a client made with dm_io_client_create(). */
#define DMI_CLIENT_RESERVE_PAGES 256

/* The zero page that write-zeroes falls back to; never written. */
static const char zero_page[DM_PAGE_SIZE] __attribute__((aligned(4096)));

static unsigned int pool_threads(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	/* Enough blocking calls in flight to keep devices busy. */
	if (cpus < 1)
		cpus = 1;
	return cpus > 8 ? 32 : (unsigned int)(cpus * 4);
}

static const char *uring_hint(int err)
{
	switch (err) {
	case -EPERM:
	case -EACCES:
		return "blocked by kernel.io_uring_disabled or a seccomp "
		       "profile";
	case -ENOSYS:
		return "this kernel has no io_uring";
	case -ENOMEM:
		return "out of locked memory";
	default:
		return "cannot be set up";
	}
}

static struct dmi_backend *pick_backend(struct dm_io_client *client, int *err)
{
	const char *want = getenv("DMIO_BACKEND");
	struct dmi_backend *be;

	if (want && !*want)
		want = NULL; /* set but empty: the default */
	if (want && !strcmp(want, "threads")) {
		snprintf(client->why, sizeof(client->why),
			 "DMIO_BACKEND=threads");
		return dmi_threads_create(client, pool_threads(), err);
	}
	if (want && strcmp(want, "io_uring")) {
		*err = -EINVAL; /* a typo must not pick a backend silently */
		return NULL;
	}
	be = dmi_uring_create(client, err);
	if (be) {
		snprintf(client->why, sizeof(client->why), "%s",
			 want ? "DMIO_BACKEND=io_uring"
			      : "io_uring is available (the default)");
		return be;
	}
	if (want)
		return NULL; /* forced, and not available: say so */
	snprintf(client->why, sizeof(client->why),
		 "io_uring_setup failed with %s (%s)", strerror(-*err),
		 uring_hint(*err));
	return dmi_threads_create(client, pool_threads(), err);
}

struct dm_io_client *dmi_client_create(unsigned int reserve_pages)
{
	struct dm_io_client *client = calloc(1, sizeof(*client));
	unsigned int i;
	int err = -ENOMEM;

	if (!client)
		return NULL;
	for (i = 0; i < DMI_ZERO_IOV; i++) {
		client->zero_iov[i].iov_base = (void *)zero_page;
		client->zero_iov[i].iov_len = DM_PAGE_SIZE;
	}
	if (dmi_pool_init(&client->pool))
		goto fail_free;
	err = dmi_pool_reserve(&client->pool, reserve_pages);
	if (err)
		goto fail_pool;
	err = -ENOMEM;
	if (pthread_mutex_init(&client->lock, NULL))
		goto fail_pool;
	if (pthread_cond_init(&client->drained, NULL))
		goto fail_lock;
	atomic_init(&client->nr_requests, 0);
	atomic_init(&client->submitting, 0);
	client->be = pick_backend(client, &err);
	if (!client->be)
		goto fail_cond;
	return client;

fail_cond:
	pthread_cond_destroy(&client->drained);
fail_lock:
	pthread_mutex_destroy(&client->lock);
fail_pool:
	dmi_pool_destroy(&client->pool);
fail_free:
	free(client);
	errno = -err;
	return NULL;
}

DMIO_EXPORT struct dm_io_client *dm_io_client_create(void)
{
	return dmi_client_create(DMI_CLIENT_RESERVE_PAGES);
}

DMIO_EXPORT const char *dm_io_client_backend(const struct dm_io_client *client,
					     const char **why)
{
	if (!client)
		return NULL;
	if (why)
		*why = client->why;
	return client->be->ops->name;
}

int dmi_client_reserve(struct dm_io_client *client, unsigned int nr_pages)
{
	return dmi_pool_reserve(&client->pool, nr_pages);
}

void dmi_client_unreserve(struct dm_io_client *client, unsigned int nr_pages)
{
	dmi_pool_unreserve(&client->pool, nr_pages);
}

void dmi_client_set_trace(struct dm_io_client *client, dmi_trace_fn fn,
			  void *ctx)
{
	client->trace_ctx = ctx;
	client->trace = fn;
}

static void drain_and_free(struct dm_io_client *client)
{
	pthread_mutex_lock(&client->lock);
	while (atomic_load(&client->nr_requests))
		pthread_cond_wait(&client->drained, &client->lock);
	pthread_mutex_unlock(&client->lock);
	/* A thread that handed the last chunks over may still be leaving
	 * the backend's submit: a moment, at most. */
	while (atomic_load_explicit(&client->submitting, memory_order_acquire))
		sched_yield();
	client->be->ops->destroy(client->be);
	pthread_cond_destroy(&client->drained);
	pthread_mutex_destroy(&client->lock);
	dmi_pool_destroy(&client->pool);
	free(client);
}

static void *destroyer(void *arg)
{
	drain_and_free(arg);
	return NULL;
}

/* Run @fn(@arg) on a detached thread: how a destroy asked from a callback
 * finishes without waiting for itself.  Should no thread be had, nothing
 * runs: a leak, never a hang. */
void dmi_run_detached(void *(*fn)(void *), void *arg)
{
	pthread_attr_t attr;
	pthread_t thread;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_create(&thread, &attr, fn, arg);
	pthread_attr_destroy(&attr);
}

void dmi_client_hold(struct dm_io_client *client)
{
	atomic_fetch_add_explicit(&client->nr_requests, 1,
				  memory_order_relaxed);
}

void dmi_client_destroy_detached(struct dm_io_client *client)
{
	dmi_run_detached(destroyer, client);
}

DMIO_EXPORT void dm_io_client_destroy(struct dm_io_client *client)
{
	if (!client)
		return;
	if (dmi_current_cb_client != client) {
		drain_and_free(client);
		return;
	}
	/* From one of the client's own callbacks, waiting here would wait
	 * for ourselves: a thread of its own finishes the job once this
	 * callback and the rest of the I/O are done. */
	dmi_client_destroy_detached(client);
}

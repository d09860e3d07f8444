/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Clients: a backend with its completion thread, a reserved pool, and the
 * count of requests whose callbacks have not yet returned, which destroy
 * waits for.
 */
#include <errno.h>
#include <stdlib.h>

#include "dmio-internal.h"

/* The reservation of a client made with dm_io_client_create(). */
#define DM_CLIENT_RESERVE_PAGES 256

struct dm_io_client *dm_client_create(unsigned int reserve_pages)
{
	struct dm_io_client *client = calloc(1, sizeof(*client));
	int err = -ENOMEM;

	if (!client)
		return NULL;
	if (dm_pool_init(&client->pool))
		goto fail_free;
	err = dm_pool_reserve(&client->pool, reserve_pages);
	if (err)
		goto fail_pool;
	err = -ENOMEM;
	if (pthread_mutex_init(&client->lock, NULL))
		goto fail_pool;
	if (pthread_cond_init(&client->drained, NULL))
		goto fail_lock;
	atomic_init(&client->nr_requests, 0);
	atomic_init(&client->destroy_deferred, false);
	client->be = dm_uring_create(client, &err);
	if (!client->be)
		goto fail_cond;
	return client;

fail_cond:
	pthread_cond_destroy(&client->drained);
fail_lock:
	pthread_mutex_destroy(&client->lock);
fail_pool:
	dm_pool_destroy(&client->pool);
fail_free:
	free(client);
	errno = -err;
	return NULL;
}

DMIO_EXPORT struct dm_io_client *dm_io_client_create(void)
{
	return dm_client_create(DM_CLIENT_RESERVE_PAGES);
}

void dm_client_free(struct dm_io_client *client)
{
	client->be->ops->destroy(client->be);
	pthread_cond_destroy(&client->drained);
	pthread_mutex_destroy(&client->lock);
	dm_pool_destroy(&client->pool);
	free(client);
}

/* A backend's completion thread asks after each batch: has a destroy
 * asked from a callback become due?  Then it calls dm_client_free() and
 * exits. */
bool dm_client_destroy_now(struct dm_io_client *client)
{
	return atomic_load(&client->destroy_deferred) &&
	       !atomic_load(&client->nr_requests);
}

DMIO_EXPORT void dm_io_client_destroy(struct dm_io_client *client)
{
	if (!client)
		return;
	if (dm_current_cb_client == client) {
		/* Waiting here would wait for ourselves. */
		atomic_store(&client->destroy_deferred, true);
		return;
	}
	pthread_mutex_lock(&client->lock);
	while (atomic_load(&client->nr_requests))
		pthread_cond_wait(&client->drained, &client->lock);
	pthread_mutex_unlock(&client->lock);
	dm_client_free(client);
}

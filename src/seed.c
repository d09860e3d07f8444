/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The seed API: six thin wrappers over dm_io() on a default client that
 * dm_io_get()/dm_io_put() create, grow and free.  The default client is the
 * library's only global state.
 *
 * A child of fork() inherits the parent's default client, but not its
 * threads, and its io_uring is the parent's own ring: used from the child
 * it would hang the child and feed the parent completions it never
 * issued.  So the child leaves it alone and, at its first seed call, makes
 * a client of its own for the reservation it inherited.
 */
#include <errno.h>
#include <limits.h>

#include "engine.h"

static pthread_mutex_t seed_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t seed_atfork_once = PTHREAD_ONCE_INIT;
static struct dm_io_client *seed_client;
static unsigned long seed_pages; /* reserved by all callers together */
/* In a child of fork(): the parent's client, never used nor freed here
 * (kept, volatile so that the store stays, so that it is not a leak). */
static struct dm_io_client *volatile seed_inherited;

/* Hold the lock across fork(), so the child's copy of the state is whole. */
static void seed_prefork(void)
{
	pthread_mutex_lock(&seed_lock);
}

static void seed_postfork_parent(void)
{
	pthread_mutex_unlock(&seed_lock);
}

static void seed_postfork_child(void)
{
	if (seed_client)
		seed_inherited = seed_client;
	seed_client = NULL;
	pthread_mutex_unlock(&seed_lock);
}

static void seed_atfork(void)
{
	pthread_atfork(seed_prefork, seed_postfork_parent, seed_postfork_child);
}

/* The default client, made now for @extra pages more than are held when
 * there is none (in a child of fork(), say); 0 or a negative errno. */
static int seed_create(unsigned long extra)
{
	if (seed_pages + extra > UINT_MAX)
		return -EINVAL;
	seed_client = dmi_client_create((unsigned int)(seed_pages + extra));
	return seed_client ? 0 : errno ? -errno : -ENOMEM;
}

DMIO_EXPORT int dm_io_get(unsigned int num_pages)
{
	int ret = 0;

	if (!num_pages)
		return -EINVAL;
	pthread_once(&seed_atfork_once, seed_atfork);
	pthread_mutex_lock(&seed_lock);
	if (num_pages > ULONG_MAX - seed_pages) {
		ret = -EINVAL;
	} else if (!seed_client) {
		ret = seed_create(num_pages);
	} else {
		ret = dmi_client_reserve(seed_client, num_pages);
	}
	if (!ret)
		seed_pages += num_pages;
	pthread_mutex_unlock(&seed_lock);
	return ret;
}

DMIO_EXPORT void dm_io_put(unsigned int num_pages)
{
	struct dm_io_client *client = NULL;

	pthread_mutex_lock(&seed_lock);
	if (num_pages && num_pages <= seed_pages) {
		seed_pages -= num_pages;
		if (seed_pages) {
			/* Give back this share now: reserving per job must
			 * not grow the process. */
			if (seed_client)
				dmi_client_unreserve(seed_client, num_pages);
		} else {
			/* New calls now fail; those already past the check
			 * hold the client as a request does, so its destroy
			 * waits for them. */
			client = seed_client;
			seed_client = NULL;
		}
	}
	pthread_mutex_unlock(&seed_lock);
	if (!client)
		return;
	/* On a completion thread (of any client), waiting could wait for
	 * the very thread a seed call in flight needs: finish elsewhere. */
	if (dmi_current_cb_client)
		dmi_client_destroy_detached(client);
	else
		dm_io_client_destroy(client);
}

static int seed_io(unsigned int num_regions, struct io_region *where, int rw,
		   struct dm_io_memory mem, io_notify_fn fn, void *context,
		   unsigned long *error_bits)
{
	struct dm_io_request req = {
		.bi_opf = (unsigned int)rw,
		.mem = mem,
		.notify = {.fn = fn, .context = context},
	};
	int ret;

	if (rw != DM_IO_READ && rw != DM_IO_WRITE)
		return -EINVAL;
	pthread_mutex_lock(&seed_lock);
	/* A child of fork() holds a reservation but no client yet. */
	ret = !seed_client && seed_pages ? seed_create(0) : 0;
	req.client = seed_client;
	if (req.client)
		dmi_client_hold(req.client);
	pthread_mutex_unlock(&seed_lock);
	if (ret)
		return ret;
	if (!req.client)
		return -EINVAL; /* no dm_io_get() reservation is held */

	ret = dm_io(&req, num_regions, where, error_bits);
	dmi_client_release(req.client);
	return ret;
}

static struct dm_io_memory mem_pl(struct page_list *pl, unsigned int offset)
{
	return (struct dm_io_memory){
		.type = DM_IO_PAGE_LIST, .offset = offset, .ptr.pl = pl};
}

static struct dm_io_memory mem_bvec(struct bio_vec *bvec)
{
	return (struct dm_io_memory){.type = DM_IO_BVEC, .ptr.bvec = bvec};
}

static struct dm_io_memory mem_vm(void *data)
{
	return (struct dm_io_memory){.type = DM_IO_VMA, .ptr.vma = data};
}

DMIO_EXPORT int dm_io_sync(unsigned int num_regions, struct io_region *where,
			   int rw, struct page_list *pl, unsigned int offset,
			   unsigned long *error_bits)
{
	return seed_io(num_regions, where, rw, mem_pl(pl, offset), NULL, NULL,
		       error_bits);
}

DMIO_EXPORT int dm_io_async(unsigned int num_regions, struct io_region *where,
			    int rw, struct page_list *pl, unsigned int offset,
			    io_notify_fn fn, void *context)
{
	if (!fn)
		return -EINVAL;
	return seed_io(num_regions, where, rw, mem_pl(pl, offset), fn, context,
		       NULL);
}

DMIO_EXPORT int dm_io_sync_bvec(unsigned int num_regions,
				struct io_region *where, int rw,
				struct bio_vec *bvec, unsigned long *error_bits)
{
	return seed_io(num_regions, where, rw, mem_bvec(bvec), NULL, NULL,
		       error_bits);
}

DMIO_EXPORT int dm_io_async_bvec(unsigned int num_regions,
				 struct io_region *where, int rw,
				 struct bio_vec *bvec, io_notify_fn fn,
				 void *context)
{
	if (!fn)
		return -EINVAL;
	return seed_io(num_regions, where, rw, mem_bvec(bvec), fn, context,
		       NULL);
}

DMIO_EXPORT int dm_io_sync_vm(unsigned int num_regions, struct io_region *where,
			      int rw, void *data, unsigned long *error_bits)
{
	return seed_io(num_regions, where, rw, mem_vm(data), NULL, NULL,
		       error_bits);
}

DMIO_EXPORT int dm_io_async_vm(unsigned int num_regions,
			       struct io_region *where, int rw, void *data,
			       io_notify_fn fn, void *context)
{
	if (!fn)
		return -EINVAL;
	return seed_io(num_regions, where, rw, mem_vm(data), fn, context, NULL);
}

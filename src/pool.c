/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The reserved pool: the mempool promise of dm_io_get().  A reservation
 * maps an arena up front and hands out blocks from it with a buddy
 * allocator, so a request (one block for its metadata, one per bounce
 * buffer) never calls malloc while the reservation lasts.  Beyond it we
 * fall back to the heap, and when that fails too we wait for I/O in flight
 * to give memory back.  Buddy blocks of a page or more are aligned to their
 * size, which is what O_DIRECT bounce buffers need.
 *
 * Reservations add up; a request as big as their sum must find one run
 * of arena, so a reservation that outgrows the arenas maps one for the
 * whole sum and lets the idle smaller ones go.  Giving a reservation back
 * unmaps what is idle and no longer needed, so reserving per job stays
 * flat.  Arenas still in use by I/O wait for the next reserve or release.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine.h"

#define MIN_ORDER 6  /* 64-byte blocks */
#define MAX_ORDER 22 /* 4 MiB: larger requests come from the heap */
/* Metadata and bounce space reserved per page of I/O.  A bounce buffer is
 * one buddy block, its size rounded up to a power of two: n pages of
 * bounces may take up to 2n pages of arena, so that is what we map. */
#define ARENA_BYTES_PER_PAGE (2 * DM_PAGE_SIZE + 1024)
/* 4 GiB of I/O in flight: more is a caller's mistake, not a plan. */
#define MAX_RESERVE_PAGES (1u << 20)

struct free_block {
	struct free_block *next, *prev;
};

struct dmi_arena {
	struct dmi_arena *next;
	unsigned long pages; /* the reservation it was mapped for */
	unsigned long used;  /* blocks handed out */
	char *base;
	size_t size; /* a whole number of top-order blocks */
	unsigned int top;
	uint8_t *
		tag; /* per 64-byte unit: order + 1 where a free block starts */
	struct free_block *free[MAX_ORDER + 1];
};

static unsigned int order_of(size_t size)
{
	/* Requests' own blocks are small: their orders by 64-byte units. */
	static const uint8_t small[16] = {6,  7,  8,  8,  9,  9,  9,  9,
					  10, 10, 10, 10, 10, 10, 10, 10};
	size_t rest = size > 1 ? (size - 1) >> MIN_ORDER : 0;
	unsigned int order = MIN_ORDER;

	if (rest < 16)
		return small[rest];
	while (rest) {
		rest >>= 1;
		order++;
	}
	return order;
}

static void push(struct dmi_arena *a, char *blk, unsigned int order)
{
	struct free_block *fb = (struct free_block *)blk;

	fb->prev = NULL;
	fb->next = a->free[order];
	if (fb->next)
		fb->next->prev = fb;
	a->free[order] = fb;
	a->tag[(size_t)(blk - a->base) >> MIN_ORDER] = (uint8_t)(order + 1);
}

static void unlink_block(struct dmi_arena *a, char *blk, unsigned int order)
{
	struct free_block *fb = (struct free_block *)blk;

	if (fb->prev)
		fb->prev->next = fb->next;
	else
		a->free[order] = fb->next;
	if (fb->next)
		fb->next->prev = fb->prev;
	a->tag[(size_t)(blk - a->base) >> MIN_ORDER] = 0;
}

static void *arena_alloc(struct dmi_arena *a, unsigned int order)
{
	unsigned int k = order;
	char *blk;

	while (k <= a->top && !a->free[k])
		k++;
	if (k > a->top)
		return NULL;
	blk = (char *)a->free[k];
	unlink_block(a, blk, k);
	a->used++;
	while (k > order) {
		k--;
		push(a, blk + ((size_t)1 << k), k);
	}
	return blk;
}

static void arena_free(struct dmi_arena *a, char *blk, unsigned int order)
{
	size_t off = (size_t)(blk - a->base);

	a->used--;
	while (order < a->top) {
		size_t buddy = off ^ ((size_t)1 << order);

		if (buddy >= a->size ||
		    a->tag[buddy >> MIN_ORDER] != (uint8_t)(order + 1))
			break;
		unlink_block(a, a->base + buddy, order);
		off &= ~((size_t)1 << order);
		order++;
	}
	push(a, a->base + off, order);
}

static struct dmi_arena *arena_create(unsigned long pages)
{
	size_t want = pages * ARENA_BYTES_PER_PAGE;
	unsigned int top = order_of(want);
	struct dmi_arena *a;
	size_t blk, off;

	if (top > MAX_ORDER)
		top = MAX_ORDER;
	blk = (size_t)1 << top;
	a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->pages = pages;
	a->top = top;
	a->size = (want + blk - 1) / blk * blk;
	a->tag = calloc(a->size >> MIN_ORDER, 1);
	a->base = mmap(NULL, a->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!a->tag || a->base == MAP_FAILED) {
		if (a->base != MAP_FAILED)
			munmap(a->base, a->size);
		free(a->tag);
		free(a);
		return NULL;
	}
	for (off = 0; off < a->size; off += blk)
		push(a, a->base + off, top);
	return a;
}

/* The arena @p lies in, or NULL for a block from the heap. */
static struct dmi_arena *arena_of(struct dmi_pool *pool, const void *p)
{
	struct dmi_arena *a;

	for (a = pool->arenas; a; a = a->next)
		if ((const char *)p >= a->base &&
		    (const char *)p < a->base + a->size)
			return a;
	return NULL;
}

/* Merge the quick lists back into their arenas (spin lock held): before
 * an arena is judged idle, and before an allocation gives up on them. */
static bool drain_quick(struct dmi_pool *pool)
{
	bool any = false;
	unsigned int q;

	for (q = 0; q < DMI_QUICK_ORDERS; q++) {
		while (pool->quick[q]) {
			struct free_block *fb = pool->quick[q];

			pool->quick[q] = fb->next;
			arena_free(arena_of(pool, fb), (char *)fb,
				   MIN_ORDER + q);
			any = true;
		}
		pool->nr_quick[q] = 0;
	}
	return any;
}

static void arena_destroy(struct dmi_arena *a)
{
	munmap(a->base, a->size);
	free(a->tag);
	free(a);
}

int dmi_pool_init(struct dmi_pool *pool)
{
	memset(pool, 0, sizeof(*pool));
	atomic_init(&pool->gen, 0);
	atomic_init(&pool->live, 0);
	atomic_init(&pool->waiters, 0);
	if (pthread_spin_init(&pool->spin, PTHREAD_PROCESS_PRIVATE))
		return -ENOMEM;
	if (pthread_mutex_init(&pool->lock, NULL)) {
		pthread_spin_destroy(&pool->spin);
		return -ENOMEM;
	}
	if (pthread_cond_init(&pool->freed, NULL)) {
		pthread_mutex_destroy(&pool->lock);
		pthread_spin_destroy(&pool->spin);
		return -ENOMEM;
	}
	return 0;
}

void dmi_pool_destroy(struct dmi_pool *pool)
{
	while (pool->arenas) {
		struct dmi_arena *a = pool->arenas;

		pool->arenas = a->next;
		arena_destroy(a);
	}
	pthread_cond_destroy(&pool->freed);
	pthread_mutex_destroy(&pool->lock);
	pthread_spin_destroy(&pool->spin);
}

/* Memory came back: wake whoever waits for it (rarely anyone).  @news:
 * it was held by I/O in flight, so a waiter should try again; a request
 * that gives back its own half-made allocation is no news, but waiters
 * must still look whether anything is left in flight at all. */
static void pool_returned(struct dmi_pool *pool, bool news)
{
	if (news)
		atomic_fetch_add(&pool->gen, 1);
	if (atomic_load(&pool->waiters)) {
		pthread_mutex_lock(&pool->lock);
		pthread_cond_broadcast(&pool->freed);
		pthread_mutex_unlock(&pool->lock);
	}
}

/* The biggest idle arena the reservation can do without, unlinked, or
 * NULL.  Biggest first, so that an arena mapped for a past total goes
 * before the smaller one that replaces it. */
static struct dmi_arena *unlink_spare(struct dmi_pool *pool)
{
	struct dmi_arena **pp, **best = NULL, *a;

	for (pp = &pool->arenas; (a = *pp); pp = &a->next)
		if (!a->used && pool->capacity - a->pages >= pool->reserved &&
		    (!best || a->pages > (*best)->pages))
			best = pp;
	if (!best)
		return NULL;
	a = *best;
	*best = a->next;
	pool->capacity -= a->pages;
	return a;
}

/* Unmap the idle arenas that the reservation can do without. */
static void trim(struct dmi_pool *pool)
{
	struct dmi_arena *a, *idle = NULL;

	pthread_spin_lock(&pool->spin);
	drain_quick(pool);
	while ((a = unlink_spare(pool))) {
		a->next = idle;
		idle = a;
	}
	pthread_spin_unlock(&pool->spin);
	while ((a = idle)) {
		idle = a->next;
		arena_destroy(a);
	}
}

/* An idle arena mapped for more than twice what is held? */
static bool oversized(struct dmi_pool *pool)
{
	struct dmi_arena *a;
	bool ret = false;

	pthread_spin_lock(&pool->spin);
	drain_quick(pool);
	for (a = pool->arenas; a && !ret; a = a->next)
		ret = !a->used && a->pages > 2 * pool->reserved;
	pthread_spin_unlock(&pool->spin);
	return ret;
}

static void add_arena(struct dmi_pool *pool, struct dmi_arena *a)
{
	pthread_spin_lock(&pool->spin);
	a->next = pool->arenas;
	pool->arenas = a;
	pool->capacity += a->pages;
	pthread_spin_unlock(&pool->spin);
}

int dmi_pool_reserve(struct dmi_pool *pool, unsigned int nr_pages)
{
	unsigned long want = pool->reserved + nr_pages;
	struct dmi_arena *a = NULL;

	if (!nr_pages || nr_pages > MAX_RESERVE_PAGES)
		return -EINVAL;
	if (want > pool->capacity) {
		/* One run for the whole sum where it is not absurd; else,
		 * or when that cannot be mapped, this reservation's own. */
		if (want <= MAX_RESERVE_PAGES)
			a = arena_create(want);
		if (!a)
			a = arena_create(nr_pages);
		if (!a)
			return -ENOMEM;
		add_arena(pool, a);
	}
	pool->reserved = want;
	trim(pool);
	pool_returned(pool, true);
	return 0;
}

void dmi_pool_unreserve(struct dmi_pool *pool, unsigned int nr_pages)
{
	struct dmi_arena *a;

	pool->reserved -= nr_pages < pool->reserved ? nr_pages : pool->reserved;
	trim(pool);
	/* An idle arena too big for what is held, but the only run long
	 * enough for it: map one the right size, and drop the big one. */
	if (pool->reserved && oversized(pool) &&
	    (a = arena_create(pool->reserved))) {
		add_arena(pool, a);
		trim(pool);
	}
}

static void *arenas_alloc(struct dmi_pool *pool, unsigned int order)
{
	struct dmi_arena *a;
	void *p = NULL;

	for (a = pool->arenas; a && !p; a = a->next)
		if (order <= a->top)
			p = arena_alloc(a, order);
	return p;
}

/* The run of completions this thread is in, if any (dmi_batch_begin()). */
static DMI_TLS struct dmi_batch *cur_batch;
/* Blocks a batch keeps at most: beyond, they go back as they come. */
#define BATCH_MAX 64

/*
 * A spin lock, not a mutex: the work under it is a few dozen instructions,
 * never a system call, and it sits on every request's path.  A small block
 * comes from this thread's batch, or from its quick list when one was
 * freed lately.
 */
static __attribute__((noinline)) void *
pool_alloc(struct dmi_pool *pool, size_t size, unsigned int order)
{
	unsigned int q = order - MIN_ORDER;
	void *p = NULL;

	pthread_spin_lock(&pool->spin);
	if (q < DMI_QUICK_ORDERS && pool->quick[q]) {
		p = pool->quick[q];
		pool->quick[q] = ((struct free_block *)p)->next;
		pool->nr_quick[q]--;
	} else {
		p = arenas_alloc(pool, order);
		if (!p && drain_quick(pool))
			p = arenas_alloc(pool, order);
	}
	pthread_spin_unlock(&pool->spin);
	/* Beyond the reservation: the heap, aligned as a buddy block of that
	 * order is (up to a page), which O_DIRECT bounce buffers rely on; a
	 * small block is as big as its order, since a batch hands it out
	 * again for any size of that order. */
	if (!p &&
	    posix_memalign(&p, order < 12 ? (size_t)1 << order : DM_PAGE_SIZE,
			   q < DMI_BATCH_ORDERS ? (size_t)1 << order : size))
		return NULL;
	atomic_fetch_add_explicit(&pool->live, 1, memory_order_relaxed);
	return p;
}

void *dmi_pool_alloc(struct dmi_pool *pool, size_t size)
{
	unsigned int order = order_of(size), q = order - MIN_ORDER;
	struct dmi_batch *b = cur_batch;
	void *p;

	if (b && b->pool == pool && q < DMI_BATCH_ORDERS && b->blocks[q]) {
		/* Still counted live: it never went back. */
		p = b->blocks[q];
		b->blocks[q] = ((struct free_block *)p)->next;
		b->nr--;
		return p;
	}
	return pool_alloc(pool, size, order);
}

/* Put @p back (spin lock held); returns false for a heap block, which the
 * caller frees once the lock is dropped. */
static bool release_locked(struct dmi_pool *pool, void *p, unsigned int order)
{
	unsigned int q = order - MIN_ORDER;
	struct dmi_arena *a = arena_of(pool, p);

	if (a && q < DMI_QUICK_ORDERS && pool->nr_quick[q] < DMI_QUICK_DEPTH) {
		((struct free_block *)p)->next = pool->quick[q];
		pool->quick[q] = p;
		pool->nr_quick[q]++;
	} else if (a) {
		arena_free(a, p, order);
	}
	return a;
}

static __attribute__((noinline)) void pool_release(struct dmi_pool *pool,
						   void *p, size_t size)
{
	bool arena;

	pthread_spin_lock(&pool->spin);
	arena = release_locked(pool, p, order_of(size));
	pthread_spin_unlock(&pool->spin);
	if (!arena)
		free(p);
	atomic_fetch_sub_explicit(&pool->live, 1, memory_order_relaxed);
}

void dmi_pool_free(struct dmi_pool *pool, void *p, size_t size)
{
	struct dmi_batch *b = cur_batch;
	unsigned int q;

	if (!p)
		return;
	if (b && b->pool == pool && b->nr < BATCH_MAX &&
	    (q = order_of(size) - MIN_ORDER) < DMI_BATCH_ORDERS) {
		((struct free_block *)p)->next = b->blocks[q];
		b->blocks[q] = p;
		b->nr++;
		return;
	}
	pool_release(pool, p, size);
	pool_returned(pool, true);
}

void dmi_pool_unalloc(struct dmi_pool *pool, void *p, size_t size)
{
	if (!p)
		return;
	pool_release(pool, p, size);
	pool_returned(pool, false);
}

void dmi_pool_batch_begin(struct dmi_batch *b, struct dmi_pool *pool)
{
	*b = (struct dmi_batch){.pool = pool, .prev = cur_batch};
	cur_batch = b;
}

void dmi_batch_begin(struct dmi_batch *b, struct dm_io_client *client)
{
	dmi_pool_batch_begin(b, &client->pool);
}

/* What the batch kept goes back under one lock, and waiters hear of it
 * now rather than at each free. */
void dmi_batch_end(struct dmi_batch *b)
{
	struct dmi_pool *pool = b->pool;
	struct free_block *heap = NULL, *fb;
	unsigned int q;

	cur_batch = b->prev;
	if (!b->nr)
		return;
	pthread_spin_lock(&pool->spin);
	for (q = 0; q < DMI_BATCH_ORDERS; q++) {
		while ((fb = b->blocks[q])) {
			b->blocks[q] = fb->next;
			if (!release_locked(pool, fb, MIN_ORDER + q)) {
				fb->next = heap;
				heap = fb;
			}
		}
	}
	pthread_spin_unlock(&pool->spin);
	while ((fb = heap)) {
		heap = fb->next;
		free(fb);
	}
	atomic_fetch_sub_explicit(&pool->live, (long)b->nr,
				  memory_order_relaxed);
	b->nr = 0;
	pool_returned(pool, true);
}

unsigned long dmi_pool_gen(struct dmi_pool *pool)
{
	return atomic_load(&pool->gen);
}

int dmi_pool_wait(struct dmi_pool *pool, unsigned long gen)
{
	int ret = 0;

	pthread_mutex_lock(&pool->lock);
	atomic_fetch_add(&pool->waiters, 1);
	/* Both sides are sequentially consistent: either a free sees us
	 * waiting, or we see its generation. */
	while (atomic_load(&pool->gen) == gen) {
		if (!atomic_load(&pool->live)) {
			ret = -ENOMEM; /* nothing in flight will free memory */
			break;
		}
		pthread_cond_wait(&pool->freed, &pool->lock);
	}
	atomic_fetch_sub(&pool->waiters, 1);
	pthread_mutex_unlock(&pool->lock);
	return ret;
}

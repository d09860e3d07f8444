// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The mirror's daemon thread (dm-raid1's do_mirror): copies the regions
 * legs lack from a leg that has them, with kcopyd, at the --resync-rate
 * cap, while the export serves; scrubs (compares the legs region by
 * region) on request; and cleans the dirty log once a second.  A region
 * is locked while it is copied or compared: writes to it wait, and the
 * copy waits for writes already in flight, so a copy never lands on top
 * of newer data.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mirror.h"

#define BATCH_REGIONS 32 /* regions per kcopyd job without a rate cap */

struct copy_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int read_err;
	unsigned long write_err;
};

static void copy_done(int read_err, unsigned long write_err, void *context)
{
	struct copy_wait *w = context;

	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->read_err = read_err;
	w->write_err = write_err;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Sleep until @until (monotonic seconds), or until the mirror stops. */
static void sleep_until(struct mirror *m, double until)
{
	while (!__atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE)) {
		double left = until - mirror_now();
		struct timespec ts;

		if (left <= 0)
			return;
		if (left > 0.1)
			left = 0.1;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)(left * 1e9);
		nanosleep(&ts, NULL);
	}
}

/* The cap on a pass: @bytes done since @start may not run ahead of the
 * rate. */
static void rate_wait(struct mirror *m, double start, uint64_t bytes)
{
	uint64_t rate = __atomic_load_n(&m->resync_rate, __ATOMIC_RELAXED);

	if (rate)
		sleep_until(m, start + (double)bytes / (double)rate);
}

static uint64_t batch_limit(struct mirror *m)
{
	uint64_t rate = __atomic_load_n(&m->resync_rate, __ATOMIC_RELAXED);
	uint64_t region = m->region_sectors << SECTOR_SHIFT, n;

	if (!rate)
		return BATCH_REGIONS;
	n = rate / 10 / region; /* a tenth of a second's worth */
	return n < 1 ? 1 : n > BATCH_REGIONS ? BATCH_REGIONS : n;
}

/* Lock regions [r, r + n) against writes and wait for those in flight
 * (m->lock held). */
static void lock_regions(struct mirror *m, uint64_t r, uint64_t n)
{
	uint64_t i;

	for (i = r; i < r + n; i++)
		bit_set(m->locked, i);
	for (i = r; i < r + n; i++)
		while (m->pending[i])
			pthread_cond_wait(&m->cond, &m->lock);
}

static void unlock_regions(struct mirror *m, uint64_t r, uint64_t n)
{
	uint64_t i;

	for (i = r; i < r + n; i++)
		bit_clear(m->locked, i);
	pthread_cond_broadcast(&m->cond);
}

static unsigned int needing(struct mirror *m, uint64_t r)
{
	unsigned int i, mask = 0;

	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if ((l->state == LEG_INSYNC || l->state == LEG_RESYNCING) &&
		    l->need_count && bit_test(l->need, r))
			mask |= 1u << i;
	}
	return mask;
}

static int source_for(struct mirror *m, uint64_t r)
{
	unsigned int k;

	for (k = 0; k < MIRROR_MAX_LEGS; k++) {
		unsigned int i =
			(unsigned int)(m->source_hint + k) % MIRROR_MAX_LEGS;
		struct leg *l = &m->legs[i];

		if (l->state == LEG_INSYNC &&
		    (!l->need_count || !bit_test(l->need, r)))
			return (int)i;
	}
	return -1;
}

/* Legs whose resync finished take reads again: their superblock gets the
 * current generation first (m->lock not held). */
static void promote(struct mirror *m)
{
	unsigned int i;
	bool healthy, promoted = false;

	pthread_mutex_lock(&m->meta_lock);
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];
		bool done;
		int ret;

		pthread_mutex_lock(&m->lock);
		done = l->state == LEG_RESYNCING && !l->need_count;
		pthread_mutex_unlock(&m->lock);
		if (!done)
			continue;
		ret = meta_write(m, i, m->gen, false);
		pthread_mutex_lock(&m->lock);
		if (l->state == LEG_RESYNCING)
			l->state = ret ? LEG_FAILED : LEG_INSYNC;
		l->err = ret;
		pthread_mutex_unlock(&m->lock);
		if (ret)
			mirror_event("leg %u (%s) failed: %s", i, l->spec,
				     mirror_strerror(-ret));
		else
			mirror_event("leg %u (%s) in sync", i, l->spec);
		promoted |= !ret;
	}
	if (promoted)
		meta_publish(m); /* the others count it as a leg now */
	pthread_mutex_lock(&m->lock);
	healthy = mirror_healthy_locked(m);
	pthread_mutex_unlock(&m->lock);
	if (healthy && m->log.base_gen != m->gen) {
		m->log.base_gen = m->gen;
		log_write_header(m);
	}
	pthread_mutex_unlock(&m->meta_lock);
}

/* One kcopyd job of regions [r, r + n) from leg @src to the legs in
 * idx[]; two are in flight so that the copy never drains at a batch's
 * end. */
struct batch {
	struct copy_wait w;
	struct dm_kcopyd_errors errs;
	unsigned int idx[MIRROR_MAX_LEGS], nd;
	uint64_t r, n;
	sector_t count;
	int src, ret;
	bool busy;
};

#define BATCHES 2

/*
 * Start copying the next batch of regions that legs lack, from *cursor
 * on, skipping regions a batch in flight holds.  Returns false when there
 * is nothing (else) to copy, or nothing to copy from.
 */
static bool batch_start(struct mirror *m, uint64_t *cursor, struct batch *b)
{
	struct io_region from, dests[MIRROR_MAX_LEGS];
	unsigned int mask = 0, i, k;
	uint64_t r, n, scanned, limit = batch_limit(m);
	sector_t sector;
	int src = -1;

	pthread_mutex_lock(&m->lock);
	for (scanned = 0; scanned < m->nr_regions; scanned++) {
		r = (*cursor + scanned) % m->nr_regions;
		if (bit_test(m->locked, r))
			continue;
		mask = needing(m, r);
		if (mask) {
			src = source_for(m, r);
			if (src >= 0)
				break;
		}
	}
	if (src < 0) {
		pthread_mutex_unlock(&m->lock);
		return false;
	}
	for (n = 1; r + n < m->nr_regions && n < limit; n++)
		if (bit_test(m->locked, r + n) || needing(m, r + n) != mask ||
		    (m->legs[src].need_count &&
		     bit_test(m->legs[src].need, r + n)))
			break;
	*b = (struct batch){.w = {.lock = PTHREAD_MUTEX_INITIALIZER,
				  .cond = PTHREAD_COND_INITIALIZER},
			    .r = r,
			    .n = n,
			    .src = src};
	/* Held before waiting for writes in flight, so that no leg is
	 * removed under the copy. */
	m->legs[src].users++;
	for (i = 0; i < MIRROR_MAX_LEGS; i++)
		if (mask & 1u << i) {
			m->legs[i].users++;
			b->idx[b->nd++] = i;
		}
	lock_regions(m, r, n);
	/* A write that waited may have failed the source, leaving it stale
	 * where the legs it was to copy to took the new data; or the legs
	 * changed.  Then leave it for the next look. */
	if (m->legs[src].state != LEG_INSYNC || needing(m, r) != mask) {
		unlock_regions(m, r, n);
		m->legs[src].users--;
		for (k = 0; k < b->nd; k++)
			m->legs[b->idx[k]].users--;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		return false;
	}
	b->busy = true;
	pthread_mutex_unlock(&m->lock);

	sector = r * m->region_sectors;
	b->count = n * m->region_sectors;
	if (sector + b->count > m->data_sectors)
		b->count = m->data_sectors - sector;
	from = (struct io_region){m->legs[src].bdev, sector, b->count};
	for (k = 0; k < b->nd; k++)
		dests[k] = (struct io_region){m->legs[b->idx[k]].bdev, sector,
					      b->count};
	b->ret = dm_kcopyd_copy_errors(m->kc, &from, b->nd, dests,
				       1u << DM_KCOPYD_IGNORE_ERROR, copy_done,
				       &b->w, &b->errs);
	if (b->ret) {
		b->w.done = true;
		b->w.read_err = 0;
		b->w.write_err = ~0ul;
		for (k = 0; k < b->nd; k++)
			b->errs.dests[k] = b->ret;
	}
	*cursor = r + n;
	return true;
}

/* Wait for a batch to be copied, and count what it brought in sync. */
static void batch_end(struct mirror *m, struct batch *b)
{
	struct copy_wait *w = &b->w;
	uint64_t bytes = b->count << SECTOR_SHIFT;
	unsigned int k;

	pthread_mutex_lock(&w->lock);
	while (!w->done)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);

	pthread_mutex_lock(&m->lock);
	unlock_regions(m, b->r, b->n);
	m->legs[b->src].users--;
	for (k = 0; k < b->nd; k++) {
		struct leg *l = &m->legs[b->idx[k]];
		uint64_t j;

		l->users--;
		if (w->read_err || w->write_err & 1ul << k)
			continue;
		for (j = b->r; j < b->r + b->n; j++)
			if (bit_test(l->need, j)) {
				bit_clear(l->need, j);
				l->need_count--;
				m->resync_regions_done++;
			}
		l->writes++;
		l->write_bytes += bytes;
	}
	if (!w->read_err)
		m->legs[b->src].reads++;
	m->resynced_regions += w->read_err ? 0 : b->n;
	m->resynced_bytes += w->read_err ? 0 : bytes;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	b->busy = false;
}

static bool batch_failed(const struct batch *b)
{
	return b->w.read_err || b->w.write_err & ((1ul << b->nd) - 1);
}

/* Fail the legs an ended batch could not read or write.  That takes
 * meta_lock, under which a leg's removal waits for its users: no batch
 * may still hold legs then. */
static void batch_fail_legs(struct mirror *m, struct batch *b)
{
	struct copy_wait *w = &b->w;
	unsigned int k;

	if (w->read_err && !b->ret)
		mirror_fail_leg(m, (unsigned int)b->src,
				b->errs.read ? b->errs.read : -EIO);
	for (k = 0; k < b->nd; k++)
		if (!w->read_err && w->write_err & 1ul << k)
			mirror_fail_leg(m, b->idx[k],
					b->errs.dests[k] ? b->errs.dests[k]
							 : -EIO);
}

/* End every batch in flight, then fail what they could not copy. */
static void resync_drain(struct mirror *m, struct batch *b)
{
	bool ended[BATCHES] = {false};
	unsigned int i;

	for (i = 0; i < BATCHES; i++)
		if (b[i].busy) {
			batch_end(m, &b[i]);
			ended[i] = true;
		}
	for (i = 0; i < BATCHES; i++)
		if (ended[i])
			batch_fail_legs(m, &b[i]);
}

static bool resync_busy(const struct batch *b)
{
	unsigned int i;

	for (i = 0; i < BATCHES; i++)
		if (b[i].busy)
			return true;
	return false;
}

/*
 * Keep BATCHES copies in flight and end the oldest (@next is its slot).
 * Returns false when nothing was in flight: there is nothing to copy.
 */
static bool resync_step(struct mirror *m, uint64_t *cursor, struct batch *b,
			unsigned int *next)
{
	unsigned int i, slot;

	for (i = 0; i < BATCHES; i++) {
		slot = (*next + i) % BATCHES;
		if (!b[slot].busy && !batch_start(m, cursor, &b[slot]))
			break;
	}
	if (!b[*next].busy) {
		/* The oldest slot is free: the other may still hold one. */
		*next = (*next + 1) % BATCHES;
		if (!b[*next].busy)
			return false;
	}
	slot = *next;
	batch_end(m, &b[slot]);
	*next = (*next + 1) % BATCHES;
	if (batch_failed(&b[slot])) {
		resync_drain(m, b);
		batch_fail_legs(m, &b[slot]);
	}
	return true;
}

/* Compare region @r across the legs that hold it (m->lock not held). */
static void scrub_region(struct mirror *m, uint64_t r, char *buf[2])
{
	unsigned int idx[MIRROR_MAX_LEGS], n = 0, i, k;
	sector_t sector = r * m->region_sectors, count = m->region_sectors;
	bool differ = false;

	if (sector + count > m->data_sectors)
		count = m->data_sectors - sector;
	pthread_mutex_lock(&m->lock);
	lock_regions(m, r, 1);
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if (l->state == LEG_INSYNC &&
		    (!l->need_count || !bit_test(l->need, r))) {
			l->users++;
			idx[n++] = i;
		}
	}
	pthread_mutex_unlock(&m->lock);
	for (k = 0; k < n && !differ; k++) {
		struct io_region where = {m->legs[idx[k]].bdev, sector, count};
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_READ,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = buf[k > 0]},
			.client = m->io,
		};

		if (dm_io(&req, 1, &where, NULL)) {
			m->scrub.err = -EIO;
			break;
		}
		differ = k && memcmp(buf[0], buf[1], count << SECTOR_SHIFT);
	}
	pthread_mutex_lock(&m->lock);
	unlock_regions(m, r, 1);
	for (k = 0; k < n; k++)
		m->legs[idx[k]].users--;
	pthread_cond_broadcast(&m->cond);
	if (differ) {
		if (m->scrub.differing < 16)
			m->scrub.first[m->scrub.differing] = r;
		m->scrub.differing++;
	}
	m->scrub.checked++;
	pthread_mutex_unlock(&m->lock);
}

static void scrub_run(struct mirror *m)
{
	uint64_t region = m->region_sectors << SECTOR_SHIFT, r;
	char *buf[2] = {malloc(region), malloc(region)};
	double start = mirror_now();

	pthread_mutex_lock(&m->lock);
	m->scrub = (struct scrub){.running = true};
	pthread_mutex_unlock(&m->lock);
	mirror_event("scrub started");
	for (r = 0; buf[0] && buf[1] && r < m->nr_regions &&
		    !__atomic_load_n(&m->stopping, __ATOMIC_RELAXED);
	     r++) {
		scrub_region(m, r, buf);
		rate_wait(m, start, (r + 1) * region);
	}
	pthread_mutex_lock(&m->lock);
	m->scrub.running = false;
	m->scrub.done = true;
	if (!buf[0] || !buf[1])
		m->scrub.err = -ENOMEM;
	pthread_mutex_unlock(&m->lock);
	mirror_event("scrub done: %" PRIu64 " of %" PRIu64
		     " regions checked, %" PRIu64 " differ",
		     m->scrub.checked, m->nr_regions, m->scrub.differing);
	free(buf[0]);
	free(buf[1]);
}

static bool resync_wanted(struct mirror *m)
{
	unsigned int i;

	for (i = 0; i < MIRROR_MAX_LEGS; i++)
		if ((m->legs[i].state == LEG_INSYNC ||
		     m->legs[i].state == LEG_RESYNCING) &&
		    m->legs[i].need_count)
			return true;
	return false;
}

static void *daemon_main(void *arg)
{
	struct mirror *m = arg;
	double last_clean = mirror_now(), pass_start = 0;
	uint64_t cursor = 0, pass_bytes = 0;
	struct batch batches[BATCHES] = {0};
	unsigned int oldest = 0;

	pthread_mutex_lock(&m->lock);
	while (!m->stopping) {
		bool resync = resync_wanted(m), scrub = m->scrub.requested;
		bool copied = false;

		if (scrub && !resync)
			m->scrub.requested = false;

		if (resync && !m->resync_running) {
			unsigned int i;

			m->resync_running = true;
			m->resync_regions_done = 0;
			m->resync_regions_total = 0;
			for (i = 0; i < MIRROR_MAX_LEGS; i++)
				m->resync_regions_total +=
					m->legs[i].need_count;
			pass_start = m->resync_started = mirror_now();
			pass_bytes = 0;
			cursor = 0;
			mirror_event("resync started: %" PRIu64
				     " regions to copy",
				     m->resync_regions_total);
		}
		pthread_mutex_unlock(&m->lock);
		if (resync) {
			uint64_t before = m->resynced_bytes;

			copied = resync_step(m, &cursor, batches, &oldest);
			pass_bytes += m->resynced_bytes - before;
			if (pass_bytes) {
				double t = mirror_now() - pass_start;

				pthread_mutex_lock(&m->lock);
				m->resync_bytes_per_s =
					t > 0 ? (double)pass_bytes / t : 0;
				pthread_mutex_unlock(&m->lock);
			}
			rate_wait(m, pass_start, pass_bytes);
		} else {
			/* A leg failed under a batch, say: end what is out. */
			resync_drain(m, batches);
			if (scrub)
				scrub_run(m);
		}
		/* promote() takes meta_lock: see batch_fail_legs(). */
		if (!resync_busy(batches))
			promote(m);
		if (mirror_now() - last_clean >= 1.0) {
			log_clean(m);
			last_clean = mirror_now();
		}
		pthread_mutex_lock(&m->lock);
		if (m->resync_running && !resync_wanted(m)) {
			m->resync_running = false;
			mirror_event("resync done: %" PRIu64
				     " regions copied in %.1f s",
				     m->resync_regions_done,
				     mirror_now() - m->resync_started);
		}
		if (!copied && !m->scrub.requested && !m->stopping) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 250000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&m->cond, &m->lock, &ts);
		}
	}
	pthread_mutex_unlock(&m->lock);
	resync_drain(m, batches);
	return NULL;
}

int daemon_start(struct mirror *m)
{
	int ret = pthread_create(&m->daemon, NULL, daemon_main, m);

	if (ret)
		return -ret;
	m->daemon_started = true;
	return 0;
}

void daemon_kick(struct mirror *m)
{
	pthread_mutex_lock(&m->lock);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

void daemon_stop(struct mirror *m)
{
	if (!m->daemon_started)
		return;
	pthread_mutex_lock(&m->lock);
	__atomic_store_n(&m->stopping, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->daemon, NULL);
	m->daemon_started = false;
}

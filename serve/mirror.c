// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The mirror's legs and I/O paths, as dm-raid1 does them: a write is one
 * dm_io() to every leg that takes writes, with its regions marked dirty in
 * the log first; a read goes to one in-sync leg and fails over to the
 * next; a leg that fails is marked failed (its errno kept) and the mirror
 * goes on degraded, after the surviving legs have recorded a new
 * generation, so the failed leg can never pass for current again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mirror.h"

const char *leg_state_name(enum leg_state s)
{
	switch (s) {
	case LEG_INSYNC:
		return "in-sync";
	case LEG_RESYNCING:
		return "resyncing";
	case LEG_FAILED:
		return "failed";
	default:
		return "empty";
	}
}

/* Events go to stderr, which nbdkit leaves to the terminal or the log. */
void mirror_event(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("dmio: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* The text of an errno, for the server's threads: strerror() may share a
 * buffer between threads and translates under glibc's locale lock, which
 * left nbdkit hung in exit() under the sanitizers' runtime after the
 * control thread had used it.  The untranslated description needs
 * neither. */
const char *mirror_strerror(int err)
{
	const char *s = strerrordesc_np(err);

	return s ? s : "Unknown error";
}

double mirror_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Every leg in sync and nothing left to resync (m->lock held). */
bool mirror_healthy_locked(struct mirror *m)
{
	unsigned int i;

	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if (l->state == LEG_EMPTY)
			continue;
		if (l->state != LEG_INSYNC || l->need_count)
			return false;
	}
	return true;
}

bool mirror_healthy(struct mirror *m)
{
	bool h;

	pthread_mutex_lock(&m->lock);
	h = mirror_healthy_locked(m);
	pthread_mutex_unlock(&m->lock);
	return h;
}

static unsigned int insync_count_locked(struct mirror *m)
{
	unsigned int i, n = 0;

	for (i = 0; i < MIRROR_MAX_LEGS; i++)
		n += m->legs[i].state == LEG_INSYNC;
	return n;
}

/* Where a leg's superblock sits: its last whole 4 KiB. */
static sector_t meta_room(struct block_device *bdev)
{
	sector_t n = dm_bdev_nr_sectors(bdev) & ~(sector_t)7;

	return n >= 16 ? n - (MIRROR_META_BYTES >> SECTOR_SHIFT) : 0;
}

static int open_leg(struct mirror *m, struct leg *l)
{
	int ret;

	l->bdev = dm_bdev_open(l->spec, m->opt.open_flags);
	if (!l->bdev)
		return -errno;
	ret = dm_bdev_set_timeout(l->bdev, m->opt.leg_timeout_ms);
	if (ret && ret != -EOPNOTSUPP) {
		dm_bdev_close(l->bdev);
		l->bdev = NULL;
		return ret;
	}
	return 0;
}

static void need_all(struct mirror *m, struct leg *l)
{
	uint64_t r;

	memset(l->need, 0, bitmap_words(m->nr_regions) * 8);
	for (r = 0; r < m->nr_regions; r++)
		bit_set(l->need, r);
	l->need_count = l->need_total = m->nr_regions;
}

static void need_from_log(struct mirror *m, struct leg *l)
{
	uint64_t r, n = 0;

	log_snapshot(m, l->need);
	for (r = 0; r < m->nr_regions; r++)
		n += bit_test(l->need, r);
	l->need_count = l->need_total = n;
}

/*
 * What a leg with superblock @meta needs from the source: nothing, the
 * regions in the log, or everything; or a split brain.
 */
enum need {
	NEED_NONE,
	NEED_LOG,
	NEED_ALL,
	NEED_SPLIT
};

static enum need leg_need(struct mirror *m, const struct leg_meta *meta,
			  bool source_clean)
{
	int age, base;

	if (!meta->valid || memcmp(meta->set_uuid, m->set_uuid, 16))
		return m->opt.nosync ? NEED_NONE : NEED_ALL; /* a new leg */
	if (meta->gen == 0)
		return NEED_ALL; /* its resync never finished */
	age = meta_age(m, meta->gen);
	if (age == -2)
		return NEED_SPLIT;
	if (age == -1) {
		if ((source_clean && meta->clean) || m->opt.nosync)
			return NEED_NONE;
		return m->log.valid ? NEED_LOG : NEED_ALL;
	}
	/* Stale: the log covers it when it has kept every write since a
	 * generation no newer than the leg's. */
	base = meta_age(m, m->log.base_gen);
	if (m->log.valid && base != -2 && age <= base)
		return NEED_LOG;
	return NEED_ALL;
}

static int parse_index(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v >= MIRROR_MAX_LEGS)
		return -1;
	return (int)v;
}

/* A leg by its index or its spec; -1 when there is none. */
int mirror_find_leg(struct mirror *m, const char *what)
{
	int i = parse_index(what), found = -1;

	pthread_mutex_lock(&m->lock);
	if (i >= 0)
		found = m->legs[i].state == LEG_EMPTY ? -1 : i;
	for (i = 0; found < 0 && i < MIRROR_MAX_LEGS; i++)
		if (m->legs[i].state != LEG_EMPTY &&
		    !strcmp(m->legs[i].spec, what))
			found = i;
	pthread_mutex_unlock(&m->lock);
	return found;
}

/* Which leg's data wins: the one given, else one whose history holds
 * every other leg's generation.  Returns the leg, -1 (no superblock
 * anywhere: a new mirror), -2 (split brain). */
static int choose_source(const struct leg_meta *meta, int primary)
{
	unsigned int i, j;
	int best = -1;

	if (primary >= 0)
		return primary;
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		bool covers = true;

		if (!meta[i].valid || !meta[i].gen)
			continue;
		for (j = 0; j < MIRROR_MAX_LEGS && covers; j++) {
			unsigned int k;
			bool found = meta[j].gen == meta[i].gen;

			if (!meta[j].valid || !meta[j].gen || found ||
			    memcmp(meta[j].set_uuid, meta[i].set_uuid, 16))
				continue;
			for (k = 0; k < meta[i].nr_history; k++)
				found |= meta[i].history[k] == meta[j].gen;
			covers = found;
		}
		if (covers && (best < 0 || meta[i].events > meta[best].events))
			best = (int)i;
	}
	if (best < 0) {
		for (i = 0; i < MIRROR_MAX_LEGS; i++)
			if (meta[i].valid && meta[i].gen)
				return -2;
	}
	return best;
}

static int alloc_regions(struct mirror *m)
{
	uint64_t words = bitmap_words(m->nr_regions);
	unsigned int i;

	m->pending = calloc(m->nr_regions, sizeof(*m->pending));
	m->locked = calloc(words, 8);
	if (!m->pending || !m->locked)
		return -ENOMEM;
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		m->legs[i].need = calloc(words, 8);
		if (!m->legs[i].need)
			return -ENOMEM;
	}
	return 0;
}

static int assemble(struct mirror *m)
{
	struct leg_meta meta[MIRROR_MAX_LEGS] = {0};
	unsigned int i, opened = 0, missing = 0;
	int src, primary = -1, ret;
	sector_t size = 0;

	for (i = 0; i < m->opt.nr_specs; i++) {
		struct leg *l = &m->legs[i];

		l->spec = strdup(m->opt.specs[i]);
		if (!l->spec)
			return -ENOMEM;
		ret = open_leg(m, l);
		if (ret) {
			l->state = LEG_FAILED;
			l->err = ret;
			missing++;
			mirror_event("leg %u (%s) failed: %s", i, l->spec,
				     mirror_strerror(-ret));
			continue;
		}
		l->state = LEG_INSYNC;
		ret = meta_read(m, l->bdev, &meta[i]);
		if (ret) {
			mirror_event("leg %u (%s): reading its superblock: %s",
				     i, l->spec, mirror_strerror(-ret));
			return ret;
		}
		if (!size || meta_room(l->bdev) < size)
			size = meta_room(l->bdev);
		opened++;
	}
	if (!opened)
		return -ENODEV;
	if (m->opt.primary) {
		primary = mirror_find_leg(m, m->opt.primary);
		if (primary < 0 || !m->legs[primary].bdev) {
			mirror_event("--primary %s: no such leg is open",
				     m->opt.primary);
			return -EINVAL;
		}
	}
	src = choose_source(meta, primary);
	if (src == -2) {
		mirror_event("split brain: the legs took writes that the "
			     "others lack; name the leg to keep with "
			     "--primary LEG (the others are then resynced "
			     "from it)");
		return -EUCLEAN;
	}
	if (src >= 0 && meta[src].valid) {
		memcpy(m->set_uuid, meta[src].set_uuid, 16);
		m->gen = meta[src].gen;
		m->events = meta[src].events;
		m->nr_history = meta[src].nr_history;
		memcpy(m->history, meta[src].history, sizeof(m->history));
		m->data_sectors = meta[src].data_sectors;
		if (m->data_sectors > size) {
			mirror_event(
				"a leg is smaller than the mirror's %" PRIu64
				" bytes",
				(uint64_t)m->data_sectors << SECTOR_SHIFT);
			return -ENOSPC;
		}
	} else {
		if (src < 0)
			for (src = 0; !m->legs[src].bdev; src++)
				;
		random_bytes(m->set_uuid, 16);
		random_bytes(&m->gen, sizeof(m->gen));
		m->gen |= 1;
		m->events = 1;
		m->data_sectors = size;
	}
	if (!m->data_sectors)
		return -ENOSPC;
	m->source_hint = src;
	m->nr_regions =
		(m->data_sectors + m->region_sectors - 1) / m->region_sectors;
	ret = alloc_regions(m);
	if (ret)
		return ret;
	ret = log_open(m, meta[src].valid ? meta[src].run_id : 0);
	if (ret)
		return ret;
	if (!meta[src].valid)
		m->log.base_gen = m->gen;
	m->was_clean = meta[src].valid && meta[src].clean;

	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if (!l->bdev || (int)i == src)
			continue;
		switch (leg_need(m, &meta[i], meta[src].clean)) {
		case NEED_NONE:
			m->was_clean &= meta[i].clean;
			break;
		case NEED_LOG:
			need_from_log(m, l);
			break;
		case NEED_SPLIT:
			if (primary < 0) {
				mirror_event("split brain: leg %u (%s) took "
					     "writes that leg %d lacks; name "
					     "the leg to keep with --primary",
					     i, l->spec, src);
				return -EUCLEAN;
			}
			/* fall through */
		case NEED_ALL:
			need_all(m, l);
			break;
		}
		/* A stale or new leg serves no reads until resynced; a
		 * current one after a crash keeps serving the regions it
		 * has whole. */
		if (l->need_count && (!meta[i].valid || meta[i].gen != m->gen))
			l->state = LEG_RESYNCING;
	}
	/* A leg missing now (not opened, or not named at all) misses the
	 * writes to come: a new generation. */
	if (missing || primary >= 0 ||
	    (meta[src].valid && opened < meta[src].nr_legs))
		meta_new_generation(m);
	m->nr_legs = m->opt.nr_specs;
	random_bytes(&m->run_id, sizeof(m->run_id));
	m->run_id |= 1;
	m->log.run_id = m->run_id;
	if (mirror_healthy_locked(m))
		m->log.base_gen = m->gen;
	/* From here on the log, core or file, sees every write. */
	m->log.valid = true;
	ret = log_write_header(m);
	if (ret)
		return ret;
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if (!l->bdev)
			continue;
		ret = meta_write(m, i, l->state == LEG_INSYNC ? m->gen : 0,
				 false);
		if (ret) {
			l->state = LEG_FAILED;
			l->err = ret;
			mirror_event("leg %u (%s) failed: %s", i, l->spec,
				     mirror_strerror(-ret));
		}
	}
	if (!insync_count_locked(m))
		return -EIO;
	return 0;
}

int mirror_start(struct mirror *m)
{
	int ret;

	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	pthread_mutex_init(&m->meta_lock, NULL);
	pthread_mutex_init(&m->rmw_lock, NULL);
	pthread_mutex_init(&m->log.lock, NULL);
	m->log.fd = -1;
	m->control_fd = -1;
	m->region_sectors = m->opt.region_bytes >> SECTOR_SHIFT;
	m->resync_rate = m->opt.resync_rate;
	m->io = dm_io_client_create();
	if (!m->io)
		return -errno;
	/* The resync issues on the export's own client: one ring. */
	m->kc = dm_kcopyd_client_create_opts(
		&(struct dm_kcopyd_options){.io_client = m->io});
	if (!m->kc)
		return -errno;
	ret = assemble(m);
	if (ret)
		return ret;
	m->assembled = true;
	m->block_size = 512;
	for (unsigned int i = 0; i < MIRROR_MAX_LEGS; i++)
		if (m->legs[i].bdev &&
		    dm_bdev_logical_block_size(m->legs[i].bdev) > m->block_size)
			m->block_size =
				dm_bdev_logical_block_size(m->legs[i].bdev);
	m->scrub.requested = m->opt.verify;
	ret = daemon_start(m);
	if (ret)
		return ret;
	return m->opt.control_path ? control_start(m) : 0;
}

/* Clean shutdown: the legs in sync record it, so that the next start
 * resyncs nothing. */
void mirror_stop(struct mirror *m)
{
	unsigned int i;
	bool clean;

	control_stop(m);
	daemon_stop(m);
	clean = m->assembled && mirror_healthy(m);
	if (m->log.bits)
		log_close(m, m->assembled, clean);
	for (i = 0; m->assembled && i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if (l->bdev && l->state == LEG_INSYNC && !l->need_count)
			meta_write(m, i, m->gen, true);
	}
	if (m->kc)
		dm_kcopyd_client_destroy(m->kc);
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		if (m->legs[i].bdev)
			dm_bdev_close(m->legs[i].bdev);
		free(m->legs[i].spec);
		free(m->legs[i].need);
	}
	if (m->io)
		dm_io_client_destroy(m->io);
	free(m->pending);
	free(m->locked);
}

/* ---- Region locking: writes against resync (dm-raid1's ordering) ---- */

static void regions_of(struct mirror *m, sector_t sector, sector_t count,
		       uint64_t *first, uint64_t *last)
{
	*first = sector / m->region_sectors;
	*last = (sector + (count ? count : 1) - 1) / m->region_sectors;
}

static void region_begin(struct mirror *m, uint64_t first, uint64_t last)
{
	uint64_t r;

	pthread_mutex_lock(&m->lock);
	for (r = first; r <= last; r++)
		if (bit_test(m->locked, r)) {
			pthread_cond_wait(&m->cond, &m->lock);
			r = first - 1;
		}
	for (r = first; r <= last; r++)
		m->pending[r]++;
	pthread_mutex_unlock(&m->lock);
}

static void region_end(struct mirror *m, uint64_t first, uint64_t last)
{
	bool wake = false;
	uint64_t r;

	pthread_mutex_lock(&m->lock);
	for (r = first; r <= last; r++)
		wake |= --m->pending[r] == 0 && bit_test(m->locked, r);
	if (wake)
		pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* ---- Failure ---- */

/*
 * Mark leg @i failed with @err.  Before this returns, the legs still in
 * sync carry a new generation, so the write that failed on @i is never
 * acknowledged while @i could still pass for current after a crash.
 */
void mirror_fail_leg(struct mirror *m, unsigned int i, int err)
{
	struct leg *l = &m->legs[i];
	bool bump;

	pthread_mutex_lock(&m->meta_lock);
	pthread_mutex_lock(&m->lock);
	if (l->state != LEG_INSYNC && l->state != LEG_RESYNCING) {
		pthread_mutex_unlock(&m->lock);
		pthread_mutex_unlock(&m->meta_lock);
		return;
	}
	bump = l->state == LEG_INSYNC;
	l->state = LEG_FAILED;
	l->err = err ? err : -EIO;
	l->errors++;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	mirror_event("leg %u (%s) failed: %s", i, l->spec,
		     mirror_strerror(-l->err));
	if (bump)
		meta_new_generation(m);
	pthread_mutex_unlock(&m->meta_lock);
	daemon_kick(m);
}

/* The legs that take writes, each held until put_legs(). */
static unsigned int get_write_legs(struct mirror *m, unsigned int *idx)
{
	unsigned int i, n = 0;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if (l->state == LEG_INSYNC || l->state == LEG_RESYNCING) {
			l->users++;
			idx[n++] = i;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return n;
}

static void put_legs(struct mirror *m, const unsigned int *idx, unsigned int n)
{
	unsigned int k;

	pthread_mutex_lock(&m->lock);
	for (k = 0; k < n; k++)
		if (--m->legs[idx[k]].users == 0)
			pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/*
 * One request to every leg that takes writes; legs that failed it are
 * marked failed unless every leg did, and then the client gets the legs'
 * common errno (or EIO).
 */
static int write_legs(struct mirror *m, unsigned int op, const void *buf,
		      sector_t sector, sector_t count)
{
	struct io_region where[MIRROR_MAX_LEGS];
	int errs[MIRROR_MAX_LEGS];
	unsigned int idx[MIRROR_MAX_LEGS], n, k, good = 0;
	unsigned long bits = 0;
	int ret, common = 0;
	struct dm_io_request req = {
		.bi_opf = op,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = (void *)buf},
		.client = m->io,
		.region_errors = errs,
	};

	n = get_write_legs(m, idx);
	if (!n)
		return -EIO;
	for (k = 0; k < n; k++) {
		where[k] =
			(struct io_region){m->legs[idx[k]].bdev, sector, count};
		errs[k] = 0;
	}
	ret = dm_io(&req, n, where, &bits);
	if (ret && ret != -EIO) {
		put_legs(m, idx, n);
		return ret;
	}
	for (k = 0; k < n; k++) {
		struct leg *l = &m->legs[idx[k]];

		if (bits & 1ul << k) {
			if (!errs[k])
				errs[k] = -EIO;
			common = !common || common == errs[k] ? errs[k] : -EIO;
			continue;
		}
		good++;
		l->writes++;
		l->write_bytes += count << SECTOR_SHIFT;
	}
	put_legs(m, idx, n);
	if (!good)
		return common;
	for (k = 0; k < n; k++)
		if (bits & 1ul << k)
			mirror_fail_leg(m, idx[k], errs[k]);
	return 0;
}

static int aligned_write(struct mirror *m, unsigned int op, const void *buf,
			 sector_t sector, sector_t count)
{
	uint64_t first, last;
	int ret;

	regions_of(m, sector, count, &first, &last);
	region_begin(m, first, last);
	ret = log_mark(m, first, last);
	if (!ret)
		ret = write_legs(m, op, buf, sector, count);
	region_end(m, first, last);
	return ret;
}

/* ---- Reads with failover ---- */

static int pick_read_leg(struct mirror *m, uint64_t first, uint64_t last,
			 unsigned int tried)
{
	unsigned int i, k, start = atomic_fetch_add(&m->rr, 1);
	int best = -1;

	pthread_mutex_lock(&m->lock);
	for (k = 0; k < MIRROR_MAX_LEGS; k++) {
		struct leg *l;
		uint64_t r;
		bool whole = true;

		i = (start + k) % MIRROR_MAX_LEGS;
		l = &m->legs[i];
		if (l->state != LEG_INSYNC || tried & 1u << i)
			continue;
		for (r = first; r <= last && whole && l->need_count; r++)
			whole = !bit_test(l->need, r);
		if (!whole)
			continue;
		if (best < 0 || (m->opt.read_policy == READ_LEAST_LOADED &&
				 l->inflight < m->legs[best].inflight))
			best = (int)i;
		if (m->opt.read_policy == READ_ROUND_ROBIN)
			break;
	}
	if (best >= 0) {
		m->legs[best].users++;
		m->legs[best].inflight++;
	}
	pthread_mutex_unlock(&m->lock);
	return best;
}

static int aligned_read(struct mirror *m, void *buf, sector_t sector,
			sector_t count)
{
	uint64_t first, last;
	unsigned int tried = 0;
	int ret = -EIO;

	regions_of(m, sector, count, &first, &last);
	for (;;) {
		struct dm_io_request req = {
			.bi_opf = DM_IO_OP_READ,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
			.client = m->io,
			.region_errors = &ret,
		};
		int i = pick_read_leg(m, first, last, tried);
		struct leg *l;
		struct io_region where;
		unsigned int u;
		bool others;

		if (i < 0)
			return ret;
		l = &m->legs[i];
		where = (struct io_region){l->bdev, sector, count};
		ret = 0;
		u = (unsigned int)i;
		if (dm_io(&req, 1, &where, NULL) == 0)
			ret = 0;
		else if (!ret)
			ret = -EIO;
		l->inflight--;
		put_legs(m, &u, 1);
		if (!ret) {
			l->reads++;
			l->read_bytes += count << SECTOR_SHIFT;
			return 0;
		}
		tried |= 1u << i;
		pthread_mutex_lock(&m->lock);
		others = insync_count_locked(m) > 1;
		pthread_mutex_unlock(&m->lock);
		/* The last leg in sync stays: its error goes to the client. */
		if (others)
			mirror_fail_leg(m, u, ret);
	}
}

/* ---- Unaligned requests: nbdkit 1.32 passes them through ---- */

static int span_read(struct mirror *m, uint64_t a, uint64_t b, char **bounce)
{
	*bounce = malloc(b - a);
	if (!*bounce)
		return -ENOMEM;
	return aligned_read(m, *bounce, a >> SECTOR_SHIFT,
			    (b - a) >> SECTOR_SHIFT);
}

int mirror_read(struct mirror *m, void *buf, uint32_t count, uint64_t offset)
{
	uint64_t bs = m->block_size, a = offset / bs * bs,
		 b = (offset + count + bs - 1) / bs * bs;
	char *bounce;
	int ret;

	if (a == offset && b == offset + count)
		return aligned_read(m, buf, offset >> SECTOR_SHIFT,
				    count >> SECTOR_SHIFT);
	ret = span_read(m, a, b, &bounce);
	if (!ret)
		memcpy(buf, bounce + (offset - a), count);
	free(bounce);
	return ret;
}

/* Read-modify-write of the whole blocks around an unaligned request;
 * @buf NULL writes zeroes. */
static int rmw_write(struct mirror *m, const void *buf, uint32_t count,
		     uint64_t offset, unsigned int op)
{
	uint64_t bs = m->block_size, a = offset / bs * bs,
		 b = (offset + count + bs - 1) / bs * bs;
	char *bounce;
	int ret;

	pthread_mutex_lock(&m->rmw_lock);
	ret = span_read(m, a, b, &bounce);
	if (!ret) {
		if (buf)
			memcpy(bounce + (offset - a), buf, count);
		else
			memset(bounce + (offset - a), 0, count);
		ret = aligned_write(m, op, bounce, a >> SECTOR_SHIFT,
				    (b - a) >> SECTOR_SHIFT);
	}
	pthread_mutex_unlock(&m->rmw_lock);
	free(bounce);
	return ret;
}

int mirror_write(struct mirror *m, const void *buf, uint32_t count,
		 uint64_t offset, bool fua)
{
	unsigned int op = DM_IO_OP_WRITE | (fua ? DM_IO_FUA : 0);

	if ((offset | count) % m->block_size)
		return rmw_write(m, buf, count, offset, op);
	return aligned_write(m, op, buf, offset >> SECTOR_SHIFT,
			     count >> SECTOR_SHIFT);
}

int mirror_flush(struct mirror *m)
{
	return write_legs(m, DM_IO_OP_FLUSH, NULL, 0, 0);
}

/*
 * Write-zeroes to every leg, for trim too: libdmio writes zeroes where a
 * leg cannot, so the legs stay identical (a discard's result is up to
 * each device).  Unaligned ends are written as zeroed blocks.
 */
int mirror_zero(struct mirror *m, uint32_t count, uint64_t offset, bool fua)
{
	uint64_t bs = m->block_size, end = offset + count;
	uint64_t a = (offset + bs - 1) / bs * bs, b = end / bs * bs;
	unsigned int wop = DM_IO_OP_WRITE | (fua ? DM_IO_FUA : 0);
	int ret = 0;

	if (a >= b)
		return rmw_write(m, NULL, count, offset, wop);
	if (a > offset)
		ret = rmw_write(m, NULL, (uint32_t)(a - offset), offset, wop);
	if (!ret && b < end)
		ret = rmw_write(m, NULL, (uint32_t)(end - b), b, wop);
	if (!ret)
		ret = aligned_write(m, DM_IO_OP_WRITE_ZEROES, NULL,
				    a >> SECTOR_SHIFT, (b - a) >> SECTOR_SHIFT);
	if (!ret && fua)
		ret = mirror_flush(m);
	return ret;
}

/* ---- Online changes: remove and (re-)add ---- */

/* Wait until no I/O path holds leg @i (m->lock held). */
static void wait_unused(struct mirror *m, struct leg *l)
{
	while (l->users)
		pthread_cond_wait(&m->cond, &m->lock);
}

int mirror_remove_leg(struct mirror *m, unsigned int i, char *msg, size_t len)
{
	struct leg *l = &m->legs[i];
	struct block_device *bdev;
	bool last;

	pthread_mutex_lock(&m->lock);
	last = l->state == LEG_INSYNC && insync_count_locked(m) == 1;
	pthread_mutex_unlock(&m->lock);
	if (last) {
		snprintf(msg, len, "leg %u is the last in sync", i);
		return -EBUSY;
	}
	mirror_fail_leg(m, i, -ESHUTDOWN);
	pthread_mutex_lock(&m->meta_lock);
	pthread_mutex_lock(&m->lock);
	wait_unused(m, l);
	bdev = l->bdev;
	l->bdev = NULL;
	l->state = LEG_EMPTY;
	l->err = 0;
	l->need_count = 0;
	pthread_mutex_unlock(&m->lock);
	pthread_mutex_unlock(&m->meta_lock);
	dm_bdev_close(bdev);
	pthread_mutex_lock(&m->meta_lock);
	meta_publish(m); /* a later start must not miss the leg */
	pthread_mutex_unlock(&m->meta_lock);
	mirror_event("leg %u (%s) removed", i, l->spec);
	snprintf(msg, len, "leg %u removed", i);
	return 0;
}

/*
 * Add @spec as a new leg, or bring back a failed one (its index or spec):
 * reopened, it is resynced from the legs in sync, by the dirty log when
 * its superblock shows it fell behind no earlier than the log began, else
 * in full.
 */
int mirror_add_leg(struct mirror *m, const char *spec, char *msg, size_t len)
{
	struct leg_meta meta;
	struct leg *l = NULL;
	struct block_device *old;
	enum need need;
	int i = mirror_find_leg(m, spec), ret;

	pthread_mutex_lock(&m->meta_lock);
	pthread_mutex_lock(&m->lock);
	if (i >= 0 && m->legs[i].state != LEG_FAILED) {
		snprintf(msg, len, "leg %d is %s", i,
			 leg_state_name(m->legs[i].state));
		ret = -EBUSY;
		goto out_locked;
	}
	if (i < 0) {
		for (i = 0; i < MIRROR_MAX_LEGS; i++)
			if (m->legs[i].state == LEG_EMPTY)
				break;
		if (i == MIRROR_MAX_LEGS) {
			snprintf(msg, len, "no free slot (%d legs at most)",
				 MIRROR_MAX_LEGS);
			ret = -ENOSPC;
			goto out_locked;
		}
		l = &m->legs[i];
		free(l->spec);
		l->spec = strdup(spec);
		if (!l->spec) {
			ret = -ENOMEM;
			goto out_locked;
		}
	}
	l = &m->legs[i];
	wait_unused(m, l);
	old = l->bdev;
	l->bdev = NULL;
	pthread_mutex_unlock(&m->lock);
	if (old)
		dm_bdev_close(old);
	ret = open_leg(m, l);
	if (ret) {
		snprintf(msg, len, "%s: %s", l->spec, mirror_strerror(-ret));
		pthread_mutex_lock(&m->lock);
		if (l->state == LEG_EMPTY) {
			free(l->spec);
			l->spec = NULL;
		}
		goto out_locked;
	}
	if (meta_room(l->bdev) < m->data_sectors) {
		snprintf(msg, len, "%s is smaller than the mirror", l->spec);
		dm_bdev_close(l->bdev);
		l->bdev = NULL;
		ret = -ENOSPC;
		goto out;
	}
	ret = meta_read(m, l->bdev, &meta);
	need = ret ? NEED_ALL : leg_need(m, &meta, false);
	/* Whatever it holds, the leg's own writes lose to the mirror's. */
	ret = meta_write(m, (unsigned int)i, 0, false);
	if (ret) {
		snprintf(msg, len, "%s: writing its superblock: %s", l->spec,
			 mirror_strerror(-ret));
		goto out;
	}
	/* From here on it takes every write; what it missed is what the
	 * log holds now (the log keeps every write while degraded). */
	pthread_mutex_lock(&m->lock);
	if (need == NEED_LOG)
		need_from_log(m, l);
	else
		need_all(m, l);
	l->state = LEG_RESYNCING;
	l->err = 0;
	pthread_mutex_unlock(&m->lock);
	snprintf(msg, len,
		 "leg %d (%s) added: resyncing %" PRIu64 " of %" PRIu64
		 " regions",
		 i, l->spec, l->need_count, m->nr_regions);
	mirror_event("%s", msg);
	ret = 0;
	goto out;
out_locked:
	pthread_mutex_unlock(&m->lock);
out:
	pthread_mutex_unlock(&m->meta_lock);
	daemon_kick(m);
	return ret;
}

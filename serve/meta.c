// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The superblock at the end of every leg (md's metadata 1.0 place, so a
 * leg alone still holds a file system at offset 0) and the generations it
 * carries.  A generation is a random number replaced whenever a leg fails
 * while the others go on taking writes; the old one moves to a history.
 * A leg whose generation is in another's history is stale; two legs
 * neither of whose generations is in the other's history both took
 * writes the other lacks: split brain.
 *
 * Layout, little-endian, in the leg's last whole 4 KiB:
 *   0  magic "DMIOMIR1"       8  version (1)       12  flags (1: clean)
 *  16  mirror uuid (16)      32  data sectors     40  generation
 *  48  events                56  run id           64  history length
 *  68  legs in the mirror    72  history[16], newest first
 * 200  FNV-1a of 0..199
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "mirror.h"

#define META_MAGIC "DMIOMIR1"
#define META_SUM   200

void random_bytes(void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n <= 0)
			continue; /* EINTR; the pool is ready after boot */
		p += n;
		len -= (size_t)n;
	}
}

static uint64_t fnv1a(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (len--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

static void put64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static void put32(unsigned char *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static sector_t meta_sector(struct block_device *bdev)
{
	return (dm_bdev_nr_sectors(bdev) & ~(sector_t)7) -
	       (MIRROR_META_BYTES >> SECTOR_SHIFT);
}

static int meta_io(struct mirror *m, struct block_device *bdev, unsigned int op,
		   void *buf)
{
	int err = 0;
	struct io_region where = {bdev, meta_sector(bdev),
				  MIRROR_META_BYTES >> SECTOR_SHIFT};
	struct dm_io_request req = {
		.bi_opf = op,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = m->io,
		.region_errors = &err,
	};
	int ret = dm_io(&req, 1, &where, NULL);

	return ret == -EIO && err ? err : ret;
}

int meta_read(struct mirror *m, struct block_device *bdev,
	      struct leg_meta *meta)
{
	unsigned char *b = aligned_alloc(4096, MIRROR_META_BYTES);
	unsigned int i;
	int ret;

	memset(meta, 0, sizeof(*meta));
	if (!b)
		return -ENOMEM;
	ret = meta_io(m, bdev, DM_IO_OP_READ, b);
	if (ret || memcmp(b, META_MAGIC, 8) || get32(b + 8) != 1 ||
	    get64(b + META_SUM) != fnv1a(b, META_SUM))
		goto out;
	meta->valid = true;
	meta->clean = get32(b + 12) & 1;
	memcpy(meta->set_uuid, b + 16, 16);
	meta->data_sectors = get64(b + 32);
	meta->gen = get64(b + 40);
	meta->events = get64(b + 48);
	meta->run_id = get64(b + 56);
	meta->nr_history = get32(b + 64);
	meta->nr_legs = get32(b + 68);
	if (meta->nr_history > MIRROR_HISTORY)
		meta->nr_history = MIRROR_HISTORY;
	for (i = 0; i < meta->nr_history; i++)
		meta->history[i] = get64(b + 72 + 8 * i);
out:
	free(b);
	return ret;
}

/* Write leg @i's superblock (durable on return) with generation @gen:
 * the mirror's for a leg in sync, 0 for one still being resynced. */
int meta_write(struct mirror *m, unsigned int i, uint64_t gen, bool clean)
{
	unsigned char *b = aligned_alloc(4096, MIRROR_META_BYTES);
	unsigned int k;
	int ret;

	if (!b)
		return -ENOMEM;
	memset(b, 0, MIRROR_META_BYTES);
	memcpy(b, META_MAGIC, 8);
	put32(b + 8, 1);
	put32(b + 12, clean);
	memcpy(b + 16, m->set_uuid, 16);
	put64(b + 32, m->data_sectors);
	put64(b + 40, gen);
	put64(b + 48, m->events);
	put64(b + 56, m->run_id);
	put32(b + 64, m->nr_history);
	put32(b + 68, m->nr_legs);
	for (k = 0; k < m->nr_history; k++)
		put64(b + 72 + 8 * k, m->history[k]);
	put64(b + META_SUM, fnv1a(b, META_SUM));
	ret = meta_io(m, m->legs[i].bdev, DM_IO_OP_WRITE | DM_IO_FUA, b);
	free(b);
	return ret;
}

/*
 * Record the generation on every leg in sync (m->meta_lock held).  A leg
 * that cannot keeps an older one and is failed: it is stale from now on.
 */
void meta_publish(struct mirror *m)
{
	unsigned int i, insync = 0;

	pthread_mutex_lock(&m->lock);
	m->nr_legs = 0;
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		m->nr_legs += m->legs[i].state != LEG_EMPTY;
		insync |= (m->legs[i].state == LEG_INSYNC) << i;
	}
	pthread_mutex_unlock(&m->lock);
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];
		int ret;

		if (!(insync & 1u << i))
			continue;
		ret = meta_write(m, i, m->gen, false);
		if (!ret)
			continue;
		pthread_mutex_lock(&m->lock);
		l->state = LEG_FAILED;
		l->err = ret;
		pthread_mutex_unlock(&m->lock);
		mirror_event("leg %u (%s) failed: %s", i, l->spec,
			     mirror_strerror(-ret));
	}
}

/* A new generation, recorded on every leg in sync before this returns
 * (m->meta_lock held; at start, the superblocks are written next). */
void meta_new_generation(struct mirror *m)
{
	memmove(m->history + 1, m->history,
		(MIRROR_HISTORY - 1) * sizeof(m->history[0]));
	m->history[0] = m->gen;
	if (m->nr_history < MIRROR_HISTORY)
		m->nr_history++;
	do
		random_bytes(&m->gen, sizeof(m->gen));
	while (!m->gen);
	m->events++;
	if (m->run_id)
		meta_publish(m);
}

/* How old @gen is: -1 current, N the Nth older one, -2 unknown. */
int meta_age(const struct mirror *m, uint64_t gen)
{
	unsigned int i;

	if (gen && gen == m->gen)
		return -1;
	for (i = 0; gen && i < m->nr_history; i++)
		if (m->history[i] == gen)
			return (int)i;
	return -2;
}

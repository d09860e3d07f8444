// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The dirty-region log, dm-raid1's: a region is marked dirty before the
 * first write that may leave the legs different, durably when the log is
 * a file (the bit reaches the disk before the data does), and cleared
 * lazily, by the daemon, once the region has seen no write for a whole
 * pass and every leg is in sync.  While a leg is failed nothing is
 * cleared, so the log holds every region the leg missed.
 *
 * File layout, little-endian: a 4 KiB header
 *   0  magic "DMIOLOG1"   8  version (1)        16  mirror uuid (16)
 *  32  region sectors    40  regions           48  data sectors
 *  56  run id            64  base generation   72  FNV-1a of 0..71
 * then the bitmap in 64-bit words: region r is bit r % 64 of word r / 64.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirror.h"

#define LOG_MAGIC  "DMIOLOG1"
#define LOG_HEADER 4096
#define LOG_SUM	   72

static uint64_t fnv1a(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (len--)
		h = (h ^ *p++) * 0x100000001b3ull;
	return h;
}

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static void put64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static int write_full(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Words [w0, w1] of the bitmap to the file (log lock held). */
static int write_words(struct dirty_log *log, uint64_t w0, uint64_t w1)
{
	uint64_t buf[512], w;

	while (w0 <= w1) {
		uint64_t n = w1 - w0 + 1 < 512 ? w1 - w0 + 1 : 512;
		int ret;

		for (w = 0; w < n; w++)
			buf[w] = htole64(log->bits[w0 + w]);
		ret = write_full(log->fd, buf, n * 8,
				 (off_t)(LOG_HEADER + w0 * 8));
		if (ret)
			return ret;
		w0 += n;
	}
	return 0;
}

/*
 * Open the core or on-disk log.  The file's bits are trusted only when it
 * belongs to this mirror, has the same geometry and was last used by the
 * same run as the source leg (@run_id): otherwise a run without the log
 * may have written regions it does not show.
 */
int log_open(struct mirror *m, uint64_t run_id)
{
	struct dirty_log *log = &m->log;
	unsigned char h[LOG_HEADER];
	uint64_t words;
	ssize_t n;

	log->nr_regions = m->nr_regions;
	log->region_sectors = m->region_sectors;
	log->data_sectors = m->data_sectors;
	memcpy(log->set_uuid, m->set_uuid, 16);
	words = bitmap_words(m->nr_regions);
	log->bits = calloc(words, 8);
	log->touched = calloc(words, 8);
	log->unsaved = calloc(bitmap_words(words), 8);
	if (!log->bits || !log->touched || !log->unsaved)
		return -ENOMEM;
	if (!m->opt.log_path)
		return 0;
	log->path = strdup(m->opt.log_path);
	if (!log->path)
		return -ENOMEM;
	log->fd = open(log->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (log->fd < 0) {
		mirror_event("log %s: %s", log->path, mirror_strerror(errno));
		return -errno;
	}
	n = pread(log->fd, h, sizeof(h), 0);
	log->valid = n == sizeof(h) && !memcmp(h, LOG_MAGIC, 8) &&
		     get64(h + LOG_SUM) == fnv1a(h, LOG_SUM) &&
		     !memcmp(h + 16, m->set_uuid, 16) &&
		     get64(h + 32) == m->region_sectors &&
		     get64(h + 40) == m->nr_regions && run_id &&
		     get64(h + 56) == run_id;
	if (log->valid) {
		uint64_t w;

		log->base_gen = get64(h + 64);
		n = pread(log->fd, log->bits, words * 8, LOG_HEADER);
		if (n != (ssize_t)(words * 8))
			log->valid = false;
		for (w = 0; w < words; w++)
			log->bits[w] = le64toh(log->bits[w]);
	}
	if (!log->valid) {
		memset(log->bits, 0, words * 8);
		if (ftruncate(log->fd, 0) ||
		    ftruncate(log->fd, (off_t)(LOG_HEADER + words * 8)))
			return -errno;
	}
	return 0;
}

/* The header, durable on return: a new run id and the base generation. */
int log_write_header(struct mirror *m)
{
	struct dirty_log *log = &m->log;
	unsigned char h[LOG_HEADER] = {0};
	int ret;

	if (log->fd < 0)
		return 0;
	memcpy(h, LOG_MAGIC, 8);
	h[8] = 1;
	memcpy(h + 16, log->set_uuid, 16);
	put64(h + 32, log->region_sectors);
	put64(h + 40, log->nr_regions);
	put64(h + 48, log->data_sectors);
	put64(h + 56, log->run_id);
	put64(h + 64, log->base_gen);
	put64(h + LOG_SUM, fnv1a(h, LOG_SUM));
	pthread_mutex_lock(&log->lock);
	ret = write_full(log->fd, h, sizeof(h), 0);
	if (!ret && fdatasync(log->fd))
		ret = -errno;
	pthread_mutex_unlock(&log->lock);
	return ret;
}

/*
 * Mark regions @first..@last dirty before they are written.  Returns once
 * the bits are on disk (a core log: at once), or the log file's errno.
 * The lock is held through the sync so that a writer finding its bits
 * already set cannot overtake the sync of the writer that set them.
 */
int log_mark(struct mirror *m, uint64_t first, uint64_t last)
{
	struct dirty_log *log = &m->log;
	uint64_t r, w0 = UINT64_MAX, w1 = 0;
	int ret = 0;

	pthread_mutex_lock(&log->lock);
	for (r = first; r <= last; r++) {
		bit_set(log->touched, r);
		if (bit_test(log->bits, r))
			continue;
		bit_set(log->bits, r);
		if (r / 64 < w0)
			w0 = r / 64;
		w1 = r / 64;
	}
	if (w0 != UINT64_MAX) {
		log->marks++;
		if (log->fd >= 0) {
			ret = write_words(log, w0, w1);
			if (!ret && fdatasync(log->fd))
				ret = -errno;
			log->syncs++;
		}
	}
	pthread_mutex_unlock(&log->lock);
	if (ret)
		mirror_event("log %s: %s", log->path, mirror_strerror(-ret));
	return ret;
}

/*
 * The daemon's pass: while every leg is in sync, clear regions with no
 * write in flight and none since the last pass.  The file catches up
 * without a sync: a bit left set on disk costs a resync, never data.
 */
void log_clean(struct mirror *m)
{
	struct dirty_log *log = &m->log;
	uint64_t r, words = bitmap_words(log->nr_regions), w;
	bool cleared = false;

	pthread_mutex_lock(&m->lock);
	pthread_mutex_lock(&log->lock);
	if (mirror_healthy_locked(m)) {
		for (r = 0; r < log->nr_regions; r++) {
			if (!bit_test(log->bits, r) || m->pending[r] ||
			    bit_test(log->touched, r))
				continue;
			bit_clear(log->bits, r);
			bit_set(log->unsaved, r / 64);
			cleared = true;
		}
	}
	memset(log->touched, 0, words * 8);
	pthread_mutex_unlock(&m->lock);
	if (cleared && log->fd >= 0)
		for (w = 0; w < words; w++)
			if (bit_test(log->unsaved, w)) {
				bit_clear(log->unsaved, w);
				write_words(log, w, w);
			}
	pthread_mutex_unlock(&log->lock);
}

uint64_t log_dirty_count(struct mirror *m)
{
	struct dirty_log *log = &m->log;
	uint64_t w, n = 0;

	pthread_mutex_lock(&log->lock);
	for (w = 0; w < bitmap_words(log->nr_regions); w++)
		n += (uint64_t)__builtin_popcountll(log->bits[w]);
	pthread_mutex_unlock(&log->lock);
	return n;
}

void log_snapshot(struct mirror *m, uint64_t *into)
{
	pthread_mutex_lock(&m->log.lock);
	memcpy(into, m->log.bits, bitmap_words(m->log.nr_regions) * 8);
	pthread_mutex_unlock(&m->log.lock);
}

/* At shutdown, with no I/O left: a healthy mirror leaves a clean log. */
void log_close(struct mirror *m, bool save, bool clean)
{
	struct dirty_log *log = &m->log;
	uint64_t words = bitmap_words(log->nr_regions);

	if (log->fd >= 0 && save) {
		if (clean) {
			memset(log->bits, 0, words * 8);
			log->base_gen = m->gen;
		}
		if (words)
			write_words(log, 0, words - 1);
		log_write_header(m);
	}
	if (log->fd >= 0)
		close(log->fd);
	log->fd = -1;
	free(log->bits);
	free(log->touched);
	free(log->unsaved);
	free(log->path);
	log->bits = log->touched = log->unsaved = NULL;
}

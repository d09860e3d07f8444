// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio copy with "-": standard input as the source, written to every
 * destination with one dm_io() per chunk, or standard output as the only
 * destination of a region read chunk by chunk.  A stream has no size
 * until it ends, so destination files grow as the data comes (and end
 * where it ends); other destinations must be large enough.  The results
 * land where transfer() puts them, so that the report is the same.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmio.h"

#define CHUNK_BYTES (4u << 20) /* a whole number of any device's blocks */
#define GROW_BYTES  (64ull << 20)

/* How a destination of a stream is doing beyond struct target. */
struct sink {
	bool grows;	     /* a regular file that may grow */
	bool grown;	     /* it did: end it where the data ends */
	uint64_t orig_bytes; /* its size before the copy */
	unsigned int unit;   /* its logical block size */
};

static void *alloc_buffer(size_t len)
{
	void *buf = NULL;

	return posix_memalign(&buf, DM_PAGE_SIZE, len) ? NULL : buf;
}

/* Read up to @len bytes, as many as there are before the end; returns how
 * many, or a negative errno.  A signal ends it with what it has. */
static ssize_t read_full(int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, buf + got, len - got);
		if (n == 0)
			break;
		if (n < 0 && errno == EINTR && !interrupted)
			continue;
		if (n < 0)
			return got ? (ssize_t)got : -errno;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int write_full(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len) {
		n = write(fd, buf, len);
		if (n < 0 && errno == EINTR && !interrupted)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int sync_io(struct clients *c, unsigned int opf, struct io_region *where,
		   unsigned int nr, void *buf, int *errs)
{
	struct dm_io_request req = {
		.bi_opf = opf,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = c->io,
		.region_errors = errs,
	};
	unsigned long bits = 0;

	return dm_io(&req, nr, where, &bits);
}

/* Make the file of @t hold @bytes from its start, growing it (and opening
 * its device again, since a device's size is fixed when it is opened). */
static int grow(struct target *t, struct sink *s, uint64_t bytes,
		unsigned int flags)
{
	uint64_t have = BYTES(dm_bdev_nr_sectors(t->bdev));
	uint64_t size = have + GROW_BYTES > bytes ? have + GROW_BYTES : bytes;
	int ret;

	if (size > INT64_MAX || truncate(t->spec, (off_t)size))
		return size > INT64_MAX ? -EFBIG : -errno;
	s->grown = true;
	ret = dm_bdev_close(t->bdev);
	t->bdev = NULL;
	return ret ? ret : target_open(t, flags);
}

/* Write the @len bytes at @buf, @off bytes into the stream, to every
 * healthy destination: whole blocks with one dm_io(), then the last
 * partial block of each by itself, read first so that what follows the
 * stream's end on the destination stays as it was. */
static void write_chunk(struct clients *c, struct target *dst, struct sink *s,
			unsigned int nr, char *buf, uint64_t off, size_t len,
			unsigned int opf, unsigned int flags, void *block)
{
	struct io_region where[DM_KCOPYD_MAX_REGIONS];
	int errs[DM_KCOPYD_MAX_REGIONS];
	unsigned int map[DM_KCOPYD_MAX_REGIONS], n = 0, unit = 512, i;
	size_t body, tail, blk;
	uint64_t end;
	int ret;

	for (i = 0; i < nr; i++) {
		struct target *t = &dst[i];

		if (!t->bdev || t->err)
			continue;
		end = BYTES(t->sector) + off +
		      (len + s[i].unit - 1) / s[i].unit * s[i].unit;
		if (t->has_count && end > BYTES(t->sector + t->count))
			t->err = -ENOSPC;
		else if (end > BYTES(dm_bdev_nr_sectors(t->bdev)))
			t->err = s[i].grows ? grow(t, &s[i], end, flags)
					    : -ENOSPC;
		if (!t->err && s[i].unit > unit)
			unit = s[i].unit;
	}
	body = len / unit * unit;
	for (i = 0; body && i < nr; i++) {
		if (!dst[i].bdev || dst[i].err)
			continue;
		where[n] = (struct io_region){
			dst[i].bdev, dst[i].sector + (off >> SECTOR_SHIFT),
			body >> SECTOR_SHIFT};
		map[n++] = i;
	}
	if (n) {
		memset(errs, 0, sizeof(errs));
		ret = sync_io(c, opf, where, n, buf, errs);
		for (i = 0; i < n; i++) {
			if (ret && ret != -EIO)
				errs[i] = ret;
			if (errs[i])
				dst[map[i]].err = errs[i];
			else
				dst[map[i]].written += body;
		}
	}
	tail = len - body;
	for (i = 0; tail && i < nr; i++) {
		struct target *t = &dst[i];
		struct io_region w = {t->bdev, 0, 0};

		if (!t->bdev || t->err)
			continue;
		blk = (tail + s[i].unit - 1) / s[i].unit * s[i].unit;
		w.sector = t->sector + ((off + body) >> SECTOR_SHIFT);
		w.count = blk >> SECTOR_SHIFT;
		ret = sync_io(c, DM_IO_OP_READ, &w, 1, block, errs);
		if (!ret) {
			memcpy(block, buf + body, tail);
			ret = sync_io(c, opf, &w, 1, block, errs);
		}
		if (ret)
			t->err = ret == -EIO && errs[0] ? errs[0] : ret;
		else
			t->written += tail;
	}
}

/* Standard input to every destination. */
static void from_stdin(struct clients *c, struct target *src,
		       struct target *dst, unsigned int nr,
		       const struct transfer_opts *o, unsigned int flags,
		       bool truncate_files, struct progress *pg,
		       struct transfer_result *res)
{
	unsigned int opf =
		DM_IO_OP_WRITE | (o->durability == DURABLE_FUA ? DM_IO_FUA : 0);
	struct sink s[DM_KCOPYD_MAX_REGIONS] = {0};
	char *buf = alloc_buffer(CHUNK_BYTES);
	void *block = alloc_buffer(1u << 16);
	uint64_t off = 0, end;
	bool stopped = false;
	struct stat st;
	unsigned int i;
	ssize_t n;

	for (i = 0; i < nr; i++) {
		s[i].unit = dst[i].bdev
				    ? dm_bdev_logical_block_size(dst[i].bdev)
				    : 512;
		s[i].grows = target_is_path(&dst[i]) && !dst[i].has_count &&
			     !stat(dst[i].spec, &st) && S_ISREG(st.st_mode);
		s[i].orig_bytes = s[i].grows ? (uint64_t)st.st_size : 0;
	}
	if (!buf || !block)
		res->read_err = -ENOMEM;
	while (!res->read_err && !interrupted && !stopped) {
		n = read_full(STDIN_FILENO, buf, CHUNK_BYTES);
		if (n <= 0) {
			res->read_err = (int)n;
			break;
		}
		res->started = true;
		write_chunk(c, dst, s, nr, buf, off, (size_t)n, opf, flags,
			    block);
		off += (uint64_t)n;
		res->bytes = off;
		progress_update(pg, off);
		stopped = true; /* unless a destination is left */
		for (i = 0; i < nr; i++)
			stopped &= !dst[i].bdev || dst[i].err;
		for (i = 0; o->stop_on_error && i < nr; i++)
			stopped |= dst[i].err != 0;
		if ((size_t)n < CHUNK_BYTES)
			break;
	}
	src->count = (off + 511) >> SECTOR_SHIFT;
	for (i = 0; i < nr; i++) {
		struct target *t = &dst[i];

		end = BYTES(t->sector) + off;
		/* A file ends where the stream does, or where it did. */
		if (t->bdev && (s[i].grown || truncate_files) &&
		    truncate(t->spec,
			     (off_t)(truncate_files || end > s[i].orig_bytes
					     ? end
					     : s[i].orig_bytes)) &&
		    !t->err)
			t->err = -errno;
		t->good_from = 0;
		t->good_to = t->written >> SECTOR_SHIFT;
		/* Healthy destinations still missed the rest. */
		if (!t->err && t->bdev &&
		    (interrupted || stopped || res->read_err))
			t->err = interrupted ? -EINTR : -ECANCELED;
	}
	free(block);
	free(buf);
}

/*
 * Read @len sectors of @src at @pos (into the region) into @buf; when the
 * read fails, block by block, zeroing unreadable blocks with --noerror or
 * else stopping before the first.  Returns how many sectors of @buf hold
 * what the stream should receive.
 */
static sector_t read_chunk(struct clients *c, struct target *src, sector_t pos,
			   sector_t len, char *buf,
			   const struct transfer_opts *o,
			   struct transfer_result *res)
{
	struct io_region w = {src->bdev, src->sector + pos, len};
	sector_t unit = dm_bdev_logical_block_size(src->bdev) >> SECTOR_SHIFT;
	int err = 0, ret;
	sector_t q, got;

	ret = sync_io(c, DM_IO_OP_READ, &w, 1, buf, &err);
	if (!ret)
		return len;
	for (q = 0; q < len && !interrupted; q += unit) {
		w = (struct io_region){src->bdev, src->sector + pos + q, unit};
		ret = sync_io(c, DM_IO_OP_READ, &w, 1, buf + BYTES(q), &err);
		if (!ret)
			continue;
		if (!res->read_err)
			res->read_err = ret == -EIO && err ? err : ret;
		note_unreadable(res, (struct sector_range){pos + q, unit});
		if (o->noerror) {
			memset(buf + BYTES(q), 0, BYTES(unit));
			continue;
		}
		/* The copy stops here; the report also names the blocks
		 * after it that cannot be read either. */
		for (got = q + unit; got < len && !interrupted; got += unit) {
			w.sector = src->sector + pos + got;
			if (!sync_io(c, DM_IO_OP_READ, &w, 1, buf + BYTES(q),
				     &err))
				break;
			note_unreadable(res,
					(struct sector_range){pos + got, unit});
		}
		return q;
	}
	return q;
}

/* A region to standard output, the only destination. */
static void to_stdout(struct clients *c, struct target *src, struct target *out,
		      const struct transfer_opts *o, struct progress *pg,
		      struct transfer_result *res)
{
	char *buf = alloc_buffer(CHUNK_BYTES);
	sector_t pos = 0, len, got;
	unsigned int i;
	int ret;

	/* A reader that goes away is a failed destination, not a kill. */
	signal(SIGPIPE, SIG_IGN);
	if (!buf)
		res->read_err = -ENOMEM;
	while (buf && pos < src->count && !interrupted && !out->err) {
		len = src->count - pos < (CHUNK_BYTES >> SECTOR_SHIFT)
			      ? src->count - pos
			      : CHUNK_BYTES >> SECTOR_SHIFT;
		got = read_chunk(c, src, pos, len, buf, o, res);
		res->started = true;
		ret = write_full(STDOUT_FILENO, buf, BYTES(got));
		if (ret)
			out->err = ret;
		else
			out->written += BYTES(got);
		pos += got;
		progress_update(pg, BYTES(pos));
		if (got < len)
			break;
	}
	/* Bytes read: what went out, less the zeroes of --noerror. */
	res->bytes = BYTES(pos);
	for (i = 0; o->noerror && i < res->nr_bad; i++)
		res->bytes -= BYTES(res->bad[i].count);
	/* Regular files and block devices behind stdout can be flushed;
	 * pipes cannot, and need not be. */
	if (!out->err && o->durability == DURABLE_FLUSH && res->started &&
	    fdatasync(STDOUT_FILENO) && errno != EINVAL && errno != EROFS)
		out->err = -errno;
	out->good_from = 0;
	out->good_to = out->written >> SECTOR_SHIFT;
	if (!out->err && pos < src->count)
		out->err = interrupted ? -EINTR : -ECANCELED;
	free(buf);
}

/* A stream may keep read() or write() waiting for as long as its other
 * end likes: Ctrl-C must end the wait rather than restart it. */
static void interruptible(void)
{
	const int sigs[] = {SIGINT, SIGTERM};
	struct sigaction sa;
	unsigned int i;

	for (i = 0; i < 2; i++) {
		sigaction(sigs[i], NULL, &sa);
		sa.sa_flags &= ~SA_RESTART;
		sigaction(sigs[i], &sa, NULL);
	}
}

void stream_transfer(struct clients *c, struct target *src, struct target *dst,
		     unsigned int nr, const struct transfer_opts *o,
		     unsigned int flags, bool truncate_files,
		     struct progress *pg, struct transfer_result *res)
{
	memset(res, 0, sizeof(*res));
	interruptible();
	if (src->stream) {
		from_stdin(c, src, dst, nr, o, flags, truncate_files, pg, res);
		if (o->durability == DURABLE_FLUSH && res->started) {
			progress_phase(pg, "flushing", res->bytes);
			flush_destinations(c, dst, nr);
		}
	} else {
		to_stdout(c, src, dst, o, pg, res);
	}
}

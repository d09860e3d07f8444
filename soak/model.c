/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * soak - the model: stores and their views, what every sector must hold, and
 * the read-backs that compare the devices with it.
 */
#include "soak.h"

/* ---- the model ---- */

struct store stores[MAX_STORES];
unsigned int nstores;
char workdir[256];

/* ---- data patterns ---- */

/* Every 512-byte block starts with the request id and the block index, so
 * that a misplaced or stale sector says where it came from. */
void gen_data(uint8_t *buf, size_t len, uint64_t id, uint64_t first)
{
	uint64_t x = (id * 0x9e3779b97f4a7c15ull) ^
		     (first * 0xd1b54a32d192ed03ull) ^ 0x2545f4914f6cdd1dull;
	size_t off;
	unsigned int i;

	for (off = 0; off < len; off += SECTOR) {
		uint64_t w[SECTOR / 8];

		w[0] = id;
		w[1] = (MAGIC << 32) | ((first + off / SECTOR) & 0xffffffffu);
		for (i = 2; i < SECTOR / 8; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w[i] = x;
		}
		memcpy(buf + off, w, SECTOR);
	}
}

bool all_byte(const uint8_t *p, size_t n, uint8_t b)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != b)
			return false;
	return true;
}

void describe_sector(const uint8_t *p, char *out, size_t size)
{
	uint64_t w[2];

	memcpy(w, p, sizeof(w));
	if (all_byte(p, SECTOR, 0))
		snprintf(out, size, "zeroes");
	else if (w[1] >> 32 == MAGIC && w[0] >> 48 == 0xffff)
		snprintf(out, size, "initial content of sector %" PRIu64,
			 w[1] & 0xffffffffu);
	else if (w[1] >> 32 == MAGIC)
		snprintf(out, size, "block %" PRIu64 " of request %016" PRIx64,
			 w[1] & 0xffffffffu, w[0]);
	else if (all_byte(p, SECTOR, READ_FILL))
		snprintf(out, size, "the read buffer's fill (never written)");
	else
		snprintf(out, size,
			 "unrecognised bytes %016" PRIx64 " %016" PRIx64, w[0],
			 w[1]);
}

/* ---- stores and views ---- */

bool store_get(struct store *st)
{
	atomic_fetch_add(&st->inflight, 1);
	if (atomic_load(&st->state) == S_OFFLINE) {
		atomic_fetch_sub(&st->inflight, 1);
		return false;
	}
	return true;
}

void store_put(struct store *st)
{
	atomic_fetch_sub(&st->inflight, 1);
}

bool view_get(struct view *v)
{
	atomic_fetch_add(&v->inflight, 1);
	if (atomic_load(&v->state) != V_ACTIVE) {
		atomic_fetch_sub(&v->inflight, 1);
		return false;
	}
	return true;
}

void view_put(struct view *v)
{
	atomic_fetch_sub(&v->inflight, 1);
}

bool store_is_nbd(const struct store *st)
{
	return st->kind == K_NBD_MEM || st->kind == K_NBD_FILE;
}

int view_open(struct view *v)
{
	struct store *st = v->st;
	struct dm_bdev_info info;

	if (v->is_fault || v->f.drop_len) {
		char opts[512];

		faults_string(&v->f, opts, sizeof(opts));
		snprintf(v->spec, sizeof(v->spec), "fault:%s:%s", opts,
			 st->dev);
	} else {
		snprintf(v->spec, sizeof(v->spec), "%s", st->dev);
	}
	v->bdev = dm_bdev_open(v->spec, v->open_flags);
	if (!v->bdev)
		return -errno;
	if (dm_bdev_get_info(v->bdev, &info))
		fail("dm_bdev_get_info(%s) failed", v->spec);
	if (info.nr_sectors != st->nr_sectors)
		fail("%s: %" PRIu64 " sectors, expected %" PRIu64, v->spec,
		     (uint64_t)info.nr_sectors, st->nr_sectors);
	v->lbs = info.logical_block_size;
	v->direct = info.flags & DM_BDEV_DIRECT;
	v->rdonly = info.flags & DM_BDEV_RDONLY;
	v->contig = store_is_nbd(st);
	v->discard_max = info.discard_max;
	if (v->lbs > st->lbs)
		st->lbs = v->lbs;
	if (store_is_nbd(st)) {
		int ret = dm_bdev_set_timeout(v->bdev, NBD_TIMEOUT_MS);

		if (ret)
			fail("dm_bdev_set_timeout(%s): %s", v->spec,
			     errname(ret));
	}
	atomic_store(&v->chunks, 0);
	v->opens++;
	if (v->is_fault)
		atomic_fetch_add(&g.fault_opens, 1);
	return 0;
}

void view_close(struct view *v)
{
	int ret = dm_bdev_close(v->bdev);

	if (ret)
		fail("dm_bdev_close(%s) = %s with none of our I/O in flight",
		     v->spec, errname(ret));
	v->bdev = NULL;
}

void add_view(struct store *st, const char *label, unsigned int flags,
	      bool is_fault)
{
	struct view *v = &st->views[st->nviews];
	int ret;

	v->st = st;
	snprintf(v->label, sizeof(v->label), "%s", label);
	v->open_flags = flags;
	v->is_fault = is_fault;
	if (is_fault)
		random_faults(&ctl_rng, st, &v->f);
	atomic_init(&v->state, V_ACTIVE);
	ret = view_open(v);
	if (ret) {
		if (flags & DM_BDEV_DIRECT && !is_fault && ret == -EINVAL) {
			printf("  note: %s cannot be opened O_DIRECT here: no "
			       "%s view\n",
			       st->name, label);
			return;
		}
		fail("dm_bdev_open(%s, %#x): %s", v->spec, flags, errname(ret));
	}
	st->nviews++;
}

/* ---- setting stores up ---- */

unsigned int total_workers(void)
{
	return opt.workers + opt.seed_workers + 1; /* + the churn thread */
}

static void layout_slots(struct store *st)
{
	unsigned int w, i, nw = total_workers();
	unsigned int nsmall = nw * SMALL_PER_WORKER;

	st->nslots = nw + nsmall;
	st->slots = calloc(st->nslots, sizeof(*st->slots));
	if (!st->slots)
		fail("out of memory");
	for (w = 0; w < nw; w++)
		st->slots[w] = (struct slot){(uint64_t)w * BIG_SLOT, BIG_SLOT,
					     w, true, false};
	for (i = 0; i < nsmall; i++)
		st->slots[nw + i] = (struct slot){
			(uint64_t)nw * BIG_SLOT + (uint64_t)i * SMALL_SLOT,
			SMALL_SLOT, i % nw, false, false};
	st->nr_sectors =
		(uint64_t)nw * BIG_SLOT + (uint64_t)nsmall * SMALL_SLOT;
	st->data = malloc(st->nr_sectors * SECTOR);
	st->known = malloc(st->nr_sectors);
	st->last = calloc(st->nr_sectors, sizeof(uint64_t));
	if (!st->data || !st->known || !st->last)
		fail("out of memory");
}

/* The initial content of a store: every sector says which it is. */
void model_init(struct store *st, bool zero)
{
	uint64_t s;

	if (zero)
		memset(st->data, 0, st->nr_sectors * SECTOR);
	else
		for (s = 0; s < st->nr_sectors; s += 2048)
			gen_data(st->data + s * SECTOR,
				 min_u64(2048, st->nr_sectors - s) * SECTOR,
				 INIT_ID | (uint64_t)(st - stores) << 32, s);
	memset(st->known, 1, st->nr_sectors);
	memset(st->last, 0, st->nr_sectors * sizeof(uint64_t));
}

void write_backing(struct store *st)
{
	int fd = open(st->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t len = st->nr_sectors * SECTOR, off = 0;

	if (fd < 0)
		fail("create %s: %s", st->path, strerror(errno));
	while (off < len) {
		ssize_t n = pwrite(fd, st->data + off, len - off, (off_t)off);

		if (n <= 0)
			fail("write %s: %s", st->path, strerror(errno));
		off += (size_t)n;
	}
	close(fd);
}

struct store *new_store(const char *name, enum store_kind kind)
{
	struct store *st = &stores[nstores++];

	snprintf(st->name, sizeof(st->name), "%s", name);
	st->kind = kind;
	st->loop.fd = -1;
	st->lbs = 512;
	atomic_init(&st->state, S_ONLINE);
	layout_slots(st);
	model_init(st, false);
	snprintf(st->path, sizeof(st->path), "%s/%s.img", workdir, name);
	return st;
}

void setup_file(const char *name, bool with_direct)
{
	struct store *st = new_store(name, K_FILE);

	st->discard_zeroes = true;
	write_backing(st);
	snprintf(st->dev, sizeof(st->dev), "%s", st->path);
	add_view(st, "plain", 0, false);
	if (with_direct)
		add_view(st, "direct", DM_BDEV_DIRECT, false);
	add_view(st, "rdonly", DM_BDEV_RDONLY, false);
	add_view(st, "fault1", 0, true);
	add_view(st, "fault2", with_direct ? DM_BDEV_DIRECT : 0, true);
}

bool setup_loop(const char *name, unsigned int lbs)
{
	struct store *st;
	char why[128];
	int bfd, err;

	if (geteuid() != 0) {
		printf("  note: not root: no loop devices (%s skipped)\n",
		       name);
		return false;
	}
	if (!tl_loop_available(why, sizeof(why))) {
		printf("  note: %s: no loop devices (%s skipped)\n", why, name);
		return false;
	}
	st = new_store(name, K_LOOP);
	st->is_blk = true;
	write_backing(st);
	bfd = open(st->path, O_RDWR | O_CLOEXEC);
	if (bfd < 0)
		fail("open %s: %s", st->path, strerror(errno));
	/* Detached by the kernel when our descriptors close, even if we
	 * crash. */
	err = tl_loop_attach(bfd, lbs, &st->loop);
	close(bfd);
	if (err)
		fail("cannot set up a loop device for %s: %s", name,
		     strerror(-err));
	snprintf(st->dev, sizeof(st->dev), "%s", st->loop.path);
	st->lbs = lbs;
	add_view(st, "plain", 0, false);
	add_view(st, "buffered", DM_BDEV_BUFFERED, false);
	add_view(st, "rdonly", DM_BDEV_RDONLY, false);
	add_view(st, "fault1", 0, true);
	add_view(st, "fault2", DM_BDEV_BUFFERED, true);
	return true;
}

/* ---- reading back ---- */

static unsigned int slot_owner(const struct store *st, uint64_t s)
{
	unsigned int nw = total_workers();

	if (s < (uint64_t)nw * BIG_SLOT)
		return (unsigned int)(s / BIG_SLOT);
	(void)st;
	return (unsigned int)((s - (uint64_t)nw * BIG_SLOT) / SMALL_SLOT) % nw;
}

/* Compare @count sectors read at @start of @st with the model; adopt
 * sectors the model does not know. */
void compare_model(struct worker *w, struct store *st, uint64_t start,
		   uint64_t count, const uint8_t *buf, uint64_t id,
		   const char *why)
{
	uint64_t s;

	for (s = start; s < start + count; s++) {
		const uint8_t *p = buf + (s - start) * SECTOR;
		uint8_t *m = st->data + s * SECTOR;

		if (!st->known[s]) {
			memcpy(m, p, SECTOR);
			st->known[s] = 1;
			w->st.adopted++;
			continue;
		}
		if (memcmp(m, p, SECTOR)) {
			char exp[128], got[128];

			describe_sector(m, exp, sizeof(exp));
			describe_sector(p, got, sizeof(got));
			fail_req(id, st->last[s],
				 "%s: %s sector %" PRIu64
				 " (slot owner: worker %u) holds %s; the model "
				 "says %s (last changed by request %016" PRIx64
				 ")",
				 why, st->name, s, slot_owner(st, s), got, exp,
				 st->last[s]);
		}
		w->st.bytes_verified += SECTOR;
	}
}

/* Read sectors [start, start+count) of @st (clamped to the slot) through
 * the plain view and compare with the model. */
void verify_range(struct worker *w, struct store *st, int slot, uint64_t start,
		  uint64_t count, uint64_t id, const char *why)
{
	const struct slot *s = &st->slots[slot];
	uint64_t al = st->lbs / SECTOR, end = start + count;
	unsigned int kills = atomic_load(&st->kills);
	bool dying = atomic_load(&st->state) != S_ONLINE;

	start = start < s->start ? s->start : start / al * al;
	end = end > s->start + s->len ? s->start + s->len
				      : (end + al - 1) / al * al;
	if (start < s->start)
		start = s->start;
	while (start < end) {
		uint64_t n = min_u64(end - start, VBUF_SECTORS);
		struct io_region where = {st->views[0].bdev, start, n};
		struct dm_io_request rq = {
			.bi_opf = DM_IO_OP_READ,
			.mem = {.type = DM_IO_KMEM, .ptr.addr = w->vbuf},
			.client = w->vclient,
		};
		unsigned long bits = 0;
		int err = 0, ret;

		rq.region_errors = &err;
		ret = dm_io(&rq, 1, &where, &bits);
		w->st.verify_reads++;
		if (ret) {
			if ((dying || atomic_load(&st->kills) != kills) &&
			    conn_errno(err))
				return; /* the server is going away */
			fail_req(id, 0,
				 "%s: verify read of %s@%" PRIu64 "+%" PRIu64
				 " failed: %s (region errno %s, bits %#lx)",
				 why, st->name, start, n, errname(ret),
				 errname(err), bits);
		}
		compare_model(w, st, start, n, w->vbuf, id, why);
		start += n;
	}
}

void model_set(struct store *st, uint64_t sector, uint64_t count,
	       const uint8_t *src, bool known, uint64_t id)
{
	uint64_t s;

	if (src)
		memcpy(st->data + sector * SECTOR, src, count * SECTOR);
	else if (known)
		memset(st->data + sector * SECTOR, 0, count * SECTOR);
	for (s = sector; s < sector + count; s++) {
		st->known[s] = known;
		st->last[s] = id;
	}
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * soak - the workload: memory buffers, requests built at random, their
 * submission and completion, sweeps, the seed API's reservations and the
 * churn thread.
 */
#include "soak.h"

/* ---- workers ---- */

struct worker workers[MAX_WORKERS];
unsigned int nworkers;

/* ---- memory buffers ---- */

static struct page *page_new(void)
{
	struct page *p = dm_page_alloc();

	if (!p)
		fail("dm_page_alloc: %s", strerror(errno));
	memset(dm_page_address(p), CANARY, PAGE);
	return p;
}

void mb_build(struct rng *r, struct membuf *m, int type, size_t len, bool big)
{
	size_t rem, i;

	memset(m, 0, sizeof(*m));
	m->type = type;
	m->len = len;
	switch (type) {
	case DM_IO_PAGE_LIST:
		m->pl_off = chance(r, 50)   ? 0
			    : chance(r, 50) ? SECTOR * (unsigned int)below(r, 8)
					    : (unsigned int)below(r, PAGE);
		m->npages =
			(unsigned int)((m->pl_off + len + PAGE - 1) / PAGE) +
			(chance(r, 20) ? 1 : 0);
		m->nodes = calloc(m->npages, sizeof(*m->nodes));
		m->pages = calloc(m->npages, sizeof(*m->pages));
		if (!m->nodes || !m->pages)
			fail("out of memory");
		for (i = 0; i < m->npages; i++) {
			m->pages[i] = page_new();
			m->nodes[i].page = m->pages[i];
			m->nodes[i].next =
				i + 1 < m->npages ? &m->nodes[i + 1] : NULL;
		}
		break;
	case DM_IO_BVEC: {
		/* Tiny entries now and then: more segments than IOV_MAX. */
		bool tiny = big && chance(r, 25);
		size_t cap = 0;

		for (rem = len; rem;) {
			unsigned int off, l, maxl;

			if (tiny)
				off = (unsigned int)below(r, 8) * SECTOR;
			else if (chance(r, 40))
				off = 0;
			else if (chance(r, 30))
				off = (unsigned int)below(r, 8) * SECTOR;
			else
				off = (unsigned int)below(r, PAGE);
			maxl = (unsigned int)min_u64(PAGE - off, rem);
			if (tiny)
				l = (unsigned int)min_u64(SECTOR, rem);
			else if (big || chance(r, 50))
				l = maxl;
			else
				l = 1 + (unsigned int)below(r, maxl);
			if (m->nbv + 2 > cap) {
				cap = cap ? cap * 2 : 16;
				m->bv = realloc(m->bv, cap * sizeof(*m->bv));
				m->pages = realloc(m->pages,
						   cap * sizeof(*m->pages));
				if (!m->bv || !m->pages)
					fail("out of memory");
			}
			m->pages[m->nbv] = page_new();
			m->bv[m->nbv] =
				(struct bio_vec){m->pages[m->nbv], l, off};
			m->nbv++;
			rem -= l;
		}
		m->npages = m->nbv;
		/* A terminating empty entry: harmless, and it would stop a
		 * planner that walked too far. */
		m->bv[m->nbv] = (struct bio_vec){NULL, 0, 0};
		break;
	}
	default: {
		size_t mis;

		m->rawlen = len + 2 * PAGE;
		if (posix_memalign((void **)&m->raw, PAGE, m->rawlen))
			fail("out of memory");
		memset(m->raw, CANARY, m->rawlen);
		mis = chance(r, 40)   ? PAGE
		      : chance(r, 50) ? SECTOR * (1 + below(r, 7))
				      : 1 + below(r, PAGE - 1);
		m->addr = m->raw + mis;
		break;
	}
	}
}

/* Copy between the buffer's data bytes and @contig. */
void mb_copy(struct membuf *m, uint8_t *contig, bool to_mem)
{
	size_t done = 0, n;
	unsigned int i;

	switch (m->type) {
	case DM_IO_PAGE_LIST: {
		size_t off = m->pl_off;

		for (i = 0; done < m->len; i++, off = 0) {
			uint8_t *p =
				(uint8_t *)dm_page_address(m->pages[i]) + off;

			n = min_u64(PAGE - off, m->len - done);
			if (to_mem)
				memcpy(p, contig + done, n);
			else
				memcpy(contig + done, p, n);
			done += n;
		}
		break;
	}
	case DM_IO_BVEC:
		for (i = 0; i < m->nbv; i++) {
			uint8_t *p =
				(uint8_t *)dm_page_address(m->bv[i].bv_page) +
				m->bv[i].bv_offset;

			n = m->bv[i].bv_len;
			if (to_mem)
				memcpy(p, contig + done, n);
			else
				memcpy(contig + done, p, n);
			done += n;
		}
		break;
	default:
		if (to_mem)
			memcpy(m->addr, contig, m->len);
		else
			memcpy(contig, m->addr, m->len);
	}
}

/* Nothing outside the data bytes was written. */
bool mb_canary_ok(const struct membuf *m)
{
	unsigned int i;

	switch (m->type) {
	case DM_IO_PAGE_LIST: {
		size_t end = m->pl_off + m->len;

		for (i = 0; i < m->npages; i++) {
			const uint8_t *p = dm_page_address(m->pages[i]);
			size_t a = i == 0 ? m->pl_off : 0;
			size_t b =
				end > (size_t)i * PAGE
					? min_u64(PAGE, end - (size_t)i * PAGE)
					: 0;

			if (b < a)
				b = a;
			if (!all_byte(p, a, CANARY) ||
			    !all_byte(p + b, PAGE - b, CANARY))
				return false;
		}
		return true;
	}
	case DM_IO_BVEC:
		for (i = 0; i < m->nbv; i++) {
			const uint8_t *p = dm_page_address(m->bv[i].bv_page);
			size_t b = m->bv[i].bv_offset + m->bv[i].bv_len;

			if (!all_byte(p, m->bv[i].bv_offset, CANARY) ||
			    !all_byte(p + b, PAGE - b, CANARY))
				return false;
		}
		return true;
	default:
		return all_byte(m->raw, (size_t)(m->addr - m->raw), CANARY) &&
		       all_byte(m->addr + m->len,
				m->rawlen - m->len - (size_t)(m->addr - m->raw),
				CANARY);
	}
}

static void mb_free(struct membuf *m)
{
	unsigned int i;

	for (i = 0; i < m->npages; i++)
		dm_page_free(m->pages[i]);
	free(m->pages);
	free(m->nodes);
	free(m->bv);
	free(m->raw);
	memset(m, 0, sizeof(*m));
}

static struct dm_io_memory mb_mem(const struct membuf *m)
{
	struct dm_io_memory mem = {.type = (enum dm_io_mem_type)m->type};

	switch (m->type) {
	case DM_IO_PAGE_LIST:
		mem.offset = m->pl_off;
		mem.ptr.pl = m->nodes;
		break;
	case DM_IO_BVEC:
		mem.ptr.bvec = m->bv;
		break;
	default:
		mem.ptr.addr = m->addr;
	}
	return mem;
}

/* ---- choosing where requests go ---- */

static int pick_slot(struct worker *w, struct store *st, bool big,
		     const struct req *r)
{
	unsigned int nw = total_workers(), k, first, i, j;

	if (big) {
		struct slot *s = &st->slots[w->idx];

		for (j = 0; j < r->nr; j++)
			if (r->e[j].st == st && r->e[j].slot == (int)w->idx)
				return -1;
		return s->busy ? -1 : (int)w->idx;
	}
	first = (unsigned int)below(&w->rng, SMALL_PER_WORKER);
	for (k = 0; k < SMALL_PER_WORKER; k++) {
		i = nw + w->idx + ((first + k) % SMALL_PER_WORKER) * nw;
		if (st->slots[i].busy)
			continue;
		for (j = 0; j < r->nr; j++)
			if (r->e[j].st == st && r->e[j].slot == (int)i)
				break;
		if (j == r->nr)
			return (int)i;
	}
	return -1;
}

static struct view *pick_view(struct rng *rg, struct store *st, unsigned int op)
{
	int tries;

	for (tries = 0; tries < 6; tries++) {
		struct view *v =
			&st->views[chance(rg, 35) ? 0 : below(rg, st->nviews)];

		bool rare = !chance(rg, 15);

		/* Only a view we hold is stable: the controller rewrites
		 * fault: views while nobody holds them. */
		if (!view_get(v))
			continue;
		if (v->f.drop_len || /* --self-test's own */
		    (v->rdonly && op != DM_IO_OP_READ && op != DM_IO_OP_FLUSH &&
		     rare)) {
			view_put(v);
			continue;
		}
		return v;
	}
	return NULL;
}

/* ---- building requests ---- */

void describe_req(struct worker *w, const struct req *r)
{
	static const char *const inv[] = {
		"read of 2 regions",  "unknown flag bit",
		"unknown op",	      "sector+count overflow",
		"FUA on a non-write", "page-list offset >= 4096",
		"0 or 65 regions",    "NULL buffer",
		"bad bvec entry",     "page list too short",
		"NULL bdev",	      "NULL client",
		"bad memory type",    "count<<9 overflow",
		"async without fn",   "seed rw 2"};
	struct hist *h;
	size_t n;
	unsigned int i;

	pthread_mutex_lock(&hist_lock);
	h = &w->hist[w->nhist++ % HIST];

	n = (size_t)snprintf(h->desc, sizeof(h->desc),
			     "%s%s %s %s%s%s%s %zuB:", r->seed ? "seed " : "",
			     r->op < NR_OPS ? op_names[r->op] : "op?",
			     r->async ? "async" : "sync",
			     r->op <= DM_IO_OP_WRITE ? mem_names[r->mb.type & 3]
						     : "-",
			     r->opf & DM_IO_FUA ? " FUA" : "",
			     r->opf & DM_IO_PREFLUSH ? " PREFLUSH" : "",
			     r->invalid ? " INVALID" : "", r->len);
	if (r->invalid)
		n += (size_t)snprintf(h->desc + n, sizeof(h->desc) - n, " (%s)",
				      inv[r->inv_kind]);
	for (i = 0; i < r->nr && n < sizeof(h->desc); i++)
		n += (size_t)snprintf(h->desc + n, sizeof(h->desc) - n,
				      " %s/%s@%" PRIu64 "+%" PRIu64 "%s",
				      r->e[i].st->name, r->e[i].v->label,
				      r->e[i].sector, r->e[i].count,
				      r->e[i].mode == E_MUST  ? "!"
				      : r->e[i].mode == E_MAY ? "?"
							      : "");
	h->id = r->id;
	pthread_mutex_unlock(&hist_lock);
}

void release_regions(struct req *r)
{
	unsigned int i;

	for (i = 0; i < r->nr; i++) {
		if (r->e[i].slot >= 0)
			r->e[i].st->slots[r->e[i].slot].busy = false;
		view_put(r->e[i].v);
		store_put(r->e[i].st);
	}
	r->nr = 0;
}

void free_req(struct req *r)
{
	mb_free(&r->mb);
	free(r->data);
	free(r);
}

/* Pick the regions: stores, views and slots. */
static void pick_regions(struct worker *w, struct req *r, unsigned int want)
{
	struct rng *rg = &w->rng;
	unsigned int i, tries;

	for (i = 0; i < want; i++) {
		for (tries = 0; tries < 8; tries++) {
			struct store *st = &stores[below(rg, nstores)];
			struct view *v;
			int slot = -1;

			if (!store_get(st))
				continue;
			v = pick_view(rg, st, r->op);
			if (!v) {
				store_put(st);
				continue;
			}
			if (r->op != DM_IO_OP_FLUSH) {
				slot = pick_slot(w, st, r->big, r);
				if (slot < 0) {
					view_put(v);
					store_put(st);
					continue;
				}
				st->slots[slot].busy = true;
			}
			r->e[r->nr] =
				(struct rexp){.st = st, .v = v, .slot = slot};
			r->nr++;
			break;
		}
	}
}

static struct req *build_req(struct worker *w, struct dm_io_client *client,
			     bool force_async)
{
	struct rng *rg = &w->rng;
	struct req *r = calloc(1, sizeof(*r));
	unsigned int i, want, al = 1, x;
	uint64_t cap = UINT64_MAX, n;

	if (!r)
		fail("out of memory");
	r->w = w;
	r->id = (uint64_t)(w->idx + 1) << 48 | ++w->seq;
	r->client = client;
	r->seed = w->kind == W_SEED;
	r->async = force_async || chance(rg, 50);
	atomic_init(&r->called, 0);
	x = (unsigned int)below(rg, 100);
	if (r->seed)
		r->op = x < 40 ? DM_IO_OP_READ : DM_IO_OP_WRITE;
	else
		r->op = x < 28	 ? DM_IO_OP_READ
			: x < 72 ? DM_IO_OP_WRITE
			: x < 77 ? DM_IO_OP_FLUSH
			: x < 88 ? DM_IO_OP_DISCARD
				 : DM_IO_OP_WRITE_ZEROES;
	r->invalid = chance(rg, 3);
	if (r->op == DM_IO_OP_WRITE && !r->seed) {
		if (chance(rg, 8))
			r->opf |= DM_IO_FUA;
		if (chance(rg, 8))
			r->opf |= DM_IO_PREFLUSH;
	}
	r->big = r->op != DM_IO_OP_FLUSH && chance(rg, 1);
	if (r->op == DM_IO_OP_READ)
		want = 1;
	else if (r->op == DM_IO_OP_WRITE)
		want = chance(rg, 30)	? 1
		       : chance(rg, 60) ? 2 + (unsigned int)below(rg, 2)
					: 4 + (unsigned int)below(rg, 5);
	else
		want = 1 + (unsigned int)below(rg, 4);
	if (r->big && want > nstores)
		want = nstores;
	pick_regions(w, r, want);
	if (!r->nr) {
		free(r);
		w->seq--;
		return NULL;
	}
	if (r->op == DM_IO_OP_FLUSH) {
		for (i = 0; i < r->nr; i++) {
			r->e[i].sector = below(rg, 64);
			r->e[i].count = below(rg, 16);
		}
		goto regions_done;
	}
	/* One length for every region: whole blocks for every view. */
	for (i = 0; i < r->nr; i++) {
		const struct slot *s = &r->e[i].st->slots[r->e[i].slot];

		al = (unsigned int)max_u64(al, r->e[i].v->lbs / SECTOR);
		al = (unsigned int)max_u64(al, r->e[i].st->lbs / SECTOR);
		cap = min_u64(cap, s->len - 2 * GUARD);
	}
	if (r->big)
		n = cap / 2 + below(rg, cap / 2 + 1);
	else if (chance(rg, 65))
		n = 1 + below(rg, 8);
	else if (chance(rg, 75))
		n = 1 + below(rg, 64);
	else
		n = 1 + below(rg, cap);
	n = (n + al - 1) / al * al;
	if (n > cap)
		n = cap / al * al;
	r->len = n * SECTOR;
	for (i = 0; i < r->nr; i++) {
		struct rexp *e = &r->e[i];
		const struct slot *s = &e->st->slots[e->slot];
		uint64_t room = (s->len - 2 * GUARD - n) / al;

		e->count = n;
		e->sector = s->start + GUARD + al * below(rg, room + 1);
		if (r->big || r->invalid)
			continue;
		if (r->op != DM_IO_OP_READ && r->nr > 1 &&
		    !(r->opf & DM_IO_PREFLUSH) && chance(rg, 3)) {
			e->count = 0;
			w->st.count0++;
		} else if (chance(rg, 2)) {
			/* Past the end: wholly, or straddling it. */
			e->sector = chance(rg, 50)
					    ? e->st->nr_sectors + below(rg, 16)
					    : e->st->nr_sectors -
						      below(rg, min_u64(n, 8));
			w->st.past_end++;
		} else if (e->st->lbs > SECTOR && chance(rg, 4)) {
			e->sector += 1 + below(rg, e->st->lbs / SECTOR - 1);
			w->st.misaligned++;
		}
	}
regions_done:
	for (i = 0; i < r->nr; i++) {
		r->where[i] = (struct io_region){r->e[i].v->bdev,
						 r->e[i].sector, r->e[i].count};
		expect_region(r, &r->e[i]);
		if (r->e[i].v->rdonly && r->op != DM_IO_OP_READ &&
		    r->op != DM_IO_OP_FLUSH)
			w->st.rdonly_writes++;
	}
	if (r->op == DM_IO_OP_READ || r->op == DM_IO_OP_WRITE) {
		int type = (int)below(rg, r->seed ? 3 : 4);

		mb_build(rg, &r->mb, type, r->len, r->big);
		r->data = malloc(r->len);
		if (!r->data)
			fail("out of memory");
		if (r->op == DM_IO_OP_WRITE) {
			gen_data(r->data, r->len, r->id, 0);
			mb_copy(&r->mb, r->data, true);
		} else {
			memset(r->data, READ_FILL, r->len);
			mb_copy(&r->mb, r->data, true);
		}
	}
	r->want_errs = !r->seed && chance(rg, 90);
	r->want_bits = true;
	if (!r->async && chance(rg, 10)) {
		bool calm = true;

		for (i = 0; i < r->nr; i++)
			if (r->e[i].mode != E_OK || r->e[i].dying)
				calm = false;
		if (r->want_errs || calm)
			r->want_bits = false;
	}
	if (!r->seed && chance(rg, 5))
		r->ioprio = (2 << 13) | 4; /* best effort, level 4 */
	r->verify = chance(rg, 25);
	return r;
}

/* Turn a well-formed request into a refused one. */
/* Does any region make the library walk the buffer?  Regions refused at
 * planning and count-0 regions do not: a malformed bio_vec array or a page
 * list too short is only visible against a length that is needed. */
static bool walks_memory(const struct req *r)
{
	unsigned int i;

	for (i = 0; i < r->nr; i++)
		if (r->e[i].count && !r->e[i].early)
			return true;
	return false;
}

static void make_invalid(struct worker *w, struct req *r)
{
	struct rng *rg = &w->rng;
	bool data = r->op == DM_IO_OP_READ || r->op == DM_IO_OP_WRITE;
	bool walks = walks_memory(r);

	if (r->seed) {
		static const int kinds[] = {0, 5, 6, 7, 9, 14, 15};

		r->inv_kind = kinds[below(rg, 7)];
		if (r->inv_kind == 0 && r->op != DM_IO_OP_READ)
			r->inv_kind = 15;
		if (r->inv_kind == 5 && r->mb.type != DM_IO_PAGE_LIST)
			r->inv_kind = 7;
		if (r->inv_kind == 9 &&
		    (r->mb.type != DM_IO_PAGE_LIST ||
		     r->mb.pl_off + r->len <= PAGE || !walks))
			r->inv_kind = 7;
		if (r->inv_kind == 14 && !r->async)
			r->inv_kind = 15;
		return;
	}
	for (;;) {
		r->inv_kind = (int)below(rg, 14);
		switch (r->inv_kind) {
		case 0:
			if (r->op != DM_IO_OP_READ)
				continue;
			return;
		case 4:
			if (r->op == DM_IO_OP_WRITE)
				continue;
			return;
		case 5:
		case 9:
			if (r->mb.type != DM_IO_PAGE_LIST || !data)
				continue;
			if (r->inv_kind == 9 &&
			    (r->mb.pl_off + r->len <= PAGE || !walks))
				continue; /* one page: nothing to cut */
			return;
		case 7:
			if (!data)
				continue;
			return;
		case 8:
			if (r->mb.type != DM_IO_BVEC || !data || !walks)
				continue;
			return;
		case 12:
			if (!data)
				continue;
			return;
		default:
			return;
		}
	}
}

/* ---- progress, for the watchdog ---- */

const char DONE[] = "done";

void set_doing(struct worker *w, const char *what, uint64_t id)
{
	atomic_store(&w->doing_id, id);
	atomic_store(&w->doing, what);
}

void heartbeat(struct worker *w)
{
	atomic_store(&w->heartbeat, tl_now_ns());
}

/* ---- submitting ---- */

static void refused_cb(unsigned long error, void *context)
{
	struct req *r = context;

	(void)error;
	atomic_fetch_add(&g.bad_callbacks, 1);
	fail_req(r->id, 0,
		 "the callback of a refused request ran (request %016" PRIx64
		 ")",
		 r->id);
}

static void push_done(struct req *r)
{
	struct worker *w = r->w;

	pthread_mutex_lock(&w->lock);
	r->next = w->done;
	w->done = r;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* From a callback, a synchronous call must say EDEADLK, not hang. */
static void try_deadlock(struct req *r)
{
	struct rexp *e = &r->e[0];
	static _Thread_local uint8_t buf[SECTOR] __attribute__((aligned(4096)));
	struct io_region where = {e->v->bdev, 0, 1};
	int ret;

	struct dm_io_request rq = {
		.bi_opf = DM_IO_OP_READ,
		.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
		.client = r->client,
	};

	ret = dm_io(&rq, 1, &where, NULL);
	if (ret != -EDEADLK)
		fail_req(r->id, 0,
			 "a sync call from a completion callback returned %s, "
			 "not EDEADLK",
			 errname(ret));
	atomic_fetch_add(&g.edeadlk, 1);
}

static void io_done(unsigned long error, void *context)
{
	struct req *r = context;

	if (atomic_fetch_add(&r->called, 1))
		fail_req(r->id, 0, "callback ran twice");
	r->bits = error;
	if ((r->id & 31) == 7 && !r->seed)
		try_deadlock(r);
	push_done(r);
}

static int submit_seed(struct req *r, unsigned long *bits)
{
	int rw = r->op == DM_IO_OP_READ ? DM_IO_READ : DM_IO_WRITE;
	unsigned int nr = r->nr;
	unsigned long *bp = r->want_bits ? bits : NULL;
	struct page_list *pl = r->mb.nodes;
	unsigned int off = r->mb.pl_off;
	void *addr = r->mb.addr;
	struct bio_vec *bv = r->mb.bv;
	io_notify_fn fn = r->async ? io_done : NULL;

	if (r->invalid) {
		fn = refused_cb;
		switch (r->inv_kind) {
		case 0:
			nr = 2;
			break;
		case 5:
			off = PAGE + (unsigned int)(r->id & 0xfff);
			break;
		case 6:
			nr = 0;
			break;
		case 7:
			pl = NULL;
			addr = NULL;
			bv = NULL;
			break;
		case 9: /* too short: cut the list after its first page */
			r->mb.nodes[0].next = NULL;
			break;
		case 14:
			fn = NULL;
			break;
		case 15:
			rw = 2;
			break;
		}
	}
	if (r->async || (r->invalid && r->inv_kind == 14)) {
		switch (r->mb.type) {
		case DM_IO_PAGE_LIST:
			return dm_io_async(nr, r->where, rw, pl, off, fn, r);
		case DM_IO_BVEC:
			return dm_io_async_bvec(nr, r->where, rw, bv, fn, r);
		default:
			return dm_io_async_vm(nr, r->where, rw, addr, fn, r);
		}
	}
	switch (r->mb.type) {
	case DM_IO_PAGE_LIST:
		return dm_io_sync(nr, r->where, rw, pl, off, bp);
	case DM_IO_BVEC:
		return dm_io_sync_bvec(nr, r->where, rw, bv, bp);
	default:
		return dm_io_sync_vm(nr, r->where, rw, addr, bp);
	}
}

static void churn_done(unsigned long error, void *context);

int submit_req(struct req *r, unsigned long *bits)
{
	struct dm_io_request rq = {
		.bi_opf = r->op | r->opf,
		.client = r->client,
		.region_errors = r->want_errs ? r->region_errors : NULL,
		.ioprio = r->ioprio,
	};
	struct io_region many[DM_IO_MAX_REGIONS + 1];
	struct io_region *where = r->where;
	unsigned int nr = r->nr, i;
	unsigned long *bp = r->want_bits ? bits : NULL;

	if (r->op == DM_IO_OP_READ || r->op == DM_IO_OP_WRITE)
		rq.mem = mb_mem(&r->mb);
	else if (r->id & 1)
		rq.mem.ptr.addr = (void *)(uintptr_t)0x10; /* ignored */
	if (r->async)
		rq.notify = (struct dm_io_notify){
			r->round ? churn_done : io_done, r};
	if (r->invalid) {
		rq.notify =
			(struct dm_io_notify){r->async ? refused_cb : NULL, r};
		switch (r->inv_kind) {
		case 0:
			many[0] = many[1] = r->where[0];
			where = many;
			nr = 2;
			break;
		case 1:
			rq.bi_opf |= 1u << (10 + below(&r->w->rng, 22));
			break;
		case 2:
			rq.bi_opf = (rq.bi_opf & ~DM_IO_OP_MASK) |
				    (5 + (unsigned int)below(&r->w->rng, 250));
			break;
		case 3:
		case 13:
			memcpy(many, r->where, nr * sizeof(*many));
			i = (unsigned int)below(&r->w->rng, nr);
			if (r->inv_kind == 3) {
				many[i].sector =
					UINT64_MAX - below(&r->w->rng, 8);
				many[i].count = 1 + below(&r->w->rng, 16);
			} else {
				many[i].sector = below(&r->w->rng, 1024);
				many[i].count = (UINT64_MAX >> SECTOR_SHIFT) -
						many[i].sector + 1 +
						below(&r->w->rng, 1000);
			}
			where = many;
			break;
		case 4:
			rq.bi_opf |= DM_IO_FUA;
			break;
		case 5:
			rq.mem.offset = PAGE + (unsigned int)below(&r->w->rng,
								   1u << 20);
			break;
		case 6:
			if (chance(&r->w->rng, 50)) {
				nr = 0;
			} else {
				for (i = 0; i <= DM_IO_MAX_REGIONS; i++)
					many[i] = r->where[0];
				where = many;
				nr = DM_IO_MAX_REGIONS + 1;
			}
			break;
		case 7:
			rq.mem.ptr.addr = NULL;
			break;
		case 8: {
			unsigned int k =
				(unsigned int)below(&r->w->rng, r->mb.nbv);
			struct bio_vec *bv = &r->mb.bv[k];

			r->saved_k = k;
			r->saved_bv = *bv;
			switch (below(&r->w->rng, 3)) {
			case 0:
				bv->bv_offset =
					PAGE - (unsigned int)below(&r->w->rng,
								   bv->bv_len);
				break;
			case 1:
				bv->bv_len = 0;
				break;
			default:
				/* Keep the page to free it; the entry
				 * loses it. */
				bv->bv_page = NULL;
			}
			break;
		}
		case 9: {
			/* Cut the list one page short. */
			unsigned int need = (unsigned int)((r->mb.pl_off +
							    r->len + PAGE - 1) /
							   PAGE);

			r->mb.nodes[need - 2].next = NULL;
			break;
		}
		case 10:
			memcpy(many, r->where, nr * sizeof(*many));
			many[below(&r->w->rng, nr)].bdev = NULL;
			where = many;
			break;
		case 11:
			rq.client = NULL;
			break;
		case 12:
			rq.mem.type = (enum dm_io_mem_type)(
				4 + below(&r->w->rng, 100));
			break;
		}
	}
	return dm_io(&rq, nr, where, bp);
}

static void submit(struct worker *w, struct req *r)
{
	unsigned long bits = 0;
	int ret;

	if (r->invalid)
		make_invalid(w, r);
	describe_req(w, r);
	set_doing(w, "submitting", r->id);
	r->t_submit = tl_now_ns();
	ret = r->seed ? submit_seed(r, &bits) : submit_req(r, &bits);
	if (r->invalid) {
		r->ret = ret;
		/* The entries the test broke may name no page: restore
		 * them so that the buffer can be checked and freed. */
		if (r->mb.type == DM_IO_PAGE_LIST && r->mb.nodes) {
			unsigned int i;

			for (i = 0; i + 1 < r->mb.npages; i++)
				r->mb.nodes[i].next = &r->mb.nodes[i + 1];
		}
		if (r->inv_kind == 8 && !r->seed)
			r->mb.bv[r->saved_k] = r->saved_bv;
		finish(w, r);
		return;
	}
	if (r->async) {
		if (ret)
			fail_req(r->id, 0, "async request refused: %s",
				 errname(ret));
		w->inflight++;
		set_doing(w, "idle", 0);
		return;
	}
	r->ret = ret;
	r->bits = bits;
	if (!r->want_bits) {
		unsigned int i;

		/* No bitset asked for: the region errnos say it all, or
		 * (seed API) every region was expected to succeed. */
		r->bits = 0;
		for (i = 0; r->want_errs && i < r->nr; i++)
			if (r->region_errors[i])
				r->bits |= 1UL << i;
		if (!r->want_errs && ret) {
			/* Calm when it was built; only a server killed since
			 * may explain it, and then any of its regions. */
			for (i = 0; i < r->nr; i++)
				if (store_is_nbd(r->e[i].st) &&
				    store_troubled(&r->e[i]))
					r->bits |= 1UL << i;
			if (ret != -EIO || !r->bits)
				fail_req(r->id, 0,
					 "sync request (error_bits NULL) "
					 "returned %s",
					 errname(ret));
		}
	}
	set_doing(w, "checking", r->id);
	finish(w, r);
}

/* Process completed async requests; with @wait, at least one (bounded
 * only by the watchdog). */
static void reap(struct worker *w, bool wait)
{
	struct req *list;

	pthread_mutex_lock(&w->lock);
	while (wait && !w->done && w->inflight) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		set_doing(w, "waiting for its async completions", 0);
		pthread_cond_timedwait(&w->cond, &w->lock, &ts);
	}
	list = w->done;
	w->done = NULL;
	pthread_mutex_unlock(&w->lock);
	while (list) {
		struct req *r = list;

		list = r->next;
		w->inflight--;
		finish(w, r);
	}
}

/* ---- sweeps ---- */

static void sweep(struct worker *w)
{
	unsigned int i, k;

	set_doing(w, "sweeping its slots", 0);
	for (i = 0; i < nstores; i++) {
		struct store *st = &stores[i];

		if (!store_get(st))
			continue;
		for (k = 0; k < st->nslots; k++) {
			struct slot *s = &st->slots[k];

			if (s->owner != w->idx || s->busy)
				continue;
			verify_range(w, st, (int)k, s->start, s->len, 0,
				     "sweep");
		}
		store_put(st);
	}
	w->st.sweeps++;
	w->next_sweep = w->nios + 3000 + below(&w->rng, 3000);
	heartbeat(w);
}

/* ---- the seed API's reservations ---- */

static void seed_reserve(struct worker *w)
{
	int ret;

	if (w->reserved)
		return;
	w->reserved = 16 + (unsigned int)below(&w->rng, 240);
	w->left = 50 + (unsigned int)below(&w->rng, 400);
	ret = dm_io_get(w->reserved);
	if (ret)
		fail("dm_io_get(%u) = %s", w->reserved, errname(ret));
}

static void seed_release(struct worker *w, bool wait_mine)
{
	if (!w->reserved)
		return;
	if (wait_mine)
		while (w->inflight)
			reap(w, true);
	/* Not waiting is fine: the client lives while anyone holds a
	 * reservation, and the last put waits for everything in flight. */
	dm_io_put(w->reserved);
	w->reserved = 0;
	atomic_fetch_add(&g.getputs, 1);
}

/* ---- the churn thread: a second client, created and destroyed ---- */

struct round {
	struct dm_io_client *client;
	atomic_uint expected, completed, claim;
	atomic_bool all_submitted;
	bool destroy_in_cb;
};

static void churn_done(unsigned long error, void *context)
{
	struct req *r = context;
	struct round *rd = r->round;

	if (atomic_fetch_add(&r->called, 1))
		fail_req(r->id, 0, "callback ran twice (churn)");
	r->bits = error;
	if (r->chain_next) {
		struct req *n = r->chain_next;
		int ret;

		atomic_fetch_add(&rd->expected, 1);
		n->t_submit = tl_now_ns();
		ret = submit_req(n, NULL);
		if (ret) {
			/* Only memory could refuse it here. */
			if (ret != -ENOMEM)
				fail_req(n->id, r->id,
					 "chained async submit from a "
					 "callback refused: %s",
					 errname(ret));
			atomic_fetch_sub(&rd->expected, 1);
		} else {
			n->submitted = true;
			atomic_fetch_add(&g.chained, 1);
		}
	}
	if (rd->destroy_in_cb && atomic_load(&rd->all_submitted)) {
		unsigned int none = 0;

		if (atomic_compare_exchange_strong(&rd->claim, &none, 1)) {
			dm_io_client_destroy(rd->client);
			atomic_fetch_add(&g.destroys_cb, 1);
		}
	}
	atomic_fetch_add(&rd->completed, 1);
}

static void churn_round(struct worker *w)
{
	struct rng *rg = &w->rng;
	unsigned int n = 8 + (unsigned int)below(rg, 40), i, k, built = 0;
	struct req **reqs = calloc(n, sizeof(*reqs));
	struct round rd = {0};
	unsigned int none = 0;

	if (!reqs)
		fail("out of memory");
	rd.client = dm_io_client_create();
	if (!rd.client)
		fail("dm_io_client_create: %s", strerror(errno));
	rd.destroy_in_cb = chance(rg, 25);
	for (i = 0; i < n; i++) {
		struct req *r = build_req(w, rd.client, true);

		if (!r)
			break;
		if (r->invalid)
			r->invalid = false;
		r->round = &rd;
		reqs[built++] = r;
	}
	/* Chains: each request's callback submits the next of its chain
	 * (not when the callback may destroy the client). */
	if (!rd.destroy_in_cb)
		for (i = 0; i + 1 < built; i++)
			if (chance(rg, 60))
				reqs[i]->chain_next = reqs[i + 1];
	for (i = 0; i < built; i++) {
		bool is_next = i && reqs[i - 1]->chain_next == reqs[i];

		describe_req(w, reqs[i]);
		if (is_next)
			continue;
		atomic_fetch_add(&rd.expected, 1);
		reqs[i]->t_submit = tl_now_ns();
		if (submit_req(reqs[i], NULL))
			fail_req(reqs[i]->id, 0, "async request refused");
		reqs[i]->submitted = true;
	}
	atomic_store(&rd.all_submitted, true);
	set_doing(w, "destroying a client with requests in flight", 0);
	if (!rd.destroy_in_cb) {
		/* Destroy at once, with everything in flight: it must wait
		 * for every callback (and what they submit) to return. */
		atomic_store(&rd.claim, 1);
		dm_io_client_destroy(rd.client);
		atomic_fetch_add(&g.destroys, 1);
		if (atomic_load(&rd.completed) != atomic_load(&rd.expected))
			fail("dm_io_client_destroy returned with %u of %u "
			     "callbacks not run",
			     atomic_load(&rd.expected) -
				     atomic_load(&rd.completed),
			     atomic_load(&rd.expected));
	} else {
		while (atomic_load(&rd.completed) != atomic_load(&rd.expected))
			tl_sleep_ms(1);
		if (atomic_compare_exchange_strong(&rd.claim, &none, 1)) {
			dm_io_client_destroy(rd.client);
			atomic_fetch_add(&g.destroys, 1);
		}
	}
	for (i = 0; i < built; i++) {
		struct req *r = reqs[i];

		k = (unsigned int)atomic_load(&r->called);
		if (r->submitted && k != 1)
			fail_req(r->id, 0, "callback ran %u times", k);
		if (!r->submitted) {
			release_regions(r);
			free_req(r);
			continue;
		}
		r->async = true;
		finish(w, r);
	}
	free(reqs);
}

/* ---- worker threads ---- */

void *worker_main(void *arg)
{
	struct worker *w = arg;

	heartbeat(w);
	if (w->kind == W_CHURN) {
		while (!atomic_load(&stop_flag)) {
			churn_round(w);
			if (w->nios >= w->next_sweep)
				sweep(w);
		}
		return NULL;
	}
	if (opt.self_test && w->idx == 0)
		self_test(w);
	while (!atomic_load(&stop_flag)) {
		struct req *r;

		reap(w, false);
		if (w->kind == W_SEED)
			seed_reserve(w);
		if (w->inflight >= opt.qd) {
			reap(w, true);
			continue;
		}
		r = build_req(w, w->kind == W_SEED ? NULL : w->client, false);
		if (!r) {
			if (w->inflight)
				reap(w, true);
			else
				tl_sleep_ms(1);
			heartbeat(w);
			continue;
		}
		submit(w, r);
		if (w->kind == W_SEED && !--w->left)
			seed_release(w, chance(&w->rng, 50));
		if (w->nios >= w->next_sweep)
			sweep(w);
	}
	while (w->inflight)
		reap(w, true);
	seed_release(w, true);
	set_doing(w, DONE, 0);
	return NULL;
}

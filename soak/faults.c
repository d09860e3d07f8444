/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * soak - faults: the fault: rules drawn at random, what they allow each region
 * to do, their rotation while the run goes on, and --self-test's lost
 * write.
 */
#include "soak.h"

/* ---- rules ---- */

void faults_string(const struct faults *f, char *out, size_t size)
{
	static const char *const kinds[] = {"", "fail-reads", "fail-writes",
					    "fail"};
	size_t n = 0;
	unsigned int i;

	out[0] = '\0';
	for (i = 0; i < f->nr; i++) {
		const struct rule *r = &f->r[i];

		if (r->end == UINT64_MAX)
			n += (size_t)snprintf(out + n, size - n, "%s=all,",
					      kinds[r->ops]);
		else
			n += (size_t)snprintf(out + n, size - n,
					      "%s=%" PRIu64 "+%" PRIu64 ",",
					      kinds[r->ops], r->start,
					      r->end - r->start);
	}
	if (f->drop_len)
		n += (size_t)snprintf(out + n, size - n,
				      "drop-writes=%" PRIu64 "+%" PRIu64 ",",
				      f->drop_start, f->drop_len);
	if (f->nr)
		n += (size_t)snprintf(out + n, size - n, "errno=%s,",
				      f->err == EIO ? "EIO" : "ENOSPC");
	if (f->after)
		n += (size_t)snprintf(out + n, size - n, "after=%" PRIu64 ",",
				      f->after);
	if (f->delay_ms)
		n += (size_t)snprintf(out + n, size - n, "delay=%u,",
				      f->delay_ms);
	if (n)
		out[n - 1] = '\0';
}

void random_faults(struct rng *r, const struct store *st, struct faults *f)
{
	unsigned int i;

	memset(f, 0, sizeof(*f));
	f->err = chance(r, 50) ? EIO : ENOSPC;
	f->nr = 1 + (unsigned int)below(r, MAX_RULES);
	for (i = 0; i < f->nr; i++) {
		struct rule *ru = &f->r[i];
		static const unsigned int kinds[] = {R_READ | R_WRITE, R_READ,
						     R_WRITE};

		ru->ops = kinds[below(r, 3)];
		if (chance(r, 6)) {
			ru->start = 0;
			ru->end = UINT64_MAX;
			atomic_fetch_add(&g.rule_all, 1);
		} else {
			ru->start = below(r, st->nr_sectors);
			ru->end = min_u64(
				st->nr_sectors,
				ru->start + 1 +
					below(r, chance(r, 70) ? 64 : 2048));
		}
		if (ru->ops == R_READ)
			atomic_fetch_add(&g.rule_fail_reads, 1);
		else if (ru->ops == R_WRITE)
			atomic_fetch_add(&g.rule_fail_writes, 1);
		else
			atomic_fetch_add(&g.rule_fail, 1);
	}
	f->after = chance(r, 50) ? 0 : below(r, 400);
	f->delay_ms = chance(r, 12) ? 1 + (unsigned int)below(r, 2) : 0;
	atomic_fetch_add(f->err == EIO ? &g.rule_eio : &g.rule_enospc, 1);
	if (f->after)
		atomic_fetch_add(&g.rule_after, 1);
	if (f->delay_ms)
		atomic_fetch_add(&g.rule_delay, 1);
}

/* ---- expectations ---- */

static bool overlaps(const struct rule *ru, uint64_t a, uint64_t b)
{
	return ru->end == UINT64_MAX || (a < ru->end && b > ru->start);
}

void expect_region(struct req *r, struct rexp *e)
{
	struct view *v = e->v;
	struct store *st = e->st;
	unsigned int op = r->op, want, i;
	uint64_t a = e->sector, b = e->sector + e->count;
	bool dataless = op == DM_IO_OP_DISCARD || op == DM_IO_OP_WRITE_ZEROES;
	bool armed;

	e->mode = E_OK;
	e->err = 0;
	e->early = false;
	e->kills = atomic_load(&st->kills);
	e->dying = atomic_load(&st->state) != S_ONLINE;
	e->nfz = 0;
	e->early_mask = 0;
	if (op != DM_IO_OP_FLUSH && e->count) {
		/* Any of these may be the one reported: the header does not
		 * rank them. */
		if (op != DM_IO_OP_READ && v->rdonly)
			e->early_mask |= EM_EROFS;
		if (a > st->nr_sectors || e->count > st->nr_sectors - a)
			e->early_mask |= EM_ENXIO;
		if ((v->direct || v->contig || (dataless && st->is_blk)) &&
		    ((a * SECTOR) | (e->count * SECTOR)) & (v->lbs - 1))
			e->early_mask |= EM_EINVAL;
		if (op == DM_IO_OP_DISCARD && !v->discard_max)
			e->early_mask |= EM_EOPNOTSUPP;
		if (e->early_mask) {
			e->mode = E_MUST;
			e->err = e->early_mask & EM_EROFS    ? EROFS
				 : e->early_mask & EM_ENXIO  ? ENXIO
				 : e->early_mask & EM_EINVAL ? EINVAL
							     : EOPNOTSUPP;
			e->early = true;
			if (op == DM_IO_OP_READ) {
				e->fz_lo[0] = a;
				e->fz_hi[0] = b;
				e->nfz = 1;
			}
			return;
		}
	}
	if (!v->is_fault)
		return;
	if (op != DM_IO_OP_FLUSH && !e->count && !(r->opf & DM_IO_PREFLUSH))
		return; /* nothing is issued for it */
	armed = atomic_load(&v->chunks) >= v->f.after;
	want = op == DM_IO_OP_READ ? R_READ : R_WRITE;
	for (i = 0; i < v->f.nr; i++) {
		const struct rule *ru = &v->f.r[i];
		bool hit;

		if (!(ru->ops & want))
			continue;
		/* A flush (alone, or before a write) has no range: only a
		 * whole-device rule takes it. */
		if (op == DM_IO_OP_FLUSH || !e->count)
			hit = ru->end == UINT64_MAX;
		else
			hit = overlaps(ru, a, b) || (r->opf & DM_IO_PREFLUSH &&
						     ru->end == UINT64_MAX);
		if (!hit)
			continue;
		e->mode = armed ? E_MUST : E_MAY;
		e->err = v->f.err;
		if (op == DM_IO_OP_READ && armed) {
			uint64_t lo = ru->end == UINT64_MAX
					      ? a
					      : max_u64(a, ru->start);
			uint64_t hi =
				ru->end == UINT64_MAX ? b : min_u64(b, ru->end);

			e->fz_lo[e->nfz] = lo;
			e->fz_hi[e->nfz] = hi;
			e->nfz++;
		}
	}
}

/* ---- what a region may fail with ---- */

/* Is -@err what region @e may fail with (apart from connection trouble)? */
bool errno_allowed(const struct rexp *e, int err)
{
	err = -err;
	if (e->mode == E_OK)
		return false;
	if (!e->early)
		return err == e->err;
	return (err == EROFS && e->early_mask & EM_EROFS) ||
	       (err == ENXIO && e->early_mask & EM_ENXIO) ||
	       (err == EINVAL && e->early_mask & EM_EINVAL) ||
	       (err == EOPNOTSUPP && e->early_mask & EM_EOPNOTSUPP);
}

bool store_troubled(const struct rexp *e)
{
	return e->dying || atomic_load(&e->st->kills) != e->kills;
}

/* ---- --self-test: a write the model is not told about ---- */

/* --self-test: one write through a drop-writes fault: device that the
 * model is not told about.  The read-back must catch it and fail the run. */
void self_test(struct worker *w)
{
	struct store *st = &stores[0];
	struct view *v = &st->views[st->nviews - 1];
	unsigned int slot = total_workers() + w->idx;
	struct req *r = calloc(1, sizeof(*r));
	unsigned long bits = 0;
	int ret;

	if (!r || !v->f.drop_len)
		fail("self-test setup");
	r->w = w;
	r->id = (uint64_t)(w->idx + 1) << 48 | ++w->seq;
	r->op = DM_IO_OP_WRITE;
	r->client = w->client;
	r->nr = 1;
	r->e[0] = (struct rexp){.st = st,
				.v = v,
				.slot = -1,
				.sector = v->f.drop_start,
				.count = v->f.drop_len};
	r->len = v->f.drop_len * SECTOR;
	r->data = malloc(r->len);
	if (!r->data)
		fail("out of memory");
	mb_build(&w->rng, &r->mb, DM_IO_KMEM, r->len, false);
	gen_data(r->data, r->len, r->id, 0);
	mb_copy(&r->mb, r->data, true);
	r->where[0] =
		(struct io_region){v->bdev, r->e[0].sector, r->e[0].count};
	r->want_errs = true;
	r->want_bits = true;
	describe_req(w, r);
	ret = submit_req(r, &bits);
	printf("self-test: wrote %s@%" PRIu64 "+%" PRIu64
	       " through a drop-writes fault: device (returned %s, bits "
	       "%#lx); the detector must now fail the run\n",
	       st->name, r->e[0].sector, r->e[0].count, errname(ret), bits);
	if (ret)
		fail("self-test: the dropped write reported %s", errname(ret));
	model_set(st, r->e[0].sector, r->e[0].count, r->data, true, r->id);
	atomic_store(&fail_status, 1); /* the failure we want */
	verify_range(w, st, (int)slot, r->e[0].sector - GUARD,
		     r->e[0].count + 2 * GUARD, r->id,
		     "read-back after completion");
	printf("self-test: the lost write was NOT detected\n");
	cleanup();
	_exit(3);
}

/* ---- rotation ---- */

void rotate_one(void)
{
	struct store *st = &stores[below(&ctl_rng, nstores)];
	struct view *cand[MAX_VIEWS], *v;
	unsigned int n = 0, i;
	int ret;

	if (atomic_load(&st->state) != S_ONLINE)
		return;
	for (i = 0; i < st->nviews; i++)
		if (st->views[i].is_fault)
			cand[n++] = &st->views[i];
	if (!n)
		return;
	v = cand[below(&ctl_rng, n)];
	atomic_store(&v->state, V_RETIRING);
	wait_zero(&v->inflight, "waiting for a fault: view to drain");
	view_close(v);
	random_faults(&ctl_rng, st, &v->f);
	ret = view_open(v);
	if (ret)
		fail("reopening %s: %s", v->spec, errname(ret));
	atomic_store(&v->state, V_ACTIVE);
	atomic_fetch_add(&g.rotations, 1);
}

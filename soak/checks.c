/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * soak - completion checks: every completed request against what the model
 * and the injected faults allow, and the final read-back.
 */
#include "soak.h"

/* ---- completion checks ---- */

static void count_fail(struct worker *w, int err)
{
	if (err < 0)
		err = -err;
	if (err >= 0 && err < 160)
		w->st.region_fail[err]++;
}

static void check_read_data(struct worker *w, struct req *r, bool failed)
{
	struct rexp *e = &r->e[0];
	struct store *st = e->st;
	uint64_t k;

	if (!failed) {
		compare_model(w, st, e->sector, e->count, r->data, r->id,
			      "read");
		return;
	}
	/* A failed read leaves zeroes where it failed; the rest of the
	 * buffer holds either zeroes or the right data. */
	for (k = 0; k < e->count; k++) {
		uint64_t s = e->sector + k;
		const uint8_t *p = r->data + k * SECTOR;
		bool must_zero = false;
		unsigned int z;

		for (z = 0; z < e->nfz; z++)
			if (s >= e->fz_lo[z] && s < e->fz_hi[z])
				must_zero = true;

		if (all_byte(p, SECTOR, 0))
			continue;
		if (!must_zero && s < st->nr_sectors && st->known[s] &&
		    !memcmp(p, st->data + s * SECTOR, SECTOR))
			continue;
		if (!must_zero && s < st->nr_sectors && !st->known[s])
			continue;
		{
			char got[128];

			describe_sector(p, got, sizeof(got));
			fail_req(r->id, 0,
				 "failed read of %s@%" PRIu64 "+%" PRIu64
				 " (errno %s): buffer sector %" PRIu64
				 " holds %s, not zeroes%s",
				 st->name, e->sector, e->count,
				 errname(r->region_errors[0]), k, got,
				 must_zero ? " (inside the failing range)"
					   : " nor the device's data");
		}
	}
}

static void check_regions(struct worker *w, struct req *r)
{
	unsigned int i;

	if (!r->async) {
		int want = r->bits ? -EIO : 0;

		if (r->ret != want)
			fail_req(r->id, 0,
				 "sync request returned %s with bits %#lx "
				 "(expected %s)",
				 errname(r->ret), r->bits, errname(want));
	}
	if (r->bits >> r->nr && r->nr < 64)
		fail_req(r->id, 0, "error bits %#lx name regions beyond %u",
			 r->bits, r->nr);
	for (i = 0; i < r->nr; i++) {
		struct rexp *e = &r->e[i];
		bool bit = r->bits >> i & 1;
		int err = r->want_errs ? r->region_errors[i] : 0;
		bool trouble = store_troubled(e) && store_is_nbd(e->st);

		if (r->want_errs && bit != (err != 0))
			fail_req(r->id, 0,
				 "region %u: error bit %d but region errno %s",
				 i, bit, errname(err));
		if (r->want_errs && err > 0)
			fail_req(r->id, 0, "region %u: positive errno %d", i,
				 err);
		if (bit) {
			bool ok = e->mode != E_OK;

			if (r->want_errs)
				ok = errno_allowed(e, err) ||
				     (trouble && conn_errno(err));
			else
				ok = ok || trouble;
			if (!ok)
				fail_req(r->id, 0,
					 "region %u (%s/%s@%" PRIu64 "+%" PRIu64
					 ") failed with %s; "
					 "expected %s%s",
					 i, e->st->name, e->v->label, e->sector,
					 e->count, errname(err),
					 e->mode == E_OK ? "success"
							 : errname(e->err),
					 trouble ? " or a connection error"
						 : "");
			count_fail(w, err); /* 0: the seed API says no errno */
			if (!e->early && e->mode != E_OK)
				w->st.injected_must += e->mode == E_MUST;
		} else if (e->mode == E_MUST) {
			fail_req(r->id, 0,
				 "region %u (%s/%s@%" PRIu64 "+%" PRIu64
				 ") succeeded; it must fail with %s%s",
				 i, e->st->name, e->v->label, e->sector,
				 e->count, errname(e->err),
				 e->early ? " (refused at planning)"
					  : " (an armed fault: rule)");
		}
		if (bit && e->mode == E_MAY)
			w->st.injected_may++;
	}
}

/* What a completed write, discard or write-zeroes left on the devices. */
static void update_model(struct worker *w, struct req *r)
{
	unsigned int i;

	for (i = 0; i < r->nr; i++) {
		struct rexp *e = &r->e[i];
		bool bit = r->bits >> i & 1;

		if (!e->count || e->early || e->slot < 0)
			continue;
		if (bit) {
			/* It may hold old data, new data, or some of both. */
			model_set(e->st, e->sector, e->count, NULL, false,
				  r->id);
			continue;
		}
		switch (r->op) {
		case DM_IO_OP_WRITE:
			model_set(e->st, e->sector, e->count, r->data, true,
				  r->id);
			w->st.bytes_written += r->len;
			break;
		case DM_IO_OP_WRITE_ZEROES:
			model_set(e->st, e->sector, e->count, NULL, true,
				  r->id);
			break;
		case DM_IO_OP_DISCARD:
			model_set(e->st, e->sector, e->count, NULL,
				  e->st->discard_zeroes, r->id);
			break;
		}
	}
}

static void count_chunks(struct req *r)
{
	unsigned int i;

	for (i = 0; i < r->nr; i++) {
		struct rexp *e = &r->e[i];

		if (e->early)
			continue;
		if (r->op == DM_IO_OP_FLUSH || e->count ||
		    r->opf & DM_IO_PREFLUSH)
			atomic_fetch_add(&e->v->chunks, 1);
	}
}

/* Everything about a completed (or refused) request. */
void finish(struct worker *w, struct req *r)
{
	unsigned int i;

	if (r->invalid) {
		if (r->ret != -EINVAL)
			fail_req(r->id, 0,
				 "invalid request returned %s, expected "
				 "EINVAL",
				 errname(r->ret));
		/* Nothing may have been issued: the regions still hold
		 * what the model says. */
		for (i = 0; i < r->nr; i++)
			if (r->e[i].slot >= 0 && r->op != DM_IO_OP_READ)
				verify_range(w, r->e[i].st, r->e[i].slot,
					     r->e[i].sector - GUARD,
					     r->e[i].count + 2 * GUARD, r->id,
					     "after a refused request");
		if (r->op == DM_IO_OP_WRITE && r->mb.len) {
			uint8_t *tmp = malloc(r->len);

			if (!tmp)
				fail("out of memory");
			mb_copy(&r->mb, tmp, false);
			if (memcmp(tmp, r->data, r->len) ||
			    !mb_canary_ok(&r->mb))
				fail_req(r->id, 0,
					 "a refused write changed its "
					 "buffer");
			free(tmp);
		}
		w->st.invalid++;
		goto out;
	}
	check_regions(w, r);
	if (r->op == DM_IO_OP_READ) {
		mb_copy(&r->mb, r->data, false);
		if (!mb_canary_ok(&r->mb))
			fail_req(r->id, 0, "read wrote outside its buffer (%s)",
				 mem_names[r->mb.type]);
		check_read_data(w, r, r->bits & 1);
		if (!(r->bits & 1))
			w->st.bytes_read += r->len;
	} else if (r->op == DM_IO_OP_WRITE) {
		uint8_t *tmp = malloc(r->len);

		if (!tmp)
			fail("out of memory");
		mb_copy(&r->mb, tmp, false);
		if (memcmp(tmp, r->data, r->len) || !mb_canary_ok(&r->mb))
			fail_req(r->id, 0, "a write changed its own buffer");
		free(tmp);
	}
	count_chunks(r);
	update_model(w, r);
	if (r->op != DM_IO_OP_READ && r->op != DM_IO_OP_FLUSH) {
		for (i = 0; i < r->nr; i++) {
			struct rexp *e = &r->e[i];

			if (e->slot < 0 || !e->count)
				continue;
			if (e->early && chance(&w->rng, 50))
				verify_range(
					w, e->st, e->slot,
					e->st->slots[e->slot].start,
					e->st->slots[e->slot].len, r->id,
					"read-back after a refused region");
			else if (r->verify)
				verify_range(w, e->st, e->slot,
					     e->sector - GUARD,
					     e->count + 2 * GUARD, r->id,
					     "read-back after completion");
		}
	}
	w->st.ops[r->op]++;
	w->st.regions += r->nr;
	if (r->op <= DM_IO_OP_WRITE)
		w->st.mem[r->mb.type & 3]++;
	if (r->big)
		w->st.big++;
out:
	if (r->async)
		w->st.async++;
	else
		w->st.sync++;
	if (r->seed)
		w->st.seed_api++;
	else
		w->st.req_api++;
	release_regions(r);
	free_req(r);
	w->nios++;
	atomic_fetch_add(&g.ops, 1);
	heartbeat(w);
}

/* ---- the end: everything read back, independently where possible ---- */

void final_check(struct worker *w)
{
	uint8_t *raw = malloc((size_t)VBUF_SECTORS * SECTOR);
	unsigned int i, k;

	if (!raw)
		fail("out of memory");
	for (i = 0; i < nstores; i++) {
		struct store *st = &stores[i];
		int fd = -1;

		ctl_beat("final verification");
		for (k = 0; k < st->nslots; k++)
			verify_range(w, st, (int)k, st->slots[k].start,
				     st->slots[k].len, 0, "final read-back");
		/* The backing file, read past the library. */
		if (st->kind == K_LOOP && fsync(st->loop.fd))
			fail("fsync %s: %s", st->dev, strerror(errno));
		if (st->path[0])
			fd = open(st->path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			struct stat sb;
			uint64_t s;

			if (fstat(fd, &sb) ||
			    (uint64_t)sb.st_size != st->nr_sectors * SECTOR)
				fail("%s: backing file is %lld bytes, not "
				     "%" PRIu64 " (a write past the end?)",
				     st->name, (long long)sb.st_size,
				     st->nr_sectors * SECTOR);
			for (s = 0; s < st->nr_sectors; s += VBUF_SECTORS) {
				uint64_t n = min_u64(VBUF_SECTORS,
						     st->nr_sectors - s);
				ssize_t got = pread(fd, raw, n * SECTOR,
						    (off_t)(s * SECTOR));

				if (got != (ssize_t)(n * SECTOR))
					fail("pread %s: %s", st->path,
					     strerror(errno));
				compare_model(w, st, s, n, raw, 0,
					      "final raw read of the backing "
					      "file");
				atomic_fetch_add(&g.raw_bytes, n * SECTOR);
			}
			close(fd);
		}
	}
	free(raw);
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * soak - NBD servers: nbdkit exports as stores, killed or stopped and
 * restarted while the run goes on.
 */
#include "soak.h"

/* ---- NBD stores ---- */

/* Start nbdkit for @st from the main thread (PR_SET_PDEATHSIG follows the
 * thread that forks), and wait until it listens; a restart keeps the
 * socket, so the views' specs stay valid. */
static void nbd_start(struct store *st)
{
	char size_arg[64], file_arg[PATH_MAX + 8], log[PATH_MAX + 16];
	const char *args[3] = {NULL};
	char why[512];

	if (st->srv) {
		if (nbdkit_restart(st->srv, why, sizeof(why)))
			fail("nbdkit for %s: %s", st->name, why);
		return;
	}
	snprintf(size_arg, sizeof(size_arg), "size=%" PRIu64,
		 st->nr_sectors * SECTOR);
	snprintf(file_arg, sizeof(file_arg), "file=%s", st->path);
	snprintf(log, sizeof(log), "%s/nbdkit.log", workdir);
	if (st->kind == K_NBD_MEM) {
		args[0] = "memory";
		args[1] = size_arg;
	} else {
		args[0] = "file";
		args[1] = file_arg;
	}
	st->srv = nbdkit_start_logged(opt.dir, log, args, why, sizeof(why));
	if (!st->srv)
		fail("nbdkit for %s: %s", st->name, why);
	snprintf(st->dev, sizeof(st->dev), "%s", st->srv->uri);
}

static void nbd_views(struct store *st)
{
	add_view(st, "plain", 0, false);
	add_view(st, "rdonly", DM_BDEV_RDONLY, false);
	add_view(st, "fault1", 0, true);
	add_view(st, "fault2", 0, true);
}

/* Write the model's content through the library (a memory export starts
 * empty). */
static void fill_through_library(struct store *st)
{
	struct view *v = &st->views[0];
	uint64_t s;

	for (s = 0; s < st->nr_sectors; s += VBUF_SECTORS) {
		struct io_region where = {
			v->bdev, s, min_u64(VBUF_SECTORS, st->nr_sectors - s)};
		struct dm_io_request rq = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM,
				.ptr.addr = st->data + s * SECTOR},
			.client = client_uring,
		};
		unsigned long bits = 0;
		int ret = dm_io(&rq, 1, &where, &bits);

		if (ret)
			fail("filling %s: %s (bits %#lx)", st->name,
			     errname(ret), bits);
	}
}

void setup_nbd(const char *name, enum store_kind kind)
{
	struct store *st = new_store(name, kind);

	if (kind == K_NBD_FILE)
		write_backing(st);
	else
		st->path[0] = '\0';
	nbd_start(st);
	nbd_views(st);
	if (kind == K_NBD_MEM)
		fill_through_library(st);
}

/* ---- kills, stops and restarts ---- */

void nbd_event(unsigned int nr)
{
	struct store *cand[MAX_STORES], *st;
	unsigned int n = 0, i;
	bool stop_it = nr % 2;
	int err;

	for (i = 0; i < nstores; i++)
		if (store_is_nbd(&stores[i]))
			cand[n++] = &stores[i];
	if (!n)
		return;
	st = cand[(nr / 2) % n];
	if (opt.verbose)
		printf("  %s nbdkit of %s (pid %d)\n",
		       stop_it ? "stopping" : "killing", st->name,
		       (int)st->srv->pid);
	atomic_fetch_add(&st->kills, 1);
	atomic_store(&st->state, S_DYING);
	if (stop_it) {
		/* A server that stops answering: requests time out. */
		err = nbdkit_sigstop(st->srv);
		if (err)
			fail("stopping nbdkit for %s: %s", st->name,
			     errname(err));
		atomic_fetch_add(&g.nbd_stops, 1);
		ctl_beat("waiting while nbdkit is stopped");
		tl_sleep_ms(NBD_TIMEOUT_MS + 1500);
	} else {
		atomic_fetch_add(&g.nbd_kills, 1);
	}
	/* Killed while stopped: it must not act on what it still holds. */
	err = nbdkit_sigkill(st->srv);
	if (err)
		fail("killing nbdkit for %s: %s", st->name, errname(err));
	ctl_beat("after killing nbdkit");
	if (!stop_it)
		tl_sleep_ms(500); /* requests meet the dead server */
	atomic_store(&st->state, S_OFFLINE);
	wait_zero(&st->inflight, "waiting for a dead NBD store to drain");
	for (i = 0; i < st->nviews; i++) {
		if (st->views[i].is_fault)
			random_faults(&ctl_rng, st, &st->views[i].f);
		view_close(&st->views[i]);
	}
	ctl_beat("restarting nbdkit");
	if (st->kind == K_NBD_MEM)
		model_init(st, false);
	nbd_start(st);
	for (i = 0; i < st->nviews; i++) {
		int ret = view_open(&st->views[i]);

		if (ret)
			fail("reopening %s after a restart: %s",
			     st->views[i].spec, errname(ret));
	}
	if (st->kind == K_NBD_MEM)
		fill_through_library(st);
	st->restarts++;
	atomic_fetch_add(&g.nbd_restarts, 1);
	atomic_store(&st->state, S_ONLINE);
	ctl_beat("running");
}

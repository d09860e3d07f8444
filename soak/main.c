/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * soak - libdmio against an in-memory model, in a bounded randomized run.
 *
 * Stores are the storage that I/O lands on: files in /dev/shm, loop devices
 * over such files (512- and 4096-byte sectors), and NBD exports served by
 * nbdkit (memory plugin, and file plugin over a /dev/shm file).  Each store
 * is opened as several views (block_device handles): plain, O_DIRECT or
 * buffered, read-only, and fault: wrappers whose rules the controller draws
 * at random and replaces while the run goes on.  The model holds what every
 * sector of every store must contain, or "unknown" after a failed write or
 * a discard whose result the device does not promise.
 *
 * A store is cut into slots, each owned by one worker thread, so that no
 * two requests in flight ever touch the same sectors: a region is placed
 * inside a slot with GUARD sectors of the slot left on each side, and every
 * read-back covers the guards too.  Workers issue mixed requests (sync and
 * async, request API on an io_uring client and a thread-pool client, the
 * seed API under dm_io_get()/dm_io_put() churn, all memory types), check
 * every completion against what the injected faults allow, update the model
 * and read regions back.  A churn thread drives a second client through
 * create / burst of chained async I/O / destroy while everything else runs.
 * The main thread is the controller: it rotates fault: rules, kills or
 * stops NBD servers and restarts them, and stops the run.  A watchdog fails
 * the run when any thread makes no progress for too long.
 *
 * Every check that fails prints the seed, the first discrepancy and the
 * requests involved, cleans up (servers, loop devices, files) and exits 1.
 */
#include "soak.h"

/* ---- options ---- */

struct options opt = {
	.workers = 4,
	.seed_workers = 2,
	.qd = 8,
	.watchdog = 60,
	.dir = "/dev/shm",
	.mode = "default",
};

/* ---- state the threads share ---- */

atomic_bool stop_flag;
struct dm_io_client *client_uring, *client_threads;
atomic_ullong main_heartbeat;
_Atomic(const char *) main_doing;
uint64_t t_start, t_load;
struct rng ctl_rng;
char rerun[512];

/* ---- the controller ---- */

void ctl_beat(const char *what)
{
	atomic_store(&main_doing, what);
	atomic_store(&main_heartbeat, tl_now_ns());
}

void wait_zero(atomic_uint *n, const char *what)
{
	ctl_beat(what);
	while (atomic_load(n))
		tl_sleep_ms(1);
	ctl_beat("running");
}

/* ---- main ---- */

static void usage(const char *argv0, int status)
{
	fprintf(status ? stderr : stdout,
		"usage: %s [--seed N] [--ios N] [--seconds N] [--short | "
		"--long]\n"
		"          [--self-test] [--workers N] [--seed-workers N] "
		"[--qd N]\n"
		"          [--watchdog SECONDS] [--nbd-every SECONDS] "
		"[--no-loop] [--no-nbd]\n"
		"          [--dir DIR] [--verbose]\n"
		"  --short: 30 s of load (CI); --long: 1,000,000 requests\n",
		argv0);
	exit(status);
}

static uint64_t num_arg(const char *s, const char *name)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end) {
		fprintf(stderr, "soak: bad number for %s: %s\n", name, s);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

#define TAKE(name)                                                             \
	(!strcmp(a, name) ? (v ? (i++, true) : (usage(argv[0], 2), false))     \
			  : false)
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			usage(argv[0], 0);
		else if (TAKE("--seed"))
			opt.seed = num_arg(v, a), opt.have_seed = true;
		else if (TAKE("--ios"))
			opt.ios = num_arg(v, a);
		else if (TAKE("--seconds"))
			opt.seconds = (unsigned int)num_arg(v, a);
		else if (TAKE("--workers"))
			opt.workers = (unsigned int)num_arg(v, a);
		else if (TAKE("--seed-workers"))
			opt.seed_workers = (unsigned int)num_arg(v, a);
		else if (TAKE("--qd"))
			opt.qd = (unsigned int)num_arg(v, a);
		else if (TAKE("--watchdog"))
			opt.watchdog = (unsigned int)num_arg(v, a);
		else if (TAKE("--nbd-every"))
			opt.nbd_every = (unsigned int)num_arg(v, a);
		else if (TAKE("--dir"))
			opt.dir = v;
		else if (!strcmp(a, "--short"))
			opt.seconds = 30, opt.ios = 0, opt.mode = "short";
		else if (!strcmp(a, "--long"))
			opt.ios = 1000000, opt.seconds = 0, opt.mode = "long";
		else if (!strcmp(a, "--self-test"))
			opt.self_test = true, opt.mode = "self-test";
		else if (!strcmp(a, "--no-loop"))
			opt.no_loop = true;
		else if (!strcmp(a, "--no-nbd"))
			opt.no_nbd = true;
		else if (!strcmp(a, "--verbose") || !strcmp(a, "-v"))
			opt.verbose = true;
		else
			usage(argv[0], 2);
#undef TAKE
	}
	if (!opt.ios && !opt.seconds)
		opt.seconds = 20;
	if (!opt.workers || opt.qd < 1 || opt.watchdog < 5 ||
	    total_workers() > MAX_WORKERS) {
		fprintf(stderr,
			"soak: need 1.. workers (at most %d threads "
			"in all), --qd >= 1, --watchdog >= 5\n",
			MAX_WORKERS);
		exit(2);
	}
	if (!opt.nbd_every)
		opt.nbd_every = opt.seconds && opt.seconds < 60 ? 8 : 15;
	if (!opt.have_seed) {
		if (getrandom(&opt.seed, sizeof(opt.seed), 0) !=
		    sizeof(opt.seed))
			opt.seed = tl_now_ns();
		opt.seed &= (1ull << 53) - 1; /* easy to copy */
	}
}

static void sanity_checks(void)
{
	struct io_region where = {NULL, 0, 1};
	char buf[SECTOR];

	/* No reservation held: the seed functions refuse. */
	if (dm_io_sync_vm(1, &where, DM_IO_READ, buf, NULL) != -EINVAL)
		fail("dm_io_sync_vm without dm_io_get() did not say EINVAL");
	if (dm_io_get(0) != -EINVAL)
		fail("dm_io_get(0) did not say EINVAL");
}

static void setup_workers(void)
{
	unsigned int i;

	nworkers = total_workers();
	for (i = 0; i < nworkers; i++) {
		struct worker *w = &workers[i];

		w->idx = i;
		w->kind = i < opt.workers		       ? W_REQ
			  : i < opt.workers + opt.seed_workers ? W_SEED
							       : W_CHURN;
		rng_seed(&w->rng, opt.seed ^ (0x1000193ull * (i + 1)));
		w->client = w->kind == W_REQ && i % 2 ? client_threads
						      : client_uring;
		w->vclient = w->kind == W_REQ ? w->client : client_uring;
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->cond, NULL);
		w->next_sweep = 2000 + below(&w->rng, 2000);
		set_doing(w, "starting", 0);
		if (posix_memalign((void **)&w->vbuf, PAGE,
				   (size_t)VBUF_SECTORS * SECTOR))
			fail("out of memory");
		heartbeat(w);
	}
}

int main(int argc, char **argv)
{
	pthread_t wd;
	const char *why = NULL, *name;
	uint64_t next_rot, next_nbd, next_print;
	unsigned int i, nbd_nr = 0;
	double secs;
	int n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	parse_args(argc, argv);
	if (opt.self_test)
		atomic_store(&fail_status, 2);
	n = snprintf(rerun, sizeof(rerun), "%s --seed %" PRIu64, argv[0],
		     opt.seed);
	for (i = 1; i < (unsigned int)argc && n < (int)sizeof(rerun); i++) {
		if (!strcmp(argv[i], "--seed")) {
			i++;
			continue;
		}
		n += snprintf(rerun + n, sizeof(rerun) - (size_t)n, " %s",
			      argv[i]);
	}
	t_start = tl_now_ns();
	rng_seed(&ctl_rng, opt.seed ^ 0xc0ffeeull);
	printf("soak: seed %" PRIu64 " (%s mode: %s%" PRIu64 " I/Os, %u s; "
	       "%u request workers, %u seed-API workers, 1 churn; qd %u)\n",
	       opt.seed, opt.mode, opt.ios ? "" : "unbounded ", opt.ios,
	       opt.seconds, opt.workers, opt.seed_workers, opt.qd);
	printf("rerun: %s\n", rerun);
	install_handlers();
	sanity_checks();

	snprintf(workdir, sizeof(workdir), "%s/dmio-soak.%d", opt.dir,
		 (int)getpid());
	if (mkdir(workdir, 0700))
		fail("mkdir %s: %s", workdir, strerror(errno));
	/* A second client on the thread-pool backend. */
	setenv("DMIO_BACKEND", "threads", 1);
	client_threads = dm_io_client_create();
	unsetenv("DMIO_BACKEND");
	client_uring = dm_io_client_create();
	if (!client_threads || !client_uring)
		fail("dm_io_client_create: %s", strerror(errno));
	name = dm_io_client_backend(client_uring, &why);
	printf("clients: %s (%s), %s\n", name, why,
	       dm_io_client_backend(client_threads, NULL));

	setup_file("file0", true);
	setup_file("file1", false);
	if (!opt.no_loop && setup_loop("loop512", 512))
		setup_loop("loop4k", 4096);
	if (opt.no_nbd)
		printf("  note: --no-nbd: no NBD exports\n");
	else if (!nbdkit_available(NULL, 0))
		printf("  note: nbdkit is not installed: no NBD exports "
		       "(Debian package nbdkit)\n");
	else {
		setup_nbd("nbdmem", K_NBD_MEM);
		setup_nbd("nbdfile", K_NBD_FILE);
	}
	if (opt.self_test) {
		struct store *st = &stores[0];
		struct view *v = &st->views[st->nviews];
		const struct slot *s = &st->slots[total_workers()];

		/* Worker 0's first small slot drops writes, and the model is
		 * not told. */
		v->f.drop_start = s->start + GUARD;
		v->f.drop_len = 8;
		add_view(st, "dropper", 0, false);
	}
	for (i = 0; i < nstores; i++) {
		struct store *st = &stores[i];
		unsigned int k;

		printf("  %-8s %-24.24s %6.1f MiB, %u-byte blocks, views:",
		       st->name, st->dev,
		       (double)(st->nr_sectors * SECTOR) / 1048576.0, st->lbs);
		for (k = 0; k < st->nviews; k++)
			printf(" %s", st->views[k].label);
		printf("\n");
	}

	setup_workers();
	atomic_store(&main_heartbeat, tl_now_ns());
	ctl_beat("running");
	if (pthread_create(&wd, NULL, watchdog_main, NULL))
		fail("pthread_create");
	pthread_detach(wd);
	t_load = tl_now_ns();
	for (i = 0; i < nworkers; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main,
				   &workers[i]))
			fail("pthread_create");

	next_rot = t_load + 300000000ull;
	next_nbd = t_load + (uint64_t)opt.nbd_every * 1000000000u;
	next_print = t_load + 5000000000ull;
	for (;;) {
		uint64_t now = tl_now_ns(), ios = atomic_load(&g.ops);

		tl_sleep_ms(20);
		ctl_beat("running");
		if (opt.ios && ios >= opt.ios)
			break;
		if (opt.seconds &&
		    now - t_load >= (uint64_t)opt.seconds * 1000000000u)
			break;
		if (now >= next_print) {
			printf("  %5.1f s: %" PRIu64 " I/Os (%.0f/s)\n",
			       (double)(now - t_load) / 1e9, ios,
			       (double)ios * 1e9 / (double)(now - t_load));
			next_print += 5000000000ull;
		}
		if (now >= next_rot) {
			rotate_one();
			next_rot = tl_now_ns() + 200000000ull +
				   below(&ctl_rng, 600000000ull);
		}
		if (now >= next_nbd) {
			nbd_event(nbd_nr++);
			next_nbd = tl_now_ns() +
				   (uint64_t)opt.nbd_every * 1000000000u;
		}
	}
	atomic_store(&stop_flag, true);
	ctl_beat("waiting for the workers to finish");
	for (i = 0; i < nworkers; i++)
		pthread_join(workers[i].thread, NULL);
	secs = (double)(tl_now_ns() - t_load) / 1e9;
	if (atomic_load(&g.bad_callbacks))
		fail("%lu callbacks of refused requests ran",
		     atomic_load(&g.bad_callbacks));
	final_check(&workers[0]);
	for (i = 0; i < nstores; i++) {
		unsigned int k;

		for (k = 0; k < stores[i].nviews; k++)
			view_close(&stores[i].views[k]);
	}
	ctl_beat("destroying clients");
	dm_io_client_destroy(client_uring);
	dm_io_client_destroy(client_threads);
	print_summary(secs);
	printf("PASS\n");
	return 0;
}

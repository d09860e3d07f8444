/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * soak - the report: failing with the seed and the requests involved, cleaning
 * up on any exit, the watchdog and the summary.
 */
#include "soak.h"

/* ---- errno names ---- */

const char *errname(int err)
{
	static const struct {
		int err;
		const char *name;
	} names[] = {
		{0, "0"},
		{EIO, "EIO"},
		{ENOSPC, "ENOSPC"},
		{EROFS, "EROFS"},
		{ENXIO, "ENXIO"},
		{EINVAL, "EINVAL"},
		{EOPNOTSUPP, "EOPNOTSUPP"},
		{ECONNRESET, "ECONNRESET"},
		{ETIMEDOUT, "ETIMEDOUT"},
		{ENOTCONN, "ENOTCONN"},
		{EPIPE, "EPIPE"},
		{ESHUTDOWN, "ESHUTDOWN"},
		{ECONNREFUSED, "ECONNREFUSED"},
		{ECONNABORTED, "ECONNABORTED"},
		{ENOMEM, "ENOMEM"},
		{EDEADLK, "EDEADLK"},
		{EBUSY, "EBUSY"},
		{ECANCELED, "ECANCELED"},
	};
	static _Thread_local char buf[24];
	size_t i;

	if (err < 0)
		err = -err;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].err == err)
			return names[i].name;
	snprintf(buf, sizeof(buf), "errno %d", err);
	return buf;
}

/* What a dead or stuck NBD connection may report. */
bool conn_errno(int err)
{
	if (err < 0)
		err = -err;
	return err == ECONNRESET || err == ETIMEDOUT || err == EIO ||
	       err == ENOTCONN || err == EPIPE || err == ESHUTDOWN ||
	       err == ECONNREFUSED || err == ECONNABORTED;
}

/* ---- counters ---- */

const char *const op_names[] = {"read", "write", "flush", "discard",
				"write-zeroes"};

const char *const mem_names[] = {"page-list", "bvec", "vma", "kmem"};
struct counters g;

/* ---- failing ---- */

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

/* Exit status of a failed run: 1 for a discrepancy the checks found.  In
 * --self-test mode only the deliberate lost write may give 1; anything
 * else gives 2, so that "detected" cannot be confused with "broken". */
atomic_int fail_status = 1;

/* Workers write their request history while a failing thread prints it. */
pthread_mutex_t hist_lock = PTHREAD_MUTEX_INITIALIZER;

static void dump_history(uint64_t id)
{
	unsigned int i, k;

	if (!id)
		return;
	pthread_mutex_lock(&hist_lock);
	for (i = 0; i < nworkers; i++)
		for (k = 0; k < HIST; k++)
			if (workers[i].hist[k].id == id)
				fprintf(stderr,
					"  request %016" PRIx64 ": %s\n", id,
					workers[i].hist[k].desc);
	pthread_mutex_unlock(&hist_lock);
}

/* The end of the NBD servers' log: whether an nbdkit died on its own
 * (an assertion, say) is told there, and the log goes with cleanup(). */
static void dump_nbdkit_log(void)
{
	char path[PATH_MAX + 16], buf[2048];
	size_t n;
	FILE *f;
	long size;

	if (!workdir[0])
		return;
	snprintf(path, sizeof(path), "%s/nbdkit.log", workdir);
	f = fopen(path, "r");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	if (size > 0) {
		fseek(f,
		      size > (long)sizeof(buf) ? size - (long)sizeof(buf) : 0,
		      SEEK_SET);
		n = fread(buf, 1, sizeof(buf), f);
		fprintf(stderr, "  the end of nbdkit's log:\n%.*s\n", (int)n,
			buf);
	}
	fclose(f);
}

static _Noreturn void fail_v(uint64_t id1, uint64_t id2, const char *fmt,
			     va_list ap)
{
	pthread_mutex_lock(&fail_lock);
	fflush(stdout);
	fprintf(stderr, "\nSOAK FAILED (seed %" PRIu64 "): ", opt.seed);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	dump_history(id1);
	if (id2 != id1)
		dump_history(id2);
	fprintf(stderr, "  after %lu I/Os, %.1f s\n", atomic_load(&g.ops),
		(double)(tl_now_ns() - t_start) / 1e9);
	fprintf(stderr, "rerun: %s\n", rerun);
	dump_nbdkit_log();
	fflush(stderr);
	cleanup();
	_exit(atomic_load(&fail_status));
}

_Noreturn __attribute__((format(printf, 1, 2))) void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fail_v(0, 0, fmt, ap);
}

_Noreturn __attribute__((format(printf, 3, 4))) void
fail_req(uint64_t id1, uint64_t id2, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fail_v(id1, id2, fmt, ap);
}

/* ---- cleanup ---- */

static atomic_bool cleaned;

void cleanup(void)
{
	unsigned int i;

	if (atomic_exchange(&cleaned, true))
		return;
	/* Signal-safe: this runs from handlers too. */
	nbdkit_kill_all();
	for (i = 0; i < nstores; i++) {
		struct store *st = &stores[i];

		if (st->path[0])
			unlink(st->path);
		/* Loop devices are set up to clear themselves when their
		 * last user goes: our descriptors die with us. */
	}
	if (workdir[0]) {
		char log[PATH_MAX + 16];

		snprintf(log, sizeof(log), "%s/nbdkit.log", workdir);
		unlink(log);
		rmdir(workdir);
	}
}

static char sig_msg[160];

/* In a sanitizer build, a report ends the process without atexit(). */
extern void __sanitizer_set_death_callback(void (*callback)(void))
	__attribute__((weak));

static void on_signal(int sig)
{
	ssize_t r = write(STDERR_FILENO, sig_msg, strlen(sig_msg));

	(void)r;
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

void install_handlers(void)
{
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGSEGV,
				   SIGBUS, SIGFPE,  SIGILL, SIGABRT};
	struct sigaction sa = {0};
	size_t i;

	snprintf(sig_msg, sizeof(sig_msg),
		 "\nsoak: killed by a signal (seed %" PRIu64 "); cleaning up\n",
		 opt.seed);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	atexit(cleanup);
	if (__sanitizer_set_death_callback)
		__sanitizer_set_death_callback(cleanup);
}

/* ---- the watchdog ---- */

void *watchdog_main(void *arg)
{
	uint64_t limit = (uint64_t)opt.watchdog * 1000000000u;

	(void)arg;
	for (;;) {
		uint64_t now;
		unsigned int i;

		tl_sleep_ms(500);
		now = tl_now_ns();
		if (now > atomic_load(&main_heartbeat) + limit)
			fail("watchdog: the controller made no progress for "
			     "%u s (%s)",
			     opt.watchdog, atomic_load(&main_doing));
		for (i = 0; i < nworkers; i++) {
			struct worker *w = &workers[i];

			if (atomic_load(&w->doing) == DONE)
				continue;
			if (now > atomic_load(&w->heartbeat) + limit)
				fail_req(
					(uint64_t)atomic_load(&w->doing_id), 0,
					"watchdog: worker %u made no progress "
					"for %u s (%s, request %016" PRIx64 ")",
					i, opt.watchdog, atomic_load(&w->doing),
					(uint64_t)atomic_load(&w->doing_id));
		}
	}
	return NULL;
}

/* ---- the summary ---- */

static void sum_stats(struct stats *t)
{
	unsigned int i, k;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < nworkers; i++) {
		const uint64_t *src = (const uint64_t *)&workers[i].st;
		uint64_t *dst = (uint64_t *)t;

		for (k = 0; k < sizeof(*t) / sizeof(uint64_t); k++)
			dst[k] += src[k];
	}
}

void print_summary(double secs)
{
	struct stats t;
	uint64_t total, fails = 0;
	unsigned int i;

	sum_stats(&t);
	total = t.sync + t.async;
	printf("\nsummary (seed %" PRIu64 ", %s mode):\n", opt.seed, opt.mode);
	printf("  I/Os: %" PRIu64 " requests in %.1f s (%.0f/s): sync %" PRIu64
	       ", async %" PRIu64 "; request API %" PRIu64 ", seed API %" PRIu64
	       "\n",
	       total, secs, (double)total / secs, t.sync, t.async, t.req_api,
	       t.seed_api);
	printf("    by op:");
	for (i = 0; i < NR_OPS; i++)
		printf(" %s %" PRIu64, op_names[i], t.ops[i]);
	printf("; refused as invalid %" PRIu64 "\n", t.invalid);
	printf("    by memory:");
	for (i = 0; i < 4; i++)
		printf(" %s %" PRIu64, mem_names[i], t.mem[i]);
	printf("; big (0.75-1.5 MiB) %" PRIu64 "\n", t.big);
	printf("    regions %" PRIu64 "; written %.1f MiB, read %.1f MiB\n",
	       t.regions, (double)t.bytes_written / 1048576.0,
	       (double)t.bytes_read / 1048576.0);
	printf("  faults injected:\n");
	printf("    fault: views opened %lu (rotations %lu): rules fail %lu, "
	       "fail-reads %lu, fail-writes %lu (of which all %lu); "
	       "errno EIO %lu, ENOSPC %lu; after=N %lu; delay %lu\n",
	       atomic_load(&g.fault_opens), atomic_load(&g.rotations),
	       atomic_load(&g.rule_fail), atomic_load(&g.rule_fail_reads),
	       atomic_load(&g.rule_fail_writes), atomic_load(&g.rule_all),
	       atomic_load(&g.rule_eio), atomic_load(&g.rule_enospc),
	       atomic_load(&g.rule_after), atomic_load(&g.rule_delay));
	printf("    special regions: past the end %" PRIu64
	       ", misaligned %" PRIu64 ", writes to read-only %" PRIu64
	       ", count 0 %" PRIu64 "\n",
	       t.past_end, t.misaligned, t.rdonly_writes, t.count0);
	printf("    NBD servers killed %lu, stopped %lu, restarted %lu\n",
	       atomic_load(&g.nbd_kills), atomic_load(&g.nbd_stops),
	       atomic_load(&g.nbd_restarts));
	printf("    regions failed, by errno:");
	for (i = 0; i < 160; i++) {
		if (!t.region_fail[i])
			continue;
		printf(" %s %" PRIu64,
		       i ? errname((int)i) : "(seed API, bits only)",
		       t.region_fail[i]);
		fails += t.region_fail[i];
	}
	printf(" (total %" PRIu64 "; injected-and-armed %" PRIu64
	       ", injected-maybe %" PRIu64 ")\n",
	       fails, t.injected_must, t.injected_may);
	printf("  clients destroyed under load %lu (from a callback %lu); "
	       "chained submits from callbacks %lu; dm_io_get/put cycles %lu; "
	       "EDEADLK checks %lu\n",
	       atomic_load(&g.destroys) + atomic_load(&g.destroys_cb),
	       atomic_load(&g.destroys_cb), atomic_load(&g.chained),
	       atomic_load(&g.getputs), atomic_load(&g.edeadlk));
	printf("  verified: %.1f MiB against the model (%" PRIu64
	       " verify reads, %" PRIu64 " sweeps, %" PRIu64
	       " unknown sectors resolved), %.1f MiB raw from backing files\n",
	       (double)t.bytes_verified / 1048576.0, t.verify_reads, t.sweeps,
	       t.adopted, (double)atomic_load(&g.raw_bytes) / 1048576.0);
	printf("  seconds: %.1f load, %.1f total\n", secs,
	       (double)(tl_now_ns() - t_start) / 1e9);
}

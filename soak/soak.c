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
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/loop.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dmio/dm-io.h>

#define SECTOR		 512u
#define PAGE		 4096u
#define MAX_STORES	 6
#define MAX_VIEWS	 6
#define MAX_REG		 8
#define MAX_RULES	 3
#define MAX_WORKERS	 16
#define GUARD		 8u    /* sectors left around every region */
#define SMALL_SLOT	 256u  /* 128 KiB */
#define BIG_SLOT	 3072u /* 1.5 MiB: several transfers and bounces */
#define SMALL_PER_WORKER 12u
#define NBD_TIMEOUT_MS	 3000u
#define HIST		 64	       /* requests remembered per worker */
#define MAGIC		 0x534f414bull /* "SOAK" */
#define INIT_ID		 (0xffffull << 48)
#define CANARY		 0xa5
#define READ_FILL	 0x5a
#define VBUF_SECTORS	 2048u /* verify reads: 1 MiB at a time */

/* ---- options ---- */

static struct {
	uint64_t seed;
	uint64_t ios;
	unsigned int seconds;
	unsigned int workers; /* request-API workers */
	unsigned int seed_workers;
	unsigned int qd;
	unsigned int watchdog;
	unsigned int nbd_every; /* seconds between NBD kills/stops */
	bool self_test, no_loop, no_nbd, verbose, have_seed;
	const char *dir;
	const char *mode;
} opt = {
	.workers = 4,
	.seed_workers = 2,
	.qd = 8,
	.watchdog = 60,
	.dir = "/dev/shm",
	.mode = "default",
};

/* ---- small helpers ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *g, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++)
		g->s[i] = splitmix(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rnd(struct rng *g)
{
	uint64_t *s = g->s, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

static uint64_t below(struct rng *g, uint64_t n)
{
	return n ? rnd(g) % n : 0;
}

static bool chance(struct rng *g, unsigned int pct)
{
	return below(g, 100) < pct;
}

static const char *errname(int err)
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
static bool conn_errno(int err)
{
	if (err < 0)
		err = -err;
	return err == ECONNRESET || err == ETIMEDOUT || err == EIO ||
	       err == ENOTCONN || err == EPIPE || err == ESHUTDOWN ||
	       err == ECONNREFUSED || err == ECONNABORTED;
}

/* ---- the model ---- */

enum store_kind {
	K_FILE,
	K_LOOP,
	K_NBD_MEM,
	K_NBD_FILE
};
enum {
	S_ONLINE,
	S_DYING,
	S_OFFLINE
};
enum {
	V_ACTIVE,
	V_RETIRING
};

#define R_READ	1u
#define R_WRITE 2u

struct rule {
	uint64_t start, end; /* sectors; end UINT64_MAX: "all" */
	unsigned int ops;
};

struct faults {
	unsigned int nr;
	struct rule r[MAX_RULES];
	int err; /* positive */
	uint64_t after;
	unsigned int delay_ms;
	uint64_t drop_start, drop_len; /* --self-test only: not in the model */
};

struct store;

struct view {
	struct store *st;
	char label[16];
	unsigned int open_flags;
	bool is_fault, rdonly;
	struct block_device *bdev;
	struct faults f;
	bool direct, contig;
	unsigned int lbs;
	uint64_t discard_max;
	atomic_int state;
	atomic_uint inflight;
	atomic_ulong chunks; /* regions that reached the device since open */
	unsigned int opens;
	char spec[1024];
};

struct slot {
	uint64_t start, len;
	unsigned int owner;
	bool big;
	bool busy; /* owner only */
};

struct store {
	char name[16];
	enum store_kind kind;
	char path[320]; /* backing file */
	char dev[384];	/* what dm_bdev_open() takes */
	char sock[320], pidfile[320];
	atomic_int pid;
	int loopfd;
	unsigned int lbs;
	bool is_blk, discard_zeroes;
	uint64_t nr_sectors;
	uint8_t *data, *known;
	uint64_t *last; /* the request that last changed each sector */
	struct slot *slots;
	unsigned int nslots;
	struct view views[MAX_VIEWS];
	unsigned int nviews;
	atomic_int state;
	atomic_uint inflight;
	atomic_uint kills;
	unsigned int restarts;
};

static struct store stores[MAX_STORES];
static unsigned int nstores;
static char workdir[256];
static char nbdkit_path[PATH_MAX];

/* ---- requests ---- */

enum {
	E_OK,
	E_MAY,
	E_MUST
};
#define EM_EROFS      1u
#define EM_ENXIO      2u
#define EM_EINVAL     4u
#define EM_EOPNOTSUPP 8u

struct rexp {
	struct store *st;
	struct view *v;
	int slot; /* held by this request, or -1 */
	uint64_t sector, count;
	int mode, err; /* err positive */
	bool early;
	unsigned int early_mask; /* EM_*: every reason that applies */
	unsigned int kills;
	bool dying;
	/* A failed read leaves zeroes in each of these sector ranges: the
	 * whole region when it is refused at planning, else every armed
	 * rule's part of it (not what lies between two rules). */
	uint64_t fz_lo[MAX_RULES], fz_hi[MAX_RULES];
	unsigned int nfz;
};

struct membuf {
	int type;
	size_t len;
	struct page_list *nodes;
	struct page **pages;
	unsigned int npages;
	unsigned int pl_off;
	struct bio_vec *bv;
	unsigned int nbv;
	uint8_t *raw, *addr;
	size_t rawlen;
};

struct worker;
struct round;

struct req {
	struct worker *w;
	struct req *next;
	uint64_t id;
	unsigned int op, opf;
	bool seed, async, invalid, big, verify;
	int inv_kind;
	unsigned int nr;
	struct io_region where[MAX_REG];
	struct rexp e[MAX_REG];
	int region_errors[MAX_REG];
	bool want_errs, want_bits;
	unsigned short ioprio;
	size_t len;
	uint8_t *data; /* write: the data; read: what came back */
	struct membuf mb;
	struct dm_io_client *client;
	atomic_int called;
	unsigned long bits;
	int ret;
	uint64_t t_submit;
	struct round *round;
	struct req *chain_next;
	bool submitted;
	struct bio_vec saved_bv; /* an entry an invalid request broke */
	unsigned int saved_k;
};

/* ---- statistics ---- */

enum {
	OP_READ,
	OP_WRITE,
	OP_FLUSH,
	OP_DISCARD,
	OP_ZEROES,
	NR_OPS
};
static const char *const op_names[] = {"read", "write", "flush", "discard",
				       "write-zeroes"};
static const char *const mem_names[] = {"page-list", "bvec", "vma", "kmem"};

struct stats {
	uint64_t ops[NR_OPS];
	uint64_t sync, async, seed_api, req_api, invalid, big;
	uint64_t mem[4];
	uint64_t regions, bytes_written, bytes_read, bytes_verified;
	uint64_t verify_reads, sweeps, adopted;
	uint64_t region_fail[160];
	uint64_t injected_may, injected_must;
	uint64_t count0, past_end, misaligned, rdonly_writes;
};

struct hist {
	uint64_t id;
	char desc[240];
};

enum wkind {
	W_REQ,
	W_SEED,
	W_CHURN
};

struct worker {
	unsigned int idx;
	enum wkind kind;
	struct rng rng;
	pthread_t thread;
	struct dm_io_client *client, *vclient;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct req *done;
	unsigned int inflight;
	uint64_t nios, next_sweep, seq;
	atomic_ullong heartbeat;
	/* What it is doing, for the watchdog: a constant string, and the
	 * request concerned (0: none). */
	_Atomic(const char *) doing;
	atomic_ullong doing_id;
	unsigned int reserved, left; /* W_SEED: pages held, ops left */
	uint8_t *vbuf;
	struct stats st;
	struct hist hist[HIST];
	unsigned int nhist;
};

static struct worker workers[MAX_WORKERS];
static unsigned int nworkers;

static struct {
	atomic_ulong ops;
	atomic_ulong nbd_kills, nbd_stops, nbd_restarts, rotations;
	atomic_ulong fault_opens, rule_fail, rule_fail_reads, rule_fail_writes;
	atomic_ulong rule_all, rule_eio, rule_enospc, rule_after, rule_delay;
	atomic_ulong destroys, destroys_cb, chained, getputs;
	atomic_ulong edeadlk, bad_callbacks, raw_bytes;
} g;

static atomic_bool stop_flag;
static struct dm_io_client *client_uring, *client_threads;
static atomic_ullong main_heartbeat;
static _Atomic(const char *) main_doing;
static uint64_t t_start, t_load;
static struct rng ctl_rng;
static char rerun[512];

/* ---- failing ---- */

static void cleanup(void);
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
/* Exit status of a failed run: 1 for a discrepancy the checks found.  In
 * --self-test mode only the deliberate lost write may give 1; anything
 * else gives 2, so that "detected" cannot be confused with "broken". */
static atomic_int fail_status = 1;
/* Workers write their request history while a failing thread prints it. */
static pthread_mutex_t hist_lock = PTHREAD_MUTEX_INITIALIZER;

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
		(double)(now_ns() - t_start) / 1e9);
	fprintf(stderr, "rerun: %s\n", rerun);
	fflush(stderr);
	cleanup();
	_exit(atomic_load(&fail_status));
}

static _Noreturn __attribute__((format(printf, 1, 2))) void
fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fail_v(0, 0, fmt, ap);
}

static _Noreturn __attribute__((format(printf, 3, 4))) void
fail_req(uint64_t id1, uint64_t id2, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fail_v(id1, id2, fmt, ap);
}

/* ---- data patterns ---- */

/* Every 512-byte block starts with the request id and the block index, so
 * that a misplaced or stale sector says where it came from. */
static void gen_data(uint8_t *buf, size_t len, uint64_t id, uint64_t first)
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

static bool all_byte(const uint8_t *p, size_t n, uint8_t b)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != b)
			return false;
	return true;
}

static void describe_sector(const uint8_t *p, char *out, size_t size)
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

/* ---- cleanup ---- */

static atomic_bool cleaned;

static void cleanup(void)
{
	unsigned int i;

	if (atomic_exchange(&cleaned, true))
		return;
	for (i = 0; i < nstores; i++) {
		struct store *st = &stores[i];
		pid_t pid = atomic_load(&st->pid);

		if (pid > 0)
			kill(pid, SIGKILL);
		if (st->path[0])
			unlink(st->path);
		if (st->sock[0])
			unlink(st->sock);
		if (st->pidfile[0])
			unlink(st->pidfile);
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

static void install_handlers(void)
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

/* ---- stores and views ---- */

static bool store_get(struct store *st)
{
	atomic_fetch_add(&st->inflight, 1);
	if (atomic_load(&st->state) == S_OFFLINE) {
		atomic_fetch_sub(&st->inflight, 1);
		return false;
	}
	return true;
}

static void store_put(struct store *st)
{
	atomic_fetch_sub(&st->inflight, 1);
}

static bool view_get(struct view *v)
{
	atomic_fetch_add(&v->inflight, 1);
	if (atomic_load(&v->state) != V_ACTIVE) {
		atomic_fetch_sub(&v->inflight, 1);
		return false;
	}
	return true;
}

static void view_put(struct view *v)
{
	atomic_fetch_sub(&v->inflight, 1);
}

static bool store_is_nbd(const struct store *st)
{
	return st->kind == K_NBD_MEM || st->kind == K_NBD_FILE;
}

static void faults_string(const struct faults *f, char *out, size_t size)
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

static void random_faults(struct rng *r, const struct store *st,
			  struct faults *f)
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

static int view_open(struct view *v)
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

static void view_close(struct view *v)
{
	int ret = dm_bdev_close(v->bdev);

	if (ret)
		fail("dm_bdev_close(%s) = %s with none of our I/O in flight",
		     v->spec, errname(ret));
	v->bdev = NULL;
}

static void add_view(struct store *st, const char *label, unsigned int flags,
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

static unsigned int total_workers(void)
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
static void model_init(struct store *st, bool zero)
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

static void write_backing(struct store *st)
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

static struct store *new_store(const char *name, enum store_kind kind)
{
	struct store *st = &stores[nstores++];

	snprintf(st->name, sizeof(st->name), "%s", name);
	st->kind = kind;
	st->loopfd = -1;
	st->lbs = 512;
	atomic_init(&st->state, S_ONLINE);
	atomic_init(&st->pid, 0);
	layout_slots(st);
	model_init(st, false);
	snprintf(st->path, sizeof(st->path), "%s/%s.img", workdir, name);
	return st;
}

static void setup_file(const char *name, bool with_direct)
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

static bool setup_loop(const char *name, unsigned int lbs)
{
	struct store *st;
	int ctl, tries;

	if (geteuid() != 0) {
		printf("  note: not root: no loop devices (%s skipped)\n",
		       name);
		return false;
	}
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		printf("  note: /dev/loop-control: %s: no loop devices (%s "
		       "skipped)\n",
		       strerror(errno), name);
		return false;
	}
	st = new_store(name, K_LOOP);
	st->is_blk = true;
	write_backing(st);
	for (tries = 0; tries < 32; tries++) {
		int nr = ioctl(ctl, LOOP_CTL_GET_FREE), bfd;
		struct loop_config cfg;

		if (nr < 0)
			break;
		snprintf(st->dev, sizeof(st->dev), "/dev/loop%d", nr);
		st->loopfd = open(st->dev, O_RDWR | O_CLOEXEC);
		if (st->loopfd < 0)
			continue;
		bfd = open(st->path, O_RDWR | O_CLOEXEC);
		if (bfd < 0)
			fail("open %s: %s", st->path, strerror(errno));
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (unsigned int)bfd;
		cfg.block_size = lbs;
		/* Detached by the kernel when our descriptors close, even
		 * if we crash. */
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		memcpy(cfg.info.lo_file_name, st->path,
		       min_u64(strlen(st->path),
			       sizeof(cfg.info.lo_file_name) - 1));
		if (!ioctl(st->loopfd, LOOP_CONFIGURE, &cfg)) {
			close(bfd);
			close(ctl);
			st->lbs = lbs;
			add_view(st, "plain", 0, false);
			add_view(st, "buffered", DM_BDEV_BUFFERED, false);
			add_view(st, "rdonly", DM_BDEV_RDONLY, false);
			add_view(st, "fault1", 0, true);
			add_view(st, "fault2", DM_BDEV_BUFFERED, true);
			return true;
		}
		close(bfd);
		close(st->loopfd);
		st->loopfd = -1;
		if (errno != EBUSY)
			break;
	}
	fail("cannot set up a loop device for %s: %s", name, strerror(errno));
}

static bool find_nbdkit(void)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL;

	if (!path)
		path = "/usr/bin:/bin";
	copy = strdup(path);
	if (!copy)
		return false;
	for (dir = strtok_r(copy, ":", &save); dir;
	     dir = strtok_r(NULL, ":", &save)) {
		struct stat sb;

		/* A regular file: meson puts library directories on PATH, and
		 * /usr/lib/<triplet>/nbdkit is nbdkit's plugin directory. */
		snprintf(nbdkit_path, sizeof(nbdkit_path), "%s/nbdkit", dir);
		if (!stat(nbdkit_path, &sb) && S_ISREG(sb.st_mode) &&
		    !access(nbdkit_path, X_OK)) {
			free(copy);
			return true;
		}
	}
	free(copy);
	nbdkit_path[0] = '\0';
	return false;
}

/* Start nbdkit for @st from the main thread (PR_SET_PDEATHSIG follows the
 * thread that forks), and wait until it listens. */
static void nbd_start(struct store *st)
{
	char size_arg[64], file_arg[PATH_MAX + 8], log[PATH_MAX + 16];
	char *argv[16];
	unsigned int n = 0;
	uint64_t deadline;
	pid_t pid, parent = getpid();
	struct stat sb;
	int logfd;

	unlink(st->sock);
	unlink(st->pidfile);
	snprintf(size_arg, sizeof(size_arg), "size=%" PRIu64,
		 st->nr_sectors * SECTOR);
	snprintf(file_arg, sizeof(file_arg), "file=%s", st->path);
	snprintf(log, sizeof(log), "%s/nbdkit.log", workdir);
	argv[n++] = nbdkit_path;
	argv[n++] = "--exit-with-parent";
	argv[n++] = "-f";
	argv[n++] = "-U";
	argv[n++] = st->sock;
	argv[n++] = "-P";
	argv[n++] = st->pidfile;
	if (st->kind == K_NBD_MEM) {
		argv[n++] = "memory";
		argv[n++] = size_arg;
	} else {
		argv[n++] = "file";
		argv[n++] = file_arg;
	}
	argv[n] = NULL;
	logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		sigset_t none;
		int null = open("/dev/null", O_RDWR);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		if (logfd >= 0) {
			dup2(logfd, STDOUT_FILENO);
			dup2(logfd, STDERR_FILENO);
		}
		execv(nbdkit_path, argv);
		_exit(127);
	}
	if (logfd >= 0)
		close(logfd);
	atomic_store(&st->pid, pid);
	deadline = now_ns() + 10000000000ull;
	while (stat(st->pidfile, &sb) || !sb.st_size) {
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			atomic_store(&st->pid, 0);
			fail("nbdkit for %s exited at start (see %s)", st->name,
			     log);
		}
		if (now_ns() > deadline)
			fail("nbdkit for %s did not start in 10 s", st->name);
		sleep_ms(5);
	}
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

static void setup_nbd(const char *name, enum store_kind kind)
{
	struct store *st = new_store(name, kind);

	snprintf(st->sock, sizeof(st->sock), "%s/%s.sock", workdir, name);
	snprintf(st->pidfile, sizeof(st->pidfile), "%s/%s.pid", workdir, name);
	snprintf(st->dev, sizeof(st->dev), "nbd+unix:///?socket=%s", st->sock);
	if (kind == K_NBD_FILE)
		write_backing(st);
	else
		st->path[0] = '\0';
	nbd_start(st);
	nbd_views(st);
	if (kind == K_NBD_MEM)
		fill_through_library(st);
}

/* ---- memory buffers ---- */

static struct page *page_new(void)
{
	struct page *p = dm_page_alloc();

	if (!p)
		fail("dm_page_alloc: %s", strerror(errno));
	memset(dm_page_address(p), CANARY, PAGE);
	return p;
}

static void mb_build(struct rng *r, struct membuf *m, int type, size_t len,
		     bool big)
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
static void mb_copy(struct membuf *m, uint8_t *contig, bool to_mem)
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
static bool mb_canary_ok(const struct membuf *m)
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

/* ---- expectations ---- */

static bool overlaps(const struct rule *ru, uint64_t a, uint64_t b)
{
	return ru->end == UINT64_MAX || (a < ru->end && b > ru->start);
}

static void expect_region(struct req *r, struct rexp *e)
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

/* ---- building requests ---- */

static void describe_req(struct worker *w, const struct req *r)
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

static void release_regions(struct req *r)
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

static void free_req(struct req *r)
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

/* ---- completion checks ---- */

static void count_fail(struct worker *w, int err)
{
	if (err < 0)
		err = -err;
	if (err >= 0 && err < 160)
		w->st.region_fail[err]++;
}

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
static void compare_model(struct worker *w, struct store *st, uint64_t start,
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

/* Is -@err what region @e may fail with (apart from connection trouble)? */
static bool errno_allowed(const struct rexp *e, int err)
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

static bool store_troubled(const struct rexp *e)
{
	return e->dying || atomic_load(&e->st->kills) != e->kills;
}

/* Read sectors [start, start+count) of @st (clamped to the slot) through
 * the plain view and compare with the model. */
static void verify_range(struct worker *w, struct store *st, int slot,
			 uint64_t start, uint64_t count, uint64_t id,
			 const char *why)
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

static void model_set(struct store *st, uint64_t sector, uint64_t count,
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

static const char DONE[] = "done";

static void set_doing(struct worker *w, const char *what, uint64_t id)
{
	atomic_store(&w->doing_id, id);
	atomic_store(&w->doing, what);
}

static void heartbeat(struct worker *w)
{
	atomic_store(&w->heartbeat, now_ns());
}

/* Everything about a completed (or refused) request. */
static void finish(struct worker *w, struct req *r)
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

static int submit_req(struct req *r, unsigned long *bits)
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
	r->t_submit = now_ns();
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
		n->t_submit = now_ns();
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
		reqs[i]->t_submit = now_ns();
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
			sleep_ms(1);
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

/* ---- threads ---- */

/* --self-test: one write through a drop-writes fault: device that the
 * model is not told about.  The read-back must catch it and fail the run. */
static void self_test(struct worker *w)
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

static void *worker_main(void *arg)
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
				sleep_ms(1);
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

static void *watchdog_main(void *arg)
{
	uint64_t limit = (uint64_t)opt.watchdog * 1000000000u;

	(void)arg;
	for (;;) {
		uint64_t now;
		unsigned int i;

		sleep_ms(500);
		now = now_ns();
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

/* ---- the controller ---- */

static void ctl_beat(const char *what)
{
	atomic_store(&main_doing, what);
	atomic_store(&main_heartbeat, now_ns());
}

static void wait_zero(atomic_uint *n, const char *what)
{
	ctl_beat(what);
	while (atomic_load(n))
		sleep_ms(1);
	ctl_beat("running");
}

static void rotate_one(void)
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

static void nbd_event(unsigned int nr)
{
	struct store *cand[MAX_STORES], *st;
	unsigned int n = 0, i;
	bool stop_it = nr % 2;
	pid_t pid;
	int status;

	for (i = 0; i < nstores; i++)
		if (store_is_nbd(&stores[i]))
			cand[n++] = &stores[i];
	if (!n)
		return;
	st = cand[(nr / 2) % n];
	pid = atomic_load(&st->pid);
	if (opt.verbose)
		printf("  %s nbdkit of %s (pid %d)\n",
		       stop_it ? "stopping" : "killing", st->name, (int)pid);
	atomic_fetch_add(&st->kills, 1);
	atomic_store(&st->state, S_DYING);
	if (stop_it) {
		/* A server that stops answering: requests time out. */
		kill(pid, SIGSTOP);
		atomic_fetch_add(&g.nbd_stops, 1);
		ctl_beat("waiting while nbdkit is stopped");
		sleep_ms(NBD_TIMEOUT_MS + 1500);
	} else {
		atomic_fetch_add(&g.nbd_kills, 1);
	}
	/* Killed while stopped: it must not act on what it still holds. */
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	atomic_store(&st->pid, 0);
	ctl_beat("after killing nbdkit");
	if (!stop_it)
		sleep_ms(500); /* requests meet the dead server */
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

/* ---- the end: everything read back, independently where possible ---- */

static void final_check(struct worker *w)
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
		if (st->kind == K_LOOP && fsync(st->loopfd))
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

static void print_summary(double secs)
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
	       (double)(now_ns() - t_start) / 1e9);
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
			opt.seed = now_ns();
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
	t_start = now_ns();
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
	else if (!find_nbdkit())
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
	atomic_store(&main_heartbeat, now_ns());
	ctl_beat("running");
	if (pthread_create(&wd, NULL, watchdog_main, NULL))
		fail("pthread_create");
	pthread_detach(wd);
	t_load = now_ns();
	for (i = 0; i < nworkers; i++)
		if (pthread_create(&workers[i].thread, NULL, worker_main,
				   &workers[i]))
			fail("pthread_create");

	next_rot = t_load + 300000000ull;
	next_nbd = t_load + (uint64_t)opt.nbd_every * 1000000000u;
	next_print = t_load + 5000000000ull;
	for (;;) {
		uint64_t now = now_ns(), ios = atomic_load(&g.ops);

		sleep_ms(20);
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
			next_rot = now_ns() + 200000000ull +
				   below(&ctl_rng, 600000000ull);
		}
		if (now >= next_nbd) {
			nbd_event(nbd_nr++);
			next_nbd = now_ns() +
				   (uint64_t)opt.nbd_every * 1000000000u;
		}
	}
	atomic_store(&stop_flag, true);
	ctl_beat("waiting for the workers to finish");
	for (i = 0; i < nworkers; i++)
		pthread_join(workers[i].thread, NULL);
	secs = (double)(now_ns() - t_load) / 1e9;
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

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The soak's internal header: what its files share.  main.c says what the
 * soak does; model.c holds the stores and the model, faults.c the fault:
 * rules, nbd.c the NBD servers, workload.c the requests, checks.c their
 * completion checks and report.c failing, cleaning up and the summary.
 * Clocks, loop devices and nbdkit come from tests/lib.
 */
#ifndef DMIO_SOAK_H
#define DMIO_SOAK_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <dmio/dm-io.h>

#include "nbdkit.h"
#include "tl.h"

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

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

struct rng {
	uint64_t s[4];
};

static inline uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void rng_seed(struct rng *g, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++)
		g->s[i] = splitmix(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t rnd(struct rng *g)
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

static inline uint64_t below(struct rng *g, uint64_t n)
{
	return n ? rnd(g) % n : 0;
}

static inline bool chance(struct rng *g, unsigned int pct)
{
	return below(g, 100) < pct;
}

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
	char spec[1100];
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
	char path[320];	    /* backing file */
	char dev[512];	    /* what dm_bdev_open() takes */
	struct nbdkit *srv; /* the NBD stores' server */
	struct tl_loop loop;
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

enum {
	OP_READ,
	OP_WRITE,
	OP_FLUSH,
	OP_DISCARD,
	OP_ZEROES,
	NR_OPS
};

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

struct options {
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
};

struct counters {
	atomic_ulong ops;
	atomic_ulong nbd_kills, nbd_stops, nbd_restarts, rotations;
	atomic_ulong fault_opens, rule_fail, rule_fail_reads, rule_fail_writes;
	atomic_ulong rule_all, rule_eio, rule_enospc, rule_after, rule_delay;
	atomic_ulong destroys, destroys_cb, chained, getputs;
	atomic_ulong edeadlk, bad_callbacks, raw_bytes;
};

/* ---- main.c ---- */

extern struct options opt;
extern atomic_bool stop_flag;
extern struct dm_io_client *client_uring, *client_threads;
extern atomic_ullong main_heartbeat;
extern _Atomic(const char *) main_doing;
extern uint64_t t_start, t_load;
extern struct rng ctl_rng;
extern char rerun[512];
void ctl_beat(const char *what);
void wait_zero(atomic_uint *n, const char *what);

/* ---- model.c ---- */

extern struct store stores[MAX_STORES];
extern unsigned int nstores;
extern char workdir[256];
void gen_data(uint8_t *buf, size_t len, uint64_t id, uint64_t first);
bool all_byte(const uint8_t *p, size_t n, uint8_t b);
void describe_sector(const uint8_t *p, char *out, size_t size);
bool store_get(struct store *st);
void store_put(struct store *st);
bool view_get(struct view *v);
void view_put(struct view *v);
bool store_is_nbd(const struct store *st);
int view_open(struct view *v);
void view_close(struct view *v);
void add_view(struct store *st, const char *label, unsigned int flags,
	      bool is_fault);
unsigned int total_workers(void);
void model_init(struct store *st, bool zero);
void write_backing(struct store *st);
struct store *new_store(const char *name, enum store_kind kind);
void setup_file(const char *name, bool with_direct);
bool setup_loop(const char *name, unsigned int lbs);
void compare_model(struct worker *w, struct store *st, uint64_t start,
		   uint64_t count, const uint8_t *buf, uint64_t id,
		   const char *why);
void verify_range(struct worker *w, struct store *st, int slot, uint64_t start,
		  uint64_t count, uint64_t id, const char *why);
void model_set(struct store *st, uint64_t sector, uint64_t count,
	       const uint8_t *src, bool known, uint64_t id);

/* ---- faults.c ---- */

void faults_string(const struct faults *f, char *out, size_t size);
void random_faults(struct rng *r, const struct store *st, struct faults *f);
void expect_region(struct req *r, struct rexp *e);
bool errno_allowed(const struct rexp *e, int err);
bool store_troubled(const struct rexp *e);
void self_test(struct worker *w);
void rotate_one(void);

/* ---- nbd.c ---- */

void setup_nbd(const char *name, enum store_kind kind);
void nbd_event(unsigned int nr);

/* ---- workload.c ---- */

extern struct worker workers[MAX_WORKERS];
extern unsigned int nworkers;
void mb_build(struct rng *r, struct membuf *m, int type, size_t len, bool big);
void mb_copy(struct membuf *m, uint8_t *contig, bool to_mem);
bool mb_canary_ok(const struct membuf *m);
void describe_req(struct worker *w, const struct req *r);
void release_regions(struct req *r);
void free_req(struct req *r);
extern const char DONE[];
void set_doing(struct worker *w, const char *what, uint64_t id);
void heartbeat(struct worker *w);
int submit_req(struct req *r, unsigned long *bits);
void *worker_main(void *arg);

/* ---- checks.c ---- */

void finish(struct worker *w, struct req *r);
void final_check(struct worker *w);

/* ---- report.c ---- */

const char *errname(int err);
bool conn_errno(int err);
extern const char *const op_names[];
extern const char *const mem_names[];
extern struct counters g;
extern atomic_int fail_status;
extern pthread_mutex_t hist_lock;
_Noreturn __attribute__((format(printf, 1, 2))) void fail(const char *fmt, ...);
_Noreturn __attribute__((format(printf, 3, 4))) void
fail_req(uint64_t id1, uint64_t id2, const char *fmt, ...);
void cleanup(void);
void install_handlers(void);
void *watchdog_main(void *arg);
void print_summary(double secs);

#endif /* DMIO_SOAK_H */

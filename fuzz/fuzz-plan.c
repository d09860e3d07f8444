/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz-plan - a libFuzzer target on request validation and region planning.
 *
 * Each input is decoded into one request: the API (request API sync or
 * async, or one of the six seed functions), an op and flag word (invalid
 * bits included), 0..70 regions on a handful of small files of different
 * sizes (one opened O_DIRECT, one read-only, one empty, one behind a fault:
 * wrapper) with sectors and counts that include overflow values, and a
 * buffer: a page list with an offset (sometimes too short, sometimes with a
 * NULL page), a bio_vec array (random offsets and lengths, sometimes
 * invalid entries), or contiguous memory (aligned or not, sometimes NULL).
 *
 * The oracle is the documented contract, computed independently:
 *  - a request that breaks it is refused with -EINVAL, and no I/O is
 *    issued: the engine's trace hook (linked from the static archive) sees
 *    no chunk, and for the seed API no file changes;
 *  - an accepted request returns 0 (-EIO for a sync one with bits), its
 *    callback runs exactly once, bit i is set exactly for the regions that
 *    must fail (read-only device, past the end, the fault: rule) with the
 *    errno the header promises, and region_errors agrees with the bits;
 *  - data lands where it should: an accepted write is read back from the
 *    file and compared with the buffer as the memory type describes it,
 *    discard and write-zeroes leave zeroes, a read returns the file's bytes,
 *    and a read refused for a region leaves zeroes;
 *  - a synchronous call from a completion callback returns -EDEADLK.
 * Any deviation calls abort() with a description: libFuzzer saves the input.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <dmio/dm-io.h>

#include "../src/engine.h"

#define PAGE	       4096u
#define NR_POOL	       64
#define MAX_PL	       16
#define MAX_BV	       40
#define CONTIG_SIZE    (2u << 20)
#define MAX_NR	       (DM_IO_MAX_REGIONS + 6)
#define FAULT_START    8 /* the fault: device fails writes to 8..15 */
#define FAULT_END      16
#define CALLBACK_LIMIT 20 /* seconds an accepted async request may take */

/* ---- the devices ---- */

struct dev {
	const char *label;
	int file; /* which backing file */
	unsigned int flags;
	bool fault;
	struct block_device *bdev;
	uint64_t sectors;
	bool rdonly;
};

static const struct {
	const char *name;
	uint64_t bytes;
} files[] = {
	{"empty", 0},
	{"one", 512},
	{"small", 4608},
	{"mid", 65536},
	{"big", (1u << 20) + 512}, /* more than one transfer */
};
#define NR_FILES (sizeof(files) / sizeof(files[0]))

static int file_fd[NR_FILES];

static struct dev devs[] = {
	{"empty", 0, 0, false, NULL, 0, false},
	{"one", 1, 0, false, NULL, 0, false},
	{"small", 2, 0, false, NULL, 0, false},
	{"mid", 3, 0, false, NULL, 0, false},
	{"big", 4, 0, false, NULL, 0, false},
	{"mid-direct", 3, DM_BDEV_DIRECT, false, NULL, 0, false},
	{"small-rdonly", 2, DM_BDEV_RDONLY, false, NULL, 0, true},
	{"mid-fault", 3, 0, true, NULL, 0, false},
};
#define NR_DEVS (sizeof(devs) / sizeof(devs[0]))

static struct dm_io_client *client;
static struct page *pool[NR_POOL];
static uint8_t *contig;
static atomic_ulong traced;
static atomic_ulong accepted_async, callbacks;
static unsigned long iteration;

static void die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static const struct fz *current;
static void describe(FILE *out, const struct fz *f);

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\nfuzz-plan: CONTRACT VIOLATION: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (current)
		describe(stderr, current);
	abort();
}

static void on_trace(void *ctx, enum dmi_trace_event ev,
		     const struct dmi_chunk *c, int res)
{
	(void)ctx;
	(void)ev;
	(void)c;
	(void)res;
	atomic_fetch_add(&traced, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = getenv("TMPDIR");
	char dir[256], path[512];
	unsigned int i;

	(void)argc;
	(void)argv;
	if (!access("/dev/shm", W_OK))
		base = "/dev/shm";
	else if (!base)
		base = "/tmp";
	snprintf(dir, sizeof(dir), "%s/dmio-fuzz.XXXXXX", base);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(1);
	}
	for (i = 0; i < NR_FILES; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
		file_fd[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (file_fd[i] < 0 ||
		    ftruncate(file_fd[i], (off_t)files[i].bytes)) {
			perror(path);
			exit(1);
		}
	}
	for (i = 0; i < NR_DEVS; i++) {
		struct dev *d = &devs[i];
		char spec[600];

		snprintf(path, sizeof(path), "%s/%s", dir, files[d->file].name);
		if (d->fault)
			snprintf(spec, sizeof(spec),
				 "fault:fail-writes=%d+%d,errno=ENOSPC:%s",
				 FAULT_START, FAULT_END - FAULT_START, path);
		else
			snprintf(spec, sizeof(spec), "%s", path);
		d->bdev = dm_bdev_open(spec, d->flags);
		if (!d->bdev) {
			fprintf(stderr, "dm_bdev_open(%s): %s\n", spec,
				strerror(errno));
			exit(1);
		}
		d->sectors = dm_bdev_nr_sectors(d->bdev);
	}
	/* The devices hold their descriptors: nothing is left behind. */
	for (i = 0; i < NR_FILES; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
		unlink(path);
	}
	rmdir(dir);

	client = dm_io_client_create();
	if (!client) {
		perror("dm_io_client_create");
		exit(1);
	}
	dmi_client_set_trace(client, on_trace, NULL);
	if (dm_io_get(64)) {
		fprintf(stderr, "dm_io_get failed\n");
		exit(1);
	}
	for (i = 0; i < NR_POOL; i++) {
		pool[i] = dm_page_alloc();
		if (!pool[i]) {
			perror("dm_page_alloc");
			exit(1);
		}
	}
	contig = mmap(NULL, CONTIG_SIZE + 2 * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (contig == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return 0;
}

/* ---- reading the input ---- */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t u8(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint16_t u16(struct in *in)
{
	return (uint16_t)(u8(in) | u8(in) << 8);
}

static uint32_t u32(struct in *in)
{
	return (uint32_t)u16(in) | (uint32_t)u16(in) << 16;
}

static uint64_t u64(struct in *in)
{
	return (uint64_t)u32(in) | (uint64_t)u32(in) << 32;
}

/* A sector or count: small, near the device's end, or near overflow. */
static uint64_t pick_sectors(struct in *in, uint64_t dev)
{
	switch (u8(in) % 14) {
	case 0:
		return 0;
	case 1:
	case 2:
		return u8(in) % 9;
	case 3:
		return u8(in);
	case 4:
		return dev;
	case 5:
		return dev > 4 ? dev - (u8(in) % 4) : 0;
	case 6:
		return dev + u8(in) % 4;
	case 7:
		return UINT64_MAX - (u8(in) % 4);
	case 8:
		return (UINT64_MAX >> SECTOR_SHIFT) - (u8(in) % 4);
	case 9:
		return (UINT64_MAX >> SECTOR_SHIFT) + 1 + (u8(in) % 4);
	case 10:
		return 1ull << (u8(in) % 64);
	case 11:
		return u64(in);
	default:
		return u16(in) % (dev + 9);
	}
}

/* ---- the request, as decoded ---- */

enum api {
	API_SYNC,
	API_ASYNC,
	API_SEED_SYNC,
	API_SEED_ASYNC
};

struct fz {
	enum api api;
	unsigned int opf; /* bi_opf, or the seed's rw */
	int seed_rw;
	unsigned int nr;
	struct io_region where[MAX_NR];
	int devidx[MAX_NR]; /* -1: NULL bdev */
	int mem_type;	    /* may be out of range */
	bool mem_null;
	unsigned int pl_off;
	struct page_list pl[MAX_PL];
	unsigned int npl;
	struct bio_vec bv[MAX_BV + 1];
	unsigned int nbv;
	size_t contig_off;
	bool want_errs, want_bits, null_fn, null_client, deadlock;
	unsigned short ioprio;
	int region_errors[MAX_NR];
	uint8_t pattern;
};

static void decode(struct in *in, struct fz *f)
{
	unsigned int i, b;

	memset(f, 0, sizeof(*f));
	f->api = (enum api)(u8(in) % 4);
	b = u8(in);
	if (f->api >= API_SEED_SYNC) {
		f->seed_rw = b % 8 == 7 ? (int)(int8_t)u8(in) : (int)(b % 2);
	} else {
		f->opf = b % 8; /* 5..7: unknown ops */
		b = u8(in);
		if (b & 1)
			f->opf |= DM_IO_FUA;
		if (b & 2)
			f->opf |= DM_IO_PREFLUSH;
		if ((b & 0x1c) == 0x1c)
			f->opf |= u32(in); /* anything */
	}
	b = u8(in);
	f->nr = b < 200 ? 1 + b % 8 : b < 230 ? b % 65 : b % MAX_NR;
	if (f->nr > MAX_NR)
		f->nr = MAX_NR;
	for (i = 0; i < f->nr; i++) {
		int d = u8(in) % (NR_DEVS + 1);
		uint64_t size = d < (int)NR_DEVS ? devs[d].sectors : 64;

		if (d == (int)NR_DEVS && u8(in) % 4)
			d = 0; /* NULL bdev: now and then */
		f->devidx[i] = d < (int)NR_DEVS ? d : -1;
		f->where[i].bdev = d < (int)NR_DEVS ? devs[d].bdev : NULL;
		f->where[i].sector = pick_sectors(in, size);
		f->where[i].count = pick_sectors(in, size);
	}
	b = u8(in);
	f->mem_type = b < 250 ? (int)(b % 4) : (int)b; /* 250..: bad types */
	if (f->api >= API_SEED_SYNC)
		f->mem_type = (int)(b % 3); /* the function says which */
	f->mem_null = u8(in) % 32 == 0;
	/* Page list: pages from the pool, in order, sometimes a NULL one. */
	b = u8(in);
	f->pl_off = b < 200 ? (b % 9) * 512 + (b & 1 ? u8(in) : 0)
			    : u16(in) % (2 * PAGE);
	if (f->pl_off >= PAGE && b < 200)
		f->pl_off %= PAGE;
	f->npl = u8(in) % (MAX_PL + 1);
	for (i = 0; i < f->npl; i++) {
		f->pl[i].page = u8(in) % 64 == 0 ? NULL : pool[i];
		f->pl[i].next = i + 1 < f->npl ? &f->pl[i + 1] : NULL;
	}
	/* Bio_vec entries: each its own page. */
	f->nbv = u8(in) % (MAX_BV + 1);
	for (i = 0; i < f->nbv; i++) {
		unsigned int kind = u8(in), off, len;

		if (kind < 160) {
			off = (kind % 9) * 512;
			if (off >= PAGE)
				off = 0;
			len = PAGE - off;
		} else if (kind < 240) {
			off = u16(in) % PAGE;
			len = 1 + u16(in) % (PAGE - off);
		} else {
			off = u16(in);
			len = u16(in);
		}
		f->bv[i] = (struct bio_vec){
			kind == 255 ? NULL : pool[MAX_PL + i], len, off};
	}
	f->bv[f->nbv] = (struct bio_vec){NULL, 0, 0}; /* the sentinel */
	b = u8(in);
	f->contig_off = b < 128 ? 0 : b < 192 ? (b % 8) * 512 : u16(in) % PAGE;
	b = u8(in);
	f->want_errs = !(b & 1);
	f->want_bits = !(b & 2) || f->api == API_ASYNC;
	f->null_fn = (b & 0x1c) == 0x1c;
	f->null_client = (b & 0xe0) == 0xe0;
	f->deadlock = u8(in) % 4 == 0;
	b = u8(in);
	f->ioprio = b < 200   ? 0
		    : b < 240 ? (unsigned short)(2 << 13 | (b % 8))
			      : u16(in);
	if (f->api >= API_SEED_SYNC)
		f->ioprio = 0; /* the seed functions have none */
	f->pattern = (uint8_t)(1 + iteration % 251);
}

static void describe(FILE *out, const struct fz *f)
{
	static const char *const apis[] = {"dm_io sync", "dm_io async",
					   "seed sync", "seed async"};
	static const char *const mems[] = {"page list", "bvec", "vma", "kmem"};
	unsigned int i;

	fprintf(out, "  request: %s, %s %#x, %u regions, memory %s%s",
		apis[f->api], f->api >= API_SEED_SYNC ? "rw" : "bi_opf",
		f->api >= API_SEED_SYNC ? (unsigned int)f->seed_rw : f->opf,
		f->nr, f->mem_type <= 3 ? mems[f->mem_type] : "(bad type)",
		f->mem_null ? " NULL" : "");
	if (f->mem_type == DM_IO_PAGE_LIST)
		fprintf(out, " (offset %u, %u pages)", f->pl_off, f->npl);
	else if (f->mem_type == DM_IO_BVEC)
		fprintf(out, " (%u entries)", f->nbv);
	else
		fprintf(out, " (+%zu)", f->contig_off);
	fprintf(out, ", ioprio %#x, region_errors %s, bits %s%s%s\n", f->ioprio,
		f->want_errs ? "yes" : "NULL", f->want_bits ? "yes" : "NULL",
		f->null_fn ? ", fn NULL" : "",
		f->null_client ? ", client NULL" : "");
	for (i = 0; i < f->nr && i < 10; i++)
		fprintf(out, "    region %u: %s sector %llu count %llu\n", i,
			f->devidx[i] < 0 ? "NULL" : devs[f->devidx[i]].label,
			(unsigned long long)f->where[i].sector,
			(unsigned long long)f->where[i].count);
}

/* ---- the contract, computed independently ---- */

static unsigned int op_of(const struct fz *f)
{
	if (f->api >= API_SEED_SYNC)
		return (unsigned int)f->seed_rw & DM_IO_OP_MASK;
	return f->opf & DM_IO_OP_MASK;
}

static bool is_data(unsigned int op)
{
	return op == DM_IO_OP_READ || op == DM_IO_OP_WRITE;
}

/* Walk the memory as the header describes it: @want bytes, copied to @out
 * (may be NULL).  Returns the bytes the memory validly provides, up to
 * @want. */
static size_t mem_walk(const struct fz *f, size_t want, uint8_t *out,
		       bool to_mem)
{
	size_t done = 0;
	unsigned int i;

	switch (f->mem_type) {
	case DM_IO_PAGE_LIST: {
		const struct page_list *pl = f->npl ? &f->pl[0] : NULL;
		size_t off = f->pl_off;

		while (done < want && pl && pl->page) {
			uint8_t *p = (uint8_t *)dm_page_address(pl->page) + off;
			size_t n = PAGE - off < want - done ? PAGE - off
							    : want - done;

			if (out && to_mem)
				memcpy(p, out + done, n);
			else if (out)
				memcpy(out + done, p, n);
			done += n;
			off = 0;
			pl = pl->next;
		}
		return done;
	}
	case DM_IO_BVEC:
		for (i = 0; done < want; i++) {
			const struct bio_vec *bv = &f->bv[i];
			uint8_t *p;
			size_t n;

			if (!bv->bv_page || !bv->bv_len ||
			    bv->bv_offset >= PAGE ||
			    bv->bv_len > PAGE - bv->bv_offset)
				break;
			p = (uint8_t *)dm_page_address(bv->bv_page) +
			    bv->bv_offset;
			n = bv->bv_len < want - done ? bv->bv_len : want - done;
			if (out && to_mem)
				memcpy(p, out + done, n);
			else if (out)
				memcpy(out + done, p, n);
			done += n;
		}
		return done;
	default: {
		size_t n = CONTIG_SIZE - f->contig_off;

		if (n > want)
			n = want;
		if (out && to_mem)
			memcpy(contig + f->contig_off, out, n);
		else if (out)
			memcpy(out, contig + f->contig_off, n);
		return n;
	}
	}
}

struct expect {
	bool refuse;
	const char *why;
	unsigned long bits;
	int err[MAX_NR]; /* negative */
	bool ioprio_odd; /* an ioprio the kernel may refuse per chunk */
};

/* Is a region refused at planning (its bit set, nothing issued)?  Returns
 * the negative errno or 0. */
static int region_early(const struct fz *f, unsigned int i, unsigned int op)
{
	const struct io_region *r = &f->where[i];
	const struct dev *d = &devs[f->devidx[i]];

	if (op == DM_IO_OP_FLUSH || !r->count)
		return 0;
	if (op != DM_IO_OP_READ && d->rdonly)
		return -EROFS;
	if (r->sector > d->sectors || r->count > d->sectors - r->sector)
		return -ENXIO;
	return 0; /* files: 512-byte blocks, and they discard */
}

static void expect_of(const struct fz *f, struct expect *x)
{
	unsigned int op = op_of(f), i, cls, data;
	bool seed = f->api >= API_SEED_SYNC;

	memset(x, 0, sizeof(*x));
	x->refuse = true;
	if (seed && f->seed_rw != DM_IO_READ && f->seed_rw != DM_IO_WRITE) {
		x->why = "seed rw not READ/WRITE";
		return;
	}
	if (f->api == API_SEED_ASYNC && f->null_fn) {
		x->why = "seed async without a callback";
		return;
	}
	if (!seed && f->null_client) {
		x->why = "NULL client";
		return;
	}
	if (!f->nr || f->nr > DM_IO_MAX_REGIONS) {
		x->why = "num_regions out of range";
		return;
	}
	if (!seed && (f->opf & ~(DM_IO_OP_MASK | DM_IO_FUA | DM_IO_PREFLUSH) ||
		      op > DM_IO_OP_WRITE_ZEROES)) {
		x->why = "bad op or flag";
		return;
	}
	if (op == DM_IO_OP_READ && f->nr != 1) {
		x->why = "read of several regions";
		return;
	}
	for (i = 0; i < f->nr; i++) {
		const struct io_region *r = &f->where[i];

		if (!r->bdev) {
			x->why = "NULL bdev";
			return;
		}
		if (r->count > UINT64_MAX - r->sector ||
		    r->sector + r->count > UINT64_MAX >> SECTOR_SHIFT) {
			x->why = "sector + count overflows";
			return;
		}
	}
	if (!seed && f->opf & (DM_IO_FUA | DM_IO_PREFLUSH) &&
	    op != DM_IO_OP_WRITE) {
		x->why = "FUA/PREFLUSH on a non-write";
		return;
	}
	if (is_data(op)) {
		if (f->mem_type > DM_IO_KMEM) {
			x->why = "bad memory type";
			return;
		}
		if (f->mem_null) {
			x->why = "NULL buffer";
			return;
		}
		if (f->mem_type == DM_IO_PAGE_LIST && f->pl_off >= PAGE) {
			x->why = "page-list offset >= page size";
			return;
		}
		if (f->mem_type == DM_IO_PAGE_LIST && !f->npl) {
			x->why = "NULL page list";
			return;
		}
		for (i = 0; i < f->nr; i++) {
			size_t want = f->where[i].count << SECTOR_SHIFT;

			if (!f->where[i].count || region_early(f, i, op))
				continue;
			if (mem_walk(f, want, NULL, false) < want) {
				x->why = "memory shorter than a region";
				return;
			}
		}
	}
	x->refuse = false;
	/* An unknown class, or data without a class, is refused up front
	 * like every other bad argument; a known class with odd data is the
	 * kernel's to judge, chunk by chunk. */
	cls = f->ioprio >> 13;
	data = f->ioprio & 0x1fff;
	if (f->ioprio && !((cls == 1 || cls == 2) && data <= 7) &&
	    !(cls == 3 && !data)) {
		if (cls > 3 || !cls) {
			x->refuse = true;
			x->why = "invalid ioprio";
			return;
		}
		x->ioprio_odd = true;
	}
	for (i = 0; i < f->nr; i++) {
		const struct io_region *r = &f->where[i];
		const struct dev *d = &devs[f->devidx[i]];
		int err = region_early(f, i, op);

		if (!err && d->fault && r->count && op != DM_IO_OP_READ &&
		    op != DM_IO_OP_FLUSH && r->sector < FAULT_END &&
		    r->sector + r->count > FAULT_START)
			err = -ENOSPC;
		x->err[i] = err;
		if (err)
			x->bits |= 1UL << i;
	}
}

/* ---- running it ---- */

static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cb_cond = PTHREAD_COND_INITIALIZER;
static bool cb_done;
static unsigned long cb_bits;
static const struct fz *cb_fz;

static void on_done(unsigned long error, void *context)
{
	const struct fz *f = context;

	atomic_fetch_add(&callbacks, 1);
	if (f->deadlock) {
		struct io_region where = {devs[3].bdev, 0, 1};
		char buf[512];
		int ret;

		if (f->api == API_SEED_ASYNC) {
			ret = dm_io_sync_vm(1, &where, DM_IO_READ, buf, NULL);
		} else {
			struct dm_io_request rq = {
				.bi_opf = DM_IO_OP_READ,
				.mem = {.type = DM_IO_KMEM, .ptr.addr = buf},
				.client = client,
			};

			ret = dm_io(&rq, 1, &where, NULL);
		}
		if (ret != -EDEADLK)
			die("a sync call from a callback returned %d, not "
			    "-EDEADLK",
			    ret);
	}
	pthread_mutex_lock(&cb_lock);
	if (cb_done || f != cb_fz)
		die("a callback ran twice, or for a request not accepted");
	cb_bits = error;
	cb_done = true;
	pthread_cond_signal(&cb_cond);
	pthread_mutex_unlock(&cb_lock);
}

static unsigned long wait_callback(void)
{
	struct timespec ts;
	unsigned long bits;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += CALLBACK_LIMIT;
	pthread_mutex_lock(&cb_lock);
	while (!cb_done)
		if (pthread_cond_timedwait(&cb_cond, &cb_lock, &ts))
			die("an accepted async request never called back "
			    "(%d s)",
			    CALLBACK_LIMIT);
	bits = cb_bits;
	cb_fz = NULL;
	pthread_mutex_unlock(&cb_lock);
	return bits;
}

static int call(struct fz *f, unsigned long *bits)
{
	unsigned long *bp = f->want_bits ? bits : NULL;
	void *addr = f->mem_null ? NULL : contig + f->contig_off;
	struct page_list *pl = f->mem_null || !f->npl ? NULL : f->pl;
	struct bio_vec *bv = f->mem_null ? NULL : f->bv;
	io_notify_fn fn = f->null_fn ? NULL : on_done;

	switch (f->api) {
	case API_SEED_SYNC:
		if (f->mem_type == DM_IO_PAGE_LIST)
			return dm_io_sync(f->nr, f->where, f->seed_rw, pl,
					  f->pl_off, bp);
		if (f->mem_type == DM_IO_BVEC)
			return dm_io_sync_bvec(f->nr, f->where, f->seed_rw, bv,
					       bp);
		return dm_io_sync_vm(f->nr, f->where, f->seed_rw, addr, bp);
	case API_SEED_ASYNC:
		if (f->mem_type == DM_IO_PAGE_LIST)
			return dm_io_async(f->nr, f->where, f->seed_rw, pl,
					   f->pl_off, fn, f);
		if (f->mem_type == DM_IO_BVEC)
			return dm_io_async_bvec(f->nr, f->where, f->seed_rw, bv,
						fn, f);
		return dm_io_async_vm(f->nr, f->where, f->seed_rw, addr, fn, f);
	default: {
		struct dm_io_request rq = {
			.bi_opf = f->opf,
			.client = f->null_client ? NULL : client,
			.region_errors = f->want_errs ? f->region_errors : NULL,
			.ioprio = f->ioprio,
		};

		rq.mem.type = (enum dm_io_mem_type)f->mem_type;
		rq.mem.offset = f->pl_off;
		if (f->mem_type == DM_IO_PAGE_LIST)
			rq.mem.ptr.pl = pl;
		else if (f->mem_type == DM_IO_BVEC)
			rq.mem.ptr.bvec = bv;
		else
			rq.mem.ptr.addr = addr;
		if (f->api == API_ASYNC)
			rq.notify = (struct dm_io_notify){on_done, f};
		return dm_io(&rq, f->nr, f->where, bp);
	}
	}
}

/* A hash of the files that @f's regions name (the only ones a stray
 * write would plausibly reach). */
static uint64_t files_hash(const struct fz *f)
{
	static uint8_t buf[65536];
	uint64_t h = 1469598103934665603ull;
	bool named[NR_FILES] = {false};
	unsigned int i;

	for (i = 0; i < f->nr; i++)
		if (f->devidx[i] >= 0)
			named[devs[f->devidx[i]].file] = true;
	for (i = 0; i < NR_FILES; i++) {
		off_t off = 0;

		if (!named[i])
			continue;
		ssize_t n;

		while ((n = pread(file_fd[i], buf, sizeof(buf), off)) > 0) {
			ssize_t k;

			for (k = 0; k + 8 <= n; k += 8) {
				uint64_t w;

				memcpy(&w, buf + k, 8);
				h = (h ^ w) * 1099511628211ull;
			}
			off += n;
		}
	}
	return h;
}

static bool regions_overlap(const struct fz *f, unsigned int i)
{
	const struct io_region *a = &f->where[i];
	unsigned int j;

	for (j = 0; j < f->nr; j++) {
		const struct io_region *b = &f->where[j];

		if (j == i || !b->count ||
		    devs[f->devidx[j]].file != devs[f->devidx[i]].file)
			continue;
		if (a->sector < b->sector + b->count &&
		    b->sector < a->sector + a->count)
			return true;
	}
	return false;
}

static void check_data(const struct fz *f, const struct expect *x)
{
	unsigned int op = op_of(f), i;
	static uint8_t want[CONTIG_SIZE], got[CONTIG_SIZE];

	for (i = 0; i < f->nr; i++) {
		const struct io_region *r = &f->where[i];
		const struct dev *d = &devs[f->devidx[i]];
		size_t len = r->count << SECTOR_SHIFT;
		off_t off = (off_t)(r->sector << SECTOR_SHIFT);

		if (!r->count || op == DM_IO_OP_FLUSH)
			continue;
		if (x->bits >> i & 1) {
			size_t n;

			/* A read refused for its region leaves zeroes as far
			 * as the memory goes. */
			if (op != DM_IO_OP_READ)
				continue;
			n = mem_walk(f, len, got, false);
			while (n)
				if (got[--n])
					die("read of %s@%llu+%llu failed with "
					    "%d but buffer byte %zu is %#x",
					    d->label,
					    (unsigned long long)r->sector,
					    (unsigned long long)r->count,
					    x->err[i], n, got[n]);
			continue;
		}
		if (regions_overlap(f, i) || len > sizeof(want))
			continue;
		if (pread(file_fd[d->file], got, len, off) != (ssize_t)len)
			die("pread %s: %s", d->label, strerror(errno));
		if (op == DM_IO_OP_WRITE || op == DM_IO_OP_READ)
			mem_walk(f, len, want, false);
		else
			memset(want, 0, len);
		if (memcmp(want, got, len)) {
			size_t k = 0;

			while (want[k] == got[k])
				k++;
			die("%s of %s@%llu+%llu (region %u): byte %zu is %#x "
			    "in the file, %#x in the buffer",
			    op == DM_IO_OP_READ	   ? "read"
			    : op == DM_IO_OP_WRITE ? "write"
						   : "discard/write-zeroes",
			    d->label, (unsigned long long)r->sector,
			    (unsigned long long)r->count, i, k, got[k],
			    want[k]);
		}
	}
}

static void prepare_memory(struct fz *f)
{
	unsigned int op = op_of(f), i;

	/* Reads: a non-zero fill shows what the library wrote. */
	for (i = 0; i < MAX_PL + f->nbv && i < NR_POOL; i++)
		if (i < f->npl || i >= MAX_PL)
			memset(dm_page_address(pool[i]),
			       op == DM_IO_OP_READ ? 0xee : f->pattern + i,
			       PAGE);
	if (f->mem_type > DM_IO_PAGE_LIST && f->mem_type <= DM_IO_KMEM) {
		size_t len = 0;

		for (i = 0; i < f->nr && i < DM_IO_MAX_REGIONS; i++)
			if (f->where[i].count < (CONTIG_SIZE >> SECTOR_SHIFT) &&
			    (f->where[i].count << SECTOR_SHIFT) > len)
				len = f->where[i].count << SECTOR_SHIFT;
		memset(contig + f->contig_off,
		       op == DM_IO_OP_READ ? 0xee : f->pattern, len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size};
	static struct fz f;
	struct expect x;
	unsigned long bits = 0, before;
	uint64_t hash = 0;
	bool seed, async;
	unsigned int i, op;
	int ret;

	iteration++;
	decode(&in, &f);
	current = &f;
	if (getenv("FUZZ_PLAN_VERBOSE"))
		describe(stderr, &f);
	op = op_of(&f);
	seed = f.api >= API_SEED_SYNC;
	async = f.api == API_ASYNC || f.api == API_SEED_ASYNC;
	/* A contiguous read must cover the region (the caller's side of
	 * the contract): too long a read takes a page list instead. */
	if (op == DM_IO_OP_READ && f.mem_type >= DM_IO_VMA &&
	    f.mem_type <= DM_IO_KMEM && f.nr &&
	    f.where[0].count > (CONTIG_SIZE - f.contig_off) >> SECTOR_SHIFT)
		f.mem_type = DM_IO_PAGE_LIST;
	expect_of(&f, &x);
	prepare_memory(&f);
	for (i = 0; i < MAX_NR; i++)
		f.region_errors[i] = 12345;
	if (seed && op == DM_IO_OP_WRITE)
		hash = files_hash(&f);
	atomic_store(&traced, 0);
	before = atomic_load(&callbacks);
	if (async) {
		pthread_mutex_lock(&cb_lock);
		cb_done = false;
		cb_fz = &f;
		pthread_mutex_unlock(&cb_lock);
	}

	ret = call(&f, &bits);

	if (x.refuse) {
		if (ret != -EINVAL)
			die("%s: returned %d, expected -EINVAL", x.why, ret);
		if (atomic_load(&traced))
			die("%s: refused, but %lu chunk events were traced",
			    x.why, atomic_load(&traced));
		if (seed && op == DM_IO_OP_WRITE && files_hash(&f) != hash)
			die("%s: refused, but a file changed", x.why);
		if (async) {
			pthread_mutex_lock(&cb_lock);
			cb_fz = NULL;
			pthread_mutex_unlock(&cb_lock);
		}
		if (atomic_load(&callbacks) != before)
			die("%s: refused, but a callback ran", x.why);
		return 0;
	}
	if (async) {
		if (ret)
			die("accepted async request returned %d", ret);
		atomic_fetch_add(&accepted_async, 1);
		bits = wait_callback();
	} else {
		if (!f.want_bits) {
			bits = 0;
			for (i = 0; f.want_errs && !seed && i < f.nr; i++)
				if (f.region_errors[i])
					bits |= 1UL << i;
			if (seed || !f.want_errs)
				bits = ret ? x.bits : 0; /* best we know */
			if ((seed || !f.want_errs) && x.ioprio_odd)
				return 0; /* nothing to go on */
		}
		if (ret != (bits ? -EIO : 0))
			die("sync request returned %d with bits %#lx", ret,
			    bits);
	}
	if (atomic_load(&callbacks) != atomic_load(&accepted_async))
		die("%lu callbacks for %lu accepted async requests",
		    atomic_load(&callbacks), atomic_load(&accepted_async));
	for (i = 0; i < f.nr; i++) {
		bool bit = bits >> i & 1, want = x.bits >> i & 1;
		int err = f.region_errors[i];

		if (x.ioprio_odd && bit && !want &&
		    (!f.want_errs || seed || err == -EINVAL || err == -EPERM))
			continue; /* the kernel refused the priority */
		if (bit != want)
			die("region %u (%s@%llu+%llu, op %u): bit %d, "
			    "expected %d (errno %d)",
			    i, devs[f.devidx[i]].label,
			    (unsigned long long)f.where[i].sector,
			    (unsigned long long)f.where[i].count, op, bit, want,
			    x.err[i]);
		if (seed || !f.want_errs)
			continue;
		if (err != x.err[i])
			die("region %u (%s@%llu+%llu, op %u): errno %d, "
			    "expected %d",
			    i, devs[f.devidx[i]].label,
			    (unsigned long long)f.where[i].sector,
			    (unsigned long long)f.where[i].count, op, err,
			    x.err[i]);
	}
	if (f.want_errs && !seed)
		for (i = f.nr; i < MAX_NR; i++)
			if (f.region_errors[i] != 12345)
				die("region_errors written past num_regions "
				    "(entry %u)",
				    i);
	if (!x.ioprio_odd)
		check_data(&f, &x);
	return 0;
}

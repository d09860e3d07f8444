/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmio-bench: libdmio side by side with the ways people do the same I/O
 * without it.  Every engine gets the same workload description (devices,
 * block size, queue depth, offsets, duration) and reports how many
 * requests it completed; a mirrored write to N devices counts once.
 */
#ifndef DMIO_BENCH_H
#define DMIO_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_DEVS 8
#define MAX_RUNS 15
#define MAX_QD	 64

enum io_dir {
	DIR_READ,
	DIR_WRITE,
};

/* One measured run's parameters: identical for every engine. */
struct workload {
	enum io_dir dir;
	size_t bs;
	unsigned int qd;
	unsigned int nr_regions;     /* devices written per request */
	bool random;		     /* else sequential, wrapping */
	const char *paths[MAX_DEVS]; /* one device (or NBD URI) per region */
	uint64_t span;		     /* bytes used at the start of each */
	double seconds;		     /* time-based ... */
	uint64_t bytes;		     /* ... or, when not 0, a byte count */
	bool direct;		     /* O_DIRECT for local devices */
	uint64_t seed;		     /* random offsets: same for all engines */
};

/* One run's outcome. */
struct result {
	uint64_t ops; /* requests completed */
	double secs;
	int err; /* 0, or the negative errno that stopped the run */
};

/* ---- helpers (util.c) ---- */

double now_sec(void);
/* The byte offset of request @idx: stateless, so any thread may ask. */
uint64_t req_offset(const struct workload *w, uint64_t idx);
/* Whether request number @issued (from 0) should still be issued in a
 * run that started at @start. */
bool want_more(const struct workload *w, double start, uint64_t issued);
void *bench_buffer(size_t bs, enum io_dir dir, unsigned int salt);
int open_dev(const char *path, bool direct, bool write);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- engines (engines.c, engines-nbd.c): 0 or a negative errno ---- */

int eng_libdmio(const struct workload *w, struct result *r);
int eng_libdmio_sync(const struct workload *w, struct result *r);
int eng_pio_loop(const struct workload *w, struct result *r);
int eng_lio(const struct workload *w, struct result *r);
int eng_uring(const struct workload *w, struct result *r);
/* A submitting thread that waits on a condvar, the callback (or reaper)
 * signalling it: libdmio's async API, and raw liburing with a reaper. */
int eng_libdmio_submitter(const struct workload *w, struct result *r);
int eng_uring_submitter(const struct workload *w, struct result *r);
int eng_nbd_loop(const struct workload *w, struct result *r);
int eng_nbd_aio(const struct workload *w, struct result *r);
bool have_nbd(void);

/* kcopyd and its peers copy w->bytes from paths[0] to paths[1..]. */
int eng_kcopyd(const struct workload *w, struct result *r);
int eng_copy_loop(const struct workload *w, struct result *r);

/* ---- external programs (external.c) ---- */

/* Run @argv, collecting its standard output; returns the exit status, or a
 * negative errno when it could not run.  *@secs gets the wall time. */
int run_program(char *const argv[], char *out, size_t outlen, double *secs);
bool have_program(const char *name);

struct fio_job {
	const char *engine; /* io_uring, psync */
	unsigned int jobs;  /* one per device: paths[0..jobs-1] */
};
int eng_fio(const struct workload *w, const struct fio_job *fj,
	    struct result *r);
int eng_dd(const struct workload *w, struct result *r);
int eng_dmio_copy(const char *dmio, const struct workload *w, struct result *r);

/* Instructions per request under callgrind, user space, every thread:
 * the difference between cpu-inner runs of @small and @big requests. */
struct cpu_count {
	const char *self; /* this program */
	const char *shim; /* vg-uring-shim.so, preloaded */
	const char *dev;
	bool direct;
	unsigned int small, big;
	bool keep; /* keep the callgrind output files */
};
int instr_per_io(const struct cpu_count *cc, const char *engine,
		 double *per_io);
int cpu_inner(const char *engine, const char *dev, bool direct,
	      unsigned int count);

#endif /* DMIO_BENCH_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The mirror behind nbdkit-dmio-plugin: the kernel's dm-raid1 in
 * userspace, on libdmio's public API only.  mirror.c holds the legs, the
 * I/O paths and failure handling; meta.c the superblocks and generations;
 * log.c the dirty-region log; resync.c the daemon that resynchronises,
 * scrubs and cleans the log; control.c the control socket and status.
 */
#ifndef DMIO_SERVE_MIRROR_H
#define DMIO_SERVE_MIRROR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <dmio/blkdev.h>
#include <dmio/dm-io.h>
#include <dmio/dm-kcopyd.h>

#define MIRROR_MAX_LEGS	  DM_KCOPYD_MAX_REGIONS
#define MIRROR_META_BYTES 4096 /* the superblock at the end of every leg */
#define MIRROR_HISTORY	  16   /* older generations a superblock keeps */

enum leg_state {
	LEG_EMPTY,     /* no leg in this slot */
	LEG_INSYNC,    /* takes writes, serves reads where it needs nothing */
	LEG_RESYNCING, /* takes writes, serves no reads until resynced */
	LEG_FAILED,    /* takes nothing; err says why */
};

enum read_policy {
	READ_ROUND_ROBIN,
	READ_LEAST_LOADED
};

/* The on-leg superblock, decoded (meta.c has the layout). */
struct leg_meta {
	bool valid;
	uint8_t set_uuid[16];
	uint64_t data_sectors;
	uint64_t gen; /* 0: a resync was in progress, the data is not whole */
	uint64_t events;
	uint64_t run_id;
	bool clean;
	unsigned int nr_history;
	uint64_t history[MIRROR_HISTORY]; /* newest first */
	unsigned int nr_legs; /* in the mirror when it was written */
};

struct leg {
	char *spec;
	struct block_device *bdev;
	enum leg_state state;
	int err;	      /* negative errno of the failure; 0 */
	unsigned int users;   /* I/O paths holding bdev */
	uint64_t *need;	      /* regions this leg lacks */
	uint64_t need_count;  /* bits set in need */
	uint64_t need_total;  /* at the start of its resync */
	atomic_uint inflight; /* requests now (least-loaded reads) */
	atomic_uint_fast64_t reads, writes, read_bytes, write_bytes;
	atomic_uint_fast64_t errors;
};

struct dirty_log {
	char *path; /* NULL: a core log */
	int fd;
	pthread_mutex_t lock;
	uint64_t *bits;	   /* dirty regions */
	uint64_t *touched; /* written since the last clean pass */
	uint64_t *unsaved; /* words whose on-disk copy is behind */
	uint64_t nr_regions, region_sectors, data_sectors;
	uint8_t set_uuid[16];
	uint64_t run_id, base_gen;
	bool valid; /* opened on a header of this set and run */
	uint64_t marks, syncs;
};

struct scrub {
	bool requested, running, done;
	uint64_t next, checked, differing;
	uint64_t first[16]; /* the first differing regions */
	int err;
};

struct mirror_options {
	const char *specs[MIRROR_MAX_LEGS];
	unsigned int nr_specs;
	const char *log_path;
	const char *control_path;
	const char *primary; /* index or spec; NULL: the newest leg */
	uint64_t region_bytes;
	uint64_t resync_rate; /* bytes per second; 0: unlimited */
	unsigned int leg_timeout_ms;
	enum read_policy read_policy;
	unsigned int open_flags; /* DM_BDEV_DIRECT / _BUFFERED */
	bool nosync, verify;
};

struct mirror {
	struct mirror_options opt;
	pthread_mutex_t lock; /* legs' states, region counters */
	pthread_cond_t cond;
	pthread_mutex_t meta_lock; /* generation changes, superblock writes */
	pthread_mutex_t rmw_lock;  /* unaligned writes */
	struct leg legs[MIRROR_MAX_LEGS];
	sector_t data_sectors;
	sector_t region_sectors;
	uint64_t nr_regions;
	unsigned int block_size;
	uint32_t *pending; /* writes in flight per region */
	uint64_t *locked;  /* regions being resynced or scrubbed */
	struct dm_io_client *io;
	struct dm_kcopyd_client *kc;
	struct dirty_log log;

	/* Generations (meta.c) */
	uint8_t set_uuid[16];
	uint64_t gen, events, run_id;
	unsigned int nr_legs; /* legs in the mirror, as superblocks say */
	unsigned int nr_history;
	uint64_t history[MIRROR_HISTORY];
	bool was_clean; /* every leg was cleanly shut down in sync */
	bool assembled; /* serving: the superblocks are ours to update */

	/* The daemon (resync.c) */
	pthread_t daemon;
	bool daemon_started, stopping;
	int source_hint; /* preferred resync source */
	uint64_t resync_rate;
	uint64_t resync_regions_done; /* this pass */
	uint64_t resync_regions_total;
	uint64_t resynced_regions; /* since start */
	uint64_t resynced_bytes;
	double resync_bytes_per_s;
	double resync_started;
	bool resync_running;
	struct scrub scrub;
	atomic_uint rr;

	/* The control socket (control.c) */
	int control_fd;
	pthread_t control;
	bool control_started;
};

/* mirror.c */
int mirror_start(struct mirror *m);
void mirror_stop(struct mirror *m);
int mirror_read(struct mirror *m, void *buf, uint32_t count, uint64_t offset);
int mirror_write(struct mirror *m, const void *buf, uint32_t count,
		 uint64_t offset, bool fua);
int mirror_flush(struct mirror *m);
int mirror_zero(struct mirror *m, uint32_t count, uint64_t offset, bool fua);
void mirror_fail_leg(struct mirror *m, unsigned int i, int err);
int mirror_remove_leg(struct mirror *m, unsigned int i, char *msg, size_t len);
int mirror_add_leg(struct mirror *m, const char *spec, char *msg, size_t len);
int mirror_find_leg(struct mirror *m, const char *what);
bool mirror_healthy(struct mirror *m);
bool mirror_healthy_locked(struct mirror *m);
void mirror_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double mirror_now(void);
const char *mirror_strerror(int err);
const char *leg_state_name(enum leg_state s);

/* Bitmaps of regions */
static inline bool bit_test(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}
static inline void bit_set(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ull << (i % 64);
}
static inline void bit_clear(uint64_t *b, uint64_t i)
{
	b[i / 64] &= ~(1ull << (i % 64));
}
static inline uint64_t bitmap_words(uint64_t n)
{
	return (n + 63) / 64;
}

/* meta.c */
int meta_read(struct mirror *m, struct block_device *bdev,
	      struct leg_meta *meta);
int meta_write(struct mirror *m, unsigned int i, uint64_t gen, bool clean);
void meta_new_generation(struct mirror *m);
void meta_publish(struct mirror *m);
int meta_age(const struct mirror *m, uint64_t gen);
void random_bytes(void *buf, size_t len);

/* log.c */
int log_open(struct mirror *m, uint64_t run_id);
void log_close(struct mirror *m, bool save, bool clean);
int log_mark(struct mirror *m, uint64_t first, uint64_t last);
int log_write_header(struct mirror *m);
void log_clean(struct mirror *m);
uint64_t log_dirty_count(struct mirror *m);
void log_snapshot(struct mirror *m, uint64_t *into);

/* resync.c */
int daemon_start(struct mirror *m);
void daemon_stop(struct mirror *m);
void daemon_kick(struct mirror *m);

/* control.c */
int control_start(struct mirror *m);
void control_stop(struct mirror *m);
void status_text(struct mirror *m, FILE *f);
void status_json(struct mirror *m, FILE *f);

#endif /* DMIO_SERVE_MIRROR_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmio - the command-line face of libdmio.  Declarations shared by the
 * tool's files: the regions named on the command line (spec.c), the copy
 * loop (copy.c), progress reporting (progress.c) and output (report.c).
 * The tool uses the library's public API only.
 */
#ifndef DMIO_TOOL_H
#define DMIO_TOOL_H

#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <dmio/dm-kcopyd.h>

/* Exit statuses, as dmio(1) lists them. */
#define EXIT_ALL_GOOD	 0
#define EXIT_SOME_FAILED 1 /* a destination (or compared region) failed */
#define EXIT_USAGE	 2 /* usage error, or the source could not be used */

#define BYTES(sectors) ((uint64_t)(sectors) << SECTOR_SHIFT)

/* A region named on the command line, SPEC[@SECTOR[+COUNT]], and what
 * became of it. */
struct target {
	const char *arg; /* as typed: messages and tables show this */
	char *spec;	 /* the device part */
	sector_t sector;
	sector_t count;
	bool has_count;
	struct block_device *bdev;
	bool stream;  /* "-": standard input or output, no device */
	bool create;  /* missing: to be created before the copy */
	bool created; /* made by this run */
	int err;      /* the first negative errno it met; 0 while fine */
	/* verify: where the first difference is (sectors into the region) */
	bool differs;
	sector_t first_diff;
	sector_t compared;    /* verify: sectors compared before deciding */
	bool shorter, longer; /* verify: it ended before A, or A before it */
	/* copy and zero: bytes written to it, and the stretch of the region
	 * known to hold what the run meant to write there */
	uint64_t written;
	sector_t good_from, good_to;
};

/* Options without a short form, shared by the commands' getopt tables. */
enum long_option {
	OPT_JSON = 0x100,
	OPT_DIRECT,
	OPT_BUFFERED,
	OPT_NO_CREATE,
	OPT_IGNORE_ERRORS,
	OPT_STOP_ON_ERROR,
	OPT_FLUSH,
	OPT_FUA,
	OPT_NO_FLUSH,
	OPT_SIZE,
	OPT_KEEP,
	OPT_NOERROR,
	OPT_TRUNCATE,
	OPT_SECONDS,
	OPT_RUNS,
	OPT_QD,
	OPT_WRITE,
};

/* One option of a command: what getopt_long() needs, and its help line.
 * An entry with no name but a help text is a heading ("Control
 * commands:"); CLI_END ends the table. */
struct cli_option {
	const char *name; /* the long name */
	int has_arg;	  /* no_argument or required_argument */
	int val;	  /* its short letter, or an OPT_ value */
	const char *arg;  /* the value's name in the help ("SIZE"), or NULL */
	const char *help; /* a '\n' continues on the next line */
};
#define CLI_END                                                                \
	{                                                                      \
		NULL, 0, 0, NULL, NULL                                         \
	}

/* The flags several commands take, parsed by parse_options() itself. */
#define COMMON_OPEN	(1u << 0) /* --direct, --buffered */
#define COMMON_QUIET	(1u << 1) /* -q, --quiet */
#define COMMON_PROGRESS (1u << 2) /* -p, --progress */
#define COMMON_JSON	(1u << 3) /* --json */
#define COMMON_DATA	(COMMON_OPEN | COMMON_QUIET | COMMON_PROGRESS | COMMON_JSON)

struct common_opts {
	unsigned int open_flags; /* DM_BDEV_DIRECT, DM_BDEV_BUFFERED */
	bool quiet, json;
};

/* A command: its code, its help and its options, in its own file. */
struct command {
	const char *name;
	int (*run)(int argc, char *argv[]);
	const char *usage;		  /* the help up to its options */
	const struct cli_option *options; /* its own; NULL: none */
	unsigned int common;		  /* the COMMON_ flags it takes */
};

extern const struct command copy_command, zero_command, verify_command,
	info_command, demo_command, serve_command, bench_command;

/* dmio.c: messages in the name of the command being run, and options. */
/* The signal catch_signals() caught: atomic, not sig_atomic_t, because
 * the handler may run on any thread that leaves the signal unblocked (a
 * device's own thread, say) while the main thread reads it. */
extern atomic_int interrupted;

int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool json_requested(void);

/* parse_options() and an option handler: go on with the next option. */
#define GO_ON (-1)

/*
 * Parse the options of the command being run: -h, and the common ones it
 * takes into @co; its own through @own(opt, @ctx) with optarg set, which
 * returns GO_ON or a status to exit with.  Returns GO_ON with optind at
 * the first argument, else the status to exit with: 0 after the help,
 * EXIT_USAGE once a bad option is reported in one line.
 */
int parse_options(int argc, char *argv[], struct common_opts *co,
		  int (*own)(int opt, void *ctx), void *ctx);

/* spec.c */
int parse_uint(const char *s, unsigned long long max, unsigned long long *out);
int parse_amount(const char *s, sector_t *sectors);
struct target *parse_targets(char *const args[], unsigned int nr, int *status);
bool target_is_path(const struct target *t);
int target_open(struct target *t, unsigned int flags);
int target_create(struct target *t, uint64_t bytes, unsigned int flags);
void targets_release(struct target *t, unsigned int nr, bool remove_created);
int open_source(struct target *src, unsigned int flags);
int check_aligned(const struct target *t, sector_t count, const char *role);

/* progress.c: a bar on a terminal, else one summary line at the end. */
struct progress {
	const char *verb; /* "copied", "zeroed", "compared" */
	uint64_t total;	  /* bytes */
	double start, last_draw, seconds;
	bool bar, quiet, drawn;
	bool periodic;	   /* -p off a terminal: a line every few seconds */
	bool json;	   /* ... as JSON lines (--json) */
	const char *phase; /* NULL while moving data, then e.g. "flushing" */
	bool unknown;	   /* the total is not known (a stream) */
	uint64_t done;	   /* bytes, as last updated */
};

/* -p, --progress: periodic progress lines where stderr is no terminal. */
void progress_force(void);
/* The run has moved on to @phase ("flushing") with @done bytes moved:
 * show it at once. */
void progress_phase(struct progress *p, const char *phase, uint64_t done);

void progress_start(struct progress *p, const char *verb, uint64_t total,
		    bool quiet);
void progress_update(struct progress *p, uint64_t done);
void progress_end(struct progress *p, uint64_t done, const char *what);
double mib_per_s(uint64_t bytes, double seconds);
const char *human_bytes(uint64_t bytes, char *buf, size_t len);

/* report.c */
void json_string(FILE *f, const char *s);
void print_table(FILE *out, const char *heading, const struct target *t,
		 unsigned int nr,
		 const char *(*result)(const struct target *, char *, size_t));
const char *copy_result(const struct target *t, char *buf, size_t len);
const char *verify_result(const struct target *t, char *buf, size_t len);
const char *error_text(int err);

/* copy.c: the I/O clients every command that moves data runs on: one
 * dm-io client, which the kcopyd client (when there is one) issues on. */
struct clients {
	struct dm_io_client *io;
	struct dm_kcopyd_client *kc;
};

enum durability {
	DURABLE_FLUSH, /* one flush per destination at the end (default) */
	DURABLE_FUA,   /* every write */
	DURABLE_NONE,
};

struct transfer_opts {
	bool stop_on_error;
	bool noerror; /* write zeroes for unreadable source blocks */
	enum durability durability;
};

/* A stretch of the source, in sectors from the start of its region. */
struct sector_range {
	sector_t sector, count;
};

struct transfer_result {
	uint64_t bytes; /* read from the source (copy), zeroed (zero) */
	bool started;	/* kcopyd accepted a job: destinations touched */
	int read_err;	/* the source failed: see bad[] */
	int submit_err; /* kcopyd refused a job */
	bool backward;	/* copied from the end (overlap above source) */
	struct sector_range *bad; /* unreadable: zeroed (noerror), or where
				     the copy stopped (the first only) */
	unsigned int nr_bad;
};

int clients_start(struct clients *c, bool kcopyd);
void clients_stop(struct clients *c);
void catch_signals(sigset_t *blocked);
int overlap_side(const struct target *src, const struct target *dst);
void transfer(struct clients *c, struct target *src, struct target *dst,
	      unsigned int nr, const struct transfer_opts *o,
	      struct progress *pg, struct transfer_result *res);

/* Note unreadable source sectors in @res->bad, joining touching ranges. */
void note_unreadable(struct transfer_result *res, struct sector_range r);

/* One data-less flush over every healthy destination; a failed flush
 * fails its destination. */
void flush_destinations(struct clients *c, struct target *dst, unsigned int nr);

/* stream.c: transfer() where the source or the destination is "-". */
void stream_transfer(struct clients *c, struct target *src, struct target *dst,
		     unsigned int nr, const struct transfer_opts *o,
		     unsigned int flags, bool truncate_files,
		     struct progress *pg, struct transfer_result *res);

/* writeback.c: write-behind for buffered block-device destinations of a
 * copy; NULL (nothing to do) is a valid handle for the other two. */
struct writeback;
struct writeback *writeback_start(const struct target *dst, unsigned int nr);
void writeback_job_done(struct writeback *wb, sector_t off, sector_t len);
void writeback_end(struct writeback *wb);

/* verify.c */
int compare_regions(struct clients *c, struct target *a, struct target *b,
		    unsigned int nr, struct progress *pg, uint64_t *compared);

#endif /* DMIO_TOOL_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dmio-bench - libdmio against a pread/pwrite loop, glibc POSIX AIO,
 * raw liburing (or raw libnbd on NBD exports), fio and dd, on the same
 * devices, with the same bytes and the same queue depth.
 *
 *   dmio-bench --dev /dev/loopA ... [--nbd URI x3] [--slow DEV x3]
 *              [--runs 3] [--time 2] [--json F] [--plot F.png] [WORKLOAD...]
 *
 * Workloads: seq randread mirror latency latency-fd copy cpu (default: all
 * that the given devices allow).  Each figure is the median of --runs runs
 * with min and max; the runs of a figure's engines are interleaved so that
 * drift on a shared machine hits them all alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "bench.h"

#define MAX_PEERS   6
#define MAX_FIGURES 24

enum unit {
	U_MIBS,	 /* MiB/s of request payload */
	U_IOPS,	 /* requests/s (a mirrored write counts once) */
	U_INSTR, /* instructions per request, lower is better */
	U_CPU,	 /* CPU microseconds per request, lower is better */
};

static const char *const unit_name[] = {
	[U_MIBS] = "MiB/s",
	[U_IOPS] = "IOPS",
	[U_INSTR] = "instr/IO",
	[U_CPU] = "CPU us/IO",
};

static bool lower_wins(enum unit u)
{
	return u == U_INSTR || u == U_CPU;
}

struct peer {
	const char *name; /* in the table: says what the engine is */
	const char *kind; /* plot column */
	int (*fn)(const struct workload *w, struct result *r);
	const struct fio_job *fio;
	const char *prog; /* dmio copy */
	double target;	  /* libdmio/peer >= target (<= when lower wins) */
	/* measured */
	double v[MAX_RUNS];
	unsigned int n;
	int err;
};

struct figure {
	char id[32];
	char title[96];
	enum unit unit;
	struct workload w;
	struct peer p[MAX_PEERS]; /* p[0] is libdmio */
	unsigned int np;
	const char *note;
};

static struct figure figs[MAX_FIGURES];
static unsigned int nfigs;

/* Options. */
static const char *devs[MAX_DEVS], *nbds[MAX_DEVS], *slows[MAX_DEVS];
static unsigned int ndevs, nnbd, nslow, runs = 3;
static double run_secs = 2;
static uint64_t copy_bytes = 1ull << 30;
static bool use_fio = true, direct = true;
static unsigned int icount_small = 2000, icount_big = 10000;
static const char *shim_path;
static const char *only_kinds; /* --engines: a comma-separated filter */
static const char *dmio_tool, *json_file, *plot_file, *self_path;

static const struct fio_job fio_uring = {"io_uring", 1};
static const struct fio_job fio_psync = {"psync", 1};
static const struct fio_job fio_uring3 = {"io_uring", 3};

/* ---- setting figures up ---- */

static uint64_t dev_bytes(const char *path)
{
	struct stat st;
	uint64_t size = 0;
	int fd;

	if (strstr(path, "://"))
		return 0; /* an NBD export: the caller knows its size */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode))
		ioctl(fd, BLKGETSIZE64, &size);
	else
		size = (uint64_t)st.st_size;
	close(fd);
	return size;
}

static uint64_t min_span(const char *const *paths, unsigned int n)
{
	uint64_t span = UINT64_MAX;
	unsigned int i;

	for (i = 0; i < n; i++) {
		uint64_t b = dev_bytes(paths[i]);

		if (b < span)
			span = b;
	}
	return span;
}

static struct figure *new_figure(const char *id, const char *title,
				 enum unit unit)
{
	struct figure *f;

	if (nfigs == MAX_FIGURES)
		die("too many figures");
	f = &figs[nfigs++];
	memset(f, 0, sizeof(*f));
	snprintf(f->id, sizeof(f->id), "%s", id);
	snprintf(f->title, sizeof(f->title), "%s", title);
	f->unit = unit;
	f->w.seconds = run_secs;
	f->w.direct = direct;
	f->w.seed = 0x5eed;
	return f;
}

static void add_peer(struct figure *f, const char *name, const char *kind,
		     int (*fn)(const struct workload *, struct result *),
		     double target)
{
	struct peer *p = &f->p[f->np++];

	p->name = name;
	p->kind = kind;
	p->fn = fn;
	p->target = target;
}

static void add_fio(struct figure *f, const char *name,
		    const struct fio_job *fj, double target)
{
	if (!use_fio)
		return;
	add_peer(f, name, "fio", NULL, target);
	f->p[f->np - 1].fio = fj;
}

static void set_paths(struct figure *f, const char *const *paths,
		      unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		f->w.paths[i] = paths[i];
	f->w.nr_regions = n;
}

static void fig_seq(void)
{
	static const unsigned int legs[] = {1, 2, 4, 8};
	unsigned int i;

	for (i = 0; i < 4 && legs[i] <= ndevs; i++) {
		char id[32], title[96];
		struct figure *f;

		snprintf(id, sizeof(id), "seq-write-%u", legs[i]);
		snprintf(title, sizeof(title),
			 "seq 1 MiB write QD8 -> %u region%s", legs[i],
			 legs[i] > 1 ? "s (mirrored)" : "");
		f = new_figure(id, title, U_MIBS);
		set_paths(f, devs, legs[i]);
		f->w.dir = DIR_WRITE;
		f->w.bs = 1 << 20;
		f->w.qd = 8;
		f->w.span = min_span(devs, legs[i]) / f->w.bs * f->w.bs;
		add_peer(f, "libdmio: async dm_io() QD8", "libdmio",
			 eng_libdmio, 0);
		add_peer(f, "pwrite loop, legs in turn (QD1)", "loop",
			 eng_pio_loop, 0);
		add_peer(f, "glibc lio_listio, 1 list/req, QD8", "lio", eng_lio,
			 0);
		add_peer(f, "raw liburing QD8", "uring", eng_uring, 0);
		if (legs[i] == 1)
			add_fio(f, "fio io_uring QD8", &fio_uring, 0.95);
	}
}

/* A figure of 4 KiB random reads at @qd from the first device. */
static struct figure *randread_figure(const char *name, const char *title,
				      unsigned int qd)
{
	struct figure *f = new_figure(name, title, U_IOPS);

	set_paths(f, devs, 1);
	f->w.dir = DIR_READ;
	f->w.bs = 4096;
	f->w.qd = qd;
	f->w.random = true;
	f->w.span = min_span(devs, 1) / 4096 * 4096;
	return f;
}

static void fig_randread(void)
{
	struct figure *f;

	f = randread_figure("randread-qd1", "rand 4 KiB read QD1 (sync API)",
			    1);
	add_peer(f, "libdmio: sync dm_io()", "libdmio", eng_libdmio_sync, 0);
	add_peer(f, "pread loop", "loop", eng_pio_loop, 0);
	add_peer(f, "raw liburing QD1", "uring", eng_uring, 0);
	add_fio(f, "fio psync", &fio_psync, 0.90);

	f = randread_figure("randread-qd32", "rand 4 KiB read QD32 (async)",
			    32);
	add_peer(f, "libdmio: async dm_io() QD32", "libdmio", eng_libdmio, 0);
	add_peer(f, "pread loop (QD1)", "loop", eng_pio_loop, 0);
	add_peer(f, "glibc lio_listio QD32", "lio", eng_lio, 0);
	add_peer(f, "raw liburing QD32", "uring", eng_uring, 0);
	add_fio(f, "fio io_uring QD32", &fio_uring, 0.95);

	f = randread_figure(
		"randread-qd32-submitter",
		"rand 4 KiB read QD32, a submitting thread + condvar", 32);
	add_peer(f, "libdmio: dm_io() + callback + condvar", "libdmio",
		 eng_libdmio_submitter, 0);
	add_peer(f, "raw liburing + reaper thread + condvar", "uring",
		 eng_uring_submitter, 1.0);
	add_fio(f, "fio io_uring QD32", &fio_uring, 0.90);
}

static void mirror_common(struct figure *f, const char *const *paths)
{
	set_paths(f, paths, 3);
	f->w.dir = DIR_WRITE;
	f->w.bs = 4096;
	f->w.qd = 32;
	f->w.random = true;
}

static void fig_mirror(void)
{
	struct figure *f = new_figure(
		"mirror3", "rand 4 KiB mirrored write x3 QD32, RAM", U_IOPS);

	mirror_common(f, devs);
	f->w.span = min_span(devs, 3) / 4096 * 4096;
	add_peer(f, "libdmio: async dm_io() QD32", "libdmio", eng_libdmio, 0);
	add_peer(f, "pwrite loop, legs in turn (QD1)", "loop", eng_pio_loop, 0);
	add_peer(f, "glibc lio_listio, 1 list/req, QD32", "lio", eng_lio, 0);
	add_peer(f, "raw liburing QD32", "uring", eng_uring, 0);
	add_fio(f, "fio io_uring, 3 jobs x QD32 (/3)", &fio_uring3, 1.0);
}

static void fig_latency(void)
{
	struct figure *f;

	/* Small regions at the start of each export: NBD memory exports are
	 * sparse, and their size does not matter to a delay. */
	f = new_figure("nbd-mirror3-qd32",
		       "rand 4 KiB mirrored write x3 QD32, NBD + delay",
		       U_IOPS);
	mirror_common(f, nbds);
	f->w.span = 64ull << 20;
	add_peer(f, "libdmio: async dm_io() QD32", "libdmio", eng_libdmio, 0);
	add_peer(f, "libnbd nbd_pwrite loop, legs in turn", "loop",
		 eng_nbd_loop, 2.5);
	add_peer(f, "raw libnbd aio QD32, legs in parallel", "uring",
		 eng_nbd_aio, 0);

	f = new_figure("nbd-mirror3-qd1",
		       "rand 4 KiB mirrored write x3 QD1, NBD + delay", U_IOPS);
	mirror_common(f, nbds);
	f->w.qd = 1;
	f->w.span = 64ull << 20;
	add_peer(f, "libdmio: sync dm_io()", "libdmio", eng_libdmio_sync, 0);
	add_peer(f, "libnbd nbd_pwrite loop, legs in turn", "loop",
		 eng_nbd_loop, 0);
	add_peer(f, "raw libnbd aio QD1, legs in parallel", "uring",
		 eng_nbd_aio, 0);
}

static void fig_latency_fd(void)
{
	struct figure *f = new_figure(
		"slow-mirror3-qd32",
		"rand 4 KiB mirrored write x3 QD32, slow loop devs", U_IOPS);

	mirror_common(f, slows);
	f->w.span = min_span(slows, 3) / 4096 * 4096;
	add_peer(f, "libdmio: async dm_io() QD32", "libdmio", eng_libdmio, 0);
	add_peer(f, "pwrite loop, legs in turn (QD1)", "loop", eng_pio_loop,
		 2.5);
	add_peer(f, "glibc lio_listio, 1 list/req, QD32", "lio", eng_lio, 3.0);
	add_peer(f, "raw liburing QD32", "uring", eng_uring, 0);
	add_fio(f, "fio io_uring, 3 jobs x QD32 (/3)", &fio_uring3, 0);

	/* At queue depth 1 a lio_listio() list runs its legs in parallel
	 * too (one glibc thread per descriptor): the honest floor. */
	f = new_figure("slow-mirror3-qd1",
		       "rand 4 KiB mirrored write x3 QD1, slow loop devs",
		       U_IOPS);
	mirror_common(f, slows);
	f->w.qd = 1;
	f->w.span = min_span(slows, 3) / 4096 * 4096;
	add_peer(f, "libdmio: sync dm_io()", "libdmio", eng_libdmio_sync, 0);
	add_peer(f, "pwrite loop, legs in turn", "loop", eng_pio_loop, 0);
	add_peer(f, "glibc lio_listio, 1 list/req, QD1", "lio", eng_lio, 0);
	add_peer(f, "raw liburing QD1", "uring", eng_uring, 0);
}

static void fig_copy(void)
{
	uint64_t span = min_span(devs, 3);
	struct figure *f;
	char title[96];

	if (copy_bytes > span)
		copy_bytes = span / (1 << 20) * (1 << 20);
	snprintf(title, sizeof(title), "copy %llu MiB -> 2 destinations",
		 (unsigned long long)(copy_bytes >> 20));
	f = new_figure("copy2", title, U_MIBS);
	set_paths(f, devs, 3);
	f->w.dir = DIR_WRITE;
	f->w.bs = 1 << 20;
	f->w.qd = 1;
	f->w.bytes = copy_bytes;
	f->w.span = span;
	f->note = "MiB/s of source copied; dd writes ONE destination";
	add_peer(f, "libdmio: kcopyd, 2 dests", "libdmio", eng_kcopyd, 0);
	add_peer(f, "pread + pwrite each dest (1 MiB)", "loop", eng_copy_loop,
		 0);
	add_peer(f, "dd bs=1M direct -> 1 dest", "other", eng_dd, 0);

	if (!dmio_tool)
		return;
	snprintf(title, sizeof(title), "dmio copy %llu MiB -> 2 destinations",
		 (unsigned long long)(copy_bytes >> 20));
	f = new_figure("dmio-copy2", title, U_MIBS);
	set_paths(f, devs, 3);
	f->w.dir = DIR_WRITE;
	f->w.bs = 1 << 20;
	f->w.qd = 1;
	f->w.bytes = copy_bytes;
	f->w.span = span;
	f->note = "wall time of the whole command; dd writes ONE destination";
	add_peer(f, "libdmio: dmio copy, 2 dests", "libdmio", NULL, 0);
	f->p[0].prog = dmio_tool;
	add_peer(f, "dd bs=1M direct -> 1 dest", "other", eng_dd, 0);
}

/* The shim that lets libdmio run under valgrind: beside this program. */
static const char *default_shim(void)
{
	static char path[4096];
	char *slash;

	if (shim_path)
		return shim_path;
	snprintf(path, sizeof(path), "%s", self_path);
	slash = strrchr(path, '/');
	if (!slash)
		return NULL;
	snprintf(slash + 1, sizeof(path) - (size_t)(slash + 1 - path), "%s",
		 "vg-uring-shim.so");
	return access(path, R_OK) ? NULL : path;
}

static void fig_cpu(const char *shim)
{
	struct figure *f;

	shim_path = shim;
	if (!have_program("valgrind") || !shim) {
		fprintf(stderr, "dmio-bench: %s: no instruction counts\n",
			shim ? "no valgrind" : "no vg-uring-shim.so");
		goto cpu_time;
	}
	f = new_figure("instr-4k-read",
		       "instructions per 4 KiB async read QD32 (callgrind)",
		       U_INSTR);

	set_paths(f, devs, 1);
	f->note = "user-space instructions per request, every thread";
	add_peer(f, "libdmio: async dm_io()", "libdmio", NULL, 0);
	/* Issue 15: at most 2.5 times raw liburing's instructions. */
	add_peer(f, "raw liburing", "uring", NULL, 2.5);

cpu_time:
	/* The same question in real time, kernel included. */
	f = new_figure("cpu-4k-read", "CPU time per 4 KiB async read QD32",
		       U_CPU);
	set_paths(f, devs, 1);
	f->w.dir = DIR_READ;
	f->w.bs = 4096;
	f->w.qd = 32;
	f->w.random = true;
	f->w.span = min_span(devs, 1) / 4096 * 4096;
	f->note = "user + system time of the process, every thread";
	add_peer(f, "libdmio: async dm_io() QD32", "libdmio", eng_libdmio, 0);
	add_peer(f, "raw liburing QD32", "uring", eng_uring, 0);
}

/* ---- running ---- */

static int run_peer(struct figure *f, struct peer *p, double *value)
{
	struct result r = {0};
	int ret;

	struct rusage ru0, ru1;

	if (f->unit == U_INSTR) {
		struct cpu_count cc = {
			.self = self_path,
			.shim = shim_path,
			.dev = f->w.paths[0],
			.direct = direct,
			.small = icount_small,
			.big = icount_big,
		};

		return instr_per_io(&cc, p == &f->p[0] ? "libdmio" : "liburing",
				    value);
	}
	getrusage(RUSAGE_SELF, &ru0);
	if (p->fio)
		ret = eng_fio(&f->w, p->fio, &r);
	else if (p->prog)
		ret = eng_dmio_copy(p->prog, &f->w, &r);
	else
		ret = p->fn(&f->w, &r);
	if (ret)
		return ret;
	if (r.secs <= 0 || !r.ops)
		return -EIO;
	if (f->unit == U_CPU) {
		getrusage(RUSAGE_SELF, &ru1);
		*value = ((double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
				   ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) *
				  1e6 +
			  (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
				   ru1.ru_stime.tv_usec -
				   ru0.ru_stime.tv_usec)) /
			 (double)r.ops;
		return 0;
	}
	*value = (double)r.ops / r.secs;
	if (f->unit == U_MIBS)
		*value *= (double)f->w.bs / (1 << 20);
	return 0;
}

static bool kind_wanted(const char *kind)
{
	size_t len = strlen(kind);
	const char *k;

	if (!only_kinds)
		return true;
	for (k = only_kinds; (k = strstr(k, kind)); k += len)
		if ((k == only_kinds || k[-1] == ',') &&
		    (k[len] == ',' || !k[len]))
			return true;
	return false;
}

static void run_figure(struct figure *f)
{
	unsigned int run, i;

	for (run = 0; run < runs; run++) {
		fprintf(stderr, "[%s] run %u/%u:", f->id, run + 1, runs);
		for (i = 0; i < f->np; i++) {
			struct peer *p = &f->p[i];
			double v;
			int ret;

			if (p->err || !kind_wanted(p->kind))
				continue;
			ret = run_peer(f, p, &v);
			if (ret) {
				p->err = ret;
				fprintf(stderr, " %s: %s;", p->kind,
					strerror(-ret));
				continue;
			}
			p->v[p->n++] = v;
			fprintf(stderr, " %s %.*f;", p->kind, v < 100 ? 2 : 0,
				v);
		}
		fputc('\n', stderr);
	}
}

/* ---- statistics and reporting ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct stats {
	double median, min, max;
};

static bool peer_stats(const struct peer *p, struct stats *s)
{
	double v[MAX_RUNS];

	if (!p->n)
		return false;
	memcpy(v, p->v, sizeof(v[0]) * p->n);
	qsort(v, p->n, sizeof(v[0]), cmp_double);
	s->min = v[0];
	s->max = v[p->n - 1];
	s->median =
		p->n % 2 ? v[p->n / 2] : (v[p->n / 2 - 1] + v[p->n / 2]) / 2;
	return true;
}

/* libdmio/peer from the medians; 0 when either is missing. */
static double ratio(const struct figure *f, const struct peer *p)
{
	struct stats a, b;

	if (!peer_stats(&f->p[0], &a) || !peer_stats(p, &b) || !b.median)
		return 0;
	return a.median / b.median;
}

static const char *verdict(const struct figure *f, const struct peer *p)
{
	double r = ratio(f, p);

	if (!p->target)
		return "";
	if (!r)
		return "not measured";
	if (lower_wins(f->unit))
		return r <= p->target ? "met" : "MISSED";
	return r >= p->target ? "met" : "MISSED";
}

static struct {
	char cpu[128];
	unsigned int cores;
	unsigned long mem_mib;
	char kernel[160];
	double load;
} machine;

static void probe_machine(void)
{
	char line[256];
	struct utsname u;
	FILE *f;

	machine.cores = (unsigned int)sysconf(_SC_NPROCESSORS_ONLN);
	f = fopen("/proc/cpuinfo", "re");
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
			snprintf(machine.cpu, sizeof(machine.cpu), "%s",
				 strchr(line, ':') + 2);
			machine.cpu[strcspn(machine.cpu, "\n")] = '\0';
			break;
		}
	}
	if (f)
		fclose(f);
	f = fopen("/proc/meminfo", "re");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %lu kB", &machine.mem_mib) == 1)
			machine.mem_mib /= 1024;
	if (f)
		fclose(f);
	if (!uname(&u))
		snprintf(machine.kernel, sizeof(machine.kernel), "%s %s",
			 u.sysname, u.release);
	f = fopen("/proc/loadavg", "re");
	if (f && fscanf(f, "%lf", &machine.load) != 1)
		machine.load = -1;
	if (f)
		fclose(f);
}

/* Decimals worth printing: CPU microseconds are small numbers. */
static int digits(double v)
{
	return v < 100 ? 2 : 0;
}

static void print_table(FILE *out)
{
	unsigned int i, j;

	fprintf(out,
		"\nmachine: %s, %u cores, %lu MiB, %s; load %.2f at start; "
		"%u runs per figure, %s I/O\n",
		machine.cpu, machine.cores, machine.mem_mib, machine.kernel,
		machine.load, runs, direct ? "O_DIRECT" : "buffered");
	fprintf(out, "%-50s %-38s %10s %10s %10s %-8s %9s  %s\n", "workload",
		"engine", "median", "min", "max", "unit", "libdmio/", "target");
	for (i = 0; i < nfigs; i++) {
		struct figure *f = &figs[i];

		for (j = 0; j < f->np; j++) {
			struct peer *p = &f->p[j];
			struct stats s;
			char rat[16] = "", tgt[40] = "";

			if (j && ratio(f, p))
				snprintf(rat, sizeof(rat), "%.2fx",
					 ratio(f, p));
			if (p->target)
				snprintf(tgt, sizeof(tgt), "%s %.2fx: %s",
					 lower_wins(f->unit) ? "<=" : ">=",
					 p->target, verdict(f, p));
			if (peer_stats(p, &s))
				fprintf(out,
					"%-50s %-38s %10.*f %10.*f %10.*f "
					"%-8s %9s  %s\n",
					j ? "" : f->title, p->name,
					digits(s.median), s.median,
					digits(s.median), s.min,
					digits(s.median), s.max,
					unit_name[f->unit], rat, tgt);
			else
				fprintf(out, "%-50s %-38s %32s %-8s %9s  %s\n",
					j ? "" : f->title, p->name,
					p->err ? strerror(-p->err) : "not run",
					unit_name[f->unit], "", tgt);
		}
		if (f->note)
			fprintf(out, "%-50s (%s)\n", "", f->note);
	}
}

static void json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(out, "\\u%04x", *s);
		else
			fputc(*s, out);
	}
	fputc('"', out);
}

static void write_json(const char *file)
{
	FILE *out = fopen(file, "we");
	unsigned int i, j, k;

	if (!out)
		die("%s: %s", file, strerror(errno));
	fprintf(out, "{\n  \"machine\": {\"cpu\": ");
	json_string(out, machine.cpu);
	fprintf(out, ", \"cores\": %u, \"memory_mib\": %lu, \"kernel\": ",
		machine.cores, machine.mem_mib);
	json_string(out, machine.kernel);
	fprintf(out, ", \"load_at_start\": %.2f},\n", machine.load);
	fprintf(out,
		"  \"runs\": %u, \"seconds_per_run\": %g, \"direct\": %s,\n",
		runs, run_secs, direct ? "true" : "false");
	fprintf(out, "  \"figures\": [\n");
	for (i = 0; i < nfigs; i++) {
		struct figure *f = &figs[i];

		fprintf(out, "    {\"id\": \"%s\", \"title\": ", f->id);
		json_string(out, f->title);
		fprintf(out, ", \"unit\": \"%s\", \"lower_is_better\": %s,\n",
			unit_name[f->unit],
			lower_wins(f->unit) ? "true" : "false");
		if (f->note) {
			fprintf(out, "     \"note\": ");
			json_string(out, f->note);
			fprintf(out, ",\n");
		}
		fprintf(out, "     \"engines\": [\n");
		for (j = 0; j < f->np; j++) {
			struct peer *p = &f->p[j];
			struct stats s;

			fprintf(out, "       {\"name\": ");
			json_string(out, p->name);
			fprintf(out, ", \"kind\": \"%s\"", p->kind);
			if (peer_stats(p, &s)) {
				fprintf(out,
					", \"median\": %.6g, \"min\": %.6g, "
					"\"max\": %.6g, \"runs\": [",
					s.median, s.min, s.max);
				for (k = 0; k < p->n; k++)
					fprintf(out, "%s%.6g", k ? ", " : "",
						p->v[k]);
				fprintf(out, "]");
			} else {
				fprintf(out, ", \"error\": ");
				json_string(out, p->err ? strerror(-p->err)
							: "not run");
			}
			if (j && ratio(f, p))
				fprintf(out, ", \"libdmio_ratio\": %.4f",
					ratio(f, p));
			if (p->target)
				fprintf(out,
					", \"target\": \"%s%.2f\", "
					"\"met\": %s",
					lower_wins(f->unit) ? "<=" : ">=",
					p->target,
					!strcmp(verdict(f, p), "met")
						? "true"
						: "false");
			fprintf(out, "}%s\n", j + 1 < f->np ? "," : "");
		}
		fprintf(out, "     ]}%s\n", i + 1 < nfigs ? "," : "");
	}
	fprintf(out, "  ]\n}\n");
	fclose(out);
}

/* A clustered bar chart of libdmio/peer per figure, one colour per kind of
 * peer, on a log scale: the latency-bound ratios are tens, the rest near
 * one. */
static void write_plot(const char *png)
{
	static const char *const kinds[] = {"loop", "lio", "uring", "fio",
					    "other"};
	static const char *const kind_title[] = {
		"pread/pwrite loop (nbd_pwrite on NBD)", "glibc lio_listio",
		"raw liburing (raw libnbd aio on NBD)", "fio",
		"dd (copy to 1 dest)"};
	char dat[300], gp[300], *argv[3];
	FILE *d, *g;
	unsigned int i, j, k;
	int ret;

	snprintf(dat, sizeof(dat), "%s.dat", png);
	snprintf(gp, sizeof(gp), "%s.gp", png);
	d = fopen(dat, "we");
	if (!d)
		die("%s: %s", dat, strerror(errno));
	fprintf(d, "figure");
	for (k = 0; k < 5; k++)
		fprintf(d, "\t\"%s\"", kind_title[k]);
	fputc('\n', d);
	for (i = 0; i < nfigs; i++) {
		struct figure *f = &figs[i];

		if (lower_wins(f->unit))
			continue;
		fprintf(d, "\"%s\"", f->id);
		for (k = 0; k < 5; k++) {
			double r = 0;

			for (j = 1; j < f->np; j++)
				if (!strcmp(f->p[j].kind, kinds[k]))
					r = ratio(f, &f->p[j]);
			if (r)
				fprintf(d, "\t%.4f", r);
			else
				fprintf(d, "\t-");
		}
		fputc('\n', d);
	}
	fclose(d);

	g = fopen(gp, "we");
	if (!g)
		die("%s: %s", gp, strerror(errno));
	fprintf(g,
		"set terminal pngcairo size 1400,720 font 'sans,10'\n"
		"set output '%s'\n"
		"set title 'libdmio throughput / peer throughput (median of "
		"%u runs; > 1: libdmio faster)'\n"
		"set style data histograms\n"
		"set style histogram clustered gap 1\n"
		"set style fill solid 0.85 border -1\n"
		"set datafile missing '-'\n"
		"set logscale y\n"
		"set yrange [0.1:100]\n"
		"set ytics (0.1, 0.25, 0.5, 1, 2, 4, 10, 25, 50, 100)\n"
		"set grid ytics\n"
		"set xtics rotate by -30 left noenhanced\n"
		"set key below noenhanced\n"
		"set ylabel 'libdmio / peer (log scale)'\n"
		"set bmargin 12\n"
		"plot for [i=2:6] '%s' using i:xtic(1) title "
		"columnheader(i), 1 with lines lc 'black' dt 2 notitle\n",
		png, runs, dat);
	fclose(g);
	argv[0] = "gnuplot";
	argv[1] = gp;
	argv[2] = NULL;
	ret = run_program(argv, NULL, 0, NULL);
	if (ret)
		fprintf(stderr, "dmio-bench: gnuplot failed (%d); data in %s\n",
			ret, dat);
}

/* ---- main ---- */

static void usage(int status)
{
	fprintf(status ? stderr : stdout,
		"usage: dmio-bench [OPTIONS] [WORKLOAD...]\n"
		"  --dev PATH      RAM-backed device or file (repeat; 8 for "
		"every workload)\n"
		"  --nbd URI       latency-bound NBD export (repeat, 3)\n"
		"  --slow PATH     latency-bound local device (repeat, 3)\n"
		"  --runs N        runs per figure (default 3)\n"
		"  --time SEC      seconds per run (default 2)\n"
		"  --copy-mib N    MiB per copy (default 1024)\n"
		"  --dmio PATH     the dmio tool, for the dmio copy figure\n"
		"  --no-fio        leave fio out\n"
		"  --buffered      page-cache I/O for every engine\n"
		"  --engines LIST  run only these kinds: "
		"libdmio,loop,lio,uring,"
		"fio,other\n"
		"  --json FILE     write the results as JSON\n"
		"  --plot FILE.png draw a bar chart with gnuplot\n"
		"workloads: seq randread mirror latency latency-fd copy cpu "
		"(default: all the devices allow)\n"
		"  --icount N,M    requests in the short and long callgrind "
		"runs "
		"(default 2000,10000)\n"
		"  --shim PATH     vg-uring-shim.so (default: beside this "
		"program)\n"
		"  dmio-bench cpu-inner ENGINE DEV direct|buffered COUNT  "
		"(what "
		"callgrind runs)\n");
	exit(status);
}

static bool wants(int argc, char **argv, int first, const char *name)
{
	int i;

	if (first >= argc)
		return true;
	for (i = first; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

static void add_dev(const char **list, unsigned int *n, const char *path)
{
	if (*n == MAX_DEVS)
		die("at most %d devices of a kind", MAX_DEVS);
	list[(*n)++] = path;
}

int main(int argc, char **argv)
{
	int i;

	if (argc >= 6 && !strcmp(argv[1], "cpu-inner"))
		return cpu_inner(argv[2], argv[3], !strcmp(argv[4], "direct"),
				 (unsigned int)strtoul(argv[5], NULL, 10));
	/* The instruction count re-runs this very binary. */
	self_path = realpath("/proc/self/exe", NULL);
	if (!self_path)
		self_path = argv[0];
	for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(o, "--help"))
			usage(0);
		else if (!strcmp(o, "--no-fio"))
			use_fio = false;
		else if (!strcmp(o, "--buffered"))
			direct = false;
		else if (!v)
			usage(2);
		else if (!strcmp(o, "--dev"))
			add_dev(devs, &ndevs, v);
		else if (!strcmp(o, "--nbd"))
			add_dev(nbds, &nnbd, v);
		else if (!strcmp(o, "--slow"))
			add_dev(slows, &nslow, v);
		else if (!strcmp(o, "--runs"))
			runs = (unsigned int)strtoul(v, NULL, 10);
		else if (!strcmp(o, "--time"))
			run_secs = strtod(v, NULL);
		else if (!strcmp(o, "--copy-mib"))
			copy_bytes = strtoull(v, NULL, 10) << 20;
		else if (!strcmp(o, "--engines"))
			only_kinds = v;
		else if (!strcmp(o, "--shim"))
			shim_path = v;
		else if (!strcmp(o, "--icount"))
			sscanf(v, "%u,%u", &icount_small, &icount_big);
		else if (!strcmp(o, "--dmio"))
			dmio_tool = v;
		else if (!strcmp(o, "--json"))
			json_file = v;
		else if (!strcmp(o, "--plot"))
			plot_file = v;
		else
			usage(2);
		i++;
	}
	if (!runs || runs > MAX_RUNS || run_secs <= 0 || !copy_bytes ||
	    icount_big <= icount_small)
		die("--runs must be 1..%d, --time and --copy-mib positive",
		    MAX_RUNS);
	if (use_fio && !have_program("fio")) {
		fprintf(stderr, "dmio-bench: no fio in PATH: leaving it out\n");
		use_fio = false;
	}
	if (dmio_tool && !have_program(dmio_tool)) {
		fprintf(stderr, "dmio-bench: %s not found: no dmio copy\n",
			dmio_tool);
		dmio_tool = NULL;
	}
	probe_machine();

	if (ndevs && wants(argc, argv, i, "seq"))
		fig_seq();
	if (ndevs && wants(argc, argv, i, "randread"))
		fig_randread();
	if (ndevs >= 3 && wants(argc, argv, i, "mirror"))
		fig_mirror();
	if (nnbd >= 3 && have_nbd() && wants(argc, argv, i, "latency"))
		fig_latency();
	if (nslow >= 3 && wants(argc, argv, i, "latency-fd"))
		fig_latency_fd();
	if (ndevs >= 3 && wants(argc, argv, i, "copy"))
		fig_copy();
	if (ndevs && wants(argc, argv, i, "cpu"))
		fig_cpu(default_shim());
	if (!nfigs)
		die("nothing to run: give devices with --dev/--nbd/--slow");

	for (unsigned int f = 0; f < nfigs; f++)
		run_figure(&figs[f]);
	print_table(stdout);
	if (json_file)
		write_json(json_file);
	if (plot_file)
		write_plot(plot_file);
	return 0;
}

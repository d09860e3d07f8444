/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peers that are programs, not libraries: fio, dd and the dmio tool, run
 * as child processes on the same devices in the same session; and this
 * program itself under valgrind's callgrind, for the instruction counts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "tl.h"

int run_program(char *const argv[], char *out, size_t outlen, double *secs)
{
	const struct tl_child c = {
		.in = TL_INHERIT,
		.out = TL_DEVNULL,
		.err = TL_INHERIT,
	};
	double start = now_sec();
	int status, ret;

	ret = tl_run(argv, &c, outlen ? out : NULL, outlen, 0, &status);
	if (ret)
		return ret;
	if (secs)
		*secs = now_sec() - start;
	if (!WIFEXITED(status))
		return -EINTR;
	return WEXITSTATUS(status) == 127 ? -ENOENT : WEXITSTATUS(status);
}

bool have_program(const char *name)
{
	char path[4096];

	return tl_find_program(name, path, sizeof(path));
}

/* ---- fio ---- */

/* Field @n (1-based) of a terse-format line. */
static const char *terse_field(const char *line, unsigned int n)
{
	while (--n && line)
		if ((line = strchr(line, ';')))
			line++;
	return line;
}

int eng_fio(const struct workload *w, const struct fio_job *fj,
	    struct result *r)
{
	static char out[1 << 16];
	char opt[16][64], name[MAX_DEVS][32], file[MAX_DEVS][300];
	char *argv[64];
	const char *line;
	unsigned int a = 0, o = 0, i;
	double kib, ms;
	int ret;

	argv[a++] = "fio";
	argv[a++] = "--output-format=terse";
	argv[a++] = "--terse-version=3";
	argv[a++] = "--group_reporting";
	/* Random offsets may repeat, as ours do; no seed-dependent map. */
	argv[a++] = "--norandommap";
	argv[a++] = "--randrepeat=0";
	argv[a++] = "--thread";
	snprintf(opt[o], sizeof(opt[o]), "--ioengine=%s", fj->engine);
	argv[a++] = opt[o++];
	snprintf(opt[o], sizeof(opt[o]), "--rw=%s%s", w->random ? "rand" : "",
		 w->dir == DIR_WRITE ? "write" : "read");
	argv[a++] = opt[o++];
	snprintf(opt[o], sizeof(opt[o]), "--bs=%zu", w->bs);
	argv[a++] = opt[o++];
	snprintf(opt[o], sizeof(opt[o]), "--iodepth=%u", w->qd);
	argv[a++] = opt[o++];
	snprintf(opt[o], sizeof(opt[o]), "--direct=%d", w->direct);
	argv[a++] = opt[o++];
	snprintf(opt[o], sizeof(opt[o]), "--size=%llu",
		 (unsigned long long)w->span);
	argv[a++] = opt[o++];
	if (w->bytes) {
		snprintf(opt[o], sizeof(opt[o]), "--io_size=%llu",
			 (unsigned long long)w->bytes);
		argv[a++] = opt[o++];
	} else {
		argv[a++] = "--time_based";
		snprintf(opt[o], sizeof(opt[o]), "--runtime=%ums",
			 (unsigned int)(w->seconds * 1000));
		argv[a++] = opt[o++];
	}
	/* One job per device: the mirrored comparison writes the same bytes
	 * as the mirror, N streams of it. */
	for (i = 0; i < fj->jobs; i++) {
		snprintf(name[i], sizeof(name[i]), "--name=dev%u", i);
		snprintf(file[i], sizeof(file[i]), "--filename=%s",
			 w->paths[i]);
		argv[a++] = name[i];
		argv[a++] = file[i];
	}
	argv[a] = NULL;

	ret = run_program(argv, out, sizeof(out), NULL);
	if (ret)
		return ret < 0 ? ret : -EIO;
	line = strstr(out, "3;fio-");
	if (!line)
		return -EPROTO;
	if (w->dir == DIR_WRITE) {
		kib = strtod(terse_field(line, 47), NULL);
		ms = strtod(terse_field(line, 50), NULL);
	} else {
		kib = strtod(terse_field(line, 6), NULL);
		ms = strtod(terse_field(line, 9), NULL);
	}
	if (ms <= 0)
		return -EPROTO;
	r->ops = (uint64_t)(kib * 1024 / (double)w->bs / fj->jobs);
	r->secs = ms / 1000;
	r->err = 0;
	return 0;
}

/* ---- dd and dmio copy: a copy of w->bytes from paths[0] ---- */

int eng_dd(const struct workload *w, struct result *r)
{
	char in[300], of[300], bs[32], count[32];
	char *argv[] = {"dd",
			in,
			of,
			bs,
			count,
			"iflag=direct",
			"oflag=direct",
			"status=none",
			NULL};
	double secs;
	int ret;

	/* dd reads with O_DIRECT too: kcopyd does, and a cached source would
	 * compare a copy with a memcpy. */
	snprintf(in, sizeof(in), "if=%s", w->paths[0]);
	snprintf(of, sizeof(of), "of=%s", w->paths[1]);
	snprintf(bs, sizeof(bs), "bs=%zu", w->bs);
	snprintf(count, sizeof(count), "count=%llu",
		 (unsigned long long)(w->bytes / w->bs));
	ret = run_program(argv, NULL, 0, &secs);
	if (ret)
		return ret < 0 ? ret : -EIO;
	r->ops = w->bytes / w->bs;
	r->secs = secs;
	r->err = 0;
	return 0;
}

int eng_dmio_copy(const char *dmio, const struct workload *w, struct result *r)
{
	static char out[1 << 14];
	char src[320], *argv[MAX_DEVS + 4];
	unsigned int a = 0, i;
	double secs;
	int ret;

	argv[a++] = (char *)dmio;
	argv[a++] = "copy";
	snprintf(src, sizeof(src), "%s@0+%llu", w->paths[0],
		 (unsigned long long)(w->bytes >> 9));
	argv[a++] = src;
	for (i = 1; i < w->nr_regions; i++)
		argv[a++] = (char *)w->paths[i];
	argv[a] = NULL;
	ret = run_program(argv, out, sizeof(out), &secs);
	if (ret)
		return ret < 0 ? ret : -EIO;
	r->ops = w->bytes / w->bs;
	r->secs = secs;
	r->err = 0;
	return 0;
}

/* ---- CPU cost: instructions per request under callgrind ---- */

/* The program's user-space instruction total: "summary:" or "totals:". */
static int callgrind_total(const char *file, double *total)
{
	char line[512];
	FILE *f = fopen(file, "re");
	int ret = -EPROTO;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "summary:", 8) ||
		    !strncmp(line, "totals:", 7)) {
			*total = strtod(strchr(line, ':') + 1, NULL);
			ret = 0;
		}
	}
	fclose(f);
	return ret;
}

static int callgrind_count(const struct cpu_count *cc, const char *engine,
			   unsigned int count, double *total)
{
	char file[96], out_opt[128], cnt[16], preload[4200];
	char *argv[] = {"valgrind",
			"--tool=callgrind",
			"-q",
			out_opt,
			(char *)cc->self,
			"cpu-inner",
			(char *)engine,
			(char *)cc->dev,
			cc->direct ? "direct" : "buffered",
			cnt,
			NULL};
	char *env_preload = getenv("LD_PRELOAD");
	int ret;

	snprintf(file, sizeof(file), "/tmp/dmio-bench-cg.%d.%s.%u",
		 (int)getpid(), engine, count);
	snprintf(out_opt, sizeof(out_opt), "--callgrind-out-file=%s", file);
	snprintf(cnt, sizeof(cnt), "%u", count);
	/* Both engines run with the shim, though only libdmio's completion
	 * thread ever calls what it replaces. */
	snprintf(preload, sizeof(preload), "%s%s%s", cc->shim,
		 env_preload ? ":" : "", env_preload ? env_preload : "");
	setenv("LD_PRELOAD", preload, 1);
	ret = run_program(argv, NULL, 0, NULL);
	if (env_preload)
		setenv("LD_PRELOAD", env_preload, 1);
	else
		unsetenv("LD_PRELOAD");
	if (!ret)
		ret = callgrind_total(file, total);
	else if (ret > 0)
		ret = -EIO;
	if (ret || !cc->keep)
		unlink(file);
	return ret;
}

/*
 * Everything around the I/O (starting threads, opening devices, setting
 * up rings, the dynamic linker, filling buffers) costs the same in a short
 * and a long run: the difference between two counts, divided by the
 * difference in requests, is the cost of one request, submission and
 * completion on every thread included.
 */
int instr_per_io(const struct cpu_count *cc, const char *engine, double *per_io)
{
	double a, b;
	int ret;

	ret = callgrind_count(cc, engine, cc->small, &a);
	if (!ret)
		ret = callgrind_count(cc, engine, cc->big, &b);
	if (ret)
		return ret;
	*per_io = (b - a) / (cc->big - cc->small);
	return 0;
}

/* The program that is counted: @count 4 KiB random reads at QD 32. */
int cpu_inner(const char *engine, const char *dev, bool direct,
	      unsigned int count)
{
	struct workload w = {
		.dir = DIR_READ,
		.bs = 4096,
		.qd = 32,
		.nr_regions = 1,
		.random = true,
		.paths = {dev},
		.span = 64ull << 20,
		.bytes = (uint64_t)count * 4096,
		.direct = direct,
		.seed = 42,
	};
	struct result r = {0};
	int ret;

	if (!strcmp(engine, "libdmio"))
		ret = eng_libdmio(&w, &r);
	else if (!strcmp(engine, "liburing"))
		ret = eng_uring(&w, &r);
	else
		ret = -EINVAL;
	if (!ret && r.ops != count)
		ret = -EIO;
	return ret ? 1 : 0;
}

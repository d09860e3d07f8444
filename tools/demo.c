// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio demo: the tool's main job on images it makes itself.  A source of
 * random data and three mirror images in a new folder; kcopyd copies the
 * source to the mirrors, every mirror is compared with the source, and the
 * folder goes away afterwards, on failure and on Ctrl-C too.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dmio.h"

#define MIRRORS		3
#define DEFAULT_SECTORS (128u << 11) /* 128 MiB */
#define FILL_BYTES	(1u << 20)

/* xorshift64*: incompressible enough, and far faster than getrandom(). */
static uint64_t next_random(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545F4914F6CDD1DULL;
}

/* Create @path with @bytes of random data; 0 or a negative errno
 * (-EINTR when a signal asked us to stop). */
static int write_random(const char *path, uint64_t bytes)
{
	uint64_t state, *buf, left;
	size_t i, n;
	int fd, ret = 0;

	if (getrandom(&state, sizeof(state), 0) != sizeof(state))
		state = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	state |= 1; /* xorshift never leaves zero */
	buf = malloc(FILL_BYTES);
	if (!buf)
		return -ENOMEM;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		ret = -errno;
	for (left = bytes; !ret && left && !interrupted; left -= n) {
		n = left < FILL_BYTES ? (size_t)left : FILL_BYTES;
		for (i = 0; i < n / sizeof(*buf); i++)
			buf[i] = next_random(&state);
		if (write(fd, buf, n) != (ssize_t)n)
			ret = errno ? -errno : -EIO;
	}
	if (!ret && interrupted)
		ret = -EINTR;
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

static const char *demo_result(const struct target *t, char *buf, size_t len)
{
	if (t->err || t->differs)
		return verify_result(t, buf, len);
	return "OK, same as the source";
}

/* Copy and compare on images that are ready; returns the exit status. */
static int copy_and_check(struct target *src, struct target *mirrors,
			  const sigset_t *blocked, bool quiet)
{
	struct transfer_opts opts = {.durability = DURABLE_FLUSH};
	struct transfer_result res;
	struct clients cl = {0};
	struct progress copy, cmp;
	const char *backend, *why;
	char size[24];
	uint64_t compared = 0;
	int status, ret = 0, i;

	status = open_source(src, 0);
	if (status)
		return status;
	for (i = 0; i < MIRRORS; i++)
		mirrors[i].count = src->count;
	pthread_sigmask(SIG_BLOCK, blocked, NULL);
	status = clients_start(&cl, true);
	pthread_sigmask(SIG_UNBLOCK, blocked, NULL);
	if (status)
		return status;
	backend = dm_io_client_backend(cl.io, &why);
	printf("copying with kcopyd on %s; %s\n", backend, why);
	fflush(stdout);

	progress_start(&copy, "copied", BYTES(src->count), quiet);
	transfer(&cl, src, mirrors, MIRRORS, &opts, &copy, &res);
	progress_end(&copy, res.bytes, "to 3 mirrors");
	if (!interrupted && !res.read_err && !res.submit_err) {
		printf("comparing each mirror with the source\n");
		fflush(stdout);
		progress_start(&cmp, "compared", BYTES(src->count), quiet);
		ret = compare_regions(&cl, src, mirrors, MIRRORS, &cmp,
				      &compared);
		progress_end(&cmp, compared, "with 3 mirrors");
	}
	clients_stop(&cl);
	if (interrupted)
		return 128 + interrupted;

	print_table(stdout, "mirror", mirrors, MIRRORS, demo_result);
	if (res.submit_err || res.read_err || ret) {
		warn("the source failed: %s",
		     error_text(res.submit_err ? res.submit_err
				: res.read_err ? res.read_err
					       : ret));
		return EXIT_USAGE;
	}
	for (i = 0; i < MIRRORS; i++)
		if (mirrors[i].err || mirrors[i].differs)
			status = EXIT_SOME_FAILED;
	printf("copied %s to %d mirrors in %.2f s: %.1f MiB/s\n",
	       human_bytes(res.bytes, size, sizeof(size)), MIRRORS,
	       copy.seconds, mib_per_s(res.bytes, copy.seconds));
	return status;
}

static int run_demo(sector_t sectors, bool keep, bool quiet)
{
	static const char *const names[1 + MIRRORS] = {
		"source.img", "mirror-1.img", "mirror-2.img", "mirror-3.img"};
	struct target t[1 + MIRRORS] = {0};
	const char *tmp = getenv("TMPDIR");
	char dir[4096], size[24];
	sigset_t blocked;
	int i, ret = 0, status;

	snprintf(dir, sizeof(dir), "%s/dmio-demo-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	catch_signals(&blocked);
	if (!mkdtemp(dir))
		return fatal("cannot make a folder in %s: %s",
			     tmp && *tmp ? tmp : "/tmp", strerror(errno));
	for (i = 0; i <= MIRRORS; i++) {
		t[i].arg = names[i];
		if (asprintf(&t[i].spec, "%s/%s", dir, names[i]) < 0) {
			t[i].spec = NULL;
			ret = -ENOMEM;
		}
	}
	printf("dmio demo: %s of random data and %d mirror images in %s\n",
	       human_bytes(BYTES(sectors), size, sizeof(size)), MIRRORS, dir);
	fflush(stdout);

	if (!ret) {
		ret = write_random(t[0].spec, BYTES(sectors));
		/* Removed with the rest, whatever happened half way. */
		t[0].created = true;
	}
	for (i = 1; !ret && i <= MIRRORS; i++)
		ret = target_create(&t[i], BYTES(sectors), 0);
	if (ret) {
		status = interrupted ? 128 + interrupted
				     : fatal("cannot make the images: %s",
					     strerror(-ret));
	} else {
		status = copy_and_check(&t[0], &t[1], &blocked, quiet);
	}

	targets_release(t, 1 + MIRRORS, !keep);
	if (keep)
		printf("kept the images in %s\n", dir);
	else if (rmdir(dir))
		warn("cannot remove %s: %s", dir, strerror(errno));
	if (interrupted)
		warn("interrupted%s", keep ? "" : "; removed the images");
	return status;
}

struct demo_cli {
	sector_t sectors;
	bool keep, quiet;
};

static int demo_option(int opt, void *ctx)
{
	struct demo_cli *d = ctx;

	switch (opt) {
	case 'q':
		d->quiet = true;
		break;
	case OPT_SIZE:
		if (parse_amount(optarg, &d->sectors) || !d->sectors)
			return usage_error("bad size '%s'", optarg);
		break;
	case OPT_KEEP:
		d->keep = true;
		break;
	default:
		return EXIT_USAGE;
	}
	return GO_ON;
}

static int run(int argc, char *argv[])
{
	struct demo_cli d = {.sectors = DEFAULT_SECTORS};
	struct common_opts co = {0};
	int status;

	status = parse_options(argc, argv, &co, demo_option, &d);
	if (status != GO_ON)
		return status;
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	return run_demo(d.sectors, d.keep, d.quiet);
}

static const struct cli_option demo_options[] = {
	{"size", required_argument, OPT_SIZE, "SIZE",
	 "source size: sectors, or bytes with K, M, G\n(default 128M)"},
	{"keep", no_argument, OPT_KEEP, NULL,
	 "keep the folder and say where it is"},
	{"quiet", no_argument, 'q', NULL, "no progress bars"},
	CLI_END,
};

static const char demo_usage[] =
	"Usage: dmio demo [OPTIONS]\n"
	"\n"
	"Make a source image of random data and three mirror images in a\n"
	"new folder under $TMPDIR (or /tmp), copy the source to the mirrors\n"
	"with kcopyd, verify them, show the results and the throughput, and\n"
	"remove the folder, on failure and on Ctrl-C too.\n";

const struct command demo_command = {
	.name = "demo",
	.run = run,
	.usage = demo_usage,
	.options = demo_options,
};

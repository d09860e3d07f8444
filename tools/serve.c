// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio serve: the front door of nbdkit-dmio-plugin.  Checks the options,
 * then becomes nbdkit (exec, so that signals sent to "dmio serve" reach
 * the server itself) serving the legs as one mirrored export; or, given a
 * control socket and a command, asks a running server and prints the
 * answer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dmio.h"

#ifndef DMIO_NBDKIT_PLUGIN
#define DMIO_NBDKIT_PLUGIN "nbdkit-dmio-plugin.so"
#endif

const char serve_help[] =
	"Usage: dmio serve [OPTIONS] LEG...\n"
	"       dmio serve --status [--json] CONTROL\n"
	"       dmio serve --fail LEG | --remove LEG | --add LEG | --scrub |\n"
	"                  --set-rate RATE  CONTROL\n"
	"\n"
	"Serve 1..8 legs (files, block devices, NBD URIs) as one mirrored\n"
	"NBD export: nbdkit with nbdkit-dmio-plugin, in the foreground.\n"
	"Writes go to every leg, reads to one with failover; a failed leg\n"
	"is dropped and resynced from the others with kcopyd when it is\n"
	"added back.  The last 4 KiB of each leg hold its superblock.\n"
	"With CONTROL (a running server's control socket) and a command,\n"
	"ask the server and print its answer.\n"
	"\n"
	"Options:\n"
	"      --socket PATH      serve on a Unix socket (control socket:\n"
	"                         PATH.ctl unless --control says)\n"
	"      --port N           serve on TCP port N (default 10809)\n"
	"      --control PATH     the control socket\n"
	"      --log FILE         keep the dirty-region log in FILE\n"
	"                         (default: in memory; a restart resyncs\n"
	"                         all after a crash)\n"
	"      --region-size SIZE dirty-log region (default 512K)\n"
	"      --resync-rate RATE resync and scrub bytes per second, with\n"
	"                         K, M, G (default: no limit)\n"
	"      --leg-timeout MS   fail an NBD leg silent for MS (default "
	"5000)\n"
	"      --read-policy P    round-robin (default) or least-loaded\n"
	"      --primary LEG      the leg whose data wins (split brain)\n"
	"      --nosync           trust the legs to be equal at start\n"
	"      --verify           scrub (compare the legs) once in sync\n"
	"      --threads N        nbdkit's worker threads\n"
	"      --run CMD          run CMD ($uri set), stop when it ends\n"
	"      --direct           open files with O_DIRECT too\n"
	"      --buffered         use the page cache, block devices too\n"
	"  -h, --help             this text\n"
	"\n"
	"Control commands:\n"
	"      --status [--json]  legs, states, errors, resync, scrub, log\n"
	"      --fail LEG         mark a leg (index or spec) failed\n"
	"      --remove LEG       fail it and drop it\n"
	"      --add LEG          add a new leg or bring a failed one back\n"
	"      --scrub            compare the legs online\n"
	"      --set-rate RATE    change the resync and scrub rate\n";

enum serve_option {
	SOPT_SOCKET = 0x200,
	SOPT_PORT,
	SOPT_CONTROL,
	SOPT_LOG,
	SOPT_REGION_SIZE,
	SOPT_RESYNC_RATE,
	SOPT_LEG_TIMEOUT,
	SOPT_READ_POLICY,
	SOPT_PRIMARY,
	SOPT_NOSYNC,
	SOPT_VERIFY,
	SOPT_THREADS,
	SOPT_RUN,
	SOPT_STATUS,
	SOPT_FAIL,
	SOPT_REMOVE,
	SOPT_ADD,
	SOPT_SCRUB,
	SOPT_SET_RATE,
};

static const struct option serve_options[] = {
	{"socket", required_argument, NULL, SOPT_SOCKET},
	{"port", required_argument, NULL, SOPT_PORT},
	{"control", required_argument, NULL, SOPT_CONTROL},
	{"log", required_argument, NULL, SOPT_LOG},
	{"region-size", required_argument, NULL, SOPT_REGION_SIZE},
	{"resync-rate", required_argument, NULL, SOPT_RESYNC_RATE},
	{"leg-timeout", required_argument, NULL, SOPT_LEG_TIMEOUT},
	{"read-policy", required_argument, NULL, SOPT_READ_POLICY},
	{"primary", required_argument, NULL, SOPT_PRIMARY},
	{"nosync", no_argument, NULL, SOPT_NOSYNC},
	{"verify", no_argument, NULL, SOPT_VERIFY},
	{"threads", required_argument, NULL, SOPT_THREADS},
	{"run", required_argument, NULL, SOPT_RUN},
	{"direct", no_argument, NULL, OPT_DIRECT},
	{"buffered", no_argument, NULL, OPT_BUFFERED},
	{"status", no_argument, NULL, SOPT_STATUS},
	{"json", no_argument, NULL, OPT_JSON},
	{"fail", required_argument, NULL, SOPT_FAIL},
	{"remove", required_argument, NULL, SOPT_REMOVE},
	{"add", required_argument, NULL, SOPT_ADD},
	{"scrub", no_argument, NULL, SOPT_SCRUB},
	{"set-rate", required_argument, NULL, SOPT_SET_RATE},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* Bytes with an optional K, M, G or T suffix (powers of 1024). */
static int parse_bytes(const char *s, unsigned long long *out)
{
	unsigned long long v;
	char *end;
	int shift = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	if (*end) {
		const char *units = "KMGT", *u = strchr(units, end[0]);

		if (!u || !end[0] || end[1])
			return -EINVAL;
		shift = 10 * (int)(u - units + 1);
	}
	if (shift && v > (~0ull >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned long long max,
		      unsigned long long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end || *out > max ? -EINVAL : 0;
}

/* Send one command line to a running server and print its answer.
 * Returns 0 when the answer starts "ok" (or is JSON), 1 otherwise. */
static int ask(const char *path, const char *line)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char buf[4096];
	bool first = true, ok = false;
	ssize_t n;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return fatal("%s: the socket path is too long", path);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		return fatal("%s: %s", path, strerror(err));
	}
	if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) {
		close(fd);
		return fatal("%s: %s", path, strerror(errno));
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		const char *p = buf;
		size_t len = (size_t)n;

		if (first) {
			ok = !strncmp(buf, "ok\n", 3) || buf[0] == '{';
			if (!strncmp(buf, "ok\n", 3)) {
				p += 3;
				len -= 3;
			}
			first = false;
		}
		fwrite(p, 1, len, ok ? stdout : stderr);
	}
	close(fd);
	return ok ? EXIT_ALL_GOOD : EXIT_SOME_FAILED;
}

/* A control command: the one argument left is the control socket. */
static int control(int argc, char *argv[], const char *line)
{
	if (optind != argc - 1)
		return usage_error(optind < argc
					   ? "one control socket only"
					   : "missing the control socket");
	return ask(argv[optind], line);
}

static bool on_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	while (path && *path) {
		size_t len = strcspn(path, ":");

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, prog);
		if (!access(buf, X_OK))
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

/* A socket that no server listens on any more (nbdkit leaves its socket
 * behind when killed) is removed, so that a restart can bind it. */
static void remove_stale_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path) || lstat(path, &st) ||
	    !S_ISSOCK(st.st_mode))
		return;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    errno == ECONNREFUSED)
		unlink(path);
	close(fd);
}

#define MAX_ARGS 64

struct nbdkit_args {
	char *v[MAX_ARGS + 1];
	unsigned int n;
	bool overflow;
};

static void add(struct nbdkit_args *a, const char *fmt, const char *value)
{
	char *s;

	if (a->n == MAX_ARGS || asprintf(&s, fmt, value) < 0) {
		a->overflow = true;
		return;
	}
	a->v[a->n++] = s;
}

int cmd_serve(int argc, char *argv[])
{
	struct nbdkit_args a = {0};
	const char *socket = NULL, *port = NULL, *ctl = NULL, *threads = NULL,
		   *run = NULL, *plugin = getenv("DMIO_NBDKIT_PLUGIN");
	unsigned long long v;
	char line[4200];
	bool json = false, status = false;
	unsigned int flags = 0;
	unsigned int n_own = 0;
	int opt, i, ret;

	a.v[a.n++] = "nbdkit";
	a.v[a.n++] = "-f"; /* the foreground: "dmio serve" is the server */
	a.v[a.n++] = (char *)(plugin && *plugin ? plugin : DMIO_NBDKIT_PLUGIN);
	line[0] = 0;
	while ((opt = next_option(argc, argv, ":h", serve_options)) != -1) {
		switch (opt) {
		case 'h':
			return print_command_help();
		case SOPT_SOCKET:
			socket = optarg;
			break;
		case SOPT_PORT:
			if (parse_uint(optarg, 65535, &v) || !v)
				return usage_error("bad --port '%s'", optarg);
			port = optarg;
			break;
		case SOPT_CONTROL:
			ctl = optarg;
			break;
		case SOPT_LOG:
			add(&a, "log=%s", optarg);
			break;
		case SOPT_REGION_SIZE:
			if (parse_bytes(optarg, &v) || v < 4096 ||
			    v > (1u << 30) || (v & (v - 1)))
				return usage_error("--region-size: a power of "
						   "two from 4K to 1G, not "
						   "'%s'",
						   optarg);
			add(&a, "region-size=%s", optarg);
			break;
		case SOPT_RESYNC_RATE:
			if (parse_bytes(optarg, &v))
				return usage_error("bad --resync-rate '%s'",
						   optarg);
			add(&a, "resync-rate=%s", optarg);
			break;
		case SOPT_LEG_TIMEOUT:
			if (parse_uint(optarg, 86400000, &v))
				return usage_error("bad --leg-timeout '%s' "
						   "(milliseconds)",
						   optarg);
			add(&a, "leg-timeout=%s", optarg);
			break;
		case SOPT_READ_POLICY:
			if (strcmp(optarg, "round-robin") &&
			    strcmp(optarg, "least-loaded"))
				return usage_error("--read-policy: round-robin "
						   "or least-loaded, not '%s'",
						   optarg);
			add(&a, "read-policy=%s", optarg);
			break;
		case SOPT_PRIMARY:
			add(&a, "primary=%s", optarg);
			break;
		case SOPT_NOSYNC:
			add(&a, "%s", "nosync=true");
			break;
		case SOPT_VERIFY:
			add(&a, "%s", "verify=true");
			break;
		case SOPT_THREADS:
			if (parse_uint(optarg, 1024, &v) || !v)
				return usage_error("bad --threads '%s'",
						   optarg);
			threads = optarg;
			break;
		case SOPT_RUN:
			run = optarg;
			break;
		case OPT_DIRECT:
			flags |= DM_BDEV_DIRECT;
			add(&a, "%s", "direct=true");
			break;
		case OPT_BUFFERED:
			flags |= DM_BDEV_BUFFERED;
			add(&a, "%s", "buffered=true");
			break;
		case OPT_JSON:
			json = true;
			break;
		case SOPT_STATUS:
			status = true;
			break;
		case SOPT_FAIL:
		case SOPT_REMOVE:
		case SOPT_ADD:
			if (strchr(optarg, '\n'))
				return usage_error("a leg name has no newline");
			snprintf(line, sizeof(line), "%s %s\n",
				 opt == SOPT_FAIL     ? "fail"
				 : opt == SOPT_REMOVE ? "remove"
						      : "add",
				 optarg);
			break;
		case SOPT_SCRUB:
			snprintf(line, sizeof(line), "verify\n");
			break;
		case SOPT_SET_RATE:
			if (parse_bytes(optarg, &v))
				return usage_error("bad --set-rate '%s'",
						   optarg);
			snprintf(line, sizeof(line), "rate %llu\n", v);
			break;
		default:
			return EXIT_USAGE;
		}
	}
	if (status && line[0])
		return usage_error("one control command at a time");
	if (status)
		return control(argc, argv, json ? "status json\n" : "status\n");
	if (line[0])
		return control(argc, argv, line);
	if (json)
		return usage_error("--json goes with --status");
	ret = check_open_flags(flags);
	if (ret)
		return ret;
	if (optind == argc)
		return usage_error("missing the legs");
	if (argc - optind > DM_KCOPYD_MAX_REGIONS)
		return usage_error("at most %d legs", DM_KCOPYD_MAX_REGIONS);
	if (socket && port)
		return usage_error("--socket and --port exclude each other");
	for (i = optind; i < argc; i++)
		add(&a, "leg=%s", argv[i]);
	if (!ctl && socket) {
		snprintf(line, sizeof(line), "%s.ctl", socket);
		ctl = line;
	}
	if (ctl)
		add(&a, "control=%s", ctl);
	if (a.overflow)
		return fatal("too many options");
	/* nbdkit's own options go before the plugin. */
	{
		char *own[8];
		unsigned int n = 0, k;

		if (socket) {
			own[n++] = "-U";
			own[n++] = (char *)socket;
		} else if (port) {
			own[n++] = "-p";
			own[n++] = (char *)port;
		}
		if (threads) {
			own[n++] = "-t";
			own[n++] = (char *)threads;
		}
		if (run) {
			own[n++] = "--run";
			own[n++] = (char *)run;
		}
		if (a.n + n > MAX_ARGS)
			return fatal("too many options");
		memmove(a.v + 2 + n, a.v + 2, (a.n - 2) * sizeof(a.v[0]));
		for (k = 0; k < n; k++)
			a.v[2 + k] = own[k];
		a.n += n;
		a.v[a.n] = NULL;
		n_own = n;
	}
	if (!on_path("nbdkit"))
		return fatal("nbdkit is not installed (Debian: apt-get "
			     "install nbdkit)");
	if (strchr(a.v[2 + n_own], '/') && access(a.v[2 + n_own], R_OK))
		return fatal("%s: %s (the plugin; DMIO_NBDKIT_PLUGIN names "
			     "another)",
			     a.v[2 + n_own], strerror(errno));
	if (socket)
		remove_stale_socket(socket);
	fflush(stdout);
	execvp("nbdkit", a.v);
	return fatal("running nbdkit: %s", strerror(errno));
}

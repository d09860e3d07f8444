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

struct serve_cli {
	struct nbdkit_args a;
	const char *socket, *port, *ctl, *threads, *run;
	bool json, status;
	char line[4200]; /* a control command */
};

static int serve_option(int opt, void *ctx)
{
	struct serve_cli *c = ctx;
	struct nbdkit_args *a = &c->a;
	unsigned long long v;

	switch (opt) {
	case SOPT_SOCKET:
		c->socket = optarg;
		break;
	case SOPT_PORT:
		if (parse_uint(optarg, 65535, &v) || !v)
			return usage_error("bad --port '%s'", optarg);
		c->port = optarg;
		break;
	case SOPT_CONTROL:
		c->ctl = optarg;
		break;
	case SOPT_LOG:
		add(a, "log=%s", optarg);
		break;
	case SOPT_REGION_SIZE:
		if (parse_bytes(optarg, &v) || v < 4096 || v > (1u << 30) ||
		    (v & (v - 1)))
			return usage_error("--region-size: a power of two from "
					   "4K to 1G, not '%s'",
					   optarg);
		add(a, "region-size=%s", optarg);
		break;
	case SOPT_RESYNC_RATE:
		if (parse_bytes(optarg, &v))
			return usage_error("bad --resync-rate '%s'", optarg);
		add(a, "resync-rate=%s", optarg);
		break;
	case SOPT_LEG_TIMEOUT:
		if (parse_uint(optarg, 86400000, &v))
			return usage_error("bad --leg-timeout '%s' "
					   "(milliseconds)",
					   optarg);
		add(a, "leg-timeout=%s", optarg);
		break;
	case SOPT_READ_POLICY:
		if (strcmp(optarg, "round-robin") &&
		    strcmp(optarg, "least-loaded"))
			return usage_error("--read-policy: round-robin or "
					   "least-loaded, not '%s'",
					   optarg);
		add(a, "read-policy=%s", optarg);
		break;
	case SOPT_PRIMARY:
		add(a, "primary=%s", optarg);
		break;
	case SOPT_NOSYNC:
		add(a, "%s", "nosync=true");
		break;
	case SOPT_VERIFY:
		add(a, "%s", "verify=true");
		break;
	case SOPT_THREADS:
		if (parse_uint(optarg, 1024, &v) || !v)
			return usage_error("bad --threads '%s'", optarg);
		c->threads = optarg;
		break;
	case SOPT_RUN:
		c->run = optarg;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case SOPT_STATUS:
		c->status = true;
		break;
	case SOPT_FAIL:
	case SOPT_REMOVE:
	case SOPT_ADD:
		if (strchr(optarg, '\n'))
			return usage_error("a leg name has no newline");
		snprintf(c->line, sizeof(c->line), "%s %s\n",
			 opt == SOPT_FAIL     ? "fail"
			 : opt == SOPT_REMOVE ? "remove"
					      : "add",
			 optarg);
		break;
	case SOPT_SCRUB:
		snprintf(c->line, sizeof(c->line), "verify\n");
		break;
	case SOPT_SET_RATE:
		if (parse_bytes(optarg, &v))
			return usage_error("bad --set-rate '%s'", optarg);
		snprintf(c->line, sizeof(c->line), "rate %llu\n", v);
		break;
	default:
		return EXIT_USAGE;
	}
	return GO_ON;
}

static int run_serve(int argc, char *argv[])
{
	static struct serve_cli c; /* big; one per process */
	const char *plugin = getenv("DMIO_NBDKIT_PLUGIN");
	struct nbdkit_args *a = &c.a;
	struct common_opts co = {0};
	unsigned int n_own = 0;
	int i, ret;

	a->v[a->n++] = "nbdkit";
	a->v[a->n++] = "-f"; /* the foreground: "dmio serve" is the server */
	a->v[a->n++] =
		(char *)(plugin && *plugin ? plugin : DMIO_NBDKIT_PLUGIN);
	ret = parse_options(argc, argv, &co, serve_option, &c);
	if (ret != GO_ON)
		return ret;
	if (co.open_flags & DM_BDEV_DIRECT)
		add(a, "%s", "direct=true");
	if (co.open_flags & DM_BDEV_BUFFERED)
		add(a, "%s", "buffered=true");
	if (c.status && c.line[0])
		return usage_error("one control command at a time");
	if (c.status)
		return control(argc, argv,
			       c.json ? "status json\n" : "status\n");
	if (c.line[0])
		return control(argc, argv, c.line);
	if (c.json)
		return usage_error("--json goes with --status");
	if (optind == argc)
		return usage_error("missing the legs");
	if (argc - optind > DM_KCOPYD_MAX_REGIONS)
		return usage_error("at most %d legs", DM_KCOPYD_MAX_REGIONS);
	if (c.socket && c.port)
		return usage_error("--socket and --port exclude each other");
	for (i = optind; i < argc; i++)
		add(a, "leg=%s", argv[i]);
	if (!c.ctl && c.socket) {
		snprintf(c.line, sizeof(c.line), "%s.ctl", c.socket);
		c.ctl = c.line;
	}
	if (c.ctl)
		add(a, "control=%s", c.ctl);
	if (a->overflow)
		return fatal("too many options");
	/* nbdkit's own options go before the plugin. */
	{
		char *own[8];
		unsigned int n = 0, k;

		if (c.socket) {
			own[n++] = "-U";
			own[n++] = (char *)c.socket;
		} else if (c.port) {
			own[n++] = "-p";
			own[n++] = (char *)c.port;
		}
		if (c.threads) {
			own[n++] = "-t";
			own[n++] = (char *)c.threads;
		}
		if (c.run) {
			own[n++] = "--run";
			own[n++] = (char *)c.run;
		}
		if (a->n + n > MAX_ARGS)
			return fatal("too many options");
		memmove(a->v + 2 + n, a->v + 2, (a->n - 2) * sizeof(a->v[0]));
		for (k = 0; k < n; k++)
			a->v[2 + k] = own[k];
		a->n += n;
		a->v[a->n] = NULL;
		n_own = n;
	}
	if (!on_path("nbdkit"))
		return fatal("nbdkit is not installed (Debian: apt-get "
			     "install nbdkit)");
	if (strchr(a->v[2 + n_own], '/') && access(a->v[2 + n_own], R_OK))
		return fatal("%s: %s (the plugin; DMIO_NBDKIT_PLUGIN names "
			     "another)",
			     a->v[2 + n_own], strerror(errno));
	if (c.socket)
		remove_stale_socket(c.socket);
	fflush(stdout);
	execvp("nbdkit", a->v);
	return fatal("running nbdkit: %s", strerror(errno));
}

static const struct cli_option serve_options[] = {
	{"socket", required_argument, SOPT_SOCKET, "PATH",
	 "serve on a Unix socket (control socket:\nPATH.ctl unless --control "
	 "says)"},
	{"port", required_argument, SOPT_PORT, "N",
	 "serve on TCP port N (default 10809)"},
	{"control", required_argument, SOPT_CONTROL, "PATH",
	 "the control socket"},
	{"log", required_argument, SOPT_LOG, "FILE",
	 "keep the dirty-region log in FILE\n(default: in memory; a restart "
	 "resyncs\nall after a crash)"},
	{"region-size", required_argument, SOPT_REGION_SIZE, "SIZE",
	 "dirty-log region (default 512K)"},
	{"resync-rate", required_argument, SOPT_RESYNC_RATE, "RATE",
	 "resync and scrub bytes per second, with\nK, M, G (default: no "
	 "limit)"},
	{"leg-timeout", required_argument, SOPT_LEG_TIMEOUT, "MS",
	 "fail an NBD leg silent for MS (default 5000)"},
	{"read-policy", required_argument, SOPT_READ_POLICY, "P",
	 "round-robin (default) or least-loaded"},
	{"primary", required_argument, SOPT_PRIMARY, "LEG",
	 "the leg whose data wins (split brain)"},
	{"nosync", no_argument, SOPT_NOSYNC, NULL,
	 "trust the legs to be equal at start"},
	{"verify", no_argument, SOPT_VERIFY, NULL,
	 "scrub (compare the legs) once in sync"},
	{"threads", required_argument, SOPT_THREADS, "N",
	 "nbdkit's worker threads"},
	{"run", required_argument, SOPT_RUN, "CMD",
	 "run CMD ($uri set), stop when it ends"},
	{NULL, 0, 0, NULL, "Control commands:"},
	{"status", no_argument, SOPT_STATUS, NULL,
	 "legs, states, errors, resync, scrub, log"},
	{"json", no_argument, OPT_JSON, NULL, "with --status: one JSON object"},
	{"fail", required_argument, SOPT_FAIL, "LEG",
	 "mark a leg (index or spec) failed"},
	{"remove", required_argument, SOPT_REMOVE, "LEG",
	 "fail it and drop it"},
	{"add", required_argument, SOPT_ADD, "LEG",
	 "add a new leg or bring a failed one back"},
	{"scrub", no_argument, SOPT_SCRUB, NULL, "compare the legs online"},
	{"set-rate", required_argument, SOPT_SET_RATE, "RATE",
	 "change the resync and scrub rate"},
	CLI_END,
};

static const char serve_usage[] =
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
	"ask the server and print its answer.\n";

const struct command serve_command = {
	.name = "serve",
	.run = run_serve,
	.usage = serve_usage,
	.options = serve_options,
	.common = COMMON_OPEN,
};

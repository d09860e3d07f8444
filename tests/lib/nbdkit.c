/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdkit servers (see nbdkit.h).
 *
 * A server is forked from the process's main thread (--exit-with-parent and
 * PR_SET_PDEATHSIG follow the thread that forked), everything the child
 * needs is prepared before fork() since the library's threads may hold
 * locks, and the parent waits for nbdkit's PID file, which it writes once
 * it listens, then for the socket to accept a connection.  Every wait is
 * bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nbdkit.h"
#include "tl.h"

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS	 5000
#define PROBE_TIMEOUT_MS 10000
#define MAX_ARGS	 48

static struct nbdkit *servers[NBDKIT_MAX_SERVERS];
static char nbdkit_path[PATH_MAX];

/* nbdkit on $PATH, or false. */
static bool find_nbdkit(void)
{
	return nbdkit_path[0] ||
	       tl_find_program("nbdkit", nbdkit_path, sizeof(nbdkit_path));
}

/* Run nbdkit @args to the end, its stdout into @out (may be NULL);
 * true when it exited with status 0 within the time allowed. */
static bool run_nbdkit(const char *const *args, char *out, size_t size)
{
	const struct tl_child c = {
		.in = TL_DEVNULL,
		.out = TL_DEVNULL,
		.err = out ? TL_DEVNULL : TL_INHERIT,
		.die_with_parent = true,
	};
	char *argv[MAX_ARGS];
	unsigned int n = 0;
	int status;

	argv[n++] = nbdkit_path;
	while (*args && n < MAX_ARGS - 1)
		argv[n++] = (char *)*args++;
	argv[n] = NULL;
	return tl_run(argv, &c, out, size, PROBE_TIMEOUT_MS, &status) == 0 &&
	       WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool nbdkit_available(char *why, size_t size)
{
	static int known; /* 0 unknown, 1 yes, -1 no */
	static char reason[PATH_MAX + 64];

	if (!known) {
		const char *const version[] = {"--version", NULL};

		if (!find_nbdkit()) {
			snprintf(reason, sizeof(reason),
				 "nbdkit is not installed (not on PATH; Debian "
				 "package nbdkit)");
			known = -1;
		} else if (!run_nbdkit(version, NULL, 0)) {
			snprintf(reason, sizeof(reason),
				 "%s --version does not run", nbdkit_path);
			known = -1;
		} else {
			known = 1;
		}
	}
	if (known < 0 && why)
		snprintf(why, size, "%s", reason);
	return known > 0;
}

bool nbdkit_have_filter(const char *filter)
{
	static struct {
		char name[32];
		bool have;
	} cache[16];
	static unsigned int nr;
	char opt[64];
	const char *const args[] = {opt, "null", "--dump-plugin", NULL};
	unsigned int i;
	bool have;

	if (!nbdkit_available(NULL, 0))
		return false;
	for (i = 0; i < nr; i++)
		if (!strcmp(cache[i].name, filter))
			return cache[i].have;
	snprintf(opt, sizeof(opt), "--filter=%s", filter);
	have = run_nbdkit(args, NULL, 0);
	if (nr < sizeof(cache) / sizeof(cache[0]) &&
	    strlen(filter) < sizeof(cache[0].name)) {
		snprintf(cache[nr].name, sizeof(cache[0].name), "%s", filter);
		cache[nr++].have = have;
	}
	return have;
}

bool nbdkit_have_tls(void)
{
	static int known;
	const char *const args[] = {"--dump-config", NULL};
	char out[4096];

	if (!known) {
		known = nbdkit_available(NULL, 0) &&
					run_nbdkit(args, out, sizeof(out)) &&
					strstr(out, "\ntls=yes")
				? 1
				: -1;
	}
	return known > 0;
}

/* ---- servers ------------------------------------------------------------ */

static void remove_dir(struct nbdkit *s)
{
	tl_rmtree(s->dir);
	s->dir[0] = '\0';
}

/* A private directory under @parent, else /dev/shm or /tmp, named like
 * tl_tmpdir_make()'s so that one left behind by a killed process is
 * removed by the next run. */
static int make_dir(struct nbdkit *s, const char *parent)
{
	int err;

	if (parent)
		return tl_tmpdir_make(s->dir, sizeof(s->dir), parent, "nbd");
	err = tl_tmpdir_make(s->dir, sizeof(s->dir), "/dev/shm", "nbd");
	if (err)
		err = tl_tmpdir_make(s->dir, sizeof(s->dir), "/tmp", "nbd");
	return err;
}

static bool pidfile_ready(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && st.st_size > 0;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* The server's first 8 bytes, "NBDMAGIC", within a second.  Reading
 * them before hanging up keeps nbdkit from complaining that its greeting
 * found nobody. */
static bool read_greeting(int fd)
{
	uint64_t deadline = tl_now_ms() + 1000;
	char buf[18];
	size_t got = 0;

	while (got < sizeof(buf)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(deadline - tl_now_ms());
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		r = read(fd, buf + got, sizeof(buf) - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got >= 8 && !memcmp(buf, "NBDMAGIC", 8);
}

static int write_psk(struct nbdkit *s, const char *user)
{
	unsigned char key[32];
	char line[256];
	int fd, len, i;

	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key))
		return -EIO;
	len = snprintf(line, sizeof(line), "%s:", user);
	for (i = 0; i < (int)sizeof(key); i++)
		len += snprintf(line + len, sizeof(line) - (size_t)len, "%02x",
				key[i]);
	line[len++] = '\n';
	fd = open(s->psk, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, line, (size_t)len) != len) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

/* @arg with "@CTL@" and "@PSK@" replaced by the server's paths, in
 * malloc'ed memory. */
static char *subst(const char *arg, const struct nbdkit *s)
{
	static const char *const keys[2] = {"@CTL@", "@PSK@"};
	const char *vals[2] = {s->ctl, s->psk};
	size_t cap = strlen(arg) + 1, len = 0;
	char *out;
	unsigned int k;

	for (k = 0; k < 2; k++)
		cap += strlen(vals[k]) * 4;
	out = malloc(cap);
	if (!out)
		return NULL;
	while (*arg) {
		for (k = 0; k < 2; k++)
			if (!strncmp(arg, keys[k], strlen(keys[k])))
				break;
		if (k < 2 && len + strlen(vals[k]) < cap) {
			memcpy(out + len, vals[k], strlen(vals[k]));
			len += strlen(vals[k]);
			arg += strlen(keys[k]);
		} else if (len + 1 < cap) {
			out[len++] = *arg++;
		} else {
			break;
		}
	}
	out[len] = '\0';
	return out;
}

static void free_argv(struct nbdkit *s)
{
	unsigned int i;

	if (!s->argv)
		return;
	for (i = 0; s->argv[i]; i++)
		free(s->argv[i]);
	free(s->argv);
	s->argv = NULL;
}

/* s->argv: nbdkit's fixed options, then @args with their "@CTL@" and
 * "@PSK@" replaced; 0 or -1 with the reason in @why. */
static int make_argv(struct nbdkit *s, const char *user,
		     const char *const *args, char *why, size_t size)
{
	char tls_psk[224];
	const char *fixed[16];
	unsigned int n = 0, nfixed = 0, nargs = 0, i;

	fixed[nfixed++] = nbdkit_path;
	fixed[nfixed++] = "--foreground";
	fixed[nfixed++] = "--exit-with-parent";
	fixed[nfixed++] = "--unix";
	fixed[nfixed++] = s->sock;
	fixed[nfixed++] = "-P";
	fixed[nfixed++] = s->pidfile;
	if (user) {
		snprintf(tls_psk, sizeof(tls_psk), "--tls-psk=%s", s->psk);
		fixed[nfixed++] = "--tls=require";
		fixed[nfixed++] = tls_psk;
	}
	while (args[nargs])
		nargs++;
	if (nfixed + nargs >= MAX_ARGS) {
		snprintf(why, size, "too many nbdkit arguments");
		return -1;
	}
	s->argv = calloc(nfixed + nargs + 1, sizeof(*s->argv));
	if (!s->argv)
		goto oom;
	for (i = 0; i < nfixed; i++)
		if (!(s->argv[n++] = strdup(fixed[i])))
			goto oom;
	for (i = 0; i < nargs; i++)
		if (!(s->argv[n++] = subst(args[i], s)))
			goto oom;
	return 0;
oom:
	snprintf(why, size, "out of memory");
	return -1;
}

/* Fork s->argv and wait until the socket accepts: 0, or -1 with the
 * reason in @why. */
static int launch(struct nbdkit *s, char *why, size_t size)
{
	struct tl_child c = {
		.in = TL_DEVNULL,
		.out = TL_DEVNULL,
		.err = TL_INHERIT,
		.die_with_parent = true,
	};
	uint64_t deadline;
	int logfd = -1;
	pid_t pid;

	unlink(s->sock);
	unlink(s->pidfile);
	if (s->log[0]) {
		logfd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			     0600);
		c.out = c.err = logfd >= 0 ? logfd : TL_INHERIT;
	}
	pid = tl_spawn(s->argv, &c);
	if (logfd >= 0)
		close(logfd);
	if (pid < 0) {
		snprintf(why, size, "fork: %s", strerror(-pid));
		return -1;
	}
	s->pid = pid;
	s->stopped = false;

	/* nbdkit writes its PID file once it listens; then make sure that
	 * the socket really accepts. */
	deadline = tl_now_ms() + START_TIMEOUT_MS;
	for (;;) {
		int status, fd;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			s->pid = 0;
			snprintf(why, size,
				 "nbdkit exited (%s %d) before listening; see "
				 "its message %s",
				 WIFEXITED(status) ? "status" : "signal",
				 WIFEXITED(status) ? WEXITSTATUS(status)
						   : WTERMSIG(status),
				 s->log[0] ? "in the log" : "above");
			return -1;
		}
		if (pidfile_ready(s->pidfile)) {
			fd = unix_connect(s->sock);
			if (fd >= 0) {
				bool ok = read_greeting(fd);

				close(fd);
				if (ok)
					return 0;
			}
		}
		if (tl_now_ms() >= deadline) {
			snprintf(why, size,
				 "nbdkit did not listen on %s within %d ms",
				 s->sock, START_TIMEOUT_MS);
			return -1;
		}
		tl_sleep_ms(5);
	}
}

static struct nbdkit *start(const char *user, const char *parent,
			    const char *log, const char *const *args, char *why,
			    size_t size)
{
	struct nbdkit *s;
	unsigned int slot;
	int err;

	if (!nbdkit_available(why, size))
		return NULL;
	for (slot = 0; slot < NBDKIT_MAX_SERVERS && servers[slot]; slot++)
		;
	if (slot == NBDKIT_MAX_SERVERS) {
		snprintf(why, size, "more than %d nbdkit servers at once",
			 NBDKIT_MAX_SERVERS);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(why, size, "out of memory");
		return NULL;
	}
	err = make_dir(s, parent);
	if (err) {
		snprintf(why, size, "mkdtemp: %s", strerror(-err));
		free(s);
		return NULL;
	}
	snprintf(s->sock, sizeof(s->sock), "%s/sock", s->dir);
	snprintf(s->pidfile, sizeof(s->pidfile), "%s/pid", s->dir);
	snprintf(s->ctl, sizeof(s->ctl), "%s/ctl", s->dir);
	snprintf(s->psk, sizeof(s->psk), "%s/psk", s->dir);
	if (log)
		snprintf(s->log, sizeof(s->log), "%s", log);
	if (user)
		snprintf(s->uri, sizeof(s->uri),
			 "nbds+unix://%s@/?socket=%s&tls-psk-file=%s", user,
			 s->sock, s->psk);
	else
		snprintf(s->uri, sizeof(s->uri), "nbd+unix:///?socket=%s",
			 s->sock);
	servers[slot] = s; /* from here on nbdkit_stop_all() cleans up */

	if (user) {
		err = write_psk(s, user);
		if (err) {
			snprintf(why, size, "writing %s: %s", s->psk,
				 strerror(-err));
			goto fail;
		}
	}
	if (make_argv(s, user, args, why, size) || launch(s, why, size))
		goto fail;
	return s;

fail:
	snprintf(s->error, sizeof(s->error), "%s", why);
	nbdkit_stop(s);
	return NULL;
}

struct nbdkit *nbdkit_start(const char *const *args, char *why, size_t size)
{
	return start(NULL, NULL, NULL, args, why, size);
}

struct nbdkit *nbdkit_start_tls(const char *user, const char *const *args,
				char *why, size_t size)
{
	return start(user, NULL, NULL, args, why, size);
}

struct nbdkit *nbdkit_start_logged(const char *parent, const char *log,
				   const char *const *args, char *why,
				   size_t size)
{
	return start(NULL, parent, log, args, why, size);
}

int nbdkit_restart(struct nbdkit *s, char *why, size_t size)
{
	if (s->pid) {
		snprintf(why, size, "nbdkit pid %d is still running",
			 (int)s->pid);
		return -1;
	}
	if (launch(s, why, size)) {
		/* Reap what did not come up; the caller may try again. */
		nbdkit_sigkill(s);
		return -1;
	}
	return 0;
}

/* @sig to the server, if it still runs: 0 or -errno. */
static int signal_server(struct nbdkit *s, int sig)
{
	if (!s->pid)
		return -ESRCH;
	return kill(s->pid, sig) < 0 ? -errno : 0;
}

int nbdkit_sigkill(struct nbdkit *s)
{
	int err = signal_server(s, SIGKILL);

	if (err)
		return err;
	tl_wait(s->pid);
	s->pid = 0;
	s->stopped = false;
	return 0;
}

int nbdkit_sigstop(struct nbdkit *s)
{
	int status, err = signal_server(s, SIGSTOP);
	pid_t r;

	if (err)
		return err;
	s->stopped = true;
	/* Returns once every thread of it has stopped. */
	do
		r = waitpid(s->pid, &status, WUNTRACED);
	while (r < 0 && errno == EINTR);
	if (r != s->pid)
		return -errno;
	if (!WIFSTOPPED(status)) {
		s->pid = 0; /* it died instead */
		s->stopped = false;
		return -ESRCH;
	}
	return 0;
}

int nbdkit_sigcont(struct nbdkit *s)
{
	int err = signal_server(s, SIGCONT);

	if (err)
		return err;
	s->stopped = false;
	return 0;
}

int nbdkit_stop(struct nbdkit *s)
{
	unsigned int i;
	int ret = 0;

	if (!s)
		return 0;
	if (s->pid) {
		struct stat st;

		if (s->stopped)
			kill(s->pid, SIGCONT);
		/* nbdkit waits for the requests it holds: a pause filter's
		 * must go on (best effort). */
		if (stat(s->ctl, &st) == 0 && S_ISSOCK(st.st_mode))
			nbdkit_pause_control(s, 'r');
		kill(s->pid, SIGTERM);
		if (tl_wait_bounded(s->pid, STOP_TIMEOUT_MS) < 0) {
			fprintf(stderr,
				"nbdkit: pid %d ignored SIGTERM for %d ms: "
				"killed\n",
				(int)s->pid, STOP_TIMEOUT_MS);
			ret = -1;
		}
		s->pid = 0;
	}
	remove_dir(s);
	free_argv(s);
	for (i = 0; i < NBDKIT_MAX_SERVERS; i++)
		if (servers[i] == s)
			servers[i] = NULL;
	free(s);
	return ret;
}

void nbdkit_sigcont_all(void)
{
	unsigned int i;

	for (i = 0; i < NBDKIT_MAX_SERVERS; i++)
		if (servers[i] && servers[i]->pid && servers[i]->stopped)
			nbdkit_sigcont(servers[i]);
}

int nbdkit_stop_all(void)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; i < NBDKIT_MAX_SERVERS; i++)
		if (servers[i] && nbdkit_stop(servers[i]))
			ret = -1;
	return ret;
}

int nbdkit_pause_control(struct nbdkit *s, char cmd)
{
	uint64_t deadline = tl_now_ms() + 5000;
	char want = (char)(cmd - 'a' + 'A'), got = 0;
	int fd;

	for (;;) {
		fd = unix_connect(s->ctl);
		if (fd >= 0)
			break;
		if (tl_now_ms() >= deadline)
			return fd;
		tl_sleep_ms(10);
	}
	if (write(fd, &cmd, 1) != 1) {
		close(fd);
		return -EIO;
	}
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(deadline - tl_now_ms());
		ssize_t r;

		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			close(fd);
			return -ETIMEDOUT;
		}
		r = read(fd, &got, 1);
		if (r == 1)
			break;
		if (r == 0 || errno != EINTR) {
			close(fd);
			return -EIO;
		}
	}
	close(fd);
	return got == want ? 0 : -EPROTO;
}

void nbdkit_kill_all(void)
{
	unsigned int i;

	for (i = 0; i < NBDKIT_MAX_SERVERS; i++) {
		struct nbdkit *s = servers[i];
		pid_t pid;

		if (!s)
			continue;
		pid = s->pid;
		if (pid > 0)
			kill(pid, SIGKILL);
		unlink(s->sock);
		unlink(s->pidfile);
		unlink(s->ctl);
		unlink(s->psk);
		if (s->dir[0])
			rmdir(s->dir);
	}
}

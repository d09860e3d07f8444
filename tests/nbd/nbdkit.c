/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nbdkit servers for the NBD tests (see nbdkit.h).
 *
 * A server is forked from the test's main thread (--exit-with-parent and
 * PR_SET_PDEATHSIG follow the thread that forked), everything the child
 * needs is prepared before fork() since the library's threads may hold
 * locks, and the parent waits for nbdkit's PID file, which it writes once
 * it listens, then for the socket to accept a connection.  Every wait is
 * bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nbdkit.h"

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS	 5000
#define PROBE_TIMEOUT_MS 10000
#define MAX_ARGS	 48

static struct nbdkit *servers[NBDKIT_MAX_SERVERS];
static char nbdkit_path[PATH_MAX];

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* nbdkit on $PATH, or false. */
static bool find_nbdkit(void)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL;
	bool found = false;

	if (nbdkit_path[0])
		return true;
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	copy = strdup(path);
	if (!copy)
		return false;
	for (dir = strtok_r(copy, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char cand[PATH_MAX];

		if (snprintf(cand, sizeof(cand), "%s/nbdkit",
			     *dir ? dir : ".") >= (int)sizeof(cand))
			continue;
		struct stat sb;

		/* A regular file: meson puts library directories on PATH, and
		 * /usr/lib/<triplet>/nbdkit is nbdkit's plugin directory. */
		if (!stat(cand, &sb) && S_ISREG(sb.st_mode) &&
		    access(cand, X_OK) == 0) {
			memcpy(nbdkit_path, cand, sizeof(cand));
			found = true;
		}
	}
	free(copy);
	return found;
}

/* The child's half of a fork: never returns. */
static void child_exec(char *const argv[], int out_fd, pid_t parent)
{
	sigset_t none;
	int null = open("/dev/null", O_RDWR);

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Die with the test even before nbdkit's --exit-with-parent runs. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(126);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(out_fd >= 0 ? out_fd : null, STDOUT_FILENO);
		if (out_fd >= 0)
			dup2(null, STDERR_FILENO);
	}
	execv(nbdkit_path, argv);
	_exit(127);
}

/* Wait for @pid at most @ms; its status, or -1 (then it was killed). */
static int wait_bounded(pid_t pid, unsigned int ms)
{
	uint64_t deadline = now_ms() + ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		if (now_ms() >= deadline)
			break;
		sleep_ms(5);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return -1;
}

/* Run nbdkit @args to the end, its stdout into @out (may be NULL);
 * true when it exited with status 0 within the time allowed. */
static bool run_nbdkit(const char *const *args, char *out, size_t size)
{
	char *argv[MAX_ARGS];
	int pfd[2] = {-1, -1}, status;
	unsigned int n = 0;
	size_t got = 0;
	pid_t pid, parent = getpid();

	argv[n++] = nbdkit_path;
	while (*args && n < MAX_ARGS - 1)
		argv[n++] = (char *)*args++;
	argv[n] = NULL;
	if (out && pipe2(pfd, O_CLOEXEC) < 0)
		return false;
	pid = fork();
	if (pid < 0) {
		if (out) {
			close(pfd[0]);
			close(pfd[1]);
		}
		return false;
	}
	if (pid == 0)
		child_exec(argv, out ? pfd[1] : -1, parent);
	if (out) {
		uint64_t deadline = now_ms() + PROBE_TIMEOUT_MS;

		close(pfd[1]);
		while (got + 1 < size && now_ms() < deadline) {
			struct pollfd p = {.fd = pfd[0], .events = POLLIN};
			ssize_t r;

			if (poll(&p, 1, 100) <= 0)
				continue;
			r = read(pfd[0], out + got, size - 1 - got);
			if (r <= 0 && !(r < 0 && errno == EINTR))
				break;
			if (r > 0)
				got += (size_t)r;
		}
		out[got] = '\0';
		close(pfd[0]);
	}
	status = wait_bounded(pid, PROBE_TIMEOUT_MS);
	return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
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

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		fprintf(stderr, "nbdkit: remove %s: %s\n", path,
			strerror(errno));
	return 0;
}

static void remove_dir(struct nbdkit *s)
{
	if (s->dir[0])
		nftw(s->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	s->dir[0] = '\0';
}

/* A private directory; named like the harness's so that one left behind
 * by a killed test is removed by the next run's h_tmpdir_make(). */
static int make_dir(struct nbdkit *s)
{
	static const char *const parents[] = {"/dev/shm", "/tmp"};
	unsigned int i;

	for (i = 0; i < 2; i++) {
		snprintf(s->dir, sizeof(s->dir), "%s/dmio-test-%d-nbdXXXXXX",
			 parents[i], (int)getpid());
		if (mkdtemp(s->dir))
			return 0;
	}
	s->dir[0] = '\0';
	return -errno;
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
	uint64_t deadline = now_ms() + 1000;
	char buf[18];
	size_t got = 0;

	while (got < sizeof(buf)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(deadline - now_ms());
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

static void free_args(char **argv, unsigned int from, unsigned int to)
{
	while (from < to)
		free(argv[from++]);
}

static struct nbdkit *start(const char *user, const char *const *args,
			    char *why, size_t size)
{
	char *argv[MAX_ARGS];
	char tls_psk[160];
	struct nbdkit *s;
	unsigned int n = 0, slot, first_arg;
	uint64_t deadline;
	pid_t parent = getpid();
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
	err = make_dir(s);
	if (err) {
		snprintf(why, size, "mkdtemp: %s", strerror(-err));
		free(s);
		return NULL;
	}
	snprintf(s->sock, sizeof(s->sock), "%s/sock", s->dir);
	snprintf(s->pidfile, sizeof(s->pidfile), "%s/pid", s->dir);
	snprintf(s->ctl, sizeof(s->ctl), "%s/ctl", s->dir);
	snprintf(s->psk, sizeof(s->psk), "%s/psk", s->dir);
	if (user)
		snprintf(s->uri, sizeof(s->uri),
			 "nbds+unix://%s@/?socket=%s&tls-psk-file=%s", user,
			 s->sock, s->psk);
	else
		snprintf(s->uri, sizeof(s->uri), "nbd+unix:///?socket=%s",
			 s->sock);
	servers[slot] = s; /* from here on nbdkit_stop_all() cleans up */

	argv[n++] = nbdkit_path;
	argv[n++] = "--foreground";
	argv[n++] = "--exit-with-parent";
	argv[n++] = "--unix";
	argv[n++] = s->sock;
	argv[n++] = "-P";
	argv[n++] = s->pidfile;
	if (user) {
		err = write_psk(s, user);
		if (err) {
			snprintf(why, size, "writing %s: %s", s->psk,
				 strerror(-err));
			goto fail;
		}
		snprintf(tls_psk, sizeof(tls_psk), "--tls-psk=%s", s->psk);
		argv[n++] = "--tls=require";
		argv[n++] = tls_psk;
	}
	first_arg = n;
	for (; *args; args++) {
		if (n == MAX_ARGS - 1) {
			snprintf(why, size, "too many nbdkit arguments");
			free_args(argv, first_arg, n);
			goto fail;
		}
		argv[n] = subst(*args, s);
		if (!argv[n]) {
			snprintf(why, size, "out of memory");
			free_args(argv, first_arg, n);
			goto fail;
		}
		n++;
	}
	argv[n] = NULL;

	s->pid = fork();
	if (s->pid != 0)
		free_args(argv, first_arg, n);
	if (s->pid < 0) {
		s->pid = 0;
		snprintf(why, size, "fork: %s", strerror(errno));
		goto fail;
	}
	if (s->pid == 0)
		child_exec(argv, -1, parent);

	/* nbdkit writes its PID file once it listens; then make sure that
	 * the socket really accepts. */
	deadline = now_ms() + START_TIMEOUT_MS;
	for (;;) {
		int status, fd;

		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			snprintf(why, size,
				 "nbdkit exited (%s %d) before listening; see "
				 "its message above",
				 WIFEXITED(status) ? "status" : "signal",
				 WIFEXITED(status) ? WEXITSTATUS(status)
						   : WTERMSIG(status));
			goto fail;
		}
		if (pidfile_ready(s->pidfile)) {
			fd = unix_connect(s->sock);
			if (fd >= 0) {
				bool ok = read_greeting(fd);

				close(fd);
				if (ok)
					return s;
			}
		}
		if (now_ms() >= deadline) {
			snprintf(why, size,
				 "nbdkit did not listen on %s within %d ms",
				 s->sock, START_TIMEOUT_MS);
			goto fail;
		}
		sleep_ms(5);
	}

fail:
	snprintf(s->error, sizeof(s->error), "%s", why);
	nbdkit_stop(s);
	return NULL;
}

struct nbdkit *nbdkit_start(const char *const *args, char *why, size_t size)
{
	return start(NULL, args, why, size);
}

struct nbdkit *nbdkit_start_tls(const char *user, const char *const *args,
				char *why, size_t size)
{
	return start(user, args, why, size);
}

int nbdkit_sigkill(struct nbdkit *s)
{
	int status;

	if (!s->pid)
		return -ESRCH;
	if (kill(s->pid, SIGKILL) < 0)
		return -errno;
	while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
		;
	s->pid = 0;
	s->stopped = false;
	return 0;
}

int nbdkit_sigstop(struct nbdkit *s)
{
	int status;
	pid_t r;

	if (!s->pid)
		return -ESRCH;
	if (kill(s->pid, SIGSTOP) < 0)
		return -errno;
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
	if (!s->pid)
		return -ESRCH;
	if (kill(s->pid, SIGCONT) < 0)
		return -errno;
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
		if (wait_bounded(s->pid, STOP_TIMEOUT_MS) < 0) {
			fprintf(stderr,
				"nbdkit: pid %d ignored SIGTERM for %d ms: "
				"killed\n",
				(int)s->pid, STOP_TIMEOUT_MS);
			ret = -1;
		}
		s->pid = 0;
	}
	remove_dir(s);
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
	uint64_t deadline = now_ms() + 5000;
	char want = (char)(cmd - 'a' + 'A'), got = 0;
	int fd;

	for (;;) {
		fd = unix_connect(s->ctl);
		if (fd >= 0)
			break;
		if (now_ms() >= deadline)
			return fd;
		sleep_ms(10);
	}
	if (write(fd, &cmd, 1) != 1) {
		close(fd);
		return -EIO;
	}
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = (int64_t)(deadline - now_ms());
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

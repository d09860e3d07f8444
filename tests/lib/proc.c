/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Child processes (see tl.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tl.h"

static bool is_program(const char *path)
{
	struct stat sb;

	return !stat(path, &sb) && S_ISREG(sb.st_mode) &&
	       access(path, X_OK) == 0;
}

bool tl_find_program(const char *name, char *path, size_t size)
{
	const char *dirs = getenv("PATH");

	if (strchr(name, '/'))
		return is_program(name) &&
		       snprintf(path, size, "%s", name) < (int)size;
	if (!dirs || !*dirs)
		dirs = "/usr/local/bin:/usr/bin:/bin";
	while (*dirs) {
		size_t len = strcspn(dirs, ":");
		char cand[PATH_MAX];

		/* An empty entry is the current directory. */
		if (snprintf(cand, sizeof(cand), "%.*s/%s", len ? (int)len : 1,
			     len ? dirs : ".", name) < (int)sizeof(cand) &&
		    is_program(cand) &&
		    snprintf(path, size, "%s", cand) < (int)size)
			return true;
		dirs += len + (dirs[len] == ':');
	}
	return false;
}

/* Point @target at what @how says; @null is /dev/null (or -1). */
static void redirect(int how, int target, int null)
{
	if (how == TL_DEVNULL && null >= 0)
		dup2(null, target);
	else if (how >= 0)
		dup2(how, target);
}

pid_t tl_spawn(char *const argv[], const struct tl_child *c)
{
	pid_t parent = getpid(), pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		sigset_t none;
		int null = open("/dev/null", O_RDWR);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		if (c->die_with_parent) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(126);
		}
		redirect(c->in, STDIN_FILENO, null);
		redirect(c->out, STDOUT_FILENO, null);
		redirect(c->err, STDERR_FILENO, null);
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

int tl_wait(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return status;
}

int tl_wait_bounded(pid_t pid, unsigned int ms)
{
	uint64_t deadline = tl_now_ms() + ms;
	int status;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (tl_now_ms() >= deadline)
			break;
		tl_sleep_ms(5);
	}
	kill(pid, SIGKILL);
	tl_wait(pid);
	return -ETIMEDOUT;
}

int tl_run(char *const argv[], const struct tl_child *c, char *out, size_t size,
	   unsigned int timeout_ms, int *status)
{
	uint64_t deadline = tl_now_ms() + timeout_ms;
	struct tl_child cc = *c;
	int pfd[2] = {-1, -1}, st;
	size_t got = 0;
	pid_t pid;

	if (out) {
		if (pipe2(pfd, O_CLOEXEC) < 0)
			return -errno;
		cc.out = pfd[1];
	}
	pid = tl_spawn(argv, &cc);
	if (out)
		close(pfd[1]);
	if (pid < 0) {
		if (out)
			close(pfd[0]);
		return pid;
	}
	/* Read to the end, keeping what fits: a child blocked on a full
	 * pipe would never exit. */
	while (out) {
		struct pollfd p = {.fd = pfd[0], .events = POLLIN};
		char scratch[4096];
		char *dst = got + 1 < size ? out + got : scratch;
		size_t room = got + 1 < size ? size - 1 - got : sizeof(scratch);
		ssize_t r;

		if (timeout_ms && tl_now_ms() >= deadline)
			break;
		if (poll(&p, 1, 100) <= 0)
			continue;
		r = read(pfd[0], dst, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (dst != scratch)
			got += (size_t)r;
	}
	if (out) {
		if (size)
			out[got] = '\0';
		close(pfd[0]);
	}
	if (timeout_ms) {
		int64_t left = (int64_t)(deadline - tl_now_ms());

		st = tl_wait_bounded(pid, left > 0 ? (unsigned int)left : 0);
	} else {
		st = tl_wait(pid);
	}
	if (st < 0)
		return st;
	*status = st;
	return 0;
}

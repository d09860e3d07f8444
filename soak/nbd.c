/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * soak - NBD servers: nbdkit exports as stores, killed or stopped and
 * restarted while the run goes on.
 */
#include "soak.h"

/* ---- nbdkit ---- */

static char nbdkit_path[PATH_MAX];

/* ---- NBD stores ---- */

bool find_nbdkit(void)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL;

	if (!path)
		path = "/usr/bin:/bin";
	copy = strdup(path);
	if (!copy)
		return false;
	for (dir = strtok_r(copy, ":", &save); dir;
	     dir = strtok_r(NULL, ":", &save)) {
		struct stat sb;

		/* A regular file: meson puts library directories on PATH, and
		 * /usr/lib/<triplet>/nbdkit is nbdkit's plugin directory. */
		snprintf(nbdkit_path, sizeof(nbdkit_path), "%s/nbdkit", dir);
		if (!stat(nbdkit_path, &sb) && S_ISREG(sb.st_mode) &&
		    !access(nbdkit_path, X_OK)) {
			free(copy);
			return true;
		}
	}
	free(copy);
	nbdkit_path[0] = '\0';
	return false;
}

/* Start nbdkit for @st from the main thread (PR_SET_PDEATHSIG follows the
 * thread that forks), and wait until it listens. */
static void nbd_start(struct store *st)
{
	char size_arg[64], file_arg[PATH_MAX + 8], log[PATH_MAX + 16];
	char *argv[16];
	unsigned int n = 0;
	uint64_t deadline;
	pid_t pid, parent = getpid();
	struct stat sb;
	int logfd;

	unlink(st->sock);
	unlink(st->pidfile);
	snprintf(size_arg, sizeof(size_arg), "size=%" PRIu64,
		 st->nr_sectors * SECTOR);
	snprintf(file_arg, sizeof(file_arg), "file=%s", st->path);
	snprintf(log, sizeof(log), "%s/nbdkit.log", workdir);
	argv[n++] = nbdkit_path;
	argv[n++] = "--exit-with-parent";
	argv[n++] = "-f";
	argv[n++] = "-U";
	argv[n++] = st->sock;
	argv[n++] = "-P";
	argv[n++] = st->pidfile;
	if (st->kind == K_NBD_MEM) {
		argv[n++] = "memory";
		argv[n++] = size_arg;
	} else {
		argv[n++] = "file";
		argv[n++] = file_arg;
	}
	argv[n] = NULL;
	logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	pid = fork();
	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (pid == 0) {
		sigset_t none;
		int null = open("/dev/null", O_RDWR);

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		if (null >= 0)
			dup2(null, STDIN_FILENO);
		if (logfd >= 0) {
			dup2(logfd, STDOUT_FILENO);
			dup2(logfd, STDERR_FILENO);
		}
		execv(nbdkit_path, argv);
		_exit(127);
	}
	if (logfd >= 0)
		close(logfd);
	atomic_store(&st->pid, pid);
	deadline = now_ns() + 10000000000ull;
	while (stat(st->pidfile, &sb) || !sb.st_size) {
		int status;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			atomic_store(&st->pid, 0);
			fail("nbdkit for %s exited at start (see %s)", st->name,
			     log);
		}
		if (now_ns() > deadline)
			fail("nbdkit for %s did not start in 10 s", st->name);
		sleep_ms(5);
	}
}

static void nbd_views(struct store *st)
{
	add_view(st, "plain", 0, false);
	add_view(st, "rdonly", DM_BDEV_RDONLY, false);
	add_view(st, "fault1", 0, true);
	add_view(st, "fault2", 0, true);
}

/* Write the model's content through the library (a memory export starts
 * empty). */
static void fill_through_library(struct store *st)
{
	struct view *v = &st->views[0];
	uint64_t s;

	for (s = 0; s < st->nr_sectors; s += VBUF_SECTORS) {
		struct io_region where = {
			v->bdev, s, min_u64(VBUF_SECTORS, st->nr_sectors - s)};
		struct dm_io_request rq = {
			.bi_opf = DM_IO_OP_WRITE,
			.mem = {.type = DM_IO_KMEM,
				.ptr.addr = st->data + s * SECTOR},
			.client = client_uring,
		};
		unsigned long bits = 0;
		int ret = dm_io(&rq, 1, &where, &bits);

		if (ret)
			fail("filling %s: %s (bits %#lx)", st->name,
			     errname(ret), bits);
	}
}

void setup_nbd(const char *name, enum store_kind kind)
{
	struct store *st = new_store(name, kind);

	snprintf(st->sock, sizeof(st->sock), "%s/%s.sock", workdir, name);
	snprintf(st->pidfile, sizeof(st->pidfile), "%s/%s.pid", workdir, name);
	snprintf(st->dev, sizeof(st->dev), "nbd+unix:///?socket=%s", st->sock);
	if (kind == K_NBD_FILE)
		write_backing(st);
	else
		st->path[0] = '\0';
	nbd_start(st);
	nbd_views(st);
	if (kind == K_NBD_MEM)
		fill_through_library(st);
}

/* ---- kills, stops and restarts ---- */

void nbd_event(unsigned int nr)
{
	struct store *cand[MAX_STORES], *st;
	unsigned int n = 0, i;
	bool stop_it = nr % 2;
	pid_t pid;
	int status;

	for (i = 0; i < nstores; i++)
		if (store_is_nbd(&stores[i]))
			cand[n++] = &stores[i];
	if (!n)
		return;
	st = cand[(nr / 2) % n];
	pid = atomic_load(&st->pid);
	if (opt.verbose)
		printf("  %s nbdkit of %s (pid %d)\n",
		       stop_it ? "stopping" : "killing", st->name, (int)pid);
	atomic_fetch_add(&st->kills, 1);
	atomic_store(&st->state, S_DYING);
	if (stop_it) {
		/* A server that stops answering: requests time out. */
		kill(pid, SIGSTOP);
		atomic_fetch_add(&g.nbd_stops, 1);
		ctl_beat("waiting while nbdkit is stopped");
		sleep_ms(NBD_TIMEOUT_MS + 1500);
	} else {
		atomic_fetch_add(&g.nbd_kills, 1);
	}
	/* Killed while stopped: it must not act on what it still holds. */
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	atomic_store(&st->pid, 0);
	ctl_beat("after killing nbdkit");
	if (!stop_it)
		sleep_ms(500); /* requests meet the dead server */
	atomic_store(&st->state, S_OFFLINE);
	wait_zero(&st->inflight, "waiting for a dead NBD store to drain");
	for (i = 0; i < st->nviews; i++) {
		if (st->views[i].is_fault)
			random_faults(&ctl_rng, st, &st->views[i].f);
		view_close(&st->views[i]);
	}
	ctl_beat("restarting nbdkit");
	if (st->kind == K_NBD_MEM)
		model_init(st, false);
	nbd_start(st);
	for (i = 0; i < st->nviews; i++) {
		int ret = view_open(&st->views[i]);

		if (ret)
			fail("reopening %s after a restart: %s",
			     st->views[i].spec, errname(ret));
	}
	if (st->kind == K_NBD_MEM)
		fill_through_library(st);
	st->restarts++;
	atomic_fetch_add(&g.nbd_restarts, 1);
	atomic_store(&st->state, S_ONLINE);
	ctl_beat("running");
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * delayfs - a FUSE file system of RAM-backed files whose writes (and, if
 * asked, reads) complete a fixed time after they arrive: a latency-bound
 * device that any program can open, unlike an NBD export.
 *
 *   delayfs MOUNTPOINT FILES SIZE_MIB WRITE_DELAY_US [READ_DELAY_US]
 *
 * The bench puts a loop device over each file, so that every engine (a
 * pwrite loop, lio_listio, liburing, fio, libdmio) talks to the same
 * block devices; this kernel has neither dm-delay nor an NBD client.
 * Requests are never held by a thread while they wait: the data is stored
 * on arrival and the reply is queued for a timer thread, so any number of
 * requests can be waiting at once, as on a device with a deep queue (the
 * nbdkit delay filter, by contrast, holds one of its threads per request).
 * Runs in the foreground until unmounted or signalled.
 */
#define FUSE_USE_VERSION 34

#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define MAX_FILES 16

static unsigned int nr_files;
static size_t file_size;
static long write_delay_ns, read_delay_ns;
static char *store[MAX_FILES];

/* A reply waiting for its time: replies leave in arrival order, and with
 * one delay per kind that is also deadline order per kind. */
struct pending {
	struct pending *next;
	fuse_req_t req;
	struct timespec due;
	size_t size;	 /* bytes written, for the reply */
	const char *buf; /* a read's data, or NULL for a write */
};

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pending *head, **tail;
	bool stop;
	pthread_t thread;
};

static struct queue wq, rq;

static struct timespec due_in(long ns)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_nsec += ns % 1000000000L;
	t.tv_sec += ns / 1000000000L + t.tv_nsec / 1000000000L;
	t.tv_nsec %= 1000000000L;
	return t;
}

static bool reached(const struct timespec *due)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > due->tv_sec ||
	       (now.tv_sec == due->tv_sec && now.tv_nsec >= due->tv_nsec);
}

static void *timer(void *arg)
{
	struct queue *q = arg;

	pthread_mutex_lock(&q->lock);
	while (!q->stop) {
		struct pending *p = q->head;

		if (!p) {
			pthread_cond_wait(&q->cond, &q->lock);
			continue;
		}
		if (!reached(&p->due)) {
			pthread_cond_timedwait(&q->cond, &q->lock, &p->due);
			continue;
		}
		q->head = p->next;
		if (!q->head)
			q->tail = &q->head;
		/* Reply without the lock: arrivals must not wait on a
		 * system call. */
		pthread_mutex_unlock(&q->lock);
		if (p->buf)
			fuse_reply_buf(p->req, p->buf, p->size);
		else
			fuse_reply_write(p->req, p->size);
		free(p);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static void queue_init(struct queue *q)
{
	pthread_condattr_t attr;

	pthread_mutex_init(&q->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &attr);
	pthread_condattr_destroy(&attr);
	q->tail = &q->head;
	if (pthread_create(&q->thread, NULL, timer, q)) {
		perror("delayfs: pthread_create");
		exit(1);
	}
}

static void queue_stop(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL);
}

static void delay_reply(struct queue *q, long ns, fuse_req_t req, size_t size,
			const char *buf)
{
	struct pending *p = malloc(sizeof(*p));

	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->next = NULL;
	p->req = req;
	p->size = size;
	p->buf = buf;
	p->due = due_in(ns);
	pthread_mutex_lock(&q->lock);
	*q->tail = p;
	q->tail = &p->next;
	if (q->head == p)
		pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

/* Inode 1 is the root; files d0, d1, ... are inodes 2, 3, ... */
static bool file_ino(fuse_ino_t ino)
{
	return ino >= 2 && ino < 2 + nr_files;
}

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		st->st_size = (off_t)file_size;
		st->st_blksize = 4096;
		st->st_blocks = (blkcnt_t)(file_size / 512);
	}
}

static void dfs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Asynchronous direct I/O (what a loop device in direct-I/O mode
	 * sends) counts as background work, capped at 12 requests by
	 * default: far below a queue depth of 32 per device. */
	conn->max_background = 1024;
	conn->congestion_threshold = 768;
}

static void dfs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	unsigned int n;

	if (parent != FUSE_ROOT_ID || name[0] != 'd' ||
	    sscanf(name + 1, "%u", &n) != 1 || n >= nr_files) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = 2 + n;
	e.attr_timeout = 3600;
	e.entry_timeout = 3600;
	fill_attr(e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void dfs_getattr(fuse_req_t req, fuse_ino_t ino,
			struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID && !file_ino(ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, 3600);
}

static void dfs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
			int to_set, struct fuse_file_info *fi)
{
	(void)attr;
	(void)to_set;
	/* The size is fixed; anything else is accepted and ignored. */
	dfs_getattr(req, ino, fi);
}

static void dfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (!file_ino(ino)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	/* No page cache: every write pays the delay, O_DIRECT or not.
	 * (libfuse 3.14 cannot ask for parallel direct writes; the kernel
	 * then holds the inode lock only while it queues an asynchronous
	 * write, which is what a loop device sends, but for the whole
	 * round trip of a synchronous one.  The synchronous peers run one
	 * write per file at a time anyway.) */
	fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static bool in_range(off_t off, size_t size)
{
	return off >= 0 && (size_t)off <= file_size &&
	       size <= file_size - (size_t)off;
}

static void dfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	const char *data = store[ino - 2] + off;

	(void)fi;
	if (off >= (off_t)file_size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > file_size - (size_t)off)
		size = file_size - (size_t)off;
	if (read_delay_ns)
		delay_reply(&rq, read_delay_ns, req, size, data);
	else
		fuse_reply_buf(req, data, size);
}

static void dfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		      size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)fi;
	if (!in_range(off, size)) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	memcpy(store[ino - 2] + off, buf, size);
	delay_reply(&wq, write_delay_ns, req, size, NULL);
}

static void dfs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		      struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void dfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops ops = {
	.init = dfs_init,
	.lookup = dfs_lookup,
	.getattr = dfs_getattr,
	.setattr = dfs_setattr,
	.open = dfs_open,
	.read = dfs_read,
	.write = dfs_write,
	.fsync = dfs_fsync,
	.flush = dfs_flush,
};

int main(int argc, char **argv)
{
	char *fargv[] = {argv[0], NULL};
	struct fuse_args args = FUSE_ARGS_INIT(1, fargv);
	struct fuse_session *se;
	unsigned int i;
	int ret = 1;

	if (argc < 5) {
		fprintf(stderr, "usage: delayfs MOUNTPOINT FILES SIZE_MIB "
				"WRITE_DELAY_US [READ_DELAY_US]\n");
		return 2;
	}
	nr_files = (unsigned int)strtoul(argv[2], NULL, 10);
	file_size = (size_t)strtoull(argv[3], NULL, 10) << 20;
	write_delay_ns = strtol(argv[4], NULL, 10) * 1000;
	read_delay_ns = argc > 5 ? strtol(argv[5], NULL, 10) * 1000 : 0;
	if (!nr_files || nr_files > MAX_FILES || !file_size) {
		fprintf(stderr, "delayfs: 1..%d files of at least 1 MiB\n",
			MAX_FILES);
		return 2;
	}
	for (i = 0; i < nr_files; i++) {
		/* Sparse until written, like the nbdkit memory plugin. */
		store[i] = mmap(NULL, file_size, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
				0);
		if (store[i] == MAP_FAILED) {
			perror("delayfs: mmap");
			return 1;
		}
	}
	queue_init(&wq);
	queue_init(&rq);
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se))
		goto out_session;
	if (fuse_session_mount(se, argv[1]))
		goto out_signals;
	ret = fuse_session_loop(se) ? 1 : 0;
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:
	queue_stop(&wq);
	queue_stop(&rq);
	fuse_opt_free_args(&args);
	return ret;
}

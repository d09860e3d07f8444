/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tests/lib: what the tests, the soak, the benchmarks and the regression
 * programs all need around the library, written once: clocks and bounded
 * waits, temporary directories, loop devices, child processes and a
 * recorder for completion callbacks.  nbdkit servers are in nbdkit.h.
 *
 * Plain C, no cmocka and no libdmio: functions return 0 or a negative
 * errno (or say why in a buffer) and the caller decides whether that
 * fails, skips or aborts its run.
 */
#ifndef DMIO_TESTS_LIB_TL_H
#define DMIO_TESTS_LIB_TL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- clocks and waits (time.c) ------------------------------------------ */

/* CLOCK_MONOTONIC in milliseconds / nanoseconds. */
uint64_t tl_now_ms(void);
uint64_t tl_now_ns(void);
/* Sleep @ms, resumed across signals. */
void tl_sleep_ms(unsigned int ms);
/* Wait until *@v >= @target, at most @timeout_ms; true when reached. */
bool tl_wait_count(atomic_uint *v, unsigned int target,
		   unsigned int timeout_ms);

/* ---- temporary directories (files.c) ------------------------------------ */

/*
 * mkdtemp @parent/dmio-test-PID-@tagXXXXXX into @dir.  Every directory of
 * this form is the property of a test process: tl_tmpdir_remove_stale()
 * removes those whose process is gone (killed by a timeout, crashed).
 */
int tl_tmpdir_make(char *dir, size_t size, const char *parent, const char *tag);
void tl_tmpdir_remove_stale(const char *parent);
/* Remove @dir and everything below it; "" is ignored.  0 or -errno. */
int tl_rmtree(const char *dir);

/* ---- loop devices (loop.c) ---------------------------------------------- */

struct tl_loop {
	int fd; /* the loop device, kept open: LO_FLAGS_AUTOCLEAR */
	int nr;
	char path[32];
};

/*
 * Can this process attach loop devices (root, /dev/loop-control)?  false
 * with the reason in @why: "loop devices need root (euid N)" or
 * "/dev/loop-control: <strerror>".
 */
bool tl_loop_available(char *why, size_t size);
/*
 * Attach a free loop device over @backing_fd with logical block size @lbs
 * (LOOP_CTL_GET_FREE + LOOP_CONFIGURE, LO_FLAGS_AUTOCLEAR: the kernel
 * detaches it when the last descriptor closes, even if we crash).  0 or
 * -errno; @lo->fd < 0 on failure.
 */
int tl_loop_attach(int backing_fd, unsigned int lbs, struct tl_loop *lo);
/* Detach and close; a loop with fd < 0 is ignored. */
void tl_loop_detach(struct tl_loop *lo);
/* Tell the loop device that its backing file changed size. */
int tl_loop_set_capacity(struct tl_loop *lo);

/* ---- child processes (proc.c) ------------------------------------------- */

/* Where a child's standard stream goes: one of these or a descriptor. */
#define TL_INHERIT (-1)
#define TL_DEVNULL (-2)

struct tl_child {
	int in, out, err;     /* TL_INHERIT, TL_DEVNULL or a descriptor */
	bool die_with_parent; /* SIGKILL when the forking thread exits */
};

/*
 * Find @name on $PATH as an executable regular file (meson puts library
 * directories on PATH, and /usr/lib/<triplet>/nbdkit is nbdkit's plugin
 * directory); the full path into @path.  A name with a '/' is checked
 * as it is.
 */
bool tl_find_program(const char *name, char *path, size_t size);
/*
 * fork() and execvp(@argv[0], @argv) with the streams of @c.  Everything
 * the child needs must be prepared before: the child only redirects and
 * execs (other threads may hold locks).  The pid, or -errno.
 */
pid_t tl_spawn(char *const argv[], const struct tl_child *c);
/* waitpid() across EINTR: the wait status, or -errno. */
int tl_wait(pid_t pid);
/* The wait status of @pid within @ms, or -ETIMEDOUT once it had to be
 * SIGKILLed (and reaped). */
int tl_wait_bounded(pid_t pid, unsigned int ms);
/*
 * Run @argv to its end with the streams of @c, its standard output into
 * @out (NUL-terminated, the rest read and dropped; NULL: c->out) and at
 * most @timeout_ms (0: no limit).  0 with the wait status in *@status, or
 * -errno when it could not run, -ETIMEDOUT when it was killed.
 */
int tl_run(char *const argv[], const struct tl_child *c, char *out, size_t size,
	   unsigned int timeout_ms, int *status);

/* ---- completion callbacks (recorder.c) ---------------------------------- */

/*
 * A recorder for io_notify_fn callbacks: pass tl_rec_cb with the
 * recorder as the context.  Every call counts; bits keeps the last call's
 * error bits (~0 before any), bits_or every call's, done_ms the time of
 * the last call.
 */
struct tl_rec {
	atomic_uint calls;
	atomic_ulong bits;
	atomic_ulong bits_or;
	atomic_ullong done_ms;
};

void tl_rec_init(struct tl_rec *r);
void tl_rec_cb(unsigned long error, void *context);
/* Wait until @r has seen @calls calls, at most @timeout_ms. */
bool tl_rec_wait(struct tl_rec *r, unsigned int calls, unsigned int timeout_ms);

#endif /* DMIO_TESTS_LIB_TL_H */

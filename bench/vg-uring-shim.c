/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Preloaded into libdmio under valgrind, for the instruction counts only.
 *
 * valgrind 3.19 keeps its big lock while a thread blocks in
 * io_uring_enter(): libdmio's completion thread, waiting there for a CQE,
 * then stops every other thread, including the one that would submit the
 * I/O it waits for, and the program hangs.  This replaces liburing's
 * blocking wait (__io_uring_get_cqe() with wait_nr > 0 and nothing to
 * submit, what io_uring_wait_cqe() calls) with poll(2) on the ring, which
 * valgrind treats as blocking, and a peek.  The cost is about the same
 * user-space work as the wait it replaces; the raw liburing peer never
 * calls it (it waits inside io_uring_submit_and_wait()).  libdmio's
 * completion thread submits and waits in one io_uring_enter() call, which
 * becomes the same: a submission, then poll(2).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT; meson defines it already */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>

typedef int (*get_cqe_fn)(struct io_uring *, struct io_uring_cqe **,
			  unsigned int, unsigned int, sigset_t *);

int __io_uring_get_cqe(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
		       unsigned int submit, unsigned int wait_nr,
		       sigset_t *sigmask)
{
	static get_cqe_fn real;
	struct pollfd pfd = {.fd = ring->ring_fd, .events = POLLIN};

	if (!real)
		real = (get_cqe_fn)dlsym(RTLD_NEXT, "__io_uring_get_cqe");
	if (submit || wait_nr != 1 || sigmask)
		return real(ring, cqe_ptr, submit, wait_nr, sigmask);
	for (;;) {
		int ret = real(ring, cqe_ptr, 0, 0, NULL); /* a peek */

		if (ret != -EAGAIN || *cqe_ptr)
			return ret;
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return -errno;
	}
}

typedef int (*enter_fn)(unsigned int, unsigned int, unsigned int, unsigned int,
			sigset_t *);

int io_uring_enter(unsigned int fd, unsigned int to_submit,
		   unsigned int min_complete, unsigned int flags, sigset_t *sig)
{
	static enter_fn real;
	struct pollfd pfd = {.fd = (int)fd, .events = POLLIN};
	int ret;

	if (!real)
		real = (enter_fn)dlsym(RTLD_NEXT, "io_uring_enter");
	if (!(flags & IORING_ENTER_GETEVENTS) || !min_complete || sig)
		return real(fd, to_submit, min_complete, flags, sig);
	ret = real(fd, to_submit, 0, flags & ~IORING_ENTER_GETEVENTS, NULL);
	if (ret >= 0 && poll(&pfd, 1, -1) < 0 && errno != EINTR)
		ret = -errno;
	return ret;
}

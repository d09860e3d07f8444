/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Loop devices attached with LOOP_CONFIGURE (see tl.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tl.h"

bool tl_loop_available(char *why, size_t size)
{
	if (geteuid() != 0) {
		snprintf(why, size, "loop devices need root (euid %u)",
			 (unsigned int)geteuid());
		return false;
	}
	if (access("/dev/loop-control", R_OK | W_OK) < 0) {
		snprintf(why, size, "/dev/loop-control: %s", strerror(errno));
		return false;
	}
	return true;
}

/* devtmpfs makes the node as the kernel adds the device; allow a moment. */
static int open_loop_node(const char *path)
{
	int i, fd = -1;

	for (i = 0; i < 100; i++) {
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			break;
		tl_sleep_ms(10);
	}
	return fd < 0 ? -errno : fd;
}

int tl_loop_attach(int backing_fd, unsigned int lbs, struct tl_loop *lo)
{
	int ctl, attempt, err = -EBUSY;

	lo->fd = -1;
	lo->nr = -1;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -errno;
	/* Another process may take the free device between GET_FREE and
	 * CONFIGURE: then ask again. */
	for (attempt = 0; attempt < 64; attempt++) {
		struct loop_config cfg = {
			.fd = (uint32_t)backing_fd,
			.block_size = lbs,
			.info.lo_flags = LO_FLAGS_AUTOCLEAR,
		};
		int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		int fd;

		if (nr < 0) {
			err = -errno;
			break;
		}
		snprintf(lo->path, sizeof(lo->path), "/dev/loop%d", nr);
		fd = open_loop_node(lo->path);
		if (fd < 0) {
			err = fd;
			break;
		}
		snprintf((char *)cfg.info.lo_file_name,
			 sizeof(cfg.info.lo_file_name), "dmio-test");
		if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
			lo->fd = fd;
			lo->nr = nr;
			err = 0;
			break;
		}
		err = -errno;
		close(fd);
		if (err != -EBUSY)
			break;
	}
	close(ctl);
	return err;
}

void tl_loop_detach(struct tl_loop *lo)
{
	if (lo->fd < 0)
		return;
	/* With AUTOCLEAR the kernel detaches at the last close anyway; ask
	 * explicitly so that nothing waits for that. */
	if (ioctl(lo->fd, LOOP_CLR_FD, 0) < 0 && errno != ENXIO)
		fprintf(stderr, "tests: LOOP_CLR_FD %s: %s\n", lo->path,
			strerror(errno));
	close(lo->fd);
	lo->fd = -1;
}

int tl_loop_set_capacity(struct tl_loop *lo)
{
	if (ioctl(lo->fd, LOOP_SET_CAPACITY, 0) < 0)
		return -errno;
	return 0;
}

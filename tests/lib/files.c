/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Temporary directories (see tl.h). */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tl.h"

int tl_tmpdir_make(char *dir, size_t size, const char *parent, const char *tag)
{
	if (snprintf(dir, size, "%s/dmio-test-%d-%sXXXXXX", parent,
		     (int)getpid(), tag) >= (int)size)
		return -ENAMETOOLONG;
	if (!mkdtemp(dir)) {
		dir[0] = '\0';
		return -errno;
	}
	return 0;
}

void tl_tmpdir_remove_stale(const char *parent)
{
	DIR *d = opendir(parent);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[PATH_MAX];
		int pid;

		if (sscanf(de->d_name, "dmio-test-%d-", &pid) != 1 ||
		    pid <= 0 || pid == getpid() || kill(pid, 0) == 0 ||
		    errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", parent, de->d_name);
		tl_rmtree(path);
	}
	closedir(d);
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) < 0 && errno != ENOENT)
		fprintf(stderr, "tests: remove %s: %s\n", path,
			strerror(errno));
	return 0;
}

int tl_rmtree(const char *dir)
{
	if (!dir[0])
		return 0;
	if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return -errno;
	return 0;
}

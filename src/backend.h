/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * For client backends (uring.c, threads.c): what a backend implements,
 * the system-call executor (exec.c) and the helper pool (threads.c).
 * Backends read the device of each chunk (device.h) but nothing of the
 * engine or the client.
 */
#ifndef DMIO_BACKEND_H
#define DMIO_BACKEND_H

#include "chunk.h"

struct dm_io_client;

struct dmi_backend;

struct dmi_backend_ops {
	const char *name;
	/* Queue a list of chunks (linked by ->next).  Never waits for I/O to
	 * complete, so callbacks may submit.  Completion is reported through
	 * dmi_chunk_complete() on a thread the backend owns. */
	void (*submit)(struct dmi_backend *be, struct dmi_chunk *head);
	/* Stop the backend's threads and free it; nothing is in flight. */
	void (*destroy)(struct dmi_backend *be);
};

struct dmi_backend {
	const struct dmi_backend_ops *ops;
	struct dm_io_client *client;
};

struct dmi_backend *dmi_uring_create(struct dm_io_client *client, int *err);
struct dmi_backend *dmi_threads_create(struct dm_io_client *client,
				       unsigned int nr_threads, int *err);

/*
 * Helpers (threads.c): a small thread pool that a backend hands the chunks
 * it cannot issue itself (io_uring: block-device discards on kernels
 * without BLOCK_URING_CMD_DISCARD).  They run with the system-call
 * executor and complete through dmi_chunk_complete() on the helpers' own
 * threads, as from any backend: the engine does not see the difference.
 */
struct dmi_helpers;
struct dmi_helpers *dmi_helpers_create(struct dm_io_client *client, int *err);
void dmi_helpers_submit(struct dmi_helpers *helpers, struct dmi_chunk *chunk);
/* Stop and free, once nothing handed over is in flight; NULL is a no-op. */
void dmi_helpers_destroy(struct dmi_helpers *helpers);

/* Run a chunk to its end on this thread with plain system calls (exec.c):
 * the engine's inline path and the thread pool's workers. */
void dmi_chunk_exec(struct dmi_chunk *chunk);

#endif /* DMIO_BACKEND_H */

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

struct dm_backend;

struct dm_backend_ops {
	const char *name;
	/* Queue a list of chunks (linked by ->next).  Never waits for I/O to
	 * complete, so callbacks may submit.  Completion is reported through
	 * dm_chunk_complete() on a thread the backend owns. */
	void (*submit)(struct dm_backend *be, struct dm_chunk *head);
	/* Stop the backend's threads and free it; nothing is in flight. */
	void (*destroy)(struct dm_backend *be);
};

struct dm_backend {
	const struct dm_backend_ops *ops;
	struct dm_io_client *client;
};

struct dm_backend *dm_uring_create(struct dm_io_client *client, int *err);
struct dm_backend *dm_threads_create(struct dm_io_client *client,
				     unsigned int nr_threads, int *err);

/*
 * Helpers (threads.c): a small thread pool that a backend hands the chunks
 * it cannot issue itself (io_uring: block-device discards on kernels
 * without BLOCK_URING_CMD_DISCARD).  They run with the system-call
 * executor and complete through dm_chunk_complete() on the helpers' own
 * threads, as from any backend: the engine does not see the difference.
 */
struct dm_helpers;
struct dm_helpers *dm_helpers_create(struct dm_io_client *client, int *err);
void dm_helpers_submit(struct dm_helpers *helpers, struct dm_chunk *chunk);
/* Stop and free, once nothing handed over is in flight; NULL is a no-op. */
void dm_helpers_destroy(struct dm_helpers *helpers);

/* Run a chunk to its end on this thread with plain system calls (exec.c):
 * the engine's inline path and the thread pool's workers. */
void dm_chunk_exec(struct dm_chunk *chunk);

#endif /* DMIO_BACKEND_H */

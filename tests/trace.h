/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A white-box recorder of the engine's chunk trace (dmi_client_set_trace(),
 * src/engine.h), for tests that check what the engine hands its
 * backends: the ops, the flags, the order, the size of each chunk.
 *
 * Programs that use it link the static library (libdmio_static_dep).
 * Events are recorded under a lock in the order the engine reports them;
 * the record also keeps the I/O priority of the thread that reported the
 * event (for the thread-pool backend, the thread that made the system call).
 */
#ifndef DMIO_TESTS_TRACE_H
#define DMIO_TESTS_TRACE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../src/engine.h"

#define T_MAX_EVENTS 65536

struct t_event {
	enum dmi_trace_event ev;
	enum dmi_chunk_op op;
	unsigned int flags;
	unsigned int region;
	uint64_t pos, len;
	int res;
	unsigned int niov; /* of the chunk's piece; 0 for data-less ops */
	bool bounced;	   /* the piece goes through a bounce buffer */
	int ioprio;	   /* ioprio_get() of the reporting thread */
	const struct block_device *bdev;
};

struct t_trace {
	pthread_mutex_t lock;
	unsigned int n;
	bool overflow;
	struct t_event ev[T_MAX_EVENTS];
};

/* A recorder (heap: it is big), attached to @client. */
struct t_trace *t_trace_new(struct dm_io_client *client);
/* Detach from @client and free. */
void t_trace_free(struct t_trace *t, struct dm_io_client *client);
/* Forget what was recorded. */
void t_trace_reset(struct t_trace *t);

/* Events matching @ev and @op (-1: any op) of @region (-1: any region). */
unsigned int t_count(struct t_trace *t, enum dmi_trace_event ev, int op,
		     int region);
/* Index of the first / last such event, or -1. */
int t_first(struct t_trace *t, enum dmi_trace_event ev, int op, int region);
int t_last(struct t_trace *t, enum dmi_trace_event ev, int op, int region);

const char *t_op_name(enum dmi_chunk_op op);
/* Print the trace (for failure messages). */
void t_dump(struct t_trace *t);

#endif /* DMIO_TESTS_TRACE_H */

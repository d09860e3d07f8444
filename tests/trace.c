/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The chunk-trace recorder (see trace.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "trace.h"

#define IOPRIO_WHO_PROCESS 1

static void record(void *ctx, enum dmi_trace_event ev,
		   const struct dmi_chunk *c, int res)
{
	struct t_trace *t = ctx;
	struct t_event e = {
		.ev = ev,
		.op = c->op,
		.flags = c->flags,
		.region = c->region,
		.pos = c->pos,
		.len = c->len,
		.res = res,
		.niov = c->piece ? c->piece->niov : 0,
		.bounced = c->piece && c->piece->bounce,
		.ioprio = (int)syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0),
		.bdev = c->bdev,
	};

	pthread_mutex_lock(&t->lock);
	if (t->n < T_MAX_EVENTS)
		t->ev[t->n++] = e;
	else
		t->overflow = true;
	pthread_mutex_unlock(&t->lock);
}

struct t_trace *t_trace_new(struct dm_io_client *client)
{
	struct t_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	dmi_client_set_trace(client, record, t);
	return t;
}

void t_trace_free(struct t_trace *t, struct dm_io_client *client)
{
	if (client)
		dmi_client_set_trace(client, NULL, NULL);
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void t_trace_reset(struct t_trace *t)
{
	pthread_mutex_lock(&t->lock);
	t->n = 0;
	t->overflow = false;
	pthread_mutex_unlock(&t->lock);
}

static bool matches(const struct t_event *e, enum dmi_trace_event ev, int op,
		    int region)
{
	return e->ev == ev && (op < 0 || (int)e->op == op) &&
	       (region < 0 || (int)e->region == region);
}

unsigned int t_count(struct t_trace *t, enum dmi_trace_event ev, int op,
		     int region)
{
	unsigned int i, n = 0;

	pthread_mutex_lock(&t->lock);
	for (i = 0; i < t->n; i++)
		n += matches(&t->ev[i], ev, op, region);
	pthread_mutex_unlock(&t->lock);
	return n;
}

int t_first(struct t_trace *t, enum dmi_trace_event ev, int op, int region)
{
	unsigned int i;
	int found = -1;

	pthread_mutex_lock(&t->lock);
	for (i = 0; i < t->n && found < 0; i++)
		if (matches(&t->ev[i], ev, op, region))
			found = (int)i;
	pthread_mutex_unlock(&t->lock);
	return found;
}

int t_last(struct t_trace *t, enum dmi_trace_event ev, int op, int region)
{
	unsigned int i;
	int found = -1;

	pthread_mutex_lock(&t->lock);
	for (i = 0; i < t->n; i++)
		if (matches(&t->ev[i], ev, op, region))
			found = (int)i;
	pthread_mutex_unlock(&t->lock);
	return found;
}

const char *t_op_name(enum dmi_chunk_op op)
{
	static const char *const names[] = {
		[DMI_CHUNK_READ] = "READ",
		[DMI_CHUNK_WRITE] = "WRITE",
		[DMI_CHUNK_FLUSH] = "FLUSH",
		[DMI_CHUNK_DISCARD] = "DISCARD",
		[DMI_CHUNK_ZEROES] = "ZEROES",
		[DMI_CHUNK_ZERO_WRITE] = "ZERO_WRITE",
		[DMI_CHUNK_NOP] = "NOP",
	};

	return (unsigned int)op < sizeof(names) / sizeof(names[0]) && names[op]
		       ? names[op]
		       : "?";
}

void t_dump(struct t_trace *t)
{
	unsigned int i;

	pthread_mutex_lock(&t->lock);
	fprintf(stderr, "trace: %u events%s\n", t->n,
		t->overflow ? " (overflowed)" : "");
	for (i = 0; i < t->n && i < 200; i++) {
		const struct t_event *e = &t->ev[i];

		fprintf(stderr,
			"  %3u %-6s %-10s region %u pos %llu len %llu flags "
			"%#x res %d niov %u\n",
			i, e->ev == DMI_TRACE_SUBMIT ? "SUBMIT" : "END",
			t_op_name(e->op), e->region, (unsigned long long)e->pos,
			(unsigned long long)e->len, e->flags, e->res, e->niov);
	}
	pthread_mutex_unlock(&t->lock);
}

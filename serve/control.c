// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The control socket: a Unix stream socket beside the export taking one
 * command line per connection and answering in text (or JSON) before it
 * closes.  Commands (nbdkit-dmio-plugin(1)):
 *   status [json]   legs, resync, scrub, log
 *   fail LEG        mark a leg failed, as if it had returned an error
 *   remove LEG      fail it and drop it from the mirror
 *   add SPEC|LEG    add a new leg, or bring a failed one back
 *   verify          start a scrub
 *   rate BYTES      the resync (and scrub) rate cap per second; 0: none
 * The first line of an answer is "ok" or "error: WHY".
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mirror.h"

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static const char *errno_name(int err)
{
	switch (-err) {
	case 0:
		return "";
	case EIO:
		return "EIO";
	case ENOSPC:
		return "ENOSPC";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case ECONNRESET:
		return "ECONNRESET";
	case EROFS:
		return "EROFS";
	case ENXIO:
		return "ENXIO";
	case ENOENT:
		return "ENOENT";
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case ESHUTDOWN:
		return "ESHUTDOWN";
	case EOPNOTSUPP:
		return "EOPNOTSUPP";
	case ENOTCONN:
		return "ENOTCONN";
	case EPIPE:
		return "EPIPE";
	default:
		return "errno";
	}
}

static const char *mirror_state(struct mirror *m)
{
	unsigned int i, insync = 0, legs = 0;

	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		legs += m->legs[i].state != LEG_EMPTY;
		insync += m->legs[i].state == LEG_INSYNC &&
			  !m->legs[i].need_count;
	}
	if (insync == legs)
		return "healthy";
	return m->resync_running ? "resyncing" : "degraded";
}

void status_text(struct mirror *m, FILE *f)
{
	uint64_t region = m->region_sectors << SECTOR_SHIFT;
	unsigned int i;

	pthread_mutex_lock(&m->lock);
	fprintf(f,
		"mirror: %s, %" PRIu64 " bytes, %" PRIu64 " regions of %" PRIu64
		" KiB, block size %u\n",
		mirror_state(m), (uint64_t)m->data_sectors << SECTOR_SHIFT,
		m->nr_regions, region >> 10, m->block_size);
	fprintf(f, "generation: %016" PRIx64 ", events %" PRIu64 "\n", m->gen,
		m->events);
	fprintf(f, "log: %s, %" PRIu64 " dirty regions\n",
		m->log.path ? m->log.path : "core", log_dirty_count(m));
	if (m->resync_running)
		fprintf(f,
			"resync: running, %" PRIu64 " of %" PRIu64
			" regions, %.1f MiB/s",
			m->resync_regions_done, m->resync_regions_total,
			m->resync_bytes_per_s / 1048576);
	else
		fprintf(f, "resync: idle");
	if (m->resync_rate)
		fprintf(f, " (limit %.1f MiB/s)",
			(double)m->resync_rate / 1048576);
	fprintf(f, ", %" PRIu64 " regions resynced since start\n",
		m->resynced_regions);
	if (m->scrub.running || m->scrub.done) {
		fprintf(f,
			"scrub: %s, %" PRIu64 " of %" PRIu64
			" regions checked, %" PRIu64 " differ",
			m->scrub.running ? "running" : "done", m->scrub.checked,
			m->nr_regions, m->scrub.differing);
		for (i = 0; i < m->scrub.differing && i < 16; i++)
			fprintf(f, "%s%" PRIu64, i ? "," : ": ",
				m->scrub.first[i]);
		fputc('\n', f);
	}
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if (l->state == LEG_EMPTY)
			continue;
		fprintf(f, "leg %u: %s %s", i, l->spec,
			leg_state_name(l->state));
		if (l->err)
			fprintf(f, " (%s: %s)", errno_name(l->err),
				mirror_strerror(-l->err));
		if (l->need_count)
			fprintf(f, ", %" PRIu64 " regions to resync",
				l->need_count);
		fprintf(f, ", reads %" PRIu64 ", writes %" PRIu64 "\n",
			(uint64_t)l->reads, (uint64_t)l->writes);
	}
	pthread_mutex_unlock(&m->lock);
}

void status_json(struct mirror *m, FILE *f)
{
	unsigned int i;
	bool first = true;

	pthread_mutex_lock(&m->lock);
	fprintf(f,
		"{\"state\":\"%s\",\"size\":%" PRIu64
		",\"region_size\":%" PRIu64 ",\"regions\":%" PRIu64
		",\"block_size\":%u,\"generation\":\"%016" PRIx64
		"\",\"events\":%" PRIu64 ",",
		mirror_state(m), (uint64_t)m->data_sectors << SECTOR_SHIFT,
		(uint64_t)m->region_sectors << SECTOR_SHIFT, m->nr_regions,
		m->block_size, m->gen, m->events);
	fprintf(f, "\"log\":{\"path\":");
	json_str(f, m->log.path ? m->log.path : "");
	fprintf(f,
		",\"dirty_regions\":%" PRIu64 ",\"marks\":%" PRIu64
		",\"syncs\":%" PRIu64 "},",
		log_dirty_count(m), m->log.marks, m->log.syncs);
	fprintf(f,
		"\"resync\":{\"running\":%s,\"done\":%" PRIu64
		",\"total\":%" PRIu64 ",\"bytes_per_s\":%.0f"
		",\"rate_limit\":%" PRIu64 ",\"resynced_regions\":%" PRIu64
		",\"resynced_bytes\":%" PRIu64 "},",
		m->resync_running ? "true" : "false", m->resync_regions_done,
		m->resync_regions_total, m->resync_bytes_per_s, m->resync_rate,
		m->resynced_regions, m->resynced_bytes);
	fprintf(f,
		"\"scrub\":{\"running\":%s,\"done\":%s,\"checked\":%" PRIu64
		",\"differing\":%" PRIu64 ",\"first\":[",
		m->scrub.running ? "true" : "false",
		m->scrub.done ? "true" : "false", m->scrub.checked,
		m->scrub.differing);
	for (i = 0; i < m->scrub.differing && i < 16; i++)
		fprintf(f, "%s%" PRIu64, i ? "," : "", m->scrub.first[i]);
	fprintf(f, "]},\"legs\":[");
	for (i = 0; i < MIRROR_MAX_LEGS; i++) {
		struct leg *l = &m->legs[i];

		if (l->state == LEG_EMPTY)
			continue;
		fprintf(f, "%s{\"index\":%u,\"spec\":", first ? "" : ",", i);
		first = false;
		json_str(f, l->spec);
		fprintf(f, ",\"state\":\"%s\",\"errno\":\"%s\",\"error\":",
			leg_state_name(l->state), errno_name(l->err));
		json_str(f, l->err ? mirror_strerror(-l->err) : "");
		fprintf(f,
			",\"regions_to_resync\":%" PRIu64 ",\"reads\":%" PRIu64
			",\"writes\":%" PRIu64 ",\"read_bytes\":%" PRIu64
			",\"write_bytes\":%" PRIu64 ",\"errors\":%" PRIu64 "}",
			l->need_count, (uint64_t)l->reads, (uint64_t)l->writes,
			(uint64_t)l->read_bytes, (uint64_t)l->write_bytes,
			(uint64_t)l->errors);
	}
	fprintf(f, "]}\n");
	pthread_mutex_unlock(&m->lock);
}

static int leg_arg(struct mirror *m, const char *arg, FILE *f)
{
	int i = arg ? mirror_find_leg(m, arg) : -1;

	if (i < 0)
		fprintf(f, "error: no leg %s\n", arg ? arg : "named");
	return i;
}

static void command(struct mirror *m, char *line, FILE *f)
{
	char *save, *cmd = strtok_r(line, " \t\r\n", &save);
	char *arg = strtok_r(NULL, "\r\n", &save);
	char msg[512];
	int i, ret;

	if (!cmd) {
		fprintf(f, "error: empty command\n");
	} else if (!strcmp(cmd, "status")) {
		if (arg && !strcmp(arg, "json"))
			status_json(m, f);
		else {
			fprintf(f, "ok\n");
			status_text(m, f);
		}
	} else if (!strcmp(cmd, "fail")) {
		if ((i = leg_arg(m, arg, f)) < 0)
			return;
		pthread_mutex_lock(&m->lock);
		ret = m->legs[i].state == LEG_INSYNC;
		for (unsigned int k = 0; ret && k < MIRROR_MAX_LEGS; k++)
			ret += k != (unsigned int)i &&
			       m->legs[k].state == LEG_INSYNC;
		pthread_mutex_unlock(&m->lock);
		if (ret == 1)
			fprintf(f, "error: leg %d is the last in sync\n", i);
		else {
			mirror_fail_leg(m, (unsigned int)i, -ESHUTDOWN);
			fprintf(f, "ok\nleg %d failed\n", i);
		}
	} else if (!strcmp(cmd, "remove")) {
		if ((i = leg_arg(m, arg, f)) < 0)
			return;
		ret = mirror_remove_leg(m, (unsigned int)i, msg, sizeof(msg));
		fprintf(f, "%s%s\n", ret ? "error: " : "ok\n", msg);
	} else if (!strcmp(cmd, "add")) {
		if (!arg) {
			fprintf(f, "error: add needs a leg\n");
			return;
		}
		ret = mirror_add_leg(m, arg, msg, sizeof(msg));
		fprintf(f, "%s%s\n", ret ? "error: " : "ok\n", msg);
	} else if (!strcmp(cmd, "verify")) {
		pthread_mutex_lock(&m->lock);
		m->scrub.requested = true;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		fprintf(f, "ok\nscrub requested\n");
	} else if (!strcmp(cmd, "rate")) {
		char *end;
		unsigned long long v = arg ? strtoull(arg, &end, 10) : 0;

		if (!arg || *end || end == arg) {
			fprintf(f, "error: rate needs bytes per second\n");
			return;
		}
		__atomic_store_n(&m->resync_rate, v, __ATOMIC_RELAXED);
		fprintf(f, "ok\nrate %llu\n", v);
	} else {
		fprintf(f, "error: unknown command '%s'\n", cmd);
	}
}

static void serve_client(struct mirror *m, int fd)
{
	char line[4096];
	size_t len = 0;
	FILE *f;

	/* One line, as short as a command; a silent client gets 5 s. */
	while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0)
			break;
		n = read(fd, line + len, sizeof(line) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	line[len] = 0;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return;
	}
	command(m, line, f);
	fclose(f);
}

static void *control_main(void *arg)
{
	struct mirror *m = arg;

	for (;;) {
		int fd = accept4(m->control_fd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* shut down by control_stop() */
		}
		serve_client(m, fd);
	}
}

int control_start(struct mirror *m)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int ret;

	if (strlen(m->opt.control_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, m->opt.control_path);
	m->control_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (m->control_fd < 0)
		return -errno;
	unlink(sa.sun_path); /* a socket left by a killed server */
	if (bind(m->control_fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(m->control_fd, 8))
		return -errno;
	ret = pthread_create(&m->control, NULL, control_main, m);
	if (ret)
		return -ret;
	m->control_started = true;
	return 0;
}

void control_stop(struct mirror *m)
{
	if (m->control_fd < 0)
		return;
	shutdown(m->control_fd, SHUT_RDWR);
	if (m->control_started)
		pthread_join(m->control, NULL);
	close(m->control_fd);
	m->control_fd = -1;
	unlink(m->opt.control_path);
}

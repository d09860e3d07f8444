// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Progress: on a terminal, a bar on stderr redrawn in place at most ten
 * times a second; otherwise one summary line at the end, so that logs and
 * pipes get a record rather than a stream of carriage returns.  With -p
 * off a terminal, a line every few seconds too (JSON lines with --json).
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "dmio.h"

#define REDRAW_SECONDS 0.1
#define PERIOD_SECONDS 2.0
#define BAR_MAX	       50
#define BAR_MIN	       10

static bool forced; /* -p, --progress */

void progress_force(void)
{
	forced = true;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double mib_per_s(uint64_t bytes, double seconds)
{
	return seconds > 0 ? (double)bytes / (1 << 20) / seconds : 0;
}

const char *human_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"KiB", "MiB", "GiB",
					    "TiB", "PiB", "EiB"};
	double val = (double)bytes / 1024;
	unsigned int i = 0;

	if (bytes < 1024) {
		snprintf(buf, len, "%u B", (unsigned int)bytes);
		return buf;
	}
	while (val >= 1024 && i < sizeof(units) / sizeof(units[0]) - 1) {
		val /= 1024;
		i++;
	}
	snprintf(buf, len, "%.1f %s", val, units[i]);
	return buf;
}

static void format_eta(double seconds, char *buf, size_t len)
{
	unsigned long s = (unsigned long)(seconds + 0.5);

	if (s >= 3600)
		snprintf(buf, len, "ETA %lu:%02lu:%02lu", s / 3600, s / 60 % 60,
			 s % 60);
	else
		snprintf(buf, len, "ETA %lu:%02lu", s / 60, s % 60);
}

static void draw(struct progress *p, uint64_t done, double now, bool final)
{
	char left[80], right[80], a[24], b[40], bar[BAR_MAX + 1];
	double elapsed = now - p->start, rate = mib_per_s(done, elapsed);
	double frac = p->total ? (double)done / (double)p->total : 1;
	struct winsize ws;
	int cols = 80, width, fill;

	if (!ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) && ws.ws_col)
		cols = ws.ws_col;
	/* Fixed widths, so that the bar does not shift as numbers grow.  A
	 * stream has no end to measure against: no total, ETA or bar. */
	if (p->unknown)
		snprintf(left, sizeof(left), "%9s ",
			 human_bytes(done, a, sizeof(a)));
	else
		snprintf(left, sizeof(left), "%9s / %s %3d%% ",
			 human_bytes(done, a, sizeof(a)),
			 human_bytes(p->total, b, sizeof(b)),
			 (int)(frac * 100));
	if (p->unknown)
		snprintf(b, sizeof(b), "%s",
			 final	    ? "done"
			 : p->phase ? p->phase
				    : "");
	else if (final)
		snprintf(b, sizeof(b), "in %.2f s", elapsed);
	else if (p->phase)
		snprintf(b, sizeof(b), "%s...", p->phase);
	else if (rate > 0)
		format_eta((double)(p->total - done) / (1 << 20) / rate, b,
			   sizeof(b));
	else
		snprintf(b, sizeof(b), "ETA --:--");
	snprintf(right, sizeof(right), " %7.1f MiB/s  %s", rate, b);

	/* The bar takes what the numbers leave of the line, within limits. */
	width = cols - 1 - (int)(strlen(left) + strlen(right)) - 2;
	if (width > BAR_MAX)
		width = BAR_MAX;
	fill = (int)(frac * (width > 0 ? width : 0));
	if (width >= BAR_MIN && !p->unknown) {
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '.', (size_t)(width - fill));
		bar[width] = '\0';
		fprintf(stderr, "\r%s[%s]%s\033[K", left, bar, right);
	} else {
		fprintf(stderr, "\r%s%s\033[K", left, right);
	}
	fflush(stderr);
	p->last_draw = now;
	p->drawn = true;
}

/* One periodic line: where the run is, for logs and for programs. */
static void report_line(struct progress *p, uint64_t done, double now,
			const char *phase)
{
	double elapsed = now - p->start;
	char a[24], b[24];

	if (p->json && p->unknown)
		fprintf(stderr,
			"{\"progress\":\"%s\",\"phase\":\"%s\",\"bytes\":%llu,"
			"\"total\":null,\"seconds\":%.3f,\"mib_per_s\":%.1f}\n",
			p->verb, phase, (unsigned long long)done, elapsed,
			mib_per_s(done, elapsed));
	else if (p->json)
		fprintf(stderr,
			"{\"progress\":\"%s\",\"phase\":\"%s\",\"bytes\":%llu,"
			"\"total\":%llu,\"seconds\":%.3f,\"mib_per_s\":%.1f}\n",
			p->verb, phase, (unsigned long long)done,
			(unsigned long long)p->total, elapsed,
			mib_per_s(done, elapsed));
	else if (p->unknown)
		warn("%s %s so far, %.1f MiB/s%s%s", p->verb,
		     human_bytes(done, a, sizeof(a)), mib_per_s(done, elapsed),
		     p->phase ? ", " : "", p->phase ? p->phase : "");
	else
		warn("%s %s of %s (%d%%), %.1f MiB/s%s%s", p->verb,
		     human_bytes(done, a, sizeof(a)),
		     human_bytes(p->total, b, sizeof(b)),
		     p->total ? (int)((double)done * 100 / (double)p->total)
			      : 100,
		     mib_per_s(done, elapsed), p->phase ? ", " : "",
		     p->phase ? p->phase : "");
	fflush(stderr);
	p->last_draw = now;
	p->drawn = true;
}

void progress_start(struct progress *p, const char *verb, uint64_t total,
		    bool quiet)
{
	memset(p, 0, sizeof(*p));
	p->verb = verb;
	p->total = total;
	p->quiet = quiet;
	p->bar = !quiet && isatty(STDERR_FILENO);
	p->periodic = !quiet && !p->bar && forced;
	p->json = json_requested();
	p->start = now_seconds();
}

void progress_update(struct progress *p, uint64_t done)
{
	double now;

	if (!p->bar && !p->periodic)
		return;
	now = now_seconds();
	if (p->bar && (!p->drawn || now - p->last_draw >= REDRAW_SECONDS))
		draw(p, done, now, false);
	else if (p->periodic &&
		 (!p->drawn || now - p->last_draw >= PERIOD_SECONDS))
		report_line(p, done, now, p->phase ? p->phase : "running");
	p->done = done;
}

/* @done is passed, not taken from the last update: the last job may end
 * after the last periodic update, and the line must not lag behind it. */
void progress_phase(struct progress *p, const char *phase, uint64_t done)
{
	p->phase = phase;
	p->done = done;
	if (p->bar)
		draw(p, done, now_seconds(), false);
	else if (p->periodic)
		report_line(p, done, now_seconds(), phase);
}

/* @what completes the summary line: "to 3 destinations". */
void progress_end(struct progress *p, uint64_t done, const char *what)
{
	double now = now_seconds();
	char size[24];

	p->seconds = now - p->start;
	p->phase = NULL;
	if (p->bar) {
		draw(p, done, now, true);
		fputc('\n', stderr);
	} else if (p->periodic && p->json) {
		report_line(p, done, now, "done");
	} else if (!p->quiet) {
		warn("%s %s %s in %.2f s, %.1f MiB/s", p->verb,
		     human_bytes(done, size, sizeof(size)), what, p->seconds,
		     mib_per_s(done, p->seconds));
	}
}

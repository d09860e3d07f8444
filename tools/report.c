// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Results: the per-region table on stdout, and the pieces of JSON the
 * commands print with --json.
 */
#include <errno.h>
#include <string.h>

#include "dmio.h"

const char *error_text(int err)
{
	if (err == -ENOTBLK || err == ENOTBLK)
		return "not a file or block device: use - for a stream";
	return strerror(err < 0 ? -err : err);
}

/* @s as a JSON string, or null. */
void json_string(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

const char *copy_result(const struct target *t, char *buf, size_t len)
{
	const char *what = t->err == -EINTR ? "INTERRUPTED" : "INCOMPLETE";

	if (!t->err)
		return "OK";
	/* Healthy but left short: say how much of the region is right. */
	if ((t->err == -EINTR || t->err == -ECANCELED) &&
	    (t->bdev || t->stream)) {
		if (t->good_to == t->good_from)
			snprintf(buf, len, "%s: nothing copied", what);
		else if (t->good_from)
			snprintf(buf, len, "%s: correct from sector %llu", what,
				 (unsigned long long)t->good_from);
		else
			snprintf(buf, len, "%s: correct up to sector %llu",
				 what, (unsigned long long)t->good_to);
		return buf;
	}
	snprintf(buf, len, "FAILED: %s", error_text(t->err));
	return buf;
}

const char *verify_result(const struct target *t, char *buf, size_t len)
{
	if (t->err) {
		snprintf(buf, len, "FAILED: %s", error_text(t->err));
		return buf;
	}
	if (!t->differs)
		return "same";
	snprintf(buf, len, "%s at sector %llu",
		 t->shorter  ? "B is shorter: it ends"
		 : t->longer ? "B is longer: A ends"
			     : "differs",
		 (unsigned long long)t->first_diff);
	return buf;
}

/* One row per region on @out: its number (from 1), the region as typed,
 * and what @result says became of it. */
void print_table(FILE *out, const char *heading, const struct target *t,
		 unsigned int nr,
		 const char *(*result)(const struct target *, char *, size_t))
{
	int width = (int)strlen(heading);
	char buf[160];
	unsigned int i;

	for (i = 0; i < nr; i++)
		if ((int)strlen(t[i].arg) > width)
			width = (int)strlen(t[i].arg);
	fprintf(out, "%3s  %-*s  %s\n", "#", width, heading, "result");
	for (i = 0; i < nr; i++)
		fprintf(out, "%3u  %-*s  %s\n", i + 1, width, t[i].arg,
			result(&t[i], buf, sizeof(buf)));
}

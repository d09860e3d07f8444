// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio - copy, zero, compare and describe regions of files, block devices
 * and NBD exports with libdmio's kcopyd and dm-io.  This file finds the
 * command and holds what every command shares: help texts, option errors
 * and messages.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmio.h"

static const char *command_name; /* for messages; NULL: dmio itself */
/* --json is among the arguments: an error that ends the command before it
 * has a result is printed as a JSON object too, so that stdout is never
 * empty for a script that asked for JSON. */
static bool json_errors;
/* Where that object goes: stderr when stdout carries a copy's data. */
static FILE *json_out;
atomic_int interrupted;

static const char general_help[] =
	"Usage: dmio COMMAND [OPTIONS] ARGS...\n"
	"\n"
	"Copy, zero, compare and describe regions of files, block devices\n"
	"and NBD exports with libdmio's kcopyd and dm-io.\n"
	"\n"
	"Commands:\n"
	"  copy SRC DST...  copy one region to 1..8 destinations\n"
	"  zero DST...      zero regions\n"
	"  verify A B...    compare region A with each region B\n"
	"  info SPEC...     what devices are and can do; the I/O backend\n"
	"  demo             copy random data to three mirror images, verify\n"
	"  bench DEV...     measure libdmio on your devices\n"
	"  help [COMMAND]   this text, or a command's\n"
	"  -V, --version    the version\n"
	"\n"
	"A region is SPEC[@SECTOR[+COUNT]]: a file, block device or NBD URI,\n"
	"then 512-byte sectors, or bytes with a suffix: K, M, G, T (or KiB,\n"
	"MiB...) count powers of 1024, KB, MB, GB, TB powers of 1000; whole\n"
	"sectors only (disk.img@1M+1.5G).\n"
	"\n"
	"Exit status: 0 all good, 1 a destination failed or differs,\n"
	"2 usage or source error.  Options: dmio COMMAND --help; dmio(1).\n";

static int cmd_help(int argc, char *argv[]);

static const struct command help_command = {
	.name = "help",
	.run = cmd_help,
	.usage = general_help,
};

static const struct command *const commands[] = {
	&copy_command, &zero_command,  &verify_command, &info_command,
	&demo_command, &serve_command, &bench_command,	&help_command,
};

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i]->name, name))
			return commands[i];
	return NULL;
}

static void vmessage(const char *fmt, va_list ap, const char *tail)
{
	fprintf(stderr, "dmio%s%s: ", command_name ? " " : "",
		command_name ? command_name : "");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "%s\n", tail);
}

/* Print the message of an error that ends the command before it has a
 * result; with --json also as the JSON object promised for every exit
 * status.  Returns EXIT_USAGE. */
static int vfail(const char *fmt, va_list ap, const char *tail)
{
	char msg[512];
	va_list copy;

	va_copy(copy, ap);
	vmessage(fmt, ap, tail);
	if (json_errors) {
		vsnprintf(msg, sizeof(msg), fmt, copy);
		fprintf(json_out, "{\"command\":");
		json_string(json_out, command_name);
		fprintf(json_out, ",\"error\":");
		json_string(json_out, msg);
		fprintf(json_out, ",\"exit\":%d}\n", EXIT_USAGE);
	}
	va_end(copy);
	return EXIT_USAGE;
}

/* One line on stderr pointing at the help; returns the usage status. */
int usage_error(const char *fmt, ...)
{
	char tail[64];
	va_list ap;
	int status;

	snprintf(tail, sizeof(tail), " (see dmio%s%s --help)",
		 command_name ? " " : "", command_name ? command_name : "");
	va_start(ap, fmt);
	status = vfail(fmt, ap, tail);
	va_end(ap);
	return status;
}

/* One line on stderr for an error that ends the command before any I/O. */
int fatal(const char *fmt, ...)
{
	va_list ap;
	int status;

	va_start(ap, fmt);
	status = vfail(fmt, ap, "");
	va_end(ap);
	return status;
}

void warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage(fmt, ap, "");
	va_end(ap);
}

/*
 * getopt_long() that reports a bad option itself, in one line: returns the
 * option, -1 after the last one, or '?' once the error is printed.
 * @shortopts must start with ':' so that a missing value is told apart.
 */
static int next_option(int argc, char *argv[], const char *shortopts,
		       const struct option *longopts)
{
	const char *bad;
	int opt, len;

	opterr = 0;
	opt = getopt_long(argc, argv, shortopts, longopts, NULL);
	if (opt != '?' && opt != ':')
		return opt;
	bad = argv[optind - 1];
	if (strncmp(bad, "--", 2)) {
		if (opt == ':')
			usage_error("option '-%c' needs a value", optopt);
		else
			usage_error("unknown option '-%c'", optopt);
		return '?';
	}
	len = (int)strcspn(bad, "=");
	if (opt == ':')
		usage_error("option '%.*s' needs a value", len, bad);
	else if (bad[len] == '=' && optopt)
		usage_error("option '%.*s' takes no value", len, bad);
	else
		usage_error("unknown option '%.*s'", len, bad);
	return '?';
}

/* The common options, each with the COMMON_ flag that brings it. */
static const struct common_option {
	unsigned int flag;
	struct cli_option opt;
} common_options[] = {
	{COMMON_OPEN,
	 {"direct", no_argument, OPT_DIRECT, NULL,
	  "open files with O_DIRECT too"}},
	{COMMON_OPEN,
	 {"buffered", no_argument, OPT_BUFFERED, NULL,
	  "use the page cache, block devices too"}},
	{COMMON_QUIET,
	 {"quiet", no_argument, 'q', NULL,
	  "no progress bar and no summary line"}},
	{COMMON_PROGRESS,
	 {"progress", no_argument, 'p', NULL,
	  "a progress line every few seconds where\n"
	  "stderr is not a terminal (JSON with --json)"}},
	{COMMON_JSON,
	 {"json", no_argument, OPT_JSON, NULL,
	  "one JSON object instead of text"}},
};

static const struct cli_option help_option = {"help", no_argument, 'h', NULL,
					      "this text"};

#define NR_COMMON   (sizeof(common_options) / sizeof(common_options[0]))
#define MAX_OPTIONS 48 /* of one command, all told */

static bool is_end(const struct cli_option *o)
{
	return !o->name && !o->help;
}

static bool has_short(const struct cli_option *o)
{
	return o->val > 0 && o->val < 0x80 && isalpha(o->val);
}

/* The options @cmd takes in the order its help lists them: its own up to
 * its first heading, the common ones, -h, then the rest of its own.
 * Returns how many are in @list. */
static unsigned int command_options(const struct command *cmd,
				    const struct cli_option **list)
{
	const struct cli_option *own = cmd->options, *o;
	unsigned int n = 0, i;

	for (o = own; o && !is_end(o) && o->name && n < MAX_OPTIONS - 1; o++)
		list[n++] = o;
	for (i = 0; i < NR_COMMON && n < MAX_OPTIONS - 1; i++)
		if (cmd->common & common_options[i].flag)
			list[n++] = &common_options[i].opt;
	list[n++] = &help_option;
	for (; o && !is_end(o) && n < MAX_OPTIONS; o++)
		list[n++] = o;
	return n;
}

static int option_label(const struct cli_option *o, char *buf, size_t len)
{
	return snprintf(buf, len, "%s%c%s--%s%s%s",
			has_short(o) ? "  -" : "   ",
			has_short(o) ? o->val : ' ', has_short(o) ? ", " : "  ",
			o->name, o->arg ? " " : "", o->arg ? o->arg : "");
}

/* A command's help: its usage, then a line per option from its table,
 * the texts in one column. */
static void print_help(const struct command *cmd)
{
	const struct cli_option *list[MAX_OPTIONS];
	unsigned int n, i;
	char label[80];
	int col = 23, len;
	const char *h;

	fputs(cmd->usage, stdout);
	if (cmd == &help_command)
		return;
	n = command_options(cmd, list);
	for (i = 0; i < n; i++) {
		len = list[i]->name
			      ? option_label(list[i], label, sizeof(label))
			      : 0;
		col = len + 1 > col ? len + 1 : col;
	}
	printf("\nOptions:\n");
	for (i = 0; i < n; i++) {
		if (!list[i]->name) {
			printf("\n%s\n", list[i]->help);
			continue;
		}
		len = option_label(list[i], label, sizeof(label));
		printf("%s%*s", label, col - len, "");
		for (h = list[i]->help; *h; h++)
			if (*h == '\n')
				printf("\n%*s", col, "");
			else
				putchar(*h);
		putchar('\n');
	}
}

int parse_options(int argc, char *argv[], struct common_opts *co,
		  int (*own)(int opt, void *ctx), void *ctx)
{
	const struct command *cmd = find_command(command_name);
	const struct cli_option *list[MAX_OPTIONS];
	struct option longopts[MAX_OPTIONS + 1] = {{0}};
	char shortopts[2 * MAX_OPTIONS + 2] = ":";
	size_t ns = 1;
	unsigned int n, i, k = 0;
	int opt, status;

	n = command_options(cmd, list);
	for (i = 0; i < n; i++) {
		if (!list[i]->name)
			continue;
		longopts[k++] = (struct option){list[i]->name, list[i]->has_arg,
						NULL, list[i]->val};
		if (!has_short(list[i]))
			continue;
		shortopts[ns++] = (char)list[i]->val;
		if (list[i]->has_arg == required_argument)
			shortopts[ns++] = ':';
	}
	shortopts[ns] = 0;
	while ((opt = next_option(argc, argv, shortopts, longopts)) != -1) {
		if (opt == '?')
			return EXIT_USAGE;
		if (opt == 'h') {
			print_help(cmd);
			return EXIT_ALL_GOOD;
		}
		if (opt == OPT_DIRECT && cmd->common & COMMON_OPEN)
			co->open_flags |= DM_BDEV_DIRECT;
		else if (opt == OPT_BUFFERED && cmd->common & COMMON_OPEN)
			co->open_flags |= DM_BDEV_BUFFERED;
		else if (opt == 'q' && cmd->common & COMMON_QUIET)
			co->quiet = true;
		else if (opt == 'p' && cmd->common & COMMON_PROGRESS)
			progress_force();
		else if (opt == OPT_JSON && cmd->common & COMMON_JSON)
			co->json = true;
		else if ((status = own ? own(opt, ctx) : EXIT_USAGE) != GO_ON)
			return status;
	}
	/* --direct and --buffered each ask dm_bdev_open() for the opposite. */
	if (co->open_flags & DM_BDEV_DIRECT &&
	    co->open_flags & DM_BDEV_BUFFERED)
		return usage_error(
			"--direct and --buffered exclude each other");
	return GO_ON;
}

static int cmd_help(int argc, char *argv[])
{
	const struct command *cmd;

	command_name = NULL; /* its errors are about dmio as a whole */
	if (argc > 2)
		return usage_error("too many arguments");
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(general_help, stdout);
		return EXIT_ALL_GOOD;
	}
	cmd = find_command(argv[1]);
	if (!cmd)
		return usage_error("unknown command '%s'", argv[1]);
	print_help(cmd);
	return EXIT_ALL_GOOD;
}

/* --json was given: progress lines are JSON too. */
bool json_requested(void)
{
	return json_errors;
}

/* Whether --json comes before the first "--": looked for before the command
 * parses its options, since parsing them may be what fails. */
static bool wants_json(int argc, char *argv[])
{
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			return true;
	return false;
}

/* Whether this is a copy to standard output: a "-" after the source.
 * Copy's options take no values, so the arguments that do not start with
 * '-' (and "-" itself) are its regions. */
static bool copy_to_stdout(int argc, char *argv[])
{
	bool after_src = false, options = true;
	int i;

	if (argc < 2 || strcmp(argv[1], "copy"))
		return false;
	for (i = 2; i < argc; i++) {
		if (options && !strcmp(argv[i], "--")) {
			options = false;
			continue;
		}
		if (options && argv[i][0] == '-' && argv[i][1])
			continue;
		if (after_src && !strcmp(argv[i], "-"))
			return true;
		after_src = true;
	}
	return false;
}

int main(int argc, char *argv[])
{
	const struct command *cmd;
	int status;

	json_errors = wants_json(argc, argv);
	json_out = copy_to_stdout(argc, argv) ? stderr : stdout;
	if (argc < 2)
		return usage_error("missing command");
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		cmd = find_command("help");
	else if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
		return printf("dmio %s (libdmio)\n", DMIO_VERSION) < 0;
	else if (argv[1][0] == '-')
		return usage_error("unknown option '%s'", argv[1]);
	else
		cmd = find_command(argv[1]);
	if (!cmd)
		return usage_error("unknown command '%s'", argv[1]);

	command_name = cmd->name;
	status = cmd->run(argc - 1, argv + 1);
	/* A full disk or a closed pipe must not pass for success. */
	if (fflush(stdout) || ferror(stdout)) {
		warn("writing the output: %s", strerror(errno));
		return EXIT_USAGE;
	}
	return status;
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio - copy, zero, compare and describe regions of files, block devices
 * and NBD exports with libdmio's kcopyd and dm-io.  This file finds the
 * command and holds what every command shares: help texts, option errors
 * and messages.
 */
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

#define COMMON_OPTIONS_HELP                                                    \
	"      --direct         open files with O_DIRECT too\n"                \
	"      --buffered       use the page cache, block devices too\n"       \
	"  -q, --quiet          no progress bar and no summary line\n"         \
	"  -p, --progress       a progress line every few seconds where\n"     \
	"                       stderr is not a terminal (JSON with --json)\n" \
	"      --json           one JSON object instead of the table\n"        \
	"  -h, --help           this text\n"

static const char copy_help[] =
	"Usage: dmio copy [OPTIONS] SRC DST...\n"
	"\n"
	"Copy region SRC to each of 1..8 regions DST with kcopyd.  SRC is\n"
	"the whole device unless it says otherwise; a DST without +COUNT\n"
	"receives the copy's length at its SECTOR.  Missing destination\n"
	"files are created at the size they need.\n"
	"\n"
	"Options:\n"
	"      --no-create      refuse missing destinations, create nothing\n"
	"      --ignore-errors  after a destination fails, keep copying to\n"
	"                       the others (the default)\n"
	"      --stop-on-error  stop the whole copy at the first error\n"
	"      --noerror        write zeroes for unreadable source blocks\n"
	"                       and go on (default: stop at the first)\n"
	"      --truncate       end file destinations where the copy ends\n"
	"      --flush          flush each destination at the end (default)\n"
	"      --fua            make every write durable instead\n"
	"      --no-flush       neither: leave durability to the "
	"system\n" COMMON_OPTIONS_HELP;

static const char zero_help[] =
	"Usage: dmio zero [OPTIONS] DST...\n"
	"\n"
	"Zero 1..8 regions with kcopyd, by the devices' write-zeroes where\n"
	"they have one.  A DST without +COUNT runs to the end of its device.\n"
	"\n"
	"Options:\n"
	"      --ignore-errors  after a region fails, keep zeroing the others\n"
	"                       (the default)\n"
	"      --stop-on-error  stop at the first error\n"
	"      --flush          flush each device at the end (the default)\n"
	"      --no-flush       do not\n" COMMON_OPTIONS_HELP;

static const char verify_help[] =
	"Usage: dmio verify [OPTIONS] A B...\n"
	"\n"
	"Compare region A with each region B and report \"same\" or the\n"
	"first differing sector, counted from the start of the regions.\n"
	"A B without +COUNT is as long as A.\n"
	"\n"
	"Options:\n" COMMON_OPTIONS_HELP;

static const char info_help[] =
	"Usage: dmio info [OPTIONS] SPEC...\n"
	"\n"
	"Show what each device is and can do: kind, size, logical block\n"
	"size, O_DIRECT alignment, maximum transfer, discard and\n"
	"write-zeroes limits, access mode; and the I/O backend that runs\n"
	"here, and why.\n"
	"\n"
	"Options:\n"
	"      --direct         open files with O_DIRECT too\n"
	"      --buffered       use the page cache, block devices too\n"
	"      --json           one JSON object\n"
	"  -h, --help           this text\n";

static const char demo_help[] =
	"Usage: dmio demo [OPTIONS]\n"
	"\n"
	"Make a source image of random data and three mirror images in a\n"
	"new folder under $TMPDIR (or /tmp), copy the source to the mirrors\n"
	"with kcopyd, verify them, show the results and the throughput, and\n"
	"remove the folder, on failure and on Ctrl-C too.\n"
	"\n"
	"Options:\n"
	"      --size SIZE      source size: sectors, or bytes with K, M, G\n"
	"                       (default 128M)\n"
	"      --keep           keep the folder and say where it is\n"
	"  -q, --quiet          no progress bars\n"
	"  -h, --help           this text\n";

static int cmd_help(int argc, char *argv[]);

static const struct command {
	const char *name;
	int (*run)(int argc, char *argv[]);
	const char *help;
} commands[] = {
	{.name = "copy", .run = cmd_copy, .help = copy_help},
	{.name = "zero", .run = cmd_zero, .help = zero_help},
	{.name = "verify", .run = cmd_verify, .help = verify_help},
	{.name = "info", .run = cmd_info, .help = info_help},
	{.name = "demo", .run = cmd_demo, .help = demo_help},
	{.name = "serve", .run = cmd_serve, .help = serve_help},
	{.name = "help", .run = cmd_help, .help = general_help},
};

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return &commands[i];
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
		printf("{\"command\":");
		json_string(stdout, command_name);
		printf(",\"error\":");
		json_string(stdout, msg);
		printf(",\"exit\":%d}\n", EXIT_USAGE);
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

int print_command_help(void)
{
	fputs(find_command(command_name)->help, stdout);
	return EXIT_ALL_GOOD;
}

/* --direct and --buffered each ask dm_bdev_open() for the opposite. */
int check_open_flags(unsigned int flags)
{
	if (flags & DM_BDEV_DIRECT && flags & DM_BDEV_BUFFERED)
		return usage_error(
			"--direct and --buffered exclude each other");
	return 0;
}

/*
 * getopt_long() that reports a bad option itself, in one line: returns the
 * option, -1 after the last one, or '?' once the error is printed.
 * @shortopts must start with ':' so that a missing value is told apart.
 */
int next_option(int argc, char *argv[], const char *shortopts,
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
	fputs(cmd->help, stdout);
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

int main(int argc, char *argv[])
{
	const struct command *cmd;
	int status;

	json_errors = wants_json(argc, argv);
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

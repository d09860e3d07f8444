// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * dmio info: what each device is and can do, as dm_bdev_open() probed it,
 * and which I/O backend a client runs here, and why.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dmio.h"

/* Open for writing where we may, so that "read-only" describes the device
 * rather than how we looked at it. */
static struct block_device *open_device(const char *spec, unsigned int flags)
{
	struct block_device *bdev = dm_bdev_open(spec, flags);

	if (!bdev && (errno == EACCES || errno == EROFS || errno == EPERM))
		bdev = dm_bdev_open(spec, flags | DM_BDEV_RDONLY);
	return bdev;
}

static void print_text(const char *spec, const struct dm_bdev_info *in)
{
	char size[24];

	printf("%s\n", spec);
	printf("  kind:               %s\n", in->kind);
	printf("  size:               %llu bytes, %llu sectors (%s)\n",
	       (unsigned long long)BYTES(in->nr_sectors),
	       (unsigned long long)in->nr_sectors,
	       human_bytes(BYTES(in->nr_sectors), size, sizeof(size)));
	printf("  logical block size: %u bytes\n", in->logical_block_size);
	printf("  memory alignment:   %u byte%s%s\n", in->mem_align,
	       in->mem_align == 1 ? "" : "s",
	       in->flags & DM_BDEV_DIRECT ? " (O_DIRECT)" : "");
	printf("  max transfer:       %u bytes\n", in->max_transfer);
	if (in->discard_max)
		printf("  discard:            yes, up to %llu bytes a "
		       "request\n",
		       (unsigned long long)in->discard_max);
	else
		printf("  discard:            no\n");
	printf("  write zeroes:       up to %llu bytes a request\n",
	       (unsigned long long)in->write_zeroes_max);
	printf("  access:             %s, %s\n",
	       in->flags & DM_BDEV_DIRECT ? "direct" : "buffered",
	       in->flags & DM_BDEV_RDONLY ? "read-only" : "read-write");
}

static void print_json_device(const char *spec, const struct dm_bdev_info *in,
			      int err)
{
	printf("{\"spec\":");
	json_string(stdout, spec);
	if (err) {
		printf(",\"ok\":false,\"errno\":%d,\"error\":", -err);
		json_string(stdout, error_text(err));
		printf("}");
		return;
	}
	printf(",\"ok\":true,\"kind\":");
	json_string(stdout, in->kind);
	printf(",\"size_bytes\":%llu,\"sectors\":%llu,"
	       "\"logical_block_size\":%u,\"mem_align\":%u,"
	       "\"max_transfer\":%u,\"discard\":%s,\"discard_max\":%llu,"
	       "\"write_zeroes_max\":%llu,\"direct\":%s,\"read_only\":%s}",
	       (unsigned long long)BYTES(in->nr_sectors),
	       (unsigned long long)in->nr_sectors, in->logical_block_size,
	       in->mem_align, in->max_transfer,
	       in->discard_max ? "true" : "false",
	       (unsigned long long)in->discard_max,
	       (unsigned long long)in->write_zeroes_max,
	       in->flags & DM_BDEV_DIRECT ? "true" : "false",
	       in->flags & DM_BDEV_RDONLY ? "true" : "false");
}

/* The backend a client of ours gets here, or NULL with *@why the error. */
static const char *probe_backend(struct dm_io_client **io, const char **why)
{
	*io = dm_io_client_create();
	if (!*io) {
		*why = strerror(errno);
		return NULL;
	}
	return dm_io_client_backend(*io, why);
}

static int run(int argc, char *argv[])
{
	struct common_opts co = {0};
	struct dm_io_client *io;
	const char *backend, *why;
	int i, status;

	status = parse_options(argc, argv, &co, NULL, NULL);
	if (status != GO_ON)
		return status;
	status = 0;
	if (optind >= argc)
		return usage_error("missing device");
	for (i = optind; i < argc; i++)
		if (!strcmp(argv[i], "-"))
			return usage_error("'-' is a stream: info describes "
					   "devices");

	if (co.json)
		printf("{\"command\":\"info\",\"devices\":[");
	for (i = optind; i < argc; i++) {
		struct block_device *bdev = open_device(argv[i], co.open_flags);
		struct dm_bdev_info in;
		int err = bdev ? dm_bdev_get_info(bdev, &in) : -errno;

		if (err) {
			if (!co.json)
				warn("cannot open '%s': %s", argv[i],
				     error_text(err));
			status = EXIT_USAGE;
		}
		if (co.json) {
			printf("%s", i > optind ? "," : "");
			print_json_device(argv[i], &in, err);
		} else if (!err) {
			print_text(argv[i], &in);
		}
		dm_bdev_close(bdev);
	}

	backend = probe_backend(&io, &why);
	if (!backend)
		status = EXIT_USAGE;
	if (co.json) {
		printf("],\"backend\":");
		json_string(stdout, backend);
		printf(",\"backend_reason\":");
		json_string(stdout, why);
		printf(",\"exit\":%d}\n", status);
	} else if (backend) {
		printf("backend: %s; %s\n", backend, why);
	} else {
		warn("no I/O backend: %s", why);
	}
	dm_io_client_destroy(io);
	return status;
}

static const char info_usage[] =
	"Usage: dmio info [OPTIONS] SPEC...\n"
	"\n"
	"Show what each device is and can do: kind, size, logical block\n"
	"size, O_DIRECT alignment, maximum transfer, discard and\n"
	"write-zeroes limits, access mode; and the I/O backend that runs\n"
	"here, and why.\n";

const struct command info_command = {
	.name = "info",
	.run = run,
	.usage = info_usage,
	.common = COMMON_OPEN | COMMON_JSON,
};

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * nbdkit-dmio-plugin: serve a libdmio mirror (dm-raid1 in userspace) as
 * one NBD export.  This file is nbdkit's side: parameters, the callbacks
 * and their flags; the mirror itself is in mirror.c.  nbdkit runs one
 * plugin instance per process, so the mirror is the one global.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mirror.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static struct mirror mirror = {
	.opt = {.region_bytes = 512 << 10, .leg_timeout_ms = 5000},
};
static bool started;

static int parse_bool_key(const char *key, const char *value, bool *out)
{
	int r = nbdkit_parse_bool(value);

	if (r < 0)
		return -1;
	(void)key;
	*out = r;
	return 0;
}

static int dmio_config(const char *key, const char *value)
{
	struct mirror_options *o = &mirror.opt;
	int64_t v;

	if (!strcmp(key, "leg")) {
		if (o->nr_specs == MIRROR_MAX_LEGS) {
			nbdkit_error("at most %d legs", MIRROR_MAX_LEGS);
			return -1;
		}
		o->specs[o->nr_specs++] = value;
	} else if (!strcmp(key, "log")) {
		o->log_path = value;
	} else if (!strcmp(key, "control")) {
		o->control_path = value;
	} else if (!strcmp(key, "primary")) {
		o->primary = value;
	} else if (!strcmp(key, "region-size")) {
		v = nbdkit_parse_size(value);
		if (v < 4096 || v > (1 << 30) || (v & (v - 1))) {
			nbdkit_error("region-size must be a power of two "
				     "from 4K to 1G: %s",
				     value);
			return -1;
		}
		o->region_bytes = (uint64_t)v;
	} else if (!strcmp(key, "resync-rate")) {
		v = nbdkit_parse_size(value);
		if (v < 0)
			return -1;
		o->resync_rate = (uint64_t)v;
	} else if (!strcmp(key, "leg-timeout")) {
		if (nbdkit_parse_unsigned(key, value, &o->leg_timeout_ms))
			return -1;
	} else if (!strcmp(key, "read-policy")) {
		if (!strcmp(value, "round-robin"))
			o->read_policy = READ_ROUND_ROBIN;
		else if (!strcmp(value, "least-loaded"))
			o->read_policy = READ_LEAST_LOADED;
		else {
			nbdkit_error("read-policy: round-robin or "
				     "least-loaded, not %s",
				     value);
			return -1;
		}
	} else if (!strcmp(key, "direct") || !strcmp(key, "buffered")) {
		bool on;

		if (parse_bool_key(key, value, &on))
			return -1;
		if (on)
			o->open_flags |= key[0] == 'd' ? DM_BDEV_DIRECT
						       : DM_BDEV_BUFFERED;
	} else if (!strcmp(key, "nosync")) {
		if (parse_bool_key(key, value, &o->nosync))
			return -1;
	} else if (!strcmp(key, "verify")) {
		if (parse_bool_key(key, value, &o->verify))
			return -1;
	} else {
		nbdkit_error("unknown parameter '%s'", key);
		return -1;
	}
	return 0;
}

static int dmio_config_complete(void)
{
	if (!mirror.opt.nr_specs) {
		nbdkit_error("no legs: give leg=SPEC at least once");
		return -1;
	}
	if ((mirror.opt.open_flags & DM_BDEV_DIRECT) &&
	    (mirror.opt.open_flags & DM_BDEV_BUFFERED)) {
		nbdkit_error("direct and buffered exclude each other");
		return -1;
	}
	return 0;
}

/* libdmio's clients and NBD legs run threads: start after the fork. */
static int dmio_after_fork(void)
{
	int ret = mirror_start(&mirror);

	started = true;
	if (ret) {
		nbdkit_error("cannot start the mirror: %s",
			     mirror_strerror(-ret));
		return -1;
	}
	return 0;
}

static void dmio_cleanup(void)
{
	if (started)
		mirror_stop(&mirror);
	started = false;
}

static void *dmio_open(int readonly)
{
	(void)readonly;
	return &mirror;
}

static int64_t dmio_get_size(void *handle)
{
	struct mirror *m = handle;

	return (int64_t)(m->data_sectors << SECTOR_SHIFT);
}

static int dmio_block_size(void *handle, uint32_t *minimum, uint32_t *preferred,
			   uint32_t *maximum)
{
	struct mirror *m = handle;

	*minimum = m->block_size;
	*preferred = m->block_size > 4096 ? m->block_size : 4096;
	*maximum = 0xffffffff;
	return 0;
}

static int yes(void *handle)
{
	(void)handle;
	return 1;
}

static int dmio_can_fua(void *handle)
{
	(void)handle;
	return NBDKIT_FUA_NATIVE;
}

static int dmio_is_rotational(void *handle)
{
	(void)handle;
	return 0;
}

static int result(int ret)
{
	if (!ret)
		return 0;
	nbdkit_set_error(-ret);
	return -1;
}

static int dmio_pread(void *handle, void *buf, uint32_t count, uint64_t offset,
		      uint32_t flags)
{
	(void)flags;
	return result(mirror_read(handle, buf, count, offset));
}

static int dmio_pwrite(void *handle, const void *buf, uint32_t count,
		       uint64_t offset, uint32_t flags)
{
	return result(mirror_write(handle, buf, count, offset,
				   flags & NBDKIT_FLAG_FUA));
}

static int dmio_flush(void *handle, uint32_t flags)
{
	(void)flags;
	return result(mirror_flush(handle));
}

static int dmio_zero(void *handle, uint32_t count, uint64_t offset,
		     uint32_t flags)
{
	return result(
		mirror_zero(handle, count, offset, flags & NBDKIT_FLAG_FUA));
}

static int dmio_trim(void *handle, uint32_t count, uint64_t offset,
		     uint32_t flags)
{
	return dmio_zero(handle, count, offset, flags);
}

static struct nbdkit_plugin plugin = {
	.name = "dmio",
	.longname = "libdmio mirror (dm-raid1 in userspace)",
	.version = DMIO_VERSION,
	.description = "Mirror writes to every leg with libdmio's dm_io(), "
		       "read from one with failover, resync with kcopyd",
	.config = dmio_config,
	.config_complete = dmio_config_complete,
	.config_help =
		"leg=SPEC               a leg: file, block device or NBD URI "
		"(1..8; bare words too)\n"
		"log=FILE               the dirty-region log on disk "
		"(default: in core)\n"
		"region-size=SIZE       dirty-log region (default 512K)\n"
		"resync-rate=SIZE       resync and scrub bytes/s (default: "
		"no limit)\n"
		"leg-timeout=MS         fail a silent NBD leg after MS "
		"(default 5000)\n"
		"read-policy=round-robin|least-loaded\n"
		"primary=LEG            the leg whose data wins\n"
		"nosync=true            trust the legs to be equal at start\n"
		"verify=true            scrub once resynced\n"
		"control=PATH           the control socket\n"
		"direct=true|buffered=true  how files are opened",
	.magic_config_key = "leg",
	.after_fork = dmio_after_fork,
	.cleanup = dmio_cleanup,
	.open = dmio_open,
	.get_size = dmio_get_size,
	.block_size = dmio_block_size,
	.can_write = yes,
	.can_flush = yes,
	.can_trim = yes,
	.can_zero = yes,
	.can_fua = dmio_can_fua,
	.can_multi_conn = yes,
	.is_rotational = dmio_is_rotational,
	.pread = dmio_pread,
	.pwrite = dmio_pwrite,
	.flush = dmio_flush,
	.trim = dmio_trim,
	.zero = dmio_zero,
	.errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)

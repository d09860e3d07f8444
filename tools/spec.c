// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Regions on the command line, SPEC[@SECTOR[+COUNT]]: parsing them,
 * opening their devices, and creating missing destination files.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmio.h"

/* Byte offsets of every sector must fit in 64 bits, as dm_io() asks. */
#define MAX_SECTORS (UINT64_MAX >> SECTOR_SHIFT)

__extension__ typedef unsigned __int128 wide_t; /* NUMBER times its unit */

/* The unit a suffix names, in bytes: K, M, G, T in either case, alone or
 * with "iB", are powers of 1024; with "B" alone, of 1000 (as dd(1) and
 * truncate(1) read them).  Returns 0 for anything else. */
static uint64_t unit_bytes(const char *s, size_t len)
{
	static const char units[] = "KMGT";
	const char *unit =
		len ? memchr(units, toupper((unsigned char)*s), 4) : NULL;
	uint64_t base = 1024, bytes = 1;
	unsigned int i;

	if (!unit)
		return 0;
	if (len == 2 && toupper((unsigned char)s[1]) == 'B')
		base = 1000;
	else if (len != 1 && (len != 3 || strncasecmp(s + 1, "iB", 2)))
		return 0;
	for (i = 0; i <= (unsigned int)(unit - units); i++)
		bytes *= base;
	return bytes;
}

/*
 * The @len characters at @s as NUMBER[.FRACTION][UNIT]: a plain number
 * counts sectors, one with a unit bytes, which must come to whole
 * sectors (1.5M does, 1MB does not).  Returns 0, -EINVAL when the text is
 * not such an amount, -EDOM when it is not whole sectors, or -ERANGE when
 * it is too large.
 */
static int amount(const char *s, size_t len, sector_t *sectors)
{
	wide_t val = 0, den = 1, unit = 1 << SECTOR_SHIFT;
	bool overflow = false, point = false;
	size_t i = 0, digits = 0;

	for (; i < len && (isdigit((unsigned char)s[i]) || s[i] == '.'); i++) {
		if (s[i] == '.') {
			if (point)
				return -EINVAL;
			point = true;
			continue;
		}
		digits++;
		/* 19 digits of each part at most, so the product fits. */
		if (val >= (wide_t)1e19 || den >= (wide_t)1e19)
			overflow = true;
		else
			val = val * 10 + (unsigned int)(s[i] - '0');
		if (point && !overflow)
			den *= 10;
	}
	if (!digits)
		return -EINVAL;
	if (i < len) {
		unit = unit_bytes(s + i, len - i);
		if (!unit)
			return -EINVAL;
	}
	if (overflow)
		return -ERANGE;
	val *= unit;
	if (val % (den << SECTOR_SHIFT))
		return -EDOM;
	val /= den << SECTOR_SHIFT;
	if (val > MAX_SECTORS)
		return -ERANGE;
	*sectors = (sector_t)val;
	return 0;
}

/* A decimal number of at most @max, digits only.  Returns 0 or -EINVAL. */
int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end || *out > max ? -EINVAL : 0;
}

int parse_amount(const char *s, sector_t *sectors)
{
	return amount(s, strlen(s), sectors);
}

/*
 * Split @arg at its last '@' when what follows reads as SECTOR[+COUNT];
 * otherwise all of it names the device, so that NBD URIs with a user name
 * and paths with an '@' of their own still work (add "@0" to force it).
 * What follows an '@' and starts with a digit is meant as a region, so a
 * mistyped one is an error (-EINVAL) unless all of @arg names a file.
 * Returns 0, -EINVAL, -ERANGE for a region out of range, or -ENOMEM.
 */
static int target_parse(struct target *t, const char *arg)
{
	const char *at = strrchr(arg, '@'), *num = NULL, *plus = NULL;
	sector_t sector = 0, count = 0;
	int ret = -EINVAL, ret2 = 0;
	struct stat st;

	memset(t, 0, sizeof(*t));
	t->arg = arg;
	if (at && at != arg) {
		num = at + 1;
		plus = strchr(num, '+');
		ret = amount(num, plus ? (size_t)(plus - num) : strlen(num),
			     &sector);
		if (plus)
			ret2 = amount(plus + 1, strlen(plus + 1), &count);
	}
	if (ret == -EDOM || ret2 == -EDOM)
		ret = -EINVAL;
	if ((ret == -EINVAL || ret2 == -EINVAL) &&
	    (!num || !isdigit((unsigned char)*num) || !stat(arg, &st))) {
		t->spec = strdup(arg);
		return t->spec ? 0 : -ENOMEM;
	}
	if (ret == -EINVAL || ret2 == -EINVAL)
		return -EINVAL;
	if (ret || ret2 || count > MAX_SECTORS - sector)
		return -ERANGE;
	t->spec = strndup(arg, (size_t)(at - arg));
	t->sector = sector;
	t->count = count;
	t->has_count = plus != NULL;
	return t->spec ? 0 : -ENOMEM;
}

/* Parse @nr region arguments into a new array (free() it after
 * targets_release()).  Returns NULL, with *@status set and the reason
 * printed, for a region out of range or no memory. */
struct target *parse_targets(char *const args[], unsigned int nr, int *status)
{
	struct target *t = calloc(nr, sizeof(*t));
	unsigned int i;
	int ret = 0;

	if (!t) {
		*status = fatal("%s", strerror(ENOMEM));
		return NULL;
	}
	for (i = 0; i < nr && !ret; i++) {
		ret = target_parse(&t[i], args[i]);
		t[i].stream = !ret && !strcmp(t[i].spec, "-");
	}
	if (!ret)
		return t;
	if (ret == -ERANGE)
		*status =
			usage_error("region '%s' is out of range", args[i - 1]);
	else if (ret == -EINVAL)
		*status = usage_error(
			"bad region '%s': write SPEC@SECTOR+COUNT in 512-byte "
			"sectors, or in bytes with K, M, G, T (KiB...) or KB, "
			"MB, GB, TB (powers of 1000), whole sectors only",
			args[i - 1]);
	else
		*status = fatal("%s", strerror(-ret));
	targets_release(t, nr, false);
	free(t);
	return NULL;
}

/* A spec that we could create as a regular file: not a URI, no wrapper. */
bool target_is_path(const struct target *t)
{
	return !strstr(t->spec, "://") && strncmp(t->spec, "fault:", 6);
}

/* Returns 0 or the negative errno of dm_bdev_open(); -ENOTBLK for a path
 * that is neither a regular file nor a block device (a FIFO, a character
 * device), which error_text() explains. */
int target_open(struct target *t, unsigned int flags)
{
	struct stat st;

	if (target_is_path(t) && !stat(t->spec, &st) && !S_ISREG(st.st_mode) &&
	    !S_ISBLK(st.st_mode))
		return -ENOTBLK;
	t->bdev = dm_bdev_open(t->spec, flags);
	return t->bdev ? 0 : -errno;
}

/*
 * Create the missing regular file @t names, @bytes long (sparse), and open
 * it.  Returns 0 or a negative errno, and then leaves no file behind.
 */
int target_create(struct target *t, uint64_t bytes, unsigned int flags)
{
	int fd, ret = 0;

	/* O_EXCL: never truncate a file that appeared since we looked. */
	fd = open(t->spec, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	if (fd < 0)
		return -errno;
	if (bytes > INT64_MAX)
		ret = -EFBIG;
	else if (ftruncate(fd, (off_t)bytes) < 0)
		ret = -errno;
	close(fd);
	if (!ret)
		ret = target_open(t, flags);
	if (ret)
		unlink(t->spec);
	else
		t->created = true;
	return ret;
}

/* Close every device; remove the files this run created when asked to,
 * because nothing was written to them. */
void targets_release(struct target *t, unsigned int nr, bool remove_created)
{
	unsigned int i;

	for (i = 0; i < nr; i++) {
		dm_bdev_close(t[i].bdev);
		t[i].bdev = NULL;
		if (remove_created && t[i].created)
			unlink(t[i].spec);
		free(t[i].spec);
		t[i].spec = NULL;
	}
}

/* O_DIRECT devices take whole logical blocks only: say so before any I/O. */
int check_aligned(const struct target *t, sector_t count, const char *role)
{
	unsigned int lbs = dm_bdev_logical_block_size(t->bdev);
	sector_t per_block = lbs >> SECTOR_SHIFT;

	if (per_block > 1 && (t->sector % per_block || count % per_block))
		return fatal("%s '%s' is not aligned to its device's %u-byte "
			     "logical blocks",
			     role, t->arg, lbs);
	return 0;
}

/* Devices count whole sectors: a file's last partial sector is unseen. */
static void warn_partial_tail(const struct target *src)
{
	struct stat st;

	if (target_is_path(src) && !stat(src->spec, &st) &&
	    S_ISREG(st.st_mode) && st.st_size % (1 << SECTOR_SHIFT))
		warn("source '%s': its last %lld bytes are less than a sector "
		     "and are left out",
		     src->arg, (long long)(st.st_size % (1 << SECTOR_SHIFT)));
}

/*
 * Open the region a command reads, read-only, and settle its length: the
 * rest of the device unless +COUNT said otherwise.  Returns 0, or
 * EXIT_USAGE once the reason is printed.
 */
int open_source(struct target *src, unsigned int flags)
{
	sector_t size;
	int ret;

	ret = target_open(src, flags | DM_BDEV_RDONLY);
	if (ret)
		return fatal("cannot open source '%s': %s", src->spec,
			     error_text(ret));
	size = dm_bdev_nr_sectors(src->bdev);
	if (src->sector > size ||
	    (src->has_count && src->count > size - src->sector))
		return fatal("source region '%s' runs past the end of its "
			     "device (%llu sectors)",
			     src->arg, (unsigned long long)size);
	if (!src->has_count) {
		src->count = size - src->sector;
		warn_partial_tail(src);
	}
	return check_aligned(src, src->count, "source region");
}

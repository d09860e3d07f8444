/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Memory iterators, the kernel's dpages: each memory type hands the engine
 * contiguous runs of bytes and is told how far to move on.  The planner
 * never asks which type it has.
 */
#include <errno.h>
#include <stdint.h>

#include "engine.h"

/* Page list: data starts dp->off bytes into the first page. */
static int pl_get(struct dpages *dp, void **addr, size_t *len)
{
	struct page_list *pl = dp->p.pl;

	if (!pl || !pl->page)
		return -EINVAL; /* the list ends before the region does */
	*addr = (char *)dm_page_address(pl->page) + dp->off;
	*len = DM_PAGE_SIZE - dp->off;
	return 0;
}

static void pl_next(struct dpages *dp, size_t n)
{
	dp->off += n;
	if (dp->off == DM_PAGE_SIZE) {
		dp->p.pl = dp->p.pl->next;
		dp->off = 0;
	}
}

static int bvec_get(struct dpages *dp, void **addr, size_t *len)
{
	const struct bio_vec *bv = dp->p.bvec;

	if (!bv->bv_page || !bv->bv_len || bv->bv_offset >= DM_PAGE_SIZE ||
	    bv->bv_len > DM_PAGE_SIZE - bv->bv_offset)
		return -EINVAL;
	*addr = (char *)dm_page_address(bv->bv_page) + bv->bv_offset + dp->off;
	*len = bv->bv_len - dp->off;
	return 0;
}

static void bvec_next(struct dpages *dp, size_t n)
{
	dp->off += n;
	if (dp->off == dp->p.bvec->bv_len) {
		dp->p.bvec++;
		dp->off = 0;
	}
}

/* Contiguous memory (DM_IO_VMA, DM_IO_KMEM): one endless run. */
static int km_get(struct dpages *dp, void **addr, size_t *len)
{
	*addr = dp->p.addr;
	*len = SIZE_MAX;
	return 0;
}

static void km_next(struct dpages *dp, size_t n)
{
	dp->p.addr += n;
}

int dmi_dp_init(struct dpages *dp, const struct dm_io_memory *mem)
{
	dp->off = 0;
	dp->linear = false;
	switch (mem->type) {
	case DM_IO_PAGE_LIST:
		if (!mem->ptr.pl || mem->offset >= DM_PAGE_SIZE)
			return -EINVAL;
		dp->get = pl_get;
		dp->next = pl_next;
		dp->p.pl = mem->ptr.pl;
		dp->off = mem->offset;
		return 0;
	case DM_IO_BVEC:
		if (!mem->ptr.bvec)
			return -EINVAL;
		dp->get = bvec_get;
		dp->next = bvec_next;
		dp->p.bvec = mem->ptr.bvec;
		return 0;
	case DM_IO_VMA:
	case DM_IO_KMEM:
		if (!mem->ptr.addr)
			return -EINVAL;
		dp->get = km_get;
		dp->next = km_next;
		dp->p.addr = mem->ptr.addr;
		dp->linear = true;
		return 0;
	}
	return -EINVAL;
}

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pages: a struct page is the address of its DM_PAGE_SIZE bytes, so a page
 * costs no metadata and a bio_vec resolves without a lookup.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

DMIO_EXPORT struct page *dm_page_alloc(void)
{
	void *p = NULL;
	int ret = posix_memalign(&p, DM_PAGE_SIZE, DM_PAGE_SIZE);

	if (ret) {
		errno = ret;
		return NULL;
	}
	memset(p, 0, DM_PAGE_SIZE);
	return p;
}

DMIO_EXPORT void dm_page_free(struct page *page)
{
	free(page);
}

DMIO_EXPORT void *dm_page_address(const struct page *page)
{
	return (void *)page;
}

DMIO_EXPORT struct page_list *dm_page_list_alloc(unsigned int nr_pages)
{
	struct page_list *head = NULL, **link = &head;

	if (!nr_pages) {
		errno = EINVAL;
		return NULL;
	}
	while (nr_pages--) {
		struct page_list *pl = malloc(sizeof(*pl));

		if (!pl || !(pl->page = dm_page_alloc())) {
			free(pl);
			dm_page_list_free(head);
			errno = ENOMEM;
			return NULL;
		}
		pl->next = NULL;
		*link = pl;
		link = &pl->next;
	}
	return head;
}

DMIO_EXPORT void dm_page_list_free(struct page_list *pl)
{
	while (pl) {
		struct page_list *next = pl->next;

		dm_page_free(pl->page);
		free(pl);
		pl = next;
	}
}

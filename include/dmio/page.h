/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * <dmio/page.h> - 4096-byte aligned pages and page lists, the memory that
 * the page-list and bio_vec forms of dm-io take.
 */
#ifndef DMIO_PAGE_H
#define DMIO_PAGE_H

#ifdef __cplusplus
extern "C" {
#endif

#define DM_PAGE_SIZE 4096

struct page; /* opaque: one DM_PAGE_SIZE bytes, DM_PAGE_SIZE aligned */

struct page_list {
	struct page_list *next;
	struct page *page;
};

/*
 * dm_page_alloc - allocate one zero-filled page.
 * Returns the page, or NULL with errno set (ENOMEM).
 */
struct page *dm_page_alloc(void);

/* dm_page_free - free a page from dm_page_alloc(); NULL is ignored. */
void dm_page_free(struct page *page);

/* dm_page_address - the page's DM_PAGE_SIZE bytes (aligned to DM_PAGE_SIZE). */
void *dm_page_address(const struct page *page);

/*
 * dm_page_list_alloc - a NULL-terminated list of nr_pages zero-filled pages.
 * Returns the list, or NULL with errno set (EINVAL for nr_pages == 0,
 * ENOMEM).  Nothing is left allocated on failure.
 */
struct page_list *dm_page_list_alloc(unsigned int nr_pages);

/*
 * dm_page_list_free - free a list from dm_page_list_alloc(), pages included.
 * NULL is ignored.
 */
void dm_page_list_free(struct page_list *pl);

#ifdef __cplusplus
}
#endif

#endif /* DMIO_PAGE_H */

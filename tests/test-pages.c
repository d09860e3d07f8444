/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * <dmio/page.h>: pages are DM_PAGE_SIZE bytes, aligned, zero-filled; lists
 * are NULL-terminated; NULL is ignored by the free functions.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void expect_zero_aligned_page(const struct page *page)
{
	const void *addr = dm_page_address(page);

	assert_non_null(addr);
	assert_int_equal((uintptr_t)addr % DM_PAGE_SIZE, 0);
	assert_int_equal(h_byte_mismatch(addr, DM_PAGE_SIZE, 0), -1);
}

static void page_alloc_returns_aligned_zeroed_page(void **state)
{
	struct page *page;

	(void)state;
	assert_int_equal(DM_PAGE_SIZE, 4096);
	page = dm_page_alloc();
	assert_non_null(page);
	expect_zero_aligned_page(page);
	dm_page_free(page);
}

static void page_alloc_zeroes_recycled_memory(void **state)
{
	unsigned int i;

	(void)state;
	/* Dirty pages, free them, allocate again: whatever memory comes
	 * back must be zero, not what the last owner left. */
	for (i = 0; i < 64; i++) {
		struct page *page = dm_page_alloc();

		assert_non_null(page);
		expect_zero_aligned_page(page);
		memset(dm_page_address(page), 0x5a, DM_PAGE_SIZE);
		dm_page_free(page);
	}
}

static void page_address_covers_whole_page(void **state)
{
	struct page *a, *b;
	char *pa, *pb;

	(void)state;
	a = dm_page_alloc();
	b = dm_page_alloc();
	assert_non_null(a);
	assert_non_null(b);
	pa = dm_page_address(a);
	pb = dm_page_address(b);
	assert_ptr_equal(pa, dm_page_address(a));
	/* Two live pages never overlap. */
	assert_true(pa + DM_PAGE_SIZE <= pb || pb + DM_PAGE_SIZE <= pa);
	memset(pa, 0x11, DM_PAGE_SIZE);
	memset(pb, 0x22, DM_PAGE_SIZE);
	assert_int_equal(h_byte_mismatch(pa, DM_PAGE_SIZE, 0x11), -1);
	assert_int_equal(h_byte_mismatch(pb, DM_PAGE_SIZE, 0x22), -1);
	dm_page_free(a);
	dm_page_free(b);
}

static void page_free_null_is_ignored(void **state)
{
	(void)state;
	dm_page_free(NULL);
}

static void page_list_alloc_links_zeroed_aligned_pages(void **state)
{
	struct page_list *pl, *it;
	unsigned int n = 0;

	(void)state;
	pl = dm_page_list_alloc(5);
	assert_non_null(pl);
	for (it = pl; it; it = it->next) {
		assert_non_null(it->page);
		expect_zero_aligned_page(it->page);
		memset(dm_page_address(it->page), (int)n, DM_PAGE_SIZE);
		n++;
	}
	assert_int_equal(n, 5);
	/* Every page is its own: what was written to each is still there. */
	for (n = 0, it = pl; it; it = it->next, n++)
		assert_int_equal(h_byte_mismatch(dm_page_address(it->page),
						 DM_PAGE_SIZE, (uint8_t)n),
				 -1);
	dm_page_list_free(pl);
}

static void page_list_alloc_one_page(void **state)
{
	struct page_list *pl;

	(void)state;
	pl = dm_page_list_alloc(1);
	assert_non_null(pl);
	assert_null(pl->next);
	expect_zero_aligned_page(pl->page);
	dm_page_list_free(pl);
}

static void page_list_alloc_zero_pages_is_einval(void **state)
{
	(void)state;
	errno = 0;
	assert_null(dm_page_list_alloc(0));
	assert_int_equal(errno, EINVAL);
}

static void page_list_free_null_is_ignored(void **state)
{
	(void)state;
	dm_page_list_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(page_alloc_returns_aligned_zeroed_page),
		cmocka_unit_test(page_alloc_zeroes_recycled_memory),
		cmocka_unit_test(page_address_covers_whole_page),
		cmocka_unit_test(page_free_null_is_ignored),
		cmocka_unit_test(page_list_alloc_links_zeroed_aligned_pages),
		cmocka_unit_test(page_list_alloc_one_page),
		cmocka_unit_test(page_list_alloc_zero_pages_is_einval),
		cmocka_unit_test(page_list_free_null_is_ignored),
	};

	return cmocka_run_group_tests_name("pages", tests, NULL, NULL);
}

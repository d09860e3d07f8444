#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# check-pages.sh MANDIR LIBRARY MAPFILE
#
# Every symbol that the built shared LIBRARY exports (nm -D --defined-only;
# "-" when there is no shared library)
# and every symbol that MAPFILE lists must have a section 3 page under
# MANDIR: a page of its own, or a one-line ".so man3/PAGE.3" alias to a page
# whose NAME section names it.  Every page must be installed by
# MANDIR/meson.build and render without a groff warning.
# Exit 0 when all is well, 1 otherwise, 77 (skipped) without groff.

set -u

if [ $# -ne 3 ]; then
	echo "usage: $0 MANDIR LIBRARY MAPFILE" >&2
	exit 2
fi
mandir=$1
lib=$2
map=$3
status=0

fail() {
	echo "FAIL: $*" >&2
	status=1
}

if ! command -v groff >/dev/null 2>&1; then
	echo "SKIP: groff is not installed" >&2
	exit 77
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# The symbols: what the library exports, and what its map promises.
if [ "$lib" = - ]; then
	echo "note: no shared library given; checking $map only" >&2
	: >"$tmp/syms"
elif command -v nm >/dev/null 2>&1; then
	nm -D --defined-only "$lib" >"$tmp/nm" || fail "nm could not read $lib"
	awk '$2 ~ /^[TtWiDdBbRr]$/ { sub(/@.*/, "", $3); print $3 }' \
		"$tmp/nm" >"$tmp/syms"
	[ -s "$tmp/syms" ] || fail "$lib exports no symbols"
else
	echo "note: nm is not installed; checking $map only" >&2
	: >"$tmp/syms"
fi
sed -n 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\);.*/\1/p' "$map" \
	>>"$tmp/syms"
sort -u "$tmp/syms" | grep -v '^LIBDMIO_' >"$tmp/symbols"
[ -s "$tmp/symbols" ] || fail "no symbols found in $lib or $map"

# The NAME section of a page: the lines between .SH NAME and the next .SH.
names() {
	sed -n '/^\.SH NAME/,/^\.SH /p' "$1" | sed '1d;$d'
}

# Each symbol has a page, directly or through an alias.
while read -r sym; do
	page=$mandir/$sym.3
	if [ ! -f "$page" ]; then
		fail "$sym: no page $sym.3"
		continue
	fi
	target=$(sed -n '1s/^\.so[[:space:]]\{1,\}man3\/\([^[:space:]]*\)$/\1/p' "$page")
	if [ -n "$target" ]; then
		if [ "$(wc -l <"$page")" -ne 1 ]; then
			fail "$sym.3: an alias must be one .so line"
		fi
		page=$mandir/$target
		if [ ! -f "$page" ]; then
			fail "$sym.3: .so to missing page $target"
			continue
		fi
		if grep -q '^\.so' "$page"; then
			fail "$sym.3: .so to $target, itself an alias"
			continue
		fi
	fi
	if ! names "$page" | grep -q "\\(^\\|[ ,]\\)$sym\\([ ,]\\|$\\)"; then
		fail "$sym: not named in the NAME section of $(basename "$page")"
	fi
done <"$tmp/symbols"

# Each page is installed and renders cleanly.
for page in "$mandir"/*.[1-8]; do
	base=$(basename "$page")
	if ! grep -q "'$base'" "$mandir/meson.build"; then
		fail "$base: not installed by man/meson.build"
	fi
	grep -q '^\.so' "$page" && continue
	if ! LC_ALL=C.UTF-8 groff -t -man -ww -z -Tutf8 "$page" \
		>"$tmp/out" 2>&1; then
		fail "$base: groff failed"
	fi
	if [ -s "$tmp/out" ]; then
		fail "$base: groff warnings:"
		cat "$tmp/out" >&2
	fi
done

if [ $status -eq 0 ]; then
	echo "$(wc -l <"$tmp/symbols") exported symbols, each with a page;" \
		"$(ls "$mandir"/*.[1-8] | wc -l) pages, all rendering cleanly"
fi
exit $status

#!/bin/sh
# Install the build into a private prefix with `meson install`, then build
# and run a program from outside the tree against it, as a user would:
#   cc api-all.c $(pkg-config --cflags --libs dmio)
# Usage: check-install.sh SOURCE_DIR
set -eu
src=$(cd "$1" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dmio-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

meson setup "$tmp/build" "$src" --prefix="$tmp/prefix" --libdir=lib -Dtests=false \
	-Dexamples=false >/dev/null
ninja -C "$tmp/build" >/dev/null
meson install -C "$tmp/build" >/dev/null

pc=$(dirname "$(find "$tmp/prefix" -name dmio.pc)")
export PKG_CONFIG_PATH="$pc"
cc -std=c17 -Wall -Wextra -Werror -o "$tmp/api-all" "$src/scripts/api-all.c" \
	$(pkg-config --cflags --libs dmio)
truncate -s 1M "$tmp/disk.img"
LD_LIBRARY_PATH=$(pkg-config --variable=libdir dmio) "$tmp/api-all" "$tmp/disk.img"
# The README's other way: an rpath instead of LD_LIBRARY_PATH.
cc -std=c17 -Wall -Wextra -Werror -o "$tmp/api-rpath" "$src/scripts/api-all.c" \
	$(pkg-config --cflags --libs dmio) \
	-Wl,-rpath,"$(pkg-config --variable=libdir dmio)"
env -u LD_LIBRARY_PATH "$tmp/api-rpath" "$tmp/disk.img" >/dev/null
test "$(pkg-config --variable=libdir dmio)" = "$tmp/prefix/lib"
# The man pages and the tool came along.
test -x "$tmp/prefix/bin/dmio"
test -n "$(find "$tmp/prefix" -name dmio.1)"
echo "check-install: pkg-config, headers, library and dmio work from $tmp/prefix"

#!/bin/sh
# Build the Debian packages from a copy of the tree, install them on this
# machine, build and run a program against the installed copy and use the
# installed dmio, then remove them again (unless they were installed
# before).  Needs root.  Usage: check-deb.sh SOURCE_DIR
set -eu
if [ "$(id -u)" != 0 ]; then
	echo "SKIP: check-deb needs root to install packages"
	exit 0
fi
src=$(cd "$1" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dmio-deb-XXXXXX")
pkgs="libdmio0 libdmio-dev dmio"
had=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok' &&
		had="$had $p"
done
cleanup() {
	[ -z "$had" ] && apt-get purge -y -qq $pkgs >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Only what git tracks, so that build directories stay out.
mkdir "$tmp/libdmio"
(cd "$src" && git ls-files -z | xargs -0 tar -cf -) | tar -xf - -C "$tmp/libdmio"
(cd "$tmp/libdmio" && dpkg-buildpackage -b -us -uc >"$tmp/build.log" 2>&1) || {
	tail -30 "$tmp/build.log"
	exit 1
}
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	"$tmp"/libdmio0_*.deb "$tmp"/libdmio-dev_*.deb "$tmp"/dmio_*.deb \
	</dev/null >/dev/null

cc -std=c17 -Wall -Wextra -Werror -o "$tmp/api-all" "$src/scripts/api-all.c" \
	$(pkg-config --cflags --libs dmio)
truncate -s 1M "$tmp/disk.img"
"$tmp/api-all" "$tmp/disk.img"
dmio info "$tmp/disk.img" >/dev/null
man -w dmio dm_io dm_io_async_bvec libdmio >/dev/null
# dmio serve from the package: nbdkit finds the packaged plugin.
if command -v nbdkit >/dev/null && command -v nbdinfo >/dev/null; then
	truncate -s 8M "$tmp/leg0" "$tmp/leg1"
	dmio serve --socket "$tmp/m.sock" --nosync "$tmp/leg0" "$tmp/leg1" \
		2>"$tmp/serve.err" &
	serve=$!
	i=0
	until nbdinfo --size "nbd+unix:///?socket=$tmp/m.sock" \
		>"$tmp/size" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 100 ] || ! kill -0 $serve 2>/dev/null; then
			cat "$tmp/serve.err"
			kill $serve 2>/dev/null || true
			echo "check-deb: the packaged dmio serve did not start" >&2
			exit 1
		fi
		sleep 0.1
	done
	kill $serve
	wait $serve || true
	[ "$(cat "$tmp/size")" -eq $((8 * 1048576 - 4096)) ] || {
		echo "check-deb: the packaged export has the wrong size" >&2
		exit 1
	}
	man -w nbdkit-dmio-plugin >/dev/null
fi
echo "check-deb: libdmio0, libdmio-dev and dmio (with its nbdkit plugin) build, install and work"

#!/bin/sh
# Run one example the way its comment shows, on files in a private temp
# folder (and an nbdkit server for nbd-leg); exit 77 (skip) when a tool it
# needs is missing.
set -eu
exe=$1
name=$(basename "$exe")
dir=$(mktemp -d "${TMPDIR:-/tmp}/dmio-example-XXXXXX")
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
for f in a b c; do
	truncate -s 4M "$dir/$f.img"
done
head -c 4M /dev/urandom >"$dir/a.img"

case $name in
mirror-sync)
	"$exe" "$dir/a.img" "$dir/b.img" "$dir/c.img" ;;
async-chain | page-list)
	"$exe" "$dir/b.img" ;;
kcopyd-copy)
	"$exe" "$dir/a.img" "$dir/b.img" "$dir/c.img"
	cmp -n 1048576 "$dir/a.img" "$dir/b.img"
	cmp -n 1048576 "$dir/a.img" "$dir/c.img" ;;
nbd-leg)
	if ! command -v nbdkit >/dev/null; then
		echo "SKIP: nbdkit is not installed"
		exit 77
	fi
	nbdkit --exit-with-parent --foreground --unix "$dir/nbd.sock" \
		memory 16M &
	pid=$!
	i=0
	while [ ! -S "$dir/nbd.sock" ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	"$exe" "$dir/b.img" "nbd+unix:///?socket=$dir/nbd.sock" ;;
*)
	echo "run.sh: unknown example $name" >&2
	exit 2 ;;
esac

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench/buffered-mirror.sh - `dmio copy --buffered` of SIZE MiB to three
# loop devices against three `dd conv=fsync` to the same devices one after
# another, and against dmio to one of them (docs/performance.md, "Buffered
# copies to three loop devices").  As root.
#
#   bench/buffered-mirror.sh [--dmio PATH] [--runs N] [--size MIB]
#
# Every run gets new loop devices over new sparse files in /dev/shm and
# starts after a pause, so that no run inherits page cache (or memory the
# previous run just freed) from another.  Prints one line per run (wall
# and CPU seconds, all threads, kernel included) and the minimum and
# median per command.  A benchmark: never a pass/fail check.
set -euo pipefail

DMIO=build/tools/dmio
RUNS=5
SIZE=512
while [ $# -gt 0 ]; do
	case $1 in
	--dmio) DMIO=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--size) SIZE=$2; shift ;;
	-h|--help) sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "buffered-mirror.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || { echo "buffered-mirror.sh: needs root (losetup)" >&2; exit 2; }

dir=$(mktemp -d /dev/shm/dmio-bufmirror.XXXXXX)
loops=()
detach() {
	local l

	for l in "${loops[@]}"; do
		losetup -d "$l"
	done
	loops=()
}
trap 'detach; rm -rf "$dir"' EXIT
head -c "${SIZE}M" /dev/urandom >"$dir/src"

# one NAME: time one command on three new loop devices.
one() {
	local i s e cpu

	detach
	for i in 1 2 3; do
		rm -f "$dir/d$i"
		truncate -s "$((SIZE + 64))M" "$dir/d$i"
		loops+=("$(losetup -f --show "$dir/d$i")")
	done
	sleep 5
	s=$(date +%s.%N)
	case $1 in
	dmio-3)
		/usr/bin/time -f "%U %S" -o "$dir/cpu" "$DMIO" copy -q \
			--buffered "$dir/src" "${loops[@]}" >/dev/null ;;
	dmio-1)
		/usr/bin/time -f "%U %S" -o "$dir/cpu" "$DMIO" copy -q \
			--buffered "$dir/src" "${loops[0]}" >/dev/null ;;
	dd-3)
		/usr/bin/time -f "%U %S" -o "$dir/cpu" sh -c '
			src=$1; shift
			for l; do
				dd if="$src" of="$l" bs=1M conv=fsync status=none
			done' sh "$dir/src" "${loops[@]}" ;;
	esac
	e=$(date +%s.%N)
	cpu=$(awk '{print $1 + $2}' "$dir/cpu")
	printf "%-7s %6.2f s wall %6.2f s cpu\n" "$1" "$(echo "$e - $s" | bc)" "$cpu"
}

# Not in a pipeline: a subshell would keep the loop devices from the trap.
for r in $(seq "$RUNS"); do
	for c in dmio-3 dd-3 dmio-1; do
		one $c >>"$dir/runs"
		tail -n 1 "$dir/runs"
	done
done
detach
# pick FIELD CMD: the minimum and the median of one column of CMD's runs.
pick() {
	local v

	mapfile -t v < <(grep "^$2 " "$dir/runs" | awk -v f="$1" '{print $f}' |
		sort -n)
	echo "${v[0]} / ${v[$(((${#v[@]} - 1) / 2))]}"
}
echo "min / median of $RUNS runs: wall seconds (cpu seconds)"
for c in dmio-3 dd-3 dmio-1; do
	printf "%-7s %s (%s)\n" "$c" "$(pick 2 $c)" "$(pick 5 $c)"
done

#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench/run.sh - what `make bench` runs: set up RAM-backed loop devices,
# latency-bound NBD exports (nbdkit memory + delay filter) and latency-bound
# loop devices (over delayfs, a FUSE file system in bench/), run every
# workload of dmio-bench (which runs fio, dd and `dmio copy` as child
# processes on the same devices), and leave the table, JSON and plot in
# the output folder.  Everything it sets up is torn down on exit.
#
#   bench/run.sh [--quick] [--build DIR] [--out DIR] [-- DMIO-BENCH-ARGS]
#
# --quick: shorter runs on smaller devices (about 1.5 minutes, not 8).
set -euo pipefail

BUILD=${BUILD:-build}
OUT=
QUICK=0
EXTRA=()

while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--build) BUILD=$2; shift ;;
	--out) OUT=$2; shift ;;
	--) shift; EXTRA=("$@"); break ;;
	-h|--help) sed -n '3,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
OUT=${OUT:-$BUILD/bench-results}
BENCH=$BUILD/bench/dmio-bench

# More, shorter runs rather than fewer long ones: on a shared machine the
# median of five shrugs off a burst of someone else's work.
if [ "$QUICK" = 1 ]; then
	DEV_MIB=256 RUNS=3 RUN_SECS=0.5 ICOUNT=500,2000 COPY_MIB=256
else
	DEV_MIB=1024 RUNS=5 RUN_SECS=1.2 ICOUNT=2000,10000 COPY_MIB=1024
fi
NDEV=8
DELAY_MS=2	# per write, on the latency-bound devices

note() { echo "run.sh: $*" >&2; }

# ---- packages ----

# Runtime tools and the libraries the optional parts build against.
PACKAGES="fio gnuplot-nox nbdkit libnbd-dev valgrind fuse3 libfuse3-dev"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ]; then
		note "installing:$missing"
		apt-get update -qq
		# shellcheck disable=SC2086 # a list, split on purpose
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing \
			</dev/null >/dev/null
		# New libraries (libnbd, fuse3) are found only on reconfigure.
		[ -f "$BUILD/build.ninja" ] && meson setup --reconfigure "$BUILD" >/dev/null
	else
		note "missing packages:$missing (not root: going on without them)"
	fi
fi
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" >/dev/null
ninja -C "$BUILD" >/dev/null
[ -x "$BENCH" ] || { note "$BENCH was not built"; exit 1; }

# ---- set-up, and the tear-down that always runs ----

WORK=
LOOPS=()
SLOW_LOOPS=()
NBD_PIDS=()
DFS_PID=
DFS_MNT=

cleanup() {
	set +e
	for l in "${SLOW_LOOPS[@]}" "${LOOPS[@]}"; do
		losetup -d "$l" 2>/dev/null
	done
	if [ -n "$DFS_MNT" ] && mountpoint -q "$DFS_MNT"; then
		fusermount3 -u "$DFS_MNT" 2>/dev/null || umount "$DFS_MNT"
	fi
	[ -n "$DFS_PID" ] && kill "$DFS_PID" 2>/dev/null && wait "$DFS_PID" 2>/dev/null
	for p in "${NBD_PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	[ -n "$WORK" ] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1
if [ "$ROOT" = 1 ] && [ -d /dev/shm ]; then
	WORK=$(mktemp -d /dev/shm/dmio-bench.XXXXXX)
else
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/dmio-bench.XXXXXX")
fi
mkdir -p "$OUT"

# The devices must fit in memory with room to spare: shrink them if not.
avail_mib=$(awk '/MemAvailable/ { print int($2 / 1024) }' /proc/meminfo)
while [ $((DEV_MIB * NDEV * 2)) -gt "$avail_mib" ] && [ "$DEV_MIB" -gt 128 ]; do
	DEV_MIB=$((DEV_MIB / 2))
done
[ "$COPY_MIB" -gt "$DEV_MIB" ] && COPY_MIB=$DEV_MIB

DEV_ARGS=()
for i in $(seq 0 $((NDEV - 1))); do
	img=$WORK/dev$i.img
	fallocate -l "${DEV_MIB}M" "$img" 2>/dev/null ||
		truncate -s "${DEV_MIB}M" "$img"
	# Direct I/O from the loop device to its file: no second page cache.
	if [ "$ROOT" = 1 ] && { l=$(losetup -f --show --direct-io=on "$img" 2>/dev/null) ||
		l=$(losetup -f --show "$img" 2>/dev/null); }; then
		LOOPS+=("$l")
		DEV_ARGS+=(--dev "$l")
	else
		DEV_ARGS+=(--dev "$img")
	fi
done
if [ ${#LOOPS[@]} = "$NDEV" ]; then
	note "$NDEV loop devices of $DEV_MIB MiB over files in $WORK (RAM): ${LOOPS[*]}"
	TARGETS=("${LOOPS[@]}")
else
	note "NOTE: no loop devices (needs root): plain files in $WORK instead"
	TARGETS=()
	for i in $(seq 0 $((NDEV - 1))); do TARGETS+=("$WORK/dev$i.img"); done
fi
# Every engine uses O_DIRECT where the devices take it.
if ! dd if=/dev/zero of="${TARGETS[0]}" bs=4096 count=1 oflag=direct \
	conv=notrunc status=none 2>/dev/null; then
	note "NOTE: O_DIRECT refused here: every engine uses the page cache"
	EXTRA=(--buffered "${EXTRA[@]}")
fi
# Write every block once, so that no engine is the first to touch memory.
for t in "${TARGETS[@]}"; do
	dd if=/dev/zero of="$t" bs=1M count="$DEV_MIB" conv=notrunc \
		status=none 2>/dev/null
done

# Latency-bound NBD exports: nbdkit's memory plugin behind its delay filter.
NBD_ARGS=()
if command -v nbdkit >/dev/null; then
	for i in 0 1 2; do
		nbdkit -f --exit-with-parent --unix "$WORK/nbd$i.sock" \
			--pidfile "$WORK/nbd$i.pid" --filter=delay memory 1G \
			delay-write=${DELAY_MS}ms &
		NBD_PIDS+=($!)
	done
	for i in 0 1 2; do
		for _ in $(seq 50); do [ -S "$WORK/nbd$i.sock" ] && break; sleep 0.1; done
		NBD_ARGS+=(--nbd "nbd+unix:///?socket=$WORK/nbd$i.sock")
	done
	note "3 nbdkit exports (memory, delay-write=${DELAY_MS}ms) in $WORK"
else
	note "NOTE: no nbdkit: the NBD latency workload is skipped"
fi

# Latency-bound loop devices: loop over delayfs files, for the engines that
# need a file descriptor (lio_listio, liburing, fio, the pwrite loop).
SLOW_ARGS=()
DFS=$BUILD/bench/delayfs
if [ "$ROOT" = 1 ] && [ -x "$DFS" ] && [ -c /dev/fuse ]; then
	DFS_MNT=$WORK/dfs
	mkdir "$DFS_MNT"
	"$DFS" "$DFS_MNT" 3 256 $((DELAY_MS * 1000)) &
	DFS_PID=$!
	for _ in $(seq 50); do [ -f "$DFS_MNT/d2" ] && break; sleep 0.1; done
	for i in 0 1 2; do
		if l=$(losetup -f --show --direct-io=on "$DFS_MNT/d$i" 2>/dev/null); then
			SLOW_LOOPS+=("$l")
			SLOW_ARGS+=(--slow "$l")
		fi
	done
	note "3 loop devices over delayfs (${DELAY_MS} ms per write): ${SLOW_LOOPS[*]}"
else
	note "NOTE: no delayfs loop devices (needs root, fuse3 and /dev/fuse): latency-fd skipped"
fi

DMIO_ARGS=()
if [ -x "$BUILD/tools/dmio" ]; then
	DMIO_ARGS=(--dmio "$BUILD/tools/dmio")
else
	note "NOTE: no $BUILD/tools/dmio yet: the dmio copy figure is skipped"
fi

note "libdmio $(git -C "$(dirname "$0")/.." describe --always --dirty 2>/dev/null || echo '?'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
set -x
"$BENCH" "${DEV_ARGS[@]}" "${NBD_ARGS[@]}" "${SLOW_ARGS[@]}" "${DMIO_ARGS[@]}" \
	--runs "$RUNS" --time "$RUN_SECS" --copy-mib "$COPY_MIB" --icount "$ICOUNT" \
	--json "$OUT/results.json" --plot "$OUT/results.png" "${EXTRA[@]}" |
	tee "$OUT/results.txt"
{ set +x; } 2>/dev/null
note "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
note "results: $OUT/results.txt, $OUT/results.json, $OUT/results.png"

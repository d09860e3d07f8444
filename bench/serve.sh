#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# bench/serve.sh - `dmio serve` with 1, 2 and 3 legs against nbdkit's file
# plugin serving one leg (the cost of mirroring) and qemu-storage-daemon
# serving a quorum of the same 2 legs (the nearest existing mirror), all
# on RAM-backed files in /dev/shm, driven by fio's nbd engine over a Unix
# socket; then a resync of one leg by kcopyd against `dmio copy` of the
# same bytes (docs/performance.md, "dmio serve").
#
#   bench/serve.sh [--dmio PATH] [--size MIB] [--secs N] [--runs N]
#                  [--only servers|resync]
#
# Workloads: 1 MiB sequential writes at QD8, 4 KiB random reads at QD32.
# Prints one line per run and the median per server and workload, with
# the ratios the issue asks for.  A benchmark: never a pass/fail check.
set -euo pipefail

DMIO=build/tools/dmio
SIZE=512
SECS=5
RUNS=3
ONLY=
while [ $# -gt 0 ]; do
	case $1 in
	--dmio) DMIO=$2; shift ;;
	--size) SIZE=$2; shift ;;
	--secs) SECS=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--only) ONLY=$2; shift ;;
	-h|--help) sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "serve.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
for t in fio nbdkit qemu-storage-daemon jq; do
	command -v $t >/dev/null || { echo "serve.sh: needs $t" >&2; exit 2; }
done
# The plugin next to the tool, as the tests use it.
plugin=$(dirname "$DMIO")/../serve/nbdkit-dmio-plugin.so
[ -f "$plugin" ] && export DMIO_NBDKIT_PLUGIN=$plugin

dir=$(mktemp -d /dev/shm/dmio-bench-serve.XXXXXX)
sock=$dir/s.sock
pid=
stop() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	pid=
}
trap 'stop; rm -rf "$dir"' EXIT
for l in a b c; do
	head -c "${SIZE}M" /dev/urandom >"$dir/$l"
done

wait_sock() {
	local i

	for ((i = 0; i < 200; i++)); do
		[ -S "$sock" ] && return 0
		sleep 0.05
	done
	echo "serve.sh: the server did not start" >&2
	exit 1
}

# start NAME: one server on $sock.
start() {
	rm -f "$sock" "$sock.ctl"
	case $1 in
	nbdkit-file)
		nbdkit -f -U "$sock" file "$dir/a" & ;;
	dmio-1)
		# One leg: what the plugin costs, apart from mirroring.
		"$DMIO" serve --nosync --socket "$sock" "$dir/a" 2>/dev/null & ;;
	dmio-2)
		"$DMIO" serve --nosync --socket "$sock" "$dir/a" "$dir/b" \
			2>/dev/null & ;;
	dmio-3)
		"$DMIO" serve --nosync --socket "$sock" "$dir/a" "$dir/b" \
			"$dir/c" 2>/dev/null & ;;
	qemu-quorum)
		# The export in the main loop: in Debian 12 an export on an
		# iothread aborts when a client disconnects.
		qemu-storage-daemon \
			--blockdev "driver=file,node-name=fa,filename=$dir/a,aio=io_uring" \
			--blockdev driver=raw,node-name=ra,file=fa \
			--blockdev "driver=file,node-name=fb,filename=$dir/b,aio=io_uring" \
			--blockdev driver=raw,node-name=rb,file=fb \
			--blockdev driver=quorum,node-name=q0,vote-threshold=1,read-pattern=fifo,children.0=ra,children.1=rb \
			--nbd-server "addr.type=unix,addr.path=$sock" \
			--export type=nbd,id=e0,node-name=q0,name=,writable=on & ;;
	esac
	pid=$!
	wait_sock
}

# run WORKLOAD: MiB/s (write) or IOPS (read) of one fio run.
run() {
	local args

	case $1 in
	write) args="--rw=write --bs=1M --iodepth=8" ;;
	read) args="--rw=randread --bs=4k --iodepth=32" ;;
	esac
	# shellcheck disable=SC2086
	fio --name=b --ioengine=nbd --uri="nbd+unix:///?socket=$sock" $args \
		--size=$((SIZE - 1))M --time_based --runtime="$SECS" \
		--output-format=json --output="$dir/fio.json" >/dev/null 2>&1
	case $1 in
	write) jq '.jobs[0].write.bw / 1024 | floor' "$dir/fio.json" ;;
	read) jq '.jobs[0].read.iops | floor' "$dir/fio.json" ;;
	esac
}

median() {
	sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}

ratio() { echo "scale=2; $1 / $2" | bc; }

servers="nbdkit-file dmio-1 dmio-2 dmio-3 qemu-quorum"
[ "$ONLY" = resync ] && servers=
for r in $(seq "$RUNS"); do
	for s in $servers; do
		start "$s"
		for w in write read; do
			v=$(run $w)
			echo "$s $w $v" >>"$dir/runs"
			echo "run $r: $s $w $v"
		done
		stop
	done
done

declare -A med
if [ -n "$servers" ]; then
echo
printf "%-12s %14s %14s\n" server "write MiB/s" "randread IOPS"
for s in $servers; do
	for w in write read; do
		med[$s.$w]=$(awk -v s="$s" -v w="$w" '$1 == s && $2 == w {print $3}' \
			"$dir/runs" | median)
	done
	printf "%-12s %14s %14s\n" "$s" "${med[$s.write]}" "${med[$s.read]}"
done
echo
echo "dmio-2 write / nbdkit-file write: $(ratio "${med[dmio-2.write]}" "${med[nbdkit-file.write]}") (target >= 0.9)"
echo "  of which dmio-1 write / nbdkit-file write: $(ratio "${med[dmio-1.write]}" "${med[nbdkit-file.write]}") (the plugin), dmio-2 / dmio-1: $(ratio "${med[dmio-2.write]}" "${med[dmio-1.write]}") (the second leg)"
echo "dmio-2 write / qemu-quorum write: $(ratio "${med[dmio-2.write]}" "${med[qemu-quorum.write]}") (target >= 1.2)"
echo "dmio-2 read / nbdkit-file read:   $(ratio "${med[dmio-2.read]}" "${med[nbdkit-file.read]}") (target >= 0.9)"
fi
[ "$ONLY" = servers ] && exit 0

# Resync: a new, empty leg b resynced from a at start, against a copy.
# Both rates are the engines' own, from the first byte copied to the
# last (the server's resync.bytes_per_s; dmio copy --json's mib_per_s,
# its final flush included), so that neither pays for starting a process;
# the wall time with the server's start is printed beside them.  The
# script waits for the server's "resync done" event rather than polling
# its status: every poll forks processes that take CPU from the resync on
# 2 cores (with a poll every 20 ms, single resyncs fell to a third).
echo
for r in $(seq "$RUNS"); do
	rm -f "$dir/b"
	truncate -s "${SIZE}M" "$dir/b"
	rm -f "$sock" "$sock.ctl"
	t0=$(date +%s.%N)
	"$DMIO" serve --socket "$sock" "$dir/a" "$dir/b" 2>"$dir/events" &
	pid=$!
	wait_sock
	grep -q -m1 'resync done' <(tail --pid="$pid" -n +1 -f "$dir/events") ||
		{ echo "serve.sh: the server died during the resync" >&2; exit 1; }
	t1=$(date +%s.%N)
	"$DMIO" serve --status --json "$sock.ctl" >"$dir/status"
	stop
	rm -f "$dir/b"
	rs=$(jq -r '.resync.bytes_per_s / 1048576 | floor' "$dir/status")
	cp=$("$DMIO" copy --json "$dir/a" "$dir/b" 2>/dev/null | jq -r '.mib_per_s | floor')
	wall=$(echo "$SIZE / ($t1 - $t0)" | bc)
	echo "resync $rs MiB/s  dmio copy $cp MiB/s  (resync with the server's start: $wall MiB/s)" |
		tee -a "$dir/resync"
done
rs=$(awk '{print $2}' "$dir/resync" | median)
cp=$(awk '{print $6}' "$dir/resync" | median)
echo "resync / dmio copy: $(ratio "$rs" "$cp") (target >= 0.9)"

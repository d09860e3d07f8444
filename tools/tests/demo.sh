#!/bin/bash
# dmio demo: copies and verifies three mirrors of random data in a folder
# of its own, and leaves nothing behind, also when interrupted.
. "$(dirname "$0")/lib.sh"

mkdir "$T/tmp"

TMPDIR="$T/tmp" run demo --size 4M
check "the demo exits 0" status 0
check "it says where it works" has "^dmio demo: 4\.0 MiB of random data and 3 mirror images in $T/tmp/dmio-demo-" "$T/out"
check "all three mirrors are the same as the source" \
	[ "$(grep -Ec '^ +[123] +mirror-[123]\.img +OK, same as the source$' "$T/out")" -eq 3 ]
check "it prints the throughput" \
	has "^copied 4\.0 MiB to 3 mirrors in [0-9.]+ s: [0-9.]+ MiB/s$" "$T/out"
check "a summary line, not a bar, when stderr is not a terminal" \
	has "^dmio demo: copied 4\.0 MiB to 3 mirrors in" "$T/err"
check "no folder is left behind" [ -z "$(ls -A "$T/tmp")" ]

DMIO_BACKEND=threads TMPDIR="$T/tmp" run demo --size 1M
check "the demo passes on the thread-pool backend" status 0
check "... and says so" has "kcopyd on threads" "$T/out"

TMPDIR="$T/tmp" run demo --size 1M --keep
check "--keep exits 0" status 0
check "--keep says where" has "^kept the images in $T/tmp/dmio-demo-" "$T/out"
check "--keep keeps the four images" \
	[ "$(ls "$T"/tmp/dmio-demo-*/ | wc -l)" -eq 4 ]
rm -rf "${T:?}/tmp/"*

script -qec "TMPDIR='$T/tmp' '$DMIO' demo --size 16M" /dev/null >"$T/pty" 2>&1
check "on a terminal the demo exits 0" [ $? -eq 0 ]
check "... and draws the bar" grep -q "MiB/s  in" "$T/pty"

# Interrupted as soon as its folder appears: status 130, folder removed.
TMPDIR="$T/tmp" "$DMIO" demo --size 512M >"$T/out" 2>"$T/err" &
pid=$!
for _ in $(seq 500); do
	compgen -G "$T/tmp/dmio-demo-*" >/dev/null && break
	sleep 0.01
done
kill -INT $pid
wait $pid
rc=$?
check "Ctrl-C ends the demo with 130" status 130
check "... saying it cleaned up" has "interrupted; removed the images" "$T/err"
check "... and no folder is left behind" [ -z "$(ls -A "$T/tmp")" ]

done_testing

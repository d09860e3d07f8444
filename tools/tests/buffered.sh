#!/bin/bash
# --buffered copies to block devices write behind (tools/writeback.c): each
# job's stretch of every such destination is sent to write-back as the job
# completes and dropped from the page cache one job later, so that a copy
# to several devices does not hold them all in the cache until the final
# flush.  Seen through strace, as root (loop devices).  Files, and block
# devices opened O_DIRECT, get none of it.
. "$(dirname "$0")/lib.sh"

if ! is_root; then
	skip "write-behind to loop devices: needs root"
	done_testing
fi
if ! command -v strace >/dev/null; then
	skip "write-behind to loop devices: strace is not installed"
	done_testing
fi

# 8 MiB: eight jobs of 1 MiB (copy.c cuts a copy into about 32 jobs, of
# at least 1 MiB).
random_file "$T/src" 8M
truncate -s 10M "$T/a.img" "$T/b.img"
if ! new_loop A "$T/a.img" || ! new_loop B "$T/b.img"; then
	skip "write-behind to loop devices: losetup failed"
	done_testing
fi

# trace ARGS...: dmio ARGS under strace, its write-behind calls in $T/trace.
# LeakSanitizer cannot run under ptrace (it fails the exit now and then),
# so an ASan build's leak check is off here; the other tests keep it.
trace() {
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -y -qq -e trace=sync_file_range,fadvise64 -o "$T/trace" \
		"$DMIO" "$@" >"$T/out" 2>"$T/err"
	rc=$?
}

# stretches DEV CALL FLAG FIRST: the offsets, in MiB from FIRST, of CALL's
# FLAG calls on DEV, one 1 MiB stretch each, in order.
stretches() {
	grep -E "$2\([0-9]+<$1>, [0-9]+, 1048576, $3" "$T/trace" |
		sed -E "s|.*<$1>, ([0-9]+),.*|\1|" |
		while read -r off; do echo $(((off >> 20) - $4)); done | sort -n |
		tr '\n' ' '
}

trace copy -q --buffered "$T/src" "$A@1M" "$B" "$T/c.img"
check "a buffered copy to two loop devices and a file: exit 0" status 0
check "... the first device holds the source at 1 MiB" \
	cmp -n 8388608 "$T/src" "$A" 0 1048576
check "... the second at 0" cmp -n 8388608 "$T/src" "$B"
check "... and the file" cmp "$T/src" "$T/c.img"
want="0 1 2 3 4 5 6 7 "
got=$(stretches "$A" sync_file_range SYNC_FILE_RANGE_WRITE 1)
check "every stretch of the first device goes to write-back" \
	test "$got" = "$want"
got=$(stretches "$B" sync_file_range SYNC_FILE_RANGE_WRITE 0)
check "... and of the second" test "$got" = "$want"
# All but the stretch of the job that completed last (jobs run side by
# side, so it need not be the last one) leave the cache.
dropped() {
	local got

	got=$(stretches "$1" fadvise64 POSIX_FADV_DONTNEED "$2")
	[[ $(echo $got | tr ' ' '\n' | sort -u | grep -c '^[0-7]$') -eq 7 &&
		$(echo $got | wc -w) -eq 7 ]] || {
		echo "# dropped from the cache: $got"
		return 1
	}
}
check "seven of the eight stretches of the first device leave the cache" \
	dropped "$A" 1
check "... and of the second" dropped "$B" 0
check "the file gets no write-behind" \
	test "$(grep -c "c.img" "$T/trace")" = 0

trace copy -q "$T/src" "$A" "$B"
check "an O_DIRECT copy to the devices: exit 0" status 0
check "... gets no write-behind" test "$(grep -c loop "$T/trace")" = 0

done_testing

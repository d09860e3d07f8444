#!/bin/bash
# SIGKILL of dmio serve during writes.  With --log FILE the restart
# resyncs exactly the regions the log marks dirty (counted in the file),
# copying them from leg 0 over whatever the other leg holds; without a
# log it resyncs every region.  Afterwards the legs are identical.
. "$(dirname "$0")/lib.sh"
need fio python3

SIZE=$((64 << 20))
EXP=$(export_size $SIZE)
truncate -s $SIZE "$T/a" "$T/b"

# crash_during_writes: fio writes 4 MiB at 16 MiB for a while; the mirror
# dies by SIGKILL in the middle.
crash_during_writes() {
	fio --name=crash --ioengine=nbd --uri="$MURI" --rw=randwrite --bs=4k \
		--iodepth=16 --size=4M --offset=16M --time_based --runtime=30 \
		>"$T/fio.out" 2>&1 &
	local f=$!

	pids+=("$f")
	# fio may take a while to start on a busy machine: wait for writes.
	wait_for '.legs[0].writes > 200' >/dev/null
	kill -KILL "$MPID"
	wait "$MPID" 2>/dev/null
	wait "$f" 2>/dev/null
	return 0
}

mirror --log "$T/log" "$T/a" "$T/b" || { not_ok "mirror starts"; done_testing; }
wait_for '.state == "healthy"' >/dev/null
regions=$(st .regions)
crash_during_writes
dirty=$(log_dirty "$T/log")
check "the log file marks some regions dirty ($dirty of $regions)" \
	test "$dirty" -gt 0 -a "$dirty" -lt "$regions"
# What a crash can leave: leg 1 different in a dirty region (16 MiB is
# region 32, which fio was writing).
head -c 65536 /dev/urandom | dd of="$T/b" bs=64k seek=256 conv=notrunc status=none
check "leg 1 differs from leg 0 after the crash" legs_differ $EXP "$T/a" "$T/b"

mirror --log "$T/log" "$T/a" "$T/b" || { not_ok "mirror restarts"; done_testing; }
check "the restart resyncs" wait_for '.state == "healthy"'
check "exactly the $dirty logged regions were resynced" \
	test "$(st .resync.resynced_regions)" -eq "$dirty"
check "the legs are identical afterwards" same_legs $EXP "$T/a" "$T/b"
check "the status names the log file" test "$(st .log.path)" = "$T/log"

# Without a log nothing says which regions a crash left different.
stop_mirror
mirror "$T/a" "$T/b" || { not_ok "mirror starts"; done_testing; }
crash_during_writes
mirror "$T/a" "$T/b" || { not_ok "mirror restarts"; done_testing; }
check "with a core log the restart resyncs every region" \
	wait_for ".state == \"healthy\" and .resync.resynced_regions == $regions"
check "the legs are identical afterwards" same_legs $EXP "$T/a" "$T/b"
stop_mirror

done_testing

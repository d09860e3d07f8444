#!/bin/bash
# Faults while fio writes with crc32c verification at QD16 in four jobs:
# a remote leg's nbdkit is SIGKILLed, another is SIGSTOPped past the leg
# timeout, a local leg's tmpfs fills up (ENOSPC).  Each time fio finishes
# without an error, status shows the leg failed with the right errno and
# the dirty regions; the leg comes back (restarted, continued, replaced),
# is re-added, resynced, and every leg holds the bytes fio verifies again.
. "$(dirname "$0")/lib.sh"
need fio python3

SIZE=$((64 << 20))
EXP=$(export_size $SIZE)
JOB=$((8 << 20)) # per fio job; 4 jobs

# run_fio NAME [ARGS]: fio in the background; FIO is its pid.
run_fio() {
	local name=$1

	shift
	# shellcheck disable=SC2046
	fio --name="$name" $(fio_args $JOB) "$@" >"$T/fio-$name.out" 2>&1 &
	FIO=$!
	pids+=("$FIO")
}

fio_ok() {
	wait "$FIO" || {
		sed 's/^/# fio: /' "$T/fio-$1.out" | grep -Ei "err|verify" | head -n 5
		return 1
	}
	grep -q "err= 0" "$T/fio-$1.out"
}

# verify_again NAME: fio reads back and checks what job NAME wrote.
verify_again() {
	# shellcheck disable=SC2046
	fio --name="$1" $(fio_args $JOB) --verify_only >"$T/fio-$1-v.out" 2>&1 ||
		{ sed 's/^/# fio: /' "$T/fio-$1-v.out" | tail -n 5; return 1; }
}

# ---- SIGKILL of a remote leg's server ----
truncate -s $SIZE "$T/a"
mem_leg B b $SIZE
mirror --nosync --leg-timeout 2000 "$T/a" "$B_uri" || { not_ok "mirror starts"; done_testing; }
run_fio kill
wait_for '.legs[0].writes > 200' >/dev/null
kill -KILL "$B"
wait "$B" 2>/dev/null
check "SIGKILL of a leg's nbdkit: fio finishes, zero verify errors" fio_ok kill
check "status: leg 1 failed with ECONNRESET" test \
	"$(st '.legs[1].state + " " + .legs[1].errno')" = "failed ECONNRESET"
check "status: the mirror is degraded with dirty regions" test \
	"$(st '.state == "degraded" and .log.dirty_regions > 0')" = true
mem_leg B b $SIZE # a new, empty server on the same socket
"$DMIO" serve --add 1 "$CTL" >"$T/add.out"
check "re-add of the restarted leg: accepted" test $? -eq 0
check "an empty leg is resynced in full" grep -q "resyncing $(st .regions) of" "$T/add.out"
check "resync finishes" wait_for '.state == "healthy"'
check "both legs identical" same_legs $EXP "$T/a" "$B_uri"
check "fio verifies its data again" verify_again kill
stop_mirror
kill -KILL "$B"

# ---- SIGSTOP past the leg timeout ----
# One worker thread: nbdkit 1.32 aborts (connections.c raw_send_socket,
# "sock >= 0") when several of its threads reply on a connection the
# client has closed meanwhile, which is what a leg timeout does to a
# stopped server once it continues.
mem_leg B b $SIZE --threads=1
mirror --nosync --leg-timeout 1000 "$T/a" "$B_uri" || { not_ok "mirror starts"; done_testing; }
run_fio stop
wait_for '.legs[0].writes > 200' >/dev/null
kill -STOP "$B"
check "SIGSTOP of a leg's nbdkit: fio finishes, zero verify errors" fio_ok stop
check "status: leg 1 failed with ETIMEDOUT" test \
	"$(st '.legs[1].state + " " + .legs[1].errno')" = "failed ETIMEDOUT"
dirty=$(st '.log.dirty_regions')
kill -CONT "$B"
"$DMIO" serve --add 1 "$CTL" >"$T/add.out"
check "the continued leg is re-added" test $? -eq 0
check "it is resynced from the dirty log only ($dirty of $(st .regions) regions)" \
	grep -q "resyncing $dirty of" "$T/add.out"
check "resync finishes" wait_for '.state == "healthy"'
check "both legs identical" same_legs $EXP "$T/a" "$B_uri"
check "fio verifies its data again" verify_again stop
stop_mirror

# ---- ENOSPC on a small tmpfs ----
if [[ $(id -u) -ne 0 ]]; then
	skip "ENOSPC on a small tmpfs needs root to mount it"
	done_testing
fi
mkdir "$T/small"
if ! mount -t tmpfs -o size=8m tmpfs "$T/small"; then
	skip "cannot mount a tmpfs here"
	done_testing
fi
mounts+=("$T/small")
truncate -s $SIZE "$T/small/c"
mirror --nosync "$T/a" "$T/small/c" || { not_ok "mirror starts"; done_testing; }
run_fio full
check "ENOSPC on a leg: fio finishes, zero verify errors" fio_ok full
check "status: leg 1 failed with ENOSPC" test \
	"$(st '.legs[1].state + " " + .legs[1].errno')" = "failed ENOSPC"
"$DMIO" serve --remove 1 "$CTL" >/dev/null
check "the full leg is removed" test "$(st '.legs | length')" -eq 1
truncate -s $SIZE "$T/c2"
"$DMIO" serve --add "$T/c2" "$CTL" >/dev/null
check "a replacement leg is added" test $? -eq 0
check "resync finishes" wait_for '.state == "healthy"'
check "both legs identical" same_legs $EXP "$T/a" "$T/c2"
check "fio verifies its data again" verify_again full
stop_mirror

done_testing

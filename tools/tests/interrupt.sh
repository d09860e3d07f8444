#!/bin/bash
# SIGINT and SIGTERM in dmio copy, zero and verify (issue 11): no new jobs,
# the I/O in flight drains, the destinations are flushed, the report says
# how far each destination is correct, and the status is 128 + the signal.
# A real signal goes to a running command made slow by a fault: delay; the
# test waits for dmio to have installed its handler (/proc/PID/status)
# rather than for a time.
. "$(dirname "$0")/lib.sh"

random_file "$T/src" 64M
slow="fault:delay=300:$T/src"

# start ARGS...: run dmio in the background, its pid in $pid.
start() {
	"$DMIO" "$@" >"$T/out" 2>"$T/err" &
	pid=$!
}

# caught SIG: dmio ($pid) catches signal number SIG; waits up to 10 s.
caught() {
	local i mask

	for ((i = 0; i < 200; i++)); do
		mask=$(awk '/^SigCgt:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
		[[ -n $mask ]] && (((16#$mask >> ($1 - 1)) & 1)) && return 0
		sleep 0.05
	done
	echo "# dmio never caught signal $1"
	return 1
}

# written FILE: wait until some of the copy has landed in FILE (up to 30 s),
# so that jobs are in flight when the signal comes.
written() {
	local i

	for ((i = 0; i < 600; i++)); do
		[[ -e $1 && $(stat -c %b "$1") -gt 0 ]] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# stop SIG: send SIG to dmio once it catches it, and wait for it.
stop() {
	caught "$1"
	kill "-$1" "$pid"
	wait "$pid"
	rc=$?
}

# ---- copy, SIGINT ----
start copy "$slow" "$T/a" "$T/b" "$T/c"
written "$T/a"
stop 2
check "an interrupted copy exits 130" status 130
check "... says it was interrupted, and how far it read" \
	has "interrupted after reading [0-9.]+ [KMG]?i?B of 64.0 MiB" "$T/err"
check "... stderr ends with a newline" \
	[ "$(tail -c 1 "$T/err" | od -An -c | tr -d ' ')" = '\n' ]
check "... every row says up to where it is correct" \
	[ "$(grep -cE 'INTERRUPTED: (correct up to sector [0-9]+|nothing copied)$' "$T/out")" -eq 3 ]
good=$(sed -nE 's|.*/a +INTERRUPTED: correct up to sector ([0-9]+)$|\1|p' "$T/out")
check "... after some of the copy and short of all" \
	test "${good:-0}" -gt 0 -a "${good:-0}" -lt 131072
check "... and that much of the destination is the source" \
	cmp -n $((good * 512)) "$T/src" "$T/a"

# ---- copy, SIGTERM, JSON ----
rm -f "$T/a"
start copy --json "$slow" "$T/a"
written "$T/a"
stop 15
check "SIGTERM exits 143" status 143
check "--json says interrupted, with the exit status" json \
	"j['interrupted'] and j['exit'] == 143 and
	 j['destinations'][0]['correct_to'] * 512 <= j['bytes_read'] < 64 << 20"
good=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["destinations"][0]["correct_to"])' "$T/out")
check "... and correct_to sectors of it are the source" \
	cmp -n $((good * 512)) "$T/src" "$T/a"

# ---- zero and verify ----
cp "$T/src" "$T/z"
start zero "fault:delay=300:$T/z"
stop 2
check "an interrupted zero exits 130" status 130
check "... and says how far it zeroed" \
	has "interrupted after zeroing" "$T/err"
check "... in its row" has "INTERRUPTED: (correct up to sector [0-9]+|nothing copied)$" \
	"$T/out"

start verify "$slow" "$T/src"
stop 2
check "an interrupted verify exits 130" status 130
check "... and says how far it compared" \
	has "interrupted after comparing the first [0-9]+ sectors" "$T/err"

done_testing

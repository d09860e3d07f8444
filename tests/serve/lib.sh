# lib.sh - sourced by the dmio serve tests.  Each test gets a private
# folder in /dev/shm; every server it starts (nbdkit legs, the mirror) is
# killed and every mount undone on exit, pass or fail.  Results are TAP
# lines that meson counts; a missing tool skips with the reason.
#
# Environment: DMIO (the dmio binary), DMIO_NBDKIT_PLUGIN (the plugin).

set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
: "${DMIO:?set DMIO to the dmio binary under test}"
: "${DMIO_NBDKIT_PLUGIN:?set DMIO_NBDKIT_PLUGIN to nbdkit-dmio-plugin.so}"
export DMIO_NBDKIT_PLUGIN

T=$(mktemp -d /dev/shm/dmio-serve.XXXXXX) || exit 1
pids=()
mounts=()
loops=()

cleanup() {
	local p m l

	for p in "${pids[@]}"; do
		kill -CONT "$p" 2>/dev/null
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for m in "${mounts[@]}"; do
		umount -l "$m" 2>/dev/null
	done
	for l in "${loops[@]}"; do
		losetup -d "$l" 2>/dev/null
	done
	[[ -n ${KEEP:-} ]] && echo "# kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

done_testing() {
	if [[ -n ${DMIO_SERVE_PRELOAD:-} && -f $T/mirror.err ]]; then
		if grep -Eq "Sanitizer|runtime error" "$T/mirror.err"; then
			grep -E -A12 "Sanitizer|runtime error" "$T/mirror.err" |
				sed 's/^/# /' | head -n 40
			not_ok "the server ran clean under the sanitizers"
		else
			ok "the server ran clean under the sanitizers"
		fi
	fi
	tap_plan
	exit
}

# need TOOL...: skip the whole script, with the reason, when one is missing.
need() {
	local t

	for t in "$@"; do
		if ! command -v "$t" >/dev/null; then
			echo "1..0 # SKIP $t is not installed"
			exit 0
		fi
	done
}

need nbdkit nbdinfo jq

uri() {
	echo "nbd+unix:///?socket=$1"
}

# wait_socket PATH PID: until a server on PATH answers, or PID is gone.
wait_socket() {
	local i

	for ((i = 0; i < 300; i++)); do
		[[ -S $1 ]] && nbdinfo --size "$(uri "$1")" >/dev/null 2>&1 &&
			return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# mem_leg VAR NAME SIZE [NBDKIT-OPTION...]: an nbdkit memory export on
# $T/NAME.sock; its pid goes in VAR and the cleanup list, its URI in
# ${VAR}_uri.
mem_leg() {
	local var=$1 name=$2 sock=$T/$2.sock size=$3 pid

	shift 3
	rm -f "$sock"
	nbdkit -f -U "$sock" "$@" memory size="$size" 2>>"$T/$name.err" &
	pid=$!
	pids+=("$pid")
	printf -v "$var" %s "$pid"
	printf -v "${var}_uri" %s "$(uri "$sock")"
	wait_socket "$sock" "$pid"
}

# mirror ARGS...: start "dmio serve --socket $T/m.sock ARGS" (stderr in
# $T/mirror.err); MPID is its pid (nbdkit's: serve execs it), MURI its
# URI, CTL its control socket.
mirror() {
	MSOCK=$T/m.sock
	CTL=$MSOCK.ctl
	MURI=$(uri "$MSOCK")
	# env execs dmio, which execs nbdkit: $! stays the server's pid.
	env ${DMIO_SERVE_PRELOAD:+LD_PRELOAD="$DMIO_SERVE_PRELOAD"} \
		"$DMIO" serve --socket "$MSOCK" "$@" 2>>"$T/mirror.err" &
	MPID=$!
	pids+=("$MPID")
	wait_socket "$MSOCK" "$MPID" || {
		sed 's/^/# mirror: /' "$T/mirror.err" | tail -n 5
		return 1
	}
}

# stop_mirror: SIGTERM, a clean shutdown; waits for it.  With a
# sanitizer runtime preloaded into the (uninstrumented) nbdkit, its exit()
# sometimes hangs after the plugin is gone, in p11-kit's destructor
# (freelocale waiting on glibc's locale lock): there, a server still
# alive after 30 s is killed with a note.  The plain build waits for ever,
# so a real hang fails the test by its time limit.
stop_mirror() {
	local i

	kill -TERM "$MPID" 2>/dev/null
	if [[ -n ${DMIO_SERVE_PRELOAD:-} ]]; then
		for ((i = 0; i < 300; i++)); do
			kill -0 "$MPID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$MPID" 2>/dev/null; then
			echo "# the server did not exit within 30 s under the preloaded sanitizer; killed"
			kill -KILL "$MPID" 2>/dev/null
		fi
	fi
	wait "$MPID" 2>/dev/null
	return 0
}

status_json() {
	"$DMIO" serve --status --json "$CTL"
}

# st JQ: the value of a jq expression over the status.
st() {
	status_json | jq -r "$1"
}

# wait_for JQ [SECONDS]: until the jq expression over the status is true.
wait_for() {
	local i limit=$((${2:-60} * 10))

	for ((i = 0; i < limit; i++)); do
		[[ $(status_json 2>/dev/null | jq -r "$1" 2>/dev/null) == true ]] &&
			return 0
		sleep 0.1
	done
	echo "# timed out waiting for: $1"
	"$DMIO" serve --status "$CTL" | sed 's/^/# /'
	return 1
}

# same_legs BYTES LEG...: every leg holds the same first BYTES as the
# first one (dmio verify, which reads files and NBD exports alike).
same_legs() {
	local bytes=$1 first=$2 l

	shift 2
	for l in "$@"; do
		"$DMIO" verify -q "$first@0+$((bytes / 512))" "$l" >"$T/verify.out" 2>&1 || {
			sed 's/^/# /' "$T/verify.out"
			return 1
		}
	done
}

legs_differ() {
	! same_legs "$@" >/dev/null
}

# same_file A B: byte-identical.
same_file() {
	cmp "$1" "$2" >/dev/null || {
		echo "# $1 and $2 differ: $(cmp "$1" "$2" 2>&1 | head -n 1)"
		return 1
	}
}

# Mirror of $2-byte legs loses 4 KiB to the superblock.
export_size() {
	echo $(($1 - 4096))
}

fio_args() {
	# Each job writes its own slice, so that verification is exact.
	echo --ioengine=nbd --uri="$MURI" --rw=randwrite --bs=4k \
		--iodepth=16 --numjobs=4 --size="$1" --offset_increment="$1" \
		--verify=crc32c --verify_fatal=1 --randrepeat=1 --group_reporting
}

# log_dirty FILE: the number of regions the on-disk log marks dirty.
log_dirty() {
	python3 - "$1" <<'EOF'
import sys
d = open(sys.argv[1], 'rb').read()[4096:]
print(sum(bin(b).count('1') for b in d))
EOF
}

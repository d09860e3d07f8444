# lib.sh - sourced by the dmio command-line tests.  Each test gets a
# private folder in /dev/shm, removed on exit with every loop device and
# mount it made; results are TAP lines that meson counts, and root-only
# checks skip with the reason when not root.
#
# Environment: DMIO, the dmio binary under test.

set -u
. "$(dirname "${BASH_SOURCE[0]}")/../../tests/lib/tap.sh"
: "${DMIO:?set DMIO to the dmio binary under test}"

T=$(mktemp -d /dev/shm/dmio-cli.XXXXXX) || exit 1
loops=()
mounts=()

cleanup() {
	local m l

	for m in "${mounts[@]}"; do
		umount "$m"
	done
	for l in "${loops[@]}"; do
		blockdev --setrw "$l" 2>/dev/null
		losetup -d "$l"
	done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run ARGS...: run dmio; stdout lands in $T/out, stderr in $T/err, and the
# exit status in $rc.
run() {
	"$DMIO" "$@" >"$T/out" 2>"$T/err"
	rc=$?
}

# status N: the last run exited with N; otherwise show what it printed.
status() {
	[[ $rc -eq $1 ]] && return 0
	echo "# expected exit status $1, got $rc"
	sed 's/^/# stderr: /' "$T/err" | head -n 5
	sed 's/^/# stdout: /' "$T/out" | head -n 5
	return 1
}

# json EXPR: the last run printed one JSON object j for which the Python
# expression EXPR holds.
json() {
	python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' "$T/out" "$1" || {
		echo "# JSON: $(head -c 600 "$T/out")"
		return 1
	}
}

# one_line FILE: FILE holds exactly one line.
one_line() {
	[[ $(wc -l <"$1") -eq 1 ]] || {
		sed 's/^/# /' "$1" | head -n 5
		return 1
	}
}

# size_is FILE BYTES
size_is() {
	[[ $(stat -c %s "$1") -eq $2 ]] || {
		echo "# $1 is $(stat -c %s "$1") bytes, not $2"
		return 1
	}
}

# has PATTERN FILE: an extended regular expression matches a line of FILE.
has() {
	grep -Eq -- "$1" "$2" || {
		echo "# no line matches: $1"
		sed 's/^/# /' "$2" | head -n 8
		return 1
	}
}

absent() {
	[[ ! -e $1 ]]
}

random_file() {
	head -c "$2" /dev/urandom >"$1"
}

is_root() {
	[[ $(id -u) -eq 0 ]]
}

# new_loop VAR FILE [LOSETUP OPTIONS]: attach FILE, remember the device
# for the cleanup, and store its name in VAR.
new_loop() {
	local var=$1 dev

	shift
	dev=$(losetup -f --show "$@") || return 1
	loops+=("$dev")
	printf -v "$var" %s "$dev"
}

done_testing() {
	tap_plan
	exit
}

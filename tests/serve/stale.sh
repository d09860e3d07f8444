#!/bin/bash
# A stale leg never wins.  A leg left out while the other took writes is
# resynced from the newer leg when it comes back, even named first, and
# reads never return its stale data, not even during the resync.  Legs
# that both took writes the other lacks (split brain) stop dmio serve
# until --primary names the one to keep.
. "$(dirname "$0")/lib.sh"
need qemu-img nbdcopy

SIZE=$((32 << 20))
EXP=$(export_size $SIZE)
truncate -s $SIZE "$T/a" "$T/b"
for i in 1 2 3 4; do
	head -c "$EXP" /dev/urandom >"$T/data$i"
done

# write_and_stop N LEG...: a mirror of the legs gets data N, then stops.
write_and_stop() {
	local d=$1

	shift
	mirror "$@" || return 1
	wait_for '.resync.running == false' >/dev/null &&
		qemu-img convert -n -f raw -O raw "$T/data$d" "$MURI"
	local r=$?
	stop_mirror
	return $r
}

# reads_are N: the export reads back as data N.
reads_are() {
	nbdcopy "$MURI" "$T/back" && same_file "$T/data$1" "$T/back"
}

check "a mirror of a and b takes data 1" write_and_stop 1 "$T/a" "$T/b"
check "a alone takes data 2 (b is stopped)" write_and_stop 2 "$T/a"
mirror --resync-rate 2M "$T/b" "$T/a" || { not_ok "b comes back"; done_testing; }
check "b comes back first in line: it is the one resynced" test \
	"$(st '[.legs[].state] | join(" ")')" = "resyncing in-sync"
check "reads during the resync return a's newer data" reads_are 2
"$DMIO" serve --set-rate 0 "$CTL" >/dev/null
check "the resync finishes" wait_for '.state == "healthy"'
check "reads return data 2" reads_are 2
check "b now holds a's data" same_legs $EXP "$T/a" "$T/b"
stop_mirror

check "a alone takes data 3" write_and_stop 3 "$T/a"
check "b alone takes data 4" write_and_stop 4 "$T/b"
: >"$T/mirror.err"
mirror "$T/a" "$T/b"
check "split brain: dmio serve refuses to start" test $? -ne 0
check "and says why" grep -q "split brain" "$T/mirror.err"
check "and changes neither leg (a still holds data 3)" \
	cmp -n "$EXP" "$T/a" "$T/data3"
mirror --primary 1 "$T/a" "$T/b" || { not_ok "--primary starts it"; done_testing; }
check "--primary 1: reads return b's data" reads_are 4
check "a is resynced from b" wait_for '.state == "healthy"'
check "both legs hold b's data" same_legs $EXP "$T/b" "$T/a"
stop_mirror

done_testing

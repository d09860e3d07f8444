#!/bin/bash
# Reads fail over: a read error on one leg is retried on another before
# the client sees it, and the leg is marked failed with its errno; reads
# keep working when the leg being read from dies in the middle of a run.
. "$(dirname "$0")/lib.sh"
need fio qemu-io

SIZE=$((32 << 20))
EXP=$(export_size $SIZE)

# A leg whose first 4 KiB cannot be read (libdmio's fault: wrapper).
truncate -s $SIZE "$T/a" "$T/b"
mirror --nosync "fault:fail-reads=0+8,errno=EIO:$T/a" "$T/b" ||
	{ not_ok "mirror starts"; done_testing; }
qemu-io -f raw -c 'read -P 0 0 4k' -c 'read -P 0 0 4k' -c 'read -P 0 0 4k' \
	"$MURI" >"$T/qio.out" 2>&1
check "reads of a block one leg cannot read succeed" test $? -eq 0 -a \
	"$(grep -c '^read 4096/4096' "$T/qio.out")" -eq 3
check "status: that leg failed with EIO" test \
	"$(st '.legs[0].state + " " + .legs[0].errno')" = "failed EIO"
check "the other leg served the reads" test "$(st '.legs[1].reads')" -ge 2
stop_mirror

# The leg being read from dies while fio reads and verifies.
mem_leg A a $SIZE
mirror --nosync --leg-timeout 2000 "$A_uri" "$T/b" || { not_ok "mirror starts"; done_testing; }
args="--ioengine=nbd --uri=$MURI --rw=randwrite --bs=64k --iodepth=16 --numjobs=2
	--size=8M --offset_increment=8M --verify=crc32c --verify_fatal=1 --randrepeat=1"
# shellcheck disable=SC2086
fio --name=fill $args >"$T/fill.out" 2>&1
check "fio writes its data" test $? -eq 0
r0=$(st '[.legs[].reads] | add')
# One verifying pass takes well under a second, so passes run back to
# back until the leg has died and been marked failed: the kill lands in
# the middle of reading, whatever the machine's speed.
(
	for ((i = 0; i < 600; i++)); do
		# shellcheck disable=SC2086
		fio --name=fill $args --verify_only >"$T/read.out" 2>&1 || exit 1
		[[ -e $T/stop ]] && exit 0
	done
	exit 2
) &
f=$!
pids+=("$f")
wait_for "[.legs[].reads] | add > $r0 + 20" >/dev/null
kill -KILL "$A"
wait_for '.legs[0].state == "failed"' 30 >/dev/null
touch "$T/stop"
wait "$f"
check "fio's verifying reads finish with no error after leg 0 died" test $? -eq 0
check "status: leg 0 failed, leg 1 in sync" test \
	"$(st '[.legs[].state] | join(" ")')" = "failed in-sync"
# shellcheck disable=SC2086
fio --name=fill $args --verify_only >"$T/read2.out" 2>&1
check "the data still verifies, from leg 1 alone" test $? -eq 0
stop_mirror

done_testing

#!/bin/bash
# Destinations that fail for real, as root: a read-only loop device and a
# full tmpfs.  The others still receive everything; the table and JSON
# say which failed and why; the exit status is 1.
. "$(dirname "$0")/lib.sh"

if ! is_root; then
	skip "a read-only loop device and a full tmpfs: need root"
	done_testing
fi

random_file "$T/src" 4M

truncate -s 4M "$T/ro.img"
if new_loop L "$T/ro.img" && blockdev --setro "$L"; then
	run copy "$T/src" "$T/ok1" "$L"
	check "a read-only block device fails: exit 1" status 1
	check "... the healthy destination is complete" cmp "$T/src" "$T/ok1"
	check "... and the table says why" \
		has "^ +2 +$L +FAILED: (Operation not permitted|Read-only file system)$" \
		"$T/out"
	check "... and the summary counts what each one received" \
		has "read 4.0 MiB from the source, wrote 4.0 MiB, 0 B to the 2 destinations" \
		"$T/err"
	run copy --json "$T/src" "$T/ok1" "$L"
	check "--json: the read-only device's errno" json \
		"[d['ok'] for d in j['destinations']] == [True, False] and
		 j['destinations'][1]['errno'] in (1, 30) and j['exit'] == 1"
	check "--json: bytes read, and written to each" json \
		"j['bytes_read'] == 4194304 and
		 [d['bytes_written'] for d in j['destinations']] == [4194304, 0]"
	run copy --truncate "$T/src" "$L"
	check "--truncate refuses a block device: exit 2" status 2
	run zero "$L@0+8"
	check "zeroing a read-only device exits 1" status 1
else
	skip "read-only loop device: losetup or blockdev failed"
fi

mkdir "$T/mnt"
if mount -t tmpfs -o size=1M dmio-cli-full "$T/mnt"; then
	mounts+=("$T/mnt")
	run copy "$T/src" "$T/ok2" "$T/mnt/full"
	check "a full file system fails: exit 1" status 1
	check "... the healthy destination is complete" cmp "$T/src" "$T/ok2"
	check "... and the table says ENOSPC" \
		has "^ +2 +$T/mnt/full +FAILED: No space left on device$" "$T/out"
	rm -f "$T/mnt/full"
	run copy --json "$T/src" "$T/ok2" "$T/mnt/full"
	check "--json: errno 28" json \
		"j['destinations'][1]['errno'] == 28 and j['exit'] == 1"
	rm -f "$T/mnt/full"
	run copy --stop-on-error "$T/src" "$T/mnt/full" "$T/ok3"
	check "--stop-on-error stops there: exit 1" status 1
	check "... and the other destination is reported incomplete" \
		has "ok3 +INCOMPLETE: (nothing copied|correct up to sector [0-9]+)$" \
		"$T/out"
else
	skip "full tmpfs: mount failed"
fi

done_testing

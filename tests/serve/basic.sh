#!/bin/bash
# dmio serve with real clients: nbdinfo sees the size, block sizes and
# flags; qemu-img convert writes an image, nbdcopy --flush reads it back
# byte-identical and every leg holds it; write-zeroes and trim reach every
# leg; a first start syncs the legs, a clean restart resyncs nothing.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io nbdcopy python3

SIZE=$((64 << 20))
EXP=$(export_size $SIZE)
head -c $SIZE /dev/urandom >"$T/a" # different from b: the first sync copies a
truncate -s $SIZE "$T/b"
mem_leg C c $SIZE || not_ok "nbdkit memory leg starts"

if ! mirror "$T/a" "$T/b" "$C_uri"; then
	not_ok "dmio serve starts with a file, a file and an NBD leg"
	done_testing
fi
ok "dmio serve starts with a file, a file and an NBD leg"

nbdinfo --json "$MURI" >"$T/info.json"
check "nbdinfo: size is the smallest leg less the 4 KiB superblock" \
	test "$(jq '.exports[0]."export-size"' "$T/info.json")" -eq $EXP
for f in can_flush can_fua can_trim can_zero can_multi_conn; do
	check "nbdinfo: $f" test "$(jq ".exports[0].$f" "$T/info.json")" = true
done
check "nbdinfo: writable" test "$(jq '.exports[0].is_read_only' "$T/info.json")" = false
check "nbdinfo: block sizes 512 / 4096" test \
	"$(jq -c '[.exports[0].block_size_minimum, .exports[0].block_size_preferred]' \
		"$T/info.json")" = "[512,4096]"

check "the first start copies leg 0 to the others" \
	wait_for '.state == "healthy" and .resync.resynced_regions == .regions'
check "after the first sync the legs are identical" \
	same_legs $EXP "$T/a" "$T/b" "$C_uri"

head -c $((40 << 20)) /dev/urandom >"$T/img"
check "qemu-img convert -n onto the export" \
	qemu-img convert -n -f raw -O raw "$T/img" "$MURI"
check "nbdcopy --flush reads it back" nbdcopy --flush "$MURI" "$T/back"
cmp -n $((40 << 20)) "$T/img" "$T/back" >/dev/null
check "the copy back is byte-identical" test $? -eq 0
check "every leg holds the same bytes" same_legs $EXP "$T/a" "$T/b" "$C_uri"
check "status: three legs in sync, each written" test "$(st \
	'[.legs[] | select(.state == "in-sync" and .writes > 0)] | length')" -eq 3
check "status: reads spread over the legs (round-robin)" test "$(st \
	'[.legs[] | select(.reads > 0)] | length')" -ge 2

qemu-io -f raw -c 'write -z 1M 1M' -c 'discard 5M 2M' -c 'write -P 0x5a 8M 4k' \
	"$MURI" >/dev/null
nbdcopy "$MURI" "$T/back2"
python3 - "$T/back2" <<'EOF'
import sys
d = open(sys.argv[1], 'rb').read()
ok = d[1 << 20:2 << 20] == bytes(1 << 20) and d[5 << 20:7 << 20] == bytes(2 << 20) \
    and d[8 << 20:(8 << 20) + 4096] == b'\x5a' * 4096
sys.exit(0 if ok else 1)
EOF
check "write-zeroes and trim read back as zeroes" test $? -eq 0
check "and reach every leg alike" same_legs $EXP "$T/a" "$T/b" "$C_uri"

"$DMIO" serve --status "$CTL" >"$T/status.txt"
check "status (text) names the legs and their state" \
	grep -Eq "^leg 2: nbd\+unix.* in-sync" "$T/status.txt"

stop_mirror
mirror "$T/a" "$T/b" "$C_uri"
check "a clean restart resyncs nothing" test "$(st '.resync.resynced_regions')" -eq 0
check "and keeps the data" nbdcopy "$MURI" "$T/back3"
same_file "$T/back2" "$T/back3"
check "the data after the restart is the data before" test $? -eq 0
stop_mirror

"$DMIO" serve >"$T/out" 2>"$T/err"
check "no legs: exit status 2" test $? -eq 2
"$DMIO" serve --port 99999 "$T/a" >"$T/out" 2>"$T/err"
check "a bad --port: exit status 2, one line" test $? -eq 2 -a "$(wc -l <"$T/err")" -eq 1
"$DMIO" serve --status "$T/nothing.ctl" >"$T/out" 2>"$T/err"
check "--status on no server: exit status 2" test $? -eq 2
"$DMIO" serve --socket "$T/x.sock" "$T/missing-leg" 2>"$T/err"
check "a mirror whose every leg is missing does not start" test $? -ne 0

done_testing

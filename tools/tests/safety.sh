#!/bin/bash
# dmio copy and data safety (issue 11): overlapping regions of one file are
# copied as memmove() would, the same destination twice is refused, a
# source read error never writes zeroes unless --noerror asks, the counts
# say what was read and written, and a larger destination keeps its tail
# (or ends with the copy under --truncate).
. "$(dirname "$0")/lib.sh"

# sectors_equal A B FROM COUNT: sectors [FROM, FROM+COUNT) of A and B match.
sectors_equal() {
	cmp -s -i $(($3 * 512)):$(($3 * 512)) -n $(($4 * 512)) "$1" "$2" || {
		echo "# $1 and $2 differ in sectors $3..$(($3 + $4 - 1))"
		return 1
	}
}

# ---- overlapping source and destination on one file ----
random_file "$T/orig" 96M
cp "$T/orig" "$T/s.img"
run copy "$T/s.img@0+64M" "$T/s.img@32M"
check "a destination 32 MiB above its source exits 0" status 0
check "... and holds the source as it was" \
	cmp -n 64M "$T/orig" <(tail -c +$((32 * 1048576 + 1)) "$T/s.img")
check "... below the destination nothing changed" \
	sectors_equal "$T/orig" "$T/s.img" 0 65536

cp "$T/orig" "$T/s.img"
run copy "$T/s.img@0+1M" "$T/s.img@1"
check "one sector above, 1 MiB: exits 0" status 0
check "... and holds the source as it was" \
	cmp -n 1M "$T/orig" <(tail -c +513 "$T/s.img")

cp "$T/orig" "$T/s.img"
run copy "$T/s.img@32M+64M" "$T/s.img@0"
check "a destination below its source exits 0" status 0
check "... and holds the source as it was" \
	cmp -n 64M <(tail -c +$((32 * 1048576 + 1)) "$T/orig") "$T/s.img"

cp "$T/orig" "$T/s.img"
run copy "fault:delay=1:$T/./s.img@0+4M" "$T/s.img@8"
check "the same file under another name and a fault: layer is seen" \
	cmp -n 4M "$T/orig" <(tail -c +4097 "$T/s.img")

cp "$T/orig" "$T/s.img"
run copy "$T/s.img@1M+1M" "$T/s.img@512K" "$T/s.img@1536K"
check "overlapping the source from both sides exits 2" status 2
check "... in one line" one_line "$T/err"
check "... writing nothing" cmp "$T/orig" "$T/s.img"

run copy "$T/s.img" "$T/s.img"
check "a copy onto itself exits 0" status 0
check "... and changes nothing" cmp "$T/orig" "$T/s.img"

# ---- the same destination twice ----
random_file "$T/src" 10M # 20480 sectors
run copy "$T/src" "$T/new.img" "$T/./new.img"
check "a new destination named twice exits 2" status 2
check "... saying so in one line" has "same device" "$T/err"
check "... and creates nothing" absent "$T/new.img"
random_file "$T/ex.img" 10M
cp "$T/ex.img" "$T/ex.orig"
mkdir -p "$T/x"
run copy "$T/src" "$T/ex.img" "$T/x/../ex.img"
check "an existing destination named twice exits 2" status 2
check "... and is not written" cmp "$T/ex.orig" "$T/ex.img"
run copy "$T/src@0+8" "$T/ex.img@0" "$T/ex.img@4"
check "overlapping regions of one destination exit 2" status 2
run copy "$T/src@0+8" "$T/ex.img@0" "$T/ex.img@8"
check "regions of one destination side by side are fine" status 0

# ---- a source read error ----
# every_sector_from OUT SRC OLD: each sector of OUT is SRC's or OLD's.
every_sector_from() {
	python3 - "$@" <<'PY' || return 1
import sys
out, src, old = (open(p, 'rb').read() for p in sys.argv[1:4])
for i in range(0, len(out), 512):
    if out[i:i + 512] not in (src[i:i + 512], old[i:i + 512]):
        print("# sector %d is neither the source's nor the old data" % (i // 512))
        sys.exit(1)
PY
}
random_file "$T/keep.img" 10M
cp "$T/keep.img" "$T/keep.orig"
run copy "fault:fail-reads=1000+8:$T/src@0+10M" "$T/keep.img"
check "a source read error exits 2" status 2
check "... the copy before it is there" sectors_equal "$T/src" "$T/keep.img" 0 1000
check "... the unreadable sectors kept their data" \
	sectors_equal "$T/keep.orig" "$T/keep.img" 1000 8
check "... and no sector got anything but source data or its own" \
	every_sector_from "$T/keep.img" "$T/src" "$T/keep.orig"
check "... the table says how far the destination is correct" \
	has "^ +1 +$T/keep.img +INCOMPLETE: correct up to sector 1000$" "$T/out"
check "... and which source sectors failed" \
	has "^source sectors 1000-1007: unreadable, the copy stopped there$" "$T/out"
check "... stderr says where reading failed" \
	has "failed at sector 1000: Input/output error" "$T/err"

cp "$T/keep.orig" "$T/keep.img"
run copy --json "fault:fail-reads=1000+8:$T/src@0+10M" "$T/keep.img"
check "--json: the unreadable range, not zeroed, and what was read" json \
	"j['unreadable'] == [{'sector': 1000, 'count': 8}] and
	 not j['unreadable_zeroed'] and j['exit'] == 2 and
	 j['bytes_read'] >= 1000 * 512 and
	 j['destinations'][0]['bytes_written'] == j['bytes_read'] and
	 j['destinations'][0]['correct_to'] == 1000"

cp "$T/keep.orig" "$T/keep.img"
run copy --noerror "fault:fail-reads=1000+8,fail-reads=5000+16:$T/src" \
	"$T/keep.img"
check "--noerror with unreadable blocks exits 2" status 2
check "... zeroes exactly the unreadable sectors" \
	cmp -n 4096 -i 512000 "$T/keep.img" /dev/zero
check "... the second range too" cmp -n 8192 -i 2560000 "$T/keep.img" /dev/zero
check "... and copies the rest" python3 -c '
import sys
a, s = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
bad = set(range(1000, 1008)) | set(range(5000, 5016))
sys.exit(any(a[i*512:(i+1)*512] != s[i*512:(i+1)*512]
	    for i in range(len(s) // 512) if i not in bad))' "$T/keep.img" "$T/src"
check "... the table lists both ranges" \
	has "^source sectors 5000-5015: unreadable, written as zeroes$" "$T/out"
check "... the destination itself is OK" has "^ +1 +$T/keep.img +OK$" "$T/out"
run copy --json --noerror "fault:fail-reads=1000+8,fail-reads=5000+16:$T/src" \
	"$T/keep.img"
check "--noerror --json: every range, zeroed, all written" json \
	"j['unreadable'] == [{'sector': 1000, 'count': 8},
			     {'sector': 5000, 'count': 16}] and
	 j['unreadable_zeroed'] and j['exit'] == 2 and
	 j['bytes_read'] == 10485760 - 24 * 512 and
	 j['destinations'][0]['bytes_written'] == 10485760"
run copy --noerror --stop-on-error "$T/src" "$T/ne.img"
check "--noerror with --stop-on-error is a usage error" status 2
check "... creating nothing" absent "$T/ne.img"

run copy --stop-on-error "fault:fail-reads=all:$T/src@0+10M" "$T/new3.img"
check "an unreadable source with --stop-on-error exits 2" status 2
check "... and leaves no new file behind" absent "$T/new3.img"
run copy --json "fault:fail-reads=all:$T/src@0+1M" "$T/new4.img"
check "an unreadable source counts nothing read or written" json \
	"j['bytes'] == 0 and j['bytes_read'] == 0 and
	 j['destinations'][0]['bytes_written'] == 0 and j['exit'] == 2"
check "... says so on the summary line" \
	has "read 0 B from the source, wrote 0 B to the destination" "$T/err"
check "... and leaves no new file behind" absent "$T/new4.img"

# ---- counts with one failing destination ----
truncate -s 10M "$T/bad"
run copy "$T/src" "$T/good" "fault:fail-writes=all:$T/bad"
check "the summary counts each destination's writes" \
	has "read 10.0 MiB from the source, wrote 10.0 MiB, 0 B to the 2 destinations" \
	"$T/err"

# ---- a larger destination, --truncate ----
random_file "$T/big.img" 2M
cp "$T/big.img" "$T/big.orig"
head -c 1M "$T/src" >"$T/src1"
run copy "$T/src1" "$T/big.img"
check "a larger destination keeps its size" size_is "$T/big.img" 2097152
check "... and its tail" sectors_equal "$T/big.orig" "$T/big.img" 2048 2048
run verify "$T/src1" "$T/big.img"
check "verify compares only the source's length: same" status 0
run verify --json "$T/src1" "$T/big.img"
check "... 1 MiB of it" json "j['bytes'] == 1048576"

cp "$T/big.orig" "$T/big.img"
run copy --truncate "$T/src1" "$T/big.img"
check "--truncate exits 0" status 0
check "... and ends the file with the copy" cmp "$T/src1" "$T/big.img"
cp "$T/big.orig" "$T/big.img"
run copy --truncate "$T/src1" "$T/big.img@8"
check "--truncate at @8 ends the file at 4 KiB + the copy" \
	size_is "$T/big.img" $((4096 + 1048576))
check "... keeping what was before the region" \
	sectors_equal "$T/big.orig" "$T/big.img" 0 8
run copy --truncate "$T/src1" "$T/tnew.img"
check "--truncate with a new file is fine" cmp "$T/src1" "$T/tnew.img"
cp "$T/big.orig" "$T/big.img"
run copy --truncate "$T/src1" "fault:delay=0:$T/big.img"
check "--truncate of something not a plain file exits 2" status 2
check "... and writes nothing" cmp "$T/big.orig" "$T/big.img"
run copy --truncate "$T/src1" "$T/t2.img" "fault:fail-writes=all:$T/big.img"
check "--truncate leaves a failed destination's size alone" \
	size_is "$T/big.img" 2097152

done_testing

#!/bin/bash
# dmio zero and dmio verify: zeroing exactly the regions named, and finding
# the first differing sector.
. "$(dirname "$0")/lib.sh"

random_file "$T/src" 2M # 4096 sectors

# ---- zero ----
cp "$T/src" "$T/a"
run zero "$T/a@8+8"
check "zero of a region exits 0" status 0
check "the table says OK" has "^ +1 +$T/a@8\+8 +OK$" "$T/out"
check "the region is zero" cmp -i 4096 -n 4096 "$T/a" /dev/zero
check "before it is untouched" cmp -n 4096 "$T/src" "$T/a"
check "after it is untouched" cmp -i 8192 "$T/src" "$T/a"

cp "$T/src" "$T/b"
cp "$T/src" "$T/c"
run zero --json "$T/b@1M" "$T/c@0+4K"
check "zero of two regions exits 0" status 0
check "a region without COUNT runs to the end" cmp -i 1048576 -n 1048576 \
	"$T/b" /dev/zero
check "... and nothing before it changes" cmp -n 1048576 "$T/src" "$T/b"
check "a K region is zeroed" cmp -n 4096 "$T/c" /dev/zero
check "--json: command zero, no source, the bytes of both regions" json \
	"j['command'] == 'zero' and j['source'] is None and
	 j['bytes'] == 1048576 + 4096 and j['exit'] == 0"
check "--json: both regions ok" json \
	"[d['ok'] for d in j['destinations']] == [True, True]"

run zero "$T/a@4096+8"
check "zeroing past the end exits 2" status 2

run zero "$T/a@0+8" "fault:fail-writes=all:$T/c"
check "a failing region exits 1" status 1
check "... with its errno text" has "FAILED: Input/output error$" "$T/out"

# ---- verify ----
cp "$T/src" "$T/same"
run verify "$T/src" "$T/same"
check "verify of identical files exits 0" status 0
check "... and says same" has "^ +1 +$T/same +same$" "$T/out"

cp "$T/src" "$T/flip"
printf '\x5a' | dd of="$T/flip" bs=1 seek=5000 conv=notrunc status=none
cmp -s -i 5000 -n 1 "$T/src" "$T/flip" && printf '\xa5' |
	dd of="$T/flip" bs=1 seek=5000 conv=notrunc status=none
run verify "$T/src" "$T/same" "$T/flip"
check "a flipped byte exits 1" status 1
check "... the same file is still same" has "^ +1 +$T/same +same$" "$T/out"
check "... and the flipped one differs at sector 9" \
	has "^ +2 +$T/flip +differs at sector 9$" "$T/out"
check "the summary counts the bytes compared" \
	has "^dmio verify: compared 2\.0 MiB with 2 regions" "$T/err"

run verify --json "$T/src" "$T/same" "$T/flip"
check "verify --json: command, source, exit" json \
	"j['command'] == 'verify' and j['source'] == '$T/src' and
	 j['exit'] == 1 and j['bytes'] == 2097152"
check "verify --json: same and first_difference" json \
	"[(c['same'], c['first_difference']) for c in j['compared']] ==
	 [(True, None), (False, 9)]"
check "verify --json: bytes compared with each B" json \
	"[c['bytes'] for c in j['compared']] == [2097152, 9 * 512] and
	 [c['ends_first'] for c in j['compared']] == [None, None]"

run verify "$T/src@8+16" "$T/flip@8"
check "regions: the sector counts from the region's start" \
	has "differs at sector 1$" "$T/out"
run verify "$T/src@0+8" "$T/flip"
check "B takes A's length: the first 8 sectors are the same" status 0

head -c 1M "$T/src" >"$T/short"
run verify "$T/src" "$T/short"
check "a shorter B exits 1" status 1
check "... the table says B is shorter and where it ends" \
	has "short +B is shorter: it ends at sector 2048$" "$T/out"
check "... the summary counts what was compared, not what was read" \
	has "^dmio verify: compared 1\.0 MiB with 1 region" "$T/err"
run verify --json "$T/src" "$T/short"
check "... --json: bytes compared and which region ends first" json \
	"j['bytes'] == 1048576 and j['compared'][0]['bytes'] == 1048576 and
	 j['compared'][0]['ends_first'] == 'B' and
	 j['compared'][0]['first_difference'] == 2048"
run verify "$T/src@0+8" "$T/same@0+16"
check "a longer B region: the table says where A ends" \
	has "B is longer: A ends at sector 8$" "$T/out"
run verify --json "$T/src@0+8" "$T/same@0+16"
check "... --json: A ends first" json \
	"j['bytes'] == 4096 and j['compared'][0]['ends_first'] == 'A'"

run verify "$T/src" "$T/none" "$T/same"
check "a B that cannot be opened exits 1" status 1
check "... with its errno text" \
	has "none +FAILED: No such file or directory$" "$T/out"
check "... while the others are compared" has "same +same$" "$T/out"

run verify "$T/src" "fault:fail-reads=100+1:$T/same"
check "a read error on B exits 1" status 1
check "... FAILED with the errno text" has "FAILED: Input/output error$" \
	"$T/out"

run verify "fault:fail-reads=100+1:$T/src" "$T/same"
check "a read error on A exits 2" status 2
run verify "$T/none" "$T/same"
check "an A that cannot be opened exits 2" status 2

done_testing

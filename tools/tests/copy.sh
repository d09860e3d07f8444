#!/bin/bash
# dmio copy: the bytes land where the regions say, missing destinations
# are created at the right size, sizes are checked before any I/O, and the
# table, JSON and exit status tell each destination's fate.
. "$(dirname "$0")/lib.sh"

random_file "$T/src" 5M # 10240 sectors

# ---- one and three destinations ----
run copy "$T/src" "$T/one"
check "copy to one new file exits 0" status 0
check "the copy is the source, byte for byte" cmp "$T/src" "$T/one"
check "the table has a header and says OK" \
	has "^ +# +destination +result$" "$T/out"
check "the row names the destination" has "^ +1 +$T/one +OK$" "$T/out"

run copy "$T/src" "$T/a" "$T/b" "$T/c"
check "copy to three exits 0" status 0
for d in a b c; do
	check "destination $d is the source" cmp "$T/src" "$T/$d"
done
check "three OK rows" [ "$(grep -c ' OK$' "$T/out")" -eq 3 ]

# ---- region syntax ----
run copy "$T/src@8+16" "$T/r1"
check "@SECTOR+COUNT in sectors exits 0" status 0
check "a new destination is as long as the copy" size_is "$T/r1" 8192
check "it holds source sectors 8..23" cmp -i 4096:0 -n 8192 "$T/src" "$T/r1"

run copy "$T/src@1M+2M" "$T/r2@4K"
check "K and M suffixes exit 0" status 0
check "a new destination at @4K is 4 KiB + the copy" \
	size_is "$T/r2" $((4096 + 2097152))
check "the copy lands 4 KiB in" cmp -i 1048576:4096 -n 2097152 "$T/src" "$T/r2"
check "the new file is zero before its region" cmp -n 4096 "$T/r2" /dev/zero

run copy "$T/src@2048+1MiB" "$T/r3"
check "the iB form and a sector start agree" \
	cmp -i 1048576:0 -n 1048576 "$T/src" "$T/r3"

head -c 1M /dev/zero >"$T/existing"
run copy "$T/src@0+8" "$T/existing@100+16"
check "a region inside an existing file exits 0" status 0
check "its size does not change" size_is "$T/existing" 1048576
check "the region holds the copy" cmp -i 0:51200 -n 4096 "$T/src" "$T/existing"
check "before the region is untouched" cmp -n 51200 "$T/existing" /dev/zero
check "after the region is untouched" \
	cmp -i 55296:0 -n $((1048576 - 55296)) "$T/existing" /dev/zero

run copy "$T/src" "$T/r4@16"
check "whole source to @16 of a new file" size_is "$T/r4" $((8192 + 5242880))

# ---- creation and sizes, checked before any I/O ----
run copy --no-create "$T/src" "$T/nope"
check "--no-create refuses a missing destination with 2" status 2
check "... in one line" one_line "$T/err"
check "... and creates nothing" absent "$T/nope"

run copy --no-create "$T/src" "$T/one"
check "--no-create copies to an existing file" status 0

head -c 1M /dev/zero >"$T/small"
run copy "$T/src" "$T/new1" "$T/small"
check "a destination smaller than the copy exits 2" status 2
check "... saying it is too small, in one line" has "too small" "$T/err"
check "... writing nothing to it" cmp "$T/small" <(head -c 1M /dev/zero)
check "... and creating no other destination" absent "$T/new1"

run copy "$T/src@0+8" "$T/small@2048"
check "a region starting at the end exits 2" status 2

run copy "$T/src" "$T/new2@0+8"
check "a destination COUNT shorter than the copy exits 2" status 2
check "... and creates nothing" absent "$T/new2"

run copy "$T/src@0+8" "$T/big@0+64"
check "a longer destination COUNT is fine" status 0
check "... and the new file is sized for the copy" size_is "$T/big" 4096

# ---- failures: exit 1, the table, JSON ----
truncate -s 5M "$T/bad"
bad="fault:fail-writes=all,errno=ENOSPC:$T/bad"
run copy "$T/src" "$T/good" "$bad"
check "one failing destination exits 1" status 1
check "the healthy destination still gets everything" cmp "$T/src" "$T/good"
check "its row says OK" has "^ +1 +$T/good +OK$" "$T/out"
check "the failed row gives the errno text" \
	has "^ +2 +fault:.*FAILED: No space left on device$" "$T/out"

run copy --json "$T/src" "$T/good" "$bad"
check "--json exits 1 too" status 1
check "--json: command, source, bytes, exit" json \
	"j['command'] == 'copy' and j['source'] == '$T/src' and
	 j['bytes'] == 5242880 and j['exit'] == 1 and
	 j['source_error'] is None"
check "--json: seconds and mib_per_s are numbers" json \
	"all(isinstance(j[k], (int, float)) for k in ('seconds', 'mib_per_s'))"
check "--json: the good destination" json \
	"j['destinations'][0] == {'spec': '$T/good', 'ok': True, 'errno': 0,
				  'error': None, 'bytes_written': 5242880,
				  'correct_from': 0, 'correct_to': 10240}"
check "--json: the failed destination" json \
	"j['destinations'][1] == {'spec': '$bad', 'ok': False, 'errno': 28,
				  'error': 'No space left on device',
				  'bytes_written': 0, 'correct_from': 0,
				  'correct_to': 0}"

run copy --stop-on-error "$T/src" "$T/stop" "$bad"
check "--stop-on-error exits 1" status 1
check "... and the stopped destination is reported incomplete" \
	has "^ +1 +$T/stop +INCOMPLETE: (nothing copied|correct up to sector [0-9]+)$" "$T/out"

run copy "$T/src" "$T/missing-dir/x" "$T/ok2"
check "a destination that cannot be created fails alone (1)" status 1
check "... with its errno text" \
	has "missing-dir/x +FAILED: No such file or directory$" "$T/out"
check "... while the others are copied" cmp "$T/src" "$T/ok2"

run copy "fault:fail-reads=4096+8:$T/src" "$T/rd"
check "a source read error exits 2" status 2
check "... and says so" \
	has "reading .* failed at sector 4096: Input/output error" "$T/err"

run copy --json "fault:fail-reads=4096+8:$T/src" "$T/rd"
check "--json names the source error" json \
	"j['source_error'] == 'Input/output error' and j['exit'] == 2"

# ---- durability options ----
run copy --no-flush "$T/src" "$T/nf"
check "--no-flush copies" cmp "$T/src" "$T/nf"
run copy --fua "$T/src" "$T/fua"
check "--fua exits 0" status 0
check "--fua copies" cmp "$T/src" "$T/fua"

# ---- a source that is not whole sectors ----
head -c 1000 "$T/src" >"$T/odd"
run copy "$T/odd" "$T/odd-copy"
check "an odd-sized source copies its whole sectors" size_is "$T/odd-copy" 512
check "... and warns about the rest" has "last 488 bytes" "$T/err"

done_testing

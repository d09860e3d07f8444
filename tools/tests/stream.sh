#!/bin/bash
# dmio copy with "-": standard input as the source (its size unknown
# until it ends), standard output as the only destination; and the clear
# message for FIFOs and character devices, which are no devices.
. "$(dirname "$0")/lib.sh"

# ---- standard input to files ----
# A length that is no whole number of sectors or chunks: the files end
# exactly where the stream does.
random_file "$T/data" 9437287 # 9 MiB + 103 bytes
run copy - "$T/a.img" "$T/b.img" <"$T/data"
check "stdin to two new files exits 0" status 0
check "the first holds the stream, byte for byte" cmp "$T/data" "$T/a.img"
check "the second too" cmp "$T/data" "$T/b.img"
check "the summary goes to stderr" has "copied 9.0 MiB to 2 destinations" \
	"$T/err"

cat "$T/data" | "$DMIO" copy --json - "$T/p.img" >"$T/out" 2>"$T/err"
rc=$?
check "from a pipe, exit 0" status 0
check "from a pipe, the same bytes" cmp "$T/data" "$T/p.img"
check "JSON counts the bytes read and written" json \
	"j['bytes_read'] == 9437287 and j['destinations'][0]['bytes_written'] == 9437287"

# An existing file longer than the stream keeps its tail, the bytes after
# the stream's last partial sector included.
random_file "$T/long" 3M
cp "$T/long" "$T/keep.img"
printf 'hello' >"$T/hello"
run copy - "$T/keep.img@1" <"$T/hello"
check "5 bytes into a longer file at sector 1: exit 0" status 0
check "the file keeps its size" size_is "$T/keep.img" $((3 << 20))
check "its first sector is untouched" cmp -n 512 "$T/long" "$T/keep.img"
check "the stream is at sector 1" cmp -n 5 -i 512:0 "$T/keep.img" "$T/hello"
check "the rest of sector 1 and after stays as it was" \
	cmp -i 517:517 "$T/long" "$T/keep.img"

cp "$T/long" "$T/trunc.img"
run copy --truncate - "$T/trunc.img" <"$T/hello"
check "--truncate ends the file where the stream ends" size_is "$T/trunc.img" 5

# A shorter existing file grows to the stream's end.
head -c 1000 "$T/long" >"$T/short.img"
run copy - "$T/short.img" <"$T/data"
check "a shorter file grows to hold the stream" cmp "$T/data" "$T/short.img"

run copy - "$T/empty.img" </dev/null
check "an empty stream: exit 0" status 0
check "an empty stream makes an empty file" size_is "$T/empty.img" 0

# A stream that cannot be read fails as a source: exit 2, nothing left.
run copy - "$T/dir.img" <"$T"
check "an unreadable stdin (a folder) exits 2" status 2
check "and says why" has "reading '-' failed: Is a directory" "$T/err"
check "and creates nothing" absent "$T/dir.img"

# A destination region that is too short for the stream fails alone.
random_file "$T/small" 1M
run copy - "$T/x.img" "$T/small@0+8" <"$T/data"
check "a region too short for the stream: exit 1" status 1
check "it fails with ENOSPC" has "small@0\+8 +FAILED: No space left" "$T/out"
check "the other destination still gets everything" cmp "$T/data" "$T/x.img"

# ---- a region to standard output ----
random_file "$T/src" 5M
"$DMIO" copy "$T/src" - >"$T/copy" 2>"$T/err"
rc=$?
check "a file to stdout exits 0" status 0
check "stdout carries the file" cmp "$T/src" "$T/copy"
check "the table goes to stderr, not into the data" \
	has "^ +1 +- +OK$" "$T/err"

"$DMIO" copy "$T/src@2048+2048" - >"$T/copy" 2>"$T/err"
check "a region to stdout" cmp -n $((1 << 20)) -i $((1 << 20)):0 \
	"$T/src" "$T/copy"
check "exactly the region" size_is "$T/copy" $((1 << 20))

"$DMIO" copy "fault:fail-reads=1000+8:$T/src" - >"$T/copy" 2>"$T/err"
rc=$?
check "a read error while streaming out exits 2" status 2
check "the stream stops before the unreadable block" \
	size_is "$T/copy" $((1000 * 512))
check "what was sent is right" cmp -n $((1000 * 512)) "$T/src" "$T/copy"
check "the report names the range" \
	has "source sectors 1000-1007: unreadable" "$T/err"

"$DMIO" copy --noerror "fault:fail-reads=1000+8:$T/src" - >"$T/copy" \
	2>"$T/err"
check "--noerror streams zeroes for the unreadable blocks" \
	python3 -c "
import sys
a = open(sys.argv[1], 'rb').read(); b = open(sys.argv[2], 'rb').read()
sys.exit(not (len(a) == len(b) and a[:512000] == b[:512000] and
              b[512000:516096] == bytes(4096) and a[516096:] == b[516096:]))
" "$T/src" "$T/copy"

"$DMIO" copy "$T/src" - 2>"$T/err" | head -c 1000 >/dev/null
rc=${PIPESTATUS[0]}
check "a reader that goes away fails the destination: exit 1" status 1
check "with the reason" has "FAILED: Broken pipe" "$T/err"

"$DMIO" copy --json "$T/missing" - >"$T/copy" 2>"$T/err"
rc=$?
check "a failed copy to stdout exits 2" status 2
check "its JSON error goes to stderr, not into the data" \
	[ ! -s "$T/copy" ]
check "the JSON error is on stderr" \
	has '^\{"command":"copy","error":"cannot open source' "$T/err"

# ---- what a stream cannot be ----
mkdir -p "$T/w"
usage() {
	local pattern=$1

	shift
	run "$@"
	check "dmio $* exits 2" status 2
	check "dmio $* says: $pattern" has "$pattern" "$T/err"
	check "dmio $* creates nothing" [ -z "$(ls -A "$T/w")" ]
}
usage "only destination" copy "$T/src" - "$T/w/x.img"
usage "use cat" copy - - </dev/null
usage "a stream has no sectors" copy -- "$T/src" -@8
usage "not a region to zero" zero -
usage "verify compares regions of devices" verify - "$T/src"
usage "info describes devices" info -
run copy - "$T/w/x.img" </dev/null
check "'-' never makes a file called '-'" absent ./-

mkfifo "$T/fifo"
run copy "$T/fifo" "$T/w/x.img"
check "a FIFO as the source exits 2" status 2
check "a FIFO gets the stream hint" \
	has "not a file or block device: use - for a stream" "$T/err"
rm -f "$T/w/x.img"
run copy "$T/src" /dev/null
check "a character device as the destination fails" status 1
check "with the same hint" \
	has "FAILED: not a file or block device: use - for a stream" "$T/out"

# ---- block devices ----
if is_root; then
	head -c $((4 << 20)) /dev/zero >"$T/lo"
	new_loop lo "$T/lo" --sector-size 4096
	random_file "$T/odd" 12345
	run copy --direct - "$lo" <"$T/odd"
	check "stdin to a 4 KiB-sector loop device: exit 0" status 0
	check "the device holds the stream" cmp -n 12345 "$T/odd" "$lo"
	check "and zeroes after it in its last block" \
		cmp -n $((16384 - 12345)) -i 12345:0 "$lo" /dev/zero
	run copy - "$lo" <"$T/data"
	check "a stream longer than a block device fails it: exit 1" status 1
	check "with ENOSPC" has "FAILED: No space left" "$T/out"
else
	skip "block devices as stream destinations need root"
fi

done_testing

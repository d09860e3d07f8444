#!/bin/bash
# dmio info: every field for files (and, as root, a 4096-byte-sector loop
# device), the backend once, and --json.
. "$(dirname "$0")/lib.sh"

random_file "$T/img" 3M

run info "$T/img" "$T/img"
check "info on a file exits 0" status 0
check "it names the device" has "^$T/img$" "$T/out"
check "kind" has "^  kind: +file$" "$T/out"
check "size in bytes and sectors" \
	has "^  size: +3145728 bytes, 6144 sectors \(3\.0 MiB\)$" "$T/out"
check "logical block size" has "^  logical block size: +512 bytes$" "$T/out"
check "O_DIRECT memory alignment" has "^  memory alignment: +1 byte$" "$T/out"
check "max transfer" has "^  max transfer: +[1-9][0-9]* bytes$" "$T/out"
check "discard support and limit" \
	has "^  discard: +(yes, up to [1-9][0-9]* bytes a request|no)$" "$T/out"
check "write-zeroes limit" \
	has "^  write zeroes: +up to [1-9][0-9]* bytes a request$" "$T/out"
check "buffered and read-write" has "^  access: +buffered, read-write$" \
	"$T/out"
check "the backend and why" has "^backend: (io_uring|threads); .+$" \
	"$T/out"
check "the backend is shown once for two devices" \
	[ "$(grep -c '^backend:' "$T/out")" -eq 1 ]

run info --json "$T/img"
check "info --json exits 0" status 0
check "--json: the device's fields" json \
	"j['command'] == 'info' and j['exit'] == 0 and
	 j['devices'][0]['spec'] == '$T/img' and j['devices'][0]['ok'] and
	 j['devices'][0]['kind'] == 'file' and
	 j['devices'][0]['size_bytes'] == 3145728 and
	 j['devices'][0]['sectors'] == 6144 and
	 j['devices'][0]['logical_block_size'] == 512 and
	 j['devices'][0]['mem_align'] == 1 and
	 j['devices'][0]['max_transfer'] > 0 and
	 isinstance(j['devices'][0]['discard'], bool) and
	 j['devices'][0]['write_zeroes_max'] > 0 and
	 j['devices'][0]['direct'] is False and
	 j['devices'][0]['read_only'] is False"
check "--json: the backend and why" json \
	"j['backend'] in ('io_uring', 'threads') and j['backend_reason']"

DMIO_BACKEND=threads run info --json "$T/img"
check "DMIO_BACKEND=threads is the backend, and the reason says so" json \
	"j['backend'] == 'threads' and 'DMIO_BACKEND' in j['backend_reason']"

run info --direct "$T/img"
check "--direct opens files with O_DIRECT" \
	has "^  access: +direct, read-write$" "$T/out"

if is_root; then
	skip "read-only files: root opens mode 0444 files for writing"
else
	cp "$T/img" "$T/ro"
	chmod 0444 "$T/ro"
	run info "$T/ro"
	check "a file we cannot write is read-only" \
		has "^  access: +buffered, read-only$" "$T/out"
fi

run info "$T/none" "$T/img"
check "a device that cannot be opened exits 2" status 2
check "... saying why in one line" \
	has "^dmio info: cannot open '$T/none': No such file or directory$" \
	"$T/err"
check "... and still describes the others" has "^$T/img$" "$T/out"
run info --json "$T/none"
check "--json: the failed device" json \
	"j['devices'][0] == {'spec': '$T/none', 'ok': False, 'errno': 2,
			     'error': 'No such file or directory'} and
	 j['exit'] == 2"

if ! is_root; then
	skip "4096-byte-sector loop device: needs root"
	done_testing
fi
truncate -s 8M "$T/lb.img"
if ! new_loop L "$T/lb.img" --sector-size 4096; then
	skip "4096-byte-sector loop device: losetup failed"
	done_testing
fi
run info "$L"
check "a loop device is a block device" has "^  kind: +block device$" "$T/out"
check "its logical block size is 4096" \
	has "^  logical block size: +4096 bytes$" "$T/out"
check "it is opened direct" has "^  access: +direct, read-write$" "$T/out"
run info --json "$L"
check "--json: logical_block_size 4096" json \
	"j['devices'][0]['logical_block_size'] == 4096 and
	 j['devices'][0]['kind'] == 'block device' and j['devices'][0]['direct']"

run copy "$T/img@0+1" "$L"
check "a region of part of a 4096-byte block is refused (2)" status 2
check "... saying it is not aligned" has "not aligned" "$T/err"
run copy "$T/img@0+16" "$L@8"
check "an aligned region copies (0)" status 0
check "... to the right place" cmp -i 0:4096 -n 8192 "$T/img" "$L"

done_testing

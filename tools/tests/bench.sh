#!/bin/bash
# dmio bench: the workloads it promises, numbers that add up, no writes
# without --write, and usage errors.
. "$(dirname "$0")/lib.sh"

random_file "$T/a" 8M
cp "$T/a" "$T/a0"
random_file "$T/b" 4M
run bench --json --seconds 0.2 --runs 1 "$T/a" "$T/b"
check "bench exits 0" status 0
check "three read workloads, each with I/Os done and CPU per I/O" json "
[w['name'] for w in j['workloads']] == ['4k randread QD32 submitter+condvar',
 '4k randread QD32 callbacks', '4k randread QD1 sync'] and
all(w['iops'] > 0 and w['cpu_us_per_io'] > 0 and
    abs(w['mib_per_s'] - w['iops'] * 4096 / 2**20) < 0.2 for w in j['workloads'])"
check "the sync workload reports latency" json \
	"j['workloads'][2]['latency_us'] > 0 and j['workloads'][2]['p99_us'] > 0"
check "without --write the devices are untouched" cmp "$T/a" "$T/a0"

run bench --seconds 0.2 --runs 1 --qd 4 --write "$T/a" "$T/b"
check "bench --write exits 0" status 0
check "the table has the mirrored writes" has "^4k randwrite x2 QD4 " "$T/out"
check "and the sequential ones" has "^1M seqwrite x2 QD4 " "$T/out"
differ() { ! cmp -s "$1" "$2"; }
check "--write writes" differ "$T/a" "$T/a0"
check "the same data to every device, within the smaller one" \
	cmp -n $((4 << 20)) "$T/a" "$T/b"

run bench --seconds 0.2 --runs 3 "$T/a"
check "--runs 3 takes the median" has "median of 3 runs" "$T/out"

run bench
check "no device: exit 2" status 2
run bench --qd 300 "$T/a"
check "--qd 300: exit 2" status 2
run bench --seconds 0 "$T/a"
check "--seconds 0: exit 2" status 2
run bench "$T/missing"
check "a missing device: exit 2" status 2
run bench /dev/null
check "a character device: exit 2" status 2
check "says it is no file or block device" has "'/dev/null': not a file or block device$" "$T/err"
head -c 1M /dev/zero >"$T/small"
run bench "$T/small"
check "a device under 2 MiB: exit 2" status 2
check "says why" has "2 MiB at least" "$T/err"

done_testing

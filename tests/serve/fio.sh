#!/bin/bash
# fio's nbd engine against a three-leg mirror (two files and an NBD
# export): random writes with crc32c verification at QD32 in four jobs,
# then mixed reads and writes; zero verify errors, every leg identical.
. "$(dirname "$0")/lib.sh"
need fio

SIZE=$((96 << 20))
EXP=$(export_size $SIZE)
truncate -s $SIZE "$T/a" "$T/b"
mem_leg C c $SIZE
mirror --nosync --read-policy least-loaded "$T/a" "$T/b" "$C_uri" ||
	{ not_ok "mirror starts"; done_testing; }

common="--ioengine=nbd --uri=$MURI --iodepth=32 --numjobs=4 --size=16M
	--offset_increment=16M --verify=crc32c --verify_fatal=1 --group_reporting"
# shellcheck disable=SC2086
fio --name=rand $common --rw=randwrite --bs=4k >"$T/fio1.out" 2>&1
check "fio randwrite 4k QD32 x4 with crc32c verify: no error" test $? -eq 0
check "fio reports err=0" grep -q "err= 0" "$T/fio1.out"
# shellcheck disable=SC2086
fio --name=mixed $common --rw=randrw --bsrange=512-128k --rwmixread=30 \
	>"$T/fio2.out" 2>&1
check "fio randrw 512..128k QD32 x4 with crc32c verify: no error" test $? -eq 0
check "every leg holds the same bytes" same_legs $EXP "$T/a" "$T/b" "$C_uri"
check "no leg failed" test "$(st '[.legs[] | select(.state == "in-sync")] | length')" -eq 3
check "least-loaded reads used every leg" test \
	"$(st '[.legs[] | select(.reads > 0)] | length')" -eq 3
stop_mirror

done_testing

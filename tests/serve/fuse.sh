#!/bin/bash
# A file system on the mirror: nbdfuse exposes the export as a file, a
# loop device goes on it, mkfs.ext4, mount, write files, unmount; then the
# legs are identical and each one alone passes fsck.ext4 -n (the
# superblock at the end leaves a leg usable as a plain device).
. "$(dirname "$0")/lib.sh"
need nbdfuse fusermount3 mkfs.ext4 fsck.ext4 losetup

if [[ $(id -u) -ne 0 ]]; then
	echo "1..0 # SKIP loop devices and mount need root"
	exit 0
fi
if [[ ! -c /dev/fuse ]]; then
	echo "1..0 # SKIP no /dev/fuse here"
	exit 0
fi

SIZE=$((128 << 20))
EXP=$(export_size $SIZE)
truncate -s $SIZE "$T/a" "$T/b"
mirror --nosync "$T/a" "$T/b" || { not_ok "mirror starts"; done_testing; }
mkdir "$T/fuse" "$T/mnt"
nbdfuse -P "$T/fuse.pid" "$T/fuse/disk" "$MURI" 2>"$T/fuse.err" &
fpid=$!
for ((i = 0; i < 100; i++)); do
	[[ -s $T/fuse.pid ]] && break
	sleep 0.1
done
if [[ ! -s $T/fuse.pid ]]; then
	kill "$fpid" 2>/dev/null
	echo "1..0 # SKIP nbdfuse cannot mount here: $(head -n 1 "$T/fuse.err")"
	exit 0
fi
mounts+=("$T/fuse")
check "nbdfuse shows the export as a file of the right size" \
	test "$(stat -c %s "$T/fuse/disk")" -eq $EXP
loop=$(losetup -f --show "$T/fuse/disk") || { not_ok "losetup"; done_testing; }
loops=("$loop" "${loops[@]}")
check "mkfs.ext4 on a loop device over the FUSE file" mkfs.ext4 -q -F "$loop"
mount "$loop" "$T/mnt" && mounts=("$T/mnt" "${mounts[@]}")
check "the file system mounts" mountpoint -q "$T/mnt"
head -c $((20 << 20)) /dev/urandom >"$T/big"
cp "$T/big" "$T/mnt/big"
for i in $(seq 1 50); do
	echo "file $i" >"$T/mnt/f$i"
done
sync
check "files read back" cmp "$T/big" "$T/mnt/big"
umount "$T/mnt"
losetup -d "$loop"
fusermount3 -u "$T/fuse"
wait "$fpid"
check "the legs are identical" same_legs $EXP "$T/a" "$T/b"
fsck_alone() {
	fsck.ext4 -n -f "$1" >"$T/fsck.out" 2>&1 || {
		sed 's/^/# /' "$T/fsck.out" | tail -n 5
		return 1
	}
}
check "fsck.ext4 -n on leg a alone" fsck_alone "$T/a"
check "fsck.ext4 -n on leg b alone" fsck_alone "$T/b"
stop_mirror

done_testing

#!/usr/bin/env bash
# Runs in the test VM (scripts/vm/run.sh; chrooted into the host's root) for the kernel-side block tests: one
# `nydusd nbd` serves IMAGE both to the kernel through the ioctl mode (/dev/nbd0) and on a Unix socket, which
# nbd-client attaches to /dev/nbd1. Then the guest kernel's EROFS mounts each device, and dm-verity is opened
# over /dev/nbd1 (data from our server) with the hash tree of VERITY_FILE (`nydusd export --block --verity`,
# loop device) and ROOT_HASH. Every mount's manifest (tree-manifest.sh) and every step's exit code go to OUT:
# results ("name code" lines), <name>.manifest, <name>.log; the host compares them with the source tree.
# Inputs (environment): NYDUSD IMAGE LOCALFS_DIR VERITY_FILE ROOT_HASH HASH_OFFSET OUT; optional DOTNET_ROOT.
# IMAGE must be one device as the 6.1 kernel sees it (a plain mkfs.erofs image): 6.1's EROFS opens every slot of
# a device table by its tag ("erofs_init_device: empty device tag") and cannot mount a multi-blob image flat.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
result() { echo "$1 $2" >> "$OUT/results"; echo "guest: $1 -> $2"; }
stamp() { echo "guest: $(cut -d' ' -f1 /proc/uptime) s $*"; }
mounted() { # NAME DEVICE: mount the device as erofs, write the manifest, unmount
  mkdir -p "/run/mnt-$1"
  mount -t erofs -o ro "$2" "/run/mnt-$1" 2> "$OUT/$1.log"; result "$1-mount" $?
  mountpoint -q "/run/mnt-$1" || { dmesg | tail -5 >> "$OUT/$1.log"; return; }
  "$here/tree-manifest.sh" "/run/mnt-$1" > "$OUT/$1.manifest" 2>> "$OUT/$1.log"; result "$1-manifest" $?
  umount "/run/mnt-$1"; result "$1-umount" $?
}
: > "$OUT/results"
stamp "start"

"$NYDUSD" nbd /dev/nbd0 --bootstrap "$IMAGE" --localfs-dir "$LOCALFS_DIR" --nbd-socket /run/nbd.sock --export-name img \
  > "$OUT/nydusd.log" 2>&1 &
nydusd=$!
for _ in $(seq 1 1800); do
  grep -q "served on" "$OUT/nydusd.log" && break
  kill -0 "$nydusd" 2>/dev/null || break
  sleep 0.1
done
grep -q "served on" "$OUT/nydusd.log"; result nydusd-started $?
stamp "nydusd serving"

# 1. Upstream's kernel mode: our process configured /dev/nbd0 itself.
result ioctl-size "$(cat /sys/block/nbd0/size)"
mounted ioctl /dev/nbd0
stamp "ioctl mode done"

# 2. The standard client: nbd-client attaches /dev/nbd1 to our Unix socket (handshake, export name).
nbd-client -N img -b 4096 -u /run/nbd.sock /dev/nbd1 > "$OUT/nbd-client.log" 2>&1; result nbd-client $?
mounted nbdclient /dev/nbd1
stamp "nbd-client done"

# 3. dm-verity: data from our NBD export, hash tree from our exported file; a wrong root hash must be refused.
loop="$(losetup --find --show --read-only "$VERITY_FILE")"
wrong="$(echo "$ROOT_HASH" | tr '0-9a-f' '1-9a-f0')"
# (open itself succeeds: the root hash is checked as blocks are read, so a read must fail.)
veritysetup open /dev/nbd1 nydus-wrong "$loop" "$wrong" --hash-offset="$HASH_OFFSET" > "$OUT/verity-wrong.log" 2>&1
dd if=/dev/mapper/nydus-wrong of=/dev/null bs=4096 count=1 iflag=direct >> "$OUT/verity-wrong.log" 2>&1; result verity-wrong-hash-read $?
veritysetup close nydus-wrong >> "$OUT/verity-wrong.log" 2>&1
veritysetup open /dev/nbd1 nydus-verity "$loop" "$ROOT_HASH" --hash-offset="$HASH_OFFSET" > "$OUT/verity-open.log" 2>&1
result verity-open $?
mounted verity /dev/mapper/nydus-verity
veritysetup status nydus-verity >> "$OUT/verity-open.log" 2>&1; result verity-status $?
veritysetup close nydus-verity; result verity-close $?
losetup -d "$loop"
stamp "dm-verity done"

nbd-client -d /dev/nbd1 >> "$OUT/nbd-client.log" 2>&1; result nbd-client-detach $?
kill -TERM "$nydusd"; wait "$nydusd"; result nydusd-exit $?
# The kernel mode detached /dev/nbd0 at SIGTERM.
result ioctl-size-after "$(cat /sys/block/nbd0/size)"

# 4. Detached from outside: a kernel-mode nydusd on /dev/nbd2 (nothing else) ends by itself, exit 0, when
# `nbd-client -d` detaches its device while a reader has it open.
"$NYDUSD" nbd /dev/nbd2 --bootstrap "$IMAGE" --localfs-dir "$LOCALFS_DIR" > "$OUT/outside.log" 2>&1 &
outside=$!
for _ in $(seq 1 1800); do
  grep -q "served on" "$OUT/outside.log" && break
  kill -0 "$outside" 2>/dev/null || break
  sleep 0.1
done
result outside-size "$(cat /sys/block/nbd2/size)"
dd if=/dev/nbd2 of=/dev/null bs=4096 count=16 2>> "$OUT/outside.log"; result outside-read $?
nbd-client -d /dev/nbd2 >> "$OUT/outside.log" 2>&1; result outside-detach $?
ended=1
for _ in $(seq 1 300); do # bounded: 30 s
  kill -0 "$outside" 2>/dev/null || { ended=0; break; }
  sleep 0.1
done
result outside-ended "$ended"
if [ "$ended" = 0 ]; then wait "$outside"; result outside-exit $?; else kill -KILL "$outside"; result outside-exit killed; fi
grep -q "was detached" "$OUT/outside.log"; result outside-said-detached $?
result outside-size-after "$(cat /sys/block/nbd2/size)"
stamp "end"

#!/usr/bin/env bash
# Runs in the test VM for the virtio-fs benchmark (Nydus.Bench VirtioFsBench). One tree (a directory TREE_DIR and a
# large file BIG_FILE in it), served to the guest five ways, each mounted here read-only:
#   virtiofs-rafs        tag nydus0: `nydusd virtiofs` serving a RAFS v6 image of the tree
#   virtiofs-erofs       tag nydus1: `nydusd virtiofs` serving a plain EROFS image of the tree (the NBD row's image)
#   virtiofs-passthrough tag nydus2: `nydusd virtiofs --shared-dir` of the source directory
#   9p                   tag export9p: qemu's built-in 9p export of the source directory (NYDUS_VM_9P_EXPORT)
#   nbd-erofs            /dev/vda: qemu's NBD client on `nydusd nbd` serving the plain EROFS image, as virtio-blk,
#                        mounted by the guest kernel's EROFS
# Then ROUNDS rounds, each going through the contenders in turn (interleaved), each measure cold (the guest's page
# cache dropped before it): `tar` of TREE_DIR piped through `cat`-like `wc -c` (GNU tar reads nothing when its
# archive is /dev/null), 1 MiB sequential reads of BIG_FILE (dd), 4 KiB random reads of it (fio, psync, fixed
# seed, IO_SIZE bytes; fio's own run time). Writes "<contender> <measure> <ms> <bytes>" lines to OUT/results and the mounts' state to
# OUT/mounts.log. Inputs (environment): TREE_DIR BIG_FILE OUT ROUNDS IO_SIZE (paths relative to each mount's root);
# optional ROUND_BUDGET (seconds, default 1200: no round starts after that).
set -u
: > "$OUT/results"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
stamp() { echo "guest: $(cut -d' ' -f1 /proc/uptime) s $*"; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
contenders=(virtiofs-rafs virtiofs-erofs virtiofs-passthrough 9p nbd-erofs)
mount_one() { # CONTENDER DIR
  case "$1" in
    virtiofs-rafs) mount -t virtiofs -o ro nydus0 "$2" ;;
    virtiofs-erofs) mount -t virtiofs -o ro nydus1 "$2" ;;
    virtiofs-passthrough) mount -t virtiofs -o ro nydus2 "$2" ;;
    # The options the test VM's own root uses (scripts/vm/init).
    9p) mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 export9p "$2" ;;
    nbd-erofs) mount -t erofs -o ro /dev/vda "$2" ;;
  esac
}
for c in "${contenders[@]}"; do
  mkdir -p "/run/bench/$c"
  if ! mount_one "$c" "/run/bench/$c" 2>> "$OUT/mounts.log"; then
    echo "mount of $c failed" >> "$OUT/mounts.log"; dmesg | tail -20 >> "$OUT/mounts.log"; exit 1
  fi
  echo "$c: $(find "/run/bench/$c/$TREE_DIR" | wc -l) entries, $(stat -c %s "/run/bench/$c/$BIG_FILE") bytes in $BIG_FILE" >> "$OUT/mounts.log"
done
grep -E ' (virtiofs|9p|erofs) ' /proc/mounts >> "$OUT/mounts.log"
stamp "mounted"
started=$(cut -d. -f1 /proc/uptime)
for round in $(seq 1 "$ROUNDS"); do
  # A round takes 5-15 minutes under TCG on a loaded host: no new round after ROUND_BUDGET seconds, so the VM ends
  # within its time limit with whole rounds (the host reports those).
  if [ "$round" -gt 1 ] && [ $(( $(cut -d. -f1 /proc/uptime) - started )) -gt "${ROUND_BUDGET:-1200}" ]; then
    stamp "no round $round: the ${ROUND_BUDGET:-1200} s budget is spent"; break
  fi
  for c in "${contenders[@]}"; do
    dir="/run/bench/$c"
    drop; start=$(now_ms)
    bytes=$(tar -C "$dir/$TREE_DIR" -cf - . | wc -c)
    echo "$c tar $(( $(now_ms) - start )) $bytes" >> "$OUT/results"
    drop; start=$(now_ms)
    bytes=$(dd if="$dir/$BIG_FILE" bs=1M 2>/dev/null | wc -c)
    echo "$c seq1m $(( $(now_ms) - start )) $bytes" >> "$OUT/results"
    # fio's own run time (terse field 9, ms), without its start-up; field 6 is the KiB it read.
    drop
    log="$OUT/fio-$c-$round.log"
    fio --name=rand --filename="$dir/$BIG_FILE" --readonly --rw=randread --bs=4k --io_size="$IO_SIZE" --ioengine=psync \
      --randrepeat=1 --invalidate=1 --output-format=terse --terse-version=3 --output="$log" > /dev/null 2>&1 \
      || { echo "fio on $c failed"; cat "$log"; exit 1; }
    echo "$c rand4k $(cut -d';' -f9 "$log") $(( $(cut -d';' -f6 "$log") * 1024 ))" >> "$OUT/results"
  done
  stamp "round $round done"
done
for c in "${contenders[@]}"; do umount "/run/bench/$c"; done
exit 0

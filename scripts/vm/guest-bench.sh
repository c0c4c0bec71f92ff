#!/usr/bin/env bash
# Runs in the test VM for the blockdev benchmark (Nydus.Bench BlockDevBench): `tar` of the image's tree (piped
# through `cat` to /dev/null: GNU tar does not read files when its archive is /dev/null) on the guest kernel's
# EROFS over our NBD export (ioctl mode, /dev/nbd0) and on our FUSE mount of the same image, cold (page cache
# dropped) and warm, ROUNDS times each. Writes "<contender> <cold|warm> <ms> <bytes>" lines to OUT/results.
# Inputs (environment): NYDUSD IMAGE LOCALFS_DIR OUT ROUNDS; optional DOTNET_ROOT.
set -u
: > "$OUT/results"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
measure() { # CONTENDER DIR
  local kind round start end bytes
  for round in $(seq 1 "$ROUNDS"); do
    for kind in cold warm; do
      [ "$kind" = cold ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
      start=$(now_ms)
      bytes=$(tar -C "$2" -cf - . | wc -c)
      end=$(now_ms)
      echo "$1 $kind $((end - start)) $bytes" | tee -a "$OUT/results"
    done
  done
}
wait_for() { # PID SECONDS COMMAND...: poll until the command succeeds; give up when PID died or time is up
  local pid=$1 limit=$(( $2 * 10 )); shift 2
  for _ in $(seq 1 "$limit"); do "$@" && return 0; kill -0 "$pid" 2>/dev/null || return 1; sleep 0.1; done
  return 1
}

"$NYDUSD" nbd /dev/nbd0 --bootstrap "$IMAGE" --localfs-dir "$LOCALFS_DIR" > "$OUT/nbd.log" 2>&1 &
nbd=$!
wait_for "$nbd" 300 grep -q "served on" "$OUT/nbd.log" || { echo "nydusd nbd did not start"; cat "$OUT/nbd.log"; exit 1; }
mkdir -p /run/nbd-erofs /run/fuse
mount -t erofs -o ro /dev/nbd0 /run/nbd-erofs || exit 1
measure nbd-erofs /run/nbd-erofs
umount /run/nbd-erofs
kill -TERM "$nbd"; wait "$nbd"

# Under TCG the daemon's SQLite journal is too slow for its own bounds (seen: "Recovery timed out, didn't get
# snapshot within 30s", then "mount of / was not recorded in the daemon journal (the journal did not answer in
# time)", a fixed 30 s): this run measures the data path only, so the FUSE daemon journals in memory (Akka's
# inmem plugins) and gets longer bounds for the rest.
cat > /run/guest-timeouts.conf <<'CONF'
akka.persistence.journal.plugin = "akka.persistence.journal.inmem"
akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.inmem"
akka.persistence.journal.sql.recovery-event-timeout = 600s
akka.persistence.journal-plugin-fallback.recovery-event-timeout = 600s
nydus.journal.recovery-timeout = 600s
nydus.daemon.action-timeout = 600s
nydus.api.ask-timeout = 600s
nydus.api.mount-timeout = 600s
CONF
"$NYDUSD" --hocon /run/guest-timeouts.conf --apisock /run/api.sock -M /run/fuse --bootstrap "$IMAGE" --localfs-dir "$LOCALFS_DIR" \
  > "$OUT/fuse.log" 2>&1 &
fuse=$!
wait_for "$fuse" 600 grep -q "nydusd is RUNNING" "$OUT/fuse.log" || { echo "nydusd fuse did not mount"; cat "$OUT/fuse.log"; kill -KILL "$fuse"; exit 1; }
measure fuse /run/fuse
kill -TERM "$fuse"; wait "$fuse"
mountpoint -q /run/fuse && umount -l /run/fuse
exit 0

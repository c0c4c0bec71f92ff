#!/usr/bin/env bash
# The main job on embedded defaults: build a small sample image at first run (mkfs.erofs, chunk-based with its data
# in a separate blob file, as RAFS v6 keeps data in blobs), mount it with the published nydusd through FUSE (state
# in SQLite under .work/sample), show it, and serve until Ctrl+C (SIGINT unmounts through the state machine).
# Called by `bash build.sh Run` after publishing to artifacts/nydusd.
set -euo pipefail
cd "$(dirname "$0")/.."
nydusd="$PWD/artifacts/nydusd/nydusd"
work="$PWD/.work/sample"
tree="$work/tree"; image="$work/sample.erofs"; blob="$work/sample.blob"; config="$work/config.json"
mnt="$work/mnt"; sock="$work/api.sock"
mkdir -p "$work" "$mnt"

if [ ! -f "$image" ]; then
  echo "Building the sample image from $tree ..."
  rm -rf "$tree"; mkdir -p "$tree/docs" "$tree/bin" "$tree/data"
  cp README.md "$tree/docs/README.md"
  cp docs/architecture.md "$tree/docs/architecture.md"
  echo "Hello from a lazily served image." > "$tree/hello.txt"
  head -c 3000000 /dev/urandom > "$tree/data/random-3MB.bin"
  ln -s ../hello.txt "$tree/bin/hello-link"
  ln "$tree/hello.txt" "$tree/docs/hello-hardlink.txt"
  (cd "$tree" && sha256sum hello.txt data/random-3MB.bin docs/README.md > "$work/expected.sha256")
  mkfs.erofs --chunksize=65536 --blobdev "$blob" "$image" "$tree" >/dev/null
fi
cat > "$config" <<JSON
{
  "version": 2,
  "backend": { "type": "localfs", "localfs": { "blob_file": "$blob" } },
  "cache": { "type": "" },
  "rafs": { "mode": "direct", "validate": false }
}
JSON

# A mount left behind by an earlier run that was killed hard.
grep -q " $mnt fuse" /proc/self/mounts && umount -l "$mnt" || true

"$nydusd" --id sample --work-dir "$work/state" --apisock "$sock" \
  --mountpoint "$mnt" --bootstrap "$image" --config "$config" &
pid=$!
# Ctrl+C (or a TERM) stops nydusd through its own signal handling: it unmounts and exits.
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap 'stop; exit 0' INT TERM
trap stop EXIT

for _ in $(seq 1 100); do
  "$nydusd" ctl --sock "$sock" info 2>/dev/null | grep -q RUNNING && break
  sleep 0.1
done
echo
echo "nydusd (pid $pid) serves $image at $mnt"
echo "  look:        ls -l $mnt; cat $mnt/hello.txt"
echo "  API socket:  $sock   (try: $nydusd ctl --sock $sock info)"
echo "  state:       $work/state (SQLite journal and snapshots)"
echo
ls -l "$mnt"
(cd "$mnt" && sha256sum -c "$work/expected.sha256")
echo
echo "Press Ctrl+C to unmount and stop."
wait $pid

#!/usr/bin/env bash
# nbdcopy throughput of `nydusd nbd` against `nbdkit file` serving the same raw image (issue 17's benchmark):
# a chunked mkfs.erofs --blobdev image of 48 random 4 MiB files, served by nydusd from its two files (localfs
# blob_file, warm page cache), and its `nydusd export --block` output served by nbdkit. Rounds alternate;
# prints every time and the medians. Usage: scripts/bench-blockdev.sh [NYDUSD] [ROUNDS]
set -euo pipefail
nydusd="${1:-$(dirname "$0")/../Nydus.Host/bin/Release/net10.0/nydusd}"
rounds="${2:-7}"
dir="$(mktemp -d /tmp/bench-blockdev.XXXXXX)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$dir"; }
trap cleanup EXIT
mkdir "$dir/src"
for i in $(seq 1 48); do head -c 4M /dev/urandom > "$dir/src/f$i"; done
mkfs.erofs --quiet --chunksize=1048576 --blobdev="$dir/blob.img" "$dir/meta.erofs" "$dir/src"
printf '{"version":2,"backend":{"type":"localfs","localfs":{"blob_file":"%s"}},"cache":{"type":"dummycache"},"rafs":{"mode":"direct"}}\n' "$dir/blob.img" > "$dir/cfg.json"
"$nydusd" export --block --bootstrap "$dir/meta.erofs" --config "$dir/cfg.json" --output "$dir/raw.img"
"$nydusd" nbd --bootstrap "$dir/meta.erofs" --config "$dir/cfg.json" --nbd-socket "$dir/ours.sock" > "$dir/ours.log" 2>&1 &
pids+=($!)
nbdkit --unix "$dir/kit.sock" --pidfile "$dir/kit.pid" -r file "$dir/raw.img"
for _ in $(seq 1 100); do [ -S "$dir/ours.sock" ] && [ -f "$dir/kit.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$dir/kit.pid")")
size=$(stat -c %s "$dir/raw.img")
time_ms() { local s e; s=$(date +%s%N); nbdcopy "$1" null:; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
ours=(); kit=()
for _ in $(seq 1 "$rounds"); do
  ours+=("$(time_ms "nbd+unix:///default?socket=$dir/ours.sock")")
  kit+=("$(time_ms "nbd+unix:///?socket=$dir/kit.sock")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${ours[@]}"); mk=$(median "${kit[@]}")
echo "device: $size bytes; rounds: $rounds"
echo "nydusd nbd  ms: ${ours[*]}  median $mo  ($(( size / 1048576 * 1000 / mo )) MiB/s)"
echo "nbdkit file ms: ${kit[*]}  median $mk  ($(( size / 1048576 * 1000 / mk )) MiB/s)"
echo "ratio (nbdkit time / nydusd time): $(awk -v a="$mk" -v b="$mo" 'BEGIN {printf "%.2f", a / b}')"

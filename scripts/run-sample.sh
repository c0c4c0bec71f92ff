#!/usr/bin/env bash
# The main job on embedded defaults: start the published nydusd with its API socket and SQLite state under
# .work/sample, show its state through the API, and serve until Ctrl+C (SIGINT shuts it down through the state
# machine). Called by `bash build.sh Run` after publishing to artifacts/nydusd.
set -euo pipefail
cd "$(dirname "$0")/.."
nydusd="$PWD/artifacts/nydusd/nydusd"
work="$PWD/.work/sample"
mkdir -p "$work"
sock="$work/api.sock"

"$nydusd" singleton --id sample --work-dir "$work/state" --apisock "$sock" &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  [ -S "$sock" ] && "$nydusd" ctl --sock "$sock" info >/dev/null 2>&1 && break
  sleep 0.1
done
echo
echo "nydusd is serving (pid $pid)."
echo "  API socket:   $sock       (try: $nydusd ctl --sock $sock info)"
echo "  State (SQLite journal and snapshots): $work/state"
"$nydusd" ctl --sock "$sock" info
echo
echo "Press Ctrl+C to stop it."
wait $pid

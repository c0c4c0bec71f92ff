#!/usr/bin/env bash
# Takes back what a test run left behind, so that a hung or failed run can never keep CI waiting:
#   1. FUSE mounts under the run's own temp dir (build.cake points TMPDIR of the test run there): abort the kernel
#      connection first (a mount whose server is gone makes stat/umount hang), then detach the mount.
#   2. processes that carry this run's marker in their environment (NYDUS_TEST_RUN=<id>, set by build.cake and
#      inherited by everything the tests start, daemons that outlive their parent included): SIGKILL.
#   3. (not with --mounts-only) the run's temp dir itself.
# Usage: test-sweep.sh <run-id> <run-temp-dir> [--mounts-only]
set -u
run_id="${1:?run id}"
tmp="${2:?run temp dir}"; tmp="${tmp%/}"
mode="${3:-}"

# /proc/self/mountinfo: field 3 is major:minor; for FUSE the minor is the connection number in
# /sys/fs/fuse/connections. Field 5 is the mountpoint (octal escapes for spaces); fstype follows " - ".
while read -r _ _ devno _ mnt rest; do
  fstype="${rest#* - }"; fstype="${fstype%% *}"
  case "$fstype" in fuse|fuse.*) ;; *) continue ;; esac
  case "$mnt" in "$tmp"/*) ;; *) continue ;; esac
  conn="${devno#*:}"
  [ -w "/sys/fs/fuse/connections/$conn/abort" ] && echo 1 > "/sys/fs/fuse/connections/$conn/abort" 2>/dev/null
  umount -c -l "$(printf '%b' "$mnt")" 2>/dev/null
  echo "test-sweep: aborted and detached FUSE mount $mnt (connection $conn)"
done < /proc/self/mountinfo

[ "$mode" = "--mounts-only" ] && exit 0

self=$$
for dir in /proc/[0-9]*; do
  pid="${dir#/proc/}"
  [ "$pid" = "$self" ] && continue
  [ "$pid" = "$PPID" ] && continue
  # environ reads are bounded: a process stuck in a FUSE page fault could block them (its mount is aborted above).
  if timeout -s KILL 5 tr "\\0" "\\n" 2>/dev/null < "$dir/environ" | grep -qx "NYDUS_TEST_RUN=$run_id"; then
    name=$(timeout -s KILL 5 cat "$dir/comm" 2>/dev/null)
    kill -KILL "$pid" 2>/dev/null && echo "test-sweep: killed leftover process $pid ($name)"
  fi
done
# --one-file-system: never descend into a mount that could not be detached (a writable passthrough mount would
# otherwise lose its backing files).
rm -rf --one-file-system "$tmp" 2>/dev/null
exit 0

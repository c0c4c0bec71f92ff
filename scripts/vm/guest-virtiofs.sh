#!/usr/bin/env bash
# Runs in the test VM (scripts/vm/run.sh with NYDUS_VM_VHOST_USER_FS; chrooted into the host's root) for the
# virtio-fs tests: each vhost-user-fs device served by a `nydusd virtiofs` on the host (tags nydus0, nydus1, ... in
# TAGS) is mounted with the guest kernel's virtiofs, and its manifest (tree-manifest.sh), md5sums and the mount's
# exit codes go to OUT: results ("name code" lines), <tag>.manifest, <tag>.md5, <tag>.log. The host compares them.
# Inputs (environment): TAGS OUT.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
result() { echo "$1 $2" >> "$OUT/results"; echo "guest: $1 -> $2"; }
stamp() { echo "guest: $(cut -d' ' -f1 /proc/uptime) s $*"; }
: > "$OUT/results"
stamp "start"
for tag in $TAGS; do
  mkdir -p "/run/mnt-$tag"
  mount -t virtiofs "$tag" "/run/mnt-$tag" 2> "$OUT/$tag.log"; result "$tag-mount" $?
  if mountpoint -q "/run/mnt-$tag"; then
    "$here/tree-manifest.sh" "/run/mnt-$tag" > "$OUT/$tag.manifest" 2>> "$OUT/$tag.log"; result "$tag-manifest" $?
    (cd "/run/mnt-$tag" && find . -type f -exec md5sum {} + | LC_ALL=C sort -k2) > "$OUT/$tag.md5" 2>> "$OUT/$tag.log"; result "$tag-md5" $?
    umount "/run/mnt-$tag"; result "$tag-umount" $?
  else
    dmesg | tail -20 >> "$OUT/$tag.log"
  fi
  stamp "$tag done"
done
exit 0

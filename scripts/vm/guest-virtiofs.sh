#!/usr/bin/env bash
# Runs in the test VM (scripts/vm/run.sh with NYDUS_VM_VHOST_USER_FS; chrooted into the host's root) for the
# virtio-fs tests: each vhost-user-fs device served by a `nydusd virtiofs` on the host (tags nydus0, nydus1, ... in
# TAGS) is mounted with the guest kernel's virtiofs, and its manifest (tree-manifest.sh), md5sums and the mount's
# exit codes go to OUT: results ("name code" lines), <tag>.manifest, <tag>.md5, <tag>.log. The host compares them.
# Each blobfs device (`nydusd virtiofs --blobfs`, tags in BLOBFS_TAGS) is mounted with virtiofs too, and the image
# in it (image.boot and the blobs named in its file "devices") is mounted by the guest's own EROFS over read-only
# loop devices (-o device=LOOP per blob, in device-table order); that mount's manifest and md5sums go to OUT the same way.
# Inputs (environment): TAGS OUT; optional BLOBFS_TAGS.
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
for tag in ${BLOBFS_TAGS:-}; do
  mkdir -p "/run/blobs-$tag" "/run/mnt-$tag"
  mount -t virtiofs -o ro "$tag" "/run/blobs-$tag" 2> "$OUT/$tag.log"; result "$tag-virtiofs" $?
  mountpoint -q "/run/blobs-$tag" || { dmesg | tail -20 >> "$OUT/$tag.log"; continue; }
  ls -ln "/run/blobs-$tag" > "$OUT/$tag.files" 2>> "$OUT/$tag.log"
  loops=(); opts=ro
  boot="$(losetup --find --show --read-only "/run/blobs-$tag/image.boot" 2>> "$OUT/$tag.log")"; result "$tag-losetup" $?
  loops+=("$boot")
  for blob in $(cat "/run/blobs-$tag/devices"); do
    dev="$(losetup --find --show --read-only "/run/blobs-$tag/$blob" 2>> "$OUT/$tag.log")" || result "$tag-losetup-$blob" $?
    loops+=("$dev"); opts="$opts,device=$dev"
  done
  mount -t erofs -o "$opts" "$boot" "/run/mnt-$tag" 2>> "$OUT/$tag.log"; result "$tag-mount" $?
  if mountpoint -q "/run/mnt-$tag"; then
    "$here/tree-manifest.sh" "/run/mnt-$tag" > "$OUT/$tag.manifest" 2>> "$OUT/$tag.log"; result "$tag-manifest" $?
    (cd "/run/mnt-$tag" && find . -type f -exec md5sum {} + | LC_ALL=C sort -k2) > "$OUT/$tag.md5" 2>> "$OUT/$tag.log"; result "$tag-md5" $?
    umount "/run/mnt-$tag"; result "$tag-umount" $?
  else
    dmesg | tail -20 >> "$OUT/$tag.log"
  fi
  for dev in "${loops[@]}"; do losetup -d "$dev"; done
  umount "/run/blobs-$tag"; result "$tag-virtiofs-umount" $?
  stamp "$tag done"
done
exit 0

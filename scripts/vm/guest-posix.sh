#!/usr/bin/env bash
# Runs in the test VM (scripts/vm/run.sh with NYDUS_VM_VHOST_USER_FS; chrooted into the host's root) for the POSIX
# conformance test over virtio-fs passthrough: posix-conformance.py (our own subset modelled on pjdfstest's areas)
# runs once on a guest tmpfs (the oracle) and once on the virtio-fs mount of tag TAG (a writable
# `nydusd virtiofs --shared-dir` on the host). Writes to OUT: tmpfs.results, virtiofs.results (one "check<TAB>result"
# line each), posix.log (stderr, dmesg tail) and results ("step code" lines). The host compares the two files.
# Inputs (environment): TAG OUT.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
result() { echo "$1 $2" >> "$OUT/results"; echo "guest: $1 -> $2"; }
stamp() { echo "guest: $(cut -d' ' -f1 /proc/uptime) s $*"; }
: > "$OUT/results"
: > "$OUT/posix.log"
mkdir -p /run/oracle /run/shared
mount -t tmpfs -o mode=0755 oracle /run/oracle; result tmpfs-mount $?
mount -t virtiofs "$TAG" /run/shared 2>> "$OUT/posix.log"; result virtiofs-mount $?
mountpoint -q /run/shared || { dmesg | tail -20 >> "$OUT/posix.log"; exit 1; }
stamp "mounted"
python3 "$here/posix-conformance.py" /run/oracle > "$OUT/tmpfs.results" 2>> "$OUT/posix.log"; result tmpfs-run $?
stamp "tmpfs done"
python3 "$here/posix-conformance.py" /run/shared > "$OUT/virtiofs.results" 2>> "$OUT/posix.log"; result virtiofs-run $?
stamp "virtiofs done"
diff "$OUT/tmpfs.results" "$OUT/virtiofs.results" && echo "guest: no difference"
umount /run/shared; result virtiofs-umount $?
umount /run/oracle
dmesg | tail -5 >> "$OUT/posix.log"
exit 0

#!/usr/bin/env bash
# Boots the test VM (scripts/vm/prepare.sh) and runs a guest script in it; the serial console (the kernel's and
# the script's output) goes to stdout, and the script's exit code becomes ours (125: the VM failed before it).
# The guest sees the host's root read-only (the script, the published nydusd, the test's files, at the same
# paths) and, with EXCHANGE_DIR, that directory read-write at its own path.
# With NYDUS_VM_VHOST_USER_FS="SOCKET..." the guest also gets one vhost-user-fs-pci device per socket, tagged nydus0,
# nydus1, ... (a vhost-user backend such as `nydusd virtiofs` must listen on each); its RAM is then a shared memfd, as
# vhost-user needs.
# With NYDUS_VM_NBD="SOCKET..." the guest gets one read-only virtio-blk disk per NBD export (qemu's NBD client on the
# Unix socket, export "default", as `nydusd nbd --nbd-socket` serves it): /dev/vda, /dev/vdb, ...
# With NYDUS_VM_9P_EXPORT=DIR the guest also gets DIR as a read-only 9p export tagged "export9p" (not mounted: the
# guest script mounts it with the options it wants).
# Killed after TIMEOUT seconds (default 300).
# Usage: scripts/vm/run.sh GUEST_SCRIPT [EXCHANGE_DIR] [TIMEOUT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
script="$(realpath "$1")"; xchg="${2:-}"; limit="${3:-300}"
eval "$("$here/prepare.sh")"
# TCG by default: on this (nested) host KVM starts but the guest hangs before its first line; NYDUS_VM_ACCEL=kvm
# opts in where KVM works.
accel=(-machine q35,accel=tcg -cpu max)
if [ "${NYDUS_VM_ACCEL:-tcg}" = kvm ]; then accel=(-machine q35,accel=kvm -cpu host,-arch-capabilities); fi
args=("${accel[@]}" -m "${NYDUS_VM_MEMORY:-2048}" -smp 2 -nographic -no-reboot -nodefaults
      -serial stdio -kernel "$KERNEL" -initrd "$INITRD"
      -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap)
if [ -n "${NYDUS_VM_VHOST_USER_FS:-}" ]; then
  args+=(-object "memory-backend-memfd,id=mem,size=${NYDUS_VM_MEMORY:-2048}M,share=on" -numa node,memdev=mem)
  n=0
  for sock in $NYDUS_VM_VHOST_USER_FS; do
    args+=(-chardev "socket,id=vufs$n,path=$sock" -device "vhost-user-fs-pci,chardev=vufs$n,tag=nydus$n,queue-size=1024")
    n=$((n + 1))
  done
fi
n=0
for sock in ${NYDUS_VM_NBD:-}; do
  args+=(-drive "file=nbd+unix:///default?socket=$sock,format=raw,if=none,id=nbd$n,readonly=on" -device "virtio-blk-pci,drive=nbd$n")
  n=$((n + 1))
done
if [ -n "${NYDUS_VM_9P_EXPORT:-}" ]; then
  args+=(-virtfs "local,path=$(realpath "$NYDUS_VM_9P_EXPORT"),mount_tag=export9p,security_model=none,readonly=on,multidevs=remap")
fi
cmdline="console=ttyS0 panic=-1 quiet loglevel=3 nydus.script=$script"
if [ -n "$xchg" ]; then
  xchg="$(realpath "$xchg")"
  args+=(-virtfs "local,path=$xchg,mount_tag=xchg,security_model=none,multidevs=remap")
  cmdline+=" nydus.xchg=$xchg"
fi
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
set +e
timeout -k 5 "$limit" qemu-system-x86_64 "${args[@]}" -append "$cmdline" < /dev/null | tee "$out"
set -e
code="$(tr -d '\r' < "$out" | sed -n 's/^NYDUS-VM-EXIT=\([0-9]*\)$/\1/p' | tail -1)"
exit "${code:-125}"

#!/usr/bin/env bash
# Prepares the test VM of the kernel-side block tests (issue 17): Debian 12's own 6.1 kernel, unpacked (never
# installed) from the package apt offers, and an initramfs of busybox-static plus the modules the guest needs.
# Cached under $NYDUS_VM_CACHE (default /var/cache/nydus-test-vm) so that only the first run downloads; the
# initramfs is rebuilt when scripts/vm/init changes. Prints two lines: KERNEL=<vmlinuz> and INITRD=<cpio.gz>.
# Needs: apt-get (download only), dpkg, busybox-static, cpio, gzip. Usage: scripts/vm/prepare.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${NYDUS_VM_CACHE:-/var/cache/nydus-test-vm}"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 600 9 || { echo "prepare.sh: $cache/.lock held for 10 minutes" >&2; exit 1; }

# The kernel: the version linux-image-amd64 depends on (Debian moves it with security updates; an older
# cached one keeps working, so look for any unpacked kernel first and download only when there is none).
kver="$(ls "$cache/root/lib/modules" 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$kver" ] || [ ! -f "$cache/root/boot/vmlinuz-$kver" ]; then
  pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6/ {print $2; exit}')"
  [ -n "$pkg" ] || { echo "prepare.sh: apt offers no linux-image-6.* for linux-image-amd64 (apt-get update?)" >&2; exit 1; }
  tmp="$(mktemp -d "$cache/.download.XXXXXX")"
  (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1) || { rm -rf "$tmp"; echo "prepare.sh: apt-get download $pkg failed" >&2; exit 1; }
  dpkg -x "$tmp"/*.deb "$tmp/root"
  rm -rf "$cache/root"; mv "$tmp/root" "$cache/root"; rm -rf "$tmp"
  kver="$(ls "$cache/root/lib/modules" | sort -V | tail -1)"
  # The package ships no modules.dep (depmod runs at install time): busybox's depmod writes it.
  busybox depmod -b "$cache/root" "$kver"
fi
moddir="$cache/root/lib/modules/$kver"

# The modules the guest loads and, from modules.dep, everything they need. The initramfs's /init loads
# them in this order (dependencies first).
wanted=(virtio_pci 9pnet_virtio 9p crc32c_generic erofs nbd dm-verity fuse virtiofs loop virtio_blk)
initrd="$cache/initramfs-$kver-$(cat "$here/init" "$0" | sha256sum | cut -c1-12).cpio.gz"
if [ ! -f "$initrd" ]; then
  stage="$(mktemp -d "$cache/.initramfs.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage"/{bin,dev,proc,sys,host,run,tmp,lib/modules}
  cp /bin/busybox "$stage/bin/busybox"
  cp "$here/init" "$stage/init"; chmod 755 "$stage/init"
  order=()
  add() { # add MODULE_PATH (relative to moddir) after its dependencies
    local m="$1" d
    for d in $(awk -v m="$m:" '$1 == m { $1 = ""; print }' "$moddir/modules.dep"); do add "$d"; done
    case " ${order[*]-} " in *" $m "*) ;; *) order+=("$m") ;; esac
  }
  for name in "${wanted[@]}"; do
    rel="$(awk -F: -v n="/$name.ko" 'index($1, n) && substr($1, length($1) - length(n) + 1) == n { print $1; exit }' "$moddir/modules.dep")"
    [ -n "$rel" ] || { echo "prepare.sh: module $name is not in $moddir" >&2; exit 1; }
    add "$rel"
  done
  for m in "${order[@]}"; do cp "$moddir/$m" "$stage/lib/modules/"; basename "$m" >> "$stage/lib/modules/order"; done
  (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) > "$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
fi
echo "KERNEL=$cache/root/boot/vmlinuz-$kver"
echo "INITRD=$initrd"

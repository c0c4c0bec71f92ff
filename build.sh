#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine with the .NET 10 SDK:
#   bash build.sh Run    mount a sample image and serve it (embedded defaults: SQLite, local files)
#   bash build.sh Test   install what the tests need, build, run every test
#   bash build.sh Bench  run the benchmarks, print tables, write bench/results-*.md
# Anything after the target is passed to Cake (e.g. --filter=Fuse).
set -euo pipefail
cd "$(dirname "$0")"
target="${1:-Build}"; shift || true

# Debian packages that the tests and the sample use as real peers. Installed only when missing,
# so a second run on the same machine is quick.
packages=(erofs-utils docker-registry libnbd-bin squashfuse squashfs-tools fio fuse3 libfuse3-dev pkg-config attr tree openssl systemd cryptsetup-bin zstd nbdkit
          qemu-system-x86 busybox-static cpio nbd-client postgresql iproute2 util-linux python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: not root, cannot install ${missing[*]}; tests that need them will be skipped" >&2
  fi
fi

# The test VM's kernel (Debian's linux-image-6.1, unpacked, never installed) and initramfs, cached under
# /var/cache/nydus-test-vm: the kernel-side block tests and the blockdev bench boot it (scripts/vm/).
if [ "$(id -u)" = 0 ] && { [ "$target" = Test ] || [ "$target" = Bench ]; }; then
  scripts/vm/prepare.sh >/dev/null || echo "warning: the test VM could not be prepared (scripts/vm/prepare.sh); its tests will fail" >&2
fi

dotnet tool restore >/dev/null
exec dotnet cake build.cake --target="$target" "$@"

#!/usr/bin/env bash
# Prints a sorted, line-per-fact manifest of the tree under DIR, the same on the host (source tree) and in the
# test VM (a kernel EROFS mount), so the two compare as text: per entry its type, mode, owner, mtime (ns),
# and for non-directories nlink and size (directory sizes are the filesystem's own); symlink targets; rdev of
# device nodes; sha256 of regular files; every xattr (hex values, symlinks' own). Paths relative to DIR.
# Usage: scripts/vm/tree-manifest.sh DIR
set -euo pipefail
cd "$1"
{
  find . -type d -printf '%p\tmeta\t%y %m %U:%G %T@\n'
  find . ! -type d -printf '%p\tmeta\t%y %m %U:%G %n %s %T@\n'
  find . -type l -printf '%p\tlink\t%l\n'
  find . \( -type b -o -type c \) -exec stat --printf '%n\trdev\t%t:%T\n' {} +
  # sha256sum prints "<64 hex>  <name>" (names here start with "./", so no escaping prefix).
  find . -type f -exec sha256sum {} + | awk '{ print substr($0, 67) "\tsha256\t" substr($0, 1, 64) }'
  getfattr -P -R -h -d -m - -e hex . 2>/dev/null | awk '
    /^# file: / { file = substr($0, 9); next }
    /^$/ { next }
    { print "./" file "\txattr\t" $0 }'
} | LC_ALL=C sort

#!/usr/bin/env bash
# Makes sure Kiln's data dir ($KILN_DATA_DIR, default /var/lib/kiln) can reflink (FICLONE), so VM
# disks and snapshot files are cloned without copying. When the host file system cannot (ext4),
# it mounts a sparse XFS image (reflink=1) there; the image lives beside it and is reused.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

data=${KILN_DATA_DIR:-/var/lib/kiln}
image=${KILN_DATA_IMAGE:-${data%/}.xfs}
size=${KILN_DATA_IMAGE_SIZE:-64G}

can_reflink() {
  local probe="$1/.reflink-probe.$$"
  head -c 4096 /dev/zero > "$probe" 2>/dev/null || return 1
  local ok=1
  cp --reflink=always "$probe" "$probe.clone" 2>/dev/null && ok=0
  rm -f "$probe" "$probe.clone"
  return $ok
}

mkdir -p "$data"
if can_reflink "$data"; then
  exit 0
fi
if [ "${KILN_NO_XFS:-}" = 1 ]; then
  log "data dir $data cannot reflink; KILN_NO_XFS=1, so disks will be sparse copies"
  exit 0
fi
if [ -n "$(ls -A "$data")" ]; then
  log "data dir $data cannot reflink and is not empty: not mounting an XFS image over it (disks will be sparse copies)"
  exit 0
fi
if [ ! -f "$image" ]; then
  log "data dir $data cannot reflink: creating a sparse $size XFS image at $image"
  truncate -s "$size" "$image"
  mkfs.xfs -q -m reflink=1 "$image"
fi
mount -o loop,noatime "$image" "$data" || die "cannot mount $image on $data (is the loop driver available?)"
can_reflink "$data" || die "mounted $image on $data but it still cannot reflink"
log "data dir $data is now an XFS file system with reflink ($image)"

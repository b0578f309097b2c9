#!/usr/bin/env bash
# Builds the `tiny` guest root file system: busybox-static plus kiln-agent as /sbin/init, as an ext4
# image made without mounting (mkfs.ext4 -d), into $KILN_CACHE/images/tiny-<key>/ and points
# $KILN_CACHE/images/tiny at it. The key covers the agent binary, this script and the busybox
# version, so a second run is a cache hit. Usage (as root): scripts/build-image-tiny.sh AGENT_BINARY
# Prints the image folder as the last line of stdout; progress goes to stderr.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 AGENT_BINARY"
agent=$1
[ -f "$agent" ] && [ -x "$agent" ] || die "agent binary '$agent' is not an executable file"
[ "$(id -u)" -eq 0 ] || die "run as root (the image's files must be owned by root)"
busybox=/bin/busybox
bb_version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null) ||
  die "busybox-static is not installed (run scripts/install-deps.sh)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing (e2fsprogs)"

KEY_EXTRA="busybox-static $bb_version" key=$(cache_key "$agent" "$0")
images="$KILN_CACHE/images"
out="$images/tiny-$key"

# Points $images/tiny at tiny-<key> atomically: a new symlink under a temp name, renamed over the old.
point_tiny_link() {
  local tmp_link="$images/.tiny.link.$$"
  ln -sfn "tiny-$key" "$tmp_link"
  mv -T "$tmp_link" "$images/tiny"
}

if [ -f "$out/rootfs.ext4" ] && [ -f "$out/manifest.json" ]; then
  point_tiny_link
  prune_images tiny
  echo "$out"
  exit 0
fi

mkdir -p "$images"
work=$(mktemp -d "$images/.tiny-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
log "image tiny: staging busybox $bb_version and the agent (cache key $key)"

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,root,work,var}
install -d -m 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
install -m 0755 "$busybox" "$root/bin/busybox"
# One symlink per applet, where busybox itself would install it; /sbin/init is the agent instead.
while IFS= read -r applet; do
  case "$applet" in
    ''|sbin/init|linuxrc|bin/busybox) continue ;;
  esac
  mkdir -p "$root/$(dirname "$applet")"
  ln -sfn /bin/busybox "$root/$applet"
done < <("$busybox" --list-full)
install -m 0755 "$agent" "$root/sbin/init"

# `user` (1000:1000) as in base and in E2B's templates, which run commands and write files as it.
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
user:x:1000:
nogroup:x:65534:
GROUP
install -d -m 0755 -o 1000 -g 1000 "$root/home/user"
echo kiln > "$root/etc/hostname"
cat > "$root/etc/hosts" <<'HOSTS'
127.0.0.1 localhost
127.0.1.1 kiln
HOSTS

log "image tiny: writing a 256 MiB ext4 image"
truncate -s 256M "$work/rootfs.ext4"
# The journal stays: the agent remounts / read-only before every shutdown, so it is never replayed.
# Inode tables and journal are written out here (lazy_*_init=0): otherwise the guest kernel's
# ext4lazyinit thread zeroes them in the background after boot, in every VM and every restored
# snapshot, competing with the job for the one emulated vCPU.
mkfs.ext4 -q -F -d "$root" -L kiln-root -E root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0 \
  "$work/rootfs.ext4" >&2

agent_sha=$(sha256sum "$agent" | cut -d' ' -f1)
size=$(stat -c %s "$work/rootfs.ext4")
mkdir "$work/out"
mv "$work/rootfs.ext4" "$work/out/rootfs.ext4"
cat > "$work/out/manifest.json" <<MANIFEST
{"name":"tiny","key":"$key","agent_sha256":"$agent_sha","size_bytes":$size,"busybox_version":"$bb_version"}
MANIFEST
# Another run may have finished the same key meanwhile; theirs is as good as ours.
mv -T "$work/out" "$out" 2>/dev/null || [ -f "$out/rootfs.ext4" ] || die "cannot move the image into $out"
point_tiny_link
prune_images tiny
log "image tiny: built $out"
echo "$out"

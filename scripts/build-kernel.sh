#!/usr/bin/env bash
# Builds the guest kernel (vmlinux, booted through PVH) from Debian's linux-source-6.1 and
# guest/kernel.config, into $KILN_CACHE/kernel-<key>/. The key covers the source package version,
# the fragment and this script, so a second run is a cache hit and prints the path at once.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1) || die "linux-source-6.1 is not installed (run scripts/install-deps.sh)"
KEY_EXTRA="$src_version" key=$(cache_key "$KILN_ROOT/guest/kernel.config" "$0")
out="$KILN_CACHE/kernel-$key"
if [ -f "$out/vmlinux" ] && [ -f "$out/release" ]; then
  point_link kernel "kernel-$key"
  echo "$out"
  exit 0
fi

mkdir -p "$KILN_CACHE"
work=$(mktemp -d "$KILN_CACHE/.kernel-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "kernel: unpacking linux-source-6.1 $src_version (cache key $key)"
tar -C "$work" -xf /usr/src/linux-source-6.1.tar.xz
cd "$work"/linux-source-6.1
log "kernel: configuring (tinyconfig + guest/kernel.config)"
make -s tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$KILN_ROOT/guest/kernel.config" >/dev/null
make -s olddefconfig >/dev/null
# Every line of the fragment must have survived; a silently dropped option is a broken guest.
missing=0
while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  opt=${line%%=*}; val=${line#*=}
  if [ "$val" = n ]; then
    grep -q "^$opt=" .config && { log "kernel: $opt should be off but is on"; missing=1; }
  else
    grep -qx "$line" .config || { log "kernel: $line did not survive olddefconfig"; missing=1; }
  fi
done < "$KILN_ROOT/guest/kernel.config"
[ "$missing" = 0 ] || die "the kernel config fragment does not apply cleanly"
jobs=${KILN_JOBS:-$(nproc)}
log "kernel: building vmlinux with -j$jobs (about 4 minutes on 2 cores; progress every 100 objects)"
make -j"$jobs" vmlinux 2>&1 | awk '/^  (CC|AR|LD|AS)/ { n++; if (n % 100 == 0) { printf "[kiln kernel] %d objects built\n", n; fflush() } } /error|Error/ { print; fflush() }' >&2
[ "${PIPESTATUS[0]}" = 0 ] || die "kernel build failed"
release=$(make -s kernelrelease)
mkdir -p "$out.tmp"
cp vmlinux "$out.tmp/vmlinux"
cp .config "$out.tmp/config"
echo "$release" > "$out.tmp/release"
rm -rf "$out"
mv "$out.tmp" "$out"
point_link kernel "kernel-$key"
log "kernel: built $release into $out"
echo "$out"

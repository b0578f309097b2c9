#!/usr/bin/env bash
# Builds the `base` CI guest image: a Debian 12 (bookworm) minbase root from debootstrap with the CI
# toolchain (git, build-essential, python3, nodejs, npm…) and kiln-agent as /sbin/init, as a sparse
# ext4 image made without mounting (mkfs.ext4 -d), into $KILN_CACHE/images/base-<key>/ and points
# $KILN_CACHE/images/base at it. Usage (as root): scripts/build-image-base.sh AGENT_BINARY
# The mirror is the host's own Debian mirror (from its apt sources; $KILN_DEBIAN_MIRROR overrides).
# The key covers the package list, this script, the agent binary, debootstrap's version, the mirror
# and the Date of the mirror's bookworm Release file, so it is stable between runs and changes when
# Debian publishes a point release. Prints the image folder as the last line of stdout; progress
# goes to stderr. Takes several minutes on a cold cache; a cache hit takes a second.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SUITE=bookworm
# What CI jobs need (iproute2: `ip` for the NIC set-up a networked template bakes in, docs/network.md;
# iperf3: the guest side of bench/net_bench's throughput figure, ~0.3 MiB); apt brings their Depends
# along, never their Recommends.
PACKAGES=(git ca-certificates build-essential make python3 python3-venv nodejs npm procps iproute2 curl xz-utils unzip
  iperf3)
# Room for a job's checkout, dependencies and build output, on top of the content. Sparse: the file
# only takes the blocks that are written.
IMAGE_SIZE=${KILN_BASE_IMAGE_SIZE:-4G}

[ $# -eq 1 ] || die "usage: $0 AGENT_BINARY"
agent=$1
[ -f "$agent" ] && [ -x "$agent" ] || die "agent binary '$agent' is not an executable file"
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap chroots, and the image's files must be owned by root)"
command -v debootstrap >/dev/null || die "debootstrap is missing (run scripts/install-deps.sh)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing (e2fsprogs)"
command -v curl >/dev/null || die "curl is missing (run scripts/install-deps.sh)"

# host_debian_mirror: the first URI that the host's apt sources use for the main `bookworm` suite,
# from one-line (*.list) and deb822 (*.sources) files alike. Never a hard-coded host: this is the
# mirror (or proxy) that this machine is configured and allowed to use.
host_debian_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }   # skip [ options ]
        if ($(i + 1) == suite) { print $i; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: paragraphs separated by blank lines; a paragraph counts when its Types has deb and
    # its Suites has the suite itself (not only -updates or -security).
    awk -v suite="$SUITE" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
          split(uris, u, " "); print u[1]; found = 1
        }
        types = ""; suites = ""; uris = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); if (found) exit; next }
      tolower($1) == "types:"  { $1 = ""; types = $0 }
      tolower($1) == "suites:" { $1 = ""; suites = $0 }
      tolower($1) == "uris:"   { $1 = ""; uris = $0 }
      END { if (!found) flush() }' "$f"
  done
}

mirror=${KILN_DEBIAN_MIRROR:-$(host_debian_mirror | head -1)}
[ -n "$mirror" ] || die "no Debian $SUITE mirror in /etc/apt/sources.list{,.d/*}; set KILN_DEBIAN_MIRROR"
mirror=${mirror%/}
ds_version=$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo unknown)
images="$KILN_CACHE/images"

# The Release file's Date names the archive state debootstrap will install from (InRelease is
# verified by debootstrap itself against Debian's keyring; here it only feeds the cache key).
release_date=$(curl -fsS --max-time 30 "$mirror/dists/$SUITE/InRelease" 2>/dev/null |
  sed -n 's/^Date: //p' | head -1) || true
if [ -z "$release_date" ]; then
  # Offline: an image built before is still good; a fresh build is impossible anyway.
  if [ -f "$images/base/rootfs.ext4" ]; then
    log "image base: cannot read $mirror/dists/$SUITE/InRelease; keeping the cached $(readlink "$images/base")"
    (cd "$images/base" && pwd -P)
    exit 0
  fi
  die "cannot read $mirror/dists/$SUITE/InRelease (no network to the mirror?)"
fi

KEY_EXTRA="packages ${PACKAGES[*]}|suite $SUITE|mirror $mirror|release $release_date|debootstrap $ds_version|size $IMAGE_SIZE" \
  key=$(cache_key "$agent" "$0")
out="$images/base-$key"

if [ -f "$out/rootfs.ext4" ] && [ -f "$out/manifest.json" ]; then
  point_link images/base "base-$key"
  prune_images base
  echo "$out"
  exit 0
fi

mkdir -p "$images"
work=$(mktemp -d "$images/.base-build.XXXXXX")
root="$work/root"
# debootstrap mounts /proc and /sys inside the root for its second stage; unmount them before the
# folder goes, whatever happened.
cleanup() {
  local m
  for m in "$root/proc" "$root/sys" "$root/dev/pts" "$root/dev"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
started=$(date +%s)
log "image base: debootstrap $SUITE (minbase, then ${PACKAGES[*]}) from $mirror, Release of $release_date (cache key $key)"

# progress STAGE: the command's full output to $work/STAGE.log; to us, each change of phase and
# every 50th package within one (debootstrap's "I: Retrieving x", apt's "Get:", "Unpacking x"…).
progress() {
  tee "$work/$1.log" | awk '
    function phase_of(line) {
      # debootstrap retrieves then validates each package: both are its download phase.
      if (line ~ /^I: (Retrieving|Validating) [^ ]+ [0-9]/) return "downloading packages"
      if (line ~ /^I: Extracting /) return "extracting packages"
      if (line ~ /^I: Unpacking /) return "unpacking packages"
      if (line ~ /^I: Configuring /) return "configuring packages"
      if (line ~ /^Get:[0-9]+ /) return "downloading packages"
      if (line ~ /^(Preparing to unpack|Unpacking) /) return "unpacking packages"
      if (line ~ /^Setting up /) return "configuring packages"
      if (line ~ /^(I|W|E): /) return line
      return ""
    }
    {
      p = phase_of($0)
      if (p == "" || $0 ~ /^(I: Validating|Preparing to unpack)/) next
      if (p != last) { n = 0; last = p; printf "[kiln %s] image base: %s\n", strftime("%H:%M:%S"), p > "/dev/stderr" }
      else if (++n % 50 == 0) printf "[kiln %s] image base: %s (%d so far)\n", strftime("%H:%M:%S"), p, n > "/dev/stderr"
      fflush("/dev/stderr")
    }'
}
# fail STAGE: the end of its log, then stop.
fail() {
  tail -30 "$work/$1.log" >&2
  die "$1 failed (log above)"
}

# Stage 1: a minbase root (the Priority: required packages and apt). The toolchain is not passed
# with --include: debootstrap's resolver does not follow virtual packages, which npm's dependency
# tree is full of, and dpkg then fails to configure it. apt does that in stage 2.
debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  "$SUITE" "$root" "$mirror" 2>&1 | progress debootstrap || fail debootstrap

# Stage 2: apt inside the root, resolving names the way this host does (the mirror may be named in
# /etc/hosts). The guest's own hosts and resolv.conf are written afterwards.
log "image base: apt-get install ${PACKAGES[*]}"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp /etc/hosts "$root/etc/hosts"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
{ in_root apt-get update -q && in_root apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${PACKAGES[@]}" &&
  in_root apt-get clean; } 2>&1 | progress apt || fail apt
for m in "$root/proc" "$root/sys"; do mountpoint -q "$m" && umount -l "$m"; done
rm -f "$root/etc/resolv.conf"
# `user` (1000:1000, /home/user, bash) as E2B's templates have: their SDK runs commands and writes
# files as it by default (docs/agent-protocol.md, `user` fields).
in_root useradd --create-home --uid 1000 --user-group --shell /bin/bash user
[ "$(stat -c %u:%g "$root/home/user")" = 1000:1000 ] || die "/home/user in the image is not owned by user"

log "image base: installing the agent and trimming caches and docs"
# Merged /usr: /sbin is a relative symlink to usr/sbin, so this stays inside $root.
install -m 0755 "$agent" "$root/usr/sbin/init.kiln"
ln -sfn init.kiln "$root/usr/sbin/init"
[ "$(readlink -f "$root/sbin/init")" = "$(readlink -f "$root/usr/sbin/init.kiln")" ] ||
  die "/sbin/init in the image does not resolve to the agent"
echo kiln > "$root/etc/hostname"
cat > "$root/etc/hosts" <<'HOSTS'
127.0.0.1 localhost
127.0.1.1 kiln
HOSTS
# Jobs that apt-get install later must not bring docs back, and must not keep the .debs.
cat > "$root/etc/dpkg/dpkg.cfg.d/01-kiln-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
NODOC
cat > "$root/etc/apt/apt.conf.d/01-kiln-nocache" <<'NOCACHE'
APT::Install-Recommends "false";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
NOCACHE
find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$root"/usr/share/{man,info}/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/log/apt/* "$root/debootstrap"
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
# Per-machine identity: the agent renews it at every boot and restore; none is baked in.
: > "$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_* "$root/var/lib/dbus/machine-id"

content_kib=$(du -sk "$root" | cut -f1)
log "image base: root is $((content_kib / 1024)) MiB; writing a $IMAGE_SIZE sparse ext4 image"
truncate -s "$IMAGE_SIZE" "$work/rootfs.ext4"
# As for tiny: inode tables and journal written now (lazy_*_init=0), so the guest's ext4lazyinit
# thread does not zero them after every boot, competing with the job for the emulated vCPU.
mkfs.ext4 -q -F -d "$root" -L kiln-root -E root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0 \
  "$work/rootfs.ext4" >&2

agent_sha=$(sha256sum "$agent" | cut -d' ' -f1)
size=$(stat -c %s "$work/rootfs.ext4")
allocated=$(( $(stat -c '%b * %B' "$work/rootfs.ext4") ))
versions=$(chroot "$root" dpkg-query -W -f='${Package}=${Version}\n' git gcc nodejs npm python3 make 2>/dev/null |
  sed 's/.*/"&"/' | paste -sd, -)
mkdir "$work/out"
mv "$work/rootfs.ext4" "$work/out/rootfs.ext4"
cat > "$work/out/manifest.json" <<MANIFEST
{"name":"base","key":"$key","agent_sha256":"$agent_sha","size_bytes":$size,"allocated_bytes":$allocated,"suite":"$SUITE","mirror":"$mirror","release_date":"$release_date","packages":[$versions]}
MANIFEST
# Another run may have finished the same key meanwhile; theirs is as good as ours.
mv -T "$work/out" "$out" 2>/dev/null || [ -f "$out/rootfs.ext4" ] || die "cannot move the image into $out"
point_link images/base "base-$key"
prune_images base
log "image base: built $out in $(( $(date +%s) - started )) s ($((allocated / 1048576)) MiB on disk)"
echo "$out"

# Shared helpers for Kiln's scripts: the cache root, cache keys and progress lines.
KILN_CACHE=${KILN_CACHE:-/var/cache/kiln}
KILN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[kiln %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# cache_key FILE... : a short sha256 over the given files' contents and the extra strings in $KEY_EXTRA.
cache_key() {
  { cat "$@"; printf '%s' "${KEY_EXTRA:-}"; } | sha256sum | cut -c1-16
}

# prune_images NAME: deletes $KILN_CACHE/images/NAME-<key> folders beyond the one $KILN_CACHE/images/NAME
# points at and the KILN_IMAGES_KEPT (default 2) newest others. Every change to the agent or a
# build script makes a new key; without this a developer's cache grows by an image each time (a
# base image is ~800 MiB on disk, a tiny one ~12 MiB). VMs and snapshots made from an old image do
# not need it: their disks are reflinks or copies.
prune_images() {
  local name=$1 images="$KILN_CACHE/images" current kept=0 dir
  current=$(readlink "$images/$name" 2>/dev/null || true)
  while IFS= read -r dir; do
    [ -d "$dir" ] && [ "$(basename "$dir")" != "$current" ] || continue
    kept=$((kept + 1))
    [ "$kept" -le "${KILN_IMAGES_KEPT:-2}" ] && continue
    log "image $name: removing the old $(basename "$dir")"
    rm -rf -- "$dir"
  done < <(ls -1dt "$images/$name"-* 2>/dev/null)
}

# point_link NAME TARGET: atomically make $KILN_CACHE/NAME a symlink to TARGET (relative to its folder).
point_link() {
  local link="$KILN_CACHE/$1" target=$2
  mkdir -p "$(dirname "$link")"
  ln -sfn "$target" "$link.tmp.$$"
  mv -T "$link.tmp.$$" "$link"
}

# npm_cache_fill DIR WHAT FILL: makes the folder DIR (under $KILN_CACHE/npm) once: the function
# FILL is called with a fresh temporary folder beside it, which then replaces DIR whole, so an
# interrupted fetch leaves nothing that looks complete. WHAT names it in messages.
npm_cache_fill() {
  local dir=$1 what=$2 fill=$3
  command -v npm >/dev/null || die "npm is needed to fetch $what (apt-get install npm)"
  log "fetching $what from the npm registry"
  mkdir -p "$KILN_CACHE/npm"
  npm_fill_tmp=$(mktemp -d "$KILN_CACHE/npm/.fetch.XXXXXX")
  trap 'rm -rf "$npm_fill_tmp"' EXIT
  "$fill" "$npm_fill_tmp"
  rm -rf "$dir"
  mv -T "$npm_fill_tmp" "$dir"
  trap - EXIT
}

# fuzz_targets: the libFuzzer targets, one per tests/fuzz/NAME_fuzz.cpp, each with its corpus in
# tests/fuzz/corpus/NAME/ (scripts/test.sh runs them briefly, scripts/fuzz.sh at length).
fuzz_targets() {
  local f
  for f in "$KILN_ROOT"/tests/fuzz/*_fuzz.cpp; do
    f=$(basename "$f")
    echo "${f%_fuzz.cpp}"
  done
}

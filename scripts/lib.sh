# Shared helpers for Kiln's scripts: the cache root, cache keys and progress lines.
KILN_CACHE=${KILN_CACHE:-/var/cache/kiln}
KILN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '[kiln %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# cache_key FILE... : a short sha256 over the given files' contents and the extra strings in $KEY_EXTRA.
cache_key() {
  { cat "$@"; printf '%s' "${KEY_EXTRA:-}"; } | sha256sum | cut -c1-16
}

# point_link NAME TARGET: atomically make $KILN_CACHE/NAME a symlink to TARGET (relative to its folder).
point_link() {
  local link="$KILN_CACHE/$1" target=$2
  mkdir -p "$(dirname "$link")"
  ln -sfn "$target" "$link.tmp.$$"
  mv -T "$link.tmp.$$" "$link"
}

#!/usr/bin/env bash
# Installs tests/e2b's packages (E2B's unmodified JS SDK, two releases: package.json) once into
# $KILN_CACHE/npm/e2b-tests-<key>, keyed by package-lock.json, with `npm ci` (exactly the locked
# versions, no install scripts), links tests/e2b/node_modules to it, and prints that folder.
# The tests (tests/e2b/*.test.mjs) import the SDK by name through that link.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

project="$KILN_ROOT/tests/e2b"
key=$(cache_key "$project/package.json" "$project/package-lock.json")
dir="$KILN_CACHE/npm/e2b-tests-$key"
fill() {
  local tmp=$1 sdk
  cp "$project/package.json" "$project/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  for sdk in e2b e2b-old; do
    [[ -f "$tmp/node_modules/$sdk/package.json" ]] || die "npm ci did not install $sdk"
  done
}
[[ -d "$dir/node_modules" ]] || npm_cache_fill "$dir" "tests/e2b's packages (package-lock.json $key)" fill
ln -sfn "$dir/node_modules" "$project/node_modules"
echo "$dir/node_modules"

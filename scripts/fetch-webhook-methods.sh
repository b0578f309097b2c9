#!/usr/bin/env bash
# Fetches @octokit/webhooks-methods (GitHub's own webhook signing code, ESM, no runtime dependencies)
# once into $KILN_CACHE/npm/, keyed by version, and prints the path of its node entry point. The
# tests sign webhook payloads with its sign() (tests/ci/sign_webhook.mjs) rather than with code of
# ours. No node_modules: the entry point is imported by path.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version=${KILN_WEBHOOK_METHODS_VERSION:-6.0.0}
dir="$KILN_CACHE/npm/octokit-webhooks-methods-$version"
entry="$dir/package/dist-node/index.js"
fill() {
  local tmp=$1
  (cd "$tmp" && npm pack --silent "@octokit/webhooks-methods@$version" >/dev/null)
  tar -xzf "$tmp"/octokit-webhooks-methods-"$version".tgz -C "$tmp"
  [[ -f "$tmp/package/dist-node/index.js" ]] || die "the package has no dist-node/index.js"
  # Imported by path with no node_modules beside it: a runtime dependency would not resolve.
  node -e 'const p = require(process.argv[1]); if (Object.keys(p.dependencies || {}).length) process.exit(1)' \
    "$tmp/package/package.json" || die "@octokit/webhooks-methods@$version has runtime dependencies"
}
[[ -f "$entry" ]] || npm_cache_fill "$dir" "@octokit/webhooks-methods@$version" fill
echo "$entry"

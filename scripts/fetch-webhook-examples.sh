#!/usr/bin/env bash
# Fetches GitHub's recorded webhook payloads (npm package @octokit/webhooks-examples) once into
# $KILN_CACHE/npm/, keyed by version, and prints the folder holding index.json. No node_modules.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version=${KILN_WEBHOOK_EXAMPLES_VERSION:-7.6.1}
dir="$KILN_CACHE/npm/octokit-webhooks-examples-$version"
if [[ ! -f "$dir/package/api.github.com/index.json" ]]; then
  command -v npm >/dev/null || die "npm is needed to fetch @octokit/webhooks-examples (apt-get install npm)"
  log "fetching @octokit/webhooks-examples@$version from the npm registry"
  tmp=$(mktemp -d "$KILN_CACHE/npm/.fetch.XXXXXX" 2>/dev/null || { mkdir -p "$KILN_CACHE/npm"; mktemp -d "$KILN_CACHE/npm/.fetch.XXXXXX"; })
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@octokit/webhooks-examples@$version" >/dev/null)
  tar -xzf "$tmp"/octokit-webhooks-examples-"$version".tgz -C "$tmp"
  [[ -f "$tmp/package/api.github.com/index.json" ]] || die "the package has no api.github.com/index.json"
  rm -rf "$dir"
  mv -T "$tmp" "$dir"
  trap - EXIT
fi
echo "$dir/package/api.github.com"

#!/usr/bin/env bash
# cmake-build.sh DIR BUILD_TYPE [cmake args...]: configures (once) and builds DIR with $KILN_JOBS jobs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
dir=$1 type=$2
shift 2
cd "$KILN_ROOT"
if [ ! -f "$dir/CMakeCache.txt" ]; then
  log "configuring $dir ($type $*)"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
fi
log "building $dir"
cmake --build "$dir" -j"${KILN_JOBS:-2}" 2>&1 | { grep -E 'warning|error|Error|\[100%\]' || true; }
[ "${PIPESTATUS[0]}" = 0 ] || die "build of $dir failed"

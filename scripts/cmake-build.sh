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
log "building $dir (a line every 10%; a full build is about 7 minutes on 2 cores)"
started=$(date +%s)
# CMake's own lines ("[ 42%] Building CXX object ...") would be hundreds; show warnings and errors
# whole, and otherwise one line each time the build passes another 10%, with how many files it has
# compiled so far, so a slow build is told apart from a hung one without flooding CI logs.
cmake --build "$dir" -j"${KILN_JOBS:-2}" 2>&1 | awk -v dir="$dir" '
  /(warning|error):|Error [0-9]|\*\*\*|undefined reference|multiple definition/ { print; fflush(); next }
  match($0, /^\[ *[0-9]+%\] (Building|Linking)/) {
    compiled++
    pct = substr($0, 2, index($0, "%") - 2) + 0
    if (pct >= next_pct && pct < 100) {
      printf "[kiln %s] %s: %d%%, %d files compiled or linked\n", strftime("%H:%M:%S"), dir, pct, compiled
      fflush()
      next_pct = pct - pct % 10 + 10
    }
  }
  END { printf "[kiln %s] %s: 100%%, %d files compiled or linked\n", strftime("%H:%M:%S"), dir, compiled }'
[ "${PIPESTATUS[0]}" = 0 ] || die "build of $dir failed"
log "built $dir in $(( $(date +%s) - started )) s"

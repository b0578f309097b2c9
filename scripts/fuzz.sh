#!/usr/bin/env bash
# fuzz.sh [TARGET...]: the long libFuzzer run behind `make fuzz` (docs/testing.md). Each target
# (default: all, see fuzz_targets in lib.sh) runs for $FUZZ_SECONDS (default 600) from its
# checked-in corpus; the inputs that reach new coverage are then merged into
# tests/fuzz/corpus/TARGET/ (libFuzzer's -merge=1, which keeps only what adds coverage), so
# coverage accumulates in the repository: commit what it adds. A crash, hang or leak is saved in
# build/fuzz/crashes/ and makes the run fail after the other targets have had their turn.
# FUZZ_MINIMIZE=1 also rebuilds each corpus as its hand-written seeds plus a near-smallest set of
# found inputs that covers the rest (FUZZ_SECONDS=0 FUZZ_MINIMIZE=1: only that).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$KILN_ROOT"
seconds=${FUZZ_SECONDS:-600}

CXX=clang++ CC=clang scripts/cmake-build.sh build/fuzz Debug -DKILN_FUZZ=ON
targets=("$@")
if ((${#targets[@]} == 0)); then mapfile -t targets < <(fuzz_targets); fi
# minimize BIN REPO FOUND [libFuzzer flags]: REPO becomes its hand-written seeds (named for what
# they are, not by libFuzzer's SHA-1), which all stay, plus a near-smallest set of the other
# inputs of REPO and FOUND that adds every feature the seeds lack (a greedy set cover).
minimize() {
  local bin=$1 repo=$2 found=$3 minimal seed
  shift 3
  minimal=$(mktemp -d)
  for seed in "$repo"/*; do
    [[ $(basename "$seed") =~ ^[0-9a-f]{40}$ ]] || cp "$seed" "$minimal"/
  done
  "$bin" -set_cover_merge=1 -timeout=10 -close_fd_mask=3 "$@" "$minimal" "$repo" "$found"
  rm -f "$repo"/*
  mv "$minimal"/* "$repo"/
  rmdir "$minimal"
}

mkdir -p build/fuzz/crashes
failed=()
for target in "${targets[@]}"; do
  bin=build/fuzz/tests/fuzz/${target}_fuzz
  repo=tests/fuzz/corpus/$target
  [ -x "$bin" ] || die "no fuzz target $bin"
  mkdir -p "$repo"
  found=$(mktemp -d)
  : >"build/fuzz/$target.log"
  # New inputs go to $found (the first folder); the repository's corpus is only read here.
  # (FUZZ_SECONDS=0 skips fuzzing: libFuzzer would take 0 as "no limit".)
  if ((seconds > 0)); then
    log "fuzz $target: $seconds s from $(ls "$repo" | wc -l) corpus files"
    if ! "$bin" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 -close_fd_mask=3 \
        -artifact_prefix="build/fuzz/crashes/$target-" "$found" "$repo" >"build/fuzz/$target.log" 2>&1; then
      tail -40 "build/fuzz/$target.log" >&2
      log "fuzz $target FAILED: the input is in build/fuzz/crashes/, the log in build/fuzz/$target.log"
      failed+=("$target")
    fi
  fi
  if [ "${FUZZ_MINIMIZE:-0}" = 1 ]; then
    minimize "$bin" "$repo" "$found" >>"build/fuzz/$target.log" 2>&1
    if (($(ls "$repo" | wc -l) > 200)); then  # still big: keep one input per edge, not per hit count
      minimize "$bin" "$repo" "$found" -use_counters=0 >>"build/fuzz/$target.log" 2>&1
    fi
  else
    "$bin" -merge=1 -timeout=10 -close_fd_mask=3 "$repo" "$found" >>"build/fuzz/$target.log" 2>&1
  fi
  rm -rf "$found"
  files=$(ls "$repo" | wc -l)
  kib=$(( $(cat "$repo"/* | wc -c) / 1024 ))  # the bytes themselves, not the disk blocks
  log "fuzz $target: corpus now $files files, $kib KiB"
  if ((files > 200 || kib > 1024)) && [ "${FUZZ_MINIMIZE:-0}" != 1 ]; then
    log "fuzz $target: the corpus passed 200 files or 1 MiB: FUZZ_MINIMIZE=1 shrinks it"
  fi
done
if ((${#failed[@]})); then die "fuzzing found failures in: ${failed[*]}"; fi
log "fuzzing found nothing; new corpus files (git status tests/fuzz/corpus) are worth committing"

#!/usr/bin/env bash
# test.sh BUILD_DIR: the whole suite. Unit tests (release and ASan/UBSan), bounded libFuzzer runs,
# then the functional tests with real VMs. Under CI=true a VM that cannot start is a failure.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:-build/release}
cd "$KILN_ROOT"
failed=()
step() {
  local name=$1; shift
  log "test: $name"
  if "$@"; then log "test: $name passed"; else log "test: $name FAILED"; failed+=("$name"); fi
}

step "unit tests" "$build/tests/kiln_unit_tests" --gtest_brief=1

scripts/cmake-build.sh build/asan Debug -DKILN_SANITIZE=ON
step "unit tests under ASan/UBSan" env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  build/asan/tests/kiln_unit_tests --gtest_brief=1

CXX=clang++ CC=clang scripts/cmake-build.sh build/fuzz Debug -DKILN_FUZZ=ON
for target in frame_decoder agent_messages; do
  corpus=$(mktemp -d)
  cp tests/fuzz/corpus/$target/* "$corpus"/
  step "fuzz $target (${KILN_FUZZ_SECONDS:-30} s)" build/fuzz/tests/fuzz/${target}_fuzz -max_total_time="${KILN_FUZZ_SECONDS:-30}" \
    -print_final_stats=0 "$corpus" -close_fd_mask=3
  rm -rf "$corpus"
done

step "functional tests (real VMs, TCG here)" "$build/tests/kiln_vm_tests" --gtest_brief=1

if ((${#failed[@]})); then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all tests passed"

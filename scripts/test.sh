#!/usr/bin/env bash
# test.sh BUILD_DIR: the whole suite. The layering check, unit tests (release and ASan/UBSan), bounded libFuzzer runs,
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

# The include direction (kilnd -> ci -> daemon -> vm -> proto -> base; agent -> proto -> base) and
# QMP only in src/vm: first the checker's own planted violations, then the tree.
step "layering checker finds planted violations" python3 tests/layers/check_layers.py --self-test
step "layering (includes point down, QMP only in src/vm)" python3 tests/layers/check_layers.py src

step "unit tests" "$build/tests/kiln_unit_tests" --gtest_brief=1
# packaging/kilnd.service: systemd-analyze verify and security, offline (skipped without systemd-analyze).
step "systemd unit (verify, exposure, every line explained)" env KILN_BUILD="$build" /usr/bin/python3 -m pytest -q \
  tests/packaging

scripts/cmake-build.sh build/asan Debug -DKILN_SANITIZE=ON
step "unit tests under ASan/UBSan" env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  build/asan/tests/kiln_unit_tests --gtest_brief=1

CXX=clang++ CC=clang scripts/cmake-build.sh build/fuzz Debug -DKILN_FUZZ=ON
fuzz() {  # fuzz TARGET: a bounded libFuzzer run from the checked-in corpus; its log is shown only on failure
  local target=$1 corpus log
  corpus=$(mktemp -d)
  log=$(mktemp)
  cp tests/fuzz/corpus/"$target"/* "$corpus"/
  if build/fuzz/tests/fuzz/"${target}"_fuzz -max_total_time="${KILN_FUZZ_SECONDS:-30}" -print_final_stats=1 \
      -close_fd_mask=3 "$corpus" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units' "$log" | sed "s/^/[kiln] fuzz $target: /" >&2 || true
    rm -rf "$corpus" "$log"
  else
    tail -40 "$log" >&2
    rm -rf "$corpus"
    return 1
  fi
}
for target in frame_decoder agent_messages pipeline junit network_policy api_request tar_check github_webhook exec_output; do
  step "fuzz $target (${KILN_FUZZ_SECONDS:-30} s)" fuzz "$target"
done

step "functional tests (real VMs, TCG here)" "$build/tests/kiln_vm_tests" --gtest_brief=1

# Debian's python3 (with python3-pytest and python3-yaml), not whatever python3 is first on PATH.
py=/usr/bin/python3
step "API tests (real kilnd, real VMs)" env KILN_BUILD="$build" "$py" -m pytest -q tests/api
step "Python SDK tests (real kilnd, real VMs)" env KILN_BUILD="$build" "$py" -m pytest -q sdk/python/tests
step "CI job tests (real kilnd, real VMs from the base template)" env KILN_BUILD="$build" "$py" -m pytest -q \
  tests/ci/test_jobs.py tests/ci/test_tenancy.py
step "GitHub webhook and GitLab executor tests (real kilnd)" env KILN_BUILD="$build" "$py" -m pytest -q \
  tests/ci/test_github_webhook.py tests/ci/test_gitlab_executor.py

if ((${#failed[@]})); then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all tests passed"

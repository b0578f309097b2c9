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
  local rc=0
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then log "test: $name passed"; return; fi
  # A test binary killed by a signal prints no summary (and loses its buffered output): say so.
  if [ "$rc" -gt 128 ]; then log "test: $name FAILED (exit $rc: killed by signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))))"
  else log "test: $name FAILED (exit $rc)"; fi
  failed+=("$name")
}

# The include direction (kilnd -> ci -> daemon -> vm -> proto -> base; agent -> proto -> base) and
# QMP only in src/vm: first the checker's own planted violations, then the tree.
step "layering checker finds planted violations" python3 tests/layers/check_layers.py --self-test
step "layering (includes point down, QMP only in src/vm)" python3 tests/layers/check_layers.py src

# Line-buffered, so that what a failing run printed is not lost if the binary then crashes.
step "unit tests" stdbuf -oL "$build/tests/kiln_unit_tests" --gtest_brief=1
# packaging/kilnd.service: systemd-analyze verify and security, offline (skipped without systemd-analyze).
step "systemd unit (verify, exposure, every line explained)" env KILN_BUILD="$build" /usr/bin/python3 -m pytest -q \
  tests/packaging

scripts/cmake-build.sh build/asan Debug -DKILN_SANITIZE=ON
# Not under stdbuf: its LD_PRELOAD puts libstdbuf before the ASan runtime, which ASan refuses
# ("ASan runtime does not come first"); GoogleTest flushes stdout after each test anyway.
step "unit tests under ASan/UBSan" env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  build/asan/tests/kiln_unit_tests --gtest_brief=1

CXX=clang++ CC=clang scripts/cmake-build.sh build/fuzz Debug -DKILN_FUZZ=ON
# fuzz TARGET: a bounded libFuzzer run from a temp copy of the checked-in corpus (what it finds is
# not written into the repository: `make fuzz` does that); its log is shown only on failure. An
# input that takes over 10 s (a hang, an exponential case) is a failure like a crash.
fuzz() {
  local target=$1 corpus log
  corpus=$(mktemp -d)
  log=$(mktemp)
  cp tests/fuzz/corpus/"$target"/* "$corpus"/
  if build/fuzz/tests/fuzz/"${target}"_fuzz -max_total_time="${KILN_FUZZ_SECONDS:-15}" -timeout=10 \
      -print_final_stats=1 -close_fd_mask=3 -artifact_prefix="$corpus/" "$corpus" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units' "$log" | sed "s/^/[kiln] fuzz $target: /" >&2 || true
    rm -rf "$corpus" "$log"
  else
    tail -40 "$log" >&2
    mkdir -p build/fuzz/crashes
    cp "$corpus"/crash-* "$corpus"/timeout-* "$corpus"/oom-* "$corpus"/leak-* build/fuzz/crashes/ 2>/dev/null || true
    log "fuzz $target: the input that failed is in build/fuzz/crashes/"
    rm -rf "$corpus" "$log"
    return 1
  fi
}
# 17 targets at 15 s each: about 4.5 minutes of the suite.
for target in $(fuzz_targets); do
  step "fuzz $target (${KILN_FUZZ_SECONDS:-15} s)" fuzz "$target"
done

step "functional tests (real VMs, TCG here)" "$build/tests/kiln_vm_tests" --gtest_brief=1

# Debian's python3 (with python3-pytest and python3-yaml), not whatever python3 is first on PATH.
py=/usr/bin/python3
step "API tests (real kilnd, real VMs)" env KILN_BUILD="$build" "$py" -m pytest -q tests/api
# E2B's unmodified JS SDK, two releases (tests/e2b/package.json, installed into $KILN_CACHE by
# scripts/fetch-e2b-sdk.sh), against kilnd's E2B listener under node --test (docs/e2b.md).
step "E2B SDK tests (real kilnd with its E2B listener, real VMs)" env KILN_BUILD="$build" "$py" -m pytest -q tests/e2b
step "Python SDK tests (real kilnd, real VMs)" env KILN_BUILD="$build" "$py" -m pytest -q sdk/python/tests
step "CI job tests (real kilnd, real VMs from the base template)" env KILN_BUILD="$build" "$py" -m pytest -q \
  tests/ci/test_jobs.py tests/ci/test_tenancy.py tests/ci/test_code_sources.py tests/ci/test_disk_hygiene.py \
  tests/ci/test_pipeline_shards.py tests/ci/test_pipelines.py
# The webhook tests sign with @octokit/webhooks-methods (fetched on first use by
# scripts/fetch-webhook-methods.sh); test_webhook_signature.py checks that signer against hmac first.
step "GitHub webhook and GitLab executor tests (real kilnd)" env KILN_BUILD="$build" "$py" -m pytest -q \
  tests/ci/test_webhook_signature.py tests/ci/test_github_webhook.py tests/ci/test_gitlab_executor.py
# The dashboard in headless Debian Chromium (docs/dashboard.md); screenshots in $build/test-output/ui.
step "dashboard tests (real browser, real kilnd and VMs)" env KILN_BUILD="$build" "$py" -m pytest -q tests/ui
# Several kilnd hosts on one PostgreSQL of the tests' own (initdb/pg_ctl as postgres; docs/fleet.md).
step "fleet tests (real PostgreSQL, several kilnd hosts, real VMs)" env KILN_BUILD="$build" "$py" -m pytest -q tests/fleet

if ((${#failed[@]})); then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all tests passed"

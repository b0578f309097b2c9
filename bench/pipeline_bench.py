#!/usr/bin/env python3
"""pipeline_bench: a test suite split in 4 shards, on a real kilnd with real VMs (the `base` template),
see docs/pipeline.md and issue 16's "Numbers".

The suite's install (INSTALL below) writes 2,000 small C sources (a shell loop: 2,000 files created
and written in the guest) and compiles 200 of them into a shared library with gcc: a few seconds
under TCG, the part a fork fan-out does once. Each shard's tests (TEST below) compile a small test
program against that library, run it over its share of the 200 functions and write a JUnit report.

The same suite as four jobs, each timed as the job's wall time (started -> finished):
  (a) fork fan-out: `parallel: 4`, `fork_after: install` (install once, fork the warm VM 4 times);
  (b) 4 fresh VMs that each install: `parallel: 4`, no fork_after;
  (c) 4 fresh VMs from a bake: `bake.run` is the install, `parallel: 4` (the bake is made before
      the timing, by one untimed job);
  (d) one VM running the 4 shards in a row (no `parallel`).
The four run in turns (a, b, c, d, a, b, ...) so that the host's load falls on each alike;
KILN_BENCH_PIPELINE_RUNS (5) runs of each; KILN_BENCH_PIPELINE_ROUNDS (1) makes the shards' tests
that many times longer (the same install). One CI worker: one job at a time. Prints medians and p99
(with few runs, p99 is the slowest run) and the ratios the issue sets targets for: (b)/(a) >= 1.5,
(a)/(c) <= 1.2. Run: KILN_BUILD=build/release bench/pipeline_bench.py"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kilnd import Api, pct, start_kilnd  # noqa: E402
from ci_bench import make_repo, wait_job  # noqa: E402

# The install: sources written by a shell loop, then a shared library built with gcc. The files
# land in /work/src/deps, the checkout: a fork's children and a bake's restores both have them.
INSTALL = r"""set -e
mkdir -p deps
i=0
while [ $i -lt 2000 ]; do
  echo "int f$i(int x) { return x * $i + $((i % 7)); }" > deps/f$i.c
  i=$((i + 1))
done
cat $(seq -f 'deps/f%g.c' 0 199) > deps/lib.c
gcc -O1 -shared -fPIC -o deps/libsuite.so deps/lib.c
"""

# One shard's tests: its quarter of the library's 200 functions, checked by a compiled program,
# built and run ROUNDS times (KILN_BENCH_PIPELINE_ROUNDS: a longer suite, the same install).
TEST = r"""set -e
n=${KILN_SHARD_COUNT:-1}; s=${KILN_SHARD_INDEX:-0}
mkdir -p reports
{ echo '#include <stdio.h>'
  i=$s; while [ $i -lt 200 ]; do echo "int f$i(int);"; i=$((i + n)); done
  echo 'int main(void) { int bad = 0;'
  i=$s; while [ $i -lt 200 ]; do echo "if (f$i(2) != 2 * $i + $((i % 7))) bad++;"; i=$((i + n)); done
  echo 'puts(bad ? "bad" : "ok"); return bad != 0; }'
} > reports/t$s.c
for round in $(seq ROUNDS); do
  gcc -O0 -o reports/t$s reports/t$s.c -Ldeps -lsuite
  LD_LIBRARY_PATH=deps ./reports/t$s
done
cases=$(( (200 - s + n - 1) / n ))
echo "<testsuite tests=\"$cases\" failures=\"0\"></testsuite>" > reports/shard-$s.xml
"""


def indent(script: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in script.splitlines())


def job_file(kind: str, rounds: int) -> str:
    test = TEST.replace("ROUNDS", str(rounds))
    steps_install = "      - name: install\n        run: |\n" + indent(INSTALL, 10)
    steps_test = "      - name: test\n        run: |\n" + indent(test, 10)
    head = "jobs:\n  suite:\n    template: base\n    junit: [\"reports/*.xml\"]\n    timeout_seconds: 1800\n"
    if kind == "fork":
        return head + "    parallel: 4\n    fork_after: install\n    steps:\n" + steps_install + steps_test
    if kind == "fresh":
        return head + "    parallel: 4\n    steps:\n" + steps_install + steps_test
    if kind == "bake":
        return (head + "    parallel: 4\n    bake:\n      run: |\n" + indent(INSTALL, 8) + "    steps:\n" + steps_test)
    # One VM, the 4 shards' tests in a row.
    in_a_row = "for s in 0 1 2 3; do KILN_SHARD_INDEX=$s KILN_SHARD_COUNT=4 sh -e -c \"$TEST\"; done"
    return (head + "    env:\n      TEST: |\n" + indent(test, 8) + "    steps:\n" + steps_install +
            "      - name: test\n        run: |\n" + indent(in_a_row, 10))


LABELS = {"fork": "(a) fork fan-out: install once, fork 4",
          "fresh": "(b) 4 fresh VMs, each installing",
          "bake": "(c) 4 fresh VMs from a bake",
          "serial": "(d) one VM, the 4 shards in a row"}


def run(api: Api, repo: Path, sha: str) -> dict:
    job = api.call("POST", "/v1/jobs", {"repo": str(repo), "sha": sha})
    done = wait_job(api, job["id"])
    if done["junit"] is None or done["junit"]["tests"] != 200:
        raise RuntimeError(f"job {job['id']} did not count the suite's 200 tests: {done['junit']}")
    return done


def main() -> int:
    runs = int(os.environ.get("KILN_BENCH_PIPELINE_RUNS", "5"))
    rounds = int(os.environ.get("KILN_BENCH_PIPELINE_ROUNDS", "1"))
    kilnd, api, accel = start_kilnd("pipeline-bench", {"KILN_CI_WORKERS": "1"})
    work = Path(tempfile.mkdtemp(prefix="kiln-pipeline-bench-"))
    try:
        repos = {}
        for kind in LABELS:
            repos[kind] = (work / kind, make_repo(work / kind, {".kiln.yml": job_file(kind, rounds)}))
        # Untimed: the base template's first restore, and (c)'s bake.
        print(f"pipeline_bench ({accel}): warming up, and making (c)'s bake", flush=True)
        warm = {kind: run(api, *repos[kind]) for kind in ("serial", "bake")}
        if warm["bake"]["bake_hit"]:
            raise RuntimeError("the bake existed before its first job")
        install_ms = next(s["duration_ms"] for s in warm["serial"]["steps"] if s["name"] == "install")
        test_ms = next(s["duration_ms"] for s in warm["serial"]["steps"] if s["name"] == "test")
        print(f"the install alone: {install_ms} ms; the 4 shards' tests in a row: {test_ms} ms (one VM)", flush=True)

        wall: dict[str, list[int]] = {kind: [] for kind in LABELS}
        for i in range(runs):
            for kind in LABELS:
                job = run(api, *repos[kind])
                if kind == "bake" and not job["bake_hit"]:
                    raise RuntimeError(f"(c) missed its bake: {job['id']}")
                wall[kind].append(job["duration_ms"])
            print(f"  run {i + 1}/{runs}: " + ", ".join(f"{k} {wall[k][-1]} ms" for k in LABELS), flush=True)

        med = {k: statistics.median(v) for k, v in wall.items()}
        p99 = {k: pct(v, 99) for k, v in wall.items()}
        print(f"job wall time, a suite in 4 shards (tests built and run {rounds}x), {runs} runs each, {accel}:")
        for kind, label in LABELS.items():
            print(f"  {label:42s} p50 {med[kind]:7.0f} ms   p99 {p99[kind]:7.0f} ms   "
                  f"= {med[kind] / med['fork']:.2f}x (a)'s median")
        print(f"  (b)/(a) {med['fresh'] / med['fork']:.2f}x (target >= 1.5x); (a)/(c) {med['fork'] / med['bake']:.2f}x "
              f"(target <= 1.2x); (d)/(a) {med['serial'] / med['fork']:.2f}x")
        return 0
    finally:
        kilnd.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

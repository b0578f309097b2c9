#!/usr/bin/env python3
"""e2b_bench: E2B's unmodified JS SDK through kilnd's E2B listener against Kiln's own API, in the
same run on the same kilnd (docs/e2b.md, docs/benchmarks.md): `Sandbox.create()` to the first
`commands.run('echo hi')` output, against POST /v1/sandboxes + POST .../exec of the same command
(template base both ways), KILN_BENCH_E2B_ROUNDS (20) rounds taken in turns (bench/e2b_bench.mjs).
Prints p50 and p99 of each and the ratio E2B / Kiln (target: within 1.3x), with the accelerator.
The SDK comes from scripts/fetch-e2b-sdk.sh. Run: KILN_BUILD=build/release bench/e2b_bench.py"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))

from kilnd_fixture import Kilnd, free_port  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    out = subprocess.run([str(REPO / "scripts" / "fetch-e2b-sdk.sh")], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"scripts/fetch-e2b-sdk.sh failed:\n{out.stderr}")
    sdk_entry = Path(out.stdout.strip().splitlines()[-1]) / "e2b" / "dist" / "index.mjs"

    listen = f"127.0.0.1:{free_port()}"
    kilnd = Kilnd(extra_env={"KILN_E2B_LISTEN": listen}, name="e2b-bench")
    try:
        made = subprocess.run([str(kilnd.binary), "token", "create", "--e2b", "--name", "bench", "--scope", "sandboxes"],
                              env=kilnd.env(), capture_output=True, text=True, timeout=60, check=True)
        key = made.stdout.strip().splitlines()[-1]
        kilnd.start()
        accel = json.loads(subprocess.run(["curl", "-s", kilnd.url + "/healthz"], capture_output=True, text=True).stdout)["accel"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
        # One key for both: an E2B API key is a Kiln token, so both paths run as the same tenant.
        env.update({"E2B_API_URL": f"http://{listen}", "E2B_SANDBOX_URL": f"http://{listen}", "E2B_API_KEY": key,
                    "KILN_API_URL": kilnd.url, "KILN_TOKEN": key, "KILN_E2B_SDK_ENTRY": str(sdk_entry)})
        run = subprocess.run(["node", str(REPO / "bench" / "e2b_bench.mjs")], env=env, capture_output=True, text=True,
                             timeout=3600)
        if run.returncode != 0:
            raise SystemExit(f"e2b_bench.mjs failed:\n{run.stderr[-4000:]}")
        times = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        kilnd.cleanup()

    e2b, kiln = times["e2b"], times["kiln"]
    print(f"create to first command output (template base, {len(e2b)} rounds each, in turns; accel {accel})")
    print(f"  E2B SDK via the E2B listener: p50 {percentile(e2b, 50):7.1f} ms  p99 {percentile(e2b, 99):7.1f} ms")
    print(f"  Kiln REST API (same kilnd):   p50 {percentile(kiln, 50):7.1f} ms  p99 {percentile(kiln, 99):7.1f} ms")
    print(f"  ratio E2B / Kiln: p50 {percentile(e2b, 50) / percentile(kiln, 50):.2f}x  "
          f"p99 {percentile(e2b, 99) / percentile(kiln, 99):.2f}x  (target <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

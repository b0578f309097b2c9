#!/usr/bin/env python3
"""pause_bench: pause and resume on a real kilnd with real VMs (docs/pause.md), for a `tiny` and a
`base` sandbox, beside baselines measured in the same run and on the same kilnd:

- pause: POST /v1/sandboxes/{id}/pause, answered once the VM is saved and gone (client-side ms);
- resume: POST .../resume, answered once exec works;
- baseline "snapshot": POST .../snapshot of a running sandbox (the same save, the VM runs on);
- baseline "create from snapshot": POST /v1/sandboxes from that user snapshot (the same restore,
  a new sandbox);
- what a paused sandbox holds: its snapshot's bytes on disk (paused_bytes) and host RAM (the QEMU
  RSS before the pause, and after it, which is 0: there is no QEMU process).

p50 and p99 over KILN_BENCH_PAUSE_RUNS (20) pause/resume cycles of one sandbox per template (a
background process ticking in it throughout, as a real workload), and over the same number of
snapshots and creates. Prints the accelerator. Needs the base image.
Run: KILN_BUILD=build/release bench/pause_bench.py"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))

from bench_kilnd import Api, pct, start_kilnd  # noqa: E402  (bench/, the script's own folder)
from kilnd_fixture import Kilnd  # noqa: E402

TICKER = ("setsid sh -c 'while :; do date +%s%N >> /tmp/ticks; sleep 0.2; done' </dev/null >/dev/null 2>&1 &")


def timed(api: Api, method: str, path: str, body=None) -> tuple[dict, float]:
    t0 = time.monotonic()
    doc = api.call(method, path, body)
    return doc, (time.monotonic() - t0) * 1000


def rss_kib(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def line(label: str, values: list[float]) -> str:
    return f"  {label:32s} p50 {statistics.median(values):7.0f} ms   p99 {pct(values, 99):7.0f} ms   (n={len(values)})"


def bench_template(api: Api, kilnd: Kilnd, template: str, runs: int) -> None:
    sb = api.call("POST", "/v1/sandboxes", {"template": template, "ttl_seconds": 3600})
    sid = sb["id"]
    api.call("POST", f"/v1/sandboxes/{sid}/exec", {"cmd": TICKER})
    pauses, resumes, sizes, rss_before, qemu_after = [], [], [], [], []
    for _ in range(runs):
        qemus = kilnd.qemu_pids()
        rss_before.append(sum(rss_kib(p) for p in qemus))
        paused, ms = timed(api, "POST", f"/v1/sandboxes/{sid}/pause")
        pauses.append(ms)
        sizes.append(paused["paused_bytes"])
        qemu_after.append(len(kilnd.qemu_pids()))
        _, ms = timed(api, "POST", f"/v1/sandboxes/{sid}/resume")
        resumes.append(ms)
    ticks = api.call("POST", f"/v1/sandboxes/{sid}/exec", {"cmd": "wc -l < /tmp/ticks"})["stdout"].strip()

    snaps, creates = [], []
    for _ in range(runs):
        snap, ms = timed(api, "POST", f"/v1/sandboxes/{sid}/snapshot", {})
        snaps.append(ms)
        child, ms = timed(api, "POST", "/v1/sandboxes", {"template": snap["id"], "ttl_seconds": 600})
        creates.append(ms)
        api.call("DELETE", f"/v1/sandboxes/{child['id']}")
        api.call("DELETE", f"/v1/snapshots/{snap['id']}")
    api.call("DELETE", f"/v1/sandboxes/{sid}")

    print(f"{template} ({sb['vcpus']} vCPU, {sb['memory_mib']} MiB):")
    print(line("pause", pauses))
    print(line("resume (to exec working)", resumes))
    print(line("baseline: snapshot (runs on)", snaps))
    print(line("baseline: create from snapshot", creates))
    print(f"  paused: disk {statistics.median(sizes) / 2**20:.1f} MiB (paused_bytes p50, max {max(sizes) / 2**20:.1f}); "
          f"host RAM 0 (QEMU processes while paused: max {max(qemu_after)}; QEMU RSS while running p50 "
          f"{statistics.median(rss_before) / 1024:.0f} MiB)")
    print(f"  the background process ticked {ticks} times across {runs} pauses and resumes", flush=True)


def main() -> int:
    runs = int(os.environ.get("KILN_BENCH_PAUSE_RUNS", "20"))
    templates = os.environ.get("KILN_BENCH_PAUSE_TEMPLATES", "tiny,base").split(",")
    # No spare QEMU: every QEMU on the data dir is the sandbox's (the RSS and the count are exact).
    kilnd, api, accel = start_kilnd("pause-bench", {"KILN_KEEP_SPARE": "false"})
    try:
        print(f"pause_bench ({accel}): {runs} pause/resume cycles per template; warming up (bakes)", flush=True)
        for template in templates:
            api.call("DELETE", f"/v1/sandboxes/{api.call('POST', '/v1/sandboxes', {'template': template})['id']}")
        for template in templates:
            bench_template(api, kilnd, template, runs)
    finally:
        kilnd.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

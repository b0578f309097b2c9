#!/usr/bin/env python3
"""density_bench: how create time and memory grow with the number of idle `tiny` sandboxes alive on
one host (issue 20: >= 300 alive, PSS per idle clone <= 15 MiB, create p50 at 300 <= 1.5x at 0).

On a kilnd of its own, with its limits raised so that 300+ sandboxes fit, for each step of alive
counts (KILN_BENCH_DENSITY_STEPS, default 0,25,50,100,150,200,250,300; KILN_BENCH_DENSITY_MAX stops
earlier): create idle sandboxes up to that count (each checked with one exec), then measure
KILN_BENCH_DENSITY_CREATES (15) API creates (POST /v1/sandboxes until 201; each then deleted,
untimed) and record PSS per sandbox QEMU (mean and median of smaps_rollup), host MemAvailable and the
used memory's growth since step 0, the load average, kilnd's RSS and threads, and the idle guests'
CPU (their QEMUs' CPU time over KILN_BENCH_DENSITY_IDLE_SECONDS, 10). One row per step; at the end,
where one idle QEMU's PSS goes (its smaps grouped by mapping). A step that cannot be reached (an
error from kilnd, MemAvailable under 2 GiB) ends the run there, with what was measured.
Prints the accelerator. Run: KILN_BUILD=build/release /usr/bin/python3 bench/density_bench.py"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass

from bench_kilnd import Api, KilndLog, pct, start_kilnd
from kilnd_fixture import Kilnd, wait_until
import proc_stats

TEMPLATE = "tiny"
TEMPLATE_MIB = 256
IDLE_TTL_SECONDS = 6 * 3600  # the whole run, with room: an idle sandbox must not expire mid-run
MEASURED_TTL_SECONDS = 600
MIN_AVAILABLE_KIB = 2 * 1024 * 1024  # below this the host, not Kiln, would set the figures
SPARE_WAIT_SECONDS = 10


@dataclass
class Step:
    alive: int
    creates_ms: list[float]
    pss_kib: list[int]
    available_kib: int
    used_growth_kib: int
    load: tuple[float, float, float]
    kilnd_rss_kib: int
    kilnd_threads: int
    idle_cpu_percent: list[float]  # per QEMU, % of one core
    fill_seconds: float = 0.0


class Density:
    def __init__(self, kilnd: Kilnd, api: Api):
        self.kilnd, self.api, self.log = kilnd, api, KilndLog(kilnd)
        self.alive: dict[str, int] = {}  # sandbox id -> its QEMU's pid
        self.used_at_zero_kib: int | None = None
        self.spare = False  # whether kilnd keeps a spare QEMU for the template (keep_spare)

    def memory_low(self) -> str | None:
        available = proc_stats.meminfo_kib()["MemAvailable"]
        if available < MIN_AVAILABLE_KIB:
            return f"host MemAvailable {available / 2**20:.2f} GiB is under 2 GiB"
        return None

    def wait_for_spare(self) -> None:
        """Waits (up to SPARE_WAIT_SECONDS) until a QEMU that is no sandbox's is up and idle: the
        template's spare, so that every timed create takes the same path (kilnd's default
        keep_spare). Idle (at most one clock tick of CPU over 0.3 s) because a warm spare
        (warm_spare, the default) exists as a process well before its warm-up ends and it stops."""
        if not self.spare:
            return
        sandboxes = set(self.alive.values())

        def spare_idle() -> bool:
            spares = set(self.kilnd.qemu_pids()) - sandboxes
            before = {pid: proc_stats.cpu_ticks(pid) for pid in spares}
            time.sleep(0.3)
            return any(b is not None and (a := proc_stats.cpu_ticks(pid)) is not None and a - b <= 1
                       for pid, b in before.items())

        wait_until(spare_idle, SPARE_WAIT_SECONDS, interval=0.02)

    def fill(self, target: int) -> None:
        """Idle sandboxes up to `target`, each answering one exec; raises RuntimeError with why not."""
        while len(self.alive) < target:
            if low := self.memory_low():
                raise RuntimeError(low)
            sb = self.api.call("POST", "/v1/sandboxes", {"template": TEMPLATE, "ttl_seconds": IDLE_TTL_SECONDS})
            self.alive[sb["id"]] = self.log.qemu_pid(sb["id"])
            out = self.api.call("POST", f"/v1/sandboxes/{sb['id']}/exec", {"cmd": "echo up"})
            if out["exit_code"] != 0 or out["stdout"].strip() != "up":
                raise RuntimeError(f"sandbox {sb['id']} answered its exec with {out}")

    def timed_creates(self, count: int) -> list[float]:
        times = []
        for _ in range(count):
            if low := self.memory_low():
                raise RuntimeError(low)
            self.wait_for_spare()
            t0 = time.monotonic()
            sb = self.api.call("POST", "/v1/sandboxes", {"template": TEMPLATE, "ttl_seconds": MEASURED_TTL_SECONDS})
            times.append((time.monotonic() - t0) * 1000)
            self.api.call("DELETE", f"/v1/sandboxes/{sb['id']}")
        return times

    def idle_cpu(self, seconds: float) -> list[float]:
        """Each idle sandbox QEMU's CPU over `seconds`, in % of one core."""
        before = {pid: proc_stats.cpu_seconds(pid) for pid in self.alive.values()}
        time.sleep(seconds)
        out = []
        for pid, start in before.items():
            end = proc_stats.cpu_seconds(pid)
            if start is not None and end is not None:
                out.append((end - start) / seconds * 100)
        return out

    def measure(self, creates: int, idle_seconds: float) -> Step:
        # Idle CPU first, while nothing else of ours runs; the creates after it.
        idle = self.idle_cpu(idle_seconds) if self.alive else []
        times = self.timed_creates(creates)
        pss = [p for p in (proc_stats.pss_kib(pid) for pid in self.alive.values()) if p is not None]
        if len(pss) != len(self.alive):
            raise RuntimeError(f"{len(self.alive) - len(pss)} of the idle sandboxes' QEMUs are gone")
        mem = proc_stats.meminfo_kib()
        used = mem["MemTotal"] - mem["MemAvailable"]
        if self.used_at_zero_kib is None:
            self.used_at_zero_kib = used
        return Step(len(self.alive), times, pss, mem["MemAvailable"], used - self.used_at_zero_kib,
                    proc_stats.load_average(), proc_stats.status_field(self.kilnd.pid, "VmRSS"),
                    proc_stats.status_field(self.kilnd.pid, "Threads"), idle)

    def delete_all(self) -> None:
        for sid in list(self.alive):
            try:
                self.api.call("DELETE", f"/v1/sandboxes/{sid}")
            except RuntimeError as e:
                print(f"  delete {sid}: {e}", flush=True)
            del self.alive[sid]


def print_row(step: Step, baseline_p50: float | None) -> None:
    p50 = statistics.median(step.creates_ms)
    ratio = f"{p50 / baseline_p50:5.2f}x" if baseline_p50 else "    -"
    pss = (f"{sum(step.pss_kib) / len(step.pss_kib) / 1024:6.1f} {statistics.median(step.pss_kib) / 1024:6.1f}"
           if step.pss_kib else f"{'-':>6s} {'-':>6s}")
    cpu = (f"{statistics.mean(step.idle_cpu_percent):5.2f} {sum(step.idle_cpu_percent) / 100:5.2f}"
           if step.idle_cpu_percent else f"{'-':>5s} {'-':>5s}")
    print(f"{step.alive:5d} {p50:7.1f} {pct(step.creates_ms, 99):7.1f} {ratio} {pss} "
          f"{step.available_kib / 2**20:6.2f} {step.used_growth_kib / 2**20:6.2f} {cpu} "
          f"{step.load[0]:5.2f} {step.kilnd_rss_kib / 1024:6.1f} {step.kilnd_threads:4d} {step.fill_seconds:6.0f}", flush=True)


HEADER = ("alive  create ms   ratio  PSS/QEMU MiB  MemAvail  used+  idle CPU     load  kilnd        fill\n"
          "          p50     p99  p50/0   mean median      GiB   GiB  %/VM cores    1m   RSS MiB thr     s")


def print_breakdown(pid: int, alive: int) -> None:
    groups = proc_stats.smaps_breakdown(pid, TEMPLATE_MIB * 1024)
    print(f"\nwhere one idle {TEMPLATE} QEMU's PSS goes (pid {pid}, /proc/PID/smaps, with {alive} sandboxes alive): "
          f"{sum(g.pss_kib for g in groups.values()) / 1024:.1f} MiB")
    print(f"  {'PSS MiB':>8s} {'RSS MiB':>8s} {'mapped MiB':>10s} {'maps':>5s}  what")
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1].pss_kib):
        print(f"  {g.pss_kib / 1024:8.1f} {g.rss_kib / 1024:8.1f} {g.size_kib / 1024:10.1f} {g.mappings:5d}  {name}")
        for part_name, part in g.parts.items():
            print(f"  {part.pss_kib / 1024:8.1f} {part.rss_kib / 1024:8.1f} {'':10s} {'':5s}    {part_name}")


def parse_steps() -> list[int]:
    steps = sorted({int(s) for s in os.environ.get("KILN_BENCH_DENSITY_STEPS", "0,25,50,100,150,200,250,300").split(",")})
    if cap := os.environ.get("KILN_BENCH_DENSITY_MAX"):
        steps = [s for s in steps if s <= int(cap)]
    if not steps or steps[0] < 0:
        raise SystemExit("KILN_BENCH_DENSITY_STEPS: give alive counts >= 0, e.g. 0,5,10")
    return steps


def main() -> int:
    steps = parse_steps()
    creates = int(os.environ.get("KILN_BENCH_DENSITY_CREATES", "15"))
    idle_seconds = float(os.environ.get("KILN_BENCH_DENSITY_IDLE_SECONDS", "10"))
    # Room for the idle ones, the one being timed, and a few: every limit that caps live sandboxes.
    limit = steps[-1] + 16
    config = {
        "KILN_MAX_SANDBOXES": str(limit),
        # Nominal guest memory; the clones share the template's memory file copy-on-write, and the
        # MemAvailable floor above is the guard that matters.
        "KILN_MAX_MEMORY_MIB": str(limit * TEMPLATE_MIB * 2),
        "KILN_MAX_TTL_SECONDS": str(2 * IDLE_TTL_SECONDS),
        # One jail uid per QEMU (the sandboxes' and the spare); the default 65536 covers this.
        "KILN_JAIL_UID_COUNT": str(max(65536, limit + 16)),
    }
    # Each sandbox holds a few fds in kilnd (QMP, agent, console, pidfd), and kilnd inherits ours.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kilnd, api, accel = start_kilnd("density-bench", config, quota=f"sandboxes={limit}")
    density = Density(kilnd, api)
    rows: list[Step] = []
    stopped = None
    try:
        print(f"density_bench ({accel}): steps {','.join(map(str, steps))} idle {TEMPLATE} sandboxes; "
              f"{creates} timed creates per step; warming up (bakes {TEMPLATE})", flush=True)
        api.call("DELETE", f"/v1/sandboxes/{api.call('POST', '/v1/sandboxes', {'template': TEMPLATE})['id']}")
        density.spare = bool(wait_until(kilnd.qemu_pids, SPARE_WAIT_SECONDS, interval=0.05))
        print(f"spare QEMU for {TEMPLATE}: {'yes; each timed create waits for it first' if density.spare else 'none'}",
              flush=True)
        print(HEADER, flush=True)
        for target in steps:
            try:
                t0 = time.monotonic()
                density.fill(target)
                fill_s = time.monotonic() - t0
                rows.append(density.measure(creates, idle_seconds))
            except RuntimeError as e:
                stopped = f"step {target} not reached ({len(density.alive)} alive): {e}"
                print(f"stopped: {stopped}", flush=True)
                break
            rows[-1].fill_seconds = fill_s
            print_row(rows[-1], statistics.median(rows[0].creates_ms) if rows[0].alive == 0 else None)
        summarize(rows, stopped)
        if density.alive:
            print_breakdown(next(iter(density.alive.values())), len(density.alive))
    except BaseException:
        print(f"kilnd's log, last lines:\n{kilnd.log_tail()}", file=sys.stderr)
        raise
    finally:
        density.delete_all()
        leftover = kilnd.cleanup()
        if leftover:
            print(f"kilnd left QEMU processes behind: {leftover}", file=sys.stderr)
    return 0 if rows else 1


def summarize(rows: list[Step], stopped: str | None) -> None:
    if not rows:
        return
    top = rows[-1]
    print(f"\nreached {top.alive} idle sandboxes alive (target >= 300){'; ' + stopped if stopped else ''}")
    if rows[0].alive == 0 and top.alive > 0:
        print(f"create p50 with {top.alive} alive / with none: {statistics.median(top.creates_ms):.1f} / "
              f"{statistics.median(rows[0].creates_ms):.1f} ms = "
              f"{statistics.median(top.creates_ms) / statistics.median(rows[0].creates_ms):.2f}x (target <= 1.5x at 300)")
    if top.pss_kib:
        print(f"PSS per idle clone with {top.alive} alive: mean {sum(top.pss_kib) / len(top.pss_kib) / 1024:.1f} MiB, "
              f"median {statistics.median(top.pss_kib) / 1024:.1f} MiB (target <= 15 MiB)")
    if top.idle_cpu_percent:
        print(f"idle guests' CPU under TCG: {statistics.mean(top.idle_cpu_percent):.2f}% of a core per QEMU, "
              f"{sum(top.idle_cpu_percent) / 100:.2f} cores for all {top.alive}")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""latency_bench: how far Kiln's create and first command are from the floor (issue 20), in one run.

- The floor: a QEMU pre-started with -incoming defer (untimed), restoring Kiln's guest kernel whose
  PID 1 only echoes a byte on the kiln.agent virtio-serial port (bench/floor/floor_init.c; no Kiln
  code in the guest; bench/floor_guest.py). Timed: the state file's fd handed over with QMP getfd,
  migrate-incoming, the MIGRATION completed event, cont, one byte out and its echo back.
  Baseline beside it: a cold boot of the same guest to its first echo (KILN_BENCH_LATENCY_BOOTS, 3).
- Kiln through its API: create (POST /v1/sandboxes until 201) and create + first command's output
  (then POST .../exec until the answer with the command's stdout), for `tiny` (`echo hi`) and `base`
  (`git --version`; skipped without the base image), on two kilnds taken in turns round by round:
  KILN_WARM_SPARE=true (the spare is loaded and warmed up ahead by Kiln, then stopped) and false
  (the spare is a QEMU waiting for the state). Also kilnd's own `sandbox created` timings.
- Memory: PSS (smaps_rollup) of each kilnd's spare QEMU per template, and of an idle sandbox's.
Before every timed step the bench waits until each kilnd has its spares again and they are idle
(their CPU time stands still), so no refill runs beside a measurement.

p50 and p99 over KILN_BENCH_LATENCY_RUNS (30) rounds; KILN_BENCH_LATENCY_TEMPLATES (tiny,base).
Prints the accelerator and the load average. Run: KILN_BUILD=build/release bench/latency_bench.py"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import floor_guest  # noqa: E402
import proc_stats  # noqa: E402
from bench_kilnd import Api, KilndLog, pct, start_kilnd  # noqa: E402
from kilnd_fixture import Kilnd, kilnd_binary  # noqa: E402

# The first command per template and what its stdout must be.
FIRST_COMMAND = {"tiny": ("echo hi", lambda out: out == "hi\n"),
                 "base": ("git --version", lambda out: out.startswith("git version "))}
# The targets (ms, p50): create, and create + first output per template.
TARGET_CREATE_MS = 30
TARGET_FIRST_OUTPUT_MS = {"tiny": 100, "base": 150}
KILND_MODES = ("warm", "cold")  # KILN_WARM_SPARE=true / false


def memory_arg_mib(pid: int) -> Optional[int]:
    """The -m of a QEMU's command line, in MiB (Kiln passes it as NNNM)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    for i, arg in enumerate(args[:-1]):
        if arg == b"-m" and args[i + 1].endswith(b"M"):
            return int(args[i + 1][:-1])
    return None


@dataclass
class KilndUnderTest:
    mode: str
    kilnd: Kilnd
    api: Api
    sandbox_qemus: set[int] = field(default_factory=set)
    create: dict[str, list[float]] = field(default_factory=dict)
    first_output: dict[str, list[float]] = field(default_factory=dict)
    refill: dict[str, list[float]] = field(default_factory=dict)
    spare_pss: dict[str, list[int]] = field(default_factory=dict)
    sandbox_pss: dict[str, list[int]] = field(default_factory=dict)
    timed_ids: dict[str, set[str]] = field(default_factory=dict)
    log: Optional[KilndLog] = None  # set in __post_init__: which QEMU each sandbox runs in

    def __post_init__(self) -> None:
        self.log = KilndLog(self.kilnd)

    def spares(self, memory_by_template: dict[int, str]) -> dict[str, list[int]]:
        """Template -> PIDs of the QEMUs on this kilnd's data dir that are no sandbox's (its spares),
        told apart by their memory size. One per template here: only a fork would add a cold one
        beside a warm one."""
        out: dict[str, list[int]] = {}
        for pid in self.kilnd.qemu_pids():
            if pid in self.sandbox_qemus:
                continue
            template = memory_by_template.get(memory_arg_mib(pid) or 0)
            if template:
                out.setdefault(template, []).append(pid)
        return out


def wait_until_spares_idle(kilnds: list[KilndUnderTest], memory_by_template: dict[int, str],
                           timeout: float = 300.0, quiet: float = 0.3) -> float:
    """Until every kilnd has a spare QEMU for each template and none of them used more than one
    clock tick (10 ms) of CPU over the last `quiet` seconds: a cold spare is up and waiting for its
    state, a warm one has finished its warm-up and is stopped. (An idle QEMU's main loop still
    wakes now and then, hence the tick of slack.) Returns when (time.monotonic()) they were last
    seen busy or missing, to within the 50 ms between looks."""
    deadline = time.monotonic() + timeout
    window_start, baseline = 0.0, {}
    while time.monotonic() < deadline:
        ticks: dict[int, int] = {}
        complete = True
        for k in kilnds:
            spares = k.spares(memory_by_template)
            complete &= spares.keys() == set(memory_by_template.values())
            for pid in (p for pids in spares.values() for p in pids):
                t = proc_stats.cpu_ticks(pid)
                if t is not None:
                    ticks[pid] = t
        now = time.monotonic()
        if not complete or ticks.keys() != baseline.keys() or any(ticks[p] - baseline[p] > 1 for p in ticks):
            window_start, baseline = now, ticks
        elif now - window_start >= quiet:
            return window_start
        time.sleep(0.05)
    raise RuntimeError(f"the kilnds' spares did not come back idle within {timeout} s: "
                       + "; ".join(f"{k.mode}: {k.spares(memory_by_template)}" for k in kilnds))


def create_and_first_output(k: KilndUnderTest, template: str) -> tuple[str, float, float, float]:
    """One timed create + first command; returns the sandbox id, the ms to 201 and to the output,
    and when (time.monotonic()) the create was answered: its spare had been taken by then."""
    cmd, expected = FIRST_COMMAND[template]
    t0 = time.monotonic()
    sb = k.api.call("POST", "/v1/sandboxes", {"template": template, "ttl_seconds": 600})
    t_created = time.monotonic()
    out = k.api.call("POST", f"/v1/sandboxes/{sb['id']}/exec", {"cmd": cmd})
    t_output = time.monotonic()
    if not expected(out["stdout"]):
        raise RuntimeError(f"`{cmd}` in {template} printed {out['stdout']!r} (stderr {out['stderr']!r})")
    return sb["id"], (t_created - t0) * 1000, (t_output - t0) * 1000, t_created


def kiln_round(k: KilndUnderTest, template: str, memory_by_template: dict[int, str]) -> None:
    """A timed create + first output, the sandbox's PSS, its delete, and the wait for this kilnd's
    spare to be back and idle (timed as the refill, from the create's answer)."""
    sid, created, output, t_created = create_and_first_output(k, template)
    k.timed_ids.setdefault(template, set()).add(sid)
    k.create.setdefault(template, []).append(created)
    k.first_output.setdefault(template, []).append(output)
    qemu = k.log.qemu_pid(sid)
    k.sandbox_qemus.add(qemu)
    pss = proc_stats.pss_kib(qemu)
    if pss is not None:
        k.sandbox_pss.setdefault(template, []).append(pss)
    k.api.call("DELETE", f"/v1/sandboxes/{sid}")
    k.sandbox_qemus.discard(qemu)
    k.refill.setdefault(template, []).append((wait_until_spares_idle([k], memory_by_template) - t_created) * 1000)


def sample_spare_pss(kilnds: list[KilndUnderTest], memory_by_template: dict[int, str]) -> None:
    for k in kilnds:
        for template, pids in k.spares(memory_by_template).items():
            for pid in pids:
                pss = proc_stats.pss_kib(pid)
                if pss is not None:
                    k.spare_pss.setdefault(template, []).append(pss)


def created_log_fields(k: KilndUnderTest, template: str) -> list[dict]:
    ids = k.timed_ids.get(template, set())
    return [line for line in k.kilnd.log_lines() if line.get("msg") == "sandbox created" and line.get("sandbox") in ids]


def fmt(values: list[float]) -> str:
    if not values:
        return f"{'-':>17s}"
    return f"{statistics.median(values):7.1f} / {pct(values, 99):7.1f}"


def mib(values: list[int]) -> str:
    return f"{statistics.median(values) / 1024:6.1f} MiB" if values else "     - "


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_floor(floor: dict[str, list[float]], boots: list[float], floor_pss: list[int], accel: str) -> None:
    print(f"the floor ({accel}; QEMU pre-started with -incoming defer, QMP and migration capabilities set, untimed; "
          f"unjailed; timed from QMP getfd of the state file's fd, then migrate-incoming fd:NAME):")
    print(f"  {'':50s} {'p50 / p99 ms':>17s}")
    print(f"  {'restore to the echoed byte (the floor)':50s} {fmt(floor['echo'])}   (n={len(floor['echo'])})")
    print(f"  {'  of which: state loaded (MIGRATION completed)':50s} {fmt(floor['loaded'])}")
    print(f"  {'  of which: running again (cont answered)':50s} {fmt(floor['running'])}")
    print(f"  {'baseline: QEMU cold boot of the floor guest':50s} {fmt(boots)}   (n={len(boots)}, spawn to echo)")
    print(f"  PSS of a pre-started floor QEMU (nothing loaded): {mib(floor_pss)}", flush=True)


def print_template(template: str, kilnds: dict[str, KilndUnderTest], floor_p50: float, warm_known: bool) -> None:
    warm, cold = kilnds["warm"], kilnds["cold"]
    if template not in warm.create:
        return
    cmd = FIRST_COMMAND[template][0]
    n = len(warm.create[template])
    warm_label = "warm spare" if warm_known else "warm (unknown)"
    print(f"template {template}, first command `{cmd}` ({n} rounds per kilnd):")
    print(f"  {'p50 / p99 ms':32s} {warm_label:>17s} {'cold spare':>17s}  {'warm/cold':>9s}  "
          f"{'warm/floor':>10s} {'cold/floor':>10s}  target")
    rows = [("create (POST until 201)", warm.create[template], cold.create[template], f"<= {TARGET_CREATE_MS} ms"),
            ("create + first output", warm.first_output[template], cold.first_output[template],
             f"<= {TARGET_FIRST_OUTPUT_MS[template]} ms")]
    for label, w, c, target in rows:
        wm, cm = statistics.median(w), statistics.median(c)
        print(f"  {label:32s} {fmt(w)} {fmt(c)}  {wm / cm:8.2f}x  {wm / floor_p50:9.1f}x {cm / floor_p50:9.1f}x  {target}")
    print("  kilnd's `sandbox created` (p50 ms):")
    for k in (warm, cold):
        lines = created_log_fields(k, template)
        parts = []
        for key in ("create_ms", "restore_ready_ms", "loaded_ms"):
            values = [float(line[key]) for line in lines if key in line]
            if values:
                parts.append(f"{key} {statistics.median(values):.1f}")
        parts.append(f"spare {sum(1 for line in lines if line.get('spare'))}/{len(lines)}")
        if any("warm_spare" in line for line in lines):
            parts.append(f"warm_spare {sum(1 for line in lines if line.get('warm_spare'))}/{len(lines)}")
        else:
            parts.append("warm_spare not logged")
        print(f"    {k.mode:5s} {', '.join(parts)}")
    print(f"  spare refill (create answered -> the next spare up and idle; +-50 ms) p50: warm "
          f"{statistics.median(warm.refill[template]):.0f} ms, cold {statistics.median(cold.refill[template]):.0f} ms")
    print(f"  PSS p50: spare QEMU warm {mib(warm.spare_pss.get(template, []))}, cold "
          f"{mib(cold.spare_pss.get(template, []))}; an idle sandbox's QEMU after its first command: warm "
          f"{mib(warm.sandbox_pss.get(template, []))}, cold {mib(cold.sandbox_pss.get(template, []))}", flush=True)


def kilnd_knows(option: str) -> bool:
    out = subprocess.run([str(kilnd_binary()), "--help"], capture_output=True, text=True, timeout=30)
    return option in out.stdout


def main() -> int:
    runs = int(os.environ.get("KILN_BENCH_LATENCY_RUNS", "30"))
    boots = int(os.environ.get("KILN_BENCH_LATENCY_BOOTS", "3"))
    templates = [t for t in os.environ.get("KILN_BENCH_LATENCY_TEMPLATES", "tiny,base").split(",") if t]
    for t in templates:
        if t not in FIRST_COMMAND:
            raise SystemExit(f"KILN_BENCH_LATENCY_TEMPLATES: no first command known for template {t!r}")
    base_image = floor_guest.cache_root() / "images" / "base" / "rootfs.ext4"
    if "base" in templates and not base_image.exists():
        print(f"latency_bench: skipping template base: no base image at {base_image} "
              f"(scripts/build-image-base.sh, or `make images`)", flush=True)
        templates.remove("base")
    warm_known = kilnd_knows("--warm-spare")
    load_start = loadavg()

    scratch = Path(tempfile.mkdtemp(prefix="kiln-latency-bench-"))
    kilnds: dict[str, KilndUnderTest] = {}
    prepared: Optional[floor_guest.PreparedRestore] = None
    try:
        snap, built = floor_guest.ensure_snapshot(scratch)
        print(f"latency_bench: floor snapshot {snap.dir} ({'built now' if built else 'cached'})", flush=True)
        for mode in KILND_MODES:
            env = {"KILN_WARM_SPARE": "true" if mode == "warm" else "false"}
            kilnd, api, accel = start_kilnd(f"latency-{mode}", env)
            kilnds[mode] = KilndUnderTest(mode, kilnd, api)
        if not warm_known:
            print("latency_bench: this kilnd has no warm_spare option (kilnd --help): both kilnds run today's path, "
                  "KILN_WARM_SPARE is ignored; the warm/cold ratio then shows only the noise between two kilnds", flush=True)
        print(f"latency_bench ({accel}): {runs} rounds, templates {', '.join(templates)}; warming up (bakes, "
              f"first spares); load average {load_start}", flush=True)
        memory_by_template: dict[int, str] = {}
        for k in kilnds.values():
            for template in templates:
                sb = k.api.call("POST", "/v1/sandboxes", {"template": template, "ttl_seconds": 600})
                memory_by_template[sb["memory_mib"]] = template
                k.api.call("DELETE", f"/v1/sandboxes/{sb['id']}")
        if len(memory_by_template) != len(templates):
            raise RuntimeError(f"templates {templates} share a memory size: their spares cannot be told apart")
        everyone = list(kilnds.values())

        floor: dict[str, list[float]] = {"loaded": [], "running": [], "echo": []}
        boot_ms: list[float] = []
        floor_pss: list[int] = []
        boot_every = max(1, runs // max(1, boots))
        for i in range(runs):
            if len(boot_ms) < boots and i % boot_every == 0:
                wait_until_spares_idle(everyone, memory_by_template)
                boot_ms.append(floor_guest.cold_boot_ms(snap, scratch))
            prepared = floor_guest.PreparedRestore(snap, scratch)
            wait_until_spares_idle(everyone, memory_by_template)
            sample_spare_pss(everyone, memory_by_template)
            pss = proc_stats.pss_kib(prepared.pid())
            if pss is not None:
                floor_pss.append(pss)
            for step, ms in prepared.restore().items():
                floor[step].append(ms)
            prepared.close()
            prepared = None
            for template in templates:
                # Alternate which kilnd goes first, so neither always follows the other's refill.
                for mode in (KILND_MODES if i % 2 == 0 else tuple(reversed(KILND_MODES))):
                    wait_until_spares_idle(everyone, memory_by_template)
                    kiln_round(kilnds[mode], template, memory_by_template)
            print(f"  round {i + 1}/{runs}: floor {floor['echo'][-1]:.1f} ms; "
                  + "; ".join(f"{t} {m} {kilnds[m].create[t][-1]:.0f}/{kilnds[m].first_output[t][-1]:.0f} ms"
                              for t in templates for m in KILND_MODES), flush=True)

        print(f"\nlatency_bench results ({accel}, {os.cpu_count()} cores; load average at the start {load_start}, "
              f"at the end {loadavg()}); p50 / p99 over {runs} rounds, client-side ms; before every timed step each "
              f"kilnd had its spares back and idle (no CPU for 0.3 s)")
        print_floor(floor, boot_ms, floor_pss, accel)
        floor_p50 = statistics.median(floor["echo"])
        for template in templates:
            print_template(template, kilnds, floor_p50, warm_known)
        if not warm_known:
            print("note: this kilnd does not know warm_spare: the 'warm' kilnd ran today's path too")
    finally:
        if prepared is not None:
            prepared.close()
        for k in kilnds.values():
            leftover = k.kilnd.cleanup()
            if leftover:
                print(f"latency_bench: the {k.mode} kilnd left QEMU processes behind: {leftover}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

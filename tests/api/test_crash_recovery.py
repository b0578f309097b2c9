"""kill -9 of kilnd in the middle of creates, then a restart: no orphan QEMU process, no orphan run
dir, and every sandbox in a state that matches what is really running (counted)."""
from __future__ import annotations

import threading

from api_client import ApiClient, query
from kilnd_fixture import pid_alive, wait_until

LIVE = {"creating", "running"}


def _create_in_background(api: ApiClient, count: int, results: list):
    def one():
        try:
            r = api.post("/v1/sandboxes", {"template": "tiny", "metadata": {"phase": "crash"}}, timeout=120)
            results.append(r.status)
        except OSError as e:  # kilnd died under us: expected
            results.append(type(e).__name__)
    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def _kill_during_create(kilnd, api: ApiClient, creates: int) -> tuple[list[int], int]:
    """Fires `creates` creates and kill -9s kilnd as soon as one is seen in state creating (or
    after 3 s). Returns the QEMU PIDs alive just before the kill and how many creates were seen."""
    results: list = []
    threads = _create_in_background(api, creates, results)
    seen = 0

    def creating():
        nonlocal seen
        try:
            r = api.get(query("/v1/sandboxes", state="creating"), timeout=5)
        except OSError:
            return False
        seen = len(r.json().get("sandboxes", [])) if r.status == 200 else 0
        return seen > 0
    wait_until(creating, 3, interval=0.005)
    before = kilnd.qemu_pids()
    kilnd.kill9()
    for t in threads:
        t.join(30)
    return before, seen


def _describe(pid: int) -> str:
    """A QEMU process in a failure message: its pid, parent and -name."""
    try:
        args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        ppid = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
        name = args[args.index(b"-name") + 1].decode() if b"-name" in args else "?"
        return f"pid {pid} ppid {ppid} {name}"
    except (OSError, ValueError):
        return f"pid {pid} (gone)"


def _check_consistent(kilnd, api: ApiClient, old_pids: list[int]) -> dict[str, int]:
    """After the restart: no sandbox left creating, every running one answers an exec, and the
    QEMU processes and run dirs are exactly those of the running sandboxes."""
    def settled():
        sbs = api.get(query("/v1/sandboxes", state="all")).json()["sandboxes"]
        return sbs if not any(s["state"] in ("creating", "deleting") for s in sbs) else None
    sandboxes = wait_until(settled, 30, interval=0.2)
    assert sandboxes, "sandboxes still creating/deleting 30 s after the restart"
    # A restarted kilnd bakes a template whose bake the kill interrupted: that VM (QEMU and run
    # dir) belongs to no sandbox. Count only once it is done.
    def baked():
        return all(t["ready"] for t in api.get("/v1/templates").json()["templates"] if t["id"] == "tiny")
    assert wait_until(baked, 180, interval=0.2), "the built-in templates were not baked again after the restart"
    counts: dict[str, int] = {}
    for s in sandboxes:
        counts[s["state"]] = counts.get(s["state"], 0) + 1
        assert s["state"] in ("running", "lost", "failed", "deleted"), s
        if s["state"] in ("lost", "failed"):
            assert s.get("error"), f"a {s['state']} sandbox says why: {s}"
    running = [s for s in sandboxes if s["state"] == "running"]
    for s in running:
        r = api.post(f"/v1/sandboxes/{s['id']}/exec", {"cmd": "echo alive"})
        assert r.status == 200 and r.json()["stdout"] == "alive\n", (s, r)
    wait_until(lambda: len(kilnd.qemu_pids()) == len(running), 15)
    qemus = kilnd.qemu_pids()
    assert len(qemus) == len(running), \
        f"QEMU processes {[_describe(p) for p in qemus]} but running sandboxes {[s['id'] for s in running]}; " \
        f"all: {[(s['id'], s['state']) for s in sandboxes]}; run dirs {kilnd.run_dirs()}"
    survivors = [p for p in old_pids if pid_alive(p)]
    assert set(survivors) <= set(qemus), f"old QEMU PIDs {survivors} alive beside {qemus}"
    wait_until(lambda: len(kilnd.run_dirs()) == len(running), 10)
    assert len(kilnd.run_dirs()) == len(running), \
        f"run dirs {kilnd.run_dirs()} vs running {[s['id'] for s in running]}; all: {[(s['id'], s['state']) for s in sandboxes]}"
    return counts


def test_kill9_during_creates_then_restart(kilnd_factory, recorder):
    # No spare QEMU, so every QEMU on the data dir belongs to a sandbox and the counts are exact.
    kd = kilnd_factory({"KILN_KEEP_SPARE": "false"}, name="test-crash")
    api = ApiClient(kd.port, kd.tokens["alice"], recorder)

    # Round 1: the very first create (the template is baked inside it), killed half-way.
    old, _ = _kill_during_create(kd, api, 1)
    kd.start()
    counts1 = _check_consistent(kd, api, old)

    # Round 2: two running sandboxes, then three creates in flight at the kill.
    keep = [api.create_sandbox(metadata={"phase": "before"}) for _ in range(2)]
    for s in keep:
        api.exec(s["id"], "echo state > /work/state")
    old, seen = _kill_during_create(kd, api, 3)
    kd.start()
    counts2 = _check_consistent(kd, api, old)
    total = sum(counts2.values())
    # Every create that reached kilnd has a record (at least those seen creating), none twice.
    base = sum(counts1.values()) + 2
    assert base + seen <= total <= base + 3, (counts1, counts2, seen)
    for s in keep:
        state = api.get(f"/v1/sandboxes/{s['id']}").json()["state"]
        assert state in ("running", "lost"), state
        if state == "running":  # reattached: its guest is the same one
            assert api.exec(s["id"], "cat /work/state")["stdout"] == "state\n"

    # kilnd works normally after all this, and a delete of everything leaves nothing behind.
    fresh = api.create_sandbox()
    assert api.exec(fresh["id"], "echo ok")["stdout"] == "ok\n"
    for s in api.get("/v1/sandboxes").json()["sandboxes"]:
        assert api.delete(f"/v1/sandboxes/{s['id']}").status == 204
    assert wait_until(lambda: not kd.qemu_pids(), 15), kd.qemu_pids()
    assert kd.run_dirs() == []
    print(f"crash round 1 states {counts1}; round 2 states {counts2} ({seen} seen creating at the kill)")

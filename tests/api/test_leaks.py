"""100 cycles of create, exec and delete leak no process, fd or run dir (counted in /proc and on
disk against the numbers before the cycles)."""
from __future__ import annotations

import os
import time

from kilnd_fixture import fd_count, wait_until

CYCLES = int(os.environ.get("KILN_LEAK_CYCLES", "100"))


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry))
    return out


def snapshot_counts(kilnd) -> dict[str, int]:
    return {"qemu": len(kilnd.qemu_pids()), "fds": fd_count(kilnd.pid), "children": len(children_of(kilnd.pid)),
            "run_dirs": len(kilnd.run_dirs())}


def test_100_cycles_leak_nothing(kilnd, api):
    for left in api.get("/v1/sandboxes").json()["sandboxes"]:  # a failed test's leftovers
        api.delete(f"/v1/sandboxes/{left['id']}")
    # One cycle first, so lazily made things (baked template, spare QEMU, pools) exist in the baseline.
    sb = api.create_sandbox()
    api.exec(sb["id"], "true")
    api.delete(f"/v1/sandboxes/{sb['id']}")
    time.sleep(2)
    before = snapshot_counts(kilnd)
    start = time.monotonic()
    for i in range(CYCLES):
        sb = api.create_sandbox(metadata={"cycle": str(i)})
        res = api.exec(sb["id"], f"echo {i}")
        assert res["stdout"] == f"{i}\n" and res["exit_code"] == 0, res
        r = api.delete(f"/v1/sandboxes/{sb['id']}")
        assert r.status == 204, r
    elapsed = time.monotonic() - start

    def back_to_baseline():
        now = snapshot_counts(kilnd)
        return now if all(now[k] <= before[k] for k in before) else None
    after = wait_until(back_to_baseline, 30, interval=0.5) or snapshot_counts(kilnd)
    print(f"{CYCLES} cycles in {elapsed:.1f} s ({CYCLES / elapsed:.1f}/s); before {before}, after {after}")
    for key in before:
        assert after[key] <= before[key], f"{key} leaked: before {before}, after {after}"
    assert api.get("/v1/sandboxes").json()["sandboxes"] == []

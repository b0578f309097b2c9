"""The VM jail through a real kilnd (docs/security.md): a kill -9 of kilnd with jailed VMs running
leaves nothing of theirs after a restart, and seccomp is mandatory unless the operator says
allow_unconfined, which every /healthz and /metrics then reports."""
from __future__ import annotations

import fcntl
import os
import stat
import tempfile

from api_client import ApiClient
from kilnd_fixture import pid_alive, wait_until

LOCK_DIR = "/run/kiln/jail-uids"


def _status_uid(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def _uid_free(uid: int) -> bool:
    """Both lease locks of `uid` can be taken now (and are let go at once)."""
    for suffix in ("", ".qemu"):
        path = f"{LOCK_DIR}/{uid}{suffix}"
        if not os.path.exists(path):
            continue
        with open(path, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(f, fcntl.LOCK_UN)
    return True


def test_kill9_with_jailed_vms_running_then_restart_leaves_nothing_of_theirs(kilnd_factory, recorder):
    k = kilnd_factory({}, name="jail")
    api = ApiClient(k.port, k.tokens["alice"], recorder)
    ids = [api.create_sandbox()["id"] for _ in range(2)]
    pids = k.qemu_pids()
    assert len(pids) >= 2, pids  # the two sandboxes' QEMUs (and the template's spare)
    uids = {_status_uid(pid) for pid in pids}
    assert 0 not in uids and len(uids) == len(pids), f"each QEMU its own non-root uid: {uids}"
    assert not any(_uid_free(uid) for uid in uids), "a running VM's uid is leased"
    run_dirs = k.run_dirs()
    assert len(run_dirs) >= 2

    k.kill9()
    k.start()
    # The restart's reconcile kills every QEMU of the dead kilnd and removes their run dirs (each
    # holding its jail dir); namespaces and jail mounts die with their QEMUs; the uids are free.
    assert wait_until(lambda: not any(pid_alive(p) for p in pids), 30), "old QEMUs still running"
    for i in ids:
        assert api.get(f"/v1/sandboxes/{i}").json()["state"] == "lost"
    left = set(run_dirs) & set(k.run_dirs())
    assert not left, f"run dirs of the dead kilnd's VMs left: {left}"
    assert all(_uid_free(uid) for uid in uids), "a dead VM's uid is still leased"


def _fake_qemu_without_seccomp() -> str:
    """A QEMU whose -sandbox fails, as on a host built without seccomp: the real binary for
    everything else (so VMs still boot when allowed to run unconfined)."""
    d = tempfile.mkdtemp(prefix="kiln-noseccomp-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "qemu-system-x86_64")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                "for a in \"$@\"; do [ \"$a\" = -sandbox ] && { echo 'seccomp support is disabled' >&2; exit 1; }; done\n"
                "exec /usr/bin/qemu-system-x86_64 \"$@\"\n")
    os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return path


def test_without_seccomp_vms_are_refused_unless_allow_unconfined_which_every_report_says(kilnd_factory, recorder):
    qemu = _fake_qemu_without_seccomp()
    strict = kilnd_factory({"KILN_QEMU": qemu}, name="noseccomp")
    api = ApiClient(strict.port, strict.tokens["alice"], recorder)
    h = api.get("/healthz").json()
    assert h["status"] == "degraded" and h["confinement"]["seccomp"] is False, h
    assert "allow_unconfined" in h["confinement"]["problem"]
    r = api.post("/v1/sandboxes", {"template": "tiny"}, timeout=300)
    assert r.status == 503, (r.status, r.body)
    message = r.json()["error"]["message"]
    assert "seccomp" in message and "allow_unconfined" in message, message
    assert strict.qemu_pids() == [], "nothing started"

    loose = kilnd_factory({"KILN_QEMU": qemu, "KILN_ALLOW_UNCONFINED": "true"}, name="unconfined")
    api = ApiClient(loose.port, loose.tokens["alice"], recorder)
    sb = api.create_sandbox()
    assert api.exec(sb["id"], "echo ran")["stdout"] == "ran\n"
    for _ in range(3):  # on every call, not once
        h = api.get("/healthz").json()
        assert h["status"] == "unconfined", h
        assert "UNCONFINED" in h["confinement"]["problem"]
        metrics = api.get("/metrics").body.decode()
        assert 'kiln_vm_confinement{part="unconfined"} 1' in metrics
        assert 'kiln_vm_confinement{part="seccomp"} 0' in metrics


def _cgroup_dirs(pid: int) -> list[str]:
    """The cgroup folders (v1 memory, pids and cpu here; v2 the one) a process is in."""
    out = []
    for line in open(f"/proc/{pid}/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        if controllers in ("memory", "pids", "cpu") or controllers == "":
            root = f"/sys/fs/cgroup/{controllers}" if controllers else "/sys/fs/cgroup/unified"
            if "/k" in path:  # a VM's cgroup (k<hash>-<id>), not the session's
                out.append(root + path)
    return out


def test_a_vm_past_its_memory_limit_dies_alone_and_is_lost_with_the_reason(kilnd_factory, recorder):
    # A fixed 200 MiB limit for every QEMU (the test config's tiny limit): a boot or restore of
    # `tiny` stays well below it; a guest that fills 230 MiB of tmpfs does not.
    k = kilnd_factory({"KILN_VM_MEMORY_LIMIT_MIB": "200"}, name="oom")
    api = ApiClient(k.port, k.tokens["alice"], recorder)
    victim = api.create_sandbox()["id"]
    neighbour = api.create_sandbox()["id"]
    pids_before = set(k.qemu_pids())
    r = api.post(f"/v1/sandboxes/{victim}/exec",
                 {"cmd": "mkdir -p /tmp/m && mount -t tmpfs -o size=240m none /tmp/m && "
                         "dd if=/dev/zero of=/tmp/m/f bs=1M count=230; echo survived"})
    assert r.status != 200 or "survived" not in r.json().get("stdout", ""), r.body

    def lost():
        s = api.get(f"/v1/sandboxes/{victim}").json()
        return s if s["state"] == "lost" else None
    s = wait_until(lost, 30, interval=0.2)
    assert s, api.get(f"/v1/sandboxes/{victim}").json()
    assert "memory limit" in s["error"] and "OOM" in s["error"], s["error"]
    # The neighbour carries on; kilnd too.
    assert api.exec(neighbour, "echo still-here")["stdout"] == "still-here\n"
    assert api.get("/healthz").status == 200
    assert len(set(k.qemu_pids()) & pids_before) == len(pids_before) - 1, "only the victim's QEMU is gone"


def test_a_vms_cgroup_exists_while_it_runs_and_goes_with_it_even_after_a_kill9(kilnd_factory, recorder):
    k = kilnd_factory({}, name="cgroups")
    api = ApiClient(k.port, k.tokens["alice"], recorder)
    first = api.create_sandbox()["id"]
    # kilnd moves a QEMU into its cgroup while it starts (before any guest code runs): a spare
    # being started in the background may be caught a few ms before that.
    def all_in_cgroups():
        found = {pid: _cgroup_dirs(pid) for pid in k.qemu_pids()}
        return found if all(len(d) >= 1 for d in found.values()) else None
    dirs = wait_until(all_in_cgroups, 10)
    assert dirs, {pid: _cgroup_dirs(pid) for pid in k.qemu_pids()}
    for pid, ds in dirs.items():
        for d in ds:
            assert os.path.isdir(d), d
            procs = open(f"{d}/cgroup.procs").read().split()
            assert procs == [str(pid)], f"{d} holds only its QEMU: {procs}"
    # A delete removes its VM's cgroup.
    api.delete(f"/v1/sandboxes/{first}")
    gone = [d for ds in dirs.values() for d in ds if not os.path.isdir(d)]
    assert gone, "the deleted sandbox's cgroup is gone"
    # A kill -9 leaves the others; the restart sweeps them.
    api.create_sandbox()
    left = [d for pid in k.qemu_pids() for d in _cgroup_dirs(pid)]
    assert left
    k.kill9()
    k.start()
    assert wait_until(lambda: not any(os.path.isdir(d) for d in left), 30), [d for d in left if os.path.isdir(d)]

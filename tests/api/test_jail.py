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

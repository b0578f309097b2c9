"""Pause and resume through the REST API (docs/pause.md), on a real kilnd with real VMs: the guest's
files and background processes come back, a paused sandbox holds no QEMU, memory or slot, its TTL
stands still, auto_pause at the end of the TTL, a paused sandbox survives a kilnd restart, its
delete removes its snapshot, a delete that comes mid-pause or mid-resume wins, and the errors."""
from __future__ import annotations

import time

import pytest

from api_client import ApiClient, query, wait_sandbox_state
from kilnd_fixture import pid_alive, wait_until

# A background process the way E2B users start one: a shell's child in its own session, which
# the agent does not kill when the exec that started it ends. It writes its pid, then a tick every
# 0.2 s (nanoseconds since the epoch).
TICKER = ("setsid sh -c 'echo $$ > /tmp/ticker.pid; while :; do date +%s%N >> /tmp/ticks; sleep 0.2; done' "
          "</dev/null >/dev/null 2>&1 &")


@pytest.fixture(scope="module")
def kd(kilnd_factory):
    # No spare QEMU: every QEMU on the data dir is a sandbox's, so "no QEMU while paused" is exact.
    # Two sandboxes at most, so that the slot a paused one frees is seen.
    return kilnd_factory({"KILN_KEEP_SPARE": "false", "KILN_MAX_SANDBOXES": "2"}, tokens=("alice", "bob"),
                         name="test-pause")


@pytest.fixture(scope="module")
def api(kd, recorder) -> ApiClient:
    return ApiClient(kd.port, kd.tokens["alice"], recorder)


@pytest.fixture(scope="module")
def api_bob(kd, recorder) -> ApiClient:
    return ApiClient(kd.port, kd.tokens["bob"], recorder)


def _pause(api: ApiClient, sid: str) -> dict:
    r = api.post(f"/v1/sandboxes/{sid}/pause", timeout=180)
    assert r.status == 200, r
    return r.json()


def _resume(api: ApiClient, sid: str, body=None) -> dict:
    r = api.post(f"/v1/sandboxes/{sid}/resume", body, timeout=180)
    assert r.status == 200, r
    return r.json()


def _ticks(api: ApiClient, sid: str) -> int:
    return int(api.exec(sid, "cat /tmp/ticks 2>/dev/null | wc -l")["stdout"].strip())


def _paused_dir(kd, sid: str):
    return kd.data_dir / "paused" / sid


def test_pause_and_resume_keep_files_and_processes(kd, api):
    sb = api.create_sandbox(ttl_seconds=600)
    sid = sb["id"]
    assert sb["auto_pause"] is False
    api.exec(sid, "echo before-pause > /tmp/kept && " + TICKER)
    assert wait_until(lambda: _ticks(api, sid) >= 2, 10)
    pid = api.exec(sid, "cat /tmp/ticker.pid")["stdout"].strip()
    assert pid.isdigit(), pid
    assert len(kd.qemu_pids()) == 1

    paused = _pause(api, sid)
    assert paused["state"] == "paused", paused
    assert paused["paused_bytes"] > 0 and paused["paused_at"]
    assert 500 < paused["ttl_left_seconds"] <= 600, paused
    # No QEMU (so no guest memory), no run dir; its snapshot is private to it.
    assert kd.qemu_pids() == [], kd.qemu_pids()
    assert wait_until(lambda: kd.run_dirs() == [], 10), kd.run_dirs()
    assert _paused_dir(kd, sid).is_dir()
    snaps = api.get("/v1/snapshots").json()["snapshots"]
    assert all(s["sandbox_id"] != sid for s in snaps), snaps
    # Nothing runs in it: exec and files answer sandbox_not_running.
    r = api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "true"})
    assert r.status == 409 and r.error_code == "sandbox_not_running", r
    # Listed by default (not ended), and by its state.
    assert sid in [s["id"] for s in api.get("/v1/sandboxes").json()["sandboxes"]]
    assert [s["id"] for s in api.get(query("/v1/sandboxes", state="paused")).json()["sandboxes"]] == [sid]
    # Pausing again: the same paused sandbox.
    assert _pause(api, sid)["paused_at"] == paused["paused_at"]

    # The TTL stands still while paused.
    time.sleep(2)
    again = api.get(f"/v1/sandboxes/{sid}").json()
    assert again["ttl_left_seconds"] == paused["ttl_left_seconds"], (paused, again)

    before_resume = time.time()
    resumed = _resume(api, sid)
    assert resumed["state"] == "running" and resumed["id"] == sid, resumed
    assert "paused_at" not in resumed and "ttl_left_seconds" not in resumed
    # expires_at: now + the TTL left at the pause.
    expires = time.mktime(time.strptime(resumed["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(expires - (before_resume + paused["ttl_left_seconds"])) < 30, (resumed, paused)
    assert len(kd.qemu_pids()) == 1
    assert not _paused_dir(kd, sid).exists()

    assert api.exec(sid, "cat /tmp/kept")["stdout"] == "before-pause\n"
    # The same process, still ticking.
    assert api.exec(sid, "cat /tmp/ticker.pid")["stdout"].strip() == pid
    r = api.exec(sid, f"kill -0 {pid} && echo alive")
    assert r["stdout"] == "alive\n", r
    n = _ticks(api, sid)
    assert wait_until(lambda: _ticks(api, sid) >= n + 3, 15), "the background process stopped ticking after the resume"
    # Resuming a running sandbox: a no-op answering it.
    assert _resume(api, sid)["state"] == "running"
    assert len(kd.qemu_pids()) == 1

    # Pause again, then delete while paused: its snapshot goes with it.
    _pause(api, sid)
    assert _paused_dir(kd, sid).is_dir()
    assert api.delete(f"/v1/sandboxes/{sid}").status == 204
    gone = api.get(f"/v1/sandboxes/{sid}").json()
    assert gone["state"] == "deleted", gone
    assert not _paused_dir(kd, sid).exists()
    assert kd.qemu_pids() == []


def test_a_paused_sandbox_frees_its_slot(kd, api):
    a = api.create_sandbox()["id"]
    b = api.create_sandbox()["id"]
    r = api.post("/v1/sandboxes", {"template": "tiny"})
    assert r.status == 429 and r.error_code == "quota_exceeded", r  # max_sandboxes 2
    _pause(api, a)
    c = api.create_sandbox()["id"]  # a's slot
    # Resuming a now finds the host full, as a create would: it stays paused.
    r = api.post(f"/v1/sandboxes/{a}/resume")
    assert r.status == 429 and r.error_code == "quota_exceeded", r
    assert api.get(f"/v1/sandboxes/{a}").json()["state"] == "paused"
    assert api.delete(f"/v1/sandboxes/{c}").status == 204
    assert _resume(api, a, {"ttl_seconds": 120})["state"] == "running"
    assert api.exec(a, "echo back")["stdout"] == "back\n"
    for sid in (a, b):
        assert api.delete(f"/v1/sandboxes/{sid}").status == 204
    assert wait_until(lambda: kd.qemu_pids() == [], 15), kd.qemu_pids()


def test_errors(kd, api, api_bob):
    sid = api.create_sandbox()["id"]
    # Another token's sandbox does not exist for it.
    for action in ("pause", "resume"):
        r = api_bob.post(f"/v1/sandboxes/{sid}/{action}")
        assert r.status == 404 and r.error_code == "not_found", (action, r)
    # A malformed resume body, an unknown field, a TTL out of range.
    for body in ({"ttl_seconds": 0}, {"ttl_seconds": "1"}, {"nope": 1}):
        r = api.post(f"/v1/sandboxes/{sid}/resume", body)
        assert r.status in (400, 422), (body, r)
    assert api.delete(f"/v1/sandboxes/{sid}").status == 204
    # A sandbox that has ended can be neither paused nor resumed.
    for action in ("pause", "resume"):
        r = api.post(f"/v1/sandboxes/{sid}/{action}")
        assert r.status == 409 and r.error_code == "sandbox_not_running", (action, r)
    r = api.post("/v1/sandboxes/sb-000000000000/pause")
    assert r.status == 404, r
    # auto_pause must be a boolean.
    r = api.post("/v1/sandboxes", {"template": "tiny", "auto_pause": "yes"})
    assert r.status in (400, 422), r


def test_auto_pause_at_the_end_of_the_ttl(kd, api):
    sb = api.create_sandbox(ttl_seconds=3, auto_pause=True)
    sid = sb["id"]
    assert sb["auto_pause"] is True
    api.exec(sid, "echo auto > /tmp/auto")
    doc = wait_sandbox_state(api, sid, {"paused", "expired", "lost"}, timeout=120)
    assert doc["state"] == "paused", doc
    assert doc["ttl_left_seconds"] == 0
    assert kd.qemu_pids() == []
    # No TTL was left: the resume gets the one it asks for (else kilnd's default).
    resumed = _resume(api, sid, {"ttl_seconds": 300})
    assert resumed["state"] == "running"
    assert api.exec(sid, "cat /tmp/auto")["stdout"] == "auto\n"
    assert api.delete(f"/v1/sandboxes/{sid}").status == 204


def test_a_paused_sandbox_survives_a_kilnd_restart(kd, api):
    sid = api.create_sandbox()["id"]
    api.exec(sid, "echo survives > /tmp/restart && " + TICKER)
    pid = api.exec(sid, "sleep 0.5; cat /tmp/ticker.pid")["stdout"].strip()
    _pause(api, sid)
    kd.restart()
    doc = api.get(f"/v1/sandboxes/{sid}").json()
    assert doc["state"] == "paused", doc
    assert _paused_dir(kd, sid).is_dir()
    assert _resume(api, sid)["state"] == "running"
    assert api.exec(sid, "cat /tmp/restart")["stdout"] == "survives\n"
    assert api.exec(sid, f"kill -0 {pid} && echo alive")["stdout"] == "alive\n"
    assert api.delete(f"/v1/sandboxes/{sid}").status == 204
    assert wait_until(lambda: kd.qemu_pids() == [], 15), kd.qemu_pids()
    assert not [p for p in kd.qemu_pids() if pid_alive(p)]


def test_a_delete_during_a_pause_or_a_resume_wins(kd, api):
    """A delete that comes while the sandbox is being paused or resumed ends it: deleted, no QEMU,
    no snapshot left behind, whatever the pause or resume answered."""
    import threading

    for phase in ("pause", "resume"):
        sid = api.create_sandbox()["id"]
        if phase == "resume":
            _pause(api, sid)
        answers: list = []
        t = threading.Thread(target=lambda: answers.append(api.post(f"/v1/sandboxes/{sid}/{phase}", timeout=180)))
        t.start()
        wait_until(lambda: api.get(f"/v1/sandboxes/{sid}").json()["state"] != ("running" if phase == "pause" else "paused"),
                   30, interval=0.01)
        seen = api.get(f"/v1/sandboxes/{sid}").json()["state"]
        assert api.delete(f"/v1/sandboxes/{sid}").status == 204
        t.join(180)
        assert answers and answers[0].status in (200, 404, 409), answers
        doc = wait_sandbox_state(api, sid, {"deleted"}, timeout=60)
        assert doc["state"] == "deleted", (phase, seen, doc, answers[0])
        assert wait_until(lambda: kd.qemu_pids() == [], 15), kd.qemu_pids()
        assert wait_until(lambda: not _paused_dir(kd, sid).exists(), 10), phase
        print(f"{phase}: the delete came while the sandbox was {seen}; the {phase} answered {answers[0].status}")

"""The TTL kills a sandbox from the host even when nothing in the guest answers any more."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

from api_client import ApiClient, wait_sandbox_state
from kilnd_fixture import pid_alive, wait_until


def test_ttl_kills_a_sandbox_whose_guest_hangs(kilnd_factory, recorder):
    kd = kilnd_factory({"KILN_KEEP_SPARE": "false"}, name="test-ttl")
    api = ApiClient(kd.port, kd.tokens["alice"], recorder)
    sb = api.create_sandbox(ttl_seconds=60)
    sid = sb["id"]
    pids = kd.qemu_pids()
    assert len(pids) == 1, pids
    qemu = pids[0]

    # `kill -STOP 1` in the guest: the kernel ignores SIGSTOP for PID 1 (the agent), so the agent
    # may well keep answering; either way the test goes on to stop the whole guest from the host.
    r = api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "kill -STOP 1; echo sent"}, timeout=30)
    assert r.status == 200, r
    probe = api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "echo still", "timeout_seconds": 5}, timeout=30)
    agent_ignored_sigstop = probe.status == 200 and probe.json()["stdout"] == "still\n"
    print(f"kill -STOP 1 in the guest: the agent {'kept answering' if agent_ignored_sigstop else 'hung'}")

    # A streamed exec in flight when the guest freezes must end when the TTL kills the VM.
    stream_end: dict = {}

    def stream():
        lines = []
        try:
            for line in api.stream_lines("POST", f"/v1/sandboxes/{sid}/exec", {"cmd": "while :; do echo t; sleep 1; done"},
                                         "application/x-ndjson", timeout=120):
                if line.strip():
                    lines.append(json.loads(line))
        except OSError as e:
            stream_end["error"] = repr(e)
        stream_end["events"] = lines
        stream_end["at"] = time.monotonic()
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    time.sleep(2)

    # Freeze the guest: every vCPU and the agent with it stop; QMP does not answer either.
    os.kill(qemu, signal.SIGSTOP)
    try:
        r = api.request("PATCH", f"/v1/sandboxes/{sid}", json_body={"ttl_seconds": 3})
        assert r.status == 200, r
        killed_by = time.monotonic() + 3
        doc = wait_sandbox_state(api, sid, {"expired", "lost", "deleted"}, timeout=40)
        assert doc["state"] == "expired", doc
        assert wait_until(lambda: not pid_alive(qemu), 15), f"QEMU {qemu} still alive after the TTL"
        assert kd.qemu_pids() == []
        assert wait_until(lambda: kd.run_dirs() == [], 10), kd.run_dirs()
        assert doc.get("ended_at")
    finally:
        if pid_alive(qemu):
            os.kill(qemu, signal.SIGCONT)
    t.join(30)
    assert not t.is_alive(), "the exec stream hung after its sandbox was killed"
    assert stream_end["at"] - killed_by < 30
    events = stream_end["events"]
    assert events and events[0]["type"] == "start", events
    assert events[-1]["type"] in ("error", "exit"), events[-3:]
    r = api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "true"})
    assert r.status == 409 and r.error_code == "sandbox_not_running", r


def test_default_ttl_and_short_ttl_expiry(api):
    sb = api.create_sandbox(ttl_seconds=2)
    doc = wait_sandbox_state(api, sb["id"], {"expired"}, timeout=30)
    assert doc["state"] == "expired", doc
    r = api.post("/v1/sandboxes", {"template": "tiny"})
    assert r.status == 201, r
    try:
        from test_lifecycle import parse_ts
        ttl = (parse_ts(r.json()["expires_at"]) - parse_ts(r.json()["created_at"])).total_seconds()
        assert 595 <= ttl <= 605, "the default TTL is 600 s"
    finally:
        api.delete(f"/v1/sandboxes/{r.json()['id']}")

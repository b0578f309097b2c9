"""kilnd on PostgreSQL survives a PostgreSQL restart (issue 18): one kilnd on a real PostgreSQL of
the test's own, sandboxes running and a CI job queued, then PostgreSQL stopped in the middle of a
run of creates. While it is down the API answers 503 with a reason and the VMs keep running; once
it is back every create either succeeded (and its record is there) or failed with a clear error,
nothing written before is lost, and the job ends, once."""
from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kilnd_fixture import Kilnd, wait_until


class Api:
    """A small JSON client: (status, body as JSON or text)."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.token = token

    def call(self, method: str, path: str, body: Any = None, timeout: float = 300) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Authorization": f"Bearer {self.token}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, raw.decode(errors="replace")
        finally:
            conn.close()


def _repo(root: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    root.mkdir()
    # Long enough to still be running when PostgreSQL stops, and to end while it is down.
    (root / ".kiln.yml").write_text("template: base\nsteps:\n  - name: hello\n    run: sleep 5 && echo hello-from-the-job\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


def _error_message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return ""


@pytest.fixture
def kilnd_on_pg(pg):
    url = pg.create_database("restart_" + secrets.token_hex(4))
    instance = Kilnd(name="pgrestart", extra_env={
        "KILN_STORE": url,
        "KILN_FLEET_SECRET": secrets.token_hex(32),
        "KILN_NETWORK_POOL": "10.213.0.0/16",
        "KILN_JAIL_UID_BASE": "2300000000",
        "KILN_CI_WORKERS": "1",
    })
    try:
        instance.create_token("alice", "admin")
        instance.start()
    except Exception:
        instance.cleanup()
        raise
    yield instance
    leftover = instance.cleanup()
    assert not leftover, f"kilnd left QEMU processes behind: {leftover}"


def test_a_postgresql_restart_loses_nothing_and_answers_503_while_down(pg, kilnd_on_pg, tmp_path):
    kilnd = kilnd_on_pg
    api = Api(kilnd.port, kilnd.tokens["alice"])

    # Before: a CI job running, and two running sandboxes.
    sha = _repo(tmp_path / "repo")
    status, job = api.call("POST", "/v1/jobs", {"repo": str(tmp_path / "repo"), "sha": sha})
    assert status == 201, job
    before = []
    for i in range(2):
        status, sb = api.call("POST", "/v1/sandboxes", {"template": "tiny", "ttl_seconds": 900,
                                                         "metadata": {"n": str(i)}})
        assert status == 201, sb
        before.append(sb["id"])
        # A mark in the guest: the same VM, not a new one, must answer after the outage.
        status, out = api.call("POST", f"/v1/sandboxes/{sb['id']}/exec",
                               {"cmd": f"echo mark-{sb['id']} > /tmp/mark && echo up"})
        assert status == 200 and "up" in out["stdout"], out

    # The job's VM is up and its step runs (the base template is baked on first use).
    def step_running() -> bool:
        s, j = api.call("GET", f"/v1/jobs/{job['id']}")
        return s == 200 and j["state"] == "running" and any(st["state"] == "running" for st in j["steps"])
    assert wait_until(step_running, 900, 0.2), api.call("GET", f"/v1/jobs/{job['id']}")

    # A run of creates that goes on while PostgreSQL stops and starts.
    results: list[tuple[int, Any]] = []
    stop_creating = threading.Event()

    def creating():
        while not stop_creating.is_set():
            try:
                results.append(api.call("POST", "/v1/sandboxes", {"template": "tiny", "ttl_seconds": 900}, timeout=300))
            except OSError as e:  # the connection itself must not fail: kilnd keeps serving
                results.append((0, str(e)))
            time.sleep(0.2)

    creator = threading.Thread(target=creating)
    creator.start()
    try:
        time.sleep(1)
        pg.stop()
        # Down: the API answers 503 with a reason, kilnd keeps running, the VMs keep running.
        status, body = api.call("GET", "/v1/sandboxes")
        assert status == 503, body
        assert "store is unavailable" in _error_message(body), body
        status, body = api.call("POST", f"/v1/sandboxes/{before[1]}/exec", {"cmd": "true"})
        assert status == 503, body
        time.sleep(6)  # the job's step ends meanwhile: its end is recorded once the store is back
        assert kilnd.proc.poll() is None, kilnd.log_tail()
        assert kilnd.healthy()
        pg.start()
        # Back: the same kilnd answers again (it reconnects; nothing restarted it).
        assert wait_until(lambda: api.call("GET", "/v1/sandboxes")[0] == 200, 30), kilnd.log_tail()
        time.sleep(1)
    finally:
        stop_creating.set()
        creator.join(timeout=600)

    # Every create either succeeded, and its sandbox is recorded, or failed with a clear error.
    created = [body["id"] for status, body in results if status == 201]
    failed = [(status, body) for status, body in results if status != 201]
    assert results, "no create was attempted"
    for status, body in failed:
        assert status in (503, 500), (status, body)
        assert _error_message(body), f"a create failed without a reason: {status} {body}"
    assert any(status == 503 for status, _ in failed), "no create ran while PostgreSQL was down"
    status, listed = api.call("GET", "/v1/sandboxes")
    assert status == 200, listed
    by_id = {sb["id"]: sb for sb in listed["sandboxes"]}
    for sb_id in before + created:
        assert sb_id in by_id, f"sandbox {sb_id} was created but its record is gone"
    for sb_id in before:
        assert by_id[sb_id]["state"] == "running", by_id[sb_id]
        # Still the same VM: it kept running while the store was down.
        status, out = api.call("POST", f"/v1/sandboxes/{sb_id}/exec", {"cmd": "cat /tmp/mark"})
        assert status == 200 and out["stdout"].strip() == f"mark-{sb_id}", out

    # The job ends, once, with its record and log intact.
    def job_final():
        s, j = api.call("GET", f"/v1/jobs/{job['id']}")
        return j if s == 200 and j["state"] in ("passed", "failed", "error", "cancelled") else None
    final = wait_until(job_final, 900, interval=2)
    assert final, api.call("GET", f"/v1/jobs/{job['id']}")
    assert final["state"] == "passed", json.dumps(final)
    assert final["attempts"] == 1 and final["restarts"] == 0, json.dumps(final)
    status, log = api.call("GET", f"/v1/jobs/{job['id']}/logs")
    text = log if isinstance(log, str) else json.dumps(log)
    assert status == 200 and text.count("hello-from-the-job") == 1, text[-2000:]
    status, jobs = api.call("GET", "/v1/jobs?limit=100")
    assert status == 200 and [j["id"] for j in jobs["jobs"]].count(job["id"]) == 1, jobs

    # kilnd noticed the outage and reconnected on its own (the same process all along).
    messages = [line.get("msg", "") for line in kilnd.log_lines()]
    assert "store: reconnected to PostgreSQL" in messages, kilnd.log_tail()
    print(f"creates: {len(created)} succeeded, {len(failed)} failed "
          f"({sum(1 for st, _ in failed if st == 503)} with 503); job end waited for the store: "
          f"{'ci: recording a job failed' in messages}; records written late: "
          f"{messages.count('store: a sandbox record written late')}")

    for sb_id in before + created:
        status, body = api.call("DELETE", f"/v1/sandboxes/{sb_id}")
        assert status in (200, 204), body

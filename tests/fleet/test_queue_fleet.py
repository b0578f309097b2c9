"""The CI queue of a fleet (docs/ci.md "Several hosts: leases"): real kilnd hosts on one real
PostgreSQL (pg_server.py), real VMs, a real git repository made here.

- kill -9 of host B in the middle of a CI job: host A re-queues it when B's lease expires and runs
  it to the end, once: attempt 2, its record and its log naming B as lost; B, restarted, leaves the
  job alone (its start-up reconcile touches only its own jobs); asked for the job's log, artifacts
  or tests, it names the survivor, which keeps them (409), or says it is dead (503).
- 100 concurrent signed webhook deliveries spread over three hosts, each delivery sent to every
  host: exactly one job per delivery."""
from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "api"))
sys.path.insert(0, str(HERE.parent / "ci"))

from fleet_hosts import host_resources, remove_host_tables  # noqa: E402
from kilnd_fixture import Kilnd, wait_until  # noqa: E402
from webhook_signature import github_signature  # noqa: E402

WEBHOOK_SECRET = "fleet-webhook-" + uuid.uuid4().hex
JOB_TIMEOUT = 900  # seconds: a job under TCG, its template baked on the host that runs it
LEASE = {"KILN_CI_LEASE_RENEW_SECONDS": "1", "KILN_CI_LEASE_TIMEOUT_SECONDS": "4"}


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, kiln_yml: str) -> tuple[Path, str]:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / ".kiln.yml").write_text(kiln_yml)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "pipeline")
    return root, git(root, "rev-parse", "HEAD")


def host(store: str, name: str, index: int, extra: dict[str, str] | None = None) -> Kilnd:
    """A fleet host: its own data dir, port, network pool and jail uids; the shared store."""
    env = {**host_resources(index, name), "KILN_STORE": store, "KILN_CI_WORKERS": "1", **LEASE, **(extra or {})}
    return Kilnd(extra_env=env, name=f"fleet-{name}")


def call(k: Kilnd, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", k.port, timeout=60)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, (json.loads(raw) if raw and raw[:1] in b"{[" else {"raw": raw.decode(errors="replace")})


def job_log(k: Kilnd, token: str, job_id: str) -> list[dict]:
    """The job's NDJSON log as this host keeps it, one event a line."""
    conn = http.client.HTTPConnection("127.0.0.1", k.port, timeout=60)
    conn.request("GET", f"/v1/jobs/{job_id}/logs", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    assert resp.status == 200, text
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture()
def store(pg) -> str:
    return pg.create_database("queue_" + secrets.token_hex(4))


def test_a_job_whose_host_is_killed_completes_on_another_host_once(store, tmp_path):
    repo, sha = make_repo(tmp_path / "repo", "template: base\nsteps:\n"
                                             "  - name: work\n    run: echo started; sleep 20; echo done\n")
    hosts = {"a": host(store, "a", 0), "b": host(store, "b", 1)}
    try:
        token = hosts["a"].create_token("admin")
        for k in hosts.values():  # both up before the job: each host's start-up work is done
            k.start()
        status, job = call(hosts["a"], "POST", "/v1/jobs", token, {"repo": str(repo), "sha": sha})
        assert status == 201, job
        job_id = job["id"]

        # Running, its step started (the VM is up) on whichever host claimed it: that host dies.
        def running_step():
            s, j = call(hosts["a"], "GET", f"/v1/jobs/{job_id}", token)
            return j if s == 200 and j["state"] == "running" and any(st["state"] == "running" for st in j["steps"]) else None
        running = wait_until(running_step, JOB_TIMEOUT, interval=0.5)
        assert running, f"the job never ran its step:\n{hosts['a'].log_tail()}\n{hosts['b'].log_tail()}"
        assert running["host"] in hosts and running["attempt"] == 1 and running["attempts"] == 1, running
        lost = running["host"]
        survivor = hosts["b" if lost == "a" else "a"]
        hosts[lost].kill9()

        def ended():
            s, j = call(survivor, "GET", f"/v1/jobs/{job_id}", token)
            return j if s == 200 and j["state"] not in ("queued", "running") else None
        final = wait_until(ended, JOB_TIMEOUT, interval=1)
        assert final, f"the job did not end on the surviving host:\n{survivor.log_tail()}"
        assert final["state"] == "passed", final
        assert final["host"] == survivor.extra_env["KILN_HOST_NAME"], final
        assert final["attempt"] == 2 and final["restarts"] == 1 and final["attempts"] == 2, final
        assert final["attempt_reason"].startswith(f"attempt 2: host {lost} lost"), final
        assert [s["name"] for s in final["steps"]] == ["work"], "one run's steps, not two"

        log = job_log(survivor, token, job_id)
        attempts = [e for e in log if e.get("type") == "attempt"]
        assert attempts and attempts[-1]["reason"].startswith(f"attempt 2: host {lost} lost"), log
        assert attempts[-1]["host"] == survivor.extra_env["KILN_HOST_NAME"], log
        ends = [e for e in log if e.get("type") == "end"]
        assert len(ends) == 1 and ends[0]["state"] == "passed", log

        # The lost host comes back: its start-up reconcile leaves the job as the survivor recorded it.
        hosts[lost].start()
        s, again = call(hosts[lost], "GET", f"/v1/jobs/{job_id}", token)
        assert s == 200 and again["state"] == "passed" and again["attempt"] == 2, again
        assert again["host"] == survivor.extra_env["KILN_HOST_NAME"], again

        # The job's log, artifacts and test reports are files on the survivor, which ran it to the
        # end: the other host says so, naming it (409: it is alive, ask it), and serves nothing.
        name = survivor.extra_env["KILN_HOST_NAME"]
        for path in ("logs?follow=false", "artifacts", "artifacts/x", "tests"):
            s, refused = call(hosts[lost], "GET", f"/v1/jobs/{job_id}/{path}", token)
            assert s == 409 and refused["error"]["code"] == "conflict", (path, s, refused)
            assert f"on host '{name}'" in refused["error"]["message"], (path, refused)
        # Once the survivor is dead too, it is 503: the files come back with their host.
        survivor.kill9()
        wait_until(lambda: call(hosts[lost], "GET", f"/v1/jobs/{job_id}/artifacts", token)[0] == 503, 60, interval=1)
        s, refused = call(hosts[lost], "GET", f"/v1/jobs/{job_id}/artifacts", token)
        assert s == 503 and f"on host '{name}'" in refused["error"]["message"] and "dead" in refused["error"]["message"], refused
    finally:
        for k in hosts.values():
            k.cleanup()
        remove_host_tables(list(hosts.values()))


def post_delivery(k: Kilnd, body: bytes, delivery: str, out: list, lock: threading.Lock) -> None:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push", "User-Agent": "GitHub-Hookshot/test",
               "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": github_signature(body, WEBHOOK_SECRET)}
    conn = http.client.HTTPConnection("127.0.0.1", k.port, timeout=120)
    conn.request("POST", "/v1/ci/github", body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    with lock:
        out.append((resp.status, json.loads(data) if data else {}))


def test_concurrent_deliveries_over_three_hosts_make_one_job_each(store, tmp_path):
    # A .kiln.yml that does not parse: each job ends at its planning, with no VM (the test counts
    # pipelines, not runs; 100 VMs would take this machine an hour).
    repo, sha = make_repo(tmp_path / "Hello-World", "steps: 42\n")
    hosts = [host(store, name, i, {"KILN_CI_REPOS": str(repo), "KILN_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET})
             for i, name in enumerate(["a", "b", "c"])]
    try:
        token = hosts[0].create_token("admin")
        for k in hosts:
            k.start()
        deliveries = [str(uuid.uuid4()) for _ in range(100)]
        results: list = []
        lock = threading.Lock()
        threads = []
        for n, delivery in enumerate(deliveries):
            # Every delivery to every host (a load balancer's retries, GitHub's redelivery), in an
            # order that differs per delivery; each body differs (its "after" and delivery).
            payload = {"ref": "refs/heads/main", "after": sha, "before": "0" * 40, "deleted": False,
                       "head_commit": {"id": sha}, "nonce": delivery,
                       "repository": {"full_name": "kiln-test/Hello-World", "clone_url": str(repo), "fork": False,
                                      "private": False, "default_branch": "main", "owner": {"login": "kiln-test"}},
                       "sender": {"login": "t"}, "pusher": {"name": "t"}}
            body = json.dumps(payload).encode()
            for k in hosts[n % 3:] + hosts[:n % 3]:
                threads.append(threading.Thread(target=post_delivery, args=(k, body, delivery, results, lock)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert len(results) == 300
        made = [r for s, r in results if s == 201]
        assert all(s in (200, 201) for s, _ in results), [r for r in results if r[0] not in (200, 201)][:5]
        assert len(made) == 100, f"{len(made)} of 300 posts made a job"
        job_ids = {r["job_id"] for _, r in results}
        assert len(job_ids) == 100, "every post of one delivery names the same job"

        status, page = call(hosts[1], "GET", "/v1/pipelines?limit=1000", token)
        assert status == 200, page
        by_delivery: dict[str, int] = {}
        for p in page["pipelines"]:
            d = (p.get("labels") or {}).get("github_delivery") or (p["jobs"][0].get("labels") or {}).get("github_delivery")
            by_delivery[d] = by_delivery.get(d, 0) + 1
        assert sorted(by_delivery) == sorted(deliveries), "a delivery without a pipeline, or an unknown one"
        assert set(by_delivery.values()) == {1}, {d: n for d, n in by_delivery.items() if n != 1}
    finally:
        for k in hosts:
            k.cleanup()
        remove_host_tables(hosts)

"""The /v1/pipelines routes on the suite's kilnd (real VMs): a pipeline queued from a git repository
made here runs to the end and reads back as the spec says (its job named, its steps with their
start times); list filters; who sees and who may cancel whose pipeline (alice is admin, bob a
ci:submit tenant, a ci:read token reads everything); 404 for ids the API cannot have issued and
for unknown ones; cancelling a running pipeline; bad bodies and queries. The scheduling itself is
tests/ci/test_pipelines.py."""
from __future__ import annotations

import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from api_client import ApiClient
from kilnd_fixture import wait_until

# A pipeline that is queued and then errors at its checkout (nothing listens on loopback port 9,
# the suite's ci_repos): what a token without admin can queue here.
UNREACHABLE = {"repo": "http://127.0.0.1:9/pipelines.git", "sha": "c" * 40}
FINAL = {"passed", "failed", "error", "cancelled"}


def commit_pipeline(root: Path, kiln_yml: str) -> str:
    """A new repository at `root` whose one commit holds `kiln_yml`; its SHA."""
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    root.mkdir()
    (root / ".kiln.yml").write_text(kiln_yml)
    run = lambda *args: subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "pipeline"]):
        run(*args)
    return run("rev-parse", "HEAD").stdout.strip()


def ok(r, status: int = 200):
    assert r.status == status and not r.errors, r
    return r.json()


def wait_pipeline(api: ApiClient, pid: str, until=lambda p: p["state"] in FINAL, timeout: float = 600) -> dict:
    seen = wait_until(lambda: (lambda p: p if until(p) else None)(ok(api.get(f"/v1/pipelines/{pid}"))), timeout,
                      interval=0.5)
    assert seen, f"pipeline {pid}: {api.get(f'/v1/pipelines/{pid}').json()}"
    return seen


@pytest.fixture(scope="module")
def reader(kilnd, recorder) -> ApiClient:
    return ApiClient(kilnd.port, kilnd.create_token("pipelines-reader", "ci:read", ""), recorder)


def test_a_pipeline_runs_and_reads_back_as_the_spec_says(api, api_bob, reader, tmp_path):
    repo = tmp_path / "repo"
    sha = commit_pipeline(repo, "template: base\nsteps:\n  - name: one\n    run: echo one\n"
                                "  - name: two\n    run: echo two\n")
    created = ok(api.post("/v1/pipelines", {"repo": str(repo), "sha": sha}), 201)
    pid = created["id"]
    assert pid.startswith("pipeline-") and created["state"] in ("queued", "running"), created
    assert created["sha"] == sha and created["source"] == "cli" and created["trusted"] is True
    assert len(created["jobs"]) == 1 and created["jobs"][0]["pipeline"] == pid
    assert created["jobs"][0]["name"] in ("", "job")  # "" until a worker has read .kiln.yml

    p = wait_pipeline(api, pid)
    assert p["state"] == "passed" and p["error"] == "", p
    assert p["started_at"] and p["finished_at"] and p["duration_ms"] > 0
    [job] = p["jobs"]
    # A file with top-level steps is a pipeline of one job named "job".
    assert job["name"] == "job" and job["needs"] == [] and job["state"] == "passed", job
    assert [s["name"] for s in job["steps"]] == ["one", "two"]
    starts = [datetime.fromisoformat(s["started_at"].replace("Z", "+00:00")) for s in job["steps"]]
    assert starts[0] <= starts[1] and all(s["shard"] is None for s in job["steps"]), job["steps"]
    # The job reads back the same on its own route, and /v1/jobs names its pipeline.
    assert ok(api.get(f"/v1/jobs/{job['id']}"))["pipeline"] == pid

    listed = ok(api.get("/v1/pipelines?limit=5&state=passed"))["pipelines"]
    assert pid in [x["id"] for x in listed] and all(x["state"] == "passed" for x in listed)
    assert len(ok(api.get("/v1/pipelines?limit=1"))["pipelines"]) == 1
    assert pid not in [x["id"] for x in ok(api.get("/v1/pipelines?state=running"))["pipelines"]]
    # Cancelling a finished pipeline leaves it as it is.
    assert ok(api.post(f"/v1/pipelines/{pid}/cancel"))["state"] == "passed"

    # Not bob's: as if it did not exist. ci:read sees it but cancels nothing.
    for r in (api_bob.get(f"/v1/pipelines/{pid}"), api_bob.post(f"/v1/pipelines/{pid}/cancel")):
        assert r.status == 404 and r.error_code == "not_found" and not r.errors, r
    assert pid not in [x["id"] for x in ok(api_bob.get("/v1/pipelines"))["pipelines"]]
    assert ok(reader.get(f"/v1/pipelines/{pid}"))["id"] == pid
    assert pid in [x["id"] for x in ok(reader.get("/v1/pipelines"))["pipelines"]]
    r = reader.post(f"/v1/pipelines/{pid}/cancel")
    assert r.status == 403 and r.error_code == "forbidden" and not r.errors, r


def test_a_tenants_pipeline_is_its_own_and_the_admins(api, api_bob, reader):
    mine = ok(api_bob.post("/v1/pipelines", UNREACHABLE), 201)
    pid = mine["id"]
    assert mine["trusted"] is False, "a ci:submit pipeline is untrusted: it gets no secrets"
    assert pid in [x["id"] for x in ok(api_bob.get("/v1/pipelines"))["pipelines"]]
    assert ok(api.get(f"/v1/pipelines/{pid}"))["id"] == pid  # admin
    assert pid in [x["id"] for x in ok(reader.get("/v1/pipelines?limit=1000"))["pipelines"]]
    p = wait_pipeline(api_bob, pid, timeout=120)
    assert p["state"] == "error" and p["error"], p  # its checkout fails: nothing listens there
    # Its owner may cancel it (a finished one stays as it is), and so may an admin.
    assert ok(api_bob.post(f"/v1/pipelines/{pid}/cancel"))["state"] == "error"
    assert ok(api.post(f"/v1/pipelines/{pid}/cancel"))["state"] == "error"


def test_cancelling_a_running_pipeline_cancels_its_job(api, tmp_path):
    repo = tmp_path / "repo"
    sha = commit_pipeline(repo, "template: base\nsteps:\n  - name: long\n    run: sleep 300\n")
    pid = ok(api.post("/v1/pipelines", {"repo": str(repo), "sha": sha}), 201)["id"]
    wait_pipeline(api, pid, until=lambda p: p["jobs"][0]["state"] == "running" and
                  any(s["state"] == "running" for s in p["jobs"][0]["steps"]))
    ok(api.post(f"/v1/pipelines/{pid}/cancel"))
    p = wait_pipeline(api, pid, timeout=120)
    assert p["state"] == "cancelled" and p["jobs"][0]["state"] == "cancelled", p


@pytest.mark.parametrize("path", ["/v1/pipelines/pipeline-000000000000", "/v1/pipelines/pipeline-00000000000",
                                  "/v1/pipelines/pipeline-ABCDEF012345", "/v1/pipelines/job-000000000000",
                                  "/v1/pipelines/sb-000000000000", "/v1/pipelines/%2e%2e",
                                  "/v1/pipelines/pipeline-000000000000%00"])
def test_unknown_and_implausible_ids_are_404(api, path):
    for r in (api.get(path), api.post(path + "/cancel")):
        assert r.status == 404 and r.error_code == "not_found", r


@pytest.mark.parametrize("body,status", [
    (b"", 400), (b"{not json", 400), (b"[]", 400), (b'"repo"', 400),
    (b"{}", 422), (b'{"repo": ""}', 422), (b'{"repo": 7}', 422), (b'{"repo": "/x", "sha": ["a"]}', 422),
    (b'{"repo": "/x", "branch": "main"}', 422),
])
def test_bad_bodies_are_refused(api, body, status):
    r = api.request("POST", "/v1/pipelines", body, headers={"Content-Type": "application/json"})
    assert r.status == status and not r.errors, r


def test_bad_queries_scopes_and_quota(api, api_bob, api_anon, kilnd, recorder):
    for q in ("limit=0", "limit=1001", "limit=x", "state=waiting", "state=bogus", "color=red"):
        r = api.get(f"/v1/pipelines?{q}")
        assert r.status == 422 and r.error_code == "invalid_argument" and not r.errors, (q, r)
    # /v1/jobs knows the states of a pipeline's jobs.
    for state in ("waiting", "skipped"):
        assert all(j["state"] == state for j in ok(api.get(f"/v1/jobs?state={state}"))["jobs"])
    assert api_anon.get("/v1/pipelines").status == 401
    r = api_bob.post("/v1/pipelines", {"repo": "/etc", "sha": "b" * 40})
    assert r.status == 403 and r.error_code == "forbidden" and "admin" in r.json()["error"]["message"], r
    sandboxes_only = ApiClient(kilnd.port, kilnd.create_token("pipelines-sandboxes", "sandboxes", ""), recorder)
    assert sandboxes_only.get("/v1/pipelines").status == 403
    reader_only = ApiClient(kilnd.port, kilnd.create_token("pipelines-read-only", "ci:read", ""), recorder)
    r = reader_only.post("/v1/pipelines", UNREACHABLE)
    assert r.status == 403 and "ci:submit" in r.json()["error"]["message"], r
    no_jobs = ApiClient(kilnd.port, kilnd.create_token("pipelines-no-jobs", "ci:submit", "queued_jobs=0"), recorder)
    r = no_jobs.post("/v1/pipelines", UNREACHABLE)
    assert r.status == 429 and "queued_jobs" in r.json()["error"]["message"] and not r.errors, r

"""The /v1/jobs routes on the suite's kilnd, so the spec conformance check (test_zz_*) sees each
of them answer with success: one small job from a git repository made here (a real VM from the
`base` template), its log followed to the end, its artifacts listed and downloaded. The CI job
behaviour itself is tests/ci/test_jobs.py."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _repo(root: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    root.mkdir()
    (root / ".kiln.yml").write_text(
        "template: base\nsteps:\n  - name: make\n    run: mkdir -p out && echo hello | tee out/hello.txt\n"
        "  - name: report\n"
        "    run: printf '<testsuite><testcase name=\"a\"/><testcase name=\"b\"><skipped message=\"later\"/></testcase>"
        "</testsuite>' > out/junit.xml\n"
        "artifacts: [out/hello.txt]\njunit: [out/junit.xml]\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_job_routes_answer_as_the_spec_says(api, api_bob, tmp_path):
    sha = _repo(tmp_path / "repo")
    r = api.post("/v1/jobs", {"repo": str(tmp_path / "repo"), "sha": sha})
    assert r.status == 201 and not r.errors, r
    job_id = r.json()["id"]
    # The log, followed until the job ends (the stream closes then).
    log = api.get(f"/v1/jobs/{job_id}/logs", timeout=600)
    assert log.status == 200 and not log.errors, log
    events = log.ndjson()
    assert events[-1]["type"] == "end" and events[-1]["state"] == "passed", events[-5:]
    assert "hello" in "".join(e.get("data", "") for e in events)
    job = api.get(f"/v1/jobs/{job_id}")
    assert job.status == 200 and not job.errors and job.json()["state"] == "passed"
    jobs = api.get("/v1/jobs?limit=5&state=passed")
    assert jobs.status == 200 and not jobs.errors and job_id in [j["id"] for j in jobs.json()["jobs"]]
    arts = api.get(f"/v1/jobs/{job_id}/artifacts")
    assert arts.status == 200 and not arts.errors and arts.json()["artifacts"][0]["name"] == "out/hello.txt"
    body = api.get(f"/v1/jobs/{job_id}/artifacts/out%2Fhello.txt")
    assert body.status == 200 and not body.errors and body.body == b"hello\n"
    cancel = api.post(f"/v1/jobs/{job_id}/cancel")
    assert cancel.status == 200 and not cancel.errors and cancel.json()["state"] == "passed"
    assert api_bob.get(f"/v1/jobs/{job_id}").status == 404
    # Its test cases (skipped before passed), one page at a time.
    tests = api.get(f"/v1/jobs/{job_id}/tests?limit=1")
    assert tests.status == 200 and not tests.errors, tests
    page = tests.json()
    assert page["count"] == 2 and [c["name"] for c in page["cases"]] == ["b"] and page["cases"][0]["message"] == "later"
    rest = api.get(f"/v1/jobs/{job_id}/tests?cursor={page['next_cursor']}")
    assert rest.status == 200 and [c["name"] for c in rest.json()["cases"]] == ["a"] and rest.json()["next_cursor"] is None
    assert api_bob.get(f"/v1/jobs/{job_id}/tests").status == 404
    # Lists page by cursor: the next page starts after the last one shown.
    first = api.get("/v1/jobs?limit=1")
    assert first.status == 200 and not first.errors and first.json()["jobs"][0]["id"] == job_id
    assert api.get(f"/v1/jobs?limit=1&repo={tmp_path / 'repo'}").json()["jobs"][0]["id"] == job_id

"""Pipelines of several jobs on a real kilnd with real VMs (issue 16): lint, a two-value matrix and a
job that needs them all. The three independent jobs run at once (their steps' start times and
durations overlap), the dependent one starts after they ended and finds their artifacts under
/work/needs; when a matrix job fails, the dependent one is skipped with its reason and the
pipeline fails. The pipelines come through the GitHub webhook, so the commit statuses (one per job,
context kiln/<job>, and one for the pipeline, context kiln) are checked on a recording stand-in for
api.github.com. `kiln ci run` on the failing pipeline prints every job's final line and exits 1."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "api"))
sys.path.insert(0, str(HERE))

from api_client import ApiClient  # noqa: E402
from kilnd_fixture import Kilnd, serving, wait_until  # noqa: E402
from openapi_check import OpenApiSpec, SpecRecorder  # noqa: E402
# The webhook suite's recorded payloads, signing and status recorder (tests/ci/test_github_webhook.py).
from test_github_webhook import (FULL_NAME, GH_TOKEN, PUBLIC_URL, SECRET,  # noqa: E402
                                 example, examples, job_log, point_at, post_webhook, statuses)
from test_jobs import Repo, kiln_cli, wait_final  # noqa: E402

assert examples and statuses  # fixtures (module-scoped: this module gets its own), used by name below

PIPELINE_TIMEOUT = 1200  # seconds: four jobs, three of them at once, under TCG on a shared machine
# Long enough that the three independent jobs' steps overlap even when their VMs start seconds apart.
OVERLAP_SECONDS = 20

# FAIL_ON names the matrix value whose test fails ("none": every one passes).
PIPELINE = f"""\
env:
  FAIL_ON: "{{fail_on}}"
jobs:
  lint:
    template: base
    steps:
      - name: lint
        run: |
          sleep {OVERLAP_SECONDS}
          mkdir -p out && echo lint-ok > out/lint.txt
    artifacts: [out/lint.txt]
  test:
    template: base
    matrix:
      version: ["1", "2"]
    steps:
      - name: test
        run: |
          sleep {OVERLAP_SECONDS}
          mkdir -p out && echo "test-$KILN_MATRIX_VERSION" > out/result.txt
          test "$KILN_MATRIX_VERSION" != "$FAIL_ON"
    artifacts: [out/result.txt]
  report:
    template: base
    needs: [lint, test]
    steps:
      - name: gather
        run: |
          echo "needs dir: $KILN_NEEDS_DIR"
          cat "$KILN_NEEDS_DIR/lint/out/lint.txt" "/work/needs/test (1)/out/result.txt" \\
              "/work/needs/test (2)/out/result.txt" | tr '\\n' ' '
          echo
"""

INDEPENDENT = ["lint", "test (1)", "test (2)"]


def when(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Repo:
    return Repo(tmp_path_factory.mktemp("pipelines") / "Hello-World")


@pytest.fixture(scope="module")
def kilnd(statuses, repo):
    yield from serving({
        "KILN_CI_WORKERS": "3",  # the three independent jobs at once
        "KILN_CI_REPOS": str(repo.path),
        "KILN_GITHUB_WEBHOOK_SECRET": SECRET,
        "KILN_GITHUB_API_URL": statuses.api_url,
        "KILN_GITHUB_TOKEN": GH_TOKEN,
        "KILN_PUBLIC_URL": PUBLIC_URL,
    }, "pipelines", {"admin": "admin"})


@pytest.fixture(scope="module")
def api(kilnd) -> ApiClient:
    """The admin's client; its answers are checked against api/openapi.yaml."""
    return ApiClient(kilnd.port, kilnd.tokens["admin"], SpecRecorder(OpenApiSpec.load()))


def run_pipeline(kilnd: Kilnd, api: ApiClient, examples, repo: Repo, fail_on: str) -> tuple[str, dict]:
    """Commits the pipeline, pushes it through the webhook, waits for its end; (sha, pipeline)."""
    sha = repo.commit({".kiln.yml": PIPELINE.format(fail_on=fail_on)}, message=f"fail on {fail_on}")
    payload = point_at(example(examples, "push", deleted=False), repo.path, sha)
    status, answer = post_webhook(kilnd, "push", payload, delivery=str(uuid.uuid4()))
    assert status == 201, answer
    return sha, wait_final(api, f"/v1/pipelines/{answer['pipeline_id']}", PIPELINE_TIMEOUT)


def final_statuses(statuses: StatusRecorder, sha: str, contexts: set[str]) -> dict[str, list[dict]]:
    """Every context's posts for `sha`, once each context in `contexts` has a final one."""
    def all_final():
        by_context: dict[str, list[dict]] = {}
        for post in statuses.for_sha(sha):
            by_context.setdefault(post["body"]["context"], []).append(post)
        done = all(c in by_context and by_context[c][-1]["body"]["state"] != "pending" for c in contexts)
        return by_context if done else None
    found = wait_until(all_final, 60, interval=0.5)
    assert found, statuses.for_sha(sha)
    return found


def test_independent_jobs_overlap_and_the_dependent_one_sees_their_artifacts(kilnd, api, examples, repo, statuses):
    sha, p = run_pipeline(kilnd, api, examples, repo, fail_on="none")
    jobs = {j["name"]: j for j in p["jobs"]}
    assert [j["name"] for j in p["jobs"]] == ["lint", "test (1)", "test (2)", "report"], p
    assert p["state"] == "passed" and all(j["state"] == "passed" for j in p["jobs"]), p
    # The report job needs every other job (a `needs` naming a matrix job means all of it).
    assert sorted(jobs["report"]["needs"]) == sorted(jobs[n]["id"] for n in INDEPENDENT)

    # The three independent jobs ran at once: their steps' intervals have a common part.
    intervals = []
    for name in INDEPENDENT:
        [step] = jobs[name]["steps"]
        start = when(step["started_at"])
        intervals.append((start, start + step["duration_ms"] / 1000))
        assert step["duration_ms"] >= OVERLAP_SECONDS * 1000 and step["shard"] is None, step
    assert max(s for s, _ in intervals) < min(e for _, e in intervals), f"no overlap: {intervals}"
    # The dependent one started after all of them ended, and found their artifacts.
    report = jobs["report"]
    ended = max(when(jobs[n]["finished_at"]) for n in INDEPENDENT)
    assert when(report["started_at"]) >= ended and when(report["steps"][0]["started_at"]) >= ended, p
    log = job_log(kilnd, report["id"])
    assert "needs dir: /work/needs" in log and "lint-ok test-1 test-2" in log, log[-3000:]

    # GitHub: one status per job and one for the pipeline, each pending first and then success.
    contexts = {"kiln"} | {f"kiln/{n}" for n in jobs}
    by_context = final_statuses(statuses, sha, contexts)
    assert set(by_context) == contexts, by_context.keys()
    for context, posts in by_context.items():
        states = [x["body"]["state"] for x in posts]
        assert states[0] == "pending" and states[-1] == "success" and "success" not in states[:-1], (context, states)
        for post in posts:
            assert post["path"] == f"/api/v3/repos/{FULL_NAME}/statuses/{sha}" and post["auth"] == f"Bearer {GH_TOKEN}"
            target = (f"{PUBLIC_URL}/ui/pipelines/{p['id']}" if context == "kiln"
                      else f"{PUBLIC_URL}/ui/jobs/{jobs[context[len('kiln/'):]]['id']}")
            assert post["body"]["target_url"] == target, post
    assert by_context["kiln"][-1]["body"]["description"] == "passed: 4 of 4 jobs passed"


def test_a_failed_matrix_job_skips_the_dependent_one_and_fails_the_pipeline(kilnd, api, examples, repo, statuses):
    sha, p = run_pipeline(kilnd, api, examples, repo, fail_on="2")
    jobs = {j["name"]: j for j in p["jobs"]}
    assert p["state"] == "failed" and "test (2)" in p["error"], p
    assert [jobs[n]["state"] for n in ("lint", "test (1)", "test (2)", "report")] == \
        ["passed", "passed", "failed", "skipped"], p
    report = jobs["report"]
    assert "test (2)" in report["error"] and report["started_at"] is None, report
    assert all(s["state"] in ("pending", "skipped") for s in report["steps"]), report["steps"]

    by_context = final_statuses(statuses, sha, {"kiln", "kiln/lint", "kiln/test (1)", "kiln/test (2)", "kiln/report"})
    final = {c: posts[-1]["body"] for c, posts in by_context.items()}
    assert final["kiln"]["state"] == "failure", final
    assert final["kiln"]["description"] == "failed: 2 of 4 jobs passed, 1 failed, 1 skipped", final
    assert final["kiln/test (2)"]["state"] == "failure" and final["kiln/lint"]["state"] == "success", final
    assert final["kiln/report"]["state"] == "error" and "test (2)" in final["kiln/report"]["description"], final


def test_kiln_ci_run_prints_every_jobs_final_line_and_exits_1(kilnd, repo, tmp_path):
    sha = repo.commit({".kiln.yml": PIPELINE.format(fail_on="1")}, message="fail on 1, for kiln ci run")
    env = dict(os.environ, KILN_URL=kilnd.url, KILN_TOKEN=kilnd.tokens["admin"], HOME=str(tmp_path))
    run = subprocess.run([str(kiln_cli()), "ci", "run", str(repo.path), "--sha", sha], env=env, capture_output=True,
                         text=True, timeout=PIPELINE_TIMEOUT)
    assert run.returncode == 1, run.stderr
    out = run.stderr  # not a terminal: a plain line each time a job changes state
    lines = out.splitlines()
    final = {name: [line for line in lines if line.startswith(name + " ")][-1] for name in ("lint", "test (1)",
                                                                                            "test (2)", "report")}
    assert final["lint"].split()[1] == "passed" and final["test (2)"].split()[2] == "passed", out
    assert "failed" in final["test (1)"] and "step test (exit 1)" in final["test (1)"], out
    assert "skipped" in final["report"] and "test (1)" in final["report"], out
    assert any(line.startswith("kiln: pipeline pipeline-") and " failed in " in line for line in lines), out
    # --follow streams the log of the job named, between the jobs' lines.
    run = subprocess.run([str(kiln_cli()), "ci", "run", str(repo.path), "--sha", sha, "--follow", "lint"], env=env,
                         capture_output=True, text=True, timeout=PIPELINE_TIMEOUT)
    assert run.returncode == 1 and "following job lint" in run.stderr, run.stderr
    assert "==> lint" in run.stderr, run.stderr  # the followed job's step, from its log

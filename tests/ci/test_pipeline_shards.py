"""Sharded jobs and needed jobs' artifacts end to end (docs/pipeline.md): a real kilnd, real VMs from
the `base` template, real git repositories made here.

- `parallel: 4` with `fork_after`: the steps up to fork_after run once (a counter file outside the
  checkout shows it in every child), then 4 forks of that VM each run the rest with their own
  KILN_SHARD_INDEX; the children are separate VMs with renewed identity (hostname, /dev/urandom);
  the job's JUnit totals are the sum of the shards'; each shard's artifact is kept as shard-<i>/...;
  the log says which shard printed what; no VM of the job is left.
- without fork_after: N fresh VMs, each checking the commit out and running every step;
- a failing shard fails the job while the others run to their end;
- cancel and the job's cap end every shard;
- a job that `needs` others gets their artifacts under /work/needs/<planned name>/ (a matrix job's
  combinations included), with the pipeline's variables.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "api"))

from api_client import ApiClient, query  # noqa: E402
from kilnd_fixture import Kilnd, wait_until  # noqa: E402
# The jobs tests' fixtures (api over this module's kilnd, the spec recorder, a repository) and helpers.
from test_jobs import api, check, logs, output, recorder, repo, submit, wait_final, wait_job  # noqa: E402,F401


@pytest.fixture(scope="module")
def kilnd():
    # alice is admin: she sees every owner's sandboxes (the job VMs belong to kilnd's CI token).
    instance = Kilnd.launched({"KILN_CI_WORKERS": "2"}, "ci-shards", {"alice": "admin"})
    yield instance
    instance.cleanup()


def sharded_job(parallel: int, steps: str, fork_after: str | None = None, extra: str = "") -> str:
    """A .kiln.yml of one job `suite` in `parallel` shards; `steps` as written under `steps:`."""
    return ("jobs:\n  suite:\n    template: base\n"
            f"    parallel: {parallel}\n" + (f"    fork_after: {fork_after}\n" if fork_after else "") +
            extra + "    steps:\n" + steps)


def job_vms(api: ApiClient, job_id: str, live_only: bool = False) -> list[dict]:
    """The sandboxes a job made (labelled ci_job by the runner), any owner, live or ended."""
    path = query("/v1/sandboxes", owner="all", state=None if live_only else "all", **{"metadata.ci_job": job_id})
    r = check(api.get(path))
    assert r.status == 200, r
    return r.json()["sandboxes"]


def shard_output(events: list[dict], shard: int | None, step: str) -> str:
    """What `step` printed in one shard's VM (None: the job's own VM, before any fork)."""
    return "".join(e["data"] for e in events
                   if e["type"] == "output" and e["step"] == step and e.get("shard") == shard)


def fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


PREPARE = "      - name: prepare\n        run: echo ready\n"  # the step the shards fork after
RESULTS = "    junit: [\"reports/*.xml\"]\n    artifacts: [\"out/*\"]\n"
# Each shard writes a JUnit report with shard index + 1 tests (one failing nowhere), and an artifact.
SHARD_REPORT = (
    "          n=$((KILN_SHARD_INDEX + 1)); mkdir -p reports out\n"
    "          { printf '<testsuite tests=\"%s\">' $n; for i in $(seq $n); do printf '<testcase name=\"t%s\"/>' $i; done;"
    " printf '</testsuite>'; } > reports/shard.xml\n"
    "          echo \"result of shard $KILN_SHARD_INDEX\" > out/result.txt\n")


def test_fork_after_runs_the_prepare_once_and_forks_four_separate_shards(api, repo):
    sha = repo.commit({".kiln.yml": sharded_job(4, fork_after="prepare", extra=RESULTS, steps=(
        "      - name: prepare\n"
        "        run: |\n"
        "          echo prepared >> /work/prepare-count\n"
        "          echo warm > warm.txt\n"
        "      - name: test\n"
        "        run: |\n"
        "          echo \"count=$(wc -l < /work/prepare-count) index=$KILN_SHARD_INDEX of=$KILN_SHARD_COUNT"
        " host=$(hostname) rand=$(head -c 16 /dev/urandom | od -An -x | tr -d ' \\n')"
        " warm=$(cat warm.txt) name=$KILN_JOB_NAME\"\n"
        + SHARD_REPORT))})
    job = wait_job(api, submit(api, repo, sha)["id"], timeout=600)
    assert job["state"] == "passed", (job["error"], job["steps"])
    # One record for prepare (the job's own VM), then test once per shard.
    assert [(s["name"], s["shard"], s["state"]) for s in job["steps"]] == (
        [("prepare", None, "passed")] + [("test", i, "passed") for i in range(4)]), job["steps"]
    assert all(s["started_at"] for s in job["steps"]), job["steps"]
    events = logs(api, job["id"])
    seen = {}
    for i in range(4):
        line = shard_output(events, i, "test").strip()
        assert line, f"shard {i} printed nothing under its own shard: {output(events)}"
        seen[i] = fields(line)
    for i, f in seen.items():
        assert f["count"] == "1", f"prepare ran more than once (shard {i} sees {f['count']} lines)"
        assert f["index"] == str(i) and f["of"] == "4", f
        assert f["warm"] == "warm", "the shard did not start from the prepared VM"
        assert f["name"] == "suite", f
    assert len({f["host"] for f in seen.values()}) == 4, f"hostnames repeat across shards: {seen}"
    assert len({f["rand"] for f in seen.values()}) == 4, f"/dev/urandom repeats across shards: {seen}"
    # 1 + 2 + 3 + 4 tests.
    assert job["junit"] == {"tests": 10, "failures": 0, "errors": 0, "skipped": 0}, job["junit"]
    arts = check(api.get(f"/v1/jobs/{job['id']}/artifacts")).json()["artifacts"]
    assert sorted(a["name"] for a in arts) == [f"shard-{i}/out/result.txt" for i in range(4)], arts
    for i in range(4):
        body = check(api.get(f"/v1/jobs/{job['id']}/artifacts/shard-{i}%2Fout%2Fresult.txt"))
        assert body.status == 200 and body.body == f"result of shard {i}\n".encode(), body
    # The job's VM and its 4 forks: 5 VMs, the children forked from it, none left.
    vms = job_vms(api, job["id"])
    parents = [v for v in vms if "ci_shard" not in v["metadata"]]
    children = [v for v in vms if "ci_shard" in v["metadata"]]
    assert len(parents) == 1 and len(children) == 4, vms
    assert sorted(v["metadata"]["ci_shard"] for v in children) == ["0", "1", "2", "3"]
    assert all(v.get("parent_id") == parents[0]["id"] for v in children), vms
    assert {v["id"] for v in children} == {f["host"] for f in seen.values()}, "a shard's hostname is its sandbox id"
    assert wait_until(lambda: not job_vms(api, job["id"], live_only=True), 30), job_vms(api, job["id"], live_only=True)


def test_without_fork_after_each_shard_is_a_fresh_vm_running_every_step(api, repo):
    sha = repo.commit({".kiln.yml": sharded_job(2, extra=RESULTS, steps=(
        "      - name: setup\n"
        "        run: echo setup >> /work/setup-count\n"
        "      - name: test\n"
        "        run: |\n"
        "          echo \"count=$(wc -l < /work/setup-count) index=$KILN_SHARD_INDEX of=$KILN_SHARD_COUNT"
        " host=$(hostname) head=$(git rev-parse HEAD)\"\n"
        + SHARD_REPORT))})
    job = wait_job(api, submit(api, repo, sha)["id"], timeout=600)
    assert job["state"] == "passed", (job["error"], job["steps"])
    assert [(s["name"], s["shard"]) for s in job["steps"]] == [
        ("setup", 0), ("test", 0), ("setup", 1), ("test", 1)], job["steps"]
    events = logs(api, job["id"])
    seen = {i: fields(shard_output(events, i, "test").strip()) for i in range(2)}
    for i, f in seen.items():
        assert f["count"] == "1" and f["index"] == str(i) and f["of"] == "2", f
        assert f["head"] == sha, "a fresh shard did not check the commit out"
    assert seen[0]["host"] != seen[1]["host"]
    assert job["junit"]["tests"] == 1 + 2
    assert sorted(a["name"] for a in check(api.get(f"/v1/jobs/{job['id']}/artifacts")).json()["artifacts"]) == [
        "shard-0/out/result.txt", "shard-1/out/result.txt"]
    vms = job_vms(api, job["id"])
    assert sorted(v["metadata"].get("ci_shard") for v in vms) == ["0", "1"], vms
    assert not any(v.get("parent_id") for v in vms), "fresh shards are created, not forked"
    assert wait_until(lambda: not job_vms(api, job["id"], live_only=True), 30)


def test_a_failing_shard_fails_the_job_and_the_others_run_to_their_end(api, repo):
    sha = repo.commit({".kiln.yml": sharded_job(3, fork_after="prepare", steps=PREPARE + (
        "      - name: test\n"
        "        run: |\n"
        "          if [ \"$KILN_SHARD_INDEX\" = 1 ]; then echo shard one fails; exit 3; fi\n"
        "          sleep 2; echo test-done-$KILN_SHARD_INDEX\n"
        "      - name: after\n"
        "        run: echo after-done-$KILN_SHARD_INDEX\n"))})
    job = wait_job(api, submit(api, repo, sha)["id"], timeout=600)
    assert job["state"] == "failed", job
    assert job["attempts"] == 1, "a failing shard was retried as if the VM had failed"
    assert "test" in job["error"] and "shard 1" in job["error"] and "3" in job["error"], job["error"]
    states = {(s["name"], s["shard"]): s["state"] for s in job["steps"]}
    assert states == {("prepare", None): "passed",
                      ("test", 0): "passed", ("after", 0): "passed",
                      ("test", 1): "failed", ("after", 1): "skipped",
                      ("test", 2): "passed", ("after", 2): "passed"}, states
    events = logs(api, job["id"])
    for i in (0, 2):
        assert f"after-done-{i}" in shard_output(events, i, "after"), "a shard stopped because another failed"
    assert "after-done-1" not in output(events)
    assert wait_until(lambda: not job_vms(api, job["id"], live_only=True), 30)


def test_cancel_ends_every_shard(api, repo):
    sha = repo.commit({".kiln.yml": sharded_job(2, fork_after="prepare", steps=PREPARE + (
        "      - name: wait\n"
        "        run: echo started-$KILN_SHARD_INDEX; sleep 300\n"))})
    job_id = submit(api, repo, sha)["id"]

    def both_started():
        started = {e.get("shard") for e in logs(api, job_id) if e["type"] == "step_started" and e["step"] == "wait"}
        return started == {0, 1}
    assert wait_until(both_started, 300), logs(api, job_id)
    assert len(job_vms(api, job_id, live_only=True)) == 2
    r = check(api.post(f"/v1/jobs/{job_id}/cancel"))
    assert r.status in (200, 202), r
    job = wait_job(api, job_id, timeout=120)
    assert job["state"] == "cancelled", job
    assert wait_until(lambda: not job_vms(api, job_id, live_only=True), 30), job_vms(api, job_id, live_only=True)


def test_the_jobs_cap_ends_every_shard(api, repo):
    # No step timeout: only the job's timeout_seconds stops the shards, through the watchdog.
    sha = repo.commit({".kiln.yml": sharded_job(2, fork_after="prepare", extra="    timeout_seconds: 10\n", steps=PREPARE + (
        "      - name: wait\n"
        "        run: sleep 300\n"))})
    job = wait_job(api, submit(api, repo, sha)["id"], timeout=180)
    assert job["state"] == "failed", job
    assert "timeout_seconds" in job["error"], job["error"]
    assert job["duration_ms"] < 60_000, job
    assert {(s["name"], s["shard"]): s["state"] for s in job["steps"]} == {
        ("prepare", None): "passed", ("wait", 0): "timed_out", ("wait", 1): "timed_out"}, job["steps"]
    assert wait_until(lambda: not job_vms(api, job["id"], live_only=True), 30), job_vms(api, job["id"], live_only=True)


def test_a_job_gets_the_artifacts_of_the_jobs_it_needs(api, repo):
    sha = repo.commit({".kiln.yml": (
        "jobs:\n"
        "  build:\n"
        "    template: base\n"
        "    artifacts: [\"dist/**\"]\n"
        "    steps:\n"
        "      - name: build\n"
        "        run: mkdir -p dist/sub && echo \"app of $KILN_JOB_NAME\" > dist/app.txt && echo deep > dist/sub/x.txt\n"
        "  gen:\n"
        "    template: base\n"
        "    matrix:\n"
        "      flavour: [plain, spicy]\n"
        "    artifacts: [\"gen/*\"]\n"
        "    steps:\n"
        "      - name: gen\n"
        "        run: mkdir gen && echo \"made $KILN_MATRIX_FLAVOUR\" > gen/value.txt\n"
        "  use:\n"
        "    template: base\n"
        "    needs: [build, gen]\n"
        "    parallel: 2\n"
        "    steps:\n"
        "      - name: read\n"
        "        run: |\n"
        "          cat \"$KILN_NEEDS_DIR/build/dist/app.txt\" /work/needs/build/dist/sub/x.txt\n"
        "          cat \"/work/needs/gen (plain)/gen/value.txt\" \"/work/needs/gen (spicy)/gen/value.txt\"\n"
        "          echo \"pipeline=$KILN_PIPELINE_ID shard=$KILN_SHARD_INDEX\"\n")})
    first = submit(api, repo, sha)
    pipeline = wait_final(api, f"/v1/pipelines/{first['pipeline']}", timeout=900)
    by_name = {j["name"]: j for j in pipeline["jobs"]}
    assert pipeline["state"] == "passed", pipeline
    assert set(by_name) == {"build", "gen (plain)", "gen (spicy)", "use"}, by_name.keys()
    use = by_name["use"]
    assert sorted(use["needs"]) == sorted(by_name[n]["id"] for n in ("build", "gen (plain)", "gen (spicy)"))
    events = logs(api, use["id"])
    needs = [e for e in events if e["type"] == "needs"]
    assert len(needs) == 1 and needs[0]["jobs"] == 3 and needs[0]["files"] == 4, needs
    for shard in (0, 1):  # both fresh VMs got them
        text = shard_output(events, shard, "read")
        assert "app of build" in text and "deep" in text, text
        assert "made plain" in text and "made spicy" in text, text
        assert f"pipeline={pipeline['id']} shard={shard}" in text, text
    # Their steps ran after the needed jobs ended.
    use_start = min(s["started_at"] for s in use["steps"])
    assert all(by_name[n]["finished_at"] <= use_start for n in ("build", "gen (plain)", "gen (spicy)"))

"""CI jobs end to end (docs/ci.md): a real kilnd, real VMs from the `base` template, real git
repositories made here, every response checked against api/openapi.yaml. Covers a passing job,
a failing test counted from JUnit, a step timeout and the job's hard cap, a hostile job and the
clean VM of the next one, the bake cache (hit, and a rebake when the lockfile changes), cancel,
bad input (kill -9 of kilnd in the middle of a job: test_disk_hygiene.py)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "api"))

from api_client import ApiClient  # noqa: E402
from kilnd_fixture import Kilnd, wait_until  # noqa: E402
from openapi_check import OpenApiSpec, SpecRecorder  # noqa: E402

SECRET = "kiln-test-secret-4f9a1c"
FINAL = {"passed", "failed", "error", "cancelled"}


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


class Repo:
    """A git repository on the host that jobs are queued from (as an absolute local path)."""

    def __init__(self, root: Path):
        self.path = root
        root.mkdir(parents=True)
        git(root, "init", "-q", "-b", "main")

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Writes the files (None deletes one) and commits everything."""
        for name, text in files.items():
            p = self.path / name
            if text is None:
                p.unlink()
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def recorder() -> SpecRecorder:
    return SpecRecorder(OpenApiSpec.load())


@pytest.fixture(scope="module")
def kilnd(tmp_path_factory):
    # The secret comes from a file in ci_secrets_dir, as docs/ci.md recommends (the deprecated
    # KILN_CI_SECRET_<NAME> variable is what tests/ci/test_github_webhook.py uses).
    secrets_dir = tmp_path_factory.mktemp("ci-secrets")
    secrets_dir.chmod(0o700)
    (secrets_dir / "DEPLOY_KEY").write_text(SECRET + "\n")
    (secrets_dir / "DEPLOY_KEY").chmod(0o600)
    # Every repository these tests make lives under pytest's base folder: DEPLOY_KEY goes to them
    # (a secret the policy does not name goes to no job; tests/ci/test_tenancy.py has the rest).
    policy = secrets_dir.parent / "ci-secrets-policy"
    policy.write_text(f"DEPLOY_KEY {tmp_path_factory.getbasetemp()}/*\n")
    policy.chmod(0o600)
    # One bake kept, evictable at once: the bake test sees a new bake delete the one before.
    instance = Kilnd(extra_env={"KILN_CI_WORKERS": "2", "KILN_CI_SECRETS_DIR": str(secrets_dir),
                                "KILN_CI_SECRETS_POLICY": str(policy), "KILN_CI_BAKES_KEPT": "1",
                                "KILN_CI_BAKE_MIN_IDLE_SECONDS": "0"}, name="ci")
    try:
        instance.create_token("alice")
        instance.create_token("bob", "sandboxes,ci:submit")  # an ordinary tenant: alice's jobs are 404 to him
        instance.start()
    except Exception:
        instance.cleanup()
        raise
    yield instance
    instance.cleanup()


@pytest.fixture(scope="module")
def api(kilnd, recorder) -> ApiClient:
    return ApiClient(kilnd.port, kilnd.tokens["alice"], recorder)


@pytest.fixture()
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "repo")


def check(r):
    assert not r.errors, f"response does not follow api/openapi.yaml: {r.errors}"
    return r


def submit(api: ApiClient, repo: Repo, sha: str | None = None, **extra) -> dict:
    body = {"repo": str(repo.path), **extra}
    if sha:
        body["sha"] = sha
    r = check(api.post("/v1/jobs", body))
    assert r.status == 201, r
    job = r.json()
    assert job["state"] in ("queued", "running")
    return job


def wait_final(api: ApiClient, path: str, timeout: float = 300) -> dict:
    """GETs a job or pipeline record until its state is final; the record."""
    def final():
        record = check(api.get(path)).json()
        return record if record["state"] in FINAL else None
    record = wait_until(final, timeout, interval=0.3)
    assert record, f"{path} did not finish within {timeout} s: {api.get(path).json()}"
    return record


def wait_job(api: ApiClient, job_id: str, timeout: float = 300) -> dict:
    return wait_final(api, f"/v1/jobs/{job_id}", timeout)


def logs(api: ApiClient, job_id: str) -> list[dict]:
    r = check(api.get(f"/v1/jobs/{job_id}/logs?follow=false"))
    assert r.status == 200 and r.content_type.startswith("application/x-ndjson"), r
    return r.ndjson()


def output(events: list[dict]) -> str:
    return "".join(e["data"] for e in events if e["type"] == "output")


def running_sandboxes(api: ApiClient) -> int:
    text = api.get("/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith("kiln_sandboxes{") and 'state="running"' in line:
            return int(float(line.split()[-1]))
    return 0


def pipeline(steps: str, extra: str = "") -> str:
    return f"template: base\n{extra}steps:\n{steps}"


def test_passing_job_runs_the_exact_commit_reads_junit_and_artifacts(api, repo):
    junit = ('<testsuite tests="3" failures="0" errors="0" skipped="1">'
             '<testcase name="a"/><testcase name="b"/><testcase name="c"><skipped/></testcase></testsuite>')
    sha = repo.commit({
        ".kiln.yml": pipeline(
            "  - name: build\n    run: |\n      echo building $(git rev-parse HEAD) on $(hostname)\n"
            "      mkdir -p out reports && echo artifact-body > out/result.txt\n"
            f"      printf '%s' '{junit}' > reports/unit.xml\n"
            "      echo \"secret is $DEPLOY_KEY\"\n",
            extra="secrets: [DEPLOY_KEY]\njunit: [\"reports/*.xml\"]\nartifacts: [\"out/**\"]\n"),
        "README": "v1\n"})
    repo.commit({"README": "v2, the branch moved on\n"})  # the job must still run `sha`, not main
    job = wait_job(api, submit(api, repo, sha)["id"])
    assert job["state"] == "passed", job
    assert job["sha"] == sha and job["error"] == ""
    assert job["junit"] == {"tests": 3, "failures": 0, "errors": 0, "skipped": 1}
    assert [s["state"] for s in job["steps"]] == ["passed"] and job["steps"][0]["exit_code"] == 0
    events = logs(api, job["id"])
    text = output(events)
    assert f"building {sha}" in text
    assert SECRET not in text and "secret is ***" in text, "a secret's value reached the log"
    assert any(e["type"] == "checkout" and e["sha"] == sha for e in events)
    assert events[-1]["type"] == "end" and events[-1]["state"] == "passed"
    arts = check(api.get(f"/v1/jobs/{job['id']}/artifacts")).json()["artifacts"]
    assert arts == [{"name": "out/result.txt", "size": len("artifact-body\n")}]
    # The name is one path segment, its slashes percent-encoded (kilnd also takes them plain).
    body = check(api.get(f"/v1/jobs/{job['id']}/artifacts/out%2Fresult.txt"))
    assert body.status == 200 and body.body == b"artifact-body\n"
    assert api.get(f"/v1/jobs/{job['id']}/artifacts/out/result.txt").body == b"artifact-body\n"
    assert check(api.get(f"/v1/jobs/{job['id']}/artifacts/out%2Fother.txt")).status == 404
    assert check(api.get(f"/v1/jobs/{job['id']}/artifacts/..%2F..%2Flog.ndjson")).status == 404
    # The job's VM is gone, and another token cannot see the job.
    assert wait_until(lambda: running_sandboxes(api) == 0, 30)
    assert check(api.with_token(None).get(f"/v1/jobs/{job['id']}")).status == 401


def test_other_tokens_do_not_see_a_job(api, kilnd, repo):
    sha = repo.commit({".kiln.yml": pipeline("  - name: ok\n    run: 'true'\n")})
    job = submit(api, repo, sha)
    bob = api.with_token(kilnd.tokens["bob"])
    assert check(bob.get(f"/v1/jobs/{job['id']}")).status == 404
    assert job["id"] not in [j["id"] for j in check(bob.get("/v1/jobs")).json()["jobs"]]
    assert wait_job(api, job["id"])["state"] == "passed"


def test_failing_test_fails_the_job_with_the_failures_counted(api, repo):
    junit = ('<testsuites><testsuite name="s"><testcase name="ok"/>'
             '<testcase name="bad"><failure message="boom">trace</failure></testcase>'
             '<testcase name="worse"><error message="crash"/></testcase></testsuite></testsuites>')
    sha = repo.commit({".kiln.yml": pipeline(
        "  - name: test\n    run: |\n      mkdir -p reports\n"
        f"      printf '%s' '{junit}' > reports/junit.xml\n      echo 2 tests failed >&2\n      exit 1\n"
        "  - name: never\n    run: echo should not run\n",
        extra="junit: [\"reports/*.xml\"]\n")})
    job = wait_job(api, submit(api, repo, sha)["id"])
    assert job["state"] == "failed", job
    assert job["attempts"] == 1, "a test failure was retried"
    assert job["junit"] == {"tests": 3, "failures": 1, "errors": 1, "skipped": 0}
    assert [(s["name"], s["state"]) for s in job["steps"]] == [("test", "failed"), ("never", "skipped")]
    assert job["steps"][0]["exit_code"] == 1 and "test" in job["error"]
    assert "should not run" not in output(logs(api, job["id"]))


def test_hostile_globs_over_a_deep_tree_end_at_once_and_the_caps_say_what_they_skipped(api, repo):
    # `**/a/**/a/.../**/b` (100 pairs, near the 512-byte limit) against 64 nested `a` folders: the
    # old matcher backtracked through C(164, 100) splits, holding the CI worker for good. A report
    # 140 folders deep is past the listing's depth cap: skipped, and the log says so.
    pathological = "**/a/" * 100 + "**/b"
    sha = repo.commit({".kiln.yml": pipeline(
        "  - name: tree\n    run: |\n"
        "      mkdir -p \"$(printf 'a/%.0s' $(seq 64))\" && touch \"$(printf 'a/%.0s' $(seq 64))c\"\n"
        "      deep=$(printf 'd/%.0s' $(seq 140)) && mkdir -p \"$deep\"\n"
        "      echo '<testsuite tests=\"5\"/>' > \"${deep}r.xml\"\n"
        "      mkdir -p reports && echo '<testsuite tests=\"2\"/>' > reports/ok.xml\n",
        extra=f'junit: ["{pathological}", "reports/*.xml", "**/r.xml"]\n')})
    start = time.monotonic()
    job = wait_job(api, submit(api, repo, sha)["id"])
    assert job["state"] == "passed", job
    assert job["junit"]["tests"] == 2, "the report past the depth cap was read, or reports/ok.xml was not"
    events = logs(api, job["id"])
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any("1 files deeper than 128 folders were skipped" in w for w in warnings), warnings
    print(f"job with the pathological glob took {time.monotonic() - start:.1f} s")


def test_step_timeout_fails_the_job(api, repo):
    sha = repo.commit({".kiln.yml": pipeline("  - name: slow\n    run: sleep 120\n    timeout_seconds: 2\n")})
    start = time.monotonic()
    job = wait_job(api, submit(api, repo, sha)["id"])
    assert job["state"] == "failed", job
    assert job["steps"][0]["state"] == "timed_out"
    assert time.monotonic() - start < 60
    assert wait_until(lambda: running_sandboxes(api) == 0, 30)


def test_the_jobs_hard_cap_holds(api, repo):
    # No step timeout: only the job's timeout_seconds stops it, across steps.
    sha = repo.commit({".kiln.yml": pipeline(
        "  - name: first\n    run: sleep 2\n  - name: second\n    run: sleep 300\n",
        extra="timeout_seconds: 6\n")})
    job_id = submit(api, repo, sha)["id"]
    job = wait_job(api, job_id, timeout=120)
    assert job["state"] == "failed", job
    assert "timeout_seconds" in job["error"]
    assert job["steps"][0]["state"] == "passed" and job["steps"][1]["state"] == "timed_out"
    # The cap covers the whole job: well under the 300 s the step wanted (queue and VM time aside).
    assert job["duration_ms"] < 40_000, job
    assert wait_until(lambda: running_sandboxes(api) == 0, 30)


def test_cancel_destroys_the_vm(api, repo):
    sha = repo.commit({".kiln.yml": pipeline("  - name: wait\n    run: echo started; sleep 300\n")})
    job_id = submit(api, repo, sha)["id"]
    assert wait_until(lambda: any(e["type"] == "step_started" for e in logs(api, job_id)), 120)
    r = check(api.post(f"/v1/jobs/{job_id}/cancel"))
    assert r.status == 200
    job = wait_job(api, job_id, timeout=30)
    assert job["state"] == "cancelled" and job["attempts"] == 1, job
    assert job["steps"][0]["state"] == "cancelled", job  # the step did not fail by itself
    assert wait_until(lambda: running_sandboxes(api) == 0, 30)
    # Cancelling a finished job changes nothing.
    assert check(api.post(f"/v1/jobs/{job_id}/cancel")).json()["state"] == "cancelled"


def test_hostile_job_cannot_touch_the_next_job_or_the_host(api, kilnd, repo, tmp_path):
    canary = tmp_path / "host-canary"
    canary.write_text("still here")
    hostile = pipeline(
        "  - name: wreck\n    timeout_seconds: 60\n    run: |\n"
        "      echo left-behind > /tmp/hostile-marker\n"
        "      echo left-behind > /root/hostile-marker\n"
        "      echo left-behind > hostile-in-checkout\n"
        "      nohup sh -c 'while :; do echo tick >> /tmp/daemon.log; sleep 1; done' >/dev/null 2>&1 &\n"
        "      head -c 1000000000 /dev/zero | tr '\\0' 'x'\n"
        "      rm -rf --no-preserve-root / 2>/dev/null || true\n"
        "      bomb() { bomb | bomb & }; bomb\n"
        "      sleep 300\n")
    sha = repo.commit({".kiln.yml": hostile})
    start = time.monotonic()
    job = wait_job(api, submit(api, repo, sha)["id"], timeout=600)
    took = time.monotonic() - start
    assert job["state"] == "failed", job
    assert job["attempts"] == 1, "a hostile job's failure was retried as an infrastructure error"
    assert kilnd.healthy() and kilnd.proc.poll() is None
    assert canary.read_text() == "still here"
    log_file = kilnd.data_dir / "jobs" / job["id"] / "log.ndjson"
    assert log_file.stat().st_size < 40 << 20, "1 GB of output went to the host's disk"
    assert any(e["type"] == "truncated" for e in logs(api, job["id"]))
    assert wait_until(lambda: running_sandboxes(api) == 0, 30)

    clean = pipeline(
        "  - name: inspect\n    run: |\n"
        "      test ! -e /tmp/hostile-marker\n      test ! -e /root/hostile-marker\n"
        "      test ! -e hostile-in-checkout\n      test ! -e /tmp/daemon.log\n"
        "      ! ps -eo args | grep -v grep | grep -q 'daemon.log'\n"
        "      test -x /bin/sh && test -x /usr/bin/git\n      echo clean-vm\n")
    sha2 = repo.commit({".kiln.yml": clean})
    job2 = wait_job(api, submit(api, repo, sha2)["id"])
    assert job2["state"] == "passed", (job2, output(logs(api, job2["id"]))[-2000:])
    assert "clean-vm" in output(logs(api, job2["id"]))
    print(f"hostile job took {took:.1f} s")


def baked_snapshot(kilnd: Kilnd, template_key: str) -> str:
    """The bake's snapshot id, from kilnd.db: the job's log and record never show it."""
    import sqlite3
    with sqlite3.connect(f"file:{kilnd.data_dir / 'kilnd.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT snapshot_id FROM ci_bake_cache WHERE key = ?", (template_key,)).fetchone()
    assert row, f"no bake with key {template_key}"
    return row[0]


def test_second_job_with_the_same_lockfile_is_a_bake_hit_and_a_new_lockfile_rebakes(api, repo, kilnd):
    def yml():
        return pipeline(
            "  - name: use\n    run: |\n      cat /opt/deps/installed\n"
            "      test \"$(cat /opt/deps/installed)\" = \"$(cat deps.lock)\"\n"
            "      test \"$(git rev-parse HEAD)\" = \"$KILN_COMMIT_SHA\"\n"
            "      test -z \"$(git status --porcelain)\" && git diff-index --quiet HEAD -- && echo clean checkout\n",
            extra="bake:\n  key_files: [deps.lock]\n"
                  "  run: mkdir -p /opt/deps && cp deps.lock /opt/deps/installed && echo baking $(cat deps.lock)\n")
    sha1 = repo.commit({".kiln.yml": yml(), "deps.lock": "left-pad 1.0.0\n", "src.txt": "a\n", "gone.txt": "x\n"})
    j1 = wait_job(api, submit(api, repo, sha1)["id"])
    assert j1["state"] == "passed" and j1["bake_hit"] is False, j1
    assert "baking left-pad 1.0.0" in output(logs(api, j1["id"]))
    snapshot1 = baked_snapshot(kilnd, j1["template_key"])

    sha2 = repo.commit({"src.txt": "b\n", "gone.txt": None})  # code changed, lockfile not
    j2 = wait_job(api, submit(api, repo, sha2)["id"])
    assert j2["state"] == "passed" and j2["bake_hit"] is True, j2
    # The bake's snapshot held sha1's checkout: the job's is sha2's, gone.txt included.
    assert "clean checkout" in output(logs(api, j2["id"])), output(logs(api, j2["id"]))
    assert j2["template_key"] == j1["template_key"]
    assert "baking" not in output(logs(api, j2["id"]))
    # Bake and snapshot ids never reach a job's log or record (others may read them).
    for j in (j1, j2):
        assert "snap-" not in str(logs(api, j["id"])) and "snap-" not in str(j), j

    sha3 = repo.commit({"deps.lock": "left-pad 2.0.0\n"})
    j3 = wait_job(api, submit(api, repo, sha3)["id"])
    assert j3["state"] == "passed" and j3["bake_hit"] is False, j3
    assert j3["template_key"] != j1["template_key"]
    assert "baking left-pad 2.0.0" in output(logs(api, j3["id"]))
    # ci_bakes_kept=1: the new bake evicted the old one, its snapshot included.
    snapshots = kilnd.data_dir / "snapshots"
    assert not (snapshots / snapshot1).exists(), sorted(p.name for p in snapshots.iterdir())
    assert (snapshots / baked_snapshot(kilnd, j3["template_key"])).is_dir()
    j4 = wait_job(api, submit(api, repo, sha1)["id"])  # the first lockfile again: baked anew
    assert j4["state"] == "passed" and j4["bake_hit"] is False, j4


def test_checkout_is_the_commit_as_git_would_check_it_out(api, repo):
    """The checkout is made on the host and extracted in the VM: it must still be what `git
    checkout` gives - modes, symlinks, history, an index that matches the files."""
    repo.commit({"dir/nested.txt": "nested\n", "tool.sh": "#!/bin/sh\necho tool ran\n"})
    (repo.path / "tool.sh").chmod(0o755)
    (repo.path / "link").symlink_to("dir/nested.txt")
    sha = repo.commit({".kiln.yml": pipeline(
        "  - name: inspect\n    run: |\n"
        "      test \"$(git rev-parse HEAD)\" = \"$KILN_COMMIT_SHA\"\n"
        "      git rev-parse --verify -q HEAD~1 >/dev/null\n"  # the history came too
        "      git diff-index --quiet HEAD --\n"  # plumbing, no refresh: the index's stat data fit
        "      test -z \"$(git status --porcelain)\"\n"
        "      test -z \"$(git status --porcelain --ignored)\"\n"  # nothing beside the commit's files
        "      ./tool.sh\n      test \"$(readlink link)\" = dir/nested.txt && cat link\n")})
    job = wait_job(api, submit(api, repo, sha)["id"])
    text = output(logs(api, job["id"]))
    assert job["state"] == "passed", (job, text[-2000:])
    assert "tool ran" in text and "nested" in text


def test_ref_is_resolved_to_a_sha_by_the_worker(api, repo):
    sha = repo.commit({".kiln.yml": pipeline("  - name: ok\n    run: git rev-parse HEAD\n")})
    job = submit(api, repo, ref="main")
    # Resolved when a worker takes the job, not while POST /v1/jobs is answered.
    assert job["sha"] in ("", sha) and job["ref"] == "main"
    done = wait_job(api, job["id"])
    assert done["state"] == "passed" and done["sha"] == sha and sha in output(logs(api, job["id"]))
    assert any(e["type"] == "resolved" and e["sha"] == sha for e in logs(api, job["id"]))
    missing = wait_job(api, submit(api, repo, ref="no-such-branch")["id"])
    assert missing["state"] == "error" and "no ref 'no-such-branch'" in missing["error"], missing


@pytest.mark.parametrize("body,status", [
    ({"repo": "relative/path"}, 422),
    ({"repo": "-upload-pack=touch /tmp/x"}, 422),
    ({"repo": "ext::sh -c touch% /tmp/pwned"}, 422),
    ({"repo": "/nonexistent/repo", "sha": "XYZ"}, 422),
    ({"repo": "/nonexistent/repo", "ref": "main..x"}, 422),
    ({"repo": "/tmp", "extra": 1}, 422),
    ({"repo": 5}, 422),
    ({}, 422),
])
def test_bad_job_requests_are_refused(api, body, status):
    r = check(api.post("/v1/jobs", body))
    assert r.status == status, r
    assert r.error_code == "invalid_argument"


def test_malformed_bodies_and_unknown_jobs(api):
    assert check(api.request("POST", "/v1/jobs", "{not json", headers={"Content-Type": "application/json"})).status == 400
    assert check(api.get("/v1/jobs/job-000000000000")).status == 404
    assert check(api.get("/v1/jobs/../../etc/passwd")).status == 404
    assert check(api.post("/v1/jobs/job-000000000000/cancel")).status == 404
    assert check(api.get("/v1/jobs/job-000000000000/logs")).status == 404
    assert check(api.get("/v1/jobs?limit=0")).status == 422
    assert check(api.get("/v1/jobs?state=bogus")).status == 422
    assert check(api.with_token(None).get("/v1/jobs")).status == 401


def test_a_commit_without_a_pipeline_is_an_error_not_retried(api, repo):
    sha = repo.commit({"README": "no pipeline here\n"})
    job = wait_job(api, submit(api, repo, sha)["id"])
    assert job["state"] == "error" and ".kiln.yml" in job["error"] and job["attempts"] == 1, job
    sha = repo.commit({".kiln.yml": "steps:\n  - name: x\n    run: 'true'\n    tiemout_seconds: 3\n"})
    job = wait_job(api, submit(api, repo, sha)["id"])
    assert job["state"] == "error" and "line 4" in job["error"] and job["attempts"] == 1, job


def kiln_cli() -> Path:
    build = Path(os.environ.get("KILN_BUILD", "build/release"))
    if not build.is_absolute():
        build = HERE.parents[1] / build
    return build / "src" / "cli" / "kiln"


def test_kiln_ci_run_follows_the_log_and_exits_with_the_result(kilnd, repo, tmp_path):
    env = dict(os.environ, KILN_URL=kilnd.url, KILN_TOKEN=kilnd.tokens["alice"], HOME=str(tmp_path))
    junit = '<testsuite tests="2" failures="1"><testcase name="a"/><testcase name="b"><failure/></testcase></testsuite>'
    good = repo.commit({".kiln.yml": pipeline("  - name: hello\n    run: echo hello-from-the-job\n")})
    bad = repo.commit({".kiln.yml": pipeline(
        f"  - name: test\n    run: |\n      printf '%s' '{junit}' > j.xml\n      exit 3\n", extra="junit: [j.xml]\n")})
    run = lambda *args: subprocess.run([str(kiln_cli()), "ci", "run", *args], env=env, capture_output=True,
                                       text=True, timeout=300)
    ok = run(str(repo.path), "--sha", good)
    assert ok.returncode == 0, ok.stderr
    assert "hello-from-the-job" in ok.stdout and "passed" in ok.stderr
    # It names the pipeline's page on the dashboard, as a commit status does.
    assert re.search(rf"dashboard: {re.escape(kilnd.url)}/ui/pipelines/pipeline-[0-9a-f]{{12}}\n", ok.stderr), ok.stderr
    failed = run(str(repo.path), "--sha", bad)
    assert failed.returncode == 1, failed.stderr
    assert "JUnit: 2 tests, 1 failures, 0 errors, 0 skipped" in failed.stderr
    (repo.path / ".kiln.yml").unlink()
    git(repo.path, "commit", "-qam", "no pipeline")
    error = run(str(repo.path))  # HEAD, resolved when queued
    assert error.returncode == 125, error.stderr
    assert ".kiln.yml" in error.stderr
    # A folder that is not a repository runs its current files.
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / ".kiln.yml").write_text(pipeline("  - name: ls\n    run: cat note.txt\n"))
    (folder / "note.txt").write_text("uncommitted-files-run\n")
    plain = run(str(folder))
    assert plain.returncode == 0, plain.stderr
    assert "uncommitted-files-run" in plain.stdout
    assert run("/nonexistent/folder").returncode == 125

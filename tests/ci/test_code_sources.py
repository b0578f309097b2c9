"""Where a CI job's code may come from (docs/ci.md "Where code may come from"), against a real
kilnd and real git: repositories served over loopback by `git daemon`, the operator's `ci_repos`
allowlist, local paths for admin tokens only, git run as the unprivileged ci_git_uid, the size
cap per repository, and a ref resolved by the worker, not on the HTTP thread, even when the git
server never answers. All jobs but one end before a VM (refused, or an error once their code is
fetched), so the tests stay quick; the one runs in a real VM from the checkout the unprivileged
git made."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "api"))
sys.path.insert(0, str(HERE))

from api_client import ApiClient  # noqa: E402
from kilnd_fixture import HangingServer, Kilnd, free_port, wait_until  # noqa: E402
from openapi_check import OpenApiSpec, SpecRecorder  # noqa: E402
from test_jobs import check, wait_job  # noqa: E402  (tests/ci/test_jobs.py's helpers)

GIT_UID = 1999999999  # kilnd's default ci_git_uid
GIT_TIMEOUT = 5       # ci_git_timeout_seconds: how long the hanging server is waited for


def git(*args: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(base: Path, name: str, files: dict[str, bytes]) -> str:
    """A bare repository base/<name> holding one commit of `files` on main; returns its SHA."""
    work = base / (name + ".work")
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    for rel, data in files.items():
        (work / rel).write_bytes(data)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    git("clone", "-q", "--bare", str(work), str(base / name))
    return git("rev-parse", "HEAD", cwd=work)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`git daemon` on 127.0.0.1 over base/, with allowed/ (in ci_repos) and other/ (not)."""
    base = tmp_path_factory.mktemp("served")
    shas = {
        "small": make_repo(base / "allowed", "small.git", {"README": b"no pipeline here\n"}),
        # Random bytes do not compress: the pack is ~3 MiB, past a 1 MiB cap.
        "big": make_repo(base / "allowed", "big.git", {"blob.bin": os.urandom(3 << 20)}),
        "other": make_repo(base / "other", "x.git", {"README": b"x\n"}),
        "runs": make_repo(base / "allowed", "runs.git", {
            ".kiln.yml": b"template: base\nsteps:\n  - name: inspect\n    run: |\n"
                         b"      test \"$(git rev-parse HEAD)\" = \"$KILN_COMMIT_SHA\"\n"
                         b"      test -z \"$(git status --porcelain)\"\n"
                         b"      test \"$(cat hello.txt)\" = hello && echo checkout-ok\n",
            "hello.txt": b"hello\n"}),
    }
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", "--export-all",
                               "--informative-errors", f"--base-path={base}", str(base)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: daemon.poll() is None and listening(port), 30), "git daemon did not start"
        yield {"url": f"git://127.0.0.1:{port}", "shas": shas}
    finally:
        daemon.kill()
        daemon.wait()


@pytest.fixture(scope="module")
def hanging():
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def kilnd(served, hanging):
    instance = Kilnd(name="gitsrc", extra_env={
        "KILN_CI_REPOS": f"{served['url']}/allowed/ git://127.0.0.1:{hanging.port}/hang",
        "KILN_CI_REPO_MAX_MIB": "1",
        "KILN_CI_GIT_TIMEOUT_SECONDS": str(GIT_TIMEOUT),
        "KILN_CI_WORKERS": "1",
        "KILN_KEEP_SPARE": "false",
    })
    try:
        instance.create_token("alice")  # admin
        instance.create_token("bob", "ci:submit")
        instance.start()
    except Exception:
        instance.cleanup()
        raise
    yield instance
    instance.cleanup()


@pytest.fixture(scope="module")
def recorder() -> SpecRecorder:
    return SpecRecorder(OpenApiSpec.load())


@pytest.fixture(scope="module")
def bob(kilnd, recorder) -> ApiClient:
    return ApiClient(kilnd.port, kilnd.tokens["bob"], recorder)


def test_a_repository_outside_ci_repos_is_refused(bob, served):
    url, shas = served["url"], served["shas"]
    r = check(bob.post("/v1/jobs", {"repo": f"{url}/other/x.git", "sha": shas["other"]}))
    assert r.status == 403 and r.error_code == "forbidden" and "ci_repos" in r.json()["error"]["message"], r
    # Spellings that start like an allowed prefix but are not under it.
    for repo in (f"{url}/allowedx/small.git", f"{url}/other/../allowed/small.git", f"{url}/allowed/%2e%2e/other/x.git",
                 f"git://user@127.0.0.1:{url.rsplit(':', 1)[1]}/allowed/small.git", f"{url}.evil.com/allowed/small.git"):
        r = check(bob.post("/v1/jobs", {"repo": repo, "sha": shas["other"]}))
        assert r.status in (403, 422) and r.error_code in ("forbidden", "invalid_argument"), (repo, r)


def test_a_local_path_needs_the_admin_scope(bob, tmp_path):
    for repo in (str(tmp_path), f"file://{tmp_path}", f"FILE://{tmp_path}"):
        r = check(bob.post("/v1/jobs", {"repo": repo, "sha": "a" * 40}))
        assert r.status == 403 and r.error_code == "forbidden" and "admin" in r.json()["error"]["message"], (repo, r)


def test_git_runs_as_the_unprivileged_uid_and_fetches_one_commit(bob, kilnd, served):
    sha = served["shas"]["small"]
    r = check(bob.post("/v1/jobs", {"repo": f"{served['url']}/allowed//small.git/", "sha": sha}))
    assert r.status == 201, r
    assert r.json()["repo"] == f"{served['url']}/allowed/small.git"  # the canonical spelling
    job = wait_job(bob, r.json()["id"])
    # The code was fetched (the commit has no pipeline, which is the job's error).
    assert job["state"] == "error" and ".kiln.yml" in job["error"], job
    remote = kilnd.data_dir / "ci" / "git" / "remote"
    mirrors = list(remote.glob("*.git"))
    assert mirrors, sorted(p.name for p in remote.iterdir())
    for path in [remote, remote / "home", *mirrors, *(m / "objects" for m in mirrors)]:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (GIT_UID, GIT_UID), (path, st.st_uid)
    files = [p for m in mirrors for p in m.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_uid == GIT_UID for p in files), [(p, p.stat().st_uid) for p in files][:5]
    assert any((m / "shallow").is_file() for m in mirrors), "a URL is fetched shallow (--depth=1)"
    # Nothing of the job's checkout is left staged.
    assert not any((remote / "work").iterdir())


def test_the_size_cap_stops_a_too_big_repository(bob, kilnd, served):
    r = check(bob.post("/v1/jobs", {"repo": f"{served['url']}/allowed/big.git", "sha": served["shas"]["big"]}))
    assert r.status == 201, r
    job = wait_job(bob, r.json()["id"])
    assert job["state"] == "error" and "ci_repo_max_mib (1 MiB)" in job["error"] and job["attempts"] == 1, job
    # The cache repository that passed the cap is gone, partial pack included.
    remote = kilnd.data_dir / "ci" / "git" / "remote"
    sizes = {m.name: sum(p.stat().st_size for p in m.rglob("*") if p.is_file()) for m in remote.glob("*.git")}
    assert all(size < (1 << 20) for size in sizes.values()), sizes


def test_a_ref_is_resolved_by_the_worker(bob, served):
    r = check(bob.post("/v1/jobs", {"repo": f"{served['url']}/allowed/small.git", "ref": "main"}))
    assert r.status == 201 and r.json()["ref"] == "main", r
    job = wait_job(bob, r.json()["id"])
    assert job["sha"] == served["shas"]["small"] and ".kiln.yml" in job["error"], job
    r = check(bob.post("/v1/jobs", {"repo": f"{served['url']}/allowed/small.git", "ref": "no-such-branch"}))
    job = wait_job(bob, r.json()["id"])
    assert job["state"] == "error" and "no ref 'no-such-branch'" in job["error"] and job["sha"] == "", job


def test_a_hanging_git_server_does_not_hold_the_http_request(bob, hanging):
    repo = f"git://127.0.0.1:{hanging.port}/hang/r.git"
    start = time.monotonic()
    r = check(bob.post("/v1/jobs", {"repo": repo, "ref": "main"}))
    elapsed = time.monotonic() - start
    assert r.status == 201 and r.json()["sha"] == "", r
    assert elapsed < 2.0, f"POST /v1/jobs took {elapsed:.1f} s"
    # While the worker waits on the server, the API answers.
    start = time.monotonic()
    assert check(bob.get(f"/v1/jobs/{r.json()['id']}")).status == 200
    assert time.monotonic() - start < 1.0
    job = wait_job(bob, r.json()["id"], timeout=GIT_TIMEOUT * 6)
    assert job["state"] == "error" and "resolving main in " + repo in job["error"], job
    assert "did not finish within" in job["error"], job
    assert hanging.held, "git never connected to the hanging server"


def test_a_job_from_a_url_runs_from_the_checkout_the_git_user_made(bob, kilnd, served):
    sha = served["shas"]["runs"]
    r = check(bob.post("/v1/jobs", {"repo": f"{served['url']}/allowed/runs.git", "sha": sha}))
    assert r.status == 201, r
    job = wait_job(bob, r.json()["id"], timeout=600)
    log = check(bob.get(f"/v1/jobs/{job['id']}/logs?follow=false")).ndjson()
    text = "".join(e.get("data", "") for e in log)
    assert job["state"] == "passed" and "checkout-ok" in text, (job, text[-2000:])
    assert not any((kilnd.data_dir / "ci" / "git" / "remote" / "work").iterdir()), "the staged checkout is removed"

"""examples/ci_job.py, the five-step ephemeral CI loop, run as a program against the live kilnd on
a local git repository made here: a good commit passes, a later bad one fails, and each run
deletes its sandbox."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SDK = Path(__file__).resolve().parents[1]

RUN_TESTS = r'''#!/bin/sh
# The project's test runner: each test is a shell function; the report is JUnit XML.
. ./lib.sh
out=junit.xml
tests=0; failures=0; cases=""
run() {
  tests=$((tests + 1))
  if msg=$("$1" 2>&1); then
    cases="$cases<testcase classname=\"widget\" name=\"$1\"/>"
    echo "ok $1"
  else
    failures=$((failures + 1))
    cases="$cases<testcase classname=\"widget\" name=\"$1\"><failure message=\"failed\">$msg</failure></testcase>"
    echo "FAIL $1"
  fi
}
test_add() { [ "$(add 2 2)" = 4 ]; }
test_greet() { [ "$(greet kiln)" = "hello, kiln" ]; }
test_exact_sha() { [ -f VERSION ] && grep -q . VERSION; }
run test_add; run test_greet; run test_exact_sha
echo "<?xml version=\"1.0\"?><testsuite name=\"widget\" tests=\"$tests\" failures=\"$failures\">$cases</testsuite>" > "$out"
[ "$failures" -eq 0 ]
'''

MAKEFILE = "test:\n\tsh ./run_tests.sh\n.PHONY: test\n"


def git(repo, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A bare 'server' repository with two commits: good (all tests pass), then bad (one fails)."""
    work = tmp_path_factory.mktemp("widget")
    git(work, "init", "-q", "-b", "main")
    (work / "run_tests.sh").write_text(RUN_TESTS)
    (work / "Makefile").write_text(MAKEFILE)
    (work / "lib.sh").write_text('add() { echo $(($1 + $2)); }\ngreet() { echo "hello, $1"; }\n')
    (work / "VERSION").write_text("1\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "good")
    good = git(work, "rev-parse", "HEAD")
    (work / "lib.sh").write_text('add() { echo $(($1 + $2)); }\ngreet() { echo "hi, $1"; }\n')
    git(work, "commit", "-q", "-am", "bad")
    bad = git(work, "rev-parse", "HEAD")
    server = tmp_path_factory.mktemp("server") / "widget.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(server)], check=True)
    return f"file://{server}", good, bad


def run_ci_job(kilnd, url, sha):
    env = {**os.environ, "KILN_URL": kilnd.url, "KILN_TOKEN": kilnd.tokens["alice"],
           "PYTHONPATH": str(SDK)}
    return subprocess.run([sys.executable, str(SDK.parent.parent / "examples" / "ci_job.py"), url, sha], env=env,
                          capture_output=True, text=True, timeout=600)


def test_ci_job_good_commit_passes(kilnd, k, repo):
    url, good, _ = repo
    p = run_ci_job(kilnd, url, good)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 tests, 0 failures" in p.stdout and "ok test_greet" in p.stdout, p.stdout
    runs = k.sandboxes.list(metadata={"sha": good, "kind": "ci"}, state="all")
    assert [s.state for s in runs] == ["deleted"]


def test_ci_job_exact_sha_of_a_bad_commit_fails(kilnd, k, repo):
    url, _, bad = repo
    p = run_ci_job(kilnd, url, bad)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "3 tests, 1 failures" in p.stdout and "widget.test_greet" in p.stdout, p.stdout
    assert [s.state for s in k.sandboxes.list(metadata={"sha": bad}, state="all")] == ["deleted"]


def test_ci_job_unknown_sha_cannot_run(kilnd, k, repo):
    url, _, _ = repo
    p = run_ci_job(kilnd, url, "0" * 40)
    assert p.returncode == 2, p.stdout + p.stderr
    assert k.sandboxes.list(metadata={"sha": "0" * 40}) == [], "the sandbox was deleted after the failure"

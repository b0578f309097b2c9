"""k.pipelines against the live kilnd with real VMs: a pipeline queued from a git repository made
here is submitted, listed, fetched and waited for; a long one times out a wait and is cancelled;
unknown ids and bad filters raise the typed errors; another tenant does not see alice's."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kiln import Forbidden, InvalidArgument, Job, Kiln, NotFound, Pipeline


def repository(root: Path, kiln_yml: str) -> str:
    """A repository at `root` with one commit holding `kiln_yml`; its SHA."""
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    root.mkdir()
    (root / ".kiln.yml").write_text(kiln_yml)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "sdk"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_submit_get_list_and_wait(k, tmp_path):
    sha = repository(tmp_path / "repo", "template: base\nsteps:\n  - name: hello\n    run: echo hello\n")
    p = k.pipelines.submit(str(tmp_path / "repo"), sha=sha)
    assert isinstance(p, Pipeline) and p.id.startswith("pipeline-") and p.state in ("queued", "running")
    assert p.sha == sha and len(p.jobs) == 1 and p.jobs[0].pipeline == p.id and not p.done
    assert k.pipelines.get(p.id).id == p.id
    assert p.id in [x.id for x in k.pipelines.list(limit=10)]

    done = k.pipelines.wait(p.id, timeout=600, poll_interval=0.5)
    assert done.passed and done.done and done.error == "", done.to_dict()
    job = done.job("job")  # a file with top-level steps is one job named "job"
    assert isinstance(job, Job) and job.done and job.state == "passed" and job.needs == []
    assert done.job(job.id) == job
    [step] = job.steps
    assert step.name == "hello" and step.state == "passed" and step.exit_code == 0
    assert step.started_at and step.shard is None
    assert done.duration_ms > 0 and done.finished_at
    with pytest.raises(KeyError):
        done.job("no such job")
    assert p.id in [x.id for x in k.pipelines.list(state="passed")]
    assert p.id not in [x.id for x in k.pipelines.list(state="failed")]
    # Cancelling an ended pipeline leaves it as it is.
    assert k.pipelines.cancel(p.id).state == "passed"


def test_a_wait_times_out_and_a_pipeline_is_cancelled(k, tmp_path):
    sha = repository(tmp_path / "repo", "template: base\nsteps:\n  - name: long\n    run: sleep 300\n")
    p = k.pipelines.submit(str(tmp_path / "repo"), sha=sha)
    with pytest.raises(TimeoutError):
        p.wait(timeout=1, poll_interval=0.2)
    assert not p.done  # it runs on
    p.cancel()
    assert p.wait(timeout=300, poll_interval=0.5).state == "cancelled"
    assert all(j.state == "cancelled" for j in p.jobs), p.to_dict()


def test_errors_are_typed(k, kilnd):
    with pytest.raises(NotFound):
        k.pipelines.get("pipeline-000000000000")
    with pytest.raises(NotFound):
        k.pipelines.get("../v1/jobs")  # one path segment: never another route
    with pytest.raises(NotFound):
        k.pipelines.cancel("pipeline-000000000000")
    with pytest.raises(InvalidArgument):
        k.pipelines.list(state="bogus")
    with pytest.raises(InvalidArgument):
        k.pipelines.submit("")
    # bob holds only the sandboxes scope: pipelines are outside it.
    with pytest.raises(Forbidden):
        Kiln(kilnd.url, kilnd.tokens["bob"]).pipelines.list()

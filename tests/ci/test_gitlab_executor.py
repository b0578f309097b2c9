"""`kiln gitlab-executor` called exactly as GitLab Runner's custom executor calls it: the same
environment (BUILD_FAILURE_EXIT_CODE, SYSTEM_FAILURE_EXIT_CODE, CUSTOM_ENV_CI_JOB_ID and the other
CUSTOM_ENV_ variables), the same argument order (`run <path_to_script> <sub_stage>`), scripts in
runner's own style written to a temp dir on the host, against a real kilnd with real VMs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from kilnd_fixture import Kilnd, free_port, serving  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# Runner's exit codes are whatever its environment says; unusual ones prove we read them.
BUILD_FAILURE = 37
SYSTEM_FAILURE = 38


def kiln_binary() -> Path:
    build = Path(os.environ.get("KILN_BUILD", "build/release"))
    if not build.is_absolute():
        build = REPO / build
    return build / "src" / "cli" / "kiln"


@pytest.fixture(scope="module")
def gl_kilnd():
    yield from serving(None, "gitlab", {"runner": "admin"})


class Runner:
    """What gitlab-runner does for one job: a temp dir per job, CUSTOM_ENV_* from the job's
    variables, and the four stages with their arguments."""

    job_ids = iter(range(41000, 42000))

    def __init__(self, kilnd: Kilnd, state_dir: Path, url: str | None = None):
        self.kilnd = kilnd
        self.job_id = str(next(self.job_ids))
        self.tmp = Path(tempfile.mkdtemp(prefix="custom-executor"))
        self.state_dir = state_dir
        self.url = url or kilnd.url
        self.job_variables = {
            "CI_JOB_ID": self.job_id,
            "CI_JOB_NAME": "test",
            "CI_PROJECT_PATH": "group/widget",
            "CI_PIPELINE_ID": "77",
            "CI_JOB_TIMEOUT": "600",
            "CI_BUILDS_DIR": "/builds",
        }

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KILN_", "CUSTOM_ENV_"))}
        # The runner process's own environment (the admin configures kiln there).
        env["KILN_URL"] = self.url
        env["KILN_TOKEN"] = self.kilnd.tokens["runner"]
        env["KILN_GITLAB_STATE_DIR"] = str(self.state_dir)
        env["KILN_GITLAB_TEMPLATE"] = "tiny"
        for k, v in self.job_variables.items():
            env["CUSTOM_ENV_" + k] = v
        env["BUILD_FAILURE_EXIT_CODE"] = str(BUILD_FAILURE)
        env["SYSTEM_FAILURE_EXIT_CODE"] = str(SYSTEM_FAILURE)
        env["BUILD_EXIT_CODE_FILE"] = str(self.tmp / "exit_code")
        return env

    def call(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(kiln_binary()), "gitlab-executor", *args], env=self.env(), cwd=self.tmp,
                              capture_output=True, text=True, timeout=timeout)

    def config(self):
        # config_exec gets no BUILD_/SYSTEM_FAILURE codes, but the same process environment.
        return self.call("config")

    def prepare(self):
        return self.call("prepare")

    def run(self, stage: str, body: str) -> subprocess.CompletedProcess:
        """Writes the sub-stage's script as runner does (bash, `set -eo pipefail`, the commands
        through `eval $'...'`) and calls `run <path_to_script> <sub_stage>`."""
        quoted = body.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        script = ("#!/usr/bin/env bash\n\nset -eo pipefail\nset +o noclobber\n"
                  f": | eval $'{quoted}'\nexit 0\n")
        path = self.tmp / f"script{len(list(self.tmp.iterdir()))}" / stage
        path.parent.mkdir()
        path.write_text(script)
        return self.call("run", str(path), stage)

    def cleanup(self):
        return self.call("cleanup")

    def state(self) -> dict:
        return json.loads((self.state_dir / f"job-{self.job_id}.json").read_text())


def get_sandbox(kilnd: Kilnd, sandbox_id: str) -> dict:
    req = urllib.request.Request(f"{kilnd.url}/v1/sandboxes/{sandbox_id}",
                                 headers={"Authorization": f"Bearer {kilnd.tokens['runner']}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


@pytest.fixture
def state_dir(tmp_path):
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    return d


def test_config_prints_the_protocol_json(gl_kilnd, state_dir):
    out = Runner(gl_kilnd, state_dir).config()
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert config["driver"]["name"] == "kiln"
    assert config["driver"]["version"]
    assert config["builds_dir"] == "/builds"
    assert config["cache_dir"] == "/cache"
    assert config["builds_dir_is_shared"] is False
    assert isinstance(config["job_env"], dict)


def test_a_whole_job_runs_in_one_fresh_sandbox_and_cleanup_deletes_it(gl_kilnd, state_dir):
    runner = Runner(gl_kilnd, state_dir)
    prep = runner.prepare()
    assert prep.returncode == 0, prep.stdout + prep.stderr
    sandbox_id = runner.state()["sandbox_id"]
    assert sandbox_id in prep.stdout
    # The job log links the dashboard's page of it.
    assert f"Kiln dashboard: {gl_kilnd.url}/ui/sandboxes?id={sandbox_id}" in prep.stdout, prep.stdout
    sb = get_sandbox(gl_kilnd, sandbox_id)
    assert sb["state"] == "running"
    assert sb["template"] == "tiny"
    assert sb["metadata"]["gitlab_job_id"] == runner.job_id
    assert sb["metadata"]["gitlab_project"] == "group/widget"

    for stage, body in [
        ("prepare_script", 'echo "Running on $(hostname)"'),
        ("get_sources", "mkdir -p /builds/group/widget && cd /builds/group/widget && echo hello > README"),
        ("restore_cache", "ls -d /cache"),
        ("step_script", 'cd /builds/group/widget\necho "step sees $(cat README)"\necho to-stderr >&2'),
        ("after_script", "echo after"),
        ("upload_artifacts_on_success", "true"),
        ("cleanup_file_variables", "true"),
    ]:
        out = runner.run(stage, body)
        assert out.returncode == 0, f"{stage}: {out.returncode}\n{out.stdout}\n{out.stderr}"
        if stage == "step_script":
            # Files from an earlier sub-stage are there: every stage runs in the same sandbox.
            assert "step sees hello" in out.stdout
            assert "to-stderr" in out.stderr

    # A second job gets a fresh VM that knows nothing of the first.
    other = Runner(gl_kilnd, state_dir)
    assert other.prepare().returncode == 0
    assert other.state()["sandbox_id"] != sandbox_id
    out = other.run("step_script", "test ! -e /builds/group/widget/README && echo clean")
    assert out.returncode == 0 and "clean" in out.stdout, out.stdout + out.stderr
    assert other.cleanup().returncode == 0

    done = runner.cleanup()
    assert done.returncode == 0, done.stderr
    assert get_sandbox(gl_kilnd, sandbox_id)["state"] == "deleted"
    assert not (state_dir / f"job-{runner.job_id}.json").exists()
    # cleanup twice (runner retries, or prepare failed early) is not an error.
    assert runner.cleanup().returncode == 0


def test_a_failing_script_is_a_build_failure(gl_kilnd, state_dir):
    runner = Runner(gl_kilnd, state_dir)
    assert runner.prepare().returncode == 0
    try:
        out = runner.run("step_script", "echo before\nexit 3\necho never")
        assert out.returncode == BUILD_FAILURE, out.stdout + out.stderr
        assert "before" in out.stdout and "never" not in out.stdout
        assert (runner.tmp / "exit_code").read_text().strip() == "3"
        # `set -e` in runner's script: a failing command fails the stage too.
        out = runner.run("step_script", "false\necho never")
        assert out.returncode == BUILD_FAILURE
        # The sandbox still works after a failed stage (after_script runs).
        out = runner.run("after_script", "echo after")
        assert out.returncode == 0 and "after" in out.stdout
    finally:
        assert runner.cleanup().returncode == 0


def test_kiln_or_kilnd_failures_are_system_failures(gl_kilnd, state_dir):
    # run without prepare: no sandbox for this job id.
    lonely = Runner(gl_kilnd, state_dir)
    out = lonely.run("step_script", "echo hi")
    assert out.returncode == SYSTEM_FAILURE, out.stderr
    assert "prepare" in out.stderr

    # kilnd unreachable.
    dead = Runner(gl_kilnd, state_dir, url=f"http://127.0.0.1:{free_port()}")
    out = dead.prepare()
    assert out.returncode == SYSTEM_FAILURE, out.stderr

    # An unknown template is kilnd refusing the job's environment: a system failure, and nothing
    # is left to clean up.
    bad = Runner(gl_kilnd, state_dir)
    bad.job_variables["KILN_TEMPLATE"] = "no-such-template"
    out = bad.prepare()
    assert out.returncode == SYSTEM_FAILURE
    assert "template" in out.stderr
    assert bad.cleanup().returncode == 0

    # The sandbox disappears under the job (deleted by someone, TTL, kilnd restart).
    gone = Runner(gl_kilnd, state_dir)
    assert gone.prepare().returncode == 0
    sandbox_id = gone.state()["sandbox_id"]
    req = urllib.request.Request(f"{gl_kilnd.url}/v1/sandboxes/{sandbox_id}", method="DELETE",
                                 headers={"Authorization": f"Bearer {gl_kilnd.tokens['runner']}"})
    urllib.request.urlopen(req, timeout=60).read()
    out = gone.run("step_script", "echo hi")
    assert out.returncode == SYSTEM_FAILURE, out.stdout + out.stderr
    assert gone.cleanup().returncode == 0

    # A missing job id means runner is not the caller.
    no_id = Runner(gl_kilnd, state_dir)
    no_id.job_variables.pop("CI_JOB_ID")
    assert no_id.prepare().returncode == SYSTEM_FAILURE


def test_the_state_dir_must_be_private(gl_kilnd, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    out = Runner(gl_kilnd, shared).prepare()
    assert out.returncode == SYSTEM_FAILURE
    assert "0700" in out.stderr

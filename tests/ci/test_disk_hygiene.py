"""Disk hygiene and interrupted jobs (docs/ci.md, "When kilnd restarts"; docs/kilnd.md, "Disk"):
a real kilnd, real VMs from the `base` template, real git repositories made here.

- kill -9 of kilnd while a job's checkout is being made: after the restart the start-up sweep
  removes the checkout and its tar, and the job runs again to completion as attempt 2;
- kill -9 in the middle of a step: attempt 2 runs to completion; a second kill -9 during that
  attempt ends the job as error, saying why;
- the free-space floor: creates and job submits are refused with 503 naming the shortage (no host
  path), /healthz shows it;
- retention: old job dirs and git mirrors go, recent ones and running jobs' stay."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from test_jobs import FINAL, Repo, check, logs, pipeline, submit, wait_job  # noqa: F401
from api_client import ApiClient
from kilnd_fixture import Kilnd, pid_alive, wait_until
from openapi_check import OpenApiSpec, SpecRecorder


@pytest.fixture(scope="module")
def recorder() -> SpecRecorder:
    return SpecRecorder(OpenApiSpec.load())


def started(name: str, **env: str) -> Kilnd:
    instance = Kilnd(extra_env=env, name=name)
    try:
        instance.create_token("alice")
        instance.start()
    except Exception:
        instance.cleanup()
        raise
    return instance


def job_dir(instance: Kilnd, job_id: str) -> Path:
    return instance.data_dir / "jobs" / job_id


def interrupted_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "interrupted"]


def sweep_line(instance: Kilnd) -> dict | None:
    return next((line for line in instance.log_lines() if line.get("msg", "").startswith("ci: start-up sweep")), None)


def test_kill9_during_checkout_sweeps_it_and_attempt_2_runs_to_completion(recorder, tmp_path):
    instance = started("ci-kill-checkout")
    try:
        api = ApiClient(instance.port, instance.tokens["alice"], recorder)
        repo = Repo(tmp_path / "big-repo")
        # 96 MiB that does not compress: the host copies it into the job's repository, checks it
        # out and tars it, which takes seconds, so the kill below lands inside the checkout.
        (repo.path / "data").mkdir()
        for i in range(24):
            (repo.path / "data" / f"blob{i:02}.bin").write_bytes(os.urandom(4 << 20))
        sha = repo.commit({".kiln.yml": pipeline("  - name: count\n    run: ls data | wc -l > count.txt; cat count.txt\n")})
        job_id = submit(api, repo, sha)["id"]
        # A local path's checkout is staged in the git cache's local area (git_source.h), its tar
        # made in the job's folder.
        checkout = instance.data_dir / "ci" / "git" / "local" / "work" / job_id
        tar = job_dir(instance, job_id) / "code.tar"
        def on_disk() -> int:
            return sum(f.stat().st_blocks * 512 for d in (checkout, job_dir(instance, job_id)) for f in d.rglob("*")
                       if f.is_file() and not f.is_symlink())

        def mid_checkout() -> bool:
            # The checkout folder exists from the start of the checkout until its tar is made; the
            # tar until the VM has read it. Killed once megabytes of it are on the host's disk.
            try:
                return (checkout.exists() or tar.exists()) and on_disk() > (8 << 20)
            except FileNotFoundError:  # a file went while it was counted
                return False
        assert wait_until(mid_checkout, 300, interval=0.02), \
            f"the job's checkout never appeared: {check(api.get(f'/v1/jobs/{job_id}')).json()}"
        instance.kill9()
        left = on_disk()
        assert (checkout.exists() or tar.exists()) and left > (8 << 20), "the kill came after the checkout"

        instance.start()
        swept = sweep_line(instance)
        assert swept and swept["checkouts"] + swept["tars"] >= 1, f"no start-up sweep in kilnd's log; {left} bytes were left"
        assert swept["bytes"] >= (8 << 20), swept
        job = wait_job(api, job_id, timeout=600)
        assert job["state"] == "passed", job
        assert job["attempts"] == 2 and job["restarts"] == 1, job
        events = logs(api, job_id)
        marks = interrupted_events(events)
        assert len(marks) == 1 and marks[0]["attempt"] == 1 and marks[0]["requeued"] is True, marks
        assert "interrupted by a kilnd restart" in marks[0]["message"]
        attempts = [e["attempt"] for e in events if e["type"] == "attempt"]
        assert attempts == [1, 2], attempts
        # The line separates the attempts: attempt 1's events before it, attempt 2's after.
        cut = events.index(marks[0])
        assert any(e["type"] == "attempt" and e["attempt"] == 2 for e in events[cut:])
        assert "24" in "".join(e.get("data", "") for e in events[cut:] if e["type"] == "output")
        assert events[-1]["type"] == "end" and events[-1]["state"] == "passed"
        # Nothing of either attempt's checkout is left.
        assert not checkout.exists() and not tar.exists()
        assert not list(job_dir(instance, job_id).rglob("*.partial"))
    finally:
        instance.cleanup()


def test_kill9_mid_step_runs_attempt_2_and_a_second_kill_ends_the_job(recorder, tmp_path):
    instance = started("ci-kill-step")
    try:
        api = ApiClient(instance.port, instance.tokens["alice"], recorder)
        repo = Repo(tmp_path / "step-repo")
        sha = repo.commit({".kiln.yml": pipeline("  - name: long\n    run: echo running; sleep 25; echo slept\n")})

        def in_step(job_id: str, attempt: int):
            events = logs(api, job_id)
            cut = [i for i, e in enumerate(events) if e["type"] == "attempt" and e["attempt"] == attempt]
            return bool(cut) and any(e["type"] == "step_started" for e in events[cut[0]:])

        # 1. Killed in the step of attempt 1: attempt 2 runs to completion in a new VM.
        job_id = submit(api, repo, sha)["id"]
        assert wait_until(lambda: in_step(job_id, 1), 300), logs(api, job_id)
        first_vm = next(e for e in logs(api, job_id) if e["type"] == "vm")["sandbox"]
        qemus = instance.qemu_pids()
        assert qemus, "no QEMU is running the job"
        instance.kill9()
        instance.start()
        assert wait_until(lambda: not any(pid_alive(p) for p in qemus), 30), "attempt 1's QEMU survived the restart"
        job = wait_job(api, job_id, timeout=600)
        assert job["state"] == "passed" and job["attempts"] == 2 and job["restarts"] == 1, job
        assert job["steps"][0]["state"] == "passed" and job["steps"][0]["exit_code"] == 0, job
        events = logs(api, job_id)
        assert len(interrupted_events(events)) == 1
        vms = [e["sandbox"] for e in events if e["type"] == "vm"]
        assert len(vms) == 2 and vms[0] == first_vm and vms[1] != first_vm, vms
        cut = events.index(interrupted_events(events)[0])
        assert "slept" not in "".join(e.get("data", "") for e in events[:cut] if e["type"] == "output")
        assert "slept" in "".join(e.get("data", "") for e in events[cut:] if e["type"] == "output")

        # 2. A job killed in attempt 1 and again in attempt 2 ends as error and says why.
        job_id = submit(api, repo, sha)["id"]
        assert wait_until(lambda: in_step(job_id, 1), 300), logs(api, job_id)
        instance.kill9()
        instance.start()
        assert wait_until(lambda: in_step(job_id, 2), 300), logs(api, job_id)
        instance.kill9()
        instance.start()
        job = wait_job(api, job_id, timeout=60)
        assert job["state"] == "error" and job["attempts"] == 2 and job["restarts"] == 2, job
        assert "kilnd stopped" in job["error"] and "not run again" in job["error"], job["error"]
        events = logs(api, job_id)
        marks = interrupted_events(events)
        assert [m["attempt"] for m in marks] == [1, 2] and [m["requeued"] for m in marks] == [True, False], marks
        assert events[-1]["type"] == "end" and events[-1]["state"] == "error"
        # It stays ended: one more restart does not run it again.
        instance.restart()
        time.sleep(2)
        assert check(api.get(f"/v1/jobs/{job_id}")).json()["state"] == "error"
    finally:
        instance.cleanup()


def test_the_free_space_floor_refuses_new_work_with_503_and_healthz_shows_it(recorder, tmp_path):
    # A floor no disk meets: 2^40 MiB (a zebibyte-scale disk would be needed).
    instance = started("disk-floor", KILN_MIN_FREE_DISK_MIB=str(1 << 40))
    try:
        api = ApiClient(instance.port, instance.tokens["alice"], recorder)
        health = check(api.get("/healthz")).json()
        assert health["disk"]["ok"] is False and health["status"] == "degraded", health
        assert health["disk"]["min_free_bytes"] == (1 << 60) and health["disk"]["free_bytes"] < (1 << 60)
        r = check(api.post("/v1/sandboxes", {"template": "tiny"}))
        assert r.status == 503 and r.error_code == "unavailable", r
        message = r.json()["error"]["message"]
        assert "not enough free disk space to create a sandbox" in message, message
        assert str(instance.data_dir) not in message and "/var/" not in message, message
        repo = Repo(tmp_path / "repo")
        sha = repo.commit({".kiln.yml": pipeline("  - name: x\n    run: 'true'\n")})
        r = check(api.post("/v1/jobs", {"repo": str(repo.path), "sha": sha}))
        assert r.status == 503 and r.error_code == "unavailable", r
        assert "queue a CI job" in r.json()["error"]["message"]
        assert not instance.qemu_pids(), "a QEMU started although the disk is 'full'"
        assert instance.healthy(), "kilnd stopped answering"
    finally:
        instance.cleanup()
    # The same kilnd with the default floor reports a healthy disk.
    instance = started("disk-ok")
    try:
        health = check(ApiClient(instance.port, None, recorder).get("/healthz")).json()
        assert health["disk"]["ok"] is True and health["disk"]["min_free_bytes"] >= (2048 << 20), health
    finally:
        instance.cleanup()


def test_retention_prunes_old_job_dirs_and_mirrors_and_keeps_recent_ones(recorder, tmp_path):
    instance = Kilnd(extra_env={"KILN_RETENTION_INTERVAL_SECONDS": "1", "KILN_CI_JOB_RETENTION_DAYS": "30",
                                "KILN_CI_GIT_RETENTION_DAYS": "14"}, name="retention")
    try:
        instance.create_token("alice")
        jobs = instance.data_dir / "jobs"
        git = instance.data_dir / "ci" / "git"
        old_job, new_job = jobs / "job-0000000000aa", jobs / "job-0000000000bb"
        old_mirror, new_mirror = git / ("a" * 24 + ".git"), git / ("b" * 24 + ".git")
        day = 86400
        for path, age_days in ((old_job, 40), (new_job, 1), (old_mirror, 20), (new_mirror, 2)):
            (path / "sub").mkdir(parents=True)
            (path / "sub" / "file").write_bytes(b"x" * 4096)
            when = time.time() - age_days * day
            os.utime(path, (when, when))
        instance.start()
        assert wait_until(lambda: not old_job.exists() and not old_mirror.exists(), 30), \
            f"old job dir {old_job.exists()}, old mirror {old_mirror.exists()}:\n{instance.log_tail()}"
        assert new_job.exists() and new_mirror.exists()
        time.sleep(2)  # a few more passes: still kept
        assert new_job.exists() and new_mirror.exists()
        assert not list(git.glob("*.pruning"))
        assert any(line.get("msg") == "ci: retention pruned jobs" for line in instance.log_lines())
    finally:
        instance.cleanup()

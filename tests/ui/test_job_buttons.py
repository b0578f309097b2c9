"""The job page's cancel and re-run buttons, clicked in a real browser on a real job in a VM: cancel
ends the job and its pipeline as cancelled and its VM goes; re-run queues the same commit again
and the page moves to the new pipeline. Screenshots under build/<...>/test-output/ui/<test>/."""
from __future__ import annotations

import urllib.parse

from test_dashboard import FINAL, JOB_TIMEOUT, commit_tree, submit, first_job
from ui_harness import wait_for

SLEEPER = """\
template: base
timeout_seconds: 600
steps:
  - name: nap
    run: echo napping; sleep 300
"""


def job_vms(api, job_id: str) -> list[dict]:
    """The live sandboxes kilnd made for this job (every owner's: they are CI's own)."""
    status, body = api.json("GET", f"/v1/sandboxes?owner=all&metadata.ci_job={job_id}")
    assert status == 200, body
    return body["sandboxes"]


def test_cancel_ends_the_job_and_its_pipeline_and_rerun_queues_the_commit_again(browser, ui_kilnd, api_for, tmp_path):
    api = api_for("alice")
    repo = tmp_path / "sleeper"
    repo.mkdir()
    (repo / ".kiln.yml").write_text(SLEEPER)
    sha = commit_tree(repo)
    pipeline = submit(api, repo, sha)
    job_id = first_job(api, pipeline)

    def napping():
        status, j = api.json("GET", f"/v1/jobs/{job_id}")
        assert status == 200 and j["state"] not in FINAL, j
        running = [s for s in j["steps"] if s["name"] == "nap" and s["state"] == "running"]
        return j if running and job_vms(api, job_id) else None
    wait_for(napping, JOB_TIMEOUT, "the job's step to run in its VM")

    browser.open_as(f"/ui/jobs/{job_id}", "alice")
    browser.find("#cancel")
    assert not browser.all("#rerun"), "a running job offers re-run"
    wait_for(lambda: "napping" in browser.text(".log"), 30, "the step's output on the page")
    browser.shot("1-running-with-cancel")
    browser.click("#cancel")

    def cancelled():
        j = api.json("GET", f"/v1/jobs/{job_id}")[1]
        p = api.json("GET", f"/v1/pipelines/{pipeline['id']}")[1]
        return (j, p) if j["state"] in FINAL and p["state"] in FINAL else None
    job, ended = wait_for(cancelled, 120, "the job and its pipeline to end")
    assert job["state"] == "cancelled", job
    assert ended["state"] == "cancelled", ended
    wait_for(lambda: not job_vms(api, job_id), 60, "the job's VM to be deleted")
    # The page follows: the state badge says so, cancel is gone and re-run is offered.
    wait_for(lambda: "cancelled" in browser.text("#job-state"), 20, "the page to show cancelled")
    browser.find("#rerun")
    assert not browser.all("#cancel")
    browser.shot("2-cancelled-with-rerun")

    browser.click("#rerun")

    def new_pipeline():
        status, listed = api.json("GET", "/v1/pipelines?" + urllib.parse.urlencode({"repo": pipeline["repo"], "limit": 10}))
        assert status == 200, listed
        again = [p for p in listed["pipelines"] if p["id"] != pipeline["id"]]
        return again[0] if again else None
    again = wait_for(new_pipeline, 30, "a new pipeline of the same repository")
    try:
        assert again["repo"] == pipeline["repo"] and again["sha"] == sha, again
        assert again["state"] in ("queued", "running"), again
        # The page moved to the new pipeline's page.
        wait_for(lambda: browser.driver.current_url.endswith(f"/ui/pipelines/{again['id']}"), 20,
                 f"the page to move to /ui/pipelines/{again['id']} (at {browser.driver.current_url})")
        browser.find("#jobs")
        assert again["id"] in browser.text("main")
        browser.shot("3-rerun-pipeline-page")
    finally:
        api.json("POST", f"/v1/pipelines/{again['id']}/cancel")
        wait_for(lambda: api.json("GET", f"/v1/pipelines/{again['id']}")[1]["state"] in FINAL, 300,
                 "the re-run pipeline to end after its cancel")

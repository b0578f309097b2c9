#!/usr/bin/env python3
"""ci_bench: CI job figures on a real kilnd with real VMs (the `base` template), see docs/ci.md.

- job overhead: a job's wall time (started -> finished) minus its steps' own time, median and p99
  over KILN_BENCH_CI_JOBS (20) trivial jobs run one at a time; also submit -> finished;
- the per-phase breakdown of those jobs (medians), from their logs' event timestamps and the
  timing fields the runner writes (docs/ci.md "Latest figures");
- throughput: jobs per minute with 2 workers, KILN_BENCH_CI_BATCH (10) trivial jobs queued at once;
- the bake: examples/widget's install (its bake) on a first job against the second job, which
  restores the baked snapshot (the saving, as a share of the install time).
KILN_BENCH_CI_ONLY_OVERHEAD=1 stops after the overhead and its breakdown (quicker, for tuning).
Prints the accelerator beside the figures. Run: KILN_BUILD=build/release bench/ci_bench.py"""
from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import uuid
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "api"))

from bench_kilnd import Api, pct, start_kilnd  # noqa: E402  (bench/, the script's own folder)
from kilnd_fixture import free_port, wait_until  # noqa: E402


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: dict[str, str] | None = None, copy_from: Path | None = None) -> str:
    if copy_from:
        shutil.copytree(copy_from, root, ignore=shutil.ignore_patterns(".venv", "reports", "__pycache__"))
    else:
        root.mkdir(parents=True)
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "bench")
    return git(root, "rev-parse", "HEAD")


def run_job(api: Api, repo: Path, sha: str) -> tuple[dict, float]:
    t0 = time.monotonic()
    job = api.call("POST", "/v1/jobs", {"repo": str(repo), "sha": sha})
    return wait_job(api, job["id"]), time.monotonic() - t0


def wait_job(api: Api, job_id: str) -> dict:
    def final():
        j = api.call("GET", f"/v1/jobs/{job_id}")
        return j if j["state"] in ("passed", "failed", "error", "cancelled") else None
    job = wait_until(final, 600, interval=0.05)
    if not job or job["state"] != "passed":
        raise RuntimeError(f"job {job_id} did not pass: {job}")
    return job


WEBHOOK_SECRET = "ci-bench-webhook-secret"


def post_push(port: int, clone_url: str, sha: str) -> str:
    """A signed GitHub push webhook for `sha` of the repository at `clone_url`; returns the job id."""
    body = json.dumps({"ref": "refs/heads/main", "after": sha, "deleted": False,
                       "repository": {"full_name": "bench/trivial", "clone_url": clone_url},
                       "sender": {"login": "bench"}}).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/ci/github", body=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    if resp.status != 201:
        raise RuntimeError(f"webhook: {resp.status} {raw[:300]!r}")
    return json.loads(raw)["job_id"]


def unix_ms(rfc3339: str) -> int:
    from datetime import datetime
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


# (label, from event, to event): gaps between a job's log events; "started"/"finished" are the
# job record's times. The runner's own timing fields split some gaps further (PHASE_FIELDS).
PHASE_GAPS = [("claim -> runner", "started", "attempt"), ("host: fetch, .kiln.yml", "attempt", "code"),
              ("bake key + lookup", "code", "template"), ("VM from the template", "template", "vm"),
              ("checkout in the VM (tar + git, one exec)", "vm", "checkout"), ("-> step start", "checkout", "step_started"),
              ("steps", "step_started", "step_finished"), ("reports + VM removal", "step_finished", "vm_removed"),
              ("-> end event", "vm_removed", "end"), ("-> job record finished", "end", "finished")]
# checkout.tar_ms: making the checkout's tar on the host, beside the VM's creation; tar_wait_ms:
# how long the VM's command still waited for it.
PHASE_FIELDS = [("code", "host_ms"), ("vm", "create_ms"), ("checkout", "checkout_ms"), ("checkout", "tar_ms"),
                ("checkout", "tar_wait_ms"), ("vm_removed", "remove_ms")]


def phases(api: Api, job: dict) -> dict[str, float]:
    log = [json.loads(line) for line in api.call("GET", f"/v1/jobs/{job['id']}/logs?follow=false").decode().splitlines()]
    ts = {"started": unix_ms(job["started_at"]), "finished": unix_ms(job["finished_at"])}
    fields = {}
    for e in log:
        if e["type"] == "step_finished":
            ts[e["type"]] = e["ts"]  # the last step's: "step" spans them all
        else:
            ts.setdefault(e["type"], e["ts"])
        for event, name in PHASE_FIELDS:
            if e["type"] == event and name in e:
                fields[f"{event}.{name}"] = e[name]
    out = {label: ts[b] - ts[a] for label, a, b in PHASE_GAPS if a in ts and b in ts}
    out.update(fields)
    return out


def print_phases(rows: list[dict[str, float]]) -> None:
    print("per phase, median over the jobs above (ms):")
    for key in [g[0] for g in PHASE_GAPS] + [f"{e}.{n}" for e, n in PHASE_FIELDS]:
        values = [r[key] for r in rows if key in r]
        if values:
            print(f"  {key:45s} {statistics.median(values):7.0f}   (p99 {pct(values, 99):.0f})")


def main() -> int:
    n = int(os.environ.get("KILN_BENCH_CI_JOBS", "20"))
    batch = int(os.environ.get("KILN_BENCH_CI_BATCH", "10"))
    work = Path(tempfile.mkdtemp(prefix="kiln-ci-bench-"))
    # A webhook's job runs as no token, so its repository must be a URL in ci_repos (a local path
    # needs the admin scope): `git daemon` on loopback serves the bench's repositories.
    git_port = free_port()
    git_daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={git_port}", "--export-all",
                                   f"--base-path={work}", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    git_url = f"git://127.0.0.1:{git_port}"
    try:
        kilnd, api, accel = start_kilnd("ci-bench", {"KILN_CI_WORKERS": "2", "KILN_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
                                                     "KILN_CI_REPOS": git_url + "/"})
    except BaseException:
        git_daemon.kill()
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        trivial = work / "trivial"
        sha = make_repo(trivial, {".kiln.yml": "template: base\nsteps:\n  - name: noop\n    run: 'true'\n"})
        print(f"ci_bench ({accel}): warming up (bakes the base template once)", flush=True)
        run_job(api, trivial, sha)

        overhead, wall, submit_to_end, steps, rows = [], [], [], [], []
        for _ in range(n):
            job, took = run_job(api, trivial, sha)
            rows.append(phases(api, job))
            overhead.append(job["duration_ms"] - job["steps_ms"])
            wall.append(job["duration_ms"])
            steps.append(job["steps_ms"])
            submit_to_end.append(took * 1000)
        print(f"job overhead (wall - steps), {n} trivial jobs, {accel}: p50 {statistics.median(overhead):.0f} ms, "
              f"p99 {pct(overhead, 99):.0f} ms (job wall p50 {statistics.median(wall):.0f} ms, steps p50 "
              f"{statistics.median(steps):.0f} ms, submit -> finished p50 {statistics.median(submit_to_end):.0f} ms)")
        print_phases(rows)

        # The same with a new commit each time, as CI mostly sees: kilnd fetches it and makes its
        # checkout tar on the host inside the job (the loop above reuses one commit's tar).
        fresh_overhead, fresh_host = [], []
        for i in range(max(5, n // 2)):
            (trivial / "counter").write_text(f"{i}\n")
            git(trivial, "add", "-A")
            git(trivial, "commit", "-q", "-m", f"bench {i}")
            job, _ = run_job(api, trivial, git(trivial, "rev-parse", "HEAD"))
            fresh_overhead.append(job["duration_ms"] - job["steps_ms"])
            row = phases(api, job)
            fresh_host.append(row.get("code.host_ms", 0) + row.get("checkout.tar_wait_ms", 0))
        print(f"job overhead, a new commit each job, {len(fresh_overhead)} trivial jobs, {accel}: p50 "
              f"{statistics.median(fresh_overhead):.0f} ms, p99 {pct(fresh_overhead, 99):.0f} ms (host work not hidden by "
              f"the VM's start - fetch, .kiln.yml, waiting for the checkout's tar - p50 {statistics.median(fresh_host):.0f} ms)")
        if os.environ.get("KILN_BENCH_CI_ONLY_OVERHEAD"):
            return 0

        # Webhook -> first step: from the POST of a signed push to the job log's step_started event.
        # Each push a new commit, as pushes are (kilnd takes a body it has seen before as a redelivery).
        to_first_step = []
        for i in range(max(5, n // 2)):
            (trivial / "pushed").write_text(f"{i}\n")
            git(trivial, "add", "-A")
            git(trivial, "commit", "-q", "-m", f"push {i}")
            pushed = git(trivial, "rev-parse", "HEAD")
            posted_ms = time.time() * 1000
            job_id = post_push(kilnd.port, f"{git_url}/trivial", pushed)
            wait_job(api, job_id)
            log = [json.loads(line) for line in api.call("GET", f"/v1/jobs/{job_id}/logs?follow=false").decode().splitlines()]
            started = next(e["ts"] for e in log if e["type"] == "step_started")
            to_first_step.append(started - posted_ms)
        print(f"webhook -> first step, {len(to_first_step)} signed push webhooks, {accel}: p50 "
              f"{statistics.median(to_first_step):.0f} ms, p99 {pct(to_first_step, 99):.0f} ms")

        t0 = time.monotonic()
        ids = [api.call("POST", "/v1/jobs", {"repo": str(trivial), "sha": sha})["id"] for _ in range(batch)]
        for i in ids:
            wait_job(api, i)
        minutes = (time.monotonic() - t0) / 60
        print(f"throughput, {batch} trivial jobs queued at once, 2 workers, {accel}: {batch / minutes:.1f} jobs/min")

        widget = work / "widget"
        wsha = make_repo(widget, copy_from=REPO / "examples" / "widget")
        first, first_s = run_job(api, widget, wsha)
        log = api.call("GET", f"/v1/jobs/{first['id']}/logs?follow=false").decode().splitlines()
        bake_ms = next(json.loads(l)["duration_ms"] for l in log
                       if '"step_finished"' in l and json.loads(l).get("step") == "bake")
        second, second_s = run_job(api, widget, wsha)
        assert second["bake_hit"] and not first["bake_hit"], (first, second)
        saved = first["duration_ms"] - second["duration_ms"]
        print(f"bake (examples/widget, {accel}): install (bake.run) {bake_ms} ms; first job {first['duration_ms']} ms "
              f"(bake miss: install + snapshot), second job {second['duration_ms']} ms (bake hit); saved {saved} ms = "
              f"{100 * saved / max(bake_ms, 1):.0f}% of the install time; the second job spends 0 ms installing "
              f"(100% of the install itself saved)")
        hit = phases(api, second)
        print(f"bake hit's phases: VM from the bake's snapshot {hit.get('vm.create_ms', 0):.0f} ms, checkout in the VM (objects "
              f"added, `git checkout` over the bake's checkout) {hit.get('checkout.checkout_ms', 0)} ms, steps "
              f"{second['steps_ms']} ms, reports + VM removal {hit.get('reports + VM removal', 0)} ms")
        return 0
    finally:
        kilnd.cleanup()
        git_daemon.kill()
        git_daemon.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""GET /v1/bakes on the suite's kilnd: two jobs of one repository whose `bake:` key files did not
change (real VMs from `base`): the first bakes (a miss), the second restores the bake (a hit). The
admin's list shows that bake with its counts and its snapshot's size as /v1/snapshots/{id} gives
it; a tenant is refused (bakes are kilnd's own snapshots). The bake cache's behaviour itself is
tests/ci/test_jobs.py."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

KILN_YML = """\
template: base
bake:
  key_files: [deps.lock]
  run: mkdir -p /opt/deps && cp deps.lock /opt/deps/installed
steps:
  - name: use
    run: cat /opt/deps/installed
"""


def _commit(root: Path, files: dict[str, str]) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    root.mkdir(exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=root, env=env, check=True, capture_output=True)
    for args in (["add", "-A"], ["commit", "-q", "-m", "c"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def _run(api, repo: Path, sha: str) -> dict:
    r = api.post("/v1/jobs", {"repo": str(repo), "sha": sha})
    assert r.status == 201, r
    job_id = r.json()["id"]
    api.get(f"/v1/jobs/{job_id}/logs", timeout=900)  # follows the log until the job ends
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "passed", job
    return job


def test_bakes_lists_each_bake_with_its_hits_misses_and_size(api, api_bob, kilnd, tmp_path):
    repo = tmp_path / "baked"
    first = _run(api, repo, _commit(repo, {".kiln.yml": KILN_YML, "deps.lock": "left-pad 1.0.0\n", "src.txt": "a\n"}))
    second = _run(api, repo, _commit(repo, {"src.txt": "b\n"}))  # code changed, key files not
    assert first["bake_hit"] is False and second["bake_hit"] is True, (first, second)
    assert first["template_key"] == second["template_key"]

    r = api.get("/v1/bakes")
    assert r.status == 200 and not r.errors, r
    bakes = {b["key"]: b for b in r.json()["bakes"]}
    bake = bakes.get(first["template_key"])
    assert bake, f"no bake {first['template_key']} in {list(bakes)}"
    assert (bake["hits"], bake["misses"], bake["template"]) == (1, 1, "base"), bake
    # The host that baked it: this kilnd, the only one (every host of a fleet bakes for itself).
    assert bake["host"] == api.get("/v1/hosts").json()["hosts"][0]["name"] == first["host"], (bake, first)
    assert bake["created_at"] <= bake["used_at"], bake
    snapshot = api.get(f"/v1/snapshots/{bake['snapshot_id']}")
    assert snapshot.status == 200, snapshot
    assert bake["size_bytes"] == snapshot.json()["size_bytes"] > 0, (bake, snapshot.json())
    assert (kilnd.data_dir / "snapshots" / bake["snapshot_id"]).is_dir()
    # Most recently used first.
    used = [b["used_at"] for b in r.json()["bakes"]]
    assert used == sorted(used, reverse=True), used

    refused = api_bob.get("/v1/bakes")
    assert refused.status == 403 and not refused.errors, refused

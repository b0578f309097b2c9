"""What the templates and charts pages show is what the API says, in a real browser on a real
kilnd with real jobs: the bake cache's size, hits and misses (GET /v1/bakes), the pass/fail
chart's totals and the duration chart's points (GET /v1/jobs), the create-time histogram's count
(GET /v1/stats/creates). The charts' SVG carries its numbers in data-* attributes (svgchart.js).
Screenshots under build/<...>/test-output/ui/<test>/."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from test_bakes_route import KILN_YML as BAKED  # tests/api's: a bake keyed on deps.lock
from test_dashboard import JOB_TIMEOUT, create_sandbox, git, commit_tree, first_job, submit, wait_job


FAILING = """\
template: base
steps:
  - name: fails
    run: echo about to fail; exit 3
"""

CHART_STATES = ("passed", "failed", "error", "cancelled")  # the pass/fail chart's stacks (charts.js)


def run_job(api, repo: Path, files: dict[str, str]) -> dict:
    """Commits `files` in `repo` (made on first use), queues its pipeline and waits for its job."""
    first_commit = not repo.exists()
    repo.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (repo / name).write_text(text)
    if first_commit:
        sha = commit_tree(repo)
    else:
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "again")
        sha = git(repo, "rev-parse", "HEAD")
    return wait_job(api, first_job(api, submit(api, repo, sha)), JOB_TIMEOUT)


def last_day_of_jobs(api) -> list[dict]:
    """Every job created in the last day, as the charts page reads them (pages of /v1/jobs)."""
    since = datetime.now(timezone.utc) - timedelta(days=1)
    out, cursor = [], ""
    while True:
        status, page = api.json("GET", "/v1/jobs?limit=500" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        out += [j for j in page["jobs"] if datetime.fromisoformat(j["created_at"].replace("Z", "+00:00")) >= since]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def what_the_api_says(api) -> dict:
    jobs = last_day_of_jobs(api)
    finished = [j for j in jobs if j.get("finished_at")]
    return {
        "totals": {s: sum(1 for j in finished if j["state"] == s) for s in CHART_STATES},
        "durations": sorted(j["duration_ms"] for j in finished if j.get("duration_ms")),
        "creates": len(api.json("GET", "/v1/stats/creates")[1]["creates"]),
    }


def what_the_page_draws(browser) -> dict:
    browser.open("/ui/charts")
    passfail = browser.find("#chart-passfail", 30)
    browser.find("#chart-durations", 30)
    browser.find("#chart-creates", 30)

    def read():
        attr = lambda css, name: [e.get_attribute(name) for e in browser.all(css)]  # noqa: E731
        drawn = {s: 0 for s in CHART_STATES}
        for state, count in zip(attr("#chart-passfail rect.bar", "data-state"), attr("#chart-passfail rect.bar", "data-count")):
            drawn[state] += int(count)
        return {
            "totals": drawn,
            "stated_totals": json.loads(passfail.get_attribute("data-totals")),
            "durations": sorted(float(v) for v in attr("#chart-durations circle.point", "data-value")),
            "duration_count": int(browser.find("#chart-durations").get_attribute("data-count")),
            "creates": int(browser.find("#chart-creates").get_attribute("data-count")),
            "create_bins": sum(int(c) for c in attr("#chart-creates rect.bar", "data-count")),
        }
    return browser.read(read)


def test_the_charts_draw_what_the_api_counts(browser, ui_kilnd, api_for, tmp_path):
    api = api_for("alice")
    passed = run_job(api, tmp_path / "ok", {".kiln.yml": "template: base\nsteps:\n  - name: ok\n    run: echo fine\n"})
    failed = run_job(api, tmp_path / "bad", {".kiln.yml": FAILING})
    assert (passed["state"], failed["state"]) == ("passed", "failed"), (passed, failed)
    sb = create_sandbox(api, "charts")  # at least one create in the last hour
    try:
        browser.open_as("/ui/charts", "alice")
        # Other tests' jobs may end meanwhile: compare only when the API said the same before and
        # after the page was read.
        for attempt in range(5):
            before = what_the_api_says(api)
            drawn = what_the_page_draws(browser)
            after = what_the_api_says(api)
            if before == after:
                break
            time.sleep(2)
        else:
            raise AssertionError(f"the API kept changing while the page was read: {before} vs {after}")
        browser.shot("1-charts")
        assert drawn["totals"] == drawn["stated_totals"] == before["totals"], (drawn, before)
        assert drawn["totals"]["passed"] >= 1 and drawn["totals"]["failed"] >= 1, drawn
        assert drawn["durations"] == [float(d) for d in before["durations"]], (drawn, before)
        assert drawn["duration_count"] == len(before["durations"]) >= 2
        assert drawn["creates"] == drawn["create_bins"] == before["creates"] >= 1, (drawn, before)
    finally:
        api.call("DELETE", f"/v1/sandboxes/{sb}")


def test_the_templates_page_shows_each_bakes_size_hits_and_last_use(new_browser, ui_kilnd, api_for, tmp_path):
    api = api_for("alice")
    repo = tmp_path / "baked"
    first = run_job(api, repo, {".kiln.yml": BAKED, "deps.lock": "left-pad 1.0.0\n", "src.txt": "a\n"})
    second = run_job(api, repo, {"src.txt": "b\n"})  # code changed, key files not: a hit
    assert (first["state"], second["state"], first["bake_hit"], second["bake_hit"]) == ("passed", "passed", False, True)
    status, listed = api.json("GET", "/v1/bakes")
    assert status == 200, listed
    bake = next(b for b in listed["bakes"] if b["key"] == first["template_key"])
    assert bake["size_bytes"] and bake["hits"] >= 1 and bake["misses"] >= 1, bake

    admin = new_browser("admin")
    admin.open_as("/ui/templates", "alice")
    row = f"#bake-list tr[data-key='{bake['key']}']"
    admin.find(row)
    cells = admin.read(lambda: {
        "bytes": admin.find(row + " .bake-size").get_attribute("data-bytes"),
        "hits": admin.text(row + " .bake-hits"),
        "misses": admin.text(row + " .bake-misses"),
        "text": admin.text(row),
    })
    assert cells["bytes"] == str(bake["size_bytes"]), cells
    assert (cells["hits"], cells["misses"]) == (str(bake["hits"]), str(bake["misses"])), cells
    assert "MiB" in cells["text"] or "KiB" in cells["text"] or "GiB" in cells["text"], cells
    assert "base" in cells["text"] and "ago" in cells["text"], cells  # template, made and last used
    admin.shot("1-bakes-with-size")

    # A tenant cannot list kilnd's bakes: the page shows the keys its jobs used, without a size.
    tenant = new_browser("tenant")
    tenant.open_as("/ui/templates", "carol")
    tenant.find("#bakes table, #bakes p")
    assert not tenant.all("#bakes .bake-size")
    tenant.shot("2-tenant-view")

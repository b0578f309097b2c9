"""The dashboard in a real browser (headless Debian Chromium) against a real kilnd running real
jobs in VMs (issue 17's Tests): sign-in and sign-out, the widget pipeline's live log and JUnit
table, a failing test shown first, an artifact's bytes, deleting a sandbox, what a ci:submit token
sees, a cross-site form post, a commit status's link, and a clean console on every page. Each
test saves screenshots of what it checked under build/<...>/test-output/ui/<test>/."""
from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from ui_harness import Api, REPO, gh, wait_for

JOB_TIMEOUT = 900  # seconds: under TCG the first job bakes the base template
FINAL = {"passed", "failed", "error", "cancelled", "skipped"}


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env).stdout.strip()


def commit_tree(repo: Path) -> str:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "test")
    return git(repo, "rev-parse", "HEAD")


def widget_copy(dest: Path, broken: bool = False) -> tuple[Path, str]:
    shutil.copytree(REPO / "examples" / "widget", dest, ignore=shutil.ignore_patterns(".venv", "reports", "__pycache__"))
    if broken:
        test = dest / "tests" / "test_widget.py"
        text = test.read_text()
        assert "widget.price(3, 250), 750" in text
        test.write_text(text.replace("widget.price(3, 250), 750", "widget.price(3, 250), 751"))
    return dest, commit_tree(dest)


def submit(api: Api, repo: Path, sha: str) -> dict:
    status, p = api.json("POST", "/v1/pipelines", {"repo": str(repo), "sha": sha})
    assert status == 201, p
    return p


def first_job(api: Api, pipeline: dict) -> str:
    def planned():
        status, p = api.json("GET", f"/v1/pipelines/{pipeline['id']}")
        return p["jobs"][0]["id"] if status == 200 and p["jobs"] else None
    return wait_for(planned, 120, "the pipeline's first job")


def wait_job(api: Api, job_id: str, timeout: float = JOB_TIMEOUT) -> dict:
    def final():
        status, j = api.json("GET", f"/v1/jobs/{job_id}")
        return j if status == 200 and j["state"] in FINAL else None
    return wait_for(final, timeout, f"job {job_id} to end")


@pytest.fixture(scope="module")
def widget_run(api_for, tmp_path_factory) -> dict:
    """examples/widget's pipeline, queued once for the tests that look at it."""
    api = api_for("alice")
    repo, sha = widget_copy(tmp_path_factory.mktemp("widget") / "widget")
    pipeline = submit(api, repo, sha)
    return {"pipeline": pipeline["id"], "job": first_job(api, pipeline), "sha": sha}


def queue_kiln_yml(api: Api, folder: Path, kiln_yml: str) -> str:
    """A repository of just this .kiln.yml, its pipeline queued; the first job's id."""
    folder.mkdir(parents=True)
    (folder / ".kiln.yml").write_text(kiln_yml)
    return first_job(api, submit(api, folder, commit_tree(folder)))


@pytest.fixture(scope="module")
def big_log_run(api_for, tmp_path_factory) -> dict:
    """A job printing 100,000 coloured lines."""
    return {"job": queue_kiln_yml(api_for("alice"), tmp_path_factory.mktemp("biglog") / "big", """\
template: base
timeout_seconds: 600
steps:
  - name: colours
    run: awk 'BEGIN { for (i = 1; i <= 100000; i++) printf "\\033[3%dmline %d\\033[0m plain\\n", i % 7 + 1, i }'
""")}


@pytest.fixture(scope="module")
def ticker_run(api_for, tmp_path_factory) -> dict:
    """A job printing one line a second, to time how soon each reaches the page."""
    return {"job": queue_kiln_yml(api_for("alice"), tmp_path_factory.mktemp("ticker") / "ticker", """\
template: base
timeout_seconds: 300
steps:
  - name: wait
    run: sleep 3
  - name: ticks
    run: for i in 1 2 3 4 5 6 7 8; do echo "tick $i"; sleep 1; done
""")}


def test_sign_in_refuses_a_wrong_token_and_sign_out_ends_the_session(browser, ui_kilnd):
    browser.open("/ui/")
    browser.find("#signin")
    browser.shot("1-sign-in-form")
    # The refused sign-in is a 401 the console reports; that is the point of this step.
    browser.allow_console(r"/ui/session .*401")
    browser.find("#token").send_keys("kiln_" + "x" * 43)
    browser.find("#signin-submit").click()
    assert "not valid" in browser.text("#signin-error")
    browser.shot("2-wrong-token-refused")
    assert browser.driver.get_cookie("kiln_session") is None

    browser.find("#token").clear()
    browser.sign_in(ui_kilnd.tokens["alice"])
    assert "alice" in browser.text("#who")
    cookie = browser.driver.get_cookie("kiln_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "expiry" in cookie, cookie
    # The page's JavaScript cannot read it (HttpOnly).
    assert "kiln_session" not in browser.driver.execute_script("return document.cookie")
    browser.shot("3-signed-in")
    old = Api(ui_kilnd, cookie=f"kiln_session={cookie['value']}")
    status, me = old.json("GET", "/v1/token")
    assert status == 200 and me["name"] == "alice", me

    browser.find("#signout").click()
    browser.find("#signin")
    browser.shot("4-signed-out")
    status, body = old.json("GET", "/v1/token")
    assert status == 401, body
    browser.open("/ui/pipelines")
    browser.find("#signin")


def test_widget_pipeline_log_grows_live_and_junit_shows_six_tests(browser, ui_kilnd, api_for, widget_run):
    api = api_for("alice")
    job_id = widget_run["job"]
    browser.open_as(f"/ui/jobs/{job_id}", "alice")
    browser.find("#job-state")

    # Watch the line count while the API says the job has not ended.
    seen_running: list[int] = []
    shot_taken = False
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        status, job = api.json("GET", f"/v1/jobs/{job_id}")
        count = int(browser.text(".log-count").split()[0].replace(",", ""))
        if job["state"] in FINAL:
            break
        if job["state"] == "running":
            seen_running.append(count)
            if count > 0 and not shot_taken:
                browser.shot("1-log-while-running")
                shot_taken = True
        time.sleep(0.5)
    grew = [b for a, b in zip(seen_running, seen_running[1:]) if b > a]
    assert seen_running and max(seen_running) > 0 and grew, \
        f"the log did not grow on the page while the job ran: counts {seen_running[:50]}"

    job = wait_job(api, job_id)
    assert job["state"] == "passed", job
    assert wait_for(lambda: "passed" in browser.text("#job-state"), 15, "the page to say passed")
    totals = wait_for(lambda: (lambda t: t if "6 passed" in t else None)(browser.text("#test-totals", 30)), 30,
                      "the JUnit totals")
    assert "0 failed" in totals
    rows = browser.all("#test-cases tbody tr")
    assert len(rows) == 6, [r.text for r in rows]
    assert "miss" in browser.text("#bake") or "hit" in browser.text("#bake")
    assert browser.text("#log-state") == "complete"
    browser.shot("2-passed-with-junit")


def test_each_log_line_reaches_the_page_within_a_second(browser, ui_kilnd, api_for, ticker_run):
    api = api_for("alice")
    job_id = ticker_run["job"]
    browser.open_as(f"/ui/jobs/{job_id}", "alice")
    browser.find(".log-window")
    # When each "tick N" is first drawn (the view follows the end while the job runs).
    browser.driver.execute_script("""
        window.__ticks = {};
        const win = document.querySelector('.log-window');
        new MutationObserver(() => {
          for (const m of win.textContent.matchAll(/tick (\\d+)/g)) if (!(m[1] in window.__ticks)) window.__ticks[m[1]] = Date.now();
        }).observe(win, {childList: true, subtree: true, characterData: true});""")
    status, job = api.json("GET", f"/v1/jobs/{job_id}")
    assert job["state"] not in FINAL, "the page must be open before the ticks are written"
    job = wait_job(api, job_id, 300)
    assert job["state"] == "passed", job
    seen = browser.driver.execute_script("return window.__ticks")
    status, raw, _ = api.call("GET", f"/v1/jobs/{job_id}/logs?follow=false")
    written = {}
    for line in raw.decode().splitlines():
        e = json.loads(line)
        if e.get("type") == "output":
            for n in re.findall(r"tick (\d+)", e.get("data", "")):
                written.setdefault(n, e["ts"])
    assert sorted(written, key=int) == [str(i) for i in range(1, 9)], written
    lags = {n: seen[n] - written[n] for n in written if n in seen}
    assert len(lags) == 8, f"ticks never drawn: {set(written) - set(seen)}"
    print(f"log line to page: {lags} ms")
    assert max(lags.values()) < 1000, f"a line took a second or more to reach the page: {lags} ms"
    browser.shot("1-ticks")


def test_a_failing_test_is_shown_first_with_its_message(browser, ui_kilnd, api_for, tmp_path):
    api = api_for("alice")
    repo, sha = widget_copy(tmp_path / "broken", broken=True)
    job_id = first_job(api, submit(api, repo, sha))
    browser.open_as(f"/ui/jobs/{job_id}", "alice")
    job = wait_job(api, job_id)
    assert job["state"] == "failed", job
    first = wait_for(lambda: (browser.all("#test-cases tbody tr") or [None])[0], 30, "the test table")
    assert "failed" in first.find_element("css selector", ".badge").text
    assert "750 != 751" in first.text, first.text
    assert "test_plain" in first.text
    first.find_element("css selector", "summary").click()
    output = first.find_element("css selector", "pre.case-output").text
    assert "Traceback" in output and "750 != 751" in output, output
    assert "1 failed" in browser.text("#test-totals")
    browser.shot("1-failure-first-expanded")


def test_an_artifact_downloads_with_its_bytes(browser, ui_kilnd, api_for, widget_run):
    api = api_for("alice")
    job = wait_job(api, widget_run["job"])
    assert job["artifacts"] == ["reports/junit.xml"], job
    status, expected, _ = api.call("GET", f"/v1/jobs/{job['id']}/artifacts/reports/junit.xml")
    assert status == 200 and expected.startswith(b"<?xml")
    browser.open_as(f"/ui/jobs/{job['id']}", "alice")
    link = browser.find("#artifacts a")
    browser.shot("1-artifacts")
    link.click()
    got = wait_for(lambda: (lambda p: p if p.exists() else None)(browser.downloads / "junit.xml"), 30, "the download")
    wait_for(lambda: not list(browser.downloads.glob("*.crdownload")), 30, "the download to finish")
    assert hashlib.sha256(got.read_bytes()).hexdigest() == hashlib.sha256(expected).hexdigest()


def create_sandbox(api: Api, label: str) -> str:
    status, sb = api.json("POST", "/v1/sandboxes", {"template": "tiny", "ttl_seconds": 900, "metadata": {"who": label}})
    assert status == 201, sb
    return sb["id"]


def test_deleting_a_sandbox_from_the_page_removes_it(browser, ui_kilnd, api_for):
    api = api_for("alice")
    sb = create_sandbox(api, "delete-me")
    browser.open_as("/ui/sandboxes", "alice")
    row = browser.text(f"#sandbox-list tr[data-id='{sb}']")
    assert "tiny" in row and "who=delete-me" in row
    browser.shot("1-before-delete")
    browser.click(f"button.delete[data-id='{sb}']")
    wait_for(lambda: not browser.all(f"#sandbox-list tr[data-id='{sb}']"), 60, "the row to go")
    browser.shot("2-after-delete")

    def gone():
        status, body = api.json("GET", f"/v1/sandboxes/{sb}")
        return status == 404 or body.get("state") in ("deleted", "deleting")
    assert wait_for(gone, 60, "the API to show the sandbox deleted")


def test_a_ci_submit_token_sees_no_other_sandboxes_and_no_delete_button(new_browser, ui_kilnd, api_for):
    alices = create_sandbox(api_for("alice"), "alice")
    bobs = create_sandbox(api_for("bob"), "bob")
    try:
        carol = new_browser("carol")
        carol.open_as("/ui/sandboxes", "carol")
        carol.find("main h1")
        assert all(not a.is_displayed() for a in carol.all("#nav a[data-nav='sandboxes']"))
        assert "no sandboxes scope" in carol.text("main")
        assert not carol.all("button.delete")
        assert alices not in carol.driver.page_source and bobs not in carol.driver.page_source
        carol.shot("1-carol-ci-submit-only")

        bob = new_browser("bob")
        bob.open_as("/ui/sandboxes", "bob")
        bob.find(f"#sandbox-list tr[data-id='{bobs}']")
        assert alices not in bob.driver.page_source
        assert bob.read(lambda: [b.get_attribute("data-id") for b in bob.all("button.delete")]) == [bobs]
        bob.shot("2-bob-sees-only-his")
    finally:
        api_for("alice").call("DELETE", f"/v1/sandboxes/{alices}")
        api_for("bob").call("DELETE", f"/v1/sandboxes/{bobs}")


class OtherSite:
    """A page on another site (localhost, where kilnd is 127.0.0.1)."""

    def __init__(self, page: bytes):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://localhost:{self.server.server_address[1]}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class LinkPage(OtherSite):
    """A pull request's page with a status's Details link."""

    def __init__(self, target: str):
        super().__init__(f'<!doctype html><html><body><a id="details" href="{target}">Details</a></body></html>'.encode())


class EvilSite(OtherSite):
    """Another site (localhost, where kilnd is 127.0.0.1) whose page posts a form to kilnd."""

    """Its page posts a form to kilnd as soon as it loads."""

    def __init__(self, target: str):
        super().__init__(f"""<!doctype html><html><body><h1>Win a prize</h1>
<form id="f" method="POST" action="{target}" enctype="text/plain">
<input type="hidden" name='{{"template":"tiny","metadata":{{"who":"evil"}},"x":"' value='"}}'></form>
<script>document.getElementById('f').submit();</script></body></html>""".encode())


def test_a_cross_site_form_post_is_refused(browser, ui_kilnd, api_for):
    api = api_for("alice")
    browser.open_as("/ui/sandboxes", "alice")
    cookie = browser.driver.get_cookie("kiln_session")
    status, before = api.json("GET", "/v1/sandboxes")
    evil = EvilSite(f"{ui_kilnd.url}/v1/sandboxes")
    try:
        # The refused post lands on kilnd's error answer; the console reports its status.
        browser.allow_console(r"/v1/sandboxes - Failed to load resource.*40[13]")
        browser.open(evil.url)
        wait_for(lambda: browser.driver.current_url.startswith(ui_kilnd.url), 20, "the form to post")
        body = browser.text("body")
        assert '"unauthorized"' in body or '"forbidden"' in body, body
        browser.shot("1-cross-site-post-refused")
    finally:
        evil.close()
    status, after = api.json("GET", "/v1/sandboxes")
    assert [s["id"] for s in after["sandboxes"]] == [s["id"] for s in before["sandboxes"]], "no sandbox was created"
    # The cookie's own defences, without SameSite's help: no CSRF header, or another origin.
    with_cookie = Api(ui_kilnd, cookie=f"kiln_session={cookie['value']}")
    body = {"template": "tiny"}
    status, answer = with_cookie.json("POST", "/v1/sandboxes", body, {"Origin": ui_kilnd.url})
    assert status == 403 and "CSRF" in answer["error"]["message"], answer
    status, state = with_cookie.json("GET", "/ui/session")
    status, answer = with_cookie.json("POST", "/v1/sandboxes", body, {"Origin": "http://localhost:1", "X-Kiln-CSRF": state["csrf"]})
    assert status == 403, answer


PIPELINE_GH = """\
template: base
timeout_seconds: 300
steps:
  - name: hello
    run: echo "hello from the webhook"
"""


def test_a_commit_status_link_opens_the_job_page_after_sign_in(browser, ui_kilnd, statuses, gh_repo, examples):
    gh_repo.mkdir(exist_ok=True)
    (gh_repo / ".kiln.yml").write_text(PIPELINE_GH)
    sha = commit_tree(gh_repo)
    payload = gh.point_at(gh.example(examples, "push", deleted=False), gh_repo, sha)
    status, answer = gh.post_webhook(ui_kilnd, "push", payload, delivery=str(uuid.uuid4()))
    assert status == 201, answer
    posts = wait_for(lambda: [p for p in statuses.for_sha(sha) if "/ui/jobs/" in p["body"]["target_url"]] or None, 120,
                     "a job's commit status")
    url = posts[0]["body"]["target_url"]
    job_id = url.rsplit("/", 1)[-1]
    assert url == f"{ui_kilnd.url}/ui/jobs/{job_id}", url
    pipeline_links = [p["body"]["target_url"] for p in statuses.for_sha(sha) if p["body"]["context"] == "kiln"]
    assert all("/ui/pipelines/pipeline-" in u for u in pipeline_links), pipeline_links

    browser.open(url)
    browser.find("#signin")
    browser.shot("1-link-asks-to-sign-in")
    browser.sign_in(ui_kilnd.tokens["alice"])
    assert browser.driver.current_url == url
    assert job_id in browser.text(".crumbs")
    browser.find("#job-state")
    browser.shot("2-landed-on-the-job")

    # Signed in, the link clicked on another site (the pull request's page) opens the job at once:
    # the SameSite=Strict cookie is not sent with that navigation, but it is with the page's own
    # calls after it.
    pull_request = LinkPage(url)
    try:
        browser.open(pull_request.url)
        browser.find("#details").click()
        wait_for(lambda: browser.driver.current_url == url, 20, "the link to be followed")
        browser.find("#job-state")
        assert not browser.all("#signin")
        browser.shot("3-followed-from-another-site")
    finally:
        pull_request.close()


def test_a_long_coloured_log_stays_usable(browser, ui_kilnd, api_for, big_log_run):
    api = api_for("alice")
    job = wait_job(api, big_log_run["job"])
    assert job["state"] == "passed", job
    browser.open_as(f"/ui/jobs/{job['id']}", "alice")
    start = time.monotonic()
    wait_for(lambda: int(browser.text(".log-count").split()[0].replace(",", "")) >= 100000, 120, "100,000 lines on the page")
    loaded_s = time.monotonic() - start
    # Only what is in view is in the DOM, and scrolling anywhere answers at once.
    assert len(browser.all(".log-line")) < 400
    timing = browser.driver.execute_script("""
        const log = document.querySelector('.log');
        const t0 = performance.now();
        for (const f of [0, 0.25, 0.5, 0.75, 1]) { log.scrollTop = f * log.scrollHeight; log.dispatchEvent(new Event('scroll')); }
        return performance.now() - t0;""")
    assert timing < 500, f"five jumps through the log took {timing} ms"
    browser.driver.execute_script("const l = document.querySelector('.log'); l.scrollTop = l.scrollHeight / 2; l.dispatchEvent(new Event('scroll'));")
    time.sleep(0.3)
    coloured = browser.all(".log-line .ansi-fg-2, .log-line .ansi-fg-3")
    assert coloured, "ANSI colours are rendered as classes"
    assert "\x1b" not in browser.text(".log")
    print(f"100,000 lines on the page in {loaded_s:.1f} s; five jumps through them in {timing:.0f} ms")
    browser.shot("1-100k-lines-middle")


MULTI_JOB = """\
jobs:
  lint:
    template: base
    steps:
      - name: lint
        run: echo lint
  test:
    template: base
    matrix:
      py: ["3.11", "3.12"]
    steps:
      - name: test
        run: echo "test $KILN_MATRIX_PY"
  deploy:
    template: base
    needs: [lint, test]
    steps:
      - name: deploy
        run: echo deploy
"""


def test_a_pipelines_jobs_are_a_graph_of_needs_and_grouped_chips(browser, ui_kilnd, api_for, tmp_path):
    api = api_for("alice")
    repo = tmp_path / "multi"
    pipeline = {"id": api.json("GET", f"/v1/jobs/{queue_kiln_yml(api, repo, MULTI_JOB)}")[1]["pipeline"]}

    def planned():
        status, p = api.json("GET", f"/v1/pipelines/{pipeline['id']}")
        assert status == 200, p
        assert not (p["state"] in FINAL and len(p["jobs"]) < 4), p
        return p if len(p["jobs"]) == 4 else None
    p = wait_for(planned, 120, "the pipeline's four jobs")
    names = {j["id"]: j["name"] for j in p["jobs"]}
    assert sorted(names.values()) == ["deploy", "lint", "test (3.11)", "test (3.12)"], names
    browser.open_as(f"/ui/pipelines/{p['id']}", "alice")
    browser.find("#needs-graph")
    nodes = browser.read(lambda: {a.get_attribute("data-job") for a in browser.all("#needs-graph a[data-job]")})
    assert nodes == set(names)
    assert len(browser.all("#needs-graph path.edge")) == sum(len(j["needs"]) for j in p["jobs"]) == 3
    browser.shot("1-graph")
    # The list groups a matrix job's combinations under its key.
    browser.open(f"/ui/pipelines?repo={repo}")
    row = f"#pipelines tr[data-id='{p['id']}']"
    browser.find(row)
    groups = browser.read(lambda: sorted((g.get_attribute("title"), len(g.find_elements("css selector", ".chip")))
                                         for g in browser.all(row + " .chip-group")))
    assert groups == [("deploy", 1), ("lint", 1), ("test", 2)], groups
    browser.shot("2-list-with-grouped-chips")
    status, ended = api.json("GET", f"/v1/pipelines/{p['id']}")
    if ended["state"] not in FINAL:
        api.json("POST", f"/v1/pipelines/{p['id']}/cancel")


SHARDED = """\
jobs:
  suite:
    template: base
    parallel: 2
    fork_after: prepare
    steps:
      - name: prepare
        run: echo prepared
      - name: test
        run: |
          mkdir -p out
          printf '<testsuite name="s"><testcase name="case-of-shard-%s"/></testsuite>' "$KILN_SHARD_INDEX" > out/junit.xml
    junit: [out/junit.xml]
"""


def test_a_sharded_jobs_steps_name_their_shard_and_its_tests_come_from_every_shard(browser, ui_kilnd, api_for,
                                                                                    tmp_path):
    api = api_for("alice")
    job_id = queue_kiln_yml(api, tmp_path / "sharded", SHARDED)
    job = wait_job(api, job_id)
    assert job["state"] == "passed" and job["junit"]["tests"] == 2, job
    browser.open_as(f"/ui/jobs/{job_id}", "alice")
    wait_for(lambda: len(browser.all("#test-cases tbody tr")) == 2, 30, "both shards' test cases")
    assert {"case-of-shard-0", "case-of-shard-1"} <= set(browser.text("#test-cases").split())
    headers = [th.text for th in browser.all("#steps thead th")]
    assert "Shard" in headers, headers
    shards = {r.find_elements("css selector", "td")[1].text for r in browser.all("#steps tbody tr")}
    assert {"–", "0", "1"} <= shards, shards  # prepare in the job's own VM, then each shard's steps
    browser.driver.execute_script("const l = document.querySelector('.log'); l.scrollTop = 0; l.dispatchEvent(new Event('scroll'));")
    wait_for(lambda: {t.text for t in browser.all(".log-shard")} >= {"s0", "s1"}, 10, "the log's lines to name their shard")
    browser.shot("1-sharded-job")


def test_every_page_draws_without_console_errors(browser, ui_kilnd, api_for, widget_run):
    api = api_for("alice")
    wait_job(api, widget_run["job"])
    sb = create_sandbox(api, "pages")
    try:
        browser.open_as("/ui/", "alice")
        pages = {
            "pipelines": ("/ui/", "#pipelines tr[data-id]"),
            "pipelines-filtered": ("/ui/pipelines?state=passed", "#pipelines"),
            "pipeline": (f"/ui/pipelines/{widget_run['pipeline']}", "#needs-graph"),
            "jobs": ("/ui/jobs", "#job-list"),
            "job": (f"/ui/jobs/{widget_run['job']}", "#test-cases"),
            "sandboxes": ("/ui/sandboxes", "#sandbox-list"),
            "templates": ("/ui/templates", "#template-list"),
            "charts": ("/ui/charts", "#chart-durations"),
        }
        for name, (path, css) in pages.items():
            browser.open(path)
            browser.find(css, 30)
            time.sleep(0.5)
            browser.shot(name)
        browser.open(f"/ui/pipelines/{widget_run['pipeline']}")
        browser.find("#needs-graph")
        assert len(browser.all("#needs-graph rect.node")) >= 1
        browser.open("/ui/charts")
        browser.find("#chart-creates", 30)
        browser.find("#chart-passfail", 30)
        browser.driver.set_window_size(390, 844)  # a phone
        browser.open(f"/ui/jobs/{widget_run['job']}")
        browser.find("#test-cases")
        browser.shot("job-on-a-phone")
    finally:
        api.call("DELETE", f"/v1/sandboxes/{sb}")

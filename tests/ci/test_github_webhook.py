"""POST /v1/ci/github against a real kilnd: payloads recorded by GitHub (npm package
@octokit/webhooks-examples, fetched and cached by scripts/fetch-webhook-examples.sh) with their
repository and commit fields pointed at a local test repository, signed by GitHub's own signing
code (@octokit/webhooks-methods, through webhook_signature.py), and a local HTTP server in place of api.github.com that records the commit statuses."""
from __future__ import annotations

import copy
import hashlib
import hmac
import http.client
import json
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from kilnd_fixture import Kilnd, serving, wait_until  # noqa: E402
from webhook_signature import github_signature  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SECRET = "webhook-secret-" + uuid.uuid4().hex
GH_TOKEN = "ghs_" + uuid.uuid4().hex
PUBLIC_URL = "http://kiln.test:7070"
# The value of the CI secret DEPLOY_KEY; built so that the pipeline's own text never contains it.
SECRET_VALUE = "kilnsecret-" + uuid.uuid4().hex
JOB_TIMEOUT = 900  # seconds: a job under TCG (bake the base template, clone, steps)


# --- the recorded payloads --------------------------------------------------------------------

@pytest.fixture(scope="module")
def examples() -> dict[str, list[dict]]:
    out = subprocess.run([str(REPO / "scripts" / "fetch-webhook-examples.sh")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip().splitlines()[-1])
    index = json.loads((folder / "index.json").read_text())
    return {entry["name"]: entry["examples"] for entry in index}


def example(examples, event: str, action: str | None = None, deleted: bool | None = None) -> dict:
    for payload in examples[event]:
        if action is not None and payload.get("action") != action:
            continue
        if deleted is not None and payload.get("deleted") != deleted:
            continue
        return copy.deepcopy(payload)
    raise LookupError(f"no recorded {event} {action or ''} payload")


# The repository the payloads name: ci_secrets_policy gives DEPLOY_KEY to it (docs/tenants-ci.md).
FULL_NAME = "kiln-test/Hello-World"


def point_at(payload: dict, repo: Path, sha: str, fork: bool = False) -> dict:
    """The recorded payload, with the repository and commit fields naming our local repository."""
    payload["repository"]["clone_url"] = str(repo)
    payload["repository"]["full_name"] = FULL_NAME
    if "pull_request" in payload:
        payload["pull_request"]["base"]["repo"]["full_name"] = FULL_NAME
        payload["pull_request"]["head"]["repo"]["full_name"] = FULL_NAME
        payload["pull_request"]["head"]["sha"] = sha
        if fork:
            head_repo = payload["pull_request"]["head"]["repo"]
            head_repo["fork"] = True
            head_repo["full_name"] = "mallory/" + head_repo["name"]
            head_repo["id"] = head_repo["id"] + 1000
            head_repo["clone_url"] = str(repo)
    else:
        payload["after"] = sha
    return payload


# --- a recording stand-in for api.github.com --------------------------------------------------

class StatusRecorder:
    def __init__(self):
        self.posts: list[dict] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with recorder.lock:
                    recorder.posts.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                           "body": json.loads(body)})
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"

    def for_sha(self, sha: str) -> list[dict]:
        with self.lock:
            return [p for p in self.posts if p["path"].endswith("/statuses/" + sha)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def statuses():
    recorder = StatusRecorder()
    yield recorder
    recorder.close()


# --- a local repository with two commits ------------------------------------------------------

PIPELINE_TRUSTED = """\
template: base
timeout_seconds: 600
secrets: [DEPLOY_KEY]
steps:
  - name: has the secret
    run: test -n "$DEPLOY_KEY"
"""

# Fails when the secret's value is anywhere the job can look: its environment, any process's
# environment, or a file. When the job has the secret (the trusted control) it also writes it to
# a file first, so that each of the three checks is seen to fire.
PIPELINE_UNTRUSTED = """\
template: base
timeout_seconds: 600
secrets: [DEPLOY_KEY]
steps:
  - name: network interfaces
    run: echo "interfaces:$(ls /sys/class/net | tr '\\n' ' ')"
  - name: sees no secret
    run: |
      p=kiln; p="${p}secret-"
      if [ -n "${DEPLOY_KEY:-}" ]; then printf '%s' "$DEPLOY_KEY" > /tmp/planted; fi
      found=0
      if env | grep -qF "$p"; then echo "secret in env"; found=1; fi
      if cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -qF "$p"; then echo "secret in a process env"; found=1; fi
      if grep -rlsF "$p" /etc /root /home /tmp /var /run /srv /opt /work "$PWD" 2>/dev/null; then echo "secret in a file"; found=1; fi
      test "$found" = 0
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                         env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
                              "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    return out.stdout.strip()


@pytest.fixture(scope="module")
def test_repo(tmp_path_factory) -> dict[str, object]:
    repo = tmp_path_factory.mktemp("gh") / "Hello-World"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "master")
    (repo / ".kiln.yml").write_text(PIPELINE_TRUSTED)
    git(repo, "add", ".kiln.yml")
    git(repo, "commit", "-q", "-m", "trusted pipeline")
    trusted = git(repo, "rev-parse", "HEAD")
    (repo / ".kiln.yml").write_text(PIPELINE_UNTRUSTED)
    git(repo, "commit", "-q", "-am", "fork pipeline")
    untrusted = git(repo, "rev-parse", "HEAD")
    return {"path": repo, "trusted": trusted, "untrusted": untrusted}


# --- kilnd --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gh_kilnd(statuses, tmp_path_factory, test_repo):
    policy = tmp_path_factory.mktemp("ci-policy") / "policy"
    policy.write_text(f"DEPLOY_KEY {FULL_NAME}\n")  # case does not matter
    policy.chmod(0o600)
    yield from serving({
        "KILN_CI_SECRETS_POLICY": str(policy),
        # Webhook jobs come only from ci_repos; the payloads name the local test repository.
        "KILN_CI_REPOS": str(test_repo["path"]),
        "KILN_GITHUB_WEBHOOK_SECRET": SECRET,
        "KILN_GITHUB_API_URL": statuses.api_url,
        "KILN_GITHUB_TOKEN": GH_TOKEN,
        "KILN_PUBLIC_URL": PUBLIC_URL,
        "KILN_CI_SECRET_DEPLOY_KEY": SECRET_VALUE,
        # Trusted jobs may reach out; a fork's pull request keeps the default, mode none (no NIC).
        "KILN_CI_NETWORK_TRUSTED": '{"mode":"open"}',
    }, "github", {"admin": "admin"})


def post_webhook(kilnd: Kilnd, event: str, payload, delivery: str | None = None, secret: str = SECRET,
                 signature: str | None = None) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": event, "User-Agent": "GitHub-Hookshot/test",
               "X-GitHub-Delivery": delivery or str(uuid.uuid4())}
    if signature is None:
        signature = github_signature(body, secret)
    if signature:
        headers["X-Hub-Signature-256"] = signature
    conn = http.client.HTTPConnection("127.0.0.1", kilnd.port, timeout=60)
    conn.request("POST", "/v1/ci/github", body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, (json.loads(data) if data else {})


def api_get(kilnd: Kilnd, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", kilnd.port, timeout=60)
    conn.request("GET", path, headers={"Authorization": f"Bearer {kilnd.tokens['admin']}"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, (json.loads(data) if data else {})


def jobs_for_delivery(kilnd: Kilnd, delivery: str) -> list[dict]:
    status, body = api_get(kilnd, "/v1/jobs")
    assert status == 200, body
    return [j for j in body["jobs"] if (j.get("labels") or {}).get("github_delivery") == delivery]


def wait_for_job(kilnd: Kilnd, job_id: str) -> dict:
    def finished():
        status, job = api_get(kilnd, f"/v1/jobs/{job_id}")
        assert status == 200, job
        return job if job["state"] not in ("queued", "running") else None
    job = wait_until(finished, JOB_TIMEOUT, interval=1)
    assert job, f"job {job_id} did not finish within {JOB_TIMEOUT} s:\n{kilnd.log_tail()}"
    return job


def job_log(kilnd: Kilnd, job_id: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", kilnd.port, timeout=60)
    conn.request("GET", f"/v1/jobs/{job_id}/logs", headers={"Authorization": f"Bearer {kilnd.tokens['admin']}"})
    resp = conn.getresponse()
    data = resp.read().decode(errors="replace")
    conn.close()
    return data


# --- the tests ----------------------------------------------------------------------------------

def test_a_bad_or_missing_signature_is_401(gh_kilnd, examples, test_repo):
    payload = point_at(example(examples, "push", deleted=False), test_repo["path"], test_repo["trusted"])
    body = json.dumps(payload).encode()
    good = github_signature(body, SECRET)
    # octokit signs only sha256: the old X-Hub-Signature header's sha1 scheme is made with hmac here.
    for signature in ["",                                                     # missing
                      "sha256=" + "0" * 64,                                   # wrong
                      github_signature(body, "other"),                        # another secret
                      "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest(),  # the old header's scheme
                      good[:-1],                                              # truncated
                      good.upper()]:                                          # "SHA256=": not the format
        delivery = str(uuid.uuid4())
        status, answer = post_webhook(gh_kilnd, "push", body, delivery=delivery, signature=signature)
        assert status == 401, (signature, answer)
        assert answer["error"]["code"] == "unauthorized"
    # The right signature over other bytes (one changed field) is refused too.
    tampered = json.dumps(dict(payload, after="f" * 40)).encode()
    status, answer = post_webhook(gh_kilnd, "push", tampered, signature=good)
    assert status == 401
    # Nothing reached the queue, and no status was posted.
    assert not [j for j in api_get(gh_kilnd, "/v1/jobs")[1]["jobs"] if j.get("source") == "github"]
    assert gh_kilnd.healthy()


def test_events_that_start_no_job(gh_kilnd, examples):
    status, answer = post_webhook(gh_kilnd, "ping", example(examples, "ping"))
    assert status == 200 and answer["reason"] == "pong"
    status, answer = post_webhook(gh_kilnd, "pull_request", example(examples, "pull_request", action="closed"))
    assert status == 202 and answer["accepted"] is False and "closed" in answer["reason"]
    status, answer = post_webhook(gh_kilnd, "push", example(examples, "push", deleted=True))
    assert status == 202 and answer["accepted"] is False
    status, answer = post_webhook(gh_kilnd, "issues", {"action": "opened"})
    assert status == 202 and "issues" in answer["reason"]
    status, answer = post_webhook(gh_kilnd, "push", b"{not json")
    assert status == 422 and answer["error"]["code"] == "invalid_argument"
    assert gh_kilnd.healthy()


def test_push_runs_once_with_secrets_and_posts_statuses(gh_kilnd, examples, test_repo, statuses):
    sha = test_repo["trusted"]
    payload = point_at(example(examples, "push", deleted=False), test_repo["path"], sha)
    delivery = str(uuid.uuid4())
    status, answer = post_webhook(gh_kilnd, "push", payload, delivery=delivery)
    assert status == 201, answer
    assert answer["trusted"] is True
    job_id = answer["job_id"]

    # GitHub redelivers (or someone replays the request): no second job.
    for _ in range(2):
        status, again = post_webhook(gh_kilnd, "push", payload, delivery=delivery)
        assert status == 200 and again["duplicate"] is True and again["job_id"] == job_id
    assert [j["id"] for j in jobs_for_delivery(gh_kilnd, delivery)] == [job_id]
    # A captured delivery replayed under a new X-GitHub-Delivery (the signature does not cover
    # it): the body's SHA-256 makes it the same delivery, so no new job either.
    replayed = str(uuid.uuid4())
    status, again = post_webhook(gh_kilnd, "push", payload, delivery=replayed)
    assert status == 200 and again["duplicate"] is True and again["job_id"] == job_id, again
    assert delivery in again["reason"], again
    assert jobs_for_delivery(gh_kilnd, replayed) == []

    job = wait_for_job(gh_kilnd, job_id)
    assert job["state"] == "passed", job_log(gh_kilnd, job_id)
    assert SECRET_VALUE not in job_log(gh_kilnd, job_id)  # masked

    # Two contexts: the pipeline's ("kiln", linking to it) and its one job's ("kiln/job": a file
    # with top-level steps is one job named "job"), each pending and then success.
    def final_posts():
        posts = statuses.for_sha(sha)
        pipeline_posts = [p for p in posts if p["body"]["context"] == "kiln"]
        return posts if pipeline_posts and pipeline_posts[-1]["body"]["state"] != "pending" else None
    posts = wait_until(final_posts, 30)
    assert posts, statuses.for_sha(sha)
    assert {p["body"]["context"] for p in posts} == {"kiln", "kiln/job"}, posts
    targets = {"kiln": f"{PUBLIC_URL}/ui/pipelines/{answer['pipeline_id']}", "kiln/job": f"{PUBLIC_URL}/ui/jobs/{job_id}"}
    for context, target in targets.items():
        states = [p["body"]["state"] for p in posts if p["body"]["context"] == context]
        assert states[0] == "pending" and states[-1] == "success", (context, states)
    for p in posts:
        assert p["path"] == f"/api/v3/repos/{payload['repository']['full_name']}/statuses/{sha}"
        assert p["auth"] == f"Bearer {GH_TOKEN}"
        assert p["body"]["target_url"] == targets[p["body"]["context"]], p
    # Even after the job ended, the same delivery makes nothing new.
    status, again = post_webhook(gh_kilnd, "push", payload, delivery=delivery)
    assert status == 200 and again["duplicate"] is True
    assert len(jobs_for_delivery(gh_kilnd, delivery)) == 1


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, theirs, ...), from /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found += children
        frontier += children
    return found


def environ(pid: int) -> bytes | None:
    """The process's environment (empty for a jailed QEMU), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None


def test_nothing_kilnd_spawns_inherits_its_secrets(gh_kilnd):
    """kilnd's own environment holds the webhook secret, the token and a CI secret (the deprecated
    way to give them); the QEMUs (a spare at least, once a job has run) and anything else it has
    started hold none of them, nor any KILN_ variable."""
    own = environ(gh_kilnd.pid) or b""
    assert SECRET.encode() in own and SECRET_VALUE.encode() in own  # the control: the check can fire
    children = wait_until(lambda: [p for p in descendants(gh_kilnd.pid) if environ(p) is not None], 120, interval=1)
    assert children, "kilnd has no child process to look at (no spare QEMU?)"
    for pid in children:
        env = environ(pid) or b""
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        for needle in (SECRET, GH_TOKEN, SECRET_VALUE):
            assert needle.encode() not in env, f"{cmd} (pid {pid}) has a secret in its environment"
        names = [e.split(b"=", 1)[0].decode(errors="replace") for e in env.split(b"\0") if e]
        assert not [n for n in names if n.startswith("KILN_")], f"{cmd} (pid {pid}): {names}"


def test_a_fork_pull_request_is_untrusted_and_sees_no_secrets(gh_kilnd, examples, test_repo, statuses):
    sha = test_repo["untrusted"]
    payload = point_at(example(examples, "pull_request", action="opened"), test_repo["path"], sha, fork=True)
    status, answer = post_webhook(gh_kilnd, "pull_request", payload)
    assert status == 201, answer
    assert answer["trusted"] is False
    job_id = answer["job_id"]
    status, job = api_get(gh_kilnd, f"/v1/jobs/{job_id}")
    assert status == 200
    assert job["trusted"] is False
    assert job["labels"]["network"] == "restricted"
    assert job["labels"]["github_pr"] == str(payload["pull_request"]["number"])

    job = wait_for_job(gh_kilnd, job_id)
    log = job_log(gh_kilnd, job_id)
    # The step fails if the secret is in the job's environment or any file it can read.
    assert job["state"] == "passed", log
    assert "secret in" not in log
    assert "interfaces:lo " in log and "eth0" not in log, log  # no NIC: nothing can leave the fork's VM
    posts = wait_until(lambda: (lambda p: p if p and p[-1]["body"]["state"] != "pending" else None)(
        statuses.for_sha(sha)), 30)
    assert posts and posts[-1]["body"]["state"] == "success", statuses.for_sha(sha)
    assert posts[0]["body"]["description"].endswith("(untrusted: no secrets)")


def test_the_no_secret_check_sees_a_secret_when_there_is_one(gh_kilnd, examples, test_repo):
    """The control for the fork test: the same pipeline, pushed (trusted), gets the secret and
    its check fails, so a pass of the fork's job means the secret really was absent."""
    payload = point_at(example(examples, "push", deleted=False), test_repo["path"], test_repo["untrusted"])
    status, answer = post_webhook(gh_kilnd, "push", payload)
    assert status == 201 and answer["trusted"] is True, answer
    job = wait_for_job(gh_kilnd, answer["job_id"])
    log = job_log(gh_kilnd, answer["job_id"])
    assert job["state"] == "failed", log
    assert "interfaces:eth0 lo " in log, log  # trusted: the configured open network
    assert "secret in env" in log
    assert "secret in a process env" in log
    assert "secret in a file" in log and "/tmp/planted" in log
    assert SECRET_VALUE not in log  # the log masks it even where the step printed it


def test_the_delivery_log_survives_a_restart(gh_kilnd, examples, test_repo):
    payload = point_at(example(examples, "pull_request", action="synchronize"), test_repo["path"],
                       test_repo["trusted"])
    delivery = str(uuid.uuid4())
    status, answer = post_webhook(gh_kilnd, "pull_request", payload, delivery=delivery)
    assert status == 201, answer
    gh_kilnd.restart()
    status, again = post_webhook(gh_kilnd, "pull_request", payload, delivery=delivery)
    assert status == 200 and again["duplicate"] is True and again["job_id"] == answer["job_id"]
    assert len(jobs_for_delivery(gh_kilnd, delivery)) == 1

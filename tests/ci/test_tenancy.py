"""What one repository's jobs may take from another's (docs/tenants-ci.md), against a real kilnd
and real VMs: secrets go only to trusted jobs of the repositories ci_secrets_policy names, in no
form readable in the log; two repositories with the same bake section get different bakes; a
pipeline cannot boot another repository's bake. A `git daemon` on loopback serves the repository
that a non-admin token queues (local paths need the admin scope)."""
from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "api"))
sys.path.insert(0, str(HERE))

from api_client import ApiClient  # noqa: E402
from kilnd_fixture import Kilnd, wait_until  # noqa: E402
from openapi_check import OpenApiSpec, SpecRecorder  # noqa: E402
from test_jobs import Repo, check, logs, output, submit, wait_job  # noqa: E402

X_SECRET = "x-secret-7Hq2+v/9kPz"  # '+' and '/' so that base64 and its URL-safe form differ
Y_SECRET = "y-secret-Lm4Rt8Ws1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Repositories x and y (local), z (served by git daemon), and a kilnd whose policy gives
    X_KEY to x and z, Y_KEY to y."""
    base = tmp_path_factory.mktemp("tenants")
    x, y = Repo(base / "x"), Repo(base / "y")
    served = base / "served"
    z = Repo(served / "z")
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}",
                               f"--base-path={served}", str(served)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secrets_dir = base / "secrets"
    secrets_dir.mkdir(mode=0o700)
    for name, value in {"X_KEY": X_SECRET, "Y_KEY": Y_SECRET, "UNSCOPED": "unscoped-secret-value"}.items():
        (secrets_dir / name).write_text(value + "\n")
        (secrets_dir / name).chmod(0o600)
    policy = base / "policy"
    policy.write_text(f"X_KEY {x.path} git://127.0.0.1:{port}/z\nY_KEY {y.path}\n")
    policy.chmod(0o600)
    instance = Kilnd(name="tenancy", extra_env={"KILN_CI_WORKERS": "2", "KILN_CI_SECRETS_DIR": str(secrets_dir),
                                                "KILN_CI_SECRETS_POLICY": str(policy),
                                                # bob (no admin) may queue jobs from z only
                                                "KILN_CI_REPOS": f"git://127.0.0.1:{port}/z"})
    try:
        instance.create_token("alice")                      # admin: local paths, trusted
        instance.create_token("bob", "ci:submit")           # untrusted jobs only
        instance.start()
        yield {"kilnd": instance, "x": x, "y": y, "z": z, "z_url": f"git://127.0.0.1:{port}/z"}
    finally:
        instance.cleanup()
        daemon.terminate()
        daemon.wait(10)


@pytest.fixture(scope="module")
def alice(world) -> ApiClient:
    return ApiClient(world["kilnd"].port, world["kilnd"].tokens["alice"], SpecRecorder(OpenApiSpec.load()))


def warnings(events: list[dict]) -> dict[str, str]:
    return {e["secret"]: e["message"] for e in events if e["type"] == "warning" and "secret" in e}


# Prints the secret as it is, in hex (both cases), in base64 (padded, URL-safe, unpadded) and
# base64 at the two other offsets a secret can have inside a longer text.
LEAK = """\
      printf 'plain %s\\n' "$X_KEY"
      printf %s "$X_KEY" | od -An -tx1 -v | tr -d ' \\n'; echo
      printf %s "$X_KEY" | od -An -tx1 -v | tr -d ' \\n' | tr a-f A-F; echo
      printf %s "$X_KEY" | base64 -w0; echo
      printf %s "$X_KEY" | base64 -w0 | tr '+/' '-_' | tr -d =; echo
      printf 'a%s!' "$X_KEY" | base64 -w0; echo
      printf 'ab%s!!' "$X_KEY" | base64 -w0; echo
      echo "y=[${Y_KEY:-}] unscoped=[${UNSCOPED:-}]"
"""


def pipeline(steps: str, secrets: str = "[X_KEY, Y_KEY, UNSCOPED]", template: str = "base", extra: str = "") -> str:
    return f"template: {template}\nsecrets: {secrets}\n{extra}steps:\n{steps}"


def encodings(value: str) -> list[str]:
    import base64
    raw = value.encode()
    return [raw.hex(), raw.hex().upper(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
            base64.b64encode(b"a" + raw + b"!").decode()[4:-4], base64.b64encode(b"ab" + raw + b"!!").decode()[4:-4]]


def test_a_trusted_job_gets_its_repositorys_secret_only_and_no_form_of_it_is_logged(alice, world):
    x: Repo = world["x"]
    sha = x.commit({".kiln.yml": pipeline("  - name: leak\n    run: |\n" + LEAK)})
    job = wait_job(alice, submit(alice, x, sha)["id"])
    events = logs(alice, job["id"])
    text = output(events)
    assert job["state"] == "passed", (job, text)
    assert "plain ***" in text, text                       # it had X_KEY...
    assert "y=[] unscoped=[]" in text, text                # ...and neither y's secret nor the unscoped one
    for leaked in [X_SECRET, *encodings(X_SECRET)]:
        assert leaked not in str(events), f"{leaked!r} reached the log:\n{text}"
    withheld = warnings(events)
    assert "Y_KEY" in withheld and str(x.path) in withheld["Y_KEY"], withheld
    assert "UNSCOPED" in withheld and "ci_secrets_policy" in withheld["UNSCOPED"], withheld
    assert Y_SECRET not in str(events) and "X_KEY" not in withheld


def test_y_gets_y_s_secret_and_not_x_s(alice, world):
    y: Repo = world["y"]
    sha = y.commit({".kiln.yml": pipeline(
        "  - name: check\n    run: |\n      test -z \"${X_KEY:-}\"\n      test \"$Y_KEY\" = '" + Y_SECRET + "'\n"
        "      echo \"y has ${#Y_KEY} chars\"\n")})
    job = wait_job(alice, submit(alice, y, sha)["id"])
    text = output(logs(alice, job["id"]))
    assert job["state"] == "passed", (job, text)
    assert f"y has {len(Y_SECRET)} chars" in text
    assert "X_KEY" in warnings(logs(alice, job["id"]))


def test_a_ci_submit_job_gets_no_secret_even_for_a_repository_the_secret_goes_to(world):
    kilnd, z = world["kilnd"], world["z"]
    bob = ApiClient(kilnd.port, kilnd.tokens["bob"], SpecRecorder(OpenApiSpec.load()))
    z.commit({".kiln.yml": pipeline("  - name: none\n    run: test -z \"${X_KEY:-}\" && echo no secret here\n")})
    r = check(bob.post("/v1/jobs", {"repo": world["z_url"], "ref": "main"}))
    assert r.status == 201, r
    assert r.json()["trusted"] is False
    job = wait_job(bob, r.json()["id"])
    events = logs(bob, job["id"])
    assert job["state"] == "passed", (job["error"], job, output(events))
    assert "no secret here" in output(events)
    assert "untrusted" in warnings(events)["X_KEY"], warnings(events)


BAKE = "bake:\n  key_files: [deps.lock]\n  run: mkdir -p /opt/deps && cp deps.lock /opt/deps/installed\n"


def bake_snapshot(kilnd: Kilnd, template_key: str) -> str:
    with sqlite3.connect(f"file:{kilnd.data_dir / 'kilnd.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT snapshot_id FROM ci_bake_cache WHERE key = ?", (template_key,)).fetchone()
    assert row, template_key
    return row[0]


def test_same_bake_section_different_repositories_different_bakes_and_no_borrowing(alice, world, tmp_path):
    kilnd = world["kilnd"]
    steps = "  - name: use\n    run: cat /opt/deps/installed\n"
    files = {".kiln.yml": pipeline(steps, secrets="[]", extra=BAKE), "deps.lock": "left-pad 1.0.0\n"}
    victim, copycat = Repo(tmp_path / "victim"), Repo(tmp_path / "copycat")
    jv = wait_job(alice, submit(alice, victim, victim.commit(files))["id"])
    jc = wait_job(alice, submit(alice, copycat, copycat.commit(files))["id"])
    assert jv["state"] == "passed" and jc["state"] == "passed", (jv, jc)
    assert jc["bake_hit"] is False, "the copy of another repository's bake section got that repository's bake"
    assert jv["template_key"] != jc["template_key"]

    # The victim's bake snapshot, named as the template of another repository: refused, clearly.
    snapshot = bake_snapshot(kilnd, jv["template_key"])
    borrow = copycat.commit({".kiln.yml": pipeline(steps, secrets="[]", template=snapshot)})
    jb = wait_job(alice, submit(alice, copycat, borrow)["id"])
    assert jb["state"] == "error" and jb["attempts"] == 1, jb
    assert "template:" in jb["error"] and "bake of this repository" in jb["error"], jb["error"]
    # An id that exists and one that does not get the same answer (no probing).
    missing = copycat.commit({".kiln.yml": pipeline(steps, secrets="[]", template="snap-000000000000")})
    jm = wait_job(alice, submit(alice, copycat, missing)["id"])
    assert jm["error"].replace("snap-000000000000", snapshot) == jb["error"], (jm["error"], jb["error"])
    # The victim may name its own bake.
    own = victim.commit({".kiln.yml": pipeline(steps, secrets="[]", template=snapshot)})
    jo = wait_job(alice, submit(alice, victim, own)["id"])
    assert jo["state"] == "passed" and "left-pad 1.0.0" in output(logs(alice, jo["id"])), jo
    assert "snap-" not in str(logs(alice, jo["id"])) and "snap-" not in jo["template_key"], jo


def test_kilnd_says_at_start_which_secrets_go_to_no_job(world):
    import json
    lines = [json.loads(line) for line in world["kilnd"].log_path.read_text().splitlines() if line.startswith("{")]
    unscoped = [entry.get("secret") for entry in lines if "secret goes to no job" in entry.get("msg", "")]
    assert unscoped == ["UNSCOPED"], unscoped
    assert not any("unscoped-secret-value" in json.dumps(entry) for entry in lines)

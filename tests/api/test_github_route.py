"""POST /v1/ci/github through the spec-checking client: the answers that need no job (401, 202,
200 ping, 503 without a secret). Jobs from webhooks are tested in tests/ci/test_github_webhook.py."""
from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from api_client import ApiClient
from kilnd_fixture import Kilnd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ci"))
from webhook_signature import github_signature  # noqa: E402  (signs with @octokit/webhooks-methods)

FIXTURES = Path(__file__).resolve().parents[1] / "ci" / "fixtures" / "github"
SECRET = "route-secret-" + uuid.uuid4().hex


def send(client: ApiClient, event: str, body: bytes, secret: str = SECRET, signature: str | None = None):
    if signature is None:
        signature = github_signature(body, secret)
    return client.request("POST", "/v1/ci/github", body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature})


def test_github_route(kilnd_factory, recorder, api_anon):
    ping = (FIXTURES / "ping.json").read_bytes()
    # The session's kilnd has no webhook secret: it accepts nothing.
    r = send(api_anon, "ping", ping)
    assert r.status == 503 and r.error_code == "unavailable", r
    assert not r.errors, r.errors

    instance = kilnd_factory({"KILN_GITHUB_WEBHOOK_SECRET": SECRET})
    client = ApiClient(instance.port, None, recorder)
    r = send(client, "ping", ping)
    assert r.status == 200 and r.json()["reason"] == "pong", r
    assert not r.errors, r.errors
    r = send(client, "pull_request", (FIXTURES / "pull_request.closed.json").read_bytes())
    assert r.status == 202 and r.json()["accepted"] is False, r
    r = send(client, "ping", ping, secret="wrong")
    assert r.status == 401 and r.error_code == "unauthorized", r
    r = send(client, "push", json.dumps({"after": 1}).encode())
    assert r.status == 422 and r.error_code == "invalid_argument", r
    assert not r.errors, r.errors
    # Over GitHub's own 25 MiB cap: refused before the signature is even computed.
    r = send(client, "push", b" " * (26 << 20), signature="sha256=" + "0" * 64)
    assert r.status == 413, r
    assert not r.errors, r.errors
    assert instance.healthy()


def test_the_webhook_secret_from_a_file_or_a_credential(kilnd_factory, recorder, tmp_path):
    """The secret as docs/kilnd.md recommends: a 0600 file (github_webhook_secret_file), or
    systemd's $CREDENTIALS_DIRECTORY; a file open to others stops kilnd at start with an error
    naming it, and the secret's value is nowhere in that error."""
    ping = (FIXTURES / "ping.json").read_bytes()
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    instance = kilnd_factory({"KILN_GITHUB_WEBHOOK_SECRET_FILE": str(secret_file)})
    client = ApiClient(instance.port, None, recorder)
    assert send(client, "ping", ping).status == 200
    assert send(client, "ping", ping, secret="wrong").status == 401
    assert SECRET not in instance.log_path.read_text()

    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "github_webhook_secret").write_text(SECRET)
    (credentials / "github_webhook_secret").chmod(0o400)
    instance = kilnd_factory({"CREDENTIALS_DIRECTORY": str(credentials)})
    client = ApiClient(instance.port, None, recorder)
    assert send(client, "ping", ping).status == 200

    secret_file.chmod(0o644)
    refused = Kilnd(extra_env={"KILN_GITHUB_WEBHOOK_SECRET_FILE": str(secret_file)}, name="test")
    try:
        with pytest.raises(RuntimeError) as started:
            refused.start(timeout=60)
        message = str(started.value)
        assert "kilnd exited" in message and str(secret_file) in message and "chmod 600" in message, message
        assert SECRET not in message
    finally:
        refused.cleanup()

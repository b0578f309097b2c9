"""POST /v1/ci/github through the spec-checking client: the answers that need no job (401, 202,
200 ping, 503 without a secret). Jobs from webhooks are tested in tests/ci/test_github_webhook.py."""
from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path

from api_client import ApiClient

FIXTURES = Path(__file__).resolve().parents[1] / "ci" / "fixtures" / "github"
SECRET = "route-secret-" + uuid.uuid4().hex


def send(client: ApiClient, event: str, body: bytes, secret: str = SECRET, signature: str | None = None):
    if signature is None:
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
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

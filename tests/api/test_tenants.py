"""Tenants (docs/tenants.md): scoped tokens, other tokens' objects as 404, calls outside a token's
scopes as 403, and per-token quotas as 429 naming the quota. Tokens are made with `kilnd token
create` beside the suite's running kilnd, as an operator would."""
from __future__ import annotations

import pytest

from api_client import ApiClient, query

# A job that is queued and then fails at its checkout (nothing listens on loopback port 9): enough
# for its record, log and artifacts routes to exist, with no network use beyond loopback.
UNREACHABLE_JOB = {"repo": "http://127.0.0.1:9/tenants.git", "sha": "a" * 40}


@pytest.fixture(scope="module")
def tokens(kilnd, recorder):
    """name -> ApiClient for tokens of several scopes (and a quota or two)."""
    made = {
        "submitter": ("ci:submit", ""),
        "other_submitter": ("ci:submit", ""),
        "reader": ("ci:read", ""),
        "trusted": ("ci:trusted", ""),
        "tenant": ("sandboxes", ""),
        "small": ("sandboxes", "sandboxes=1,lifetime_seconds=120,snapshots=0"),
        "no_jobs": ("ci:submit", "queued_jobs=0"),
    }
    return {name: ApiClient(kilnd.port, kilnd.create_token(f"tenants-{name}", scope, quota), recorder)
            for name, (scope, quota) in made.items()}


def _forbidden(r) -> None:
    assert r.status == 403 and r.error_code == "forbidden", r
    assert "scope" in r.json()["error"]["message"], r


def test_a_call_outside_the_tokens_scopes_is_403_naming_them(tokens, api_bob):
    reader, tenant = tokens["reader"], tokens["tenant"]
    _forbidden(reader.post("/v1/sandboxes", {"template": "tiny"}))
    _forbidden(reader.get("/v1/sandboxes"))
    _forbidden(reader.get("/v1/templates"))
    _forbidden(reader.post("/v1/jobs", UNREACHABLE_JOB))
    _forbidden(tenant.post("/v1/jobs", UNREACHABLE_JOB))
    _forbidden(tenant.get("/v1/jobs"))
    # Built-in templates are everyone's: only admin drops their bake.
    _forbidden(api_bob.delete("/v1/templates/tiny"))
    _forbidden(api_bob.get(query("/v1/sandboxes", owner="all")))
    # A tenant's allowlist reaches public addresses only (the host's private network is not its).
    r = api_bob.post("/v1/sandboxes", {"template": "tiny", "network": {"mode": "allowlist", "allow": ["10.0.0.0/8"]}})
    assert r.status == 403 and r.error_code == "forbidden" and "network.allow" in r.json()["error"]["message"], r
    # A local path is a folder on kilnd's host: admin only, whatever the CI scope.
    r = tokens["trusted"].post("/v1/jobs", {"repo": "/etc", "sha": "b" * 40})
    _forbidden(r)
    assert "repo" in r.json()["error"]["message"]


def test_get_token_says_who_the_caller_is_and_what_it_may_do(tokens, api):
    me = tokens["small"].get("/v1/token")
    assert me.status == 200, me
    body = me.json()
    assert body["scopes"] == ["sandboxes"]
    assert body["quota"]["sandboxes"] == 1 and body["quota"]["lifetime_seconds"] == 120
    assert body["quota"]["snapshots"] == 0
    assert body["usage"]["sandboxes"] == 0
    assert "token" not in body
    assert api.get("/v1/token").json()["scopes"] == ["admin"]


def test_another_tokens_job_is_404_but_ci_read_and_admin_see_it(tokens, api):
    r = tokens["submitter"].post("/v1/jobs", UNREACHABLE_JOB)
    assert r.status == 201, r
    job = r.json()
    assert job["trusted"] is False, "a ci:submit job is untrusted: it gets no secrets"
    jid = job["id"]
    other = tokens["other_submitter"]
    for r in (other.get(f"/v1/jobs/{jid}"), other.get(f"/v1/jobs/{jid}/logs?follow=false"),
              other.get(f"/v1/jobs/{jid}/artifacts"), other.get(f"/v1/jobs/{jid}/artifacts/x"),
              other.post(f"/v1/jobs/{jid}/cancel")):
        assert r.status == 404 and r.error_code == "not_found", r
    assert jid not in [j["id"] for j in other.get("/v1/jobs").json()["jobs"]]
    # ci:read reads every job but cancels none; admin does both.
    reader = tokens["reader"]
    assert reader.get(f"/v1/jobs/{jid}").status == 200
    assert jid in [j["id"] for j in reader.get("/v1/jobs").json()["jobs"]]
    r = reader.post(f"/v1/jobs/{jid}/cancel")
    assert r.status == 403 and r.error_code == "forbidden", r
    assert api.get(f"/v1/jobs/{jid}").status == 200
    # The owner sees its own.
    assert tokens["submitter"].get(f"/v1/jobs/{jid}").status == 200


def test_a_ci_trusted_job_is_trusted(tokens):
    r = tokens["trusted"].post("/v1/jobs", UNREACHABLE_JOB)
    assert r.status == 201, r
    assert r.json()["trusted"] is True


def test_admin_reaches_another_tokens_sandbox_a_tenant_does_not(tokens, api):
    tenant = tokens["tenant"]
    sb = tenant.create_sandbox()
    try:
        assert tokens["small"].get(f"/v1/sandboxes/{sb['id']}").status == 404
        assert api.get(f"/v1/sandboxes/{sb['id']}").status == 200
        listed = api.get(query("/v1/sandboxes", owner="all")).json()["sandboxes"]
        assert sb["id"] in [s["id"] for s in listed]
        assert sb["id"] not in [s["id"] for s in api.get("/v1/sandboxes").json()["sandboxes"]], \
            "admin's own list stays its own unless owner=all"
    finally:
        assert tenant.delete(f"/v1/sandboxes/{sb['id']}").status == 204


def _quota(r, name: str) -> None:
    assert r.status == 429 and r.error_code == "quota_exceeded", r
    assert f"token quota {name}" in r.json()["error"]["message"], r


def test_token_quotas_are_429_naming_the_quota(tokens):
    small = tokens["small"]
    sb = small.create_sandbox(ttl_seconds=60)
    try:
        _quota(small.post("/v1/sandboxes", {"template": "tiny"}), "sandboxes")
        # A TTL may be extended, but never past the token's lifetime cap from the creation.
        _quota(small.request("PATCH", f"/v1/sandboxes/{sb['id']}", json_body={"ttl_seconds": 3600}), "lifetime_seconds")
        ok = small.request("PATCH", f"/v1/sandboxes/{sb['id']}", json_body={"ttl_seconds": 90})
        assert ok.status == 200, ok
        _quota(small.post(f"/v1/sandboxes/{sb['id']}/snapshot", {}), "snapshots")
        assert small.get("/v1/token").json()["usage"]["sandboxes"] == 1
    finally:
        assert small.delete(f"/v1/sandboxes/{sb['id']}").status == 204
    # The slot is free again.
    again = small.create_sandbox(ttl_seconds=30)
    assert small.delete(f"/v1/sandboxes/{again['id']}").status == 204
    _quota(tokens["no_jobs"].post("/v1/jobs", UNREACHABLE_JOB), "queued_jobs")

"""/v1/hosts on the suite's kilnd (a fleet of one on SQLite): it lists itself, alive, with its
capacity and live sandboxes; every Sandbox names it as its host; a drain refuses new creates
(503) while a running sandbox keeps working, and undrain ends it; the routes are admin only; the
CLI and /metrics show the same. Several hosts on one store: tests/fleet."""
from __future__ import annotations

import re

import pytest

from test_cli import ok, run


@pytest.fixture
def self_host(api) -> dict:
    r = api.get("/v1/hosts")
    assert r.status == 200, r
    hosts = r.json()["hosts"]
    assert len(hosts) == 1, hosts
    return hosts[0]


def test_hosts_lists_this_kilnd_alive_with_its_load(api, kilnd, sandbox, self_host):
    h = self_host
    assert h["self"] is True and h["state"] == "alive" and h["draining"] is False, h
    assert h["url"] == f"http://127.0.0.1:{kilnd.port}", h  # advertise_url's default: http://<listen>
    assert h["capacity"]["max_sandboxes"] == 64 and h["capacity"]["vcpus"] >= 1, h
    assert h["live_sandboxes"] >= 1 and h["memory_mib_in_use"] >= sandbox["memory_mib"], h
    # Heartbeats every 2 s by default: never older than a few of them on a live host.
    assert 0 <= h["heartbeat_age_ms"] < 10_000, h
    # Every sandbox names its host, on create, get and list.
    assert sandbox["host"] == h["name"], sandbox
    assert api.get(f"/v1/sandboxes/{sandbox['id']}").json()["host"] == h["name"]
    listed = [s for s in api.get("/v1/sandboxes").json()["sandboxes"] if s["id"] == sandbox["id"]]
    assert listed and listed[0]["host"] == h["name"], listed


def test_drain_refuses_creates_and_lets_running_sandboxes_work(api, sandbox, self_host):
    name = self_host["name"]
    r = api.post(f"/v1/hosts/{name}/drain")
    try:
        assert r.status == 200, r
        assert r.json()["state"] == "draining" and r.json()["draining"] is True, r.json()
        refused = api.post("/v1/sandboxes", {"template": "tiny", "ttl_seconds": 60})
        assert refused.status == 503, refused
        assert refused.json()["error"]["code"] == "unavailable" and "draining" in refused.json()["error"]["message"]
        # Running work goes on.
        assert api.exec(sandbox["id"], "echo still-here")["stdout"] == "still-here\n"
        assert api.get("/v1/hosts").json()["hosts"][0]["state"] == "draining"
    finally:
        undone = api.post(f"/v1/hosts/{name}/undrain")
    assert undone.status == 200 and undone.json()["state"] == "alive", undone
    again = api.create_sandbox(ttl_seconds=60)
    assert again["host"] == name
    api.delete(f"/v1/sandboxes/{again['id']}")


def test_hosts_routes_are_admin_only_and_name_real_hosts(api, api_bob, api_anon, self_host):
    assert api_bob.get("/v1/hosts").status == 403
    assert api_bob.post(f"/v1/hosts/{self_host['name']}/drain").status == 403
    assert api_anon.get("/v1/hosts").status == 401
    assert api.post("/v1/hosts/no-such-host/drain").status == 404
    assert api.post("/v1/hosts/bad%20name/undrain").status == 404
    # Nothing changed by the refusals.
    assert api.get("/v1/hosts").json()["hosts"][0]["state"] == "alive"


def test_metrics_show_the_host_and_fleet_totals(api, self_host):
    text = api.get("/metrics").body.decode()
    name = re.escape(self_host["name"])
    assert re.search(rf'^kiln_host_up{{host="{name}",state="alive",self="true"}} 1$', text, re.M), text
    assert re.search(rf'^kiln_host_live_sandboxes{{host="{name}"}} \d+$', text, re.M), text
    assert re.search(r'^kiln_fleet_hosts{state="alive"} 1$', text, re.M), text
    assert re.search(r'^kiln_fleet_hosts{state="dead"} 0$', text, re.M), text


def test_cli_lists_drains_and_undrains(kilnd, self_host):
    token = kilnd.tokens["alice"]
    name = self_host["name"]
    listed = ok(run(["hosts"], url=kilnd.url, token=token))
    assert name in listed and "alive" in listed, listed
    assert "draining" in ok(run(["hosts", "drain", name], url=kilnd.url, token=token))
    try:
        assert "draining" in ok(run(["hosts", "list"], url=kilnd.url, token=token))
    finally:
        assert "alive" in ok(run(["hosts", "undrain", name], url=kilnd.url, token=token))
    missing = run(["hosts", "drain", "no-such-host"], url=kilnd.url, token=token)
    assert missing.returncode != 0 and b"no host" in missing.stderr, missing
    denied = run(["hosts"], url=kilnd.url, token=kilnd.tokens["bob"])
    assert denied.returncode != 0 and b"forbidden" in denied.stderr, denied

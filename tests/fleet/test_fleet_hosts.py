"""Hosts of a fleet on one store (docs/fleet.md), with real kilnd processes and real VMs:
- kill -9 of host B: B's live sandboxes become `lost` ("host lost") within host_timeout_seconds,
  recorded once, by A; /v1/hosts shows B dead; B restarted kills its orphan QEMU, sweeps its own
  leftovers and rejoins alive, and takes sandboxes again;
- two hosts on one machine run sandboxes with networks side by side, and a restart of one leaves
  the other's VMs, namespaces, nftables table and spare QEMUs alone."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

import pytest

from api_client import ApiClient
from openapi_check import OpenApiSpec, SpecRecorder
from fleet_hosts import Fleet, host_table
from kilnd_fixture import wait_until


@pytest.fixture
def recorder():
    """Every answer of these tests is checked against api/openapi.yaml too."""
    rec = SpecRecorder(OpenApiSpec.load())
    yield rec
    failures = rec.failures()
    assert not failures, [f"{r.method} {r.path} -> {r.status}: {r.errors}" for r in failures[:10]]


@pytest.fixture
def fleet(request):
    def pg_url() -> str:
        pg = request.getfixturevalue("pg")
        return pg.create_database(f"hosts_{os.getpid()}_{int(time.monotonic() * 1000) % 100000}")
    made = Fleet(pg_url, timeout_seconds=6)
    yield made
    made.cleanup()


def client(host, recorder) -> ApiClient:
    return ApiClient(host.port, host.tokens["alice"], recorder)


def hosts_by_name(api: ApiClient) -> dict[str, dict]:
    r = api.get("/v1/hosts")
    assert r.status == 200, r
    return {h["name"]: h for h in r.json()["hosts"]}


def create_on(apis: dict[str, ApiClient], name: str, **fields) -> dict:
    """A sandbox that placement must put on host `name` (any host places a create, preferring one
    that has run the template): made through `name` with every other host drained for the moment,
    each through its own API so that its flag is in force at once there too."""
    for other, api in apis.items():
        if other != name:
            assert api.post(f"/v1/hosts/{other}/drain", {}).status == 200
    try:
        made = apis[name].create_sandbox(**fields)
    finally:
        for other, api in apis.items():
            if other != name:
                assert api.post(f"/v1/hosts/{other}/undrain", {}).status == 200
    assert made["host"] == name, made
    return made


def sandbox_in_state(api: ApiClient, sandbox_id: str, state: str) -> dict | None:
    """The sandbox if it is in `state` now; None otherwise, or while its host does not answer (503
    naming it: the request is forwarded to the host running the sandbox), or while that host is
    frozen (the forwarded request waits on it)."""
    try:
        r = api.get(f"/v1/sandboxes/{sandbox_id}", timeout=3)
    except TimeoutError:
        return None
    if r.status == 503:
        return None
    assert r.status == 200, r
    return r.json() if r.json()["state"] == state else None


def kiln_netns() -> set[str]:
    return {n for n in os.listdir("/run/netns") if n.startswith("kiln-")} if os.path.isdir("/run/netns") else set()


def spare_netns(host) -> set[str]:
    """A host's spare networks: kiln-spare-<6 hex of SHA-256(its data dir)>-* (net/spare_networks.h)."""
    tag = hashlib.sha256(os.path.realpath(host.data_dir).encode()).hexdigest()[:6]
    return {n for n in kiln_netns() if n.startswith(f"kiln-spare-{tag}-")}


def nft_table(name: str) -> str:
    out = subprocess.run(["nft", "list", "table", "ip", name], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


def test_a_killed_host_loses_its_sandboxes_then_sweeps_and_rejoins(fleet, recorder):
    a = fleet.add("a", tokens=("alice",))
    b = fleet.add("b")
    b.tokens = a.tokens  # one store: the same tokens
    name_a, name_b = fleet.host_names
    api_a, api_b = client(a, recorder), client(b, recorder)
    hosts = hosts_by_name(api_a)
    assert hosts[name_a]["state"] == "alive" and hosts[name_b]["state"] == "alive", hosts
    assert hosts[name_a]["self"] and not hosts[name_b]["self"]

    apis = {name_a: api_a, name_b: api_b}
    on_b = create_on(apis, name_b, ttl_seconds=600)
    on_a = create_on(apis, name_a, ttl_seconds=600)
    assert hosts_by_name(api_a)[name_b]["live_sandboxes"] == 1
    b_qemus = b.qemu_pids()
    assert b_qemus, "B runs its sandbox's QEMU"

    b.kill9()
    killed_at = time.monotonic()
    # A (which never held B's VM) records it lost once B's heartbeat is older than the timeout.
    # Until then A forwards requests for it to B, which does not answer: 503 naming B.
    lost = wait_until(lambda: sandbox_in_state(api_a, on_b["id"], "lost"), fleet.timeout_seconds + 10, 0.2)
    elapsed = time.monotonic() - killed_at
    assert lost, api_a.get(f"/v1/sandboxes/{on_b['id']}").json()
    assert lost["error"] == "host lost" and lost["host"] == name_b, lost
    assert elapsed < fleet.timeout_seconds + 4, f"lost after {elapsed:.1f} s"
    assert hosts_by_name(api_a)[name_b]["state"] == "dead"
    assert hosts_by_name(api_a)[name_b]["live_sandboxes"] == 0
    # A's own sandbox is untouched and works.
    assert api_a.get(f"/v1/sandboxes/{on_a['id']}").json()["state"] == "running"
    assert api_a.exec(on_a["id"], "echo a")["stdout"] == "a\n"
    swept = [line for line in a.log_lines() if line.get("msg") == "sandbox lost with its host"]
    assert [line["sandbox"] for line in swept] == [on_b["id"]], swept
    # B's QEMU outlived its kilnd (nothing of A's touched it).
    assert b.qemu_pids() == b_qemus

    b.start()
    # B's reconcile killed its orphan QEMU and removed its run dir; the record stays as A wrote it.
    assert wait_until(lambda: not set(b_qemus) & set(b.qemu_pids()), 10), b.qemu_pids()
    assert on_b["id"] not in " ".join(b.run_dirs())
    again = api_b.get(f"/v1/sandboxes/{on_b['id']}").json()
    assert again["state"] == "lost" and again["error"] == "host lost", again
    hosts = hosts_by_name(api_a)
    assert hosts[name_b]["state"] == "alive", hosts
    fresh = create_on(apis, name_b, ttl_seconds=600)
    assert api_b.exec(fresh["id"], "echo b")["stdout"] == "b\n"
    # Nothing of A's was swept by B's start.
    assert api_a.exec(on_a["id"], "echo a")["stdout"] == "a\n"
    for sb, api in ((fresh, api_b), (on_a, api_a)):
        assert api.delete(f"/v1/sandboxes/{sb['id']}").status == 204


def test_two_hosts_on_one_machine_keep_apart_across_a_restart(fleet, recorder):
    a = fleet.add("a", tokens=("alice",))
    b = fleet.add("b")
    b.tokens = a.tokens
    api_a, api_b = client(a, recorder), client(b, recorder)
    apis = dict(zip(fleet.host_names, (api_a, api_b)))
    net_a = create_on(apis, fleet.host_names[0], ttl_seconds=600, network={"mode": "open"})
    net_b = create_on(apis, fleet.host_names[1], ttl_seconds=600, network={"mode": "open"})
    ns_a, ns_b = f"kiln-{net_a['id']}", f"kiln-{net_b['id']}"
    assert {ns_a, ns_b} <= kiln_netns()
    table_a = host_table(a.extra_env["KILN_NETWORK_POOL"])
    table_b = host_table(b.extra_env["KILN_NETWORK_POOL"])
    rules_a = nft_table(table_a)
    assert rules_a and nft_table(table_b), (table_a, table_b)
    a_qemus = a.qemu_pids()  # its sandbox's and its spares'
    a_spares = spare_netns(a)  # the networks of spares A made ahead for NIC creates

    # B crashes and comes back.
    b.kill9()
    b.start()
    # B swept its own: the sandbox is lost (its VM did not survive), its namespace is gone.
    gone = api_b.get(f"/v1/sandboxes/{net_b['id']}").json()
    assert gone["state"] == "lost" and "kilnd restarted" in gone["error"], gone
    assert ns_b not in kiln_netns()
    # A's VMs, namespace, nftables table and spares are as they were, and its sandbox works.
    assert a.qemu_pids() == a_qemus
    assert ns_a in kiln_netns()
    assert nft_table(table_a) == rules_a
    assert api_a.get(f"/v1/sandboxes/{net_a['id']}").json()["state"] == "running"
    assert api_a.exec(net_a["id"], "echo a")["stdout"] == "a\n"
    assert spare_netns(a) == a_spares
    # A graceful stop of B: B dead at once for A, A's sandbox still fine.
    b.stop()
    assert next(h for h in api_a.get("/v1/hosts").json()["hosts"] if h["name"] == fleet.host_names[1])["state"] == "dead"
    assert api_a.exec(net_a["id"], "echo still")["stdout"] == "still\n"
    assert api_a.delete(f"/v1/sandboxes/{net_a['id']}").status == 204


def test_a_host_cut_off_past_the_timeout_ends_the_vms_others_recorded_lost(fleet, recorder):
    """Fencing: B frozen (SIGSTOP: its heartbeats stop, its QEMU runs on) past the timeout is
    judged dead by A, which records B's sandbox lost; when B runs again its next beat finds that
    and kills the VM, so nothing runs that the fleet believes gone. B is alive again after."""
    a = fleet.add("a", tokens=("alice",))
    b = fleet.add("b", extra={"KILN_KEEP_SPARE": "false"})  # its one QEMU is then the sandbox's
    b.tokens = a.tokens
    api_a, api_b = client(a, recorder), client(b, recorder)
    on_b = create_on(dict(zip(fleet.host_names, (api_a, api_b))), fleet.host_names[1], ttl_seconds=600)
    qemu = set(b.qemu_pids())
    assert len(qemu) == 1, qemu
    os.kill(b.pid, signal.SIGSTOP)
    try:
        lost = wait_until(lambda: sandbox_in_state(api_a, on_b["id"], "lost"), fleet.timeout_seconds + 10, 0.2)
        assert lost
        assert set(b.qemu_pids()) == qemu, "a frozen kilnd's VMs run on"
    finally:
        os.kill(b.pid, signal.SIGCONT)
    # B's sandbox QEMU ends within a few beats.
    assert wait_until(lambda: any("sandbox fenced" in str(line.get("msg")) for line in b.log_lines()), 10), b.log_tail()
    assert wait_until(lambda: not set(b.qemu_pids()) & qemu, 10), (qemu, b.qemu_pids())
    assert next(h for h in api_a.get("/v1/hosts").json()["hosts"] if h["name"] == fleet.host_names[1])["state"] == "alive"
    assert api_b.get(f"/v1/sandboxes/{on_b['id']}").json()["error"] == "host lost"
    fresh = create_on(dict(zip(fleet.host_names, (api_a, api_b))), fleet.host_names[1], ttl_seconds=60)
    assert api_b.exec(fresh["id"], "echo back")["stdout"] == "back\n"
    api_b.delete(f"/v1/sandboxes/{fresh['id']}")

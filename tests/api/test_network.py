"""Per-sandbox networks through the API (docs/network.md): the policy field, what a guest can and
cannot reach (`open` only the public internet and what the operator adds), the per-sandbox
connection limit, forks and snapshots keeping the NIC, and nothing of a sandbox's network left after
a delete or after kill -9 of kilnd and a restart (counted). All traffic stays on this machine: the
servers live in a network namespace this file creates, with routes from the host to it only."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import re

import pytest

from api_client import ApiClient

SERVER_NS = f"kt-api-{os.getpid()}"
HOST_VETH = f"kta{os.getpid() % 100000}"
HOST_END, SERVER = "10.211.0.1", "10.211.0.2"
PORT_A, PORT_B, GIT_PORT, HOLD_PORT = 9418, 9419, 9420, 9421
# More addresses of the server (on its eth0, routed from the host over its veth), one per kind of
# non-public range `open` drops. The operator's list (this file's kilnd) names SERVER only.
NON_PUBLIC = ["10.211.1.2", "100.64.211.2", "172.16.211.2", "192.168.211.2", "198.18.211.2"]
DNS_RESOLVER = NON_PUBLIC[0]  # this file's kilnd forwards guests' DNS here (the server answers TCP 53)

# Answers each connection on PORT_A and PORT_B with "banner-<port>" and closes; on HOLD_PORT says
# "held" and keeps the connection until the client closes it. Runs inside SERVER_NS.
SERVER_CODE = r"""
import socket, sys, threading
def listener(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    return s
def serve(port):
    s = listener(port)
    while True:
        c, _ = s.accept()
        try: c.sendall(b"banner-%d\n" % port)
        finally: c.close()
def hold(c):
    try:
        c.sendall(b"held\n")
        while c.recv(4096): pass
    finally: c.close()
def serve_held(port):
    s = listener(port)
    while True: threading.Thread(target=hold, args=(s.accept()[0],), daemon=True).start()
hold_port, ports = int(sys.argv[1]), map(int, sys.argv[2:])
threading.Thread(target=serve_held, args=(hold_port,), daemon=True).start()
for p in ports: threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def kilnd(kilnd_factory):
    """This file's kilnd: the operator's network_open_allow names the server's first address (a
    private one, as a package mirror on an internal network would be), so `open` reaches it; the
    server's NON_PUBLIC addresses it does not name."""
    instance = kilnd_factory({"KILN_NETWORK_OPEN_ALLOW": SERVER, "KILN_NETWORK_DNS": DNS_RESOLVER}, name="net")
    yield instance
    instance.cleanup()


@pytest.fixture(scope="module")
def api(kilnd, recorder) -> ApiClient:
    return ApiClient(kilnd.port, kilnd.tokens["alice"], recorder)


@pytest.fixture(scope="module")
def server():
    """A namespace with listeners on SERVER:PORT_A and :PORT_B, behind a veth from the host."""
    sh(f"ip netns add {SERVER_NS}")
    proc = None
    try:
        sh(f"ip link add {HOST_VETH} type veth peer name eth0 netns {SERVER_NS} && ip addr add {HOST_END}/30 dev {HOST_VETH} "
           f"&& ip link set {HOST_VETH} up && ip -n {SERVER_NS} link set lo up && ip -n {SERVER_NS} addr add {SERVER}/30 dev eth0 "
           f"&& ip -n {SERVER_NS} link set eth0 up")
        for address in NON_PUBLIC:
            sh(f"ip -n {SERVER_NS} addr add {address}/32 dev eth0 && ip route add {address}/32 dev {HOST_VETH} src {HOST_END}")
        proc = subprocess.Popen(["ip", "netns", "exec", SERVER_NS, sys.executable, "-c", SERVER_CODE, str(HOLD_PORT),
                                 str(PORT_A), str(PORT_B), "53"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        if proc:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", HOST_VETH], capture_output=True)  # takes its routes with it
        subprocess.run(["ip", "netns", "del", SERVER_NS], capture_output=True)


@pytest.fixture(scope="module")
def host_listener():
    """A listener on every host address (0.0.0.0): no sandbox may reach it."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 0))
    s.listen(16)
    accepted = []

    def loop():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            accepted.append(1)
            c.sendall(b"host-banner\n")
            c.close()
    threading.Thread(target=loop, daemon=True).start()
    yield s.getsockname()[1], accepted
    s.close()


def connect(api: ApiClient, sandbox_id: str, address: str, port: int) -> str:
    """What busybox nc in the guest got from address:port ("" when nothing answered)."""
    r = api.exec(sandbox_id, f"nc -w 2 {address} {port} </dev/null 2>/dev/null; true", timeout_seconds=30)
    return r["stdout"]


def all_kiln_netns() -> set[str]:
    return {n for n in os.listdir("/run/netns") if n.startswith("kiln-")} if os.path.isdir("/run/netns") else set()


def veth_alias(name: str) -> str:
    try:
        with open(f"/sys/class/net/{name}/ifalias") as f:
            return f.read().strip()
    except OSError:
        return ""


def kiln_netns() -> set[str]:
    """Sandboxes' namespaces (and bake or snapshot helpers'), not spare QEMUs' networks made ahead."""
    return {n for n in all_kiln_netns() if not n.startswith("kiln-spare-")}


def kiln_veths() -> set[str]:
    """Host veths of sandboxes and helpers, not of spare networks (a veth being made may briefly
    have no alias yet)."""
    return {n for n in os.listdir("/sys/class/net") if n.startswith("kv-") and not veth_alias(n).startswith("kiln-sandbox-spare-")}


def spare_netns() -> set[str]:
    return {n for n in all_kiln_netns() if n.startswith("kiln-spare-")}


def wait_for_gone(names_now, leftover: set[str], timeout: float = 20) -> set[str]:
    """`leftover` minus what is gone within `timeout`: sandbox networks are removed in the
    background after a delete (the DELETE does not wait for the kernel)."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftover & names_now()
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def created_line(kilnd, sandbox_id: str) -> dict:
    """kilnd's "sandbox created" log line of one sandbox (its spare, network_ms and timings)."""
    lines = [line for line in kilnd.log_lines() if line.get("msg") == "sandbox created" and line.get("sandbox") == sandbox_id]
    assert len(lines) == 1, lines
    return lines[0]


def wait_until_true(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.1)


def make(api: ApiClient, network=None, **fields) -> dict:
    if network is not None:
        fields["network"] = network
    return api.create_sandbox(ttl_seconds=600, **fields)


def test_default_is_mode_none_without_a_nic(api):
    sb = make(api)
    try:
        assert sb["network"] == {"mode": "none"}
        assert api.exec(sb["id"], "ls /sys/class/net")["stdout"].split() == ["lo"]
        assert f"kiln-{sb['id']}" not in kiln_netns()
    finally:
        api.delete(f"/v1/sandboxes/{sb['id']}")


def test_open_reaches_outside_but_never_the_host(api, server, host_listener):
    port, accepted = host_listener
    sb = make(api, {"mode": "open"})
    try:
        assert sb["network"] == {"mode": "open"}
        assert f"kiln-{sb['id']}" in kiln_netns()
        out = api.exec(sb["id"], "ip -o -4 addr show eth0")["stdout"]
        assert "172.30.0.2/30" in out
        assert connect(api, sb["id"], SERVER, PORT_A).strip() == f"banner-{PORT_A}"
        # The host, on an address of the veth the server sits behind, and kilnd's own port.
        assert connect(api, sb["id"], HOST_END, port) == ""
        assert connect(api, sb["id"], HOST_END, api.port) == ""
        assert connect(api, sb["id"], "127.0.0.1", api.port) == ""
        assert accepted == []
    finally:
        api.delete(f"/v1/sandboxes/{sb['id']}")


def host_banner(address: str, port: int) -> str:
    """What the host itself (not a sandbox) gets from address:port: the control that the route and
    the listener work."""
    with socket.create_connection((address, port), timeout=5) as c:
        return c.makefile().readline().strip()


def drop_count(sandbox_id: str, rule_marker: str) -> int:
    """Packets the sandbox's forward-chain rule containing `rule_marker` has counted."""
    out = subprocess.run(["ip", "netns", "exec", f"kiln-{sandbox_id}", "nft", "list", "chain", "inet", "kiln", "forward"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    lines = [line for line in out.splitlines() if rule_marker in line and "counter packets" in line]
    assert len(lines) == 1, out
    return int(re.search(r"counter packets (\d+)", lines[0]).group(1))


NON_PUBLIC_RULE = "100.64.0.0/10"  # a range only open's non-public drop names


def network_state(sandbox_id: str) -> str:
    """The sandbox's forward chain (with its counters) and conntrack table, for a failure's message."""
    ns = f"kiln-{sandbox_id}"
    chain = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "kiln", "forward"],
                           capture_output=True, text=True, timeout=30).stdout
    tracked = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/nf_conntrack"],
                             capture_output=True, text=True, timeout=30).stdout
    return f"\n{chain}\nconntrack:\n{tracked}"


def test_open_reaches_no_non_public_address_the_operator_did_not_name(api, server):
    """`open` is the public internet: the server's private, shared and benchmarking addresses are
    dropped, although the host reaches each and an allowlist sandbox reaches each through the same
    path; its first private address is on the operator's list (network_open_allow) and answers."""
    for address in [SERVER, *NON_PUBLIC]:
        assert host_banner(address, PORT_A) == f"banner-{PORT_A}", address
    sb = make(api, {"mode": "open"})
    listed = make(api, {"mode": "allowlist", "allow": [f"{address}:{PORT_A}" for address in NON_PUBLIC]})
    try:
        assert connect(api, sb["id"], SERVER, PORT_A).strip() == f"banner-{PORT_A}"
        dropped = drop_count(sb["id"], NON_PUBLIC_RULE)
        for address in NON_PUBLIC:
            assert connect(api, sb["id"], address, PORT_A) == "", address
        assert drop_count(sb["id"], NON_PUBLIC_RULE) >= dropped + len(NON_PUBLIC), "not dropped by open's rule"
        for address in NON_PUBLIC:
            assert connect(api, listed["id"], address, PORT_A).strip() == f"banner-{PORT_A}", address
    finally:
        for made in (sb, listed):
            api.delete(f"/v1/sandboxes/{made['id']}")


def test_open_still_gets_dns_from_a_private_resolver(api, server):
    """This file's kilnd forwards guests' DNS to DNS_RESOLVER, a non-public address of the server not
    on the operator's list (as a VPC or office resolver is): asked at the gateway it answers (TCP 53
    here; UDP takes the same rule), asked directly it is dropped like any other such address."""
    sb = make(api, {"mode": "open"})
    try:
        assert connect(api, sb["id"], "172.30.0.1", 53).strip() == "banner-53"
        assert connect(api, sb["id"], DNS_RESOLVER, 53) == ""
    finally:
        api.delete(f"/v1/sandboxes/{sb['id']}")


LIMIT_CONNECTIONS, LIMIT_RATE, LIMIT_BURST = 4, 1, 3


@pytest.fixture(scope="module")
def limited_api(kilnd_factory, recorder):
    """A kilnd whose sandboxes may hold LIMIT_CONNECTIONS connections and open LIMIT_RATE new
    ones a second (LIMIT_BURST at once)."""
    instance = kilnd_factory({"KILN_NETWORK_OPEN_ALLOW": SERVER, "KILN_NETWORK_MAX_CONNECTIONS": str(LIMIT_CONNECTIONS),
                              "KILN_NETWORK_NEW_CONNECTIONS_PER_SECOND": str(LIMIT_RATE),
                              "KILN_NETWORK_NEW_CONNECTION_BURST": str(LIMIT_BURST)}, name="net-limits")
    yield ApiClient(instance.port, instance.tokens["alice"], recorder)
    instance.cleanup()


def test_a_sandbox_holds_at_most_network_max_connections(limited_api, server):
    """LIMIT_CONNECTIONS connections held open to the server: one more is dropped (by the ct count
    rule, its counter shows), and once they are closed the same connection goes through."""
    api = limited_api
    sb = make(api, {"mode": "open"})
    try:
        # Each nc is fed by a sleep, so it never sends EOF; every fd of the background jobs points
        # away from the exec's pipes, so the exec returns. Started one a second: the rate limit.
        hold = "; ".join(f"(sleep 300 </dev/null 2>/dev/null | nc {SERVER} {HOLD_PORT} >/tmp/held{i} 2>/dev/null & "
                         f"echo $! >>/tmp/holders; sleep 1)" for i in range(LIMIT_CONNECTIONS))
        wait = "for i in $(seq 1 300); do [ \"$(cat /tmp/held* | grep -c held)\" -ge %d ] && break; sleep 0.1; done" % LIMIT_CONNECTIONS
        out = api.exec(sb["id"], f"{hold}; {wait}; cat /tmp/held*", timeout_seconds=120)["stdout"]
        assert out == "held\n" * LIMIT_CONNECTIONS, out + network_state(sb["id"])
        time.sleep(LIMIT_BURST / LIMIT_RATE + 1)  # the rate limit's bucket full again: only the count can drop
        dropped = drop_count(sb["id"], "ct count over")
        assert connect(api, sb["id"], SERVER, PORT_A) == "", network_state(sb["id"])
        assert drop_count(sb["id"], "ct count over") > dropped, network_state(sb["id"])
        killed = api.exec(sb["id"], "kill $(cat /tmp/holders) && echo killed")
        assert killed["stdout"] == "killed\n", killed
        time.sleep(LIMIT_BURST / LIMIT_RATE + 1)
        assert connect(api, sb["id"], SERVER, PORT_A).strip() == f"banner-{PORT_A}", network_state(sb["id"])
    finally:
        api.delete(f"/v1/sandboxes/{sb['id']}")


def test_a_sandbox_opens_new_connections_no_faster_than_the_rate_limit(limited_api, server):
    """Twenty connections started at once (each closed by the server at once, so the count limit
    hardly matters): about LIMIT_BURST get through, plus LIMIT_RATE a second the attempts took;
    the rest are dropped by the rate rule (its counter shows)."""
    api = limited_api
    sb = make(api, {"mode": "open"})
    try:
        time.sleep(LIMIT_BURST / LIMIT_RATE + 1)
        dropped = drop_count(sb["id"], "limit rate over")
        script = ("read start _ </proc/uptime; for i in $(seq 1 20); do (nc -w 2 %s %d </dev/null >/tmp/c$i 2>/dev/null &); done; "
                  "sleep 3; read end _ </proc/uptime; echo $start $end; cat /tmp/c* | grep -c banner; true") % (SERVER, PORT_A)
        lines = api.exec(sb["id"], script, timeout_seconds=120)["stdout"].split("\n")
        start, end = map(float, lines[0].split())
        through = int(lines[1])
        print(f"{through} of 20 went through in {end - start:.1f} s")
        assert 1 <= through <= LIMIT_BURST + LIMIT_RATE * (end - start) + 1, through
        assert drop_count(sb["id"], "limit rate over") > dropped
    finally:
        api.delete(f"/v1/sandboxes/{sb['id']}")


def test_allowlist_reaches_only_what_it_lists(api, server):
    sb = make(api, {"mode": "allowlist", "allow": [f"{SERVER}:{PORT_A}"]})
    try:
        assert sb["network"] == {"mode": "allowlist", "allow": [f"{SERVER}:{PORT_A}"]}
        assert connect(api, sb["id"], SERVER, PORT_A).strip() == f"banner-{PORT_A}"
        assert connect(api, sb["id"], SERVER, PORT_B) == ""
    finally:
        api.delete(f"/v1/sandboxes/{sb['id']}")


def test_two_sandboxes_with_the_same_address_work_at_once(api, server):
    a = make(api, {"mode": "open"})
    b = make(api, {"mode": "open"})
    try:
        addr = [api.exec(sb["id"], "ip -o -4 addr show eth0")["stdout"].split()[3] for sb in (a, b)]
        assert addr == ["172.30.0.2/30", "172.30.0.2/30"]
        for sb in (a, b):
            assert connect(api, sb["id"], SERVER, PORT_A).strip() == f"banner-{PORT_A}"
    finally:
        for sb in (a, b):
            api.delete(f"/v1/sandboxes/{sb['id']}")


@pytest.mark.parametrize("policy, words", [
    ({"mode": "sometimes"}, "mode"),
    ({"mode": "open", "allow": ["10.0.0.0/8"]}, "allow"),
    ({"mode": "allowlist", "allow": ["example.com:443"]}, "host names"),
    ({"mode": "allowlist", "allow": ["10.0.0.1/8"]}, "host bits"),
    ({"mode": "allowlist", "allow": ["010.0.0.1"]}, "leading zero"),
    ({"mode": "allowlist", "allow": ["10.0.0.1:70000"]}, "port"),
    ({"mode": "allowlist", "allow": ["10.0.0.1"] * 65}, "64"),
    ({"mode": "open", "extra": 1}, "extra"),
    ("open", "object"),
])
def test_bad_policies_are_refused_with_a_reason(api, policy, words):
    r = api.post("/v1/sandboxes", {"template": "tiny", "network": policy})
    assert r.status == 422, r
    assert r.error_code == "invalid_argument"
    assert words in r.json()["error"]["message"], r.json()
    assert api.get("/healthz").status == 200


def test_fork_and_snapshot_keep_the_nic(api, server):
    parent = make(api, {"mode": "allowlist", "allow": [f"{SERVER}:{PORT_A}"]})
    made = [parent["id"]]
    try:
        child = api.post(f"/v1/sandboxes/{parent['id']}/fork", {}).json()
        made.append(child["id"])
        assert child["network"] == parent["network"]
        for sb in (parent, child):
            assert connect(api, sb["id"], SERVER, PORT_A).strip() == f"banner-{PORT_A}"
        snap = api.post(f"/v1/sandboxes/{parent['id']}/snapshot", {"name": "net"}).json()
        # From a snapshot with a NIC, mode none keeps the device and lets nothing out.
        quiet = make(api, template=snap["id"])
        made.append(quiet["id"])
        assert quiet["network"] == {"mode": "none"}
        assert "172.30.0.2/30" in api.exec(quiet["id"], "ip -o -4 addr show eth0")["stdout"]
        assert connect(api, quiet["id"], SERVER, PORT_A) == ""
        # A snapshot without a NIC cannot give one.
        plain = make(api)
        made.append(plain["id"])
        plain_snap = api.post(f"/v1/sandboxes/{plain['id']}/snapshot", {}).json()
        r = api.post("/v1/sandboxes", {"template": plain_snap["id"], "network": {"mode": "open"}})
        assert r.status == 422 and "without one" in r.json()["error"]["message"], r
    finally:
        for sid in made:
            api.delete(f"/v1/sandboxes/{sid}")


def test_delete_and_ttl_leave_no_network_behind(api):
    before_ns, before_veth = kiln_netns(), kiln_veths()
    a = make(api, {"mode": "open"})
    b = api.create_sandbox(ttl_seconds=3, network={"mode": "open"})
    assert {f"kiln-{a['id']}", f"kiln-{b['id']}"} <= kiln_netns()
    assert {f"kiln-sandbox-{a['id']}", f"kiln-sandbox-{b['id']}"} <= {veth_alias(v) for v in kiln_veths() - before_veth}
    api.delete(f"/v1/sandboxes/{a['id']}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and api.get(f"/v1/sandboxes/{b['id']}").json()["state"] != "expired":
        time.sleep(0.2)
    assert api.get(f"/v1/sandboxes/{b['id']}").json()["state"] == "expired"
    assert wait_for_gone(kiln_netns, kiln_netns() - before_ns) == set()
    assert wait_for_gone(kiln_veths, kiln_veths() - before_veth) == set()


def test_allowlist_creates_take_a_spare_whose_network_gets_their_own_policy(api, kilnd, server):
    """A create with an allowlist NIC takes the spare QEMU started ahead with its network (policy
    none until then); the network is renamed to the sandbox's and holds that sandbox's policy
    only: two creates in a row with different allowlists each reach their own port alone."""
    to_a = {"mode": "allowlist", "allow": [f"{SERVER}:{PORT_A}"]}
    to_b = {"mode": "allowlist", "allow": [f"{SERVER}:{PORT_B}"]}
    warm = make(api, to_a)  # bakes tiny+net if no test did, and starts its spare
    api.delete(f"/v1/sandboxes/{warm['id']}")
    made = []
    try:
        for policy in (to_a, to_b):
            # The spare's network exists before its QEMU starts: wait for one, then for its QEMU.
            assert wait_until_true(lambda: spare_netns(), 60), "no spare network was made"
            time.sleep(1)
            spares_before = spare_netns()
            sb = make(api, policy)
            made.append(sb)
            line = created_line(kilnd, sb["id"])
            assert line["spare"] is True, line
            assert line["nic"] is True and line["network"] == "allowlist", line
            # Its namespace and veth carry the sandbox's names now, not the spare's.
            assert f"kiln-{sb['id']}" in kiln_netns()
            assert spares_before - spare_netns(), "the spare's namespace was not taken over"
            assert any(veth_alias(v) == f"kiln-sandbox-{sb['id']}" for v in kiln_veths())
        a, b = made
        assert connect(api, a["id"], SERVER, PORT_A).strip() == f"banner-{PORT_A}"
        assert connect(api, a["id"], SERVER, PORT_B) == ""
        assert connect(api, b["id"], SERVER, PORT_B).strip() == f"banner-{PORT_B}"
        assert connect(api, b["id"], SERVER, PORT_A) == ""
        # The spare network waiting now lets nothing out of its namespace yet.
        assert wait_until_true(lambda: spare_netns(), 60)
        name = sorted(spare_netns())[0]
        rules = subprocess.run(["ip", "netns", "exec", name, "nft", "list", "chain", "inet", "kiln", "forward"],
                               capture_output=True, text=True, timeout=30)
        if rules.returncode == 0:  # it may have been taken or discarded meanwhile
            assert "accept" not in rules.stdout.replace("ct state established,related accept", ""), rules.stdout
    finally:
        for sb in made:
            api.delete(f"/v1/sandboxes/{sb['id']}")


def test_delete_with_a_nic_does_not_wait_for_its_network(api, kilnd):
    """The DELETE of a sandbox with a NIC kills the VM and marks the sandbox deleted; its
    namespace and veth are removed in the background shortly after (logged)."""
    sb = make(api, {"mode": "open"})
    ns = f"kiln-{sb['id']}"
    assert ns in kiln_netns()
    start = time.monotonic()
    r = api.delete(f"/v1/sandboxes/{sb['id']}")
    elapsed = time.monotonic() - start
    assert r.status == 204, r
    assert api.get(f"/v1/sandboxes/{sb['id']}").json()["state"] == "deleted"
    print(f"DELETE with a NIC: {elapsed * 1000:.1f} ms")
    assert wait_for_gone(kiln_netns, {ns}, 10) == set()
    assert wait_until_true(lambda: [line for line in kilnd.log_lines()
                                    if line.get("msg") == "sandbox network removed" and line.get("sandbox") == sb["id"]], 10)


def test_kill9_and_restart_leave_no_network_behind(kilnd_factory, recorder):
    instance = kilnd_factory({}, name="net-crash")
    api = ApiClient(instance.port, instance.tokens["alice"], recorder)
    before_ns, before_veth = kiln_netns(), kiln_veths()
    ids = [api.create_sandbox(ttl_seconds=600, network={"mode": "open"})["id"] for _ in range(3)]
    assert {f"kiln-{i}" for i in ids} <= kiln_netns()
    assert {f"kiln-sandbox-{i}" for i in ids} <= {veth_alias(v) for v in kiln_veths() - before_veth}
    # This kilnd's spare QEMU for tiny+net, with its network made ahead (named in its log).
    def spares_of_instance():
        made = {f"kiln-{line['network']}" for line in instance.log_lines() if line.get("msg") == "spare network made"}
        return made & spare_netns()
    spares = wait_until_true(spares_of_instance, 60)
    assert spares, "no spare network was made for the NIC template"
    time.sleep(1)  # its QEMU started too
    old_qemus = instance.qemu_pids()
    instance.kill9()
    instance.start()
    assert kiln_netns() - before_ns == set(), "namespaces left after the restart"
    assert kiln_veths() - before_veth == set(), "veths left after the restart"
    assert spare_netns() & spares == set(), "spare networks left after the restart"
    assert set(instance.qemu_pids()) & set(old_qemus) == set()  # the new kilnd's spare may run
    for i in ids:
        assert api.get(f"/v1/sandboxes/{i}").json()["state"] == "lost"
    swept = [line for line in instance.log_lines() if line.get("msg") == "reconciled"]
    assert swept and swept[-1]["netns_removed"] == 3 and swept[-1]["veths_removed"] == 3
    assert swept[-1]["spare_netns_removed"] == len(spares) and swept[-1]["spare_veths_removed"] == len(spares)


@pytest.fixture(scope="module")
def git_server(server, tmp_path_factory):
    """git daemon in the server namespace on SERVER:GIT_PORT, serving a repository with two commits.
    Yields (url, first_sha, head_sha)."""
    root = tmp_path_factory.mktemp("git")
    src = root / "src"
    src.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@k", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@k"}
    for cmd in (["git", "init", "-q"], ["sh", "-c", "echo one > f && git add f && git commit -qm one"],
                ["sh", "-c", "echo two > f && git commit -qam two"]):
        subprocess.run(cmd, cwd=src, env=env, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(root / "repo.git")], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(root / "repo.git"), "config", "uploadpack.allowAnySHA1InWant", "true"], check=True)
    first = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD~1"], check=True, capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    exec_path = subprocess.run(["git", "--exec-path"], check=True, capture_output=True, text=True).stdout.strip()
    # git-daemon itself (not `git daemon`, whose child would outlive a kill of git).
    proc = subprocess.Popen(["ip", "netns", "exec", SERVER_NS, f"{exec_path}/git-daemon", "--reuseaddr",
                             f"--listen={SERVER}", f"--port={GIT_PORT}", "--export-all", f"--base-path={root}", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10  # the host reaches SERVER over the veth: wait until it listens
    while True:
        try:
            socket.create_connection((SERVER, GIT_PORT), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "git-daemon did not start listening"
            time.sleep(0.1)
    yield f"git://{SERVER}:{GIT_PORT}/repo.git", first, head
    proc.kill()
    proc.wait()


def test_git_clone_by_exact_sha_through_the_allowlist(api, git_server):
    """A Debian `base` sandbox fetches one exact commit (not the branch tip) from a git server it is
    allowed to reach; a sandbox whose allowlist lacks the server cannot."""
    url, first, head = git_server
    allowed = make(api, {"mode": "allowlist", "allow": [f"{SERVER}:{GIT_PORT}"]}, template="base")
    refused = make(api, {"mode": "allowlist", "allow": [f"{SERVER}:{PORT_A}"]}, template="base")
    try:
        script = (f"cd /tmp && git init -q r && cd r && git fetch -q --depth 1 {url} {first} && "
                  "git checkout -q FETCH_HEAD && git rev-parse HEAD && cat f")
        out = api.exec(allowed["id"], script, timeout_seconds=120)
        assert out["exit_code"] == 0, out
        assert out["stdout"] == f"{first}\none\n" and first != head
        out = api.exec(refused["id"], f"timeout 10 git ls-remote {url}", timeout_seconds=60)
        assert out["exit_code"] != 0, out
    finally:
        for sb in (allowed, refused):
            api.delete(f"/v1/sandboxes/{sb['id']}")

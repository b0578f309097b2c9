"""Placement and forwarding across two real kilnd hosts on one store (docs/fleet.md): creates go to
a host with room, spreading; every operation on a sandbox sent to the host that does not run it
reaches the one that does (exec buffered and streamed, files, tars, PATCH, fork, snapshot, pause,
resume, delete),
with the caller's own visibility; forged fleet requests are refused; a dead owner is a 503 naming it."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import tarfile
import threading
import time

import pytest

from api_client import ApiClient, query
from fleet_fixture import Fleet, fleet_headers


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(request):
    """fleet-a holds one sandbox at most, so that a create through it has to go elsewhere. On each
    engine: one SQLite file the hosts share, and the suite's own PostgreSQL."""
    kw = {}
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg")
        kw = {"store_url": pg.create_database("fleet_forwarding"), "pg": pg, "database": "fleet_forwarding"}
    instance = Fleet([{"KILN_MAX_SANDBOXES": "1"}, {}], {"alice": "admin", "bob": "sandboxes"}, **kw)
    yield instance
    leftover = instance.cleanup()
    assert not leftover, f"a host left QEMU processes behind: {leftover}"


@pytest.fixture(scope="module")
def a(fleet, recorder) -> ApiClient:
    return ApiClient(fleet.hosts[0].port, fleet.tokens["alice"], recorder)


@pytest.fixture(scope="module")
def b(fleet, recorder) -> ApiClient:
    return ApiClient(fleet.hosts[1].port, fleet.tokens["alice"], recorder)


def create(client: ApiClient, **fields) -> dict:
    fields.setdefault("template", "tiny")
    fields.setdefault("ttl_seconds", 900)
    r = client.post("/v1/sandboxes", fields, timeout=600)
    assert r.status == 201, r
    return r.json()


def test_creates_spread_and_go_elsewhere_when_a_host_is_full(a, b):
    first = create(a)
    assert first["host"] == "fleet-a", first  # both empty: the tie goes by name
    second = create(a)
    assert second["host"] == "fleet-b", f"fleet-a is full (max_sandboxes=1): {second}"
    third = create(b)
    assert third["host"] == "fleet-b", third
    # Every host sees every record, and forwards what it does not run.
    r = b.get(f"/v1/sandboxes/{first['id']}")
    assert r.status == 200 and r.json()["host"] == "fleet-a" and r.headers.get("x-kiln-host") == "fleet-a", r
    assert a.delete(f"/v1/sandboxes/{third['id']}").status == 204
    # fleet-a is free again and has fewer sandboxes than fleet-b: the next create goes there.
    assert b.delete(f"/v1/sandboxes/{first['id']}").status == 204
    fourth = create(b)
    assert fourth["host"] == "fleet-a", fourth
    assert a.delete(f"/v1/sandboxes/{fourth['id']}").status == 204
    assert b.delete(f"/v1/sandboxes/{second['id']}").status == 204
    for sid in (first["id"], second["id"], third["id"], fourth["id"]):
        r = a.get(f"/v1/sandboxes/{sid}")
        assert r.status == 200 and r.json()["state"] == "deleted", r


def make_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_every_operation_through_a_reaches_the_sandbox_on_b(fleet, a, b, recorder):
    holder = create(a)  # fills fleet-a
    sandbox = create(a)
    sid = sandbox["id"]
    assert sandbox["host"] == "fleet-b", sandbox

    # exec, buffered, with stdin
    r = a.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "cat; hostname >/dev/null; echo done", "stdin": "from a\n"})
    assert r.status == 200 and r.json()["stdout"] == "from a\ndone\n" and r.json()["exit_code"] == 0, r
    assert r.headers.get("x-kiln-host") == "fleet-b", r

    # exec, streamed (NDJSON): events arrive through A as B sends them, not at the end
    arrivals = []
    start = time.monotonic()
    for line in a.stream_lines("POST", f"/v1/sandboxes/{sid}/exec", {"cmd": "for i in 1 2 3; do echo $i; sleep 1; done"},
                               "application/x-ndjson"):
        if line.strip():
            arrivals.append((time.monotonic() - start, json.loads(line)))
    kinds = [ev["type"] for _, ev in arrivals]
    assert kinds[0] == "start" and kinds[-1] == "exit", kinds
    assert "".join(ev.get("data", "") for _, ev in arrivals if ev["type"] == "stdout") == "1\n2\n3\n"
    first_out = next(t for t, ev in arrivals if ev["type"] == "stdout")
    assert arrivals[-1][0] - first_out >= 1.5, f"the forwarded stream was buffered: {arrivals}"

    # exec, streamed (SSE)
    r = a.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "echo out; echo err >&2; exit 3"},
               headers={"Accept": "text/event-stream"})
    assert r.status == 200 and r.content_type.startswith("text/event-stream"), r
    events = r.sse()
    assert events[-1][0] == "exit" and events[-1][1]["exit_code"] == 3, events

    # files: a body larger than what a forward answers whole (1 MiB) streams through both ways
    blob = os.urandom(3 << 20)
    r = a.request("PUT", query(f"/v1/sandboxes/{sid}/files", path="/work/blob.bin"), blob,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200 and r.json()["size"] == len(blob), r
    r = a.get(query(f"/v1/sandboxes/{sid}/files", path="/work/blob.bin"))
    assert r.status == 200 and r.body == blob, (r.status, len(r.body))
    r = a.get(query(f"/v1/sandboxes/{sid}/files/stat", path="/work/nothing"))
    assert r.status == 404 and r.error_code == "not_found", r

    # tar up and down
    r = a.request("POST", query(f"/v1/sandboxes/{sid}/files/tar", path="/work/up"),
                  make_tar({"p/one.txt": b"one\n", "p/two.txt": b"two\n"}), headers={"Content-Type": "application/x-tar"})
    assert r.status == 200, r
    r = a.get(query(f"/v1/sandboxes/{sid}/files/tar", path="/work/up"))
    assert r.status == 200, r
    with tarfile.open(fileobj=io.BytesIO(r.body)) as down:
        names = {m.name.lstrip("./") for m in down.getmembers()}
    assert any(n.endswith("p/two.txt") for n in names), names

    # PATCH
    r = a.request("PATCH", f"/v1/sandboxes/{sid}", json_body={"ttl_seconds": 1200})
    assert r.status == 200 and r.json()["host"] == "fleet-b", r

    # another token sees nothing of alice's through either host (visibility is the owner's rule)
    bob = a.with_token(fleet.tokens["bob"])
    r = bob.get(f"/v1/sandboxes/{sid}")
    assert r.status == 404, r
    r = bob.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "true"})
    assert r.status == 404, r

    # fork: stays on its parent's host
    r = a.post(f"/v1/sandboxes/{sid}/fork", {"ttl_seconds": 600}, timeout=600)
    assert r.status == 201, r
    child = r.json()
    assert child["host"] == "fleet-b" and child["parent_id"] == sid, child
    r = a.post(f"/v1/sandboxes/{child['id']}/exec", {"cmd": "cat /work/up/p/one.txt"})
    assert r.status == 200 and r.json()["stdout"] == "one\n", r

    # snapshot: held by fleet-b; a create from it through A lands there (only its holders can restore it)
    r = a.post(f"/v1/sandboxes/{sid}/snapshot", {"name": "fleet"}, timeout=600)
    assert r.status == 201, r
    snap = r.json()
    assert snap.get("hosts") == ["fleet-b"], snap
    restored = create(a, template=snap["id"])
    assert restored["host"] == "fleet-b", restored
    r = a.post(f"/v1/sandboxes/{restored['id']}/exec", {"cmd": "cat /work/up/p/two.txt"})
    assert r.status == 200 and r.json()["stdout"] == "two\n", r

    # pause and resume through A: done on B, whose disk holds the paused snapshot (docs/pause.md)
    r = a.post(f"/v1/sandboxes/{sid}/pause", timeout=600)
    assert r.status == 200 and r.json()["state"] == "paused" and r.headers.get("x-kiln-host") == "fleet-b", r
    assert (fleet.hosts[1].data_dir / "paused" / sid).is_dir()
    assert not (fleet.hosts[0].data_dir / "paused" / sid).exists()
    r = a.get(f"/v1/sandboxes/{sid}")
    assert r.status == 200 and r.json()["state"] == "paused", r
    r = a.post(f"/v1/sandboxes/{sid}/resume", {"ttl_seconds": 600}, timeout=600)
    assert r.status == 200 and r.json()["state"] == "running" and r.json()["host"] == "fleet-b", r
    r = a.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "cat /work/up/p/one.txt"})
    assert r.status == 200 and r.json()["stdout"] == "one\n", r

    # delete through A, each on B
    for s in (restored["id"], child["id"], sid, holder["id"]):
        r = a.delete(f"/v1/sandboxes/{s}")
        assert r.status == 204, r
        r = b.get(f"/v1/sandboxes/{s}")
        assert r.status == 200 and r.json()["state"] == "deleted", r
    # a snapshot's delete goes to the host holding its files
    r = a.delete(f"/v1/snapshots/{snap['id']}")
    assert r.status == 204 and r.headers.get("x-kiln-host") == "fleet-b", r


def token_id(client: ApiClient) -> int:
    r = client.get("/v1/token")
    assert r.status == 200, r
    return r.json()["id"]


def refusals(host) -> list[dict]:
    return [line for line in host.log_lines() if line.get("msg") == "fleet request refused"]


def test_forged_fleet_requests_are_refused_and_logged(fleet, a, b):
    alice_id = token_id(a)
    anon = b.with_token(None)
    target = "/v1/sandboxes"
    # The right shape, the wrong secret: posing as another host, acting as alice (an admin).
    r = anon.get(target, headers=fleet_headers("GET", target, alice_id, secret="guessed"))
    assert r.status == 401 and r.error_code == "unauthorized", r
    # The right secret but stale (a replay), another target than signed, and a header missing.
    r = anon.get(target, headers=fleet_headers("GET", target, alice_id, time_ms=int(time.time() * 1000) - 120_000))
    assert r.status == 401, r
    r = anon.get(target + "?all=true", headers=fleet_headers("GET", target, alice_id))
    assert r.status == 401, r
    partial = fleet_headers("GET", target, alice_id)
    del partial["X-Kiln-Fleet-Signature"]
    r = anon.get(target, headers=partial)
    assert r.status == 401, r
    # Any fleet header on any route is checked, even one without a token.
    r = anon.get("/healthz", headers={"X-Kiln-Fleet-Token": "1"})
    assert r.status == 401, r
    # A fleet header does not ride along a valid bearer token either.
    r = b.get(target, headers={"X-Kiln-Fleet-Token": str(alice_id)})
    assert r.status == 401, r
    logged = refusals(fleet.hosts[1])
    assert len(logged) >= 5, logged
    assert any("bad signature" in line.get("reason", "") for line in logged), logged
    assert any("clock window" in line.get("reason", "") for line in logged), logged
    # A signed request whose body was swapped on the way: refused once the body is read.
    sandboxes = anon.post(target, {"template": "tiny", "ttl_seconds": 60},
                          headers=fleet_headers("POST", target, alice_id, body=b'{"template":"tiny"}'))
    assert sandboxes.status == 401 and "body" in sandboxes.json()["error"]["message"], sandboxes
    # A correctly signed request for a sandbox the receiver does not run is not forwarded again.
    elsewhere = create(a)
    assert elsewhere["host"] == "fleet-a", elsewhere
    path = f"/v1/sandboxes/{elsewhere['id']}"
    r = anon.get(path, headers=fleet_headers("GET", path, alice_id))
    assert r.status == 503 and "belongs to host fleet-a" in r.json()["error"]["message"], r
    assert a.delete(path).status == 204
    # And the one that is right (what hosts send each other) works, acting as the token it names.
    r = anon.get(target, headers=fleet_headers("GET", target, alice_id))
    assert r.status == 200, r


class HostileHolder:
    """A fake fleet host serving a snapshot's real files with one byte flipped in some of them,
    while announcing the real files' SHA-256 (X-Kiln-Sha256)."""

    def __init__(self, files_dir, flip_offset_in: dict[str, int]):
        self.served: list[str] = []
        holder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                data = bytearray((files_dir / name).read_bytes())
                digest = hashlib.sha256(data).hexdigest()
                if name in flip_offset_in:
                    data[flip_offset_in[name]] ^= 0xFF
                holder.served.append(name)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Kiln-Sha256", digest)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_snapshot_whose_host_is_draining_is_copied_verified_and_run_elsewhere(fleet, a, b):
    holder = create(a)  # fills fleet-a
    sandbox = create(a)
    assert sandbox["host"] == "fleet-b", sandbox
    r = a.post(f"/v1/sandboxes/{sandbox['id']}/exec", {"cmd": "echo copied-state > /work/mark"})
    assert r.status == 200 and r.json()["exit_code"] == 0, r
    r = a.post(f"/v1/sandboxes/{sandbox['id']}/snapshot", {"name": "to-copy"}, timeout=600)
    assert r.status == 201, r
    snap = r.json()
    assert snap["hosts"] == ["fleet-b"], snap
    for s in (sandbox["id"], holder["id"]):
        assert a.delete(f"/v1/sandboxes/{s}").status == 204
    a_copy = fleet.hosts[0].data_dir / "snapshots" / snap["id"]
    b_files = fleet.hosts[1].data_dir / "snapshots" / snap["id"]
    assert not a_copy.exists() and (b_files / "memory").is_file()

    r = a.post("/v1/hosts/fleet-b/drain", {})
    assert r.status == 200, r
    try:
        # Through the draining holder itself: placed on fleet-a, which copies the snapshot first.
        restored = create(b, template=snap["id"])
        assert restored["host"] == "fleet-a", restored
        r = b.post(f"/v1/sandboxes/{restored['id']}/exec", {"cmd": "cat /work/mark"})
        assert r.status == 200 and r.json()["stdout"] == "copied-state\n", r
        r = a.get(f"/v1/snapshots/{snap['id']}")
        assert r.status == 200 and r.json()["hosts"] == ["fleet-b", "fleet-a"], r
        assert sorted(p.name for p in a_copy.iterdir()) == sorted(p.name for p in b_files.iterdir())
        assert not a_copy.with_name(a_copy.name + ".partial").exists()
        # The memory file came over as sparse as it was (zeros are holes, not written blocks).
        assert (a_copy / "memory").stat().st_blocks * 512 <= (b_files / "memory").stat().st_blocks * 512 + (8 << 20)
        assert any(line.get("msg") == "snapshot copied" for line in fleet.hosts[0].log_lines())
        assert a.delete(f"/v1/sandboxes/{restored['id']}").status == 204

        # A holder that sends other bytes than it vouches for (a hostile or broken host): the copy
        # is refused as damaged, and nothing of it is left.
        shutil.rmtree(a_copy)
        with HostileHolder(b_files, flip_offset_in={"memory": 4096}) as liar:
            # No API registers a host but the host itself: this one is written into the store,
            # heartbeating in the future so that it stays alive for the whole create.
            fleet.store_sql("INSERT INTO hosts (name, advertise_url, max_sandboxes, vcpus, max_memory_mib, accel, version, "
                            f"started_at_ms, heartbeat_at_ms) VALUES ('fleet-x', '{liar.url}', 0, 1, 0, 'tcg', 'liar', 0, "
                            f"{int(time.time() * 1000) + 600_000})")
            fleet.store_sql(f"UPDATE snapshots SET hosts_json = '[\"fleet-x\"]' WHERE id = '{snap['id']}'")
            try:
                r = b.post("/v1/sandboxes", {"template": snap["id"], "ttl_seconds": 600}, timeout=600)
            finally:
                fleet.store_sql(f"UPDATE snapshots SET hosts_json = '[\"fleet-b\"]' WHERE id = '{snap['id']}'")
                fleet.store_sql("DELETE FROM hosts WHERE name = 'fleet-x'")
            assert liar.served, "the copy never asked the holder"
        message = r.json()["error"]["message"]
        assert r.status == 503 and "damaged" in message and "memory" in message and "SHA-256" in message, r
        assert not a_copy.exists() and not a_copy.with_name(a_copy.name + ".partial").exists()
    finally:
        # Through fleet-b itself: its own flag is off at once (a flag set through another host
        # reaches it with its next heartbeat, and the next test creates on it straight away).
        r = b.post("/v1/hosts/fleet-b/undrain", {})
        assert r.status == 200, r
    assert a.delete(f"/v1/snapshots/{snap['id']}").status == 204


def test_a_dead_owner_is_a_503_naming_it(fleet, a, b):
    holder = create(a)
    sandbox = create(a)
    assert sandbox["host"] == "fleet-b", sandbox
    fleet.hosts[1].kill9()
    try:
        r = a.get(f"/v1/sandboxes/{sandbox['id']}", timeout=30)
        assert r.status == 503 and "fleet-b" in r.json()["error"]["message"], r
        r = a.post(f"/v1/sandboxes/{sandbox['id']}/exec", {"cmd": "true"}, timeout=30)
        assert r.status == 503 and "fleet-b" in r.json()["error"]["message"], r
    finally:
        # B comes back, reconciles its own records (its VMs died with it) and nobody else's.
        fleet.hosts[1].start()
    r = a.get(f"/v1/sandboxes/{sandbox['id']}")
    assert r.status == 200 and r.json()["state"] == "lost", r
    r = a.get(f"/v1/sandboxes/{holder['id']}")
    assert r.status == 200 and r.json()["state"] == "running", r
    assert a.delete(f"/v1/sandboxes/{holder['id']}").status == 204

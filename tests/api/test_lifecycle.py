"""The full sandbox lifecycle over HTTP against a real kilnd with real VMs: create, get, list with a
metadata filter, exec (buffered, NDJSON, SSE), files, tarballs, snapshot, create from the
snapshot, fork, TTL change, delete, and what a finished sandbox answers."""
from __future__ import annotations

import io
import json
import re
import secrets
import tarfile
import time
from datetime import datetime, timezone

from api_client import query

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def make_tar(files: dict[str, bytes], symlinks: dict[str, str] = None, gzip: bool = False,
             dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w") as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def test_healthz_and_metrics(api, api_anon):
    r = api_anon.get("/healthz")
    assert r.status == 200 and r.json()["status"] == "ok", r
    r = api.get("/metrics")
    assert r.status == 200, r
    text = r.body.decode()
    for name in ("kiln_sandbox_create_seconds", "kiln_sandboxes", "kiln_exec_total", "kiln_restore_failures_total",
                 "kiln_accel_info"):
        assert name in text, f"{name} missing from /metrics"


def test_full_lifecycle(api, kilnd):
    tag = secrets.token_hex(4)
    meta = {"repo": f"acme/widget-{tag}", "sha": "a1b2c3d4", "kind": "ci"}
    t0 = time.time()

    # create
    r = api.post("/v1/sandboxes", {"template": "tiny", "ttl_seconds": 900, "metadata": meta, "env": {"GREETING": "hello"}})
    assert r.status == 201, r
    sb = r.json()
    sid = sb["id"]
    assert sb["state"] == "running" and sb["template"] == "tiny" and sb["metadata"] == meta
    assert RFC3339_MS_UTC.match(sb["created_at"]) and RFC3339_MS_UTC.match(sb["expires_at"]), sb
    ttl = (parse_ts(sb["expires_at"]) - parse_ts(sb["created_at"])).total_seconds()
    assert 895 <= ttl <= 905, sb
    assert abs(parse_ts(sb["created_at"]).timestamp() - t0) < 120

    try:
        # the create is in kilnd's record of the last hour's creates (the dashboard's chart)
        r = api.get("/v1/stats/creates")
        assert r.status == 200 and not r.errors, r
        creates = r.json()["creates"]
        assert creates and creates[-1]["ms"] > 0 and abs(parse_ts(creates[-1]["at"]).timestamp() - time.time()) < 300, creates[-3:]

        # get
        r = api.get(f"/v1/sandboxes/{sid}")
        assert r.status == 200 and r.json()["id"] == sid and r.json()["state"] == "running", r

        # list with a metadata filter: this sandbox only; a non-matching value: nothing
        r = api.get(query("/v1/sandboxes", **{"metadata.repo": meta["repo"]}))
        assert r.status == 200, r
        assert [s["id"] for s in r.json()["sandboxes"]] == [sid]
        r = api.get(query("/v1/sandboxes", **{"metadata.repo": meta["repo"], "metadata.kind": "other"}))
        assert r.status == 200 and r.json()["sandboxes"] == [], r

        # exec, buffered
        res = api.exec(sid, "echo hi && echo oops >&2 && exit 3", timeout_seconds=60)
        assert (res["stdout"], res["stderr"], res["exit_code"], res["timed_out"]) == ("hi\n", "oops\n", 3, False), res
        assert res["duration_ms"] >= 0
        r = api.post(f"/v1/sandboxes/{sid}/exec", {"argv": ["/bin/sh", "-c", 'echo "$GREETING $WHO"; pwd; cat'],
                                                   "env": {"WHO": "world"}, "cwd": "/tmp", "stdin": "from stdin"})
        assert r.status == 200, r
        assert r.json()["stdout"] == "hello world\n/tmp\nfrom stdin", r.json()
        assert r.json()["exit_code"] == 0
        # a command past its timeout is killed with its process group
        res = api.exec(sid, "sleep 30 & sleep 30", timeout_seconds=1)
        assert res["timed_out"] is True and res["exit_code"] is None and res["signal"] == 9, res
        assert res["duration_ms"] < 15000, res
        res = api.exec(sid, "ps -o args | grep -c '^sleep 30' || true")
        assert res["stdout"] == "0\n", f"the timed-out command's process group lives on: {res}"

        # exec, streamed NDJSON: events arrive as they happen
        arrivals = []
        start = time.monotonic()
        for line in api.stream_lines("POST", f"/v1/sandboxes/{sid}/exec",
                                     {"cmd": "for i in 1 2 3; do echo $i; sleep 1; done"}, "application/x-ndjson"):
            if line.strip():
                arrivals.append((time.monotonic() - start, json.loads(line)))
        kinds = [ev["type"] for _, ev in arrivals]
        assert kinds[0] == "start" and kinds[-1] == "exit", kinds
        assert "".join(ev.get("data", "") for _, ev in arrivals if ev["type"] == "stdout") == "1\n2\n3\n"
        assert arrivals[-1][1]["exit_code"] == 0
        first_out = next(t for t, ev in arrivals if ev["type"] == "stdout")
        assert arrivals[-1][0] - first_out >= 1.5, f"output was not streamed: {arrivals}"

        # exec, streamed SSE
        r = api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "echo a; echo b >&2; exit 2"},
                     headers={"Accept": "text/event-stream"})
        assert r.status == 200 and r.content_type.startswith("text/event-stream"), r
        events = r.sse()
        assert events[0][0] == "start" and events[-1][0] == "exit", events
        assert "".join(d.get("data", "") for e, d in events if e == "stdout") == "a\n"
        assert "".join(d.get("data", "") for e, d in events if e == "stderr") == "b\n"
        assert events[-1][1]["exit_code"] == 2

        # files: put / get / stat / list / mkdir / delete
        blob = bytes(range(256)) * 64 + b"\x00end"
        r = api.request("PUT", query(f"/v1/sandboxes/{sid}/files", path="/work/dir/blob.bin", mode="0600"), blob,
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status == 200 and r.json()["size"] == len(blob) and r.json()["type"] == "file", r
        r = api.get(query(f"/v1/sandboxes/{sid}/files", path="/work/dir/blob.bin"))
        assert r.status == 200 and r.body == blob, r
        r = api.get(query(f"/v1/sandboxes/{sid}/files/stat", path="/work/dir/blob.bin"))
        assert r.status == 200, r
        st = r.json()
        assert (st["type"], st["size"], st["mode"], st["name"]) == ("file", len(blob), "0600", "blob.bin"), st
        assert (st["owner"], st["group"]) == ("root", "root"), st
        r = api.post(query(f"/v1/sandboxes/{sid}/files/mkdir", path="/work/dir/sub/deeper"))
        assert r.status == 200 and r.json()["type"] == "dir", r
        r = api.get(query(f"/v1/sandboxes/{sid}/files/list", path="/work/dir"))
        assert r.status == 200, r
        assert [(e["name"], e["type"]) for e in r.json()["entries"]] == [("blob.bin", "file"), ("sub", "dir")], r.json()
        r = api.get(query(f"/v1/sandboxes/{sid}/files/stat", path="/work/nothing-here"))
        assert r.status == 404 and r.error_code == "not_found", r
        r = api.delete(query(f"/v1/sandboxes/{sid}/files", path="/work/dir/sub"))
        assert r.status == 409, f"a non-empty folder without recursive=true: {r}"
        r = api.delete(query(f"/v1/sandboxes/{sid}/files", path="/work/dir/sub", recursive="true"))
        assert r.status == 204, r
        assert api.exec(sid, "test -e /work/dir/sub; echo $?")["stdout"] == "1\n"

        # tar up (plain and gzip) and down
        tar = make_tar({"proj/README": b"readme\n", "proj/src/main.sh": b"#!/bin/sh\necho main\n"},
                       symlinks={"proj/link": "README"}, dirs=("proj", "proj/src"))
        r = api.request("POST", query(f"/v1/sandboxes/{sid}/files/tar", path="/work/up"), tar,
                        headers={"Content-Type": "application/x-tar"})
        assert r.status == 200 and r.json()["entries"] >= 4, r
        res = api.exec(sid, "cat /work/up/proj/link && /work/up/proj/src/main.sh")
        assert res["stdout"] == "readme\nmain\n", res
        gz = make_tar({"z/one.txt": b"1\n"}, gzip=True)
        r = api.request("POST", query(f"/v1/sandboxes/{sid}/files/tar", path="/work/gz"), gz,
                        headers={"Content-Type": "application/x-tar"})
        assert r.status == 200, r
        assert api.exec(sid, "cat /work/gz/z/one.txt")["stdout"] == "1\n"
        r = api.get(query(f"/v1/sandboxes/{sid}/files/tar", path="/work/up"))
        assert r.status == 200, r
        with tarfile.open(fileobj=io.BytesIO(r.body)) as down:
            names = {m.name.lstrip("./").rstrip("/"): m for m in down.getmembers()}
            readme = next(m for n, m in names.items() if n.endswith("proj/README"))
            assert down.extractfile(readme).read() == b"readme\n"
            link = next(m for n, m in names.items() if n.endswith("proj/link"))
            assert link.issym() and link.linkname == "README"

        # snapshot; it works as a template and is listed
        api.exec(sid, "echo before-snapshot > /work/marker")
        r = api.post(f"/v1/sandboxes/{sid}/snapshot", {"name": f"snap-{tag}"})
        assert r.status == 201, r
        snap = r.json()
        assert snap["sandbox_id"] == sid and snap["name"] == f"snap-{tag}", snap
        r = api.get("/v1/snapshots")
        assert r.status == 200 and snap["id"] in [s["id"] for s in r.json()["snapshots"]], r
        r = api.get(f"/v1/snapshots/{snap['id']}")
        assert r.status == 200 and r.json()["id"] == snap["id"], r
        r = api.get("/v1/templates")
        assert r.status == 200, r
        kinds = {t["id"]: t["kind"] for t in r.json()["templates"]}
        assert kinds.get("tiny") == "builtin" and kinds.get(snap["id"]) == "snapshot", kinds
        r = api.get(f"/v1/templates/{snap['id']}")
        assert r.status == 200 and r.json()["kind"] == "snapshot", r
        api.exec(sid, "echo after-snapshot > /work/marker")

        r = api.post("/v1/sandboxes", {"template": snap["id"], "metadata": {"from": tag}})
        assert r.status == 201, r
        restored = r.json()
        assert restored["template"] == snap["id"]
        assert api.exec(restored["id"], "cat /work/marker")["stdout"] == "before-snapshot\n"

        # fork: the child sees the parent's files at the fork; later writes stay apart
        r = api.post(f"/v1/sandboxes/{sid}/fork", {"metadata": {"forked": tag}, "ttl_seconds": 300})
        assert r.status == 201, r
        child = r.json()
        assert child["parent_id"] == sid and child["state"] == "running" and child["metadata"] == {"forked": tag}, child
        assert api.exec(child["id"], "cat /work/marker")["stdout"] == "after-snapshot\n"
        api.exec(child["id"], "echo child > /work/marker")
        assert api.exec(sid, "cat /work/marker")["stdout"] == "after-snapshot\n"
        assert api.get(f"/v1/sandboxes/{sid}").json()["state"] == "running"

        # patch TTL
        r = api.request("PATCH", f"/v1/sandboxes/{sid}", json_body={"ttl_seconds": 1800})
        assert r.status == 200, r
        new_ttl = (parse_ts(r.json()["expires_at"]) - datetime.now(timezone.utc)).total_seconds()
        assert 1780 <= new_ttl <= 1801, r.json()

        # delete the children and the snapshot
        for other in (restored["id"], child["id"]):
            assert api.delete(f"/v1/sandboxes/{other}").status == 204
        r = api.delete(f"/v1/snapshots/{snap['id']}")
        assert r.status == 204, r
        r = api.get(f"/v1/snapshots/{snap['id']}")
        assert r.status == 404 and r.error_code == "not_found", r
        r = api.post("/v1/sandboxes", {"template": snap["id"]})
        assert r.status == 404 and r.error_code == "template_not_found", r
        # a snapshot deleted through /v1/templates
        r = api.post(f"/v1/sandboxes/{sid}/snapshot")
        assert r.status == 201, r
        snap2 = r.json()["id"]
        assert api.delete(f"/v1/templates/{snap2}").status == 204
        assert api.get(f"/v1/templates/{snap2}").status == 404
        assert api.get(f"/v1/snapshots/{snap2}").status == 404
    finally:
        r = api.delete(f"/v1/sandboxes/{sid}")
    assert r.status == 204, r

    # after the delete: GET shows it deleted, it is not listed by default, operations on it fail
    r = api.get(f"/v1/sandboxes/{sid}")
    assert r.status == 200, r
    assert r.json()["state"] == "deleted" and RFC3339_MS_UTC.match(r.json().get("ended_at", "")), r.json()
    r = api.get(query("/v1/sandboxes", **{"metadata.repo": meta["repo"]}))
    assert r.json()["sandboxes"] == [], r
    r = api.get(query("/v1/sandboxes", state="all", **{"metadata.repo": meta["repo"]}))
    assert [s["state"] for s in r.json()["sandboxes"]] == ["deleted"], r
    r = api.post(f"/v1/sandboxes/{sid}/exec", {"cmd": "true"})
    assert r.status == 409 and r.error_code == "sandbox_not_running", r
    r = api.get(query(f"/v1/sandboxes/{sid}/files", path="/work/marker"))
    assert r.status == 409 and r.error_code == "sandbox_not_running", r
    r = api.request("PATCH", f"/v1/sandboxes/{sid}", json_body={"ttl_seconds": 60})
    assert r.status == 409, r
    assert api.delete(f"/v1/sandboxes/{sid}").status == 204, "deleting a finished sandbox is a no-op"
    # an id that never existed is 404 everywhere
    ghost = "sb-000000000000"
    assert api.get(f"/v1/sandboxes/{ghost}").status == 404
    assert api.post(f"/v1/sandboxes/{ghost}/exec", {"cmd": "true"}).status == 404
    assert api.delete(f"/v1/sandboxes/{ghost}").status == 404
    assert not any(str(sid) in d for d in kilnd.run_dirs()), "the run dir of a deleted sandbox is gone"

"""The SDK against a live kilnd with real VMs: sandboxes, exec (buffered, streamed, callbacks),
files, tarballs, snapshots, templates, fork, TTL, typed errors, and dead-sandbox streams."""
from __future__ import annotations

import io
import os
import signal
import socket
import tarfile
import threading
import time

import pytest

import kiln
from kiln import (ConnectionFailed, ExecTimeout, Forbidden, InvalidArgument, Kiln, KilnError, NotFound,
                  QuotaExceeded, SandboxGone, ServerError, Unauthorized)
from kiln.errors import error_for
from kilnd_fixture import Kilnd, pid_alive, wait_until


def test_create_get_list_and_context_manager(k):
    tag = os.urandom(4).hex()
    with k.sandboxes.create(template="tiny", ttl_seconds=300, metadata={"repo": f"acme/{tag}", "kind": "ci"},
                            env={"FOO": "bar"}) as sb:
        assert sb.state == "running" and sb.template == "tiny" and sb.id.startswith("sb-")
        assert sb.metadata == {"repo": f"acme/{tag}", "kind": "ci"}
        assert k.sandboxes.get(sb.id).id == sb.id
        assert [s.id for s in k.sandboxes.list(metadata={"repo": f"acme/{tag}"})] == [sb.id]
        assert k.sandboxes.list(metadata={"repo": f"acme/{tag}", "kind": "other"}) == []
        assert sb.exec("echo $FOO").stdout == "bar\n"
        before = sb.expires_at
        assert sb.set_ttl(1200).expires_at > before
    assert k.sandboxes.get(sb.id).state == "deleted"
    assert [s.state for s in k.sandboxes.list(metadata={"repo": f"acme/{tag}"}, state="all")] == ["deleted"]


def test_exec_forms(sb):
    r = sb.exec("echo out; echo err >&2; exit 4")
    assert (r.stdout, r.stderr, r.exit_code, r.ok, r.timed_out) == ("out\n", "err\n", 4, False, False)
    r = sb.exec(["/bin/sh", "-c", 'echo "$A"; pwd; cat'], env={"A": "x y"}, cwd="/tmp", stdin="in")
    assert r.stdout == "x y\n/tmp\nin" and r.ok
    with pytest.raises(ExecTimeout) as e:
        sb.exec("sleep 20", timeout_seconds=1)
    assert e.value.result.timed_out and e.value.result.exit_code is None and e.value.result.signal == 9
    assert e.value.code == "exec_timeout" and e.value.message
    r = sb.exec("sleep 20", timeout_seconds=1, raise_on_timeout=False)
    assert r.timed_out


def test_exec_binary_output_comes_back_exact(sb):
    # kilnd answers output that is not text as base64; the SDK gives the bytes, and lossy text.
    r = sb.exec("printf 'a\\377b\\000'; printf 'caf\\303\\251' >&2")
    assert r.stdout_bytes == b"a\xffb\x00" and r.stdout == "a\ufffdb\x00"
    assert r.stderr_bytes == "café".encode() and r.stderr == "café"
    assert not r.stdout_truncated and r.stdout_dropped_bytes == 0 and not r.truncated


def test_exec_stream_events_and_callbacks(sb):
    seen_out, seen_err = [], []
    arrivals = []
    start = time.monotonic()
    for ev in sb.exec_stream("for i in 1 2 3; do echo $i; echo e$i >&2; sleep 1; done; exit 7",
                             on_stdout=seen_out.append, on_stderr=seen_err.append):
        arrivals.append((time.monotonic() - start, ev))
    kinds = [ev.kind for _, ev in arrivals]
    assert kinds[-1] == "exit" and arrivals[-1][1].exit_code == 7 and "start" not in kinds
    assert "".join(seen_out) == "1\n2\n3\n" and "".join(seen_err) == "e1\ne2\ne3\n"
    assert "".join(ev.data for _, ev in arrivals if ev.kind == "stdout") == "1\n2\n3\n"
    first = next(t for t, ev in arrivals if ev.kind == "stdout")
    assert arrivals[-1][0] - first >= 1.5, "the events were not streamed as they happened"
    # with include_start, the first event is start with the guest pid
    events = list(sb.exec_stream("true", include_start=True))
    assert events[0].kind == "start" and events[0].pid and events[-1].exit_code == 0
    # callbacks on a plain exec stream too, and the result still collects everything
    got = []
    r = sb.exec("echo a; echo b", on_stdout=got.append)
    assert "".join(got) == "a\nb\n" == r.stdout and r.exit_code == 0


def test_filesystem(sb):
    blob = os.urandom(100_000)
    info = sb.filesystem.write("/work/d/blob", blob, mode=0o600)
    assert info.size == len(blob) and info.type == "file"
    assert sb.filesystem.read("/work/d/blob") == blob
    st = sb.filesystem.stat("/work/d/blob")
    assert (st.name, st.mode, st.size) == ("blob", "0600", len(blob))
    assert (st.owner, st.group, st.target) == ("root", "root", None)
    sb.exec("ln -s blob /work/d/link")
    link = sb.filesystem.stat("/work/d/link")
    assert (link.type, link.target) == ("symlink", "blob")
    sb.filesystem.remove("/work/d/link")
    sb.filesystem.write("/work/d/text.txt", "héllo")
    assert sb.filesystem.read("/work/d/text.txt") == "héllo".encode()
    sb.filesystem.mkdir("/work/d/sub")
    assert [(e.name, e.type) for e in sb.filesystem.list("/work/d")] == [("blob", "file"), ("sub", "dir"),
                                                                          ("text.txt", "file")]
    sb.filesystem.remove("/work/d/blob")
    assert not sb.filesystem.exists("/work/d/blob")
    with pytest.raises(NotFound) as e:
        sb.filesystem.read("/work/d/blob")
    assert e.value.code == "not_found" and e.value.status == 404
    with pytest.raises(InvalidArgument):
        sb.filesystem.read("/work/../etc/passwd")
    sb.filesystem.remove("/work/d", recursive=True)
    assert not sb.filesystem.exists("/work/d")


def test_tarballs(sb, tmp_path):
    (tmp_path / "proj" / "src").mkdir(parents=True)
    (tmp_path / "proj" / "src" / "main.sh").write_text("#!/bin/sh\necho main\n")
    (tmp_path / "proj" / "src" / "main.sh").chmod(0o755)
    (tmp_path / "proj" / "README").write_text("readme\n")
    os.symlink("README", tmp_path / "proj" / "link")
    res = sb.filesystem.upload_tar("/work/p", str(tmp_path / "proj"))  # a local folder
    assert res["entries"] >= 4
    assert sb.exec("/work/p/src/main.sh && cat /work/p/link").stdout == "main\nreadme\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"zipped\n"
        info = tarfile.TarInfo("z.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    sb.filesystem.upload_tar("/work/z", buf.getvalue())  # bytes, gzip
    assert sb.filesystem.read("/work/z/z.txt") == b"zipped\n"
    down = sb.filesystem.download_tar("/work/p")
    with tarfile.open(fileobj=io.BytesIO(down)) as tar:
        names = [m.name for m in tar.getmembers()]
        member = next(m for m in tar.getmembers() if m.name.endswith("src/main.sh"))
        assert tar.extractfile(member).read() == b"#!/bin/sh\necho main\n", names
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../escape")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(InvalidArgument) as e:
        sb.filesystem.upload_tar("/work/e", evil.getvalue())
    assert e.value.code == "invalid_argument"


def test_snapshots_templates_and_fork(k, sb):
    sb.filesystem.write("/work/state", b"one")
    snap = sb.snapshot(name="sdk-snap")
    try:
        assert snap.id.startswith("snap-") and snap.sandbox_id == sb.id and snap.name == "sdk-snap"
        assert snap.id in [s.id for s in k.snapshots.list()]
        assert k.snapshots.get(snap.id).size_bytes >= 0
        templates = {t.id: t for t in k.templates.list()}
        assert templates["tiny"].kind == "builtin" and templates[snap.id].kind == "snapshot"
        assert k.templates.get("tiny").memory_mib > 0
        sb.filesystem.write("/work/state", b"two")
        with k.sandboxes.create(template=snap.id) as restored:
            assert restored.filesystem.read("/work/state") == b"one"
        child = sb.fork(metadata={"role": "child"}, ttl_seconds=120)
        try:
            assert child.parent_id == sb.id and child.metadata == {"role": "child"}
            assert child.filesystem.read("/work/state") == b"two"
            child.filesystem.write("/work/state", b"child")
            assert sb.filesystem.read("/work/state") == b"two"
        finally:
            child.delete()
    finally:
        snap.delete()
    with pytest.raises(NotFound):
        k.snapshots.get(snap.id)
    with pytest.raises(NotFound) as e:
        k.sandboxes.create(template=snap.id)
    assert e.value.code == "template_not_found"


def test_typed_errors(k, kilnd):
    with pytest.raises(Unauthorized) as e:
        Kiln(kilnd.url, "not-a-token").sandboxes.list()
    assert e.value.code == "unauthorized" and e.value.status == 401 and e.value.message
    with pytest.raises(NotFound):
        k.sandboxes.get("sb-000000000000")
    with pytest.raises(InvalidArgument):
        k.sandboxes.create(ttl_seconds=0)
    # another token's sandbox is not found
    with k.sandboxes.create() as sb:
        with pytest.raises(NotFound):
            Kiln(kilnd.url, kilnd.tokens["bob"]).sandboxes.get(sb.id)
    with pytest.raises(SandboxGone) as e:
        sb.exec("true")
    assert e.value.code == "sandbox_not_running"
    # bob may not drop a built-in template's bake (admin only), and says who he is
    bob = Kiln(kilnd.url, kilnd.tokens["bob"])
    with pytest.raises(Forbidden) as e:
        bob.templates.delete("tiny")
    assert e.value.code == "forbidden" and e.value.status == 403 and "admin" in e.value.message
    me = bob.whoami()
    assert me["scopes"] == ["sandboxes"] and me["name"] == "bob" and "sandboxes" in me["quota"]
    for err in (Unauthorized, Forbidden, NotFound, QuotaExceeded, ExecTimeout, SandboxGone, ServerError):
        assert issubclass(err, KilnError)
    assert isinstance(error_for(500, "internal", "x"), ServerError)
    assert isinstance(error_for(503, "unavailable", "x"), ServerError)
    assert isinstance(error_for(502, None, "bad gateway"), ServerError)
    assert isinstance(error_for(429, "quota_exceeded", "x"), QuotaExceeded)


def test_quota_exceeded(tmp_path):
    small = Kilnd(extra_env={"KILN_MAX_SANDBOXES": "1", "KILN_KEEP_SPARE": "false"}, name="test-sdkquota")
    try:
        small.create_token("alice")
        small.start()
        kq = Kiln(small.url, small.tokens["alice"])
        with kq.sandboxes.create():
            with pytest.raises(QuotaExceeded) as e:
                kq.sandboxes.create()
            assert e.value.code == "quota_exceeded" and e.value.status == 429 and e.value.message
    finally:
        small.cleanup()


def test_stream_ends_with_sandbox_gone_on_delete(k, sb):
    other = k.sandboxes.get(sb.id)
    events = []
    start = time.monotonic()
    with pytest.raises(SandboxGone):
        for ev in sb.exec_stream("while :; do echo tick; sleep 1; done"):
            events.append(ev)
            if len(events) == 2:
                threading.Thread(target=other.delete).start()
    assert events and time.monotonic() - start < 40


def test_stream_ends_with_sandbox_gone_when_the_guest_freezes(k, kilnd):
    # A frozen guest (QEMU stopped) sends nothing more; the TTL then kills it from the host. The
    # stream must end with SandboxGone, whether or not kilnd closes it.
    before = set(kilnd.qemu_pids())
    sb = k.sandboxes.create(ttl_seconds=120)
    qemu = sorted(set(kilnd.qemu_pids()) - before)
    assert len(qemu) == 1, qemu
    stopped = False
    try:
        with pytest.raises(SandboxGone):
            for ev in sb.exec_stream("while :; do echo tick; sleep 1; done"):
                if not stopped:
                    os.kill(qemu[0], signal.SIGSTOP)
                    stopped = True
                    sb.set_ttl(2)
        assert wait_until(lambda: not pid_alive(qemu[0]), 30)
        # kilnd records the end as soon as it has seen QEMU exit (a moment after this test can).
        assert wait_until(lambda: sb.refresh().state == "expired", 5), sb.refresh().state
    finally:
        if pid_alive(qemu[0]):
            os.kill(qemu[0], signal.SIGCONT)
        sb.delete()


class FlakyProxy:
    """A loopback TCP proxy to kilnd that drops the first `drops` connections without a word."""

    def __init__(self, port: int, drops: int):
        self.target = port
        self.drops = drops
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.drops:
                client.recv(65536)
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def test_idempotent_calls_are_retried_and_others_are_not(k, kilnd):
    proxy = FlakyProxy(kilnd.port, drops=2)
    try:
        flaky = Kiln(f"http://127.0.0.1:{proxy.port}", kilnd.tokens["alice"])
        assert isinstance(flaky.sandboxes.list(), list)  # GET: two drops, then through
        assert proxy.connections == 3
        proxy.connections, proxy.drops = 0, 1
        before = len(k.sandboxes.list(state="all"))
        with pytest.raises(ConnectionFailed):
            flaky.sandboxes.create()  # POST: one drop, no retry
        assert proxy.connections == 1
        assert len(k.sandboxes.list(state="all")) == before, "the POST was not sent twice"
        proxy.connections, proxy.drops = 0, 10
        with pytest.raises(ConnectionFailed):
            flaky.templates.list()  # GET: gives up after 1 + 3 attempts
        assert proxy.connections == 4
    finally:
        proxy.close()
    with pytest.raises(ConnectionFailed):
        Kiln("http://127.0.0.1:1", "x", retries=1).sandboxes.list()


def test_kiln_reads_the_environment(kiln_env, monkeypatch):
    assert Kiln().url == kiln_env.url
    assert Kiln().health()["status"] == "ok"
    assert "kiln_sandboxes" in Kiln().metrics()
    monkeypatch.delenv("KILN_URL")
    assert Kiln().url == "http://127.0.0.1:7070"
    assert kiln.__version__

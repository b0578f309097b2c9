"""The `kiln` CLI against a real kilnd with real VMs: sandbox create/list/get/exec/cp/snapshot/fork/rm,
pause/resume,
template list/rm, --json, exit codes (the command's, 128+signal, 124, 125) and error messages."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from kilnd_fixture import REPO, free_port


def kiln_binary() -> Path:
    build = Path(os.environ.get("KILN_BUILD", "build/release"))
    if not build.is_absolute():
        build = REPO / build
    return build / "src" / "cli" / "kiln"


def run(args: list[str], url: str | None = None, token: str | None = None, stdin: bytes | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs kiln with KILN_URL/KILN_TOKEN set as given (unset when None); stdin is /dev/null unless given."""
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_URL", "KILN_TOKEN")}
    if url is not None:
        env["KILN_URL"] = url
    if token is not None:
        env["KILN_TOKEN"] = token
    return subprocess.run([str(kiln_binary()), *args], env=env, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def cli(kilnd):
    """kiln as alice: cli(args...) -> CompletedProcess."""
    if not kiln_binary().exists():
        pytest.fail(f"{kiln_binary()} does not exist (build the kiln target)")

    def call(*args: str, stdin: bytes | None = None, token: str | None = None, timeout: float = 300):
        return run(list(args), url=kilnd.url, token=token or kilnd.tokens["alice"], stdin=stdin, timeout=timeout)
    return call


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"exit {p.returncode}; stderr: {p.stderr.decode(errors='replace')}"
    return p.stdout.decode()


def test_no_token_and_no_daemon():
    if not kiln_binary().exists():
        pytest.fail(f"{kiln_binary()} does not exist (build the kiln target)")
    p = run(["sandbox", "list"], url="http://127.0.0.1:7070", token=None)
    assert p.returncode == 125
    assert p.stderr.decode() == "kiln: KILN_TOKEN is not set; create one with `kilnd token create --name NAME --scope SCOPE`\n"
    port = free_port()  # nothing listens there
    p = run(["sandbox", "create"], url=f"http://127.0.0.1:{port}", token="t")
    assert p.returncode == 125
    assert p.stderr.decode().startswith(f"kiln: cannot reach kilnd at http://127.0.0.1:{port}"), p.stderr
    p = run(["template", "list", "--url", "ftp://x"], token="t")
    assert p.returncode == 125 and b"bad kilnd URL" in p.stderr, p.stderr


def test_api_errors_print_code_and_exit_125(cli, kilnd):
    p = cli("sandbox", "list", token="not-a-token")
    assert p.returncode == 125 and p.stderr.decode().startswith("kiln: unauthorized: "), p.stderr
    p = cli("sandbox", "get", "sb-000000000000")
    assert p.returncode == 125 and p.stderr.decode().startswith("kiln: not_found: "), p.stderr
    p = cli("sandbox", "exec", "sb-000000000000", "true")
    assert p.returncode == 125 and p.stderr.decode().startswith("kiln: not_found: "), p.stderr
    p = cli("sandbox", "create", "--template", "no-such-template")
    assert p.returncode == 125 and p.stderr.decode().startswith("kiln: template_not_found: "), p.stderr
    p = cli("sandbox", "rm", "sb-000000000000")
    assert p.returncode == 125 and b"not_found" in p.stderr, p.stderr
    assert kilnd.healthy()


def test_sandbox_lifecycle(cli, kilnd, tmp_path):
    tag = secrets.token_hex(4)
    sid = ok(cli("sandbox", "create", "--meta", f"cli={tag}", "--env", "FROM_CREATE=yes", "--ttl", "900")).strip()
    assert sid.startswith("sb-") and len(sid) == 15, sid
    child = None
    try:
        # list and get, text and JSON
        table = ok(cli("sandbox", "list", "--meta", f"cli={tag}"))
        assert table.splitlines()[0].split()[:3] == ["ID", "STATE", "TEMPLATE"]
        assert sid in table and "running" in table and f"cli={tag}" in table, table
        listed = json.loads(ok(cli("sandbox", "list", "--meta", f"cli={tag}", "--json")))
        assert [s["id"] for s in listed["sandboxes"]] == [sid]
        assert json.loads(ok(cli("sandbox", "list", "--meta", f"cli=other-{tag}", "--json")))["sandboxes"] == []
        got = json.loads(ok(cli("sandbox", "get", sid, "--json")))
        assert got["id"] == sid and got["state"] == "running" and got["metadata"] == {"cli": tag}
        assert "state:" in ok(cli("sandbox", "get", sid))

        # exec: streams, keeps stdout and stderr apart, exits with the command's status
        p = cli("sandbox", "exec", sid, "echo out; echo err >&2; echo $FROM_CREATE; exit 3")
        assert p.returncode == 3, p
        assert p.stdout == b"out\nyes\n" and p.stderr == b"err\n", p
        p = cli("sandbox", "exec", sid, "--env", "X=1 2", "--cwd", "/tmp", "--", "sh", "-c", 'echo "$X" "$(pwd)"')
        assert ok(p) == "1 2 /tmp\n"
        assert cli("sandbox", "exec", sid, "--", "sh", "-c", "kill -9 $$").returncode == 128 + 9
        p = cli("sandbox", "exec", sid, "--timeout", "1", "--", "sleep", "30")
        assert p.returncode == 124 and b"timed out" in p.stderr, p
        assert ok(cli("sandbox", "exec", sid, "--", "wc", "-c", stdin=b"12345")).strip() == "5"
        res = json.loads(cli("sandbox", "exec", sid, "--json", "echo hi; exit 4").stdout)
        assert res["stdout"] == "hi\n" and res["exit_code"] == 4, res
        assert cli("sandbox", "exec", sid, "--json", "exit 4").returncode == 4

        # cp: a file and a folder, both ways
        (tmp_path / "up" / "sub").mkdir(parents=True)
        (tmp_path / "up" / "one.txt").write_text("one\n")
        (tmp_path / "up" / "sub" / "two.sh").write_text("#!/bin/sh\necho two\n")
        (tmp_path / "up" / "sub" / "two.sh").chmod(0o755)
        (tmp_path / "up" / "link").symlink_to("one.txt")
        info = json.loads(ok(cli("sandbox", "cp", str(tmp_path / "up" / "one.txt"), f"{sid}:/work/f.txt", "--json")))
        assert info["path"] == "/work/f.txt" and info["size"] == 4, info
        ok(cli("sandbox", "cp", str(tmp_path / "up"), f"{sid}:/work"))  # an existing folder: /work/up
        ok(cli("sandbox", "cp", str(tmp_path / "up"), f"{sid}:/fresh"))  # a new one: /fresh itself
        out = ok(cli("sandbox", "exec", sid,
                     "cat /work/f.txt /work/up/one.txt /work/up/link; /work/up/sub/two.sh; /fresh/sub/two.sh"))
        assert out == "one\none\none\ntwo\ntwo\n", out
        # A guest's setuid/setgid program and sticky folder come down with their rwx bits only
        # (the CLI runs as root here: a kept setuid bit would be a root program the guest chose).
        ok(cli("sandbox", "exec", sid, "mkdir -p /work/made/deep && echo made > /work/made/deep/m.txt"
               " && cp /bin/true /work/made/suid && chmod 6755 /work/made/suid"
               " && mkdir /work/made/tmp && chmod 1777 /work/made/tmp"))
        down = tmp_path / "down"
        down.mkdir()
        ok(cli("sandbox", "cp", f"{sid}:/work/f.txt", str(down)))
        assert (down / "f.txt").read_text() == "one\n"
        ok(cli("sandbox", "cp", f"{sid}:/work/made", str(down)))
        assert (down / "made" / "deep" / "m.txt").read_text() == "made\n"
        assert oct((down / "made" / "suid").lstat().st_mode & 0o7777) == oct(0o755)
        assert oct((down / "made" / "tmp").lstat().st_mode & 0o7777) == oct(0o777)
        ok(cli("sandbox", "cp", f"{sid}:/work/up", str(down / "again")))
        assert (down / "again" / "sub" / "two.sh").read_text() == "#!/bin/sh\necho two\n"
        assert os.access(down / "again" / "sub" / "two.sh", os.X_OK)
        assert os.readlink(down / "again" / "link") == "one.txt"
        assert ok(cli("sandbox", "cp", f"{sid}:/work/f.txt", "-")) == "one\n"
        p = cli("sandbox", "cp", f"{sid}:/work/nothing", str(down))
        assert p.returncode == 125 and b"not_found" in p.stderr, p

        # snapshot (a template), create from it, fork
        ok(cli("sandbox", "exec", sid, "echo snapped > /work/marker"))
        snap = ok(cli("sandbox", "snapshot", sid, "--name", f"cli-{tag}")).strip()
        assert snap.startswith("snap-"), snap
        templates = json.loads(ok(cli("template", "list", "--json")))["templates"]
        assert snap in [t["id"] for t in templates] and "tiny" in [t["id"] for t in templates]
        assert snap in ok(cli("template", "list"))
        from_snap = ok(cli("sandbox", "create", "--template", snap)).strip()
        try:
            assert ok(cli("sandbox", "exec", from_snap, "cat /work/marker")) == "snapped\n"
        finally:
            assert ok(cli("sandbox", "rm", from_snap)) == from_snap + "\n"
        child = json.loads(ok(cli("sandbox", "fork", sid, "--json")))
        assert child["parent_id"] == sid and child["state"] == "running", child
        assert ok(cli("sandbox", "exec", child["id"], "cat /work/marker")) == "snapped\n"
        ok(cli("template", "rm", snap))
        assert snap not in [t["id"] for t in json.loads(ok(cli("template", "list", "--json")))["templates"]]
    finally:
        ids = [sid] + ([child["id"]] if child else [])
        assert ok(cli("sandbox", "rm", *ids)).split() == ids

    # after rm: listed only with --all, exec says why
    assert sid not in ok(cli("sandbox", "list"))
    assert json.loads(ok(cli("sandbox", "get", sid, "--json")))["state"] == "deleted"
    p = cli("sandbox", "exec", sid, "true")
    assert p.returncode == 125 and p.stderr.decode().startswith("kiln: sandbox_not_running: "), p.stderr
    assert kilnd.healthy()


def test_pause_and_resume(cli, kilnd):
    """kiln pause / kiln resume (and their `kiln sandbox` forms), --auto-pause, and what get and
    list show of a paused sandbox (docs/pause.md)."""
    sid = ok(cli("sandbox", "create", "--auto-pause", "--ttl", "900")).strip()
    try:
        ok(cli("sandbox", "exec", sid, "echo kept > /tmp/kept"))
        assert ok(cli("pause", sid)) == sid + "\n"
        got = json.loads(ok(cli("sandbox", "get", sid, "--json")))
        assert got["state"] == "paused" and got["auto_pause"] is True and got["paused_bytes"] > 0, got
        text = ok(cli("sandbox", "get", sid))
        assert "ttl left:" in text and "auto pause:" in text, text
        row = [line for line in ok(cli("sandbox", "list")).splitlines() if line.startswith(sid)]
        assert row and "paused" in row[0].split(), row
        p = cli("sandbox", "exec", sid, "true")
        assert p.returncode == 125 and b"sandbox_not_running" in p.stderr, p
        resumed = json.loads(ok(cli("sandbox", "resume", sid, "--ttl", "300", "--json")))
        assert resumed["state"] == "running", resumed
        assert ok(cli("sandbox", "exec", sid, "cat /tmp/kept")) == "kept\n"
        assert ok(cli("sandbox", "pause", sid)) == sid + "\n"
        assert ok(cli("resume", sid)) == sid + "\n"
        # Several ids: each is tried; a bad one fails the command (125) and names itself.
        p = cli("pause", "sb-000000000000", sid)
        assert p.returncode == 125 and b"not_found" in p.stderr and p.stdout.decode() == sid + "\n", p
    finally:
        ok(cli("sandbox", "rm", sid))
    p = cli("resume", sid)
    assert p.returncode == 125 and b"sandbox_not_running" in p.stderr, p


def test_whoami_shows_the_tokens_scopes_and_quotas(cli, kilnd):
    token = kilnd.create_token("cli-whoami", "sandboxes,ci:read", "sandboxes=3")
    text = ok(cli("whoami", token=token))
    assert "cli-whoami" in text and "sandboxes,ci:read" in text, text
    row = [line.split() for line in text.splitlines() if line.startswith("sandboxes ")]
    assert row and row[0][1:] == ["0", "3"], text
    as_json = json.loads(ok(cli("whoami", "--json", token=token)))
    assert as_json["scopes"] == ["sandboxes", "ci:read"] and as_json["quota"]["sandboxes"] == 3
    # A call outside its scopes says which scope it needs.
    p = cli("template", "rm", "tiny", token=token)
    assert p.returncode != 0 and "forbidden" in p.stderr.decode() and "admin" in p.stderr.decode(), p

"""Issue #6's example, run exactly as written (the same text as in docs/python-sdk.md)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

EXAMPLE = '''\
from kiln import Kiln

k = Kiln()  # KILN_URL (default http://127.0.0.1:7070) and KILN_TOKEN from the environment
sb = k.sandboxes.create(template="tiny", ttl_seconds=900,
                        metadata={"repo": "acme/widget", "sha": "a1b2c3d4", "kind": "ci"})
try:
    r = sb.exec("echo hi && exit 3", timeout_seconds=60)
    assert (r.stdout, r.exit_code) == ("hi\\n", 3)        # r.stderr too
    for ev in sb.exec_stream("for i in 1 2 3; do echo $i; sleep 1; done"):
        print(ev.kind, ev.data)                          # stdout | stderr | exit (ev.exit_code)
    sb.filesystem.write("/work/x.txt", b"data")
    data = sb.filesystem.read("/work/x.txt")             # bytes
    snap = sb.snapshot()                                 # snap.id works as a template
    child = sb.fork()
finally:
    sb.delete()
'''


def test_the_docs_show_this_example():
    assert EXAMPLE in (REPO / "docs" / "python-sdk.md").read_text()


def test_readme_example_runs_as_written(kiln_env, k, capsys):
    scope: dict = {}
    try:
        exec(compile(EXAMPLE, "readme_example.py", "exec"), scope)
        printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert [line for line in printed if line.startswith("stdout")] == ["stdout 1", "stdout 2", "stdout 3"], printed
        assert printed[-1].startswith("exit"), printed
        assert scope["data"] == b"data"
        sb, snap, child = scope["sb"], scope["snap"], scope["child"]
        assert sb.refresh().state == "deleted"
        assert child.parent_id == sb.id and child.refresh().state == "running"
        assert child.filesystem.read("/work/x.txt") == b"data"
        # snap.id works as a template
        with k.sandboxes.create(template=snap.id) as restored:
            assert restored.filesystem.read("/work/x.txt") == b"data"
    finally:
        if "child" in scope:
            scope["child"].delete()
        if "snap" in scope:
            scope["snap"].delete()

"""The SDK's pause and resume against a live kilnd with real VMs (docs/pause.md): files and a
background process come back, no QEMU runs while paused, auto_pause, and the errors."""
from __future__ import annotations

import pytest

from kiln import NotFound, SandboxGone
from kilnd_fixture import wait_until

TICKER = ("setsid sh -c 'echo $$ > /tmp/ticker.pid; while :; do date +%s%N >> /tmp/ticks; sleep 0.2; done' "
          "</dev/null >/dev/null 2>&1 &")


def test_pause_and_resume(k, kilnd):
    with k.sandboxes.create(template="tiny", ttl_seconds=600) as sb:
        sb.exec("echo kept > /tmp/kept && " + TICKER)
        assert wait_until(lambda: sb.exec("cat /tmp/ticker.pid 2>/dev/null").stdout.strip(), 10)
        pid = sb.exec("cat /tmp/ticker.pid").stdout.strip()
        assert sb.pause() is sb
        assert sb.state == "paused" and sb.paused_bytes > 0 and sb.ttl_left_seconds > 0
        assert kilnd.qemu_pids() == []
        assert [s.id for s in k.sandboxes.list(state="paused")] == [sb.id]
        with pytest.raises(SandboxGone) as e:
            sb.exec("true")
        assert e.value.code == "sandbox_not_running"

        again = k.sandboxes.resume(sb.id, ttl_seconds=300)
        assert again.state == "running" and again.id == sb.id and again.paused_at is None
        assert sb.refresh().state == "running"
        assert sb.exec("cat /tmp/kept").stdout == "kept\n"
        assert sb.exec(f"kill -0 {pid} && echo alive").stdout == "alive\n"
    assert kilnd.qemu_pids() == []


def test_auto_pause_and_errors(k, kilnd):
    sb = k.sandboxes.create(template="tiny", ttl_seconds=2, auto_pause=True)
    assert sb.auto_pause is True
    assert wait_until(lambda: sb.refresh().state not in ("running", "pausing"), 120)
    assert sb.state == "paused", sb.to_dict()
    sb.resume(ttl_seconds=60)
    assert sb.exec("echo up").stdout == "up\n"
    sb.delete()
    with pytest.raises(SandboxGone):
        k.sandboxes.resume(sb.id)
    with pytest.raises(SandboxGone):
        sb.pause()
    with pytest.raises(NotFound):
        k.sandboxes.pause("sb-000000000000")

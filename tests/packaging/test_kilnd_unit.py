"""packaging/kilnd.service: systemd accepts every line (systemd-analyze verify prints nothing),
its exposure score stays where the hardening put it (systemd-analyze security --offline), and
every line is explained, in the unit and in docs/kilnd.md. systemd need not be PID 1: both
commands read the unit file offline. Skipped where systemd-analyze is missing."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "kilnd.service"
DOCS = REPO / "docs" / "kilnd.md"
# The score with the unit's hardening: 5.1 measured with systemd 252 (9.6 before). A change that
# weakens the unit fails here, and must say why in the unit and the docs.
MAX_EXPOSURE = 5.2

analyze = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(analyze is None, reason="no systemd-analyze on this machine")


def installed_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart's binary pointing at one that exists here (verify checks it)."""
    binary = Path(os.environ.get("KILN_BUILD", "build/release"))
    binary = (binary if binary.is_absolute() else REPO / binary) / "src" / "kilnd" / "kilnd"
    if not binary.exists():
        binary = Path("/bin/true")
    copy = tmp_path / "kilnd.service"
    copy.write_text((text if text is not None else UNIT.read_text()).replace("/usr/local/bin/kilnd", str(binary)))
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def directives(text: str) -> list[tuple[int, str]]:
    """(line number, key) of every Key=value line."""
    return [(n, m.group(1)) for n, line in enumerate(text.splitlines(), 1)
            if (m := re.match(r"^([A-Za-z]+)=", line))]


def test_systemd_accepts_every_line(tmp_path):
    result = verify(installed_copy(tmp_path))
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
        result.stdout + result.stderr


def test_verify_would_catch_a_mistake(tmp_path):
    """The control: verify exits 0 on an unknown key or a bad value, but says so, which the test
    above treats as a failure."""
    bad = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt").replace(
        "PrivateTmp=yes", "PrivateTemp=yes")
    result = verify(installed_copy(tmp_path, bad))
    said = result.stdout + result.stderr
    assert "strikt" in said and "PrivateTemp" in said, said


def test_exposure_score(tmp_path):
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager", str(installed_copy(tmp_path))],
                            capture_output=True, text=True, timeout=60)
    out = result.stdout + result.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert score, out
    assert float(score.group(1)) <= MAX_EXPOSURE, out


def test_every_line_is_explained_in_the_unit_and_the_docs():
    text = UNIT.read_text()
    lines = text.splitlines()
    docs = DOCS.read_text()
    for number, key in directives(text):
        above = lines[number - 2] if number >= 2 else ""
        assert above.startswith("#"), f"{UNIT.name}:{number}: {key}= has no comment above it"
        assert f"`{key}=" in docs, f"docs/kilnd.md does not explain {key}="


def test_the_limits_are_finite():
    text = UNIT.read_text()
    for key in ("MemoryMax", "TasksMax", "LimitNOFILE"):
        value = re.search(rf"^{key}=(\S+)$", text, re.M)
        assert value and value.group(1) != "infinity", f"{key}= must be set and finite"
    assert re.search(r"^LimitCORE=0$", text, re.M) and re.search(r"^UMask=0077$", text, re.M)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_network_sysctls_stay_writable_per_namespace_under_a_read_only_proc_sys():
    """What ProtectKernelTunables=yes with ReadWritePaths=/proc/sys/net sets up, made by hand in a
    mount namespace of our own: /proc/sys read-only, /proc/sys/net bound writable again. A write
    there from another network namespace (as kilnd's netns threads make) lands in that namespace
    and not the host's; the rest of /proc/sys refuses writes."""
    host_ttl = Path("/proc/sys/net/ipv4/ip_default_ttl").read_text().strip()
    script = """
mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net
unshare -u sh -c 'echo x > /proc/sys/kernel/hostname' 2>/dev/null && echo kernel-writable
unshare -n sh -c 'echo 77 > /proc/sys/net/ipv4/ip_default_ttl && echo "netns:$(cat /proc/sys/net/ipv4/ip_default_ttl)"'
"""
    out = subprocess.run(["unshare", "-m", "--propagation", "slave", "sh", "-c", script], capture_output=True,
                         text=True, timeout=30)
    assert "netns:77" in out.stdout, out.stdout + out.stderr
    assert "kernel-writable" not in out.stdout
    assert Path("/proc/sys/net/ipv4/ip_default_ttl").read_text().strip() == host_ttl

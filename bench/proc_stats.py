"""Host and process figures from /proc for the benches: PSS (smaps_rollup), CPU time, MemAvailable,
load, and where one QEMU's PSS goes (its smaps grouped by what each mapping holds)."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "api"))
from kilnd_fixture import cpu_ticks  # noqa: E402,F401  (the tests' reader, re-exported for the benches)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A smaps mapping header: "start-end perms offset dev inode [path]".
MAPPING_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ (\d+)\s*(.*)$")


def pss_kib(pid: int) -> int | None:
    """Proportional set size of `pid` in KiB; None if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def status_field(pid: int, name: str) -> int:
    """A number from /proc/PID/status (VmRSS in KiB, Threads); 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0



def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` so far, in seconds; None if it is gone."""
    ticks = cpu_ticks(pid)
    return None if ticks is None else ticks / CLOCK_TICKS


def meminfo_kib() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


@dataclass
class MappingGroup:
    pss_kib: int = 0
    rss_kib: int = 0
    size_kib: int = 0
    mappings: int = 0
    parts: dict[str, "MappingGroup"] = field(default_factory=dict)  # see SPLITS


GUEST_RAM = "guest RAM (the template's memory file, mapped copy-on-write)"
FILES = "files: QEMU binary, libraries"
# File mappings whose PSS splits in two: pages written since (Anonymous: copied on write, private to
# this QEMU) and clean pages (its share of the page cache, shared with every other mapper).
SPLITS = {
    GUEST_RAM: ("pages copied on write (private)", "share of the memory file's page cache"),
    FILES: ("written: data segments, relocations (private)", "clean: code, read-only data (shared by all QEMUs)"),
}


def classify(perms: str, inode: int, path: str, size_kib: int, guest_ram_kib: int) -> str:
    """Which part of QEMU a mapping is. Guest RAM is the file mapping of the guest's size (the
    template's sealed memory file, mapped MAP_PRIVATE); TCG's translation buffer is QEMU's one
    anonymous executable mapping; the rest of anonymous memory is QEMU's malloc heap and arenas
    and its threads' stacks."""
    if path and size_kib == guest_ram_kib and not path.startswith("["):
        return GUEST_RAM
    if path == "[heap]":
        return "QEMU heap ([heap], brk)"
    if path.startswith("[stack"):
        return "main thread stack"
    if path.startswith("["):
        return "kernel pages (vdso, vvar)"
    if not path and inode == 0:
        if "x" in perms:
            return "TCG translation buffer (anonymous rwx)"
        return "anonymous: malloc arenas, thread stacks, QEMU buffers"
    return FILES


def smaps_breakdown(pid: int, guest_ram_kib: int) -> dict[str, MappingGroup]:
    """`pid`'s smaps grouped by classify(); the groups in SPLITS with their two parts."""
    groups: dict[str, MappingGroup] = {}
    name, values = "", {}

    def close() -> None:
        if not name:
            return
        group = groups.setdefault(name, MappingGroup())
        group.pss_kib += values.get("Pss", 0)
        group.rss_kib += values.get("Rss", 0)
        group.size_kib += values.get("Size", 0)
        group.mappings += 1
        if name in SPLITS:
            written, clean = SPLITS[name]
            anon = values.get("Anonymous", 0)
            for part, pss, rss in ((written, anon, anon),
                                   (clean, values.get("Pss", 0) - anon, values.get("Rss", 0) - anon)):
                sub = group.parts.setdefault(part, MappingGroup())
                sub.pss_kib += pss
                sub.rss_kib += rss

    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            header = MAPPING_HEADER.match(line)
            if header:
                close()
                perms, inode, path = header.group(1), int(header.group(2)), header.group(3).strip()
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                name, values = classify(perms, inode, path, (end - start) // 1024, guest_ram_kib), {}
            elif ":" in line:
                key, rest = line.split(":", 1)
                parts = rest.split()
                if parts and parts[-1] == "kB":
                    values[key] = int(parts[0])
    close()
    return groups

#!/usr/bin/env python3
"""Fails when a file under src/ includes a header from a layer above its own, or when code outside
src/vm/ speaks QMP.

The layers, top to bottom: kilnd -> ci -> daemon -> vm -> proto -> base; the guest side is
agent -> proto -> base; the CLI (a client of kilnd's API that also drives VMs for `kiln vm run`)
is cli -> vm -> proto -> base. A layer may include its own headers and those of the layers it
points at, directly or further down; nothing else.

QMP is the VM layer's business: outside src/vm/ no file may include vm/qmp_client.h, name
QmpClient, call a qmp() accessor or spell a QMP command object ("execute").

    check_layers.py [SRC_DIR]   checks SRC_DIR (default: the src/ beside this script's tests/)
    check_layers.py --self-test checks a small tree with one violation of each kind and fails
                                unless all are reported
"""
import re
import sys
import tempfile
from pathlib import Path

# Each layer and the layers it may include (itself included).
ALLOWED = {
    "base": {"base"},
    "proto": {"proto", "base"},
    "agent": {"agent", "proto", "base"},
    "vm": {"vm", "proto", "base"},
    "daemon": {"daemon", "vm", "proto", "base"},
    "ci": {"ci", "daemon", "vm", "proto", "base"},
    "kilnd": {"kilnd", "ci", "daemon", "vm", "proto", "base"},
    "cli": {"cli", "vm", "proto", "base"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)/[^"]*"')
QMP_SPEAKING = [
    (re.compile(r'#\s*include\s+"vm/qmp_client\.h"'), "includes vm/qmp_client.h"),
    (re.compile(r"\bQmpClient\b"), "names QmpClient"),
    (re.compile(r"(\.|->)\s*qmp\s*\("), "calls a qmp() accessor"),
    (re.compile(r'"execute"'), 'spells a QMP command ("execute")'),
]
SOURCE_SUFFIXES = {".h", ".hpp", ".cpp", ".cc", ".c"}


def strip_comments(line):
    """The code part of a line (a // comment may mention QMP words without speaking QMP)."""
    at = line.find("//")
    return line if at < 0 else line[:at]


def check(src):
    problems = []
    for path in sorted(src.rglob("*")):
        if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(src)
        layer = rel.parts[0]
        if layer not in ALLOWED:
            problems.append(f"{rel}: is in src/{layer}/, which is not a known layer (add it to ALLOWED)")
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE.match(line)
            if m and m.group(1) in ALLOWED and m.group(1) not in ALLOWED[layer]:
                problems.append(f"{rel}:{number}: {layer} includes {m.group(1)}/ (a layer above it): {line.strip()}")
            if layer != "vm":
                code = strip_comments(line)
                for pattern, what in QMP_SPEAKING:
                    if pattern.search(code):
                        problems.append(f"{rel}:{number}: outside src/vm/, {what}: {line.strip()}")
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        files = {
            "base/ok.h": '#include "base/result.h"\n',
            "daemon/up.cpp": '#include "ci/jobs/job_runner.h"\n#include "vm/vm.h"\n',
            "vm/up.cpp": '#include "daemon/store/store.h"\n',
            "agent/up.cpp": '#include "vm/vm.h"\n',
            "daemon/qmp.cpp": 'auto r = vm.qmp().execute("stop");\n',
            "ci/qmp.h": '#include "vm/qmp_client.h"\n',
            "kilnd/raw.cpp": 'json cmd = {{"execute", "cont"}};\n',
            "kilnd/fine.cpp": '#include "ci/jobs/job_runner.h"\n// no qmp() here, only in a comment\n',
            "vm/fine.cpp": 'auto r = m_qmp->execute("stop"); json c = {{"execute", "cont"}};\n',
        }
        for name, text in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        found = check(src)
        expected = ["daemon/up.cpp:1", "vm/up.cpp:1", "agent/up.cpp:1", "daemon/qmp.cpp:1", "ci/qmp.h:1",
                    "kilnd/raw.cpp:1"]
        missing = [e for e in expected if not any(p.startswith(e + ":") for p in found)]
        wrong = [p for p in found if p.split(":")[0] in ("base/ok.h", "kilnd/fine.cpp", "vm/fine.cpp")
                 or p.startswith("daemon/up.cpp:2")]
        if missing or wrong or len(found) != len(expected):
            print("self-test failed", "\n  missing:", missing, "\n  wrongly reported:", wrong, "\n  all:", found)
            return 1
        print(f"self-test passed: {len(found)} planted violations reported, none of the allowed lines")
        return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent.parent / "src"
    problems = check(src)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} layering problem(s) in {src}")
        return 1
    print(f"layers: every include in {src} points down; QMP is spoken only in src/vm/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

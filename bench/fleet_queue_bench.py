"""fleet_queue_bench on a real PostgreSQL: starts one of its own as the fleet tests do
(tests/fleet/pg_server.py: Debian's initdb/pg_ctl as postgres, a unix socket in a temp dir, no
system service) and runs build/bench/fleet_queue_bench against it (arguments are passed on:
--hosts, --jobs, --run-ms, --scale). The binary alone (scripts/bench.sh runs it too) measures SQLite."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fleet"))

from pg_server import PgServer  # noqa: E402


def main() -> int:
    build = Path(os.environ.get("KILN_BUILD", "build/release"))
    if not build.is_absolute():
        build = REPO / build
    binary = build / "bench" / "fleet_queue_bench"
    if not binary.exists():
        print(f"{binary} does not exist (build the fleet_queue_bench target)", file=sys.stderr)
        return 2
    with PgServer("kiln_bench") as pg:
        return subprocess.run([str(binary), "--store", pg.url, *sys.argv[1:]]).returncode


if __name__ == "__main__":
    sys.exit(main())

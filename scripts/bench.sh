#!/usr/bin/env bash
# bench.sh BUILD_DIR: runs every benchmark; each prints medians and p99s with the accelerator.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:-build/release}
cd "$KILN_ROOT"
for b in "$build"/bench/*_bench; do
  log "bench: $(basename "$b")"
  "$b"
done
log "bench: fleet_queue_bench.py (the CI queue with simulated hosts on a PostgreSQL of its own)"
KILN_BUILD="$build" /usr/bin/python3 bench/fleet_queue_bench.py
log "bench: ci_bench.py (CI jobs on a real kilnd; needs the base image)"
KILN_BUILD="$build" /usr/bin/python3 bench/ci_bench.py
log "bench: pause_bench.py (pause and resume of tiny and base sandboxes beside a snapshot and a create from it; needs the base image)"
KILN_BUILD="$build" /usr/bin/python3 bench/pause_bench.py
log "bench: pipeline_bench.py (a 4-shard suite: fork fan-out, fresh VMs, a bake, one VM; needs the base image)"
KILN_BUILD="$build" /usr/bin/python3 bench/pipeline_bench.py
log "bench: e2b_bench.py (E2B's SDK through the E2B listener against Kiln's API; needs the base image and npm)"
KILN_BUILD="$build" /usr/bin/python3 bench/e2b_bench.py
log "bench: latency_bench.py (create and first output of tiny and base beside the floor: a pre-started QEMU echoing one byte; warm and cold spares; needs the base image for base)"
KILN_BUILD="$build" /usr/bin/python3 bench/latency_bench.py
log "bench: density_bench.py (create time and memory with 0 to 300 idle tiny sandboxes alive on one kilnd)"
KILN_BUILD="$build" /usr/bin/python3 bench/density_bench.py

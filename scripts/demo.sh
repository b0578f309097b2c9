#!/usr/bin/env bash
# demo.sh BUILD_DIR: Kiln's main job at this stage: boot a fresh microVM from the cached kernel
# and `tiny` image, run a command in it through kiln-agent, stream its output, destroy the VM.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:-build/release}
kiln="$KILN_ROOT/$build/src/cli/kiln"
"$kiln" doctor
log "demo: booting a fresh VM and running a command in it"
start=$(date +%s%N)
"$kiln" vm run --image tiny -- sh -c 'echo "hello from $(hostname), kernel $(uname -r)"; cat /proc/cpuinfo | grep -m1 "model name"; df -h / | tail -1'
log "demo: VM booted, ran the command and was destroyed in $(( ($(date +%s%N) - start) / 1000000 )) ms"

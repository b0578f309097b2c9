#!/usr/bin/env bash
# demo.sh BUILD_DIR: Kiln's main job on the embedded default: start kilnd (SQLite in the local data
# dir), get a token, create a sandbox from the built-in `tiny` template (restored from its baked
# snapshot), run a command in it, delete it; then run the CI pipeline of examples/widget
# (`kiln ci run`) in a fresh VM from the `base` template and print its result; stop kilnd. It prints
# the dashboard's address and where the token to sign in with is.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
build=${1:-build/release}
kiln="$KILN_ROOT/$build/src/cli/kiln"
kilnd="$KILN_ROOT/$build/src/kilnd/kilnd"
export KILN_DATA_DIR=${KILN_DATA_DIR:-/var/lib/kiln}
listen=${KILN_LISTEN:-127.0.0.1:7070}
export KILN_URL="http://$listen"

"$kiln" doctor

logfile=$(mktemp /tmp/kilnd-demo.XXXXXX.log)
log "demo: starting kilnd on $listen (data dir $KILN_DATA_DIR, log $logfile)"
KILN_LISTEN=$listen "$kilnd" serve 2>"$logfile" &
kilnd_pid=$!
token_file=""
stop_kilnd() {
  # The token's file goes with the demo: an admin token must not lie about in /tmp.
  [[ -n $token_file ]] && rm -f "$token_file"
  if kill -0 "$kilnd_pid" 2>/dev/null; then
    kill -TERM "$kilnd_pid"
    wait "$kilnd_pid" || true
  fi
}
trap stop_kilnd EXIT

for _ in $(seq 1 300); do
  curl -sf "$KILN_URL/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$kilnd_pid" 2>/dev/null; then
    tail -20 "$logfile" >&2
    die "kilnd exited during start-up (log above)"
  fi
  sleep 0.1
done
curl -sf "$KILN_URL/healthz" >/dev/null || die "kilnd did not answer /healthz within 30 s (log: $logfile)"

KILN_TOKEN=$("$kilnd" token create --name "demo-$(date +%s)" --scope admin)
export KILN_TOKEN
# The dashboard (docs/dashboard.md): the token goes to a file only its owner reads, not the log.
token_file=$(mktemp /tmp/kiln-demo-token.XXXXXX)
chmod 600 "$token_file"
printf '%s\n' "$KILN_TOKEN" >"$token_file"
log "demo: the dashboard is at $KILN_URL/ui/ while the demo runs (KILN_DEMO_KEEP=1 keeps kilnd up after it);"
log "demo: sign in with the token in $token_file (or make your own: $kilnd token create --name me --scope admin)"

log "demo: creating a sandbox from the tiny template (the first run bakes the template: boot + snapshot)"
start=$(date +%s%N)
id=$("$kiln" sandbox create --template tiny --ttl 300 --meta kind=demo)
log "demo: sandbox $id ready in $(( ($(date +%s%N) - start) / 1000000 )) ms"
"$kiln" sandbox exec "$id" -- sh -c 'echo "hello from $(hostname), kernel $(uname -r)"; df -h / | tail -1'
"$kiln" sandbox rm "$id"
log "demo: sandbox $id deleted"

log "demo: running the CI pipeline of examples/widget in a fresh VM (the first run bakes the base"
log "demo: template and the widget's dependencies; later runs restore both from snapshots)"
set +e
"$kiln" ci run "$KILN_ROOT/examples/widget"
status=$?
set -e
case $status in
  0) log "demo: the widget's pipeline passed" ;;
  1) log "demo: the widget's pipeline FAILED (its tests failed)" ;;
  *) log "demo: the widget's pipeline could not run (status $status; kilnd log: $logfile)" ;;
esac
if [[ ${KILN_DEMO_KEEP:-0} == 1 ]]; then
  log "demo: kilnd keeps running for the dashboard at $KILN_URL/ui/ (token in $token_file); Ctrl-C stops it"
  wait "$kilnd_pid" || true
fi
log "demo: stopping kilnd"
trap - EXIT
stop_kilnd
log "demo: done"
exit "$status"

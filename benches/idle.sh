#!/usr/bin/env bash
# Idle CPU of the daemon: how much of one core an idle release-guardian uses
# while 1,000 watches sleep between ticks.
#
#   benches/idle.sh [SECONDS]        # default 60
#
# Builds the release binary, starts a local HTTP endpoint (python3) that
# answers every GET (the probes) and POST (the webhooks) with 200, writes a
# config with 10 services x 100 environments (1,000 service entries: a watch
# is per service *and* environment, and a new release supersedes the watch of
# the same pair, so 1,000 concurrent watches need 1,000 pairs), each with one
# probe on that endpoint, a cadence of one tick an hour, and 3 webhook
# notifiers on the endpoint; registers 1,000 releases through the API, waits
# for them to settle (first tick done, outbox drained), then reads the
# daemon's utime+stime from /proc/PID/stat over SECONDS and prints the % of
# one core, and its threads' context switches (wake-ups) over the same
# time. Env: CARGO_TARGET_DIR (where the binary is), RG_BIN (skip the
# build and use this binary), KEEP=1 (keep the temp dir).
set -euo pipefail

SECONDS_TO_MEASURE=${1:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${RG_BIN:-}" ]]; then
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" >&2
    RG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/release-guardian"
fi
DIR=$(mktemp -d /tmp/rg-idle.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ "${KEEP:-0}" == 1 ]] && echo "kept $DIR" >&2 || rm -rf "$DIR"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The endpoint: 200 to everything, quietly.
ENDPOINT_PORT=$(free_port)
cat >"$DIR/endpoint.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _ok(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_GET = _ok
    do_POST = _ok
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
python3 "$DIR/endpoint.py" "$ENDPOINT_PORT" &
PIDS+=($!)

API_PORT=$(free_port)
cat >"$DIR/rules.yaml" <<'EOF'
checks:
  - name: live
    source: probe
    probe: live
    critical: { failures: 3 }
EOF
{
    echo "[server]"
    echo "listen = \"127.0.0.1:$API_PORT\""
    echo "[store]"
    echo "path = \"guardian.db\""
    for n in 1 2 3; do
        echo "[notifiers.hook$n]"
        echo "kind = \"webhook\""
        echo "url = \"http://127.0.0.1:$ENDPOINT_PORT/hook$n\""
    done
    for s in $(seq -w 0 9); do
        for e in $(seq -w 0 99); do
            cat <<EOF
[[services]]
name = "svc$s"
environment = "env$e"
rules = ["rules.yaml"]
notify = ["hook1", "hook2", "hook3"]
  [services.cadence]
  tiers = [ { until = "6h", every = "1h" } ]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:$ENDPOINT_PORT/health"
  timeout = "2s"
EOF
        done
    done
} >"$DIR/guardian.toml"

"$RG_BIN" check --config "$DIR/guardian.toml" >&2
RUST_LOG=warn "$RG_BIN" run --config "$DIR/guardian.toml" 2>"$DIR/daemon.log" &
DAEMON=$!
PIDS+=($DAEMON)
API="http://127.0.0.1:$API_PORT"
for _ in $(seq 1 300); do
    curl -fs "$API/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "$API/readyz" >/dev/null || { echo "daemon not ready" >&2; cat "$DIR/daemon.log" >&2; exit 1; }

echo "registering 1000 releases..." >&2
python3 - "$API" <<'EOF'
import json, sys, urllib.request
api = sys.argv[1]
for s in range(10):
    for e in range(100):
        body = json.dumps({"service": f"svc{s}", "environment": f"env{e:02d}",
                           "version": "v2", "previous_version": "v1"}).encode()
        req = urllib.request.Request(api + "/v1/releases", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            assert r.status in (200, 201), r.status
EOF

# Settled: 1000 watches running, and two consecutive /metrics samples that
# show no tick or delivery in between.
metric() { curl -fs "$API/metrics" | awk -v m="$1" '$1 == m { s += $2 } END { print s + 0 }'; }
for _ in $(seq 1 120); do
    [[ $(metric rg_active_watches) == 1000 ]] && break
    sleep 1
done
echo "active watches: $(metric rg_active_watches)" >&2
sleep 10

CLK_TCK=$(getconf CLK_TCK)
ticks() { awk '{ print $14 + $15 }' "/proc/$DAEMON/stat"; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$DAEMON/status"; }
# Context switches of all the daemon's threads: each time one of them slept
# and was woken (or was preempted), i.e. its wake-ups.
switches() { cat /proc/"$DAEMON"/task/*/status 2>/dev/null | awk '/ctxt_switches:/ { s += $2 } END { print s + 0 }'; }
t0=$(ticks)
w0=$(switches)
start=$(date +%s.%N)
sleep "$SECONDS_TO_MEASURE"
t1=$(ticks)
w1=$(switches)
end=$(date +%s.%N)
python3 - "$t0" "$t1" "$start" "$end" "$CLK_TCK" "$(threads)" "$w0" "$w1" <<'EOF'
import sys
t0, t1, start, end, hz, threads, w0, w1 = map(float, sys.argv[1:])
cpu = (t1 - t0) / hz
wall = end - start
print(f"idle daemon (1000 watches, 10 services x 100 environments, 3 webhook notifiers): "
      f"{cpu:.2f} s CPU in {wall:.1f} s = {100 * cpu / wall:.2f}% of one core ({int(threads)} threads), "
      f"{int(w1 - w0)} thread wake-ups ({(w1 - w0) / wall:.2f}/s)")
EOF

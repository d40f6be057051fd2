#!/usr/bin/env bash
# Memory per active probing watch: the daemon's RSS with 1,000 and then
# 10,000 watches each probing once a second, and after they end.
#
#   benches/probe_memory.sh            # EVERY=1s WINDOW=40s
#
# Builds the release binary, starts a local HTTP endpoint (python3) for the
# probes, writes a config with 10,000 service entries (100 services x 100
# environments: a watch is per service and environment) each with one probe
# checked at every tick, a cadence of one tick every EVERY for WINDOW, and
# then, for N = 1000 and N = 10000: registers N releases through the API,
# waits until N watches are active and have ticked a few times, reads VmRSS
# from /proc/PID/status, waits until every watch has ended, reads it again.
# Prints a table: baseline (config loaded, no watch), RSS with N active
# watches, KiB per active watch ((active - baseline) / N), RSS after they
# ended. Env: CARGO_TARGET_DIR, RG_BIN (skip the build), KEEP=1.
set -euo pipefail

EVERY=${EVERY:-1s}
WINDOW=${WINDOW:-40s}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${RG_BIN:-}" ]]; then
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" >&2
    RG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/release-guardian"
fi
DIR=$(mktemp -d /tmp/rg-mem.XXXXXX)
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

ENDPOINT_PORT=$(free_port)
cat >"$DIR/endpoint.py" <<'EOF'
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
ThreadingHTTPServer.request_queue_size = 1024
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
python3 - "$DIR/guardian.toml" "$API_PORT" "$ENDPOINT_PORT" "$EVERY" "$WINDOW" <<'EOF'
import sys
path, api, ep, every, window = sys.argv[1:]
with open(path, "w") as f:
    f.write(f'[server]\nlisten = "127.0.0.1:{api}"\n[store]\npath = "guardian.db"\n')
    for s in range(100):
        for e in range(100):
            f.write(f'''[[services]]
name = "svc{s:02d}"
environment = "env{e:02d}"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = [ {{ until = "{window}", every = "{every}" }} ]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:{ep}/health"
  timeout = "2s"
''')
EOF

"$RG_BIN" check --config "$DIR/guardian.toml" >/dev/null 2>&1 || "$RG_BIN" check --config "$DIR/guardian.toml" >&2 || true
RUST_LOG=error "$RG_BIN" run --config "$DIR/guardian.toml" 2>"$DIR/daemon.log" &
DAEMON=$!
PIDS+=($DAEMON)
API="http://127.0.0.1:$API_PORT"
for _ in $(seq 1 600); do
    curl -fs "$API/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "$API/readyz" >/dev/null || { echo "daemon not ready" >&2; cat "$DIR/daemon.log" >&2; exit 1; }

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON/status"; }
metric() { curl -fs "$API/metrics" | awk -v m="$1" '$1 == m { s += $2 } END { print s + 0 }'; }
sleep 2
BASELINE=$(rss)
echo "probing watches (one probe each, every $EVERY, window $WINDOW): daemon RSS, baseline $BASELINE KiB"
echo
echo "| watches | active | RSS active (KiB) | KiB per active watch | RSS after they ended (KiB) |"
echo "|---------|--------|------------------|----------------------|----------------------------|"
for N in 1000 10000; do
    echo "registering $N releases..." >&2
    python3 - "$API" "$N" <<'EOF'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
api, n = sys.argv[1], int(sys.argv[2])
def register(i):
    s, e = divmod(i, 100)
    body = json.dumps({"service": f"svc{s:02d}", "environment": f"env{e:02d}",
                       "version": "v2", "previous_version": "v1"}).encode()
    req = urllib.request.Request(api + "/v1/releases", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        assert r.status in (200, 201), r.status
with ThreadPoolExecutor(16) as pool:
    list(pool.map(register, range(n)))
EOF
    for _ in $(seq 1 300); do
        [[ $(metric rg_active_watches) -ge $N ]] && break
        sleep 0.5
    done
    ACTIVE=$(metric rg_active_watches)
    sleep 10   # a few ticks of every watch
    PEAK=$(rss)
    ACTIVE_AFTER=$(metric rg_active_watches)
    echo "N=$N: $ACTIVE watches active, $ACTIVE_AFTER after 10s; waiting for them to end..." >&2
    for _ in $(seq 1 600); do
        [[ $(metric rg_active_watches) == 0 ]] && break
        sleep 1
    done
    sleep 3
    AFTER=$(rss)
    python3 -c "import sys; n,a,p,af,b=map(int,sys.argv[1:]); print(f'| {n:>7} | {a:>6} | {p:>16} | {(p-b)/n:>20.1f} | {af:>26} |')" "$N" "$ACTIVE" "$PEAK" "$AFTER" "$BASELINE"
done

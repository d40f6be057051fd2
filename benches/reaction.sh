#!/usr/bin/env bash
# Reaction time, side by side, in one run: the same injected fault on the
# same real local HTTP target, judged by the same rule with the same `for`,
#
#   (a) release-guardian on the default tiers (first tier: a tick every 5m)
#       with sentinel_every and escalate_every on (the defaults: between
#       ticks it looks at the check every step, 15 s, and ticks at once when
#       it looks worse; then it ticks every step), reading a real Prometheus that
#       scrapes the target every 15 s; the action is its rollback hook, which
#       writes a timestamp;
#   (b) that Prometheus (15 s scrape and evaluation) with an alerting rule of
#       the same expr and `for` -> a real Alertmanager (default group_wait
#       30 s) -> a webhook receiver that writes a timestamp.
#
#   benches/reaction.sh                 # fault 30 s after the release is registered
#   FAULT_AFTER=270 benches/reaction.sh # fault 30 s before the guardian's first tick
#
# The target serves 1,000 requests/s at 0.1 % errors (5xx); the fault makes
# it 20 %. The rule: error ratio over 1m > 5 % for 1m. The guardian's check
# also has a warning level at the same line without `for` (so the check
# leaves `ok`, and the watch escalates to its 15 s step, as soon as a tick
# sees the breach). The release is registered once Prometheus holds 2 minutes
# of healthy history; the fault comes FAULT_AFTER seconds later (default 30).
# Prints fault->action seconds for both and the ratio.
#
# Needs Debian's prometheus and prometheus-alertmanager (installed with
# apt-get when missing), python3, curl. Env: CARGO_TARGET_DIR (where the
# binary is), RG_BIN (skip the build and use this binary; the default is the
# debug build: reaction time is waiting, not CPU), KEEP=1 (keep the temp dir).
set -euo pipefail

FAULT_AFTER=${FAULT_AFTER:-30}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUDO=$([[ $(id -u) == 0 ]] || echo sudo)
need=()
[[ -x /usr/bin/prometheus ]] || need+=(prometheus)
[[ -x /usr/bin/prometheus-alertmanager ]] || need+=(prometheus-alertmanager)
if ((${#need[@]})); then
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
if [[ -z "${RG_BIN:-}" ]]; then
    cargo build --locked --manifest-path "$ROOT/Cargo.toml" >&2
    RG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/release-guardian"
fi
DIR=$(mktemp -d /tmp/rg-reaction.XXXXXX)
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
now() { date +%s.%N; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# The target: counters growing at 1,000 requests/s; GET /fault?ratio=R sets
# the 5xx share from now on.
TARGET_PORT=$(free_port)
cat >"$DIR/target.py" <<'EOF'
import sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs
lock = threading.Lock()
state = {"ok": 100000.0, "err": 100.0, "since": time.time(), "ratio": 0.001}
def counts():
    n = (time.time() - state["since"]) * 1000.0
    return state["ok"] + n * (1 - state["ratio"]), state["err"] + n * state["ratio"]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        u = urlparse(self.path)
        with lock:
            if u.path == "/fault":
                ok, err = counts()
                state.update(ok=ok, err=err, since=time.time(), ratio=float(parse_qs(u.query)["ratio"][0]))
                body = "ok\n"
            else:
                ok, err = counts()
                body = ('# TYPE http_requests_total counter\n'
                        'http_requests_total{service="checkout",code="200"} %.3f\n'
                        'http_requests_total{service="checkout",code="500"} %.3f\n' % (ok, err))
        b = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
python3 "$DIR/target.py" "$TARGET_PORT" &
PIDS+=($!)

# The peer's webhook receiver: the first POST's time goes to peer.ts.
HOOK_PORT=$(free_port)
cat >"$DIR/receiver.py" <<'EOF'
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        t = time.time()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not os.path.exists(sys.argv[2]):
            with open(sys.argv[2], "w") as f:
                f.write("%.3f\n" % t)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
python3 "$DIR/receiver.py" "$HOOK_PORT" "$DIR/peer.ts" &
PIDS+=($!)

RATIO='sum(rate(http_requests_total{service="checkout",code=~"5.."}[1m])) / sum(rate(http_requests_total{service="checkout"}[1m]))'

# Alertmanager, defaults but for the receiver (group_wait 30s is its default,
# written out).
AM_PORT=$(free_port)
cat >"$DIR/alertmanager.yml" <<EOF
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:$HOOK_PORT/
EOF
prometheus-alertmanager --config.file="$DIR/alertmanager.yml" --storage.path="$DIR/am" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= 2>"$DIR/am.log" &
PIDS+=($!)

# Prometheus: 15 s scrape and evaluation, the alerting rule, Alertmanager.
PROM_PORT=$(free_port)
cat >"$DIR/rules.yml" <<EOF
groups:
  - name: checkout
    rules:
      - alert: CheckoutErrorRate
        expr: $RATIO > 0.05
        for: 1m
EOF
cat >"$DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files: ['$DIR/rules.yml']
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['127.0.0.1:$AM_PORT']
scrape_configs:
  - job_name: target
    static_configs:
      - targets: ['127.0.0.1:$TARGET_PORT']
EOF
prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prom" \
    --web.listen-address="127.0.0.1:$PROM_PORT" 2>"$DIR/prometheus.log" &
PIDS+=($!)

# release-guardian: default tiers, escalate_every on (default); the same
# expr and `for`.
API_PORT=$(free_port)
cat >"$DIR/hook.sh" <<EOF
#!/bin/sh
[ -e "$DIR/guardian.ts" ] || date +%s.%N > "$DIR/guardian.ts"
EOF
chmod +x "$DIR/hook.sh"
cat >"$DIR/checks.yaml" <<EOF
checks:
  - name: error_rate
    source: prometheus
    query: '$RATIO'
    step: 15s
    warning: { above: 0.05 }
    rollback: { above: 0.05, for: 1m }
EOF
cat >"$DIR/guardian.toml" <<EOF
[server]
listen = "127.0.0.1:$API_PORT"
[store]
path = "$DIR/guardian.db"
[sources.prometheus]
url = "http://127.0.0.1:$PROM_PORT"
[[services]]
name = "checkout"
rules = ["checks.yaml"]
  [services.rollback]
  command = ["$DIR/hook.sh"]
  mode = "auto"
EOF
API="http://127.0.0.1:$API_PORT"
"$RG_BIN" check --config "$DIR/guardian.toml" >&2
RUST_LOG=warn "$RG_BIN" run --config "$DIR/guardian.toml" 2>"$DIR/daemon.log" &
PIDS+=($!)

wait_until() { # what timeout_s command...
    local what=$1 timeout=$2 end
    shift 2
    end=$(($(date +%s) + timeout))
    until "$@" >/dev/null 2>&1; do
        if (($(date +%s) > end)); then
            echo "timed out waiting for $what" >&2
            tail -5 "$DIR"/*.log >&2
            exit 1
        fi
        sleep 1
    done
}
prom_has() { # a query with a non-empty result
    curl -fsG "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] else 1)'
}
wait_until "the daemon" 60 curl -fs "$API/readyz"
wait_until "alertmanager" 60 curl -fs "http://127.0.0.1:$AM_PORT/-/ready"
log "waiting for 2 minutes of healthy history in Prometheus"
wait_until "history" 300 prom_has 'count_over_time(up{job="target"}[3m]) >= 9'

ID=$(curl -fs -XPOST "$API/v1/releases" -H 'content-type: application/json' \
    -d '{"service":"checkout","version":"v2","previous_version":"v1"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
REGISTERED=$(now)
log "release $ID registered; the fault comes in ${FAULT_AFTER}s"
sleep "$FAULT_AFTER"
curl -fs "http://127.0.0.1:$TARGET_PORT/fault?ratio=0.2" >/dev/null
FAULT=$(now)
log "fault injected (20 % errors); waiting for both actions"
end=$(($(date +%s) + 900))
until [[ -e "$DIR/guardian.ts" && -e "$DIR/peer.ts" ]]; do
    (($(date +%s) > end)) && { echo "no action from one of them within 15 minutes" >&2; break; }
    sleep 1
done
RELEASE=$(curl -fs "$API/v1/releases/$ID")

python3 - "$REGISTERED" "$FAULT" "$DIR" "$RELEASE" <<'EOF'
import json, os, sys
from datetime import datetime
registered, fault, d, release = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
def ts(name):
    p = os.path.join(d, name)
    return float(open(p).read()) if os.path.exists(p) else None
g, p = ts("guardian.ts"), ts("peer.ts")
def t(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print(f"fault injected {fault - registered:.0f} s after the release was registered")
print("decisions of the guardian (s after the fault: decided / data instant):")
for x in release.get("decisions", []):
    if x.get("check") == "error_rate" or x["action"].startswith("rollback"):
        obs = f" / {t(x['observed_at']) - fault:7.1f}" if x.get("observed_at") else ""
        print(f"  {t(x['at']) - fault:7.1f}{obs}  {x['action']} {x.get('level') or ''}: {x['reason'][:90]}")
print()
print(f"{'':52} {'fault -> action':>16}")
fmt = lambda v: f"{v - fault:14.1f} s" if v else "       none"
print(f"{'release-guardian (default tiers, looks + escalation)':52} {fmt(g)}")
print(f"{'Prometheus -> Alertmanager -> webhook':52} {fmt(p)}")
if g and p:
    print(f"{'ratio guardian / peer':52} {(g - fault) / (p - fault):14.2f}")
EOF

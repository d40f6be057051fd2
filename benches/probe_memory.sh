#!/usr/bin/env bash
# Memory per active probing watch: the daemon's RSS idle, with 1,000 and
# with 10,000 watches each probing once a second, and after they end.
#
#   benches/probe_memory.sh            # EVERY=1s
#
# Builds the release binary and the local target (`examples/probe_target.rs`,
# a one-thread axum server answering `ok`, so the target is not the
# bottleneck) and writes a config with 10,000 service entries (100 services
# x 100 environments: a watch is per service and environment), each with
# one probe checked at every tick. A watch's cadence: a first tick DELAY
# after its registration (so that registering thousands of releases does
# not queue behind the ticks of those already registered), then one every
# EVERY for ACTIVE, then the window ends and the watch with it. Then, for
# N in WATCHES:
#   - registers N releases through the API (32 clients in parallel),
#   - waits until every watch has ticked (rg_ticks_total grew by N), lets
#     them tick for SETTLE seconds and reads VmRSS from /proc/PID/status
#     (and the tick rate over that time: the store commits every tick, so
#     with 10,000 watches the rate is what the disk allows, not 10,000/s),
#   - waits until every watch has ended (their windows end), no watch task
#     is alive and the probe gauges are gone, then TRIM_WAIT seconds, and
#     reads VmRSS again.
# Prints a table: RSS just before registering, RSS with N active watches,
# KiB per active watch ((active - before) / N), RSS after they ended and its
# difference from the baseline (idle, config loaded, before any watch). The
# first run's "before" is the baseline, which still holds what loading the
# config freed (glibc returns it at the first trim, after a run's watches
# end), so its per-watch figure may understate; a later run starts from the
# trimmed heap.
# Env: CARGO_TARGET_DIR, RG_BIN and TARGET_BIN (skip the build), EVERY (1s),
# DELAY (300s), ACTIVE (120s), SETTLE (15), TRIM_WAIT (5), WATCHES
# ("1000 10000"), KEEP=1 (keep the temp dir), DAEMON_PRELOAD (LD_PRELOAD for
# the daemon alone, to compare allocators: e.g.
# /usr/lib/x86_64-linux-gnu/libjemalloc.so.2).
set -euo pipefail

EVERY=${EVERY:-1s}
DELAY=${DELAY:-300s}
ACTIVE=${ACTIVE:-120s}
SETTLE=${SETTLE:-15}
TRIM_WAIT=${TRIM_WAIT:-5}
WATCHES=${WATCHES:-1000 10000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ -z "${RG_BIN:-}" ]]; then
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" \
        --bin release-guardian --example probe_target >&2
    RG_BIN="$TARGET_DIR/release/release-guardian"
fi
TARGET_BIN="${TARGET_BIN:-$TARGET_DIR/release/examples/probe_target}"

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

TARGET_PORT=$(free_port)
"$TARGET_BIN" "$TARGET_PORT" &
PIDS+=($!)

API_PORT=$(free_port)
cat >"$DIR/rules.yaml" <<'EOF'
checks:
  - name: live
    source: probe
    probe: live
    critical: { failures: 3 }
EOF
python3 - "$DIR/guardian.toml" "$API_PORT" "$TARGET_PORT" "$EVERY" "$DELAY" "$ACTIVE" <<'EOF'
import sys
path, api, port, every, delay, active = sys.argv[1:]
def seconds(d):
    return int(d[:-1]) * {"s": 1, "m": 60, "h": 3600}[d[-1]]
until = f"{seconds(delay) + seconds(active)}s"
with open(path, "w") as f:
    f.write(f'[server]\nlisten = "127.0.0.1:{api}"\n[store]\npath = "guardian.db"\n')
    for s in range(100):
        for e in range(100):
            f.write(f'''[[services]]
name = "svc{s:02d}"
environment = "env{e:02d}"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = [ {{ until = "{delay}", every = "{delay}" }}, {{ until = "{until}", every = "{every}" }} ]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:{port}/health"
  timeout = "2s"
''')
EOF

"$RG_BIN" check --config "$DIR/guardian.toml" >/dev/null 2>&1 || "$RG_BIN" check --config "$DIR/guardian.toml" >&2
RUST_LOG=error LD_PRELOAD="${DAEMON_PRELOAD:-}" "$RG_BIN" run --config "$DIR/guardian.toml" 2>"$DIR/daemon.log" &
DAEMON=$!
PIDS+=($DAEMON)
API="http://127.0.0.1:$API_PORT"
for _ in $(seq 1 600); do
    curl -fs "$API/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "$API/readyz" >/dev/null || { echo "daemon not ready" >&2; cat "$DIR/daemon.log" >&2; exit 1; }

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON/status"; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$DAEMON/status"; }
metric() { curl -fs "$API/metrics" | awk -v m="$1" '$1 == m { s += $2 } END { print s + 0 }'; }
probe_gauges() { curl -fs "$API/metrics" | grep -c '^rg_probe_latency_seconds{' || true; }

# Registers releases with 32 clients in parallel, each on its own
# keep-alive connection: `client.py API N RUN`. The version names the run, so
# a later run's releases are new watches, not the ended releases of an
# earlier run (the same version again returns the existing release).
cat >"$DIR/client.py" <<'EOF'
import http.client, json, sys, threading
from concurrent.futures import ThreadPoolExecutor
api, n, run = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host, port = api.removeprefix("http://").split(":")
local = threading.local()
def register(i):
    if not hasattr(local, "c"):
        local.c = http.client.HTTPConnection(host, int(port), timeout=300)
    s, e = divmod(i, 100)
    body = json.dumps({"service": f"svc{s:02d}", "environment": f"env{e:02d}",
                       "version": f"v2-run{run}", "previous_version": "v1"})
    local.c.request("POST", "/v1/releases", body=body,
                    headers={"Content-Type": "application/json"})
    r = local.c.getresponse()
    data = r.read()
    assert r.status in (200, 201), (r.status, data[:200])
with ThreadPoolExecutor(32) as pool:
    list(pool.map(register, range(n)))
EOF

wait_for() {  # wait_for SECONDS COMMAND...: polls COMMAND every 0.5 s
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; exit 1; }
        sleep 0.5
    done
}
ticked_since() { (($(metric rg_ticks_total) >= $1)); }
all_ended() { (($(metric rg_active_watches) == 0 && $(metric rg_watch_tasks) == 0 && $(probe_gauges) == 0)); }

sleep 3
BASELINE=$(rss)
echo "probing watches (one probe each, a tick every $EVERY for $ACTIVE after a first tick at $DELAY): daemon RSS, baseline (idle, 10,000 services configured) $BASELINE KiB"
echo
echo "| watches | ticks/s while active | RSS before (KiB) | RSS active (KiB) | KiB per active watch | RSS after they ended (KiB) | after − baseline (KiB) |"
echo "|---------|----------------------|------------------|------------------|----------------------|----------------------------|------------------------|"
RUN=0
for N in $WATCHES; do
    RUN=$((RUN + 1))
    echo "registering $N releases..." >&2
    t0=$SECONDS
    START=$(metric rg_ticks_total)
    BEFORE=$(rss)
    python3 "$DIR/client.py" "$API" "$N" "$RUN"
    echo "  registered in $((SECONDS - t0)) s; waiting for their first ticks" >&2
    wait_for 900 ticked_since $((START + N))
    T0=$(metric rg_ticks_total)
    sleep "$SETTLE"
    TICKS=$(($(metric rg_ticks_total) - T0))
    PEAK=$(rss)
    ACTIVE_NOW=$(metric rg_active_watches)
    echo "  $ACTIVE_NOW watches active, $TICKS ticks in $SETTLE s; $(threads) threads; waiting for the windows to end" >&2
    ((ACTIVE_NOW == N)) || echo "  warning: $ACTIVE_NOW watches active, not $N (ACTIVE too short?)" >&2
    t0=$SECONDS
    wait_for 1800 all_ended
    echo "  all ended $((SECONDS - t0)) s later" >&2
    sleep "$TRIM_WAIT"
    AFTER=$(rss)
    echo "  $(threads) threads after" >&2
    python3 -c "import sys; n,t,s,bf,p,af,b=map(int,sys.argv[1:]); print(f'| {n:>7} | {t/s:>20.0f} | {bf:>16} | {p:>16} | {(p-bf)/n:>20.1f} | {af:>26} | {af-b:>22} |')" \
        "$N" "$TICKS" "$SETTLE" "$BEFORE" "$PEAK" "$AFTER" "$BASELINE"
done

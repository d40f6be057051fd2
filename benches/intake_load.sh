#!/usr/bin/env bash
# Durable intake under load, as a deploy script sees it, side by side with
# Alertmanager's intake on the same machine.
#
#   benches/intake_load.sh [SECONDS]        # default 10 per side
#
# Builds the release binary, starts the daemon on a temp dir (one service
# whose first tick is an hour away, so watches do no work), and drives
# `wrk` (Debian's package; 2 threads, 16 connections) for SECONDS against
# `POST /v1/releases`, every request a distinct version of the service (so
# every 201 is a new watch that supersedes the previous one). Then the same
# wrk load against a real Alertmanager (`prometheus-alertmanager`, in
# memory) `POST /api/v2/alerts`, every request a distinct alert. Prints
# requests/s, p50 and p99 of each, the ratio, the number of 201s the daemon
# answered and the releases its store holds afterwards, the daemon's CPU per
# registration (from /proc/PID/stat) with the load average, and the disk's
# sync latency (one `fdatasync` of a 4 KiB write: a 201 waits for one, so
# 16 connections cannot go faster than 16 / that latency). On stderr: wrk's
# latency lines (mean, stdev, max, distribution) for each side, and the TCP
# segments retransmitted during the daemon's run.
#
# Env: CARGO_TARGET_DIR (where the binary is), RG_BIN (skip the build and
# use this binary), CONNECTIONS (default 16), KEEP=1 (keep the temp dir).
# Missing wrk or Alertmanager are installed with apt-get when possible.
set -euo pipefail

DURATION=${1:-10}
CONNECTIONS=${CONNECTIONS:-16}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AM_BIN=/usr/bin/prometheus-alertmanager

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[[ -x $AM_BIN ]] || need+=(prometheus-alertmanager)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    apt-get install -y "${need[@]}" >&2
fi

if [[ -z "${RG_BIN:-}" ]]; then
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" >&2
    RG_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/release-guardian"
fi
DIR=$(mktemp -d /tmp/rg-intake.XXXXXX)
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
wait_ready() { # URL LOG
    for _ in $(seq 1 300); do
        curl -fs "$1" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "not ready: $1" >&2
    cat "$2" >&2
    exit 1
}

# --- wrk scripts: distinct bodies per request, latency percentiles in a
# line the summary reads.
cat >"$DIR/common.lua" <<'EOF'
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
    thread:set("thread_id", #threads)
    table.insert(threads, thread)
end
function next_n()
    counter = counter + 1
    return thread_id .. "-" .. counter
end
function done(summary, latency, requests)
    local ok = 0
    for _, t in ipairs(threads) do ok = ok + (t:get("good") or 0) end
    io.write(string.format("RESULT requests=%d seconds=%.3f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d good=%d\n",
        summary.requests, summary.duration / 1e6,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status, ok))
end
EOF
cat >"$DIR/releases.lua" <<'EOF'
dofile(os.getenv("LUA_COMMON"))
good = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
    return wrk.format(nil, "/v1/releases",
        nil, '{"service":"bench","version":"v' .. next_n() .. '"}')
end
function response(status, headers, body)
    if status == 201 then good = good + 1 end
end
EOF
cat >"$DIR/alerts.lua" <<'EOF'
dofile(os.getenv("LUA_COMMON"))
good = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
    return wrk.format(nil, "/api/v2/alerts", nil,
        '[{"labels":{"alertname":"Bench","instance":"i' .. next_n() ..
        '","severity":"warning"},"annotations":{"summary":"load"}}]')
end
function response(status, headers, body)
    if status == 200 then good = good + 1 end
end
EOF

run_wrk() { # URL SCRIPT NAME -> RESULT line; wrk's own report to stderr
    LUA_COMMON="$DIR/common.lua" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        -s "$2" "$1" >"$DIR/wrk-$3.out" 2>&1 || { cat "$DIR/wrk-$3.out" >&2; exit 1; }
    # Latency's max and distribution, as wrk reports them.
    grep -E '^ +(Latency|50%|75%|90%|99%)' "$DIR/wrk-$3.out" | sed "s/^/$3: /" >&2
    grep '^RESULT' "$DIR/wrk-$3.out"
}

# --- release-guardian
API_PORT=$(free_port)
mkdir -p "$DIR/rg"
cat >"$DIR/rg/rules.yaml" <<'EOF'
checks:
  - name: live
    source: probe
    probe: live
    critical: { failures: 3 }
EOF
cat >"$DIR/rg/guardian.toml" <<EOF
[server]
listen = "127.0.0.1:$API_PORT"
[store]
path = "guardian.db"
[[services]]
name = "bench"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = [ { until = "6h", every = "1h" } ]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:9/never-probed"
EOF
"$RG_BIN" check --config "$DIR/rg/guardian.toml" >&2
RUST_LOG=warn "$RG_BIN" run --config "$DIR/rg/guardian.toml" 2>"$DIR/rg/daemon.log" &
RG_PID=$!
PIDS+=($RG_PID)
wait_ready "http://127.0.0.1:$API_PORT/readyz" "$DIR/rg/daemon.log"
echo "release-guardian: wrk -t2 -c$CONNECTIONS -d${DURATION}s POST /v1/releases" >&2
# The daemon's CPU (user + system clock ticks) over the run: CPU per
# registration depends far less on what else the machine runs than the rate.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# TCP segments retransmitted machine-wide (loopback included): a lost
# segment waits for a retransmission timeout (200 ms at least), which shows
# in the latency however fast the daemon is.
retrans() { awk '$1 == "Tcp:" && $2 ~ /^[0-9]/ {print $13}' /proc/net/snmp; }
RETRANS0=$(retrans)
CPU0=$(cpu_ticks "$RG_PID")
RG=$(run_wrk "http://127.0.0.1:$API_PORT" "$DIR/releases.lua" release-guardian)
RG_CPU_S=$(awk -v a="$CPU0" -v b="$(cpu_ticks "$RG_PID")" -v hz="$(getconf CLK_TCK)" 'BEGIN {print (b - a) / hz}')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
echo "TCP segments retransmitted during the release-guardian run: $(($(retrans) - RETRANS0))" >&2
STORED=$(sqlite3 "file:$DIR/rg/guardian.db?mode=ro" "SELECT count(*) FROM releases" 2>/dev/null || echo "?")

# --- Alertmanager (in memory)
AM_PORT=$(free_port)
mkdir -p "$DIR/am"
printf 'route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n' >"$DIR/am/am.yml"
"$AM_BIN" --config.file="$DIR/am/am.yml" --storage.path="$DIR/am/data" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= \
    2>"$DIR/am/am.log" &
PIDS+=($!)
wait_ready "http://127.0.0.1:$AM_PORT/-/ready" "$DIR/am/am.log"
echo "alertmanager: wrk -t2 -c$CONNECTIONS -d${DURATION}s POST /api/v2/alerts" >&2
AM=$(run_wrk "http://127.0.0.1:$AM_PORT" "$DIR/alerts.lua" alertmanager)

# --- the disk's sync latency where the store lives
SYNC_MS=$(python3 - "$DIR/synctest" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
n, t = 200, time.perf_counter()
for i in range(n):
    os.pwrite(fd, b"x" * 4096, 4096 * i)
    os.fdatasync(fd)
print(f"{(time.perf_counter() - t) / n * 1000:.2f}")
os.close(fd)
os.unlink(sys.argv[1])
EOF
)

python3 - "$RG" "$AM" "$STORED" "$SYNC_MS" "$CONNECTIONS" "$DURATION" "$RG_CPU_S" "$LOAD" <<'EOF'
import sys
def parse(line):
    return {k: float(v) for k, v in (f.split("=") for f in line.split()[1:])}
rg, am = parse(sys.argv[1]), parse(sys.argv[2])
stored, sync_ms, conns, secs = sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
cpu_s, load = float(sys.argv[7]), sys.argv[8]
rate = lambda r: r["good"] / r["seconds"]
print(f"wrk -t2 -c{conns} -d{secs}s, loopback, every request distinct")
print(f"| intake | requests/s (2xx) | p50 ms | p99 ms | non-2xx | socket errors |")
print(f"|---|---|---|---|---|---|")
for name, r in (("release-guardian POST /v1/releases (201, durable)", rg),
                ("Alertmanager POST /api/v2/alerts (in memory)", am)):
    print(f"| {name} | {rate(r):,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {int(r['non2xx'])} | {int(r['errors'])} |")
print(f"ratio release-guardian / Alertmanager: {rate(rg) / rate(am):.2f}x requests/s, "
      f"p99 {rg['p99_ms'] / am['p99_ms']:.2f}x")
print(f"201s answered: {int(rg['good'])}; releases in the store afterwards: {stored}")
if rg["good"]:
    print(f"release-guardian CPU: {cpu_s:.2f} s over the run, {cpu_s / rg['good'] * 1e6:,.0f} µs per registration; "
          f"load average at its end: {load}")
print(f"disk sync latency (fdatasync of 4 KiB): {sync_ms:.2f} ms; "
      f"{conns} connections waiting on one sync each cannot exceed ~{conns / sync_ms * 1000:,.0f}/s")
EOF

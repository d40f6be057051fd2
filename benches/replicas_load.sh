#!/usr/bin/env bash
# Many concurrent compressed watches over three replicas on one PostgreSQL,
# and the same workload on SQLite with one replica, side by side.
#
#   benches/replicas_load.sh            # WATCHES=10000 EVERY=30s
#
# Builds the release binary and the local probe target
# (`examples/probe_target.rs`), starts a PostgreSQL of its own (Debian's
# `postgresql` and `ss` (iproute2), installed with apt-get when missing: `initdb` in a temp
# dir, run as `nobody` under root, on a free loopback port, its default
# durability — fsync and synchronous_commit on — and pg_stat_statements
# loaded), and writes one config per replica with WATCHES service entries
# (a watch is per service and environment), each with one probe against
# the target; the replicas differ only in `[store] owner` and `listen`.
# A watch's cadence: a first tick DELAY after its registration (so
# registering does not queue behind ticks), then one every EVERY.
#
# For each case (PostgreSQL × 3 replicas, then SQLite × 1):
#   - registers WATCHES releases through the API (32 clients, spread over
#     the replicas; the replica that registers a release holds its watch),
#   - waits until every watch has ticked once (rg_ticks_total summed over
#     the replicas), then measures for MEASURE seconds:
#   - ticks, and ticks that started more than 1 s after their due time
#     (`rg_tick_lateness_seconds`: its count less its `le="1.0"` bucket),
#   - lease takeovers (`rg_lease_takeovers_total`: 0 when every replica
#     renews in time),
#   - on PostgreSQL, everything the cluster asked of the database in the
#     window, divided by the ticks: transactions (pg_stat_database
#     `xact_commit`), statements, each one client-server round trip
#     (pg_stat_statements `calls`, BEGIN and COMMIT included), rows
#     (`tup_returned + tup_fetched + tup_inserted + tup_updated +
#     tup_deleted`), and bytes both ways on the database's TCP connections
#     (the kernel's per-socket `bytes_acked` + `bytes_received`, `ss -ti`);
#     renewals, the outbox and heartbeats are in these figures too,
#   - CPU of the daemons and of PostgreSQL (utime + stime), in cores.
# Prints a Markdown table.
# Env: CARGO_TARGET_DIR, RG_BIN and TARGET_BIN (skip the build), WATCHES
# (10000), EVERY (30s), DELAY (120s), MEASURE (60), LEASE (30s), POOL (8,
# `[store] pool_size`), CASES ("postgres sqlite"), KEEP=1 (keep the temp
# dir), RG_TEST_POSTGRES_BIN (PostgreSQL's bin directory).
set -euo pipefail

WATCHES=${WATCHES:-10000}
EVERY=${EVERY:-30s}
DELAY=${DELAY:-120s}
MEASURE=${MEASURE:-60}
LEASE=${LEASE:-30s}
POOL=${POOL:-8}
CASES=${CASES:-postgres sqlite}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

need=()
[[ -n "${RG_TEST_POSTGRES_BIN:-}" ]] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi
PGBIN=${RG_TEST_POSTGRES_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

if [[ -z "${RG_BIN:-}" ]]; then
    cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" \
        --bin release-guardian --example probe_target >&2
    RG_BIN="$TARGET_DIR/release/release-guardian"
fi
TARGET_BIN="${TARGET_BIN:-$TARGET_DIR/release/examples/probe_target}"

DIR=$(mktemp -d /tmp/rg-replicas.XXXXXX)
chmod 755 "$DIR"
PIDS=()
PG_PID=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    # runuser does not pass signals on: stop the postmaster itself.
    [[ -f "$DIR/pg/data/postmaster.pid" ]] && kill -INT "$(head -1 "$DIR/pg/data/postmaster.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    [[ "${KEEP:-0}" == 1 ]] && echo "kept $DIR" >&2 || rm -rf "$DIR"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() {  # wait_for SECONDS COMMAND...: polls COMMAND every 0.5 s
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; exit 1; }
        sleep 0.5
    done
}

# ---- PostgreSQL ------------------------------------------------------------
as_pg() {  # runs a PostgreSQL program as nobody when root
    if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}
PG_PORT=$(free_port)
psql_q() { "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -XAtq -v ON_ERROR_STOP=1 "$@"; }
start_postgres() {
    mkdir -p "$DIR/pg"
    [ "$(id -u)" = 0 ] && chown nobody "$DIR/pg"
    as_pg "$PGBIN/initdb" -D "$DIR/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
    as_pg "$PGBIN/postgres" -D "$DIR/pg/data" -p "$PG_PORT" -k "$DIR/pg" \
        -c listen_addresses=127.0.0.1 -c max_connections=200 \
        -c shared_preload_libraries=pg_stat_statements \
        -c pg_stat_statements.track_utility=on >"$DIR/pg/postgres.log" 2>&1 &
    PG_PID=$!
    wait_for 60 "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
    psql_q -d postgres -c "CREATE DATABASE guardian"
    psql_q -d guardian -c "CREATE EXTENSION pg_stat_statements"
}

# ---- the workload ------------------------------------------------------------
TARGET_PORT=$(free_port)
"$TARGET_BIN" "$TARGET_PORT" &
PIDS+=($!)
cat >"$DIR/rules.yaml" <<'EOF'
checks:
  - name: live
    source: probe
    probe: live
    critical: { failures: 3 }
EOF

# write_config PATH LISTEN STORE_TOML: WATCHES service entries
write_config() {
    python3 - "$1" "$2" "$3" "$TARGET_PORT" "$EVERY" "$DELAY" "$WATCHES" "$DIR/rules.yaml" <<'EOF'
import sys
path, listen, store, port, every, delay, n, rules = sys.argv[1:]
n = int(n)
with open(path, "w") as f:
    f.write(f'[server]\nlisten = "{listen}"\n{store}\n')
    for i in range(n):
        s, e = divmod(i, 100)
        f.write(f'''[[services]]
name = "svc{s:03d}"
environment = "env{e:02d}"
rules = ["{rules}"]
  [services.cadence]
  tiers = [ {{ until = "{delay}", every = "{delay}" }}, {{ until = "24h", every = "{every}" }} ]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:{port}/health"
  timeout = "2s"
''')
EOF
}

# Registers releases with 32 clients in parallel, spread over the APIs
# given: `client.py N API...`.
cat >"$DIR/client.py" <<'EOF'
import http.client, json, sys, threading
from concurrent.futures import ThreadPoolExecutor
n, apis = int(sys.argv[1]), sys.argv[2:]
local = threading.local()
def register(i):
    api = apis[i % len(apis)]
    conns = local.__dict__.setdefault("c", {})
    if api not in conns:
        host, port = api.removeprefix("http://").split(":")
        conns[api] = http.client.HTTPConnection(host, int(port), timeout=300)
    c = conns[api]
    s, e = divmod(i, 100)
    body = json.dumps({"service": f"svc{s:03d}", "environment": f"env{e:02d}",
                       "version": "v2", "previous_version": "v1"})
    c.request("POST", "/v1/releases", body=body,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    assert r.status in (200, 201), (r.status, data[:200])
with ThreadPoolExecutor(32) as pool:
    list(pool.map(register, range(n)))
EOF

# Sums a metric (exact name with labels, as /metrics prints it) over APIs.
metric() {
    local name=$1; shift
    for api in "$@"; do curl -fs -m 30 "$api/metrics" || true; done |
        awk -v m="$name" '$1 == m { s += $2 } END { printf "%d\n", s + 0 }'
}
# "COUNT LE1": rg_tick_lateness_seconds' count and its le="1.0" bucket,
# each replica's pair read from one scrape, summed.
lateness() {
    for api in "$@"; do curl -fs -m 30 "$api/metrics" || true; done |
        awk '$1 == "rg_tick_lateness_seconds_count" { c += $2 }
             $1 == "rg_tick_lateness_seconds_bucket{le=\"1.0\"}" { l += $2 }
             END { printf "%d %d\n", c + 0, l + 0 }'
}
cpu_ticks() {  # utime + stime of the given pids, in clock ticks
    local t=0
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] || continue
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}
pg_pids() {  # the postmaster and its children (backends, writers)
    local pm; pm=$(head -1 "$DIR/pg/data/postmaster.pid")
    echo "$pm" $(pgrep -P "$pm")
}
# The bytes both ways on every established connection to PostgreSQL, per
# connection (peer address), as JSON: {"peer": bytes_acked + bytes_received}.
pg_socket_bytes() {
    ss -tinH state established "( sport = :$PG_PORT )" | python3 -c '
import json, re, sys
out, peer = {}, None
for line in sys.stdin:
    if not line.startswith((" ", "\t")):
        f = line.split()
        peer = f[-1] if f else None
        continue
    a = re.search(r"bytes_acked:(\d+)", line)
    r = re.search(r"bytes_received:(\d+)", line)
    if peer:
        out[peer] = (int(a.group(1)) if a else 0) + (int(r.group(1)) if r else 0)
print(json.dumps(out))'
}
pg_db_stats() {
    psql_q -d guardian -F ' ' -c "SELECT xact_commit, tup_returned + tup_fetched + tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = 'guardian'"
}
pg_calls() {
    psql_q -d guardian -c "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'guardian'"
}

HZ=$(getconf CLK_TCK)
ROWS=()

# run_case NAME REPLICAS
run_case() {
    local name=$1 n_replicas=$2
    local apis=() daemons=() store
    for ((i = 0; i < n_replicas; i++)); do
        local port; port=$(free_port)
        if [[ $name == postgres ]]; then
            store="[store]
url = \"postgres://postgres@127.0.0.1:$PG_PORT/guardian?sslmode=disable\"
owner = \"replica-$i\"
lease = \"$LEASE\"
pool_size = $POOL
state_dir = \"$DIR/state-$i\""
        else
            store="[store]
path = \"$DIR/guardian.db\""
        fi
        write_config "$DIR/$name-$i.toml" "127.0.0.1:$port" "$store"
        "$RG_BIN" check --config "$DIR/$name-$i.toml" >/dev/null 2>&1 || "$RG_BIN" check --config "$DIR/$name-$i.toml" >&2
        RUST_LOG=warn "$RG_BIN" run --config "$DIR/$name-$i.toml" 2>"$DIR/$name-$i.log" &
        daemons+=($!)
        PIDS+=($!)
        apis+=("http://127.0.0.1:$port")
    done
    for api in "${apis[@]}"; do
        wait_for 120 curl -fs -m 5 "$api/readyz" -o /dev/null
    done
    echo "[$name] registering $WATCHES releases over ${#apis[@]} replica(s)..." >&2
    local t0=$SECONDS
    python3 "$DIR/client.py" "$WATCHES" "${apis[@]}"
    echo "[$name]   registered in $((SECONDS - t0)) s; waiting for every first tick" >&2
    ticked() { (($(metric rg_ticks_total "${apis[@]}") >= WATCHES)); }
    wait_for 3600 ticked

    local ticks0 late0 le0 take0 cpu0 pgcpu0 xact0 tup0 calls0 bytes0
    ticks0=$(metric rg_ticks_total "${apis[@]}")
    read -r late0 le0 < <(lateness "${apis[@]}")
    take0=$(metric rg_lease_takeovers_total "${apis[@]}")
    cpu0=$(cpu_ticks "${daemons[@]}")
    if [[ $name == postgres ]]; then
        pgcpu0=$(cpu_ticks $(pg_pids))
        read -r xact0 tup0 < <(pg_db_stats)
        calls0=$(pg_calls)
        bytes0=$(pg_socket_bytes)
    fi
    echo "[$name]   measuring for $MEASURE s" >&2
    sleep "$MEASURE"
    local ticks late le take cpu pgcpu=0 xact=0 tup=0 calls=0 bytes=0
    ticks=$(($(metric rg_ticks_total "${apis[@]}") - ticks0))
    local late1 le1
    read -r late1 le1 < <(lateness "${apis[@]}")
    late=$((late1 - late0))
    le=$((le1 - le0))
    take=$(($(metric rg_lease_takeovers_total "${apis[@]}") - take0))
    cpu=$(($(cpu_ticks "${daemons[@]}") - cpu0))
    if [[ $name == postgres ]]; then
        pgcpu=$(($(cpu_ticks $(pg_pids)) - pgcpu0))
        local xact1 tup1
        read -r xact1 tup1 < <(pg_db_stats)
        xact=$((xact1 - xact0)); tup=$((tup1 - tup0))
        calls=$(($(pg_calls) - calls0))
        bytes=$(python3 -c 'import json,sys; a,b=json.loads(sys.argv[1]),json.loads(sys.argv[2]); print(sum(v - a.get(k, 0) for k, v in b.items()))' "$bytes0" "$(pg_socket_bytes)")
    fi
    local active
    active=$(metric rg_active_watches "${apis[@]}")
    ROWS+=("$(python3 - "$name" "$n_replicas" "$active" "$ticks" "$late" "$le" "$take" "$cpu" "$pgcpu" "$xact" "$calls" "$tup" "$bytes" "$MEASURE" "$HZ" <<'EOF'
import sys
name, reps, active, ticks, late, le, take, cpu, pgcpu, xact, calls, tup, nbytes, secs, hz = sys.argv[1:]
reps, active, ticks, late, le, take, cpu, pgcpu, xact, calls, tup, nbytes, secs, hz = map(int, (reps, active, ticks, late, le, take, cpu, pgcpu, xact, calls, tup, nbytes, secs, hz))
over = late - le
per = lambda v: f"{v / ticks:.1f}" if ticks and name == "postgres" else "—"
print(f"| {name} | {reps} | {active:,} | {ticks:,} ({ticks / secs:.0f}/s) | {over:,} ({100 * over / max(late, 1):.1f} %) | {take} "
      f"| {per(xact)} | {per(calls)} | {per(tup)} | {per(nbytes)} | {cpu / hz / secs:.2f} | "
      + (f"{pgcpu / hz / secs:.2f}" if name == "postgres" else "—") + " |")
EOF
)")
    echo "[$name]   ${ROWS[-1]}" >&2
    for p in "${daemons[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${daemons[@]}"; do wait "$p" 2>/dev/null || true; done
}

for c in $CASES; do
    case $c in
        postgres) start_postgres; run_case postgres 3 ;;
        sqlite) run_case sqlite 1 ;;
        *) echo "unknown case $c" >&2; exit 2 ;;
    esac
done

echo
echo "$WATCHES watches, one probe each against a local target, a tick every $EVERY (first tick $DELAY after registration); measured over $MEASURE s once every watch had ticked; lease $LEASE"
echo
echo "| store | replicas | watches active | ticks (rate) | ticks late > 1 s | lease takeovers | DB transactions / tick | DB round trips (statements) / tick | DB rows / tick | DB bytes / tick | daemons' CPU (cores) | PostgreSQL CPU (cores) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for r in "${ROWS[@]}"; do echo "$r"; done

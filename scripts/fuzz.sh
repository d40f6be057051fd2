#!/usr/bin/env bash
# Fuzzes the parsers (docs/development.md, "Fuzzing"): each target in fuzz/
# in turn, SECONDS each (default 600), with libFuzzer through cargo fuzz on
# the nightly toolchain. Not part of scripts/test.sh or CI (stable only).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Targets (default: all): webhook_github webhook_gitlab webhook_argocd
# webhook_flux release rule_pack config exposition. Each starts from its seeds
# (fuzz/seeds/TARGET, made by fuzz/make-seeds.py) and its own growing corpus
# (fuzz/corpus/TARGET, not committed); a crash, hang (over 10 s) or memory
# blowup (over 2 GB) stops that target and leaves the input in
# fuzz/artifacts/TARGET/. Logs go to fuzz/logs/TARGET.log; a summary table
# (executions, seconds, result) ends the run. Builds go to $CARGO_TARGET_DIR
# when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(webhook_github webhook_gitlab webhook_argocd webhook_flux release rule_pack config exposition)
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 2
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
[ -d fuzz/seeds/webhook_github ] || python3 fuzz/make-seeds.py

# No sanitizer: the crate forbids unsafe code, and without ASan the targets
# run several times faster. Debug assertions and overflow checks stay on.
opts=(-s none)
[ -n "${CARGO_TARGET_DIR:-}" ] && opts+=(--target-dir "$CARGO_TARGET_DIR")
cargo +nightly fuzz build "${opts[@]}"

mkdir -p fuzz/logs
summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    echo "==> $t for ${secs}s"
    start=$(date +%s)
    if cargo +nightly fuzz run "${opts[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"fuzz/logs/$t.log" 2>&1; then
        result="no crash"
    else
        result="FOUND: $(grep -o 'Test unit written to .*' "fuzz/logs/$t.log" | tail -1 | cut -d' ' -f5-)"
        status=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "fuzz/logs/$t.log" | tail -1 | awk '{print $2}')
    if [ -z "$execs" ]; then
        # libFuzzer prints no final stats after a crash; take its last status line.
        execs=$(grep -o '^#[0-9]*' "fuzz/logs/$t.log" | tail -1 | tr -d '#')
    fi
    summary+=("$(printf '%-16s %12s execs %6ss  %s' "$t" "${execs:-?}" "$(($(date +%s) - start))" "$result")")
    echo "${summary[-1]}"
done
echo "==> summary"
printf '%s\n' "${summary[@]}"
exit $status

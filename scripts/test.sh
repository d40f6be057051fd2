#!/usr/bin/env bash
# The project's test command (README: "Run the tests"; .ci/run runs it).
#
# Installs what the tests need when it is missing (Debian's prometheus, postgresql, chromium,
# prometheus-alertmanager, python3-aiosmtpd, openssl, htpasswd,
# systemd-analyze, prlimit), then checks formatting, lints and the module
# graph, builds once, and runs every test (unit, integration with real
# servers, the demo) in parallel.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/prometheus ] || need+=(prometheus)
# promtool (same package) backfills history for the backtest test.
[ -x /usr/bin/promtool ] || need+=(prometheus)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# Credentials made by the tests: certificates (openssl), bcrypt hashes for
# Prometheus' basic auth (htpasswd).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v htpasswd >/dev/null 2>&1 || need+=(apache2-utils)
# The email tests' SMTP server runs on Debian's own Python.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
[ -x /usr/bin/prometheus-alertmanager ] || need+=(prometheus-alertmanager)
if [ ${#need[@]} -gt 0 ]; then
    echo "==> installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# Debian's package starts its own Prometheus service on :9090 on some
# systems; the tests never use it (each starts its own on a free port).

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> module graph (no cycles between the top-level modules of src/)"
./scripts/module-cycles
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    # (nextest skips doctests; the crate has none.)
    cargo nextest run --locked --no-fail-fast --test-threads 4
else
    cargo test --locked --no-fail-fast
fi

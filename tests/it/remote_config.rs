//! The keys of the HTTP query sources (`[sources.NAME]` of kind
//! prometheus or loki) and of the checks that read them (`datasource`,
//! `logs`): named sources, every bad key located at once, secrets never
//! echoed.

use crate::config_load::{assert_errors, errors_of, write};
use crate::support::settings;
use std::path::Path;

#[test]
fn named_sources_and_datasources() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules/r.yaml",
        r#"checks:
  - name: eu_errors
    source: prometheus
    datasource: eu
    query: up
    rollback: { above: 1 }
  - name: default_errors
    source: prometheus
    query: up
    rollback: { above: 1 }
  - name: log_errors
    source: loki
    query: 'sum(count_over_time({app="{{service}}"} |= "error" [5m]))'
    logs: { query: '{app="{{service}}"} |= "error"', limit: 5, direction: forward }
    rollback: { above: 1 }
"#,
    );
    let s = settings(
        dir.path(),
        r#"[sources.prometheus]
url = "http://127.0.0.1:9090"
[sources.eu]
kind = "prometheus"
url = "https://prom-eu.internal/prometheus"
headers = { "X-Scope-OrgID" = "eu" }
[sources.loki]
url = "http://127.0.0.1:3100"
tenant = "shop"

[[services]]
name = "checkout"
rules = ["rules/r.yaml"]
"#,
    );
    // Only the service's own warnings (no hook, nobody paged).
    assert!(
        s.warnings.iter().all(|w| w.contains("service `checkout`")),
        "{:?}",
        s.warnings
    );
    assert_eq!(s.sources["eu"].kind.name, "prometheus");
    let checks = &s.services[0].checks;
    assert_eq!(checks[0].source_name(), "eu");
    assert_eq!(checks[1].source_name(), "prometheus");
    assert_eq!(checks[2].source_name(), "loki");
    let logs = checks[2].logs.as_ref().unwrap();
    assert_eq!(
        (logs.limit, logs.direction),
        (5, release_guardian::sources::Direction::Forward)
    );
}

#[test]
fn bad_check_keys_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write(
        dir.path(),
        "rules/r.yaml",
        r#"checks:
  - name: unknown_datasource
    source: prometheus
    datasource: us
    query: up
    rollback: { above: 1 }
  - name: wrong_kind
    source: prometheus
    datasource: logs
    query: up
    rollback: { above: 1 }
  - name: probe_datasource
    source: probe
    probe: live
    datasource: eu
    rollback: { failures: 1 }
  - name: prometheus_logs
    source: prometheus
    query: up
    logs: { query: '{app="x"}' }
    rollback: { above: 1 }
  - name: too_many_lines
    source: loki
    datasource: logs
    query: 'sum(count_over_time({app="x"}[5m]))'
    logs: { query: '{app="{{team}}"}', limit: 500 }
    rollback: { above: 1 }
"#,
    );
    let errors = errors_of(
        dir.path(),
        r#"[sources.prometheus]
url = "http://127.0.0.1:9090"
[sources.eu]
kind = "prometheus"
url = "http://127.0.0.1:9091"
[sources.logs]
kind = "loki"
url = "http://127.0.0.1:3100"

[[services]]
name = "checkout"
rules = ["rules/r.yaml"]
probes = [ { name = "live", url = "http://127.0.0.1/" } ]
"#,
        &[],
    );
    assert_errors(
        &errors,
        &[
            (
                &pack,
                4,
                5,
                "check `unknown_datasource`: unknown datasource `us`: no [sources.us] is configured; prometheus sources: eu, prometheus",
            ),
            (
                &pack,
                9,
                5,
                "check `wrong_kind`: datasource `logs` is a loki source, not prometheus",
            ),
            (
                &pack,
                15,
                5,
                "check `probe_datasource`: `datasource` is only used by query checks",
            ),
            (
                &pack,
                20,
                5,
                "check `prometheus_logs`: `logs` is only used by loki checks",
            ),
            (&pack, 26, 13, "unknown template variable `{{team}}` in `logs.query`"),
            (
                &pack,
                26,
                40,
                "check `too_many_lines`: `logs.limit` must be from 1 to 100",
            ),
        ],
    );
}

#[test]
fn bad_source_keys_are_reported_at_once_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guardian.toml");
    let errors = errors_of(
        dir.path(),
        r#"[sources.prometheus]
url = "http://127.0.0.1:9090"
username = "guardian"
cert_file = "missing.pem"
max_concurrency = 0
blind_after = 0
headers = { "Authorization" = "Bearer x", "X-Scope-OrgID" = "a" }
tenant = "b"

[sources.loki]
url = "http://127.0.0.1:3100"
password = 12345678
nonsense = 1

[sources.thanos]
url = "http://127.0.0.1:10902"

[sources.eu]
kind = "graphite"
url = "http://x"

[sources.loki2]
kind = "prometheus"
url = "ftp://x"
ca_file = "nowhere/ca.pem"
"#,
        &[],
    );
    let f: &Path = &file;
    assert_errors(
        &errors,
        &[
            (f, 3, 1, "`username` needs `password` or `password_file`"),
            (f, 4, 1, "`cert_file` needs `key_file`"),
            (f, 5, 1, "`max_concurrency` must be from 1 to 1024"),
            (f, 6, 1, "`blind_after` must be at least 1"),
            (f, 7, 13, "set `Authorization` with `bearer_token`"),
            (
                f,
                8,
                1,
                "set the tenant with `tenant` or with `headers`, not both",
            ),
            (f, 12, 1, "the value is a secret and is not shown"),
            (f, 13, 1, "unknown field `nonsense`"),
            (
                f,
                15,
                10,
                "unknown source `thanos` in [sources]; name it after its kind",
            ),
            (f, 19, 1, "unknown source kind `graphite`"),
            (f, 24, 1, "`url` \"ftp://x\" is not an http(s) URL"),
            (f, 25, 1, "cannot read `ca_file`"),
        ],
    );
    assert!(errors.iter().all(|e| !e.message.contains("12345678")));
}

//! `release-guardian test-rules`: every shipped rule pack has a test file
//! that names it, and every shipped test file passes (so CI runs them all);
//! a failing case exits 1 and says which file, case, check and instant,
//! expected vs got.

use crate::support::{bin, stdout_and_stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// Writes `pack` as `pack.yaml` and `test` as `file` in a fresh directory
/// and runs `test-rules` on the test file: (exit code, output, test path).
fn test_rules(pack: &str, file: &str, test: &str) -> (Option<i32>, String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pack.yaml"), pack).unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, test).unwrap();
    let out = Command::new(bin())
        .arg("test-rules")
        .arg(&path)
        .output()
        .unwrap();
    (out.status.code(), stdout_and_stderr(&out), path)
}

#[test]
fn every_shipped_pack_has_a_test_file_and_every_test_passes() {
    let tests = files(&root().join("rules/tests"), ".test.yaml");
    let texts: Vec<String> = tests
        .iter()
        .map(|t| std::fs::read_to_string(t).unwrap())
        .collect();
    for pack in files(&root().join("rules"), ".yaml") {
        let name = pack.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            texts.iter().any(|t| t.contains(&format!("../{name}"))),
            "rules/{name} has no test in rules/tests/"
        );
    }
    let out = Command::new(bin())
        .arg("test-rules")
        .args(&tests)
        .output()
        .unwrap();
    let all = stdout_and_stderr(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains(&format!("{} file(s)", tests.len())), "{all}");
    assert!(all.contains(" 0 failed"), "{all}");
}

#[test]
fn a_failing_case_says_what_was_expected_and_what_came() {
    let (code, all, test) = test_rules(
        "checks:\n  - name: errors\n    source: prometheus\n    query: errors{service=\"{{service}}\"}\n    rollback: { above: 0.05, for: 5m }\n",
        "pack.test.yaml",
        "rule_files: [pack.yaml]\ntests:\n  - name: late\n    release_at: 0s\n    input_series:\n      - query: errors{service=\"checkout\"}\n        values: '0.001x9 0.1x30'\n    expect:\n      - { at: 10m, check: errors, state: ok }\n    rollback_at: 20m\n  - name: right\n    release_at: 0s\n    input_series:\n      - check: errors\n        values: '0.001x9 0.1x30'\n    verdict: rollback\n    rollback_at: 15m\n",
    );
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains(&format!("FAILED {}: case \"late\":", test.display())),
        "{all}"
    );
    // At 10m the breach is 0 minutes old: pending, the level still ok.
    assert!(!all.contains("check \"errors\" at 10m"), "{all}");
    assert!(
        all.contains("expected the rollback at 20m, got 15m"),
        "{all}"
    );
    assert!(!all.contains("case \"right\""), "{all}");
    assert!(all.contains("1 file(s), 2 case(s), 1 failed"), "{all}");
}

#[test]
fn a_bad_series_is_named_with_its_case() {
    let (code, all, _) = test_rules(
        "checks:\n  - name: errors\n    source: prometheus\n    query: errors\n    rollback: { above: 0.05 }\n",
        "t.yaml",
        "rule_files: [pack.yaml]\ntests:\n  - name: typo\n    release_at: 0s\n    input_series:\n      - check: errors\n        values: '1 2 x3'\n",
    );
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("case \"typo\":\n  input_series[0].values: `x3`"),
        "{all}"
    );
}

/// `log_lines` feed a `new_error_signatures` check through the daemon's own
/// reading: a shape already logged before the release keeps it ok, a shape
/// never seen before rolls back at the first tick after it (the 5-minute
/// tier: the tick at release + 10 m for a line at release + 7 m).
#[test]
fn log_lines_drive_a_new_error_signatures_check() {
    let (code, all, _) = test_rules(
        "checks:
  - name: new_errors
    source: loki
    new_error_signatures: { query: '{service=\"{{service}}\"} |= \"error\"' }
    critical: { above: 0 }
    rollback: { above: 0 }
",
        "pack.test.yaml",
        "rule_files: [pack.yaml]
interval: 1m
tests:
  - name: a shape logged before the release is not new
    release_at: 2h
    until: 2h30m
    log_lines:
      - { at: 1h10m, line: \"error db timeout after 3000 ms\" }
      - { at: 2h3m, line: \"error db timeout after 5000 ms\" }
    expect:
      - { at: 2h20m, check: new_errors, state: ok, value: 0 }
    verdict: no_rollback
  - name: a shape never seen before rolls back
    release_at: 2h
    log_lines:
      - { at: 1h10m, line: \"error db timeout after 3000 ms\" }
      - { at: 2h3m, line: \"error db timeout after 5000 ms\" }
      - { at: 2h7m, line: \"error nil pointer in /cart id=42\" }
    expect:
      - { at: 2h5m, check: new_errors, state: ok, value: 0 }
    verdict: rollback
    # the first look after the line (every 15 s step between the 5m ticks)
    rollback_at: 2h7m15s
",
    );
    assert_eq!(code, Some(0), "{all}");
}

/// The error-ratio pack of a service without a Prometheus server: a
/// `source: scrape` check over the counters the guardian scrapes itself.
const SCRAPE_PACK: &str = r#"checks:
  - name: error_rate_scraped
    source: scrape
    scrape: metrics
    query: |
      sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5m]))
        / sum(rate(http_requests_total{service="{{service}}"}[5m]))
    critical: { above: 0.05, for: 2m }
    rollback: { above: 0.05, for: 5m }
"#;

/// `scraped_series` feed a `source: scrape` check through the daemon's own
/// PromQL evaluation: 10 requests/s, errors rising from 0.1/s to 1/s at
/// 10m. The 5-minute ratio crosses 5 % at 12m22s (the 12m30s step), so the
/// check is critical two minutes later and rolls back five minutes after
/// it crossed. A watch scrapes only from its start: errors that stopped
/// before the release are never seen.
#[test]
fn scraped_series_drive_a_scrape_check() {
    let (code, all, _) = test_rules(
        SCRAPE_PACK,
        "pack.test.yaml",
        r#"rule_files: [pack.yaml]
interval: 15s
tests:
  - name: errors from 10m roll back
    release_at: 0s
    until: 30m
    scraped_series:
      - scrape: metrics
        series: 'http_requests_total{service="checkout",code="200"}'
        values: '0+150x240'
      - scrape: metrics
        series: 'http_requests_total{service="checkout",code="500"}'
        values: '0+1.5x40 75+15x200'
    expect:
      - { at: 10m, check: error_rate_scraped, state: ok, value: 0.00990099 }
      - { at: 14m15s, check: error_rate_scraped, state: ok }
      - { at: 14m30s, check: error_rate_scraped, state: critical }
      - { at: 20m, check: error_rate_scraped, value: 0.09090909 }
    decisions:
      - { check: error_rate_scraped, level: critical, at: 14m30s }
    verdict: rollback
    rollback_at: 17m30s
  - name: errors that ended before the release are not scraped by its watch
    release_at: 30m
    until: 1h
    scraped_series:
      - scrape: metrics
        series: 'http_requests_total{service="checkout",code="200"}'
        values: '0+150x360'
      - scrape: metrics
        series: 'http_requests_total{service="checkout",code="500"}'
        values: '0+150x119 17850+1.5x240'
    expect:
      - { at: 35m, check: error_rate_scraped, state: ok, value: 0.00990099 }
    verdict: no_rollback
    max_level: ok
"#,
    );
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("1 file(s), 2 case(s), 0 failed"), "{all}");
}

/// A `series` that is not one exposition line is named with its case; a
/// pack's scrape that no test declares fails to load, naming it.
#[test]
fn a_bad_scraped_series_is_named_with_its_case() {
    let (code, all, _) = test_rules(
        SCRAPE_PACK,
        "t.yaml",
        "rule_files: [pack.yaml]\ntests:\n  - name: unquoted\n    release_at: 0s\n    scraped_series:\n      - { scrape: metrics, series: 'requests{code=500}', values: '1x3' }\n  - name: undeclared\n    release_at: 0s\n    verdict: no_rollback\n",
    );
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("case \"unquoted\":\n  scraped_series[0].series: \"requests{code=500}\" is not one series"),
        "{all}"
    );
    assert!(
        all.contains("case \"undeclared\":\n  the packs do not load:"),
        "{all}"
    );
    assert!(all.contains("metrics"), "{all}");
}

//! Nothing in the config can panic the daemon or wrap its arithmetic, and no
//! template variable can rewrite a query: `check` refuses absurd durations
//! and misplaced `{{variables}}`, each at its `FILE:LINE:COL`.

use release_guardian::config::{load_str, ConfigError};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// Loads `text` as `DIR/guardian.toml`; its errors as `FILE:LINE:COL: message`.
fn errors_of(dir: &Path, text: &str) -> Vec<String> {
    let path = write(dir, "guardian.toml", text);
    match load_str(text, &path, &[]) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.errors.iter().map(ConfigError::to_string).collect(),
    }
}

const PACK: &str =
    "checks:\n  - name: live\n    source: probe\n    probe: live\n    rollback: { failures: 3 }\n";

#[test]
fn the_observed_absurd_durations_are_refused_where_they_stand() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yaml", PACK);
    // Observed: this hook timeout panicked the rollback task once the hook
    // had started; this `until` wrapped to 384 ms and verified at once.
    let text = r#"[cadence]
tiers = [ { until = "1h", every = "5m" },
          { until = "18446744073709552s", every = "15m" } ]

[[services]]
name = "checkout"
rules = ["rules.yaml"]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:1/"
  timeout = "2h"
  [services.rollback]
  command = ["/bin/true"]
  timeout = "500000000000y"
"#;
    let f = dir.path().join("guardian.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path(), text),
        [
            format!("{f}:3:13: tier 2: `until` must be at most 10years"),
            format!("{f}:11:3: probe `live`: `timeout` must be at most 1h"),
            format!("{f}:14:3: `timeout` must be at most 1day"),
        ]
    );
}

#[test]
fn a_service_cadence_and_the_query_timeout_are_bounded_too() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yaml", PACK);
    let text = r#"[sources.prometheus]
url = "http://127.0.0.1:9090"
timeout = "1h1s"

[[services]]
name = "checkout"
rules = ["rules.yaml"]
probes = [ { name = "live", url = "http://127.0.0.1:1/" } ]
  [services.cadence]
  tiers = [ { until = "1h", every = "11y" } ]
"#;
    let f = dir.path().join("guardian.toml").display().to_string();
    assert_eq!(
        errors_of(dir.path(), text),
        [
            format!("{f}:3:1: `timeout` must be at most 1h"),
            format!("{f}:10:29: tier 1: `every` must be at most 10years"),
        ]
    );
}

#[test]
fn rule_windows_and_misplaced_variables_are_refused_in_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    let pack = write(
        dir.path(),
        "rules.yaml",
        r#"checks:
  - name: by_version
    source: prometheus
    query: |
      sum(rate(http_requests_total{service="{{service}}",version='{{version}}'}[5m]))
    step: 60d
    rollback: { above: 1, for: 500000000000y }
  - name: metric_name
    source: prometheus
    query: "{{service}}_up == 0"
    warning: { above: 0 }
  - name: fine
    source: prometheus
    query: up{service="{{service}}",version!="{{previous_version}}"}
    warning: { above: 0, for: 30d }
"#,
    );
    let text = r#"[sources.prometheus]
url = "http://127.0.0.1:9090"

[[services]]
name = "checkout"
rules = ["rules.yaml"]
"#;
    let p = pack.display().to_string();
    assert_eq!(
        errors_of(dir.path(), text),
        [
            format!("{p}:4:5: check `by_version`: template variable `{{{{version}}}}` must stand inside a double-quoted label value (\"...\"), where it is escaped; it stands inside single quotes (query line 1, column 61)"),
            format!("{p}:6:5: check `by_version`: `step` must be at most 30days"),
            format!("{p}:7:27: check `by_version`: `rollback`: `for` must be at most 30days"),
            format!("{p}:10:5: check `metric_name`: template variable `{{{{service}}}}` must stand inside a double-quoted label value (\"...\"), where it is escaped; it stands outside any string (query line 1, column 1)"),
        ]
    );
}

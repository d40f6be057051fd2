//! The command line as a user runs it: `check` on broken and valid configs
//! (every error, each with its FILE:LINE:COL), `status` against a running
//! daemon, and `demo` end to end.

use crate::support::{bin, minimal_config, stdout_and_stderr, Daemon};
use std::process::Command;

const BROKEN_CONFIG: &str = r#"[server]
listen = "127.0.0.1:9797"
lisen = "x"

[cadence]
tiers = [ { until = "1h", every = "5 minutes please" } ]

[[services]]
name = "checkout"
rules = ["rules/broken.yaml", "rules/missing.yaml"]
notify = ["nobody"]
  [[services.probes]]
  name = "live"
  url = "not a url"

[notifiers.pager]
kind = "pagerduty"
routing_key = "a-secret-routing-key"
url = "not a url"
"#;

const BROKEN_RULES: &str = r#"checks:
  - name: error_rate
    source: prometheus
    query: sum(rate(x{service="{{service}}"}[5m]))
    critical: { above: 0.01, for: 5m }
    rollback: { above: 0.05, failures: 3 }
  - name: live
    source: probe
    probe: live
    critical: { failures: 2, within: 3 }
"#;

/// Runs `check` on a config: (exit 0?, stdout + stderr).
fn check(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (out.status.success(), stdout_and_stderr(&out))
}

#[test]
fn check_prints_every_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let config = dir.path().join("guardian.toml");
    std::fs::write(&config, BROKEN_CONFIG).unwrap();
    let rules = dir.path().join("rules/broken.yaml");
    std::fs::write(&rules, BROKEN_RULES).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let c = config.display();
    let r = rules.display();
    let expected = [
        format!("{c}:3:1: unknown field `lisen`"),
        format!("{c}:6:27: invalid duration \"5 minutes please\""),
        format!("{c}:10:31: cannot read rule pack `rules/missing.yaml`"),
        format!("{c}:11:11: unknown notifier `nobody` in `notify`"),
        format!("{c}:14:3: probe `live`: `url` \"not a url\" is not an http(s) URL"),
        format!("{c}:19:1: pagerduty `url` \"not a url\" is not an http(s) URL"),
        // A shape error in a check does not hide its other errors.
        format!("{r}:3:5: check `error_rate` uses prometheus, but [sources.prometheus] is not configured"),
        format!("{r}:6:30: check `error_rate`: `failures` is only valid for probe checks"),
        format!("{r}:10:30: unknown field `within`"),
    ];
    for e in &expected {
        assert!(
            stderr.lines().any(|l| l.starts_with(e.as_str())),
            "missing {e:?} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains(&format!("{} error(s)", expected.len())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("a-secret-routing-key"),
        "a secret leaked: {stderr}"
    );
}

#[test]
fn check_accepts_the_shipped_rule_packs() {
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            r#"[sources.prometheus]
url = "http://127.0.0.1:9090"
[store]
path = "g.db"
[[services]]
name = "checkout"
rules = ["{root}/rules/checklist.yaml", "{root}/rules/health-probes.yaml"]
notify = ["slack"]
  [[services.probes]]
  name = "live"
  url = "http://127.0.0.1:8080/health/live"
  [[services.probes]]
  name = "ready"
  url = "http://127.0.0.1:8080/health/ready"
  [services.rollback]
  command = ["/bin/true"]
[[services]]
name = "payments"
rules = ["{root}/rules/strict-slo.yaml", "{root}/rules/average-latency.yaml"]
[notifiers.slack]
kind = "slack"
webhook_url = "http://127.0.0.1:1/services/x"
"#
        ),
    )
    .unwrap();
    let (ok, all) = check(&config);
    assert!(ok, "{all}");
    assert!(
        all.contains("OK (2 services, 8 checks, 1 notifiers)"),
        "{all}"
    );
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/guardian.example.toml");
    let (ok, all) = check(std::path::Path::new(example));
    assert!(ok, "{all}");
    assert!(
        all.contains("OK (1 services, 4 checks, 5 notifiers)"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_what_the_api_says() {
    let dir = tempfile::tempdir().unwrap();
    let (config, listen) = minimal_config(dir.path());
    let d = Daemon::start(&config, &listen).await;
    let (code, body) = d
        .post(
            "/v1/releases",
            serde_json::json!({"service": "checkout", "version": "v7"}),
        )
        .await;
    assert_eq!(code, 201);
    let id = body["id"].as_str().unwrap().to_string();
    let url = format!("http://{listen}");
    let list = Command::new(bin())
        .args(["status", "--url", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success());
    assert!(
        text.contains(&id) && text.contains("watching") && text.contains("v7"),
        "{text}"
    );
    let one = Command::new(bin())
        .args(["status", "--url", &url, &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(
        text.contains(&format!("release {id}")) && text.contains("status: watching"),
        "{text}"
    );
    let missing = Command::new(bin())
        .args(["status", "--url", &url, "nope"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("HTTP 404"));
}

#[test]
fn the_demo_rolls_back_a_bad_release() {
    let out = Command::new(bin()).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "regression injected",
        "SLACK <- [CRITICAL] checkout production v2 check error_rate level rollback",
        "decision: rolled_back",
        "status: rolled_back",
        "service now runs v1",
        "[ ] No rollback criterion was met",
        "[x] The rollback completed",
        "Demo complete",
    ] {
        assert!(
            stdout.contains(expected),
            "demo output lacks {expected:?}:\n{stdout}"
        );
    }
}

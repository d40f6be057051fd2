//! Per-watch state is released when a watch ends, whichever way it ends:
//! against the real daemon probing a real local HTTP server, one watch is
//! aborted through the API and one ends with its window. While they run,
//! `/metrics` shows their tasks, their probe gauges and (during ticks) their
//! probe histograms; once both have ended, no watch task is alive (the
//! task, and everything it held, was dropped — not just unlisted), no
//! probe gauge remains and no probe histogram is alive.
//! A service watched in two environments keeps a gauge set for each, and
//! the end of one watch drops only its own.

use crate::support::{metric_value, serve, wait_for, Daemon};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::time::Duration;

/// The probe gauges of `service` in a `/metrics` text.
fn probe_gauges(text: &str, service: &str) -> usize {
    let label = format!("probe=\"{service}/live\"");
    text.lines()
        .filter(|l| l.starts_with("rg_probe_latency_seconds{") && l.contains(&label))
        .count()
}

/// A daemon with one probed service per `(name, environment, tiers)`, each
/// probing `live` on a real local HTTP server; the temp dir lives as long
/// as the daemon is used.
async fn probing_daemon(services: &[(&str, &str, &str)]) -> (Daemon, tempfile::TempDir) {
    let target = serve(Router::new().route("/health", get(|| async { "ok" }))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    critical: { failures: 3 }\n",
    )
    .unwrap();
    let listen = crate::support::free_listen();
    let mut text = format!("[server]\nlisten = \"{listen}\"\n[store]\npath = \"g.db\"\n");
    for (name, environment, tiers) in services {
        text += &format!(
            r#"[[services]]
name = "{name}"
environment = "{environment}"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = {tiers}
  [[services.probes]]
  name = "live"
  url = "http://{target}/health"
"#
        );
    }
    let config = dir.path().join("guardian.toml");
    std::fs::write(&config, text).unwrap();
    (Daemon::start(&config, &listen).await, dir)
}

/// Registers `body` and answers the new release's id.
async fn register(d: &Daemon, body: Value) -> String {
    let (status, r) = d.post("/v1/releases", body).await;
    assert_eq!(status, 201, "{r}");
    r["id"].as_str().expect("a release id").to_string()
}

#[tokio::test]
async fn ended_watches_release_their_tasks_probe_gauges_and_histograms() {
    let (d, _dir) = probing_daemon(&[
        (
            "aborted",
            "production",
            r#"[ { until = "1h", every = "1s" } ]"#,
        ),
        (
            "ends",
            "production",
            r#"[ { until = "6s", every = "1s" } ]"#,
        ),
    ])
    .await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for name in ["aborted", "ends"] {
        ids.push(
            register(
                &d,
                json!({"service": name, "version": "v2", "previous_version": "v1"}),
            )
            .await,
        );
    }

    // While both run: two tasks, and each watch's probe gauges.
    wait_for(
        "two watch tasks with their probe gauges",
        Duration::from_secs(30),
        || async {
            let m = d.metrics().await;
            (metric_value(&m, "rg_watch_tasks") == Some(2.0)
                && metric_value(&m, "rg_active_watches") == Some(2.0)
                && probe_gauges(&m, "aborted") > 0
                && probe_gauges(&m, "ends") > 0)
                .then_some(())
        },
    )
    .await;

    let aborted = http
        .post(format!("{}/v1/releases/{}/abort", d.api, ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(aborted.status(), 200);
    d.release_until(
        &ids[1],
        "the short window to end",
        Duration::from_secs(60),
        |r| r["status"] == "verified",
    )
    .await;

    let left = wait_for(
        "no watch task, probe gauge or probe histogram left",
        Duration::from_secs(30),
        || async {
            let m = d.metrics().await;
            let state = (
                metric_value(&m, "rg_active_watches"),
                metric_value(&m, "rg_watch_tasks"),
                metric_value(&m, "rg_probe_histograms"),
                probe_gauges(&m, "aborted") + probe_gauges(&m, "ends"),
            );
            (state == (Some(0.0), Some(0.0), Some(0.0), 0)).then_some(m)
        },
    )
    .await;
    assert!(
        left.contains("# TYPE rg_watch_tasks gauge")
            && left.contains("# TYPE rg_probe_histograms gauge"),
        "{left}"
    );
}

/// The probe gauges of `service` in `environment` in a `/metrics` text.
fn probe_gauges_in(text: &str, service: &str, environment: &str) -> usize {
    let (probe, env) = (
        format!("probe=\"{service}/live\""),
        format!("environment=\"{environment}\""),
    );
    text.lines()
        .filter(|l| l.starts_with("rg_probe_latency_seconds{") && l.contains(&probe))
        .filter(|l| l.contains(&env))
        .count()
}

/// One service watched in two environments has a set of probe gauges for
/// each, and the end of one watch drops only its own: production's gauges
/// (whose ticks have stopped for half an hour) outlive staging's abort.
#[tokio::test]
async fn a_service_in_two_environments_keeps_a_probe_gauge_set_for_each() {
    let (d, _dir) = probing_daemon(&[
        // Three quick ticks, then none for half an hour.
        (
            "checkout",
            "production",
            r#"[ { until = "3s", every = "1s" }, { until = "1h", every = "30m" } ]"#,
        ),
        (
            "checkout",
            "staging",
            r#"[ { until = "1h", every = "1s" } ]"#,
        ),
    ])
    .await;
    let mut ids = Vec::new();
    for environment in ["production", "staging"] {
        ids.push(
            register(
                &d,
                json!({"service": "checkout", "environment": environment, "version": "v2"}),
            )
            .await,
        );
    }

    // Production past its quick ticks: its next one is half an hour away.
    d.release_until(
        &ids[0],
        "production's quick ticks to be done",
        Duration::from_secs(60),
        |r| {
            r["next_check_at"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .is_some_and(|at| at > std::time::SystemTime::now() + Duration::from_secs(600))
        },
    )
    .await;
    wait_for(
        "a probe gauge set in each environment",
        Duration::from_secs(30),
        || async {
            let m = d.metrics().await;
            (probe_gauges_in(&m, "checkout", "production") == 3
                && probe_gauges_in(&m, "checkout", "staging") == 3)
                .then_some(())
        },
    )
    .await;

    let (aborted, _) = d
        .post(&format!("/v1/releases/{}/abort", ids[1]), json!({}))
        .await;
    assert_eq!(aborted, 200);
    let m = wait_for(
        "staging's probe gauges to go",
        Duration::from_secs(30),
        || async {
            let m = d.metrics().await;
            (metric_value(&m, "rg_watch_tasks") == Some(1.0)
                && probe_gauges_in(&m, "checkout", "staging") == 0)
                .then_some(m)
        },
    )
    .await;
    assert_eq!(
        probe_gauges_in(&m, "checkout", "production"),
        3,
        "production's gauges went with staging's watch:\n{m}"
    );
}

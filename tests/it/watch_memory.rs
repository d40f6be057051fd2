//! Per-watch state is released when a watch ends, whichever way it ends:
//! against the real daemon probing a real local HTTP server, one watch is
//! aborted through the API and one ends with its window. While they run,
//! `/metrics` shows their tasks, their probe gauges and (during ticks) their
//! probe histograms; once both have ended, no watch task is alive (the
//! task, and everything it held, was dropped — not just unlisted), no
//! probe gauge remains and no probe histogram is alive.

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

#[tokio::test]
async fn ended_watches_release_their_tasks_probe_gauges_and_histograms() {
    let target = serve(Router::new().route("/health", get(|| async { "ok" }))).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "checks:\n  - name: live\n    source: probe\n    probe: live\n    critical: { failures: 3 }\n",
    )
    .unwrap();
    let listen = crate::support::free_listen();
    let service = |name: &str, window: &str| {
        format!(
            r#"[[services]]
name = "{name}"
rules = ["rules.yaml"]
  [services.cadence]
  tiers = [ {{ until = "{window}", every = "1s" }} ]
  [[services.probes]]
  name = "live"
  url = "http://{target}/health"
"#
        )
    };
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\n[store]\npath = \"g.db\"\n{}{}",
            service("aborted", "1h"),
            service("ends", "6s"),
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, &listen).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for name in ["aborted", "ends"] {
        let r: Value = http
            .post(format!("{}/v1/releases", d.api))
            .json(&json!({"service": name, "version": "v2", "previous_version": "v1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().expect("a release id").to_string());
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

//! End to end through the paging channels: a real Prometheus scraping a
//! real target, the real daemon, PagerDuty's Events API (a local receiver
//! checking the documented shapes) and a real Alertmanager. A check that
//! goes critical is a PagerDuty trigger and a firing alert; when it
//! recovers, the same `dedup_key` is resolved and the alert ends.

use crate::support::{
    free_listen, wait_for, Alertmanager, Daemon, Prometheus, Receiver, Reply, Target,
};
use serde_json::{json, Value};
use std::time::Duration;

/// One level only, so that the check goes from critical straight back to
/// ok (the recovery that closes the incident).
const RULES: &str = r#"checks:
  - name: error_rate
    source: prometheus
    query: |
      sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s]))
        / sum(rate(http_requests_total{service="{{service}}"}[5s]))
    step: 1s
    critical: { above: 0.02 }
"#;

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

/// Our alert for `error_rate`, if Alertmanager has it active.
fn firing(alerts: &[Value]) -> Option<Value> {
    alerts
        .iter()
        .find(|a| {
            a["labels"]["check"] == "error_rate"
                && a["labels"]["guardian"] == "am"
                && a["status"]["state"] != "resolved"
                && time::OffsetDateTime::parse(
                    a["endsAt"].as_str().unwrap_or_default(),
                    &time::format_description::well_known::Rfc3339,
                )
                .is_ok_and(|t| t > time::OffsetDateTime::now_utc())
        })
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_critical_check_pages_and_its_recovery_resolves_at_pagerduty_and_alertmanager() {
    let target = Target::start().await;
    let prom = Prometheus::start(target.addr).await;
    let pd = Receiver::start(Reply::Ok).await;
    let am = Alertmanager::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    let listen = free_listen();
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "{listen}"
shutdown_grace = "2s"
public_url = "http://{listen}"
[store]
path = "guardian.db"
[cadence]
tiers = [ {{ until = "120s", every = "1s" }} ]
[sources.prometheus]
url = "{prom}"
timeout = "2s"
[[services]]
name = "checkout"
rules = ["rules.yaml"]
notify = ["pager", "am"]
[notifiers.pager]
kind = "pagerduty"
routing_key = "{ROUTING_KEY}"
url = "{pd}"
min_severity = "info"
[notifiers.am]
kind = "alertmanager"
url = "{am}"
repost_every = "1s"
min_severity = "info"
"#,
            prom = prom.url,
            pd = pd.pagerduty_url(),
            am = am.url,
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, &listen).await;
    let (code, body) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2", "previous_version": "v1"}),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let state = |r: &Value| r["checks"][0]["state"].as_str().unwrap_or("").to_string();
    d.release_until(&id, "a first healthy tick", Duration::from_secs(30), |r| {
        state(r) == "ok"
    })
    .await;

    target.set_error_ratio(0.1);
    let trigger = wait_for("a PagerDuty trigger", Duration::from_secs(60), || {
        let got = pd.received();
        async move {
            got.into_iter()
                .find(|r| {
                    r.body["event_action"] == "trigger"
                        && r.body["payload"]["custom_details"]["level"] == "critical"
                })
                .map(|r| r.body)
        }
    })
    .await;
    assert_eq!(trigger["dedup_key"], format!("{id}/error_rate"));
    assert_eq!(trigger["payload"]["severity"], "error");
    assert_eq!(
        trigger["links"][0]["href"],
        format!("http://{listen}/v1/releases/{id}")
    );
    // A tick before the first data may have paged `inconclusive` (a
    // warning): wait for the critical alert that replaces it.
    let alert = wait_for("the critical alert firing", Duration::from_secs(30), || {
        let am = &am;
        async move {
            am.alerts().await.into_iter().find(|a| {
                a["labels"]["severity"] == "critical" && firing(std::slice::from_ref(a)).is_some()
            })
        }
    })
    .await;
    assert_eq!(alert["labels"]["release_id"], id.as_str());
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["version"], "v2");

    target.set_error_ratio(0.0);
    let resolve = wait_for("a PagerDuty resolve", Duration::from_secs(60), || {
        let got = pd.received();
        async move {
            got.into_iter()
                .find(|r| r.body["event_action"] == "resolve")
                .map(|r| r.body)
        }
    })
    .await;
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    wait_for("the alert resolved", Duration::from_secs(30), || {
        let am = &am;
        async move { firing(&am.alerts().await).is_none().then_some(()) }
    })
    .await;
    assert_eq!(pd.problems(), Vec::<String>::new());
    let r = d
        .release_until(&id, "the outbox drained", Duration::from_secs(20), |r| {
            r["notifications"]
                .as_array()
                .is_some_and(|n| n.iter().all(|n| n["status"] == "sent"))
        })
        .await;
    assert!(r["notifications"].as_array().unwrap().len() >= 4, "{r}");
}

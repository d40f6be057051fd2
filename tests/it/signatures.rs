//! `new_error_signatures` end to end: the real daemon reading log lines
//! from the Loki stand-in (`support::loki`) before and after a release.
//!
//! - `a_new_error_shape_rolls_back_with_its_signature_and_example`: errors
//!   whose shape was seen before the release keep the check `ok`; a new
//!   shape takes it to `rollback`, its signature and an example line in
//!   the decision's evidence.
//! - `a_loki_outage_is_inconclusive_not_a_breach`: Loki answering 500 makes
//!   the check `inconclusive`, never a level; when it is back, `ok`.

use crate::support::{now_ms, one_service_config, wait_for, Daemon, Loki, Receiver, Reply};
use serde_json::{json, Value};
use std::time::Duration;

const RULES: &str = r#"checks:
  - name: new_errors
    source: loki
    step: 1s
    new_error_signatures: { query: '{app="{{service}}"} |= "ERROR"' }
    rollback: { above: 0 }
"#;

const APP: [(&str, &str); 1] = [("app", "checkout")];

/// The shapes the service logged before the release.
fn known(i: i64) -> String {
    if i % 2 == 0 {
        format!("ERROR upstream 503 from 10.0.0.{} after {i}ms", i % 250)
    } else {
        format!(
            "ERROR cache miss for key user-{i}x at 2026-11-28T10:{:02}:00Z",
            i % 60
        )
    }
}

async fn start(loki: &Loki, dir: &std::path::Path) -> (Daemon, Receiver) {
    let hook = Receiver::start(Reply::Ok).await;
    let (config, listen) = one_service_config(
        dir,
        &format!("[sources.loki]\nurl = \"{}\"\ntimeout = \"2s\"", loki.url),
        RULES,
        &format!("kind = \"webhook\"\nurl = \"{}\"", hook.webhook_url()),
    );
    (Daemon::start(&config, &listen).await, hook)
}

async fn register(d: &Daemon) -> String {
    let (status, r) = d
        .post(
            "/v1/releases",
            json!({"service": "checkout", "version": "v2", "previous_version": "v1"}),
        )
        .await;
    assert_eq!(status, 201, "{r}");
    r["id"].as_str().unwrap().to_string()
}

fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name}: {r}"))
}

fn levels(r: &Value) -> Vec<&Value> {
    r["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "level_changed")
        .collect()
}

/// Log queries the daemon has sent so far (two a tick: after, before).
fn log_reads(loki: &Loki) -> usize {
    loki.requests()
        .iter()
        .filter(|r| r.path.ends_with("/query_range") && r.params.contains_key("limit"))
        .count()
}

#[tokio::test]
async fn a_new_error_shape_rolls_back_with_its_signature_and_example() {
    let loki = Loki::start(None).await;
    let t0 = now_ms();
    // Ten minutes of the known shapes before the release, and a line of
    // another app with the shape that will be new.
    for i in 0..40 {
        loki.push(t0 - 600_000 + i * 15_000, &APP, &known(i));
    }
    loki.push(
        t0 - 30_000,
        &[("app", "cart")],
        "ERROR nil pointer in handler /cart id=1",
    );
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _hook) = start(&loki, dir.path()).await;
    let id = register(&daemon).await;

    // After the release, the same shapes with other numbers and ids: ok,
    // tick after tick.
    let reads = log_reads(&loki);
    let mut i = 100;
    let mut last = 0;
    let r = wait_for("five ok ticks", Duration::from_secs(30), || {
        let t = now_ms();
        if t - last >= 300 {
            loki.push(t, &APP, &known(i));
            i += 1;
            last = t;
        }
        let d = &daemon;
        let id = id.clone();
        let enough = log_reads(&loki) >= reads + 10;
        async move {
            let r = d.get(&format!("/v1/releases/{id}")).await;
            (enough && check(&r, "new_errors")["state"] == "ok").then_some(r)
        }
    })
    .await;
    assert_eq!(r["status"], "watching", "{r}");
    assert!(levels(&r).is_empty(), "no level for known shapes: {r}");

    // A new shape, among the known ones.
    let r = wait_for(
        "the release is rolled back",
        Duration::from_secs(30),
        || {
            let t = now_ms();
            if t - last >= 300 {
                loki.push(t, &APP, &known(i));
                loki.push(
                    t + 1,
                    &APP,
                    &format!("ERROR nil pointer in handler /cart id={i}"),
                );
                i += 1;
                last = t;
            }
            let d = &daemon;
            let id = id.clone();
            async move {
                let r = d.get(&format!("/v1/releases/{id}")).await;
                (r["status"] == "rolled_back").then_some(r)
            }
        },
    )
    .await;
    let entered = levels(&r)
        .into_iter()
        .find(|d| d["check"] == "new_errors" && d["level"] == "rollback")
        .unwrap_or_else(|| panic!("no rollback level: {r}"))
        .clone();
    let ev = &entered["evidence"]["new_error_signatures"];
    assert_eq!(ev["count"], 1, "{entered}");
    let sig = &ev["signatures"][0];
    assert_eq!(
        sig["signature"],
        "ERROR nil pointer in handler /cart id=<n>"
    );
    let example = sig["example"].as_str().unwrap();
    assert!(
        example.starts_with("ERROR nil pointer in handler /cart id=")
            && example != "ERROR nil pointer in handler /cart id=1",
        "an example of this app's, after the release: {example}"
    );
    assert!(sig["count"].as_u64().unwrap() >= 1, "{sig}");
    assert!(ev["before"]["lines"].as_u64().unwrap() >= 40, "{ev}");
    assert_eq!(entered["evidence"]["value"], 1.0, "{entered}");
    assert!(
        entered["evidence"]["query"]
            .as_str()
            .unwrap()
            .contains(r#"{app="checkout"}"#),
        "{entered}"
    );
    assert!(
        entered["reason"]
            .as_str()
            .unwrap()
            .contains("new_errors entered rollback"),
        "{entered}"
    );
}

#[tokio::test]
async fn a_loki_outage_is_inconclusive_not_a_breach() {
    let loki = Loki::start(None).await;
    loki.set_failing(true);
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _hook) = start(&loki, dir.path()).await;
    let id = register(&daemon).await;
    let r = wait_for("the check is inconclusive", Duration::from_secs(30), || {
        let d = &daemon;
        let id = id.clone();
        async move {
            let r = d.get(&format!("/v1/releases/{id}")).await;
            (check(&r, "new_errors")["state"] == "inconclusive").then_some(r)
        }
    })
    .await;
    let d = r["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "inconclusive" && d["check"] == "new_errors")
        .unwrap_or_else(|| panic!("no inconclusive decision: {r}"));
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("new_error_signatures: loki answered HTTP 500"),
        "{reason}"
    );
    // Errors keep flowing while Loki is down: still no level, no rollback.
    let reads = log_reads(&loki);
    let r = wait_for("more failed reads", Duration::from_secs(30), || {
        loki.push(now_ms(), &APP, "ERROR brand new shape");
        let d = &daemon;
        let id = id.clone();
        let enough = log_reads(&loki) >= reads + 3;
        async move { enough.then_some(d.get(&format!("/v1/releases/{id}")).await) }
    })
    .await;
    assert_eq!(r["status"], "watching", "{r}");
    assert!(levels(&r).is_empty(), "{r}");

    // Back, and the lines it logs were all known before: ok.
    loki.push(now_ms() - 120_000, &APP, "ERROR brand new shape");
    loki.set_failing(false);
    let r = wait_for("the check is ok again", Duration::from_secs(30), || {
        let d = &daemon;
        let id = id.clone();
        async move {
            let r = d.get(&format!("/v1/releases/{id}")).await;
            (check(&r, "new_errors")["state"] == "ok").then_some(r)
        }
    })
    .await;
    assert!(levels(&r).is_empty(), "{r}");
}

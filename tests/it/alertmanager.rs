//! The Alertmanager notifier against a real Alertmanager: the alert
//! appears with its labels, is kept firing by re-posts, is adopted by a
//! freshly built notifier (a restart), and is resolved by the closing
//! message.

use crate::support::{notifier, wait_for, Alertmanager};
use release_guardian::model::{Level, Message, Severity};
use serde_json::Value;
use std::time::Duration;

/// The shared test message, stamped now (Alertmanager judges `startsAt`
/// and `endsAt` against its own clock).
fn message(event: &str, level: Level) -> Message {
    Message {
        at: crate::support::now_ms(),
        ..crate::support::message(event, level)
    }
}

fn config(am: &Alertmanager) -> String {
    format!(
        "[server]\npublic_url = \"http://guardian.example:9797\"\n\
         [notifiers.am]\nkind = \"alertmanager\"\nurl = \"{}\"\nrepost_every = \"1s\"\n",
        am.url
    )
}

/// An alert's `endsAt`.
fn ends_at(alert: &Value) -> time::OffsetDateTime {
    let ends = alert["endsAt"].as_str().unwrap_or_default();
    time::OffsetDateTime::parse(ends, &time::format_description::well_known::Rfc3339)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Ours, still active (its `endsAt` ahead), by the `check` label.
fn active<'a>(alerts: &'a [Value], check: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["labels"]["guardian"] == "am" && a["labels"]["check"] == check)
        .filter(|a| ends_at(a) > time::OffsetDateTime::now_utc())
        .collect()
}

#[tokio::test]
async fn an_alert_fires_with_its_labels_is_kept_firing_adopted_and_resolved() {
    let am = Alertmanager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config(&am);
    let first = notifier(dir.path(), &toml, "am");
    first
        .send(&message("level_changed", Level::Critical))
        .await
        .unwrap();
    let alert = wait_for("the alert in Alertmanager", Duration::from_secs(10), || {
        let am = &am;
        async move {
            active(&am.alerts().await, "error_rate")
                .first()
                .map(|a| (*a).clone())
        }
    })
    .await;
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "ReleaseGuardian");
    assert_eq!(labels["service"], "checkout");
    assert_eq!(labels["environment"], "production");
    assert_eq!(labels["version"], "v2");
    assert_eq!(labels["check"], "error_rate");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["release_id"], "0190-release");
    assert_eq!(
        alert["annotations"]["reason"],
        "error_rate entered critical: value 0.0712, rule above 0.05 for 5m"
    );
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("checkout production v2 check error_rate level critical"));
    assert_eq!(
        alert["generatorURL"],
        "http://guardian.example:9797/v1/releases/0190-release"
    );

    // Re-posted while firing: its `endsAt` moves on (4 × 1s ahead each time).
    let ends = ends_at(&alert);
    wait_for("a re-post moving endsAt", Duration::from_secs(10), || {
        let am = &am;
        async move {
            let alerts = am.alerts().await;
            let now = active(&alerts, "error_rate");
            (now.len() == 1 && ends_at(now[0]) > ends).then_some(())
        }
    })
    .await;

    // A restart: the old notifier goes, a new one adopts the open alert and
    // keeps it firing without any message.
    drop(first);
    let second = notifier(dir.path(), &toml, "am");
    // Past every re-post the first notifier may have had in flight.
    let before = ends_at(active(&am.alerts().await, "error_rate")[0]) + Duration::from_secs(2);
    wait_for(
        "the adopted alert re-posted",
        Duration::from_secs(15),
        || {
            let am = &am;
            async move {
                let alerts = am.alerts().await;
                let now = active(&alerts, "error_rate");
                (now.len() == 1 && ends_at(now[0]) > before).then_some(())
            }
        },
    )
    .await;

    // The closing message resolves it (same labels, endsAt = now).
    second.send(&message("recovered", Level::Ok)).await.unwrap();
    wait_for("the alert resolved", Duration::from_secs(15), || {
        let am = &am;
        async move {
            active(&am.alerts().await, "error_rate")
                .is_empty()
                .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_new_severity_resolves_the_old_alert_of_the_incident() {
    let am = Alertmanager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let am_notifier = notifier(dir.path(), &config(&am), "am");
    am_notifier
        .send(&message("level_changed", Level::Warning))
        .await
        .unwrap();
    am_notifier
        .send(&message("level_changed", Level::Critical))
        .await
        .unwrap();
    let firing = wait_for(
        "only the critical alert firing",
        Duration::from_secs(10),
        || {
            let am = &am;
            async move {
                let alerts = am.alerts().await;
                let now: Vec<Value> = active(&alerts, "error_rate").into_iter().cloned().collect();
                (now.len() == 1).then_some(now)
            }
        },
    )
    .await;
    assert_eq!(firing[0]["labels"]["severity"], "critical");
    // A message of no check is a one-off alert that expires by itself.
    let mut event = message("rollback_started", Level::Rollback);
    event.check = None;
    event.level = None;
    event.severity = Severity::Critical;
    am_notifier.send(&event).await.unwrap();
    let alerts = am.alerts().await;
    let one_off = alerts
        .iter()
        .find(|a| a["labels"]["event"] == "rollback_started")
        .expect("the event's alert");
    assert!(one_off["labels"].get("check").is_none());
}

#[tokio::test]
async fn alertmanager_down_is_a_temporary_failure() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", crate::support::free_port());
    let toml = format!("[notifiers.am]\nkind = \"alertmanager\"\nurl = \"{url}\"\n");
    let e = notifier(dir.path(), &toml, "am")
        .send(&message("level_changed", Level::Critical))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, release_guardian::actions::notify::NotifyError::Temporary { detail, .. } if detail.contains("connection refused")),
        "{e:?}"
    );
    assert!(!e.to_string().contains(&url), "{e}");
}

//! Slack and webhook notifiers against local receivers that check the
//! documented shapes (slack-incoming-webhooks.md; the webhook schema in
//! `actions/notify/webhook.rs`) and answer as the real ones do.

use crate::support::receiver::{HOOK_PATH, SLACK_PATH};
use crate::support::{free_port, Receiver, Reply};
use release_guardian::actions::notify::slack::SlackNotifier;
use release_guardian::actions::notify::webhook::WebhookNotifier;
use release_guardian::actions::notify::{Notifier, NotifyError};
use release_guardian::config::Secret;
use release_guardian::model::{Level, Message, Severity};
use std::time::Duration;

fn message() -> Message {
    Message {
        dedup_key: "0190-release/error_rate/rollback/1787392800000".into(),
        release_id: "0190-release".into(),
        service: "checkout".into(),
        environment: "production".into(),
        version: "v2".into(),
        previous_version: Some("v1".into()),
        severity: Severity::Critical,
        event: "level_changed".into(),
        check: Some("error_rate".into()),
        level: Some(Level::Rollback),
        value: Some(0.0712),
        reason: "error_rate above 0.05 for 5m <!channel> & friends".into(),
        at: 1_787_392_800_000,
    }
}

fn slack(url: String, timeout: Duration) -> SlackNotifier {
    SlackNotifier::new(reqwest::Client::new(), Secret::new(url), timeout)
}

fn webhook(url: String, timeout: Duration) -> WebhookNotifier {
    WebhookNotifier::new(reqwest::Client::new(), Secret::new(url), timeout)
}

/// A URL on a loopback port nobody listens on.
fn closed(path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", free_port())
}

const T: Duration = Duration::from_secs(5);

fn assert_hides_url(e: &NotifyError) {
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains("SECRETXYZ") && !shown.contains("/services/"),
        "{shown}"
    );
}

#[tokio::test]
async fn slack_message_has_the_documented_shape() {
    let rx = Receiver::start(Reply::Ok).await;
    slack(rx.slack_url(), T).send(&message()).await.unwrap();
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].problem, None);
    let body = &got[0].body;
    let text = body["text"].as_str().unwrap();
    for part in [
        "checkout",
        "production",
        "v2",
        "error_rate",
        "rollback",
        "0.0712",
    ] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
    assert!(text.contains("&lt;!channel&gt; &amp; friends"), "{text}");
    let fields: Vec<&str> = body["blocks"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    for label in [
        "Service",
        "Environment",
        "Version",
        "Check",
        "Level",
        "Value",
        "Reason",
        "Release id",
        "Dedup key",
    ] {
        assert!(
            fields
                .iter()
                .any(|f| f.starts_with(&format!("*{label}*\n"))),
            "{label}"
        );
    }
    assert!(fields.contains(&"*Version*\nv2 (previous v1)"));
    let context = body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "context")
        .expect("a context block");
    assert!(context["elements"][0]["text"]
        .as_str()
        .unwrap()
        .contains("2026-08-22T10:00:00Z"));
}

#[tokio::test]
async fn slack_truncates_to_block_kit_limits() {
    let rx = Receiver::start(Reply::Ok).await;
    let mut msg = message();
    msg.service = "s".repeat(400);
    msg.reason = "<&>".repeat(2000);
    msg.check = None;
    msg.level = None;
    msg.value = None;
    slack(rx.slack_url(), T).send(&msg).await.unwrap();
    let got = rx.received();
    assert_eq!(got[0].problem, None, "receiver refused it");
    let header = got[0].body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(header.chars().count(), 150);
}

#[tokio::test]
async fn slack_answers_are_classified() {
    let rx = Receiver::start(Reply::RateLimited("7")).await;
    let e = slack(rx.slack_url(), T).send(&message()).await.unwrap_err();
    assert!(
        matches!(e, NotifyError::Temporary { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{e:?}"
    );
    assert_hides_url(&e);

    let rx = Receiver::start(Reply::BadPayload).await;
    let e = slack(rx.slack_url(), T).send(&message()).await.unwrap_err();
    assert_eq!(
        e,
        NotifyError::Permanent {
            detail: "Slack answered HTTP 400: invalid_payload".into()
        }
    );

    let rx = Receiver::start(Reply::ServerError).await;
    let e = slack(rx.slack_url(), T).send(&message()).await.unwrap_err();
    assert!(
        matches!(&e, NotifyError::Temporary { retry_after: None, detail } if detail.contains("rollup_error")),
        "{e:?}"
    );

    let rx = Receiver::start(Reply::EchoPath).await;
    let e = slack(rx.slack_url(), T).send(&message()).await.unwrap_err();
    assert!(matches!(e, NotifyError::Permanent { .. }), "{e:?}");
    assert_hides_url(&e);
}

#[tokio::test]
async fn slack_network_failures_are_temporary_and_hide_the_url() {
    let e = slack(closed(SLACK_PATH), T)
        .send(&message())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        NotifyError::Temporary {
            detail: "cannot reach Slack: connection refused".into(),
            retry_after: None
        }
    );
    assert_hides_url(&e);

    let rx = Receiver::start(Reply::Hang).await;
    let e = slack(rx.slack_url(), Duration::from_millis(200))
        .send(&message())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        NotifyError::Temporary {
            detail: "cannot reach Slack: timed out after 200ms".into(),
            retry_after: None
        }
    );
    assert_hides_url(&e);
}

#[tokio::test]
async fn webhook_posts_the_schema_with_an_idempotency_key() {
    let rx = Receiver::start(Reply::Ok).await;
    webhook(rx.webhook_url(), T).send(&message()).await.unwrap();
    let got = rx.received();
    assert_eq!(got[0].problem, None);
    let b = &got[0].body;
    assert_eq!(b["schema_version"], 2);
    assert_eq!(b["version"], "v2");
    assert_eq!(b["previous_version"], "v1");
    assert_eq!(b["service"], "checkout");
    assert_eq!(b["environment"], "production");
    assert_eq!(b["severity"], "critical");
    assert_eq!(b["event"], "level_changed");
    assert_eq!(b["check"], "error_rate");
    assert_eq!(b["level"], "rollback");
    assert_eq!(b["value"], 0.0712);
    assert_eq!(b["at"], "2026-08-22T10:00:00Z");
    assert_eq!(b["summary"], message().summary());
    assert_eq!(
        got[0].headers["idempotency-key"],
        "0190-release/error_rate/rollback/1787392800000"
    );
}

#[tokio::test]
async fn webhook_answers_are_classified() {
    let rx = Receiver::start(Reply::RateLimited("7")).await;
    let e = webhook(rx.webhook_url(), T)
        .send(&message())
        .await
        .unwrap_err();
    assert!(
        matches!(e, NotifyError::Temporary { retry_after: Some(d), .. } if d == Duration::from_secs(7))
    );

    let rx = Receiver::start(Reply::ServerError).await;
    assert!(matches!(
        webhook(rx.webhook_url(), T).send(&message()).await,
        Err(NotifyError::Temporary { .. })
    ));

    let rx = Receiver::start(Reply::BadPayload).await;
    assert!(matches!(
        webhook(rx.webhook_url(), T).send(&message()).await,
        Err(NotifyError::Permanent { .. })
    ));

    let rx = Receiver::start(Reply::EchoPath).await;
    let e = webhook(rx.webhook_url(), T)
        .send(&message())
        .await
        .unwrap_err();
    assert!(matches!(e, NotifyError::Permanent { .. }));
    assert_hides_url(&e);

    let e = webhook(closed(HOOK_PATH), T)
        .send(&message())
        .await
        .unwrap_err();
    assert!(matches!(e, NotifyError::Temporary { .. }));
    assert_hides_url(&e);

    let bad = WebhookNotifier::new(
        reqwest::Client::new(),
        Secret::new("not a url SECRETXYZ"),
        T,
    );
    let e = bad.send(&message()).await.unwrap_err();
    assert!(matches!(e, NotifyError::Permanent { .. }));
    assert_hides_url(&e);
}

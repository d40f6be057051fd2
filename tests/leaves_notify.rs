//! Slack and webhook notifiers against local receivers that check the
//! documented shapes (slack-incoming-webhooks.md; the webhook schema in
//! `actions/notify/webhook.rs`) and answer as the real ones do.

mod leaves_support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use leaves_support::{free_port, serve};
use release_guardian::actions::notify::slack::SlackNotifier;
use release_guardian::actions::notify::webhook::WebhookNotifier;
use release_guardian::actions::notify::{Notifier, NotifyError};
use release_guardian::config::Secret;
use release_guardian::model::{Level, Message, Severity};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SLACK_PATH: &str = "/services/T000/B000/SECRETXYZ";
const HOOK_PATH: &str = "/hooks/SECRETXYZ";

#[derive(Clone, Copy)]
enum Reply {
    Ok,
    RateLimited,
    BadPayload,
    ServerError,
    EchoPath,
    Hang,
}

#[derive(Debug)]
struct Received {
    headers: HeaderMap,
    body: Value,
    /// Why the receiver found the request malformed, if it did.
    problem: Option<String>,
}

struct Receiver {
    reply: Reply,
    received: Mutex<Vec<Received>>,
}

async fn receive(
    State(rx): State<Arc<Receiver>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Result<Value, _> = serde_json::from_slice(&body);
    let problem = match (&json, uri.path()) {
        (Err(e), _) => Some(format!("not JSON: {e}")),
        (Ok(v), SLACK_PATH) => check_slack(&headers, v).err(),
        (Ok(v), _) => check_webhook(&headers, v).err(),
    };
    rx.received.lock().unwrap().push(Received {
        headers,
        body: json.unwrap_or(Value::Null),
        problem: problem.clone(),
    });
    if problem.is_some() {
        return (StatusCode::BAD_REQUEST, "invalid_blocks").into_response();
    }
    match rx.reply {
        Reply::Ok => (StatusCode::OK, "ok").into_response(),
        Reply::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "7")],
            "rate_limited",
        )
            .into_response(),
        Reply::BadPayload => (StatusCode::BAD_REQUEST, "invalid_payload").into_response(),
        Reply::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "rollup_error").into_response(),
        Reply::EchoPath => {
            (StatusCode::NOT_FOUND, format!("no_service {}", uri.path())).into_response()
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
    }
}

fn text_of(obj: &Value, max: usize, kinds: &[&str]) -> Result<(), String> {
    let kind = obj["type"].as_str().unwrap_or("");
    if !kinds.contains(&kind) {
        return Err(format!("text object of type {kind:?}"));
    }
    let text = obj["text"].as_str().ok_or("text object without text")?;
    let n = text.chars().count();
    if n == 0 || n > max {
        return Err(format!("text of {n} characters (max {max})"));
    }
    Ok(())
}

/// The incoming-webhook shape: JSON, `text` fallback, valid Block Kit blocks within limits.
fn check_slack(headers: &HeaderMap, v: &Value) -> Result<(), String> {
    if headers.get("content-type").and_then(|h| h.to_str().ok()) != Some("application/json") {
        return Err("content-type is not application/json".into());
    }
    if !matches!(v["text"].as_str(), Some(t) if !t.is_empty()) {
        return Err("no text fallback".into());
    }
    let blocks = v["blocks"].as_array().ok_or("no blocks")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err(format!("{} blocks", blocks.len()));
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => text_of(&b["text"], 150, &["plain_text"])?,
            Some("section") => {
                if b.get("text").is_some() {
                    text_of(&b["text"], 3000, &["mrkdwn", "plain_text"])?;
                }
                let fields = b["fields"].as_array().map_or(&[][..], Vec::as_slice);
                if fields.len() > 10 || (fields.is_empty() && b.get("text").is_none()) {
                    return Err(format!("section with {} fields", fields.len()));
                }
                for f in fields {
                    text_of(f, 2000, &["mrkdwn", "plain_text"])?;
                }
            }
            Some("context") => {
                let elements = b["elements"].as_array().ok_or("context without elements")?;
                if elements.is_empty() || elements.len() > 10 {
                    return Err(format!("context with {} elements", elements.len()));
                }
                for e in elements {
                    text_of(e, 3000, &["mrkdwn", "plain_text"])?;
                }
            }
            Some("divider") => {}
            other => return Err(format!("unknown block type {other:?}")),
        }
    }
    Ok(())
}

/// The webhook schema, version 1, and its headers.
fn check_webhook(headers: &HeaderMap, v: &Value) -> Result<(), String> {
    if headers.get("content-type").and_then(|h| h.to_str().ok()) != Some("application/json") {
        return Err("content-type is not application/json".into());
    }
    if v["version"] != 1 {
        return Err("schema version is not 1".into());
    }
    for key in [
        "dedup_key",
        "release_id",
        "service",
        "environment",
        "release_version",
        "severity",
        "event",
        "reason",
        "at",
        "summary",
    ] {
        if !v[key].is_string() {
            return Err(format!("{key} is not a string"));
        }
    }
    for key in ["previous_version", "check", "level", "value"] {
        if v.get(key).is_none() {
            return Err(format!("{key} is missing"));
        }
    }
    let key = headers.get("idempotency-key").and_then(|h| h.to_str().ok());
    if key != v["dedup_key"].as_str() {
        return Err("Idempotency-Key differs from dedup_key".into());
    }
    Ok(())
}

async fn start(reply: Reply) -> (String, Arc<Receiver>) {
    let rx = Arc::new(Receiver {
        reply,
        received: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route(SLACK_PATH, post(receive))
        .route(HOOK_PATH, post(receive))
        .with_state(rx.clone());
    (format!("http://{}", serve(app).await), rx)
}

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

fn slack(base: &str, timeout: Duration) -> SlackNotifier {
    SlackNotifier::new(
        reqwest::Client::new(),
        Secret::new(format!("{base}{SLACK_PATH}")),
        timeout,
    )
}

fn webhook(base: &str, timeout: Duration) -> WebhookNotifier {
    WebhookNotifier::new(
        reqwest::Client::new(),
        Secret::new(format!("{base}{HOOK_PATH}")),
        timeout,
    )
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
    let (base, rx) = start(Reply::Ok).await;
    slack(&base, T).send(&message()).await.unwrap();
    let got = rx.received.lock().unwrap();
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
    assert!(body["blocks"][2]["elements"][0]["text"]
        .as_str()
        .unwrap()
        .contains("2026-08-22T10:00:00Z"));
}

#[tokio::test]
async fn slack_truncates_to_block_kit_limits() {
    let (base, rx) = start(Reply::Ok).await;
    let mut msg = message();
    msg.service = "s".repeat(400);
    msg.reason = "<&>".repeat(2000);
    msg.check = None;
    msg.level = None;
    msg.value = None;
    slack(&base, T).send(&msg).await.unwrap();
    let got = rx.received.lock().unwrap();
    assert_eq!(got[0].problem, None, "receiver refused it");
    let header = got[0].body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert_eq!(header.chars().count(), 150);
}

#[tokio::test]
async fn slack_answers_are_classified() {
    let (base, _) = start(Reply::RateLimited).await;
    let e = slack(&base, T).send(&message()).await.unwrap_err();
    assert!(
        matches!(e, NotifyError::Temporary { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{e:?}"
    );
    assert_hides_url(&e);

    let (base, _) = start(Reply::BadPayload).await;
    let e = slack(&base, T).send(&message()).await.unwrap_err();
    assert_eq!(
        e,
        NotifyError::Permanent {
            detail: "Slack answered HTTP 400: invalid_payload".into()
        }
    );

    let (base, _) = start(Reply::ServerError).await;
    let e = slack(&base, T).send(&message()).await.unwrap_err();
    assert!(
        matches!(&e, NotifyError::Temporary { retry_after: None, detail } if detail.contains("rollup_error")),
        "{e:?}"
    );

    let (base, _) = start(Reply::EchoPath).await;
    let e = slack(&base, T).send(&message()).await.unwrap_err();
    assert!(matches!(e, NotifyError::Permanent { .. }), "{e:?}");
    assert_hides_url(&e);
}

#[tokio::test]
async fn slack_network_failures_are_temporary_and_hide_the_url() {
    let base = format!("http://127.0.0.1:{}", free_port());
    let e = slack(&base, T).send(&message()).await.unwrap_err();
    assert_eq!(
        e,
        NotifyError::Temporary {
            detail: "cannot reach Slack: connection refused".into(),
            retry_after: None
        }
    );
    assert_hides_url(&e);

    let (base, _) = start(Reply::Hang).await;
    let e = slack(&base, Duration::from_millis(200))
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
    let (base, rx) = start(Reply::Ok).await;
    webhook(&base, T).send(&message()).await.unwrap();
    let got = rx.received.lock().unwrap();
    assert_eq!(got[0].problem, None);
    let b = &got[0].body;
    assert_eq!(b["version"], 1);
    assert_eq!(b["release_version"], "v2");
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
    let (base, _) = start(Reply::RateLimited).await;
    let e = webhook(&base, T).send(&message()).await.unwrap_err();
    assert!(
        matches!(e, NotifyError::Temporary { retry_after: Some(d), .. } if d == Duration::from_secs(7))
    );

    let (base, _) = start(Reply::ServerError).await;
    assert!(matches!(
        webhook(&base, T).send(&message()).await,
        Err(NotifyError::Temporary { .. })
    ));

    let (base, _) = start(Reply::BadPayload).await;
    assert!(matches!(
        webhook(&base, T).send(&message()).await,
        Err(NotifyError::Permanent { .. })
    ));

    let (base, _) = start(Reply::EchoPath).await;
    let e = webhook(&base, T).send(&message()).await.unwrap_err();
    assert!(matches!(e, NotifyError::Permanent { .. }));
    assert_hides_url(&e);

    let base = format!("http://127.0.0.1:{}", free_port());
    let e = webhook(&base, T).send(&message()).await.unwrap_err();
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

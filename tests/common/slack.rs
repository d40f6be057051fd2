//! A local stand-in for Slack incoming webhooks. It checks each message
//! against the documented shape (shared/reference/slack-incoming-webhooks.md)
//! and answers like Slack: `ok`, or 400 `invalid_payload`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Inbox {
    messages: Vec<serde_json::Value>,
    violations: Vec<String>,
    /// Answer 503 to everything (Slack down).
    failing: bool,
}

pub struct SlackReceiver {
    pub url: String,
    inbox: Arc<Mutex<Inbox>>,
    cancel: CancellationToken,
}

impl SlackReceiver {
    pub async fn start() -> Self {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = Router::new()
            .route("/services/{*path}", post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { c.cancelled().await })
                .await
                .unwrap();
        });
        Self {
            url: format!("http://{addr}/services/T000/B000/SECRETHOOK"),
            inbox,
            cancel,
        }
    }

    /// Every accepted message's `text`.
    pub fn texts(&self) -> Vec<String> {
        let g = self.inbox.lock().unwrap();
        g.messages
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Makes the receiver answer 503 (true) or work again (false).
    pub fn set_failing(&self, failing: bool) {
        self.inbox.lock().unwrap().failing = failing;
    }

    /// Shape violations seen (must stay empty).
    pub fn violations(&self) -> Vec<String> {
        self.inbox.lock().unwrap().violations.clone()
    }
}

impl Drop for SlackReceiver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn check_shape(v: &serde_json::Value) -> Result<(), String> {
    let text = v
        .get("text")
        .and_then(|t| t.as_str())
        .ok_or("missing `text`")?;
    if text.is_empty() {
        return Err("empty `text`".into());
    }
    if let Some(blocks) = v.get("blocks") {
        let blocks = blocks.as_array().ok_or("`blocks` is not an array")?;
        if blocks.len() > 50 {
            return Err("more than 50 blocks".into());
        }
        for b in blocks {
            match b.get("type").and_then(|t| t.as_str()) {
                Some("header") => {
                    let t = &b["text"];
                    if t["type"] != "plain_text"
                        || t["text"].as_str().is_none_or(|s| s.chars().count() > 150)
                    {
                        return Err(format!("bad header block {b}"));
                    }
                }
                Some("section") => {
                    if b.get("text").is_none() && b.get("fields").is_none() {
                        return Err(format!("section without text or fields {b}"));
                    }
                    if b.get("fields")
                        .and_then(|f| f.as_array())
                        .is_some_and(|f| f.len() > 10)
                    {
                        return Err("section with more than 10 fields".into());
                    }
                }
                Some("context") | Some("divider") | Some("actions") => {}
                other => return Err(format!("unknown block type {other:?}")),
            }
        }
    }
    Ok(())
}

async fn receive(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    body: String,
) -> (StatusCode, &'static str) {
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(&body);
    let mut g = inbox.lock().unwrap();
    if g.failing {
        return (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    }
    match parsed
        .map_err(|e| e.to_string())
        .and_then(|v| check_shape(&v).map(|_| v))
    {
        Ok(v) => {
            g.messages.push(v);
            (StatusCode::OK, "ok")
        }
        Err(e) => {
            g.violations.push(e);
            (StatusCode::BAD_REQUEST, "invalid_payload")
        }
    }
}

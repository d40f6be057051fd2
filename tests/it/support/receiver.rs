//! A local stand-in for what the notifiers post to: a Slack incoming webhook
//! at [`Receiver::slack_url`], a generic webhook at
//! [`Receiver::webhook_url`] and PagerDuty's Events API v2 at
//! [`Receiver::pagerduty_url`]. Every request is recorded and checked
//! against the documented shape (Slack's incoming-webhook payload: `text`
//! and `blocks`; the webhook schema in `actions/notify/webhook.rs`;
//! pagerduty-events-v2.md): a malformed one is answered 400 as the real
//! one does (`invalid_payload`; PagerDuty's `invalid event` JSON); a
//! well-formed one as the [`Reply`] in force says (PagerDuty's success is
//! 202 with its JSON).

use super::serve;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The Slack webhook's path; the URL is a secret, so is `SECRETXYZ`.
pub const SLACK_PATH: &str = "/services/T000/B000/SECRETXYZ";
/// The generic webhook's path.
pub const HOOK_PATH: &str = "/hooks/SECRETXYZ";
/// PagerDuty's Events API v2 path.
pub const PAGERDUTY_PATH: &str = "/v2/enqueue";

/// How a well-formed request is answered.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// 200 `ok`.
    Ok,
    /// 200 `ok` after a pause (the request is recorded at once).
    OkAfter(Duration),
    /// 429 `rate_limited` with this `Retry-After` (seconds).
    RateLimited(&'static str),
    /// 400 `invalid_payload`.
    BadPayload,
    /// 500 `rollup_error`.
    ServerError,
    /// 503 `service_unavailable` (the receiver is down).
    Unavailable,
    /// 404 quoting the request path (a receiver that echoes the secret URL).
    EchoPath,
    /// Never answers.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    /// The body (`null` when it was not JSON).
    pub body: Value,
    /// The body as sent (what a signature covers).
    pub raw: Vec<u8>,
    /// Why the request is malformed, if it is.
    pub problem: Option<String>,
    /// The status it was (or is being) answered with.
    pub status: StatusCode,
    /// When it arrived.
    pub at: std::time::Instant,
}

struct Shared {
    reply: Mutex<Reply>,
    /// Replies for the next requests, in order, before `reply` again.
    script: Mutex<std::collections::VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

pub struct Receiver {
    base: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Serves on a fresh loopback port, answering as `reply` says.
    pub async fn start(reply: Reply) -> Self {
        let shared = Arc::new(Shared {
            reply: Mutex::new(reply),
            script: Mutex::new(Default::default()),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(SLACK_PATH, post(receive))
            .route(HOOK_PATH, post(receive))
            .route(PAGERDUTY_PATH, post(receive))
            .with_state(shared.clone());
        Self {
            base: format!("http://{}", serve(app).await),
            shared,
        }
    }

    /// The Slack incoming-webhook URL.
    pub fn slack_url(&self) -> String {
        format!("{}{SLACK_PATH}", self.base)
    }

    /// The generic webhook URL.
    pub fn webhook_url(&self) -> String {
        format!("{}{HOOK_PATH}", self.base)
    }

    /// The Events API v2 URL (PagerDuty's `url` override).
    pub fn pagerduty_url(&self) -> String {
        format!("{}{PAGERDUTY_PATH}", self.base)
    }

    /// Answers as `reply` says from now on.
    pub fn set_reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    /// Answers the next requests with `replies`, in order, then as
    /// [`Receiver::set_reply`] says again.
    pub fn script(&self, replies: &[Reply]) {
        self.shared
            .script
            .lock()
            .unwrap()
            .extend(replies.iter().copied());
    }

    /// The bodies of the requests that were accepted (answered 2xx).
    pub fn accepted(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.status.is_success())
            .map(|r| r.body)
            .collect()
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many requests arrived (answered or not yet).
    pub fn hits(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// The `text` of every message that was accepted (answered 2xx).
    pub fn texts(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter(|r| r.status.is_success())
            .map(|r| r.body["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Every shape problem seen (a correct sender leaves this empty).
    pub fn problems(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter_map(|r| r.problem)
            .collect()
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json: Result<Value, _> = serde_json::from_slice(&body);
    let problem = match (&json, uri.path()) {
        (Err(e), _) => Some(format!("not JSON: {e}")),
        (Ok(v), SLACK_PATH) => check_slack(&headers, v).err(),
        (Ok(v), PAGERDUTY_PATH) => check_pagerduty(&headers, v).err(),
        (Ok(v), _) => check_webhook(&headers, v).err(),
    };
    let at = std::time::Instant::now();
    let scripted = shared.script.lock().unwrap().pop_front();
    let reply = scripted.unwrap_or_else(|| *shared.reply.lock().unwrap());
    let pagerduty = uri.path() == PAGERDUTY_PATH;
    let response = match (&problem, reply) {
        (problem, Reply::BadPayload) | (problem @ Some(_), _) if pagerduty => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": [problem.clone().unwrap_or_else(|| "refused as told".into())]
            })),
        )
            .into_response(),
        (Some(_), _) | (None, Reply::BadPayload) => {
            (StatusCode::BAD_REQUEST, "invalid_payload").into_response()
        }
        (None, Reply::Ok | Reply::OkAfter(_) | Reply::Hang) if pagerduty => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({
                "status": "success",
                "message": "Event processed",
                "dedup_key": json.as_ref().ok().and_then(|v| v["dedup_key"].as_str()).unwrap_or_default()
            })),
        )
            .into_response(),
        (None, Reply::Ok | Reply::OkAfter(_) | Reply::Hang) => {
            (StatusCode::OK, "ok").into_response()
        }
        (None, Reply::RateLimited(seconds)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds)],
            "rate_limited",
        )
            .into_response(),
        (None, Reply::ServerError) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "rollup_error").into_response()
        }
        (None, Reply::Unavailable) => {
            (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").into_response()
        }
        (None, Reply::EchoPath) => {
            (StatusCode::NOT_FOUND, format!("no_service {}", uri.path())).into_response()
        }
    };
    shared.received.lock().unwrap().push(Received {
        headers,
        body: json.unwrap_or(Value::Null),
        raw: body.to_vec(),
        problem,
        status: response.status(),
        at,
    });
    match reply {
        Reply::OkAfter(pause) => tokio::time::sleep(pause).await,
        Reply::Hang => std::future::pending::<()>().await,
        _ => {}
    }
    response
}

/// A Block Kit text object of one of `kinds`, 1 to `max` characters.
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

/// The incoming-webhook shape: JSON, a `text` fallback, valid Block Kit
/// blocks within their limits.
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

/// The webhook schema, version 2, and its headers (a signature, when
/// present, is `sha256=` and 64 hex digits).
fn check_webhook(headers: &HeaderMap, v: &Value) -> Result<(), String> {
    if headers.get("content-type").and_then(|h| h.to_str().ok()) != Some("application/json") {
        return Err("content-type is not application/json".into());
    }
    if v["schema_version"] != 2 {
        return Err("schema_version is not 2".into());
    }
    for key in [
        "dedup_key",
        "incident_key",
        "release_id",
        "service",
        "environment",
        "version",
        "severity",
        "event",
        "reason",
        "at",
        "sent_at",
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
    if !v["closes_incident"].is_boolean() {
        return Err("closes_incident is not a boolean".into());
    }
    let links = v["links"].as_array().ok_or("links is not an array")?;
    if links
        .iter()
        .any(|l| !l["text"].is_string() || !l["href"].is_string())
    {
        return Err("a link without text or href".into());
    }
    let key = headers.get("idempotency-key").and_then(|h| h.to_str().ok());
    if key != v["dedup_key"].as_str() {
        return Err("Idempotency-Key differs from dedup_key".into());
    }
    if let Some(sig) = headers.get("x-guardian-signature") {
        let sig = sig.to_str().unwrap_or_default();
        let hex = sig.strip_prefix("sha256=").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("malformed X-Guardian-Signature {sig:?}"));
        }
    }
    Ok(())
}

/// An Events API v2 alert event (pagerduty-events-v2.md, section 2).
fn check_pagerduty(headers: &HeaderMap, v: &Value) -> Result<(), String> {
    if headers.get("content-type").and_then(|h| h.to_str().ok()) != Some("application/json") {
        return Err("content-type is not application/json".into());
    }
    if !matches!(v["routing_key"].as_str(), Some(k) if k.len() == 32) {
        return Err("Length of 'routing_key' is incorrect (should be 32 characters)".into());
    }
    let action = v["event_action"].as_str().unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        return Err(format!("unknown event_action {action:?}"));
    }
    match v["dedup_key"].as_str() {
        Some(k) if k.chars().count() <= 255 && !k.is_empty() => {}
        Some(_) => return Err("dedup_key longer than 255 characters or empty".into()),
        None if action == "trigger" => {}
        None => return Err(format!("{action} without dedup_key")),
    }
    if action != "trigger" {
        return Ok(());
    }
    let p = &v["payload"];
    match p["summary"].as_str() {
        Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
        _ => return Err("payload.summary missing, empty or over 1024 characters".into()),
    }
    if !matches!(p["source"].as_str(), Some(s) if !s.is_empty()) {
        return Err("payload.source missing".into());
    }
    let severity = p["severity"].as_str().unwrap_or_default();
    if !["critical", "error", "warning", "info"].contains(&severity) {
        return Err(format!("payload.severity {severity:?}"));
    }
    if let Some(ts) = p.get("timestamp") {
        let ts = ts.as_str().unwrap_or_default();
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
            .map_err(|e| format!("payload.timestamp {ts:?}: {e}"))?;
    }
    if !p.get("custom_details").is_none_or(Value::is_object) {
        return Err("payload.custom_details is not an object".into());
    }
    for link in v["links"].as_array().map_or(&[][..], Vec::as_slice) {
        if !link["href"].is_string() {
            return Err("a link without href".into());
        }
    }
    Ok(())
}

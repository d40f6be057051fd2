//! The generic webhook notifier: POSTs one JSON object per message, and the
//! delivery plumbing the other HTTP notifiers share (sending, classifying
//! the answer, keeping the URL out of every error).
//!
//! The body (`schema_version` 2):
//!
//! ```json
//! {"schema_version": 2, "dedup_key": "...", "incident_key": "RELEASE/error_rate",
//!  "closes_incident": false, "release_id": "...", "service": "checkout",
//!  "environment": "production", "version": "v2", "previous_version": "v1",
//!  "severity": "critical", "event": "level_changed", "check": "error_rate",
//!  "level": "rollback", "value": 0.07, "reason": "...",
//!  "at": "2026-08-22T10:00:00.250Z", "sent_at": "2026-08-22T10:00:01Z",
//!  "summary": "[CRITICAL] checkout production v2 ...",
//!  "links": [{"text": "Release status", "href": "https://.../v1/releases/ID"}]}
//! ```
//!
//! `version` is the release's version; the schema's own version is
//! `schema_version` (schema 1 had the schema number under `version` and the
//! release's under `release_version`). `previous_version`, `check`, `level`
//! and `value` are `null` when unknown; `value` is also `null` when it is
//! NaN or infinite (the `summary` still spells it). `sent_at` is the time of
//! this delivery attempt (each retry has its own). `links` is empty without
//! `[server] public_url`.
//!
//! Headers: `Content-Type: application/json`, `Idempotency-Key: <dedup_key>`
//! (a receiver drops the duplicates that at-least-once delivery may
//! produce), and with a `secret`: `X-Guardian-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the raw body under the secret. The signed body carries
//! `sent_at`, so a receiver can refuse old (replayed) deliveries.
//!
//! Answers: 2xx → delivered; 408, 429 (with `Retry-After` seconds) and 5xx,
//! network errors and timeouts → [`NotifyError::Temporary`]; anything else
//! → [`NotifyError::Permanent`].

use super::{BuildContext, Links, Notifier, NotifierConfig, NotifierKind, NotifyError};
use crate::model::{rfc3339, Message};
use crate::section::{deserialize_duration, secret_url, Secret, Section};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `kind = "webhook"`.
pub const KIND: NotifierKind = NotifierKind {
    name: "webhook",
    parse,
};

/// Default timeout of one delivery (every HTTP notifier).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The header carrying the body's signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Guardian-Signature";

/// The schema version of the body.
pub const SCHEMA_VERSION: u32 = 2;

pub(super) fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// `[notifiers.NAME]` with `kind = "webhook"`: the URL (a secret: it may
/// embed a token), the delivery timeout, and the optional signing secret.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    url: Secret,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    timeout: Duration,
    #[serde(default)]
    secret: Option<Secret>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
}

/// A checked webhook section.
#[derive(Debug)]
pub struct WebhookConfig {
    pub url: Secret,
    pub timeout: Duration,
    /// Signs every body (`X-Guardian-Signature`) when set.
    pub secret: Option<Secret>,
}

fn parse(s: &mut Section<'_, '_>) -> Option<Box<dyn NotifierConfig>> {
    let f: Fields = s.deserialize()?;
    s.positive("timeout", f.timeout);
    let url = secret_url(&f.url, &s.at.key("url"), "webhook `url`", s.report);
    let signing = f.secret.is_some() || f.secret_file.is_some();
    let secret = s.optional_secret(f.secret.as_ref(), f.secret_file.as_ref(), "secret");
    (url.is_some() && !f.timeout.is_zero() && (secret.is_some() || !signing)).then(|| {
        Box::new(WebhookConfig {
            url: f.url,
            timeout: f.timeout,
            secret,
        }) as Box<dyn NotifierConfig>
    })
}

impl NotifierConfig for WebhookConfig {
    fn secrets(&self) -> Vec<&Secret> {
        std::iter::once(&self.url).chain(&self.secret).collect()
    }

    fn build(&self, cx: &BuildContext) -> Arc<dyn Notifier> {
        Arc::new(
            WebhookNotifier::new(cx.http.clone(), self.url.clone(), self.timeout)
                .with_secret(self.secret.clone())
                .with_links(cx.links.clone()),
        )
    }
}

/// Answer bytes kept for an error message.
const MAX_ERROR_BODY: usize = 4096;

/// POSTs messages as JSON to one URL.
pub struct WebhookNotifier {
    http: reqwest::Client,
    url: Secret,
    timeout: Duration,
    secret: Option<Secret>,
    links: Links,
}

impl WebhookNotifier {
    /// A notifier posting to `url` (a secret: it may embed a token) with `timeout` per delivery.
    pub fn new(http: reqwest::Client, url: Secret, timeout: Duration) -> Self {
        Self {
            http,
            url,
            timeout,
            secret: None,
            links: Links::default(),
        }
    }

    /// Signs every body with `secret` (`X-Guardian-Signature`).
    pub fn with_secret(mut self, secret: Option<Secret>) -> Self {
        self.secret = secret;
        self
    }

    /// Adds links to the status API to every body.
    pub fn with_links(mut self, links: Links) -> Self {
        self.links = links;
        self
    }
}

/// One entry of `links`.
#[derive(Serialize)]
struct Link {
    text: &'static str,
    href: String,
}

/// The JSON body, schema version [`SCHEMA_VERSION`].
#[derive(Serialize)]
struct Payload<'a> {
    schema_version: u32,
    dedup_key: &'a str,
    incident_key: String,
    closes_incident: bool,
    release_id: &'a str,
    service: &'a str,
    environment: &'a str,
    version: &'a str,
    previous_version: Option<&'a str>,
    severity: &'a str,
    event: &'a str,
    check: Option<&'a str>,
    level: Option<&'a str>,
    value: Option<f64>,
    reason: &'a str,
    at: String,
    sent_at: String,
    summary: String,
    links: Vec<Link>,
}

impl<'a> Payload<'a> {
    fn of(msg: &'a Message, links: &Links, sent_at: crate::model::Millis) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            dedup_key: &msg.dedup_key,
            incident_key: msg.incident_key(),
            closes_incident: msg.closes_incident(),
            release_id: &msg.release_id,
            service: &msg.service,
            environment: &msg.environment,
            version: &msg.version,
            previous_version: msg.previous_version.as_deref(),
            severity: msg.severity.as_str(),
            event: &msg.event,
            check: msg.check.as_deref(),
            level: msg.level.map(|l| l.as_str()),
            value: msg.value.filter(|v| v.is_finite()),
            reason: &msg.reason,
            at: rfc3339(msg.at),
            sent_at: rfc3339(sent_at),
            summary: msg.summary(),
            links: links
                .of(msg)
                .into_iter()
                .map(|(text, href)| Link { text, href })
                .collect(),
        }
    }
}

/// Milliseconds since the epoch, by the wall clock (what a receiver
/// compares `sent_at` and `endsAt` with).
pub(super) fn wall_clock_ms() -> crate::model::Millis {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

#[async_trait]
impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        let payload = Payload::of(msg, &self.links, wall_clock_ms());
        let body = serde_json::to_vec(&payload).map_err(|e| NotifyError::Permanent {
            detail: format!("cannot encode the message: {e}"),
        })?;
        let signature = self.secret.as_ref().map(|secret| {
            format!(
                "sha256={}",
                crate::transport::hmac_sha256_hex(secret.expose().as_bytes(), &body)
            )
        });
        let mut headers = vec![("Idempotency-Key", msg.dedup_key.as_str())];
        if let Some(sig) = &signature {
            headers.push((SIGNATURE_HEADER, sig.as_str()));
        }
        let reply = post_json(
            &self.http,
            &self.url,
            self.timeout,
            body,
            &headers,
            "webhook",
        )
        .await?;
        classify(reply, "webhook")
    }
}

/// The part of an HTTP answer a notifier judges.
pub(super) struct Reply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The start of the body, on one line.
    pub body: String,
}

/// POSTs `body` as JSON to the secret `url`; network failures become
/// `Temporary` errors that never name the URL. `who` names the receiver in errors.
pub(super) async fn post_json(
    http: &reqwest::Client,
    url: &Secret,
    timeout: Duration,
    body: Vec<u8>,
    headers: &[(&str, &str)],
    who: &str,
) -> Result<Reply, NotifyError> {
    let parsed = reqwest::Url::parse(url.expose()).map_err(|_| NotifyError::Permanent {
        detail: format!("the {who} URL is not a valid URL"),
    })?;
    let mut request = http
        .post(parsed)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let temporary = |e: reqwest::Error| NotifyError::Temporary {
        detail: redact(
            &format!(
                "cannot reach {who}: {}",
                crate::transport::describe_transport_error(&e, timeout)
            ),
            url,
        ),
        retry_after: None,
    };
    let mut response = request.send().await.map_err(temporary)?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break,
            // The status is what matters; a body cut short is still an answer.
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let body = redact(&one_line(&text, 300), url);
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// 2xx → Ok; 408, 429, 5xx → Temporary; anything else → Permanent.
pub(super) fn classify(reply: Reply, who: &str) -> Result<(), NotifyError> {
    let Reply {
        status,
        retry_after,
        body,
    } = reply;
    let detail = if body.is_empty() {
        format!("{who} answered HTTP {status}")
    } else {
        format!("{who} answered HTTP {status}: {body}")
    };
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(NotifyError::Temporary {
            detail,
            retry_after,
        }),
        _ => Err(NotifyError::Permanent { detail }),
    }
}

/// `Retry-After` as a number of seconds (the HTTP-date form is ignored).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// `text` on one line, cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

/// Removes the secret URL (and its path, which is the secret part of a
/// Slack URL) from `text`, should a receiver have echoed it.
pub(super) fn redact(text: &str, url: &Secret) -> String {
    let mut out = text.replace(url.expose(), "<redacted>");
    if let Ok(parsed) = reqwest::Url::parse(url.expose()) {
        let path = parsed.path();
        if path.len() > 1 {
            out = out.replace(path, "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Severity};

    #[test]
    fn payload_names_the_release_version_apart_from_the_schema_version() {
        let msg = Message {
            dedup_key: "k1".into(),
            release_id: "r1".into(),
            service: "checkout".into(),
            environment: "production".into(),
            version: "v2".into(),
            previous_version: None,
            severity: Severity::Critical,
            event: "level_changed".into(),
            check: Some("error_rate".into()),
            level: Some(Level::Rollback),
            value: Some(f64::NAN),
            reason: "r".into(),
            at: 0,
        };
        let links = Links::new(Some("https://guardian.example/base/"));
        let v = serde_json::to_value(Payload::of(&msg, &links, 1000)).unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["version"], "v2");
        assert_eq!(v.get("release_version"), None);
        assert_eq!(v["incident_key"], "r1/error_rate");
        assert_eq!(v["closes_incident"], false);
        assert_eq!(v["previous_version"], serde_json::Value::Null);
        assert_eq!(v["value"], serde_json::Value::Null);
        assert_eq!(v["level"], "rollback");
        assert_eq!(v["at"], "1970-01-01T00:00:00Z");
        assert_eq!(v["sent_at"], "1970-01-01T00:00:01Z");
        assert_eq!(
            v["links"][0]["href"],
            "https://guardian.example/base/v1/releases/r1"
        );
        let none = serde_json::to_value(Payload::of(&msg, &Links::default(), 0)).unwrap();
        assert_eq!(none["links"], serde_json::json!([]));
    }

    #[test]
    fn answers_are_classified() {
        let reply = |status| Reply {
            status,
            retry_after: None,
            body: String::new(),
        };
        assert_eq!(classify(reply(204), "webhook"), Ok(()));
        assert!(matches!(
            classify(reply(503), "webhook"),
            Err(NotifyError::Temporary { .. })
        ));
        assert!(matches!(
            classify(reply(404), "webhook"),
            Err(NotifyError::Permanent { .. })
        ));
        assert!(matches!(
            classify(reply(301), "webhook"),
            Err(NotifyError::Permanent { .. })
        ));
    }

    #[test]
    fn the_url_and_its_path_are_redacted() {
        let url = Secret::new("https://hooks.example/services/T0/B0/SECRET");
        assert_eq!(
            redact(
                "bad https://hooks.example/services/T0/B0/SECRET and /services/T0/B0/SECRET",
                &url
            ),
            "bad <redacted> and <redacted>"
        );
    }
}

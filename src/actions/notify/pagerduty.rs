//! The PagerDuty notifier: Events API v2 alert events, one POST per
//! message to `url` (default [`DEFAULT_URL`]).
//!
//! A message that closes its incident ([`Message::closes_incident`]: a check
//! back to `ok`, or closed when the watch ended) is a `resolve`; every other
//! message is a `trigger`. Both carry `dedup_key` = [`Message::incident_key`]
//! (`RELEASE/CHECK`, or `RELEASE` for the release's own events), so the
//! pages of one check of one release are one PagerDuty alert, and the
//! resolve closes exactly that alert. A retried delivery is idempotent for
//! PagerDuty (same key, same open alert).
//!
//! Severity: level `rollback` and critical release events → `critical`,
//! level `critical` → `error`, `warning` → `warning`, `info` → `info`.
//! A trigger's `payload`: `summary` (the message's one line, ≤ 1024
//! characters), `source` (`SERVICE/ENVIRONMENT`), `severity`, `timestamp`
//! (the event's instant), `component` (the check, or `release`), `group`
//! (the service), `class` (the event), `custom_details` (version, previous
//! version, check, level, value, reason, release id, event, dedup key).
//! With `[server] public_url` it also carries `links` (the release in the
//! status API) and `client_url`.
//!
//! Answers: 202 (any 2xx) → delivered; 429, 5xx, network errors →
//! `Temporary` (with `Retry-After` if given); 400 (an invalid event, a
//! wrong routing key) → `Permanent` with PagerDuty's message. The routing
//! key is a credential: never in an error or a log line.

use super::webhook::{classify, default_timeout, post_json, Reply};
use super::{BuildContext, Links, Notifier, NotifierConfig, NotifierKind, NotifyError};
use crate::model::{format_value, rfc3339, Level, Message, Severity};
use crate::section::{deserialize_duration, Secret, Section};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `kind = "pagerduty"`.
pub const KIND: NotifierKind = NotifierKind {
    name: "pagerduty",
    parse,
};

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_MAX: usize = 1024;
/// PagerDuty's limit on `dedup_key`.
pub const DEDUP_KEY_MAX: usize = 255;

/// `[notifiers.NAME]` with `kind = "pagerduty"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default)]
    routing_key: Option<Secret>,
    #[serde(default)]
    routing_key_file: Option<PathBuf>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    timeout: Duration,
}

/// A checked PagerDuty section.
#[derive(Debug)]
pub struct PagerDutyConfig {
    pub routing_key: Secret,
    /// The Events API endpoint (not a secret: the key is in the body).
    pub url: String,
    pub timeout: Duration,
}

fn parse(s: &mut Section<'_, '_>) -> Option<Box<dyn NotifierConfig>> {
    let f: Fields = s.deserialize()?;
    s.positive("timeout", f.timeout);
    let what = format!(
        "pagerduty notifier `{}`",
        s.at.last_key().unwrap_or_default()
    );
    let url = match &f.url {
        Some(u) => s.http_url("url", u, "pagerduty").map(|_| u.clone()),
        None => Some(DEFAULT_URL.to_string()),
    };
    let key = s.secret(
        f.routing_key.as_ref(),
        f.routing_key_file.as_ref(),
        "routing_key",
        &what,
    );
    let (routing_key, _) = key?;
    let url = url?;
    (!f.timeout.is_zero()).then(|| {
        Box::new(PagerDutyConfig {
            routing_key,
            url,
            timeout: f.timeout,
        }) as Box<dyn NotifierConfig>
    })
}

impl NotifierConfig for PagerDutyConfig {
    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.routing_key]
    }

    fn build(&self, cx: &BuildContext) -> Arc<dyn Notifier> {
        Arc::new(PagerDutyNotifier {
            http: cx.http.clone(),
            url: Secret::new(self.url.clone()),
            routing_key: self.routing_key.clone(),
            timeout: self.timeout,
            links: cx.links.clone(),
        })
    }
}

/// Sends alert events to one PagerDuty integration.
pub struct PagerDutyNotifier {
    http: reqwest::Client,
    url: Secret,
    routing_key: Secret,
    timeout: Duration,
    links: Links,
}

#[async_trait]
impl Notifier for PagerDutyNotifier {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        let event = event(msg, self.routing_key.expose(), &self.links);
        let body = serde_json::to_vec(&event).map_err(|e| NotifyError::Permanent {
            detail: format!("cannot encode the event: {e}"),
        })?;
        let reply = post_json(&self.http, &self.url, self.timeout, body, &[], "PagerDuty").await?;
        // PagerDuty's 400 explains itself in JSON: keep its words, not the key.
        let key = self.routing_key.expose();
        let reply = Reply {
            body: if key.is_empty() {
                reply.body
            } else {
                reply.body.replace(key, "<redacted>")
            },
            ..reply
        };
        classify(reply, "PagerDuty")
    }
}

/// The Events API v2 body for `msg`: a `resolve` for a closing message,
/// else a `trigger`.
pub fn event(msg: &Message, routing_key: &str, links: &Links) -> Value {
    let dedup_key = cut(&msg.incident_key(), DEDUP_KEY_MAX);
    if msg.closes_incident() {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "client": "release-guardian",
        "payload": {
            "summary": cut(&msg.summary(), SUMMARY_MAX),
            "source": format!("{}/{}", msg.service, msg.environment),
            "severity": severity(msg),
            "timestamp": rfc3339(msg.at),
            "component": msg.check.as_deref().unwrap_or("release"),
            "group": msg.service,
            "class": msg.event,
            "custom_details": {
                "service": msg.service,
                "environment": msg.environment,
                "version": msg.version,
                "previous_version": msg.previous_version,
                "check": msg.check,
                "level": msg.level.map(|l| l.as_str()),
                "value": msg.value.map(format_value),
                "reason": msg.reason,
                "release_id": msg.release_id,
                "event": msg.event,
                "dedup_key": msg.dedup_key,
            },
        },
    });
    let hrefs: Vec<Value> = links
        .of(msg)
        .into_iter()
        .map(|(text, href)| json!({"href": href, "text": text}))
        .collect();
    if !hrefs.is_empty() {
        event["links"] = Value::Array(hrefs);
    }
    if let Some(release) = links.release(&msg.release_id) {
        event["client_url"] = Value::String(release);
    }
    event
}

/// PagerDuty's severity for `msg` (see the module docs).
pub fn severity(msg: &Message) -> &'static str {
    match (msg.level, msg.severity) {
        (Some(Level::Critical), _) => "error",
        (_, Severity::Critical) => "critical",
        (_, Severity::Warning) => "warning",
        (_, Severity::Info) => "info",
    }
}

/// `s` cut to at most `max` characters (ending with `…` when cut).
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max - 1).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: &str, level: Option<Level>) -> Message {
        crate::actions::notify::sample_message(event, level, "why")
    }

    #[test]
    fn trigger_and_resolve_share_the_incident_key() {
        let links = Links::new(Some("https://g.example"));
        let t = event(
            &message("level_changed", Some(Level::Rollback)),
            "KEY",
            &links,
        );
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "r1/error_rate");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["source"], "checkout/production");
        assert_eq!(t["payload"]["custom_details"]["value"], "0.0712");
        assert_eq!(t["links"][0]["href"], "https://g.example/v1/releases/r1");
        assert_eq!(t["client_url"], "https://g.example/v1/releases/r1");
        let r = event(&message("recovered", Some(Level::Ok)), "KEY", &links);
        assert_eq!(
            r,
            json!({"routing_key": "KEY", "event_action": "resolve", "dedup_key": "r1/error_rate"})
        );
        let bare = event(
            &message("level_changed", Some(Level::Critical)),
            "KEY",
            &Links::default(),
        );
        assert_eq!(bare["payload"]["severity"], "error");
        assert!(bare.get("links").is_none() && bare.get("client_url").is_none());
    }

    #[test]
    fn long_texts_are_cut_to_the_limits() {
        let mut m = message("level_changed", Some(Level::Warning));
        m.reason = "x".repeat(3000);
        m.release_id = "r".repeat(300);
        let t = event(&m, "KEY", &Links::default());
        assert_eq!(
            t["payload"]["summary"].as_str().unwrap().chars().count(),
            SUMMARY_MAX
        );
        assert_eq!(
            t["dedup_key"].as_str().unwrap().chars().count(),
            DEDUP_KEY_MAX
        );
    }
}

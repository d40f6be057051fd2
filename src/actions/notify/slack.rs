//! The Slack notifier: one incoming-webhook POST per message, as Block Kit
//! blocks plus a plain `text` fallback (shown in notifications and to
//! screen readers).
//!
//! The message: a `header` (plain text, ≤ 150 characters), a `section` of
//! mrkdwn fields (Service, Environment, Version and previous version, Check,
//! Level, Value, Reason, Release id, Dedup key; each ≤ 2000 characters),
//! for a check's message a `section` with the evidence (the value against
//! the rule it was judged by: threshold and window, as the check's reason
//! states them), with `[server] public_url` a `section` of links (the
//! release in the status API), and a `context` line with the
//! event and its RFC 3339 time. `&`, `<`, `>`
//! in anything that came from users are escaped in `text` and in mrkdwn;
//! the header is `plain_text`, which Slack does not parse, so it is sent as is.
//!
//! Answers: 200 (body `ok`) → delivered; 429 → `Temporary` with the
//! `Retry-After` seconds; 5xx, network errors, timeouts → `Temporary`; other
//! 4xx (`invalid_payload`, `channel_not_found`, ...) → `Permanent` with
//! Slack's plain-text reason. The webhook URL is the credential: it is never
//! part of an error or a log line.

use super::webhook::{classify, post_json};
use super::{BuildContext, Links, Notifier, NotifierConfig, NotifierKind, NotifyError};
use crate::model::{format_value, rfc3339, Message};
use crate::section::{deserialize_duration, secret_url, Secret, Section};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `kind = "slack"`.
pub const KIND: NotifierKind = NotifierKind {
    name: "slack",
    parse,
};

/// `[notifiers.NAME]` with `kind = "slack"`: the incoming-webhook URL
/// (inline or from a file; it is a credential) and the delivery timeout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(default)]
    webhook_url: Option<Secret>,
    #[serde(default)]
    webhook_url_file: Option<PathBuf>,
    #[serde(
        default = "super::webhook::default_timeout",
        deserialize_with = "deserialize_duration"
    )]
    timeout: Duration,
}

/// A checked Slack section.
#[derive(Debug)]
pub struct SlackConfig {
    pub webhook_url: Secret,
    pub timeout: Duration,
}

fn parse(s: &mut Section<'_, '_>) -> Option<Box<dyn NotifierConfig>> {
    let f: Fields = s.deserialize()?;
    s.positive("timeout", f.timeout);
    let what = format!("slack notifier `{}`", s.at.last_key().unwrap_or_default());
    let (url, key) = s.secret(
        f.webhook_url.as_ref(),
        f.webhook_url_file.as_ref(),
        "webhook_url",
        &what,
    )?;
    secret_url(&url, &key, "webhook URL", s.report)?;
    (!f.timeout.is_zero()).then(|| {
        Box::new(SlackConfig {
            webhook_url: url,
            timeout: f.timeout,
        }) as Box<dyn NotifierConfig>
    })
}

impl NotifierConfig for SlackConfig {
    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.webhook_url]
    }

    fn build(&self, cx: &BuildContext) -> Arc<dyn Notifier> {
        Arc::new(
            SlackNotifier::new(cx.http.clone(), self.webhook_url.clone(), self.timeout)
                .with_links(cx.links.clone()),
        )
    }
}

/// Block Kit limit on a header's text.
pub const HEADER_MAX: usize = 150;
/// Block Kit limit on one section field.
pub const FIELD_MAX: usize = 2000;
/// Limit kept for the `text` fallback and context lines.
pub const TEXT_MAX: usize = 3000;

/// Posts messages to one Slack incoming webhook.
pub struct SlackNotifier {
    http: reqwest::Client,
    webhook_url: Secret,
    timeout: Duration,
    links: Links,
}

impl SlackNotifier {
    /// A notifier posting to `webhook_url` with `timeout` per delivery.
    pub fn new(http: reqwest::Client, webhook_url: Secret, timeout: Duration) -> Self {
        Self {
            http,
            webhook_url,
            timeout,
            links: Links::default(),
        }
    }

    /// Adds links to the status API to every message.
    pub fn with_links(mut self, links: Links) -> Self {
        self.links = links;
        self
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        let body =
            serde_json::to_vec(&payload(msg, &self.links)).map_err(|e| NotifyError::Permanent {
                detail: format!("cannot encode the message: {e}"),
            })?;
        let reply = post_json(
            &self.http,
            &self.webhook_url,
            self.timeout,
            body,
            &[],
            "Slack",
        )
        .await?;
        if reply.status == 200 && reply.body != "ok" {
            tracing::debug!(body = %reply.body, "Slack answered 200 without `ok`");
        }
        classify(reply, "Slack")
    }
}

/// The webhook body for `msg`: `text`, `blocks`, no link unfurling.
pub fn payload(msg: &Message, links: &Links) -> Value {
    let text = truncate(&escape(&one_line(&msg.summary())), TEXT_MAX);
    let version = match &msg.previous_version {
        Some(prev) => format!("{} (previous {prev})", msg.version),
        None => msg.version.clone(),
    };
    let dash = || "—".to_string();
    let fields = [
        ("Service", msg.service.clone()),
        ("Environment", msg.environment.clone()),
        ("Version", version),
        ("Check", msg.check.clone().unwrap_or_else(dash)),
        (
            "Level",
            msg.level
                .map(|l| l.as_str().to_string())
                .unwrap_or_else(dash),
        ),
        ("Value", msg.value.map(format_value).unwrap_or_else(dash)),
        ("Reason", msg.reason.clone()),
        ("Release id", msg.release_id.clone()),
        ("Dedup key", msg.dedup_key.clone()),
    ]
    .into_iter()
    .map(|(label, value)| field(label, &value))
    .collect::<Vec<_>>();
    let context = truncate(
        &format!(
            "release-guardian • {} • {}",
            escape(&msg.event),
            rfc3339(msg.at)
        ),
        TEXT_MAX,
    );
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&header(msg), HEADER_MAX), "emoji": true}
        }),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(evidence) = evidence(msg) {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": evidence}}));
    }
    let links = links
        .of(msg)
        .into_iter()
        .map(|(label, href)| format!("<{}|{label}>", escape(&href)))
        .collect::<Vec<_>>();
    if !links.is_empty() {
        let text = truncate(&links.join(" • "), TEXT_MAX);
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    json!({
        "text": text,
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false
    })
}

/// The evidence of a check's message in mrkdwn: the value judged and the
/// rule (threshold and window) it was judged against, which the check's
/// reason states after `rule ` (`error_rate entered rollback: value 0.07,
/// rule above 0.05 for 5m`). `None` for a message about no check.
fn evidence(msg: &Message) -> Option<String> {
    msg.check.as_ref()?;
    let value = msg.value.map(format_value).unwrap_or_else(|| "—".into());
    let mut text = format!("*Evidence*\nValue `{}`", escape(&value));
    if let Some((_, rule)) = msg.reason.rsplit_once("rule ") {
        text.push_str(&format!(" vs rule `{}`", escape(rule.trim())));
    }
    if let Some(level) = msg.level {
        text.push_str(&format!(" → *{level}*"));
    }
    Some(truncate(&text, TEXT_MAX))
}

/// "CRITICAL: checkout production v2 — error_rate rollback" (or the event).
fn header(msg: &Message) -> String {
    let what = match (&msg.check, msg.level) {
        (Some(check), Some(level)) => format!("{check} {level}"),
        (Some(check), None) => format!("{check} {}", msg.event),
        _ => msg.event.replace('_', " "),
    };
    one_line(&format!(
        "{}: {} {} {} — {what}",
        msg.severity.as_str().to_uppercase(),
        msg.service,
        msg.environment,
        msg.version
    ))
}

/// One mrkdwn field: `*Label*` over the escaped value, within [`FIELD_MAX`].
fn field(label: &str, value: &str) -> Value {
    let value = if value.trim().is_empty() {
        "—"
    } else {
        value
    };
    let text = truncate(&format!("*{label}*\n{}", escape(value)), FIELD_MAX);
    json!({"type": "mrkdwn", "text": text})
}

/// Escapes the three characters Slack treats as control characters.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts `s` to at most `max` characters, ending with `…` when cut, and
/// never in the middle of an `&amp;`-style entity.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut = s
        .char_indices()
        .nth(max.saturating_sub(1))
        .map_or(s.len(), |(i, _)| i);
    let mut kept = &s[..cut];
    if let Some(amp) = kept.rfind('&') {
        if !kept[amp..].contains(';') && kept.len() - amp < 5 {
            kept = &kept[..amp];
        }
    }
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;

    fn message() -> Message {
        crate::actions::notify::sample_message(
            "level_changed",
            Some(Level::Rollback),
            "error_rate > 0.05 for 5m <!channel> & co",
        )
    }

    #[test]
    fn payload_escapes_and_names_everything() {
        let links = Links::new(Some("https://guardian.example"));
        let p = payload(&message(), &links);
        let text = p["text"].as_str().unwrap();
        assert!(text.contains("checkout production v2"), "{text}");
        assert!(text.contains("&lt;!channel&gt; &amp; co"), "{text}");
        assert_eq!(
            p["blocks"][0]["text"]["text"],
            "CRITICAL: checkout production v2 — error_rate rollback"
        );
        let fields = p["blocks"][1]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 9);
        assert_eq!(fields[2]["text"], "*Version*\nv2 (previous v1)");
        assert_eq!(fields[5]["text"], "*Value*\n0.0712");
        assert_eq!(
            p["blocks"][2]["text"]["text"],
            "*Evidence*\nValue `0.0712` → *rollback*"
        );
        assert_eq!(
            p["blocks"][3]["text"]["text"],
            "<https://guardian.example/v1/releases/r1|Release status>"
        );
        assert!(p["blocks"][4]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("2026-08-22T10:00:00Z"));
        let mut judged = message();
        judged.reason = "error_rate entered rollback: value 0.0712, rule above 0.05 for 5m".into();
        assert_eq!(
            payload(&judged, &Links::default())["blocks"][2]["text"]["text"],
            "*Evidence*\nValue `0.0712` vs rule `above 0.05 for 5m` → *rollback*"
        );
    }

    #[test]
    fn truncation_respects_limits_and_entities() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("abc&amp;def", 6), "abc…");
        let long = "é".repeat(500);
        assert_eq!(truncate(&long, HEADER_MAX).chars().count(), HEADER_MAX);
    }
}

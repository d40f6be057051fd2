//! Notifiers, one kind per file behind [`Notifier`], the registry of kinds
//! ([`KINDS`]), and the durable outbox that delivers stored messages to them
//! with retries.
//!
//! A kind's file owns its `[notifiers.NAME]` section: the serde struct, its
//! checks (every error located at its key, all at once, through
//! [`Section`]) and `build`. The config keeps the parsed section as a
//! [`NotifierSpec`]; the daemon builds every notifier once per (re)load into
//! [`Notifiers`], which the outbox delivers through.
//!
//! Adding a kind: its file (config struct implementing [`NotifierConfig`],
//! the [`Notifier`] it builds, a `pub const KIND: NotifierKind`), one line
//! in [`KINDS`], its docs (`docs/configuration.md`) and its tests.

pub mod alertmanager;
pub mod email;
pub mod outbox;
pub mod pagerduty;
pub mod rate;
pub mod slack;
pub mod webhook;

use crate::model::{Message, Severity};
use crate::section::{Secret, Section};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every notifier kind this version runs, by its `kind` name.
pub const KINDS: &[NotifierKind] = &[
    slack::KIND,
    webhook::KIND,
    email::KIND,
    pagerduty::KIND,
    alertmanager::KIND,
];

/// Kinds of the contract that later versions add; `check` says so.
pub const PLANNED: &[&str] = &[];

/// The kind named `name`, if this version has it.
pub fn kind(name: &str) -> Option<&'static NotifierKind> {
    KINDS.iter().find(|k| k.name == name)
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum NotifyError {
    /// Worth retrying (network error, 429, 5xx). `retry_after` from the receiver.
    #[error("temporary failure: {detail}")]
    Temporary {
        detail: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Will not succeed by retrying (4xx other than 429).
    #[error("permanent failure: {detail}")]
    Permanent { detail: String },
}

/// One destination for messages (a Slack channel, a webhook, ...).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// `slack`, `webhook`, ...
    fn kind(&self) -> &'static str;
    async fn send(&self, msg: &Message) -> Result<(), NotifyError>;
}

/// A notifier kind: its `kind` name and how its section is read.
pub struct NotifierKind {
    pub name: &'static str,
    /// Deserializes and checks the section's fields (without `kind` and
    /// `min_severity`, which every notifier has), reporting every error.
    pub parse: fn(&mut Section<'_, '_>) -> Option<Box<dyn NotifierConfig>>,
}

/// A notifier's section, deserialized and checked; `build` makes the
/// [`Notifier`] it describes.
pub trait NotifierConfig: std::fmt::Debug + Send + Sync {
    /// The secrets it holds (URLs, keys), redacted wherever text is shown.
    fn secrets(&self) -> Vec<&Secret>;
    /// Builds the notifier, once per (re)load.
    fn build(&self, cx: &BuildContext) -> Arc<dyn Notifier>;
}

/// What building a notifier may use.
pub struct BuildContext {
    /// Pooled client that never follows redirects (a redirected POST would
    /// turn into a GET and a lost message would look delivered).
    pub http: reqwest::Client,
    /// Links to the status API (`[server] public_url`), for the notifiers
    /// whose messages carry links.
    pub links: Links,
}

/// Links from a message to the release in the status API, built on
/// `[server] public_url` (the address people reach the API at). Without
/// it, messages carry no links.
#[derive(Debug, Clone, Default)]
pub struct Links {
    base: Option<String>,
}

impl Links {
    /// Links under `public_url` (`None`: no links), an http(s) URL that
    /// the config check has accepted.
    pub fn new(public_url: Option<&str>) -> Self {
        Self {
            base: public_url.map(|u| u.trim_end_matches('/').to_string()),
        }
    }

    /// The base URL itself, when configured.
    pub fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// `BASE/v1/releases/ID`: the release object.
    pub fn release(&self, release_id: &str) -> Option<String> {
        let base = self.base.as_deref()?;
        Some(format!("{base}/v1/releases/{}", path_segment(release_id)))
    }

    /// `(text, href)` of every link for `msg`: the release object (its
    /// checks, decisions, pages and rollback). Empty without a base URL.
    pub fn of(&self, msg: &Message) -> Vec<(&'static str, String)> {
        self.release(&msg.release_id)
            .map(|release| ("Release status", release))
            .into_iter()
            .collect()
    }
}

/// `s` with every byte but unreserved URL characters percent-encoded.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One `[notifiers.NAME]` as the configuration holds it.
#[derive(Debug, Clone)]
pub struct NotifierSpec {
    pub kind: &'static str,
    /// Messages below this severity are not sent to it (closing messages
    /// follow the page they close instead: see `docs/configuration.md`).
    pub min_severity: Severity,
    /// `rate_limit`: deliveries over it wait in the outbox.
    pub rate_limit: Option<rate::RateLimit>,
    /// `repeat_every`: a `reminder` at this period while a check it was
    /// paged about holds a level of `warning` or above. Off when `None`.
    pub repeat_every: Option<std::time::Duration>,
    pub config: Arc<dyn NotifierConfig>,
}

/// The notifiers in force, built from the configuration, by name.
#[derive(Default)]
pub struct Notifiers {
    by_name: BTreeMap<String, Arc<dyn Notifier>>,
    limits: BTreeMap<String, rate::RateLimit>,
}

impl Notifiers {
    /// Builds every notifier of `specs`.
    pub fn build(specs: &BTreeMap<String, NotifierSpec>, cx: &BuildContext) -> Self {
        Self {
            by_name: specs
                .iter()
                .map(|(name, spec)| (name.clone(), spec.config.build(cx)))
                .collect(),
            limits: specs
                .iter()
                .filter_map(|(name, spec)| Some((name.clone(), spec.rate_limit?)))
                .collect(),
        }
    }

    /// The notifier's `rate_limit`, if it has one.
    pub fn rate_limit(&self, name: &str) -> Option<rate::RateLimit> {
        self.limits.get(name).copied()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Notifier>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }
}

/// A message of check `error_rate` of release `r1` (checkout, production,
/// v2 after v1, value 0.0712, at 2026-08-22T10:00:00Z), for the kinds'
/// unit tests; the severity follows the level.
#[cfg(test)]
pub(crate) fn sample_message(
    event: &str,
    level: Option<crate::model::Level>,
    reason: &str,
) -> Message {
    Message {
        dedup_key: "r1/error_rate/rollback/1".into(),
        release_id: "r1".into(),
        service: "checkout".into(),
        environment: "production".into(),
        version: "v2".into(),
        previous_version: Some("v1".into()),
        severity: level.map_or(Severity::Warning, |l| l.severity()),
        event: event.into(),
        check: Some("error_rate".into()),
        level,
        value: Some(0.0712),
        reason: reason.into(),
        at: 1_787_392_800_000,
    }
}

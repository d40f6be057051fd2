//! The Alertmanager notifier: messages become alerts posted to
//! `URL/api/v2/alerts`, so teams that route through Alertmanager keep
//! their routes, silences and inhibitions.
//!
//! Labels (the alert's identity): `alertname` (default `ReleaseGuardian`),
//! `guardian` (this notifier's name), `release_id`, `service`,
//! `environment`, `version`, `severity`, `check` (for a check's messages)
//! and `event` (for a message that opens no alert). Annotations: `summary`,
//! `reason`, `event`, `level`, `value`, `dedup_key`. `startsAt` is the
//! event's instant; `generatorURL` the release in the status API (with
//! `[server] public_url`).
//!
//! **Open alerts.** A check's message at `warning` or above opens (or
//! updates) the alert of its incident ([`Message::incident_key`]); the
//! closing message ([`Message::closes_incident`]) posts the same labels
//! with `endsAt` = now, which resolves it. When the severity of an open
//! incident changes, its labels change: the old alert is resolved in the
//! same post that opens the new one. Any other message (the release's own
//! events, an inconclusive check) is posted once with `endsAt` =
//! now + 4 × `repost_every` and resolves by itself then.
//!
//! **Kept firing.** Alertmanager resolves an alert once its `endsAt`
//! passes. Every post of an open alert sets `endsAt` = now + 4 ×
//! `repost_every` (as Prometheus does with its resend delay), and a timer
//! re-posts every open alert every `repost_every` (default 1 minute); with
//! no open alert the timer is not armed (idle means idle).
//!
//! **Restarts and reloads.** The open alerts are not in the guardian's
//! store: they are in Alertmanager. A freshly built notifier (daemon start,
//! config reload) first adopts them: it reads `GET /api/v2/alerts` for the
//! active alerts with its own `guardian` label and keeps re-posting those
//! of open incidents, before it sends anything. So a restart shorter than
//! 4 × `repost_every` leaves no firing alert to expire; if the guardian is
//! down longer (or Alertmanager cannot be read), the alerts resolve at
//! their `endsAt` and are posted again by the adoption, or by the next
//! message of the check, once both are back. Adoption is retried with
//! backoff until it succeeds; a message is not sent before it has.
//!
//! Answers: 200 → delivered; 400 (a refused alert) → `Permanent` with
//! Alertmanager's reason; 5xx, network errors, timeouts → `Temporary`.

use super::webhook::{classify, default_timeout, post_json, redact, wall_clock_ms};
use super::{BuildContext, Links, Notifier, NotifierConfig, NotifierKind, NotifyError};
use crate::model::{format_value, rfc3339, Level, Message, Millis};
use crate::section::{deserialize_duration, secret_url, Secret, Section};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::CancellationToken;

/// `kind = "alertmanager"`.
pub const KIND: NotifierKind = NotifierKind {
    name: "alertmanager",
    parse,
};

/// Default `repost_every`.
pub const DEFAULT_REPOST_EVERY: Duration = Duration::from_secs(60);
/// Default `alertname` label.
pub const DEFAULT_ALERTNAME: &str = "ReleaseGuardian";
/// `endsAt` of a posted alert is now + this many `repost_every`.
pub const ENDS_AFTER_REPOSTS: u32 = 4;

fn default_repost_every() -> Duration {
    DEFAULT_REPOST_EVERY
}

/// `[notifiers.NAME]` with `kind = "alertmanager"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    url: Secret,
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    timeout: Duration,
    #[serde(
        default = "default_repost_every",
        deserialize_with = "deserialize_duration"
    )]
    repost_every: Duration,
    #[serde(default)]
    alertname: Option<String>,
}

/// A checked Alertmanager section.
#[derive(Debug)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL (a secret: it may embed credentials).
    pub url: Secret,
    pub timeout: Duration,
    pub repost_every: Duration,
    pub alertname: String,
    /// The notifier's name: its `guardian` label.
    pub name: String,
}

fn parse(s: &mut Section<'_, '_>) -> Option<Box<dyn NotifierConfig>> {
    let f: Fields = s.deserialize()?;
    s.positive("timeout", f.timeout);
    s.positive("repost_every", f.repost_every);
    let url = secret_url(&f.url, &s.at.key("url"), "alertmanager `url`", s.report);
    let alertname = f.alertname.unwrap_or_else(|| DEFAULT_ALERTNAME.into());
    let valid_name = alertname
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && alertname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !valid_name {
        s.error(
            "alertname",
            format!(
                "`alertname` {alertname:?} is not a metric-style name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
            ),
        );
    }
    let name = s.at.last_key().unwrap_or_default();
    (url.is_some() && valid_name && !f.timeout.is_zero() && !f.repost_every.is_zero()).then(|| {
        Box::new(AlertmanagerConfig {
            url: f.url,
            timeout: f.timeout,
            repost_every: f.repost_every,
            alertname,
            name,
        }) as Box<dyn NotifierConfig>
    })
}

impl NotifierConfig for AlertmanagerConfig {
    fn secrets(&self) -> Vec<&Secret> {
        vec![&self.url]
    }

    fn build(&self, cx: &BuildContext) -> Arc<dyn Notifier> {
        let base = self.url.expose().trim_end_matches('/');
        let notifier = AlertmanagerNotifier {
            inner: Arc::new(Inner {
                http: cx.http.clone(),
                alerts_url: Secret::new(format!("{base}/api/v2/alerts")),
                timeout: self.timeout,
                repost_every: self.repost_every,
                alertname: self.alertname.clone(),
                name: self.name.clone(),
                links: cx.links.clone(),
                open: Mutex::new(BTreeMap::new()),
                changed: Notify::new(),
                adopted: OnceCell::new(),
                started: AtomicBool::new(false),
            }),
            cancel: CancellationToken::new(),
        };
        // In the daemon this runs inside the runtime: adopt and re-post
        // from now on. Elsewhere, from the first send.
        if tokio::runtime::Handle::try_current().is_ok() {
            notifier.start();
        }
        Arc::new(notifier)
    }
}

/// Posts alerts to one Alertmanager and keeps the open ones firing.
pub struct AlertmanagerNotifier {
    inner: Arc<Inner>,
    /// Stops the re-post timer when the notifier is dropped (reload).
    cancel: CancellationToken,
}

impl Drop for AlertmanagerNotifier {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Inner {
    http: reqwest::Client,
    alerts_url: Secret,
    timeout: Duration,
    repost_every: Duration,
    alertname: String,
    name: String,
    links: Links,
    /// The open alerts, by incident key.
    open: Mutex<BTreeMap<String, Alert>>,
    /// Signalled when an alert opens (wakes the idle timer).
    changed: Notify,
    /// Set once the open alerts have been read back from Alertmanager.
    adopted: OnceCell<()>,
    /// Whether the re-post task runs.
    started: AtomicBool,
}

/// One alert as this notifier posts it.
#[derive(Debug, Clone, PartialEq)]
struct Alert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Millis,
    generator_url: Option<String>,
}

impl Alert {
    /// The postable alert, ending at `ends_at` (never before it starts).
    fn postable(&self, ends_at: Millis) -> Value {
        let mut v = json!({
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(ends_at.max(self.starts_at)),
        });
        if let Some(url) = &self.generator_url {
            v["generatorURL"] = Value::String(url.clone());
        }
        v
    }
}

/// An alert as `GET /api/v2/alerts` answers it (the fields adoption reads).
#[derive(Deserialize)]
struct Gettable {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "generatorURL", default)]
    generator_url: Option<String>,
}

/// Whether `msg` opens (or updates) its incident's alert.
fn opens(msg: &Message) -> bool {
    msg.check.is_some() && msg.level.is_some_and(|l| l > Level::Ok) && !msg.closes_incident()
}

impl AlertmanagerNotifier {
    /// Starts the task that adopts the open alerts and re-posts them (once).
    fn start(&self) {
        if self.inner.started.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(keep_firing(self.inner.clone(), self.cancel.clone()));
    }
}

#[async_trait]
impl Notifier for AlertmanagerNotifier {
    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    async fn send(&self, msg: &Message) -> Result<(), NotifyError> {
        self.start();
        let inner = &self.inner;
        inner.adopt().await?;
        let now = wall_clock_ms();
        let key = msg.incident_key();
        if msg.closes_incident() {
            let open = inner.lock().get(&key).cloned();
            let Some(alert) = open else {
                // Nothing of this incident is firing here.
                return Ok(());
            };
            inner.post(&[(&alert, now)]).await?;
            let mut open = inner.lock();
            if open.get(&key) == Some(&alert) {
                open.remove(&key);
            }
            return Ok(());
        }
        let alert = inner.alert(msg);
        let ends = now.max(alert.starts_at) + inner.lifetime();
        if !opens(msg) {
            return inner.post(&[(&alert, ends)]).await;
        }
        let previous = inner.lock().get(&key).cloned();
        let (alert, replaced) = match previous {
            // Still firing: keep when it started.
            Some(p) if p.labels == alert.labels => (
                Alert {
                    starts_at: p.starts_at,
                    ..alert
                },
                None,
            ),
            other => (alert, other),
        };
        let mut batch = vec![(&alert, ends)];
        if let Some(old) = &replaced {
            batch.push((old, now));
        }
        inner.post(&batch).await?;
        inner.lock().insert(key, alert);
        inner.changed.notify_one();
        Ok(())
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Alert>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a posted alert stays firing without another post.
    fn lifetime(&self) -> Millis {
        crate::section::saturating_millis(self.repost_every.saturating_mul(ENDS_AFTER_REPOSTS))
    }

    /// The alert `msg` opens or is (see the module docs for its labels).
    fn alert(&self, msg: &Message) -> Alert {
        let mut labels = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            labels.insert(k.to_string(), v.to_string());
        };
        put("alertname", &self.alertname);
        put("guardian", &self.name);
        put("release_id", &msg.release_id);
        put("service", &msg.service);
        put("environment", &msg.environment);
        put("version", &msg.version);
        put("severity", msg.severity.as_str());
        if let Some(check) = &msg.check {
            put("check", check);
        }
        if !opens(msg) {
            put("event", &msg.event);
        }
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".to_string(), msg.summary());
        annotations.insert("reason".to_string(), msg.reason.clone());
        annotations.insert("event".to_string(), msg.event.clone());
        annotations.insert("dedup_key".to_string(), msg.dedup_key.clone());
        if let Some(level) = msg.level {
            annotations.insert("level".to_string(), level.as_str().to_string());
        }
        if let Some(value) = msg.value {
            annotations.insert("value".to_string(), format_value(value));
        }
        Alert {
            labels,
            annotations,
            starts_at: msg.at,
            generator_url: self.links.release(&msg.release_id),
        }
    }

    /// POSTs `alerts`, each with its `endsAt`.
    async fn post(&self, alerts: &[(&Alert, Millis)]) -> Result<(), NotifyError> {
        let body: Vec<Value> = alerts.iter().map(|(a, ends)| a.postable(*ends)).collect();
        let body = serde_json::to_vec(&body).map_err(|e| NotifyError::Permanent {
            detail: format!("cannot encode the alerts: {e}"),
        })?;
        let reply = post_json(
            &self.http,
            &self.alerts_url,
            self.timeout,
            body,
            &[],
            "Alertmanager",
        )
        .await?;
        classify(reply, "Alertmanager")
    }

    /// Reads the open alerts back from Alertmanager, once (see the module docs).
    async fn adopt(&self) -> Result<(), NotifyError> {
        self.adopted
            .get_or_try_init(|| async {
                let found = self.read_open().await?;
                let mut open = self.lock();
                for (key, alert) in found {
                    open.entry(key).or_insert(alert);
                }
                if !open.is_empty() {
                    tracing::info!(
                        notifier = %self.name,
                        open = open.len(),
                        "alertmanager: re-posting the alerts still open"
                    );
                    self.changed.notify_one();
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The active alerts labelled `guardian` = this notifier that belong to
    /// an open incident, by incident key.
    async fn read_open(&self) -> Result<Vec<(String, Alert)>, NotifyError> {
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let filters = [
            ("active", "true".to_string()),
            ("silenced", "true".to_string()),
            ("inhibited", "true".to_string()),
            ("unprocessed", "true".to_string()),
            ("filter", format!("guardian=\"{}\"", quote(&self.name))),
            (
                "filter",
                format!("alertname=\"{}\"", quote(&self.alertname)),
            ),
        ];
        let failed = |detail: String| NotifyError::Temporary {
            detail: redact(&detail, &self.alerts_url),
            retry_after: None,
        };
        let response = self
            .http
            .get(self.alerts_url.expose())
            .query(&filters)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| {
                failed(format!(
                    "cannot read the open alerts from Alertmanager: {}",
                    crate::transport::describe_transport_error(&e, self.timeout)
                ))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!(
                "Alertmanager answered HTTP {} to reading the open alerts",
                status.as_u16()
            )));
        }
        let alerts: Vec<Gettable> = response.json().await.map_err(|e| {
            failed(format!(
                "cannot read the open alerts from Alertmanager: {}",
                crate::transport::describe_transport_error(&e, self.timeout)
            ))
        })?;
        Ok(alerts
            .into_iter()
            .filter(|a| a.labels.get("guardian") == Some(&self.name))
            .filter(|a| !a.labels.contains_key("event"))
            .filter_map(|a| {
                let release = a.labels.get("release_id")?;
                let check = a.labels.get("check")?;
                let starts = time::OffsetDateTime::parse(
                    &a.starts_at,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()?;
                let starts_at = Millis::try_from(starts.unix_timestamp_nanos() / 1_000_000).ok()?;
                Some((
                    format!("{release}/{check}"),
                    Alert {
                        labels: a.labels,
                        annotations: a.annotations,
                        starts_at,
                        generator_url: a.generator_url.filter(|u| !u.is_empty()),
                    },
                ))
            })
            .collect())
    }

    /// Posts every open alert again with a fresh `endsAt`.
    async fn repost(&self) -> Result<(), NotifyError> {
        let open: Vec<Alert> = self.lock().values().cloned().collect();
        if open.is_empty() {
            return Ok(());
        }
        let ends = wall_clock_ms() + self.lifetime();
        let batch: Vec<(&Alert, Millis)> = open.iter().map(|a| (a, ends)).collect();
        self.post(&batch).await
    }
}

/// Adopts the open alerts (retrying with backoff), then re-posts them every
/// `repost_every` while any is open, sleeping until one opens otherwise.
async fn keep_firing(inner: Arc<Inner>, cancel: CancellationToken) {
    let mut attempts = 0;
    while let Err(e) = inner.adopt().await {
        attempts += 1;
        tracing::warn!(notifier = %inner.name, error = %e, "alertmanager: cannot adopt the open alerts yet");
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(crate::transport::backoff(attempts)) => {}
        }
    }
    loop {
        loop {
            let woken = inner.changed.notified();
            if !inner.lock().is_empty() {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = woken => {}
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(inner.repost_every) => {}
        }
        if let Err(e) = inner.repost().await {
            tracing::warn!(notifier = %inner.name, error = %e, "alertmanager: re-posting the open alerts failed; trying again in {:?}", inner.repost_every);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: &str, level: Option<Level>) -> Message {
        crate::actions::notify::sample_message(event, level, "why")
    }

    #[test]
    fn which_messages_open_an_alert() {
        assert!(opens(&message("level_changed", Some(Level::Critical))));
        assert!(opens(&message("reminder", Some(Level::Warning))));
        assert!(!opens(&message("recovered", Some(Level::Ok))));
        assert!(!opens(&message("inconclusive", None)));
        let mut release = message("rollback_started", None);
        release.check = None;
        assert!(!opens(&release));
    }

    #[test]
    fn an_alert_never_ends_before_it_starts() {
        let alert = Alert {
            labels: BTreeMap::from([("alertname".into(), "X".into())]),
            annotations: BTreeMap::new(),
            starts_at: 5_000,
            generator_url: None,
        };
        let v = alert.postable(1_000);
        assert_eq!(v["startsAt"], v["endsAt"]);
        assert!(v.get("generatorURL").is_none());
    }
}
